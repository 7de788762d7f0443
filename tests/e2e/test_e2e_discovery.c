/*
 * test_e2e_discovery.c -- UDP discovery between real nodes (issue 22 item
 * 8): three nodes started with --discovery udp and no --peer find each
 * other on 127.0.0.1, a write on one reaches the others, a node that stops
 * is forgotten after discovery_timeout_s (and then holds no acknowledgement
 * back), and found again when it returns; bad datagrams sent by the test
 * are counted by reason and change nothing (one claiming the node's own id
 * is logged); with tokens, an unsigned or wrongly signed announcement never
 * makes the node connect anywhere, a signed one does; and a node without
 * --discovery opens no UDP socket at all.
 *
 * What it is not: the datagram's unit test (tests/api/test_srv_disc.c).
 * Nothing here asserts on timing: every wait is a bounded poll
 * (E2E_WAIT_MS); how long the nodes took to find each other and to forget
 * one is printed.
 *
 * Ports: each test picks its own discovery port (a free UDP port of this
 * moment), so runs in parallel never hear each other; the short interval
 * and timeout (200 ms, 2 s; 1 s and 10 s under memcheck) keep it short.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "e2e_util.h"
#include "srv_disc_msg.h"

/* The discovery interval and timeout of the nodes: short, and wider under
 * memcheck (SA_TEST_SLOW), where a node is many times slower. */
#define INTERVAL (e2e_slow() ? "1000" : "200")
#define TIMEOUT (e2e_slow() ? "10" : "2")

/* ---- helpers ---------------------------------------------------------------- */

static long long unix_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Starts node id with discovery on port and extra args (NULL-terminated). */
static void start_disc(e2e_node *n, const char *id, int port, const char *const *extra) {
  static char ports[8][16];
  static int np = 0;
  char *p = ports[np++ % 8];
  snprintf(p, 16, "%d", port);
  const char *args[32] = {"--node-id",
                          id,
                          "--discovery",
                          "udp",
                          "--discovery-port",
                          p,
                          "--discovery-interval-ms",
                          INTERVAL,
                          "--discovery-timeout-s",
                          TIMEOUT};
  size_t k = 10;
  for (size_t i = 0; extra && extra[i] && k < 31; i++)
    args[k++] = extra[i];
  args[k] = NULL;
  int code = -1;
  ck_assert_msg(e2e_node_start(n, args, NULL, &code) == 0, "node %s did not start (exit %d)", id,
                code);
}

static json_t *sync_status(const e2e_node *n, const char *token) {
  json_t *j = NULL;
  if (e2e_req(n, "GET", "/v1/sync/status", NULL, token, &j) != 200) {
    json_decref(j);
    return NULL;
  }
  return j;
}

/* The peer entry of n's status for node_id (a new reference), or NULL. */
static json_t *peer_by_id(const e2e_node *n, const char *id, const char *token) {
  json_t *j = sync_status(n, token), *found = NULL;
  json_t *peers = json_object_get(j, "peers");
  for (size_t i = 0; i < json_array_size(peers); i++) {
    json_t *p = json_array_get(peers, i);
    const char *pid = json_string_value(json_object_get(p, "node_id"));
    if (pid && !strcmp(pid, id)) found = json_incref(p);
  }
  json_decref(j);
  return found;
}

/* The peer entry whose url is url, or NULL. */
static json_t *peer_by_url(const e2e_node *n, const char *url, const char *token) {
  json_t *j = sync_status(n, token), *found = NULL;
  json_t *peers = json_object_get(j, "peers");
  for (size_t i = 0; i < json_array_size(peers); i++) {
    json_t *p = json_array_get(peers, i);
    const char *u = json_string_value(json_object_get(p, "url"));
    if (u && !strcmp(u, url)) found = json_incref(p);
  }
  json_decref(j);
  return found;
}

