/*
 * api_routes.c -- the one route table of the REST API and the entry points
 * that use it: target checks, routing, auth and method checks (the gate),
 * dispatch to the handlers, and the last touch of every answer.
 *
 * What it is: api_handle, api_precheck, api_body_limit, api_too_large and
 * api_routes (api.h); the table below is at once what the router matches,
 * what the Allow header says, what the dispatch switches on, and what
 * tests/e2e compares with api/openapi.yaml.  What it is not: a handler (each
 * route's handler lives in the file named after its job, api_internal.h) or
 * the place where core errors are mapped (api_answer.c).
 *
 * Invariants: routes are matched on the raw path, before any decoding, so a
 * "%2F" inside a key never changes the route; a path in the table matches
 * exactly, except one with "{key}", which matches the prefix before it;
 * every answer leaves through api_finish (CORS, draining, metrics), a
 * deferred write later through api_write_finish, which calls it too.
 *
 * Threads: any request thread, many at once; reads the ctx, counts in its
 * atomic metrics.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api_internal.h"
#include "api_util.h"

/* Every route: its path in OpenAPI form, its methods (OPTIONS aside, which
 * every route answers), its id.  Order is documentation only. */
static const api_route_info api_route_table[] = {
    {"/", "GET,HEAD", API_ROUTE_ROOT},
    {"/healthz", "GET,HEAD", API_ROUTE_HEALTHZ},
    {"/readyz", "GET,HEAD", API_ROUTE_READYZ},
    {"/metrics", "GET,HEAD", API_ROUTE_METRICS},
    {"/v1/status", "GET,HEAD", API_ROUTE_STATUS},
    {"/v1/sync/status", "GET,HEAD", API_ROUTE_SYNC_STATUS},
    {"/v1/sync/tick", "POST", API_ROUTE_SYNC_TICK},
    {"/v1/sync/ops", "GET,HEAD", API_ROUTE_SYNC_OPS},
    {"/v1/sync/snapshot", "GET,HEAD", API_ROUTE_SYNC_SNAPSHOT},
    {"/v1/sync/digest", "GET,HEAD", API_ROUTE_SYNC_DIGEST},
    {"/v1/store", "GET,HEAD,DELETE", API_ROUTE_STORE_LIST},
    {"/v1/store/{key}", "GET,HEAD,PUT,DELETE", API_ROUTE_STORE_KEY},
    {"/v1/batch", "POST", API_ROUTE_BATCH},
    {"/v1/changes", "GET,HEAD", API_ROUTE_CHANGES},
    {"/v1/backup", "GET,HEAD", API_ROUTE_BACKUP},
    {"/dashboard", "GET,HEAD", API_ROUTE_ROOT},
    {"/dashboard.js", "GET,HEAD", API_ROUTE_ROOT},
    {"/dashboard.css", "GET,HEAD", API_ROUTE_ROOT},
};
#define API_NROUTES (sizeof api_route_table / sizeof api_route_table[0])

const api_route_info *api_routes(size_t *n) {
  *n = API_NROUTES;
  return api_route_table;
}

/* Finds the route of a raw path (path_len bytes, no query).  Returns NULL
 * for an unknown path; for a "{key}" route sets *key and *key_len to the raw
 * key (the rest of the path). */
static const api_route_info *api_route_match(const char *path, size_t path_len, const char **key,
                                             size_t *key_len) {
  *key = NULL;
  *key_len = 0;
  for (size_t i = 0; i < API_NROUTES; i++) {
    const api_route_info *r = &api_route_table[i];
    size_t n = strcspn(r->path, "{");
    if (r->path[n]) { /* a parameter: the prefix before it matches */
      if (path_len >= n && memcmp(path, r->path, n) == 0) {
        *key = path + n;
        *key_len = path_len - n;
        return r;
      }
    } else if (n == path_len && memcmp(r->path, path, path_len) == 0) {
      return r;
    }
  }
  return NULL;
}

static bool api_method_allowed(const api_route_info *r, const char *method) {
  /* r->methods is a ","-separated list of tokens. */
  size_t mlen = strlen(method);
  const char *p = r->methods;
  while (*p) {
    const char *e = strchr(p, ',');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    if (n == mlen && memcmp(p, method, n) == 0) return true;
    if (!e) break;
    p = e + 1;
  }
  return false;
}

const char *api_route_allow(const api_route_info *rt, char *buf, size_t n) {
  size_t o = 0;
  for (const char *p = rt->methods; *p && o + 3 < n; p++) {
    buf[o++] = *p;
    if (*p == ',') buf[o++] = ' ';
  }
  buf[o] = '\0';
  snprintf(buf + o, n - o, ", OPTIONS");
  return buf;
}

