/*
 * test_util.c -- helpers shared by the core's Check suites (see test_util.h).
 *
 * The fault table's state is a set of C11 atomics: the core calls the table
 * from its writer thread while the test arms and disarms faults from the
 * test's thread.
 */
#define _GNU_SOURCE
#include "test_util.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- runner ------------------------------------------------------------- */

static char tu_base_dir[TU_PATH_MAX];

const char *tu_base(void) {
  return tu_base_dir;
}

int tu_main(Suite *s) {
  const char *tmp = getenv("TMPDIR");
  if (tmp == NULL || tmp[0] == '\0') tmp = "/tmp";
  snprintf(tu_base_dir, sizeof tu_base_dir, "%s/sa-unit-XXXXXX", tmp);
  if (mkdtemp(tu_base_dir) == NULL) {
    perror("mkdtemp");
    return EXIT_FAILURE;
  }
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  tu_rmrf(tu_base_dir);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

/* ---- files -------------------------------------------------------------- */

void tu_mkdir(char out[TU_PATH_MAX]) {
  int n = snprintf(out, TU_PATH_MAX, "%s/t-XXXXXX", tu_base_dir);
  ck_assert_int_lt(n, TU_PATH_MAX);
  ck_assert_msg(mkdtemp(out) != NULL, "mkdtemp %s: %s", out, strerror(errno));
}

void tu_path(char out[TU_PATH_MAX], const char *dir, const char *name) {
  int n = snprintf(out, TU_PATH_MAX, "%s/%s", dir, name);
  ck_assert_int_lt(n, TU_PATH_MAX);
}

bool tu_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

long long tu_size(const char *path) {
  struct stat st;
  if (stat(path, &st) != 0) return -1;
  return (long long)st.st_size;
}

unsigned char *tu_read(const char *path, size_t *len) {
  int fd = open(path, O_RDONLY);
  ck_assert_msg(fd >= 0, "open %s: %s", path, strerror(errno));
  struct stat st;
  ck_assert_int_eq(fstat(fd, &st), 0);
  size_t n = (size_t)st.st_size;
  unsigned char *buf = malloc(n + 1);
  ck_assert_ptr_nonnull(buf);
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, buf + got, n - got);
    ck_assert_msg(r > 0, "read %s: %s", path, strerror(errno));
    got += (size_t)r;
  }
  buf[n] = 0;
  close(fd);
  *len = n;
  return buf;
}

static void tu_write_flags(const char *path, const void *buf, size_t len, int flags) {
  int fd = open(path, O_WRONLY | O_CREAT | flags, 0644);
  ck_assert_msg(fd >= 0, "open %s: %s", path, strerror(errno));
  const unsigned char *p = buf;
  while (len > 0) {
    ssize_t w = write(fd, p, len);
    ck_assert_msg(w > 0, "write %s: %s", path, strerror(errno));
    p += w;
    len -= (size_t)w;
  }
  close(fd);
}

void tu_write(const char *path, const void *buf, size_t len) {
  tu_write_flags(path, buf, len, O_TRUNC);
}

void tu_append(const char *path, const void *buf, size_t len) {
  tu_write_flags(path, buf, len, O_APPEND);
}

void tu_copy(const char *from, const char *to) {
  size_t len;
  unsigned char *buf = tu_read(from, &len);
  tu_write(to, buf, len);
  free(buf);
}

void tu_truncate(const char *path, long long len) {
  ck_assert_msg(truncate(path, (off_t)len) == 0, "truncate %s: %s", path, strerror(errno));
}

void tu_flip_bit(const char *path, long long byte, int bit) {
  int fd = open(path, O_RDWR);
  ck_assert_msg(fd >= 0, "open %s: %s", path, strerror(errno));
  unsigned char b;
  ck_assert_int_eq(pread(fd, &b, 1, (off_t)byte), 1);
  b ^= (unsigned char)(1u << bit);
  ck_assert_int_eq(pwrite(fd, &b, 1, (off_t)byte), 1);
  close(fd);
}

static int tu_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)ftw;
  if (flag == FTW_DP) return rmdir(path);
  return unlink(path);
}

