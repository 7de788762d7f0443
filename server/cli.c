/*
 * cli.c -- the client side's entry: the usage text, option parsing and the
 * dispatch of `softadastra COMMAND ...` to the commands of cli_cmd.h (and
 * `watch` to cli_watch.c).
 *
 * What it is not: a command (cli_node.c, cli_store.c, cli_wal.c), the HTTP
 * client (cli_http.c) or the output helpers (cli_out.c).
 *
 * Invariants: global options (--url, --token, --json) may appear anywhere;
 * after "--" every argument is positional; a usage error prints one line
 * and exits CLI_USAGE before any request is sent.
 *
 * Threads: the CLI's single thread; cli_main brackets the run with
 * curl_global_init/cleanup.
 */
#include "cli.h"

#include <curl/curl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_cmd.h"
#include "cli_out.h"
#include "cli_watch.h"

void cli_print_help(FILE *f) {
  fputs("Client commands (talk HTTP to a node at --url, SOFTADASTRA_URL, default " CLI_DEFAULT_URL
        "):\n"
        "  status                         node, WAL, store and sync summary\n"
        "  health                         liveness (GET /healthz, no token needed): ok or exit 1\n"
        "  store put KEY VALUE            write a value (VALUE - reads stdin)\n"
        "        [--if-match VERSION]     only if the key has this version\n"
        "        [--create]               only if the key does not exist\n"
        "  store get KEY [--raw]          read a value (--raw: the bytes alone)\n"
        "  store rm KEY [--if-match V]    remove a key\n"
        "  store ls [--prefix P] [--limit N]  list keys in order\n"
        "  sync status                    outbox and transport state\n"
        "  watch [--prefix P] [--since N|now]  follow the change feed, one line per change\n"
        "                                 (from now unless --since; Ctrl-C stops)\n"
        "  sync tick                      run one outbox tick now, then show the state\n"
        "Offline WAL tools (the node must not run on the file):\n"
        "  wal inspect FILE               header, records, LSNs, CRC state\n"
        "  wal verify FILE                check the file (exit 1 when corrupt)\n"
        "  wal repair FILE                truncate at the first bad record, keeping a copy\n"
        "Client options:\n"
        "  --url URL                      node URL (env SOFTADASTRA_URL)\n"
        "  --token TOKEN                  bearer token (env SOFTADASTRA_TOKEN)\n"
        "  --json                         print JSON for scripts\n"
        "  --                             what follows is KEY/VALUE even if it starts with --\n"
        "Exit codes: 0 ok, 1 failure, 2 usage, 3 not found.\n",
        f);
}

static int cli_usage(const char *msg) {
  cli_err("%s (see softadastra --help)", msg);
  return CLI_USAGE;
}

int cli_main(int argc, char **argv) {
  if (argc > 0 && !strcmp(argv[0], "watch")) return cli_watch_main(argc, argv); /* cli_watch.c */
  cli_opts o = {
      .url = getenv("SOFTADASTRA_URL"), .token = getenv("SOFTADASTRA_TOKEN"), .limit = -1};
  if (!o.url || !*o.url) o.url = CLI_DEFAULT_URL;
  char **pos = calloc((size_t)argc + 1, sizeof *pos);
  if (!pos) return CLI_FAIL;
  int np = 0;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    bool has_next = i + 1 < argc;
    if (!strcmp(a, "--")) { /* the rest is positional: values may start with "--" */
      while (++i < argc)
        pos[np++] = argv[i];
      break;
    }
    if (!strcmp(a, "--json"))
      o.json = true;
    else if (!strcmp(a, "--raw"))
      o.raw = true;
    else if (!strcmp(a, "--create"))
      o.create_only = true;
    else if (!strcmp(a, "--url") && has_next)
      o.url = argv[++i];
    else if (!strncmp(a, "--url=", 6))
      o.url = a + 6;
    else if (!strcmp(a, "--token") && has_next)
      o.token = argv[++i];
    else if (!strncmp(a, "--token=", 8))
      o.token = a + 8;
    else if (!strcmp(a, "--prefix") && has_next)
      o.prefix = argv[++i];
    else if (!strncmp(a, "--prefix=", 9))
      o.prefix = a + 9;
    else if (!strcmp(a, "--if-match") && has_next)
      o.if_match = argv[++i];
    else if ((!strcmp(a, "--limit") && has_next) || !strncmp(a, "--limit=", 8)) {
      const char *v = a[7] == '=' ? a + 8 : argv[++i];
      char *end;
      long l = strtol(v, &end, 10);
      if (*v == '\0' || *end || l < 1) {
        free(pos);
        return cli_usage("--limit needs a positive integer");
      }
      o.limit = l;
    } else if (a[0] == '-' && a[1] == '-' && a[2]) {
      fprintf(stderr, "softadastra: unknown option %s (see softadastra --help)\n", a);
      free(pos);
      return CLI_USAGE;
    } else
      pos[np++] = argv[i];
  }
  int rc = -1;
  const char *c0 = np > 0 ? pos[0] : "", *c1 = np > 1 ? pos[1] : "";
  if (o.if_match) {
    bool digits = o.if_match[0] != '\0';
    for (const char *p = o.if_match; *p; p++)
      digits = digits && *p >= '0' && *p <= '9';
    if (!digits) rc = cli_usage("--if-match needs a version number");
  }
  curl_global_init(CURL_GLOBAL_DEFAULT);
  if (rc != -1) {
    /* usage error already reported */
  } else if (!strcmp(c0, "status") && np == 1) {
    rc = cli_status(&o);
  } else if (!strcmp(c0, "health") && np == 1) {
    rc = cli_health(&o);
  } else if (!strcmp(c0, "sync") && !strcmp(c1, "status") && np == 2) {
    rc = cli_sync_status(&o, false);
  } else if (!strcmp(c0, "sync") && !strcmp(c1, "tick") && np == 2) {
    rc = cli_sync_status(&o, true);
  } else if (!strcmp(c0, "store") && !strcmp(c1, "put")) {
    rc = np == 4 ? cli_store_put(&o, pos[2], pos[3]) : cli_usage("usage: store put KEY VALUE");
  } else if (!strcmp(c0, "store") && !strcmp(c1, "get")) {
    rc = np == 3 ? cli_store_get(&o, pos[2]) : cli_usage("usage: store get KEY");
  } else if (!strcmp(c0, "store") && (!strcmp(c1, "rm") || !strcmp(c1, "delete"))) {
    rc = np == 3 ? cli_store_rm(&o, pos[2]) : cli_usage("usage: store rm KEY");
  } else if (!strcmp(c0, "store") && (!strcmp(c1, "ls") || !strcmp(c1, "list"))) {
    rc = np == 2 ? cli_store_ls(&o) : cli_usage("usage: store ls [--prefix P] [--limit N]");
  } else if (!strcmp(c0, "wal") &&
             (!strcmp(c1, "inspect") || !strcmp(c1, "verify") || !strcmp(c1, "repair"))) {
    rc = np == 3 ? cli_wal(&o, c1, pos[2]) : cli_usage("usage: wal inspect|verify|repair FILE");
  } else {
    char msg[256];
    snprintf(msg, sizeof msg, "unknown command \"%s%s%s\"", c0, np > 1 ? " " : "", c1);
    rc = cli_usage(msg);
  }
  curl_global_cleanup();
  free(pos);
  return rc;
}
