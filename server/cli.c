/*
 * cli.c -- the client side's entry: the command table, the usage texts,
 * option parsing and the dispatch of `softadastra COMMAND ...` to the
 * commands of cli_cmd.h.
 *
 * What it is not: a command (cli_node.c, cli_store.c, cli_wal.c,
 * cli_watch.c), the HTTP client (cli_http.c) or the output helpers
 * (cli_out.c).
 *
 * Invariants: cli_cmds[] is the one description of every command (its
 * words, positional arguments, options, usage and help); the top-level
 * help, each command's --help and the checks below all read it.  Global
 * options (--url, --token, --json, --help) may appear anywhere; after "--"
 * every argument is positional.  A usage error (unknown command or option,
 * an option without its value, an option the command does not take,
 * contradictory options, a wrong argument count) prints one line naming
 * the problem and returns CLI_USAGE before any request is sent; --help
 * prints the usage on stdout and returns CLI_OK.
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
#include "softadastra.h"

/* Options a command may take besides the global ones. */
enum {
  CLI_O_RAW = 1u << 0,
  CLI_O_CREATE = 1u << 1,
  CLI_O_IF_MATCH = 1u << 2,
  CLI_O_PREFIX = 1u << 3,
  CLI_O_LIMIT = 1u << 4,
  CLI_O_SINCE = 1u << 5,
  CLI_O_AFTER = 1u << 6,
  CLI_O_RETRY_FOR = 1u << 7,
  CLI_O_FROM_NOW = 1u << 8,
  CLI_O_FILE = 1u << 9,
  CLI_O_VALUE = 1u << 10,
  CLI_O_OUTPUT = 1u << 11,
  CLI_O_YES = 1u << 12,
  CLI_O_CTYPE = 1u << 13,
};

typedef struct cli_optdef {
  const char *name; /* "--prefix" */
  unsigned bit;     /* 0: a global option */
  bool value;       /* takes a value */
} cli_optdef;

static const cli_optdef cli_optdefs[] = {
    {"--url", 0, true},
    {"--token", 0, true},
    {"--json", 0, false},
    {"--raw", CLI_O_RAW, false},
    {"--create", CLI_O_CREATE, false},
    {"--if-match", CLI_O_IF_MATCH, true},
    {"--prefix", CLI_O_PREFIX, true},
    {"--limit", CLI_O_LIMIT, true},
    {"--since", CLI_O_SINCE, true},
    {"--after", CLI_O_AFTER, true},
    {"--retry-for", CLI_O_RETRY_FOR, true},
    {"--from-now", CLI_O_FROM_NOW, false},
    {"--file", CLI_O_FILE, true},
    {"--value", CLI_O_VALUE, true},
    {"--output", CLI_O_OUTPUT, true},
    {"--yes", CLI_O_YES, false},
    {"--content-type", CLI_O_CTYPE, true},
};
#define CLI_NOPTDEFS (sizeof cli_optdefs / sizeof cli_optdefs[0])

typedef int (*cli_run_fn)(const cli_opts *o, char **args);

typedef struct cli_cmd {
  const char *group; /* "store", or NULL for a one-word command */
  const char *name;  /* "put" (or the command itself when group is NULL) */
  const char *alias; /* another name, or NULL */
  int nargs;         /* positional arguments after the command words */
  unsigned opts;     /* CLI_O_* it takes */
  const char *args;  /* "KEY VALUE [--if-match VERSION | --create]" */
  const char *brief; /* one line for the command list */
  const char *help;  /* what --help adds: what it does, its options */
  cli_run_fn run;
} cli_cmd;

