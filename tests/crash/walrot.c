/*
 * walrot.c -- torn and corrupt WALs through the real server.
 *
 * Each trial starts `softadastra serve` on a fresh data directory, writes R
 * acknowledged (fdatasync'ed) records over HTTP -- puts, deletes and
 * batches, one WAL record each -- kills the node with SIGKILL, then damages
 * its WAL in one of these ways, at a random place:
 *
 *   truncate     cut the file at a random offset after the header (among
 *                the records, or in the zero-filled free space after them)
 *   garbage      append random bytes
 *   zero_tail    overwrite everything from a random offset with zeros, and
 *                sometimes append more zeros (what a file system leaves
 *                after a power loss)
 *   flip_middle  flip one bit inside a record that valid records follow
 *   flip_last    flip one bit inside the last record
 *   flip_header  flip one bit in the 128-byte file header
 *   truncate_keep_store  like truncate, but the store is kept (it may be
 *                ahead of the WAL: it commits answered writes within 10 ms, so
 *                it holds every record but those of the last few ms); the node
 *                must come back with a prefix of the records at least as long
 *                as the WAL's (its last_lsn tells which), and new writes must
 *                still survive a restart
 *
 * In every trial but the last kind the store (LMDB) is deleted before the
 * restart, as if it had never been synced: the WAL alone must bring back
 * exactly the records of its valid prefix.  Expectations, from the rule at
 * the top of core/wal.c and the records' offsets (sa_wal_scan before the
 * damage):
 *   - torn tail (truncate, garbage, zero_tail, flip_last): the node starts;
 *     its start line says "<m> records scanned, <m> replayed, <t> torn bytes
 *     cut (kept in <file>)" where m counts the whole records before the
 *     damage and t the bytes after them through the last non-zero byte of
 *     the file; the side file holds exactly those bytes; the API shows
 *     exactly the state of the first m records.  When only zeros follow
 *     the m records (the WAL's preallocated free space) the file is clean:
 *     0 torn bytes and no side file;
 *   - corruption (flip_middle): the node refuses to start (exit 1, not a
 *     signal) with a message that names the WAL and the offset of the bad
 *     record; `softadastra wal repair` exits 0, keeps a byte-identical
 *     backup and truncates at that offset; the node then starts with the
 *     records before it;
 *   - bad header: the node refuses (exit 1) naming the file; repair refuses
 *     too and leaves the file alone;
 *   - never a crash (a node or CLI process ending on a signal), and after a
 *     graceful stop `softadastra wal verify` says clean.
 *
 * usage: sa_walrot PATH/TO/softadastra
 * environment: SA_WALROT_TRIALS (28), SA_WALROT_SEED, SA_SERVER_WRAPPER.
 */
#define _GNU_SOURCE
#include "harness.h"

#include "softadastra.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_RECS 64
#define MAX_KEYS 256

enum {
  K_TRUNCATE,
  K_GARBAGE,
  K_ZERO_TAIL,
  K_FLIP_MIDDLE,
  K_FLIP_LAST,
  K_FLIP_HEADER,
  K_TRUNCATE_KEEP_STORE,
  K_COUNT
};
static const char *kind_name[K_COUNT] = {"truncate",           "garbage",   "zero_tail",
                                         "flip_middle",        "flip_last", "flip_header",
                                         "truncate_keep_store"};

typedef struct eff {
  int key; /* index: key "rot/k<idx>" */
  int val; /* value id, -1 for a delete */
} eff;

typedef struct rec {
  int n;
  eff e[4];
  uint64_t off, end; /* byte range in the WAL */
} rec;

static struct {
  const char *bin;
  unsigned seed;
  int trial;
  long failures, checks;
  long by_kind[K_COUNT];
} g;

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  printf("FAIL [trial %d] ", g.trial);
  vprintf(fmt, ap);
  putchar('\n');
  va_end(ap);
  g.failures++;
}

