/*
 * fuzz_wal_record.c -- the WAL record decoder (core/wal.h).
 *
 * Input: the bytes of one record (header and payload), as the scanner would
 * find them at some offset.  Properties:
 *   - wal_record_decode never reads outside the input and either accepts
 *     or gives a reason;
 *   - an accepted record's payload passes wal_payload_check, wal_op_iter
 *     yields exactly `count` operations inside the payload, each with a key
 *     of 1..SA_KEY_MAX bytes, and a content type only on a put (type 5, or
 *     an applied put of a sync record), inside the payload, at most
 *     SA_CONTENT_TYPE_MAX bytes and a valid media type;
 *   - re-encoding the decoded operations with wal_record_encode gives back
 *     the very same bytes (the format has one encoding per record);
 *   - a sync record (type 4): every item inside it with a known decision,
 *     the applied ones exactly those the plain iteration gives, and
 *     wal_sync_record_encode of what was decoded gives back the same bytes;
 *   - wal_payload_check on the input as a bare payload of each type is safe
 *     and, when it accepts, the iterator stays inside the payload.
 */
#include "fuzz.h"

#include "internal.h"
#include "softadastra.h"
#include "wal.h"

#include <string.h>

/* Walks the operations of an accepted payload (a sync record's applied
 * items, or all of them with all set); returns how many. */
static uint32_t walk(int type, const uint8_t *p, uint32_t len, wal_op *ops, uint32_t max,
                     bool all) {
  wal_op_iter it;
  wal_op op;
  uint32_t n = 0;
  if (all)
    wal_op_iter_all(&it, type, p, len);
  else
    wal_op_iter_init(&it, type, p, len);
  while (wal_op_next(&it, &op)) {
    const uint8_t *k = (const uint8_t *)op.key, *v = op.val;
    FUZZ_CHECK(op.op == SA_OP_PUT || op.op == SA_OP_DELETE);
    FUZZ_CHECK(op.klen >= 1 && op.klen <= SA_KEY_MAX);
    FUZZ_CHECK(k >= p && k + op.klen <= p + len);
    if (op.op == SA_OP_PUT && op.vlen) FUZZ_CHECK(v >= p && v + op.vlen <= p + len);
    if (op.op == SA_OP_DELETE) FUZZ_CHECK(op.vlen == 0);
    FUZZ_CHECK(op.ctlen <= SA_CONTENT_TYPE_MAX);
    if (op.ctlen) {
      const uint8_t *t = (const uint8_t *)op.ctype;
      FUZZ_CHECK(op.op == SA_OP_PUT && (type == WAL_PUT_CT || type == WAL_SYNC));
      FUZZ_CHECK(t >= p && t + op.ctlen <= p + len);
      FUZZ_CHECK(sa_ctype_check(op.ctype, op.ctlen, NULL) == 0);
    } else {
      FUZZ_CHECK(type != WAL_PUT_CT);
    }
    if (type == WAL_SYNC) {
      FUZZ_CHECK(op.decision >= WAL_SYNC_APPLY && op.decision <= WAL_SYNC_STALE);
      FUZZ_CHECK(all || op.decision == WAL_SYNC_APPLY);
      if (op.ctlen) FUZZ_CHECK(op.decision == WAL_SYNC_APPLY);
      if (op.olen)
        FUZZ_CHECK((const uint8_t *)op.origin >= p &&
                   (const uint8_t *)op.origin + op.olen <= p + len);
    }
    if (ops && n < max) ops[n] = op;
    n++;
    FUZZ_CHECK(n <= SA_WAL_MAX_BATCH_OPS);
  }
  if (all || type != WAL_SYNC) FUZZ_CHECK(it.p == it.end);
  return n;
}

/* A sync record (peer, cursor, items with their pairs and decisions): its
 * items stay inside it, the applied ones are those the plain iteration
 * gives, and encoding what was decoded gives back the very same bytes. */
static void check_sync(const wal_rec *rec, const uint8_t *data, uint32_t count) {
  uint32_t all = 0;
  wal_op_iter it;
  wal_op op;
  wal_op_iter_all(&it, WAL_SYNC, rec->payload, rec->len);
  while (wal_op_next(&it, &op))
    all++;
  FUZZ_CHECK(all >= count && all <= SA_WAL_MAX_BATCH_OPS);
  wal_op *items = calloc(all ? all : 1, sizeof *items);
  FUZZ_CHECK(items != NULL);
  FUZZ_CHECK(walk(WAL_SYNC, rec->payload, rec->len, items, all, true) == all);
  const char *peer;
  uint32_t plen;
  uint64_t cursor;
  wal_sync_header(rec->payload, &peer, &plen, &cursor);
  FUZZ_CHECK((const uint8_t *)peer >= rec->payload &&
             (const uint8_t *)peer + plen <= rec->payload + rec->len);
  size_t sz = wal_sync_record_size(plen, items, all);
  FUZZ_CHECK(sz == (size_t)SA_WAL_RECORD_HEADER + rec->len);
  unsigned char *buf = malloc(sz);
  FUZZ_CHECK(buf != NULL);
  FUZZ_CHECK(wal_sync_record_encode(buf, rec->lsn, rec->hlc, peer, plen, cursor, items, all) == sz);
  FUZZ_CHECK(memcmp(buf, data, sz) == 0);
  free(buf);
  free(items);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char reason[256] = "";
  wal_rec rec;
  if (wal_record_decode(data, size, 4242, &rec, reason, sizeof reason) == 0) {
    FUZZ_CHECK(rec.offset == 4242);
    FUZZ_CHECK(rec.type == WAL_PUT || rec.type == WAL_DELETE || rec.type == WAL_BATCH ||
               rec.type == WAL_SYNC || rec.type == WAL_PUT_CT);
    FUZZ_CHECK((size_t)SA_WAL_RECORD_HEADER + rec.len <= size);
    FUZZ_CHECK(rec.payload == data + SA_WAL_RECORD_HEADER);
    uint32_t count = 0;
    FUZZ_CHECK(wal_payload_check(rec.type, rec.payload, rec.len, &count) == 0);
    if (rec.type == WAL_SYNC) {
      check_sync(&rec, data, count);
      return 0;
    }
    FUZZ_CHECK(count >= 1 && (rec.type == WAL_BATCH || count == 1));
    wal_op *ops = calloc(count, sizeof *ops);
    FUZZ_CHECK(ops != NULL);
    FUZZ_CHECK(walk(rec.type, rec.payload, rec.len, ops, count, false) == count);
    bool batch = rec.type == WAL_BATCH;
    size_t sz = wal_record_size(ops, count, batch);
    FUZZ_CHECK(sz == (size_t)SA_WAL_RECORD_HEADER + rec.len);
    unsigned char *buf = malloc(sz);
    FUZZ_CHECK(buf != NULL);
    FUZZ_CHECK(wal_record_encode(buf, rec.lsn, rec.hlc, ops, count, batch) == sz);
    FUZZ_CHECK(memcmp(buf, data, sz) == 0);
    free(buf);
    free(ops);
  } else {
    FUZZ_CHECK(reason[0] != 0);
  }
  /* the same bytes as a bare payload of each type */
  for (int type = 0; type <= WAL_TYPE_MAX + 1; type++) {
    uint32_t count = 0;
    if (size <= UINT32_MAX && wal_payload_check(type, data, (uint32_t)size, &count) == 0) {
      FUZZ_CHECK(type >= WAL_PUT && type <= WAL_TYPE_MAX);
      FUZZ_CHECK(walk(type, data, (uint32_t)size, NULL, 0, false) == count);
    }
  }
  return 0;
}
