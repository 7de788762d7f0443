/*
 * test_kill.c -- kill -9 at random moments and at every I/O step.
 *
 * random_kills: a forked child opens a persistent node (auto_flush on) and
 * runs four writer threads doing puts, removes and batches on a small key
 * space.  Before each operation a thread writes a "B" line to a pipe, after
 * each acknowledged one an "A" line with the LSN the core reported.  The
 * parent SIGKILLs the child at a random moment (also during open and
 * recovery), reopens the node and checks, for every key:
 *   - the acknowledged operation with the highest LSN is in effect, or a
 *     later one that was started but never acknowledged (its thread died
 *     in flight);
 *   - nothing appears that was never written.
 * The same node is reused from cycle to cycle, so recovery also recovers
 * what earlier recoveries left.  Odd cycles use a 64 KiB WAL bound so kills
 * also land in checkpoints.  SA_KILL_CYCLES=N sets the cycle count (20 by
 * default; 500 for the long mode), SA_KILL_SEED the random seed.
 * random_kills_no_auto_flush runs a quarter as many cycles with
 * auto_flush=false: acknowledged after write(2), so a killed process (not a
 * power loss) must still lose nothing acknowledged.
 *
 * crash_at_every_step: a sequential workload runs in a child whose I/O
 * table kills it at the k-th call (before the call, after it, or tearing a
 * pwrite), for every k until the workload completes; after each
 * crash the node must open and hold exactly the state after the last
 * acknowledged step, or after the step in flight ("torn" models power loss:
 * a write spanning sectors persists up to a sector boundary).  Once from an empty
 * directory (crashes while the WAL is created), once from a node that has a
 * torn tail and a store behind its WAL (crashes during recovery).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test_util.h"

static char dir[TU_PATH_MAX];       /* this test's fresh directory */
static bool kill_auto_flush = true; /* random kills: the child's auto_flush */
static char wal[TU_PATH_MAX];       /* dir/node-1.wal */
static sa_options opts;             /* persistent node-1 at wal */

static void setup(void) {
  tu_mkdir(dir);
  opts = tu_options("node-1", dir, wal);
}

static long env_long(const char *name, long dflt) {
  const char *s = getenv(name);
  return s && *s ? strtol(s, NULL, 10) : dflt;
}