static int cli_run_status(const cli_opts *o, char **a) {
  (void)a;
  return cli_status(o);
}
static int cli_run_health(const cli_opts *o, char **a) {
  (void)a;
  return cli_health(o);
}
static int cli_run_sync_status(const cli_opts *o, char **a) {
  (void)a;
  return cli_sync_status(o, false);
}
static int cli_run_sync_tick(const cli_opts *o, char **a) {
  (void)a;
  return cli_sync_status(o, true);
}
static int cli_run_peers(const cli_opts *o, char **a) {
  (void)a;
  return cli_peers(o);
}
static int cli_run_sync_digest(const cli_opts *o, char **a) {
  (void)a;
  return cli_sync_digest(o);
}
static int cli_run_put(const cli_opts *o, char **a) {
  return cli_store_put(o, a[0], o->file || o->value ? NULL : a[1]);
}
static int cli_run_get(const cli_opts *o, char **a) {
  return cli_store_get(o, a[0]);
}
static int cli_run_rm(const cli_opts *o, char **a) {
  if (o->prefix) return cli_store_rm_prefix(o);
  return cli_store_rm(o, a[0]);
}
static int cli_run_ls(const cli_opts *o, char **a) {
  (void)a;
  return cli_store_ls(o);
}
static int cli_run_batch(const cli_opts *o, char **a) {
  return cli_store_batch(o, a[0]);
}
static int cli_run_watch(const cli_opts *o, char **a) {
  (void)a;
  return cli_watch_run(o);
}
static int cli_run_inspect(const cli_opts *o, char **a) {
  return cli_wal(o, "inspect", a[0]);
}
static int cli_run_verify(const cli_opts *o, char **a) {
  return cli_wal(o, "verify", a[0]);
}
static int cli_run_repair(const cli_opts *o, char **a) {
  return cli_wal(o, "repair", a[0]);
}

