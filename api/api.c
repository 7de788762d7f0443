/*
 * api.c -- the REST API v1: routing, handlers, validation, JSON, error
 * mapping, auth and CORS (see api.h for the contract).
 *
 * Request flow, in this order (api_handle):
 *   1. split the raw target into path and query; match the route on the raw
 *      path (so "%2F" inside a key never changes the route);
 *   2. OPTIONS answers 204 (CORS preflight when an Origin asks) without auth;
 *   3. the bearer token, when configured (every route but /healthz);
 *   4. unknown route 404, wrong method 405 with Allow;
 *   5. the handler; then CORS headers, "Connection: close" when draining,
 *      and the metrics.
 *
 * Errors: every error body is {"error":{"code":"snake_case","message":"..."}}
 * built by api_reply_error.  Core error codes become HTTP statuses in exactly
 * one place, api_reply_sa_error; the core's sa_error.message is passed on.
 *
 * Invariants: a response always has a status; its body and header values
 * are owned by it; nothing here keeps a pointer into a request after
 * api_handle returns.
 */
#define _GNU_SOURCE /* vasprintf, open_memstream */
#include "api.h"

#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api_assets.h"
#include "api_feed.h"
#include "api_json.h"
#include "api_metrics.h"
#include "api_util.h"

#define API_LIST_DEFAULT_LIMIT 100
#define API_LIST_MAX_LIMIT 10000
#define API_LIST_MAX_LIMIT_VALUES 100        /* with values=1: values are copied whole */
#define API_LIST_MAX_VALUE_BYTES (16u << 20) /* default page_value_bytes */
#define API_BATCH_MAX_OPS 10000

struct api_ctx {
  sa_client *client;                         /* borrowed */
  char *auth_token;                          /* NULL when auth is off */
  char **cors;                               /* allowed origins */
  size_t n_cors;                             /* entries in cors */
  bool cors_any;                             /* "*" was in the list */
  uint32_t max_value_bytes;                  /* PUT body limit */
  uint32_t max_batch_bytes;                  /* batch payload limit (core) */
  uint32_t page_value_bytes;                 /* a listing page with values stops past this */
  api_metrics *metrics;                      /* request metrics */
  atomic_bool draining;                      /* shutting down */
  void (*metrics_extra)(void *cls, FILE *f); /* server series for /metrics, or NULL */
  void *metrics_extra_cls;                   /* its argument */
  struct timespec started;                   /* CLOCK_MONOTONIC at create */
};

/* ---- responses --------------------------------------------------------- */

static char api_oom_body[] =
    "{\"error\":{\"code\":\"internal_error\",\"message\":\"out of memory\"}}\n";
static api_response api_oom_response = {
    .status = 500,
    .content_type = "application/json",
    .body = api_oom_body,
    .body_len = sizeof api_oom_body - 1,
};

static api_response *api_resp_new(int status) {
  api_response *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->status = status;
  return r;
}

void api_response_free(api_response *resp) {
  if (!resp || resp == &api_oom_response) return;
  free(resp->body);
  api_feed_free(resp->feed);
  api_write_free(resp->write);
  for (size_t i = 0; i < resp->n_headers; i++)
    if (!resp->headers[i].borrowed) free(resp->headers[i].value);
  free(resp);
}

/* Adds a header (name static).  Silently drops it when the table is full or
 * memory is short: headers here are never needed for correctness of the
 * body, and the table is sized for the most any route adds.  A format
 * without '%' (a literal) is kept by pointer; a short value is written into
 * the response's hbuf; only a long one is allocated. */
static void api_resp_header(api_response *r, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void api_resp_header(api_response *r, const char *name, const char *fmt, ...) {
  if (r == &api_oom_response || r->n_headers >= API_MAX_HEADERS) return;
  api_header *h = &r->headers[r->n_headers];
  if (!strchr(fmt, '%')) {
    h->value = (char *)fmt; /* a string literal */
    h->borrowed = true;
  } else {
    va_list ap;
    va_start(ap, fmt);
    size_t room = sizeof r->hbuf - r->hbuf_used;
    int n;
    if (fmt[0] == '%' && fmt[1] == 's' && !fmt[2]) { /* "%s": a copy, no printf */
      const char *a = va_arg(ap, const char *);
      size_t al = strlen(a);
      n = al > INT_MAX ? -1 : (int)al;
      if (n >= 0 && al < room) memcpy(r->hbuf + r->hbuf_used, a, al + 1);
    } else {
      n = vsnprintf(r->hbuf + r->hbuf_used, room, fmt, ap);
    }
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < room) {
      h->value = r->hbuf + r->hbuf_used;
      h->borrowed = true;
      r->hbuf_used += (size_t)n + 1;
    } else {
      va_start(ap, fmt);
      char *v = NULL;
      n = vasprintf(&v, fmt, ap);
      va_end(ap);
      if (n < 0) return;
      h->value = v;
      h->borrowed = false;
    }
  }
  h->name = name;
  r->n_headers++;
}

/* ETag: "<version>" (the strong tag of a value's version), without printf. */
static void api_resp_etag(api_response *r, uint64_t version) {
  char tag[24];
  char *p = tag;
  *p++ = '"';
  p = api_u64_put(p, version);
  *p++ = '"';
  *p = '\0';
  api_resp_header(r, "ETag", "%s", tag);
}

/* Sets a JSON body; steals the reference to j.  Returns r, or the static
 * 500 response when out of memory (r is freed then). */
static api_response *api_resp_json(api_response *r, json_t *j) {
  if (!r || !j) {
    api_response_free(r);
    json_decref(j);
    return &api_oom_response;
  }
  char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
  json_decref(j);
  if (!s) {
    api_response_free(r);
    return &api_oom_response;
  }
  size_t n = strlen(s);
  char *body = realloc(s, n + 2);
  if (!body) {
    free(s);
    api_response_free(r);
    return &api_oom_response;
  }
  body[n] = '\n';
  body[n + 1] = '\0';
  r->body = body;
  r->body_len = n + 1;
  r->content_type = "application/json";
  return r;
}

