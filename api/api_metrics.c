/*
 * api_metrics.c -- the metrics of a node in the Prometheus text format: the
 * API's request counters and latency histograms (api_metrics.h), and the
 * answer to GET /metrics, which adds the server's own series and the core's
 * figures (WAL, store, outbox, write path).
 *
 * What it is: fixed arrays of atomic counters indexed by route and status.
 * Status codes are kept in a fixed table; a status that is not in the table
 * is counted under the last slot, rendered as "other".  What it is not: a
 * metrics library (no registry, no labels beyond route and status) nor the
 * JSON views of the same figures (api_status.c).
 *
 * Invariants: no lock and no allocation after api_metrics_create; a scrape
 * reads each counter once (relaxed: it may see a request counted in one
 * series and not yet in another); histogram buckets are written cumulative.
 *
 * Threads: api_metrics_observe and api_metrics_write from any number of
 * request threads at once; api_h_metrics on a request thread (it calls the
 * server's metrics_extra there).
 */
#define _GNU_SOURCE /* open_memstream */
#include "api_metrics.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "api_internal.h"

static const int api_metrics_statuses[] = {200, 201, 204, 304, 400, 401, 403, 404, 405,
                                           409, 412, 413, 415, 431, 500, 503, 507, 0};
#define API_METRICS_NSTATUS (sizeof api_metrics_statuses / sizeof api_metrics_statuses[0])

/* Upper bounds of the latency buckets, in seconds (+Inf is implicit). */
static const double api_metrics_buckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                             0.005,  0.01,    0.025,  0.05,  0.1,
                                             0.25,   0.5,     1.0,    2.5,   5.0};
#define API_METRICS_NBUCKET (sizeof api_metrics_buckets / sizeof api_metrics_buckets[0])

struct api_metrics {
  _Atomic uint64_t requests[API_ROUTE_COUNT_][API_METRICS_NSTATUS];   /* by route, status */
  _Atomic uint64_t bucket[API_ROUTE_COUNT_][API_METRICS_NBUCKET + 1]; /* non-cumulative */
  _Atomic uint64_t sum_us[API_ROUTE_COUNT_];                          /* total microseconds */
};

api_metrics *api_metrics_create(void) {
  return calloc(1, sizeof(api_metrics));
}

void api_metrics_destroy(api_metrics *m) {
  free(m);
}

/* The label of a route is its path in the one route table (api_routes.c;
 * the first row with its id, so the dashboard's routes count under "/"). */
const char *api_metrics_route_label(api_route_id route) {
  size_t n;
  const api_route_info *t = api_routes(&n);
  for (size_t i = 0; i < n; i++)
    if (t[i].id == (int)route) return t[i].path;
  return "other";
}

void api_metrics_observe(api_metrics *m, api_route_id route, int status, double seconds) {
  if (!m) return;
  if ((unsigned)route >= API_ROUTE_COUNT_) route = API_ROUTE_OTHER;
  size_t s = API_METRICS_NSTATUS - 1;
  for (size_t i = 0; i + 1 < API_METRICS_NSTATUS; i++) {
    if (api_metrics_statuses[i] == status) {
      s = i;
      break;
    }
  }
  atomic_fetch_add_explicit(&m->requests[route][s], 1, memory_order_relaxed);
  size_t b = API_METRICS_NBUCKET;
  for (size_t i = 0; i < API_METRICS_NBUCKET; i++) {
    if (seconds <= api_metrics_buckets[i]) {
      b = i;
      break;
    }
  }
  atomic_fetch_add_explicit(&m->bucket[route][b], 1, memory_order_relaxed);
  if (seconds < 0) seconds = 0;
  atomic_fetch_add_explicit(&m->sum_us[route], (uint64_t)(seconds * 1e6), memory_order_relaxed);
}

