/*
 * test_faults.c -- injected I/O faults through the sa_io table (core/io.h).
 *
 * ENOSPC and EIO at pwrite and at fdatasync, short writes, a failure at the
 * store commit, and a failure at every single I/O call of an open that
 * recovers a torn WAL.  The invariants, after each fault:
 *   - the failing call reports the fault's code with a message naming the
 *     WAL path; nothing of the failed operation is visible while the node
 *     runs (never half-applied);
 *   - after a failed fdatasync the node is read-only (SA_EREADONLY), reads
 *     still work;
 *   - after close and reopen with the libc table, every acknowledged write
 *     is there, a failed write is absent or whole, the WAL is clean.
 *
 * Each test runs in its own process (CK_FORK), so the table it installs
 * never leaks into another test.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

static char dir[TU_PATH_MAX]; /* this test's fresh directory */
static char wal[TU_PATH_MAX]; /* dir/node-1.wal */
static sa_options opts;       /* persistent node-1 at wal */

static void setup(void) {
  tu_mkdir(dir);
  opts = tu_options("node-1", dir, wal);
}

/* Reopens with the libc table and checks the WAL scans clean. */
static sa_client *reopen_clean(void) {
  sa_io_set(NULL);
  sa_client *c = tu_open(&opts);
  sa_status st = tu_status(c);
  ck_assert(!st.read_only);
  ck_assert_uint_eq(st.applied_lsn, st.last_lsn);
  return c;
}

/* key is absent, or holds exactly value (an EIO write has an unknown
 * outcome: it may come back whole, never partly). */
static void expect_absent_or(sa_client *c, const char *key, const char *value) {
  sa_value v = {0};
  int rc = sa_client_get(c, key, &v, NULL);
  ck_assert_msg(rc == SA_OK || rc == SA_ENOTFOUND, "get %s: %d", key, rc);
  if (rc == SA_OK)
    ck_assert_msg(v.len == strlen(value) && memcmp(v.data, value, v.len) == 0,
                  "%s came back with other bytes", key);
  sa_value_free(&v);
}

static void expect_fault(int rc, const sa_error *err, int code, const char *what) {
  ck_assert_msg(rc == code, "%s: expected %d (%s), got %d: %s", what, code, sa_strerror(code), rc,
                err->message);
  ck_assert_int_eq(err->code, code);
  ck_assert_msg(strstr(err->message, wal) != NULL, "%s: message should name %s: %s", what, wal,
                err->message);
}

/* ---- pwrite ------------------------------------------------------------- */

/* A failing pwrite.  After ENOSPC the append is rolled back and the node
 * goes on once space is back.  After EIO the header leaves it open: the
 * node may go on, or turn read-only (then it must say so in sa_status and
 * answer SA_EREADONLY); both are checked for what they promise. */
static void fail_pwrite(int e, int code) {
  tu_fault_install();
  sa_client *c = tu_open(&opts);
  tu_put(c, "a", "1");
  uint64_t lsn = tu_status(c).last_lsn;

  tu_fault_arm(TU_PWRITE, e, 0, -1);
  sa_error err = {0};
  expect_fault(sa_client_put(c, "b", "2", &err), &err, code, "put under a failing pwrite");
  ck_assert_uint_gt(tu_fault_failed(), 0);
  tu_expect_absent(c, "b");
  bool ro = tu_status(c).read_only;
  if (e == ENOSPC)
    ck_assert_msg(!ro, "a rolled-back ENOSPC append must not make the node read-only");
  if (ro) ck_assert_msg(tu_status(c).read_only_reason[0] != '\0', "read-only needs a reason");
  int next = ro ? SA_EREADONLY : code;
  sa_batch_op ops[] = {
      {SA_OP_PUT, "x", "1", 1}, {SA_OP_PUT, "y", "2", 1}, {SA_OP_DELETE, "a", NULL, 0}};
  memset(&err, 0, sizeof err);
  int rc = sa_client_batch(c, ops, 3, NULL, &err);
  ck_assert_msg(rc == next, "batch after a failed append: expected %d, got %d %s", next, rc,
                err.message);
  tu_expect_absent(c, "x");
  tu_expect_absent(c, "y");
  tu_expect_str(c, "a", "1");
  ck_assert_uint_eq(tu_status(c).last_lsn, lsn); /* no LSN was spent */

  /* The device recovers. */
  tu_fault_disarm();
  rc = sa_client_put(c, "d", "4", &err);
  ck_assert_msg(rc == (ro ? SA_EREADONLY : SA_OK), "put after the fault: %d %s", rc, err.message);
  if (!ro) tu_expect_str(c, "d", "4");
  sa_client_close(c);

  c = reopen_clean();
  tu_expect_str(c, "a", "1");
  if (ro)
    tu_expect_absent(c, "d");
  else
    tu_expect_str(c, "d", "4");
  expect_absent_or(c, "b", "2");
  expect_absent_or(c, "x", "1");
  tu_put(c, "e", "5"); /* writable after a reopen */
  sa_client_close(c);
  sa_wal_report rep;
  ck_assert_int_eq(sa_wal_scan(wal, NULL, NULL, &rep, NULL), SA_OK);
  ck_assert_int_eq(rep.state, SA_WAL_CLEAN);
}

