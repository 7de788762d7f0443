/*
 * powercut_shim.c -- an LD_PRELOAD library that keeps, next to the real data
 * directory of a process, the image of what a disk would hold if the power
 * failed now.  Used by tests/crash/powercut.c; see the header there.
 *
 * Environment (the shim is inert unless both directories are set):
 *   SA_POWERCUT_DIR        the watched directory (the node's data dir)
 *   SA_POWERCUT_SHADOW     the "disk": a directory that holds a copy of the
 *                          watched one when the process starts
 *   SA_POWERCUT_SEED       seed of the early-writeback choices (default 1)
 *   SA_POWERCUT_WRITEBACK  probability, per recorded write, of one early
 *                          writeback (default 0.05)
 *   SA_POWERCUT_SABOTAGE   1: the disk lies about the WAL (see below)
 *   SA_POWERCUT_STATS      a file the shim rewrites with its counters at
 *                          every sync and every 256 writes (the process
 *                          dies by SIGKILL)
 *   SA_POWERCUT_BOOT_ID    served as /proc/sys/kernel/random/boot_id (alone,
 *                          without SA_POWERCUT_DIR, the shim does nothing
 *                          else): each boot of the simulated machine has its
 *                          own, so the node sees the reboot that follows a
 *                          power cut
 *
 * The model, per regular file under the watched directory:
 *   - a content change (write, writev, pwrite, pwritev, pwritev2, ftruncate,
 *     truncate, fallocate, O_TRUNC at open) is first only PENDING: kept in
 *     memory, in order (offset + bytes, or the new length);
 *   - fdatasync/fsync of the file, or sync()/syncfs(), applies the file's
 *     (every file's) pending changes to the shadow copy, in order, before
 *     the real call; sync_file_range promises nothing and applies nothing;
 *   - a write on an O_DSYNC/O_SYNC descriptor (or pwritev2 with RWF_DSYNC or
 *     RWF_SYNC) reaches the shadow at once;
 *   - namespace changes (creating a file, rename, unlink, mkdir) reach the
 *     shadow at once.  A simplification: a real file system persists them
 *     only at the directory's fsync, which the node does where it matters;
 *   - early writeback: with probability SA_POWERCUT_WRITEBACK per recorded
 *     write, one pending write of one file (both chosen at random among all
 *     pending ones) is copied to the shadow now, or a random run of its
 *     4096-byte pages, so a large write can reach the disk half-way.  What
 *     is copied is the newest content of that range (later pending writes
 *     over it are laid on top: the kernel writes back the page cache, so a
 *     page on disk never goes back to an older version); a write followed by
 *     a pending truncation is left alone.  This is what breaks a store run
 *     without syncs: a meta page on disk before the pages it points to.
 *     Applied changes stay pending until the file's sync, which replays them
 *     all in order, so the image after a sync is exact.
 * A SIGKILL of the process is the power cut: the shadow directory is then
 * the disk after the power failure.
 *
 * SA_POWERCUT_SABOTAGE=1 (the harness's self-test): from the Nth fdatasync
 * or fsync of a file named *.wal on (N from the seed, 5 to 24), the disk
 * silently stops persisting WAL files: every later WAL sync reports success
 * and drops its pending changes, and later WAL writes are not recorded.  The
 * WAL on the disk stops there, cleanly; writes acknowledged after that point
 * exist only in the store, which commits unsynced and after the power cut
 * rolls back to its last sync point, so the harness must report lost
 * acknowledged writes.
 *
 * What is intercepted (checked with strace -f on a node and nm -D on
 * liblmdb): open open64 openat openat64 creat creat64 close dup dup2 dup3,
 * write writev pwrite pwrite64 pwritev pwritev64 pwritev2 pwritev64v2,
 * ftruncate ftruncate64 truncate truncate64 fallocate fallocate64,
 * fdatasync fsync sync syncfs sync_file_range, rename renameat renameat2,
 * unlink unlinkat mkdir mkdirat.  Not intercepted: fcntl(F_DUPFD) (neither
 * the node nor liblmdb duplicates a data file's descriptor), stdio (glibc's
 * internal calls; the node reads its config only), mmap writes (the store
 * does not use MDB_WRITEMAP; the lock file is mmapped and is not data).
 *
 * Thread-safe (one mutex held across each intercepted write and its record,
 * so the recorded order of writes to a file is the real one); the shim's
 * own I/O on the shadow goes through the real functions (dlsym RTLD_NEXT)
 * and never re-enters it.  Pending data is freed when its file is synced;
 * more than 1 GiB pending aborts the process with a message.
 */
#define _GNU_SOURCE
#undef _FORTIFY_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define PC_PAGE 4096u
#define PC_MAX_PENDING ((uint64_t)1 << 30) /* 1 GiB */

enum { PC_WRITE, PC_TRUNC, PC_ZERO, PC_EXTEND };

typedef struct pc_op {
  int kind;
  uint64_t off, len; /* PC_TRUNC/PC_EXTEND: len is the new length */
  unsigned char *data;
  struct pc_op *next;
} pc_op;

typedef struct pc_file {
  char *rel; /* path relative to the watched directory; NULL once unlinked */
  pc_op *head, *tail;
  size_t nwrites; /* PC_WRITE ops pending */
  struct pc_file *next;
} pc_file;

typedef struct pc_fd {
  pc_file *f;
  bool dsync;
} pc_fd;

/* ---- the real functions ---------------------------------------------------- */

