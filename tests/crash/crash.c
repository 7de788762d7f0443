/*
 * crash.c -- kill -9 under load against the real server.
 *
 * Each cycle: start `softadastra serve` on the same data directory, check the
 * recovered state through the API, then let W writer threads drive it over
 * HTTP (PUT, DELETE and POST /v1/batch on a small shared key space) while
 * the main thread SIGKILLs the node at a random moment.  Every request is
 * recorded with its start time, its end time and its outcome: acknowledged
 * (2xx), a definite no-op (404 on DELETE), or unknown (the connection died
 * with the node).  Values are unique per operation and name it
 * ("w<writer>.c<cycle>.s<seq>.i<index>." plus padding), so a recovered value
 * points at the operation that wrote it.
 *
 * What the check after each restart demands, key by key (the model starts
 * from the state verified after the previous restart):
 *   - the recovered state of the key (a value, or absent) comes from an
 *     operation X that may have happened: acknowledged, or of unknown outcome
 *     (then it is known to have been applied); a value that no operation
 *     wrote, or a key outside the key space, is a failure ("never written");
 *   - no acknowledged operation Y on the key started after X had been
 *     acknowledged (X is not older than an acknowledged write: every
 *     acknowledged write is present, or a later one is);
 *   - batches are atomic: when a batch of unknown outcome is seen applied on
 *     one key, every other key it wrote holds its effect or a later one;
 *   - a GET of every key agrees with the listing;
 *   - the node's last LSN (/v1/status) is at least every acknowledged LSN.
 * Every few cycles the node is also killed during its own start-up (while
 * it recovers) before the normal start.
 *
 * usage: sa_crash PATH/TO/softadastra [SERVE-ARGS...]   (up to 5, e.g.
 *        --no-auto-flush, or --wal-max-bytes 65536 so kills land in checkpoints)
 * environment: SA_CRASH_CYCLES (30), SA_CRASH_WRITERS (4), SA_CRASH_SEED,
 *              SA_CRASH_MAX_RUN_MS (400), SA_SERVER_WRAPPER (harness.h),
 *              SA_CRASH_SIGNAL=TERM (stop with SIGTERM under load instead of
 *              kill -9: the node must answer or refuse every write in flight
 *              -- some wait suspended for their fdatasync -- and exit 0, and
 *              every write it answered 2xx must be there after the restart).
 * Exit status 0 when every check held, 1 otherwise.
 *
 * Self-test: with SA_CRASH_SABOTAGE=1 the harness itself destroys data after
 * each kill (the store is deleted and the WAL cut back to its header: every
 * acknowledged write is lost), and the exit status is inverted: 0 only when
 * the checker reported lost writes.  It shows that the checker can fail.
 */
#define _GNU_SOURCE
#include "harness.h"

#include <curl/curl.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NKEYS 48
#define MAX_WRITERS 16
#define BATCH_MAX 6
#define MAX_OPS_PER_CYCLE 20000 /* per writer: bounds a cycle's work */
#define REQ_TIMEOUT_MS 30000

enum { OP_ACKED = 1, OP_UNKNOWN = 2, OP_NOOP = 3 };

typedef struct effect {
  int key;
  bool put;
} effect;

typedef struct op {
  double s, e; /* start; end (acknowledged) or INFINITY */
  int state;   /* OP_* */
  int n;       /* effects */
  bool batch;
  effect eff[BATCH_MAX];
} op;

typedef struct writer {
  int id;
  pthread_t th;
  unsigned seed;
  op *ops;
  int nops;
  uint64_t max_lsn; /* highest acknowledged LSN */
  long errors;      /* unexpected answers before the kill */
  char first_error[512];
} writer;

/* The state of one key as verified after the last restart. */
typedef struct base_state {
  bool present;
  char *value;
} base_state;

