/*
 * node_internal.h -- what the node's files share: the request, the group
 * and the key-version table types, struct sa_client, and the functions one
 * node_*.c file offers the others.
 *
 * What it is not: API.  Nothing here is installed or seen outside core/;
 * the public contract is softadastra.h.
 *
 * Invariants: every field of struct sa_client says which thread owns it or
 * which lock guards it.  Lock order (docs/threads.md): wr.mu and cm.mu are
 * never held together, nor during I/O; tick_serial is taken before either;
 * sy.mu and tk.mu are leaves (held only to set a flag and signal).
 *
 * Threads: see each function's comment; the map of the node's threads is
 * docs/threads.md.
 */
#ifndef SA_NODE_INTERNAL_H
#define SA_NODE_INTERNAL_H

#include "hlc.h"
#include "internal.h"
#include "outbox.h"
#include "store.h"
#include "transport.h"
#include "wal.h"
#include "worker.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define NODE_GROUP_BYTES (8u << 20)    /* soft bound on one group's record bytes */
#define NODE_REPLAY_TXN_RECORDS 8192   /* records per LMDB txn during replay */
#define NODE_WAL_CHUNK_MAX (1u << 20)  /* WAL preallocation step (node_wal_chunk) */
#define NODE_PRUNE_VISITS_PER_RECORD 4 /* outbox entries a commit over outbox_max may visit */

/* The committer (see "writer pipeline"): it commits the groups waiting for
 * it once the oldest has waited store_commit_ms (store_commit_busy_ms while
 * they hold SA_COMMIT_BUSY_OPS operations or more), at once when a reader
 * or the writer asks, and at once when they fill 3/4 of its queue; the
 * writer waits for it only when NODE_QUEUE_GROUPS groups or
 * NODE_QUEUE_BYTES record bytes wait.  At the default 30 ms span the
 * queue holds about 160 groups at its busiest here (5,000 groups/s); the
 * room above that keeps a longer span or a slow commit from stalling
 * every client. */
#define NODE_QUEUE_GROUPS 1024
#define NODE_QUEUE_BYTES (4u << 20)
/* A group is answered before its store commit only while the store has this
 * much room above its highest page, plus 4x the group's and the queue's record
 * bytes (the keys, outbox and change feed databases take each value up to
 * twice, and every operation new B-tree pages): a commit of acknowledged
 * writes must not find the map full. */
#define NODE_EARLY_HEADROOM (64ull << 20)
/* The writer's key-version cache is emptied (after a drain) past this many
 * keys, or past this many origins in its origin table. */
#define NODE_WOV_MAX 65536
#define NODE_ORIGINS_MAX 4096

typedef enum {
  REQ_PUT,
  REQ_DEL,
  REQ_BATCH,
  REQ_SYNC, /* a batch from a peer (sa_client_sync_apply) */
  REQ_FLUSH,
  REQ_CHECKPOINT,
  REQ_OBX_CLAIM,  /* outbox: expire, claim for the transport, prune */
  REQ_OBX_SETTLE, /* outbox: record the transport's answers */
  REQ_SYNC_GC,    /* sync: acknowledge outbox entries, drop tombstones, persist acks */
} req_kind;

typedef struct wreq {
  struct wreq *next;
  req_kind kind;
  const char *key;
  uint32_t klen;
  const void *val;
  uint32_t vlen;
  const char *ctype; /* REQ_PUT: its content type (ctlen bytes), NULL when none */
  uint32_t ctlen;
  sa_write_opts cond;
  const sa_batch_op *ops;
  size_t nops;
  const sa_write_opts *conds; /* REQ_BATCH: NULL or one per op (sa_client_batch_ex) */
  size_t failed_op;           /* REQ_BATCH: the op whose condition failed (SA_ECONFLICT) */
  uint64_t now;               /* outbox requests: the tick's time */
  bool send;                  /* REQ_OBX_CLAIM: the transport takes work */
  outbox_batch *claimed;      /* REQ_OBX_CLAIM: out */
  const uint64_t *lsns;       /* REQ_OBX_SETTLE: in */
  const bool *acked;
  size_t n;                   /* REQ_OBX_SETTLE: lsns; REQ_SYNC: items */
  const sa_sync_item *items;  /* REQ_SYNC: in */
  const char *peer;           /* REQ_SYNC: the peer's id */
  uint64_t cursor;            /* REQ_SYNC: the peer's new cursor */
  sa_sync_apply_result *sres; /* REQ_SYNC: out (never NULL) */
  struct sync_gc *gc;         /* REQ_SYNC_GC: in and out (node_sync.c) */
  size_t bytes;               /* estimated record size */
  bool logged;                /* writer: has a record in the current group */
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
 * that own them may be settled and freed while the table is still read).
 * With each version, the pair (hlc, origin) of the write that leaves it,
 * which the sync rule compares (node_stage_sync); hlc 0 when the entry does
 * not know it (a delete of a key that was not live changes no pair: the
 * pair is then the one of the table below, or of the store). */
