/*
 * node_writer.c -- the writer: the thread "sa-writer" (one sa_worker,
 * c->wr) that takes the queued requests in FIFO groups, checks their
 * conditions, gives them LSNs and clock values, writes and syncs their WAL
 * records, hands each group to the committer (node_commit.c) and answers
 * it; and runs flushes, checkpoints and outbox requests.  Also the calls
 * that queue a request and wait for it (node_submit).
 *
 * WRITER PIPELINE
 *
 * Puts, removes and batches go through two threads:
 *
 *   writer:    take group N, prepare it, WAL write + sync, queue it for
 *              the committer, answer it; take group N+1 ...
 *   committer: once the oldest queued group has waited store_commit_ms
 *              (at once when a reader or the writer asks): one LMDB txn
 *              applies the records of every queued group, then last_lsn moves
 *
 * A write is answered once its record is in the synced WAL; from there a
 * crash loses nothing (the next open replays the WAL into the store).  Its
 * store commit follows within store_commit_ms, shared with every group
 * written meanwhile, so the store writes its B-tree pages once per commit
 * instead of once per group (each commit writes every page it touches: tens
 * of KiB for one write).  Reads still see every answered write: a read
 * (node_read_barrier) first compares last_lsn, the last LSN the store holds,
 * with acked_lsn, the last one answered; when the store is behind, the
 * reader asks the committer for a commit now and waits for it.  A read with
 * no answered write left to commit pays two atomic loads.
 *
 * Preparing a group (conditions, versions, a peer's batch decided by the
 * sync rule) needs the state the groups not yet committed leave: the writer
 * keeps the versions it gave, each with its write's pair (hlc, origin), in
 * wov (every write goes through the writer), read before the store.
 * Requests are served in FIFO order; within a group later requests see the
 * effects of earlier ones.
 *
 * When a commit of answered writes fails (an I/O error), those writes are
 * still in the WAL, durable: the node turns read-only, a read that needs
 * them fails with the cause, and the next open replays them.  A full map
 * must not be such a failure: a group is answered before its commit only
 * while the store has NODE_EARLY_HEADROOM and more of room; otherwise the
 * writer waits for the group's commit before it answers, and a failed
 * commit cuts the group's records from the WAL and fails its writes
 * (SA_ENOSPC), the node staying writable.
 *
 * Flushes, checkpoints and outbox work drain the committer first
 * (node_drain) and run on the writer thread.
 *
 * What it is not: the store commit (node_commit.c), the key-version table
 * (node_keyver.c), the outbox logic (outbox.c; its requests are run here
 * by node_process_outbox of node_tick.c).
 *
 * Invariants:
 *  - Only the writer appends to the WAL, gives LSNs (w_lsn) and clock
 *    values (hlc), and reads or writes gov/wov, the origin table, ops and
 *    dirty (asserted).
 *  - Every key a group not yet committed writes is in wov with the version
 *    and pair it leaves (or hlc 0 when that write changed no pair); wov is
 *    emptied only when the store holds every write staged.
 *  - wr.mu guards the FIFO (head/tail), the blocking callers' done flags
 *    and lsn_cv; it is never held during I/O nor together with cm.mu.
 *  - A request is settled exactly once: its callback called (async, then
 *    freed) or its caller woken.
 *
 * Why this file is larger than a few hundred lines: staging, the group's
 * WAL write, the hand-over and the answer are one sequence with one set of
 * failure rules (which group is cut, when the node turns read-only); split,
 * a reader would have to hold both halves at once.
 *
 * Threads: node_writer_main and everything static here on "sa-writer";
 * node_submit and node_submit_async on any caller's thread; node_flush_now
 * also on the closing thread after the writer ended.
 */
#include "node_internal.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void stat_hist(uint64_t *hist, const double *bounds, int nb, double v) {
  int i = 0;
  while (i < nb && v > bounds[i])
    i++;
  node_stat_add(&hist[i], 1);
}

/* wal_sync, timed into the statistics. */
static int node_wal_sync(sa_client *c, sa_error *err) {
  uint64_t t0 = sa_mono_ns();
  int rc = wal_sync(c->wal, err);
  uint64_t ns = sa_mono_ns() - t0;
  node_stat_add(&c->stats.syncs, 1);
  node_stat_add(&c->sync_ns, ns);
  stat_hist(c->stats.sync_hist, sa_stats_sync_bounds, SA_STATS_SYNC_BUCKETS - 1, (double)ns / 1e9);
  return rc;
}

