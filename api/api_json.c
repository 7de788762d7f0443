/*
 * api_json.c -- JSON value helpers; see api_json.h.
 */
#include "api_json.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api_util.h"

json_t *api_json_u64(uint64_t v) {
  return json_integer((json_int_t)(v > (uint64_t)INT64_MAX ? (uint64_t)INT64_MAX : v));
}

bool api_json_value_is_text(const char *data, size_t len) {
  return len == 0 || (memchr(data, '\0', len) == NULL && api_utf8_valid(data, len));
}

json_t *api_json_value(const char *data, size_t len, const char **encoding) {
  if (api_json_value_is_text(data, len)) {
    *encoding = "utf-8";
    return json_stringn(data ? data : "", len);
  }
  *encoding = "base64";
  char *b = api_base64_encode(data, len, NULL);
  json_t *v = b ? json_string(b) : NULL;
  free(b);
  return v;
}

/* 10000-01-01T00:00:00Z in unix milliseconds: below it a year has 4 digits
 * and the arithmetic below is exact. */
#define API_JSON_YEAR10000_MS 253402300800000ull

/* Writes the RFC 3339 text of unix milliseconds ms > 0 into buf (at least 64
 * bytes).  Returns its length, or 0 when the time cannot be represented
 * (JSON null then). */
static size_t api_json_time_fmt(char *buf, uint64_t ms) {
  if (ms >= API_JSON_YEAR10000_MS) { /* rare: the C library's calendar */
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    if (!gmtime_r(&s, &tm)) return 0;
    int n =
        snprintf(buf, 64, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(ms % 1000));
    return n > 0 && n < 64 ? (size_t)n : 0;
  }
  /* days since 1970-01-01 to a civil date (H. Hinnant's algorithm; days >= 0) */
  uint64_t secs = ms / 1000;
  unsigned frac = (unsigned)(ms % 1000);
  unsigned sod = (unsigned)(secs % 86400);
  uint64_t z = secs / 86400 + 719468;
  uint64_t era = z / 146097;
  unsigned doe = (unsigned)(z - era * 146097);
  unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  unsigned mp = (5 * doy + 2) / 153;
  unsigned day = doy - (153 * mp + 2) / 5 + 1;
  unsigned mon = mp < 10 ? mp + 3 : mp - 9;
  unsigned year = (unsigned)(yoe + era * 400) + (mon <= 2);
  unsigned hh = sod / 3600, mm = sod / 60 % 60, ss = sod % 60;
  char *p = buf;
  *p++ = (char)('0' + year / 1000);
  *p++ = (char)('0' + year / 100 % 10);
  *p++ = (char)('0' + year / 10 % 10);
  *p++ = (char)('0' + year % 10);
  *p++ = '-';
  *p++ = (char)('0' + mon / 10);
  *p++ = (char)('0' + mon % 10);
  *p++ = '-';
  *p++ = (char)('0' + day / 10);
  *p++ = (char)('0' + day % 10);
  *p++ = 'T';
  *p++ = (char)('0' + hh / 10);
  *p++ = (char)('0' + hh % 10);
  *p++ = ':';
  *p++ = (char)('0' + mm / 10);
  *p++ = (char)('0' + mm % 10);
  *p++ = ':';
  *p++ = (char)('0' + ss / 10);
  *p++ = (char)('0' + ss % 10);
  *p++ = '.';
  *p++ = (char)('0' + frac / 100);
  *p++ = (char)('0' + frac / 10 % 10);
  *p++ = (char)('0' + frac % 10);
  *p++ = 'Z';
  *p = '\0';
  return (size_t)(p - buf);
}

json_t *api_json_time(uint64_t ms) {
  if (ms == 0) return json_null();
  char buf[64];
  if (api_json_time_fmt(buf, ms) == 0) return json_null();
  return json_string(buf);
}

/* ---- GET /v1/store/{key} without jansson --------------------------------- */

/* Extra output bytes of each byte inside a JSON string, as jansson's
 * dump_string writes it (no JSON_ENSURE_ASCII, no JSON_ESCAPE_SLASH): '"' and
 * '\\' and \b \f \n \r \t take 2 bytes, the other controls below 0x20 six
 * ("\u001F", upper-case hex), every other byte (0x7F and UTF-8 included) one. */
