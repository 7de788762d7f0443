/*
 * test_e2e_cli.c -- the `softadastra` client commands against a real node:
 * the guide's session verbatim, human and --json output, exit codes (0 ok,
 * 1 failure, 2 usage, 3 not found), --help and usage errors, the script
 * interface (ls paging, JSON errors, batch), a node that is not running, and the
 * offline WAL tools (inspect, verify, repair) on a real WAL.
 */
#define _GNU_SOURCE
#include <check.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "e2e_util.h"

static e2e_node node;

static void node_up(void) {
  e2e_node_init(&node);
  ck_assert_int_eq(e2e_node_start(&node, NULL, NULL, NULL), 0);
}

static void node_down(void) {
  int rc = e2e_node_stop(&node, SIGTERM); /* prints the node log if it fails */
  e2e_node_cleanup(&node);                /* before judging: a failure leaves no directory behind */
  ck_assert_int_eq(rc, 0);
}

/* Runs the CLI against the shared node; asserts the exit code; returns
 * stdout (caller frees); stderr goes to *err when err is not NULL. */
static char *run(int want, const char *stdin_data, char **err, const char *const *args) {
  char *out = NULL, *e = NULL;
  int rc = e2e_cli(&node, args, stdin_data, &out, &e);
  ck_assert_msg(rc == want, "%s %s: exit %d, want %d; stdout: %s; stderr: %s", args[0],
                args[1] ? args[1] : "", rc, want, out, e);
  if (err)
    *err = e;
  else
    free(e);
  return out;
}

#define RUN(want, ...) run(want, NULL, NULL, (const char *const[]){__VA_ARGS__, NULL})

static void has(const char *text, const char *needle) {
  ck_assert_msg(strstr(text, needle) != NULL, "output lacks \"%s\":\n%s", needle, text);
}

/* The guide's CLI session, verbatim. */
START_TEST(test_guide_session) {
  char *o = RUN(0, "status");
  has(o, "WAL\n  enabled  : yes\n  path     : ");
  has(o, "node-1.wal\n  durable  : yes\n");
  has(o, "  id       : node-1\n");
  /* the key count is called keys, not "size" */
  has(o, "\nstore\n  keys     : ");
  free(o);
  o = RUN(0, "store", "put", "settings/theme", "dark");
  has(o, "  key      : settings/theme\n");
  has(o, "  durable  : yes\n");
  free(o);
  o = RUN(0, "store", "get", "settings/theme");
  has(o, "  key      : settings/theme\n  value    : dark\n");
  free(o);
  o = RUN(0, "sync", "status");
  has(o, "  outbox       : ");
  has(o, "  transport    : no\n");
  free(o);
}
END_TEST

START_TEST(test_store_commands) {
  char *o = RUN(0, "store", "put", "cli/a", "1");
  free(o);
  o = run(0, "from stdin\n", NULL, (const char *const[]){"store", "put", "cli/b", "-", NULL});
  free(o);
  o = RUN(0, "store", "get", "cli/b", "--raw");
  ck_assert_str_eq(o, "from stdin\n");
  free(o);
  o = RUN(0, "store", "put", "--", "cli/dash", "--not-an-option");
  free(o);
  o = RUN(0, "store", "get", "--raw", "--", "cli/dash");
  ck_assert_str_eq(o, "--not-an-option");
  free(o);
  o = RUN(0, "store", "rm", "cli/dash");
  free(o);
  o = RUN(0, "store", "put", "cli/space key", "x y");
  free(o);
  o = RUN(0, "store", "get", "cli/space key");
  has(o, "  value    : x y\n");
  free(o);
  o = RUN(0, "store", "ls", "--prefix", "cli/");
  ck_assert_str_eq(o, "cli/a\ncli/b\ncli/space key\n");
  free(o);
  o = RUN(0, "store", "ls", "--prefix", "cli/", "--limit", "2");
  ck_assert_str_eq(o, "cli/a\ncli/b\n");
  free(o);
  o = RUN(0, "--json", "store", "get", "cli/a");
  json_t *j = json_loads(o, 0, NULL);
  ck_assert_ptr_nonnull(j);
  ck_assert_str_eq(json_string_value(json_object_get(j, "value")), "1");
  json_decref(j);
  free(o);
  o = RUN(0, "status", "--json");
  j = json_loads(o, 0, NULL);
  ck_assert_ptr_nonnull(j);
  ck_assert_str_eq(json_string_value(json_object_get(j, "node_id")), "node-1");
  json_decref(j);
  free(o);
  o = RUN(0, "store", "ls", "--json", "--prefix", "cli/");
  j = json_loads(o, 0, NULL);
  ck_assert_int_eq(json_array_size(json_object_get(j, "items")), 3);
  json_decref(j);
  free(o);
  /* CAS from the CLI */
  o = RUN(1, "store", "put", "cli/a", "2", "--create");
  free(o);
  o = RUN(1, "store", "put", "cli/a", "2", "--if-match", "7");
  free(o);
  o = RUN(0, "store", "put", "cli/a", "2", "--if-match", "1");
  free(o);
  o = RUN(0, "store", "rm", "cli/a");
  has(o, "removed\n");
  free(o);
  char *err = NULL;
  o = run(3, NULL, &err, (const char *const[]){"store", "get", "cli/a", NULL});
  has(err, "not found");
  free(err);
  free(o);
  o = RUN(3, "store", "rm", "cli/a");
  free(o);
}
END_TEST

