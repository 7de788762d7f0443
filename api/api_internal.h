/*
 * api_internal.h -- what the files of the REST API share, and nothing the
 * server or the tests may use (they include api.h).
 *
 * What it is: the context (struct api_ctx), the answer builders and the one
 * error mapping (api_answer.c), the route table's helpers and the last touch
 * of every answer (api_routes.c), auth and CORS (api_auth.c), query helpers,
 * and the handlers that api_routes.c dispatches to, one per route, each in
 * the file named after its job:
 *   api.c          the context: create, destroy, draining;
 *   api_answer.c   responses, headers, JSON bodies, errors, core error -> HTTP;
 *   api_routes.c   the one route table, target checks, dispatch, entry points;
 *   api_auth.c     bearer token, CORS origins, the preflight answer;
 *   api_store.c    GET/PUT/DELETE /v1/store/{key} (blocking or deferred), GET /v1/store;
 *   api_batch.c    POST /v1/batch;
 *   api_status.c   /healthz, /readyz, /v1/status, /v1/sync/status, /v1/sync/tick;
 *   api_sync.c     /v1/sync/ops, /v1/sync/snapshot, /v1/sync/digest, the peers of the status;
 *   api_metrics.c  request counters and GET /metrics;
 *   api_feed.c     GET /v1/changes;   api_assets.c  the dashboard's files;
 *   api_json.c     JSON helpers;      api_util.c    text helpers.
 *
 * What it is not: a stable interface.  Anything here may change with the
 * files that use it.
 *
 * Ownership: every builder returns a response owned by the caller (free with
 * api_response_free), or the static 500 answer api_oom_response when memory
 * is short (freeing it is a no-op).  No builder returns NULL.
 *
 * Threads: everything here may run on many request threads at once on one
 * ctx; the ctx is read-only after api_ctx_create except `draining` (atomic),
 * the metrics (atomic counters) and sync_share (its own lock).
 */
#ifndef SA_API_INTERNAL_H
#define SA_API_INTERNAL_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "api.h"
#include "api_metrics.h"

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
  bool probes_need_token;                    /* /healthz and /readyz need the token too */
  bool metrics_open;                         /* /metrics needs no token */
  uint32_t max_value_bytes;                  /* PUT body limit */
  uint32_t max_batch_bytes;                  /* batch payload limit (core) */
  uint32_t page_value_bytes;                 /* a listing page with values stops past this */
  api_metrics *metrics;                      /* request metrics */
  atomic_bool draining;                      /* shutting down */
  void (*metrics_extra)(void *cls, FILE *f); /* server series for /metrics, or NULL */
  void *metrics_extra_cls;                   /* its argument */
  struct timespec started;                   /* CLOCK_MONOTONIC at create */
  char node_id[SA_NODE_ID_MAX + 1];          /* the node's id (X-Softadastra-Node) */
  char *sync_transport;                      /* api_config's, copied, or NULL */
  size_t (*sync_peers)(void *cls, api_sync_peer *out, size_t max); /* api_config's hooks */
  void (*sync_served)(void *cls, const char *node, size_t items, uint64_t acked, bool has_acked);
  bool (*sync_discovery)(void *cls, api_sync_discovery *out);
  void *sync_cls;
  struct api_sync_share *sync_share; /* the last page of /v1/sync/ops (api_sync.c; own lock) */
};

/* ---- answers (api_answer.c) ---------------------------------------------- */

/* The static 500 "out of memory" answer; api_response_free ignores it and
 * api_resp_header adds nothing to it. */
extern api_response api_oom_response;

/* A new response with status and nothing else, or NULL out of memory. */
api_response *api_resp_new(int status);

/* Adds a header (name static).  Silently drops it when the table is full or
 * memory is short (no header is needed for the body to be right).  A format
 * without '%' is kept by pointer (a literal); a short value goes into the
 * response's hbuf; only a long one is allocated. */
