/*
 * test_api_defer.c -- deferred writes (api.h): PUT and DELETE of a key with
 * can_defer are queued on the node and answered once settled.
 *
 * Checks: the placeholder carries the write and no answer; notify is called
 * exactly once whether the write settles before or after api_write_arm; the
 * final answer equals the blocking path's (201/200 JSON with ETag, 412, 404);
 * a write refused at once (413, 400, a bad Content-Type) is answered
 * directly; a deferred PUT keeps its Content-Type even when the request's
 * header is gone before the write settles; the metrics count a deferred
 * write once, when it is answered.
 */
#define _GNU_SOURCE
#include <check.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "api.h"
#include "softadastra.h"

static sa_client *client;
static api_ctx *ctx;

typedef struct waiter {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int notified;
} waiter;

static void on_notify(void *cls) {
  waiter *w = cls;
  pthread_mutex_lock(&w->mu);
  w->notified++;
  pthread_cond_broadcast(&w->cv);
  pthread_mutex_unlock(&w->mu);
}

static const char *hdr_none(void *cls, const char *name) {
  (void)cls;
  (void)name;
  return NULL;
}

static const char *hdr_if_none_match(void *cls, const char *name) {
  (void)cls;
  return strcasecmp(name, "If-None-Match") == 0 ? "*" : NULL;
}

/* A Content-Type header whose bytes the test overwrites once the request
 * is queued (a server may reuse them before the write settles). */
static char ctype_buf[64];
static const char *hdr_ctype(void *cls, const char *name) {
  (void)cls;
  return strcasecmp(name, "Content-Type") == 0 ? ctype_buf : NULL;
}

static const char *resp_header(const api_response *r, const char *name) {
  for (size_t i = 0; i < r->n_headers; i++)
    if (strcasecmp(r->headers[i].name, name) == 0) return r->headers[i].value;
  return NULL;
}

static bool body_has(const api_response *r, const char *needle) {
  return r->body && memmem(r->body, r->body_len, needle, strlen(needle)) != NULL;
}

/* Runs one request with can_defer.  arm_late: wait until the write has
 * surely settled before arming (notify then runs inside api_write_arm). */
static api_response *run(const char *method, const char *target, const char *body,
                         api_header_fn hdr, bool arm_late, bool *deferred) {
  api_request req = {.method = method,
                     .target = target,
                     .header = hdr,
                     .body = body,
                     .body_len = body ? strlen(body) : 0,
                     .can_defer = true};
  api_response *r = api_handle(ctx, &req);
  *deferred = r->write != NULL;
  if (!r->write) return r;
  memset(ctype_buf, 'X', sizeof ctype_buf - 1); /* the header's bytes are gone */
  ck_assert_int_eq(r->body_len, 0);             /* a placeholder, no answer yet */
  api_write *w = r->write;
  r->write = NULL;
  api_response_free(r);
  waiter wt = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
  if (arm_late) {
    ck_assert_int_eq(sa_client_flush(client, NULL), 0); /* queued after the write: it settled */
    api_write_arm(w, on_notify, &wt);
    ck_assert_int_eq(wt.notified, 1); /* from the arming thread itself */
  } else {
    api_write_arm(w, on_notify, &wt);
  }
  pthread_mutex_lock(&wt.mu);
  while (wt.notified == 0)
    pthread_cond_wait(&wt.cv, &wt.mu);
  pthread_mutex_unlock(&wt.mu);
  usleep(20000);
  ck_assert_int_eq(wt.notified, 1); /* exactly once */
  return api_write_finish(ctx, w, &req);
}

static void setup(void) {
  sa_options o = sa_options_memory("api-defer");
  o.max_value_bytes = 64;
  sa_error err = {0};
  ck_assert_msg(sa_client_open(&client, &o, &err) == 0, "%s", err.message);
  api_config cfg = {.client = client, .max_value_bytes = 64, .max_batch_bytes = 4096};
  ck_assert_int_eq(api_ctx_create(&cfg, &ctx), 0);
}

static void teardown(void) {
  api_ctx_destroy(ctx);
  sa_client_close(client);
}

