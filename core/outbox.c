/*
 * outbox.c -- the sync work state machine; see outbox.h for the diagram and
 * the overflow policy.  Runs inside the node writer's store transactions.
 */
#include "outbox.h"

#include "internal.h"
#include "wal.h"

#include <assert.h>
#include <stdlib.h>

static uint64_t outbox_rand(uint64_t *s) {
  uint64_t x = *s ? *s : 0x9E3779B97F4A7C15ull;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  *s = x;
  return x;
}

uint64_t outbox_backoff_ms(const outbox_cfg *cfg, uint32_t attempts, uint64_t *rng) {
  uint64_t d = cfg->retry_base_ms;
  for (uint32_t i = 1; i < attempts && d < cfg->retry_max_ms; i++)
    d *= 2;
  if (d > cfg->retry_max_ms) d = cfg->retry_max_ms;
  /* jitter in [0.8, 1.2): spreads retries of a burst of failures */
  uint64_t permille = 800 + outbox_rand(rng) % 400;
  return d * permille / 1000;
}

/* The payload of outbox entry e, checked: SA_ECORRUPT when it does not parse
 * (a damaged store file), another error when the store cannot be read. */
static int obx_payload(store_wtxn *t, const store_obx *e, const void **p, uint32_t *len,
                       sa_error *err) {
  int rc = store_wobx_payload(t, e->lsn, p, len, err);
  if (rc == 0 && wal_payload_check(e->type, *p, *len, NULL) != 0)
    rc = sa_fail(err, SA_ECORRUPT, "outbox entry %llu has a malformed payload",
                 (unsigned long long)e->lsn);
  return rc;
}

/* ---- claim ------------------------------------------------------------- */

typedef struct {
  store_wtxn *t;
  const outbox_cfg *cfg;
  uint64_t now;
  bool send;
  uint64_t *rng;
  outbox_delta *d;
  uint64_t picked[1024]; /* LSNs claimed in this walk (cfg->batch <= 1024) */
  size_t npicked;
  size_t bytes; /* their payloads' */
  int rc;       /* a store error that stopped the walk */
  sa_error *err;
} claim_ctx;

static void move(outbox_delta *d, int from, int to) {
  d->by_state[from]--;
  d->by_state[to]++;
}

static int claim_visit(store_obx *e, void *arg) {
  claim_ctx *c = arg;
  const outbox_cfg *cfg = c->cfg;
  switch (e->state) {
  case STORE_OUTBOX_IN_FLIGHT:
    if (e->at_ms > c->now) return STORE_OBX_KEEP;
    /* No answer before the deadline: retry later, or give up. */
    if (e->attempts >= cfg->max_retries) {
      move(c->d, STORE_OUTBOX_IN_FLIGHT, STORE_OUTBOX_FAILED);
      e->state = STORE_OUTBOX_FAILED;
      e->at_ms = c->now;
    } else {
      move(c->d, STORE_OUTBOX_IN_FLIGHT, STORE_OUTBOX_QUEUED);
      e->state = STORE_OUTBOX_QUEUED;
      e->at_ms = c->now + outbox_backoff_ms(cfg, e->attempts, c->rng);
    }
    return STORE_OBX_UPDATE;
  case STORE_OUTBOX_QUEUED: {
    if (!c->send || e->at_ms > c->now || c->npicked >= cfg->batch) return STORE_OBX_KEEP;
    /* A payload that does not parse (a damaged store file) is never handed
     * to the transport: no peer could apply it, and retrying cannot mend
     * it.  The entry fails at once and stays for inspection. */
    const void *p;
    uint32_t len;
    int rc = obx_payload(c->t, e, &p, &len, c->err);
    if (rc == SA_ECORRUPT) {
      move(c->d, STORE_OUTBOX_QUEUED, STORE_OUTBOX_FAILED);
      e->state = STORE_OUTBOX_FAILED;
      e->at_ms = c->now;
      c->d->refused++;
      c->d->refused_lsn = e->lsn;
      return STORE_OBX_UPDATE;
    }
    if ((c->rc = rc) != 0) return STORE_OBX_STOP;
    move(c->d, STORE_OUTBOX_QUEUED, STORE_OUTBOX_IN_FLIGHT);
    e->state = STORE_OUTBOX_IN_FLIGHT;
    if (e->attempts > 0) c->d->retries++;
    e->attempts++;
    e->at_ms = c->now + cfg->ack_timeout_ms;
    c->picked[c->npicked++] = e->lsn;
    c->bytes += len;
    return STORE_OBX_UPDATE;
  }
  case STORE_OUTBOX_ACKED:
    if (c->now >= e->at_ms && c->now - e->at_ms >= cfg->retention_ms) {
      c->d->by_state[STORE_OUTBOX_ACKED]--;
      c->d->pruned++;
      if (e->lsn > c->d->floor) c->d->floor = e->lsn;
      return STORE_OBX_DELETE;
    }
    return STORE_OBX_KEEP;
  default:
    return STORE_OBX_KEEP;
  }
}

