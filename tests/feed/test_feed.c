/*
 * test_feed.c -- GET /v1/changes end to end: the real `softadastra serve` on
 * 127.0.0.1, spoken to with libcurl.  Pages (order, values, base64, batches,
 * paging, bad input), long-polls, Server-Sent Events (headers at once, ids,
 * Last-Event-ID resume, batches never split, heartbeats), 410 below the
 * floor, the stream bound (503), auth, 20 streams on 2 worker threads not
 * blocking normal requests, SIGTERM with open streams, and `softadastra
 * watch`.
 *
 * Nothing asserts on timing: every wait is bounded (E2E_WAIT_MS) and only
 * turns into a failure when what it waits for never happens.  The figures
 * printed by the stream test are for the record.
 */
#define _GNU_SOURCE
#include <check.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "e2e_util.h"

static long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void nap_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static e2e_node node;

static void start_node(const char *const *args) {
  e2e_node_init(&node);
  int code;
  ck_assert_msg(e2e_node_start(&node, args, NULL, &code) == 0, "node did not start (exit %d)",
                code);
}

static void stop_node(void) {
  int rc = node.pid ? e2e_node_stop(&node, SIGTERM) : 0; /* prints the node log if it fails */
  e2e_node_cleanup(&node); /* before judging: a failure leaves no directory behind */
  ck_assert_int_eq(rc, 0);
}

static long put(const char *key, const char *value) {
  char path[512];
  snprintf(path, sizeof path, "/v1/store/%s", key);
  e2e_resp r;
  ck_assert_int_eq(e2e_http(&node, "PUT", path, NULL, value, strlen(value), &r), 0);
  long st = r.status;
  e2e_resp_free(&r);
  return st;
}

static json_t *get_json(const char *path, const char *const *hdrs, long *status) {
  e2e_resp r;
  ck_assert_int_eq(e2e_http(&node, "GET", path, hdrs, NULL, 0, &r), 0);
  *status = r.status;
  json_error_t e;
  json_t *j = json_loads(r.body ? r.body : "", 0, &e);
  ck_assert_msg(j != NULL, "not JSON from %s: %s", path, r.body ? r.body : "");
  e2e_resp_free(&r);
  return j;
}

/* ---- an SSE client on its own thread ------------------------------------ */

typedef struct sse {
  pthread_t thread;
  char url[512];
  char hdr[4][128]; /* extra request headers */
  int nhdr;
  pthread_mutex_t mu;
  char *buf; /* body so far (decoded from chunked) */
  size_t len;
  long status;
  bool done;        /* the transfer ended */
  CURLcode rc;      /* its result */
  atomic_bool stop; /* ask the thread to abort */
} sse;

static size_t sse_write(char *p, size_t sz, size_t n, void *ud) {
  sse *s = ud;
  pthread_mutex_lock(&s->mu);
  char *nb = realloc(s->buf, s->len + sz * n + 1);
  if (nb) {
    memcpy(nb + s->len, p, sz * n);
    s->len += sz * n;
    nb[s->len] = '\0';
    s->buf = nb;
  }
  pthread_mutex_unlock(&s->mu);
  return nb ? sz * n : 0;
}

static int sse_progress(void *ud, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d) {
  sse *s = ud;
  (void)a, (void)b, (void)c, (void)d;
  return atomic_load(&s->stop) ? 1 : 0;
}

static void *sse_main(void *arg) {
  sse *s = arg;
  CURL *c = curl_easy_init();
  struct curl_slist *h = curl_slist_append(NULL, "Accept: text/event-stream");
  for (int i = 0; i < s->nhdr; i++)
    h = curl_slist_append(h, s->hdr[i]);
  curl_easy_setopt(c, CURLOPT_URL, s->url);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sse_write);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, s);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, sse_progress);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, s);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)E2E_WAIT_MS * 3);
  CURLcode rc = curl_easy_perform(c);
  long st = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
  pthread_mutex_lock(&s->mu);
  s->rc = rc;
  s->status = st;
  s->done = true;
  pthread_mutex_unlock(&s->mu);
  return NULL;
}

