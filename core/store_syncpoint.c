/*
 * store_syncpoint.c -- the store's sync points: how a store that commits
 * without fdatasync is made durable, and returned at open to its last sync
 * point after a power loss (the essay below).
 *
 * What it is not: the thread that decides when (node_syncer.c), nor the
 * WAL's durability (wal.c).
 *
 * Invariants: sync_mu lets one sync point run at a time and guards the
 * sync_* fields; commit_mu orders a commit against a capture; the pinned
 * snapshot is never overwritten until the next sync point replaces it.
 *
 * Threads: store_sync on the syncer ("sa-sync"), the writer (checkpoint),
 * and the opening/closing thread; store_restore at open only.
 *
 * Why this file is larger than a few hundred lines: the essay, the record's
 * byte layout, its writer and its reader at open describe one mechanism;
 * split, the recovery rule would sit apart from the format it reads.
 */
#define _GNU_SOURCE
#include "store_internal.h"

#include "crc32c.h"
#include "io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * SYNC POINTS
 *
 * A persistent store runs LMDB with MDB_NOSYNC: a commit writes its pages
 * and its meta page into the page cache and returns.  The WAL makes writes
 * durable; the store becomes durable at sync points (store_sync: in the
 * background every few hundred milliseconds, and at checkpoints and close):
 *
 *   1. capture, between two commits (commit_mu): begin a read transaction
 *      on the latest snapshot S -- the pin -- and copy the file's two meta
 *      pages, which now describe S and the snapshot before it;
 *   2. fdatasync the file: every page of S is on disk;
 *   3. write S's record (transaction id, applied LSN, the meta copies, this
 *      boot's id) into "<path>-sync" and fdatasync it;
 *   4. end the previous pin.
 *
 * The pin is what makes this safe.  LMDB never reuses a page that a live
 * reader's snapshot can reach, so until the next sync point no commit
 * overwrites a page of S: later commits write only pages S does not use,
 * and the two meta pages.  After a power loss the file holds S's pages
 * intact plus any mixture of later pages and meta pages -- a meta page may
 * even have reached the disk before the pages it points to -- and writing
 * the saved meta copies back returns it to exactly S.  The WAL, which is
 * never reset past a sync point, replays the rest.  (MDB_NOSYNC without
 * this is not safe after a power loss, for both of those reasons.)
 *
 * At open, store_restore compares the file's meta pages with the record:
 *   - equal: the last stop was at a sync point (a clean close);
 *   - different, on the boot that wrote the record: a process crash; the
 *     page cache held every write, so the file is whole at its latest
 *     commit and is kept, and a sync point is taken at once;
 *   - different after a reboot (maybe a power loss), or when the boot is
 *     unknown: the copies are written back (safe, only more to replay).
 * The boot is /proc/sys/kernel/random/boot_id.
 *
 * This leans on LMDB 0.9's file layout: the meta pages are pages 0 and 1,
 * with LMDB's magic at META_MAGIC_OFF and the transaction id at
 * META_TXNID_OFF.  Every capture checks it: the newest copy must carry the
 * pin's mdb_txn_id.  On another LMDB the store falls back to syncing each
 * commit (STORE_SYNC_EACH). */

#define META_FLAGS_OFF 10 /* u16 page flags: P_META */
#define META_MAGIC_OFF 16
#define META_TXNID_OFF 144
#define LMDB_P_META 0x08
#define LMDB_MAGIC 0xBEEFC0DEu

/* Record: magic, u32 version 1, u32 page size, u64 seq, u64 txnid, u64
 * applied LSN, boot id (40 bytes), zeros, u32 CRC-32C of bytes [0, 120) and
 * of the two meta copies, u32 0, then the copies.  Two slots, written in
 * turn (seq odd: slot 1), so a torn write leaves the other one. */
#define SYNC_MAGIC "SASYNC\0\1"
#define SYNC_HDR 128
#define SYNC_CRC_OFF 120

