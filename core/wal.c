/*
 * wal.c -- the write-ahead log.
 *
 * WHAT IT IS
 *
 * One append-only log per node.  Every write the node acknowledges is first
 * a record here, made durable by fdatasync (auto_flush on) before the store
 * (LMDB) is touched.  After a crash the records the store has not applied
 * are replayed.  A checkpoint drops the records the store holds durably.
 *
 * FILE LAYOUT (all integers little-endian)
 *
 *   File header, 128 bytes, at offset 0:
 *     0   8  magic "SADWAL\r\n"
 *     8   4  format version (1)
 *    12   4  header size (128)
 *    16   8  start_lsn: every record in this file has LSN > start_lsn
 *    24   8  created, unix milliseconds
 *    32   2  node id length (1..64)
 *    34  64  node id bytes, zero padded
 *    98  26  reserved, zero
 *   124   4  CRC-32C of bytes 0..123
 *
 *   Then records, back to back, from offset 128:
 *     0   4  CRC-32C of bytes 4..31 of this header and of the whole payload
 *     4   4  payload length N
 *     8   1  type: 1 put, 2 delete, 3 batch, 4 sync, 5 put with a content type
 *     9   1  flags (0)
 *    10   2  record magic, the bytes 'S' 'A'
 *    12   4  reserved (0)
 *    16   8  LSN
 *    24   8  HLC timestamp (48 bits of unix ms, 16 bits logical)
 *    32   N  payload:
 *              put:    u32 key length K, u32 value length V, K key bytes, V value bytes
 *              put with a content type:
 *                      u32 K, u32 V, u8 content-type length T (1..127),
 *                      K key bytes, T bytes of content type (a media type,
 *                      sa_content_type_check), V value bytes
 *              delete: u32 key length K, K key bytes
 *              batch:  u32 count C (1..10000), then C times:
 *                        u8 op (1 put, 2 delete), u32 K, u32 V (0 for delete),
 *                        K key bytes, V value bytes
 *              sync:   a batch received from a peer (sa_client_sync_apply):
 *                      u8 peer id length P (1..64), P bytes of peer id,
 *                      u64 cursor (the peer's position this batch brings us
 *                      to), u32 count C (0..10000), then C items of
 *                        u8 op (1 put, 2 delete),
 *                        u8 decision (1 applied, 2 skipped: equal or older
 *                           pair, 3 stale: a key not held, at or below
 *                           its dropped-tombstone record),
 *                        u8 origin length O (1..64),
 *                        u8 content-type length T (0..127; 0 unless an
 *                           applied put, and 0 when it has none),
 *                        u32 K, u32 V (0 unless an applied put),
 *                        u64 hlc, u64 origin_lsn, u64 seq (the peer's LSN),
 *                        O origin bytes, K key bytes, T bytes of content
 *                        type, V value bytes
 *                      The header's HLC is a local timestamp taken after
 *                      observing every item's (tombstones' at_ms comes from
 *                      it); each item keeps its own pair.  The decisions are
 *                      the writer's, made against the state the records
 *                      before leave, and replay applies them as written.
 *
 *   Then free space: zero bytes up to the end of the file.
 *
 *   The format version stays 1: a sync record appears only in a node whose
 *   store is format 2 or later, and a put with a content type (type 5, or a
 *   sync item with T > 0) only in one whose store is format 3 or later,
 *   which older builds refuse to open first.  A put without a type is
 *   written as type 1 (T = 0 for a sync item), byte for byte what older
 *   builds wrote, so every older WAL replays as it did.
 *
 * PREALLOCATION (wal_set_prealloc)
 *
 * The log's logical size (wal_size: the end of the last record) is kept
 * apart from the file's size.  An append that would pass the end of the
 * file writes its record, then zeros up to the next multiple of the chunk
 * (the node: 1 MiB, or wal_max_bytes / 8 if smaller); the group's fdatasync
 * makes both durable.  Later appends overwrite blocks that are written and
 * synced, so their fdatasync does not also have to write the inode (the file
 * size does not change): measured ~30% less per fdatasync on ext4.
 * fallocate() would not do: writing into unwritten extents converts them,
 * a metadata change too.  The file is at most the logical size rounded up
 * to a chunk.  Zero-filling is best effort: if it fails (ENOSPC) the record
 * is in place and only the preallocation is skipped.
 *
 * VALIDITY RULE
 *
 * The record at offset o is valid when: its 32-byte header lies inside the
 * file; the magic, type, flags and reserved fields are as above; the payload
 * lies inside the file; the CRC matches; the payload's own lengths add up to
 * exactly N, and every content type in it is one (sa_content_type_check);
 * and its LSN is the previous record's LSN + 1 (the first record:
 * any LSN > start_lsn).  The records of a file are its longest prefix of
 * valid records; everything after that prefix is the "rest".  A record is
 * never all zeros (its magic), so a rest of zero bytes only is free space.
 *
 * RECOVERY (wal_scan + node.c)
 *
 *   1. Lock the file (flock, non-blocking: a second node gets SA_ELOCKED).
 *   2. Check the header: magic, CRC, version, node id.  A file shorter than
 *      the header whose bytes are a prefix of a header is a WAL whose
 *      creation was interrupted: it is rewritten.
 *   3. Read the valid prefix.  If the rest is empty or all zero bytes (free
 *      space) the file is CLEAN: nothing is cut, appends go where the
 *      records end.  Otherwise the rest runs through its last non-zero byte
 *      (rest_bytes); zeros after that are ignored.
 *   4. If somewhere in the rest a valid record starts whose LSN is above the
 *      last good LSN, the file is CORRUPT: a bad record sits among good
 *      ones.  Open fails naming the file and the offset, and nothing is
 *      modified.  sa_wal_repair (the `wal repair` command) copies the file
 *      aside and truncates it at the bad record: an explicit, logged loss.
 *   5. Otherwise the rest is a TORN tail (a write interrupted by a crash,
 *      perhaps followed by free space): its bytes through the last non-zero
 *      one are copied to a side file "<wal>.torn.<unix ms>", synced, and the
 *      WAL is truncated to the valid prefix (free space included; the next
 *      append preallocates again).  No acknowledged record is in a torn
 *      tail: acknowledgement follows the fdatasync of the whole record.
 *   6. The node replays every valid record above the store's applied LSN.
 *
 * The header is rewritten in place at checkpoints (128 bytes inside the first
 * 512-byte sector, which storage writes atomically, as SQLite also assumes
 * for its headers); a header whose CRC fails makes the file unopenable.
 *
 * Caveat: after a power loss a file system may persist the pages of the
 * last, unacknowledged write out of order, so a torn record can be followed
 * by a whole one from the same write.  The rule above then reports CORRUPT,
 * and `wal repair` is the remedy; it loses nothing that was acknowledged
 * because the whole write was never fdatasync'ed.
 *
 * CHECKPOINT (wal_reset)
 *
 * Once the store is synced through LSN X, the file is truncated to its
 * header (free space included: no old record may stay behind the new end,
 * where a later scan would meet it) and the header rewritten with
 * start_lsn = X, then synced.  A crash between the steps leaves either the
 * old records (all <= X, skipped at replay) or an empty file with an older
 * start_lsn: both recover.  The next append preallocates again.
 *
 * ERRORS
 *
 * Every call goes through the sa_io table (io.h), the zero-filling too.  A
 * failed append, and a rollback (wal_rollback: records whose store commit
 * failed), truncate the file to the logical size they go back to: a
 * rolled-back record must not stay in the file, where it would be valid for
 * a later scan; the next append preallocates again.  A failed truncation
 * leaves the node read-only.  A failed fdatasync poisons the handle: the
 * kernel may have dropped the dirty pages, so retrying and succeeding would
 * be a lie (the PostgreSQL fsync lesson).  The node turns read-only.
 */
