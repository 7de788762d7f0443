/*
 * test_sync_rule.c -- the conflict rule of sync between nodes
 * (core/sync_rule.c): the pair order (hlc, then origin bytewise with the
 * shorter first on a common prefix), equal pairs, delete against put,
 * unknown keys and the per-key dropped-tombstone records (the deleted-
 * writes rule) and their aging; and, exhaustively over a small
 * universe of pairs, that the order is total and antisymmetric and that
 * applying the same items in every order leaves the same winner.
 */
#include "softadastra.h"
#include "sync_rule.h"
#include "test_util.h"

#include <check.h>
#include <string.h>

static int cmp(uint64_t ha, const char *oa, uint64_t hb, const char *ob) {
  return sync_pair_cmp(ha, oa, strlen(oa), hb, ob, strlen(ob));
}

START_TEST(pair_order) {
  ck_assert_int_lt(cmp(1, "z", 2, "a"), 0); /* hlc first */
  ck_assert_int_gt(cmp(3, "a", 2, "z"), 0);
  ck_assert_int_eq(cmp(5, "node-a", 5, "node-a"), 0); /* equal pairs */
  ck_assert_int_lt(cmp(5, "node-a", 5, "node-b"), 0); /* tie: origin bytewise */
  ck_assert_int_gt(cmp(5, "node-b", 5, "node-a"), 0);
  ck_assert_int_lt(cmp(5, "node", 5, "node-a"), 0); /* a prefix sorts first */
  ck_assert_int_gt(cmp(5, "node-a", 5, "node"), 0);
  ck_assert_int_lt(cmp(5, "B", 5, "a"), 0);   /* bytes, not case-folded */
  ck_assert_int_lt(cmp(5, "a-", 5, "a."), 0); /* '-' 0x2d < '.' 0x2e */
  ck_assert_int_lt(cmp(5, "a9", 5, "aA"), 0);
  ck_assert_int_gt(cmp(UINT64_MAX, "a", UINT64_MAX - 1, "z"), 0);
}
END_TEST

static sync_pair pr(uint64_t h, const char *o) {
  return (sync_pair){h, o, strlen(o)};
}

/* held NONE with no dropped-tombstone record when dh is 0 */
static int decide(uint64_t h, const char *o, int held, uint64_t hh, const char *ho) {
  return sync_decide(pr(h, o), held, pr(hh, ho), NULL);
}

static int decide_dropped(uint64_t h, const char *o, uint64_t dh, const char *dor) {
  sync_pair d = pr(dh, dor);
  return sync_decide(pr(h, o), SYNC_HELD_NONE, pr(0, ""), &d);
}

START_TEST(decisions) {
  /* unknown key, no record: applied (a delete leaves a tombstone) */
  ck_assert_int_eq(decide(10, "a", SYNC_HELD_NONE, 0, ""), SYNC_APPLY);
  ck_assert_int_eq(decide(1, "a", SYNC_HELD_NONE, 0, ""), SYNC_APPLY);
  for (int held = SYNC_HELD_LIVE; held <= SYNC_HELD_TOMB; held++) {
    /* greater pair: applied; equal: skipped (same change); smaller: lost */
    ck_assert_int_eq(decide(6, "a", held, 5, "z"), SYNC_APPLY);
    ck_assert_int_eq(decide(5, "z", held, 5, "z"), SYNC_SKIP);
    ck_assert_int_eq(decide(5, "y", held, 5, "z"), SYNC_SKIP);
    ck_assert_int_eq(decide(4, "zz", held, 5, "a"), SYNC_SKIP);
    ck_assert_int_eq(decide(5, "z-", held, 5, "z"), SYNC_APPLY); /* longer wins */
  }
}
END_TEST

/* The deleted-writes rule: for a key not held, the key's own record of a
 * tombstone dropped by age refuses what is at or below it -- puts and
 * deletes alike, the equal pair too (the delete itself again) -- and
 * nothing above it; with no record, an old op is applied whatever other
 * keys' records say (the rule has no node-wide horizon). */
START_TEST(dropped_record_per_key) {
  ck_assert_int_eq(decide_dropped(9, "a", 10, "b"), SYNC_STALE);   /* older hlc */
  ck_assert_int_eq(decide_dropped(10, "a", 10, "b"), SYNC_STALE);  /* same hlc, smaller origin */
  ck_assert_int_eq(decide_dropped(10, "b", 10, "b"), SYNC_STALE);  /* the delete itself */
  ck_assert_int_eq(decide_dropped(10, "b-", 10, "b"), SYNC_APPLY); /* just above */
  ck_assert_int_eq(decide_dropped(10, "c", 10, "b"), SYNC_APPLY);
  ck_assert_int_eq(decide_dropped(11, "a", 10, "b"), SYNC_APPLY); /* a later write */
  /* held keys: the record is not consulted (their held pair is above it) */
  sync_pair d = pr(100, "z");
  ck_assert_int_eq(sync_decide(pr(9, "b"), SYNC_HELD_LIVE, pr(8, "a"), &d), SYNC_APPLY);
  ck_assert_int_eq(sync_decide(pr(9, "b"), SYNC_HELD_TOMB, pr(8, "a"), &d), SYNC_APPLY);
  ck_assert_int_eq(sync_decide(pr(7, "b"), SYNC_HELD_TOMB, pr(8, "a"), &d), SYNC_SKIP);
  /* another key's record means nothing here: an old write of a key with
   * no record is applied (cluster.ttl_unrelated's write) */
  ck_assert_int_eq(decide(1, "a", SYNC_HELD_NONE, 0, ""), SYNC_APPLY);
}
END_TEST

