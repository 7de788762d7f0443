/*
 * e2e_util.c -- helpers of the end-to-end tests (see e2e_util.h).
 */
#define _GNU_SOURCE
#include "e2e_util.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

const char *e2e_bin(void) {
  return SA_BIN;
}

const char *e2e_source_dir(void) {
  return SA_SOURCE_DIR;
}

bool e2e_slow(void) {
  const char *s = getenv("SA_TEST_SLOW");
  return s && *s && strcmp(s, "0") != 0;
}

int e2e_wait_ms(void) {
  return e2e_slow() ? 120000 : 20000;
}

long long e2e_now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

void e2e_nap_ms(int ms) {
  struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&t, NULL);
}

/* The kernel may hand the same free port out twice in a row when nothing
 * holds it between the two calls (two nodes of one test got one port once
 * in CI): a port given out in the last 64 calls is asked for again. */
int e2e_free_port(int type) {
  static int given[64];
  static unsigned ngiven;
  for (int tries = 0;; tries++) {
    int fd = socket(AF_INET, type, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t l = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &l) != 0) {
      perror("e2e_free_port");
      abort();
    }
    close(fd);
    int port = ntohs(a.sin_port);
    bool seen = false;
    for (unsigned i = 0; i < ngiven && i < 64 && !seen; i++)
      seen = given[i] == port;
    if (seen && tries < 100) continue;
    given[ngiven++ % 64] = port;
    return port;
  }
}

void e2e_node_init(e2e_node *n) {
  memset(n, 0, sizeof *n);
  snprintf(n->dir, sizeof n->dir, "/tmp/sa-e2e-XXXXXX");
  if (!mkdtemp(n->dir)) {
    perror("mkdtemp");
    abort();
  }
  snprintf(n->data_dir, sizeof n->data_dir, "%s/data", n->dir);
  snprintf(n->log, sizeof n->log, "%s/serve.log", n->dir);
  snprintf(n->out, sizeof n->out, "%s/serve.out", n->dir);
}

char *e2e_read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  char *buf = NULL;
  size_t n = 0, cap = 0;
  for (;;) {
    if (n + 4096 + 1 > cap) {
      cap = (n + 4096 + 1) * 2;
      char *nb = realloc(buf, cap);
      if (!nb) break;
      buf = nb;
    }
    size_t r = fread(buf + n, 1, cap - n - 1, f);
    n += r;
    if (r == 0) break;
  }
  fclose(f);
  if (buf) buf[n] = '\0';
  if (len) *len = n;
  return buf;
}

int e2e_node_start(e2e_node *n, const char *const *args, const char *const *env, int *exit_code) {
  if (exit_code) *exit_code = -1;
  const char *argv[64];
  int a = 0;
  argv[a++] = e2e_bin();
  argv[a++] = "serve";
  argv[a++] = "--listen";
  argv[a++] = "127.0.0.1:0";
  argv[a++] = "--data-dir";
  argv[a++] = n->data_dir;
  for (int i = 0; args && args[i] && a < 62; i++)
    argv[a++] = args[i];
  argv[a] = NULL;
  unlink(n->out);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    /* The node dies with the test: a failed assertion skips the test's own
     * stop (CK_NOFORK suites longjmp past it), and a leaked node would hold
     * its port and data directory after the run. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) _exit(127);
    int out = open(n->out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int err = open(n->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (out < 0 || err < 0) _exit(127);
    dup2(out, 1);
    dup2(err, 2);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    /* A neutral environment for the settings under test, plus env. */
    char names[64][64];
    int nn = 0;
    for (char **e = environ; e && *e && nn < 64; e++) {
      size_t k = strcspn(*e, "=");
      if (!strncmp(*e, "SOFTADASTRA_", 12) && k < sizeof names[0]) {
        memcpy(names[nn], *e, k);
        names[nn++][k] = '\0';
      }
    }
    for (int i = 0; i < nn; i++)
      unsetenv(names[i]);
    for (int i = 0; env && env[i]; i++)
      putenv((char *)env[i]);
    execv(argv[0], (char *const *)argv);
    _exit(127);
  }
  n->pid = pid;
  long long deadline = e2e_now_ms() + E2E_WAIT_MS;
  while (e2e_now_ms() < deadline) {
    char *s = e2e_read_file(n->out, NULL);
    const char *p = s ? strstr(s, "listening on http://127.0.0.1:") : NULL;
    if (p && strchr(p, '\n')) {
      n->port = atoi(p + strlen("listening on http://127.0.0.1:"));
      snprintf(n->url, sizeof n->url, "http://127.0.0.1:%d", n->port);
      free(s);
      return n->port > 0 ? 0 : -1;
    }
    free(s);
    int st;
    pid_t w = waitpid(pid, &st, WNOHANG);
    if (w == pid) {
      n->pid = 0;
      if (exit_code) *exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      return -1;
    }
    struct timespec nap = {0, 10 * 1000 * 1000};
    nanosleep(&nap, NULL);
  }
  e2e_node_stop(n, SIGKILL);
  return -1;
}

