/*
 * test_client.c -- the embedding API (softadastra.h) and its error contract.
 *
 * Behaviour: put/get/remove/size, byte values, versions and LSNs,
 * conditional writes, atomic batches, listing, memory-only nodes, status and
 * sync state, group commit under concurrent writers.
 *
 * Errors the durable-core issue says must be clear: empty WAL path, missing
 * data directory (the message says to mkdir it), unwritable paths, a WAL
 * locked by this or another process, a WAL or store of another node, bad
 * keys, values too large.  Injected I/O faults (disk full, EIO, failed
 * fdatasync) live in test_faults.c.
 *
 * Each test runs in its own process (CK_FORK) with a fresh directory.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test_util.h"

static char dir[TU_PATH_MAX]; /* this test's fresh directory */
static char wal[TU_PATH_MAX]; /* dir/node-1.wal */

/* Opening with o fails with SA_EINVAL, and the message names the option. */
static void expect_bad_option(const sa_options *o, const char *name) {
  sa_client *bad = NULL;
  sa_error e = {0};
  ck_assert_int_eq(sa_client_open(&bad, o, &e), SA_EINVAL);
  ck_assert_ptr_null(bad);
  ck_assert_msg(strstr(e.message, name) != NULL, "%s", e.message);
}
static sa_options opts; /* persistent node-1 at wal */

static void setup(void) {
  tu_mkdir(dir);
  opts = tu_options("node-1", dir, wal);
}

/* Opens with opts expecting failure `code`; returns the error. */
static sa_error open_fails(const sa_options *o, int code) {
  sa_client *c = (sa_client *)&c; /* poison: must become NULL */
  sa_error err = {0};
  int rc = sa_client_open(&c, o, &err);
  ck_assert_msg(rc == code, "open %s: expected %d (%s), got %d: %s",
                o->wal_path ? o->wal_path : "(null)", code, sa_strerror(code), rc, err.message);
  ck_assert_msg(c == NULL, "failed open must set *out to NULL");
  ck_assert_int_eq(err.code, rc);
  ck_assert_msg(err.message[0] != '\0', "failed open must explain itself");
  return err;
}

static uint64_t last_lsn(sa_client *c) {
  return tu_status(c).last_lsn;
}

static uint64_t outbox_size(sa_client *c) {
  sa_sync_state s;
  memset(&s, 0, sizeof s);
  sa_error err = {0};
  int rc = sa_client_sync_state(c, &s, &err);
  ck_assert_msg(rc == SA_OK, "sync_state: %d %s", rc, err.message);
  return s.outbox_size;
}

/* ---- asynchronous writes ------------------------------------------------ */

#define ASYNC_N 400

typedef struct async_log {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int calls;
  int rc[ASYNC_N + 8];
  sa_write_result res[ASYNC_N + 8];
  char msg[ASYNC_N + 8][SA_ERROR_MESSAGE_MAX];
} async_log;

static async_log alog = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, {0}, {{0}}, {{0}}};
static int async_slot[ASYNC_N + 8];

static void async_done(void *arg, int rc, const sa_write_result *res, const sa_error *err) {
  int i = *(int *)arg;
  pthread_mutex_lock(&alog.mu);
  alog.rc[i] = rc;
  if (res) alog.res[i] = *res;
  if (err) snprintf(alog.msg[i], sizeof alog.msg[i], "%s", err->message);
  alog.calls++;
  pthread_cond_broadcast(&alog.cv);
  pthread_mutex_unlock(&alog.mu);
}

static void async_wait(int calls) {
  pthread_mutex_lock(&alog.mu);
  while (alog.calls < calls)
    pthread_cond_wait(&alog.cv, &alog.mu);
  pthread_mutex_unlock(&alog.mu);
}

static char akeys[ASYNC_N][32], avals[ASYNC_N][32];

/* One thread queues ASYNC_N puts without waiting: each is settled once,
 * durable, and they share fdatasyncs far more than one writer thread can
 * with blocking calls. */
START_TEST(async_puts_from_one_thread) {
  sa_client *c = tu_open(&opts);
  sa_error err = {0};
  for (int i = 0; i < ASYNC_N; i++) {
    async_slot[i] = i;
    snprintf(akeys[i], sizeof akeys[i], "async/%03d", i);
    snprintf(avals[i], sizeof avals[i], "v%d", i);
    int rc = sa_client_put_async(c, akeys[i], avals[i], strlen(avals[i]), NULL, async_done,
                                 &async_slot[i], &err);
    ck_assert_msg(rc == 0, "put_async %d: %d %s", i, rc, err.message);
  }
  async_wait(ASYNC_N);
  ck_assert_int_eq(alog.calls, ASYNC_N); /* exactly once each */
  uint64_t prev = 0;
  for (int i = 0; i < ASYNC_N; i++) {
    ck_assert_msg(alog.rc[i] == 0, "put %d: %d %s", i, alog.rc[i], alog.msg[i]);
    ck_assert(alog.res[i].durable);
    ck_assert_uint_eq(alog.res[i].version, 1);
    ck_assert_msg(alog.res[i].lsn > prev, "LSNs follow the queue order");
    prev = alog.res[i].lsn;
  }
  sa_stats st;
  ck_assert_int_eq(sa_client_stats(c, &st, NULL), 0);
  ck_assert_uint_eq(st.group_ops, ASYNC_N);
  ck_assert_msg(st.groups < ASYNC_N / 4, "%llu groups for %d queued puts: no group commit",
                (unsigned long long)st.groups, ASYNC_N);
  sa_client_close(c);
  c = tu_open(&opts);
  for (int i = 0; i < ASYNC_N; i += 13)
    tu_expect_str(c, akeys[i], avals[i]);
  ck_assert_uint_eq(sa_client_size(c), ASYNC_N);
  sa_client_close(c);
}
END_TEST

/* Errors: refused at once (cb never called) or settled through cb with the
 * same code and message as the blocking call. */
START_TEST(async_errors) {
  sa_client *c = tu_open(&opts);
  tu_put(c, "here", "1");
  sa_error err = {0};
  for (int i = 0; i < 8; i++)
    async_slot[i] = i;
  ck_assert_int_eq(sa_client_put_async(c, "", "x", 1, NULL, async_done, &async_slot[0], &err),
                   SA_EKEY);
  ck_assert_int_eq(sa_client_put_async(c, "k", "x", 1, NULL, NULL, NULL, &err), SA_EINVAL);
  ck_assert(tu_contains(err.message, "callback"));
  ck_assert_int_eq(sa_client_put_async(NULL, "k", "x", 1, NULL, async_done, &async_slot[0], NULL),
                   SA_EINVAL);
  sa_write_opts absent = {.cond = SA_COND_ABSENT};
  ck_assert_int_eq(sa_client_remove_async(c, "k", &absent, async_done, &async_slot[0], &err),
                   SA_EINVAL);
  ck_assert_int_eq(alog.calls, 0);

  ck_assert_int_eq(
      sa_client_put_async(c, "here", "2", 1, &absent, async_done, &async_slot[1], &err), 0);
  ck_assert_int_eq(sa_client_remove_async(c, "missing", NULL, async_done, &async_slot[2], &err), 0);
  sa_write_opts v1 = {.cond = SA_COND_VERSION, .version = 1};
  ck_assert_int_eq(sa_client_remove_async(c, "here", &v1, async_done, &async_slot[3], &err), 0);
  async_wait(3);
  ck_assert_int_eq(alog.rc[1], SA_ECONFLICT);
  ck_assert(tu_contains(alog.msg[1], "already exists"));
  ck_assert_int_eq(alog.rc[2], SA_ENOTFOUND);
  ck_assert(tu_contains(alog.msg[2], "missing"));
  ck_assert_int_eq(alog.rc[3], 0);
  ck_assert(alog.res[3].durable);
  tu_expect_absent(c, "here");
  sa_client_close(c);
}
END_TEST

/* Conditions are checked against the state the groups still in the
 * pipeline will leave: a chain of compare-and-set puts on one key, queued
 * without waiting, each expecting the version the one before it makes. */
START_TEST(async_cas_chain_across_groups) {
  sa_client *c = tu_open(&opts);
  tu_put(c, "chain", "0"); /* version 1 */
  sa_error err = {0};
  for (int i = 0; i < ASYNC_N; i++) {
    async_slot[i] = i;
    snprintf(avals[i], sizeof avals[i], "%d", i + 1);
    sa_write_opts wo = {.cond = SA_COND_VERSION, .version = (uint64_t)i + 1};
    ck_assert_int_eq(sa_client_put_async(c, "chain", avals[i], strlen(avals[i]), &wo, async_done,
                                         &async_slot[i], &err),
                     0);
    if (i % 3 == 0) usleep(100); /* groups form behind one another */
  }
  async_wait(ASYNC_N);
  for (int i = 0; i < ASYNC_N; i++) {
    ck_assert_msg(alog.rc[i] == 0, "CAS %d: %d %s", i, alog.rc[i], alog.msg[i]);
    ck_assert_uint_eq(alog.res[i].version, (uint64_t)i + 2);
  }
  sa_stats st;
  ck_assert_int_eq(sa_client_stats(c, &st, NULL), 0);
  ck_assert_msg(st.groups > 2, "only %llu groups: the chain never crossed the pipeline",
                (unsigned long long)st.groups);
  /* A remove conditioned on the last version, then a create-only put. */
  sa_write_opts last = {.cond = SA_COND_VERSION, .version = ASYNC_N + 1};
  ck_assert_int_eq(sa_client_remove_ex(c, "chain", &last, NULL, &err), 0);
  sa_write_opts absent = {.cond = SA_COND_ABSENT};
  sa_write_result res;
  ck_assert_int_eq(sa_client_put_ex(c, "chain", "new", 3, &absent, &res, &err), 0);
  ck_assert_uint_eq(res.version, 1);
  sa_client_close(c);
}
END_TEST

/* sa_client_close settles every queued write before it returns, and each is
 * in the WAL. */
START_TEST(async_close_waits) {
  opts.tick_on_write = true; /* the committer wakes the tick thread while close stops it */
  sa_client *c = tu_open(&opts);
  sa_error err = {0};
  for (int i = 0; i < ASYNC_N; i++) {
    async_slot[i] = i;
    snprintf(akeys[i], sizeof akeys[i], "c/%03d", i);
    ck_assert_int_eq(
        sa_client_put_async(c, akeys[i], "v", 1, NULL, async_done, &async_slot[i], &err), 0);
  }
  sa_client_close(c);
  ck_assert_int_eq(alog.calls, ASYNC_N);
  c = tu_open(&opts);
  ck_assert_uint_eq(sa_client_size(c), ASYNC_N);
  sa_client_close(c);
}
END_TEST

/* ---- options and codes -------------------------------------------------- */

