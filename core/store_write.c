/*
 * store_write.c -- the store's one write transaction: begin, put, delete,
 * the version and LSN of a key inside it, commit (with the applied LSN, the
 * clock and the feed floor in meta) and abort.  One transaction applies a
 * group of operations, their outbox entries and the new applied LSN
 * together.
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
  s->w.floor = 0;
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

int store_wput(store_wtxn *t, const char *key, uint32_t klen, const void *val, uint32_t vlen,
               uint64_t lsn, uint64_t hlc, uint64_t *version, sa_error *err) {
  assert(store_w_owned(t));
  unsigned char kb[KV_LONG];
  MDB_val k, v;
  bool found;
  kv_entry e;
  uint64_t old = 0;
  uint32_t f = klen > KV_INLINE_MAX ? klen : 0;
  size_t size = KV_HEADER + (size_t)f + vlen;
  int rc;
  if (!f) {
    /* One descent for a new key: insert unless present; when present LMDB
     * points v at the current value, whose version we need. */
    k.mv_size = klen;
    k.mv_data = (void *)key;
    v.mv_size = size;
    v.mv_data = NULL;
    rc = mdb_put(t->txn, t->s->kv, &k, &v, MDB_RESERVE | MDB_NOOVERWRITE);
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
    rc = mdb_put(t->txn, t->s->kv, &k, &v, MDB_RESERVE);
    if (rc) return store_err(t->s, rc, "put", err);
  }
  unsigned char *p = v.mv_data;
  sa_put_u64(p, old + 1);
  sa_put_u64(p + 8, lsn);
  sa_put_u64(p + 16, hlc);
  sa_put_u32(p + 24, f);
  if (f) memcpy(p + KV_HEADER, key, f);
  if (vlen) memcpy(p + KV_HEADER + f, val, vlen);
  *version = old + 1;
  return 0;
}

int store_wdel(store_wtxn *t, const char *key, uint32_t klen, bool *existed, sa_error *err) {
  assert(store_w_owned(t));
  unsigned char kb[KV_LONG];
  MDB_val k, v;
  int rc = store_kv_find(t->s, t->txn, key, klen, kb, &k, &v, existed);
  if (rc == 0 && *existed) rc = mdb_del(t->txn, t->s->kv, &k, NULL);
  if (rc) return store_err(t->s, rc, "delete", err);
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
  if ((rc = store_meta_put_u64(t->txn, s->meta, "applied_lsn", applied_lsn)) != 0 ||
      (rc = store_meta_put_u64(t->txn, s->meta, "hlc", hlc)) != 0 ||
      (floor && (rc = store_meta_put_u64(t->txn, s->meta, "feed_floor", floor)) != 0)) {
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
  s->hlc = hlc;
  return 0;
}

void store_wabort(store_wtxn *t) {
  assert(store_w_owned(t));
  if (t->txn) mdb_txn_abort(t->txn);
  t->txn = NULL;
  t->s->w_busy = false;
}