static int (*r_open)(const char *, int, ...);
static int (*r_open64)(const char *, int, ...);
static int (*r_openat)(int, const char *, int, ...);
static int (*r_openat64)(int, const char *, int, ...);
static int (*r_creat)(const char *, mode_t);
static int (*r_creat64)(const char *, mode_t);
static int (*r_close)(int);
static int (*r_dup)(int);
static int (*r_dup2)(int, int);
static int (*r_dup3)(int, int, int);
static ssize_t (*r_write)(int, const void *, size_t);
static ssize_t (*r_writev)(int, const struct iovec *, int);
static ssize_t (*r_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*r_pwrite64)(int, const void *, size_t, off_t);
static ssize_t (*r_pwritev)(int, const struct iovec *, int, off_t);
static ssize_t (*r_pwritev64)(int, const struct iovec *, int, off_t);
static ssize_t (*r_pwritev2)(int, const struct iovec *, int, off_t, int);
static ssize_t (*r_pwritev64v2)(int, const struct iovec *, int, off_t, int);
static int (*r_ftruncate)(int, off_t);
static int (*r_ftruncate64)(int, off_t);
static int (*r_truncate)(const char *, off_t);
static int (*r_truncate64)(const char *, off_t);
static int (*r_fallocate)(int, int, off_t, off_t);
static int (*r_fallocate64)(int, int, off_t, off_t);
static int (*r_fdatasync)(int);
static int (*r_fsync)(int);
static void (*r_sync)(void);
static int (*r_syncfs)(int);
static int (*r_sync_file_range)(int, off_t, off_t, unsigned);
static int (*r_rename)(const char *, const char *);
static int (*r_renameat)(int, const char *, int, const char *);
static int (*r_renameat2)(int, const char *, int, const char *, unsigned);
static int (*r_unlink)(const char *);
static int (*r_unlinkat)(int, const char *, int);
static int (*r_mkdir)(const char *, mode_t);
static int (*r_mkdirat)(int, const char *, mode_t);

/* POSIX's way to store dlsym's answer in a function pointer. */
#define PC_RESOLVE(var, name) (*(void **)(&(var)) = dlsym(RTLD_NEXT, name))

/* ---- state ----------------------------------------------------------------- */

static pthread_mutex_t pc_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t pc_once = PTHREAD_ONCE_INIT;
static bool pc_on;            /* both directories set */
static char pc_dir[PATH_MAX]; /* watched, canonical */
static size_t pc_dirlen;
static char pc_shadow[PATH_MAX];
static char pc_boot[80]; /* SA_POWERCUT_BOOT_ID + newline, "" when unset */
static double pc_writeback = 0.05;
static uint64_t pc_rng = 1;
static bool pc_sabotage;
static long pc_sabotage_at; /* the WAL sync from which the disk lies */
static bool pc_lying;       /* sabotage under way */
static long pc_wal_syncs;
static char pc_stats_path[PATH_MAX];
static pc_file *pc_files;
static pc_fd *pc_fds;
static int pc_nfds;
static uint64_t pc_pending_bytes;
static struct {
  long writes, syncs, applied, early, early_bytes, dsync, truncs, renames, unlinks, creates,
      sabotaged;
} pc_st;

static void pc_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void pc_die(const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n < 0) n = 0;
  if ((size_t)n >= sizeof buf) n = (int)sizeof buf - 1;
  if (r_write) {
    r_write(2, "powercut shim: ", 15);
    r_write(2, buf, (size_t)n);
    r_write(2, "\n", 1);
  }
  abort();
}

static uint64_t pc_rand(void) { /* xorshift64* */
  pc_rng ^= pc_rng >> 12;
  pc_rng ^= pc_rng << 25;
  pc_rng ^= pc_rng >> 27;
  return pc_rng * 2685821657736338717ull;
}

static double pc_rand01(void) {
  return (double)(pc_rand() >> 11) / 9007199254740992.0;
}

static void pc_init(void) {
  PC_RESOLVE(r_open, "open");
  PC_RESOLVE(r_open64, "open64");
  PC_RESOLVE(r_openat, "openat");
  PC_RESOLVE(r_openat64, "openat64");
  PC_RESOLVE(r_creat, "creat");
  PC_RESOLVE(r_creat64, "creat64");
  PC_RESOLVE(r_close, "close");
  PC_RESOLVE(r_dup, "dup");
  PC_RESOLVE(r_dup2, "dup2");
  PC_RESOLVE(r_dup3, "dup3");
  PC_RESOLVE(r_write, "write");
  PC_RESOLVE(r_writev, "writev");
  PC_RESOLVE(r_pwrite, "pwrite");
  PC_RESOLVE(r_pwrite64, "pwrite64");
  PC_RESOLVE(r_pwritev, "pwritev");
  PC_RESOLVE(r_pwritev64, "pwritev64");
  PC_RESOLVE(r_pwritev2, "pwritev2");
  PC_RESOLVE(r_pwritev64v2, "pwritev64v2");
  PC_RESOLVE(r_ftruncate, "ftruncate");
  PC_RESOLVE(r_ftruncate64, "ftruncate64");
  PC_RESOLVE(r_truncate, "truncate");
  PC_RESOLVE(r_truncate64, "truncate64");
  PC_RESOLVE(r_fallocate, "fallocate");
  PC_RESOLVE(r_fallocate64, "fallocate64");
  PC_RESOLVE(r_fdatasync, "fdatasync");
  PC_RESOLVE(r_fsync, "fsync");
  PC_RESOLVE(r_sync, "sync");
  PC_RESOLVE(r_syncfs, "syncfs");
  PC_RESOLVE(r_sync_file_range, "sync_file_range");
  PC_RESOLVE(r_rename, "rename");
  PC_RESOLVE(r_renameat, "renameat");
  PC_RESOLVE(r_renameat2, "renameat2");
  PC_RESOLVE(r_unlink, "unlink");
  PC_RESOLVE(r_unlinkat, "unlinkat");
  PC_RESOLVE(r_mkdir, "mkdir");
  PC_RESOLVE(r_mkdirat, "mkdirat");
  if (!r_open || !r_openat || !r_close || !r_write || !r_pwrite || !r_fdatasync || !r_fsync ||
      !r_ftruncate || !r_rename || !r_unlink || !r_mkdir)
    pc_die("dlsym(RTLD_NEXT) did not find the libc functions");
  const char *b = getenv("SA_POWERCUT_BOOT_ID");
  if (b && *b) snprintf(pc_boot, sizeof pc_boot, "%s\n", b);
  const char *d = getenv("SA_POWERCUT_DIR"), *s = getenv("SA_POWERCUT_SHADOW");
  if (!d || !*d || !s || !*s) return;
  if (!realpath(d, pc_dir)) snprintf(pc_dir, sizeof pc_dir, "%s", d);
  pc_dirlen = strlen(pc_dir);
  while (pc_dirlen > 1 && pc_dir[pc_dirlen - 1] == '/')
    pc_dir[--pc_dirlen] = 0;
  snprintf(pc_shadow, sizeof pc_shadow, "%s", s);
  const char *v = getenv("SA_POWERCUT_SEED");
  pc_rng = v && *v ? strtoull(v, NULL, 10) * 0x9E3779B97F4A7C15ull + 1 : 1;
  if (pc_rng == 0) pc_rng = 1;
  v = getenv("SA_POWERCUT_WRITEBACK");
  if (v && *v) pc_writeback = strtod(v, NULL);
  v = getenv("SA_POWERCUT_SABOTAGE");
  pc_sabotage = v && atoi(v) != 0;
  pc_sabotage_at = 5 + (long)(pc_rand() % 20u);
  v = getenv("SA_POWERCUT_STATS");
  if (v && *v) snprintf(pc_stats_path, sizeof pc_stats_path, "%s", v);
  pc_on = true;
}