/* Writes a whole line with one write(2): lines under PIPE_BUF never mix. */
static void emit(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void emit(int fd, const char *fmt, ...) {
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (n <= 0 || n >= (int)sizeof line || write(fd, line, (size_t)n) != n) _exit(90);
}

/* ======================================================================= */
/* random kills                                                            */
/* ======================================================================= */

enum { NKEYS = 48, NTHREADS = 4, MAX_BATCH = 3 };

/* The value an operation writes to a key: unique per (cycle, thread, seq,
 * key), with a length that varies. */
static void value_for(char *out, size_t cap, int cycle, int t, long s, int key) {
  int n = snprintf(out, cap, "c%dt%ds%ld:k%d:", cycle, t, s, key);
  size_t fill = (size_t)((s * 37 + t * 11 + key) % 200);
  for (size_t i = 0; i < fill && (size_t)n + 1 < cap; i++)
    out[n++] = (char)('a' + (s + (long)i) % 26);
  out[n] = 0;
}

static void key_name(char out[16], int key) {
  snprintf(out, 16, "key/%02d", key);
}

typedef struct kop {
  int n;               /* operations (1 unless a batch) */
  int kind[MAX_BATCH]; /* SA_OP_PUT / SA_OP_DELETE */
  int key[MAX_BATCH];
  bool begun;
  bool acked;
  uint64_t lsn; /* when acked */
} kop;

typedef struct child_arg {
  sa_client *c;
  int fd;
  int t;
  int cycle;
  unsigned seed;
} child_arg;

static void *kill_writer(void *p) {
  child_arg *a = p;
  unsigned seed = a->seed;
  char val[MAX_BATCH][320];
  char key[MAX_BATCH][16];
  for (long s = 0; s < 1000000; s++) {
    int r = rand_r(&seed) % 100;
    int n = r < 70 ? 1 : r < 85 ? 1 : 2 + rand_r(&seed) % (MAX_BATCH - 1);
    bool is_batch = r >= 85;
    int kind[MAX_BATCH], k[MAX_BATCH];
    for (int i = 0; i < n; i++) {
      do {
        k[i] = rand_r(&seed) % NKEYS;
        for (int j = 0; j < i; j++)
          if (k[j] == k[i]) k[i] = -1;
      } while (k[i] < 0);
      kind[i] = r < 70   ? SA_OP_PUT
                : r < 85 ? SA_OP_DELETE
                         : (rand_r(&seed) % 3 ? SA_OP_PUT : SA_OP_DELETE);
      key_name(key[i], k[i]);
      value_for(val[i], sizeof val[i], a->cycle, a->t, s, k[i]);
    }
    char desc[128];
    int dn = 0;
    for (int i = 0; i < n; i++)
      dn += snprintf(desc + dn, sizeof desc - (size_t)dn, " %c%d", kind[i] == SA_OP_PUT ? 'P' : 'D',
                     k[i]);
    emit(a->fd, "B %d %ld %d%s\n", a->t, s, n, desc);

    sa_write_result res = {0};
    sa_error err = {0};
    int rc;
    if (is_batch) {
      sa_batch_op ops[MAX_BATCH];
      for (int i = 0; i < n; i++) {
        ops[i].op = kind[i];
        ops[i].key = key[i];
        ops[i].data = val[i];
        ops[i].len = kind[i] == SA_OP_PUT ? strlen(val[i]) : 0;
      }
      rc = sa_client_batch(a->c, ops, (size_t)n, &res, &err);
    } else if (kind[0] == SA_OP_PUT) {
      rc = sa_client_put_ex(a->c, key[0], val[0], strlen(val[0]), NULL, &res, &err);
    } else {
      rc = sa_client_remove_ex(a->c, key[0], NULL, &res, &err);
    }
    if (rc == SA_OK) {
      if (res.durable != kill_auto_flush)
        tu_child_fail(6, "acknowledged with durable=%d, auto_flush=%d", (int)res.durable,
                      (int)kill_auto_flush);
      emit(a->fd, "A %d %ld %" PRIu64 "\n", a->t, s, res.lsn);
    } else if (rc == SA_ENOTFOUND && !is_batch && kind[0] == SA_OP_DELETE) {
      emit(a->fd, "N %d %ld\n", a->t, s);
    } else {
      emit(a->fd, "E %d %ld %d %s\n", a->t, s, rc, err.message);
      _exit(5);
    }
  }
  return NULL;
}

static void kill_child_main(int fd, int cycle, unsigned seed, uint64_t wal_max) {
  sa_options o = opts;
  o.wal_max_bytes = wal_max;
  o.auto_flush = kill_auto_flush;
  sa_client *c = NULL;
  sa_error err = {0};
  int rc = sa_client_open(&c, &o, &err);
  if (rc != SA_OK) {
    emit(fd, "E open %d %s\n", rc, err.message);
    _exit(4);
  }
  emit(fd, "R\n");
  static child_arg args[NTHREADS];
  pthread_t th[NTHREADS];
  for (int t = 0; t < NTHREADS; t++) {
    args[t] = (child_arg){c, fd, t, cycle, seed * 7919u + (unsigned)t};
    if (pthread_create(&th[t], NULL, kill_writer, &args[t]) != 0) _exit(3);
  }
  for (int t = 0; t < NTHREADS; t++)
    pthread_join(th[t], NULL);
  sa_client_close(c);
  _exit(0);
}

/* What the parent knows about a key from earlier cycles. */
typedef struct kstate {
  bool present;
  char value[320];
  uint64_t lsn;
} kstate;

typedef struct cycle_log {
  kop *ops[NTHREADS]; /* indexed by seq */
  long cap[NTHREADS];
  long acked;
  char error[600];
  bool ready;
} cycle_log;

static kop *log_op(cycle_log *L, int t, long s) {
  ck_assert(t >= 0 && t < NTHREADS && s >= 0);
  if (s >= L->cap[t]) {
    long ncap = L->cap[t] ? L->cap[t] * 2 : 1024;
    while (ncap <= s)
      ncap *= 2;
    L->ops[t] = realloc(L->ops[t], (size_t)ncap * sizeof(kop));
    ck_assert_ptr_nonnull(L->ops[t]);
    memset(L->ops[t] + L->cap[t], 0, (size_t)(ncap - L->cap[t]) * sizeof(kop));
    L->cap[t] = ncap;
  }
  return &L->ops[t][s];
}

static void parse_line(cycle_log *L, char *line) {
  int t, n;
  long s;
  uint64_t lsn;
  int used = 0;
  if (line[0] == 'R') {
    L->ready = true;
  } else if (sscanf(line, "B %d %ld %d%n", &t, &s, &n, &used) == 3) {
    kop *op = log_op(L, t, s);
    op->begun = true;
    op->n = n;
    char *p = line + used;
    for (int i = 0; i < n && i < MAX_BATCH; i++) {
      char kc;
      int k, m = 0;
      ck_assert_msg(sscanf(p, " %c%d%n", &kc, &k, &m) == 2, "bad line: %s", line);
      op->kind[i] = kc == 'P' ? SA_OP_PUT : SA_OP_DELETE;
      op->key[i] = k;
      p += m;
    }
  } else if (sscanf(line, "A %d %ld %" SCNu64, &t, &s, &lsn) == 3) {
    kop *op = log_op(L, t, s);
    ck_assert_msg(op->begun, "ack before begin: %s", line);
    op->acked = true;
    op->lsn = lsn;
    L->acked++;
  } else if (sscanf(line, "N %d %ld", &t, &s) == 2) {
    log_op(L, t, s)->begun = false; /* remove of an absent key: no effect */
  } else if (line[0] == 'E') {
    snprintf(L->error, sizeof L->error, "%s", line);
  } else {
    ck_abort_msg("unexpected line from the child: %s", line);
  }
}

/* Runs one cycle: fork, SIGKILL delay_ms after the fork (during_open) or
 * after the child reported its node open, collect the child's lines. */
static void run_kill_cycle(cycle_log *L, int cycle, unsigned seed, unsigned delay_ms,
                           bool during_open, uint64_t wal_max) {
  int fds[2];
  ck_assert_int_eq(pipe(fds), 0);
  fcntl(fds[0], F_SETPIPE_SZ, 1 << 20);
  fflush(NULL);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    close(fds[0]);
    kill_child_main(fds[1], cycle, seed, wal_max);
  }
  close(fds[1]);

  size_t cap = 1 << 16, len = 0;
  char *buf = malloc(cap);
  ck_assert_ptr_nonnull(buf);
  /* The child's first line is "R" once its node is open. */
  uint64_t deadline = during_open ? tu_now_ms() + delay_ms : UINT64_MAX;
  bool killed = false, eof = false;
  while (!eof) {
    int timeout = -1;
    if (deadline == UINT64_MAX && len > 0) {
      if (buf[0] != 'R') kill(pid, SIGKILL); /* open failed: the line says why */
      deadline = tu_now_ms() + delay_ms;
    }
    if (!killed && deadline != UINT64_MAX) {
      uint64_t now = tu_now_ms();
      if (now >= deadline) {
        kill(pid, SIGKILL);
        killed = true;
      } else {
        timeout = (int)(deadline - now);
      }
    }
    struct pollfd pfd = {fds[0], POLLIN, 0};
    int pr = poll(&pfd, 1, timeout);
    if (pr < 0 && errno == EINTR) continue;
    ck_assert_int_ge(pr, 0);
    if (pr == 0) continue;
    if (len + 4096 > cap) {
      cap *= 2;
      buf = realloc(buf, cap);
      ck_assert_ptr_nonnull(buf);
    }
    ssize_t r = read(fds[0], buf + len, cap - len - 1);
    if (r < 0 && errno == EINTR) continue;
    ck_assert_int_ge(r, 0);
    if (r == 0) eof = true;
    len += (size_t)r;
  }
  close(fds[0]);
  int status;
  ck_assert_int_eq(waitpid(pid, &status, 0), pid);
  buf[len] = 0;

  char *save = NULL;
  for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
    parse_line(L, line);
  free(buf);
  ck_assert_msg(L->error[0] == 0, "cycle %d (seed %u): the child failed: %s", cycle, seed,
                L->error);
  ck_assert_msg(WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) == 0),
                "cycle %d (seed %u): child status %d", cycle, seed, status);
}

