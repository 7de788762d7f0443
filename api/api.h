/*
 * api.h -- the REST API v1 of a Softadastra node, without a socket.
 *
 * What it is: routing, request validation, JSON in and out (jansson), the
 * mapping of core errors to HTTP statuses (api_answer.c: api_reply_sa_error,
 * the one place), bearer-token auth, CORS, and the Prometheus metrics of requests.
 * A request is a plain struct (method, raw request-target, a header lookup
 * callback, the body bytes); a response is a plain struct the caller frees.
 * That makes every route testable without a server (tests/api).
 *
 * What it is not: an HTTP server.  It never sees a socket, a libmicrohttpd
 * type or a thread of its own; server/ adapts libmicrohttpd to it.  It does
 * not percent-decode anything twice: the request-target is given raw, as it
 * came off the wire, and api_handle decodes the path and the query itself.
 *
 * Threads: api_handle, api_body_limit, api_too_large and api_metrics_* may be
 * called from many threads at once on one api_ctx (the metrics are atomic
 * counters; the core client is thread-safe).  api_ctx_create and
 * api_ctx_destroy must not run concurrently with anything else on the ctx.
 */
#ifndef SA_API_H
#define SA_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "softadastra.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct api_ctx api_ctx;

#define API_SYNC_MAX_PEERS 32

/* One peer of the node's transport, as GET /v1/sync/status shows it. */
typedef struct api_sync_peer {
  char url[256];                    /* as configured */
  char node_id[SA_NODE_ID_MAX + 1]; /* learned from the peer; "" until it answered */
  const char *state;                /* "connected", "unreachable", "refusing", "catching_up" */
  uint64_t cursor;                  /* the peer's feed position applied here */
  uint64_t lag_ops;                 /* the peer's last LSN minus cursor, as last seen */
  uint64_t lag_ms;                  /* how long the cursor has been behind (0: caught up) */
  uint64_t last_contact_ms;         /* unix ms of the peer's last answer (0: never) */
  char last_error[200];             /* "" when none */
  uint64_t ops_received;            /* items applied here from the peer */
  uint64_t ops_sent;                /* items the peer pulled from this node */
  uint64_t acked;                   /* the position of this node's feed the peer applied */
  uint64_t refused_drift;           /* batches refused: clock drift */
  uint64_t refused_invalid;         /* batches or answers refused as malformed */
  /* A NATS hub's entry (srv_nats.c): its publish side, shown as "hub". */
  bool hub;
  uint64_t hub_published;   /* ops published since start */
  uint64_t hub_acked;       /* of those, acknowledged by JetStream */
  uint64_t hub_in_flight;   /* published, not acknowledged yet */
  uint64_t hub_unpublished; /* this node's last LSN minus the position the hub acknowledged */
  const char *source;       /* "configured" or "discovered" (NULL: configured) */
  uint64_t announced_ms;    /* discovered: unix ms of its last announcement */
} api_sync_peer;

/* The server's discovery (UDP, server/srv_discovery.c), shown in the
 * sync state's "discovery" object. */
typedef struct api_sync_discovery {
  uint16_t port;        /* the UDP port announcements go to and come from */
  char url[256];        /* the URL this node advertises */
  bool is_signed;       /* announcements are signed (a token is set) */
  uint32_t interval_ms; /* between two announcements */
  uint32_t timeout_s;   /* a discovered peer silent this long is forgotten */
  uint64_t peers;       /* discovered peers now */
  uint64_t found;       /* discovered peers added since start */
  uint64_t forgotten;   /* and forgotten */
  uint64_t sent;        /* datagrams sent */
  uint64_t received;    /* datagrams received (this node's own included) */
  uint64_t refused;     /* of those, refused */
} api_sync_discovery;

/* What the API needs to know; every pointer is borrowed by api_ctx_create
 * and copied (except client). */
