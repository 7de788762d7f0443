/*
 * soak.c -- a bounded load soak against the real server.
 *
 * W worker threads send mixed traffic to one `softadastra serve` for
 * SA_SOAK_SECONDS (60): PUT (values of 10 B to 8 KiB), GET, DELETE,
 * POST /v1/batch, GET /v1/store listings and GET /v1/status, on a bounded
 * key space (so the store, and its mapped pages, stop growing after the
 * warm-up).  Meanwhile a prober asks GET /readyz once a second and the main
 * thread samples the node's memory once a second.  Checks:
 *   - zero request errors: no 5xx, no connection failure, no unexpected 4xx
 *     (404 is expected for GET/DELETE of an absent key, nothing else);
 *   - /readyz answers 200 at every probe;
 *   - memory stays flat: the node's anonymous RSS (heap, stacks: what a
 *     leak grows) at the end is at most 25% + 8 MiB above its value after
 *     the warm-up (the first fifth of the run).  RssFile (LMDB's map and
 *     the binary) is printed, not judged.  Skipped under SA_SERVER_WRAPPER
 *     (valgrind's own memory is not the node's) and in sanitizer builds;
 *   - the node stops with exit 0 on SIGTERM afterwards.
 * Every loop is bounded in time and in count.  Figures are printed.
 *
 * usage: sa_soak PATH/TO/softadastra
 * environment: SA_SOAK_SECONDS (60), SA_SOAK_WORKERS (6), SA_SERVER_WRAPPER.
 */
#define _GNU_SOURCE
#include "harness.h"

#include <curl/curl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* A sanitizer build's node keeps freed memory in quarantine (ASan) or
 * shadow state (TSan): its RSS says nothing about leaks. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SOAK_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SOAK_SANITIZED 1
#endif
#endif
#ifndef SOAK_SANITIZED
#define SOAK_SANITIZED 0
#endif

#define NKEYS 2000
#define MAX_WORKERS 32
#define MAX_OPS_PER_WORKER 50000000L
#define REQ_TIMEOUT_MS 30000

enum { K_PUT, K_GET, K_DEL, K_BATCH, K_LIST, K_STATUS, K_N };
static const char *kind_name[K_N] = {"put", "get", "delete", "batch", "list", "status"};

static struct {
  char url[64];
  atomic_int stop;
  atomic_long ops[K_N];
  atomic_long errors;
  atomic_long probes, probe_failures;
  pthread_mutex_t mu;
  char first_error[512];
} g = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void error_seen(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void error_seen(const char *fmt, ...) {
  if (atomic_fetch_add(&g.errors, 1) < 5) {
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&g.mu);
    printf("ERROR ");
    vprintf(fmt, ap);
    putchar('\n');
    pthread_mutex_unlock(&g.mu);
    va_end(ap);
  }
}

static void sleep_ms(long ms) {
  struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&t, NULL);
}

typedef struct worker {
  int id;
  pthread_t th;
  unsigned seed;
} worker;

static int rnd(unsigned *s, int n) {
  return (int)(rand_r(s) % (unsigned)n);
}

static void fill_value(unsigned *s, char *buf, size_t n) {
  for (size_t i = 0; i < n; i++)
    buf[i] = (char)('a' + rnd(s, 26));
  buf[n] = 0;
}