#define _GNU_SOURCE
#include "wal.h"

#include "crc32c.h"
#include "internal.h"
#include "io.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <unistd.h>

static const unsigned char wal_magic[8] = {'S', 'A', 'D', 'W', 'A', 'L', '\r', '\n'};

struct sa_wal {
  int fd;
  char *path;
  char node_id[SA_NODE_ID_MAX + 1];
  uint64_t start_lsn;
  uint64_t size;  /* logical size: end of the last record (wal_size) */
  uint64_t alloc; /* file size as this handle left it: zeros past size */
  uint64_t chunk; /* preallocation step, 0 = none (wal_set_prealloc) */
  bool poisoned;  /* a fdatasync failed */
  char poison_msg[256];
};

/* ---- encoding ---------------------------------------------------------- */

size_t wal_record_size(const wal_op *ops, size_t n, bool is_batch) {
  size_t s = SA_WAL_RECORD_HEADER;
  if (!is_batch) {
    assert(n == 1);
    const wal_op *o = &ops[0];
    if (o->op != SA_OP_PUT) return s + 4 + o->klen;
    return s + 8 + o->klen + o->vlen + (o->ctlen ? 1 + o->ctlen : 0);
  }
  s += 4;
  for (size_t i = 0; i < n; i++) {
    assert(ops[i].ctlen == 0);
    s += 9 + ops[i].klen + (ops[i].op == SA_OP_PUT ? ops[i].vlen : 0);
  }
  return s;
}

size_t wal_record_encode(unsigned char *out, uint64_t lsn, uint64_t hlc, const wal_op *ops,
                         size_t n, bool is_batch) {
  unsigned char *p = out + SA_WAL_RECORD_HEADER;
  int type;
  if (!is_batch) {
    const wal_op *o = &ops[0];
    type = o->op != SA_OP_PUT ? WAL_DELETE : o->ctlen ? WAL_PUT_CT : WAL_PUT;
    sa_put_u32(p, o->klen);
    p += 4;
    if (type != WAL_DELETE) {
      sa_put_u32(p, o->vlen);
      p += 4;
    }
    if (type == WAL_PUT_CT) *p++ = (unsigned char)o->ctlen;
    memcpy(p, o->key, o->klen);
    p += o->klen;
    if (type == WAL_PUT_CT) {
      memcpy(p, o->ctype, o->ctlen);
      p += o->ctlen;
    }
    if (type != WAL_DELETE && o->vlen) {
      memcpy(p, o->val, o->vlen);
      p += o->vlen;
    }
  } else {
    type = WAL_BATCH;
    sa_put_u32(p, (uint32_t)n);
    p += 4;
    for (size_t i = 0; i < n; i++) {
      const wal_op *o = &ops[i];
      uint32_t vlen = o->op == SA_OP_PUT ? o->vlen : 0;
      *p++ = (unsigned char)o->op;
      sa_put_u32(p, o->klen);
      sa_put_u32(p + 4, vlen);
      p += 8;
      memcpy(p, o->key, o->klen);
      p += o->klen;
      if (vlen) {
        memcpy(p, o->val, vlen);
        p += vlen;
      }
    }
  }
  size_t len = (size_t)(p - out) - SA_WAL_RECORD_HEADER;
  sa_put_u32(out + 4, (uint32_t)len);
  out[8] = (unsigned char)type;
  out[9] = 0;
  out[10] = 'S';
  out[11] = 'A';
  sa_put_u32(out + 12, 0);
  sa_put_u64(out + 16, lsn);
  sa_put_u64(out + 24, hlc);
  sa_put_u32(out, sa_crc32c(0, out + 4, SA_WAL_RECORD_HEADER - 4 + len));
  return SA_WAL_RECORD_HEADER + len;
}

/* The 32-byte header of a record whose payload (len bytes) follows it. */
static void wal_header_fill(unsigned char *out, int type, size_t len, uint64_t lsn, uint64_t hlc) {
  sa_put_u32(out + 4, (uint32_t)len);
  out[8] = (unsigned char)type;
  out[9] = 0;
  out[10] = 'S';
  out[11] = 'A';
  sa_put_u32(out + 12, 0);
  sa_put_u64(out + 16, lsn);
  sa_put_u64(out + 24, hlc);
  sa_put_u32(out, sa_crc32c(0, out + 4, SA_WAL_RECORD_HEADER - 4 + len));
}

/* An item's value and content type are logged only when it is an applied
 * put. */
static uint32_t wal_sync_vlen(const wal_op *o) {
  return o->op == SA_OP_PUT && o->decision == WAL_SYNC_APPLY ? o->vlen : 0;
}
static uint32_t wal_sync_ctlen(const wal_op *o) {
  return o->op == SA_OP_PUT && o->decision == WAL_SYNC_APPLY ? o->ctlen : 0;
}

size_t wal_sync_record_size(size_t plen, const wal_op *items, size_t n) {
  size_t s = SA_WAL_RECORD_HEADER + 1 + plen + 12;
  for (size_t i = 0; i < n; i++)
    s += WAL_SYNC_ITEM_HEADER + items[i].olen + items[i].klen + wal_sync_ctlen(&items[i]) +
         wal_sync_vlen(&items[i]);
  return s;
}

size_t wal_sync_record_encode(unsigned char *out, uint64_t lsn, uint64_t hlc, const char *peer,
                              size_t plen, uint64_t cursor, const wal_op *items, size_t n) {
  unsigned char *p = out + SA_WAL_RECORD_HEADER;
  *p++ = (unsigned char)plen;
  memcpy(p, peer, plen);
  p += plen;
  sa_put_u64(p, cursor);
  sa_put_u32(p + 8, (uint32_t)n);
  p += 12;
  for (size_t i = 0; i < n; i++) {
    const wal_op *o = &items[i];
    uint32_t vlen = wal_sync_vlen(o), ctlen = wal_sync_ctlen(o);
    p[0] = (unsigned char)o->op;
    p[1] = (unsigned char)o->decision;
    p[2] = (unsigned char)o->olen;
    p[3] = (unsigned char)ctlen;
    sa_put_u32(p + 4, o->klen);
    sa_put_u32(p + 8, vlen);
    sa_put_u64(p + 12, o->hlc);
    sa_put_u64(p + 20, o->origin_lsn);
    sa_put_u64(p + 28, o->seq);
    p += WAL_SYNC_ITEM_HEADER;
    memcpy(p, o->origin, o->olen);
    p += o->olen;
    memcpy(p, o->key, o->klen);
    p += o->klen;
    if (ctlen) memcpy(p, o->ctype, ctlen);
    p += ctlen;
    if (vlen) memcpy(p, o->val, vlen);
    p += vlen;
  }
  size_t len = (size_t)(p - out) - SA_WAL_RECORD_HEADER;
  wal_header_fill(out, WAL_SYNC, len, lsn, hlc);
  return SA_WAL_RECORD_HEADER + len;
}