int node_flush_now(sa_client *c, sa_error *err) {
  if (__atomic_load_n(&c->read_only, __ATOMIC_ACQUIRE))
    return sa_fail(err, SA_EREADONLY, "%s", c->read_only_reason);
  if (!c->wal || !c->dirty) return 0;
  int rc = node_wal_sync(c, err);
  if (rc) {
    node_set_read_only(c, err->message);
    return rc;
  }
  c->dirty = false;
  return 0;
}

static int node_checkpoint_now(sa_client *c, sa_error *err) {
  if (!c->wal) return 0;
  int rc = store_sync(c->store, err);
  if (rc == 0) rc = wal_reset(c->wal, __atomic_load_n(&c->last_lsn, __ATOMIC_RELAXED), err);
  if (rc) {
    char why[SA_ERROR_MESSAGE_MAX];
    snprintf(why, sizeof why, "node is read-only after a failed checkpoint: %.400s", err->message);
    node_set_read_only(c, why);
    return rc;
  }
  c->dirty = false;
  __atomic_add_fetch(&c->checkpoints, 1, __ATOMIC_RELAXED);
  return 0;
}

int node_reserve(pgroup *g, size_t need) {
  if (need <= g->cap) return 0;
  size_t cap = g->cap ? g->cap : 1 << 12; /* a group of a few writes is a few KiB */
  while (cap < need)
    cap *= 2;
  unsigned char *b = realloc(g->buf, cap);
  if (!b) return -1;
  g->buf = b;
  g->cap = cap;
  return 0;
}

/* key's version once every group written is committed: the group being
 * prepared, then the groups written before it, then the store. */
int node_version(sa_client *c, const char *key, uint32_t klen, uint64_t *version, sa_error *err) {
  if (keyver_find(&c->gov, key, klen, version)) return 0;
  if (keyver_find(&c->wov, key, klen, version)) return 0;
  return store_version(c->store, key, klen, version, err);
}

/* Checks the per-op conditions of a batch (sa_client_batch_ex) against the
 * state before it: the groups not yet committed, then the store; nothing of
 * this batch is in c->gov yet.  Returns 0 when every condition holds, 1
 * when one failed (r is settled: SA_ECONFLICT, r->failed_op), or an error
 * that dooms the group. */
static int node_batch_conds(sa_client *c, wreq *r, sa_error *err) {
  for (size_t i = 0; i < r->nops; i++) {
    const sa_write_opts *w = &r->conds[i];
    if (w->cond == SA_COND_NONE) continue;
    const char *key = r->ops[i].key;
    uint32_t klen = (uint32_t)strlen(key);
    int kl = (int)(klen > 200 ? 200 : klen);
    uint64_t cur = 0;
    int rc = node_version(c, key, klen, &cur, err);
    if (rc) return rc;
    if (w->cond == SA_COND_VERSION && cur != w->version) {
      r->rc =
          cur ? sa_fail(&r->err, SA_ECONFLICT, "ops[%zu]: key '%.*s' is at version %llu, not %llu",
                        i, kl, key, (unsigned long long)cur, (unsigned long long)w->version)
              : sa_fail(&r->err, SA_ECONFLICT,
                        "ops[%zu]: key '%.*s' does not exist (expected version %llu)", i, kl, key,
                        (unsigned long long)w->version);
    } else if (w->cond == SA_COND_ABSENT && cur) {
      r->rc = sa_fail(&r->err, SA_ECONFLICT, "ops[%zu]: key '%.*s' already exists (version %llu)",
                      i, kl, key, (unsigned long long)cur);
    } else {
      continue;
    }
    r->failed_op = i;
    return 1;
  }
  return 0;
}

/* Prepares one request into g: checks its condition, encodes its record and
 * notes the versions it gives.  Returns 0 when staged or settled (condition
 * failed, absent key); an error that dooms the whole group otherwise. */