/* The one constructor of error responses. */
static api_response *api_reply_error(int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static api_response *api_reply_error(int status, const char *code, const char *fmt, ...) {
  char msg[SA_ERROR_MESSAGE_MAX + 256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  /* Messages may quote user input: make sure jansson accepts them. */
  if (!api_utf8_valid(msg, strlen(msg))) snprintf(msg, sizeof msg, "%s", code);
  json_t *j = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg);
  return api_resp_json(api_resp_new(status), j);
}

/* Maps a core error to an HTTP error.  THE place where core codes become
 * statuses; err may be NULL (then sa_strerror gives the message). */
static api_response *api_reply_sa_error(int rc, const sa_error *err) {
  const char *msg = (err && err->message[0]) ? err->message : sa_strerror(rc);
  switch (rc) {
  case SA_EKEY:
    return api_reply_error(400, "invalid_key", "%s", msg);
  case SA_EINVAL:
    return api_reply_error(400, "invalid_argument", "%s", msg);
  case SA_ENOTFOUND:
    return api_reply_error(404, "not_found", "%s", msg);
  case SA_ECONFLICT:
    return api_reply_error(412, "precondition_failed", "%s", msg);
  case SA_ETOOBIG:
    return api_reply_error(413, "payload_too_large", "%s", msg);
  case SA_ENOSPC:
    return api_reply_error(507, "insufficient_storage", "%s", msg);
  case SA_EREADONLY:
    return api_reply_error(503, "read_only", "%s", msg);
  case SA_ECLOSED:
    return api_reply_error(503, "shutting_down", "%s", msg);
  case SA_EIO:
    return api_reply_error(500, "io_error", "%s", msg);
  default:
    return api_reply_error(500, "internal_error", "%s", msg);
  }
}

/* ---- context ------------------------------------------------------------ */

int api_ctx_create(const api_config *cfg, api_ctx **out) {
  *out = NULL;
  if (!cfg || !cfg->client) return SA_EINVAL;
  api_ctx *c = calloc(1, sizeof *c);
  if (!c) return SA_ENOMEM;
  c->client = cfg->client;
  c->metrics_extra = cfg->metrics_extra;
  c->metrics_extra_cls = cfg->metrics_extra_cls;
  c->max_value_bytes = cfg->max_value_bytes ? cfg->max_value_bytes : SA_DEFAULT_MAX_VALUE_BYTES;
  c->max_batch_bytes = cfg->max_batch_bytes ? cfg->max_batch_bytes : SA_DEFAULT_MAX_BATCH_BYTES;
  c->page_value_bytes = cfg->page_value_bytes ? cfg->page_value_bytes : API_LIST_MAX_VALUE_BYTES;
  c->metrics = api_metrics_create();
  if (!c->metrics) goto oom;
  if (cfg->auth_token && cfg->auth_token[0]) {
    c->auth_token = strdup(cfg->auth_token);
    if (!c->auth_token) goto oom;
  }
  if (cfg->n_cors_origins) {
    c->cors = calloc(cfg->n_cors_origins, sizeof *c->cors);
    if (!c->cors) goto oom;
    for (size_t i = 0; i < cfg->n_cors_origins; i++) {
      if (strcmp(cfg->cors_origins[i], "*") == 0) c->cors_any = true;
      c->cors[i] = strdup(cfg->cors_origins[i]);
      if (!c->cors[i]) goto oom;
      c->n_cors++;
    }
  }
  atomic_init(&c->draining, false);
  clock_gettime(CLOCK_MONOTONIC, &c->started);
  *out = c;
  return 0;
oom:
  api_ctx_destroy(c);
  return SA_ENOMEM;
}

void api_ctx_destroy(api_ctx *ctx) {
  if (!ctx) return;
  for (size_t i = 0; i < ctx->n_cors; i++)
    free(ctx->cors[i]);
  free(ctx->cors);
  free(ctx->auth_token);
  api_metrics_destroy(ctx->metrics);
  free(ctx);
}

void api_ctx_set_draining(api_ctx *ctx, bool draining) {
  atomic_store(&ctx->draining, draining);
}

/* ---- routing ------------------------------------------------------------ */

typedef struct api_route {
  api_route_id id;
  const char *path;    /* exact raw path, or the prefix for STORE_KEY */
  const char *methods; /* Allow header value */
} api_route;

/* Order matters only for documentation; matching is exact except STORE_KEY. */
static const api_route api_route_table[] = {
    {API_ROUTE_ROOT, "/", "GET, HEAD, OPTIONS"},
    {API_ROUTE_ROOT, "/dashboard", "GET, HEAD, OPTIONS"},
    {API_ROUTE_ROOT, "/dashboard.js", "GET, HEAD, OPTIONS"},
    {API_ROUTE_ROOT, "/dashboard.css", "GET, HEAD, OPTIONS"},
    {API_ROUTE_HEALTHZ, "/healthz", "GET, HEAD, OPTIONS"},
    {API_ROUTE_READYZ, "/readyz", "GET, HEAD, OPTIONS"},
    {API_ROUTE_METRICS, "/metrics", "GET, HEAD, OPTIONS"},
    {API_ROUTE_STATUS, "/v1/status", "GET, HEAD, OPTIONS"},
    {API_ROUTE_SYNC_STATUS, "/v1/sync/status", "GET, HEAD, OPTIONS"},
    {API_ROUTE_SYNC_TICK, "/v1/sync/tick", "POST, OPTIONS"},
    {API_ROUTE_STORE_LIST, "/v1/store", "GET, HEAD, OPTIONS"},
    {API_ROUTE_STORE_KEY, "/v1/store/", "GET, HEAD, PUT, DELETE, OPTIONS"},
    {API_ROUTE_BATCH, "/v1/batch", "POST, OPTIONS"},
    {API_ROUTE_CHANGES, "/v1/changes", "GET, HEAD, OPTIONS"},
};
#define API_NROUTES (sizeof api_route_table / sizeof api_route_table[0])

static const api_route_info api_route_infos[] = {
    {"/", "GET,HEAD"},
    {"/healthz", "GET,HEAD"},
    {"/readyz", "GET,HEAD"},
    {"/metrics", "GET,HEAD"},
    {"/v1/status", "GET,HEAD"},
    {"/v1/sync/status", "GET,HEAD"},
    {"/v1/sync/tick", "POST"},
    {"/v1/store", "GET,HEAD"},
    {"/v1/store/{key}", "GET,HEAD,PUT,DELETE"},
    {"/v1/batch", "POST"},
    {"/v1/changes", "GET,HEAD"},
    {"/dashboard", "GET,HEAD"},
    {"/dashboard.js", "GET,HEAD"},
    {"/dashboard.css", "GET,HEAD"},
};

const api_route_info *api_routes(size_t *n) {
  *n = sizeof api_route_infos / sizeof api_route_infos[0];
  return api_route_infos;
}

/* Finds the route of a raw path (path_len bytes, no query).  Returns NULL
 * for an unknown path; for STORE_KEY sets *key and *key_len to the raw key. */
static const api_route *api_route_match(const char *path, size_t path_len, const char **key,
                                        size_t *key_len) {
  static const char store_prefix[] = "/v1/store/";
  const size_t sp = sizeof store_prefix - 1;
  *key = NULL;
  *key_len = 0;
  for (size_t i = 0; i < API_NROUTES; i++) {
    const api_route *r = &api_route_table[i];
    if (r->id == API_ROUTE_STORE_KEY) {
      if (path_len >= sp && memcmp(path, store_prefix, sp) == 0) {
        *key = path + sp;
        *key_len = path_len - sp;
        return r;
      }
    } else if (strlen(r->path) == path_len && memcmp(r->path, path, path_len) == 0) {
      return r;
    }
  }
  return NULL;
}

static bool api_method_allowed(const api_route *r, const char *method) {
  /* r->methods is a ", "-separated list of tokens. */
  size_t mlen = strlen(method);
  const char *p = r->methods;
  while (*p) {
    const char *e = strchr(p, ',');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    if (n == mlen && memcmp(p, method, n) == 0) return true;
    if (!e) break;
    p = e + 1;
    while (*p == ' ')
      p++;
  }
  return false;
}

/* ---- small helpers ------------------------------------------------------- */

static const char *api_hdr(const api_request *req, const char *name) {
  return req->header ? req->header(req->header_cls, name) : NULL;
}

/* Converts the core's HLC timestamp to unix milliseconds: the physical
 * part sits above the 16-bit logical counter. */
static uint64_t api_hlc_ms(uint64_t hlc) {
  return hlc >> 16;
}

/* Sets "value" and "encoding" on obj: UTF-8 text as a string, anything
 * else base64.  Returns 0, or -1 out of memory. */
static int api_json_set_value(json_t *obj, const char *data, size_t len) {
  json_t *v;
  if (api_utf8_valid(data, len)) {
    v = json_stringn(data ? data : "", len);
    if (json_object_set_new(obj, "encoding", json_string("utf-8")) != 0) return -1;
  } else {
    char *b = api_base64_encode(data, len, NULL);
    if (!b) return -1;
    v = json_string(b);
    free(b);
    if (json_object_set_new(obj, "encoding", json_string("base64")) != 0) return -1;
  }
  return json_object_set_new(obj, "value", v);
}

/* Decodes a query parameter into *out (caller frees).  Returns NULL on
 * success (found or not: *out NULL when absent), or an error response. */
static api_response *api_query(const char *query, const char *name, char **out) {
  size_t len;
  int rc = api_query_get(query, name, out, &len);
  if (rc == -2) return &api_oom_response;
  if (rc == -1)
    return api_reply_error(400, "bad_encoding",
                           "query parameter \"%s\" is not correctly "
                           "percent-encoded",
                           name);
  if (rc == 1 && strlen(*out) != len) {
    free(*out);
    *out = NULL;
    return api_reply_error(400, "bad_request", "query parameter \"%s\" contains a NUL byte", name);
  }
  return NULL;
}

/* Parses a boolean query flag: absent/""/"0"/"false" false, "1"/"true" true. */
static api_response *api_query_bool(const char *query, const char *name, bool *out) {
  char *v = NULL;
  api_response *e = api_query(query, name, &v);
  if (e) return e;
  *out = false;
  if (v) {
    if (strcmp(v, "1") == 0 || strcmp(v, "true") == 0 || strcmp(v, "yes") == 0)
      *out = true;
    else if (v[0] && strcmp(v, "0") != 0 && strcmp(v, "false") != 0 && strcmp(v, "no") != 0)
      e = api_reply_error(400, "bad_request", "query parameter \"%s\" must be 1 or 0", name);
    free(v);
  }
  return e;
}

/* ---- handlers ------------------------------------------------------------ */

/* The sync state exactly as the core reports it. */
static json_t *api_sync_json(const sa_sync_state *s) {
  return json_pack("{s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:b,s:o,"
                   "s:{s:b,s:b,s:b,s:s},s:{s:b,s:b,s:s},s:I}",
                   "outbox_size", api_json_u64(s->outbox_size), "queued", api_json_u64(s->queued),
                   "in_flight", api_json_u64(s->in_flight), "acknowledged",
                   api_json_u64(s->acknowledged), "failed", api_json_u64(s->failed),
                   "total_retries", api_json_u64(s->total_retries), "ticks", api_json_u64(s->ticks),
                   "last_tick_at", api_json_time(s->last_tick_ms), "last_lsn",
                   api_json_u64(s->last_lsn), "outbox_max", api_json_u64(s->outbox_max), "overflow",
                   (int)s->overflow, "pruned", api_json_u64(s->pruned), "transport", "enabled",
                   (int)s->transport_enabled, "running", (int)s->transport_running, "stub",
                   (int)s->transport_stub, "kind", s->transport_kind, "discovery", "enabled",
                   (int)s->discovery_enabled, "stub", (int)s->discovery_stub, "kind",
                   s->discovery_kind, "peers", (json_int_t)s->peers);
}

static api_response *api_h_status(api_ctx *ctx) {
  sa_status st;
  sa_sync_state ss;
  sa_error err = {0};
  int rc = sa_client_status(ctx->client, &st, &err);
  if (rc != 0) return api_reply_sa_error(rc, &err);
  rc = sa_client_sync_state(ctx->client, &ss, &err);
  if (rc != 0) return api_reply_sa_error(rc, &err);
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  json_int_t up = (json_int_t)(now.tv_sec - ctx->started.tv_sec);
  json_t *j = json_pack(
      "{s:s,s:s,s:I,s:b,s:s?,s:{s:b,s:s,s:b,s:o,s:o},s:{s:o,s:s,s:o,s:o,s:o,s:o},s:o,"
      "s:{s:o,s:o,s:o,s:s,s:b}}",
      "node_id", st.node_id, "version", sa_version(), "uptime_s", up, "read_only",
      (int)st.read_only, "read_only_reason", st.read_only ? st.read_only_reason : NULL, "wal",
      "enabled", (int)st.persistent, "path", st.wal_path ? st.wal_path : "", "durable",
      (int)st.durable, "bytes", api_json_u64(st.wal_bytes), "last_lsn", api_json_u64(st.last_lsn),
      "store", "size", api_json_u64(st.size), "path", st.store_path ? st.store_path : "",
      "applied_lsn", api_json_u64(st.applied_lsn), "synced_lsn", api_json_u64(st.synced_lsn),
      "sync_points", api_json_u64(st.store_syncs), "writebacks", api_json_u64(st.store_writebacks),
      "sync", api_sync_json(&ss), "recovery", "records_scanned",
      api_json_u64(st.recovery.records_scanned), "records_replayed",
      api_json_u64(st.recovery.records_replayed), "torn_bytes",
      api_json_u64(st.recovery.torn_bytes), "torn_path", st.recovery.torn_path, "store_rolled_back",
      (int)st.recovery.store_rolled_back);
  return api_resp_json(api_resp_new(200), j);
}

static api_response *api_h_sync_status(api_ctx *ctx) {
  sa_sync_state ss;
  sa_error err = {0};
  int rc = sa_client_sync_state(ctx->client, &ss, &err);
  if (rc != 0) return api_reply_sa_error(rc, &err);
  return api_resp_json(api_resp_new(200), api_sync_json(&ss));
}

/* POST /v1/sync/tick: runs one outbox tick now and answers the sync state
 * after it (useful with long tick intervals, and in tests). */
static api_response *api_h_sync_tick(api_ctx *ctx) {
  sa_sync_state ss;
  sa_error err = {0};
  int rc = sa_client_sync_tick(ctx->client, &err);
  if (rc == 0) rc = sa_client_sync_state(ctx->client, &ss, &err);
  if (rc != 0) return api_reply_sa_error(rc, &err);
  return api_resp_json(api_resp_new(200), api_sync_json(&ss));
}

static api_response *api_h_readyz(api_ctx *ctx) {
  if (atomic_load(&ctx->draining))
    return api_reply_error(503, "shutting_down", "the node is shutting down");
  sa_status st;
  sa_error err = {0};
  int rc = sa_client_status(ctx->client, &st, &err);
  if (rc != 0) return api_reply_sa_error(rc, &err);
  if (st.read_only)
    return api_reply_error(503, "read_only", "the node is read-only: %s", st.read_only_reason);
  return api_resp_json(api_resp_new(200), json_pack("{s:s}", "status", "ready"));
}

/* The core's write-path statistics: fdatasync latency and group-commit
 * sizes as Prometheus histograms (the core's buckets are not cumulative). */
static void api_metrics_write_stats(const sa_stats *ws, FILE *f) {
  uint64_t cum = 0;
  fputs("# HELP softadastra_wal_fsync_duration_seconds Time of each WAL fdatasync.\n"
        "# TYPE softadastra_wal_fsync_duration_seconds histogram\n",
        f);
  for (size_t i = 0; i + 1 < SA_STATS_SYNC_BUCKETS; i++) {
    cum += ws->sync_hist[i];
    fprintf(f, "softadastra_wal_fsync_duration_seconds_bucket{le=\"%g\"} %llu\n",
            sa_stats_sync_bounds[i], (unsigned long long)cum);
  }
  cum += ws->sync_hist[SA_STATS_SYNC_BUCKETS - 1];
  fprintf(f,
          "softadastra_wal_fsync_duration_seconds_bucket{le=\"+Inf\"} %llu\n"
          "softadastra_wal_fsync_duration_seconds_sum %.6f\n"
          "softadastra_wal_fsync_duration_seconds_count %llu\n",
          (unsigned long long)cum, ws->sync_seconds, (unsigned long long)ws->syncs);
  cum = 0;
  fputs("# HELP softadastra_group_commit_ops Operations per group commit (one WAL write and "
        "fdatasync).\n"
        "# TYPE softadastra_group_commit_ops histogram\n",
        f);
  for (size_t i = 0; i + 1 < SA_STATS_GROUP_BUCKETS; i++) {
    cum += ws->group_hist[i];
    fprintf(f, "softadastra_group_commit_ops_bucket{le=\"%g\"} %llu\n", sa_stats_group_bounds[i],
            (unsigned long long)cum);
  }
  cum += ws->group_hist[SA_STATS_GROUP_BUCKETS - 1];
  fprintf(f,
          "softadastra_group_commit_ops_bucket{le=\"+Inf\"} %llu\n"
          "softadastra_group_commit_ops_sum %llu\n"
          "softadastra_group_commit_ops_count %llu\n"
          "# HELP softadastra_wal_written_bytes_total Bytes appended to the WAL since open.\n"
          "# TYPE softadastra_wal_written_bytes_total counter\n"
          "softadastra_wal_written_bytes_total %llu\n"
          "# HELP softadastra_write_errors_total Writes failed by I/O errors or a full disk.\n"
          "# TYPE softadastra_write_errors_total counter\n"
          "softadastra_write_errors_total %llu\n"
          "# HELP softadastra_store_commits_total Store transactions that applied written groups "
          "(one applies every group of up to store_commit_ms).\n"
          "# TYPE softadastra_store_commits_total counter\n"
          "softadastra_store_commits_total %llu\n",
          (unsigned long long)cum, (unsigned long long)ws->group_ops,
          (unsigned long long)ws->groups, (unsigned long long)ws->wal_bytes_written,
          (unsigned long long)ws->write_errors, (unsigned long long)ws->store_commits);
}

static api_response *api_h_metrics(api_ctx *ctx) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (!f) return &api_oom_response;
  api_metrics_write(ctx->metrics, f);
  if (ctx->metrics_extra) ctx->metrics_extra(ctx->metrics_extra_cls, f);
  sa_status st;
  sa_sync_state ss;
  if (sa_client_status(ctx->client, &st, NULL) == 0) {
    fprintf(
        f,
        "# HELP softadastra_wal_bytes Bytes of records in the WAL (its logical size; the file also "
        "holds up to one chunk of preallocated zeros).\n"
        "# TYPE softadastra_wal_bytes gauge\nsoftadastra_wal_bytes %llu\n"
        "# HELP softadastra_wal_last_lsn Last LSN written to the WAL.\n"
        "# TYPE softadastra_wal_last_lsn gauge\nsoftadastra_wal_last_lsn %llu\n"
        "# HELP softadastra_store_applied_lsn Last LSN applied to the store.\n"
        "# TYPE softadastra_store_applied_lsn gauge\nsoftadastra_store_applied_lsn %llu\n"
        "# HELP softadastra_store_synced_lsn Last LSN the store holds durably (its last "
        "sync point).\n"
        "# TYPE softadastra_store_synced_lsn gauge\nsoftadastra_store_synced_lsn %llu\n"
        "# HELP softadastra_store_sync_points_total Store sync points since the node opened.\n"
        "# TYPE softadastra_store_sync_points_total counter\n"
        "softadastra_store_sync_points_total %llu\n"
        "# HELP softadastra_store_writebacks_total Store write-back kicks between sync "
        "points since the node opened.\n"
        "# TYPE softadastra_store_writebacks_total counter\n"
        "softadastra_store_writebacks_total %llu\n"
        "# HELP softadastra_store_keys Number of keys in the store.\n"
        "# TYPE softadastra_store_keys gauge\nsoftadastra_store_keys %llu\n"
        "# HELP softadastra_checkpoints_total Checkpoints since the node opened.\n"
        "# TYPE softadastra_checkpoints_total counter\nsoftadastra_checkpoints_total %llu\n"
        "# HELP softadastra_read_only 1 when a failed fdatasync made the node read-only.\n"
        "# TYPE softadastra_read_only gauge\nsoftadastra_read_only %d\n"
        "# HELP softadastra_recovery_records_replayed WAL records replayed at open.\n"
        "# TYPE softadastra_recovery_records_replayed gauge\n"
        "softadastra_recovery_records_replayed %llu\n",
        (unsigned long long)st.wal_bytes, (unsigned long long)st.last_lsn,
        (unsigned long long)st.applied_lsn, (unsigned long long)st.synced_lsn,
        (unsigned long long)st.store_syncs, (unsigned long long)st.store_writebacks,
        (unsigned long long)st.size, (unsigned long long)st.checkpoints, st.read_only ? 1 : 0,
        (unsigned long long)st.recovery.records_replayed);
  }
  if (sa_client_sync_state(ctx->client, &ss, NULL) == 0) {
    fprintf(f,
            "# HELP softadastra_outbox_size Operations recorded in the outbox.\n"
            "# TYPE softadastra_outbox_size gauge\nsoftadastra_outbox_size %llu\n"
            "# HELP softadastra_outbox_queued Operations waiting for the transport.\n"
            "# TYPE softadastra_outbox_queued gauge\nsoftadastra_outbox_queued %llu\n"
            "# HELP softadastra_outbox_in_flight Operations handed to the transport.\n"
            "# TYPE softadastra_outbox_in_flight gauge\nsoftadastra_outbox_in_flight %llu\n"
            "# HELP softadastra_outbox_failed Operations given up after max retries.\n"
            "# TYPE softadastra_outbox_failed gauge\nsoftadastra_outbox_failed %llu\n"
            "# HELP softadastra_outbox_acknowledged Operations acknowledged, kept until pruned.\n"
            "# TYPE softadastra_outbox_acknowledged gauge\nsoftadastra_outbox_acknowledged %llu\n"
            "# HELP softadastra_outbox_max Outbox entries before overflow is reported.\n"
            "# TYPE softadastra_outbox_max gauge\nsoftadastra_outbox_max %llu\n"
            "# HELP softadastra_outbox_overflow 1 while the outbox holds more than outbox_max.\n"
            "# TYPE softadastra_outbox_overflow gauge\nsoftadastra_outbox_overflow %d\n"
            "# HELP softadastra_outbox_pruned_total Outbox entries pruned since the node opened.\n"
            "# TYPE softadastra_outbox_pruned_total counter\nsoftadastra_outbox_pruned_total %llu\n"
            "# HELP softadastra_sync_retries_total Operations handed to the transport again.\n"
            "# TYPE softadastra_sync_retries_total counter\nsoftadastra_sync_retries_total %llu\n"
            "# HELP softadastra_sync_ticks_total Outbox ticks since the node opened.\n"
            "# TYPE softadastra_sync_ticks_total counter\nsoftadastra_sync_ticks_total %llu\n",
            (unsigned long long)ss.outbox_size, (unsigned long long)ss.queued,
            (unsigned long long)ss.in_flight, (unsigned long long)ss.failed,
            (unsigned long long)ss.acknowledged, (unsigned long long)ss.outbox_max,
            (int)ss.overflow, (unsigned long long)ss.pruned, (unsigned long long)ss.total_retries,
            (unsigned long long)ss.ticks);
  }
  sa_stats ws;
  if (sa_client_stats(ctx->client, &ws, NULL) == 0) api_metrics_write_stats(&ws, f);
  if (fclose(f) != 0) {
    free(buf);
    return &api_oom_response;
  }
  api_response *r = api_resp_new(200);
  if (!r) {
    free(buf);
    return &api_oom_response;
  }
  r->body = buf;
  r->body_len = len;
  r->content_type = "text/plain; version=0.0.4; charset=utf-8";
  return r;
}