START_TEST(options_defaults) {
  sa_options o = sa_options_persistent("node-persistent", "data/node-persistent.wal");
  ck_assert_str_eq(o.node_id, "node-persistent");
  ck_assert_str_eq(o.wal_path, "data/node-persistent.wal");
  ck_assert_ptr_null(o.store_path);
  ck_assert(o.persistent);
  ck_assert(o.auto_flush);
  ck_assert(!o.enable_transport);
  ck_assert(!o.enable_discovery);
  ck_assert_uint_eq(o.max_value_bytes, SA_DEFAULT_MAX_VALUE_BYTES);
  ck_assert_uint_eq(o.max_batch_bytes, SA_DEFAULT_MAX_BATCH_BYTES);
  ck_assert_uint_eq(o.wal_max_bytes, SA_DEFAULT_WAL_MAX_BYTES);
  ck_assert_uint_eq(o.store_max_bytes, SA_DEFAULT_STORE_MAX_BYTES);
  ck_assert_uint_eq(o.flush_interval_ms, SA_DEFAULT_FLUSH_INTERVAL_MS);
  ck_assert_uint_eq(o.tick_interval_ms, SA_DEFAULT_TICK_INTERVAL_MS);
  ck_assert_uint_eq(o.store_sync_interval_ms, SA_DEFAULT_STORE_SYNC_INTERVAL_MS);
  ck_assert_uint_eq(o.store_writeback_ms, SA_DEFAULT_STORE_WRITEBACK_MS);
  ck_assert_uint_eq(o.store_commit_ms, SA_DEFAULT_STORE_COMMIT_MS);
  ck_assert_uint_eq(o.store_commit_busy_ms, SA_DEFAULT_STORE_COMMIT_BUSY_MS);
  ck_assert_uint_eq(o.store_commit_sync_ms, SA_DEFAULT_STORE_COMMIT_SYNC_MS);

  /* The sync-point period is checked at open, with its name in the error. */
  o.store_sync_interval_ms = 5;
  expect_bad_option(&o, "store_sync_interval_ms");

  sa_options m = sa_options_memory("mem-1");
  ck_assert_str_eq(m.node_id, "mem-1");
  ck_assert(!m.persistent);
  ck_assert(!m.enable_transport);
  ck_assert(!m.enable_discovery);
  ck_assert_uint_eq(m.max_value_bytes, SA_DEFAULT_MAX_VALUE_BYTES);
}
END_TEST

START_TEST(strerror_every_code) {
  const char *seen[32] = {0};
  for (int code = SA_OK; code >= SA_EINTERNAL; code--) {
    const char *s = sa_strerror(code);
    ck_assert_msg(s != NULL && s[0] != '\0', "sa_strerror(%d) is empty", code);
    for (int prev = 0; prev < -code; prev++)
      ck_assert_msg(strcmp(seen[prev], s) != 0, "codes %d and %d share \"%s\"", -prev, code, s);
    seen[-code] = s;
  }
  ck_assert_ptr_nonnull(sa_strerror(-999));
  ck_assert_ptr_nonnull(sa_strerror(42));
  ck_assert_str_eq(sa_version(), SA_VERSION_STRING);
}
END_TEST

/* ---- basic operations --------------------------------------------------- */

START_TEST(put_get_remove_size) {
  sa_client *c = tu_open(&opts);
  ck_assert_uint_eq(sa_client_size(c), 0);
  tu_expect_absent(c, "settings/theme");

  tu_put(c, "settings/theme", "dark");
  tu_put(c, "settings/lang", "en");
  ck_assert_uint_eq(sa_client_size(c), 2);
  tu_expect_str(c, "settings/theme", "dark");
  tu_expect_str(c, "settings/lang", "en");

  tu_put(c, "settings/theme", "light");
  ck_assert_uint_eq(sa_client_size(c), 2);
  tu_expect_str(c, "settings/theme", "light");

  sa_error err = {0};
  ck_assert_int_eq(sa_client_remove(c, "settings/theme", &err), SA_OK);
  ck_assert_uint_eq(sa_client_size(c), 1);
  tu_expect_absent(c, "settings/theme");

  uint64_t before = last_lsn(c);
  memset(&err, 0, sizeof err);
  ck_assert_int_eq(sa_client_remove(c, "settings/theme", &err), SA_ENOTFOUND);
  ck_assert_int_eq(err.code, SA_ENOTFOUND);
  ck_assert_msg(strstr(err.message, "settings/theme") != NULL, "message names the key: %s",
                err.message);
  ck_assert_uint_eq(last_lsn(c), before); /* nothing logged */
  ck_assert_uint_eq(tu_status(c).size, sa_client_size(c));
  sa_client_close(c);

  c = tu_open(&opts);
  ck_assert_uint_eq(sa_client_size(c), 1);
  tu_expect_absent(c, "settings/theme");
  tu_expect_str(c, "settings/lang", "en");
  sa_client_close(c);
  sa_client_close(NULL); /* no-op */
}
END_TEST

START_TEST(byte_values) {
  static const char nuls[] = {'a', 0, 'b', 0, 0, 'c'};
  unsigned char all[256];
  for (int i = 0; i < 256; i++)
    all[i] = (unsigned char)i;
  size_t big_len = SA_DEFAULT_MAX_VALUE_BYTES;
  unsigned char *big = malloc(big_len);
  ck_assert_ptr_nonnull(big);
  for (size_t i = 0; i < big_len; i++)
    big[i] = (unsigned char)(i * 31 + 7);

  sa_client *c = tu_open(&opts);
  tu_put_bytes(c, "nuls", nuls, sizeof nuls);
  tu_put_bytes(c, "empty", NULL, 0);
  tu_put(c, "empty-str", "");
  tu_put_bytes(c, "all", all, sizeof all);
  tu_put_bytes(c, "big", big, big_len); /* exactly the limit is accepted */
  for (int pass = 0; pass < 2; pass++) {
    tu_expect(c, "nuls", nuls, sizeof nuls);
    tu_expect(c, "empty", "", 0);
    tu_expect(c, "empty-str", "", 0);
    tu_expect(c, "all", all, sizeof all);
    tu_expect(c, "big", big, big_len);
    ck_assert_uint_eq(sa_client_size(c), 5);
    sa_client_close(c);
    c = tu_open(&opts);
  }
  sa_client_close(c);
  free(big);
  sa_value_free(NULL); /* no-op */
}
END_TEST

/* sa_client_get_with sees what sa_client_get copies out, in place. */
typedef struct get_seen {
  int calls;
  sa_value v; /* copied out of the callback */
} get_seen;

static void seen_fn(void *arg, const sa_value *v) {
  get_seen *s = arg;
  s->calls++;
  s->v = *v;
  s->v.data = malloc(v->len + 1);
  ck_assert_ptr_nonnull(s->v.data);
  memcpy(s->v.data, v->data, v->len);
  s->v.data[v->len] = 0;
}

START_TEST(get_with_reads_in_place) {
  static const char nuls[] = {'a', 0, 'b', 0, 0, 'c'};
  sa_client *c = tu_open(&opts);
  tu_put_bytes(c, "nuls", nuls, sizeof nuls);
  tu_put_bytes(c, "empty", NULL, 0);
  tu_put(c, "k", "one");
  tu_put(c, "k", "two");
  char longkey[SA_KEY_MAX + 1];
  memset(longkey, 'L', SA_KEY_MAX);
  longkey[SA_KEY_MAX] = 0;
  tu_put(c, longkey, "long");
  const char *keys[] = {"nuls", "empty", "k", longkey};
  for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
    sa_value want;
    sa_error err = {0};
    ck_assert_int_eq(sa_client_get(c, keys[i], &want, &err), 0);
    get_seen s = {0};
    ck_assert_int_eq(sa_client_get_with(c, keys[i], seen_fn, &s, &err), 0);
    ck_assert_int_eq(s.calls, 1);
    ck_assert_uint_eq(s.v.len, want.len);
    ck_assert_mem_eq(s.v.data, want.data, want.len);
    ck_assert_uint_eq(s.v.version, want.version);
    ck_assert_uint_eq(s.v.lsn, want.lsn);
    ck_assert_uint_eq(s.v.hlc, want.hlc);
    sa_value_free(&want);
    free(s.v.data);
  }
  get_seen s = {0};
  sa_error err = {0};
  ck_assert_int_eq(sa_client_get_with(c, "absent", seen_fn, &s, &err), SA_ENOTFOUND);
  ck_assert_ptr_nonnull(strstr(err.message, "absent"));
  ck_assert_int_eq(sa_client_get_with(c, "", seen_fn, &s, NULL), SA_EKEY);
  ck_assert_int_eq(sa_client_get_with(c, NULL, seen_fn, &s, NULL), SA_EKEY);
  ck_assert_int_eq(sa_client_get_with(c, "k", NULL, &s, NULL), SA_EINVAL);
  ck_assert_int_eq(sa_client_get_with(NULL, "k", seen_fn, &s, NULL), SA_EINVAL);
  ck_assert_int_eq(s.calls, 0);
  sa_client_close(c);
}
END_TEST

START_TEST(versions_and_lsns) {
  sa_client *c = tu_open(&opts);
  sa_write_result r1 = {0}, r2 = {0}, r3 = {0}, rd = {0}, r4 = {0};
  sa_error err = {0};
  ck_assert_int_eq(sa_client_put_ex(c, "k", "a", 1, NULL, &r1, &err), SA_OK);
  ck_assert_uint_eq(r1.version, 1);
  ck_assert(r1.durable);
  ck_assert_uint_gt(r1.lsn, 0);
  ck_assert_int_eq(sa_client_put_ex(c, "k", "bb", 2, NULL, &r2, &err), SA_OK);
  ck_assert_uint_eq(r2.version, 2);
  ck_assert_uint_gt(r2.lsn, r1.lsn);
  ck_assert_uint_ge(r2.hlc, r1.hlc);
  ck_assert_int_eq(sa_client_put_ex(c, "k", "ccc", 3, NULL, &r3, &err), SA_OK);
  ck_assert_uint_eq(r3.version, 3);

  sa_value v = {0};
  ck_assert_int_eq(sa_client_get(c, "k", &v, &err), SA_OK);
  ck_assert_uint_eq(v.version, 3);
  ck_assert_uint_eq(v.lsn, r3.lsn);
  ck_assert_uint_eq(v.hlc, r3.hlc);
  ck_assert_uint_eq(v.len, 3);
  sa_value_free(&v);
  ck_assert_ptr_null(v.data);
  ck_assert_uint_eq(v.len, 0);

  ck_assert_int_eq(sa_client_remove_ex(c, "k", NULL, &rd, &err), SA_OK);
  ck_assert_uint_gt(rd.lsn, r3.lsn);
  ck_assert_uint_eq(rd.version, 0);
  ck_assert_int_eq(sa_client_put_ex(c, "k", "d", 1, NULL, &r4, &err), SA_OK);
  ck_assert_uint_eq(r4.version, 1); /* restarts after a remove */
  ck_assert_uint_gt(r4.lsn, rd.lsn);
  ck_assert_uint_eq(last_lsn(c), r4.lsn);
  sa_client_close(c);

  /* Versions and LSNs continue across a restart. */
  c = tu_open(&opts);
  ck_assert_int_eq(sa_client_get(c, "k", &v, &err), SA_OK);
  ck_assert_uint_eq(v.version, 1);
  ck_assert_uint_eq(v.lsn, r4.lsn);
  sa_value_free(&v);
  sa_write_result r5 = {0};
  ck_assert_int_eq(sa_client_put_ex(c, "k", "e", 1, NULL, &r5, &err), SA_OK);
  ck_assert_uint_eq(r5.version, 2);
  ck_assert_uint_gt(r5.lsn, r4.lsn);
  ck_assert_uint_ge(r5.hlc, r4.hlc);
  sa_client_close(c);
}
END_TEST

