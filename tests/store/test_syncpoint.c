/*
 * test_syncpoint.c -- the store's sync points (core/store_syncpoint.c): LMDB runs with
 * MDB_NOSYNC, and after a power loss the file must go back to exactly the
 * last sync point, whatever subset of the later writes reached the disk.
 *
 * A power loss is played on a copy of the file: taken right after a sync
 * point (that is what the disk holds then), and the file as the later,
 * unsynced commits left it.  The lost-power disk takes each page from one
 * or the other at random (the kernel writes dirty pages back in any order,
 * meta pages included), and the boot id changes.  Without the pinned
 * snapshot a later commit reuses pages of the synced one, and the mix is a
 * corrupt B-tree; without the restore a newer meta page points at pages
 * that never reached the disk.
 */
#define _GNU_SOURCE
#include "internal.h"
#include "store.h"
#include "test_util.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAP_BYTES (256u << 20)
#define NKEYS 600

static char dir[TU_PATH_MAX], path[TU_PATH_MAX], boot[TU_PATH_MAX];

static void set_boot(const char *id) {
  FILE *f = fopen(boot, "w");
  ck_assert_ptr_nonnull(f);
  fprintf(f, "%s\n", id);
  fclose(f);
}

/* The model: the value of key i in round r is "r<r>-k<i>-..." or absent. */
static int model[NKEYS]; /* round of the value, -1: absent (setup) */

static void setup(void) {
  for (int i = 0; i < NKEYS; i++)
    model[i] = -1;
  tu_mkdir(dir);
  tu_path(path, dir, "store.mdb");
  tu_path(boot, dir, "boot_id");
  set_boot("boot-1");
  store_set_boot_id_path(boot);
}

static void teardown(void) {
  store_set_boot_id_path(NULL); /* the directory goes with the run's base (tu_main) */
}

static sa_store *open_store(void) {
  sa_store *s;
  sa_error e = {0};
  ck_assert_msg(store_open(&s, path, "node-s", true, MAP_BYTES, &e) == 0, "%s", e.message);
  ck_assert_int_eq(store_mode(s), STORE_SNAPSHOTS);
  return s;
}

static void key_of(int i, char *k, size_t n) {
  snprintf(k, n, "key/%05d", i);
}

static size_t value_of(int i, int round, char *v, size_t n) {
  /* Values of different sizes, some spanning overflow pages. */
  size_t len = 20 + (size_t)((i * 37 + round * 11) % 7) * 900;
  if (len > n) len = n;
  int h = snprintf(v, n, "r%d-k%d-", round, i);
  for (size_t j = (size_t)h; j < len; j++)
    v[j] = (char)('a' + (j + (size_t)i) % 26);
  return len;
}

static void sync_point(sa_store *s) {
  sa_error e = {0};
  ck_assert_msg(store_sync(s, &e) == 0, "%s", e.message);
}

/* One transaction: rewrites, removes or adds every key with rand() < p. */
static void write_round(sa_store *s, int round, unsigned *seed, double p, uint64_t lsn) {
  store_wtxn *t;
  sa_error e = {0};
  ck_assert_msg(store_wbegin(s, &t, &e) == 0, "%s", e.message);
  char k[32], v[6000];
  for (int i = 0; i < NKEYS; i++) {
    if ((double)rand_r(seed) / RAND_MAX >= p) continue;
    key_of(i, k, sizeof k);
    if (model[i] >= 0 && rand_r(seed) % 5 == 0) {
      bool existed;
      ck_assert_msg(
          store_wdel(t, k, (uint32_t)strlen(k), lsn, 1, NULL, 0, 0, false, &existed, &e) == 0, "%s",
          e.message);
      ck_assert(existed);
      model[i] = -1;
    } else {
      uint64_t version;
      size_t n = value_of(i, round, v, sizeof v);
      ck_assert_msg(store_wput(t, k, (uint32_t)strlen(k), v, (uint32_t)n, NULL, 0, lsn, 1, NULL, 0,
                               &version, &e) == 0,
                    "%s", e.message);
      model[i] = round;
    }
  }
  ck_assert_msg(store_wcommit(t, lsn, 1, &e) == 0, "%s", e.message);
}

/* The store holds exactly the model, and its B-trees read back whole. */
static void check_model(sa_store *s, const int *want) {
  char k[32], v[6000];
  uint64_t present = 0;
  for (int i = 0; i < NKEYS; i++) {
    key_of(i, k, sizeof k);
    sa_value got = {0};
    sa_error e = {0};
    int rc = store_get(s, k, (uint32_t)strlen(k), &got, &e);
    if (want[i] < 0) {
      ck_assert_msg(rc == SA_ENOTFOUND, "%s: expected absent, got rc %d (%s)", k, rc, e.message);
      continue;
    }
    ck_assert_msg(rc == 0, "%s: expected round %d, got rc %d (%s)", k, want[i], rc, e.message);
    size_t n = value_of(i, want[i], v, sizeof v);
    ck_assert_msg(got.len == n && memcmp(got.data, v, n) == 0, "%s: value is not round %d's", k,
                  want[i]);
    sa_value_free(&got);
    present++;
  }
  ck_assert_uint_eq(store_count(s), present);
  sa_list l;
  sa_error e = {0};
  ck_assert_msg(store_list(s, "", NULL, NKEYS + 1, true, &l, &e) == 0, "%s", e.message);
  ck_assert_uint_eq(l.count, present);
  sa_list_free(&l);
}