void api_resp_header(api_response *r, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ETag: "<version>" (the strong tag of a value's version), without printf. */
void api_resp_etag(api_response *r, uint64_t version);

/* Sets a JSON body (compact, then a newline); steals the reference to j.
 * Returns r, or api_oom_response when r or j is NULL or memory is short
 * (r is freed then). */
api_response *api_resp_json(api_response *r, json_t *j);

/* The one constructor of error answers:
 * {"error":{"code":code,"message":<fmt...>}}.  A message that is not valid
 * UTF-8 (it may quote user input) is replaced by the code. */
api_response *api_reply_error(int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Maps a core error code to its HTTP answer: THE place where core codes
 * become statuses.  err may be NULL (then sa_strerror(rc) is the message). */
api_response *api_reply_sa_error(int rc, const sa_error *err);

/* ---- routes (api_routes.c) ----------------------------------------------- */

/* Adds what every answer carries (CORS, "Connection: close" while draining)
 * and counts it under route with the time since t0.  Returns r. */
api_response *api_finish(api_ctx *ctx, const api_request *req, api_route_id route, api_response *r,
                         const struct timespec *t0);

/* The Allow header of a route: its methods ("GET,HEAD") as
 * "GET, HEAD, OPTIONS", written to buf (n bytes; 64 is enough).  Returns buf. */
const char *api_route_allow(const api_route_info *rt, char *buf, size_t n);

/* ---- auth and CORS (api_auth.c) ------------------------------------------ */

/* True when route id is answered without the token even when one is set:
 * the dashboard's files; /healthz and /readyz unless probes_need_token;
 * /metrics when metrics_open. */
bool api_auth_open(const api_ctx *ctx, api_route_id id);

/* The request's Origin when CORS allows it, else NULL (borrowed from req). */
const char *api_cors_origin(const api_ctx *ctx, const api_request *req);

/* True when no token is configured or the request carries it (constant
 * time in the token's length). */
bool api_auth_ok(const api_ctx *ctx, const api_request *req);

/* The answer to OPTIONS on route rt: 204 with Allow, and the CORS preflight
 * headers when an Origin asks for a method; 403 when that Origin is not
 * allowed. */
api_response *api_preflight(const api_ctx *ctx, const api_request *req, const api_route_info *rt);

/* Adds the CORS headers of an answer (Access-Control-Allow-Origin and
 * -Expose-Headers for an allowed Origin, Vary: Origin when CORS is on). */
void api_cors_headers(const api_ctx *ctx, const api_request *req, api_response *r);

/* ---- small helpers -------------------------------------------------------- */

/* A request header (borrowed until the request is answered), or NULL. */
static inline const char *api_hdr(const api_request *req, const char *name) {
  return req->header ? req->header(req->header_cls, name) : NULL;
}

/* The core's HLC timestamp as unix milliseconds: the physical part sits
 * above the 16-bit logical counter. */
static inline uint64_t api_hlc_ms(uint64_t hlc) {
  return hlc >> 16;
}

/* Decodes a query parameter into *out (caller frees).  Returns NULL on
 * success (found or not: *out NULL when absent), or an error answer. */
api_response *api_query(const char *query, const char *name, char **out);

/* A boolean query flag: absent/""/"0"/"false"/"no" false, "1"/"true"/"yes"
 * true, anything else an error answer. */
api_response *api_query_bool(const char *query, const char *name, bool *out);

/* ---- handlers, one per route (the files named above) --------------------- */

api_response *api_h_root(const char *path);                         /* api_assets.c */
api_response *api_h_healthz(void);                                  /* api_status.c */
api_response *api_h_readyz(api_ctx *ctx);                           /* api_status.c */
api_response *api_h_status(api_ctx *ctx);                           /* api_status.c */
api_response *api_h_sync_status(api_ctx *ctx);                      /* api_status.c */
api_response *api_h_sync_tick(api_ctx *ctx);                        /* api_status.c */
api_response *api_h_metrics(api_ctx *ctx);                          /* api_metrics.c */
api_response *api_h_list(api_ctx *ctx, const char *query);          /* api_store.c */
api_response *api_h_batch(api_ctx *ctx, const api_request *req);    /* api_batch.c */
api_response *api_h_delete_prefix(api_ctx *ctx, const char *query); /* api_batch.c */
api_response *api_h_changes(api_ctx *ctx, const api_request *req, const char *query);  /* feed */
api_response *api_h_sync_ops(api_ctx *ctx, const api_request *req, const char *query); /* sync */
api_response *api_h_sync_snapshot(api_ctx *ctx, const api_request *req,
                                  const char *query);             /* api_sync.c */
api_response *api_h_sync_digest(api_ctx *ctx);                    /* api_sync.c */
api_response *api_h_backup(api_ctx *ctx, const api_request *req); /* api_backup.c */

/* api_backup.c: the backup series of GET /metrics. */
void api_backup_write_metrics(api_ctx *ctx, FILE *f);

/* ---- the shared page of /v1/sync/ops (api_sync.c) -------------------------- */

/* The last page read for a puller, kept for the next that asks for it:
 * created with the ctx (NULL out of memory), freed with it. */
struct api_sync_share *api_sync_share_create(void);
void api_sync_share_destroy(struct api_sync_share *sh);

/* The feed's page counters for GET /metrics. */
void api_sync_write_metrics(api_ctx *ctx, FILE *f);

/* api_sync.c: the "peers" array of the sync state (a new reference, never
 * NULL unless memory is short), and the X-Softadastra-Node header every
 * sync answer carries (returns r). */
json_t *api_sync_peers_json(api_ctx *ctx);
api_response *api_sync_tag_node(const api_ctx *ctx, api_response *r);

/* GET or HEAD of one key (decoded, valid). */
api_response *api_h_get_key(api_ctx *ctx, const api_request *req, const char *query,
                            const char *key);

/* PUT (put) or DELETE of one key (decoded, valid); with req->can_defer the
 * answer may be a placeholder whose `write` is set (api.h). */
api_response *api_h_write_key(api_ctx *ctx, const api_request *req, const char *key, bool put);

/* Records on a deferred write the route and start time its answer is
 * counted with at api_write_finish. */
void api_write_stamp(api_write *w, api_route_id route, const struct timespec *t0);

#endif /* SA_API_INTERNAL_H */