int e2e_node_stop(e2e_node *n, int sig) {
  if (n->pid <= 0) return -1;
  kill(n->pid, sig);
  long long deadline = e2e_now_ms() + E2E_WAIT_MS;
  int st = 0;
  for (;;) {
    pid_t w = waitpid(n->pid, &st, WNOHANG);
    if (w == n->pid) break;
    if (e2e_now_ms() > deadline) {
      kill(n->pid, SIGKILL);
      waitpid(n->pid, &st, 0);
      n->pid = 0;
      if (sig != SIGKILL) e2e_node_dump_log(n, "no exit after the wait: killed");
      return -1;
    }
    struct timespec nap = {0, 5 * 1000 * 1000};
    nanosleep(&nap, NULL);
  }
  n->pid = 0;
  int rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  /* A graceful stop that fails shows why (a sanitizer report, a panic). */
  if (sig != SIGKILL && rc != 0) e2e_node_dump_log(n, "graceful stop failed");
  return rc;
}

void e2e_node_dump_log(const e2e_node *n, const char *why) {
  char *log = e2e_read_file(n->log, NULL);
  fprintf(stderr, "---- node log (%s): %s\n%s---- end of node log\n", why, n->log,
          log ? log : "(unreadable)\n");
  free(log);
}

void e2e_node_cleanup(e2e_node *n) {
  if (n->pid > 0) e2e_node_stop(n, SIGKILL);
  if (strncmp(n->dir, "/tmp/sa-e2e-", 12) == 0) {
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", n->dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", n->dir);
  }
}

typedef struct e2e_buf {
  char *p;
  size_t n;
} e2e_buf;

static size_t e2e_sink(char *ptr, size_t size, size_t nmemb, void *ud) {
  e2e_buf *b = ud;
  size_t k = size * nmemb;
  char *np = realloc(b->p, b->n + k + 1);
  if (!np) return 0;
  memcpy(np + b->n, ptr, k);
  b->p = np;
  b->n += k;
  b->p[b->n] = '\0';
  return k;
}

int e2e_http(const e2e_node *n, const char *method, const char *path, const char *const *headers,
             const char *body, size_t body_len, e2e_resp *resp) {
  memset(resp, 0, sizeof *resp);
  CURL *c = curl_easy_init();
  if (!c) return -1;
  char url[8192];
  snprintf(url, sizeof url, "%s%s", n->url, path);
  struct curl_slist *h = curl_slist_append(NULL, "Expect:");
  for (int i = 0; headers && headers[i]; i++)
    h = curl_slist_append(h, headers[i]);
  e2e_buf b = {0}, hb = {0};
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
  if (!strcmp(method, "HEAD"))
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  else
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, e2e_sink);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, e2e_sink);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &hb);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)E2E_WAIT_MS);
  if (body) {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
  }
  CURLcode rc = curl_easy_perform(c);
  if (rc == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp->status);
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
  resp->body = b.p ? b.p : calloc(1, 1);
  resp->len = b.n;
  resp->headers = hb.p ? hb.p : calloc(1, 1);
  return rc == CURLE_OK ? 0 : -1;
}

char *e2e_header(const e2e_resp *r, const char *name) {
  size_t nl = strlen(name);
  const char *p = r->headers;
  while (p && *p) {
    const char *e = strstr(p, "\r\n");
    size_t ll = e ? (size_t)(e - p) : strlen(p);
    if (ll > nl && p[nl] == ':' && strncasecmp(p, name, nl) == 0) {
      const char *v = p + nl + 1;
      while (*v == ' ')
        v++;
      return strndup(v, (size_t)(p + ll - v));
    }
    if (!e) break;
    p = e + 2;
  }
  return NULL;
}

