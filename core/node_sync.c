/*
 * node_sync.c -- sync between nodes, the node's side (softadastra.h "sync
 * between nodes"; the design: the conflict rule in sync_rule.h, the sync
 * WAL record in wal.c, the store's databases in store.h):
 *
 *   - sa_client_sync_apply checks a peer's batch (every item, the clock
 *     drift) and queues it to the writer as one request (REQ_SYNC).  The
 *     writer (node_stage_sync, here) folds every item's HLC into its
 *     clock, decides each item by the rule against the key's state once
 *     every write before it is committed (an earlier item of the batch or
 *     request of the group, the groups not yet committed: the writer's
 *     overlay, node_writer.c; else the store), and logs ONE sync record:
 *     peer, cursor, items, decisions.  It is synced with its group
 *     and answered; the committer applies the record (node_apply_record):
 *     the winners and the peer's cursor in one store transaction.  Replay
 *     applies the same record the same way, so a kill -9 anywhere neither
 *     loses nor doubles a batch, and never leaves the cursor without its
 *     items.
 *   - the reads a peer makes go to the store (store_sync.c): the feed
 *     (sa_client_sync_read) reads what the store holds, without the read
 *     barrier (a page per store commit at most, never a commit per page);
 *     _snapshot and _digest after the read barrier.
 *   - peers: the configured list (sa_client_sync_set_peers) and each
 *     peer's acknowledged position (sa_client_sync_peer_ack), in memory
 *     under sync_mu and persisted lazily by the tick's REQ_SYNC_GC, which
 *     also acknowledges the outbox entries every configured peer is past
 *     and drops tombstones (every configured peer past them, or older than
 *     tombstone_ttl_s; dropping one by age keeps its pair as the key's
 *     dropped-tombstone record, and every drop raises the feed floor so
 *     that a reader below it reloads), and the records that expired.
 *   - the deleted-writes rule: an item for a key this node holds neither
 *     live nor as a tombstone is stale when the key's dropped-tombstone
 *     record is at or above its pair (sync_rule.h); only that key's.
 *
 * What it is not: a transport (the server's HTTP puller, or an
 * embedder's, calls these functions), nor the rule itself (sync_rule.c).
 *
 * Invariants: a batch is all or nothing (validated before it is queued;
 * one record); decisions are made once, by the writer, and logged; the
 * cursor lives in the same store transaction as the items it covers;
 * sync_mu is a leaf (held only to read or update the peer table).
 *
 * Threads: the API on any caller's thread (never the writer or the
 * committer); node_stage_sync and node_process_sync_gc on the writer;
 * node_sync_tick on the tick thread (or sa_client_sync_tick's caller);
 * node_sync_open on the opening thread.
 */
#include "node_internal.h"

#include "sync_rule.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static node_peer *peer_find(sa_client *c, const char *id, bool add);

/* ---- applying a peer's batch (writer) ------------------------------------------ */

/* A batch that applies nothing: no record, peer's cursor moves in memory
 * (node_peer.cursor), persisted by the next sync tick.  On the writer
 * (node_stage_sync) or, for an empty batch, on the caller's thread: the
 * puller waits for each batch's answer, so no earlier batch of the same
 * peer is still queued.  The store's cursor may lag a record answered but
 * not yet committed; comparing against it only marks the cursor dirty, and
 * the tick persists it after its drain, past that record (a raise: never
 * below it). */
static int sync_cursor_moved(sa_client *c, const char *peer, uint64_t cursor, sa_error *err) {
  uint64_t stored = 0;
  int rc = store_peer_get(c->store, 'c', peer, &stored, err);
  if (rc) return rc;
  pthread_mutex_lock(&c->sync_mu);
  node_peer *p = peer_find(c, peer, cursor != stored);
  if (p) {
    p->cursor = cursor;
    p->cursor_dirty = cursor != stored;
  }
  pthread_mutex_unlock(&c->sync_mu);
  return p || cursor == stored ? 0 : sa_fail(err, SA_ENOMEM, "out of memory recording a peer");
}

/* key's state for the rule once every write staged before is committed:
 * the group being prepared (gov: earlier requests, earlier items of this
 * batch), the groups not yet committed (wov), else the store (with the
 * key's dropped-tombstone record when it holds the key nowhere).  An entry
 * that knows no pair (hlc 0) defers to the next for the pair.  *version is
 * the key's version then, from the same lookups (node_version's order:
 * the first table that holds the key, else the store): looking it up
 * again cost a peer applying a stream two more probes of the tables per
 * item, and a second store read per key it did not hold. */