typedef struct {
  store_wtxn *t;
  int state;        /* which state this pass prunes */
  uint64_t excess;  /* entries still to remove */
  uint64_t *visits; /* entries visited so far by this prune (all passes) */
  uint64_t budget;  /* ... and the most it may visit */
  uint64_t stop;    /* the walk ends before this LSN (0: at the end) */
  uint64_t next;    /* out: the first entry not visited (0: the walk reached the end) */
  outbox_delta *d;
  int rc;
  sa_error *err;
} prune_ctx;

/* True when every key the queued entry touches was written again later. */
static int superseded(store_wtxn *t, const store_obx *e, bool *yes, sa_error *err) {
  const void *p;
  uint32_t len;
  int rc = obx_payload(t, e, &p, &len, err);
  if (rc) return rc;
  wal_op_iter it;
  wal_op op;
  wal_op_iter_init(&it, e->type, p, len);
  *yes = true;
  while (*yes && wal_op_next(&it, &op)) {
    uint64_t lsn;
    if ((rc = store_wkv_lsn(t, op.key, op.klen, &lsn, err)) != 0) return rc;
    /* later write present; or a put whose key is gone (a later delete) */
    *yes = lsn > e->lsn || (lsn == 0 && op.op == SA_OP_PUT);
  }
  return 0;
}

static int prune_visit(store_obx *e, void *arg) {
  prune_ctx *c = arg;
  if (c->excess == 0 || *c->visits >= c->budget || (c->stop && e->lsn >= c->stop)) {
    c->next = e->lsn;
    return STORE_OBX_STOP;
  }
  ++*c->visits;
  if (e->state != c->state) return STORE_OBX_KEEP;
  if (c->state == STORE_OUTBOX_QUEUED) {
    bool yes = false;
    int rc = superseded(c->t, e, &yes, c->err);
    if (rc == SA_ECORRUPT) { /* unreadable: not ours to drop, nor to stop on */
      c->d->malformed++;
      c->d->malformed_lsn = e->lsn;
      return STORE_OBX_KEEP;
    }
    if ((c->rc = rc) != 0) return STORE_OBX_STOP;
    if (!yes) return STORE_OBX_KEEP;
  }
  c->d->by_state[c->state]--;
  c->d->pruned++;
  c->excess--;
  if (c->state != STORE_OUTBOX_QUEUED && e->lsn > c->d->floor)
    c->d->floor = e->lsn; /* superseded queued work leaves the feed whole */
  return STORE_OBX_DELETE;
}

/* One pass of prune: entries of c->state from LSN from (0: the oldest) up to
 * c->stop.  Returns the first LSN it did not visit, 0 at the end. */
static int prune_pass(prune_ctx *c, uint64_t from, uint64_t *next) {
  c->next = 0;
  int rc = store_wobx_each(c->t, from, prune_visit, c, c->err);
  if (rc == 0) rc = c->rc;
  *next = c->next;
  return rc;
}

int outbox_prune(store_wtxn *t, const outbox_cfg *cfg, uint64_t total, const uint64_t counts[4],
                 uint64_t budget, uint64_t *cursor, outbox_delta *d, sa_error *err) {
  uint64_t after = total > d->pruned ? total - d->pruned : 0, visits = 0, next;
  int rc = 0;
  /* Acknowledged, then failed work: from the oldest, where it collects,
   * with half the budget at most, so that a few such entries far from the
   * oldest cannot keep the superseded pass from ever running. */
  prune_ctx p = {.t = t, .visits = &visits, .budget = budget / 2, .d = d, .err = err};
  static const int order[] = {STORE_OUTBOX_ACKED, STORE_OUTBOX_FAILED};
  for (size_t i = 0; i < 2 && after > cfg->max_entries && visits < p.budget; i++) {
    if ((int64_t)counts[order[i]] + d->by_state[order[i]] <= 0) continue; /* none: no walk */
    uint64_t before = d->pruned;
    p.state = order[i];
    p.excess = after - cfg->max_entries;
    p.stop = 0;
    if ((rc = prune_pass(&p, 0, &next)) != 0) return rc;
    after -= d->pruned - before;
  }
  /* Superseded queued work: from where the last prune stopped, once
   * around.  A walk from the oldest each time would revisit the work
   * that is still the latest of its key, again and again. */
  uint64_t start = *cursor;
  p.state = STORE_OUTBOX_QUEUED;
  p.budget = budget;
  for (int lap = 0; lap < 2 && after > cfg->max_entries && visits < budget; lap++) {
    uint64_t before = d->pruned;
    p.excess = after - cfg->max_entries;
    p.stop = lap ? start : 0;
    if ((rc = prune_pass(&p, lap ? 0 : start, &next)) != 0) return rc;
    after -= d->pruned - before;
    *cursor = next;
    if (next || !start) break; /* stopped inside the lap, or it began at the oldest */
  }
  if (d->floor) store_wraise_floor(t, d->floor);
  return 0;
}

