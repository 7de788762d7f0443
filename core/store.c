/*
 * store.c -- LMDB-backed materialized store.  See store.h for the layout.
 *
 * Durability split: the WAL is the commit point; LMDB is the current state.
 * With durable_commits (auto_flush on) LMDB runs with MDB_NOMETASYNC: each
 * commit fdatasyncs the data pages and leaves the meta page to the next
 * commit, which keeps the file intact after a power loss and may only undo
 * the last transaction -- which the WAL replays.  Without it (auto_flush
 * off, memory-only) commits are not synced at all (MDB_NOSYNC) and the node
 * calls store_sync on its flush schedule and at checkpoints.
 *
 * Threads: the environment is opened with MDB_NOTLS so read transactions are
 * not tied to threads (libmicrohttpd pools reuse threads freely).  The write
 * transaction is a single slot in the handle: the node's writer thread is
 * the only writer.
 */
#define _GNU_SOURCE
#include "store.h"

#include "internal.h"
#include "io.h"
#include "wal.h"

#include <assert.h>
#include <errno.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

/* kv values: u64 version, u64 lsn, u64 hlc, u32 full-key length F (0 for
 * keys stored inline), F bytes of full key, then the value. */
#define KV_HEADER 28
/* LMDB keys are at most 511 bytes (Debian's build).  Keys up to
 * KV_INLINE_MAX bytes are LMDB keys as they are; a longer key K is stored
 * under K[0..480) + 0x00 + FNV-1a-64(K) (big-endian) + a 16-bit counter, and
 * its full text lives in the value.  Keys that share prefix and hash are a
 * chain told apart by comparing the full key, so a collision never
 * overwrites another key.  Order is bytewise except among keys longer than
 * 480 bytes sharing their first 480 bytes (then: by hash, then counter). */
#define KV_INLINE_MAX 480
#define KV_GROUP (KV_INLINE_MAX + 1 + 8)
#define KV_LONG (KV_GROUP + 2)
#define STORE_RPOOL 64
#define OUTBOX_HEADER 24

struct store_wtxn {
  sa_store *s;
  MDB_txn *txn;
  uint64_t floor; /* feed floor to raise to at commit (0: unchanged) */
};

/* ops values: u8 type, 3 bytes 0, u32 N, u64 hlc, N u64 versions (one per
 * operation of the record: the key's version after it, 0 for a delete),
 * then the WAL payload. */
#define OPS_HEADER 16

struct sa_store {
  MDB_env *env;
  MDB_dbi kv, outbox, ops, meta;
  char *path;
  uint64_t applied_lsn;
  uint64_t hlc;
  uint64_t feed_floor; /* changes at or below it may be missing */
  uint64_t map_bytes;
  store_wtxn w; /* the single write transaction slot */
  bool w_busy;
  /* Reset read transactions kept for reuse (mdb_txn_renew is much cheaper
   * than mdb_txn_begin): one slot per reading thread (store_rslot), taken
   * and given back with atomic exchanges, so a reader never waits for a
   * lock (a reader preempted while holding one stalled the others).  Each
   * slot has a cache line of its own. */
  struct {
    MDB_txn *txn;
    char pad[64 - sizeof(MDB_txn *)];
  } rslot[STORE_RPOOL];
};

/* This thread's read slot (the same in every store): threads are numbered
 * in the order they first read; past STORE_RPOOL threads share slots, and a
 * thread that finds its slot empty begins a new transaction. */
static unsigned store_rslot_next;
static __thread unsigned store_rslot_ix; /* 0: not numbered yet */

static unsigned store_rslot(void) {
  if (!store_rslot_ix)
    store_rslot_ix = __atomic_add_fetch(&store_rslot_next, 1, __ATOMIC_RELAXED) % STORE_RPOOL + 1;
  return store_rslot_ix - 1;
}

/* Maps an LMDB result to an SA code and message. */
static int store_err(sa_store *s, int rc, const char *what, sa_error *err) {
  const char *path = s ? s->path : "?";
  switch (rc) {
  case MDB_MAP_FULL:
    return sa_fail(err, SA_ENOSPC,
                   "store '%s' is full (%s): the store_max_bytes limit of %llu bytes is reached",
                   path, what, (unsigned long long)(s ? s->map_bytes : 0));
  case MDB_KEYEXIST:
    return sa_fail(err, SA_EINTERNAL,
                   "store '%s': %s: 65536 keys already share this key's first 480 bytes and "
                   "hash",
                   path, what);
  case MDB_INVALID:
    return sa_fail(err, SA_ECORRUPT, "store '%s' is not an LMDB file (%s)", path, what);
  case MDB_VERSION_MISMATCH:
    return sa_fail(err, SA_EFORMAT, "store '%s' was written by another LMDB version (%s)", path,
                   what);
  case MDB_CORRUPTED:
  case MDB_PAGE_NOTFOUND:
    return sa_fail(err, SA_ECORRUPT, "store '%s' is corrupt (%s): %s", path, what,
                   mdb_strerror(rc));
  default:
    if (rc > 0)
      return sa_fail(err, sa_errno_code(rc), "store '%s': %s failed: %s", path, what, strerror(rc));
    return sa_fail(err, SA_EINTERNAL, "store '%s': %s failed: %s", path, what, mdb_strerror(rc));
  }
}