typedef struct api_config {
  sa_client *client;      /* the open node; borrowed, must outlive the ctx */
  const char *auth_token; /* bearer token required on every route but the probes and the
                             dashboard's files (see below); NULL or "" = off */
  bool probes_need_token; /* with a token: /healthz and /readyz need it too (default: open) */
  bool metrics_open;      /* with a token: /metrics needs none (default: it needs it) */
  const char *const *cors_origins; /* allowed browser origins ("*" = any); NULL = CORS off */
  size_t n_cors_origins;           /* entries in cors_origins */
  uint32_t max_value_bytes;        /* largest PUT body (the core's max_value_bytes) */
  uint32_t max_batch_bytes;        /* largest batch payload (the core's max_batch_bytes) */
  uint32_t page_value_bytes;       /* GET /v1/store?values=1 stops a page past this; 0 = 16 MiB */
  void (*metrics_extra)(void *cls, FILE *f); /* appends the server's own series to GET /metrics
                                                (may be NULL); called on request threads */
  void *metrics_extra_cls;                   /* its first argument */
  /* Sync between nodes (api_sync.c); every hook may be NULL and is called
   * on request threads with sync_cls. */
  const char *sync_transport; /* the server's transport kind ("http"), shown in the sync
                                 state instead of the core's; NULL = the core's */
  size_t (*sync_peers)(void *cls, api_sync_peer *out, size_t max); /* the pullers' state:
                                 fills at most max, returns how many */
  void (*sync_served)(void *cls, const char *node, size_t items, uint64_t acked,
                      bool has_acked); /* GET /v1/sync/ops served `items` to the puller `node`,
                                          or (has_acked) it said it applied through acked */
  bool (*sync_discovery)(void *cls, api_sync_discovery *out); /* fills out and returns true
                                 when the server runs a discovery of its own (may be NULL) */
  void *sync_cls;
} api_config;

/* Creates the API context.  Returns 0 and sets *out (free with
 * api_ctx_destroy), or SA_EINVAL (no client) / SA_ENOMEM with *out NULL. */
int api_ctx_create(const api_config *cfg, api_ctx **out);

/* Frees the context.  The client is not closed.  NULL is a no-op. */
void api_ctx_destroy(api_ctx *ctx);

/* Marks the node as shutting down: from now on every response carries
 * "Connection: close" and /readyz answers 503.  Thread-safe. */
void api_ctx_set_draining(api_ctx *ctx, bool draining);

/* Looks a request header up by name (case-insensitive).  Returns the value,
 * borrowed until the request is answered, or NULL when absent. */
typedef const char *(*api_header_fn)(void *cls, const char *name);

/* What api_precheck learned about a request that passed it, kept by the
 * caller between api_precheck and api_handle so that the request is not
 * routed and checked twice.  Opaque: zero it, hand the same one to both. */
typedef struct api_gated {
  bool passed;        /* api_precheck returned NULL with this request */
  int route;          /* api_route_id */
  const void *rt;     /* the route */
  const char *query;  /* into the target */
  const char *rawkey; /* into the target */
  size_t rawkey_len;  /* bytes at rawkey */
  const char *target; /* the target it was computed for */
} api_gated;

typedef struct api_request {
  const char *method;   /* "GET", "PUT", ... as sent (case-sensitive, RFC 9110) */
  const char *target;   /* raw request-target: "/v1/store/a%2Fb?raw=1" */
  api_header_fn header; /* header lookup; may be NULL (no headers) */
  void *header_cls;     /* first argument of header */
  const char *body;     /* body bytes (may contain NUL); NULL when body_len is 0 */
  size_t body_len;      /* bytes at body */
  bool body_pending;    /* api_precheck: a body follows that will not be read if refused */
  bool can_defer;       /* the caller can wait and stream: GET /v1/changes may hand it a feed,
                           PUT and DELETE of a key an api_write (below) */
  api_gated *gated;     /* NULL, or the request's api_gated: api_precheck fills it, api_handle
                           trusts it (same target, same headers, nothing changed between) */
} api_request;

#define API_MAX_HEADERS 12

typedef struct api_header {
  const char *name; /* static string */
  char *value;      /* owned by the response (freed with it unless borrowed) */
  bool borrowed;    /* value is static or in the response's hbuf: not freed */
} api_header;

#define API_HBUF 128 /* bytes of short header values kept inside the response */

typedef struct api_response {
  int status;               /* HTTP status code */
  const char *content_type; /* static string or ctbuf, NULL when there is no body */
  char *body;               /* owned by the response (may be NULL) */
  size_t body_len;          /* bytes at body */
  size_t n_headers;         /* extra headers used in headers[] */
  api_header headers[API_MAX_HEADERS];
  size_t hbuf_used;                    /* bytes used at hbuf */
  char hbuf[API_HBUF];                 /* short header values (no allocation per header) */
  char ctbuf[SA_CONTENT_TYPE_MAX + 1]; /* a stored value's content type (raw GET) */
  bool close;                          /* the server should close the connection after it */
  struct api_feed *feed;     /* /v1/changes with can_defer: the feed the caller must wait on or
                                stream (api_feed.h); the caller takes it (sets it NULL) */
  struct api_write *write;   /* PUT/DELETE of a key with can_defer: the write is queued on the
                                node and this response is only a placeholder (below) */
  bool backup;               /* GET /v1/backup with can_defer: the body is one online backup the
                                caller streams (server/srv_backup.c); this is its head */
  struct api_stream *stream; /* GET /v1/sync/snapshot with can_defer: the body, read by the
                                caller a block at a time (below); the caller takes it */
} api_response;

