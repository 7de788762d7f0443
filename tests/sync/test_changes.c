/*
 * test_changes.c -- the change feed (sa_client_changes / sa_client_wait):
 * order, batches, versions, values, paging, the floor after pruning,
 * compaction of superseded work, long-poll wake-ups, restarts.
 */
#include "softadastra.h"
#include "test_util.h"

#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[TU_PATH_MAX], wal[TU_PATH_MAX];
static uint64_t now_ms = 1700000000000ull;
static uint64_t fake_clock(void *ctx) {
  (void)ctx;
  return now_ms;
}

static int ack_send(void *ctx, const sa_sync_op *ops, size_t n, bool *acked) {
  (void)ctx;
  (void)ops;
  for (size_t i = 0; i < n; i++)
    acked[i] = true;
  return 0;
}
static sa_transport ack_transport = {.kind = "ack", .send = ack_send};

/* A fresh directory per test under the run's base (tu_main removes it). */
static void setup(void) {
  tu_mkdir(dir);
  tu_path(wal, dir, "node-f.wal");
}

static sa_client *open_node(bool transport) {
  sa_options o = sa_options_persistent("node-f", wal);
  o.tick_manual = true;
  o.clock = fake_clock;
  o.outbox_retention_ms = 1000;
  if (transport) {
    o.enable_transport = true;
    o.transport = &ack_transport;
  }
  return tu_open(&o);
}

START_TEST(changes_in_order_with_versions_values_and_batches) {
  sa_client *c = open_node(false);
  ck_assert_int_eq(sa_client_put(c, "a", "1", NULL), 0); /* lsn 1 */
  ck_assert_int_eq(sa_client_put(c, "a", "2", NULL), 0); /* lsn 2 */
  sa_batch_op ops[] = {{SA_OP_PUT, "b", "x", 1}, {SA_OP_DELETE, "a", NULL, 0}};
  ck_assert_int_eq(sa_client_batch(c, ops, 2, NULL, NULL), 0); /* lsn 3 */
  ck_assert_int_eq(sa_client_remove(c, "b", NULL), 0);         /* lsn 4 */
  sa_changes ch;
  ck_assert_int_eq(sa_client_changes(c, 0, 100, true, &ch, NULL), 0);
  ck_assert_uint_eq(ch.count, 5);
  ck_assert_uint_eq(ch.next_since, 4);
  ck_assert_uint_eq(ch.last_lsn, 4);
  ck_assert(!ch.more);
  ck_assert_str_eq(ch.items[0].key, "a");
  ck_assert_str_eq(ch.items[0].data, "1");
  ck_assert_uint_eq(ch.items[0].version, 1);
  ck_assert_uint_eq(ch.items[1].version, 2);
  ck_assert_uint_eq(ch.items[2].lsn, 3);
  ck_assert(ch.items[2].batch && ch.items[3].batch && !ch.items[1].batch);
  ck_assert_str_eq(ch.items[2].key, "b");
  ck_assert_int_eq(ch.items[3].op, SA_OP_DELETE);
  ck_assert_uint_eq(ch.items[3].version, 0);
  ck_assert_ptr_null(ch.items[3].data);
  ck_assert_int_eq(ch.items[4].op, SA_OP_DELETE);
  ck_assert_uint_eq(ch.items[4].hlc >> 16, now_ms);
  sa_changes_free(&ch);

  /* without values; from the middle */
  ck_assert_int_eq(sa_client_changes(c, 2, 100, false, &ch, NULL), 0);
  ck_assert_uint_eq(ch.count, 3);
  ck_assert_uint_eq(ch.items[0].lsn, 3);
  ck_assert_ptr_null(ch.items[0].data);
  ck_assert_uint_eq(ch.items[0].len, 1);
  sa_changes_free(&ch);

  /* beyond the end: empty */
  ck_assert_int_eq(sa_client_changes(c, 4, 100, false, &ch, NULL), 0);
  ck_assert_uint_eq(ch.count, 0);
  ck_assert_uint_eq(ch.next_since, 4);
  sa_changes_free(&ch);
  sa_client_close(c);
}
END_TEST

START_TEST(paging_never_splits_a_batch) {
  sa_client *c = open_node(false);
  ck_assert_int_eq(sa_client_put(c, "a", "1", NULL), 0);
  sa_batch_op ops[] = {
      {SA_OP_PUT, "b", "1", 1}, {SA_OP_PUT, "c", "1", 1}, {SA_OP_PUT, "d", "1", 1}};
  ck_assert_int_eq(sa_client_batch(c, ops, 3, NULL, NULL), 0);
  ck_assert_int_eq(sa_client_put(c, "e", "1", NULL), 0);
  sa_changes ch;
  ck_assert_int_eq(sa_client_changes(c, 0, 2, false, &ch, NULL), 0);
  ck_assert_uint_eq(ch.count, 4); /* lsn 1, then the whole batch */
  ck_assert_uint_eq(ch.next_since, 2);
  ck_assert(ch.more);
  sa_changes_free(&ch);
  ck_assert_int_eq(sa_client_changes(c, 2, 2, false, &ch, NULL), 0);
  ck_assert_uint_eq(ch.count, 1);
  ck_assert_str_eq(ch.items[0].key, "e");
  ck_assert(!ch.more);
  sa_changes_free(&ch);
  sa_client_close(c);
}
END_TEST

