/*
 * api_metrics.c -- request counters and latency histograms (see
 * api_metrics.h).  Status codes are kept in a fixed table; a status that is
 * not in the table is counted under the last slot, rendered as "other".
 */
#include "api_metrics.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

static const int api_metrics_statuses[] = {200, 201, 204, 304, 400, 401, 403, 404, 405,
                                           409, 412, 413, 415, 431, 500, 503, 507, 0};
#define API_METRICS_NSTATUS (sizeof api_metrics_statuses / sizeof api_metrics_statuses[0])

/* Upper bounds of the latency buckets, in seconds (+Inf is implicit). */
static const double api_metrics_buckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                             0.005,  0.01,    0.025,  0.05,  0.1,
                                             0.25,   0.5,     1.0,    2.5,   5.0};
#define API_METRICS_NBUCKET (sizeof api_metrics_buckets / sizeof api_metrics_buckets[0])

static const char *const api_metrics_labels[API_ROUTE_COUNT_] = {
    [API_ROUTE_ROOT] = "/",
    [API_ROUTE_HEALTHZ] = "/healthz",
    [API_ROUTE_READYZ] = "/readyz",
    [API_ROUTE_METRICS] = "/metrics",
    [API_ROUTE_STATUS] = "/v1/status",
    [API_ROUTE_SYNC_STATUS] = "/v1/sync/status",
    [API_ROUTE_SYNC_TICK] = "/v1/sync/tick",
    [API_ROUTE_STORE_LIST] = "/v1/store",
    [API_ROUTE_STORE_KEY] = "/v1/store/{key}",
    [API_ROUTE_BATCH] = "/v1/batch",
    [API_ROUTE_CHANGES] = "/v1/changes",
    [API_ROUTE_OTHER] = "other",
};

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

const char *api_metrics_route_label(api_route_id route) {
  return (unsigned)route < API_ROUTE_COUNT_ ? api_metrics_labels[route] : "other";
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
    for (size_t s = 0; s < API_METRICS_NSTATUS; s++) {
      uint64_t v = atomic_load_explicit(&m->requests[r][s], memory_order_relaxed);
      if (v == 0) continue;
      if (api_metrics_statuses[s])
        fprintf(f, "softadastra_http_requests_total{route=\"%s\",status=\"%d\"} %llu\n",
                api_metrics_labels[r], api_metrics_statuses[s], (unsigned long long)v);
      else
        fprintf(f, "softadastra_http_requests_total{route=\"%s\",status=\"other\"} %llu\n",
                api_metrics_labels[r], (unsigned long long)v);
    }
  }
  fputs("# HELP softadastra_http_request_duration_seconds Time to handle a request, by route.\n"
        "# TYPE softadastra_http_request_duration_seconds histogram\n",
        f);
  for (int r = 0; r < API_ROUTE_COUNT_; r++) {
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
              api_metrics_labels[r], api_metrics_buckets[b], (unsigned long long)cum);
    }
    cum += counts[API_METRICS_NBUCKET];
    fprintf(f, "softadastra_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n",
            api_metrics_labels[r], (unsigned long long)cum);
    fprintf(f, "softadastra_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n",
            api_metrics_labels[r],
            (double)atomic_load_explicit(&m->sum_us[r], memory_order_relaxed) / 1e6);
    fprintf(f, "softadastra_http_request_duration_seconds_count{route=\"%s\"} %llu\n",
            api_metrics_labels[r], (unsigned long long)cum);
  }
}
