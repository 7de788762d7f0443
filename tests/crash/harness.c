/*
 * harness.c -- start/stop the real server and speak HTTP to it (harness.h).
 */
#define _GNU_SOURCE
#include "harness.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static volatile pid_t hs_live_pid; /* the node to kill on exit */

double hs_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void hs_sleep_ms(long ms) {
  struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&t, &t) != 0 && errno == EINTR) {
  }
}

int hs_tmpdir(const char *tag, char *dir, size_t dirlen) {
  const char *base = getenv("TMPDIR");
  if (!base || !*base) base = "/tmp";
  snprintf(dir, dirlen, "%s/sa-%s-XXXXXX", base, tag);
  return mkdtemp(dir) ? 0 : -1;
}

void hs_rmrf(const char *dir) {
  pid_t p = fork();
  if (p == 0) {
    execlp("rm", "rm", "-rf", "--", dir, (char *)NULL);
    _exit(127);
  }
  if (p > 0) waitpid(p, NULL, 0);
}

void hs_server_init(hs_server *s, const char *bin, const char *dir) {
  memset(s, 0, sizeof *s);
  s->bin = bin;
  snprintf(s->data_dir, sizeof s->data_dir, "%s/data", dir);
  snprintf(s->out_path, sizeof s->out_path, "%s/node.out", dir);
  snprintf(s->err_path, sizeof s->err_path, "%s/node.err", dir);
}

void hs_kill_all(void) {
  pid_t p = hs_live_pid;
  if (p > 0) {
    kill(p, SIGKILL);
    waitpid(p, NULL, 0);
    hs_live_pid = 0;
  }
}

int hs_server_spawn(hs_server *s) {
  const char *argv[64];
  int n = 0;
  char *wrap = NULL;
  const char *w = getenv("SA_SERVER_WRAPPER");
  if (w && *w) {
    wrap = strdup(w);
    if (!wrap) return -1;
    char *save = NULL;
    for (char *t = strtok_r(wrap, " ", &save); t && n < 40; t = strtok_r(NULL, " ", &save))
      argv[n++] = t;
  }
  argv[n++] = s->bin;
  argv[n++] = "serve";
  argv[n++] = "--listen";
  argv[n++] = "127.0.0.1:0";
  argv[n++] = "--data-dir";
  argv[n++] = s->data_dir;
  for (int i = 0; i < 7 && s->extra[i]; i++)
    argv[n++] = s->extra[i];
  argv[n] = NULL;
  /* the child's environment, built before fork (no allocation after it) */
  const char *envp[512];
  int ne = 0;
  for (int i = 0; i < HS_ENV_MAX && s->env[i]; i++)
    envp[ne++] = s->env[i];
  for (char **e = environ; *e && ne < 511; e++) {
    bool replaced = false;
    for (int i = 0; i < HS_ENV_MAX && s->env[i] && !replaced; i++) {
      size_t k = strcspn(s->env[i], "=");
      replaced = strncmp(*e, s->env[i], k) == 0 && (*e)[k] == '=';
    }
    if (!replaced) envp[ne++] = *e;
  }
  envp[ne] = NULL;
  s->url[0] = 0;
  s->start_line[0] = 0;
  unlink(s->out_path); /* never read the previous start line */
  pid_t parent = getpid();
  pid_t p = fork();
  if (p < 0) {
    free(wrap);
    return -1;
  }
  if (p == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(126);
    int o = open(s->out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int e = open(s->err_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    int in = open("/dev/null", O_RDONLY);
    if (o < 0 || e < 0 || in < 0) _exit(126);
    dup2(in, 0);
    dup2(o, 1);
    dup2(e, 2);
    execvpe(argv[0], (char *const *)argv, (char *const *)envp);
    _exit(127);
  }
  free(wrap);
  s->pid = p;
  hs_live_pid = p;
  return 0;
}

/* Looks for the start line in the node's stdout. */
static bool hs_find_url(hs_server *s) {
  FILE *f = fopen(s->out_path, "r");
  if (!f) return false;
  char line[1024];
  bool found = false;
  while (!found && fgets(line, sizeof line, f)) {
    if (!strchr(line, '\n')) continue; /* not whole yet */
    const char *u = strstr(line, "listening on http://127.0.0.1:");
    if (!u) continue;
    u += strlen("listening on ");
    int port = atoi(u + strlen("http://127.0.0.1:"));
    if (port <= 0) continue;
    snprintf(s->url, sizeof s->url, "http://127.0.0.1:%d", port);
    snprintf(s->start_line, sizeof s->start_line, "%s", line);
    s->start_line[strcspn(s->start_line, "\n")] = 0;
    found = true;
  }
  fclose(f);
  return found;
}

int hs_server_start(hs_server *s, int *status) {
  if (status) *status = -1;
  if (hs_server_spawn(s) != 0) return -1;
  double t0 = hs_now();
  while ((hs_now() - t0) * 1000 < HS_START_WAIT_MS) {
    if (hs_find_url(s)) return 0;
    int st;
    pid_t r = waitpid(s->pid, &st, WNOHANG);
    if (r == s->pid) {
      if (hs_find_url(s)) { /* printed, then died: report it as an exit */
        s->url[0] = 0;
      }
      s->pid = 0;
      hs_live_pid = 0;
      if (status) *status = st;
      return -1;
    }
    hs_sleep_ms(5);
  }
  hs_server_stop(s, SIGKILL);
  return -1;
}

int hs_server_stop(hs_server *s, int sig) {
  if (s->pid <= 0) return -1;
  kill(s->pid, sig);
  int st = -1;
  double t0 = hs_now();
  for (;;) {
    pid_t r = waitpid(s->pid, &st, WNOHANG);
    if (r == s->pid) break;
    if (r < 0 && errno != EINTR) break;
    if ((hs_now() - t0) * 1000 > HS_START_WAIT_MS) {
      kill(s->pid, SIGKILL);
      waitpid(s->pid, &st, 0);
      st = -1;
      break;
    }
    hs_sleep_ms(2);
  }
  s->pid = 0;
  hs_live_pid = 0;
  return st;
}

const char *hs_status_str(int status, char *buf, size_t len) {
  if (status == -1)
    snprintf(buf, len, "no exit (killed after the wait)");
  else if (WIFEXITED(status))
    snprintf(buf, len, "exit %d", WEXITSTATUS(status));
  else if (WIFSIGNALED(status))
    snprintf(buf, len, "signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
  else
    snprintf(buf, len, "status %#x", (unsigned)status);
  return buf;
}

void hs_dump_log(const hs_server *s, const char *why, size_t max_bytes) {
  printf("---- node stderr (%s): %s\n", why, s->err_path);
  FILE *f = fopen(s->err_path, "rb");
  if (!f) {
    printf("(cannot open it)\n");
  } else {
    long size = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (size > (long)max_bytes) {
      fseek(f, size - (long)max_bytes, SEEK_SET);
      printf("(... the first %ld bytes left out)\n", size - (long)max_bytes);
    } else {
      fseek(f, 0, SEEK_SET);
    }
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
      fwrite(buf, 1, n, stdout);
    fclose(f);
  }
  printf("---- end of node stderr\n");
  fflush(stdout);
}

long hs_rss_kib(pid_t pid) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  long kib = -1;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "VmRSS:", 6) == 0) kib = strtol(line + 6, NULL, 10);
  fclose(f);
  return kib;
}