/* ---- decoding ---------------------------------------------------------- */

int wal_payload_check(int type, const unsigned char *p, uint32_t len, uint32_t *count) {
  const unsigned char *end = p + len;
  if (type == WAL_PUT) {
    if (len < 8) return -1;
    uint64_t k = sa_get_u32(p), v = sa_get_u32(p + 4);
    if (k == 0 || k > SA_KEY_MAX || 8 + k + v != len) return -1;
    if (count) *count = 1;
    return 0;
  }
  if (type == WAL_PUT_CT) {
    if (len < 9) return -1;
    uint64_t k = sa_get_u32(p), v = sa_get_u32(p + 4), t = p[8];
    if (k == 0 || k > SA_KEY_MAX || t == 0 || 9 + k + t + v != len ||
        sa_ctype_check((const char *)p + 9 + k, (size_t)t, NULL) != 0)
      return -1;
    if (count) *count = 1;
    return 0;
  }
  if (type == WAL_DELETE) {
    if (len < 4) return -1;
    uint64_t k = sa_get_u32(p);
    if (k == 0 || k > SA_KEY_MAX || 4 + k != len) return -1;
    if (count) *count = 1;
    return 0;
  }
  if (type == WAL_SYNC) {
    if (len < 1) return -1;
    uint32_t pl = p[0];
    if (pl == 0 || pl > SA_NODE_ID_MAX || (uint64_t)len < 1 + pl + 12) return -1;
    p += 1 + pl;
    uint32_t n = sa_get_u32(p + 8), applied = 0;
    if (n > SA_WAL_MAX_BATCH_OPS) return -1;
    p += 12;
    for (uint32_t i = 0; i < n; i++) {
      if (end - p < WAL_SYNC_ITEM_HEADER) return -1;
      int op = p[0], dec = p[1];
      uint64_t o = p[2], t = p[3], k = sa_get_u32(p + 4), v = sa_get_u32(p + 8);
      if ((op != SA_OP_PUT && op != SA_OP_DELETE) || dec < WAL_SYNC_APPLY || dec > WAL_SYNC_STALE ||
          o == 0 || o > SA_NODE_ID_MAX || t > SA_CONTENT_TYPE_MAX || k == 0 || k > SA_KEY_MAX ||
          ((v != 0 || t != 0) && (op != SA_OP_PUT || dec != WAL_SYNC_APPLY)))
        return -1;
      p += WAL_SYNC_ITEM_HEADER;
      if ((uint64_t)(end - p) < o + k + t + v) return -1;
      if (t && sa_ctype_check((const char *)p + o + k, (size_t)t, NULL) != 0) return -1;
      p += o + k + t + v;
      applied += dec == WAL_SYNC_APPLY;
    }
    if (p != end) return -1;
    if (count) *count = applied;
    return 0;
  }
  if (type != WAL_BATCH || len < 4) return -1;
  uint32_t n = sa_get_u32(p);
  if (n == 0 || n > SA_WAL_MAX_BATCH_OPS) return -1;
  p += 4;
  for (uint32_t i = 0; i < n; i++) {
    if (end - p < 9) return -1;
    int op = p[0];
    uint64_t k = sa_get_u32(p + 1), v = sa_get_u32(p + 5);
    if ((op != SA_OP_PUT && op != SA_OP_DELETE) || k == 0 || k > SA_KEY_MAX ||
        (op == SA_OP_DELETE && v != 0))
      return -1;
    p += 9;
    if ((uint64_t)(end - p) < k + v) return -1;
    p += k + v;
  }
  if (p != end) return -1;
  if (count) *count = n;
  return 0;
}

void wal_sync_header(const unsigned char *payload, const char **peer, uint32_t *plen,
                     uint64_t *cursor) {
  *plen = payload[0];
  *peer = (const char *)payload + 1;
  *cursor = sa_get_u64(payload + 1 + *plen);
}

void wal_op_iter_all(wal_op_iter *it, int type, const unsigned char *payload, uint32_t len) {
  wal_op_iter_init(it, type, payload, len);
  it->all = true;
}

void wal_op_iter_init(wal_op_iter *it, int type, const unsigned char *payload, uint32_t len) {
  it->type = type;
  it->p = payload;
  it->end = payload + len;
  it->all = false;
  if (type == WAL_SYNC) {
    uint32_t pl = payload[0];
    it->left = sa_get_u32(payload + 1 + pl + 8);
    it->p += 1 + pl + 12;
  } else if (type == WAL_BATCH) {
    it->left = sa_get_u32(payload);
    it->p += 4;
  } else {
    it->left = 1;
  }
}

int wal_op_next(wal_op_iter *it, wal_op *op) {
  op->ctype = NULL;
  op->ctlen = 0;
  op->decision = 0;
  op->hlc = op->origin_lsn = op->seq = 0;
  op->origin = NULL;
  op->olen = 0;
  if (it->type == WAL_SYNC) {
    while (it->left) {
      it->left--;
      const unsigned char *p = it->p;
      op->op = p[0];
      op->decision = p[1];
      op->olen = p[2];
      op->ctlen = p[3];
      op->klen = sa_get_u32(p + 4);
      op->vlen = sa_get_u32(p + 8);
      op->hlc = sa_get_u64(p + 12);
      op->origin_lsn = sa_get_u64(p + 20);
      op->seq = sa_get_u64(p + 28);
      op->origin = (const char *)p + WAL_SYNC_ITEM_HEADER;
      op->key = op->origin + op->olen;
      op->ctype = op->ctlen ? op->key + op->klen : NULL;
      op->val = op->key + op->klen + op->ctlen;
      it->p = (const unsigned char *)op->val + op->vlen;
      if (it->all || op->decision == WAL_SYNC_APPLY) return 1;
    }
    return 0;
  }
  if (it->left == 0) return 0;
  it->left--;
  const unsigned char *p = it->p;
  if (it->type == WAL_PUT) {
    op->op = SA_OP_PUT;
    op->klen = sa_get_u32(p);
    op->vlen = sa_get_u32(p + 4);
    op->key = (const char *)p + 8;
    op->val = p + 8 + op->klen;
    it->p = p + 8 + op->klen + op->vlen;
  } else if (it->type == WAL_PUT_CT) {
    op->op = SA_OP_PUT;
    op->klen = sa_get_u32(p);
    op->vlen = sa_get_u32(p + 4);
    op->ctlen = p[8];
    op->key = (const char *)p + 9;
    op->ctype = op->key + op->klen;
    op->val = op->ctype + op->ctlen;
    it->p = (const unsigned char *)op->val + op->vlen;
  } else if (it->type == WAL_DELETE) {
    op->op = SA_OP_DELETE;
    op->klen = sa_get_u32(p);
    op->vlen = 0;
    op->key = (const char *)p + 4;
    op->val = NULL;
    it->p = p + 4 + op->klen;
  } else {
    op->op = p[0];
    op->klen = sa_get_u32(p + 1);
    op->vlen = sa_get_u32(p + 5);
    op->key = (const char *)p + 9;
    op->val = p + 9 + op->klen;
    it->p = p + 9 + op->klen + op->vlen;
  }
  return 1;
}