static const cli_cmd cli_cmds[] = {
    {NULL, "status", NULL, 0, 0, "", "node, WAL, store and sync summary",
     "Asks the node for its state (GET /v1/status): id, version, uptime, the WAL, the number\n"
     "of keys, and the outbox.\n",
     cli_run_status},
    {NULL, "health", NULL, 0, 0, "", "liveness (GET /healthz, no token needed): ok or exit 1",
     "Prints ok when the node answers GET /healthz, else fails (exit 1).\n", cli_run_health},
    {"store", "put", NULL, 2,
     CLI_O_IF_MATCH | CLI_O_CREATE | CLI_O_FILE | CLI_O_VALUE | CLI_O_CTYPE,
     "KEY VALUE|--file F|--value V [--content-type T] [--if-match VERSION | --create]",
     "write a value (VALUE - reads stdin)",
     "Writes VALUE under KEY (PUT /v1/store/KEY); VALUE - reads the value from stdin.\n"
     "Values are bytes: NUL bytes and any binary data are stored as they are.\n"
     "  --file F             the value is the bytes of file F (- reads stdin)\n"
     "  --value V            the value is V literally, even - or --x (store a lone dash\n"
     "                       with --value -)\n"
     "  --content-type T     keep the media type T with the value (application/json,\n"
     "                       image/png, text/plain; charset=utf-8): GET ?raw=1 answers with\n"
     "                       it.  Without it the value has none (served as\n"
     "                       application/octet-stream)\n"
     "  --if-match VERSION   only if the key has this version (else exit 1, HTTP 412)\n"
     "  --create             only if the key does not exist yet\n",
     cli_run_put},
    {"store", "get", NULL, 1, CLI_O_RAW | CLI_O_OUTPUT, "KEY [--raw | -o FILE]",
     "read a value (--raw: the bytes alone)",
     "Reads KEY (GET /v1/store/KEY); exit 3 when it does not exist.  A binary value (NUL\n"
     "bytes, not UTF-8) is shown as its size: get its bytes with --raw or -o.  The value's\n"
     "content type is shown when it has one (type).\n"
     "  --raw                the value's bytes alone on stdout, all of them, nothing else\n"
     "  -o, --output FILE    write the value's bytes to FILE (- : stdout, like --raw)\n",
     cli_run_get},
    {"store", "rm", "delete", 1, CLI_O_IF_MATCH | CLI_O_PREFIX | CLI_O_YES,
     "KEY [--if-match VERSION] | --prefix P [--yes]", "remove a key, or every key under a prefix",
     "Removes KEY (DELETE /v1/store/KEY); exit 3 when it does not exist.\n"
     "  --if-match VERSION   only if the key has this version\n"
     "  --prefix P           instead of KEY: every key that starts with P, all in one WAL\n"
     "                       record (DELETE /v1/store?prefix=P; at most 10,000 keys).  Says\n"
     "                       how many keys and asks first on a terminal\n"
     "  --yes                do not ask (needed when stdin is not a terminal)\n",
     cli_run_rm},
    {"store", "ls", "list", 0, CLI_O_PREFIX | CLI_O_LIMIT | CLI_O_AFTER,
     "[--prefix P] [--limit N] [--after KEY]", "list keys in order",
     "Lists keys in byte order (GET /v1/store, following the node's pages).\n"
     "  --prefix P           only keys that start with P\n"
     "  --limit N            at most N keys\n"
     "  --after KEY          start after this key: with --json and --limit, pass the\n"
     "                       answer's \"next\" to get the next page (null: no more)\n",
     cli_run_ls},
    {"store", "batch", NULL, 1, 0, "FILE", "apply puts and deletes atomically (FILE - reads stdin)",
     "Applies the puts and deletes of FILE together, all or none (POST /v1/batch, one WAL\n"
     "record).  FILE (- for stdin) is JSON, [{\"op\":\"put\",\"key\":K,\"value\":V}, {\"op\":\n"
     "\"delete\",\"key\":K}, ...] or {\"ops\": [...]}, or lines:\n"
     "    put KEY VALUE      (KEY has no space; VALUE is the rest of the line)\n"
     "    delete KEY         (or del, rm; KEY is the rest of the line)\n"
     "  blank lines and lines starting with # are skipped.  A malformed file is refused\n"
     "  (exit 2, naming the line) before anything is sent.\n",
     cli_run_batch},
    {"sync", "status", NULL, 0, 0, "", "outbox and transport state",
     "Prints the outbox counters and the transport and discovery state (GET /v1/sync/status).\n",
     cli_run_sync_status},
    {"sync", "tick", NULL, 0, 0, "", "run one outbox tick now, then show the state",
     "Runs one outbox tick now (POST /v1/sync/tick) and prints the state after it.\n",
     cli_run_sync_tick},
    {"sync", "digest", NULL, 0, 0, "", "the convergence digest of the node's state",
     "Prints the digest of every live key's (key, value, hlc, origin) (GET /v1/sync/digest):\n"
     "two nodes holding the same state print the same digest.\n",
     cli_run_sync_digest},
    {NULL, "peers", NULL, 0, 0, "", "the peers the node pulls: node id, URL, state, lag",
     "Lists the peers of the node's http transport (GET /v1/sync/status): each one's node id\n"
     "(learned from the peer), URL, state (connected, unreachable, refusing, catching_up), lag\n"
     "in operations and milliseconds, and its last error.\n",
     cli_run_peers},
    {NULL, "watch", NULL, 0, CLI_O_PREFIX | CLI_O_SINCE | CLI_O_RETRY_FOR | CLI_O_FROM_NOW,
     "[--prefix P] [--since LSN|now] [--retry-for D] [--from-now]",
     "follow the change feed, one line per change",
     "Follows the node's change feed (GET /v1/changes as Server-Sent Events) and prints one\n"
     "line per change as it happens, from now unless --since.  Ctrl-C stops.\n"
     "  --prefix P           only keys that start with P\n"
     "  --since LSN|now      start after this LSN (default: now)\n"
     "  --retry-for D        when the node does not answer, retry this long (500ms, 30s,\n"
     "                       5m, 2h), then exit 1; default: forever.  Trouble is said once.\n"
     "  --from-now           when the node refuses the position (ahead of it, from before a\n"
     "                       restore: another epoch, or no longer kept), start over from its\n"
     "                       current position instead of exiting 1 (the changes in between\n"
     "                       are not shown)\n",
     cli_run_watch},
    {"wal", "inspect", NULL, 1, 0, "FILE", "header, records, LSNs, CRC state",
     "Reads a WAL file offline (the node must not run on it): header, each record, state.\n",
     cli_run_inspect},
    {"wal", "verify", NULL, 1, 0, "FILE", "check the file (exit 1 when corrupt)",
     "Checks a WAL file offline: clean, torn tail (cut at the next start) or corrupt (exit 1).\n",
     cli_run_verify},
    {"wal", "repair", NULL, 1, 0, "FILE", "truncate at the first bad record, keeping a copy",
     "Truncates a WAL file at its first bad record, keeping a copy of the original; refused\n"
     "while a node holds the file.\n",
     cli_run_repair},
};
#define CLI_NCMDS (sizeof cli_cmds / sizeof cli_cmds[0])

/* "store put" / "status" into buf. */
static const char *cli_cmd_words(const cli_cmd *c, char *buf, size_t len) {
  snprintf(buf, len, "%s%s%s", c->group ? c->group : "", c->group ? " " : "", c->name);
  return buf;
}

static bool cli_is_group(const char *w) {
  for (size_t i = 0; i < CLI_NCMDS; i++)
    if (cli_cmds[i].group && !strcmp(cli_cmds[i].group, w)) return true;
  return false;
}

