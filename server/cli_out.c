/*
 * cli_out.c -- the CLI's messages and JSON accessors (see cli_out.h).
 *
 * What it is: the single place that turns a node's error answer into a
 * message and an exit code.  What it is not: a formatter of any command's
 * success output (each command prints its own block).
 *
 * Threads: the CLI's single thread.
 */
#include "cli_out.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool cli_json_errors;  /* set by cli_out_json_errors */
static bool cli_json_printed; /* an error object went to stdout already */

void cli_out_json_errors(bool on) {
  cli_json_errors = on;
}

/* The error object on stdout, once per run, when JSON errors are on. */
static void cli_json_error(const char *code, const char *msg, long status) {
  if (!cli_json_errors || cli_json_printed) return;
  cli_json_printed = true;
  json_t *e = json_pack("{s:s,s:s}", "code", code, "message", msg);
  if (e && status > 0) json_object_set_new(e, "status", json_integer(status));
  json_t *j = e ? json_pack("{s:o}", "error", e) : NULL;
  char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
  if (s)
    printf("%s\n", s);
  else /* out of memory or a message that is not UTF-8: still one object */
    printf("{\"error\":{\"code\":\"%s\",\"message\":\"(unprintable)\"}}\n", code);
  fflush(stdout);
  free(s);
  json_decref(j);
}

static void cli_verr(const char *code, long status, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
static void cli_verr(const char *code, long status, const char *fmt, va_list ap) {
  char msg[1024];
  vsnprintf(msg, sizeof msg, fmt, ap);
  fprintf(stderr, "softadastra: %s\n", msg);
  cli_json_error(code, msg, status);
}

void cli_err(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  cli_verr("failed", 0, fmt, ap);
  va_end(ap);
}

void cli_errc(const char *code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  cli_verr(code, 0, fmt, ap);
  va_end(ap);
}

/* cli_errc with the HTTP status in the JSON error. */
static void cli_errs(const char *code, long status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void cli_errs(const char *code, long status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  cli_verr(code, status, fmt, ap);
  va_end(ap);
}

int cli_fail_from_response(long status, const cli_buf *b, const char *what) {
  json_t *j = json_loadb(b->data ? b->data : "", b->len, 0, NULL);
  const char *code = NULL, *msg = NULL;
  json_unpack(j, "{s:{s:s,s:s}}", "error", "code", &code, "message", &msg);
  if (status == 401)
    cli_errs(code ? code : "unauthorized", status,
             "%s: the node wants its token (HTTP 401): pass --token TOKEN or set "
             "SOFTADASTRA_TOKEN (the node's auth_token)",
             what);
  else if (msg)
    cli_errs(code, status, "%s: %s (HTTP %ld %s)", what, msg, status, code);
  else
    cli_errs("http_error", status, "%s: HTTP %ld", what, status);
  int rc = (status == 404 && code && strcmp(code, "not_found") == 0) ? CLI_NOTFOUND : CLI_FAIL;
  json_decref(j);
  return rc;
}

int cli_answer(bool json, long status, cli_buf *b, long ok1, long ok2, const char *what,
               cli_print_fn print, void *ctx) {
  int rc = CLI_OK;
  if (status != ok1 && status != ok2) {
    rc = cli_fail_from_response(status, b, what);
  } else if (json) {
    cli_print_json(b);
  } else {
    json_t *j = cli_parse(b);
    if (j)
      print(j, ctx);
    else
      rc = CLI_FAIL;
    json_decref(j);
  }
  free(b->data);
  b->data = NULL;
  return rc;
}

json_t *cli_parse(const cli_buf *b) {
  json_t *j = json_loadb(b->data, b->len, JSON_ALLOW_NUL, NULL);
  if (!j) cli_errc("bad_answer", "the node answered something that is not JSON");
  return j;
}

void cli_print_json(const cli_buf *b) {
  fwrite(b->data, 1, b->len, stdout);
  if (b->len == 0 || b->data[b->len - 1] != '\n') putchar('\n');
}

long long cli_int(json_t *o, const char *path1, const char *path2) {
  json_t *v = json_object_get(o, path1);
  if (path2) v = json_object_get(v, path2);
  return json_is_integer(v) ? (long long)json_integer_value(v) : 0;
}

const char *cli_str(json_t *o, const char *path1, const char *path2) {
  json_t *v = json_object_get(o, path1);
  if (path2) v = json_object_get(v, path2);
  return json_is_string(v) ? json_string_value(v) : "";
}

const char *cli_yes(json_t *o, const char *path1, const char *path2) {
  json_t *v = json_object_get(o, path1);
  if (path2) v = json_object_get(v, path2);
  return json_is_true(v) ? "yes" : "no";
}
