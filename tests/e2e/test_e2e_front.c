/*
 * test_e2e_front.c -- the front loop (server/srv_front.c) against the real
 * node: pipelined requests that mix the loop's own routes with ones it hands
 * to libmicrohttpd on the same connection, keep-alive, Connection: close and
 * the response framing, a client that leaves while its write is queued, the
 * idle timeout, max_connections counted over both paths, and the sync
 * pull's long-polls that the loop holds on kept-alive connections.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "e2e_util.h"

static e2e_node node;

/* A connection to the node; rcvbuf > 0 shrinks its receive buffer (set
 * before connect, so the window the node sees is small from the start). */
static int conn_buf(const e2e_node *n, int rcvbuf) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ck_assert_int_ge(fd, 0);
  if (rcvbuf > 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)n->port)};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
  return fd;
}

static int conn(const e2e_node *n) {
  return conn_buf(n, 0);
}

static void send_str(int fd, const char *s) {
  size_t n = strlen(s), off = 0;
  while (off < n) {
    ssize_t w = send(fd, s + off, n - off, MSG_NOSIGNAL);
    ck_assert_int_gt(w, 0);
    off += (size_t)w;
  }
}

typedef struct answer {
  int status;
  char head[2048];
  char body[4096];
  size_t body_len;
} answer;

/* Reads one response (status line, headers, Content-Length body) from fd,
 * with buffered leftovers in *rest.  Returns 0, or -1 on EOF or timeout. */
typedef struct reader {
  int fd;
  char buf[65536];
  size_t len;
} reader;

static int fill(reader *r, int timeout_ms) {
  struct pollfd p = {.fd = r->fd, .events = POLLIN};
  if (poll(&p, 1, timeout_ms) <= 0) return -1;
  ssize_t n = recv(r->fd, r->buf + r->len, sizeof r->buf - 1 - r->len, 0);
  if (n <= 0) return -1;
  r->len += (size_t)n;
  r->buf[r->len] = '\0';
  return 0;
}

/* Every answer, the loop's or libmicrohttpd's, has a reason phrase and a
 * Date that is an IMF-fixdate of now (RFC 9110, 5.6.7). */
