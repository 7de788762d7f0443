/*
 * sync_rule.c -- the conflict rule (see sync_rule.h): compare two pairs,
 * decide an incoming item.  Pure; any thread.
 */
#include "sync_rule.h"

#include "softadastra.h"

#include <string.h>

int sync_pair_cmp(uint64_t ha, const char *oa, size_t la, uint64_t hb, const char *ob, size_t lb) {
  if (ha != hb) return ha < hb ? -1 : 1;
  int c = memcmp(oa, ob, la < lb ? la : lb);
  if (c) return c < 0 ? -1 : 1;
  return la < lb ? -1 : la > lb;
}

int sync_decide(int op, uint64_t hlc, const char *origin, size_t olen, int held, uint64_t held_hlc,
                const char *held_origin, size_t held_olen, uint64_t horizon) {
  if (held == SYNC_HELD_NONE) return op == SA_OP_PUT && hlc < horizon ? SYNC_STALE : SYNC_APPLY;
  return sync_pair_cmp(hlc, origin, olen, held_hlc, held_origin, held_olen) > 0 ? SYNC_APPLY
                                                                                : SYNC_SKIP;
}
