/*
 * store.c -- LMDB-backed materialized store.  See store.h for the layout.
 *
 * Durability split: the WAL is the commit point; LMDB is the current state.
 * A persistent store runs LMDB with MDB_NOSYNC and is made durable at sync
 * points (see "sync points" below): a commit costs no fdatasync, and a
 * power loss rolls the file back to the last sync point, from which the WAL
 * replays.  A memory-only store is never synced.
 *
 * Threads: the environment is opened with MDB_NOTLS so read transactions are
 * not tied to threads (libmicrohttpd pools reuse threads freely).  The write
 * transaction is a single slot in the handle: the node's writer thread is
 * the only writer.
 */
#define _GNU_SOURCE
#include "store.h"

#include "internal.h"
#include "io.h"
#include "wal.h"

#include "crc32c.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* kv values: u64 version, u64 lsn, u64 hlc, u32 full-key length F (0 for
 * keys stored inline), F bytes of full key, then the value. */
#define KV_HEADER 28
/* LMDB keys are at most 511 bytes (Debian's build).  Keys up to
 * KV_INLINE_MAX bytes are LMDB keys as they are; a longer key K is stored
 * under K[0..480) + 0x00 + FNV-1a-64(K) (big-endian) + a 16-bit counter, and
 * its full text lives in the value.  Keys that share prefix and hash are a
 * chain told apart by comparing the full key, so a collision never
 * overwrites another key.  Order is bytewise except among keys longer than
 * 480 bytes sharing their first 480 bytes (then: by hash, then counter). */
#define KV_INLINE_MAX 480
#define KV_GROUP (KV_INLINE_MAX + 1 + 8)
#define KV_LONG (KV_GROUP + 2)
#define STORE_RPOOL 64
#define OUTBOX_HEADER 24

struct store_wtxn {
  sa_store *s;
  MDB_txn *txn;
  uint64_t floor; /* feed floor to raise to at commit (0: unchanged) */
};

/* ops values: u8 type, 3 bytes 0, u32 N, u64 hlc, N u64 versions (one per
 * operation of the record: the key's version after it, 0 for a delete),
 * then the WAL payload. */
#define OPS_HEADER 16

struct sa_store {
  MDB_env *env;
  MDB_dbi kv, outbox, ops, meta;
  char *path;
  int mode; /* STORE_MEMORY, STORE_SNAPSHOTS, STORE_SYNC_EACH */
  /* Sync points (STORE_SNAPSHOTS; see "sync points").  commit_mu orders a
   * commit against a capture; sync_mu lets one sync point run at a time
   * and guards the fields below it. */
  pthread_mutex_t commit_mu, sync_mu;
  uint64_t txnid;      /* the latest commit's transaction id (under commit_mu) */
  int fd;              /* LMDB's data file */
  unsigned psize;      /* its page size */
  char *sync_path;     /* "<path>-sync" */
  int sync_fd;         /* -1 until the file exists */
  uint64_t sync_seq;   /* of the newest record in it */
  uint64_t sync_txnid; /* the last sync point's snapshot (atomic reads) */
  uint64_t sync_lsn;   /* its applied LSN */
  MDB_txn *pin;        /* read transaction on that snapshot */
  uint64_t syncs;      /* sync points taken since open (atomic reads) */
  uint64_t writebacks; /* store_writeback kicks since open (atomic) */
  store_open_report report;
  char boot[40]; /* this boot's id, "" when unknown */
  uint64_t applied_lsn;
  uint64_t hlc;
  uint64_t feed_floor; /* changes at or below it may be missing */
  uint64_t map_bytes;
  store_wtxn w; /* the single write transaction slot */
  bool w_busy;
  /* Reset read transactions kept for reuse (mdb_txn_renew is much cheaper
   * than mdb_txn_begin): one slot per reading thread (store_rslot), taken
   * and given back with atomic exchanges, so a reader never waits for a
   * lock (a reader preempted while holding one stalled the others).  Each
   * slot has a cache line of its own. */
  struct {
    MDB_txn *txn;
    char pad[64 - sizeof(MDB_txn *)];
  } rslot[STORE_RPOOL];
};

/* This thread's read slot (the same in every store): threads are numbered
 * in the order they first read; past STORE_RPOOL threads share slots, and a
 * thread that finds its slot empty begins a new transaction. */
static unsigned store_rslot_next;
static __thread unsigned store_rslot_ix; /* 0: not numbered yet */

static unsigned store_rslot(void) {
  if (!store_rslot_ix)
    store_rslot_ix = __atomic_add_fetch(&store_rslot_next, 1, __ATOMIC_RELAXED) % STORE_RPOOL + 1;
  return store_rslot_ix - 1;
}

/* Maps an LMDB result to an SA code and message. */
static int store_err(sa_store *s, int rc, const char *what, sa_error *err) {
  const char *path = s ? s->path : "?";
  switch (rc) {
  case MDB_MAP_FULL:
    return sa_fail(err, SA_ENOSPC,
                   "store '%s' is full (%s): the store_max_bytes limit of %llu bytes is reached",
                   path, what, (unsigned long long)(s ? s->map_bytes : 0));
  case MDB_KEYEXIST:
    return sa_fail(err, SA_EINTERNAL,
                   "store '%s': %s: 65536 keys already share this key's first 480 bytes and "
                   "hash",
                   path, what);
  case MDB_INVALID:
    return sa_fail(err, SA_ECORRUPT, "store '%s' is not an LMDB file (%s)", path, what);
  case MDB_VERSION_MISMATCH:
    return sa_fail(err, SA_EFORMAT, "store '%s' was written by another LMDB version (%s)", path,
                   what);
  case MDB_CORRUPTED:
  case MDB_PAGE_NOTFOUND:
    return sa_fail(err, SA_ECORRUPT, "store '%s' is corrupt (%s): %s", path, what,
                   mdb_strerror(rc));
  default:
    if (rc > 0)
      return sa_fail(err, sa_errno_code(rc), "store '%s': %s failed: %s", path, what, strerror(rc));
    return sa_fail(err, SA_EINTERNAL, "store '%s': %s failed: %s", path, what, mdb_strerror(rc));
  }
}

