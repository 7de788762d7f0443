/*
 * cluster.c -- the cluster tests' harness (see cluster.h): nodes, links,
 * writers and the convergence check.
 */
#define _GNU_SOURCE
#include "cluster.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

bool cl_slow(void) {
  const char *s = getenv("SA_TEST_SLOW");
  return s && *s && strcmp(s, "0") != 0;
}

int cl_wait_ms(void) {
  return cl_slow() ? 120000 : 20000;
}

double cl_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

void cl_sleep_ms(long ms) {
  struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&t, &t) != 0 && errno == EINTR) {
  }
}

/* ---- nodes ------------------------------------------------------------------ */

static void cl_rmrf(const char *dir) {
  pid_t p = fork();
  if (p == 0) {
    execlp("rm", "rm", "-rf", "--", dir, (char *)NULL);
    _exit(127);
  }
  if (p > 0) waitpid(p, NULL, 0);
}

int cl_link_of(const cluster *c, int from, int to) {
  for (int k = 0; k < c->nlinks; k++)
    if (c->links[k].from == from && c->links[k].to == to) return k;
  return -1;
}

int cl_init(cluster *c, const char *bin, int n, cl_topology topo, bool sync, const char *prefix) {
  memset(c, 0, sizeof *c);
  if (n < 1 || n > CL_MAX_NODES) return -1;
  c->bin = bin;
  c->n = n;
  c->sync = sync;
  const char *tmp = getenv("TMPDIR");
  snprintf(c->base, sizeof c->base, "%s/sa-cluster-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(c->base)) {
    perror("mkdtemp");
    return -1;
  }
  char base[sizeof c->base];
  memcpy(base, c->base, sizeof base);
  for (int i = 0; i < n; i++) {
    cl_node *nd = &c->nodes[i];
    char id[CL_ID_MAX + 1];
    snprintf(id, sizeof id, "%s%d", prefix ? prefix : "n", i);
    memcpy(nd->id, id, sizeof id);
    snprintf(nd->dir, sizeof nd->dir, "%s/%s", base, id);
    if (mkdir(nd->dir, 0755) != 0) {
      perror("mkdir");
      return -1;
    }
  }
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) {
      bool adj = topo == CL_MESH ? i != j : topo == CL_LINE ? (i - j == 1 || j - i == 1) : false;
      if (!adj) continue;
      cl_link *l = &c->links[c->nlinks];
      l->from = i;
      l->to = j;
      l->px = proxy_start(0);
      if (!l->px) {
        fprintf(stderr, "cluster: cannot start a proxy\n");
        return -1;
      }
      c->nlinks++;
    }
  return 0;
}

/* Reads the node's start line from its stdout; returns the port or 0. */
static int cl_find_port(const cl_node *nd) {
  char path[700];
  snprintf(path, sizeof path, "%s/node.out", nd->dir);
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  char line[1024];
  int port = 0;
  while (!port && fgets(line, sizeof line, f)) {
    if (!strchr(line, '\n')) continue;
    const char *u = strstr(line, "listening on http://127.0.0.1:");
    if (u) port = atoi(u + strlen("listening on http://127.0.0.1:"));
  }
  fclose(f);
  return port;
}

