/*
 * store_sync.c -- the store's side of sync between nodes: a key's state
 * (live, tombstone or unknown, with its pair, and its dropped-tombstone
 * record), the tombstones' GC and the dropped-tombstone records, peer
 * cursors and acknowledged positions, and the three reads a peer makes:
 * the state-based feed (store_sync_read), the snapshot and the digest.
 *
 * What it is not: the conflict rule (sync_rule.c), the decisions (the
 * node's writer), the apply itself (node_apply_record with store_wput and
 * store_wdel of store_write.c).
 *
 * Invariants: a key is in kv or in tombs or in neither; every read here
 * runs in one read transaction and copies out before it ends; the feed
 * serves a key only at the LSN of its current state, with that state's
 * pair, so a change that was overwritten is never sent.
 *
 * Threads: store_w* on the write transaction's owner (asserted); the
 * reads on any thread.
 */
#include "hash.h"
#include "store_internal.h"

#include "sync_rule.h"
#include "wal.h"

#include <stdlib.h>
#include <string.h>

/* ---- a key's state ---------------------------------------------------------- */

/* key's live entry, else its tombstone, in txn: *kind and *e (into the map). */
static int store_find_state(sa_store *s, MDB_txn *txn, const char *key, size_t klen, int *kind,
                            kv_entry *e, sa_error *err) {
  unsigned char kb[KV_LONG];
  MDB_val k, v;
  bool found;
  *kind = STORE_NONE;
  int rc = store_db_find(s, txn, s->kv, key, klen, kb, &k, &v, &found);
  if (rc == 0 && !found) {
    rc = store_db_find(s, txn, s->tombs, key, klen, kb, &k, &v, &found);
    if (rc == 0 && found) *kind = STORE_TOMB;
  } else if (rc == 0) {
    *kind = STORE_LIVE;
  }
  if (rc) return store_err(s, rc, "state", err);
  if (found && store_kv_decode(&k, &v, e) != 0)
    return sa_fail(err, SA_ECORRUPT, "store '%s': malformed entry", s->path);
  return 0;
}

/* key's dropped-tombstone record into st (st->dropped false when none). */
static int store_txn_dropped(sa_store *s, MDB_txn *txn, const char *key, size_t klen,
                             store_state *st, sa_error *err) {
  unsigned char kb[KV_LONG];
  MDB_val k, v;
  bool found;
  kv_entry e;
  int rc = store_db_find(s, txn, s->dropped, key, klen, kb, &k, &v, &found);
  if (rc) return store_err(s, rc, "dropped-tombstone record", err);
  if (!found) return 0;
  if (store_drop_decode(&k, &v, &e) != 0)
    return sa_fail(err, SA_ECORRUPT, "store '%s': malformed dropped-tombstone record", s->path);
  st->dropped = true;
  st->dropped_hlc = e.hlc;
  store_entry_origin(s, &e, st->dropped_origin);
  return 0;
}

int store_txn_state(sa_store *s, MDB_txn *txn, const char *key, uint32_t klen, store_state *st,
                    sa_error *err) {
  kv_entry e;
  memset(st, 0, sizeof *st);
  int rc = store_find_state(s, txn, key, klen, &st->kind, &e, err);
  if (rc) return rc;
  if (st->kind == STORE_NONE) return store_txn_dropped(s, txn, key, klen, st, err);
  st->lsn = e.lsn;
  st->hlc = e.hlc;
  if (st->kind == STORE_LIVE)
    st->version = e.version;
  else
    st->at_ms = e.version;
  store_entry_origin(s, &e, st->origin);
  return 0;
}

int store_state_get(sa_store *s, const char *key, uint32_t klen, store_state *st, sa_error *err) {
  MDB_txn *txn;
  int rc = store_rbegin(s, &txn, err);
  if (rc) return rc;
  rc = store_txn_state(s, txn, key, klen, st, err);
  store_rend(s, txn);
  return rc;
}

/* ---- peers -------------------------------------------------------------------- */

