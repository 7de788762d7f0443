/*
 * io.c -- the default (libc) system-call table and the switch between it and
 * a test table.  See io.h.
 */
#include "io.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

static int io_libc_open(const char *path, int flags, mode_t mode) {
  return open(path, flags | O_CLOEXEC, mode);
}
static int io_libc_store_commit(void) {
  return 0;
}

const sa_io sa_io_libc = {
    .open = io_libc_open,
    .close = close,
    .pread = pread,
    .pwrite = pwrite,
    .fdatasync = fdatasync,
    .fsync = fsync,
    .ftruncate = ftruncate,
    .fstat = fstat,
    .flock = flock,
    .rename = rename,
    .unlink = unlink,
    .store_commit = io_libc_store_commit,
    .store_sync = io_libc_store_commit,
};

static const sa_io *io_current = &sa_io_libc;

const sa_io *sa_io_get(void) {
  return io_current;
}

void sa_io_set(const sa_io *io) {
  io_current = io ? io : &sa_io_libc;
}

int sa_io_pwrite_all(const sa_io *io, int fd, const void *buf, size_t len, uint64_t off) {
  const unsigned char *p = buf;
  while (len) {
    ssize_t n = io->pwrite(fd, p, len, (off_t)off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (n == 0) {
      errno = ENOSPC;
      return -1;
    }
    p += n;
    len -= (size_t)n;
    off += (uint64_t)n;
  }
  return 0;
}

int sa_io_fsync_dir(const sa_io *io, const char *path) {
  char *copy = strdup(path);
  if (!copy) return -1;
  int fd = io->open(dirname(copy), O_RDONLY | O_DIRECTORY, 0);
  free(copy);
  if (fd < 0) return -1;
  int rc = io->fsync(fd);
  int e = errno;
  io->close(fd);
  errno = e;
  return rc;
}