static struct {
  const char *bin;
  bool auto_flush;
  bool sabotage; /* self-test: lose data on purpose after each kill */
  bool term;     /* SA_CRASH_SIGNAL=TERM: graceful stops under load instead */
  long lost_reports;
  int cycles, nwriters, max_run_ms;
  int cycle;
  char url[64];
  atomic_int stop;   /* writers stop issuing requests */
  atomic_int killed; /* the node has been (or is being) killed */
  writer w[MAX_WRITERS];
  base_state base[NKEYS];
  uint64_t acked_lsn_max;
  long failures;
  /* figures */
  long acked_checked, unknown_ops, unknown_applied, restarts, startup_kills, keys_checked;
  long torn_bytes_total;
} g;

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stdout, "FAIL [cycle %d] ", g.cycle);
  vfprintf(stdout, fmt, ap);
  fputc('\n', stdout);
  va_end(ap);
  fflush(stdout);
  g.failures++;
  if (strstr(fmt, "lost") || strstr(fmt, "absent")) g.lost_reports++;
}

static void key_name(int k, char *buf, size_t len) {
  snprintf(buf, len, "crash/k%02d", k);
}

/* The value of effect i of operation s of writer w in cycle c: unique, and
 * its padding length is a function of the name, so it can be re-derived. */
static void value_of(int w, int c, int s, int i, char *buf, size_t len) {
  int n = snprintf(buf, len, "w%d.c%d.s%d.i%d.", w, c, s, i);
  unsigned h = (unsigned)(w * 2654435761u) ^ (unsigned)(c * 40503u) ^ (unsigned)(s * 9176u) ^
               (unsigned)i;
  int pad = (int)(h % 300u);
  for (int k = 0; k < pad && n + 1 < (int)len; k++)
    buf[n++] = (char)('a' + ((unsigned)k + h) % 26u);
  buf[n] = 0;
}

static int rnd(unsigned *seed, int n) {
  return (int)(rand_r(seed) % (unsigned)n);
}