/* Reopens and checks every key against the log; updates the model. */
static void verify_cycle(cycle_log *L, kstate *model, int cycle, unsigned seed) {
  sa_client *c = NULL;
  sa_error err = {0};
  int rc = sa_client_open(&c, &opts, &err);
  ck_assert_msg(rc == SA_OK, "cycle %d (seed %u): reopen after kill -9: %d %s", cycle, seed, rc,
                err.message);

  size_t present = 0;
  for (int k = 0; k < NKEYS; k++) {
    /* Highest acknowledged op on k, and the unacknowledged ones in flight. */
    const kop *best = NULL;
    int best_i = -1, best_t = -1;
    long best_s = -1;
    for (int t = 0; t < NTHREADS; t++)
      for (long s = 0; s < L->cap[t]; s++) {
        const kop *op = &L->ops[t][s];
        if (!op->begun || !op->acked) continue;
        for (int i = 0; i < op->n; i++)
          if (op->key[i] == k && (!best || op->lsn > best->lsn)) {
            best = op;
            best_i = i;
            best_t = t;
            best_s = s;
          }
      }
    bool want_present = model[k].present;
    char want[320];
    snprintf(want, sizeof want, "%s", model[k].value);
    uint64_t want_lsn = model[k].lsn;
    if (best) {
      want_present = best->kind[best_i] == SA_OP_PUT;
      if (want_present) value_for(want, sizeof want, cycle, best_t, best_s, k);
      want_lsn = best->lsn;
    }

    char kname[16];
    key_name(kname, k);
    sa_value v = {0};
    rc = sa_client_get(c, kname, &v, &err);
    ck_assert_msg(rc == SA_OK || rc == SA_ENOTFOUND, "get %s: %d %s", kname, rc, err.message);
    bool ok;
    if (rc == SA_OK && want_present && v.lsn == want_lsn && strcmp(v.data, want) == 0) {
      ok = true;
    } else if (rc == SA_ENOTFOUND && !want_present) {
      ok = true;
    } else {
      /* Only an op in flight (begun, never acknowledged) may explain it. */
      ok = false;
      for (int t = 0; t < NTHREADS && !ok; t++)
        for (long s = 0; s < L->cap[t] && !ok; s++) {
          const kop *op = &L->ops[t][s];
          if (!op->begun || op->acked) continue;
          for (int i = 0; i < op->n; i++) {
            if (op->key[i] != k) continue;
            if (rc == SA_ENOTFOUND && op->kind[i] == SA_OP_DELETE) ok = true;
            if (rc == SA_OK && op->kind[i] == SA_OP_PUT && v.lsn > want_lsn) {
              char inflight[320];
              value_for(inflight, sizeof inflight, cycle, t, s, k);
              ok = strcmp(v.data, inflight) == 0;
            }
          }
        }
    }
    ck_assert_msg(ok,
                  "cycle %d (seed %u): %s is %s (lsn %" PRIu64 "), expected %s \"%.40s\" "
                  "(lsn %" PRIu64 ")",
                  cycle, seed, kname, rc == SA_OK ? v.data : "absent", v.lsn,
                  want_present ? "value" : "absent", want_present ? want : "", want_lsn);
    model[k].present = rc == SA_OK;
    snprintf(model[k].value, sizeof model[k].value, "%s", rc == SA_OK ? v.data : "");
    model[k].lsn = rc == SA_OK ? v.lsn : 0;
    if (rc == SA_OK) present++;
    sa_value_free(&v);
  }

  /* Nothing that was never written: only key/00..key/47 exist. */
  ck_assert_uint_eq(sa_client_size(c), present);
  sa_list l;
  ck_assert_int_eq(sa_client_list(c, "", NULL, 1000, false, &l, &err), SA_OK);
  ck_assert_uint_eq(l.count, present);
  for (size_t i = 0; i < l.count; i++) {
    int k = -1;
    ck_assert_msg(sscanf(l.items[i].key, "key/%d", &k) == 1 && k >= 0 && k < NKEYS,
                  "unexpected key %s", l.items[i].key);
  }
  sa_list_free(&l);
  sa_status st = tu_status(c);
  ck_assert_uint_eq(st.applied_lsn, st.last_lsn);
  sa_client_close(c);
}

