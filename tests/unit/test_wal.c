/*
 * test_wal.c -- the WAL: offline tools (sa_wal_scan, sa_wal_repair) and
 * recovery at sa_client_open.
 *
 *   - scan of a clean WAL: records, LSNs, node id, record layout;
 *   - torn tail: the WAL cut at every byte offset inside its last record (a
 *     put, then a batch) opens with the first N-1 records, the cut bytes
 *     (through the last non-zero one) kept in a side file;
 *   - preallocation: zeros after the records are free space (clean, nothing
 *     cut); a torn record followed by zeros is torn and only its non-zero
 *     bytes are kept; appends across chunk boundaries survive a reopen; no
 *     old record survives a checkpoint; wal_bytes is the records' end;
 *   - corruption: every bit of a middle record (and of the header) flipped
 *     makes open refuse with SA_ECORRUPT naming file and offset, modifying
 *     nothing; sa_wal_repair keeps a backup and truncates;
 *   - replay after the store lost its last commits, or the whole store;
 *   - checkpoint: the WAL stays under wal_max_bytes.
 *
 * Copies are made of a reference WAL so every case starts from the same
 * bytes; a case opens a copy without a store, so everything it sees comes
 * from the WAL.  Each test runs in its own process with a fresh directory.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test_util.h"

static char dir[TU_PATH_MAX]; /* this test's fresh directory */
static char wal[TU_PATH_MAX]; /* dir/node-1.wal: the reference WAL */
static sa_options opts;       /* persistent node-1 at wal */

static void setup(void) {
  tu_mkdir(dir);
  opts = tu_options("node-1", dir, wal);
}

/* ---- scan helpers ------------------------------------------------------- */

enum { MAX_RECS = 64 };

typedef struct recs {
  size_t n;
  uint64_t off[MAX_RECS];
  uint64_t lsn[MAX_RECS];
  uint32_t length[MAX_RECS];
  uint32_t count[MAX_RECS];
  uint32_t value_len[MAX_RECS];
  int type[MAX_RECS];
  char key[MAX_RECS][64];
  size_t stop_after; /* visitor returns 1 after this many (0: never) */
} recs;

static int collect(const sa_wal_record *r, void *ctx) {
  recs *rs = ctx;
  if (rs->n < MAX_RECS) {
    rs->off[rs->n] = r->offset;
    rs->lsn[rs->n] = r->lsn;
    rs->length[rs->n] = r->length;
    rs->count[rs->n] = r->count;
    rs->value_len[rs->n] = r->value_len;
    rs->type[rs->n] = r->type;
    snprintf(rs->key[rs->n], sizeof rs->key[0], "%.*s", (int)r->key_len, r->key);
  }
  rs->n++;
  return rs->stop_after && rs->n >= rs->stop_after;
}

static sa_wal_report scan(const char *path, recs *rs) {
  sa_wal_report rep;
  memset(&rep, 0, sizeof rep);
  sa_error err = {0};
  if (rs) memset(rs, 0, sizeof *rs);
  int rc = sa_wal_scan(path, rs ? collect : NULL, rs, &rep, &err);
  ck_assert_msg(rc == SA_OK, "sa_wal_scan %s: %d %s", path, rc, err.message);
  return rep;
}

/* Counts entries of d whose name contains needle. */
static int count_files(const char *d, const char *needle) {
  DIR *dp = opendir(d);
  ck_assert_ptr_nonnull(dp);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(dp)) != NULL)
    if (strstr(e->d_name, needle)) n++;
  closedir(dp);
  return n;
}

/* key i of the reference workload and its value */
static void key_of(char out[32], int i) {
  snprintf(out, 32, "k/%02d", i);
}

static void value_of(char out[64], int i) {
  snprintf(out, 64, "value-%02d-0123456789abcdefghij", i);
}

/* Writes nrec-1 puts k/00.. and then a last record: a put of k/<nrec-1>, or
 * a batch of three puts b/0..b/2 plus a delete of k/00.  Closes the node and
 * checks the WAL holds every record. */
static void write_reference(int nrec, bool last_is_batch, recs *rs) {
  sa_client *c = tu_open(&opts);
  char k[32], v[64];
  for (int i = 0; i < nrec - 1; i++) {
    key_of(k, i);
    value_of(v, i);
    tu_put(c, k, v);
  }
  if (last_is_batch) {
    sa_batch_op ops[] = {{SA_OP_PUT, "b/0", "batch-zero", 10},
                         {SA_OP_PUT, "b/1", "batch-one", 9},
                         {SA_OP_DELETE, "k/00", NULL, 0},
                         {SA_OP_PUT, "b/2", "batch-two", 9}};
    sa_error err = {0};
    ck_assert_int_eq(sa_client_batch(c, ops, 4, NULL, &err), SA_OK);
  } else {
    key_of(k, nrec - 1);
    value_of(v, nrec - 1);
    tu_put(c, k, v);
  }
  sa_client_close(c);
  sa_wal_report rep = scan(wal, rs);
  ck_assert_msg(rep.state == SA_WAL_CLEAN && rep.records == (uint64_t)nrec && rep.start_lsn == 0,
                "precondition: the reference WAL should hold all %d records from LSN 1 "
                "(state %d, records %" PRIu64 ", start_lsn %" PRIu64 ")",
                nrec, rep.state, rep.records, rep.start_lsn);
  ck_assert_uint_eq(rs->n, (size_t)nrec);
  /* The node preallocates: zeros follow the records.  The reference is the
   * records alone (the free space is tested on its own). */
  ck_assert_uint_gt(rep.file_bytes, rep.data_bytes);
  size_t len;
  unsigned char *all = tu_read(wal, &len);
  for (size_t i = rep.data_bytes; i < len; i++)
    ck_assert_msg(all[i] == 0, "non-zero byte %zu in the free space", i);
  free(all);
  tu_truncate(wal, (long long)rep.data_bytes);
}

/* End of the non-zero bytes of b[from..len), or from if they are all zero. */
static uint64_t nz_end(const unsigned char *b, uint64_t from, uint64_t len) {
  while (len > from && b[len - 1] == 0)
    len--;
  return len;
}

/* Copies the first len bytes of the reference WAL to sub/node-1.wal, where
 * sub is a fresh directory (no store: everything comes from the WAL). */
static void copy_prefix(const unsigned char *bytes, size_t len, char sub[TU_PATH_MAX],
                        char path[TU_PATH_MAX]) {
  tu_mkdir(sub);
  tu_path(path, sub, "node-1.wal");
  tu_write(path, bytes, len);
}

