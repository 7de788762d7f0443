/*
 * test_worker.c -- the core's background-thread primitive (core/worker.c):
 * start, kick, stop while waiting, stop while busy, a timed wake, no lost
 * kick, and the order stop > kick > deadline.
 *
 * What it is not: a test of the node's threads (test_client, test_outbox
 * and the crash harness run those through the public API).
 *
 * Threads: each test starts one worker thread; the test's thread owns it.
 * Every wait is bounded: a hung worker fails the test by Check's timeout.
 */
#define _GNU_SOURCE
#include "test_util.h"
#include "worker.h"

#include <stdatomic.h>
#include <string.h>

/* What a worker loop saw, for the test to check. */
typedef struct {
  sa_worker w;
  atomic_int kicks;    /* waits that returned KICK */
  atomic_int timeouts; /* waits that returned TIMEOUT */
  atomic_int stops;    /* waits that returned STOP */
  atomic_int busy;     /* 1 while the loop sleeps outside the wait */
  atomic_bool in_wait; /* the loop is about to wait (or waiting) */
  uint64_t period_ns;  /* deadline for each wait (SA_WORKER_FOREVER: none) */
  unsigned busy_ms;    /* how long each KICK keeps the loop busy */
  char name[16];       /* the thread's name, read by the loop itself */
} tw;

static uint64_t tw_mono_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void tw_loop(void *arg) {
  tw *t = arg;
  pthread_getname_np(pthread_self(), t->name, sizeof t->name);
  pthread_mutex_lock(&t->w.mu);
  for (;;) {
    uint64_t due =
        t->period_ns == SA_WORKER_FOREVER ? SA_WORKER_FOREVER : tw_mono_ns() + t->period_ns;
    atomic_store(&t->in_wait, true);
    sa_worker_wake r = sa_worker_wait(&t->w, due);
    atomic_store(&t->in_wait, false);
    if (r == SA_WORKER_STOP) {
      atomic_fetch_add(&t->stops, 1);
      break;
    }
    if (r == SA_WORKER_TIMEOUT) atomic_fetch_add(&t->timeouts, 1);
    if (r == SA_WORKER_KICK) {
      atomic_fetch_add(&t->kicks, 1);
      if (t->busy_ms) {
        pthread_mutex_unlock(&t->w.mu);
        atomic_store(&t->busy, 1);
        tu_sleep_ms(t->busy_ms);
        atomic_store(&t->busy, 0);
        pthread_mutex_lock(&t->w.mu);
      }
    }
  }
  pthread_mutex_unlock(&t->w.mu);
}

static void tw_start(tw *t, uint64_t period_ns, unsigned busy_ms) {
  memset(t, 0, sizeof *t);
  t->period_ns = period_ns;
  t->busy_ms = busy_ms;
  ck_assert_int_eq(sa_worker_init(&t->w), 0);
  ck_assert_int_eq(sa_worker_start(&t->w, "sa-test-worker", tw_loop, t), 0);
  ck_assert(t->w.started);
}

