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
 * The writers, the op model, the listing/GET/status checks and the failure
 * counting are shared with powercut.c (load.c, load.h).  Since that merge
 * acknowledgements are checked as JSON ("durable" a boolean, lsn an integer
 * > 0), the listing must come in key order, and a /v1/status last LSN below
 * an acknowledged one counts as a report of lost writes for the self-test.
 *
 * Self-test: with SA_CRASH_SABOTAGE=1 the harness itself destroys data after
 * each kill (the store is deleted and the WAL cut back to its header: every
 * acknowledged write is lost), and the exit status is inverted: 0 only when
 * the checker reported lost writes.  It shows that the checker can fail.
 */
#define _GNU_SOURCE
#include "load.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define NKEYS LD_SHARED_KEYS

/* 60% PUT, 20% DELETE, 20% batches of 2 to 6 keys of 48 shared ones; listed 17 a page */
static const ld_mode crash_mode = {.name = "crash",
                                   .env = "SA_CRASH",
                                   .event = "kill",
                                   .tag = "",
                                   .batch_max = 6,
                                   .mix_den = 10,
                                   .mix_put = 6,
                                   .mix_del = 8,
                                   .list_limit = 17,
                                   .default_cycles = 30};

/* The state of one key as verified after the last restart. */
typedef struct base_state {
  bool present;
  char *value;
} base_state;

static struct {
  base_state base[NKEYS];
  /* figures */
  long acked_checked, unknown_ops, unknown_applied, restarts, startup_kills, keys_checked;
  long torn_bytes_total;
} g;

#define fail ld_fail

static bool answered_nothing(const ld_op *o) {
  return o->state == LD_NOOP || o->state == LD_REFUSED;
}

/* ---- checking ------------------------------------------------------------ */

/* True when no acknowledged op on key k started after x ended (x is the
 * operation whose effect the key shows).  Fills who with a culprit. */