static const unsigned char api_json_esc[256] = {
    5,         5,          5, 5, 5, 5, 5, 5, 1, 1, 1, 5, 1, 1, 5, 5, /* 0x00: \b \t \n, \f \r */
    5,         5,          5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, /* 0x10 */
    ['"'] = 1, ['\\'] = 1,
};

/* True when none of the 8 bytes at s needs an escape (< 0x20, '"', '\\'):
 * the exact "has a byte less than / equal to" word tests. */
static bool api_json_plain8(const char *s) {
  const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
  uint64_t x;
  memcpy(&x, s, 8);
  uint64_t q = x ^ (ones * '"'), b = x ^ (ones * '\\');
  uint64_t hit = ((x - ones * 0x20) & ~x) | ((q - ones) & ~q) | ((b - ones) & ~b);
  return (hit & highs) == 0;
}

static size_t api_json_str_len(const char *s, size_t n) {
  size_t out = n + 2, i = 0;
  while (i < n) {
    if (n - i >= 8 && api_json_plain8(s + i)) {
      i += 8;
      continue;
    }
    out += api_json_esc[(unsigned char)s[i++]];
  }
  return out;
}

static char *api_json_str_put(char *p, const char *s, size_t n) {
  static const char hex[] = "0123456789ABCDEF";
  *p++ = '"';
  size_t i = 0;
  while (i < n) {
    size_t j = i;
    while (n - j >= 8 && api_json_plain8(s + j))
      j += 8;
    while (j < n && !api_json_esc[(unsigned char)s[j]])
      j++;
    memcpy(p, s + i, j - i);
    p += j - i;
    if (j == n) break;
    unsigned char c = (unsigned char)s[j];
    i = j + 1;
    *p++ = '\\';
    switch (c) {
    case '"':
    case '\\':
      *p++ = (char)c;
      break;
    case '\b':
      *p++ = 'b';
      break;
    case '\f':
      *p++ = 'f';
      break;
    case '\n':
      *p++ = 'n';
      break;
    case '\r':
      *p++ = 'r';
      break;
    case '\t':
      *p++ = 't';
      break;
    default:
      *p++ = 'u';
      *p++ = '0';
      *p++ = '0';
      *p++ = hex[c >> 4];
      *p++ = hex[c & 15];
    }
  }
  *p++ = '"';
  return p;
}

#define API_JSON_U64_MAX 20 /* digits of INT64_MAX and more */

static char *api_json_u64_put(char *p, uint64_t v) {
  return api_u64_put(p, v > (uint64_t)INT64_MAX ? (uint64_t)INT64_MAX : v);
}

static char *api_json_lit(char *p, const char *lit, size_t n) {
  memcpy(p, lit, n);
  return p + n;
}
#define API_JSON_LIT(p, s) api_json_lit((p), (s), sizeof(s) - 1)

