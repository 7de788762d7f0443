/*
 * test_api_util.c -- the pure helpers of api/api_util.c: percent-decoding,
 * UTF-8 and key checks, query lookup, base64, ETags, integers; and the
 * hand-written JSON of api/api_json.c, compared byte for byte with what
 * jansson writes for the same document.
 */
#include <check.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api_json.h"
#include "api_util.h"

START_TEST(test_pct_decode) {
  char *o;
  size_t n;
  ck_assert_int_eq(api_pct_decode("a%2Fb", 5, false, &o, &n), 0);
  ck_assert_str_eq(o, "a/b");
  ck_assert_uint_eq(n, 3);
  free(o);
  ck_assert_int_eq(api_pct_decode("a+b", 3, false, &o, &n), 0);
  ck_assert_str_eq(o, "a+b");
  free(o);
  ck_assert_int_eq(api_pct_decode("a+b%20c", 7, true, &o, &n), 0);
  ck_assert_str_eq(o, "a b c");
  free(o);
  ck_assert_int_eq(api_pct_decode("x%00y", 5, false, &o, &n), 0);
  ck_assert_uint_eq(n, 3);
  ck_assert_int_eq(o[1], 0);
  free(o);
  ck_assert_int_eq(api_pct_decode("%e2%82%AC", 9, false, &o, &n), 0);
  ck_assert_str_eq(o, "\xe2\x82\xac");
  free(o);
  ck_assert_int_eq(api_pct_decode("", 0, false, &o, &n), 0);
  ck_assert_uint_eq(n, 0);
  free(o);
  const char *bad[] = {"%", "%4", "a%G0", "%0g", "abc%", "%%41"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    ck_assert_int_eq(api_pct_decode(bad[i], strlen(bad[i]), false, &o, &n), -1);
    ck_assert_ptr_null(o);
  }
  /* the length is honoured: "%4" inside a longer buffer */
  ck_assert_int_eq(api_pct_decode("%41%42", 4, false, &o, &n), -1);
}
END_TEST

