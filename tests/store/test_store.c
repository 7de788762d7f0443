/*
 * test_store.c -- the LMDB store (core/store_*.c) through the public API:
 * keys longer than LMDB's 511-byte key limit, their order, listing and
 * paging among them, and collisions of the stored form.
 */
#include "softadastra.h"
#include "test_util.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char dir[TU_PATH_MAX], wal[TU_PATH_MAX];

/* A fresh directory per test under the run's base (tu_main removes it). */
static void setup(void) {
  tu_mkdir(dir);
  tu_path(wal, dir, "node-s.wal");
}

static sa_client *open_node(void) {
  sa_options o = sa_options_persistent("node-s", wal);
  o.tick_manual = true;
  return tu_open(&o);
}

/* A key of n bytes: common prefix of p bytes of 'a', then a tail tag. */
static char *mkkey(size_t p, const char *tail) {
  size_t t = strlen(tail);
  char *k = malloc(p + t + 1);
  memset(k, 'a', p);
  memcpy(k + p, tail, t + 1);
  return k;
}

START_TEST(keys_up_to_1024_bytes_round_trip) {
  sa_client *c = open_node();
  size_t lens[] = {1, 479, 480, 481, 511, 512, 1000, 1024};
  for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
    char *k = malloc(lens[i] + 1);
    memset(k, 'k', lens[i]);
    k[lens[i]] = 0;
    char v[32];
    snprintf(v, sizeof v, "len-%zu", lens[i]);
    sa_error e;
    ck_assert_msg(sa_client_put(c, k, v, &e) == 0, "len %zu: %s", lens[i], e.message);
    sa_value got;
    ck_assert_int_eq(sa_client_get(c, k, &got, NULL), 0);
    ck_assert_str_eq(got.data, v);
    sa_value_free(&got);
    free(k);
  }
  ck_assert_uint_eq(sa_client_size(c), 8);
  char *k = malloc(1026);
  memset(k, 'k', 1025);
  k[1025] = 0;
  ck_assert_int_eq(sa_client_put(c, k, "x", NULL), SA_EKEY);
  free(k);
  sa_client_close(c);
}
END_TEST

START_TEST(long_keys_sharing_a_prefix_stay_distinct) {
  sa_client *c = open_node();
  enum { N = 50 };
  char *keys[N];
  for (int i = 0; i < N; i++) {
    char tail[32];
    snprintf(tail, sizeof tail, "/%03d", i);
    keys[i] = mkkey(600, tail);
    ck_assert_int_eq(sa_client_put(c, keys[i], tail, NULL), 0);
  }
  ck_assert_int_eq(sa_client_put(c, keys[7], "again", NULL), 0); /* version 2, same key */
  ck_assert_uint_eq(sa_client_size(c), N);
  for (int i = 0; i < N; i++) {
    sa_value v;
    ck_assert_int_eq(sa_client_get(c, keys[i], &v, NULL), 0);
    ck_assert_uint_eq(v.version, i == 7 ? 2 : 1);
    sa_value_free(&v);
  }
  ck_assert_int_eq(sa_client_remove(c, keys[3], NULL), 0);
  ck_assert_int_eq(sa_client_remove(c, keys[3], NULL), SA_ENOTFOUND);
  sa_value v;
  ck_assert_int_eq(sa_client_get(c, keys[3], &v, NULL), SA_ENOTFOUND);

  /* listing by a prefix longer than 480 bytes finds exactly the matches */
  char *pfx = mkkey(600, "/01");
  sa_list l;
  ck_assert_int_eq(sa_client_list(c, pfx, NULL, 100, false, &l, NULL), 0);
  ck_assert_uint_eq(l.count, 10); /* /010 .. /019 */
  for (size_t i = 0; i < l.count; i++)
    ck_assert_int_eq(strncmp(l.items[i].key, pfx, strlen(pfx)), 0);
  sa_list_free(&l);

  /* paging with a page size of 7 visits each key exactly once */
  int seen[N] = {0}, total = 0;
  char *after = NULL;
  for (int page = 0; page < 100; page++) {
    ck_assert_int_eq(sa_client_list(c, "aaaa", after, 7, false, &l, NULL), 0);
    for (size_t i = 0; i < l.count; i++) {
      int idx = atoi(l.items[i].key + 601);
      ck_assert_int_eq(seen[idx]++, 0);
      total++;
    }
    free(after);
    after = l.count ? strdup(l.items[l.count - 1].key) : NULL;
    bool more = l.more;
    sa_list_free(&l);
    if (!more) break;
  }
  free(after);
  ck_assert_int_eq(total, N - 1);
  free(pfx);
  for (int i = 0; i < N; i++)
    free(keys[i]);
  sa_client_close(c);
}
END_TEST

