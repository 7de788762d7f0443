/*
 * main.c -- the `softadastra` executable: dispatches to `serve` (srv.c) or
 * to a client subcommand (cli.c), and prints the usage text.  For `serve`
 * it prints the warnings of the configuration (cfg_env_check) and its
 * error, each as one "softadastra serve: ..." line on stderr.
 * What it is not: the parser of either (cfg.c, cli.c).
 * Threads: the main thread, before any other starts.
 * Exit codes: 0 ok, 1 failure, 2 usage error, 3 not found.
 */
#include <stdio.h>
#include <string.h>

#include "cfg.h"
#include "cli.h"
#include "cli_backup.h"
#include "softadastra.h"
#include "srv.h"

extern char **environ;

static void main_usage(FILE *f) {
  fputs(
      "softadastra " SA_VERSION_STRING " -- a local-first key-value node\n"
      "\n"
      "    Write locally.  Persist locally.  Recover later.  Sync when a peer is there.\n"
      "\n"
      "Usage: softadastra serve [FLAGS]        run a node (softadastra serve --help)\n"
      "       softadastra COMMAND [ARGS]       talk to a running node\n"
      "       softadastra print-default-config  every setting with its default, as a config file\n"
      "       softadastra backup DEST | backup verify FILE | restore FILE --data-dir DIR\n"
      "                                        online backup and restore (softadastra backup "
      "--help)\n"
      "       softadastra --version | --help\n"
      "\n",
      f);
  cli_print_help(f);
  fputs("\nServe flags (precedence: flags > SOFTADASTRA_* environment > --config file > "
        "defaults):\n",
        f);
  cfg_print_help(f);
}

static int main_serve(int argc, char **argv) {
  cfg_config cfg;
  char err[CFG_ERR_MAX] = "";
  bool help = false;
  int rc = cfg_load(&cfg, argc, argv, environ, &help, err, sizeof err);
  if (!help) { /* a misspelled variable is ignored: say so first, it may explain what follows */
    char warn[2048];
    if (cfg_env_check(environ, warn, sizeof warn) > 0) {
      for (char *line = warn, *nl; *line; line = nl + 1) {
        nl = strchr(line, '\n');
        if (!nl) break;
        fprintf(stderr, "softadastra serve: warning: %.*s\n", (int)(nl - line), line);
      }
    }
  }
  if (help) {
    fputs("Usage: softadastra serve [FLAGS]\n"
          "Runs a node: opens (and recovers) the WAL and the store, then serves the HTTP API.\n"
          "Precedence: flags > SOFTADASTRA_* environment > --config file > defaults.\n\n",
          stdout);
    cfg_print_help(stdout);
    cfg_free(&cfg);
    return 0;
  }
  if (rc != CFG_OK) {
    fprintf(stderr, "softadastra serve: %s\n", err[0] ? err : "out of memory");
    cfg_free(&cfg);
    return rc == CFG_ENOMEM ? 1 : 2;
  }
  rc = srv_serve(&cfg);
  cfg_free(&cfg);
  return rc;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    main_usage(stderr);
    return 2;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
    main_usage(stdout);
    return 0;
  }
  if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
    printf("softadastra %s\n", sa_version());
    return 0;
  }
  if (!strcmp(cmd, "serve")) return main_serve(argc - 2, argv + 2);
  if (!strcmp(cmd, "print-default-config")) {
    cfg_write_defaults(stdout);
    return 0;
  }
  if (!strcmp(cmd, "backup") || !strcmp(cmd, "restore")) /* cli_backup.c */
    return cli_backup_main(argc - 1, argv + 1);
  return cli_main(argc - 1, argv + 1);
}