static int sync_key_state(sa_client *c, const char *key, uint32_t klen, int *held, sync_pair *hp,
                          const sync_pair **dropped, sync_pair *dp, store_state *st,
                          uint64_t *version, sa_error *err) {
  *dropped = NULL;
  const keyver_ent *g = keyver_get(&c->gov, key, klen);
  const keyver_ent *w = g && g->hlc ? NULL : keyver_get(&c->wov, key, klen);
  const keyver_ent *v = g ? g : w;                                /* the version */
  const keyver_ent *e = g && g->hlc ? g : w && w->hlc ? w : NULL; /* the pair */
  if (e) {
    *held = e->version ? SYNC_HELD_LIVE : SYNC_HELD_TOMB;
    const char *o = node_origin_name(c, e->origin);
    *hp = (sync_pair){e->hlc, o, strlen(o)};
    *version = v->version;
    return 0;
  }
  int rc = store_state_get(c->store, key, klen, st, err);
  if (rc) return rc;
  *held = st->kind; /* STORE_* and SYNC_HELD_* match */
  *hp = (sync_pair){st->hlc, st->origin, strlen(st->origin)};
  if (st->dropped) { /* held nowhere: the key's dropped-tombstone record */
    *dp = (sync_pair){st->dropped_hlc, st->dropped_origin, strlen(st->dropped_origin)};
    *dropped = dp;
  }
  *version = v ? v->version : st->kind == STORE_LIVE ? st->version : 0;
  return 0;
}

int node_stage_sync(sa_client *c, pgroup *g, wreq *r, uint64_t *lsn, sa_error *err) {
  sa_sync_apply_result *res = r->sres;
  memset(res, 0, sizeof *res);
  int rc;
  size_t n = r->n;
  if (n > c->ops_cap) {
    wal_op *o = realloc(c->ops, n * sizeof *o);
    if (!o) return sa_fail(err, SA_ENOMEM, "out of memory staging a sync batch of %zu", n);
    c->ops = o;
    c->ops_cap = n;
  }
  for (size_t i = 0; i < n; i++) /* later local writes win over all of it */
    sa_hlc_observe(&c->hlc, r->items[i].hlc);
  for (size_t i = 0; i < n; i++) {
    const sa_sync_item *it = &r->items[i];
    wal_op *o = &c->ops[i];
    o->op = it->op;
    o->key = it->key;
    o->klen = (uint32_t)strlen(it->key);
    o->val = it->data;
    o->vlen = it->op == SA_OP_PUT ? (uint32_t)it->len : 0;
    o->ctype = it->op == SA_OP_PUT ? it->content_type : NULL;
    o->ctlen = o->ctype ? (uint32_t)strlen(o->ctype) : 0;
    o->hlc = it->hlc;
    o->origin = it->origin;
    o->olen = (uint32_t)strlen(it->origin);
    o->origin_lsn = it->origin_lsn;
    o->seq = it->seq;
    int held;
    sync_pair hp, dp;
    const sync_pair *dropped;
    store_state st;
    uint64_t v;
    rc = sync_key_state(c, o->key, o->klen, &held, &hp, &dropped, &dp, &st, &v, err);
    if (rc) return rc;
    o->decision = sync_decide((sync_pair){o->hlc, o->origin, o->olen}, held, hp, dropped);
    if (o->decision == SYNC_APPLY) {
      uint32_t oid;
      if (node_origin_id(c, o->origin, o->olen, &oid) != 0 ||
          keyver_set_pair(&c->gov, o->key, o->klen, o->op == SA_OP_PUT ? v + 1 : 0, o->hlc, oid) !=
              0)
        return sa_fail(err, SA_ENOMEM, "out of memory staging a sync batch");
      res->applied++;
    } else if (o->decision == SYNC_STALE) {
      res->stale++;
    } else {
      res->skipped++;
    }
  }
  node_stat_add(&c->sc.applied, res->applied);
  node_stat_add(&c->sc.skipped, res->skipped);
  node_stat_add(&c->sc.stale, res->stale);
  if (!res->applied) return sync_cursor_moved(c, r->peer, r->cursor, err);
  size_t plen = strlen(r->peer);
  size_t size = wal_sync_record_size(plen, c->ops, n);
  if (node_reserve(g, g->used + size) != 0)
    return sa_fail(err, SA_ENOMEM, "out of memory encoding a %zu-byte sync record", size);
  uint64_t ts = sa_hlc_next(&c->hlc, node_now(c));
  size_t len =
      wal_sync_record_encode(g->buf + g->used, ++*lsn, ts, r->peer, plen, r->cursor, c->ops, n);
  assert(len == size);
  r->logged = true;
  r->res.lsn = *lsn;
  r->res.hlc = ts;
  res->lsn = *lsn;
  memcpy(r->res.origin, c->node_id, sizeof r->res.origin);
  g->used += len;
  g->logged++;
  g->ops += n;
  g->sync_ops += n;
  node_stat_add(&c->sc.batches, 1);
  pthread_mutex_lock(&c->sync_mu); /* the record carries the cursor now */
  node_peer *p = peer_find(c, r->peer, false);
  if (p) {
    p->cursor = 0;
    p->cursor_dirty = false;
  }
  pthread_mutex_unlock(&c->sync_mu);
  return 0;
}

/* ---- the API: applying ----------------------------------------------------------- */