/* True once n lists id as a peer of that source it is connected to. */
static bool connected_peer(const e2e_node *n, const char *id, const char *source,
                           const char *token) {
  json_t *p = peer_by_id(n, id, token);
  bool ok = p && !strcmp(json_string_value(json_object_get(p, "source")), source) &&
            !strcmp(json_string_value(json_object_get(p, "state")), "connected");
  json_decref(p);
  return ok;
}

static bool has_connected_peer(const e2e_node *n, const char *id, const char *token) {
  return connected_peer(n, id, "discovered", token);
}

static void put(const e2e_node *n, const char *key, const char *value, const char *token) {
  char path[256];
  snprintf(path, sizeof path, "/v1/store/%s", key);
  long st = e2e_req(n, "PUT", path, value, token, NULL);
  ck_assert_msg(st == 200 || st == 201, "PUT %s: HTTP %ld", key, st);
}

/* Polls until metric name of n reaches at least want.  True when it did. */
static bool wait_metric(const e2e_node *n, const char *name, long long want, const char *token) {
  long long t0 = e2e_now_ms();
  while (e2e_now_ms() - t0 < E2E_WAIT_MS) {
    if (e2e_metric(n, name, token) >= want) return true;
    e2e_nap_ms(20);
  }
  return false;
}

/* UDP sockets among the open files of pid: the inodes of its sockets
 * looked up in /proc/net/udp and udp6. */
static int udp_sockets(pid_t pid) {
  char dir[64];
  snprintf(dir, sizeof dir, "/proc/%d/fd", (int)pid);
  DIR *d = opendir(dir);
  ck_assert_ptr_nonnull(d);
  unsigned long inodes[512];
  size_t ni = 0;
  struct dirent *e;
  while ((e = readdir(d)) && ni < 512) {
    char path[320], link[128];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    ssize_t l = readlink(path, link, sizeof link - 1);
    if (l <= 0) continue;
    link[l] = '\0';
    unsigned long ino;
    if (sscanf(link, "socket:[%lu]", &ino) == 1) inodes[ni++] = ino;
  }
  closedir(d);
  int found = 0;
  const char *tables[] = {"/proc/net/udp", "/proc/net/udp6"};
  for (size_t t = 0; t < 2; t++) {
    FILE *f = fopen(tables[t], "r");
    if (!f) continue;
    char line[512];
    if (!fgets(line, sizeof line, f)) line[0] = '\0'; /* the header */
    while (fgets(line, sizeof line, f)) {
      unsigned long ino = 0;
      /* sl local rem st tx:rx tr:when retrnsmt uid timeout inode */
      if (sscanf(line, "%*s %*s %*s %*s %*s %*s %*s %*s %*s %lu", &ino) != 1) continue;
      for (size_t i = 0; i < ni; i++)
        found += inodes[i] == ino;
    }
    fclose(f);
  }
  return found;
}

/* A broadcast socket for sending datagrams to the nodes of this host. */
static int udp_sender(void) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  ck_assert_int_ge(fd, 0);
  int one = 1;
  ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_BROADCAST, &one, sizeof one), 0);
  return fd;
}

static void udp_send(int fd, int port, const void *buf, size_t len) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, "127.255.255.255", &a.sin_addr);
  ck_assert_int_eq(sendto(fd, buf, len, 0, (struct sockaddr *)&a, sizeof a), (ssize_t)len);
}

static void stop_node(e2e_node *n) {
  if (n->pid) ck_assert_int_eq(e2e_node_stop(n, SIGTERM), 0);
}

/* ---- tests ---------------------------------------------------------------------- */

