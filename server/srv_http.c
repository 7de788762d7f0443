/*
 * srv_http.c -- the gate (see srv_http.h).
 *
 * THE ACCEPTED SUBSET OF RFC 9112, AND THE ANSWER TO EVERY REFUSED FORM
 *
 * Every refusal is a JSON error {"error":{"code":...,"message":...}} with
 * Connection: close; the connection is closed after it and nothing after the
 * refused bytes is parsed.
 *
 *   form                                              answer
 *   ------------------------------------------------  ---------------------------
 *   empty lines (CRLF) before the request line        skipped (2.2: SHOULD ignore)
 *   request line other than                           400 bad_request
 *     method SP target SP version CRLF
 *     (two spaces, HTAB, a missing part)
 *   a bare LF as a line end, or a CR without LF       400 bad_request
 *     (request line or fields)
 *   method not a token                                400 bad_request
 *   method of more than 32 bytes                      501 not_implemented
 *   CONNECT (authority-form)                          501 not_implemented
 *   version HTTP/1.1, HTTP/1.0                        accepted
 *   version HTTP/d.d other (HTTP/2.0, HTTP/0.9)       505 version_not_supported
 *   version anything else (http/1.1, HTTP/1.10)       400 bad_request
 *   target origin-form "/" *VCHAR                     accepted
 *   target absolute-form http:// or https://          accepted (3.2.2: MUST),
 *     (scheme in any case)                              routed by its path
 *   target "*" with OPTIONS                           accepted (the API answers)
 *   target with a byte outside VCHAR, another form    400 bad_request
 *   target over 8 KiB, or a request line that does    414 uri_too_long
 *     not end within max_header_bytes
 *   field name not a token (empty, a space or         400 bad_request
 *     control byte before the colon: 5.1 MUST)
 *   obs-fold (a line starting with SP or HTAB)        400 bad_request (5.2)
 *   NUL, another control byte or DEL in a value       400 bad_request
 *   obs-text (bytes 0x80-0xff) in a value             accepted
 *   OWS before and after a value                      trimmed (5.1: MUST)
 *   more than 100 fields, or a head over              431 header_too_large
 *     max_header_bytes (and the loop's 16 KiB)
 *   Content-Length not 1*DIGIT (+5, -1, 0x5, 5 ,5,    400 bad_request
 *     "5, 5", empty)
 *   Content-Length of more than 19 digits             413 payload_too_large
 *   Content-Length repeated, even with equal values   400 bad_request
 *   Transfer-Encoding: chunked (HTTP/1.1, one field,  accepted (PASS: the loop
 *     the one coding, any case)                         decodes the body strictly:
 *                                                       srv_chunked_*)
 *   Transfer-Encoding naming another coding (gzip,    501 not_implemented
 *     "gzip, chunked", identity)
 *   Transfer-Encoding "chunked, chunked", empty, a    400 bad_request
 *     bad list, or the field repeated
 *   Transfer-Encoding with Content-Length             400 bad_request (6.1)
 *   Transfer-Encoding in an HTTP/1.0 request          400 bad_request (6.1: faulty)
 *   Host missing or repeated (HTTP/1.1), repeated     400 bad_request (3.2: MUST)
 *     (HTTP/1.0)
 *   Host value with a byte outside the characters of  400 bad_request
 *     reg-name, IP-literal and port
 *   Expect: 100-continue (any case)                   accepted (PASS: the loop
 *                                                       answers 100 Continue)
 *   Expect: anything else                             417 expectation_failed
 *   Upgrade                                           ignored: never 101
 *   Connection: close                                 honoured (close after)
 *   Connection: keep-alive, other options             accepted, ignored
 *   HTTP/1.0 (with or without keep-alive)             accepted: one request, then
 *                                                       the connection closes
 *   neither Content-Length nor Transfer-Encoding      no body (6.3)
 *
 * An accepted request is OURS when it is whole in the caller's window (a
 * Content-Length body, or none, within cap), PASS when its body must be read
 * after the head (chunked, Expect: 100-continue, or larger than cap).  Who
 * serves it (the front loop, or libmicrohttpd for the change feed's streams)
 * is srv_front.c's choice, not the gate's.
 *
 * Decisions that need bytes not yet received are MORE; a refusal is given as
 * soon as the bytes that decide it are there, so a request sent one byte at
 * a time gets the same verdict as the same request sent whole.
 */
