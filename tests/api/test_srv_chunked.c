/*
 * test_srv_chunked.c -- the strict chunked-body decoder (server/srv_chunked.c):
 * bodies it accepts (with extensions and trailers) and the data they give,
 * forms it refuses with their status, the same verdict whether the bytes
 * come whole or one at a time, and a pipelined request behind a body left
 * unread.
 */
#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "srv_chunked.h"

typedef struct buf {
  char b[4096];
  size_t n;
} buf;

static int emit(void *cls, const char *p, size_t n) {
  buf *o = cls;
  if (o->n + n > sizeof o->b) return -1;
  memcpy(o->b + o->n, p, n);
  o->n += n;
  return 0;
}

typedef struct ck_case {
  const char *name;
  const char *in;  /* the bytes after the head */
  int verdict;     /* SRV_CHUNKED_DONE or SRV_CHUNKED_ERROR */
  const char *out; /* DONE: the data */
  int status;      /* ERROR: 400 or 413 */
} ck_case;

static const ck_case cases[] = {
    {"one chunk", "3\r\nabc\r\n0\r\n\r\n", SRV_CHUNKED_DONE, "abc", 0},
    {"two chunks, hex sizes", "A\r\n0123456789\r\n2\r\nab\r\n0\r\n\r\n", SRV_CHUNKED_DONE,
     "0123456789ab", 0},
    {"lower-case hex", "a\r\n0123456789\r\n0\r\n\r\n", SRV_CHUNKED_DONE, "0123456789", 0},
    {"leading zeros", "0003\r\nabc\r\n000\r\n\r\n", SRV_CHUNKED_DONE, "abc", 0},
    {"extension", "3;name=value\r\nabc\r\n0;x\r\n\r\n", SRV_CHUNKED_DONE, "abc", 0},
    {"extension after BWS", "3 ;q=\"a b\"\r\nabc\r\n0\r\n\r\n", SRV_CHUNKED_DONE, "abc", 0},
    {"trailers", "3\r\nabc\r\n0\r\nX-Sum: 1\r\nY: \r\n\r\n", SRV_CHUNKED_DONE, "abc", 0},
    {"empty body", "0\r\n\r\n", SRV_CHUNKED_DONE, "", 0},
    {"data holding CRLF and NUL", "4\r\n\r\n\0x\r\n0\r\n\r\n", SRV_CHUNKED_DONE, "\r\n\0x", 0},
    {"0x prefix", "0x3\r\nabc\r\n0\r\n\r\n", SRV_CHUNKED_ERROR, NULL, 400},
    {"plus sign", "+3\r\nabc\r\n0\r\n\r\n", SRV_CHUNKED_ERROR, NULL, 400},
    {"minus sign", "-3\r\nabc\r\n0\r\n\r\n", SRV_CHUNKED_ERROR, NULL, 400},
    {"space before the size", " 3\r\nabc\r\n0\r\n\r\n", SRV_CHUNKED_ERROR, NULL, 400},
    {"space after the size", "3 \r\nabc\r\n0\r\n\r\n", SRV_CHUNKED_ERROR, NULL, 400},
    {"no size", "\r\nabc\r\n0\r\n\r\n", SRV_CHUNKED_ERROR, NULL, 400},
    {"bare LF after the size", "3\nabc\r\n0\r\n\r\n", SRV_CHUNKED_ERROR, NULL, 400},
    {"bare LF after the data", "3\r\nabc\n0\r\n\r\n", SRV_CHUNKED_ERROR, NULL, 400},
    {"bare LF lines", "3\nabc\n0\n\n", SRV_CHUNKED_ERROR, NULL, 400},
    {"CR without LF", "3\rabc\r\n0\r\n\r\n", SRV_CHUNKED_ERROR, NULL, 400},
    {"data longer than its size", "3\r\nabcd\r\n0\r\n\r\n", SRV_CHUNKED_ERROR, NULL, 400},
    {"data shorter: the next size is data", "3\r\nab\r\n0\r\n\r\n", SRV_CHUNKED_ERROR, NULL, 400},
    {"control byte in an extension", "3;a\x01\r\nabc\r\n0\r\n\r\n", SRV_CHUNKED_ERROR, NULL, 400},
    {"control byte in a trailer", "0\r\nX: a\x01\r\n\r\n", SRV_CHUNKED_ERROR, NULL, 400},
    {"trailer without a name", "0\r\n: a\r\n\r\n", SRV_CHUNKED_ERROR, NULL, 400},
    {"trailer folded", "0\r\nX: a\r\n b\r\n\r\n", SRV_CHUNKED_ERROR, NULL, 400},
    {"17 hex digits", "10000000000000003\r\nabc\r\n0\r\n\r\n", SRV_CHUNKED_ERROR, NULL, 413},
    {"over the limit", "401\r\n", SRV_CHUNKED_ERROR, NULL, 413},
    {"over the limit across chunks", "200\r\n", SRV_CHUNKED_ERROR, NULL, 413},
};