static void pc_ensure(void) {
  pthread_once(&pc_once, pc_init);
}

/* ---- paths ----------------------------------------------------------------- */

/* The absolute, canonical-parent form of path (relative to dirfd) in out.
 * Returns false when it cannot be made. */
static bool pc_abs(int dirfd, const char *path, char *out, size_t outlen) {
  char tmp[PATH_MAX * 2];
  if (!path) return false;
  if (path[0] == '/') {
    snprintf(tmp, sizeof tmp, "%s", path);
  } else if (dirfd == AT_FDCWD) {
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) return false;
    snprintf(tmp, sizeof tmp, "%s/%s", cwd, path);
  } else {
    char link[64], base[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd);
    ssize_t n = readlink(link, base, sizeof base - 1);
    if (n <= 0) return false;
    base[n] = 0;
    snprintf(tmp, sizeof tmp, "%s/%s", base, path);
  }
  /* fast path: already under the watched directory as written */
  size_t tl = strlen(tmp);
  if (tl >= outlen) return false;
  if (strncmp(tmp, pc_dir, pc_dirlen) == 0 && (tmp[pc_dirlen] == '/' || tmp[pc_dirlen] == 0) &&
      !strstr(tmp, "/./") && !strstr(tmp, "/../") && !strstr(tmp, "//")) {
    memcpy(out, tmp, tl + 1);
    return true;
  }
  /* canonicalize the parent (the file itself may not exist) */
  while (tl > 1 && tmp[tl - 1] == '/')
    tmp[--tl] = 0;
  char *slash = strrchr(tmp, '/');
  if (!slash) return false;
  char parent[PATH_MAX], canon[PATH_MAX];
  size_t pl = (size_t)(slash - tmp);
  if (pl == 0) pl = 1;
  if (pl >= sizeof parent) return false;
  memcpy(parent, tmp, pl);
  parent[pl] = 0;
  if (!realpath(parent, canon)) {
    memcpy(out, tmp, tl + 1);
    return true;
  }
  int n = snprintf(out, outlen, "%s/%s", strcmp(canon, "/") ? canon : "", slash + 1);
  return n > 0 && (size_t)n < outlen;
}

/* The path relative to the watched directory ("" for the directory itself),
 * or NULL when abs is outside it. */
static const char *pc_rel(const char *abs) {
  if (strncmp(abs, pc_dir, pc_dirlen) != 0) return NULL;
  if (abs[pc_dirlen] == 0) return "";
  if (abs[pc_dirlen] != '/') return NULL;
  return abs + pc_dirlen + 1;
}

static void pc_shadow_path(const char *rel, char *out, size_t len) {
  snprintf(out, len, "%s/%s", pc_shadow, rel);
}

static pc_file *pc_find(const char *rel) {
  for (pc_file *f = pc_files; f; f = f->next)
    if (f->rel && strcmp(f->rel, rel) == 0) return f;
  return NULL;
}

static pc_file *pc_get(const char *rel) {
  pc_file *f = pc_find(rel);
  if (f) return f;
  f = calloc(1, sizeof *f);
  if (!f || !(f->rel = strdup(rel))) pc_die("out of memory");
  f->next = pc_files;
  pc_files = f;
  return f;
}

static void pc_free_ops(pc_file *f) {
  pc_op *o = f->head;
  while (o) {
    pc_op *n = o->next;
    if (o->kind == PC_WRITE) pc_pending_bytes -= o->len;
    free(o->data);
    free(o);
    o = n;
  }
  f->head = f->tail = NULL;
  f->nwrites = 0;
}