static int meta_get_u64(MDB_txn *txn, MDB_dbi dbi, const char *name, uint64_t *out) {
  MDB_val k = {strlen(name), (void *)name}, v;
  int rc = mdb_get(txn, dbi, &k, &v);
  if (rc == 0) {
    if (v.mv_size != 8) return MDB_CORRUPTED;
    *out = sa_get_u64(v.mv_data);
  }
  return rc;
}

static int meta_put_u64(MDB_txn *txn, MDB_dbi dbi, const char *name, uint64_t val) {
  unsigned char b[8];
  sa_put_u64(b, val);
  MDB_val k = {strlen(name), (void *)name}, v = {8, b};
  return mdb_put(txn, dbi, &k, &v, 0);
}

/* ---- sync points ----------------------------------------------------------
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

static void read_boot_id(char out[40]) {
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
static int store_restore(sa_store *s, bool *fresh, sa_error *err) {
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

uint64_t store_headroom(sa_store *s) {
  MDB_envinfo info;
  MDB_stat st;
  mdb_env_info(s->env, &info);
  if (mdb_env_stat(s->env, &st) != 0) return 0;
  uint64_t used = ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
  return info.me_mapsize > used ? info.me_mapsize - used : 0;
}

uint64_t store_txnid(const sa_store *s) {
  return __atomic_load_n(&s->txnid, __ATOMIC_SEQ_CST);
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

int store_mode(const sa_store *s) {
  return s->mode;
}

const store_open_report *store_report(const sa_store *s) {
  return &s->report;
}

static void store_free(sa_store *s) {
  if (!s) return;
  if (s->pin) mdb_txn_abort(s->pin);
  for (int i = 0; i < STORE_RPOOL; i++)
    if (s->rslot[i].txn) mdb_txn_abort(s->rslot[i].txn);
  if (s->env) mdb_env_close(s->env);
  if (s->sync_fd >= 0) close(s->sync_fd);
  pthread_mutex_destroy(&s->commit_mu);
  pthread_mutex_destroy(&s->sync_mu);
  free(s->sync_path);
  free(s->path);
  free(s);
}

/* The transaction id of the latest commit. */
static uint64_t store_env_txnid(sa_store *s) {
  MDB_envinfo info;
  mdb_env_info(s->env, &info);
  return info.me_last_txnid;
}

int store_open(sa_store **out, const char *path, const char *node_id, bool persistent,
               uint64_t map_bytes, sa_error *err) {
  *out = NULL;
  sa_store *s = calloc(1, sizeof *s);
  if (!s) return sa_fail(err, SA_ENOMEM, "out of memory opening store '%s'", path);
  s->fd = s->sync_fd = -1;
  pthread_mutex_init(&s->commit_mu, NULL);
  pthread_mutex_init(&s->sync_mu, NULL);
  size_t plen = strlen(path);
  if (!(s->path = strdup(path)) || !(s->sync_path = malloc(plen + 6))) {
    store_free(s);
    return sa_fail(err, SA_ENOMEM, "out of memory opening store '%s'", path);
  }
  snprintf(s->sync_path, plen + 6, "%s-sync", path);
  s->map_bytes = map_bytes;
  int major = 0, minor = 0;
  mdb_version(&major, &minor, NULL);
  s->mode = !persistent                ? STORE_MEMORY
            : major == 0 && minor == 9 ? STORE_SNAPSHOTS
                                       : STORE_SYNC_EACH;
  bool fresh = true; /* needs a sync point once open */
  MDB_txn *txn = NULL;
  int rc;
  if (s->mode == STORE_SNAPSHOTS) {
    read_boot_id(s->boot);
    if ((rc = store_restore(s, &fresh, err)) != 0) {
      store_free(s);
      return rc;
    }
  }
  if ((rc = mdb_env_create(&s->env)) != 0) goto lmdb_fail;
  mdb_env_set_maxdbs(s->env, 8);
  mdb_env_set_maxreaders(s->env, 1024);
  if ((rc = mdb_env_set_mapsize(s->env, (size_t)map_bytes)) != 0) goto lmdb_fail;
  unsigned flags =
      MDB_NOSUBDIR | MDB_NOTLS | (s->mode == STORE_SYNC_EACH ? MDB_NOMETASYNC : MDB_NOSYNC);
  rc = mdb_env_open(s->env, path, flags, 0644);
  if (rc == ENOENT) {
    int code =
        sa_fail(err, SA_ENOENT,
                "cannot open store '%s': its directory does not exist; create it first", path);
    store_free(s);
    return code;
  }
  if (rc) goto lmdb_fail;
  MDB_stat st;
  if ((rc = mdb_env_get_fd(s->env, &s->fd)) != 0 || (rc = mdb_env_stat(s->env, &st)) != 0)
    goto lmdb_fail;
  if (s->psize && s->psize != st.ms_psize) { /* a record of another file */
    s->report.foreign_sync = true;
    fresh = true;
    if (s->sync_fd >= 0) close(s->sync_fd);
    s->sync_fd = -1; /* rewritten whole */
  }
  s->psize = st.ms_psize;
  s->txnid = store_env_txnid(s);
  if (s->mode == STORE_SNAPSHOTS) {
    /* Pin before anything commits: the snapshot the record describes (the
     * file is exactly it), or, when a sync point is due at once, the latest
     * (which the open transaction below leaves as it is, for a store that
     * already exists). */
    if (!fresh && s->txnid != s->sync_txnid) fresh = true;
    if ((rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &s->pin)) != 0) goto lmdb_fail;
  }
  if ((rc = mdb_txn_begin(s->env, NULL, 0, &txn)) != 0) goto lmdb_fail;
  if ((rc = mdb_dbi_open(txn, "kv", MDB_CREATE, &s->kv)) != 0 ||
      (rc = mdb_dbi_open(txn, "outbox", MDB_CREATE, &s->outbox)) != 0 ||
      (rc = mdb_dbi_open(txn, "ops", MDB_CREATE, &s->ops)) != 0 ||
      (rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &s->meta)) != 0)
    goto lmdb_fail;

  /* Meta: a new store takes this node's id; an old one must match it. */
  MDB_val k = {7, "node_id"}, v;
  rc = mdb_get(txn, s->meta, &k, &v);
  if (rc == MDB_NOTFOUND) {
    v.mv_size = strlen(node_id);
    v.mv_data = (void *)node_id;
    unsigned char fmt[4];
    sa_put_u32(fmt, SA_STORE_FORMAT);
    MDB_val fk = {6, "format"}, fv = {4, fmt};
    if ((rc = mdb_put(txn, s->meta, &k, &v, 0)) != 0 ||
        (rc = mdb_put(txn, s->meta, &fk, &fv, 0)) != 0)
      goto lmdb_fail;
  } else if (rc == 0) {
    if (v.mv_size != strlen(node_id) || memcmp(v.mv_data, node_id, v.mv_size) != 0) {
      int code = sa_fail(err, SA_ENODE, "store '%s' belongs to node '%.*s', not to node '%s'", path,
                         (int)(v.mv_size > 64 ? 64 : v.mv_size), (const char *)v.mv_data, node_id);
      mdb_txn_abort(txn);
      store_free(s);
      return code;
    }
    MDB_val fk = {6, "format"}, fv;
    if ((rc = mdb_get(txn, s->meta, &fk, &fv)) != 0) goto lmdb_fail;
    uint32_t fmt = fv.mv_size == 4 ? sa_get_u32(fv.mv_data) : 0;
    if (fmt != SA_STORE_FORMAT) {
      int code =
          sa_fail(err, SA_EFORMAT, "store '%s' has format version %u; this build reads version %d",
                  path, fmt, SA_STORE_FORMAT);
      mdb_txn_abort(txn);
      store_free(s);
      return code;
    }
  } else {
    goto lmdb_fail;
  }
  rc = meta_get_u64(txn, s->meta, "applied_lsn", &s->applied_lsn);
  if (rc && rc != MDB_NOTFOUND) goto lmdb_fail;
  rc = meta_get_u64(txn, s->meta, "hlc", &s->hlc);
  if (rc && rc != MDB_NOTFOUND) goto lmdb_fail;
  rc = meta_get_u64(txn, s->meta, "feed_floor", &s->feed_floor);
  if (rc && rc != MDB_NOTFOUND) goto lmdb_fail;
  rc = mdb_txn_commit(txn);
  txn = NULL;
  if (rc) goto lmdb_fail;
  s->txnid = store_env_txnid(s);
  if (s->mode == STORE_SNAPSHOTS && (fresh || store_sync_due(s)) &&
      (rc = store_sync(s, err)) != 0) {
    store_free(s);
    return rc;
  }
  *out = s;
  return 0;

