/*
 * powercut.c -- power cuts, simulated, against the real server.
 *
 * kill -9 (crash.c) cannot tell whether a node survives a POWER LOSS: the
 * kernel's page cache outlives the process and keeps every write it did not
 * sync.  Here the node runs with tests/crash/powercut_shim.c preloaded
 * (LD_PRELOAD): the shim keeps, in a shadow directory, the image a disk
 * would hold if the power failed now -- a write reaches it only when its
 * file is fdatasync'ed/fsync'ed (or at once on an O_DSYNC descriptor), and,
 * to model the kernel writing dirty pages back early and in any order, with
 * probability SA_POWERCUT_WRITEBACK per write one random pending write (or a
 * run of its 4 KiB pages) reaches it early.  Creating, renaming, unlinking
 * files and mkdir reach it at once (the node fsyncs directories where it
 * matters).  The shim's header says exactly what it intercepts.
 *
 * Each cycle:
 *   1. the shadow directory is made a copy of the data directory;
 *   2. the node starts on the data directory with the shim; W writer threads
 *      PUT, DELETE and POST /v1/batch over HTTP on keys of their own
 *      ("pc/w<writer>/k<nn>"), one request at a time each, recording every
 *      outcome: acknowledged (2xx, or 404 for a DELETE of an absent key),
 *      or unknown (the connection died with the node);
 *   3. SIGKILL at a random moment: the power cut.  The shadow directory is
 *      the disk after it and becomes the data directory;
 *   4. the node starts on it WITHOUT the shim and is checked:
 *      (a) it starts (an open error is a failure; its stderr is printed);
 *      (b) every acknowledged write is there with its acknowledged value,
 *          and acknowledged deletes are absent: for each writer the store
 *          must equal the state after all its acknowledged operations, or
 *          after those and the one in flight at the cut;
 *      (c) the whole store is readable: every key is listed with its value
 *          (paginated) and compared with the model, every key of the model
 *          is read with a GET, nothing never written appears, /v1/status
 *          answers with a last LSN at least every acknowledged LSN, and the
 *          node then stops gracefully (exit 0).  LMDB damage shows here as
 *          an error status, a crash or wrong data;
 *   5. the next cycle starts from that state, so damage that is not
 *      repaired accumulates.
 * With --no-auto-flush among the serve arguments acknowledged writes may be
 * lost (the node answers "durable": false), so (b) becomes: for each writer
 * the store equals the state after SOME prefix of its operations; the
 * acknowledged operations beyond it are counted, not failed.
 *
 * usage: sa_powercut PATH/TO/sa_powercut_shim.so PATH/TO/softadastra [SERVE-ARGS...]
 *        (up to 5, e.g. --wal-max-bytes 65536 so checkpoints run all the time)
 * environment: SA_POWERCUT_CYCLES (20), SA_POWERCUT_WRITERS (4),
 *   SA_POWERCUT_SEED (printed at the start; it replays the choices, not the
 *   threads' timing), SA_POWERCUT_WRITEBACK (0.05), SA_POWERCUT_MAX_RUN_MS
 *   (400: the longest run before a cut), SA_POWERCUT_WAL_REPAIR (0; 1: when
 *   the node refuses a WAL that is corrupt after a cut, run `softadastra wal
 *   repair` on it, count it and go on -- for experiments, not for the
 *   tests: an open error fails them), SA_POWERCUT_WARMUP (0; 1: start and
 *   stop the node once without the shim first, so the first cut does not
 *   land on files being created).  Long mode by hand:
 *   SA_POWERCUT_CYCLES=500 ctest -R crash.powercut
 * Exit status 0 when every check held, 1 otherwise, 77 (skipped) in a
 * sanitizer build or under SA_SERVER_WRAPPER: a preloaded library does not
 * mix with the sanitizer runtimes or valgrind.
 *
 * Self-test: SA_POWERCUT_SABOTAGE=1 makes the shim's disk lie about the WAL
 * (from one WAL fdatasync on, WAL syncs report success and persist nothing);
 * the exit status is then inverted: 0 only when the checker reported lost
 * acknowledged writes.  It shows that the checker can fail.
 */
#define _GNU_SOURCE
#include "harness.h"

#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NKEYS 40 /* per writer */
#define MAX_WRITERS 8
#define BATCH_MAX 4
#define MAX_OPS 20000 /* per writer and cycle */
#define REQ_TIMEOUT_MS 30000
#define SKIP 77

enum { OP_ACKED = 1, OP_UNKNOWN, OP_REFUSED };

