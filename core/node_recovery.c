/*
 * node_recovery.c -- recovery at open: the WAL checked against the store,
 * a torn tail cut, the records the store lacks replayed into it (in LMDB
 * transactions of NODE_REPLAY_TXN_RECORDS), the clock moved past every
 * record, and the outbox's in-flight work put back in the queue.  Also the
 * one function that applies a WAL record to the store (node_apply_record),
 * shared by the replay and the committer so both give the same versions.
 *
 * What it is not: the WAL scan or its format (wal.c), nor the decision to
 * refuse a corrupt WAL (sa_client_open in node.c).
 *
 * Invariants: a record is applied at most once (LSN above the store's
 * applied LSN); the store's applied LSN moves only at a commit of the
 * records before it; after recovery c->last_lsn is the highest LSN the WAL
 * or the store knows, and the next append continues the sequence.
 *
 * Threads: the opening thread, before any node thread starts;
 * node_apply_record also on the committer.
 */
#include "node_internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
  sa_client *c;
  uint64_t applied;
  store_wtxn *t;
  uint32_t in_txn;
  uint64_t last; /* last LSN applied in the current txn */
  uint64_t max_hlc;
  uint64_t replayed;
  uint64_t entries; /* outbox entries the replay wrote */
  int rc;
  sa_error *err;
} replay_ctx;

static int replay_commit(replay_ctx *r) {
  if (!r->t) return 0;
  int rc = store_wcommit(r->t, r->last, r->max_hlc, r->err);
  r->t = NULL;
  r->in_txn = 0;
  return rc;
}

/* Applies one record's ops and its outbox entry inside an open write txn.
 * *version: the version the (last) put produced.  A local record's
 * operations carry the record's pair (hlc, this node); a sync record's
 * applied items carry their own, and its cursor is stored for its peer in
 * the same transaction.  A record with no applied operation (a sync record
 * whose items all lost) leaves no outbox entry and no change. */
int node_apply_record(store_wtxn *t, const wal_rec *rec, uint64_t *version, uint64_t *entries,
                      sa_error *err) {
  wal_op_iter it;
  wal_op op;
  wal_op_iter_init(&it, rec->type, rec->payload, rec->len);
  uint64_t small[16], *vers = small;
  if (it.left > 16 && !(vers = malloc(it.left * sizeof *vers)))
    return sa_fail(err, SA_ENOMEM, "out of memory applying record %llu",
                   (unsigned long long)rec->lsn);
  uint64_t at_ms = sa_hlc_ms(rec->hlc); /* a tombstone's age starts here */
  uint32_t n = 0;
  int rc = 0;
  char origin[SA_NODE_ID_MAX + 1];
  while (rc == 0 && wal_op_next(&it, &op)) {
    vers[n] = 0;
    uint64_t hlc = rec->hlc;
    const char *o = NULL; /* this node */
    if (op.origin) {
      memcpy(origin, op.origin, op.olen);
      origin[op.olen] = 0;
      o = origin;
      hlc = op.hlc;
    }
    if (op.op == SA_OP_PUT) {
      rc = store_wput(t, op.key, op.klen, op.val, op.vlen, op.ctype, op.ctlen, rec->lsn, hlc, o,
                      op.origin_lsn, &vers[n], err);
      *version = vers[n];
    } else {
      bool existed;
      /* a remote delete of a key we never held still leaves its tombstone */
      rc = store_wdel(t, op.key, op.klen, rec->lsn, hlc, o, op.origin_lsn, at_ms,
                      rec->type == WAL_SYNC, &existed, err);
    }
    n++;
  }
  if (rc == 0 && rec->type == WAL_SYNC) {
    const char *peer;
    uint32_t plen;
    uint64_t cursor;
    wal_sync_header(rec->payload, &peer, &plen, &cursor);
    memcpy(origin, peer, plen);
    origin[plen] = 0;
    rc = store_wpeer_put(t, 'c', origin, cursor, err);
  }
  if (rc == 0 && n > 0) {
    rc = store_woutbox(t, rec->lsn, rec->hlc, rec->type, rec->payload, rec->len, vers, n, err);
    ++*entries;
  }
  if (vers != small) free(vers);
  return rc;
}

static int replay_visit(const wal_rec *rec, void *ctx) {
  replay_ctx *r = ctx;
  if (rec->hlc > r->max_hlc) r->max_hlc = rec->hlc;
  if (rec->lsn <= r->applied) return 0;
  if (!r->t && (r->rc = store_wbegin(r->c->store, &r->t, r->err)) != 0) return 1;
  uint64_t version;
  if ((r->rc = node_apply_record(r->t, rec, &version, &r->entries, r->err)) != 0) {
    store_wabort(r->t);
    r->t = NULL;
    return 1;
  }
  r->last = rec->lsn;
  r->replayed++;
  if (++r->in_txn >= NODE_REPLAY_TXN_RECORDS && (r->rc = replay_commit(r)) != 0) return 1;
  return 0;
}