static int meta_get_u64(MDB_txn *txn, MDB_dbi dbi, const char *name, uint64_t *out) {
  MDB_val k = {strlen(name), (void *)name}, v;
  int rc = mdb_get(txn, dbi, &k, &v);
  if (rc == 0) {
    if (v.mv_size != 8) return MDB_CORRUPTED;
    *out = sa_get_u64(v.mv_data);
  }
  return rc;
}

static int meta_put_u64(MDB_txn *txn, MDB_dbi dbi, const char *name, uint64_t val) {
  unsigned char b[8];
  sa_put_u64(b, val);
  MDB_val k = {strlen(name), (void *)name}, v = {8, b};
  return mdb_put(txn, dbi, &k, &v, 0);
}

int store_open(sa_store **out, const char *path, const char *node_id, bool durable_commits,
               uint64_t map_bytes, sa_error *err) {
  *out = NULL;
  sa_store *s = calloc(1, sizeof *s);
  if (!s || !(s->path = strdup(path))) {
    free(s);
    return sa_fail(err, SA_ENOMEM, "out of memory opening store '%s'", path);
  }
  s->map_bytes = map_bytes;
  MDB_txn *txn = NULL;
  int rc = mdb_env_create(&s->env);
  if (rc) goto lmdb_fail;
  mdb_env_set_maxdbs(s->env, 8);
  mdb_env_set_maxreaders(s->env, 1024);
  if ((rc = mdb_env_set_mapsize(s->env, (size_t)map_bytes)) != 0) goto lmdb_fail;
  unsigned flags = MDB_NOSUBDIR | MDB_NOTLS | (durable_commits ? MDB_NOMETASYNC : MDB_NOSYNC);
  rc = mdb_env_open(s->env, path, flags, 0644);
  if (rc == ENOENT) {
    int code =
        sa_fail(err, SA_ENOENT,
                "cannot open store '%s': its directory does not exist; create it first", path);
    mdb_env_close(s->env);
    free(s->path);
    free(s);
    return code;
  }
  if (rc) goto lmdb_fail;
  if ((rc = mdb_txn_begin(s->env, NULL, 0, &txn)) != 0) goto lmdb_fail;
  if ((rc = mdb_dbi_open(txn, "kv", MDB_CREATE, &s->kv)) != 0 ||
      (rc = mdb_dbi_open(txn, "outbox", MDB_CREATE, &s->outbox)) != 0 ||
      (rc = mdb_dbi_open(txn, "ops", MDB_CREATE, &s->ops)) != 0 ||
      (rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &s->meta)) != 0)
    goto lmdb_fail;

  /* Meta: a new store takes this node's id; an old one must match it. */
  MDB_val k = {7, "node_id"}, v;
  rc = mdb_get(txn, s->meta, &k, &v);
  if (rc == MDB_NOTFOUND) {
    v.mv_size = strlen(node_id);
    v.mv_data = (void *)node_id;
    unsigned char fmt[4];
    sa_put_u32(fmt, SA_STORE_FORMAT);
    MDB_val fk = {6, "format"}, fv = {4, fmt};
    if ((rc = mdb_put(txn, s->meta, &k, &v, 0)) != 0 ||
        (rc = mdb_put(txn, s->meta, &fk, &fv, 0)) != 0)
      goto lmdb_fail;
  } else if (rc == 0) {
    if (v.mv_size != strlen(node_id) || memcmp(v.mv_data, node_id, v.mv_size) != 0) {
      int code = sa_fail(err, SA_ENODE, "store '%s' belongs to node '%.*s', not to node '%s'", path,
                         (int)(v.mv_size > 64 ? 64 : v.mv_size), (const char *)v.mv_data, node_id);
      mdb_txn_abort(txn);
      mdb_env_close(s->env);
      free(s->path);
      free(s);
      return code;
    }
    MDB_val fk = {6, "format"}, fv;
    if ((rc = mdb_get(txn, s->meta, &fk, &fv)) != 0) goto lmdb_fail;
    uint32_t fmt = fv.mv_size == 4 ? sa_get_u32(fv.mv_data) : 0;
    if (fmt != SA_STORE_FORMAT) {
      int code =
          sa_fail(err, SA_EFORMAT, "store '%s' has format version %u; this build reads version %d",
                  path, fmt, SA_STORE_FORMAT);
      mdb_txn_abort(txn);
      mdb_env_close(s->env);
      free(s->path);
      free(s);
      return code;
    }
  } else {
    goto lmdb_fail;
  }
  rc = meta_get_u64(txn, s->meta, "applied_lsn", &s->applied_lsn);
  if (rc && rc != MDB_NOTFOUND) goto lmdb_fail;
  rc = meta_get_u64(txn, s->meta, "hlc", &s->hlc);
  if (rc && rc != MDB_NOTFOUND) goto lmdb_fail;
  rc = meta_get_u64(txn, s->meta, "feed_floor", &s->feed_floor);
  if (rc && rc != MDB_NOTFOUND) goto lmdb_fail;
  if ((rc = mdb_txn_commit(txn)) != 0) {
    txn = NULL;
    goto lmdb_fail;
  }
  *out = s;
  return 0;