START_TEST(test_no_udp_without_discovery) {
  e2e_node plain, http, disc;
  e2e_node_init(&plain);
  e2e_node_init(&http);
  e2e_node_init(&disc);
  const char *pa[] = {"--node-id", "plain", NULL};
  int code = -1;
  ck_assert_int_eq(e2e_node_start(&plain, pa, NULL, &code), 0);
  char peer[64];
  snprintf(peer, sizeof peer, "%s", plain.url);
  const char *ha[] = {"--node-id", "http", "--transport", "http", "--peer", peer, NULL};
  ck_assert_int_eq(e2e_node_start(&http, ha, NULL, &code), 0);
  /* the http node has pulled the plain one: its puller runs */
  long long t0 = e2e_now_ms();
  while (!connected_peer(&http, "plain", "configured", NULL) && e2e_now_ms() - t0 < E2E_WAIT_MS)
    e2e_nap_ms(20);
  ck_assert(connected_peer(&http, "plain", "configured", NULL));
  ck_assert_int_eq(udp_sockets(plain.pid), 0);
  ck_assert_int_eq(udp_sockets(http.pid), 0);
  json_t *s = sync_status(&plain, NULL);
  ck_assert(json_is_false(json_object_get(json_object_get(s, "discovery"), "enabled")));
  ck_assert_ptr_null(json_object_get(json_object_get(s, "discovery"), "port"));
  json_decref(s);
  /* the check sees a discovery socket when there is one */
  start_disc(&disc, "disc", e2e_free_port(SOCK_DGRAM), NULL);
  ck_assert_int_ge(udp_sockets(disc.pid), 1);
  stop_node(&disc);
  stop_node(&http);
  stop_node(&plain);
  e2e_node_cleanup(&disc);
  e2e_node_cleanup(&http);
  e2e_node_cleanup(&plain);
}
END_TEST

