/*
 * test_e2e_sync.c -- two real nodes syncing over HTTP (issue 22): the
 * user's session verbatim (PUT on one, GET raw on the other, `peers`,
 * `sync status`), concurrent writes of the same keys converging to the same
 * winner, a write that survives kill -9 and still reaches the peer, auth
 * (the sync routes need the token, the puller sends peer_token), a peer
 * claiming the node's own id, a garbage / stalling / cutting peer (a tiny
 * fake server on 127.0.0.1 in this test), a delete that stays deleted, and
 * a value's content type replicated (the feed, the snapshot, both ways).
 *
 * What it is not: the convergence harness under partitions (tests/cluster)
 * or a benchmark.  Nothing here asserts on timing: every wait is a bounded
 * poll (E2E_WAIT_MS), and the time a write took to reach the peer is only
 * printed.
 *
 * Ports: both nodes name each other at start, so the ports are picked
 * first (bind 127.0.0.1:0, read it, close) and passed as --listen.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <check.h>
#include <curl/curl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "e2e_util.h"

/* ---- helpers ---------------------------------------------------------------- */

/* Starts node `id` on port with the peers given (NULL-terminated ports,
 * 0-terminated) and extra args (NULL-terminated, may be NULL). */
static void start_node(e2e_node *n, const char *id, int port, const int *peers,
                       const char *const *extra) {
  const char *args[32];
  size_t k = 0;
  static char bufs[16][96];
  static int nb = 0;
  char *listen = bufs[nb++ % 16];
  snprintf(listen, 96, "127.0.0.1:%d", port);
  args[k++] = "--node-id";
  args[k++] = id;
  args[k++] = "--listen";
  args[k++] = listen;
  if (peers && peers[0]) {
    args[k++] = "--transport";
    args[k++] = "http";
    for (size_t i = 0; peers[i] && k < 20; i++) {
      char *u = bufs[nb++ % 16];
      snprintf(u, 96, "http://127.0.0.1:%d", peers[i]);
      args[k++] = "--peer";
      args[k++] = u;
    }
  }
  for (size_t i = 0; extra && extra[i] && k < 30; i++)
    args[k++] = extra[i];
  args[k] = NULL;
  int code = -1;
  ck_assert_msg(e2e_node_start(n, args, NULL, &code) == 0, "node %s did not start (exit %d)", id,
                code);
  ck_assert_int_eq(n->port, port);
}

/* Polls until both digests are equal.  Returns true when they became so. */
static bool wait_converged_ms(e2e_node *a, e2e_node *b, int bound) {
  e2e_node *const ns[] = {a, b};
  return e2e_wait_converged(ns, 2, bound) >= 0;
}

static bool wait_converged(e2e_node *a, e2e_node *b) {
  return wait_converged_ms(a, b, E2E_WAIT_MS);
}

/* The peer entry of n's /v1/sync/status whose url ends with :port (a new
 * reference), or NULL. */
static json_t *peer_state(const e2e_node *n, int port, const char *token) {
  json_t *j = NULL;
  if (e2e_req(n, "GET", "/v1/sync/status", NULL, token, &j) != 200) {
    json_decref(j);
    return NULL;
  }
  char suffix[16];
  snprintf(suffix, sizeof suffix, ":%d", port);
  json_t *found = NULL;
  json_t *peers = json_object_get(j, "peers");
  for (size_t i = 0; i < json_array_size(peers); i++) {
    const char *u = json_string_value(json_object_get(json_array_get(peers, i), "url"));
    if (u && strlen(u) >= strlen(suffix) && !strcmp(u + strlen(u) - strlen(suffix), suffix))
      found = json_incref(json_array_get(peers, i));
  }
  json_decref(j);
  return found;
}

/* Polls until n's peer at port is in state (and, when err_part is set, its
 * last_error holds it). */
static bool wait_peer_state(const e2e_node *n, int port, const char *state, const char *err_part,
                            const char *token) {
  long long t0 = e2e_now_ms();
  while (e2e_now_ms() - t0 < E2E_WAIT_MS) {
    json_t *p = peer_state(n, port, token);
    const char *st = json_string_value(json_object_get(p, "state"));
    const char *e = json_string_value(json_object_get(p, "last_error"));
    bool ok = st && !strcmp(st, state) && (!err_part || (e && strstr(e, err_part)));
    json_decref(p);
    if (ok) return true;
    e2e_nap_ms(50);
  }
  return false;
}

static void stop_all(e2e_node *a, e2e_node *b) {
  if (a && a->pid) ck_assert_int_eq(e2e_node_stop(a, SIGTERM), 0);
  if (b && b->pid) ck_assert_int_eq(e2e_node_stop(b, SIGTERM), 0);
  if (a) e2e_node_cleanup(a);
  if (b) e2e_node_cleanup(b);
}

/* ---- the user's session ------------------------------------------------------- */

START_TEST(test_two_node_session) {
  int pa = e2e_free_port(SOCK_STREAM), pb = e2e_free_port(SOCK_STREAM);
  e2e_node a, b;
  e2e_node_init(&a);
  e2e_node_init(&b);
  int peers_a[] = {pb, 0}, peers_b[] = {pa, 0};
  start_node(&a, "node-a", pa, peers_a, NULL);
  start_node(&b, "node-b", pb, peers_b, NULL);

  json_t *put = NULL;
  ck_assert_int_eq(e2e_req(&a, "PUT", "/v1/store/settings/theme", "dark", NULL, &put), 201);
  long long took = e2e_wait_value(&b, "settings/theme", "dark", NULL, E2E_WAIT_MS);
  ck_assert_msg(took >= 0, "the write on node-a never reached node-b");
  fprintf(stderr, "test_two_node_session: node-b read the write after %lld ms\n", took);
  /* node-b counts what sync applied: its sync status and /metrics. */
  json_t *bs = NULL;
  ck_assert_int_eq(e2e_req(&b, "GET", "/v1/sync/status", NULL, NULL, &bs), 200);
  json_t *ctr = json_object_get(bs, "counters");
  static const char *const counters[] = {
      "batches",         "applied",         "skipped",          "stale",
      "refused_drift",   "refused_invalid", "tombstones",       "tombstones_dropped",
      "dropped_records", "dropped_expired", "tombstones_bytes", "dropped_bytes"};
  for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++)
    ck_assert_msg(json_is_integer(json_object_get(ctr, counters[i])), "no counters.%s",
                  counters[i]);
  ck_assert_int_ge(json_integer_value(json_object_get(ctr, "applied")), 1);
  ck_assert_int_ge(json_integer_value(json_object_get(ctr, "batches")), 1);
  ck_assert_int_eq(json_integer_value(json_object_get(ctr, "stale")), 0);
  ck_assert_int_eq(json_integer_value(json_object_get(ctr, "refused_invalid")), 0);
  json_decref(bs);
  ck_assert_int_ge(e2e_metric(&b, "softadastra_sync_applied_total", NULL), 1);
  ck_assert_int_eq(e2e_metric(&b, "softadastra_sync_stale_total", NULL), 0);
  ck_assert_int_eq(e2e_metric(&b, "softadastra_sync_tombstones", NULL), 0);

  /* The pair of the PUT answer is the one stored, shown on both nodes. */
  ck_assert(json_is_integer(json_object_get(put, "hlc")));
  ck_assert_str_eq(json_string_value(json_object_get(put, "origin")), "node-a");
  json_t *ga = NULL, *gb = NULL;
  ck_assert_int_eq(e2e_req(&a, "GET", "/v1/store/settings/theme", NULL, NULL, &ga), 200);
  ck_assert_int_eq(e2e_req(&b, "GET", "/v1/store/settings/theme", NULL, NULL, &gb), 200);
  ck_assert(json_equal(json_object_get(put, "hlc"), json_object_get(ga, "hlc")));
  ck_assert(json_equal(json_object_get(put, "hlc"), json_object_get(gb, "hlc")));
  ck_assert_str_eq(json_string_value(json_object_get(gb, "origin")), "node-a");
  json_decref(put);
  json_decref(ga);
  json_decref(gb);

  /* softadastra --url A peers: node-b, connected, lag 0. */
  ck_assert(wait_peer_state(&a, pb, "connected", NULL, NULL));
  long long t0 = e2e_now_ms();
  bool shown = false;
  while (!shown && e2e_now_ms() - t0 < E2E_WAIT_MS) {
    const char *args[] = {"peers", NULL};
    char *out = NULL, *err = NULL;
    ck_assert_int_eq(e2e_cli(&a, args, NULL, &out, &err), 0);
    char line[256];
    snprintf(line, sizeof line, "http://127.0.0.1:%d", pb);
    /* NODE URL STATE LAG ... */
    char *l = strstr(out, "node-b");
    shown = l && strstr(l, line) && strstr(l, "connected");
    if (shown) {
      char id[64], url[128], state[32];
      long long lag = -1;
      ck_assert_int_eq(sscanf(l, "%63s %127s %31s %lld", id, url, state, &lag), 4);
      shown = lag == 0;
    }
    free(out);
    free(err);
    if (!shown) e2e_nap_ms(50);
  }
  ck_assert_msg(shown, "`peers` never showed node-b connected with lag 0");
  const char *js[] = {"--json", "peers", NULL};
  char *out = NULL, *err = NULL;
  ck_assert_int_eq(e2e_cli(&a, js, NULL, &out, &err), 0);
  json_t *pj = json_loads(out, 0, NULL);
  ck_assert_ptr_nonnull(pj);
  ck_assert_str_eq(json_string_value(
                       json_object_get(json_array_get(json_object_get(pj, "peers"), 0), "node_id")),
                   "node-b");
  json_decref(pj);
  free(out);
  free(err);

  /* softadastra --url A sync status: the outbox and the per-peer cursor. */
  const char *ss[] = {"sync", "status", NULL};
  ck_assert_int_eq(e2e_cli(&a, ss, NULL, &out, &err), 0);
  ck_assert_ptr_nonnull(strstr(out, "outbox"));
  ck_assert_ptr_nonnull(strstr(out, "node-b"));
  ck_assert_ptr_nonnull(strstr(out, "cursor"));
  free(out);
  free(err);
  const char *sd[] = {"sync", "digest", NULL};
  ck_assert_int_eq(e2e_cli(&b, sd, NULL, &out, &err), 0);
  ck_assert_ptr_nonnull(strstr(out, "digest"));
  free(out);
  free(err);

  /* Every sync answer names its node. */
  e2e_resp r;
  ck_assert_int_eq(e2e_http(&b, "GET", "/v1/sync/ops?since=0&limit=5", NULL, NULL, 0, &r), 0);
  ck_assert_int_eq(r.status, 200);
  char *h = e2e_header(&r, "X-Softadastra-Node");
  ck_assert_ptr_nonnull(h);
  ck_assert_str_eq(h, "node-b");
  free(h);
  e2e_resp_free(&r);
  /* Bounded inputs. */
  ck_assert_int_eq(e2e_req(&a, "GET", "/v1/sync/ops?limit=10001", NULL, NULL, NULL), 400);
  ck_assert_int_eq(e2e_req(&a, "GET", "/v1/sync/ops?wait=30001", NULL, NULL, NULL), 400);
  ck_assert_int_eq(e2e_req(&a, "GET", "/v1/sync/ops?since=x", NULL, NULL, NULL), 400);
  ck_assert_int_eq(e2e_req(&a, "GET", "/v1/sync/ops?node=a%20b", NULL, NULL, NULL), 400);
  json_t *e = NULL;
  ck_assert_int_eq(e2e_req(&a, "GET", "/v1/sync/ops?node=node-a", NULL, NULL, &e), 400);
  ck_assert_str_eq(json_string_value(json_object_get(json_object_get(e, "error"), "code")),
                   "same_node_id");
  json_decref(e);
  /* own= is 0 or 1: anything else is a 400 that names it, and the request
   * changes nothing (the acked it carries is not recorded). */
  static const char *const bad_own[] = {"2", "-1", "x", "", "1x"};
  for (size_t i = 0; i < sizeof bad_own / sizeof bad_own[0]; i++) {
    char path[160];
    snprintf(path, sizeof path, "/v1/sync/ops?since=0&node=node-b&acked=999999&own=%s", bad_own[i]);
    json_t *oe = NULL;
    ck_assert_msg(e2e_req(&a, "GET", path, NULL, NULL, &oe) == 400, "own=%s was not a 400",
                  bad_own[i]);
    json_t *oerr = json_object_get(oe, "error");
    ck_assert_str_eq(json_string_value(json_object_get(oerr, "code")), "bad_request");
    const char *msg = json_string_value(json_object_get(oerr, "message"));
    ck_assert_msg(msg && !strncmp(msg, "own ", 4), "own=%s: the error does not name own: %s",
                  bad_own[i], msg ? msg : "(none)");
    json_decref(oe);
  }
  /* acked past this node's last LSN is no position it served: a 400 that
   * says so, and nothing recorded (it would acknowledge outbox work and
   * drop tombstones the peer never had). */
  json_t *ae = NULL;
  ck_assert_int_eq(
      e2e_req(&a, "GET", "/v1/sync/ops?since=0&node=node-b&acked=999999", NULL, NULL, &ae), 400);
  json_t *aerr = json_object_get(ae, "error");
  ck_assert_str_eq(json_string_value(json_object_get(aerr, "code")), "invalid_argument");
  const char *amsg = json_string_value(json_object_get(aerr, "message"));
  ck_assert_msg(amsg && strstr(amsg, "999999") && strstr(amsg, "past this node's last LSN"),
                "the error does not name the position: %s", amsg ? amsg : "(none)");
  json_decref(ae);
  json_t *pbs = peer_state(&a, pb, NULL);
  ck_assert_ptr_nonnull(pbs);
  ck_assert_int_lt(json_integer_value(json_object_get(pbs, "acked")), 999999);
  json_decref(pbs);

  /* /metrics has the per-peer lines. */
  e2e_resp m;
  ck_assert_int_eq(e2e_http(&a, "GET", "/metrics", NULL, NULL, 0, &m), 0);
  ck_assert_ptr_nonnull(strstr(m.body, "softadastra_sync_peer_connected{"));
  ck_assert_ptr_nonnull(strstr(m.body, "node_id=\"node-b\"} 1"));
  e2e_resp_free(&m);
  stop_all(&a, &b);
}
END_TEST

