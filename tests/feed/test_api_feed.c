/*
 * test_api_feed.c -- api/api_feed.c without a socket, against a memory
 * node: query parsing and its errors, the start position (since, "now",
 * Last-Event-ID), the SSE text (ids on the last change of an LSN, id-only
 * events past a prefix filter), the finite SSE body and the blocking
 * long-poll of a caller that cannot defer, and the deferred modes a server
 * drives (placeholder, stream head, stream_next).
 */
#include "api_feed.h"

#include <check.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static sa_client *c;

typedef struct hdrs {
  const char *accept;  /* Accept, or NULL */
  const char *last_id; /* Last-Event-ID, or NULL */
} hdrs;

static const char *hdr_fn(void *cls, const char *name) {
  const hdrs *h = cls;
  if (!strcmp(name, "Accept")) return h->accept;
  if (!strcmp(name, "Last-Event-ID")) return h->last_id;
  return NULL;
}

static void setup(void) {
  sa_options o = sa_options_memory("feed-unit");
  sa_error e;
  ck_assert_msg(sa_client_open(&c, &o, &e) == 0, "%s", e.message);
  ck_assert_int_eq(sa_client_put(c, "a/1", "one", NULL), 0); /* lsn 1 */
  sa_batch_op ops[] = {{SA_OP_PUT, "b/1", "x", 1}, {SA_OP_PUT, "a/2", "y", 1}};
  ck_assert_int_eq(sa_client_batch(c, ops, 2, NULL, NULL), 0); /* lsn 2 */
}

static void teardown(void) {
  sa_client_close(c);
}

static api_response *handle(const char *query, hdrs *h, bool defer, api_feed **out) {
  api_feed *dummy = NULL;
  api_response *r = api_feed_handle(c, query, hdr_fn, h, defer, out ? out : &dummy);
  ck_assert_ptr_nonnull(r);
  if (!out) ck_assert_ptr_null(dummy);
  return r;
}

START_TEST(bad_queries_are_400) {
  const char *bad[] = {"since=abc", "since=-1", "limit=0",          "limit=10001",
                       "wait=61",   "wait=x",   "include_values=2", "since=%g1"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    hdrs h = {0};
    api_response *r = handle(bad[i], &h, true, NULL);
    ck_assert_msg(r->status == 400, "%s gave %d", bad[i], r->status);
    ck_assert_ptr_nonnull(strstr(r->body, "\"error\""));
    api_response_free(r);
  }
  hdrs h = {.accept = "text/event-stream", .last_id = "nope"};
  api_response *r = handle(NULL, &h, true, NULL);
  ck_assert_int_eq(r->status, 400);
  ck_assert_ptr_nonnull(strstr(r->body, "Last-Event-ID"));
  api_response_free(r);
}
END_TEST

START_TEST(page_from_since_with_prefix) {
  hdrs h = {0};
  api_response *r = handle("since=1&prefix=a%2F&include_values=1", &h, true, NULL);
  ck_assert_int_eq(r->status, 200);
  ck_assert_ptr_nonnull(strstr(r->body, "\"key\":\"a/2\""));
  ck_assert_ptr_null(strstr(r->body, "\"key\":\"b/1\""));
  ck_assert_ptr_nonnull(strstr(r->body, "\"value\":\"y\""));
  ck_assert_ptr_nonnull(strstr(r->body, "\"next_since\":2"));
  api_response_free(r);
  r = handle("since=now", &h, true, NULL);
  ck_assert_ptr_nonnull(strstr(r->body, "\"changes\":[]"));
  api_response_free(r);
}
END_TEST

START_TEST(finite_sse_body_without_defer) {
  hdrs h = {.accept = "text/event-stream", .last_id = "0"};
  api_response *r = handle("since=2", &h, false, NULL); /* Last-Event-ID wins */
  ck_assert_int_eq(r->status, 200);
  ck_assert_str_eq(r->content_type, "text/event-stream; charset=utf-8");
  const char *b = r->body;
  ck_assert_ptr_nonnull(strstr(b, "retry: 2000\n"));
  /* the ready event names the epoch a resume must come back with (16 hex digits) */
  const char *ready = strstr(b, "event: ready\ndata: {\"since\":0,\"last_lsn\":2,\"epoch\":\"");
  ck_assert_ptr_nonnull(ready);
  ck_assert_ptr_nonnull(strstr(ready, "\"}\n\n"));
  /* lsn 1 then the batch: the id only on the batch's last change */
  const char *one = strstr(b, "\"key\":\"a/1\""), *id1 = strstr(b, "\nid: 1\n\n");
  const char *b1 = strstr(b, "\"key\":\"b/1\""), *a2 = strstr(b, "\"key\":\"a/2\"");
  const char *id2 = strstr(b, "\nid: 2\n\n");
  ck_assert(one && id1 && b1 && a2 && id2);
  ck_assert(one < id1 && id1 < b1 && b1 < a2 && a2 < id2);
  ck_assert_ptr_null(strstr(id1 + 3, "id: 1")); /* once */
  ck_assert_ptr_null(strstr(id2 + 3, "id: "));
  api_response_free(r);
}
END_TEST