/* ---- scan --------------------------------------------------------------- */

START_TEST(scan_clean_wal) {
  sa_client *c = tu_open(&opts);
  tu_put(c, "a", "1");
  tu_put(c, "bb", "22");
  sa_error err = {0};
  ck_assert_int_eq(sa_client_remove(c, "a", &err), SA_OK);
  sa_batch_op ops[] = {
      {SA_OP_PUT, "x", "xyz", 3}, {SA_OP_DELETE, "bb", NULL, 0}, {SA_OP_PUT, "y", "", 0}};
  ck_assert_int_eq(sa_client_batch(c, ops, 3, NULL, &err), SA_OK);
  tu_put(c, "last", "0123456789");
  uint64_t last = tu_status(c).last_lsn;
  sa_client_close(c);

  recs rs;
  sa_wal_report rep = scan(wal, &rs);
  ck_assert_int_eq(rep.state, SA_WAL_CLEAN);
  ck_assert_str_eq(rep.node_id, "node-1");
  ck_assert_uint_ge(rep.format_version, 1);
  ck_assert_uint_eq(rep.records, 5);
  ck_assert_uint_eq(rep.first_lsn, rep.start_lsn + 1);
  ck_assert_uint_eq(rep.last_lsn, last);
  ck_assert_uint_eq(rep.last_lsn, rep.first_lsn + 4);
  ck_assert_int_eq((long long)rep.file_bytes, tu_size(wal));
  ck_assert_uint_eq(rs.n, 5);

  static const int types[] = {SA_OP_PUT, SA_OP_PUT, SA_OP_DELETE, SA_WAL_BATCH, SA_OP_PUT};
  static const char *const keys[] = {"a", "bb", "a", "x", "last"};
  static const uint32_t counts[] = {1, 1, 1, 3, 1};
  for (size_t i = 0; i < 5; i++) {
    ck_assert_int_eq(rs.type[i], types[i]);
    ck_assert_str_eq(rs.key[i], keys[i]);
    ck_assert_uint_eq(rs.count[i], counts[i]);
    ck_assert_uint_eq(rs.lsn[i], rep.first_lsn + i);
    ck_assert_uint_gt(rs.length[i], 0);
  }
  ck_assert_uint_eq(rs.value_len[0], 1);
  ck_assert_uint_eq(rs.value_len[1], 2);
  ck_assert_uint_eq(rs.value_len[4], 10);
  /* Records are back to back after the header, with one fixed header size. */
  ck_assert_uint_gt(rs.off[0], 0);
  uint64_t hdr = rs.off[1] - rs.off[0] - rs.length[0];
  for (size_t i = 1; i < 5; i++)
    ck_assert_uint_eq(rs.off[i], rs.off[i - 1] + hdr + rs.length[i - 1]);
  ck_assert_uint_eq(rep.data_bytes, rs.off[4] + hdr + rs.length[4]);
  ck_assert_uint_ge(rep.file_bytes, rep.data_bytes); /* then zeros: free space */

  /* Scanning a clean WAL is read-only; the WAL opens afterwards. */
  c = tu_open(&opts);
  tu_expect_str(c, "last", "0123456789");
  sa_client_close(c);
}
END_TEST

START_TEST(scan_visitor_can_stop) {
  /* "a non-zero return stops the scan.  Returns 0 when the file could be
   * read" (softadastra.h). */
  sa_client *c = tu_open(&opts);
  for (int i = 0; i < 5; i++) {
    char k[32], v[64];
    key_of(k, i);
    value_of(v, i);
    tu_put(c, k, v);
  }
  sa_client_close(c);
  recs part;
  memset(&part, 0, sizeof part);
  part.stop_after = 2;
  sa_wal_report rep;
  sa_error err = {0};
  ck_assert_int_eq(sa_wal_scan(wal, collect, &part, &rep, &err), SA_OK);
  ck_assert_uint_eq(part.n, 2);
  ck_assert_str_eq(rep.node_id, "node-1");
}
END_TEST

START_TEST(scan_refuses_non_wal) {
  char path[TU_PATH_MAX];
  sa_wal_report rep;
  sa_error err = {0};
  tu_path(path, dir, "missing.wal");
  ck_assert_int_eq(sa_wal_scan(path, NULL, NULL, &rep, &err), SA_ENOENT);
  ck_assert_msg(strstr(err.message, path) != NULL, "message should name %s: %s", path, err.message);

  tu_path(path, dir, "text.wal");
  static const char text[] = "this is not a write-ahead log, just some text\n";
  tu_write(path, text, sizeof text - 1);
  memset(&err, 0, sizeof err);
  int rc = sa_wal_scan(path, NULL, NULL, &rep, &err);
  ck_assert_msg(rc == SA_EFORMAT || rc == SA_ECORRUPT, "scan of a text file: %d %s", rc,
                err.message);
  ck_assert_msg(strstr(err.message, path) != NULL, "message should name %s: %s", path, err.message);

  /* A node refuses it too, and leaves it alone. */
  sa_options o = sa_options_persistent("node-1", path);
  sa_client *c = NULL;
  memset(&err, 0, sizeof err);
  rc = sa_client_open(&c, &o, &err);
  ck_assert_msg(rc == SA_EFORMAT || rc == SA_ECORRUPT, "open of a text file: %d %s", rc,
                err.message);
  ck_assert_ptr_null(c);
  size_t len;
  unsigned char *after = tu_read(path, &len);
  ck_assert_uint_eq(len, sizeof text - 1);
  ck_assert_mem_eq(after, text, len);
  free(after);
}
END_TEST

START_TEST(empty_existing_file_opens) {
  /* A crash right after creating the file leaves it empty. */
  tu_write(wal, "", 0);
  sa_client *c = tu_open(&opts);
  tu_put(c, "k", "v");
  sa_client_close(c);
  c = tu_open(&opts);
  tu_expect_str(c, "k", "v");
  sa_client_close(c);
}
END_TEST

/* ---- torn tail ---------------------------------------------------------- */

/* Cuts the reference WAL at every offset in [off of last record, end) and
 * opens each copy. */