static void check(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(bool ok, const char *fmt, ...) {
  g.checks++;
  if (ok) return;
  va_list ap;
  va_start(ap, fmt);
  printf("FAIL [trial %d] ", g.trial);
  vprintf(fmt, ap);
  putchar('\n');
  va_end(ap);
  g.failures++;
}

static int rnd(int n) {
  return n <= 0 ? 0 : (int)(rand_r(&g.seed) % (unsigned)n);
}

static void value_text(int trial, int v, char *buf, size_t len) {
  int n = snprintf(buf, len, "t%d.v%d.", trial, v);
  int pad = (v * 37 + trial) % 120;
  for (int i = 0; i < pad && n + 1 < (int)len; i++)
    buf[n++] = (char)('A' + (i + v) % 26);
  buf[n] = 0;
}

static char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *b = malloc((size_t)n + 1);
  if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
    free(b);
    b = NULL;
  }
  if (b) b[n] = 0;
  fclose(f);
  if (b && len) *len = (size_t)n;
  return b;
}

static int write_file(const char *path, const void *buf, size_t len) {
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  int rc = fwrite(buf, 1, len, f) == len ? 0 : -1;
  return fclose(f) == 0 ? rc : -1;
}

/* Runs `softadastra args...`; stdout+stderr into out (caller frees).
 * Returns the wait status. */
static int run_cli(const char *const *args, char **out, const char *dir) {
  char path[600];
  snprintf(path, sizeof path, "%s/cli.out", dir);
  const char *argv[16];
  int n = 0;
  argv[n++] = g.bin;
  for (int i = 0; args[i] && n < 15; i++)
    argv[n++] = args[i];
  argv[n] = NULL;
  pid_t p = fork();
  if (p == 0) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) _exit(126);
    dup2(fd, 1);
    dup2(fd, 2);
    execv(g.bin, (char *const *)argv);
    _exit(127);
  }
  int st = -1;
  if (p > 0) waitpid(p, &st, 0);
  *out = read_file(path, NULL);
  if (!*out) *out = strdup("");
  return st;
}

static bool crashed(int st) {
  return st != -1 && WIFSIGNALED(st);
}

/* ---- writing the records ------------------------------------------------ */

typedef struct model {
  rec r[MAX_RECS];
  int nrec;
  int nkeys; /* keys used: 0..nkeys-1 */
} model;

/* One request that must be acknowledged.  0 or -1. */
static int must_ack(hs_conn *c, const char *url, const char *method, const char *path,
                    const char *body, const char *ctype) {
  hs_resp r;
  if (hs_http(c, method, url, path, body, body ? strlen(body) : 0, ctype, 30000, &r) != 0) {
    fail("%s %s: %s", method, path, r.error);
    return -1;
  }
  if (r.status != 200 && r.status != 201) {
    fail("%s %s: status %ld %.200s", method, path, r.status, r.body);
    return -1;
  }
  if (!strstr(r.body, "\"durable\":true") && !strstr(r.body, "\"durable\": true")) {
    fail("%s %s: not durable: %.200s", method, path, r.body);
    return -1;
  }
  return 0;
}

static int write_records(hs_conn *c, const char *url, model *m, int nrec) {
  char path[128], body[8192], val[256];
  bool live[MAX_KEYS] = {false};
  int nv = 0;
  m->nrec = 0;
  m->nkeys = 0;
  for (int i = 0; i < nrec; i++) {
    rec *r = &m->r[m->nrec];
    memset(r, 0, sizeof *r);
    int kind = rnd(10);
    int victim = -1;
    for (int tries = 0; kind >= 6 && kind < 8 && tries < 20 && victim < 0; tries++) {
      int k = rnd(m->nkeys);
      if (m->nkeys && live[k]) victim = k;
    }
    if (kind < 6 || (kind < 8 && victim < 0)) {
      r->n = 1;
      r->e[0] = (eff){m->nkeys++, nv++};
      value_text(g.trial, r->e[0].val, val, sizeof val);
      snprintf(path, sizeof path, "/v1/store/rot/k%d", r->e[0].key);
      if (must_ack(c, url, "PUT", path, val, NULL) != 0) return -1;
    } else if (kind < 8) {
      r->n = 1;
      r->e[0] = (eff){victim, -1};
      snprintf(path, sizeof path, "/v1/store/rot/k%d", victim);
      if (must_ack(c, url, "DELETE", path, NULL, NULL) != 0) return -1;
    } else { /* batch: 2 new keys, and a delete of a live key when there is one */
      size_t bl = (size_t)sprintf(body, "{\"ops\":[");
      for (int j = 0; j < 2; j++) {
        r->e[r->n] = (eff){m->nkeys++, nv++};
        value_text(g.trial, r->e[r->n].val, val, sizeof val);
        bl += (size_t)sprintf(body + bl, "%s{\"op\":\"put\",\"key\":\"rot/k%d\",\"value\":\"%s\"}",
                              j ? "," : "", r->e[r->n].key, val);
        r->n++;
      }
      for (int k = 0; k < m->nkeys - 2; k++)
        if (live[k]) {
          r->e[r->n++] = (eff){k, -1};
          bl += (size_t)sprintf(body + bl, ",{\"op\":\"delete\",\"key\":\"rot/k%d\"}", k);
          break;
        }
      sprintf(body + bl, "]}");
      if (must_ack(c, url, "POST", "/v1/batch", body, "application/json") != 0) return -1;
    }
    for (int j = 0; j < r->n; j++)
      live[r->e[j].key] = r->e[j].val >= 0;
    m->nrec++;
  }
  return 0;
}