static void pc_fd_set(int fd, pc_file *f, bool dsync) {
  if (fd < 0) return;
  if (fd >= pc_nfds) {
    int n = pc_nfds ? pc_nfds : 256;
    while (n <= fd)
      n *= 2;
    pc_fd *p = realloc(pc_fds, (size_t)n * sizeof *p);
    if (!p) pc_die("out of memory");
    memset(p + pc_nfds, 0, (size_t)(n - pc_nfds) * sizeof *p);
    pc_fds = p;
    pc_nfds = n;
  }
  pc_fds[fd].f = f;
  pc_fds[fd].dsync = dsync;
}

static pc_fd *pc_fd_get(int fd) {
  if (fd < 0 || fd >= pc_nfds || !pc_fds[fd].f) return NULL;
  return &pc_fds[fd];
}

static bool pc_is_wal(const pc_file *f) {
  size_t n = f->rel ? strlen(f->rel) : 0;
  return n > 4 && strcmp(f->rel + n - 4, ".wal") == 0;
}

/* ---- the shadow ------------------------------------------------------------ */

static int pc_shadow_open(const pc_file *f) {
  char p[PATH_MAX * 2];
  pc_shadow_path(f->rel, p, sizeof p);
  int fd = r_open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) pc_die("cannot open the shadow file %s: %s", p, strerror(errno));
  return fd;
}

static void pc_shadow_pwrite(int sfd, const unsigned char *data, uint64_t len, uint64_t off) {
  static const unsigned char zeros[PC_PAGE];
  while (len > 0) {
    size_t n = len > (1u << 20) ? (1u << 20) : (size_t)len;
    if (!data && n > sizeof zeros) n = sizeof zeros;
    ssize_t w = r_pwrite(sfd, data ? data : zeros, n, (off_t)off);
    if (w <= 0) pc_die("shadow write failed: %s", strerror(errno));
    len -= (uint64_t)w;
    off += (uint64_t)w;
    if (data) data += w;
  }
}

static void pc_apply_op(int sfd, const pc_op *o) {
  struct stat st;
  switch (o->kind) {
  case PC_WRITE:
    pc_shadow_pwrite(sfd, o->data, o->len, o->off);
    break;
  case PC_ZERO:
    pc_shadow_pwrite(sfd, NULL, o->len, o->off);
    break;
  case PC_TRUNC:
    if (r_ftruncate(sfd, (off_t)o->len) != 0) pc_die("shadow ftruncate: %s", strerror(errno));
    break;
  case PC_EXTEND:
    if (fstat(sfd, &st) == 0 && (uint64_t)st.st_size < o->len &&
        r_ftruncate(sfd, (off_t)o->len) != 0)
      pc_die("shadow ftruncate: %s", strerror(errno));
    break;
  }
}

/* The file's sync: every pending change reaches the shadow, in order. */
static void pc_apply_file(pc_file *f) {
  if (!f->rel || !f->head) return;
  int sfd = pc_shadow_open(f);
  for (pc_op *o = f->head; o; o = o->next)
    pc_apply_op(sfd, o);
  r_close(sfd);
  pc_free_ops(f);
  pc_st.applied++;
}

static void pc_write_stats(void) {
  if (!pc_stats_path[0]) return;
  char buf[512];
  int n = snprintf(buf, sizeof buf,
                   "writes %ld syncs %ld applied %ld early %ld early_bytes %ld dsync %ld truncs "
                   "%ld renames %ld unlinks %ld creates %ld sabotaged %ld pending_bytes %llu\n",
                   pc_st.writes, pc_st.syncs, pc_st.applied, pc_st.early, pc_st.early_bytes,
                   pc_st.dsync, pc_st.truncs, pc_st.renames, pc_st.unlinks, pc_st.creates,
                   pc_st.sabotaged, (unsigned long long)pc_pending_bytes);
  char tmp[PATH_MAX + 8];
  snprintf(tmp, sizeof tmp, "%s.tmp", pc_stats_path); /* a kill never leaves it half written */
  int fd = r_open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return;
  if (n > 0) (void)!r_write(fd, buf, (size_t)n);
  r_close(fd);
  r_rename(tmp, pc_stats_path);
}

/* One early writeback: a random run of pages of a random pending write. */
static void pc_early_writeback(void) {
  long total = 0;
  for (pc_file *f = pc_files; f; f = f->next)
    if (f->rel && !(pc_lying && pc_is_wal(f))) total += (long)f->nwrites;
  if (total == 0) return;
  long pick = (long)(pc_rand() % (uint64_t)total);
  pc_file *f = pc_files;
  pc_op *o = NULL;
  for (; f; f = f->next) {
    if (!f->rel || (pc_lying && pc_is_wal(f))) continue;
    if (pick >= (long)f->nwrites) {
      pick -= (long)f->nwrites;
      continue;
    }
    for (o = f->head; o; o = o->next)
      if (o->kind == PC_WRITE && pick-- == 0) break;
    break;
  }
  if (!f || !o || o->len == 0) return;
  for (pc_op *l = o->next; l; l = l->next)
    if (l->kind == PC_TRUNC || l->kind == PC_EXTEND) return; /* left alone */
  uint64_t p0 = o->off / PC_PAGE, p1 = (o->off + o->len - 1) / PC_PAGE;
  uint64_t a = p0 + pc_rand() % (p1 - p0 + 1);
  uint64_t b = a + pc_rand() % (p1 - a + 1);
  uint64_t lo = a * PC_PAGE > o->off ? a * PC_PAGE : o->off;
  uint64_t hi = (b + 1) * PC_PAGE < o->off + o->len ? (b + 1) * PC_PAGE : o->off + o->len;
  unsigned char *buf = malloc((size_t)(hi - lo));
  if (!buf) pc_die("out of memory");
  memcpy(buf, o->data + (lo - o->off), (size_t)(hi - lo));
  for (pc_op *l = o->next; l; l = l->next) { /* newer content over the range */
    uint64_t s = l->off > lo ? l->off : lo;
    uint64_t e = l->off + l->len < hi ? l->off + l->len : hi;
    if (s >= e) continue;
    if (l->kind == PC_WRITE)
      memcpy(buf + (s - lo), l->data + (s - l->off), (size_t)(e - s));
    else if (l->kind == PC_ZERO)
      memset(buf + (s - lo), 0, (size_t)(e - s));
  }
  int sfd = pc_shadow_open(f);
  pc_shadow_pwrite(sfd, buf, hi - lo, lo);
  r_close(sfd);
  free(buf);
  pc_st.early++;
  pc_st.early_bytes += (long)(hi - lo);
}