START_TEST(put_and_delete_deferred) {
  for (int late = 0; late < 2; late++) {
    bool d;
    api_response *r = run("PUT", "/v1/store/a%2Fb", "hello", hdr_none, late, &d);
    ck_assert(d);
    ck_assert_int_eq(r->status, late ? 200 : 201);
    ck_assert(body_has(r, "\"key\":\"a/b\""));
    ck_assert(body_has(r, "\"size\":5"));
    ck_assert_str_eq(resp_header(r, "ETag"), late ? "\"2\"" : "\"1\"");
    api_response_free(r);
  }
  sa_value v;
  ck_assert_int_eq(sa_client_get(client, "a/b", &v, NULL), 0);
  ck_assert_int_eq(v.len, 5);
  ck_assert_int_eq(memcmp(v.data, "hello", 5), 0);
  sa_value_free(&v);

  bool d;
  api_response *r = run("PUT", "/v1/store/a%2Fb", "again", hdr_if_none_match, false, &d);
  ck_assert(d);
  ck_assert_int_eq(r->status, 412);
  ck_assert(body_has(r, "already exists"));
  api_response_free(r);

  r = run("DELETE", "/v1/store/a%2Fb", NULL, hdr_none, false, &d);
  ck_assert(d);
  ck_assert_int_eq(r->status, 200);
  ck_assert(body_has(r, "\"deleted\":true"));
  api_response_free(r);
  r = run("DELETE", "/v1/store/a%2Fb", NULL, hdr_none, true, &d);
  ck_assert(d);
  ck_assert_int_eq(r->status, 404);
  api_response_free(r);
}
END_TEST

START_TEST(content_type_deferred) {
  for (int late = 0; late < 2; late++) {
    snprintf(ctype_buf, sizeof ctype_buf, "%s", late ? "image/png" : "application/json");
    bool d;
    api_response *r = run("PUT", "/v1/store/t", "{}", hdr_ctype, late, &d);
    ck_assert(d);
    ck_assert_msg(body_has(r, late ? "\"content_type\":\"image/png\""
                                   : "\"content_type\":\"application/json\""),
                  "%.*s", (int)r->body_len, r->body);
    api_response_free(r);
    sa_value v;
    ck_assert_int_eq(sa_client_get(client, "t", &v, NULL), 0);
    ck_assert_str_eq(v.content_type, late ? "image/png" : "application/json");
    sa_value_free(&v);
  }
  snprintf(ctype_buf, sizeof ctype_buf, "text/plain\x7f");
  bool d;
  api_response *r = run("PUT", "/v1/store/t", "x", hdr_ctype, false, &d);
  ck_assert(!d);
  ck_assert_int_eq(r->status, 400);
  ck_assert(body_has(r, "bad_content_type"));
  api_response_free(r);
  sa_value v;
  ck_assert_int_eq(sa_client_get(client, "t", &v, NULL), 0);
  ck_assert_str_eq(v.data, "{}");
  sa_value_free(&v);
}
END_TEST

START_TEST(refused_at_once) {
  bool d;
  api_response *r = run("PUT", "/v1/store/k",
                        "0123456789012345678901234567890123456789"
                        "0123456789012345678901234567890123456789",
                        hdr_none, false, &d);
  ck_assert(!d);
  ck_assert_int_eq(r->status, 413);
  api_response_free(r);
  r = run("PUT", "/v1/store/%FF", "x", hdr_none, false, &d);
  ck_assert(!d);
  ck_assert_int_eq(r->status, 400);
  api_response_free(r);
}
END_TEST

START_TEST(counted_once_when_answered) {
  bool d;
  api_response *r = run("PUT", "/v1/store/m", "1", hdr_none, false, &d);
  ck_assert(d);
  api_response_free(r);
  api_request mreq = {.method = "GET", .target = "/metrics"};
  r = api_handle(ctx, &mreq);
  ck_assert_int_eq(r->status, 200);
  const char *line =
      "softadastra_http_requests_total{route=\"/v1/store/{key}\",status=\"201\"} 1\n";
  ck_assert_msg(body_has(r, line), "metrics lack %s", line);
  api_response_free(r);
}
END_TEST

int main(void) {
  Suite *s = suite_create("api_defer");
  TCase *tc = tcase_create("defer");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, put_and_delete_deferred);
  tcase_add_test(tc, refused_at_once);
  tcase_add_test(tc, content_type_deferred);
  tcase_add_test(tc, counted_once_when_answered);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