/* Order is bytewise whenever keys differ within their first 480 bytes, on
 * both sides of the inline limit (keys sharing their first 480 bytes are
 * ordered by hash: see core/store_longkey.c). */
START_TEST(order_is_bytewise_across_the_inline_limit) {
  sa_client *c = open_node();
  char *k480 = mkkey(480, "");                        /* a^480          inline */
  char *kb = mkkey(479, "b-then-enough-to-pass-480"); /* a^479 b...     long   */
  char *kc = mkkey(479, "c-then-enough-to-pass-480"); /* a^479 c...     long   */
  char *kz = mkkey(479, "z");                         /* a^479 z        inline */
  ck_assert_int_eq(sa_client_put(c, kc, "3", NULL), 0);
  ck_assert_int_eq(sa_client_put(c, kb, "2", NULL), 0);
  ck_assert_int_eq(sa_client_put(c, kz, "4", NULL), 0);
  ck_assert_int_eq(sa_client_put(c, k480, "1", NULL), 0);
  ck_assert_int_eq(sa_client_put(c, "b", "5", NULL), 0);
  sa_list l;
  ck_assert_int_eq(sa_client_list(c, NULL, NULL, 10, true, &l, NULL), 0);
  ck_assert_uint_eq(l.count, 5);
  ck_assert_str_eq(l.items[0].data, "1");
  ck_assert_str_eq(l.items[1].data, "2");
  ck_assert_str_eq(l.items[2].data, "3");
  ck_assert_str_eq(l.items[3].data, "4");
  ck_assert_str_eq(l.items[4].data, "5");
  ck_assert_str_eq(l.items[2].key, kc);
  sa_list_free(&l);
  /* paging after a long key resumes right after it */
  ck_assert_int_eq(sa_client_list(c, NULL, kb, 10, true, &l, NULL), 0);
  ck_assert_uint_eq(l.count, 3);
  ck_assert_str_eq(l.items[0].data, "3");
  sa_list_free(&l);
  free(k480);
  free(kb);
  free(kc);
  free(kz);
  sa_client_close(c);
}
END_TEST

/* Rewrites of keys that change their value's size inside one transaction:
 * the put rewrites a present key in place at the cursor its lookup left
 * (store_wput), so the same size, a smaller one, a larger one, one on
 * LMDB's overflow pages and back, and inserts of other keys between them
 * (page splits under that cursor) must each leave exactly the last value
 * and a version that counts every put; the same after replay. */
