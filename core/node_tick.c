/*
 * node_tick.c -- the node's outbox side: the tick thread "sa-tick" (one
 * sa_worker, c->tk) and node_tick (claim due work, hand it to the
 * transport, settle the answers), the outbox requests the writer runs,
 * the per-state counts, the choice of transport and discovery at open, and
 * the sync API (sa_client_sync_state, sa_client_sync_tick,
 * sa_client_outbox_list).
 *
 * What it is not: the outbox state machine (outbox.c) nor its storage
 * (store_outbox.c); the transports themselves (transport.c or the
 * embedder's).
 *
 * Invariants:
 *  - One tick at a time (tick_serial), whether from the tick thread or a
 *    caller of sa_client_sync_tick; tick_serial is taken before wr.mu.
 *  - The transport's send runs on the ticking thread, never on the writer,
 *    so the network never blocks writes.
 *  - Outbox store transactions run on the writer (node_process_outbox,
 *    asserted); the counts move there and at commits, with atomics.
 *
 * Threads: node_ticker_main on "sa-tick"; node_tick on it or a caller;
 * node_process_outbox on the writer; node_apply_delta on the writer or the
 * committer; node_pick_sync on the opening thread; the API on any thread.
 */
#include "hash.h"
#include "node_internal.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void node_apply_delta(sa_client *c, const outbox_delta *d) {
  for (int i = 0; i < 4; i++)
    __atomic_add_fetch(&c->obx_count[i], (uint64_t)d->by_state[i], __ATOMIC_RELAXED);
  __atomic_add_fetch(&c->obx_pruned, d->pruned, __ATOMIC_RELAXED);
  __atomic_add_fetch(&c->obx_retries, d->retries, __ATOMIC_RELAXED);
  /* once per entry, not at every prune that walks past it */
  if (d->malformed &&
      __atomic_exchange_n(&c->obx_bad_lsn, d->malformed_lsn, __ATOMIC_RELAXED) != d->malformed_lsn)
    node_log(c, SA_LOG_ERROR,
             "outbox: %llu queued entr%s with a malformed or missing payload (the last at LSN "
             "%llu) kept, not pruned: the store file is damaged there",
             (unsigned long long)d->malformed, d->malformed == 1 ? "y" : "ies",
             (unsigned long long)d->malformed_lsn);
  if (d->refused)
    node_log(c, SA_LOG_ERROR,
             "outbox: %llu due entr%s with a malformed or missing payload (the last at LSN "
             "%llu) marked failed, not handed to the transport: the store file is damaged there",
             (unsigned long long)d->refused, d->refused == 1 ? "y" : "ies",
             (unsigned long long)d->refused_lsn);
}

/* Entries per state into counts; returns their sum (from the same loads). */
uint64_t node_obx_counts(const sa_client *c, uint64_t counts[4]) {
  uint64_t t = 0;
  for (int i = 0; i < 4; i++)
    t += counts[i] = __atomic_load_n(&c->obx_count[i], __ATOMIC_RELAXED);
  return t;
}

static uint64_t node_obx_total(const sa_client *c) {
  uint64_t counts[4];
  return node_obx_counts(c, counts);
}

/* Runs one outbox request in its own store transaction (writer thread). */
void node_process_outbox(sa_client *c, wreq *r) {
  assert(sa_worker_is_self(&c->wr)); /* docs/threads.md: outbox txns are the writer's */
  sa_error e = {0};
  store_wtxn *t;
  outbox_delta d;
  memset(&d, 0, sizeof d);
  if (__atomic_load_n(&c->read_only, __ATOMIC_ACQUIRE)) {
    r->rc = sa_fail(&r->err, SA_EREADONLY, "%s", c->read_only_reason);
    return;
  }
  int rc = store_wbegin(c->store, &t, &e);
  if (rc == 0) {
    if (r->kind == REQ_OBX_CLAIM) {
      uint64_t counts[4], total = node_obx_counts(c, counts);
      rc = outbox_claim(t, &c->obx, c->node_id, r->now, r->send, total, counts, &c->prune_at,
                        &c->rng, r->claimed, &d, &e);
    } else {
      rc = outbox_settle(t, &c->obx, r->now, r->lsns, r->acked, r->n, &c->rng, &d, &e);
    }
    if (rc == 0)
      rc = store_wcommit(t, store_applied_lsn(c->store), c->hlc.last, &e);
    else
      store_wabort(t);
  }
  if (rc) {
    if (r->kind == REQ_OBX_CLAIM && r->claimed->ops) {
      free(r->claimed->ops);
      r->claimed->ops = NULL;
      r->claimed->n = 0;
    }
    r->rc = rc;
    r->err = e;
    return;
  }
  node_apply_delta(c, &d);
}

