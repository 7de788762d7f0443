/*
 * load.c -- the write load and the shared checks of the crash harnesses;
 * see load.h.
 */
#define _GNU_SOURCE
#include "load.h"

#include <curl/curl.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct ld_global ld;

void ld_fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  printf("FAIL [cycle %d] ", ld.cycle);
  vprintf(fmt, ap);
  putchar('\n');
  va_end(ap);
  fflush(stdout);
  ld.failures++;
  if (strstr(fmt, "lost") || strstr(fmt, "absent")) ld.lost_reports++;
}

int ld_env_int(const char *name, int def) {
  const char *v = getenv(name);
  return v && *v ? atoi(v) : def;
}

void ld_sleep_ms(long ms) {
  struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&t, NULL);
}

int ld_rnd(unsigned *seed, int n) {
  return (int)(rand_r(seed) % (unsigned)n);
}

static int knob(const char *suffix, int def) {
  char name[64];
  snprintf(name, sizeof name, "%s_%s", ld.m->env, suffix);
  return ld_env_int(name, def);
}

int ld_setup(const ld_mode *m, int nargs, char **args, unsigned *seed) {
  ld.m = m;
  ld.durable = true;
  for (int i = 0; i < nargs; i++)
    if (strcmp(args[i], "--no-auto-flush") == 0) ld.durable = false;
  ld.cycles = knob("CYCLES", m->default_cycles);
  ld.nwriters = knob("WRITERS", 4);
  ld.max_run_ms = knob("MAX_RUN_MS", 400);
  ld.sabotage = knob("SABOTAGE", 0) != 0;
  ld.nkeys = m->own_keys ? ld.nwriters * LD_WRITER_KEYS : LD_SHARED_KEYS;
  if (ld.nwriters < 1 || ld.nwriters > LD_MAX_WRITERS || ld.cycles < 1 || ld.max_run_ms < 10 ||
      m->batch_max < 2 || m->batch_max > LD_BATCH_MAX) {
    fprintf(stderr, "bad %s_* settings\n", m->env);
    return 2;
  }
  *seed = (unsigned)knob("SEED", (int)(((unsigned)time(NULL) ^ (unsigned)getpid()) & 0x7fffffff));
  return 0;
}

static void on_signal(int sig) {
  hs_kill_all();
  signal(sig, SIG_DFL);
  raise(sig);
}

int ld_start_process(unsigned seed) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  atexit(hs_kill_all);
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  signal(SIGPIPE, SIG_IGN);
  curl_global_init(CURL_GLOBAL_ALL);
  for (int i = 0; i < ld.nwriters; i++) {
    ld.w[i].id = i;
    ld.w[i].seed = seed * 31u + (unsigned)i;
    ld.w[i].ops = calloc(LD_MAX_OPS, sizeof(ld_op));
    if (!ld.w[i].ops) return -1;
  }
  return 0;
}

int ld_server_init(hs_server *s, const char *bin, char *dir, size_t dirlen, int nargs,
                   char **args) {
  if (hs_tmpdir(ld.m->name, dir, dirlen) != 0) {
    perror("mkdtemp");
    return -1;
  }
  hs_server_init(s, bin, dir);
  int ne = 0;
  s->extra[ne++] = "--log-level";
  s->extra[ne++] = "warn";
  for (int i = 0; i < nargs && ne < 7; i++)
    s->extra[ne++] = args[i];
  return 0;
}

/* ---- keys and values ------------------------------------------------------ */

void ld_key_name(int k, char *buf, size_t len) {
  if (ld.m->own_keys)
    snprintf(buf, len, "pc/w%d/k%02d", k / LD_WRITER_KEYS, k % LD_WRITER_KEYS);
  else
    snprintf(buf, len, "crash/k%02d", k);
}

int ld_key_owner(int k) {
  return k / LD_WRITER_KEYS;
}

int ld_key_local(int k) {
  return k % LD_WRITER_KEYS;
}

/* The key index of a listed name, or -1 when it is not one of ours. */
static int key_index(const char *key) {
  int w = -1, k = -1, gk = -1;
  if (!key) return -1;
  if (ld.m->own_keys) {
    if (sscanf(key, "pc/w%d/k%d", &w, &k) == 2 && w >= 0 && w < ld.nwriters && k >= 0 &&
        k < LD_WRITER_KEYS)
      gk = w * LD_WRITER_KEYS + k;
  } else if (sscanf(key, "crash/k%d", &k) == 1 && k >= 0 && k < LD_SHARED_KEYS) {
    gk = k;
  }
  char kn[32];
  if (gk >= 0) ld_key_name(gk, kn, sizeof kn);
  return gk >= 0 && strcmp(kn, key) == 0 ? gk : -1;
}

