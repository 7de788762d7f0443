/*
 * store.h -- the materialized store: LMDB, the only module that sees LMDB
 * types.
 *
 * Named databases in one LMDB file (MDB_NOSUBDIR; its lock file is
 * "<path>-lock"):
 *   kv      key -> u64 version, u64 lsn, u64 hlc, u16 F, u8 O, u8 TF, F
 *           bytes of full key, O bytes of origin (O = 0: this node), [u64
 *           origin LSN: TF bit 7, only with O > 0], T bytes of content type
 *           (T = TF & 0x7f; 0: none; at most SA_CONTENT_TYPE_MAX), value
 *           bytes.
 *           Keys up to 480 bytes are the LMDB key; longer ones
 *           (LMDB's limit is 511) are stored under their first 480 bytes +
 *           0x00 + a 64-bit hash + a 16-bit chain counter, with the full
 *           key in the value (F > 0); see store_longkey.c.
 *   tombs   key -> u64 at_ms, u64 lsn, u64 hlc, u16 F, u8 O, u8 TF (T = 0), F,
 *           O [, u64 origin LSN] bytes: the tombstones (a delete's pair),
 *           keyed like kv.  A key is in kv or in tombs or in neither, never
 *           in both.
 *   dropped key -> u64 hlc, u16 F, u8 O, u8 0, F, O bytes: the pair of a
 *           tombstone dropped by age (tombstone_ttl_s), keyed like kv, kept
 *           until the delete is 2 x tombstone_ttl_s old (sync_rule.h): an op
 *           for a key not held is stale when the key's record is at or
 *           above its pair.  A key may have a record and be in kv or tombs
 *           too (written again since): then the record is below the held
 *           pair and does not matter.
 *   peers   'c' + peer id -> u64 cursor (where to resume pulling that peer,
 *           written in the commit of the items it covers); 'a' + peer id ->
 *           u64 the peer's acknowledged position in this node's feed (lazy).
 *   outbox  u64 big-endian lsn -> u8 state, u8 record type, u16 0, u32 attempts,
 *           u64 hlc, u64 at_ms (queued: not before; in flight: deadline;
 *           acknowledged/failed: when it happened)
 *   ops     u64 big-endian lsn -> u8 type, 3 x 0, u32 N, u64 hlc, N u64 versions
 *           (the key's version after each operation, 0 for a delete), then
 *           the WAL record payload.  Kept apart from outbox so that state
 *           changes rewrite 24 bytes, not values; it is also the change feed.
 *   meta    also "feed_floor" u64: changes at or below it may be missing
 *           (pruned without a later change of the same key); "sync_floor"
 *           u64: the last tombstone dropped (the sync feed serves from
 *           the larger of the two)
 *   meta    "format" u32 (4; older stores are upgraded in place at open:
 *           a format-1 store's kv entries read as origin = this node, a
 *           format-2 store's as having no content type, a format-3 store's
 *           as origin LSN unknown, and the node-wide "horizon_hlc" of
 *           formats 2 and 3 is removed; store_env.c), "node_id" text,
 *           "applied_lsn" u64, "hlc" u64, "epoch" u64 (this incarnation of
 *           the store: drawn at its first open and again by a restore;
 *           store_backup.c)
 *
 * "<path>-sync" holds the last sync point (STORE_SNAPSHOTS; see store_syncpoint.c).
 *
 * One write transaction applies a group of operations, their outbox
 * entries and the new applied LSN together (store_w*).  One write
 * transaction exists at a time, and only the thread that began it may use
 * it (asserted): the node's committer ("sa-commit") for its group commits,
 * its writer ("sa-writer") for outbox requests after draining the
 * committer, and the opening thread during recovery (docs/threads.md).
 * Reads may run on any thread concurrently with the write transaction;
 * values are copied out before the read transaction ends.
 */
#ifndef SA_STORE_H
#define SA_STORE_H

#include "softadastra.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct sa_store sa_store;
typedef struct store_wtxn store_wtxn;

enum {
  STORE_OUTBOX_QUEUED = 0,
  STORE_OUTBOX_IN_FLIGHT = 1,
  STORE_OUTBOX_ACKED = 2,
  STORE_OUTBOX_FAILED = 3
};

#define SA_STORE_FORMAT 4

/* How a store reaches the disk. */
enum {
  STORE_MEMORY = 0,    /* never synced (a memory-only node's private file) */
  STORE_SNAPSHOTS = 1, /* commits unsynced; durable at sync points (store_syncpoint.c) */
  STORE_SYNC_EACH = 2, /* every commit syncs its data pages (MDB_NOMETASYNC):
                          the fallback when LMDB is not 0.9.x */
};