typedef struct kstate { /* a key's state: absent, or the value of (cycle, seq, index) */
  bool present;
  int c, s, i;
} kstate;

typedef struct op {
  int state, n;
  bool batch;
  struct {
    int k;
    bool put;
  } eff[BATCH_MAX];
} op;

typedef struct writer {
  int id;
  pthread_t th;
  unsigned seed;
  op *ops;
  int nops;
  kstate cur[NKEYS]; /* after every acknowledged op: what the writer believes */
  uint64_t max_lsn;
  long errors;
  char first_error[512];
} writer;

static struct {
  bool strict, sabotage;
  int cycles, nwriters, max_run_ms, cycle;
  char url[64];
  atomic_int stop, killed;
  writer w[MAX_WRITERS];
  kstate base[MAX_WRITERS][NKEYS]; /* verified after the previous cut */
  uint64_t acked_lsn_max;
  long failures, lost_reports;
  long acked_checked, unknown_ops, unknown_applied, keys_checked, acked_beyond_prefix;
  long shim[12]; /* summed counters of the shim */
  bool wal_repair, warmup;
  long wal_repairs;
} g;

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  printf("FAIL [cycle %d] ", g.cycle);
  vprintf(fmt, ap);
  putchar('\n');
  va_end(ap);
  fflush(stdout);
  g.failures++;
  if (strstr(fmt, "lost")) g.lost_reports++;
}

static void key_name(int w, int k, char *buf, size_t len) {
  snprintf(buf, len, "pc/w%d/k%02d", w, k);
}

/* The value of effect i of op s of writer w in cycle c: unique, its length
 * a function of the name (one in ten is 1 to 6 KiB: overflow pages in the
 * store, WAL writes over several pages). */
static void value_of(int w, int c, int s, int i, char *buf, size_t len) {
  int n = snprintf(buf, len, "w%d.c%d.s%d.i%d.", w, c, s, i);
  unsigned h = (unsigned)(w * 2654435761u) ^ (unsigned)(c * 40503u) ^ (unsigned)(s * 9176u) ^
               (unsigned)(i * 77u);
  h ^= h >> 13;
  h *= 0x5bd1e995u;
  h ^= h >> 15;
  int pad = h % 10u == 0 ? 1000 + (int)(h % 5000u) : (int)(h % 200u);
  for (int k = 0; k < pad && n + 1 < (int)len; k++)
    buf[n++] = (char)('a' + ((unsigned)k + h) % 26u);
  buf[n] = 0;
}

static void state_str(int w, const kstate *st, char *buf, size_t len) {
  if (!st->present)
    snprintf(buf, len, "absent");
  else
    snprintf(buf, len, "the value of w%d.c%d.s%d.i%d", w, st->c, st->s, st->i);
}

static bool kstate_eq(const kstate *a, const kstate *b) {
  return a->present == b->present && (!a->present || (a->c == b->c && a->s == b->s && a->i == b->i));
}

static int rnd(unsigned *seed, int n) {
  return (int)(rand_r(seed) % (unsigned)n);
}

static void writer_error(writer *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void writer_error(writer *w, const char *fmt, ...) {
  if (w->errors++ == 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->first_error, sizeof w->first_error, fmt, ap);
    va_end(ap);
  }
}

/* ---- writers --------------------------------------------------------------- */