static size_t store_peer_key(unsigned char kb[1 + SA_NODE_ID_MAX], char kind, const char *peer) {
  size_t n = strlen(peer);
  if (n > SA_NODE_ID_MAX) n = SA_NODE_ID_MAX;
  kb[0] = (unsigned char)kind;
  memcpy(kb + 1, peer, n);
  return n + 1;
}

int store_wpeer_put(store_wtxn *t, char kind, const char *peer, uint64_t val, sa_error *err) {
  assert(store_w_owned(t));
  unsigned char kb[1 + SA_NODE_ID_MAX], vb[8];
  MDB_val k = {store_peer_key(kb, kind, peer), kb}, v = {8, vb};
  sa_put_u64(vb, val);
  int rc = mdb_put(t->txn, t->s->peers, &k, &v, 0);
  return rc ? store_err(t->s, rc, "peer record", err) : 0;
}

int store_wpeer_raise(store_wtxn *t, char kind, const char *peer, uint64_t val, sa_error *err) {
  assert(store_w_owned(t));
  unsigned char kb[1 + SA_NODE_ID_MAX];
  MDB_val k = {store_peer_key(kb, kind, peer), kb}, v;
  int rc = mdb_get(t->txn, t->s->peers, &k, &v);
  if (rc == 0 && v.mv_size == 8 && sa_get_u64(v.mv_data) >= val) return 0;
  if (rc && rc != MDB_NOTFOUND) return store_err(t->s, rc, "peer record", err);
  return store_wpeer_put(t, kind, peer, val, err);
}

int store_peer_get(sa_store *s, char kind, const char *peer, uint64_t *val, sa_error *err) {
  *val = 0;
  MDB_txn *txn;
  int rc = store_rbegin(s, &txn, err);
  if (rc) return rc;
  unsigned char kb[1 + SA_NODE_ID_MAX];
  MDB_val k = {store_peer_key(kb, kind, peer), kb}, v;
  rc = mdb_get(txn, s->peers, &k, &v);
  if (rc == 0 && v.mv_size == 8) *val = sa_get_u64(v.mv_data);
  store_rend(s, txn);
  if (rc && rc != MDB_NOTFOUND) return store_err(s, rc, "peer record", err);
  return 0;
}

int store_peer_each(sa_store *s, char kind, void (*fn)(void *arg, const char *peer, uint64_t val),
                    void *arg, sa_error *err) {
  MDB_txn *txn;
  MDB_cursor *cur;
  int rc = store_rbegin(s, &txn, err);
  if (rc) return rc;
  if ((rc = mdb_cursor_open(txn, s->peers, &cur)) != 0) {
    store_rend(s, txn);
    return store_err(s, rc, "peer records", err);
  }
  unsigned char kb[1] = {(unsigned char)kind};
  MDB_val k = {1, kb}, v;
  rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
  while (rc == 0 && k.mv_size > 1 && k.mv_size <= 1 + SA_NODE_ID_MAX &&
         ((unsigned char *)k.mv_data)[0] == (unsigned char)kind) {
    char peer[SA_NODE_ID_MAX + 1];
    memcpy(peer, (char *)k.mv_data + 1, k.mv_size - 1);
    peer[k.mv_size - 1] = 0;
    if (v.mv_size == 8) fn(arg, peer, sa_get_u64(v.mv_data));
    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
  }
  mdb_cursor_close(cur);
  store_rend(s, txn);
  if (rc && rc != MDB_NOTFOUND) return store_err(s, rc, "peer records", err);
  return 0;
}