/* ---- HTTP ------------------------------------------------------------------ */

struct hs_conn {
  CURL *curl;
  char *buf;
  size_t len, cap;
};

static size_t hs_write_cb(char *p, size_t sz, size_t nm, void *ud) {
  hs_conn *c = ud;
  size_t n = sz * nm;
  if (c->len + n + 1 > c->cap) {
    size_t cap = c->cap ? c->cap : 4096;
    while (cap < c->len + n + 1)
      cap *= 2;
    char *b = realloc(c->buf, cap);
    if (!b) return 0;
    c->buf = b;
    c->cap = cap;
  }
  memcpy(c->buf + c->len, p, n);
  c->len += n;
  c->buf[c->len] = 0;
  return n;
}

hs_conn *hs_conn_new(void) {
  hs_conn *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->curl = curl_easy_init();
  if (!c->curl) {
    free(c);
    return NULL;
  }
  return c;
}

void hs_conn_free(hs_conn *c) {
  if (!c) return;
  curl_easy_cleanup(c->curl);
  free(c->buf);
  free(c);
}

int hs_http(hs_conn *c, const char *method, const char *base, const char *path, const char *body,
            size_t body_len, const char *content_type, long timeout_ms, hs_resp *r) {
  char url[4096];
  snprintf(url, sizeof url, "%s%s", base, path);
  c->len = 0;
  if (c->buf) c->buf[0] = 0;
  CURL *h = c->curl;
  curl_easy_reset(h);
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, hs_write_cb);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, c);
  curl_easy_setopt(h, CURLOPT_PROXY, "");
  struct curl_slist *hdrs = NULL;
  if (content_type) {
    char ct[128];
    snprintf(ct, sizeof ct, "Content-Type: %s", content_type);
    hdrs = curl_slist_append(hdrs, ct);
  }
  hdrs = curl_slist_append(hdrs, "Expect:");
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
  if (strcmp(method, "GET") != 0) curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
  if (body || strcmp(method, "PUT") == 0 || strcmp(method, "POST") == 0) {
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body ? body : "");
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
  }
  CURLcode rc = curl_easy_perform(h);
  curl_slist_free_all(hdrs);
  r->status = 0;
  r->error[0] = 0;
  r->body = c->buf ? c->buf : (char *)"";
  r->len = c->len;
  if (rc != CURLE_OK) {
    snprintf(r->error, sizeof r->error, "%s", curl_easy_strerror(rc));
    return -1;
  }
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
  return 0;
}

char *hs_pct_encode(const char *s) {
  size_t n = strlen(s);
  char *o = malloc(3 * n + 1), *p = o;
  if (!o) return NULL;
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
        strchr("-._~/", ch))
      *p++ = (char)ch;
    else
      p += sprintf(p, "%%%02X", ch);
  }
  *p = 0;
  return o;
}
