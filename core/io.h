/*
 * io.h -- the replaceable table of file-system calls used by the WAL and the
 * store (the seam SQLite's os_unix.c calls its VFS).
 *
 * Every system call the durable path makes goes through sa_io_get(), so a
 * test can install a table that fails with EIO or ENOSPC, writes short, or
 * stops the process between any two steps, and then check what survives.
 *
 * Not for production tuning: the default table calls libc directly.  The
 * table is process-global; install it before sa_client_open and do not swap
 * it while a client is open (tests run each case in its own process).
 */
#ifndef SA_IO_H
#define SA_IO_H

#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

typedef struct sa_io {
  int (*open)(const char *path, int flags, mode_t mode);
  int (*close)(int fd);
  ssize_t (*pread)(int fd, void *buf, size_t n, off_t off);
  ssize_t (*pwrite)(int fd, const void *buf, size_t n, off_t off);
  int (*fdatasync)(int fd); /* WAL data sync: the commit point */
  int (*fsync)(int fd);     /* directories and side files */
  int (*ftruncate)(int fd, off_t len);
  int (*fstat)(int fd, struct stat *st);
  int (*flock)(int fd, int op);
  int (*rename)(const char *from, const char *to);
  int (*unlink)(const char *path);
  /* Called by the store just before it commits an LMDB write transaction
   * (and before mdb_env_sync).  Returns 0, or an errno value that the store
   * then reports as that commit's failure (the transaction is aborted).  The
   * default returns 0.  LMDB does its own I/O, so this is where faults at
   * the store are injected. */
  int (*store_commit)(void);
  /* Called before each sync point of the store (store_sync: fdatasync of
   * the LMDB file and of its sync record), the same way.  May be NULL. */
  int (*store_sync)(void);
} sa_io;

/* The table in use.  Never NULL. */
const sa_io *sa_io_get(void);

/* Installs io (copied by pointer: it must outlive every client), or restores
 * the libc table when io is NULL.  Not thread-safe: call it while no client
 * is open. */
void sa_io_set(const sa_io *io);

/* The libc table, so a test table can delegate the calls it does not fault. */
extern const sa_io sa_io_libc;

/* Writes all len bytes at off through io (short writes are continued, EINTR
 * retried; a write of 0 bytes is ENOSPC).  0, or -1 with errno set. */
int sa_io_pwrite_all(const sa_io *io, int fd, const void *buf, size_t len, uint64_t off);

/* fsyncs the directory holding path (a created or renamed entry becomes
 * durable).  0, or -1 with errno set. */
int sa_io_fsync_dir(const sa_io *io, const char *path);

#endif /* SA_IO_H */