static void *writer_main(void *arg) {
  writer *w = arg;
  hs_conn *c = hs_conn_new();
  char *body = malloc(64 * 1024), *val = malloc(8192);
  char path[128], kname[32];
  if (!c || !body || !val) {
    writer_error(w, "out of memory");
    goto out;
  }
  while (!atomic_load(&g.stop) && w->nops < MAX_OPS) {
    op *o = &w->ops[w->nops];
    memset(o, 0, sizeof *o);
    int seq = w->nops, kind = rnd(&w->seed, 20);
    const char *method, *ctype = NULL;
    size_t blen = 0;
    if (kind < 13) { /* put */
      o->n = 1;
      o->eff[0].k = rnd(&w->seed, NKEYS);
      o->eff[0].put = true;
      key_name(w->id, o->eff[0].k, kname, sizeof kname);
      value_of(w->id, g.cycle, seq, 0, val, 8192);
      snprintf(path, sizeof path, "/v1/store/%s", kname);
      method = "PUT";
      blen = strlen(val);
      memcpy(body, val, blen + 1);
    } else if (kind < 17) { /* delete, mostly of a present key */
      int k = rnd(&w->seed, NKEYS);
      for (int tries = 0; tries < 8 && !w->cur[k].present && rnd(&w->seed, 4) != 0; tries++)
        k = rnd(&w->seed, NKEYS);
      o->n = 1;
      o->eff[0].k = k;
      key_name(w->id, k, kname, sizeof kname);
      snprintf(path, sizeof path, "/v1/store/%s", kname);
      method = "DELETE";
    } else { /* batch of distinct keys */
      o->batch = true;
      o->n = 2 + rnd(&w->seed, BATCH_MAX - 1);
      for (int i = 0; i < o->n; i++) {
        int k;
        bool dup;
        do {
          k = rnd(&w->seed, NKEYS);
          dup = false;
          for (int j = 0; j < i; j++)
            dup = dup || o->eff[j].k == k;
        } while (dup);
        o->eff[i].k = k;
        o->eff[i].put = rnd(&w->seed, 10) < 7;
      }
      blen = (size_t)sprintf(body, "{\"ops\":[");
      for (int i = 0; i < o->n; i++) {
        key_name(w->id, o->eff[i].k, kname, sizeof kname);
        if (o->eff[i].put) {
          value_of(w->id, g.cycle, seq, i, val, 8192);
          blen += (size_t)sprintf(body + blen, "%s{\"op\":\"put\",\"key\":\"%s\",\"value\":\"%s\"}",
                                  i ? "," : "", kname, val);
        } else {
          blen += (size_t)sprintf(body + blen, "%s{\"op\":\"delete\",\"key\":\"%s\"}", i ? "," : "",
                                  kname);
        }
      }
      blen += (size_t)sprintf(body + blen, "]}");
      snprintf(path, sizeof path, "/v1/batch");
      method = "POST";
      ctype = "application/json";
    }
    o->state = OP_UNKNOWN;
    w->nops++; /* recorded before it is sent: it may be applied */
    hs_resp r;
    int rc = hs_http(c, method, g.url, path, strcmp(method, "DELETE") ? body : NULL, blen, ctype,
                     REQ_TIMEOUT_MS, &r);
    if (rc != 0) {
      if (!atomic_load(&g.killed))
        writer_error(w, "%s %s: connection failed before the cut: %s", method, path, r.error);
      break; /* outcome unknown */
    }
    bool absent404 = r.status == 404 && !strcmp(method, "DELETE");
    if (r.status == 200 || r.status == 201 || absent404) {
      o->state = OP_ACKED;
      if (absent404 && w->cur[o->eff[0].k].present)
        writer_error(w, "DELETE %s: 404, but the key was written and acknowledged", path);
      if (!absent404) {
        json_t *j = json_loads(r.body, 0, NULL);
        json_t *l = j ? json_object_get(j, "lsn") : NULL, *d = j ? json_object_get(j, "durable") : NULL;
        if (!json_is_integer(l))
          writer_error(w, "%s %s: 2xx without an lsn: %.200s", method, path, r.body);
        else if ((uint64_t)json_integer_value(l) > w->max_lsn)
          w->max_lsn = (uint64_t)json_integer_value(l);
        if (!json_is_boolean(d) || json_is_true(d) != g.strict)
          writer_error(w, "%s %s: \"durable\" is not %s: %.200s", method, path,
                       g.strict ? "true" : "false", r.body);
        json_decref(j);
      }
      for (int i = 0; i < o->n; i++)
        w->cur[o->eff[i].k] = (kstate){o->eff[i].put, g.cycle, seq, i};
    } else {
      writer_error(w, "%s %s: unexpected status %ld: %.300s", method, path, r.status, r.body);
      o->state = OP_REFUSED;
      break;
    }
  }
out:
  free(body);
  free(val);
  hs_conn_free(c);
  return NULL;
}

/* ---- checking ---------------------------------------------------------------- */

/* Parses a listed value of writer w into its state.  false: nobody wrote it. */
static bool identify(int w, const char *v, kstate *st) {
  int vw, c, s, i;
  char want[8192];
  if (sscanf(v, "w%d.c%d.s%d.i%d.", &vw, &c, &s, &i) != 4 || vw != w) return false;
  value_of(w, c, s, i, want, sizeof want);
  if (strcmp(want, v) != 0) return false;
  *st = (kstate){true, c, s, i};
  return true;
}