/* The dashboard's compiled-in files (api_assets.h): /, /dashboard,
 * /dashboard.js, /dashboard.css, under a strict Content-Security-Policy. */
static api_response *api_h_root(const char *path) {
  api_asset a;
  if (api_asset_find(path, strlen(path), &a) != 0)
    return api_reply_error(404, "route_not_found", "no such page");
  api_response *r = api_resp_new(200);
  if (!r) return &api_oom_response;
  r->body = malloc(a.len + 1);
  if (!r->body) {
    api_response_free(r);
    return &api_oom_response;
  }
  memcpy(r->body, a.data, a.len + 1);
  r->body_len = a.len;
  r->content_type = a.content_type;
  api_resp_header(r, "X-Content-Type-Options", "nosniff");
  api_resp_header(r, "X-Frame-Options", "DENY");
  api_resp_header(r, "Referrer-Policy", "no-referrer");
  api_resp_header(r, "Cache-Control", "no-cache");
  api_resp_header(r, "Content-Security-Policy", "%s", API_ASSETS_CSP);
  return r;
}

/* GET /v1/changes: the change feed (api_feed.c).  A long-poll or a stream
 * from a server that can defer comes back with resp->feed set. */
static api_response *api_h_changes(api_ctx *ctx, const api_request *req, const char *query) {
  api_feed *deferred = NULL;
  api_response *r =
      api_feed_handle(ctx->client, query, req->header, req->header_cls, req->can_defer, &deferred);
  if (deferred) r->feed = deferred; /* r is then a response of its own, never the static one */
  return r;
}

