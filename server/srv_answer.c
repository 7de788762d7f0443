/*
 * srv_answer.c -- the one writer of the node's HTTP answers (srv_answer.h).
 *
 * The head of a loop answer is built without printf: it is on every
 * request's path (the store's GET/PUT/DELETE).  The reason phrase comes from
 * libmicrohttpd, so both paths say the same phrase for a status.
 */
#include "srv_answer.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "api_util.h"
#include "srv_log.h"

/* The fixed parts of a head (status line, Date, Content-Length, Connection,
 * the blank line) take at most 112 bytes besides the reason phrase. */
#define ANSWER_FIXED 128

bool srv_answer_bodiless(int status) {
  return status == 204 || status == 304 || (status >= 100 && status < 200);
}

size_t srv_answer_head_size(const api_response *r) {
  size_t need = ANSWER_FIXED + strlen(MHD_get_reason_phrase_for((unsigned)r->status));
  if (r->content_type) need += strlen(r->content_type) + 16;
  for (size_t i = 0; i < r->n_headers; i++)
    need += strlen(r->headers[i].name) + strlen(r->headers[i].value) + 4;
  return need;
}

static char *answer_put(char *p, const char *s, size_t n) {
  memcpy(p, s, n);
  return p + n;
}
#define ANSWER_LIT(p, s) answer_put((p), (s), sizeof(s) - 1)

size_t srv_answer_head(char *buf, const api_response *r, bool close, const char *date,
                       size_t date_len) {
  bool nobody = srv_answer_bodiless(r->status);
  const char *reason = MHD_get_reason_phrase_for((unsigned)r->status);
  char *p = ANSWER_LIT(buf, "HTTP/1.1 ");
  p = api_u64_put(p, (uint64_t)r->status);
  *p++ = ' ';
  p = answer_put(p, reason, strlen(reason));
  p = ANSWER_LIT(p, "\r\nDate: ");
  p = answer_put(p, date, date_len);
  if (!nobody) {
    p = ANSWER_LIT(p, "\r\nContent-Length: ");
    p = api_u64_put(p, r->body_len);
    if (r->content_type) {
      p = ANSWER_LIT(p, "\r\nContent-Type: ");
      p = answer_put(p, r->content_type, strlen(r->content_type));
    }
  }
  for (size_t i = 0; i < r->n_headers; i++) {
    p = ANSWER_LIT(p, "\r\n");
    p = answer_put(p, r->headers[i].name, strlen(r->headers[i].name));
    p = ANSWER_LIT(p, ": ");
    p = answer_put(p, r->headers[i].value, strlen(r->headers[i].value));
  }
  if (close) p = ANSWER_LIT(p, "\r\nConnection: close");
  p = ANSWER_LIT(p, "\r\n\r\n");
  return (size_t)(p - buf);
}

size_t srv_answer_date(char *buf, time_t t) {
  struct tm tm;
  gmtime_r(&t, &tm);
  return strftime(buf, 30, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

void srv_answer_mhd_headers(struct MHD_Response *m, const api_response *r) {
  if (r->content_type) MHD_add_response_header(m, "Content-Type", r->content_type);
  for (size_t i = 0; i < r->n_headers; i++)
    MHD_add_response_header(m, r->headers[i].name, r->headers[i].value);
  /* Always: the gate gave libmicrohttpd this one request; whatever the
   * client sent after it was never checked and must never be parsed. */
  MHD_add_response_header(m, "Connection", "close");
}

static void answer_free(void *cls) {
  api_response_free(cls);
}

enum MHD_Result srv_answer_mhd(struct MHD_Connection *con, api_response *r) {
  struct MHD_Response *m =
      MHD_create_response_from_buffer_with_free_callback_cls(r->body_len, r->body, answer_free, r);
  if (!m) {
    api_response_free(r);
    return MHD_NO;
  }
  srv_answer_mhd_headers(m, r);
  enum MHD_Result rc = MHD_queue_response(con, (unsigned)r->status, m);
  MHD_destroy_response(m); /* r goes with the last reference */
  return rc;
}

void srv_answer_log(const char *method, const char *target, int status, const struct timespec *t0,
                    size_t bytes_in) {
  struct timespec t1;
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double ms = (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
  char qm[64], qt[300];
  srv_log(SRV_LOG_DEBUG, "request", "method=%s target=%s status=%d ms=%.3f bytes_in=%zu",
          srv_log_q(method ? method : "-", qm, sizeof qm),
          srv_log_q(target ? target : "-", qt, sizeof qt), status, ms, bytes_in);
}