/* Reads the whole store through the paginated listing into obs.  0 or -1. */
static int read_all(hs_conn *c, kstate obs[MAX_WRITERS][NKEYS], long *nkeys) {
  memset(obs, 0, sizeof(kstate) * MAX_WRITERS * NKEYS);
  *nkeys = 0;
  char after[128] = "", path[512];
  for (int page = 0; page < 1000; page++) {
    char *enc = hs_pct_encode(after);
    snprintf(path, sizeof path, "/v1/store?values=1&limit=25%s%s", after[0] ? "&after=" : "",
             enc ? enc : "");
    free(enc);
    hs_resp r;
    if (hs_http(c, "GET", g.url, path, NULL, 0, NULL, REQ_TIMEOUT_MS, &r) != 0 || r.status != 200) {
      fail("(c) listing %s: status %ld %s %.300s", path, r.status, r.error, r.body);
      return -1;
    }
    json_t *j = json_loads(r.body, 0, NULL);
    json_t *items = j ? json_object_get(j, "items") : NULL;
    if (!json_is_array(items)) {
      fail("(c) listing: not JSON with items: %.300s", r.body);
      json_decref(j);
      return -1;
    }
    size_t idx;
    json_t *it;
    json_array_foreach(items, idx, it) {
      const char *key = json_string_value(json_object_get(it, "key"));
      const char *v = json_string_value(json_object_get(it, "value"));
      const char *encoding = json_string_value(json_object_get(it, "encoding"));
      int w = -1, k = -1;
      char kn[32] = "";
      if (key && sscanf(key, "pc/w%d/k%d", &w, &k) == 2 && w >= 0 && w < g.nwriters && k >= 0 &&
          k < NKEYS)
        key_name(w, k, kn, sizeof kn);
      if (!key || strcmp(kn, key) != 0) {
        fail("(c) a key nobody wrote is listed: \"%.100s\"", key ? key : "(null)");
        continue;
      }
      if (after[0] && strcmp(key, after) <= 0)
        fail("(c) listing out of order: \"%s\" after \"%s\"", key, after);
      snprintf(after, sizeof after, "%s", key);
      (*nkeys)++;
      if (!v || !encoding || strcmp(encoding, "utf-8") != 0) {
        fail("(c) key %s: value missing or not text in the listing", key);
        continue;
      }
      if (obs[w][k].present) fail("(c) key %s listed twice", key);
      if (!identify(w, v, &obs[w][k])) {
        fail("(c) key %s holds a value nobody wrote: \"%.80s\" (%zu bytes)", key, v, strlen(v));
        obs[w][k] = (kstate){true, -1, -1, -1};
      }
    }
    bool more = json_is_true(json_object_get(j, "more"));
    json_decref(j);
    if (!more) return 0;
  }
  fail("(c) listing did not end after 1000 pages");
  return -1;
}

/* Checks writer w: the observed state must equal the state after a prefix
 * of its ops (strict: a prefix holding every acknowledged op). */
static void check_writer(int wi, kstate obs[NKEYS]) {
  writer *w = &g.w[wi];
  kstate st[NKEYS];
  memcpy(st, g.base[wi], sizeof st);
  int lo = 0; /* shortest allowed prefix: through the last acknowledged op */
  for (int s = 0; s < w->nops; s++)
    if (w->ops[s].state == OP_ACKED) lo = s + 1;
  int mism = 0, best = -1;
  for (int k = 0; k < NKEYS; k++)
    mism += !kstate_eq(&st[k], &obs[k]);
  if (mism == 0) best = 0;
  kstate at_lo[NKEYS];
  if (lo == 0) memcpy(at_lo, st, sizeof at_lo);
  for (int s = 0; s < w->nops; s++) {
    op *o = &w->ops[s];
    if (o->state != OP_REFUSED) {
      for (int i = 0; i < o->n; i++) {
        int k = o->eff[i].k;
        mism -= !kstate_eq(&st[k], &obs[k]);
        st[k] = (kstate){o->eff[i].put, g.cycle, s, i};
        mism += !kstate_eq(&st[k], &obs[k]);
      }
    }
    if (s + 1 == lo) memcpy(at_lo, st, sizeof at_lo);
    if (mism == 0) best = s + 1;
  }
  for (int s = 0; s < w->nops; s++) {
    if (w->ops[s].state == OP_ACKED) g.acked_checked++;
    if (w->ops[s].state == OP_UNKNOWN) g.unknown_ops++;
  }
  if (best > lo) g.unknown_applied++;
  if (best >= lo) return;
  if (best >= 0) { /* only without auto_flush: a prefix, acknowledged ops beyond it */
    for (int s = best; s < lo; s++)
      g.acked_beyond_prefix += w->ops[s].state == OP_ACKED;
    if (!g.strict) return;
  }
  char kn[32], want[96], got[96];
  int shown = 0;
  for (int k = 0; k < NKEYS; k++) {
    if (kstate_eq(&at_lo[k], &obs[k])) continue;
    key_name(wi, k, kn, sizeof kn);
    state_str(wi, &at_lo[k], want, sizeof want);
    state_str(wi, &obs[k], got, sizeof got);
    if (g.strict && shown++ < 8)
      fail("(b) key %s lost an acknowledged write: after writer %d's %d acknowledged ops (of %d "
           "sent) it must be %s, it is %s",
           kn, wi, lo, w->nops, want, got);
    else if (!g.strict && shown++ < 8)
      printf("  key %s: after all %d acknowledged ops %s, found %s\n", kn, lo, want, got);
  }
  if (!g.strict)
    fail("(c) writer %d: the store matches no prefix of its %d ops (%d acknowledged)", wi, w->nops,
         lo);
}