/* Waits (bounded) until cond holds. */
#define TW_UNTIL(cond)                                                                             \
  do {                                                                                             \
    uint64_t tw_t0 = tu_now_ms();                                                                  \
    while (!(cond)) {                                                                              \
      ck_assert_msg(tu_now_ms() - tw_t0 < 5000, "timed out waiting for " #cond);                   \
      tu_sleep_ms(1);                                                                              \
    }                                                                                              \
  } while (0)

START_TEST(start_names_the_thread_and_stop_while_waiting_joins) {
  tw t;
  tw_start(&t, SA_WORKER_FOREVER, 0);
  TW_UNTIL(atomic_load(&t.in_wait));
  tu_sleep_ms(20); /* inside pthread_cond_wait by now */
  uint64_t t0 = tu_now_ms();
  sa_worker_stop(&t.w);
  ck_assert_uint_lt(tu_now_ms() - t0, 1000);
  ck_assert(t.w.joined);
  ck_assert_int_eq(atomic_load(&t.stops), 1);
  ck_assert_int_eq(atomic_load(&t.kicks), 0);
  ck_assert_str_eq(t.name, "sa-test-worker");
  sa_worker_stop(&t.w); /* idempotent */
  sa_worker_kick(&t.w); /* harmless after the stop */
  sa_worker_destroy(&t.w);
}
END_TEST

START_TEST(kick_wakes_and_is_never_lost) {
  tw t;
  tw_start(&t, SA_WORKER_FOREVER, 0);
  sa_worker_kick(&t.w); /* maybe before the first wait: must still count */
  TW_UNTIL(atomic_load(&t.kicks) == 1);
  for (int i = 2; i <= 5; i++) {
    sa_worker_kick(&t.w);
    TW_UNTIL(atomic_load(&t.kicks) == i);
  }
  /* Kicks coalesce: several while busy are one wake-up, not zero. */
  pthread_mutex_lock(&t.w.mu);
  sa_worker_kick_locked(&t.w);
  sa_worker_kick_locked(&t.w);
  pthread_mutex_unlock(&t.w.mu);
  TW_UNTIL(atomic_load(&t.kicks) == 6);
  tu_sleep_ms(20);
  ck_assert_int_eq(atomic_load(&t.kicks), 6);
  ck_assert_int_eq(atomic_load(&t.timeouts), 0);
  sa_worker_stop(&t.w);
  sa_worker_destroy(&t.w);
}
END_TEST

START_TEST(stop_while_busy_ends_after_the_work) {
  tw t;
  tw_start(&t, SA_WORKER_FOREVER, 200);
  sa_worker_kick(&t.w);
  TW_UNTIL(atomic_load(&t.busy) == 1);
  uint64_t t0 = tu_now_ms();
  sa_worker_stop(&t.w); /* the loop finishes its 200 ms, then sees STOP */
  uint64_t took = tu_now_ms() - t0;
  ck_assert_uint_ge(took, 100);
  ck_assert_uint_lt(took, 3000);
  ck_assert_int_eq(atomic_load(&t.kicks), 1);
  ck_assert_int_eq(atomic_load(&t.stops), 1);
  sa_worker_destroy(&t.w);
}
END_TEST

START_TEST(timed_wait_wakes_at_its_deadline) {
  tw t;
  tw_start(&t, 30u * 1000000u, 0); /* 30 ms */
  uint64_t t0 = tu_now_ms();
  TW_UNTIL(atomic_load(&t.timeouts) >= 3);
  uint64_t took = tu_now_ms() - t0;
  ck_assert_uint_ge(took, 60); /* three 30 ms waits, not a spin */
  ck_assert_int_eq(atomic_load(&t.kicks), 0);
  /* A kick ends a timed wait early. */
  int before = atomic_load(&t.timeouts);
  sa_worker_kick(&t.w);
  TW_UNTIL(atomic_load(&t.kicks) == 1);
  ck_assert_int_le(atomic_load(&t.timeouts), before + 1);
  sa_worker_stop(&t.w);
  ck_assert_int_eq(atomic_load(&t.stops), 1);
  sa_worker_destroy(&t.w);
}
END_TEST

/* The loop's thread sees STOP over a pending kick and a passed deadline. */
static sa_worker_wake order_seen;
static void order_loop(void *arg) {
  sa_worker *w = arg;
  pthread_mutex_lock(&w->mu);
  while (!sa_worker_stopping(w)) { /* wait for the test to set both flags */
    pthread_mutex_unlock(&w->mu);
    tu_sleep_ms(1);
    pthread_mutex_lock(&w->mu);
  }
  order_seen = sa_worker_wait(w, 0); /* deadline long past, kicked, stopped */
  pthread_mutex_unlock(&w->mu);
}

START_TEST(stop_wins_over_a_kick_and_a_deadline) {
  sa_worker w;
  ck_assert_int_eq(sa_worker_init(&w), 0);
  ck_assert_int_eq(sa_worker_start(&w, "sa-test-order", order_loop, &w), 0);
  pthread_mutex_lock(&w.mu);
  sa_worker_kick_locked(&w);
  sa_worker_stop_locked(&w);
  pthread_mutex_unlock(&w.mu);
  sa_worker_join(&w);
  ck_assert_int_eq(order_seen, SA_WORKER_STOP);
  ck_assert(!sa_worker_is_self(&w));
  sa_worker_destroy(&w);
}
END_TEST

/* A worker never started: stop and destroy are no-ops. */
START_TEST(never_started_stops_cleanly) {
  sa_worker w;
  ck_assert_int_eq(sa_worker_init(&w), 0);
  sa_worker_stop(&w);
  sa_worker_kick(&w);
  ck_assert(!sa_worker_is_self(&w));
  sa_worker_destroy(&w);
}
END_TEST

static Suite *worker_suite(void) {
  Suite *s = suite_create("worker");
  TCase *t = tcase_create("worker");
  tcase_set_timeout(t, 30);
  tcase_add_test(t, start_names_the_thread_and_stop_while_waiting_joins);
  tcase_add_test(t, kick_wakes_and_is_never_lost);
  tcase_add_test(t, stop_while_busy_ends_after_the_work);
  tcase_add_test(t, timed_wait_wakes_at_its_deadline);
  tcase_add_test(t, stop_wins_over_a_kick_and_a_deadline);
  tcase_add_test(t, never_started_stops_cleanly);
  suite_add_tcase(s, t);
  return s;
}

int main(void) {
  return tu_main(worker_suite());
}