static void torn_every_offset(bool last_is_batch) {
  enum { N = 6 };
  recs rs;
  write_reference(N, last_is_batch, &rs);
  size_t total;
  unsigned char *bytes = tu_read(wal, &total);
  uint64_t last_off = rs.off[N - 1];
  ck_assert_uint_lt(last_off, total);

  for (uint64_t cut = last_off; cut < total; cut++) {
    char sub[TU_PATH_MAX], path[TU_PATH_MAX];
    copy_prefix(bytes, cut, sub, path);
    /* zero bytes at the end of the cut record are free space */
    uint64_t torn = nz_end(bytes, last_off, cut) - last_off;

    sa_wal_report rep = scan(path, NULL);
    ck_assert_msg(rep.state == (torn ? SA_WAL_TORN : SA_WAL_CLEAN), "cut %" PRIu64 ": state %d",
                  cut, rep.state);
    ck_assert_uint_eq(rep.records, N - 1);
    if (torn) ck_assert_uint_eq(rep.bad_offset, last_off);
    if (torn) ck_assert_uint_eq(rep.rest_bytes, torn);
    ck_assert_int_eq(tu_size(path), (long long)cut); /* scan does not modify */

    sa_options o = sa_options_persistent("node-1", path);
    sa_client *c = NULL;
    sa_error err = {0};
    int rc = sa_client_open(&c, &o, &err);
    ck_assert_msg(rc == SA_OK, "cut at %" PRIu64 " (%" PRIu64 " bytes into the last record): %d %s",
                  cut, torn, rc, err.message);
    sa_status st = tu_status(c);
    ck_assert_msg(st.recovery.torn_bytes == torn,
                  "cut %" PRIu64 ": torn_bytes %" PRIu64 ", expected %" PRIu64, cut,
                  st.recovery.torn_bytes, torn);
    ck_assert_uint_eq(st.recovery.records_scanned, N - 1);
    ck_assert_uint_eq(st.recovery.records_replayed, N - 1);
    if (torn) {
      size_t side_len;
      unsigned char *side = tu_read(st.recovery.torn_path, &side_len);
      ck_assert_msg(side_len == torn, "side file %s: %zu bytes, expected %" PRIu64,
                    st.recovery.torn_path, side_len, torn);
      ck_assert_msg(memcmp(side, bytes + last_off, torn) == 0, "side file holds other bytes");
      free(side);
      ck_assert_int_eq(tu_size(path), (long long)last_off); /* the tail is cut off */
    } else {
      ck_assert_str_eq(st.recovery.torn_path, "");
      ck_assert_int_eq(tu_size(path), (long long)cut); /* nothing is cut */
    }

    char k[32], v[64];
    for (int i = 0; i < N - 1; i++) {
      key_of(k, i);
      value_of(v, i);
      tu_expect_str(c, k, v);
    }
    if (last_is_batch) {
      tu_expect_absent(c, "b/0"); /* none of the torn batch */
      tu_expect_absent(c, "b/1");
      tu_expect_absent(c, "b/2");
    } else {
      key_of(k, N - 1);
      tu_expect_absent(c, k);
    }
    ck_assert_uint_eq(sa_client_size(c), N - 1);

    /* The node goes on writing after the cut, and that reopens clean. */
    tu_put(c, "after", "cut");
    sa_client_close(c);
    c = tu_open(&o);
    st = tu_status(c);
    ck_assert_uint_eq(st.recovery.torn_bytes, 0);
    tu_expect_str(c, "after", "cut");
    key_of(k, 0);
    tu_expect_str(c, k, "value-00-0123456789abcdefghij");
    sa_client_close(c);
    tu_rmrf(sub);
  }
  free(bytes);
}

START_TEST(torn_tail_every_offset_put) {
  torn_every_offset(false);
}
END_TEST

START_TEST(torn_tail_every_offset_batch) {
  torn_every_offset(true);
}
END_TEST

/* Zeros after the records (preallocated free space, or what a file system
 * leaves after a power loss) are not a torn tail: the WAL is clean, nothing
 * is cut, no side file; the next append goes where the records end. */
START_TEST(zero_filled_tail) {
  enum { N = 4 };
  recs rs;
  write_reference(N, false, &rs);
  size_t total;
  unsigned char *bytes = tu_read(wal, &total);
  static const size_t zeros[] = {1, 7, 31, 32, 33, 512, 4096, 65536};
  unsigned char *z = calloc(1, 65536);
  ck_assert_ptr_nonnull(z);
  for (size_t i = 0; i < sizeof zeros / sizeof zeros[0]; i++) {
    char sub[TU_PATH_MAX], path[TU_PATH_MAX];
    copy_prefix(bytes, total, sub, path);
    tu_append(path, z, zeros[i]);
    sa_wal_report rep = scan(path, NULL);
    ck_assert_int_eq(rep.state, SA_WAL_CLEAN);
    ck_assert_uint_eq(rep.records, N);
    ck_assert_uint_eq(rep.data_bytes, total);
    ck_assert_uint_eq(rep.file_bytes, total + zeros[i]);

    sa_options o = sa_options_persistent("node-1", path);
    sa_client *c = NULL;
    sa_error err = {0};
    int rc = sa_client_open(&c, &o, &err);
    ck_assert_msg(rc == SA_OK, "%zu zero bytes: %d %s", zeros[i], rc, err.message);
    sa_status st = tu_status(c);
    ck_assert_uint_eq(st.recovery.torn_bytes, 0);
    ck_assert_str_eq(st.recovery.torn_path, "");
    ck_assert_int_eq(count_files(sub, ".torn."), 0);
    ck_assert_int_eq(tu_size(path), (long long)(total + zeros[i])); /* nothing cut */
    ck_assert_uint_eq(st.wal_bytes, total);
    ck_assert_uint_eq(sa_client_size(c), N);
    char k[32], v[64];
    key_of(k, N - 1);
    value_of(v, N - 1);
    tu_expect_str(c, k, v);
    tu_put(c, "after", "zeros");
    sa_client_close(c);
    rep = scan(path, NULL);
    ck_assert_int_eq(rep.state, SA_WAL_CLEAN);
    ck_assert_uint_eq(rep.records, N + 1); /* written where the records ended */
    c = tu_open(&o);
    ck_assert_uint_eq(tu_status(c).recovery.torn_bytes, 0);
    tu_expect_str(c, "after", "zeros");
    tu_expect_str(c, k, v);
    sa_client_close(c);
    tu_rmrf(sub);
  }
  free(z);
  free(bytes);
}
END_TEST

/* A torn record followed by zeros (an interrupted append into free space)
 * is a torn tail: the side file holds the torn bytes through the last
 * non-zero one, not the zeros, and the WAL is cut where the record began. */