START_TEST(auto_flush_off_reports_not_durable) {
  opts.auto_flush = false;
  opts.flush_interval_ms = 50;
  sa_client *c = tu_open(&opts);
  sa_write_result r = {0};
  sa_error err = {0};
  ck_assert_int_eq(sa_client_put_ex(c, "k", "v", 1, NULL, &r, &err), SA_OK);
  ck_assert(!r.durable);
  ck_assert(!tu_status(c).durable);
  ck_assert_int_eq(sa_client_flush(c, &err), SA_OK);
  sa_client_close(c);

  opts.auto_flush = true;
  c = tu_open(&opts);
  tu_expect_str(c, "k", "v");
  ck_assert(tu_status(c).durable);
  sa_client_close(c);
}
END_TEST

/* ---- conditional writes ------------------------------------------------- */

START_TEST(compare_and_set) {
  sa_client *c = tu_open(&opts);
  sa_error err = {0};
  sa_write_result r = {0};
  sa_write_opts absent = {SA_COND_ABSENT, 0};

  ck_assert_int_eq(sa_client_put_ex(c, "doc", "v1", 2, &absent, &r, &err), SA_OK);
  ck_assert_uint_eq(r.version, 1);

  uint64_t lsn = last_lsn(c);
  uint64_t outbox = outbox_size(c);
  uint64_t wal_bytes = tu_status(c).wal_bytes; /* the records' end */
  long long file_bytes = tu_size(wal);

  memset(&err, 0, sizeof err);
  ck_assert_int_eq(sa_client_put_ex(c, "doc", "v2", 2, &absent, &r, &err), SA_ECONFLICT);
  ck_assert_int_eq(err.code, SA_ECONFLICT);
  ck_assert_msg(strstr(err.message, "doc") != NULL, "message names the key: %s", err.message);

  sa_write_opts stale = {SA_COND_VERSION, 7};
  ck_assert_int_eq(sa_client_put_ex(c, "doc", "v2", 2, &stale, &r, &err), SA_ECONFLICT);
  sa_write_opts on_absent = {SA_COND_VERSION, 1};
  ck_assert_int_eq(sa_client_put_ex(c, "nothing", "x", 1, &on_absent, &r, &err), SA_ECONFLICT);
  tu_expect_absent(c, "nothing");
  ck_assert_int_eq(sa_client_remove_ex(c, "doc", &stale, &r, &err), SA_ECONFLICT);
  tu_expect_str(c, "doc", "v1");

  /* Failed conditions log nothing. */
  ck_assert_uint_eq(last_lsn(c), lsn);
  ck_assert_uint_eq(outbox_size(c), outbox);
  ck_assert_uint_eq(tu_status(c).wal_bytes, wal_bytes);
  ck_assert_int_eq(tu_size(wal), file_bytes);

  sa_write_opts match = {SA_COND_VERSION, 1};
  ck_assert_int_eq(sa_client_put_ex(c, "doc", "v2", 2, &match, &r, &err), SA_OK);
  ck_assert_uint_eq(r.version, 2);
  tu_expect_str(c, "doc", "v2");
  /* The same condition is now stale. */
  ck_assert_int_eq(sa_client_put_ex(c, "doc", "v3", 2, &match, &r, &err), SA_ECONFLICT);
  sa_write_opts match2 = {SA_COND_VERSION, 2};
  ck_assert_int_eq(sa_client_remove_ex(c, "doc", &match2, &r, &err), SA_OK);
  tu_expect_absent(c, "doc");
  ck_assert_int_eq(sa_client_put_ex(c, "doc", "v1", 2, &absent, &r, &err), SA_OK);
  sa_client_close(c);
}
END_TEST

/* ---- batches ------------------------------------------------------------ */

START_TEST(batch_is_one_record) {
  sa_client *c = tu_open(&opts);
  tu_put(c, "old", "1");
  uint64_t lsn = last_lsn(c);
  uint64_t outbox = outbox_size(c);
  sa_batch_op ops[] = {
      {SA_OP_PUT, "x", "10", 2},
      {SA_OP_PUT, "y", "\0\0", 2},
      {SA_OP_DELETE, "old", NULL, 0},
      {SA_OP_DELETE, "never-there", NULL, 0}, /* absent inside a batch: fine */
  };
  sa_write_result r = {0};
  sa_error err = {0};
  int rc = sa_client_batch(c, ops, 4, &r, &err);
  ck_assert_msg(rc == SA_OK, "batch: %d %s", rc, err.message);
  ck_assert_uint_eq(r.lsn, lsn + 1); /* one WAL record */
  ck_assert_uint_eq(last_lsn(c), lsn + 1);
  ck_assert(r.durable);
  ck_assert_uint_gt(outbox_size(c), outbox);
  tu_expect_str(c, "x", "10");
  tu_expect(c, "y", "\0\0", 2);
  tu_expect_absent(c, "old");
  ck_assert_uint_eq(sa_client_size(c), 2);

  sa_value v = {0};
  ck_assert_int_eq(sa_client_get(c, "x", &v, &err), SA_OK);
  ck_assert_uint_eq(v.lsn, r.lsn);
  ck_assert_uint_eq(v.version, 1);
  sa_value_free(&v);
  sa_client_close(c);

  c = tu_open(&opts);
  tu_expect_str(c, "x", "10");
  tu_expect(c, "y", "\0\0", 2);
  tu_expect_absent(c, "old");
  sa_client_close(c);
}
END_TEST

static void batch_rejected(sa_client *c, const sa_batch_op *ops, size_t n, int code,
                           const char *what) {
  uint64_t lsn = last_lsn(c);
  uint64_t outbox = outbox_size(c);
  uint64_t wal_bytes = tu_status(c).wal_bytes; /* the records' end */
  long long file_bytes = tu_size(wal);
  sa_error err = {0};
  int rc = sa_client_batch(c, ops, n, NULL, &err);
  ck_assert_msg(rc == code, "%s: expected %d, got %d %s", what, code, rc, err.message);
  ck_assert_int_eq(err.code, code);
  ck_assert_msg(err.message[0] != '\0', "%s: no message", what);
  ck_assert_msg(last_lsn(c) == lsn, "%s: logged something", what);
  ck_assert_msg(outbox_size(c) == outbox, "%s: outbox grew", what);
  ck_assert_msg(tu_status(c).wal_bytes == wal_bytes, "%s: WAL grew", what);
  ck_assert_msg(tu_size(wal) == file_bytes, "%s: WAL file changed size", what);
  tu_expect_str(c, "keep", "1");
  tu_expect_absent(c, "b1");
  tu_expect_absent(c, "b2");
}

START_TEST(batch_rejected_logs_nothing) {
  opts.max_value_bytes = 100;
  opts.max_batch_bytes = 1000;
  sa_client *c = tu_open(&opts);
  tu_put(c, "keep", "1");
  char big[600];
  memset(big, 'v', sizeof big);

  sa_batch_op bad_key_last[] = {
      {SA_OP_PUT, "b1", "1", 1}, {SA_OP_DELETE, "keep", NULL, 0}, {SA_OP_PUT, "", "x", 1}};
  batch_rejected(c, bad_key_last, 3, SA_EKEY, "empty key in a batch");
  sa_batch_op ctrl_key[] = {{SA_OP_PUT, "b1", "1", 1}, {SA_OP_PUT, "b2\n", "2", 1}};
  batch_rejected(c, ctrl_key, 2, SA_EKEY, "control char in a batch key");
  sa_batch_op bad_utf8[] = {{SA_OP_DELETE, "keep", NULL, 0}, {SA_OP_PUT, "b\xff", "2", 1}};
  batch_rejected(c, bad_utf8, 2, SA_EKEY, "invalid UTF-8 in a batch key");
  sa_batch_op value_too_big[] = {{SA_OP_PUT, "b1", "1", 1}, {SA_OP_PUT, "b2", big, 101}};
  batch_rejected(c, value_too_big, 2, SA_ETOOBIG, "value over max_value_bytes in a batch");
  sa_batch_op batch_too_big[] = {
      {SA_OP_PUT, "b1", big, 100},  {SA_OP_PUT, "b2", big, 100}, {SA_OP_PUT, "b3", big, 100},
      {SA_OP_PUT, "b4", big, 100},  {SA_OP_PUT, "b5", big, 100}, {SA_OP_PUT, "b6", big, 100},
      {SA_OP_PUT, "b7", big, 100},  {SA_OP_PUT, "b8", big, 100}, {SA_OP_PUT, "b9", big, 100},
      {SA_OP_PUT, "b10", big, 100}, {SA_OP_PUT, "b11", big, 100}};
  batch_rejected(c, batch_too_big, 11, SA_ETOOBIG, "batch over max_batch_bytes");
  sa_batch_op bad_op[] = {{SA_OP_PUT, "b1", "1", 1}, {99, "b2", "2", 1}};
  batch_rejected(c, bad_op, 2, SA_EINVAL, "unknown op in a batch");
  sa_batch_op one[] = {{SA_OP_PUT, "b1", "1", 1}};
  batch_rejected(c, one, 0, SA_EINVAL, "empty batch");
  batch_rejected(c, NULL, 1, SA_EINVAL, "NULL ops");
  sa_client_close(c);

  /* Nothing of it comes back after a restart either. */
  c = tu_open(&opts);
  tu_expect_str(c, "keep", "1");
  tu_expect_absent(c, "b1");
  ck_assert_uint_eq(sa_client_size(c), 1);
  sa_client_close(c);
}
END_TEST

/* ---- listing ------------------------------------------------------------ */

static void expect_page(sa_client *c, const char *prefix, const char *after, size_t limit,
                        const char *const *keys, size_t count, bool more) {
  sa_list l;
  memset(&l, 0xAB, sizeof l);
  sa_error err = {0};
  int rc = sa_client_list(c, prefix, after, limit, true, &l, &err);
  ck_assert_msg(rc == SA_OK, "list %s after %s: %d %s", prefix, after, rc, err.message);
  ck_assert_msg(l.count == count, "list prefix=%s after=%s limit=%zu: %zu items, expected %zu",
                prefix, after, limit, l.count, count);
  ck_assert_msg(l.more == more, "list prefix=%s after=%s limit=%zu: more=%d", prefix, after, limit,
                (int)l.more);
  for (size_t i = 0; i < count; i++) {
    ck_assert_str_eq(l.items[i].key, keys[i]);
    /* each value is "v:" + key */
    ck_assert_uint_eq(l.items[i].len, strlen(keys[i]) + 2);
    ck_assert_ptr_nonnull(l.items[i].data);
    ck_assert_mem_eq(l.items[i].data, "v:", 2);
    ck_assert_str_eq(l.items[i].data + 2, keys[i]);
    ck_assert_uint_eq(l.items[i].version, 1);
    ck_assert_uint_gt(l.items[i].lsn, 0);
  }
  sa_list_free(&l);
}