static int node_stage(sa_client *c, pgroup *g, wreq *r, uint64_t *lsn, sa_error *err) {
  uint64_t cur = 0;
  size_t nops = 1;
  const wal_op *ops;
  wal_op one;
  bool batch = r->kind == REQ_BATCH;
  if (r->kind == REQ_SYNC) return node_stage_sync(c, g, r, lsn, err);
  if (!batch) {
    int rc = node_version(c, r->key, r->klen, &cur, err);
    if (rc) return rc;
    if (r->cond.cond == SA_COND_VERSION && cur != r->cond.version) {
      r->rc =
          cur ? sa_fail(&r->err, SA_ECONFLICT, "key '%.*s' is at version %llu, not %llu",
                        (int)(r->klen > 200 ? 200 : r->klen), r->key, (unsigned long long)cur,
                        (unsigned long long)r->cond.version)
              : sa_fail(&r->err, SA_ECONFLICT, "key '%.*s' does not exist (expected version %llu)",
                        (int)(r->klen > 200 ? 200 : r->klen), r->key,
                        (unsigned long long)r->cond.version);
      return 0;
    }
    if (r->cond.cond == SA_COND_ABSENT && cur) {
      r->rc = sa_fail(&r->err, SA_ECONFLICT, "key '%.*s' already exists (version %llu)",
                      (int)(r->klen > 200 ? 200 : r->klen), r->key, (unsigned long long)cur);
      return 0;
    }
    if (r->kind == REQ_DEL && !cur) {
      r->rc = sa_fail(&r->err, SA_ENOTFOUND, "key '%.*s' not found",
                      (int)(r->klen > 200 ? 200 : r->klen), r->key);
      return 0;
    }
    one.op = r->kind == REQ_PUT ? SA_OP_PUT : SA_OP_DELETE;
    one.key = r->key;
    one.klen = r->klen;
    one.val = r->val;
    one.vlen = r->vlen;
    one.ctype = r->ctype;
    one.ctlen = r->kind == REQ_PUT ? r->ctlen : 0;
    ops = &one;
  } else {
    if (r->nops > c->ops_cap) {
      wal_op *o = realloc(c->ops, r->nops * sizeof *o);
      if (!o) return sa_fail(err, SA_ENOMEM, "out of memory staging a batch of %zu", r->nops);
      c->ops = o;
      c->ops_cap = r->nops;
    }
    for (size_t i = 0; i < r->nops; i++) {
      const sa_batch_op *b = &r->ops[i];
      c->ops[i].op = b->op;
      c->ops[i].key = b->key;
      c->ops[i].klen = (uint32_t)strlen(b->key);
      c->ops[i].val = b->data;
      c->ops[i].vlen = b->op == SA_OP_PUT ? (uint32_t)b->len : 0;
      c->ops[i].ctype = NULL; /* a batch's puts carry none */
      c->ops[i].ctlen = 0;
    }
    ops = c->ops;
    nops = r->nops;
    if (r->conds) {
      int rc = node_batch_conds(c, r, err);
      if (rc < 0) return rc;
      if (rc > 0) return 0; /* settled: a condition failed, nothing staged */
    }
  }

  /* The versions and pairs this record gives (as node_apply_record will):
   * each op carries the record's pair (ts, this node); a delete of a key
   * that is not live changes nothing, its pair included. */
  uint64_t ts = sa_hlc_next(&c->hlc, node_now(c));
  for (size_t i = 0; i < nops; i++) {
    uint64_t v = cur;
    int rc = batch ? node_version(c, ops[i].key, ops[i].klen, &v, err) : 0;
    if (rc) return rc;
    bool put = ops[i].op == SA_OP_PUT;
    if ((put || v ? keyver_set_pair(&c->gov, ops[i].key, ops[i].klen, put ? v + 1 : 0, ts, 0)
                  : keyver_set(&c->gov, ops[i].key, ops[i].klen, 0)) != 0)
      return sa_fail(err, SA_ENOMEM, "out of memory staging a write");
  }

  size_t size = wal_record_size(ops, nops, batch);
  if (node_reserve(g, g->used + size) != 0)
    return sa_fail(err, SA_ENOMEM, "out of memory encoding a %zu-byte record", size);
  size_t n = wal_record_encode(g->buf + g->used, ++*lsn, ts, ops, nops, batch);
  assert(n == size);
  r->logged = true;
  r->res.lsn = *lsn;
  r->res.hlc = ts;
  r->res.version = r->kind == REQ_PUT ? cur + 1 : 0;
  memcpy(r->res.origin, c->node_id, sizeof r->res.origin);
  g->used += n;
  g->logged++;
  g->ops += nops;
  return 0;
}