START_TEST(stream_next_moves_ids_past_filtered_changes) {
  hdrs h = {.accept = "text/event-stream"};
  api_feed *f = NULL;
  api_response *r = handle("since=0&prefix=zzz", &h, true, &f);
  ck_assert_ptr_nonnull(f);
  ck_assert_int_eq(api_feed_get_mode(f), API_FEED_STREAM);
  ck_assert_int_eq(r->status, 200);
  ck_assert_ptr_null(r->body);
  api_response_free(r);
  char *buf;
  size_t len;
  ck_assert_int_eq(api_feed_stream_next(f, &buf, &len), 0);
  ck_assert_str_eq(buf, "id: 2\n\n"); /* nothing matched, the resume point moves on */
  free(buf);
  ck_assert_uint_eq(api_feed_position(f), 2);
  ck_assert_uint_eq(api_feed_seen(f), 2);
  ck_assert_int_eq(api_feed_stream_next(f, &buf, &len), 0);
  ck_assert_ptr_null(buf); /* caught up */
  ck_assert_int_eq(sa_client_put(c, "zzz", "1", NULL), 0);
  ck_assert_int_eq(api_feed_stream_next(f, &buf, &len), 0);
  ck_assert_ptr_nonnull(
      strstr(buf, "event: change\ndata: {\"lsn\":3,\"key\":\"zzz\",\"op\":\"put\""));
  ck_assert_ptr_nonnull(strstr(buf, "\nid: 3\n\n"));
  free(buf);
  api_feed_free(f);
}
END_TEST

START_TEST(deferred_wait_gives_a_placeholder_then_a_page) {
  hdrs h = {0};
  api_feed *f = NULL;
  api_response *r = handle("since=2&wait=30", &h, true, &f);
  ck_assert_ptr_nonnull(f); /* nothing yet: the server waits */
  ck_assert_int_eq(api_feed_get_mode(f), API_FEED_WAIT);
  ck_assert_uint_eq(api_feed_wait_ms(f), 30000);
  ck_assert_int_eq(r->status, 200);
  api_response_free(r);
  ck_assert_ptr_null(api_feed_page(f, false)); /* still nothing */
  ck_assert_int_eq(sa_client_put(c, "new", "1", NULL), 0);
  r = api_feed_page(f, false);
  ck_assert_ptr_nonnull(r);
  ck_assert_ptr_nonnull(strstr(r->body, "\"key\":\"new\""));
  api_response_free(r);
  r = api_feed_page(f, true); /* final: an empty page */
  ck_assert_ptr_nonnull(strstr(r->body, "\"changes\":[]"));
  api_response_free(r);
  api_feed_free(f);
  /* with something there already, the answer comes at once */
  f = NULL;
  r = handle("since=1&wait=30", &h, true, &f);
  ck_assert_ptr_null(f);
  ck_assert_ptr_nonnull(strstr(r->body, "\"key\":\"a/2\""));
  api_response_free(r);
}
END_TEST

static void *writer(void *arg) {
  (void)arg;
  usleep(50 * 1000);
  sa_client_put(c, "late", "1", NULL);
  return NULL;
}

START_TEST(blocking_wait_without_defer) {
  hdrs h = {0};
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, writer, NULL), 0);
  api_response *r = handle("since=2&wait=30", &h, false, NULL);
  pthread_join(t, NULL);
  ck_assert_int_eq(r->status, 200);
  ck_assert_ptr_nonnull(strstr(r->body, "\"key\":\"late\""));
  api_response_free(r);
  r = handle("since=3&wait=1", &h, false, NULL); /* nothing comes: empty after the wait */
  ck_assert_ptr_nonnull(strstr(r->body, "\"changes\":[]"));
  api_response_free(r);
}
END_TEST

int main(void) {
  Suite *s = suite_create("api_feed");
  TCase *t = tcase_create("feed");
  tcase_add_checked_fixture(t, setup, teardown);
  tcase_set_timeout(t, 60);
  tcase_add_test(t, bad_queries_are_400);
  tcase_add_test(t, page_from_since_with_prefix);
  tcase_add_test(t, finite_sse_body_without_defer);
  tcase_add_test(t, stream_next_moves_ids_past_filtered_changes);
  tcase_add_test(t, deferred_wait_gives_a_placeholder_then_a_page);
  tcase_add_test(t, blocking_wait_without_defer);
  suite_add_tcase(s, t);
  SRunner *r = srunner_create(s);
  srunner_run_all(r, CK_NORMAL);
  int failed = srunner_ntests_failed(r);
  srunner_free(r);
  return failed ? 1 : 0;
}