/* GET /v1/store/{key}: the answer is built inside the core's read snapshot
 * (sa_client_get_with), so the value is copied once, from the store's map
 * into the response body, which the server hands on without a copy. */
typedef struct api_get {
  const char *key;  /* decoded key */
  const char *inm;  /* If-None-Match, or NULL */
  bool raw;         /* ?raw=1 */
  api_response *r;  /* the answer (NULL: out of memory) */
  uint64_t version; /* for the ETag */
} api_get;

static void api_get_answer(void *arg, const sa_value *v) {
  api_get *g = arg;
  g->version = v->version;
  api_response *r;
  if (g->inm && api_etag_list_matches(g->inm, v->version)) {
    r = api_resp_new(304);
  } else if (g->raw) {
    r = api_resp_new(200);
    char *body = r ? malloc(v->len + 1) : NULL;
    if (body) {
      memcpy(body, v->data, v->len);
      body[v->len] = '\0';
      r->body = body;
      r->body_len = v->len;
      r->content_type = "application/octet-stream";
      api_resp_header(r, "X-Content-Type-Options", "nosniff");
    } else {
      api_response_free(r);
      r = NULL;
    }
  } else {
    r = api_resp_new(200);
    if (r) {
      r->body = api_json_value_doc(g->key, strlen(g->key), v->data, v->len, v->version, v->lsn,
                                   v->hlc, api_hlc_ms(v->hlc), &r->body_len);
      r->content_type = "application/json";
      if (!r->body) {
        api_response_free(r);
        r = NULL;
      }
    }
  }
  g->r = r;
}