START_TEST(enospc_at_pwrite) {
  fail_pwrite(ENOSPC, SA_ENOSPC);
}
END_TEST

START_TEST(eio_at_pwrite) {
  fail_pwrite(EIO, SA_EIO);
}
END_TEST

START_TEST(enospc_after_partial_write) {
  /* The first pwrite of the record gets some bytes out, the next one hits
   * ENOSPC: the partial record must not stay in front of later records. */
  tu_fault_install();
  sa_client *c = tu_open(&opts);
  tu_put(c, "a", "1");
  char big[2000];
  memset(big, 'b', sizeof big);
  big[sizeof big - 1] = 0;
  tu_fault_short_writes(100);
  tu_fault_arm(TU_PWRITE, ENOSPC, 1, 1);
  sa_error err = {0};
  expect_fault(sa_client_put(c, "big", big, &err), &err, SA_ENOSPC, "put with a partial write");
  tu_expect_absent(c, "big");
  tu_fault_disarm();
  tu_put(c, "after", "space");
  sa_client_close(c);

  c = reopen_clean();
  ck_assert_uint_eq(tu_status(c).recovery.torn_bytes, 0);
  tu_expect_str(c, "a", "1");
  tu_expect_str(c, "after", "space");
  tu_expect_absent(c, "big");
  sa_client_close(c);
}
END_TEST

START_TEST(short_writes) {
  tu_fault_install();
  tu_fault_short_writes(7); /* also while the WAL header is written */
  sa_client *c = tu_open(&opts);
  ck_assert_uint_gt(tu_fault_calls(TU_PWRITE), 0);
  static unsigned char blob[10000];
  for (size_t i = 0; i < sizeof blob; i++)
    blob[i] = (unsigned char)(i * 13);
  char k[32];
  for (int i = 0; i < 40; i++) {
    snprintf(k, sizeof k, "k%02d", i);
    tu_put_bytes(c, k, blob, (size_t)i * 250);
  }
  sa_batch_op ops[] = {{SA_OP_PUT, "b1", blob, 3000}, {SA_OP_DELETE, "k00", NULL, 0}};
  sa_error err = {0};
  ck_assert_int_eq(sa_client_batch(c, ops, 2, NULL, &err), SA_OK);
  tu_fault_short_writes(1); /* one byte per call */
  tu_put(c, "one-byte-at-a-time", "works");
  for (int i = 1; i < 40; i++) {
    snprintf(k, sizeof k, "k%02d", i);
    tu_expect(c, k, blob, (size_t)i * 250);
  }
  sa_client_close(c);

  c = reopen_clean();
  ck_assert_uint_eq(tu_status(c).recovery.torn_bytes, 0);
  for (int i = 1; i < 40; i++) {
    snprintf(k, sizeof k, "k%02d", i);
    tu_expect(c, k, blob, (size_t)i * 250);
  }
  tu_expect_absent(c, "k00");
  tu_expect(c, "b1", blob, 3000);
  tu_expect_str(c, "one-byte-at-a-time", "works");
  sa_client_close(c);
  sa_wal_report rep;
  ck_assert_int_eq(sa_wal_scan(wal, NULL, NULL, &rep, NULL), SA_OK);
  ck_assert_int_eq(rep.state, SA_WAL_CLEAN);
  ck_assert_uint_eq(rep.records, 42);
}
END_TEST

