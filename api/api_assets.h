/*
 * api_assets.h -- the dashboard's files, compiled into the executable:
 * GET / and /dashboard (the page), /dashboard.js, /dashboard.css.
 *
 * What it is: a fixed table of (path, content type, bytes).  The bytes come
 * from api/dashboard.{html,js,css}, turned into C arrays at build time by
 * api/embed.cmake (no CDN, no external fonts: the node may be offline).
 * The page is served under API_ASSETS_CSP: scripts and styles only from the
 * node itself, no inline script or style, no framing, fetch/XHR only to the
 * node.
 *
 * Threads: constant data; call from anywhere.
 */
#ifndef SA_API_ASSETS_H
#define SA_API_ASSETS_H

#include <stddef.h>

/* The Content-Security-Policy of every asset response. */
#define API_ASSETS_CSP                                                                             \
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "                  \
  "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

typedef struct api_asset {
  const char *path;          /* raw request path: "/dashboard.js" */
  const char *content_type;  /* static */
  const unsigned char *data; /* static bytes, NUL-terminated */
  size_t len;                /* bytes at data, without the NUL */
} api_asset;

/* Looks up the asset at a raw path of len bytes (no query).  Returns 0 and
 * fills *out (static pointers), or -1 when no asset has that path. */
int api_asset_find(const char *path, size_t len, api_asset *out);

/* The generated arrays (api_assets_data.c, from embed.cmake). */
extern const unsigned char api_asset_html[], api_asset_js[], api_asset_css[];
extern const size_t api_asset_html_len, api_asset_js_len, api_asset_css_len;

#endif /* SA_API_ASSETS_H */