static api_response *api_h_get_key(api_ctx *ctx, const api_request *req, const char *query,
                                   const char *key) {
  api_get g = {.key = key};
  api_response *e = api_query_bool(query, "raw", &g.raw);
  if (e) return e;
  g.inm = api_hdr(req, "If-None-Match");
  sa_error err = {0};
  int rc = sa_client_get_with(ctx->client, key, api_get_answer, &g, &err);
  if (rc != 0) return api_reply_sa_error(rc, &err);
  api_response *r = g.r ? g.r : &api_oom_response;
  api_resp_etag(r, g.version);
  api_resp_header(r, "Cache-Control", "no-cache");
  return r;
}

/* Reads If-Match / If-None-Match of a write into *wo.  Returns NULL or an
 * error response.  put says whether If-None-Match: * is allowed. */
static api_response *api_write_cond(api_ctx *ctx, const api_request *req, const char *key, bool put,
                                    sa_write_opts *wo) {
  const char *im = api_hdr(req, "If-Match");
  const char *inm = api_hdr(req, "If-None-Match");
  wo->cond = SA_COND_NONE;
  wo->version = 0;
  if (im && inm)
    return api_reply_error(400, "bad_precondition", "use either If-Match or If-None-Match");
  if (inm) {
    const char *p = inm;
    while (*p == ' ')
      p++;
    if (!put || strcmp(p, "*") != 0)
      return api_reply_error(400, "bad_precondition",
                             "If-None-Match on a write must be \"*\" (create only)");
    wo->cond = SA_COND_ABSENT;
    return NULL;
  }
  if (!im) return NULL;
  const char *p = im;
  while (*p == ' ')
    p++;
  if (strcmp(p, "*") == 0) {
    /* "any current version": pin the version that exists now. */
    sa_value v;
    sa_error err = {0};
    int rc = sa_client_get(ctx->client, key, &v, &err);
    if (rc == SA_ENOTFOUND)
      return api_reply_error(412, "precondition_failed", "If-Match: * but key \"%s\" is absent",
                             key);
    if (rc != 0) return api_reply_sa_error(rc, &err);
    wo->cond = SA_COND_VERSION;
    wo->version = v.version;
    sa_value_free(&v);
    return NULL;
  }
  uint64_t ver;
  if (api_etag_parse(p, &ver) != 0) {
    if (strchr(p, '"'))
      return api_reply_error(412, "precondition_failed",
                             "If-Match must be one strong ETag \"<version>\"; %s never matches", p);
    return api_reply_error(400, "bad_precondition", "If-Match must be an ETag like \"3\"");
  }
  wo->cond = SA_COND_VERSION;
  wo->version = ver;
  return NULL;
}

/* ---- writes of one key: blocking, or deferred (api.h) ------------------- */

struct api_write {
  atomic_int state;          /* API_WRITE_SETTLED | API_WRITE_ARMED */
  void (*notify)(void *cls); /* set by api_write_arm */
  void *notify_cls;
  bool put;    /* PUT, else DELETE */
  size_t size; /* PUT: bytes of the value */
  int rc;      /* the node's answer, once settled */
  sa_write_result res;
  sa_error err;
  api_route_id route; /* for the metrics at api_write_finish */
  struct timespec t0;
  char key[]; /* decoded key, NUL-terminated */
};

enum { API_WRITE_SETTLED = 1, API_WRITE_ARMED = 2 };