void api_metrics_write(const api_metrics *m, FILE *f) {
  fputs("# HELP softadastra_http_requests_total HTTP requests answered, by route and status.\n"
        "# TYPE softadastra_http_requests_total counter\n",
        f);
  for (int r = 0; r < API_ROUTE_COUNT_; r++) {
    const char *label = api_metrics_route_label((api_route_id)r);
    for (size_t s = 0; s < API_METRICS_NSTATUS; s++) {
      uint64_t v = atomic_load_explicit(&m->requests[r][s], memory_order_relaxed);
      if (v == 0) continue;
      if (api_metrics_statuses[s])
        fprintf(f, "softadastra_http_requests_total{route=\"%s\",status=\"%d\"} %llu\n", label,
                api_metrics_statuses[s], (unsigned long long)v);
      else
        fprintf(f, "softadastra_http_requests_total{route=\"%s\",status=\"other\"} %llu\n", label,
                (unsigned long long)v);
    }
  }
  fputs("# HELP softadastra_http_request_duration_seconds Time to handle a request, by route.\n"
        "# TYPE softadastra_http_request_duration_seconds histogram\n",
        f);
  for (int r = 0; r < API_ROUTE_COUNT_; r++) {
    const char *label = api_metrics_route_label((api_route_id)r);
    uint64_t cum = 0;
    uint64_t counts[API_METRICS_NBUCKET + 1];
    for (size_t b = 0; b <= API_METRICS_NBUCKET; b++) {
      counts[b] = atomic_load_explicit(&m->bucket[r][b], memory_order_relaxed);
      cum += counts[b];
    }
    if (cum == 0) continue;
    cum = 0;
    for (size_t b = 0; b < API_METRICS_NBUCKET; b++) {
      cum += counts[b];
      fprintf(f, "softadastra_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n",
              label, api_metrics_buckets[b], (unsigned long long)cum);
    }
    cum += counts[API_METRICS_NBUCKET];
    fprintf(f, "softadastra_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n",
            label, (unsigned long long)cum);
    fprintf(f, "softadastra_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n", label,
            (double)atomic_load_explicit(&m->sum_us[r], memory_order_relaxed) / 1e6);
    fprintf(f, "softadastra_http_request_duration_seconds_count{route=\"%s\"} %llu\n", label,
            (unsigned long long)cum);
  }
}

/* The core's write-path statistics: fdatasync latency and group-commit
 * sizes as Prometheus histograms (the core's buckets are not cumulative). */
static void api_metrics_write_stats(const sa_stats *ws, FILE *f) {
  uint64_t cum = 0;
  fputs("# HELP softadastra_wal_fsync_duration_seconds Time of each WAL fdatasync.\n"
        "# TYPE softadastra_wal_fsync_duration_seconds histogram\n",
        f);
  for (size_t i = 0; i + 1 < SA_STATS_SYNC_BUCKETS; i++) {
    cum += ws->sync_hist[i];
    fprintf(f, "softadastra_wal_fsync_duration_seconds_bucket{le=\"%g\"} %llu\n",
            sa_stats_sync_bounds[i], (unsigned long long)cum);
  }
  cum += ws->sync_hist[SA_STATS_SYNC_BUCKETS - 1];
  fprintf(f,
          "softadastra_wal_fsync_duration_seconds_bucket{le=\"+Inf\"} %llu\n"
          "softadastra_wal_fsync_duration_seconds_sum %.6f\n"
          "softadastra_wal_fsync_duration_seconds_count %llu\n",
          (unsigned long long)cum, ws->sync_seconds, (unsigned long long)ws->syncs);
  cum = 0;
  fputs("# HELP softadastra_group_commit_ops Operations per group commit (one WAL write and "
        "fdatasync).\n"
        "# TYPE softadastra_group_commit_ops histogram\n",
        f);
  for (size_t i = 0; i + 1 < SA_STATS_GROUP_BUCKETS; i++) {
    cum += ws->group_hist[i];
    fprintf(f, "softadastra_group_commit_ops_bucket{le=\"%g\"} %llu\n", sa_stats_group_bounds[i],
            (unsigned long long)cum);
  }
  cum += ws->group_hist[SA_STATS_GROUP_BUCKETS - 1];
  fprintf(f,
          "softadastra_group_commit_ops_bucket{le=\"+Inf\"} %llu\n"
          "softadastra_group_commit_ops_sum %llu\n"
          "softadastra_group_commit_ops_count %llu\n"
          "# HELP softadastra_wal_written_bytes_total Bytes appended to the WAL since open.\n"
          "# TYPE softadastra_wal_written_bytes_total counter\n"
          "softadastra_wal_written_bytes_total %llu\n"
          "# HELP softadastra_write_errors_total Writes failed by I/O errors or a full disk.\n"
          "# TYPE softadastra_write_errors_total counter\n"
          "softadastra_write_errors_total %llu\n"
          "# HELP softadastra_store_commits_total Store transactions that applied written groups "
          "(one applies every group of up to store_commit_ms).\n"
          "# TYPE softadastra_store_commits_total counter\n"
          "softadastra_store_commits_total %llu\n",
          (unsigned long long)cum, (unsigned long long)ws->group_ops,
          (unsigned long long)ws->groups, (unsigned long long)ws->wal_bytes_written,
          (unsigned long long)ws->write_errors, (unsigned long long)ws->store_commits);
}

