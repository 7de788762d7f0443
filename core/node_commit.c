/*
 * node_commit.c -- the committer: the thread "sa-commit" (one sa_worker,
 * c->cm) that applies the groups the writer has written to the WAL to the
 * store, several groups per LMDB transaction, and the waits on it (the
 * writer's queue and drain, the readers' barrier).  The whole pipeline is
 * described at the top of node_writer.c.
 *
 * What it is not: the WAL write or the answer to a write (the writer's),
 * nor a store sync point (the syncer's): a commit does not fdatasync.
 *
 * Invariants:
 *  - cm.mu guards the queue (cq_*), the spare groups, committing,
 *    commit_now and cfail_*; it is never held during a store transaction
 *    nor together with wr.mu.
 *  - Groups are committed in the order they were queued; last_lsn moves
 *    only after the store commit that holds it (release store).
 *  - An early group (answered before its commit) may travel with others;
 *    a late one (answered after) travels alone and the writer keeps it.
 *  - After a lost commit of answered writes (cfail_rc) nothing more is
 *    committed and the node is read-only.
 *
 * Threads: node_committer_main on "sa-commit"; node_group_*, node_queue
 * and node_drain on the writer; node_read_barrier on any reader.
 */
#include "node_internal.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A spare group, or a new one (NULL when out of memory). */
pgroup *node_group_get(sa_client *c) {
  pthread_mutex_lock(&c->cm.mu);
  pgroup *g = c->gfree;
  if (g) c->gfree = g->next;
  pthread_mutex_unlock(&c->cm.mu);
  return g ? g : calloc(1, sizeof *g);
}

/* Keeps g as a spare, with cm.mu held; a buffer grown past 1 MiB by a big
 * group is given back. */
void node_group_put_locked(sa_client *c, pgroup *g) {
  if (g->cap > (1u << 20)) {
    free(g->buf);
    g->buf = NULL;
    g->cap = 0;
  }
  g->next = c->gfree;
  c->gfree = g;
}

void node_group_put(sa_client *c, pgroup *g) {
  pthread_mutex_lock(&c->cm.mu);
  node_group_put_locked(c, g);
  pthread_mutex_unlock(&c->cm.mu);
}

/* Committer: applies the records of the groups of list in one store
 * transaction; on success they are visible and last_lsn moves. */
static int node_commit_groups(sa_client *c, pgroup *list, sa_error *err) {
  assert(sa_worker_is_self(&c->cm)); /* docs/threads.md: the committer applies groups */
  store_wtxn *t;
  int rc = store_wbegin(c->store, &t, err);
  if (rc) return rc;
  const pgroup *last = list;
  uint64_t records = 0; /* outbox entries written */
  for (const pgroup *g = list; g; g = g->next) {
    for (size_t off = 0; off < g->used;) {
      wal_rec rec;
      off += wal_record_view(g->buf + off, &rec);
      uint64_t version;
      if ((rc = node_apply_record(t, &rec, &version, &records, err)) != 0) {
        store_wabort(t);
        return rc;
      }
    }
    last = g;
  }
  /* Over outbox_max: prune a little now, in proportion to what this
   * commit adds, so the outbox stays near its bound without a walk of
   * the whole of it (outbox.h). */
  outbox_delta d;
  memset(&d, 0, sizeof d);
  uint64_t counts[4], total = node_obx_counts(c, counts) + records;
  counts[STORE_OUTBOX_QUEUED] += records;
  if (total > c->obx.max_entries &&
      (rc = outbox_prune(t, &c->obx, total, counts, NODE_PRUNE_VISITS_PER_RECORD * records + 64,
                         &c->prune_at, &d, err)) != 0) {
    store_wabort(t);
    return rc;
  }
  if ((rc = store_wcommit(t, last->last_lsn, last->hlc_last, err)) != 0) return rc;
  __atomic_store_n(&c->last_lsn, last->last_lsn, __ATOMIC_RELEASE);
  node_wake_syncer(c);
  node_stat_add(&c->stats.store_commits, 1);
  __atomic_add_fetch(&c->obx_count[STORE_OUTBOX_QUEUED], records, __ATOMIC_RELAXED);
  node_apply_delta(c, &d);
  if (c->opts.tick_on_write && c->tk.started) sa_worker_kick(&c->tk);
  pthread_mutex_lock(&c->wr.mu);
  pthread_cond_broadcast(&c->lsn_cv); /* change-feed waiters */
  pthread_mutex_unlock(&c->wr.mu);
  return 0;
}