void e2e_resp_free(e2e_resp *r) {
  free(r->body);
  free(r->headers);
  memset(r, 0, sizeof *r);
}

/* Connects to the node; returns the socket or -1. */
static int e2e_connect(const e2e_node *n) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)n->port)};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static void e2e_send_all(int fd, const char *p, size_t len) {
  size_t off = 0;
  while (off < len) {
    ssize_t w = send(fd, p + off, len - off, MSG_NOSIGNAL);
    if (w <= 0) break; /* the node may answer and close before reading it all */
    off += (size_t)w;
  }
}

/* Reads until the peer closes or timeout_ms; returns the status or 0. */
static int e2e_read_answer(int fd, int timeout_ms, char *out, size_t outlen) {
  char buf[65536];
  size_t got = 0;
  long long deadline = e2e_now_ms() + timeout_ms;
  for (;;) {
    long long left = deadline - e2e_now_ms();
    if (left <= 0) break;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, (int)left) <= 0) break;
    ssize_t r = recv(fd, buf + got, sizeof buf - 1 - got, 0);
    if (r <= 0) break;
    got += (size_t)r;
    if (got >= sizeof buf - 1) break;
  }
  close(fd);
  buf[got] = '\0';
  if (out && outlen) {
    size_t k = got < outlen - 1 ? got : outlen - 1;
    memcpy(out, buf, k);
    out[k] = '\0';
  }
  if (got < 12 || strncmp(buf, "HTTP/1.", 7) != 0) return 0;
  return atoi(buf + 9);
}

int e2e_raw(const e2e_node *n, const char *req, size_t len, bool shut_wr, int timeout_ms, char *out,
            size_t outlen) {
  int fd = e2e_connect(n);
  if (fd < 0) return -1;
  e2e_send_all(fd, req, len);
  if (shut_wr) shutdown(fd, SHUT_WR);
  return e2e_read_answer(fd, timeout_ms, out, outlen);
}

int e2e_raw_parts(const e2e_node *n, const char *const *parts, int nparts, int pause_ms,
                  int timeout_ms, char *out, size_t outlen) {
  int fd = e2e_connect(n);
  if (fd < 0) return -1;
  for (int i = 0; i < nparts; i++) {
    if (i > 0) {
      struct timespec nap = {pause_ms / 1000, (long)(pause_ms % 1000) * 1000000L};
      nanosleep(&nap, NULL);
    }
    e2e_send_all(fd, parts[i], strlen(parts[i]));
  }
  return e2e_read_answer(fd, timeout_ms, out, outlen);
}

static char *e2e_slurp_fd(int fd) {
  e2e_buf b = {0};
  char tmp[4096];
  ssize_t r;
  while ((r = read(fd, tmp, sizeof tmp)) > 0)
    e2e_sink(tmp, 1, (size_t)r, &b);
  return b.p ? b.p : calloc(1, 1);
}

int e2e_cli(const e2e_node *n, const char *const *args, const char *stdin_data, char **out,
            char **err) {
  char tmpl_o[] = "/tmp/sa-cli-out-XXXXXX", tmpl_e[] = "/tmp/sa-cli-err-XXXXXX",
       tmpl_i[] = "/tmp/sa-cli-in-XXXXXX";
  int fo = mkstemp(tmpl_o), fe = mkstemp(tmpl_e), fi = mkstemp(tmpl_i);
  if (fo < 0 || fe < 0 || fi < 0) return -1;
  if (stdin_data && write(fi, stdin_data, strlen(stdin_data)) < 0) return -1;
  lseek(fi, 0, SEEK_SET);
  const char *argv[32];
  int a = 0;
  argv[a++] = e2e_bin();
  for (int i = 0; args[i] && a < 31; i++)
    argv[a++] = args[i];
  argv[a] = NULL;
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fi, 0);
    dup2(fo, 1);
    dup2(fe, 2);
    unsetenv("SOFTADASTRA_TOKEN");
    if (n)
      setenv("SOFTADASTRA_URL", n->url, 1);
    else
      unsetenv("SOFTADASTRA_URL");
    execv(argv[0], (char *const *)argv);
    _exit(127);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  lseek(fo, 0, SEEK_SET);
  lseek(fe, 0, SEEK_SET);
  char *o = e2e_slurp_fd(fo), *e = e2e_slurp_fd(fe);
  close(fo);
  close(fe);
  close(fi);
  unlink(tmpl_o);
  unlink(tmpl_e);
  unlink(tmpl_i);
  if (out)
    *out = o;
  else
    free(o);
  if (err)
    *err = e;
  else
    free(e);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ---- requests of the tests ------------------------------------------------- */

