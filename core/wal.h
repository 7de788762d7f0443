/*
 * wal.h -- the node's write-ahead log: one append-only file per node.
 *
 * The format, the validity rule and the recovery steps are documented at
 * the top of wal.c.  This layer knows records and bytes; it does not know
 * LMDB.  The node (node.c) decides what to replay and when to checkpoint.
 *
 * Threads: an sa_wal handle is owned by one thread at a time (the node's
 * opening thread, then its writer thread).  wal_size() may be read from any
 * thread.
 */
#ifndef SA_WAL_H
#define SA_WAL_H

#include "softadastra.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SA_WAL_FORMAT 1
#define SA_WAL_HEADER_SIZE 128
#define SA_WAL_RECORD_HEADER 32
#define SA_WAL_MAX_PAYLOAD (1u << 30) /* plausibility bound when scanning */
#define SA_WAL_MAX_BATCH_OPS 10000

/* WAL_PUT_CT: a put with a content type (its payload holds the type). */
enum { WAL_PUT = 1, WAL_DELETE = 2, WAL_BATCH = 3, WAL_SYNC = 4, WAL_PUT_CT = 5 };
#define WAL_TYPE_MAX WAL_PUT_CT

/* A sync record's decision per item (wal.c, "sync record"). */
enum { WAL_SYNC_APPLY = 1, WAL_SYNC_SKIP = 2, WAL_SYNC_STALE = 3 };
#define WAL_SYNC_ITEM_HEADER 36

/* One operation inside a record (decoded view; pointers borrowed). */
typedef struct wal_op {
  int op; /* SA_OP_PUT or SA_OP_DELETE */
  const char *key;
  uint32_t klen;
  const void *val;
  uint32_t vlen;
  const char *ctype; /* a put's content type (ctlen bytes, not NUL-terminated); */
  uint32_t ctlen;    /* 0: none (a plain put, a delete, a batch's op) */
  /* WAL_SYNC items only (else 0 / NULL: the record's own hlc, this node) */
  int decision;       /* WAL_SYNC_* */
  uint64_t hlc;       /* the item's pair */
  const char *origin; /* olen bytes, not NUL-terminated */
  uint32_t olen;
  uint64_t origin_lsn;
  uint64_t seq; /* the sender's LSN */
} wal_op;

/* A valid record (decoded view into the scanned file; borrowed for the
 * duration of the visit callback). */
typedef struct wal_rec {
  uint64_t offset;
  uint64_t lsn;
  uint64_t hlc;
  int type;     /* WAL_PUT, WAL_DELETE, WAL_BATCH, WAL_SYNC, WAL_PUT_CT */
  uint32_t len; /* payload bytes */
  const unsigned char *payload;
} wal_rec;

/* Iterates the operations of a record's payload.  A WAL_SYNC record's
 * iteration returns its applied items only (WAL_SYNC_APPLY), unless all is
 * set (wal_op_iter_all). */
typedef struct wal_op_iter {
  int type;
  const unsigned char *p, *end;
  uint32_t left; /* operations not yet visited (an upper bound on those returned) */
  bool all;
} wal_op_iter;

void wal_op_iter_init(wal_op_iter *it, int type, const unsigned char *payload, uint32_t len);
/* The same, returning every item of a WAL_SYNC record (decided or not). */
void wal_op_iter_all(wal_op_iter *it, int type, const unsigned char *payload, uint32_t len);
/* 1 and *op filled, or 0 at the end.  Only for payloads that passed
 * wal_payload_check. */
int wal_op_next(wal_op_iter *it, wal_op *op);

/* 0 if the payload of a record of this type is well-formed (lengths add up
 * exactly, ops are known, batch count in range); -1 otherwise.  *count: the
 * operations wal_op_iter_init returns (a sync record: its applied items).
 * Safe on any bytes (it is a fuzz target). */
int wal_payload_check(int type, const unsigned char *p, uint32_t len, uint32_t *count);

/* A sync record's peer id (plen bytes, not NUL-terminated) and cursor.
 * Only for payloads that passed wal_payload_check. */
void wal_sync_header(const unsigned char *payload, const char **peer, uint32_t *plen,
                     uint64_t *cursor);

/* Size and encoding of a sync record: peer id, cursor and the items (an
 * item's value is kept only when it is an applied put). */
size_t wal_sync_record_size(size_t plen, const wal_op *items, size_t n);
size_t wal_sync_record_encode(unsigned char *out, uint64_t lsn, uint64_t hlc, const char *peer,
                              size_t plen, uint64_t cursor, const wal_op *items, size_t n);

/* Decodes the record starting at buf[0] (avail bytes available) without the
 * LSN sequence check.  Returns 0 and fills *rec when the record is whole and
 * valid, or -1 with a reason (static or formatted into reason, reason_len
 * bytes) when not.  Safe on any bytes (a fuzz target). */
int wal_record_decode(const unsigned char *buf, size_t avail, uint64_t offset, wal_rec *rec,
                      char *reason, size_t reason_len);

