/*
 * node.c -- a local node: open and close, and the design of the node
 * (the sa_client_* API of softadastra.h, spread over the node_*.c files).
 *
 * WRITE PATH (group commit; the store commit follows the answer)
 *
 *   caller thread            writer thread                committer thread
 *   -------------            -------------                ----------------
 *   validate key/value
 *   enqueue, signal  ----->  take every queued request
 *   wait on its condvar      (a group, <= NODE_GROUP_BYTES)
 *   (or return: async)       per request: check its condition
 *                              (CAS, absent key) against the
 *                              state the groups before it leave,
 *                              assign LSN + HLC, encode its record
 *                            one pwrite of all records
 *                            one fdatasync (auto_flush on)
 *                            queue the group for the   ---->  every store_commit_ms (10)
 *   wake (or callback) <---- committer, answer it             (or at once when a read
 *                            take the next group ...          waits): one LMDB txn
 *                                                             applies every queued
 *                                                             group, no fdatasync
 *
 * So a write costs one fdatasync, the WAL's, shared by its group, and one
 * store commit is shared by every group of store_commit_ms.  A write
 * is answered once it is in the synced WAL; a read waits until the store
 * holds every answered write (node_read_barrier), so a read after an answer
 * sees it.  The store itself is made durable in the background at sync
 * points (the syncer thread, every store_sync_interval_ms; see store_syncpoint.c):
 * after a power loss it rolls back to the last one and the WAL replays the
 * rest.  A failed append or sync fails its group before anything is
 * applied.  A failed store commit of answered writes turns the node
 * read-only (they are in the WAL; the next open replays them); near a full
 * map writes are answered after their commit instead, and a failed commit
 * then cuts the group from the WAL and fails it.  A failed fdatasync -- of
 * the WAL or at a store sync point -- turns the node read-only (see wal.c).
 * Requests are served in FIFO order; within a group later requests see the
 * effects of earlier ones.  Details: "writer pipeline" below.
 *
 * With auto_flush off the writer does not sync per group; it syncs the WAL
 * every flush_interval_ms while there is unsynced data, and on
 * sa_client_flush.
 *
 * Checkpoint: after a group, when the WAL's records (wal_size, its logical
 * size) pass half of wal_max_bytes, the writer takes a store sync point and
 * resets the WAL (wal.c).  The file itself is preallocated by chunks of
 * zeros (node_wal_chunk) and stays below wal_max_bytes.
 *
 * READ PATH: sa_client_get/list go straight to the store from the calling
 * thread (LMDB readers never block the writer), after node_read_barrier.
 *
 * THREADS: every sa_client_* function is thread-safe except sa_client_open
 * and sa_client_close.  The map of a running node's threads (sa-writer,
 * sa-commit, sa-sync, sa-tick and the server's), what each owns, which
 * callbacks run on it and the lock order is docs/threads.md.
 *
 * FILES: this file opens and closes a node.  The rest of the node:
 *   node_options.c   defaults and the check of sa_options
 *   node_recovery.c  WAL replay at open, and applying one record
 *   node_writer.c    the writer thread: groups, WAL write + sync, answers
 *   node_commit.c    the committer thread: store commits, read barrier
 *   node_keyver.c    the writer's key-version table
 *   node_syncer.c    the store sync-point thread
 *   node_tick.c      the tick thread, outbox requests and counts, sync state
 *   node_sync.c      sync between nodes: a peer's batch, the feed for peers,
 *                    snapshots, peers' acks, tombstone GC
 *   node_api.c       the public write, read, feed and status calls
 *   node_internal.h  the types and functions these files share
 *   worker.c         the thread primitive all four node threads use
 *
 * What it is not: the WAL (wal.c), the store (store_*.c), the outbox
 * state machine (outbox.c).
 *
 * Invariants: a node's threads are started in sa_client_open (committer,
 * syncer, writer, then tick) and stopped in sa_client_close in the order
 * tick, writer (which serves its queue and drains the committer),
 * committer, syncer; nothing is freed while one of them runs.
 */
#define _GNU_SOURCE
#include "node_internal.h"
#include "store_backup.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- clock and log ----------------------------------------------------- */

uint64_t node_now(const sa_client *c) {
  return c->opts.clock ? c->opts.clock(c->opts.clock_ctx) : sa_now_ms();
}

void node_log(const sa_client *c, int level, const char *fmt, ...) {
  if (!c->opts.log) return;
  char msg[768];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  c->opts.log(c->opts.log_ctx, level, msg);
}

void node_set_read_only(sa_client *c, const char *why) {
  /* The first caller writes the reason (writer, committer or syncer). */
  if (__atomic_exchange_n(&c->ro_claimed, true, __ATOMIC_ACQ_REL)) return;
  snprintf(c->read_only_reason, sizeof c->read_only_reason, "%s", why);
  __atomic_store_n(&c->read_only, true, __ATOMIC_RELEASE);
  node_log(c, SA_LOG_ERROR, "%s", why);
}

