/*
 * store_feed.c -- the change feed: the operations after an LSN, read from
 * the ops database in LSN order, one sa_change per operation, and the feed
 * floor below which changes may have been pruned.
 *
 * What it is not: the long-poll wait (sa_client_wait, node_api.c) nor the
 * HTTP feed (api/, server/).
 *
 * Invariants: a page never splits a record's operations; next_since is
 * the LSN of the last record returned; every string is copied out before
 * the read transaction ends.
 *
 * Threads: any.
 */
#include "store_internal.h"

#include "wal.h"

#include <stdlib.h>
#include <string.h>

uint64_t store_feed_floor(const sa_store *s) {
  return __atomic_load_n(&s->feed_floor, __ATOMIC_ACQUIRE);
}

static void changes_free_items(sa_change *it, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(it[i].key);
    free(it[i].data);
    free(it[i].content_type);
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
  store_obx_key(kb, since + 1);
  MDB_val k = {8, kb}, v;
  rc = code || since == UINT64_MAX ? MDB_NOTFOUND : mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
  size_t n = 0;
  while (!code && rc == 0) {
    if (n >= limit) {
      out->more = true;
      break;
    }
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
      c->hlc = op.origin ? op.hlc : hlc; /* a peer's change keeps its own pair */
      if (op.origin) {
        memcpy(c->origin, op.origin, op.olen);
        c->origin[op.olen] = 0;
      } else {
        memcpy(c->origin, s->node_id, strlen(s->node_id) + 1);
      }
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
      if (op.ctlen && (c->content_type = malloc(op.ctlen + 1))) {
        memcpy(c->content_type, op.ctype, op.ctlen);
        c->content_type[op.ctlen] = 0;
      }
      if (!c->key || (with_values && op.op == SA_OP_PUT && !c->data) ||
          (op.ctlen && !c->content_type))
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