/* End of the non-zero bytes of d[from..len): from when they are all zero
 * (free space: the WAL is then clean and nothing is cut). */
static uint64_t nz_end(const char *d, uint64_t from, size_t len) {
  uint64_t e = len;
  while (e > from && d[e - 1] == 0)
    e--;
  return e;
}

/* Record offsets from the real scanner. */
typedef struct scan_ctx {
  model *m;
  int i;
  bool bad;
} scan_ctx;

static int scan_visit(const sa_wal_record *r, void *ctx) {
  scan_ctx *s = ctx;
  if (s->i >= s->m->nrec || r->lsn != (uint64_t)s->i + 1) {
    s->bad = true;
    return 1;
  }
  s->m->r[s->i++].off = r->offset;
  return 0;
}

static int learn_offsets(const char *wal, model *m, uint64_t *size, uint64_t *data_end) {
  sa_wal_report rep;
  sa_error err = {0};
  scan_ctx s = {m, 0, false};
  if (sa_wal_scan(wal, scan_visit, &s, &rep, &err) != 0 || s.bad || s.i != m->nrec ||
      rep.state != SA_WAL_CLEAN) {
    fail("WAL before damage: %s (state %d, %d of %d records)", err.message, rep.state, s.i,
         m->nrec);
    return -1;
  }
  /* The file is the records, then zeros: free space (preallocation). */
  *size = rep.file_bytes;
  *data_end = rep.data_bytes;
  for (int i = 0; i < m->nrec; i++)
    m->r[i].end = i + 1 < m->nrec ? m->r[i + 1].off : rep.data_bytes;
  return 0;
}

/* ---- checking the recovered node ---------------------------------------- */

/* The API must show exactly the state after the first m records. */
static void check_state(hs_conn *c, const char *url, const model *md, int m, int extra_keys) {
  int val[MAX_KEYS];
  for (int k = 0; k < MAX_KEYS; k++)
    val[k] = -1;
  for (int i = 0; i < m; i++)
    for (int j = 0; j < md->r[i].n; j++)
      val[md->r[i].e[j].key] = md->r[i].e[j].val;
  hs_resp r;
  if (hs_http(c, "GET", url, "/v1/store?prefix=rot/&values=1&limit=1000", NULL, 0, NULL, 30000,
              &r) != 0 ||
      r.status != 200) {
    fail("listing: %ld %s", r.status, r.error);
    return;
  }
  json_t *j = json_loads(r.body, 0, NULL);
  json_t *items = json_object_get(j, "items");
  bool seen[MAX_KEYS] = {false};
  size_t i;
  json_t *it;
  char want[256];
  int listed = 0;
  json_array_foreach(items, i, it) {
    const char *key = json_string_value(json_object_get(it, "key"));
    const char *v = json_string_value(json_object_get(it, "value"));
    int k = -1;
    if (!key || sscanf(key, "rot/k%d", &k) != 1 || k < 0 || k >= MAX_KEYS) {
      fail("unexpected key %s", key ? key : "(null)");
      continue;
    }
    listed++;
    if (k >= md->nkeys) {
      check(k < md->nkeys + extra_keys, "key %s was never written", key);
      continue;
    }
    seen[k] = true;
    if (val[k] < 0) {
      fail("key %s present, but absent after the first %d records", key, m);
      continue;
    }
    value_text(g.trial, val[k], want, sizeof want);
    check(v && strcmp(v, want) == 0, "key %s holds \"%.40s\", want \"%.40s\"", key, v ? v : "",
          want);
  }
  for (int k = 0; k < md->nkeys; k++)
    check(seen[k] || val[k] < 0, "key rot/k%d (acknowledged in the first %d records) is missing", k,
          m);
  json_decref(j);
}