/* The core's sync counters (sa_client_sync_counters): what sync applied,
 * skipped and refused since open, and the tombstones and dropped-tombstone
 * records held now. */
static void api_metrics_write_sync(const sa_sync_counters *sc, FILE *f) {
  static const struct {
    const char *name, *type, *help;
  } m[] = {
      {"softadastra_sync_batches_total", "counter",
       "Sync batches applied that wrote a record, since open."},
      {"softadastra_sync_applied_total", "counter",
       "Synced changes that won by the rule and were applied, since open."},
      {"softadastra_sync_skipped_total", "counter",
       "Synced changes skipped: the pair was already held or lost to the held one, since open."},
      {"softadastra_sync_stale_total", "counter",
       "Synced changes refused as stale: a key held nowhere, at or below its dropped-tombstone "
       "record (a write older than a delete whose tombstone went by age), since open."},
      {"softadastra_sync_refused_drift_total", "counter",
       "Sync batches refused for clock drift, since open."},
      {"softadastra_sync_refused_invalid_total", "counter",
       "Sync batches refused as malformed, since open."},
      {"softadastra_sync_tombstones", "gauge", "Tombstones held now."},
      {"softadastra_sync_tombstones_dropped_total", "counter",
       "Tombstones dropped (every peer past them, or by age), since open."},
      {"softadastra_sync_dropped_records", "gauge",
       "Dropped-tombstone records held now (kept for 2 x tombstone_ttl_s)."},
      {"softadastra_sync_dropped_expired_total", "counter",
       "Dropped-tombstone records expired, since open."},
      {"softadastra_sync_tombstones_bytes", "gauge", "Bytes of the tombstones' LMDB pages."},
      {"softadastra_sync_dropped_bytes", "gauge",
       "Bytes of the dropped-tombstone records' LMDB pages."},
  };
  const uint64_t v[] = {sc->batches,         sc->applied,       sc->skipped,
                        sc->stale,           sc->refused_drift, sc->refused_invalid,
                        sc->tombs,           sc->tombs_dropped, sc->dropped_records,
                        sc->dropped_expired, sc->tombs_bytes,   sc->dropped_bytes};
  for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", m[i].name, m[i].help, m[i].name, m[i].type,
            m[i].name, (unsigned long long)v[i]);
}

