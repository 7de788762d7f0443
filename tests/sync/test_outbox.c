/*
 * test_outbox.c -- the sync work state machine (core/outbox.c) and the tick
 * thread (core/node.c), through the public API.
 *
 * Time is logical: the node gets a clock that returns a variable the test
 * moves, and ticks are run by hand (tick_manual), so retry counts and
 * backoff deadlines are checked exactly, without sleeping.  The transport
 * is an in-process fake that refuses the first N hand-overs of each
 * operation and then acknowledges.
 */
#include "io.h"
#include "softadastra.h"
#include "store.h"
#include "test_util.h"

#include <check.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[TU_PATH_MAX];
static char wal[TU_PATH_MAX];
static uint64_t now_ms;

static uint64_t fake_clock(void *ctx) {
  (void)ctx;
  return now_ms;
}

/* Fake transport: op with attempt <= fail_first is refused; counts calls. */
typedef struct {
  uint32_t fail_first;
  int calls;
  int ops_seen;
  int errors; /* return SA_EIO this many times */
  uint64_t last_lsn_seen;
  char node_seen[65];
  int type_seen[64];
} fake_t;

static int fake_send(void *ctx, const sa_sync_op *ops, size_t n, bool *acked) {
  fake_t *f = ctx;
  f->calls++;
  if (f->errors > 0) {
    f->errors--;
    return SA_EIO;
  }
  for (size_t i = 0; i < n; i++) {
    f->ops_seen++;
    f->last_lsn_seen = ops[i].lsn;
    snprintf(f->node_seen, sizeof f->node_seen, "%s", ops[i].node_id);
    if (ops[i].lsn < 64) f->type_seen[ops[i].lsn] = ops[i].type;
    acked[i] = ops[i].attempt > f->fail_first;
  }
  return 0;
}

static fake_t fake;
static sa_transport fake_transport = {.kind = "fake", .ctx = &fake, .send = fake_send};

/* A fresh directory per test under the run's base (tu_main removes it). */
static void setup(void) {
  tu_mkdir(dir);
  tu_path(wal, dir, "node-o.wal");
  now_ms = 1700000000000ull;
  memset(&fake, 0, sizeof fake);
}

static sa_options opts(bool transport) {
  sa_options o = sa_options_persistent("node-o", wal);
  o.clock = fake_clock;
  o.tick_manual = true;
  o.retry_base_ms = 1000;
  o.retry_max_ms = 8000;
  o.max_retries = 4;
  o.ack_timeout_ms = 5000;
  o.sync_batch_size = 16;
  if (transport) {
    o.enable_transport = true;
    o.transport = &fake_transport;
  }
  return o;
}

static sa_client *open_node(const sa_options *o) {
  return tu_open(o);
}

static sa_sync_state state(sa_client *c) {
  sa_sync_state s;
  ck_assert_int_eq(sa_client_sync_state(c, &s, NULL), 0);
  ck_assert_uint_eq(s.outbox_size, s.queued + s.in_flight + s.acknowledged + s.failed);
  return s;
}

static void put(sa_client *c, const char *k, const char *v) {
  sa_error e;
  ck_assert_msg(sa_client_put(c, k, v, &e) == 0, "put %s: %s", k, e.message);
}

static sa_outbox_entry entry(sa_client *c, uint64_t lsn) {
  sa_outbox_entry e;
  size_t n;
  ck_assert_int_eq(sa_client_outbox_list(c, lsn - 1, &e, 1, &n, NULL), 0);
  ck_assert_uint_eq(n, 1);
  ck_assert_uint_eq(e.lsn, lsn);
  return e;
}

START_TEST(disabled_transport_keeps_work_queued) {
  sa_options o = opts(false);
  sa_client *c = open_node(&o);
  put(c, "a", "1");
  put(c, "b", "2");
  ck_assert_int_eq(sa_client_remove(c, "a", NULL), 0);
  ck_assert_int_eq(sa_client_sync_tick(c, NULL), 0);
  sa_sync_state s = state(c);
  ck_assert_uint_eq(s.outbox_size, 3);
  ck_assert_uint_eq(s.queued, 3);
  ck_assert_uint_eq(s.in_flight, 0);
  ck_assert_uint_eq(s.ticks, 1);
  ck_assert_uint_eq(s.last_tick_ms, now_ms);
  ck_assert_uint_eq(s.last_lsn, 3);
  ck_assert(!s.transport_enabled);
  ck_assert(!s.transport_running);
  ck_assert_str_eq(s.transport_kind, "disabled");
  ck_assert_str_eq(s.discovery_kind, "disabled");
  /* the delete is recorded as a tombstone */
  ck_assert_int_eq(entry(c, 3).type, SA_OP_DELETE);
  ck_assert_int_eq(entry(c, 1).type, SA_OP_PUT);
  sa_client_close(c);
}
END_TEST

