/*
 * test_hlc.c -- the hybrid logical clock (core/hlc.c): 48 bits of unix
 * milliseconds and 16 bits of logical counter; strictly increasing under a
 * wall clock that steps back; an observed future timestamp moves it; the
 * counter carries into the milliseconds; and the value a node persists
 * keeps it monotonic across a restart.
 *
 * What it is not: a test of conflict resolution (there is none yet).
 *
 * Threads: the test's own (the clock is not thread-safe by contract).
 */
#define _GNU_SOURCE
#include "hlc.h"
#include "test_util.h"

#define HLC_T0 1700000000000ull /* a unix time in ms */

static uint64_t hlc_ts(uint64_t ms, uint64_t logical) {
  return ms << SA_HLC_LOGICAL_BITS | logical;
}

START_TEST(next_takes_the_wall_clock_when_it_is_ahead) {
  sa_hlc h = {0};
  ck_assert_uint_eq(sa_hlc_next(&h, HLC_T0), hlc_ts(HLC_T0, 0));
  ck_assert_uint_eq(sa_hlc_next(&h, HLC_T0 + 5), hlc_ts(HLC_T0 + 5, 0));
  ck_assert_uint_eq(sa_hlc_ms(h.last), HLC_T0 + 5);
  /* The same millisecond again: the logical counter moves. */
  ck_assert_uint_eq(sa_hlc_next(&h, HLC_T0 + 5), hlc_ts(HLC_T0 + 5, 1));
  ck_assert_uint_eq(sa_hlc_next(&h, HLC_T0 + 5), hlc_ts(HLC_T0 + 5, 2));
}
END_TEST

START_TEST(monotonic_when_the_clock_goes_back) {
  sa_hlc h = {0};
  uint64_t prev = sa_hlc_next(&h, HLC_T0 + 1000);
  /* The wall clock steps back a second and crawls forward: every value is
   * still strictly greater, in the milliseconds of the highest time seen. */
  for (uint64_t ms = HLC_T0; ms < HLC_T0 + 1000; ms += 7) {
    uint64_t ts = sa_hlc_next(&h, ms);
    ck_assert_uint_gt(ts, prev);
    ck_assert_uint_eq(sa_hlc_ms(ts), HLC_T0 + 1000);
    prev = ts;
  }
  /* Once the wall clock passes it again, it takes over (counter 0). */
  uint64_t ts = sa_hlc_next(&h, HLC_T0 + 1001);
  ck_assert_uint_gt(ts, prev);
  ck_assert_uint_eq(ts, hlc_ts(HLC_T0 + 1001, 0));
  /* A clock at 0 (broken) still gives increasing values. */
  ck_assert_uint_gt(sa_hlc_next(&h, 0), ts);
}
END_TEST

START_TEST(observe_of_a_future_timestamp_moves_the_clock) {
  sa_hlc h = {0};
  sa_hlc_next(&h, HLC_T0);
  uint64_t future = hlc_ts(HLC_T0 + 60000, 42); /* a peer a minute ahead */
  sa_hlc_observe(&h, future);
  ck_assert_uint_eq(h.last, future);
  uint64_t ts = sa_hlc_next(&h, HLC_T0 + 1);
  ck_assert_uint_eq(ts, future + 1);
  /* Observing the past changes nothing. */
  sa_hlc_observe(&h, hlc_ts(HLC_T0, 0));
  ck_assert_uint_eq(h.last, ts);
  ck_assert_uint_eq(sa_hlc_next(&h, HLC_T0 + 2), ts + 1);
}
END_TEST

START_TEST(logical_counter_overflow_carries_into_the_milliseconds) {
  sa_hlc h = {.last = hlc_ts(HLC_T0, 0xFFFE)};
  ck_assert_uint_eq(sa_hlc_next(&h, HLC_T0), hlc_ts(HLC_T0, 0xFFFF));
  uint64_t ts = sa_hlc_next(&h, HLC_T0); /* 65536 events in one ms */
  ck_assert_uint_eq(ts, hlc_ts(HLC_T0 + 1, 0));
  ck_assert_uint_eq(sa_hlc_ms(ts), HLC_T0 + 1);
  /* The wall clock reaching that millisecond continues from it. */
  ck_assert_uint_eq(sa_hlc_next(&h, HLC_T0 + 1), hlc_ts(HLC_T0 + 1, 1));
}
END_TEST

static uint64_t hlc_now;
static uint64_t hlc_clock(void *ctx) {
  (void)ctx;
  return hlc_now;
}

/* The value a node persists (store meta, every WAL record) is the clock's
 * last value: a write after a restart under a clock set back is above it. */
START_TEST(persisted_value_keeps_the_clock_monotonic_across_a_restart) {
  char dir[TU_PATH_MAX], wal[TU_PATH_MAX];
  tu_mkdir(dir);
  sa_options o = tu_options("node-h", dir, wal);
  o.tick_manual = true;
  o.clock = hlc_clock;
  hlc_now = HLC_T0;
  sa_client *c = tu_open(&o);
  sa_write_result r1, r2, r3;
  ck_assert_int_eq(sa_client_put_ex(c, "a", "1", 1, NULL, &r1, NULL), 0);
  ck_assert_int_eq(sa_client_put_ex(c, "b", "1", 1, NULL, &r2, NULL), 0);
  ck_assert_uint_eq(r1.hlc, hlc_ts(HLC_T0, 0)); /* the layout: ms << 16 | counter */
  ck_assert_uint_eq(r2.hlc, hlc_ts(HLC_T0, 1));
  sa_value v;
  ck_assert_int_eq(sa_client_get(c, "b", &v, NULL), 0);
  ck_assert_uint_eq(v.hlc, r2.hlc); /* what the store keeps */
  sa_value_free(&v);
  sa_client_close(c);

  hlc_now = HLC_T0 - 3600000; /* an hour back */
  c = tu_open(&o);
  ck_assert_int_eq(sa_client_put_ex(c, "c", "1", 1, NULL, &r3, NULL), 0);
  ck_assert_uint_eq(r3.hlc, r2.hlc + 1);
  sa_client_close(c);

  /* The same after a checkpoint, where the WAL holds no record any more
   * and only the store's meta carries the value. */
  c = tu_open(&o);
  ck_assert_int_eq(sa_client_checkpoint(c, NULL), 0);
  sa_client_close(c);
  c = tu_open(&o);
  sa_write_result r4;
  ck_assert_int_eq(sa_client_put_ex(c, "d", "1", 1, NULL, &r4, NULL), 0);
  ck_assert_uint_eq(r4.hlc, r3.hlc + 1);
  sa_client_close(c);
}
END_TEST

static Suite *hlc_suite(void) {
  Suite *s = suite_create("hlc");
  TCase *t = tcase_create("hlc");
  tcase_set_timeout(t, 30);
  tcase_add_test(t, next_takes_the_wall_clock_when_it_is_ahead);
  tcase_add_test(t, monotonic_when_the_clock_goes_back);
  tcase_add_test(t, observe_of_a_future_timestamp_moves_the_clock);
  tcase_add_test(t, logical_counter_overflow_carries_into_the_milliseconds);
  tcase_add_test(t, persisted_value_keeps_the_clock_monotonic_across_a_restart);
  suite_add_tcase(s, t);
  return s;
}

int main(void) {
  return tu_main(hlc_suite());
}
