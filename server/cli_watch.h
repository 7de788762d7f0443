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
 * than what the node keeps (410), 2 usage.
 *
 * Threads: single-threaded; installs SIGINT/SIGTERM handlers for its run.
 */
#ifndef SA_CLI_WATCH_H
#define SA_CLI_WATCH_H

/* Runs `watch`.  argv[0] is "watch"; options: --url, --token, --json,
 * --prefix, --since (and SOFTADASTRA_URL / SOFTADASTRA_TOKEN).  Returns the
 * exit code. */
int cli_watch_main(int argc, char **argv);

#endif /* SA_CLI_WATCH_H */