/* Forks the node with --listen 127.0.0.1:port.  Returns 0 or -1. */
static int cl_spawn(cluster *c, int i, int port) {
  cl_node *nd = &c->nodes[i];
  static char listen[CL_MAX_NODES][32], data[CL_MAX_NODES][700], peers[CL_MAX_LINKS][64];
  snprintf(listen[i], sizeof listen[i], "127.0.0.1:%d", port);
  snprintf(data[i], sizeof data[i], "%s/data", nd->dir);
  const char *argv[96];
  int a = 0;
  char *wrap = NULL;
  const char *w = getenv("SA_SERVER_WRAPPER");
  if (w && *w) {
    wrap = strdup(w);
    char *save = NULL;
    for (char *t = wrap ? strtok_r(wrap, " ", &save) : NULL; t && a < 40;
         t = strtok_r(NULL, " ", &save))
      argv[a++] = t;
  }
  argv[a++] = c->bin;
  argv[a++] = "serve";
  argv[a++] = "--listen";
  argv[a++] = listen[i];
  argv[a++] = "--data-dir";
  argv[a++] = data[i];
  argv[a++] = "--node-id";
  argv[a++] = nd->id;
  if (c->sync) {
    argv[a++] = "--transport";
    argv[a++] = "http";
    for (int k = 0; k < c->nlinks && a < 80; k++) {
      if (c->links[k].from != i) continue;
      snprintf(peers[k], sizeof peers[k], "http://127.0.0.1:%d", proxy_port(c->links[k].px));
      argv[a++] = "--peer";
      argv[a++] = peers[k];
    }
  }
  for (int k = 0; k < 15 && c->extra[k] && a < 94; k++)
    argv[a++] = c->extra[k];
  for (int k = 0; k < 7 && c->extra_node[i][k] && a < 94; k++)
    argv[a++] = c->extra_node[i][k];
  argv[a] = NULL;
  char out[700], err[700];
  snprintf(out, sizeof out, "%s/node.out", nd->dir);
  snprintf(err, sizeof err, "%s/node.err", nd->dir);
  unlink(out);
  /* the child's environment, built before fork: no SOFTADASTRA_* leaks in */
  const char *envp[512];
  int ne = 0;
  for (char **e = environ; *e && ne < 511; e++)
    if (strncmp(*e, "SOFTADASTRA_", 12) != 0) envp[ne++] = *e;
  envp[ne] = NULL;
  pid_t parent = getpid();
  pid_t p = fork();
  if (p < 0) {
    free(wrap);
    return -1;
  }
  if (p == 0) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) _exit(126);
    int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int e = open(err, O_WRONLY | O_CREAT | O_APPEND, 0644);
    int in = open("/dev/null", O_RDONLY);
    if (o < 0 || e < 0 || in < 0) _exit(126);
    dup2(in, 0);
    dup2(o, 1);
    dup2(e, 2);
    execvpe(argv[0], (char *const *)argv, (char *const *)envp);
    _exit(127);
  }
  free(wrap);
  nd->pid = p;
  return 0;
}

/* Waits for node i's start line.  Returns 0, or -1 (exited: *st). */
static int cl_wait_start(cluster *c, int i, int *st) {
  cl_node *nd = &c->nodes[i];
  double t0 = cl_now();
  *st = -1;
  while ((cl_now() - t0) * 1000 < cl_wait_ms()) {
    int port = cl_find_port(nd);
    if (port > 0) {
      nd->port = port;
      snprintf(nd->url, sizeof nd->url, "http://127.0.0.1:%d", port);
      return 0;
    }
    pid_t r = waitpid(nd->pid, st, WNOHANG);
    if (r == nd->pid) {
      nd->pid = 0;
      return -1;
    }
    cl_sleep_ms(5);
  }
  cl_stop(c, i, SIGKILL);
  return -1;
}

void cl_dump_log(const cluster *c, int i, const char *why, size_t max_bytes) {
  char path[700];
  snprintf(path, sizeof path, "%s/node.err", c->nodes[i].dir);
  printf("---- %s stderr (%s): %s\n", c->nodes[i].id, why, path);
  FILE *f = fopen(path, "rb");
  if (f) {
    long size = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (size > (long)max_bytes) {
      fseek(f, size - (long)max_bytes, SEEK_SET);
      printf("(... the first %ld bytes left out)\n", size - (long)max_bytes);
    } else {
      fseek(f, 0, SEEK_SET);
    }
    char buf[4096];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, f)) > 0)
      fwrite(buf, 1, k, stdout);
    fclose(f);
  }
  printf("---- end of %s stderr\n", c->nodes[i].id);
  fflush(stdout);
}