START_TEST(fake_transport_fails_then_acks_with_backoff) {
  sa_options o = opts(true);
  fake.fail_first = 2; /* attempts 1 and 2 are refused, 3 is acknowledged */
  sa_client *c = open_node(&o);
  put(c, "k", "v");
  sa_sync_state s = state(c);
  ck_assert(s.transport_enabled && s.transport_running && !s.transport_stub);
  ck_assert_str_eq(s.transport_kind, "fake");

  /* attempt 1: refused -> queued with backoff in [0.8, 1.2) * 1000 ms */
  ck_assert_int_eq(sa_client_sync_tick(c, NULL), 0);
  sa_outbox_entry e = entry(c, 1);
  ck_assert_int_eq(e.state, SA_OUTBOX_QUEUED);
  ck_assert_uint_eq(e.attempts, 1);
  ck_assert_uint_ge(e.at_ms, now_ms + 800);
  ck_assert_uint_lt(e.at_ms, now_ms + 1200);
  ck_assert_str_eq(fake.node_seen, "node-o");
  ck_assert_uint_eq(fake.last_lsn_seen, 1);

  /* not due yet: a tick does not hand it over */
  now_ms = e.at_ms - 1;
  ck_assert_int_eq(sa_client_sync_tick(c, NULL), 0);
  ck_assert_int_eq(fake.ops_seen, 1);

  /* attempt 2: due -> refused -> backoff doubled: [1600, 2400) */
  now_ms = e.at_ms;
  ck_assert_int_eq(sa_client_sync_tick(c, NULL), 0);
  e = entry(c, 1);
  ck_assert_int_eq(fake.ops_seen, 2);
  ck_assert_uint_eq(e.attempts, 2);
  ck_assert_uint_ge(e.at_ms, now_ms + 1600);
  ck_assert_uint_lt(e.at_ms, now_ms + 2400);
  s = state(c);
  ck_assert_uint_eq(s.total_retries, 1);

  /* attempt 3: acknowledged */
  now_ms = e.at_ms;
  ck_assert_int_eq(sa_client_sync_tick(c, NULL), 0);
  e = entry(c, 1);
  ck_assert_int_eq(e.state, SA_OUTBOX_ACKNOWLEDGED);
  ck_assert_uint_eq(e.attempts, 3);
  s = state(c);
  ck_assert_uint_eq(s.acknowledged, 1);
  ck_assert_uint_eq(s.queued, 0);
  ck_assert_uint_eq(s.total_retries, 2);
  ck_assert_uint_eq(s.ticks, 4);

  /* pruned once the retention has passed, not before */
  now_ms = e.at_ms + SA_DEFAULT_OUTBOX_RETENTION_MS - 1;
  ck_assert_int_eq(sa_client_sync_tick(c, NULL), 0);
  ck_assert_uint_eq(state(c).acknowledged, 1);
  now_ms += 1;
  ck_assert_int_eq(sa_client_sync_tick(c, NULL), 0);
  s = state(c);
  ck_assert_uint_eq(s.outbox_size, 0);
  ck_assert_uint_eq(s.pruned, 1);
  sa_client_close(c);
}
END_TEST

START_TEST(failed_after_max_retries_and_backoff_is_capped) {
  sa_options o = opts(true);
  o.max_retries = 6;
  fake.fail_first = 100; /* never acknowledges */
  sa_client *c = open_node(&o);
  put(c, "k", "v");
  uint64_t expect_base[] = {1000, 2000, 4000, 8000, 8000}; /* capped at retry_max_ms */
  for (int i = 0; i < 5; i++) {
    ck_assert_int_eq(sa_client_sync_tick(c, NULL), 0);
    sa_outbox_entry e = entry(c, 1);
    ck_assert_int_eq(e.state, SA_OUTBOX_QUEUED);
    ck_assert_uint_eq(e.attempts, (uint32_t)i + 1);
    ck_assert_uint_ge(e.at_ms, now_ms + expect_base[i] * 8 / 10);
    ck_assert_uint_lt(e.at_ms, now_ms + expect_base[i] * 12 / 10);
    now_ms = e.at_ms;
  }
  ck_assert_int_eq(sa_client_sync_tick(c, NULL), 0); /* attempt 6 = max */
  sa_outbox_entry e = entry(c, 1);
  ck_assert_int_eq(e.state, SA_OUTBOX_FAILED);
  ck_assert_uint_eq(e.attempts, 6);
  sa_sync_state s = state(c);
  ck_assert_uint_eq(s.failed, 1);
  ck_assert_uint_eq(s.total_retries, 5);
  /* failed work is not handed over again */
  int seen = fake.ops_seen;
  now_ms += 1000000;
  ck_assert_int_eq(sa_client_sync_tick(c, NULL), 0);
  ck_assert_int_eq(fake.ops_seen, seen);
  sa_client_close(c);
}
END_TEST