typedef struct keyver_ent {
  uint64_t h;   /* FNV-1a of the key; 0 marks an empty slot */
  uint32_t off; /* key bytes at keys + off */
  uint32_t klen;
  uint64_t version; /* 0: deleted (a tombstone when hlc is known) */
  uint64_t hlc;     /* 0: the pair is not known here */
  uint32_t origin;  /* index in the writer's origin table (node_origin_id); 0: this node */
} keyver_ent;

typedef struct keyver {
  keyver_ent *tab;
  size_t cap; /* power of two, at least twice the entries */
  size_t n;   /* entries */
  char *keys;
  size_t kused, kcap;
} keyver;

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
  uint64_t sync_ops;  /* of them, items of peers' batches */
  uint64_t queued_ns; /* when handed to the committer */
  bool durable;       /* the records were synced with auto_flush on */
  bool early;         /* answered before its store commit */
  bool done;          /* under cm.mu: committed or failed (not early) */
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
  uint64_t replay_entries; /* outbox entries the open's replay wrote */

  /* The committer (node_commit.c): cm.mu guards the fields marked "under
   * cm.mu"; cm.stop makes it exit once idle. */
  sa_worker cm;
  pthread_cond_t dcv;        /* with cm.mu: broadcast after every commit (or failure) */
  pgroup *cq_head, *cq_tail; /* under cm.mu: written groups waiting for their commit */
  size_t cq_groups, cq_bytes;
  uint64_t cq_ops;      /* operations in the queued groups */
  uint64_t cq_sync_ops; /* of them, items of peers' batches */
  unsigned busy_streak; /* under cm.mu: commits in a row of SA_COMMIT_BUSY_OPS or more */
  pgroup *gfree;        /* under cm.mu: spare groups */
  bool committing;      /* under cm.mu: the committer holds groups */
  bool commit_now;      /* under cm.mu: someone waits; do not wait for the delay */
  int cfail_rc;         /* under cm.mu: a commit of answered writes failed */
  sa_error cfail_err;   /* under cm.mu: why (reads then fail with it) */
  uint64_t acked_lsn;   /* atomic: the last LSN answered (reads wait until committed) */
  /* The writer (node_writer.c): wr.mu guards the request FIFO and the
   * blocking callers' done flags; wr.stop is "closing" (no new requests;
   * the writer serves the queued ones, then exits). */
  sa_worker wr;
  pthread_cond_t lsn_cv; /* with wr.mu: broadcast when last_lsn grows or at close */
  wreq *head, *tail;     /* FIFO of pending requests (under wr.mu) */

  /* Writer-owned. */
  sa_hlc hlc;
  uint64_t w_lsn;                     /* last LSN given to a record written to the WAL */
  keyver gov;                         /* versions the group being prepared gives */
  keyver wov;                         /* versions every group written since the last reset gave */
  keyver okv;                         /* the origin table: origin node id -> its index */
  char (*onames)[SA_NODE_ID_MAX + 1]; /* index -> origin; index 0 is this node (unused) */
  uint32_t norigins, ocap;
  wal_op *ops; /* scratch for batches */
  size_t ops_cap;
  bool dirty; /* auto_flush off: appended but not synced */
  uint64_t dirty_since_ns;

  /* Sync. */
  const sa_transport *transport; /* never NULL after open */
  const sa_discovery *discovery;
  outbox_cfg obx;
  uint64_t rng; /* writer-owned backoff jitter state */
  sa_worker tk; /* the tick thread (node_tick.c); kicked at commits (tick_on_write) */
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

  /* Sync between nodes (node_sync.c).  sync_mu (a leaf) guards the peer
   * table; the counters are atomics. */
  pthread_mutex_t sync_mu;
  struct node_peer *peers; /* under sync_mu: known peers (configured or acked) */
  size_t npeers, peers_cap;
  bool peers_configured;  /* under sync_mu: set_peers gave at least one */
  size_t peers_unknown;   /* under sync_mu: configured peers with no node id yet: they hold acks */
  bool tombs_by_ttl_only; /* under sync_mu: sa_client_sync_keep_tombstones (a hub) */
  uint64_t acked_upto;    /* atomic, written by the writer: outbox entries through this
                             LSN were acknowledged for every configured peer */
  sa_sync_counters sc;    /* atomics (tombs and dropped_records read from the store) */
  uint64_t gc_ack;        /* tick (tick_serial): the peers' position the last GC used */
  uint64_t gc_next_ms;    /* tick (tick_serial): when tombstones may next age out */

  /* Store sync points (node_syncer_main). */
  sa_worker sy;
  bool syncer_idle; /* seq_cst: no commit since its last kick; wake it at one */

  /* Backups (node_backup.c): the store's epoch (set at open, then read
   * only) and the counters of sa_client_backup_stats (atomics). */
  uint64_t epoch;
  sa_backup_stats bk;
};

