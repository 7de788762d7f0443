/*
 * store_backup.c -- the store's side of an online backup and of a restore:
 * the copy of one snapshot, the backup container, its check, the restore
 * into a new store file, and the store's epoch (store_backup.h).
 *
 * What it is not: the read barrier that makes the store hold every
 * acknowledged write before the copy (node_backup.c), nor the HTTP route
 * or the CLI that move the bytes.
 *
 * Invariants: the applied LSN written into a backup's header is the one of
 * the very snapshot copied (see COPY); a backup file is accepted only when
 * its header, length, data checksum and trailer all agree (see FORMAT); a
 * restore never touches an existing store file: it writes a new one next
 * to it and renames it into place.
 *
 * Threads: store_backup_copy on any thread but the write transaction's
 * owner (it starts and joins one helper thread of its own, which runs
 * LMDB's copy); store_epoch_ensure on the opening thread; the file
 * functions anywhere.
 *
 * COPY
 *
 * LMDB's compacting copy (mdb_env_copyfd2 with MDB_CP_COMPACT) writes the
 * whole environment as it is in one read transaction: a new, dense LMDB
 * file (freed pages left out) that is consistent at that transaction.  It
 * runs in a helper thread that writes into a pipe; this thread reads the
 * pipe and hands the bytes on.  The copy's read transaction is begun
 * inside LMDB, so to know the applied LSN of exactly that snapshot the
 * store's commit_mu (which every commit holds around mdb_txn_commit) is
 * held from the moment the LSN is read until the first bytes come out of
 * the pipe: LMDB begins its read transaction before it writes anything, so
 * no commit can land in between.  Commits wait for that short while (LMDB
 * fills its first 1 MiB buffer); writes are still answered meanwhile (the
 * WAL, not the store, is their commit point).  After that the copy runs
 * beside commits: its read transaction pins its pages, so the file may
 * grow while a backup runs (LMDB cannot reuse pages a reader can reach).
 *
 * How the WAL and the sync-point file relate to the copy: neither is in
 * the backup, and neither is needed.  The copy is a whole LMDB file at one
 * committed transaction, whose meta holds the applied LSN: every write up
 * to it is in the copy, with its outbox entry and change-feed record.  The
 * WAL's tail beyond that LSN holds writes acknowledged after the backup
 * began (the node's read barrier made the store hold every one before it).
 * The sync-point file ("<store>-sync") describes the live file's pages on
 * disk, which the copy does not share; a restored store has none, and its
 * first open takes a sync point at once.  A restored node starts a new WAL
 * whose first record follows the copy's applied LSN.
 *
 * FORMAT (version 1; integers little-endian)
 *
 *   header, 160 bytes
 *     0   8  magic "SABACKUP"
 *     8   4  container version (1)
 *     12  4  header length (160)
 *     16  4  store format version of the data
 *     20  4  0
 *     24  8  applied LSN of the copied snapshot
 *     32  8  acknowledged LSN when the backup began (<= applied LSN)
 *     40  8  the source store's epoch
 *     48  8  creation time, unix ms
 *     56  1  node id length N (1..64); 57..121: node id, zero padded
 *     ... zeros up to 156
 *     156 4  CRC-32C of bytes [0, 156)
 *   data: the LMDB copy, as many bytes as the trailer says
 *   trailer, 32 bytes
 *     0   8  magic "SABKEND\0"
 *     8   8  data length
 *     16  4  CRC-32C of the data
 *     20  4  CRC-32C of the header (ties the trailer to its header)
 *     24  4  0
 *     28  4  CRC-32C of bytes [0, 28)
 *
 * The data's length is not known until the copy ends, so a stream can be
 * written front to back with no seek: the reader finds the trailer at the
 * end of the file.  A file cut anywhere loses its trailer (or the trailer's
 * data length disagrees with the file's), and is refused as truncated.
 */
#define _GNU_SOURCE
#include "store_backup.h"

#include "crc32c.h"
#include "store_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BK_MAGIC "SABACKUP"
#define BK_END "SABKEND\0"
#define BK_HCRC 156
#define BK_CHUNK (256u * 1024u)

/* ---- epoch ----------------------------------------------------------------- */

uint64_t store_epoch_draw(void) {
  uint64_t v = 0;
  if (getrandom(&v, sizeof v, 0) != (ssize_t)sizeof v) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    v = ((uint64_t)ts.tv_sec * 1000000007u) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
    v ^= v >> 29;
    v *= 0xbf58476d1ce4e5b9ull;
    v ^= v >> 32;
  }
  return v ? v : 1;
}

