/*
 * test_e2e_node.c -- the node process end to end: restart recovery through
 * the API (SIGTERM and kill -9), graceful shutdown under load losing no
 * acknowledged write, configuration precedence and rejection, a second
 * start on the same data, the data directory, --no-auto-flush, --help.
 */
#define _GNU_SOURCE
#include <check.h>
#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "e2e_util.h"
#include "softadastra.h"

static json_t *get_json(const e2e_node *n, const char *path, long *status) {
  e2e_resp r;
  ck_assert_int_eq(e2e_http(n, "GET", path, NULL, NULL, 0, &r), 0);
  *status = r.status;
  json_t *j = json_loadb(r.body, r.len, 0, NULL);
  e2e_resp_free(&r);
  return j;
}

static long put(const e2e_node *n, const char *key, const char *value) {
  char path[512];
  snprintf(path, sizeof path, "/v1/store/%s", key);
  e2e_resp r;
  if (e2e_http(n, "PUT", path, NULL, value, strlen(value), &r) != 0) {
    e2e_resp_free(&r);
    return 0;
  }
  long st = r.status;
  e2e_resp_free(&r);
  return st;
}

/* Asserts key holds value on n. */
static void expect_value(const e2e_node *n, const char *key, const char *value) {
  char path[512];
  snprintf(path, sizeof path, "/v1/store/%s?raw=1", key);
  e2e_resp r;
  ck_assert_int_eq(e2e_http(n, "GET", path, NULL, NULL, 0, &r), 0);
  ck_assert_msg(r.status == 200, "%s: status %ld", key, r.status);
  ck_assert_msg(!strcmp(r.body, value), "%s: %s, want %s", key, r.body, value);
  e2e_resp_free(&r);
}

START_TEST(test_restart_recovers_values) {
  e2e_node n;
  e2e_node_init(&n);
  ck_assert_int_eq(e2e_node_start(&n, NULL, NULL, NULL), 0);
  ck_assert_int_eq(put(&n, "app/name", "Softadastra"), 201);
  ck_assert_int_eq(put(&n, "settings/theme", "dark"), 201);
  ck_assert_int_eq(put(&n, "settings/theme", "light"), 200);
  ck_assert_int_eq(e2e_node_stop(&n, SIGTERM), 0);
  char *log = e2e_read_file(n.log, NULL);
  ck_assert_ptr_nonnull(strstr(log, "event=shutdown"));
  ck_assert_ptr_nonnull(strstr(log, "event=stopped"));
  free(log);

  ck_assert_int_eq(e2e_node_start(&n, NULL, NULL, NULL), 0);
  /* a clean stop left the store holding every record: the start line says
   * so instead of a bare "0 replayed" (issue 25 item 11) */
  char *line = e2e_read_file(n.out, NULL);
  ck_assert_ptr_nonnull(line);
  ck_assert_msg(strstr(line, "recovery: 3 records scanned, 0 replayed, 0 torn bytes cut; the store "
                             "already held them all\n") != NULL,
                "%s", line);
  free(line);
  expect_value(&n, "app/name", "Softadastra");
  expect_value(&n, "settings/theme", "light");
  long st;
  json_t *j = get_json(&n, "/v1/store/settings/theme", &st);
  ck_assert_int_eq(json_integer_value(json_object_get(j, "version")), 2);
  json_decref(j);

  /* kill -9: every acknowledged write is back. */
  for (int i = 0; i < 50; i++) {
    char k[32], v[32];
    snprintf(k, sizeof k, "crash/%02d", i);
    snprintf(v, sizeof v, "value-%d", i);
    ck_assert_int_eq(put(&n, k, v), 201);
  }
  ck_assert_int_eq(e2e_node_stop(&n, SIGKILL), 128 + SIGKILL);
  ck_assert_int_eq(e2e_node_start(&n, NULL, NULL, NULL), 0);
  char *out = e2e_read_file(n.out, NULL);
  ck_assert_ptr_nonnull(strstr(out, "recovery: "));
  ck_assert_ptr_nonnull(strstr(out, "node-1.wal"));
  free(out);
  for (int i = 0; i < 50; i++) {
    char k[32], v[32];
    snprintf(k, sizeof k, "crash/%02d", i);
    snprintf(v, sizeof v, "value-%d", i);
    expect_value(&n, k, v);
  }
  expect_value(&n, "app/name", "Softadastra");
  ck_assert_int_eq(e2e_node_stop(&n, SIGTERM), 0);

  /* A torn tail (an interrupted append) is cut, kept aside and reported in
   * the start-up line; every acknowledged value is still there.  An append
   * lands where the records end, in the zero-filled free space. */
  char wal[400];
  snprintf(wal, sizeof wal, "%s/node-1.wal", n.data_dir);
  sa_wal_report rep;
  ck_assert_int_eq(sa_wal_scan(wal, NULL, NULL, &rep, NULL), SA_OK);
  ck_assert_int_eq(rep.state, SA_WAL_CLEAN);
  FILE *f = fopen(wal, "r+b");
  ck_assert_ptr_nonnull(f);
  ck_assert_int_eq(fseeko(f, (off_t)rep.data_bytes, SEEK_SET), 0);
  ck_assert_int_eq(fwrite("\x5a\x5a\x5a\x5a\x5a\x5a\x5a", 1, 7, f), 7);
  fclose(f);
  ck_assert_int_eq(e2e_node_start(&n, NULL, NULL, NULL), 0);
  out = e2e_read_file(n.out, NULL);
  ck_assert_msg(strstr(out, ", 7 torn bytes cut (kept in "), "start-up line: %s", out);
  free(out);
  expect_value(&n, "crash/49", "value-49");
  ck_assert_int_eq(e2e_node_stop(&n, SIGTERM), 0);
  e2e_node_cleanup(&n);
}
END_TEST

