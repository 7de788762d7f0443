/*
 * sync_rule.h -- the conflict rule of sync between nodes, the same on every
 * node: last writer wins on the pair (hlc, origin).
 *
 * What it is not: I/O.  Pure functions; the writer calls them with the
 * state the groups before a batch leave (node_writer.c).
 *
 * Invariants: sync_pair_cmp is a total order on pairs (hlc first, then
 * origin bytewise: memcmp over the shorter length, then the shorter
 * first); an incoming item is applied exactly when its pair is greater
 * than the held one (live or tombstone), so applying the same items in any
 * order, any number of times, ends in the same state.
 *
 * Threads: any.
 */
#ifndef SA_SYNC_RULE_H
#define SA_SYNC_RULE_H

#include <stddef.h>
#include <stdint.h>

/* <0, 0, >0 as (ha, oa) is below, equal to or above (hb, ob). */
int sync_pair_cmp(uint64_t ha, const char *oa, size_t la, uint64_t hb, const char *ob, size_t lb);

/* The held state of a key (matches STORE_NONE/LIVE/TOMB of store.h). */
enum { SYNC_HELD_NONE = 0, SYNC_HELD_LIVE = 1, SYNC_HELD_TOMB = 2 };

/* Decisions (match WAL_SYNC_APPLY/SKIP/STALE of wal.h). */
enum { SYNC_APPLY = 1, SYNC_SKIP = 2, SYNC_STALE = 3 };

/* Decides an incoming item (op: SA_OP_PUT or SA_OP_DELETE, pair (hlc,
 * origin)) against the key's held state: held NONE: a put below horizon is
 * STALE (its key was deleted and the tombstone dropped), anything else is
 * APPLIED (a delete of an unknown key leaves a tombstone, so an older put
 * arriving later still loses); held LIVE or TOMB: APPLY when the incoming
 * pair is greater, SKIP when equal (the same change) or smaller (lost). */
int sync_decide(int op, uint64_t hlc, const char *origin, size_t olen, int held, uint64_t held_hlc,
                const char *held_origin, size_t held_olen, uint64_t horizon);

#endif
