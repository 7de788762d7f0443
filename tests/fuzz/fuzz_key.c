/*
 * fuzz_key.c -- key percent-decoding and validation.
 *
 * Input: byte 0 holds flags, the rest is raw text as it would come in a
 * request-target.  Properties:
 *   - api_pct_decode either fails without allocating, or returns at most as
 *     many bytes as it was given, NUL-terminated;
 *   - the API's key check (api_key_problem) and the core's (sa_key_check)
 *     agree on every decoded key, and so do their UTF-8 validators: a key
 *     the API accepts is never refused by the core with a different error,
 *     and the other way round;
 *   - percent-encoding the decoded bytes and decoding again is the identity;
 *   - api_query_get on the raw text as a query string is safe, and a value
 *     it finds is NUL-terminated with the length it reports.
 */
#include "fuzz.h"

#include "api_util.h"
#include "internal.h"
#include "softadastra.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  bool plus = data[0] & 1;
  const char *in = (const char *)data + 1;
  size_t len = size - 1;
  char *out = (char *)1;
  size_t olen = 99;
  int rc = api_pct_decode(in, len, plus, &out, &olen);
  if (rc != 0) {
    FUZZ_CHECK(rc == -1 && out == NULL && olen == 0);
  } else {
    FUZZ_CHECK(out != NULL && olen <= len && out[olen] == 0);
    const char *why = api_key_problem(out, olen);
    sa_error err = {0};
    int core = sa_key_check(out, olen, &err);
    if ((why == NULL) != (core == 0)) {
      fprintf(stderr, "key check disagreement: api says %s, core says %s\n", why ? why : "valid",
              core ? err.message : "valid");
      FUZZ_CHECK(!"api_key_problem and sa_key_check agree");
    }
    FUZZ_CHECK(api_utf8_valid(out, olen) == (sa_utf8_valid(out, olen) == 0));
    /* encode everything, decode: identity */
    char *enc = malloc(3 * olen + 1);
    FUZZ_CHECK(enc != NULL);
    for (size_t i = 0; i < olen; i++)
      snprintf(enc + 3 * i, 4, "%%%02X", (unsigned char)out[i]);
    char *back = NULL;
    size_t blen = 0;
    FUZZ_CHECK(api_pct_decode(enc, 3 * olen, plus, &back, &blen) == 0);
    FUZZ_CHECK(blen == olen && memcmp(back, out, olen) == 0);
    free(back);
    free(enc);
    free(out);
  }
  /* the raw text as a query string */
  char *q = malloc(len + 1);
  FUZZ_CHECK(q != NULL);
  memcpy(q, in, len);
  q[len] = 0;
  static const char *const names[] = {"prefix", "after", "limit", "raw", "values", ""};
  for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
    char *v = NULL;
    size_t vl = 0;
    int r = api_query_get(q, names[i], &v, &vl);
    FUZZ_CHECK(r >= -2 && r <= 1);
    if (r == 1) {
      FUZZ_CHECK(v != NULL && v[vl] == 0);
    } else {
      FUZZ_CHECK(v == NULL);
    }
    free(v);
  }
  uint64_t u;
  if (api_parse_u64(q, &u) == 0) {
    char again[32];
    snprintf(again, sizeof again, "%llu", (unsigned long long)u);
    FUZZ_CHECK(strcmp(again, q) == 0 || (q[0] == '0' && strlen(q) > 1));
  }
  free(q);
  return 0;
}
