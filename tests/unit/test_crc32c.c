/*
 * test_crc32c.c -- CRC-32C (Castagnoli) of core/crc32c.c.
 *
 * Known vectors (RFC 3720 appendix B.4 and the common check value), chaining
 * at every split point, and agreement with a bitwise reference on random
 * buffers at every alignment and length (catches slicing and hardware-path
 * bugs that only show on unaligned or odd-length input).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crc32c.h"
#include "test_util.h"

/* Bitwise reference: reflected polynomial 0x82F63B78, init and xorout ~0. */
static uint32_t ref_crc32c(uint32_t crc, const void *buf, size_t len) {
  const unsigned char *p = buf;
  crc = ~crc;
  while (len--) {
    crc ^= *p++;
    for (int k = 0; k < 8; k++)
      crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
  }
  return ~crc;
}

typedef struct vector {
  const char *name;
  unsigned char data[64];
  size_t len;
  uint32_t crc;
} vector;

START_TEST(known_vectors) {
  static vector v[] = {
      {"empty", {0}, 0, 0x00000000u},
      {"a", "a", 1, 0xC1D04330u},
      {"123456789", "123456789", 9, 0xE3069283u},
      {"32 zero bytes", {0}, 32, 0x8A9136AAu},
      {"32 0xFF bytes", {0}, 32, 0x62A8AB43u},
      {"32 incrementing", {0}, 32, 0x46DD794Eu},
      {"32 decrementing", {0}, 32, 0x113FDB5Cu},
      {"fox", "The quick brown fox jumps over the lazy dog", 43, 0x22620404u},
  };
  memset(v[4].data, 0xFF, 32);
  for (int i = 0; i < 32; i++) {
    v[5].data[i] = (unsigned char)i;
    v[6].data[i] = (unsigned char)(31 - i);
  }
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
    /* The reference must agree first, or the vector table is wrong. */
    ck_assert_msg(ref_crc32c(0, v[i].data, v[i].len) == v[i].crc, "reference: %s", v[i].name);
    uint32_t got = sa_crc32c(0, v[i].data, v[i].len);
    ck_assert_msg(got == v[i].crc, "%s: got 0x%08X, expected 0x%08X", v[i].name, (unsigned)got,
                  (unsigned)v[i].crc);
  }
}
END_TEST

START_TEST(long_buffer) {
  unsigned char buf[4096];
  for (size_t i = 0; i < sizeof buf; i++)
    buf[i] = (unsigned char)i;
  ck_assert_uint_eq(ref_crc32c(0, buf, sizeof buf), 0x9C71FE32u);
  ck_assert_uint_eq(sa_crc32c(0, buf, sizeof buf), 0x9C71FE32u);
}
END_TEST

START_TEST(chaining_at_every_split) {
  static const char text[] =
      "Write locally. Persist locally. Recover later. Sync when a peer is there.";
  size_t n = sizeof text - 1;
  uint32_t whole = sa_crc32c(0, text, n);
  ck_assert_uint_eq(whole, ref_crc32c(0, text, n));
  for (size_t cut = 0; cut <= n; cut++) {
    uint32_t c = sa_crc32c(sa_crc32c(0, text, cut), text + cut, n - cut);
    ck_assert_msg(c == whole, "split at %zu: 0x%08X != 0x%08X", cut, (unsigned)c, (unsigned)whole);
  }
  /* Three pieces. */
  for (size_t a = 0; a <= n; a += 5)
    for (size_t b = a; b <= n; b += 3) {
      uint32_t c = sa_crc32c(0, text, a);
      c = sa_crc32c(c, text + a, b - a);
      c = sa_crc32c(c, text + b, n - b);
      ck_assert_uint_eq(c, whole);
    }
}
END_TEST

START_TEST(random_buffers_every_alignment) {
  enum { MAX = 600 };
  unsigned char *mem = malloc(MAX + 16);
  ck_assert_ptr_nonnull(mem);
  unsigned seed = 12345u;
  for (size_t i = 0; i < MAX + 16; i++) {
    seed = seed * 1103515245u + 12345u;
    mem[i] = (unsigned char)(seed >> 16);
  }
  for (size_t align = 0; align < 16; align++)
    for (size_t len = 0; len <= MAX; len += (len < 80 ? 1 : 37)) {
      uint32_t want = ref_crc32c(0, mem + align, len);
      uint32_t got = sa_crc32c(0, mem + align, len);
      ck_assert_msg(got == want, "align %zu len %zu: 0x%08X != 0x%08X", align, len, (unsigned)got,
                    (unsigned)want);
    }
  free(mem);
}
END_TEST

START_TEST(detects_every_single_bit_flip) {
  unsigned char buf[64];
  for (size_t i = 0; i < sizeof buf; i++)
    buf[i] = (unsigned char)(i * 7 + 3);
  uint32_t base = sa_crc32c(0, buf, sizeof buf);
  for (size_t bit = 0; bit < sizeof buf * 8; bit++) {
    buf[bit / 8] ^= (unsigned char)(1u << (bit % 8));
    ck_assert_msg(sa_crc32c(0, buf, sizeof buf) != base, "flip of bit %zu undetected", bit);
    buf[bit / 8] ^= (unsigned char)(1u << (bit % 8));
  }
}
END_TEST

static Suite *crc32c_suite(void) {
  Suite *s = suite_create("crc32c");
  TCase *tc = tcase_create("vectors");
  tcase_add_test(tc, known_vectors);
  tcase_add_test(tc, long_buffer);
  tcase_add_test(tc, chaining_at_every_split);
  tcase_add_test(tc, random_buffers_every_alignment);
  tcase_add_test(tc, detects_every_single_bit_flip);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  return tu_main(crc32c_suite());
}