/* A long-poll waits for the change (without holding a worker: more polls
 * than worker threads wait at once and other requests are answered
 * meanwhile) and answers once the change is there. */
typedef struct poll_arg {
  const e2e_node *n;
  long long since;
  const char *node; /* the puller (NULL: node-z) */
  long status;
  size_t items;
} poll_arg;

static void *poll_run(void *p) {
  poll_arg *a = p;
  char path[128];
  snprintf(path, sizeof path, "/v1/sync/ops?since=%lld&wait=20000&node=%s", a->since,
           a->node ? a->node : "node-z");
  json_t *j = NULL;
  a->status = e2e_req(a->n, "GET", path, NULL, NULL, &j);
  a->items = json_array_size(json_object_get(j, "items"));
  json_decref(j);
  return NULL;
}

START_TEST(test_ops_long_poll) {
  int pa = e2e_free_port(SOCK_STREAM);
  e2e_node a;
  e2e_node_init(&a);
  const char *extra[] = {"--threads", "1", NULL};
  start_node(&a, "node-a", pa, NULL, extra);
  json_t *j = NULL;
  ck_assert_int_eq(e2e_req(&a, "GET", "/v1/sync/ops?since=0&node=node-z", NULL, NULL, &j), 200);
  long long since = json_integer_value(json_object_get(j, "next_since"));
  json_decref(j);
  poll_arg args[6];
  pthread_t th[6];
  for (int i = 0; i < 6; i++) {
    args[i] = (poll_arg){.n = &a, .since = since};
    ck_assert_int_eq(pthread_create(&th[i], NULL, poll_run, &args[i]), 0);
  }
  e2e_nap_ms(300);
  /* One worker thread, six polls waiting: the node still answers. */
  ck_assert_int_eq(e2e_req(&a, "GET", "/v1/status", NULL, NULL, NULL), 200);
  ck_assert_int_eq(e2e_req(&a, "PUT", "/v1/store/lp/key", "v", NULL, NULL), 201);
  for (int i = 0; i < 6; i++) {
    pthread_join(th[i], NULL);
    ck_assert_int_eq(args[i].status, 200);
    ck_assert_uint_eq(args[i].items, 1);
  }
  /* A poll with nothing to say ends with an empty page when the wait runs out. */
  char path[128];
  snprintf(path, sizeof path, "/v1/sync/ops?since=%lld&wait=300&node=node-z", since + 1000);
  ck_assert_int_eq(e2e_req(&a, "GET", path, NULL, NULL, &j), 200);
  ck_assert_uint_eq(json_array_size(json_object_get(j, "items")), 0);
  json_decref(j);
  stop_all(&a, NULL);
}
END_TEST

/* ---- convergence ------------------------------------------------------------- */

typedef struct writer_arg {
  const e2e_node *n;
  const char *tag;
  int rounds;
} writer_arg;

static void *writer_run(void *p) {
  writer_arg *w = p;
  for (int r = 0; r < w->rounds; r++)
    for (int k = 0; k < 10; k++) {
      char path[64], val[64];
      snprintf(path, sizeof path, "/v1/store/c/k%d", k);
      snprintf(val, sizeof val, "%s-%d", w->tag, r);
      if ((r + k) % 7 == 3)
        e2e_req(w->n, "DELETE", path, NULL, NULL, NULL);
      else
        e2e_req(w->n, "PUT", path, val, NULL, NULL);
    }
  return NULL;
}

START_TEST(test_concurrent_writes_converge) {
  int pa = e2e_free_port(SOCK_STREAM), pb = e2e_free_port(SOCK_STREAM);
  e2e_node a, b;
  e2e_node_init(&a);
  e2e_node_init(&b);
  int peers_a[] = {pb, 0}, peers_b[] = {pa, 0};
  start_node(&a, "node-a", pa, peers_a, NULL);
  start_node(&b, "node-b", pb, peers_b, NULL);
  writer_arg wa = {&a, "a", 20}, wb = {&b, "b", 20};
  pthread_t ta, tb;
  ck_assert_int_eq(pthread_create(&ta, NULL, writer_run, &wa), 0);
  ck_assert_int_eq(pthread_create(&tb, NULL, writer_run, &wb), 0);
  pthread_join(ta, NULL);
  pthread_join(tb, NULL);
  ck_assert_msg(wait_converged(&a, &b), "the digests of node-a and node-b never became equal");
  /* The same winner on both: value, hlc and origin. */
  for (int k = 0; k < 10; k++) {
    char path[64];
    snprintf(path, sizeof path, "/v1/store/c/k%d", k);
    json_t *ja = NULL, *jb = NULL;
    long sa = e2e_req(&a, "GET", path, NULL, NULL, &ja);
    long sb = e2e_req(&b, "GET", path, NULL, NULL, &jb);
    ck_assert_int_eq(sa, sb);
    if (sa == 200) {
      ck_assert(json_equal(json_object_get(ja, "value"), json_object_get(jb, "value")));
      ck_assert(json_equal(json_object_get(ja, "hlc"), json_object_get(jb, "hlc")));
      ck_assert(json_equal(json_object_get(ja, "origin"), json_object_get(jb, "origin")));
    }
    json_decref(ja);
    json_decref(jb);
  }
  stop_all(&a, &b);
}
END_TEST

/* ---- kill -9 ------------------------------------------------------------------- */

START_TEST(test_kill9_write_reaches_peer) {
  int pa = e2e_free_port(SOCK_STREAM), pb = e2e_free_port(SOCK_STREAM);
  e2e_node a, b;
  e2e_node_init(&a);
  e2e_node_init(&b);
  int peers_a[] = {pb, 0}, peers_b[] = {pa, 0};
  start_node(&a, "node-a", pa, peers_a, NULL);
  /* Written while the peer is not there yet, then killed at once. */
  ck_assert_int_eq(e2e_req(&a, "PUT", "/v1/store/k9/one", "1", NULL, NULL), 201);
  ck_assert_int_eq(e2e_node_stop(&a, SIGKILL), 128 + SIGKILL);
  start_node(&a, "node-a", pa, peers_a, NULL);
  start_node(&b, "node-b", pb, peers_b, NULL);
  ck_assert(e2e_wait_value(&b, "k9/one", "1", NULL, E2E_WAIT_MS) >= 0);
  /* A write on B, B killed right after its answer: restarted, it still
   * sends it, and nothing is applied twice (the digests agree). */
  ck_assert_int_eq(e2e_req(&b, "PUT", "/v1/store/k9/two", "2", NULL, NULL), 201);
  ck_assert_int_eq(e2e_node_stop(&b, SIGKILL), 128 + SIGKILL);
  start_node(&b, "node-b", pb, peers_b, NULL);
  ck_assert(e2e_wait_value(&a, "k9/two", "2", NULL, E2E_WAIT_MS) >= 0);
  /* The puller of A is killed too, mid-stream: its cursor is where its
   * last applied batch left it. */
  for (int i = 0; i < 50; i++) {
    char path[64];
    snprintf(path, sizeof path, "/v1/store/k9/m%d", i);
    ck_assert_int_eq(e2e_req(&b, "PUT", path, "x", NULL, NULL), 201);
  }
  ck_assert_int_eq(e2e_node_stop(&a, SIGKILL), 128 + SIGKILL);
  start_node(&a, "node-a", pa, peers_a, NULL);
  ck_assert(e2e_wait_value(&a, "k9/m49", "x", NULL, E2E_WAIT_MS) >= 0);
  ck_assert(wait_converged(&a, &b));
  stop_all(&a, &b);
}
END_TEST

/* ---- linger ------------------------------------------------------------------------- */

/* sync_pull_linger_ms: a puller pauses after a partial page, so a stream
 * of writes reaches it in a few pages (durable applies), not one per
 * write.  node-b lingers 1 s; 60 writes 5 ms apart on node-a would wake
 * an eager puller's long-poll every store commit (with
 * --sync-pull-linger-ms 0 the check fails: 30-31 pages in 0.4 s here).
 * At most one page per linger (and the one in flight) may land. */
