/*
 * api_status.c -- what a node says about itself: GET /healthz, /readyz,
 * /v1/status, /v1/sync/status, and POST /v1/sync/tick.
 *
 * What it is: JSON views of the core's sa_status and sa_sync_state, and the
 * readiness rule (ready unless draining or read-only).  What it is not: the
 * Prometheus text of the same figures (api_metrics.c), nor a sync protocol:
 * /v1/sync/tick only asks the core for one outbox tick now.
 *
 * Invariants: the sync state is reported exactly as the core gives it (one
 * builder, api_sync_json, for /v1/status and the /v1/sync routes); /healthz needs no
 * core call and no token, so it answers while the node is busy or draining.
 *
 * Threads: any request thread; the core client is thread-safe.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "api_internal.h"
#include "api_json.h"

api_response *api_h_healthz(void) {
  return api_resp_json(api_resp_new(200), json_pack("{s:s}", "status", "ok"));
}

/* The sync state exactly as the core reports it, with the server's
 * transport and its peers (api_sync.c) when it has one. */
static json_t *api_sync_json(api_ctx *ctx, const sa_sync_state *s) {
  json_t *peers = api_sync_peers_json(ctx);
  bool running = false;
  for (size_t i = 0; i < json_array_size(peers); i++) {
    const char *st = json_string_value(json_object_get(json_array_get(peers, i), "state"));
    running |= st && !strcmp(st, "connected");
  }
  bool own = ctx->sync_transport != NULL;
  json_t *j = json_pack(
      "{s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:b,s:o,"
      "s:{s:b,s:b,s:b,s:s},s:{s:b,s:b,s:s},s:o}",
      "outbox_size", api_json_u64(s->outbox_size), "queued", api_json_u64(s->queued), "in_flight",
      api_json_u64(s->in_flight), "acknowledged", api_json_u64(s->acknowledged), "failed",
      api_json_u64(s->failed), "total_retries", api_json_u64(s->total_retries), "ticks",
      api_json_u64(s->ticks), "last_tick_at", api_json_time(s->last_tick_ms), "last_lsn",
      api_json_u64(s->last_lsn), "outbox_max", api_json_u64(s->outbox_max), "overflow",
      (int)s->overflow, "pruned", api_json_u64(s->pruned), "transport", "enabled",
      (int)(own || s->transport_enabled), "running", (int)(own ? running : s->transport_running),
      "stub", (int)(!own && s->transport_stub), "kind",
      own ? ctx->sync_transport : s->transport_kind, "discovery", "enabled",
      (int)s->discovery_enabled, "stub", (int)s->discovery_stub, "kind", s->discovery_kind, "peers",
      peers ? peers : json_array());
  /* The core's apply and tombstone counters: atomics and LMDB's per-database
   * stat, no scan. */
  sa_sync_counters sc;
  if (j && sa_client_sync_counters(ctx->client, &sc, NULL) == 0)
    json_object_set_new(
        j, "counters",
        json_pack("{s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "batches",
                  api_json_u64(sc.batches), "applied", api_json_u64(sc.applied), "skipped",
                  api_json_u64(sc.skipped), "stale", api_json_u64(sc.stale), "refused_drift",
                  api_json_u64(sc.refused_drift), "refused_invalid",
                  api_json_u64(sc.refused_invalid), "tombstones", api_json_u64(sc.tombs),
                  "tombstones_dropped", api_json_u64(sc.tombs_dropped), "dropped_records",
                  api_json_u64(sc.dropped_records), "dropped_expired",
                  api_json_u64(sc.dropped_expired), "tombstones_bytes",
                  api_json_u64(sc.tombs_bytes), "dropped_bytes", api_json_u64(sc.dropped_bytes)));
  api_sync_discovery d;
  memset(&d, 0, sizeof d);
  json_t *dj = json_object_get(j, "discovery");
  if (dj && ctx->sync_discovery && ctx->sync_discovery(ctx->sync_cls, &d)) {
    json_object_set_new(dj, "port", json_integer(d.port));
    json_object_set_new(dj, "url", json_string(d.url));
    json_object_set_new(dj, "signed", json_boolean(d.is_signed));
    json_object_set_new(dj, "interval_ms", json_integer(d.interval_ms));
    json_object_set_new(dj, "timeout_s", json_integer(d.timeout_s));
    json_object_set_new(dj, "peers", api_json_u64(d.peers));
    json_object_set_new(dj, "found", api_json_u64(d.found));
    json_object_set_new(dj, "forgotten", api_json_u64(d.forgotten));
    json_object_set_new(dj, "datagrams_sent", api_json_u64(d.sent));
    json_object_set_new(dj, "datagrams_received", api_json_u64(d.received));
    json_object_set_new(dj, "datagrams_refused", api_json_u64(d.refused));
  }
  return j;
}

