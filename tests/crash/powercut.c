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
 * The writers, the op model, the listing/GET/status checks and the failure
 * counting are shared with crash.c (load.c, load.h).  Since that merge a GET
 * is compared with the listing also for a value nobody wrote, and writers
 * may be up to 16 (SA_POWERCUT_WRITERS).
 *
 * Self-test: SA_POWERCUT_SABOTAGE=1 makes the shim's disk lie about the WAL
 * (from one WAL fdatasync on, WAL syncs report success and persist nothing);
 * the exit status is then inverted: 0 only when the checker reported lost
 * acknowledged writes.  It shows that the checker can fail.
 */
#define _GNU_SOURCE
#include "load.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define NKEYS LD_WRITER_KEYS /* per writer */

/* 65% PUT, 20% DELETE, 15% batches of 2 to 4 of the writer's 40 own keys, one value in ten
 * of 1 to 6 KiB; listed 25 a page */
static const ld_mode powercut_mode = {.name = "powercut",
                                      .env = "SA_POWERCUT",
                                      .event = "cut",
                                      .tag = "(c) ",
                                      .own_keys = true,
                                      .big_values = true,
                                      .batch_max = 4,
                                      .mix_den = 20,
                                      .mix_put = 13,
                                      .mix_del = 17,
                                      .list_limit = 25,
                                      .default_cycles = 20};

typedef ld_kstate kstate;

static struct {
  kstate base[LD_MAX_WRITERS][NKEYS]; /* verified after the previous cut */
  long acked_checked, unknown_ops, unknown_applied, keys_checked, acked_beyond_prefix;
  long shim[12]; /* summed counters of the shim */
  bool wal_repair, warmup;
  long wal_repairs;
} g;

#define fail ld_fail

static void state_str(int w, const kstate *st, char *buf, size_t len) {
  if (!st->present)
    snprintf(buf, len, "absent");
  else
    snprintf(buf, len, "the value of w%d.c%d.s%d.i%d", w, st->c, st->s, st->i);
}

static bool kstate_eq(const kstate *a, const kstate *b) {
  return a->present == b->present &&
         (!a->present || (a->c == b->c && a->s == b->s && a->i == b->i));
}

/* Answered 2xx, or 404 for a DELETE (of an absent key): acknowledged. */
static bool acked(const ld_op *o) {
  return o->state == LD_ACKED || o->state == LD_NOOP;
}

/* ---- checking ---------------------------------------------------------------- */

/* The listed state of writer w's keys.  A value nobody wrote is a failure. */
static void observe(int w, const ld_listed *listed, kstate obs[NKEYS]) {
  char kn[32];
  for (int k = 0; k < NKEYS; k++) {
    const ld_listed *l = &listed[w * NKEYS + k];
    int vw, c, s, i;
    obs[k] = (kstate){false, 0, 0, 0};
    if (!l->present) continue;
    if (l->value && ld_parse_value(l->value, &vw, &c, &s, &i) && vw == w) {
      obs[k] = (kstate){true, c, s, i};
      continue;
    }
    ld_key_name(w * NKEYS + k, kn, sizeof kn);
    fail("(c) key %s holds a value nobody wrote: \"%.80s\" (%zu bytes)", kn,
         l->value ? l->value : "", l->value ? strlen(l->value) : 0);
    obs[k] = (kstate){true, -1, -1, -1};
  }
}

/* Checks writer w: the observed state must equal the state after a prefix
 * of its ops (strict: a prefix holding every acknowledged op). */