lmdb_fail:;
  int code = store_err(s, rc, "open", err);
  if (txn) mdb_txn_abort(txn);
  store_free(s);
  return code;
}

void store_close(sa_store *s) {
  if (!s) return;
  assert(!s->w_busy);
  store_free(s);
}

uint64_t store_applied_lsn(const sa_store *s) {
  return __atomic_load_n(&s->applied_lsn, __ATOMIC_ACQUIRE);
}

uint64_t store_meta_hlc(const sa_store *s) {
  return s->hlc;
}

/* ---- write transaction ------------------------------------------------- */

int store_wbegin(sa_store *s, store_wtxn **out, sa_error *err) {
  assert(!s->w_busy);
  int rc = mdb_txn_begin(s->env, NULL, 0, &s->w.txn);
  if (rc) return store_err(s, rc, "begin write transaction", err);
  s->w.s = s;
  s->w.floor = 0;
  s->w_busy = true;
  *out = &s->w;
  return 0;
}

typedef struct kv_entry {
  uint64_t version, lsn, hlc;
  const char *key; /* the full key */
  size_t klen;
  const unsigned char *val;
  size_t vlen;
} kv_entry;

static int kv_decode(const MDB_val *k, const MDB_val *v, kv_entry *e) {
  if (v->mv_size < KV_HEADER) return -1;
  const unsigned char *p = v->mv_data;
  uint32_t f = sa_get_u32(p + 24);
  if (v->mv_size - KV_HEADER < f) return -1;
  e->version = sa_get_u64(p);
  e->lsn = sa_get_u64(p + 8);
  e->hlc = sa_get_u64(p + 16);
  e->key = f ? (const char *)p + KV_HEADER : k->mv_data;
  e->klen = f ? f : k->mv_size;
  e->val = p + KV_HEADER + f;
  e->vlen = v->mv_size - KV_HEADER - f;
  return 0;
}

/* Tests build the core with a tiny mask to force long collision chains. */
#ifndef SA_STORE_HASH_MASK
#define SA_STORE_HASH_MASK UINT64_MAX
#endif

static void kv_group(unsigned char g[KV_GROUP], const char *key, size_t klen) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < klen; i++)
    h = (h ^ (unsigned char)key[i]) * 1099511628211ull;
  h &= SA_STORE_HASH_MASK;
  memcpy(g, key, KV_INLINE_MAX);
  g[KV_INLINE_MAX] = 0;
  for (int i = 0; i < 8; i++)
    g[KV_INLINE_MAX + 1 + i] = (unsigned char)(h >> (56 - 8 * i));
}

/* Looks key up in txn.  Found: *sk is its LMDB key (long keys: copied into
 * skbuf) and *v its value.  Not found: *sk is where a put would store it. */
