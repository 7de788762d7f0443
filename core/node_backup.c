/*
 * node_backup.c -- the node's online backup (sa_client_backup): the read
 * barrier that makes the store hold every acknowledged write, then the
 * store's copy of one snapshot wrapped in the backup container, and the
 * backup statistics; the public restore and verify calls and the epoch.
 *
 * Why a write acknowledged before the backup began is in it: a write is
 * answered once it is in the synced WAL, before the committer applies it
 * to the store (store_commit_ms later).  The backup first reads acked_lsn
 * (the last write answered), then waits in node_read_barrier until the
 * store's applied LSN reaches it (the barrier asks the committer to commit
 * at once); the copy then comes from a snapshot at least that new
 * (store_backup_copy), whose exact applied LSN the header records.  Writes
 * answered after the backup began may or may not be in it, never torn: the
 * copy is one LMDB transaction, and a WAL record (a batch included) is
 * applied in one store transaction.
 *
 * What it is not: the copy and the container format (store_backup.c), the
 * HTTP route or the CLI.
 *
 * Invariants: the header's applied_lsn >= acked_lsn; the statistics are
 * updated with atomics only.
 *
 * Threads: sa_client_backup on any thread but the node's own (it waits on
 * the committer); the others anywhere.
 */
#include "node_internal.h"
#include "store_backup.h"

#include "crc32c.h"

#include <string.h>

typedef struct bk_run {
  sa_backup_sink sink;
  void *ctx;
  sa_backup_info *info;
  store_backup_pos pos;
  unsigned char header[STORE_BACKUP_HEADER];
  bool header_sent;
  uint64_t data_bytes;
  uint32_t crc;
} bk_run;

static int bk_data(void *arg, const void *buf, size_t n) {
  bk_run *r = arg;
  if (!r->header_sent) { /* the position is known once data flows */
    r->info->applied_lsn = r->pos.applied_lsn;
    r->info->epoch = r->pos.epoch;
    r->info->store_format = r->pos.format;
    memcpy(r->info->node_id, r->pos.node_id, sizeof r->info->node_id);
    store_backup_header(r->header, r->info);
    r->header_sent = true;
    if (r->sink(r->ctx, r->header, sizeof r->header) != 0) return 1;
  }
  r->crc = sa_crc32c(r->crc, buf, n);
  r->data_bytes += n;
  return r->sink(r->ctx, buf, n);
}

int sa_client_backup(sa_client *c, sa_backup_sink sink, void *ctx, sa_backup_info *info,
                     sa_error *err) {
  if (!c || !sink) return sa_fail(err, SA_EINVAL, "sa_client_backup: client or sink is NULL");
  if (sa_worker_is_self(&c->wr) || sa_worker_is_self(&c->cm))
    return sa_fail(err, SA_EINVAL, "sa_client_backup: called on a node thread");
  sa_backup_info local;
  if (!info) info = &local;
  memset(info, 0, sizeof *info);
  if (err) err->code = 0;
  uint64_t t0 = sa_mono_ns();
  __atomic_add_fetch(&c->bk.running, 1, __ATOMIC_RELAXED);
  info->version = STORE_BACKUP_VERSION;
  info->created_ms = sa_now_ms();
  info->acked_lsn = __atomic_load_n(&c->acked_lsn, __ATOMIC_ACQUIRE);
  bk_run r = {.sink = sink, .ctx = ctx, .info = info};
  int rc = node_read_barrier(c, err); /* the store holds every write answered so far */
  if (rc == 0) rc = store_backup_copy(c->store, bk_data, &r, &r.pos, err);
  if (rc == 0 && !r.header_sent)
    rc = sa_fail(err, SA_EINTERNAL, "backup: the store copy produced no data");
  if (rc == 0 && r.pos.applied_lsn < info->acked_lsn)
    rc = sa_fail(err, SA_EINTERNAL, "backup: copied LSN %llu is behind acknowledged LSN %llu",
                 (unsigned long long)r.pos.applied_lsn, (unsigned long long)info->acked_lsn);
  if (rc == 0) {
    unsigned char t[STORE_BACKUP_TRAILER];
    store_backup_trailer(t, r.header, r.data_bytes, r.crc);
    if (sink(ctx, t, sizeof t) != 0)
      rc = err && err->code ? err->code : sa_fail(err, SA_EIO, "backup stopped");
  }
  info->data_bytes = r.data_bytes;
  info->data_crc = r.crc;
  info->file_bytes = r.header_sent ? STORE_BACKUP_HEADER + r.data_bytes + STORE_BACKUP_TRAILER : 0;
  __atomic_sub_fetch(&c->bk.running, 1, __ATOMIC_RELAXED);
  if (rc) {
    __atomic_add_fetch(&c->bk.failed, 1, __ATOMIC_RELAXED);
    return rc;
  }
  __atomic_store_n(&c->bk.last_ms, (sa_mono_ns() - t0) / 1000000u, __ATOMIC_RELAXED);
  __atomic_store_n(&c->bk.last_bytes, info->file_bytes, __ATOMIC_RELAXED);
  __atomic_store_n(&c->bk.last_lsn, info->applied_lsn, __ATOMIC_RELAXED);
  __atomic_add_fetch(&c->bk.bytes, info->file_bytes, __ATOMIC_RELAXED);
  __atomic_add_fetch(&c->bk.total, 1, __ATOMIC_RELAXED);
  return 0;
}

void sa_client_backup_stats(sa_client *c, sa_backup_stats *out) {
  memset(out, 0, sizeof *out);
  if (!c) return;
  out->total = __atomic_load_n(&c->bk.total, __ATOMIC_RELAXED);
  out->failed = __atomic_load_n(&c->bk.failed, __ATOMIC_RELAXED);
  out->running = __atomic_load_n(&c->bk.running, __ATOMIC_RELAXED);
  out->bytes = __atomic_load_n(&c->bk.bytes, __ATOMIC_RELAXED);
  out->last_ms = __atomic_load_n(&c->bk.last_ms, __ATOMIC_RELAXED);
  out->last_bytes = __atomic_load_n(&c->bk.last_bytes, __ATOMIC_RELAXED);
  out->last_lsn = __atomic_load_n(&c->bk.last_lsn, __ATOMIC_RELAXED);
}

uint64_t sa_client_epoch(sa_client *c) {
  return c ? c->epoch : 0;
}

int sa_backup_verify(const char *path, sa_backup_info *info, sa_error *err) {
  if (!path) return sa_fail(err, SA_EINVAL, "sa_backup_verify: path is NULL");
  return store_backup_verify(path, info, err);
}

int sa_backup_restore(const char *path, const char *store_path, const char *node_id,
                      sa_backup_info *info, uint64_t *epoch, sa_error *err) {
  if (!path || !store_path)
    return sa_fail(err, SA_EINVAL, "sa_backup_restore: path or store_path is NULL");
  int rc;
  if (node_id && (rc = sa_node_id_check(node_id, err)) != 0) return rc;
  return store_backup_restore(path, store_path, node_id, info, epoch, err);
}
