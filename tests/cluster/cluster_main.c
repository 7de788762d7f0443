/*
 * cluster_main.c -- the cluster tests of issue 22 (sa_cluster BIN MODE):
 *
 *   schedules  seeded random schedules over 3 nodes, full mesh and line in
 *              turn: writers on every node (PUT/DELETE over 20 keys), links
 *              cut (refuse, black-hole, stall; one or both directions) and
 *              healed, nodes killed with SIGKILL and restarted on the same
 *              data dir and port, during a bounded writer phase; then the
 *              writers stop, every link heals, every node runs, and the
 *              digests must be equal within 10 s and cl_check must pass.
 *              SA_CLUSTER_SCHEDULES (default 12), SA_CLUSTER_SEED (one
 *              schedule), SA_CLUSTER_NODES (3), SA_CLUSTER_PHASE_MS (3000),
 *              SA_CLUSTER_EXTRA (more serve flags for every node),
 *              SA_CLUSTER_STABLE_MS (2500: the digests must stay equal
 *              this long after they first are, past every backoff).
 *   two-node   the session of the issue (node-a/node-b with --peer, a PUT
 *              on a read raw on b within a second, `peers`/`sync status`),
 *              concurrent writes of the same keys on both converge to one
 *              winner, a write on a node killed with SIGKILL (before its
 *              peer could pull it) reaches the peer after the restart.
 *   join       a new empty node joining a node with 100,000 keys and a
 *              deleted range gets exactly the live keys; join-snapshot: the
 *              same through a streamed snapshot (the deletes aged out
 *              first), with both nodes' peak memory printed.
 *   gc-unknown-peer  a tombstone outlives the absence of a configured
 *              peer whose id this node has not learned since it restarted
 *              (see mode_gc_unknown_peer; SA_CLUSTER_GC_CONTROL=1: the
 *              same without the restart).
 *   ttl        two nodes apart past --tombstone-ttl-s 2: a deleted value
 *              does not come back, a rewrite beats an older delete (the
 *              issue's two resurrection cases); ttl-unrelated: a write
 *              nobody deleted survives the same (see mode_ttl);
 *              ttl-later-write: a catch-up's removal of a deleted key does
 *              not beat a write made elsewhere after the delete.
 *   smoke      the harness's own parts against nodes without sync: start,
 *              kill -9, restart on the same port, writers, proxies in front
 *              of nodes cut and healed, the digest route probed.
 *
 * What it is not: a benchmark (times are printed, never asserted, except
 * the bounds: 10 s to converge after the heal, a second for the
 * session's read on b; both widened under SA_TEST_SLOW).
 *
 * Exit: 0 all passed, 1 a failure (each printed with the seed to replay).
 * Threads: main runs the schedule; cluster.c's writers run beside it.
 */
#define _GNU_SOURCE
#include "cluster.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define NKEYS 20

static const char *g_bin;
static int g_failures;

static long env_long(const char *name, long def) {
  const char *s = getenv(name);
  return s && *s ? strtol(s, NULL, 10) : def;
}

static uint64_t rnd(uint64_t *s) { /* splitmix64 */
  uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

__attribute__((format(printf, 1, 2))) static void fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  printf("FAIL: ");
  vprintf(fmt, ap);
  va_end(ap);
  printf("\n");
  fflush(stdout);
  g_failures++;
}

/* ---- schedules ------------------------------------------------------------------ */

enum { EV_CUT, EV_HEAL, EV_KILL, EV_START };

typedef struct ev {
  long at_ms;
  int kind;
  int a, b;  /* a node (KILL/START) or the link a -> b (CUT/HEAL) */
  bool both; /* CUT/HEAL: also b -> a */
  proxy_cut_mode mode;
} ev;

static const char *mode_name(proxy_cut_mode m) {
  return m == PROXY_REFUSE ? "refuse" : m == PROXY_BLACKHOLE ? "blackhole" : "stall";
}

static void ev_print(const cluster *c, const ev *e) {
  switch (e->kind) {
  case EV_CUT:
    printf("  %5ld ms cut %s %s %s (%s)\n", e->at_ms, c->nodes[e->a].id, e->both ? "<->" : "->",
           c->nodes[e->b].id, mode_name(e->mode));
    break;
  case EV_HEAL:
    printf("  %5ld ms heal %s %s %s\n", e->at_ms, c->nodes[e->a].id, e->both ? "<->" : "->",
           c->nodes[e->b].id);
    break;
  case EV_KILL:
    printf("  %5ld ms kill -9 %s\n", e->at_ms, c->nodes[e->a].id);
    break;
  default:
    printf("  %5ld ms restart %s\n", e->at_ms, c->nodes[e->a].id);
  }
}

/* Makes the seeded schedule of one run: events at random times in the
 * writer phase, each valid in the state the earlier ones leave (a cut link
 * is not cut again, a down node is not killed, at least one node stays
 * up).  Returns the number of events. */
static int gen_schedule(const cluster *c, uint64_t seed, long phase_ms, ev *evs, int max) {
  uint64_t r = seed * 0x2545f4914f6cdd1dULL + 17;
  bool cut[CL_MAX_LINKS] = {false}, up[CL_MAX_NODES];
  for (int i = 0; i < c->n; i++)
    up[i] = true;
  int n = 0;
  long t = 0;
  while (n < max) {
    t += 100 + (long)(rnd(&r) % 500);
    if (t >= phase_ms) break;
    int nup = 0, ncut = 0;
    for (int i = 0; i < c->n; i++)
      nup += up[i];
    for (int k = 0; k < c->nlinks; k++)
      ncut += cut[k];
    int w_cut = ncut < c->nlinks ? 3 : 0, w_heal = ncut ? 2 : 0, w_kill = nup > 1 ? 2 : 0,
        w_start = nup < c->n ? 3 : 0;
    int total = w_cut + w_heal + w_kill + w_start;
    if (!total) continue;
    int x = (int)(rnd(&r) % (uint64_t)total);
    ev e = {.at_ms = t};
    if (x < w_cut) {
      int k;
      do
        k = (int)(rnd(&r) % (uint64_t)c->nlinks);
      while (cut[k]);
      e.kind = EV_CUT;
      e.a = c->links[k].from;
      e.b = c->links[k].to;
      int back = cl_link_of(c, e.b, e.a);
      e.both = back >= 0 && !cut[back] && rnd(&r) % 3 != 0; /* mostly both ways */
      e.mode = (proxy_cut_mode)(rnd(&r) % 3);
      cut[k] = true;
      if (e.both) cut[back] = true;
    } else if (x < w_cut + w_heal) {
      int k;
      do
        k = (int)(rnd(&r) % (uint64_t)c->nlinks);
      while (!cut[k]);
      e.kind = EV_HEAL;
      e.a = c->links[k].from;
      e.b = c->links[k].to;
      int back = cl_link_of(c, e.b, e.a);
      e.both = back >= 0 && cut[back];
      cut[k] = false;
      if (e.both) cut[back] = false;
    } else if (x < w_cut + w_heal + w_kill) {
      int i;
      do
        i = (int)(rnd(&r) % (uint64_t)c->n);
      while (!up[i]);
      e.kind = EV_KILL;
      e.a = i;
      up[i] = false;
    } else {
      int i;
      do
        i = (int)(rnd(&r) % (uint64_t)c->n);
      while (up[i]);
      e.kind = EV_START;
      e.a = i;
      up[i] = true;
    }
    evs[n++] = e;
  }
  return n;
}