static void *worker_main(void *arg) {
  worker *w = arg;
  hs_conn *c = hs_conn_new();
  char *body = malloc(64 * 1024), path[256], val[8200];
  long n = 0;
  while (c && body && !atomic_load(&g.stop) && n < MAX_OPS_PER_WORKER) {
    if (w->id == 0 && n % 50 == 49) { /* one worker also churns connections */
      hs_conn_free(c);
      c = hs_conn_new();
      if (!c) break;
    }
    n++;
    int r = rnd(&w->seed, 100), kind;
    kind = r < 40   ? K_PUT
           : r < 65 ? K_GET
           : r < 75 ? K_DEL
           : r < 85 ? K_BATCH
           : r < 95 ? K_LIST
                    : K_STATUS;
    int key = rnd(&w->seed, NKEYS);
    const char *method = "GET", *ctype = NULL;
    const char *b = NULL;
    size_t blen = 0;
    switch (kind) {
    case K_PUT: {
      size_t vl = 10 + (size_t)rnd(&w->seed, rnd(&w->seed, 10) == 0 ? 8000 : 500);
      fill_value(&w->seed, val, vl);
      snprintf(path, sizeof path, "/v1/store/soak/%d/k%d", key % 17, key);
      method = "PUT";
      b = val;
      blen = vl;
      break;
    }
    case K_GET:
      snprintf(path, sizeof path, "/v1/store/soak/%d/k%d%s", key % 17, key,
               rnd(&w->seed, 2) ? "?raw=1" : "");
      break;
    case K_DEL:
      snprintf(path, sizeof path, "/v1/store/soak/%d/k%d", key % 17, key);
      method = "DELETE";
      break;
    case K_BATCH: {
      int nops = 1 + rnd(&w->seed, 8);
      size_t bl = (size_t)sprintf(body, "{\"ops\":[");
      for (int i = 0; i < nops; i++) {
        int k = rnd(&w->seed, NKEYS);
        if (rnd(&w->seed, 4) == 0) {
          bl += (size_t)sprintf(body + bl, "%s{\"op\":\"delete\",\"key\":\"soak/%d/k%d\"}",
                                i ? "," : "", k % 17, k);
        } else {
          fill_value(&w->seed, val, 10 + (size_t)rnd(&w->seed, 300));
          bl += (size_t)sprintf(body + bl,
                                "%s{\"op\":\"put\",\"key\":\"soak/%d/k%d\",\"value\":\"%s\"}",
                                i ? "," : "", k % 17, k, val);
        }
      }
      bl += (size_t)sprintf(body + bl, "]}");
      snprintf(path, sizeof path, "/v1/batch");
      method = "POST";
      ctype = "application/json";
      b = body;
      blen = bl;
      break;
    }
    case K_LIST:
      snprintf(path, sizeof path, "/v1/store?prefix=soak/%d/&limit=%d%s", key % 17,
               1 + rnd(&w->seed, 200), rnd(&w->seed, 2) ? "&values=1" : "");
      break;
    default:
      snprintf(path, sizeof path, "/v1/status");
      break;
    }
    hs_resp resp;
    if (hs_http(c, method, g.url, path, b, blen, ctype, REQ_TIMEOUT_MS, &resp) != 0) {
      error_seen("%s %s: connection failed: %s", method, path, resp.error);
      continue;
    }
    atomic_fetch_add(&g.ops[kind], 1);
    long st = resp.status;
    bool ok = st == 200 || st == 201 || (st == 404 && (kind == K_GET || kind == K_DEL));
    if (!ok) error_seen("%s %s: status %ld: %.200s", method, path, st, resp.body);
  }
  free(body);
  hs_conn_free(c);
  return NULL;
}

static void *prober_main(void *arg) {
  (void)arg;
  hs_conn *c = hs_conn_new();
  while (c && !atomic_load(&g.stop)) {
    hs_resp r;
    int rc = hs_http(c, "GET", g.url, "/readyz", NULL, 0, NULL, REQ_TIMEOUT_MS, &r);
    atomic_fetch_add(&g.probes, 1);
    if (rc != 0 || r.status != 200) {
      atomic_fetch_add(&g.probe_failures, 1);
      error_seen("GET /readyz: %ld %s %.200s", r.status, r.error, r.body);
    }
    for (int i = 0; i < 10 && !atomic_load(&g.stop); i++)
      sleep_ms(100);
  }
  hs_conn_free(c);
  return NULL;
}

/* RssAnon and RssFile of pid in KiB. */
static void rss_parts(pid_t pid, long *anon, long *file) {
  char p[64], line[256];
  *anon = *file = -1;
  snprintf(p, sizeof p, "/proc/%d/status", (int)pid);
  FILE *f = fopen(p, "r");
  if (!f) return;
  while (fgets(line, sizeof line, f)) {
    if (!strncmp(line, "RssAnon:", 8)) *anon = strtol(line + 8, NULL, 10);
    if (!strncmp(line, "RssFile:", 8)) *file = strtol(line + 8, NULL, 10);
  }
  fclose(f);
}

