/*
 * test_proxy.c -- unit test of the cluster tests' TCP proxy (proxy.h):
 * bytes pass both ways unchanged (half-closes too), each kind of cut does
 * what it says to live and new connections, heal lets new connections
 * through on the same port, a missing target resets the client, and stop
 * is clean with connections open.
 *
 * What it is not: a test of the node.  The upstream here is a small echo
 * server in this process (one accept thread, one thread per connection).
 * Every wait is bounded; timing is only used to say "nothing arrived
 * within N ms", never asserted as a speed.
 */
#define _GNU_SOURCE
#include "proxy.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- an echo server on 127.0.0.1:0 ------------------------------------- */

typedef struct echo_srv {
  int lfd, port;
  pthread_t thread;
  atomic_bool stop;
  atomic_int accepted;
  atomic_int live;
} echo_srv;

static void *echo_conn(void *arg) {
  int fd = (int)(intptr_t)arg;
  char buf[8192];
  for (;;) {
    ssize_t r = recv(fd, buf, sizeof buf, 0);
    if (r <= 0) break;
    size_t off = 0;
    while (off < (size_t)r) {
      ssize_t w = send(fd, buf + off, (size_t)r - off, MSG_NOSIGNAL);
      if (w <= 0) goto out;
      off += (size_t)w;
    }
  }
  shutdown(fd, SHUT_WR);
out:
  close(fd);
  return NULL;
}

static void *echo_accept(void *arg) {
  echo_srv *e = arg;
  while (!atomic_load(&e->stop)) {
    struct pollfd p = {.fd = e->lfd, .events = POLLIN};
    if (poll(&p, 1, 50) <= 0) continue;
    int fd = accept(e->lfd, NULL, NULL);
    if (fd < 0) continue;
    atomic_fetch_add(&e->accepted, 1);
    struct timeval tv = {10, 0}; /* a stuck test connection ends on its own */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    pthread_t t;
    if (pthread_create(&t, NULL, echo_conn, (void *)(intptr_t)fd) != 0)
      close(fd);
    else
      pthread_detach(t);
  }
  return NULL;
}

static void echo_start(echo_srv *e) {
  memset(e, 0, sizeof *e);
  e->lfd = socket(AF_INET, SOCK_STREAM, 0);
  ck_assert_int_ge(e->lfd, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ck_assert_int_eq(bind(e->lfd, (struct sockaddr *)&a, sizeof a), 0);
  ck_assert_int_eq(listen(e->lfd, 64), 0);
  socklen_t al = sizeof a;
  getsockname(e->lfd, (struct sockaddr *)&a, &al);
  e->port = ntohs(a.sin_port);
  ck_assert_int_eq(pthread_create(&e->thread, NULL, echo_accept, e), 0);
}

static void echo_stop(echo_srv *e) {
  atomic_store(&e->stop, true);
  pthread_join(e->thread, NULL);
  close(e->lfd);
}

/* ---- client helpers ------------------------------------------------------ */

/* Connects to 127.0.0.1:port; returns the socket, or -errno. */
static int cl_connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -errno;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    int e = errno;
    close(fd);
    return -e;
  }
  return fd;
}

/* Waits up to ms for fd to become readable and reads; returns recv's
 * result (0 EOF, <0 error with errno), or -2 when nothing came in time. */
static ssize_t cl_recv(int fd, char *buf, size_t len, int ms) {
  struct pollfd p = {.fd = fd, .events = POLLIN};
  if (poll(&p, 1, ms) <= 0) return -2;
  return recv(fd, buf, len, 0);
}

/* Sends s and expects it echoed within 5 s. */
static void cl_roundtrip(int fd, const char *s) {
  size_t n = strlen(s);
  ck_assert_int_eq(send(fd, s, n, MSG_NOSIGNAL), (ssize_t)n);
  char buf[256];
  size_t got = 0;
  while (got < n) {
    ssize_t r = cl_recv(fd, buf + got, sizeof buf - got, 5000);
    ck_assert_msg(r > 0, "no echo of '%s' (recv %zd, errno %d)", s, r, errno);
    got += (size_t)r;
  }
  ck_assert_int_eq(memcmp(buf, s, n), 0);
}