int wal_record_decode(const unsigned char *buf, size_t avail, uint64_t offset, wal_rec *rec,
                      char *reason, size_t reason_len) {
  if (avail < SA_WAL_RECORD_HEADER) {
    snprintf(reason, reason_len, "record header truncated (%zu of %d bytes)", avail,
             SA_WAL_RECORD_HEADER);
    return -1;
  }
  if (buf[10] != 'S' || buf[11] != 'A') {
    snprintf(reason, reason_len, "bad record magic");
    return -1;
  }
  int type = buf[8];
  if (type < WAL_PUT || type > WAL_TYPE_MAX || buf[9] != 0 || sa_get_u32(buf + 12) != 0) {
    snprintf(reason, reason_len, "bad record type %d or flags", type);
    return -1;
  }
  uint32_t len = sa_get_u32(buf + 4);
  if (len > SA_WAL_MAX_PAYLOAD) {
    snprintf(reason, reason_len, "implausible payload length %u", len);
    return -1;
  }
  if ((uint64_t)avail - SA_WAL_RECORD_HEADER < len) {
    snprintf(reason, reason_len, "payload truncated (needs %u bytes, %zu remain)", len,
             avail - SA_WAL_RECORD_HEADER);
    return -1;
  }
  uint32_t stored = sa_get_u32(buf);
  uint32_t crc = sa_crc32c(0, buf + 4, SA_WAL_RECORD_HEADER - 4 + (size_t)len);
  if (stored != crc) {
    snprintf(reason, reason_len, "CRC mismatch (stored %08x, computed %08x)", stored, crc);
    return -1;
  }
  if (wal_payload_check(type, buf + SA_WAL_RECORD_HEADER, len, NULL) != 0) {
    snprintf(reason, reason_len, "malformed payload");
    return -1;
  }
  rec->offset = offset;
  rec->type = type;
  rec->len = len;
  rec->lsn = sa_get_u64(buf + 16);
  rec->hlc = sa_get_u64(buf + 24);
  rec->payload = buf + SA_WAL_RECORD_HEADER;
  return 0;
}

size_t wal_record_view(const unsigned char *buf, wal_rec *rec) {
  rec->offset = 0;
  rec->type = buf[8];
  rec->len = sa_get_u32(buf + 4);
  rec->lsn = sa_get_u64(buf + 16);
  rec->hlc = sa_get_u64(buf + 24);
  rec->payload = buf + SA_WAL_RECORD_HEADER;
  return SA_WAL_RECORD_HEADER + (size_t)rec->len;
}

/* ---- header ------------------------------------------------------------ */

static void wal_header_encode(unsigned char *h, const char *node_id, uint64_t start_lsn,
                              uint64_t created_ms) {
  memset(h, 0, SA_WAL_HEADER_SIZE);
  memcpy(h, wal_magic, 8);
  sa_put_u32(h + 8, SA_WAL_FORMAT);
  sa_put_u32(h + 12, SA_WAL_HEADER_SIZE);
  sa_put_u64(h + 16, start_lsn);
  sa_put_u64(h + 24, created_ms);
  size_t n = strlen(node_id);
  sa_put_u16(h + 32, (uint16_t)n);
  memcpy(h + 34, node_id, n);
  sa_put_u32(h + 124, sa_crc32c(0, h, 124));
}

/* Checks a header.  Fills node_id / start_lsn / version.  0 or an SA_E code. */
static int wal_header_decode(const unsigned char *h, size_t avail, const char *path, char *node_id,
                             uint64_t *start_lsn, uint32_t *version, sa_error *err) {
  if (avail < SA_WAL_HEADER_SIZE || memcmp(h, wal_magic, 8) != 0)
    return sa_fail(err, SA_ECORRUPT, "'%s' is not a Softadastra WAL (bad magic in its header)",
                   path);
  uint32_t ver = sa_get_u32(h + 8);
  if (sa_get_u32(h + 124) != sa_crc32c(0, h, 124))
    return sa_fail(err, SA_ECORRUPT, "WAL '%s': header checksum mismatch at offset 0", path);
  if (version) *version = ver;
  if (ver != SA_WAL_FORMAT || sa_get_u32(h + 12) != SA_WAL_HEADER_SIZE)
    return sa_fail(err, SA_EFORMAT, "WAL '%s' has format version %u; this build reads version %d",
                   path, ver, SA_WAL_FORMAT);
  uint16_t n = sa_get_u16(h + 32);
  if (n == 0 || n > SA_NODE_ID_MAX)
    return sa_fail(err, SA_ECORRUPT, "WAL '%s': bad node id length %u in header", path, n);
  memcpy(node_id, h + 34, n);
  node_id[n] = 0;
  *start_lsn = sa_get_u64(h + 16);
  return 0;
}

/* ---- small I/O helpers ------------------------------------------------- */

static int wal_pwrite_all(int fd, const void *buf, size_t len, uint64_t off) {
  return sa_io_pwrite_all(sa_io_get(), fd, buf, len, off);
}

static int wal_fsync_dir(const char *path) {
  return sa_io_fsync_dir(sa_io_get(), path);
}

/* Explains a failed open(2) of path: names the missing directory, etc. */
static int wal_open_error(const char *path, int e, sa_error *err) {
  if (e == ENOENT) {
    char *copy = strdup(path);
    const char *dir = copy ? dirname(copy) : ".";
    int rc = sa_fail(err, SA_ENOENT,
                     "cannot open WAL '%s': directory '%s' does not exist; create it first "
                     "(mkdir -p %s)",
                     path, dir, dir);
    free(copy);
    return rc;
  }
  if (e == EISDIR)
    return sa_fail(err, SA_EINVAL, "cannot open WAL '%s': it is a directory, not a file", path);
  if (e == ENOTDIR)
    return sa_fail(err, SA_ENOENT,
                   "cannot open WAL '%s': a component of the path is not a directory", path);
  return sa_fail(err, sa_errno_code(e), "cannot open WAL '%s': %s", path, strerror(e));
}

/* ---- open / close ------------------------------------------------------ */

