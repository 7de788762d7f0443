/*
 * node.c -- a local node: the sa_client_* API of softadastra.h.
 *
 * WRITE PATH (group commit; the store commit follows the answer)
 *
 *   caller thread            writer thread                committer thread
 *   -------------            -------------                ----------------
 *   validate key/value
 *   enqueue, signal  ----->  take every queued request
 *   wait on its condvar      (a group, <= NODE_GROUP_BYTES)
 *   (or return: async)       per request: check its condition
 *                              (CAS, absent key) against the
 *                              state the groups before it leave,
 *                              assign LSN + HLC, encode its record
 *                            one pwrite of all records
 *                            one fdatasync (auto_flush on)
 *                            queue the group for the   ---->  every store_commit_ms (10)
 *   wake (or callback) <---- committer, answer it             (or at once when a read
 *                            take the next group ...          waits): one LMDB txn
 *                                                             applies every queued
 *                                                             group, no fdatasync
 *
 * So a write costs one fdatasync, the WAL's, shared by its group, and one
 * store commit is shared by every group of store_commit_ms.  A write
 * is answered once it is in the synced WAL; a read waits until the store
 * holds every answered write (node_read_barrier), so a read after an answer
 * sees it.  The store itself is made durable in the background at sync
 * points (the syncer thread, every store_sync_interval_ms; see store.c):
 * after a power loss it rolls back to the last one and the WAL replays the
 * rest.  A failed append or sync fails its group before anything is
 * applied.  A failed store commit of answered writes turns the node
 * read-only (they are in the WAL; the next open replays them); near a full
 * map writes are answered after their commit instead, and a failed commit
 * then cuts the group from the WAL and fails it.  A failed fdatasync -- of
 * the WAL or at a store sync point -- turns the node read-only (see wal.c).
 * Requests are served in FIFO order; within a group later requests see the
 * effects of earlier ones.  Details: "writer pipeline" below.
 *
 * With auto_flush off the writer does not sync per group; it syncs the WAL
 * every flush_interval_ms while there is unsynced data, and on
 * sa_client_flush.
 *
 * Checkpoint: after a group, when the WAL's records (wal_size, its logical
 * size) pass half of wal_max_bytes, the writer takes a store sync point and
 * resets the WAL (wal.c).  The file itself is preallocated by chunks of
 * zeros (node_wal_chunk) and stays below wal_max_bytes.
 *
 * READ PATH: sa_client_get/list go straight to the store from the calling
 * thread (LMDB readers never block the writer), after node_read_barrier.
 *
 * THREADS: every function here is thread-safe except sa_client_open and
 * sa_client_close.  Locks: c->mu (queue, waiters) and c->pmu (writer to
 * committer hand-over) are never held together, nor during I/O.
 */
#define _GNU_SOURCE
#include "hlc.h"
#include "internal.h"
#include "io.h"
#include "outbox.h"
#include "store.h"
#include "transport.h"
#include "wal.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define NODE_GROUP_BYTES (8u << 20)    /* soft bound on one group's record bytes */
#define NODE_REPLAY_TXN_RECORDS 8192   /* records per LMDB txn during replay */
#define NODE_WAL_CHUNK_MAX (1u << 20)  /* WAL preallocation step (node_wal_chunk) */
#define NODE_PRUNE_VISITS_PER_RECORD 4 /* outbox entries a commit over outbox_max may visit */

/* The committer (see "writer pipeline"): it commits the groups waiting for
 * it once the oldest has waited store_commit_ms, at once when a reader
 * or the writer asks, and the writer waits for it when more than
 * NODE_QUEUE_GROUPS groups or NODE_QUEUE_BYTES record bytes wait. */
#define NODE_QUEUE_GROUPS 256
#define NODE_QUEUE_BYTES (4u << 20)
/* A group is answered before its store commit only while the store has this
 * much room above its highest page, plus 4x the group's and the queue's record
 * bytes (the keys, outbox and change feed databases take each value up to
 * twice, and every operation new B-tree pages): a commit of acknowledged
 * writes must not find the map full. */
#define NODE_EARLY_HEADROOM (64ull << 20)
/* The writer's key-version cache is emptied (after a drain) past this many
 * keys. */
#define NODE_WOV_MAX 65536

typedef enum {
  REQ_PUT,
  REQ_DEL,
  REQ_BATCH,
  REQ_FLUSH,
  REQ_CHECKPOINT,
  REQ_OBX_CLAIM,  /* outbox: expire, claim for the transport, prune */
  REQ_OBX_SETTLE, /* outbox: record the transport's answers */
} req_kind;

typedef struct wreq {
  struct wreq *next;
  req_kind kind;
  const char *key;
  uint32_t klen;
  const void *val;
  uint32_t vlen;
  sa_write_opts cond;
  const sa_batch_op *ops;
  size_t nops;
  uint64_t now;          /* outbox requests: the tick's time */
  bool send;             /* REQ_OBX_CLAIM: the transport takes work */
  outbox_batch *claimed; /* REQ_OBX_CLAIM: out */
  const uint64_t *lsns;  /* REQ_OBX_SETTLE: in */
  const bool *acked;
  size_t n;
  size_t bytes; /* estimated record size */
  bool logged;  /* writer: has a record in the current group */
  int rc;
  sa_error err;
  sa_write_result res;
  bool done;
  pthread_cond_t cv; /* blocking callers wait on it */
  sa_write_cb cb;    /* asynchronous callers: called instead (r is then malloc'd) */
  void *cb_arg;
} wreq;

/* Key versions as they will be once the groups not yet committed are:
 * an open-addressing table sized for the group, keys copied (the requests
 * that own them may be settled and freed while the table is still read). */
typedef struct ov_ent {
  uint64_t h;   /* FNV-1a of the key; 0 marks an empty slot */
  uint32_t off; /* key bytes at keys + off */
  uint32_t klen;
  uint64_t version; /* 0: deleted */
} ov_ent;

typedef struct overlay {
  ov_ent *tab;
  size_t cap; /* power of two, at least twice the entries */
  size_t n;   /* entries */
  char *keys;
  size_t kused, kcap;
} overlay;

/* One group of data requests on its way through the pipeline. */
typedef struct pgroup {
  struct pgroup *next; /* in the committer's queue, or the free list */
  wreq *reqs;          /* in queue order (writer only) */
  unsigned char *buf;  /* the group's WAL records */
  size_t cap, used;
  uint64_t first_lsn;  /* LSN of the first record */
  uint64_t last_lsn;   /* of the last one */
  uint64_t hlc_before; /* writer's clock before the group */
  uint64_t hlc_last;
  uint64_t wal_start; /* WAL size before the group's append */
  uint64_t logged;    /* records */
  uint64_t ops;       /* operations in them */
  uint64_t queued_ns; /* when handed to the committer */
  bool durable;       /* the records were synced with auto_flush on */
  bool early;         /* answered before its store commit */
  bool done;          /* under pmu: committed or failed (not early) */
  int rc;             /* the committer's result (not early) */
  sa_error err;
} pgroup;

struct sa_client {
  sa_options opts; /* strings below point to the owned copies */
  char node_id[SA_NODE_ID_MAX + 1];
  char *wal_path;
  char *store_path;
  char *tmpdir; /* memory-only node: private directory removed at close */

  sa_wal *wal; /* NULL for a memory-only node */
  sa_store *store;
  sa_recovery recovery;

  pthread_t writer;
  bool writer_started;
  pthread_t committer; /* commits groups to the store (node_committer_main) */
  bool committer_started;
  pthread_mutex_t pmu;       /* the committer's queue and its waiters */
  pthread_cond_t pcv;        /* committer wake-up (CLOCK_MONOTONIC) */
  pthread_cond_t dcv;        /* broadcast after every commit (or failure) */
  pgroup *cq_head, *cq_tail; /* under pmu: written groups waiting for their commit */
  size_t cq_groups, cq_bytes;
  pgroup *gfree;      /* under pmu: spare groups */
  bool committing;    /* under pmu: the committer holds groups */
  bool commit_now;    /* under pmu: someone waits; do not wait for the delay */
  bool pstop;         /* under pmu: the committer exits when idle */
  int cfail_rc;       /* under pmu: a commit of answered writes failed */
  sa_error cfail_err; /* under pmu: why (reads then fail with it) */
  uint64_t acked_lsn; /* atomic: the last LSN answered (reads wait until committed) */
  pthread_mutex_t mu;
  pthread_cond_t cv;     /* writer wake-up (CLOCK_MONOTONIC) */
  pthread_cond_t lsn_cv; /* broadcast when last_lsn grows or at close */
  wreq *head, *tail;     /* FIFO of pending requests (under mu) */
  bool stopping;         /* under mu */

  /* Writer-owned. */
  sa_hlc hlc;
  uint64_t w_lsn; /* last LSN given to a record written to the WAL */
  overlay gov;    /* versions the group being prepared gives */
  overlay wov;    /* versions every group written since the last reset gave */
  wal_op *ops;    /* scratch for batches */
  size_t ops_cap;
  bool dirty; /* auto_flush off: appended but not synced */
  uint64_t dirty_since_ns;

  /* Sync. */
  const sa_transport *transport; /* never NULL after open */
  const sa_discovery *discovery;
  outbox_cfg obx;
  uint64_t rng; /* writer-owned backoff jitter state */
  pthread_t ticker;
  bool ticker_started;
  pthread_mutex_t tmu;         /* ticker wake-up state */
  pthread_cond_t tcv;          /* CLOCK_MONOTONIC */
  bool tick_stop, tick_kick;   /* under tmu */
  pthread_mutex_t tick_serial; /* one tick at a time (thread or caller) */

  sa_stats stats;   /* writer-updated counters, read with atomics */
  uint64_t sync_ns; /* total fdatasync time (stats.sync_seconds at read) */

  /* Written by the writer, read by anyone (atomics). */
  uint64_t obx_count[4]; /* outbox entries per state */
  uint64_t prune_at;     /* outbox_prune's cursor (inside store write txns only) */
  uint64_t obx_bad_lsn;  /* the last malformed outbox entry logged (atomic) */
  uint64_t obx_pruned, obx_retries, ticks, last_tick_ms;
  uint64_t last_lsn;
  uint64_t checkpoints;
  bool read_only;
  bool ro_claimed;                             /* node_set_read_only was called */
  char read_only_reason[SA_ERROR_MESSAGE_MAX]; /* set before read_only */

  /* Store sync points (node_syncer_main). */
  pthread_t syncer;
  bool syncer_started;
  pthread_mutex_t smu;
  pthread_cond_t scv; /* CLOCK_MONOTONIC */
  bool sstop;         /* under smu */
  bool syncer_idle;   /* seq_cst: no commit since its last kick; wake it at one */
};

/* ---- options ----------------------------------------------------------- */

static sa_options node_defaults(const char *node_id, const char *wal_path, bool persistent) {
  sa_options o;
  memset(&o, 0, sizeof o);
  o.node_id = node_id;
  o.wal_path = wal_path;
  o.persistent = persistent;
  o.auto_flush = true;
  o.flush_interval_ms = SA_DEFAULT_FLUSH_INTERVAL_MS;
  o.store_sync_interval_ms = SA_DEFAULT_STORE_SYNC_INTERVAL_MS;
  o.store_writeback_ms = SA_DEFAULT_STORE_WRITEBACK_MS;
  o.store_commit_ms = SA_DEFAULT_STORE_COMMIT_MS;
  o.tick_interval_ms = SA_DEFAULT_TICK_INTERVAL_MS;
  o.max_value_bytes = SA_DEFAULT_MAX_VALUE_BYTES;
  o.max_batch_bytes = SA_DEFAULT_MAX_BATCH_BYTES;
  o.wal_max_bytes = SA_DEFAULT_WAL_MAX_BYTES;
  o.store_max_bytes = SA_DEFAULT_STORE_MAX_BYTES;
  o.sync_batch_size = SA_DEFAULT_SYNC_BATCH_SIZE;
  o.max_retries = SA_DEFAULT_MAX_RETRIES;
  o.retry_base_ms = SA_DEFAULT_RETRY_BASE_MS;
  o.retry_max_ms = SA_DEFAULT_RETRY_MAX_MS;
  o.ack_timeout_ms = SA_DEFAULT_ACK_TIMEOUT_MS;
  o.outbox_max = SA_DEFAULT_OUTBOX_MAX;
  o.outbox_retention_ms = SA_DEFAULT_OUTBOX_RETENTION_MS;
  return o;
}