/* ---- tombstones: GC and the dropped-tombstone records -------------------------- *
 *
 * A tombstone goes once every configured peer acknowledged it (then every
 * peer has it: nothing is kept), or by age (tombstone_ttl_s).  One dropped
 * by age may not have reached a peer that is away; that peer may come back
 * with an older write of the key, or with the key's old value, and the
 * other nodes must know the key was deleted.  So its pair is kept in the
 * dropped database, per key: an op for a key this node does not hold is
 * stale when the key's record is at or above it (sync_rule.h), and a
 * snapshot carries the records, so a node catching up from it removes
 * exactly its own keys that were deleted, with the delete's own pair.
 *
 * Why the full key and not a hash of it: a record must never refuse a
 * write of another key -- a 64-bit hash collision (FNV is not collision-
 * resistant: keys can be made to collide) would drop a write nobody
 * deleted, the very loss the records exist to prevent; and the node
 * catching up needs the key's name to find its own copy (a hash would make
 * it hash every key it holds).  A record is a tombstone without at_ms, lsn
 * and flags: 12 bytes of header + the key + the origin (none for this
 * node's deletes).  Measured (tests/bench/dropped.sh): 100,000 records of
 * 16-byte keys deleted on a peer ("node-a") take 4.5 MB of LMDB pages (45
 * bytes a record; the tombstones they replace took 7.0 MB, 70 bytes); a
 * 64-bit hash in the key's place would save 8 of those bytes here; a Bloom
 * filter would take about 120 KB (1% false positives), but each false
 * positive would be a lost write.  Deciding 100,000 old puts of keys with
 * no record against them costs nothing measurable (the same rate as on a
 * node without records: one more B-tree lookup per item, in the same read
 * transaction as the key's own state).
 *
 * Bounded by age: a record goes once its delete is 2 x tombstone_ttl_s old
 * by the delete's own hlc (sync_dropped_expired), the same moment on
 * every node: the tombstone a catch-up writes from a record leaves no
 * record past it, so a delete is not kept alive by being passed around; a
 * node away longer may bring the key back (as Cassandra's
 * gc_grace_seconds). */

void store_wraise_sync_floor(store_wtxn *t, uint64_t lsn) {
  if (lsn > t->sfloor) t->sfloor = lsn;
}

uint64_t store_sync_floor(const sa_store *s) {
  uint64_t f = store_feed_floor(s), g = __atomic_load_n(&s->sync_floor, __ATOMIC_ACQUIRE);
  return f > g ? f : g;
}

uint64_t store_tomb_count(sa_store *s) {
  return store_entries(s, s->tombs);
}

uint64_t store_dropped_count(sa_store *s) {
  return store_entries(s, s->dropped);
}

static uint64_t store_db_bytes(sa_store *s, MDB_dbi dbi) {
  MDB_txn *txn;
  MDB_stat st;
  if (store_rbegin(s, &txn, NULL) != 0) return 0;
  int rc = mdb_stat(txn, dbi, &st);
  store_rend(s, txn);
  if (rc) return 0;
  return (uint64_t)(st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages) * st.ms_psize;
}

uint64_t store_tomb_bytes(sa_store *s) {
  return store_db_bytes(s, s->tombs);
}

uint64_t store_dropped_bytes(sa_store *s) {
  return store_db_bytes(s, s->dropped);
}

/* Raises key's record in the dropped database to the pair (hlc, origin) of
 * e (a tombstone being dropped). */
static int store_wdrop_raise(store_wtxn *t, const kv_entry *e, sa_error *err) {
  sa_store *s = t->s;
  unsigned char kb[KV_LONG];
  MDB_val k, v;
  bool found;
  int rc = store_db_find(s, t->txn, s->dropped, e->key, e->klen, kb, &k, &v, &found);
  if (rc) return store_err(s, rc, "dropped-tombstone record", err);
  if (found) {
    kv_entry d;
    if (store_drop_decode(&k, &v, &d) != 0)
      return sa_fail(err, SA_ECORRUPT, "store '%s': malformed dropped-tombstone record", s->path);
    char o1[SA_NODE_ID_MAX + 1], o2[SA_NODE_ID_MAX + 1];
    store_entry_origin(s, &d, o1);
    store_entry_origin(s, e, o2);
    if (sync_pair_cmp(d.hlc, o1, strlen(o1), e->hlc, o2, strlen(o2)) >= 0) return 0;
  }
  uint32_t f = e->klen > KV_INLINE_MAX ? (uint32_t)e->klen : 0;
  v.mv_size = DROP_HEADER + (size_t)f + e->olen;
  v.mv_data = NULL;
  if ((rc = mdb_put(t->txn, s->dropped, &k, &v, MDB_RESERVE)) != 0)
    return store_err(s, rc, "dropped-tombstone record", err);
  unsigned char *p = v.mv_data;
  sa_put_u64(p, e->hlc);
  sa_put_u16(p + 8, (uint16_t)f);
  p[10] = (unsigned char)e->olen; /* 0: this node, as in kv */
  p[11] = 0;
  if (f) memcpy(p + DROP_HEADER, e->key, f);
  if (e->olen) memcpy(p + DROP_HEADER + f, e->origin, e->olen);
  return 0;
}