START_TEST(test_health) {
  char *o = RUN(0, "health");
  ck_assert_str_eq(o, "ok\n");
  free(o);
  o = RUN(0, "health", "--json");
  has(o, "\"status\":\"ok\"");
  free(o);
}
END_TEST

/* sync tick runs one outbox tick: the tick count grows by one per call. */
START_TEST(test_sync_tick) {
  char *o = RUN(0, "sync", "tick", "--json");
  json_error_t je;
  json_t *j = json_loads(o, 0, &je);
  ck_assert_msg(j != NULL, "not JSON: %s", o);
  json_int_t t1 = json_integer_value(json_object_get(j, "ticks"));
  ck_assert_int_ge(t1, 1);
  ck_assert(json_is_string(json_object_get(j, "last_tick_at")));
  json_decref(j);
  free(o);
  o = RUN(0, "sync", "tick", "--json");
  j = json_loads(o, 0, &je);
  ck_assert_ptr_nonnull(j);
  /* the node's own tick thread may add ticks too (1 s interval) */
  ck_assert_int_ge(json_integer_value(json_object_get(j, "ticks")), t1 + 1);
  json_decref(j);
  free(o);
  o = RUN(0, "sync", "tick");
  has(o, "  ticks        : ");
  free(o);
}
END_TEST

START_TEST(test_usage_errors) {
  char *o = RUN(2, "store", "put", "only-key");
  free(o);
  o = RUN(2, "frobnicate");
  free(o);
  o = RUN(2, "store", "ls", "--limit", "x");
  free(o);
  o = RUN(2, "store", "get", "k", "--bogus");
  free(o);
  o = RUN(2, "wal", "inspect");
  free(o);
  char *out = NULL, *err = NULL;
  const char *none[] = {NULL};
  ck_assert_int_eq(e2e_cli(NULL, none, NULL, &out, &err), 2);
  free(out);
  free(err);
}
END_TEST

#define RUN_ERR(want, err, ...) run(want, NULL, err, (const char *const[]){__VA_ARGS__, NULL})

/* Writes n bytes to path. */
static void write_bytes(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  ck_assert_ptr_nonnull(f);
  ck_assert_uint_eq(fwrite(data, 1, n, f), n);
  ck_assert_int_eq(fclose(f), 0);
}

/* True when the file at path holds exactly n bytes equal to data. */
static bool file_is(const char *path, const void *data, size_t n) {
  size_t len = 0;
  char *got = e2e_read_file(path, &len);
  bool same = got && len == n && (n == 0 || memcmp(got, data, n) == 0);
  free(got);
  return same;
}

/* Runs a shell line with SOFTADASTRA_URL set to the node; returns its exit
 * status. */