/* A peer as the sync API knows it (node_sync.c). */
typedef struct node_peer {
  char id[SA_NODE_ID_MAX + 1];
  uint64_t acked;  /* its acknowledged position in our feed */
  bool configured; /* in the set_peers list */
  bool dirty;      /* acked not yet persisted */
  /* The cursor of a batch that applied nothing: no record is logged for it
   * (a record would move this node's last LSN, which moves the peer's
   * cursor of us, which would log a record there: an endless exchange of
   * empty records).  Kept here, persisted by the sync tick, never below
   * the stored one; lost in a crash, it only makes the puller read those
   * skipped items again. */
  uint64_t cursor;
  bool cursor_dirty;
} node_peer;

/* ---- node.c: shared helpers ---------------------------------------------- */

/* The node's clock (opts.clock, or unix ms).  Any thread. */
uint64_t node_now(const sa_client *c);

/* Formats and hands a line to opts.log, if set.  Any thread. */
void node_log(const sa_client *c, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Turns the node read-only with reason why; the first caller's reason is
 * kept.  Writer, committer or syncer. */
void node_set_read_only(sa_client *c, const char *why);

/* Adds v to a statistics counter (relaxed atomic).  Any thread. */
static inline void node_stat_add(uint64_t *p, uint64_t v) {
  __atomic_add_fetch(p, v, __ATOMIC_RELAXED);
}

/* ---- node_options.c ------------------------------------------------------- */

/* Fills zero numeric fields of o with defaults and checks ranges.  0 or
 * SA_EINVAL (err says which field).  Opening thread. */
int node_check_options(sa_options *o, sa_error *err);

/* The store path for a WAL path: "x.wal" -> "x.mdb", else + ".mdb".
 * Returns a new string the caller frees; NULL when out of memory. */
char *node_store_path(const char *wal_path);

/* ---- node_recovery.c ------------------------------------------------------ */

/* Applies one record's operations and its outbox entry inside the open
 * write txn t; *version is the version the last put produced; *entries is
 * incremented when an outbox entry was written (not for a sync record that
 * applied nothing).  Opening thread (replay) and committer. */
int node_apply_record(store_wtxn *t, const wal_rec *rec, uint64_t *version, uint64_t *entries,
                      sa_error *err);

/* The WAL's preallocation step for wal_max_bytes (wal_set_prealloc). */
uint64_t node_wal_chunk(uint64_t wal_max_bytes);

/* Recovery at open: checks the WAL against the store, cuts a torn tail,
 * replays what the store lacks, sets c->last_lsn.  Opening thread. */
int node_recover(sa_client *c, const sa_wal_report *rep, sa_error *err);

/* At open, after recovery: in-flight outbox work goes back to the queue and
 * the per-state counts are loaded.  Opening thread. */
int node_outbox_open(sa_client *c, sa_error *err);

/* ---- node_keyver.c: the key-version table --------------------------------- */

/* Empties kv and sizes it for n entries (it grows past them).  -1 when out
 * of memory. */
int keyver_reset(keyver *kv, size_t n);
/* true and *version when key is in kv. */
bool keyver_find(const keyver *kv, const char *key, uint32_t klen, uint64_t *version);
/* key's entry, or NULL.  Valid until kv's next change. */
const keyver_ent *keyver_get(const keyver *kv, const char *key, uint32_t klen);
/* Records key's version (the key is copied); an entry already there keeps
 * its pair, a new one knows none.  -1 when out of memory. */
int keyver_set(keyver *kv, const char *key, uint32_t klen, uint64_t version);
/* Records key's version and the pair (hlc > 0, origin index) of the write
 * that leaves it.  -1 when out of memory. */
int keyver_set_pair(keyver *kv, const char *key, uint32_t klen, uint64_t version, uint64_t hlc,
                    uint32_t origin);
/* Sets in dst every entry of src (an entry of src that knows no pair keeps
 * dst's).  -1 when out of memory. */
int keyver_merge(keyver *dst, const keyver *src);
/* Frees kv's memory (kv itself is the caller's). */
void keyver_free(keyver *kv);
/* The writer's origin table: origin's index (0 for this node), added when
 * new.  -1 when out of memory. */
int node_origin_id(sa_client *c, const char *origin, uint32_t olen, uint32_t *id);
/* The origin of index id (valid until the table's next change). */
const char *node_origin_name(const sa_client *c, uint32_t id);
/* Empties wov and the origin table (the store then holds every write the
 * writer staged: after a drain, or a failure that leaves it so). */
void node_overlay_reset(sa_client *c);

/* ---- node_commit.c: the committer ----------------------------------------- */

/* The committer's loop (sa_worker fn, thread "sa-commit"). */
void node_committer_main(void *arg);

/* A spare group, or a new one (NULL when out of memory).  Writer. */
pgroup *node_group_get(sa_client *c);
/* Keeps g as a spare.  Writer or committer (node_group_put_locked: with
 * cm.mu held). */
void node_group_put(sa_client *c, pgroup *g);
void node_group_put_locked(sa_client *c, pgroup *g);

/* Hands g to the committer; first waits while its queue is full.  Writer. */
void node_queue(sa_client *c, pgroup *g);

/* Waits until every queued group is committed.  0, or the failure of a
 * commit of answered writes (then in *err when not NULL).  Writer. */
int node_drain(sa_client *c, sa_error *err);

/* Before a read: waits until the store holds every answered write.  0, or
 * the failure that keeps some of them out.  Any thread but the committer. */
int node_read_barrier(sa_client *c, sa_error *err);

/* ---- node_writer.c: the writer -------------------------------------------- */

/* The writer's loop (sa_worker fn, thread "sa-writer"). */
void node_writer_main(void *arg);

/* Queues r and waits until the writer settles it: r->rc.  Any thread but
 * the writer and the committer. */
int node_submit(sa_client *c, wreq *r, sa_error *err);

/* Queues a malloc'd r whose r->cb the writer (or committer) calls; frees r
 * when refused (closing).  Any thread. */
int node_submit_async(sa_client *c, wreq *r, sa_error *err);

/* Grows g's buffer to need bytes.  -1 when out of memory.  Writer. */
int node_reserve(pgroup *g, size_t need);

/* key's version once every group written is committed (the group being
 * prepared, the groups before it, the store).  Writer. */
int node_version(sa_client *c, const char *key, uint32_t klen, uint64_t *version, sa_error *err);

/* Syncs the WAL if data is unsynced; a failure turns the node read-only.
 * Writer, or the closing thread once the writer has ended. */
int node_flush_now(sa_client *c, sa_error *err);

/* ---- node_sync.c: sync between nodes --------------------------------------- */

/* Stages a REQ_SYNC request into g (node_stage's part for it).  Writer. */
int node_stage_sync(sa_client *c, pgroup *g, wreq *r, uint64_t *lsn, sa_error *err);

/* At open: loads the peers' acknowledged positions.  Opening thread. */
int node_sync_open(sa_client *c, sa_error *err);

/* At a tick: acknowledges outbox entries every configured peer is past,
 * drops tombstones (acks, age), persists the acks (REQ_SYNC_GC on the
 * writer).  Tick thread. */
int node_sync_tick(sa_client *c, sa_error *err);

/* Runs a REQ_SYNC_GC request in its own store txn.  Writer. */
void node_process_sync_gc(sa_client *c, wreq *r);

/* True when peers are configured (the outbox then follows their acks). */
bool node_sync_peers_configured(sa_client *c);

/* ---- node_syncer.c: store sync points ------------------------------------- */

/* The syncer's loop (sa_worker fn, thread "sa-sync"). */
void node_syncer_main(void *arg);

/* After a commit: wakes the syncer if it sleeps idle.  Committer. */
void node_wake_syncer(sa_client *c);

/* ---- node_tick.c: the outbox side ----------------------------------------- */

/* The tick thread's loop (sa_worker fn, thread "sa-tick"). */
void node_ticker_main(void *arg);

/* One tick: claim (writer), send (calling thread), settle (writer).
 * Tick thread or sa_client_sync_tick's caller; serialized by tick_serial. */
int node_tick(sa_client *c, sa_error *err);

/* Picks the transport and discovery, fills c->obx, seeds c->rng.  Opening
 * thread. */
void node_pick_sync(sa_client *c, const sa_options *o);

/* Adds an outbox delta to the counts; logs malformed entries once.
 * Writer or committer. */
void node_apply_delta(sa_client *c, const outbox_delta *d);

/* Entries per state into counts; returns their sum.  Any thread. */
uint64_t node_obx_counts(const sa_client *c, uint64_t counts[4]);

/* Runs one outbox request (REQ_OBX_*) in its own store txn.  Writer. */
void node_process_outbox(sa_client *c, wreq *r);

#endif