START_TEST(torn_record_then_zeros) {
  enum { N = 4 };
  recs rs;
  write_reference(N, false, &rs);
  size_t total;
  unsigned char *bytes = tu_read(wal, &total);
  uint64_t last_off = rs.off[N - 1];
  static const size_t keep[] = {12, 33, 40};
  static const size_t zeros[] = {1, 100, 8192};
  unsigned char *file = calloc(1, total + 8192);
  ck_assert_ptr_nonnull(file);
  for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++) {
    ck_assert_uint_lt(last_off + keep[i], total);
    char sub[TU_PATH_MAX], path[TU_PATH_MAX];
    size_t flen = (size_t)last_off + keep[i] + zeros[i];
    memset(file, 0, total + 8192);
    memcpy(file, bytes, (size_t)last_off + keep[i]);
    copy_prefix(file, flen, sub, path);
    uint64_t torn = nz_end(file, last_off, flen) - last_off;
    ck_assert_uint_gt(torn, 0);
    ck_assert_uint_le(torn, keep[i]);

    sa_wal_report rep = scan(path, NULL);
    ck_assert_int_eq(rep.state, SA_WAL_TORN);
    ck_assert_uint_eq(rep.records, N - 1);
    ck_assert_uint_eq(rep.bad_offset, last_off);
    ck_assert_uint_eq(rep.rest_bytes, torn);

    sa_options o = sa_options_persistent("node-1", path);
    sa_client *c = tu_open(&o);
    sa_status st = tu_status(c);
    ck_assert_uint_eq(st.recovery.torn_bytes, torn);
    size_t side_len;
    unsigned char *side = tu_read(st.recovery.torn_path, &side_len);
    ck_assert_uint_eq(side_len, torn);
    ck_assert_msg(memcmp(side, bytes + last_off, torn) == 0, "side file holds other bytes");
    free(side);
    ck_assert_int_eq(tu_size(path), (long long)last_off);
    ck_assert_uint_eq(sa_client_size(c), N - 1);
    char k[32];
    key_of(k, N - 1);
    tu_expect_absent(c, k);
    tu_put(c, "after", "torn");
    sa_client_close(c);
    c = tu_open(&o);
    ck_assert_uint_eq(tu_status(c).recovery.torn_bytes, 0);
    tu_expect_str(c, "after", "torn");
    sa_client_close(c);
    tu_rmrf(sub);
  }
  free(file);
  free(bytes);
}
END_TEST

static void fill_value(unsigned char *buf, size_t len, int i);

/* Appends across several preallocation chunks (wal_max_bytes 64 KiB: 8 KiB
 * chunks) are all read back after a reopen without the store. */
START_TEST(appends_across_chunks_survive_reopen) {
  enum { VAL = 1000, COUNT = 25 }; /* ~26 KB: below the checkpoint at 32 KiB */
  opts.wal_max_bytes = 65536;
  unsigned char buf[VAL];
  sa_client *c = tu_open(&opts);
  uint64_t prev_file = 0;
  int grew = 0;
  for (int i = 0; i < COUNT; i++) {
    char k[32];
    snprintf(k, sizeof k, "chunk/%02d", i);
    fill_value(buf, VAL, i);
    tu_put_bytes(c, k, buf, VAL);
    sa_status st = tu_status(c);
    long long file = tu_size(wal);
    ck_assert_int_eq(file % 8192, 0); /* whole chunks */
    ck_assert_int_ge(file, (long long)st.wal_bytes);
    ck_assert_int_lt(file - (long long)st.wal_bytes, 8192);
    if (prev_file && (uint64_t)file > prev_file) grew++;
    prev_file = (uint64_t)file;
  }
  ck_assert_int_ge(grew, 2);
  ck_assert_uint_eq(tu_status(c).checkpoints, 0);
  char store[TU_PATH_MAX], lock[TU_PATH_MAX + 8];
  snprintf(store, sizeof store, "%s", tu_status(c).store_path);
  sa_client_close(c);
  sa_wal_report rep = scan(wal, NULL);
  ck_assert_int_eq(rep.state, SA_WAL_CLEAN);
  ck_assert_uint_eq(rep.records, COUNT);
  ck_assert_int_eq(unlink(store), 0);
  snprintf(lock, sizeof lock, "%s-lock", store);
  unlink(lock);

  c = tu_open(&opts);
  ck_assert_uint_eq(tu_status(c).recovery.records_replayed, COUNT);
  ck_assert_uint_eq(tu_status(c).recovery.torn_bytes, 0);
  for (int i = 0; i < COUNT; i++) {
    char k[32];
    snprintf(k, sizeof k, "chunk/%02d", i);
    fill_value(buf, VAL, i);
    tu_expect(c, k, buf, VAL);
  }
  sa_client_close(c);
}
END_TEST

/* After a checkpoint the old records are gone from the file, not merely
 * behind the new end: the bytes after the records are zeros. */
START_TEST(checkpoint_leaves_no_old_record) {
  enum { VAL = 3000, COUNT = 20 };
  unsigned char buf[VAL];
  sa_client *c = tu_open(&opts);
  for (int i = 0; i < COUNT; i++) {
    char k[32];
    snprintf(k, sizeof k, "old/%02d", i);
    fill_value(buf, VAL, i);
    tu_put_bytes(c, k, buf, VAL);
  }
  sa_error err = {0};
  ck_assert_int_eq(sa_client_checkpoint(c, &err), SA_OK);
  tu_put(c, "new", "1");
  uint64_t logical = tu_status(c).wal_bytes;
  sa_client_close(c);

  size_t len;
  unsigned char *all = tu_read(wal, &len);
  sa_wal_report rep = scan(wal, NULL);
  ck_assert_int_eq(rep.state, SA_WAL_CLEAN);
  ck_assert_uint_eq(rep.records, 1);
  ck_assert_uint_eq(rep.data_bytes, logical);
  ck_assert_uint_ge(len, logical);
  for (size_t i = logical; i < len; i++)
    ck_assert_msg(all[i] == 0, "byte %zu after the records is not zero", i);
  free(all);
  c = tu_open(&opts);
  ck_assert_uint_eq(tu_status(c).recovery.records_scanned, 1);
  ck_assert_uint_eq(tu_status(c).recovery.torn_bytes, 0);
  tu_expect_str(c, "new", "1");
  fill_value(buf, VAL, 7);
  tu_expect(c, "old/07", buf, VAL);
  sa_client_close(c);
}
END_TEST

/* ---- corruption --------------------------------------------------------- */

