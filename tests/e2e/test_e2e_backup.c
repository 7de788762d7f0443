/*
 * test_e2e_backup.c -- online backup, restore and the change feed's checked
 * positions, against real nodes and the real CLI:
 *   - a backup taken while writer threads keep writing (batches of two keys
 *     over HTTP) is restored into a new directory, served, and holds every
 *     write acknowledged before the backup began, with no torn batch; the
 *     restored node has a new epoch;
 *   - a truncated, bit-flipped (data, header) or foreign file is refused by
 *     `backup verify` and by `restore`, naming the cause, and leaves the
 *     target directory untouched; restore into a non-empty directory is
 *     refused unless --force;
 *   - the feed refuses a position ahead of the node (409 since_ahead, the
 *     real last_lsn and epoch) and one from another epoch (410 gone, reason
 *     epoch), by query and by Last-Event-ID "EPOCH:LSN"; `watch` says so
 *     and exits 1; the epoch survives a restart of the same store.
 * Nothing here asserts on timing.
 */
#define _GNU_SOURCE
#include <check.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "e2e_util.h"

#define WRITERS 4
#define KEYS 8        /* pairs per writer */
#define MAX_SEQ 50000 /* bound on each writer's batches */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cli(const e2e_node *n, char **out, char **err, const char *const *args) {
  char *o = NULL, *e = NULL;
  int rc = e2e_cli(n, args, NULL, &o, &e);
  if (out)
    *out = o;
  else
    free(o);
  if (err)
    *err = e;
  else
    free(e);
  return rc;
}
#define CLI(n, out, err, ...) cli(n, out, err, (const char *const[]){__VA_ARGS__, NULL})

static void has(const char *text, const char *needle) {
  ck_assert_msg(text && strstr(text, needle) != NULL, "output lacks \"%s\":\n%s", needle,
                text ? text : "(null)");
}

static char *status_epoch(const e2e_node *n) {
  e2e_resp r;
  ck_assert_int_eq(e2e_http(n, "GET", "/v1/status", NULL, NULL, 0, &r), 0);
  ck_assert_int_eq(r.status, 200);
  json_t *j = json_loads(r.body, 0, NULL);
  const char *e = json_string_value(json_object_get(j, "epoch"));
  ck_assert_msg(e && strlen(e) == 16, "no epoch in %s", r.body);
  char *out = strdup(e);
  json_decref(j);
  e2e_resp_free(&r);
  return out;
}

/* ---- a backup under write load ------------------------------------------------ */

typedef struct writer {
  const e2e_node *n;
  int id;
  pthread_t th;
  atomic_bool *stop;
  int before_seq[KEYS]; /* the last seq acknowledged before the backup began, per pair */
  int sent_max[KEYS];   /* the highest seq sent */
  double *backup_start; /* set by the main thread before it starts the backup ... */
  atomic_bool *started; /* ... then this: the backup begins after it */
  long acked, errors;
  char first_error[256];
} writer;

static void *writer_main(void *arg) {
  writer *w = arg;
  for (int seq = 1; seq <= MAX_SEQ && !atomic_load(w->stop); seq++) {
    int k = seq % KEYS;
    char body[256];
    snprintf(body, sizeof body,
             "{\"ops\":[{\"op\":\"put\",\"key\":\"w%d/a%d\",\"value\":\"s%d\"},"
             "{\"op\":\"put\",\"key\":\"w%d/b%d\",\"value\":\"s%d\"}]}",
             w->id, k, seq, w->id, k, seq);
    const char *hdr[] = {"Content-Type: application/json", NULL};
    w->sent_max[k] = seq;
    e2e_resp r;
    if (e2e_http(w->n, "POST", "/v1/batch", hdr, body, strlen(body), &r) != 0) {
      if (!w->errors++) snprintf(w->first_error, sizeof w->first_error, "connection failed");
      continue;
    }
    double end = now_s();
    if (r.status == 200) {
      /* Before the backup began: seen before `started` was set (so before
       * the CLI ran), or answered before backup_start. */
      if (!atomic_load(w->started) || end < *w->backup_start) w->before_seq[k] = seq;
      w->acked++;
    } else if (!w->errors++) {
      snprintf(w->first_error, sizeof w->first_error, "HTTP %ld: %.200s", r.status, r.body);
    }
    e2e_resp_free(&r);
  }
  return NULL;
}