api_response *api_h_status(api_ctx *ctx) {
  sa_status st;
  sa_sync_state ss;
  sa_error err = {0};
  int rc = sa_client_status(ctx->client, &st, &err);
  if (rc != 0) return api_reply_sa_error(rc, &err);
  rc = sa_client_sync_state(ctx->client, &ss, &err);
  if (rc != 0) return api_reply_sa_error(rc, &err);
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  json_int_t up = (json_int_t)(now.tv_sec - ctx->started.tv_sec);
  json_t *j = json_pack(
      "{s:s,s:s,s:I,s:b,s:s?,s:{s:b,s:s,s:b,s:o,s:o},s:{s:o,s:s,s:o,s:o,s:o,s:o},s:o,"
      "s:{s:o,s:o,s:o,s:s,s:b}}",
      "node_id", st.node_id, "version", sa_version(), "uptime_s", up, "read_only",
      (int)st.read_only, "read_only_reason", st.read_only ? st.read_only_reason : NULL, "wal",
      "enabled", (int)st.persistent, "path", st.wal_path ? st.wal_path : "", "durable",
      (int)st.durable, "bytes", api_json_u64(st.wal_bytes), "last_lsn", api_json_u64(st.last_lsn),
      "store", "size", api_json_u64(st.size), "path", st.store_path ? st.store_path : "",
      "applied_lsn", api_json_u64(st.applied_lsn), "synced_lsn", api_json_u64(st.synced_lsn),
      "sync_points", api_json_u64(st.store_syncs), "writebacks", api_json_u64(st.store_writebacks),
      "sync", api_sync_json(ctx, &ss), "recovery", "records_scanned",
      api_json_u64(st.recovery.records_scanned), "records_replayed",
      api_json_u64(st.recovery.records_replayed), "torn_bytes",
      api_json_u64(st.recovery.torn_bytes), "torn_path", st.recovery.torn_path, "store_rolled_back",
      (int)st.recovery.store_rolled_back);
  char ehex[17]; /* this incarnation of the store: new at creation and at a restore */
  snprintf(ehex, sizeof ehex, "%016" PRIx64, sa_client_epoch(ctx->client));
  if (j) json_object_set_new(j, "epoch", json_string(ehex));
  return api_resp_json(api_resp_new(200), j);
}

api_response *api_h_sync_status(api_ctx *ctx) {
  sa_sync_state ss;
  sa_error err = {0};
  int rc = sa_client_sync_state(ctx->client, &ss, &err);
  if (rc != 0) return api_reply_sa_error(rc, &err);
  return api_resp_json(api_resp_new(200), api_sync_json(ctx, &ss));
}

/* POST /v1/sync/tick: runs one outbox tick now and answers the sync state
 * after it (useful with long tick intervals, and in tests). */
api_response *api_h_sync_tick(api_ctx *ctx) {
  sa_sync_state ss;
  sa_error err = {0};
  int rc = sa_client_sync_tick(ctx->client, &err);
  if (rc == 0) rc = sa_client_sync_state(ctx->client, &ss, &err);
  if (rc != 0) return api_reply_sa_error(rc, &err);
  return api_resp_json(api_resp_new(200), api_sync_json(ctx, &ss));
}

api_response *api_h_readyz(api_ctx *ctx) {
  if (atomic_load(&ctx->draining))
    return api_reply_error(503, "shutting_down", "the node is shutting down");
  sa_status st;
  sa_error err = {0};
  int rc = sa_client_status(ctx->client, &st, &err);
  if (rc != 0) return api_reply_sa_error(rc, &err);
  if (st.read_only)
    return api_reply_error(503, "read_only", "the node is read-only: %s", st.read_only_reason);
  return api_resp_json(api_resp_new(200), json_pack("{s:s}", "status", "ready"));
}