typedef struct sync_rec {
  uint64_t seq, txnid, lsn;
  unsigned psize;
  char boot[40];
  unsigned char *img; /* 2 * psize bytes */
} sync_rec;

static bool meta_txnid(const unsigned char *pg, uint64_t *txnid) {
  uint16_t flags;
  uint32_t magic;
  memcpy(&flags, pg + META_FLAGS_OFF, 2);
  memcpy(&magic, pg + META_MAGIC_OFF, 4);
  if (!(flags & LMDB_P_META) || magic != LMDB_MAGIC) return false;
  memcpy(txnid, pg + META_TXNID_OFF, 8); /* LMDB writes it in host order */
  return true;
}

/* The newest transaction id among the two meta pages at img; false when
 * neither is a meta page. */
static bool meta_newest(const unsigned char *img, unsigned psize, uint64_t *newest) {
  bool any = false;
  uint64_t t;
  *newest = 0;
  for (int i = 0; i < 2; i++)
    if (meta_txnid(img + (size_t)i * psize, &t)) {
      if (!any || t > *newest) *newest = t;
      any = true;
    }
  return any;
}

static bool meta_both_valid(const unsigned char *img, unsigned psize) {
  uint64_t t;
  return meta_txnid(img, &t) && meta_txnid(img + psize, &t);
}

static const char *store_boot_path = "/proc/sys/kernel/random/boot_id";

void store_set_boot_id_path(const char *path) {
  store_boot_path = path ? path : "/proc/sys/kernel/random/boot_id";
}