/* Opens a stream on path with up to two extra headers (may be NULL). */
static sse *sse_open(const char *path, const char *h1, const char *h2) {
  sse *s = calloc(1, sizeof *s);
  ck_assert_ptr_nonnull(s);
  snprintf(s->url, sizeof s->url, "%s%s", node.url, path);
  if (h1) snprintf(s->hdr[s->nhdr++], sizeof s->hdr[0], "%s", h1);
  if (h2) snprintf(s->hdr[s->nhdr++], sizeof s->hdr[0], "%s", h2);
  pthread_mutex_init(&s->mu, NULL);
  atomic_init(&s->stop, false);
  ck_assert_int_eq(pthread_create(&s->thread, NULL, sse_main, s), 0);
  return s;
}

/* Waits (bounded) until the body holds needle or the transfer ended.
 * Returns true when found. */
static bool sse_wait_for(sse *s, const char *needle) {
  long deadline = now_ms() + E2E_WAIT_MS;
  for (;;) {
    pthread_mutex_lock(&s->mu);
    bool found = s->buf && strstr(s->buf, needle);
    bool done = s->done;
    pthread_mutex_unlock(&s->mu);
    if (found) return true;
    if (done || now_ms() > deadline) return false;
    nap_ms(5);
  }
}

/* Waits (bounded) for the transfer to end on its own.  Returns true then. */
static bool sse_wait_end(sse *s) {
  long deadline = now_ms() + E2E_WAIT_MS;
  for (;;) {
    pthread_mutex_lock(&s->mu);
    bool done = s->done;
    pthread_mutex_unlock(&s->mu);
    if (done) return true;
    if (now_ms() > deadline) return false;
    nap_ms(5);
  }
}

static size_t sse_count(sse *s, const char *needle) {
  pthread_mutex_lock(&s->mu);
  size_t n = 0;
  for (const char *p = s->buf; p && (p = strstr(p, needle)); p += strlen(needle))
    n++;
  pthread_mutex_unlock(&s->mu);
  return n;
}

static void sse_close(sse *s) {
  atomic_store(&s->stop, true);
  pthread_join(s->thread, NULL);
  pthread_mutex_destroy(&s->mu);
  free(s->buf);
  free(s);
}

/* ---- pages ---------------------------------------------------------------- */

