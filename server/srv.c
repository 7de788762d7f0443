/*
 * srv.c -- `softadastra serve` (see srv.h).
 *
 * Connections: the front loop (srv_front.c) owns the listening socket; the
 * gate (srv_http.c) reads every request there, and the loop serves every
 * route itself except the change feed's streams (GET of /v1/changes,
 * /v1/sync/snapshot, /v1/backup: long-polls and SSE that wait suspended;
 * a sync pull's long-poll, GET /v1/sync/ops, waits in the loop: srv_front.c).
 * Such a request, checked and without a body, is handed to libmicrohttpd
 * with its bytes unread, for that one request: every answer says
 * Connection: close (srv_answer.c), so libmicrohttpd never parses a second
 * request (srv_handoff: MHD_add_connection; the daemon has no listening
 * socket of its own).  libmicrohttpd reports the handed connections it
 * closes (srv_conn_notify), so max_connections counts both paths.  The loop
 * never hands over a body: a handed request that announces one is refused
 * (400) and body bytes close the connection, so libmicrohttpd reads none.
 *
 * Request life cycle with libmicrohttpd (internal thread pool, poll):
 *   - srv_uri_cb runs first for every request: it allocates the srv_req with
 *     the raw request-target (before libmicrohttpd unescapes anything: the
 *     API decodes the path itself) and counts the request as active;
 *   - srv_access_cb, first call: headers are in: api_precheck (401, 404,
 *     405, ...), then a request that announces a body is refused (400: the
 *     gate hands over none; this is the second line);
 *   - a call with body bytes closes the connection (MHD_NO);
 *   - last call: api_handle, and the api_response becomes an MHD response;
 *     a PUT/DELETE of a key is instead queued on the node (api_write) and the
 *     connection suspended; the node's writer thread resumes it when the
 *     write's group commit is done, and the access callback, called again,
 *     answers it.  A worker thread never waits for an fdatasync, so every
 *     connection's write can join the same group commit;
 *   - srv_completed_cb frees the srv_req and counts the request done.
 *
 * Shutdown (SIGINT/SIGTERM, sigwait on the main thread): the API is marked
 * draining (responses say "Connection: close", /readyz says 503), the front
 * loop stops accepting and closes its idle connections, the listen socket
 * stops listening (shutdown; it is closed once the loops are joined), active
 * requests are waited for (at most shutdown_timeout_s; then no request may
 * suspend any more, and, without a bound, the ones that did are waited for:
 * the node settles every queued write), the front loop answers its queued
 * writes and stops, the daemon is stopped (joins its threads), and the node
 * is closed: WAL and store flushed and synced, lock released.  A write
 * acknowledged to a client was durable before its response was sent, so it
 * survives whatever happens after.
 */
#define _GNU_SOURCE
#include "srv.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "softadastra.h"
#include "srv_answer.h"
#include "srv_front.h"
#include "srv_http.h"
#include "srv_log.h"
#include "srv_backup.h"
#include "srv_dir.h"
#include "srv_discovery.h"
#include "srv_sse.h"
#include "srv_sync.h"
#ifdef SA_HAVE_NATS
#include "srv_nats.h"
#else
typedef struct srv_nats srv_nats; /* built without libnats: never started */
#define srv_nats_stop(n) ((void)(n))
#define srv_nats_free(n) ((void)(n))
#define srv_nats_write_metrics(n, f) ((void)(n), (void)(f))
#define srv_nats_peers(n, o, m) ((void)(n), (void)(o), (void)(m), (size_t)0)
#endif

typedef struct srv {
  api_ctx *api;        /* the REST API */
  atomic_long active;  /* requests started and not completed */
  atomic_ulong total;  /* requests started since start */
  bool log_requests;   /* debug level: one line per request */
  srv_feed *feed;      /* SSE streams and long-polls of /v1/changes (srv_sse.c) */
  srv_sync *sync;      /* the http transport's pullers (srv_sync.c); NULL without one */
  srv_nats *nats;      /* the nats transport (srv_nats.c); NULL without one */
  srv_discovery *disc; /* UDP discovery (srv_discovery.c); NULL without it */
  sa_client *client;   /* the node (GET /v1/backup's streams use it: srv_backup.c) */
  /* Suspended writes may not outlive MHD_stop_daemon ("called while we have
   * suspended connections" aborts), and libmicrohttpd resumes a connection
   * asynchronously, after MHD_resume_connection returns.  So a request that
   * may defer counts in `writes` from before api_handle until it completes
   * (or at once, when it did not defer); once `closing` is set no request
   * defers (writes are answered synchronously, feeds with a page), and
   * srv_serve waits for `writes` to reach 0 before stopping the daemon. */
  atomic_long writes;
  atomic_bool closing;
  atomic_long open;     /* connections open: the front loop's and libmicrohttpd's */
  struct MHD_Daemon *d; /* serves what the front loop hands it */
} srv;

typedef struct srv_req {
  char *target;               /* raw request-target, as received (in tbuf) */
  bool started;               /* the first access call (headers) has run */
  struct timespec t0;         /* when the request line arrived */
  void *feed;                 /* srv_sse.c: a long-poll waiting (suspended) for changes */
  api_write *write;           /* a PUT/DELETE queued on the node; suspended until it settles */
  bool deferred;              /* counted in srv.writes until completion */
  api_gated gated;            /* api_precheck's routing, reused by api_handle */
  struct MHD_Connection *con; /* set while write is pending */
  char tbuf[];                /* the target's bytes: one allocation per request */
} srv_req;