typedef struct totals {
  int schedules, failed, kills, cuts, restarts;
  size_t acked, unacked, via_tomb, via_unacked_del;
  double max_conv_ms, sum_conv_ms;
} totals;

static int apply_cut(cluster *c, const ev *e, bool heal) {
  int rc = 0;
  int k = cl_link_of(c, e->a, e->b), back = cl_link_of(c, e->b, e->a);
  int ks[2] = {k, e->both ? back : -1};
  for (int j = 0; j < 2; j++) {
    if (ks[j] < 0) continue;
    rc |= heal ? proxy_heal(c->links[ks[j]].px) : proxy_cut(c->links[ks[j]].px, e->mode);
    if (!heal) c->cuts++;
  }
  return rc;
}

/* Checks each node alone against the writes made on it (sync off: the
 * nodes are independent).  Returns the violations. */
static size_t check_each_alone(cluster *c, const cl_write *w, size_t nw, const char *tag,
                               cl_check_result *sum) {
  size_t viol = 0;
  cl_write *mine = malloc((nw ? nw : 1) * sizeof *mine);
  memset(sum, 0, sizeof *sum);
  for (int i = 0; i < c->n && mine; i++) {
    size_t m = 0;
    for (size_t k = 0; k < nw; k++)
      if (w[k].node == i) {
        mine[m] = w[k];
        mine[m++].node = 0;
      }
    cluster one = *c; /* a view of node i alone; only cl_check reads it */
    one.n = 1;
    one.nodes[0] = c->nodes[i];
    cl_check_result r;
    viol += cl_check(&one, mine, m, NKEYS, "k", tag, &r);
    sum->acked_checked += r.acked_checked;
    sum->unacked += r.unacked;
    sum->violations += r.violations;
  }
  free(mine);
  return viol;
}

/* One schedule: returns 0 when it passed.  Without sync (the smoke test)
 * the same schedule runs, and each node is checked alone when its answers
 * carry (hlc, origin).  SA_CLUSTER_SABOTAGE=pair|link makes the run wrong
 * on purpose (a recorded pair raised past what the node stored; a link
 * left cut): the check must then fail. */
static int run_schedule(uint64_t seed, cl_topology topo, int nnodes, long phase_ms, bool sync,
                        totals *tot) {
  cluster c;
  const char *tname = topo == CL_MESH ? "mesh" : "line";
  const char *sabotage = getenv("SA_CLUSTER_SABOTAGE");
  char tag[64];
  snprintf(tag, sizeof tag, "seed %llu %s", (unsigned long long)seed, tname);
  if (cl_init(&c, g_bin, nnodes, topo, sync, "n") != 0) {
    fail("%s: cluster init failed", tag);
    return -2;
  }
  /* SA_CLUSTER_EXTRA: more serve flags for every node, split on spaces
   * (e.g. "--tombstone-ttl-s 1" to make tombstones age out mid-run) */
  char extra[512];
  snprintf(extra, sizeof extra, "%s", getenv("SA_CLUSTER_EXTRA") ? getenv("SA_CLUSTER_EXTRA") : "");
  char *save = NULL;
  int ne = 0;
  for (char *t = strtok_r(extra, " ", &save); t && ne < 15; t = strtok_r(NULL, " ", &save))
    c.extra[ne++] = t;
  ev evs[64];
  int nev = gen_schedule(&c, seed, phase_ms, evs, 64);
  int rc = 0;
  for (int i = 0; i < c.n && rc == 0; i++)
    rc = cl_start(&c, i);
  if (rc != 0) {
    fail("%s: a node did not start", tag);
    cl_destroy(&c, false);
    return -2;
  }
  cl_writers *ws = cl_writers_start(&c, 2, NKEYS, "k", 5, seed);
  double t0 = cl_now();
  int kills = 0, restarts = 0;
  for (int i = 0; i < nev && rc == 0; i++) {
    long wait = evs[i].at_ms - (long)((cl_now() - t0) * 1000);
    if (wait > 0) cl_sleep_ms(wait);
    switch (evs[i].kind) {
    case EV_CUT:
      rc = apply_cut(&c, &evs[i], false);
      break;
    case EV_HEAL:
      rc = apply_cut(&c, &evs[i], true);
      break;
    case EV_KILL:
      cl_stop(&c, evs[i].a, SIGKILL);
      kills++;
      break;
    default:
      rc = cl_start(&c, evs[i].a);
      restarts++;
    }
  }
  long rest = phase_ms - (long)((cl_now() - t0) * 1000);
  if (rest > 0) cl_sleep_ms(rest);
  cl_write *w = NULL;
  size_t nw = 0;
  cl_writers_stop(ws, &w, &nw);
  /* heal every link, start every node */
  bool keep_cut = sabotage && !strcmp(sabotage, "link"); /* n0 pulls from nobody */
  for (int k = 0; k < c.nlinks; k++)
    rc |= keep_cut && c.links[k].from == 0 ? proxy_cut(c.links[k].px, PROXY_REFUSE)
                                           : proxy_heal(c.links[k].px);
  double t_heal = cl_now();
  for (int i = 0; i < c.n; i++)
    if (c.nodes[i].pid <= 0) {
      rc |= cl_start(&c, i);
      restarts++;
    }
  if (rc != 0) printf("FAIL [%s]: a heal or a restart failed\n", tag);
  if (keep_cut) { /* one more write n0 cannot pull */
    cl_http *h = cl_http_new();
    cl_http_do(h, "PUT", c.nodes[1].url, "/v1/store/k00", "n1.9.1", 6, NULL, 5000, NULL, NULL);
    cl_http_free(h);
  }
  if (sabotage && !strcmp(sabotage, "pair"))
    for (size_t i = nw; i-- > 0;)
      if (w[i].acked && !w[i].del) {
        w[i].pair.hlc += 1ull << 40; /* as if the node had acknowledged a later pair */
        break;
      }
  double conv_ms = 0;
  int conv = 0;
  size_t viol;
  cl_check_result res;
  if (sync) {
    char why[512];
    long bound = cl_slow() ? 120000 : 10000;
    conv = cl_wait_converged(&c, t_heal, bound, &conv_ms, why, sizeof why);
    if (conv != 0)
      printf("FAIL [%s]: digests not equal %.0f ms after the heal: %s\n", tag, conv_ms, why);
    /* still equal once every puller's backoff (at most 2 s) has run out:
     * equal digests can hide an op a node has yet to pull */
    long stable = env_long("SA_CLUSTER_STABLE_MS", 2500);
    if (conv == 0 && stable > 0) {
      char before[65] = "", after[65] = "";
      cl_http *h = cl_http_new();
      cl_get_digest(h, c.nodes[0].url, before, NULL);
      cl_sleep_ms(stable);
      double ms2;
      int again = cl_wait_converged(&c, 0, 1000, &ms2, why, sizeof why);
      cl_get_digest(h, c.nodes[0].url, after, NULL);
      cl_http_free(h);
      if (again != 0 || strcmp(before, after) != 0) {
        printf("FAIL [%s]: the digests changed %ld ms after they were equal (%s -> %s)%s%s\n", tag,
               stable, before, after, again ? ": " : "", again ? why : "");
        conv = -1;
      }
    }
    viol = cl_check(&c, w, nw, NKEYS, "k", tag, &res);
  } else {
    size_t acked = 0;
    for (size_t i = 0; i < nw; i++)
      acked += w[i].acked;
    viol = acked ? check_each_alone(&c, w, nw, tag, &res) : 0;
    if (!acked) {
      memset(&res, 0, sizeof res);
      res.unacked = nw;
    }
  }
  bool ok = rc == 0 && conv == 0 && viol == 0;
  printf("schedule %-16s %d events, %d kills, %d cuts, writes: %zu acknowledged checked, %zu "
         "unacknowledged; %s %.0f ms; %zu violations: %s\n",
         tag, nev, kills, c.cuts, res.acked_checked, res.unacked,
         sync ? "converged in" : "no sync, each node alone;", conv_ms, viol, ok ? "ok" : "FAILED");
  if (!ok) {
    printf("schedule of %s (replay: SA_CLUSTER_SEED=%llu):\n", tag, (unsigned long long)seed);
    for (int i = 0; i < nev; i++)
      ev_print(&c, &evs[i]);
    if (!sabotage)
      for (int i = 0; i < c.n; i++)
        cl_dump_log(&c, i, tag, 3000);
    g_failures++;
  }
  fflush(stdout);
  tot->schedules++;
  tot->failed += !ok;
  tot->kills += kills;
  tot->restarts += restarts;
  tot->cuts += c.cuts;
  tot->acked += res.acked_checked;
  tot->unacked += res.unacked;
  tot->via_tomb += res.via_tombstone;
  tot->via_unacked_del += res.via_unacked_delete;
  if (conv == 0) {
    tot->sum_conv_ms += conv_ms;
    if (conv_ms > tot->max_conv_ms) tot->max_conv_ms = conv_ms;
  }
  free(w);
  if (cl_destroy(&c, !ok && getenv("SA_CLUSTER_KEEP_FAILED")) != 0 && ok) {
    printf("FAIL [%s]: a node did not stop cleanly (above)\n", tag);
    ok = false;
    g_failures++;
    tot->failed++;
  }
  return ok ? 0 : -1;
}

