/*
 * crc32c.c -- CRC-32C, see crc32c.h.
 *
 * Two implementations with one result: the x86-64 SSE4.2 `crc32` instruction
 * (8 bytes per step), chosen at first use when the CPU reports it, and a
 * portable slicing-by-8 table walk.  The tables are built once, on first use,
 * under pthread_once.
 */
#include "crc32c.h"

#include <pthread.h>
#include <string.h>

#define SA_CRC32C_POLY 0x82F63B78u

static uint32_t crc32c_table[8][256];
static pthread_once_t crc32c_once = PTHREAD_ONCE_INIT;
static int crc32c_hw;

static void crc32c_init(void) {
  for (uint32_t n = 0; n < 256; n++) {
    uint32_t c = n;
    for (int k = 0; k < 8; k++)
      c = (c & 1) ? (c >> 1) ^ SA_CRC32C_POLY : c >> 1;
    crc32c_table[0][n] = c;
  }
  for (uint32_t n = 0; n < 256; n++) {
    uint32_t c = crc32c_table[0][n];
    for (int t = 1; t < 8; t++) {
      c = crc32c_table[0][c & 0xff] ^ (c >> 8);
      crc32c_table[t][n] = c;
    }
  }
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  crc32c_hw = __builtin_cpu_supports("sse4.2");
#endif
}

static uint32_t crc32c_sw(uint32_t crc, const unsigned char *p, size_t len) {
  while (len && ((uintptr_t)p & 7)) {
    crc = crc32c_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    len--;
  }
  while (len >= 8) {
    uint64_t w;
    memcpy(&w, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    w = __builtin_bswap64(w);
#endif
    w ^= crc;
    crc = crc32c_table[7][w & 0xff] ^ crc32c_table[6][(w >> 8) & 0xff] ^
          crc32c_table[5][(w >> 16) & 0xff] ^ crc32c_table[4][(w >> 24) & 0xff] ^
          crc32c_table[3][(w >> 32) & 0xff] ^ crc32c_table[2][(w >> 40) & 0xff] ^
          crc32c_table[1][(w >> 48) & 0xff] ^ crc32c_table[0][w >> 56];
    p += 8;
    len -= 8;
  }
  while (len--)
    crc = crc32c_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
  return crc;
}

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("sse4.2"))) static uint32_t
crc32c_hw_run(uint32_t crc, const unsigned char *p, size_t len) {
  uint64_t c = crc;
  while (len && ((uintptr_t)p & 7)) {
    c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
    len--;
  }
  while (len >= 8) {
    uint64_t w;
    memcpy(&w, p, 8);
    c = __builtin_ia32_crc32di(c, w);
    p += 8;
    len -= 8;
  }
  while (len--)
    c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
  return (uint32_t)c;
}
#endif

uint32_t sa_crc32c(uint32_t crc, const void *buf, size_t len) {
  pthread_once(&crc32c_once, crc32c_init);
  crc = ~crc;
#if defined(__x86_64__) && defined(__GNUC__)
  if (crc32c_hw) return ~crc32c_hw_run(crc, buf, len);
#endif
  return ~crc32c_sw(crc, buf, len);
}
