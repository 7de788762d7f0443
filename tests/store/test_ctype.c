/*
 * test_ctype.c -- a value's content type through the public API
 * (sa_client_put_opts): kept with the value by every read (get, get_with,
 * list, the change feed, the sync feed and snapshot), replaced or dropped
 * by a later put, checked before anything is logged, replayed from the WAL
 * after a kill -9, moved by sync, kept by a backup, and the in-place
 * upgrade of a format-2 store (written before values had types).
 */
#include "softadastra.h"
#include "test_util.h"

#include <check.h>
#include <errno.h>
#include <lmdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[TU_PATH_MAX], wal[TU_PATH_MAX];

static void setup(void) {
  tu_mkdir(dir);
  tu_path(wal, dir, "node-t.wal");
}

static sa_options node_opts(void) {
  sa_options o = sa_options_persistent("node-t", wal);
  o.tick_manual = true;
  return o;
}

static void put_typed(sa_client *c, const char *key, const char *value, const char *ct) {
  sa_put_opts po = {.content_type = ct};
  sa_error e;
  ck_assert_msg(sa_client_put_opts(c, key, value, strlen(value), &po, NULL, &e) == 0, "%s",
                e.message);
}

/* key's content type ("" when none), asserting it exists. */
static void expect_type(sa_client *c, const char *key, const char *ct) {
  sa_value v;
  sa_error e;
  ck_assert_msg(sa_client_get(c, key, &v, &e) == 0, "%s: %s", key, e.message);
  ck_assert_msg(strcmp(v.content_type, ct) == 0, "%s: type '%s', expected '%s'", key,
                v.content_type, ct);
  sa_value_free(&v);
}

static void copy_type(void *arg, const sa_value *v) {
  snprintf(arg, SA_CONTENT_TYPE_MAX + 1, "%s", v->content_type);
}

START_TEST(every_read_returns_the_type) {
  sa_options o = node_opts();
  sa_client *c = tu_open(&o);
  put_typed(c, "doc", "{\"a\":1}", "application/json");
  put_typed(c, "page", "<p>x</p>", "text/html; charset=utf-8");
  tu_put(c, "plain", "no type");
  expect_type(c, "doc", "application/json");
  expect_type(c, "page", "text/html; charset=utf-8");
  expect_type(c, "plain", "");
  tu_expect_str(c, "doc", "{\"a\":1}");

  char got[SA_CONTENT_TYPE_MAX + 1] = "?";
  ck_assert_int_eq(sa_client_get_with(c, "doc", copy_type, got, NULL), 0);
  ck_assert_str_eq(got, "application/json");

  sa_list l;
  ck_assert_int_eq(sa_client_list(c, NULL, NULL, 10, false, &l, NULL), 0);
  ck_assert_uint_eq(l.count, 3);
  ck_assert_str_eq(l.items[0].key, "doc");
  ck_assert_str_eq(l.items[0].content_type, "application/json");
  ck_assert_str_eq(l.items[1].key, "page");
  ck_assert_str_eq(l.items[1].content_type, "text/html; charset=utf-8");
  ck_assert_ptr_null(l.items[2].content_type);
  sa_list_free(&l);

  sa_changes ch;
  ck_assert_int_eq(sa_client_changes(c, 0, 100, true, &ch, NULL), 0);
  ck_assert_uint_eq(ch.count, 3);
  ck_assert_str_eq(ch.items[0].content_type, "application/json");
  ck_assert_str_eq(ch.items[0].data, "{\"a\":1}");
  ck_assert_ptr_null(ch.items[2].content_type);
  sa_changes_free(&ch);

  /* A put replaces the value and its type together. */
  tu_put(c, "doc", "now untyped");
  expect_type(c, "doc", "");
  put_typed(c, "doc", "x", "text/plain");
  sa_put_opts none = {.content_type = ""};
  ck_assert_int_eq(sa_client_put_opts(c, "doc", "y", 1, &none, NULL, NULL), 0);
  expect_type(c, "doc", "");
  put_typed(c, "doc", "x", "text/plain");
  ck_assert_int_eq(sa_client_put_opts(c, "doc", "z", 1, NULL, NULL, NULL), 0);
  expect_type(c, "doc", "");
  put_typed(c, "doc", "x", "text/plain");
  sa_batch_op b = {.op = SA_OP_PUT, .key = "doc", .data = "b", .len = 1};
  ck_assert_int_eq(sa_client_batch(c, &b, 1, NULL, NULL), 0);
  expect_type(c, "doc", "");
  /* A condition holds as in sa_client_put_ex. */
  sa_value v;
  ck_assert_int_eq(sa_client_get(c, "page", &v, NULL), 0);
  sa_put_opts cond = {.cond = SA_COND_VERSION, .version = v.version + 1, .content_type = "a/b"};
  ck_assert_int_eq(sa_client_put_opts(c, "page", "p", 1, &cond, NULL, NULL), SA_ECONFLICT);
  cond.version = v.version;
  sa_write_result res;
  ck_assert_int_eq(sa_client_put_opts(c, "page", "p", 1, &cond, &res, NULL), 0);
  ck_assert_uint_eq(res.version, v.version + 1);
  sa_value_free(&v);
  expect_type(c, "page", "a/b");
  sa_client_close(c);

  /* Reopened: the store kept them. */
  c = tu_open(&o);
  expect_type(c, "page", "a/b");
  expect_type(c, "plain", "");
  sa_client_close(c);
}
END_TEST