/* The committer failed to commit answered writes (list): the node turns
 * read-only and *err says why, for the reads that needed them. */
static void node_commit_lost(sa_client *c, const pgroup *list, int rc, sa_error *err) {
  const pgroup *last = list;
  while (last->next)
    last = last->next;
  char why[SA_ERROR_MESSAGE_MAX];
  snprintf(why, sizeof why,
           "node is read-only: the store commit of acknowledged writes (LSN %llu to %llu) "
           "failed: %.300s; they are in the WAL%s",
           (unsigned long long)list->first_lsn, (unsigned long long)last->last_lsn, err->message,
           c->wal ? " and the next start replays them" : " of no file: this node keeps no data");
  node_set_read_only(c, why);
  sa_fail(err, rc, "%s", why);
}

/* How long the oldest queued group waits for its commit.  A commit writes
 * every B-tree page it touches, so under load, when each commit touches
 * most of the hot pages again, fewer and larger commits write much less
 * for the same writes.  Measured on 2 cores, PUTs of 100-byte values over
 * 10,000 keys (docs/performance.md, "The store commit under load"): 30
 * ms once 128 operations wait, against 10 ms always, gave 18-27% more
 * PUT/s at c16 and c64 and 35-49% fewer bytes written per PUT, for 1-1.5
 * ms more PUT p99 at c16; a quiet node (1,000 or 5,000 writes/s: 10-50
 * operations per 10 ms) commits every 10 ms as before, so its change feed
 * and its peers see writes as soon.
 *
 * A queue of peers' batches only, on a node that has been busy for
 * SA_COMMIT_SYNC_STREAK commits in a row, waits store_commit_sync_ms
 * (100): no caller waits on those commits (a batch is answered once in the
 * WAL), and a peer applying a stream of a busy node's writes spent most of
 * its CPU and disk rewriting the same pages every 30 ms, on the cores and
 * the disk of the machine it shares (docs/performance.md, "The shared
 * page, and a peer's commit under a stream").  The streak keeps one burst at a modest rate
 * (a hiccup that lets 128 operations gather) from delaying the next
 * changes this node's feed serves. */
static uint64_t node_commit_delay(const sa_client *c) {
  uint64_t ms = c->opts.store_commit_ms;
  uint32_t busy = c->opts.store_commit_busy_ms, sync = c->opts.store_commit_sync_ms;
  if (busy != SA_STORE_COMMIT_BUSY_OFF && busy > ms && c->cq_ops >= SA_COMMIT_BUSY_OPS) {
    ms = busy;
    if (sync != SA_STORE_COMMIT_BUSY_OFF && sync > ms && c->cq_sync_ops == c->cq_ops &&
        c->busy_streak >= SA_COMMIT_SYNC_STREAK)
      ms = sync;
  }
  return ms * 1000000u;
}

