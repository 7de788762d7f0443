/*
 * hlc.h -- hybrid logical clock: 48 bits of unix milliseconds, 16 bits of
 * logical counter.  Every operation gets a timestamp strictly greater than
 * the previous one, even when the wall clock steps backwards; the last value
 * is persisted (store meta and every WAL record) so monotonicity survives a
 * restart.  Conflict resolution (later) is last-writer-wins on
 * (hlc, node_id).
 *
 * Not thread-safe by itself: the node's writer thread owns its clock.
 */
#ifndef SA_HLC_H
#define SA_HLC_H

#include <stdint.h>

typedef struct sa_hlc {
  uint64_t last; /* last timestamp issued or observed */
} sa_hlc;

#define SA_HLC_LOGICAL_BITS 16

/* Next timestamp for a local event at wall time now_ms: max(physical, last+1). */
uint64_t sa_hlc_next(sa_hlc *h, uint64_t now_ms);

/* Folds in a timestamp seen elsewhere (a WAL record at recovery, a peer). */
void sa_hlc_observe(sa_hlc *h, uint64_t ts);

/* The wall-clock milliseconds part of a timestamp. */
static inline uint64_t sa_hlc_ms(uint64_t ts) {
  return ts >> SA_HLC_LOGICAL_BITS;
}

#endif