#define RS_KEYS 200
#define RS_PUTS 6
static size_t rs_size(size_t key, size_t put) {
  static const size_t sizes[RS_PUTS] = {10, 10, 300, 5000, 40, 9000};
  return sizes[(key + put) % RS_PUTS];
}
static void rs_value(char *v, size_t n, size_t key, size_t put) {
  for (size_t i = 0; i < n; i++)
    v[i] = (char)('a' + (key * 7 + put * 3 + i) % 26);
}
static void rs_check(sa_client *c) {
  char *want = malloc(9000);
  for (size_t k = 0; k < RS_KEYS; k++) {
    char key[32];
    snprintf(key, sizeof key, "rs/%03zu", k);
    size_t n = rs_size(k, RS_PUTS - 1);
    rs_value(want, n, k, RS_PUTS - 1);
    sa_value got;
    sa_error e;
    ck_assert_msg(sa_client_get(c, key, &got, &e) == 0, "%s: %s", key, e.message);
    ck_assert_uint_eq(got.len, n);
    ck_assert_msg(memcmp(got.data, want, n) == 0, "%s: wrong bytes", key);
    ck_assert_uint_eq(got.version, RS_PUTS);
    sa_value_free(&got);
    snprintf(key, sizeof key, "rs/%03zu/new", k);
    ck_assert_int_eq(sa_client_get(c, key, &got, NULL), 0);
    ck_assert_uint_eq(got.version, 1);
    sa_value_free(&got);
  }
  free(want);
}

START_TEST(rewrites_that_change_size_in_one_transaction) {
  sa_client *c = open_node();
  size_t n = RS_KEYS * (RS_PUTS + 1);
  sa_batch_op *ops = calloc(n, sizeof *ops);
  char(*keys)[32] = calloc(n, sizeof *keys);
  char **vals = calloc(n, sizeof *vals);
  size_t i = 0;
  for (size_t p = 0; p < RS_PUTS; p++)
    for (size_t k = 0; k < RS_KEYS; k++, i++) {
      snprintf(keys[i], sizeof keys[i], "rs/%03zu", k);
      size_t len = rs_size(k, p);
      vals[i] = malloc(len);
      rs_value(vals[i], len, k, p);
      ops[i] = (sa_batch_op){SA_OP_PUT, keys[i], vals[i], len};
      if (p == 2) { /* a new key beside each: splits while the cursor is in use */
        i++;
        snprintf(keys[i], sizeof keys[i], "rs/%03zu/new", k);
        ops[i] = (sa_batch_op){SA_OP_PUT, keys[i], "n", 1};
      }
    }
  ck_assert_uint_eq(i, n);
  sa_error e;
  sa_write_result res;
  ck_assert_msg(sa_client_batch(c, ops, n, &res, &e) == 0, "%s", e.message);
  rs_check(c);
  sa_client_close(c);
  c = open_node(); /* the same puts again, from the WAL or the store */
  rs_check(c);
  sa_client_close(c);
  for (i = 0; i < n; i++)
    free(vals[i]);
  free(vals);
  free(keys);
  free(ops);
}
END_TEST

START_TEST(long_keys_survive_replay) {
  sa_client *c = open_node();
  char *k = mkkey(900, "/replayed");
  ck_assert_int_eq(sa_client_put(c, k, "v1", NULL), 0);
  ck_assert_int_eq(sa_client_put(c, k, "v2", NULL), 0);
  sa_status st;
  ck_assert_int_eq(sa_client_status(c, &st, NULL), 0);
  char store[512];
  snprintf(store, sizeof store, "%s", st.store_path);
  sa_client_close(c);
  ck_assert_int_eq(remove(store), 0); /* the store is rebuilt from the WAL */
  c = open_node();
  sa_value v;
  ck_assert_int_eq(sa_client_get(c, k, &v, NULL), 0);
  ck_assert_str_eq(v.data, "v2");
  ck_assert_uint_eq(v.version, 2);
  sa_value_free(&v);
  free(k);
  sa_client_close(c);
}
END_TEST

int main(void) {
  Suite *s = suite_create("store");
  TCase *t = tcase_create("keys");
  tcase_add_checked_fixture(t, setup, NULL);
  tcase_add_test(t, keys_up_to_1024_bytes_round_trip);
  tcase_add_test(t, long_keys_sharing_a_prefix_stay_distinct);
  tcase_add_test(t, order_is_bytewise_across_the_inline_limit);
  tcase_add_test(t, long_keys_survive_replay);
  tcase_add_test(t, rewrites_that_change_size_in_one_transaction);
  suite_add_tcase(s, t);
  return tu_main(s);
}
