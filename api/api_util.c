/*
 * api_util.c -- pure text helpers of the REST API (see api_util.h).
 *
 * Everything here works on explicit lengths: decoded keys and values may hold
 * NUL bytes, which the callers must then reject or carry as bytes.
 */
#include "api_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "softadastra.h"

#define API_UTIL_STR2(x) #x
#define API_UTIL_STR(x) API_UTIL_STR2(x)

static int api_util_hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

int api_pct_decode(const char *in, size_t len, bool plus_is_space, char **out, size_t *out_len) {
  *out = NULL;
  *out_len = 0;
  /* Validate first so that nothing is allocated for a bad encoding. */
  for (size_t i = 0; i < len; i++) {
    if (in[i] == '%') {
      if (i + 2 >= len) return -1;
      if (api_util_hexval((unsigned char)in[i + 1]) < 0 ||
          api_util_hexval((unsigned char)in[i + 2]) < 0)
        return -1;
      i += 2;
    }
  }
  char *buf = malloc(len + 1);
  if (!buf) return -2;
  size_t o = 0;
  for (size_t i = 0; i < len; i++) {
    if (in[i] == '%') {
      buf[o++] = (char)(api_util_hexval((unsigned char)in[i + 1]) * 16 +
                        api_util_hexval((unsigned char)in[i + 2]));
      i += 2;
    } else if (in[i] == '+' && plus_is_space) {
      buf[o++] = ' ';
    } else {
      buf[o++] = in[i];
    }
  }
  buf[o] = '\0';
  *out = buf;
  *out_len = o;
  return 0;
}

char *api_u64_put(char *p, uint64_t v) {
  char tmp[20];
  size_t n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  while (n)
    *p++ = tmp[--n];
  return p;
}

bool api_utf8_valid(const char *s, size_t len) {
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0;
  while (i < len) {
    if (len - i >= 8) { /* ASCII runs 8 bytes at a time */
      uint64_t w;
      memcpy(&w, p + i, 8);
      if (!(w & 0x8080808080808080ull)) {
        i += 8;
        continue;
      }
    }
    unsigned c = p[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t n;
    uint32_t cp, min;
    if ((c & 0xE0) == 0xC0) {
      n = 1, cp = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2, cp = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3, cp = c & 0x07, min = 0x10000;
    } else {
      return false;
    }
    if (len - i <= n) return false;
    for (size_t k = 1; k <= n; k++) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n + 1;
  }
  return true;
}

const char *api_key_problem(const char *key, size_t len) {
  if (len == 0) return "key is empty";
  if (len > SA_KEY_MAX) return "key is longer than " API_UTIL_STR(SA_KEY_MAX) " bytes";
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)key[i];
    if (c < 0x20 || c == 0x7F) return "key contains a control character";
  }
  if (!api_utf8_valid(key, len)) return "key is not valid UTF-8";
  return NULL;
}

int api_query_get(const char *query, const char *name, char **value, size_t *value_len) {
  *value = NULL;
  *value_len = 0;
  if (!query) return 0;
  size_t nlen = strlen(name);
  const char *p = query;
  while (*p) {
    const char *end = strchr(p, '&');
    size_t plen = end ? (size_t)(end - p) : strlen(p);
    const char *eq = memchr(p, '=', plen);
    size_t klen = eq ? (size_t)(eq - p) : plen;
    char *k;
    size_t kdec;
    int rc = api_pct_decode(p, klen, true, &k, &kdec);
    if (rc == -2) return -2;
    if (rc == 0) {
      bool match = kdec == nlen && memcmp(k, name, nlen) == 0;
      free(k);
      if (match) {
        const char *v = eq ? eq + 1 : p + plen;
        size_t vlen = eq ? plen - klen - 1 : 0;
        return api_pct_decode(v, vlen, true, value, value_len) == 0 ? 1 : (*value = NULL, -1);
      }
    }
    if (!end) break;
    p = end + 1;
  }
  return 0;
}