int cl_start(cluster *c, int i) {
  cl_node *nd = &c->nodes[i];
  if (nd->pid > 0) return 0;
  int st = -1;
  /* the previous port first (peers' proxies already point there); a taken
   * port makes the node exit: then any free port, and the proxies follow */
  for (int attempt = 0; attempt < 3; attempt++) {
    int want = attempt == 0 ? nd->port : 0;
    if (cl_spawn(c, i, want) != 0) return -1;
    if (cl_wait_start(c, i, &st) == 0) {
      nd->starts++;
      atomic_store(&c->wport[i], nd->port);
      for (int k = 0; k < c->nlinks; k++)
        if (c->links[k].to == i) proxy_set_target(c->links[k].px, nd->port);
      return 0;
    }
    /* no start line in time, or an exit on a port of its own choosing: no retry */
    if (st == -1 || want == 0) break;
  }
  char s[64];
  if (st == -1)
    snprintf(s, sizeof s, "no start line in time");
  else if (WIFEXITED(st))
    snprintf(s, sizeof s, "exit %d", WEXITSTATUS(st));
  else
    snprintf(s, sizeof s, "signal %d", WTERMSIG(st));
  printf("cluster: %s did not start (%s)\n", nd->id, s);
  cl_dump_log(c, i, "start failed", 4000);
  return -1;
}

int cl_stop(cluster *c, int i, int sig) {
  cl_node *nd = &c->nodes[i];
  if (nd->pid <= 0) return -1;
  kill(nd->pid, sig);
  int st = -1;
  double t0 = cl_now();
  for (;;) {
    pid_t r = waitpid(nd->pid, &st, WNOHANG);
    if (r == nd->pid) break;
    if (r < 0 && errno != EINTR) break;
    if ((cl_now() - t0) * 1000 > cl_wait_ms()) {
      kill(nd->pid, SIGKILL);
      waitpid(nd->pid, &st, 0);
      st = -1;
      break;
    }
    cl_sleep_ms(2);
  }
  nd->pid = 0;
  if (sig == SIGKILL) nd->kills++;
  return st;
}

int cl_destroy(cluster *c, bool keep) {
  int unclean = 0;
  for (int i = 0; i < c->n; i++)
    if (c->nodes[i].pid > 0) {
      double t0 = cl_now();
      int st = cl_stop(c, i, SIGTERM);
      if (st != 0) {
        char s[64];
        if (st == -1)
          snprintf(s, sizeof s, "no exit after the wait: killed");
        else if (WIFEXITED(st))
          snprintf(s, sizeof s, "exit %d", WEXITSTATUS(st));
        else
          snprintf(s, sizeof s, "signal %d", WTERMSIG(st));
        printf("cluster: %s did not stop cleanly at SIGTERM (%s after %.1f s)\n", c->nodes[i].id, s,
               cl_now() - t0);
        cl_dump_log(c, i, "stop", 4000);
        unclean++;
      }
    }
  for (int k = 0; k < c->nlinks; k++)
    proxy_stop(c->links[k].px);
  c->nlinks = 0;
  const char *k = getenv("SA_CLUSTER_KEEP");
  if (keep || (k && *k && strcmp(k, "0") != 0))
    printf("cluster: kept %s\n", c->base);
  else if (c->base[0])
    cl_rmrf(c->base);
  return unclean;
}

/* ---- HTTP ------------------------------------------------------------------- */

struct cl_http {
  CURL *curl;
  char *buf;
  size_t len, cap;
};

static size_t cl_sink(char *p, size_t sz, size_t nm, void *ud) {
  cl_http *h = ud;
  size_t n = sz * nm;
  if (h->len + n + 1 > h->cap) {
    size_t cap = h->cap ? h->cap : 4096;
    while (cap < h->len + n + 1)
      cap *= 2;
    char *b = realloc(h->buf, cap);
    if (!b) return 0;
    h->buf = b;
    h->cap = cap;
  }
  memcpy(h->buf + h->len, p, n);
  h->len += n;
  h->buf[h->len] = 0;
  return n;
}

cl_http *cl_http_new(void) {
  cl_http *h = calloc(1, sizeof *h);
  if (h && !(h->curl = curl_easy_init())) {
    free(h);
    h = NULL;
  }
  return h;
}

void cl_http_free(cl_http *h) {
  if (!h) return;
  curl_easy_cleanup(h->curl);
  free(h->buf);
  free(h);
}