static int mode_schedules(void) {
  long count = env_long("SA_CLUSTER_SCHEDULES", 12);
  long one = env_long("SA_CLUSTER_SEED", 0);
  int nodes = (int)env_long("SA_CLUSTER_NODES", 3);
  long phase = env_long("SA_CLUSTER_PHASE_MS", 3000);
  totals tot = {0};
  bool stopped = false;
  double t0 = cl_now();
  for (long s = one ? one : 1; one ? s == one : s <= count; s++)
    if (run_schedule((uint64_t)s, s % 2 ? CL_MESH : CL_LINE, nodes, phase, true, &tot) == -2) {
      printf("cluster schedules: stopped (the cluster could not start)\n");
      stopped = true;
      break;
    }
  printf("cluster schedules: %d run (%d failed), %d nodes, %ld ms writer phase; %zu acknowledged "
         "writes checked (%zu unacknowledged; %zu deletes vouched by a tombstone, %zu by an "
         "unacknowledged delete); %d kills, %d restarts, %d cuts; convergence max %.0f ms, mean "
         "%.0f ms; %.1f s in all\n",
         tot.schedules, tot.failed, nodes, phase, tot.acked, tot.unacked, tot.via_tomb,
         tot.via_unacked_del, tot.kills, tot.restarts, tot.cuts, tot.max_conv_ms,
         tot.schedules - tot.failed ? tot.sum_conv_ms / (tot.schedules - tot.failed) : 0,
         cl_now() - t0);
  if (getenv("SA_CLUSTER_SABOTAGE")) { /* the self-test passes when every run was caught */
    bool caught = tot.schedules > 0 && tot.failed == tot.schedules && !stopped;
    printf("cluster selftest (%s): %s\n", getenv("SA_CLUSTER_SABOTAGE"),
           caught ? "every sabotaged run was caught" : "a sabotaged run PASSED the check");
    g_failures = caught ? 0 : 1;
    return caught ? 0 : 1;
  }
  return tot.failed ? 1 : 0;
}

/* ---- smoke: the harness against nodes without sync -------------------------------- */

static int mode_smoke(void) {
  cluster c;
  if (cl_init(&c, g_bin, 3, CL_MESH, false, "n") != 0) return 1;
  for (int i = 0; i < c.n; i++)
    if (cl_start(&c, i) != 0) fail("smoke: %s did not start", c.nodes[i].id);
  cl_http *h = cl_http_new();
  /* the proxies forward to their node, and a cut stops them */
  for (int k = 0; k < c.nlinks; k++) {
    char base[64];
    snprintf(base, sizeof base, "http://127.0.0.1:%d", proxy_port(c.links[k].px));
    if (cl_http_do(h, "GET", base, "/healthz", NULL, 0, NULL, 5000, NULL, NULL) != 200)
      fail("smoke: no answer through the proxy to %s", c.nodes[c.links[k].to].id);
  }
  proxy_cut(c.links[0].px, PROXY_REFUSE);
  char b0[64];
  snprintf(b0, sizeof b0, "http://127.0.0.1:%d", proxy_port(c.links[0].px));
  if (cl_http_do(h, "GET", b0, "/healthz", NULL, 0, NULL, 2000, NULL, NULL) > 0)
    fail("smoke: a cut link answered");
  proxy_heal(c.links[0].px);
  cl_writers *ws = cl_writers_start(&c, 2, NKEYS, "k", 2, 1);
  cl_sleep_ms(500);
  int port1 = c.nodes[1].port;
  cl_stop(&c, 1, SIGKILL);
  cl_sleep_ms(300);
  if (cl_start(&c, 1) != 0) fail("smoke: %s did not restart", c.nodes[1].id);
  if (c.nodes[1].port != port1)
    printf("smoke: %s came back on port %d, not %d (taken): proxies retargeted\n", c.nodes[1].id,
           c.nodes[1].port, port1);
  cl_sleep_ms(500);
  cl_write *w;
  size_t nw;
  cl_writers_stop(ws, &w, &nw);
  size_t ok[CL_MAX_NODES] = {0}, acked = 0;
  for (size_t i = 0; i < nw; i++) {
    if (w[i].status >= 200 && w[i].status < 300) ok[w[i].node]++;
    acked += w[i].acked;
  }
  for (int i = 0; i < c.n; i++)
    if (!ok[i]) fail("smoke: no write answered 2xx on %s", c.nodes[i].id);
  /* after the restart, the node answers through its proxy again */
  int k10 = cl_link_of(&c, 0, 1);
  char b1[64];
  snprintf(b1, sizeof b1, "http://127.0.0.1:%d", proxy_port(c.links[k10].px));
  if (cl_http_do(h, "GET", b1, "/healthz", NULL, 0, NULL, 5000, NULL, NULL) != 200)
    fail("smoke: no answer through the proxy after the restart");
  /* without sync, each key holds a value written on that node */
  for (int i = 0; i < c.n; i++)
    for (int k = 0; k < NKEYS; k++) {
      char path[64];
      const char *body;
      snprintf(path, sizeof path, "/v1/store/k%02d?raw=1", k);
      long s = cl_http_do(h, "GET", c.nodes[i].url, path, NULL, 0, NULL, 5000, &body, NULL);
      size_t il = strlen(c.nodes[i].id);
      if (s == 200 && (strncmp(body, c.nodes[i].id, il) != 0 || body[il] != '.'))
        fail("smoke: a value of another node ('%s') on %s", body, c.nodes[i].id);
      else if (s != 200 && s != 404)
        fail("smoke: GET on %s answered %ld", c.nodes[i].id, s);
    }
  char hex[65];
  long ds = cl_get_digest(h, c.nodes[0].url, hex, NULL);
  printf("smoke: 3 nodes, 1 kill -9 and restart, %zu writes (%zu answered 2xx on n0, %zu on n1, "
         "%zu on n2; %zu with hlc and origin), 1 cut; /v1/sync/digest answers %ld%s%s\n",
         nw, ok[0], ok[1], ok[2], acked, ds, ds == 200 ? " " : "", ds == 200 ? hex : "");
  free(w);
  cl_http_free(h);
  if (cl_destroy(&c, false)) fail("smoke: a node did not stop cleanly");
  /* a whole generated schedule (cuts, kills, restarts) without sync: each
   * node checked alone once answers carry (hlc, origin) */
  totals tot = {0};
  for (uint64_t seed = 1; seed <= 2; seed++)
    run_schedule(seed, seed % 2 ? CL_MESH : CL_LINE, 3, 2000, false, &tot);
  printf("smoke: %d schedules without sync, %d kills, %d restarts, %d cuts, %zu acknowledged "
         "writes checked node by node\n",
         tot.schedules, tot.kills, tot.restarts, tot.cuts, tot.acked);
  return g_failures ? 1 : 0;
}