static void check_writer(int wi, kstate obs[NKEYS]) {
  ld_writer *w = &ld.w[wi];
  kstate st[NKEYS];
  memcpy(st, g.base[wi], sizeof st);
  int lo = 0; /* shortest allowed prefix: through the last acknowledged op */
  for (int s = 0; s < w->nops; s++)
    if (acked(&w->ops[s])) lo = s + 1;
  int mism = 0, best = -1;
  for (int k = 0; k < NKEYS; k++)
    mism += !kstate_eq(&st[k], &obs[k]);
  if (mism == 0) best = 0;
  kstate at_lo[NKEYS];
  if (lo == 0) memcpy(at_lo, st, sizeof at_lo);
  for (int s = 0; s < w->nops; s++) {
    ld_op *o = &w->ops[s];
    if (o->state != LD_REFUSED) {
      for (int i = 0; i < o->n; i++) {
        int k = ld_key_local(o->eff[i].key);
        mism -= !kstate_eq(&st[k], &obs[k]);
        st[k] = (kstate){o->eff[i].put, ld.cycle, s, i};
        mism += !kstate_eq(&st[k], &obs[k]);
      }
    }
    if (s + 1 == lo) memcpy(at_lo, st, sizeof at_lo);
    if (mism == 0) best = s + 1;
  }
  for (int s = 0; s < w->nops; s++) {
    if (acked(&w->ops[s])) g.acked_checked++;
    if (w->ops[s].state == LD_UNKNOWN) g.unknown_ops++;
  }
  if (best > lo) g.unknown_applied++;
  if (best >= lo) return;
  if (best >= 0) { /* only without auto_flush: a prefix, acknowledged ops beyond it */
    for (int s = best; s < lo; s++)
      g.acked_beyond_prefix += acked(&w->ops[s]);
    if (!ld.durable) return;
  }
  char kn[32], want[96], got[96];
  int shown = 0;
  for (int k = 0; k < NKEYS; k++) {
    if (kstate_eq(&at_lo[k], &obs[k])) continue;
    ld_key_name(wi * NKEYS + k, kn, sizeof kn);
    state_str(wi, &at_lo[k], want, sizeof want);
    state_str(wi, &obs[k], got, sizeof got);
    if (ld.durable && shown++ < 8)
      fail("(b) key %s lost an acknowledged write: after writer %d's %d acknowledged ops (of %d "
           "sent) it must be %s, it is %s",
           kn, wi, lo, w->nops, want, got);
    else if (!ld.durable && shown++ < 8)
      printf("  key %s: after all %d acknowledged ops %s, found %s\n", kn, lo, want, got);
  }
  if (!ld.durable)
    fail("(c) writer %d: the store matches no prefix of its %d ops (%d acknowledged)", wi, w->nops,
         lo);
}

