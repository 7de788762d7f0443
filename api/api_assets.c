/*
 * api_assets.c -- the table of the dashboard's compiled-in files (see
 * api_assets.h).  The bytes live in the generated api_assets_data.c.
 */
#include "api_assets.h"

#include <string.h>

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
