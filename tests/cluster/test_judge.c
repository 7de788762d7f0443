/*
 * test_judge.c -- unit test of the cluster check's judging half
 * (cl_judge, cl_pair_cmp in cluster.c) on hand-made states and writes, so
 * that the check is known to catch what it must (an older pair winning, a
 * lost put, a resurrected delete, nodes that differ, a re-stamped origin)
 * and to let pass what is right, before any node syncs.
 *
 * What it is not: a test of the nodes; no process is started.
 */
#define _GNU_SOURCE
#include "cluster.h"

#include <check.h>
#include <stdio.h>
#include <string.h>

enum { NK = 3 };

static const char *ids[2] = {"n0", "n1"};

static cl_state live(uint64_t hlc, const char *origin, const char *value) {
  cl_state s = {.status = 200};
  s.pair.hlc = hlc;
  snprintf(s.pair.origin, sizeof s.pair.origin, "%s", origin);
  snprintf(s.value, sizeof s.value, "%s", value);
  return s;
}

static cl_state gone(void) {
  return (cl_state){.status = 404};
}

static cl_write wr(int node, int key, bool del, bool acked, uint64_t hlc, const char *value) {
  cl_write w = {.node = node, .key = key, .del = del, .acked = acked, .status = acked ? 200 : 0};
  w.pair.hlc = hlc;
  snprintf(w.pair.origin, sizeof w.pair.origin, "%s", ids[node]);
  if (value) snprintf(w.value, sizeof w.value, "%s", value);
  return w;
}

/* Both nodes hold the same three keys: k00 live (12, n1), k01 deleted,
 * k02 live (30, n0). */
static void same_states(cl_state st[2 * NK]) {
  for (int i = 0; i < 2; i++) {
    st[i * NK + 0] = live(12, "n1", "n1.0.2");
    st[i * NK + 1] = gone();
    st[i * NK + 2] = live(30, "n0", "n0.1.7");
  }
}

static size_t judge(cl_state *st, const cl_write *w, size_t n, const cl_pair *tomb, const bool *has,
                    cl_check_result *r) {
  return cl_judge(st, 2, ids, tomb, has, w, n, ids, NK, "k", "test", r);
}

START_TEST(test_pair_order) {
  cl_pair a = {10, "n1"}, b = {10, "n10"}, c = {11, "a"}, d = {10, "n1"}, e = {10, "n2"};
  ck_assert_int_lt(cl_pair_cmp(&a, &b), 0); /* shorter first on a common prefix */
  ck_assert_int_gt(cl_pair_cmp(&b, &a), 0);
  ck_assert_int_lt(cl_pair_cmp(&b, &c), 0); /* hlc first */
  ck_assert_int_eq(cl_pair_cmp(&a, &d), 0);
  ck_assert_int_lt(cl_pair_cmp(&b, &e), 0); /* bytewise: "n1" < "n2" */
}
END_TEST

START_TEST(test_right_history_passes) {
  cl_state st[2 * NK];
  same_states(st);
  cl_write w[] = {
      wr(0, 0, false, true, 10, "n0.0.1"), /* overwritten by (12, n1) */
      wr(1, 0, false, true, 12, "n1.0.2"), /* the winner */
      wr(0, 1, false, true, 13, "n0.0.3"), /* deleted by (15, n0) below */
      wr(0, 1, true, true, 15, NULL),
      wr(1, 2, true, true, 29, NULL),      /* rewritten by (30, n0) */
      wr(0, 2, false, true, 30, "n0.1.7"), /* the winner */
      wr(1, 2, false, false, 0, "n1.0.9"), /* not acknowledged: not checked */
  };
  cl_check_result r;
  ck_assert_uint_eq(judge(st, w, sizeof w / sizeof w[0], NULL, NULL, &r), 0);
  ck_assert_uint_eq(r.acked_checked, 6);
  ck_assert_uint_eq(r.unacked, 1);
}
END_TEST

START_TEST(test_older_pair_won) {
  cl_state st[2 * NK];
  same_states(st);
  cl_write w[] = {wr(0, 0, false, true, 14, "n0.0.4")}; /* acked after (12, n1) */
  cl_check_result r;
  ck_assert_uint_eq(judge(st, w, 1, NULL, NULL, &r), 1);
}
END_TEST

START_TEST(test_tie_on_hlc_goes_to_larger_origin) {
  cl_state st[2 * NK];
  same_states(st);
  /* (12, n1) holds k00; a write (12, n0) loses: fine; (12, n2) would win */
  cl_write ok[] = {wr(0, 0, false, true, 12, "n0.0.5")};
  cl_check_result r;
  ck_assert_uint_eq(judge(st, ok, 1, NULL, NULL, &r), 0);
  cl_write bad = wr(1, 0, false, true, 12, "n1.0.6");
  snprintf(bad.pair.origin, sizeof bad.pair.origin, "n2");
  ck_assert_uint_eq(judge(st, &bad, 1, NULL, NULL, &r), 1);
}
END_TEST