/* Power loss: every page of the file is the synced copy's or the final
 * file's, at random; pages the synced copy did not have are the final
 * file's or zeros. */
static void power_loss(const unsigned char *synced, size_t sn, unsigned *seed) {
  size_t fn;
  unsigned char *fin = tu_read(path, &fn);
  size_t psize = 4096, n = fn > sn ? fn : sn;
  unsigned char *mix = calloc(1, n);
  ck_assert_ptr_nonnull(mix);
  for (size_t off = 0; off < n; off += psize) {
    size_t len = n - off < psize ? n - off : psize;
    int pick = rand_r(seed) % 3; /* 0: the synced page, 1: the later one, 2: torn */
    if (pick == 0 && off < sn) {
      memcpy(mix + off, synced + off, len);
    } else if (pick != 0 && off < fn) {
      memcpy(mix + off, fin + off, len);
      if (pick == 2 && off < sn) memcpy(mix + off, synced + off, len / 2);
    } else if (off < sn) {
      memcpy(mix + off, synced + off, len);
    }
  }
  int fd = open(path, O_WRONLY | O_TRUNC);
  ck_assert_int_ge(fd, 0);
  ck_assert_int_eq(pwrite(fd, mix, n, 0), (ssize_t)n);
  close(fd);
  free(mix);
  free(fin);
}

START_TEST(clean_close_reopens_at_its_sync_point) {
  unsigned seed = 7;
  sa_store *s = open_store();
  for (int r = 0; r < 5; r++)
    write_round(s, r, &seed, 0.5, (uint64_t)r + 1);
  sync_point(s);
  ck_assert_uint_eq(store_synced_lsn(s), 5);
  store_close(s);
  set_boot("boot-2"); /* a reboot after a clean close changes nothing */
  s = open_store();
  const store_open_report *rep = store_report(s);
  ck_assert(!rep->unclean && !rep->rolled_back && !rep->foreign_sync);
  ck_assert_uint_eq(store_applied_lsn(s), 5);
  check_model(s, model);
  store_close(s);
}
END_TEST

/* A power loss at any point after a sync point returns the store to it. */
START_TEST(power_loss_returns_to_the_sync_point) {
  unsigned seed = (unsigned)_i * 7919u + 1;
  sa_store *s = open_store();
  uint64_t lsn = 0;
  for (int r = 0; r < 4; r++)
    write_round(s, r, &seed, 0.6, ++lsn);
  /* Rounds of sync points and unsynced commits, then the power fails. */
  int rounds = 2 + (int)(seed % 3), round = 4;
  int synced_model[NKEYS];
  unsigned char *synced = NULL;
  size_t sn = 0;
  for (int k = 0; k < rounds; k++) {
    sync_point(s);
    memcpy(synced_model, model, sizeof model);
    free(synced);
    synced = tu_read(path, &sn); /* what the disk holds now */
    uint64_t synced_lsn = lsn;
    ck_assert_uint_eq(store_synced_lsn(s), synced_lsn);
    int commits = 5 + (int)(rand_r(&seed) % 40);
    for (int c = 0; c < commits; c++)
      write_round(s, round++, &seed, 0.05 + 0.3 * ((double)rand_r(&seed) / RAND_MAX), ++lsn);
  }
  store_close(s); /* no sync: the later commits are only in the page cache */
  power_loss(synced, sn, &seed);
  set_boot("boot-2");
  s = open_store();
  const store_open_report *rep = store_report(s);
  /* Rolled back -- unless both meta pages on the disk are the synced ones,
   * and then the file is the sync point as it is.  Never kept torn. */
  ck_assert_msg(rep->rolled_back || !rep->unclean, "unclean %d rolled back %d", rep->unclean,
                rep->rolled_back);
  check_model(s, synced_model);
  memcpy(model, synced_model, sizeof model);
  /* And it goes on: more writes, another power loss right after a sync. */
  for (int c = 0; c < 10; c++)
    write_round(s, round++, &seed, 0.2, ++lsn);
  sync_point(s);
  memcpy(synced_model, model, sizeof model);
  free(synced);
  synced = tu_read(path, &sn);
  for (int c = 0; c < 10; c++)
    write_round(s, round++, &seed, 0.2, ++lsn);
  store_close(s);
  power_loss(synced, sn, &seed);
  set_boot("boot-3");
  s = open_store();
  ck_assert(store_report(s)->rolled_back || !store_report(s)->unclean);
  check_model(s, synced_model);
  store_close(s);
  free(synced);
}
END_TEST