static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...) {
  char cmd[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  setenv("SOFTADASTRA_URL", node.url, 1);
  int st = system(cmd);
  unsetenv("SOFTADASTRA_URL");
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Values are bytes (issue 25 item 1): NUL bytes and invalid UTF-8 go in
 * (--file, stdin) and come out (--raw, -o) whole; the human form says a
 * value is binary and how to get it; the JSON form is base64; a literal
 * "-" can be stored with --value. */
START_TEST(test_binary_values) {
  char in[512], out[512];
  snprintf(in, sizeof in, "%s/bin.in", node.dir);
  snprintf(out, sizeof out, "%s/bin.out", node.dir);
  unsigned char all[256 + 7];
  memcpy(all, "abc\0def", 7);
  for (int i = 0; i < 256; i++)
    all[7 + i] = (unsigned char)i;
  write_bytes(in, all, sizeof all);
  char *o = RUN(0, "store", "put", "bin/all", "--file", in);
  has(o, "stored\n");
  free(o);
  o = RUN(0, "store", "get", "bin/all");
  has(o, "  value    : (binary, 263 bytes: store get KEY --raw > FILE, or -o FILE)\n");
  has(o, "  size     : 263\n");
  free(o);
  o = RUN(0, "store", "get", "bin/all", "-o", out);
  has(o, "saved\n");
  has(o, "  size     : 263\n");
  free(o);
  ck_assert(file_is(out, all, sizeof all));
  ck_assert_int_eq(sh("'%s' store get bin/all --raw | cmp -s - '%s'", e2e_bin(), in), 0);
  o = RUN(0, "--json", "store", "get", "bin/all");
  json_t *j = json_loads(o, 0, NULL);
  ck_assert_ptr_nonnull(j);
  ck_assert_str_eq(json_string_value(json_object_get(j, "encoding")), "base64");
  ck_assert_int_eq(json_integer_value(json_object_get(j, "size")), 263);
  ck_assert_uint_eq(json_string_length(json_object_get(j, "value")), 4 * ((263 + 2) / 3));
  json_decref(j);
  free(o);
  /* the session: NUL bytes from stdin, valid UTF-8 around them */
  ck_assert_int_eq(sh("printf 'abc\\000def' | '%s' store put nul2 - >/dev/null", e2e_bin()), 0);
  o = RUN(0, "--json", "store", "get", "nul2");
  has(o, "\"encoding\":\"base64\"");
  has(o, "\"value\":\"YWJjAGRlZg==\"");
  free(o);
  o = RUN(0, "store", "get", "nul2", "--output", out);
  free(o);
  ck_assert(file_is(out, "abc\0def", 7));
  /* 1 MiB of zero bytes: base64 (about 1.4 MB of JSON, not 6.3 MB of \u0000) */
  char *zeros = calloc(1, 1 << 20);
  ck_assert_ptr_nonnull(zeros);
  write_bytes(in, zeros, 1 << 20);
  o = RUN(0, "store", "put", "bin/zeros", "--file", in);
  free(o);
  o = RUN(0, "--json", "store", "get", "bin/zeros");
  ck_assert_uint_lt(strlen(o), 1500000);
  has(o, "\"encoding\":\"base64\"");
  free(o);
  o = RUN(0, "store", "get", "bin/zeros", "-o", out);
  free(o);
  ck_assert(file_is(out, zeros, 1 << 20));
  free(zeros);
  /* a lone dash, literally */
  o = RUN(0, "store", "put", "bin/dash", "--value", "-");
  free(o);
  o = RUN(0, "store", "get", "bin/dash", "--raw");
  ck_assert_str_eq(o, "-");
  free(o);
  o = RUN(0, "store", "put", "bin/dash", "--value=--x");
  free(o);
  o = RUN(0, "store", "get", "bin/dash", "--raw");
  ck_assert_str_eq(o, "--x");
  free(o);
  /* contradictions and a missing file are refused */
  char *err = NULL;
  o = RUN_ERR(2, &err, "store", "put", "bin/x", "v", "--file", in);
  has(err, "a VALUE and --file: give one value");
  free(err);
  free(o);
  o = RUN_ERR(2, &err, "store", "put", "bin/x", "--file", in, "--value", "v");
  has(err, "--file and --value contradict each other");
  free(err);
  free(o);
  o = RUN_ERR(2, &err, "store", "get", "bin/all", "--raw", "-o", out);
  has(err, "--raw and --output contradict each other");
  free(err);
  free(o);
  o = RUN_ERR(1, &err, "store", "put", "bin/x", "--file", "/nonexistent/file");
  has(err, "cannot read /nonexistent/file");
  free(err);
  free(o);
  o = RUN(3, "store", "get", "bin/x", "-o", out);
  free(o);
}
END_TEST

/* The Content-Type of key's raw GET (malloc'ed), or NULL. */
static char *raw_type(const char *key) {
  char path[256];
  snprintf(path, sizeof path, "/v1/store/%s?raw=1", key);
  e2e_resp r;
  char *ct = NULL;
  if (e2e_http(&node, "GET", path, NULL, NULL, 0, &r) == 0 && r.status == 200)
    ct = e2e_header(&r, "Content-Type");
  e2e_resp_free(&r);
  return ct;
}

/* store put --content-type (issue 25 item 3): the type goes with a literal
 * value, a file and stdin; store get shows it; a put without it stores
 * none (the CLI sends no Content-Type, not libcurl's form type); a bad one
 * is a usage error before anything is sent. */
START_TEST(test_content_type) {
  char in[512];
  snprintf(in, sizeof in, "%s/ct.in", node.dir);
  write_bytes(in, "\x89PNG", 4);
  char *o = RUN(0, "store", "put", "ct/doc", "{\"a\":1}", "--content-type", "application/json");
  has(o, "  type     : application/json\n");
  free(o);
  o = RUN(0, "store", "get", "ct/doc");
  has(o, "  value    : {\"a\":1}\n");
  has(o, "  type     : application/json\n");
  free(o);
  o = RUN(0, "--json", "store", "get", "ct/doc");
  has(o, "\"content_type\":\"application/json\"");
  free(o);
  char *ct = raw_type("ct/doc");
  ck_assert_str_eq(ct, "application/json");
  free(ct);
  o = RUN(0, "store", "put", "ct/img", "--file", in, "--content-type", "image/png");
  free(o);
  ct = raw_type("ct/img");
  ck_assert_str_eq(ct, "image/png");
  free(ct);
  o = run(0, "hello", NULL,
          (const char *const[]){"store", "put", "ct/txt", "-",
                                "--content-type=text/plain; charset=utf-8", NULL});
  free(o);
  ct = raw_type("ct/txt");
  ck_assert_str_eq(ct, "text/plain; charset=utf-8");
  free(ct);
  /* without --content-type: none (and the old one goes) */
  o = RUN(0, "store", "put", "ct/doc", "plain");
  ck_assert_ptr_null(strstr(o, "type"));
  free(o);
  o = RUN(0, "--json", "store", "get", "ct/doc");
  has(o, "\"content_type\":null");
  free(o);
  o = RUN(0, "store", "get", "ct/doc");
  ck_assert_ptr_null(strstr(o, "type"));
  free(o);
  ct = raw_type("ct/doc");
  ck_assert_str_eq(ct, "application/octet-stream");
  free(ct);
  /* a bad type: exit 2 naming it, nothing sent */
  char *err = NULL;
  o = RUN_ERR(2, &err, "store", "put", "ct/bad", "x", "--content-type", "json");
  has(err, "--content-type: invalid content type 'json': not a media type");
  free(err);
  free(o);
  o = RUN_ERR(2, &err, "store", "put", "ct/bad", "x", "--content-type", "text/plain\r\nX-A: b");
  has(err, "byte 0x0D at offset 10");
  free(err);
  free(o);
  o = RUN(3, "store", "get", "ct/bad");
  free(o);
}
END_TEST

/* store rm --prefix (issue 25 item 6): refused without a terminal unless
 * --yes, then every key under the prefix goes at once; contradictions are
 * refused before anything is sent. */
START_TEST(test_rm_prefix) {
  const char *keys[] = {"rmp/a", "rmp/b/c", "rmq"};
  for (size_t i = 0; i < 3; i++) {
    char *o = RUN(0, "store", "put", keys[i], "v");
    free(o);
  }
  char *err = NULL;
  char *o = RUN_ERR(2, &err, "store", "rm", "--prefix", "rmp/");
  has(err, "stdin is not a terminal: add --yes to remove every key under \"rmp/\"");
  free(err);
  free(o);
  o = RUN(0, "store", "ls", "--prefix", "rmp/");
  ck_assert_str_eq(o, "rmp/a\nrmp/b/c\n");
  free(o);
  o = RUN_ERR(2, &err, "store", "rm", "rmp/a", "--prefix", "rmp/", "--yes");
  has(err, "a KEY and --prefix: give one");
  free(err);
  free(o);
  o = RUN_ERR(2, &err, "store", "rm", "--prefix", "rmp/", "--if-match", "1", "--yes");
  has(err, "--prefix and --if-match contradict each other");
  free(err);
  free(o);
  o = RUN_ERR(2, &err, "store", "rm", "rmp/a", "--yes");
  has(err, "--yes goes with --prefix");
  free(err);
  free(o);
  o = RUN(0, "store", "rm", "--prefix", "rmp/", "--yes");
  has(o, "removed\n  prefix   : rmp/\n  keys     : 2\n");
  free(o);
  o = RUN(0, "store", "ls", "--prefix", "rm");
  ck_assert_str_eq(o, "rmq\n");
  free(o);
  o = RUN(0, "--json", "store", "rm", "--prefix", "rmp/", "--yes");
  has(o, "\"deleted\":0");
  free(o);
  /* on a terminal (script(1) gives it one) it says how many and asks */
  if (access("/usr/bin/script", X_OK) == 0) {
    char log[512];
    snprintf(log, sizeof log, "%s/prompt.out", node.dir);
    ck_assert_int_eq(
        sh("printf 'n\\n' | script -qec \"'%s' store rm --prefix rmq\" /dev/null >'%s'", e2e_bin(),
           log),
        1);
    char *t = e2e_read_file(log, NULL);
    ck_assert_ptr_nonnull(t);
    has(t, "remove 1 key under \"rmq\" (one record, all or none)? [y/N]");
    has(t, "not confirmed: nothing was removed");
    free(t);
    ck_assert_int_eq(
        sh("printf 'y\\n' | script -qec \"'%s' store rm --prefix rmq\" /dev/null >'%s'", e2e_bin(),
           log),
        0);
    t = e2e_read_file(log, NULL);
    has(t, "  keys     : 1");
    free(t);
  }
}
END_TEST

/* Every command explains itself: --help prints its usage (exit 0), a group
 * alone lists its commands, a missing value names the option, options that
 * contradict each other or do not apply are refused (exit 2), and nothing
 * is sent then. */
START_TEST(test_explains_itself) {
  static const char *const cmds[][3] = {
      {"status", NULL, "usage: softadastra status\n"},
      {"health", NULL, "usage: softadastra health\n"},
      {"store", "put", "usage: softadastra store put KEY VALUE"},
      {"store", "get", "usage: softadastra store get KEY"},
      {"store", "rm", "usage: softadastra store rm KEY"},
      {"store", "ls", "usage: softadastra store ls "},
      {"sync", "status", "usage: softadastra sync status\n"},
      {"sync", "tick", "usage: softadastra sync tick\n"},
      {"watch", NULL, "usage: softadastra watch "},
      {"wal", "inspect", "usage: softadastra wal inspect FILE"},
      {"wal", "verify", "usage: softadastra wal verify FILE"},
      {"wal", "repair", "usage: softadastra wal repair FILE"},
  };
  for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
    char *o = cmds[i][1] ? RUN(0, cmds[i][0], cmds[i][1], "--help") : RUN(0, cmds[i][0], "--help");
    ck_assert_msg(strncmp(o, cmds[i][2], strlen(cmds[i][2])) == 0, "%s %s --help: %s", cmds[i][0],
                  cmds[i][1] ? cmds[i][1] : "", o);
    has(o, "--url URL");
    free(o);
  }
  char *o = RUN(0, "store", "--help");
  has(o, "put KEY VALUE");
  has(o, "get KEY");
  has(o, "rm KEY");
  has(o, "ls [--prefix P]");
  free(o);
  char *err = NULL;
  o = RUN_ERR(2, &err, "store");
  has(err, "store needs a command");
  has(err, "put KEY VALUE");
  has(err, "ls [--prefix P]");
  free(err);
  free(o);
  o = RUN_ERR(2, &err, "sync");
  has(err, "status");
  has(err, "tick");
  free(err);
  free(o);
  /* a missing value names the option */
  static const struct {
    const char *args[5]; /* NULL-terminated */
    const char *needle;
  } missing[] = {
      {{"store", "ls", "--prefix", NULL}, "option --prefix needs a value"},
      {{"store", "ls", "--limit", NULL}, "option --limit needs a value"},
      {{"status", "--url", NULL}, "option --url needs a value"},
      {{"status", "--token", NULL}, "option --token needs a value"},
      {{"store", "put", "k", "--if-match", NULL}, "option --if-match needs a value"},
  };
  for (size_t i = 0; i < sizeof missing / sizeof missing[0]; i++) {
    o = run(2, NULL, &err, missing[i].args);
    has(err, missing[i].needle);
    ck_assert_msg(strstr(err, "unknown option") == NULL, "%s", err);
    free(err);
    free(o);
  }
  /* contradictory options: refused, and nothing is written */
  o = RUN_ERR(2, &err, "store", "put", "cli/contra", "v", "--if-match", "1", "--create");
  has(err, "--if-match and --create");
  free(err);
  free(o);
  o = RUN(3, "store", "get", "cli/contra");
  free(o);
  /* an option the command does not take */
  o = RUN_ERR(2, &err, "status", "--prefix", "x");
  has(err, "option --prefix does not apply to status");
  free(err);
  free(o);
  o = RUN_ERR(2, &err, "store", "put", "k", "v", "--raw");
  has(err, "option --raw does not apply to store put");
  free(err);
  free(o);
  o = RUN_ERR(2, &err, "store", "ls", "--json=1");
  has(err, "option --json takes no value");
  free(err);
  free(o);
}
END_TEST

/* Writes text to dir/name; returns the path (static buffer). */
static const char *write_tmp(const char *name, const char *text) {
  static char path[512];
  snprintf(path, sizeof path, "%s/%s", node.dir, name);
  FILE *f = fopen(path, "w");
  ck_assert_ptr_nonnull(f);
  fputs(text, f);
  fclose(f);
  return path;
}

/* Scripts: ls pages with --limit/--after and the cursor in its JSON; under
 * --json every error is a JSON object on stdout; store batch applies a
 * line or JSON file all or nothing. */
START_TEST(test_scripts) {
  for (int i = 1; i <= 5; i++) {
    char k[16];
    snprintf(k, sizeof k, "pg/%d", i);
    free(RUN(0, "store", "put", k, "v"));
  }
  const char *after = NULL;
  const char *want[][2] = {{"pg/1", "pg/2"}, {"pg/3", "pg/4"}, {"pg/5", NULL}};
  char next[64] = "";
  for (int page = 0; page < 3; page++) {
    char *o =
        after ? RUN(0, "store", "ls", "--prefix", "pg/", "--limit", "2", "--json", "--after", after)
              : RUN(0, "store", "ls", "--prefix", "pg/", "--limit", "2", "--json");
    json_t *j = json_loads(o, 0, NULL);
    ck_assert_msg(j != NULL, "not JSON: %s", o);
    json_t *items = json_object_get(j, "items");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(items, 0), "key")),
                     want[page][0]);
    if (want[page][1]) {
      ck_assert_int_eq(json_array_size(items), 2);
      ck_assert(json_is_true(json_object_get(j, "more")));
      ck_assert_str_eq(json_string_value(json_object_get(j, "next")), want[page][1]);
      snprintf(next, sizeof next, "%s", want[page][1]);
      after = next;
    } else {
      ck_assert_int_eq(json_array_size(items), 1);
      ck_assert(json_is_false(json_object_get(j, "more")));
      ck_assert(json_is_null(json_object_get(j, "next")));
    }
    json_decref(j);
    free(o);
  }
  char *o = RUN(0, "store", "ls", "--prefix", "pg/", "--after", "pg/3");
  ck_assert_str_eq(o, "pg/4\npg/5\n");
  free(o);

  /* --json: errors are JSON on stdout too */
  char *err = NULL;
  o = RUN_ERR(3, &err, "store", "get", "pg/none", "--json");
  json_t *j = json_loads(o, 0, NULL);
  ck_assert_msg(j != NULL, "not JSON: %s", o);
  ck_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "error"), "code")),
                   "not_found");
  ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(j, "error"), "status")), 404);
  json_decref(j);
  free(err);
  free(o);
  o = RUN_ERR(2, &err, "store", "ls", "--json", "--prefix");
  j = json_loads(o, 0, NULL);
  ck_assert_msg(j != NULL, "not JSON: %s", o);
  ck_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "error"), "code")),
                   "usage");
  has(json_string_value(json_object_get(json_object_get(j, "error"), "message")),
      "option --prefix needs a value");
  json_decref(j);
  free(err);
  free(o);
  const char *unreachable[] = {"--json", "status", "--url", "http://127.0.0.1:1", NULL};
  ck_assert_int_eq(e2e_cli(NULL, unreachable, NULL, &o, &err), 1);
  j = json_loads(o, 0, NULL);
  ck_assert_msg(j != NULL, "not JSON: %s", o);
  ck_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "error"), "code")),
                   "unreachable");
  json_decref(j);
  free(err);
  free(o);

  /* store batch: a line file */
  const char *f = write_tmp("batch.txt", "# a comment\n"
                                         "put bt/a one\n"
                                         "\n"
                                         "put bt/b two words\n"
                                         "delete pg/1\n");
  o = RUN(0, "store", "batch", f);
  has(o, "applied\n  ops      : 3\n");
  free(o);
  o = RUN(0, "store", "get", "bt/b", "--raw");
  ck_assert_str_eq(o, "two words");
  free(o);
  free(RUN(3, "store", "get", "pg/1"));
  /* a JSON array from stdin */
  o = run(
      0, "[{\"op\":\"put\",\"key\":\"bt/c\",\"value\":\"3\"},{\"op\":\"delete\",\"key\":\"bt/a\"}]",
      NULL, (const char *const[]){"store", "batch", "-", "--json", NULL});
  j = json_loads(o, 0, NULL);
  ck_assert_msg(j != NULL, "not JSON: %s", o);
  ck_assert_int_eq(json_integer_value(json_object_get(j, "count")), 2);
  json_decref(j);
  free(o);
  free(RUN(3, "store", "get", "bt/a"));
  o = RUN(0, "store", "get", "bt/c", "--raw");
  ck_assert_str_eq(o, "3");
  free(o);
  /* a malformed file: refused, naming the line, and nothing applied */
  f = write_tmp("bad.txt", "put bt/x 1\nfrob bt/y\n");
  o = RUN_ERR(2, &err, "store", "batch", f);
  has(err, "bad.txt:2: expected put KEY VALUE or delete KEY");
  free(err);
  free(o);
  free(RUN(3, "store", "get", "bt/x"));
  /* the node refuses the batch (an empty key): nothing applied, exit 1 */
  f = write_tmp("bad.json", "{\"ops\":[{\"op\":\"put\",\"key\":\"bt/y\",\"value\":\"1\"},"
                            "{\"op\":\"put\",\"key\":\"\",\"value\":\"1\"}]}");
  o = RUN_ERR(1, &err, "store", "batch", f);
  has(err, "store batch: ");
  free(err);
  free(o);
  free(RUN(3, "store", "get", "bt/y"));
}
END_TEST