int store_wtomb_gc(store_wtxn *t, uint64_t acked, uint64_t now_ms, uint64_t ttl_ms,
                   store_gc_result *out, sa_error *err) {
  assert(store_w_owned(t));
  MDB_cursor *cur;
  int rc = mdb_cursor_open(t->txn, t->s->tombs, &cur);
  if (rc) return store_err(t->s, rc, "tombstone walk", err);
  MDB_val k, v;
  int code = 0;
  rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
  while (rc == 0) {
    kv_entry e;
    if (store_kv_decode(&k, &v, &e) != 0) {
      code = sa_fail(err, SA_ECORRUPT, "store '%s': malformed tombstone", t->s->path);
      break;
    }
    bool by_ack = acked && e.lsn <= acked;
    bool by_age = e.version + ttl_ms <= now_ms; /* version: at_ms */
    if (by_ack || by_age) {
      /* The record first: e points into the tombstone's page. */
      if (!by_ack && !sync_dropped_expired(e.hlc, now_ms, ttl_ms)) {
        if ((code = store_wdrop_raise(t, &e, err)) != 0) break;
        out->recorded++;
      }
      if ((rc = mdb_cursor_del(cur, 0)) != 0) break;
      out->dropped++;
      if (e.lsn > out->max_lsn) out->max_lsn = e.lsn;
    }
    /* After mdb_cursor_del, MDB_NEXT yields the entry that followed. */
    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
  }
  if (!code && rc && rc != MDB_NOTFOUND) code = store_err(t->s, rc, "tombstone walk", err);
  mdb_cursor_close(cur);
  if (code) return code;
  /* The records that expired. */
  if ((rc = mdb_cursor_open(t->txn, t->s->dropped, &cur)) != 0)
    return store_err(t->s, rc, "dropped-tombstone walk", err);
  rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
  while (rc == 0) {
    kv_entry e;
    if (store_drop_decode(&k, &v, &e) != 0) {
      code =
          sa_fail(err, SA_ECORRUPT, "store '%s': malformed dropped-tombstone record", t->s->path);
      break;
    }
    if (sync_dropped_expired(e.hlc, now_ms, ttl_ms)) {
      if ((rc = mdb_cursor_del(cur, 0)) != 0) break;
      out->expired++;
    }
    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
  }
  if (!code && rc && rc != MDB_NOTFOUND) code = store_err(t->s, rc, "dropped-tombstone walk", err);
  mdb_cursor_close(cur);
  return code;
}

/* ---- the state-based feed ------------------------------------------------------ */

static void sync_items_free(sa_sync_item *it, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(it[i].key);
    free(it[i].data);
    free(it[i].content_type);
  }
  free(it);
}

