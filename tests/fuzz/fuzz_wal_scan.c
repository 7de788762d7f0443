/*
 * fuzz_wal_scan.c -- the scan of a whole WAL file (sa_wal_scan, the scanner
 * the node's recovery uses) and the explicit repair (sa_wal_repair).
 *
 * Input: byte 0 picks the mode.  Even: a valid file header (start_lsn =
 * byte 1) followed by the rest of the input as records.  Odd: the rest of
 * the input is the whole file, header included.  The file is written to a
 * private temporary path.  fsync and fdatasync are no-ops here (an sa_io
 * table of the test's own), for speed.  Properties:
 *   - scanning never crashes and classifies every file as clean, torn or
 *     corrupt, or fails with an error for a file without a valid header;
 *   - the visited records have consecutive LSNs above start_lsn, lie inside
 *     the file back to back from offset 128, and number rep.records;
 *   - clean: the records end exactly at the end of the file; otherwise
 *     bad_offset is where they end, and corrupt has next_good_offset beyond;
 *   - repair of a torn or corrupt file keeps a byte-identical backup,
 *     truncates at bad_offset, and a second scan is clean with the same
 *     records; repair of a clean file changes nothing.
 */
#define _GNU_SOURCE
#include "fuzz.h"

#include "crc32c.h"
#include "internal.h"
#include "io.h"
#include "softadastra.h"
#include "wal.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int no_sync(int fd) {
  (void)fd;
  return 0;
}

static sa_io fz_io;
static char fz_path[512];

static void fz_setup(void) {
  if (fz_path[0]) return;
  fz_io = sa_io_libc;
  fz_io.fsync = no_sync;
  fz_io.fdatasync = no_sync;
  sa_io_set(&fz_io);
  const char *t = getenv("TMPDIR");
  snprintf(fz_path, sizeof fz_path, "%s/sa-fuzz-wal-%d.wal", t && *t ? t : "/tmp", (int)getpid());
}

typedef struct {
  uint64_t start, prev, end;
  uint64_t n;
  uint64_t size;
} visit_ctx;

static int visit(const sa_wal_record *r, void *arg) {
  visit_ctx *v = arg;
  FUZZ_CHECK(r->offset == v->end);
  FUZZ_CHECK(v->n == 0 ? r->lsn > v->start : r->lsn == v->prev + 1);
  FUZZ_CHECK(r->offset + SA_WAL_RECORD_HEADER + r->length <= v->size);
  FUZZ_CHECK(r->count >= 1);
  FUZZ_CHECK(r->key_len >= 1 && r->key_len <= SA_KEY_MAX);
  v->prev = r->lsn;
  v->end = r->offset + SA_WAL_RECORD_HEADER + r->length;
  v->n++;
  return 0;
}