START_TEST(test_three_nodes) {
  int port = e2e_free_port(SOCK_DGRAM);
  e2e_node n[3];
  const char *ids[3] = {"disc-a", "disc-b", "disc-c"};
  for (int i = 0; i < 3; i++)
    e2e_node_init(&n[i]);
  long long t0 = e2e_now_ms();
  for (int i = 0; i < 3; i++)
    start_disc(&n[i], ids[i], port, NULL);
  long long started = e2e_now_ms();
  /* every node finds the two others and pulls them */
  bool all = false;
  while (!all && e2e_now_ms() - t0 < E2E_WAIT_MS) {
    all = true;
    for (int i = 0; i < 3 && all; i++)
      for (int k = 0; k < 3 && all; k++)
        if (k != i) all = has_connected_peer(&n[i], ids[k], NULL);
    if (!all) e2e_nap_ms(10);
  }
  ck_assert_msg(all, "the three nodes did not find each other");
  printf("discovery: 3 nodes found each other %lld ms after the first start, %lld ms after the "
         "last one started\n",
         e2e_now_ms() - t0, e2e_now_ms() - started);
  /* the status and the CLI say where each peer came from */
  json_t *s = sync_status(&n[0], NULL);
  json_t *d = json_object_get(s, "discovery");
  ck_assert(json_is_true(json_object_get(d, "enabled")));
  ck_assert_str_eq(json_string_value(json_object_get(d, "kind")), "udp");
  ck_assert_int_eq(json_integer_value(json_object_get(d, "port")), port);
  ck_assert_str_eq(json_string_value(json_object_get(d, "url")), n[0].url);
  ck_assert_int_eq(json_integer_value(json_object_get(d, "peers")), 2);
  ck_assert_int_gt(json_integer_value(json_object_get(d, "datagrams_sent")), 0);
  ck_assert_int_eq(json_integer_value(json_object_get(d, "datagrams_refused")), 0);
  json_decref(s);
  const char *pargs[] = {"peers", NULL};
  char *out = NULL, *err = NULL;
  ck_assert_int_eq(e2e_cli(&n[0], pargs, NULL, &out, &err), 0);
  ck_assert_ptr_nonnull(strstr(out, "disc-b"));
  ck_assert_ptr_nonnull(strstr(out, "disc-c"));
  ck_assert_ptr_nonnull(strstr(out, "discovered"));
  free(out);
  free(err);
  /* a write on one reaches the others, from any of them */
  put(&n[0], "settings/theme", "dark", NULL);
  ck_assert(e2e_wait_value(&n[1], "settings/theme", "dark", NULL, E2E_WAIT_MS) >= 0);
  ck_assert(e2e_wait_value(&n[2], "settings/theme", "dark", NULL, E2E_WAIT_MS) >= 0);
  put(&n[2], "settings/lang", "fr", NULL);
  ck_assert(e2e_wait_value(&n[0], "settings/lang", "fr", NULL, E2E_WAIT_MS) >= 0);
  ck_assert(e2e_wait_value(&n[1], "settings/lang", "fr", NULL, E2E_WAIT_MS) >= 0);
  ck_assert_int_gt(e2e_metric(&n[1], "softadastra_discovery_datagrams_received_total", NULL), 0);
  ck_assert_int_eq(e2e_metric(&n[1], "softadastra_discovery_peers", NULL), 2);
  /* C stops: A and B forget it after the timeout */
  stop_node(&n[2]);
  long long stopped = e2e_now_ms();
  bool gone = false;
  while (!gone && e2e_now_ms() - stopped < E2E_WAIT_MS) {
    json_t *a = peer_by_id(&n[0], ids[2], NULL), *b = peer_by_id(&n[1], ids[2], NULL);
    gone = !a && !b;
    json_decref(a);
    json_decref(b);
    if (!gone) e2e_nap_ms(20);
  }
  ck_assert_msg(gone, "the stopped node was not forgotten");
  printf("discovery: a stopped node forgotten %lld ms after its stop (timeout %s s)\n",
         e2e_now_ms() - stopped, TIMEOUT);
  ck_assert_int_ge(e2e_metric(&n[0], "softadastra_discovery_peers_forgotten_total", NULL), 1);
  char *log = e2e_read_file(n[0].log, NULL);
  ck_assert_ptr_nonnull(strstr(log, "event=discovery_peer_forgotten"));
  free(log);
  /* A forgotten peer holds no acknowledgement back: A's write while C is
   * away is acknowledged once B has it. */
  put(&n[0], "after/stop", "1", NULL);
  ck_assert(e2e_wait_value(&n[1], "after/stop", "1", NULL, E2E_WAIT_MS) >= 0);
  long long t1 = e2e_now_ms();
  long long queued = -1;
  while (e2e_now_ms() - t1 < E2E_WAIT_MS) {
    json_t *j = NULL;
    e2e_req(&n[0], "POST", "/v1/sync/tick", NULL, NULL, &j);
    queued = json_integer_value(json_object_get(j, "queued"));
    json_decref(j);
    if (queued == 0) break;
    e2e_nap_ms(50);
  }
  ck_assert_int_eq(queued, 0);
  /* C returns (a new port): found again, it gets what it missed */
  start_disc(&n[2], ids[2], port, NULL);
  ck_assert(e2e_wait_value(&n[2], "after/stop", "1", NULL, E2E_WAIT_MS) >= 0);
  long long t2 = e2e_now_ms();
  while (!(has_connected_peer(&n[0], ids[2], NULL) && has_connected_peer(&n[2], ids[0], NULL)) &&
         e2e_now_ms() - t2 < E2E_WAIT_MS)
    e2e_nap_ms(20);
  ck_assert(has_connected_peer(&n[0], ids[2], NULL));
  for (int i = 2; i >= 0; i--) {
    stop_node(&n[i]);
    e2e_node_cleanup(&n[i]);
  }
}
END_TEST