/* ---- open / close ------------------------------------------------------ */

static void node_free(sa_client *c) {
  sa_worker_stop(&c->sy);
  sa_worker_stop(&c->cm); /* idle: the writer drained it */
  if (c->store) store_close(c->store);
  if (c->wal) wal_close(c->wal);
  if (c->tmpdir) {
    char lock[PATH_MAX];
    snprintf(lock, sizeof lock, "%s-lock", c->store_path);
    unlink(c->store_path);
    unlink(lock);
    rmdir(c->tmpdir);
    free(c->tmpdir);
  }
  if (c->transport && c->transport->close) c->transport->close(c->transport->ctx);
  if (c->discovery && c->discovery->close) c->discovery->close(c->discovery->ctx);
  sa_worker_destroy(&c->wr);
  sa_worker_destroy(&c->cm);
  sa_worker_destroy(&c->sy);
  sa_worker_destroy(&c->tk);
  pthread_cond_destroy(&c->lsn_cv);
  pthread_mutex_destroy(&c->tick_serial);
  pthread_cond_destroy(&c->dcv);
  for (pgroup *g = c->gfree, *next; g; g = next) {
    next = g->next;
    free(g->buf);
    free(g);
  }
  keyver_free(&c->gov);
  keyver_free(&c->wov);
  keyver_free(&c->okv);
  free(c->onames);
  free(c->peers);
  pthread_mutex_destroy(&c->sync_mu);
  free(c->wal_path);
  free(c->store_path);
  free(c->ops);
  free(c);
}