lmdb_fail:;
  int code = store_err(s, rc, "open", err);
  if (txn) mdb_txn_abort(txn);
  if (s->env) mdb_env_close(s->env);
  free(s->path);
  free(s);
  return code;
}

void store_close(sa_store *s) {
  if (!s) return;
  assert(!s->w_busy);
  for (int i = 0; i < STORE_RPOOL; i++)
    if (s->rslot[i].txn) mdb_txn_abort(s->rslot[i].txn);
  mdb_env_close(s->env);
  free(s->path);
  free(s);
}

uint64_t store_applied_lsn(const sa_store *s) {
  return __atomic_load_n(&s->applied_lsn, __ATOMIC_ACQUIRE);
}

uint64_t store_meta_hlc(const sa_store *s) {
  return s->hlc;
}

int store_sync(sa_store *s, sa_error *err) {
  int e = sa_io_get()->store_commit();
  if (e)
    return sa_fail(err, sa_errno_code(e), "sync of store '%s' failed: %s", s->path, strerror(e));
  int rc = mdb_env_sync(s->env, 1);
  if (rc) return store_err(s, rc, "sync", err);
  return 0;
}

/* ---- write transaction ------------------------------------------------- */

int store_wbegin(sa_store *s, store_wtxn **out, sa_error *err) {
  assert(!s->w_busy);
  int rc = mdb_txn_begin(s->env, NULL, 0, &s->w.txn);
  if (rc) return store_err(s, rc, "begin write transaction", err);
  s->w.s = s;
  s->w.floor = 0;
  s->w_busy = true;
  *out = &s->w;
  return 0;
}

typedef struct kv_entry {
  uint64_t version, lsn, hlc;
  const char *key; /* the full key */
  size_t klen;
  const unsigned char *val;
  size_t vlen;
} kv_entry;

static int kv_decode(const MDB_val *k, const MDB_val *v, kv_entry *e) {
  if (v->mv_size < KV_HEADER) return -1;
  const unsigned char *p = v->mv_data;
  uint32_t f = sa_get_u32(p + 24);
  if (v->mv_size - KV_HEADER < f) return -1;
  e->version = sa_get_u64(p);
  e->lsn = sa_get_u64(p + 8);
  e->hlc = sa_get_u64(p + 16);
  e->key = f ? (const char *)p + KV_HEADER : k->mv_data;
  e->klen = f ? f : k->mv_size;
  e->val = p + KV_HEADER + f;
  e->vlen = v->mv_size - KV_HEADER - f;
  return 0;
}

/* Tests build the core with a tiny mask to force long collision chains. */
#ifndef SA_STORE_HASH_MASK
#define SA_STORE_HASH_MASK UINT64_MAX
#endif

static void kv_group(unsigned char g[KV_GROUP], const char *key, size_t klen) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < klen; i++)
    h = (h ^ (unsigned char)key[i]) * 1099511628211ull;
  h &= SA_STORE_HASH_MASK;
  memcpy(g, key, KV_INLINE_MAX);
  g[KV_INLINE_MAX] = 0;
  for (int i = 0; i < 8; i++)
    g[KV_INLINE_MAX + 1 + i] = (unsigned char)(h >> (56 - 8 * i));
}

/* Looks key up in txn.  Found: *sk is its LMDB key (long keys: copied into
 * skbuf) and *v its value.  Not found: *sk is where a put would store it. */
static int kv_find(sa_store *s, MDB_txn *txn, const char *key, size_t klen,
                   unsigned char skbuf[KV_LONG], MDB_val *sk, MDB_val *v, bool *found) {
  *found = false;
  if (klen <= KV_INLINE_MAX) {
    sk->mv_size = klen;
    sk->mv_data = (void *)key;
    int rc = mdb_get(txn, s->kv, sk, v);
    if (rc == 0) *found = true;
    return rc == MDB_NOTFOUND ? 0 : rc;
  }
  kv_group(skbuf, key, klen);
  MDB_cursor *cur;
  int rc = mdb_cursor_open(txn, s->kv, &cur);
  if (rc) return rc;
  unsigned next = 0;
  MDB_val k = {KV_GROUP, skbuf};
  rc = mdb_cursor_get(cur, &k, v, MDB_SET_RANGE);
  while (rc == 0 && k.mv_size == KV_LONG && memcmp(k.mv_data, skbuf, KV_GROUP) == 0) {
    kv_entry e;
    if (kv_decode(&k, v, &e) != 0) {
      rc = MDB_CORRUPTED;
      break;
    }
    const unsigned char *kp = k.mv_data;
    unsigned n = (unsigned)(kp[KV_GROUP] << 8 | kp[KV_GROUP + 1]);
    if (e.klen == klen && memcmp(e.key, key, klen) == 0) {
      memcpy(skbuf, k.mv_data, KV_LONG);
      *found = true;
      break;
    }
    next = n + 1;
    rc = mdb_cursor_get(cur, &k, v, MDB_NEXT);
  }
  mdb_cursor_close(cur);
  if (rc && rc != MDB_NOTFOUND) return rc;
  if (!*found) {
    if (next > 0xFFFF) return MDB_KEYEXIST; /* 65536 keys with one prefix and hash */
    skbuf[KV_GROUP] = (unsigned char)(next >> 8);
    skbuf[KV_GROUP + 1] = (unsigned char)next;
  }
  sk->mv_size = KV_LONG;
  sk->mv_data = skbuf;
  return 0;
}