START_TEST(transport_error_counts_as_no_ack) {
  sa_options o = opts(true);
  fake.errors = 1;
  sa_client *c = open_node(&o);
  put(c, "k", "v");
  ck_assert_int_eq(sa_client_sync_tick(c, NULL), 0);
  sa_outbox_entry e = entry(c, 1);
  ck_assert_int_eq(e.state, SA_OUTBOX_QUEUED);
  ck_assert_uint_eq(e.attempts, 1);
  now_ms = e.at_ms;
  ck_assert_int_eq(sa_client_sync_tick(c, NULL), 0);
  ck_assert_int_eq(entry(c, 1).state, SA_OUTBOX_ACKNOWLEDGED);
  sa_client_close(c);
}
END_TEST

START_TEST(batch_size_bounds_each_tick) {
  sa_options o = opts(true);
  o.sync_batch_size = 4;
  sa_client *c = open_node(&o);
  for (int i = 0; i < 10; i++) {
    char k[16];
    snprintf(k, sizeof k, "k%d", i);
    put(c, k, "v");
  }
  ck_assert_int_eq(sa_client_sync_tick(c, NULL), 0);
  ck_assert_uint_eq(state(c).acknowledged, 4);
  ck_assert_int_eq(sa_client_sync_tick(c, NULL), 0);
  ck_assert_int_eq(sa_client_sync_tick(c, NULL), 0);
  sa_sync_state s = state(c);
  ck_assert_uint_eq(s.acknowledged, 10);
  ck_assert_int_eq(fake.calls, 3);
  sa_client_close(c);
}
END_TEST

/* A transport that "crashes" mid-flight: it never answers (the op stays in
 * flight); a restart makes in-flight work queued again, keeping attempts. */
static int hang_send(void *ctx, const sa_sync_op *ops, size_t n, bool *acked) {
  (void)ctx;
  (void)ops;
  for (size_t i = 0; i < n; i++)
    acked[i] = false;
  _exit(0); /* the process dies while the work is in flight */
}
static sa_transport hang_transport = {.kind = "hang", .send = hang_send};

START_TEST(restart_in_the_middle_requeues_in_flight_work) {
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    sa_options o = opts(true);
    o.transport = &hang_transport;
    sa_client *c;
    if (sa_client_open(&c, &o, NULL) != 0 || sa_client_put(c, "k", "v", NULL) != 0 ||
        sa_client_put(c, "k2", "v", NULL) != 0)
      _exit(3);
    sa_client_sync_tick(c, NULL); /* exits inside send */
    _exit(4);
  }
  int st;
  ck_assert_int_eq(waitpid(pid, &st, 0), pid);
  ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);

  sa_options o = opts(true);
  sa_client *c = open_node(&o);
  sa_sync_state s = state(c);
  ck_assert_uint_eq(s.outbox_size, 2);
  ck_assert_uint_eq(s.in_flight, 0);
  ck_assert_uint_eq(s.queued, 2);
  sa_outbox_entry e = entry(c, 1);
  ck_assert_int_eq(e.state, SA_OUTBOX_QUEUED);
  ck_assert_uint_eq(e.attempts, 1); /* the attempt made before the crash counts */
  ck_assert_int_eq(sa_client_sync_tick(c, NULL), 0);
  s = state(c);
  ck_assert_uint_eq(s.acknowledged, 2);
  ck_assert_uint_eq(s.total_retries, 2);
  sa_client_close(c);
}
END_TEST

/* The counts per state at open walk the entries the store had and count
 * the ones the WAL replay adds (all queued) without reading them: both
 * halves must add up, and the replayed entries must be sent. */
START_TEST(restart_counts_kept_and_replayed_entries) {
  sa_options o = opts(true);
  sa_client *c = open_node(&o);
  put(c, "k1", "v");
  put(c, "k2", "v");
  ck_assert_int_eq(sa_client_sync_tick(c, NULL), 0);
  ck_assert_uint_eq(state(c).acknowledged, 2);
  sa_status st;
  ck_assert_int_eq(sa_client_status(c, &st, NULL), 0);
  char store[600], copy[700], lock[700];
  snprintf(store, sizeof store, "%s", st.store_path);
  snprintf(copy, sizeof copy, "%s.copy", store);
  snprintf(lock, sizeof lock, "%s-lock", store);
  sa_client_close(c);
  tu_copy(store, copy);

  c = open_node(&o);
  put(c, "k3", "v");
  put(c, "k4", "v");
  put(c, "k5", "v");
  sa_client_close(c);
  /* The store forgets those three commits; the WAL still has them. */
  tu_copy(copy, store);
  unlink(lock);

  c = open_node(&o);
  ck_assert_int_eq(sa_client_status(c, &st, NULL), 0);
  ck_assert_uint_eq(st.recovery.records_replayed, 3);
  sa_sync_state s = state(c);
  ck_assert_uint_eq(s.acknowledged, 2);
  ck_assert_uint_eq(s.queued, 3);
  ck_assert_uint_eq(s.outbox_size, 5);
  ck_assert_int_eq(entry(c, 3).state, SA_OUTBOX_QUEUED);
  ck_assert_int_eq(sa_client_sync_tick(c, NULL), 0);
  s = state(c);
  ck_assert_uint_eq(s.acknowledged, 5);
  ck_assert_uint_eq(s.queued, 0);
  ck_assert_uint_eq(fake.last_lsn_seen, 5);
  sa_client_close(c);
}
END_TEST

