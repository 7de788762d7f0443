/*
 * test_api_util.c -- the pure helpers of api/api_util.c: percent-decoding,
 * UTF-8 and key checks, query lookup, base64, ETags, integers.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

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

int main(void) {
  Suite *s = suite_create("api_util");
  TCase *tc = tcase_create("util");
  tcase_add_test(tc, test_pct_decode);
  tcase_add_test(tc, test_utf8_and_keys);
  tcase_add_test(tc, test_query);
  tcase_add_test(tc, test_base64);
  tcase_add_test(tc, test_etags_and_ints);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
