/*
 * gen_seeds.c -- writes the seed corpora of the WAL fuzz targets with the
 * real encoder (wal_record_encode), so the seeds are valid records and
 * files the fuzzer then mutates.  The text targets' seeds (keys, batches,
 * configs) are written by hand in corpus/.
 *
 * usage: sa_fuzz_gen_seeds tests/fuzz/corpus   (then commit the files)
 */
#define _GNU_SOURCE
#include "crc32c.h"
#include "internal.h"
#include "softadastra.h"
#include "wal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *root;

static void put_file(const char *dir, const char *name, const void *buf, size_t len) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", root, dir);
  mkdir(path, 0755);
  snprintf(path, sizeof path, "%s/%s/%s", root, dir, name);
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(buf, 1, len, f) != len) {
    perror(path);
    exit(1);
  }
  fclose(f);
}

static size_t rec(unsigned char *out, uint64_t lsn, const wal_op *ops, size_t n, bool batch) {
  return wal_record_encode(out, lsn, (1700000000000ull << 16) | lsn, ops, n, batch);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
    return 2;
  }
  root = argv[1];
  static unsigned char buf[1 << 16], file[1 << 16];
  wal_op put = {.op = SA_OP_PUT, .key = "settings/theme", .klen = 14, .val = "dark", .vlen = 4};
  wal_op put_empty = {.op = SA_OP_PUT, .key = "k", .klen = 1, .val = NULL, .vlen = 0};
  wal_op del = {.op = SA_OP_DELETE, .key = "settings/theme", .klen = 14, .val = NULL, .vlen = 0};
  wal_op utf8 = {.op = SA_OP_PUT,
                 .key = "caf\xc3\xa9/\xe2\x82\xac",
                 .klen = 9,
                 .val = "\x00\x01\xff",
                 .vlen = 3};
  wal_op mix[3] = {{.op = SA_OP_PUT, .key = "a", .klen = 1, .val = "1", .vlen = 1},
                   {.op = SA_OP_DELETE, .key = "b", .klen = 1, .val = NULL, .vlen = 0},
                   {.op = SA_OP_PUT, .key = "c/d", .klen = 3, .val = "three", .vlen = 5}};
  size_t n;
  n = rec(buf, 1, &put, 1, false);
  put_file("fuzz_wal_record", "put", buf, n);
  n = rec(buf, 2, &put_empty, 1, false);
  put_file("fuzz_wal_record", "put_empty_value", buf, n);
  n = rec(buf, 3, &del, 1, false);
  put_file("fuzz_wal_record", "delete", buf, n);
  n = rec(buf, 4, &utf8, 1, false);
  put_file("fuzz_wal_record", "put_binary_value", buf, n);
  n = rec(buf, 5, mix, 3, true);
  put_file("fuzz_wal_record", "batch3", buf, n);
  n = rec(buf, 6, &put, 1, true);
  put_file("fuzz_wal_record", "batch1", buf, n);
  n = rec(buf, 7, &put, 1, false);
  put_file("fuzz_wal_record", "truncated", buf, n - 3);
  /* a put with a content type (type 5) */
  wal_op typed = put;
  typed.ctype = "application/json; charset=\"utf-8\"";
  typed.ctlen = (uint32_t)strlen(typed.ctype);
  n = rec(buf, 9, &typed, 1, false);
  put_file("fuzz_wal_record", "put_typed", buf, n);
  /* a sync record: a peer's batch, one item applied, one skipped, one stale */
  wal_op items[3] = {{.op = SA_OP_PUT,
                      .key = "a",
                      .klen = 1,
                      .val = "v1",
                      .vlen = 2,
                      .decision = WAL_SYNC_APPLY,
                      .hlc = (1700000000000ull << 16) | 1,
                      .origin = "node-b",
                      .olen = 6,
                      .origin_lsn = 11,
                      .seq = 21},
                     {.op = SA_OP_DELETE,
                      .key = "b",
                      .klen = 1,
                      .decision = WAL_SYNC_SKIP,
                      .hlc = (1700000000000ull << 16) | 2,
                      .origin = "node-c",
                      .olen = 6,
                      .origin_lsn = 12,
                      .seq = 22},
                     {.op = SA_OP_PUT,
                      .key = "c",
                      .klen = 1,
                      .decision = WAL_SYNC_STALE,
                      .hlc = 5,
                      .origin = "node-b",
                      .olen = 6,
                      .origin_lsn = 3,
                      .seq = 23}};
  n = wal_sync_record_encode(buf, 8, (1700000000000ull << 16) | 8, "node-b", 6, 23, items, 3);
  put_file("fuzz_wal_record", "sync3", buf, n);
  /* the same with the applied put typed */
  items[0].ctype = "image/png";
  items[0].ctlen = 9;
  n = wal_sync_record_encode(buf, 10, (1700000000000ull << 16) | 10, "node-b", 6, 23, items, 3);
  put_file("fuzz_wal_record", "sync3_typed", buf, n);

  /* fuzz_wal_scan: byte 0 even = generated header, byte 1 = start_lsn */
  size_t f = 0;
  file[f++] = 0;
  file[f++] = 0;
  f += rec(file + f, 1, &put, 1, false);
  f += rec(file + f, 2, mix, 3, true);
  f += rec(file + f, 3, &del, 1, false);
  put_file("fuzz_wal_scan", "clean3", file, f);
  put_file("fuzz_wal_scan", "torn", file, f - 5);
  memset(file + f, 0, 64);
  put_file("fuzz_wal_scan", "zero_tail", file, f + 64);
  size_t mid = 2 + 40;
  file[mid] ^= 0x10; /* inside the first record: corrupt, good records follow */
  put_file("fuzz_wal_scan", "corrupt_first", file, f);
  file[mid] ^= 0x10;
  file[1] = 5; /* start_lsn 5: LSN 1 is out of sequence */
  put_file("fuzz_wal_scan", "lsn_below_start", file, f);
  unsigned char empty[2] = {0, 0};
  put_file("fuzz_wal_scan", "empty", empty, 2);
  /* odd mode: a whole file with its own header */
  unsigned char *h = file + 1;
  file[0] = 1;
  memset(h, 0, SA_WAL_HEADER_SIZE);
  memcpy(h, "SADWAL\r\n", 8);
  sa_put_u32(h + 8, SA_WAL_FORMAT);
  sa_put_u32(h + 12, SA_WAL_HEADER_SIZE);
  sa_put_u64(h + 16, 0);
  sa_put_u64(h + 24, 1700000000000ull);
  sa_put_u16(h + 32, 6);
  memcpy(h + 34, "node-1", 6);
  sa_put_u32(h + 124, sa_crc32c(0, h, 124));
  f = 1 + SA_WAL_HEADER_SIZE;
  f += rec(file + f, 1, &put, 1, false);
  f += rec(file + f, 2, &utf8, 1, false);
  put_file("fuzz_wal_scan", "raw_file", file, f);
  put_file("fuzz_wal_scan", "raw_header_only", file, 1 + SA_WAL_HEADER_SIZE);
  put_file("fuzz_wal_scan", "raw_short_header", file, 1 + 40);
  printf("seeds written under %s\n", root);
  return 0;
}