int wal_open(sa_wal **out, const char *path, const char *node_id, sa_error *err) {
  *out = NULL;
  if (!path || !*path)
    return sa_fail(err, SA_EINVAL,
                   "wal_path is empty: give the node a WAL file such as data/%s.wal",
                   node_id ? node_id : "<node-id>");
  const sa_io *io = sa_io_get();
  int fd = io->open(path, O_RDWR | O_CREAT, 0644);
  if (fd < 0) return wal_open_error(path, errno, err);

  sa_wal *w = calloc(1, sizeof *w);
  if (!w || !(w->path = strdup(path))) {
    free(w);
    io->close(fd);
    return sa_fail(err, SA_ENOMEM, "out of memory opening WAL '%s'", path);
  }
  w->fd = fd;
  int rc;
  struct stat st;
  if (io->flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK)
      rc = sa_fail(err, SA_ELOCKED,
                   "WAL '%s' is locked by another process (is another softadastra node "
                   "running on this data?)",
                   path);
    else
      rc = sa_fail(err, sa_errno_code(errno), "cannot lock WAL '%s': %s", path, strerror(errno));
    goto fail;
  }
  if (io->fstat(fd, &st) != 0) {
    rc = sa_fail(err, SA_EIO, "cannot stat WAL '%s': %s", path, strerror(errno));
    goto fail;
  }
  if (!S_ISREG(st.st_mode)) {
    rc = sa_fail(err, SA_EINVAL, "WAL '%s' is not a regular file", path);
    goto fail;
  }

  unsigned char h[SA_WAL_HEADER_SIZE];
  size_t have = st.st_size < SA_WAL_HEADER_SIZE ? (size_t)st.st_size : SA_WAL_HEADER_SIZE;
  if (have && io->pread(fd, h, have, 0) != (ssize_t)have) {
    rc = sa_fail(err, SA_EIO, "cannot read WAL header of '%s': %s", path, strerror(errno));
    goto fail;
  }
  if (have < SA_WAL_HEADER_SIZE) {
    /* New file, or a creation interrupted before the header was whole. */
    if (have && memcmp(h, wal_magic, have < 8 ? have : 8) != 0) {
      rc = sa_fail(err, SA_ECORRUPT,
                   "'%s' is not a Softadastra WAL (%zu bytes, no WAL header); refusing to "
                   "overwrite it",
                   path, have);
      goto fail;
    }
    wal_header_encode(h, node_id, 0, sa_now_ms());
    if (io->ftruncate(fd, 0) != 0 || wal_pwrite_all(fd, h, sizeof h, 0) != 0 ||
        io->fdatasync(fd) != 0 || wal_fsync_dir(path) != 0) {
      int e = errno;
      rc = sa_fail(err, sa_errno_code(e), "cannot create WAL '%s': %s", path, strerror(e));
      goto fail;
    }
    snprintf(w->node_id, sizeof w->node_id, "%s", node_id);
    w->size = w->alloc = SA_WAL_HEADER_SIZE;
    *out = w;
    return 0;
  }
  rc = wal_header_decode(h, have, path, w->node_id, &w->start_lsn, NULL, err);
  if (rc) goto fail;
  if (strcmp(w->node_id, node_id) != 0) {
    rc = sa_fail(err, SA_ENODE,
                 "WAL '%s' belongs to node '%s', not to node '%s': use one WAL per node "
                 "(for example data/%s.wal)",
                 path, w->node_id, node_id, node_id);
    goto fail;
  }
  /* Until a scan finds the end of the records, the whole file counts. */
  w->size = w->alloc = (uint64_t)st.st_size;
  *out = w;
  return 0;
fail:
  io->close(fd);
  free(w->path);
  free(w);
  return rc;
}

void wal_close(sa_wal *w) {
  if (!w) return;
  sa_io_get()->close(w->fd); /* closing the descriptor releases the flock */
  free(w->path);
  free(w);
}

void wal_set_prealloc(sa_wal *w, uint64_t chunk) {
  w->chunk = chunk;
}

uint64_t wal_size(const sa_wal *w) {
  return __atomic_load_n(&w->size, __ATOMIC_RELAXED);
}
uint64_t wal_start_lsn(const sa_wal *w) {
  return w->start_lsn;
}
const char *wal_path(const sa_wal *w) {
  return w->path;
}

/* ---- scanning ---------------------------------------------------------- */

/* A forward reader over the file's bytes [0, size): a window of pread'd
 * bytes, reused.  The scans read the WAL through it rather than through a
 * mapping: a first touch of a mapped page costs a fault, which made the
 * mapped scan of a 150 MB WAL 70-90 ms here against 30 ms with pread into
 * a 1 MiB buffer. */
typedef struct {
  int fd;
  const char *path;
  uint64_t size;
  unsigned char *buf;
  size_t cap;
  uint64_t base; /* buf holds the file's bytes [base, base + have) */
  size_t have;
  int rc; /* the error of a call that returned NULL */
} wal_reader;

#define WAL_READ_CHUNK (1u << 20)

/* The file's bytes [off, off + n) (off + n <= size).  Pointers from earlier
 * calls are invalid after it.  NULL with err set on a read error. */
static const unsigned char *wal_read_at(wal_reader *r, uint64_t off, size_t n, sa_error *err) {
  if (off >= r->base && off + n <= r->base + r->have) return r->buf + (off - r->base);
  size_t keep = off >= r->base && off < r->base + r->have ? (size_t)(r->base + r->have - off) : 0;
  size_t want = n > WAL_READ_CHUNK ? n : WAL_READ_CHUNK;
  if (want > r->cap) {
    unsigned char *b = realloc(r->buf, want);
    if (!b) {
      r->rc = sa_fail(err, SA_ENOMEM, "out of memory reading WAL '%s' (%zu bytes)", r->path, want);
      return NULL;
    }
    r->buf = b;
    r->cap = want;
  }
  if (keep) memmove(r->buf, r->buf + (off - r->base), keep);
  r->base = off;
  r->have = keep;
  uint64_t end = off + r->cap < r->size ? off + r->cap : r->size;
  const sa_io *io = sa_io_get();
  while (r->base + r->have < end) {
    ssize_t got = io->pread(r->fd, r->buf + r->have, (size_t)(end - r->base - r->have),
                            (off_t)(r->base + r->have));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      int e = got < 0 ? errno : EIO;
      r->rc =
          sa_fail(err, sa_errno_code(e), "cannot read WAL '%s' at offset %llu: %s", r->path,
                  (unsigned long long)(r->base + r->have), got < 0 ? strerror(e) : "file shrank");
      return NULL;
    }
    r->have += (size_t)got;
  }
  return r->buf;
}

/* Frees r's buffer and returns the error of its failed read. */
static int wal_reader_fail(wal_reader *r) {
  free(r->buf);
  r->buf = NULL;
  return r->rc;
}

/* The bytes of the record at off, as much of them as wal_record_decode
 * needs to accept or reject it: *avail is what it may assume is there. */