static void check_head(const char *head) {
  const char *sp = strchr(head + 9, ' ');
  ck_assert_msg(sp && sp[1] != '\r', "no reason phrase: %.60s", head);
  const char *d = strstr(head, "\r\nDate: ");
  ck_assert_msg(d, "no Date: %s", head);
  d += 8;
  const char *eol = strstr(d, "\r\n");
  ck_assert_msg(eol - d == 29, "Date is %d bytes, not 29: %s", (int)(eol - d), head);
  struct tm tm = {0};
  const char *end = strptime(d, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  ck_assert_msg(end == eol, "Date does not parse: %.29s", d);
  long skew = (long)(timegm(&tm) - time(NULL));
  ck_assert_msg(skew > -60 && skew < 60, "Date is %ld s off: %.29s", skew, d);
}

static int read_answer(reader *r, answer *a) {
  char *end;
  while (!(end = strstr(r->buf, "\r\n\r\n")))
    if (fill(r, e2e_wait_ms()) != 0) return -1;
  size_t hl = (size_t)(end - r->buf) + 4;
  ck_assert_uint_lt(hl, sizeof a->head);
  memcpy(a->head, r->buf, hl);
  a->head[hl] = '\0';
  ck_assert_msg(strncmp(a->head, "HTTP/1.1 ", 9) == 0, "status line: %.40s", a->head);
  a->status = atoi(a->head + 9);
  check_head(a->head);
  const char *cl = strcasestr(a->head, "\r\nContent-Length: ");
  a->body_len = cl ? strtoul(cl + 18, NULL, 10) : 0;
  ck_assert_uint_lt(a->body_len, sizeof a->body);
  while (r->len < hl + a->body_len)
    if (fill(r, e2e_wait_ms()) != 0) return -1;
  memcpy(a->body, r->buf + hl, a->body_len);
  a->body[a->body_len] = '\0';
  memmove(r->buf, r->buf + hl + a->body_len, r->len - hl - a->body_len + 1);
  r->len -= hl + a->body_len;
  return 0;
}

/* Waits up to ms for the node to close fd without sending anything more
 * (EOF, or a reset when it closed with our bytes unread); true when it did. */
static bool closed_by_peer(int fd, int ms) {
  struct pollfd p = {.fd = fd, .events = POLLIN};
  char c;
  return poll(&p, 1, ms) == 1 && recv(fd, &c, 1, 0) <= 0;
}

/* Waits up to ms for the node to close fd cleanly: EOF, not a reset. */
static bool clean_eof(int fd, int ms) {
  struct pollfd p = {.fd = fd, .events = POLLIN};
  char c;
  return poll(&p, 1, ms) == 1 && recv(fd, &c, 1, 0) == 0;
}

#define PUT(key, val)                                                                              \
  "PUT /v1/store/" key " HTTP/1.1\r\nHost: t\r\nContent-Length: " #val "\r\n\r\n"

/* Four requests in one write: the loop serves the first and hands the
 * connection to libmicrohttpd at the second (a page of the change feed,
 * whose streams libmicrohttpd serves) with the rest unread.  The gate gives
 * libmicrohttpd exactly one request: its answer says Connection: close, the
 * connection ends there, and the two requests behind it are never parsed
 * (nothing the gate has not checked runs). */
START_TEST(test_pipelined_handoff) {
  int fd = conn(&node);
  send_str(fd, "PUT /v1/store/pipe/a HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\none"
               "GET /v1/changes?since=0 HTTP/1.1\r\nHost: t\r\n\r\n"
               "PUT /v1/store/pipe/a HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\ntwo"
               "GET /v1/store/pipe/a?raw=1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  reader r = {.fd = fd};
  answer a;
  ck_assert_int_eq(read_answer(&r, &a), 0);
  ck_assert_int_eq(a.status, 201);
  ck_assert_ptr_nonnull(strstr(a.body, "\"version\":1"));
  ck_assert_ptr_null(strcasestr(a.head, "connection: close"));
  ck_assert_int_eq(read_answer(&r, &a), 0);
  ck_assert_int_eq(a.status, 200);
  ck_assert_ptr_nonnull(strstr(a.body, "\"changes\""));
  ck_assert_ptr_nonnull(strcasestr(a.head, "connection: close"));
  ck_assert(read_answer(&r, &a) != 0); /* nothing more: the connection ended */
  close(fd);
  e2e_resp g;
  ck_assert_int_eq(e2e_http(&node, "GET", "/v1/store/pipe/a?raw=1", NULL, NULL, 0, &g), 0);
  ck_assert_int_eq(g.status, 200);
  ck_assert_str_eq(g.body, "one"); /* the PUT behind the handed request never ran */
  e2e_resp_free(&g);
}
END_TEST

/* Pipelined requests the loop serves itself answer in order, each write
 * seen by the requests after it. */
START_TEST(test_pipelined_loop) {
  int fd = conn(&node);
  send_str(fd, "PUT /v1/store/pipe/b HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\n1"
               "PUT /v1/store/pipe/b HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\n2"
               "DELETE /v1/store/pipe/b HTTP/1.1\r\nHost: t\r\n\r\n"
               "GET /v1/store/pipe/b HTTP/1.1\r\nHost: t\r\n\r\n"
               "PUT /v1/store/pipe/b HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\n3"
               "GET /v1/store/pipe/b?raw=1 HTTP/1.1\r\nHost: t\r\n\r\n");
  reader r = {.fd = fd};
  answer a;
  int want[] = {201, 200, 200, 404, 201, 200};
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    ck_assert_int_eq(read_answer(&r, &a), 0);
    ck_assert_msg(a.status == want[i], "answer %zu: %d, want %d", i, a.status, want[i]);
  }
  ck_assert_str_eq(a.body, "3");
  /* Keep-alive: the connection stays open and serves more. */
  for (int i = 0; i < 200; i++) {
    char req[256];
    snprintf(req, sizeof req,
             "PUT /v1/store/ka/%d HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nv%02d"
             "GET /v1/store/ka/%d?raw=1 HTTP/1.1\r\nHost: t\r\n\r\n",
             i % 7, i % 100, i % 7);
    send_str(fd, req);
    ck_assert_int_eq(read_answer(&r, &a), 0);
    ck_assert_int_eq(a.status, i < 7 ? 201 : 200);
    ck_assert_int_eq(read_answer(&r, &a), 0);
    ck_assert_int_eq(a.status, 200);
    char want_body[8];
    snprintf(want_body, sizeof want_body, "v%02d", i % 100);
    ck_assert_str_eq(a.body, want_body);
  }
  close(fd);
}
END_TEST

/* The loop's answers carry Date and an exact Content-Length; Connection:
 * close is honoured and said. */
START_TEST(test_framing_and_close) {
  int fd = conn(&node);
  send_str(fd, PUT("frame", 5) "frame");
  reader r = {.fd = fd};
  answer a;
  ck_assert_int_eq(read_answer(&r, &a), 0);
  ck_assert_int_eq(a.status, 201);
  ck_assert_ptr_nonnull(strstr(a.head, "\r\nDate: "));
  ck_assert_ptr_nonnull(strstr(a.head, "\r\nContent-Type: application/json\r\n"));
  ck_assert_ptr_nonnull(strstr(a.head, "\r\nETag: \"1\"\r\n"));
  ck_assert_uint_eq(a.body_len, strlen(a.body));
  ck_assert_ptr_null(strstr(a.head, "Connection:"));
  send_str(fd, "DELETE /v1/store/frame HTTP/1.1\r\nHost: t\r\n\r\n");
  ck_assert_int_eq(read_answer(&r, &a), 0);
  ck_assert_int_eq(a.status, 200);
  ck_assert_uint_eq(a.body_len, strlen(a.body));
  /* A request pipelined after Connection: close is never answered, and the
   * close is clean: EOF after the answer, not a reset. */
  send_str(fd, "GET /v1/store/frame HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
               "PUT /v1/store/frame HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx");
  ck_assert_int_eq(read_answer(&r, &a), 0);
  ck_assert_int_eq(a.status, 404);
  ck_assert_ptr_nonnull(strstr(a.head, "\r\nConnection: close\r\n"));
  ck_assert_ptr_nonnull(strstr(a.body, "\"code\":\"not_found\""));
  ck_assert_uint_eq(r.len, 0);
  ck_assert(clean_eof(fd, e2e_wait_ms()));
  close(fd);
  char out[4096];
  const char *get = "GET /v1/store/frame HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
  ck_assert_int_eq(e2e_raw(&node, get, strlen(get), false, e2e_wait_ms(), out, sizeof out), 404);
  /* HTTP/1.0 and Expect: 100-continue go to libmicrohttpd and still work. */
  const char *h10 = "PUT /v1/store/old HTTP/1.0\r\nContent-Length: 2\r\n\r\nv1";
  ck_assert_int_eq(e2e_raw(&node, h10, strlen(h10), false, e2e_wait_ms(), out, sizeof out), 201);
  const char *exp = "PUT /v1/store/old HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
                    "Content-Length: 2\r\nConnection: close\r\n\r\nv2";
  e2e_raw(&node, exp, strlen(exp), false, e2e_wait_ms(), out, sizeof out);
  ck_assert_msg(strstr(out, "HTTP/1.1 200"), "Expect: %s", out);
}
END_TEST

/* A client that half-closes in the middle of a request gets a clean close
 * (EOF, not a reset) and no answer, on either path: the request can never
 * complete. */
START_TEST(test_partial_request_half_close) {
  const char *partial[] = {
      "GET /v1/store/half HTTP/1.1\r\nHost: t\r\n",                             /* the loop's */
      "PUT /v1/store/half HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\n\r\nabc", /* the loop's */
      "GET /v1/status HTTP/1.1\r\nHost: t\r\n", /* handed to libmicrohttpd */
  };
  for (size_t i = 0; i < sizeof partial / sizeof *partial; i++) {
    int fd = conn(&node);
    send_str(fd, partial[i]);
    usleep(50 * 1000); /* the node has read what there is, and waits for more */
    ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
    ck_assert_msg(clean_eof(fd, e2e_wait_ms()), "request %zu: no clean EOF (%s)", i,
                  strerror(errno));
    close(fd);
  }
  /* nothing of the partial PUT was applied */
  char out[4096];
  const char *get = "GET /v1/store/half HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
  ck_assert_int_eq(e2e_raw(&node, get, strlen(get), false, e2e_wait_ms(), out, sizeof out), 404);
}
END_TEST

/* A client that sends a PUT and leaves at once: the write was queued, so it
 * is applied and kept, and the node goes on serving. */
START_TEST(test_client_leaves_during_write) {
  for (int i = 0; i < 20; i++) {
    int fd = conn(&node);
    char req[128];
    snprintf(req, sizeof req,
             "PUT /v1/store/gone/%d HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\n"
             "left",
             i);
    send_str(fd, req);
    close(fd);
  }
  for (int i = 0; i < 20; i++) {
    char path[64];
    snprintf(path, sizeof path, "/v1/store/gone/%d?raw=1", i);
    e2e_resp r = {0};
    int tries = 0;
    for (;;) {
      ck_assert_int_eq(e2e_http(&node, "GET", path, NULL, NULL, 0, &r), 0);
      if (r.status == 200 || ++tries > 100) break;
      e2e_resp_free(&r);
      struct timespec nap = {0, 50 * 1000 * 1000};
      nanosleep(&nap, NULL);
    }
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "left");
    e2e_resp_free(&r);
  }
}
END_TEST