START_TEST(test_same_pair_other_value) {
  cl_state st[2 * NK];
  same_states(st);
  cl_write w[] = {wr(1, 0, false, true, 12, "n1.0.99")};
  cl_check_result r;
  ck_assert_uint_eq(judge(st, w, 1, NULL, NULL, &r), 1);
}
END_TEST

START_TEST(test_lost_put_and_its_excuses) {
  cl_state st[2 * NK];
  same_states(st);
  cl_write lost[] = {wr(1, 1, false, true, 16, "n1.0.8")}; /* absent, no later delete */
  cl_check_result r;
  ck_assert_uint_eq(judge(st, lost, 1, NULL, NULL, &r), 1);
  /* an acknowledged delete with a larger pair covers it */
  cl_write covered[] = {wr(1, 1, false, true, 16, "n1.0.8"), wr(0, 1, true, true, 17, NULL)};
  ck_assert_uint_eq(judge(st, covered, 2, NULL, NULL, &r), 0);
  /* an acknowledged delete with a smaller pair does not */
  cl_write older[] = {wr(1, 1, false, true, 16, "n1.0.8"), wr(0, 1, true, true, 15, NULL)};
  ck_assert_uint_eq(judge(st, older, 2, NULL, NULL, &r), 1);
  /* a tombstone of the snapshot with a larger pair covers it */
  cl_pair tomb[NK] = {{0, ""}, {18, "n0"}, {0, ""}};
  bool has[NK] = {false, true, false};
  ck_assert_uint_eq(judge(st, lost, 1, tomb, has, &r), 0);
  ck_assert_uint_eq(r.via_tombstone, 1);
  /* one with a smaller pair does not */
  tomb[1].hlc = 15;
  ck_assert_uint_eq(judge(st, lost, 1, tomb, has, &r), 1);
  /* an unacknowledged delete: not a violation, counted apart */
  cl_write maybe[] = {wr(1, 1, false, true, 16, "n1.0.8"), wr(0, 1, true, false, 0, NULL)};
  ck_assert_uint_eq(judge(st, maybe, 2, NULL, NULL, &r), 0);
  ck_assert_uint_eq(r.via_unacked_delete, 1);
}
END_TEST

START_TEST(test_resurrection) {
  cl_state st[2 * NK];
  same_states(st);
  cl_write w[] = {wr(1, 2, true, true, 31, NULL)}; /* deleted after (30, n0), still live */
  cl_check_result r;
  ck_assert_uint_eq(judge(st, w, 1, NULL, NULL, &r), 1);
  /* a delete with the very pair the live value holds: also wrong */
  cl_write same[] = {wr(0, 2, true, true, 30, NULL)};
  ck_assert_uint_eq(judge(st, same, 1, NULL, NULL, &r), 1);
}
END_TEST

START_TEST(test_nodes_differ) {
  cl_state st[2 * NK];
  same_states(st);
  cl_check_result r;
  st[NK + 0] = live(11, "n0", "n0.0.1"); /* n1 holds an older value of k00 */
  ck_assert_uint_ge(judge(st, NULL, 0, NULL, NULL, &r), 1);
  same_states(st);
  st[NK + 2] = gone(); /* n1 lost k02 */
  ck_assert_uint_ge(judge(st, NULL, 0, NULL, NULL, &r), 1);
  same_states(st);
  st[NK + 1] = (cl_state){.status = 0}; /* n1 did not answer */
  ck_assert_uint_ge(judge(st, NULL, 0, NULL, NULL, &r), 1);
}
END_TEST

START_TEST(test_restamped_origin) {
  cl_state st[2 * NK];
  same_states(st);
  for (int i = 0; i < 2; i++)
    st[i * NK + 2] = live(30, "n1", "n0.1.7"); /* written on n0, says n1 */
  cl_check_result r;
  ck_assert_uint_eq(judge(st, NULL, 0, NULL, NULL, &r), 1);
}
END_TEST

static Suite *judge_suite(void) {
  Suite *s = suite_create("cluster_judge");
  TCase *tc = tcase_create("judge");
  tcase_add_test(tc, test_pair_order);
  tcase_add_test(tc, test_right_history_passes);
  tcase_add_test(tc, test_older_pair_won);
  tcase_add_test(tc, test_tie_on_hlc_goes_to_larger_origin);
  tcase_add_test(tc, test_same_pair_other_value);
  tcase_add_test(tc, test_lost_put_and_its_excuses);
  tcase_add_test(tc, test_resurrection);
  tcase_add_test(tc, test_nodes_differ);
  tcase_add_test(tc, test_restamped_origin);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(judge_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