static int kv_find(sa_store *s, MDB_txn *txn, const char *key, size_t klen,
                   unsigned char skbuf[KV_LONG], MDB_val *sk, MDB_val *v, bool *found) {
  *found = false;
  if (klen <= KV_INLINE_MAX) {
    sk->mv_size = klen;
    sk->mv_data = (void *)key;
    int rc = mdb_get(txn, s->kv, sk, v);
    if (rc == 0) *found = true;
    return rc == MDB_NOTFOUND ? 0 : rc;
  }
  kv_group(skbuf, key, klen);
  MDB_cursor *cur;
  int rc = mdb_cursor_open(txn, s->kv, &cur);
  if (rc) return rc;
  unsigned next = 0;
  MDB_val k = {KV_GROUP, skbuf};
  rc = mdb_cursor_get(cur, &k, v, MDB_SET_RANGE);
  while (rc == 0 && k.mv_size == KV_LONG && memcmp(k.mv_data, skbuf, KV_GROUP) == 0) {
    kv_entry e;
    if (kv_decode(&k, v, &e) != 0) {
      rc = MDB_CORRUPTED;
      break;
    }
    const unsigned char *kp = k.mv_data;
    unsigned n = (unsigned)(kp[KV_GROUP] << 8 | kp[KV_GROUP + 1]);
    if (e.klen == klen && memcmp(e.key, key, klen) == 0) {
      memcpy(skbuf, k.mv_data, KV_LONG);
      *found = true;
      break;
    }
    next = n + 1;
    rc = mdb_cursor_get(cur, &k, v, MDB_NEXT);
  }
  mdb_cursor_close(cur);
  if (rc && rc != MDB_NOTFOUND) return rc;
  if (!*found) {
    if (next > 0xFFFF) return MDB_KEYEXIST; /* 65536 keys with one prefix and hash */
    skbuf[KV_GROUP] = (unsigned char)(next >> 8);
    skbuf[KV_GROUP + 1] = (unsigned char)next;
  }
  sk->mv_size = KV_LONG;
  sk->mv_data = skbuf;
  return 0;
}

/* Reads key's entry inside the write txn: *e zeroed when absent. */
static int kv_wread(store_wtxn *t, const char *key, uint32_t klen, kv_entry *e, sa_error *err) {
  unsigned char kb[KV_LONG];
  MDB_val k, v;
  bool found;
  memset(e, 0, sizeof *e);
  int rc = kv_find(t->s, t->txn, key, klen, kb, &k, &v, &found);
  if (rc) return store_err(t->s, rc, "read", err);
  if (found && kv_decode(&k, &v, e) != 0)
    return sa_fail(err, SA_ECORRUPT, "store '%s': malformed kv entry", t->s->path);
  return 0;
}

int store_wversion(store_wtxn *t, const char *key, uint32_t klen, uint64_t *version,
                   sa_error *err) {
  kv_entry e;
  int rc = kv_wread(t, key, klen, &e, err);
  *version = e.version;
  return rc;
}

int store_wput(store_wtxn *t, const char *key, uint32_t klen, const void *val, uint32_t vlen,
               uint64_t lsn, uint64_t hlc, uint64_t *version, sa_error *err) {
  unsigned char kb[KV_LONG];
  MDB_val k, v;
  bool found;
  kv_entry e;
  uint64_t old = 0;
  uint32_t f = klen > KV_INLINE_MAX ? klen : 0;
  size_t size = KV_HEADER + (size_t)f + vlen;
  int rc;
  if (!f) {
    /* One descent for a new key: insert unless present; when present LMDB
     * points v at the current value, whose version we need. */
    k.mv_size = klen;
    k.mv_data = (void *)key;
    v.mv_size = size;
    v.mv_data = NULL;
    rc = mdb_put(t->txn, t->s->kv, &k, &v, MDB_RESERVE | MDB_NOOVERWRITE);
    found = rc == MDB_KEYEXIST;
    if (rc && !found) return store_err(t->s, rc, "put", err);
  } else {
    rc = kv_find(t->s, t->txn, key, klen, kb, &k, &v, &found);
    if (rc) return store_err(t->s, rc, "put", err);
  }
  if (found) {
    if (kv_decode(&k, &v, &e) != 0)
      return sa_fail(err, SA_ECORRUPT, "store '%s': malformed kv entry", t->s->path);
    old = e.version;
  }
  if (f || found) {
    v.mv_size = size;
    v.mv_data = NULL;
    rc = mdb_put(t->txn, t->s->kv, &k, &v, MDB_RESERVE);
    if (rc) return store_err(t->s, rc, "put", err);
  }
  unsigned char *p = v.mv_data;
  sa_put_u64(p, old + 1);
  sa_put_u64(p + 8, lsn);
  sa_put_u64(p + 16, hlc);
  sa_put_u32(p + 24, f);
  if (f) memcpy(p + KV_HEADER, key, f);
  if (vlen) memcpy(p + KV_HEADER + f, val, vlen);
  *version = old + 1;
  return 0;
}

int store_wdel(store_wtxn *t, const char *key, uint32_t klen, bool *existed, sa_error *err) {
  unsigned char kb[KV_LONG];
  MDB_val k, v;
  int rc = kv_find(t->s, t->txn, key, klen, kb, &k, &v, existed);
  if (rc == 0 && *existed) rc = mdb_del(t->txn, t->s->kv, &k, NULL);
  if (rc) return store_err(t->s, rc, "delete", err);
  return 0;
}

static void obx_key(unsigned char kb[8], uint64_t lsn) {
  for (int i = 0; i < 8; i++)
    kb[i] = (unsigned char)(lsn >> (56 - 8 * i)); /* big-endian: LSN order */
}

static uint64_t obx_key_lsn(const MDB_val *k) {
  uint64_t lsn = 0;
  const unsigned char *p = k->mv_data;
  for (size_t i = 0; i < 8 && i < k->mv_size; i++)
    lsn = (lsn << 8) | p[i];
  return lsn;
}

