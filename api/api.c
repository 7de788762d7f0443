/*
 * api.c -- the REST API's context: create, destroy, draining (see api.h for
 * the module's contract, api_internal.h for the map of its files).
 *
 * Request flow, in this order (api_routes.c: api_handle):
 *   1. split the raw target into path and query; match the route on the raw
 *      path (so "%2F" inside a key never changes the route);
 *   2. OPTIONS answers 204 (CORS preflight when an Origin asks) without auth;
 *   3. the bearer token, when configured (every route but the probes and the
 *      dashboard's files);
 *   4. unknown route 404, wrong method 405 with Allow;
 *   5. the handler; then CORS headers, "Connection: close" when draining,
 *      and the metrics.
 *
 * Errors: every error body is {"error":{"code":"snake_case","message":"..."}}
 * built by api_reply_error.  Core error codes become HTTP statuses in exactly
 * one place, api_reply_sa_error (api_answer.c); the core's sa_error.message
 * is passed on.
 *
 * What this file is not: a handler or a router.  It only owns the ctx.
 *
 * Invariants: after api_ctx_create the ctx is read-only but for `draining`
 * (atomic), the metrics (atomic counters) and the shared page of the sync
 * feed (under its own lock, api_sync.c); nothing in the API keeps a
 * pointer into a request after api_handle returns.
 *
 * Threads: api_ctx_create and api_ctx_destroy on one thread with nothing else
 * running on the ctx; api_ctx_set_draining from any thread.
 */
#include "api.h"

#include <stdlib.h>
#include <string.h>

#include "api_internal.h"

int api_ctx_create(const api_config *cfg, api_ctx **out) {
  *out = NULL;
  if (!cfg || !cfg->client) return SA_EINVAL;
  api_ctx *c = calloc(1, sizeof *c);
  if (!c) return SA_ENOMEM;
  c->client = cfg->client;
  c->metrics_extra = cfg->metrics_extra;
  c->metrics_extra_cls = cfg->metrics_extra_cls;
  c->max_value_bytes = cfg->max_value_bytes ? cfg->max_value_bytes : SA_DEFAULT_MAX_VALUE_BYTES;
  c->max_batch_bytes = cfg->max_batch_bytes ? cfg->max_batch_bytes : SA_DEFAULT_MAX_BATCH_BYTES;
  c->page_value_bytes = cfg->page_value_bytes ? cfg->page_value_bytes : API_LIST_MAX_VALUE_BYTES;
  c->metrics = api_metrics_create();
  if (!c->metrics) goto oom;
  c->sync_share = api_sync_share_create();
  if (!c->sync_share) goto oom;
  c->probes_need_token = cfg->probes_need_token;
  c->metrics_open = cfg->metrics_open;
  if (cfg->auth_token && cfg->auth_token[0]) {
    c->auth_token = strdup(cfg->auth_token);
    if (!c->auth_token) goto oom;
  }
  if (cfg->n_cors_origins) {
    c->cors = calloc(cfg->n_cors_origins, sizeof *c->cors);
    if (!c->cors) goto oom;
    for (size_t i = 0; i < cfg->n_cors_origins; i++) {
      if (strcmp(cfg->cors_origins[i], "*") == 0) c->cors_any = true;
      c->cors[i] = strdup(cfg->cors_origins[i]);
      if (!c->cors[i]) goto oom;
      c->n_cors++;
    }
  }
  c->sync_peers = cfg->sync_peers;
  c->sync_served = cfg->sync_served;
  c->sync_discovery = cfg->sync_discovery;
  c->sync_cls = cfg->sync_cls;
  if (cfg->sync_transport && cfg->sync_transport[0]) {
    c->sync_transport = strdup(cfg->sync_transport);
    if (!c->sync_transport) goto oom;
  }
  sa_status st;
  if (sa_client_status(c->client, &st, NULL) == 0)
    memcpy(c->node_id, st.node_id, sizeof c->node_id);
  atomic_init(&c->draining, false);
  clock_gettime(CLOCK_MONOTONIC, &c->started);
  *out = c;
  return 0;
oom:
  api_ctx_destroy(c);
  return SA_ENOMEM;
}

void api_ctx_destroy(api_ctx *ctx) {
  if (!ctx) return;
  for (size_t i = 0; i < ctx->n_cors; i++)
    free(ctx->cors[i]);
  free(ctx->cors);
  free(ctx->auth_token);
  free(ctx->sync_transport);
  api_metrics_destroy(ctx->metrics);
  api_sync_share_destroy(ctx->sync_share);
  free(ctx);
}

void api_ctx_set_draining(api_ctx *ctx, bool draining) {
  atomic_store(&ctx->draining, draining);
}