/* What store_open found of the last stop (STORE_SNAPSHOTS). */
typedef struct store_open_report {
  bool unclean;           /* the file had moved past its last sync point */
  bool rolled_back;       /* ... and was returned to it (a reboot since) */
  uint64_t from_txnid;    /* rolled back: the file's newest snapshot */
  uint64_t to_txnid;      /* ... and the sync point's */
  bool foreign_sync;      /* "<path>-sync" did not describe this file: ignored */
  uint32_t upgraded_from; /* the format the store had, when store_open upgraded it (else 0) */
} store_open_report;

/* Opens (creating when missing) the store at path for node_id.  persistent:
 * STORE_SNAPSHOTS (or STORE_SYNC_EACH on an LMDB other than 0.9.x), with a
 * side file "<path>-sync"; otherwise STORE_MEMORY.  map_bytes is the size
 * limit.  Errors: SA_ENOENT, SA_EACCES, SA_ENODE (store of another node),
 * SA_EFORMAT, SA_ECORRUPT (not an LMDB file, or a damaged sync file),
 * SA_ELOCKED. */
int store_open(sa_store **out, const char *path, const char *node_id, bool persistent,
               uint64_t map_bytes, sa_error *err);

/* The mode store_open chose, and what it found. */
int store_mode(const sa_store *s);
const store_open_report *store_report(const sa_store *s);

/* Tests: read the boot id from path instead (NULL: the kernel's), to play
 * a reboot.  Call while no store is being opened. */
void store_set_boot_id_path(const char *path);

/* Closes the environment (does not sync: call store_sync first). */
void store_close(sa_store *s);

/* Values read from meta at open (then maintained by store_wcommit). */
uint64_t store_applied_lsn(const sa_store *s);
uint64_t store_meta_hlc(const sa_store *s);

/* Takes a sync point: everything committed so far becomes durable, and the
 * store can be rolled back no further than this (STORE_SNAPSHOTS; the other
 * modes just force the file to disk).  A no-op when nothing was committed
 * since the last one.  Any thread, concurrently with commits and reads; one
 * sync point runs at a time.  Calls the io table's store_sync hook first.
 * A failure leaves the previous sync point in force. */
int store_sync(sa_store *s, sa_error *err);

/* Starts the write-back of the store's dirty pages without waiting for it
 * (sync_file_range SYNC_FILE_RANGE_WRITE), so that the next sync point has
 * less to flush at once.  Durability is unchanged: it still comes from sync
 * points only.  Any thread; a no-op for a memory-only store. */
void store_writeback(sa_store *s);

/* Bytes of the map above the highest page in use: what commits can still
 * take without reusing freed pages (a lower bound on the room left). */
uint64_t store_headroom(sa_store *s);

/* The id of the latest committed transaction: it changes with every commit
 * (sequentially consistent, so a thread that publishes a flag and then reads
 * this cannot miss a commit that read the flag too late). */
uint64_t store_txnid(const sa_store *s);

/* store_writeback calls that started a write-back, since open. */
uint64_t store_writebacks(const sa_store *s);

/* True when commits were made since the last sync point. */
bool store_sync_due(sa_store *s);

/* Sync points taken since open; the last one's applied LSN. */
uint64_t store_syncs(const sa_store *s);
uint64_t store_synced_lsn(const sa_store *s);

/* ---- the write transaction (its owner thread only; see above) ----------- */

int store_wbegin(sa_store *s, store_wtxn **out, sa_error *err);

/* Current version of key inside the transaction (0 when absent). */
int store_wversion(store_wtxn *t, const char *key, uint32_t klen, uint64_t *version, sa_error *err);

/* Puts key = val with its content type (ctlen bytes at ctype, 0: none) and
 * the pair (hlc, origin) (origin NULL or this node's id: stored as "this
 * node"; origin_lsn: the write's LSN on its origin, kept for another
 * origin's write, 0 when unknown); *version receives the new version (old
 * + 1, or 1).  A tombstone of the key goes. */
int store_wput(store_wtxn *t, const char *key, uint32_t klen, const void *val, uint32_t vlen,
               const char *ctype, uint32_t ctlen, uint64_t lsn, uint64_t hlc, const char *origin,
               uint64_t origin_lsn, uint64_t *version, sa_error *err);

/* Deletes key if present (*existed says whether it was) and, when it was
 * or when tomb_always, records its tombstone: (at_ms, lsn, hlc, origin,
 * origin_lsn). */