char *api_json_value_doc(const char *key, size_t klen, const char *data, size_t len,
                         uint64_t version, uint64_t lsn, uint64_t hlc, const char *origin,
                         uint64_t updated_ms, const char *ctype, size_t *out_len) {
  static const char k_key[] = "{\"key\":", k_size[] = ",\"size\":", k_version[] = ",\"version\":",
                    k_lsn[] = ",\"lsn\":", k_hlc[] = ",\"hlc\":", k_origin[] = ",\"origin\":",
                    k_upd[] = ",\"updated_at\":", k_ct[] = ",\"content_type\":",
                    k_utf8[] = ",\"encoding\":\"utf-8\",\"value\":",
                    k_b64[] = ",\"encoding\":\"base64\",\"value\":", k_end[] = "}\n";
  char tbuf[64];
  size_t tlen = updated_ms ? api_json_time_fmt(tbuf, updated_ms) : 0;
  size_t ctlen = ctype ? strlen(ctype) : 0;
  bool text = api_json_value_is_text(data, len);
  size_t vbytes = text ? api_json_str_len(data, len) : 4 * ((len + 2) / 3) + 2;
  size_t cap = (sizeof k_key - 1) + api_json_str_len(key, klen) + (sizeof k_size - 1) +
               (sizeof k_version - 1) + (sizeof k_lsn - 1) + (sizeof k_hlc - 1) +
               (sizeof k_origin - 1) + api_json_str_len(origin, strlen(origin)) +
               4 * API_JSON_U64_MAX + (sizeof k_upd - 1) + (tlen ? tlen + 2 : 4) +
               (sizeof k_ct - 1) + (ctlen ? api_json_str_len(ctype, ctlen) : 4) +
               (sizeof k_b64 - 1) + vbytes + (sizeof k_end - 1) + 1;
  char *out = malloc(cap);
  if (!out) return NULL;
  char *p = API_JSON_LIT(out, k_key);
  p = api_json_str_put(p, key, klen);
  p = API_JSON_LIT(p, k_size);
  p = api_json_u64_put(p, len);
  p = API_JSON_LIT(p, k_version);
  p = api_json_u64_put(p, version);
  p = API_JSON_LIT(p, k_lsn);
  p = api_json_u64_put(p, lsn);
  p = API_JSON_LIT(p, k_hlc);
  p = api_json_u64_put(p, hlc);
  p = API_JSON_LIT(p, k_origin);
  p = api_json_str_put(p, origin, strlen(origin));
  p = API_JSON_LIT(p, k_upd);
  if (tlen) {
    *p++ = '"';
    p = api_json_lit(p, tbuf, tlen);
    *p++ = '"';
  } else {
    p = API_JSON_LIT(p, "null");
  }
  p = API_JSON_LIT(p, k_ct);
  p = ctlen ? api_json_str_put(p, ctype, ctlen) : API_JSON_LIT(p, "null");
  if (text) {
    p = API_JSON_LIT(p, k_utf8);
    p = api_json_str_put(p, data, len);
  } else {
    p = API_JSON_LIT(p, k_b64);
    *p++ = '"';
    p += api_base64_put(p, data, len);
    *p++ = '"';
  }
  p = API_JSON_LIT(p, k_end);
  *p = '\0';
  *out_len = (size_t)(p - out);
  return out;
}

char *api_json_write_doc(const char *key, size_t klen, bool put, uint64_t version, uint64_t lsn,
                         uint64_t hlc, const char *origin, bool durable, size_t size,
                         const char *ctype, size_t *out_len) {
  static const char k_key[] = "{\"key\":", k_version[] = ",\"version\":",
                    k_deleted[] = ",\"deleted\":true", k_lsn[] = ",\"lsn\":", k_hlc[] = ",\"hlc\":",
                    k_origin[] = ",\"origin\":", k_durable[] = ",\"durable\":",
                    k_size[] = ",\"size\":", k_ct[] = ",\"content_type\":", k_end[] = "}\n";
  size_t ctlen = ctype ? strlen(ctype) : 0;
  size_t cap = (sizeof k_key - 1) + api_json_str_len(key, klen) + (sizeof k_version - 1) +
               (sizeof k_deleted - 1) + (sizeof k_lsn - 1) + (sizeof k_hlc - 1) +
               (sizeof k_origin - 1) + api_json_str_len(origin, strlen(origin)) +
               (sizeof k_durable - 1) + 5 + (sizeof k_size - 1) + 4 * API_JSON_U64_MAX +
               (sizeof k_ct - 1) + (ctlen ? api_json_str_len(ctype, ctlen) : 4) +
               (sizeof k_end - 1) + 1;
  char *out = malloc(cap);
  if (!out) return NULL;
  char *p = API_JSON_LIT(out, k_key);
  p = api_json_str_put(p, key, klen);
  if (put) {
    p = API_JSON_LIT(p, k_version);
    p = api_json_u64_put(p, version);
  } else {
    p = API_JSON_LIT(p, k_deleted);
  }
  p = API_JSON_LIT(p, k_lsn);
  p = api_json_u64_put(p, lsn);
  p = API_JSON_LIT(p, k_hlc);
  p = api_json_u64_put(p, hlc);
  p = API_JSON_LIT(p, k_origin);
  p = api_json_str_put(p, origin, strlen(origin));
  p = API_JSON_LIT(p, k_durable);
  p = durable ? API_JSON_LIT(p, "true") : API_JSON_LIT(p, "false");
  if (put) {
    p = API_JSON_LIT(p, k_size);
    p = api_json_u64_put(p, size);
    p = API_JSON_LIT(p, k_ct);
    p = ctlen ? api_json_str_put(p, ctype, ctlen) : API_JSON_LIT(p, "null");
  }
  p = API_JSON_LIT(p, k_end);
  *p = '\0';
  *out_len = (size_t)(p - out);
  return out;
}
