/*
 * srv_http.c -- the front loop's request parser (see srv_http.h).
 *
 * Grammar accepted (RFC 9112, a strict subset):
 *   request   = method SP target SP "HTTP/1.1" CRLF *( field CRLF ) CRLF body
 *   method    = "GET" / "PUT" / "DELETE"
 *   target    = "/v1/store/" 1*VCHAR      (origin-form, checked by the API)
 *   field     = token ":" OWS value OWS
 *   value     = *( HTAB / SP / VCHAR / obs-text ), trimmed
 * Every decision that needs bytes not yet in the buffer is MORE when those
 * bytes could still make a request the loop serves, and PASS when they could
 * not (over a limit), so the caller never waits for a request it will pass.
 */
#include "srv_http.h"

#include <string.h>
#include <strings.h>

#define SRV_HTTP_PREFIX "/v1/store/"
#define SRV_HTTP_CL_DIGITS 12 /* a longer Content-Length is passed (libmicrohttpd: 413) */

bool srv_http_tchar(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* Does buf[p, len) start with lit?  1 yes, 0 not yet known (too short but a
 * prefix of it), -1 no. */
static int http_lit(const char *buf, size_t len, size_t p, const char *lit) {
  size_t n = strlen(lit), have = len - p < n ? len - p : n;
  if (memcmp(buf + p, lit, have) != 0) return -1;
  return have == n ? 1 : 0;
}

static bool http_name_is(const srv_http_field *f, const char *name) {
  return f->name_len == strlen(name) && strncasecmp(f->name, name, f->name_len) == 0;
}

/* Connection: a comma-separated list where only close and keep-alive are
 * ours.  Returns false for any other option (upgrade, a hop-by-hop header
 * name, ...). */
static bool http_connection(const char *v, size_t n, bool *close) {
  size_t i = 0;
  while (i < n) {
    while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
      i++;
    size_t s = i;
    while (i < n && v[i] != ',' && v[i] != ' ' && v[i] != '\t')
      i++;
    size_t t = i - s;
    if (t == 0) continue;
    if (t == 5 && strncasecmp(v + s, "close", 5) == 0)
      *close = true;
    else if (!(t == 10 && strncasecmp(v + s, "keep-alive", 10) == 0))
      return false;
  }
  return true;
}

srv_http_verdict srv_http_parse(const char *buf, size_t len, size_t max_head, size_t max_body,
                                size_t cap, srv_http_req *out) {
  static const char *const methods[] = {"GET ", "PUT ", "DELETE "};
  memset(out, 0, offsetof(srv_http_req, fields));
  out->close = false;
  /* Only the first max_head bytes can hold the head; running out of them is
   * MORE while the buffer is shorter and PASS once it is not. */
  size_t w = len < max_head ? len : max_head;
  srv_http_verdict short_head = len < max_head ? SRV_HTTP_MORE : SRV_HTTP_PASS;

  size_t p = 0;
  bool maybe = false;
  for (size_t i = 0; i < sizeof methods / sizeof methods[0] && !out->method; i++) {
    int m = http_lit(buf, w, 0, methods[i]);
    if (m == 1) {
      out->method = buf;
      out->method_len = strlen(methods[i]) - 1;
      p = out->method_len + 1;
    } else if (m == 0) {
      maybe = true;
    }
  }
  if (!out->method) return maybe ? short_head : SRV_HTTP_PASS;

  int m = http_lit(buf, w, p, SRV_HTTP_PREFIX);
  if (m != 1) return m == 0 ? short_head : SRV_HTTP_PASS;
  out->target = buf + p;
  while (p < w && buf[p] != ' ') {
    unsigned char c = (unsigned char)buf[p];
    if (c < 0x21 || c > 0x7e) return SRV_HTTP_PASS;
    p++;
  }
  if (p == w) return short_head;
  out->target_len = (size_t)(buf + p - out->target);
  if (out->target_len == strlen(SRV_HTTP_PREFIX)) return SRV_HTTP_PASS; /* no key */
  p++;
  m = http_lit(buf, w, p, "HTTP/1.1\r\n");
  if (m != 1) return m == 0 ? short_head : SRV_HTTP_PASS;
  p += 10;

  int n_host = 0, n_cl = 0;
  size_t cl = 0;
  for (;;) {
    if (p == w) return short_head;
    if (buf[p] == '\r') {
      if (p + 1 == w) return short_head;
      if (buf[p + 1] != '\n') return SRV_HTTP_PASS;
      p += 2;
      break;
    }
    size_t ns = p;
    while (p < w && srv_http_tchar((unsigned char)buf[p]))
      p++;
    if (p == w) return short_head;
    if (buf[p] != ':' || p == ns) return SRV_HTTP_PASS; /* not a token, obs-fold, bare LF */
    if (out->n_fields == SRV_HTTP_MAX_FIELDS) return SRV_HTTP_PASS;
    srv_http_field *f = &out->fields[out->n_fields++];
    f->name = buf + ns;
    f->name_len = p - ns;
    p++;
    while (p < w && (buf[p] == ' ' || buf[p] == '\t'))
      p++;
    size_t vs = p;
    while (p < w && buf[p] != '\r') {
      unsigned char c = (unsigned char)buf[p];
      if ((c < 0x20 && c != '\t') || c == 0x7f) return SRV_HTTP_PASS;
      p++;
    }
    if (p + 1 >= w) return short_head;
    if (buf[p + 1] != '\n') return SRV_HTTP_PASS;
    size_t ve = p;
    while (ve > vs && (buf[ve - 1] == ' ' || buf[ve - 1] == '\t'))
      ve--;
    f->value = buf + vs;
    f->value_len = ve - vs;
    p += 2;

    if (http_name_is(f, "Host")) {
      n_host++;
    } else if (http_name_is(f, "Content-Length")) {
      if (n_cl++ || f->value_len == 0 || f->value_len > SRV_HTTP_CL_DIGITS) return SRV_HTTP_PASS;
      for (size_t i = 0; i < f->value_len; i++) {
        if (f->value[i] < '0' || f->value[i] > '9') return SRV_HTTP_PASS;
        cl = cl * 10 + (size_t)(f->value[i] - '0');
      }
    } else if (http_name_is(f, "Connection")) {
      if (!http_connection(f->value, f->value_len, &out->close)) return SRV_HTTP_PASS;
    } else if (http_name_is(f, "Transfer-Encoding") || http_name_is(f, "Expect") ||
               http_name_is(f, "Upgrade")) {
      return SRV_HTTP_PASS;
    }
  }
  if (n_host != 1) return SRV_HTTP_PASS;
  if (cl > 0 && out->method[0] != 'P') return SRV_HTTP_PASS; /* a body on GET or DELETE */
  if (cl > max_body || p > cap || cl > cap - p) return SRV_HTTP_PASS;
  out->head_len = p;
  out->body = buf + p;
  out->body_len = cl;
  out->total = p + cl;
  return out->total <= len ? SRV_HTTP_OURS : SRV_HTTP_MORE;
}

const srv_http_field *srv_http_find(const srv_http_req *r, const char *name) {
  for (size_t i = 0; i < r->n_fields; i++)
    if (http_name_is(&r->fields[i], name)) return &r->fields[i];
  return NULL;
}