/* Settles every logged request of the list with rc / err. */
static void node_fail_logged(wreq *g, int rc, const sa_error *err) {
  for (wreq *r = g; r; r = r->next)
    if (r->logged) {
      r->rc = rc;
      r->err = *err;
      r->logged = false;
    }
}

/* Answers every request of the list: asynchronous callbacks first, outside
 * the lock (they usually wake a thread about to queue more), then the
 * blocking callers.  The list's requests may be freed from here on. */
static void node_settle(sa_client *c, wreq *g) {
  assert(sa_worker_is_self(&c->wr)); /* docs/threads.md: callbacks run on the writer */
  for (wreq *r = g, *next, **link = &g; r; r = next) {
    next = r->next;
    if (!r->cb) {
      link = &r->next;
      continue;
    }
    *link = next;
    r->cb(r->cb_arg, r->rc, r->rc ? NULL : &r->res, r->rc ? &r->err : NULL);
    free(r);
  }
  pthread_mutex_lock(&c->wr.mu);
  for (wreq *r = g, *next; r; r = next) {
    next = r->next; /* r lives on its caller's stack: read next first */
    r->done = true;
    pthread_cond_signal(&r->cv);
  }
  pthread_mutex_unlock(&c->wr.mu);
}

/* g (answered after its commit) failed or could not be committed: cut its
 * records from the WAL and fail its writes.  Every group before it is
 * committed (or lost), so the store holds every version: wov starts over. */
static void node_pipeline_failed(sa_client *c, pgroup *g, int rc, const sa_error *err) {
  if (c->wal) {
    sa_error e2;
    if (wal_rollback(c->wal, g->wal_start, &e2) != 0) node_set_read_only(c, e2.message);
  }
  c->w_lsn = g->first_lsn - 1;
  c->hlc.last = g->hlc_before;
  node_overlay_reset(c);
  node_fail_logged(g->reqs, rc, err);
  node_settle(c, g->reqs);
  node_group_put(c, g);
}

/* May g be answered before its commit?  Only with room in the map for
 * everything the committer may hold (see NODE_EARLY_HEADROOM). */
static bool node_early_ok(sa_client *c, const pgroup *g) {
  uint64_t need = NODE_EARLY_HEADROOM + 4 * ((uint64_t)g->used + NODE_QUEUE_BYTES);
  return store_headroom(c->store) >= need;
}

/* Answers the logged requests of d as written: durable when synced. */
static void node_answer(sa_client *c, wreq *d, bool durable) {
  for (wreq *r = d; r; r = r->next)
    if (r->logged) {
      r->res.durable = durable;
      r->logged = false;
    }
  node_settle(c, d);
}

/* The data requests d of one group: prepare, WAL write and sync, hand to
 * the committer and answer (or answer once committed, see node_early_ok). */