/* ---- two nodes --------------------------------------------------------------------- */

static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t l = sizeof a;
  int port = 0;
  if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
      getsockname(fd, (struct sockaddr *)&a, &l) == 0)
    port = ntohs(a.sin_port);
  if (fd >= 0) close(fd);
  return port;
}

/* Runs `softadastra --url URL args...`; returns the exit code and stdout. */
static int run_cli(const char *url, const char *a1, const char *a2, char *out, size_t outlen) {
  int pfd[2];
  if (pipe(pfd) != 0) return -1;
  pid_t p = fork();
  if (p == 0) {
    dup2(pfd[1], 1);
    close(pfd[0]);
    execl(g_bin, g_bin, "--url", url, a1, a2, (char *)NULL);
    _exit(127);
  }
  close(pfd[1]);
  size_t n = 0;
  ssize_t r;
  while (n + 1 < outlen && (r = read(pfd[0], out + n, outlen - 1 - n)) > 0)
    n += (size_t)r;
  out[n] = 0;
  close(pfd[0]);
  int st = 0;
  waitpid(p, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Polls GET key?raw=1 on base until it answers want (NULL: 404), at most
 * ms.  Returns the time it took in ms, or -1. */
static double wait_value(cl_http *h, const char *base, const char *key, const char *want, long ms) {
  char path[256];
  snprintf(path, sizeof path, "/v1/store/%s?raw=1", key);
  double t0 = cl_now();
  do {
    const char *b;
    long s = cl_http_do(h, "GET", base, path, NULL, 0, NULL, 2000, &b, NULL);
    if (want ? (s == 200 && !strcmp(b, want)) : s == 404) return (cl_now() - t0) * 1000;
    cl_sleep_ms(10);
  } while ((cl_now() - t0) * 1000 < ms);
  return -1;
}

/* The session of the issue, verbatim but for the ports (free ones picked
 * first, since 8081/8082 may be taken here). */
static void two_session(void) {
  cluster c;
  if (cl_init(&c, g_bin, 2, CL_NONE, false, "x") != 0) return;
  snprintf(c.nodes[0].id, sizeof c.nodes[0].id, "node-a");
  snprintf(c.nodes[1].id, sizeof c.nodes[1].id, "node-b");
  char peer[2][64];
  int pa = free_port(), pb = free_port();
  c.nodes[0].port = pa;
  c.nodes[1].port = pb;
  snprintf(peer[0], sizeof peer[0], "http://127.0.0.1:%d", pb);
  snprintf(peer[1], sizeof peer[1], "http://127.0.0.1:%d", pa);
  for (int i = 0; i < 2; i++) {
    c.extra_node[i][0] = "--transport";
    c.extra_node[i][1] = "http";
    c.extra_node[i][2] = "--peer";
    c.extra_node[i][3] = peer[i];
  }
  if (cl_start(&c, 0) != 0 || cl_start(&c, 1) != 0 || c.nodes[0].port != pa ||
      c.nodes[1].port != pb) {
    fail("two-node session: the nodes did not start on their ports");
    cl_destroy(&c, false);
    return;
  }
  cl_http *h = cl_http_new();
  long s = cl_http_do(h, "PUT", c.nodes[0].url, "/v1/store/settings/theme", "dark", 4, NULL, 5000,
                      NULL, NULL);
  if (s != 200 && s != 201) fail("two-node session: PUT on node-a answered %ld", s);
  double ms = wait_value(h, c.nodes[1].url, "settings/theme", "dark", cl_slow() ? 30000 : 1000);
  if (ms < 0)
    fail("two-node session: node-b does not read 'dark' within a second");
  else
    printf("two-node session: node-b reads the write of node-a after %.0f ms\n", ms);
  char out[4096];
  int rc = run_cli(c.nodes[0].url, "peers", NULL, out, sizeof out);
  if (rc != 0 || !strstr(out, "node-b") || !strstr(out, "connected"))
    fail("two-node session: `softadastra peers` on node-a does not show node-b connected: %s", out);
  rc = run_cli(c.nodes[0].url, "sync", "status", out, sizeof out);
  if (rc != 0 || !strstr(out, "node-b"))
    fail("two-node session: `softadastra sync status` on node-a does not name node-b: %s", out);
  cl_http_free(h);
  if (cl_destroy(&c, false)) fail("two-node session: a node did not stop cleanly");
}

/* Concurrent writes of the same keys on both nodes (through proxies, the
 * link cut during the writes so that conflicts are many) converge to the
 * same winner, the largest acknowledged pair. */
static void two_concurrent(void) {
  cluster c;
  if (cl_init(&c, g_bin, 2, CL_MESH, true, "p") != 0) return;
  if (cl_start(&c, 0) || cl_start(&c, 1)) {
    fail("two-node concurrent: the nodes did not start");
    cl_destroy(&c, false);
    return;
  }
  cl_writers *ws = cl_writers_start(&c, 2, 8, "c", 1, 42);
  cl_sleep_ms(700);
  proxy_cut(c.links[0].px, PROXY_REFUSE);
  proxy_cut(c.links[1].px, PROXY_STALL);
  cl_sleep_ms(700);
  proxy_heal(c.links[0].px);
  proxy_heal(c.links[1].px);
  cl_sleep_ms(500);
  cl_write *w;
  size_t nw;
  cl_writers_stop(ws, &w, &nw);
  double ms;
  char why[512];
  if (cl_wait_converged(&c, 0, cl_slow() ? 120000 : 10000, &ms, why, sizeof why) != 0)
    fail("two-node concurrent: digests differ 10 s after the writes: %s", why);
  cl_check_result res;
  if (cl_check(&c, w, nw, 8, "c", "two-node concurrent", &res) != 0)
    fail("two-node concurrent: the check failed (above)");
  printf("two-node concurrent: %zu acknowledged writes on 8 keys, converged in %.0f ms\n",
         res.acked_checked, ms);
  free(w);
  if (cl_destroy(&c, false)) fail("two-node concurrent: a node did not stop cleanly");
}

/* A write on a node that is then killed with SIGKILL before its peer could
 * pull it (the link is cut) reaches the peer after the restart. */
static void two_kill(void) {
  cluster c;
  if (cl_init(&c, g_bin, 2, CL_MESH, true, "q") != 0) return;
  if (cl_start(&c, 0) || cl_start(&c, 1)) {
    fail("two-node kill: the nodes did not start");
    cl_destroy(&c, false);
    return;
  }
  cl_http *h = cl_http_new();
  int k10 = cl_link_of(&c, 1, 0); /* q1 pulls from q0 */
  proxy_cut(c.links[k10].px, PROXY_REFUSE);
  long s = cl_http_do(h, "PUT", c.nodes[0].url, "/v1/store/survivor", "after-kill", 10, NULL, 5000,
                      NULL, NULL);
  if (s != 200 && s != 201) fail("two-node kill: PUT answered %ld", s);
  cl_stop(&c, 0, SIGKILL);
  if (cl_start(&c, 0) != 0) fail("two-node kill: no restart");
  proxy_heal(c.links[k10].px);
  double ms = wait_value(h, c.nodes[1].url, "survivor", "after-kill", cl_slow() ? 120000 : 10000);
  if (ms < 0)
    fail("two-node kill: the write made before kill -9 never reached the peer");
  else
    printf("two-node kill: the write reached the peer %.0f ms after the heal\n", ms);
  cl_http_free(h);
  if (cl_destroy(&c, false)) fail("two-node kill: a node did not stop cleanly");
}

/* ---- past the tombstone TTL ------------------------------------------------------------ */

/* Cuts (or heals) both directions between nodes 0 and 1. */
static void cut_pair(cluster *c, bool cut) {
  for (int k = 0; k < c->nlinks; k++)
    cut ? proxy_cut(c->links[k].px, PROXY_REFUSE) : proxy_heal(c->links[k].px);
}

static long put(cl_http *h, const cluster *c, int i, const char *key, const char *v) {
  char path[128];
  snprintf(path, sizeof path, "/v1/store/%s", key);
  return cl_http_do(h, "PUT", c->nodes[i].url, path, v, strlen(v), NULL, 5000, NULL, NULL);
}

static long del(cl_http *h, const cluster *c, int i, const char *key) {
  char path[128];
  snprintf(path, sizeof path, "/v1/store/%s", key);
  return cl_http_do(h, "DELETE", c->nodes[i].url, path, NULL, 0, NULL, 5000, NULL, NULL);
}

/* Node i's raw value of key in buf ("" when absent); returns the status. */
static long get_raw(cl_http *h, const cluster *c, int i, const char *key, char *buf, size_t len) {
  char path[128];
  const char *b;
  snprintf(path, sizeof path, "/v1/store/%s?raw=1", key);
  long s = cl_http_do(h, "GET", c->nodes[i].url, path, NULL, 0, NULL, 5000, &b, NULL);
  snprintf(buf, len, "%s", s == 200 ? b : "");
  return s;
}

/* The TTL of the tests past it, and how long a node stays away: past the
 * TTL (the tombstone goes by age, the feed's start with it), within twice
 * the TTL (the key's dropped-tombstone record is kept that long: a node
 * away longer may bring a deleted value back by design). */
static const char *ttl_arg(void) {
  return cl_slow() ? "10" : "2";
}
static long ttl_away_ms(void) {
  return atol(ttl_arg()) * 1500;
}

/* Two nodes with --tombstone-ttl-s 2, apart for longer than the TTL:
 *   A. t0 away (killed) holds x = old; t1 deletes x; t0 returns: x stays
 *      deleted on both (the first resurrection case);
 *   B. t0 deletes y while cut off, t1 rewrites y after that: the rewrite
 *      wins on both (the second);
 *   C. (mode ttl-unrelated) t0 writes z while cut off and nobody ever
 *      deletes z; t1 deletes an unrelated key after that and drops its
 *      tombstone by age: z must reach t1 and stay on t0 (an acknowledged
 *      write that nobody deleted is never lost because its node was away
 *      past the TTL).  Failed with the node-wide horizon of store formats
 *      2 and 3: t1's horizon (the unrelated tombstone's hlc) was above
 *      z's, so t1 refused z as stale and t0's snapshot catch-up dropped z
 *      (gc-grace); with per-key records only w is named. */
static int mode_ttl(bool only_c) {
  cluster c;
  if (cl_init(&c, g_bin, 2, CL_MESH, true, "t") != 0) return 1;
  c.extra[0] = "--tombstone-ttl-s";
  c.extra[1] = ttl_arg();
  c.extra[2] = "--tick-interval-ms";
  c.extra[3] = "100";
  if (cl_start(&c, 0) || cl_start(&c, 1)) {
    fail("ttl: the nodes did not start");
    cl_destroy(&c, false);
    return 1;
  }
  cl_http *h = cl_http_new();
  char v0[128], v1[128];
  long wait = cl_slow() ? 120000 : 10000;
  double ms;
  char why[512];
  long s0, s1;
  if (only_c) goto scenario_c;
  /* A */
  put(h, &c, 0, "x", "t0.x.old");
  if (wait_value(h, c.nodes[1].url, "x", "t0.x.old", wait) < 0) fail("ttl A: x never reached t1");
  cl_stop(&c, 0, SIGKILL);
  del(h, &c, 1, "x");
  cl_sleep_ms(ttl_away_ms()); /* past the TTL: t1 drops the tombstone by age */
  if (cl_start(&c, 0) != 0) fail("ttl A: t0 did not restart");
  if (cl_wait_converged(&c, 0, wait, &ms, why, sizeof why) != 0)
    fail("ttl A: no convergence: %s", why);
  s0 = get_raw(h, &c, 0, "x", v0, sizeof v0);
  s1 = get_raw(h, &c, 1, "x", v1, sizeof v1);
  if (s0 != 404 || s1 != 404)
    fail("ttl A: a deleted value came back: x on t0 %ld '%s', on t1 %ld '%s'", s0, v0, s1, v1);
  else
    printf("ttl A: x stays deleted on both after t0 returns past the TTL\n");
  /* B */
  put(h, &c, 0, "y", "t0.y.first");
  if (wait_value(h, c.nodes[1].url, "y", "t0.y.first", wait) < 0) fail("ttl B: y never reached t1");
  cut_pair(&c, true);
  del(h, &c, 0, "y");
  cl_sleep_ms(20);
  put(h, &c, 1, "y", "t1.y.rewritten");
  cl_sleep_ms(ttl_away_ms());
  cut_pair(&c, false);
  if (cl_wait_converged(&c, 0, wait, &ms, why, sizeof why) != 0)
    fail("ttl B: no convergence: %s", why);
  s0 = get_raw(h, &c, 0, "y", v0, sizeof v0);
  s1 = get_raw(h, &c, 1, "y", v1, sizeof v1);
  if (s0 != 200 || s1 != 200 || strcmp(v0, "t1.y.rewritten") || strcmp(v1, "t1.y.rewritten"))
    fail("ttl B: y on t0 %ld '%s', on t1 %ld '%s' (want the rewrite on both)", s0, v0, s1, v1);
  else
    printf("ttl B: the rewrite wins over the older delete on both\n");
  goto done;
scenario_c:
  cut_pair(&c, true);
  long sz = put(h, &c, 0, "z", "t0.z.kept");
  cl_sleep_ms(20);
  put(h, &c, 1, "w", "t1.w.gone");
  del(h, &c, 1, "w");
  cl_sleep_ms(ttl_away_ms());
  cut_pair(&c, false);
  cl_wait_converged(&c, 0, wait, &ms, why, sizeof why);
  cl_sleep_ms(500);
  s0 = get_raw(h, &c, 0, "z", v0, sizeof v0);
  s1 = get_raw(h, &c, 1, "z", v1, sizeof v1);
  if (sz != 200 && sz != 201) fail("ttl C: PUT z answered %ld", sz);
  if (s0 != 200 || s1 != 200)
    fail("ttl C: an acknowledged write nobody deleted is lost: z on t0 %ld '%s', on t1 %ld '%s'",
         s0, v0, s1, v1);
  else
    printf("ttl C: z, written on t0 while away, reaches t1 and stays\n");
done:
  cl_http_free(h);
  if (cl_destroy(&c, g_failures && getenv("SA_CLUSTER_KEEP_FAILED")))
    fail("ttl: a node did not stop cleanly");
  return g_failures ? 1 : 0;
}

/* The gc-grace removal must not beat a write made elsewhere after the
 * delete.  Three nodes l0, l1, l2 (mesh), --tombstone-ttl-s 2:
 *   1. l1 writes k; everyone has it; l1 is killed;
 *   2. l0 deletes k; l2 gets the delete; l2 is cut off from both and
 *      writes k again (a pair above the delete's);
 *   3. past the TTL l0 drops its tombstone by age; l1 returns and catches
 *      up from l0's snapshot, whose dropped list names k: l1 removes its
 *      old k with the delete's pair;
 *   4. l2's links heal: its later write must win everywhere.
 * With the removal written as a local delete (a fresh hlc, above l2's
 * write), the removal wins and l2's acknowledged write is lost on all
 * three. */
static int mode_ttl_later_write(void) {
  cluster c;
  if (cl_init(&c, g_bin, 3, CL_MESH, true, "l") != 0) return 1;
  c.extra[0] = "--tombstone-ttl-s";
  c.extra[1] = ttl_arg();
  c.extra[2] = "--tick-interval-ms";
  c.extra[3] = "100";
  for (int i = 0; i < 3; i++)
    if (cl_start(&c, i) != 0) {
      fail("ttl-later-write: l%d did not start", i);
      cl_destroy(&c, false);
      return 1;
    }
  cl_http *h = cl_http_new();
  long wait = cl_slow() ? 120000 : 10000;
  char v[3][128];
  double t0 = cl_now(), ms;
  char why[512];
  put(h, &c, 1, "k", "l1.k.old");
  for (int i = 0; i < 3; i += 2)
    if (wait_value(h, c.nodes[i].url, "k", "l1.k.old", wait) < 0)
      fail("ttl-later-write: k never reached l%d", i);
  cl_stop(&c, 1, SIGKILL);
  if (del(h, &c, 0, "k") != 200) fail("ttl-later-write: DELETE k on l0 failed");
  if (wait_value(h, c.nodes[2].url, "k", NULL, wait) < 0)
    fail("ttl-later-write: the delete never reached l2");
  for (int k = 0; k < c.nlinks; k++) /* l2 alone */
    if (c.links[k].from == 2 || c.links[k].to == 2) proxy_cut(c.links[k].px, PROXY_REFUSE);
  long sp = put(h, &c, 2, "k", "l2.k.later");
  if (sp != 200 && sp != 201) fail("ttl-later-write: PUT k on l2 answered %ld", sp);
  cl_sleep_ms(ttl_away_ms()); /* past the TTL: l0 drops its tombstone by age */
  if (cl_start(&c, 1) != 0) fail("ttl-later-write: l1 did not restart");
  if (wait_value(h, c.nodes[1].url, "k", NULL, wait) < 0)
    fail("ttl-later-write: l1 kept the deleted k after catching up from l0");
  for (int k = 0; k < c.nlinks; k++)
    proxy_heal(c.links[k].px);
  int conv = cl_wait_converged(&c, 0, wait, &ms, why, sizeof why);
  long st[3];
  for (int i = 0; i < 3; i++)
    st[i] = get_raw(h, &c, i, "k", v[i], sizeof v[i]);
  bool ok = conv == 0;
  for (int i = 0; i < 3; i++)
    ok = ok && st[i] == 200 && !strcmp(v[i], "l2.k.later");
  if (!ok)
    fail("ttl-later-write: k on l0 %ld '%s', l1 %ld '%s', l2 %ld '%s' (want l2's later write on "
         "all: the catch-up's removal must carry the delete's pair)%s%s",
         st[0], v[0], st[1], v[1], st[2], v[2], conv ? "; digests differ: " : "", conv ? why : "");
  else
    printf("ttl-later-write: l2's write after the delete wins on all three (converged %.0f ms "
           "after the heal, %.1f s in all)\n",
           ms, cl_now() - t0);
  cl_http_free(h);
  if (cl_destroy(&c, g_failures && getenv("SA_CLUSTER_KEEP_FAILED")))
    fail("ttl-later-write: a node did not stop cleanly");
  return g_failures ? 1 : 0;
}

/* Waits until node i's /v1/sync/status names peer id among its peers. */
static bool wait_identified(cl_http *h, const cluster *c, int i, const char *id, long ms) {
  char want[96];
  snprintf(want, sizeof want, "\"node_id\":\"%s\"", id);
  double t0 = cl_now();
  do {
    const char *b;
    if (cl_http_do(h, "GET", c->nodes[i].url, "/v1/sync/status", NULL, 0, NULL, 2000, &b, NULL) ==
            200 &&
        strstr(b, want))
      return true;
    cl_sleep_ms(20);
  } while ((cl_now() - t0) * 1000 < ms);
  return false;
}

/* A tombstone is kept until every configured peer has it, also right
 * after a restart, before a peer that is down has answered once (its node
 * id not yet learned).  Three nodes g0, g1, g2 (mesh):
 *   1. g0 stops pulling from g1 (link cut); g1 writes k; g2 gets it, and
 *      g0 from g2; g1 is killed;
 *   2. g0 is killed and restarted (it knows g2's id again at once, g1 is
 *      down); g0 deletes k; g2 pulls and acknowledges the delete;
 *   3. the link and g1 come back: g0 pulls g1's feed from before k's write.
 * g0 must not take k back (its delete is newer), and all three must end
 * with k deleted.  With tombstones dropped once the peers *known* have
 * them, g0 forgets its delete, takes g1's older k as new, and never gets
 * its own delete back (peers do not send a node its own writes): g0
 * diverges for good. */
static int mode_gc_unknown_peer(void) {
  cluster c;
  if (cl_init(&c, g_bin, 3, CL_MESH, true, "g") != 0) return 1;
  c.extra[0] = "--tick-interval-ms";
  c.extra[1] = "100";
  for (int i = 0; i < 3; i++)
    if (cl_start(&c, i) != 0) {
      fail("gc-unknown-peer: g%d did not start", i);
      cl_destroy(&c, false);
      return 1;
    }
  cl_http *h = cl_http_new();
  long wait = cl_slow() ? 120000 : 10000;
  char v[3][128];
  /* every node knows every peer's id first (the control run depends on it) */
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 3; j++)
      if (i != j && !wait_identified(h, &c, i, c.nodes[j].id, wait))
        fail("gc: %s never learned %s's id", c.nodes[i].id, c.nodes[j].id);
  int k01 = cl_link_of(&c, 0, 1);
  proxy_cut(c.links[k01].px, PROXY_REFUSE); /* g0 no longer pulls from g1: k reaches it via g2 */
  put(h, &c, 1, "k", "g1.k.old");
  for (int i = 0; i < 3; i += 2)
    if (wait_value(h, c.nodes[i].url, "k", "g1.k.old", wait) < 0)
      fail("gc: k never reached g%d", i);
  cl_stop(&c, 1, SIGKILL);
  if (!getenv("SA_CLUSTER_GC_CONTROL")) { /* the control run keeps g0 up: it knows g1's id */
    cl_stop(&c, 0, SIGKILL);
    if (cl_start(&c, 0) != 0) fail("gc: g0 did not restart");
  }
  cl_sleep_ms(300);
  long sd = del(h, &c, 0, "k");
  if (sd != 200) fail("gc: DELETE k on g0 answered %ld", sd);
  if (wait_value(h, c.nodes[2].url, "k", NULL, wait) < 0) fail("gc: the delete never reached g2");
  cl_sleep_ms(2000); /* g2 acknowledges; GC ticks on g0 */
  {                  /* what g0 holds of k now (a diagnostic for the report) */
    const char *b;
    long s = cl_http_do(h, "GET", c.nodes[0].url, "/v1/sync/snapshot?node=cluster-checker", NULL, 0,
                        NULL, 5000, &b, NULL);
    const char *t = s == 200 ? strstr(b, "\"key\":\"k\"") : NULL;
    printf("gc-unknown-peer: before g1 returns, g0's snapshot %s k%s%.120s\n",
           t ? "holds" : "does not hold", t ? ": " : "", t ? t : "");
    if (getenv("SA_CLUSTER_DEBUG")) {
      cl_http_do(h, "GET", c.nodes[0].url, "/v1/sync/status", NULL, 0, NULL, 5000, &b, NULL);
      printf("gc-unknown-peer: g0's sync status: %s\n", b);
    }
  }
  proxy_heal(c.links[k01].px);
  if (cl_start(&c, 1) != 0) fail("gc: g1 did not restart");
  cl_sleep_ms(3000); /* past the pullers' backoff: g0 pulls g1's feed */
  double ms;
  char why[512];
  int conv = cl_wait_converged(&c, 0, wait, &ms, why, sizeof why);
  long st[3];
  for (int i = 0; i < 3; i++)
    st[i] = get_raw(h, &c, i, "k", v[i], sizeof v[i]);
  if (conv != 0 || st[0] != 404 || st[1] != 404 || st[2] != 404)
    fail("gc-unknown-peer: after g1 returns, k on g0 %ld '%s', g1 %ld '%s', g2 %ld '%s' (want "
         "deleted on all: g0's delete is the newest write)%s%s",
         st[0], v[0], st[1], v[1], st[2], v[2], conv ? "; digests differ: " : "", conv ? why : "");
  else
    printf("gc-unknown-peer: k stays deleted on all three (converged in %.0f ms)\n", ms);
  cl_http_free(h);
  if (cl_destroy(&c, g_failures && getenv("SA_CLUSTER_KEEP_FAILED")))
    fail("gc-unknown-peer: a node did not stop cleanly");
  return g_failures ? 1 : 0;
}

static int mode_two(void) {
  two_session();
  two_concurrent();
  two_kill();
  return g_failures ? 1 : 0;
}

/* ---- join ---------------------------------------------------------------------------- */

/* POSTs one batch of keys j/<from..to) (puts with 100-byte values, or
 * deletes).  Returns the status. */
static long post_batch(cl_http *h, const char *base, int from, int to, bool del) {
  size_t cap = (size_t)(to - from) * 180 + 64, n = 0;
  char *b = malloc(cap);
  n += (size_t)snprintf(b + n, cap - n, "{\"ops\":[");
  for (int i = from; i < to; i++) {
    if (del)
      n += (size_t)snprintf(b + n, cap - n, "%s{\"op\":\"delete\",\"key\":\"j/%06d\"}",
                            i > from ? "," : "", i);
    else
      n += (size_t)snprintf(b + n, cap - n,
                            "%s{\"op\":\"put\",\"key\":\"j/%06d\",\"value\":\"v%06d-%089d\"}",
                            i > from ? "," : "", i, i, 0);
  }
  n += (size_t)snprintf(b + n, cap - n, "]}");
  long s = cl_http_do(h, "POST", base, "/v1/batch", b, n, "application/json", 60000, NULL, NULL);
  free(b);
  return s;
}

/* Lists every key of base (pages of 10,000); returns the count and sets
 * *bad when a key is not the expected live key (or one is missing). */
static long list_keys(cl_http *h, const char *base, int total, int del_from, int del_to,
                      long *bad) {
  char after[64] = "";
  long count = 0;
  int expect = 0;
  *bad = 0;
  for (int page = 0; page < 100; page++) {
    char path[160];
    snprintf(path, sizeof path, "/v1/store?limit=10000%s%s", after[0] ? "&after=" : "", after);
    const char *b;
    if (cl_http_do(h, "GET", base, path, NULL, 0, NULL, 60000, &b, NULL) != 200) {
      (*bad)++;
      break;
    }
    json_t *o = json_loads(b, 0, NULL);
    json_t *items = json_object_get(o, "items"), *it;
    size_t i;
    json_array_foreach(items, i, it) {
      const char *k = json_string_value(json_object_get(it, "key"));
      while (expect >= del_from && expect < del_to)
        expect++;
      char want[32];
      snprintf(want, sizeof want, "j/%06d", expect);
      if (!k || strcmp(k, want) != 0) {
        if (*bad < 5) printf("join: key %ld is '%s', expected '%s'\n", count, k ? k : "?", want);
        (*bad)++;
        if (k && strncmp(k, "j/", 2) == 0) expect = atoi(k + 2);
      }
      expect++;
      count++;
    }
    bool more = json_is_true(json_object_get(o, "more"));
    const char *next = json_string_value(json_object_get(o, "next"));
    snprintf(after, sizeof after, "%s", next ? next : "");
    json_decref(o);
    if (!more || !after[0]) break;
  }
  (void)total;
  return count;
}

/* The peak resident memory of node i (VmHWM, kB; 0 when unknown). */
static long node_hwm_kb(const cluster *c, int i) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", (int)c->nodes[i].pid);
  FILE *f = c->nodes[i].pid > 0 ? fopen(path, "r") : NULL;
  long kb = 0;
  while (f && fgets(line, sizeof line, f))
    if (!strncmp(line, "VmHWM:", 6)) kb = atol(line + 6);
  if (f) fclose(f);
  return kb;
}

