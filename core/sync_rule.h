/*
 * sync_rule.h -- the conflict rule of sync between nodes, the same on every
 * node: last writer wins on the pair (hlc, origin); and the deleted-writes
 * rule: a key whose tombstone was dropped by age keeps a record of that
 * tombstone's pair (the store's "dropped" database), and an op for a key the
 * node does not hold is stale when that record is at or above its pair.
 *
 * What it is not: I/O.  Pure functions; the writer calls them with the
 * state the groups before a batch leave (node_writer.c), the tombstone GC
 * with its clock.
 *
 * Invariants: sync_pair_cmp is a total order on pairs (hlc first, then
 * origin bytewise: memcmp over the shorter length, then the shorter
 * first); an incoming item is applied exactly when its pair is greater
 * than the held one (live or tombstone), or, for a key not held, than the
 * key's dropped-tombstone record (none: applied), so applying the same
 * items in any order, any number of times, ends in the same state.  A
 * record only ever concerns its own key: an op of another key is never
 * refused because of it.
 *
 * Threads: any.
 */
#ifndef SA_SYNC_RULE_H
#define SA_SYNC_RULE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A pair: origin is olen bytes (not necessarily NUL-terminated). */
typedef struct sync_pair {
  uint64_t hlc;
  const char *origin;
  size_t olen;
} sync_pair;

/* <0, 0, >0 as (ha, oa) is below, equal to or above (hb, ob). */
int sync_pair_cmp(uint64_t ha, const char *oa, size_t la, uint64_t hb, const char *ob, size_t lb);

/* The held state of a key (matches STORE_NONE/LIVE/TOMB of store.h). */
enum { SYNC_HELD_NONE = 0, SYNC_HELD_LIVE = 1, SYNC_HELD_TOMB = 2 };

/* Decisions (match WAL_SYNC_APPLY/SKIP/STALE of wal.h). */
enum { SYNC_APPLY = 1, SYNC_SKIP = 2, SYNC_STALE = 3 };

/* Decides an incoming item (a put or a delete with pair in) against the
 * key's held state:
 *   held LIVE or TOMB: APPLY when in is greater than held, SKIP when equal
 *     (the same change) or smaller (lost);
 *   held NONE: STALE when dropped (the key's dropped-tombstone record; NULL
 *     when it has none) is at or above in: the key was deleted by a change
 *     at least as new and the tombstone dropped; else APPLY (a delete of an
 *     unknown key leaves a tombstone, so an older put arriving later still
 *     loses).
 * The op does not matter: a put and a delete compete alike. */
int sync_decide(sync_pair in, int held, sync_pair held_pair, const sync_pair *dropped);

/* A dropped-tombstone record of a delete with this hlc is kept until the
 * delete is 2 x ttl_ms old by its own clock (the hlc's ms part): one TTL as
 * a tombstone, a further one as a record.  True once it may go. */
bool sync_dropped_expired(uint64_t hlc, uint64_t now_ms, uint64_t ttl_ms);

#endif
