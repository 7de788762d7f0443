/*
 * io.c -- the default (libc) system-call table and the switch between it and
 * a test table.  See io.h.
 */
#include "io.h"

#include <fcntl.h>
#include <stdio.h>
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
