/*
 * store_write.c -- the store's one write transaction: begin, put, delete,
 * the version and LSN of a key inside it, commit (with the applied LSN, the
 * clock and the feed floor in meta) and abort.  One transaction applies a
 * group of operations, their outbox entries and the new applied LSN
 * together.
 *
 * A put of a key that was not live removes its tombstone; a delete records
 * one (tombs, with the delete's pair), so a key is live, tombstoned or
 * unknown, never two of them.
 *
 * What it is not: the outbox writes (store_outbox.c), which run in the same
 * transaction; durability (a commit does not fdatasync: store_syncpoint.c).
 *
 * Invariants: one write transaction at a time, in the store's single slot;
 * it is used only by the thread that began it (asserted: store_w_owned).
 * The node's committer ("sa-commit") begins one per commit of groups, the
 * writer ("sa-writer") one per outbox request, after a drain of the
 * committer, and the opening thread during recovery; never two at once.
 * A commit holds commit_mu so that no sync point captures between its
 * steps.
 *
 * Threads: the committer, the writer, the opening thread (see above).
 */
#include "store_internal.h"

#include "io.h"

#include <string.h>

int store_wbegin(sa_store *s, store_wtxn **out, sa_error *err) {
  assert(!s->w_busy); /* one write transaction at a time (LMDB would deadlock) */
  int rc = mdb_txn_begin(s->env, NULL, 0, &s->w.txn);
  if (rc) return store_err(s, rc, "begin write transaction", err);
  s->w.s = s;
  s->w.kvc = NULL;
  s->w.floor = 0;
  s->w.sfloor = 0;
  s->w_owner = pthread_self();
  s->w_busy = true;
  *out = &s->w;
  return 0;
}

int store_wversion(store_wtxn *t, const char *key, uint32_t klen, uint64_t *version,
                   sa_error *err) {
  assert(store_w_owned(t));
  kv_entry e;
  int rc = store_kv_wread(t, key, klen, &e, err);
  *version = e.version;
  return rc;
}

/* The origin bytes to store for origin: none for this node (NULL, or its
 * own id), so that every local write and every format-1 entry read alike. */
static size_t store_origin_len(const sa_store *s, const char *origin) {
  if (!origin || !*origin || strcmp(origin, s->node_id) == 0) return 0;
  return strlen(origin);
}

/* The bytes after the origin of an entry of origin length o: an entry of
 * another origin keeps its origin LSN when it is known. */
static size_t store_olsn_len(size_t o, uint64_t origin_lsn) {
  return o && origin_lsn ? 8 : 0;
}

/* Fills the 28-byte header of a kv or tombs value and the bytes after it
 * up to the value: full key, origin, origin LSN (x: store_olsn_len),
 * content type (tombs: none). */
static void store_entry_fill(unsigned char *p, uint64_t first, uint64_t lsn, uint64_t hlc,
                             const char *key, uint32_t f, const char *origin, size_t o,
                             uint64_t origin_lsn, size_t x, const char *ctype, uint32_t t) {
  sa_put_u64(p, first);
  sa_put_u64(p + 8, lsn);
  sa_put_u64(p + 16, hlc);
  sa_put_u16(p + 24, (uint16_t)f);
  p[26] = (unsigned char)o;
  p[27] = (unsigned char)(t | (x ? KV_F_OLSN : 0));
  if (f) memcpy(p + KV_HEADER, key, f);
  if (o) memcpy(p + KV_HEADER + f, origin, o);
  if (x) sa_put_u64(p + KV_HEADER + f + o, origin_lsn);
  if (t) memcpy(p + KV_HEADER + f + o + x, ctype, t);
}

/* Removes key's tombstone, if any. */
static int store_tomb_del(store_wtxn *t, const char *key, uint32_t klen, sa_error *err) {
  int rc;
  if (klen <= KV_INLINE_MAX) {
    MDB_val k = {klen, (void *)key};
    rc = mdb_del(t->txn, t->s->tombs, &k, NULL);
  } else {
    unsigned char kb[KV_LONG];
    MDB_val k, v;
    bool found;
    rc = store_db_find(t->s, t->txn, t->s->tombs, key, klen, kb, &k, &v, &found);
    if (rc == 0 && found) rc = mdb_del(t->txn, t->s->tombs, &k, NULL);
  }
  if (rc && rc != MDB_NOTFOUND) return store_err(t->s, rc, "tombstone delete", err);
  return 0;
}