long cl_http_do(cl_http *h, const char *method, const char *base, const char *path,
                const char *body, size_t len, const char *ctype, long timeout_ms, const char **out,
                size_t *out_len) {
  char url[4096];
  snprintf(url, sizeof url, "%s%s", base, path);
  h->len = 0;
  if (h->buf) h->buf[0] = 0;
  CURL *e = h->curl;
  curl_easy_reset(e);
  curl_easy_setopt(e, CURLOPT_URL, url);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, cl_sink);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, h);
  curl_easy_setopt(e, CURLOPT_PROXY, "");
  struct curl_slist *hd = curl_slist_append(NULL, "Expect:");
  if (ctype) {
    char ct[128];
    snprintf(ct, sizeof ct, "Content-Type: %s", ctype);
    hd = curl_slist_append(hd, ct);
  }
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, hd);
  if (strcmp(method, "GET") != 0) curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
  if (body || !strcmp(method, "PUT") || !strcmp(method, "POST")) {
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body ? body : "");
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
  }
  CURLcode rc = curl_easy_perform(e);
  curl_slist_free_all(hd);
  long status = rc == CURLE_COULDNT_CONNECT ? -1 : 0;
  if (rc == CURLE_OK) curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
  if (out) *out = h->buf ? h->buf : "";
  if (out_len) *out_len = h->len;
  return status;
}

/* ---- states and pairs -------------------------------------------------------- */

int cl_pair_cmp(const cl_pair *a, const cl_pair *b) {
  if (a->hlc != b->hlc) return a->hlc < b->hlc ? -1 : 1;
  size_t la = strlen(a->origin), lb = strlen(b->origin);
  int m = memcmp(a->origin, b->origin, la < lb ? la : lb);
  if (m) return m < 0 ? -1 : 1;
  return la < lb ? -1 : la > lb ? 1 : 0;
}

/* Reads "hlc" and "origin" of a JSON object; false when either is missing. */
static bool cl_json_pair(json_t *o, cl_pair *p) {
  json_t *h = json_object_get(o, "hlc"), *g = json_object_get(o, "origin");
  if (!json_is_integer(h) || !json_is_string(g)) return false;
  p->hlc = (uint64_t)json_integer_value(h);
  snprintf(p->origin, sizeof p->origin, "%s", json_string_value(g));
  return true;
}

int cl_get_state(cl_http *h, const char *base, const char *key, cl_state *st) {
  memset(st, 0, sizeof *st);
  char path[512];
  snprintf(path, sizeof path, "/v1/store/%s", key);
  const char *b;
  long s = cl_http_do(h, "GET", base, path, NULL, 0, NULL, cl_wait_ms(), &b, NULL);
  st->status = (int)s;
  if (s == 404) return 0;
  if (s != 200) return -1;
  json_t *o = json_loads(b, 0, NULL);
  json_t *v = json_object_get(o, "value");
  bool ok = o && json_is_string(v) && cl_json_pair(o, &st->pair);
  if (ok) snprintf(st->value, sizeof st->value, "%s", json_string_value(v));
  json_decref(o);
  if (!ok) st->status = -200; /* a 200 without the members the check needs */
  return ok ? 0 : -1;
}

long cl_get_digest(cl_http *h, const char *base, char hex[65], uint64_t *keys) {
  const char *b;
  hex[0] = 0;
  long s = cl_http_do(h, "GET", base, "/v1/sync/digest", NULL, 0, NULL, 5000, &b, NULL);
  if (s != 200) return s;
  json_t *o = json_loads(b, 0, NULL);
  json_t *d = json_object_get(o, "digest"), *k = json_object_get(o, "keys");
  if (!json_is_string(d)) {
    json_decref(o);
    return -200;
  }
  snprintf(hex, 65, "%s", json_string_value(d));
  if (keys) *keys = json_is_integer(k) ? (uint64_t)json_integer_value(k) : 0;
  json_decref(o);
  return 200;
}