/* Reads key's entry inside the write txn: *e zeroed when absent. */
static int kv_wread(store_wtxn *t, const char *key, uint32_t klen, kv_entry *e, sa_error *err) {
  unsigned char kb[KV_LONG];
  MDB_val k, v;
  bool found;
  memset(e, 0, sizeof *e);
  int rc = kv_find(t->s, t->txn, key, klen, kb, &k, &v, &found);
  if (rc) return store_err(t->s, rc, "read", err);
  if (found && kv_decode(&k, &v, e) != 0)
    return sa_fail(err, SA_ECORRUPT, "store '%s': malformed kv entry", t->s->path);
  return 0;
}

int store_wversion(store_wtxn *t, const char *key, uint32_t klen, uint64_t *version,
                   sa_error *err) {
  kv_entry e;
  int rc = kv_wread(t, key, klen, &e, err);
  *version = e.version;
  return rc;
}

int store_wput(store_wtxn *t, const char *key, uint32_t klen, const void *val, uint32_t vlen,
               uint64_t lsn, uint64_t hlc, uint64_t *version, sa_error *err) {
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
    rc = kv_find(t->s, t->txn, key, klen, kb, &k, &v, &found);
    if (rc) return store_err(t->s, rc, "put", err);
  }
  if (found) {
    if (kv_decode(&k, &v, &e) != 0)
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
  unsigned char kb[KV_LONG];
  MDB_val k, v;
  int rc = kv_find(t->s, t->txn, key, klen, kb, &k, &v, existed);
  if (rc == 0 && *existed) rc = mdb_del(t->txn, t->s->kv, &k, NULL);
  if (rc) return store_err(t->s, rc, "delete", err);
  return 0;
}

static void obx_key(unsigned char kb[8], uint64_t lsn) {
  for (int i = 0; i < 8; i++)
    kb[i] = (unsigned char)(lsn >> (56 - 8 * i)); /* big-endian: LSN order */
}

static uint64_t obx_key_lsn(const MDB_val *k) {
  uint64_t lsn = 0;
  const unsigned char *p = k->mv_data;
  for (size_t i = 0; i < 8 && i < k->mv_size; i++)
    lsn = (lsn << 8) | p[i];
  return lsn;
}

static void obx_encode(unsigned char p[OUTBOX_HEADER], const store_obx *e) {
  memset(p, 0, OUTBOX_HEADER);
  p[0] = (unsigned char)e->state;
  p[1] = (unsigned char)e->type;
  sa_put_u32(p + 4, e->attempts);
  sa_put_u64(p + 8, e->hlc);
  sa_put_u64(p + 16, e->at_ms);
}

static int obx_decode(const MDB_val *k, const MDB_val *v, store_obx *e) {
  if (k->mv_size != 8 || v->mv_size != OUTBOX_HEADER) return -1;
  const unsigned char *p = v->mv_data;
  e->lsn = obx_key_lsn(k);
  e->state = p[0];
  e->type = p[1];
  e->attempts = sa_get_u32(p + 4);
  e->hlc = sa_get_u64(p + 8);
  e->at_ms = sa_get_u64(p + 16);
  return 0;
}

int store_woutbox(store_wtxn *t, uint64_t lsn, uint64_t hlc, int type, const void *payload,
                  uint32_t len, const uint64_t *versions, uint32_t nver, sa_error *err) {
  unsigned char kb[8], hb[OUTBOX_HEADER];
  obx_key(kb, lsn);
  store_obx e = {.lsn = lsn, .state = STORE_OUTBOX_QUEUED, .type = type, .hlc = hlc};
  obx_encode(hb, &e);
  MDB_val k = {8, kb}, v = {OUTBOX_HEADER, hb};
  int rc = mdb_put(t->txn, t->s->outbox, &k, &v, MDB_APPEND);
  if (rc == MDB_KEYEXIST) /* replay over an entry already there: overwrite */
    rc = mdb_put(t->txn, t->s->outbox, &k, &v, 0);
  MDB_val pv = {OPS_HEADER + 8 * (size_t)nver + len, NULL};
  if (rc == 0) rc = mdb_put(t->txn, t->s->ops, &k, &pv, MDB_RESERVE | MDB_APPEND);
  if (rc == MDB_KEYEXIST) { /* replay over an entry already there (or below the last one) */
    pv.mv_size = OPS_HEADER + 8 * (size_t)nver + len;
    pv.mv_data = NULL;
    rc = mdb_put(t->txn, t->s->ops, &k, &pv, MDB_RESERVE);
  }
  if (rc) return store_err(t->s, rc, "outbox put", err);
  unsigned char *p = pv.mv_data;
  memset(p, 0, OPS_HEADER);
  p[0] = (unsigned char)type;
  sa_put_u32(p + 4, nver);
  sa_put_u64(p + 8, hlc);
  for (uint32_t i = 0; i < nver; i++)
    sa_put_u64(p + OPS_HEADER + 8 * i, versions[i]);
  memcpy(p + OPS_HEADER + 8 * (size_t)nver, payload, len);
  return 0;
}