/* Checks one item; SA_E* naming item i and the cause. */
static int sync_item_check(sa_client *c, const sa_sync_item *it, size_t i, uint64_t now,
                           size_t *bytes, sa_error *err) {
  if (it->op != SA_OP_PUT && it->op != SA_OP_DELETE)
    return sa_fail(err, SA_EINVAL, "sync item %zu: unknown op %d", i, it->op);
  if (!it->key) return sa_fail(err, SA_EKEY, "sync item %zu: key is NULL", i);
  size_t klen = strlen(it->key);
  sa_error ke;
  if (sa_key_check(it->key, klen, &ke) != 0)
    return sa_fail(err, SA_EKEY, "sync item %zu: %s", i, ke.message);
  if (it->op == SA_OP_PUT) {
    if (it->len > c->opts.max_value_bytes)
      return sa_fail(err, SA_ETOOBIG,
                     "sync item %zu (key '%.200s'): value is %zu bytes; the limit is %u bytes "
                     "(max_value_bytes)",
                     i, it->key, it->len, c->opts.max_value_bytes);
    if (it->len && !it->data)
      return sa_fail(err, SA_EINVAL, "sync item %zu: value data is NULL with length %zu", i,
                     it->len);
    if (it->content_type && sa_content_type_check(it->content_type, &ke) != 0)
      return sa_fail(err, SA_EINVAL, "sync item %zu (key '%.200s'): %s", i, it->key, ke.message);
  }
  if (!memchr(it->origin, 0, sizeof it->origin) || sa_node_id_check(it->origin, &ke) != 0)
    return sa_fail(err, SA_EINVAL, "sync item %zu (key '%.200s'): invalid origin node id", i,
                   it->key);
  if (it->hlc == 0)
    return sa_fail(err, SA_EINVAL, "sync item %zu (key '%.200s'): hlc is 0", i, it->key);
  uint64_t ms = sa_hlc_ms(it->hlc);
  if (ms > now + c->opts.max_clock_drift_ms)
    return sa_fail(err, SA_EDRIFT,
                   "sync item %zu (key '%.200s', origin '%s'): its clock is %llu ms ahead of "
                   "this node's; the limit is %u ms (max_clock_drift_ms)",
                   i, it->key, it->origin, (unsigned long long)(ms - now),
                   c->opts.max_clock_drift_ms);
  *bytes += klen + (it->op == SA_OP_PUT ? it->len : 0);
  return 0;
}

int sa_client_sync_apply(sa_client *c, const char *peer_id, const sa_sync_item *items, size_t n,
                         uint64_t cursor, sa_sync_apply_result *res, sa_error *err) {
  sa_sync_apply_result local;
  if (!res) res = &local;
  memset(res, 0, sizeof *res);
  if (!c) return sa_fail(err, SA_EINVAL, "client is NULL");
  sa_error ke;
  if (!peer_id || sa_node_id_check(peer_id, &ke) != 0)
    return sa_fail(err, SA_EINVAL, "sync batch: invalid peer id%s%s", peer_id ? ": " : " (NULL)",
                   peer_id ? ke.message : "");
  if (strcmp(peer_id, c->node_id) == 0) {
    node_stat_add(&c->sc.refused_invalid, 1);
    return sa_fail(err, SA_EINVAL, "sync batch: the peer claims this node's own id '%s'", peer_id);
  }
  if (n > SA_WAL_MAX_BATCH_OPS || (n && !items))
    return sa_fail(err, SA_EINVAL, "a sync batch holds 0 to %d items, not %zu",
                   SA_WAL_MAX_BATCH_OPS, items ? n : 0);
  if (__atomic_load_n(&c->read_only, __ATOMIC_ACQUIRE))
    return sa_fail(err, SA_EREADONLY, "%s", c->read_only_reason);
  uint64_t now = node_now(c);
  size_t bytes = 0, wal = 0;
  for (size_t i = 0; i < n; i++) {
    int rc = sync_item_check(c, &items[i], i, now, &bytes, err);
    if (rc) {
      node_stat_add(rc == SA_EDRIFT ? &c->sc.refused_drift : &c->sc.refused_invalid, 1);
      if (rc == SA_EDRIFT)
        node_log(c, SA_LOG_WARN, "sync: batch from '%s' refused: %s", peer_id,
                 err ? err->message : "clock drift");
      return rc;
    }
    wal += WAL_SYNC_ITEM_HEADER + SA_NODE_ID_MAX +
           (items[i].content_type ? strlen(items[i].content_type) : 0);
  }
  if (bytes > c->opts.max_batch_bytes) {
    node_stat_add(&c->sc.refused_invalid, 1);
    return sa_fail(err, SA_ETOOBIG,
                   "sync batch from '%s' is %zu bytes; the limit is %u bytes (max_batch_bytes)",
                   peer_id, bytes, c->opts.max_batch_bytes);
  }
  /* An empty batch only moves the cursor (a page of the peer's feed that
   * held nothing for this node, e.g. this node's own writes relayed back):
   * no trip through the writer (the tick persists the cursor). */
  if (n == 0) return sync_cursor_moved(c, peer_id, cursor, err);
  wreq r;
  memset(&r, 0, sizeof r);
  r.kind = REQ_SYNC;
  r.items = items;
  r.n = n;
  r.peer = peer_id;
  r.cursor = cursor;
  r.sres = res;
  r.bytes = SA_WAL_RECORD_HEADER + 64 + wal + bytes;
  int rc = node_submit(c, &r, err);
  if (rc) memset(res, 0, sizeof *res);
  return rc;
}