static int value_seq(const e2e_node *n, int w, char ab, int k) {
  char path[64];
  snprintf(path, sizeof path, "/v1/store/w%d/%c%d?raw=1", w, ab, k);
  e2e_resp r;
  ck_assert_int_eq(e2e_http(n, "GET", path, NULL, NULL, 0, &r), 0);
  int seq = 0;
  if (r.status == 200)
    ck_assert_msg(sscanf(r.body, "s%d", &seq) == 1, "bad value %s", r.body);
  else
    ck_assert_msg(r.status == 404, "GET %s: %ld", path, r.status);
  e2e_resp_free(&r);
  return seq;
}

START_TEST(test_backup_under_load) {
  e2e_node a, b;
  e2e_node_init(&a);
  e2e_node_init(&b);
  /* Commits of the store 300 ms behind the answers: a backup that copied
   * without first making the store hold every acknowledged write would
   * miss a whole window of them. */
  const char *slow[] = {"--store-commit-ms", "300", NULL};
  ck_assert_int_eq(e2e_node_start(&a, slow, NULL, NULL), 0);
  char *epoch_a = status_epoch(&a);
  atomic_bool stop, started;
  atomic_init(&stop, false);
  atomic_init(&started, false);
  double t0 = 0;
  writer ws[WRITERS];
  memset(ws, 0, sizeof ws);
  for (int i = 0; i < WRITERS; i++) {
    ws[i].n = &a;
    ws[i].id = i;
    ws[i].stop = &stop;
    ws[i].started = &started;
    ws[i].backup_start = &t0;
    ck_assert_int_eq(pthread_create(&ws[i].th, NULL, writer_main, &ws[i]), 0);
  }
  usleep(400 * 1000); /* some state before */
  t0 = now_s();       /* every write acknowledged before now must be in the backup */
  atomic_store(&started, true);
  char path[400];
  snprintf(path, sizeof path, "%s/node.sabackup", a.dir);
  char *out = NULL, *err = NULL;
  int rc = CLI(&a, &out, &err, "backup", path, "--quiet");
  ck_assert_msg(rc == 0, "backup: exit %d: %s %s", rc, out, err);
  has(out, "applied_lsn");
  free(out);
  free(err);
  usleep(200 * 1000); /* writes after */
  atomic_store(&stop, true);
  long acked = 0;
  for (int i = 0; i < WRITERS; i++) {
    pthread_join(ws[i].th, NULL);
    ck_assert_msg(ws[i].errors == 0, "writer %d: %ld errors, first: %s", i, ws[i].errors,
                  ws[i].first_error);
    acked += ws[i].acked;
  }
  ck_assert_msg(acked > 20, "only %ld batches acknowledged", acked);
  ck_assert_int_eq(CLI(NULL, &out, &err, "backup", "verify", path), 0);
  has(out, "ok:");
  free(out);
  free(err);
  ck_assert_int_eq(e2e_node_stop(&a, SIGTERM), 0);

  rc = CLI(NULL, &out, &err, "restore", path, "--data-dir", b.data_dir);
  ck_assert_msg(rc == 0, "restore: exit %d: %s %s", rc, out, err);
  has(out, "new epoch");
  free(out);
  free(err);
  ck_assert_int_eq(e2e_node_start(&b, NULL, NULL, NULL), 0);
  char *epoch_b = status_epoch(&b);
  ck_assert_str_ne(epoch_a, epoch_b);
  int checked = 0;
  for (int i = 0; i < WRITERS; i++)
    for (int k = 0; k < KEYS; k++) {
      int must = ws[i].before_seq[k];
      int sa = value_seq(&b, i, 'a', k), sb = value_seq(&b, i, 'b', k);
      ck_assert_msg(sa == sb, "torn batch: w%d pair %d holds a=s%d b=s%d", i, k, sa, sb);
      ck_assert_msg(sa >= must,
                    "w%d pair %d: restored s%d, but s%d was acknowledged before the "
                    "backup began",
                    i, k, sa, must);
      ck_assert_msg(sa <= ws[i].sent_max[k], "w%d pair %d: s%d was never sent", i, k, sa);
      checked += must > 0;
    }
  ck_assert_msg(checked > 0, "no pair had an acknowledged write before the backup");
  /* A feed position of the old epoch is refused on the restored node. */
  char q[128];
  snprintf(q, sizeof q, "/v1/changes?since=1&epoch=%s", epoch_a);
  e2e_resp r;
  ck_assert_int_eq(e2e_http(&b, "GET", q, NULL, NULL, 0, &r), 0);
  ck_assert_int_eq(r.status, 410);
  has(r.body, "\"reason\":\"epoch\"");
  has(r.body, epoch_b);
  e2e_resp_free(&r);
  /* The restored node goes on writing after the copy's LSN. */
  ck_assert_int_eq(e2e_http(&b, "PUT", "/v1/store/after", NULL, "x", 1, &r), 0);
  ck_assert_int_eq(r.status, 201);
  e2e_resp_free(&r);
  free(epoch_a);
  free(epoch_b);
  ck_assert_int_eq(e2e_node_stop(&b, SIGTERM), 0);
  e2e_node_cleanup(&a);
  e2e_node_cleanup(&b);
}
END_TEST