START_TEST(page_lists_changes_in_order_with_values) {
  start_node(NULL);
  ck_assert_int_eq(put("a", "1"), 201);
  ck_assert_int_eq(put("b", "2"), 201);
  ck_assert_int_eq(put("a", "3"), 200);
  e2e_resp r;
  const char bin[] = "\xff\x00\x01";
  ck_assert_int_eq(e2e_http(&node, "PUT", "/v1/store/bin", NULL, bin, 3, &r), 0);
  e2e_resp_free(&r);
  const char *batch = "{\"ops\":[{\"op\":\"put\",\"key\":\"c\",\"value\":\"x\"},"
                      "{\"op\":\"delete\",\"key\":\"b\"}]}";
  const char *jh[] = {"Content-Type: application/json", NULL};
  ck_assert_int_eq(e2e_http(&node, "POST", "/v1/batch", jh, batch, strlen(batch), &r), 0);
  ck_assert_int_eq(r.status, 200);
  e2e_resp_free(&r);

  long st;
  json_t *j = get_json("/v1/changes?include_values=1", NULL, &st);
  ck_assert_int_eq(st, 200);
  json_t *ch = json_object_get(j, "changes");
  /* 6 changes, or 5 once a@1 is compacted away (the feed keeps at least the
   * latest change of every key) */
  size_t n = json_array_size(ch);
  ck_assert_msg(n == 6 || n == 5, "%zu changes", n);
  ck_assert_int_eq(json_integer_value(json_object_get(j, "next_since")), 5);
  ck_assert(json_is_false(json_object_get(j, "more")));
  json_int_t prev = 0;
  json_t *a = NULL, *b = NULL, *c = NULL, *d = NULL;
  for (size_t i = 0; i < n; i++) {
    json_t *it = json_array_get(ch, i);
    json_int_t l = json_integer_value(json_object_get(it, "lsn"));
    ck_assert_int_ge(l, prev); /* in LSN order */
    prev = l;
    if (l == 3) a = it;
    if (l == 4) b = it;
    if (l == 5) {
      if (c)
        d = it;
      else
        c = it;
    }
  }
  ck_assert(a && b && c && d); /* the batch: two changes, one LSN */
  ck_assert_str_eq(json_string_value(json_object_get(a, "key")), "a");
  ck_assert_str_eq(json_string_value(json_object_get(a, "op")), "put");
  ck_assert_str_eq(json_string_value(json_object_get(a, "value")), "3");
  ck_assert_str_eq(json_string_value(json_object_get(a, "encoding")), "utf-8");
  ck_assert_int_eq(json_integer_value(json_object_get(a, "version")), 2);
  ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(a, "time")), "T"));
  ck_assert(json_integer_value(json_object_get(a, "hlc")) > 0);
  ck_assert_str_eq(json_string_value(json_object_get(b, "encoding")), "base64");
  ck_assert_str_eq(json_string_value(json_object_get(b, "value")), "/wAB");
  ck_assert_str_eq(json_string_value(json_object_get(c, "key")), "c");
  ck_assert_str_eq(json_string_value(json_object_get(d, "op")), "delete");
  ck_assert(json_is_true(json_object_get(d, "batch")));
  ck_assert_ptr_null(json_object_get(d, "value"));
  json_decref(j);

  /* without values, from an LSN, one page at a time */
  j = get_json("/v1/changes?since=3&limit=1", NULL, &st);
  ch = json_object_get(j, "changes");
  ck_assert_int_eq(json_array_size(ch), 1);
  ck_assert_ptr_null(json_object_get(json_array_get(ch, 0), "value"));
  ck_assert_int_eq(json_integer_value(json_object_get(j, "next_since")), 4);
  ck_assert(json_is_true(json_object_get(j, "more")));
  json_decref(j);
  j = get_json("/v1/changes?since=4&limit=1", NULL, &st); /* the batch is not split */
  ck_assert_int_eq(json_array_size(json_object_get(j, "changes")), 2);
  json_decref(j);
  j = get_json("/v1/changes?prefix=c", NULL, &st);
  ck_assert_int_eq(json_array_size(json_object_get(j, "changes")), 1);
  json_decref(j);

  const char *bad[] = {"/v1/changes?since=x",
                       "/v1/changes?limit=0",
                       "/v1/changes?limit=10001",
                       "/v1/changes?wait=61",
                       "/v1/changes?include_values=maybe",
                       "/v1/changes?since=%zz"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    j = get_json(bad[i], NULL, &st);
    ck_assert_msg(st == 400, "%s gave %ld", bad[i], st);
    ck_assert_ptr_nonnull(json_object_get(json_object_get(j, "error"), "code"));
    json_decref(j);
  }
  ck_assert_int_eq(e2e_http(&node, "POST", "/v1/changes", NULL, "", 0, &r), 0);
  ck_assert_int_eq(r.status, 405);
  e2e_resp_free(&r);
  stop_node();
}
END_TEST

/* ---- long-poll ------------------------------------------------------------ */

typedef struct poll_arg {
  char path[128];
  long status;
  json_t *j;
} poll_arg;

static void *poll_main(void *arg) {
  poll_arg *p = arg;
  e2e_resp r;
  if (e2e_http(&node, "GET", p->path, NULL, NULL, 0, &r) == 0) {
    p->status = r.status;
    p->j = json_loads(r.body ? r.body : "", 0, NULL);
    e2e_resp_free(&r);
  }
  return NULL;
}