static void offset_text(char out[32], uint64_t off) {
  snprintf(out, 32, "%" PRIu64, off);
}

START_TEST(corrupt_middle_record_every_bit) {
  enum { N = 5, MID = 2 };
  recs rs;
  write_reference(N, false, &rs);
  size_t total;
  unsigned char *bytes = tu_read(wal, &total);
  uint64_t lo = rs.off[MID], hi = rs.off[MID + 1];
  char off_txt[32];
  offset_text(off_txt, lo);

  for (uint64_t bit = lo * 8; bit < hi * 8; bit++) {
    char sub[TU_PATH_MAX], path[TU_PATH_MAX];
    copy_prefix(bytes, total, sub, path);
    tu_flip_bit(path, (long long)(bit / 8), (int)(bit % 8));
    size_t flen;
    unsigned char *flipped = tu_read(path, &flen);

    sa_wal_report rep = scan(path, NULL);
    ck_assert_msg(rep.state == SA_WAL_CORRUPT, "bit %" PRIu64 " (byte +%" PRIu64 "): state %d", bit,
                  bit / 8 - lo, rep.state);
    ck_assert_uint_eq(rep.bad_offset, lo);
    ck_assert_uint_eq(rep.records, MID);
    ck_assert_msg(rep.next_good_offset == rs.off[MID + 1] ||
                      rep.next_good_offset == rs.off[MID + 2],
                  "bit %" PRIu64 ": next_good_offset %" PRIu64, bit, rep.next_good_offset);
    ck_assert_msg(rep.reason[0] != '\0', "scan should say why the record is bad");

    sa_options o = sa_options_persistent("node-1", path);
    sa_client *c = NULL;
    sa_error err = {0};
    int rc = sa_client_open(&c, &o, &err);
    ck_assert_msg(rc == SA_ECORRUPT, "bit %" PRIu64 " (byte +%" PRIu64 "): open gave %d %s", bit,
                  bit / 8 - lo, rc, err.message);
    ck_assert_ptr_null(c);
    ck_assert_msg(strstr(err.message, path) != NULL, "message should name %s: %s", path,
                  err.message);
    ck_assert_msg(strstr(err.message, off_txt) != NULL, "message should name offset %s: %s",
                  off_txt, err.message);

    /* Nothing is modified, nothing is cut aside. */
    size_t alen;
    unsigned char *after = tu_read(path, &alen);
    ck_assert_msg(alen == flen && memcmp(after, flipped, alen) == 0,
                  "bit %" PRIu64 ": refused open modified the WAL", bit);
    ck_assert_int_eq(count_files(sub, "torn"), 0);
    free(after);
    free(flipped);
    tu_rmrf(sub);
  }
  free(bytes);
}
END_TEST

START_TEST(corrupt_header_every_bit) {
  enum { N = 3 };
  recs rs;
  write_reference(N, false, &rs);
  size_t total;
  unsigned char *bytes = tu_read(wal, &total);
  uint64_t hdr = rs.off[0];
  for (uint64_t bit = 0; bit < hdr * 8; bit++) {
    char sub[TU_PATH_MAX], path[TU_PATH_MAX];
    copy_prefix(bytes, total, sub, path);
    tu_flip_bit(path, (long long)(bit / 8), (int)(bit % 8));
    size_t flen;
    unsigned char *flipped = tu_read(path, &flen);
    sa_options o = sa_options_persistent("node-1", path);
    sa_client *c = NULL;
    sa_error err = {0};
    int rc = sa_client_open(&c, &o, &err);
    ck_assert_msg(rc == SA_ECORRUPT || rc == SA_EFORMAT || rc == SA_ENODE,
                  "header bit %" PRIu64 ": open gave %d %s", bit, rc, err.message);
    ck_assert_msg(strstr(err.message, path) != NULL, "message should name %s: %s", path,
                  err.message);
    size_t alen;
    unsigned char *after = tu_read(path, &alen);
    ck_assert_msg(alen == flen && memcmp(after, flipped, alen) == 0,
                  "header bit %" PRIu64 ": refused open modified the WAL", bit);
    free(after);
    free(flipped);
    tu_rmrf(sub);
  }
  free(bytes);
}
END_TEST

START_TEST(repair_corrupt_keeps_backup_and_truncates) {
  enum { N = 5, MID = 2 };
  recs rs;
  write_reference(N, false, &rs);
  size_t total;
  unsigned char *bytes = tu_read(wal, &total);
  uint64_t lo = rs.off[MID], hi = rs.off[MID + 1];
  /* first byte, a middle byte and the last byte of the record */
  uint64_t at[] = {lo, lo + (hi - lo) / 2, hi - 1};
  for (size_t i = 0; i < 3; i++) {
    char sub[TU_PATH_MAX], path[TU_PATH_MAX];
    copy_prefix(bytes, total, sub, path);
    tu_flip_bit(path, (long long)at[i], 5);
    size_t flen;
    unsigned char *flipped = tu_read(path, &flen);

    sa_wal_report rep;
    memset(&rep, 0, sizeof rep);
    sa_error err = {0};
    int rc = sa_wal_repair(path, &rep, &err);
    ck_assert_msg(rc == SA_OK, "repair: %d %s", rc, err.message);
    ck_assert_int_eq(rep.state, SA_WAL_CORRUPT);
    ck_assert_uint_eq(rep.bad_offset, lo);
    ck_assert_msg(rep.backup_path[0] != '\0', "repair must keep a copy");
    size_t blen;
    unsigned char *backup = tu_read(rep.backup_path, &blen);
    ck_assert_msg(blen == flen && memcmp(backup, flipped, blen) == 0,
                  "backup %s differs from the file before repair", rep.backup_path);
    free(backup);
    free(flipped);
    ck_assert_int_eq(tu_size(path), (long long)lo);

    sa_wal_report after = scan(path, NULL);
    ck_assert_int_eq(after.state, SA_WAL_CLEAN);
    ck_assert_uint_eq(after.records, MID);

    sa_options o = sa_options_persistent("node-1", path);
    sa_client *c = tu_open(&o);
    char k[32], v[64];
    for (int j = 0; j < N; j++) {
      key_of(k, j);
      value_of(v, j);
      if (j < MID)
        tu_expect_str(c, k, v);
      else
        tu_expect_absent(c, k);
    }
    tu_put(c, "after", "repair");
    sa_client_close(c);
    c = tu_open(&o);
    tu_expect_str(c, "after", "repair");
    sa_client_close(c);
    tu_rmrf(sub);
  }
  free(bytes);
}
END_TEST