/* The answer to a settled write of key. */
static api_response *api_write_reply(const char *key, bool put, size_t size, int rc,
                                     const sa_write_result *res, const sa_error *err) {
  if (rc != 0) return api_reply_sa_error(rc, err);
  api_response *r = api_resp_new(put && res->version == 1 ? 201 : 200);
  if (!r) return &api_oom_response;
  r->body = api_json_write_doc(key, strlen(key), put, res->version, res->lsn, res->durable, size,
                               &r->body_len);
  if (!r->body) {
    api_response_free(r);
    return &api_oom_response;
  }
  r->content_type = "application/json";
  if (put) api_resp_etag(r, res->version);
  return r;
}

/* The node's callback (its committer thread): record the answer, then wake the
 * server if it has armed the write. */
static void api_write_settled(void *arg, int rc, const sa_write_result *res, const sa_error *err) {
  api_write *w = arg;
  w->rc = rc;
  if (res) w->res = *res;
  if (err) w->err = *err;
  if (atomic_fetch_or(&w->state, API_WRITE_SETTLED) & API_WRITE_ARMED) w->notify(w->notify_cls);
}

void api_write_arm(api_write *w, void (*notify)(void *cls), void *cls) {
  w->notify = notify;
  w->notify_cls = cls;
  if (atomic_fetch_or(&w->state, API_WRITE_ARMED) & API_WRITE_SETTLED) notify(cls);
}

void api_write_free(api_write *w) {
  free(w);
}

/* Queues the write of key without waiting.  Returns the placeholder, or
 * NULL when the node refused it at once (then *e is the error answer). */
static api_response *api_write_defer(api_ctx *ctx, const api_request *req, const char *key,
                                     bool put, const sa_write_opts *wo, api_response **e) {
  size_t klen = strlen(key);
  api_write *w = calloc(1, sizeof *w + klen + 1);
  api_response *r = api_resp_new(202);
  if (!w || !r) {
    free(w);
    api_response_free(r);
    *e = &api_oom_response;
    return NULL;
  }
  memcpy(w->key, key, klen + 1);
  atomic_init(&w->state, 0);
  w->put = put;
  w->size = req->body_len;
  sa_error err = {0};
  int rc = put ? sa_client_put_async(ctx->client, w->key, req->body_len ? req->body : NULL,
                                     req->body_len, wo, api_write_settled, w, &err)
               : sa_client_remove_async(ctx->client, w->key, wo, api_write_settled, w, &err);
  if (rc != 0) {
    free(w);
    api_response_free(r);
    *e = api_reply_sa_error(rc, &err);
    return NULL;
  }
  r->write = w;
  return r;
}

static api_response *api_h_write_key(api_ctx *ctx, const api_request *req, const char *key,
                                     bool put) {
  if (put && req->body_len > ctx->max_value_bytes)
    return api_reply_error(413, "payload_too_large", "value of %zu bytes is over the limit of %u",
                           req->body_len, ctx->max_value_bytes);
  sa_write_opts wo;
  api_response *e = api_write_cond(ctx, req, key, put, &wo);
  if (e) return e;
  if (req->can_defer) {
    api_response *r = api_write_defer(ctx, req, key, put, &wo, &e);
    return r ? r : e;
  }
  sa_write_result res = {0};
  sa_error err = {0};
  int rc = put ? sa_client_put_ex(ctx->client, key, req->body_len ? req->body : NULL, req->body_len,
                                  &wo, &res, &err)
               : sa_client_remove_ex(ctx->client, key, &wo, &res, &err);
  return api_write_reply(key, put, req->body_len, rc, &res, &err);
}

static api_response *api_h_list(api_ctx *ctx, const char *query) {
  char *prefix = NULL, *after = NULL, *limit_s = NULL;
  bool values = false;
  api_response *e = NULL;
  size_t limit = API_LIST_DEFAULT_LIMIT;
  if ((e = api_query(query, "prefix", &prefix)) || (e = api_query(query, "after", &after)) ||
      (e = api_query(query, "limit", &limit_s)) || (e = api_query_bool(query, "values", &values)))
    goto out;
  if (limit_s) {
    uint64_t l;
    if (api_parse_u64(limit_s, &l) != 0 || l < 1 || l > API_LIST_MAX_LIMIT) {
      e = api_reply_error(400, "bad_request", "limit must be an integer from 1 to %d",
                          API_LIST_MAX_LIMIT);
      goto out;
    }
    limit = (size_t)l;
  }
  if (values && limit > API_LIST_MAX_LIMIT_VALUES) limit = API_LIST_MAX_LIMIT_VALUES;
  sa_list list;
  sa_error err = {0};
  int rc = sa_client_list(ctx->client, prefix, after, limit, values, &list, &err);
  if (rc != 0) {
    e = api_reply_sa_error(rc, &err);
    goto out;
  }
  json_t *items = json_array();
  size_t count = 0, value_bytes = 0;
  bool more = list.more;
  for (size_t i = 0; items && i < list.count; i++) {
    const sa_entry *en = &list.items[i];
    if (values && i > 0 && value_bytes + en->len > ctx->page_value_bytes) {
      more = true; /* the page is full: the client continues after the last item */
      break;
    }
    value_bytes += en->len;
    count++;
    json_t *it = json_pack("{s:s,s:o,s:o,s:o,s:o}", "key", en->key, "size", api_json_u64(en->len),
                           "version", api_json_u64(en->version), "lsn", api_json_u64(en->lsn),
                           "updated_at", api_json_time(api_hlc_ms(en->hlc)));
    if (it && values && api_json_set_value(it, en->data, en->len) != 0) {
      json_decref(it);
      it = NULL;
    }
    if (!it || json_array_append_new(items, it) != 0) {
      json_decref(items);
      items = NULL;
    }
  }
  json_t *j = NULL;
  if (items) {
    const char *next = (more && count) ? list.items[count - 1].key : NULL;
    j = json_pack("{s:o,s:I,s:b,s:s?}", "items", items, "count", (json_int_t)count, "more",
                  (int)more, "next", next);
    if (j && !next) json_object_set_new(j, "next", json_null());
  }
  sa_list_free(&list);
  e = api_resp_json(api_resp_new(200), j);
out:
  free(prefix);
  free(after);
  free(limit_s);
  return e;
}

/* Frees the decoded base64 buffers of a batch. */
static void api_batch_free(char **bufs, size_t n) {
  for (size_t i = 0; i < n; i++)
    free(bufs[i]);
  free(bufs);
}

