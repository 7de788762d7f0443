/*
 * outbox.h -- the sync work state machine.
 *
 * Every operation the node logs gets an outbox entry in the same store
 * transaction that applies it (node.c).  This module moves entries between
 * states inside a store write transaction; it does no I/O of its own and
 * keeps no state (the prune cursor is the caller's), and runs only inside
 * store write transactions, which LMDB serializes.
 *
 *            claim (transport running, due)          settle: acked
 *   QUEUED ---------------------------------> IN_FLIGHT ------------> ACKNOWLEDGED
 *     ^  ^                                       |   |                    |
 *     |  +---- settle: not acked (backoff) ------+   |                    | retention
 *     +------- claim: deadline passed (backoff) -----+                    v
 *                 ... attempts >= max_retries -> FAILED              (pruned)
 *
 * Backoff after attempt n: retry_base_ms * 2^(n-1), capped at retry_max_ms,
 * times a jitter factor uniform in [0.8, 1.2).  Time is whatever clock the
 * node passes in (tests pass a logical one).
 *
 * Overflow policy (entries > outbox_max): the node keeps accepting writes --
 * local writes never wait on the network -- and every store commit (and
 * the claim step) prunes, in this order, the oldest acknowledged entries,
 * then the oldest failed ones, then queued entries superseded by a later
 * write of every key they touch
 * (under last-writer-wins the later entry carries the state).  Queued work
 * that is still the latest for some key is never dropped; while it keeps
 * the outbox above the bound the sync state reports overflow.
 *
 * The outbox's operations are also the change feed.  Pruning an entry that
 * no later write supersedes (acknowledged or failed work) raises the feed
 * floor to its LSN: readers from below the floor must reload.  Superseded
 * entries go without raising it: the feed keeps the latest change of a key.
 */
#ifndef SA_OUTBOX_H
#define SA_OUTBOX_H

#include "store.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct outbox_cfg {
  uint32_t batch; /* most ops handed over per tick */
  uint32_t max_retries;
  uint32_t retry_base_ms;
  uint32_t retry_max_ms;
  uint32_t ack_timeout_ms;
  uint64_t max_entries;  /* overflow bound */
  uint64_t retention_ms; /* acknowledged entries older than this go */
} outbox_cfg;

/* Changes made by one step, applied to the node's counters after commit. */
typedef struct outbox_delta {
  int64_t by_state[4]; /* per STORE_OUTBOX_* */
  uint64_t pruned;
  uint64_t retries;
  uint64_t floor;         /* highest LSN pruned while still the latest of a key */
  uint64_t malformed;     /* queued entries the prune could not read: kept */
  uint64_t malformed_lsn; /* ... the last of them */
  uint64_t refused;       /* due entries the claim could not read: FAILED, not sent */
  uint64_t refused_lsn;   /* ... the last of them */
} outbox_delta;

/* Operations claimed for the transport: one allocation holding the array,
 * the payload copies and the node id (free with free()). */
typedef struct outbox_batch {
  sa_sync_op *ops;
  size_t n;
} outbox_batch;

/* Delay before the next attempt after `attempts` attempts.  rng is an
 * xorshift64 state (non-zero); it advances. */
uint64_t outbox_backoff_ms(const outbox_cfg *cfg, uint32_t attempts, uint64_t *rng);

/* One tick's bookkeeping at time now: expires in-flight entries past their
 * deadline, claims up to cfg->batch due queued entries when send is true
 * (they become IN_FLIGHT with a deadline; copies go into *out, which the
 * caller frees; a due entry whose payload does not parse becomes FAILED
 * instead, counted in d->refused), prunes acknowledged entries past
 * retention, and applies the overflow policy (outbox_prune, at most
 * OUTBOX_TICK_PRUNE_VISITS visits) given the current total and counts per
 * state.  The walk that claims and expires is skipped when nothing can
 * move: !send and no entry in flight or acknowledged. */
int outbox_claim(store_wtxn *t, const outbox_cfg *cfg, const char *node_id, uint64_t now, bool send,
                 uint64_t total, const uint64_t counts[4], uint64_t *cursor, uint64_t *rng,
                 outbox_batch *out, outbox_delta *d, sa_error *err);

/* The overflow policy, bounded: while total (less what d already pruned) is
 * above cfg->max_entries, prunes the oldest acknowledged entries, then the
 * oldest failed ones (these two from the oldest, with half the budget at
 * most), then superseded queued entries, visiting at most budget entries
 * in all.  Passes for a state that counts (plus d) says is
 * empty are skipped.  The superseded pass resumes at *cursor (an LSN, 0 =
 * the oldest; the caller keeps it between calls) and goes once around, so
 * successive calls cover the whole outbox without revisiting, from the
 * oldest, the work that is still the latest of its key.  Raises the feed
 * floor as outbox.h's header says.  Each call costs O(budget), whatever the
 * outbox's size: the node prunes a little at every store commit (budget in
 * proportion to the records it adds) rather than walking the whole outbox
 * once a tick, which stalled the writer ~35 ms a second at 100,000 entries.
 * A queued entry whose payload does not parse (a damaged store) is kept and
 * counted in d->malformed: the prune goes on, and so does the transaction
 * it runs in (a store commit of writes already acknowledged). */
#define OUTBOX_TICK_PRUNE_VISITS 4096u
int outbox_prune(store_wtxn *t, const outbox_cfg *cfg, uint64_t total, const uint64_t counts[4],
                 uint64_t budget, uint64_t *cursor, outbox_delta *d, sa_error *err);

/* Records the transport's answer for claimed entries: acked ones become
 * ACKNOWLEDGED, the others QUEUED with backoff (or FAILED at max_retries).
 * Entries no longer IN_FLIGHT are left alone. */
int outbox_settle(store_wtxn *t, const outbox_cfg *cfg, uint64_t now, const uint64_t *lsns,
                  const bool *acked, size_t n, uint64_t *rng, outbox_delta *d, sa_error *err);

/* At open: counts entries per state and turns IN_FLIGHT ones back to QUEUED
 * (work handed over before a restart has no answer any more).  Only the
 * entries through LSN upto are read: the ones above it are the `fresh`
 * entries the WAL replay just wrote, all QUEUED (one per record; the store
 * holds none above its applied LSN before a replay), counted without a
 * walk -- after a replay of 1M records that walk took 15% of the open. */
int outbox_recover(store_wtxn *t, uint64_t now, uint64_t upto, uint64_t fresh, uint64_t counts[4],
                   sa_error *err);

#endif