/* ---- libmicrohttpd callbacks ------------------------------------------- */

static void *srv_uri_cb(void *cls, const char *uri, struct MHD_Connection *con) {
  srv *s = cls;
  if (!uri) uri = "";
  /* An absolute-form target (the gate accepted it: RFC 9112 3.2.2) is
   * routed by its path, as the loop does. */
  const char *path = srv_http_origin(uri);
  bool slash = path && path[0] != '/'; /* "http://h" or "http://h?q": the path is "/" */
  if (path) uri = path;
  size_t n = strlen(uri);
  srv_req *r = malloc(sizeof *r + n + 2);
  if (!r) return NULL;
  memset(r, 0, sizeof *r);
  if (slash) r->tbuf[0] = '/';
  memcpy(r->tbuf + slash, uri, n + 1);
  r->target = r->tbuf;
  clock_gettime(CLOCK_MONOTONIC, &r->t0);
  atomic_fetch_add(&s->active, 1);
  atomic_fetch_add(&s->total, 1);
  return r;
}

static void srv_completed_cb(void *cls, struct MHD_Connection *con, void **req_cls,
                             enum MHD_RequestTerminationCode toe) {
  srv *s = cls;
  srv_req *r = *req_cls;
  if (!r) return;
  srv_feed_done(s->feed, &r->feed);
  api_write_free(r->write); /* settled (srv_serve waits for that), never answered */
  if (r->deferred) atomic_fetch_sub(&s->writes, 1);
  free(r);
  *req_cls = NULL;
  atomic_fetch_sub(&s->active, 1);
}

static void srv_mhd_logger(void *cls, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
static void srv_mhd_logger(void *cls, const char *fmt, va_list ap) {
  if (!srv_log_enabled(SRV_LOG_DEBUG)) return;
  char msg[512], q[600];
  vsnprintf(msg, sizeof msg, fmt, ap);
  size_t n = strlen(msg);
  while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
    msg[--n] = '\0';
  srv_log(SRV_LOG_DEBUG, "http", "msg=%s", srv_log_q(msg, q, sizeof q));
}

/* The write of a suspended request settled (the node's writer thread, or the
 * request's own thread when it settled before being armed). */
static void srv_write_settled(void *cls) {
  srv_req *r = cls;
  MHD_resume_connection(r->con); /* r may be gone from here on */
}

static const char *srv_header(void *cls, const char *name) {
  return MHD_lookup_connection_value((struct MHD_Connection *)cls, MHD_HEADER_KIND, name);
}

static void srv_log_request(const srv *s, const char *method, const srv_req *r, int status) {
  if (s->log_requests) srv_answer_log(method, r->target, status, &r->t0, 0);
}

/* The framing the gate decided (srv_http.h), as libmicrohttpd gives it back:
 * whether a body follows and its Content-Length.  The gate has refused every
 * malformed, repeated or conflicting framing field before libmicrohttpd saw
 * the request, so there is exactly one of each here at most. */
typedef struct srv_framing {
  const char *cl; /* the Content-Length value, or NULL */
  bool te;        /* Transfer-Encoding (chunked: the only one the gate passes) */
} srv_framing;

/* libmicrohttpd keeps the whitespace after a field value; the gate (and
 * RFC 9112 5.1) does not count it as part of the value.  Trimmed in place,
 * in libmicrohttpd's copy of the head, once the head is parsed: so both
 * paths see the same values (a token "Bearer t " would otherwise fail). */
static enum MHD_Result srv_trim_cb(void *cls, enum MHD_ValueKind kind, const char *key,
                                   size_t key_size, const char *value, size_t value_size) {
  (void)cls;
  (void)kind;
  (void)key;
  (void)key_size;
  if (!value) return MHD_YES;
  char *v = (char *)value; /* its pool memory: writable, NUL-terminated */
  while (value_size > 0 && (v[value_size - 1] == ' ' || v[value_size - 1] == '\t'))
    v[--value_size] = '\0';
  return MHD_YES;
}

static void srv_get_framing(struct MHD_Connection *con, srv_framing *f) {
  MHD_get_connection_values_n(con, MHD_HEADER_KIND, srv_trim_cb, NULL);
  f->cl = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "Content-Length");
  f->te = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "Transfer-Encoding") != NULL;
}

/* ---- streamed bodies (api_stream) ----------------------------------------- */

#define SRV_STREAM_BLOCK (64u * 1024u)

static ssize_t srv_stream_reader(void *cls, uint64_t pos, char *buf, size_t max) {
  (void)pos;
  api_stream *st = cls;
  long n = api_stream_read(st, buf, max);
  if (n > 0) return (ssize_t)n;
  if (n == 0) return MHD_CONTENT_READER_END_OF_STREAM;
  char q[300];
  srv_log(SRV_LOG_WARN, "stream_failed", "error=%s", srv_log_q(api_stream_error(st), q, sizeof q));
  return MHD_CONTENT_READER_END_WITH_ERROR; /* the body ends cut: the reader sees it broken */
}

static void srv_stream_free(void *cls) {
  api_stream_free(cls);
}