static uint64_t json_lsn(const char *body) {
  json_error_t je;
  json_t *j = json_loads(body, 0, &je);
  uint64_t lsn = 0;
  if (j) {
    json_t *l = json_object_get(j, "lsn");
    if (json_is_integer(l)) lsn = (uint64_t)json_integer_value(l);
    json_decref(j);
  }
  return lsn;
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

static void *writer_main(void *arg) {
  writer *w = arg;
  hs_conn *c = hs_conn_new();
  if (!c) {
    writer_error(w, "out of memory");
    return NULL;
  }
  char path[128], kname[32], val[512];
  char *body = malloc(64 * 1024);
  while (!atomic_load(&g.stop) && w->nops < MAX_OPS_PER_CYCLE && body) {
    op *o = &w->ops[w->nops];
    memset(o, 0, sizeof *o);
    int seq = w->nops;
    int kind = rnd(&w->seed, 10);
    const char *method, *ctype = NULL;
    size_t blen = 0;
    if (kind < 6) { /* put */
      o->n = 1;
      o->eff[0] = (effect){rnd(&w->seed, NKEYS), true};
      key_name(o->eff[0].key, kname, sizeof kname);
      value_of(w->id, g.cycle, seq, 0, val, sizeof val);
      snprintf(path, sizeof path, "/v1/store/%s", kname);
      method = "PUT";
      blen = strlen(val);
      memcpy(body, val, blen + 1);
    } else if (kind < 8) { /* delete */
      o->n = 1;
      o->eff[0] = (effect){rnd(&w->seed, NKEYS), false};
      key_name(o->eff[0].key, kname, sizeof kname);
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
            dup = dup || o->eff[j].key == k;
        } while (dup);
        o->eff[i] = (effect){k, rnd(&w->seed, 10) < 7};
      }
      blen = (size_t)sprintf(body, "{\"ops\":[");
      for (int i = 0; i < o->n; i++) {
        key_name(o->eff[i].key, kname, sizeof kname);
        if (o->eff[i].put) {
          value_of(w->id, g.cycle, seq, i, val, sizeof val);
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
    o->e = INFINITY;
    o->s = hs_now();
    w->nops++; /* recorded before it is sent: its outcome may be "applied" */
    hs_resp r;
    int rc = hs_http(c, method, g.url, path, blen || o->batch || !strcmp(method, "PUT") ? body : NULL,
                     blen, ctype, REQ_TIMEOUT_MS, &r);
    double e = hs_now();
    if (rc != 0) {
      if (!atomic_load(&g.killed))
        writer_error(w, "%s %s: connection failed before the kill: %s", method, path, r.error);
      break; /* the node is gone: outcome unknown */
    }
    if (r.status == 200 || r.status == 201) {
      o->state = OP_ACKED;
      o->e = e;
      uint64_t lsn = json_lsn(r.body);
      if (lsn == 0) writer_error(w, "%s %s: 2xx without an lsn: %s", method, path, r.body);
      if (lsn > w->max_lsn) w->max_lsn = lsn;
      const char *want = g.auto_flush ? "\"durable\": true" : "\"durable\": false";
      const char *want2 = g.auto_flush ? "\"durable\":true" : "\"durable\":false";
      if (!strstr(r.body, want) && !strstr(r.body, want2))
        writer_error(w, "%s %s: acknowledgement without %s: %s", method, path, want2, r.body);
    } else if (r.status == 503 && g.term && atomic_load(&g.killed)) {
      break; /* refused while the node stops: outcome unknown */
    } else if (r.status == 404 && !strcmp(method, "DELETE")) {
      o->state = OP_NOOP;
      o->e = e;
    } else {
      writer_error(w, "%s %s: unexpected status %ld: %.300s", method, path, r.status, r.body);
      o->state = OP_NOOP; /* a refusal: nothing applied (checked like any other op) */
      o->e = e;
      break;
    }
  }
  free(body);
  hs_conn_free(c);
  return NULL;
}

/* ---- checking ------------------------------------------------------------ */

typedef struct cand {
  int w, s;     /* operation; w < 0 for the base state */
  double s_t, e_t;
  bool applied; /* seen in the recovered state */
} cand;

/* True when no acknowledged op on key k started after x ended (x is the
 * operation whose effect the key shows).  Fills who with a culprit. */
static bool not_superseded(int k, double x_end, int xw, int xs, char *who, size_t wholen) {
  for (int wi = 0; wi < g.nwriters; wi++) {
    writer *w = &g.w[wi];
    for (int si = 0; si < w->nops; si++) {
      op *o = &w->ops[si];
      if (o->state != OP_ACKED || (wi == xw && si == xs)) continue;
      for (int i = 0; i < o->n; i++) {
        if (o->eff[i].key != k) continue;
        if (o->s > x_end) {
          const char *what = o->batch ? "batch" : (o->eff[i].put ? "PUT" : "DELETE");
          if (isinf(x_end))
            snprintf(who, wholen, "acknowledged %s w%d.s%d (%s of this key) is not there", what,
                     wi, si, o->eff[i].put ? "put" : "delete");
          else
            snprintf(who, wholen,
                     "acknowledged %s w%d.s%d (%s) started %.3f ms after that write was "
                     "acknowledged",
                     what, wi, si, o->eff[i].put ? "put" : "delete", (o->s - x_end) * 1000);
          return false;
        }
      }
    }
  }
  return true;
}

/* Observed state of each key. */
typedef struct obs {
  bool present;
  char *value;
  int w, s, i; /* the op that wrote it (this cycle), w = -1 for the base */
} obs;

/* The latest-ending delete of key k (or the base when absent), for an
 * absent key.  Returns the end time, or NAN when there is no candidate. */
static double best_delete(int k, int *bw, int *bs) {
  double best = NAN;
  *bw = *bs = -1;
  if (!g.base[k].present) best = -INFINITY;
  for (int wi = 0; wi < g.nwriters; wi++)
    for (int si = 0; si < g.w[wi].nops; si++) {
      op *o = &g.w[wi].ops[si];
      if (o->state == OP_NOOP) continue;
      for (int i = 0; i < o->n; i++)
        if (o->eff[i].key == k && !o->eff[i].put && (isnan(best) || o->e > best)) {
          best = o->e;
          *bw = wi;
          *bs = si;
        }
    }
  return best;
}

/* Reads the whole store through the listing.  Returns 0 or -1. */
static int read_all(hs_conn *c, obs *ob) {
  for (int k = 0; k < NKEYS; k++)
    ob[k] = (obs){false, NULL, -1, -1, -1};
  char after[128] = "", path[512];
  for (int page = 0; page < 100; page++) {
    char *enc = hs_pct_encode(after);
    snprintf(path, sizeof path, "/v1/store?values=1&limit=17%s%s", after[0] ? "&after=" : "",
             enc ? enc : "");
    free(enc);
    hs_resp r;
    if (hs_http(c, "GET", g.url, path, NULL, 0, NULL, REQ_TIMEOUT_MS, &r) != 0 || r.status != 200) {
      fail("listing %s: status %ld %s %.200s", path, r.status, r.error, r.body);
      return -1;
    }
    json_error_t je;
    json_t *j = json_loads(r.body, 0, &je);
    json_t *items = j ? json_object_get(j, "items") : NULL;
    if (!json_is_array(items)) {
      fail("listing: not JSON with items: %.200s", r.body);
      json_decref(j);
      return -1;
    }
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it) {
      const char *key = json_string_value(json_object_get(it, "key"));
      const char *v = json_string_value(json_object_get(it, "value"));
      const char *enc2 = json_string_value(json_object_get(it, "encoding"));
      int k = -1;
      if (key && sscanf(key, "crash/k%d", &k) == 1 && k >= 0 && k < NKEYS) {
        char kn[32];
        key_name(k, kn, sizeof kn);
        if (strcmp(kn, key) != 0) k = -1;
      }
      if (k < 0) {
        fail("never-written key in the listing: \"%s\"", key ? key : "(null)");
        continue;
      }
      if (!v || !enc2 || strcmp(enc2, "utf-8") != 0) {
        fail("key %s: value missing or not text in the listing", key);
        continue;
      }
      if (ob[k].present) fail("key %s listed twice", key);
      free(ob[k].value);
      ob[k].present = true;
      ob[k].value = strdup(v);
      snprintf(after, sizeof after, "%s", key);
    }
    bool more = json_is_true(json_object_get(j, "more"));
    json_decref(j);
    if (!more) return 0;
  }
  fail("listing did not end");
  return -1;
}

/* Identifies the operation behind an observed value.  0 or -1 (never written). */
static int identify(int k, obs *ob) {
  int w, c, s, i;
  char want[512];
  if (sscanf(ob->value, "w%d.c%d.s%d.i%d.", &w, &c, &s, &i) != 4) return -1;
  value_of(w, c, s, i, want, sizeof want);
  if (strcmp(want, ob->value) != 0) return -1;
  if (c != g.cycle) { /* must be the base state */
    if (!g.base[k].present || strcmp(g.base[k].value, ob->value) != 0) return -1;
    ob->w = ob->s = -1;
    return 0;
  }
  if (w < 0 || w >= g.nwriters || s < 0 || s >= g.w[w].nops) return -1;
  op *o = &g.w[w].ops[s];
  if (i < 0 || i >= o->n || o->eff[i].key != k || !o->eff[i].put) return -1;
  ob->w = w;
  ob->s = s;
  ob->i = i;
  return 0;
}

static void check_recovered(hs_conn *c) {
  obs ob[NKEYS];
  if (read_all(c, ob) != 0) return;
  char kn[32], who[300];
  /* identify the write behind every value */
  for (int k = 0; k < NKEYS; k++) {
    if (!ob[k].present) continue;
    key_name(k, kn, sizeof kn);
    if (identify(k, &ob[k]) != 0) {
      fail("key %s holds a value nobody wrote: \"%.80s\"", kn, ob[k].value);
      ob[k].w = -2;
      continue;
    }
    if (ob[k].w >= 0) {
      op *o = &g.w[ob[k].w].ops[ob[k].s];
      if (o->state == OP_NOOP)
        fail("key %s shows the effect of a refused or failed write w%d.s%d", kn, ob[k].w, ob[k].s);
      if (o->state == OP_UNKNOWN) g.unknown_applied++;
    }
  }
  for (int k = 0; k < NKEYS; k++) {
    key_name(k, kn, sizeof kn);
    g.keys_checked++;
    if (ob[k].present) {
      if (ob[k].w == -2) continue;
      double end = ob[k].w < 0 ? -INFINITY : g.w[ob[k].w].ops[ob[k].s].e;
      if (!not_superseded(k, end, ob[k].w, ob[k].s, who, sizeof who))
        fail("key %s lost an acknowledged write: it holds %s, but %s", kn,
             ob[k].w < 0 ? "the value of the previous cycle" : "an older write", who);
    } else {
      int bw, bs;
      double end = best_delete(k, &bw, &bs);
      if (isnan(end))
        fail("key %s is absent, but it existed before and no delete of it was sent", kn);
      else if (!not_superseded(k, end, bw, bs, who, sizeof who))
        fail("key %s is absent: an acknowledged write is lost (%s)", kn, who);
    }
  }
  /* batch atomicity: a batch seen applied shows all its effects (or later ones) */
  for (int k = 0; k < NKEYS; k++) {
    if (!ob[k].present || ob[k].w < 0) continue;
    op *b = &g.w[ob[k].w].ops[ob[k].s];
    if (!b->batch || b->state != OP_UNKNOWN) continue;
    for (int i = 0; i < b->n; i++) {
      int k2 = b->eff[i].key;
      if (k2 == k) continue;
      key_name(k2, kn, sizeof kn);
      obs *o2 = &ob[k2];
      bool ok;
      if (o2->present) {
        if (o2->w == -2) continue;
        double e2 = o2->w < 0 ? -INFINITY : g.w[o2->w].ops[o2->s].e;
        ok = (o2->w == ob[k].w && o2->s == ob[k].s) || e2 >= b->s;
      } else {
        int bw, bs;
        double e2 = best_delete(k2, &bw, &bs);
        ok = !b->eff[i].put || (!isnan(e2) && e2 >= b->s);
      }
      if (!ok) {
        key_name(k, who, sizeof who);
        fail("batch w%d.s%d is half applied: key %s shows it, key %s does not", ob[k].w, ob[k].s,
             who, kn);
      }
    }
  }
  /* a GET of each key agrees with the listing */
  for (int k = 0; k < NKEYS; k++) {
    char path[64];
    key_name(k, kn, sizeof kn);
    snprintf(path, sizeof path, "/v1/store/%s?raw=1", kn);
    hs_resp r;
    if (hs_http(c, "GET", g.url, path, NULL, 0, NULL, REQ_TIMEOUT_MS, &r) != 0) {
      fail("GET %s after restart: %s", path, r.error);
      continue;
    }
    if (ob[k].present && (r.status != 200 || strcmp(r.body, ob[k].value) != 0))
      fail("GET %s: status %ld, \"%.40s\"; the listing says \"%.40s\"", kn, r.status, r.body,
           ob[k].value);
    if (!ob[k].present && r.status != 404)
      fail("GET %s: status %ld for a key the listing does not have", kn, r.status);
  }
  /* the recovered node knows every acknowledged LSN */
  hs_resp r;
  if (hs_http(c, "GET", g.url, "/v1/status", NULL, 0, NULL, REQ_TIMEOUT_MS, &r) == 0 &&
      r.status == 200) {
    json_t *j = json_loads(r.body, 0, NULL);
    json_t *l = j ? json_object_get(json_object_get(j, "wal"), "last_lsn") : NULL;
    uint64_t last = json_is_integer(l) ? (uint64_t)json_integer_value(l) : 0;
    if (last < g.acked_lsn_max)
      fail("status wal.last_lsn %llu is below an acknowledged lsn %llu", (unsigned long long)last,
           (unsigned long long)g.acked_lsn_max);
    json_decref(j);
  } else {
    fail("GET /v1/status after restart: status %ld %s", r.status, r.error);
  }
  /* figures, then the verified state becomes the next cycle's base */
  for (int wi = 0; wi < g.nwriters; wi++)
    for (int si = 0; si < g.w[wi].nops; si++) {
      if (g.w[wi].ops[si].state == OP_ACKED) g.acked_checked++;
      if (g.w[wi].ops[si].state == OP_UNKNOWN) g.unknown_ops++;
    }
  for (int k = 0; k < NKEYS; k++) {
    free(g.base[k].value);
    g.base[k].present = ob[k].present;
    g.base[k].value = ob[k].value;
  }
}

/* ---- main ---------------------------------------------------------------- */

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

static long torn_bytes_of(const char *line) {
  const char *p = strstr(line, "replayed, ");
  return p ? atol(p + strlen("replayed, ")) : 0;
}

static void dump_err(const hs_server *s) {
  hs_dump_log(s, "failure", 64 * 1024);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s PATH/TO/softadastra [SERVE-ARGS...]\n", argv[0]);
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  g.bin = argv[1];
  g.auto_flush = true;
  for (int i = 2; i < argc; i++)
    if (strcmp(argv[i], "--no-auto-flush") == 0) g.auto_flush = false;
  if (argc > 2 + 5) {
    fprintf(stderr, "at most 5 serve arguments\n");
    return 2;
  }
  g.cycles = env_int("SA_CRASH_CYCLES", 30);
  g.nwriters = env_int("SA_CRASH_WRITERS", 4);
  g.max_run_ms = env_int("SA_CRASH_MAX_RUN_MS", 400);
  g.sabotage = env_int("SA_CRASH_SABOTAGE", 0) != 0;
  g.term = getenv("SA_CRASH_SIGNAL") && strcmp(getenv("SA_CRASH_SIGNAL"), "TERM") == 0;
  if (g.nwriters < 1 || g.nwriters > MAX_WRITERS || g.cycles < 1 || g.max_run_ms < 10) {
    fprintf(stderr, "bad SA_CRASH_* settings\n");
    return 2;
  }
  unsigned seed = (unsigned)env_int("SA_CRASH_SEED", (int)(time(NULL) ^ getpid()));
  printf("crash: %d cycles, %d writers, auto_flush=%s, seed %u (SA_CRASH_SEED to replay)\n",
         g.cycles, g.nwriters, g.auto_flush ? "true" : "false", seed);
  for (int i = 2; i < argc; i++)
    printf("crash: serve argument %s\n", argv[i]);
  atexit(hs_kill_all);
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  signal(SIGPIPE, SIG_IGN);
  curl_global_init(CURL_GLOBAL_ALL);

  char dir[512];
  if (hs_tmpdir("crash", dir, sizeof dir) != 0) {
    perror("mkdtemp");
    return 1;
  }
  hs_server s;
  hs_server_init(&s, g.bin, dir);
  int ne = 0;
  s.extra[ne++] = "--log-level";
  s.extra[ne++] = "warn";
  for (int i = 2; i < argc; i++)
    s.extra[ne++] = argv[i];
  for (int i = 0; i < g.nwriters; i++) {
    g.w[i].id = i;
    g.w[i].seed = seed * 31u + (unsigned)i;
    g.w[i].ops = calloc(MAX_OPS_PER_CYCLE, sizeof(op));
    if (!g.w[i].ops) return 1;
  }
  hs_conn *checker = hs_conn_new();
  double t0 = hs_now();
  char sbuf[64];

  for (g.cycle = 0; g.cycle <= g.cycles && g.failures == 0; g.cycle++) {
    /* sometimes kill it during its own recovery first */
    if (g.cycle > 0 && g.cycle % 5 == 2) {
      if (hs_server_spawn(&s) == 0) {
        sleep_ms(rand_r(&seed) % 40);
        int st = hs_server_stop(&s, SIGKILL);
        if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) && !(WIFEXITED(st)))
          fail("node killed during start-up ended with %s", hs_status_str(st, sbuf, sizeof sbuf));
        if (WIFEXITED(st) && WEXITSTATUS(st) != 0) {
          fail("node exited with %s during start-up", hs_status_str(st, sbuf, sizeof sbuf));
          dump_err(&s);
        }
        g.startup_kills++;
      }
    }
    int st;
    if (hs_server_start(&s, &st) != 0) {
      fail("node did not start after a kill -9: %s", hs_status_str(st, sbuf, sizeof sbuf));
      dump_err(&s);
      break;
    }
    g.restarts++;
    g.torn_bytes_total += torn_bytes_of(s.start_line);
    snprintf(g.url, sizeof g.url, "%s", s.url);
    /* the model of the previous cycle is checked with its cycle number */
    if (g.cycle > 0) {
      g.cycle--;
      check_recovered(checker);
      g.cycle++;
    }
    for (int i = 0; i < g.nwriters; i++)
      g.w[i].nops = 0;
    if (g.cycle == g.cycles || g.failures) break; /* last start: checked, done */

    atomic_store(&g.stop, 0);
    atomic_store(&g.killed, 0);
    for (int i = 0; i < g.nwriters; i++)
      pthread_create(&g.w[i].th, NULL, writer_main, &g.w[i]);
    sleep_ms(10 + (long)(rand_r(&seed) % (unsigned)g.max_run_ms));
    atomic_store(&g.killed, 1);
    int kst = hs_server_stop(&s, g.term ? SIGTERM : SIGKILL);
    atomic_store(&g.stop, 1);
    for (int i = 0; i < g.nwriters; i++)
      pthread_join(g.w[i].th, NULL);
    if (g.term) {
      /* Writes in flight are answered or refused, then it exits 0. */
      if (!(WIFEXITED(kst) && WEXITSTATUS(kst) == 0)) {
        fail("graceful stop under load ended with %s", hs_status_str(kst, sbuf, sizeof sbuf));
        dump_err(&s);
      }
    } else if (!(WIFSIGNALED(kst) && WTERMSIG(kst) == SIGKILL)) {
      fail("node was not killed by SIGKILL but ended with %s",
           hs_status_str(kst, sbuf, sizeof sbuf));
      dump_err(&s);
    }
    if (g.sabotage) {
      char p[700];
      snprintf(p, sizeof p, "%s/node-1.wal", s.data_dir);
      if (truncate(p, 128) != 0) perror("sabotage: truncate");
      snprintf(p, sizeof p, "%s/node-1.mdb", s.data_dir);
      unlink(p);
      snprintf(p, sizeof p, "%s/node-1.mdb-lock", s.data_dir);
      unlink(p);
    }
    for (int i = 0; i < g.nwriters; i++) {
      if (g.w[i].errors)
        fail("writer %d: %ld unexpected answers; first: %s", i, g.w[i].errors,
             g.w[i].first_error);
      g.w[i].errors = 0;
      if (g.w[i].max_lsn > g.acked_lsn_max) g.acked_lsn_max = g.w[i].max_lsn;
    }
  }

  /* a graceful stop at the end must still work */
  if (s.pid > 0) {
    int st = hs_server_stop(&s, SIGTERM);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
      fail("graceful stop after the last restart: %s", hs_status_str(st, sbuf, sizeof sbuf));
      dump_err(&s);
    }
  }
  double el = hs_now() - t0;
  printf("crash: %d cycles, %ld restarts (+%ld kills during recovery), %ld acknowledged ops "
         "checked, %ld ops of unknown outcome (%ld seen applied), %ld key checks, %ld torn bytes "
         "cut, max acked lsn %llu, %.1f s, %ld failures\n",
         g.cycle, g.restarts, g.startup_kills, g.acked_checked, g.unknown_ops, g.unknown_applied,
         g.keys_checked, g.torn_bytes_total, (unsigned long long)g.acked_lsn_max, el, g.failures);
  hs_conn_free(checker);
  for (int i = 0; i < g.nwriters; i++)
    free(g.w[i].ops);
  for (int k = 0; k < NKEYS; k++)
    free(g.base[k].value);
  if (g.failures == 0 || g.sabotage)
    hs_rmrf(dir);
  else
    printf("crash: data kept in %s\n", dir);
  curl_global_cleanup();
  if (g.sabotage) {
    printf("crash: self-test: %ld reports of lost writes (%s)\n", g.lost_reports,
           g.lost_reports ? "the checker detects loss" : "THE CHECKER MISSED THE LOSS");
    return g.lost_reports ? 0 : 1;
  }
  return g.failures ? 1 : 0;
}