/* ---- the API: reads ------------------------------------------------------------- */

int sa_client_sync_read(sa_client *c, uint64_t since, size_t limit, const char *exclude_origin,
                        sa_sync_page *out, sa_error *err) {
  if (!out) return sa_fail(err, SA_EINVAL, "sa_client_sync_read: out is NULL");
  memset(out, 0, sizeof *out);
  if (!c) return sa_fail(err, SA_EINVAL, "client is NULL");
  if (limit == 0 || limit > 10000)
    return sa_fail(err, SA_EINVAL, "limit %zu is out of range (1..10000)", limit);
  /* No read barrier: the feed serves what the store holds.  A write
   * answered but not committed yet shows at the next store commit (within
   * store_commit_ms), and a long-poll wakes at commits (sa_client_wait).
   * Forcing a commit per page, as the barrier does, cost the write path
   * one store commit per page per peer (issue 22: 220-330 commits/s
   * against 60, PUT at c16 0.27x with two peers pulling). */
  int rc;
  uint64_t floor = store_sync_floor(c->store);
  if (since < floor)
    return sa_fail(err, SA_EGONE,
                   "changes after LSN %llu are no longer all kept: the oldest since served is "
                   "%llu; read a snapshot and follow from its position",
                   (unsigned long long)since, (unsigned long long)floor);
  /* Everything through last is committed: the read below sees it. */
  uint64_t last = __atomic_load_n(&c->last_lsn, __ATOMIC_ACQUIRE);
  if (exclude_origin && !*exclude_origin) exclude_origin = NULL;
  rc = store_sync_read(c->store, since, limit, exclude_origin, out, err);
  if (rc) return rc;
  /* The floor may have moved during the read (a GC): the page may miss a
   * dropped tombstone, so the reader must reload. */
  if (since < store_sync_floor(c->store)) {
    sa_sync_page_free(out);
    return sa_fail(err, SA_EGONE,
                   "changes after LSN %llu are no longer all kept: the oldest since served is "
                   "%llu; read a snapshot and follow from its position",
                   (unsigned long long)since, (unsigned long long)store_sync_floor(c->store));
  }
  /* Past the end: LSNs without a feed entry (a sync record that applied
   * nothing) are passed too, so a long-poll after next_since waits. */
  if (!out->more && last > out->next_since) out->next_since = last;
  out->last_lsn = last > out->next_since ? last : out->next_since;
  return 0;
}

void sa_sync_page_free(sa_sync_page *p) {
  if (!p) return;
  for (size_t i = 0; i < p->count; i++) {
    free(p->items[i].key);
    free(p->items[i].data);
    free(p->items[i].content_type);
  }
  free(p->items);
  memset(p, 0, sizeof *p);
}

int sa_client_sync_snapshot_ex(sa_client *c, int (*fn)(void *arg, const sa_sync_item *it),
                               int (*dropped_fn)(void *arg, const sa_sync_item *it), void *arg,
                               uint64_t *resume, sa_error *err) {
  if (resume) *resume = 0;
  if (!c || !fn) return sa_fail(err, SA_EINVAL, "sa_client_sync_snapshot: NULL argument");
  int rc = node_read_barrier(c, err);
  if (rc) return rc;
  return store_sync_snapshot(c->store, fn, dropped_fn, arg, node_now(c),
                             (uint64_t)c->opts.tombstone_ttl_s * 1000, resume, err);
}

struct sa_sync_snapshot {
  store_snap *w;
};

int sa_client_sync_snapshot_open(sa_client *c, bool with_dropped, sa_sync_snapshot **out,
                                 uint64_t *resume, sa_error *err) {
  if (out) *out = NULL;
  if (resume) *resume = 0;
  if (!c || !out) return sa_fail(err, SA_EINVAL, "sa_client_sync_snapshot_open: NULL argument");
  int rc = node_read_barrier(c, err);
  if (rc) return rc;
  sa_sync_snapshot *sn = calloc(1, sizeof *sn);
  if (!sn) return sa_fail(err, SA_ENOMEM, "out of memory opening a snapshot");
  rc = store_snap_open(c->store, with_dropped, node_now(c),
                       (uint64_t)c->opts.tombstone_ttl_s * 1000, &sn->w, resume, err);
  if (rc) {
    free(sn);
    return rc;
  }
  *out = sn;
  return 0;
}

int sa_sync_snapshot_next(sa_sync_snapshot *sn, sa_sync_item *it, bool *dropped, sa_error *err) {
  if (!sn || !it || !dropped)
    return sa_fail(err, SA_EINVAL, "sa_sync_snapshot_next: NULL argument");
  return store_snap_next(sn->w, it, dropped, err);
}