/* An answer larger than the socket's send buffer, to a client that reads
 * it late and slowly, is sent whole and in order: the loop keeps the rest and
 * sends it on the next output edges before it serves the pipelined request
 * behind.  The reading takes longer than connection_timeout_s (2 s): a
 * connection whose answer keeps moving is not idle. */
START_TEST(test_large_answer_read_late) {
  size_t n = 6u << 20; /* over the kernel's largest send buffer (tcp_wmem: 4 MiB) */
  char *val = malloc(n);
  ck_assert_ptr_nonnull(val);
  for (size_t i = 0; i < n; i++)
    val[i] = (char)('a' + i % 26);
  e2e_resp w = {0};
  ck_assert_int_eq(e2e_http(&node, "PUT", "/v1/store/big", NULL, val, n, &w), 0);
  ck_assert_int_eq(w.status, 201); /* a body this size goes through libmicrohttpd */
  e2e_resp_free(&w);
  int fd = conn_buf(&node, 65536); /* fixed: no autotuning; above one loopback MSS */
  send_str(fd, "GET /v1/store/big?raw=1 HTTP/1.1\r\nHost: t\r\n\r\n"
               "GET /v1/store/small HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  struct timespec nap = {0, 300 * 1000 * 1000}; /* the node fills the socket and waits */
  nanosleep(&nap, NULL);
  char *got = malloc(4 * n + 1);
  ck_assert_ptr_nonnull(got);
  size_t len = 0;
  for (;;) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, e2e_wait_ms()) != 1) break;
    ssize_t r = recv(fd, got + len, 4 * n - len < 32768 ? 4 * n - len : 32768, 0);
    if (r <= 0) break;
    len += (size_t)r;
    struct timespec slow = {0, 50 * 1000 * 1000}; /* 640 KiB/s: about 10 s in all */
    nanosleep(&slow, NULL);
  }
  close(fd);
  got[len] = '\0';
  /* Two answers: the raw value, then the 404 of the key behind it. */
  char *h1 = strstr(got, "\r\n\r\n");
  ck_assert_ptr_nonnull(h1);
  ck_assert(strncmp(got, "HTTP/1.1 200", 12) == 0);
  char *body = h1 + 4;
  ck_assert_uint_ge(len, (size_t)(body - got) + n);
  ck_assert(memcmp(body, val, n) == 0);
  char *second = body + n;
  ck_assert(strncmp(second, "HTTP/1.1 404", 12) == 0);
  ck_assert_ptr_nonnull(strstr(second, "\r\nConnection: close\r\n"));
  char *h2 = strstr(second, "\r\n\r\n");
  ck_assert_ptr_nonnull(h2);
  const char *cl = strcasestr(second, "\r\nContent-Length: ");
  ck_assert_ptr_nonnull(cl);
  ck_assert_uint_eq(len, (size_t)(h2 + 4 - got) + strtoul(cl + 18, NULL, 10));
  free(got);
  free(val);
}
END_TEST