/* In-flight work whose answer never gets recorded (here: the settle's store
 * commit fails, injected through the io table) expires at its deadline and
 * is queued again with backoff. */
static bool fail_next_commit;
static int faulty_commit(void) {
  if (fail_next_commit) {
    fail_next_commit = false;
    return 5; /* EIO */
  }
  return 0;
}
static int arming_send(void *ctx, const sa_sync_op *ops, size_t n, bool *acked) {
  fail_next_commit = true; /* the settle that follows this hand-over fails */
  return fake_send(ctx, ops, n, acked);
}
static sa_transport arming_transport = {.kind = "arming", .ctx = &fake, .send = arming_send};

START_TEST(in_flight_expires_after_ack_timeout) {
  static sa_io io;
  io = sa_io_libc;
  io.store_commit = faulty_commit;
  sa_io_set(&io);
  sa_options o = opts(true);
  o.transport = &arming_transport;
  sa_client *c = open_node(&o);
  put(c, "k", "v");
  sa_error err;
  ck_assert_int_ne(sa_client_sync_tick(c, &err), 0); /* settle lost */
  sa_outbox_entry e = entry(c, 1);
  ck_assert_int_eq(e.state, SA_OUTBOX_IN_FLIGHT);
  ck_assert_uint_eq(e.at_ms, now_ms + 5000); /* ack_timeout_ms */
  ck_assert_uint_eq(state(c).in_flight, 1);

  now_ms += 4999; /* before the deadline: untouched */
  o.transport = &fake_transport;
  ck_assert_int_eq(sa_client_sync_tick(c, NULL), 0);
  ck_assert_int_eq(entry(c, 1).state, SA_OUTBOX_IN_FLIGHT);
  now_ms += 1; /* deadline: queued again with backoff after attempt 1 */
  ck_assert_int_eq(sa_client_sync_tick(c, NULL), 0);
  e = entry(c, 1);
  ck_assert_int_eq(e.state, SA_OUTBOX_QUEUED);
  ck_assert_uint_ge(e.at_ms, now_ms + 800);
  ck_assert_uint_lt(e.at_ms, now_ms + 1200);
  sa_client_close(c);
  sa_io_set(NULL);
}
END_TEST

START_TEST(overflow_prunes_acknowledged_then_superseded_and_keeps_accepting) {
  sa_options o = opts(true);
  o.outbox_max = 5;
  o.sync_batch_size = 3;
  sa_client *c = open_node(&o);
  for (int i = 0; i < 3; i++) {
    char k[16];
    snprintf(k, sizeof k, "acked%d", i);
    put(c, k, "v");
  }
  ck_assert_int_eq(sa_client_sync_tick(c, NULL), 0);
  ck_assert_uint_eq(state(c).acknowledged, 3);
  sa_client_close(c);

  /* Transport off now: new work stays queued.  Overwrite the same key.
   * No tick: the commits over the bound prune as they go. */
  o = opts(false);
  o.outbox_max = 5;
  c = open_node(&o);
  for (int i = 0; i < 6; i++)
    put(c, "hot", "v"); /* lsn 4..9: 4..8 are superseded by 9 */
  put(c, "cold", "v");  /* lsn 10 */
  sa_sync_state s = state(c);
  /* 5 to remove: the 3 acknowledged, then the 2 oldest superseded */
  ck_assert_uint_eq(s.outbox_size, 5);
  ck_assert_uint_eq(s.acknowledged, 0);
  ck_assert_uint_eq(s.pruned, 5);
  ck_assert(!s.overflow);
  sa_outbox_entry list[8];
  size_t n;
  ck_assert_int_eq(sa_client_outbox_list(c, 0, list, 8, &n, NULL), 0);
  ck_assert_uint_eq(n, 5);
  ck_assert_uint_eq(list[0].lsn, 6);
  ck_assert_uint_eq(list[4].lsn, 10);

  /* the latest write of a key is never dropped: overflow is reported */
  for (int i = 0; i < 3; i++) {
    char k[16];
    snprintf(k, sizeof k, "new%d", i);
    put(c, k, "v");
  }
  s = state(c);
  ck_assert_uint_eq(s.outbox_size, 5 + 3 - 3); /* lsn 6,7,8 (hot, superseded) go */
  for (int i = 0; i < 3; i++) {
    char k[16];
    snprintf(k, sizeof k, "more%d", i);
    put(c, k, "v");
  }
  ck_assert_int_eq(sa_client_sync_tick(c, NULL), 0);
  s = state(c);
  ck_assert(s.overflow); /* only latest-per-key work left: kept, reported */
  ck_assert_uint_eq(s.outbox_size, 8);
  ck_assert_uint_eq(s.pruned, 8);
  ck_assert_int_eq(sa_client_put(c, "still", "accepted", NULL), 0);
  sa_client_close(c);
}
END_TEST

