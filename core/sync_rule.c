/*
 * sync_rule.c -- the conflict rule and the deleted-writes rule (see
 * sync_rule.h): compare two pairs, decide an incoming item, age a
 * dropped-tombstone record.  Pure; any thread.
 */
#include "sync_rule.h"

#include "hlc.h"

#include <string.h>

int sync_pair_cmp(uint64_t ha, const char *oa, size_t la, uint64_t hb, const char *ob, size_t lb) {
  if (ha != hb) return ha < hb ? -1 : 1;
  int c = memcmp(oa, ob, la < lb ? la : lb);
  if (c) return c < 0 ? -1 : 1;
  return la < lb ? -1 : la > lb;
}

int sync_decide(sync_pair in, int held, sync_pair held_pair, const sync_pair *dropped) {
  if (held == SYNC_HELD_NONE)
    return dropped && sync_pair_cmp(in.hlc, in.origin, in.olen, dropped->hlc, dropped->origin,
                                    dropped->olen) <= 0
               ? SYNC_STALE
               : SYNC_APPLY;
  return sync_pair_cmp(in.hlc, in.origin, in.olen, held_pair.hlc, held_pair.origin,
                       held_pair.olen) > 0
             ? SYNC_APPLY
             : SYNC_SKIP;
}

bool sync_dropped_expired(uint64_t hlc, uint64_t now_ms, uint64_t ttl_ms) {
  return sa_hlc_ms(hlc) + 2 * ttl_ms <= now_ms; /* 48-bit ms + 2 x at most 10 years: no wrap */
}
