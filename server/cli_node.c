/*
 * cli_node.c -- the node commands: `status`, `health`, `sync status` and
 * `sync tick` (see cli_cmd.h).
 *
 * What it is: one request each, printed as the node's JSON (--json) or in
 * the guide's aligned "  key      : value" form.  What it is not: the store
 * commands (cli_store.c) or anything that writes.
 *
 * Threads: the CLI's single thread.
 */
#include <stdio.h>
#include <stdlib.h>

#include "cli_cmd.h"
#include "cli_out.h"

/* "no", "yes (kind)" or "yes (kind, a stub that reaches no peer)" */
static const char *cli_link(json_t *s, const char *name, char *buf, size_t len) {
  json_t *o = json_object_get(s, name);
  if (!json_is_true(json_object_get(o, "enabled"))) return "no";
  snprintf(buf, len, "yes (%s%s)", cli_str(o, "kind", NULL),
           json_is_true(json_object_get(o, "stub")) ? ", a stub that reaches no peer" : "");
  return buf;
}

static void cli_print_sync(json_t *s, const char *indent) {
  const char *last = json_is_string(json_object_get(s, "last_tick_at"))
                         ? cli_str(s, "last_tick_at", NULL)
                         : "never";
  char t[128], d[128];
  printf("%soutbox       : %lld\n", indent, cli_int(s, "outbox_size", NULL));
  printf("%squeued       : %lld\n", indent, cli_int(s, "queued", NULL));
  printf("%sin flight    : %lld\n", indent, cli_int(s, "in_flight", NULL));
  printf("%sacknowledged : %lld\n", indent, cli_int(s, "acknowledged", NULL));
  printf("%sfailed       : %lld\n", indent, cli_int(s, "failed", NULL));
  printf("%sretries      : %lld\n", indent, cli_int(s, "total_retries", NULL));
  printf("%spruned       : %lld\n", indent, cli_int(s, "pruned", NULL));
  printf("%soverflow     : %s (max %lld)\n", indent, cli_yes(s, "overflow", NULL),
         cli_int(s, "outbox_max", NULL));
  printf("%sticks        : %lld\n", indent, cli_int(s, "ticks", NULL));
  printf("%slast tick    : %s\n", indent, last);
  printf("%slast lsn     : %lld\n", indent, cli_int(s, "last_lsn", NULL));
  printf("%stransport    : %s\n", indent, cli_link(s, "transport", t, sizeof t));
  printf("%sdiscovery    : %s\n", indent, cli_link(s, "discovery", d, sizeof d));
  json_t *disc = json_object_get(s, "discovery");
  if (json_object_get(disc, "port")) /* the server's UDP discovery */
    printf("%s  advertises : %s on UDP port %lld%s\n"
           "%s  found      : %lld now (%lld since start, %lld forgotten)\n"
           "%s  datagrams  : %lld sent, %lld received, %lld refused\n",
           indent, cli_str(disc, "url", NULL), cli_int(disc, "port", NULL),
           json_is_true(json_object_get(disc, "signed")) ? ", signed" : "", indent,
           cli_int(disc, "peers", NULL), cli_int(disc, "found", NULL),
           cli_int(disc, "forgotten", NULL), indent, cli_int(disc, "datagrams_sent", NULL),
           cli_int(disc, "datagrams_received", NULL), cli_int(disc, "datagrams_refused", NULL));
  cli_sync_print_peers(s, indent); /* cli_sync.c */
}

static void cli_print_status(json_t *j, void *ctx) {
  const cli_opts *o = ctx;
  printf("node\n");
  printf("  id       : %s\n", cli_str(j, "node_id", NULL));
  printf("  version  : %s\n", cli_str(j, "version", NULL));
  printf("  url      : %s\n", o->url);
  printf("  uptime   : %llds\n", cli_int(j, "uptime_s", NULL));
  if (json_is_true(json_object_get(j, "read_only")))
    printf("  read-only: %s\n", cli_str(j, "read_only_reason", NULL));
  printf("\nWAL\n");
  printf("  enabled  : %s\n", cli_yes(j, "wal", "enabled"));
  printf("  path     : %s\n", cli_str(j, "wal", "path"));
  printf("  durable  : %s\n", cli_yes(j, "wal", "durable"));
  printf("  bytes    : %lld\n", cli_int(j, "wal", "bytes"));
  printf("  last lsn : %lld\n", cli_int(j, "wal", "last_lsn"));
  printf("\nstore\n");
  printf("  keys     : %lld\n", cli_int(j, "store", "size")); /* the node's "size" */
  printf("\nsync\n");
  json_t *s = json_object_get(j, "sync");
  printf("  outbox   : %lld\n", cli_int(s, "outbox_size", NULL));
  printf("  queued   : %lld\n", cli_int(s, "queued", NULL));
  printf("  transport: %s\n", cli_yes(s, "transport", "enabled"));
}

int cli_status(const cli_opts *o) {
  long st;
  cli_buf b;
  if (cli_request(o->url, o->token, "GET", "/v1/status", NULL, 0, NULL, NULL, &st, &b) != 0)
    return CLI_FAIL;
  return cli_answer(o->json, st, &b, 200, 200, "status", cli_print_status, (void *)o);
}

static void cli_print_ok(json_t *j, void *ctx) {
  (void)j;
  (void)ctx;
  printf("ok\n");
}

int cli_health(const cli_opts *o) {
  long st;
  cli_buf b;
  if (cli_request(o->url, o->token, "GET", "/healthz", NULL, 0, NULL, NULL, &st, &b) != 0)
    return CLI_FAIL;
  return cli_answer(o->json, st, &b, 200, 200, "health", cli_print_ok, NULL);
}

static void cli_print_sync_state(json_t *j, void *ctx) {
  (void)ctx;
  printf("sync\n");
  cli_print_sync(j, "  ");
  json_t *tr = json_object_get(j, "transport");
  if (cli_int(j, "queued", NULL) > 0 && !json_is_true(json_object_get(tr, "enabled")))
    printf("\ntransport is off: queued operations wait for a peer (this is normal)\n");
  else if (cli_int(j, "queued", NULL) > 0 && json_is_true(json_object_get(tr, "stub")))
    printf("\nthe transport is a stub: queued operations are retried, then marked failed\n");
}

int cli_sync_status(const cli_opts *o, bool tick) {
  long st;
  cli_buf b;
  if (cli_request(o->url, o->token, tick ? "POST" : "GET",
                  tick ? "/v1/sync/tick" : "/v1/sync/status", NULL, 0, NULL, NULL, &st, &b) != 0)
    return CLI_FAIL;
  return cli_answer(o->json, st, &b, 200, 200, tick ? "sync tick" : "sync status",
                    cli_print_sync_state, NULL);
}