static void check_recovered(hs_conn *c) {
  static kstate obs[MAX_WRITERS][NKEYS];
  long nkeys;
  if (read_all(c, obs, &nkeys) != 0) return;
  g.keys_checked += nkeys;
  for (int wi = 0; wi < g.nwriters; wi++)
    check_writer(wi, obs[wi]);
  /* every key through a GET agrees with the listing */
  char kn[32], path[64], want[8192];
  for (int wi = 0; wi < g.nwriters; wi++)
    for (int k = 0; k < NKEYS; k++) {
      key_name(wi, k, kn, sizeof kn);
      snprintf(path, sizeof path, "/v1/store/%s?raw=1", kn);
      hs_resp r;
      if (hs_http(c, "GET", g.url, path, NULL, 0, NULL, REQ_TIMEOUT_MS, &r) != 0) {
        fail("(c) GET %s: %s", path, r.error);
        return;
      }
      kstate *o = &obs[wi][k];
      if (o->present && o->c >= 0) {
        value_of(wi, o->c, o->s, o->i, want, sizeof want);
        if (r.status != 200 || strcmp(r.body, want) != 0)
          fail("(c) GET %s: status %ld, \"%.40s\"; the listing has \"%.40s\"", kn, r.status,
               r.body, want);
      } else if (!o->present && r.status != 404) {
        fail("(c) GET %s: status %ld for a key the listing does not have: %.200s", kn, r.status,
             r.body);
      }
    }
  hs_resp r;
  if (hs_http(c, "GET", g.url, "/v1/status", NULL, 0, NULL, REQ_TIMEOUT_MS, &r) == 0 &&
      r.status == 200) {
    json_t *j = json_loads(r.body, 0, NULL);
    json_t *l = j ? json_object_get(json_object_get(j, "wal"), "last_lsn") : NULL;
    uint64_t last = json_is_integer(l) ? (uint64_t)json_integer_value(l) : 0;
    if (g.strict && last < g.acked_lsn_max)
      fail("(b) status wal.last_lsn %llu is below an acknowledged lsn %llu: acknowledged writes "
           "lost",
           (unsigned long long)last, (unsigned long long)g.acked_lsn_max);
    json_decref(j);
  } else {
    fail("(c) GET /v1/status: status %ld %s", r.status, r.error);
  }
  memcpy(g.base, obs, sizeof g.base);
  for (int wi = 0; wi < g.nwriters; wi++)
    memcpy(g.w[wi].cur, obs[wi], sizeof g.w[wi].cur);
}

/* ---- files ----------------------------------------------------------------- */

/* Copies the regular files and directories of src into dst (created). */
static int copy_tree(const char *src, const char *dst) {
  if (mkdir(dst, 0755) != 0 && errno != EEXIST) return -1;
  DIR *d = opendir(src);
  if (!d) return -1;
  int rc = 0;
  struct dirent *e;
  while (rc == 0 && (e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    char a[1024], b[1024];
    snprintf(a, sizeof a, "%s/%s", src, e->d_name);
    snprintf(b, sizeof b, "%s/%s", dst, e->d_name);
    struct stat st;
    if (lstat(a, &st) != 0) {
      rc = -1;
    } else if (S_ISDIR(st.st_mode)) {
      rc = copy_tree(a, b);
    } else if (S_ISREG(st.st_mode)) {
      int in = open(a, O_RDONLY | O_CLOEXEC), out = open(b, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      char buf[65536];
      ssize_t n = 0;
      while (in >= 0 && out >= 0 && (n = read(in, buf, sizeof buf)) > 0)
        if (write(out, buf, (size_t)n) != n) n = -1;
      if (in < 0 || out < 0 || n < 0) rc = -1;
      if (in >= 0) close(in);
      if (out >= 0) close(out);
    }
  }
  closedir(d);
  return rc;
}

/* Adds the shim's counters (its stats file) to g.shim. */
static void add_shim_stats(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) return;
  long v[12] = {0};
  char line[512];
  if (fgets(line, sizeof line, f) &&
      sscanf(line,
             "writes %ld syncs %ld applied %ld early %ld early_bytes %ld dsync %ld truncs %ld "
             "renames %ld unlinks %ld creates %ld sabotaged %ld",
             &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9], &v[10]) == 11)
    for (int i = 0; i < 11; i++)
      g.shim[i] += v[i];
  fclose(f);
  unlink(path);
}

