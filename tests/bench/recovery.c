/*
 * recovery.c -- recovery speed of the core (tests/bench/run.sh).
 *
 *   recovery gen DIR N [THREADS]   writes N puts (keys rec-0000000.., 100-byte
 *                                  values) into a new node in DIR through the
 *                                  public API: auto_flush off and a WAL bound
 *                                  large enough that no checkpoint truncates
 *                                  the WAL; THREADS blocking writer threads
 *                                  (8), or 0: one thread queuing asynchronous
 *                                  puts, so the WAL holds the keys in order,
 *                                  as lmdb_bulk loads them (run.sh uses 0).  Closes the node (the
 * WAL is flushed and synced, the store synced). recovery replay DIR N          deletes the store
 * (bench.mdb, bench.mdb-lock), keeps the WAL, and times sa_client_open with the server's defaults
 * (auto_flush on): the open scans the WAL and replays every record into the empty store, then syncs
 * it. Checks that N records were replayed and that a sample of keys reads back.
 *
 * Prints one line per phase that run.sh parses:
 *   RECOVERY phase=gen records=N seconds=S rate=R wal_bytes=B
 *   RECOVERY phase=replay records=N scanned=M seconds=S rate=R
 * Exit status: 0, or 1 with the core's error message on stderr.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "softadastra.h"

#define REC_VALUE_LEN 100
#define REC_NODE_ID "bench"

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* The value of record i: 100 bytes of [a-z0-9], varying with i. */
static void rec_value(uint64_t i, char *v) {
  static const char al[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  for (int j = 0; j < REC_VALUE_LEN; j++)
    v[j] = al[(i * 31u + (uint64_t)j * 7u) % 36u];
}

typedef struct {
  sa_client *c;
  uint64_t from, to; /* records [from, to) */
  int rc;
  sa_error err;
} gen_arg;

static void *gen_main(void *p) {
  gen_arg *a = p;
  char key[32], val[REC_VALUE_LEN];
  for (uint64_t i = a->from; i < a->to; i++) {
    snprintf(key, sizeof key, "rec-%07llu", (unsigned long long)i);
    rec_value(i, val);
    if ((a->rc = sa_client_put_bytes(a->c, key, val, sizeof val, &a->err)) != 0) break;
  }
  return NULL;
}

/* threads == 0: one thread queues every put with sa_client_put_async, keys
 * in order, at most GEN_WINDOW in flight, so the WAL holds the records in
 * key order -- the order lmdb_bulk loads them in. */
#define GEN_WINDOW 4096u

static struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  uint64_t done; /* writes settled; they settle in the order they were queued */
  int rc;
  sa_error err;
} gen_q = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, {0, ""}};

static void gen_settled(void *arg, int rc, const sa_write_result *res, const sa_error *err) {
  (void)arg;
  (void)res;
  pthread_mutex_lock(&gen_q.mu);
  gen_q.done++;
  if (rc && !gen_q.rc) {
    gen_q.rc = rc;
    gen_q.err = *err;
  }
  pthread_cond_broadcast(&gen_q.cv);
  pthread_mutex_unlock(&gen_q.mu);
}

static int gen_async(sa_client *c, uint64_t n, sa_error *err) {
  static char keys[GEN_WINDOW][32], vals[GEN_WINDOW][REC_VALUE_LEN];
  for (uint64_t i = 0; i < n; i++) {
    pthread_mutex_lock(&gen_q.mu);
    while (i - gen_q.done >= GEN_WINDOW) /* slot i % GEN_WINDOW is still in flight */
      pthread_cond_wait(&gen_q.cv, &gen_q.mu);
    pthread_mutex_unlock(&gen_q.mu);
    char *k = keys[i % GEN_WINDOW], *v = vals[i % GEN_WINDOW];
    snprintf(k, 32, "rec-%07llu", (unsigned long long)i);
    rec_value(i, v);
    int rc = sa_client_put_async(c, k, v, REC_VALUE_LEN, NULL, gen_settled, NULL, err);
    if (rc) return rc;
  }
  pthread_mutex_lock(&gen_q.mu);
  while (gen_q.done < n)
    pthread_cond_wait(&gen_q.cv, &gen_q.mu);
  pthread_mutex_unlock(&gen_q.mu);
  if (gen_q.rc) *err = gen_q.err;
  return gen_q.rc;
}

static void paths(const char *dir, char *wal, char *mdb, char *lock, size_t n) {
  snprintf(wal, n, "%s/%s.wal", dir, REC_NODE_ID);
  snprintf(mdb, n, "%s/%s.mdb", dir, REC_NODE_ID);
  snprintf(lock, n, "%s/%s.mdb-lock", dir, REC_NODE_ID);
}