/* One line of a command list: left in a column of width, else on its own
 * line with brief under the column. */
static void cli_print_line(FILE *f, const char *left, const char *brief, int width) {
  if ((int)strlen(left) > width)
    fprintf(f, "  %s\n  %-*s %s\n", left, width, "", brief);
  else
    fprintf(f, "  %-*s %s\n", width, left, brief);
}

/* The subcommands of group, one line each. */
static void cli_print_group(FILE *f, const char *group) {
  fprintf(f, "usage: softadastra %s COMMAND [ARGS] [--url URL] [--token TOKEN] [--json]\n", group);
  fputs("commands:\n", f);
  for (size_t i = 0; i < CLI_NCMDS; i++) {
    const cli_cmd *c = &cli_cmds[i];
    if (!c->group || strcmp(c->group, group) != 0) continue;
    char left[96];
    snprintf(left, sizeof left, "%s %s", c->name, c->args);
    cli_print_line(f, left, c->brief, 30);
  }
  fprintf(f, "`softadastra %s COMMAND --help` explains one.\n", group);
}

static void cli_print_cmd(FILE *f, const cli_cmd *c) {
  char w[64];
  fprintf(f, "usage: softadastra %s%s%s\n", cli_cmd_words(c, w, sizeof w), c->args[0] ? " " : "",
          c->args);
  fputs(c->help, f);
  fputs("  --url URL            the node (env SOFTADASTRA_URL, default " CLI_DEFAULT_URL ")\n"
        "  --token TOKEN        bearer token (env SOFTADASTRA_TOKEN)\n"
        "  --json               print JSON for scripts\n",
        f);
}

void cli_print_help(FILE *f) {
  fputs("Client commands (talk HTTP to a node at --url, SOFTADASTRA_URL, default " CLI_DEFAULT_URL
        "):\n",
        f);
  for (size_t i = 0; i < CLI_NCMDS; i++) {
    const cli_cmd *c = &cli_cmds[i];
    if (c->group && !strcmp(c->group, "wal")) continue;
    char w[64], left[128];
    snprintf(left, sizeof left, "%s%s%s", cli_cmd_words(c, w, sizeof w), c->args[0] ? " " : "",
             c->args);
    cli_print_line(f, left, c->brief, 30);
  }
  fputs("Offline WAL tools (the node must not run on the file):\n", f);
  for (size_t i = 0; i < CLI_NCMDS; i++) {
    const cli_cmd *c = &cli_cmds[i];
    if (!c->group || strcmp(c->group, "wal") != 0) continue;
    char left[64];
    snprintf(left, sizeof left, "wal %s %s", c->name, c->args);
    cli_print_line(f, left, c->brief, 30);
  }
  fputs("Client options:\n"
        "  --url URL                      node URL (env SOFTADASTRA_URL)\n"
        "  --token TOKEN                  bearer token (env SOFTADASTRA_TOKEN)\n"
        "  --json                         print JSON for scripts\n"
        "  --help                         the usage of a command (softadastra store put --help)\n"
        "  --                             what follows is KEY/VALUE even if it starts with --\n"
        "Exit codes: 0 ok, 1 failure, 2 usage, 3 not found.\n",
        f);
}

static int cli_usage(const char *msg, const cli_cmd *c) {
  char w[64];
  if (c)
    cli_errc("usage", "%s (see softadastra %s --help)", msg, cli_cmd_words(c, w, sizeof w));
  else
    cli_errc("usage", "%s (see softadastra --help)", msg);
  return CLI_USAGE;
}

/* The command named by the first positional words, or NULL. */
static const cli_cmd *cli_find(const char *w0, const char *w1) {
  for (size_t i = 0; i < CLI_NCMDS; i++) {
    const cli_cmd *c = &cli_cmds[i];
    if (!c->group) {
      if (!strcmp(c->name, w0)) return c;
    } else if (!strcmp(c->group, w0) && w1 &&
               (!strcmp(c->name, w1) || (c->alias && !strcmp(c->alias, w1)))) {
      return c;
    }
  }
  return NULL;
}

static const cli_optdef *cli_optdef_find(const char *name, size_t len) {
  for (size_t i = 0; i < CLI_NOPTDEFS; i++)
    if (strlen(cli_optdefs[i].name) == len && !strncmp(cli_optdefs[i].name, name, len))
      return &cli_optdefs[i];
  return NULL;
}