START_TEST(test_utf8_and_keys) {
  ck_assert(api_utf8_valid("", 0));
  ck_assert(api_utf8_valid("caf\xc3\xa9", 5));
  ck_assert(api_utf8_valid("\xf0\x9f\x98\x80", 4));
  ck_assert(!api_utf8_valid("\xff", 1));
  ck_assert(!api_utf8_valid("\xc3", 1));
  ck_assert(!api_utf8_valid("\xc0\xaf", 2));         /* overlong */
  ck_assert(!api_utf8_valid("\xe0\x80\xaf", 3));     /* overlong */
  ck_assert(!api_utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
  ck_assert(!api_utf8_valid("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
  ck_assert(!api_utf8_valid("\x80", 1));
  ck_assert_ptr_null(api_key_problem("settings/theme", 14));
  ck_assert_ptr_nonnull(api_key_problem("", 0));
  ck_assert_ptr_nonnull(api_key_problem("a\0b", 3));
  ck_assert_ptr_nonnull(api_key_problem("a\nb", 3));
  ck_assert_ptr_nonnull(api_key_problem("a\x7f", 2));
  ck_assert_ptr_nonnull(api_key_problem("\xff", 1));
  char k[1026];
  memset(k, 'k', sizeof k);
  ck_assert_ptr_null(api_key_problem(k, 1024));
  ck_assert_ptr_nonnull(api_key_problem(k, 1025));
}
END_TEST

START_TEST(test_query) {
  char *v;
  size_t n;
  ck_assert_int_eq(api_query_get("a=1&prefix=x%2Fy&b", "prefix", &v, &n), 1);
  ck_assert_str_eq(v, "x/y");
  free(v);
  ck_assert_int_eq(api_query_get("a=1&b", "b", &v, &n), 1);
  ck_assert_str_eq(v, "");
  free(v);
  ck_assert_int_eq(api_query_get("a=1&a=2", "a", &v, &n), 1);
  ck_assert_str_eq(v, "1");
  free(v);
  ck_assert_int_eq(api_query_get("a=1", "b", &v, &n), 0);
  ck_assert_ptr_null(v);
  ck_assert_int_eq(api_query_get(NULL, "b", &v, &n), 0);
  ck_assert_int_eq(api_query_get("b=%ZZ", "b", &v, &n), -1);
  ck_assert_ptr_null(v);
  ck_assert_int_eq(api_query_get("p%72efix=z", "prefix", &v, &n), 1);
  ck_assert_str_eq(v, "z");
  free(v);
  ck_assert_int_eq(api_query_get("x=a+b", "x", &v, &n), 1);
  ck_assert_str_eq(v, "a b");
  free(v);
}
END_TEST

START_TEST(test_base64) {
  const char *plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
  const char *enc[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
  for (int i = 0; i < 7; i++) {
    size_t n;
    char *e = api_base64_encode(plain[i], strlen(plain[i]), &n);
    ck_assert_str_eq(e, enc[i]);
    ck_assert_uint_eq(n, strlen(enc[i]));
    char *d;
    size_t dn;
    ck_assert_int_eq(api_base64_decode(e, n, &d, &dn), 0);
    ck_assert_uint_eq(dn, strlen(plain[i]));
    ck_assert_int_eq(memcmp(d, plain[i], dn), 0);
    free(d);
    free(e);
  }
  unsigned char all[256];
  for (int i = 0; i < 256; i++)
    all[i] = (unsigned char)i;
  size_t n, dn;
  char *e = api_base64_encode(all, 256, &n), *d;
  ck_assert_int_eq(api_base64_decode(e, n, &d, &dn), 0);
  ck_assert_uint_eq(dn, 256);
  ck_assert_int_eq(memcmp(d, all, 256), 0);
  free(d);
  free(e);
  const char *bad[] = {"Zg=", "Z===", "Zg=a", "!!!!", "Zm9v\n", "=Zm9"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    ck_assert_int_eq(api_base64_decode(bad[i], strlen(bad[i]), &d, &dn), -1);
}
END_TEST

START_TEST(test_etags_and_ints) {
  uint64_t v;
  uint64_t nums[] = {0,
                     1,
                     9,
                     10,
                     99,
                     100,
                     4294967295ull,
                     4294967296ull,
                     (uint64_t)INT64_MAX,
                     UINT64_MAX - 1,
                     UINT64_MAX};
  for (size_t i = 0; i < sizeof nums / sizeof *nums; i++) {
    char got[32], want[32];
    memset(got, 'x', sizeof got);
    char *end = api_u64_put(got, nums[i]);
    int n = snprintf(want, sizeof want, "%llu", (unsigned long long)nums[i]);
    ck_assert_int_eq(end - got, n);
    ck_assert(memcmp(got, want, (size_t)n) == 0 && got[n] == 'x');
  }
  ck_assert_int_eq(api_etag_parse("\"12\"", &v), 0);
  ck_assert_uint_eq(v, 12);
  ck_assert_int_eq(api_etag_parse("12", &v), -1);
  ck_assert_int_eq(api_etag_parse("W/\"12\"", &v), -1);
  ck_assert_int_eq(api_etag_parse("\"12\", \"13\"", &v), -1);
  ck_assert_int_eq(api_etag_parse("\"x\"", &v), -1);
  ck_assert_int_eq(api_etag_parse("\"\"", &v), -1);
  ck_assert(api_etag_list_matches("*", 5));
  ck_assert(api_etag_list_matches("\"4\", \"5\"", 5));
  ck_assert(api_etag_list_matches("W/\"5\"", 5));
  ck_assert(!api_etag_list_matches("\"4\"", 5));
  ck_assert(!api_etag_list_matches("garbage", 5));
  ck_assert_int_eq(api_parse_u64("18446744073709551615", &v), 0);
  ck_assert_uint_eq(v, UINT64_MAX);
  ck_assert_int_eq(api_parse_u64("18446744073709551616", &v), -1);
  ck_assert_int_eq(api_parse_u64("", &v), -1);
  ck_assert_int_eq(api_parse_u64("-1", &v), -1);
  ck_assert_int_eq(api_parse_u64("1 ", &v), -1);
}
END_TEST

/* The GET body as the API built it with jansson before api_json_value_doc
 * (api.c: json_pack + api_json_set_value + json_dumps, plus a newline). */
static char *ref_value_doc(const char *key, size_t klen, const char *data, size_t len,
                           uint64_t version, uint64_t lsn, uint64_t hlc, uint64_t ms,
                           const char *ctype) {
  json_t *j =
      json_pack("{s:s%,s:o,s:o,s:o,s:o,s:s,s:o,s:o}", "key", key, klen, "size", api_json_u64(len),
                "version", api_json_u64(version), "lsn", api_json_u64(lsn), "hlc",
                api_json_u64(hlc), "origin", "node-a.1_Z", "updated_at", api_json_time(ms),
                "content_type", ctype && *ctype ? json_string(ctype) : json_null());
  ck_assert_ptr_nonnull(j);
  if (api_utf8_valid(data, len) && (len == 0 || !memchr(data, '\0', len))) {
    json_object_set_new(j, "encoding", json_string("utf-8"));
    json_object_set_new(j, "value", json_stringn(data ? data : "", len));
  } else {
    char *b = api_base64_encode(data, len, NULL);
    json_object_set_new(j, "encoding", json_string("base64"));
    json_object_set_new(j, "value", json_string(b));
    free(b);
  }
  char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
  json_decref(j);
  ck_assert_ptr_nonnull(s);
  size_t n = strlen(s);
  char *out = malloc(n + 2);
  memcpy(out, s, n);
  out[n] = '\n';
  out[n + 1] = '\0';
  free(s);
  return out;
}

static void check_doc_ct(const char *key, size_t klen, const char *data, size_t len,
                         uint64_t version, uint64_t lsn, uint64_t hlc, uint64_t ms,
                         const char *ctype) {
  char *want = ref_value_doc(key, klen, data, len, version, lsn, hlc, ms, ctype);
  size_t n = 0;
  char *got =
      api_json_value_doc(key, klen, data, len, version, lsn, hlc, "node-a.1_Z", ms, ctype, &n);
  ck_assert_ptr_nonnull(got);
  ck_assert_uint_eq(n, strlen(want));
  ck_assert_msg(memcmp(got, want, n) == 0, "got  %s\nwant %s", got, want);
  ck_assert_int_eq(got[n], '\0');
  free(got);
  free(want);
}

static void check_doc(const char *key, size_t klen, const char *data, size_t len, uint64_t version,
                      uint64_t lsn, uint64_t hlc, uint64_t ms) {
  check_doc_ct(key, klen, data, len, version, lsn, hlc, ms, NULL);
}

START_TEST(test_value_doc_like_jansson) {
  /* content types: none, plain, and the quotes and backslashes a quoted
   * parameter may hold */
  const char *types[] = {"", "application/json", "text/plain; charset=utf-8",
                         "multipart/mixed; boundary=\"a\\\"b\""};
  for (size_t i = 0; i < sizeof types / sizeof *types; i++) {
    check_doc_ct("k", 1, "v", 1, 1, 2, 3, 4, types[i]);
    check_doc_ct("k", 1, "\0\1", 2, 1, 2, 3, 4, types[i]);
  }
  /* every single byte as a value: controls, quotes, DEL, lone high bytes */
  for (int c = 0; c < 256; c++) {
    char b[3] = {'x', (char)c, 'y'};
    check_doc("k", 1, b, 3, 1, 2, 3, 0);
    check_doc("k", 1, b + 1, 1, 1, 2, 3, 0);
  }
  const char *texts[] = {
      "",
      "plain",
      "quote \" and backslash \\ and slash /",
      "\b\f\n\r\t\x01\x1f\x7f",
      "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
      "<script>&amp;</script>",
      "\xff\xfe not utf-8",
      "\xed\xa0\x80",           /* a surrogate: base64 */
      "\xc3",                   /* cut: base64 */
      "\"\"\"\\\\\n\n\x00\x00", /* runs of escapes */
  };
  for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
    size_t n = strlen(texts[i]);
    for (size_t cut = 0; cut <= n; cut++)
      check_doc("a/b", 3, texts[i], cut, 7, 8, 9, 1);
  }
  /* NUL bytes inside a UTF-8 value: binary, so base64 (issue 25 item 1) */
  check_doc("k", 1, "a\0b\0", 4, 1, 1, 1, 1);
  size_t dn = 0;
  char *d = api_json_value_doc("k", 1, "a\0b\0", 4, 1, 1, 1, "o", 1, NULL, &dn);
  ck_assert_ptr_nonnull(d);
  ck_assert_msg(strstr(d, "\"encoding\":\"base64\",\"value\":\"YQBiAA==\"") != NULL, "%s", d);
  free(d);
  static const char zeros[4096];
  const char *enc = NULL;
  json_t *zv = api_json_value(zeros, sizeof zeros, &enc);
  ck_assert_str_eq(enc, "base64");
  ck_assert_uint_eq(json_string_length(zv), 4 * ((sizeof zeros + 2) / 3));
  json_decref(zv);
  ck_assert(api_json_value_is_text("", 0));
  ck_assert(api_json_value_is_text("caf\xc3\xa9", 5));
  ck_assert(!api_json_value_is_text("\0", 1));
  ck_assert(!api_json_value_is_text("\xff", 1));
  /* keys that need escaping, and non-ASCII keys */
  check_doc("q\"uote\\", 7, "v", 1, 1, 1, 1, 1);
  check_doc("caf\xc3\xa9 \xe2\x82\xac", 9, "v", 1, 1, 1, 1, 1);
  /* integers: 0, large, clamped past INT64_MAX */
  uint64_t ints[] = {0,         1, 9, 10, 99, 1000000, (uint64_t)INT64_MAX, (uint64_t)INT64_MAX + 1,
                     UINT64_MAX};
  for (size_t i = 0; i < sizeof ints / sizeof *ints; i++)
    check_doc("k", 1, "v", 1, ints[i], ints[i], ints[i], 1);
  /* times: null, the epoch's first ms, today, leap days, the year 9999's last ms,
   * 5-digit years, and what the HLC can hold (48 bits of ms) */
  uint64_t times[] = {0,
                      1,
                      999,
                      1000,
                      86399999,
                      86400000,
                      951782400000ull,  /* 2000-02-29 */
                      951868800000ull,  /* 2000-03-01 */
                      4107456000000ull, /* 2100-02-28 */
                      4107542400000ull, /* 2100-03-01 */
                      1795562982077ull,
                      253402300799999ull,
                      253402300800000ull,
                      (1ull << 48) - 1};
  for (size_t i = 0; i < sizeof times / sizeof *times; i++)
    check_doc("k", 1, "v", 1, 1, 1, 1, times[i]);
  /* random documents */
  srand(12345);
  char buf[64];
  for (int round = 0; round < 2000; round++) {
    size_t n = (size_t)(rand() % (int)sizeof buf);
    for (size_t i = 0; i < n; i++) {
      int pick = rand() % 4;
      buf[i] = pick == 0   ? (char)(rand() % 0x20)
               : pick == 1 ? (char)(0x20 + rand() % 0x60)
                           : (char)(rand() % 256);
    }
    uint64_t ms = ((uint64_t)rand() << 31 ^ (uint64_t)rand()) & ((1ull << 48) - 1);
    check_doc("key", 3, buf, n, (uint64_t)rand(), (uint64_t)rand(), (uint64_t)rand() << 16, ms);
  }
  /* random UTF-8 text: mostly plain ASCII with the bytes that need escapes,
   * and multi-byte characters, at every offset of the 8-byte scans */
  static const char *const pieces[] = {"a",
                                       "Z",
                                       " ",
                                       "\"",
                                       "\\",
                                       "\n",
                                       "\x01",
                                       "\x1f",
                                       "\x7f",
                                       "/",
                                       "\xc3\xa9",
                                       "\xe2\x82\xac",
                                       "\xf0\x9f\x98\x80",
                                       "\x00"};
  char text[128];
  for (int round = 0; round < 3000; round++) {
    size_t n = 0, want = (size_t)(rand() % 80);
    while (n < want) {
      int k = rand() % 14;
      if (k > 4 && rand() % 3) k = rand() % 3; /* mostly plain */
      size_t pl = k == 13 ? 1 : strlen(pieces[k]);
      memcpy(text + n, pieces[k], pl);
      n += pl;
    }
    check_doc("k", 1, text, n, 1, 2, 3, 4);
  }
}
END_TEST

/* The answer to a write as the API built it with jansson before
 * api_json_write_doc (api.c: json_pack + json_dumps, plus a newline). */
static void check_write_doc(const char *key, bool put, uint64_t version, uint64_t lsn, bool durable,
                            size_t size, const char *ctype) {
  uint64_t hlc = lsn * 65536 + version;
  json_t *j =
      put ? json_pack("{s:s,s:o,s:o,s:o,s:s,s:b,s:o,s:o}", "key", key, "version",
                      api_json_u64(version), "lsn", api_json_u64(lsn), "hlc", api_json_u64(hlc),
                      "origin", "n-1", "durable", (int)durable, "size", api_json_u64(size),
                      "content_type", ctype && *ctype ? json_string(ctype) : json_null())
          : json_pack("{s:s,s:b,s:o,s:o,s:s,s:b}", "key", key, "deleted", 1, "lsn",
                      api_json_u64(lsn), "hlc", api_json_u64(hlc), "origin", "n-1", "durable",
                      (int)durable);
  ck_assert_ptr_nonnull(j);
  char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
  json_decref(j);
  ck_assert_ptr_nonnull(s);
  size_t n = 0;
  char *got =
      api_json_write_doc(key, strlen(key), put, version, lsn, hlc, "n-1", durable, size, ctype, &n);
  ck_assert_ptr_nonnull(got);
  ck_assert_uint_eq(n, strlen(s) + 1);
  ck_assert_msg(memcmp(got, s, n - 1) == 0 && got[n - 1] == '\n', "got  %s\nwant %s", got, s);
  ck_assert_int_eq(got[n], '\0');
  free(got);
  free(s);
}

START_TEST(test_write_doc_like_jansson) {
  const char *keys[] = {"k",          "settings/theme", "q\"uote\\",
                        "tab\there",  "\x01\x1f\x7f",   "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
                        "a/b?c=d&e#f"};
  uint64_t ints[] = {0,         1, 9, 10, 123456789, (uint64_t)INT64_MAX, (uint64_t)INT64_MAX + 1,
                     UINT64_MAX};
  for (size_t k = 0; k < sizeof keys / sizeof *keys; k++)
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++)
      for (int put = 0; put < 2; put++)
        for (int durable = 0; durable < 2; durable++) {
          check_write_doc(keys[k], put, ints[i], ints[(i + 3) % 8], durable, (size_t)ints[i], NULL);
          check_write_doc(keys[k], put, 1, ints[i], durable, 0, i % 2 ? "" : "image/png");
          check_write_doc(keys[k], put, 2, ints[i], durable, 3, "text/x; q=\"a\\\\b\\\"\"");
        }
}
END_TEST

/* api_json_time, whatever path it takes, matches gmtime_r's calendar. */
START_TEST(test_json_time) {
  srand(777);
  for (int i = 0; i < 20000; i++) {
    uint64_t ms = i < 10000 ? ((uint64_t)rand() << 20 ^ (uint64_t)rand()) % 253402300800000ull
                            : ((uint64_t)rand() << 31 ^ (uint64_t)rand()) & ((1ull << 48) - 1);
    if (ms == 0) continue;
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    ck_assert_ptr_nonnull(gmtime_r(&s, &tm));
    char want[64];
    snprintf(want, sizeof want, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(ms % 1000));
    json_t *j = api_json_time(ms);
    ck_assert_str_eq(json_string_value(j), want);
    json_decref(j);
  }
  json_t *z = api_json_time(0);
  ck_assert(json_is_null(z));
  json_decref(z);
}
END_TEST

int main(void) {
  Suite *s = suite_create("api_util");
  TCase *tc = tcase_create("util");
  tcase_add_test(tc, test_pct_decode);
  tcase_add_test(tc, test_utf8_and_keys);
  tcase_add_test(tc, test_query);
  tcase_add_test(tc, test_base64);
  tcase_add_test(tc, test_etags_and_ints);
  tcase_add_test(tc, test_value_doc_like_jansson);
  tcase_add_test(tc, test_write_doc_like_jansson);
  tcase_add_test(tc, test_json_time);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