sa_options sa_options_persistent(const char *node_id, const char *wal_path) {
  return node_defaults(node_id, wal_path, true);
}

sa_options sa_options_memory(const char *node_id) {
  return node_defaults(node_id, NULL, false);
}

/* Fills zero numeric fields with defaults and checks ranges. */
static int node_check_options(sa_options *o, sa_error *err) {
  int rc = sa_node_id_check(o->node_id, err);
  if (rc) return rc;
  if (o->transport_kind && *o->transport_kind && strcmp(o->transport_kind, "stub") != 0 &&
      strcmp(o->transport_kind, "disabled") != 0)
    return sa_fail(err, SA_EINVAL,
                   "transport_kind '%.40s' is unknown: built in are \"stub\" and \"disabled\" "
                   "(or pass a transport of your own)",
                   o->transport_kind);
  if (o->discovery_kind && *o->discovery_kind && strcmp(o->discovery_kind, "stub") != 0 &&
      strcmp(o->discovery_kind, "disabled") != 0)
    return sa_fail(err, SA_EINVAL,
                   "discovery_kind '%.40s' is unknown: built in are \"stub\" and \"disabled\"",
                   o->discovery_kind);
  if ((o->transport && (!o->transport->kind || !o->transport->send)) ||
      (o->discovery && (!o->discovery->kind || !o->discovery->peers)))
    return sa_fail(err, SA_EINVAL,
                   "a custom transport needs kind and send; a discovery needs kind and peers");
  if (o->persistent && (!o->wal_path || !*o->wal_path))
    return sa_fail(err, SA_EINVAL,
                   "wal_path is empty: a persistent node needs a WAL file such as data/%s.wal",
                   o->node_id);
  if (!o->flush_interval_ms) o->flush_interval_ms = SA_DEFAULT_FLUSH_INTERVAL_MS;
  if (!o->store_sync_interval_ms) o->store_sync_interval_ms = SA_DEFAULT_STORE_SYNC_INTERVAL_MS;
  if (!o->store_writeback_ms) o->store_writeback_ms = SA_DEFAULT_STORE_WRITEBACK_MS;
  if (!o->store_commit_ms) o->store_commit_ms = SA_DEFAULT_STORE_COMMIT_MS;
  if (!o->tick_interval_ms) o->tick_interval_ms = SA_DEFAULT_TICK_INTERVAL_MS;
  if (!o->max_value_bytes) o->max_value_bytes = SA_DEFAULT_MAX_VALUE_BYTES;
  if (!o->max_batch_bytes) o->max_batch_bytes = SA_DEFAULT_MAX_BATCH_BYTES;
  if (!o->wal_max_bytes) o->wal_max_bytes = SA_DEFAULT_WAL_MAX_BYTES;
  if (!o->store_max_bytes) o->store_max_bytes = SA_DEFAULT_STORE_MAX_BYTES;
  if (!o->sync_batch_size) o->sync_batch_size = SA_DEFAULT_SYNC_BATCH_SIZE;
  if (!o->max_retries) o->max_retries = SA_DEFAULT_MAX_RETRIES;
  if (!o->retry_base_ms) o->retry_base_ms = SA_DEFAULT_RETRY_BASE_MS;
  if (!o->retry_max_ms) o->retry_max_ms = SA_DEFAULT_RETRY_MAX_MS;
  if (!o->ack_timeout_ms) o->ack_timeout_ms = SA_DEFAULT_ACK_TIMEOUT_MS;
  if (!o->outbox_max) o->outbox_max = SA_DEFAULT_OUTBOX_MAX;
  if (!o->outbox_retention_ms) o->outbox_retention_ms = SA_DEFAULT_OUTBOX_RETENTION_MS;
  if (o->sync_batch_size > 1024)
    return sa_fail(err, SA_EINVAL, "sync_batch_size %u is out of range (1..1024)",
                   o->sync_batch_size);
  if (o->retry_max_ms < o->retry_base_ms)
    return sa_fail(err, SA_EINVAL, "retry_max_ms %u is below retry_base_ms %u", o->retry_max_ms,
                   o->retry_base_ms);
  if (o->tick_interval_ms > 3600000)
    return sa_fail(err, SA_EINVAL, "tick_interval_ms %u is out of range (1..3600000)",
                   o->tick_interval_ms);
  if (o->store_sync_interval_ms < 10 || o->store_sync_interval_ms > 60000)
    return sa_fail(err, SA_EINVAL, "store_sync_interval_ms %u is out of range (10..60000)",
                   o->store_sync_interval_ms);
  if (o->store_writeback_ms != SA_STORE_WRITEBACK_OFF && o->store_writeback_ms > 1000)
    return sa_fail(err, SA_EINVAL,
                   "store_writeback_ms %u is out of range (1..1000, or SA_STORE_WRITEBACK_OFF)",
                   o->store_writeback_ms);
  if (o->store_commit_ms > 1000)
    return sa_fail(err, SA_EINVAL, "store_commit_ms %u is out of range (1..1000)",
                   o->store_commit_ms);
  if (o->flush_interval_ms > 3600000)
    return sa_fail(err, SA_EINVAL, "flush_interval_ms %u is out of range (1..3600000)",
                   o->flush_interval_ms);
  if (o->max_value_bytes > (256u << 20))
    return sa_fail(err, SA_EINVAL, "max_value_bytes %u is out of range (1..268435456)",
                   o->max_value_bytes);
  if (o->max_batch_bytes > (512u << 20))
    return sa_fail(err, SA_EINVAL, "max_batch_bytes %u is out of range (1..536870912)",
                   o->max_batch_bytes);
  if (o->wal_max_bytes < (64u << 10))
    return sa_fail(err, SA_EINVAL, "wal_max_bytes %llu is too small (at least 65536)",
                   (unsigned long long)o->wal_max_bytes);
  if (o->store_max_bytes < (1u << 20) || o->store_max_bytes > ((uint64_t)SIZE_MAX >> 1))
    return sa_fail(err, SA_EINVAL, "store_max_bytes %llu is out of range (at least 1048576)",
                   (unsigned long long)o->store_max_bytes);
  return 0;
}

/* store path for a WAL path: "x.wal" -> "x.mdb", anything else + ".mdb". */
static char *node_store_path(const char *wal_path) {
  size_t n = strlen(wal_path);
  char *s = malloc(n + 5);
  if (!s) return NULL;
  memcpy(s, wal_path, n + 1);
  if (n > 4 && strcmp(s + n - 4, ".wal") == 0)
    memcpy(s + n - 4, ".mdb", 5);
  else
    memcpy(s + n, ".mdb", 5);
  return s;
}

/* ---- clock and log ----------------------------------------------------- */

static uint64_t node_now(const sa_client *c) {
  return c->opts.clock ? c->opts.clock(c->opts.clock_ctx) : sa_now_ms();
}

/* A CLOCK_MONOTONIC deadline (sa_mono_ns nanoseconds) for the timed waits. */
static struct timespec node_deadline(uint64_t due_ns) {
  return (struct timespec){(time_t)(due_ns / 1000000000u), (long)(due_ns % 1000000000u)};
}