static void obx_encode(unsigned char p[OUTBOX_HEADER], const store_obx *e) {
  memset(p, 0, OUTBOX_HEADER);
  p[0] = (unsigned char)e->state;
  p[1] = (unsigned char)e->type;
  sa_put_u32(p + 4, e->attempts);
  sa_put_u64(p + 8, e->hlc);
  sa_put_u64(p + 16, e->at_ms);
}

static int obx_decode(const MDB_val *k, const MDB_val *v, store_obx *e) {
  if (k->mv_size != 8 || v->mv_size != OUTBOX_HEADER) return -1;
  const unsigned char *p = v->mv_data;
  e->lsn = obx_key_lsn(k);
  e->state = p[0];
  e->type = p[1];
  e->attempts = sa_get_u32(p + 4);
  e->hlc = sa_get_u64(p + 8);
  e->at_ms = sa_get_u64(p + 16);
  return 0;
}

int store_woutbox(store_wtxn *t, uint64_t lsn, uint64_t hlc, int type, const void *payload,
                  uint32_t len, const uint64_t *versions, uint32_t nver, sa_error *err) {
  unsigned char kb[8], hb[OUTBOX_HEADER];
  obx_key(kb, lsn);
  store_obx e = {.lsn = lsn, .state = STORE_OUTBOX_QUEUED, .type = type, .hlc = hlc};
  obx_encode(hb, &e);
  MDB_val k = {8, kb}, v = {OUTBOX_HEADER, hb};
  int rc = mdb_put(t->txn, t->s->outbox, &k, &v, MDB_APPEND);
  if (rc == MDB_KEYEXIST) /* replay over an entry already there: overwrite */
    rc = mdb_put(t->txn, t->s->outbox, &k, &v, 0);
  MDB_val pv = {OPS_HEADER + 8 * (size_t)nver + len, NULL};
  if (rc == 0) rc = mdb_put(t->txn, t->s->ops, &k, &pv, MDB_RESERVE | MDB_APPEND);
  if (rc == MDB_KEYEXIST) { /* replay over an entry already there (or below the last one) */
    pv.mv_size = OPS_HEADER + 8 * (size_t)nver + len;
    pv.mv_data = NULL;
    rc = mdb_put(t->txn, t->s->ops, &k, &pv, MDB_RESERVE);
  }
  if (rc) return store_err(t->s, rc, "outbox put", err);
  unsigned char *p = pv.mv_data;
  memset(p, 0, OPS_HEADER);
  p[0] = (unsigned char)type;
  sa_put_u32(p + 4, nver);
  sa_put_u64(p + 8, hlc);
  for (uint32_t i = 0; i < nver; i++)
    sa_put_u64(p + OPS_HEADER + 8 * i, versions[i]);
  memcpy(p + OPS_HEADER + 8 * (size_t)nver, payload, len);
  return 0;
}

void store_wraise_floor(store_wtxn *t, uint64_t lsn) {
  if (lsn > t->floor) t->floor = lsn;
}

uint64_t store_feed_floor(const sa_store *s) {
  return __atomic_load_n(&s->feed_floor, __ATOMIC_ACQUIRE);
}

/* Splits an ops value.  -1 when malformed. */
static int ops_decode(const MDB_val *v, int *type, uint64_t *hlc, const unsigned char **vers,
                      uint32_t *nver, const unsigned char **payload, uint32_t *len) {
  if (v->mv_size < OPS_HEADER) return -1;
  const unsigned char *p = v->mv_data;
  uint32_t n = sa_get_u32(p + 4);
  if ((v->mv_size - OPS_HEADER) / 8 < n) return -1;
  *type = p[0];
  *hlc = sa_get_u64(p + 8);
  *vers = p + OPS_HEADER;
  *nver = n;
  *payload = p + OPS_HEADER + 8 * (size_t)n;
  *len = (uint32_t)(v->mv_size - OPS_HEADER - 8 * (size_t)n);
  return 0;
}

int store_wobx_each(store_wtxn *t, uint64_t from, store_obx_fn fn, void *ctx, sa_error *err) {
  MDB_cursor *cur;
  int rc = mdb_cursor_open(t->txn, t->s->outbox, &cur);
  if (rc) return store_err(t->s, rc, "outbox cursor", err);
  unsigned char fb[8];
  obx_key(fb, from);
  MDB_val k = {8, fb}, v;
  int code = 0;
  rc = mdb_cursor_get(cur, &k, &v, from ? MDB_SET_RANGE : MDB_FIRST);
  while (rc == 0) {
    store_obx e;
    if (obx_decode(&k, &v, &e) != 0) {
      code = sa_fail(err, SA_ECORRUPT, "store '%s': malformed outbox entry", t->s->path);
      break;
    }
    int what = fn(&e, ctx);
    if (what == STORE_OBX_STOP) break;
    if (what == STORE_OBX_UPDATE) {
      unsigned char hb[OUTBOX_HEADER];
      obx_encode(hb, &e);
      MDB_val nv = {OUTBOX_HEADER, hb};
      rc = mdb_cursor_put(cur, &k, &nv, MDB_CURRENT);
    } else if (what == STORE_OBX_DELETE) {
      unsigned char kb[8];
      obx_key(kb, e.lsn);
      MDB_val pk = {8, kb};
      rc = mdb_cursor_del(cur, 0);
      if (rc == 0) {
        rc = mdb_del(t->txn, t->s->ops, &pk, NULL);
        if (rc == MDB_NOTFOUND) rc = 0;
      }
      /* After mdb_cursor_del, MDB_NEXT yields the entry that followed. */
    }
    if (rc) break;
    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
  }
  if (!code && rc && rc != MDB_NOTFOUND) code = store_err(t->s, rc, "outbox walk", err);
  mdb_cursor_close(cur);
  return code;
}

