/*
 * store_outbox.c -- the outbox and ops databases: an entry per WAL record
 * (its sync state, attempts, deadline) and the record's operations with the
 * versions they gave.  Writes run inside the store's write transaction
 * (store_w*); store_obx_list reads.  The ops database is also what the
 * change feed reads (store_feed.c).
 *
 * What it is not: the outbox's state machine (outbox.c) nor its policy.
 *
 * Invariants: an entry and its operation are written and deleted together;
 * keys are big-endian LSNs, so LMDB order is LSN order; a replay over an
 * existing entry overwrites it.
 *
 * Threads: the store_w* functions on the write transaction's owner
 * (asserted); store_obx_list and store_outbox_count on any thread.
 */
#include "store_internal.h"

#include <string.h>

void store_obx_key(unsigned char kb[8], uint64_t lsn) {
  for (int i = 0; i < 8; i++)
    kb[i] = (unsigned char)(lsn >> (56 - 8 * i)); /* big-endian: LSN order */
}

uint64_t store_obx_key_lsn(const MDB_val *k) {
  uint64_t lsn = 0;
  const unsigned char *p = k->mv_data;
  for (size_t i = 0; i < 8 && i < k->mv_size; i++)
    lsn = (lsn << 8) | p[i];
  return lsn;
}

static void store_obx_encode(unsigned char p[OUTBOX_HEADER], const store_obx *e) {
  memset(p, 0, OUTBOX_HEADER);
  p[0] = (unsigned char)e->state;
  p[1] = (unsigned char)e->type;
  sa_put_u32(p + 4, e->attempts);
  sa_put_u64(p + 8, e->hlc);
  sa_put_u64(p + 16, e->at_ms);
}

static int store_obx_decode(const MDB_val *k, const MDB_val *v, store_obx *e) {
  if (k->mv_size != 8 || v->mv_size != OUTBOX_HEADER) return -1;
  const unsigned char *p = v->mv_data;
  e->lsn = store_obx_key_lsn(k);
  e->state = p[0];
  e->type = p[1];
  e->attempts = sa_get_u32(p + 4);
  e->hlc = sa_get_u64(p + 8);
  e->at_ms = sa_get_u64(p + 16);
  return 0;
}

int store_woutbox(store_wtxn *t, uint64_t lsn, uint64_t hlc, int type, const void *payload,
                  uint32_t len, const uint64_t *versions, uint32_t nver, sa_error *err) {
  assert(store_w_owned(t));
  unsigned char kb[8], hb[OUTBOX_HEADER];
  store_obx_key(kb, lsn);
  store_obx e = {.lsn = lsn, .state = STORE_OUTBOX_QUEUED, .type = type, .hlc = hlc};
  store_obx_encode(hb, &e);
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

int store_ops_decode(const MDB_val *v, int *type, uint64_t *hlc, const unsigned char **vers,
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

int store_wobx_each(store_wtxn *t, uint64_t from, store_obx_fn fn, void *ctx, sa_error *err) {
  assert(store_w_owned(t));
  MDB_cursor *cur;
  int rc = mdb_cursor_open(t->txn, t->s->outbox, &cur);
  if (rc) return store_err(t->s, rc, "outbox cursor", err);
  unsigned char fb[8];
  store_obx_key(fb, from);
  MDB_val k = {8, fb}, v;
  int code = 0;
  rc = mdb_cursor_get(cur, &k, &v, from ? MDB_SET_RANGE : MDB_FIRST);
  while (rc == 0) {
    store_obx e;
    if (store_obx_decode(&k, &v, &e) != 0) {
      code = sa_fail(err, SA_ECORRUPT, "store '%s': malformed outbox entry", t->s->path);
      break;
    }
    int what = fn(&e, ctx);
    if (what == STORE_OBX_STOP) break;
    if (what == STORE_OBX_UPDATE) {
      unsigned char hb[OUTBOX_HEADER];
      store_obx_encode(hb, &e);
      MDB_val nv = {OUTBOX_HEADER, hb};
      rc = mdb_cursor_put(cur, &k, &nv, MDB_CURRENT);
    } else if (what == STORE_OBX_DELETE) {
      unsigned char kb[8];
      store_obx_key(kb, e.lsn);
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
  assert(store_w_owned(t));
  unsigned char kb[8];
  store_obx_key(kb, lsn);
  MDB_val k = {8, kb}, v;
  int rc = mdb_get(t->txn, t->s->outbox, &k, &v);
  *found = false;
  if (rc == MDB_NOTFOUND) return 0;
  if (rc) return store_err(t->s, rc, "outbox get", err);
  if (store_obx_decode(&k, &v, e) != 0)
    return sa_fail(err, SA_ECORRUPT, "store '%s': malformed outbox entry", t->s->path);
  *found = true;
  return 0;
}

int store_wobx_put(store_wtxn *t, const store_obx *e, sa_error *err) {
  assert(store_w_owned(t));
  unsigned char kb[8], hb[OUTBOX_HEADER];
  store_obx_key(kb, e->lsn);
  store_obx_encode(hb, e);
  MDB_val k = {8, kb}, v = {OUTBOX_HEADER, hb};
  int rc = mdb_put(t->txn, t->s->outbox, &k, &v, 0);
  if (rc) return store_err(t->s, rc, "outbox update", err);
  return 0;
}

int store_wobx_payload(store_wtxn *t, uint64_t lsn, const void **p, uint32_t *len, sa_error *err) {
  assert(store_w_owned(t));
  unsigned char kb[8];
  store_obx_key(kb, lsn);
  MDB_val k = {8, kb}, v;
  int rc = mdb_get(t->txn, t->s->ops, &k, &v);
  if (rc == MDB_NOTFOUND) /* the entry and its operation are written and deleted together */
    return sa_fail(err, SA_ECORRUPT, "store '%s': outbox entry %llu has no operation record",
                   t->s->path, (unsigned long long)lsn);
  if (rc) return store_err(t->s, rc, "outbox payload", err);
  int type;
  uint64_t hlc;
  const unsigned char *vers, *pay;
  uint32_t nver;
  if (store_ops_decode(&v, &type, &hlc, &vers, &nver, &pay, len) != 0)
    return sa_fail(err, SA_ECORRUPT, "store '%s': malformed operation %llu", t->s->path,
                   (unsigned long long)lsn);
  *p = pay;
  return 0;
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
  store_obx_key(kb, after + 1);
  MDB_val k = {8, kb}, v;
  int code = 0;
  rc = after + 1 == 0 ? MDB_NOTFOUND : mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
  while (rc == 0 && *n < max) {
    if (store_obx_decode(&k, &v, &out[*n]) != 0) {
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