void sa_sync_snapshot_close(sa_sync_snapshot *sn) {
  if (!sn) return;
  store_snap_close(sn->w);
  free(sn);
}

int sa_client_sync_snapshot(sa_client *c, int (*fn)(void *arg, const sa_sync_item *it), void *arg,
                            uint64_t *resume, sa_error *err) {
  return sa_client_sync_snapshot_ex(c, fn, NULL, arg, resume, err);
}

uint64_t sa_client_sync_floor(sa_client *c) {
  return c ? store_sync_floor(c->store) : 0;
}

uint64_t sa_client_committed_lsn(sa_client *c) {
  return c ? __atomic_load_n(&c->last_lsn, __ATOMIC_ACQUIRE) : 0;
}

int sa_client_sync_digest(sa_client *c, char hex[65], uint64_t *keys, sa_error *err) {
  if (keys) *keys = 0;
  if (!c || !hex) return sa_fail(err, SA_EINVAL, "sa_client_sync_digest: NULL argument");
  hex[0] = 0;
  int rc = node_read_barrier(c, err);
  if (rc) return rc;
  return store_sync_digest(c->store, hex, keys, err);
}

int sa_client_sync_cursor(sa_client *c, const char *peer_id, uint64_t *cursor, sa_error *err) {
  if (cursor) *cursor = 0;
  if (!c || !cursor) return sa_fail(err, SA_EINVAL, "sa_client_sync_cursor: NULL argument");
  sa_error ke;
  if (!peer_id || sa_node_id_check(peer_id, &ke) != 0)
    return sa_fail(err, SA_EINVAL, "invalid peer id");
  int rc = node_read_barrier(c, err);
  if (rc == 0) rc = store_peer_get(c->store, 'c', peer_id, cursor, err);
  if (rc) return rc;
  pthread_mutex_lock(&c->sync_mu); /* moved by a batch that applied nothing */
  node_peer *p = peer_find(c, peer_id, false);
  if (p && p->cursor_dirty) *cursor = p->cursor;
  pthread_mutex_unlock(&c->sync_mu);
  return 0;
}

int sa_client_sync_counters(sa_client *c, sa_sync_counters *out, sa_error *err) {
  if (!c || !out) return sa_fail(err, SA_EINVAL, "sa_client_sync_counters: NULL argument");
  memset(out, 0, sizeof *out);
  (void)node_read_barrier(c, NULL);
  out->batches = __atomic_load_n(&c->sc.batches, __ATOMIC_RELAXED);
  out->applied = __atomic_load_n(&c->sc.applied, __ATOMIC_RELAXED);
  out->skipped = __atomic_load_n(&c->sc.skipped, __ATOMIC_RELAXED);
  out->stale = __atomic_load_n(&c->sc.stale, __ATOMIC_RELAXED);
  out->refused_drift = __atomic_load_n(&c->sc.refused_drift, __ATOMIC_RELAXED);
  out->refused_invalid = __atomic_load_n(&c->sc.refused_invalid, __ATOMIC_RELAXED);
  out->tombs_dropped = __atomic_load_n(&c->sc.tombs_dropped, __ATOMIC_RELAXED);
  out->tombs = store_tomb_count(c->store);
  out->dropped_records = store_dropped_count(c->store);
  out->dropped_expired = __atomic_load_n(&c->sc.dropped_expired, __ATOMIC_RELAXED);
  out->tombs_bytes = store_tomb_bytes(c->store);
  out->dropped_bytes = store_dropped_bytes(c->store);
  return 0;
}

/* ---- peers ------------------------------------------------------------------------ */

/* The entry of id in the table, added when add (NULL when absent or out of
 * memory).  With sync_mu held. */
static node_peer *peer_find(sa_client *c, const char *id, bool add) {
  for (size_t i = 0; i < c->npeers; i++)
    if (strcmp(c->peers[i].id, id) == 0) return &c->peers[i];
  if (!add) return NULL;
  if (c->npeers == c->peers_cap) {
    size_t cap = c->peers_cap ? 2 * c->peers_cap : 8;
    node_peer *p = realloc(c->peers, cap * sizeof *p);
    if (!p) return NULL;
    c->peers = p;
    c->peers_cap = cap;
  }
  node_peer *p = &c->peers[c->npeers++];
  memset(p, 0, sizeof *p);
  snprintf(p->id, sizeof p->id, "%s", id);
  return p;
}

