/*
 * test_srv_http.c -- the front loop's request parser (server/srv_http.c):
 * the requests it serves, every prefix of them waiting for more, and each
 * kind of request it must leave to libmicrohttpd (srv_http.h lists them).
 */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "srv_http.h"

#define HEAD_MAX 16384
#define BODY_MAX 1024
#define CAP 16384

static srv_http_verdict parse(const char *s, srv_http_req *r) {
  return srv_http_parse(s, strlen(s), HEAD_MAX, BODY_MAX, CAP, r);
}

static void expect_pass(const char *why, const char *s) {
  srv_http_req r;
  srv_http_verdict v = parse(s, &r);
  ck_assert_msg(v == SRV_HTTP_PASS, "%s: verdict %d, want PASS", why, (int)v);
}

START_TEST(test_put_is_ours) {
  const char *s = "PUT /v1/store/settings/theme?x=1 HTTP/1.1\r\nHost: a\r\n"
                  "Content-Length: 4\r\nAuthorization:  Bearer t \r\n\r\ndark";
  srv_http_req r;
  ck_assert_int_eq(parse(s, &r), SRV_HTTP_OURS);
  ck_assert_uint_eq(r.method_len, 3);
  ck_assert(strncmp(r.method, "PUT", 3) == 0);
  ck_assert_uint_eq(r.target_len, strlen("/v1/store/settings/theme?x=1"));
  ck_assert(strncmp(r.target, "/v1/store/settings/theme?x=1", r.target_len) == 0);
  ck_assert_uint_eq(r.n_fields, 3);
  const srv_http_field *a = srv_http_find(&r, "authorization");
  ck_assert_ptr_nonnull(a);
  ck_assert_uint_eq(a->value_len, strlen("Bearer t")); /* whitespace trimmed */
  ck_assert(strncmp(a->value, "Bearer t", a->value_len) == 0);
  ck_assert_ptr_null(srv_http_find(&r, "Origin"));
  ck_assert_uint_eq(r.body_len, 4);
  ck_assert(memcmp(r.body, "dark", 4) == 0);
  ck_assert_uint_eq(r.total, strlen(s));
  ck_assert(!r.close);
}
END_TEST

/* Every prefix of a request the loop serves waits for more; the whole is
 * ours; bytes after it (the next pipelined request) are not part of it. */
START_TEST(test_prefixes_wait) {
  const char *reqs[] = {
      "GET /v1/store/k HTTP/1.1\r\nHost: a\r\n\r\n",
      "DELETE /v1/store/k HTTP/1.1\r\nhost:a\r\nConnection: keep-alive, close\r\n\r\n",
      "PUT /v1/store/%2Fk HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789",
      "PUT /v1/store/k HTTP/1.1\r\nHost: a\r\n\r\n",
  };
  for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
    size_t n = strlen(reqs[i]);
    srv_http_req r;
    for (size_t p = 0; p < n; p++) {
      srv_http_verdict v = srv_http_parse(reqs[i], p, HEAD_MAX, BODY_MAX, CAP, &r);
      ck_assert_msg(v == SRV_HTTP_MORE, "request %zu, prefix %zu: verdict %d", i, p, (int)v);
    }
    char two[512];
    snprintf(two, sizeof two, "%sGET /v1/status HTTP/1.1\r\n", reqs[i]);
    ck_assert_int_eq(parse(two, &r), SRV_HTTP_OURS);
    ck_assert_uint_eq(r.total, n);
  }
  srv_http_req r;
  ck_assert_int_eq(parse(reqs[1], &r), SRV_HTTP_OURS);
  ck_assert(r.close);
}
END_TEST