START_TEST(test_bad_datagrams) {
  int port = e2e_free_port(SOCK_DGRAM);
  e2e_node n;
  e2e_node_init(&n);
  start_disc(&n, "target", port, NULL);
  int fd = udp_sender();
  unsigned char b[2048];
  memset(b, 'x', sizeof b);
  size_t len =
      srv_disc_encode("other", "http://127.0.0.1:9", (uint64_t)unix_ms(), NULL, b, sizeof b);
  udp_send(fd, port, b, 10);   /* truncated */
  udp_send(fd, port, b, 1500); /* oversize */
  unsigned char bad[64];
  memcpy(bad, b, len);
  bad[0] = 'X'; /* magic */
  udp_send(fd, port, bad, len);
  memcpy(bad, b, len);
  bad[15] = ' '; /* "other" -> " ther": a bad id */
  udp_send(fd, port, bad, len);
  memcpy(bad, b, len);
  bad[16 + 5 + 7] = '@'; /* the URL's host: "http://@27.0.0.1:9" */
  udp_send(fd, port, bad, len);
  /* this node's own id from another URL: two nodes would share an id */
  size_t own =
      srv_disc_encode("target", "http://127.0.0.1:9", (uint64_t)unix_ms(), NULL, bad, sizeof bad);
  udp_send(fd, port, bad, own);
  const char *reasons[] = {"size", "format", "bad_id", "bad_url", "own_id"};
  const long long want[] = {2, 1, 1, 1, 1};
  for (size_t i = 0; i < 5; i++) {
    char name[128];
    snprintf(name, sizeof name, "softadastra_discovery_datagrams_refused_total{reason=\"%s\"}",
             reasons[i]);
    ck_assert_msg(wait_metric(&n, name, want[i], NULL), "%s not counted", name);
    ck_assert_int_eq(e2e_metric(&n, name, NULL), want[i]);
  }
  json_t *s = sync_status(&n, NULL);
  ck_assert_int_eq(json_array_size(json_object_get(s, "peers")), 0);
  ck_assert_int_eq(
      json_integer_value(json_object_get(json_object_get(s, "discovery"), "datagrams_refused")), 6);
  json_decref(s);
  char *log = e2e_read_file(n.log, NULL);
  ck_assert_ptr_nonnull(strstr(log, "two nodes share one --node-id"));
  ck_assert_ptr_nonnull(strstr(log, "reason=bad_url"));
  free(log);
  /* a valid announcement of a node nobody serves: a discovered peer,
   * unreachable, then forgotten once silent past the timeout */
  len = srv_disc_encode("ghost", "http://127.0.0.1:9", (uint64_t)unix_ms(), NULL, b, sizeof b);
  udp_send(fd, port, b, len);
  long long t0 = e2e_now_ms();
  json_t *g = NULL;
  while (!(g = peer_by_url(&n, "http://127.0.0.1:9", NULL)) && e2e_now_ms() - t0 < E2E_WAIT_MS)
    e2e_nap_ms(10);
  ck_assert_ptr_nonnull(g);
  ck_assert_str_eq(json_string_value(json_object_get(g, "source")), "discovered");
  json_decref(g);
  ck_assert(wait_metric(&n, "softadastra_discovery_peers_forgotten_total", 1, NULL));
  g = peer_by_url(&n, "http://127.0.0.1:9", NULL);
  ck_assert_ptr_null(g);
  e2e_resp h;
  ck_assert_int_eq(e2e_http(&n, "GET", "/healthz", NULL, NULL, 0, &h), 0);
  ck_assert_int_eq(h.status, 200); /* alive through it all */
  e2e_resp_free(&h);
  close(fd);
  stop_node(&n);
  e2e_node_cleanup(&n);
}
END_TEST

/* A TCP listener on 127.0.0.1 standing for a node that would collect the token. */
static int listener(int *port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  ck_assert_int_ge(fd, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  ck_assert_int_eq(listen(fd, 8), 0);
  socklen_t l = sizeof a;
  ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &l), 0);
  *port = ntohs(a.sin_port);
  return fd;
}

