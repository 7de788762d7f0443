/*
 * store_longkey.c -- keys of the kv database: the value's header, and keys
 * longer than LMDB's key limit.  A key up to KV_INLINE_MAX (480) bytes is
 * its own LMDB key; a longer key K is stored under K[0..480) + 0x00 +
 * FNV-1a-64(K) (big-endian) + a 16-bit counter, with its full text in the
 * value.  Keys that share prefix and hash form a chain told apart by
 * comparing the full key, so a collision never overwrites another key.
 * Order is bytewise except among keys longer than 480 bytes sharing their
 * first 480 bytes (then: by hash, then counter).  The tombs and dropped
 * databases key their entries the same way (store_db_find).
 *
 * What it is not: the put/delete logic (store_write.c) nor the reads
 * (store_read.c); both find keys through store_kv_find.
 *
 * Invariants: at most 65536 keys per (prefix, hash) chain; the hash of a
 * stored key never changes (hash.h); tests build the core with
 * SA_STORE_HASH_MASK to force chains.
 *
 * Threads: any thread, inside the transaction it was given.
 */
#include "hash.h"
#include "store_internal.h"

#include <stdlib.h>
#include <string.h>

int store_kv_decode(const MDB_val *k, const MDB_val *v, kv_entry *e) {
  if (v->mv_size < KV_HEADER) return -1;
  const unsigned char *p = v->mv_data;
  /* Format 1 held a u32 F at 24 (F <= 1024): its bytes 26 and 27 are 0,
   * which format 2 reads as "origin: this node" -- the upgrade is free;
   * format 2 wrote 0 at 27, which format 3 reads as "no content type" and
   * format 4 as "no origin LSN" too. */
  uint32_t f = sa_get_u16(p + 24), o = p[26], t = p[27] & KV_T_MASK;
  size_t x = p[27] & KV_F_OLSN ? 8 : 0;
  if ((x && !o) || o > SA_NODE_ID_MAX || t > SA_CONTENT_TYPE_MAX ||
      v->mv_size - KV_HEADER < (size_t)f + o + x + t)
    return -1;
  e->version = sa_get_u64(p);
  e->lsn = sa_get_u64(p + 8);
  e->hlc = sa_get_u64(p + 16);
  e->key = f ? (const char *)p + KV_HEADER : k->mv_data;
  e->klen = f ? f : k->mv_size;
  e->origin = o ? (const char *)p + KV_HEADER + f : NULL;
  e->olen = o;
  e->origin_lsn = x ? sa_get_u64(p + KV_HEADER + f + o) : o ? 0 : e->lsn;
  e->ctype = t ? (const char *)p + KV_HEADER + f + o + x : NULL;
  e->ctlen = t;
  e->val = p + KV_HEADER + f + o + x + t;
  e->vlen = v->mv_size - KV_HEADER - f - o - x - t;
  return 0;
}

int store_drop_decode(const MDB_val *k, const MDB_val *v, kv_entry *e) {
  if (v->mv_size < DROP_HEADER) return -1;
  const unsigned char *p = v->mv_data;
  uint32_t f = sa_get_u16(p + 8), o = p[10];
  if (p[11] != 0 || o > SA_NODE_ID_MAX || v->mv_size - DROP_HEADER != (size_t)f + o) return -1;
  memset(e, 0, sizeof *e);
  e->hlc = sa_get_u64(p);
  e->key = f ? (const char *)p + DROP_HEADER : k->mv_data;
  e->klen = f ? f : k->mv_size;
  e->origin = o ? (const char *)p + DROP_HEADER + f : NULL;
  e->olen = o;
  return 0;
}

void store_entry_ctype(const kv_entry *e, char out[SA_CONTENT_TYPE_MAX + 1]) {
  if (e->ctlen) memcpy(out, e->ctype, e->ctlen);
  out[e->ctlen] = 0;
}

int store_entry_ctype_dup(const kv_entry *e, char **out) {
  *out = NULL;
  if (!e->ctlen) return 0;
  if (!(*out = malloc(e->ctlen + 1))) return -1;
  store_entry_ctype(e, *out);
  return 0;
}

void store_entry_origin(const sa_store *s, const kv_entry *e, char out[SA_NODE_ID_MAX + 1]) {
  if (!e->olen) {
    memcpy(out, s->node_id, strlen(s->node_id) + 1);
    return;
  }
  memcpy(out, e->origin, e->olen);
  out[e->olen] = 0;
}

/* Tests build the core with a tiny mask to force long collision chains. */
#ifndef SA_STORE_HASH_MASK
#define SA_STORE_HASH_MASK UINT64_MAX
#endif

/* The group of a long key: its first KV_INLINE_MAX bytes, 0x00, and its
 * FNV-1a (big-endian; persisted: the hash must never change). */
static void store_kv_group(unsigned char g[KV_GROUP], const char *key, size_t klen) {
  uint64_t h = sa_fnv1a(key, klen) & SA_STORE_HASH_MASK;
  memcpy(g, key, KV_INLINE_MAX);
  g[KV_INLINE_MAX] = 0;
  for (int i = 0; i < 8; i++)
    g[KV_INLINE_MAX + 1 + i] = (unsigned char)(h >> (56 - 8 * i));
}

/* Looks key up in database dbi (kv, tombs or dropped) of txn.  Found: *sk is its
 * LMDB key (long keys: copied into skbuf) and *v its value.  Not found: *sk
 * is where a put would store it. */
int store_db_find(sa_store *s, MDB_txn *txn, MDB_dbi dbi, const char *key, size_t klen,
                  unsigned char skbuf[KV_LONG], MDB_val *sk, MDB_val *v, bool *found) {
  *found = false;
  if (klen <= KV_INLINE_MAX) {
    sk->mv_size = klen;
    sk->mv_data = (void *)key;
    int rc = mdb_get(txn, dbi, sk, v);
    if (rc == 0) *found = true;
    return rc == MDB_NOTFOUND ? 0 : rc;
  }
  store_kv_group(skbuf, key, klen);
  MDB_cursor *cur;
  int rc = mdb_cursor_open(txn, dbi, &cur);
  if (rc) return rc;
  unsigned next = 0;
  MDB_val k = {KV_GROUP, skbuf};
  rc = mdb_cursor_get(cur, &k, v, MDB_SET_RANGE);
  while (rc == 0 && k.mv_size == KV_LONG && memcmp(k.mv_data, skbuf, KV_GROUP) == 0) {
    kv_entry e;
    if ((dbi == s->dropped ? store_drop_decode(&k, v, &e) : store_kv_decode(&k, v, &e)) != 0) {
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

int store_kv_find(sa_store *s, MDB_txn *txn, const char *key, size_t klen,
                  unsigned char skbuf[KV_LONG], MDB_val *sk, MDB_val *v, bool *found) {
  return store_db_find(s, txn, s->kv, key, klen, skbuf, sk, v, found);
}

/* Reads key's entry inside the write txn: *e zeroed when absent. */
int store_kv_wread(store_wtxn *t, const char *key, uint32_t klen, kv_entry *e, sa_error *err) {
  unsigned char kb[KV_LONG];
  MDB_val k, v;
  bool found;
  memset(e, 0, sizeof *e);
  int rc = store_kv_find(t->s, t->txn, key, klen, kb, &k, &v, &found);
  if (rc) return store_err(t->s, rc, "read", err);
  if (found && store_kv_decode(&k, &v, e) != 0)
    return sa_fail(err, SA_ECORRUPT, "store '%s': malformed kv entry", t->s->path);
  return 0;
}