static unsigned char *slurp(const char *path, size_t *len) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) return NULL;
  struct stat st;
  unsigned char *b = NULL;
  if (fstat(fd, &st) == 0 && (b = malloc((size_t)st.st_size + 1)) != NULL) {
    if (pread(fd, b, (size_t)st.st_size, 0) != st.st_size) {
      free(b);
      b = NULL;
    } else {
      *len = (size_t)st.st_size;
    }
  }
  close(fd);
  return b;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  fz_setup();
  size_t flen;
  unsigned char *file;
  if ((data[0] & 1) == 0) {
    flen = SA_WAL_HEADER_SIZE + size - 2;
    file = calloc(1, flen);
    FUZZ_CHECK(file != NULL);
    memcpy(file, "SADWAL\r\n", 8);
    sa_put_u32(file + 8, SA_WAL_FORMAT);
    sa_put_u32(file + 12, SA_WAL_HEADER_SIZE);
    sa_put_u64(file + 16, data[1]);
    sa_put_u64(file + 24, 1700000000000ull);
    sa_put_u16(file + 32, 4);
    memcpy(file + 34, "fuzz", 4);
    sa_put_u32(file + 124, sa_crc32c(0, file, 124));
    memcpy(file + SA_WAL_HEADER_SIZE, data + 2, size - 2);
  } else {
    flen = size - 1;
    file = malloc(flen ? flen : 1);
    FUZZ_CHECK(file != NULL);
    memcpy(file, data + 1, flen);
  }
  int fd = open(fz_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  FUZZ_CHECK(fd >= 0);
  FUZZ_CHECK(write(fd, file, flen) == (ssize_t)flen);
  close(fd);

  sa_wal_report rep;
  sa_error err = {0};
  visit_ctx v = {0};
  v.size = flen;
  v.end = SA_WAL_HEADER_SIZE;
  if (flen >= SA_WAL_HEADER_SIZE) v.start = sa_get_u64(file + 16);
  int rc = sa_wal_scan(fz_path, visit, &v, &rep, &err);
  if (rc != 0) {
    FUZZ_CHECK(err.message[0] != 0);
  } else {
    FUZZ_CHECK(flen >= SA_WAL_HEADER_SIZE);
    FUZZ_CHECK(rep.file_bytes == flen);
    FUZZ_CHECK(rep.records == v.n);
    FUZZ_CHECK(rep.start_lsn == v.start);
    if (v.n) FUZZ_CHECK(rep.last_lsn == v.prev);
    if (rep.state == SA_WAL_CLEAN) {
      /* the records, then nothing or zeros only (free space) */
      FUZZ_CHECK(rep.data_bytes == (v.end < flen ? v.end : flen) && rep.rest_bytes == 0);
      for (size_t i = rep.data_bytes; i < flen; i++)
        FUZZ_CHECK(file[i] == 0);
    } else {
      FUZZ_CHECK(rep.state == SA_WAL_TORN || rep.state == SA_WAL_CORRUPT);
      FUZZ_CHECK(rep.bad_offset == v.end && rep.bad_offset < flen);
      FUZZ_CHECK(rep.data_bytes == v.end && rep.rest_bytes > 0);
      /* the rest runs through the last non-zero byte of the file */
      FUZZ_CHECK(rep.bad_offset + rep.rest_bytes <= flen);
      FUZZ_CHECK(file[rep.bad_offset + rep.rest_bytes - 1] != 0);
      for (size_t i = rep.bad_offset + rep.rest_bytes; i < flen; i++)
        FUZZ_CHECK(file[i] == 0);
      if (rep.state == SA_WAL_CORRUPT) FUZZ_CHECK(rep.next_good_offset > rep.bad_offset);
    }
    /* repair, then the file must be clean with the same records */
    sa_wal_report fixed;
    memset(&err, 0, sizeof err);
    FUZZ_CHECK(sa_wal_repair(fz_path, &fixed, &err) == 0);
    FUZZ_CHECK(fixed.state == rep.state && fixed.bad_offset == rep.bad_offset);
    size_t nlen = 0;
    unsigned char *now = slurp(fz_path, &nlen);
    FUZZ_CHECK(now != NULL);
    if (rep.state == SA_WAL_CLEAN) {
      FUZZ_CHECK(fixed.backup_path[0] == 0);
      FUZZ_CHECK(nlen == flen && memcmp(now, file, flen) == 0);
    } else {
      FUZZ_CHECK(fixed.backup_path[0] != 0);
      size_t blen = 0;
      unsigned char *bk = slurp(fixed.backup_path, &blen);
      FUZZ_CHECK(bk != NULL && blen == flen && memcmp(bk, file, flen) == 0);
      free(bk);
      unlink(fixed.backup_path);
      FUZZ_CHECK(nlen == rep.bad_offset && memcmp(now, file, nlen) == 0);
      sa_wal_report again;
      FUZZ_CHECK(sa_wal_scan(fz_path, NULL, NULL, &again, &err) == 0);
      FUZZ_CHECK(again.state == SA_WAL_CLEAN && again.records == rep.records);
      FUZZ_CHECK(again.last_lsn == rep.last_lsn);
    }
    free(now);
  }
  unlink(fz_path);
  free(file);
  return 0;
}