/* The value of effect i of op s of writer w in cycle c: unique, its length a
 * function of the name.  big_values: one in ten is 1 to 6 KiB (overflow
 * pages in the store, WAL writes over several pages). */
void ld_value_of(int w, int c, int s, int i, char *buf, size_t len) {
  int n = snprintf(buf, len, "w%d.c%d.s%d.i%d.", w, c, s, i);
  unsigned h = (unsigned)(w * 2654435761u) ^ (unsigned)(c * 40503u) ^ (unsigned)(s * 9176u);
  int pad;
  if (ld.m->big_values) {
    h ^= (unsigned)(i * 77u);
    h ^= h >> 13;
    h *= 0x5bd1e995u;
    h ^= h >> 15;
    pad = h % 10u == 0 ? 1000 + (int)(h % 5000u) : (int)(h % 200u);
  } else {
    h ^= (unsigned)i;
    pad = (int)(h % 300u);
  }
  for (int k = 0; k < pad && n + 1 < (int)len; k++)
    buf[n++] = (char)('a' + ((unsigned)k + h) % 26u);
  buf[n] = 0;
}

bool ld_parse_value(const char *v, int *w, int *c, int *s, int *i) {
  char want[LD_VALUE_MAX];
  if (sscanf(v, "w%d.c%d.s%d.i%d.", w, c, s, i) != 4) return false;
  ld_value_of(*w, *c, *s, *i, want, sizeof want);
  return strcmp(want, v) == 0;
}

/* ---- writers -------------------------------------------------------------- */

static void writer_error(ld_writer *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void writer_error(ld_writer *w, const char *fmt, ...) {
  if (w->errors++ == 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->first_error, sizeof w->first_error, fmt, ap);
    va_end(ap);
  }
}

/* A key for writer w: any of the space, or one of its own. */
static int pick_key(ld_writer *w) {
  if (!ld.m->own_keys) return ld_rnd(&w->seed, LD_SHARED_KEYS);
  return w->id * LD_WRITER_KEYS + ld_rnd(&w->seed, LD_WRITER_KEYS);
}

/* Checks a 2xx answer: an lsn, and "durable" as auto_flush says. */
static void check_ack(ld_writer *w, const char *method, const char *path, const char *body) {
  json_t *j = json_loads(body, 0, NULL);
  json_t *l = j ? json_object_get(j, "lsn") : NULL, *d = j ? json_object_get(j, "durable") : NULL;
  if (!json_is_integer(l) || json_integer_value(l) <= 0)
    writer_error(w, "%s %s: 2xx without an lsn: %.200s", method, path, body);
  else if ((uint64_t)json_integer_value(l) > w->max_lsn)
    w->max_lsn = (uint64_t)json_integer_value(l);
  if (!json_is_boolean(d) || json_is_true(d) != ld.durable)
    writer_error(w, "%s %s: \"durable\" is not %s: %.200s", method, path,
                 ld.durable ? "true" : "false", body);
  json_decref(j);
}