#include "srv_http.h"

#include <string.h>
#include <strings.h>

#define HTTP_METHOD_MAX 32 /* bytes of a method */
#define HTTP_CL_DIGITS 19  /* a longer Content-Length does not fit in 63 bits: 413 */

bool srv_http_tchar(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool http_vchar(unsigned char c) {
  return c >= 0x21 && c <= 0x7e;
}

/* A byte of a field value: HTAB, SP, VCHAR, obs-text. */
static bool http_vbyte(unsigned char c) {
  return c == '\t' || c == ' ' || http_vchar(c) || c >= 0x80;
}

static bool http_name_is(const srv_http_field *f, const char *name) {
  return f->name_len == strlen(name) && strncasecmp(f->name, name, f->name_len) == 0;
}

static bool http_eq(const char *s, size_t n, const char *lit) {
  return n == strlen(lit) && strncasecmp(s, lit, n) == 0;
}

/* Methods are case-sensitive (RFC 9110 9.1). */
static bool http_method_is(const srv_http_req *r, const char *m) {
  return r->method_len == strlen(m) && memcmp(r->method, m, r->method_len) == 0;
}

static srv_http_verdict http_refuse(srv_http_req *out, int status, const char *code,
                                    const char *why) {
  out->status = status;
  out->code = code;
  out->why = why;
  return SRV_HTTP_REFUSE;
}
#define BAD(why) http_refuse(out, 400, "bad_request", (why))

/* Host: reg-name / IP-literal, optional port (RFC 3986 characters). */
static bool http_host_ok(const char *v, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)v[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          strchr("-._~%!$&'()*+,;=:[]", c)))
      return false;
  }
  return true;
}

/* Splits a comma-separated list (RFC 9110 5.6.1) and calls each element's
 * check; empty elements are skipped.  Returns the number of elements, or -1
 * when one is not a token. */
static int http_list(const char *v, size_t n, const char **elem, size_t *elen, int max) {
  int k = 0;
  size_t i = 0;
  while (i < n) {
    while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
      i++;
    if (i == n) break;
    size_t s = i;
    while (i < n && srv_http_tchar((unsigned char)v[i]))
      i++;
    size_t e = i;
    while (i < n && (v[i] == ' ' || v[i] == '\t'))
      i++;
    if (e == s || (i < n && v[i] != ',')) return -1;
    if (k < max) {
      elem[k] = v + s;
      elen[k] = e - s;
    }
    k++;
  }
  return k;
}

const char *srv_http_origin(const char *t) {
  if (!t) return NULL;
  if (t[0] == '/') return t;
  size_t sl = strncasecmp(t, "http://", 7) == 0 ? 7 : strncasecmp(t, "https://", 8) == 0 ? 8 : 0;
  if (!sl) return NULL;
  const char *p = t + sl;
  while (*p && *p != '/' && *p != '?' && *p != '#')
    p++;
  return p;
}

