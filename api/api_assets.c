/*
 * api_assets.c -- the dashboard's compiled-in files (see api_assets.h): their
 * table and the handler of GET /, /dashboard, /dashboard.js, /dashboard.css.
 * The bytes live in the generated api_assets_data.c.
 *
 * What it is not: a file server; only the four paths of the table exist.
 * Invariants: every asset answer carries API_ASSETS_CSP and nosniff; the
 * table is constant.  Threads: any request thread.
 */
#include "api_assets.h"

#include <stdlib.h>
#include <string.h>

#include "api_internal.h"

typedef struct api_asset_entry {
  const char *path;          /* raw request path */
  const char *content_type;  /* static */
  const unsigned char *data; /* generated array */
  const size_t *len;         /* its generated length (not a constant expression) */
} api_asset_entry;

static const api_asset_entry api_asset_table[] = {
    {"/", "text/html; charset=utf-8", api_asset_html, &api_asset_html_len},
    {"/dashboard", "text/html; charset=utf-8", api_asset_html, &api_asset_html_len},
    {"/dashboard.js", "text/javascript; charset=utf-8", api_asset_js, &api_asset_js_len},
    {"/dashboard.css", "text/css; charset=utf-8", api_asset_css, &api_asset_css_len},
};

int api_asset_find(const char *path, size_t len, api_asset *out) {
  for (size_t i = 0; i < sizeof api_asset_table / sizeof api_asset_table[0]; i++) {
    const api_asset_entry *e = &api_asset_table[i];
    if (strlen(e->path) == len && memcmp(e->path, path, len) == 0) {
      out->path = e->path;
      out->content_type = e->content_type;
      out->data = e->data;
      out->len = *e->len;
      return 0;
    }
  }
  return -1;
}

/* The dashboard's compiled-in files (api_assets.h): /, /dashboard,
 * /dashboard.js, /dashboard.css, under a strict Content-Security-Policy. */
api_response *api_h_root(const char *path) {
  api_asset a;
  if (api_asset_find(path, strlen(path), &a) != 0)
    return api_reply_error(404, "route_not_found", "no such page");
  api_response *r = api_resp_new(200);
  if (!r) return &api_oom_response;
  r->body = malloc(a.len + 1);
  if (!r->body) {
    api_response_free(r);
    return &api_oom_response;
  }
  memcpy(r->body, a.data, a.len + 1);
  r->body_len = a.len;
  r->content_type = a.content_type;
  api_resp_header(r, "X-Content-Type-Options", "nosniff");
  api_resp_header(r, "X-Frame-Options", "DENY");
  api_resp_header(r, "Referrer-Policy", "no-referrer");
  api_resp_header(r, "Cache-Control", "no-cache");
  api_resp_header(r, "Content-Security-Policy", "%s", API_ASSETS_CSP);
  return r;
}
