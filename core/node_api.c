/*
 * node_api.c -- the public calls of a node that are not open/close or sync:
 * puts, removes, batches, flush and checkpoint (checked here, queued to the
 * writer), gets and lists (straight to the store after the read barrier),
 * the change feed, status and statistics.
 *
 * What it is not: the write path itself (node_writer.c, node_commit.c) nor
 * the store's reads (store_read.c, store_feed.c).
 *
 * Invariants: every argument is checked here, before a request reaches the
 * writer; a read never returns before the store holds every answered write
 * (node_read_barrier); a blocking request lives on its caller's stack and
 * is not touched after the writer marks it done.
 *
 * Threads: any caller's thread (libmicrohttpd workers, the front loops,
 * an embedder's).  Never the writer or the committer: a blocking call there
 * would wait for itself.
 */
#include "node_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- writes ------------------------------------------------------------ */

static int node_check_value(sa_client *c, const char *key, size_t len, sa_error *err) {
  if (len > c->opts.max_value_bytes)
    return sa_fail(err, SA_ETOOBIG,
                   "value for key '%.200s' is %zu bytes; the limit is %u bytes "
                   "(max_value_bytes)",
                   key, len, c->opts.max_value_bytes);
  return 0;
}

static int node_write_preflight(sa_client *c, const char *key, sa_error *err) {
  if (!c) return sa_fail(err, SA_EINVAL, "client is NULL");
  if (__atomic_load_n(&c->read_only, __ATOMIC_ACQUIRE))
    return sa_fail(err, SA_EREADONLY, "%s", c->read_only_reason);
  return key ? sa_key_check(key, strlen(key), err)
             : sa_fail(err, SA_EKEY, "invalid key: key is NULL");
}

/* Checks a put and fills the zeroed r with it (ctype: NULL or "" for
 * none). */
static int node_put_prepare(sa_client *c, const char *key, const void *data, size_t len,
                            const sa_write_opts *wo, const char *ctype, wreq *r, sa_error *err) {
  int rc = node_write_preflight(c, key, err);
  if (rc || (rc = node_check_value(c, key, len, err)) != 0) return rc;
  if (len && !data) return sa_fail(err, SA_EINVAL, "value data is NULL with length %zu", len);
  if (wo && wo->cond != SA_COND_NONE && wo->cond != SA_COND_VERSION && wo->cond != SA_COND_ABSENT)
    return sa_fail(err, SA_EINVAL, "unknown write condition %d", wo->cond);
  if (ctype && *ctype && (rc = sa_content_type_check(ctype, err)) != 0) return rc;
  r->kind = REQ_PUT;
  r->key = key;
  r->klen = (uint32_t)strlen(key);
  r->val = data;
  r->vlen = (uint32_t)len;
  if (ctype && *ctype) {
    r->ctype = ctype;
    r->ctlen = (uint32_t)strlen(ctype);
  }
  if (wo) r->cond = *wo;
  r->bytes = SA_WAL_RECORD_HEADER + 8 + r->klen + len + (r->ctlen ? 1 + r->ctlen : 0);
  return 0;
}

/* The condition part of a put's options. */
static const sa_write_opts *node_put_cond(const sa_put_opts *po, sa_write_opts *wo) {
  if (!po) return NULL;
  wo->cond = po->cond;
  wo->version = po->version;
  return wo;
}

/* Checks a remove and fills the zeroed r with it. */
static int node_remove_prepare(sa_client *c, const char *key, const sa_write_opts *wo, wreq *r,
                               sa_error *err) {
  int rc = node_write_preflight(c, key, err);
  if (rc) return rc;
  if (wo && wo->cond == SA_COND_ABSENT)
    return sa_fail(err, SA_EINVAL, "a remove cannot require the key to be absent");
  if (wo && wo->cond != SA_COND_NONE && wo->cond != SA_COND_VERSION)
    return sa_fail(err, SA_EINVAL, "unknown write condition %d", wo->cond);
  r->kind = REQ_DEL;
  r->key = key;
  r->klen = (uint32_t)strlen(key);
  if (wo) r->cond = *wo;
  r->bytes = SA_WAL_RECORD_HEADER + 4 + r->klen;
  return 0;
}