START_TEST(long_poll_answers_when_a_change_arrives) {
  start_node(NULL);
  ck_assert_int_eq(put("x", "1"), 201);
  /* nothing after LSN 1: the wait ends with an empty page */
  long st;
  json_t *j = get_json("/v1/changes?since=1&wait=1", NULL, &st);
  ck_assert_int_eq(st, 200);
  ck_assert_int_eq(json_array_size(json_object_get(j, "changes")), 0);
  json_decref(j);
  /* a change arrives during the wait: the page holds it */
  poll_arg p = {.path = "/v1/changes?since=1&wait=30&include_values=1"};
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, poll_main, &p), 0);
  nap_ms(100); /* usually suspended by now; the result is the same either way */
  ck_assert_int_eq(put("y", "2"), 201);
  pthread_join(t, NULL);
  ck_assert_int_eq(p.status, 200);
  ck_assert_ptr_nonnull(p.j);
  json_t *ch = json_object_get(p.j, "changes");
  ck_assert_int_eq(json_array_size(ch), 1);
  ck_assert_str_eq(json_string_value(json_object_get(json_array_get(ch, 0), "key")), "y");
  json_decref(p.j);
  /* a prefix filter keeps waiting past other keys */
  poll_arg q = {.path = "/v1/changes?since=2&wait=30&prefix=want/"};
  ck_assert_int_eq(pthread_create(&t, NULL, poll_main, &q), 0);
  nap_ms(100);
  ck_assert_int_eq(put("other", "1"), 201);
  ck_assert_int_eq(put("want%2Fme", "1"), 201);
  pthread_join(t, NULL);
  ck_assert_int_eq(q.status, 200);
  ch = json_object_get(q.j, "changes");
  ck_assert_int_eq(json_array_size(ch), 1);
  ck_assert_str_eq(json_string_value(json_object_get(json_array_get(ch, 0), "key")), "want/me");
  json_decref(q.j);
  stop_node();
}
END_TEST

/* ---- SSE -------------------------------------------------------------------- */

START_TEST(sse_streams_changes_with_ids_and_resumes) {
  const char *args[] = {"--sse-heartbeat-s", "1", NULL};
  start_node(args);
  ck_assert_int_eq(put("k1", "v"), 201);
  /* from now: the head and the ready event come at once, before any change */
  sse *s = sse_open("/v1/changes", NULL, NULL);
  ck_assert(sse_wait_for(s, "event: ready\ndata: {\"since\":1,"));
  pthread_mutex_lock(&s->mu);
  ck_assert_int_eq(s->len, strlen(s->buf));
  ck_assert_ptr_null(strstr(s->buf, "k1")); /* from now: the old change is not sent */
  pthread_mutex_unlock(&s->mu);
  ck_assert_int_eq(put("k2", "v"), 201);
  ck_assert(sse_wait_for(s, "\"key\":\"k2\""));
  ck_assert(sse_wait_for(s, "\nid: 2\n\n"));
  const char *batch = "{\"ops\":[{\"op\":\"put\",\"key\":\"b1\",\"value\":\"x\"},"
                      "{\"op\":\"put\",\"key\":\"b2\",\"value\":\"y\"}]}";
  const char *jh[] = {"Content-Type: application/json", NULL};
  e2e_resp r;
  ck_assert_int_eq(e2e_http(&node, "POST", "/v1/batch", jh, batch, strlen(batch), &r), 0);
  e2e_resp_free(&r);
  ck_assert(sse_wait_for(s, "\nid: 3\n\n"));
  ck_assert_uint_eq(sse_count(s, "id: 3"), 1); /* one id per batch, on its last change */
  pthread_mutex_lock(&s->mu);
  const char *b1 = strstr(s->buf, "\"key\":\"b1\""), *b2 = strstr(s->buf, "\"key\":\"b2\"");
  const char *id3 = strstr(s->buf, "id: 3");
  ck_assert(b1 && b2 && id3 && b1 < b2 && b2 < id3);
  pthread_mutex_unlock(&s->mu);
  ck_assert(sse_wait_for(s, ": heartbeat\n\n")); /* heartbeats every second here */
  sse_close(s);

  /* Last-Event-ID resumes after that LSN and wins over since */
  s = sse_open("/v1/changes?since=0", "Last-Event-ID: 2", NULL);
  ck_assert(sse_wait_for(s, "\nid: 3\n\n"));
  ck_assert_ptr_null(strstr(s->buf, "\"key\":\"k2\""));
  ck_assert_ptr_null(strstr(s->buf, "\"key\":\"k1\""));
  sse_close(s);
  /* since=0 replays everything kept, values on request */
  s = sse_open("/v1/changes?since=0&include_values=1", NULL, NULL);
  ck_assert(sse_wait_for(s, "\nid: 3\n\n"));
  ck_assert(sse_wait_for(s, "\"key\":\"k1\""));
  ck_assert(sse_wait_for(s, "\"value\":\"y\",\"encoding\":\"utf-8\""));
  sse_close(s);
  /* a prefix filter still moves the resume point on (id-only events) */
  s = sse_open("/v1/changes?since=0&prefix=zz", NULL, NULL);
  ck_assert(sse_wait_for(s, "id: 3\n\n"));
  ck_assert_ptr_null(strstr(s->buf, "event: change"));
  sse_close(s);
  stop_node();
}
END_TEST

