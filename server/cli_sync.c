/*
 * cli_sync.c -- the sync commands between nodes: `peers`, `sync digest`,
 * and the per-peer lines of `sync status` (see cli_cmd.h).
 *
 * What it is: one request each (GET /v1/sync/status, GET /v1/sync/digest),
 * printed as the node's JSON (--json) or as aligned text.  What it is not:
 * the outbox part of `sync status` (cli_node.c prints it, then calls
 * cli_sync_print_peers) or anything that writes.
 *
 * Threads: the CLI's single thread.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli_cmd.h"
#include "cli_out.h"

/* "12s ago" / "never" for a unix-ms contact time (now from the node's
 * answer is not available: the CLI's own clock is close enough). */
static const char *cli_ago(long long ms, char *buf, size_t len) {
  if (ms <= 0) return "never";
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  long long now = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
  long long d = now - ms;
  if (d < 0) d = 0;
  if (d < 10000)
    snprintf(buf, len, "%lld ms ago", d);
  else
    snprintf(buf, len, "%lld s ago", d / 1000);
  return buf;
}

void cli_sync_print_peers(json_t *sync, const char *indent) {
  json_t *peers = json_object_get(sync, "peers");
  size_t n = json_array_size(peers);
  printf("%speers        : %zu\n", indent, n);
  for (size_t i = 0; i < n; i++) {
    json_t *p = json_array_get(peers, i);
    const char *id = cli_str(p, "node_id", NULL);
    char ago[64];
    printf("%s  %s (%s)\n", indent, cli_str(p, "url", NULL), id[0] ? id : "node id not known yet");
    printf("%s    source       : %s\n", indent, cli_str(p, "source", NULL));
    printf("%s    state        : %s\n", indent, cli_str(p, "state", NULL));
    printf("%s    cursor       : %lld\n", indent, cli_int(p, "cursor", NULL));
    printf("%s    lag          : %lld ops, %lld ms\n", indent, cli_int(p, "lag_ops", NULL),
           cli_int(p, "lag_ms", NULL));
    printf("%s    last contact : %s\n", indent,
           cli_ago(cli_int(p, "last_contact_ms", NULL), ago, sizeof ago));
    printf("%s    received     : %lld ops\n", indent, cli_int(p, "ops_received", NULL));
    printf("%s    sent         : %lld ops (acked through %lld)\n", indent,
           cli_int(p, "ops_sent", NULL), cli_int(p, "acked", NULL));
    if (cli_int(p, "refused_drift", NULL) || cli_int(p, "refused_invalid", NULL))
      printf("%s    refused      : %lld (clock drift), %lld (invalid)\n", indent,
             cli_int(p, "refused_drift", NULL), cli_int(p, "refused_invalid", NULL));
    json_t *hub = json_object_get(p, "hub");
    if (json_is_object(hub))
      printf("%s    hub          : %lld published, %lld acked, %lld in flight, %lld LSNs not "
             "acknowledged\n",
             indent, cli_int(hub, "published", NULL), cli_int(hub, "acked", NULL),
             cli_int(hub, "in_flight", NULL), cli_int(hub, "unpublished", NULL));
    const char *e = cli_str(p, "last_error", NULL);
    if (e[0]) printf("%s    last error   : %s\n", indent, e);
  }
}

/* `peers`: one line per peer. */
static void cli_print_peers(json_t *j, void *ctx) {
  (void)ctx;
  json_t *peers = json_object_get(j, "peers");
  size_t n = json_array_size(peers);
  if (n == 0) {
    printf("no peers (start the node with --transport http --peer URL, or --discovery udp)\n");
    return;
  }
  printf("%-20s %-32s %-12s %8s %8s %-10s  %s\n", "NODE", "URL", "STATE", "LAG", "LAG_MS", "SOURCE",
         "LAST ERROR");
  for (size_t i = 0; i < n; i++) {
    json_t *p = json_array_get(peers, i);
    const char *id = cli_str(p, "node_id", NULL);
    printf("%-20s %-32s %-12s %8lld %8lld %-10s  %s\n", id[0] ? id : "?", cli_str(p, "url", NULL),
           cli_str(p, "state", NULL), cli_int(p, "lag_ops", NULL), cli_int(p, "lag_ms", NULL),
           cli_str(p, "source", NULL), cli_str(p, "last_error", NULL));
  }
}

int cli_peers(const cli_opts *o) {
  long st;
  cli_buf b;
  if (cli_request(o->url, o->token, "GET", "/v1/sync/status", NULL, 0, NULL, NULL, &st, &b) != 0)
    return CLI_FAIL;
  return cli_answer(o->json, st, &b, 200, 200, "peers", cli_print_peers, NULL);
}

static void cli_print_digest(json_t *j, void *ctx) {
  (void)ctx;
  printf("digest   : %s\n", cli_str(j, "digest", NULL));
  printf("keys     : %lld\n", cli_int(j, "keys", NULL));
  printf("node     : %s\n", cli_str(j, "node_id", NULL));
  printf("last lsn : %lld\n", cli_int(j, "last_lsn", NULL));
}

int cli_sync_digest(const cli_opts *o) {
  long st;
  cli_buf b;
  if (cli_request(o->url, o->token, "GET", "/v1/sync/digest", NULL, 0, NULL, NULL, &st, &b) != 0)
    return CLI_FAIL;
  return cli_answer(o->json, st, &b, 200, 200, "sync digest", cli_print_digest, NULL);
}