/* An outbox over a bound lowered at restart: no commit comes to prune it,
 * the tick does (the oldest superseded first). */
START_TEST(tick_prunes_an_outbox_over_a_lowered_bound) {
  sa_options o = opts(false);
  sa_client *c = open_node(&o);
  for (int i = 0; i < 5; i++)
    put(c, "hot", "v"); /* lsn 1..5 */
  ck_assert_uint_eq(state(c).outbox_size, 5);
  sa_client_close(c);
  o.outbox_max = 2;
  c = open_node(&o);
  ck_assert(state(c).overflow);
  ck_assert_int_eq(sa_client_sync_tick(c, NULL), 0);
  sa_sync_state s = state(c);
  ck_assert(!s.overflow);
  ck_assert_uint_eq(s.outbox_size, 2);
  ck_assert_uint_eq(s.pruned, 3);
  ck_assert_uint_eq(entry(c, 4).lsn, 4); /* 1..3 gone, 4 and 5 kept */
  sa_client_close(c);
}
END_TEST

/* A put committed in a store transaction of its own: a read waits for the
 * commit of every write answered before it. */
static void put_committed(sa_client *c, const char *k, const char *v) {
  put(c, k, v);
  sa_value val;
  ck_assert_int_eq(sa_client_get(c, k, &val, NULL), 0);
  sa_value_free(&val);
}

/* Each prune visits a bounded number of entries (4 per record + 64 for a
 * commit), resuming where the last one stopped and going around:
 * superseded work behind the resume point is found within a few commits,
 * not by a walk of the whole outbox at each. */
START_TEST(prune_goes_around_the_outbox_from_where_it_stopped) {
  sa_options o = opts(false);
  o.outbox_max = 10;
  sa_client *c = open_node(&o);
  enum { UNIQUE = 600, REWRITES = 40 };
  for (int i = 0; i < UNIQUE; i++) {
    char k[16];
    snprintf(k, sizeof k, "u%04d", i);
    put(c, k, "v"); /* lsn 1..600, each the latest of its key */
  }
  sa_sync_state s = state(c);
  ck_assert_uint_eq(s.outbox_size, UNIQUE);
  ck_assert_uint_eq(s.pruned, 0);
  ck_assert(s.overflow);
  /* Rewrite the oldest key: its first entry (lsn 1) is superseded, behind
   * wherever the cursor stands.  Then REWRITES commits of one record each
   * visit 40 * 68 entries, several laps of the outbox. */
  put_committed(c, "u0000", "w");
  for (int i = 0; i < REWRITES; i++)
    put_committed(c, "u0599", "w");
  sa_outbox_entry first = entry(c, 2); /* lsn 1 is gone */
  ck_assert_uint_eq(first.lsn, 2);
  s = state(c);
  ck_assert_uint_ge(s.pruned, 2);
  ck_assert_uint_eq(s.outbox_size, UNIQUE + 1 + REWRITES - s.pruned);
  /* The tick visits up to 4096: every superseded entry goes. */
  ck_assert_int_eq(sa_client_sync_tick(c, NULL), 0);
  s = state(c);
  ck_assert_uint_eq(s.outbox_size, UNIQUE);  /* one entry per key */
  ck_assert_uint_eq(s.pruned, 1 + REWRITES); /* lsn 1, lsn 600 and 39 of the rewrites */
  sa_client_close(c);
}
END_TEST

static char logged[1024];
static void capture_log(void *ctx, int level, const char *msg) {
  (void)ctx;
  if (level == SA_LOG_ERROR && strstr(msg, "malformed")) snprintf(logged, sizeof logged, "%s", msg);
}

/* Replaces the outbox payload of lsn with bytes no record parses, in place,
 * through the store API while the node is closed: a damaged store file. */