static double api_elapsed(const struct timespec *t0) {
  struct timespec t1;
  clock_gettime(CLOCK_MONOTONIC, &t1);
  return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* What api_gate learns about a request that passes it. */
typedef struct api_target {
  api_route_id id;          /* the route (API_ROUTE_OTHER when unknown) */
  const api_route_info *rt; /* the route, NULL when unknown */
  const char *query;        /* raw query (after '?'), or NULL */
  const char *rawkey;       /* STORE_KEY: the raw key in the path */
  size_t rawkey_len;        /* bytes at rawkey */
} api_target;

/* Steps 1-4 of the request flow (api.c), which need no body: target syntax,
 * route, OPTIONS, auth, 404, 405.  Returns the answer when the request stops
 * here, or NULL when its handler should run (t filled either way). */
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
  const api_route_info *rt = api_route_match(target, path_len, &t->rawkey, &t->rawkey_len);
  t->rt = rt;
  if (rt) t->id = (api_route_id)rt->id;

  if (strcmp(method, "OPTIONS") == 0) {
    if (!rt) return api_reply_error(404, "route_not_found", "no such route");
    return api_preflight(ctx, req, rt);
  }
  /* The dashboard's static files hold no data (a browser cannot send a bearer
   * token when it navigates); the page asks for the token itself.  The
   * probes and the metrics are open as configured (api_auth_open). */
  if (!api_auth_open(ctx, t->id) && !api_auth_ok(ctx, req)) {
    api_response *r = api_reply_error(401, "unauthorized", "a valid bearer token is required");
    api_resp_header(r, "WWW-Authenticate", "Bearer realm=\"softadastra\"");
    return r;
  }
  if (!rt)
    return api_reply_error(404, "route_not_found",
                           "no route for this path (see /v1/status, "
                           "/v1/store/{key}, /v1/store, /v1/batch, /v1/sync/status)");
  if (!api_method_allowed(rt, method)) {
    char allow[64];
    api_route_allow(rt, allow, sizeof allow);
    api_response *r = api_reply_error(405, "method_not_allowed", "this route allows %s", allow);
    api_resp_header(r, "Allow", "%s", allow);
    return r;
  }
  return NULL;
}

/* GET, HEAD, PUT or DELETE of /v1/store/{key}: decodes and checks the key,
 * then the store handler. */
static api_response *api_dispatch_key(api_ctx *ctx, const api_request *req, const char *method,
                                      const api_target *t) {
  char *key;
  size_t key_len;
  int rc = api_pct_decode(t->rawkey, t->rawkey_len, false, &key, &key_len);
  if (rc == -2) return &api_oom_response;
  if (rc == -1)
    return api_reply_error(400, "bad_encoding",
                           "the key in the path is not correctly "
                           "percent-encoded");
  const char *why = api_key_problem(key, key_len);
  bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
  api_response *r;
  if (why)
    r = api_reply_error(400, "invalid_key", "%s", why);
  else if (get)
    r = api_h_get_key(ctx, req, t->query, key);
  else
    r = api_h_write_key(ctx, req, key, strcmp(method, "PUT") == 0);
  free(key);
  return r;
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
  switch (t.id) {
  case API_ROUTE_ROOT:
    return api_h_root(t.rt->path);
  case API_ROUTE_HEALTHZ:
    return api_h_healthz();
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
  case API_ROUTE_SYNC_OPS:
    return api_h_sync_ops(ctx, req, t.query);
  case API_ROUTE_SYNC_SNAPSHOT:
    return api_h_sync_snapshot(ctx, req, t.query);
  case API_ROUTE_SYNC_DIGEST:
    return api_h_sync_digest(ctx);
  case API_ROUTE_STORE_LIST:
    if (strcmp(req->method, "DELETE") == 0) return api_h_delete_prefix(ctx, t.query);
    return api_h_list(ctx, t.query);
  case API_ROUTE_BATCH:
    return api_h_batch(ctx, req);
  case API_ROUTE_CHANGES:
    return api_h_changes(ctx, req, t.query);
  case API_ROUTE_BACKUP:
    return api_h_backup(ctx, req); /* api_backup.c */
  case API_ROUTE_STORE_KEY:
    return api_dispatch_key(ctx, req, method, &t);
  default:
    return api_reply_error(500, "internal_error", "unrouted");
  }
}

api_response *api_finish(api_ctx *ctx, const api_request *req, api_route_id route, api_response *r,
                         const struct timespec *t0) {
  if (r != &api_oom_response) {
    api_cors_headers(ctx, req, r);
    if (route == API_ROUTE_SYNC_OPS || route == API_ROUTE_SYNC_SNAPSHOT ||
        route == API_ROUTE_SYNC_DIGEST || route == API_ROUTE_SYNC_STATUS)
      api_sync_tag_node(ctx, r); /* every sync answer names the node (api_sync.c) */
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
    api_write_stamp(r->write, route, &t0);
    return r;
  }
  return api_finish(ctx, req, route, r, &t0);
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
  (void)method;
  size_t plen = target ? strcspn(target, "?") : 0;
  const char *k;
  size_t kl;
  const api_route_info *rt = target ? api_route_match(target, plen, &k, &kl) : NULL;
  api_response *r = api_reply_error(413, "payload_too_large",
                                    "request body is over the limit of %zu bytes", limit);
  if (r != &api_oom_response) r->close = true;
  api_metrics_observe(ctx->metrics, rt ? (api_route_id)rt->id : API_ROUTE_OTHER, 413, 0);
  return r;
}