static void pc_push(pc_file *f, int kind, uint64_t off, uint64_t len, unsigned char *data) {
  pc_op *o = calloc(1, sizeof *o);
  if (!o) pc_die("out of memory");
  o->kind = kind;
  o->off = off;
  o->len = len;
  o->data = data;
  if (f->tail)
    f->tail->next = o;
  else
    f->head = o;
  f->tail = o;
  if (kind == PC_WRITE) {
    f->nwrites++;
    pc_pending_bytes += len;
    if (pc_pending_bytes > PC_MAX_PENDING)
      pc_die("more than 1 GiB of unsynced writes pending: the bound of the model is exceeded");
  }
}

/* Records a content write of n bytes at off (under the lock). */
static void pc_record(pc_fd *d, uint64_t off, const struct iovec *iov, int iovcnt, const void *buf,
                      size_t n, bool dsync) {
  pc_file *f = d->f;
  if (!f->rel || n == 0) return;
  if (pc_lying && pc_is_wal(f)) return; /* the lying disk keeps nothing of it */
  unsigned char *data = malloc(n);
  if (!data) pc_die("out of memory");
  if (buf) {
    memcpy(data, buf, n);
  } else {
    size_t got = 0;
    for (int i = 0; i < iovcnt && got < n; i++) {
      size_t c = iov[i].iov_len < n - got ? iov[i].iov_len : n - got;
      memcpy(data + got, iov[i].iov_base, c);
      got += c;
    }
  }
  pc_st.writes++;
  if (dsync || d->dsync) {
    pc_st.dsync++;
    int sfd = pc_shadow_open(f);
    pc_shadow_pwrite(sfd, data, n, off);
    r_close(sfd);
    if (!f->head) { /* nothing older to replay over it: done */
      free(data);
      return;
    }
  }
  pc_push(f, PC_WRITE, off, n, data);
  if (pc_writeback > 0 && pc_rand01() < pc_writeback) pc_early_writeback();
  if (pc_st.writes % 256 == 0) pc_write_stats();
}

static void pc_record_size(pc_fd *d, int kind, uint64_t off, uint64_t len) {
  pc_file *f = d->f;
  if (!f->rel || (pc_lying && pc_is_wal(f))) return;
  pc_st.truncs++;
  pc_push(f, kind, off, len, NULL);
}

/* ---- open / close ------------------------------------------------------------ */

/* After a successful open of abs (a regular file under the watched dir). */
static void pc_opened(int fd, const char *rel, int flags, bool existed) {
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return; /* directories: nothing to track */
  pc_file *f = pc_get(rel);
  char sp[PATH_MAX * 2];
  pc_shadow_path(rel, sp, sizeof sp);
  if (!existed || access(sp, F_OK) != 0) { /* creation reaches the disk at once */
    int sfd = r_open(sp, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (sfd < 0) pc_die("cannot create the shadow file %s: %s", sp, strerror(errno));
    r_close(sfd);
    pc_st.creates++;
  }
  bool dsync = (flags & O_DSYNC) != 0; /* O_SYNC includes O_DSYNC */
  pc_fd_set(fd, f, dsync);
  if (existed && (flags & O_TRUNC) && (flags & O_ACCMODE) != O_RDONLY) {
    pc_fd tmp = {f, false};
    pc_record_size(&tmp, PC_TRUNC, 0, 0);
  }
}

typedef int (*pc_open_fn)(const char *, int, ...);
typedef int (*pc_openat_fn)(int, const char *, int, ...);

/* The kernel's boot id, as the node reads it to tell a process crash from a
 * reboot (core/store.c): a power cut is followed by a reboot, so the harness
 * gives each boot its own id (SA_POWERCUT_BOOT_ID), served from a memfd. */
static int pc_boot_open(void) {
  int fd = memfd_create("boot_id", MFD_CLOEXEC);
  if (fd < 0) return -1;
  size_t n = strlen(pc_boot);
  if (r_write(fd, pc_boot, n) != (ssize_t)n || lseek(fd, 0, SEEK_SET) != 0) {
    r_close(fd);
    return -1;
  }
  return fd;
}

/* open (ro != NULL) or openat (rat != NULL). */
static int pc_do_open(pc_open_fn ro, pc_openat_fn rat, int dirfd, const char *path, int flags,
                      mode_t mode) {
  pc_ensure();
  if (pc_boot[0] && path && strcmp(path, "/proc/sys/kernel/random/boot_id") == 0)
    return pc_boot_open();
  char abs[PATH_MAX];
  const char *rel = NULL;
  bool existed = true;
  if (pc_on && pc_abs(ro ? AT_FDCWD : dirfd, path, abs, sizeof abs) && (rel = pc_rel(abs)) &&
      *rel) {
    struct stat st;
    existed = stat(abs, &st) == 0;
  } else {
    rel = NULL;
  }
  if (!rel) return ro ? ro(path, flags, mode) : rat(dirfd, path, flags, mode);
  pthread_mutex_lock(&pc_mu);
  int fd = ro ? ro(path, flags, mode) : rat(dirfd, path, flags, mode);
  int e = errno;
  if (fd >= 0) pc_opened(fd, rel, flags, existed);
  pthread_mutex_unlock(&pc_mu);
  errno = e;
  return fd;
}

static mode_t pc_mode(int flags, va_list ap) {
  if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE) return (mode_t)va_arg(ap, int);
  return 0;
}