/* The WAL's preallocation step (wal_set_prealloc): 1 MiB, or wal_max_bytes
 * / 8 when that is smaller, in whole 4 KiB pages.  Checkpoints keep the
 * logical size below wal_max_bytes / 2 plus one group, and the file is at
 * most the logical size rounded up to a chunk: with groups smaller than
 * 3/8 of wal_max_bytes the file stays below wal_max_bytes. */
uint64_t node_wal_chunk(uint64_t wal_max_bytes) {
  uint64_t chunk = wal_max_bytes / 8;
  if (chunk > NODE_WAL_CHUNK_MAX) chunk = NODE_WAL_CHUNK_MAX;
  return chunk / 4096 * 4096;
}

/* Recovery: classify the WAL, cut a torn tail, replay what the store lacks. */
int node_recover(sa_client *c, const sa_wal_report *rep, sa_error *err) {
  uint64_t applied = store_applied_lsn(c->store);
  uint64_t start = wal_start_lsn(c->wal);
  c->recovery.records_scanned = rep->records;

  if (rep->records && rep->last_lsn > applied && rep->first_lsn > applied + 1)
    return sa_fail(err, SA_ECORRUPT,
                   "WAL '%s' starts at LSN %llu but store '%s' has applied only through LSN "
                   "%llu: the records in between are missing",
                   c->wal_path, (unsigned long long)rep->first_lsn, c->store_path,
                   (unsigned long long)applied);
  if ((!rep->records || rep->last_lsn <= applied) && start > applied)
    return sa_fail(err, SA_ECORRUPT,
                   "store '%s' has applied only through LSN %llu but WAL '%s' was "
                   "checkpointed through LSN %llu: the store lost data it had synced (was it "
                   "replaced by an older copy?)",
                   c->store_path, (unsigned long long)applied, c->wal_path,
                   (unsigned long long)start);

  if (rep->state == SA_WAL_TORN) {
    int rc = wal_cut_tail(c->wal, rep, c->recovery.torn_path, sizeof c->recovery.torn_path, err);
    if (rc) return rc;
    c->recovery.torn_bytes = rep->rest_bytes;
  }

  replay_ctx r = {.c = c, .applied = applied, .max_hlc = store_meta_hlc(c->store), .err = err};
  /* The open's wal_scan checked every record; a torn tail was cut after them. */
  int rc = wal_replay(c->wal, rep->data_bytes, replay_visit, &r, err);
  if (rc == 0 && r.rc == 0) rc = replay_commit(&r);
  if (rc || r.rc) {
    if (r.t) store_wabort(r.t);
    return r.rc ? r.rc : rc;
  }
  c->recovery.records_replayed = r.replayed;
  c->replay_entries = r.entries;
  sa_hlc_observe(&c->hlc, r.max_hlc);

  uint64_t last = store_applied_lsn(c->store);
  if (rep->last_lsn > last) last = rep->last_lsn;
  if (start > last) last = start;
  c->last_lsn = last;

  if (r.replayed && (rc = store_sync(c->store, err)) != 0) return rc;
  /* A WAL whose records all precede the store (e.g. restored from an older
   * copy) would break the LSN sequence with the next append: checkpoint it. */
  if (rep->records && rep->last_lsn < store_applied_lsn(c->store)) {
    if ((rc = store_sync(c->store, err)) != 0 ||
        (rc = wal_reset(c->wal, store_applied_lsn(c->store), err)) != 0)
      return rc;
  }
  return 0;
}

/* At open: in-flight work goes back to the queue; per-state counts. */
int node_outbox_open(sa_client *c, sa_error *err) {
  store_wtxn *t;
  int rc = store_wbegin(c->store, &t, err);
  if (rc) return rc;
  /* The replay applied LSNs applied-before + 1 .. applied and wrote
   * replay_entries entries among them (a sync record that applied nothing
   * writes none). */
  uint64_t before = store_applied_lsn(c->store) - c->recovery.records_replayed;
  rc = outbox_recover(t, node_now(c), before, c->replay_entries, c->obx_count, err);
  if (rc) {
    store_wabort(t);
    return rc;
  }
  return store_wcommit(t, store_applied_lsn(c->store), c->hlc.last, err);
}