/* Fills *it from key's state e (kind) at lsn; copies key and value. */
static int sync_item_fill(sa_store *s, sa_sync_item *it, uint64_t lsn, int kind, const kv_entry *e,
                          uint64_t origin_lsn, sa_error *err) {
  memset(it, 0, sizeof *it);
  it->seq = lsn;
  it->op = kind == STORE_LIVE ? SA_OP_PUT : SA_OP_DELETE;
  it->hlc = e->hlc;
  it->origin_lsn = origin_lsn;
  store_entry_origin(s, e, it->origin);
  it->key = malloc(e->klen + 1);
  it->len = kind == STORE_LIVE ? e->vlen : 0;
  if (kind == STORE_LIVE) it->data = malloc(e->vlen + 1);
  int ctrc = kind == STORE_LIVE ? store_entry_ctype_dup(e, &it->content_type) : 0;
  if (!it->key || (kind == STORE_LIVE && !it->data) || ctrc != 0) {
    free(it->key);
    free(it->data);
    free(it->content_type);
    it->key = it->data = it->content_type = NULL;
    return sa_fail(err, SA_ENOMEM, "out of memory reading the sync feed");
  }
  memcpy(it->key, e->key, e->klen);
  it->key[e->klen] = 0;
  if (kind == STORE_LIVE) {
    memcpy(it->data, e->val, e->vlen);
    it->data[e->vlen] = 0;
  }
  return 0;
}

int store_sync_read(sa_store *s, uint64_t since, size_t limit, const char *exclude,
                    sa_sync_page *out, sa_error *err) {
  memset(out, 0, sizeof *out);
  out->next_since = since;
  MDB_txn *txn;
  MDB_cursor *cur;
  int rc = store_rbegin(s, &txn, err);
  if (rc) return rc;
  if ((rc = mdb_cursor_open(txn, s->ops, &cur)) != 0) {
    store_rend(s, txn);
    return store_err(s, rc, "feed cursor", err);
  }
  size_t cap = limit + 16, n = 0;
  /* Records whose items are all left out (excluded, overwritten) still
   * cost a visit: a page visits at most this many records. */
  size_t visits = 0, max_visits = limit * 8 + 4096;
  sa_sync_item *items = calloc(cap, sizeof *items);
  uint64_t *hashes = NULL; /* of the keys emitted for the current record */
  int code = items ? 0 : sa_fail(err, SA_ENOMEM, "out of memory reading the sync feed");
  unsigned char kb[8];
  store_obx_key(kb, since + 1);
  MDB_val k = {8, kb}, v;
  rc = code || since == UINT64_MAX ? MDB_NOTFOUND : mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
  while (!code && rc == 0) {
    if (n >= limit || visits >= max_visits) {
      out->more = true;
      break;
    }
    visits++;
    int type;
    uint64_t hlc, lsn = store_obx_key_lsn(&k);
    const unsigned char *vers, *pay;
    uint32_t nver, len, count;
    if (store_ops_decode(&v, &type, &hlc, &vers, &nver, &pay, &len) != 0 ||
        wal_payload_check(type, pay, len, &count) != 0 || count != nver) {
      code = sa_fail(err, SA_ECORRUPT, "store '%s': malformed operation %llu", s->path,
                     (unsigned long long)lsn);
      break;
    }
    if (n + count > cap) {
      sa_sync_item *grown = realloc(items, (n + count) * sizeof *items);
      if (!grown) {
        code = sa_fail(err, SA_ENOMEM, "out of memory reading the sync feed");
        break;
      }
      items = grown;
      cap = n + count;
    }
    if (count > 1 && !hashes && !(hashes = malloc(SA_WAL_MAX_BATCH_OPS * sizeof *hashes))) {
      code = sa_fail(err, SA_ENOMEM, "out of memory reading the sync feed");
      break;
    }
    size_t first = n;
    wal_op_iter it;
    wal_op op;
    wal_op_iter_init(&it, type, pay, len);
    size_t xl = exclude ? strlen(exclude) : 0;
    while (!code && wal_op_next(&it, &op)) {
      int kind;
      kv_entry e;
      /* An op written by the puller is left out before its key is looked
       * up: if it made the key's state, that state's origin is the
       * puller's (checked below); if not, it is left out anyway.  A page
       * of a peer's own writes relayed back costs no lookups. */
      if (exclude && (op.origin ? op.olen == xl && memcmp(op.origin, exclude, xl) == 0
                                : strcmp(exclude, s->node_id) == 0)) {
        out->excluded++;
        continue;
      }
      if ((code = store_find_state(s, txn, op.key, op.klen, &kind, &e, err)) != 0) break;
      /* Only the key's current state, at the LSN that made it. */
      if (kind == STORE_NONE || e.lsn != lsn || (kind == STORE_LIVE) != (op.op == SA_OP_PUT))
        continue;
      uint64_t h = 0;
      if (count > 1) { /* a batch touching a key twice: one item */
        h = sa_fnv1a(op.key, op.klen);
        bool dup = false;
        for (size_t j = first; j < n && !dup; j++)
          dup = hashes[j - first] == h && strlen(items[j].key) == op.klen &&
                memcmp(items[j].key, op.key, op.klen) == 0;
        if (dup) continue;
      }
      if (exclude) { /* never send a change back where it was written */
        const char *o = e.olen ? e.origin : s->node_id;
        size_t ol = e.olen ? e.olen : strlen(s->node_id);
        if (strlen(exclude) == ol && memcmp(exclude, o, ol) == 0) {
          out->excluded++;
          continue;
        }
      }
      if ((code = sync_item_fill(s, &items[n], lsn, kind, &e, op.origin ? op.origin_lsn : lsn,
                                 err)) != 0)
        break;
      if (count > 1) hashes[n - first] = h;
      n++;
    }
    out->next_since = lsn;
    if (!code) rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
  }
  if (!code && rc && rc != MDB_NOTFOUND) code = store_err(s, rc, "feed", err);
  mdb_cursor_close(cur);
  store_rend(s, txn);
  free(hashes);
  if (code) {
    sync_items_free(items, n);
    memset(out, 0, sizeof *out);
    return code;
  }
  out->items = items;
  out->count = n;
  return 0;
}

