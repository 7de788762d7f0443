/*
 * api_metrics.h -- request counters and latency histograms of the REST API,
 * rendered in the Prometheus text exposition format.
 *
 * What it is: fixed arrays of atomic counters indexed by route and status;
 * no locks, no allocation after creation.  What it is not: the node's own
 * metrics (WAL bytes, outbox size): api_h_metrics appends those from the core when
 * it answers GET /metrics.
 *
 * Threads: api_metrics_observe and api_metrics_write may run concurrently
 * from any number of threads (relaxed atomics: a scrape may see a request
 * counted in one series and not yet in another).
 */
#ifndef SA_API_METRICS_H
#define SA_API_METRICS_H

#include <stdio.h>

/* Routes as metrics labels.  API_ROUTE_OTHER is every unknown path. */
typedef enum api_route_id {
  API_ROUTE_ROOT = 0,
  API_ROUTE_HEALTHZ,
  API_ROUTE_READYZ,
  API_ROUTE_METRICS,
  API_ROUTE_STATUS,
  API_ROUTE_SYNC_STATUS,
  API_ROUTE_SYNC_TICK,
  API_ROUTE_STORE_LIST,
  API_ROUTE_STORE_KEY,
  API_ROUTE_BATCH,
  API_ROUTE_CHANGES,
  API_ROUTE_SYNC_OPS,
  API_ROUTE_SYNC_SNAPSHOT,
  API_ROUTE_SYNC_DIGEST,
  API_ROUTE_BACKUP,
  API_ROUTE_OTHER,
  API_ROUTE_COUNT_
} api_route_id;

typedef struct api_metrics api_metrics;

/* Returns a new zeroed metrics set (free with api_metrics_destroy), or NULL
 * when out of memory. */
api_metrics *api_metrics_create(void);

/* Frees m.  NULL is a no-op. */
void api_metrics_destroy(api_metrics *m);

/* Counts one answered request: its route, status and handling time. */
void api_metrics_observe(api_metrics *m, api_route_id route, int status, double seconds);

/* Writes every request series (counters, histograms) to f in the Prometheus
 * text format. */
void api_metrics_write(const api_metrics *m, FILE *f);

/* The label of a route: its path in the route table ("/v1/store/{key}"),
 * "other" for API_ROUTE_OTHER; static string. */
const char *api_metrics_route_label(api_route_id route);

#endif /* SA_API_METRICS_H */