int store_wobx_get(store_wtxn *t, uint64_t lsn, store_obx *e, bool *found, sa_error *err) {
  unsigned char kb[8];
  obx_key(kb, lsn);
  MDB_val k = {8, kb}, v;
  int rc = mdb_get(t->txn, t->s->outbox, &k, &v);
  *found = false;
  if (rc == MDB_NOTFOUND) return 0;
  if (rc) return store_err(t->s, rc, "outbox get", err);
  if (obx_decode(&k, &v, e) != 0)
    return sa_fail(err, SA_ECORRUPT, "store '%s': malformed outbox entry", t->s->path);
  *found = true;
  return 0;
}

int store_wobx_put(store_wtxn *t, const store_obx *e, sa_error *err) {
  unsigned char kb[8], hb[OUTBOX_HEADER];
  obx_key(kb, e->lsn);
  obx_encode(hb, e);
  MDB_val k = {8, kb}, v = {OUTBOX_HEADER, hb};
  int rc = mdb_put(t->txn, t->s->outbox, &k, &v, 0);
  if (rc) return store_err(t->s, rc, "outbox update", err);
  return 0;
}

int store_wobx_payload(store_wtxn *t, uint64_t lsn, const void **p, uint32_t *len, sa_error *err) {
  unsigned char kb[8];
  obx_key(kb, lsn);
  MDB_val k = {8, kb}, v;
  int rc = mdb_get(t->txn, t->s->ops, &k, &v);
  if (rc == MDB_NOTFOUND) /* the entry and its operation are written and deleted together */
    return sa_fail(err, SA_ECORRUPT, "store '%s': outbox entry %llu has no operation record",
                   t->s->path, (unsigned long long)lsn);
  if (rc) return store_err(t->s, rc, "outbox payload", err);
  int type;
  uint64_t hlc;
  const unsigned char *vers, *pay;
  uint32_t nver;
  if (ops_decode(&v, &type, &hlc, &vers, &nver, &pay, len) != 0)
    return sa_fail(err, SA_ECORRUPT, "store '%s': malformed operation %llu", t->s->path,
                   (unsigned long long)lsn);
  *p = pay;
  return 0;
}

int store_wkv_lsn(store_wtxn *t, const char *key, uint32_t klen, uint64_t *lsn, sa_error *err) {
  kv_entry e;
  int rc = kv_wread(t, key, klen, &e, err);
  *lsn = e.lsn;
  return rc;
}

int store_wcommit(store_wtxn *t, uint64_t applied_lsn, uint64_t hlc, sa_error *err) {
  sa_store *s = t->s;
  int rc;
  uint64_t floor = t->floor > s->feed_floor ? t->floor : 0;
  if ((rc = meta_put_u64(t->txn, s->meta, "applied_lsn", applied_lsn)) != 0 ||
      (rc = meta_put_u64(t->txn, s->meta, "hlc", hlc)) != 0 ||
      (floor && (rc = meta_put_u64(t->txn, s->meta, "feed_floor", floor)) != 0)) {
    store_wabort(t);
    return store_err(s, rc, "meta update", err);
  }
  int e = sa_io_get()->store_commit();
  if (e) {
    store_wabort(t);
    return sa_fail(err, sa_errno_code(e), "commit to store '%s' failed: %s", s->path, strerror(e));
  }
  pthread_mutex_lock(&s->commit_mu); /* not between a sync point's capture steps */
  rc = mdb_txn_commit(t->txn);
  if (rc == 0) {
    __atomic_store_n(&s->txnid, store_env_txnid(s), __ATOMIC_SEQ_CST); /* store_txnid */
    __atomic_store_n(&s->applied_lsn, applied_lsn, __ATOMIC_RELEASE);
  }
  pthread_mutex_unlock(&s->commit_mu);
  t->txn = NULL;
  s->w_busy = false;
  if (rc) return store_err(s, rc, "commit", err);
  if (floor) __atomic_store_n(&s->feed_floor, floor, __ATOMIC_RELEASE);
  s->hlc = hlc;
  return 0;
}

void store_wabort(store_wtxn *t) {
  if (t->txn) mdb_txn_abort(t->txn);
  t->txn = NULL;
  t->s->w_busy = false;
}

/* ---- reads ------------------------------------------------------------- */

/* A read transaction on the latest snapshot: a pooled one renewed, or a new
 * one.  End it with store_rend. */
static int store_rbegin(sa_store *s, MDB_txn **txn, sa_error *err) {
  MDB_txn *t = __atomic_exchange_n(&s->rslot[store_rslot()].txn, NULL, __ATOMIC_ACQ_REL);
  int rc;
  if (t) {
    if ((rc = mdb_txn_renew(t)) == 0) {
      *txn = t;
      return 0;
    }
    mdb_txn_abort(t);
  }
  rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, txn);
  if (rc) return store_err(s, rc, "begin read transaction", err);
  return 0;
}