START_TEST(test_pull_linger_gathers_pages) {
  int pa = e2e_free_port(SOCK_STREAM), pb = e2e_free_port(SOCK_STREAM);
  e2e_node a, b;
  e2e_node_init(&a);
  e2e_node_init(&b);
  int peers_b[] = {pa, 0};
  const char *linger[] = {"--sync-pull-linger-ms", "1000", NULL};
  start_node(&a, "node-a", pa, NULL, NULL);
  start_node(&b, "node-b", pb, peers_b, linger);
  ck_assert_int_eq(e2e_req(&a, "PUT", "/v1/store/lg/first", "0", NULL, NULL), 201);
  ck_assert(e2e_wait_value(&b, "lg/first", "0", NULL, E2E_WAIT_MS) >= 0);
  e2e_nap_ms(1100); /* past the linger of that page: node-b long-polls again */
  long long b0 = e2e_metric(&b, "softadastra_sync_batches_total", NULL);
  ck_assert_int_ge(b0, 1);
  long long t0 = e2e_now_ms();
  for (int i = 0; i < 60; i++) {
    char path[64];
    snprintf(path, sizeof path, "/v1/store/lg/k%d", i);
    ck_assert_int_eq(e2e_req(&a, "PUT", path, "v", NULL, NULL), 201);
    e2e_nap_ms(5); /* apart: an eager puller takes each in a page of its own */
  }
  long long t1 = e2e_now_ms();
  ck_assert(e2e_wait_value(&b, "lg/k59", "v", NULL, E2E_WAIT_MS) >= 0);
  long long pages = e2e_metric(&b, "softadastra_sync_batches_total", NULL) - b0;
  long long bound = 2 + (t1 - t0) / 1000;
  ck_assert_msg(pages >= 1 && pages <= bound,
                "60 writes in %lld ms reached node-b in %lld pages (at most %lld with a 1 s "
                "linger)",
                t1 - t0, pages, bound);
  ck_assert(wait_converged(&a, &b));
  stop_all(&a, &b);
}
END_TEST

/* ---- auth --------------------------------------------------------------------------- */

START_TEST(test_auth_peer_token) {
  int pa = e2e_free_port(SOCK_STREAM), pb = e2e_free_port(SOCK_STREAM),
      pc = e2e_free_port(SOCK_STREAM);
  e2e_node a, b, c;
  e2e_node_init(&a);
  e2e_node_init(&b);
  e2e_node_init(&c);
  int peers_a[] = {pb, 0}, peers_b[] = {pa, 0}, peers_c[] = {pa, 0};
  const char *good[] = {"--auth-token", "s3cret", "--peer-token", "s3cret", NULL};
  const char *bad[] = {"--peer-token", "wrong", NULL};
  start_node(&a, "node-a", pa, peers_a, good);
  start_node(&b, "node-b", pb, peers_b, good);
  start_node(&c, "node-c", pc, peers_c, bad);
  /* Every sync route needs the token. */
  const char *routes[] = {"/v1/sync/ops?since=0", "/v1/sync/snapshot", "/v1/sync/digest",
                          "/v1/sync/status"};
  for (size_t i = 0; i < 4; i++) {
    ck_assert_int_eq(e2e_req(&a, "GET", routes[i], NULL, NULL, NULL), 401);
    ck_assert_int_eq(e2e_req(&a, "GET", routes[i], NULL, "s3cret", NULL), 200);
  }
  ck_assert_int_eq(e2e_req(&a, "PUT", "/v1/store/auth/k", "v", "s3cret", NULL), 201);
  char path[64];
  snprintf(path, sizeof path, "/v1/store/auth/k?raw=1");
  long long t0 = e2e_now_ms();
  long st = 0;
  while (e2e_now_ms() - t0 < E2E_WAIT_MS && st != 200) {
    st = e2e_req(&b, "GET", path, NULL, "s3cret", NULL);
    if (st != 200) e2e_nap_ms(20);
  }
  ck_assert_int_eq(st, 200);
  /* The node with the wrong peer_token is refused, says so, and stays up. */
  ck_assert(wait_peer_state(&c, pa, "refusing", "token", NULL));
  ck_assert_int_eq(e2e_get_raw(&c, "auth/k", NULL, (char[8]){0}, 8), 404);
  stop_all(&a, &b);
  stop_all(&c, NULL);
}
END_TEST

/* ---- a peer that claims our id ------------------------------------------------------- */

START_TEST(test_peer_with_own_id_refused) {
  int pa = e2e_free_port(SOCK_STREAM), pa2 = e2e_free_port(SOCK_STREAM);
  e2e_node a, a2;
  e2e_node_init(&a);
  e2e_node_init(&a2);
  int peers_a[] = {pa2, 0}, self[] = {pa, 0};
  (void)self;
  start_node(&a2, "node-a", pa2, NULL, NULL); /* another node with the same id */
  start_node(&a, "node-a", pa, peers_a, NULL);
  ck_assert_int_eq(e2e_req(&a2, "PUT", "/v1/store/own/k", "v", NULL, NULL), 201);
  ck_assert(wait_peer_state(&a, pa2, "refusing", "node-a", NULL));
  ck_assert_int_eq(e2e_get_raw(&a, "own/k", NULL, (char[8]){0}, 8), 404);
  stop_all(&a, &a2);
  /* A node whose peer URL points back at itself. */
  e2e_node s;
  e2e_node_init(&s);
  int ps = e2e_free_port(SOCK_STREAM);
  int me[] = {ps, 0};
  start_node(&s, "node-s", ps, me, NULL);
  ck_assert(wait_peer_state(&s, ps, "refusing", "node-s", NULL));
  stop_all(&s, NULL);
}
END_TEST

/* ---- a hostile peer ----------------------------------------------------------------- */

typedef struct fake_peer fake_peer;

/* A scripted answer: writes the bytes to send for request req into out
 * (at most cap) and returns their length; sets *stall to hold the
 * connection open after them until the fake stops. */
typedef size_t (*fake_answer_fn)(fake_peer *f, const char *req, char *out, size_t cap, bool *stall);

struct fake_peer {
  int fd;
  int port;
  atomic_bool stop;
  atomic_int served;
  pthread_t th;
  const char *impostor;   /* set: every answer is a good page from a node with this id */
  fake_answer_fn answer;  /* set: it answers, in place of the kinds of trouble */
  const char *epoch;      /* for answer: the X-Softadastra-Epoch of its pages (NULL: none) */
  const char *gone_epoch; /* for answer: set, pulls past the first page get a 410 "epoch"
                             with this X-Softadastra-Epoch */
  atomic_int with_epoch;  /* requests whose query named an epoch (epoch=) */
};

/* Answers each connection in turn with one kind of trouble: garbage JSON,
 * a malformed batch, an answer cut mid-body, a stall, a wrong status. */
static void *fake_run(void *p) {
  fake_peer *f = p;
  int turn = 0;
  while (!atomic_load(&f->stop)) {
    struct pollfd pf = {.fd = f->fd, .events = POLLIN};
    if (poll(&pf, 1, 100) <= 0) continue;
    int c = accept(f->fd, NULL, NULL);
    if (c < 0) continue;
    char req[4096];
    struct pollfd pc = {.fd = c, .events = POLLIN};
    ssize_t got = 0;
    if (poll(&pc, 1, 1000) > 0) got = recv(c, req, sizeof req - 1, 0);
    req[got > 0 ? got : 0] = '\0';
    if (strstr(req, "epoch=")) atomic_fetch_add(&f->with_epoch, 1);
    static const struct {
      int status; /* 0: raw bytes, no HTTP; -1: stall */
      const char *body;
      int declared; /* Content-Length said (-1: the body's) */
    } answers[] = {
        {200, "not json!", -1},
        {200,
         "{\"node_id\":\"fake\",\"items\":[{\"seq\":1,\"op\":\"put\",\"key\":\"x\",\"hlc\":\"no\","
         "\"origin\":\"fake\",\"origin_lsn\":1,\"value_b64\":\"eA==\"}],\"next_since\":1,"
         "\"last_lsn\":1,\"more\":false}",
         -1},
        {200, "{\"node_id\":\"fake\",\"items\":[", 1000}, /* closed mid-answer */
        {-1, NULL, 0},
        {503, "", -1},
        {0, "\x01\x02garbage\r\n\r\n", 0},
    };
    int t = turn++ % 6;
    if (f->answer) {
      char msg[2048];
      bool stall = false;
      size_t n = f->answer(f, req, msg, sizeof msg, &stall);
      (void)!send(c, msg, n, MSG_NOSIGNAL);
      while (stall && !atomic_load(&f->stop))
        e2e_nap_ms(20);
    } else if (f->impostor) {
      char body[512], msg[1024];
      snprintf(body, sizeof body,
               "{\"node_id\":\"%s\",\"items\":[{\"seq\":1,\"op\":\"put\",\"key\":\"imp/k\","
               "\"value_b64\":\"eA==\",\"hlc\":65536,\"origin\":\"%s\",\"origin_lsn\":1}],"
               "\"count\":1,\"next_since\":1,\"last_lsn\":1,\"more\":false}",
               f->impostor, f->impostor);
      int n =
          snprintf(msg, sizeof msg,
                   "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                   "X-Softadastra-Node: %s\r\n\r\n%s",
                   strlen(body), f->impostor, body);
      (void)!send(c, msg, (size_t)n, MSG_NOSIGNAL);
    } else if (answers[t].status == -1) {
      for (int i = 0; i < 20 && !atomic_load(&f->stop); i++)
        e2e_nap_ms(100);
    } else if (answers[t].status == 0) {
      (void)!send(c, answers[t].body, strlen(answers[t].body), MSG_NOSIGNAL);
    } else {
      char msg[2048];
      size_t bl = strlen(answers[t].body);
      int n = snprintf(msg, sizeof msg,
                       "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                       "X-Softadastra-Node: fake\r\n\r\n%s",
                       answers[t].status, answers[t].declared >= 0 ? answers[t].declared : (int)bl,
                       answers[t].body);
      (void)!send(c, msg, (size_t)n, MSG_NOSIGNAL);
    }
    atomic_fetch_add(&f->served, 1);
    close(c);
  }
  return NULL;
}

/* Starts the fake on a port of its own; f is zeroed but for impostor,
 * answer and epoch. */
static void fake_start(fake_peer *f) {
  f->fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ck_assert_int_eq(bind(f->fd, (struct sockaddr *)&sa, sizeof sa), 0);
  ck_assert_int_eq(listen(f->fd, 16), 0);
  socklen_t sl = sizeof sa;
  getsockname(f->fd, (struct sockaddr *)&sa, &sl);
  f->port = ntohs(sa.sin_port);
  ck_assert_int_eq(pthread_create(&f->th, NULL, fake_run, f), 0);
}

static void fake_stop(fake_peer *f) {
  atomic_store(&f->stop, true);
  pthread_join(f->th, NULL);
  close(f->fd);
}