static void random_kills_run(long cycles) {
  unsigned seed0 = (unsigned)env_long("SA_KILL_SEED", (long)(time(NULL) ^ getpid()));
  fprintf(stderr, "random_kills(auto_flush=%d): %ld cycles, SA_KILL_SEED=%u\n",
          (int)kill_auto_flush, cycles, seed0);
  static kstate model[NKEYS];
  memset(model, 0, sizeof model);
  unsigned rnd = seed0;
  long total_acked = 0, ready = 0;
  for (int cycle = 0; cycle < cycles; cycle++) {
    unsigned seed = (unsigned)rand_r(&rnd);
    /* Mostly 2..100 ms into the writing; one cycle in five kills 0..15 ms
     * after the fork, during the open and its recovery. */
    unsigned delay =
        cycle % 5 == 4 ? (unsigned)(rand_r(&rnd) % 15) : 2u + (unsigned)(rand_r(&rnd) % 99);
    uint64_t wal_max = cycle % 2 ? 64u << 10 : SA_DEFAULT_WAL_MAX_BYTES;
    cycle_log L;
    memset(&L, 0, sizeof L);
    run_kill_cycle(&L, cycle, seed, delay, cycle % 5 == 4, wal_max);
    verify_cycle(&L, model, cycle, seed);
    total_acked += L.acked;
    ready += L.ready;
    for (int t = 0; t < NTHREADS; t++)
      free(L.ops[t]);
  }
  fprintf(stderr,
          "random_kills: %ld acknowledged ops checked, %ld/%ld children opened their node\n",
          total_acked, ready, cycles);
  ck_assert_msg(total_acked > 0, "no child acknowledged anything: the test tested nothing");
}