const double sa_stats_sync_bounds[SA_STATS_SYNC_BUCKETS - 1] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 1.0};
const double sa_stats_group_bounds[SA_STATS_GROUP_BUCKETS - 1] = {1, 2, 4, 8, 16, 32, 64, 128, 256};

/* One tick: claim due work (writer), hand it to the transport (here, on the
 * ticking thread, so the network never blocks writes), settle the answers
 * (writer).  Ticks are serialized by tick_serial. */
int node_tick(sa_client *c, sa_error *err) {
  pthread_mutex_lock(&c->tick_serial);
  const sa_transport *tr = c->transport;
  /* With sync peers configured their acknowledgements settle the outbox
   * (node_sync_tick): nothing is handed to the transport, so nothing is
   * ever marked failed because a peer was away. */
  bool peers = node_sync_peers_configured(c);
  bool send = !peers && tr->send && (!tr->running || tr->running(tr->ctx));
  outbox_batch b = {0};
  wreq r;
  memset(&r, 0, sizeof r);
  r.kind = REQ_OBX_CLAIM;
  r.now = node_now(c);
  r.send = send;
  r.claimed = &b;
  int rc = 0;
  (void)node_read_barrier(c, NULL); /* the counts below move at commits */
  /* Nothing to expire, claim or prune: skip the walk of the outbox. */
  bool idle = !send &&
              __atomic_load_n(&c->obx_count[STORE_OUTBOX_IN_FLIGHT], __ATOMIC_RELAXED) == 0 &&
              __atomic_load_n(&c->obx_count[STORE_OUTBOX_ACKED], __ATOMIC_RELAXED) == 0 &&
              node_obx_total(c) <= c->obx.max_entries;
  if (!idle) rc = node_submit(c, &r, err);
  if (rc == 0 && b.n) {
    bool *acked = calloc(b.n, sizeof *acked);
    uint64_t *lsns = malloc(b.n * sizeof *lsns);
    if (!acked || !lsns) {
      rc = sa_fail(err, SA_ENOMEM, "out of memory settling %zu operations", b.n);
    } else {
      for (size_t i = 0; i < b.n; i++)
        lsns[i] = b.ops[i].lsn;
      if (tr->send(tr->ctx, b.ops, b.n, acked) != 0)
        memset(acked, 0, b.n * sizeof *acked); /* a failed hand-over acknowledges nothing */
      wreq s;
      memset(&s, 0, sizeof s);
      s.kind = REQ_OBX_SETTLE;
      s.now = node_now(c);
      s.lsns = lsns;
      s.acked = acked;
      s.n = b.n;
      rc = node_submit(c, &s, err);
    }
    free(acked);
    free(lsns);
  }
  free(b.ops);
  sa_error se;
  int src = node_sync_tick(c, &se); /* acks, tombstone GC */
  if (rc == 0 && src) {
    rc = src;
    if (err) *err = se;
  }
  __atomic_store_n(&c->last_tick_ms, node_now(c), __ATOMIC_RELAXED);
  __atomic_add_fetch(&c->ticks, 1, __ATOMIC_RELAXED);
  pthread_mutex_unlock(&c->tick_serial);
  return rc;
}

/* The tick thread: runs node_tick every tick_interval_ms, or at once when
 * kicked (tick_on_write, at a commit), until stopped (sa_worker_stop). */
void node_ticker_main(void *arg) {
  sa_client *c = arg;
  sa_worker *w = &c->tk;
  pthread_mutex_lock(&w->mu);
  for (;;) {
    uint64_t due = sa_mono_ns() + (uint64_t)c->opts.tick_interval_ms * 1000000u;
    if (sa_worker_wait(w, due) == SA_WORKER_STOP) break;
    pthread_mutex_unlock(&w->mu);
    sa_error e;
    if (node_tick(c, &e) != 0 && e.code != SA_EREADONLY && e.code != SA_ECLOSED)
      node_log(c, SA_LOG_WARN, "outbox tick failed: %s", e.message);
    pthread_mutex_lock(&w->mu);
  }
  pthread_mutex_unlock(&w->mu);
}