/* True when fd reports EOF or a reset within ms (the connection ended). */
static bool cl_ended(int fd, int ms) {
  char buf[64];
  ssize_t r = cl_recv(fd, buf, sizeof buf, ms);
  return r == 0 || (r == -1 && (errno == ECONNRESET || errno == EPIPE));
}

static void sleep_ms(int ms) {
  struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&t, NULL);
}

/* ---- tests ---------------------------------------------------------------- */

/* 4 MiB of patterned bytes through the proxy and back, sent and read at the
 * same time (the proxy's buffers are far smaller), then a half-close: the
 * EOF comes back after the last byte. */
START_TEST(test_bytes_both_ways) {
  echo_srv e;
  echo_start(&e);
  proxy *p = proxy_start(e.port);
  ck_assert_ptr_nonnull(p);
  int fd = cl_connect(proxy_port(p));
  ck_assert_int_ge(fd, 0);
  size_t total = 4u << 20;
  char *out = malloc(total), *in = malloc(total + 1); /* +1: room to see an extra byte */
  for (size_t i = 0; i < total; i++)
    out[i] = (char)((i * 131u + (i >> 11)) & 0xff);
  size_t sent = 0, got = 0;
  bool shut = false, eof = false;
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  while (!eof) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    ck_assert_msg(t.tv_sec - t0.tv_sec < 30, "stuck: sent %zu got %zu", sent, got);
    struct pollfd pf = {.fd = fd, .events = POLLIN | (sent < total ? POLLOUT : 0)};
    ck_assert_int_ge(poll(&pf, 1, 1000), 0);
    if ((pf.revents & POLLOUT) && sent < total) {
      size_t chunk = total - sent < 100000 ? total - sent : 100000;
      ssize_t w = send(fd, out + sent, chunk, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (w > 0) sent += (size_t)w;
    }
    if (sent == total && !shut) {
      shutdown(fd, SHUT_WR);
      shut = true;
    }
    if (pf.revents & (POLLIN | POLLHUP)) {
      ssize_t r = recv(fd, in + got, total - got + (got == total ? 1 : 0), MSG_DONTWAIT);
      if (r == 0) eof = true;
      if (r > 0) got += (size_t)r;
      ck_assert_msg(r >= 0 || errno == EAGAIN, "recv: %s", strerror(errno));
    }
  }
  ck_assert_uint_eq(got, total);
  ck_assert_int_eq(memcmp(in, out, total), 0);
  close(fd);
  proxy_stats st = proxy_get_stats(p);
  ck_assert_uint_eq(st.bytes_up, total);
  ck_assert_uint_eq(st.bytes_down, total);
  ck_assert_uint_eq(st.forwarded, 1);
  free(in);
  free(out);
  proxy_stop(p);
  echo_stop(&e);
}
END_TEST

/* REFUSE: live connections end, new connects are refused, the port stays
 * the proxy's; heal lets new connections through on the same port. */