/* True when the node's last stderr line says to run `wal repair`. */
static bool wal_refused(const hs_server *s) {
  FILE *f = fopen(s->err_path, "r");
  if (!f) return false;
  char line[2048], last[2048] = "";
  while (fgets(line, sizeof line, f))
    snprintf(last, sizeof last, "%s", line);
  fclose(f);
  return strstr(last, "wal repair") != NULL;
}

/* softadastra wal repair DATA/node-1.wal; 0 when it exits 0. */
static int run_wal_repair(const hs_server *s) {
  char wal[700];
  snprintf(wal, sizeof wal, "%s/node-1.wal", s->data_dir);
  pid_t p = fork();
  if (p == 0) {
    int fd = open(s->err_path, O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    execl(s->bin, s->bin, "wal", "repair", wal, (char *)NULL);
    _exit(127);
  }
  int st = -1;
  if (p < 0 || waitpid(p, &st, 0) != p || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    fail("(a) wal repair of %s failed", wal);
    return -1;
  }
  return 0;
}

/* ---- main ------------------------------------------------------------------ */

static void on_signal(int sig) {
  hs_kill_all();
  signal(sig, SIG_DFL);
  raise(sig);
}

static int env_int(const char *name, int def) {
  const char *v = getenv(name);
  return v && *v ? atoi(v) : def;
}

static void sleep_ms(long ms) {
  struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&t, NULL);
}

