/*
 * fuzz_wal_record.c -- the WAL record decoder (core/wal.h).
 *
 * Input: the bytes of one record (header and payload), as the scanner would
 * find them at some offset.  Properties:
 *   - wal_record_decode never reads outside the input and either accepts
 *     or gives a reason;
 *   - an accepted record's payload passes wal_payload_check, wal_op_iter
 *     yields exactly `count` operations inside the payload, each with a key
 *     of 1..SA_KEY_MAX bytes;
 *   - re-encoding the decoded operations with wal_record_encode gives back
 *     the very same bytes (the format has one encoding per record);
 *   - wal_payload_check on the input as a bare payload of each type is safe
 *     and, when it accepts, the iterator stays inside the payload.
 */
#include "fuzz.h"

#include "softadastra.h"
#include "wal.h"

#include <string.h>

/* Walks the operations of an accepted payload; returns how many. */
static uint32_t walk(int type, const uint8_t *p, uint32_t len, wal_op *ops, uint32_t max) {
  wal_op_iter it;
  wal_op op;
  uint32_t n = 0;
  wal_op_iter_init(&it, type, p, len);
  while (wal_op_next(&it, &op)) {
    const uint8_t *k = (const uint8_t *)op.key, *v = op.val;
    FUZZ_CHECK(op.op == SA_OP_PUT || op.op == SA_OP_DELETE);
    FUZZ_CHECK(op.klen >= 1 && op.klen <= SA_KEY_MAX);
    FUZZ_CHECK(k >= p && k + op.klen <= p + len);
    if (op.op == SA_OP_PUT && op.vlen) FUZZ_CHECK(v >= p && v + op.vlen <= p + len);
    if (op.op == SA_OP_DELETE) FUZZ_CHECK(op.vlen == 0);
    if (ops && n < max) ops[n] = op;
    n++;
    FUZZ_CHECK(n <= SA_WAL_MAX_BATCH_OPS);
  }
  FUZZ_CHECK(it.p == it.end);
  return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char reason[256] = "";
  wal_rec rec;
  if (wal_record_decode(data, size, 4242, &rec, reason, sizeof reason) == 0) {
    FUZZ_CHECK(rec.offset == 4242);
    FUZZ_CHECK(rec.type == WAL_PUT || rec.type == WAL_DELETE || rec.type == WAL_BATCH);
    FUZZ_CHECK((size_t)SA_WAL_RECORD_HEADER + rec.len <= size);
    FUZZ_CHECK(rec.payload == data + SA_WAL_RECORD_HEADER);
    uint32_t count = 0;
    FUZZ_CHECK(wal_payload_check(rec.type, rec.payload, rec.len, &count) == 0);
    FUZZ_CHECK(count >= 1 && (rec.type == WAL_BATCH || count == 1));
    wal_op *ops = calloc(count, sizeof *ops);
    FUZZ_CHECK(ops != NULL);
    FUZZ_CHECK(walk(rec.type, rec.payload, rec.len, ops, count) == count);
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
  for (int type = 0; type <= 4; type++) {
    uint32_t count = 0;
    if (size <= UINT32_MAX && wal_payload_check(type, data, (uint32_t)size, &count) == 0) {
      FUZZ_CHECK(type >= WAL_PUT && type <= WAL_BATCH);
      FUZZ_CHECK(walk(type, data, (uint32_t)size, NULL, 0) == count);
    }
  }
  return 0;
}
