/*
 * core_put.c -- durable puts through the core API alone (no HTTP), the same
 * load as the HTTP cells of tests/bench/run.sh: THREADS threads, each
 * putting 100-byte values under uniformly random keys of a 10,000-key space,
 * for SECONDS seconds, auto_flush on (every put acknowledged after its group's
 * fdatasync).  It tells the write path's own rate and group size apart from
 * the HTTP layer's.
 *
 *   core_put DIR THREADS SECONDS [DELAY_S]
 *
 * DELAY_S (0): seconds to wait between the open and the first put, so that a
 * profiler attached once the WAL is open sees every put.
 *
 * Prints:  CORE threads=T puts=N seconds=S rate=R p50_ms=A p99_ms=B
 *          STATS groups=G group_ops=O syncs=F sync_ms_mean=M store_commits=C
 * (sa_client_stats: WAL groups, their writes, WAL fdatasyncs and their mean
 * time, store transactions).  run.sh also counts the fdatasyncs on the WAL
 * file descriptor with perf, independently of the node's own counters.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "softadastra.h"

#define CP_KEYS 10000
#define CP_VALUE_LEN 100
#define CP_MAX_SAMPLES (1u << 20)

static atomic_bool stop;

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

typedef struct {
  sa_client *c;
  unsigned seed;
  uint64_t puts;
  float *lat_ms; /* per-put latency samples */
  size_t nlat, cap;
  int rc;
  sa_error err;
} cp_arg;

static void *cp_main(void *p) {
  cp_arg *a = p;
  char key[32], val[CP_VALUE_LEN];
  memset(val, 'v', sizeof val);
  while (!atomic_load(&stop)) {
    snprintf(key, sizeof key, "bench-%05d", (int)(rand_r(&a->seed) % CP_KEYS));
    double t0 = now_s();
    if ((a->rc = sa_client_put_bytes(a->c, key, val, sizeof val, &a->err)) != 0) break;
    double dt = (now_s() - t0) * 1e3;
    if (a->nlat < a->cap) a->lat_ms[a->nlat++] = (float)dt;
    a->puts++;
  }
  return NULL;
}

static int cmp_float(const void *x, const void *y) {
  float a = *(const float *)x, b = *(const float *)y;
  return (a > b) - (a < b);
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: core_put DIR THREADS SECONDS [DELAY_S]\n");
    return 2;
  }
  unsigned threads = (unsigned)atoi(argv[2]);
  double secs = atof(argv[3]);
  if (threads < 1 || threads > 256 || secs <= 0) {
    fprintf(stderr, "core_put: bad THREADS or SECONDS\n");
    return 2;
  }
  char wal[1024];
  snprintf(wal, sizeof wal, "%s/core-put.wal", argv[1]);
  sa_options o = sa_options_persistent("core-put", wal); /* auto_flush on */
  sa_client *c;
  sa_error err;
  if (sa_client_open(&c, &o, &err) != 0) {
    fprintf(stderr, "core_put: open failed: %s\n", err.message);
    return 1;
  }
  double delay = argc > 4 ? atof(argv[4]) : 0;
  if (delay > 0) {
    struct timespec d = {(time_t)delay, (long)((delay - (double)(time_t)delay) * 1e9)};
    nanosleep(&d, NULL);
  }
  cp_arg *args = calloc(threads, sizeof *args);
  pthread_t *th = calloc(threads, sizeof *th);
  if (!args || !th) return 1;
  size_t cap = CP_MAX_SAMPLES / threads;
  double t0 = now_s();
  for (unsigned t = 0; t < threads; t++) {
    args[t] = (cp_arg){.c = c, .seed = 12345u + t * 7919u, .cap = cap};
    args[t].lat_ms = malloc(cap * sizeof(float));
    if (!args[t].lat_ms || pthread_create(&th[t], NULL, cp_main, &args[t]) != 0) return 1;
  }
  struct timespec ts = {(time_t)secs, (long)((secs - (double)(time_t)secs) * 1e9)};
  nanosleep(&ts, NULL);
  atomic_store(&stop, true);
  uint64_t puts = 0;
  size_t nlat = 0;
  int bad = 0;
  for (unsigned t = 0; t < threads; t++) {
    pthread_join(th[t], NULL);
    puts += args[t].puts;
    nlat += args[t].nlat;
    if (args[t].rc && !bad) {
      fprintf(stderr, "core_put: put failed: %s\n", args[t].err.message);
      bad = 1;
    }
  }
  double dt = now_s() - t0;
  float *all = malloc((nlat ? nlat : 1) * sizeof(float));
  size_t k = 0;
  for (unsigned t = 0; t < threads; t++) {
    memcpy(all + k, args[t].lat_ms, args[t].nlat * sizeof(float));
    k += args[t].nlat;
    free(args[t].lat_ms);
  }
  qsort(all, nlat, sizeof(float), cmp_float);
  double p50 = nlat ? all[nlat / 2] : 0, p99 = nlat ? all[(size_t)((double)nlat * 0.99)] : 0;
  sa_stats st;
  int have_stats = sa_client_stats(c, &st, &err) == 0;
  sa_client_close(c);
  printf("CORE threads=%u puts=%llu seconds=%.3f rate=%.1f p50_ms=%.3f p99_ms=%.3f\n", threads,
         (unsigned long long)puts, dt, (double)puts / dt, p50, p99);
  if (have_stats && st.syncs)
    printf("STATS groups=%llu group_ops=%llu syncs=%llu sync_ms_mean=%.3f store_commits=%llu\n",
           (unsigned long long)st.groups, (unsigned long long)st.group_ops,
           (unsigned long long)st.syncs, st.sync_seconds * 1e3 / (double)st.syncs,
           (unsigned long long)st.store_commits);
  free(all);
  free(args);
  free(th);
  return bad;
}