int store_wput(store_wtxn *t, const char *key, uint32_t klen, const void *val, uint32_t vlen,
               const char *ctype, uint32_t ctlen, uint64_t lsn, uint64_t hlc, const char *origin,
               uint64_t origin_lsn, uint64_t *version, sa_error *err) {
  assert(store_w_owned(t));
  assert(ctlen <= SA_CONTENT_TYPE_MAX);
  unsigned char kb[KV_LONG];
  MDB_val k, v;
  bool found;
  kv_entry e;
  uint64_t old = 0;
  uint32_t f = klen > KV_INLINE_MAX ? klen : 0;
  size_t o = store_origin_len(t->s, origin), x = store_olsn_len(o, origin_lsn);
  size_t size = KV_HEADER + (size_t)f + o + x + ctlen + vlen;
  int rc;
  if (!f) {
    /* One descent: insert unless present; when present LMDB points v at the
     * current value, whose version we need, and leaves the cursor on it, so
     * the rewrite below (MDB_CURRENT) needs no second descent.  That second
     * descent was a third of the put's time in LMDB (a peer applying a
     * stream spent a fifth of its CPU in mdb_put). */
    if (!t->kvc && (rc = mdb_cursor_open(t->txn, t->s->kv, &t->kvc)) != 0)
      return store_err(t->s, rc, "kv cursor", err);
    k.mv_size = klen;
    k.mv_data = (void *)key;
    v.mv_size = size;
    v.mv_data = NULL;
    rc = mdb_cursor_put(t->kvc, &k, &v, MDB_RESERVE | MDB_NOOVERWRITE);
    found = rc == MDB_KEYEXIST;
    if (rc && !found) return store_err(t->s, rc, "put", err);
  } else {
    rc = store_kv_find(t->s, t->txn, key, klen, kb, &k, &v, &found);
    if (rc) return store_err(t->s, rc, "put", err);
  }
  if (found) {
    if (store_kv_decode(&k, &v, &e) != 0)
      return sa_fail(err, SA_ECORRUPT, "store '%s': malformed kv entry", t->s->path);
    old = e.version;
  }
  if (f || found) {
    v.mv_size = size;
    v.mv_data = NULL;
    rc = f ? mdb_put(t->txn, t->s->kv, &k, &v, MDB_RESERVE)
           : mdb_cursor_put(t->kvc, &k, &v, MDB_RESERVE | MDB_CURRENT);
    if (rc) return store_err(t->s, rc, "put", err);
  }
  unsigned char *p = v.mv_data;
  store_entry_fill(p, old + 1, lsn, hlc, key, f, origin, o, origin_lsn, x, ctype, ctlen);
  if (vlen) memcpy(p + KV_HEADER + f + o + x + ctlen, val, vlen);
  *version = old + 1;
  /* A key is live or tombstoned, never both: a new live key loses its
   * tombstone (an empty tombs database costs LMDB no descent). */
  return found ? 0 : store_tomb_del(t, key, klen, err);
}

int store_wdel(store_wtxn *t, const char *key, uint32_t klen, uint64_t lsn, uint64_t hlc,
               const char *origin, uint64_t origin_lsn, uint64_t at_ms, bool tomb_always,
               bool *existed, sa_error *err) {
  assert(store_w_owned(t));
  unsigned char kb[KV_LONG];
  MDB_val k, v;
  int rc = store_kv_find(t->s, t->txn, key, klen, kb, &k, &v, existed);
  if (rc == 0 && *existed) rc = mdb_del(t->txn, t->s->kv, &k, NULL);
  if (rc) return store_err(t->s, rc, "delete", err);
  if (!*existed && !tomb_always) return 0;
  bool found;
  if ((rc = store_db_find(t->s, t->txn, t->s->tombs, key, klen, kb, &k, &v, &found)) != 0)
    return store_err(t->s, rc, "tombstone", err);
  uint32_t f = klen > KV_INLINE_MAX ? klen : 0;
  size_t o = store_origin_len(t->s, origin), x = store_olsn_len(o, origin_lsn);
  v.mv_size = KV_HEADER + (size_t)f + o + x;
  v.mv_data = NULL;
  if ((rc = mdb_put(t->txn, t->s->tombs, &k, &v, MDB_RESERVE)) != 0)
    return store_err(t->s, rc, "tombstone put", err);
  store_entry_fill(v.mv_data, at_ms, lsn, hlc, key, f, origin, o, origin_lsn, x, NULL, 0);
  return 0;
}

int store_wkv_lsn(store_wtxn *t, const char *key, uint32_t klen, uint64_t *lsn, sa_error *err) {
  assert(store_w_owned(t));
  kv_entry e;
  int rc = store_kv_wread(t, key, klen, &e, err);
  *lsn = e.lsn;
  return rc;
}

int store_wcommit(store_wtxn *t, uint64_t applied_lsn, uint64_t hlc, sa_error *err) {
  assert(store_w_owned(t));
  sa_store *s = t->s;
  int rc;
  uint64_t floor = t->floor > s->feed_floor ? t->floor : 0;
  uint64_t sfloor = t->sfloor > s->sync_floor ? t->sfloor : 0;
  if ((rc = store_meta_put_u64(t->txn, s->meta, "applied_lsn", applied_lsn)) != 0 ||
      (rc = store_meta_put_u64(t->txn, s->meta, "hlc", hlc)) != 0 ||
      (floor && (rc = store_meta_put_u64(t->txn, s->meta, "feed_floor", floor)) != 0) ||
      (sfloor && (rc = store_meta_put_u64(t->txn, s->meta, "sync_floor", sfloor)) != 0)) {
    store_wabort(t);
    return store_err(s, rc, "meta update", err);
  }
  int e = sa_io_get()->store_commit();
  if (e) {
    store_wabort(t);
    return sa_fail(err, sa_errno_code(e), "commit to store '%s' failed: %s", s->path, strerror(e));
  }
  pthread_mutex_lock(&s->commit_mu); /* not between a sync point's capture steps */
  rc = mdb_txn_commit(t->txn);
  if (rc == 0) {
    __atomic_store_n(&s->txnid, store_env_txnid(s), __ATOMIC_SEQ_CST); /* store_txnid */
    __atomic_store_n(&s->applied_lsn, applied_lsn, __ATOMIC_RELEASE);
  }
  pthread_mutex_unlock(&s->commit_mu);
  t->txn = NULL;
  s->w_busy = false;
  if (rc) return store_err(s, rc, "commit", err);
  if (floor) __atomic_store_n(&s->feed_floor, floor, __ATOMIC_RELEASE);
  if (sfloor) __atomic_store_n(&s->sync_floor, sfloor, __ATOMIC_RELEASE);
  s->hlc = hlc;
  return 0;
}

void store_wabort(store_wtxn *t) {
  assert(store_w_owned(t));
  if (t->txn) mdb_txn_abort(t->txn);
  t->txn = NULL;
  t->s->w_busy = false;
}
