/*
 * node_syncer.c -- the store's sync points: the thread "sa-sync" (one
 * sa_worker, c->sy), started for a persistent store (STORE_SNAPSHOTS).
 *
 * The store commits without syncing; every store_sync_interval_ms this thread
 * takes a sync point when anything was committed (store_syncpoint.c): an fdatasync of
 * the LMDB file and of a small record, off the write path.  Writes do not
 * wait for it -- the WAL makes them durable -- but the WAL is never reset
 * past a sync point, and after a power loss the store rolls back to the
 * last one and the WAL replays the rest.  A failed sync point turns the
 * node read-only: the file may have lost pages the kernel could not write,
 * and a later fdatasync could succeed without them.
 *
 * What it is not: the sync point itself (store_sync in store_syncpoint.c),
 * nor the WAL's fdatasync (the writer's).
 *
 * Invariants: the syncer never begins a store write transaction; it takes
 * sync points (store_sync serializes them with a checkpoint's) and
 * write-back kicks only.  syncer_idle is true only while it sleeps with no
 * commit seen since its last kick.
 *
 * Threads: node_syncer_main on "sa-sync"; node_wake_syncer on the
 * committer.
 */
#include "node_internal.h"

#include <stdio.h>

/* Takes a sync point when one is due; a failure turns the node read-only. */
static void node_sync_store(sa_client *c) {
  sa_error e;
  if (__atomic_load_n(&c->read_only, __ATOMIC_ACQUIRE) || !store_sync_due(c->store)) return;
  if (store_sync(c->store, &e) != 0) {
    char why[SA_ERROR_MESSAGE_MAX];
    snprintf(why, sizeof why, "node is read-only after a failed store sync point: %.400s",
             e.message);
    node_set_read_only(c, why);
  }
}

/* Every store_sync_interval_ms a sync point.  In between, while commits
 * happen, every store_writeback_ms (2) a write-back kick (store_writeback):
 * the store's pages then go to the disk as they are committed instead of in
 * one burst at the sync point, and the WAL's fdatasyncs -- each a cache
 * flush of the device, which waits for the writes queued before it -- no
 * longer queue behind a period's worth of store pages.  That burst set the
 * write latency tail: p99 at 16 connections went from 17-20 ms to 4-5.5 ms
 * (README, Performance).
 * When nothing was committed since the last kick the syncer sleeps until
 * the next sync point, and the committer wakes it at the next commit
 * (node_wake_syncer), so an idle node does not tick every 2 ms. */
void node_syncer_main(void *arg) {
  sa_client *c = arg;
  sa_worker *w = &c->sy;
  uint64_t period = (uint64_t)c->opts.store_sync_interval_ms * 1000000u;
  uint64_t next_sync = sa_mono_ns() + period;
  uint64_t kick = c->opts.store_writeback_ms == SA_STORE_WRITEBACK_OFF
                      ? UINT64_MAX
                      : (uint64_t)c->opts.store_writeback_ms * 1000000u;
  uint64_t seen = store_txnid(c->store); /* the commit of the last kick */
  pthread_mutex_lock(&w->mu);
  while (!sa_worker_stopping(w)) {
    __atomic_store_n(&c->syncer_idle, true, __ATOMIC_SEQ_CST);
    bool busy = store_txnid(c->store) != seen; /* after publishing idle: see store_txnid */
    if (busy) __atomic_store_n(&c->syncer_idle, false, __ATOMIC_SEQ_CST);
    uint64_t now = sa_mono_ns();
    uint64_t due = next_sync;
    if (busy && kick != UINT64_MAX && now + kick < next_sync) due = now + kick;
    /* Until the deadline; a kick ends the wait only when a commit cleared
     * syncer_idle (node_wake_syncer). */
    while (sa_worker_wait(w, due) == SA_WORKER_KICK)
      if (!__atomic_load_n(&c->syncer_idle, __ATOMIC_SEQ_CST)) break;
    __atomic_store_n(&c->syncer_idle, false, __ATOMIC_SEQ_CST);
    if (sa_worker_stopping(w)) break;
    pthread_mutex_unlock(&w->mu);
    uint64_t txnid = store_txnid(c->store);
    if (sa_mono_ns() >= next_sync) {
      node_sync_store(c);
      next_sync = sa_mono_ns() + period;
      seen = txnid;
    } else if (txnid != seen && sa_mono_ns() >= due) {
      seen = txnid;
      if (!__atomic_load_n(&c->read_only, __ATOMIC_ACQUIRE)) store_writeback(c->store);
    }
    pthread_mutex_lock(&w->mu);
  }
  pthread_mutex_unlock(&w->mu);
}

void node_wake_syncer(sa_client *c) {
  if (!__atomic_load_n(&c->syncer_idle, __ATOMIC_SEQ_CST)) return;
  pthread_mutex_lock(&c->sy.mu);
  __atomic_store_n(&c->syncer_idle, false, __ATOMIC_SEQ_CST);
  sa_worker_kick_locked(&c->sy);
  pthread_mutex_unlock(&c->sy.mu);
}