/* ---- fdatasync ---------------------------------------------------------- */

static void fail_fdatasync(int e, int code) {
  tu_fault_install();
  sa_client *c = tu_open(&opts);
  tu_put(c, "a", "1");
  tu_put(c, "gone", "soon");

  tu_fault_arm(TU_FDATASYNC, e, 0, 1);
  sa_error err = {0};
  expect_fault(sa_client_put(c, "b", "2", &err), &err, code, "put with a failing fdatasync");
  ck_assert_int_eq(tu_fault_failed(), 1);
  tu_expect_absent(c, "b"); /* not visible while the node runs */

  sa_status st = tu_status(c);
  ck_assert(st.read_only);
  ck_assert_msg(st.read_only_reason[0] != '\0', "read-only needs a reason");
  tu_fault_disarm();

  /* Read-only: no retry of the fsync that failed, no pretending. */
  long syncs = tu_fault_calls(TU_FDATASYNC);
  memset(&err, 0, sizeof err);
  ck_assert_int_eq(sa_client_put(c, "c", "3", &err), SA_EREADONLY);
  ck_assert_int_eq(err.code, SA_EREADONLY);
  ck_assert_msg(err.message[0] != '\0', "SA_EREADONLY needs a message");
  ck_assert_int_eq(sa_client_remove(c, "gone", NULL), SA_EREADONLY);
  sa_batch_op ops[] = {{SA_OP_PUT, "x", "1", 1}};
  ck_assert_int_eq(sa_client_batch(c, ops, 1, NULL, NULL), SA_EREADONLY);
  ck_assert_int_eq(sa_client_put_ex(c, "y", "1", 1, NULL, NULL, NULL), SA_EREADONLY);
  ck_assert_int_eq(sa_client_checkpoint(c, NULL), SA_EREADONLY);
  ck_assert_int_eq(tu_fault_calls(TU_FDATASYNC), syncs);

  /* Reads still work. */
  tu_expect_str(c, "a", "1");
  tu_expect_str(c, "gone", "soon");
  tu_expect_absent(c, "c");
  sa_list l;
  ck_assert_int_eq(sa_client_list(c, NULL, NULL, 10, true, &l, NULL), SA_OK);
  ck_assert_uint_eq(l.count, 2);
  sa_list_free(&l);
  ck_assert_uint_eq(sa_client_size(c), 2);
  sa_client_close(c);

  c = reopen_clean();
  tu_expect_str(c, "a", "1");
  tu_expect_str(c, "gone", "soon");
  expect_absent_or(c, "b", "2");
  tu_expect_absent(c, "c");
  tu_put(c, "d", "4"); /* writable again after a reopen */
  sa_client_close(c);
}

START_TEST(eio_at_fdatasync) {
  fail_fdatasync(EIO, SA_EIO);
}
END_TEST

START_TEST(enospc_at_fdatasync) {
  fail_fdatasync(ENOSPC, SA_ENOSPC);
}
END_TEST

START_TEST(flush_refused_when_read_only) {
  /* "sa_client_flush: SA_EREADONLY after a failed fdatasync" (softadastra.h),
   * without another fdatasync. */
  tu_fault_install();
  sa_client *c = tu_open(&opts);
  tu_put(c, "a", "1");
  tu_fault_arm(TU_FDATASYNC, EIO, 0, 1);
  ck_assert_int_eq(sa_client_put(c, "b", "2", NULL), SA_EIO);
  tu_fault_disarm();
  ck_assert(tu_status(c).read_only);
  long syncs = tu_fault_calls(TU_FDATASYNC);
  sa_error err = {0};
  int rc = sa_client_flush(c, &err);
  ck_assert_msg(rc == SA_EREADONLY, "flush on a read-only node: expected SA_EREADONLY, got %d", rc);
  ck_assert_msg(err.message[0] != '\0', "SA_EREADONLY needs a message");
  ck_assert_int_eq(tu_fault_calls(TU_FDATASYNC), syncs);
  sa_client_close(c);
}
END_TEST

