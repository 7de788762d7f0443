/*
 * internal.h -- helpers shared by the core modules: error reporting,
 * little-endian encoding, key and node-id validation, time.
 *
 * Not part of the public API; never installed.  Everything here is pure or
 * thread-safe.
 */
#ifndef SA_INTERNAL_H
#define SA_INTERNAL_H

#include "softadastra.h"

#include <stdarg.h>
#include <stdint.h>
#include <string.h>

/* Fills err (may be NULL) with code and a printf-style message; returns code. */
int sa_fail(sa_error *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Maps an errno value to the closest SA_E* code. */
int sa_errno_code(int e);

/* 0 if key (len bytes) is a valid key: 1..SA_KEY_MAX bytes of UTF-8 without
 * control characters.  Otherwise SA_EKEY with err naming the problem. */
int sa_key_check(const char *key, size_t len, sa_error *err);

/* 0 if s (len bytes) is well-formed UTF-8 (no overlongs, no surrogates). */
int sa_utf8_valid(const void *s, size_t len);

/* 0 if ct (n bytes, not NUL-terminated) is a content type a value may
 * carry (sa_content_type_check).  Otherwise SA_EINVAL, err naming why. */
int sa_ctype_check(const char *ct, size_t n, sa_error *err);

/* 0 if id is a valid node id: 1..SA_NODE_ID_MAX of [A-Za-z0-9._-]. */
int sa_node_id_check(const char *id, sa_error *err);

/* Wall-clock time in unix milliseconds, and monotonic nanoseconds. */
uint64_t sa_now_ms(void);
uint64_t sa_mono_ns(void);

static inline void sa_put_u16(unsigned char *p, uint16_t v) {
  p[0] = (unsigned char)v;
  p[1] = (unsigned char)(v >> 8);
}
static inline void sa_put_u32(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++)
    p[i] = (unsigned char)(v >> (8 * i));
}
static inline void sa_put_u64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++)
    p[i] = (unsigned char)(v >> (8 * i));
}
static inline uint16_t sa_get_u16(const unsigned char *p) {
  return (uint16_t)(p[0] | (p[1] << 8));
}
static inline uint32_t sa_get_u32(const unsigned char *p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; i--)
    v = (v << 8) | p[i];
  return v;
}
static inline uint64_t sa_get_u64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = (v << 8) | p[i];
  return v;
}

#endif