int open(const char *path, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  mode_t m = pc_mode(flags, ap);
  va_end(ap);
  pc_ensure();
  return pc_do_open(r_open, NULL, AT_FDCWD, path, flags, m);
}

int open64(const char *path, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  mode_t m = pc_mode(flags, ap);
  va_end(ap);
  pc_ensure();
  return pc_do_open(r_open64 ? r_open64 : r_open, NULL, AT_FDCWD, path, flags, m);
}

int openat(int dirfd, const char *path, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  mode_t m = pc_mode(flags, ap);
  va_end(ap);
  pc_ensure();
  return pc_do_open(NULL, r_openat, dirfd, path, flags, m);
}

int openat64(int dirfd, const char *path, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  mode_t m = pc_mode(flags, ap);
  va_end(ap);
  pc_ensure();
  return pc_do_open(NULL, r_openat64 ? r_openat64 : r_openat, dirfd, path, flags, m);
}

int creat(const char *path, mode_t mode) {
  return open(path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}

int creat64(const char *path, mode_t mode) {
  return open(path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}

int close(int fd) {
  pc_ensure();
  if (pc_on) {
    pthread_mutex_lock(&pc_mu);
    if (fd >= 0 && fd < pc_nfds) pc_fds[fd].f = NULL;
    pthread_mutex_unlock(&pc_mu);
  }
  return r_close(fd);
}

static void pc_dup_track(int from, int to) {
  if (!pc_on || to < 0) return;
  pthread_mutex_lock(&pc_mu);
  pc_fd *d = pc_fd_get(from);
  if (d)
    pc_fd_set(to, d->f, d->dsync);
  else if (to < pc_nfds)
    pc_fds[to].f = NULL;
  pthread_mutex_unlock(&pc_mu);
}

int dup(int fd) {
  pc_ensure();
  int r = r_dup(fd);
  pc_dup_track(fd, r);
  return r;
}

int dup2(int fd, int fd2) {
  pc_ensure();
  int r = r_dup2(fd, fd2);
  if (r >= 0 && r != fd) pc_dup_track(fd, r);
  return r;
}

int dup3(int fd, int fd2, int flags) {
  pc_ensure();
  int r = r_dup3(fd, fd2, flags);
  pc_dup_track(fd, r);
  return r;
}

/* ---- writes ----------------------------------------------------------------- */

/* Runs one write-like call; records it when fd is tracked.  off < 0: at the
 * descriptor's offset (found after the call: it then points past the bytes
 * written, O_APPEND included). */
#define PC_WRITE_CALL(call, fd, offexpr, iov, iovcnt, buf, dsyncflag)                              \
  do {                                                                                             \
    pc_ensure();                                                                                   \
    if (!pc_on) return call;                                                                       \
    pthread_mutex_lock(&pc_mu);                                                                    \
    pc_fd *d_ = pc_fd_get(fd);                                                                     \
    if (!d_) {                                                                                     \
      pthread_mutex_unlock(&pc_mu);                                                                \
      return call;                                                                                 \
    }                                                                                              \
    ssize_t r_ = call;                                                                             \
    int e_ = errno;                                                                                \
    if (r_ > 0) {                                                                                  \
      off_t o_ = (offexpr);                                                                        \
      if (o_ < 0) {                                                                                \
        off_t cur_ = lseek(fd, 0, SEEK_CUR);                                                       \
        o_ = cur_ >= r_ ? cur_ - (off_t)r_ : 0;                                                    \
      }                                                                                            \
      pc_record(d_, (uint64_t)o_, iov, iovcnt, buf, (size_t)r_, dsyncflag);                        \
    }                                                                                              \
    pthread_mutex_unlock(&pc_mu);                                                                  \
    errno = e_;                                                                                    \
    return r_;                                                                                     \
  } while (0)

ssize_t write(int fd, const void *buf, size_t n) {
  PC_WRITE_CALL(r_write(fd, buf, n), fd, -1, NULL, 0, buf, false);
}

ssize_t writev(int fd, const struct iovec *iov, int cnt) {
  PC_WRITE_CALL(r_writev(fd, iov, cnt), fd, -1, iov, cnt, NULL, false);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
  PC_WRITE_CALL(r_pwrite(fd, buf, n, off), fd, off, NULL, 0, buf, false);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off) {
  PC_WRITE_CALL((r_pwrite64 ? r_pwrite64 : r_pwrite)(fd, buf, n, off), fd, off, NULL, 0, buf,
                false);
}

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off) {
  PC_WRITE_CALL(r_pwritev(fd, iov, cnt, off), fd, off, iov, cnt, NULL, false);
}

ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off_t off) {
  PC_WRITE_CALL((r_pwritev64 ? r_pwritev64 : r_pwritev)(fd, iov, cnt, off), fd, off, iov, cnt, NULL,
                false);
}

#ifndef RWF_DSYNC
#define RWF_DSYNC 0x00000002
#endif
#ifndef RWF_SYNC
#define RWF_SYNC 0x00000004
#endif
#ifndef RWF_APPEND
#define RWF_APPEND 0x00000010
#endif