START_TEST(list_prefix_after_limit) {
  sa_client *c = tu_open(&opts);
  static const char *const keys[] = {
      "a",
      "a/01",
      "a/02",
      "a/03",
      "a/04",
      "a/05",
      "a/06",
      "a/07",
      "a/08",
      "a/09",
      "a/10",
      "a/11",
      "a/12",
      "a/13",
      "a/14",
      "a/15",
      "a/16",
      "a/17",
      "a/18",
      "a/19",
      "a/20",
      "a/21",
      "a/22",
      "a/23",
      "a/24",
      "a/25",
      "a0",
      "b/1",
      "b/2",
      "z",
      "\xc3\xa9t\xc3\xa9",
  };
  enum { NKEYS = sizeof keys / sizeof keys[0] };
  /* Insert in a scrambled order; listing must come back sorted bytewise. */
  for (size_t i = 0; i < NKEYS; i++) {
    const char *k = keys[(i * 7) % NKEYS];
    char v[64];
    snprintf(v, sizeof v, "v:%s", k);
    tu_put(c, k, v);
  }
  ck_assert_uint_eq(sa_client_size(c), NKEYS);

  expect_page(c, NULL, NULL, 100, keys, NKEYS, false);
  expect_page(c, "", "", 100, keys, NKEYS, false);
  expect_page(c, "a/", NULL, 10, keys + 1, 10, true);
  expect_page(c, "a/", "a/10", 10, keys + 11, 10, true);
  expect_page(c, "a/", "a/20", 10, keys + 21, 5, false);
  expect_page(c, "a/", "a/25", 10, NULL, 0, false);
  expect_page(c, "a/", "a/055", 2, keys + 6, 2, true); /* after a key that does not exist */
  expect_page(c, "b/", NULL, 2, keys + 27, 2, false);  /* limit == count: no more */
  expect_page(c, "b/", NULL, 1, keys + 27, 1, true);
  expect_page(c, "a", "a/25", 100, keys + 26, 1, false);
  expect_page(c, "zz", NULL, 10, NULL, 0, false);
  expect_page(c, NULL, "z", 10, keys + 30, 1, false); /* UTF-8 sorts after ASCII */

  /* Without values: len is set, data is NULL. */
  sa_list l;
  sa_error err = {0};
  ck_assert_int_eq(sa_client_list(c, "b/", NULL, 10, false, &l, &err), SA_OK);
  ck_assert_uint_eq(l.count, 2);
  ck_assert_ptr_null(l.items[0].data);
  ck_assert_uint_eq(l.items[0].len, strlen("v:b/1"));
  sa_list_free(&l);

  /* Limits outside 1..10000 are refused. */
  ck_assert_int_eq(sa_client_list(c, NULL, NULL, 0, false, &l, &err), SA_EINVAL);
  ck_assert_int_eq(sa_client_list(c, NULL, NULL, 10001, false, &l, &err), SA_EINVAL);
  sa_client_close(c);
}
END_TEST

START_TEST(list_long_keys_sorted) {
  /* The documented order (softadastra.h, sa_list): bytewise, except among
   * keys longer than 480 bytes that share their first 480 bytes, which
   * follow one another in a stable order.  Paging with `after` walks that
   * same order and sees every key once. */
  enum { NK = 5 };
  static char k[NK][SA_KEY_MAX + 1];
  memset(k[0], 'p', 600), strcpy(k[0] + 600, "a");
  memset(k[1], 'p', 600), strcpy(k[1] + 600, "b");
  memset(k[2], 'p', 600), strcpy(k[2] + 600, "c");
  memset(k[3], 'p', 1023), strcpy(k[3] + 1023, "a");
  memset(k[4], 'p', 479), strcpy(k[4] + 479, "q"); /* differs at byte 479: after them */
  sa_client *c = tu_open(&opts);
  static const int order[NK] = {2, 4, 0, 3, 1}; /* insertion order */
  for (int i = 0; i < NK; i++) {
    char v[64];
    snprintf(v, sizeof v, "v%d", order[i]);
    tu_put(c, k[order[i]], v);
  }
  sa_list all, l;
  sa_error err = {0};
  ck_assert_int_eq(sa_client_list(c, "", NULL, 10, true, &all, &err), SA_OK);
  ck_assert_uint_eq(all.count, NK);
  ck_assert_str_eq(all.items[NK - 1].key, k[4]);
  int found[NK] = {0};
  for (size_t i = 0; i < NK; i++)
    for (int j = 0; j < NK; j++)
      if (strcmp(all.items[i].key, k[j]) == 0) {
        char v[64];
        snprintf(v, sizeof v, "v%d", j);
        ck_assert_str_eq(all.items[i].data, v);
        found[j]++;
      }
  for (int j = 0; j < NK; j++)
    ck_assert_int_eq(found[j], 1);

  const char *after = NULL;
  size_t seen = 0;
  for (int page = 0; page < 3; page++) {
    ck_assert_int_eq(sa_client_list(c, "", after, 2, true, &l, &err), SA_OK);
    for (size_t i = 0; i < l.count; i++, seen++)
      ck_assert_msg(seen < NK && strcmp(l.items[i].key, all.items[seen].key) == 0,
                    "page %d item %zu differs from the full listing", page, i);
    ck_assert_int_eq(l.more, page < 2);
    after = seen > 0 ? all.items[seen - 1].key : NULL;
    sa_list_free(&l);
  }
  ck_assert_uint_eq(seen, NK);

  /* A 600-byte prefix selects the four keys that have it. */
  char prefix[601];
  memset(prefix, 'p', 600);
  prefix[600] = 0;
  ck_assert_int_eq(sa_client_list(c, prefix, NULL, 10, false, &l, &err), SA_OK);
  ck_assert_uint_eq(l.count, 4);
  for (size_t i = 0; i < l.count; i++)
    ck_assert_str_eq(l.items[i].key, all.items[i].key);
  ck_assert(!l.more);
  sa_list_free(&l);
  sa_list_free(&all);
  sa_client_close(c);
}
END_TEST

START_TEST(long_keys_sharing_a_prefix) {
  /* Twenty keys of 600+ bytes that differ only after byte 500: each is its
   * own key for put, get, versions, CAS, remove, batch, and replay. */
  enum { NK = 20 };
  static char k[NK][SA_KEY_MAX + 1];
  for (int i = 0; i < NK; i++) {
    memset(k[i], 'x', 500);
    snprintf(k[i] + 500, sizeof k[i] - 500, "%02d%0*d", i, 100 + i, 7);
  }
  sa_client *c = tu_open(&opts);
  sa_error err = {0};
  for (int round = 1; round <= 2; round++)
    for (int i = 0; i < NK; i++) {
      char v[32];
      snprintf(v, sizeof v, "r%d-%d", round, i);
      sa_write_result r = {0};
      ck_assert_int_eq(sa_client_put_ex(c, k[i], v, strlen(v), NULL, &r, &err), SA_OK);
      ck_assert_uint_eq(r.version, (uint64_t)round);
    }
  ck_assert_uint_eq(sa_client_size(c), NK);
  sa_write_opts stale = {SA_COND_VERSION, 1}, cur = {SA_COND_VERSION, 2};
  ck_assert_int_eq(sa_client_put_ex(c, k[3], "cas", 3, &stale, NULL, &err), SA_ECONFLICT);
  ck_assert_int_eq(sa_client_put_ex(c, k[3], "cas", 3, &cur, NULL, &err), SA_OK);
  sa_write_opts absent = {SA_COND_ABSENT, 0};
  ck_assert_int_eq(sa_client_put_ex(c, k[4], "x", 1, &absent, NULL, &err), SA_ECONFLICT);
  for (int i = 1; i < NK; i += 2)
    ck_assert_int_eq(sa_client_remove(c, k[i], &err), SA_OK);
  ck_assert_int_eq(sa_client_remove(c, k[1], &err), SA_ENOTFOUND);
  sa_batch_op ops[] = {{SA_OP_PUT, k[1], "batch", 5}, {SA_OP_DELETE, k[2], NULL, 0}};
  ck_assert_int_eq(sa_client_batch(c, ops, 2, NULL, &err), SA_OK);

  char store[TU_PATH_MAX];
  snprintf(store, sizeof store, "%s", tu_status(c).store_path);
  for (int pass = 0; pass < 2; pass++) {
    for (int i = 0; i < NK; i++) {
      char v[32];
      snprintf(v, sizeof v, "r2-%d", i);
      if (i == 1)
        tu_expect_str(c, k[i], "batch");
      else if (i == 2 || i % 2 == 1)
        tu_expect_absent(c, k[i]);
      else if (i == 3)
        tu_expect_str(c, k[i], "cas");
      else
        tu_expect_str(c, k[i], v);
    }
    ck_assert_uint_eq(sa_client_size(c), NK / 2);
    sa_client_close(c);
    if (pass == 0) {
      /* Rebuild the store from the WAL alone. */
      char lock[TU_PATH_MAX + 8];
      ck_assert_int_eq(unlink(store), 0);
      snprintf(lock, sizeof lock, "%s-lock", store);
      unlink(lock);
    }
    c = tu_open(&opts);
  }
  sa_client_close(c);
}
END_TEST

/* ---- memory-only node --------------------------------------------------- */

START_TEST(memory_node) {
  sa_options m = sa_options_memory("mem-1");
  sa_client *c = tu_open(&m);
  sa_client *c2 = tu_open(&m); /* no WAL, nothing to lock: independent nodes */
  tu_put(c, "k", "v");
  tu_expect_str(c, "k", "v");
  tu_expect_absent(c2, "k");
  ck_assert_uint_eq(sa_client_size(c), 1);
  sa_status st = tu_status(c);
  ck_assert(!st.persistent);
  ck_assert_str_eq(st.node_id, "mem-1");
  ck_assert_ptr_nonnull(st.wal_path);
  ck_assert_str_eq(st.wal_path, "");
  sa_sync_state s;
  sa_error err = {0};
  ck_assert_int_eq(sa_client_sync_state(c, &s, &err), SA_OK);
  ck_assert_uint_eq(s.outbox_size, 1);
  sa_client_close(c);
  sa_client_close(c2);

  c = tu_open(&m);
  ck_assert_uint_eq(sa_client_size(c), 0); /* nothing survives a close */
  tu_expect_absent(c, "k");
  sa_client_close(c);
}
END_TEST

/* ---- status and sync state ---------------------------------------------- */

/* Between sync points the syncer starts the store's write-back every
 * store_writeback_ms while commits come in, and not at all when none do. */
START_TEST(store_writeback_kicks) {
  sa_options o = opts;
  o.store_sync_interval_ms = 60000; /* no sync point during the test */
  o.store_writeback_ms = 2;
  sa_client *c = tu_open(&o);
  sa_status st = tu_status(c);
  ck_assert_uint_eq(st.store_writebacks, 0);
  uint64_t syncs = st.store_syncs; /* open may take one */
  char key[16];
  for (int i = 0; i < 400 && st.store_writebacks == 0; i++) { /* bounded: ~4 s */
    snprintf(key, sizeof key, "k%d", i);
    tu_put(c, key, "v");
    tu_sleep_ms(10);
    st = tu_status(c);
  }
  ck_assert_uint_gt(st.store_writebacks, 0);
  /* The kick due after the last put comes; then, idle, no more. */
  uint64_t settled = tu_status(c).store_writebacks, prev = 0;
  for (int i = 0; i < 40 && settled != prev; i++) { /* bounded: ~2 s (valgrind) */
    prev = settled;
    tu_sleep_ms(50);
    settled = tu_status(c).store_writebacks;
  }
  tu_sleep_ms(150);
  st = tu_status(c);
  ck_assert_uint_eq(st.store_writebacks, settled);
  ck_assert_uint_eq(st.store_syncs, syncs);
  sa_client_close(c);

  /* Off: only sync points write the store back. */
  o.store_writeback_ms = SA_STORE_WRITEBACK_OFF;
  c = tu_open(&o);
  for (int i = 0; i < 20; i++) {
    snprintf(key, sizeof key, "o%d", i);
    tu_put(c, key, "v");
  }
  tu_sleep_ms(50);
  ck_assert_uint_eq(tu_status(c).store_writebacks, 0);
  sa_client_close(c);

  /* The range is checked at open, naming the option. */
  o.store_writeback_ms = 5000;
  expect_bad_option(&o, "store_writeback_ms");
}
END_TEST