#define LIMIT 1024

/* in is a C string whose length is given (the data may hold NUL). */
static int run(const char *in, size_t n, bool bytewise, buf *o, size_t *used, int *status) {
  srv_chunked d;
  srv_chunked_init(&d, LIMIT);
  o->n = 0;
  *used = 0;
  int v = SRV_CHUNKED_MORE;
  if (!bytewise) {
    v = srv_chunked_feed(&d, in, n, used, emit, o);
  } else {
    for (size_t i = 0; i < n && v == SRV_CHUNKED_MORE; i++) {
      size_t u = 0;
      v = srv_chunked_feed(&d, in + i, 1, &u, emit, o);
      *used += u;
    }
  }
  *status = d.status;
  return v;
}

static size_t case_len(const ck_case *c) {
  if (strcmp(c->name, "data holding CRLF and NUL") == 0) return 14;
  return strlen(c->in);
}

START_TEST(test_cases) {
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const ck_case *c = &cases[i];
    for (int bw = 0; bw < 2; bw++) {
      buf o;
      size_t used;
      int status;
      size_t n = case_len(c);
      if (strcmp(c->name, "over the limit across chunks") == 0) {
        /* 0x200 + 0x200 = 1024 is the limit; one more byte is over */
        static const char two[] = "200\r\n";
        char in[2 * 512 + 64];
        size_t k = 0;
        memcpy(in + k, two, 5);
        k += 5;
        memset(in + k, 'a', 512);
        k += 512;
        memcpy(in + k, "\r\n201\r\n", 7);
        k += 7;
        int r = run(in, k, bw, &o, &used, &status);
        ck_assert_msg(r == SRV_CHUNKED_ERROR && status == 413, "%s (bytewise %d): %d %d", c->name,
                      bw, r, status);
        continue;
      }
      int r = run(c->in, n, bw, &o, &used, &status);
      ck_assert_msg(r == c->verdict, "%s (bytewise %d): verdict %d, want %d", c->name, bw, r,
                    c->verdict);
      if (r == SRV_CHUNKED_DONE) {
        size_t want = strcmp(c->name, "data holding CRLF and NUL") == 0 ? 4 : strlen(c->out);
        ck_assert_msg(o.n == want && memcmp(o.b, c->out, want) == 0, "%s: wrong data", c->name);
        ck_assert_msg(used == n, "%s: used %zu of %zu", c->name, used, n);
      } else {
        ck_assert_msg(status == c->status, "%s (bytewise %d): status %d, want %d", c->name, bw,
                      status, c->status);
      }
    }
  }
}
END_TEST

/* The request pipelined behind a body is not the body's: the decoder stops
 * right after the body's last CRLF. */
START_TEST(test_stops_at_the_end) {
  const char in[] = "3\r\nabc\r\n0\r\n\r\nDELETE /v1/store/survivor HTTP/1.1\r\n\r\n";
  for (int bw = 0; bw < 2; bw++) {
    buf o;
    size_t used;
    int status;
    int r = run(in, sizeof in - 1, bw, &o, &used, &status);
    ck_assert_int_eq(r, SRV_CHUNKED_DONE);
    ck_assert_uint_eq(used, strlen("3\r\nabc\r\n0\r\n\r\n"));
    ck_assert_uint_eq(o.n, 3);
  }
}
END_TEST

/* Every prefix of a valid body waits for more and uses all it is given. */
START_TEST(test_prefixes_wait) {
  const char *in = "5;e=1\r\nhello\r\n1\r\n!\r\n0\r\nT: v\r\n\r\n";
  size_t n = strlen(in);
  for (size_t p = 0; p < n; p++) {
    srv_chunked d;
    srv_chunked_init(&d, LIMIT);
    buf o = {.n = 0};
    size_t used = 0;
    int v = srv_chunked_feed(&d, in, p, &used, emit, &o);
    ck_assert_msg(v == SRV_CHUNKED_MORE && used == p, "prefix %zu: %d, used %zu", p, v, used);
  }
}
END_TEST

int main(void) {
  Suite *s = suite_create("srv_chunked");
  TCase *tc = tcase_create("decode");
  tcase_add_test(tc, test_cases);
  tcase_add_test(tc, test_stops_at_the_end);
  tcase_add_test(tc, test_prefixes_wait);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