/* True when a is one of the options (then it is not another option's
 * value: `--prefix --json` lacks the prefix; `--prefix=--json` has it). */
static bool cli_is_option(const char *a) {
  if (!strcmp(a, "--help") || !strcmp(a, "-h") || !strcmp(a, "--") || !strcmp(a, "-o")) return true;
  const char *eq = strchr(a, '=');
  return cli_optdef_find(a, eq ? (size_t)(eq - a) : strlen(a)) != NULL;
}

/* "500ms", "30s", "30" (seconds), "5m", "2h" in milliseconds, or -1. */
static long long cli_duration_ms(const char *v) {
  char *end;
  if (*v < '0' || *v > '9') return -1;
  long long n = strtoll(v, &end, 10);
  long long unit = !strcmp(end, "ms")           ? 1
                   : !strcmp(end, "s") || !*end ? 1000
                   : !strcmp(end, "m")          ? 60000
                   : !strcmp(end, "h")          ? 3600000
                                                : -1;
  if (unit < 0 || n > 1000000000LL) return -1;
  return n * unit;
}

/* Stores one option's value in o.  Returns 0, or -1 with the problem in
 * msg. */
static int cli_opt_set(cli_opts *o, const cli_optdef *d, const char *v, char *msg, size_t len) {
  const char *n = d->name;
  if (!strcmp(n, "--json"))
    o->json = true;
  else if (!strcmp(n, "--raw"))
    o->raw = true;
  else if (!strcmp(n, "--create"))
    o->create_only = true;
  else if (!strcmp(n, "--from-now"))
    o->from_now = true;
  else if (!strcmp(n, "--yes"))
    o->yes = true;
  else if (!strcmp(n, "--url"))
    o->url = v;
  else if (!strcmp(n, "--token"))
    o->token = v;
  else if (!strcmp(n, "--prefix"))
    o->prefix = v;
  else if (!strcmp(n, "--after"))
    o->after = v;
  else if (!strcmp(n, "--file"))
    o->file = v;
  else if (!strcmp(n, "--value"))
    o->value = v;
  else if (!strcmp(n, "--output"))
    o->output = v;
  else if (!strcmp(n, "--content-type")) {
    sa_error e;
    if (sa_content_type_check(v, &e) != 0)
      return snprintf(msg, len, "--content-type: %s", e.message), -1;
    o->content_type = v;
  } else if (!strcmp(n, "--retry-for")) {
    o->retry_for_ms = cli_duration_ms(v);
    if (o->retry_for_ms < 0)
      return snprintf(msg, len, "--retry-for needs a duration: 500ms, 30s, 5m or 2h"), -1;
    o->retry_for_text = v;
  } else if (!strcmp(n, "--since")) {
    if (strcmp(v, "now") != 0 && (!*v || v[strspn(v, "0123456789")] != '\0'))
      return snprintf(msg, len, "--since needs an LSN (a decimal number) or \"now\""), -1;
    o->since = v;
  } else if (!strcmp(n, "--if-match")) {
    if (!*v || v[strspn(v, "0123456789")] != '\0')
      return snprintf(msg, len, "--if-match needs a version number"), -1;
    o->if_match = v;
  } else if (!strcmp(n, "--limit")) {
    char *end;
    long l = strtol(v, &end, 10);
    if (*v == '\0' || *end || l < 1)
      return snprintf(msg, len, "--limit needs a positive integer"), -1;
    o->limit = l;
  }
  return 0;
}