static bool not_superseded(int k, double x_end, int xw, int xs, char *who, size_t wholen) {
  for (int wi = 0; wi < ld.nwriters; wi++) {
    ld_writer *w = &ld.w[wi];
    for (int si = 0; si < w->nops; si++) {
      ld_op *o = &w->ops[si];
      if (o->state != LD_ACKED || (wi == xw && si == xs)) continue;
      for (int i = 0; i < o->n; i++) {
        if (o->eff[i].key != k) continue;
        if (o->s > x_end) {
          const char *what = o->batch ? "batch" : (o->eff[i].put ? "PUT" : "DELETE");
          if (isinf(x_end))
            snprintf(who, wholen, "acknowledged %s w%d.s%d (%s of this key) is not there", what, wi,
                     si, o->eff[i].put ? "put" : "delete");
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
  int w, s, i; /* the op that wrote it (this cycle), w = -1 for the base, -2 nobody */
} obs;

/* The latest-ending delete of key k (or the base when absent), for an
 * absent key.  Returns the end time, or NAN when there is no candidate. */
static double best_delete(int k, int *bw, int *bs) {
  double best = NAN;
  *bw = *bs = -1;
  if (!g.base[k].present) best = -INFINITY;
  for (int wi = 0; wi < ld.nwriters; wi++)
    for (int si = 0; si < ld.w[wi].nops; si++) {
      ld_op *o = &ld.w[wi].ops[si];
      if (answered_nothing(o)) continue;
      for (int i = 0; i < o->n; i++)
        if (o->eff[i].key == k && !o->eff[i].put && (isnan(best) || o->e > best)) {
          best = o->e;
          *bw = wi;
          *bs = si;
        }
    }
  return best;
}

/* Identifies the operation behind an observed value.  0 or -1 (never written). */
static int identify(int k, obs *ob) {
  int w, c, s, i;
  if (!ld_parse_value(ob->value, &w, &c, &s, &i)) return -1;
  if (c != ld.cycle) { /* must be the base state */
    if (!g.base[k].present || strcmp(g.base[k].value, ob->value) != 0) return -1;
    ob->w = ob->s = -1;
    return 0;
  }
  if (w < 0 || w >= ld.nwriters || s < 0 || s >= ld.w[w].nops) return -1;
  ld_op *o = &ld.w[w].ops[s];
  if (i < 0 || i >= o->n || o->eff[i].key != k || !o->eff[i].put) return -1;
  ob->w = w;
  ob->s = s;
  ob->i = i;
  return 0;
}

static void check_recovered(hs_conn *c) {
  ld_listed listed[NKEYS];
  obs ob[NKEYS];
  if (ld_read_all(c, listed) != 0) {
    ld_listed_free(listed);
    return;
  }
  for (int k = 0; k < NKEYS; k++)
    ob[k] = (obs){listed[k].present, listed[k].value, -1, -1, -1};
  char kn[32], who[300];
  /* identify the write behind every value */
  for (int k = 0; k < NKEYS; k++) {
    if (!ob[k].present) continue;
    ld_key_name(k, kn, sizeof kn);
    if (!ob[k].value || identify(k, &ob[k]) != 0) {
      fail("key %s holds a value nobody wrote: \"%.80s\"", kn, ob[k].value ? ob[k].value : "");
      ob[k].w = -2;
      continue;
    }
    if (ob[k].w >= 0) {
      ld_op *o = &ld.w[ob[k].w].ops[ob[k].s];
      if (answered_nothing(o))
        fail("key %s shows the effect of a refused or failed write w%d.s%d", kn, ob[k].w, ob[k].s);
      if (o->state == LD_UNKNOWN) g.unknown_applied++;
    }
  }
  for (int k = 0; k < NKEYS; k++) {
    ld_key_name(k, kn, sizeof kn);
    g.keys_checked++;
    if (ob[k].present) {
      if (ob[k].w == -2) continue;
      double end = ob[k].w < 0 ? -INFINITY : ld.w[ob[k].w].ops[ob[k].s].e;
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
    ld_op *b = &ld.w[ob[k].w].ops[ob[k].s];
    if (!b->batch || b->state != LD_UNKNOWN) continue;
    for (int i = 0; i < b->n; i++) {
      int k2 = b->eff[i].key;
      if (k2 == k) continue;
      ld_key_name(k2, kn, sizeof kn);
      obs *o2 = &ob[k2];
      bool ok;
      if (o2->present) {
        if (o2->w == -2) continue;
        double e2 = o2->w < 0 ? -INFINITY : ld.w[o2->w].ops[o2->s].e;
        ok = (o2->w == ob[k].w && o2->s == ob[k].s) || e2 >= b->s;
      } else {
        int bw, bs;
        double e2 = best_delete(k2, &bw, &bs);
        ok = !b->eff[i].put || (!isnan(e2) && e2 >= b->s);
      }
      if (!ok) {
        ld_key_name(k, who, sizeof who);
        fail("batch w%d.s%d is half applied: key %s shows it, key %s does not", ob[k].w, ob[k].s,
             who, kn);
      }
    }
  }
  ld_check_gets(c, listed); /* a GET of each key agrees with the listing */
  ld_check_status(c, true); /* the recovered node knows every acknowledged LSN */
  /* figures, then the verified state becomes the next cycle's base */
  for (int wi = 0; wi < ld.nwriters; wi++)
    for (int si = 0; si < ld.w[wi].nops; si++) {
      if (ld.w[wi].ops[si].state == LD_ACKED) g.acked_checked++;
      if (ld.w[wi].ops[si].state == LD_UNKNOWN) g.unknown_ops++;
    }
  for (int k = 0; k < NKEYS; k++) {
    free(g.base[k].value);
    g.base[k].present = listed[k].present;
    g.base[k].value = listed[k].value; /* taken over */
  }
}

/* ---- main ---------------------------------------------------------------- */

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
  if (argc > 2 + 5) {
    fprintf(stderr, "at most 5 serve arguments\n");
    return 2;
  }
  unsigned seed;
  int rc = ld_setup(&crash_mode, argc - 2, argv + 2, &seed);
  if (rc != 0) return rc;
  ld.term = getenv("SA_CRASH_SIGNAL") && strcmp(getenv("SA_CRASH_SIGNAL"), "TERM") == 0;
  if (ld_start_process(seed) != 0) return 1;
  printf("crash: %d cycles, %d writers, auto_flush=%s, seed %u (SA_CRASH_SEED to replay)\n",
         ld.cycles, ld.nwriters, ld.durable ? "true" : "false", seed);
  for (int i = 2; i < argc; i++)
    printf("crash: serve argument %s\n", argv[i]);

  char dir[512];
  hs_server s;
  if (ld_server_init(&s, argv[1], dir, sizeof dir, argc - 2, argv + 2) != 0) return 1;
  hs_conn *checker = hs_conn_new();
  double t0 = hs_now();
  char sbuf[64];

  for (ld.cycle = 0; ld.cycle <= ld.cycles && ld.failures == 0; ld.cycle++) {
    /* sometimes kill it during its own recovery first */
    if (ld.cycle > 0 && ld.cycle % 5 == 2) {
      if (hs_server_spawn(&s) == 0) {
        ld_sleep_ms(rand_r(&seed) % 40);
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
    snprintf(ld.url, sizeof ld.url, "%s", s.url);
    /* the model of the previous cycle is checked with its cycle number */
    if (ld.cycle > 0) {
      ld.cycle--;
      check_recovered(checker);
      ld.cycle++;
    }
    for (int i = 0; i < ld.nwriters; i++)
      ld.w[i].nops = 0;
    if (ld.cycle == ld.cycles || ld.failures) break; /* last start: checked, done */

    ld_load_start();
    ld_sleep_ms(10 + (long)(rand_r(&seed) % (unsigned)ld.max_run_ms));
    int kst = ld_load_stop(&s, ld.term ? SIGTERM : SIGKILL);
    if (ld.term) {
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
    if (ld.sabotage) {
      char p[700];
      snprintf(p, sizeof p, "%s/node-1.wal", s.data_dir);
      if (truncate(p, 128) != 0) perror("sabotage: truncate");
      snprintf(p, sizeof p, "%s/node-1.mdb", s.data_dir);
      unlink(p);
      snprintf(p, sizeof p, "%s/node-1.mdb-lock", s.data_dir);
      unlink(p);
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
         ld.cycle, g.restarts, g.startup_kills, g.acked_checked, g.unknown_ops, g.unknown_applied,
         g.keys_checked, g.torn_bytes_total, (unsigned long long)ld.acked_lsn_max, el, ld.failures);
  hs_conn_free(checker);
  for (int k = 0; k < NKEYS; k++)
    free(g.base[k].value);
  return ld_finish(dir, NULL);
}