START_TEST(below_the_floor_gives_410_with_the_oldest_since) {
  /* The stub transport fails work at once and a one-entry outbox compacts
   * it: the floor rises, as it would after pruning acknowledged work. */
  const char *args[] = {"--enable-transport",
                        "--max-retries",
                        "1",
                        "--retry-base-ms",
                        "1",
                        "--tick-interval-ms",
                        "10",
                        "--ack-timeout-ms",
                        "1",
                        "--outbox-max",
                        "1",
                        NULL};
  start_node(args);
  for (int i = 0; i < 5; i++)
    ck_assert_int_le(put("hot", "v"), 201);
  long st = 0;
  json_t *j = NULL;
  long deadline = now_ms() + E2E_WAIT_MS;
  while (now_ms() < deadline) { /* bounded: until the tick has compacted */
    ck_assert_int_le(put("cold", "v"), 201);
    j = get_json("/v1/changes?since=0", NULL, &st);
    if (st == 410) break;
    json_decref(j);
    j = NULL;
    nap_ms(20);
  }
  ck_assert_int_eq(st, 410);
  json_t *err = json_object_get(j, "error");
  ck_assert_str_eq(json_string_value(json_object_get(err, "code")), "gone");
  json_int_t oldest = json_integer_value(json_object_get(err, "oldest_since"));
  ck_assert_int_gt(oldest, 0);
  ck_assert_int_eq(json_integer_value(json_object_get(j, "oldest_since")), oldest);
  json_decref(j);
  /* since=oldest is served; the tick may raise the floor again meanwhile,
   * and then the next 410 names a newer oldest (bounded retries) */
  for (int i = 0; i < 100; i++) {
    char path[96];
    snprintf(path, sizeof path, "/v1/changes?since=%lld", (long long)oldest);
    j = get_json(path, NULL, &st);
    if (st == 200) break;
    ck_assert_int_eq(st, 410);
    json_int_t again = json_integer_value(json_object_get(j, "oldest_since"));
    ck_assert_int_gt(again, oldest);
    oldest = again;
    json_decref(j);
    j = NULL;
  }
  ck_assert_int_eq(st, 200);
  json_decref(j);
  /* a stream from below the floor is refused the same way, before any event */
  j = get_json("/v1/changes?since=0", (const char *[]){"Accept: text/event-stream", NULL}, &st);
  ck_assert_int_eq(st, 410);
  json_decref(j);
  stop_node();
}
END_TEST

