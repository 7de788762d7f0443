/*
 * api_util.h -- pure text helpers of the REST API: percent-decoding, UTF-8
 * and key validation, query-string lookup, base64, ETag parsing.
 *
 * What it is: small functions with no state, no I/O and no allocation other
 * than the buffers they return.  They are exported (not static) so that
 * tests/api can test them one by one, and a fuzz target can drive them.
 * What it is not: a URL parser.  Paths are matched by api.c; these helpers
 * only decode and check the pieces.
 *
 * Threads: all functions are reentrant and may be called from any thread.
 */
#ifndef SA_API_UTIL_H
#define SA_API_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Percent-decodes len bytes at in.  With plus_is_space ('+' in a query
 * string) a '+' becomes a space; in a path it stays a '+'.
 * Returns 0 and sets *out (a new buffer the caller frees with free(),
 * NUL-terminated, possibly holding NUL bytes before *out_len) and *out_len;
 * -1 when a '%' is not followed by two hex digits (nothing allocated);
 * -2 when out of memory. */
int api_pct_decode(const char *in, size_t len, bool plus_is_space, char **out, size_t *out_len);

/* Writes the decimal digits of v at p (at most 20 bytes, no NUL) and returns
 * the end. */
char *api_u64_put(char *p, uint64_t v);

/* True when the len bytes at s are well-formed UTF-8 (no overlongs, no
 * surrogates, nothing above U+10FFFF). */
bool api_utf8_valid(const char *s, size_t len);

/* Checks a decoded key: 1..SA_KEY_MAX (1024) bytes of UTF-8 without control characters
 * (U+0000..U+001F, U+007F).  Returns NULL when valid, or a static string
 * that says what is wrong. */
const char *api_key_problem(const char *key, size_t len);

/* Looks up name in a raw query string ("a=1&b=x%20y", without the '?').
 * Returns 1 and sets *value (new NUL-terminated buffer, caller frees) and
 * *value_len when found (a bare "name" gives ""); 0 when absent (*value
 * NULL); -1 when the value is badly percent-encoded; -2 out of memory.
 * The first occurrence wins. */
int api_query_get(const char *query, const char *name, char **value, size_t *value_len);

/* Base64 (RFC 4648, with padding).  encode returns a new NUL-terminated
 * buffer the caller frees, or NULL when out of memory. */
char *api_base64_encode(const void *data, size_t len, size_t *out_len);

/* Writes the base64 of len bytes at data to out (4 * ((len + 2) / 3) bytes,
 * no NUL) and returns that length. */
size_t api_base64_put(char *out, const void *data, size_t len);

/* Decodes base64 (padding required, no whitespace).  Returns 0 and a new
 * buffer the caller frees in *out, -1 on bad input, -2 out of memory. */
int api_base64_decode(const char *in, size_t len, char **out, size_t *out_len);

/* Parses a strong entity tag holding a version: "\"12\"" -> 12.
 * Returns 0 on success, -1 when s is not exactly one such tag. */
int api_etag_parse(const char *s, uint64_t *version);

/* True when an If-None-Match list ("\"1\", \"2\"" or "*" or W/"3") matches
 * version (weak comparison, as RFC 9110 says for If-None-Match). */
bool api_etag_list_matches(const char *list, uint64_t version);

/* Parses a decimal unsigned integer (no sign, no spaces, no overflow).
 * Returns 0 and sets *out, or -1. */
int api_parse_u64(const char *s, uint64_t *out);

#endif /* SA_API_UTIL_H */
