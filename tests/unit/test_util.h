/*
 * test_util.h -- helpers shared by the core's Check suites (tests/unit,
 * tests/store, tests/sync: link sa_test_util).
 *
 * What lives here:
 *   - the runner main (tu_main): one temporary base directory per run,
 *     created before the tests fork and removed by the runner afterwards, so
 *     nothing is left behind even when a test fails or is killed;
 *   - file helpers (fresh directory, copy, read, write, truncate, flip a bit);
 *   - client helpers that assert success and print the core's message;
 *   - a fault-injection table (sa_io) that delegates to sa_io_libc and fails,
 *     short-writes or kills the process at chosen calls.
 *
 * What it is not: a mock of the core.  Every test runs the real library.
 *
 * Threads: the fault table is called from the core's writer thread, so its
 * state is atomic.  Everything else is for the test's main thread.
 * Processes: Check forks one process per test (CK_FORK); grandchildren that a
 * test forks must not call ck_assert (use tu_child_fail / _exit codes).
 */
#ifndef SA_TEST_UTIL_H
#define SA_TEST_UTIL_H

#include <check.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "io.h"
#include "softadastra.h"

#define TU_PATH_MAX 1024

/* ---- runner ------------------------------------------------------------- */

/* Creates the base temp dir, runs the suite (CK_FORK unless CK_FORK=no),
 * removes the base dir, returns the process exit status. */
int tu_main(Suite *s);

/* The base temp dir of this run. */
const char *tu_base(void);

/* ---- files -------------------------------------------------------------- */

/* Creates a fresh empty directory under the base dir into out. */
void tu_mkdir(char out[TU_PATH_MAX]);

/* out = dir "/" name. */
void tu_path(char out[TU_PATH_MAX], const char *dir, const char *name);

bool tu_exists(const char *path);
/* File size, or -1 if it does not exist. */
long long tu_size(const char *path);
/* Returns a new buffer the caller frees (NUL-terminated, not counted). */
unsigned char *tu_read(const char *path, size_t *len);
void tu_write(const char *path, const void *buf, size_t len);
void tu_append(const char *path, const void *buf, size_t len);
void tu_copy(const char *from, const char *to);
void tu_truncate(const char *path, long long len);
void tu_flip_bit(const char *path, long long byte, int bit);
/* Removes path recursively (a missing path is fine). */
void tu_rmrf(const char *path);
/* True when the two files hold the same bytes. */
bool tu_same_file(const char *a, const char *b);

/* ---- client helpers ----------------------------------------------------- */

/* Persistent options for node `node` with its WAL at dir/<node>.wal; the
 * path is written into wal (which must outlive the open). */
sa_options tu_options(const char *node, const char *dir, char wal[TU_PATH_MAX]);

/* Opens, asserting success (the core's message is shown on failure). */
sa_client *tu_open(const sa_options *o);

void tu_put(sa_client *c, const char *key, const char *value);
void tu_put_bytes(sa_client *c, const char *key, const void *data, size_t len);
/* Asserts key holds exactly these bytes. */
void tu_expect(sa_client *c, const char *key, const void *data, size_t len);
void tu_expect_str(sa_client *c, const char *key, const char *value);
void tu_expect_absent(sa_client *c, const char *key);
sa_status tu_status(sa_client *c);

/* True when haystack contains needle (case-insensitive). */
bool tu_contains(const char *haystack, const char *needle);

/* ---- processes ---------------------------------------------------------- */

/* In a grandchild process: print the reason and _exit(code). */
void tu_child_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));

/* Forks; the child runs fn(arg) and _exit(0)s.  Returns the wait status. */
int tu_run_child(void (*fn)(void *), void *arg);

/* Milliseconds from a monotonic clock (for delays, never for assertions). */
uint64_t tu_now_ms(void);
void tu_sleep_ms(unsigned ms);

/* Whether c's store commits pass `before` (sa_stats.store_commits) within
 * ms, polled every 20 ms: a commit that comes by itself (no read asks for
 * one). */
bool tu_commits_within(sa_client *c, uint64_t before, int ms);

/* ---- fault injection ---------------------------------------------------- */

typedef enum tu_call {
  TU_OPEN,
  TU_CLOSE,
  TU_PREAD,
  TU_PWRITE,
  TU_FDATASYNC,
  TU_FSYNC,
  TU_FTRUNCATE,
  TU_FSTAT,
  TU_FLOCK,
  TU_RENAME,
  TU_UNLINK,
  TU_STORE_COMMIT,
  TU_NCALLS
} tu_call;

const char *tu_call_name(tu_call c);

/* Installs the counting/faulting table (sa_io_set).  Disarmed it behaves
 * like sa_io_libc.  Call before sa_client_open. */
void tu_fault_install(void);

/* Makes `call` fail with errno `err` after `skip` more matching calls have
 * passed, `times` times (-1: forever).  Replaces any earlier arming.
 * call == TU_NCALLS matches every kind of call. */
void tu_fault_arm(tu_call call, int err, long skip, long times);

/* pwrite writes at most max bytes per call (0: no limit). */
void tu_fault_short_writes(size_t max);

/* Disarms every fault (counters keep running). */
void tu_fault_disarm(void);

/* Calls of each kind seen since install, and how many were failed. */
long tu_fault_calls(tu_call call);
long tu_fault_total(void);
long tu_fault_failed(void);
/* Name of the kind of the last call failed on purpose ("none" if none). */
const char *tu_fault_last_failed(void);

typedef enum tu_crash_mode {
  TU_CRASH_BEFORE, /* die instead of making the k-th call */
  TU_CRASH_AFTER,  /* make the k-th call, then die */
  TU_CRASH_TORN,   /* a pwrite spanning sectors writes up to its first 512-byte
                      boundary, then die (power loss); when the k-th call is
                      not a pwrite: _exit(TU_CRASH_NOT_PWRITE), touching nothing */
} tu_crash_mode;

#define TU_CRASH_NOT_PWRITE 77

/* SIGKILLs the process at the k-th I/O call (any kind, counted from now). */
void tu_crash_at(long k, tu_crash_mode mode);

#endif /* SA_TEST_UTIL_H */