static void damage_payload(const sa_options *o, uint64_t lsn) {
  char path[TU_PATH_MAX];
  tu_path(path, dir, "node-o.mdb");
  sa_store *st;
  sa_error e;
  ck_assert_msg(store_open(&st, path, "node-o", true, o->store_max_bytes, &e) == 0, "%s",
                e.message);
  store_wtxn *t;
  ck_assert_int_eq(store_wbegin(st, &t, &e), 0);
  store_obx ob;
  bool found = false;
  ck_assert_int_eq(store_wobx_get(t, lsn, &ob, &found, &e), 0);
  ck_assert(found);
  static const unsigned char junk[] = {0xff, 0xff, 0xff};
  ck_assert_int_eq(store_woutbox(t, lsn, ob.hlc, ob.type, junk, sizeof junk, NULL, 0, &e), 0);
  ck_assert_int_eq(store_wcommit(t, store_applied_lsn(st), store_meta_hlc(st), &e), 0);
  ck_assert_int_eq(store_sync(st, &e), 0);
  store_close(st);
}

/* A queued entry whose payload does not parse (a damaged store file): the
 * prune keeps it, says so, and goes on; the store commit it runs in (of
 * writes already acknowledged) is not given up, the node stays writable. */
START_TEST(prune_keeps_a_malformed_entry_and_the_commit_goes_on) {
  sa_options o = opts(false);
  sa_client *c = open_node(&o);
  for (int i = 0; i < 3; i++)
    put(c, "hot", "v"); /* lsn 1..3 */
  put(c, "cold", "v");  /* lsn 4 */
  sa_client_close(c);
  damage_payload(&o, 1);

  o.outbox_max = 2;
  o.log = capture_log;
  logged[0] = '\0';
  c = open_node(&o);
  put(c, "hot", "w"); /* lsn 5: its commit prunes */
  sa_error e;
  sa_value v;
  ck_assert_msg(sa_client_get(c, "hot", &v, &e) == 0, "get after the prune: %s", e.message);
  ck_assert_str_eq((const char *)v.data, "w");
  sa_value_free(&v);
  ck_assert_int_eq(sa_client_sync_tick(c, NULL), 0);
  sa_sync_state s = state(c);
  ck_assert_uint_eq(s.pruned, 2); /* lsn 2 and 3, superseded; 1 is kept */
  ck_assert_uint_eq(s.outbox_size, 3);
  ck_assert_uint_eq(entry(c, 1).lsn, 1);
  ck_assert_msg(strstr(logged, "LSN 1") != NULL, "log: '%s'", logged);
  put(c, "still", "writable");
  sa_client_close(c);
}
END_TEST

/* A due entry whose payload does not parse is never handed to the
 * transport: the claim marks it failed at once, says so, and sends the
 * rest of the batch. */
/* Deletes the stored operation of lsn, leaving its outbox entry, straight
 * in the LMDB file while the node is closed: a damaged store file. */
static void drop_payload(const sa_options *o, uint64_t lsn) {
  (void)o;
  char path[TU_PATH_MAX];
  tu_path(path, dir, "node-o.mdb");
  MDB_env *env;
  MDB_txn *txn;
  MDB_dbi dbi;
  ck_assert_int_eq(mdb_env_create(&env), 0);
  ck_assert_int_eq(mdb_env_set_maxdbs(env, 8), 0);
  ck_assert_int_eq(mdb_env_open(env, path, MDB_NOSUBDIR, 0644), 0);
  ck_assert_int_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
  ck_assert_int_eq(mdb_dbi_open(txn, "ops", 0, &dbi), 0);
  unsigned char kb[8];
  for (int i = 0; i < 8; i++)
    kb[i] = (unsigned char)(lsn >> (56 - 8 * i)); /* the store's key: big-endian LSN */
  MDB_val k = {8, kb};
  ck_assert_int_eq(mdb_del(txn, dbi, &k, NULL), 0);
  ck_assert_int_eq(mdb_txn_commit(txn), 0);
  mdb_env_close(env);
}

/* A due entry whose stored operation does not parse, or is missing, is
 * failed at once and never handed over; the rest of the batch goes out. */