/* Queues resp, whose body is its stream (taken), as a chunked answer read
 * from the stream while it is sent; resp is freed.  The stream (a
 * snapshot's read transaction) is freed with the MHD response: at the end,
 * when the client goes, or at MHD_stop_daemon, before the node closes. */
static enum MHD_Result srv_stream_serve(struct MHD_Connection *con, api_response *resp) {
  api_stream *st = resp->stream;
  resp->stream = NULL;
  struct MHD_Response *m = MHD_create_response_from_callback(
      MHD_SIZE_UNKNOWN, SRV_STREAM_BLOCK, srv_stream_reader, st, srv_stream_free);
  if (!m) {
    api_stream_free(st);
    api_response_free(resp);
    return MHD_NO;
  }
  srv_answer_mhd_headers(m, resp);
  enum MHD_Result ok = MHD_queue_response(con, resp->status, m);
  MHD_destroy_response(m);
  api_response_free(resp);
  return ok;
}

static enum MHD_Result srv_access_cb(void *cls, struct MHD_Connection *con, const char *url,
                                     const char *method, const char *version,
                                     const char *upload_data, size_t *upload_data_size,
                                     void **req_cls) {
  srv *s = cls;
  srv_req *r = *req_cls;
  if (!r) return MHD_NO; /* out of memory in srv_uri_cb */
  if (!r->started) {
    r->started = true;
    srv_framing f;
    srv_get_framing(con, &f);
    /* Refuse (401, 404, 405, ...) before reading a body, and before
     * libmicrohttpd sends "100 Continue". */
    api_request pre = {
        .method = method,
        .target = r->target,
        .header = srv_header,
        .header_cls = con,
        .gated = &r->gated,
        .body_pending = f.cl != NULL || f.te,
    };
    api_response *bad = api_precheck(s->api, &pre);
    if (bad) {
      srv_log_request(s, method, r, bad->status);
      return srv_answer_mhd(con, bad);
    }
    if ((f.cl && strcmp(f.cl, "0") != 0) || f.te) { /* the gate passes none: never read one */
      srv_log_request(s, method, r, 400);
      return srv_answer_mhd(
          con, api_error_response(s->api, 400, "bad_request", "this route takes no request body"));
    }
    return MHD_YES;
  }
  if (*upload_data_size > 0) return MHD_NO; /* body bytes: unreachable past the check above */
  if (r->feed) return srv_feed_resume(s->feed, con, &r->feed); /* a long-poll, resumed */
  api_request req = {
      .method = method,
      .target = r->target,
      .header = srv_header,
      .header_cls = con,
      .can_defer = false, /* set below, after the closing check */
      .gated = &r->gated,
  };
  if (r->write) { /* resumed: the queued write has settled */
    api_write *w = r->write;
    r->write = NULL;
    api_response *resp = api_write_finish(s->api, w, &req);
    srv_log_request(s, method, r, resp->status);
    return srv_answer_mhd(con, resp);
  }
  /* Count first, then look at closing (srv_serve does the reverse): either
   * this request sees closing, or srv_serve sees it counted. */
  atomic_fetch_add(&s->writes, 1);
  req.can_defer = !atomic_load(&s->closing);
  api_response *resp = api_handle(s->api, &req);
  if (!resp->write && !resp->feed && !resp->backup) atomic_fetch_sub(&s->writes, 1);
  if (resp->write) { /* PUT/DELETE queued on the node: wait for its group commit suspended,
                        so this thread serves other requests meanwhile */
    r->write = resp->write;
    resp->write = NULL;
    api_response_free(resp);
    r->con = con;
    r->deferred = true;
    MHD_suspend_connection(con);
    api_write_arm(r->write, srv_write_settled, r);
    return MHD_YES;
  }
  if (resp->feed) { /* /v1/changes: a stream or a long-poll, served without holding a thread */
    api_feed *f = resp->feed;
    resp->feed = NULL;
    r->deferred = true; /* it may suspend: counted until it completes */
    srv_log_request(s, method, r, resp->status);
    return srv_feed_serve(s->feed, con, resp, f, strcmp(method, "HEAD") == 0, &r->feed);
  }
  if (resp->stream) { /* GET /v1/sync/snapshot: made as libmicrohttpd sends it */
    srv_log_request(s, method, r, resp->status);
    return srv_stream_serve(con, resp);
  }
  if (resp->backup) {   /* GET /v1/backup: streamed by its own thread (srv_backup.c) */
    r->deferred = true; /* it may suspend: counted until it completes */
    srv_log_request(s, method, r, resp->status);
    return srv_backup_serve(con, resp, s->client);
  }
  srv_log_request(s, method, r, resp->status);
  return srv_answer_mhd(con, resp);
}

/* ---- start-up ----------------------------------------------------------- */

/* The core's log lines (recovery, read-only, checkpoints, stubs), from any of
 * its threads, as event=core lines. */
static void srv_core_log(void *ctx, int level, const char *msg) {
  srv_log_level l = level <= SA_LOG_DEBUG  ? SRV_LOG_DEBUG
                    : level == SA_LOG_INFO ? SRV_LOG_INFO
                    : level == SA_LOG_WARN ? SRV_LOG_WARN
                                           : SRV_LOG_ERROR;
  if (!srv_log_enabled(l)) return;
  char q[1100];
  srv_log(l, "core", "msg=%s", srv_log_q(msg, q, sizeof q));
}