START_TEST(random_kills) {
  random_kills_run(env_long("SA_KILL_CYCLES", 20));
}
END_TEST

/* auto_flush=false acknowledges after write(2): not durable against power
 * loss, but a killed process loses nothing the kernel already has. */
START_TEST(random_kills_no_auto_flush) {
  kill_auto_flush = false;
  long cycles = env_long("SA_KILL_CYCLES", 20) / 4;
  random_kills_run(cycles < 5 ? 5 : cycles);
}
END_TEST

/* ======================================================================= */
/* crash at every step                                                     */
/* ======================================================================= */

enum { STEP_KEYS = 6 };
static const char *const step_keys[STEP_KEYS] = {"a", "b", "c", "d", "e", "f"};

typedef struct snapshot {
  const char *v[STEP_KEYS]; /* NULL: absent */
} snapshot;

static char big_value[300];

/* The workload, step by step; applies step i to the snapshot. */
enum { NSTEPS = 9 };

static int do_step(sa_client *c, int i, sa_error *err) {
  sa_write_opts absent = {SA_COND_ABSENT, 0};
  sa_batch_op batch[] = {
      {SA_OP_PUT, "c", "3", 1}, {SA_OP_PUT, "d", "4", 1}, {SA_OP_DELETE, "a", NULL, 0}};
  switch (i) {
  case 0:
    return sa_client_put(c, "a", "1", err);
  case 1:
    return sa_client_put(c, "b", big_value, err);
  case 2:
    return sa_client_batch(c, batch, 3, NULL, err);
  case 3:
    return sa_client_remove(c, "b", err);
  case 4:
    return sa_client_put_ex(c, "e", "5", 1, &absent, NULL, err);
  case 5:
    return sa_client_checkpoint(c, err);
  case 6:
    return sa_client_put(c, "f", "6", err);
  case 7:
    return sa_client_put(c, "a", "1bis", err);
  case 8:
    return sa_client_flush(c, err);
  }
  return SA_EINVAL;
}

