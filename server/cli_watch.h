/*
 * cli_watch.h -- `softadastra watch [--prefix P] [--since N] [--json]`:
 * follows a node's change feed (GET /v1/changes as Server-Sent Events, read
 * with a libcurl write callback) and prints one line per change as it
 * happens.
 *
 * Output: "2026-11-23T23:40:01.123Z  lsn 12  put     settings/theme  (version 3, 4 bytes)"
 * per change, or the change's JSON (one object per line) with --json.
 * Resumes with Last-Event-ID when the stream drops without the node saying
 * goodbye (a few attempts).  Exit codes: 0 after SIGINT/SIGTERM or when the
 * node shuts down, 1 when the node cannot be reached or --since is older
 * than what the node keeps (410).
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