srv_http_verdict srv_http_parse(const char *buf, size_t len, size_t max_head, size_t cap,
                                srv_http_req *out) {
  memset(out, 0, offsetof(srv_http_req, fields));
  memset(&out->close, 0, sizeof *out - offsetof(srv_http_req, close));
  /* Only the first max_head bytes can hold the head: running out of them is
   * MORE while the buffer is shorter, and 414/431 once it is not. */
  size_t w = len < max_head ? len : max_head;
  bool full = len >= max_head;
#define SHORT(status, code, why) (full ? http_refuse(out, (status), (code), (why)) : SRV_HTTP_MORE)
#define SHORT_LINE SHORT(414, "uri_too_long", "the request line is longer than the head limit")
#define SHORT_HEAD SHORT(431, "header_too_large", "the request head is over max_header_bytes")

  size_t p = 0;
  while (p < w && buf[p] == '\r') { /* empty lines before the request line */
    if (p + 1 == w) return SHORT_LINE;
    if (buf[p + 1] != '\n') return BAD("a CR without LF ends a line");
    p += 2;
  }
  out->skip = p;

  /* method SP */
  size_t ms = p;
  while (p < w && srv_http_tchar((unsigned char)buf[p])) {
    if (p - ms == HTTP_METHOD_MAX)
      return http_refuse(out, 501, "not_implemented", "the request method is not supported");
    p++;
  }
  if (p == w) return SHORT_LINE;
  if (buf[p] == '\n') return BAD("a bare LF ends a line");
  if (buf[p] != ' ' || p == ms) return BAD("malformed request line: the method is not a token");
  out->method = buf + ms;
  out->method_len = p - ms;
  p++;

  /* target SP */
  size_t ts = p;
  while (p < w && buf[p] != ' ') {
    unsigned char c = (unsigned char)buf[p];
    if (c == '\n' || c == '\r')
      return BAD("malformed request line: it must be method, target and version");
    if (!http_vchar(c)) return BAD("malformed request line: a byte outside VCHAR in the target");
    if (p - ts == SRV_HTTP_TARGET_MAX)
      return http_refuse(out, 414, "uri_too_long", "the request target is over 8 KiB");
    p++;
  }
  if (p == w) return SHORT_LINE;
  if (p == ts) return BAD("malformed request line: two spaces, or no target");
  out->target = buf + ts;
  out->target_len = p - ts;
  p++;

  /* version CRLF: "HTTP/" DIGIT "." DIGIT */
  size_t vs = p;
  while (p < w && buf[p] != '\r' && buf[p] != '\n') {
    if (p - vs == 8) return BAD("malformed request line: the version is not HTTP/d.d");
    p++;
  }
  if (p == w) return SHORT_LINE;
  const char *v = buf + vs;
  size_t vn = p - vs;
  if (vn != 8 || memcmp(v, "HTTP/", 5) != 0 || v[6] != '.' || v[5] < '0' || v[5] > '9' ||
      v[7] < '0' || v[7] > '9')
    return BAD("malformed request line: the version is not HTTP/d.d");
  if (buf[p] == '\n') return BAD("a bare LF ends a line");
  if (p + 1 == w) return SHORT_LINE;
  if (buf[p + 1] != '\n') return BAD("a CR without LF ends a line");
  p += 2;
  if (v[5] == '1' && v[7] == '1')
    out->version = 11;
  else if (v[5] == '1' && v[7] == '0')
    out->version = 10;
  else
    return http_refuse(out, 505, "version_not_supported", "only HTTP/1.1 and HTTP/1.0 are served");

  /* The target's form decides the path the router sees. */
  if (http_method_is(out, "CONNECT"))
    return http_refuse(out, 501, "not_implemented", "CONNECT is not supported");
  const char *t = out->target;
  size_t tn = out->target_len;
  if (t[0] == '/') {
    out->path = t;
    out->path_len = tn;
  } else if (tn == 1 && t[0] == '*' && http_method_is(out, "OPTIONS")) {
    out->path = t + 1;
    out->path_len = 0;
  } else {
    size_t sl = tn >= 7 && strncasecmp(t, "http://", 7) == 0    ? 7
                : tn >= 8 && strncasecmp(t, "https://", 8) == 0 ? 8
                                                                : 0;
    if (!sl || sl == tn || t[sl] == '/' || t[sl] == '?' || t[sl] == '#')
      return BAD("the request target is neither a path nor an absolute URI");
    size_t i = sl;
    while (i < tn && t[i] != '/' && t[i] != '?' && t[i] != '#')
      i++;
    if (!http_host_ok(t + sl, i - sl)) return BAD("the request target's authority is malformed");
    out->path = t + i;
    out->path_len = tn - i;
  }

  /* fields, up to the empty line */
  int n_host = 0, n_cl = 0, n_te = 0;
  size_t n_all = 0;
  bool te_bad = false;
  for (;;) {
    if (p == w) return SHORT_HEAD;
    if (buf[p] == '\r') {
      if (p + 1 == w) return SHORT_HEAD;
      if (buf[p + 1] != '\n') return BAD("a CR without LF ends a line");
      p += 2;
      break;
    }
    if (buf[p] == '\n') return BAD("a bare LF ends a line");
    if (buf[p] == ' ' || buf[p] == '\t')
      return BAD("a header line starts with whitespace (obs-fold)");
    size_t ns = p;
    while (p < w && srv_http_tchar((unsigned char)buf[p]))
      p++;
    if (p == w) return SHORT_HEAD;
    if (buf[p] != ':' || p == ns) return BAD("malformed header field: the name is not a token");
    srv_http_field fl = {.name = buf + ns, .name_len = p - ns};
    p++;
    while (p < w && (buf[p] == ' ' || buf[p] == '\t'))
      p++;
    size_t vstart = p;
    while (p < w && buf[p] != '\r') {
      unsigned char c = (unsigned char)buf[p];
      if (c == '\n') return BAD("a bare LF ends a line");
      if (!http_vbyte(c)) return BAD("a control byte in a header value");
      p++;
    }
    if (p + 1 >= w) return SHORT_HEAD;
    if (buf[p + 1] != '\n') return BAD("a CR without LF ends a line");
    size_t vend = p;
    while (vend > vstart && (buf[vend - 1] == ' ' || buf[vend - 1] == '\t'))
      vend--;
    fl.value = buf + vstart;
    fl.value_len = vend - vstart;
    p += 2;
    if (++n_all > SRV_HTTP_MAX_FIELDS)
      return http_refuse(out, 431, "header_too_large", "more than 100 header fields");
    out->fields[out->n_fields++] = fl;

    if (http_name_is(&fl, "Host")) {
      if (++n_host > 1) return BAD("more than one Host header");
      if (!http_host_ok(fl.value, fl.value_len)) return BAD("malformed Host header");
    } else if (http_name_is(&fl, "Content-Length")) {
      if (++n_cl > 1) return BAD("more than one Content-Length header");
      if (fl.value_len == 0) return BAD("malformed Content-Length: it must be digits");
      uint64_t cl = 0;
      for (size_t i = 0; i < fl.value_len; i++) {
        if (fl.value[i] < '0' || fl.value[i] > '9')
          return BAD("malformed Content-Length: it must be digits");
        cl = cl * 10 + (uint64_t)(fl.value[i] - '0');
      }
      if (fl.value_len > HTTP_CL_DIGITS)
        return http_refuse(out, 413, "payload_too_large", "the Content-Length is too large");
      out->has_length = true;
      out->length = cl;
    } else if (http_name_is(&fl, "Transfer-Encoding")) {
      if (++n_te > 1) return BAD("more than one Transfer-Encoding header");
      const char *e[4];
      size_t el[4];
      int k = http_list(fl.value, fl.value_len, e, el, 4);
      if (k <= 0) return BAD("malformed Transfer-Encoding");
      int chunked = 0;
      for (int i = 0; i < k && i < 4; i++) {
        if (http_eq(e[i], el[i], "chunked"))
          chunked++;
        else
          te_bad = true;
      }
      if (te_bad || k > 4)
        return http_refuse(out, 501, "not_implemented",
                           "only the chunked transfer coding is supported");
      if (chunked != 1) return BAD("chunked is applied more than once");
      out->chunked = true;
    } else if (http_name_is(&fl, "Expect")) {
      if (!http_eq(fl.value, fl.value_len, "100-continue"))
        return http_refuse(out, 417, "expectation_failed", "only Expect: 100-continue is met");
      out->expect_continue = true;
    } else if (http_name_is(&fl, "Connection")) {
      const char *e[16];
      size_t el[16];
      int k = http_list(fl.value, fl.value_len, e, el, 16);
      if (k < 0) return BAD("malformed Connection header");
      for (int i = 0; i < k && i < 16; i++)
        if (http_eq(e[i], el[i], "close")) out->close = true;
    }
  }
  out->head_len = p;
  out->body = buf + p;

  if (out->chunked && out->version == 10) return BAD("Transfer-Encoding in an HTTP/1.0 request");
  if (out->chunked && out->has_length) return BAD("both Content-Length and Transfer-Encoding");
  if (out->version == 11 && n_host == 0) return BAD("HTTP/1.1 request without Host header");

  /* Framing is decided.  The whole request is in the window (OURS) when it
   * has a Content-Length body (or none) that fits cap and has arrived;
   * a chunked body, an Expect, or a body past cap is read by the caller
   * after the head (PASS). */
  if (out->chunked || out->expect_continue) return SRV_HTTP_PASS;
  uint64_t cl = out->has_length ? out->length : 0;
  if (p > cap || cl > cap - p) return SRV_HTTP_PASS;
  out->body_len = (size_t)cl;
  out->total = p + (size_t)cl;
  return out->total <= len ? SRV_HTTP_OURS : SRV_HTTP_MORE;
#undef SHORT
#undef SHORT_LINE
#undef SHORT_HEAD
}

const srv_http_field *srv_http_find(const srv_http_req *r, const char *name) {
  for (size_t i = 0; i < r->n_fields; i++)
    if (http_name_is(&r->fields[i], name)) return &r->fields[i];
  return NULL;
}