/* A process crash leaves the page cache whole: on the same boot the file is
 * kept at its latest commit. */
START_TEST(crash_on_the_same_boot_keeps_the_latest_commit) {
  unsigned seed = 11;
  sa_store *s = open_store();
  for (int r = 0; r < 3; r++)
    write_round(s, r, &seed, 0.5, (uint64_t)r + 1);
  sync_point(s);
  for (int r = 3; r < 20; r++)
    write_round(s, r, &seed, 0.2, (uint64_t)r + 1);
  store_close(s); /* as a kill -9 would: no sync point */
  s = open_store();
  const store_open_report *rep = store_report(s);
  ck_assert(rep->unclean && !rep->rolled_back);
  ck_assert_uint_eq(store_applied_lsn(s), 20);
  ck_assert_uint_eq(store_synced_lsn(s), 20); /* a sync point was taken at open */
  check_model(s, model);
  store_close(s);
}
END_TEST

/* When the boot cannot be told, an unclean stop is treated as a reboot:
 * the store goes back to its sync point (safe; the WAL replays the rest). */
START_TEST(an_unknown_boot_rolls_back) {
  unsigned seed = 17;
  char none[TU_PATH_MAX];
  tu_path(none, dir, "no-such-boot-id"); /* unknown when the record is written, and after */
  store_set_boot_id_path(none);
  sa_store *s = open_store();
  for (int r = 0; r < 3; r++)
    write_round(s, r, &seed, 0.5, (uint64_t)r + 1);
  sync_point(s);
  int synced_model[NKEYS];
  memcpy(synced_model, model, sizeof model);
  for (int r = 3; r < 12; r++)
    write_round(s, r, &seed, 0.2, (uint64_t)r + 1);
  store_close(s); /* no sync point */
  s = open_store();
  const store_open_report *rep = store_report(s);
  ck_assert(rep->unclean && rep->rolled_back);
  ck_assert_uint_eq(store_applied_lsn(s), 3);
  check_model(s, synced_model);
  store_close(s);
}
END_TEST

/* A store file replaced by an older copy, next to the newer sync record:
 * the record does not describe it, so it is not "restored" into it. */
START_TEST(a_sync_record_of_another_file_is_ignored) {
  unsigned seed = 13;
  char old[TU_PATH_MAX];
  tu_path(old, dir, "old.mdb");
  sa_store *s = open_store();
  write_round(s, 0, &seed, 0.5, 1);
  sync_point(s);
  store_close(s);
  int old_model[NKEYS];
  memcpy(old_model, model, sizeof model);
  tu_copy(path, old);
  s = open_store();
  for (int r = 1; r < 6; r++)
    write_round(s, r, &seed, 0.5, (uint64_t)r + 1);
  sync_point(s);
  store_close(s);
  tu_copy(old, path); /* the older copy comes back */
  set_boot("boot-2");
  s = open_store();
  const store_open_report *rep = store_report(s);
  ck_assert(rep->foreign_sync && !rep->rolled_back);
  check_model(s, old_model);
  store_close(s);
}
END_TEST

START_TEST(a_damaged_sync_file_is_refused_with_its_name) {
  sa_store *s = open_store();
  store_close(s);
  char sp[TU_PATH_MAX + 8];
  snprintf(sp, sizeof sp, "%s-sync", path);
  size_t n;
  unsigned char *b = tu_read(sp, &n);
  memset(b, 0x5a, n);
  int fd = open(sp, O_WRONLY);
  ck_assert_int_eq(pwrite(fd, b, n, 0), (ssize_t)n);
  close(fd);
  free(b);
  sa_error e = {0};
  ck_assert_int_eq(store_open(&s, path, "node-s", true, MAP_BYTES, &e), SA_ECORRUPT);
  ck_assert_msg(strstr(e.message, sp) != NULL, "%s", e.message);
  /* Nothing was changed: removing the record opens the store as it is. */
  ck_assert_int_eq(unlink(sp), 0);
  s = open_store();
  store_close(s);
}
END_TEST

int main(void) {
  Suite *su = suite_create("syncpoint");
  TCase *t = tcase_create("syncpoint");
  tcase_set_timeout(t, 120);
  tcase_add_checked_fixture(t, setup, teardown);
  tcase_add_test(t, clean_close_reopens_at_its_sync_point);
  tcase_add_loop_test(t, power_loss_returns_to_the_sync_point, 0, 12);
  tcase_add_test(t, crash_on_the_same_boot_keeps_the_latest_commit);
  tcase_add_test(t, an_unknown_boot_rolls_back);
  tcase_add_test(t, a_sync_record_of_another_file_is_ignored);
  tcase_add_test(t, a_damaged_sync_file_is_refused_with_its_name);
  suite_add_tcase(su, t);
  return tu_main(su);
}