START_TEST(repair_clean_and_torn) {
  enum { N = 4 };
  recs rs;
  write_reference(N, false, &rs);
  size_t total;
  unsigned char *bytes = tu_read(wal, &total);

  /* Clean: untouched, no copy. */
  sa_wal_report rep;
  memset(&rep, 0, sizeof rep);
  sa_error err = {0};
  ck_assert_int_eq(sa_wal_repair(wal, &rep, &err), SA_OK);
  ck_assert_int_eq(rep.state, SA_WAL_CLEAN);
  ck_assert_str_eq(rep.backup_path, "");
  size_t len;
  unsigned char *now = tu_read(wal, &len);
  ck_assert_uint_eq(len, total);
  ck_assert_mem_eq(now, bytes, total);
  free(now);

  /* Torn: the tail goes, a copy stays. */
  char sub[TU_PATH_MAX], path[TU_PATH_MAX];
  uint64_t cut = rs.off[N - 1] + 3;
  copy_prefix(bytes, cut, sub, path);
  memset(&rep, 0, sizeof rep);
  ck_assert_int_eq(sa_wal_repair(path, &rep, &err), SA_OK);
  ck_assert_int_eq(rep.state, SA_WAL_TORN);
  ck_assert_int_eq(tu_size(path), (long long)rs.off[N - 1]);
  ck_assert_int_eq(tu_size(rep.backup_path), (long long)cut);

  /* A running node holds the lock. */
  sa_client *c = tu_open(&opts);
  memset(&err, 0, sizeof err);
  ck_assert_int_eq(sa_wal_repair(wal, &rep, &err), SA_ELOCKED);
  ck_assert_msg(tu_contains(err.message, "locked"), "message should say locked: %s", err.message);
  sa_client_close(c);
  free(bytes);
}
END_TEST

START_TEST(repair_with_store_ahead_keeps_lsns_unique) {
  /* The store applied every record; the WAL is then repaired (truncated)
   * below that.  New writes must not reuse the store's LSNs. */
  enum { N = 5, MID = 2 };
  recs rs;
  write_reference(N, false, &rs);
  tu_flip_bit(wal, (long long)rs.off[MID] + 1, 0);
  sa_wal_report rep;
  sa_error err = {0};
  ck_assert_int_eq(sa_wal_repair(wal, &rep, &err), SA_OK);

  sa_client *c = tu_open(&opts);
  sa_write_result r = {0};
  ck_assert_int_eq(sa_client_put_ex(c, "new", "v", 1, NULL, &r, &err), SA_OK);
  ck_assert_msg(r.lsn > rs.lsn[N - 1], "LSN %" PRIu64 " reused (the store holds up to %" PRIu64 ")",
                r.lsn, rs.lsn[N - 1]);
  sa_client_close(c);
  c = tu_open(&opts);
  tu_expect_str(c, "new", "v");
  sa_client_close(c);
}
END_TEST

/* ---- replay ------------------------------------------------------------- */

START_TEST(replay_after_store_lost_commits) {
  sa_client *c = tu_open(&opts);
  tu_put(c, "a", "1");
  tu_put(c, "b", "2");
  char store[TU_PATH_MAX], old[TU_PATH_MAX], lock[TU_PATH_MAX + 8];
  snprintf(store, sizeof store, "%s", tu_status(c).store_path);
  sa_client_close(c);
  tu_path(old, dir, "store-copy");
  tu_copy(store, old);

  c = tu_open(&opts);
  tu_put(c, "c", "3");
  tu_put(c, "a", "1bis");
  sa_error err = {0};
  ck_assert_int_eq(sa_client_remove(c, "b", &err), SA_OK);
  sa_batch_op ops[] = {{SA_OP_PUT, "d", "4", 1}, {SA_OP_PUT, "e", "5", 1}};
  ck_assert_int_eq(sa_client_batch(c, ops, 2, NULL, &err), SA_OK);
  uint64_t last = tu_status(c).last_lsn;
  sa_client_close(c);

  /* The store forgets its last commits: put the old copy back. */
  tu_copy(old, store);
  snprintf(lock, sizeof lock, "%s-lock", store);
  unlink(lock);

  c = tu_open(&opts);
  sa_status st = tu_status(c);
  ck_assert_uint_gt(st.recovery.records_replayed, 0);
  ck_assert_uint_eq(st.recovery.records_replayed, 4);
  ck_assert_uint_eq(st.applied_lsn, last);
  ck_assert_uint_eq(st.last_lsn, last);
  tu_expect_str(c, "a", "1bis");
  tu_expect_absent(c, "b");
  tu_expect_str(c, "c", "3");
  tu_expect_str(c, "d", "4");
  tu_expect_str(c, "e", "5");
  ck_assert_uint_eq(sa_client_size(c), 4);
  sa_value v = {0};
  ck_assert_int_eq(sa_client_get(c, "a", &v, &err), SA_OK);
  ck_assert_uint_eq(v.version, 2); /* replay keeps versions */
  sa_value_free(&v);
  sa_write_result r = {0};
  ck_assert_int_eq(sa_client_put_ex(c, "f", "6", 1, NULL, &r, &err), SA_OK);
  ck_assert_uint_eq(r.lsn, last + 1);
  sa_client_close(c);

  /* Replaying twice changes nothing. */
  c = tu_open(&opts);
  ck_assert_uint_eq(tu_status(c).recovery.records_replayed, 0);
  tu_expect_str(c, "a", "1bis");
  tu_expect_str(c, "f", "6");
  ck_assert_uint_eq(sa_client_size(c), 5);
  sa_client_close(c);
}
END_TEST

/* Closes c and deletes its store (file and lock): the next open rebuilds it
 * from the WAL. */
static void close_and_delete_store(sa_client *c) {
  char store[TU_PATH_MAX], lock[TU_PATH_MAX + 8];
  snprintf(store, sizeof store, "%s", tu_status(c).store_path);
  sa_client_close(c);
  ck_assert_int_eq(unlink(store), 0);
  snprintf(lock, sizeof lock, "%s-lock", store);
  unlink(lock);
}