/* ---- snapshot and digest ---------------------------------------------------------- */

/* Orders two LMDB keys as LMDB does (memcmp, then the shorter first). */
static int store_key_cmp(const MDB_val *a, const MDB_val *b) {
  size_t n = a->mv_size < b->mv_size ? a->mv_size : b->mv_size;
  int c = memcmp(a->mv_data, b->mv_data, n);
  if (c) return c;
  return a->mv_size < b->mv_size ? -1 : a->mv_size > b->mv_size;
}

/* A snapshot walk (store_snap_open): one read transaction of its own (not
 * a pooled one: it may live as long as a peer takes to read the snapshot,
 * and end on another thread -- the environment is MDB_NOTLS), the kv and
 * tombs cursors merged in key order, then the dropped cursor.  Items are
 * filled one at a time: the key and content type copied into the walk's
 * buffers, the value borrowed from the map (valid until the walk closes). */
struct store_snap {
  sa_store *s;
  MDB_txn *txn;
  MDB_cursor *ck, *ct, *cd;
  MDB_val kk, vk, kt, vt, kd, vd;
  int rk, rt, rd;
  int part; /* 0: kv and tombs, 1: dropped, 2: done */
  bool with_dropped;
  uint64_t now_ms, ttl_ms;
  char key[SA_KEY_MAX + 1];
  char ctype[SA_CONTENT_TYPE_MAX + 1];
};

void store_snap_close(store_snap *w) {
  if (!w) return;
  if (w->ck) mdb_cursor_close(w->ck);
  if (w->ct) mdb_cursor_close(w->ct);
  if (w->cd) mdb_cursor_close(w->cd);
  if (w->txn) mdb_txn_abort(w->txn);
  free(w);
}