void store_read_boot_id(char out[40]) {
  out[0] = 0;
  int fd = open(store_boot_path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ssize_t n = read(fd, out, 39);
  close(fd);
  if (n <= 0) n = 0;
  out[n] = 0;
  out[strcspn(out, "\n")] = 0;
}

static int pread_full(int fd, void *buf, size_t n, off_t off) {
  size_t done = 0;
  while (done < n) {
    ssize_t r = pread(fd, (char *)buf + done, n - done, off + (off_t)done);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -1;
    if (r == 0) break;
    done += (size_t)r;
  }
  return done == n ? 0 : (errno = 0, 1);
}

/* The sync-point file is written with the libc table, not sa_io_get():
 * sync points run on their own thread, and a test table counting or
 * failing calls of the WAL must not see them (faults at sync points go
 * through the store_sync hook). */
static int pwrite_full(int fd, const void *buf, size_t n, off_t off) {
  return sa_io_pwrite_all(&sa_io_libc, fd, buf, n, (uint64_t)off);
}

static size_t sync_slot_bytes(unsigned psize) {
  return SYNC_HDR + 2 * (size_t)psize;
}

static void sync_encode(unsigned char *b, const sync_rec *r) {
  memset(b, 0, SYNC_HDR);
  memcpy(b, SYNC_MAGIC, 8);
  sa_put_u32(b + 8, 1);
  sa_put_u32(b + 12, r->psize);
  sa_put_u64(b + 16, r->seq);
  sa_put_u64(b + 24, r->txnid);
  sa_put_u64(b + 32, r->lsn);
  memcpy(b + 40, r->boot, strnlen(r->boot, 39));
  memcpy(b + SYNC_HDR, r->img, 2 * (size_t)r->psize);
  uint32_t crc = sa_crc32c(0, b, SYNC_CRC_OFF);
  crc = sa_crc32c(crc, b + SYNC_HDR, 2 * (size_t)r->psize);
  sa_put_u32(b + SYNC_CRC_OFF, crc);
}

/* Decodes the slot at b (avail bytes).  0, or -1 when it is not a whole
 * record. */
static int sync_decode(const unsigned char *b, size_t avail, sync_rec *r) {
  if (avail < SYNC_HDR || memcmp(b, SYNC_MAGIC, 8) != 0 || sa_get_u32(b + 8) != 1) return -1;
  unsigned psize = sa_get_u32(b + 12);
  if (psize < 512 || psize > 65536 || avail < sync_slot_bytes(psize)) return -1;
  uint32_t crc = sa_crc32c(0, b, SYNC_CRC_OFF);
  crc = sa_crc32c(crc, b + SYNC_HDR, 2 * (size_t)psize);
  if (crc != sa_get_u32(b + SYNC_CRC_OFF)) return -1;
  r->psize = psize;
  r->seq = sa_get_u64(b + 16);
  r->txnid = sa_get_u64(b + 24);
  r->lsn = sa_get_u64(b + 32);
  memcpy(r->boot, b + 40, 39);
  r->boot[39] = 0;
  r->img = (unsigned char *)b + SYNC_HDR;
  return 0;
}

/* Reads the newest valid record of s->sync_path into *r (r->img points into
 * *buf, which the caller frees).  1 when the file does not exist. */
static int sync_load(sa_store *s, sync_rec *r, unsigned char **buf, sa_error *err) {
  *buf = NULL;
  int fd = open(s->sync_path, O_RDONLY | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) return 1;
  if (fd < 0)
    return sa_fail(err, sa_errno_code(errno), "cannot open '%s': %s", s->sync_path,
                   strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_size > (off_t)(2 * sync_slot_bytes(65536))) {
    close(fd);
    return sa_fail(err, SA_ECORRUPT, "'%s' is not a sync-point file of store '%s'", s->sync_path,
                   s->path);
  }
  size_t n = (size_t)st.st_size;
  unsigned char *b = malloc(n ? n : 1);
  if (!b) {
    close(fd);
    return sa_fail(err, SA_ENOMEM, "out of memory reading '%s'", s->sync_path);
  }
  int rc = pread_full(fd, b, n, 0);
  close(fd);
  if (rc < 0) {
    free(b);
    return sa_fail(err, SA_EIO, "cannot read '%s': %s", s->sync_path, strerror(errno));
  }
  /* The file is always two slots (a new one is written whole), so its size
   * gives the page size. */
  sync_rec a = {0}, c = {0};
  size_t slot = n / 2;
  bool ha = false, hc = false;
  if (n % 2 == 0 && slot > SYNC_HDR) {
    ha = sync_decode(b, slot, &a) == 0 && sync_slot_bytes(a.psize) == slot;
    hc = sync_decode(b + slot, slot, &c) == 0 && sync_slot_bytes(c.psize) == slot;
  }
  if (!ha && !hc) {
    free(b);
    return sa_fail(err, SA_ECORRUPT,
                   "sync-point file '%s' of store '%s' holds no valid record; if the node was "
                   "stopped cleanly, removing it lets the store open as it is",
                   s->sync_path, s->path);
  }
  *r = ha && (!hc || a.seq > c.seq) ? a : c;
  *buf = b;
  return 0;
}

/* Writes record r: into the slot its seq picks, or, for the first record, as
 * a new file renamed into place.  Both end with an fdatasync. */
static int sync_write(sa_store *s, const sync_rec *r, sa_error *err) {
  size_t slot = sync_slot_bytes(r->psize);
  unsigned char *b = calloc(2, slot); /* a new file gets both slots, the other empty */
  if (!b) return sa_fail(err, SA_ENOMEM, "out of memory writing '%s'", s->sync_path);
  off_t at = (off_t)(r->seq & 1) * (off_t)slot;
  sync_encode(b + at, r);
  int e = 0;
  if (s->sync_fd < 0) {
    size_t n = strlen(s->sync_path) + 8;
    char *tmp = malloc(n);
    int fd = -1;
    if (!tmp) {
      e = ENOMEM;
    } else {
      snprintf(tmp, n, "%s.tmp", s->sync_path);
      fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (fd < 0 || pwrite_full(fd, b, 2 * slot, 0) != 0 || fdatasync(fd) != 0 ||
          rename(tmp, s->sync_path) != 0 || sa_io_fsync_dir(&sa_io_libc, s->sync_path) != 0)
        e = errno ? errno : EIO;
      if (e && fd >= 0) {
        close(fd);
        unlink(tmp);
        fd = -1;
      }
    }
    free(tmp);
    if (!e) s->sync_fd = fd;
  } else if (pwrite_full(s->sync_fd, b + at, slot, at) != 0 || fdatasync(s->sync_fd) != 0) {
    e = errno ? errno : EIO;
  }
  free(b);
  if (e)
    return sa_fail(err, sa_errno_code(e), "cannot write sync point of store '%s' to '%s': %s",
                   s->path, s->sync_path, strerror(e));
  s->sync_seq = r->seq;
  return 0;
}

/* Before mdb_env_open: compares the file's meta pages with the last sync
 * point and writes the saved copies back when the file may have lost
 * writes (see above).  *fresh is set when the store needs a sync point as
 * soon as it is open. */
int store_restore(sa_store *s, bool *fresh, sa_error *err) {
  sync_rec r;
  unsigned char *buf;
  *fresh = true;
  int rc = sync_load(s, &r, &buf, err);
  if (rc == 1) return 0; /* no sync point yet: a new store, or one from before them */
  if (rc) return rc;
  s->sync_seq = r.seq;
  int fd = open(s->path, O_RDWR | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) { /* the store was removed: its record goes too */
    free(buf);
    unlink(s->sync_path);
    s->sync_seq = 0;
    return 0;
  }
  if (fd < 0) {
    rc = sa_fail(err, sa_errno_code(errno), "cannot open store '%s': %s", s->path, strerror(errno));
    free(buf);
    return rc;
  }
  size_t n = 2 * (size_t)r.psize;
  unsigned char *disk = malloc(n);
  int rd = disk ? pread_full(fd, disk, n, 0) : -1;
  if (rd == 0 && memcmp(disk, r.img, n) == 0) {
    *fresh = false; /* closed at its sync point */
  } else if (rd == 0 || rd == 1) {
    uint64_t newest = 0;
    bool valid = rd == 0 && meta_newest(disk, r.psize, &newest);
    bool same_boot = s->boot[0] && strcmp(s->boot, r.boot) == 0;
    s->report.unclean = true;
    if (valid && newest <= r.txnid && meta_both_valid(disk, r.psize)) {
      s->report.unclean = false; /* a file no newer than the record: not the one it describes */
      s->report.foreign_sync = true;
    } else if (!valid || !same_boot) {
      if (pwrite_full(fd, r.img, n, 0) != 0 || fdatasync(fd) != 0) {
        rc = sa_fail(err, sa_errno_code(errno),
                     "cannot roll store '%s' back to its last sync point: %s", s->path,
                     strerror(errno));
      } else {
        s->report.rolled_back = true;
        s->report.from_txnid = newest;
        s->report.to_txnid = r.txnid;
        *fresh = false;
      }
    }
  } else {
    rc = sa_fail(err, disk ? SA_EIO : SA_ENOMEM, "cannot read store '%s': %s", s->path,
                 disk ? strerror(errno) : "out of memory");
  }
  if (rc == 0 && !s->report.foreign_sync) {
    s->psize = r.psize;
    s->sync_txnid = r.txnid;
    s->sync_lsn = r.lsn;
    s->sync_fd = open(s->sync_path, O_RDWR | O_CLOEXEC); /* -1: rewritten whole later */
  }
  free(disk);
  free(buf);
  close(fd);
  return rc;
}

int store_sync(sa_store *s, sa_error *err) {
  const sa_io *io = sa_io_get();
  int e = io->store_sync ? io->store_sync() : 0;
  if (e)
    return sa_fail(err, sa_errno_code(e), "sync of store '%s' failed: %s", s->path, strerror(e));
  if (s->mode != STORE_SNAPSHOTS) {
    int rc = mdb_env_sync(s->env, 1);
    return rc ? store_err(s, rc, "sync", err) : 0;
  }
  pthread_mutex_lock(&s->sync_mu);
  sync_rec r = {.psize = s->psize};
  memcpy(r.boot, s->boot, sizeof r.boot);
  MDB_txn *pin = NULL;
  int rc = 0;
  size_t n = 2 * (size_t)s->psize;
  if (!(r.img = malloc(n))) {
    pthread_mutex_unlock(&s->sync_mu);
    return sa_fail(err, SA_ENOMEM, "out of memory syncing store '%s'", s->path);
  }
  /* 1. capture */
  pthread_mutex_lock(&s->commit_mu);
  r.txnid = s->txnid;
  r.lsn = s->applied_lsn;
  bool idle = s->sync_fd >= 0 && r.txnid == s->sync_txnid;
  if (!idle && (rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &pin)) == 0 &&
      pread_full(s->fd, r.img, n, 0) != 0)
    rc = errno ? errno : EIO;
  pthread_mutex_unlock(&s->commit_mu);
  if (idle) goto out;
  if (rc) {
    rc = store_err(s, rc, "capture of a sync point", err);
    goto out;
  }
  uint64_t newest = 0;
  if (mdb_txn_id(pin) != r.txnid || !meta_newest(r.img, s->psize, &newest) || newest != r.txnid) {
    rc = sa_fail(err, SA_EINTERNAL,
                 "store '%s': the LMDB file does not have the layout this build expects "
                 "(snapshot %llu, meta pages say %llu); not syncing",
                 s->path, (unsigned long long)r.txnid, (unsigned long long)newest);
    goto out;
  }
  /* 2. the pages, 3. the record */
  if ((rc = mdb_env_sync(s->env, 1)) != 0) {
    rc = store_err(s, rc, "sync", err);
    goto out;
  }
  r.seq = s->sync_seq + 1;
  if ((rc = sync_write(s, &r, err)) != 0) goto out;
  /* 4. move the pin */
  MDB_txn *old = s->pin;
  s->pin = pin;
  pin = NULL;
  if (old) mdb_txn_abort(old);
  __atomic_store_n(&s->sync_txnid, r.txnid, __ATOMIC_RELEASE);
  __atomic_store_n(&s->sync_lsn, r.lsn, __ATOMIC_RELEASE);
  __atomic_add_fetch(&s->syncs, 1, __ATOMIC_RELAXED);
out:
  if (pin) mdb_txn_abort(pin);
  free(r.img);
  pthread_mutex_unlock(&s->sync_mu);
  return rc;
}

void store_writeback(sa_store *s) {
  /* A page written early is harmless: a power loss may persist any subset
   * of unsynced pages anyway, and the pinned snapshot's pages are never
   * overwritten.  Errors are not acted on here: the next sync point's
   * fdatasync reports them. */
  if (s->fd < 0 || s->mode == STORE_MEMORY) return;
  (void)sync_file_range(s->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
  __atomic_add_fetch(&s->writebacks, 1, __ATOMIC_RELAXED);
}

uint64_t store_writebacks(const sa_store *s) {
  return __atomic_load_n(&s->writebacks, __ATOMIC_RELAXED);
}

bool store_sync_due(sa_store *s) {
  if (s->mode != STORE_SNAPSHOTS) return false;
  pthread_mutex_lock(&s->commit_mu);
  bool due = s->txnid != __atomic_load_n(&s->sync_txnid, __ATOMIC_ACQUIRE);
  pthread_mutex_unlock(&s->commit_mu);
  return due;
}

uint64_t store_syncs(const sa_store *s) {
  return __atomic_load_n(&s->syncs, __ATOMIC_RELAXED);
}

uint64_t store_synced_lsn(const sa_store *s) {
  return __atomic_load_n(&s->sync_lsn, __ATOMIC_ACQUIRE);
}