/* ---- damaged and foreign backups, non-empty directories -------------------------- */

static void copy_file(const char *from, const char *to, long cut, long flip) {
  size_t len = 0;
  char *d = e2e_read_file(from, &len);
  ck_assert_ptr_nonnull(d);
  if (flip >= 0) d[flip < (long)len ? flip : (long)len - 1] ^= 0x10;
  if (cut > 0) len = (size_t)cut < len ? len - (size_t)cut : 0;
  FILE *f = fopen(to, "wb");
  ck_assert_ptr_nonnull(f);
  ck_assert_uint_eq(fwrite(d, 1, len, f), len);
  fclose(f);
  free(d);
}

static bool dir_exists(const char *p) {
  struct stat st;
  return stat(p, &st) == 0;
}

/* verify and restore both refuse file, saying why; the target stays absent. */
static void refused(const char *file, const char *why, const char *target) {
  char *out = NULL, *err = NULL;
  int rc = CLI(NULL, &out, &err, "backup", "verify", file);
  ck_assert_msg(rc == 1, "verify of %s: exit %d: %s", file, rc, out);
  has(err, why);
  free(out);
  free(err);
  rc = CLI(NULL, &out, &err, "restore", file, "--data-dir", target);
  ck_assert_msg(rc == 1, "restore of %s: exit %d: %s", file, rc, out);
  has(err, why);
  ck_assert_msg(!dir_exists(target), "a refused restore created %s", target);
  free(out);
  free(err);
}

