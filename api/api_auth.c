/*
 * api_auth.c -- who may ask: the bearer token and CORS (allowed origins,
 * the preflight answer to OPTIONS, the CORS headers of every answer).
 *
 * What it is: pure checks of a request's headers against the ctx's token and
 * origin list.  What it is not: the place that decides which routes need the
 * token (api_routes.c asks api_auth_open: the dashboard's files always
 * open; /healthz and /readyz open unless probes_need_token, so probes of
 * containers and load balancers carry no secret; /metrics open only with
 * metrics_open), nor a user or session system: one shared token, compared
 * in constant time.
 *
 * Invariants: the token comparison takes the same time for every token of
 * the configured length; an Origin is echoed back only when it is in the
 * allow-list (or the list holds "*"); with CORS on, every answer carries
 * "Vary: Origin" so a cache never serves one origin's answer to another.
 *
 * Threads: any request thread; reads the ctx only.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api_internal.h"

const char *api_cors_origin(const api_ctx *ctx, const api_request *req) {
  if (ctx->n_cors == 0) return NULL;
  const char *o = api_hdr(req, "Origin");
  if (!o || !*o) return NULL;
  if (ctx->cors_any) return o;
  for (size_t i = 0; i < ctx->n_cors; i++)
    if (strcmp(ctx->cors[i], o) == 0) return o;
  return NULL;
}

bool api_auth_open(const api_ctx *ctx, api_route_id id) {
  switch (id) {
  case API_ROUTE_ROOT:
    return true;
  case API_ROUTE_HEALTHZ:
  case API_ROUTE_READYZ:
    return !ctx->probes_need_token;
  case API_ROUTE_METRICS:
    return ctx->metrics_open;
  default:
    return false;
  }
}

bool api_auth_ok(const api_ctx *ctx, const api_request *req) {
  if (!ctx->auth_token) return true;
  const char *h = api_hdr(req, "Authorization");
  if (!h || strncasecmp(h, "Bearer ", 7) != 0) return false;
  const char *t = h + 7;
  while (*t == ' ')
    t++;
  size_t a = strlen(t), b = strlen(ctx->auth_token);
  unsigned char diff = (unsigned char)(a != b);
  for (size_t i = 0; i < b; i++)
    diff |= (unsigned char)(t[i < a ? i : 0] ^ ctx->auth_token[i]);
  return diff == 0 && a == b;
}

api_response *api_preflight(const api_ctx *ctx, const api_request *req, const api_route_info *rt) {
  const char *origin = api_hdr(req, "Origin");
  const char *want = api_hdr(req, "Access-Control-Request-Method");
  if (origin && want && !api_cors_origin(ctx, req))
    return api_reply_error(403, "cors_origin_denied", "origin is not in the CORS allow-list");
  api_response *r = api_resp_new(204);
  if (!r) return &api_oom_response;
  char allow[64];
  api_route_allow(rt, allow, sizeof allow);
  api_resp_header(r, "Allow", "%s", allow);
  if (origin && want) {
    api_resp_header(r, "Access-Control-Allow-Methods", "%s", allow);
    api_resp_header(r, "Access-Control-Allow-Headers",
                    "Authorization, Content-Type, If-Match, If-None-Match");
    api_resp_header(r, "Access-Control-Max-Age", "600");
  }
  return r;
}

void api_cors_headers(const api_ctx *ctx, const api_request *req, api_response *r) {
  const char *origin = api_cors_origin(ctx, req);
  if (origin) {
    api_resp_header(r, "Access-Control-Allow-Origin", "%s", origin);
    api_resp_header(r, "Access-Control-Expose-Headers", "ETag");
  }
  if (ctx->n_cors) api_resp_header(r, "Vary", "Origin");
}