void node_committer_main(void *arg) {
  sa_client *c = arg;
  sa_worker *w = &c->cm;
  pthread_mutex_lock(&w->mu);
  for (;;) {
    if (!c->cq_head) {
      if (sa_worker_stopping(w)) break;
      sa_worker_wait(w, SA_WORKER_FOREVER);
      continue;
    }
    if (!c->commit_now && !sa_worker_stopping(w)) {
      uint64_t due = c->cq_head->queued_ns + node_commit_delay(c);
      if (sa_mono_ns() < due) {
        sa_worker_wait(w, due);
        continue;
      }
    }
    pgroup *list = c->cq_head;
    uint64_t took = c->cq_ops;
    c->cq_head = c->cq_tail = NULL;
    c->cq_groups = c->cq_bytes = 0;
    c->cq_ops = c->cq_sync_ops = 0;
    c->commit_now = false;
    c->committing = true;
    sa_error e = {0};
    int rc = c->cfail_rc; /* after a lost commit, nothing more is committed */
    if (rc) e = c->cfail_err;
    pthread_mutex_unlock(&w->mu);
    bool early = list->early;
    assert(early || !list->next); /* a group answered after its commit travels alone */
    if (!rc && (rc = node_commit_groups(c, list, &e)) != 0 && early)
      node_commit_lost(c, list, rc, &e);
    pthread_mutex_lock(&w->mu);
    c->committing = false;
    c->busy_streak = took >= SA_COMMIT_BUSY_OPS ? c->busy_streak + 1 : 0;
    if (early) {
      if (rc && !c->cfail_rc) {
        c->cfail_rc = rc;
        c->cfail_err = e;
      }
      for (pgroup *g = list, *next; g; g = next) {
        next = g->next;
        node_group_put_locked(c, g);
      }
    } else {
      list->rc = rc;
      list->err = e;
      list->done = true; /* the writer answers and keeps it */
    }
    pthread_cond_broadcast(&c->dcv);
  }
  pthread_mutex_unlock(&w->mu);
}

/* Hands g to the committer; first waits while the queue is full, asks for
 * a commit now once it is 3/4 full. */
void node_queue(sa_client *c, pgroup *g) {
  pthread_mutex_lock(&c->cm.mu);
  while (c->cq_groups >= NODE_QUEUE_GROUPS || c->cq_bytes >= NODE_QUEUE_BYTES) {
    c->commit_now = true;
    sa_worker_kick_locked(&c->cm);
    pthread_cond_wait(&c->dcv, &c->cm.mu);
  }
  g->next = NULL;
  g->queued_ns = sa_mono_ns();
  bool wake = !c->cq_head || !g->early;
  if (!g->early) c->commit_now = true;
  /* A local write ends a span of peers' batches: the committer sets its
   * due again (node_commit_delay). */
  if (g->ops > g->sync_ops && c->cq_sync_ops == c->cq_ops) wake = true;
  if (c->cq_tail)
    c->cq_tail->next = g;
  else
    c->cq_head = g;
  c->cq_tail = g;
  c->cq_groups++;
  c->cq_bytes += g->used;
  c->cq_ops += g->ops;
  c->cq_sync_ops += g->sync_ops;
  if (4 * c->cq_groups >= 3 * NODE_QUEUE_GROUPS || 4 * c->cq_bytes >= 3 * NODE_QUEUE_BYTES) {
    c->commit_now = true; /* before the writer has to wait for a full queue */
    wake = true;
  }
  if (wake) sa_worker_kick_locked(&c->cm);
  pthread_mutex_unlock(&c->cm.mu);
}

/* Waits until every queued group is committed (writer; see node_internal.h).  Returns 0, or the
 * failure of a commit of answered writes (then in *err, when not NULL). */
int node_drain(sa_client *c, sa_error *err) {
  pthread_mutex_lock(&c->cm.mu);
  while (c->cq_head || c->committing) {
    c->commit_now = true;
    sa_worker_kick_locked(&c->cm);
    pthread_cond_wait(&c->dcv, &c->cm.mu);
  }
  int rc = c->cfail_rc;
  if (rc && err) *err = c->cfail_err;
  pthread_mutex_unlock(&c->cm.mu);
  return rc;
}

/* Before a read: waits until the store holds every answered write.  0, or
 * the failure that keeps some of them out of it. */
int node_read_barrier(sa_client *c, sa_error *err) {
  uint64_t want = __atomic_load_n(&c->acked_lsn, __ATOMIC_ACQUIRE);
  if (__atomic_load_n(&c->last_lsn, __ATOMIC_ACQUIRE) >= want) return 0;
  int rc = 0;
  pthread_mutex_lock(&c->cm.mu);
  while (__atomic_load_n(&c->last_lsn, __ATOMIC_ACQUIRE) < want) {
    if (c->cfail_rc) {
      rc = c->cfail_rc;
      if (err) *err = c->cfail_err;
      break;
    }
    c->commit_now = true;
    sa_worker_kick_locked(&c->cm);
    pthread_cond_wait(&c->dcv, &c->cm.mu);
  }
  pthread_mutex_unlock(&c->cm.mu);
  return rc;
}