static void node_pipeline_data(sa_client *c, wreq *d, bool want_flush) {
  assert(sa_worker_is_self(&c->wr)); /* docs/threads.md: the writer owns the WAL's tail */
  sa_error e = {0};
  if (c->wov.n > NODE_WOV_MAX || c->norigins > NODE_ORIGINS_MAX) {
    node_drain(c, NULL); /* bound the cache: commit what it covers */
    node_overlay_reset(c);
  }
  size_t nops = 0;
  for (wreq *r = d; r; r = r->next) {
    r->rc = 0;
    r->logged = false;
    nops += r->kind == REQ_BATCH ? r->nops : r->kind == REQ_SYNC ? r->n : 1;
  }
  pgroup *g = node_group_get(c);
  int rc = 0;
  if (!g)
    rc = sa_fail(&e, SA_ENOMEM, "out of memory staging %zu writes", nops);
  else if (__atomic_load_n(&c->read_only, __ATOMIC_ACQUIRE))
    rc = sa_fail(&e, SA_EREADONLY, "%s", c->read_only_reason);
  else if (keyver_reset(&c->gov, nops) != 0)
    rc = sa_fail(&e, SA_ENOMEM, "out of memory staging %zu writes", nops);
  if (g) {
    g->reqs = d;
    g->used = 0;
    g->logged = g->ops = g->sync_ops = 0;
    g->durable = g->early = g->done = false;
    g->rc = 0;
    g->hlc_before = c->hlc.last;
    g->first_lsn = c->w_lsn + 1;
    g->wal_start = c->wal ? wal_size(c->wal) : 0;
  }
  uint64_t lsn = c->w_lsn;
  for (wreq *r = d; r && !rc; r = r->next)
    rc = node_stage(c, g, r, &lsn, &e);
  if (rc || g->used == 0) { /* nothing was written: an error, or only failed conditions */
    if (g) c->hlc.last = g->hlc_before;
    for (wreq *r = d; r; r = r->next)
      if (rc && r->rc == 0) {
        r->rc = rc;
        r->err = e;
        r->logged = false;
      }
    node_settle(c, d);
    if (g) node_group_put(c, g);
    return;
  }
  g->last_lsn = lsn;
  g->hlc_last = c->hlc.last;
  if (c->wal) {
    bool rolled_back;
    rc = wal_append(c->wal, g->buf, g->used, &rolled_back, &e);
    if (rc == 0) node_stat_add(&c->stats.wal_bytes_written, g->used);
    if (rc == 0 && (c->opts.auto_flush || want_flush)) {
      if ((rc = node_wal_sync(c, &e)) != 0) node_set_read_only(c, e.message);
      g->durable = c->opts.auto_flush;
    } else if (rc) {
      node_stat_add(&c->stats.write_errors, 1);
      /* A clean rollback leaves nothing unsynced behind: stay writable
       * (ENOSPC may clear).  A failed one leaves unknown bytes: stop. */
      if (!rolled_back) node_set_read_only(c, e.message);
    } else if (!c->dirty) {
      c->dirty = true;
      c->dirty_since_ns = sa_mono_ns();
    }
    if (rc) {
      c->hlc.last = g->hlc_before;
      node_fail_logged(d, rc, &e);
      node_settle(c, d);
      node_group_put(c, g);
      return;
    }
  }
  c->w_lsn = lsn;
  node_stat_add(&c->stats.groups, 1);
  node_stat_add(&c->stats.group_ops, g->logged);
  stat_hist(c->stats.group_hist, sa_stats_group_bounds, SA_STATS_GROUP_BUCKETS - 1,
            (double)g->logged);
  bool cached = keyver_merge(&c->wov, &c->gov) == 0;
  if (cached && node_early_ok(c, g)) {
    g->early = true;
    g->reqs = NULL;
    node_queue(c, g);
    __atomic_store_n(&c->acked_lsn, lsn, __ATOMIC_RELEASE);
    node_answer(c, d, g->durable);
    return;
  }
  /* Answered once committed: alone, after every group before it. */
  if ((rc = node_drain(c, &e)) != 0) {
    node_pipeline_failed(c, g, rc, &e);
    return;
  }
  node_queue(c, g);
  pthread_mutex_lock(&c->cm.mu);
  while (!g->done)
    pthread_cond_wait(&c->dcv, &c->cm.mu);
  rc = g->rc;
  e = g->err;
  pthread_mutex_unlock(&c->cm.mu);
  if (rc) {
    node_pipeline_failed(c, g, rc, &e);
    return;
  }
  if (!cached) node_overlay_reset(c); /* the store holds every version */
  __atomic_store_n(&c->acked_lsn, lsn, __ATOMIC_RELEASE);
  node_answer(c, d, g->durable);
  node_group_put(c, g);
}