static void apply_step(snapshot *s, int i) {
  switch (i) {
  case 0:
    s->v[0] = "1";
    break;
  case 1:
    s->v[1] = big_value;
    break;
  case 2:
    s->v[2] = "3";
    s->v[3] = "4";
    s->v[0] = NULL;
    break;
  case 3:
    s->v[1] = NULL;
    break;
  case 4:
    s->v[4] = "5";
    break;
  case 6:
    s->v[5] = "6";
    break;
  case 7:
    s->v[0] = "1bis";
    break;
  default:
    break;
  }
}

/* Child: crash at the k-th I/O call; reports each acknowledged step. */
static void step_child(int fd, const sa_options *o, long k, tu_crash_mode mode) {
  tu_fault_install();
  tu_crash_at(k, mode);
  sa_client *c = NULL;
  sa_error err = {0};
  if (sa_client_open(&c, o, &err) != SA_OK) {
    emit(fd, "E open %s\n", err.message);
    _exit(4);
  }
  for (int i = 0; i < NSTEPS; i++) {
    int rc = do_step(c, i, &err);
    if (rc != SA_OK) {
      emit(fd, "E step %d: %d %s\n", i, rc, err.message);
      _exit(5);
    }
    emit(fd, "A %d\n", i);
  }
  sa_client_close(c);
  _exit(0); /* the workload completed before the k-th call */
}

/* True when the step keys hold exactly s, and the node has extra other keys. */
static bool matches(sa_client *c, const snapshot *s, size_t extra) {
  size_t present = 0;
  for (int i = 0; i < STEP_KEYS; i++) {
    sa_value v = {0};
    int rc = sa_client_get(c, step_keys[i], &v, NULL);
    bool ok = s->v[i] ? rc == SA_OK && strcmp(v.data, s->v[i]) == 0 : rc == SA_ENOTFOUND;
    sa_value_free(&v);
    if (!ok) return false;
    present += s->v[i] != NULL;
  }
  return sa_client_size(c) == present + extra;
}

static void describe(char *out, size_t cap, sa_client *c) {
  int n = 0;
  for (int i = 0; i < STEP_KEYS; i++) {
    sa_value v = {0};
    int rc = sa_client_get(c, step_keys[i], &v, NULL);
    n += snprintf(out + n, cap - (size_t)n, "%s=%.8s ", step_keys[i], rc == SA_OK ? v.data : "-");
    sa_value_free(&v);
  }
  snprintf(out + n, cap - (size_t)n, "size=%zu", sa_client_size(c));
}

/* Builds the template of the recovery variant in tmpl: three keys, then a
 * store copy taken before two more records, and a torn tail. */
static void make_recovery_template(const char *tmpl) {
  char path[TU_PATH_MAX], store[TU_PATH_MAX], old[TU_PATH_MAX];
  tu_path(path, tmpl, "node-1.wal");
  sa_options o = sa_options_persistent("node-1", path);
  sa_client *c = tu_open(&o);
  tu_put(c, "p1", "base1");
  snprintf(store, sizeof store, "%s", tu_status(c).store_path);
  sa_client_close(c);
  tu_path(old, tmpl, "old-store");
  tu_copy(store, old);
  c = tu_open(&o);
  tu_put(c, "p2", "base2");
  tu_put(c, "p3", "base3");
  sa_client_close(c);
  tu_copy(old, store);
  unlink(old);
  tu_append(path, "\x01\x02\x03 torn tail", 14);
}