START_TEST(test_cut_refuse_and_heal) {
  echo_srv e;
  echo_start(&e);
  proxy *p = proxy_start(e.port);
  ck_assert_ptr_nonnull(p);
  int port = proxy_port(p);
  int a = cl_connect(port), b = cl_connect(port);
  ck_assert_int_ge(a, 0);
  ck_assert_int_ge(b, 0);
  cl_roundtrip(a, "hello");
  cl_roundtrip(b, "world");
  ck_assert_int_eq(proxy_is_cut(p), 0);
  ck_assert_int_eq(proxy_cut(p, PROXY_REFUSE), 0);
  ck_assert_int_eq(proxy_is_cut(p), 1);
  ck_assert_msg(cl_ended(a, 2000), "live connection a survived the cut");
  ck_assert_msg(cl_ended(b, 2000), "live connection b survived the cut");
  close(a);
  close(b);
  int c = cl_connect(port);
  ck_assert_msg(c == -ECONNREFUSED, "connect during a REFUSE cut: %d", c);
  if (c >= 0) close(c);
  ck_assert_int_eq(proxy_heal(p), 0);
  ck_assert_int_eq(proxy_is_cut(p), 0);
  ck_assert_int_eq(proxy_port(p), port);
  int d = cl_connect(port);
  ck_assert_int_ge(d, 0);
  cl_roundtrip(d, "again");
  close(d);
  proxy_stats st = proxy_get_stats(p);
  ck_assert_uint_eq(st.cut_resets, 2);
  ck_assert_uint_eq(st.cuts, 1);
  ck_assert_uint_eq(st.heals, 1);
  proxy_stop(p);
  echo_stop(&e);
}
END_TEST

/* BLACKHOLE: live connections end; a new connect succeeds but nothing
 * reaches the target or comes back; heal resets the held connection and
 * lets new ones through. */
START_TEST(test_cut_blackhole_and_heal) {
  echo_srv e;
  echo_start(&e);
  proxy *p = proxy_start(e.port);
  ck_assert_ptr_nonnull(p);
  int a = cl_connect(proxy_port(p));
  ck_assert_int_ge(a, 0);
  cl_roundtrip(a, "x");
  ck_assert_int_eq(proxy_cut(p, PROXY_BLACKHOLE), 0);
  ck_assert_msg(cl_ended(a, 2000), "live connection survived the cut");
  close(a);
  int before = atomic_load(&e.accepted);
  int h = cl_connect(proxy_port(p));
  ck_assert_int_ge(h, 0);
  ck_assert_int_eq(send(h, "ping", 4, MSG_NOSIGNAL), 4);
  char buf[16];
  ck_assert_int_eq(cl_recv(h, buf, sizeof buf, 300), -2); /* silence */
  ck_assert_int_eq(atomic_load(&e.accepted), before);
  ck_assert_uint_eq(proxy_get_stats(p).held, 1);
  ck_assert_int_eq(proxy_heal(p), 0);
  ck_assert_msg(cl_ended(h, 2000), "held connection survived the heal");
  close(h);
  int d = cl_connect(proxy_port(p));
  ck_assert_int_ge(d, 0);
  cl_roundtrip(d, "back");
  close(d);
  proxy_stop(p);
  echo_stop(&e);
}
END_TEST

/* STALL: a live connection freezes (bytes sent during the cut get no
 * answer) and resumes where it stopped after heal; a new connection made
 * during the cut is held and reset at heal. */
START_TEST(test_cut_stall_and_heal) {
  echo_srv e;
  echo_start(&e);
  proxy *p = proxy_start(e.port);
  ck_assert_ptr_nonnull(p);
  int a = cl_connect(proxy_port(p));
  ck_assert_int_ge(a, 0);
  cl_roundtrip(a, "one");
  ck_assert_int_eq(proxy_cut(p, PROXY_STALL), 0);
  ck_assert_int_eq(send(a, "two", 3, MSG_NOSIGNAL), 3);
  char buf[16];
  ck_assert_int_eq(cl_recv(a, buf, sizeof buf, 300), -2);
  int h = cl_connect(proxy_port(p));
  ck_assert_int_ge(h, 0);
  ck_assert_int_eq(cl_recv(h, buf, sizeof buf, 100), -2);
  ck_assert_int_eq(proxy_heal(p), 0);
  ssize_t r = cl_recv(a, buf, sizeof buf, 5000);
  ck_assert_int_eq(r, 3);
  ck_assert_int_eq(memcmp(buf, "two", 3), 0);
  cl_roundtrip(a, "three");
  ck_assert_msg(cl_ended(h, 2000), "held connection survived the heal");
  close(h);
  close(a);
  proxy_stop(p);
  echo_stop(&e);
}
END_TEST