/* A record lives one TTL past its tombstone's: it may go once the delete
 * is 2 x TTL old by its own hlc, not before. */
START_TEST(dropped_record_aging) {
  uint64_t ttl = 10000, t = 1700000000000ull, h = t << 16 | 5;
  ck_assert(!sync_dropped_expired(h, t, ttl));
  ck_assert(!sync_dropped_expired(h, t + ttl, ttl));         /* the tombstone's age */
  ck_assert(!sync_dropped_expired(h, t + 2 * ttl - 1, ttl)); /* a further TTL, less 1 ms */
  ck_assert(sync_dropped_expired(h, t + 2 * ttl, ttl));
  ck_assert(sync_dropped_expired(h, t + 3 * ttl, ttl));
  ck_assert(!sync_dropped_expired(h, t - 1000, ttl)); /* a clock behind: kept */
  /* the logical part does not count: same ms, any counter */
  ck_assert(sync_dropped_expired((t << 16) | 0xffff, t + 2 * ttl, ttl));
}
END_TEST

/* Every pair of a small universe (hlc 1..3, five origins with prefixes):
 * the order is total and antisymmetric, and the winner of a set of items
 * is the same whatever order they arrive in (all 120 orders of five). */
static const char *origins[] = {"a", "a-", "ab", "b", "B"};

START_TEST(exhaustive_order_and_convergence) {
  for (uint64_t h1 = 1; h1 <= 3; h1++)
    for (int i = 0; i < 5; i++)
      for (uint64_t h2 = 1; h2 <= 3; h2++)
        for (int j = 0; j < 5; j++) {
          int c1 = cmp(h1, origins[i], h2, origins[j]), c2 = cmp(h2, origins[j], h1, origins[i]);
          ck_assert_int_eq(c1, -c2);
          ck_assert_int_eq(c1 == 0, h1 == h2 && i == j);
          for (uint64_t h3 = 1; h3 <= 3; h3++) /* transitive over a third */
            for (int k = 0; k < 5; k++)
              if (c1 < 0 && cmp(h2, origins[j], h3, origins[k]) < 0)
                ck_assert_int_lt(cmp(h1, origins[i], h3, origins[k]), 0);
        }
  /* Five items (puts and deletes, one per origin, hlc 1 or 2) applied in
   * every order to an unknown key: one winner. */
  struct item {
    int op;
    uint64_t h;
    const char *o;
  } items[5] = {{SA_OP_PUT, 2, "a"},
                {SA_OP_DELETE, 2, "a-"},
                {SA_OP_PUT, 1, "b"},
                {SA_OP_DELETE, 2, "B"},
                {SA_OP_PUT, 2, "ab"}};
  int perm[5] = {0, 1, 2, 3, 4}, winner = -1, orders = 0;
  for (;;) {
    int held = SYNC_HELD_NONE, w = -1;
    for (int n = 0; n < 5; n++) {
      const struct item *it = &items[perm[n]];
      const char *ho = w >= 0 ? items[w].o : "";
      uint64_t hh = w >= 0 ? items[w].h : 0;
      int d = decide(it->h, it->o, held, hh, ho);
      if (d == SYNC_APPLY) {
        w = perm[n];
        held = it->op == SA_OP_PUT ? SYNC_HELD_LIVE : SYNC_HELD_TOMB;
      }
      /* applying the held item again is a skip: no echo */
      ck_assert_int_eq(decide(items[w].h, items[w].o, held, items[w].h, items[w].o), SYNC_SKIP);
    }
    if (winner < 0) winner = w;
    ck_assert_int_eq(w, winner);
    orders++;
    /* next permutation */
    int i = 3;
    while (i >= 0 && perm[i] > perm[i + 1])
      i--;
    if (i < 0) break;
    int j = 4;
    while (perm[j] < perm[i])
      j--;
    int tmp = perm[i];
    perm[i] = perm[j];
    perm[j] = tmp;
    for (int a = i + 1, b = 4; a < b; a++, b--) {
      tmp = perm[a];
      perm[a] = perm[b];
      perm[b] = tmp;
    }
  }
  ck_assert_int_eq(orders, 120);
  ck_assert_str_eq(items[winner].o, "ab"); /* hlc 2: "B" < "a" < "a-" < "ab" */
}
END_TEST

int main(void) {
  Suite *s = suite_create("sync_rule");
  TCase *t = tcase_create("rule");
  tcase_add_test(t, pair_order);
  tcase_add_test(t, decisions);
  tcase_add_test(t, dropped_record_per_key);
  tcase_add_test(t, dropped_record_aging);
  tcase_add_test(t, exhaustive_order_and_convergence);
  suite_add_tcase(s, t);
  return tu_main(s);
}