api_response *api_h_metrics(api_ctx *ctx) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (!f) return &api_oom_response;
  api_metrics_write(ctx->metrics, f);
  if (ctx->metrics_extra) ctx->metrics_extra(ctx->metrics_extra_cls, f);
  sa_status st;
  sa_sync_state ss;
  if (sa_client_status(ctx->client, &st, NULL) == 0) {
    fprintf(
        f,
        "# HELP softadastra_wal_bytes Bytes of records in the WAL (its logical size; the file also "
        "holds up to one chunk of preallocated zeros).\n"
        "# TYPE softadastra_wal_bytes gauge\nsoftadastra_wal_bytes %llu\n"
        "# HELP softadastra_wal_last_lsn Last LSN written to the WAL.\n"
        "# TYPE softadastra_wal_last_lsn gauge\nsoftadastra_wal_last_lsn %llu\n"
        "# HELP softadastra_store_applied_lsn Last LSN applied to the store.\n"
        "# TYPE softadastra_store_applied_lsn gauge\nsoftadastra_store_applied_lsn %llu\n"
        "# HELP softadastra_store_synced_lsn Last LSN the store holds durably (its last "
        "sync point).\n"
        "# TYPE softadastra_store_synced_lsn gauge\nsoftadastra_store_synced_lsn %llu\n"
        "# HELP softadastra_store_sync_points_total Store sync points since the node opened.\n"
        "# TYPE softadastra_store_sync_points_total counter\n"
        "softadastra_store_sync_points_total %llu\n"
        "# HELP softadastra_store_writebacks_total Store write-back kicks between sync "
        "points since the node opened.\n"
        "# TYPE softadastra_store_writebacks_total counter\n"
        "softadastra_store_writebacks_total %llu\n"
        "# HELP softadastra_store_keys Number of keys in the store.\n"
        "# TYPE softadastra_store_keys gauge\nsoftadastra_store_keys %llu\n"
        "# HELP softadastra_checkpoints_total Checkpoints since the node opened.\n"
        "# TYPE softadastra_checkpoints_total counter\nsoftadastra_checkpoints_total %llu\n"
        "# HELP softadastra_read_only 1 when a failed fdatasync made the node read-only.\n"
        "# TYPE softadastra_read_only gauge\nsoftadastra_read_only %d\n"
        "# HELP softadastra_recovery_records_replayed WAL records replayed at open.\n"
        "# TYPE softadastra_recovery_records_replayed gauge\n"
        "softadastra_recovery_records_replayed %llu\n",
        (unsigned long long)st.wal_bytes, (unsigned long long)st.last_lsn,
        (unsigned long long)st.applied_lsn, (unsigned long long)st.synced_lsn,
        (unsigned long long)st.store_syncs, (unsigned long long)st.store_writebacks,
        (unsigned long long)st.size, (unsigned long long)st.checkpoints, st.read_only ? 1 : 0,
        (unsigned long long)st.recovery.records_replayed);
  }
  if (sa_client_sync_state(ctx->client, &ss, NULL) == 0) {
    fprintf(f,
            "# HELP softadastra_outbox_size Operations recorded in the outbox.\n"
            "# TYPE softadastra_outbox_size gauge\nsoftadastra_outbox_size %llu\n"
            "# HELP softadastra_outbox_queued Operations waiting for the transport.\n"
            "# TYPE softadastra_outbox_queued gauge\nsoftadastra_outbox_queued %llu\n"
            "# HELP softadastra_outbox_in_flight Operations handed to the transport.\n"
            "# TYPE softadastra_outbox_in_flight gauge\nsoftadastra_outbox_in_flight %llu\n"
            "# HELP softadastra_outbox_failed Operations given up after max retries.\n"
            "# TYPE softadastra_outbox_failed gauge\nsoftadastra_outbox_failed %llu\n"
            "# HELP softadastra_outbox_acknowledged Operations acknowledged, kept until pruned.\n"
            "# TYPE softadastra_outbox_acknowledged gauge\nsoftadastra_outbox_acknowledged %llu\n"
            "# HELP softadastra_outbox_max Outbox entries before overflow is reported.\n"
            "# TYPE softadastra_outbox_max gauge\nsoftadastra_outbox_max %llu\n"
            "# HELP softadastra_outbox_overflow 1 while the outbox holds more than outbox_max.\n"
            "# TYPE softadastra_outbox_overflow gauge\nsoftadastra_outbox_overflow %d\n"
            "# HELP softadastra_outbox_pruned_total Outbox entries pruned since the node opened.\n"
            "# TYPE softadastra_outbox_pruned_total counter\nsoftadastra_outbox_pruned_total %llu\n"
            "# HELP softadastra_sync_retries_total Operations handed to the transport again.\n"
            "# TYPE softadastra_sync_retries_total counter\nsoftadastra_sync_retries_total %llu\n"
            "# HELP softadastra_sync_ticks_total Outbox ticks since the node opened.\n"
            "# TYPE softadastra_sync_ticks_total counter\nsoftadastra_sync_ticks_total %llu\n",
            (unsigned long long)ss.outbox_size, (unsigned long long)ss.queued,
            (unsigned long long)ss.in_flight, (unsigned long long)ss.failed,
            (unsigned long long)ss.acknowledged, (unsigned long long)ss.outbox_max,
            (int)ss.overflow, (unsigned long long)ss.pruned, (unsigned long long)ss.total_retries,
            (unsigned long long)ss.ticks);
  }
  sa_sync_counters sc;
  if (sa_client_sync_counters(ctx->client, &sc, NULL) == 0) api_metrics_write_sync(&sc, f);
  sa_stats ws;
  if (sa_client_stats(ctx->client, &ws, NULL) == 0) api_metrics_write_stats(&ws, f);
  api_backup_write_metrics(ctx, f); /* api_backup.c */
  api_sync_write_metrics(ctx, f);   /* api_sync.c */
  if (fclose(f) != 0) {
    free(buf);
    return &api_oom_response;
  }
  api_response *r = api_resp_new(200);
  if (!r) {
    free(buf);
    return &api_oom_response;
  }
  r->body = buf;
  r->body_len = len;
  r->content_type = "text/plain; version=0.0.4; charset=utf-8";
  return r;
}
