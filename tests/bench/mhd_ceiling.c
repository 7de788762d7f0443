/*
 * mhd_ceiling.c -- the HTTP ceiling of the benchmark: a bare libmicrohttpd
 * daemon that answers every request (GET, PUT, anything) with a fixed
 * 100-byte body.  It does no work of its own, so what wrk measures against it
 * is what libmicrohttpd + the kernel's loopback + wrk itself cost on this
 * machine: the best our node can hope for.
 *
 * It uses the same daemon settings as `softadastra serve` (server/srv.c,
 * srv_listen, with the defaults of server/cfg.c): internal polling thread
 * with a thread pool (poll), ITC, the same connection limit, timeout and
 * per-connection memory limit, and a response built per request from a
 * copied buffer, as srv_queue does.  A PUT body is read and dropped (counted
 * only), as our server reads it into a buffer before answering.
 *
 *   mhd_ceiling PORT [THREADS]       (listens on 127.0.0.1 only)
 *
 * Stops on SIGINT/SIGTERM.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CEIL_BODY_LEN 100
#define CEIL_CONN_LIMIT 512    /* cfg.c: max_connections default */
#define CEIL_CONN_TIMEOUT_S 30 /* cfg.c: connection_timeout_s default */
#define CEIL_MEM_LIMIT 16384   /* cfg.c: max_header_bytes default (was 64 KiB until 541a8f4) */

static char body[CEIL_BODY_LEN];

typedef struct {
  size_t received; /* body bytes of the request, read and dropped */
} ceil_req;

static enum MHD_Result ceil_access(void *cls, struct MHD_Connection *con, const char *url,
                                   const char *method, const char *version, const char *upload_data,
                                   size_t *upload_data_size, void **req_cls) {
  (void)cls, (void)url, (void)method, (void)version, (void)upload_data;
  ceil_req *r = *req_cls;
  if (!r) { /* first call: headers are in */
    r = calloc(1, sizeof *r);
    if (!r) return MHD_NO;
    *req_cls = r;
    return MHD_YES;
  }
  if (*upload_data_size > 0) {
    r->received += *upload_data_size;
    *upload_data_size = 0;
    return MHD_YES;
  }
  struct MHD_Response *m =
      MHD_create_response_from_buffer(sizeof body, body, MHD_RESPMEM_MUST_COPY);
  if (!m) return MHD_NO;
  MHD_add_response_header(m, "Content-Type", "application/octet-stream");
  enum MHD_Result rc = MHD_queue_response(con, MHD_HTTP_OK, m);
  MHD_destroy_response(m);
  return rc;
}

static void ceil_completed(void *cls, struct MHD_Connection *con, void **req_cls,
                           enum MHD_RequestTerminationCode toe) {
  (void)cls, (void)con, (void)toe;
  free(*req_cls);
  *req_cls = NULL;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: mhd_ceiling PORT [THREADS]\n");
    return 2;
  }
  int port = atoi(argv[1]);
  unsigned threads = argc > 2 ? (unsigned)atoi(argv[2]) : 4; /* cfg.c: threads default */
  if (port <= 0 || port > 65535 || threads == 0) {
    fprintf(stderr, "mhd_ceiling: bad port or thread count\n");
    return 2;
  }
  for (size_t i = 0; i < sizeof body; i++)
    body[i] = (char)('a' + i % 26);

  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, NULL); /* before any thread exists */

  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ITC | MHD_USE_ERROR_LOG;
  struct MHD_Daemon *d = MHD_start_daemon(
      flags, (uint16_t)port, NULL, NULL, ceil_access, NULL, MHD_OPTION_SOCK_ADDR,
      (struct sockaddr *)&sa, MHD_OPTION_THREAD_POOL_SIZE, threads, MHD_OPTION_CONNECTION_LIMIT,
      (unsigned)CEIL_CONN_LIMIT, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)CEIL_CONN_TIMEOUT_S,
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CEIL_MEM_LIMIT, MHD_OPTION_NOTIFY_COMPLETED,
      ceil_completed, NULL, MHD_OPTION_END);
  if (!d) {
    fprintf(stderr, "mhd_ceiling: cannot listen on 127.0.0.1:%d\n", port);
    return 1;
  }
  fprintf(stderr, "mhd_ceiling: listening on http://127.0.0.1:%d (%u threads)\n", port, threads);
  int sig;
  sigwait(&set, &sig);
  MHD_stop_daemon(d);
  return 0;
}