START_TEST(test_passed_to_libmicrohttpd) {
  expect_pass("other method", "HEAD /v1/store/k HTTP/1.1\r\nHost: a\r\n\r\n");
  expect_pass("lower-case method", "get /v1/store/k HTTP/1.1\r\nHost: a\r\n\r\n");
  expect_pass("other path", "GET /v1/status HTTP/1.1\r\nHost: a\r\n\r\n");
  expect_pass("the list", "GET /v1/store HTTP/1.1\r\nHost: a\r\n\r\n");
  expect_pass("no key", "GET /v1/store/ HTTP/1.1\r\nHost: a\r\n\r\n");
  expect_pass("absolute form", "GET http://a/v1/store/k HTTP/1.1\r\nHost: a\r\n\r\n");
  expect_pass("HTTP/1.0", "GET /v1/store/k HTTP/1.0\r\nHost: a\r\n\r\n");
  expect_pass("control byte in target", "GET /v1/store/k\x01 HTTP/1.1\r\nHost: a\r\n\r\n");
  expect_pass("no Host", "GET /v1/store/k HTTP/1.1\r\nX: y\r\n\r\n");
  expect_pass("two Hosts", "GET /v1/store/k HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
  expect_pass("chunked",
              "PUT /v1/store/k HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
  expect_pass("Expect", "PUT /v1/store/k HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                        "Content-Length: 1\r\n\r\n");
  expect_pass("Upgrade", "GET /v1/store/k HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\n\r\n");
  expect_pass("Connection option",
              "GET /v1/store/k HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n\r\n");
  expect_pass("obs-fold", "GET /v1/store/k HTTP/1.1\r\nHost: a\r\nX: y\r\n z\r\n\r\n");
  expect_pass("name not a token", "GET /v1/store/k HTTP/1.1\r\nHost: a\r\nX Y: z\r\n\r\n");
  expect_pass("space before colon", "GET /v1/store/k HTTP/1.1\r\nHost : a\r\n\r\n");
  expect_pass("bare LF", "GET /v1/store/k HTTP/1.1\nHost: a\n\n");
  expect_pass("LF in a value", "GET /v1/store/k HTTP/1.1\r\nHost: a\nb\r\n\r\n");
  expect_pass("CR alone", "GET /v1/store/k HTTP/1.1\r\nHost: a\rb\r\n\r\n");
  expect_pass("two lengths", "PUT /v1/store/k HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n"
                             "Content-Length: 1\r\n\r\nx");
  expect_pass("signed length",
              "PUT /v1/store/k HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\nx");
  expect_pass("empty length", "PUT /v1/store/k HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n");
  expect_pass(
      "huge length",
      "PUT /v1/store/k HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n");
  expect_pass("body over the route's limit",
              "PUT /v1/store/k HTTP/1.1\r\nHost: a\r\nContent-Length: 1025\r\n\r\n");
  expect_pass("body on GET", "GET /v1/store/k HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx");
  expect_pass("not HTTP", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03");
}
END_TEST

START_TEST(test_limits) {
  /* A head that does not end within max_head is passed once the buffer
   * holds max_head bytes, and waits before. */
  char big[600];
  int n = snprintf(big, sizeof big, "GET /v1/store/k HTTP/1.1\r\nHost: a\r\nX: ");
  memset(big + n, 'v', sizeof big - (size_t)n - 1);
  big[sizeof big - 1] = '\0';
  srv_http_req r;
  ck_assert_int_eq(srv_http_parse(big, 200, 256, BODY_MAX, CAP, &r), SRV_HTTP_MORE);
  ck_assert_int_eq(srv_http_parse(big, 256, 256, BODY_MAX, CAP, &r), SRV_HTTP_PASS);
  ck_assert_int_eq(srv_http_parse(big, strlen(big), 256, BODY_MAX, CAP, &r), SRV_HTTP_PASS);
  /* A request that cannot fit in the caller's buffer is passed at once. */
  const char *s = "PUT /v1/store/k HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n";
  ck_assert_int_eq(srv_http_parse(s, strlen(s), HEAD_MAX, BODY_MAX, strlen(s) + 99, &r),
                   SRV_HTTP_PASS);
  ck_assert_int_eq(srv_http_parse(s, strlen(s), HEAD_MAX, BODY_MAX, strlen(s) + 100, &r),
                   SRV_HTTP_MORE);
  /* More fields than the loop keeps. */
  char many[2048];
  size_t m = (size_t)snprintf(many, sizeof many, "GET /v1/store/k HTTP/1.1\r\nHost: a\r\n");
  for (int i = 0; i < SRV_HTTP_MAX_FIELDS; i++)
    m += (size_t)snprintf(many + m, sizeof many - m, "X-%d: %d\r\n", i, i);
  snprintf(many + m, sizeof many - m, "\r\n");
  ck_assert_int_eq(parse(many, &r), SRV_HTTP_PASS);
}
END_TEST

int main(void) {
  Suite *s = suite_create("srv_http");
  TCase *tc = tcase_create("parse");
  tcase_add_test(tc, test_put_is_ours);
  tcase_add_test(tc, test_prefixes_wait);
  tcase_add_test(tc, test_passed_to_libmicrohttpd);
  tcase_add_test(tc, test_limits);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