/* Starts the fake f and node-a pulling from it alone. */
static void fake_and_node(e2e_node *a, fake_peer *f) {
  fake_start(f);
  e2e_node_init(a);
  int peers[] = {f->port, 0};
  start_node(a, "node-a", e2e_free_port(SOCK_STREAM), peers, NULL);
}

/* A peer that answers well-formed pages but claims this node's own id (the
 * source cannot tell: it never sees the puller's id here) is refused by the
 * puller itself, and nothing it sends is applied. */
START_TEST(test_impostor_with_own_id_refused) {
  fake_peer f = {.impostor = "node-a"};
  e2e_node a;
  fake_and_node(&a, &f);
  ck_assert(wait_peer_state(&a, f.port, "refusing", "share one --node-id", NULL));
  long long t0 = e2e_now_ms();
  while (atomic_load(&f.served) < 3 && e2e_now_ms() - t0 < E2E_WAIT_MS)
    e2e_nap_ms(20);
  ck_assert_int_ge(atomic_load(&f.served), 3); /* retried, refused each time */
  ck_assert_int_eq(e2e_get_raw(&a, "imp/k", NULL, (char[8]){0}, 8), 404);
  stop_all(&a, NULL);
  fake_stop(&f);
}
END_TEST

START_TEST(test_garbage_peer_costs_retries) {
  fake_peer f = {0};
  f.fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int one = 1;
  setsockopt(f.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  ck_assert_int_eq(bind(f.fd, (struct sockaddr *)&sa, sizeof sa), 0);
  ck_assert_int_eq(listen(f.fd, 16), 0);
  socklen_t sl = sizeof sa;
  getsockname(f.fd, (struct sockaddr *)&sa, &sl);
  f.port = ntohs(sa.sin_port);
  ck_assert_int_eq(pthread_create(&f.th, NULL, fake_run, &f), 0);

  int pa = e2e_free_port(SOCK_STREAM);
  e2e_node a;
  e2e_node_init(&a);
  int peers[] = {f.port, 0};
  start_node(&a, "node-a", pa, peers, NULL);
  long long t0 = e2e_now_ms();
  while (atomic_load(&f.served) < 12 && e2e_now_ms() - t0 < E2E_WAIT_MS * 2)
    e2e_nap_ms(50);
  ck_assert_int_ge(atomic_load(&f.served), 12); /* retried, every kind of trouble seen twice */
  ck_assert_int_eq(e2e_req(&a, "GET", "/healthz", NULL, NULL, NULL), 200);
  json_t *p = peer_state(&a, f.port, NULL);
  ck_assert_ptr_nonnull(p);
  const char *st = json_string_value(json_object_get(p, "state"));
  ck_assert(st && (!strcmp(st, "refusing") || !strcmp(st, "unreachable")));
  ck_assert_int_eq(json_integer_value(json_object_get(p, "ops_received")), 0);
  json_decref(p);
  ck_assert_int_eq(e2e_req(&a, "GET", "/v1/store/x", NULL, NULL, NULL), 404);
  ck_assert_int_eq(e2e_node_stop(&a, SIGTERM), 0); /* stops while a pull stalls */
  atomic_store(&f.stop, true);
  pthread_join(f.th, NULL);
  close(f.fd);
  char *log = e2e_read_file(a.log, NULL);
  ck_assert_ptr_nonnull(strstr(log, "event=sync_peer"));
  free(log);
  e2e_node_cleanup(&a);
}
END_TEST

/* A peer whose feed is gone (410) and whose snapshot stalls after its
 * first bytes. */
static size_t gone_then_stall(fake_peer *f, const char *req, char *out, size_t cap, bool *stall) {
  (void)f;
  if (!strncmp(req, "GET /v1/sync/snapshot", 21)) {
    *stall = true;
    return (size_t)snprintf(out, cap,
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                            "Content-Length: 100000\r\nX-Softadastra-Node: fake\r\n\r\n"
                            "{\"node_id\":\"fake\",");
  }
  static const char gone[] = "{\"error\":{\"code\":\"gone\",\"message\":\"compacted\"},"
                             "\"oldest_since\":5}";
  return (size_t)snprintf(out, cap,
                          "HTTP/1.1 410 Gone\r\nContent-Type: application/json\r\n"
                          "Content-Length: %zu\r\nX-Softadastra-Node: fake\r\n\r\n%s",
                          strlen(gone), gone);
}

/* The node is catching up from that snapshot when it is told to stop: it
 * stops (the snapshot's transfer watches for the stop, as a pull does)
 * instead of waiting out the 60 s a snapshot may go without a byte. */
START_TEST(test_stop_during_stalled_snapshot) {
  fake_peer f = {.answer = gone_then_stall};
  e2e_node a;
  fake_and_node(&a, &f);
  ck_assert(wait_peer_state(&a, f.port, "catching_up", NULL, NULL));
  ck_assert_int_eq(e2e_node_stop(&a, SIGTERM), 0);
  fake_stop(&f);
  e2e_node_cleanup(&a);
}
END_TEST

/* Node node-f with one key, ep/k = "x" at its LSN 1: the page from 0 holds
 * it, a page from 1 is empty (after a pause, as a long-poll would).  Its
 * pages say f->epoch as X-Softadastra-Epoch; with f->gone_epoch, a pull
 * from 1 gets a 410 "epoch" saying that one instead. */
static size_t epoch_pages(fake_peer *f, const char *req, char *out, size_t cap, bool *stall) {
  (void)stall;
  char ehdr[128] = "";
  bool from0 = strstr(req, "since=0&") != NULL;
  const char *body;
  int status = 200;
  if (from0) {
    body = "{\"node_id\":\"node-f\",\"items\":[{\"seq\":1,\"op\":\"put\",\"key\":\"ep/k\","
           "\"value_b64\":\"eA==\",\"hlc\":65536,\"origin\":\"node-f\",\"origin_lsn\":1}],"
           "\"count\":1,\"next_since\":1,\"last_lsn\":1,\"more\":false}";
  } else if (f->gone_epoch) {
    status = 410;
    body = "{\"error\":{\"code\":\"gone\",\"reason\":\"epoch\",\"message\":\"restored\"},"
           "\"oldest_since\":0}";
  } else {
    e2e_nap_ms(200);
    body = "{\"node_id\":\"node-f\",\"items\":[],\"count\":0,\"next_since\":1,\"last_lsn\":1,"
           "\"more\":false}";
  }
  const char *ev = from0 || !f->gone_epoch ? f->epoch : f->gone_epoch;
  if (ev) snprintf(ehdr, sizeof ehdr, "X-Softadastra-Epoch: %s\r\n", ev);
  return (size_t)snprintf(out, cap,
                          "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                          "Content-Length: %zu\r\nX-Softadastra-Node: node-f\r\n%s\r\n%s",
                          status, strlen(body), ehdr, body);
}

/* Starts node-a pulling from a fake f (epoch_pages) and waits until it
 * applied the fake's key. */
static void epoch_start(e2e_node *a, fake_peer *f) {
  fake_and_node(a, f);
  ck_assert(e2e_wait_value(a, "ep/k", "x", NULL, E2E_WAIT_MS) >= 0);
}

static void epoch_stop(e2e_node *a, fake_peer *f) {
  stop_all(a, NULL);
  fake_stop(f);
}

/* Polls until a pull to f named an epoch.  True when one did. */
static bool wait_epoch_named(fake_peer *f) {
  long long t0 = e2e_now_ms();
  while (atomic_load(&f->with_epoch) == 0 && e2e_now_ms() - t0 < E2E_WAIT_MS)
    e2e_nap_ms(20);
  return atomic_load(&f->with_epoch) > 0;
}

/* X-Softadastra-Epoch is exactly 16 hex digits, or it is not there: a page
 * with a malformed one is applied (the cursor moves to its next_since) but
 * the epoch is not adopted, so no later pull names one; a well-formed one
 * is adopted, and the pulls name it. */
START_TEST(test_malformed_epoch_header_ignored) {
  static const char *const bad[] = {"0123", "0123456789abcdef0", "0123456789abcdeg",
                                    "-123456789abcdef", "0x23456789abcdef"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    fake_peer f = {.answer = epoch_pages, .epoch = bad[i]};
    e2e_node a;
    epoch_start(&a, &f);
    int seen = atomic_load(&f.served);
    long long t0 = e2e_now_ms();
    while (atomic_load(&f.served) < seen + 3 && e2e_now_ms() - t0 < E2E_WAIT_MS)
      e2e_nap_ms(20);
    ck_assert_int_ge(atomic_load(&f.served), seen + 3); /* pulled on after the page */
    ck_assert_msg(atomic_load(&f.with_epoch) == 0, "epoch '%s' was adopted", bad[i]);
    json_t *p = peer_state(&a, f.port, NULL);
    ck_assert_ptr_nonnull(p);
    ck_assert_str_eq(json_string_value(json_object_get(p, "state")), "connected");
    ck_assert_int_eq(json_integer_value(json_object_get(p, "cursor")), 1);
    json_decref(p);
    epoch_stop(&a, &f);
  }
  fake_peer f = {.answer = epoch_pages, .epoch = "00000000000000aB"};
  e2e_node a;
  epoch_start(&a, &f);
  ck_assert_msg(wait_epoch_named(&f), "a well-formed epoch was not adopted");
  epoch_stop(&a, &f);
}
END_TEST

/* A 410 "epoch" whose X-Softadastra-Epoch is malformed is refused: the
 * cursor stays where it was (not back to 0), the answer counts as
 * invalid, and nothing crashes; a well-formed one sends the cursor back to
 * 0 and the pulls name the new epoch. */
START_TEST(test_gone_epoch_with_malformed_header_refused) {
  static const char *const bad[] = {"", "0123", "0123456789abcdef0", "0123456789abcdeg"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    fake_peer f = {.answer = epoch_pages, .gone_epoch = bad[i]};
    e2e_node a;
    epoch_start(&a, &f);
    ck_assert_msg(wait_peer_state(&a, f.port, "refusing",
                                  "410 epoch without a valid X-Softadastra-Epoch", NULL),
                  "410 epoch with X-Softadastra-Epoch '%s' was not refused", bad[i]);
    json_t *p = peer_state(&a, f.port, NULL);
    ck_assert_int_eq(json_integer_value(json_object_get(p, "cursor")), 1);
    ck_assert_int_ge(json_integer_value(json_object_get(p, "refused_invalid")), 1);
    json_decref(p);
    ck_assert_int_eq(atomic_load(&f.with_epoch), 0);
    ck_assert_int_eq(e2e_req(&a, "GET", "/healthz", NULL, NULL, NULL), 200);
    epoch_stop(&a, &f);
  }
  fake_peer f = {.answer = epoch_pages, .gone_epoch = "00000000000000ab"};
  e2e_node a;
  epoch_start(&a, &f);
  ck_assert_msg(wait_epoch_named(&f), "a well-formed 410 epoch was not followed");
  char *log = e2e_read_file(a.log, NULL);
  ck_assert_ptr_nonnull(strstr(log, "event=sync_peer_new_epoch"));
  free(log);
  epoch_stop(&a, &f);
}
END_TEST

/* ---- deletes ---------------------------------------------------------------------- */

START_TEST(test_delete_stays_deleted) {
  int pa = e2e_free_port(SOCK_STREAM), pb = e2e_free_port(SOCK_STREAM);
  e2e_node a, b;
  e2e_node_init(&a);
  e2e_node_init(&b);
  int peers_a[] = {pb, 0}, peers_b[] = {pa, 0};
  start_node(&a, "node-a", pa, peers_a, NULL);
  start_node(&b, "node-b", pb, peers_b, NULL);
  ck_assert_int_eq(e2e_req(&a, "PUT", "/v1/store/del/k", "v1", NULL, NULL), 201);
  ck_assert(e2e_wait_value(&b, "del/k", "v1", NULL, E2E_WAIT_MS) >= 0);
  ck_assert_int_eq(e2e_req(&b, "DELETE", "/v1/store/del/k", NULL, NULL, NULL), 200);
  ck_assert(e2e_wait_value(&a, "del/k", NULL, NULL, E2E_WAIT_MS) >= 0);
  ck_assert(wait_converged(&a, &b));
  /* Restarts do not bring it back. */
  ck_assert_int_eq(e2e_node_stop(&a, SIGTERM), 0);
  ck_assert_int_eq(e2e_node_stop(&b, SIGKILL), 128 + SIGKILL);
  start_node(&a, "node-a", pa, peers_a, NULL);
  start_node(&b, "node-b", pb, peers_b, NULL);
  ck_assert_int_eq(e2e_req(&a, "PUT", "/v1/store/del/other", "x", NULL, NULL), 201);
  ck_assert(e2e_wait_value(&b, "del/other", "x", NULL, E2E_WAIT_MS) >= 0);
  char buf[16];
  ck_assert_int_eq(e2e_get_raw(&a, "del/k", NULL, buf, sizeof buf), 404);
  ck_assert_int_eq(e2e_get_raw(&b, "del/k", NULL, buf, sizeof buf), 404);
  /* A DELETE of a key nobody holds is a 404 and sends nothing. */
  ck_assert_int_eq(e2e_req(&a, "DELETE", "/v1/store/del/never", NULL, NULL, NULL), 404);
  stop_all(&a, &b);
}
END_TEST

/* ---- catch-up from a snapshot, and the gc-grace rule ------------------------------ */

/* B is away while A deletes a key B holds and drops the tombstone by age
 * (tombstone_ttl_s 1): B's cursor is then below A's floor, so B is told 410
 * and catches up from A's snapshot, whose "dropped" list names the key
 * with the delete's pair: B removes its copy with that pair (its
 * tombstone is A's delete, not a fresh local one), and the delete does not
 * come back on either node; a key A never deleted stays. */
START_TEST(test_catch_up_from_snapshot) {
  int pa = e2e_free_port(SOCK_STREAM), pb = e2e_free_port(SOCK_STREAM);
  e2e_node a, b;
  e2e_node_init(&a);
  e2e_node_init(&b);
  int peers_a[] = {pb, 0}, peers_b[] = {pa, 0};
  /* B must catch up between the tombstone's drop (ttl) and its dropped
   * record's end (2 x ttl, by design: a node away longer may bring the
   * value back): 3 s here, 10 s under memcheck, where B's restart alone
   * takes seconds (a 1 s window failed there). */
  const char *fast[] = {"--tombstone-ttl-s", e2e_slow() ? "10" : "3", "--tick-interval-ms", "100",
                        NULL};
  start_node(&a, "node-a", pa, peers_a, fast);
  start_node(&b, "node-b", pb, peers_b, NULL);
  ck_assert_int_eq(e2e_req(&a, "PUT", "/v1/store/gone/k", "old", NULL, NULL), 201);
  ck_assert_int_eq(e2e_req(&a, "PUT", "/v1/store/keep/k", "kept", NULL, NULL), 201);
  ck_assert(e2e_wait_value(&b, "gone/k", "old", NULL, E2E_WAIT_MS) >= 0);
  ck_assert(e2e_wait_value(&b, "keep/k", "kept", NULL, E2E_WAIT_MS) >= 0);
  ck_assert_int_eq(e2e_node_stop(&b, SIGTERM), 0);

  json_t *dj = NULL;
  ck_assert_int_eq(e2e_req(&a, "DELETE", "/v1/store/gone/k", NULL, NULL, &dj), 200);
  json_int_t del_hlc = json_integer_value(json_object_get(dj, "hlc"));
  ck_assert(del_hlc > 0);
  json_decref(dj);
  ck_assert_int_eq(e2e_req(&a, "PUT", "/v1/store/new/k", "fresh", NULL, NULL), 201);
  /* The tombstone ages out: the feed's start is no longer served. */
  long long t0 = e2e_now_ms();
  long st = 0;
  while (st != 410 && e2e_now_ms() - t0 < E2E_WAIT_MS) {
    st = e2e_req(&a, "GET", "/v1/sync/ops?since=0&node=node-z", NULL, NULL, NULL);
    if (st != 410) e2e_nap_ms(100);
  }
  ck_assert_int_eq(st, 410);
  json_t *g = NULL;
  ck_assert_int_eq(e2e_req(&a, "GET", "/v1/sync/ops?since=0", NULL, NULL, &g), 410);
  ck_assert(json_integer_value(json_object_get(g, "oldest_since")) > 0);
  ck_assert_str_eq(json_string_value(json_object_get(json_object_get(g, "error"), "code")), "gone");
  json_decref(g);
  json_t *snap = NULL;
  ck_assert_int_eq(e2e_req(&a, "GET", "/v1/sync/snapshot?node=node-z", NULL, NULL, &snap), 200);
  ck_assert(json_integer_value(json_object_get(snap, "resume")) > 0);
  json_t *dropped = json_object_get(snap, "dropped");
  ck_assert_uint_eq(json_array_size(dropped), 1);
  ck_assert_int_eq(json_integer_value(json_object_get(snap, "dropped_count")), 1);
  json_t *d0 = json_array_get(dropped, 0);
  ck_assert_str_eq(json_string_value(json_object_get(d0, "op")), "delete");
  ck_assert_str_eq(json_string_value(json_object_get(d0, "key")), "gone/k");
  ck_assert_str_eq(json_string_value(json_object_get(d0, "origin")), "node-a");
  ck_assert(json_integer_value(json_object_get(d0, "hlc")) == del_hlc);
  ck_assert_ptr_null(json_object_get(snap, "horizon_hlc"));
  json_decref(snap);
  /* A counts the drop: its sync status and /metrics. */
  json_t *as = NULL;
  ck_assert_int_eq(e2e_req(&a, "GET", "/v1/sync/status", NULL, NULL, &as), 200);
  json_t *ac = json_object_get(as, "counters");
  ck_assert_int_ge(json_integer_value(json_object_get(ac, "tombstones_dropped")), 1);
  ck_assert_int_ge(json_integer_value(json_object_get(ac, "dropped_records")), 1);
  json_decref(as);
  ck_assert_int_ge(e2e_metric(&a, "softadastra_sync_tombstones_dropped_total", NULL), 1);

  start_node(&b, "node-b", pb, peers_b, NULL);
  ck_assert(e2e_wait_value(&b, "new/k", "fresh", NULL, E2E_WAIT_MS) >= 0);
  ck_assert_msg(e2e_wait_value(&b, "gone/k", NULL, NULL, E2E_WAIT_MS) >= 0,
                "the deleted key came back on node-b");
  char buf[16];
  ck_assert_int_eq(e2e_get_raw(&b, "keep/k", NULL, buf, sizeof buf), 200);
  ck_assert(wait_converged(&a, &b));
  ck_assert_int_eq(e2e_get_raw(&a, "gone/k", NULL, buf, sizeof buf), 404);
  char *log = e2e_read_file(b.log, NULL);
  ck_assert_ptr_nonnull(strstr(log, "event=sync_catch_up"));
  ck_assert_ptr_nonnull(strstr(log, "dropped=1"));
  free(log);
  /* B's tombstone of gone/k carries A's pair */
  ck_assert_int_eq(e2e_req(&b, "GET", "/v1/sync/snapshot?node=node-z", NULL, NULL, &snap), 200);
  json_t *items = json_object_get(snap, "items"), *tb = NULL;
  for (size_t i = 0; i < json_array_size(items); i++) {
    json_t *x = json_array_get(items, i);
    if (!strcmp(json_string_value(json_object_get(x, "key")), "gone/k")) tb = x;
  }
  json_t *bd = json_object_get(snap, "dropped");
  for (size_t i = 0; !tb && i < json_array_size(bd); i++) /* (its tombstone aged out too) */
    if (!strcmp(json_string_value(json_object_get(json_array_get(bd, i), "key")), "gone/k"))
      tb = json_array_get(bd, i);
  ck_assert_ptr_nonnull(tb);
  ck_assert_str_eq(json_string_value(json_object_get(tb, "op")), "delete");
  ck_assert_str_eq(json_string_value(json_object_get(tb, "origin")), "node-a");
  ck_assert(json_integer_value(json_object_get(tb, "hlc")) == del_hlc);
  json_decref(snap);
  stop_all(&a, &b);
}
END_TEST

/* A peer restored from a backup numbers its changes again from the backup's
 * LSN, in a new epoch: a puller whose cursor is past that LSN must not skip
 * its new writes, and the restored node gets back from its peer the writes
 * it made after the backup.  B sends the epoch it read A's feed in; A, restored,
 * answers 410 "epoch"; B sets its cursor back to 0 durably and pulls again.
 * Without the check, n/1..n/5 get LSNs at or below B's cursor and never
 * reach B. */
START_TEST(test_restored_peer_is_pulled_again) {
  int pa = e2e_free_port(SOCK_STREAM), pb = e2e_free_port(SOCK_STREAM);
  e2e_node a, b, a2;
  e2e_node_init(&a);
  e2e_node_init(&b);
  e2e_node_init(&a2);
  int peers_a[] = {pb, 0}, peers_b[] = {pa, 0};
  start_node(&a, "node-a", pa, peers_a, NULL);
  start_node(&b, "node-b", pb, peers_b, NULL);
  char path[96], val[16];
  for (int i = 1; i <= 3; i++) {
    snprintf(path, sizeof path, "/v1/store/k/%d", i);
    ck_assert_int_eq(e2e_req(&a, "PUT", path, "before", NULL, NULL), 201);
  }
  ck_assert(e2e_wait_value(&b, "k/3", "before", NULL, E2E_WAIT_MS) >= 0);
  char bak[400];
  snprintf(bak, sizeof bak, "%s/a.sabackup", a.dir);
  char *out = NULL, *err = NULL;
  int rc = e2e_cli(&a, (const char *const[]){"backup", bak, "--quiet", NULL}, NULL, &out, &err);
  ck_assert_msg(rc == 0, "backup: exit %d: %s %s", rc, out, err);
  free(out);
  free(err);
  for (int i = 4; i <= 20; i++) { /* B's cursor of A moves well past the backup */
    snprintf(path, sizeof path, "/v1/store/k/%d", i);
    ck_assert_int_eq(e2e_req(&a, "PUT", path, "after", NULL, NULL), 201);
  }
  ck_assert(e2e_wait_value(&b, "k/20", "after", NULL, E2E_WAIT_MS) >= 0);
  ck_assert_int_eq(e2e_node_stop(&a, SIGTERM), 0);
  rc = e2e_cli(NULL, (const char *const[]){"restore", bak, "--data-dir", a2.data_dir, NULL}, NULL,
               &out, &err);
  ck_assert_msg(rc == 0, "restore: exit %d: %s %s", rc, out, err);
  free(out);
  free(err);
  start_node(&a2, "node-a", pa, peers_a, NULL);
  for (int i = 1; i <= 5; i++) {
    snprintf(path, sizeof path, "/v1/store/n/%d", i);
    snprintf(val, sizeof val, "new%d", i);
    ck_assert_int_eq(e2e_req(&a2, "PUT", path, val, NULL, NULL), 201);
  }
  for (int i = 1; i <= 5; i++) {
    snprintf(path, sizeof path, "n/%d", i);
    snprintf(val, sizeof val, "new%d", i);
    ck_assert_msg(e2e_wait_value(&b, path, val, NULL, E2E_WAIT_MS) >= 0, "%s never reached node-b",
                  path);
  }
  char *log = e2e_read_file(b.log, NULL);
  ck_assert_ptr_nonnull(strstr(log, "event=sync_peer_new_epoch"));
  free(log);
  /* The restored node gets back its own writes made after the backup, which
   * node-b holds: its puller asks for them too (own=1) once, as its epoch
   * noted for node-b is the old one.  Then both hold the same state. */
  for (int i = 4; i <= 20; i++) {
    snprintf(path, sizeof path, "k/%d", i);
    ck_assert_msg(e2e_wait_value(&a2, path, "after", NULL, E2E_WAIT_MS) >= 0,
                  "%s did not come back to node-a", path);
  }
  ck_assert(wait_converged(&a2, &b));
  log = e2e_read_file(a2.log, NULL);
  ck_assert_ptr_nonnull(strstr(log, "event=sync_pull_own_writes "));
  ck_assert_ptr_nonnull(strstr(log, "event=sync_pull_own_writes_done"));
  free(log);
  /* A cursor sent with a wrong epoch is told so; a malformed one is 400. */
  json_t *g = NULL;
  ck_assert_int_eq(
      e2e_req(&a2, "GET", "/v1/sync/ops?since=3&node=node-z&epoch=1234", NULL, NULL, &g), 410);
  ck_assert_str_eq(json_string_value(json_object_get(json_object_get(g, "error"), "reason")),
                   "epoch");
  json_decref(g);
  ck_assert_int_eq(
      e2e_req(&a2, "GET", "/v1/sync/ops?since=3&node=node-z&epoch=xyz", NULL, NULL, NULL), 400);
  stop_all(&a2, &b);
  e2e_node_cleanup(&a);
}
END_TEST

/* ---- a streamed snapshot read in pieces, and cut short -------------------------------- */

/* A relay on 127.0.0.1 in front of a node: requests pass as they are; the
 * answer to a GET /v1/sync/snapshot is passed on in pieces of 1 to 16 bytes
 * (now and then up to 2 KiB) with a pause between them, so the reader gets
 * its bytes at every kind of boundary (inside a string, an escape, a
 * number, between an item's '}' and the ','); the first cut_snapshots
 * such answers are cut after cut_after bytes. */
typedef struct relay {
  int lfd, port, target;
  pthread_t th;
  atomic_bool stop;
  atomic_int cut_snapshots, snapshots;
  size_t cut_after;
  pthread_t conns[64];
  atomic_int nconns;
} relay;

typedef struct relay_conn {
  relay *r;
  int cfd, sfd;
} relay_conn;

static bool relay_send(int fd, const char *p, size_t n) {
  while (n) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w <= 0) return false;
    p += w;
    n -= (size_t)w;
  }
  return true;
}