enum { WRITERS = 4, PER_WRITER = 60 };

typedef struct writer {
  sa_client *c;
  int id;
  int rc[PER_WRITER];
} writer;

static void *writer_main(void *p) {
  writer *w = p;
  for (int i = 0; i < PER_WRITER; i++) {
    char k[32], v[32];
    snprintf(k, sizeof k, "w%d/%02d", w->id, i);
    snprintf(v, sizeof v, "v%d.%d", w->id, i);
    w->rc[i] = sa_client_put(w->c, k, v, NULL);
  }
  return NULL;
}

START_TEST(fdatasync_fails_under_concurrent_writers) {
  static writer w[WRITERS];
  tu_fault_install();
  sa_client *c = tu_open(&opts);
  tu_fault_arm(TU_FDATASYNC, EIO, 15, 1);
  pthread_t t[WRITERS];
  for (int i = 0; i < WRITERS; i++) {
    w[i].c = c;
    w[i].id = i;
    ck_assert_int_eq(pthread_create(&t[i], NULL, writer_main, &w[i]), 0);
  }
  for (int i = 0; i < WRITERS; i++)
    pthread_join(t[i], NULL);
  ck_assert_int_eq(tu_fault_failed(), 1);

  int eio = 0, ok = 0;
  for (int i = 0; i < WRITERS; i++) {
    bool failed = false;
    for (int j = 0; j < PER_WRITER; j++) {
      int rc = w[i].rc[j];
      ck_assert_msg(rc == SA_OK || rc == SA_EIO || rc == SA_EREADONLY, "writer %d put %d: %d", i, j,
                    rc);
      if (rc == SA_EIO) eio++;
      if (rc == SA_OK) {
        ok++;
        ck_assert_msg(!failed, "writer %d: put %d acknowledged after the node failed", i, j);
      } else {
        failed = true;
      }
    }
  }
  ck_assert_int_ge(eio, 1);
  ck_assert(tu_status(c).read_only);
  sa_client_close(c);

  c = reopen_clean();
  int present = 0;
  for (int i = 0; i < WRITERS; i++)
    for (int j = 0; j < PER_WRITER; j++) {
      char k[32], v[32];
      snprintf(k, sizeof k, "w%d/%02d", i, j);
      snprintf(v, sizeof v, "v%d.%d", i, j);
      if (w[i].rc[j] == SA_OK)
        tu_expect_str(c, k, v);
      else if (w[i].rc[j] == SA_EIO)
        expect_absent_or(c, k, v);
      else
        tu_expect_absent(c, k); /* refused as read-only: never logged */
    }
  present = (int)sa_client_size(c);
  ck_assert_int_ge(present, ok);
  ck_assert_int_le(present, ok + eio);
  sa_client_close(c);
}
END_TEST

/* ---- store commit ------------------------------------------------------- */

/* A store map this small leaves less room than the node needs to answer a
 * write before its store commit (NODE_EARLY_HEADROOM in node.c): every write
 * is then answered after its commit, and a failed commit fails the write. */
#define ANSWER_AFTER_COMMIT_MAP (32u << 20)

static void fail_store_commit(int e, int code) {
  tu_fault_install();
  opts.store_max_bytes = ANSWER_AFTER_COMMIT_MAP;
  sa_client *c = tu_open(&opts);
  tu_put(c, "a", "1");
  tu_fault_arm(TU_STORE_COMMIT, e, 0, 1);
  sa_error err = {0};
  int rc = sa_client_put(c, "b", "2", &err);
  ck_assert_msg(rc == code, "put with a failing store commit: expected %d, got %d %s", code, rc,
                err.message);
  ck_assert_int_eq(tu_fault_failed(), 1);
  ck_assert_msg(err.message[0] != '\0', "store failure needs a message");
  tu_expect_absent(c, "b"); /* never half-applied */
  tu_expect_str(c, "a", "1");
  tu_fault_disarm();

  /* The node may go on or turn read-only; either way it does not lie. */
  rc = sa_client_put(c, "c", "3", &err);
  ck_assert_msg(rc == SA_OK || rc == SA_EREADONLY, "put after the store failure: %d %s", rc,
                err.message);
  if (rc == SA_OK) tu_expect_str(c, "c", "3");
  bool c_acked = rc == SA_OK;
  sa_client_close(c);

  c = reopen_clean();
  tu_expect_str(c, "a", "1");
  expect_absent_or(c, "b", "2");
  if (c_acked)
    tu_expect_str(c, "c", "3");
  else
    tu_expect_absent(c, "c");
  tu_put(c, "d", "4");
  sa_client_close(c);
  c = reopen_clean();
  tu_expect_str(c, "d", "4");
  if (c_acked) tu_expect_str(c, "c", "3");
  sa_client_close(c);
}