void tu_rmrf(const char *path) {
  if (path[0] != '\0' && tu_exists(path)) nftw(path, tu_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

bool tu_same_file(const char *a, const char *b) {
  size_t la, lb;
  unsigned char *ba = tu_read(a, &la);
  unsigned char *bb = tu_read(b, &lb);
  bool same = la == lb && memcmp(ba, bb, la) == 0;
  free(ba);
  free(bb);
  return same;
}

/* ---- client helpers ----------------------------------------------------- */

sa_options tu_options(const char *node, const char *dir, char wal[TU_PATH_MAX]) {
  char name[128];
  snprintf(name, sizeof name, "%s.wal", node);
  tu_path(wal, dir, name);
  return sa_options_persistent(node, wal);
}

sa_client *tu_open(const sa_options *o) {
  sa_client *c = NULL;
  sa_error err = {0};
  int rc = sa_client_open(&c, o, &err);
  ck_assert_msg(rc == SA_OK, "sa_client_open(%s): %d %s", o->wal_path ? o->wal_path : "(memory)",
                rc, err.message);
  ck_assert_ptr_nonnull(c);
  return c;
}

void tu_put(sa_client *c, const char *key, const char *value) {
  sa_error err = {0};
  int rc = sa_client_put(c, key, value, &err);
  ck_assert_msg(rc == SA_OK, "put %.80s: %d %s", key, rc, err.message);
}

void tu_put_bytes(sa_client *c, const char *key, const void *data, size_t len) {
  sa_error err = {0};
  int rc = sa_client_put_bytes(c, key, data, len, &err);
  ck_assert_msg(rc == SA_OK, "put_bytes %.80s: %d %s", key, rc, err.message);
}

void tu_expect(sa_client *c, const char *key, const void *data, size_t len) {
  sa_value v = {0};
  sa_error err = {0};
  int rc = sa_client_get(c, key, &v, &err);
  ck_assert_msg(rc == SA_OK, "get %.80s: %d %s", key, rc, err.message);
  ck_assert_msg(v.len == len, "get %s: len %zu, expected %zu", key, v.len, len);
  ck_assert_ptr_nonnull(v.data);
  ck_assert_msg(len == 0 || memcmp(v.data, data, len) == 0, "get %s: wrong bytes", key);
  ck_assert_msg(v.data[len] == 0, "get %s: data[len] is not NUL", key);
  sa_value_free(&v);
}

void tu_expect_str(sa_client *c, const char *key, const char *value) {
  tu_expect(c, key, value, strlen(value));
}

void tu_expect_absent(sa_client *c, const char *key) {
  sa_value v = {0};
  sa_error err = {0};
  int rc = sa_client_get(c, key, &v, &err);
  ck_assert_msg(rc == SA_ENOTFOUND, "get %s: expected SA_ENOTFOUND, got %d (len %zu) %s", key, rc,
                v.len, err.message);
  ck_assert_ptr_null(v.data);
  sa_value_free(&v);
}

sa_status tu_status(sa_client *c) {
  sa_status st;
  memset(&st, 0, sizeof st);
  sa_error err = {0};
  int rc = sa_client_status(c, &st, &err);
  ck_assert_msg(rc == SA_OK, "status: %d %s", rc, err.message);
  return st;
}

bool tu_contains(const char *haystack, const char *needle) {
  return haystack != NULL && strcasestr(haystack, needle) != NULL;
}

/* ---- processes ---------------------------------------------------------- */

void tu_child_fail(int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "[child %d] ", (int)getpid());
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  _exit(code);
}

int tu_run_child(void (*fn)(void *), void *arg) {
  fflush(NULL);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    fn(arg);
    _exit(0);
  }
  int status = 0;
  ck_assert_int_eq(waitpid(pid, &status, 0), pid);
  return status;
}

