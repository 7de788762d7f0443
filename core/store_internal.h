/*
 * store_internal.h -- what the store's files share: the on-disk layout
 * constants, struct sa_store, the write-transaction slot, and the helpers
 * one store_*.c file offers the others.  The only header besides lmdb.h
 * that names LMDB types.
 *
 * What it is not: the store's interface (store.h) nor API.  Only core/
 * store_*.c include it.
 *
 * Invariants: see struct sa_store's fields; the write transaction is used
 * only by the thread that began it (store_w_owned, asserted by every
 * store_w* function); read transactions may run on any thread.
 *
 * Threads: see each store_*.c file's top comment.
 */
#ifndef SA_STORE_INTERNAL_H
#define SA_STORE_INTERNAL_H

#include "store.h"

#include "internal.h"

#include <assert.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* kv values (format 4): u64 version, u64 lsn, u64 hlc, u16 full-key length
 * F (0 for keys stored inline), u8 origin length O (0: this node), u8 TF:
 * bits 0-6 the content-type length T (0: none), bit 7 (KV_F_OLSN) set when
 * an origin LSN follows the origin; F bytes of full key, O bytes of origin,
 * [u64 origin LSN], T bytes of content type, then the value.  An entry of
 * this node (O = 0) never has the bit: its origin LSN is its lsn; one of
 * another origin without it has none known (stored by format 3 or before:
 * read as 0).  Format 2 had a 0 byte where TF is, which reads as "no
 * content type"; format 1 had a u32 F there, which reads the same with O =
 * 0 and T = 0.  tombs values: the same header with at_ms in the version's
 * place, T = 0, and no value. */
#define KV_HEADER 28
#define KV_F_OLSN 0x80
#define KV_T_MASK 0x7f /* SA_CONTENT_TYPE_MAX is 127 */
/* dropped values (format 4): u64 hlc, u16 F, u8 O, u8 0, F bytes of full
 * key, O bytes of origin: the pair of a tombstone dropped by age, keyed like
 * kv (see store_sync.c, "dropped-tombstone records"). */
#define DROP_HEADER 12
/* LMDB keys are at most 511 bytes (Debian's build).  Keys up to
 * KV_INLINE_MAX bytes are LMDB keys as they are; a longer key K is stored
 * under K[0..480) + 0x00 + FNV-1a-64(K) (big-endian) + a 16-bit counter, and
 * its full text lives in the value.  Keys that share prefix and hash are a
 * chain told apart by comparing the full key, so a collision never
 * overwrites another key.  Order is bytewise except among keys longer than
 * 480 bytes sharing their first 480 bytes (then: by hash, then counter). */
#define KV_INLINE_MAX 480
#define KV_GROUP (KV_INLINE_MAX + 1 + 8)
#define KV_LONG (KV_GROUP + 2)
#define STORE_RPOOL 64
#define OUTBOX_HEADER 24

struct store_wtxn {
  sa_store *s;
  MDB_txn *txn;
  MDB_cursor *kvc; /* on kv, opened by the first store_wput (LMDB closes it with the txn) */
  uint64_t floor;  /* feed floor to raise to at commit (0: unchanged) */
  uint64_t sfloor; /* sync floor to raise to at commit (0: unchanged) */
};

/* ops values: u8 type, 3 bytes 0, u32 N, u64 hlc, N u64 versions (one per
 * operation of the record: the key's version after it, 0 for a delete),
 * then the WAL payload. */
#define OPS_HEADER 16

struct sa_store {
  MDB_env *env;
  MDB_dbi kv, outbox, ops, meta, tombs, peers, dropped;
  char *path;
  char node_id[SA_NODE_ID_MAX + 1]; /* what an origin length of 0 means */
  int mode;                         /* STORE_MEMORY, STORE_SNAPSHOTS, STORE_SYNC_EACH */
  /* Sync points (STORE_SNAPSHOTS; see "sync points").  commit_mu orders a
   * commit against a capture; sync_mu lets one sync point run at a time
   * and guards the fields below it. */
  pthread_mutex_t commit_mu, sync_mu;
  uint64_t txnid;      /* the latest commit's transaction id (under commit_mu) */
  int fd;              /* LMDB's data file */
  unsigned psize;      /* its page size */
  char *sync_path;     /* "<path>-sync" */
  int sync_fd;         /* -1 until the file exists */
  uint64_t sync_seq;   /* of the newest record in it */
  uint64_t sync_txnid; /* the last sync point's snapshot (atomic reads) */
  uint64_t sync_lsn;   /* its applied LSN */
  MDB_txn *pin;        /* read transaction on that snapshot */
  uint64_t syncs;      /* sync points taken since open (atomic reads) */
  uint64_t writebacks; /* store_writeback kicks since open (atomic) */
  store_open_report report;
  char boot[40]; /* this boot's id, "" when unknown */
  uint64_t applied_lsn;
  uint64_t hlc;
  uint64_t feed_floor; /* changes at or below it may be missing */
  uint64_t sync_floor; /* the sync feed's own floor: the last dropped tombstone (atomic) */
  uint64_t map_bytes;
  store_wtxn w;      /* the single write transaction slot */
  bool w_busy;       /* w is begun (set and cleared by its owner) */
  pthread_t w_owner; /* the thread that began w (asserted by every store_w*) */
  /* Reset read transactions kept for reuse (mdb_txn_renew is much cheaper
   * than mdb_txn_begin): one slot per reading thread (store_rslot), taken
   * and given back with atomic exchanges, so a reader never waits for a
   * lock (a reader preempted while holding one stalled the others).  Each
   * slot has a cache line of its own. */
  struct {
    MDB_txn *txn;
    char pad[64 - sizeof(MDB_txn *)];
  } rslot[STORE_RPOOL];
};

