/*
 * hlc.c -- hybrid logical clock, see hlc.h.
 */
#include "hlc.h"

uint64_t sa_hlc_next(sa_hlc *h, uint64_t now_ms) {
  uint64_t phys = now_ms << SA_HLC_LOGICAL_BITS;
  uint64_t ts = phys > h->last ? phys : h->last + 1;
  h->last = ts;
  return ts;
}

void sa_hlc_observe(sa_hlc *h, uint64_t ts) {
  if (ts > h->last) h->last = ts;
}