int store_wdel(store_wtxn *t, const char *key, uint32_t klen, uint64_t lsn, uint64_t hlc,
               const char *origin, uint64_t origin_lsn, uint64_t at_ms, bool tomb_always,
               bool *existed, sa_error *err);

/* A key's state: live (kv), a tombstone, or unknown. */
enum { STORE_NONE = 0, STORE_LIVE = 1, STORE_TOMB = 2 };
typedef struct store_state {
  int kind;                        /* STORE_NONE, STORE_LIVE, STORE_TOMB */
  uint64_t version, lsn, hlc;      /* version: live only */
  uint64_t at_ms;                  /* tombs only */
  char origin[SA_NODE_ID_MAX + 1]; /* the pair's origin ("" when none) */
  /* STORE_NONE only: the key's dropped-tombstone record, if it has one */
  bool dropped;
  uint64_t dropped_hlc;
  char dropped_origin[SA_NODE_ID_MAX + 1];
} store_state;

/* key's state in the latest committed snapshot (with its dropped-tombstone
 * record when it is in neither kv nor tombs).  Any thread. */
int store_state_get(sa_store *s, const char *key, uint32_t klen, store_state *st, sa_error *err);

/* Stores a peer's record (kind 'c': cursor, 'a': acknowledged position). */
int store_wpeer_put(store_wtxn *t, char kind, const char *peer, uint64_t val, sa_error *err);
/* Stores it only when val is above the stored one. */
int store_wpeer_raise(store_wtxn *t, char kind, const char *peer, uint64_t val, sa_error *err);
/* Reads one (0 when absent).  Any thread. */
int store_peer_get(sa_store *s, char kind, const char *peer, uint64_t *val, sa_error *err);
/* Calls fn for each record of kind (peer NUL-terminated).  Any thread. */
int store_peer_each(sa_store *s, char kind, void (*fn)(void *arg, const char *peer, uint64_t val),
                    void *arg, sa_error *err);

/* Raises the sync feed's floor to lsn when this transaction commits: a
 * dropped tombstone is a change the state-based feed can no longer serve
 * (the change feed of sa_client_changes keeps its operation: its floor
 * stays).  store_sync_floor: the larger of the two floors. */
void store_wraise_sync_floor(store_wtxn *t, uint64_t lsn);
uint64_t store_sync_floor(const sa_store *s);

/* Tombstone GC: drops every tombstone with lsn <= acked (pass 0 for none),
 * or with at_ms + ttl_ms <= now_ms; one dropped by age (and not by acked)
 * leaves its pair in the dropped database (raising the key's record),
 * unless the record would already have expired.  Then drops the records
 * that expired (sync_dropped_expired).  *dropped, *max_lsn (largest LSN
 * dropped), *recorded (records written) and *expired (records dropped)
 * are raised. */
typedef struct store_gc_result {
  uint64_t dropped, max_lsn, recorded, expired;
} store_gc_result;
int store_wtomb_gc(store_wtxn *t, uint64_t acked, uint64_t now_ms, uint64_t ttl_ms,
                   store_gc_result *out, sa_error *err);
uint64_t store_tomb_count(sa_store *s);
/* Dropped-tombstone records held. */
uint64_t store_dropped_count(sa_store *s);
/* Bytes of the LMDB pages of the tombs and of the dropped database. */
uint64_t store_tomb_bytes(sa_store *s);
uint64_t store_dropped_bytes(sa_store *s);

/* The reads of sa_client_sync_read, sa_client_sync_snapshot and
 * sa_client_sync_digest (see softadastra.h), on the latest snapshot. */
int store_sync_read(sa_store *s, uint64_t since, size_t limit, const char *exclude,
                    sa_sync_page *out, sa_error *err);
/* The snapshot: fn for every live key and tombstone, then dfn (when not
 * NULL) for every dropped-tombstone record not expired at now_ms (ttl_ms)
 * whose key is in neither kv nor tombs, as a delete item with the record's
 * pair (seq and origin_lsn 0); all from one read transaction. */
int store_sync_snapshot(sa_store *s, int (*fn)(void *arg, const sa_sync_item *it),
                        int (*dfn)(void *arg, const sa_sync_item *it), void *arg, uint64_t now_ms,
                        uint64_t ttl_ms, uint64_t *resume, sa_error *err);
int store_sync_digest(sa_store *s, char hex[65], uint64_t *keys, sa_error *err);