static void *relay_conn_run(void *arg) {
  relay_conn *c = arg;
  relay *r = c->r;
  bool snap = false, cut = false;
  size_t sent = 0;
  unsigned seed = (unsigned)c->cfd * 7919u;
  char buf[4096];
  while (!atomic_load(&r->stop)) {
    struct pollfd pf[2] = {{c->cfd, POLLIN, 0}, {c->sfd, POLLIN, 0}};
    if (poll(pf, 2, 50) <= 0) continue;
    if (pf[0].revents) { /* client -> node, as it is */
      ssize_t n = recv(c->cfd, buf, sizeof buf, 0);
      if (n <= 0) break;
      if (memmem(buf, (size_t)n, "GET /v1/sync/snapshot", 21)) {
        snap = true;
        sent = 0;
        cut = atomic_fetch_sub(&r->cut_snapshots, 1) > 0;
        atomic_fetch_add(&r->snapshots, 1);
      }
      if (!relay_send(c->sfd, buf, (size_t)n)) break;
    }
    if (pf[1].revents) { /* node -> client: a snapshot in pieces */
      ssize_t n = recv(c->sfd, buf, sizeof buf, 0);
      if (n <= 0) break;
      size_t off = 0;
      bool gone = false;
      while (off < (size_t)n && !gone) {
        size_t k = (size_t)n - off;
        if (snap) k = 1 + (size_t)(rand_r(&seed) % 4 ? rand_r(&seed) % 16 : rand_r(&seed) % 2048);
        if (k > (size_t)n - off) k = (size_t)n - off;
        if (snap && cut && sent + k > r->cut_after) {
          gone = true; /* cut short: the connection ends here */
          break;
        }
        if (!relay_send(c->cfd, buf + off, k)) gone = true;
        off += k;
        sent += k;
        if (snap) {
          struct timespec ts = {0, 20000};
          nanosleep(&ts, NULL);
        }
      }
      if (gone) break;
    }
  }
  close(c->cfd);
  close(c->sfd);
  free(c);
  return NULL;
}