/* ---- graceful shutdown under load ----------------------------------- */

#define LOAD_THREADS 4
#define LOAD_MAX_PER_THREAD 3000 /* bound on requests per writer */
#define LOAD_ACKS_BEFORE_TERM 200

typedef struct load_arg {
  const e2e_node *n;
  int id;
  unsigned char acked[LOAD_MAX_PER_THREAD];
  int sent;
} load_arg;

static atomic_int load_acks;

static void *load_writer(void *p) {
  load_arg *a = p;
  for (int i = 0; i < LOAD_MAX_PER_THREAD; i++) {
    char k[64], v[64];
    snprintf(k, sizeof k, "load/t%d/%05d", a->id, i);
    snprintf(v, sizeof v, "v%d-%d", a->id, i);
    long st = put(a->n, k, v);
    a->sent = i + 1;
    if (st == 201 || st == 200) {
      a->acked[i] = 1;
      atomic_fetch_add(&load_acks, 1);
    } else {
      break; /* refused, reset, or 503 while draining: the node is going */
    }
  }
  return NULL;
}

START_TEST(test_sigterm_under_load_loses_no_ack) {
  e2e_node n;
  e2e_node_init(&n);
  ck_assert_int_eq(e2e_node_start(&n, NULL, NULL, NULL), 0);
  atomic_store(&load_acks, 0);
  static load_arg args[LOAD_THREADS];
  pthread_t th[LOAD_THREADS];
  for (int t = 0; t < LOAD_THREADS; t++) {
    memset(&args[t], 0, sizeof args[t]);
    args[t].n = &n;
    args[t].id = t;
    ck_assert_int_eq(pthread_create(&th[t], NULL, load_writer, &args[t]), 0);
  }
  /* Wait (bounded by count, not by a timed assertion) for some acks. */
  for (int spins = 0; spins < 20000 && atomic_load(&load_acks) < LOAD_ACKS_BEFORE_TERM; spins++) {
    struct timespec nap = {0, 1000 * 1000};
    nanosleep(&nap, NULL);
  }
  int rc = e2e_node_stop(&n, SIGTERM);
  for (int t = 0; t < LOAD_THREADS; t++)
    pthread_join(th[t], NULL);
  ck_assert_msg(rc == 0, "serve exited %d after SIGTERM under load", rc);
  int acked = atomic_load(&load_acks);
  ck_assert_int_gt(acked, 0);

  ck_assert_int_eq(e2e_node_start(&n, NULL, NULL, NULL), 0);
  int checked = 0;
  for (int t = 0; t < LOAD_THREADS; t++) {
    for (int i = 0; i < args[t].sent; i++) {
      if (!args[t].acked[i]) continue;
      char k[64], v[64];
      snprintf(k, sizeof k, "load/t%d/%05d", t, i);
      snprintf(v, sizeof v, "v%d-%d", t, i);
      expect_value(&n, k, v);
      checked++;
    }
  }
  ck_assert_int_eq(checked, acked);
  fprintf(stderr, "shutdown under load: %d acknowledged writes, all recovered\n", acked);
  ck_assert_int_eq(e2e_node_stop(&n, SIGTERM), 0);
  e2e_node_cleanup(&n);
}
END_TEST