static const unsigned char *wal_read_record(wal_reader *r, uint64_t off, size_t *avail,
                                            sa_error *err) {
  uint64_t rest = r->size - off;
  size_t n = rest < SA_WAL_RECORD_HEADER ? (size_t)rest : SA_WAL_RECORD_HEADER;
  const unsigned char *p = wal_read_at(r, off, n, err);
  *avail = n;
  if (!p || n < SA_WAL_RECORD_HEADER) return p;
  uint32_t len = sa_get_u32(p + 4);
  if (len > SA_WAL_MAX_PAYLOAD) return p; /* rejected on its header */
  if (rest - SA_WAL_RECORD_HEADER < len) {
    /* Rejected as truncated, which wal_record_decode finds from avail and
     * the header alone (it checks the length before any payload byte). */
    *avail = (size_t)rest;
    return p;
  }
  *avail = SA_WAL_RECORD_HEADER + len;
  return wal_read_at(r, off, *avail, err);
}

/* The rest of a file after its valid records (off: where they end; prev:
 * the last LSN): free space, a torn tail or corruption.  buf maps the
 * whole file. */
static void wal_classify_rest(const unsigned char *buf, uint64_t size, uint64_t off, uint64_t prev,
                              sa_wal_report *rep) {
  /* A rest of zero bytes only is free space (preallocation): CLEAN. */
  uint64_t last_nz = size; /* offset of the last non-zero byte of the rest */
  for (uint64_t o = size; o > off; o--)
    if (buf[o - 1] != 0) {
      last_nz = o - 1;
      break;
    }
  if (last_nz == size) {
    rep->reason[0] = 0;
    return;
  }

  rep->bad_offset = off;
  rep->rest_bytes = last_nz + 1 - off;
  /* A valid record further on, with a later LSN, means corruption.  Its
   * magic bytes (10, 11) are non-zero, so it starts before last_nz - 10. */
  for (uint64_t o = off + 1; o + SA_WAL_RECORD_HEADER <= size && o + 11 <= last_nz; o++) {
    const unsigned char *p = buf + o;
    if (p[10] != 'S' || p[11] != 'A' || p[8] < WAL_PUT || p[8] > WAL_TYPE_MAX || p[9] != 0)
      continue;
    wal_rec rec;
    char why[200];
    if (wal_record_decode(p, size - o, o, &rec, why, sizeof why) == 0 && rec.lsn > prev) {
      rep->state = SA_WAL_CORRUPT;
      rep->next_good_offset = o;
      return;
    }
  }
  rep->state = SA_WAL_TORN;
}

/* Scans the file (header included, size bytes) and fills rep.  Calls visit
 * for valid records; its non-zero return stops the scan and is returned. */
static int wal_scan_fd(int fd, const char *path, uint64_t size, uint64_t start_lsn,
                       int (*visit)(const wal_rec *, void *), void *ctx, sa_wal_report *rep,
                       sa_error *err) {
  uint64_t off = SA_WAL_HEADER_SIZE, prev = start_lsn;
  rep->records = 0;
  rep->first_lsn = rep->last_lsn = 0;
  rep->state = SA_WAL_CLEAN;
  rep->bad_offset = rep->next_good_offset = 0;
  rep->data_bytes = rep->rest_bytes = 0;
  rep->reason[0] = 0;
  wal_reader r = {.fd = fd, .path = path, .size = size};
  int rc = 0;
  while (off < size) {
    wal_rec rec;
    char why[200];
    size_t avail;
    const unsigned char *p = wal_read_record(&r, off, &avail, err);
    if (!p) return wal_reader_fail(&r);
    if (wal_record_decode(p, avail, off, &rec, why, sizeof why) != 0) {
      snprintf(rep->reason, sizeof rep->reason, "%s", why);
      break;
    }
    if ((rep->records == 0 && rec.lsn <= prev) || (rep->records > 0 && rec.lsn != prev + 1)) {
      snprintf(rep->reason, sizeof rep->reason, "LSN %llu out of sequence (expected %llu)",
               (unsigned long long)rec.lsn, (unsigned long long)(prev + 1));
      break;
    }
    if (rep->records == 0) rep->first_lsn = rec.lsn;
    rep->records++;
    rep->last_lsn = prev = rec.lsn;
    if (visit && (rc = visit(&rec, ctx)) != 0) break;
    off += SA_WAL_RECORD_HEADER + rec.len;
  }
  free(r.buf);
  if (rc) return rc;
  rep->data_bytes = off < size ? off : size;
  if (off >= size) return 0;
  /* The rest is rare (a torn or corrupt tail) or small (free space, at most
   * one preallocation step): mapped, for its backward and byte-wise walks. */
  void *map = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED)
    return sa_fail(err, sa_errno_code(errno), "cannot map WAL '%s' for reading: %s", path,
                   strerror(errno));
  wal_classify_rest(map, size, off, prev, rep);
  munmap(map, (size_t)size);
  return 0;
}

static void wal_report_init(sa_wal_report *rep, const char *node_id, uint64_t start_lsn,
                            uint64_t size) {
  memset(rep, 0, sizeof *rep);
  snprintf(rep->node_id, sizeof rep->node_id, "%s", node_id);
  rep->format_version = SA_WAL_FORMAT;
  rep->start_lsn = start_lsn;
  rep->file_bytes = size;
}

int wal_scan(sa_wal *w, wal_visit_fn visit, void *ctx, sa_wal_report *rep, sa_error *err) {
  wal_report_init(rep, w->node_id, w->start_lsn, w->alloc);
  int rc = wal_scan_fd(w->fd, w->path, w->alloc, w->start_lsn, visit, ctx, rep, err);
  /* A whole scan of a clean file knows where the records end: appends go
   * there, over the zero-filled free space. */
  if (rc == 0 && rep->state == SA_WAL_CLEAN)
    __atomic_store_n(&w->size, rep->data_bytes, __ATOMIC_RELAXED);
  return rc;
}

int wal_replay(sa_wal *w, uint64_t end, wal_visit_fn visit, void *ctx, sa_error *err) {
  if (end > w->alloc)
    return sa_fail(err, SA_ECORRUPT, "WAL '%s' shrank below offset %llu while open", w->path,
                   (unsigned long long)end);
  wal_reader r = {.fd = w->fd, .path = w->path, .size = end};
  int rc = 0;
  for (uint64_t off = SA_WAL_HEADER_SIZE; off < end && rc == 0;) {
    size_t avail;
    const unsigned char *p = wal_read_record(&r, off, &avail, err);
    if (!p) return wal_reader_fail(&r);
    uint32_t len = avail >= SA_WAL_RECORD_HEADER ? sa_get_u32(p + 4) : 0;
    if (avail < SA_WAL_RECORD_HEADER || avail - SA_WAL_RECORD_HEADER != len) {
      rc = sa_fail(err, SA_ECORRUPT,
                   "WAL '%s' changed while open: the record at offset %llu no longer fits", w->path,
                   (unsigned long long)off);
      break;
    }
    wal_rec rec = {.offset = off,
                   .type = p[8],
                   .len = len,
                   .lsn = sa_get_u64(p + 16),
                   .hlc = sa_get_u64(p + 24),
                   .payload = p + SA_WAL_RECORD_HEADER};
    rc = visit(&rec, ctx);
    off += SA_WAL_RECORD_HEADER + (uint64_t)len;
  }
  free(r.buf);
  return rc;
}