int sa_client_sync_peer_ack(sa_client *c, const char *peer_id, uint64_t seq, sa_error *err) {
  if (!c) return sa_fail(err, SA_EINVAL, "client is NULL");
  sa_error ke;
  if (!peer_id || sa_node_id_check(peer_id, &ke) != 0)
    return sa_fail(err, SA_EINVAL, "invalid peer id");
  /* A puller has seen only what the store committed, and every committed
   * LSN was answered first: a position past both is not one this node
   * served (a hostile or confused peer, or one that pulled this node
   * before a restore and sends no epoch).  Taken, it would acknowledge
   * outbox work and drop tombstones the peer never had. */
  uint64_t committed = __atomic_load_n(&c->last_lsn, __ATOMIC_ACQUIRE);
  uint64_t answered = __atomic_load_n(&c->acked_lsn, __ATOMIC_ACQUIRE);
  uint64_t last = committed > answered ? committed : answered;
  if (seq > last)
    return sa_fail(err, SA_EINVAL,
                   "peer %s acknowledges position %llu, past this node's last LSN %llu: not a "
                   "position this node served (was it restored from a backup?)",
                   peer_id, (unsigned long long)seq, (unsigned long long)last);
  pthread_mutex_lock(&c->sync_mu);
  node_peer *p = peer_find(c, peer_id, true);
  if (p && seq > p->acked) {
    p->acked = seq;
    p->dirty = true;
  }
  pthread_mutex_unlock(&c->sync_mu);
  return p ? 0 : sa_fail(err, SA_ENOMEM, "out of memory recording a peer");
}

uint64_t sa_client_sync_peer_acked(sa_client *c, const char *peer_id) {
  if (!c || !peer_id) return 0;
  pthread_mutex_lock(&c->sync_mu);
  node_peer *p = peer_find(c, peer_id, false);
  uint64_t v = p ? p->acked : 0;
  pthread_mutex_unlock(&c->sync_mu);
  return v;
}

int sa_client_sync_set_peers(sa_client *c, const char *const *peer_ids, size_t n, sa_error *err) {
  if (!c || (n && !peer_ids))
    return sa_fail(err, SA_EINVAL, "sa_client_sync_set_peers: NULL argument");
  sa_error ke;
  for (size_t i = 0; i < n; i++)
    if (!peer_ids[i] || sa_node_id_check(peer_ids[i], &ke) != 0)
      return sa_fail(err, SA_EINVAL, "peer %zu: invalid node id", i);
  int rc = 0;
  pthread_mutex_lock(&c->sync_mu);
  for (size_t i = 0; i < c->npeers; i++)
    c->peers[i].configured = false;
  for (size_t i = 0; i < n && !rc; i++) {
    node_peer *p = peer_find(c, peer_ids[i], true);
    if (p)
      p->configured = true;
    else
      rc = sa_fail(err, SA_ENOMEM, "out of memory recording a peer");
  }
  c->peers_configured = n > 0;
  pthread_mutex_unlock(&c->sync_mu);
  return rc;
}

int sa_client_sync_set_unknown_peers(sa_client *c, size_t n) {
  if (!c) return SA_EINVAL;
  pthread_mutex_lock(&c->sync_mu);
  c->peers_unknown = n;
  pthread_mutex_unlock(&c->sync_mu);
  return 0;
}

int sa_client_sync_keep_tombstones(sa_client *c, bool by_ttl_only) {
  if (!c) return SA_EINVAL;
  pthread_mutex_lock(&c->sync_mu);
  c->tombs_by_ttl_only = by_ttl_only;
  pthread_mutex_unlock(&c->sync_mu);
  return 0;
}

bool node_sync_peers_configured(sa_client *c) {
  pthread_mutex_lock(&c->sync_mu);
  bool yes = c->peers_configured;
  pthread_mutex_unlock(&c->sync_mu);
  return yes;
}

static void peer_load(void *arg, const char *peer, uint64_t val) {
  sa_client *c = arg;
  node_peer *p = peer_find(c, peer, true);
  if (!p) return;
  if (val > c->last_lsn) {
    /* Past every LSN this node has: not a position it served.  Pullers
     * before this check sent such an acked after a snapshot catch-up (the
     * epoch's 16 zeros glued to it), so the peer looked past everything,
     * for good.  Forgotten (rewritten as 0 at the next tick): its next
     * pull acknowledges what it really has; until then nothing counts as
     * seen by it. */
    p->acked = 0;
    p->dirty = true;
    return;
  }
  if (val > p->acked) p->acked = val;
}

int node_sync_open(sa_client *c, sa_error *err) {
  pthread_mutex_lock(&c->sync_mu);
  int rc = store_peer_each(c->store, 'a', peer_load, c, err);
  pthread_mutex_unlock(&c->sync_mu);
  return rc;
}

/* ---- the sync tick: acks, tombstone GC, dropped-tombstone records ---------------- */

/* What a REQ_SYNC_GC request carries (wreq.gc). */
typedef struct sync_gc {
  uint64_t min_ack;  /* every configured peer's position (0: no peers) */
  uint64_t tomb_ack; /* min_ack, or 0 when tombstones go by age only (a hub) */
  uint64_t now;
  node_peer *dirty; /* copies of the acks and cursors to persist */
  size_t ndirty;
  bool tombs;              /* walk the tombstones and the dropped-tombstone records */
  uint64_t dropped, floor; /* out */
  /* sa_client_sync_peer_set_epoch: the peer's feed epoch to store (epoch_peer
   * NULL: none), and with epoch_reset its cursor set back to 0. */
  const char *epoch_peer;
  uint64_t epoch;
  bool epoch_reset;
  char epoch_kind; /* 'e': the peer's epoch; 's': this node's epoch noted for that peer */
} sync_gc;