START_TEST(test_tokens) {
  const char *tok = "fleet-s3cret";
  int port = e2e_free_port(SOCK_DGRAM);
  e2e_node a, b;
  e2e_node_init(&a);
  e2e_node_init(&b);
  const char *extra[] = {"--auth-token", tok, "--peer-token", tok, NULL};
  start_disc(&a, "tok-a", port, extra);
  start_disc(&b, "tok-b", port, extra);
  long long t0 = e2e_now_ms();
  while (!(has_connected_peer(&a, "tok-b", tok) && has_connected_peer(&b, "tok-a", tok)) &&
         e2e_now_ms() - t0 < E2E_WAIT_MS)
    e2e_nap_ms(20);
  ck_assert(has_connected_peer(&a, "tok-b", tok));
  json_t *s = sync_status(&a, tok);
  ck_assert(json_is_true(json_object_get(json_object_get(s, "discovery"), "signed")));
  json_decref(s);
  put(&a, "k", "v", tok);
  ck_assert(e2e_wait_value(&b, "k", "v", tok, E2E_WAIT_MS) >= 0);
  /* announcements of a listener: unsigned, then signed with another key */
  int lport = 0, lfd = listener(&lport);
  char lurl[64];
  snprintf(lurl, sizeof lurl, "http://127.0.0.1:%d", lport);
  int fd = udp_sender();
  unsigned char d[SRV_DISC_MAX];
  size_t len = srv_disc_encode("thief", lurl, (uint64_t)unix_ms(), NULL, d, sizeof d);
  udp_send(fd, port, d, len);
  len = srv_disc_encode("thief", lurl, (uint64_t)unix_ms(), "guess", d, sizeof d);
  udp_send(fd, port, d, len);
  len = srv_disc_encode("thief", lurl, (uint64_t)unix_ms() - 3600000, tok, d, sizeof d);
  udp_send(fd, port, d, len); /* signed, but an hour old: a replay */
  ck_assert(wait_metric(&a, "softadastra_discovery_datagrams_refused_total{reason=\"unsigned\"}", 1,
                        tok));
  ck_assert(
      wait_metric(&a, "softadastra_discovery_datagrams_refused_total{reason=\"bad_mac\"}", 1, tok));
  ck_assert(
      wait_metric(&a, "softadastra_discovery_datagrams_refused_total{reason=\"stale\"}", 1, tok));
  /* refused before anything else: no peer, and no connection ever came */
  json_t *p = peer_by_url(&a, lurl, tok);
  ck_assert_ptr_null(p);
  ck_assert_int_lt(accept(lfd, NULL, NULL), 0);
  /* signed with the fleet's token: a peer, and the token is sent to it */
  len = srv_disc_encode("trusty", lurl, (uint64_t)unix_ms(), tok, d, sizeof d);
  udp_send(fd, port, d, len);
  int c = -1;
  t0 = e2e_now_ms();
  while ((c = accept(lfd, NULL, NULL)) < 0 && e2e_now_ms() - t0 < E2E_WAIT_MS)
    e2e_nap_ms(10);
  ck_assert_int_ge(c, 0);
  char req[4096] = "";
  size_t got = 0;
  t0 = e2e_now_ms();
  while (!strstr(req, "\r\n\r\n") && got + 1 < sizeof req && e2e_now_ms() - t0 < E2E_WAIT_MS) {
    ssize_t r = recv(c, req + got, sizeof req - 1 - got, MSG_DONTWAIT);
    if (r > 0) {
      got += (size_t)r;
      req[got] = '\0';
    } else {
      e2e_nap_ms(10);
    }
  }
  ck_assert_ptr_nonnull(strstr(req, "GET /v1/sync/ops?"));
  ck_assert_ptr_nonnull(strstr(req, "Authorization: Bearer fleet-s3cret"));
  close(c);
  close(lfd);
  close(fd);
  stop_node(&b);
  stop_node(&a);
  e2e_node_cleanup(&b);
  e2e_node_cleanup(&a);
}
END_TEST

int main(void) {
  Suite *s = suite_create("e2e_discovery");
  TCase *tc = tcase_create("discovery");
  tcase_set_timeout(tc, e2e_slow() ? 1200 : 120);
  tcase_add_test(tc, test_no_udp_without_discovery);
  tcase_add_test(tc, test_three_nodes);
  tcase_add_test(tc, test_bad_datagrams);
  tcase_add_test(tc, test_tokens);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