static void *writer_main(void *arg) {
  ld_writer *w = arg;
  const ld_mode *m = ld.m;
  hs_conn *c = hs_conn_new();
  char *body = malloc(64 * 1024), *val = malloc(LD_VALUE_MAX);
  char path[128], kname[32];
  if (!c || !body || !val) {
    writer_error(w, "out of memory");
    goto out;
  }
  while (!atomic_load(&ld.stop) && w->nops < LD_MAX_OPS) {
    ld_op *o = &w->ops[w->nops];
    memset(o, 0, sizeof *o);
    int seq = w->nops, kind = ld_rnd(&w->seed, m->mix_den);
    const char *method, *ctype = NULL;
    size_t blen = 0;
    if (kind < m->mix_put) {
      o->n = 1;
      o->eff[0] = (ld_effect){pick_key(w), true};
      ld_key_name(o->eff[0].key, kname, sizeof kname);
      ld_value_of(w->id, ld.cycle, seq, 0, val, LD_VALUE_MAX);
      snprintf(path, sizeof path, "/v1/store/%s", kname);
      method = "PUT";
      blen = strlen(val);
      memcpy(body, val, blen + 1);
    } else if (kind < m->mix_del) { /* own keys: mostly of a present key */
      int k = pick_key(w);
      for (int tries = 0;
           m->own_keys && tries < 8 && !w->cur[ld_key_local(k)].present && ld_rnd(&w->seed, 4) != 0;
           tries++)
        k = pick_key(w);
      o->n = 1;
      o->eff[0] = (ld_effect){k, false};
      ld_key_name(k, kname, sizeof kname);
      snprintf(path, sizeof path, "/v1/store/%s", kname);
      method = "DELETE";
    } else { /* batch of distinct keys */
      o->batch = true;
      o->n = 2 + ld_rnd(&w->seed, m->batch_max - 1);
      for (int i = 0; i < o->n; i++) {
        int k;
        bool dup;
        do {
          k = pick_key(w);
          dup = false;
          for (int j = 0; j < i; j++)
            dup = dup || o->eff[j].key == k;
        } while (dup);
        o->eff[i] = (ld_effect){k, ld_rnd(&w->seed, 10) < 7};
      }
      blen = (size_t)sprintf(body, "{\"ops\":[");
      for (int i = 0; i < o->n; i++) {
        ld_key_name(o->eff[i].key, kname, sizeof kname);
        if (o->eff[i].put) {
          ld_value_of(w->id, ld.cycle, seq, i, val, LD_VALUE_MAX);
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
    o->state = LD_UNKNOWN;
    o->e = INFINITY;
    o->s = hs_now();
    w->nops++; /* recorded before it is sent: its outcome may be "applied" */
    hs_resp r;
    int rc = hs_http(c, method, ld.url, path, strcmp(method, "DELETE") ? body : NULL, blen, ctype,
                     LD_REQ_TIMEOUT_MS, &r);
    double e = hs_now();
    if (rc != 0) {
      if (!atomic_load(&ld.killed))
        writer_error(w, "%s %s: connection failed before the %s: %s", method, path, m->event,
                     r.error);
      break; /* the node is gone: outcome unknown */
    }
    if (r.status == 200 || r.status == 201) {
      o->state = LD_ACKED;
      o->e = e;
      check_ack(w, method, path, r.body);
      if (m->own_keys)
        for (int i = 0; i < o->n; i++)
          w->cur[ld_key_local(o->eff[i].key)] = (ld_kstate){o->eff[i].put, ld.cycle, seq, i};
    } else if (r.status == 503 && ld.term && atomic_load(&ld.killed)) {
      break; /* refused while the node stops: outcome unknown */
    } else if (r.status == 404 && !strcmp(method, "DELETE")) {
      o->state = LD_NOOP;
      o->e = e;
      if (m->own_keys && w->cur[ld_key_local(o->eff[0].key)].present)
        writer_error(w, "DELETE %s: 404, but the key was written and acknowledged", path);
    } else {
      writer_error(w, "%s %s: unexpected status %ld: %.300s", method, path, r.status, r.body);
      o->state = LD_REFUSED; /* nothing applied (checked like any other op) */
      o->e = e;
      break;
    }
  }
out:
  free(body);
  free(val);
  hs_conn_free(c);
  return NULL;
}

void ld_load_start(void) {
  for (int i = 0; i < ld.nwriters; i++)
    ld.w[i].nops = 0;
  atomic_store(&ld.stop, 0);
  atomic_store(&ld.killed, 0);
  for (int i = 0; i < ld.nwriters; i++)
    pthread_create(&ld.w[i].th, NULL, writer_main, &ld.w[i]);
}

int ld_load_stop(hs_server *s, int sig) {
  atomic_store(&ld.killed, 1);
  int st = hs_server_stop(s, sig);
  atomic_store(&ld.stop, 1);
  for (int i = 0; i < ld.nwriters; i++)
    pthread_join(ld.w[i].th, NULL);
  for (int i = 0; i < ld.nwriters; i++) {
    ld_writer *w = &ld.w[i];
    if (w->errors)
      ld_fail("writer %d: %ld unexpected answers; first: %s", i, w->errors, w->first_error);
    w->errors = 0;
    if (w->max_lsn > ld.acked_lsn_max) ld.acked_lsn_max = w->max_lsn;
  }
  return st;
}

/* ---- reading back --------------------------------------------------------- */

void ld_listed_free(ld_listed *ob) {
  for (int k = 0; k < ld.nkeys; k++) {
    free(ob[k].value);
    ob[k] = (ld_listed){false, NULL};
  }
}

int ld_read_all(hs_conn *c, ld_listed *ob) {
  const char *tag = ld.m->tag;
  for (int k = 0; k < ld.nkeys; k++)
    ob[k] = (ld_listed){false, NULL};
  char after[128] = "", path[512];
  for (int page = 0; page < 1000; page++) {
    char *enc = hs_pct_encode(after);
    snprintf(path, sizeof path, "/v1/store?values=1&limit=%d%s%s", ld.m->list_limit,
             after[0] ? "&after=" : "", enc ? enc : "");
    free(enc);
    hs_resp r;
    if (hs_http(c, "GET", ld.url, path, NULL, 0, NULL, LD_REQ_TIMEOUT_MS, &r) != 0 ||
        r.status != 200) {
      ld_fail("%slisting %s: status %ld %s %.300s", tag, path, r.status, r.error, r.body);
      return -1;
    }
    json_t *j = json_loads(r.body, 0, NULL);
    json_t *items = j ? json_object_get(j, "items") : NULL;
    if (!json_is_array(items)) {
      ld_fail("%slisting: not JSON with items: %.300s", tag, r.body);
      json_decref(j);
      return -1;
    }
    size_t idx;
    json_t *it;
    json_array_foreach(items, idx, it) {
      const char *key = json_string_value(json_object_get(it, "key"));
      const char *v = json_string_value(json_object_get(it, "value"));
      const char *encoding = json_string_value(json_object_get(it, "encoding"));
      int k = key_index(key);
      if (k < 0) {
        ld_fail("%sa key nobody wrote is listed: \"%.100s\"", tag, key ? key : "(null)");
        continue;
      }
      if (after[0] && strcmp(key, after) <= 0)
        ld_fail("%slisting out of order: \"%s\" after \"%s\"", tag, key, after);
      snprintf(after, sizeof after, "%s", key);
      if (!v || !encoding || strcmp(encoding, "utf-8") != 0) {
        ld_fail("%skey %s: value missing or not text in the listing", tag, key);
        continue;
      }
      if (ob[k].present) ld_fail("%skey %s listed twice", tag, key);
      free(ob[k].value);
      ob[k].present = true;
      ob[k].value = strdup(v);
    }
    bool more = json_is_true(json_object_get(j, "more"));
    json_decref(j);
    if (!more) return 0;
  }
  ld_fail("%slisting did not end after 1000 pages", tag);
  return -1;
}

void ld_check_gets(hs_conn *c, const ld_listed *ob) {
  const char *tag = ld.m->tag;
  char kn[32], path[64];
  for (int k = 0; k < ld.nkeys; k++) {
    ld_key_name(k, kn, sizeof kn);
    snprintf(path, sizeof path, "/v1/store/%s?raw=1", kn);
    hs_resp r;
    if (hs_http(c, "GET", ld.url, path, NULL, 0, NULL, LD_REQ_TIMEOUT_MS, &r) != 0) {
      ld_fail("%sGET %s: %s", tag, path, r.error);
      return;
    }
    if (ob[k].present && (r.status != 200 || !ob[k].value || strcmp(r.body, ob[k].value) != 0))
      ld_fail("%sGET %s: status %ld, \"%.40s\"; the listing has \"%.40s\"", tag, kn, r.status,
              r.body, ob[k].value ? ob[k].value : "");
    if (!ob[k].present && r.status != 404)
      ld_fail("%sGET %s: status %ld for a key the listing does not have: %.200s", tag, kn, r.status,
              r.body);
  }
}

void ld_check_status(hs_conn *c, bool lsn_must) {
  hs_resp r;
  if (hs_http(c, "GET", ld.url, "/v1/status", NULL, 0, NULL, LD_REQ_TIMEOUT_MS, &r) == 0 &&
      r.status == 200) {
    json_t *j = json_loads(r.body, 0, NULL);
    json_t *l = j ? json_object_get(json_object_get(j, "wal"), "last_lsn") : NULL;
    uint64_t last = json_is_integer(l) ? (uint64_t)json_integer_value(l) : 0;
    if (lsn_must && last < ld.acked_lsn_max)
      ld_fail("%sstatus wal.last_lsn %llu is below an acknowledged lsn %llu: acknowledged writes "
              "lost",
              ld.m->tag[0] ? "(b) " : "", (unsigned long long)last,
              (unsigned long long)ld.acked_lsn_max);
    json_decref(j);
  } else {
    ld_fail("%sGET /v1/status: status %ld %s", ld.m->tag, r.status, r.error);
  }
}

int ld_finish(const char *dir, const char *kept_note) {
  for (int i = 0; i < ld.nwriters; i++)
    free(ld.w[i].ops);
  if (ld.failures == 0 || ld.sabotage)
    hs_rmrf(dir);
  else
    printf("%s: data kept in %s%s\n", ld.m->name, dir, kept_note ? kept_note : "");
  curl_global_cleanup();
  if (ld.sabotage) {
    printf("%s: self-test: %ld reports of lost writes (%s)\n", ld.m->name, ld.lost_reports,
           ld.lost_reports ? "the checker detects loss" : "THE CHECKER MISSED THE LOSS");
    return ld.lost_reports ? 0 : 1;
  }
  return ld.failures ? 1 : 0;
}