int cl_wait_converged(cluster *c, double since, long timeout_ms, double *ms, char *why,
                      size_t why_len) {
  cl_http *h = cl_http_new();
  double t0 = since > 0 ? since : cl_now();
  int equal_rounds = 0;
  why[0] = 0;
  for (;;) {
    char first[65] = "", hex[65];
    uint64_t keys = 0, first_keys = 0;
    bool same = true;
    int first_node = -1;
    for (int i = 0; i < c->n && same; i++) {
      if (c->nodes[i].pid <= 0) continue;
      long s = cl_get_digest(h, c->nodes[i].url, hex, &keys);
      if (s != 200) {
        snprintf(why, why_len, "%s: GET /v1/sync/digest answered %ld", c->nodes[i].id, s);
        same = false;
      } else if (first_node < 0) {
        snprintf(first, sizeof first, "%s", hex);
        first_keys = keys;
        first_node = i;
      } else if (strcmp(first, hex) != 0) {
        snprintf(why, why_len, "%s has %s (%llu keys), %s has %s (%llu keys)",
                 c->nodes[first_node].id, first, (unsigned long long)first_keys, c->nodes[i].id,
                 hex, (unsigned long long)keys);
        same = false;
      }
    }
    equal_rounds = same ? equal_rounds + 1 : 0;
    if (equal_rounds == 1) *ms = (cl_now() - t0) * 1000;
    if (equal_rounds >= 2) {
      why[0] = 0;
      cl_http_free(h);
      return 0;
    }
    if ((cl_now() - t0) * 1000 > timeout_ms) break;
    cl_sleep_ms(50);
  }
  *ms = (cl_now() - t0) * 1000;
  cl_http_free(h);
  return -1;
}

/* ---- writers ------------------------------------------------------------------ */

typedef struct cl_wthread {
  pthread_t t;
  struct cl_writers *ws;
  int node, index;
  uint64_t rng;
  cl_write *w;
  size_t n, cap;
} cl_wthread;

struct cl_writers {
  cluster *c;
  atomic_bool stop;
  int nkeys, pause_ms;
  char prefix[32];
  int nthreads;
  cl_wthread th[CL_MAX_NODES * 4];
};