int sa_client_put_ex(sa_client *c, const char *key, const void *data, size_t len,
                     const sa_write_opts *wo, sa_write_result *res, sa_error *err) {
  wreq r;
  memset(&r, 0, sizeof r);
  int rc = node_put_prepare(c, key, data, len, wo, NULL, &r, err);
  if (rc == 0) rc = node_submit(c, &r, err);
  if (rc == 0 && res) *res = r.res;
  return rc;
}

int sa_client_put_opts(sa_client *c, const char *key, const void *data, size_t len,
                       const sa_put_opts *po, sa_write_result *res, sa_error *err) {
  sa_write_opts wo;
  wreq r;
  memset(&r, 0, sizeof r);
  int rc = node_put_prepare(c, key, data, len, node_put_cond(po, &wo), po ? po->content_type : NULL,
                            &r, err);
  if (rc == 0) rc = node_submit(c, &r, err);
  if (rc == 0 && res) *res = r.res;
  return rc;
}

/* A zeroed heap request for an asynchronous write, in *out. */
static int node_async_req(sa_client *c, sa_write_cb cb, void *arg, wreq **out, sa_error *err) {
  *out = NULL;
  if (!c) return sa_fail(err, SA_EINVAL, "client is NULL");
  if (!cb) return sa_fail(err, SA_EINVAL, "write callback is NULL");
  wreq *r = calloc(1, sizeof *r);
  if (!r) return sa_fail(err, SA_ENOMEM, "out of memory queuing a write");
  r->cb = cb;
  r->cb_arg = arg;
  *out = r;
  return 0;
}

int sa_client_put_async(sa_client *c, const char *key, const void *data, size_t len,
                        const sa_write_opts *wo, sa_write_cb cb, void *arg, sa_error *err) {
  wreq *r;
  int rc = node_async_req(c, cb, arg, &r, err);
  if (rc == 0 && (rc = node_put_prepare(c, key, data, len, wo, NULL, r, err)) != 0) free(r);
  return rc ? rc : node_submit_async(c, r, err);
}

int sa_client_put_opts_async(sa_client *c, const char *key, const void *data, size_t len,
                             const sa_put_opts *po, sa_write_cb cb, void *arg, sa_error *err) {
  sa_write_opts wo;
  wreq *r;
  int rc = node_async_req(c, cb, arg, &r, err);
  if (rc == 0 && (rc = node_put_prepare(c, key, data, len, node_put_cond(po, &wo),
                                        po ? po->content_type : NULL, r, err)) != 0)
    free(r);
  return rc ? rc : node_submit_async(c, r, err);
}

int sa_client_remove_async(sa_client *c, const char *key, const sa_write_opts *wo, sa_write_cb cb,
                           void *arg, sa_error *err) {
  wreq *r;
  int rc = node_async_req(c, cb, arg, &r, err);
  if (rc == 0 && (rc = node_remove_prepare(c, key, wo, r, err)) != 0) free(r);
  return rc ? rc : node_submit_async(c, r, err);
}

int sa_client_put_bytes(sa_client *c, const char *key, const void *data, size_t len,
                        sa_error *err) {
  return sa_client_put_ex(c, key, data, len, NULL, NULL, err);
}

int sa_client_put(sa_client *c, const char *key, const char *value, sa_error *err) {
  if (!value) return sa_fail(err, SA_EINVAL, "value is NULL");
  return sa_client_put_ex(c, key, value, strlen(value), NULL, NULL, err);
}

int sa_client_remove_ex(sa_client *c, const char *key, const sa_write_opts *wo,
                        sa_write_result *res, sa_error *err) {
  wreq r;
  memset(&r, 0, sizeof r);
  int rc = node_remove_prepare(c, key, wo, &r, err);
  if (rc == 0) rc = node_submit(c, &r, err);
  if (rc == 0 && res) *res = r.res;
  return rc;
}