static void node_process(sa_client *c, wreq *g) {
  sa_error e = {0};
  bool want_flush = false, want_ckpt = false;
  wreq *data = NULL, **dt = &data, *other = NULL, **ot = &other;
  for (wreq *r = g; r; r = r->next) {
    want_flush |= r->kind == REQ_FLUSH;
    want_ckpt |= r->kind == REQ_CHECKPOINT;
  }
  for (wreq *r = g, *next; r; r = next) {
    next = r->next;
    r->next = NULL;
    if (r->kind <= REQ_SYNC) {
      *dt = r;
      dt = &r->next;
    } else {
      *ot = r;
      ot = &r->next;
    }
  }
  if (data) node_pipeline_data(c, data, want_flush);
  bool ckpt = c->wal && (want_ckpt || wal_size(c->wal) > c->opts.wal_max_bytes / 2);
  if (!other && !ckpt) return;
  /* What follows needs the store to hold every written record.  After a lost
   * commit it does not: no checkpoint may then drop the WAL's records. */
  sa_error lost;
  int lost_rc = node_drain(c, &lost);
  int rc;
  if (want_flush) {
    rc = node_flush_now(c, &e);
    for (wreq *r = other; r; r = r->next)
      if (r->kind == REQ_FLUSH && (r->rc = rc) != 0) r->err = e;
  }
  if (ckpt) {
    rc = lost_rc ? lost_rc : node_checkpoint_now(c, &e);
    for (wreq *r = other; r; r = r->next)
      if (r->kind == REQ_CHECKPOINT && (r->rc = rc) != 0) r->err = lost_rc ? lost : e;
  }
  for (wreq *r = other; r; r = r->next)
    if (r->kind == REQ_OBX_CLAIM || r->kind == REQ_OBX_SETTLE)
      node_process_outbox(c, r);
    else if (r->kind == REQ_SYNC_GC)
      node_process_sync_gc(c, r);
  if (other) node_settle(c, other);
}

void node_writer_main(void *arg) {
  sa_client *c = arg;
  sa_worker *w = &c->wr;
  pthread_mutex_lock(&w->mu);
  for (;;) {
    while (!c->head && !sa_worker_stopping(w)) {
      if (c->dirty) {
        uint64_t due = c->dirty_since_ns + (uint64_t)c->opts.flush_interval_ms * 1000000u;
        if (sa_worker_wait(w, due) == SA_WORKER_TIMEOUT && !c->head) {
          pthread_mutex_unlock(&w->mu);
          sa_error e;
          node_flush_now(c, &e); /* failure turns the node read-only */
          c->dirty = false;
          pthread_mutex_lock(&w->mu);
        }
      } else {
        sa_worker_wait(w, SA_WORKER_FOREVER);
      }
    }
    if (!c->head) break; /* stopping, and every request served */
    wreq *g = c->head, *last = g;
    size_t bytes = g->bytes;
    while (last->next && bytes + last->next->bytes <= NODE_GROUP_BYTES) {
      last = last->next;
      bytes += last->bytes;
    }
    c->head = last->next;
    if (!c->head) c->tail = NULL;
    last->next = NULL;
    pthread_mutex_unlock(&w->mu);

    node_process(c, g);

    pthread_mutex_lock(&w->mu);
  }
  pthread_mutex_unlock(&w->mu);
  node_drain(c, NULL);
}

/* Appends r to the writer's queue, with c->wr.mu held.  Refuses when closing. */
static int node_enqueue_locked(sa_client *c, wreq *r, sa_error *err) {
  if (sa_worker_stopping(&c->wr))
    return sa_fail(err, SA_ECLOSED, "node '%s' is closing", c->node_id);
  r->next = NULL;
  r->done = false;
  r->rc = 0;
  if (c->tail)
    c->tail->next = r;
  else
    c->head = r;
  c->tail = r;
  sa_worker_kick_locked(&c->wr);
  return 0;
}

/* Queues a malloc'd r whose r->cb the writer will call; frees r when
 * refused. */
int node_submit_async(sa_client *c, wreq *r, sa_error *err) {
  pthread_mutex_lock(&c->wr.mu);
  int rc = node_enqueue_locked(c, r, err);
  pthread_mutex_unlock(&c->wr.mu);
  if (rc) free(r);
  return rc;
}

/* Queues r and waits until the writer settles it. */
int node_submit(sa_client *c, wreq *r, sa_error *err) {
  pthread_cond_init(&r->cv, NULL);
  pthread_mutex_lock(&c->wr.mu);
  int rc = node_enqueue_locked(c, r, err);
  if (rc) {
    pthread_mutex_unlock(&c->wr.mu);
    pthread_cond_destroy(&r->cv);
    return rc;
  }
  while (!r->done)
    pthread_cond_wait(&r->cv, &c->wr.mu);
  pthread_mutex_unlock(&c->wr.mu);
  pthread_cond_destroy(&r->cv);
  if (r->rc && err) *err = r->err;
  return r->rc;
}