void store_wraise_floor(store_wtxn *t, uint64_t lsn) {
  if (lsn > t->floor) t->floor = lsn;
}

uint64_t store_feed_floor(const sa_store *s) {
  return __atomic_load_n(&s->feed_floor, __ATOMIC_ACQUIRE);
}

/* Splits an ops value.  -1 when malformed. */
static int ops_decode(const MDB_val *v, int *type, uint64_t *hlc, const unsigned char **vers,
                      uint32_t *nver, const unsigned char **payload, uint32_t *len) {
  if (v->mv_size < OPS_HEADER) return -1;
  const unsigned char *p = v->mv_data;
  uint32_t n = sa_get_u32(p + 4);
  if ((v->mv_size - OPS_HEADER) / 8 < n) return -1;
  *type = p[0];
  *hlc = sa_get_u64(p + 8);
  *vers = p + OPS_HEADER;
  *nver = n;
  *payload = p + OPS_HEADER + 8 * (size_t)n;
  *len = (uint32_t)(v->mv_size - OPS_HEADER - 8 * (size_t)n);
  return 0;
}

int store_wobx_each(store_wtxn *t, store_obx_fn fn, void *ctx, sa_error *err) {
  MDB_cursor *cur;
  int rc = mdb_cursor_open(t->txn, t->s->outbox, &cur);
  if (rc) return store_err(t->s, rc, "outbox cursor", err);
  MDB_val k, v;
  int code = 0;
  rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
  while (rc == 0) {
    store_obx e;
    if (obx_decode(&k, &v, &e) != 0) {
      code = sa_fail(err, SA_ECORRUPT, "store '%s': malformed outbox entry", t->s->path);
      break;
    }
    int what = fn(&e, ctx);
    if (what == STORE_OBX_STOP) break;
    if (what == STORE_OBX_UPDATE) {
      unsigned char hb[OUTBOX_HEADER];
      obx_encode(hb, &e);
      MDB_val nv = {OUTBOX_HEADER, hb};
      rc = mdb_cursor_put(cur, &k, &nv, MDB_CURRENT);
    } else if (what == STORE_OBX_DELETE) {
      unsigned char kb[8];
      obx_key(kb, e.lsn);
      MDB_val pk = {8, kb};
      rc = mdb_cursor_del(cur, 0);
      if (rc == 0) {
        rc = mdb_del(t->txn, t->s->ops, &pk, NULL);
        if (rc == MDB_NOTFOUND) rc = 0;
      }
      /* After mdb_cursor_del, MDB_NEXT yields the entry that followed. */
    }
    if (rc) break;
    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
  }
  if (!code && rc && rc != MDB_NOTFOUND) code = store_err(t->s, rc, "outbox walk", err);
  mdb_cursor_close(cur);
  return code;
}

int store_wobx_get(store_wtxn *t, uint64_t lsn, store_obx *e, bool *found, sa_error *err) {
  unsigned char kb[8];
  obx_key(kb, lsn);
  MDB_val k = {8, kb}, v;
  int rc = mdb_get(t->txn, t->s->outbox, &k, &v);
  *found = false;
  if (rc == MDB_NOTFOUND) return 0;
  if (rc) return store_err(t->s, rc, "outbox get", err);
  if (obx_decode(&k, &v, e) != 0)
    return sa_fail(err, SA_ECORRUPT, "store '%s': malformed outbox entry", t->s->path);
  *found = true;
  return 0;
}

int store_wobx_put(store_wtxn *t, const store_obx *e, sa_error *err) {
  unsigned char kb[8], hb[OUTBOX_HEADER];
  obx_key(kb, e->lsn);
  obx_encode(hb, e);
  MDB_val k = {8, kb}, v = {OUTBOX_HEADER, hb};
  int rc = mdb_put(t->txn, t->s->outbox, &k, &v, 0);
  if (rc) return store_err(t->s, rc, "outbox update", err);
  return 0;
}

int store_wobx_payload(store_wtxn *t, uint64_t lsn, const void **p, uint32_t *len, sa_error *err) {
  unsigned char kb[8];
  obx_key(kb, lsn);
  MDB_val k = {8, kb}, v;
  int rc = mdb_get(t->txn, t->s->ops, &k, &v);
  if (rc) return store_err(t->s, rc, "outbox payload", err);
  int type;
  uint64_t hlc;
  const unsigned char *vers, *pay;
  uint32_t nver;
  if (ops_decode(&v, &type, &hlc, &vers, &nver, &pay, len) != 0)
    return sa_fail(err, SA_ECORRUPT, "store '%s': malformed operation %llu", t->s->path,
                   (unsigned long long)lsn);
  *p = pay;
  return 0;
}