static void *relay_run(void *arg) {
  relay *r = arg;
  while (!atomic_load(&r->stop)) {
    struct pollfd pf = {r->lfd, POLLIN, 0};
    if (poll(&pf, 1, 50) <= 0) continue;
    int cfd = accept(r->lfd, NULL, NULL);
    if (cfd < 0) continue;
    int sfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)r->target)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int i = atomic_load(&r->nconns);
    relay_conn *c = malloc(sizeof *c);
    if (sfd < 0 || !c || i >= 64 || connect(sfd, (struct sockaddr *)&a, sizeof a) != 0) {
      close(cfd);
      if (sfd >= 0) close(sfd);
      free(c);
      continue;
    }
    int one = 1;
    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    *c = (relay_conn){r, cfd, sfd};
    if (pthread_create(&r->conns[i], NULL, relay_conn_run, c) != 0) {
      close(cfd);
      close(sfd);
      free(c);
      continue;
    }
    atomic_store(&r->nconns, i + 1);
  }
  return NULL;
}

static void relay_start(relay *r, int target) {
  memset(r, 0, sizeof *r);
  r->target = target;
  r->lfd = socket(AF_INET, SOCK_STREAM, 0);
  ck_assert_int_ge(r->lfd, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ck_assert_int_eq(bind(r->lfd, (struct sockaddr *)&a, sizeof a), 0);
  ck_assert_int_eq(listen(r->lfd, 16), 0);
  socklen_t l = sizeof a;
  ck_assert_int_eq(getsockname(r->lfd, (struct sockaddr *)&a, &l), 0);
  r->port = ntohs(a.sin_port);
  ck_assert_int_eq(pthread_create(&r->th, NULL, relay_run, r), 0);
}

static void relay_stop(relay *r) {
  atomic_store(&r->stop, true);
  pthread_join(r->th, NULL);
  for (int i = 0; i < atomic_load(&r->nconns); i++)
    pthread_join(r->conns[i], NULL);
  close(r->lfd);
}

/* The key of index i, with characters JSON escapes ('"', '\\'), UTF-8 of
 * two to four bytes, and JSON's own punctuation. */
static void snap_key(char *out, size_t n, int i) {
  static const char *const parts[] = {"q\"uote",      "back\\slash",      "\xc3\xa9t\xc3\xa9",
                                      "\xe2\x82\xac", "\xf0\x9f\x99\x82", "{[,:]}",
                                      "plain"};
  snprintf(out, n, "snap/%s/%04d", parts[i % 7], i);
}

/* The value of key i: JSON punctuation and quotes too, of 0 to about 3 KB;
 * one of 200 KB. */
static char *snap_value(int i) {
  size_t n = i == 77 ? 200000 : (size_t)(i * 37 % 3000);
  char *v = malloc(n + 32);
  int k = snprintf(v, n + 32, "v%d:", i);
  for (size_t j = (size_t)k; j < n + (size_t)k; j++)
    v[j] = "\"}],{[\\:abc"[(j + (size_t)i) % 11];
  v[n + (size_t)k] = 0;
  return v;
}

static void snap_path(char *out, size_t n, const char *key, const char *suffix) {
  char *e = curl_easy_escape(NULL, key, 0);
  snprintf(out, n, "/v1/store/%s%s", e, suffix);
  curl_free(e);
}

/* B catches up from A's snapshot through the relay: the answer comes in
 * pieces of every size, and the first one is cut short after 20 KB (B's
 * cursor must not move: the next catch-up reads it all again).  B ends with
 * exactly A's state: keys that JSON escapes, a 200 KB value, and the
 * deleted keys absent (named in "dropped"). */
START_TEST(test_snapshot_streamed_in_pieces_and_cut) {
  int pa = e2e_free_port(SOCK_STREAM), pb = e2e_free_port(SOCK_STREAM);
  e2e_node a, b;
  e2e_node_init(&a);
  e2e_node_init(&b);
  relay r;
  relay_start(&r, pa);
  r.cut_after = 20000;
  atomic_store(&r.cut_snapshots, 1);
  int peers_a[] = {pb, 0}, peers_b[] = {r.port, 0};
  /* The cut snapshot, the backoff and the whole one in small pieces must
   * all fit between the tombstones' drop (ttl) and their records' end (2 x
   * ttl): a 2 s window failed once in three runs on a loaded machine. */
  const char *fast[] = {"--tombstone-ttl-s", e2e_slow() ? "20" : "5", "--tick-interval-ms", "100",
                        NULL};
  start_node(&a, "node-a", pa, peers_a, fast);
  enum { N = 300, DEL = 30 };
  char key[128], path[512];
  for (int i = 0; i < N; i++) {
    snap_key(key, sizeof key, i);
    snap_path(path, sizeof path, key, "");
    char *v = snap_value(i);
    ck_assert_int_eq(e2e_req(&a, "PUT", path, v, NULL, NULL), 201);
    free(v);
  }
  for (int i = 0; i < DEL; i++) { /* every tenth key deleted */
    snap_key(key, sizeof key, i * 10);
    snap_path(path, sizeof path, key, "");
    ck_assert_int_eq(e2e_req(&a, "DELETE", path, NULL, NULL, NULL), 200);
  }
  long long t0 = e2e_now_ms();
  long st = 0;
  while (st != 410 && e2e_now_ms() - t0 < E2E_WAIT_MS) { /* the tombstones age out */
    st = e2e_req(&a, "GET", "/v1/sync/ops?since=0&node=node-z", NULL, NULL, NULL);
    if (st != 410) e2e_nap_ms(100);
  }
  ck_assert_int_eq(st, 410);
  start_node(&b, "node-b", pb, peers_b, NULL);
  ck_assert_msg(wait_converged_ms(&a, &b, 4 * E2E_WAIT_MS), "node-b did not converge");
  ck_assert_int_ge(atomic_load(&r.snapshots), 2); /* the cut one, then a whole one */
  for (int i = 0; i < N; i += 7) {
    snap_key(key, sizeof key, i);
    snap_path(path, sizeof path, key, "?raw=1");
    e2e_resp res;
    ck_assert_int_eq(e2e_http(&b, "GET", path, NULL, NULL, 0, &res), 0);
    if (i % 10 == 0) {
      ck_assert_int_eq(res.status, 404);
    } else {
      char *v = snap_value(i);
      ck_assert_int_eq(res.status, 200);
      ck_assert_uint_eq(res.len, strlen(v));
      ck_assert(memcmp(res.body, v, res.len) == 0);
      free(v);
    }
    e2e_resp_free(&res);
  }
  char *log = e2e_read_file(b.log, NULL);
  char want[96];
  snprintf(want, sizeof want, "items=%d dropped=%d", N - DEL, DEL);
  ck_assert_ptr_nonnull(strstr(log, "ok=false"));
  char *ok = strstr(log, want);
  ck_assert_msg(ok && strstr(ok, "ok=true"), "no whole catch-up in node-b's log");
  free(log);
  stop_all(&a, &b);
  relay_stop(&r);
}
END_TEST

/* A growing buffer that doubles (e2e_http's grows by each chunk: quadratic
 * on a 32 MiB answer, too slow under the sanitizers). */
typedef struct big_buf {
  char *p;
  size_t n, cap;
} big_buf;

static size_t big_sink(char *ptr, size_t size, size_t nmemb, void *ud) {
  big_buf *b = ud;
  size_t k = size * nmemb;
  if (b->n + k + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 1 << 16;
    while (cap < b->n + k + 1)
      cap *= 2;
    char *np = realloc(b->p, cap);
    if (!np) return 0;
    b->p = np;
    b->cap = cap;
  }
  memcpy(b->p + b->n, ptr, k);
  b->n += k;
  b->p[b->n] = '\0';
  return k;
}

/* GET path on n into b (caller frees b->p).  Returns the status, 0 on failure. */
static long get_big(const e2e_node *n, const char *path, big_buf *b) {
  memset(b, 0, sizeof *b);
  CURL *c = curl_easy_init();
  char url[512];
  snprintf(url, sizeof url, "%s%s", n->url, path);
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, big_sink);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)E2E_WAIT_MS * 6);
  long st = 0;
  if (curl_easy_perform(c) == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
  curl_easy_cleanup(c);
  return st;
}