int store_epoch_ensure(sa_store *s, uint64_t *epoch, sa_error *err) {
  MDB_txn *txn;
  int rc = store_rbegin(s, &txn, err);
  if (rc) return rc;
  uint64_t e = 0;
  rc = store_meta_get_u64(txn, s->meta, "epoch", &e);
  store_rend(s, txn);
  if (rc == 0 && e) {
    *epoch = e;
    return 0;
  }
  if (rc && rc != MDB_NOTFOUND) return store_err(s, rc, "read epoch", err);
  store_wtxn *t;
  if ((rc = store_wbegin(s, &t, err)) != 0) return rc;
  e = store_epoch_draw();
  if ((rc = store_meta_put_u64(t->txn, s->meta, "epoch", e)) != 0) {
    store_wabort(t);
    rc = store_err(s, rc, "write epoch", err);
  } else {
    rc = store_wcommit(t, store_applied_lsn(s), store_meta_hlc(s), err);
  }
  if (rc == SA_ENOSPC) { /* a full store still opens: no epoch until there is room */
    *epoch = 0;
    return 0;
  }
  if (rc) return rc;
  *epoch = e;
  return 0;
}

/* ---- copy ------------------------------------------------------------------ */

typedef struct copy_job {
  MDB_env *env;
  int fd;
  int rc;
} copy_job;

static void *copy_main(void *arg) {
  copy_job *j = arg;
  pthread_setname_np(pthread_self(), "sa-backup-copy"); /* LMDB's own copy thread inherits it */
  sigset_t set; /* a reader that went away: EPIPE here, not a signal */
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  j->rc = mdb_env_copyfd2(j->env, j->fd, MDB_CP_COMPACT);
  close(j->fd);
  j->fd = -1;
  return NULL;
}

/* Reads the position of the latest snapshot (commit_mu held by the caller). */
static int copy_pos(sa_store *s, store_backup_pos *pos, sa_error *err) {
  MDB_txn *txn;
  int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
  if (rc) return store_err(s, rc, "begin backup read transaction", err);
  memset(pos, 0, sizeof *pos);
  rc = store_meta_get_u64(txn, s->meta, "applied_lsn", &pos->applied_lsn);
  if (rc == MDB_NOTFOUND) rc = 0;
  if (rc == 0) {
    rc = store_meta_get_u64(txn, s->meta, "epoch", &pos->epoch);
    if (rc == MDB_NOTFOUND) rc = 0;
  }
  MDB_val k = {6, "format"}, v;
  if (rc == 0 && (rc = mdb_get(txn, s->meta, &k, &v)) == 0)
    pos->format = v.mv_size == 4 ? sa_get_u32(v.mv_data) : 0;
  MDB_val nk = {7, "node_id"}, nv;
  if (rc == 0 && (rc = mdb_get(txn, s->meta, &nk, &nv)) == 0) {
    size_t n = nv.mv_size > SA_NODE_ID_MAX ? SA_NODE_ID_MAX : nv.mv_size;
    memcpy(pos->node_id, nv.mv_data, n);
    pos->node_id[n] = 0;
  }
  mdb_txn_abort(txn);
  return rc ? store_err(s, rc, "read backup position", err) : 0;
}

static ssize_t read_some(int fd, void *buf, size_t n) {
  for (;;) {
    ssize_t r = read(fd, buf, n);
    if (r >= 0 || errno != EINTR) return r;
  }
}

int store_backup_copy(sa_store *s, int (*data)(void *ctx, const void *buf, size_t n), void *ctx,
                      store_backup_pos *pos, sa_error *err) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0)
    return sa_fail(err, sa_errno_code(errno), "backup of store '%s': pipe: %s", s->path,
                   strerror(errno));
  (void)fcntl(p[1], F_SETPIPE_SZ, 1 << 20); /* fewer wake-ups; best effort */
  unsigned char *buf = malloc(BK_CHUNK);
  if (!buf) {
    close(p[0]);
    close(p[1]);
    return sa_fail(err, SA_ENOMEM, "out of memory for a backup");
  }
  copy_job job = {.env = s->env, .fd = p[1], .rc = 0};
  pthread_t th;
  /* COPY: no commit between the position's read and the copy's snapshot. */
  pthread_mutex_lock(&s->commit_mu);
  int rc = copy_pos(s, pos, err);
  if (rc == 0 && pthread_create(&th, NULL, copy_main, &job) != 0)
    rc = sa_fail(err, SA_ENOMEM, "backup of store '%s': cannot start the copy thread", s->path);
  if (rc) {
    pthread_mutex_unlock(&s->commit_mu);
    close(p[0]);
    close(p[1]);
    free(buf);
    return rc;
  }
  ssize_t n = read_some(p[0], buf, BK_CHUNK); /* the copy's transaction has begun */
  pthread_mutex_unlock(&s->commit_mu);
  bool stopped = false;
  int read_errno = 0;
  while (n > 0) {
    if (data(ctx, buf, (size_t)n) != 0) {
      stopped = true;
      break;
    }
    n = read_some(p[0], buf, BK_CHUNK);
  }
  if (n < 0) read_errno = errno;
  close(p[0]); /* a stopped copy gets EPIPE and ends */
  pthread_join(th, NULL);
  free(buf);
  if (stopped) return err && err->code ? err->code : sa_fail(err, SA_EIO, "backup stopped");
  if (read_errno)
    return sa_fail(err, sa_errno_code(read_errno), "backup of store '%s': read: %s", s->path,
                   strerror(read_errno));
  if (job.rc) return store_err(s, job.rc, "backup copy", err);
  return 0;
}

