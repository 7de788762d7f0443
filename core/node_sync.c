/*
 * node_sync.c -- the sync API of a node (softadastra.h "sync between
 * nodes"): reading the feed for a peer, snapshots, applying a peer's batch,
 * peer cursors and acknowledgements, the digest.
 *
 * What it is not: a transport.  The core moves nothing by itself; the
 * server's HTTP puller (or an embedder's) calls these functions.
 *
 * Threads: any caller's thread (never the writer or the committer).
 */
#include "node_internal.h"

#include <stdlib.h>
#include <string.h>

static int node_sync_todo(const char *what, sa_error *err) {
  return sa_fail(err, SA_EINTERNAL, "%s: not implemented yet", what);
}

int sa_client_sync_read(sa_client *c, uint64_t since, size_t limit, const char *exclude_origin,
                        sa_sync_page *out, sa_error *err) {
  (void)c, (void)since, (void)limit, (void)exclude_origin;
  if (out) memset(out, 0, sizeof *out);
  return node_sync_todo("sa_client_sync_read", err);
}

void sa_sync_page_free(sa_sync_page *p) {
  if (!p) return;
  for (size_t i = 0; i < p->count; i++) {
    free(p->items[i].key);
    free(p->items[i].data);
  }
  free(p->items);
  memset(p, 0, sizeof *p);
}

int sa_client_sync_snapshot(sa_client *c, int (*fn)(void *arg, const sa_sync_item *it), void *arg,
                            uint64_t *resume, sa_error *err) {
  (void)c, (void)fn, (void)arg, (void)resume;
  return node_sync_todo("sa_client_sync_snapshot", err);
}

uint64_t sa_client_sync_horizon(sa_client *c) {
  (void)c;
  return 0;
}

int sa_client_sync_apply(sa_client *c, const char *peer_id, const sa_sync_item *items, size_t n,
                         uint64_t cursor, sa_sync_apply_result *res, sa_error *err) {
  (void)c, (void)peer_id, (void)items, (void)n, (void)cursor;
  if (res) memset(res, 0, sizeof *res);
  return node_sync_todo("sa_client_sync_apply", err);
}

int sa_client_sync_cursor(sa_client *c, const char *peer_id, uint64_t *cursor, sa_error *err) {
  (void)c, (void)peer_id;
  if (cursor) *cursor = 0;
  return node_sync_todo("sa_client_sync_cursor", err);
}

int sa_client_sync_peer_ack(sa_client *c, const char *peer_id, uint64_t seq, sa_error *err) {
  (void)c, (void)peer_id, (void)seq;
  return node_sync_todo("sa_client_sync_peer_ack", err);
}

int sa_client_sync_set_peers(sa_client *c, const char *const *peer_ids, size_t n, sa_error *err) {
  (void)c, (void)peer_ids, (void)n;
  return node_sync_todo("sa_client_sync_set_peers", err);
}

uint64_t sa_client_sync_peer_acked(sa_client *c, const char *peer_id) {
  (void)c, (void)peer_id;
  return 0;
}

int sa_client_sync_digest(sa_client *c, char hex[65], uint64_t *keys, sa_error *err) {
  (void)c;
  if (hex) hex[0] = 0;
  if (keys) *keys = 0;
  return node_sync_todo("sa_client_sync_digest", err);
}

int sa_client_sync_counters(sa_client *c, sa_sync_counters *out, sa_error *err) {
  (void)c;
  if (out) memset(out, 0, sizeof *out);
  return node_sync_todo("sa_client_sync_counters", err);
}