/* Parses "recovery: S records scanned, P replayed, T torn bytes cut (kept in F)". */
static int parse_recovery(const char *line, long *scanned, long *replayed, long *torn, char *kept,
                          size_t keptlen) {
  const char *p = strstr(line, "recovery: ");
  kept[0] = 0;
  if (!p || sscanf(p, "recovery: %ld records scanned, %ld replayed, %ld torn bytes cut", scanned,
                   replayed, torn) != 3)
    return -1;
  const char *k = strstr(p, "(kept in ");
  if (k) {
    snprintf(kept, keptlen, "%s", k + strlen("(kept in "));
    char *close = strrchr(kept, ')');
    if (close) *close = 0;
  }
  return 0;
}

/* Starts the node, which must come up with the first m records.  With
 * store_deleted every one of them is replayed.  torn: expected cut bytes,
 * damaged: the damaged file (to compare the side file).  The API must show
 * the state after state_m records (m, or all of them when the store was kept). */
static int start_expect(hs_server *s, hs_conn *c, const model *md, int m, int state_m, long torn,
                        bool store_deleted, const char *damaged, size_t damaged_len) {
  int st;
  char sb[64];
  if (hs_server_start(s, &st) != 0) {
    fail("node did not start: %s", hs_status_str(st, sb, sizeof sb));
    char *e = read_file(s->err_path, NULL);
    printf("  stderr: %s\n", e ? e : "");
    free(e);
    return -1;
  }
  long sc, rp, tb;
  char kept[512];
  if (parse_recovery(s->start_line, &sc, &rp, &tb, kept, sizeof kept) != 0) {
    fail("start line without a recovery summary: %s", s->start_line);
    return -1;
  }
  check(sc == m, "start line: %ld records scanned, want %d (%s)", sc, m, s->start_line);
  if (store_deleted) check(rp == m, "start line: %ld replayed, want %d", rp, m);
  check(tb == torn, "start line: %ld torn bytes cut, want %ld (%s)", tb, torn, s->start_line);
  if (torn > 0) {
    size_t kl = 0;
    char *kb = kept[0] ? read_file(kept, &kl) : NULL;
    check(kb && kl == (size_t)torn && damaged_len >= kl &&
              memcmp(kb, damaged + damaged_len - kl, kl) == 0,
          "side file '%s' does not hold the %ld cut bytes", kept, torn);
    free(kb);
  } else {
    check(kept[0] == 0, "no torn bytes, yet a side file is named: %s", kept);
  }
  if (state_m < 0) { /* the store was kept: it may hold more than the WAL */
    hs_resp r;
    json_t *j = NULL;
    long long last = -1;
    if (hs_http(c, "GET", s->url, "/v1/status", NULL, 0, NULL, 30000, &r) == 0 && r.status == 200 &&
        (j = json_loads(r.body, 0, NULL)) != NULL)
      last = json_integer_value(json_object_get(json_object_get(j, "wal"), "last_lsn"));
    json_decref(j);
    check(last >= m && last <= md->nrec,
          "kept store: last_lsn %lld after the restart, want %d (the WAL's) to %d (all written)",
          last, m, md->nrec);
    state_m = last < m ? m : last > md->nrec ? md->nrec : (int)last;
  }
  check_state(c, s->url, md, state_m, 0);
  return 0;
}