/* ---- streamed bodies -------------------------------------------------------
 *
 * A response whose `stream` is set is a head; its body is made while it is
 * sent: api_stream_read fills buf with up to max bytes and returns how many
 * (> 0), 0 at the end of the body, or -1 when it failed (the caller ends the
 * transfer cut short, so the reader sees a broken body, never a shorter
 * whole one).  One thread at a time per stream; api_stream_free (any
 * thread) ends it early or late.  A stream holds the node's resources (a
 * snapshot's read transaction) until freed: every stream is freed before
 * the node closes. */
typedef struct api_stream api_stream;
long api_stream_read(api_stream *s, char *buf, size_t max);
void api_stream_free(api_stream *s);
/* Why the stream failed (after a -1), for the log. */
const char *api_stream_error(const api_stream *s);

/* ---- deferred writes -----------------------------------------------------
 *
 * A PUT or DELETE of one key with req->can_defer is queued on the node
 * without waiting for its group commit (sa_client_put_async), so that one
 * server thread can have many writes in the same fdatasync.  api_handle then
 * returns a placeholder whose `write` is set.  The caller:
 *   1. takes resp->write (sets it NULL), frees the placeholder, and keeps
 *      the request's headers and body alive: the node reads the body bytes
 *      until the write is settled;
 *   2. suspends the request, then calls api_write_arm(w, notify, cls);
 *      notify(cls) is called exactly once, when the write is settled and
 *      armed, from whichever thread comes second (the node's writer thread --
 *      its committer near a full map -- or the arming thread itself when
 *      the write was already settled);
 *      notify must only wake the request (it must not call into the API);
 *   3. once woken, calls api_write_finish(ctx, w, req) for the answer (the
 *      same one the blocking path gives, counted in the metrics, w freed).
 * A write is always settled: the node settles every queued write, at the
 * latest while it closes.  api_write_free frees a settled write that will
 * never be answered (the connection went away). */
typedef struct api_write api_write;

void api_write_arm(api_write *w, void (*notify)(void *cls), void *cls);

api_response *api_write_finish(api_ctx *ctx, api_write *w, const api_request *req);

void api_write_free(api_write *w);

/* Answers one request.  Never returns NULL: allocation failures become a
 * static 500 response.  The caller frees the result with api_response_free.
 * Side effects: the write routes write to the node; every call is counted
 * in the metrics under its route and status. */
api_response *api_handle(api_ctx *ctx, const api_request *req);

/* The checks of api_handle that need no body: target syntax, route,
 * OPTIONS, the bearer token, 404, 405.  A server calls it once the headers
 * are in (req->body NULL) so that it never reads the body of a request it
 * will refuse.  Returns NULL when the request passes (then api_handle must
 * be called with the body), or the final answer, owned as with api_handle
 * and counted in the metrics.  On a pass it fills req->gated (when set), so
 * that api_handle skips these checks. */
api_response *api_precheck(api_ctx *ctx, const api_request *req);

/* The largest body the route of (method, target) accepts, so a server can
 * refuse a bigger one (api_too_large) before reading it.  Pure. */
size_t api_body_limit(const api_ctx *ctx, const char *method, const char *target);

/* A 413 JSON error for a body over api_body_limit, counted in the metrics.
 * Same ownership as api_handle. */
api_response *api_too_large(api_ctx *ctx, const char *method, const char *target, size_t limit);

/* A JSON error response {"error":{"code":code,"message":message}} that is not
 * tied to a route (used by the server for its own failures).  Counted in the
 * metrics under the route "other".  Same ownership as api_handle. */
api_response *api_error_response(api_ctx *ctx, int status, const char *code, const char *message);

/* Frees a response from this module.  NULL is a no-op. */
void api_response_free(api_response *resp);

/* One route of the API, for documentation checks (tests/e2e compares this
 * table with api/openapi.yaml). */
typedef struct api_route_info {
  const char *path;    /* OpenAPI form: "/v1/store/{key}" */
  const char *methods; /* comma-separated: "GET,HEAD,PUT,DELETE" (OPTIONS is implied) */
  int id;              /* the API's own: the route's api_route_id (api_metrics.h) */
} api_route_info;

/* The route table: the one the API routes with (api_routes.c).  Returns a
 * static array and sets *n to its length. */
const api_route_info *api_routes(size_t *n);

#ifdef __cplusplus
}
#endif

#endif /* SA_API_H */