START_TEST(status_fields) {
  sa_client *c = tu_open(&opts);
  sa_status st = tu_status(c);
  ck_assert_str_eq(st.node_id, "node-1");
  ck_assert(st.persistent);
  ck_assert(st.durable);
  ck_assert(!st.read_only);
  ck_assert_str_eq(st.wal_path, wal);
  char store[TU_PATH_MAX];
  tu_path(store, dir, "node-1.mdb"); /* default: .wal -> .mdb */
  ck_assert_str_eq(st.store_path, store);
  ck_assert(tu_exists(store));
  ck_assert_uint_eq(st.size, 0);
  ck_assert_uint_eq(st.recovery.torn_bytes, 0);
  ck_assert_str_eq(st.recovery.torn_path, "");
  ck_assert_uint_eq(st.recovery.records_replayed, 0);

  sa_write_result r = {0};
  sa_error err = {0};
  tu_put(c, "a", "1");
  tu_put(c, "b", "2");
  ck_assert_int_eq(sa_client_put_ex(c, "c", "3", 1, NULL, &r, &err), SA_OK);
  st = tu_status(c);
  ck_assert_uint_eq(st.size, 3);
  ck_assert_uint_eq(st.last_lsn, r.lsn);
  ck_assert_uint_eq(st.applied_lsn, r.lsn); /* acked means applied */
  /* wal_bytes is the end of the records (the logical size); the file is
   * longer: zero-filled free space (preallocation). */
  sa_wal_report rep;
  ck_assert_int_eq(sa_wal_scan(wal, NULL, NULL, &rep, NULL), SA_OK);
  ck_assert_int_eq(rep.state, SA_WAL_CLEAN);
  ck_assert_uint_eq(rep.records, 3);
  ck_assert_uint_eq(st.wal_bytes, rep.data_bytes);
  ck_assert_int_lt((long long)st.wal_bytes, tu_size(wal));
  ck_assert_uint_gt(st.wal_bytes, 0);
  /* The store reaches the disk at sync points (background, checkpoints). */
  ck_assert_uint_le(st.synced_lsn, st.applied_lsn);
  uint64_t syncs = st.store_syncs;
  ck_assert_int_eq(sa_client_checkpoint(c, &err), SA_OK);
  st = tu_status(c);
  ck_assert_uint_eq(st.synced_lsn, r.lsn);
  ck_assert_uint_gt(st.store_syncs, syncs);
  tu_put(c, "d", "4");
  st = tu_status(c);
  for (int i = 0; i < 200 && st.synced_lsn < st.applied_lsn; i++) { /* bounded: ~10 s */
    tu_sleep_ms(50);
    st = tu_status(c);
  }
  ck_assert_uint_eq(st.synced_lsn, st.applied_lsn);
  ck_assert_int_eq(sa_client_remove(c, "d", &err), SA_OK);
  sa_client_close(c);

  /* After a clean close the store is current: nothing to replay. */
  c = tu_open(&opts);
  st = tu_status(c);
  ck_assert(!st.recovery.store_rolled_back);
  ck_assert_uint_eq(st.synced_lsn, st.applied_lsn);
  ck_assert_uint_eq(st.recovery.records_replayed, 0);
  ck_assert_uint_eq(st.recovery.torn_bytes, 0);
  ck_assert_uint_eq(st.last_lsn, r.lsn + 2); /* d was put and removed */
  ck_assert_uint_eq(st.applied_lsn, r.lsn + 2);
  ck_assert_uint_eq(st.size, 3);
  sa_client_close(c);

  /* An explicit store path is used as given. */
  char custom[TU_PATH_MAX], wal2[TU_PATH_MAX];
  sa_options o2 = tu_options("node-2", dir, wal2);
  tu_path(custom, dir, "custom-store.mdb");
  o2.store_path = custom;
  c = tu_open(&o2);
  ck_assert_str_eq(tu_status(c).store_path, custom);
  ck_assert(tu_exists(custom));
  sa_client_close(c);
}
END_TEST

START_TEST(sync_state_outbox) {
  sa_client *c = tu_open(&opts);
  sa_sync_state s;
  sa_error err = {0};
  ck_assert_int_eq(sa_client_sync_state(c, &s, &err), SA_OK);
  ck_assert_uint_eq(s.outbox_size, 0);
  ck_assert(!s.transport_enabled);
  ck_assert(!s.discovery_enabled);
  ck_assert_uint_eq(s.peers, 0);

  char key[32];
  for (int i = 1; i <= 5; i++) {
    snprintf(key, sizeof key, "k%d", i);
    tu_put(c, key, "v");
    ck_assert_uint_eq(outbox_size(c), (uint64_t)i);
  }
  ck_assert_int_eq(sa_client_remove(c, "k1", &err), SA_OK);
  ck_assert_uint_eq(outbox_size(c), 6);
  sa_batch_op ops[] = {{SA_OP_PUT, "b1", "1", 1}, {SA_OP_PUT, "b2", "2", 1}};
  ck_assert_int_eq(sa_client_batch(c, ops, 2, NULL, &err), SA_OK);
  uint64_t after_batch = outbox_size(c);
  ck_assert_uint_gt(after_batch, 6);
  ck_assert_int_eq(sa_client_sync_state(c, &s, &err), SA_OK);
  ck_assert_uint_eq(s.last_lsn, last_lsn(c));
  ck_assert_uint_eq(s.queued + s.in_flight + s.acknowledged + s.failed, s.outbox_size);
  sa_client_close(c);

  /* Transport off: the work stays queued across a restart. */
  c = tu_open(&opts);
  ck_assert_uint_eq(outbox_size(c), after_batch);
  sa_client_close(c);
}
END_TEST

/* ---- concurrency: group commit ------------------------------------------ */

enum { WRITERS = 4, PER_WRITER = 150 };

typedef struct writer_arg {
  sa_client *c;
  int id;
  bool same_key;                   /* all writers hammer one key */
  int failures;                    /* puts that did not return SA_OK */
  sa_write_result res[PER_WRITER]; /* what each put reported */
} writer_arg;