/* With snap (join-snapshot): j0's deletes age out (--tombstone-ttl-s 5)
 * before j1 starts, so j1 is told 410 and joins through j0's snapshot,
 * streamed (the live keys, then a dropped record per deleted key); the
 * peak memory of both nodes is printed. */
static int mode_join(bool snap) {
  int total = (int)env_long("SA_CLUSTER_JOIN_KEYS", 100000);
  int del_from = total / 5, del_to = total / 5 + total / 10; /* 10% deleted, a range */
  cluster c;
  if (cl_init(&c, g_bin, 2, CL_MESH, true, "j") != 0) return 1;
  if (snap) {
    c.extra[0] = "--tombstone-ttl-s";
    c.extra[1] = cl_slow() ? "30" : "5";
    c.extra[2] = "--tick-interval-ms";
    c.extra[3] = "100";
  }
  if (cl_start(&c, 0) != 0) {
    cl_destroy(&c, false);
    return 1;
  }
  cl_http *h = cl_http_new();
  double t0 = cl_now();
  for (int i = 0; i < total; i += 5000)
    if (post_batch(h, c.nodes[0].url, i, i + 5000 < total ? i + 5000 : total, false) != 200)
      fail("join: a batch of puts failed");
  for (int i = del_from; i < del_to; i += 5000)
    if (post_batch(h, c.nodes[0].url, i, i + 5000 < del_to ? i + 5000 : del_to, true) != 200)
      fail("join: a batch of deletes failed");
  printf("join: %d keys written and %d deleted on j0 in %.1f s\n", total, del_to - del_from,
         cl_now() - t0);
  if (snap) { /* the tombstones age out: the feed's start is no longer served */
    long st = 0;
    double tw = cl_now();
    while ((st = cl_http_do(h, "GET", c.nodes[0].url, "/v1/sync/ops?since=0&limit=1", NULL, 0, NULL,
                            5000, NULL, NULL)) != 410 &&
           cl_now() - tw < (cl_slow() ? 120 : 30))
      cl_sleep_ms(100);
    if (st != 410) fail("join: j0 still serves its feed from 0 (%ld)", st);
  }
  t0 = cl_now();
  if (cl_start(&c, 1) != 0) fail("join: the new node did not start");
  double ms;
  char why[512];
  if (cl_wait_converged(&c, t0, cl_slow() ? 900000 : 120000, &ms, why, sizeof why) != 0)
    fail("join: digests still differ: %s", why);
  else
    printf("join: the new node caught up in %.1f s (%.0f live keys/s)\n", ms / 1000,
           (total - (del_to - del_from)) / (ms / 1000 + 1e-9));
  long bad = 0, n1 = list_keys(h, c.nodes[1].url, total, del_from, del_to, &bad);
  long want = total - (del_to - del_from);
  if (n1 != want || bad)
    fail("join: the new node lists a key set other than the live keys (see above)");
  printf("join: the new node holds %ld keys (want %ld), %ld wrong\n", n1, want, bad);
  if (snap) {
    char path[700], line[512];
    snprintf(path, sizeof path, "%s/node.err", c.nodes[1].dir);
    FILE *f = fopen(path, "r");
    bool seen = false;
    while (f && fgets(line, sizeof line, f))
      if (strstr(line, "event=sync_catch_up")) {
        printf("join: j1 %s", strstr(line, "event=sync_catch_up"));
        seen = true;
      }
    if (f) fclose(f);
    if (!seen) fail("join: j1 did not catch up from a snapshot");
    printf("join: peak memory (VmHWM) j0 %ld kB (served the snapshot), j1 %ld kB (read it)\n",
           node_hwm_kb(&c, 0), node_hwm_kb(&c, 1));
  }
  /* values of a sample */
  for (int i = 0; i < total; i += 997) {
    char key[32], wantv[128];
    snprintf(key, sizeof key, "j/%06d", i);
    bool live = !(i >= del_from && i < del_to);
    snprintf(wantv, sizeof wantv, "v%06d-%089d", i, 0);
    if (wait_value(h, c.nodes[1].url, key, live ? wantv : NULL, 1) < 0) {
      fail("join: key %s on the new node is not %s", key, live ? "its value" : "absent");
      break;
    }
  }
  cl_http_free(h);
  if (cl_destroy(&c, false)) fail("join: a node did not stop cleanly");
  return g_failures ? 1 : 0;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: sa_cluster SOFTADASTRA_BIN "
                    "schedules|two-node|join|join-snapshot|ttl|ttl-unrelated|ttl-later-write|"
                    "gc-unknown-peer|smoke\n");
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  signal(SIGPIPE, SIG_IGN);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  g_bin = argv[1];
  int rc = 2;
  if (!strcmp(argv[2], "schedules")) rc = mode_schedules();
  if (!strcmp(argv[2], "two-node")) rc = mode_two();
  if (!strcmp(argv[2], "join")) rc = mode_join(false);
  if (!strcmp(argv[2], "join-snapshot")) rc = mode_join(true);
  if (!strcmp(argv[2], "ttl")) rc = mode_ttl(false);
  if (!strcmp(argv[2], "gc-unknown-peer")) rc = mode_gc_unknown_peer();
  if (!strcmp(argv[2], "ttl-unrelated")) rc = mode_ttl(true);
  if (!strcmp(argv[2], "ttl-later-write")) rc = mode_ttl_later_write();
  if (!strcmp(argv[2], "smoke")) rc = mode_smoke();
  curl_global_cleanup();
  if (rc == 1 || g_failures) printf("sa_cluster %s: FAILED (%d failures)\n", argv[2], g_failures);
  return rc;
}