static uint64_t cl_rand(uint64_t *s) { /* splitmix64 */
  uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static void *cl_writer_main(void *arg) {
  cl_wthread *t = arg;
  cl_writers *ws = t->ws;
  cluster *c = ws->c;
  cl_http *h = cl_http_new();
  uint64_t seq = 0;
  while (h && !atomic_load(&ws->stop)) {
    if (t->n == t->cap) {
      size_t cap = t->cap ? t->cap * 2 : 1024;
      cl_write *nw = realloc(t->w, cap * sizeof *nw);
      if (!nw) break;
      t->w = nw;
      t->cap = cap;
    }
    cl_write *w = &t->w[t->n];
    memset(w, 0, sizeof *w);
    w->node = t->node;
    w->key = (int)(cl_rand(&t->rng) % (uint64_t)ws->nkeys);
    w->del = cl_rand(&t->rng) % 10 < 3;
    char path[128], url[64];
    int port = atomic_load(&c->wport[t->node]);
    snprintf(path, sizeof path, "/v1/store/%s%02d", ws->prefix, w->key);
    /* the node's port may change on a restart: read it each time */
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    snprintf(w->value, sizeof w->value, "%s.%d.%llu", c->nodes[t->node].id, t->index,
             (unsigned long long)++seq);
    const char *b;
    long s =
        cl_http_do(h, w->del ? "DELETE" : "PUT", url, path, w->del ? NULL : w->value,
                   w->del ? 0 : strlen(w->value), w->del ? NULL : "text/plain", 10000, &b, NULL);
    if (w->del && s == 404) continue; /* absent here: nothing written, nothing recorded */
    if (s < 0) { /* the node is down (connection refused): nothing sent, nothing recorded */
      cl_sleep_ms(20);
      continue;
    }
    w->status = (int)s;
    if (s >= 200 && s < 300) {
      json_t *o = json_loads(b, 0, NULL);
      w->acked = o && cl_json_pair(o, &w->pair);
      json_decref(o);
    }
    t->n++;
    if (s == 0)
      cl_sleep_ms(20); /* the node is down: do not spin */
    else if (ws->pause_ms > 0)
      cl_sleep_ms((long)(cl_rand(&t->rng) % (uint64_t)(ws->pause_ms + 1)));
  }
  cl_http_free(h);
  return NULL;
}

cl_writers *cl_writers_start(cluster *c, int per_node, int nkeys, const char *key_prefix,
                             int pause_ms, uint64_t seed) {
  cl_writers *ws = calloc(1, sizeof *ws);
  if (!ws) return NULL;
  ws->c = c;
  ws->nkeys = nkeys;
  ws->pause_ms = pause_ms;
  snprintf(ws->prefix, sizeof ws->prefix, "%s", key_prefix);
  if (per_node > 4) per_node = 4;
  for (int i = 0; i < c->n; i++)
    for (int k = 0; k < per_node; k++) {
      cl_wthread *t = &ws->th[ws->nthreads];
      t->ws = ws;
      t->node = i;
      t->index = k;
      t->rng = seed * 1000003u + (uint64_t)ws->nthreads * 7919u + 1;
      if (pthread_create(&t->t, NULL, cl_writer_main, t) == 0) ws->nthreads++;
    }
  return ws;
}

void cl_writers_stop(cl_writers *ws, cl_write **out, size_t *n) {
  atomic_store(&ws->stop, true);
  size_t total = 0;
  for (int i = 0; i < ws->nthreads; i++) {
    pthread_join(ws->th[i].t, NULL);
    total += ws->th[i].n;
  }
  cl_write *all = malloc((total ? total : 1) * sizeof *all);
  size_t k = 0;
  for (int i = 0; i < ws->nthreads; i++) {
    if (all && ws->th[i].n) memcpy(all + k, ws->th[i].w, ws->th[i].n * sizeof *all);
    k += ws->th[i].n;
    free(ws->th[i].w);
  }
  free(ws);
  *out = all;
  *n = all ? total : 0;
}

/* ---- the check ------------------------------------------------------------------ */

/* Tombstones of node i from /v1/sync/snapshot: tomb[k] set for each key of
 * the key space the snapshot holds as deleted (a tombstone in "items", or
 * the record of one dropped by age in "dropped": the larger pair).
 * Returns false when the node does not serve a usable snapshot. */
static bool cl_snapshot_tombs(cl_http *h, const char *base, int nkeys, const char *prefix,
                              cl_pair *tomb, bool *has) {
  const char *b;
  long s = cl_http_do(h, "GET", base, "/v1/sync/snapshot?node=cluster-checker", NULL, 0, NULL,
                      cl_wait_ms(), &b, NULL);
  if (s != 200) return false;
  json_t *o = json_loads(b, 0, NULL);
  json_t *items = json_object_get(o, "items");
  if (!json_is_array(items)) {
    json_decref(o);
    return false;
  }
  size_t i;
  json_t *it;
  size_t pl = strlen(prefix);
  for (int part = 0; part < 2; part++) {
    json_t *arr = json_object_get(o, part ? "dropped" : "items");
    json_array_foreach(arr, i, it) {
      const char *op = json_string_value(json_object_get(it, "op"));
      const char *key = json_string_value(json_object_get(it, "key"));
      if (!op || !key || strcmp(op, "delete") != 0 || strncmp(key, prefix, pl) != 0) continue;
      int k = atoi(key + pl);
      cl_pair pr;
      if (k < 0 || k >= nkeys || !cl_json_pair(it, &pr)) continue;
      if (!has[k] || cl_pair_cmp(&pr, &tomb[k]) > 0) tomb[k] = pr;
      has[k] = true;
    }
  }
  json_decref(o);
  return true;
}

static const char *cl_pair_str(const cl_pair *p, char *buf, size_t len) {
  snprintf(buf, len, "(%llu, %s)", (unsigned long long)p->hlc, p->origin);
  return buf;
}

/* Judges one write against the final state of its key (see cl_judge). */
static void cl_judge_one(const cl_write *x, const cl_write *w, size_t n, const cl_state *st,
                         const cl_pair *tomb, const bool *has, const char *const *ids,
                         const char *const *writer_ids, const char *prefix, const char *tag,
                         cl_check_result *res) {
  char a[128], b2[128];
  if (!x->acked) {
    res->unacked++;
    return;
  }
  res->acked_checked++;
  const cl_state *s = &st[x->key];
  const char *what = x->del ? "DELETE" : "PUT";
  if (s->status == 200) {
    int cmp = cl_pair_cmp(&s->pair, &x->pair);
    if (cmp < 0 || (cmp == 0 && (x->del || strcmp(s->value, x->value) != 0))) {
      printf("VIOLATION [%s] acknowledged %s %s%02d '%s' %s on %s; final state on %s: '%s' %s "
             "(%s)\n",
             tag, what, prefix, x->key, x->del ? "" : x->value, cl_pair_str(&x->pair, a, sizeof a),
             writer_ids[x->node], ids[0], s->value, cl_pair_str(&s->pair, b2, sizeof b2),
             cmp < 0  ? "an older pair won"
             : x->del ? "a live value holds the delete's pair"
                      : "same pair, other content");
      res->violations++;
    }
    return;
  }
  if (s->status != 404) return; /* reported above */
  if (x->del) return;           /* deleted: by this delete or a later one */
  /* a put whose key ends absent: a delete with a larger pair must exist */
  if (has && has[x->key]) {
    if (cl_pair_cmp(&tomb[x->key], &x->pair) > 0) {
      res->via_tombstone++;
      return;
    }
    bool acked_cover = false;
    for (size_t j = 0; j < n && !acked_cover; j++)
      acked_cover =
          w[j].key == x->key && w[j].del && w[j].acked && cl_pair_cmp(&w[j].pair, &x->pair) > 0;
    printf("VIOLATION [%s] acknowledged PUT %s%02d '%s' %s on %s; final state: deleted by an "
           "older tombstone %s%s\n",
           tag, prefix, x->key, x->value, cl_pair_str(&x->pair, a, sizeof a), writer_ids[x->node],
           cl_pair_str(&tomb[x->key], b2, sizeof b2),
           acked_cover ? " (an acknowledged delete with a larger pair exists: the snapshot's "
                         "tombstone pair is stale)"
                       : "");
    res->violations++;
    return;
  }
  bool covered = false, unacked_del = false;
  for (size_t j = 0; j < n && !covered; j++) {
    if (w[j].key != x->key || !w[j].del) continue;
    if (!w[j].acked)
      unacked_del = true;
    else if (cl_pair_cmp(&w[j].pair, &x->pair) > 0)
      covered = true;
  }
  if (covered) return;
  if (unacked_del) {
    res->via_unacked_delete++;
    return;
  }
  printf("VIOLATION [%s] acknowledged PUT %s%02d '%s' %s on %s is lost: the key is absent and no "
         "delete with a larger pair exists\n",
         tag, prefix, x->key, x->value, cl_pair_str(&x->pair, a, sizeof a), writer_ids[x->node]);
  res->violations++;
}

/* Prints the acknowledged writes of key k with the largest pairs (at most
 * 8, largest first): what the final state should have been chosen from. */
static void cl_print_history(const cl_write *w, size_t n, int k, const char *const *writer_ids,
                             const char *prefix) {
  const cl_write *top[8];
  int m = 0;
  for (size_t i = 0; i < n; i++) {
    if (w[i].key != k || !w[i].acked) continue;
    int at = m < 8 ? m++ : 8;
    while (at > 0 && cl_pair_cmp(&top[at - 1]->pair, &w[i].pair) < 0) {
      if (at < 8) top[at] = top[at - 1];
      at--;
    }
    if (at < 8) top[at] = &w[i];
  }
  printf("  the acknowledged writes of %s%02d with the largest pairs:\n", prefix, k);
  for (int i = 0; i < m; i++) {
    char a[128];
    printf("    %s %s on %s %s\n", top[i]->del ? "DELETE" : "PUT   ",
           cl_pair_str(&top[i]->pair, a, sizeof a), writer_ids[top[i]->node],
           top[i]->del ? "" : top[i]->value);
  }
}

size_t cl_judge(const cl_state *st, int m, const char *const *ids, const cl_pair *tomb,
                const bool *has, const cl_write *w, size_t n, const char *const *writer_ids,
                int nkeys, const char *prefix, const char *tag, cl_check_result *res) {
  memset(res, 0, sizeof *res);
  char a[128], b2[128];
  bool bad[256] = {false}; /* keys with a violation (the first 256 keys) */
  if (m < 1) {
    printf("VIOLATION [%s] no node is running at the check\n", tag);
    return ++res->violations;
  }
  for (int i = 0; i < m; i++)
    for (int k = 0; k < nkeys; k++) {
      const cl_state *y = &st[i * nkeys + k];
      if (y->status != 200 && y->status != 404) {
        printf("VIOLATION [%s] %s GET %s%02d: status %d (want 200 with hlc and origin, or 404)\n",
               tag, ids[i], prefix, k, y->status);
        res->violations++;
        continue;
      }
      /* every node holds the same state for every key */
      const cl_state *x = &st[k];
      bool same =
          x->status == y->status &&
          (x->status != 200 || (!cl_pair_cmp(&x->pair, &y->pair) && !strcmp(x->value, y->value)));
      if (i > 0 && !same) {
        printf("VIOLATION [%s] key %s%02d differs: %s %d %s '%s', %s %d %s '%s'\n", tag, prefix, k,
               ids[0], x->status, cl_pair_str(&x->pair, a, sizeof a), x->value, ids[i], y->status,
               cl_pair_str(&y->pair, b2, sizeof b2), y->value);
        res->violations++;
      }
    }
  /* a live value's origin is the node it was written on (never re-stamped) */
  for (int k = 0; k < nkeys; k++) {
    const cl_state *s = &st[k];
    if (s->status != 200) continue;
    size_t ol = strlen(s->pair.origin);
    if (strncmp(s->value, s->pair.origin, ol) != 0 || s->value[ol] != '.') {
      printf("VIOLATION [%s] key %s%02d holds '%s' with origin %s: written on another node\n", tag,
             prefix, k, s->value, s->pair.origin);
      res->violations++;
    }
  }
  for (size_t i = 0; i < n; i++) {
    const cl_write *x = &w[i];
    size_t before = res->violations;
    cl_judge_one(x, w, n, st, tomb, has, ids, writer_ids, prefix, tag, res);
    if (res->violations > before && x->key >= 0 && x->key < 256) bad[x->key] = true;
  }
  for (int k = 0; k < nkeys && k < 256; k++)
    if (bad[k]) cl_print_history(w, n, k, writer_ids, prefix);
  fflush(stdout);
  return res->violations;
}

size_t cl_check(cluster *c, const cl_write *w, size_t n, int nkeys, const char *prefix,
                const char *tag, cl_check_result *res) {
  cl_http *h = cl_http_new();
  cl_state *st = calloc((size_t)(c->n * nkeys), sizeof *st);
  cl_pair *tomb = calloc((size_t)nkeys, sizeof *tomb);
  bool *has = calloc((size_t)nkeys, sizeof *has);
  const char *ids[CL_MAX_NODES] = {0}, *wids[CL_MAX_NODES] = {0};
  int m = 0;
  for (int i = 0; i < c->n; i++) {
    wids[i] = c->nodes[i].id;
    if (c->nodes[i].pid <= 0) continue;
    ids[m] = c->nodes[i].id;
    for (int k = 0; k < nkeys; k++) {
      char key[64];
      snprintf(key, sizeof key, "%s%02d", prefix, k);
      cl_get_state(h, c->nodes[i].url, key, &st[m * nkeys + k]);
    }
    if (m == 0) cl_snapshot_tombs(h, c->nodes[i].url, nkeys, prefix, tomb, has);
    m++;
  }
  size_t v = cl_judge(st, m, ids, tomb, has, w, n, wids, nkeys, prefix, tag, res);
  free(st);
  free(tomb);
  free(has);
  cl_http_free(h);
  return v;
}