static void *writer_main(void *p) {
  writer_arg *w = p;
  for (int i = 0; i < PER_WRITER; i++) {
    char key[32], val[32];
    if (w->same_key)
      snprintf(key, sizeof key, "shared");
    else
      snprintf(key, sizeof key, "w%d/%03d", w->id, i);
    snprintf(val, sizeof val, "%d:%d", w->id, i);
    if (sa_client_put_ex(w->c, key, val, strlen(val), NULL, &w->res[i], NULL) != SA_OK)
      w->failures++;
  }
  return NULL;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static void run_writers(sa_client *c, writer_arg *w, bool same_key) {
  pthread_t t[WRITERS];
  for (int i = 0; i < WRITERS; i++) {
    memset(&w[i], 0, sizeof w[i]);
    w[i].c = c;
    w[i].id = i;
    w[i].same_key = same_key;
    ck_assert_int_eq(pthread_create(&t[i], NULL, writer_main, &w[i]), 0);
  }
  for (int i = 0; i < WRITERS; i++) {
    pthread_join(t[i], NULL);
    ck_assert_int_eq(w[i].failures, 0);
  }
}

/* Every step-th value each run_writers writer put (distinct keys) reads back. */
static void expect_writer_values(sa_client *c, int step) {
  for (int i = 0; i < WRITERS; i++)
    for (int j = 0; j < PER_WRITER; j += step) {
      char key[32], val[32];
      snprintf(key, sizeof key, "w%d/%03d", i, j);
      snprintf(val, sizeof val, "%d:%d", i, j);
      tu_expect_str(c, key, val);
    }
}

START_TEST(concurrent_writers_share_fdatasync) {
  static writer_arg w[WRITERS];
  tu_fault_install(); /* counting only */
  sa_client *c = tu_open(&opts);
  long syncs_before = tu_fault_calls(TU_FDATASYNC);
  run_writers(c, w, false);
  long syncs = tu_fault_calls(TU_FDATASYNC) - syncs_before;
  uint64_t lsns[WRITERS * PER_WRITER];
  for (int i = 0; i < WRITERS; i++)
    for (int j = 0; j < PER_WRITER; j++) {
      ck_assert(w[i].res[j].durable);
      ck_assert_uint_eq(w[i].res[j].version, 1);
      lsns[i * PER_WRITER + j] = w[i].res[j].lsn;
    }
  qsort(lsns, WRITERS * PER_WRITER, sizeof lsns[0], cmp_u64);
  for (int i = 1; i < WRITERS * PER_WRITER; i++)
    ck_assert_msg(lsns[i] != lsns[i - 1], "LSN %llu given twice", (unsigned long long)lsns[i]);
  ck_assert_uint_eq(sa_client_size(c), WRITERS * PER_WRITER);
  /* Group commit: concurrent writers share fdatasyncs. */
  ck_assert_msg(syncs > 0, "no fdatasync with auto_flush on");
  ck_assert_msg(syncs < WRITERS * PER_WRITER,
                "%ld fdatasyncs for %d concurrent puts: no group commit", syncs,
                WRITERS * PER_WRITER);
  /* The statistics agree with what the I/O table saw. */
  sa_stats st;
  ck_assert_int_eq(sa_client_stats(c, &st, NULL), 0);
  ck_assert_uint_eq(st.group_ops, WRITERS * PER_WRITER);
  ck_assert_uint_eq(st.syncs, (uint64_t)syncs);
  ck_assert_uint_eq(st.groups, (uint64_t)syncs); /* one fdatasync per group */
  ck_assert(st.sync_seconds > 0);
  uint64_t gsum = 0, ssum = 0;
  for (int i = 0; i < SA_STATS_GROUP_BUCKETS; i++)
    gsum += st.group_hist[i];
  for (int i = 0; i < SA_STATS_SYNC_BUCKETS; i++)
    ssum += st.sync_hist[i];
  ck_assert_uint_eq(gsum, st.groups);
  ck_assert_uint_eq(ssum, st.syncs);
  ck_assert_uint_gt(st.wal_bytes_written, (uint64_t)WRITERS * PER_WRITER * 32);
  ck_assert_uint_eq(st.write_errors, 0);
  sa_client_close(c);

  sa_io_set(NULL);
  c = tu_open(&opts);
  ck_assert_uint_eq(sa_client_size(c), WRITERS * PER_WRITER);
  expect_writer_values(c, 7);
  sa_client_close(c);
}
END_TEST

/* The store applies the written groups in batches: one transaction for
 * every group of up to 10 ms (auto_flush off here, so that groups come much
 * faster than that, however slow the disk).  Nothing of it shows to
 * readers: every write reads back once answered. */
START_TEST(store_commits_span_groups) {
  static writer_arg w[WRITERS];
  opts.auto_flush = false;
  sa_client *c = tu_open(&opts);
  run_writers(c, w, false);
  sa_stats st;
  ck_assert_int_eq(sa_client_stats(c, &st, NULL), 0);
  ck_assert_uint_eq(st.group_ops, WRITERS * PER_WRITER);
  ck_assert_uint_gt(st.groups, 1);
  ck_assert_msg(st.store_commits < st.groups,
                "%llu store commits for %llu groups: the store commits every group alone",
                (unsigned long long)st.store_commits, (unsigned long long)st.groups);
  expect_writer_values(c, 5);
  ck_assert_int_eq(sa_client_stats(c, &st, NULL), 0);
  ck_assert_uint_ge(st.store_commits, 1); /* the first read waited for one */
  sa_client_close(c);
}
END_TEST

/* store_commit_ms bounds how long answered writes wait for their store
 * commit: with 1000 ms, writes answered 100 ms ago are still not committed
 * (with the default 10 ms they would be), and a read commits them at once. */
START_TEST(store_commit_ms_sets_the_commit_span) {
  sa_options o = opts;
  o.tick_manual = true; /* a tick's read barrier would commit at once */
  o.store_commit_ms = 1000;
  sa_client *c = tu_open(&o);
  sa_stats st;
  ck_assert_int_eq(sa_client_stats(c, &st, NULL), 0);
  uint64_t before = st.store_commits;
  tu_put(c, "a", "1");
  tu_put(c, "b", "2");
  tu_sleep_ms(100);
  ck_assert_int_eq(sa_client_stats(c, &st, NULL), 0);
  ck_assert_uint_eq(st.store_commits, before);
  sa_value v;
  ck_assert_int_eq(sa_client_get(c, "b", &v, NULL), 0); /* waits for one commit */
  ck_assert_str_eq((const char *)v.data, "2");
  sa_value_free(&v);
  ck_assert_int_eq(sa_client_stats(c, &st, NULL), 0);
  ck_assert_uint_eq(st.store_commits, before + 1);
  sa_client_close(c);

  o.store_commit_ms = 10;
  c = tu_open(&o);
  ck_assert_int_eq(sa_client_stats(c, &st, NULL), 0);
  before = st.store_commits;
  tu_put(c, "c", "3");
  for (int i = 0; i < 100 && st.store_commits == before; i++) { /* bounded: ~2 s (valgrind) */
    tu_sleep_ms(20);
    ck_assert_int_eq(sa_client_stats(c, &st, NULL), 0);
  }
  ck_assert_uint_eq(st.store_commits, before + 1); /* by itself, no read */
  sa_client_close(c);

  o.store_commit_ms = 1001;
  expect_bad_option(&o, "store_commit_ms");
}
END_TEST

/* n puts in one batch (one group of n operations), keys P/0 .. P/(n - 1). */
static void batch_puts(sa_client *c, const char *p, int n) {
  static sa_batch_op ops[SA_COMMIT_BUSY_OPS * 2];
  static char keys[SA_COMMIT_BUSY_OPS * 2][32];
  ck_assert_int_le(n, SA_COMMIT_BUSY_OPS * 2);
  for (int i = 0; i < n; i++) {
    snprintf(keys[i], sizeof keys[i], "%s/%d", p, i);
    ops[i] = (sa_batch_op){SA_OP_PUT, keys[i], "v", 1};
  }
  sa_error err = {0};
  ck_assert_msg(sa_client_batch(c, ops, (size_t)n, NULL, &err) == 0, "%s", err.message);
}

/* store_commit_busy_ms: with SA_COMMIT_BUSY_OPS operations or more waiting,
 * the committer waits this long instead of store_commit_ms; with fewer, or
 * with it off, store_commit_ms as before.  1000 against 10 ms, checked at
 * 600 ms: far apart, so a slow machine cannot blur them. */
START_TEST(store_commit_busy_ms_gathers_under_load) {
  sa_options o = opts;
  o.tick_manual = true; /* a tick's read barrier would commit at once */
  o.store_commit_ms = 10;
  o.store_commit_busy_ms = 1000;
  sa_client *c = tu_open(&o);
  sa_stats st;
  ck_assert_int_eq(sa_client_stats(c, &st, NULL), 0);
  batch_puts(c, "few", SA_COMMIT_BUSY_OPS - 1);
  ck_assert_msg(tu_commits_within(c, st.store_commits, 600),
                "%d operations waited longer than store_commit_ms", SA_COMMIT_BUSY_OPS - 1);
  ck_assert_int_eq(sa_client_stats(c, &st, NULL), 0);
  uint64_t before = st.store_commits;
  batch_puts(c, "many", SA_COMMIT_BUSY_OPS);
  ck_assert_msg(!tu_commits_within(c, before, 600),
                "%d operations were committed within 600 ms (store_commit_busy_ms is 1000)",
                SA_COMMIT_BUSY_OPS);
  sa_value v;
  ck_assert_int_eq(sa_client_get(c, "many/0", &v, NULL), 0); /* commits them at once */
  sa_value_free(&v);
  ck_assert_int_eq(sa_client_stats(c, &st, NULL), 0);
  ck_assert_uint_eq(st.store_commits, before + 1);
  sa_client_close(c);

  o.store_commit_busy_ms = SA_STORE_COMMIT_BUSY_OFF;
  c = tu_open(&o);
  ck_assert_int_eq(sa_client_stats(c, &st, NULL), 0);
  batch_puts(c, "off", SA_COMMIT_BUSY_OPS * 2);
  ck_assert_msg(tu_commits_within(c, st.store_commits, 600),
                "with store_commit_busy_ms off, a busy queue waited longer than store_commit_ms");
  sa_client_close(c);

  o.store_commit_busy_ms = 1001;
  expect_bad_option(&o, "store_commit_busy_ms");
  o.store_commit_busy_ms = 30;
  o.store_commit_sync_ms = 1001;
  expect_bad_option(&o, "store_commit_sync_ms");
}
END_TEST

/* The committer commits at once when its queue holds 3/4 of
 * NODE_QUEUE_GROUPS (1,024) groups, before the writer would have to wait
 * for a full queue (which stalled every client for a whole commit): one
 * blocking put per group, 800 of them, both spans at 1000 ms. */
START_TEST(committer_commits_early_when_its_queue_fills) {
  sa_options o = opts;
  o.tick_manual = true;
  o.store_commit_ms = 1000;
  o.store_commit_busy_ms = 1000;
  sa_client *c = tu_open(&o);
  sa_stats s0, s1;
  ck_assert_int_eq(sa_client_stats(c, &s0, NULL), 0);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  char k[32];
  for (int i = 0; i < 800; i++) {
    snprintf(k, sizeof k, "q/%d", i);
    tu_put(c, k, "v");
  }
  ck_assert_int_eq(sa_client_stats(c, &s1, NULL), 0);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double took = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  ck_assert_uint_eq(s1.groups - s0.groups, 800);
  if (took < 0.9) /* else the committer's own timer may have run: nothing to judge */
    ck_assert_msg(s1.store_commits > s0.store_commits,
                  "800 groups queued in %.3f s and none committed", took);
  else
    fprintf(stderr, "committer_commits_early_when_its_queue_fills: %.3f s, check skipped\n", took);
  ck_assert_uint_eq(sa_client_size(c), 800);
  sa_client_close(c);
}
END_TEST

/* With little room left in the map (below what answering before the commit
 * needs), every group is committed before it is answered: one store
 * transaction per group. */
START_TEST(small_map_commits_every_group_before_answering) {
  static writer_arg w[WRITERS];
  opts.store_max_bytes = 32u << 20;
  sa_client *c = tu_open(&opts);
  run_writers(c, w, false);
  sa_stats st;
  ck_assert_int_eq(sa_client_stats(c, &st, NULL), 0);
  ck_assert_uint_eq(st.group_ops, WRITERS * PER_WRITER);
  ck_assert_uint_eq(st.store_commits, st.groups);
  ck_assert_uint_eq(sa_client_size(c), WRITERS * PER_WRITER);
  sa_client_close(c);
}
END_TEST

START_TEST(concurrent_writers_one_key) {
  static writer_arg w[WRITERS];
  sa_client *c = tu_open(&opts);
  run_writers(c, w, true);
  /* The stored value is the one with the highest LSN; versions count puts. */
  uint64_t best = 0;
  char want[32] = "";
  bool versions[WRITERS * PER_WRITER + 1] = {false};
  for (int i = 0; i < WRITERS; i++)
    for (int j = 0; j < PER_WRITER; j++) {
      uint64_t v = w[i].res[j].version;
      ck_assert(v >= 1 && v <= WRITERS * PER_WRITER);
      ck_assert_msg(!versions[v], "version %llu given twice", (unsigned long long)v);
      versions[v] = true;
      if (w[i].res[j].lsn > best) {
        best = w[i].res[j].lsn;
        snprintf(want, sizeof want, "%d:%d", i, j);
      }
    }
  sa_value v = {0};
  sa_error err = {0};
  ck_assert_int_eq(sa_client_get(c, "shared", &v, &err), SA_OK);
  ck_assert_uint_eq(v.version, WRITERS * PER_WRITER);
  ck_assert_uint_eq(v.lsn, best);
  ck_assert_str_eq(v.data, want);
  sa_value_free(&v);
  sa_client_close(c);
}
END_TEST

/* Readers next to writers: every value read is whole (one write's bytes),
 * versions never go back, listings are sorted. */
enum { RW_KEYS = 16, RW_ROUNDS = 30 };

typedef struct rw_arg {
  sa_client *c;
  int id;
  volatile int *stop;
  int errors;
  char why[200];
} rw_arg;

static void rw_value(char *out, size_t cap, int key, int round) {
  int n = snprintf(out, cap, "k%02d:", key);
  for (int i = 0; i < 20 + round % 50 && (size_t)n + 8 < cap; i++)
    n += snprintf(out + n, cap - (size_t)n, "%06d|", round);
}

static void *rw_writer(void *p) {
  rw_arg *a = p;
  for (int r = 0; r < RW_ROUNDS; r++)
    for (int k = a->id; k < RW_KEYS; k += 2) {
      char key[16], v[512];
      snprintf(key, sizeof key, "rw/%02d", k);
      rw_value(v, sizeof v, k, r);
      if (sa_client_put(a->c, key, v, NULL) != SA_OK) a->errors++;
    }
  return NULL;
}

static void *rw_reader(void *p) {
  rw_arg *a = p;
  uint64_t seen[RW_KEYS] = {0};
  while (!__atomic_load_n(a->stop, __ATOMIC_ACQUIRE) && a->errors == 0) {
    for (int k = 0; k < RW_KEYS; k++) {
      char key[16];
      snprintf(key, sizeof key, "rw/%02d", k);
      sa_value v = {0};
      int rc = sa_client_get(a->c, key, &v, NULL);
      if (rc == SA_ENOTFOUND) continue;
      int round = -1;
      if (rc != SA_OK || sscanf(v.data + 4, "%06d", &round) != 1) {
        snprintf(a->why, sizeof a->why, "get %s: rc %d", key, rc);
        a->errors++;
      } else {
        char want[512];
        rw_value(want, sizeof want, k, round);
        if (strcmp(v.data, want) != 0 || v.len != strlen(want) || v.version < seen[k]) {
          snprintf(a->why, sizeof a->why, "%s: torn or stale value (version %llu after %llu)", key,
                   (unsigned long long)v.version, (unsigned long long)seen[k]);
          a->errors++;
        }
        seen[k] = v.version;
      }
      sa_value_free(&v);
    }
    sa_list l;
    if (sa_client_list(a->c, "rw/", NULL, 100, true, &l, NULL) == SA_OK) {
      for (size_t i = 1; i < l.count; i++)
        if (strcmp(l.items[i - 1].key, l.items[i].key) >= 0) {
          snprintf(a->why, sizeof a->why, "listing not sorted");
          a->errors++;
        }
      sa_list_free(&l);
    } else {
      snprintf(a->why, sizeof a->why, "list failed");
      a->errors++;
    }
    sa_status st;
    int rc = sa_client_status(a->c, &st, NULL);
    if (rc != SA_OK || st.applied_lsn > st.last_lsn) {
      snprintf(a->why, sizeof a->why, "status: rc %d, applied_lsn %llu > last_lsn %llu", rc,
               (unsigned long long)st.applied_lsn, (unsigned long long)st.last_lsn);
      a->errors++;
    }
  }
  return NULL;
}

START_TEST(readers_beside_writers) {
  sa_client *c = tu_open(&opts);
  volatile int stop = 0;
  rw_arg w[2], r[2];
  pthread_t tw[2], tr[2];
  for (int i = 0; i < 2; i++) {
    r[i] = (rw_arg){c, i, &stop, 0, ""};
    ck_assert_int_eq(pthread_create(&tr[i], NULL, rw_reader, &r[i]), 0);
  }
  for (int i = 0; i < 2; i++) {
    w[i] = (rw_arg){c, i, &stop, 0, ""};
    ck_assert_int_eq(pthread_create(&tw[i], NULL, rw_writer, &w[i]), 0);
  }
  for (int i = 0; i < 2; i++)
    pthread_join(tw[i], NULL);
  __atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
  for (int i = 0; i < 2; i++)
    pthread_join(tr[i], NULL);
  for (int i = 0; i < 2; i++) {
    ck_assert_int_eq(w[i].errors, 0);
    ck_assert_msg(r[i].errors == 0, "reader %d: %s", i, r[i].why);
  }
  for (int k = 0; k < RW_KEYS; k++) {
    char key[16], want[512];
    snprintf(key, sizeof key, "rw/%02d", k);
    rw_value(want, sizeof want, k, RW_ROUNDS - 1);
    tu_expect_str(c, key, want);
  }
  sa_client_close(c);
}
END_TEST

/* ---- open errors -------------------------------------------------------- */

START_TEST(error_empty_wal_path) {
  opts.wal_path = "";
  sa_error err = open_fails(&opts, SA_EINVAL);
  ck_assert_msg(tu_contains(err.message, "wal"), "message should name the WAL path: %s",
                err.message);
  ck_assert_msg(tu_contains(err.message, "empty") || tu_contains(err.message, "required"),
                "message should say the path is empty: %s", err.message);
  opts.wal_path = NULL;
  open_fails(&opts, SA_EINVAL);
}
END_TEST

START_TEST(error_bad_node_id) {
  static const char *const bad[] = {
      "", "has space", "sl/ash", "\xc3\xa9t\xc3\xa9",
      "0123456789012345678901234567890123456789012345678901234567890123X"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    opts.node_id = bad[i];
    open_fails(&opts, SA_EINVAL);
  }
  opts.node_id = NULL;
  open_fails(&opts, SA_EINVAL);
  opts.node_id = "Node_1.a-b";
  sa_client_close(tu_open(&opts));
  /* 64 characters is the longest id. */
  opts.node_id = "0123456789012345678901234567890123456789012345678901234567890123";
  char wal64[TU_PATH_MAX];
  tu_path(wal64, dir, "long.wal");
  opts.wal_path = wal64;
  sa_client *c = tu_open(&opts);
  ck_assert_str_eq(tu_status(c).node_id, opts.node_id);
  sa_client_close(c);
}
END_TEST

START_TEST(error_missing_directory) {
  char missing[TU_PATH_MAX], path[TU_PATH_MAX];
  tu_path(missing, dir, "data");
  tu_path(path, missing, "node-1.wal");
  opts.wal_path = path;
  sa_error err = open_fails(&opts, SA_ENOENT);
  ck_assert_msg(strstr(err.message, missing) != NULL, "message should name %s: %s", missing,
                err.message);
  ck_assert_msg(strstr(err.message, "mkdir") != NULL, "message should say to mkdir: %s",
                err.message);
  ck_assert_msg(!tu_exists(missing), "the library must not create the directory");

  /* Deeper: data/a/b/node.wal */
  tu_path(path, missing, "a/b/node-1.wal");
  open_fails(&opts, SA_ENOENT);
}
END_TEST

START_TEST(error_wal_parent_is_a_file) {
  char file[TU_PATH_MAX], path[TU_PATH_MAX];
  tu_path(file, dir, "plain-file");
  tu_write(file, "x", 1);
  tu_path(path, file, "node-1.wal");
  opts.wal_path = path;
  sa_client *c = NULL;
  sa_error err = {0};
  int rc = sa_client_open(&c, &opts, &err);
  ck_assert_msg(rc == SA_ENOENT || rc == SA_EACCES || rc == SA_EIO || rc == SA_EINVAL,
                "WAL under a regular file: got %d %s", rc, err.message);
  ck_assert_ptr_null(c);
  ck_assert_int_eq(err.code, rc);
  ck_assert_msg(strstr(err.message, file) != NULL, "message should name %s: %s", file, err.message);
  ck_assert_msg(tu_contains(err.message, "not a directory"), "message should give the cause: %s",
                err.message);
}
END_TEST

START_TEST(error_wal_is_a_directory) {
  ck_assert_int_eq(mkdir(wal, 0755), 0);
  sa_client *c = NULL;
  sa_error err = {0};
  int rc = sa_client_open(&c, &opts, &err);
  ck_assert_msg(rc < 0, "a directory as WAL must fail");
  ck_assert_ptr_null(c);
  ck_assert_int_eq(err.code, rc);
  ck_assert_msg(rc != SA_EINTERNAL && rc != SA_ECORRUPT, "code %d (%s) for a directory", rc,
                sa_strerror(rc));
  ck_assert_msg(strstr(err.message, wal) != NULL, "message should name %s: %s", wal, err.message);
  ck_assert_msg(tu_contains(err.message, "directory"), "message should say it is a directory: %s",
                err.message);
}
END_TEST

START_TEST(error_unwritable_path) {
  /* As root, permission bits do not stop us: inject EACCES at open. */
  tu_fault_install();
  tu_fault_arm(TU_OPEN, EACCES, 0, -1);
  sa_error err = open_fails(&opts, SA_EACCES);
  ck_assert_msg(strstr(err.message, dir) != NULL, "message should name the path: %s", err.message);
  ck_assert_msg(tu_contains(err.message, "permission"), "message should give the cause: %s",
                err.message);
  tu_fault_disarm();
  sa_client_close(tu_open(&opts));
}
END_TEST

START_TEST(error_store_path_unusable) {
  char file[TU_PATH_MAX], store[TU_PATH_MAX];
  tu_path(file, dir, "plain-file");
  tu_write(file, "x", 1);
  tu_path(store, file, "node-1.mdb");
  opts.store_path = store;
  sa_client *c = NULL;
  sa_error err = {0};
  int rc = sa_client_open(&c, &opts, &err);
  ck_assert_msg(rc < 0, "store under a regular file must fail");
  ck_assert_ptr_null(c);
  ck_assert_msg(strstr(err.message, store) != NULL, "message should name %s: %s", store,
                err.message);
  /* The failed open released the WAL lock: a good open works. */
  opts.store_path = NULL;
  sa_client_close(tu_open(&opts));
}
END_TEST

START_TEST(error_wal_locked_same_process) {
  sa_client *c = tu_open(&opts);
  tu_put(c, "k", "v");
  sa_error err = open_fails(&opts, SA_ELOCKED);
  ck_assert_msg(tu_contains(err.message, "locked"), "message should say locked: %s", err.message);
  ck_assert_msg(strstr(err.message, wal) != NULL, "message should name %s: %s", wal, err.message);
  tu_put(c, "k2", "v2"); /* the first client is unharmed */
  sa_client_close(c);
  c = tu_open(&opts); /* close released the lock */
  tu_expect_str(c, "k2", "v2");
  sa_client_close(c);
}
END_TEST

START_TEST(error_wal_locked_other_process) {
  int up[2], down[2];
  ck_assert_int_eq(pipe(up), 0);
  ck_assert_int_eq(pipe(down), 0);
  fflush(NULL);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    close(up[0]);
    close(down[1]);
    sa_client *c = NULL;
    sa_error err = {0};
    if (sa_client_open(&c, &opts, &err) != SA_OK) tu_child_fail(2, "child open: %s", err.message);
    if (sa_client_put(c, "from-child", "yes", &err) != SA_OK)
      tu_child_fail(3, "child put: %s", err.message);
    if (write(up[1], "R", 1) != 1) _exit(4);
    char b;
    (void)!read(down[0], &b, 1); /* wait until the parent says go */
    sa_client_close(c);
    _exit(0);
  }
  close(up[1]);
  close(down[0]);
  char b = 0;
  ck_assert_int_eq(read(up[0], &b, 1), 1);
  sa_error err = open_fails(&opts, SA_ELOCKED);
  ck_assert_msg(tu_contains(err.message, "locked"), "message should say locked: %s", err.message);
  ck_assert_msg(strstr(err.message, wal) != NULL, "message should name %s: %s", wal, err.message);

  /* The holder dies without closing: the kernel releases the lock. */
  kill(pid, SIGKILL);
  int status;
  ck_assert_int_eq(waitpid(pid, &status, 0), pid);
  close(up[0]);
  close(down[1]);
  sa_client *c = tu_open(&opts);
  tu_expect_str(c, "from-child", "yes");
  sa_client_close(c);
}
END_TEST