long e2e_req(const e2e_node *n, const char *method, const char *path, const char *body,
             const char *token, json_t **out) {
  char auth[160];
  const char *hdrs[3] = {NULL, NULL, NULL};
  int k = 0;
  if (token) {
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
    hdrs[k++] = auth;
  }
  if (body && !strcmp(method, "POST")) hdrs[k++] = "Content-Type: application/json";
  if (out) *out = NULL;
  e2e_resp r;
  if (e2e_http(n, method, path, hdrs, body, body ? strlen(body) : 0, &r) != 0) {
    e2e_resp_free(&r);
    return 0;
  }
  long st = r.status;
  if (out) *out = json_loadb(r.body ? r.body : "", r.len, 0, NULL);
  e2e_resp_free(&r);
  return st;
}

long e2e_get_raw(const e2e_node *n, const char *key, const char *token, char *buf, size_t len) {
  char path[512], auth[160];
  snprintf(path, sizeof path, "/v1/store/%s?raw=1", key);
  const char *hdrs[2] = {NULL, NULL};
  if (token) {
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
    hdrs[0] = auth;
  }
  e2e_resp r;
  long st = e2e_http(n, "GET", path, hdrs, NULL, 0, &r) == 0 ? r.status : 0;
  snprintf(buf, len, "%s", st && r.body ? r.body : "");
  e2e_resp_free(&r);
  return st;
}

char *e2e_raw_type(const e2e_node *n, const char *key) {
  char path[512];
  snprintf(path, sizeof path, "/v1/store/%s?raw=1", key);
  e2e_resp r;
  char *ct = NULL;
  if (e2e_http(n, "GET", path, NULL, NULL, 0, &r) == 0 && r.status == 200)
    ct = e2e_header(&r, "Content-Type");
  e2e_resp_free(&r);
  return ct;
}

long long e2e_wait_value(const e2e_node *n, const char *key, const char *value, const char *token,
                         int ms) {
  long long t0 = e2e_now_ms();
  while (e2e_now_ms() - t0 < ms) {
    char buf[4096];
    long st = e2e_get_raw(n, key, token, buf, sizeof buf);
    if (value ? (st == 200 && strcmp(buf, value) == 0) : st == 404) return e2e_now_ms() - t0;
    e2e_nap_ms(10);
  }
  return -1;
}

char *e2e_digest(const e2e_node *n, long long *keys) {
  json_t *j = NULL;
  char *d = NULL;
  if (e2e_req(n, "GET", "/v1/sync/digest", NULL, NULL, &j) == 200 &&
      json_is_string(json_object_get(j, "digest"))) {
    d = strdup(json_string_value(json_object_get(j, "digest")));
    if (keys) *keys = json_integer_value(json_object_get(j, "keys"));
  }
  json_decref(j);
  return d;
}

long long e2e_wait_converged(e2e_node *const *ns, int count, int ms) {
  long long t0 = e2e_now_ms();
  while (e2e_now_ms() - t0 < ms) {
    char *d0 = e2e_digest(ns[0], NULL);
    bool same = d0 != NULL;
    for (int i = 1; same && i < count; i++) {
      char *d = e2e_digest(ns[i], NULL);
      same = d && !strcmp(d, d0);
      free(d);
    }
    free(d0);
    if (same) return e2e_now_ms() - t0;
    e2e_nap_ms(50);
  }
  return -1;
}

long long e2e_metric(const e2e_node *n, const char *name, const char *token) {
  char auth[160];
  const char *hdrs[2] = {NULL, NULL};
  if (token) {
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
    hdrs[0] = auth;
  }
  e2e_resp r;
  long long v = -1;
  if (e2e_http(n, "GET", "/metrics", hdrs, NULL, 0, &r) == 0 && r.status == 200 && r.body) {
    size_t nl = strlen(name);
    for (const char *p = r.body; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
      if (!strncmp(p, name, nl) && p[nl] == ' ') {
        v = atoll(p + nl + 1);
        break;
      }
  }
  e2e_resp_free(&r);
  return v;
}