int main(int argc, char **argv) {
  if (argc < 3 || argc > 3 + 5) {
    fprintf(stderr, "usage: %s PATH/TO/sa_powercut_shim.so PATH/TO/softadastra [SERVE-ARGS...] (up to 5)\n",
            argv[0]);
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
#ifdef SA_POWERCUT_SANITIZED
  printf("powercut: skipped: a sanitizer build (SA_SANITIZE); the LD_PRELOAD shim does not mix "
         "with the sanitizer runtimes\n");
  return SKIP;
#endif
  const char *wrap = getenv("SA_SERVER_WRAPPER");
  if (wrap && *wrap) {
    printf("powercut: skipped: SA_SERVER_WRAPPER is set (%s); the LD_PRELOAD shim does not mix "
           "with a wrapper such as valgrind\n",
           wrap);
    return SKIP;
  }
  const char *shim = argv[1], *bin = argv[2];
  char shim_abs[1024];
  if (!realpath(shim, shim_abs)) {
    fprintf(stderr, "powercut: the shim %s: %s\n", shim, strerror(errno));
    return 2;
  }
  g.strict = true;
  for (int i = 3; i < argc; i++)
    if (strcmp(argv[i], "--no-auto-flush") == 0) g.strict = false;
  g.cycles = env_int("SA_POWERCUT_CYCLES", 20);
  g.nwriters = env_int("SA_POWERCUT_WRITERS", 4);
  g.max_run_ms = env_int("SA_POWERCUT_MAX_RUN_MS", 400);
  g.sabotage = env_int("SA_POWERCUT_SABOTAGE", 0) != 0;
  g.wal_repair = env_int("SA_POWERCUT_WAL_REPAIR", 0) != 0;
  g.warmup = env_int("SA_POWERCUT_WARMUP", 0) != 0;
  const char *wb = getenv("SA_POWERCUT_WRITEBACK");
  if (!wb || !*wb) wb = "0.05";
  if (g.nwriters < 1 || g.nwriters > MAX_WRITERS || g.cycles < 1 || g.max_run_ms < 10) {
    fprintf(stderr, "bad SA_POWERCUT_* settings\n");
    return 2;
  }
  unsigned seed = (unsigned)env_int("SA_POWERCUT_SEED", (int)((unsigned)time(NULL) ^ (unsigned)getpid()) & 0x7fffffff);
  printf("powercut: %d cycles, %d writers, writeback %s, %s check, seed %u (SA_POWERCUT_SEED to "
         "replay)%s\n",
         g.cycles, g.nwriters, wb, g.strict ? "strict" : "prefix (auto_flush off)", seed,
         g.sabotage ? ", SABOTAGE: the disk lies about the WAL" : "");
  for (int i = 3; i < argc; i++)
    printf("powercut: serve argument %s\n", argv[i]);
  atexit(hs_kill_all);
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  signal(SIGPIPE, SIG_IGN);
  curl_global_init(CURL_GLOBAL_ALL);

  char dir[512];
  if (hs_tmpdir("powercut", dir, sizeof dir) != 0) {
    perror("mkdtemp");
    return 1;
  }
  hs_server s;
  hs_server_init(&s, bin, dir);
  int ne = 0;
  s.extra[ne++] = "--log-level";
  s.extra[ne++] = "warn";
  for (int i = 3; i < argc; i++)
    s.extra[ne++] = argv[i];
  char shadow[600], last_disk[600], stats[600], e_pre[1100], e_dir[700], e_sh[700], e_seed[64],
      e_wb[64], e_sab[64], e_stats[700], e_boot[64];
  snprintf(shadow, sizeof shadow, "%s/shadow", dir);
  snprintf(last_disk, sizeof last_disk, "%s/disk-after-last-cut", dir);
  snprintf(stats, sizeof stats, "%s/shim.stats", dir);
  snprintf(e_pre, sizeof e_pre, "LD_PRELOAD=%s", shim_abs);
  snprintf(e_dir, sizeof e_dir, "SA_POWERCUT_DIR=%s", s.data_dir);
  snprintf(e_sh, sizeof e_sh, "SA_POWERCUT_SHADOW=%s", shadow);
  snprintf(e_wb, sizeof e_wb, "SA_POWERCUT_WRITEBACK=%s", wb);
  snprintf(e_sab, sizeof e_sab, "SA_POWERCUT_SABOTAGE=%d", g.sabotage ? 1 : 0);
  snprintf(e_stats, sizeof e_stats, "SA_POWERCUT_STATS=%s", stats);
  if (mkdir(s.data_dir, 0755) != 0) {
    perror("mkdir");
    return 1;
  }
  for (int i = 0; i < g.nwriters; i++) {
    g.w[i].id = i;
    g.w[i].seed = seed * 31u + (unsigned)i;
    g.w[i].ops = calloc(MAX_OPS, sizeof(op));
    if (!g.w[i].ops) return 1;
  }
  hs_conn *checker = hs_conn_new();
  double t0 = hs_now();
  char sbuf[64];
  int done = 0;
  if (g.warmup) {
    int st;
    if (hs_server_start(&s, &st) != 0 || (st = hs_server_stop(&s, SIGTERM)) != 0) {
      fail("warm-up start and stop: %s", hs_status_str(st, sbuf, sizeof sbuf));
      hs_dump_log(&s, "failure", 64 * 1024);
    }
  }
  for (g.cycle = 0; g.cycle < g.cycles && g.failures == 0; g.cycle++) {
    /* 1. the disk starts as a copy of the data directory */
    hs_rmrf(shadow);
    if (copy_tree(s.data_dir, shadow) != 0) {
      fail("cannot copy %s to %s", s.data_dir, shadow);
      break;
    }
    /* 2. the node with the shim, under load */
    snprintf(e_seed, sizeof e_seed, "SA_POWERCUT_SEED=%u", rand_r(&seed));
    snprintf(e_boot, sizeof e_boot, "SA_POWERCUT_BOOT_ID=powercut-boot-%d", g.cycle);
    const char *envs[] = {e_pre, e_dir, e_sh, e_seed, e_wb, e_sab, e_stats, e_boot, NULL};
    memcpy(s.env, envs, sizeof envs);
    int st;
    if (hs_server_start(&s, &st) != 0) {
      fail("the node with the shim did not start: %s", hs_status_str(st, sbuf, sizeof sbuf));
      hs_dump_log(&s, "failure", 64 * 1024);
      break;
    }
    snprintf(g.url, sizeof g.url, "%s", s.url);
    for (int i = 0; i < g.nwriters; i++)
      g.w[i].nops = 0;
    atomic_store(&g.stop, 0);
    atomic_store(&g.killed, 0);
    for (int i = 0; i < g.nwriters; i++)
      pthread_create(&g.w[i].th, NULL, writer_main, &g.w[i]);
    sleep_ms(10 + (long)(rand_r(&seed) % (unsigned)g.max_run_ms));
    /* 3. the power cut */
    atomic_store(&g.killed, 1);
    int kst = hs_server_stop(&s, SIGKILL);
    atomic_store(&g.stop, 1);
    for (int i = 0; i < g.nwriters; i++)
      pthread_join(g.w[i].th, NULL);
    if (!(WIFSIGNALED(kst) && WTERMSIG(kst) == SIGKILL)) {
      fail("the node with the shim ended with %s before the cut",
           hs_status_str(kst, sbuf, sizeof sbuf));
      hs_dump_log(&s, "failure", 64 * 1024);
    }
    for (int i = 0; i < g.nwriters; i++) {
      if (g.w[i].errors)
        fail("writer %d: %ld unexpected answers; first: %s", i, g.w[i].errors, g.w[i].first_error);
      g.w[i].errors = 0;
      if (g.w[i].max_lsn > g.acked_lsn_max) g.acked_lsn_max = g.w[i].max_lsn;
    }
    add_shim_stats(stats);
    /* the shadow is the disk after the cut: it becomes the data directory */
    hs_rmrf(s.data_dir);
    hs_rmrf(last_disk);
    if (rename(shadow, s.data_dir) != 0 || copy_tree(s.data_dir, last_disk) != 0) {
      fail("cannot move %s to %s: %s", shadow, s.data_dir, strerror(errno));
      break;
    }
    /* 4. (a) it starts on that disk after a reboot: the shim only serves
     * the next boot's id (the store must roll back to its sync point) */
    memset(s.env, 0, sizeof s.env);
    snprintf(e_boot, sizeof e_boot, "SA_POWERCUT_BOOT_ID=powercut-boot-%d", g.cycle + 1);
    s.env[0] = e_pre;
    s.env[1] = e_boot;
    int started = hs_server_start(&s, &st);
    if (started != 0 && g.wal_repair && WIFEXITED(st) && wal_refused(&s)) {
      g.wal_repairs++;
      printf("powercut: [cycle %d] the WAL is refused after the cut; running wal repair (%s)\n",
             g.cycle, "SA_POWERCUT_WAL_REPAIR");
      started = run_wal_repair(&s) == 0 ? hs_server_start(&s, &st) : -1;
    }
    if (started != 0) {
      fail("(a) the node does not start on the disk after the power cut: %s",
           hs_status_str(st, sbuf, sizeof sbuf));
      hs_dump_log(&s, "failure", 64 * 1024);
      break;
    }
    snprintf(g.url, sizeof g.url, "%s", s.url);
    check_recovered(checker); /* (b), (c) */
    st = hs_server_stop(&s, SIGTERM);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
      fail("(c) the checked node did not stop cleanly: %s", hs_status_str(st, sbuf, sizeof sbuf));
      hs_dump_log(&s, "failure", 64 * 1024);
    }
    done++;
  }
  double el = hs_now() - t0;
  printf("powercut: %d cycles, %ld acknowledged ops checked, %ld ops of unknown outcome (%ld seen "
         "applied), %ld keys listed, max acked lsn %llu, %.1f s, %ld failures\n",
         done, g.acked_checked, g.unknown_ops, g.unknown_applied, g.keys_checked,
         (unsigned long long)g.acked_lsn_max, el, g.failures);
  if (!g.strict)
    printf("powercut: %ld acknowledged ops lost at the cuts (allowed: auto_flush off)\n",
           g.acked_beyond_prefix);
  if (g.wal_repairs) printf("powercut: %ld WALs refused after a cut and repaired\n", g.wal_repairs);
  printf("powercut: shim: %ld writes recorded, %ld syncs applied, %ld early writebacks (%ld bytes), "
         "%ld O_DSYNC writes, %ld truncations, %ld files created\n",
         g.shim[0], g.shim[2], g.shim[3], g.shim[4], g.shim[5], g.shim[6], g.shim[9]);
  if (g.sabotage) printf("powercut: shim: %ld WAL syncs that lied\n", g.shim[10]);
  hs_conn_free(checker);
  for (int i = 0; i < g.nwriters; i++)
    free(g.w[i].ops);
  if (g.failures == 0 || g.sabotage)
    hs_rmrf(dir);
  else
    printf("powercut: data kept in %s (the disk after the last cut: %s)\n", dir, last_disk);
  curl_global_cleanup();
  if (g.sabotage) {
    printf("powercut: self-test: %ld reports of lost acknowledged writes (%s)\n", g.lost_reports,
           g.lost_reports ? "the checker detects loss" : "THE CHECKER MISSED THE LOSS");
    return g.lost_reports ? 0 : 1;
  }
  return g.failures ? 1 : 0;
}