int sa_client_open(sa_client **out, const sa_options *opts, sa_error *err) {
  if (!out) return sa_fail(err, SA_EINVAL, "sa_client_open: out is NULL");
  *out = NULL;
  if (!opts) return sa_fail(err, SA_EINVAL, "sa_client_open: options are NULL");
  sa_options o = *opts;
  int rc = node_check_options(&o, err);
  if (rc) return rc;

  sa_client *c = calloc(1, sizeof *c);
  if (!c) return sa_fail(err, SA_ENOMEM, "out of memory");
  /* Initializing a mutex or condition variable with default attributes
   * cannot fail on Linux; the calls below are not checked. */
  sa_worker_init(&c->wr);
  sa_worker_init(&c->cm);
  sa_worker_init(&c->sy);
  sa_worker_init(&c->tk);
  pthread_cond_init(&c->dcv, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&c->lsn_cv, &ca);
  pthread_condattr_destroy(&ca);
  pthread_mutex_init(&c->tick_serial, NULL);
  pthread_mutex_init(&c->sync_mu, NULL);
  snprintf(c->node_id, sizeof c->node_id, "%s", o.node_id);

  if (o.persistent) {
    c->wal_path = strdup(o.wal_path);
    c->store_path =
        o.store_path && *o.store_path ? strdup(o.store_path) : node_store_path(o.wal_path);
  } else {
    const char *tmp = getenv("TMPDIR");
    char tmpl[PATH_MAX];
    snprintf(tmpl, sizeof tmpl, "%s/softadastra-mem-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    c->wal_path = strdup("");
    if (mkdtemp(tmpl)) {
      c->tmpdir = strdup(tmpl);
      size_t n = strlen(tmpl) + 16;
      if ((c->store_path = malloc(n))) snprintf(c->store_path, n, "%s/store.mdb", tmpl);
    } else {
      rc = sa_fail(err, sa_errno_code(errno), "cannot create a private directory '%s': %s", tmpl,
                   strerror(errno));
      node_free(c);
      return rc;
    }
  }
  if (!c->wal_path || !c->store_path) {
    node_free(c);
    return sa_fail(err, SA_ENOMEM, "out of memory");
  }
  if (o.persistent && strcmp(c->wal_path, c->store_path) == 0) {
    node_free(c);
    return sa_fail(err, SA_EINVAL, "store_path and wal_path are the same file '%s'", o.wal_path);
  }
  o.node_id = c->node_id;
  o.wal_path = c->wal_path;
  o.store_path = c->store_path;
  node_pick_sync(c, &o);                      /* before the kinds are dropped: "disabled" is one */
  o.transport_kind = o.discovery_kind = NULL; /* resolved now; not kept */
  c->opts = o;

  sa_wal_report rep;
  memset(&rep, 0, sizeof rep);
  if (o.persistent) {
    if ((rc = wal_open(&c->wal, c->wal_path, c->node_id, err)) != 0 ||
        (rc = wal_scan(c->wal, NULL, NULL, &rep, err)) != 0) {
      node_free(c);
      return rc;
    }
    wal_set_prealloc(c->wal, node_wal_chunk(o.wal_max_bytes));
    if (rep.state == SA_WAL_CORRUPT) {
      rc = sa_fail(err, SA_ECORRUPT,
                   "WAL '%s' is corrupt at offset %llu (%s) and valid records follow at "
                   "offset %llu: refusing to open; nothing was modified.  Run `softadastra "
                   "wal repair %s` to truncate it at offset %llu (a copy is kept)",
                   c->wal_path, (unsigned long long)rep.bad_offset, rep.reason,
                   (unsigned long long)rep.next_good_offset, c->wal_path,
                   (unsigned long long)rep.bad_offset);
      node_free(c);
      return rc;
    }
  }
  rc = store_open(&c->store, c->store_path, c->node_id, o.persistent, o.store_max_bytes, err);
  if (rc == 0) rc = store_epoch_ensure(c->store, &c->epoch, err); /* node_backup.c */
  if (rc == 0 && o.persistent) rc = node_recover(c, &rep, err);
  if (rc == 0 && !o.persistent) c->last_lsn = store_applied_lsn(c->store);
  if (rc == 0) rc = node_outbox_open(c, err);
  if (rc == 0) rc = node_sync_open(c, err);
  c->w_lsn = c->last_lsn;
  c->acked_lsn = c->last_lsn;
  if (rc == 0 && sa_worker_start(&c->cm, "sa-commit", node_committer_main, c) != 0)
    rc = sa_fail(err, SA_ENOMEM, "cannot start the committer thread");
  if (rc == 0 && store_mode(c->store) == STORE_SNAPSHOTS &&
      sa_worker_start(&c->sy, "sa-sync", node_syncer_main, c) != 0)
    rc = sa_fail(err, SA_ENOMEM, "cannot start the store sync thread");
  if (rc == 0 && sa_worker_start(&c->wr, "sa-writer", node_writer_main, c) != 0)
    rc = sa_fail(err, SA_ENOMEM, "cannot start the writer thread");
  if (rc) {
    node_free(c);
    return rc;
  }
  if (!o.tick_manual && sa_worker_start(&c->tk, "sa-tick", node_ticker_main, c) != 0) {
    sa_client_close(c);
    return sa_fail(err, SA_ENOMEM, "cannot start the tick thread");
  }
  if (o.persistent)
    node_log(c, SA_LOG_INFO,
             "node %s recovered WAL %s: %llu records scanned, %llu replayed, %llu torn bytes "
             "cut%s%s",
             c->node_id, c->wal_path, (unsigned long long)c->recovery.records_scanned,
             (unsigned long long)c->recovery.records_replayed,
             (unsigned long long)c->recovery.torn_bytes, c->recovery.torn_path[0] ? " into " : "",
             c->recovery.torn_path);
  const store_open_report *sr = store_report(c->store);
  c->recovery.store_rolled_back = sr->rolled_back;
  if (sr->rolled_back)
    node_log(c, SA_LOG_WARN,
             "store %s was not closed cleanly and the machine restarted since: rolled it back "
             "to its last sync point (snapshot %llu; it had reached %llu), and the WAL "
             "replayed the rest",
             c->store_path, (unsigned long long)sr->to_txnid, (unsigned long long)sr->from_txnid);
  else if (sr->unclean)
    node_log(c, SA_LOG_INFO,
             "store %s was not closed cleanly (same boot: the file is whole and was kept)",
             c->store_path);
  if (sr->upgraded_from)
    node_log(c, SA_LOG_INFO,
             "store %s upgraded in place from format %u to %d (older builds no longer open it)",
             c->store_path, sr->upgraded_from, SA_STORE_FORMAT);
  if (sr->foreign_sync)
    node_log(c, SA_LOG_WARN,
             "store %s: its sync-point file did not describe it (replaced or copied?); a new "
             "one was written",
             c->store_path);
  if (c->transport->stub)
    node_log(c, SA_LOG_WARN,
             "sync transport '%s' is a stub: it reaches no peer, so queued work is retried "
             "with backoff and marked failed after %u attempts",
             c->transport->kind, c->obx.max_retries);
  if (c->discovery->stub)
    node_log(c, SA_LOG_WARN, "peer discovery '%s' is a stub: it finds no peers",
             c->discovery->kind);
  *out = c;
  return 0;
}

void sa_client_close(sa_client *c) {
  if (!c) return;
  /* First the tick thread: a tick may be waiting on the writer.  tk.started
   * stays set: the committer may still kick it while it settles writes
   * queued before this call (async); a kick after the stop is harmless. */
  sa_worker_stop(&c->tk);
  if (c->wr.started) {
    pthread_mutex_lock(&c->wr.mu);
    sa_worker_stop_locked(&c->wr); /* closing: no new requests */
    pthread_cond_broadcast(&c->lsn_cv);
    pthread_mutex_unlock(&c->wr.mu);
    sa_worker_join(&c->wr); /* it served the queue and drained the committer */
  }
  sa_worker_stop(&c->cm);
  sa_worker_stop(&c->sy);
  if (c->wal && !c->read_only) {
    sa_error e;
    c->dirty = true;
    if (node_flush_now(c, &e) == 0) store_sync(c->store, &e);
  }
  node_free(c);
}