/* ---- container ------------------------------------------------------------- */

void store_backup_header(unsigned char *h, const sa_backup_info *info) {
  memset(h, 0, STORE_BACKUP_HEADER);
  memcpy(h, BK_MAGIC, 8);
  sa_put_u32(h + 8, STORE_BACKUP_VERSION);
  sa_put_u32(h + 12, STORE_BACKUP_HEADER);
  sa_put_u32(h + 16, info->store_format);
  sa_put_u64(h + 24, info->applied_lsn);
  sa_put_u64(h + 32, info->acked_lsn);
  sa_put_u64(h + 40, info->epoch);
  sa_put_u64(h + 48, info->created_ms);
  size_t n = strnlen(info->node_id, SA_NODE_ID_MAX);
  h[56] = (unsigned char)n;
  memcpy(h + 57, info->node_id, n);
  sa_put_u32(h + BK_HCRC, sa_crc32c(0, h, BK_HCRC));
}

void store_backup_trailer(unsigned char *t, const unsigned char *header, uint64_t data_bytes,
                          uint32_t data_crc) {
  memset(t, 0, STORE_BACKUP_TRAILER);
  memcpy(t, BK_END, 8);
  sa_put_u64(t + 8, data_bytes);
  sa_put_u32(t + 16, data_crc);
  sa_put_u32(t + 20, sa_crc32c(0, header, STORE_BACKUP_HEADER));
  sa_put_u32(t + 28, sa_crc32c(0, t, 28));
}

static int pread_all(int fd, void *buf, size_t n, off_t off) {
  unsigned char *p = buf;
  while (n) {
    ssize_t r = pread(fd, p, n, off);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return r < 0 ? errno : EIO;
    p += r;
    n -= (size_t)r;
    off += r;
  }
  return 0;
}