int store_snap_open(sa_store *s, bool with_dropped, uint64_t now_ms, uint64_t ttl_ms,
                    store_snap **out, uint64_t *resume, sa_error *err) {
  *out = NULL;
  if (resume) *resume = 0;
  store_snap *w = calloc(1, sizeof *w);
  if (!w) return sa_fail(err, SA_ENOMEM, "out of memory opening a snapshot");
  w->s = s;
  w->with_dropped = with_dropped;
  w->now_ms = now_ms;
  w->ttl_ms = ttl_ms;
  uint64_t applied = 0;
  int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &w->txn);
  if (rc == 0) rc = store_meta_get_u64(w->txn, s->meta, "applied_lsn", &applied);
  if (rc == MDB_NOTFOUND) rc = 0;
  if (rc == 0 && (rc = mdb_cursor_open(w->txn, s->kv, &w->ck)) == 0 &&
      (rc = mdb_cursor_open(w->txn, s->tombs, &w->ct)) == 0 &&
      (!with_dropped || (rc = mdb_cursor_open(w->txn, s->dropped, &w->cd)) == 0)) {
    w->rk = mdb_cursor_get(w->ck, &w->kk, &w->vk, MDB_FIRST);
    w->rt = mdb_cursor_get(w->ct, &w->kt, &w->vt, MDB_FIRST);
    w->rd = w->cd ? mdb_cursor_get(w->cd, &w->kd, &w->vd, MDB_FIRST) : MDB_NOTFOUND;
  }
  if (rc) {
    int code = store_err(s, rc, "snapshot", err);
    store_snap_close(w);
    return code;
  }
  if (resume) *resume = applied;
  *out = w;
  return 0;
}

/* Fills *it from entry e (live, a tombstone, or a dropped record). */
static void snap_fill(store_snap *w, const kv_entry *e, bool live, bool dropped, sa_sync_item *it) {
  memset(it, 0, sizeof *it);
  it->seq = dropped ? 0 : e->lsn;
  it->op = live ? SA_OP_PUT : SA_OP_DELETE;
  it->hlc = e->hlc;
  it->origin_lsn = e->origin_lsn; /* the stored one; 0: unknown */
  store_entry_origin(w->s, e, it->origin);
  size_t kl = e->klen < SA_KEY_MAX ? e->klen : SA_KEY_MAX; /* (keys are checked at the write) */
  memcpy(w->key, e->key, kl);
  w->key[kl] = 0;
  it->key = w->key;
  it->data = live ? (char *)e->val : NULL; /* borrowed from the map (no NUL after it) */
  it->len = live ? e->vlen : 0;
  store_entry_ctype(e, w->ctype);
  it->content_type = live && e->ctlen ? w->ctype : NULL;
}

int store_snap_next(store_snap *w, sa_sync_item *it, bool *dropped, sa_error *err) {
  sa_store *s = w->s;
  *dropped = false;
  if (w->part == 0) {
    if (w->rk == 0 || w->rt == 0) {
      /* Merge the two databases in key order (a key is never in both). */
      bool live = w->rk == 0 && (w->rt != 0 || store_key_cmp(&w->kk, &w->kt) < 0);
      kv_entry e;
      if (store_kv_decode(live ? &w->kk : &w->kt, live ? &w->vk : &w->vt, &e) != 0)
        return sa_fail(err, SA_ECORRUPT, "store '%s': malformed entry", s->path);
      snap_fill(w, &e, live, false, it);
      if (live)
        w->rk = mdb_cursor_get(w->ck, &w->kk, &w->vk, MDB_NEXT);
      else
        w->rt = mdb_cursor_get(w->ct, &w->kt, &w->vt, MDB_NEXT);
      return 1;
    }
    if (w->rk != MDB_NOTFOUND || w->rt != MDB_NOTFOUND)
      return store_err(s, w->rk != MDB_NOTFOUND ? w->rk : w->rt, "snapshot", err);
    w->part = 1;
  }
  /* Then the dropped-tombstone records of keys held neither live nor as a
   * tombstone, not expired: the keys deleted whose tombstones went. */
  while (w->part == 1 && w->rd == 0) {
    kv_entry e, held;
    int kind = STORE_NONE;
    if (store_drop_decode(&w->kd, &w->vd, &e) != 0)
      return sa_fail(err, SA_ECORRUPT, "store '%s': malformed dropped-tombstone record", s->path);
    bool send = !sync_dropped_expired(e.hlc, w->now_ms, w->ttl_ms);
    if (send) {
      int code = store_find_state(s, w->txn, e.key, e.klen, &kind, &held, err);
      if (code) return code;
      send = kind == STORE_NONE;
    }
    if (send) snap_fill(w, &e, false, true, it);
    w->rd = mdb_cursor_get(w->cd, &w->kd, &w->vd, MDB_NEXT);
    if (send) {
      *dropped = true;
      return 1;
    }
  }
  if (w->part == 1 && w->rd != MDB_NOTFOUND) return store_err(s, w->rd, "snapshot", err);
  w->part = 2;
  return 0;
}

