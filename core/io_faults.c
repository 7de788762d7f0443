/*
 * io_faults.c -- fault injection for test builds of the server.
 *
 * NOT part of the library: only test executables list this file among their
 * sources (tests/faults builds `softadastra-faults` this way); the installed
 * `softadastra` never contains it.  When linked, a constructor installs an
 * sa_io table whose calls fail on demand, driven by:
 *
 *   SOFTADASTRA_FAULTS       a spec, read at start
 *   SOFTADASTRA_FAULTS_FILE  a file holding a spec, re-read whenever its
 *                            mtime or size changes (arm and clear faults in a
 *                            running node; an empty or missing file clears)
 *
 * Spec: comma-separated POINT=ERRNO[@SKIP] items, for example
 *   "wal_write=ENOSPC"            every WAL append fails with ENOSPC
 *   "wal_sync=EIO@2"              the 3rd and later fdatasyncs fail with EIO
 *   "store_commit=ENOSPC"         every store commit fails
 *   "store_sync=EIO"              every sync point of the store fails
 *   "short_write=1"               pwrites write at most half (the core loops)
 * POINT is wal_write (pwrite), wal_sync (fdatasync), store_commit,
 * store_sync, or short_write; ERRNO is EIO or ENOSPC.  A fault stays armed until the spec
 * changes.  Thread-safe: the spec is swapped under a mutex.
 */
#define _GNU_SOURCE
#include "io.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
  int err;   /* 0: not armed */
  long skip; /* calls to let through first */
  long seen; /* calls so far since armed */
} fault_point;

static struct {
  pthread_mutex_t mu;
  fault_point write, sync, commit, ssync;
  int short_write;
  const char *file;
  struct timespec mtime;
  off_t size;
} fi = {.mu = PTHREAD_MUTEX_INITIALIZER};

static int fault_errno(const char *name) {
  if (strcmp(name, "EIO") == 0) return EIO;
  if (strcmp(name, "ENOSPC") == 0) return ENOSPC;
  return 0;
}

/* Replaces the armed faults by spec (under fi.mu). */
static void faults_parse(const char *spec) {
  memset(&fi.write, 0, sizeof fi.write);
  memset(&fi.sync, 0, sizeof fi.sync);
  memset(&fi.commit, 0, sizeof fi.commit);
  memset(&fi.ssync, 0, sizeof fi.ssync);
  fi.short_write = 0;
  char buf[512];
  snprintf(buf, sizeof buf, "%s", spec ? spec : "");
  char *save = NULL;
  for (char *item = strtok_r(buf, ", \n\t", &save); item; item = strtok_r(NULL, ", \n\t", &save)) {
    char *eq = strchr(item, '=');
    if (!eq) continue;
    *eq = 0;
    char *val = eq + 1, *at = strchr(val, '@');
    long skip = 0;
    if (at) {
      *at = 0;
      skip = strtol(at + 1, NULL, 10);
    }
    fault_point *p = strcmp(item, "wal_write") == 0      ? &fi.write
                     : strcmp(item, "wal_sync") == 0     ? &fi.sync
                     : strcmp(item, "store_commit") == 0 ? &fi.commit
                     : strcmp(item, "store_sync") == 0   ? &fi.ssync
                                                         : NULL;
    if (p) {
      p->err = fault_errno(val);
      p->skip = skip;
      p->seen = 0;
    } else if (strcmp(item, "short_write") == 0) {
      fi.short_write = atoi(val);
    }
    if ((p && !p->err) || (!p && strcmp(item, "short_write") != 0))
      fprintf(stderr, "softadastra-faults: ignoring unknown fault item '%s=%s'\n", item, val);
  }
}

static void faults_refresh(void) {
  if (!fi.file) return;
  struct stat st;
  char spec[512] = "";
  if (stat(fi.file, &st) != 0) {
    st.st_mtim.tv_sec = 0;
    st.st_mtim.tv_nsec = 0;
    st.st_size = -1;
  }
  if (st.st_mtim.tv_sec == fi.mtime.tv_sec && st.st_mtim.tv_nsec == fi.mtime.tv_nsec &&
      st.st_size == fi.size)
    return;
  fi.mtime = st.st_mtim;
  fi.size = st.st_size;
  FILE *f = st.st_size >= 0 ? fopen(fi.file, "r") : NULL;
  if (f) {
    size_t n = fread(spec, 1, sizeof spec - 1, f);
    spec[n] = 0;
    fclose(f);
  }
  faults_parse(spec);
  fprintf(stderr, "softadastra-faults: armed \"%s\"\n", spec);
}

/* 0 to let the call through, or the errno to fail it with. */
static int fault_fire(fault_point *p) {
  pthread_mutex_lock(&fi.mu);
  faults_refresh();
  int e = 0;
  if (p->err && p->seen++ >= p->skip) e = p->err;
  pthread_mutex_unlock(&fi.mu);
  return e;
}

static ssize_t fi_pwrite(int fd, const void *buf, size_t n, off_t off) {
  int e = fault_fire(&fi.write);
  if (e) {
    errno = e;
    return -1;
  }
  if (fi.short_write && n > 1) n /= 2;
  return pwrite(fd, buf, n, off);
}

static int fi_fdatasync(int fd) {
  int e = fault_fire(&fi.sync);
  if (e) {
    errno = e;
    return -1;
  }
  return fdatasync(fd);
}

static int fi_store_commit(void) {
  return fault_fire(&fi.commit);
}

static int fi_store_sync(void) {
  return fault_fire(&fi.ssync);
}

static sa_io fi_table;

__attribute__((constructor)) static void faults_install(void) {
  fi_table = sa_io_libc;
  fi_table.pwrite = fi_pwrite;
  fi_table.fdatasync = fi_fdatasync;
  fi_table.store_commit = fi_store_commit;
  fi_table.store_sync = fi_store_sync;
  const char *file = getenv("SOFTADASTRA_FAULTS_FILE");
  fi.file = file && *file ? file : NULL;
  faults_parse(getenv("SOFTADASTRA_FAULTS"));
  sa_io_set(&fi_table);
  fprintf(stderr,
          "softadastra-faults: FAULT INJECTION BUILD (test only): SOFTADASTRA_FAULTS=\"%s\" "
          "SOFTADASTRA_FAULTS_FILE=\"%s\"\n",
          getenv("SOFTADASTRA_FAULTS") ? getenv("SOFTADASTRA_FAULTS") : "", fi.file ? fi.file : "");
}