/* GET /metrics: the feed's series, then the pullers'. */
static void srv_metrics_extra(void *cls, FILE *f) {
  srv *s = cls;
  srv_feed_write_metrics(s->feed, f);
  srv_sync_write_metrics(s->sync, f);
  srv_nats_write_metrics(s->nats, f);
  srv_discovery_write_metrics(s->disc, f);
}

/* The API's hooks over both transports: the http peers, then the hub. */
static size_t srv_peers_all(void *cls, api_sync_peer *out, size_t max) {
  srv *s = cls;
  size_t n = s->sync ? srv_sync_peers(s->sync, out, max) : 0;
  if (s->nats && n < max) n += srv_nats_peers(s->nats, out + n, max - n);
  return n;
}
static void srv_served_all(void *cls, const char *node, size_t items, uint64_t acked,
                           bool has_acked) {
  srv *s = cls;
  srv_sync_served(s->sync, node, items, acked, has_acked);
}
static bool srv_discovery_all(void *cls, api_sync_discovery *out) {
  srv *s = cls;
  return srv_discovery_info(s->disc, out);
}

/* The core's view of UDP discovery: its kind and how many peers it found
 * (srv_sync keeps the count). */
static uint32_t srv_disc_count(void *ctx) {
  return atomic_load((atomic_uint *)ctx);
}

/* The core's view of the http transport: never running, so its outbox tick
 * hands nothing over; peers pull instead, and acknowledge what they applied
 * through sa_client_sync_peer_ack (GET /v1/sync/ops?acked=). */
static int srv_idle_send(void *ctx, const sa_sync_op *ops, size_t n, bool *acked) {
  (void)ctx, (void)ops, (void)n, (void)acked;
  return SA_EINVAL;
}
static bool srv_idle_running(void *ctx) {
  (void)ctx;
  return false;
}

/* True when UDP discovery is configured (srv_discovery.c). */
static bool srv_udp_discovery(const cfg_config *cfg) {
  return cfg->enable_discovery && !strcmp(cfg->discovery_kind, "udp");
}

/* True when the http transport is configured (then srv_sync pulls the peers:
 * the configured ones, and those discovery finds). */
static bool srv_http_transport(const cfg_config *cfg) {
  return cfg->enable_transport &&
         (!strcmp(cfg->transport_kind, "http") || !strcmp(cfg->transport_kind, "http+nats")) &&
         (cfg->n_peers > 0 || srv_udp_discovery(cfg));
}

/* True when the nats transport is configured (srv_nats.c, alone or with http). */
static bool srv_nats_transport(const cfg_config *cfg) {
  return cfg->enable_transport &&
         (!strcmp(cfg->transport_kind, "nats") || !strcmp(cfg->transport_kind, "http+nats"));
}

/* mkdir -p; returns 0 or an errno. */
static int srv_mkdirs(const char *path) {
  char *p = strdup(path);
  if (!p) return ENOMEM;
  int rc = 0;
  for (char *q = p + 1; *q && rc == 0; q++) {
    if (*q != '/') continue;
    *q = '\0';
    if (mkdir(p, 0755) != 0 && errno != EEXIST) rc = errno;
    *q = '/';
  }
  if (rc == 0 && mkdir(p, 0755) != 0 && errno != EEXIST) rc = errno;
  free(p);
  return rc;
}

/* Creates the data directory when asked to and it is missing. */
static int srv_prepare_dir(const cfg_config *cfg) {
  struct stat st;
  if (stat(cfg->data_dir, &st) == 0) return 0;
  if (errno != ENOENT || !cfg->create_data_dir) return 0; /* the core reports it */
  int rc = srv_mkdirs(cfg->data_dir);
  char q[600];
  if (rc != 0) {
    fprintf(stderr, "softadastra: cannot create data directory %s: %s\n", cfg->data_dir,
            strerror(rc));
    return -1;
  }
  srv_log(SRV_LOG_INFO, "data_dir_created", "path=%s", srv_log_q(cfg->data_dir, q, sizeof q));
  return 0;
}

/* The listening socket (the front loop owns it: srv_front.h).  Returns the
 * descriptor, non-blocking, and sets *bound, or -1 with the message printed. */
static int srv_socket(const cfg_config *cfg, uint16_t *bound) {
  char host[64];
  uint16_t port;
  if (cfg_parse_listen(cfg->listen, host, sizeof host, &port) != 0) return -1;
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  socklen_t sl;
  if (strchr(host, ':')) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    inet_pton(AF_INET6, host, &a->sin6_addr);
    sl = sizeof *a;
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    inet_pton(AF_INET, host, &a->sin_addr);
    sl = sizeof *a;
  }
  int one = 1;
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
      (ss.ss_family == AF_INET6 &&
       setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0) ||
      bind(fd, (struct sockaddr *)&ss, sl) != 0 || listen(fd, SOMAXCONN) != 0) {
    int e = errno;
    fprintf(stderr, "softadastra: cannot listen on %s: %s\n", cfg->listen, strerror(e));
    if (fd >= 0) close(fd);
    return -1;
  }
  struct sockaddr_storage got;
  socklen_t gl = sizeof got;
  *bound = port;
  if (getsockname(fd, (struct sockaddr *)&got, &gl) == 0)
    *bound = ntohs(got.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&got)->sin6_port
                                             : ((struct sockaddr_in *)&got)->sin_port);
  return fd;
}

