/*
 * test_srv_http.c -- the front loop's request parser (server/srv_http.c):
 * the gate.  The requests the loop serves, every prefix of them waiting for
 * more, and the table of srv_http.c row by row: what goes to libmicrohttpd
 * and what is refused with which status, whole and one byte at a time.
 */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "srv_http.h"

#define HEAD_MAX 16384
#define CAP 16384

static srv_http_verdict parse(const char *s, srv_http_req *r) {
  return srv_http_parse(s, strlen(s), HEAD_MAX, CAP, r);
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
      srv_http_verdict v = srv_http_parse(reqs[i], p, HEAD_MAX, CAP, &r);
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

/* The gate's table (srv_http.c), row by row: what libmicrohttpd gets (PASS,
 * one request), and what is refused with which status. */
typedef struct gate_case {
  const char *name;
  const char *req;
  srv_http_verdict verdict;
  int status; /* REFUSE: the answer's status */
} gate_case;

static const gate_case gate_cases[] = {
    /* accepted, whole in the window */
    {"other method", "HEAD /v1/store/k HTTP/1.1\r\nHost: a\r\n\r\n", SRV_HTTP_OURS, 0},
    {"lower-case method (a token: the router answers)",
     "get /v1/store/k HTTP/1.1\r\nHost: a\r\n\r\n", SRV_HTTP_OURS, 0},
    {"other path", "GET /v1/status HTTP/1.1\r\nHost: a\r\n\r\n", SRV_HTTP_OURS, 0},
    {"the list", "GET /v1/store HTTP/1.1\r\nHost: a\r\n\r\n", SRV_HTTP_OURS, 0},
    {"HTTP/1.0", "GET /v1/store/k HTTP/1.0\r\n\r\n", SRV_HTTP_OURS, 0},
    {"HTTP/1.0 keep-alive", "GET /v1/store/k HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
     SRV_HTTP_OURS, 0},
    {"body on GET", "GET /v1/store/k HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx",
     SRV_HTTP_OURS, 0},
    {"OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", SRV_HTTP_OURS, 0},
    {"absolute form, other route", "GET http://a:8080/v1/status HTTP/1.1\r\nHost: a\r\n\r\n",
     SRV_HTTP_OURS, 0},
    {"leading empty line", "\r\nGET /v1/status HTTP/1.1\r\nHost: a\r\n\r\n", SRV_HTTP_OURS, 0},
    {"Upgrade ignored", "GET /v1/store/k HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\n\r\n",
     SRV_HTTP_OURS, 0},
    {"Connection option ignored",
     "GET /v1/store/k HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\n\r\n",
     SRV_HTTP_OURS, 0},
    {"absolute form", "GET HTTP://a/v1/store/k HTTP/1.1\r\nHost: a\r\n\r\n", SRV_HTTP_OURS, 0},
    {"obs-text in a value", "GET /v1/store/k HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9\r\n\r\n",
     SRV_HTTP_OURS, 0},
    {"OWS around a length", "PUT /v1/store/k HTTP/1.1\r\nHost: a\r\nContent-Length:\t1 \r\n\r\nx",
     SRV_HTTP_OURS, 0},
    /* accepted, the body read after the head */
    {"chunked", "PUT /v1/store/k HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
     SRV_HTTP_PASS, 0},
    {"chunked, any case, OWS",
     "POST /v1/batch HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ChUnKeD \t\r\n\r\n", SRV_HTTP_PASS,
     0},
    {"Expect",
     "PUT /v1/store/k HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n",
     SRV_HTTP_PASS, 0},
    {"body over the window", "PUT /v1/store/k HTTP/1.1\r\nHost: a\r\nContent-Length: 16385\r\n\r\n",
     SRV_HTTP_PASS, 0},
    /* refused */
    {"control byte in target", "GET /v1/store/k\x01 HTTP/1.1\r\nHost: a\r\n\r\n", SRV_HTTP_REFUSE,
     400},
    {"no Host", "GET /v1/store/k HTTP/1.1\r\nX: y\r\n\r\n", SRV_HTTP_REFUSE, 400},
    {"two Hosts", "GET /v1/store/k HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", SRV_HTTP_REFUSE, 400},
    {"two Hosts in HTTP/1.0", "GET /v1/store/k HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n",
     SRV_HTTP_REFUSE, 400},
    {"bad Host", "GET /v1/store/k HTTP/1.1\r\nHost: a/b\r\n\r\n", SRV_HTTP_REFUSE, 400},
    {"obs-fold", "GET /v1/store/k HTTP/1.1\r\nHost: a\r\nX: y\r\n z\r\n\r\n", SRV_HTTP_REFUSE, 400},
    {"folded Transfer-Encoding",
     "PUT /v1/store/k HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n",
     SRV_HTTP_REFUSE, 400},
    {"name not a token", "GET /v1/store/k HTTP/1.1\r\nHost: a\r\nX Y: z\r\n\r\n", SRV_HTTP_REFUSE,
     400},
    {"space before colon", "GET /v1/store/k HTTP/1.1\r\nHost : a\r\n\r\n", SRV_HTTP_REFUSE, 400},
    {"empty name", "GET /v1/store/k HTTP/1.1\r\nHost: a\r\n: z\r\n\r\n", SRV_HTTP_REFUSE, 400},
    {"bare LF", "GET /v1/store/k HTTP/1.1\nHost: a\n\n", SRV_HTTP_REFUSE, 400},
    {"LF in a value", "GET /v1/store/k HTTP/1.1\r\nHost: a\nb\r\n\r\n", SRV_HTTP_REFUSE, 400},
    {"CR alone", "GET /v1/store/k HTTP/1.1\r\nHost: a\rb\r\n\r\n", SRV_HTTP_REFUSE, 400},
    {"DEL in a value", "GET /v1/store/k HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n", SRV_HTTP_REFUSE,
     400},
    {"two lengths, equal",
     "PUT /v1/store/k HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
     SRV_HTTP_REFUSE, 400},
    {"signed length", "PUT /v1/store/k HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\nx",
     SRV_HTTP_REFUSE, 400},
    {"hex length", "PUT /v1/store/k HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n",
     SRV_HTTP_REFUSE, 400},
    {"list length", "PUT /v1/store/k HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n",
     SRV_HTTP_REFUSE, 400},
    {"empty length", "PUT /v1/store/k HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n",
     SRV_HTTP_REFUSE, 400},
    {"huge length",
     "PUT /v1/store/k HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
     SRV_HTTP_REFUSE, 413},
    {"length and chunked",
     "PUT /v1/store/k HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: "
     "chunked\r\n\r\n",
     SRV_HTTP_REFUSE, 400},
    {"chunked in HTTP/1.0", "PUT /v1/store/k HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
     SRV_HTTP_REFUSE, 400},
    {"chunked twice",
     "PUT /v1/store/k HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
     SRV_HTTP_REFUSE, 400},
    {"two TE fields",
     "PUT /v1/store/k HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
     "chunked\r\n\r\n",
     SRV_HTTP_REFUSE, 400},
    {"gzip", "PUT /v1/store/k HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
     SRV_HTTP_REFUSE, 501},
    {"xchunked", "PUT /v1/store/k HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n",
     SRV_HTTP_REFUSE, 501},
    {"other Expect", "PUT /v1/store/k HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n",
     SRV_HTTP_REFUSE, 417},
    {"HTTP/2.0", "GET /v1/store/k HTTP/2.0\r\nHost: a\r\n\r\n", SRV_HTTP_REFUSE, 505},
    {"HTTP/1.2", "GET /v1/store/k HTTP/1.2\r\nHost: a\r\n\r\n", SRV_HTTP_REFUSE, 505},
    {"lower-case version", "GET /v1/store/k http/1.1\r\nHost: a\r\n\r\n", SRV_HTTP_REFUSE, 400},
    {"long version", "GET /v1/store/k HTTP/1.10\r\nHost: a\r\n\r\n", SRV_HTTP_REFUSE, 400},
    {"two spaces", "GET  /v1/store/k HTTP/1.1\r\nHost: a\r\n\r\n", SRV_HTTP_REFUSE, 400},
    {"tab separator", "GET\t/v1/store/k HTTP/1.1\r\nHost: a\r\n\r\n", SRV_HTTP_REFUSE, 400},
    {"CONNECT", "CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", SRV_HTTP_REFUSE, 501},
    {"method of 33 bytes",
     "ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFG /v1/store/k HTTP/1.1\r\nHost: a\r\n\r\n", SRV_HTTP_REFUSE,
     501},
    {"method of 32 bytes (a token: the router answers)",
     "ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEF /v1/store/k HTTP/1.1\r\nHost: a\r\n\r\n", SRV_HTTP_OURS, 0},
    {"asterisk with GET", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", SRV_HTTP_REFUSE, 400},
    {"other scheme", "GET ftp://a/v1/store/k HTTP/1.1\r\nHost: a\r\n\r\n", SRV_HTTP_REFUSE, 400},
    {"not HTTP", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", SRV_HTTP_REFUSE, 400},
};

static const char *verdict_name(srv_http_verdict v) {
  static const char *const names[] = {"MORE", "OURS", "PASS", "REFUSE"};
  return (unsigned)v < 4 ? names[v] : "?";
}

START_TEST(test_gate_table) {
  for (size_t i = 0; i < sizeof gate_cases / sizeof gate_cases[0]; i++) {
    const gate_case *c = &gate_cases[i];
    srv_http_req r;
    srv_http_verdict v = parse(c->req, &r);
    ck_assert_msg(v == c->verdict, "%s: verdict %s, want %s", c->name, verdict_name(v),
                  verdict_name(c->verdict));
    if (v == SRV_HTTP_REFUSE) {
      ck_assert_msg(r.status == c->status, "%s: status %d, want %d", c->name, r.status, c->status);
      ck_assert(r.code && r.why && r.why[0]);
    }
    /* The same bytes one at a time: every prefix is MORE or already the
     * same verdict (a refusal comes as soon as its bytes are there; a head
     * for libmicrohttpd once it is whole; a request the loop serves only
     * once it is whole, body included). */
    size_t n = strlen(c->req);
    for (size_t p = 0; p < n; p++) {
      srv_http_verdict pv = srv_http_parse(c->req, p, HEAD_MAX, CAP, &r);
      ck_assert_msg(pv == SRV_HTTP_MORE || (pv == c->verdict && pv != SRV_HTTP_OURS),
                    "%s: prefix %zu gives %s", c->name, p, verdict_name(pv));
    }
  }
}
END_TEST

START_TEST(test_absolute_form_path) {
  srv_http_req r;
  const char *s = "PUT http://a:1/v1/store/k?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nv";
  ck_assert_int_eq(parse(s, &r), SRV_HTTP_OURS);
  ck_assert_uint_eq(r.path_len, strlen("/v1/store/k?x=1"));
  ck_assert(strncmp(r.path, "/v1/store/k?x=1", r.path_len) == 0);
  ck_assert_str_eq(srv_http_origin("http://a:1/v1/status?q"), "/v1/status?q");
  ck_assert_str_eq(srv_http_origin("/v1/status"), "/v1/status");
  ck_assert_str_eq(srv_http_origin("HTTPS://a"), "");
  ck_assert_ptr_null(srv_http_origin("*"));
}
END_TEST

START_TEST(test_limits) {
  /* A head that does not end within max_head waits while the buffer is
   * shorter, and is refused (431) once it is not. */
  char big[600];
  int n = snprintf(big, sizeof big, "GET /v1/store/k HTTP/1.1\r\nHost: a\r\nX: ");
  memset(big + n, 'v', sizeof big - (size_t)n - 1);
  big[sizeof big - 1] = '\0';
  srv_http_req r;
  ck_assert_int_eq(srv_http_parse(big, 200, 256, CAP, &r), SRV_HTTP_MORE);
  ck_assert_int_eq(srv_http_parse(big, 256, 256, CAP, &r), SRV_HTTP_REFUSE);
  ck_assert_int_eq(r.status, 431);
  ck_assert_int_eq(srv_http_parse(big, strlen(big), 256, CAP, &r), SRV_HTTP_REFUSE);
  /* ... and 414 while still in the request line. */
  char line[600] = "GET /v1/store/";
  memset(line + strlen(line), 'k', sizeof line - strlen(line) - 1);
  line[sizeof line - 1] = '\0';
  ck_assert_int_eq(srv_http_parse(line, strlen(line), 256, CAP, &r), SRV_HTTP_REFUSE);
  ck_assert_int_eq(r.status, 414);
  /* A target over 8 KiB is 414 whatever the head limit. */
  static char huge[SRV_HTTP_TARGET_MAX + 64] = "GET /";
  memset(huge + 5, 'a', SRV_HTTP_TARGET_MAX + 1);
  ck_assert_int_eq(srv_http_parse(huge, strlen(huge), HEAD_MAX, CAP, &r), SRV_HTTP_REFUSE);
  ck_assert_int_eq(r.status, 414);
  /* A request that cannot fit in the caller's window: its body is read
   * after the head. */
  const char *s = "PUT /v1/store/k HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n";
  ck_assert_int_eq(srv_http_parse(s, strlen(s), HEAD_MAX, strlen(s) + 99, &r), SRV_HTTP_PASS);
  ck_assert_int_eq(srv_http_parse(s, strlen(s), HEAD_MAX, strlen(s) + 100, &r), SRV_HTTP_MORE);
  /* 100 fields are kept; more: 431. */
  char many[4096];
  size_t m = (size_t)snprintf(many, sizeof many, "GET /v1/store/k HTTP/1.1\r\nHost: a\r\n");
  for (int i = 1; i < SRV_HTTP_MAX_FIELDS; i++)
    m += (size_t)snprintf(many + m, sizeof many - m, "X-%d: %d\r\n", i, i);
  snprintf(many + m, sizeof many - m, "\r\n");
  ck_assert_int_eq(parse(many, &r), SRV_HTTP_OURS);
  ck_assert_uint_eq(r.n_fields, SRV_HTTP_MAX_FIELDS);
  ck_assert_ptr_nonnull(srv_http_find(&r, "X-99"));
  for (int i = SRV_HTTP_MAX_FIELDS; i <= SRV_HTTP_MAX_FIELDS; i++)
    m += (size_t)snprintf(many + m, sizeof many - m, "X-%d: %d\r\n", i, i);
  snprintf(many + m, sizeof many - m, "\r\n");
  ck_assert_int_eq(parse(many, &r), SRV_HTTP_REFUSE);
  ck_assert_int_eq(r.status, 431);
}
END_TEST

int main(void) {
  Suite *s = suite_create("srv_http");
  TCase *tc = tcase_create("parse");
  tcase_add_test(tc, test_put_is_ours);
  tcase_add_test(tc, test_prefixes_wait);
  tcase_add_test(tc, test_gate_table);
  tcase_add_test(tc, test_absolute_form_path);
  tcase_add_test(tc, test_limits);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
