/*
 * cli_cmd.h -- the client commands, as the dispatcher (cli.c) calls them
 * after it has parsed the options: node commands (cli_node.c), store
 * commands (cli_store.c), the offline WAL tools (cli_wal.c); `watch` is in
 * cli_watch.h.
 *
 * What it is not: option parsing or usage text (cli.c), the HTTP client
 * (cli_http.h).
 *
 * Invariants: a command returns an exit code (CLI_OK, CLI_FAIL,
 * CLI_USAGE, CLI_NOTFOUND) and prints its errors itself, one line each.
 *
 * Threads: the CLI's single thread.
 */
#ifndef SA_CLI_CMD_H
#define SA_CLI_CMD_H

#include <jansson.h>
#include <stdbool.h>

#include "cli.h"

#define CLI_DEFAULT_URL "http://127.0.0.1:8080"

/* The parsed options of one client command. */
typedef struct cli_opts {
  const char *url;            /* node URL, no trailing slash needed */
  const char *token;          /* bearer token or NULL */
  bool json;                  /* print the node's JSON */
  bool raw;                   /* store get: the bytes alone */
  const char *prefix;         /* store ls */
  long limit;                 /* store ls: -1 = all */
  const char *if_match;       /* store put/rm: version */
  bool create_only;           /* store put: If-None-Match: * */
  const char *since;          /* watch: an LSN or "now" */
  const char *after;          /* store ls: start after this key */
  long long retry_for_ms;     /* watch: give up after this long without the node; -1: never */
  const char *retry_for_text; /* watch: --retry-for as given */
  bool from_now;              /* watch: a refused position (ahead, other epoch): start over */
  const char *file;           /* store put: the value is this file's bytes ("-": stdin) */
  const char *value;          /* store put: the value, literally (even "-") */
  const char *output;         /* store get: write the bytes to this file ("-": stdout) */
  const char *content_type;   /* store put: the value's content type (NULL: none) */
  bool yes;                   /* store rm --prefix: no confirmation */
} cli_opts;

/* status: the node, WAL, store and sync summary (GET /v1/status). */
int cli_status(const cli_opts *o);

/* health: "ok" or a failure (GET /healthz). */
int cli_health(const cli_opts *o);

/* sync status, or with tick one outbox tick first (POST /v1/sync/tick). */
int cli_sync_status(const cli_opts *o, bool tick);

/* peers: each peer's node id, URL, state and lag (GET /v1/sync/status);
 * sync digest: the node's convergence digest (GET /v1/sync/digest)
 * (cli_sync.c). */
int cli_peers(const cli_opts *o);
int cli_sync_digest(const cli_opts *o);

/* The per-peer lines of the sync state's "peers" array (cli_sync.c). */
void cli_sync_print_peers(json_t *sync, const char *indent);

/* store put KEY VALUE ("-" reads stdin; value NULL: o->file or o->value
 * gives it), get KEY (o->raw, o->output: the bytes), rm KEY, ls. */
int cli_store_put(const cli_opts *o, const char *key, const char *value);
int cli_store_get(const cli_opts *o, const char *key);
int cli_store_rm(const cli_opts *o, const char *key);

/* store rm --prefix P: every key under o->prefix in one request (DELETE
 * /v1/store?prefix=P), after a confirmation on a terminal unless o->yes;
 * without a terminal on stdin and without o->yes it refuses (CLI_USAGE)
 * before anything is sent. */
int cli_store_rm_prefix(const cli_opts *o);
int cli_store_ls(const cli_opts *o);

/* store batch FILE: the puts and deletes of FILE ("-": stdin), JSON or
 * lines, in one POST /v1/batch. */
int cli_store_batch(const cli_opts *o, const char *file);

/* wal inspect|verify|repair FILE (verb is one of those three). */
int cli_wal(const cli_opts *o, const char *verb, const char *path);

#endif /* SA_CLI_CMD_H */