int cli_main(int argc, char **argv) {
  cli_opts o = {.url = getenv("SOFTADASTRA_URL"),
                .token = getenv("SOFTADASTRA_TOKEN"),
                .limit = -1,
                .retry_for_ms = -1};
  if (!o.url || !*o.url) o.url = CLI_DEFAULT_URL;
  char **pos = calloc((size_t)argc + 1, sizeof *pos);
  if (!pos) return CLI_FAIL;
  int np = 0;
  unsigned seen = 0;
  bool help = false;
  /* the first option problem, reported once the command is known */
  char bad[SA_ERROR_MESSAGE_MAX + 64] = "";
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--")) { /* the rest is positional: values may start with "--" */
      while (++i < argc)
        pos[np++] = argv[i];
      break;
    }
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      help = true;
      continue;
    }
    if (!strcmp(a, "-o")) a = "--output"; /* the one short option */
    if (a[0] != '-' || a[1] != '-' || !a[2]) {
      pos[np++] = argv[i];
      continue;
    }
    const char *eq = strchr(a, '=');
    int nl = eq ? (int)(eq - a) : (int)strlen(a);
    const cli_optdef *d = cli_optdef_find(a, (size_t)nl);
    char msg[SA_ERROR_MESSAGE_MAX + 64]; /* --content-type quotes the core's message */
    msg[0] = '\0';
    if (!d)
      snprintf(msg, sizeof msg, "unknown option %.*s", nl, a);
    else if (!d->value && eq)
      snprintf(msg, sizeof msg, "option %s takes no value", d->name);
    else if (d->value && !eq && (i + 1 >= argc || cli_is_option(argv[i + 1])))
      snprintf(msg, sizeof msg, "option %s needs a value", d->name);
    else if (cli_opt_set(&o, d, !d->value ? NULL : eq ? eq + 1 : argv[++i], msg, sizeof msg) == 0)
      seen |= d->bit;
    if (msg[0] && !bad[0]) snprintf(bad, sizeof bad, "%s", msg);
  }
  cli_out_json_errors(o.json);
  const char *w0 = np > 0 ? pos[0] : NULL, *w1 = np > 1 ? pos[1] : NULL;
  const cli_cmd *c = w0 ? cli_find(w0, w1) : NULL;
  char msg[256];
  int rc;
  if (bad[0] && !help) {
    rc = cli_usage(bad, c);
  } else if (!w0) {
    rc = cli_usage("which command?", NULL);
  } else if (!c && cli_is_group(w0)) {
    if (help) {
      cli_print_group(stdout, w0);
      rc = CLI_OK;
    } else {
      if (w1)
        cli_errc("usage", "unknown command \"%s %s\"; %s takes:", w0, w1, w0);
      else
        cli_errc("usage", "%s needs a command:", w0);
      cli_print_group(stderr, w0);
      rc = CLI_USAGE;
    }
  } else if (!c) {
    snprintf(msg, sizeof msg, "unknown command \"%s%s%s\"", w0, w1 ? " " : "", w1 ? w1 : "");
    rc = cli_usage(msg, NULL);
  } else if (help) {
    cli_print_cmd(stdout, c);
    rc = CLI_OK;
  } else {
    int words = c->group ? 2 : 1;
    unsigned extra = seen & ~c->opts;
    char w[64];
    cli_cmd_words(c, w, sizeof w);
    if (extra) {
      for (size_t i = 0; i < CLI_NOPTDEFS; i++)
        if (cli_optdefs[i].bit & extra) {
          snprintf(msg, sizeof msg, "option %s does not apply to %s", cli_optdefs[i].name, w);
          break;
        }
      rc = cli_usage(msg, c);
    } else if (o.if_match && o.create_only) {
      rc = cli_usage("--if-match and --create contradict each other (--create: the key must not "
                     "exist)",
                     c);
    } else if (o.file && o.value) {
      rc = cli_usage("--file and --value contradict each other (one value)", c);
    } else if (o.raw && o.output) {
      rc = cli_usage("--raw and --output contradict each other (stdout or a file)", c);
    } else if ((o.file || o.value) && np - words == c->nargs) {
      snprintf(msg, sizeof msg, "a VALUE and %s: give one value", o.file ? "--file" : "--value");
      rc = cli_usage(msg, c);
    } else if (c->run == cli_run_rm && o.prefix && (np - words == c->nargs || o.if_match)) {
      rc = cli_usage(o.if_match ? "--prefix and --if-match contradict each other (a version "
                                  "is one key's)"
                                : "a KEY and --prefix: give one",
                     c);
    } else if (c->run == cli_run_rm && o.yes && !o.prefix) {
      rc = cli_usage("--yes goes with --prefix (removing one key asks nothing)", c);
    } else if (np - words != c->nargs - ((o.file || o.value) ? 1 : 0) -
                                 (c->run == cli_run_rm && o.prefix ? 1 : 0)) {
      snprintf(msg, sizeof msg, "usage: softadastra %s%s%s", w, c->args[0] ? " " : "", c->args);
      rc = cli_usage(msg, c);
    } else {
      curl_global_init(CURL_GLOBAL_DEFAULT);
      rc = c->run(&o, pos + words);
      curl_global_cleanup();
    }
  }
  free(pos);
  return rc;
}
