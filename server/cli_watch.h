/*
 * cli_watch.h -- `softadastra watch [--prefix P] [--since N] [--retry-for D]
 * [--json]`:
 * follows a node's change feed (GET /v1/changes as Server-Sent Events, read
 * with a libcurl write callback) and prints one line per change as it
 * happens.
 *
 * Output: "2026-11-23T23:40:01.123Z  lsn 12  put     settings/theme  (version 3, 4 bytes)"
 * per change, or the change's JSON (one object per line) with --json.
 * Trouble is said once, in the node's terms, on stderr: "the node closed
 * the stream; reconnecting" when a stream ends without the node's goodbye
 * (it was killed, the connection broke), "cannot reach the node at URL:
 * connection refused; retrying" when it does not answer.  Then it retries
 * quietly with pauses doubling from 250 ms to 10 s, resuming with
 * Last-Event-ID, for --retry-for (default: forever).  Exit codes: 0 after
 * SIGINT/SIGTERM or when the node shuts down, 1 when the node has not
 * answered for --retry-for, refuses the token, or --since is older than
 * what the node keeps (410).
 *
 * Threads: single-threaded; installs SIGINT/SIGTERM handlers for its run.
 */
#ifndef SA_CLI_WATCH_H
#define SA_CLI_WATCH_H

#include "cli_cmd.h"

/* Runs `watch` with the options cli.c parsed (url, token, json, prefix,
 * since).  Returns the exit code. */
int cli_watch_run(const cli_opts *o);

#endif /* SA_CLI_WATCH_H */
