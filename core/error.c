/*
 * error.c -- error codes, messages, and the validation rules every entry
 * point shares (keys, node ids, content types).  Thread-safe: no state.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <time.h>

const char *sa_version(void) {
  return SA_VERSION_STRING;
}

const char *sa_strerror(int code) {
  switch (code) {
  case SA_OK:
    return "success";
  case SA_EINVAL:
    return "invalid argument";
  case SA_ENOTFOUND:
    return "not found";
  case SA_EKEY:
    return "invalid key";
  case SA_ETOOBIG:
    return "value too large";
  case SA_ELOCKED:
    return "WAL locked by another process";
  case SA_ENODE:
    return "WAL belongs to another node";
  case SA_ECORRUPT:
    return "data corrupt";
  case SA_ENOSPC:
    return "no space left on device";
  case SA_EIO:
    return "I/O error";
  case SA_EREADONLY:
    return "node is read-only";
  case SA_ECONFLICT:
    return "condition failed";
  case SA_ENOENT:
    return "no such file or directory";
  case SA_EACCES:
    return "permission denied";
  case SA_ENOMEM:
    return "out of memory";
  case SA_ECLOSED:
    return "client is closing";
  case SA_EFORMAT:
    return "unsupported format version";
  case SA_EINTERNAL:
    return "internal error";
  case SA_EGONE:
    return "changes no longer kept";
  case SA_EDRIFT:
    return "peer clock too far ahead";
  default:
    return "unknown error";
  }
}

int sa_fail(sa_error *err, int code, const char *fmt, ...) {
  if (err) {
    va_list ap;
    va_start(ap, fmt);
    err->code = code;
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
  }
  return code;
}

int sa_errno_code(int e) {
  switch (e) {
  case ENOSPC:
  case EDQUOT:
  case EFBIG:
    return SA_ENOSPC;
  case EACCES:
  case EPERM:
  case EROFS:
    return SA_EACCES;
  case ENOENT:
  case ENOTDIR:
    return SA_ENOENT;
  case ENOMEM:
    return SA_ENOMEM;
  case EWOULDBLOCK:
    return SA_ELOCKED;
  default:
    return SA_EIO;
  }
}

int sa_utf8_valid(const void *s, size_t len) {
  const unsigned char *p = s, *end = p + len;
  while (p < end) {
    unsigned c = *p;
    size_t n;
    uint32_t cp;
    if (c < 0x80) {
      p++;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      n = 1;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 2;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 3;
      cp = c & 0x07;
    } else {
      return -1;
    }
    if ((size_t)(end - p) <= n) return -1;
    for (size_t i = 1; i <= n; i++) {
      if ((p[i] & 0xC0) != 0x80) return -1;
      cp = (cp << 6) | (p[i] & 0x3F);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return -1;
    p += n + 1;
  }
  return 0;
}

int sa_key_check(const char *key, size_t len, sa_error *err) {
  if (!key || len == 0) return sa_fail(err, SA_EKEY, "invalid key: a key must not be empty");
  if (len > SA_KEY_MAX)
    return sa_fail(err, SA_EKEY, "invalid key: %zu bytes is longer than the %d-byte limit", len,
                   SA_KEY_MAX);
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)key[i];
    if (c < 0x20 || c == 0x7F)
      return sa_fail(err, SA_EKEY,
                     "invalid key: control character 0x%02X at byte %zu (keys are UTF-8 "
                     "text without control characters)",
                     c, i);
  }
  if (sa_utf8_valid(key, len) != 0) return sa_fail(err, SA_EKEY, "invalid key: not valid UTF-8");
  return 0;
}

/* A token character (RFC 9110 tchar). */
static bool ct_tchar(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* Bytes of the token at s[i..n): its length. */
static size_t ct_token(const unsigned char *s, size_t i, size_t n) {
  size_t j = i;
  while (j < n && ct_tchar(s[j]))
    j++;
  return j - i;
}

int sa_ctype_check(const char *ct, size_t n, sa_error *err) {
  const unsigned char *s = (const unsigned char *)ct;
  if (!ct || n == 0) return sa_fail(err, SA_EINVAL, "invalid content type: it is empty");
  if (n > SA_CONTENT_TYPE_MAX)
    return sa_fail(err, SA_EINVAL,
                   "invalid content type: %zu bytes is longer than the %d-byte limit", n,
                   SA_CONTENT_TYPE_MAX);
  for (size_t i = 0; i < n; i++)
    if (s[i] < 0x20 || s[i] > 0x7E)
      return sa_fail(err, SA_EINVAL,
                     "invalid content type: byte 0x%02X at offset %zu is not printable ASCII", s[i],
                     i);
  /* type "/" subtype */
  size_t i = ct_token(s, 0, n);
  if (i == 0 || i == n || s[i] != '/')
    return sa_fail(err, SA_EINVAL,
                   "invalid content type '%.*s': not a media type type/subtype (such as "
                   "application/json)",
                   (int)n, ct);
  size_t sub = ct_token(s, i + 1, n);
  if (sub == 0)
    return sa_fail(err, SA_EINVAL,
                   "invalid content type '%.*s': the subtype after '/' is empty or starts with "
                   "a character a token cannot hold (offset %zu)",
                   (int)n, ct, i + 1);
  i += 1 + sub;
  /* *( OWS ";" OWS [ name "=" ( token / quoted-string ) ] ), OWS: spaces */
  while (i < n) {
    while (i < n && s[i] == ' ')
      i++;
    if (i == n || s[i] != ';')
      return sa_fail(err, SA_EINVAL,
                     "invalid content type '%.*s': expected ';' before a parameter at offset %zu",
                     (int)n, ct, i);
    i++;
    while (i < n && s[i] == ' ')
      i++;
    if (i == n || s[i] == ';') continue; /* an empty parameter */
    size_t name = ct_token(s, i, n);
    if (name == 0 || i + name == n || s[i + name] != '=')
      return sa_fail(err, SA_EINVAL,
                     "invalid content type '%.*s': a parameter at offset %zu is not name=value",
                     (int)n, ct, i);
    i += name + 1;
    if (i < n && s[i] == '"') {
      size_t open = i++;
      while (i < n && s[i] != '"')
        i += s[i] == '\\' ? 2 : 1;
      if (i >= n)
        return sa_fail(err, SA_EINVAL,
                       "invalid content type '%.*s': the quoted string at offset %zu does not end",
                       (int)n, ct, open);
      i++;
    } else {
      size_t val = ct_token(s, i, n);
      if (val == 0)
        return sa_fail(err, SA_EINVAL,
                       "invalid content type '%.*s': the parameter value at offset %zu is neither "
                       "a token nor a quoted string",
                       (int)n, ct, i);
      i += val;
    }
  }
  return 0;
}

int sa_content_type_check(const char *ct, sa_error *err) {
  if (!ct) return sa_fail(err, SA_EINVAL, "invalid content type: it is NULL");
  return sa_ctype_check(ct, strlen(ct), err);
}

int sa_node_id_check(const char *id, sa_error *err) {
  if (!id || !*id)
    return sa_fail(err, SA_EINVAL, "node_id is empty: give the node a name such as node-1");
  size_t n = strlen(id);
  if (n > SA_NODE_ID_MAX)
    return sa_fail(err, SA_EINVAL, "node_id is %zu bytes; the limit is %d", n, SA_NODE_ID_MAX);
  for (size_t i = 0; i < n; i++) {
    char c = id[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
          c == '_' || c == '-'))
      return sa_fail(err, SA_EINVAL,
                     "node_id '%.64s' has an invalid character at byte %zu: use letters, "
                     "digits, '.', '_' and '-'",
                     id, i);
  }
  return 0;
}

uint64_t sa_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t sa_mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