/* ---- binary values and large pages ------------------------------------------------ */

/* Values are moved byte for byte (NULs, invalid UTF-8), and a page of the
 * feed stops at about 16 MiB at an LSN boundary, so 24 values of 1 MB need
 * two pages and all arrive. */
/* ---- one page for every puller that asks for it (api_sync.c) --------------------- */

/* GET path on n: the status, the body in *body (caller frees) and the number
 * of items of each origin in *from_a / *from_b (node-a / node-b). */
static long page_of(const e2e_node *n, const char *path, char **body, size_t *from_a,
                    size_t *from_b) {
  e2e_resp r;
  ck_assert_int_eq(e2e_http(n, "GET", path, NULL, NULL, 0, &r), 0);
  *from_a = *from_b = 0;
  json_t *j = r.body ? json_loads(r.body, 0, NULL) : NULL;
  json_t *items = json_object_get(j, "items");
  for (size_t i = 0; i < json_array_size(items); i++) {
    const char *o = json_string_value(json_object_get(json_array_get(items, i), "origin"));
    if (o && !strcmp(o, "node-a")) (*from_a)++;
    if (o && !strcmp(o, "node-b")) (*from_b)++;
  }
  json_decref(j);
  long st = r.status;
  *body = r.body;
  r.body = NULL;
  e2e_resp_free(&r);
  return st;
}

START_TEST(test_page_shared_between_pullers) {
  int pa = e2e_free_port(SOCK_STREAM), pb = e2e_free_port(SOCK_STREAM);
  e2e_node a, b;
  e2e_node_init(&a);
  e2e_node_init(&b);
  int peers_a[] = {pb, 0};
  start_node(&b, "node-b", pb, NULL, NULL);
  start_node(&a, "node-a", pa, peers_a, NULL);
  ck_assert_int_eq(e2e_req(&b, "PUT", "/v1/store/sh/b1", "1", NULL, NULL), 201);
  ck_assert_int_eq(e2e_req(&b, "PUT", "/v1/store/sh/b2", "2", NULL, NULL), 201);
  ck_assert_int_eq(e2e_req(&a, "PUT", "/v1/store/sh/a1", "3", NULL, NULL), 201);
  /* a's feed: a1 of its own, b1 and b2 relayed from b (committed: the
   * feed serves what the store holds). */
  size_t fa = 0, fb = 0;
  char *body = NULL;
  long long t0 = e2e_now_ms();
  while (e2e_now_ms() - t0 < E2E_WAIT_MS) {
    ck_assert_int_eq(page_of(&a, "/v1/sync/ops?since=0", &body, &fa, &fb), 200);
    free(body);
    if (fa == 1 && fb == 2) break;
    e2e_nap_ms(50);
  }
  ck_assert_msg(fa == 1 && fb == 2, "a's feed holds %zu of its own and %zu of b's", fa, fb);
  long long shared0 = e2e_metric(&a, "softadastra_sync_feed_pages_shared_total", NULL);
  ck_assert_int_ge(shared0, 0);

  /* The last read above (anonymous, nothing left out) is node-z's answer,
   * and node-y's: the same bytes without a read. */
  char *bz = NULL, *by = NULL, *bb = NULL;
  ck_assert_int_eq(page_of(&a, "/v1/sync/ops?since=0&node=node-z", &bz, &fa, &fb), 200);
  ck_assert(fa == 1 && fb == 2);
  ck_assert_int_eq(e2e_metric(&a, "softadastra_sync_feed_pages_shared_total", NULL), shared0 + 1);
  ck_assert_int_eq(page_of(&a, "/v1/sync/ops?since=0&node=node-y", &by, &fa, &fb), 200);
  ck_assert(fa == 1 && fb == 2);
  ck_assert_str_eq(by, bz);
  ck_assert_int_eq(e2e_metric(&a, "softadastra_sync_feed_pages_shared_total", NULL), shared0 + 2);
  free(by);

  /* node-b must not get that page: it holds node-b's own changes. */
  ck_assert_int_eq(page_of(&a, "/v1/sync/ops?since=0&node=node-b", &bb, &fa, &fb), 200);
  ck_assert_msg(fa == 1 && fb == 0, "node-b was sent %zu of its own changes", fb);
  ck_assert_int_eq(e2e_metric(&a, "softadastra_sync_feed_pages_shared_total", NULL), shared0 + 2);
  /* node-b's page left changes out: node-y reads again and gets them all. */
  ck_assert_int_eq(page_of(&a, "/v1/sync/ops?since=0&node=node-y", &by, &fa, &fb), 200);
  ck_assert_msg(fa == 1 && fb == 2, "node-y got %zu of a's and %zu of b's changes", fa, fb);
  ck_assert_str_eq(by, bz);
  free(by);
  ck_assert_int_eq(e2e_metric(&a, "softadastra_sync_feed_pages_shared_total", NULL), shared0 + 2);
  /* own=1: node-b asks for its own changes too, and may take node-y's page. */
  ck_assert_int_eq(page_of(&a, "/v1/sync/ops?since=0&node=node-b&own=1", &by, &fa, &fb), 200);
  ck_assert(fa == 1 && fb == 2);
  ck_assert_str_eq(by, bz);
  free(by);
  ck_assert_int_eq(e2e_metric(&a, "softadastra_sync_feed_pages_shared_total", NULL), shared0 + 3);
  /* The same puller asking again (a retry) gets the page read for it. */
  ck_assert_int_eq(page_of(&a, "/v1/sync/ops?since=0&node=node-b", &by, &fa, &fb), 200);
  ck_assert(fa == 1 && fb == 0);
  free(by);
  ck_assert_int_eq(page_of(&a, "/v1/sync/ops?since=0&node=node-b", &by, &fa, &fb), 200);
  ck_assert(fa == 1 && fb == 0);
  ck_assert_str_eq(by, bb);
  free(by);
  ck_assert_int_eq(e2e_metric(&a, "softadastra_sync_feed_pages_shared_total", NULL), shared0 + 4);

  /* A commit since: the kept page is not an answer any more. */
  ck_assert_int_eq(e2e_req(&a, "PUT", "/v1/store/sh/a2", "4", NULL, NULL), 201);
  ck_assert_int_eq(e2e_req(&a, "GET", "/v1/store/sh/a2", NULL, NULL, NULL), 200); /* commits it */
  ck_assert_int_eq(page_of(&a, "/v1/sync/ops?since=0&node=node-b", &by, &fa, &fb), 200);
  ck_assert_msg(fa == 2 && fb == 0, "after a commit node-b got %zu of a's changes", fa);
  free(by);
  ck_assert_int_eq(e2e_metric(&a, "softadastra_sync_feed_pages_shared_total", NULL), shared0 + 4);
  free(bz);
  free(bb);
  stop_all(&a, &b);
}
END_TEST

/* Four pullers waiting on the same commit get one page read once: the
 * first to ask claims the read, the others wait for it or find it kept
 * (api_sync.c), whichever threads their long-polls resume on. */