int store_wkv_lsn(store_wtxn *t, const char *key, uint32_t klen, uint64_t *lsn, sa_error *err) {
  kv_entry e;
  int rc = kv_wread(t, key, klen, &e, err);
  *lsn = e.lsn;
  return rc;
}

int store_wcommit(store_wtxn *t, uint64_t applied_lsn, uint64_t hlc, sa_error *err) {
  sa_store *s = t->s;
  int rc;
  uint64_t floor = t->floor > s->feed_floor ? t->floor : 0;
  if ((rc = meta_put_u64(t->txn, s->meta, "applied_lsn", applied_lsn)) != 0 ||
      (rc = meta_put_u64(t->txn, s->meta, "hlc", hlc)) != 0 ||
      (floor && (rc = meta_put_u64(t->txn, s->meta, "feed_floor", floor)) != 0)) {
    store_wabort(t);
    return store_err(s, rc, "meta update", err);
  }
  int e = sa_io_get()->store_commit();
  if (e) {
    store_wabort(t);
    return sa_fail(err, sa_errno_code(e), "commit to store '%s' failed: %s", s->path, strerror(e));
  }
  rc = mdb_txn_commit(t->txn);
  t->txn = NULL;
  s->w_busy = false;
  if (rc) return store_err(s, rc, "commit", err);
  __atomic_store_n(&s->applied_lsn, applied_lsn, __ATOMIC_RELEASE);
  if (floor) __atomic_store_n(&s->feed_floor, floor, __ATOMIC_RELEASE);
  s->hlc = hlc;
  return 0;
}

void store_wabort(store_wtxn *t) {
  if (t->txn) mdb_txn_abort(t->txn);
  t->txn = NULL;
  t->s->w_busy = false;
}

/* ---- reads ------------------------------------------------------------- */

/* A read transaction on the latest snapshot: a pooled one renewed, or a new
 * one.  End it with store_rend. */
static int store_rbegin(sa_store *s, MDB_txn **txn, sa_error *err) {
  MDB_txn *t = __atomic_exchange_n(&s->rslot[store_rslot()].txn, NULL, __ATOMIC_ACQ_REL);
  int rc;
  if (t) {
    if ((rc = mdb_txn_renew(t)) == 0) {
      *txn = t;
      return 0;
    }
    mdb_txn_abort(t);
  }
  rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, txn);
  if (rc) return store_err(s, rc, "begin read transaction", err);
  return 0;
}