static void on_signal(int sig) {
  hs_kill_all();
  signal(sig, SIG_DFL);
  raise(sig);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s PATH/TO/softadastra\n", argv[0]);
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  const char *e = getenv("SA_SOAK_SECONDS");
  int secs = e && *e ? atoi(e) : 60;
  e = getenv("SA_SOAK_WORKERS");
  int nw = e && *e ? atoi(e) : 6;
  const char *wrap = getenv("SA_SERVER_WRAPPER");
  bool wrapped = (wrap && *wrap) || SOAK_SANITIZED;
  if (secs < 5 || nw < 1 || nw > MAX_WORKERS) {
    fprintf(stderr, "bad SA_SOAK_* settings\n");
    return 2;
  }
  atexit(hs_kill_all);
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  signal(SIGPIPE, SIG_IGN);
  curl_global_init(CURL_GLOBAL_ALL);
  char dir[512];
  if (hs_tmpdir("soak", dir, sizeof dir) != 0) return 1;
  hs_server s;
  hs_server_init(&s, argv[1], dir);
  s.extra[0] = "--log-level";
  s.extra[1] = "warn";
  int st;
  char sb[64];
  if (hs_server_start(&s, &st) != 0) {
    printf("FAIL node did not start: %s\n", hs_status_str(st, sb, sizeof sb));
    return 1;
  }
  snprintf(g.url, sizeof g.url, "%s", s.url);
  printf("soak: %d s, %d workers, node %s (pid %d)%s\n", secs, nw, s.url, (int)s.pid,
         wrapped ? ", wrapped or sanitized: memory not judged" : "");

  worker w[MAX_WORKERS];
  pthread_t prober;
  pthread_create(&prober, NULL, prober_main, NULL);
  for (int i = 0; i < nw; i++) {
    w[i].id = i;
    w[i].seed = (unsigned)time(NULL) * 7919u + (unsigned)i;
    pthread_create(&w[i].th, NULL, worker_main, &w[i]);
  }
  int warm = secs / 5;
  long warm_anon = -1, warm_file = -1, end_anon = -1, end_file = -1, max_anon = 0;
  double t0 = hs_now();
  for (int t = 1; t <= secs; t++) {
    while (hs_now() - t0 < t)
      sleep_ms(20);
    long a, f;
    rss_parts(s.pid, &a, &f);
    if (a > max_anon) max_anon = a;
    if (t == warm) {
      warm_anon = a;
      warm_file = f;
    }
    end_anon = a;
    end_file = f;
    if (t % 10 == 0) {
      long total = 0;
      for (int k = 0; k < K_N; k++)
        total += atomic_load(&g.ops[k]);
      printf("  t=%3ds ops=%ld errors=%ld rss_anon=%ld KiB rss_file=%ld KiB\n", t, total,
             atomic_load(&g.errors), a, f);
    }
    if (waitpid(s.pid, &st, WNOHANG) == s.pid) {
      printf("FAIL the node died during the soak: %s\n", hs_status_str(st, sb, sizeof sb));
      s.pid = 0;
      atomic_fetch_add(&g.errors, 1);
      break;
    }
  }
  atomic_store(&g.stop, 1);
  for (int i = 0; i < nw; i++)
    pthread_join(w[i].th, NULL);
  pthread_join(prober, NULL);
  double el = hs_now() - t0;

  long failures = 0, total = 0;
  for (int k = 0; k < K_N; k++)
    total += atomic_load(&g.ops[k]);
  printf("soak: %ld requests in %.1f s (%.0f/s):", total, el, (double)total / el);
  for (int k = 0; k < K_N; k++)
    printf(" %s %ld", kind_name[k], atomic_load(&g.ops[k]));
  printf("\nsoak: %ld request errors; /readyz %ld probes, %ld not 200\n", atomic_load(&g.errors),
         atomic_load(&g.probes), atomic_load(&g.probe_failures));
  printf("soak: RssAnon after warm-up (t=%ds) %ld KiB, at the end %ld KiB, max %ld KiB; RssFile "
         "%ld -> %ld KiB\n",
         warm, warm_anon, end_anon, max_anon, warm_file, end_file);
  if (atomic_load(&g.errors)) {
    printf("FAIL request errors during the soak\n");
    failures++;
  }
  if (atomic_load(&g.probes) < secs / 2 || atomic_load(&g.probe_failures)) {
    printf("FAIL /readyz did not answer 200 throughout\n");
    failures++;
  }
  if (total < secs) {
    printf("FAIL almost no traffic went through (%ld requests)\n", total);
    failures++;
  }
  if (!wrapped) {
    long limit = warm_anon + warm_anon / 4 + 8 * 1024;
    if (warm_anon <= 0 || end_anon <= 0 || end_anon > limit) {
      printf("FAIL memory grew: RssAnon %ld KiB after warm-up, %ld KiB at the end (limit %ld)\n",
             warm_anon, end_anon, limit);
      failures++;
    }
  }
  if (s.pid > 0) {
    st = hs_server_stop(&s, SIGTERM);
    if (!(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
      printf("FAIL graceful stop after the soak: %s\n", hs_status_str(st, sb, sizeof sb));
      hs_dump_log(&s, "graceful stop failed", 64 * 1024);
      failures++;
    }
  }
  if (failures == 0)
    hs_rmrf(dir);
  else
    printf("soak: data and logs kept in %s\n", dir);
  curl_global_cleanup();
  printf("soak: %s\n", failures ? "FAILED" : "passed");
  return failures ? 1 : 0;
}