static long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int count(const char *text, const char *needle) {
  int n = 0;
  for (const char *p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
    n++;
  return n;
}

/* watch with no node: says so once in the node's terms, retries quietly
 * (backing off), and gives up after --retry-for. */
START_TEST(test_watch_no_node) {
  char *out = NULL, *err = NULL;
  const char *args[] = {"watch", "--url", "http://127.0.0.1:1", "--retry-for", "2s", NULL};
  long t0 = now_ms();
  ck_assert_int_eq(e2e_cli(NULL, args, NULL, &out, &err), 1);
  long took = now_ms() - t0;
  has(err, "cannot reach the node at http://127.0.0.1:1: connection refused; retrying\n");
  ck_assert_msg(count(err, "cannot reach") == 1, "said more than once:\n%s", err);
  has(err, "giving up: no answer from the node at http://127.0.0.1:1 for 2s\n");
  ck_assert_int_eq(count(err, "\n"), 2);
  ck_assert_msg(took >= 1900, "gave up after %ld ms, before --retry-for", took);
  free(out);
  free(err);
  const char *bad[] = {"watch", "--retry-for", "soon", NULL};
  ck_assert_int_eq(e2e_cli(NULL, bad, NULL, &out, &err), 2);
  has(err, "--retry-for needs a duration");
  free(out);
  free(err);
}
END_TEST

/* A node killed under a running watch: "the node closed the stream", not
 * libcurl's "Transferred a partial file"; then the retry budget ends it. */
START_TEST(test_watch_node_killed) {
  e2e_node n;
  e2e_node_init(&n);
  ck_assert_int_eq(e2e_node_start(&n, NULL, NULL, NULL), 0);
  char outp[400], errp[400];
  snprintf(outp, sizeof outp, "%s/watch.out", n.dir);
  snprintf(errp, sizeof errp, "%s/watch.err", n.dir);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    int fo = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int fe = open(errp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fo < 0 || fe < 0) _exit(127);
    dup2(fo, 1);
    dup2(fe, 2);
    execl(e2e_bin(), e2e_bin(), "watch", "--url", n.url, "--since", "0", "--retry-for", "1s",
          (char *)NULL);
    _exit(127);
  }
  /* --since 0: the put shows whenever watch connects; once it shows, the
   * stream is up */
  e2e_resp r;
  ck_assert_int_eq(e2e_http(&n, "PUT", "/v1/store/killed", NULL, "v", 1, &r), 0);
  ck_assert_int_eq(r.status, 201);
  e2e_resp_free(&r);
  char *out = NULL;
  long deadline = now_ms() + E2E_WAIT_MS;
  while (now_ms() < deadline) {
    free(out);
    out = e2e_read_file(outp, NULL);
    if (out && strstr(out, "killed")) break;
    usleep(20 * 1000);
  }
  ck_assert_msg(out && strstr(out, "killed"), "watch printed: %s", out ? out : "(nothing)");
  free(out);
  ck_assert_int_eq(e2e_node_stop(&n, SIGKILL), 128 + SIGKILL);
  int st = -1;
  deadline = now_ms() + E2E_WAIT_MS;
  while (now_ms() < deadline && waitpid(pid, &st, WNOHANG) != pid)
    usleep(10 * 1000);
  if (!WIFEXITED(st)) {
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
  }
  char *err = e2e_read_file(errp, NULL);
  ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 1, "watch did not give up (exit 1): %s",
                err ? err : "");
  has(err, "softadastra watch: the node closed the stream; reconnecting\n");
  ck_assert_msg(strstr(err, "partial") == NULL && strstr(err, "Transferred") == NULL, "%s", err);
  has(err, "giving up");
  free(err);
  e2e_node_cleanup(&n);
}
END_TEST