uint64_t tu_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void tu_sleep_ms(unsigned ms) {
  struct timespec ts = {ms / 1000u, (long)(ms % 1000u) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

bool tu_commits_within(sa_client *c, uint64_t before, int ms) {
  sa_stats st;
  for (int waited = 0; waited <= ms; waited += 20) {
    ck_assert_int_eq(sa_client_stats(c, &st, NULL), 0);
    if (st.store_commits > before) return true;
    tu_sleep_ms(20);
  }
  return false;
}

/* ---- fault injection ---------------------------------------------------- */

static const char *const tu_call_names[TU_NCALLS] = {
    "open",      "close", "pread", "pwrite", "fdatasync", "fsync",
    "ftruncate", "fstat", "flock", "rename", "unlink",    "store_commit",
};

const char *tu_call_name(tu_call c) {
  return c < TU_NCALLS ? tu_call_names[c] : "?";
}

static atomic_long tu_counts[TU_NCALLS]; /* calls seen per kind */
static atomic_long tu_total;             /* calls seen, all kinds */
static atomic_long tu_failed;            /* calls failed on purpose */
static atomic_int tu_last_failed = -1;   /* kind of the last call failed */
static atomic_int tu_arm_call = -1;      /* kind to fail, -1: none */
static atomic_int tu_arm_err;            /* errno to fail with */
static atomic_long tu_arm_skip;          /* matching calls still to let pass */
static atomic_long tu_arm_times;         /* failures still to make (-1: forever) */
static atomic_size_t tu_short_max;       /* pwrite cap per call, 0: none */
static atomic_long tu_crash_k;           /* crash at this total call count, 0: off */
static atomic_int tu_crash_mode_v;       /* tu_crash_mode */

static void tu_die(void) {
  raise(SIGKILL);
  _exit(99); /* not reached */
}

/* Counts the call; returns an errno to fail it with, 0 to perform it, or
 * -1 when the process must die after performing it. */
static int tu_enter(tu_call call, bool *torn) {
  atomic_fetch_add(&tu_counts[call], 1);
  long n = atomic_fetch_add(&tu_total, 1) + 1;
  long k = atomic_load(&tu_crash_k);
  if (k > 0 && n == k) {
    int mode = atomic_load(&tu_crash_mode_v);
    if (mode == TU_CRASH_AFTER) return -1;
    if (mode == TU_CRASH_TORN) {
      if (call != TU_PWRITE) _exit(TU_CRASH_NOT_PWRITE); /* the BEFORE pass covers this call */
      *torn = true;
      return 0;
    }
    tu_die();
  }
  int armed = atomic_load(&tu_arm_call);
  if (armed != (int)call && armed != TU_NCALLS) return 0;
  if (atomic_load(&tu_arm_skip) > 0) {
    atomic_fetch_sub(&tu_arm_skip, 1);
    return 0;
  }
  long times = atomic_load(&tu_arm_times);
  if (times == 0) return 0;
  if (times > 0) atomic_fetch_sub(&tu_arm_times, 1);
  atomic_fetch_add(&tu_failed, 1);
  atomic_store(&tu_last_failed, (int)call);
  return atomic_load(&tu_arm_err);
}

#define TU_ENTER(call, fail_value)                                                                 \
  bool torn_ = false;                                                                              \
  int f_ = tu_enter(call, &torn_);                                                                 \
  (void)torn_;                                                                                     \
  if (f_ > 0) {                                                                                    \
    errno = f_;                                                                                    \
    return fail_value;                                                                             \
  }

#define TU_LEAVE(ret)                                                                              \
  do {                                                                                             \
    if (f_ < 0) tu_die();                                                                          \
    return ret;                                                                                    \
  } while (0)

static int tu_io_open(const char *path, int flags, mode_t mode) {
  TU_ENTER(TU_OPEN, -1);
  int r = sa_io_libc.open(path, flags, mode);
  TU_LEAVE(r);
}

static int tu_io_close(int fd) {
  TU_ENTER(TU_CLOSE, -1);
  int r = sa_io_libc.close(fd);
  TU_LEAVE(r);
}

static ssize_t tu_io_pread(int fd, void *buf, size_t n, off_t off) {
  TU_ENTER(TU_PREAD, -1);
  ssize_t r = sa_io_libc.pread(fd, buf, n, off);
  TU_LEAVE(r);
}

static ssize_t tu_io_pwrite(int fd, const void *buf, size_t n, off_t off) {
  TU_ENTER(TU_PWRITE, -1);
  if (torn_) {
    /* Power loss during the write: sectors are atomic, so the write tears
     * at its first 512-byte boundary; inside one sector it is all or
     * nothing (nothing here). */
    off_t boundary = (off / 512 + 1) * 512;
    if (boundary < off + (off_t)n) (void)sa_io_libc.pwrite(fd, buf, (size_t)(boundary - off), off);
    tu_die();
  }
  size_t cap = atomic_load(&tu_short_max);
  if (cap > 0 && n > cap) n = cap;
  ssize_t r = sa_io_libc.pwrite(fd, buf, n, off);
  TU_LEAVE(r);
}

static int tu_io_fdatasync(int fd) {
  TU_ENTER(TU_FDATASYNC, -1);
  int r = sa_io_libc.fdatasync(fd);
  TU_LEAVE(r);
}

static int tu_io_fsync(int fd) {
  TU_ENTER(TU_FSYNC, -1);
  int r = sa_io_libc.fsync(fd);
  TU_LEAVE(r);
}

static int tu_io_ftruncate(int fd, off_t len) {
  TU_ENTER(TU_FTRUNCATE, -1);
  int r = sa_io_libc.ftruncate(fd, len);
  TU_LEAVE(r);
}

static int tu_io_fstat(int fd, struct stat *st) {
  TU_ENTER(TU_FSTAT, -1);
  int r = sa_io_libc.fstat(fd, st);
  TU_LEAVE(r);
}

static int tu_io_flock(int fd, int op) {
  TU_ENTER(TU_FLOCK, -1);
  int r = sa_io_libc.flock(fd, op);
  TU_LEAVE(r);
}

static int tu_io_rename(const char *from, const char *to) {
  TU_ENTER(TU_RENAME, -1);
  int r = sa_io_libc.rename(from, to);
  TU_LEAVE(r);
}

static int tu_io_unlink(const char *path) {
  TU_ENTER(TU_UNLINK, -1);
  int r = sa_io_libc.unlink(path);
  TU_LEAVE(r);
}

static int tu_io_store_commit(void) {
  /* store_commit returns an errno value instead of setting errno. */
  TU_ENTER(TU_STORE_COMMIT, errno);
  int r = sa_io_libc.store_commit ? sa_io_libc.store_commit() : 0;
  TU_LEAVE(r);
}

static const sa_io tu_fault_io = {
    .open = tu_io_open,
    .close = tu_io_close,
    .pread = tu_io_pread,
    .pwrite = tu_io_pwrite,
    .fdatasync = tu_io_fdatasync,
    .fsync = tu_io_fsync,
    .ftruncate = tu_io_ftruncate,
    .fstat = tu_io_fstat,
    .flock = tu_io_flock,
    .rename = tu_io_rename,
    .unlink = tu_io_unlink,
    .store_commit = tu_io_store_commit,
};

void tu_fault_install(void) {
  tu_fault_disarm();
  for (int i = 0; i < TU_NCALLS; i++)
    atomic_store(&tu_counts[i], 0);
  atomic_store(&tu_total, 0);
  atomic_store(&tu_failed, 0);
  atomic_store(&tu_last_failed, -1);
  atomic_store(&tu_crash_k, 0);
  sa_io_set(&tu_fault_io);
}

void tu_fault_arm(tu_call call, int err, long skip, long times) {
  atomic_store(&tu_arm_call, -1);
  atomic_store(&tu_arm_err, err);
  atomic_store(&tu_arm_skip, skip);
  atomic_store(&tu_arm_times, times);
  atomic_store(&tu_arm_call, (int)call);
}

void tu_fault_short_writes(size_t max) {
  atomic_store(&tu_short_max, max);
}

void tu_fault_disarm(void) {
  atomic_store(&tu_arm_call, -1);
  atomic_store(&tu_short_max, 0);
}

long tu_fault_calls(tu_call call) {
  return atomic_load(&tu_counts[call]);
}

long tu_fault_total(void) {
  return atomic_load(&tu_total);
}

long tu_fault_failed(void) {
  return atomic_load(&tu_failed);
}

const char *tu_fault_last_failed(void) {
  int c = atomic_load(&tu_last_failed);
  return c < 0 ? "none" : tu_call_name((tu_call)c);
}

void tu_crash_at(long k, tu_crash_mode mode) {
  atomic_store(&tu_crash_mode_v, (int)mode);
  atomic_store(&tu_crash_k, atomic_load(&tu_total) + k);
}