/* pwritev2: off -1 means the descriptor's offset; RWF_APPEND writes at the end. */
static off_t pc_v2_off(int fd, off_t off, int flags, ssize_t r) {
  struct stat st;
  if (flags & RWF_APPEND) return fstat(fd, &st) == 0 && st.st_size >= r ? st.st_size - r : 0;
  return off;
}

ssize_t pwritev2(int fd, const struct iovec *iov, int cnt, off_t off, int flags) {
  PC_WRITE_CALL(r_pwritev2(fd, iov, cnt, off, flags), fd, pc_v2_off(fd, off, flags, r_), iov, cnt,
                NULL, (flags & (RWF_DSYNC | RWF_SYNC)) != 0);
}

ssize_t pwritev64v2(int fd, const struct iovec *iov, int cnt, off_t off, int flags) {
  PC_WRITE_CALL((r_pwritev64v2 ? r_pwritev64v2 : r_pwritev2)(fd, iov, cnt, off, flags), fd,
                pc_v2_off(fd, off, flags, r_), iov, cnt, NULL,
                (flags & (RWF_DSYNC | RWF_SYNC)) != 0);
}

static int pc_size_call(int fd, int r, int kind, uint64_t off, uint64_t len) {
  if (r == 0) {
    pc_fd *d = pc_fd_get(fd);
    if (d) pc_record_size(d, kind, off, len);
  }
  return r;
}

int ftruncate(int fd, off_t len) {
  pc_ensure();
  if (!pc_on) return r_ftruncate(fd, len);
  pthread_mutex_lock(&pc_mu);
  int r = pc_size_call(fd, r_ftruncate(fd, len), PC_TRUNC, 0, (uint64_t)len);
  int e = errno;
  pthread_mutex_unlock(&pc_mu);
  errno = e;
  return r;
}

int ftruncate64(int fd, off_t len) {
  return ftruncate(fd, len);
}

static int pc_truncate_path(const char *path, off_t len) {
  pc_ensure();
  char abs[PATH_MAX];
  const char *rel;
  if (!pc_on || !pc_abs(AT_FDCWD, path, abs, sizeof abs) || !(rel = pc_rel(abs)) || !*rel)
    return r_truncate(path, len);
  pthread_mutex_lock(&pc_mu);
  int r = r_truncate(path, len);
  int e = errno;
  if (r == 0) {
    pc_fd tmp = {pc_get(rel), false};
    pc_record_size(&tmp, PC_TRUNC, 0, (uint64_t)len);
  }
  pthread_mutex_unlock(&pc_mu);
  errno = e;
  return r;
}

int truncate(const char *path, off_t len) {
  return pc_truncate_path(path, len);
}

int truncate64(const char *path, off_t len) {
  return pc_truncate_path(path, len);
}

#ifndef FALLOC_FL_KEEP_SIZE
#define FALLOC_FL_KEEP_SIZE 0x01
#endif
#ifndef FALLOC_FL_PUNCH_HOLE
#define FALLOC_FL_PUNCH_HOLE 0x02
#endif
#ifndef FALLOC_FL_ZERO_RANGE
#define FALLOC_FL_ZERO_RANGE 0x10
#endif

int fallocate(int fd, int mode, off_t off, off_t len) {
  pc_ensure();
  if (!pc_on) return r_fallocate(fd, mode, off, len);
  pthread_mutex_lock(&pc_mu);
  int r = r_fallocate(fd, mode, off, len);
  int e = errno;
  pc_fd *d = r == 0 ? pc_fd_get(fd) : NULL;
  if (d) {
    if (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE))
      pc_record_size(d, PC_ZERO, (uint64_t)off, (uint64_t)len);
    if (!(mode & (FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE)))
      pc_record_size(d, PC_EXTEND, 0, (uint64_t)(off + len));
  }
  pthread_mutex_unlock(&pc_mu);
  errno = e;
  return r;
}

int fallocate64(int fd, int mode, off_t off, off_t len) {
  return fallocate(fd, mode, off, len);
}

/* ---- syncs ------------------------------------------------------------------ */

static void pc_sync_fd(int fd) {
  pthread_mutex_lock(&pc_mu);
  pc_fd *d = pc_fd_get(fd);
  if (d && d->f->rel) {
    pc_st.syncs++;
    if (pc_is_wal(d->f) && pc_sabotage && ++pc_wal_syncs >= pc_sabotage_at) {
      if (!pc_lying) {
        static const char m[] = "powercut shim: SABOTAGE: from this WAL sync on, WAL syncs "
                                "report success and persist nothing\n";
        (void)!r_write(2, m, sizeof m - 1);
      }
      pc_lying = true;
      pc_st.sabotaged++;
      pc_free_ops(d->f); /* dropped, not applied */
    } else {
      pc_apply_file(d->f);
    }
    pc_write_stats();
  }
  pthread_mutex_unlock(&pc_mu);
}

static void pc_sync_all(void) {
  pthread_mutex_lock(&pc_mu);
  pc_st.syncs++;
  for (pc_file *f = pc_files; f; f = f->next) {
    if (pc_lying && pc_is_wal(f))
      pc_free_ops(f);
    else
      pc_apply_file(f);
  }
  pc_write_stats();
  pthread_mutex_unlock(&pc_mu);
}

int fdatasync(int fd) {
  pc_ensure();
  if (pc_on) pc_sync_fd(fd);
  return r_fdatasync(fd);
}

int fsync(int fd) {
  pc_ensure();
  if (pc_on) pc_sync_fd(fd);
  return r_fsync(fd);
}

void sync(void) {
  pc_ensure();
  if (pc_on) pc_sync_all();
  r_sync();
}

int syncfs(int fd) {
  pc_ensure();
  if (pc_on) pc_sync_all();
  return r_syncfs(fd);
}

