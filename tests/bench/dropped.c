/*
 * dropped.c -- the cost of the dropped-tombstone records (the deleted-writes
 * rule of issue 22; core/store_sync.c): how much room N records take, and
 * what deciding a peer's old writes against them costs.
 *
 *   dropped DIR [N] [KEY_BYTES]
 *
 * A persistent node in DIR (auto_flush on, a logical clock, tombstone_ttl_s
 * 10) applies N deletes of keys of KEY_BYTES bytes (100,000 and 16) from a
 * peer "node-a" (sa_client_sync_apply, batches of 10,000), then the clock
 * moves past the TTL and one GC pass drops every tombstone by age, leaving
 * one record per key.  Then three batches of N old puts from "node-c" (their
 * pair below the deletes'): of N keys never deleted (all applied: no
 * node-wide horizon refuses them), of the N deleted keys (all stale), and
 * the same deleted keys on a second node that never held the records (all
 * applied: the lookups' cost against none).
 *
 * Prints (one run; the figures of README's Sync section come from it):
 *   DROPPED records=N key_bytes=K tombs_bytes=T dropped_bytes=D per_record=B
 *   DECIDE  batch=unrelated items=N applied=A stale=S seconds=X rate=R
 *   ...
 * Asserts only that the outcome is the rule's (exit 1 otherwise), never a
 * time.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "softadastra.h"

#define DR_BATCH 10000

static uint64_t clock_ms = 1700000000000ull;
static uint64_t fake_clock(void *ctx) {
  (void)ctx;
  return clock_ms;
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static sa_client *open_node(const char *dir, const char *id) {
  char wal[1024];
  snprintf(wal, sizeof wal, "%s/%s.wal", dir, id);
  sa_options o = sa_options_persistent(id, wal);
  o.tick_manual = true;
  o.clock = fake_clock;
  o.tombstone_ttl_s = 10;
  sa_client *c = NULL;
  sa_error e = {0};
  if (sa_client_open(&c, &o, &e) != 0) {
    fprintf(stderr, "dropped: cannot open %s: %s\n", wal, e.message);
    exit(1);
  }
  return c;
}

/* Applies n items (keys prefix + index, width klen) from peer in batches:
 * deletes or puts with the pair (hlc, origin).  Adds up the results. */
static void apply_all(sa_client *c, const char *peer, int op, size_t n, size_t klen,
                      const char *prefix, uint64_t hlc, sa_sync_apply_result *sum) {
  static sa_sync_item items[DR_BATCH];
  static char keys[DR_BATCH][64];
  memset(sum, 0, sizeof *sum);
  for (size_t at = 0; at < n; at += DR_BATCH) {
    size_t m = n - at < DR_BATCH ? n - at : DR_BATCH;
    for (size_t i = 0; i < m; i++) {
      snprintf(keys[i], sizeof keys[i], "%s%0*zu", prefix, (int)(klen - strlen(prefix)), at + i);
      sa_sync_item *it = &items[i];
      memset(it, 0, sizeof *it);
      it->op = op;
      it->key = keys[i];
      it->data = op == SA_OP_PUT ? "v" : NULL;
      it->len = op == SA_OP_PUT ? 1 : 0;
      it->hlc = hlc;
      snprintf(it->origin, sizeof it->origin, "%s", peer);
      it->origin_lsn = at + i + 1;
      it->seq = at + i + 1;
    }
    sa_sync_apply_result r;
    sa_error e = {0};
    if (sa_client_sync_apply(c, peer, items, m, at + m, &r, &e) != 0) {
      fprintf(stderr, "dropped: apply: %s\n", e.message);
      exit(1);
    }
    sum->applied += r.applied;
    sum->stale += r.stale;
    sum->skipped += r.skipped;
  }
}

static sa_sync_counters counters(sa_client *c) {
  sa_sync_counters sc;
  sa_error e = {0};
  if (sa_client_sync_counters(c, &sc, &e) != 0) {
    fprintf(stderr, "dropped: counters: %s\n", e.message);
    exit(1);
  }
  return sc;
}

static void decide(sa_client *c, const char *what, const char *prefix, size_t n, size_t klen,
                   uint64_t hlc, uint64_t want_applied) {
  sa_sync_apply_result r;
  double t0 = now_s();
  apply_all(c, "node-c", SA_OP_PUT, n, klen, prefix, hlc, &r);
  double dt = now_s() - t0;
  printf("DECIDE batch=%s items=%zu applied=%llu stale=%llu seconds=%.3f rate=%.0f\n", what, n,
         (unsigned long long)r.applied, (unsigned long long)r.stale, dt, (double)n / dt);
  if (r.applied != want_applied || r.applied + r.stale != n) {
    fprintf(stderr, "dropped: %s: %llu applied, %llu stale of %zu (want %llu applied)\n", what,
            (unsigned long long)r.applied, (unsigned long long)r.stale, n,
            (unsigned long long)want_applied);
    exit(1);
  }
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: dropped DIR [N] [KEY_BYTES]\n");
    return 2;
  }
  size_t n = argc > 2 ? strtoull(argv[2], NULL, 10) : 100000;
  size_t klen = argc > 3 ? strtoull(argv[3], NULL, 10) : 16;
  if (n == 0 || klen < 8 || klen > 60) {
    fprintf(stderr, "dropped: N > 0 and 8 <= KEY_BYTES <= 60\n");
    return 2;
  }
  sa_client *c = open_node(argv[1], "node-b");
  uint64_t t = clock_ms;
  uint64_t del_hlc = (t - 5000) << 16, old_hlc = (t - 6000) << 16;
  sa_sync_apply_result r;
  apply_all(c, "node-a", SA_OP_DELETE, n, klen, "del/", del_hlc, &r);
  sa_error e = {0};
  if (sa_client_sync_tick(c, &e) != 0) {
    fprintf(stderr, "dropped: tick: %s\n", e.message);
    return 1;
  }
  sa_sync_counters before = counters(c);
  clock_ms += 11000; /* past the TTL: one GC pass drops every tombstone by age */
  if (sa_client_sync_tick(c, &e) != 0) {
    fprintf(stderr, "dropped: tick: %s\n", e.message);
    return 1;
  }
  sa_sync_counters after = counters(c);
  if (before.tombs != n || after.tombs != 0 || after.dropped_records != n) {
    fprintf(stderr, "dropped: %llu tombstones, then %llu and %llu records (want %zu, 0, %zu)\n",
            (unsigned long long)before.tombs, (unsigned long long)after.tombs,
            (unsigned long long)after.dropped_records, n, n);
    return 1;
  }
  printf("DROPPED records=%zu key_bytes=%zu origin=node-a tombs_bytes=%llu dropped_bytes=%llu "
         "per_record=%.1f per_tombstone=%.1f\n",
         n, klen, (unsigned long long)before.tombs_bytes, (unsigned long long)after.dropped_bytes,
         (double)after.dropped_bytes / (double)n, (double)before.tombs_bytes / (double)n);
  decide(c, "unrelated", "new/", n, klen, old_hlc, n);
  decide(c, "deleted", "del/", n, klen, old_hlc, 0);
  sa_client_close(c);
  sa_client *fresh = open_node(argv[1], "node-f"); /* no records at all */
  decide(fresh, "deleted_no_records", "del/", n, klen, old_hlc, n);
  sa_client_close(fresh);
  return 0;
}