typedef struct {
  uint64_t upto, now;
  outbox_delta *d;
  uint64_t last; /* the last entry visited */
} ack_ctx;

static int ack_visit(store_obx *e, void *arg) {
  ack_ctx *a = arg;
  if (e->lsn > a->upto) return STORE_OBX_STOP;
  a->last = e->lsn;
  if (e->state != STORE_OUTBOX_QUEUED && e->state != STORE_OUTBOX_IN_FLIGHT) return STORE_OBX_KEEP;
  a->d->by_state[e->state]--;
  a->d->by_state[STORE_OUTBOX_ACKED]++;
  e->state = STORE_OUTBOX_ACKED;
  e->at_ms = a->now;
  return STORE_OBX_UPDATE;
}

void node_process_sync_gc(sa_client *c, wreq *r) {
  assert(sa_worker_is_self(&c->wr)); /* docs/threads.md: outbox txns are the writer's */
  sync_gc *gc = r->gc;
  sa_error e = {0};
  if (__atomic_load_n(&c->read_only, __ATOMIC_ACQUIRE)) {
    r->rc = sa_fail(&r->err, SA_EREADONLY, "%s", c->read_only_reason);
    return;
  }
  outbox_delta d;
  memset(&d, 0, sizeof d);
  store_wtxn *t;
  int rc = store_wbegin(c->store, &t, &e);
  uint64_t upto = __atomic_load_n(&c->acked_upto, __ATOMIC_RELAXED);
  if (rc == 0 && gc->min_ack > upto) {
    ack_ctx a = {.upto = gc->min_ack, .now = gc->now, .d = &d};
    rc = store_wobx_each(t, upto + 1, ack_visit, &a, &e);
  }
  store_gc_result g = {0};
  if (rc == 0 && gc->tombs)
    rc = store_wtomb_gc(t, gc->tomb_ack, gc->now, (uint64_t)c->opts.tombstone_ttl_s * 1000, &g, &e);
  uint64_t max_lsn = g.max_lsn;
  gc->dropped = g.dropped;
  for (size_t i = 0; rc == 0 && i < gc->ndirty; i++) {
    const node_peer *p = &gc->dirty[i];
    if (p->dirty) rc = store_wpeer_put(t, 'a', p->id, p->acked, &e);
    if (rc == 0 && p->cursor_dirty) rc = store_wpeer_raise(t, 'c', p->id, p->cursor, &e);
  }
  if (rc == 0 && gc->epoch_peer) { /* after the raises: a reset wins */
    rc = store_wpeer_put(t, gc->epoch_kind, gc->epoch_peer, gc->epoch, &e);
    if (rc == 0 && gc->epoch_reset) rc = store_wpeer_put(t, 'c', gc->epoch_peer, 0, &e);
  }
  if (rc == 0) {
    if (max_lsn) store_wraise_sync_floor(t, max_lsn); /* a reader below a dropped tomb reloads */
    rc = store_wcommit(t, store_applied_lsn(c->store), c->hlc.last, &e);
  } else if (t) {
    store_wabort(t);
  }
  if (rc) {
    r->rc = rc;
    r->err = e;
    return;
  }
  if (gc->min_ack > upto) __atomic_store_n(&c->acked_upto, gc->min_ack, __ATOMIC_RELAXED);
  /* The writer's overlay may still hold a dropped tombstone's pair; the
   * store holds every staged write (drained before this request): the rule
   * reads the store from here on. */
  if (gc->dropped) node_overlay_reset(c);
  gc->floor = max_lsn;
  node_stat_add(&c->sc.tombs_dropped, gc->dropped);
  node_stat_add(&c->sc.dropped_expired, g.expired);
  node_apply_delta(c, &d);
}

