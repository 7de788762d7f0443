/*
 * store_backup.h -- the store's side of backup and restore: the copy of
 * one consistent snapshot (LMDB's compacting copy), the backup container
 * (header, data, trailer: described in store_backup.c), its check, its
 * restore into a new store file, and the store's epoch.
 *
 * What it is not: the node's part (the read barrier before the copy, the
 * statistics, the public calls: node_backup.c).
 *
 * Invariants: the copy is one LMDB snapshot; its applied LSN is read from
 * that same snapshot (no commit can land between the read and the copy's
 * transaction: store_backup.c says how).
 *
 * Threads: store_backup_copy on any thread but the write transaction's
 * owner; store_epoch_ensure on the opening thread; the file functions on
 * any thread (they touch no open store).
 */
#ifndef SA_STORE_BACKUP_H
#define SA_STORE_BACKUP_H

#include "softadastra.h"
#include "store.h"

#include <stddef.h>
#include <stdint.h>

#define STORE_BACKUP_VERSION 1
#define STORE_BACKUP_HEADER 160
#define STORE_BACKUP_TRAILER 32

/* What the snapshot being copied holds (filled before the first byte). */
typedef struct store_backup_pos {
  uint64_t applied_lsn;
  uint64_t epoch;
  uint32_t format;
  char node_id[SA_NODE_ID_MAX + 1];
} store_backup_pos;

/* Copies the latest snapshot with mdb_env_copyfd2(MDB_CP_COMPACT) through a
 * pipe into data(ctx, buf, n) in chunks; *pos is filled before the first
 * call.  A non-zero return of data stops the copy (SA_EIO unless err was
 * set).  Commits wait only until the copy's read transaction has begun. */
int store_backup_copy(sa_store *s, int (*data)(void *ctx, const void *buf, size_t n), void *ctx,
                      store_backup_pos *pos, sa_error *err);

/* The container's header and trailer (STORE_BACKUP_HEADER / _TRAILER bytes). */
void store_backup_header(unsigned char *h, const sa_backup_info *info);
void store_backup_trailer(unsigned char *t, const unsigned char *header, uint64_t data_bytes,
                          uint32_t data_crc);

/* Reads the store's epoch from meta; when it has none (a new store, or one
 * made before epochs), draws one and commits it.  A store too full for
 * that commit still opens, with epoch 0, until a later open finds room.
 * Opening thread, before the node's threads start. */
int store_epoch_ensure(sa_store *s, uint64_t *epoch, sa_error *err);

/* A random non-zero 64-bit value (getrandom; the clock mixed in if it fails). */
uint64_t store_epoch_draw(void);

/* See sa_backup_verify and sa_backup_restore. */
int store_backup_verify(const char *path, sa_backup_info *info, sa_error *err);
int store_backup_restore(const char *path, const char *store_path, const char *node_id,
                         sa_backup_info *info, uint64_t *epoch, sa_error *err);

#endif
