/*
 * api_answer.c -- how the REST API builds its answers: the response struct,
 * its headers, JSON bodies, error bodies, and the one mapping of core error
 * codes to HTTP statuses (api_reply_sa_error).
 *
 * What it is: constructors that every handler and the feed use, so that an
 * answer has one shape: a JSON body is compact and ends with a newline, and
 * every error body is {"error":{"code":"snake_case","message":"..."}}.
 * What it is not: routing, auth or handlers; it never calls the core (except
 * sa_strerror) and never sees a request.
 *
 * Invariants: a response always has a status; its body and its header values
 * are owned by it (or borrowed from a literal or its own hbuf); no builder
 * returns NULL: out of memory gives the static api_oom_response, which
 * api_response_free ignores and api_resp_header leaves alone.
 *
 * Threads: any request thread; no shared state but the static 500 answer,
 * which is never written.
 */
#define _GNU_SOURCE /* vasprintf */
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_feed.h"
#include "api_internal.h"
#include "api_util.h"

static char api_oom_body[] =
    "{\"error\":{\"code\":\"internal_error\",\"message\":\"out of memory\"}}\n";
api_response api_oom_response = {
    .status = 500,
    .content_type = "application/json",
    .body = api_oom_body,
    .body_len = sizeof api_oom_body - 1,
};

api_response *api_resp_new(int status) {
  api_response *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->status = status;
  return r;
}

void api_response_free(api_response *resp) {
  if (!resp || resp == &api_oom_response) return;
  free(resp->body);
  api_feed_free(resp->feed);
  api_write_free(resp->write);
  api_stream_free(resp->stream);
  for (size_t i = 0; i < resp->n_headers; i++)
    if (!resp->headers[i].borrowed) free(resp->headers[i].value);
  free(resp);
}

void api_resp_header(api_response *r, const char *name, const char *fmt, ...) {
  if (r == &api_oom_response || r->n_headers >= API_MAX_HEADERS) return;
  api_header *h = &r->headers[r->n_headers];
  if (!strchr(fmt, '%')) {
    h->value = (char *)fmt; /* a string literal */
    h->borrowed = true;
  } else {
    va_list ap;
    va_start(ap, fmt);
    size_t room = sizeof r->hbuf - r->hbuf_used;
    int n;
    if (fmt[0] == '%' && fmt[1] == 's' && !fmt[2]) { /* "%s": a copy, no printf */
      const char *a = va_arg(ap, const char *);
      size_t al = strlen(a);
      n = al > INT_MAX ? -1 : (int)al;
      if (n >= 0 && al < room) memcpy(r->hbuf + r->hbuf_used, a, al + 1);
    } else {
      n = vsnprintf(r->hbuf + r->hbuf_used, room, fmt, ap);
    }
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < room) {
      h->value = r->hbuf + r->hbuf_used;
      h->borrowed = true;
      r->hbuf_used += (size_t)n + 1;
    } else {
      va_start(ap, fmt);
      char *v = NULL;
      n = vasprintf(&v, fmt, ap);
      va_end(ap);
      if (n < 0) return;
      h->value = v;
      h->borrowed = false;
    }
  }
  h->name = name;
  r->n_headers++;
}

void api_resp_etag(api_response *r, uint64_t version) {
  char tag[24];
  char *p = tag;
  *p++ = '"';
  p = api_u64_put(p, version);
  *p++ = '"';
  *p = '\0';
  api_resp_header(r, "ETag", "%s", tag);
}

api_response *api_resp_json(api_response *r, json_t *j) {
  if (!r || !j) {
    api_response_free(r);
    json_decref(j);
    return &api_oom_response;
  }
  char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
  json_decref(j);
  if (!s) {
    api_response_free(r);
    return &api_oom_response;
  }
  size_t n = strlen(s);
  char *body = realloc(s, n + 2);
  if (!body) {
    free(s);
    api_response_free(r);
    return &api_oom_response;
  }
  body[n] = '\n';
  body[n + 1] = '\0';
  r->body = body;
  r->body_len = n + 1;
  r->content_type = "application/json";
  return r;
}

api_response *api_reply_error(int status, const char *code, const char *fmt, ...) {
  char msg[SA_ERROR_MESSAGE_MAX + 256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  /* Messages may quote user input: make sure jansson accepts them. */
  if (!api_utf8_valid(msg, strlen(msg))) snprintf(msg, sizeof msg, "%s", code);
  json_t *j = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg);
  return api_resp_json(api_resp_new(status), j);
}

api_response *api_reply_sa_error(int rc, const sa_error *err) {
  const char *msg = (err && err->message[0]) ? err->message : sa_strerror(rc);
  switch (rc) {
  case SA_EKEY:
    return api_reply_error(400, "invalid_key", "%s", msg);
  case SA_EINVAL:
    return api_reply_error(400, "invalid_argument", "%s", msg);
  case SA_ENOTFOUND:
    return api_reply_error(404, "not_found", "%s", msg);
  case SA_ECONFLICT:
    return api_reply_error(412, "precondition_failed", "%s", msg);
  case SA_ETOOBIG:
    return api_reply_error(413, "payload_too_large", "%s", msg);
  case SA_ENOSPC:
    return api_reply_error(507, "insufficient_storage", "%s", msg);
  case SA_EREADONLY:
    return api_reply_error(503, "read_only", "%s", msg);
  case SA_ECLOSED:
    return api_reply_error(503, "shutting_down", "%s", msg);
  case SA_EIO:
    return api_reply_error(500, "io_error", "%s", msg);
  default:
    return api_reply_error(500, "internal_error", "%s", msg);
  }
}

api_response *api_error_response(api_ctx *ctx, int status, const char *code, const char *message) {
  api_response *r = api_reply_error(status, code, "%s", message);
  if (ctx) api_metrics_observe(ctx->metrics, API_ROUTE_OTHER, status, 0);
  return r;
}