int sa_client_remove(sa_client *c, const char *key, sa_error *err) {
  return sa_client_remove_ex(c, key, NULL, NULL, err);
}

int sa_client_batch(sa_client *c, const sa_batch_op *ops, size_t n, sa_write_result *res,
                    sa_error *err) {
  return sa_client_batch_ex(c, ops, n, NULL, res, NULL, err);
}

int sa_client_batch_ex(sa_client *c, const sa_batch_op *ops, size_t n, const sa_write_opts *conds,
                       sa_write_result *res, size_t *failed, sa_error *err) {
  if (!c) return sa_fail(err, SA_EINVAL, "client is NULL");
  if (!ops || n == 0 || n > SA_WAL_MAX_BATCH_OPS)
    return sa_fail(err, SA_EINVAL, "a batch holds 1 to %d operations, not %zu",
                   SA_WAL_MAX_BATCH_OPS, ops ? n : 0);
  if (__atomic_load_n(&c->read_only, __ATOMIC_ACQUIRE))
    return sa_fail(err, SA_EREADONLY, "%s", c->read_only_reason);
  size_t total = 0;
  for (size_t i = 0; i < n; i++) {
    const sa_batch_op *o = &ops[i];
    if (o->op != SA_OP_PUT && o->op != SA_OP_DELETE)
      return sa_fail(err, SA_EINVAL, "batch operation %zu: unknown op %d", i, o->op);
    sa_error ke;
    if (!o->key || sa_key_check(o->key, strlen(o->key), &ke) != 0)
      return sa_fail(err, SA_EKEY, "batch operation %zu: %s", i,
                     o->key ? ke.message : "key is NULL");
    size_t vlen = o->op == SA_OP_PUT ? o->len : 0;
    if (o->op == SA_OP_PUT) {
      int rc = node_check_value(c, o->key, vlen, err);
      if (rc) return rc;
      if (vlen && !o->data)
        return sa_fail(err, SA_EINVAL, "batch operation %zu: value data is NULL", i);
    }
    if (conds && conds[i].cond != SA_COND_NONE && conds[i].cond != SA_COND_VERSION &&
        conds[i].cond != SA_COND_ABSENT)
      return sa_fail(err, SA_EINVAL, "batch operation %zu: unknown condition %d", i, conds[i].cond);
    total += strlen(o->key) + vlen;
  }
  if (total > c->opts.max_batch_bytes)
    return sa_fail(err, SA_ETOOBIG, "batch is %zu bytes; the limit is %u bytes (max_batch_bytes)",
                   total, c->opts.max_batch_bytes);
  wreq r;
  memset(&r, 0, sizeof r);
  r.kind = REQ_BATCH;
  r.ops = ops;
  r.nops = n;
  r.conds = conds;
  r.bytes = SA_WAL_RECORD_HEADER + 4 + 9 * n + total;
  int rc = node_submit(c, &r, err);
  if (rc == 0 && res) *res = r.res;
  if (rc == SA_ECONFLICT && failed) *failed = r.failed_op;
  return rc;
}

int sa_client_flush(sa_client *c, sa_error *err) {
  if (!c) return sa_fail(err, SA_EINVAL, "client is NULL");
  wreq r;
  memset(&r, 0, sizeof r);
  r.kind = REQ_FLUSH;
  return node_submit(c, &r, err);
}

int sa_client_checkpoint(sa_client *c, sa_error *err) {
  if (!c) return sa_fail(err, SA_EINVAL, "client is NULL");
  wreq r;
  memset(&r, 0, sizeof r);
  r.kind = REQ_CHECKPOINT;
  return node_submit(c, &r, err);
}

/* ---- reads and state --------------------------------------------------- */