int outbox_claim(store_wtxn *t, const outbox_cfg *cfg, const char *node_id, uint64_t now, bool send,
                 uint64_t total, const uint64_t counts[4], uint64_t *cursor, uint64_t *rng,
                 outbox_batch *out, outbox_delta *d, sa_error *err) {
  assert(cfg->batch >= 1 && cfg->batch <= 1024);
  out->ops = NULL;
  out->n = 0;
  claim_ctx c = {.t = t, .cfg = cfg, .now = now, .send = send, .rng = rng, .d = d, .err = err};
  /* Nothing to claim, expire or retire: no walk (it would visit every
   * entry to change none). */
  int rc = 0;
  if (send || counts[STORE_OUTBOX_IN_FLIGHT] || counts[STORE_OUTBOX_ACKED])
    rc = store_wobx_each(t, 0, claim_visit, &c, err);
  if (rc == 0) rc = c.rc;
  if (rc) return rc;

  if ((rc = outbox_prune(t, cfg, total, counts, OUTBOX_TICK_PRUNE_VISITS, cursor, d, err)) != 0)
    return rc;
  if (c.npicked == 0) return 0;
  /* Copy the claimed operations out: one block for array, id and payloads. */
  size_t idlen = strlen(node_id) + 1, bytes = c.npicked * sizeof(sa_sync_op) + idlen + c.bytes;
  unsigned char *block = malloc(bytes);
  if (!block)
    return sa_fail(err, SA_ENOMEM, "out of memory claiming %zu outbox entries", c.npicked);
  sa_sync_op *ops = (sa_sync_op *)block;
  char *id = (char *)(block + c.npicked * sizeof(sa_sync_op));
  memcpy(id, node_id, idlen);
  unsigned char *pay = (unsigned char *)id + idlen;
  for (size_t i = 0; i < c.npicked; i++) {
    const void *p;
    uint32_t len;
    store_obx e;
    bool found;
    if ((rc = store_wobx_payload(t, c.picked[i], &p, &len, err)) != 0 ||
        (rc = store_wobx_get(t, c.picked[i], &e, &found, err)) != 0) {
      free(block);
      return rc;
    }
    assert(found);
    assert((size_t)(pay - (unsigned char *)id) + len <= idlen + c.bytes); /* same txn as the walk */
    memcpy(pay, p, len);
    ops[i] = (sa_sync_op){.node_id = id,
                          .lsn = e.lsn,
                          .hlc = e.hlc,
                          .type = e.type,
                          .attempt = e.attempts,
                          .payload = pay,
                          .len = len};
    pay += len;
  }
  out->ops = ops;
  out->n = c.npicked;
  return 0;
}

int outbox_settle(store_wtxn *t, const outbox_cfg *cfg, uint64_t now, const uint64_t *lsns,
                  const bool *acked, size_t n, uint64_t *rng, outbox_delta *d, sa_error *err) {
  for (size_t i = 0; i < n; i++) {
    store_obx e;
    bool found;
    int rc = store_wobx_get(t, lsns[i], &e, &found, err);
    if (rc) return rc;
    if (!found || e.state != STORE_OUTBOX_IN_FLIGHT)
      continue; /* pruned, expired and re-queued meanwhile, ... */
    if (acked[i]) {
      move(d, STORE_OUTBOX_IN_FLIGHT, STORE_OUTBOX_ACKED);
      e.state = STORE_OUTBOX_ACKED;
      e.at_ms = now;
    } else if (e.attempts >= cfg->max_retries) {
      move(d, STORE_OUTBOX_IN_FLIGHT, STORE_OUTBOX_FAILED);
      e.state = STORE_OUTBOX_FAILED;
      e.at_ms = now;
    } else {
      move(d, STORE_OUTBOX_IN_FLIGHT, STORE_OUTBOX_QUEUED);
      e.state = STORE_OUTBOX_QUEUED;
      e.at_ms = now + outbox_backoff_ms(cfg, e.attempts, rng);
    }
    if ((rc = store_wobx_put(t, &e, err)) != 0) return rc;
  }
  return 0;
}

typedef struct {
  uint64_t now;
  uint64_t upto;
  uint64_t *counts;
} recover_ctx;

static int recover_visit(store_obx *e, void *arg) {
  recover_ctx *c = arg;
  if (e->lsn > c->upto) return STORE_OBX_STOP;
  if (e->state > STORE_OUTBOX_FAILED) return STORE_OBX_KEEP;
  if (e->state == STORE_OUTBOX_IN_FLIGHT) {
    e->state = STORE_OUTBOX_QUEUED;
    e->at_ms = c->now;
    c->counts[STORE_OUTBOX_QUEUED]++;
    return STORE_OBX_UPDATE;
  }
  c->counts[e->state]++;
  return STORE_OBX_KEEP;
}

int outbox_recover(store_wtxn *t, uint64_t now, uint64_t upto, uint64_t fresh, uint64_t counts[4],
                   sa_error *err) {
  memset(counts, 0, 4 * sizeof counts[0]);
  recover_ctx c = {now, upto, counts};
  int rc = store_wobx_each(t, 0, recover_visit, &c, err);
  counts[STORE_OUTBOX_QUEUED] += fresh;
  return rc;
}