/* An idle keep-alive connection is closed after connection_timeout_s. */
START_TEST(test_idle_timeout) {
  int fd = conn(&node);
  send_str(fd, "GET /v1/store/nothing HTTP/1.1\r\nHost: t\r\n\r\n");
  reader r = {.fd = fd};
  answer a;
  ck_assert_int_eq(read_answer(&r, &a), 0);
  ck_assert_int_eq(a.status, 404);
  ck_assert(closed_by_peer(fd, 20000 + e2e_wait_ms()));
  close(fd);
}
END_TEST

static void up(void) {
  e2e_node_init(&node);
  const char *args[] = {"--connection-timeout-s", e2e_slow() ? "6" : "2", "--max-value-bytes",
                        "8388608", NULL};
  ck_assert_int_eq(e2e_node_start(&node, args, NULL, NULL), 0);
}

static void down(void) {
  int rc = e2e_node_stop(&node, SIGTERM);
  e2e_node_cleanup(&node);
  ck_assert_int_eq(rc, 0);
}

/* A connection to n that sent req and got an answer (its status in
 * *status): the fd, kept open.  -1 when the node closed it unanswered. */
static int served(const e2e_node *n, const char *req, int *status) {
  int fd = conn(n);
  send_str(fd, req);
  reader r = {.fd = fd};
  answer a;
  if (read_answer(&r, &a) != 0) {
    close(fd);
    return -1;
  }
  *status = a.status;
  return fd;
}