/* A connection libmicrohttpd got from the front loop opened or closed: the
 * front counts it among the open connections until it closes. */
static void srv_conn_notify(void *cls, struct MHD_Connection *con, void **socket_ctx,
                            enum MHD_ConnectionNotificationCode toe) {
  srv *s = cls;
  (void)con;
  if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
    *socket_ctx = s; /* marks it as started: CLOSED is counted only after STARTED */
  } else if (toe == MHD_CONNECTION_NOTIFY_CLOSED && *socket_ctx == s) {
    *socket_ctx = NULL;
    atomic_fetch_sub(&s->open, 1);
  }
}

/* The front loop's handoff: libmicrohttpd serves this connection from now on. */
static int srv_handoff(void *cls, int fd, const struct sockaddr *peer, socklen_t peer_len) {
  srv *s = cls;
  return MHD_add_connection(s->d, fd, peer, peer_len) == MHD_YES ? 0 : -1;
}

/* libmicrohttpd's per-connection memory: room for any head the gate accepts
 * (at most max_header_bytes, and the loop's 16 KiB window) twice over -- the
 * raw bytes and the parsed fields -- plus its read buffer, so libmicrohttpd
 * never answers a checked request with its own 431 page. */
static size_t srv_mhd_memory(const cfg_config *cfg) {
  return 2 * (size_t)cfg->max_header_bytes + 32768;
}

/* libmicrohttpd's daemon, without a listening socket of its own: it serves
 * the connections the front loop hands it (MHD_add_connection). */
static struct MHD_Daemon *srv_daemon(srv *s, const cfg_config *cfg) {
  /* poll(2), not epoll: with epoll, MHD_quiesce_daemon raced the pool's
   * workers for the removal of the listen socket from their epoll sets
   * ("Failed to remove listen FD from epoll set", libmicrohttpd 0.9.75, a
   * SIGABRT at SIGTERM in CI).  The daemon has no listen socket any more,
   * but each worker polls few connections (the front loop serves the store's
   * hot requests), where poll costs what epoll does. */
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ITC |
                   MHD_USE_ERROR_LOG | MHD_USE_NO_LISTEN_SOCKET |
                   MHD_ALLOW_SUSPEND_RESUME; /* /v1/changes waits suspended (srv_sse.c) */
  errno = 0;
  struct MHD_Daemon *d = MHD_start_daemon(
      flags, 0, NULL, NULL, srv_access_cb, s, MHD_OPTION_EXTERNAL_LOGGER, srv_mhd_logger, s,
      MHD_OPTION_THREAD_POOL_SIZE, cfg_threads(cfg), MHD_OPTION_CONNECTION_LIMIT,
      (unsigned)cfg->max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
      (unsigned)cfg->connection_timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT, srv_mhd_memory(cfg),
      MHD_OPTION_URI_LOG_CALLBACK, srv_uri_cb, s, MHD_OPTION_NOTIFY_COMPLETED, srv_completed_cb, s,
      MHD_OPTION_NOTIFY_CONNECTION, srv_conn_notify, s, MHD_OPTION_END);
  if (!d) {
    int e = errno;
    fprintf(stderr, "softadastra: cannot start the HTTP server on %s: %s\n", cfg->listen,
            e ? strerror(e) : "libmicrohttpd could not start");
  }
  return d;
}