START_TEST(streams_are_bounded_and_need_the_token) {
  const char *args[] = {"--max-streams", "2", "--auth-token", "s3cret", NULL};
  start_node(args);
  long st;
  json_t *j = get_json("/v1/changes", (const char *[]){"Accept: text/event-stream", NULL}, &st);
  ck_assert_int_eq(st, 401);
  json_decref(j);
  const char *auth = "Authorization: Bearer s3cret";
  sse *a = sse_open("/v1/changes", auth, NULL), *b = sse_open("/v1/changes", auth, NULL);
  ck_assert(sse_wait_for(a, "event: ready"));
  ck_assert(sse_wait_for(b, "event: ready"));
  j = get_json("/v1/changes", (const char *[]){"Accept: text/event-stream", auth, NULL}, &st);
  ck_assert_int_eq(st, 503);
  ck_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "error"), "code")),
                   "too_many_streams");
  json_decref(j);
  e2e_resp m;
  const char *mh[] = {auth, NULL};
  ck_assert_int_eq(e2e_http(&node, "GET", "/metrics", mh, NULL, 0, &m), 0);
  ck_assert_ptr_nonnull(strstr(m.body, "\nsoftadastra_feed_streams_open 2\n"));
  ck_assert_ptr_nonnull(strstr(m.body, "\nsoftadastra_feed_streams_rejected_total 1\n"));
  ck_assert_ptr_nonnull(strstr(m.body, "route=\"/v1/changes\""));
  e2e_resp_free(&m);
  /* plain pages are not streams: still served */
  j = get_json("/v1/changes", (const char *[]){auth, NULL}, &st);
  ck_assert_int_eq(st, 200);
  json_decref(j);
  sse_close(a); /* a slot frees once the node notices (at the latest at a heartbeat) */
  long deadline = now_ms() + E2E_WAIT_MS;
  sse *c = NULL;
  while (now_ms() < deadline) {
    c = sse_open("/v1/changes", auth, NULL);
    if (sse_wait_for(c, "event: ready")) break;
    sse_close(c);
    c = NULL;
    nap_ms(200);
  }
  ck_assert_ptr_nonnull(c);
  sse_close(c);
  sse_close(b);
  stop_node();
}
END_TEST

/* 20 streams on a node with 2 worker threads: normal requests go on. */
START_TEST(twenty_streams_do_not_block_normal_requests) {
  const char *args[] = {"--threads", "2", "--max-streams", "32", NULL};
  start_node(args);
  /* baseline: 200 requests without streams */
  long t0 = now_ms();
  for (int i = 0; i < 200; i++) {
    e2e_resp r;
    ck_assert_int_eq(e2e_http(&node, "GET", "/v1/status", NULL, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 200);
    e2e_resp_free(&r);
  }
  long base = now_ms() - t0;
  sse *s[20];
  for (int i = 0; i < 20; i++)
    s[i] = sse_open("/v1/changes", NULL, NULL);
  for (int i = 0; i < 20; i++)
    ck_assert(sse_wait_for(s[i], "event: ready"));
  t0 = now_ms();
  for (int i = 0; i < 200; i++) {
    e2e_resp r;
    ck_assert_int_eq(e2e_http(&node, "GET", "/v1/status", NULL, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 200);
    e2e_resp_free(&r);
  }
  long with = now_ms() - t0;
  /* every write reaches every stream */
  t0 = now_ms();
  for (int i = 0; i < 50; i++) {
    char k[32];
    snprintf(k, sizeof k, "k%d", i);
    ck_assert_int_eq(put(k, "v"), 201);
  }
  long writes = now_ms() - t0;
  for (int i = 0; i < 20; i++)
    ck_assert(sse_wait_for(s[i], "\"key\":\"k49\""));
  long fanout = now_ms() - t0;
  fprintf(stderr,
          "feed figures (threads=2): 200 GET /v1/status %ld ms without streams, %ld ms with 20 "
          "open streams; 50 PUTs %ld ms; all 20 streams saw the 50th write after %ld ms\n",
          base, with, writes, fanout);
  for (int i = 0; i < 20; i++)
    sse_close(s[i]);
  stop_node();
}
END_TEST

START_TEST(sigterm_ends_open_streams_and_long_polls_cleanly) {
  start_node(NULL);
  sse *s[3];
  for (int i = 0; i < 3; i++) {
    s[i] = sse_open("/v1/changes", NULL, NULL);
    ck_assert(sse_wait_for(s[i], "event: ready"));
  }
  poll_arg p = {.path = "/v1/changes?since=now&wait=60"};
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, poll_main, &p), 0);
  nap_ms(200);
  ck_assert_int_eq(e2e_node_stop(&node, SIGTERM), 0); /* -1 if it had to be killed */
  for (int i = 0; i < 3; i++) {
    ck_assert(sse_wait_end(s[i]));
    ck_assert(sse_wait_for(s[i], "event: bye"));
    ck_assert_int_eq(s[i]->rc, CURLE_OK); /* the chunked body was ended properly */
    ck_assert_int_eq(s[i]->status, 200);
    sse_close(s[i]);
  }
  pthread_join(t, NULL);
  ck_assert_int_eq(p.status, 200); /* the long-poll got its (empty) page */
  json_decref(p.j);
  e2e_node_cleanup(&node);
}
END_TEST