/* A request in flight when SIGTERM arrives is finished and answered: the
 * client waits for "100 Continue" (so the node has the request), the signal
 * is sent and seen in the log, then the body completes. */
START_TEST(test_sigterm_finishes_in_flight) {
  e2e_node n;
  e2e_node_init(&n);
  ck_assert_int_eq(e2e_node_start(&n, NULL, NULL, NULL), 0);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)n.port)};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
  const char *head = "PUT /v1/store/inflight HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n"
                     "Expect: 100-continue\r\n\r\n";
  ck_assert_int_eq(send(fd, head, strlen(head), MSG_NOSIGNAL), (ssize_t)strlen(head));
  char buf[2048] = "";
  size_t got = 0;
  struct pollfd p = {.fd = fd, .events = POLLIN};
  while (!strstr(buf, "\r\n\r\n") && got < sizeof buf - 1 && poll(&p, 1, E2E_WAIT_MS) > 0) {
    ssize_t r = recv(fd, buf + got, sizeof buf - 1 - got, 0);
    if (r <= 0) break;
    got += (size_t)r;
    buf[got] = '\0';
  }
  buf[got] = '\0';
  ck_assert_msg(strstr(buf, "100 Continue"), "no 100 Continue: %s", buf);
  ck_assert_int_eq(kill(n.pid, SIGTERM), 0);
  char *log = NULL;
  for (int i = 0; i < E2E_WAIT_MS / 5; i++) { /* bounded by count: up to E2E_WAIT_MS */
    free(log);
    log = e2e_read_file(n.log, NULL);
    if (log && strstr(log, "event=shutdown")) break;
    struct timespec nap = {0, 5 * 1000 * 1000};
    nanosleep(&nap, NULL);
  }
  ck_assert_ptr_nonnull(strstr(log, "event=shutdown signal=SIGTERM active=1"));
  free(log);
  ck_assert_int_eq(send(fd, "0123456789", 10, MSG_NOSIGNAL), 10);
  got = 0;
  while (got < sizeof buf - 1 && poll(&p, 1, E2E_WAIT_MS) > 0) {
    ssize_t r = recv(fd, buf + got, sizeof buf - 1 - got, 0);
    if (r <= 0) break;
    got += (size_t)r;
  }
  buf[got] = '\0';
  close(fd);
  ck_assert_msg(strstr(buf, "HTTP/1.1 201"), "in-flight PUT got: %s", buf);
  ck_assert_msg(strstr(buf, "Connection: close"), "no Connection: close: %s", buf);
  ck_assert_int_eq(e2e_node_stop(&n, SIGTERM), 0); /* already exiting: just reap it */
  ck_assert_int_eq(e2e_node_start(&n, NULL, NULL, NULL), 0);
  expect_value(&n, "inflight", "0123456789");
  ck_assert_int_eq(e2e_node_stop(&n, SIGTERM), 0);
  e2e_node_cleanup(&n);
}
END_TEST