/* Like served, retried every 50 ms for up to e2e_wait_ms (a slot the node
 * frees on a close it has not seen yet). */
static int served_soon(const e2e_node *n, const char *req, int *status) {
  long long until = e2e_now_ms() + e2e_wait_ms();
  int fd;
  while ((fd = served(n, req, status)) < 0 && e2e_now_ms() < until)
    e2e_nap_ms(50);
  return fd;
}

/* max_connections counts the loop's connections and the ones it handed to
 * libmicrohttpd together; one over is closed unanswered, and a freed slot is
 * usable again.  No step depends on timing: the handed-over poll waits
 * longer than the test, and a write ends it. */
START_TEST(test_max_connections) {
  e2e_node n;
  e2e_node_init(&n);
  const char *args[] = {"--max-connections", "3", NULL};
  ck_assert_int_eq(e2e_node_start(&n, args, NULL, NULL), 0);
  /* fds[1] is handed over and stays open: a long-poll of the change feed
   * (nothing written yet) that libmicrohttpd holds suspended */
  const char *get = "GET /v1/store/x HTTP/1.1\r\nHost: t\r\n\r\n";
  int fds[3], st;
  fds[0] = served(&n, get, &st);
  ck_assert_int_ge(fds[0], 0);
  fds[1] = conn(&n);
  send_str(fds[1], "GET /v1/changes?since=0&wait=60 HTTP/1.1\r\nHost: t\r\n\r\n");
  fds[2] = served(&n, get, &st);
  ck_assert_int_ge(fds[2], 0);
  int extra = conn(&n); /* the kernel accepts it; the node closes it */
  send_str(extra, "GET /v1/store/z HTTP/1.1\r\nHost: t\r\n\r\n");
  struct pollfd p = {.fd = extra, .events = POLLIN};
  char got[64] = "";
  ck_assert_int_eq(poll(&p, 1, e2e_wait_ms()), 1);
  ssize_t k = recv(extra, got, sizeof got - 1, 0);
  ck_assert_msg(k <= 0, "one over max_connections was answered: %.40s", got);
  close(extra);
  struct pollfd q = {.fd = fds[1], .events = POLLIN};
  ck_assert_msg(poll(&q, 1, 0) == 0, "the poll was answered with nothing written");

  /* libmicrohttpd does not see a suspended client leave: fds[1] keeps its
   * slot until the poll ends, here on a write through fds[0]'s slot */
  close(fds[1]);
  close(fds[0]);
  int w =
      served_soon(&n, "PUT /v1/store/wake HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\n1", &st);
  ck_assert_int_ge(w, 0);
  ck_assert_int_lt(st, 300);
  close(w);
  /* fds[2] and two more fit only once fds[1]'s slot is free */
  int ok = 0;
  for (long long until = e2e_now_ms() + e2e_wait_ms(); !ok && e2e_now_ms() < until;) {
    int a = served(&n, get, &st);
    int b = a >= 0 ? served(&n, get, &st) : -1;
    ok = b >= 0;
    if (a >= 0) close(a);
    if (b >= 0) close(b);
    if (!ok) e2e_nap_ms(50);
  }
  ck_assert_msg(ok, "the handed-over connection's slot was not freed when its poll ended");
  close(fds[2]);
  ck_assert_int_eq(e2e_node_stop(&n, SIGTERM), 0);
  e2e_node_cleanup(&n);
}
END_TEST