int store_sync_snapshot(sa_store *s, int (*fn)(void *arg, const sa_sync_item *it),
                        int (*dfn)(void *arg, const sa_sync_item *it), void *arg, uint64_t now_ms,
                        uint64_t ttl_ms, uint64_t *resume, sa_error *err) {
  store_snap *w;
  int rc = store_snap_open(s, dfn != NULL, now_ms, ttl_ms, &w, resume, err);
  if (rc) return rc;
  sa_sync_item it;
  bool dropped;
  while ((rc = store_snap_next(w, &it, &dropped, err)) == 1)
    if ((rc = (dropped ? dfn : fn)(arg, &it)) != 0) break;
  store_snap_close(w);
  return rc;
}

/* Folds a length-prefixed field into both hashes. */
static void digest_field(uint64_t h[2], const void *p, size_t n) {
  unsigned char lb[4];
  sa_put_u32(lb, (uint32_t)n);
  h[0] = sa_fnv1a_more(sa_fnv1a_more(h[0], lb, 4), p, n);
  h[1] = sa_fnv1a_more(sa_fnv1a_more(h[1], lb, 4), p, n);
}

int store_sync_digest(sa_store *s, char hex[65], uint64_t *keys, sa_error *err) {
  MDB_txn *txn;
  MDB_cursor *cur;
  int rc = store_rbegin(s, &txn, err);
  if (rc) return rc;
  if ((rc = mdb_cursor_open(txn, s->kv, &cur)) != 0) {
    store_rend(s, txn);
    return store_err(s, rc, "digest", err);
  }
  /* Two FNV-1a-64 with different offset bases: 128 bits of checksum. */
  uint64_t h[2] = {SA_FNV64_OFFSET, SA_FNV64_OFFSET ^ 0x9E3779B97F4A7C15ull}, n = 0;
  MDB_val k, v;
  int code = 0;
  rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
  while (rc == 0) {
    kv_entry e;
    if (store_kv_decode(&k, &v, &e) != 0) {
      code = sa_fail(err, SA_ECORRUPT, "store '%s': malformed kv entry", s->path);
      break;
    }
    char origin[SA_NODE_ID_MAX + 1];
    unsigned char hb[8];
    store_entry_origin(s, &e, origin);
    sa_put_u64(hb, e.hlc);
    digest_field(h, e.key, e.klen);
    digest_field(h, e.val, e.vlen);
    digest_field(h, hb, 8);
    digest_field(h, origin, strlen(origin));
    if (e.ctlen) digest_field(h, e.ctype, e.ctlen); /* untyped values hash as before */
    h[1] ^= h[0] >> 29;                             /* keep the two from moving in lockstep */
    n++;
    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
  }
  if (!code && rc && rc != MDB_NOTFOUND) code = store_err(s, rc, "digest", err);
  mdb_cursor_close(cur);
  store_rend(s, txn);
  if (code) return code;
  static const char digits[] = "0123456789abcdef";
  for (int i = 0; i < 32; i++)
    hex[i] = digits[(h[i / 16] >> (60 - 4 * (i % 16))) & 15];
  hex[32] = 0;
  if (keys) *keys = n;
  return 0;
}