/* A client that never finishes its request does not hold the shutdown
 * beyond shutdown_timeout_s: the node logs it and still exits 0. */
START_TEST(test_shutdown_timeout) {
  e2e_node n;
  e2e_node_init(&n);
  const char *args[] = {"--shutdown-timeout-s", "1", NULL};
  ck_assert_int_eq(e2e_node_start(&n, args, NULL, NULL), 0);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)n.port)};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
  const char *head = "PUT /v1/store/never HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n"
                     "Expect: 100-continue\r\n\r\n";
  ck_assert_int_eq(send(fd, head, strlen(head), MSG_NOSIGNAL), (ssize_t)strlen(head));
  char buf[512] = "";
  struct pollfd p = {.fd = fd, .events = POLLIN};
  ck_assert_int_eq(poll(&p, 1, E2E_WAIT_MS), 1);
  ck_assert_int_gt(recv(fd, buf, sizeof buf - 1, 0), 0);
  ck_assert_ptr_nonnull(strstr(buf, "100 Continue"));
  ck_assert_int_eq(e2e_node_stop(&n, SIGTERM), 0);
  close(fd);
  char *log = e2e_read_file(n.log, NULL);
  ck_assert_ptr_nonnull(strstr(log, "event=drain_timeout active=1"));
  ck_assert_ptr_nonnull(strstr(log, "event=stopped"));
  free(log);
  ck_assert_int_eq(e2e_node_start(&n, NULL, NULL, NULL), 0);
  e2e_resp r;
  ck_assert_int_eq(e2e_http(&n, "GET", "/v1/store/never", NULL, NULL, 0, &r), 0);
  ck_assert_int_eq(r.status, 404);
  e2e_resp_free(&r);
  ck_assert_int_eq(e2e_node_stop(&n, SIGTERM), 0);
  e2e_node_cleanup(&n);
}
END_TEST

/* ---- configuration ----------------------------------------------------- */

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  ck_assert_ptr_nonnull(f);
  fputs(text, f);
  fclose(f);
}

static void expect_node_id(const char *const *args, const char *const *env, const char *want) {
  e2e_node n;
  e2e_node_init(&n);
  int code;
  ck_assert_int_eq(e2e_node_start(&n, args, env, &code), 0);
  long st;
  json_t *j = get_json(&n, "/v1/status", &st);
  ck_assert_int_eq(st, 200);
  ck_assert_str_eq(json_string_value(json_object_get(j, "node_id")), want);
  json_decref(j);
  ck_assert_int_eq(e2e_node_stop(&n, SIGTERM), 0);
  e2e_node_cleanup(&n);
}

/* Starts with args/env and expects a refusal: exit code and a message. */
static void expect_refused(const char *const *args, const char *const *env, int want_code,
                           const char *want_msg) {
  e2e_node n;
  e2e_node_init(&n);
  int code = -1;
  ck_assert_int_eq(e2e_node_start(&n, args, env, &code), -1);
  ck_assert_int_eq(code, want_code);
  char *log = e2e_read_file(n.log, NULL);
  ck_assert_msg(log && strstr(log, want_msg), "stderr lacks '%s': %s", want_msg, log);
  free(log);
  e2e_node_cleanup(&n);
}

/* A node id whose WAL is absent from a data directory that holds another
 * node's WAL is refused, naming the other node (issue 25 item 9); with
 * --new-node it starts beside it, and the other node's data stays. */