static void claim_fails_a_damaged_entry(void (*damage)(const sa_options *, uint64_t),
                                        const char *what) {
  sa_options o = opts(false);
  sa_client *c = open_node(&o);
  put(c, "a", "1"); /* lsn 1 */
  put(c, "b", "2"); /* lsn 2 */
  sa_client_close(c);
  damage(&o, 1);

  o = opts(true);
  o.log = capture_log;
  logged[0] = '\0';
  c = open_node(&o);
  ck_assert_int_eq(sa_client_sync_tick(c, NULL), 0);
  ck_assert_int_eq(fake.calls, 1);
  ck_assert_int_eq(fake.ops_seen, 1); /* lsn 2 alone */
  ck_assert_uint_eq(fake.last_lsn_seen, 2);
  sa_outbox_entry e1 = entry(c, 1);
  ck_assert_int_eq(e1.state, SA_OUTBOX_FAILED);
  ck_assert_uint_eq(e1.attempts, 0); /* never handed over */
  ck_assert_int_eq(entry(c, 2).state, SA_OUTBOX_ACKNOWLEDGED);
  sa_sync_state s = state(c);
  ck_assert_uint_eq(s.failed, 1);
  ck_assert_uint_eq(s.queued, 0);
  ck_assert_msg(strstr(logged, "malformed or missing payload (the last at LSN 1) marked failed"),
                "%s: log: '%s'", what, logged);
  now_ms += 3600 * 1000; /* long past any backoff: lsn 1 is not retried */
  ck_assert_int_eq(sa_client_sync_tick(c, NULL), 0);
  ck_assert_int_eq(fake.ops_seen, 1);
  put(c, "c", "3"); /* the node stays writable, the next work goes out */
  ck_assert_int_eq(sa_client_sync_tick(c, NULL), 0);
  ck_assert_int_eq(fake.ops_seen, 2);
  ck_assert_uint_eq(fake.last_lsn_seen, 3);
  sa_client_close(c);
}

START_TEST(claim_fails_a_malformed_entry_and_sends_the_rest) {
  claim_fails_a_damaged_entry(damage_payload, "malformed");
}
END_TEST

START_TEST(claim_fails_an_entry_without_its_operation) {
  claim_fails_a_damaged_entry(drop_payload, "missing");
}
END_TEST

START_TEST(stub_transport_says_it_is_a_stub_and_backs_off) {
  sa_options o = opts(false);
  o.enable_transport = true; /* no transport given: the stub */
  o.enable_discovery = true;
  sa_client *c = open_node(&o);
  put(c, "k", "v");
  sa_sync_state s = state(c);
  ck_assert(s.transport_enabled && s.transport_stub);
  ck_assert_str_eq(s.transport_kind, "stub");
  ck_assert(s.discovery_enabled && s.discovery_stub);
  ck_assert_str_eq(s.discovery_kind, "stub");
  ck_assert_uint_eq(s.peers, 0);
  ck_assert_int_eq(sa_client_sync_tick(c, NULL), 0);
  sa_outbox_entry e = entry(c, 1);
  ck_assert_int_eq(e.state, SA_OUTBOX_QUEUED);
  ck_assert_uint_eq(e.attempts, 1);
  ck_assert_uint_gt(e.at_ms, now_ms);
  sa_client_close(c);
}
END_TEST

/* transport_kind "disabled" with enable_transport: the disabled transport,
 * not the stub (open once resolved the kind after it had dropped it). */
START_TEST(transport_kind_disabled_is_honoured) {
  sa_options o = opts(false);
  o.enable_transport = true;
  o.transport_kind = "disabled";
  o.enable_discovery = true;
  o.discovery_kind = "disabled";
  sa_client *c = open_node(&o);
  put(c, "k", "v");
  sa_sync_state s = state(c);
  ck_assert(!s.transport_stub);
  ck_assert_str_eq(s.transport_kind, "disabled");
  ck_assert(!s.discovery_stub);
  ck_assert_str_eq(s.discovery_kind, "disabled");
  ck_assert_int_eq(sa_client_sync_tick(c, NULL), 0);
  ck_assert_uint_eq(entry(c, 1).attempts, 0); /* nothing handed to a transport */
  sa_client_close(c);
}
END_TEST

START_TEST(unknown_transport_kind_is_refused) {
  sa_options o = opts(false);
  o.enable_transport = true;
  o.transport_kind = "carrier-pigeon";
  sa_client *c;
  sa_error e;
  ck_assert_int_eq(sa_client_open(&c, &o, &e), SA_EINVAL);
  ck_assert_ptr_nonnull(strstr(e.message, "carrier-pigeon"));
}
END_TEST

/* HLC: strictly increasing across writes, restarts and clock steps back. */
START_TEST(hlc_monotonic_across_restart_and_clock_step_back) {
  sa_options o = opts(false);
  sa_client *c = open_node(&o);
  sa_write_result r1, r2, r3, r4;
  ck_assert_int_eq(sa_client_put_ex(c, "a", "1", 1, NULL, &r1, NULL), 0);
  ck_assert_int_eq(sa_client_put_ex(c, "a", "2", 1, NULL, &r2, NULL), 0);
  ck_assert_uint_gt(r2.hlc, r1.hlc);
  ck_assert_uint_eq(r1.hlc >> 16, now_ms); /* physical part is the clock */
  now_ms -= 60000;                         /* the wall clock steps back a minute */
  ck_assert_int_eq(sa_client_put_ex(c, "a", "3", 1, NULL, &r3, NULL), 0);
  ck_assert_uint_gt(r3.hlc, r2.hlc);
  sa_client_close(c);
  now_ms -= 60000;
  c = open_node(&o);
  ck_assert_int_eq(sa_client_put_ex(c, "b", "4", 1, NULL, &r4, NULL), 0);
  ck_assert_uint_gt(r4.hlc, r3.hlc);
  sa_value v;
  ck_assert_int_eq(sa_client_get(c, "a", &v, NULL), 0);
  ck_assert_uint_eq(v.hlc, r3.hlc);
  sa_value_free(&v);
  ck_assert_uint_eq(entry(c, 4).hlc, r4.hlc);
  sa_client_close(c);
}
END_TEST