static int write_all(int fd, const void *buf, size_t n) {
  const unsigned char *p = buf;
  while (n) {
    ssize_t r = write(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return errno;
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

/* Opens and checks a backup file: header, trailer, sizes, and the data's
 * CRC-32C; copies the data to out_fd when it is >= 0.  Returns 0 with *fd
 * closed, or an error naming the cause. */
static int bk_check(const char *path, int out_fd, sa_backup_info *info, sa_error *err) {
  sa_backup_info tmp;
  if (!info) info = &tmp;
  memset(info, 0, sizeof *info);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return sa_fail(err, errno == ENOENT ? SA_ENOENT : sa_errno_code(errno),
                   "cannot open backup '%s': %s", path, strerror(errno));
  struct stat st;
  unsigned char h[STORE_BACKUP_HEADER], t[STORE_BACKUP_TRAILER];
  int rc = 0, e;
  if (fstat(fd, &st) != 0) {
    rc = sa_fail(err, sa_errno_code(errno), "backup '%s': stat: %s", path, strerror(errno));
    goto out;
  }
  uint64_t size = (uint64_t)st.st_size;
  info->file_bytes = size;
  if (size < 8 || (e = pread_all(fd, h, size < sizeof h ? (size_t)size : sizeof h, 0)) != 0) {
    rc = sa_fail(err, SA_ECORRUPT, "'%s' is not a softadastra backup: %llu bytes", path,
                 (unsigned long long)size);
    goto out;
  }
  if (memcmp(h, BK_MAGIC, 8) != 0) {
    rc = sa_fail(err, SA_ECORRUPT,
                 "'%s' is not a softadastra backup (no SABACKUP header; a raw store file or "
                 "another tool's snapshot?)",
                 path);
    goto out;
  }
  if (size < STORE_BACKUP_HEADER) {
    rc = sa_fail(err, SA_ECORRUPT, "backup '%s' is truncated: %llu bytes, not even its header",
                 path, (unsigned long long)size);
    goto out;
  }
  if (sa_get_u32(h + BK_HCRC) != sa_crc32c(0, h, BK_HCRC)) {
    rc = sa_fail(err, SA_ECORRUPT, "backup '%s' has a damaged header (checksum mismatch)", path);
    goto out;
  }
  info->version = sa_get_u32(h + 8);
  if (info->version != STORE_BACKUP_VERSION || sa_get_u32(h + 12) != STORE_BACKUP_HEADER) {
    rc = sa_fail(err, SA_EFORMAT,
                 "backup '%s' has container version %u; this build reads version %d", path,
                 info->version, STORE_BACKUP_VERSION);
    goto out;
  }
  info->store_format = sa_get_u32(h + 16);
  info->applied_lsn = sa_get_u64(h + 24);
  info->acked_lsn = sa_get_u64(h + 32);
  info->epoch = sa_get_u64(h + 40);
  info->created_ms = sa_get_u64(h + 48);
  size_t idn = h[56];
  if (idn == 0 || idn > SA_NODE_ID_MAX) {
    rc = sa_fail(err, SA_ECORRUPT, "backup '%s': its header names no valid node id", path);
    goto out;
  }
  memcpy(info->node_id, h + 57, idn);
  info->node_id[idn] = 0;
  if (info->store_format == 0 || info->store_format > SA_STORE_FORMAT) {
    rc = sa_fail(err, SA_EFORMAT,
                 "backup '%s' holds a store of format version %u; this build reads up to %d", path,
                 info->store_format, SA_STORE_FORMAT);
    goto out;
  }
  if (size < STORE_BACKUP_HEADER + STORE_BACKUP_TRAILER ||
      (e = pread_all(fd, t, sizeof t, (off_t)(size - sizeof t))) != 0 ||
      memcmp(t, BK_END, 8) != 0 || sa_get_u32(t + 28) != sa_crc32c(0, t, 28)) {
    rc = sa_fail(err, SA_ECORRUPT,
                 "backup '%s' is truncated or its end is damaged: %llu bytes and no valid trailer "
                 "(an interrupted transfer?)",
                 path, (unsigned long long)size);
    goto out;
  }
  info->data_bytes = sa_get_u64(t + 8);
  info->data_crc = sa_get_u32(t + 16);
  if (sa_get_u32(t + 20) != sa_crc32c(0, h, STORE_BACKUP_HEADER)) {
    rc = sa_fail(err, SA_ECORRUPT,
                 "backup '%s': its trailer belongs to another backup (header checksum differs)",
                 path);
    goto out;
  }
  if (info->data_bytes != size - STORE_BACKUP_HEADER - STORE_BACKUP_TRAILER) {
    rc = sa_fail(err, SA_ECORRUPT,
                 "backup '%s' is truncated or padded: the trailer says %llu data bytes, the file "
                 "holds %llu",
                 path, (unsigned long long)info->data_bytes,
                 (unsigned long long)(size - STORE_BACKUP_HEADER - STORE_BACKUP_TRAILER));
    goto out;
  }
  unsigned char *buf = malloc(BK_CHUNK);
  if (!buf) {
    rc = sa_fail(err, SA_ENOMEM, "out of memory checking backup '%s'", path);
    goto out;
  }
  uint32_t crc = 0;
  for (uint64_t off = 0; off < info->data_bytes;) {
    size_t n = info->data_bytes - off > BK_CHUNK ? BK_CHUNK : (size_t)(info->data_bytes - off);
    if ((e = pread_all(fd, buf, n, (off_t)(STORE_BACKUP_HEADER + off))) != 0) {
      rc = sa_fail(err, sa_errno_code(e), "backup '%s': read at %llu: %s", path,
                   (unsigned long long)(STORE_BACKUP_HEADER + off), strerror(e));
      break;
    }
    crc = sa_crc32c(crc, buf, n);
    if (out_fd >= 0 && (e = write_all(out_fd, buf, n)) != 0) {
      rc = sa_fail(err, sa_errno_code(e), "restore of '%s': write: %s", path, strerror(e));
      break;
    }
    off += n;
  }
  free(buf);
  if (rc == 0 && crc != info->data_crc)
    rc = sa_fail(err, SA_ECORRUPT,
                 "backup '%s' is damaged: its data's CRC-32C is %08x, the trailer says %08x", path,
                 crc, info->data_crc);
out:
  close(fd);
  return rc;
}

int store_backup_verify(const char *path, sa_backup_info *info, sa_error *err) {
  return bk_check(path, -1, info, err);
}

/* Gives the restored LMDB file at path its node id and a new epoch, after
 * checking that it is a store (its meta names a node and a format). */
static int bk_relabel(const char *path, const char *node_id, uint64_t epoch, sa_error *err) {
  MDB_env *env = NULL;
  MDB_txn *txn = NULL;
  MDB_dbi meta;
  const char *what = "open";
  int rc = mdb_env_create(&env);
  if (rc == 0) mdb_env_set_maxdbs(env, 16);
  if (rc == 0) rc = mdb_env_open(env, path, MDB_NOSUBDIR | MDB_NOLOCK, 0644);
  if (rc == 0 && (what = "begin", rc = mdb_txn_begin(env, NULL, 0, &txn)) == 0 &&
      (what = "meta", rc = mdb_dbi_open(txn, "meta", 0, &meta)) == 0) {
    MDB_val k = {7, "node_id"}, v;
    what = "node_id";
    rc = mdb_get(txn, meta, &k, &v);
    if (rc == 0 && node_id) {
      v.mv_size = strlen(node_id);
      v.mv_data = (void *)node_id;
      rc = mdb_put(txn, meta, &k, &v, 0);
    }
    unsigned char b[8];
    sa_put_u64(b, epoch);
    MDB_val ek = {5, "epoch"}, ev = {8, b};
    if (rc == 0) what = "epoch", rc = mdb_put(txn, meta, &ek, &ev, 0);
    if (rc == 0)
      what = "commit", rc = mdb_txn_commit(txn);
    else
      mdb_txn_abort(txn);
    txn = NULL;
  }
  if (rc == 0) what = "sync", rc = mdb_env_sync(env, 1);
  if (env) mdb_env_close(env);
  if (rc == MDB_NOTFOUND || rc == MDB_INVALID || rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND)
    return sa_fail(err, SA_ECORRUPT,
                   "the backup's data is not a softadastra store (%s: %s) although its checksum "
                   "holds: a backup of something else?",
                   what, mdb_strerror(rc));
  if (rc)
    return sa_fail(err, rc > 0 ? sa_errno_code(rc) : SA_EINTERNAL, "restored store '%s': %s: %s",
                   path, what, mdb_strerror(rc));
  return 0;
}

static void sync_dir_of(const char *path) {
  char *d = strdup(path);
  if (!d) return;
  char *slash = strrchr(d, '/');
  if (slash == d)
    d[1] = 0;
  else if (slash)
    *slash = 0;
  else
    strcpy(d, ".");
  int fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
  free(d);
}

int store_backup_restore(const char *path, const char *store_path, const char *node_id,
                         sa_backup_info *info, uint64_t *epoch, sa_error *err) {
  struct stat st;
  if (stat(store_path, &st) == 0)
    return sa_fail(err, SA_EINVAL, "restore: store '%s' exists; remove it first", store_path);
  size_t n = strlen(store_path);
  char *tmp = malloc(n + 16), *side = malloc(n + 16);
  if (!tmp || !side) {
    free(tmp);
    free(side);
    return sa_fail(err, SA_ENOMEM, "out of memory");
  }
  snprintf(tmp, n + 16, "%s.restoring", store_path);
  unlink(tmp); /* a leftover of an interrupted restore */
  int rc = 0;
  int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    rc = sa_fail(err, errno == ENOENT ? SA_ENOENT : sa_errno_code(errno),
                 "restore: cannot create '%s': %s", tmp, strerror(errno));
    goto done;
  }
  rc = bk_check(path, fd, info, err);
  if (rc == 0 && fsync(fd) != 0)
    rc = sa_fail(err, sa_errno_code(errno), "restore: fsync '%s': %s", tmp, strerror(errno));
  close(fd);
  uint64_t e = store_epoch_draw();
  if (rc == 0) rc = bk_relabel(tmp, node_id, e, err);
  if (rc == 0 && rename(tmp, store_path) != 0)
    rc = sa_fail(err, sa_errno_code(errno), "restore: rename '%s' to '%s': %s", tmp, store_path,
                 strerror(errno));
  if (rc) {
    unlink(tmp);
    goto done;
  }
  /* The old store's side files describe another file: gone. */
  snprintf(side, n + 16, "%s-sync", store_path);
  unlink(side);
  snprintf(side, n + 16, "%s-lock", store_path);
  unlink(side);
  sync_dir_of(store_path);
  if (epoch) *epoch = e;
done:
  free(tmp);
  free(side);
  return rc;
}