int sync_file_range(int fd, off_t off, off_t n, unsigned flags) {
  pc_ensure(); /* starts writeback, promises nothing: the model applies nothing */
  return r_sync_file_range(fd, off, n, flags);
}

/* ---- namespace ---------------------------------------------------------------- */

/* After a successful rename from -> to (absolute paths). */
static void pc_renamed(const char *from, const char *to) {
  const char *rf = pc_rel(from), *rt = pc_rel(to);
  if ((!rf || !*rf) && (!rt || !*rt)) return;
  pthread_mutex_lock(&pc_mu);
  char sf[PATH_MAX * 2], stp[PATH_MAX * 2];
  pc_st.renames++;
  if (rt && *rt) {
    pc_file *old = pc_find(rt); /* replaced: its pending changes die with it */
    if (old) {
      pc_free_ops(old);
      free(old->rel);
      old->rel = NULL;
    }
  }
  if (rf && *rf && rt && *rt) {
    pc_shadow_path(rf, sf, sizeof sf);
    pc_shadow_path(rt, stp, sizeof stp);
    if (r_rename(sf, stp) != 0 && errno != ENOENT)
      pc_die("shadow rename %s -> %s: %s", sf, stp, strerror(errno));
    pc_file *f = pc_find(rf);
    if (f) {
      free(f->rel);
      if (!(f->rel = strdup(rt))) pc_die("out of memory");
    }
  } else if (rf && *rf) { /* moved out: gone from the disk we model */
    pc_shadow_path(rf, sf, sizeof sf);
    r_unlink(sf);
    pc_file *f = pc_find(rf);
    if (f) {
      pc_free_ops(f);
      free(f->rel);
      f->rel = NULL;
    }
  } else { /* moved in: its content is taken as durable (not done by the node) */
    pc_shadow_path(rt, stp, sizeof stp);
    int in = r_open(to, O_RDONLY | O_CLOEXEC, 0),
        out = r_open(stp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    char buf[65536];
    ssize_t n;
    while (in >= 0 && out >= 0 && (n = read(in, buf, sizeof buf)) > 0)
      (void)!r_write(out, buf, (size_t)n);
    if (in >= 0) r_close(in);
    if (out >= 0) r_close(out);
  }
  pthread_mutex_unlock(&pc_mu);
}

static int pc_do_rename(int fd1, const char *p1, int fd2, const char *p2, int r) {
  char a1[PATH_MAX], a2[PATH_MAX];
  if (r == 0 && pc_on && pc_abs(fd1, p1, a1, sizeof a1) && pc_abs(fd2, p2, a2, sizeof a2)) {
    int e = errno;
    pc_renamed(a1, a2);
    errno = e;
  }
  return r;
}

int rename(const char *from, const char *to) {
  pc_ensure();
  return pc_do_rename(AT_FDCWD, from, AT_FDCWD, to, r_rename(from, to));
}

int renameat(int fd1, const char *from, int fd2, const char *to) {
  pc_ensure();
  return pc_do_rename(fd1, from, fd2, to, r_renameat(fd1, from, fd2, to));
}

int renameat2(int fd1, const char *from, int fd2, const char *to, unsigned flags) {
  pc_ensure();
  if (flags & 2u /* RENAME_EXCHANGE */) { /* not modelled: would need both files swapped */
    int r = r_renameat2(fd1, from, fd2, to, flags);
    if (r == 0 && pc_on) pc_die("renameat2(RENAME_EXCHANGE) is not modelled");
    return r;
  }
  return pc_do_rename(fd1, from, fd2, to, r_renameat2(fd1, from, fd2, to, flags));
}

static int pc_do_unlink(int dirfd, const char *path, int flags, int r) {
  char abs[PATH_MAX];
  const char *rel;
  if (r != 0 || !pc_on || !pc_abs(dirfd, path, abs, sizeof abs) || !(rel = pc_rel(abs)) || !*rel)
    return r;
  int e = errno;
  pthread_mutex_lock(&pc_mu);
  char sp[PATH_MAX * 2];
  pc_shadow_path(rel, sp, sizeof sp);
  if (flags & AT_REMOVEDIR) {
    rmdir(sp);
  } else {
    r_unlink(sp);
    pc_file *f = pc_find(rel);
    if (f) { /* descriptors still open on it write to a file no disk will show */
      pc_free_ops(f);
      free(f->rel);
      f->rel = NULL;
    }
  }
  pc_st.unlinks++;
  pthread_mutex_unlock(&pc_mu);
  errno = e;
  return r;
}

int unlink(const char *path) {
  pc_ensure();
  return pc_do_unlink(AT_FDCWD, path, 0, r_unlink(path));
}

int unlinkat(int dirfd, const char *path, int flags) {
  pc_ensure();
  return pc_do_unlink(dirfd, path, flags, r_unlinkat(dirfd, path, flags));
}

static int pc_do_mkdir(int dirfd, const char *path, mode_t mode, int r) {
  char abs[PATH_MAX];
  const char *rel;
  if (r != 0 || !pc_on || !pc_abs(dirfd, path, abs, sizeof abs) || !(rel = pc_rel(abs)) || !*rel)
    return r;
  int e = errno;
  char sp[PATH_MAX * 2];
  pc_shadow_path(rel, sp, sizeof sp);
  r_mkdir(sp, mode);
  errno = e;
  return r;
}

int mkdir(const char *path, mode_t mode) {
  pc_ensure();
  return pc_do_mkdir(AT_FDCWD, path, mode, r_mkdir(path, mode));
}

int mkdirat(int dirfd, const char *path, mode_t mode) {
  pc_ensure();
  return pc_do_mkdir(dirfd, path, mode, r_mkdirat(dirfd, path, mode));
}