/* Ends a read transaction: reset and kept for reuse, or aborted. */
static void store_rend(sa_store *s, MDB_txn *txn) {
  mdb_txn_reset(txn);
  MDB_txn *none = NULL;
  if (!__atomic_compare_exchange_n(&s->rslot[store_rslot()].txn, &none, txn, false,
                                   __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
    mdb_txn_abort(txn); /* another thread of this slot put one back first */
}

/* Finds key in a new read transaction.  Returns 0 with *txn open (end it
 * with store_rend) and *e pointing into the map, or an error (no txn).  An
 * absent key is SA_ENOTFOUND, or, when found is given, 0 with *found false
 * (no txn, no message formatted: the writer asks this for every new key). */
static int store_rfind(sa_store *s, const char *key, uint32_t klen, MDB_txn **txn, kv_entry *e,
                       bool *found, sa_error *err) {
  int rc = store_rbegin(s, txn, err);
  if (rc) return rc;
  unsigned char kb[KV_LONG];
  MDB_val k, v;
  bool here;
  rc = kv_find(s, *txn, key, klen, kb, &k, &v, &here);
  if (found) *found = here;
  if (rc == 0 && !here) {
    store_rend(s, *txn);
    return found ? 0 /* the caller asked: no message to format */
                 : sa_fail(err, SA_ENOTFOUND, "key '%.*s' not found",
                           (int)(klen > 200 ? 200 : klen), key);
  }
  if (rc || kv_decode(&k, &v, e) != 0) {
    store_rend(s, *txn);
    return rc ? store_err(s, rc, "get", err)
              : sa_fail(err, SA_ECORRUPT, "store '%s': malformed kv entry", s->path);
  }
  return 0;
}

int store_get(sa_store *s, const char *key, uint32_t klen, sa_value *out, sa_error *err) {
  memset(out, 0, sizeof *out);
  MDB_txn *txn;
  kv_entry e;
  int rc = store_rfind(s, key, klen, &txn, &e, NULL, err);
  if (rc) return rc;
  char *data = malloc(e.vlen + 1);
  if (!data) {
    store_rend(s, txn);
    return sa_fail(err, SA_ENOMEM, "out of memory reading a %zu-byte value", e.vlen);
  }
  out->version = e.version;
  out->lsn = e.lsn;
  out->hlc = e.hlc;
  memcpy(data, e.val, e.vlen); /* copy out before the txn ends */
  data[e.vlen] = 0;
  store_rend(s, txn);
  out->data = data;
  out->len = e.vlen;
  return 0;
}

int store_version(sa_store *s, const char *key, uint32_t klen, uint64_t *version, sa_error *err) {
  *version = 0;
  MDB_txn *txn;
  kv_entry e;
  bool found;
  int rc = store_rfind(s, key, klen, &txn, &e, &found, err);
  if (rc || !found) return rc; /* absent: version 0, the common case of a new key */
  *version = e.version;
  store_rend(s, txn);
  return 0;
}

int store_get_with(sa_store *s, const char *key, uint32_t klen,
                   void (*fn)(void *arg, const sa_value *v), void *arg, sa_error *err) {
  MDB_txn *txn;
  kv_entry e;
  int rc = store_rfind(s, key, klen, &txn, &e, NULL, err);
  if (rc) return rc;
  sa_value v = {
      .data = (char *)e.val, /* read-only: the map */
      .len = e.vlen,
      .version = e.version,
      .lsn = e.lsn,
      .hlc = e.hlc,
  };
  fn(arg, &v);
  store_rend(s, txn);
  return 0;
}

int store_list(sa_store *s, const char *prefix, const char *after, size_t limit, bool with_values,
               sa_list *out, sa_error *err) {
  memset(out, 0, sizeof *out);
  if (!prefix) prefix = "";
  size_t plen = strlen(prefix), alen = after ? strlen(after) : 0;
  /* Stored keys match the real key on their first KV_INLINE_MAX bytes. */
  size_t pcmp = plen < KV_INLINE_MAX ? plen : KV_INLINE_MAX;
  MDB_txn *txn;
  MDB_cursor *cur;
  int rc = store_rbegin(s, &txn, err);
  if (rc) return rc;
  if ((rc = mdb_cursor_open(txn, s->kv, &cur)) != 0) {
    store_rend(s, txn);
    return store_err(s, rc, "cursor", err);
  }
  out->items = calloc(limit, sizeof *out->items);
  if (!out->items) {
    mdb_cursor_close(cur);
    store_rend(s, txn);
    return sa_fail(err, SA_ENOMEM, "out of memory listing %zu keys", limit);
  }
  /* Start: just after `after` when it sorts at or past the prefix. */
  unsigned char kb[KV_LONG];
  MDB_val k, v, start;
  bool skip_equal = false;
  if (alen && (plen == 0 || strncmp(after, prefix, plen) >= 0)) {
    bool found = false;
    if (alen <= KV_INLINE_MAX) {
      start.mv_size = alen;
      start.mv_data = (void *)after;
      skip_equal = true;
    } else if ((rc = kv_find(s, txn, after, alen, kb, &start, &v, &found)) == 0) {
      if (found) {
        skip_equal = true;
      } else { /* gone: resume after every key of its hash group */
        kb[KV_GROUP] = kb[KV_GROUP + 1] = 0xFF;
      }
    }
  } else {
    start.mv_size = pcmp;
    start.mv_data = (void *)prefix;
  }
  if (rc == 0)
    rc = start.mv_size ? (k = start, mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE))
                       : mdb_cursor_get(cur, &k, &v, MDB_FIRST);
  if (rc == 0 && skip_equal && k.mv_size == start.mv_size &&
      memcmp(k.mv_data, start.mv_data, k.mv_size) == 0)
    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
  int code = 0;
  while (rc == 0 && k.mv_size >= pcmp && memcmp(k.mv_data, prefix, pcmp) == 0) {
    kv_entry e;
    if (kv_decode(&k, &v, &e) != 0) {
      code = sa_fail(err, SA_ECORRUPT, "store '%s': malformed kv entry", s->path);
      break;
    }
    if (e.klen < plen || memcmp(e.key, prefix, plen) != 0) { /* long prefix: check all */
      rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
      continue;
    }
    if (out->count == limit) {
      out->more = true;
      break;
    }
    sa_entry *it = &out->items[out->count];
    it->len = e.vlen;
    it->version = e.version;
    it->lsn = e.lsn;
    it->hlc = e.hlc;
    it->key = malloc(e.klen + 1);
    if (with_values) it->data = malloc(e.vlen + 1);
    if (!it->key || (with_values && !it->data)) {
      free(it->key);
      free(it->data);
      code = sa_fail(err, SA_ENOMEM, "out of memory listing keys");
      break;
    }
    memcpy(it->key, e.key, e.klen);
    it->key[e.klen] = 0;
    if (with_values) {
      memcpy(it->data, e.val, e.vlen);
      it->data[e.vlen] = 0;
    }
    out->count++;
    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
  }
  if (!code && rc && rc != MDB_NOTFOUND) code = store_err(s, rc, "list", err);
  mdb_cursor_close(cur);
  store_rend(s, txn);
  if (code) sa_list_free(out);
  return code;
}

void sa_list_free(sa_list *l) {
  if (!l) return;
  for (size_t i = 0; i < l->count; i++) {
    free(l->items[i].key);
    free(l->items[i].data);
  }
  free(l->items);
  memset(l, 0, sizeof *l);
}

static uint64_t store_entries(sa_store *s, MDB_dbi dbi) {
  MDB_txn *txn;
  MDB_stat st;
  if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn) != 0) return 0;
  int rc = mdb_stat(txn, dbi, &st);
  store_rend(s, txn);
  return rc ? 0 : (uint64_t)st.ms_entries;
}