int wal_cut_tail(sa_wal *w, const sa_wal_report *rep, char *side, size_t side_len, sa_error *err) {
  assert(rep->state == SA_WAL_TORN);
  assert(rep->bad_offset >= SA_WAL_HEADER_SIZE && rep->rest_bytes > 0 &&
         rep->bad_offset + rep->rest_bytes <= w->alloc);
  const sa_io *io = sa_io_get();
  /* Only through the last non-zero byte: zeros after it are free space. */
  uint64_t n = rep->rest_bytes;
  unsigned char *buf = malloc(n ? n : 1);
  if (!buf) return sa_fail(err, SA_ENOMEM, "out of memory cutting the torn tail of '%s'", w->path);
  if (io->pread(w->fd, buf, n, (off_t)rep->bad_offset) != (ssize_t)n) {
    free(buf);
    return sa_fail(err, SA_EIO, "cannot read the torn tail of WAL '%s': %s", w->path,
                   strerror(errno));
  }
  /* "<wal>.torn.<ms>", or "<wal>.torn.<ms>.<n>" when that name is taken
   * (an earlier attempt in the same millisecond). */
  uint64_t ms = sa_now_ms();
  int fd = -1;
  for (int i = 0; i < 100 && fd < 0; i++) {
    if (i == 0)
      snprintf(side, side_len, "%s.torn.%llu", w->path, (unsigned long long)ms);
    else
      snprintf(side, side_len, "%s.torn.%llu.%d", w->path, (unsigned long long)ms, i);
    fd = io->open(side, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0 && errno != EEXIST) break;
  }
  int e = fd < 0 ? errno : 0;
  if (fd >= 0 && (wal_pwrite_all(fd, buf, n, 0) != 0 || io->fsync(fd) != 0)) e = errno;
  if (fd >= 0) io->close(fd);
  free(buf);
  if (e) {
    if (fd >= 0) io->unlink(side); /* open failed: leave no file behind */
    return sa_fail(err, sa_errno_code(e), "cannot keep the torn tail of WAL '%s' in '%s': %s",
                   w->path, side, strerror(e));
  }
  if (wal_fsync_dir(side) != 0) {
    e = errno;
    io->unlink(side);
    return sa_fail(err, sa_errno_code(e), "cannot keep the torn tail of WAL '%s' in '%s': %s",
                   w->path, side, strerror(e));
  }
  /* From here the side file stays even on failure: the WAL may already be
   * cut, and these bytes exist nowhere else. */
  if (io->ftruncate(w->fd, (off_t)rep->bad_offset) != 0 || io->fdatasync(w->fd) != 0) {
    e = errno;
    return sa_fail(err, sa_errno_code(e),
                   "cannot cut the torn tail of WAL '%s' (its bytes are kept in '%s'): %s", w->path,
                   side, strerror(e));
  }
  w->alloc = rep->bad_offset; /* preallocation comes back with the next append */
  __atomic_store_n(&w->size, rep->bad_offset, __ATOMIC_RELAXED);
  return 0;
}

/* ---- writing ----------------------------------------------------------- */

static int wal_poisoned(sa_wal *w, sa_error *err) {
  return sa_fail(err, SA_EREADONLY, "%s", w->poison_msg);
}

/* Zero-fills the file from `from` (>= the records' end) up to the next
 * multiple of the chunk above it, so that later appends overwrite written,
 * synced blocks and their fdatasync need not write the inode too (the file
 * size no longer changes).  Best effort: on failure nothing is lost (the
 * records are already in place, and a partial run of zeros is free space),
 * so the append goes on without preallocation. */
static void wal_extend(sa_wal *w, uint64_t from) {
  uint64_t to = (from + w->chunk - 1) / w->chunk * w->chunk;
  if (to <= from) return;
  void *zeros = calloc(1, (size_t)(to - from));
  if (!zeros) {
    w->alloc = from;
    return;
  }
  int e = errno;
  w->alloc = wal_pwrite_all(w->fd, zeros, (size_t)(to - from), from) == 0 ? to : from;
  errno = e;
  free(zeros);
}

int wal_append(sa_wal *w, const void *buf, size_t len, bool *rolled_back, sa_error *err) {
  *rolled_back = true;
  if (w->poisoned) return wal_poisoned(w, err);
  uint64_t end = w->size + len;
  if (wal_pwrite_all(w->fd, buf, len, w->size) == 0) {
    if (end > w->alloc) {
      w->alloc = end;
      if (w->chunk) wal_extend(w, end);
    }
    __atomic_store_n(&w->size, end, __ATOMIC_RELAXED);
    return 0;
  }
  int e = errno;
  /* Undo whatever part reached the file, and the free space after it: a
   * partial record must not stay in front of later records, and a whole
   * one would be read back by a later scan.  No sync needed: the next
   * append overwrites these offsets, and its fdatasync makes the size
   * durable. */
  *rolled_back = sa_io_get()->ftruncate(w->fd, (off_t)w->size) == 0;
  if (*rolled_back) w->alloc = w->size;
  if (e == ENOSPC || e == EDQUOT || e == EFBIG)
    return sa_fail(err, SA_ENOSPC, "cannot append to WAL '%s': no space left on device", w->path);
  return sa_fail(err, sa_errno_code(e), "cannot append to WAL '%s': %s", w->path, strerror(e));
}

int wal_rollback(sa_wal *w, uint64_t end, sa_error *err) {
  assert(end >= SA_WAL_HEADER_SIZE && end <= w->size);
  if (w->poisoned) return wal_poisoned(w, err);
  const sa_io *io = sa_io_get();
  /* Truncate, free space included: the records after end are whole and
   * valid, and a later scan must not find them (rolled back, never
   * acknowledged).  The next append preallocates again. */
  if (io->ftruncate(w->fd, (off_t)end) != 0)
    return sa_fail(err, sa_errno_code(errno), "cannot roll back WAL '%s': %s", w->path,
                   strerror(errno));
  w->alloc = end;
  __atomic_store_n(&w->size, end, __ATOMIC_RELAXED);
  return wal_sync(w, err);
}

int wal_sync(sa_wal *w, sa_error *err) {
  if (w->poisoned) return wal_poisoned(w, err);
  if (sa_io_get()->fdatasync(w->fd) == 0) return 0;
  int e = errno;
  w->poisoned = true;
  snprintf(w->poison_msg, sizeof w->poison_msg,
           "node is read-only: fdatasync of WAL '%s' failed (%s); writes since the last "
           "successful sync may not be durable; close and reopen the node to recover",
           w->path, strerror(e));
  return sa_fail(err, e == ENOSPC ? SA_ENOSPC : SA_EIO, "%s", w->poison_msg);
}

