/*
 * store_read.c -- the store's read side: a pool of reset read
 * transactions (one slot per reading thread, renewed instead of begun),
 * get, get-with-callback, version, list with prefix and paging, counts.
 *
 * What it is not: the read barrier that makes a read see every answered
 * write (node_read_barrier, node_commit.c), nor the feed (store_feed.c).
 *
 * Invariants: a value points into the map only while its transaction is
 * open: every function here copies out (or calls back) before store_rend.
 * A slot is taken and given back with atomic exchanges: a reader never
 * waits for a lock.
 *
 * Threads: any (libmicrohttpd workers, the front loops, the writer's
 * version lookups, an embedder's threads).
 */
#include "store_internal.h"

#include <stdlib.h>
#include <string.h>

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

/* A read transaction on the latest snapshot: a pooled one renewed, or a new
 * one.  End it with store_rend. */
int store_rbegin(sa_store *s, MDB_txn **txn, sa_error *err) {
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
void store_rend(sa_store *s, MDB_txn *txn) {
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
  rc = store_kv_find(s, *txn, key, klen, kb, &k, &v, &here);
  if (found) *found = here;
  if (rc == 0 && !here) {
    store_rend(s, *txn);
    return found ? 0 /* the caller asked: no message to format */
                 : sa_fail(err, SA_ENOTFOUND, "key '%.*s' not found",
                           (int)(klen > 200 ? 200 : klen), key);
  }
  if (rc || store_kv_decode(&k, &v, e) != 0) {
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
  store_entry_origin(s, &e, out->origin);
  store_entry_ctype(&e, out->content_type);
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
  store_entry_origin(s, &e, v.origin);
  store_entry_ctype(&e, v.content_type);
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
    } else if ((rc = store_kv_find(s, txn, after, alen, kb, &start, &v, &found)) == 0) {
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
    if (store_kv_decode(&k, &v, &e) != 0) {
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
    store_entry_origin(s, &e, it->origin);
    it->key = malloc(e.klen + 1);
    if (with_values) it->data = malloc(e.vlen + 1);
    int ctrc = store_entry_ctype_dup(&e, &it->content_type);
    if (!it->key || (with_values && !it->data) || ctrc != 0) {
      free(it->key);
      free(it->data);
      free(it->content_type);
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
    free(l->items[i].content_type);
  }
  free(l->items);
  memset(l, 0, sizeof *l);
}

uint64_t store_entries(sa_store *s, MDB_dbi dbi) {
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