/* Ends a read transaction: reset and kept for reuse, or aborted. */
static void store_rend(sa_store *s, MDB_txn *txn) {
  mdb_txn_reset(txn);
  MDB_txn *none = NULL;
  if (!__atomic_compare_exchange_n(&s->rslot[store_rslot()].txn, &none, txn, false,
                                   __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
    mdb_txn_abort(txn); /* another thread of this slot put one back first */
}

/* Finds key in a new read transaction.  Returns 0 with *txn open (end it
 * with store_rend) and *e pointing into the map, or an error (no txn).  An
 * absent key is SA_ENOTFOUND, or, when found is given, 0 with *found false
 * (no txn, no message formatted: the writer asks this for every new key). */
static int store_rfind(sa_store *s, const char *key, uint32_t klen, MDB_txn **txn, kv_entry *e,
                       bool *found, sa_error *err) {
  int rc = store_rbegin(s, txn, err);
  if (rc) return rc;
  unsigned char kb[KV_LONG];
  MDB_val k, v;
  bool here;
  rc = kv_find(s, *txn, key, klen, kb, &k, &v, &here);
  if (found) *found = here;
  if (rc == 0 && !here) {
    store_rend(s, *txn);
    return found ? 0 /* the caller asked: no message to format */
                 : sa_fail(err, SA_ENOTFOUND, "key '%.*s' not found",
                           (int)(klen > 200 ? 200 : klen), key);
  }
  if (rc || kv_decode(&k, &v, e) != 0) {
    store_rend(s, *txn);
    return rc ? store_err(s, rc, "get", err)
              : sa_fail(err, SA_ECORRUPT, "store '%s': malformed kv entry", s->path);
  }
  return 0;
}

int store_get(sa_store *s, const char *key, uint32_t klen, sa_value *out, sa_error *err) {
  memset(out, 0, sizeof *out);
  MDB_txn *txn;
  kv_entry e;
  int rc = store_rfind(s, key, klen, &txn, &e, NULL, err);
  if (rc) return rc;
  char *data = malloc(e.vlen + 1);
  if (!data) {
    store_rend(s, txn);
    return sa_fail(err, SA_ENOMEM, "out of memory reading a %zu-byte value", e.vlen);
  }
  out->version = e.version;
  out->lsn = e.lsn;
  out->hlc = e.hlc;
  memcpy(data, e.val, e.vlen); /* copy out before the txn ends */
  data[e.vlen] = 0;
  store_rend(s, txn);
  out->data = data;
  out->len = e.vlen;
  return 0;
}

int store_version(sa_store *s, const char *key, uint32_t klen, uint64_t *version, sa_error *err) {
  *version = 0;
  MDB_txn *txn;
  kv_entry e;
  bool found;
  int rc = store_rfind(s, key, klen, &txn, &e, &found, err);
  if (rc || !found) return rc; /* absent: version 0, the common case of a new key */
  *version = e.version;
  store_rend(s, txn);
  return 0;
}

int store_get_with(sa_store *s, const char *key, uint32_t klen,
                   void (*fn)(void *arg, const sa_value *v), void *arg, sa_error *err) {
  MDB_txn *txn;
  kv_entry e;
  int rc = store_rfind(s, key, klen, &txn, &e, NULL, err);
  if (rc) return rc;
  sa_value v = {
      .data = (char *)e.val, /* read-only: the map */
      .len = e.vlen,
      .version = e.version,
      .lsn = e.lsn,
      .hlc = e.hlc,
  };
  fn(arg, &v);
  store_rend(s, txn);
  return 0;
}

int store_list(sa_store *s, const char *prefix, const char *after, size_t limit, bool with_values,
               sa_list *out, sa_error *err) {
  memset(out, 0, sizeof *out);
  if (!prefix) prefix = "";
  size_t plen = strlen(prefix), alen = after ? strlen(after) : 0;
  /* Stored keys match the real key on their first KV_INLINE_MAX bytes. */
  size_t pcmp = plen < KV_INLINE_MAX ? plen : KV_INLINE_MAX;
  MDB_txn *txn;
  MDB_cursor *cur;
  int rc = store_rbegin(s, &txn, err);
  if (rc) return rc;
  if ((rc = mdb_cursor_open(txn, s->kv, &cur)) != 0) {
    store_rend(s, txn);
    return store_err(s, rc, "cursor", err);
  }
  out->items = calloc(limit, sizeof *out->items);
  if (!out->items) {
    mdb_cursor_close(cur);
    store_rend(s, txn);
    return sa_fail(err, SA_ENOMEM, "out of memory listing %zu keys", limit);
  }
  /* Start: just after `after` when it sorts at or past the prefix. */
  unsigned char kb[KV_LONG];
  MDB_val k, v, start;
  bool skip_equal = false;
  if (alen && (plen == 0 || strncmp(after, prefix, plen) >= 0)) {
    bool found = false;
    if (alen <= KV_INLINE_MAX) {
      start.mv_size = alen;
      start.mv_data = (void *)after;
      skip_equal = true;
    } else if ((rc = kv_find(s, txn, after, alen, kb, &start, &v, &found)) == 0) {
      if (found) {
        skip_equal = true;
      } else { /* gone: resume after every key of its hash group */
        kb[KV_GROUP] = kb[KV_GROUP + 1] = 0xFF;
      }
    }
  } else {
    start.mv_size = pcmp;
    start.mv_data = (void *)prefix;
  }
  if (rc == 0)
    rc = start.mv_size ? (k = start, mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE))
                       : mdb_cursor_get(cur, &k, &v, MDB_FIRST);
  if (rc == 0 && skip_equal && k.mv_size == start.mv_size &&
      memcmp(k.mv_data, start.mv_data, k.mv_size) == 0)
    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
  int code = 0;
  while (rc == 0 && k.mv_size >= pcmp && memcmp(k.mv_data, prefix, pcmp) == 0) {
    kv_entry e;
    if (kv_decode(&k, &v, &e) != 0) {
      code = sa_fail(err, SA_ECORRUPT, "store '%s': malformed kv entry", s->path);
      break;
    }
    if (e.klen < plen || memcmp(e.key, prefix, plen) != 0) { /* long prefix: check all */
      rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
      continue;
    }
    if (out->count == limit) {
      out->more = true;
      break;
    }
    sa_entry *it = &out->items[out->count];
    it->len = e.vlen;
    it->version = e.version;
    it->lsn = e.lsn;
    it->hlc = e.hlc;
    it->key = malloc(e.klen + 1);
    if (with_values) it->data = malloc(e.vlen + 1);
    if (!it->key || (with_values && !it->data)) {
      free(it->key);
      free(it->data);
      code = sa_fail(err, SA_ENOMEM, "out of memory listing keys");
      break;
    }
    memcpy(it->key, e.key, e.klen);
    it->key[e.klen] = 0;
    if (with_values) {
      memcpy(it->data, e.val, e.vlen);
      it->data[e.vlen] = 0;
    }
    out->count++;
    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
  }
  if (!code && rc && rc != MDB_NOTFOUND) code = store_err(s, rc, "list", err);
  mdb_cursor_close(cur);
  store_rend(s, txn);
  if (code) sa_list_free(out);
  return code;
}

void sa_list_free(sa_list *l) {
  if (!l) return;
  for (size_t i = 0; i < l->count; i++) {
    free(l->items[i].key);
    free(l->items[i].data);
  }
  free(l->items);
  memset(l, 0, sizeof *l);
}

static uint64_t store_entries(sa_store *s, MDB_dbi dbi) {
  MDB_txn *txn;
  MDB_stat st;
  if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn) != 0) return 0;
  int rc = mdb_stat(txn, dbi, &st);
  store_rend(s, txn);
  return rc ? 0 : (uint64_t)st.ms_entries;
}