/* No target (0) or a target nobody listens on: the client is reset.
 * Setting a target makes new connections work; a cut of a cut link
 * changes its mode. */
START_TEST(test_target_and_recut) {
  proxy *p = proxy_start(0);
  ck_assert_ptr_nonnull(p);
  int a = cl_connect(proxy_port(p));
  ck_assert_int_ge(a, 0);
  ck_assert_msg(cl_ended(a, 2000), "no target: the client was not reset");
  close(a);
  /* a port nobody listens on: bind one, read it, close it */
  int s = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ck_assert_int_eq(bind(s, (struct sockaddr *)&sa, sizeof sa), 0);
  socklen_t sl = sizeof sa;
  getsockname(s, (struct sockaddr *)&sa, &sl);
  close(s);
  proxy_set_target(p, ntohs(sa.sin_port));
  int b = cl_connect(proxy_port(p));
  ck_assert_int_ge(b, 0);
  ck_assert_msg(cl_ended(b, 2000), "dead target: the client was not reset");
  close(b);
  ck_assert_uint_ge(proxy_get_stats(p).upstream_err, 2);
  echo_srv e;
  echo_start(&e);
  proxy_set_target(p, e.port);
  int c = cl_connect(proxy_port(p));
  ck_assert_int_ge(c, 0);
  cl_roundtrip(c, "target");
  close(c);
  ck_assert_int_eq(proxy_cut(p, PROXY_BLACKHOLE), 0);
  ck_assert_int_eq(proxy_cut(p, PROXY_REFUSE), 0);
  ck_assert_int_eq(cl_connect(proxy_port(p)), -ECONNREFUSED);
  ck_assert_int_eq(proxy_heal(p), 0);
  ck_assert_int_eq(proxy_heal(p), 0); /* healing a healed link: nothing */
  int d = cl_connect(proxy_port(p));
  ck_assert_int_ge(d, 0);
  cl_roundtrip(d, "ok");
  close(d);
  proxy_stop(p);
  echo_stop(&e);
}
END_TEST

/* Many connections at once, then stop with all of them open (and a cut
 * with held ones): every socket is closed, nothing leaks (ASan/valgrind). */
START_TEST(test_many_and_stop) {
  echo_srv e;
  echo_start(&e);
  proxy *p = proxy_start(e.port);
  ck_assert_ptr_nonnull(p);
  enum { N = 40 };
  int fds[N];
  for (int i = 0; i < N; i++) {
    fds[i] = cl_connect(proxy_port(p));
    ck_assert_int_ge(fds[i], 0);
  }
  for (int i = 0; i < N; i++) {
    char msg[32];
    snprintf(msg, sizeof msg, "conn-%d", i);
    cl_roundtrip(fds[i], msg);
  }
  ck_assert_uint_eq(proxy_get_stats(p).forwarded, N);
  ck_assert_int_eq(proxy_cut(p, PROXY_STALL), 0);
  int h = cl_connect(proxy_port(p));
  ck_assert_int_ge(h, 0);
  sleep_ms(50);
  proxy_stop(p);
  for (int i = 0; i < N; i++) {
    ck_assert_msg(cl_ended(fds[i], 2000), "connection %d open after stop", i);
    close(fds[i]);
  }
  ck_assert_msg(cl_ended(h, 2000), "held connection open after stop");
  close(h);
  echo_stop(&e);
}
END_TEST

static Suite *proxy_suite(void) {
  Suite *s = suite_create("cluster_proxy");
  TCase *tc = tcase_create("proxy");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_bytes_both_ways);
  tcase_add_test(tc, test_cut_refuse_and_heal);
  tcase_add_test(tc, test_cut_blackhole_and_heal);
  tcase_add_test(tc, test_cut_stall_and_heal);
  tcase_add_test(tc, test_target_and_recut);
  tcase_add_test(tc, test_many_and_stop);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(proxy_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