START_TEST(test_page_read_once_for_pullers_woken_together) {
  int pa = e2e_free_port(SOCK_STREAM);
  e2e_node a;
  e2e_node_init(&a);
  start_node(&a, "node-a", pa, NULL, NULL);
  ck_assert_int_eq(e2e_req(&a, "PUT", "/v1/store/woken/first", "1", NULL, NULL), 201);
  json_t *j = NULL;
  ck_assert_int_eq(e2e_req(&a, "GET", "/v1/store/woken/first", NULL, NULL, NULL), 200);
  ck_assert_int_eq(e2e_req(&a, "GET", "/v1/sync/ops?since=0", NULL, NULL, &j), 200);
  long long since = json_integer_value(json_object_get(j, "next_since"));
  json_decref(j);
  long long pages0 = e2e_metric(&a, "softadastra_sync_feed_pages_total", NULL);
  long long shared0 = e2e_metric(&a, "softadastra_sync_feed_pages_shared_total", NULL);
  static const char *const pullers[] = {"node-w", "node-x", "node-y", "node-z"};
  poll_arg args[4];
  pthread_t th[4];
  for (int i = 0; i < 4; i++) {
    args[i] = (poll_arg){.n = &a, .since = since, .node = pullers[i]};
    ck_assert_int_eq(pthread_create(&th[i], NULL, poll_run, &args[i]), 0);
  }
  e2e_nap_ms(300);
  ck_assert_int_eq(e2e_req(&a, "PUT", "/v1/store/woken/second", "2", NULL, NULL), 201);
  for (int i = 0; i < 4; i++) {
    pthread_join(th[i], NULL);
    ck_assert_int_eq(args[i].status, 200);
    ck_assert_uint_eq(args[i].items, 1);
  }
  ck_assert_int_eq(e2e_metric(&a, "softadastra_sync_feed_pages_total", NULL), pages0 + 4);
  long long shared = e2e_metric(&a, "softadastra_sync_feed_pages_shared_total", NULL) - shared0;
  /* Under memcheck a read may outlast the wait's bound (then the waiter
   * reads itself, which is right too): one copy at least there. */
  if (e2e_slow())
    ck_assert_int_ge(shared, 1);
  else
    ck_assert_int_eq(shared, 3);
  stop_all(&a, NULL);
}
END_TEST

START_TEST(test_binary_values_and_big_pages) {
  int pa = e2e_free_port(SOCK_STREAM), pb = e2e_free_port(SOCK_STREAM);
  e2e_node a, b;
  e2e_node_init(&a);
  e2e_node_init(&b);
  int peers_b[] = {pa, 0};
  start_node(&a, "node-a", pa, NULL, NULL);
  size_t big = 1000000;
  char *v = malloc(big);
  for (size_t i = 0; i < big; i++)
    v[i] = (char)(i * 131 + 7); /* every byte value, NULs included */
  /* Under memcheck (e2e_slow) 24 MB through JSON take many minutes: three
   * values there, and the page-size check only in the normal run. */
  int nbig = e2e_slow() ? 3 : 24;
  for (int k = 0; k < nbig; k++) {
    char path[64];
    snprintf(path, sizeof path, "/v1/store/big/%02d", k);
    v[0] = (char)k;
    e2e_resp r;
    ck_assert_int_eq(e2e_http(&a, "PUT", path, NULL, v, big, &r), 0);
    ck_assert_int_eq(r.status, 201);
    e2e_resp_free(&r);
  }
  if (nbig == 24) {
    big_buf page;
    ck_assert_int_eq(get_big(&a, "/v1/sync/ops?since=0&limit=1000&node=node-z", &page), 200);
    json_t *j = json_loadb(page.p, page.n, 0, NULL);
    ck_assert_ptr_nonnull(j);
    size_t n = json_array_size(json_object_get(j, "items"));
    ck_assert_msg(n > 0 && n < 24, "a page held %zu values of 1 MB", n);
    ck_assert(json_is_true(json_object_get(j, "more")));
    ck_assert_uint_lt(page.n, 24u << 20);
    json_decref(j);
    free(page.p);
  }
  e2e_resp r;

  /* Keys the JSON must escape, and non-ASCII ones (the puller reads them in place). */
  const char *odd[] = {"odd/q%22uote", "odd/back%5Cslash", "odd/caf%C3%A9%E2%82%AC%F0%9F%98%80",
                       "odd/sl%2Fash", "odd/tab%09no"};
  long want[] = {201, 201, 201, 201, 400};
  for (size_t i = 0; i < 5; i++) {
    char path[128];
    snprintf(path, sizeof path, "/v1/store/%s", odd[i]);
    ck_assert_int_eq(e2e_req(&a, "PUT", path, "\"\\\u00e9", NULL, NULL), want[i]);
  }
  ck_assert_int_eq(e2e_req(&a, "DELETE", "/v1/store/odd/sl%2Fash", NULL, NULL, NULL), 200);

  start_node(&b, "node-b", pb, peers_b, NULL);
  ck_assert(wait_converged_ms(&a, &b, E2E_WAIT_MS * 6)); /* 24 MB, slow under sanitizers */
  char got[64];
  ck_assert_int_eq(e2e_get_raw(&b, "odd/q%22uote", NULL, got, sizeof got), 200);
  ck_assert_str_eq(got, "\"\\\u00e9");
  ck_assert_int_eq(e2e_get_raw(&b, "odd/caf%C3%A9%E2%82%AC%F0%9F%98%80", NULL, got, sizeof got),
                   200);
  ck_assert_int_eq(e2e_get_raw(&b, "odd/back%5Cslash", NULL, got, sizeof got), 200);
  ck_assert_int_eq(e2e_get_raw(&b, "odd/sl%2Fash", NULL, got, sizeof got), 404);
  v[0] = (char)(nbig - 1);
  char last[64];
  snprintf(last, sizeof last, "/v1/store/big/%02d?raw=1", nbig - 1);
  ck_assert_int_eq(e2e_http(&b, "GET", last, NULL, NULL, 0, &r), 0);
  ck_assert_int_eq(r.status, 200);
  ck_assert_uint_eq(r.len, big);
  ck_assert(memcmp(r.body, v, big) == 0);
  e2e_resp_free(&r);
  free(v);
  stop_all(&a, &b);
}
END_TEST

/* PUT of key on n with Content-Type ct (NULL: none; libcurl then sends its
 * form type, which stores none).  Returns the status. */
static long put_typed(const e2e_node *n, const char *key, const char *value, const char *ct) {
  char path[256], h[160];
  snprintf(path, sizeof path, "/v1/store/%s", key);
  snprintf(h, sizeof h, "Content-Type: %s", ct ? ct : "");
  const char *hdrs[] = {h, NULL};
  e2e_resp r;
  ck_assert_int_eq(e2e_http(n, "PUT", path, ct ? hdrs : NULL, value, strlen(value), &r), 0);
  long st = r.status;
  e2e_resp_free(&r);
  return st;
}

static void expect_type(const e2e_node *n, const char *key, const char *want) {
  char *ct = e2e_raw_type(n, key);
  ck_assert_msg(ct && !strcmp(ct, want), "%s on node %d: Content-Type %s, want %s", key, n->port,
                ct ? ct : "(none)", want);
  free(ct);
}

/* issue 25 item 3: a replicated key keeps its content type.  B joins when
 * A's feed start is no longer served, so the first keys come through A's
 * snapshot (the puller's jansson path), later ones through the feed (its
 * in-place path); a type replaced on B goes back to A. */
START_TEST(test_content_type_replicates) {
  int pa = e2e_free_port(SOCK_STREAM), pb = e2e_free_port(SOCK_STREAM);
  e2e_node a, b;
  e2e_node_init(&a);
  e2e_node_init(&b);
  int peers_a[] = {pb, 0}, peers_b[] = {pa, 0};
  const char *fast[] = {"--tombstone-ttl-s", "1", "--tick-interval-ms", "100", NULL};
  start_node(&a, "node-a", pa, peers_a, fast);
  ck_assert_int_eq(put_typed(&a, "snap/doc", "{\"a\":1}", "application/json"), 201);
  ck_assert_int_eq(put_typed(&a, "snap/plain", "bytes", NULL), 201);
  ck_assert_int_eq(put_typed(&a, "gone", "x", NULL), 201);
  ck_assert_int_eq(e2e_req(&a, "DELETE", "/v1/store/gone", NULL, NULL, NULL), 200);
  long long t0 = e2e_now_ms();
  long st = 0;
  while (st != 410 && e2e_now_ms() - t0 < E2E_WAIT_MS) { /* the tombstone ages out */
    st = e2e_req(&a, "GET", "/v1/sync/ops?since=0&node=node-z", NULL, NULL, NULL);
    if (st != 410) e2e_nap_ms(100);
  }
  ck_assert_int_eq(st, 410);
  big_buf snap;
  ck_assert_int_eq(get_big(&a, "/v1/sync/snapshot?node=node-z", &snap), 200);
  ck_assert_msg(strstr(snap.p, "\"content_type\":\"application/json\""), "%s", snap.p);
  free(snap.p);

  start_node(&b, "node-b", pb, peers_b, NULL);
  ck_assert(e2e_wait_value(&b, "snap/doc", "{\"a\":1}", NULL, E2E_WAIT_MS) >= 0);
  expect_type(&b, "snap/doc", "application/json");
  expect_type(&b, "snap/plain", "application/octet-stream");
  ck_assert_int_eq(put_typed(&a, "feed/page", "<p>hi</p>", "text/html; charset=utf-8"), 201);
  ck_assert(e2e_wait_value(&b, "feed/page", "<p>hi</p>", NULL, E2E_WAIT_MS) >= 0);
  expect_type(&b, "feed/page", "text/html; charset=utf-8");
  /* B replaces the document untyped, then types the plain one: A follows. */
  ck_assert_int_eq(put_typed(&b, "snap/doc", "now bytes", NULL), 200);
  ck_assert_int_eq(put_typed(&b, "snap/plain", "<svg/>", "image/svg+xml"), 200);
  ck_assert(e2e_wait_value(&a, "snap/doc", "now bytes", NULL, E2E_WAIT_MS) >= 0);
  ck_assert(e2e_wait_value(&a, "snap/plain", "<svg/>", NULL, E2E_WAIT_MS) >= 0);
  expect_type(&a, "snap/doc", "application/octet-stream");
  expect_type(&a, "snap/plain", "image/svg+xml");
  ck_assert(wait_converged(&a, &b)); /* the digests hash the types */
  stop_all(&a, &b);
}
END_TEST

static Suite *e2e_sync_suite(void) {
  Suite *s = suite_create("e2e_sync");
  TCase *tc = tcase_create("sync");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, test_two_node_session);
  tcase_add_test(tc, test_ops_long_poll);
  tcase_add_test(tc, test_concurrent_writes_converge);
  tcase_add_test(tc, test_kill9_write_reaches_peer);
  tcase_add_test(tc, test_pull_linger_gathers_pages);
  tcase_add_test(tc, test_auth_peer_token);
  tcase_add_test(tc, test_peer_with_own_id_refused);
  tcase_add_test(tc, test_garbage_peer_costs_retries);
  tcase_add_test(tc, test_impostor_with_own_id_refused);
  tcase_add_test(tc, test_stop_during_stalled_snapshot);
  tcase_add_test(tc, test_malformed_epoch_header_ignored);
  tcase_add_test(tc, test_gone_epoch_with_malformed_header_refused);
  tcase_add_test(tc, test_delete_stays_deleted);
  tcase_add_test(tc, test_catch_up_from_snapshot);
  tcase_add_test(tc, test_snapshot_streamed_in_pieces_and_cut);
  tcase_add_test(tc, test_restored_peer_is_pulled_again);
  tcase_add_test(tc, test_binary_values_and_big_pages);
  tcase_add_test(tc, test_page_shared_between_pullers);
  tcase_add_test(tc, test_page_read_once_for_pullers_woken_together);
  tcase_add_test(tc, test_content_type_replicates);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
  SRunner *sr = srunner_create(e2e_sync_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  curl_global_cleanup();
  return failed ? 1 : 0;
}