START_TEST(test_damaged_backups_refused) {
  e2e_node a;
  e2e_node_init(&a);
  ck_assert_int_eq(e2e_node_start(&a, NULL, NULL, NULL), 0);
  e2e_resp r;
  for (int i = 0; i < 50; i++) {
    char p[64], v[64];
    snprintf(p, sizeof p, "/v1/store/k%d", i);
    snprintf(v, sizeof v, "value %d", i);
    ck_assert_int_eq(e2e_http(&a, "PUT", p, NULL, v, strlen(v), &r), 0);
    ck_assert_int_eq(r.status, 201);
    e2e_resp_free(&r);
  }
  char good[400], bad[400], target[290], store[400];
  snprintf(good, sizeof good, "%s/good.sabackup", a.dir);
  snprintf(bad, sizeof bad, "%s/bad.sabackup", a.dir);
  snprintf(target, sizeof target, "%s/restored", a.dir);
  snprintf(store, sizeof store, "%s/node-1.mdb", a.data_dir);
  char *out = NULL, *err = NULL;
  ck_assert_int_eq(CLI(&a, &out, &err, "backup", good, "--quiet"), 0);
  free(out);
  free(err);
  /* An existing DEST is not overwritten without --force. */
  ck_assert_int_eq(CLI(&a, &out, &err, "backup", good, "--quiet"), 1);
  has(err, "exists");
  free(out);
  free(err);
  ck_assert_int_eq(e2e_node_stop(&a, SIGTERM), 0);

  copy_file(good, bad, 100, -1); /* cut inside the data */
  refused(bad, "truncated", target);
  copy_file(good, bad, 10, -1); /* cut inside the trailer */
  refused(bad, "truncated", target);
  copy_file(good, bad, 0, 5000); /* one bit flipped in the data */
  refused(bad, "CRC-32C", target);
  copy_file(good, bad, 0, 60); /* in the header (the node id) */
  refused(bad, "damaged header", target);
  copy_file(store, bad, 0, -1); /* a raw store file: foreign */
  refused(bad, "not a softadastra backup", target);
  refused(target, "cannot open backup", target); /* missing */

  /* Non-empty target: refused unless --force (which replaces the node's files). */
  ck_assert_int_eq(CLI(NULL, &out, &err, "restore", good, "--data-dir", a.data_dir), 1);
  has(err, "not empty");
  free(out);
  free(err);
  ck_assert_int_eq(CLI(NULL, &out, &err, "restore", good, "--data-dir", a.data_dir, "--force"), 0);
  has(out, "new epoch");
  free(out);
  free(err);
  /* Another node id: the store is relabelled and that node opens it. */
  ck_assert_int_eq(CLI(NULL, &out, &err, "restore", good, "--data-dir", target, "--node-id", "n2"),
                   0);
  free(out);
  free(err);
  e2e_node b;
  e2e_node_init(&b);
  rmdir(b.data_dir);
  snprintf(b.data_dir, sizeof b.data_dir, "%s", target);
  const char *args[] = {"--data-dir", target, "--node-id", "n2", NULL};
  ck_assert_int_eq(e2e_node_start(&b, args, NULL, NULL), 0);
  ck_assert_int_eq(e2e_http(&b, "GET", "/v1/store/k49?raw=1", NULL, NULL, 0, &r), 0);
  ck_assert_int_eq(r.status, 200);
  ck_assert_str_eq(r.body, "value 49");
  e2e_resp_free(&r);
  ck_assert_int_eq(e2e_node_stop(&b, SIGTERM), 0);
  e2e_node_cleanup(&b);
  e2e_node_cleanup(&a);
}
END_TEST

/* ---- the feed's positions ---------------------------------------------------------- */