static int do_gen(const char *dir, uint64_t n, unsigned threads) {
  char wal[1024], mdb[1024], lock[1024];
  paths(dir, wal, mdb, lock, sizeof wal);
  sa_options o = sa_options_persistent(REC_NODE_ID, wal);
  o.auto_flush = false;
  o.flush_interval_ms = 1000;
  o.wal_max_bytes = 64ull << 30; /* checkpoint past 32 GiB only: never here */
  sa_client *c;
  sa_error err;
  if (sa_client_open(&c, &o, &err) != 0) {
    fprintf(stderr, "recovery gen: open failed: %s\n", err.message);
    return 1;
  }
  double t0 = now_s();
  pthread_t th[64];
  gen_arg args[64];
  if (threads == 0 && gen_async(c, n, &err) != 0) {
    fprintf(stderr, "recovery gen: put failed: %s\n", err.message);
    sa_client_close(c);
    return 1;
  }
  if (threads > 64) threads = 64;
  for (unsigned t = 0; t < threads; t++) {
    args[t] = (gen_arg){.c = c, .from = n * t / threads, .to = n * (t + 1) / threads};
    if (pthread_create(&th[t], NULL, gen_main, &args[t]) != 0) {
      fprintf(stderr, "recovery gen: cannot start a thread\n");
      return 1;
    }
  }
  int bad = 0;
  for (unsigned t = 0; t < threads; t++) {
    pthread_join(th[t], NULL);
    if (args[t].rc && !bad) {
      fprintf(stderr, "recovery gen: put failed: %s\n", args[t].err.message);
      bad = 1;
    }
  }
  sa_status st;
  if (sa_client_status(c, &st, &err) != 0) {
    fprintf(stderr, "recovery gen: status failed: %s\n", err.message);
    bad = 1;
  }
  sa_client_close(c);
  double dt = now_s() - t0;
  if (bad) return 1;
  if (st.checkpoints) {
    fprintf(stderr, "recovery gen: a checkpoint ran (%llu): the WAL no longer holds every record\n",
            (unsigned long long)st.checkpoints);
    return 1;
  }
  uint64_t wal_bytes = st.wal_bytes; /* the records, not the preallocated zeros */
  printf("RECOVERY phase=gen records=%llu seconds=%.3f rate=%.0f wal_bytes=%llu last_lsn=%llu\n",
         (unsigned long long)n, dt, (double)n / dt, (unsigned long long)wal_bytes,
         (unsigned long long)st.last_lsn);
  return 0;
}

static int do_replay(const char *dir, uint64_t n) {
  char wal[1024], mdb[1024], lock[1024];
  paths(dir, wal, mdb, lock, sizeof wal);
  if (unlink(mdb) != 0 && errno != ENOENT) {
    fprintf(stderr, "recovery replay: cannot delete %s: %s\n", mdb, strerror(errno));
    return 1;
  }
  unlink(lock);
  sa_options o = sa_options_persistent(REC_NODE_ID, wal); /* auto_flush on: the server default */
  o.wal_max_bytes = 64ull << 30;
  sa_client *c;
  sa_error err;
  double t0 = now_s();
  if (sa_client_open(&c, &o, &err) != 0) {
    fprintf(stderr, "recovery replay: open of a WAL without its store failed: %s\n", err.message);
    return 1;
  }
  double dt = now_s() - t0;
  sa_status st;
  if (sa_client_status(c, &st, &err) != 0) {
    fprintf(stderr, "recovery replay: status failed: %s\n", err.message);
    sa_client_close(c);
    return 1;
  }
  int bad = 0;
  if (st.recovery.records_replayed != n || st.size != n) {
    fprintf(stderr,
            "recovery replay: expected %llu records, replayed %llu, store holds %llu keys\n",
            (unsigned long long)n, (unsigned long long)st.recovery.records_replayed,
            (unsigned long long)st.size);
    bad = 1;
  }
  /* spot check: a few keys read back with their values */
  for (uint64_t i = 0; i < n && !bad; i += n / 7 + 1) {
    char key[32], want[REC_VALUE_LEN];
    snprintf(key, sizeof key, "rec-%07llu", (unsigned long long)i);
    rec_value(i, want);
    sa_value v;
    if (sa_client_get(c, key, &v, &err) != 0 || v.len != REC_VALUE_LEN ||
        memcmp(v.data, want, REC_VALUE_LEN) != 0) {
      fprintf(stderr, "recovery replay: key %s did not read back\n", key);
      bad = 1;
    }
    sa_value_free(&v);
  }
  double t1 = now_s();
  sa_client_close(c);
  double dclose = now_s() - t1;
  if (bad) return 1;
  printf("RECOVERY phase=replay records=%llu scanned=%llu seconds=%.3f rate=%.0f close_s=%.3f\n",
         (unsigned long long)st.recovery.records_replayed,
         (unsigned long long)st.recovery.records_scanned, dt,
         (double)st.recovery.records_replayed / dt, dclose);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: recovery gen DIR N [THREADS] | recovery replay DIR N\n");
    return 2;
  }
  uint64_t n = strtoull(argv[3], NULL, 10);
  if (n == 0) {
    fprintf(stderr, "recovery: N must be > 0\n");
    return 2;
  }
  if (strcmp(argv[1], "gen") == 0)
    return do_gen(argv[2], n, argc > 4 ? (unsigned)atoi(argv[4]) : 8);
  if (strcmp(argv[1], "replay") == 0) return do_replay(argv[2], n);
  fprintf(stderr, "recovery: unknown mode %s\n", argv[1]);
  return 2;
}