uint64_t store_count(sa_store *s) {
  return store_entries(s, s->kv);
}

uint64_t store_outbox_count(sa_store *s) {
  return store_entries(s, s->outbox);
}

int store_obx_list(sa_store *s, uint64_t after, size_t max, store_obx *out, size_t *n,
                   sa_error *err) {
  *n = 0;
  MDB_txn *txn;
  MDB_cursor *cur;
  int rc = store_rbegin(s, &txn, err);
  if (rc) return rc;
  if ((rc = mdb_cursor_open(txn, s->outbox, &cur)) != 0) {
    store_rend(s, txn);
    return store_err(s, rc, "outbox cursor", err);
  }
  unsigned char kb[8];
  obx_key(kb, after + 1);
  MDB_val k = {8, kb}, v;
  int code = 0;
  rc = after + 1 == 0 ? MDB_NOTFOUND : mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
  while (rc == 0 && *n < max) {
    if (obx_decode(&k, &v, &out[*n]) != 0) {
      code = sa_fail(err, SA_ECORRUPT, "store '%s': malformed outbox entry", s->path);
      break;
    }
    (*n)++;
    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
  }
  if (!code && rc && rc != MDB_NOTFOUND) code = store_err(s, rc, "outbox list", err);
  mdb_cursor_close(cur);
  store_rend(s, txn);
  return code;
}

/* ---- change feed ------------------------------------------------------- */

static void changes_free_items(sa_change *it, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(it[i].key);
    free(it[i].data);
  }
  free(it);
}

int store_changes(sa_store *s, uint64_t since, size_t limit, bool with_values, sa_changes *out,
                  sa_error *err) {
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
  size_t cap = limit + 16;
  sa_change *items = calloc(cap, sizeof *items);
  int code = items ? 0 : sa_fail(err, SA_ENOMEM, "out of memory reading changes");
  unsigned char kb[8];
  obx_key(kb, since + 1);
  MDB_val k = {8, kb}, v;
  rc = code || since == UINT64_MAX ? MDB_NOTFOUND : mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
  size_t n = 0;
  while (!code && rc == 0) {
    if (n >= limit) {
      out->more = true;
      break;
    }
    int type;
    uint64_t hlc, lsn = obx_key_lsn(&k);
    const unsigned char *vers, *pay;
    uint32_t nver, len, count;
    if (ops_decode(&v, &type, &hlc, &vers, &nver, &pay, &len) != 0 ||
        wal_payload_check(type, pay, len, &count) != 0 || count != nver) {
      code = sa_fail(err, SA_ECORRUPT, "store '%s': malformed operation %llu", s->path,
                     (unsigned long long)lsn);
      break;
    }
    if (n + count > cap) {
      sa_change *grown = realloc(items, (n + count) * sizeof *items);
      if (!grown) {
        code = sa_fail(err, SA_ENOMEM, "out of memory reading changes");
        break;
      }
      memset(grown + cap, 0, (n + count - cap) * sizeof *grown);
      items = grown;
      cap = n + count;
    }
    wal_op_iter it;
    wal_op op;
    wal_op_iter_init(&it, type, pay, len);
    for (uint32_t i = 0; wal_op_next(&it, &op); i++) {
      sa_change *c = &items[n++];
      c->lsn = lsn;
      c->hlc = hlc;
      c->op = op.op;
      c->batch = type == WAL_BATCH;
      c->version = sa_get_u64(vers + 8 * i);
      c->len = op.op == SA_OP_PUT ? op.vlen : 0;
      c->key = malloc(op.klen + 1);
      if (c->key) {
        memcpy(c->key, op.key, op.klen);
        c->key[op.klen] = 0;
      }
      if (with_values && op.op == SA_OP_PUT && (c->data = malloc(op.vlen + 1))) {
        memcpy(c->data, op.val, op.vlen);
        c->data[op.vlen] = 0;
      }
      if (!c->key || (with_values && op.op == SA_OP_PUT && !c->data))
        code = sa_fail(err, SA_ENOMEM, "out of memory reading changes");
    }
    out->next_since = lsn;
    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
  }
  if (!code && rc && rc != MDB_NOTFOUND) code = store_err(s, rc, "feed", err);
  mdb_cursor_close(cur);
  store_rend(s, txn);
  if (code) {
    changes_free_items(items, n);
    memset(out, 0, sizeof *out);
    return code;
  }
  out->items = items;
  out->count = n;
  return 0;
}

void sa_changes_free(sa_changes *ch) {
  if (!ch) return;
  changes_free_items(ch->items, ch->count);
  memset(ch, 0, sizeof *ch);
}