START_TEST(floor_after_pruning_acknowledged_work_gives_gone) {
  sa_client *c = open_node(true);
  ck_assert_int_eq(sa_client_put(c, "a", "1", NULL), 0);
  ck_assert_int_eq(sa_client_put(c, "b", "1", NULL), 0);
  ck_assert_int_eq(sa_client_sync_tick(c, NULL), 0); /* both acknowledged */
  now_ms += 1000;
  ck_assert_int_eq(sa_client_sync_tick(c, NULL), 0); /* retention passed: pruned */
  ck_assert_uint_eq(sa_client_changes_floor(c), 2);
  ck_assert_int_eq(sa_client_put(c, "c", "1", NULL), 0);
  sa_changes ch;
  sa_error e;
  ck_assert_int_eq(sa_client_changes(c, 1, 10, false, &ch, &e), SA_EGONE);
  ck_assert_ptr_nonnull(strstr(e.message, "2"));
  ck_assert_int_eq(sa_client_changes(c, 2, 10, false, &ch, NULL), 0);
  ck_assert_uint_eq(ch.count, 1);
  ck_assert_str_eq(ch.items[0].key, "c");
  sa_changes_free(&ch);
  sa_client_close(c);
  c = open_node(false); /* the floor is persistent */
  ck_assert_uint_eq(sa_client_changes_floor(c), 2);
  ck_assert_int_eq(sa_client_changes(c, 0, 10, false, &ch, NULL), SA_EGONE);
  sa_client_close(c);
}
END_TEST

START_TEST(compacting_superseded_work_keeps_the_feed_whole) {
  sa_options o = sa_options_persistent("node-f", wal);
  o.tick_manual = true;
  o.outbox_max = 2;
  sa_client *c;
  ck_assert_int_eq(sa_client_open(&c, &o, NULL), 0);
  for (int i = 0; i < 5; i++)
    ck_assert_int_eq(sa_client_put(c, "hot", "v", NULL), 0);
  ck_assert_int_eq(sa_client_put(c, "cold", "v", NULL), 0);
  ck_assert_int_eq(sa_client_sync_tick(c, NULL), 0); /* prunes lsn 1..4 */
  ck_assert_uint_eq(sa_client_changes_floor(c), 0);
  sa_changes ch;
  ck_assert_int_eq(sa_client_changes(c, 0, 10, false, &ch, NULL), 0);
  ck_assert_uint_eq(ch.count, 2); /* the latest change of each key */
  ck_assert_uint_eq(ch.items[0].lsn, 5);
  ck_assert_uint_eq(ch.items[0].version, 5);
  ck_assert_str_eq(ch.items[1].key, "cold");
  sa_changes_free(&ch);
  sa_client_close(c);
}
END_TEST

static sa_client *waiter_client;
static uint64_t waiter_seen;
static void *waiter(void *arg) {
  (void)arg;
  sa_client_wait(waiter_client, 0, 10000, &waiter_seen, NULL);
  return NULL;
}

START_TEST(wait_wakes_on_write_times_out_and_ends_at_close) {
  sa_client *c = open_node(false);
  uint64_t last = 99;
  ck_assert_int_eq(sa_client_wait(c, 0, 20, &last, NULL), 0); /* nothing: times out */
  ck_assert_uint_eq(last, 0);
  waiter_client = c;
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, waiter, NULL), 0);
  usleep(20000);
  ck_assert_int_eq(sa_client_put(c, "k", "v", NULL), 0);
  pthread_join(t, NULL);
  ck_assert_uint_eq(waiter_seen, 1); /* woken by the write, long before 10 s */
  ck_assert_int_eq(sa_client_wait(c, 0, 10000, &last, NULL), 0); /* already past */
  ck_assert_uint_eq(last, 1);
  sa_client_close(c);
}
END_TEST

START_TEST(feed_survives_restart_and_replay) {
  sa_client *c = open_node(false);
  ck_assert_int_eq(sa_client_put(c, "a", "1", NULL), 0);
  ck_assert_int_eq(sa_client_put(c, "b", "2", NULL), 0);
  sa_status st;
  ck_assert_int_eq(sa_client_status(c, &st, NULL), 0);
  char store[512];
  snprintf(store, sizeof store, "%s", st.store_path);
  sa_client_close(c);
  ck_assert_int_eq(remove(store), 0); /* rebuilt from the WAL */
  c = open_node(false);
  sa_changes ch;
  ck_assert_int_eq(sa_client_changes(c, 0, 10, true, &ch, NULL), 0);
  ck_assert_uint_eq(ch.count, 2);
  ck_assert_str_eq(ch.items[1].data, "2");
  ck_assert_uint_eq(ch.items[1].version, 1);
  sa_changes_free(&ch);
  sa_client_close(c);
}
END_TEST

int main(void) {
  Suite *s = suite_create("changes");
  TCase *t = tcase_create("feed");
  tcase_add_checked_fixture(t, setup, NULL);
  tcase_set_timeout(t, 30);
  tcase_add_test(t, changes_in_order_with_versions_values_and_batches);
  tcase_add_test(t, paging_never_splits_a_batch);
  tcase_add_test(t, floor_after_pruning_acknowledged_work_gives_gone);
  tcase_add_test(t, compacting_superseded_work_keeps_the_feed_whole);
  tcase_add_test(t, wait_wakes_on_write_times_out_and_ends_at_close);
  tcase_add_test(t, feed_survives_restart_and_replay);
  suite_add_tcase(s, t);
  return tu_main(s);
}