typedef struct kv_entry {
  uint64_t version, lsn, hlc; /* tombs: at_ms in version; dropped: hlc only */
  uint64_t origin_lsn;        /* 0: unknown (an entry of format 2, a dropped record) */
  const char *key;            /* the full key */
  size_t klen;
  const char *origin; /* NULL: this node (olen 0) */
  size_t olen;
  const char *ctype; /* content type (ctlen bytes, not NUL-terminated), NULL when none */
  size_t ctlen;
  const unsigned char *val;
  size_t vlen;
} kv_entry;

/* True on the thread that began t (the write-transaction owner). */
static inline bool store_w_owned(const store_wtxn *t) {
  return t->s->w_busy && pthread_equal(t->s->w_owner, pthread_self());
}

/* ---- store_env.c ----------------------------------------------------------- */

/* Maps an LMDB result rc (or an errno) to an SA code and a message naming
 * the store and what failed; returns the code. */
int store_err(sa_store *s, int rc, const char *what, sa_error *err);

/* Reads / writes a u64 of the meta database.  LMDB results. */
int store_meta_get_u64(MDB_txn *txn, MDB_dbi dbi, const char *name, uint64_t *out);
int store_meta_put_u64(MDB_txn *txn, MDB_dbi dbi, const char *name, uint64_t val);

/* The transaction id of the environment's latest commit. */
uint64_t store_env_txnid(sa_store *s);

/* ---- store_syncpoint.c ----------------------------------------------------- */

/* This boot's id into out ("" when unknown). */
void store_read_boot_id(char out[40]);

/* Before mdb_env_open: compares the file's meta pages with the last sync
 * point and writes the saved copies back when the file may have lost
 * writes.  *fresh: a sync point is needed as soon as the store is open. */
int store_restore(sa_store *s, bool *fresh, sa_error *err);

/* ---- store_longkey.c ------------------------------------------------------- */

/* Splits a kv or tombs value (k: its LMDB key).  -1 when malformed. */
int store_kv_decode(const MDB_val *k, const MDB_val *v, kv_entry *e);
/* Splits a dropped value (hlc, key, origin; the rest 0).  -1 when malformed. */
int store_drop_decode(const MDB_val *k, const MDB_val *v, kv_entry *e);

/* Looks key up in txn.  Found: *sk is its LMDB key (long keys: copied into
 * skbuf) and *v its value.  Not found: *sk is where a put would store it.
 * LMDB results (MDB_KEYEXIST: a full chain). */
int store_kv_find(sa_store *s, MDB_txn *txn, const char *key, size_t klen,
                  unsigned char skbuf[KV_LONG], MDB_val *sk, MDB_val *v, bool *found);
/* The same in database dbi (kv, tombs or dropped: all key long keys alike). */
int store_db_find(sa_store *s, MDB_txn *txn, MDB_dbi dbi, const char *key, size_t klen,
                  unsigned char skbuf[KV_LONG], MDB_val *sk, MDB_val *v, bool *found);

/* The origin of e as text into out (this node's id when e holds none). */
void store_entry_origin(const sa_store *s, const kv_entry *e, char out[SA_NODE_ID_MAX + 1]);

/* The content type of e as text into out ("" when e holds none). */
void store_entry_ctype(const kv_entry *e, char out[SA_CONTENT_TYPE_MAX + 1]);

/* The content type of e as a new string (*out NULL when e holds none).
 * -1 when out of memory. */
int store_entry_ctype_dup(const kv_entry *e, char **out);

/* key's state in txn (kv, then tombs). */
int store_txn_state(sa_store *s, MDB_txn *txn, const char *key, uint32_t klen, store_state *st,
                    sa_error *err);

/* Reads key's entry inside the write txn: *e zeroed when absent. */
int store_kv_wread(store_wtxn *t, const char *key, uint32_t klen, kv_entry *e, sa_error *err);

/* ---- store_outbox.c -------------------------------------------------------- */

/* The outbox/ops key of lsn (big-endian: LSN order), and back. */
void store_obx_key(unsigned char kb[8], uint64_t lsn);
uint64_t store_obx_key_lsn(const MDB_val *k);

/* Splits an ops value.  -1 when malformed. */
int store_ops_decode(const MDB_val *v, int *type, uint64_t *hlc, const unsigned char **vers,
                     uint32_t *nver, const unsigned char **payload, uint32_t *len);

/* ---- store_read.c ---------------------------------------------------------- */

/* A read transaction on the latest snapshot (pooled per thread); end it
 * with store_rend. */
int store_rbegin(sa_store *s, MDB_txn **txn, sa_error *err);
void store_rend(sa_store *s, MDB_txn *txn);

/* Entries of a database (0 on error). */
uint64_t store_entries(sa_store *s, MDB_dbi dbi);

#endif