int sa_client_get(sa_client *c, const char *key, sa_value *out, sa_error *err) {
  if (!out) return sa_fail(err, SA_EINVAL, "sa_client_get: out is NULL");
  memset(out, 0, sizeof *out);
  if (!c) return sa_fail(err, SA_EINVAL, "client is NULL");
  if (!key) return sa_fail(err, SA_EKEY, "invalid key: key is NULL");
  size_t n = strlen(key);
  int rc = sa_key_check(key, n, err);
  if (rc || (rc = node_read_barrier(c, err)) != 0) return rc;
  return store_get(c->store, key, (uint32_t)n, out, err);
}

int sa_client_get_with(sa_client *c, const char *key, void (*fn)(void *arg, const sa_value *v),
                       void *arg, sa_error *err) {
  if (!c || !fn) return sa_fail(err, SA_EINVAL, "sa_client_get_with: NULL argument");
  if (!key) return sa_fail(err, SA_EKEY, "invalid key: key is NULL");
  size_t n = strlen(key);
  int rc = sa_key_check(key, n, err);
  if (rc || (rc = node_read_barrier(c, err)) != 0) return rc;
  return store_get_with(c->store, key, (uint32_t)n, fn, arg, err);
}

void sa_value_free(sa_value *v) {
  if (!v) return;
  free(v->data);
  memset(v, 0, sizeof *v);
}

size_t sa_client_size(sa_client *c) {
  if (!c) return 0;
  (void)node_read_barrier(c, NULL); /* after a lost commit: what the store holds */
  return (size_t)store_count(c->store);
}

int sa_client_list(sa_client *c, const char *prefix, const char *after, size_t limit,
                   bool with_values, sa_list *out, sa_error *err) {
  if (!out) return sa_fail(err, SA_EINVAL, "sa_client_list: out is NULL");
  memset(out, 0, sizeof *out);
  if (!c) return sa_fail(err, SA_EINVAL, "client is NULL");
  if (limit == 0 || limit > 10000)
    return sa_fail(err, SA_EINVAL, "limit %zu is out of range (1..10000)", limit);
  if (prefix && strlen(prefix) > SA_KEY_MAX)
    return sa_fail(err, SA_EKEY, "prefix is longer than the %d-byte key limit", SA_KEY_MAX);
  if (after && strlen(after) > SA_KEY_MAX)
    return sa_fail(err, SA_EKEY, "after is longer than the %d-byte key limit", SA_KEY_MAX);
  int rc = node_read_barrier(c, err);
  if (rc) return rc;
  return store_list(c->store, prefix, after, limit, with_values, out, err);
}

int sa_client_status(sa_client *c, sa_status *out, sa_error *err) {
  if (!c || !out) return sa_fail(err, SA_EINVAL, "sa_client_status: NULL argument");
  memset(out, 0, sizeof *out);
  (void)node_read_barrier(c, NULL); /* a lost commit shows as read_only */
  snprintf(out->node_id, sizeof out->node_id, "%s", c->node_id);
  out->persistent = c->opts.persistent;
  out->durable = c->opts.persistent && c->opts.auto_flush;
  out->read_only = __atomic_load_n(&c->read_only, __ATOMIC_ACQUIRE);
  if (out->read_only)
    snprintf(out->read_only_reason, sizeof out->read_only_reason, "%s", c->read_only_reason);
  out->wal_path = c->wal_path;
  out->store_path = c->store_path;
  out->wal_bytes = c->wal ? wal_size(c->wal) : 0;
  /* The store commits before last_lsn moves: read it first, keep order. */
  out->applied_lsn = store_applied_lsn(c->store);
  out->synced_lsn = store_synced_lsn(c->store);
  out->store_syncs = store_syncs(c->store);
  out->store_writebacks = store_writebacks(c->store);
  out->last_lsn = __atomic_load_n(&c->last_lsn, __ATOMIC_ACQUIRE);
  if (out->last_lsn < out->applied_lsn) out->last_lsn = out->applied_lsn;
  out->size = store_count(c->store);
  out->checkpoints = __atomic_load_n(&c->checkpoints, __ATOMIC_RELAXED);
  out->recovery = c->recovery;
  return 0;
}