START_TEST(test_other_node_dir) {
  e2e_node n;
  e2e_node_init(&n);
  const char *a[] = {"--node-id", "alpha", NULL};
  ck_assert_int_eq(e2e_node_start(&n, a, NULL, NULL), 0);
  e2e_resp r;
  ck_assert_int_eq(e2e_http(&n, "PUT", "/v1/store/k", NULL, "v", 1, &r), 0);
  ck_assert_int_eq(r.status, 201);
  e2e_resp_free(&r);
  ck_assert_int_eq(e2e_node_stop(&n, SIGTERM), 0);
  /* a changed id: refused, exit 1, naming alpha and both ways on */
  const char *b[] = {"--node-id", "beta", NULL};
  int code = -1;
  ck_assert_int_eq(e2e_node_start(&n, b, NULL, &code), -1);
  ck_assert_int_eq(code, 1);
  char *log = e2e_read_file(n.log, NULL);
  ck_assert_ptr_nonnull(log);
  ck_assert_msg(strstr(log, "holds the WAL of node alpha but none of node beta") &&
                    strstr(log, "--node-id alpha") && strstr(log, "--new-node"),
                "%s", log);
  free(log);
  char path[400];
  snprintf(path, sizeof path, "%s/beta.wal", n.data_dir);
  ck_assert_int_ne(access(path, F_OK), 0); /* nothing was made */
  /* the same from the environment: refused; --new-node (or its variable) starts it */
  const char *env_b[] = {"SOFTADASTRA_NODE_ID=beta", NULL};
  ck_assert_int_eq(e2e_node_start(&n, NULL, env_b, &code), -1);
  const char *b_new[] = {"--node-id", "beta", "--new-node", NULL};
  ck_assert_int_eq(e2e_node_start(&n, b_new, NULL, NULL), 0);
  ck_assert_int_eq(e2e_http(&n, "GET", "/v1/store/k", NULL, NULL, 0, &r), 0);
  ck_assert_int_eq(r.status, 404); /* a new, empty node */
  e2e_resp_free(&r);
  ck_assert_int_eq(e2e_node_stop(&n, SIGTERM), 0);
  /* beta's WAL exists now: it starts without the flag; alpha too */
  ck_assert_int_eq(e2e_node_start(&n, b, NULL, NULL), 0);
  ck_assert_int_eq(e2e_node_stop(&n, SIGTERM), 0);
  ck_assert_int_eq(e2e_node_start(&n, a, NULL, NULL), 0);
  ck_assert_int_eq(e2e_http(&n, "GET", "/v1/store/k", NULL, NULL, 0, &r), 0);
  ck_assert_int_eq(r.status, 200);
  e2e_resp_free(&r);
  ck_assert_int_eq(e2e_node_stop(&n, SIGTERM), 0);
  e2e_node_cleanup(&n);
}
END_TEST

