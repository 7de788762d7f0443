/*
 * fuzz_http.c -- the front loop's request parser (server/srv_http.c).
 *
 * Input: byte 0 sets max_head (64 + 64 * b), byte 1 max_body (4 * b), the
 * rest is what a client sent.  Properties:
 *   - the verdict is MORE, OURS or PASS, and the parser reads nothing past
 *     the bytes it is given (ASan);
 *   - on OURS: the request fits (total <= len, head <= max_head, body <=
 *     max_body), it is a GET, PUT or DELETE of /v1/store/{key}, every field
 *     lies inside the head, the byte after each value, method and target is
 *     a separator inside the head (the loop writes a NUL there), and exactly
 *     one Host field is present;
 *   - OURS is stable: the request's own bytes alone give the same request,
 *     and a shorter prefix of them gives MORE (the loop never hands off a
 *     request it would serve whole, nor serves one it has not received).
 */
#include "fuzz.h"

#include "srv_http.h"

#include <string.h>
#include <strings.h>

#define CAP 16384

static bool inside(const char *p, size_t n, const char *lo, const char *hi) {
  return p >= lo && p + n <= hi;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  size_t max_head = 64 + 64 * (size_t)data[0];
  size_t max_body = 4 * (size_t)data[1];
  const char *buf = (const char *)data + 2;
  size_t len = size - 2;
  srv_http_req r;
  srv_http_verdict v = srv_http_parse(buf, len, max_head, max_body, CAP, &r);
  FUZZ_CHECK(v == SRV_HTTP_MORE || v == SRV_HTTP_OURS || v == SRV_HTTP_PASS);
  if (v != SRV_HTTP_OURS) return 0;

  const char *head_end = buf + r.head_len;
  FUZZ_CHECK(r.total == r.head_len + r.body_len && r.total <= len && r.total <= CAP);
  FUZZ_CHECK(r.head_len <= max_head && r.body_len <= max_body);
  FUZZ_CHECK(r.head_len >= 4 && memcmp(head_end - 4, "\r\n\r\n", 4) == 0);
  FUZZ_CHECK(r.body == head_end);
  FUZZ_CHECK(r.method == buf);
  FUZZ_CHECK((r.method_len == 3 && (!memcmp(buf, "GET", 3) || !memcmp(buf, "PUT", 3))) ||
             (r.method_len == 6 && !memcmp(buf, "DELETE", 6)));
  FUZZ_CHECK(r.body_len == 0 || buf[0] == 'P');
  FUZZ_CHECK(inside(r.target, r.target_len + 1, buf, head_end) && r.target_len > 10 &&
             !memcmp(r.target, "/v1/store/", 10) && r.target[r.target_len] == ' ');
  FUZZ_CHECK(buf[r.method_len] == ' ');
  int hosts = 0;
  FUZZ_CHECK(r.n_fields <= SRV_HTTP_MAX_FIELDS);
  for (size_t i = 0; i < r.n_fields; i++) {
    const srv_http_field *f = &r.fields[i];
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
  FUZZ_CHECK(srv_http_parse(buf, r.total, max_head, max_body, CAP, &again) == SRV_HTTP_OURS);
  FUZZ_CHECK(again.total == r.total && again.n_fields == r.n_fields && again.close == r.close);
  size_t cuts[] = {0, r.total / 2, r.head_len - 1, r.total - 1};
  for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++)
    FUZZ_CHECK(srv_http_parse(buf, cuts[i], max_head, max_body, CAP, &again) == SRV_HTTP_MORE);
  return 0;
}