/* A node with a token: a 401 names --token and SOFTADASTRA_TOKEN. */
START_TEST(test_unauthorized_names_the_token) {
  e2e_node n;
  e2e_node_init(&n);
  const char *args[] = {"--auth-token", "s3cret", NULL};
  ck_assert_int_eq(e2e_node_start(&n, args, NULL, NULL), 0);
  char *out = NULL, *err = NULL;
  const char *st[] = {"status", NULL};
  ck_assert_int_eq(e2e_cli(&n, st, NULL, &out, &err), 1);
  has(err, "pass --token TOKEN or set SOFTADASTRA_TOKEN");
  free(out);
  free(err);
  const char *put[] = {"store", "put", "k", "v", NULL};
  ck_assert_int_eq(e2e_cli(&n, put, NULL, &out, &err), 1);
  has(err, "store put: the node wants its token (HTTP 401)");
  free(out);
  free(err);
  const char *ok[] = {"status", "--token", "s3cret", NULL};
  ck_assert_int_eq(e2e_cli(&n, ok, NULL, &out, &err), 0);
  free(out);
  free(err);
  ck_assert_int_eq(e2e_node_stop(&n, SIGTERM), 0);
  e2e_node_cleanup(&n);
}
END_TEST

/* serve's configuration as the program prints it: a misspelled variable
 * warns with the closest name, ":PORT" is 127.0.0.1, a bad listen names its
 * flag, and --help lists print-default-config. */