static void check_recovered(hs_conn *c) {
  static ld_listed listed[LD_MAX_KEYS];
  static kstate obs[LD_MAX_WRITERS][NKEYS];
  int rc = ld_read_all(c, listed);
  if (rc == 0) {
    for (int k = 0; k < ld.nkeys; k++)
      g.keys_checked += listed[k].present;
    for (int wi = 0; wi < ld.nwriters; wi++) {
      observe(wi, listed, obs[wi]);
      check_writer(wi, obs[wi]);
    }
    ld_check_gets(c, listed);           /* every key through a GET agrees with the listing */
    ld_check_status(c, ld.durable);     /* (b) no acknowledged LSN beyond the last one */
    memcpy(g.base, obs, sizeof g.base); /* the next cycle starts from here */
    for (int wi = 0; wi < ld.nwriters; wi++)
      memcpy(ld.w[wi].cur, obs[wi], sizeof ld.w[wi].cur);
  }
  ld_listed_free(listed);
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
      int in = open(a, O_RDONLY | O_CLOEXEC),
          out = open(b, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
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

int main(int argc, char **argv) {
  if (argc < 3 || argc > 3 + 5) {
    fprintf(stderr,
            "usage: %s PATH/TO/sa_powercut_shim.so PATH/TO/softadastra [SERVE-ARGS...] (up to 5)\n",
            argv[0]);
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
#ifdef SA_POWERCUT_SANITIZED
  printf("powercut: skipped: a sanitizer build (SA_SANITIZE); the LD_PRELOAD shim does not mix "
         "with the sanitizer runtimes\n");
  return LD_SKIP;
#endif
  const char *wrap = getenv("SA_SERVER_WRAPPER");
  if (wrap && *wrap) {
    printf("powercut: skipped: SA_SERVER_WRAPPER is set (%s); the LD_PRELOAD shim does not mix "
           "with a wrapper such as valgrind\n",
           wrap);
    return LD_SKIP;
  }
  const char *shim = argv[1], *bin = argv[2];
  char shim_abs[1024];
  if (!realpath(shim, shim_abs)) {
    fprintf(stderr, "powercut: the shim %s: %s\n", shim, strerror(errno));
    return 2;
  }
  unsigned seed;
  int rc = ld_setup(&powercut_mode, argc - 3, argv + 3, &seed);
  if (rc != 0) return rc;
  g.wal_repair = ld_env_int("SA_POWERCUT_WAL_REPAIR", 0) != 0;
  g.warmup = ld_env_int("SA_POWERCUT_WARMUP", 0) != 0;
  const char *wb = getenv("SA_POWERCUT_WRITEBACK");
  if (!wb || !*wb) wb = "0.05";
  if (ld_start_process(seed) != 0) return 1;
  printf("powercut: %d cycles, %d writers, writeback %s, %s check, seed %u (SA_POWERCUT_SEED to "
         "replay)%s\n",
         ld.cycles, ld.nwriters, wb, ld.durable ? "strict" : "prefix (auto_flush off)", seed,
         ld.sabotage ? ", SABOTAGE: the disk lies about the WAL" : "");
  for (int i = 3; i < argc; i++)
    printf("powercut: serve argument %s\n", argv[i]);

  char dir[512];
  hs_server s;
  if (ld_server_init(&s, bin, dir, sizeof dir, argc - 3, argv + 3) != 0) return 1;
  char shadow[600], last_disk[600], stats[600], e_pre[1100], e_dir[700], e_sh[700], e_seed[64],
      e_wb[64], e_sab[64], e_stats[700], e_boot[64];
  snprintf(shadow, sizeof shadow, "%s/shadow", dir);
  snprintf(last_disk, sizeof last_disk, "%s/disk-after-last-cut", dir);
  snprintf(stats, sizeof stats, "%s/shim.stats", dir);
  snprintf(e_pre, sizeof e_pre, "LD_PRELOAD=%s", shim_abs);
  snprintf(e_dir, sizeof e_dir, "SA_POWERCUT_DIR=%s", s.data_dir);
  snprintf(e_sh, sizeof e_sh, "SA_POWERCUT_SHADOW=%s", shadow);
  snprintf(e_wb, sizeof e_wb, "SA_POWERCUT_WRITEBACK=%s", wb);
  snprintf(e_sab, sizeof e_sab, "SA_POWERCUT_SABOTAGE=%d", ld.sabotage ? 1 : 0);
  snprintf(e_stats, sizeof e_stats, "SA_POWERCUT_STATS=%s", stats);
  if (mkdir(s.data_dir, 0755) != 0) {
    perror("mkdir");
    return 1;
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
  for (ld.cycle = 0; ld.cycle < ld.cycles && ld.failures == 0; ld.cycle++) {
    /* 1. the disk starts as a copy of the data directory */
    hs_rmrf(shadow);
    if (copy_tree(s.data_dir, shadow) != 0) {
      fail("cannot copy %s to %s", s.data_dir, shadow);
      break;
    }
    /* 2. the node with the shim, under load */
    snprintf(e_seed, sizeof e_seed, "SA_POWERCUT_SEED=%u", rand_r(&seed));
    snprintf(e_boot, sizeof e_boot, "SA_POWERCUT_BOOT_ID=powercut-boot-%d", ld.cycle);
    const char *envs[] = {e_pre, e_dir, e_sh, e_seed, e_wb, e_sab, e_stats, e_boot, NULL};
    memcpy(s.env, envs, sizeof envs);
    int st;
    if (hs_server_start(&s, &st) != 0) {
      fail("the node with the shim did not start: %s", hs_status_str(st, sbuf, sizeof sbuf));
      hs_dump_log(&s, "failure", 64 * 1024);
      break;
    }
    snprintf(ld.url, sizeof ld.url, "%s", s.url);
    ld_load_start();
    ld_sleep_ms(10 + (long)(rand_r(&seed) % (unsigned)ld.max_run_ms));
    /* 3. the power cut */
    int kst = ld_load_stop(&s, SIGKILL);
    if (!(WIFSIGNALED(kst) && WTERMSIG(kst) == SIGKILL)) {
      fail("the node with the shim ended with %s before the cut",
           hs_status_str(kst, sbuf, sizeof sbuf));
      hs_dump_log(&s, "failure", 64 * 1024);
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
    snprintf(e_boot, sizeof e_boot, "SA_POWERCUT_BOOT_ID=powercut-boot-%d", ld.cycle + 1);
    s.env[0] = e_pre;
    s.env[1] = e_boot;
    int started = hs_server_start(&s, &st);
    if (started != 0 && g.wal_repair && WIFEXITED(st) && wal_refused(&s)) {
      g.wal_repairs++;
      printf("powercut: [cycle %d] the WAL is refused after the cut; running wal repair (%s)\n",
             ld.cycle, "SA_POWERCUT_WAL_REPAIR");
      started = run_wal_repair(&s) == 0 ? hs_server_start(&s, &st) : -1;
    }
    if (started != 0) {
      fail("(a) the node does not start on the disk after the power cut: %s",
           hs_status_str(st, sbuf, sizeof sbuf));
      hs_dump_log(&s, "failure", 64 * 1024);
      break;
    }
    snprintf(ld.url, sizeof ld.url, "%s", s.url);
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
         (unsigned long long)ld.acked_lsn_max, el, ld.failures);
  if (!ld.durable)
    printf("powercut: %ld acknowledged ops lost at the cuts (allowed: auto_flush off)\n",
           g.acked_beyond_prefix);
  if (g.wal_repairs) printf("powercut: %ld WALs refused after a cut and repaired\n", g.wal_repairs);
  printf(
      "powercut: shim: %ld writes recorded, %ld syncs applied, %ld early writebacks (%ld bytes), "
      "%ld O_DSYNC writes, %ld truncations, %ld files created\n",
      g.shim[0], g.shim[2], g.shim[3], g.shim[4], g.shim[5], g.shim[6], g.shim[9]);
  if (ld.sabotage) printf("powercut: shim: %ld WAL syncs that lied\n", g.shim[10]);
  hs_conn_free(checker);
  char note[700];
  snprintf(note, sizeof note, " (the disk after the last cut: %s)", last_disk);
  return ld_finish(dir, note);
}