static void never_called(void *arg, int rc, const sa_write_result *res, const sa_error *err) {
  (void)arg, (void)rc, (void)res, (void)err;
  abort(); /* a refused write is never settled */
}

START_TEST(bad_types_are_refused_before_anything_is_logged) {
  sa_options o = node_opts();
  sa_client *c = tu_open(&o);
  char longest[SA_CONTENT_TYPE_MAX + 2];
  memset(longest, 'a', sizeof longest);
  memcpy(longest, "text/", 5);
  longest[SA_CONTENT_TYPE_MAX] = 0; /* 127 bytes: fine */
  put_typed(c, "long", "v", longest);
  expect_type(c, "long", longest);
  longest[SA_CONTENT_TYPE_MAX] = 'a';
  longest[SA_CONTENT_TYPE_MAX + 1] = 0; /* 128 */
  const struct {
    const char *ct, *why;
  } bad[] = {
      {longest, "longer than the 127-byte limit"},
      {"text/plain\r\nX-Evil: 1", "byte 0x0D at offset 10"},
      {"text/plain\n", "byte 0x0A"},
      {"text/pl\tain", "byte 0x09"},
      {"text/caf\xc3\xa9", "not printable ASCII"},
      {"textplain", "not a media type type/subtype"},
      {"/plain", "not a media type"},
      {"text/", "subtype"},
      {"text /plain", "not a media type"},
      {"text/plain charset=x", "expected ';'"},
      {"text/plain; charset", "not name=value"},
      {"text/plain; charset=", "neither a token nor a quoted string"},
      {"text/plain; charset=\"utf-8", "does not end"},
      {"text/plain; a=b c", "expected ';'"},
      {"text/plain ", "expected ';'"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    sa_error e = {0};
    ck_assert_int_eq(sa_content_type_check(bad[i].ct, &e), SA_EINVAL);
    ck_assert_msg(strstr(e.message, bad[i].why), "'%s': %s", bad[i].ct, e.message);
    uint64_t before = tu_status(c).last_lsn;
    sa_put_opts po = {.content_type = bad[i].ct};
    memset(&e, 0, sizeof e);
    ck_assert_int_eq(sa_client_put_opts(c, "k", "v", 1, &po, NULL, &e), SA_EINVAL);
    ck_assert_msg(strstr(e.message, bad[i].why), "'%s': %s", bad[i].ct, e.message);
    ck_assert_int_eq(sa_client_put_opts_async(c, "k", "v", 1, &po, never_called, NULL, &e),
                     SA_EINVAL);
    ck_assert_msg(strstr(e.message, bad[i].why), "'%s': %s", bad[i].ct, e.message);
    ck_assert_uint_eq(tu_status(c).last_lsn, before);
    tu_expect_absent(c, "k");
  }
  const char *good[] = {"application/json",
                        "text/plain;charset=utf-8",
                        "text/plain; charset=utf-8; format=flowed",
                        "multipart/form-data; boundary=\"a b;c\\\"d\"",
                        "application/vnd.api+json",
                        "text/plain;",
                        "text/plain; ;a=b",
                        "image/svg+xml"};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    sa_error e;
    ck_assert_msg(sa_content_type_check(good[i], &e) == 0, "'%s': %s", good[i], e.message);
    put_typed(c, "good", "v", good[i]);
    expect_type(c, "good", good[i]);
  }
  sa_client_close(c);
}
END_TEST

/* ---- kill -9 after an acknowledged typed put: the WAL brings it back -------- */

/* In a child: a typed put (mode 0) or a sync batch holding a typed item
 * (mode 1), acknowledged, then SIGKILL. */