START_TEST(error_wal_locked_seen_from_child) {
  /* This process holds the WAL; a forked child must be refused too. */
  sa_client *c = tu_open(&opts);
  tu_put(c, "k", "v");
  fflush(NULL);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    alarm(20); /* a hang is a failure, not a stuck suite */
    sa_client *c2 = NULL;
    sa_error err = {0};
    int rc = sa_client_open(&c2, &opts, &err);
    if (rc != SA_ELOCKED)
      tu_child_fail(2, "child open: expected SA_ELOCKED, got %d %s", rc, err.message);
    if (c2 != NULL) tu_child_fail(3, "child open: *out not NULL");
    if (!tu_contains(err.message, "locked"))
      tu_child_fail(4, "child open: message should say locked: %s", err.message);
    _exit(0);
  }
  int status;
  ck_assert_int_eq(waitpid(pid, &status, 0), pid);
  ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d (see stderr)",
                status);
  tu_expect_str(c, "k", "v");
  sa_client_close(c);
}
END_TEST

START_TEST(error_wal_of_another_node) {
  char walpath[TU_PATH_MAX];
  sa_options alpha = tu_options("alpha", dir, walpath);
  sa_client *c = tu_open(&alpha);
  tu_put(c, "k", "v");
  sa_client_close(c);
  size_t len0;
  unsigned char *before = tu_read(walpath, &len0);

  sa_options beta = sa_options_persistent("beta", walpath);
  sa_error err = open_fails(&beta, SA_ENODE);
  ck_assert_msg(strstr(err.message, "alpha") && strstr(err.message, "beta"),
                "message should name both ids: %s", err.message);
  ck_assert_msg(strstr(err.message, walpath) != NULL, "message should name %s: %s", walpath,
                err.message);
  size_t len1;
  unsigned char *after = tu_read(walpath, &len1);
  ck_assert_msg(len0 == len1 && memcmp(before, after, len0) == 0, "refused open modified the WAL");
  free(before);
  free(after);

  c = tu_open(&alpha);
  tu_expect_str(c, "k", "v");
  sa_client_close(c);
}
END_TEST