int srv_serve(const cfg_config *cfg) {
  srv_log_set_level(cfg->log_level);
  char walbuf[4096];
  const char *wal = cfg->wal_path;
  if (!wal[0]) {
    snprintf(walbuf, sizeof walbuf, "%s/%s.wal", cfg->data_dir, cfg->node_id);
    wal = walbuf;
  }
  if (srv_prepare_dir(cfg) != 0) return 1;
  if (srv_dir_check_node(cfg->data_dir, cfg->node_id, wal, cfg->new_node) != 0) return 1;

  /* Block the shutdown signals before any thread exists. */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  signal(SIGPIPE, SIG_IGN);

  sa_options o = sa_options_persistent(cfg->node_id, wal);
  if (cfg->store_path[0]) o.store_path = cfg->store_path;
  o.auto_flush = cfg->auto_flush;
  o.enable_transport = cfg->enable_transport;
  o.enable_discovery = cfg->enable_discovery;
  o.flush_interval_ms = cfg->flush_interval_ms;
  o.store_sync_interval_ms = cfg->store_sync_interval_ms;
  o.store_writeback_ms = cfg->store_writeback_ms ? cfg->store_writeback_ms : SA_STORE_WRITEBACK_OFF;
  o.store_commit_ms = cfg->store_commit_ms;
  o.store_commit_busy_ms =
      cfg->store_commit_busy_ms ? cfg->store_commit_busy_ms : SA_STORE_COMMIT_BUSY_OFF;
  o.store_commit_sync_ms =
      cfg->store_commit_sync_ms ? cfg->store_commit_sync_ms : SA_STORE_COMMIT_BUSY_OFF;
  o.tick_interval_ms = cfg->tick_interval_ms;
  o.max_value_bytes = cfg->max_value_bytes;
  o.max_batch_bytes = cfg->max_batch_bytes;
  o.wal_max_bytes = cfg->wal_max_bytes;
  o.store_max_bytes = cfg->store_max_bytes;

  /* The http transport is the server's (srv_sync.c): the core's own
   * transport stays idle; peers acknowledge through sa_client_sync_peer_ack. */
  static const sa_transport http_idle = {
      .kind = "http", .send = srv_idle_send, .running = srv_idle_running};
  o.transport_kind = cfg->transport_kind;
  if (srv_http_transport(cfg) || srv_nats_transport(cfg)) {
    o.transport = &http_idle;
    o.transport_kind = NULL; /* the core knows only its own kinds */
  }
  o.max_clock_drift_ms = cfg->max_clock_drift_ms;
  o.tombstone_ttl_s = cfg->tombstone_ttl_s;
  o.discovery_kind = cfg->discovery_kind;
  atomic_uint disc_count; /* discovered peers now: srv_sync keeps it, the core shows it */
  atomic_init(&disc_count, 0);
  const sa_discovery udp_view = {.kind = "udp", .ctx = &disc_count, .peers = srv_disc_count};
  if (srv_udp_discovery(cfg)) { /* the server's own (srv_discovery.c) */
    o.discovery = &udp_view;
    o.discovery_kind = NULL;
  }
  o.sync_batch_size = cfg->sync_batch_size;
  o.max_retries = cfg->max_retries;
  o.retry_base_ms = cfg->retry_base_ms;
  o.retry_max_ms = cfg->retry_max_ms;
  o.ack_timeout_ms = cfg->ack_timeout_ms;
  o.outbox_max = cfg->outbox_max;
  o.outbox_retention_ms = cfg->outbox_retention_ms;
  o.log = srv_core_log;
  o.log_ctx = NULL;

  sa_client *client = NULL;
  sa_error err = {0};
  int rc = sa_client_open(&client, &o, &err);
  if (rc != 0) {
    fprintf(stderr, "softadastra: cannot open node %s (WAL %s): %s\n", cfg->node_id, wal,
            err.message[0] ? err.message : sa_strerror(rc));
    if (rc == SA_ELOCKED)
      fprintf(stderr, "softadastra: is another `softadastra serve` running on this data "
                      "directory?\n");
    return 1;
  }

  srv s = {.log_requests = srv_log_enabled(SRV_LOG_DEBUG) != 0};
  atomic_init(&s.active, 0);
  atomic_init(&s.total, 0);
  atomic_init(&s.writes, 0);
  atomic_init(&s.closing, false);
  s.client = client;
  atomic_init(&s.open, 0);
  if (srv_feed_create(client, cfg->max_streams, cfg->sse_heartbeat_s, &s.feed) != 0) {
    fprintf(stderr, "softadastra: cannot start the change feed notifier\n");
    sa_client_close(client);
    return 1;
  }
  char nats_pub[SA_NODE_ID_MAX + 1] = ""; /* srv_nats_pub_peer's id, known before it starts */
  if (srv_nats_transport(cfg))
    snprintf(nats_pub, sizeof nats_pub, "nats-pub.%.32s", cfg->nats_stream);
  if (srv_http_transport(cfg)) {
    srv_sync_config sc = {
        .extra_peer = nats_pub[0] ? nats_pub : NULL,
        .client = client,
        .self_id = cfg->node_id,
        .peers = (const char *const *)cfg->peers,
        .n_peers = cfg->n_peers,
        .peer_token = cfg->peer_token,
        .max_batch_bytes = cfg->max_batch_bytes,
        .linger_ms = cfg->sync_pull_linger_ms,
        .discovered_count = &disc_count,
    };
    int e = srv_sync_start(&sc, &s.sync);
    if (e != 0) {
      fprintf(stderr, "softadastra: cannot start the http transport: %s\n", strerror(e));
      srv_feed_destroy(s.feed);
      sa_client_close(client);
      return 1;
    }
  }
  if (srv_nats_transport(cfg)) {
#ifdef SA_HAVE_NATS
    srv_nats_config nc = {
        .client = client,
        .self_id = cfg->node_id,
        .urls = cfg->nats_urls,
        .stream = cfg->nats_stream,
        .subject_prefix = cfg->nats_subject_prefix,
        .replicas = cfg->nats_replicas,
        .creds = cfg->nats_creds,
        .token = cfg->nats_token,
        .filter_prefix = cfg->nats_filter_prefix,
    };
    char why[300] = "";
    int e = srv_nats_start(&nc, &s.nats, why, sizeof why);
    /* Through a hub, an ack does not mean every node saw a delete, and an
     * older put may still come through after it: tombstones go by age. */
    if (e == 0) sa_client_sync_keep_tombstones(client, true);
    if (e == 0 && !s.sync) { /* the outbox waits for the hub's acknowledgement */
      const char *pub = srv_nats_pub_peer(s.nats);
      sa_client_sync_set_peers(client, &pub, 1, NULL);
    }
#else
    int e = ENOTSUP;
    const char *why = "this softadastra was built without libnats (install libnats-dev and build "
                      "again)";
#endif
    if (e != 0) {
      fprintf(stderr, "softadastra: cannot start the nats transport: %s\n",
              why[0] ? why : strerror(e));
      srv_sync_stop(s.sync);
      srv_sync_free(s.sync);
      srv_feed_destroy(s.feed);
      sa_client_close(client);
      return 1;
    }
  }
  /* With discovery the set of peers is open: a node forgotten after a silence,
   * or one never heard since this start, may come back holding a key deleted
   * here, so tombstones go by age (tombstone_ttl_s) only, never because the
   * peers known now have them (README, Sync: discovery). */
  if (srv_udp_discovery(cfg)) sa_client_sync_keep_tombstones(client, true);
  api_config ac = {
      .metrics_extra = srv_metrics_extra,
      .metrics_extra_cls = &s,
      .sync_transport = s.sync && s.nats ? "http+nats"
                        : s.nats         ? "nats"
                        : s.sync         ? "http"
                                         : NULL,
      .sync_peers = s.sync || s.nats ? srv_peers_all : NULL,
      .sync_served = s.sync ? srv_served_all : NULL,
      .sync_discovery = srv_udp_discovery(cfg) ? srv_discovery_all : NULL,
      .sync_cls = &s,
      .client = client,
      .auth_token = cfg->auth_token,
      .probes_need_token = cfg->auth_probes,
      .metrics_open = !cfg->auth_metrics,
      .cors_origins = (const char *const *)cfg->cors_origins,
      .n_cors_origins = cfg->n_cors_origins,
      .max_value_bytes = cfg->max_value_bytes,
      .max_batch_bytes = cfg->max_batch_bytes,
  };
  if (api_ctx_create(&ac, &s.api) != 0) {
    fprintf(stderr, "softadastra: out of memory\n");
    srv_sync_stop(s.sync);
    srv_sync_free(s.sync);
    srv_nats_stop(s.nats);
    srv_nats_free(s.nats);
    srv_feed_destroy(s.feed);
    sa_client_close(client);
    return 1;
  }
  uint16_t port = 0;
  int lfd = srv_socket(cfg, &port);
  bool disc_ok = true;
  if (lfd >= 0 && srv_udp_discovery(cfg)) { /* before any request can read s.disc */
    char host[64], why[800];
    uint16_t ignored;
    cfg_parse_listen(cfg->listen, host, sizeof host, &ignored);
    srv_discovery_config dc = {
        .sync = s.sync,
        .self_id = cfg->node_id,
        .listen_host = host,
        .listen_port = port,
        .advertise_url = cfg->discovery_url,
        .port = (uint16_t)cfg->discovery_port,
        .interval_ms = cfg->discovery_interval_ms,
        .timeout_s = cfg->discovery_timeout_s,
        /* signed with the token that guards this node, checked with the one it
         * sends: its peer_token goes only to nodes that hold it */
        .sign_key = cfg->auth_token[0] ? cfg->auth_token : cfg->peer_token,
        .verify_key = cfg->peer_token[0] ? cfg->peer_token : cfg->auth_token,
        .window_ms = cfg->max_clock_drift_ms,
    };
    if (srv_discovery_start(&dc, &s.disc, why, sizeof why) != 0) {
      fprintf(stderr, "softadastra: cannot start discovery: %s\n", why);
      disc_ok = false;
    }
  }
  s.d = lfd >= 0 && disc_ok ? srv_daemon(&s, cfg) : NULL;
  srv_front *front = NULL;
  if (s.d) {
    srv_front_config fc = {
        .listen_fd = lfd,
        .threads = cfg_threads(cfg),
        .api = s.api,
        .max_connections = cfg->max_connections,
        .timeout_s = cfg->connection_timeout_s,
        .max_head = cfg->max_header_bytes,
        .handoff = srv_handoff,
        .handoff_cls = &s,
        .open = &s.open,
        .active = &s.active,
        .total = &s.total,
        .log_requests = s.log_requests,
        .feed = s.feed, /* sync pulls long-poll on their kept-alive connections */
    };
    int e = srv_front_start(&fc, &front);
    if (e != 0) fprintf(stderr, "softadastra: cannot start the HTTP loops: %s\n", strerror(e));
  }
  if (!front) {
    if (s.d) MHD_stop_daemon(s.d);
    if (lfd >= 0) close(lfd);
    srv_discovery_stop(s.disc);
    srv_discovery_free(s.disc);
    srv_sync_stop(s.sync);
    srv_sync_free(s.sync);
    srv_nats_stop(s.nats);
    srv_nats_free(s.nats);
    srv_feed_destroy(s.feed);
    api_ctx_destroy(s.api);
    sa_client_close(client);
    return 1;
  }

  sa_status st;
  memset(&st, 0, sizeof st);
  sa_client_status(client, &st, NULL);
  char host[64];
  uint16_t ignored;
  cfg_parse_listen(cfg->listen, host, sizeof host, &ignored);
  const char *lb = strchr(host, ':') ? "[" : "", *rb = strchr(host, ':') ? "]" : "";
  char torn[600] = "";
  if (st.recovery.torn_path[0]) snprintf(torn, sizeof torn, " (kept in %s)", st.recovery.torn_path);
  /* records scanned but not replayed were in the store already (committed
   * before the stop): say so, or "0 replayed" reads as nothing recovered */
  unsigned long long scanned = st.recovery.records_scanned, replayed = st.recovery.records_replayed;
  char held[96] = "";
  if (scanned > replayed && replayed)
    snprintf(held, sizeof held, "; the store already held the other %llu", scanned - replayed);
  else if (scanned > replayed)
    snprintf(held, sizeof held, "; the store already held %s", scanned == 1 ? "it" : "them all");
  printf("softadastra %s: node %s listening on http://%s%s%s:%u, WAL %s, recovery: %llu records "
         "scanned, %llu replayed, %llu torn bytes cut%s%s\n",
         sa_version(), st.node_id, lb, host, rb, (unsigned)port, wal, scanned, replayed,
         (unsigned long long)st.recovery.torn_bytes, torn, held);
  fflush(stdout);
  char q1[128], q2[600];
  srv_log(SRV_LOG_INFO, "listening",
          "node_id=%s addr=%s%s%s:%u wal=%s durable=%s threads=%u auth=%s cors=%zu",
          srv_log_q(st.node_id, q1, sizeof q1), lb, host, rb, (unsigned)port,
          srv_log_q(wal, q2, sizeof q2), cfg->auto_flush ? "true" : "false", cfg_threads(cfg),
          cfg->auth_token[0] ? "on" : "off", cfg->n_cors_origins);
  if (s.sync) {
    char q3[2048] = "";
    size_t used = 0;
    for (size_t i = 0; i < cfg->n_peers && used + 1 < sizeof q3; i++) {
      int w = snprintf(q3 + used, sizeof q3 - used, "%s%s", i ? "," : "", cfg->peers[i]);
      if (w > 0) used += (size_t)w;
    }
    char q4[2100];
    srv_log(SRV_LOG_INFO, "sync_transport", "kind=http peers=%s peer_token=%s",
            srv_log_q(q3, q4, sizeof q4), cfg->peer_token[0] ? "set" : "none");
  }

  if (s.disc) {
    char q7[300];
    srv_log(SRV_LOG_INFO, "discovery",
            "kind=udp port=%u url=%s url_from=\"%s\" interval_ms=%u timeout_s=%u signed=%s",
            (unsigned)cfg->discovery_port, srv_log_q(srv_discovery_url(s.disc), q7, sizeof q7),
            srv_discovery_url_source(s.disc), cfg->discovery_interval_ms, cfg->discovery_timeout_s,
            cfg->auth_token[0] || cfg->peer_token[0] ? "yes" : "no");
  }

  if (s.nats) {
    char q5[1100], q6[100];
    srv_log(SRV_LOG_INFO, "sync_transport",
            "kind=nats urls=%s stream=%s subject_prefix=%s filter_prefix=%s",
            srv_log_q(cfg->nats_urls, q5, sizeof q5), cfg->nats_stream, cfg->nats_subject_prefix,
            srv_log_q(cfg->nats_filter_prefix, q6, sizeof q6));
  }

  int sig = 0;
  for (;;) {
    if (sigwait(&set, &sig) != 0) continue;
    if (sig == SIGINT || sig == SIGTERM) break;
    srv_log(SRV_LOG_INFO, "signal_ignored", "signal=%d", sig);
  }
  srv_log(SRV_LOG_INFO, "shutdown", "signal=%s active=%ld", sig == SIGINT ? "SIGINT" : "SIGTERM",
          atomic_load(&s.active));
  api_ctx_set_draining(s.api, true);
  srv_discovery_stop(s.disc); /* no peer is added or forgotten after this */
  srv_sync_stop(s.sync);      /* the pullers end first: no batch is applied after this */
  srv_nats_stop(s.nats);      /* and the hub's publisher and consumer */
  srv_feed_shutdown(s.feed);  /* streams say bye and end, long-polls answer now */
  srv_backup_stop();          /* running backups end cut (srv_backup.c) */
  /* Stop listening now (new connections are refused during the drain), but
   * close the socket only once the front loops have stopped: a loop may be
   * about to accept on it, and a closed number can be reused. */
  srv_front_drain(front);
  shutdown(lfd, SHUT_RDWR);
  struct timespec t0, now;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    if (atomic_load(&s.active) <= 0) break;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long ms = (now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000;
    if (ms > (long)cfg->shutdown_timeout_s * 1000) {
      srv_log(SRV_LOG_WARN, "drain_timeout", "active=%ld", atomic_load(&s.active));
      break;
    }
    struct timespec nap = {0, 5 * 1000 * 1000};
    nanosleep(&nap, NULL);
  }
  /* No suspended request may remain when the daemon stops (a write owns the
   * body the node reads).  From here none defers; the node settles every
   * queued write and the feed has resumed its waiters, so this wait ends
   * once their requests complete; it is not bounded by shutdown_timeout_s. */
  atomic_store(&s.closing, true);
  srv_front_stop(front); /* answers the loops' queued writes, closes their connections */
  while (atomic_load(&s.writes) > 0) {
    struct timespec nap = {0, 1000 * 1000};
    nanosleep(&nap, NULL);
  }
  MHD_stop_daemon(s.d);
  close(lfd);
  srv_discovery_free(s.disc);
  srv_sync_free(s.sync); /* no request can read the peers' state any more */
  srv_nats_free(s.nats);
  srv_feed_destroy(s.feed);
  api_ctx_destroy(s.api);
  if (srv_backup_wait(30000) != 0) /* their threads use the node */
    srv_log(SRV_LOG_WARN, "backup", "msg=a backup thread did not end in 30 s");
  sa_client_status(client, &st, NULL);
  unsigned long long last = (unsigned long long)st.last_lsn;
  sa_client_close(client);
  srv_log(SRV_LOG_INFO, "stopped", "requests=%lu last_lsn=%llu", atomic_load(&s.total), last);
  return 0;
}