static api_response *api_h_batch(api_ctx *ctx, const api_request *req) {
  const char *ct = api_hdr(req, "Content-Type");
  if (ct && strncasecmp(ct, "application/json", 16) != 0)
    return api_reply_error(415, "unsupported_media_type", "a batch is application/json, not \"%s\"",
                           ct);
  json_error_t jerr;
  json_t *root = json_loadb(req->body ? req->body : "", req->body_len,
                            JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
  if (!root)
    return api_reply_error(400, "invalid_json", "invalid JSON at line %d column %d: %s", jerr.line,
                           jerr.column, jerr.text);
  api_response *e = NULL;
  sa_batch_op *ops = NULL;
  char **bufs = NULL;
  size_t n = 0;
  json_t *arr = json_is_object(root) ? json_object_get(root, "ops") : NULL;
  if (!arr || !json_is_array(arr) || json_object_size(root) != 1) {
    e = api_reply_error(400, "bad_request", "a batch is {\"ops\": [...]} and nothing else");
    goto out;
  }
  n = json_array_size(arr);
  if (n == 0 || n > API_BATCH_MAX_OPS) {
    e = api_reply_error(400, "bad_request", "a batch holds 1 to %d operations, not %zu",
                        API_BATCH_MAX_OPS, n);
    goto out;
  }
  ops = calloc(n, sizeof *ops);
  bufs = calloc(n, sizeof *bufs);
  if (!ops || !bufs) {
    e = &api_oom_response;
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    json_t *o = json_array_get(arr, i);
    const char *opname = NULL, *key = NULL, *enc = "utf-8";
    json_t *val = NULL;
    size_t keylen = 0;
    if (!json_is_object(o)) {
      e = api_reply_error(400, "bad_request", "ops[%zu] is not an object", i);
      goto out;
    }
    const char *mname;
    json_t *mval;
    json_object_foreach(o, mname, mval) {
      if (strcmp(mname, "op") == 0 && json_is_string(mval))
        opname = json_string_value(mval);
      else if (strcmp(mname, "key") == 0 && json_is_string(mval)) {
        key = json_string_value(mval);
        keylen = json_string_length(mval);
      } else if (strcmp(mname, "value") == 0 && json_is_string(mval))
        val = mval;
      else if (strcmp(mname, "encoding") == 0 && json_is_string(mval))
        enc = json_string_value(mval);
      else {
        e = api_reply_error(400, "bad_request",
                            "ops[%zu]: unexpected member \"%s\" (or not a string)", i, mname);
        goto out;
      }
    }
    if (!opname || !key) {
      e = api_reply_error(400, "bad_request", "ops[%zu] needs \"op\" and \"key\"", i);
      goto out;
    }
    const char *why = api_key_problem(key, keylen);
    if (why) {
      e = api_reply_error(400, "invalid_key", "ops[%zu]: %s", i, why);
      goto out;
    }
    ops[i].key = key;
    if (strcmp(opname, "put") == 0) {
      if (!val) {
        e = api_reply_error(400, "bad_request", "ops[%zu]: a put needs a string \"value\"", i);
        goto out;
      }
      ops[i].op = SA_OP_PUT;
      if (strcmp(enc, "utf-8") == 0) {
        ops[i].data = json_string_value(val);
        ops[i].len = json_string_length(val);
      } else if (strcmp(enc, "base64") == 0) {
        int rc = api_base64_decode(json_string_value(val), json_string_length(val), &bufs[i],
                                   &ops[i].len);
        if (rc != 0) {
          e = rc == -2 ? &api_oom_response
                       : api_reply_error(400, "bad_request", "ops[%zu]: value is not base64", i);
          goto out;
        }
        ops[i].data = bufs[i];
      } else {
        e = api_reply_error(400, "bad_request",
                            "ops[%zu]: encoding must be \"utf-8\" or \"base64\"", i);
        goto out;
      }
      if (ops[i].len > ctx->max_value_bytes) {
        e = api_reply_error(413, "payload_too_large", "ops[%zu]: value over the limit of %u", i,
                            ctx->max_value_bytes);
        goto out;
      }
    } else if (strcmp(opname, "delete") == 0) {
      if (val) {
        e = api_reply_error(400, "bad_request", "ops[%zu]: a delete has no value", i);
        goto out;
      }
      ops[i].op = SA_OP_DELETE;
    } else {
      e = api_reply_error(400, "bad_request", "ops[%zu]: op must be \"put\" or \"delete\"", i);
      goto out;
    }
  }
  sa_write_result res = {0};
  sa_error err = {0};
  int rc = sa_client_batch(ctx->client, ops, n, &res, &err);
  if (rc != 0) {
    e = api_reply_sa_error(rc, &err);
    goto out;
  }
  e = api_resp_json(api_resp_new(200),
                    json_pack("{s:I,s:o,s:b}", "count", (json_int_t)n, "lsn", api_json_u64(res.lsn),
                              "durable", (int)res.durable));
out:
  api_batch_free(bufs, bufs ? n : 0);
  free(ops);
  json_decref(root);
  return e;
}

/* ---- CORS and auth ----------------------------------------------------- */

/* The allowed Origin of a request, or NULL. */
static const char *api_cors_origin(const api_ctx *ctx, const api_request *req) {
  if (ctx->n_cors == 0) return NULL;
  const char *o = api_hdr(req, "Origin");
  if (!o || !*o) return NULL;
  if (ctx->cors_any) return o;
  for (size_t i = 0; i < ctx->n_cors; i++)
    if (strcmp(ctx->cors[i], o) == 0) return o;
  return NULL;
}

/* Constant-time comparison of the bearer token. */
static bool api_auth_ok(const api_ctx *ctx, const api_request *req) {
  if (!ctx->auth_token) return true;
  const char *h = api_hdr(req, "Authorization");
  if (!h || strncasecmp(h, "Bearer ", 7) != 0) return false;
  const char *t = h + 7;
  while (*t == ' ')
    t++;
  size_t a = strlen(t), b = strlen(ctx->auth_token);
  unsigned char diff = (unsigned char)(a != b);
  for (size_t i = 0; i < b; i++)
    diff |= (unsigned char)(t[i < a ? i : 0] ^ ctx->auth_token[i]);
  return diff == 0 && a == b;
}

/* ---- entry points ------------------------------------------------------- */

static double api_elapsed(const struct timespec *t0) {
  struct timespec t1;
  clock_gettime(CLOCK_MONOTONIC, &t1);
  return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* What api_gate learns about a request that passes it. */
typedef struct api_target {
  api_route_id id;     /* the route (API_ROUTE_OTHER when unknown) */
  const api_route *rt; /* the route, NULL when unknown */
  const char *query;   /* raw query (after '?'), or NULL */
  const char *rawkey;  /* STORE_KEY: the raw key in the path */
  size_t rawkey_len;   /* bytes at rawkey */
} api_target;

/* Steps 1-4 of the request flow, which need no body: target syntax, route,
 * OPTIONS, auth, 404, 405.  Returns the answer when the request stops here,
 * or NULL when its handler should run (t filled either way). */
static api_response *api_gate(api_ctx *ctx, const api_request *req, api_target *t) {
  const char *target = req->target ? req->target : "";
  const char *method = req->method ? req->method : "";
  memset(t, 0, sizeof *t);
  t->id = API_ROUTE_OTHER;
  if (target[0] != '/')
    return api_reply_error(400, "bad_request", "the request target must be a path");
  for (const unsigned char *p = (const unsigned char *)target; *p; p++) {
    if (*p <= 0x20 || *p >= 0x7F || *p == '#')
      return api_reply_error(400, "bad_request",
                             "the request target has a byte that must be percent-encoded");
  }
  const char *q = strchr(target, '?');
  size_t path_len = q ? (size_t)(q - target) : strlen(target);
  t->query = q ? q + 1 : NULL;
  const api_route *rt = api_route_match(target, path_len, &t->rawkey, &t->rawkey_len);
  t->rt = rt;
  if (rt) t->id = rt->id;

  if (strcmp(method, "OPTIONS") == 0) {
    const char *origin = api_hdr(req, "Origin");
    const char *want = api_hdr(req, "Access-Control-Request-Method");
    if (!rt) return api_reply_error(404, "route_not_found", "no such route");
    if (origin && want && !api_cors_origin(ctx, req))
      return api_reply_error(403, "cors_origin_denied", "origin is not in the CORS allow-list");
    api_response *r = api_resp_new(204);
    if (!r) return &api_oom_response;
    api_resp_header(r, "Allow", "%s", rt->methods);
    if (origin && want) {
      api_resp_header(r, "Access-Control-Allow-Methods", "%s", rt->methods);
      api_resp_header(r, "Access-Control-Allow-Headers",
                      "Authorization, Content-Type, If-Match, If-None-Match");
      api_resp_header(r, "Access-Control-Max-Age", "600");
    }
    return r;
  }
  /* The dashboard's static files hold no data (a browser cannot send a bearer
   * token when it navigates); the page asks for the token itself. */
  if (t->id != API_ROUTE_HEALTHZ && t->id != API_ROUTE_ROOT && !api_auth_ok(ctx, req)) {
    api_response *r = api_reply_error(401, "unauthorized", "a valid bearer token is required");
    api_resp_header(r, "WWW-Authenticate", "Bearer realm=\"softadastra\"");
    return r;
  }
  if (!rt)
    return api_reply_error(404, "route_not_found",
                           "no route for this path (see /v1/status, "
                           "/v1/store/{key}, /v1/store, /v1/batch, /v1/sync/status)");
  if (!api_method_allowed(rt, method)) {
    api_response *r =
        api_reply_error(405, "method_not_allowed", "this route allows %s", rt->methods);
    api_resp_header(r, "Allow", "%s", rt->methods);
    return r;
  }
  return NULL;
}

static api_response *api_dispatch(api_ctx *ctx, const api_request *req, api_route_id *route_out) {
  const char *method = req->method ? req->method : "";
  api_target t;
  const api_gated *g = req->gated;
  if (g && g->passed && g->target == req->target) { /* api_precheck let it through */
    t.id = (api_route_id)g->route;
    t.rt = g->rt;
    t.query = g->query;
    t.rawkey = g->rawkey;
    t.rawkey_len = g->rawkey_len;
  } else {
    api_response *gate = api_gate(ctx, req, &t);
    if (gate) {
      *route_out = t.id;
      return gate;
    }
  }
  *route_out = t.id;
  const api_route *rt = t.rt;
  const char *query = t.query, *rawkey = t.rawkey;
  size_t rawkey_len = t.rawkey_len;
  bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
  switch (rt->id) {
  case API_ROUTE_ROOT:
    return api_h_root(rt->path);
  case API_ROUTE_HEALTHZ:
    return api_resp_json(api_resp_new(200), json_pack("{s:s}", "status", "ok"));
  case API_ROUTE_READYZ:
    return api_h_readyz(ctx);
  case API_ROUTE_METRICS:
    return api_h_metrics(ctx);
  case API_ROUTE_STATUS:
    return api_h_status(ctx);
  case API_ROUTE_SYNC_STATUS:
    return api_h_sync_status(ctx);
  case API_ROUTE_SYNC_TICK:
    return api_h_sync_tick(ctx);
  case API_ROUTE_STORE_LIST:
    return api_h_list(ctx, query);
  case API_ROUTE_BATCH:
    return api_h_batch(ctx, req);
  case API_ROUTE_CHANGES:
    return api_h_changes(ctx, req, query);
  case API_ROUTE_STORE_KEY:
    break;
  default:
    return api_reply_error(500, "internal_error", "unrouted");
  }
  char *key;
  size_t key_len;
  int rc = api_pct_decode(rawkey, rawkey_len, false, &key, &key_len);
  if (rc == -2) return &api_oom_response;
  if (rc == -1)
    return api_reply_error(400, "bad_encoding",
                           "the key in the path is not correctly "
                           "percent-encoded");
  const char *why = api_key_problem(key, key_len);
  api_response *r;
  if (why)
    r = api_reply_error(400, "invalid_key", "%s", why);
  else if (get)
    r = api_h_get_key(ctx, req, query, key);
  else
    r = api_h_write_key(ctx, req, key, strcmp(method, "PUT") == 0);
  free(key);
  return r;
}

/* Adds the headers every answer carries (CORS, Connection: close while
 * draining) and counts it. */
static api_response *api_finish(api_ctx *ctx, const api_request *req, api_route_id route,
                                api_response *r, const struct timespec *t0) {
  if (r != &api_oom_response) {
    const char *origin = api_cors_origin(ctx, req);
    if (origin) {
      api_resp_header(r, "Access-Control-Allow-Origin", "%s", origin);
      api_resp_header(r, "Access-Control-Expose-Headers", "ETag");
    }
    if (ctx->n_cors) api_resp_header(r, "Vary", "Origin");
    if (atomic_load(&ctx->draining)) r->close = true;
  }
  api_metrics_observe(ctx->metrics, route, r->status, api_elapsed(t0));
  return r;
}

api_response *api_handle(api_ctx *ctx, const api_request *req) {
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  api_route_id route;
  api_response *r = api_dispatch(ctx, req, &route);
  if (r->write) { /* counted when answered, by api_write_finish */
    r->write->route = route;
    r->write->t0 = t0;
    return r;
  }
  return api_finish(ctx, req, route, r, &t0);
}

api_response *api_write_finish(api_ctx *ctx, api_write *w, const api_request *req) {
  api_response *r = api_write_reply(w->key, w->put, w->size, w->rc, &w->res, &w->err);
  r = api_finish(ctx, req, w->route, r, &w->t0);
  api_write_free(w);
  return r;
}

api_response *api_precheck(api_ctx *ctx, const api_request *req) {
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  api_target t;
  api_response *r = api_gate(ctx, req, &t);
  if (!r) {
    api_gated *g = req->gated;
    if (g) {
      g->passed = true;
      g->route = (int)t.id;
      g->rt = t.rt;
      g->query = t.query;
      g->rawkey = t.rawkey;
      g->rawkey_len = t.rawkey_len;
      g->target = req->target;
    }
    return NULL;
  }
  if (req->body_pending && r != &api_oom_response) r->close = true;
  return api_finish(ctx, req, t.id, r, &t0);
}

size_t api_body_limit(const api_ctx *ctx, const char *method, const char *target) {
  if (method && strcmp(method, "PUT") == 0) return ctx->max_value_bytes;
  if (method && strcmp(method, "POST") == 0 && target && strncmp(target, "/v1/batch", 9) == 0)
    /* JSON text of a batch: escapes and base64 make it bigger than its
     * payload; the core checks the payload itself against max_batch_bytes. */
    return (size_t)ctx->max_batch_bytes * 2 + (64u << 10);
  return 64u << 10; /* no other route reads a body */
}

api_response *api_too_large(api_ctx *ctx, const char *method, const char *target, size_t limit) {
  size_t plen = target ? strcspn(target, "?") : 0;
  const char *k;
  size_t kl;
  const api_route *rt = target ? api_route_match(target, plen, &k, &kl) : NULL;
  api_response *r = api_reply_error(413, "payload_too_large",
                                    "request body is over the limit of %zu bytes", limit);
  if (r != &api_oom_response) r->close = true;
  api_metrics_observe(ctx->metrics, rt ? rt->id : API_ROUTE_OTHER, 413, 0);
  return r;
}

api_response *api_error_response(api_ctx *ctx, int status, const char *code, const char *message) {
  api_response *r = api_reply_error(status, code, "%s", message);
  if (ctx) api_metrics_observe(ctx->metrics, API_ROUTE_OTHER, status, 0);
  return r;
}