uint64_t store_count(sa_store *s) {
  return store_entries(s, s->kv);
}

uint64_t store_outbox_count(sa_store *s) {
  return store_entries(s, s->outbox);
}

int store_obx_list(sa_store *s, uint64_t after, size_t max, store_obx *out, size_t *n,
                   sa_error *err) {
  *n = 0;
  MDB_txn *txn;
  MDB_cursor *cur;
  int rc = store_rbegin(s, &txn, err);
  if (rc) return rc;
  if ((rc = mdb_cursor_open(txn, s->outbox, &cur)) != 0) {
    store_rend(s, txn);
    return store_err(s, rc, "outbox cursor", err);
  }
  unsigned char kb[8];
  obx_key(kb, after + 1);
  MDB_val k = {8, kb}, v;
  int code = 0;
  rc = after + 1 == 0 ? MDB_NOTFOUND : mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
  while (rc == 0 && *n < max) {
    if (obx_decode(&k, &v, &out[*n]) != 0) {
      code = sa_fail(err, SA_ECORRUPT, "store '%s': malformed outbox entry", s->path);
      break;
    }
    (*n)++;
    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
  }
  if (!code && rc && rc != MDB_NOTFOUND) code = store_err(s, rc, "outbox list", err);
  mdb_cursor_close(cur);
  store_rend(s, txn);
  return code;
}

/* ---- change feed ------------------------------------------------------- */

static void changes_free_items(sa_change *it, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(it[i].key);
    free(it[i].data);
  }
  free(it);
}

int store_changes(sa_store *s, uint64_t since, size_t limit, bool with_values, sa_changes *out,
                  sa_error *err) {
  memset(out, 0, sizeof *out);
  out->next_since = since;
  MDB_txn *txn;
  MDB_cursor *cur;
  int rc = store_rbegin(s, &txn, err);
  if (rc) return rc;
  if ((rc = mdb_cursor_open(txn, s->ops, &cur)) != 0) {
    store_rend(s, txn);
    return store_err(s, rc, "feed cursor", err);
  }
  size_t cap = limit + 16;
  sa_change *items = calloc(cap, sizeof *items);
  int code = items ? 0 : sa_fail(err, SA_ENOMEM, "out of memory reading changes");
  unsigned char kb[8];
  obx_key(kb, since + 1);
  MDB_val k = {8, kb}, v;
  rc = code || since == UINT64_MAX ? MDB_NOTFOUND : mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
  size_t n = 0;
  while (!code && rc == 0) {
    if (n >= limit) {
      out->more = true;
      break;
    }
    int type;
    uint64_t hlc, lsn = obx_key_lsn(&k);
    const unsigned char *vers, *pay;
    uint32_t nver, len, count;
    if (ops_decode(&v, &type, &hlc, &vers, &nver, &pay, &len) != 0 ||
        wal_payload_check(type, pay, len, &count) != 0 || count != nver) {
      code = sa_fail(err, SA_ECORRUPT, "store '%s': malformed operation %llu", s->path,
                     (unsigned long long)lsn);
      break;
    }
    if (n + count > cap) {
      sa_change *grown = realloc(items, (n + count) * sizeof *items);
      if (!grown) {
        code = sa_fail(err, SA_ENOMEM, "out of memory reading changes");
        break;
      }
      memset(grown + cap, 0, (n + count - cap) * sizeof *grown);
      items = grown;
      cap = n + count;
    }
    wal_op_iter it;
    wal_op op;
    wal_op_iter_init(&it, type, pay, len);
    for (uint32_t i = 0; wal_op_next(&it, &op); i++) {
      sa_change *c = &items[n++];
      c->lsn = lsn;
      c->hlc = hlc;
      c->op = op.op;
      c->batch = type == WAL_BATCH;
      c->version = sa_get_u64(vers + 8 * i);
      c->len = op.op == SA_OP_PUT ? op.vlen : 0;
      c->key = malloc(op.klen + 1);
      if (c->key) {
        memcpy(c->key, op.key, op.klen);
        c->key[op.klen] = 0;
      }
      if (with_values && op.op == SA_OP_PUT && (c->data = malloc(op.vlen + 1))) {
        memcpy(c->data, op.val, op.vlen);
        c->data[op.vlen] = 0;
      }
      if (!c->key || (with_values && op.op == SA_OP_PUT && !c->data))
        code = sa_fail(err, SA_ENOMEM, "out of memory reading changes");
    }
    out->next_since = lsn;
    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
  }
  if (!code && rc && rc != MDB_NOTFOUND) code = store_err(s, rc, "feed", err);
  mdb_cursor_close(cur);
  store_rend(s, txn);
  if (code) {
    changes_free_items(items, n);
    memset(out, 0, sizeof *out);
    return code;
  }
  out->items = items;
  out->count = n;
  return 0;
}

void sa_changes_free(sa_changes *ch) {
  if (!ch) return;
  changes_free_items(ch->items, ch->count);
  memset(ch, 0, sizeof *ch);
}