/* A failed store commit rolls its record back out of the WAL.  With the WAL
 * preallocated, the record sits inside the file, before free space: the
 * rollback must remove it, or the next open would find a valid record and
 * replay a write that was answered with an error. */
START_TEST(rolled_back_record_is_not_replayed) {
  tu_fault_install();
  opts.store_max_bytes = ANSWER_AFTER_COMMIT_MAP;
  sa_client *c = tu_open(&opts);
  tu_put(c, "a", "1");
  uint64_t wal_bytes = tu_status(c).wal_bytes;
  char store[TU_PATH_MAX], lock[TU_PATH_MAX + 8];
  snprintf(store, sizeof store, "%s", tu_status(c).store_path);
  tu_fault_arm(TU_STORE_COMMIT, EIO, 0, 1);
  sa_error err = {0};
  ck_assert_int_eq(sa_client_put(c, "b", "rolled back", &err), SA_EIO);
  tu_fault_disarm();
  sa_status st = tu_status(c);
  ck_assert(!st.read_only);
  ck_assert_uint_eq(st.wal_bytes, wal_bytes);
  sa_client_close(c);

  sa_io_set(NULL);
  sa_wal_report rep;
  ck_assert_int_eq(sa_wal_scan(wal, NULL, NULL, &rep, NULL), SA_OK);
  ck_assert_int_eq(rep.state, SA_WAL_CLEAN);
  ck_assert_uint_eq(rep.records, 1);
  ck_assert_uint_eq(rep.data_bytes, wal_bytes);
  /* Without the store everything comes from the WAL. */
  ck_assert_int_eq(unlink(store), 0);
  snprintf(lock, sizeof lock, "%s-lock", store);
  unlink(lock);
  c = reopen_clean();
  ck_assert_uint_eq(tu_status(c).recovery.records_replayed, 1);
  tu_expect_str(c, "a", "1");
  tu_expect_absent(c, "b");
  sa_client_close(c);
}
END_TEST

/* The writer pipeline, answering after the commit: a store commit fails in
 * a steady stream of writes.  Its group fails, its records are cut from the
 * WAL (the LSNs of what succeeds stay gapless), nothing of it is visible,
 * and every write answered OK is there after a restart. */
#define PIPE_N 600

static struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int calls;
  int rc[PIPE_N];
  uint64_t lsn[PIPE_N];
} pipe_log = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, {0}, {0}};
static int pipe_slot[PIPE_N];
static char pipe_key[PIPE_N][16];

static void pipe_done(void *arg, int rc, const sa_write_result *res, const sa_error *err) {
  (void)err;
  int i = *(int *)arg;
  pthread_mutex_lock(&pipe_log.mu);
  pipe_log.rc[i] = rc;
  if (res) pipe_log.lsn[i] = res->lsn;
  pipe_log.calls++;
  pthread_cond_broadcast(&pipe_log.cv);
  pthread_mutex_unlock(&pipe_log.mu);
}