START_TEST(store_deleted_is_rebuilt_from_wal) {
  sa_client *c = tu_open(&opts);
  for (int i = 0; i < 20; i++) {
    char k[32], v[64];
    key_of(k, i);
    value_of(v, i);
    tu_put(c, k, v);
  }
  uint64_t outbox;
  sa_sync_state s;
  sa_error err = {0};
  ck_assert_int_eq(sa_client_sync_state(c, &s, &err), SA_OK);
  outbox = s.outbox_size;
  close_and_delete_store(c);

  c = tu_open(&opts);
  ck_assert_uint_eq(tu_status(c).recovery.records_replayed, 20);
  for (int i = 0; i < 20; i++) {
    char k[32], v[64];
    key_of(k, i);
    value_of(v, i);
    tu_expect_str(c, k, v);
  }
  ck_assert_int_eq(sa_client_sync_state(c, &s, &err), SA_OK);
  ck_assert_uint_eq(s.outbox_size, outbox); /* the outbox is rebuilt too */
  sa_client_close(c);
}
END_TEST

/* Open reads the WAL through a 1 MiB window: records straddle its edges and
 * some are larger than it (the window grows).  Every value must come back
 * whole after a rebuild from the WAL, and the scan must count every record. */
enum { WINDOW_RECORDS = 3000, WINDOW_BIG = 3 << 20 };

/* Record i's value size: 1 MiB + 1 once, 3 MiB twice, else 200..1099. */
static size_t window_value_len(int i) {
  if (i == 700) return (1u << 20) + 1;
  if (i == 1500 || i == 1501) return WINDOW_BIG;
  return 200 + (size_t)(i * 37) % 900;
}

START_TEST(replay_reads_records_larger_than_the_read_window) {
  enum { SMALL = WINDOW_RECORDS, BIG = WINDOW_BIG };
  sa_options o = opts;
  o.max_value_bytes = BIG;
  o.store_max_bytes = (uint64_t)256 << 20;
  o.wal_max_bytes = (uint64_t)256 << 20; /* no checkpoint: every record stays */
  sa_client *c = tu_open(&o);
  unsigned char *buf = malloc(BIG);
  ck_assert_ptr_nonnull(buf);
  sa_error err = {0};
  int n = 0;
  for (int i = 0; i < SMALL; i++, n++) {
    char k[32];
    snprintf(k, sizeof k, "r%05d", n);
    size_t len = window_value_len(i);
    fill_value(buf, len, n);
    ck_assert_msg(sa_client_put_bytes(c, k, buf, len, &err) == SA_OK, "%s", err.message);
  }
  close_and_delete_store(c);

  c = tu_open(&o);
  sa_status st = tu_status(c);
  ck_assert_uint_eq(st.recovery.records_scanned, SMALL);
  ck_assert_uint_eq(st.recovery.records_replayed, SMALL);
  unsigned char *want = malloc(BIG);
  ck_assert_ptr_nonnull(want);
  for (int i = 0; i < SMALL; i++) {
    char k[32];
    snprintf(k, sizeof k, "r%05d", i);
    size_t len = window_value_len(i);
    fill_value(want, len, i);
    sa_value v = {0};
    ck_assert_msg(sa_client_get(c, k, &v, &err) == SA_OK, "%s: %s", k, err.message);
    ck_assert_uint_eq(v.len, len);
    ck_assert_msg(memcmp(v.data, want, len) == 0, "value of %s differs after replay", k);
    sa_value_free(&v);
  }
  sa_client_close(c);
  free(want);
  free(buf);
}
END_TEST

/* ---- checkpoint --------------------------------------------------------- */

static void fill_value(unsigned char *buf, size_t len, int i) {
  for (size_t j = 0; j < len; j++)
    buf[j] = (unsigned char)(i * 131 + j * 7);
}

START_TEST(checkpoint_bounds_wal) {
  enum { VAL = 8192, COUNT = 400 }; /* ~3.2 MiB through a 256 KiB WAL */
  const uint64_t bound = 256u << 10;
  const uint64_t slack = 2 * (VAL + 1024); /* one group of a single writer */
  opts.wal_max_bytes = bound;
  unsigned char *buf = malloc(VAL);
  ck_assert_ptr_nonnull(buf);
  sa_client *c = tu_open(&opts);
  long long max_seen = 0;
  for (int i = 0; i < COUNT; i++) {
    char k[32];
    snprintf(k, sizeof k, "blob/%04d", i % 300); /* some overwrites */
    fill_value(buf, VAL, i);
    tu_put_bytes(c, k, buf, VAL);
    long long sz = tu_size(wal);
    if (sz > max_seen) max_seen = sz;
    ck_assert_msg((uint64_t)sz <= bound + slack,
                  "WAL is %lld bytes after put %d (bound %" PRIu64 ")", sz, i, bound);
  }
  sa_status st = tu_status(c);
  ck_assert_uint_gt(st.checkpoints, 0);
  ck_assert_uint_le(st.wal_bytes, bound + slack);
  sa_client_close(c);

  c = tu_open(&opts);
  ck_assert_uint_eq(sa_client_size(c), 300);
  for (int i = COUNT - 300; i < COUNT; i++) {
    char k[32];
    snprintf(k, sizeof k, "blob/%04d", i % 300);
    fill_value(buf, VAL, i);
    tu_expect(c, k, buf, VAL);
  }
  sa_client_close(c);
  free(buf);
}
END_TEST

enum { CK_WRITERS = 4, CK_PER_WRITER = 120, CK_VAL = 1500 };

typedef struct ck_writer {
  sa_client *c;
  int id;
  int failures;
} ck_writer;

static void *ck_writer_main(void *p) {
  ck_writer *w = p;
  unsigned char buf[CK_VAL];
  for (int i = 0; i < CK_PER_WRITER; i++) {
    char k[32];
    snprintf(k, sizeof k, "w%d/%03d", w->id, i);
    fill_value(buf, CK_VAL, w->id * 1000 + i);
    if (sa_client_put_bytes(w->c, k, buf, CK_VAL, NULL) != SA_OK) w->failures++;
  }
  return NULL;
}