/* ---- softadastra watch ------------------------------------------------------ */

START_TEST(watch_prints_changes_as_they_happen_and_stops_on_sigint) {
  start_node(NULL);
  ck_assert_int_eq(put("a%2F0", "old"), 201);
  char outp[400];
  snprintf(outp, sizeof outp, "%s/watch.out", node.dir);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    int fd = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) _exit(127);
    dup2(fd, 1);
    execl(e2e_bin(), e2e_bin(), "watch", "--url", node.url, "--prefix", "a/", "--since", "1",
          (char *)NULL);
    _exit(127);
  }
  /* --since 1: whenever watch connects, it gets every change after a/0 */
  ck_assert_int_eq(put("a%2F1", "one"), 201);
  ck_assert_int_eq(put("b%2F1", "other"), 201);
  ck_assert_int_eq(put("a%2F2", "two"), 201);
  char *out = NULL;
  long deadline = now_ms() + E2E_WAIT_MS;
  while (now_ms() < deadline) {
    free(out);
    out = e2e_read_file(outp, NULL);
    if (out && strstr(out, "a/2")) break;
    nap_ms(20);
  }
  ck_assert_msg(out && strstr(out, "a/2"), "watch printed: %s", out ? out : "(nothing)");
  ck_assert_ptr_nonnull(strstr(out, "lsn 2 "));
  ck_assert_ptr_nonnull(strstr(out, "put     a/1  (version 1, 3 bytes)"));
  ck_assert_ptr_null(strstr(out, "b/1"));
  ck_assert_ptr_null(strstr(out, "a/0"));
  int lines = 0;
  for (const char *p = out; *p; p++)
    lines += *p == '\n';
  ck_assert_int_eq(lines, 2);
  free(out);
  ck_assert_int_eq(kill(pid, SIGINT), 0);
  int st = -1;
  deadline = now_ms() + E2E_WAIT_MS;
  while (now_ms() < deadline && waitpid(pid, &st, WNOHANG) != pid)
    nap_ms(10);
  ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "watch did not exit 0 after SIGINT");
  stop_node();
}
END_TEST

int main(void) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
  Suite *su = suite_create("feed");
  TCase *t = tcase_create("changes");
  tcase_set_timeout(t, 120);
  tcase_add_test(t, page_lists_changes_in_order_with_values);
  tcase_add_test(t, long_poll_answers_when_a_change_arrives);
  tcase_add_test(t, sse_streams_changes_with_ids_and_resumes);
  tcase_add_test(t, below_the_floor_gives_410_with_the_oldest_since);
  tcase_add_test(t, streams_are_bounded_and_need_the_token);
  tcase_add_test(t, twenty_streams_do_not_block_normal_requests);
  tcase_add_test(t, sigterm_ends_open_streams_and_long_polls_cleanly);
  tcase_add_test(t, watch_prints_changes_as_they_happen_and_stops_on_sigint);
  suite_add_tcase(su, t);
  SRunner *r = srunner_create(su);
  srunner_run_all(r, CK_NORMAL);
  int failed = srunner_ntests_failed(r);
  srunner_free(r);
  curl_global_cleanup();
  return failed ? 1 : 0;
}