START_TEST(test_feed_positions) {
  e2e_node a;
  e2e_node_init(&a);
  ck_assert_int_eq(e2e_node_start(&a, NULL, NULL, NULL), 0);
  e2e_resp r;
  for (int i = 0; i < 3; i++) {
    ck_assert_int_eq(e2e_http(&a, "PUT", "/v1/store/k", NULL, "v", 1, &r), 0);
    e2e_resp_free(&r);
  }
  char *ep = status_epoch(&a);
  char q[200];
  /* Ahead of the node: 409 with the real last LSN and the epoch. */
  ck_assert_int_eq(e2e_http(&a, "GET", "/v1/changes?since=99999", NULL, NULL, 0, &r), 0);
  ck_assert_int_eq(r.status, 409);
  has(r.body, "\"code\":\"since_ahead\"");
  has(r.body, "\"last_lsn\":3");
  has(r.body, ep);
  e2e_resp_free(&r);
  /* The same through Last-Event-ID, with and without an epoch. */
  snprintf(q, sizeof q, "Last-Event-ID: %s:99", ep);
  const char *h1[] = {"Accept: text/event-stream", q, NULL};
  ck_assert_int_eq(e2e_http(&a, "GET", "/v1/changes", h1, NULL, 0, &r), 0);
  ck_assert_int_eq(r.status, 409);
  e2e_resp_free(&r);
  /* Another epoch: 410 gone, reason epoch, by query and by Last-Event-ID. */
  ck_assert_int_eq(
      e2e_http(&a, "GET", "/v1/changes?since=1&epoch=0123456789abcdef", NULL, NULL, 0, &r), 0);
  ck_assert_int_eq(r.status, 410);
  has(r.body, "\"code\":\"gone\"");
  has(r.body, "\"reason\":\"epoch\"");
  has(r.body, "\"last_lsn\":3");
  e2e_resp_free(&r);
  const char *h2[] = {"Accept: text/event-stream", "Last-Event-ID: 77:1", NULL};
  ck_assert_int_eq(e2e_http(&a, "GET", "/v1/changes", h2, NULL, 0, &r), 0);
  ck_assert_int_eq(r.status, 410);
  e2e_resp_free(&r);
  /* A malformed epoch is a 400. */
  ck_assert_int_eq(e2e_http(&a, "GET", "/v1/changes?since=1&epoch=xyz", NULL, NULL, 0, &r), 0);
  ck_assert_int_eq(r.status, 400);
  e2e_resp_free(&r);
  /* The right epoch and a kept position: served, with the epoch and the real last LSN. */
  snprintf(q, sizeof q, "/v1/changes?since=1&epoch=%s", ep);
  ck_assert_int_eq(e2e_http(&a, "GET", q, NULL, NULL, 0, &r), 0);
  ck_assert_int_eq(r.status, 200);
  has(r.body, "\"last_lsn\":3");
  has(r.body, ep);
  e2e_resp_free(&r);
  ck_assert_int_eq(e2e_http(&a, "GET", "/v1/changes?since=3", NULL, NULL, 0, &r), 0);
  ck_assert_int_eq(r.status, 200);
  e2e_resp_free(&r);
  /* watch: says so and exits 1; with --from-now it starts over (stopped by its bound). */
  char *out = NULL, *err = NULL;
  ck_assert_int_eq(CLI(&a, &out, &err, "watch", "--since", "99"), 1);
  has(err, "ahead of this node's last LSN 3");
  has(err, "--from-now");
  free(out);
  free(err);
  /* The epoch belongs to the store: a restart keeps it (positions stay good). */
  ck_assert_int_eq(e2e_node_stop(&a, SIGTERM), 0);
  ck_assert_int_eq(e2e_node_start(&a, NULL, NULL, NULL), 0);
  char *again = status_epoch(&a);
  ck_assert_str_eq(again, ep);
  snprintf(q, sizeof q, "/v1/changes?since=3&epoch=%s", ep);
  ck_assert_int_eq(e2e_http(&a, "GET", q, NULL, NULL, 0, &r), 0);
  ck_assert_int_eq(r.status, 200);
  e2e_resp_free(&r);
  free(again);
  free(ep);
  ck_assert_int_eq(e2e_node_stop(&a, SIGTERM), 0);
  e2e_node_cleanup(&a);
}
END_TEST

static Suite *e2e_backup_suite(void) {
  Suite *s = suite_create("e2e_backup");
  TCase *tc = tcase_create("backup");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, test_backup_under_load);
  tcase_add_test(tc, test_damaged_backups_refused);
  tcase_add_test(tc, test_feed_positions);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
  SRunner *sr = srunner_create(e2e_backup_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  curl_global_cleanup();
  return failed ? 1 : 0;
}
