/*
 * lmdb_bulk.c -- the raw LMDB baseline of the recovery benchmark
 * (tests/bench/run.sh): loads the same N key/values that `recovery gen`
 * writes (keys rec-0000000.., 100-byte values) into a fresh LMDB file with
 * liblmdb directly, one write txn per 8192 puts, then forces a sync.
 *
 *   lmdb_bulk FILE N [nosync]
 *
 * `nosync` uses the flags of the node's store (MDB_NOSUBDIR | MDB_NOSYNC:
 * no sync per commit, one mdb_env_sync at the end, as a replay does), so
 * that comparison is like for like; by default MDB_NOMETASYNC (each commit
 * fdatasyncs its data pages: what the store did before its sync points).  Only one named
 * database, no outbox, no per-value header: this is the floor of the work.
 *
 * Prints:  LMDB mode=durable|nosync records=N seconds=S rate=R
 */
#define _GNU_SOURCE
#include <lmdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BULK_VALUE_LEN 100
#define BULK_TXN_PUTS 8192

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Same values as recovery.c's rec_value. */
static void rec_value(uint64_t i, char *v) {
  static const char al[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  for (int j = 0; j < BULK_VALUE_LEN; j++)
    v[j] = al[(i * 31u + (uint64_t)j * 7u) % 36u];
}

#define CHECK(call)                                                                                \
  do {                                                                                             \
    int rc_ = (call);                                                                              \
    if (rc_ != 0) {                                                                                \
      fprintf(stderr, "lmdb_bulk: %s failed: %s\n", #call, mdb_strerror(rc_));                     \
      return 1;                                                                                    \
    }                                                                                              \
  } while (0)

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: lmdb_bulk FILE N [nosync]\n");
    return 2;
  }
  const char *path = argv[1];
  uint64_t n = strtoull(argv[2], NULL, 10);
  int nosync = argc > 3 && strcmp(argv[3], "nosync") == 0;
  char lock[4096];
  snprintf(lock, sizeof lock, "%s-lock", path);
  unlink(path);
  unlink(lock);

  MDB_env *env;
  CHECK(mdb_env_create(&env));
  CHECK(mdb_env_set_maxdbs(env, 8));
  CHECK(mdb_env_set_mapsize(env, (size_t)8 << 30));
  CHECK(mdb_env_open(env, path, MDB_NOSUBDIR | (nosync ? MDB_NOSYNC : MDB_NOMETASYNC), 0644));

  double t0 = now_s();
  MDB_txn *txn = NULL;
  MDB_dbi dbi;
  CHECK(mdb_txn_begin(env, NULL, 0, &txn));
  CHECK(mdb_dbi_open(txn, "kv", MDB_CREATE, &dbi));
  char key[32], val[BULK_VALUE_LEN];
  uint32_t in_txn = 0;
  for (uint64_t i = 0; i < n; i++) {
    if (!txn) CHECK(mdb_txn_begin(env, NULL, 0, &txn));
    int kl = snprintf(key, sizeof key, "rec-%07llu", (unsigned long long)i);
    rec_value(i, val);
    MDB_val k = {.mv_size = (size_t)kl, .mv_data = key};
    MDB_val v = {.mv_size = sizeof val, .mv_data = val};
    CHECK(mdb_put(txn, dbi, &k, &v, 0));
    if (++in_txn >= BULK_TXN_PUTS) {
      CHECK(mdb_txn_commit(txn));
      txn = NULL;
      in_txn = 0;
    }
  }
  if (txn) CHECK(mdb_txn_commit(txn));
  CHECK(mdb_env_sync(env, 1));
  double dt = now_s() - t0;
  mdb_env_close(env);
  printf("LMDB mode=%s records=%llu seconds=%.3f rate=%.0f\n", nosync ? "nosync" : "durable",
         (unsigned long long)n, dt, (double)n / dt);
  return 0;
}