START_TEST(test_serve_config_messages) {
  e2e_node n;
  e2e_node_init(&n);
  const char *env[] = {"SOFTADASTRA_LISTN=:8091", NULL};
  const char *args[] = {"--listen", ":0", NULL}; /* after the default --listen 127.0.0.1:0 */
  ck_assert_int_eq(e2e_node_start(&n, args, env, NULL), 0);
  char *log = e2e_read_file(n.log, NULL);
  has(log, "softadastra serve: warning: unknown variable SOFTADASTRA_LISTN is ignored; did you "
           "mean SOFTADASTRA_LISTEN?\n");
  free(log);
  char *out = e2e_read_file(n.out, NULL);
  has(out, " listening on http://127.0.0.1:");
  free(out);
  ck_assert_int_eq(e2e_node_stop(&n, SIGTERM), 0);
  e2e_node_cleanup(&n);
  char *err = NULL;
  const char *bad[] = {"serve", "--listen", "8091", NULL};
  ck_assert_int_eq(e2e_cli(NULL, bad, NULL, &out, &err), 2);
  has(err, "softadastra serve: invalid setting \"listen\" (flag --listen): \"8091\" is not "
           "ADDR:PORT");
  free(out);
  free(err);
  const char *help[] = {"--help", NULL};
  ck_assert_int_eq(e2e_cli(NULL, help, NULL, &out, &err), 0);
  has(out, "softadastra print-default-config");
  free(out);
  free(err);
}
END_TEST

