/*
 * cli.h -- the client subcommands of the `softadastra` executable: status,
 * health, store put/get/rm/ls/batch, sync status/tick and watch (HTTP to a
 * node with libcurl) and wal inspect/verify/repair (offline, through the
 * core's WAL tools).
 *
 * Where things are: cli.c (the command table, --help texts, option
 * parsing, dispatch), cli_http.c (the libcurl client), cli_out.c (errors
 * and exit codes), cli_node.c, cli_store.c, cli_wal.c, cli_watch.c (the
 * commands).
 *
 * Output: human text in the guide's aligned "  key      : value" style, or
 * the node's JSON with --json (errors then also as one JSON object on
 * stdout).  Exit codes: CLI_OK 0, CLI_FAIL 1, CLI_USAGE 2, CLI_NOTFOUND 3.
 * A node that does not answer gives one line naming the URL.
 *
 * Threads: single-threaded; cli_main calls curl_global_init itself.
 */
#ifndef SA_CLI_H
#define SA_CLI_H

#include <stdio.h>

enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2, CLI_NOTFOUND = 3 };

/* Runs one client subcommand.  argv[0] is the subcommand ("status",
 * "store", "sync", "watch", "wal"); the global options (--url, --json,
 * --token, --help) may appear anywhere.  SOFTADASTRA_URL and
 * SOFTADASTRA_TOKEN come from the environment.  Returns the exit code. */
int cli_main(int argc, char **argv);

/* Writes the client part of the usage text to f. */
void cli_print_help(FILE *f);

#endif /* SA_CLI_H */