static int cmp_lsn(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

START_TEST(store_commit_fails_with_a_group_behind_it) {
  tu_fault_install();
  opts.store_max_bytes = ANSWER_AFTER_COMMIT_MAP;
  sa_client *c = tu_open(&opts);
  tu_put(c, "before", "1");
  /* Skip a few commits so that the failing one has a group behind it. */
  tu_fault_arm(TU_STORE_COMMIT, EIO, 3, 1);
  sa_error err = {0};
  for (int i = 0; i < PIPE_N; i++) {
    pipe_slot[i] = i;
    snprintf(pipe_key[i], sizeof pipe_key[i], "p/%03d", i);
    ck_assert_int_eq(sa_client_put_async(c, pipe_key[i], pipe_key[i], strlen(pipe_key[i]), NULL,
                                         pipe_done, &pipe_slot[i], &err),
                     0);
    usleep(200); /* a steady stream: groups form behind one another */
  }
  pthread_mutex_lock(&pipe_log.mu);
  while (pipe_log.calls < PIPE_N)
    pthread_cond_wait(&pipe_log.cv, &pipe_log.mu);
  pthread_mutex_unlock(&pipe_log.mu);
  ck_assert_int_eq(tu_fault_failed(), 1);
  uint64_t lsns[PIPE_N];
  int ok = 0, failed = 0;
  for (int i = 0; i < PIPE_N; i++) {
    if (pipe_log.rc[i] == 0) {
      lsns[ok++] = pipe_log.lsn[i];
      tu_expect_str(c, pipe_key[i], pipe_key[i]);
    } else {
      ck_assert_int_eq(pipe_log.rc[i], SA_EIO);
      tu_expect_absent(c, pipe_key[i]);
      failed++;
    }
  }
  ck_assert_msg(failed > 0, "the armed commit failed no write");
  fprintf(stderr, "pipeline fault: %d writes failed, %d succeeded\n", failed, ok);
  qsort(lsns, (size_t)ok, sizeof lsns[0], cmp_lsn);
  for (int i = 0; i < ok; i++) /* "before" holds LSN 1 */
    ck_assert_msg(lsns[i] == (uint64_t)i + 2, "LSN %llu where %d was due: a gap or a reuse",
                  (unsigned long long)lsns[i], i + 2);
  sa_status st = tu_status(c);
  ck_assert_uint_eq(st.last_lsn, (uint64_t)ok + 1);
  ck_assert(!st.read_only);
  sa_client_close(c);

  c = reopen_clean();
  ck_assert_uint_eq(sa_client_size(c), (size_t)ok + 1);
  for (int i = 0; i < PIPE_N; i++)
    if (pipe_log.rc[i] == 0)
      tu_expect_str(c, pipe_key[i], pipe_key[i]);
    else
      tu_expect_absent(c, pipe_key[i]);
  sa_client_close(c);
}
END_TEST

START_TEST(eio_at_store_commit) {
  fail_store_commit(EIO, SA_EIO);
}
END_TEST

START_TEST(enospc_at_store_commit) {
  fail_store_commit(ENOSPC, SA_ENOSPC);
}
END_TEST

/* With room in the map a write is answered once its record is synced in the
 * WAL, before its store commit.  When that commit fails, the write stays
 * acknowledged: the node turns read-only, a read that needs the write fails
 * with the cause instead of answering without it, and the next open replays
 * it from the WAL. */
START_TEST(answered_write_survives_a_failed_store_commit) {
  tu_fault_install();
  sa_client *c = tu_open(&opts);
  tu_put(c, "a", "1");
  tu_expect_str(c, "a", "1"); /* the read commits it now, apart from "b" */
  tu_fault_arm(TU_STORE_COMMIT, EIO, 0, 1);
  sa_error err = {0};
  sa_write_result res = {0};
  ck_assert_int_eq(sa_client_put_ex(c, "b", "2", 1, NULL, &res, &err), SA_OK);
  ck_assert(res.durable);
  sa_value v = {0};
  int rc = sa_client_get(c, "b", &v, &err);
  ck_assert_msg(rc == SA_EIO, "read of a write whose commit failed: expected SA_EIO, got %d %s", rc,
                err.message);
  ck_assert_msg(strstr(err.message, "acknowledged") && strstr(err.message, "replays"),
                "the error must say the write is kept: %s", err.message);
  ck_assert_int_eq(tu_fault_failed(), 1);
  tu_fault_disarm();
  sa_status st = tu_status(c);
  ck_assert(st.read_only);
  ck_assert_msg(strstr(st.read_only_reason, "store commit"), "reason: %s", st.read_only_reason);
  ck_assert_int_eq(sa_client_put(c, "c", "3", &err), SA_EREADONLY);
  ck_assert_int_eq(sa_client_checkpoint(c, &err), SA_EIO); /* it would drop "b" from the WAL */
  sa_client_close(c);

  c = reopen_clean();
  ck_assert_uint_eq(tu_status(c).recovery.records_replayed, 1);
  tu_expect_str(c, "a", "1");
  tu_expect_str(c, "b", "2");
  tu_expect_absent(c, "c");
  sa_client_close(c);
}
END_TEST

/* ---- a real full store: the LMDB map ----------------------------------- */

START_TEST(store_map_full) {
  opts.store_max_bytes = 1u << 20; /* 1 MiB map */
  sa_client *c = tu_open(&opts);
  static unsigned char blob[16 << 10];
  memset(blob, 'm', sizeof blob);
  int acked = 0, rc = SA_OK;
  sa_error err = {0};
  char k[32];
  for (int i = 0; i < 200 && rc == SA_OK; i++) {
    snprintf(k, sizeof k, "fill/%03d", i);
    rc = sa_client_put_bytes(c, k, blob, sizeof blob, &err);
    if (rc == SA_OK) acked++;
  }
  ck_assert_msg(rc == SA_ENOSPC, "filling a 1 MiB store: expected SA_ENOSPC, got %d %s", rc,
                err.message);
  ck_assert_msg(err.message[0] != '\0', "SA_ENOSPC needs a message");
  ck_assert_int_gt(acked, 0);
  tu_expect_absent(c, k); /* the put that did not fit */
  ck_assert_uint_eq(sa_client_size(c), (size_t)acked);
  /* Reads go on. */
  tu_expect(c, "fill/000", blob, sizeof blob);
  sa_client_close(c);

  c = reopen_clean();
  ck_assert_uint_eq(sa_client_size(c), (size_t)acked);
  tu_expect_absent(c, k);
  for (int i = 0; i < acked; i++) {
    snprintf(k, sizeof k, "fill/%03d", i);
    tu_expect(c, k, blob, sizeof blob);
  }
  sa_client_close(c);
}
END_TEST

/* ---- auto_flush=false: the background flush ----------------------------- */

START_TEST(background_flush_runs) {
  tu_fault_install(); /* counting only */
  opts.auto_flush = false;
  opts.flush_interval_ms = 20;
  sa_client *c = tu_open(&opts);
  long before = tu_fault_calls(TU_FDATASYNC);
  sa_write_result r = {0};
  ck_assert_int_eq(sa_client_put_ex(c, "k", "v", 1, NULL, &r, NULL), SA_OK);
  ck_assert(!r.durable);
  /* Wait (generously) for the periodic flush to fdatasync the WAL. */
  for (int i = 0; i < 1000 && tu_fault_calls(TU_FDATASYNC) == before; i++)
    tu_sleep_ms(10);
  ck_assert_msg(tu_fault_calls(TU_FDATASYNC) > before, "no background fdatasync within 10 s");
  sa_client_close(c);
  c = reopen_clean();
  tu_expect_str(c, "k", "v");
  sa_client_close(c);
}
END_TEST

START_TEST(background_flush_failure_turns_read_only) {
  tu_fault_install();
  opts.auto_flush = false;
  opts.flush_interval_ms = 20;
  sa_client *c = tu_open(&opts);
  tu_fault_arm(TU_FDATASYNC, EIO, 0, -1);
  ck_assert_int_eq(sa_client_put(c, "k", "v", NULL), SA_OK); /* acked after write(2) */
  for (int i = 0; i < 1000 && !tu_status(c).read_only; i++)
    tu_sleep_ms(10);
  sa_status st = tu_status(c);
  ck_assert_msg(st.read_only, "a failed background fdatasync must turn the node read-only");
  ck_assert_msg(strstr(st.read_only_reason, wal) != NULL, "reason should name %s: %s", wal,
                st.read_only_reason);
  ck_assert_int_eq(sa_client_put(c, "k2", "v2", NULL), SA_EREADONLY);
  tu_expect_str(c, "k", "v"); /* reads still work */
  sa_client_close(c);
}
END_TEST

/* ---- every call of a recovering open ------------------------------------ */

START_TEST(open_fails_cleanly_at_every_call) {
  /* A WAL with a torn tail and a store that lost its last commits: open
   * cuts the tail into a side file and replays. */
  sa_client *c = tu_open(&opts);
  tu_put(c, "a", "1");
  char store[TU_PATH_MAX], old[TU_PATH_MAX];
  snprintf(store, sizeof store, "%s", tu_status(c).store_path);
  sa_client_close(c);
  tu_path(old, dir, "store-copy");
  tu_copy(store, old);
  c = tu_open(&opts);
  tu_put(c, "b", "2");
  tu_put(c, "c", "3");
  sa_client_close(c);
  tu_append(wal, "\0\0\0\0torn", 8);
  size_t wlen;
  unsigned char *wbytes = tu_read(wal, &wlen);

  /* How many calls does a good open make? */
  char sub[TU_PATH_MAX], path[TU_PATH_MAX], spath[TU_PATH_MAX];
  tu_mkdir(sub);
  tu_path(path, sub, "node-1.wal");
  tu_path(spath, sub, "node-1.mdb");
  tu_write(path, wbytes, wlen);
  tu_copy(old, spath);
  sa_options o = sa_options_persistent("node-1", path);
  tu_fault_install();
  c = tu_open(&o);
  long calls = tu_fault_total();
  sa_client_close(c);
  tu_rmrf(sub);
  ck_assert_int_gt(calls, 3);

  for (long k = 0; k < calls; k++) {
    tu_mkdir(sub);
    tu_path(path, sub, "node-1.wal");
    tu_path(spath, sub, "node-1.mdb");
    tu_write(path, wbytes, wlen);
    tu_copy(old, spath);
    o = sa_options_persistent("node-1", path);

    tu_fault_install();
    tu_fault_arm(TU_NCALLS, EIO, k, 1);
    c = NULL;
    sa_error err = {0};
    int rc = sa_client_open(&c, &o, &err);
    if (rc == SA_OK) {
      ck_assert_ptr_nonnull(c);
      sa_client_close(c);
    } else {
      ck_assert_msg(c == NULL, "call %ld: failed open left a client", k + 1);
      ck_assert_msg(err.message[0] != '\0', "call %ld: failed open without a message", k + 1);
      ck_assert_int_eq(err.code, rc);
    }

    /* Whatever happened, a good open now finds everything. */
    char failed[64];
    snprintf(failed, sizeof failed, "%s", tu_fault_last_failed());
    tu_fault_disarm();
    sa_io_set(NULL);
    c = NULL;
    memset(&err, 0, sizeof err);
    rc = sa_client_open(&c, &o, &err);
    ck_assert_msg(rc == SA_OK, "after EIO at call %ld of open (%s): reopen gave %d %s", k + 1,
                  failed, rc, err.message);
    tu_expect_str(c, "a", "1");
    tu_expect_str(c, "b", "2");
    tu_expect_str(c, "c", "3");
    ck_assert_uint_eq(sa_client_size(c), 3);
    sa_client_close(c);
    tu_rmrf(sub);
  }
  free(wbytes);
}
END_TEST

static Suite *faults_suite(void) {
  Suite *s = suite_create("faults");
  TCase *tc = tcase_create("faults");
  tcase_add_checked_fixture(tc, setup, NULL);
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, enospc_at_pwrite);
  tcase_add_test(tc, eio_at_pwrite);
  tcase_add_test(tc, enospc_after_partial_write);
  tcase_add_test(tc, short_writes);
  tcase_add_test(tc, eio_at_fdatasync);
  tcase_add_test(tc, enospc_at_fdatasync);
  tcase_add_test(tc, flush_refused_when_read_only);
  tcase_add_test(tc, fdatasync_fails_under_concurrent_writers);
  tcase_add_test(tc, eio_at_store_commit);
  tcase_add_test(tc, enospc_at_store_commit);
  tcase_add_test(tc, store_map_full);
  tcase_add_test(tc, store_commit_fails_with_a_group_behind_it);
  tcase_add_test(tc, rolled_back_record_is_not_replayed);
  tcase_add_test(tc, answered_write_survives_a_failed_store_commit);
  tcase_add_test(tc, background_flush_runs);
  tcase_add_test(tc, background_flush_failure_turns_read_only);
  tcase_add_test(tc, open_fails_cleanly_at_every_call);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  return tu_main(faults_suite());
}