/* The same snapshot as a walk (for a reader that streams it): opened on a
 * read transaction of its own (*resume: its applied LSN), then one item at
 * a time -- 1 with *it (key and content type in the walk's buffers, the
 * value in the map: valid until the next call), *dropped telling a
 * dropped-tombstone record (only when with_dropped), 0 at the end, or an
 * SA_E* code -- and closed on any thread, before the store is.  A walk
 * keeps its snapshot's pages from being reused while it is open. */
typedef struct store_snap store_snap;
int store_snap_open(sa_store *s, bool with_dropped, uint64_t now_ms, uint64_t ttl_ms,
                    store_snap **out, uint64_t *resume, sa_error *err);
int store_snap_next(store_snap *w, sa_sync_item *it, bool *dropped, sa_error *err);
void store_snap_close(store_snap *w);

/* Records the outbox entry (queued) and the operation (payload + the
 * resulting version of each of its nver operations) for WAL record lsn. */
int store_woutbox(store_wtxn *t, uint64_t lsn, uint64_t hlc, int type, const void *payload,
                  uint32_t len, const uint64_t *versions, uint32_t nver, sa_error *err);

/* Raises the change-feed floor to lsn when this transaction commits. */
void store_wraise_floor(store_wtxn *t, uint64_t lsn);

/* Writes applied_lsn and hlc into meta and commits.  The transaction is
 * gone afterwards, whatever the result. */
int store_wcommit(store_wtxn *t, uint64_t applied_lsn, uint64_t hlc, sa_error *err);

/* Abandons the transaction: nothing of it becomes visible. */
void store_wabort(store_wtxn *t);

/* ---- outbox entries (the write transaction) ----------------------------- */

typedef struct store_obx {
  uint64_t lsn;
  int state;         /* STORE_OUTBOX_* */
  int type;          /* WAL record type */
  uint32_t attempts; /* times handed to the transport */
  uint64_t hlc;
  uint64_t at_ms;
} store_obx;

enum { STORE_OBX_KEEP = 0, STORE_OBX_UPDATE = 1, STORE_OBX_DELETE = 2, STORE_OBX_STOP = 3 };

/* Calls fn for each outbox entry of LSN from or later (0: all), oldest
 * first.  fn may change *e and return STORE_OBX_UPDATE to write it back,
 * STORE_OBX_DELETE to remove the entry (and its payload), STORE_OBX_STOP to
 * end the walk. */
typedef int (*store_obx_fn)(store_obx *e, void *ctx);
int store_wobx_each(store_wtxn *t, uint64_t from, store_obx_fn fn, void *ctx, sa_error *err);

/* Reads / rewrites one entry's state.  *found false when absent. */
int store_wobx_get(store_wtxn *t, uint64_t lsn, store_obx *e, bool *found, sa_error *err);
int store_wobx_put(store_wtxn *t, const store_obx *e, sa_error *err);

/* The payload of entry lsn, borrowed until the transaction ends.  SA_ECORRUPT
 * when its operation record is missing or does not decode (store damage). */
int store_wobx_payload(store_wtxn *t, uint64_t lsn, const void **p, uint32_t *len, sa_error *err);

/* LSN of the last write of key (0 and *exists false when absent). */
int store_wkv_lsn(store_wtxn *t, const char *key, uint32_t klen, uint64_t *lsn, sa_error *err);

/* ---- reads (any thread) ------------------------------------------------ */

/* Up to max entries with LSN > after, oldest first; *n receives the count. */
int store_obx_list(sa_store *s, uint64_t after, size_t max, store_obx *out, size_t *n,
                   sa_error *err);

/* Copies key's value out.  SA_ENOTFOUND when absent. */
int store_get(sa_store *s, const char *key, uint32_t klen, sa_value *out, sa_error *err);

/* The current version of key in the latest committed snapshot (0: absent),
 * without copying its value.  Any thread. */
int store_version(sa_store *s, const char *key, uint32_t klen, uint64_t *version, sa_error *err);

/* Calls fn once with key's value in place, inside the read transaction
 * (see sa_client_get_with).  SA_ENOTFOUND when absent (fn not called). */
int store_get_with(sa_store *s, const char *key, uint32_t klen,
                   void (*fn)(void *arg, const sa_value *v), void *arg, sa_error *err);

int store_list(sa_store *s, const char *prefix, const char *after, size_t limit, bool with_values,
               sa_list *out, sa_error *err);

/* The change feed: operations with LSN > since (see sa_client_changes). */
int store_changes(sa_store *s, uint64_t since, size_t limit, bool with_values, sa_changes *out,
                  sa_error *err);
uint64_t store_feed_floor(const sa_store *s);

/* Entry counts (0 on error). */
uint64_t store_count(sa_store *s);
uint64_t store_outbox_count(sa_store *s);

#endif