static const char api_util_b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t api_base64_put(char *out, const void *data, size_t len) {
  const unsigned char *in = data;
  size_t o = 0, i = 0;
  for (; i + 2 < len; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
    out[o++] = api_util_b64[v >> 18];
    out[o++] = api_util_b64[(v >> 12) & 63];
    out[o++] = api_util_b64[(v >> 6) & 63];
    out[o++] = api_util_b64[v & 63];
  }
  if (i < len) {
    uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0);
    out[o++] = api_util_b64[v >> 18];
    out[o++] = api_util_b64[(v >> 12) & 63];
    out[o++] = i + 1 < len ? api_util_b64[(v >> 6) & 63] : '=';
    out[o++] = '=';
  }
  return o;
}

char *api_base64_encode(const void *data, size_t len, size_t *out_len) {
  char *out = malloc(4 * ((len + 2) / 3) + 1);
  if (!out) return NULL;
  size_t o = api_base64_put(out, data, len);
  out[o] = '\0';
  if (out_len) *out_len = o;
  return out;
}

static int api_util_b64val(int c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

int api_base64_decode(const char *in, size_t len, char **out, size_t *out_len) {
  *out = NULL;
  *out_len = 0;
  if (len % 4 != 0) return -1;
  char *buf = malloc(len / 4 * 3 + 1);
  if (!buf) return -2;
  size_t o = 0;
  for (size_t i = 0; i < len; i += 4) {
    int v[4];
    int pad = 0;
    for (int k = 0; k < 4; k++) {
      unsigned char c = (unsigned char)in[i + k];
      if (c == '=' && i + 4 == len && k >= 2) {
        v[k] = 0;
        pad++;
      } else if (pad > 0 || (v[k] = api_util_b64val(c)) < 0) {
        free(buf);
        return -1;
      }
    }
    uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
    buf[o++] = (char)(w >> 16);
    if (pad < 2) buf[o++] = (char)(w >> 8);
    if (pad < 1) buf[o++] = (char)w;
  }
  buf[o] = '\0';
  *out = buf;
  *out_len = o;
  return 0;
}

int api_parse_u64(const char *s, uint64_t *out) {
  if (!s || !*s) return -1;
  uint64_t v = 0;
  for (const char *p = s; *p; p++) {
    if (*p < '0' || *p > '9') return -1;
    unsigned d = (unsigned)(*p - '0');
    if (v > (UINT64_MAX - d) / 10) return -1;
    v = v * 10 + d;
  }
  *out = v;
  return 0;
}

/* Parses one entity tag at *pp (skipping spaces); weak tags allowed when
 * allow_weak.  Returns 0 and advances *pp past the tag, -1 on bad syntax,
 * 1 when the tag is not a version number (syntactically fine). */
static int api_util_etag_one(const char **pp, bool allow_weak, uint64_t *version) {
  const char *p = *pp;
  while (*p == ' ' || *p == '\t')
    p++;
  if (allow_weak && p[0] == 'W' && p[1] == '/') p += 2;
  if (*p != '"') return -1;
  const char *q = strchr(p + 1, '"');
  if (!q) return -1;
  char num[24];
  size_t n = (size_t)(q - p - 1);
  int rc = 1;
  if (n > 0 && n < sizeof num) {
    memcpy(num, p + 1, n);
    num[n] = '\0';
    if (api_parse_u64(num, version) == 0) rc = 0;
  }
  p = q + 1;
  while (*p == ' ' || *p == '\t')
    p++;
  *pp = p;
  return rc;
}

int api_etag_parse(const char *s, uint64_t *version) {
  const char *p = s;
  if (api_util_etag_one(&p, false, version) != 0) return -1;
  return *p == '\0' ? 0 : -1;
}

bool api_etag_list_matches(const char *list, uint64_t version) {
  const char *p = list;
  while (*p == ' ' || *p == '\t')
    p++;
  if (p[0] == '*') return true;
  while (*p) {
    uint64_t v = 0;
    int rc = api_util_etag_one(&p, true, &v);
    if (rc < 0) return false;
    if (rc == 0 && v == version) return true;
    if (*p == ',')
      p++;
    else if (*p)
      return false;
  }
  return false;
}