/* The lowest descriptor number pid has free (the next one it would get). */
static int lowest_free_fd(pid_t pid) {
  char path[64];
  for (int fd = 0;; fd++) {
    snprintf(path, sizeof path, "/proc/%d/fd/%d", (int)pid, fd);
    if (access(path, F_OK) != 0) return fd;
  }
}

/* CPU time (user + system) pid has used, in seconds. */
static double proc_cpu_s(pid_t pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  char *st = e2e_read_file(path, NULL);
  ck_assert_ptr_nonnull(st);
  const char *p = strrchr(st, ')'); /* the name may hold spaces */
  ck_assert_ptr_nonnull(p);
  unsigned long ut = 0, stime = 0;
  /* after ") ": state, then fields 4..13; utime and stime are 14 and 15 */
  ck_assert_int_eq(
      sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &stime), 2);
  free(st);
  return (double)(ut + stime) / (double)sysconf(_SC_CLK_TCK);
}

/* Out of descriptors: accept fails with EMFILE.  The loop says so in the
 * log, pauses accepting instead of spinning, keeps serving the connections
 * it has, and accepts again once descriptors are free. */
START_TEST(test_out_of_descriptors) {
  e2e_node n;
  e2e_node_init(&n);
  ck_assert_int_eq(e2e_node_start(&n, NULL, NULL, NULL), 0);
  int keep = conn(&n);
  reader rk = {.fd = keep};
  answer a;
  send_str(keep, "GET /v1/store/fd HTTP/1.1\r\nHost: t\r\n\r\n");
  ck_assert_int_eq(read_answer(&rk, &a), 0);
  ck_assert_int_eq(a.status, 404);
  /* room for 2 more descriptors (the kernel refuses a number >= the limit) */
  struct rlimit lim;
  ck_assert_int_eq(prlimit(n.pid, RLIMIT_NOFILE, NULL, &lim), 0);
  struct rlimit low = {.rlim_cur = (rlim_t)lowest_free_fd(n.pid) + 2, .rlim_max = lim.rlim_max};
  ck_assert_int_eq(prlimit(n.pid, RLIMIT_NOFILE, &low, NULL), 0);
  enum { N = 8 };
  int fds[N];
  for (int i = 0; i < N; i++) /* the kernel completes them; the node can take 2 */
    fds[i] = conn(&n);
  char *log = NULL;
  for (int tries = 0; tries < 100; tries++) {
    free(log);
    log = e2e_read_file(n.log, NULL);
    if (log && strstr(log, "accept_failed")) break;
    usleep(50 * 1000);
  }
  ck_assert_msg(log && strstr(log, "accept_failed") && strstr(log, "Too many open files"),
                "no accept_failed in the log: %s", log ? log : "(none)");
  free(log);
  /* it pauses accepting rather than spinning on the waiting connections */
  double cpu0 = proc_cpu_s(n.pid);
  usleep(1000 * 1000);
  double spent = proc_cpu_s(n.pid) - cpu0;
  ck_assert_msg(spent < 0.5, "the node used %.2f s of CPU in 1 s while out of descriptors", spent);
  /* the connection it has is still served */
  send_str(keep, "GET /v1/store/fd HTTP/1.1\r\nHost: t\r\n\r\n");
  ck_assert_int_eq(read_answer(&rk, &a), 0);
  ck_assert_int_eq(a.status, 404);
  /* descriptors back: every waiting connection is served */
  ck_assert_int_eq(prlimit(n.pid, RLIMIT_NOFILE, &lim, NULL), 0);
  for (int i = 0; i < N; i++) {
    send_str(fds[i], "GET /v1/store/fd HTTP/1.1\r\nHost: t\r\n\r\n");
    reader r = {.fd = fds[i]};
    ck_assert_msg(read_answer(&r, &a) == 0, "connection %d was never served", i);
    ck_assert_int_eq(a.status, 404);
    close(fds[i]);
  }
  close(keep);
  ck_assert_int_eq(e2e_node_stop(&n, SIGTERM), 0);
  e2e_node_cleanup(&n);
}
END_TEST