/* Fills *rec from a record this process encoded (wal_record_encode), with
 * no check at all, and returns its size.  Never for bytes read from a file. */
size_t wal_record_view(const unsigned char *buf, wal_rec *rec);

/* Size in bytes of the encoded record for these ops (type WAL_BATCH when
 * is_batch, else the single op's own type: WAL_PUT_CT for a put with a
 * content type).  A batch's ops carry no content type (ctlen must be 0). */
size_t wal_record_size(const wal_op *ops, size_t n, bool is_batch);

/* Encodes a record into out (wal_record_size bytes) and returns the size. */
size_t wal_record_encode(unsigned char *out, uint64_t lsn, uint64_t hlc, const wal_op *ops,
                         size_t n, bool is_batch);

typedef struct sa_wal sa_wal;

/* Opens (creating when missing, with a header naming node_id) and locks the
 * WAL at path.  Errors: SA_EINVAL (empty path), SA_ENOENT (missing
 * directory: the message says to create it), SA_EACCES, SA_ELOCKED,
 * SA_ENODE (header names another node), SA_EFORMAT, SA_ECORRUPT (bad
 * header).  On success *out is owned by the caller (wal_close). */
int wal_open(sa_wal **out, const char *path, const char *node_id, sa_error *err);

/* Preallocation: when an append passes the end of the file, the file is
 * zero-filled up to the next multiple of chunk bytes (written through the
 * sa_io table; the append's fdatasync makes it durable once per chunk), so
 * that later appends overwrite written blocks and their fdatasync does not
 * also write the inode.  The file is then at most wal_size() rounded up to
 * chunk.  0 (the default) turns it off. */
void wal_set_prealloc(sa_wal *w, uint64_t chunk);

/* Releases the lock and closes the file.  Does not sync. */
void wal_close(sa_wal *w);

typedef int (*wal_visit_fn)(const wal_rec *rec, void *ctx);

/* Reads the whole file, validates every record in order and classifies the
 * end (clean -- nothing or only zero bytes after the records --, torn tail,
 * corrupt).  Calls visit (may be NULL) for each valid record in LSN order; a
 * non-zero return stops the scan and is returned.  Does not modify the
 * file.  rep is filled in every case.  A whole scan of a clean file sets
 * wal_size() to the end of its records (rep->data_bytes): call it after
 * wal_open and before the first append. */
int wal_scan(sa_wal *w, wal_visit_fn visit, void *ctx, sa_wal_report *rep, sa_error *err);

/* Calls visit for each record of [header, end) -- end: the rep->data_bytes
 * of a wal_scan of this open file, i.e. records that scan already checked
 * (CRC, payload, LSN order) --, without checking them again: replay's pass
 * costs the decode of its headers only.  The lock keeps other processes
 * out in between; a record that no longer fits (the file changed anyway)
 * fails with SA_ECORRUPT instead of being read. */
int wal_replay(sa_wal *w, uint64_t end, wal_visit_fn visit, void *ctx, sa_error *err);

/* After a scan that found a torn tail: copies the rep->rest_bytes bytes from
 * rep->bad_offset (through the last non-zero byte; the zeros after it are
 * free space) into a side file (its path into side, side_len bytes), syncs
 * it, truncates the WAL at bad_offset and syncs it.  Must not be called on
 * a CORRUPT report. */
int wal_cut_tail(sa_wal *w, const sa_wal_report *rep, char *side, size_t side_len, sa_error *err);

/* Appends len bytes of encoded records at wal_size() (over free space, or
 * extending the file by a chunk, see wal_set_prealloc).  Short writes are
 * continued.  On failure the file is truncated back to wal_size() (the
 * records were never acknowledged; the free space goes too);
 * *rolled_back says whether that worked. */
int wal_append(sa_wal *w, const void *buf, size_t len, bool *rolled_back, sa_error *err);

/* Truncates the file back to `end` (a previous wal_size; free space after
 * it goes too) and syncs: undoes appended records whose application failed.
 * Errors are returned. */
int wal_rollback(sa_wal *w, uint64_t end, sa_error *err);

/* fdatasync.  After a failure the handle is poisoned: every later sync and
 * append fails with SA_EREADONLY (never retry an fsync and pretend success). */
int wal_sync(sa_wal *w, sa_error *err);

/* Checkpoint: truncates the file to the header (free space included) and
 * rewrites it with start_lsn (every record up to start_lsn is durable
 * elsewhere), then syncs. */
int wal_reset(sa_wal *w, uint64_t start_lsn, sa_error *err);

uint64_t wal_size(const sa_wal *w);      /* logical size: end of the last record */
uint64_t wal_start_lsn(const sa_wal *w); /* from the header */
const char *wal_path(const sa_wal *w);

/* Shared by sa_wal_scan / sa_wal_repair (offline) and by the node. */
int wal_scan_path(const char *path, sa_wal_visit_fn visit, void *ctx, sa_wal_report *rep,
                  sa_error *err);

#endif
