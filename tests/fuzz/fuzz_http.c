/*
 * fuzz_http.c -- the gate (server/srv_http.c): arbitrary bytes, split at
 * arbitrary points.
 *
 * Input: byte 0 sets max_head (64 + 64 * b), bytes 1-2 how the rest is split
 * (a seed for the cut points), the rest is what a client sent.  Properties:
 *   - the verdict is one of the four, and the gate reads nothing past the
 *     bytes it is given (ASan);
 *   - one framing for the same bytes: the bytes are delivered in pieces (cut
 *     points derived from byte 2); once a prefix gives a verdict other than
 *     MORE, every longer prefix and the whole input give the same verdict
 *     and the same framing (head length, body length, chunked, the refusal's
 *     status), so a request sent byte by byte is read exactly as the same
 *     request sent whole;
 *   - OURS and PASS: a whole head (it ends in CRLF CRLF within max_head),
 *     HTTP/1.0 or 1.1, never both a Content-Length and chunked, chunked only
 *     in 1.1, every field inside the head, the byte after each value, the
 *     method and the target a separator inside the head (the loop writes a
 *     NUL there), no value holding CR, LF or NUL, one Host (1.1);
 *   - OURS: the request fits (total <= len, <= the window), its body is its
 *     Content-Length, no chunked, no Expect; every shorter prefix is MORE;
 *   - PASS: chunked, Expect, or a body larger than the window; a chunked
 *     body is then fed to the decoder (srv_chunked.h) whole and in pieces:
 *     the same verdict, the same body length, the same data;
 *   - REFUSE: a status of the table (400, 413, 414, 417, 431, 501, 505) with
 *     a code and a message.
 */
#include "fuzz.h"

#include "srv_chunked.h"
#include "srv_http.h"

#include <string.h>
#include <strings.h>

#define CAP 16384

static bool inside(const char *p, size_t n, const char *lo, const char *hi) {
  return p >= lo && p + n <= hi;
}

/* A head the gate accepted (OURS or PASS). */
static void check_head(const char *buf, size_t len, size_t max_head, const srv_http_req *r) {
  const char *head_end = buf + r->head_len;
  FUZZ_CHECK(r->head_len >= 4 && r->head_len <= len && r->head_len <= max_head);
  FUZZ_CHECK(memcmp(head_end - 4, "\r\n\r\n", 4) == 0);
  FUZZ_CHECK(r->version == 10 || r->version == 11);
  FUZZ_CHECK(!(r->chunked && r->has_length) && !(r->chunked && r->version == 10));
  FUZZ_CHECK(r->method == buf + r->skip && r->method_len > 0);
  FUZZ_CHECK(r->method[r->method_len] == ' ');
  FUZZ_CHECK(inside(r->target, r->target_len + 1, buf, head_end) &&
             r->target[r->target_len] == ' ');
  FUZZ_CHECK(inside(r->path, r->path_len, r->target, r->target + r->target_len));
  FUZZ_CHECK(r->path + r->path_len == r->target + r->target_len);
  int hosts = 0;
  FUZZ_CHECK(r->n_fields <= SRV_HTTP_MAX_FIELDS);
  for (size_t i = 0; i < r->n_fields; i++) {
    const srv_http_field *f = &r->fields[i];
    FUZZ_CHECK(f->name_len > 0 && inside(f->name, f->name_len, buf, head_end));
    FUZZ_CHECK(inside(f->value, f->value_len + 1, buf, head_end));
    char after = f->value[f->value_len];
    FUZZ_CHECK(after == '\r' || after == ' ' || after == '\t');
    for (size_t k = 0; k < f->value_len; k++)
      FUZZ_CHECK(f->value[k] != '\r' && f->value[k] != '\n' && f->value[k] != '\0');
    if (f->name_len == 4 && strncasecmp(f->name, "Host", 4) == 0) hosts++;
    if (!r->chunked)
      FUZZ_CHECK(!(f->name_len == 17 && strncasecmp(f->name, "Transfer-Encoding", 17) == 0));
  }
  FUZZ_CHECK(r->version == 10 ? hosts <= 1 : hosts == 1);
}

static void check_ours(const char *buf, size_t len, size_t max_head, const srv_http_req *r) {
  check_head(buf, len, max_head, r);
  FUZZ_CHECK(r->total == r->head_len + r->body_len && r->total <= len && r->total <= CAP);
  FUZZ_CHECK(r->body == buf + r->head_len && !r->chunked && !r->expect_continue);
  FUZZ_CHECK(r->body_len == (r->has_length ? r->length : 0));
  srv_http_req again;
  for (size_t cut = 0; cut < r->total; cut += 1 + cut / 8)
    FUZZ_CHECK(srv_http_parse(buf, cut, max_head, CAP, &again) == SRV_HTTP_MORE);
}