START_TEST(error_store_of_another_node) {
  char wal_a[TU_PATH_MAX], wal_b[TU_PATH_MAX], store[TU_PATH_MAX];
  tu_path(store, dir, "shared.mdb");
  sa_options alpha = tu_options("alpha", dir, wal_a);
  alpha.store_path = store;
  sa_client *c = tu_open(&alpha);
  tu_put(c, "k", "v");
  sa_client_close(c);

  sa_options beta = tu_options("beta", dir, wal_b);
  beta.store_path = store;
  sa_error err = open_fails(&beta, SA_ENODE);
  ck_assert_msg(strstr(err.message, "alpha") && strstr(err.message, "beta"),
                "message should name both ids: %s", err.message);
  ck_assert_msg(strstr(err.message, store) != NULL, "message should name %s: %s", store,
                err.message);
}
END_TEST

/* ---- key and value errors ----------------------------------------------- */

static void key_rejected(sa_client *c, const char *key, const char *what) {
  sa_error err = {0};
  sa_value v = {0};
  int rc;
  rc = sa_client_put(c, key, "v", &err);
  ck_assert_msg(rc == SA_EKEY, "put %s: expected SA_EKEY, got %d", what, rc);
  ck_assert_int_eq(err.code, SA_EKEY);
  ck_assert_msg(err.message[0] != '\0', "put %s: no message", what);
  rc = sa_client_put_bytes(c, key, "v", 1, NULL);
  ck_assert_msg(rc == SA_EKEY, "put_bytes %s: got %d", what, rc);
  rc = sa_client_put_ex(c, key, "v", 1, NULL, NULL, NULL);
  ck_assert_msg(rc == SA_EKEY, "put_ex %s: got %d", what, rc);
  rc = sa_client_remove(c, key, NULL);
  ck_assert_msg(rc == SA_EKEY, "remove %s: got %d", what, rc);
  rc = sa_client_get(c, key, &v, NULL);
  ck_assert_msg(rc == SA_EKEY, "get %s: got %d", what, rc);
  ck_assert_ptr_null(v.data);
}

START_TEST(error_bad_keys) {
  sa_client *c = tu_open(&opts);
  tu_put(c, "seed", "1");
  uint64_t lsn = last_lsn(c);
  char long_key[SA_KEY_MAX + 2];
  memset(long_key, 'k', SA_KEY_MAX + 1);
  long_key[SA_KEY_MAX + 1] = 0;

  key_rejected(c, "", "empty key");
  key_rejected(c, long_key, "1025-byte key");
  key_rejected(c, "bad\xff", "byte 0xFF");
  key_rejected(c, "\xc0\xaf", "overlong encoding");
  key_rejected(c, "cut\xe2\x82", "truncated sequence");
  key_rejected(c, "\xed\xa0\x80", "UTF-16 surrogate");
  key_rejected(c, "\xf4\x90\x80\x80", "code point above U+10FFFF");
  key_rejected(c, "\x80lead", "lone continuation byte");
  key_rejected(c, "a\x01z", "U+0001");
  key_rejected(c, "\x1f", "U+001F");
  key_rejected(c, "line\nbreak", "newline");
  key_rejected(c, "tab\there", "tab");
  key_rejected(c, "del\x7f", "U+007F");
  ck_assert_int_eq(sa_client_put(c, NULL, "v", NULL) < 0, 1);
  ck_assert_uint_eq(last_lsn(c), lsn); /* nothing was logged */

  /* Valid UTF-8 and spaces are fine. */
  static const char utf8[] =
      "\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87/\xe6\x97\xa5\xe6\x9c\xac/\xf0\x9f\x98\x80";
  tu_put(c, utf8, "utf8");
  tu_put(c, "with space", "ok");
  tu_put(c, "k", "single byte");
  sa_client_close(c);
  c = tu_open(&opts);
  tu_expect_str(c, utf8, "utf8");
  tu_expect_str(c, "k", "single byte");
  sa_client_close(c);
}
END_TEST

START_TEST(keys_up_to_1024_bytes) {
  /* The contract: keys are 1..1024 bytes.  Every length must round-trip,
   * also in a batch, in a listing and across a restart. */
  static const size_t lens[] = {1, 255, 256, 511, 512, 513, 1000, SA_KEY_MAX};
  enum { NL = sizeof lens / sizeof lens[0] };
  char keys[NL][SA_KEY_MAX + 1];
  sa_client *c = tu_open(&opts);
  for (size_t i = 0; i < NL; i++) {
    memset(keys[i], 'a' + (int)i, lens[i]);
    keys[i][lens[i]] = 0;
    sa_error err = {0};
    int rc = sa_client_put(c, keys[i], "v", &err);
    ck_assert_msg(rc == SA_OK, "put of a %zu-byte key: %d %s", lens[i], rc, err.message);
  }
  char bkey[SA_KEY_MAX + 1];
  memset(bkey, 'z', SA_KEY_MAX);
  bkey[SA_KEY_MAX] = 0;
  sa_batch_op ops[] = {{SA_OP_PUT, bkey, "b", 1}};
  sa_error err = {0};
  int rc = sa_client_batch(c, ops, 1, NULL, &err);
  ck_assert_msg(rc == SA_OK, "batch with a 1024-byte key: %d %s", rc, err.message);
  sa_client_close(c);

  c = tu_open(&opts);
  for (size_t i = 0; i < NL; i++)
    tu_expect_str(c, keys[i], "v");
  tu_expect_str(c, bkey, "b");
  sa_list l;
  ck_assert_int_eq(sa_client_list(c, NULL, NULL, 100, false, &l, &err), SA_OK);
  ck_assert_uint_eq(l.count, NL + 1);
  ck_assert_uint_eq(strlen(l.items[NL - 1].key), SA_KEY_MAX);
  sa_list_free(&l);
  ck_assert_int_eq(sa_client_remove(c, keys[NL - 1], &err), SA_OK);
  tu_expect_absent(c, keys[NL - 1]);
  sa_client_close(c);
}
END_TEST

START_TEST(error_value_too_large) {
  size_t n = SA_DEFAULT_MAX_VALUE_BYTES + 1;
  char *big = malloc(n);
  ck_assert_ptr_nonnull(big);
  memset(big, 'x', n);
  sa_client *c = tu_open(&opts);
  uint64_t lsn = last_lsn(c);
  sa_error err = {0};
  ck_assert_int_eq(sa_client_put_bytes(c, "photo/raw", big, n, &err), SA_ETOOBIG);
  ck_assert_int_eq(err.code, SA_ETOOBIG);
  ck_assert_msg(strstr(err.message, "photo/raw") != NULL, "message should name the key: %s",
                err.message);
  ck_assert_int_eq(sa_client_put_ex(c, "photo/raw", big, n, NULL, NULL, NULL), SA_ETOOBIG);
  big[n - 1] = 0; /* a string of 1 MiB + 1 - 1 bytes... */
  big[n - 2] = 0; /* ...cut to exactly 1 MiB - 1: accepted */
  tu_put(c, "str", big);
  ck_assert_uint_eq(last_lsn(c), lsn + 1);
  tu_expect_absent(c, "photo/raw");
  sa_client_close(c);
  free(big);

  /* A configured limit. */
  opts.max_value_bytes = 100;
  c = tu_open(&opts);
  char v[101];
  memset(v, 'v', sizeof v);
  tu_put_bytes(c, "at-limit", v, 100);
  ck_assert_int_eq(sa_client_put_bytes(c, "over", v, 101, NULL), SA_ETOOBIG);
  tu_expect_absent(c, "over");
  sa_client_close(c);
}
END_TEST

static Suite *client_suite(void) {
  Suite *s = suite_create("client");
  TCase *tc = tcase_create("api");
  tcase_add_checked_fixture(tc, setup, NULL);
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, options_defaults);
  tcase_add_test(tc, strerror_every_code);
  tcase_add_test(tc, put_get_remove_size);
  tcase_add_test(tc, byte_values);
  tcase_add_test(tc, get_with_reads_in_place);
  tcase_add_test(tc, versions_and_lsns);
  tcase_add_test(tc, auto_flush_off_reports_not_durable);
  tcase_add_test(tc, compare_and_set);
  tcase_add_test(tc, batch_is_one_record);
  tcase_add_test(tc, batch_rejected_logs_nothing);
  tcase_add_test(tc, list_prefix_after_limit);
  tcase_add_test(tc, list_long_keys_sorted);
  tcase_add_test(tc, long_keys_sharing_a_prefix);
  tcase_add_test(tc, memory_node);
  tcase_add_test(tc, status_fields);
  tcase_add_test(tc, store_writeback_kicks);
  tcase_add_test(tc, sync_state_outbox);
  tcase_add_test(tc, concurrent_writers_share_fdatasync);
  tcase_add_test(tc, concurrent_writers_one_key);
  tcase_add_test(tc, store_commits_span_groups);
  tcase_add_test(tc, store_commit_ms_sets_the_commit_span);
  tcase_add_test(tc, store_commit_busy_ms_gathers_under_load);
  tcase_add_test(tc, committer_commits_early_when_its_queue_fills);
  tcase_add_test(tc, small_map_commits_every_group_before_answering);
  tcase_add_test(tc, readers_beside_writers);
  tcase_add_test(tc, async_puts_from_one_thread);
  tcase_add_test(tc, async_errors);
  tcase_add_test(tc, async_cas_chain_across_groups);
  tcase_add_test(tc, async_close_waits);
  suite_add_tcase(s, tc);

  TCase *te = tcase_create("errors");
  tcase_add_checked_fixture(te, setup, NULL);
  tcase_set_timeout(te, 60);
  tcase_add_test(te, error_empty_wal_path);
  tcase_add_test(te, error_bad_node_id);
  tcase_add_test(te, error_missing_directory);
  tcase_add_test(te, error_wal_parent_is_a_file);
  tcase_add_test(te, error_wal_is_a_directory);
  tcase_add_test(te, error_unwritable_path);
  tcase_add_test(te, error_store_path_unusable);
  tcase_add_test(te, error_wal_locked_same_process);
  tcase_add_test(te, error_wal_locked_other_process);
  tcase_add_test(te, error_wal_locked_seen_from_child);
  tcase_add_test(te, error_wal_of_another_node);
  tcase_add_test(te, error_store_of_another_node);
  tcase_add_test(te, error_bad_keys);
  tcase_add_test(te, keys_up_to_1024_bytes);
  tcase_add_test(te, error_value_too_large);
  suite_add_tcase(s, te);
  return s;
}

int main(void) {
  return tu_main(client_suite());
}