/* The integer after "name": in a JSON body, or -1. */
static long long json_int(const char *body, const char *name) {
  char pat[64];
  snprintf(pat, sizeof pat, "\"%s\":", name);
  const char *p = strstr(body, pat);
  return p ? strtoll(p + strlen(pat), NULL, 10) : -1;
}

/* softadastra_feed_polls_waiting of n, or -1. */
static long long polls_waiting(const e2e_node *n) {
  e2e_resp r;
  if (e2e_http(n, "GET", "/metrics", NULL, NULL, 0, &r) != 0) return -1;
  const char *p = strstr(r.body, "\nsoftadastra_feed_polls_waiting ");
  long long v = p ? strtoll(p + 32, NULL, 10) : -1;
  e2e_resp_free(&r);
  return v;
}

static bool polls_waiting_is(const e2e_node *n, long long want) {
  for (int i = 0; i < e2e_wait_ms() / 20; i++) {
    if (polls_waiting(n) == want) return true;
    struct timespec nap = {0, 20 * 1000 * 1000};
    nanosleep(&nap, NULL);
  }
  return false;
}

/* A sync pull's long-poll (GET /v1/sync/ops with wait) is served by the
 * loop on the puller's kept-alive connection: it waits in the feed hub
 * without an answer, is answered when a write is committed, and the same
 * connection then serves a poll that ends at its wait and a plain GET.  A
 * puller that closes while its poll waits frees it at once, not at the
 * wait's end. */