/* ---- change feed ------------------------------------------------------- */

uint64_t sa_client_changes_floor(sa_client *c) {
  return c ? store_feed_floor(c->store) : 0;
}

int sa_client_changes(sa_client *c, uint64_t since, size_t limit, bool with_values, sa_changes *out,
                      sa_error *err) {
  if (!out) return sa_fail(err, SA_EINVAL, "sa_client_changes: out is NULL");
  memset(out, 0, sizeof *out);
  if (!c) return sa_fail(err, SA_EINVAL, "client is NULL");
  if (limit == 0 || limit > 10000)
    return sa_fail(err, SA_EINVAL, "limit %zu is out of range (1..10000)", limit);
  uint64_t floor = store_feed_floor(c->store);
  if (since < floor)
    return sa_fail(err, SA_EGONE,
                   "changes after LSN %llu are no longer all kept: the oldest since served is "
                   "%llu; reload the keys and follow from the current LSN",
                   (unsigned long long)since, (unsigned long long)floor);
  int rc = node_read_barrier(c, err);
  if (rc) return rc;
  uint64_t last = __atomic_load_n(&c->last_lsn, __ATOMIC_ACQUIRE);
  rc = store_changes(c->store, since, limit, with_values, out, err);
  out->last_lsn = last > out->next_since ? last : out->next_since;
  return rc;
}

int sa_client_wait(sa_client *c, uint64_t after_lsn, uint32_t timeout_ms, uint64_t *last_lsn,
                   sa_error *err) {
  if (!c) return sa_fail(err, SA_EINVAL, "client is NULL");
  uint64_t due = sa_mono_ns() + (uint64_t)timeout_ms * 1000000u;
  struct timespec ts = {(time_t)(due / 1000000000u), (long)(due % 1000000000u)};
  int rc = 0;
  pthread_mutex_lock(&c->wr.mu);
  while (!sa_worker_stopping(&c->wr) &&
         __atomic_load_n(&c->last_lsn, __ATOMIC_ACQUIRE) <= after_lsn)
    if (pthread_cond_timedwait(&c->lsn_cv, &c->wr.mu, &ts) == ETIMEDOUT) break;
  if (sa_worker_stopping(&c->wr)) rc = sa_fail(err, SA_ECLOSED, "node '%s' is closing", c->node_id);
  pthread_mutex_unlock(&c->wr.mu);
  if (last_lsn) *last_lsn = __atomic_load_n(&c->last_lsn, __ATOMIC_ACQUIRE);
  return rc;
}

int sa_client_stats(sa_client *c, sa_stats *out, sa_error *err) {
  if (!c || !out) return sa_fail(err, SA_EINVAL, "sa_client_stats: NULL argument");
  memset(out, 0, sizeof *out);
  out->groups = __atomic_load_n(&c->stats.groups, __ATOMIC_RELAXED);
  out->group_ops = __atomic_load_n(&c->stats.group_ops, __ATOMIC_RELAXED);
  for (int i = 0; i < SA_STATS_GROUP_BUCKETS; i++)
    out->group_hist[i] = __atomic_load_n(&c->stats.group_hist[i], __ATOMIC_RELAXED);
  out->syncs = __atomic_load_n(&c->stats.syncs, __ATOMIC_RELAXED);
  out->sync_seconds = (double)__atomic_load_n(&c->sync_ns, __ATOMIC_RELAXED) / 1e9;
  for (int i = 0; i < SA_STATS_SYNC_BUCKETS; i++)
    out->sync_hist[i] = __atomic_load_n(&c->stats.sync_hist[i], __ATOMIC_RELAXED);
  out->wal_bytes_written = __atomic_load_n(&c->stats.wal_bytes_written, __ATOMIC_RELAXED);
  out->write_errors = __atomic_load_n(&c->stats.write_errors, __ATOMIC_RELAXED);
  out->store_commits = __atomic_load_n(&c->stats.store_commits, __ATOMIC_RELAXED);
  return 0;
}