static void stop_and_verify(hs_server *s, const char *wal, const char *dir) {
  char sb[64];
  int st = hs_server_stop(s, SIGTERM);
  bool ok = st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
  check(ok, "graceful stop: %s", hs_status_str(st, sb, sizeof sb));
  if (!ok) hs_dump_log(s, "graceful stop failed", 64 * 1024); /* e.g. a TSan report */
  char *out;
  const char *args[] = {"wal", "verify", wal, NULL};
  st = run_cli(args, &out, dir);
  check(!crashed(st) && WIFEXITED(st) && WEXITSTATUS(st) == 0 && strstr(out, "clean"),
        "wal verify after the restart: %s: %.300s", hs_status_str(st, sb, sizeof sb), out);
  free(out);
}

/* ---- one trial ----------------------------------------------------------- */

static void trial(const char *root, int kind) {
  char dir[600], wal[700], mdb[700], lock[700], sb[64];
  snprintf(dir, sizeof dir, "%s/t%d", root, g.trial);
  mkdir(dir, 0755);
  hs_server s;
  hs_server_init(&s, g.bin, dir);
  s.extra[0] = "--log-level";
  s.extra[1] = "warn";
  snprintf(wal, sizeof wal, "%s/node-1.wal", s.data_dir);
  snprintf(mdb, sizeof mdb, "%s/node-1.mdb", s.data_dir);
  snprintf(lock, sizeof lock, "%s/node-1.mdb-lock", s.data_dir);
  hs_conn *c = hs_conn_new();
  model *md = calloc(1, sizeof *md);
  int st;
  if (!c || !md) goto out;
  if (hs_server_start(&s, &st) != 0) {
    fail("first start: %s", hs_status_str(st, sb, sizeof sb));
    hs_dump_log(&s, "first start failed", 64 * 1024);
    goto out;
  }
  int nrec = 8 + rnd(24);
  if (write_records(c, s.url, md, nrec) != 0) goto out;
  st = hs_server_stop(&s, SIGKILL);
  uint64_t size, data_end;
  if (learn_offsets(wal, md, &size, &data_end) != 0) goto out;
  g.by_kind[kind]++;

  /* damage */
  size_t len;
  char *buf = read_file(wal, &len);
  if (!buf || len != size) {
    fail("cannot read the WAL");
    free(buf);
    goto out;
  }
  const uint64_t H = 128;
  int m = 0;            /* records expected after recovery */
  long torn = 0;        /* bytes expected to be cut */
  bool corrupt = false; /* the node must refuse */
  bool bad_header = false;
  uint64_t bad_off = 0;
  char *dmg = NULL; /* the damaged file */
  size_t dlen = 0;
  /* Damage lands among the records, and sometimes in the first 4 KiB of
   * the zero-filled free space after them. */
  uint64_t span = data_end - H;
  if (rnd(4) == 0) span += size - data_end < 4096 ? size - data_end : 4096;
  if (span == 0) span = 1;
  if (kind == K_TRUNCATE || kind == K_TRUNCATE_KEEP_STORE) {
    uint64_t cut = H + (uint64_t)rnd((int)span);
    dlen = (size_t)cut;
    dmg = malloc(dlen + 1);
    memcpy(dmg, buf, dlen);
  } else if (kind == K_GARBAGE) {
    size_t glen = 1 + (size_t)rnd(300);
    dlen = len + glen;
    dmg = malloc(dlen);
    memcpy(dmg, buf, len);
    for (size_t i = len; i < dlen; i++)
      dmg[i] = (char)rnd(256);
  } else if (kind == K_ZERO_TAIL) {
    uint64_t z = H + (uint64_t)rnd((int)span);
    size_t more = rnd(2) ? (size_t)rnd(4096) : 0;
    dlen = len + more;
    dmg = calloc(1, dlen);
    memcpy(dmg, buf, (size_t)z);
  } else if (kind == K_FLIP_MIDDLE || kind == K_FLIP_LAST) {
    int j = kind == K_FLIP_LAST ? md->nrec - 1 : rnd(md->nrec - 1);
    const rec *r = &md->r[j];
    uint64_t at = r->off + (uint64_t)rnd((int)(r->end - r->off));
    dlen = len;
    dmg = malloc(dlen);
    memcpy(dmg, buf, len);
    dmg[at] ^= (char)(1 << rnd(8));
    m = j;
    corrupt = kind == K_FLIP_MIDDLE;
    bad_off = r->off;
    torn = corrupt ? 0 : (long)(nz_end(dmg, r->off, dlen) - r->off);
  } else {                                /* K_FLIP_HEADER */
    uint64_t at = (uint64_t)rnd(124 + 4); /* any header byte, CRC included */
    dlen = len;
    dmg = malloc(dlen);
    memcpy(dmg, buf, len);
    dmg[at] ^= (char)(1 << rnd(8));
    bad_header = true;
  }
  if (kind == K_TRUNCATE || kind == K_TRUNCATE_KEEP_STORE || kind == K_GARBAGE ||
      kind == K_ZERO_TAIL) {
    /* whole, untouched records end before the first byte that changed */
    uint64_t intact = kind == K_GARBAGE ? len : dlen;
    if (kind == K_ZERO_TAIL) {
      intact = H;
      while (intact < len && dmg[intact] == buf[intact])
        intact++;
    }
    m = 0;
    while (m < md->nrec && md->r[m].end <= intact)
      m++;
    uint64_t pend = m ? md->r[m - 1].end : H;
    torn = (long)(nz_end(dmg, pend, dlen) - pend);
  }
  free(buf);
  if (write_file(wal, dmg, dlen) != 0) {
    fail("cannot write the damaged WAL");
    free(dmg);
    goto out;
  }
  bool store_deleted = kind != K_TRUNCATE_KEEP_STORE;
  if (store_deleted) {
    unlink(mdb);
    unlink(lock);
  }

  if (bad_header) {
    int rc = hs_server_start(&s, &st);
    check(rc != 0, "node started on a WAL with a damaged header");
    if (rc == 0) {
      hs_server_stop(&s, SIGKILL);
    } else {
      char *e = read_file(s.err_path, NULL);
      check(!crashed(st) && st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 1,
            "refusal of a damaged header: %s", hs_status_str(st, sb, sizeof sb));
      check(e && strstr(e, wal), "refusal does not name the WAL: %s", e ? e : "");
      free(e);
    }
    const char *args[] = {"wal", "repair", wal, NULL};
    char *out;
    st = run_cli(args, &out, dir);
    check(!crashed(st) && WIFEXITED(st) && WEXITSTATUS(st) != 0,
          "wal repair of a damaged header: %s: %.200s", hs_status_str(st, sb, sizeof sb), out);
    free(out);
    size_t nl;
    char *now = read_file(wal, &nl);
    check(now && nl == dlen && memcmp(now, dmg, dlen) == 0, "a failed repair modified the WAL");
    free(now);
    free(dmg);
    goto out;
  }

  if (corrupt) {
    int rc = hs_server_start(&s, &st);
    check(rc != 0, "node started on a corrupt WAL (bit flipped in record %d at offset %llu)", m,
          (unsigned long long)bad_off);
    if (rc == 0) {
      hs_server_stop(&s, SIGKILL);
      free(dmg);
      goto out;
    }
    char *e = read_file(s.err_path, NULL);
    char offs[64];
    snprintf(offs, sizeof offs, "offset %llu", (unsigned long long)bad_off);
    check(!crashed(st) && st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 1,
          "refusal of a corrupt WAL: %s", hs_status_str(st, sb, sizeof sb));
    check(e && strstr(e, wal) && strstr(e, offs), "refusal does not name '%s' and '%s': %s", wal,
          offs, e ? e : "");
    free(e);
    size_t nl;
    char *now = read_file(wal, &nl);
    check(now && nl == dlen && memcmp(now, dmg, dlen) == 0, "a refused start modified the WAL");
    free(now);
    const char *args[] = {"wal", "repair", wal, NULL};
    char *out;
    st = run_cli(args, &out, dir);
    check(!crashed(st) && WIFEXITED(st) && WEXITSTATUS(st) == 0, "wal repair: %s: %.300s",
          hs_status_str(st, sb, sizeof sb), out);
    const char *k = strstr(out, "the original is kept in ");
    char backup[600] = "";
    if (k) {
      snprintf(backup, sizeof backup, "%s", k + strlen("the original is kept in "));
      backup[strcspn(backup, "\n")] = 0;
    }
    size_t bl = 0;
    char *bk = backup[0] ? read_file(backup, &bl) : NULL;
    check(bk && bl == dlen && memcmp(bk, dmg, dlen) == 0,
          "repair backup '%s' is not a copy of the corrupt WAL (%.200s)", backup, out);
    free(bk);
    free(out);
    struct stat sst;
    check(stat(wal, &sst) == 0 && (uint64_t)sst.st_size == bad_off,
          "repair did not truncate at offset %llu", (unsigned long long)bad_off);
    if (start_expect(&s, c, md, m, m, 0, store_deleted, dmg, dlen) == 0)
      stop_and_verify(&s, wal, dir);
    free(dmg);
    goto out;
  }

  /* the side file holds the torn bytes through the last non-zero one */
  size_t kept_end = dlen;
  while (kept_end > 0 && dmg[kept_end - 1] == 0)
    kept_end--;
  if (start_expect(&s, c, md, m, store_deleted ? m : -1, torn, store_deleted, dmg, kept_end) != 0) {
    free(dmg);
    goto out;
  }
  free(dmg);
  if (kind == K_TRUNCATE_KEEP_STORE) {
    /* the store is ahead of the WAL: new writes must survive restarts */
    char path[64], v[32];
    int ok = 0;
    for (int i = 0; i < 3; i++) {
      snprintf(path, sizeof path, "/v1/store/rot/k%d", md->nkeys + i);
      snprintf(v, sizeof v, "after-cut-%d", i);
      ok += must_ack(c, s.url, "PUT", path, v, NULL) == 0;
    }
    hs_server_stop(&s, SIGKILL);
    if (hs_server_start(&s, &st) != 0) {
      fail("restart after writing on a store ahead of its WAL: %s",
           hs_status_str(st, sb, sizeof sb));
      char *e = read_file(s.err_path, NULL);
      printf("  stderr: %s\n", e ? e : "");
      free(e);
      goto out;
    }
    hs_resp r;
    for (int i = 0; i < 3 && ok == 3; i++) {
      snprintf(path, sizeof path, "/v1/store/rot/k%d?raw=1", md->nkeys + i);
      snprintf(v, sizeof v, "after-cut-%d", i);
      int rc = hs_http(c, "GET", s.url, path, NULL, 0, NULL, 30000, &r);
      check(rc == 0 && r.status == 200 && strcmp(r.body, v) == 0,
            "write acknowledged after the cut is lost: %s -> %ld", path, r.status);
    }
  }
  stop_and_verify(&s, wal, dir);
out:
  if (s.pid > 0) hs_server_stop(&s, SIGKILL);
  hs_conn_free(c);
  free(md);
  if (g.failures == 0) hs_rmrf(dir);
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
  g.bin = argv[1];
  const char *e = getenv("SA_WALROT_TRIALS");
  int trials = e && *e ? atoi(e) : 28;
  e = getenv("SA_WALROT_SEED");
  g.seed = e && *e ? (unsigned)strtoul(e, NULL, 10) : (unsigned)(time(NULL) ^ getpid());
  printf("walrot: %d trials, seed %u (SA_WALROT_SEED to replay)\n", trials, g.seed);
  atexit(hs_kill_all);
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  curl_global_init(CURL_GLOBAL_ALL);
  char root[512];
  if (hs_tmpdir("walrot", root, sizeof root) != 0) return 1;
  double t0 = hs_now();
  for (g.trial = 0; g.trial < trials && g.failures == 0; g.trial++)
    trial(root, g.trial % K_COUNT);
  printf("walrot: %d trials (", g.trial);
  for (int k = 0; k < K_COUNT; k++)
    printf("%s%s %ld", k ? ", " : "", kind_name[k], g.by_kind[k]);
  printf("), %ld checks, %.1f s, %ld failures\n", g.checks, hs_now() - t0, g.failures);
  if (g.failures == 0)
    hs_rmrf(root);
  else
    printf("walrot: data kept in %s\n", root);
  curl_global_cleanup();
  return g.failures ? 1 : 0;
}