int node_sync_tick(sa_client *c, sa_error *err) {
  sync_gc gc;
  memset(&gc, 0, sizeof gc);
  gc.now = node_now(c);
  pthread_mutex_lock(&c->sync_mu);
  bool any = false;
  uint64_t min_ack = UINT64_MAX;
  for (size_t i = 0; i < c->npeers; i++) {
    if (c->peers[i].configured) {
      any = true;
      if (c->peers[i].acked < min_ack) min_ack = c->peers[i].acked;
    }
    gc.ndirty += c->peers[i].dirty || c->peers[i].cursor_dirty;
  }
  node_peer *dirty = gc.ndirty ? malloc(gc.ndirty * sizeof *dirty) : NULL;
  size_t k = 0;
  for (size_t i = 0; dirty && i < c->npeers; i++)
    if (c->peers[i].dirty || c->peers[i].cursor_dirty) {
      dirty[k++] = c->peers[i];
      c->peers[i].dirty = c->peers[i].cursor_dirty = false;
    }
  if (c->peers_unknown) { /* a configured peer not heard from yet is at position 0 */
    any = true;
    min_ack = 0;
  }
  bool ttl_only = c->tombs_by_ttl_only;
  pthread_mutex_unlock(&c->sync_mu);
  gc.dirty = dirty;
  gc.ndirty = dirty ? gc.ndirty : 0;
  gc.min_ack = any ? min_ack : 0;
  gc.tomb_ack = ttl_only ? 0 : gc.min_ack;
  /* The tombstones are walked when the peers moved, or when some may have
   * aged out (at most every ttl / 16, capped at a minute): not at every
   * tick, which would walk every tombstone every second on the writer. */
  uint64_t ttl_ms = (uint64_t)c->opts.tombstone_ttl_s * 1000;
  uint64_t step = ttl_ms / 16 < 60000 ? ttl_ms / 16 : 60000;
  bool walk = (gc.min_ack > c->gc_ack || gc.now >= c->gc_next_ms) &&
              (store_tomb_count(c->store) || store_dropped_count(c->store));
  gc.tombs = walk;
  if (!gc.ndirty && gc.min_ack <= __atomic_load_n(&c->acked_upto, __ATOMIC_RELAXED) && !walk) {
    free(dirty);
    return 0;
  }
  wreq r;
  memset(&r, 0, sizeof r);
  r.kind = REQ_SYNC_GC;
  r.gc = &gc;
  int rc = node_submit(c, &r, err);
  if (rc == 0 && walk) {
    c->gc_ack = gc.min_ack;
    c->gc_next_ms = gc.now + step;
  }
  if (rc && dirty) { /* persist them next time */
    pthread_mutex_lock(&c->sync_mu);
    for (size_t i = 0; i < gc.ndirty; i++) {
      node_peer *p = peer_find(c, dirty[i].id, false);
      if (p && dirty[i].dirty) p->dirty = true;
      if (p && dirty[i].cursor_dirty && p->cursor == dirty[i].cursor) p->cursor_dirty = true;
    }
    pthread_mutex_unlock(&c->sync_mu);
  }
  free(dirty);
  return rc;
}

/* ---- a peer's epoch ------------------------------------------------------------- */

static int peer_epoch_get(sa_client *c, char kind, const char *peer_id, uint64_t *epoch,
                          sa_error *err) {
  if (epoch) *epoch = 0;
  if (!c || !epoch) return sa_fail(err, SA_EINVAL, "sa_client_sync_peer_epoch: NULL argument");
  sa_error ke;
  if (!peer_id || sa_node_id_check(peer_id, &ke) != 0)
    return sa_fail(err, SA_EINVAL, "invalid peer id");
  int rc = node_read_barrier(c, err);
  return rc ? rc : store_peer_get(c->store, kind, peer_id, epoch, err);
}

int sa_client_sync_peer_epoch(sa_client *c, const char *peer_id, uint64_t *epoch, sa_error *err) {
  return peer_epoch_get(c, 'e', peer_id, epoch, err);
}

int sa_client_sync_peer_self_epoch(sa_client *c, const char *peer_id, uint64_t *epoch,
                                   sa_error *err) {
  return peer_epoch_get(c, 's', peer_id, epoch, err);
}

/* One store transaction on the writer (a REQ_SYNC_GC of its own), under
 * tick_serial: no tick holds a copy of this peer's dirty cursor taken
 * before the reset, which its GC would raise back after it. */
static int peer_epoch_set(sa_client *c, char kind, const char *peer_id, uint64_t epoch,
                          bool reset_cursor, sa_error *err) {
  if (!c) return sa_fail(err, SA_EINVAL, "client is NULL");
  sa_error ke;
  if (!peer_id || sa_node_id_check(peer_id, &ke) != 0)
    return sa_fail(err, SA_EINVAL, "invalid peer id");
  pthread_mutex_lock(&c->tick_serial);
  pthread_mutex_lock(&c->sync_mu);
  node_peer *p = peer_find(c, peer_id, false);
  if (p && reset_cursor) {
    p->cursor = 0;
    p->cursor_dirty = false;
  }
  pthread_mutex_unlock(&c->sync_mu);
  sync_gc gc;
  memset(&gc, 0, sizeof gc);
  gc.now = node_now(c);
  gc.epoch_peer = peer_id;
  gc.epoch = epoch;
  gc.epoch_reset = reset_cursor;
  gc.epoch_kind = kind;
  wreq r;
  memset(&r, 0, sizeof r);
  r.kind = REQ_SYNC_GC;
  r.gc = &gc;
  int rc = node_submit(c, &r, err);
  pthread_mutex_unlock(&c->tick_serial);
  return rc;
}

int sa_client_sync_peer_set_epoch(sa_client *c, const char *peer_id, uint64_t epoch,
                                  bool reset_cursor, sa_error *err) {
  return peer_epoch_set(c, 'e', peer_id, epoch, reset_cursor, err);
}

int sa_client_sync_peer_set_self_epoch(sa_client *c, const char *peer_id, uint64_t epoch,
                                       sa_error *err) {
  return peer_epoch_set(c, 's', peer_id, epoch, false, err);
}