static void crash_every_step(bool from_template) {
  memset(big_value, 'B', sizeof big_value - 1);
  char tmpl[TU_PATH_MAX];
  tu_mkdir(tmpl);
  if (from_template) make_recovery_template(tmpl);

  static const tu_crash_mode modes[] = {TU_CRASH_BEFORE, TU_CRASH_AFTER, TU_CRASH_TORN};
  static const char *const mode_names[] = {"before", "after", "torn"};
  long crashes = 0;
  for (int m = 0; m < 3; m++) {
    for (long k = 1; k < 5000; k++) {
      char sub[TU_PATH_MAX], path[TU_PATH_MAX], cmd[3 * TU_PATH_MAX];
      tu_mkdir(sub);
      if (from_template) {
        snprintf(cmd, sizeof cmd, "cp -a '%s'/. '%s'/", tmpl, sub);
        ck_assert_int_eq(system(cmd), 0);
      }
      tu_path(path, sub, "node-1.wal");
      sa_options o = sa_options_persistent("node-1", path);

      int fds[2];
      ck_assert_int_eq(pipe(fds), 0);
      fflush(NULL);
      pid_t pid = fork();
      ck_assert_int_ge(pid, 0);
      if (pid == 0) {
        close(fds[0]);
        step_child(fds[1], &o, k, modes[m]);
      }
      close(fds[1]);
      char buf[4096];
      size_t len = 0;
      ssize_t r;
      while ((r = read(fds[0], buf + len, sizeof buf - 1 - len)) > 0)
        len += (size_t)r;
      buf[len] = 0;
      close(fds[0]);
      int status;
      ck_assert_int_eq(waitpid(pid, &status, 0), pid);
      ck_assert_msg(strstr(buf, "E ") == NULL, "%s k=%ld: child error: %s", mode_names[m], k, buf);
      if (WIFEXITED(status) && WEXITSTATUS(status) == TU_CRASH_NOT_PWRITE) {
        tu_rmrf(sub); /* "torn" at a call that is not a pwrite: BEFORE covered it */
        continue;
      }
      bool completed = WIFEXITED(status) && WEXITSTATUS(status) == 0;
      ck_assert_msg(completed || (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL),
                    "%s k=%ld: child status %d", mode_names[m], k, status);

      int acked = 0;
      for (char *p = buf; (p = strstr(p, "A ")) != NULL; p += 2)
        acked++;
      snapshot done = {{0}}, next;
      for (int i = 0; i < acked; i++)
        apply_step(&done, i);
      next = done;
      if (acked < NSTEPS) apply_step(&next, acked);

      sa_client *c = NULL;
      sa_error err = {0};
      int rc = sa_client_open(&c, &o, &err);
      ck_assert_msg(rc == SA_OK, "crash %s call %ld (after %d acked steps): reopen gave %d %s",
                    mode_names[m], k, acked, rc, err.message);
      if (from_template) {
        tu_expect_str(c, "p1", "base1");
        tu_expect_str(c, "p2", "base2");
        tu_expect_str(c, "p3", "base3");
      }
      char got[256];
      describe(got, sizeof got, c);
      size_t extra = from_template ? 3 : 0;
      ck_assert_msg(matches(c, &done, extra) || matches(c, &next, extra),
                    "crash %s call %ld (%d steps acked): state %s", mode_names[m], k, acked, got);
      sa_status st = tu_status(c);
      ck_assert_uint_eq(st.applied_lsn, st.last_lsn);
      /* And the recovered node takes writes that survive the next open. */
      tu_put(c, "z", "post-crash");
      sa_client_close(c);
      c = tu_open(&o);
      tu_expect_str(c, "z", "post-crash");
      sa_client_close(c);
      tu_rmrf(sub);

      if (completed) break;
      crashes++;
    }
  }
  fprintf(stderr, "crash_at_every_step(%s): %ld crashes checked\n",
          from_template ? "recovery" : "fresh", crashes);
  ck_assert_int_gt(crashes, 10);
  tu_rmrf(tmpl);
}

START_TEST(crash_at_every_step_fresh) {
  crash_every_step(false);
}
END_TEST

START_TEST(crash_at_every_step_recovery) {
  crash_every_step(true);
}
END_TEST

static Suite *kill_suite(void) {
  Suite *s = suite_create("kill");
  long cycles = env_long("SA_KILL_CYCLES", 20);
  TCase *tr = tcase_create("random");
  tcase_add_checked_fixture(tr, setup, NULL);
  tcase_set_timeout(tr, (double)(60 + cycles * 3));
  tcase_add_test(tr, random_kills);
  tcase_add_test(tr, random_kills_no_auto_flush);
  suite_add_tcase(s, tr);

  TCase *ts = tcase_create("steps");
  tcase_add_checked_fixture(ts, setup, NULL);
  tcase_set_timeout(ts, 240);
  tcase_add_test(ts, crash_at_every_step_fresh);
  tcase_add_test(ts, crash_at_every_step_recovery);
  suite_add_tcase(s, ts);
  return s;
}

int main(void) {
  return tu_main(kill_suite());
}