static void typed_put_then_die(void *arg) {
  int mode = *(int *)arg;
  tu_fault_install();
  sa_options o = node_opts();
  sa_client *c;
  sa_error e;
  if (sa_client_open(&c, &o, &e) != 0) tu_child_fail(2, "open: %s", e.message);
  /* Every store commit fails from here: the put below is acknowledged from
   * the WAL alone (answered before its commit) and only a replay can bring
   * it back. */
  tu_fault_arm(TU_STORE_COMMIT, EIO, 0, -1);
  sa_put_opts po = {.content_type = "image/png"};
  if (mode == 0 && sa_client_put_opts(c, "img", "\x89PNG", 4, &po, NULL, &e) != 0)
    tu_child_fail(3, "put: %s", e.message);
  sa_sync_item it = {.seq = 5,
                     .op = SA_OP_PUT,
                     .key = "from-peer",
                     .data = "{}",
                     .len = 2,
                     .hlc = (uint64_t)1 << 16,
                     .origin = "node-p",
                     .origin_lsn = 5,
                     .content_type = "application/json"};
  if (mode == 1 && sa_client_sync_apply(c, "node-p", &it, 1, 5, NULL, &e) != 0)
    tu_child_fail(4, "sync apply: %s", e.message);
  kill(getpid(), SIGKILL);
}

START_TEST(kill9_after_an_acknowledged_typed_put_replays_the_type) {
  sa_options o = node_opts();
  for (int mode = 0; mode < 2; mode++) {
    int st = tu_run_child(typed_put_then_die, &mode);
    ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "child status %d", st);
    sa_client *c = tu_open(&o);
    ck_assert_uint_eq(tu_status(c).recovery.records_replayed, 1);
    expect_type(c, "img", "image/png");
    tu_expect(c, "img", "\x89PNG", 4);
    if (mode == 1) expect_type(c, "from-peer", "application/json");
    sa_client_close(c);
  }
}
END_TEST

/* ---- a format-2 store -------------------------------------------------------- */

static void set_format(const char *store, uint32_t fmt) {
  MDB_env *env;
  MDB_txn *txn;
  MDB_dbi meta;
  ck_assert_int_eq(mdb_env_create(&env), 0);
  mdb_env_set_maxdbs(env, 16);
  ck_assert_int_eq(mdb_env_open(env, store, MDB_NOSUBDIR, 0644), 0);
  ck_assert_int_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
  ck_assert_int_eq(mdb_dbi_open(txn, "meta", 0, &meta), 0);
  unsigned char b[4] = {(unsigned char)fmt, 0, 0, 0};
  MDB_val fk = {6, "format"}, fv = {4, b};
  ck_assert_int_eq(mdb_put(txn, meta, &fk, &fv, 0), 0);
  ck_assert_int_eq(mdb_txn_commit(txn), 0);
  mdb_env_sync(env, 1);
  mdb_env_close(env);
  char syncf[TU_PATH_MAX + 8];
  snprintf(syncf, sizeof syncf, "%s-sync", store);
  unlink(syncf); /* the sync point described the file before the edit */
}