/* The tick thread: runs on its own, wakes early on writes, stops cleanly. */
static int thread_acks;
static int count_send(void *ctx, const sa_sync_op *ops, size_t n, bool *acked) {
  (void)ctx;
  (void)ops;
  for (size_t i = 0; i < n; i++)
    acked[i] = true;
  __atomic_add_fetch(&thread_acks, (int)n, __ATOMIC_RELAXED);
  return 0;
}
static sa_transport count_transport = {.kind = "count", .send = count_send};

START_TEST(tick_thread_runs_wakes_on_write_and_stops) {
  sa_options o = sa_options_persistent("node-o", wal);
  o.enable_transport = true;
  o.transport = &count_transport;
  o.tick_interval_ms = 3600000; /* an hour: only tick_on_write can wake it */
  o.tick_on_write = true;
  sa_client *c = open_node(&o);
  put(c, "k", "v");
  for (int i = 0; i < 2000 && __atomic_load_n(&thread_acks, __ATOMIC_RELAXED) < 1; i++)
    usleep(5000); /* bounded: 10 s */
  ck_assert_int_eq(__atomic_load_n(&thread_acks, __ATOMIC_RELAXED), 1);
  sa_sync_state s = state(c); /* the tick settles after send returns: wait for it */
  for (int i = 0; i < 2000 && (s.acknowledged < 1 || s.ticks < 1); i++) {
    usleep(5000);
    s = state(c);
  }
  ck_assert_uint_eq(s.acknowledged, 1);
  ck_assert_uint_ge(s.ticks, 1);
  /* close must not wait for the hour-long interval */
  sa_client_close(c);
}
END_TEST

START_TEST(tick_thread_ticks_on_interval) {
  sa_options o = sa_options_persistent("node-o", wal);
  o.tick_interval_ms = 10;
  sa_client *c = open_node(&o);
  sa_sync_state s = state(c);
  for (int i = 0; i < 1000 && s.ticks < 3; i++) {
    usleep(5000);
    s = state(c);
  }
  ck_assert_uint_ge(s.ticks, 3);
  ck_assert_uint_gt(s.last_tick_ms, 0);
  sa_client_close(c);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("outbox");
  TCase *t = tcase_create("state machine");
  tcase_add_checked_fixture(t, setup, NULL);
  tcase_set_timeout(t, 30);
  tcase_add_test(t, disabled_transport_keeps_work_queued);
  tcase_add_test(t, fake_transport_fails_then_acks_with_backoff);
  tcase_add_test(t, failed_after_max_retries_and_backoff_is_capped);
  tcase_add_test(t, transport_error_counts_as_no_ack);
  tcase_add_test(t, batch_size_bounds_each_tick);
  tcase_add_test(t, restart_in_the_middle_requeues_in_flight_work);
  tcase_add_test(t, restart_counts_kept_and_replayed_entries);
  tcase_add_test(t, in_flight_expires_after_ack_timeout);
  tcase_add_test(t, overflow_prunes_acknowledged_then_superseded_and_keeps_accepting);
  tcase_add_test(t, tick_prunes_an_outbox_over_a_lowered_bound);
  tcase_add_test(t, prune_goes_around_the_outbox_from_where_it_stopped);
  tcase_add_test(t, prune_keeps_a_malformed_entry_and_the_commit_goes_on);
  tcase_add_test(t, claim_fails_a_malformed_entry_and_sends_the_rest);
  tcase_add_test(t, claim_fails_an_entry_without_its_operation);
  tcase_add_test(t, stub_transport_says_it_is_a_stub_and_backs_off);
  tcase_add_test(t, transport_kind_disabled_is_honoured);
  tcase_add_test(t, unknown_transport_kind_is_refused);
  tcase_add_test(t, hlc_monotonic_across_restart_and_clock_step_back);
  tcase_add_test(t, tick_thread_runs_wakes_on_write_and_stops);
  tcase_add_test(t, tick_thread_ticks_on_interval);
  suite_add_tcase(s, t);
  return s;
}

int main(void) {
  return tu_main(suite());
}