static void node_log(const sa_client *c, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void node_log(const sa_client *c, int level, const char *fmt, ...) {
  if (!c->opts.log) return;
  char msg[768];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  c->opts.log(c->opts.log_ctx, level, msg);
}

/* ---- replay ------------------------------------------------------------ */

typedef struct {
  sa_client *c;
  uint64_t applied;
  store_wtxn *t;
  uint32_t in_txn;
  uint64_t last; /* last LSN applied in the current txn */
  uint64_t max_hlc;
  uint64_t replayed;
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
 * *version: the version the (last) put produced. */
static int node_apply_record(store_wtxn *t, const wal_rec *rec, uint64_t *version, sa_error *err) {
  wal_op_iter it;
  wal_op op;
  wal_op_iter_init(&it, rec->type, rec->payload, rec->len);
  uint64_t small[16], *vers = small;
  if (it.left > 16 && !(vers = malloc(it.left * sizeof *vers)))
    return sa_fail(err, SA_ENOMEM, "out of memory applying record %llu",
                   (unsigned long long)rec->lsn);
  uint32_t n = 0;
  int rc = 0;
  while (rc == 0 && wal_op_next(&it, &op)) {
    vers[n] = 0;
    if (op.op == SA_OP_PUT) {
      rc = store_wput(t, op.key, op.klen, op.val, op.vlen, rec->lsn, rec->hlc, &vers[n], err);
      *version = vers[n];
    } else {
      bool existed;
      rc = store_wdel(t, op.key, op.klen, &existed, err);
    }
    n++;
  }
  if (rc == 0)
    rc = store_woutbox(t, rec->lsn, rec->hlc, rec->type, rec->payload, rec->len, vers, n, err);
  if (vers != small) free(vers);
  return rc;
}

static int replay_visit(const wal_rec *rec, void *ctx) {
  replay_ctx *r = ctx;
  if (rec->hlc > r->max_hlc) r->max_hlc = rec->hlc;
  if (rec->lsn <= r->applied) return 0;
  if (!r->t && (r->rc = store_wbegin(r->c->store, &r->t, r->err)) != 0) return 1;
  uint64_t version;
  if ((r->rc = node_apply_record(r->t, rec, &version, r->err)) != 0) {
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
static uint64_t node_wal_chunk(uint64_t wal_max_bytes) {
  uint64_t chunk = wal_max_bytes / 8;
  if (chunk > NODE_WAL_CHUNK_MAX) chunk = NODE_WAL_CHUNK_MAX;
  return chunk / 4096 * 4096;
}

/* Recovery: classify the WAL, cut a torn tail, replay what the store lacks. */
static int node_recover(sa_client *c, const sa_wal_report *rep, sa_error *err) {
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

/* ---- writer ------------------------------------------------------------ */

static void node_set_read_only(sa_client *c, const char *why) {
  /* The first caller writes the reason (writer, committer or syncer). */
  if (__atomic_exchange_n(&c->ro_claimed, true, __ATOMIC_ACQ_REL)) return;
  snprintf(c->read_only_reason, sizeof c->read_only_reason, "%s", why);
  __atomic_store_n(&c->read_only, true, __ATOMIC_RELEASE);
  node_log(c, SA_LOG_ERROR, "%s", why);
}

static void node_apply_delta(sa_client *c, const outbox_delta *d) {
  for (int i = 0; i < 4; i++)
    __atomic_add_fetch(&c->obx_count[i], (uint64_t)d->by_state[i], __ATOMIC_RELAXED);
  __atomic_add_fetch(&c->obx_pruned, d->pruned, __ATOMIC_RELAXED);
  __atomic_add_fetch(&c->obx_retries, d->retries, __ATOMIC_RELAXED);
  /* once per entry, not at every prune that walks past it */
  if (d->malformed &&
      __atomic_exchange_n(&c->obx_bad_lsn, d->malformed_lsn, __ATOMIC_RELAXED) != d->malformed_lsn)
    node_log(c, SA_LOG_ERROR,
             "outbox: %llu queued entr%s with a malformed or missing payload (the last at LSN "
             "%llu) kept, not pruned: the store file is damaged there",
             (unsigned long long)d->malformed, d->malformed == 1 ? "y" : "ies",
             (unsigned long long)d->malformed_lsn);
  if (d->refused)
    node_log(c, SA_LOG_ERROR,
             "outbox: %llu due entr%s with a malformed or missing payload (the last at LSN "
             "%llu) marked failed, not handed to the transport: the store file is damaged there",
             (unsigned long long)d->refused, d->refused == 1 ? "y" : "ies",
             (unsigned long long)d->refused_lsn);
}

/* Entries per state into counts; returns their sum (from the same loads). */
static uint64_t node_obx_counts(const sa_client *c, uint64_t counts[4]) {
  uint64_t t = 0;
  for (int i = 0; i < 4; i++)
    t += counts[i] = __atomic_load_n(&c->obx_count[i], __ATOMIC_RELAXED);
  return t;
}

static uint64_t node_obx_total(const sa_client *c) {
  uint64_t counts[4];
  return node_obx_counts(c, counts);
}

/* Runs one outbox request in its own store transaction (writer thread). */
static void node_process_outbox(sa_client *c, wreq *r) {
  sa_error e = {0};
  store_wtxn *t;
  outbox_delta d;
  memset(&d, 0, sizeof d);
  if (__atomic_load_n(&c->read_only, __ATOMIC_ACQUIRE)) {
    r->rc = sa_fail(&r->err, SA_EREADONLY, "%s", c->read_only_reason);
    return;
  }
  int rc = store_wbegin(c->store, &t, &e);
  if (rc == 0) {
    if (r->kind == REQ_OBX_CLAIM) {
      uint64_t counts[4], total = node_obx_counts(c, counts);
      rc = outbox_claim(t, &c->obx, c->node_id, r->now, r->send, total, counts, &c->prune_at,
                        &c->rng, r->claimed, &d, &e);
    } else {
      rc = outbox_settle(t, &c->obx, r->now, r->lsns, r->acked, r->n, &c->rng, &d, &e);
    }
    if (rc == 0)
      rc = store_wcommit(t, store_applied_lsn(c->store), c->hlc.last, &e);
    else
      store_wabort(t);
  }
  if (rc) {
    if (r->kind == REQ_OBX_CLAIM && r->claimed->ops) {
      free(r->claimed->ops);
      r->claimed->ops = NULL;
      r->claimed->n = 0;
    }
    r->rc = rc;
    r->err = e;
    return;
  }
  node_apply_delta(c, &d);
}

const double sa_stats_sync_bounds[SA_STATS_SYNC_BUCKETS - 1] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 1.0};
const double sa_stats_group_bounds[SA_STATS_GROUP_BUCKETS - 1] = {1, 2, 4, 8, 16, 32, 64, 128, 256};

static void stat_add(uint64_t *p, uint64_t v) {
  __atomic_add_fetch(p, v, __ATOMIC_RELAXED);
}

static void stat_hist(uint64_t *hist, const double *bounds, int nb, double v) {
  int i = 0;
  while (i < nb && v > bounds[i])
    i++;
  stat_add(&hist[i], 1);
}

/* wal_sync, timed into the statistics. */
static int node_wal_sync(sa_client *c, sa_error *err) {
  uint64_t t0 = sa_mono_ns();
  int rc = wal_sync(c->wal, err);
  uint64_t ns = sa_mono_ns() - t0;
  stat_add(&c->stats.syncs, 1);
  stat_add(&c->sync_ns, ns);
  stat_hist(c->stats.sync_hist, sa_stats_sync_bounds, SA_STATS_SYNC_BUCKETS - 1, (double)ns / 1e9);
  return rc;
}

static int node_flush_now(sa_client *c, sa_error *err) {
  if (__atomic_load_n(&c->read_only, __ATOMIC_ACQUIRE))
    return sa_fail(err, SA_EREADONLY, "%s", c->read_only_reason);
  if (!c->wal || !c->dirty) return 0;
  int rc = node_wal_sync(c, err);
  if (rc) {
    node_set_read_only(c, err->message);
    return rc;
  }
  c->dirty = false;
  return 0;
}

static int node_checkpoint_now(sa_client *c, sa_error *err) {
  if (!c->wal) return 0;
  int rc = store_sync(c->store, err);
  if (rc == 0) rc = wal_reset(c->wal, __atomic_load_n(&c->last_lsn, __ATOMIC_RELAXED), err);
  if (rc) {
    char why[SA_ERROR_MESSAGE_MAX];
    snprintf(why, sizeof why, "node is read-only after a failed checkpoint: %.400s", err->message);
    node_set_read_only(c, why);
    return rc;
  }
  c->dirty = false;
  __atomic_add_fetch(&c->checkpoints, 1, __ATOMIC_RELAXED);
  return 0;
}

/* ---- store sync points ----------------------------------------------------
 *
 * The store commits without syncing; every store_sync_interval_ms this thread
 * takes a sync point when anything was committed (store.c): an fdatasync of
 * the LMDB file and of a small record, off the write path.  Writes do not
 * wait for it -- the WAL makes them durable -- but the WAL is never reset
 * past a sync point, and after a power loss the store rolls back to the
 * last one and the WAL replays the rest.  A failed sync point turns the
 * node read-only: the file may have lost pages the kernel could not write,
 * and a later fdatasync could succeed without them. */

static void node_sync_store(sa_client *c) {
  sa_error e;
  if (__atomic_load_n(&c->read_only, __ATOMIC_ACQUIRE) || !store_sync_due(c->store)) return;
  if (store_sync(c->store, &e) != 0) {
    char why[SA_ERROR_MESSAGE_MAX];
    snprintf(why, sizeof why, "node is read-only after a failed store sync point: %.400s",
             e.message);
    node_set_read_only(c, why);
  }
}

/* Every store_sync_interval_ms a sync point.  In between, while commits
 * happen, every store_writeback_ms (2) a write-back kick (store_writeback):
 * the store's pages then go to the disk as they are committed instead of in
 * one burst at the sync point, and the WAL's fdatasyncs -- each a cache
 * flush of the device, which waits for the writes queued before it -- no
 * longer queue behind a period's worth of store pages.  That burst set the
 * write latency tail: p99 at 16 connections went from 17-20 ms to 4-5.5 ms
 * (README, Performance).
 * When nothing was committed since the last kick the syncer sleeps until
 * the next sync point, and the committer wakes it at the next commit
 * (node_wake_syncer), so an idle node does not tick every 2 ms. */
static void *node_syncer_main(void *arg) {
  sa_client *c = arg;
  pthread_setname_np(pthread_self(), "sa-sync"); /* top -H, perf, gdb */
  uint64_t period = (uint64_t)c->opts.store_sync_interval_ms * 1000000u;
  uint64_t next_sync = sa_mono_ns() + period;
  uint64_t kick = c->opts.store_writeback_ms == SA_STORE_WRITEBACK_OFF
                      ? UINT64_MAX
                      : (uint64_t)c->opts.store_writeback_ms * 1000000u;
  uint64_t seen = store_txnid(c->store); /* the commit of the last kick */
  pthread_mutex_lock(&c->smu);
  while (!c->sstop) {
    __atomic_store_n(&c->syncer_idle, true, __ATOMIC_SEQ_CST);
    bool busy = store_txnid(c->store) != seen; /* after publishing idle: see store_txnid */
    if (busy) __atomic_store_n(&c->syncer_idle, false, __ATOMIC_SEQ_CST);
    uint64_t now = sa_mono_ns();
    uint64_t due = next_sync;
    if (busy && kick != UINT64_MAX && now + kick < next_sync) due = now + kick;
    struct timespec ts = node_deadline(due);
    while (!c->sstop && pthread_cond_timedwait(&c->scv, &c->smu, &ts) != ETIMEDOUT) {
      if (!__atomic_load_n(&c->syncer_idle, __ATOMIC_SEQ_CST)) break; /* a commit woke it */
    }
    __atomic_store_n(&c->syncer_idle, false, __ATOMIC_SEQ_CST);
    if (c->sstop) break;
    pthread_mutex_unlock(&c->smu);
    uint64_t txnid = store_txnid(c->store);
    if (sa_mono_ns() >= next_sync) {
      node_sync_store(c);
      next_sync = sa_mono_ns() + period;
      seen = txnid;
    } else if (txnid != seen && sa_mono_ns() >= due) {
      seen = txnid;
      if (!__atomic_load_n(&c->read_only, __ATOMIC_ACQUIRE)) store_writeback(c->store);
    }
    pthread_mutex_lock(&c->smu);
  }
  pthread_mutex_unlock(&c->smu);
  return NULL;
}

/* The committer, after a commit: wakes the syncer if it sleeps idle. */
static void node_wake_syncer(sa_client *c) {
  if (!__atomic_load_n(&c->syncer_idle, __ATOMIC_SEQ_CST)) return;
  pthread_mutex_lock(&c->smu);
  __atomic_store_n(&c->syncer_idle, false, __ATOMIC_SEQ_CST);
  pthread_cond_signal(&c->scv);
  pthread_mutex_unlock(&c->smu);
}

/* Sets *flag under mu, signals cv and joins the thread (if *started). */
static void node_join(pthread_t t, bool *started, pthread_mutex_t *mu, pthread_cond_t *cv,
                      bool *flag) {
  if (!*started) return;
  pthread_mutex_lock(mu);
  *flag = true;
  pthread_cond_signal(cv);
  pthread_mutex_unlock(mu);
  pthread_join(t, NULL);
  *started = false;
}

static void node_stop_syncer(sa_client *c) {
  node_join(c->syncer, &c->syncer_started, &c->smu, &c->scv, &c->sstop);
}

/* ---- writer pipeline -----------------------------------------------------
 *
 * Puts, removes and batches go through two threads:
 *
 *   writer:    take group N, prepare it, WAL write + sync, queue it for
 *              the committer, answer it; take group N+1 ...
 *   committer: once the oldest queued group has waited store_commit_ms
 *              (at once when a reader or the writer asks): one LMDB txn
 *              applies the records of every queued group, then last_lsn moves
 *
 * A write is answered once its record is in the synced WAL; from there a
 * crash loses nothing (the next open replays the WAL into the store).  Its
 * store commit follows within store_commit_ms, shared with every group
 * written meanwhile, so the store writes its B-tree pages once per commit
 * instead of once per group (each commit writes every page it touches: tens
 * of KiB for one write).  Reads still see every answered write: a read
 * (node_read_barrier) first compares last_lsn, the last LSN the store holds,
 * with acked_lsn, the last one answered; when the store is behind, the
 * reader asks the committer for a commit now and waits for it.  A read with
 * no answered write left to commit pays two atomic loads.
 *
 * Preparing a group (conditions, versions) needs the state the groups not
 * yet committed leave: the writer keeps the versions it gave in wov (every
 * write goes through the writer), read before the store.  Requests are
 * served in FIFO order; within a group later requests see the effects of
 * earlier ones.
 *
 * When a commit of answered writes fails (an I/O error), those writes are
 * still in the WAL, durable: the node turns read-only, a read that needs
 * them fails with the cause, and the next open replays them.  A full map
 * must not be such a failure: a group is answered before its commit only
 * while the store has NODE_EARLY_HEADROOM and more of room; otherwise the
 * writer waits for the group's commit before it answers, and a failed
 * commit cuts the group's records from the WAL and fails its writes
 * (SA_ENOSPC), the node staying writable.
 *
 * Flushes, checkpoints and outbox work drain the committer first
 * (node_drain) and run on the writer thread.
 */

static uint64_t ov_hash(const char *key, uint32_t klen) {
  uint64_t h = 1469598103934665603ull;
  for (uint32_t i = 0; i < klen; i++)
    h = (h ^ (unsigned char)key[i]) * 1099511628211ull;
  return h ? h : 1;
}

/* Empties ov and sizes it for n entries (it grows past them); a big table
 * is given back.  -1 when out of memory. */
static int ov_reset(overlay *ov, size_t n) {
  size_t cap = 64;
  while (cap < 2 * n)
    cap *= 2;
  if (ov->cap > 4096 && ov->cap > 4 * cap) {
    free(ov->tab);
    free(ov->keys);
    *ov = (overlay){0};
  }
  if (cap > ov->cap) {
    ov_ent *t = realloc(ov->tab, cap * sizeof *t);
    if (!t) return -1;
    ov->tab = t;
    ov->cap = cap;
  }
  memset(ov->tab, 0, ov->cap * sizeof *ov->tab);
  ov->n = 0;
  ov->kused = 0;
  return 0;
}

static ov_ent *ov_slot(const overlay *ov, const char *key, uint32_t klen, uint64_t h) {
  size_t mask = ov->cap - 1;
  for (size_t i = h & mask;; i = (i + 1) & mask) {
    ov_ent *e = &ov->tab[i];
    if (e->h == 0 || (e->h == h && e->klen == klen && memcmp(ov->keys + e->off, key, klen) == 0))
      return e;
  }
}

static bool ov_find(const overlay *ov, const char *key, uint32_t klen, uint64_t *version) {
  if (!ov->n) return false;
  ov_ent *e = ov_slot(ov, key, klen, ov_hash(key, klen));
  if (e->h == 0) return false;
  *version = e->version;
  return true;
}

/* Doubles the table (the keys stay where they are).  -1 when out of memory. */
static int ov_grow(overlay *ov) {
  size_t cap = ov->cap ? ov->cap * 2 : 64;
  ov_ent *t = calloc(cap, sizeof *t);
  if (!t) return -1;
  for (size_t i = 0; i < ov->cap; i++) {
    const ov_ent *e = &ov->tab[i];
    if (e->h == 0) continue;
    size_t j = e->h & (cap - 1);
    while (t[j].h)
      j = (j + 1) & (cap - 1);
    t[j] = *e;
  }
  free(ov->tab);
  ov->tab = t;
  ov->cap = cap;
  return 0;
}

/* Records key's version.  -1 when out of memory. */
static int ov_set(overlay *ov, const char *key, uint32_t klen, uint64_t version) {
  if (2 * (ov->n + 1) > ov->cap && ov_grow(ov) != 0) return -1;
  uint64_t h = ov_hash(key, klen);
  ov_ent *e = ov_slot(ov, key, klen, h);
  if (e->h == 0) {
    if (ov->kused + klen > ov->kcap) {
      size_t cap = ov->kcap ? ov->kcap : 4096;
      while (cap < ov->kused + klen)
        cap *= 2;
      char *k = realloc(ov->keys, cap);
      if (!k) return -1;
      ov->keys = k;
      ov->kcap = cap;
    }
    memcpy(ov->keys + ov->kused, key, klen);
    e->h = h;
    e->off = (uint32_t)ov->kused;
    e->klen = klen;
    ov->kused += klen;
    ov->n++;
  }
  e->version = version;
  return 0;
}

/* Sets in dst every version of src.  -1 when out of memory (dst then holds
 * part of them). */
static int ov_merge(overlay *dst, const overlay *src) {
  for (size_t i = 0; i < src->cap; i++) {
    const ov_ent *e = &src->tab[i];
    if (e->h && ov_set(dst, src->keys + e->off, e->klen, e->version) != 0) return -1;
  }
  return 0;
}

static void ov_free(overlay *ov) {
  free(ov->tab);
  free(ov->keys);
}

static int node_reserve(pgroup *g, size_t need) {
  if (need <= g->cap) return 0;
  size_t cap = g->cap ? g->cap : 1 << 16;
  while (cap < need)
    cap *= 2;
  unsigned char *b = realloc(g->buf, cap);
  if (!b) return -1;
  g->buf = b;
  g->cap = cap;
  return 0;
}

/* key's version once every group written is committed: the group being
 * prepared, then the groups written before it, then the store. */
static int node_version(sa_client *c, const char *key, uint32_t klen, uint64_t *version,
                        sa_error *err) {
  if (ov_find(&c->gov, key, klen, version)) return 0;
  if (ov_find(&c->wov, key, klen, version)) return 0;
  return store_version(c->store, key, klen, version, err);
}

/* Prepares one request into g: checks its condition, encodes its record and
 * notes the versions it gives.  Returns 0 when staged or settled (condition
 * failed, absent key); an error that dooms the whole group otherwise. */
static int node_stage(sa_client *c, pgroup *g, wreq *r, uint64_t *lsn, sa_error *err) {
  uint64_t cur = 0;
  size_t nops = 1;
  const wal_op *ops;
  wal_op one;
  bool batch = r->kind == REQ_BATCH;
  if (!batch) {
    int rc = node_version(c, r->key, r->klen, &cur, err);
    if (rc) return rc;
    if (r->cond.cond == SA_COND_VERSION && cur != r->cond.version) {
      r->rc =
          cur ? sa_fail(&r->err, SA_ECONFLICT, "key '%.*s' is at version %llu, not %llu",
                        (int)(r->klen > 200 ? 200 : r->klen), r->key, (unsigned long long)cur,
                        (unsigned long long)r->cond.version)
              : sa_fail(&r->err, SA_ECONFLICT, "key '%.*s' does not exist (expected version %llu)",
                        (int)(r->klen > 200 ? 200 : r->klen), r->key,
                        (unsigned long long)r->cond.version);
      return 0;
    }
    if (r->cond.cond == SA_COND_ABSENT && cur) {
      r->rc = sa_fail(&r->err, SA_ECONFLICT, "key '%.*s' already exists (version %llu)",
                      (int)(r->klen > 200 ? 200 : r->klen), r->key, (unsigned long long)cur);
      return 0;
    }
    if (r->kind == REQ_DEL && !cur) {
      r->rc = sa_fail(&r->err, SA_ENOTFOUND, "key '%.*s' not found",
                      (int)(r->klen > 200 ? 200 : r->klen), r->key);
      return 0;
    }
    one.op = r->kind == REQ_PUT ? SA_OP_PUT : SA_OP_DELETE;
    one.key = r->key;
    one.klen = r->klen;
    one.val = r->val;
    one.vlen = r->vlen;
    ops = &one;
  } else {
    if (r->nops > c->ops_cap) {
      wal_op *o = realloc(c->ops, r->nops * sizeof *o);
      if (!o) return sa_fail(err, SA_ENOMEM, "out of memory staging a batch of %zu", r->nops);
      c->ops = o;
      c->ops_cap = r->nops;
    }
    for (size_t i = 0; i < r->nops; i++) {
      const sa_batch_op *b = &r->ops[i];
      c->ops[i].op = b->op;
      c->ops[i].key = b->key;
      c->ops[i].klen = (uint32_t)strlen(b->key);
      c->ops[i].val = b->data;
      c->ops[i].vlen = b->op == SA_OP_PUT ? (uint32_t)b->len : 0;
    }
    ops = c->ops;
    nops = r->nops;
  }

  /* The versions this record gives (as node_apply_record will). */
  for (size_t i = 0; i < nops; i++) {
    uint64_t v = cur;
    int rc = batch ? node_version(c, ops[i].key, ops[i].klen, &v, err) : 0;
    if (rc) return rc;
    if (ov_set(&c->gov, ops[i].key, ops[i].klen, ops[i].op == SA_OP_PUT ? v + 1 : 0) != 0)
      return sa_fail(err, SA_ENOMEM, "out of memory staging a write");
  }

  size_t size = wal_record_size(ops, nops, batch);
  if (node_reserve(g, g->used + size) != 0)
    return sa_fail(err, SA_ENOMEM, "out of memory encoding a %zu-byte record", size);
  uint64_t ts = sa_hlc_next(&c->hlc, node_now(c));
  size_t n = wal_record_encode(g->buf + g->used, ++*lsn, ts, ops, nops, batch);
  assert(n == size);
  r->logged = true;
  r->res.lsn = *lsn;
  r->res.hlc = ts;
  r->res.version = r->kind == REQ_PUT ? cur + 1 : 0;
  g->used += n;
  g->logged++;
  g->ops += nops;
  return 0;
}

/* Settles every logged request of the list with rc / err. */
static void node_fail_logged(wreq *g, int rc, const sa_error *err) {
  for (wreq *r = g; r; r = r->next)
    if (r->logged) {
      r->rc = rc;
      r->err = *err;
      r->logged = false;
    }
}

/* Answers every request of the list: asynchronous callbacks first, outside
 * the lock (they usually wake a thread about to queue more), then the
 * blocking callers.  The list's requests may be freed from here on. */
static void node_settle(sa_client *c, wreq *g) {
  for (wreq *r = g, *next, **link = &g; r; r = next) {
    next = r->next;
    if (!r->cb) {
      link = &r->next;
      continue;
    }
    *link = next;
    r->cb(r->cb_arg, r->rc, r->rc ? NULL : &r->res, r->rc ? &r->err : NULL);
    free(r);
  }
  pthread_mutex_lock(&c->mu);
  for (wreq *r = g, *next; r; r = next) {
    next = r->next; /* r lives on its caller's stack: read next first */
    r->done = true;
    pthread_cond_signal(&r->cv);
  }
  pthread_mutex_unlock(&c->mu);
}

/* A spare group, or a new one (NULL when out of memory). */
static pgroup *node_group_get(sa_client *c) {
  pthread_mutex_lock(&c->pmu);
  pgroup *g = c->gfree;
  if (g) c->gfree = g->next;
  pthread_mutex_unlock(&c->pmu);
  return g ? g : calloc(1, sizeof *g);
}

/* Keeps g as a spare, with pmu held; a buffer grown past 1 MiB by a big
 * group is given back. */
static void node_group_put_locked(sa_client *c, pgroup *g) {
  if (g->cap > (1u << 20)) {
    free(g->buf);
    g->buf = NULL;
    g->cap = 0;
  }
  g->next = c->gfree;
  c->gfree = g;
}

static void node_group_put(sa_client *c, pgroup *g) {
  pthread_mutex_lock(&c->pmu);
  node_group_put_locked(c, g);
  pthread_mutex_unlock(&c->pmu);
}

/* Committer: applies the records of the groups of list in one store
 * transaction; on success they are visible and last_lsn moves. */
static int node_commit_groups(sa_client *c, pgroup *list, sa_error *err) {
  store_wtxn *t;
  int rc = store_wbegin(c->store, &t, err);
  if (rc) return rc;
  const pgroup *last = list;
  uint64_t records = 0;
  for (const pgroup *g = list; g; g = g->next) {
    for (size_t off = 0; off < g->used;) {
      wal_rec rec;
      off += wal_record_view(g->buf + off, &rec);
      uint64_t version;
      if ((rc = node_apply_record(t, &rec, &version, err)) != 0) {
        store_wabort(t);
        return rc;
      }
    }
    records += g->logged;
    last = g;
  }
  /* Over outbox_max: prune a little now, in proportion to what this
   * commit adds, so the outbox stays near its bound without a walk of
   * the whole of it (outbox.h). */
  outbox_delta d;
  memset(&d, 0, sizeof d);
  uint64_t counts[4], total = node_obx_counts(c, counts) + records;
  counts[STORE_OUTBOX_QUEUED] += records;
  if (total > c->obx.max_entries &&
      (rc = outbox_prune(t, &c->obx, total, counts, NODE_PRUNE_VISITS_PER_RECORD * records + 64,
                         &c->prune_at, &d, err)) != 0) {
    store_wabort(t);
    return rc;
  }
  if ((rc = store_wcommit(t, last->last_lsn, last->hlc_last, err)) != 0) return rc;
  __atomic_store_n(&c->last_lsn, last->last_lsn, __ATOMIC_RELEASE);
  node_wake_syncer(c);
  stat_add(&c->stats.store_commits, 1);
  __atomic_add_fetch(&c->obx_count[STORE_OUTBOX_QUEUED], records, __ATOMIC_RELAXED);
  node_apply_delta(c, &d);
  if (c->opts.tick_on_write && c->ticker_started) {
    pthread_mutex_lock(&c->tmu);
    c->tick_kick = true;
    pthread_cond_signal(&c->tcv);
    pthread_mutex_unlock(&c->tmu);
  }
  pthread_mutex_lock(&c->mu);
  pthread_cond_broadcast(&c->lsn_cv); /* change-feed waiters */
  pthread_mutex_unlock(&c->mu);
  return 0;
}

/* The committer failed to commit answered writes (list): the node turns
 * read-only and *err says why, for the reads that needed them. */
static void node_commit_lost(sa_client *c, const pgroup *list, int rc, sa_error *err) {
  const pgroup *last = list;
  while (last->next)
    last = last->next;
  char why[SA_ERROR_MESSAGE_MAX];
  snprintf(why, sizeof why,
           "node is read-only: the store commit of acknowledged writes (LSN %llu to %llu) "
           "failed: %.300s; they are in the WAL%s",
           (unsigned long long)list->first_lsn, (unsigned long long)last->last_lsn, err->message,
           c->wal ? " and the next start replays them" : " of no file: this node keeps no data");
  node_set_read_only(c, why);
  sa_fail(err, rc, "%s", why);
}

static void *node_committer_main(void *arg) {
  sa_client *c = arg;
  pthread_setname_np(pthread_self(), "sa-commit"); /* top -H, perf, gdb */
  const uint64_t delay = (uint64_t)c->opts.store_commit_ms * 1000000u;
  pthread_mutex_lock(&c->pmu);
  for (;;) {
    if (!c->cq_head) {
      if (c->pstop) break;
      pthread_cond_wait(&c->pcv, &c->pmu);
      continue;
    }
    if (!c->commit_now && !c->pstop) {
      uint64_t due = c->cq_head->queued_ns + delay;
      if (sa_mono_ns() < due) {
        struct timespec ts = node_deadline(due);
        pthread_cond_timedwait(&c->pcv, &c->pmu, &ts);
        continue;
      }
    }
    pgroup *list = c->cq_head;
    c->cq_head = c->cq_tail = NULL;
    c->cq_groups = c->cq_bytes = 0;
    c->commit_now = false;
    c->committing = true;
    sa_error e = {0};
    int rc = c->cfail_rc; /* after a lost commit, nothing more is committed */
    if (rc) e = c->cfail_err;
    pthread_mutex_unlock(&c->pmu);
    bool early = list->early;
    assert(early || !list->next); /* a group answered after its commit travels alone */
    if (!rc && (rc = node_commit_groups(c, list, &e)) != 0 && early)
      node_commit_lost(c, list, rc, &e);
    pthread_mutex_lock(&c->pmu);
    c->committing = false;
    if (early) {
      if (rc && !c->cfail_rc) {
        c->cfail_rc = rc;
        c->cfail_err = e;
      }
      for (pgroup *g = list, *next; g; g = next) {
        next = g->next;
        node_group_put_locked(c, g);
      }
    } else {
      list->rc = rc;
      list->err = e;
      list->done = true; /* the writer answers and keeps it */
    }
    pthread_cond_broadcast(&c->dcv);
  }
  pthread_mutex_unlock(&c->pmu);
  return NULL;
}

/* Hands g to the committer; first waits while the queue is full. */
static void node_queue(sa_client *c, pgroup *g) {
  pthread_mutex_lock(&c->pmu);
  while (c->cq_groups >= NODE_QUEUE_GROUPS || c->cq_bytes >= NODE_QUEUE_BYTES) {
    c->commit_now = true;
    pthread_cond_signal(&c->pcv);
    pthread_cond_wait(&c->dcv, &c->pmu);
  }
  g->next = NULL;
  g->queued_ns = sa_mono_ns();
  bool wake = !c->cq_head || !g->early;
  if (!g->early) c->commit_now = true;
  if (c->cq_tail)
    c->cq_tail->next = g;
  else
    c->cq_head = g;
  c->cq_tail = g;
  c->cq_groups++;
  c->cq_bytes += g->used;
  if (wake) pthread_cond_signal(&c->pcv);
  pthread_mutex_unlock(&c->pmu);
}

/* Waits until every queued group is committed.  Returns 0, or the failure
 * of a commit of answered writes (then in *err, when not NULL). */
static int node_drain(sa_client *c, sa_error *err) {
  pthread_mutex_lock(&c->pmu);
  while (c->cq_head || c->committing) {
    c->commit_now = true;
    pthread_cond_signal(&c->pcv);
    pthread_cond_wait(&c->dcv, &c->pmu);
  }
  int rc = c->cfail_rc;
  if (rc && err) *err = c->cfail_err;
  pthread_mutex_unlock(&c->pmu);
  return rc;
}

/* Before a read: waits until the store holds every answered write.  0, or
 * the failure that keeps some of them out of it. */
static int node_read_barrier(sa_client *c, sa_error *err) {
  uint64_t want = __atomic_load_n(&c->acked_lsn, __ATOMIC_ACQUIRE);
  if (__atomic_load_n(&c->last_lsn, __ATOMIC_ACQUIRE) >= want) return 0;
  int rc = 0;
  pthread_mutex_lock(&c->pmu);
  while (__atomic_load_n(&c->last_lsn, __ATOMIC_ACQUIRE) < want) {
    if (c->cfail_rc) {
      rc = c->cfail_rc;
      if (err) *err = c->cfail_err;
      break;
    }
    c->commit_now = true;
    pthread_cond_signal(&c->pcv);
    pthread_cond_wait(&c->dcv, &c->pmu);
  }
  pthread_mutex_unlock(&c->pmu);
  return rc;
}

/* g (answered after its commit) failed or could not be committed: cut its
 * records from the WAL and fail its writes.  Every group before it is
 * committed (or lost), so the store holds every version: wov starts over. */
static void node_pipeline_failed(sa_client *c, pgroup *g, int rc, const sa_error *err) {
  if (c->wal) {
    sa_error e2;
    if (wal_rollback(c->wal, g->wal_start, &e2) != 0) node_set_read_only(c, e2.message);
  }
  c->w_lsn = g->first_lsn - 1;
  c->hlc.last = g->hlc_before;
  (void)ov_reset(&c->wov, 0);
  node_fail_logged(g->reqs, rc, err);
  node_settle(c, g->reqs);
  node_group_put(c, g);
}

/* May g be answered before its commit?  Only with room in the map for
 * everything the committer may hold (see NODE_EARLY_HEADROOM). */
static bool node_early_ok(sa_client *c, const pgroup *g) {
  uint64_t need = NODE_EARLY_HEADROOM + 4 * ((uint64_t)g->used + NODE_QUEUE_BYTES);
  return store_headroom(c->store) >= need;
}

/* Answers the logged requests of d as written: durable when synced. */
static void node_answer(sa_client *c, wreq *d, bool durable) {
  for (wreq *r = d; r; r = r->next)
    if (r->logged) {
      r->res.durable = durable;
      r->logged = false;
    }
  node_settle(c, d);
}

/* The data requests d of one group: prepare, WAL write and sync, hand to
 * the committer and answer (or answer once committed, see node_early_ok). */
static void node_pipeline_data(sa_client *c, wreq *d, bool want_flush) {
  sa_error e = {0};
  if (c->wov.n > NODE_WOV_MAX) { /* bound the cache: commit what it covers */
    node_drain(c, NULL);
    (void)ov_reset(&c->wov, 0);
  }
  size_t nops = 0;
  for (wreq *r = d; r; r = r->next) {
    r->rc = 0;
    r->logged = false;
    nops += r->kind == REQ_BATCH ? r->nops : 1;
  }
  pgroup *g = node_group_get(c);
  int rc = 0;
  if (!g)
    rc = sa_fail(&e, SA_ENOMEM, "out of memory staging %zu writes", nops);
  else if (__atomic_load_n(&c->read_only, __ATOMIC_ACQUIRE))
    rc = sa_fail(&e, SA_EREADONLY, "%s", c->read_only_reason);
  else if (ov_reset(&c->gov, nops) != 0)
    rc = sa_fail(&e, SA_ENOMEM, "out of memory staging %zu writes", nops);
  if (g) {
    g->reqs = d;
    g->used = 0;
    g->logged = g->ops = 0;
    g->durable = g->early = g->done = false;
    g->rc = 0;
    g->hlc_before = c->hlc.last;
    g->first_lsn = c->w_lsn + 1;
    g->wal_start = c->wal ? wal_size(c->wal) : 0;
  }
  uint64_t lsn = c->w_lsn;
  for (wreq *r = d; r && !rc; r = r->next)
    rc = node_stage(c, g, r, &lsn, &e);
  if (rc || g->used == 0) { /* nothing was written: an error, or only failed conditions */
    if (g) c->hlc.last = g->hlc_before;
    for (wreq *r = d; r; r = r->next)
      if (rc && r->rc == 0) {
        r->rc = rc;
        r->err = e;
        r->logged = false;
      }
    node_settle(c, d);
    if (g) node_group_put(c, g);
    return;
  }
  g->last_lsn = lsn;
  g->hlc_last = c->hlc.last;
  if (c->wal) {
    bool rolled_back;
    rc = wal_append(c->wal, g->buf, g->used, &rolled_back, &e);
    if (rc == 0) stat_add(&c->stats.wal_bytes_written, g->used);
    if (rc == 0 && (c->opts.auto_flush || want_flush)) {
      if ((rc = node_wal_sync(c, &e)) != 0) node_set_read_only(c, e.message);
      g->durable = c->opts.auto_flush;
    } else if (rc) {
      stat_add(&c->stats.write_errors, 1);
      /* A clean rollback leaves nothing unsynced behind: stay writable
       * (ENOSPC may clear).  A failed one leaves unknown bytes: stop. */
      if (!rolled_back) node_set_read_only(c, e.message);
    } else if (!c->dirty) {
      c->dirty = true;
      c->dirty_since_ns = sa_mono_ns();
    }
    if (rc) {
      c->hlc.last = g->hlc_before;
      node_fail_logged(d, rc, &e);
      node_settle(c, d);
      node_group_put(c, g);
      return;
    }
  }
  c->w_lsn = lsn;
  stat_add(&c->stats.groups, 1);
  stat_add(&c->stats.group_ops, g->logged);
  stat_hist(c->stats.group_hist, sa_stats_group_bounds, SA_STATS_GROUP_BUCKETS - 1,
            (double)g->logged);
  bool cached = ov_merge(&c->wov, &c->gov) == 0;
  if (cached && node_early_ok(c, g)) {
    g->early = true;
    g->reqs = NULL;
    node_queue(c, g);
    __atomic_store_n(&c->acked_lsn, lsn, __ATOMIC_RELEASE);
    node_answer(c, d, g->durable);
    return;
  }
  /* Answered once committed: alone, after every group before it. */
  if ((rc = node_drain(c, &e)) != 0) {
    node_pipeline_failed(c, g, rc, &e);
    return;
  }
  node_queue(c, g);
  pthread_mutex_lock(&c->pmu);
  while (!g->done)
    pthread_cond_wait(&c->dcv, &c->pmu);
  rc = g->rc;
  e = g->err;
  pthread_mutex_unlock(&c->pmu);
  if (rc) {
    node_pipeline_failed(c, g, rc, &e);
    return;
  }
  if (!cached) (void)ov_reset(&c->wov, 0); /* the store holds every version */
  __atomic_store_n(&c->acked_lsn, lsn, __ATOMIC_RELEASE);
  node_answer(c, d, g->durable);
  node_group_put(c, g);
}

static void node_process(sa_client *c, wreq *g) {
  sa_error e = {0};
  bool want_flush = false, want_ckpt = false;
  wreq *data = NULL, **dt = &data, *other = NULL, **ot = &other;
  for (wreq *r = g, *next; r; r = next) {
    next = r->next;
    r->next = NULL;
    want_flush |= r->kind == REQ_FLUSH;
    want_ckpt |= r->kind == REQ_CHECKPOINT;
    if (r->kind <= REQ_BATCH) {
      *dt = r;
      dt = &r->next;
    } else {
      *ot = r;
      ot = &r->next;
    }
  }
  if (data) node_pipeline_data(c, data, want_flush);
  bool ckpt = c->wal && (want_ckpt || wal_size(c->wal) > c->opts.wal_max_bytes / 2);
  if (!other && !ckpt) return;
  /* What follows needs the store to hold every written record.  After a lost
   * commit it does not: no checkpoint may then drop the WAL's records. */
  sa_error lost;
  int lost_rc = node_drain(c, &lost);
  int rc;
  if (want_flush) {
    rc = node_flush_now(c, &e);
    for (wreq *r = other; r; r = r->next)
      if (r->kind == REQ_FLUSH && (r->rc = rc) != 0) r->err = e;
  }
  if (ckpt) {
    rc = lost_rc ? lost_rc : node_checkpoint_now(c, &e);
    for (wreq *r = other; r; r = r->next)
      if (r->kind == REQ_CHECKPOINT && (r->rc = rc) != 0) r->err = lost_rc ? lost : e;
  }
  for (wreq *r = other; r; r = r->next)
    if (r->kind == REQ_OBX_CLAIM || r->kind == REQ_OBX_SETTLE) node_process_outbox(c, r);
  if (other) node_settle(c, other);
}

static void *node_writer_main(void *arg) {
  sa_client *c = arg;
  pthread_setname_np(pthread_self(), "sa-writer"); /* top -H, perf, gdb */
  pthread_mutex_lock(&c->mu);
  for (;;) {
    while (!c->head && !c->stopping) {
      if (c->dirty) {
        uint64_t due = c->dirty_since_ns + (uint64_t)c->opts.flush_interval_ms * 1000000u;
        struct timespec ts = node_deadline(due);
        if (pthread_cond_timedwait(&c->cv, &c->mu, &ts) == ETIMEDOUT && !c->head) {
          pthread_mutex_unlock(&c->mu);
          sa_error e;
          node_flush_now(c, &e); /* failure turns the node read-only */
          c->dirty = false;
          pthread_mutex_lock(&c->mu);
        }
      } else {
        pthread_cond_wait(&c->cv, &c->mu);
      }
    }
    if (!c->head) break; /* stopping, and every request served */
    wreq *g = c->head, *last = g;
    size_t bytes = g->bytes;
    while (last->next && bytes + last->next->bytes <= NODE_GROUP_BYTES) {
      last = last->next;
      bytes += last->bytes;
    }
    c->head = last->next;
    if (!c->head) c->tail = NULL;
    last->next = NULL;
    pthread_mutex_unlock(&c->mu);

    node_process(c, g);

    pthread_mutex_lock(&c->mu);
  }
  pthread_mutex_unlock(&c->mu);
  node_drain(c, NULL);
  return NULL;
}

/* Appends r to the writer's queue, with c->mu held.  Refuses when closing. */
static int node_enqueue_locked(sa_client *c, wreq *r, sa_error *err) {
  if (c->stopping) return sa_fail(err, SA_ECLOSED, "node '%s' is closing", c->node_id);
  r->next = NULL;
  r->done = false;
  r->rc = 0;
  if (c->tail)
    c->tail->next = r;
  else
    c->head = r;
  c->tail = r;
  pthread_cond_signal(&c->cv);
  return 0;
}

/* Queues a malloc'd r whose r->cb the writer will call; frees r when
 * refused. */
static int node_submit_async(sa_client *c, wreq *r, sa_error *err) {
  pthread_mutex_lock(&c->mu);
  int rc = node_enqueue_locked(c, r, err);
  pthread_mutex_unlock(&c->mu);
  if (rc) free(r);
  return rc;
}

/* Queues r and waits until the writer settles it. */
static int node_submit(sa_client *c, wreq *r, sa_error *err) {
  pthread_cond_init(&r->cv, NULL);
  pthread_mutex_lock(&c->mu);
  int rc = node_enqueue_locked(c, r, err);
  if (rc) {
    pthread_mutex_unlock(&c->mu);
    pthread_cond_destroy(&r->cv);
    return rc;
  }
  while (!r->done)
    pthread_cond_wait(&r->cv, &c->mu);
  pthread_mutex_unlock(&c->mu);
  pthread_cond_destroy(&r->cv);
  if (r->rc && err) *err = r->err;
  return r->rc;
}

/* ---- sync: ticks -------------------------------------------------------- */

/* One tick: claim due work (writer), hand it to the transport (here, on the
 * ticking thread, so the network never blocks writes), settle the answers
 * (writer).  Ticks are serialized by tick_serial. */
static int node_tick(sa_client *c, sa_error *err) {
  pthread_mutex_lock(&c->tick_serial);
  const sa_transport *tr = c->transport;
  bool send = tr->send && (!tr->running || tr->running(tr->ctx));
  outbox_batch b = {0};
  wreq r;
  memset(&r, 0, sizeof r);
  r.kind = REQ_OBX_CLAIM;
  r.now = node_now(c);
  r.send = send;
  r.claimed = &b;
  int rc = 0;
  (void)node_read_barrier(c, NULL); /* the counts below move at commits */
  /* Nothing to expire, claim or prune: skip the walk of the outbox. */
  bool idle = !send &&
              __atomic_load_n(&c->obx_count[STORE_OUTBOX_IN_FLIGHT], __ATOMIC_RELAXED) == 0 &&
              __atomic_load_n(&c->obx_count[STORE_OUTBOX_ACKED], __ATOMIC_RELAXED) == 0 &&
              node_obx_total(c) <= c->obx.max_entries;
  if (!idle) rc = node_submit(c, &r, err);
  if (rc == 0 && b.n) {
    bool *acked = calloc(b.n, sizeof *acked);
    uint64_t *lsns = malloc(b.n * sizeof *lsns);
    if (!acked || !lsns) {
      rc = sa_fail(err, SA_ENOMEM, "out of memory settling %zu operations", b.n);
    } else {
      for (size_t i = 0; i < b.n; i++)
        lsns[i] = b.ops[i].lsn;
      if (tr->send(tr->ctx, b.ops, b.n, acked) != 0)
        memset(acked, 0, b.n * sizeof *acked); /* a failed hand-over acknowledges nothing */
      wreq s;
      memset(&s, 0, sizeof s);
      s.kind = REQ_OBX_SETTLE;
      s.now = node_now(c);
      s.lsns = lsns;
      s.acked = acked;
      s.n = b.n;
      rc = node_submit(c, &s, err);
    }
    free(acked);
    free(lsns);
  }
  free(b.ops);
  __atomic_store_n(&c->last_tick_ms, node_now(c), __ATOMIC_RELAXED);
  __atomic_add_fetch(&c->ticks, 1, __ATOMIC_RELAXED);
  pthread_mutex_unlock(&c->tick_serial);
  return rc;
}

/* The tick thread: a job loop that runs node_tick every tick_interval_ms,
 * or at once when kicked (tick_on_write), until tick_stop.  Stop: set
 * tick_stop under tmu, signal tcv, join. */
static void *node_ticker_main(void *arg) {
  sa_client *c = arg;
  pthread_setname_np(pthread_self(), "sa-tick"); /* top -H, perf, gdb */
  pthread_mutex_lock(&c->tmu);
  while (!c->tick_stop) {
    uint64_t due = sa_mono_ns() + (uint64_t)c->opts.tick_interval_ms * 1000000u;
    struct timespec ts = node_deadline(due);
    while (!c->tick_stop && !c->tick_kick)
      if (pthread_cond_timedwait(&c->tcv, &c->tmu, &ts) == ETIMEDOUT) break;
    if (c->tick_stop) break;
    c->tick_kick = false;
    pthread_mutex_unlock(&c->tmu);
    sa_error e;
    if (node_tick(c, &e) != 0 && e.code != SA_EREADONLY && e.code != SA_ECLOSED)
      node_log(c, SA_LOG_WARN, "outbox tick failed: %s", e.message);
    pthread_mutex_lock(&c->tmu);
  }
  pthread_mutex_unlock(&c->tmu);
  return NULL;
}

/* At open: in-flight work goes back to the queue; per-state counts. */
static int node_outbox_open(sa_client *c, sa_error *err) {
  store_wtxn *t;
  int rc = store_wbegin(c->store, &t, err);
  if (rc) return rc;
  /* The replay wrote LSNs applied-before + 1 .. applied, one entry each. */
  uint64_t fresh = c->recovery.records_replayed;
  rc =
      outbox_recover(t, node_now(c), store_applied_lsn(c->store) - fresh, fresh, c->obx_count, err);
  if (rc) {
    store_wabort(t);
    return rc;
  }
  return store_wcommit(t, store_applied_lsn(c->store), c->hlc.last, err);
}

static void node_pick_sync(sa_client *c, const sa_options *o) {
  if (!o->enable_transport)
    c->transport = &sa_transport_disabled;
  else if (o->transport)
    c->transport = o->transport;
  else if (o->transport_kind && strcmp(o->transport_kind, "disabled") == 0)
    c->transport = &sa_transport_disabled;
  else
    c->transport = &sa_transport_stub;
  if (!o->enable_discovery)
    c->discovery = &sa_discovery_disabled;
  else if (o->discovery)
    c->discovery = o->discovery;
  else if (o->discovery_kind && strcmp(o->discovery_kind, "disabled") == 0)
    c->discovery = &sa_discovery_disabled;
  else
    c->discovery = &sa_discovery_stub;
  c->obx = (outbox_cfg){.batch = o->sync_batch_size,
                        .max_retries = o->max_retries,
                        .retry_base_ms = o->retry_base_ms,
                        .retry_max_ms = o->retry_max_ms,
                        .ack_timeout_ms = o->ack_timeout_ms,
                        .max_entries = o->outbox_max,
                        .retention_ms = o->outbox_retention_ms};
  uint64_t h = 1469598103934665603ull; /* FNV-1a of the node id, mixed with time */
  for (const char *p = c->node_id; *p; p++)
    h = (h ^ (unsigned char)*p) * 1099511628211ull;
  c->rng = (h ^ sa_mono_ns()) | 1;
}

/* ---- open / close ------------------------------------------------------ */

/* Stops the committer thread (idle: the writer drained it). */
static void node_stop_committer(sa_client *c) {
  node_join(c->committer, &c->committer_started, &c->pmu, &c->pcv, &c->pstop);
}

static void node_free(sa_client *c) {
  node_stop_syncer(c);
  node_stop_committer(c);
  if (c->store) store_close(c->store);
  if (c->wal) wal_close(c->wal);
  if (c->tmpdir) {
    char lock[PATH_MAX];
    snprintf(lock, sizeof lock, "%s-lock", c->store_path);
    unlink(c->store_path);
    unlink(lock);
    rmdir(c->tmpdir);
    free(c->tmpdir);
  }
  if (c->transport && c->transport->close) c->transport->close(c->transport->ctx);
  if (c->discovery && c->discovery->close) c->discovery->close(c->discovery->ctx);
  pthread_mutex_destroy(&c->mu);
  pthread_cond_destroy(&c->cv);
  pthread_mutex_destroy(&c->tmu);
  pthread_cond_destroy(&c->tcv);
  pthread_cond_destroy(&c->lsn_cv);
  pthread_mutex_destroy(&c->tick_serial);
  pthread_mutex_destroy(&c->pmu);
  pthread_cond_destroy(&c->pcv);
  pthread_cond_destroy(&c->dcv);
  pthread_mutex_destroy(&c->smu);
  pthread_cond_destroy(&c->scv);
  for (pgroup *g = c->gfree, *next; g; g = next) {
    next = g->next;
    free(g->buf);
    free(g);
  }
  ov_free(&c->gov);
  ov_free(&c->wov);
  free(c->wal_path);
  free(c->store_path);
  free(c->ops);
  free(c);
}

int sa_client_open(sa_client **out, const sa_options *opts, sa_error *err) {
  if (!out) return sa_fail(err, SA_EINVAL, "sa_client_open: out is NULL");
  *out = NULL;
  if (!opts) return sa_fail(err, SA_EINVAL, "sa_client_open: options are NULL");
  sa_options o = *opts;
  int rc = node_check_options(&o, err);
  if (rc) return rc;

  sa_client *c = calloc(1, sizeof *c);
  if (!c) return sa_fail(err, SA_ENOMEM, "out of memory");
  pthread_mutex_init(&c->mu, NULL);
  pthread_mutex_init(&c->pmu, NULL);
  pthread_cond_init(&c->dcv, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&c->pcv, &ca);
  pthread_cond_init(&c->cv, &ca);
  pthread_cond_init(&c->tcv, &ca);
  pthread_cond_init(&c->lsn_cv, &ca);
  pthread_cond_init(&c->scv, &ca);
  pthread_condattr_destroy(&ca);
  pthread_mutex_init(&c->smu, NULL);
  pthread_mutex_init(&c->tmu, NULL);
  pthread_mutex_init(&c->tick_serial, NULL);
  snprintf(c->node_id, sizeof c->node_id, "%s", o.node_id);

  if (o.persistent) {
    c->wal_path = strdup(o.wal_path);
    c->store_path =
        o.store_path && *o.store_path ? strdup(o.store_path) : node_store_path(o.wal_path);
  } else {
    const char *tmp = getenv("TMPDIR");
    char tmpl[PATH_MAX];
    snprintf(tmpl, sizeof tmpl, "%s/softadastra-mem-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    c->wal_path = strdup("");
    if (mkdtemp(tmpl)) {
      c->tmpdir = strdup(tmpl);
      size_t n = strlen(tmpl) + 16;
      if ((c->store_path = malloc(n))) snprintf(c->store_path, n, "%s/store.mdb", tmpl);
    } else {
      rc = sa_fail(err, sa_errno_code(errno), "cannot create a private directory '%s': %s", tmpl,
                   strerror(errno));
      node_free(c);
      return rc;
    }
  }
  if (!c->wal_path || !c->store_path) {
    node_free(c);
    return sa_fail(err, SA_ENOMEM, "out of memory");
  }
  if (o.persistent && strcmp(c->wal_path, c->store_path) == 0) {
    node_free(c);
    return sa_fail(err, SA_EINVAL, "store_path and wal_path are the same file '%s'", o.wal_path);
  }
  o.node_id = c->node_id;
  o.wal_path = c->wal_path;
  o.store_path = c->store_path;
  o.transport_kind = o.discovery_kind = NULL; /* resolved now; not kept */
  c->opts = o;
  node_pick_sync(c, &o);

  sa_wal_report rep;
  memset(&rep, 0, sizeof rep);
  if (o.persistent) {
    if ((rc = wal_open(&c->wal, c->wal_path, c->node_id, err)) != 0 ||
        (rc = wal_scan(c->wal, NULL, NULL, &rep, err)) != 0) {
      node_free(c);
      return rc;
    }
    wal_set_prealloc(c->wal, node_wal_chunk(o.wal_max_bytes));
    if (rep.state == SA_WAL_CORRUPT) {
      rc = sa_fail(err, SA_ECORRUPT,
                   "WAL '%s' is corrupt at offset %llu (%s) and valid records follow at "
                   "offset %llu: refusing to open; nothing was modified.  Run `softadastra "
                   "wal repair %s` to truncate it at offset %llu (a copy is kept)",
                   c->wal_path, (unsigned long long)rep.bad_offset, rep.reason,
                   (unsigned long long)rep.next_good_offset, c->wal_path,
                   (unsigned long long)rep.bad_offset);
      node_free(c);
      return rc;
    }
  }
  rc = store_open(&c->store, c->store_path, c->node_id, o.persistent, o.store_max_bytes, err);
  if (rc == 0 && o.persistent) rc = node_recover(c, &rep, err);
  if (rc == 0 && !o.persistent) c->last_lsn = store_applied_lsn(c->store);
  if (rc == 0) rc = node_outbox_open(c, err);
  c->w_lsn = c->last_lsn;
  c->acked_lsn = c->last_lsn;
  if (rc == 0) {
    if (pthread_create(&c->committer, NULL, node_committer_main, c) != 0)
      rc = sa_fail(err, SA_ENOMEM, "cannot start the committer thread");
    else
      c->committer_started = true;
  }
  if (rc == 0 && store_mode(c->store) == STORE_SNAPSHOTS) {
    if (pthread_create(&c->syncer, NULL, node_syncer_main, c) != 0)
      rc = sa_fail(err, SA_ENOMEM, "cannot start the store sync thread");
    else
      c->syncer_started = true;
  }
  if (rc == 0 && pthread_create(&c->writer, NULL, node_writer_main, c) != 0)
    rc = sa_fail(err, SA_ENOMEM, "cannot start the writer thread");
  if (rc) {
    node_free(c);
    return rc;
  }
  c->writer_started = true;
  if (!o.tick_manual) {
    if (pthread_create(&c->ticker, NULL, node_ticker_main, c) != 0) {
      sa_client_close(c);
      return sa_fail(err, SA_ENOMEM, "cannot start the tick thread");
    }
    c->ticker_started = true;
  }
  if (o.persistent)
    node_log(c, SA_LOG_INFO,
             "node %s recovered WAL %s: %llu records scanned, %llu replayed, %llu torn bytes "
             "cut%s%s",
             c->node_id, c->wal_path, (unsigned long long)c->recovery.records_scanned,
             (unsigned long long)c->recovery.records_replayed,
             (unsigned long long)c->recovery.torn_bytes, c->recovery.torn_path[0] ? " into " : "",
             c->recovery.torn_path);
  const store_open_report *sr = store_report(c->store);
  c->recovery.store_rolled_back = sr->rolled_back;
  if (sr->rolled_back)
    node_log(c, SA_LOG_WARN,
             "store %s was not closed cleanly and the machine restarted since: rolled it back "
             "to its last sync point (snapshot %llu; it had reached %llu), and the WAL "
             "replayed the rest",
             c->store_path, (unsigned long long)sr->to_txnid, (unsigned long long)sr->from_txnid);
  else if (sr->unclean)
    node_log(c, SA_LOG_INFO,
             "store %s was not closed cleanly (same boot: the file is whole and was kept)",
             c->store_path);
  if (sr->foreign_sync)
    node_log(c, SA_LOG_WARN,
             "store %s: its sync-point file did not describe it (replaced or copied?); a new "
             "one was written",
             c->store_path);
  if (c->transport->stub)
    node_log(c, SA_LOG_WARN,
             "sync transport '%s' is a stub: it reaches no peer, so queued work is retried "
             "with backoff and marked failed after %u attempts",
             c->transport->kind, c->obx.max_retries);
  if (c->discovery->stub)
    node_log(c, SA_LOG_WARN, "peer discovery '%s' is a stub: it finds no peers",
             c->discovery->kind);
  *out = c;
  return 0;
}

void sa_client_close(sa_client *c) {
  if (!c) return;
  if (c->ticker_started) { /* first: a tick may be waiting on the writer */
    pthread_mutex_lock(&c->tmu);
    c->tick_stop = true;
    pthread_cond_signal(&c->tcv);
    pthread_mutex_unlock(&c->tmu);
    pthread_join(c->ticker, NULL);
    /* ticker_started stays set: the committer may still read it while it
     * settles writes queued before this call (async). */
  }
  if (c->writer_started) {
    pthread_mutex_lock(&c->mu);
    c->stopping = true;
    pthread_cond_signal(&c->cv);
    pthread_cond_broadcast(&c->lsn_cv);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->writer, NULL); /* it drained the committer */
  }
  node_stop_committer(c);
  node_stop_syncer(c);
  if (c->wal && !c->read_only) {
    sa_error e;
    c->dirty = true;
    if (node_flush_now(c, &e) == 0) store_sync(c->store, &e);
  }
  node_free(c);
}

/* ---- writes ------------------------------------------------------------ */

static int node_check_value(sa_client *c, const char *key, size_t len, sa_error *err) {
  if (len > c->opts.max_value_bytes)
    return sa_fail(err, SA_ETOOBIG,
                   "value for key '%.200s' is %zu bytes; the limit is %u bytes "
                   "(max_value_bytes)",
                   key, len, c->opts.max_value_bytes);
  return 0;
}

static int node_write_preflight(sa_client *c, const char *key, sa_error *err) {
  if (!c) return sa_fail(err, SA_EINVAL, "client is NULL");
  if (__atomic_load_n(&c->read_only, __ATOMIC_ACQUIRE))
    return sa_fail(err, SA_EREADONLY, "%s", c->read_only_reason);
  return key ? sa_key_check(key, strlen(key), err)
             : sa_fail(err, SA_EKEY, "invalid key: key is NULL");
}

/* Checks a put and fills the zeroed r with it. */
static int node_put_prepare(sa_client *c, const char *key, const void *data, size_t len,
                            const sa_write_opts *wo, wreq *r, sa_error *err) {
  int rc = node_write_preflight(c, key, err);
  if (rc || (rc = node_check_value(c, key, len, err)) != 0) return rc;
  if (len && !data) return sa_fail(err, SA_EINVAL, "value data is NULL with length %zu", len);
  if (wo && wo->cond != SA_COND_NONE && wo->cond != SA_COND_VERSION && wo->cond != SA_COND_ABSENT)
    return sa_fail(err, SA_EINVAL, "unknown write condition %d", wo->cond);
  r->kind = REQ_PUT;
  r->key = key;
  r->klen = (uint32_t)strlen(key);
  r->val = data;
  r->vlen = (uint32_t)len;
  if (wo) r->cond = *wo;
  r->bytes = SA_WAL_RECORD_HEADER + 8 + r->klen + len;
  return 0;
}

/* Checks a remove and fills the zeroed r with it. */
static int node_remove_prepare(sa_client *c, const char *key, const sa_write_opts *wo, wreq *r,
                               sa_error *err) {
  int rc = node_write_preflight(c, key, err);
  if (rc) return rc;
  if (wo && wo->cond == SA_COND_ABSENT)
    return sa_fail(err, SA_EINVAL, "a remove cannot require the key to be absent");
  if (wo && wo->cond != SA_COND_NONE && wo->cond != SA_COND_VERSION)
    return sa_fail(err, SA_EINVAL, "unknown write condition %d", wo->cond);
  r->kind = REQ_DEL;
  r->key = key;
  r->klen = (uint32_t)strlen(key);
  if (wo) r->cond = *wo;
  r->bytes = SA_WAL_RECORD_HEADER + 4 + r->klen;
  return 0;
}

int sa_client_put_ex(sa_client *c, const char *key, const void *data, size_t len,
                     const sa_write_opts *wo, sa_write_result *res, sa_error *err) {
  wreq r;
  memset(&r, 0, sizeof r);
  int rc = node_put_prepare(c, key, data, len, wo, &r, err);
  if (rc == 0) rc = node_submit(c, &r, err);
  if (rc == 0 && res) *res = r.res;
  return rc;
}

/* A zeroed heap request for an asynchronous write, in *out. */
static int node_async_req(sa_client *c, sa_write_cb cb, void *arg, wreq **out, sa_error *err) {
  *out = NULL;
  if (!c) return sa_fail(err, SA_EINVAL, "client is NULL");
  if (!cb) return sa_fail(err, SA_EINVAL, "write callback is NULL");
  wreq *r = calloc(1, sizeof *r);
  if (!r) return sa_fail(err, SA_ENOMEM, "out of memory queuing a write");
  r->cb = cb;
  r->cb_arg = arg;
  *out = r;
  return 0;
}

int sa_client_put_async(sa_client *c, const char *key, const void *data, size_t len,
                        const sa_write_opts *wo, sa_write_cb cb, void *arg, sa_error *err) {
  wreq *r;
  int rc = node_async_req(c, cb, arg, &r, err);
  if (rc == 0 && (rc = node_put_prepare(c, key, data, len, wo, r, err)) != 0) free(r);
  return rc ? rc : node_submit_async(c, r, err);
}

int sa_client_remove_async(sa_client *c, const char *key, const sa_write_opts *wo, sa_write_cb cb,
                           void *arg, sa_error *err) {
  wreq *r;
  int rc = node_async_req(c, cb, arg, &r, err);
  if (rc == 0 && (rc = node_remove_prepare(c, key, wo, r, err)) != 0) free(r);
  return rc ? rc : node_submit_async(c, r, err);
}

int sa_client_put_bytes(sa_client *c, const char *key, const void *data, size_t len,
                        sa_error *err) {
  return sa_client_put_ex(c, key, data, len, NULL, NULL, err);
}

int sa_client_put(sa_client *c, const char *key, const char *value, sa_error *err) {
  if (!value) return sa_fail(err, SA_EINVAL, "value is NULL");
  return sa_client_put_ex(c, key, value, strlen(value), NULL, NULL, err);
}

int sa_client_remove_ex(sa_client *c, const char *key, const sa_write_opts *wo,
                        sa_write_result *res, sa_error *err) {
  wreq r;
  memset(&r, 0, sizeof r);
  int rc = node_remove_prepare(c, key, wo, &r, err);
  if (rc == 0) rc = node_submit(c, &r, err);
  if (rc == 0 && res) *res = r.res;
  return rc;
}

int sa_client_remove(sa_client *c, const char *key, sa_error *err) {
  return sa_client_remove_ex(c, key, NULL, NULL, err);
}

int sa_client_batch(sa_client *c, const sa_batch_op *ops, size_t n, sa_write_result *res,
                    sa_error *err) {
  if (!c) return sa_fail(err, SA_EINVAL, "client is NULL");
  if (!ops || n == 0 || n > SA_WAL_MAX_BATCH_OPS)
    return sa_fail(err, SA_EINVAL, "a batch holds 1 to %d operations, not %zu",
                   SA_WAL_MAX_BATCH_OPS, ops ? n : 0);
  if (__atomic_load_n(&c->read_only, __ATOMIC_ACQUIRE))
    return sa_fail(err, SA_EREADONLY, "%s", c->read_only_reason);
  size_t total = 0;
  for (size_t i = 0; i < n; i++) {
    const sa_batch_op *o = &ops[i];
    if (o->op != SA_OP_PUT && o->op != SA_OP_DELETE)
      return sa_fail(err, SA_EINVAL, "batch operation %zu: unknown op %d", i, o->op);
    sa_error ke;
    if (!o->key || sa_key_check(o->key, strlen(o->key), &ke) != 0)
      return sa_fail(err, SA_EKEY, "batch operation %zu: %s", i,
                     o->key ? ke.message : "key is NULL");
    size_t vlen = o->op == SA_OP_PUT ? o->len : 0;
    if (o->op == SA_OP_PUT) {
      int rc = node_check_value(c, o->key, vlen, err);
      if (rc) return rc;
      if (vlen && !o->data)
        return sa_fail(err, SA_EINVAL, "batch operation %zu: value data is NULL", i);
    }
    total += strlen(o->key) + vlen;
  }
  if (total > c->opts.max_batch_bytes)
    return sa_fail(err, SA_ETOOBIG, "batch is %zu bytes; the limit is %u bytes (max_batch_bytes)",
                   total, c->opts.max_batch_bytes);
  wreq r;
  memset(&r, 0, sizeof r);
  r.kind = REQ_BATCH;
  r.ops = ops;
  r.nops = n;
  r.bytes = SA_WAL_RECORD_HEADER + 4 + 9 * n + total;
  int rc = node_submit(c, &r, err);
  if (rc == 0 && res) *res = r.res;
  return rc;
}

int sa_client_flush(sa_client *c, sa_error *err) {
  if (!c) return sa_fail(err, SA_EINVAL, "client is NULL");
  wreq r;
  memset(&r, 0, sizeof r);
  r.kind = REQ_FLUSH;
  return node_submit(c, &r, err);
}

int sa_client_checkpoint(sa_client *c, sa_error *err) {
  if (!c) return sa_fail(err, SA_EINVAL, "client is NULL");
  wreq r;
  memset(&r, 0, sizeof r);
  r.kind = REQ_CHECKPOINT;
  return node_submit(c, &r, err);
}

/* ---- reads and state --------------------------------------------------- */

int sa_client_get(sa_client *c, const char *key, sa_value *out, sa_error *err) {
  if (!out) return sa_fail(err, SA_EINVAL, "sa_client_get: out is NULL");
  memset(out, 0, sizeof *out);
  if (!c) return sa_fail(err, SA_EINVAL, "client is NULL");
  if (!key) return sa_fail(err, SA_EKEY, "invalid key: key is NULL");
  size_t n = strlen(key);
  int rc = sa_key_check(key, n, err);
  if (rc || (rc = node_read_barrier(c, err)) != 0) return rc;
  return store_get(c->store, key, (uint32_t)n, out, err);
}

int sa_client_get_with(sa_client *c, const char *key, void (*fn)(void *arg, const sa_value *v),
                       void *arg, sa_error *err) {
  if (!c || !fn) return sa_fail(err, SA_EINVAL, "sa_client_get_with: NULL argument");
  if (!key) return sa_fail(err, SA_EKEY, "invalid key: key is NULL");
  size_t n = strlen(key);
  int rc = sa_key_check(key, n, err);
  if (rc || (rc = node_read_barrier(c, err)) != 0) return rc;
  return store_get_with(c->store, key, (uint32_t)n, fn, arg, err);
}

void sa_value_free(sa_value *v) {
  if (!v) return;
  free(v->data);
  memset(v, 0, sizeof *v);
}

size_t sa_client_size(sa_client *c) {
  if (!c) return 0;
  (void)node_read_barrier(c, NULL); /* after a lost commit: what the store holds */
  return (size_t)store_count(c->store);
}

int sa_client_list(sa_client *c, const char *prefix, const char *after, size_t limit,
                   bool with_values, sa_list *out, sa_error *err) {
  if (!out) return sa_fail(err, SA_EINVAL, "sa_client_list: out is NULL");
  memset(out, 0, sizeof *out);
  if (!c) return sa_fail(err, SA_EINVAL, "client is NULL");
  if (limit == 0 || limit > 10000)
    return sa_fail(err, SA_EINVAL, "limit %zu is out of range (1..10000)", limit);
  if (prefix && strlen(prefix) > SA_KEY_MAX)
    return sa_fail(err, SA_EKEY, "prefix is longer than the %d-byte key limit", SA_KEY_MAX);
  if (after && strlen(after) > SA_KEY_MAX)
    return sa_fail(err, SA_EKEY, "after is longer than the %d-byte key limit", SA_KEY_MAX);
  int rc = node_read_barrier(c, err);
  if (rc) return rc;
  return store_list(c->store, prefix, after, limit, with_values, out, err);
}

int sa_client_sync_state(sa_client *c, sa_sync_state *out, sa_error *err) {
  if (!c || !out) return sa_fail(err, SA_EINVAL, "sa_client_sync_state: NULL argument");
  memset(out, 0, sizeof *out);
  (void)node_read_barrier(c, NULL); /* the counts move at commits */
  out->queued = __atomic_load_n(&c->obx_count[STORE_OUTBOX_QUEUED], __ATOMIC_RELAXED);
  out->in_flight = __atomic_load_n(&c->obx_count[STORE_OUTBOX_IN_FLIGHT], __ATOMIC_RELAXED);
  out->acknowledged = __atomic_load_n(&c->obx_count[STORE_OUTBOX_ACKED], __ATOMIC_RELAXED);
  out->failed = __atomic_load_n(&c->obx_count[STORE_OUTBOX_FAILED], __ATOMIC_RELAXED);
  out->outbox_size = out->queued + out->in_flight + out->acknowledged + out->failed;
  out->total_retries = __atomic_load_n(&c->obx_retries, __ATOMIC_RELAXED);
  out->pruned = __atomic_load_n(&c->obx_pruned, __ATOMIC_RELAXED);
  out->ticks = __atomic_load_n(&c->ticks, __ATOMIC_RELAXED);
  out->last_tick_ms = __atomic_load_n(&c->last_tick_ms, __ATOMIC_RELAXED);
  out->last_lsn = __atomic_load_n(&c->last_lsn, __ATOMIC_ACQUIRE);
  out->outbox_max = c->obx.max_entries;
  out->overflow = out->outbox_size > c->obx.max_entries;
  const sa_transport *t = c->transport;
  out->transport_enabled = c->opts.enable_transport && t->send;
  out->transport_running = t->send && (!t->running || t->running(t->ctx));
  out->transport_stub = t->stub;
  snprintf(out->transport_kind, sizeof out->transport_kind, "%s", t->kind);
  const sa_discovery *d = c->discovery;
  out->discovery_enabled = c->opts.enable_discovery && d != &sa_discovery_disabled;
  out->discovery_stub = d->stub;
  snprintf(out->discovery_kind, sizeof out->discovery_kind, "%s", d->kind);
  out->peers = d->peers ? d->peers(d->ctx) : 0;
  return 0;
}

int sa_client_sync_tick(sa_client *c, sa_error *err) {
  if (!c) return sa_fail(err, SA_EINVAL, "client is NULL");
  sa_error local;
  return node_tick(c, err ? err : &local);
}

int sa_client_outbox_list(sa_client *c, uint64_t after_lsn, sa_outbox_entry *out, size_t max,
                          size_t *n, sa_error *err) {
  if (!c || !n || (max && !out))
    return sa_fail(err, SA_EINVAL, "sa_client_outbox_list: NULL argument");
  *n = 0;
  if (max == 0) return 0;
  int rc = node_read_barrier(c, err);
  if (rc) return rc;
  store_obx *tmp = malloc(max * sizeof *tmp);
  if (!tmp) return sa_fail(err, SA_ENOMEM, "out of memory listing %zu outbox entries", max);
  rc = store_obx_list(c->store, after_lsn, max, tmp, n, err);
  for (size_t i = 0; rc == 0 && i < *n; i++)
    out[i] = (sa_outbox_entry){.lsn = tmp[i].lsn,
                               .hlc = tmp[i].hlc,
                               .state = tmp[i].state,
                               .type = tmp[i].type,
                               .attempts = tmp[i].attempts,
                               .at_ms = tmp[i].at_ms};
  free(tmp);
  return rc;
}

int sa_client_status(sa_client *c, sa_status *out, sa_error *err) {
  if (!c || !out) return sa_fail(err, SA_EINVAL, "sa_client_status: NULL argument");
  memset(out, 0, sizeof *out);
  (void)node_read_barrier(c, NULL); /* a lost commit shows as read_only */
  snprintf(out->node_id, sizeof out->node_id, "%s", c->node_id);
  out->persistent = c->opts.persistent;
  out->durable = c->opts.persistent && c->opts.auto_flush;
  out->read_only = __atomic_load_n(&c->read_only, __ATOMIC_ACQUIRE);
  if (out->read_only)
    snprintf(out->read_only_reason, sizeof out->read_only_reason, "%s", c->read_only_reason);
  out->wal_path = c->wal_path;
  out->store_path = c->store_path;
  out->wal_bytes = c->wal ? wal_size(c->wal) : 0;
  /* The store commits before last_lsn moves: read it first, keep order. */
  out->applied_lsn = store_applied_lsn(c->store);
  out->synced_lsn = store_synced_lsn(c->store);
  out->store_syncs = store_syncs(c->store);
  out->store_writebacks = store_writebacks(c->store);
  out->last_lsn = __atomic_load_n(&c->last_lsn, __ATOMIC_ACQUIRE);
  if (out->last_lsn < out->applied_lsn) out->last_lsn = out->applied_lsn;
  out->size = store_count(c->store);
  out->checkpoints = __atomic_load_n(&c->checkpoints, __ATOMIC_RELAXED);
  out->recovery = c->recovery;
  return 0;
}

/* ---- change feed ------------------------------------------------------- */

uint64_t sa_client_changes_floor(sa_client *c) {
  return c ? store_feed_floor(c->store) : 0;
}

int sa_client_changes(sa_client *c, uint64_t since, size_t limit, bool with_values, sa_changes *out,
                      sa_error *err) {
  if (!out) return sa_fail(err, SA_EINVAL, "sa_client_changes: out is NULL");
  memset(out, 0, sizeof *out);
  if (!c) return sa_fail(err, SA_EINVAL, "client is NULL");
  if (limit == 0 || limit > 10000)
    return sa_fail(err, SA_EINVAL, "limit %zu is out of range (1..10000)", limit);
  uint64_t floor = store_feed_floor(c->store);
  if (since < floor)
    return sa_fail(err, SA_EGONE,
                   "changes after LSN %llu are no longer all kept: the oldest since served is "
                   "%llu; reload the keys and follow from the current LSN",
                   (unsigned long long)since, (unsigned long long)floor);
  int rc = node_read_barrier(c, err);
  if (rc) return rc;
  uint64_t last = __atomic_load_n(&c->last_lsn, __ATOMIC_ACQUIRE);
  rc = store_changes(c->store, since, limit, with_values, out, err);
  out->last_lsn = last > out->next_since ? last : out->next_since;
  return rc;
}

int sa_client_wait(sa_client *c, uint64_t after_lsn, uint32_t timeout_ms, uint64_t *last_lsn,
                   sa_error *err) {
  if (!c) return sa_fail(err, SA_EINVAL, "client is NULL");
  uint64_t due = sa_mono_ns() + (uint64_t)timeout_ms * 1000000u;
  struct timespec ts = node_deadline(due);
  int rc = 0;
  pthread_mutex_lock(&c->mu);
  while (!c->stopping && __atomic_load_n(&c->last_lsn, __ATOMIC_ACQUIRE) <= after_lsn)
    if (pthread_cond_timedwait(&c->lsn_cv, &c->mu, &ts) == ETIMEDOUT) break;
  if (c->stopping) rc = sa_fail(err, SA_ECLOSED, "node '%s' is closing", c->node_id);
  pthread_mutex_unlock(&c->mu);
  if (last_lsn) *last_lsn = __atomic_load_n(&c->last_lsn, __ATOMIC_ACQUIRE);
  return rc;
}

int sa_client_stats(sa_client *c, sa_stats *out, sa_error *err) {
  if (!c || !out) return sa_fail(err, SA_EINVAL, "sa_client_stats: NULL argument");
  memset(out, 0, sizeof *out);
  out->groups = __atomic_load_n(&c->stats.groups, __ATOMIC_RELAXED);
  out->group_ops = __atomic_load_n(&c->stats.group_ops, __ATOMIC_RELAXED);
  for (int i = 0; i < SA_STATS_GROUP_BUCKETS; i++)
    out->group_hist[i] = __atomic_load_n(&c->stats.group_hist[i], __ATOMIC_RELAXED);
  out->syncs = __atomic_load_n(&c->stats.syncs, __ATOMIC_RELAXED);
  out->sync_seconds = (double)__atomic_load_n(&c->sync_ns, __ATOMIC_RELAXED) / 1e9;
  for (int i = 0; i < SA_STATS_SYNC_BUCKETS; i++)
    out->sync_hist[i] = __atomic_load_n(&c->stats.sync_hist[i], __ATOMIC_RELAXED);
  out->wal_bytes_written = __atomic_load_n(&c->stats.wal_bytes_written, __ATOMIC_RELAXED);
  out->write_errors = __atomic_load_n(&c->stats.write_errors, __ATOMIC_RELAXED);
  out->store_commits = __atomic_load_n(&c->stats.store_commits, __ATOMIC_RELAXED);
  return 0;
}
