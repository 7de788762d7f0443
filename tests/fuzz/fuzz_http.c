/*
 * fuzz_http.c -- the gate (server/srv_http.c): arbitrary bytes, split at
 * arbitrary points.
 *
 * Input: byte 0 sets max_head (64 + 64 * b), byte 1 max_body (4 * b), byte 2
 * how the rest is split (a seed for the cut points), the rest is what a
 * client sent.  Properties:
 *   - the verdict is one of the four, and the gate reads nothing past the
 *     bytes it is given (ASan);
 *   - one framing for the same bytes: the bytes are delivered in pieces (cut
 *     points derived from byte 2); once a prefix gives a verdict other than
 *     MORE, every longer prefix and the whole input give the same verdict
 *     and the same framing (head length, body length, chunked, the refusal's
 *     status), so a request sent byte by byte is read exactly as the same
 *     request sent whole;
 *   - OURS: the request fits (total <= len, head <= max_head, body <=
 *     max_body), it is a GET, PUT or DELETE of /v1/store/{key} in HTTP/1.1,
 *     every field lies inside the head, the byte after each value, the
 *     method and the target is a separator inside the head (the loop writes
 *     a NUL there), no value holds CR, LF or NUL, exactly one Host, no
 *     Transfer-Encoding; every shorter prefix is MORE;
 *   - PASS: a whole head (it ends in CRLF CRLF within max_head), HTTP/1.0 or
 *     1.1, never both a Content-Length and chunked, chunked only in 1.1;
 *   - REFUSE: a status of the table (400, 413, 414, 417, 431, 501, 505) with
 *     a code and a message.
 */
#include "fuzz.h"

#include "srv_http.h"

#include <string.h>
#include <strings.h>

#define CAP 16384

static bool inside(const char *p, size_t n, const char *lo, const char *hi) {
  return p >= lo && p + n <= hi;
}

static void check_ours(const char *buf, size_t len, size_t max_head, size_t max_body,
                       const srv_http_req *r) {
  const char *head_end = buf + r->head_len;
  FUZZ_CHECK(r->total == r->head_len + r->body_len && r->total <= len && r->total <= CAP);
  FUZZ_CHECK(r->head_len <= max_head && r->body_len <= max_body);
  FUZZ_CHECK(r->head_len >= 4 && memcmp(head_end - 4, "\r\n\r\n", 4) == 0);
  FUZZ_CHECK(r->body == head_end && r->version == 11 && !r->chunked);
  FUZZ_CHECK(r->method == buf + r->skip);
  FUZZ_CHECK((r->method_len == 3 && (!memcmp(r->method, "GET", 3) || !memcmp(r->method, "PUT", 3))) ||
             (r->method_len == 6 && !memcmp(r->method, "DELETE", 6)));
  FUZZ_CHECK(r->body_len == 0 || r->method[0] == 'P');
  FUZZ_CHECK(inside(r->target, r->target_len + 1, buf, head_end) && r->target[r->target_len] == ' ');
  FUZZ_CHECK(inside(r->path, r->path_len, r->target, r->target + r->target_len));
  FUZZ_CHECK(r->path + r->path_len == r->target + r->target_len);
  FUZZ_CHECK(r->path_len > 10 && !memcmp(r->path, "/v1/store/", 10));
  FUZZ_CHECK(r->method[r->method_len] == ' ');
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
    FUZZ_CHECK(!(f->name_len == 17 && strncasecmp(f->name, "Transfer-Encoding", 17) == 0));
  }
  FUZZ_CHECK(hosts == 1);
  srv_http_req again;
  for (size_t cut = 0; cut < r->total; cut += 1 + cut / 8)
    FUZZ_CHECK(srv_http_parse(buf, cut, max_head, max_body, CAP, &again) == SRV_HTTP_MORE);
}

static void check_verdict(const char *buf, size_t len, size_t max_head, size_t max_body,
                          srv_http_verdict v, const srv_http_req *r) {
  FUZZ_CHECK(v == SRV_HTTP_MORE || v == SRV_HTTP_OURS || v == SRV_HTTP_PASS ||
             v == SRV_HTTP_REFUSE);
  if (v == SRV_HTTP_OURS) check_ours(buf, len, max_head, max_body, r);
  if (v == SRV_HTTP_PASS) {
    FUZZ_CHECK(r->head_len >= 4 && r->head_len <= len && r->head_len <= max_head);
    FUZZ_CHECK(memcmp(buf + r->head_len - 4, "\r\n\r\n", 4) == 0);
    FUZZ_CHECK(r->version == 10 || r->version == 11);
    FUZZ_CHECK(!(r->chunked && r->has_length) && !(r->chunked && r->version == 10));
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
  size_t max_body = 4 * (size_t)data[1];
  unsigned seed = data[2];
  const char *buf = (const char *)data + 3;
  size_t len = size - 3;

  srv_http_req whole;
  srv_http_verdict vw = srv_http_parse(buf, len, max_head, max_body, CAP, &whole);
  check_verdict(buf, len, max_head, max_body, vw, &whole);

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
    srv_http_verdict v = srv_http_parse(buf, at, max_head, max_body, CAP, &r);
    check_verdict(buf, at, max_head, max_body, v, &r);
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