START_TEST(checkpoint_under_concurrent_writers) {
  /* ~720 KiB from four threads through a 64 KiB WAL: checkpoints run
   * between groups while writers keep queueing. */
  opts.wal_max_bytes = 64u << 10;
  sa_client *c = tu_open(&opts);
  static ck_writer w[CK_WRITERS];
  pthread_t t[CK_WRITERS];
  for (int i = 0; i < CK_WRITERS; i++) {
    w[i] = (ck_writer){c, i, 0};
    ck_assert_int_eq(pthread_create(&t[i], NULL, ck_writer_main, &w[i]), 0);
  }
  for (int i = 0; i < CK_WRITERS; i++) {
    pthread_join(t[i], NULL);
    ck_assert_int_eq(w[i].failures, 0);
  }
  sa_status st = tu_status(c);
  ck_assert_uint_gt(st.checkpoints, 0);
  /* the bound plus at most one group (every writer's record) */
  ck_assert_uint_le(st.wal_bytes, opts.wal_max_bytes + CK_WRITERS * (CK_VAL + 1024));
  sa_client_close(c);

  c = tu_open(&opts);
  ck_assert_uint_eq(sa_client_size(c), CK_WRITERS * CK_PER_WRITER);
  unsigned char buf[CK_VAL];
  for (int i = 0; i < CK_WRITERS; i++)
    for (int j = 0; j < CK_PER_WRITER; j++) {
      char k[32];
      snprintf(k, sizeof k, "w%d/%03d", i, j);
      fill_value(buf, CK_VAL, i * 1000 + j);
      tu_expect(c, k, buf, CK_VAL);
    }
  sa_client_close(c);
}
END_TEST

START_TEST(bound_smaller_than_a_record) {
  /* The core refuses bounds under 64 KiB with a clear SA_EINVAL. */
  opts.wal_max_bytes = 4096;
  sa_client *c = NULL;
  sa_error err = {0};
  ck_assert_int_eq(sa_client_open(&c, &opts, &err), SA_EINVAL);
  ck_assert_msg(strstr(err.message, "wal_max_bytes") != NULL, "message: %s", err.message);

  /* At the smallest bound, one record larger than the bound: every group
   * checkpoints, nothing is refused or lost. */
  opts.wal_max_bytes = 65536;
  enum { VAL = 100000 };
  unsigned char *buf = malloc(VAL);
  ck_assert_ptr_nonnull(buf);
  c = tu_open(&opts);
  for (int i = 0; i < 10; i++) {
    char k[32];
    snprintf(k, sizeof k, "big/%d", i);
    fill_value(buf, VAL, i);
    tu_put_bytes(c, k, buf, VAL);
    ck_assert_int_le(tu_size(wal), 65536 + VAL + 1024);
  }
  ck_assert_uint_gt(tu_status(c).checkpoints, 0);
  sa_client_close(c);
  c = tu_open(&opts);
  for (int i = 0; i < 10; i++) {
    char k[32];
    snprintf(k, sizeof k, "big/%d", i);
    fill_value(buf, VAL, i);
    tu_expect(c, k, buf, VAL);
  }
  sa_client_close(c);
  free(buf);
}
END_TEST

START_TEST(explicit_checkpoint) {
  sa_client *c = tu_open(&opts);
  char k[32], v[64];
  for (int i = 0; i < 30; i++) {
    key_of(k, i);
    value_of(v, i);
    tu_put(c, k, v);
  }
  sa_status before = tu_status(c);
  sa_error err = {0};
  ck_assert_int_eq(sa_client_checkpoint(c, &err), SA_OK);
  sa_status after = tu_status(c);
  ck_assert_uint_lt(after.wal_bytes, before.wal_bytes);
  ck_assert_uint_eq(after.checkpoints, before.checkpoints + 1);
  ck_assert_uint_eq(after.last_lsn, before.last_lsn);
  for (int i = 0; i < 30; i++) {
    key_of(k, i);
    value_of(v, i);
    tu_expect_str(c, k, v);
  }
  tu_put(c, "post", "checkpoint");
  sa_client_close(c);

  sa_wal_report rep = scan(wal, NULL);
  ck_assert_int_eq(rep.state, SA_WAL_CLEAN);
  ck_assert_uint_eq(rep.start_lsn, before.last_lsn);
  ck_assert_uint_eq(rep.records, 1);
  ck_assert_uint_eq(rep.first_lsn, before.last_lsn + 1);

  c = tu_open(&opts);
  tu_expect_str(c, "post", "checkpoint");
  key_of(k, 29);
  value_of(v, 29);
  tu_expect_str(c, k, v);
  ck_assert_uint_eq(sa_client_size(c), 31);
  sa_write_result r = {0};
  ck_assert_int_eq(sa_client_put_ex(c, "next", "x", 1, NULL, &r, &err), SA_OK);
  ck_assert_uint_eq(r.lsn, before.last_lsn + 2); /* LSNs continue over the checkpoint */
  sa_client_close(c);
}
END_TEST

static Suite *wal_suite(void) {
  Suite *s = suite_create("wal");
  TCase *tc = tcase_create("scan");
  tcase_add_checked_fixture(tc, setup, NULL);
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, scan_clean_wal);
  tcase_add_test(tc, scan_visitor_can_stop);
  tcase_add_test(tc, scan_refuses_non_wal);
  tcase_add_test(tc, empty_existing_file_opens);
  suite_add_tcase(s, tc);

  TCase *tr = tcase_create("recovery");
  tcase_add_checked_fixture(tr, setup, NULL);
  tcase_set_timeout(tr, 120);
  tcase_add_test(tr, torn_tail_every_offset_put);
  tcase_add_test(tr, torn_tail_every_offset_batch);
  tcase_add_test(tr, zero_filled_tail);
  tcase_add_test(tr, torn_record_then_zeros);
  tcase_add_test(tr, appends_across_chunks_survive_reopen);
  tcase_add_test(tr, corrupt_middle_record_every_bit);
  tcase_add_test(tr, corrupt_header_every_bit);
  tcase_add_test(tr, repair_corrupt_keeps_backup_and_truncates);
  tcase_add_test(tr, repair_clean_and_torn);
  tcase_add_test(tr, repair_with_store_ahead_keeps_lsns_unique);
  tcase_add_test(tr, replay_after_store_lost_commits);
  tcase_add_test(tr, store_deleted_is_rebuilt_from_wal);
  tcase_add_test(tr, replay_reads_records_larger_than_the_read_window);
  suite_add_tcase(s, tr);

  TCase *tk = tcase_create("checkpoint");
  tcase_add_checked_fixture(tk, setup, NULL);
  tcase_set_timeout(tk, 120);
  tcase_add_test(tk, checkpoint_bounds_wal);
  tcase_add_test(tk, checkpoint_under_concurrent_writers);
  tcase_add_test(tk, bound_smaller_than_a_record);
  tcase_add_test(tk, explicit_checkpoint);
  tcase_add_test(tk, checkpoint_leaves_no_old_record);
  suite_add_tcase(s, tk);
  return s;
}

int main(void) {
  return tu_main(wal_suite());
}