static uint32_t get_format(const char *store) {
  MDB_env *env;
  MDB_txn *txn;
  MDB_dbi meta;
  ck_assert_int_eq(mdb_env_create(&env), 0);
  mdb_env_set_maxdbs(env, 16);
  ck_assert_int_eq(mdb_env_open(env, store, MDB_NOSUBDIR | MDB_RDONLY, 0644), 0);
  ck_assert_int_eq(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
  ck_assert_int_eq(mdb_dbi_open(txn, "meta", 0, &meta), 0);
  MDB_val fk = {6, "format"}, fv;
  ck_assert_int_eq(mdb_get(txn, meta, &fk, &fv), 0);
  uint32_t f = ((unsigned char *)fv.mv_data)[0];
  mdb_txn_abort(txn);
  mdb_env_close(env);
  return f;
}

START_TEST(format_2_store_is_upgraded_in_place) {
  sa_options o = node_opts();
  sa_client *c = tu_open(&o);
  char longkey[700], store[TU_PATH_MAX];
  memset(longkey, 'L', sizeof longkey - 1);
  longkey[sizeof longkey - 1] = 0;
  /* What a format-2 build wrote: untyped values, a peer's value with its
   * origin, a long key, a tombstone (their bytes are the same in formats 3
   * and 4; the peer's value comes without an origin LSN, which format 4
   * would keep). */
  tu_put(c, "k", "v");
  tu_put(c, longkey, "long");
  tu_put(c, "gone", "x");
  ck_assert_int_eq(sa_client_remove(c, "gone", NULL), 0);
  sa_sync_item it = {.seq = 3,
                     .op = SA_OP_PUT,
                     .key = "peer-key",
                     .data = "pv",
                     .len = 2,
                     .hlc = (uint64_t)7 << 16,
                     .origin = "node-p",
                     .origin_lsn = 0};
  ck_assert_int_eq(sa_client_sync_apply(c, "node-p", &it, 1, 3, NULL, NULL), 0);
  char digest[65];
  ck_assert_int_eq(sa_client_sync_digest(c, digest, NULL, NULL), 0);
  snprintf(store, sizeof store, "%s", tu_status(c).store_path);
  ck_assert_int_eq(sa_client_checkpoint(c, NULL), 0);
  sa_client_close(c);
  ck_assert_uint_eq(get_format(store), 4);
  set_format(store, 2);

  c = tu_open(&o);
  tu_expect_str(c, "k", "v");
  expect_type(c, "k", "");
  tu_expect_str(c, longkey, "long");
  expect_type(c, longkey, "");
  tu_expect_absent(c, "gone");
  sa_value v;
  ck_assert_int_eq(sa_client_get(c, "peer-key", &v, NULL), 0);
  ck_assert_str_eq(v.origin, "node-p");
  ck_assert_str_eq(v.content_type, "");
  sa_value_free(&v);
  char again[65];
  ck_assert_int_eq(sa_client_sync_digest(c, again, NULL, NULL), 0);
  ck_assert_str_eq(again, digest); /* untyped values hash as before */
  put_typed(c, longkey, "typed now", "text/plain");
  expect_type(c, longkey, "text/plain");
  sa_client_close(c);
  ck_assert_uint_eq(get_format(store), 4);

  /* A format this build does not know is refused, naming it. */
  set_format(store, 5);
  sa_error e;
  ck_assert_int_eq(sa_client_open(&c, &o, &e), SA_EFORMAT);
  ck_assert_msg(strstr(e.message, "format version 5"), "%s", e.message);
}
END_TEST

/* ---- sync between two nodes ---------------------------------------------------- */

/* sa_client_sync_read once the store holds every answered write (the feed
 * serves what the store holds; sa_client_get's read barrier commits). */
static void feed_read(sa_client *c, sa_sync_page *p) {
  sa_value v;
  (void)sa_client_get(c, "doc", &v, NULL);
  sa_value_free(&v);
  sa_error e;
  ck_assert_msg(sa_client_sync_read(c, 0, 100, NULL, p, &e) == 0, "%s", e.message);
}

static int count_typed(void *arg, const sa_sync_item *it) {
  if (it->content_type && strcmp(it->content_type, "application/json") == 0) ++*(int *)arg;
  return 0;
}

START_TEST(sync_moves_the_type) {
  char wal_b[TU_PATH_MAX];
  sa_options oa = node_opts();
  sa_options ob = tu_options("node-b", dir, wal_b);
  ob.tick_manual = true;
  sa_client *a = tu_open(&oa), *b = tu_open(&ob);
  put_typed(a, "doc", "{}", "application/json");
  tu_put(a, "raw", "bytes");
  sa_sync_page p;
  feed_read(a, &p);
  ck_assert_uint_eq(p.count, 2);
  ck_assert_str_eq(p.items[0].content_type, "application/json");
  ck_assert_ptr_null(p.items[1].content_type);
  sa_sync_apply_result res;
  sa_error e;
  ck_assert_msg(sa_client_sync_apply(b, "node-t", p.items, p.count, p.next_since, &res, &e) == 0,
                "%s", e.message);
  ck_assert_uint_eq(res.applied, 2);
  sa_sync_page_free(&p);
  expect_type(b, "doc", "application/json");
  expect_type(b, "raw", "");
  char da[65], db[65];
  ck_assert_int_eq(sa_client_sync_digest(a, da, NULL, NULL), 0);
  ck_assert_int_eq(sa_client_sync_digest(b, db, NULL, NULL), 0);
  ck_assert_str_eq(da, db);
  /* B relays it on with the type (its own feed and snapshot). */
  feed_read(b, &p);
  ck_assert_uint_eq(p.count, 2);
  ck_assert_str_eq(p.items[0].content_type, "application/json");
  sa_sync_page_free(&p);
  int typed = 0;
  ck_assert_int_eq(sa_client_sync_snapshot(b, count_typed, &typed, NULL, NULL), 0);
  ck_assert_int_eq(typed, 1);
  sa_changes ch;
  ck_assert_int_eq(sa_client_changes(b, 0, 100, false, &ch, NULL), 0);
  ck_assert_uint_eq(ch.count, 2);
  ck_assert_str_eq(ch.items[0].content_type, "application/json");
  sa_changes_free(&ch);

  /* The type differs, the rest is equal: the digests differ. */
  sa_put_opts po = {.content_type = "text/plain"};
  ck_assert_int_eq(sa_client_put_opts(a, "same", "v", 1, &po, NULL, NULL), 0);
  feed_read(a, &p);
  sa_sync_item *last = &p.items[p.count - 1];
  ck_assert_str_eq(last->key, "same");
  free(last->content_type);
  last->content_type = NULL;
  ck_assert_int_eq(sa_client_sync_apply(b, "node-t", last, 1, p.next_since, NULL, NULL), 0);
  sa_sync_page_free(&p);
  ck_assert_int_eq(sa_client_sync_digest(a, da, NULL, NULL), 0);
  ck_assert_int_eq(sa_client_sync_digest(b, db, NULL, NULL), 0);
  ck_assert_str_ne(da, db);

  /* A bad type refuses the whole batch, naming the item. */
  sa_sync_item bad[2] = {{.seq = 9,
                          .op = SA_OP_PUT,
                          .key = "x",
                          .data = "1",
                          .len = 1,
                          .hlc = (uint64_t)9 << 16,
                          .origin = "node-t",
                          .origin_lsn = 9},
                         {.seq = 10,
                          .op = SA_OP_PUT,
                          .key = "y",
                          .data = "1",
                          .len = 1,
                          .hlc = (uint64_t)10 << 16,
                          .origin = "node-t",
                          .origin_lsn = 10,
                          .content_type = "text/plain\r\nSet-Cookie: a=b"}};
  uint64_t before = tu_status(b).last_lsn;
  ck_assert_int_eq(sa_client_sync_apply(b, "node-t", bad, 2, 10, NULL, &e), SA_EINVAL);
  ck_assert_msg(strstr(e.message, "sync item 1") && strstr(e.message, "0x0D"), "%s", e.message);
  ck_assert_uint_eq(tu_status(b).last_lsn, before);
  tu_expect_absent(b, "x");
  sa_client_close(a);
  sa_client_close(b);
}
END_TEST

/* ---- backup and restore ------------------------------------------------------------ */

static int sink_file(void *ctx, const void *buf, size_t len) {
  return fwrite(buf, 1, len, ctx) == len ? 0 : -1;
}

START_TEST(backup_and_restore_keep_the_type) {
  sa_options o = node_opts();
  sa_client *c = tu_open(&o);
  put_typed(c, "doc", "{}", "application/json");
  char bk[TU_PATH_MAX], wal_r[TU_PATH_MAX], store_r[TU_PATH_MAX];
  tu_path(bk, dir, "b.sabk");
  FILE *f = fopen(bk, "wb");
  ck_assert_ptr_nonnull(f);
  sa_error e;
  ck_assert_msg(sa_client_backup(c, sink_file, f, NULL, &e) == 0, "%s", e.message);
  fclose(f);
  sa_client_close(c);
  char rdir[TU_PATH_MAX];
  tu_mkdir(rdir);
  tu_path(store_r, rdir, "node-r.mdb");
  ck_assert_msg(sa_backup_restore(bk, store_r, "node-r", NULL, NULL, &e) == 0, "%s", e.message);
  sa_options orr = tu_options("node-r", rdir, wal_r);
  c = tu_open(&orr);
  expect_type(c, "doc", "application/json");
  sa_client_close(c);
}
END_TEST

/* ---- a memory-only node ------------------------------------------------------------- */

START_TEST(memory_node_keeps_the_type) {
  sa_options o = sa_options_memory("mem");
  sa_client *c = tu_open(&o);
  put_typed(c, "doc", "{}", "application/json");
  expect_type(c, "doc", "application/json");
  sa_client_close(c);
}
END_TEST

int main(void) {
  Suite *s = suite_create("ctype");
  TCase *t = tcase_create("core");
  tcase_set_timeout(t, 60);
  tcase_add_checked_fixture(t, setup, NULL);
  tcase_add_test(t, every_read_returns_the_type);
  tcase_add_test(t, bad_types_are_refused_before_anything_is_logged);
  tcase_add_test(t, kill9_after_an_acknowledged_typed_put_replays_the_type);
  tcase_add_test(t, format_2_store_is_upgraded_in_place);
  tcase_add_test(t, sync_moves_the_type);
  tcase_add_test(t, backup_and_restore_keep_the_type);
  tcase_add_test(t, memory_node_keeps_the_type);
  suite_add_tcase(s, t);
  return tu_main(s);
}