static int sink(void *cls, const char *p, size_t n) {
  size_t *total = cls;
  (void)p;
  *total += n;
  return 0;
}

/* The bytes after a chunked head, through the decoder whole and in pieces:
 * the same verdict, the same length of body bytes and of data. */
static void check_chunked(const char *in, size_t n, unsigned seed) {
  srv_chunked w;
  srv_chunked_init(&w, 1u << 20);
  size_t wused = 0, wdata = 0;
  int vw = srv_chunked_feed(&w, in, n, &wused, sink, &wdata);
  FUZZ_CHECK(vw == SRV_CHUNKED_MORE || vw == SRV_CHUNKED_DONE || vw == SRV_CHUNKED_ERROR);
  FUZZ_CHECK(vw != SRV_CHUNKED_MORE || wused == n);
  FUZZ_CHECK(vw == SRV_CHUNKED_ERROR || wused <= n);
  if (vw == SRV_CHUNKED_ERROR) FUZZ_CHECK(w.status == 400 || w.status == 413);
  srv_chunked p;
  srv_chunked_init(&p, 1u << 20);
  size_t at = 0, pdata = 0;
  int vp = SRV_CHUNKED_MORE;
  while (at < n && vp == SRV_CHUNKED_MORE) {
    seed = seed * 1103515245u + 12345u;
    size_t step = 1 + (seed >> 16) % 9;
    if (step > n - at) step = n - at;
    size_t used = 0;
    vp = srv_chunked_feed(&p, in + at, step, &used, sink, &pdata);
    if (vp != SRV_CHUNKED_ERROR) at += used;
  }
  FUZZ_CHECK(vp == vw);
  if (vw == SRV_CHUNKED_DONE) FUZZ_CHECK(at == wused && pdata == wdata);
  if (vw == SRV_CHUNKED_ERROR) FUZZ_CHECK(p.status == w.status);
}

static void check_verdict(const char *buf, size_t len, size_t max_head, srv_http_verdict v,
                          const srv_http_req *r) {
  FUZZ_CHECK(v == SRV_HTTP_MORE || v == SRV_HTTP_OURS || v == SRV_HTTP_PASS ||
             v == SRV_HTTP_REFUSE);
  if (v == SRV_HTTP_OURS) check_ours(buf, len, max_head, r);
  if (v == SRV_HTTP_PASS) {
    check_head(buf, len, max_head, r);
    FUZZ_CHECK(r->chunked || r->expect_continue || r->head_len + r->length > CAP);
  }
  if (v == SRV_HTTP_REFUSE) {
    int s = r->status;
    FUZZ_CHECK(s == 400 || s == 413 || s == 414 || s == 417 || s == 431 || s == 501 || s == 505);
    FUZZ_CHECK(r->code && r->why && r->why[0]);
  }
}

/* The framing a decisive verdict gives: equal for the same request. */
static bool same_framing(srv_http_verdict a, const srv_http_req *x, srv_http_verdict b,
                         const srv_http_req *y) {
  if (a != b) return false;
  if (a == SRV_HTTP_REFUSE) return x->status == y->status;
  if (a == SRV_HTTP_MORE) return true;
  return x->head_len == y->head_len && x->body_len == y->body_len && x->total == y->total &&
         x->chunked == y->chunked && x->has_length == y->has_length && x->length == y->length &&
         x->version == y->version && x->close == y->close;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 3) return 0;
  size_t max_head = 64 + 64 * (size_t)data[0];
  unsigned seed = data[1] | (unsigned)data[2] << 8;
  const char *buf = (const char *)data + 3;
  size_t len = size - 3;

  srv_http_req whole;
  srv_http_verdict vw = srv_http_parse(buf, len, max_head, CAP, &whole);
  check_verdict(buf, len, max_head, vw, &whole);
  if (vw == SRV_HTTP_PASS && whole.chunked)
    check_chunked(buf + whole.head_len, len - whole.head_len, seed);

  /* The same bytes in pieces: cut points from the seed (a small LCG). */
  bool decided = false;
  srv_http_verdict first = SRV_HTTP_MORE;
  srv_http_req fr;
  memset(&fr, 0, sizeof fr);
  size_t at = 0;
  while (at < len) {
    seed = seed * 1103515245u + 12345u;
    size_t step = 1 + (seed >> 16) % 17;
    at = at + step < len ? at + step : len;
    srv_http_req r;
    srv_http_verdict v = srv_http_parse(buf, at, max_head, CAP, &r);
    check_verdict(buf, at, max_head, v, &r);
    if (!decided && v != SRV_HTTP_MORE) {
      decided = true;
      first = v;
      fr = r;
    } else if (decided) {
      FUZZ_CHECK(same_framing(first, &fr, v, &r));
    }
  }
  if (decided) FUZZ_CHECK(same_framing(first, &fr, vw, &whole));
  return 0;
}