START_TEST(test_sync_poll_kept_alive) {
  e2e_resp g;
  ck_assert_int_eq(e2e_http(&node, "PUT", "/v1/store/poll/a", NULL, "1", 1, &g), 0);
  ck_assert_int_eq(g.status, 201);
  long long lsn = json_int(g.body, "lsn");
  e2e_resp_free(&g);
  ck_assert_int_gt(lsn, 0);
  long long last = -1;
  for (int i = 0; i < e2e_wait_ms() / 10 && last < lsn; i++) { /* until the store committed it */
    ck_assert_int_eq(
        e2e_http(&node, "GET", "/v1/sync/ops?since=0&limit=1&node=front-test", NULL, NULL, 0, &g),
        0);
    ck_assert_int_eq(g.status, 200);
    last = json_int(g.body, "last_lsn");
    e2e_resp_free(&g);
  }
  ck_assert_int_ge(last, lsn);
  int fd = conn(&node);
  reader r = {.fd = fd};
  answer a;
  char req[256];
  snprintf(req, sizeof req,
           "GET /v1/sync/ops?since=%lld&wait=20000&node=front-test HTTP/1.1\r\nHost: t\r\n\r\n",
           last);
  send_str(fd, req);
  ck_assert_msg(fill(&r, 300) != 0, "answered at once: %s", r.buf); /* nothing to say: it waits */
  ck_assert(polls_waiting_is(&node, 1));
  ck_assert_int_eq(e2e_http(&node, "PUT", "/v1/store/poll/b", NULL, "2", 1, &g), 0);
  ck_assert_int_eq(g.status, 201);
  e2e_resp_free(&g);
  ck_assert_int_eq(read_answer(&r, &a), 0);
  ck_assert_int_eq(a.status, 200);
  ck_assert_ptr_nonnull(strstr(a.body, "\"key\":\"poll/b\""));
  ck_assert_ptr_null(strcasestr(a.head, "connection: close"));
  ck_assert_ptr_nonnull(strcasestr(a.head, "X-Softadastra-Epoch: "));
  long long next = json_int(a.body, "next_since");
  ck_assert_int_gt(next, last);
  /* the same connection: a poll that ends at its wait, empty, then a GET */
  snprintf(req, sizeof req,
           "GET /v1/sync/ops?since=%lld&wait=300&node=front-test HTTP/1.1\r\nHost: t\r\n\r\n"
           "GET /v1/store/poll/b?raw=1 HTTP/1.1\r\nHost: t\r\n\r\n",
           next);
  send_str(fd, req);
  ck_assert_int_eq(read_answer(&r, &a), 0);
  ck_assert_int_eq(a.status, 200);
  ck_assert_int_eq(json_int(a.body, "count"), 0);
  ck_assert_ptr_null(strcasestr(a.head, "connection: close"));
  ck_assert_int_eq(read_answer(&r, &a), 0);
  ck_assert_int_eq(a.status, 200);
  ck_assert_str_eq(a.body, "2");
  ck_assert(polls_waiting_is(&node, 0));
  /* a puller that leaves while its poll waits */
  snprintf(req, sizeof req,
           "GET /v1/sync/ops?since=%lld&wait=30000&node=front-test HTTP/1.1\r\nHost: t\r\n\r\n",
           next);
  send_str(fd, req);
  ck_assert(polls_waiting_is(&node, 1));
  close(fd);
  ck_assert_msg(polls_waiting_is(&node, 0), "a closed puller's poll still waits");
}
END_TEST

/* A node that stops answers the polls it holds at once, with Connection:
 * close, and exits cleanly. */
START_TEST(test_sync_poll_at_shutdown) {
  e2e_node n;
  e2e_node_init(&n);
  ck_assert_int_eq(e2e_node_start(&n, NULL, NULL, NULL), 0);
  int fd = conn(&n);
  send_str(fd, "GET /v1/sync/ops?since=0&wait=30000&node=front-test HTTP/1.1\r\nHost: t\r\n\r\n");
  ck_assert(polls_waiting_is(&n, 1));
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  ck_assert_int_eq(kill(n.pid, SIGTERM), 0);
  reader r = {.fd = fd};
  answer a;
  ck_assert_int_eq(read_answer(&r, &a), 0);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  ck_assert_int_eq(a.status, 200);
  ck_assert_ptr_nonnull(strcasestr(a.head, "connection: close"));
  long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
  ck_assert_msg(ms < 20000, "the poll was answered %ld ms after the stop", ms);
  ck_assert(clean_eof(fd, e2e_wait_ms()));
  close(fd);
  ck_assert_int_eq(e2e_node_stop(&n, SIGTERM), 0);
  e2e_node_cleanup(&n);
}
END_TEST

int main(void) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
  Suite *s = suite_create("e2e_front");
  TCase *tc = tcase_create("front");
  tcase_add_unchecked_fixture(tc, up, down);
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, test_pipelined_handoff);
  tcase_add_test(tc, test_pipelined_loop);
  tcase_add_test(tc, test_framing_and_close);
  tcase_add_test(tc, test_partial_request_half_close);
  tcase_add_test(tc, test_client_leaves_during_write);
  tcase_add_test(tc, test_large_answer_read_late);
  tcase_add_test(tc, test_idle_timeout);
  tcase_add_test(tc, test_sync_poll_kept_alive);
  suite_add_tcase(s, tc);
  TCase *tm = tcase_create("limits");
  tcase_set_timeout(tm, 300);
  tcase_add_test(tm, test_max_connections);
  tcase_add_test(tm, test_out_of_descriptors);
  tcase_add_test(tm, test_sync_poll_at_shutdown);
  suite_add_tcase(s, tm);
  SRunner *sr = srunner_create(s);
  srunner_set_fork_status(sr, CK_NOFORK);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  curl_global_cleanup();
  return failed ? 1 : 0;
}
