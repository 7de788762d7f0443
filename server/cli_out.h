/*
 * cli_out.h -- the CLI's output: one-line error messages on stderr, the
 * mapping of a node's error answer to a message and an exit code, and the
 * small accessors the human formats use to read the node's JSON.
 *
 * What it is not: it sends no request (cli_http.h) and knows no command.
 *
 * Invariants: every error line starts with "softadastra: " and ends with one
 * newline; with JSON errors on, stdout gets at most one error object per
 * run; an accessor never fails (a missing or mistyped member reads as
 * 0, "" or "no").
 *
 * Threads: the CLI's single thread.
 */
#ifndef SA_CLI_OUT_H
#define SA_CLI_OUT_H

#include <jansson.h>
#include <stdbool.h>

#include "cli.h"
#include "cli_http.h"

/* Turns JSON errors on or off (off at start): with them on, the first
 * error of the run is also printed on stdout as one line
 * {"error":{"code":...,"message":...}} (plus "status", the HTTP status,
 * when the node answered), for scripts that run with --json. */
void cli_out_json_errors(bool on);

/* Prints "softadastra: <message>\n" on stderr (and the JSON error, code
 * "failed", when JSON errors are on). */
void cli_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The same with the JSON error's code ("usage", "unreachable", ...). */
void cli_errc(const char *code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prints the node's error for a non-2xx answer (what names the command)
 * and returns the exit code: CLI_NOTFOUND for a 404 not_found, else
 * CLI_FAIL. */
int cli_fail_from_response(long status, const cli_buf *b, const char *what);

/* Prints a successful answer in the human form; j is the parsed body. */
typedef void (*cli_print_fn)(json_t *j, void *ctx);

/* The end of every command's exchange: a status other than ok1 or ok2 is
 * an error (cli_fail_from_response); with json the body is printed as is;
 * else it is parsed and handed to print (ctx passed along).  Frees
 * b->data.  Returns the exit code. */
int cli_answer(bool json, long status, cli_buf *b, long ok1, long ok2, const char *what,
               cli_print_fn print, void *ctx);

/* Parses the node's JSON answer; NULL (after a message) when it is not
 * JSON. */
json_t *cli_parse(const cli_buf *b);

/* Prints the node's answer as is, ending in a newline. */
void cli_print_json(const cli_buf *b);

/* o[path1][path2] (path2 may be NULL) as an integer (0 when absent), a
 * string ("" when absent) or "yes"/"no". */
long long cli_int(json_t *o, const char *path1, const char *path2);
const char *cli_str(json_t *o, const char *path1, const char *path2);
const char *cli_yes(json_t *o, const char *path1, const char *path2);

#endif /* SA_CLI_OUT_H */