START_TEST(test_node_not_running) {
  char *out = NULL, *err = NULL;
  const char *args[] = {"status", "--url", "http://127.0.0.1:1", NULL};
  ck_assert_int_eq(e2e_cli(NULL, args, NULL, &out, &err), 1);
  has(err, "cannot reach the node at http://127.0.0.1:1: connection refused");
  /* one clear line */
  ck_assert_ptr_eq(strchr(err, '\n'), err + strlen(err) - 1);
  free(out);
  free(err);
  /* SOFTADASTRA_URL is used when --url is absent */
  e2e_node fake = {.port = 1};
  snprintf(fake.url, sizeof fake.url, "http://127.0.0.1:1");
  const char *args2[] = {"health", NULL};
  ck_assert_int_eq(e2e_cli(&fake, args2, NULL, &out, &err), 1);
  has(err, "http://127.0.0.1:1");
  free(out);
  free(err);
}
END_TEST

/* The offline WAL tools, on the WAL of a stopped node. */
START_TEST(test_wal_tools) {
  e2e_node n;
  e2e_node_init(&n);
  ck_assert_int_eq(e2e_node_start(&n, NULL, NULL, NULL), 0);
  for (int i = 0; i < 3; i++) {
    char path[64];
    snprintf(path, sizeof path, "/v1/store/w%d", i);
    e2e_resp r;
    ck_assert_int_eq(e2e_http(&n, "PUT", path, NULL, "value", 5, &r), 0);
    ck_assert_int_eq(r.status, 201);
    e2e_resp_free(&r);
  }
  ck_assert_int_eq(e2e_node_stop(&n, SIGKILL), 128 + SIGKILL);
  char wal[400];
  snprintf(wal, sizeof wal, "%s/node-1.wal", n.data_dir);
  char *out = NULL, *err = NULL;
  const char *inspect[] = {"wal", "inspect", wal, NULL};
  ck_assert_int_eq(e2e_cli(NULL, inspect, NULL, &out, &err), 0);
  has(out, "  node id  : node-1\n");
  has(out, "  records  : 3\n");
  has(out, "  state    : clean\n");
  has(out, "put     w2 (5 bytes)  crc ok");
  free(out);
  free(err);
  const char *inspect_json[] = {"wal", "inspect", wal, "--json", NULL};
  ck_assert_int_eq(e2e_cli(NULL, inspect_json, NULL, &out, &err), 0);
  json_t *j = json_loads(out, 0, NULL);
  ck_assert_int_eq(json_array_size(json_object_get(j, "records_list")), 3);
  json_decref(j);
  free(out);
  free(err);
  const char *verify[] = {"wal", "verify", wal, NULL};
  ck_assert_int_eq(e2e_cli(NULL, verify, NULL, &out, &err), 0);
  free(out);
  free(err);
  const char *repair[] = {"wal", "repair", wal, NULL};
  ck_assert_int_eq(e2e_cli(NULL, repair, NULL, &out, &err), 0);
  has(out, "nothing to repair");
  free(out);
  free(err);

  /* Corrupt the first record's payload: good records follow, so corrupt. */
  int fd = open(wal, O_RDWR);
  ck_assert_int_ge(fd, 0);
  char b;
  ck_assert_int_eq(pread(fd, &b, 1, 128 + 40), 1);
  b = (char)(b ^ 0x55);
  ck_assert_int_eq(pwrite(fd, &b, 1, 128 + 40), 1);
  close(fd);
  ck_assert_int_eq(e2e_cli(NULL, verify, NULL, &out, &err), 1);
  has(out, "  state    : corrupt\n");
  has(out, "wal repair");
  free(out);
  free(err);
  /* The node refuses to start on it, naming the file. */
  int code = -1;
  ck_assert_int_eq(e2e_node_start(&n, NULL, NULL, &code), -1);
  ck_assert_int_eq(code, 1);
  char *log = e2e_read_file(n.log, NULL);
  has(log, "node-1.wal");
  free(log);
  ck_assert_int_eq(e2e_cli(NULL, repair, NULL, &out, &err), 0);
  has(out, "the original is kept in ");
  free(out);
  free(err);
  ck_assert_int_eq(e2e_cli(NULL, verify, NULL, &out, &err), 0);
  has(out, "  state    : clean\n");
  free(out);
  free(err);
  ck_assert_int_eq(e2e_node_start(&n, NULL, NULL, NULL), 0);
  /* repair refuses a WAL a running node holds */
  ck_assert_int_eq(e2e_cli(NULL, repair, NULL, &out, &err), 1);
  has(err, "lock");
  free(out);
  free(err);
  ck_assert_int_eq(e2e_node_stop(&n, SIGTERM), 0);

  const char *missing[] = {"wal", "verify", "/nonexistent/x.wal", NULL};
  ck_assert_int_eq(e2e_cli(NULL, missing, NULL, &out, &err), 3);
  has(err, "/nonexistent/x.wal");
  free(out);
  free(err);
  e2e_node_cleanup(&n);
}
END_TEST

static Suite *e2e_cli_suite(void) {
  Suite *s = suite_create("e2e_cli");
  TCase *tc = tcase_create("cli");
  tcase_add_unchecked_fixture(tc, node_up, node_down);
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_guide_session);
  tcase_add_test(tc, test_store_commands);
  tcase_add_test(tc, test_health);
  tcase_add_test(tc, test_sync_tick);
  tcase_add_test(tc, test_usage_errors);
  tcase_add_test(tc, test_explains_itself);
  tcase_add_test(tc, test_binary_values);
  tcase_add_test(tc, test_content_type);
  tcase_add_test(tc, test_rm_prefix);
  tcase_add_test(tc, test_scripts);
  tcase_add_test(tc, test_watch_no_node);
  tcase_add_test(tc, test_watch_node_killed);
  tcase_add_test(tc, test_unauthorized_names_the_token);
  tcase_add_test(tc, test_serve_config_messages);
  tcase_add_test(tc, test_node_not_running);
  tcase_add_test(tc, test_wal_tools);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
  SRunner *sr = srunner_create(e2e_cli_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  curl_global_cleanup();
  return failed ? 1 : 0;
}
