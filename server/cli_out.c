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
#include <string.h>

void cli_err(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("softadastra: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

int cli_fail_from_response(long status, const cli_buf *b, const char *what) {
  json_t *j = json_loadb(b->data ? b->data : "", b->len, 0, NULL);
  const char *code = NULL, *msg = NULL;
  json_unpack(j, "{s:{s:s,s:s}}", "error", "code", &code, "message", &msg);
  if (msg)
    cli_err("%s: %s (HTTP %ld %s)", what, msg, status, code);
  else
    cli_err("%s: HTTP %ld", what, status);
  int rc = (status == 404 && code && strcmp(code, "not_found") == 0) ? CLI_NOTFOUND : CLI_FAIL;
  json_decref(j);
  return rc;
}

json_t *cli_parse(const cli_buf *b) {
  json_t *j = json_loadb(b->data, b->len, JSON_ALLOW_NUL, NULL);
  if (!j) cli_err("the node answered something that is not JSON");
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