START_TEST(test_config_precedence) {
  char dir[] = "/tmp/sa-cfg-XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  char file[128], envcfg[160];
  snprintf(file, sizeof file, "%s/c.json", dir);
  write_file(file, "{\"node_id\": \"from-file\", \"threads\": 2, \"log_level\": \"warn\"}");
  snprintf(envcfg, sizeof envcfg, "SOFTADASTRA_CONFIG=%s", file);

  expect_node_id(NULL, NULL, "node-1"); /* default */
  const char *a_file[] = {"--config", file, NULL};
  expect_node_id(a_file, NULL, "from-file");
  const char *e_cfg[] = {envcfg, NULL};
  expect_node_id(NULL, e_cfg, "from-file");
  const char *e_env[] = {"SOFTADASTRA_NODE_ID=from-env", NULL};
  expect_node_id(a_file, e_env, "from-env");
  const char *a_flag[] = {"--config", file, "--node-id", "from-flag", NULL};
  expect_node_id(a_flag, e_env, "from-flag");
  const char *a_eq[] = {"--node-id=from-eq", NULL};
  expect_node_id(a_eq, e_env, "from-eq");

  /* Rejections name the key (exit 2). */
  char bad[128];
  snprintf(bad, sizeof bad, "%s/bad.json", dir);
  write_file(bad, "{\"nodeid\": \"x\"}");
  const char *a_bad[] = {"--config", bad, NULL};
  expect_refused(a_bad, NULL, 2, "unknown setting \"nodeid\"");
  write_file(bad, "{\"threads\": \"four\"}");
  expect_refused(a_bad, NULL, 2, "\"threads\"");
  write_file(bad, "{\"auto_flush\": 1}");
  expect_refused(a_bad, NULL, 2, "\"auto_flush\"");
  write_file(bad, "{\"log_level\": \"loud\"}");
  expect_refused(a_bad, NULL, 2, "\"log_level\"");
  const char *a_listen[] = {"--listen", "127.0.0.1", NULL};
  expect_refused(a_listen, NULL, 2, "\"listen\"");
  write_file(bad, "{not json");
  expect_refused(a_bad, NULL, 2, "not valid JSON");
  const char *e_bad[] = {"SOFTADASTRA_THREADS=abc", NULL};
  expect_refused(NULL, e_bad, 2, "SOFTADASTRA_THREADS");
  const char *e_bad2[] = {"SOFTADASTRA_AUTO_FLUSH=maybe", NULL};
  expect_refused(NULL, e_bad2, 2, "\"auto_flush\"");
  const char *a_unknown[] = {"--bogus", NULL};
  expect_refused(a_unknown, NULL, 2, "unknown flag --bogus");
  const char *a_range[] = {"--threads", "257", NULL};
  expect_refused(a_range, NULL, 2, "\"threads\"");
  const char *a_node[] = {"--node-id", "bad id!", NULL};
  expect_refused(a_node, NULL, 2, "\"node_id\"");
  const char *a_missing[] = {"--config", "/nonexistent/softadastra.json", NULL};
  expect_refused(a_missing, NULL, 2, "/nonexistent/softadastra.json");

  /* The shipped config file is exactly the built-in defaults. */
  char shipped[512];
  snprintf(shipped, sizeof shipped, "%s/config/softadastra.json", e2e_source_dir());
  const char *print[] = {"print-default-config", NULL};
  char *out = NULL, *err = NULL;
  ck_assert_int_eq(e2e_cli(NULL, print, NULL, &out, &err), 0);
  char *file_text = e2e_read_file(shipped, NULL);
  ck_assert_ptr_nonnull(file_text);
  ck_assert_str_eq(out, file_text);
  free(file_text);
  free(out);
  free(err);
  const char *a_shipped[] = {"--config", shipped, NULL};
  expect_node_id(a_shipped, NULL, "node-1");

  char cmd[200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  ck_assert_int_eq(system(cmd), 0);
}
END_TEST

START_TEST(test_second_start_refused) {
  e2e_node a, b;
  e2e_node_init(&a);
  ck_assert_int_eq(e2e_node_start(&a, NULL, NULL, NULL), 0);
  e2e_node_init(&b);
  const char *args[] = {"--data-dir", a.data_dir, NULL}; /* the later flag wins */
  int code = -1;
  ck_assert_int_eq(e2e_node_start(&b, args, NULL, &code), -1);
  ck_assert_int_eq(code, 1);
  char *log = e2e_read_file(b.log, NULL);
  ck_assert_ptr_nonnull(strstr(log, "another `softadastra serve`"));
  ck_assert_ptr_nonnull(strstr(log, a.data_dir));
  free(log);
  /* Another data directory on the same port: the listener names it. */
  e2e_node c;
  e2e_node_init(&c);
  char listen[64];
  snprintf(listen, sizeof listen, "127.0.0.1:%d", a.port);
  const char *cargs[] = {"--listen", listen, NULL};
  ck_assert_int_eq(e2e_node_start(&c, cargs, NULL, &code), -1);
  ck_assert_int_eq(code, 1);
  log = e2e_read_file(c.log, NULL);
  ck_assert_ptr_nonnull(strstr(log, "cannot listen on 127.0.0.1:"));
  ck_assert_ptr_nonnull(strstr(log, "in use"));
  free(log);
  e2e_node_cleanup(&c);
  /* the first node is unharmed */
  ck_assert_int_eq(put(&a, "still", "here"), 201);
  ck_assert_int_eq(e2e_node_stop(&a, SIGTERM), 0);
  e2e_node_cleanup(&a);
  e2e_node_cleanup(&b);
}
END_TEST

START_TEST(test_data_dir) {
  /* Created when missing (the default), and logged. */
  e2e_node n;
  e2e_node_init(&n);
  struct stat st;
  ck_assert_int_ne(stat(n.data_dir, &st), 0);
  ck_assert_int_eq(e2e_node_start(&n, NULL, NULL, NULL), 0);
  ck_assert_int_eq(stat(n.data_dir, &st), 0);
  char *log = e2e_read_file(n.log, NULL);
  ck_assert_ptr_nonnull(strstr(log, "event=data_dir_created"));
  free(log);
  ck_assert_int_eq(e2e_node_stop(&n, SIGTERM), 0);
  e2e_node_cleanup(&n);

  /* With --no-create-data-dir a missing directory is a clear error. */
  const char *args[] = {"--no-create-data-dir", NULL};
  e2e_node_init(&n);
  int code = -1;
  ck_assert_int_eq(e2e_node_start(&n, args, NULL, &code), -1);
  ck_assert_int_eq(code, 1);
  log = e2e_read_file(n.log, NULL);
  ck_assert_msg(strstr(log, n.data_dir) != NULL, "no path in: %s", log);
  free(log);
  e2e_node_cleanup(&n);

  /* An explicit WAL path in a missing directory is refused naming it. */
  e2e_node_init(&n);
  char wal[400];
  snprintf(wal, sizeof wal, "%s/missing/dir/x.wal", n.dir);
  const char *wargs[] = {"--wal", wal, NULL};
  ck_assert_int_eq(e2e_node_start(&n, wargs, NULL, &code), -1);
  ck_assert_int_eq(code, 1);
  log = e2e_read_file(n.log, NULL);
  ck_assert_msg(strstr(log, "missing/dir") != NULL, "no path in: %s", log);
  free(log);
  e2e_node_cleanup(&n);
}
END_TEST

START_TEST(test_no_auto_flush) {
  e2e_node n;
  e2e_node_init(&n);
  const char *args[] = {"--no-auto-flush", "--flush-interval-ms", "50", NULL};
  ck_assert_int_eq(e2e_node_start(&n, args, NULL, NULL), 0);
  e2e_resp r;
  ck_assert_int_eq(e2e_http(&n, "PUT", "/v1/store/nf", NULL, "1", 1, &r), 0);
  ck_assert_int_eq(r.status, 201);
  json_t *j = json_loadb(r.body, r.len, 0, NULL);
  ck_assert(json_is_false(json_object_get(j, "durable")));
  json_decref(j);
  e2e_resp_free(&r);
  long st;
  j = get_json(&n, "/v1/status", &st);
  ck_assert(json_is_false(json_object_get(json_object_get(j, "wal"), "durable")));
  json_decref(j);
  /* A clean shutdown flushes: the value survives. */
  ck_assert_int_eq(e2e_node_stop(&n, SIGTERM), 0);
  ck_assert_int_eq(e2e_node_start(&n, NULL, NULL, NULL), 0);
  expect_value(&n, "nf", "1");
  ck_assert_int_eq(e2e_node_stop(&n, SIGINT), 0);
  e2e_node_cleanup(&n);
}
END_TEST

START_TEST(test_sync_settings) {
  e2e_node n;
  e2e_node_init(&n);
  const char *args[] = {"--enable-transport", "--max-retries", "3", "--outbox-max", "5", NULL};
  ck_assert_int_eq(e2e_node_start(&n, args, NULL, NULL), 0);
  ck_assert_int_eq(put(&n, "s/a", "1"), 201);
  long st;
  json_t *j = get_json(&n, "/v1/sync/status", &st);
  ck_assert_int_eq(st, 200);
  json_t *t = json_object_get(j, "transport");
  ck_assert(json_is_true(json_object_get(t, "enabled")));
  ck_assert(json_is_true(json_object_get(t, "stub")));
  ck_assert_str_eq(json_string_value(json_object_get(t, "kind")), "stub");
  ck_assert_int_eq(json_integer_value(json_object_get(j, "outbox_max")), 5);
  json_decref(j);
  const char *cmd[] = {"sync", "status", NULL};
  char *out = NULL, *err = NULL;
  ck_assert_int_eq(e2e_cli(&n, cmd, NULL, &out, &err), 0);
  ck_assert_ptr_nonnull(strstr(out, "  transport    : yes (stub, a stub that reaches no peer)\n"));
  ck_assert_ptr_nonnull(strstr(out, "  overflow     : no (max 5)\n"));
  free(out);
  free(err);
  ck_assert_int_eq(e2e_node_stop(&n, SIGTERM), 0);
  /* The core's own log lines reach stderr. */
  char *log = e2e_read_file(n.log, NULL);
  ck_assert_ptr_nonnull(strstr(log, "event=core"));
  ck_assert_ptr_nonnull(strstr(log, "is a stub"));
  free(log);
  e2e_node_cleanup(&n);
  /* An unknown kind is refused by the core, naming the setting. */
  const char *bad[] = {"--enable-transport", "--transport-kind", "carrier-pigeon", NULL};
  e2e_node_init(&n);
  int code = -1;
  ck_assert_int_eq(e2e_node_start(&n, bad, NULL, &code), -1);
  ck_assert_int_eq(code, 1);
  log = e2e_read_file(n.log, NULL);
  ck_assert_ptr_nonnull(strstr(log, "transport_kind"));
  free(log);
  e2e_node_cleanup(&n);
}
END_TEST

START_TEST(test_help) {
  const char *h1[] = {"--help", NULL};
  const char *h2[] = {"serve", "--help", NULL};
  const char *flags[] = {"--config",     "--listen",       "--data-dir",
                         "--node-id",    "--wal",          "--no-auto-flush",
                         "--auth-token", "--cors-origins", "SOFTADASTRA_"};
  for (int k = 0; k < 2; k++) {
    char *out = NULL, *err = NULL;
    ck_assert_int_eq(e2e_cli(NULL, k ? h2 : h1, NULL, &out, &err), 0);
    for (size_t i = 0; i < sizeof flags / sizeof *flags; i++)
      ck_assert_msg(strstr(out, flags[i]), "help lacks %s", flags[i]);
    free(out);
    free(err);
  }
  char *out = NULL, *err = NULL;
  const char *v[] = {"--version", NULL};
  ck_assert_int_eq(e2e_cli(NULL, v, NULL, &out, &err), 0);
  ck_assert_ptr_nonnull(strstr(out, "softadastra "));
  free(out);
  free(err);
}
END_TEST

static Suite *e2e_node_suite(void) {
  Suite *s = suite_create("e2e_node");
  TCase *tc = tcase_create("node");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, test_restart_recovers_values);
  tcase_add_test(tc, test_sigterm_under_load_loses_no_ack);
  tcase_add_test(tc, test_sigterm_finishes_in_flight);
  tcase_add_test(tc, test_shutdown_timeout);
  tcase_add_test(tc, test_config_precedence);
  tcase_add_test(tc, test_second_start_refused);
  tcase_add_test(tc, test_data_dir);
  tcase_add_test(tc, test_other_node_dir);
  tcase_add_test(tc, test_no_auto_flush);
  tcase_add_test(tc, test_sync_settings);
  tcase_add_test(tc, test_help);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
  SRunner *sr = srunner_create(e2e_node_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  curl_global_cleanup();
  return failed ? 1 : 0;
}