int wal_reset(sa_wal *w, uint64_t start_lsn, sa_error *err) {
  if (w->poisoned) return wal_poisoned(w, err);
  const sa_io *io = sa_io_get();
  unsigned char h[SA_WAL_HEADER_SIZE];
  uint64_t created = 0;
  if (io->pread(w->fd, h, sizeof h, 0) == (ssize_t)sizeof h) created = sa_get_u64(h + 24);
  wal_header_encode(h, w->node_id, start_lsn, created);
  if (io->ftruncate(w->fd, SA_WAL_HEADER_SIZE) != 0 || wal_pwrite_all(w->fd, h, sizeof h, 0) != 0)
    return sa_fail(err, sa_errno_code(errno), "checkpoint of WAL '%s' failed: %s", w->path,
                   strerror(errno));
  w->alloc = SA_WAL_HEADER_SIZE; /* preallocated again by the next append */
  __atomic_store_n(&w->size, SA_WAL_HEADER_SIZE, __ATOMIC_RELAXED);
  w->start_lsn = start_lsn;
  return wal_sync(w, err);
}

/* ---- offline tools ----------------------------------------------------- */

typedef struct {
  sa_wal_visit_fn fn;
  void *ctx;
} wal_pub_visit;

static int wal_pub_visit_cb(const wal_rec *rec, void *ctx) {
  wal_pub_visit *v = ctx;
  sa_wal_record r = {0};
  r.offset = rec->offset;
  r.lsn = rec->lsn;
  r.hlc = rec->hlc;
  r.type = rec->type;
  r.length = rec->len;
  wal_op_iter it;
  wal_op op;
  wal_op_iter_init(&it, rec->type, rec->payload, rec->len);
  r.count = it.left;
  if (wal_op_next(&it, &op)) {
    r.key = op.key;
    r.key_len = op.klen;
    r.value_len = op.op == SA_OP_PUT ? op.vlen : 0;
  }
  return v->fn(&r, v->ctx);
}

/* Opens path read-only and checks its header.  0 and *fd_out, or error. */
static int wal_open_readonly(const char *path, int *fd_out, uint64_t *size, char *node_id,
                             uint64_t *start_lsn, uint32_t *version, sa_error *err) {
  if (!path || !*path) return sa_fail(err, SA_EINVAL, "WAL path is empty");
  const sa_io *io = sa_io_get();
  int fd = io->open(path, O_RDONLY, 0);
  if (fd < 0) {
    int e = errno;
    if (e == ENOENT) return sa_fail(err, SA_ENOENT, "WAL '%s' does not exist", path);
    return wal_open_error(path, e, err);
  }
  struct stat st;
  unsigned char h[SA_WAL_HEADER_SIZE];
  ssize_t got = 0;
  if (io->fstat(fd, &st) != 0 || (got = io->pread(fd, h, sizeof h, 0)) < 0) {
    int e = errno;
    io->close(fd);
    return sa_fail(err, sa_errno_code(e), "cannot read WAL '%s': %s", path, strerror(e));
  }
  int rc = wal_header_decode(h, (size_t)got, path, node_id, start_lsn, version, err);
  if (rc) {
    io->close(fd);
    return rc;
  }
  *fd_out = fd;
  *size = (uint64_t)st.st_size;
  return 0;
}

int wal_scan_path(const char *path, sa_wal_visit_fn visit, void *ctx, sa_wal_report *rep,
                  sa_error *err) {
  int fd;
  uint64_t size, start;
  char node[SA_NODE_ID_MAX + 1] = "";
  uint32_t version = 0;
  memset(rep, 0, sizeof *rep);
  int rc = wal_open_readonly(path, &fd, &size, node, &start, &version, err);
  rep->format_version = version;
  if (rc) return rc;
  wal_report_init(rep, node, start, size);
  wal_pub_visit v = {visit, ctx};
  rc = wal_scan_fd(fd, path, size, start, visit ? wal_pub_visit_cb : NULL, &v, rep, err);
  sa_io_get()->close(fd);
  return rc;
}

int sa_wal_scan(const char *path, sa_wal_visit_fn visit, void *ctx, sa_wal_report *rep,
                sa_error *err) {
  sa_wal_report local;
  int rc = wal_scan_path(path, visit, ctx, rep ? rep : &local, err);
  return rc > 0 ? 0 : rc; /* the visitor stopped the scan: not an error */
}

static int wal_copy_file(int src, uint64_t size, const char *dst, sa_error *err) {
  const sa_io *io = sa_io_get();
  int fd = io->open(dst, O_WRONLY | O_CREAT | O_EXCL, 0644);
  if (fd < 0)
    return sa_fail(err, sa_errno_code(errno), "cannot create backup '%s': %s", dst,
                   strerror(errno));
  unsigned char buf[1 << 16];
  uint64_t off = 0;
  int e = 0;
  while (off < size && !e) {
    size_t want = size - off < sizeof buf ? (size_t)(size - off) : sizeof buf;
    ssize_t n = io->pread(src, buf, want, (off_t)off);
    if (n <= 0) {
      e = n < 0 ? errno : EIO;
      break;
    }
    if (wal_pwrite_all(fd, buf, (size_t)n, off) != 0) e = errno;
    off += (uint64_t)n;
  }
  if (!e && io->fsync(fd) != 0) e = errno;
  io->close(fd);
  if (!e && wal_fsync_dir(dst) != 0) e = errno;
  if (e) return sa_fail(err, sa_errno_code(e), "cannot write backup '%s': %s", dst, strerror(e));
  return 0;
}

int sa_wal_repair(const char *path, sa_wal_report *rep, sa_error *err) {
  sa_wal_report local;
  if (!rep) rep = &local;
  memset(rep, 0, sizeof *rep);
  int fd;
  uint64_t size, start;
  char node[SA_NODE_ID_MAX + 1] = "";
  uint32_t version = 0;
  int rc = wal_open_readonly(path, &fd, &size, node, &start, &version, err);
  if (rc) return rc;
  const sa_io *io = sa_io_get();
  io->close(fd);
  /* Reopen for writing and take the lock: never repair under a live node. */
  fd = io->open(path, O_RDWR, 0);
  if (fd < 0) return wal_open_error(path, errno, err);
  if (io->flock(fd, LOCK_EX | LOCK_NB) != 0) {
    io->close(fd);
    return sa_fail(err, SA_ELOCKED,
                   "WAL '%s' is locked by another process: stop the node before repairing it",
                   path);
  }
  wal_report_init(rep, node, start, size);
  rc = wal_scan_fd(fd, path, size, start, NULL, NULL, rep, err);
  if (rc == 0 && rep->state != SA_WAL_CLEAN) {
    snprintf(rep->backup_path, sizeof rep->backup_path, "%s.bak.%llu", path,
             (unsigned long long)sa_now_ms());
    rc = wal_copy_file(fd, size, rep->backup_path, err);
    if (rc == 0 && (io->ftruncate(fd, (off_t)rep->bad_offset) != 0 || io->fdatasync(fd) != 0))
      rc = sa_fail(err, sa_errno_code(errno), "cannot truncate WAL '%s' at offset %llu: %s", path,
                   (unsigned long long)rep->bad_offset, strerror(errno));
  }
  io->close(fd);
  return rc;
}