void node_pick_sync(sa_client *c, const sa_options *o) {
  if (!o->enable_transport)
    c->transport = &sa_transport_disabled;
  else if (o->transport)
    c->transport = o->transport;
  else if (o->transport_kind && strcmp(o->transport_kind, "disabled") == 0)
    c->transport = &sa_transport_disabled;
  else
    c->transport = &sa_transport_stub;
  if (!o->enable_discovery)
    c->discovery = &sa_discovery_disabled;
  else if (o->discovery)
    c->discovery = o->discovery;
  else if (o->discovery_kind && strcmp(o->discovery_kind, "disabled") == 0)
    c->discovery = &sa_discovery_disabled;
  else
    c->discovery = &sa_discovery_stub;
  c->obx = (outbox_cfg){.batch = o->sync_batch_size,
                        .max_retries = o->max_retries,
                        .retry_base_ms = o->retry_base_ms,
                        .retry_max_ms = o->retry_max_ms,
                        .ack_timeout_ms = o->ack_timeout_ms,
                        .max_entries = o->outbox_max,
                        .retention_ms = o->outbox_retention_ms};
  uint64_t h = sa_fnv1a(c->node_id, strlen(c->node_id)); /* mixed with time below */
  c->rng = (h ^ sa_mono_ns()) | 1;
}

/* ---- the sync API ---------------------------------------------------------- */

int sa_client_sync_state(sa_client *c, sa_sync_state *out, sa_error *err) {
  if (!c || !out) return sa_fail(err, SA_EINVAL, "sa_client_sync_state: NULL argument");
  memset(out, 0, sizeof *out);
  (void)node_read_barrier(c, NULL); /* the counts move at commits */
  out->queued = __atomic_load_n(&c->obx_count[STORE_OUTBOX_QUEUED], __ATOMIC_RELAXED);
  out->in_flight = __atomic_load_n(&c->obx_count[STORE_OUTBOX_IN_FLIGHT], __ATOMIC_RELAXED);
  out->acknowledged = __atomic_load_n(&c->obx_count[STORE_OUTBOX_ACKED], __ATOMIC_RELAXED);
  out->failed = __atomic_load_n(&c->obx_count[STORE_OUTBOX_FAILED], __ATOMIC_RELAXED);
  out->outbox_size = out->queued + out->in_flight + out->acknowledged + out->failed;
  out->total_retries = __atomic_load_n(&c->obx_retries, __ATOMIC_RELAXED);
  out->pruned = __atomic_load_n(&c->obx_pruned, __ATOMIC_RELAXED);
  out->ticks = __atomic_load_n(&c->ticks, __ATOMIC_RELAXED);
  out->last_tick_ms = __atomic_load_n(&c->last_tick_ms, __ATOMIC_RELAXED);
  out->last_lsn = __atomic_load_n(&c->last_lsn, __ATOMIC_ACQUIRE);
  out->outbox_max = c->obx.max_entries;
  out->overflow = out->outbox_size > c->obx.max_entries;
  const sa_transport *t = c->transport;
  out->transport_enabled = c->opts.enable_transport && t->send;
  out->transport_running = t->send && (!t->running || t->running(t->ctx));
  out->transport_stub = t->stub;
  snprintf(out->transport_kind, sizeof out->transport_kind, "%s", t->kind);
  const sa_discovery *d = c->discovery;
  out->discovery_enabled = c->opts.enable_discovery && d != &sa_discovery_disabled;
  out->discovery_stub = d->stub;
  snprintf(out->discovery_kind, sizeof out->discovery_kind, "%s", d->kind);
  out->peers = d->peers ? d->peers(d->ctx) : 0;
  return 0;
}

int sa_client_sync_tick(sa_client *c, sa_error *err) {
  if (!c) return sa_fail(err, SA_EINVAL, "client is NULL");
  sa_error local;
  return node_tick(c, err ? err : &local);
}

int sa_client_outbox_list(sa_client *c, uint64_t after_lsn, sa_outbox_entry *out, size_t max,
                          size_t *n, sa_error *err) {
  if (!c || !n || (max && !out))
    return sa_fail(err, SA_EINVAL, "sa_client_outbox_list: NULL argument");
  *n = 0;
  if (max == 0) return 0;
  int rc = node_read_barrier(c, err);
  if (rc) return rc;
  store_obx *tmp = malloc(max * sizeof *tmp);
  if (!tmp) return sa_fail(err, SA_ENOMEM, "out of memory listing %zu outbox entries", max);
  rc = store_obx_list(c->store, after_lsn, max, tmp, n, err);
  for (size_t i = 0; rc == 0 && i < *n; i++)
    out[i] = (sa_outbox_entry){.lsn = tmp[i].lsn,
                               .hlc = tmp[i].hlc,
                               .state = tmp[i].state,
                               .type = tmp[i].type,
                               .attempts = tmp[i].attempts,
                               .at_ms = tmp[i].at_ms};
  free(tmp);
  return rc;
}
