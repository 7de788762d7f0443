/*
 * api_feed.c -- the change feed over HTTP (see api_feed.h for the contract).
 *
 * A feed is a cursor: `pos` is the LSN after which the next change is read,
 * `seen` the node's last LSN at the latest read.  sa_client_changes never
 * splits a batch, so a page always ends on an LSN boundary and `pos` only
 * ever holds a whole LSN; that is what makes the LSN a safe SSE event id.
 *
 * Errors: 400s come from api_reply_error (the API's one error shape); a
 * position below the floor (SA_EGONE) is the 410 built here, because its
 * body carries "oldest_since" on top of the usual code and message; any
 * other core error goes through api_reply_sa_error, the one mapping.
 *
 * Threads: see api_feed.h (a feed belongs to one thread at a time).
 *
 * Values: with include_values=1 a put carries "value" and "encoding" exactly
 * as GET /v1/store does: UTF-8 text as is, anything else base64.
 */
#define _GNU_SOURCE /* strcasestr */
#include "api_feed.h"
#include "api_feed_pos.h"

#include <assert.h>
#include <stdarg.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api_internal.h"
#include "api_json.h"
#include "api_util.h"

struct api_feed {
  sa_client *client;                /* borrowed */
  api_feed_mode mode;               /* what the request asked for */
  uint64_t pos;                     /* changes after this LSN come next */
  uint64_t seen;                    /* the node's last LSN at the latest read */
  size_t limit;                     /* changes per page (PAGE/WAIT) */
  bool values;                      /* include_values=1 */
  uint32_t wait_ms;                 /* WAIT: the bound */
  char *prefix;                     /* only keys starting with it; NULL = all */
  size_t prefix_len;                /* strlen(prefix) */
  api_feed_page_fn page_fn;         /* api_feed_custom: another route's pages */
  void *page_cls;                   /* its state (owned) */
  void (*page_cls_free)(void *cls); /* frees page_cls */
};

/* ---- small helpers ------------------------------------------------------- */

/* The JSON of one change (new reference), or NULL out of memory. */
static json_t *api_feed_change_json(const sa_change *ch, bool values) {
  json_t *o =
      json_pack("{s:o,s:s,s:s,s:o,s:o,s:o,s:s,s:b}", "lsn", api_json_u64(ch->lsn), "key", ch->key,
                "op", ch->op == SA_OP_DELETE ? "delete" : "put", "version",
                api_json_u64(ch->version), "time", api_json_time(api_hlc_ms(ch->hlc)), "hlc",
                api_json_u64(ch->hlc), "origin", ch->origin, "batch", (int)ch->batch);
  if (!o) return NULL;
  if (ch->op == SA_OP_DELETE) return o;
  if (json_object_set_new(o, "size", api_json_u64(ch->len)) != 0 ||
      json_object_set_new(o, "content_type",
                          ch->content_type ? json_string(ch->content_type) : json_null()) != 0)
    goto oom;
  if (values && ch->data) {
    const char *enc;
    json_t *v = api_json_value(ch->data, ch->len, &enc);
    if (!v || json_object_set_new(o, "value", v) != 0 ||
        json_object_set_new(o, "encoding", json_string(enc)) != 0)
      goto oom;
  }
  return o;
oom:
  json_decref(o);
  return NULL;
}

static bool api_feed_match(const api_feed *f, const sa_change *ch) {
  return !f->prefix || strncmp(ch->key, f->prefix, f->prefix_len) == 0;
}

/* The 410 of a position below the floor. */
static api_response *api_feed_gone(api_feed *f, const sa_error *err) {
  uint64_t floor = sa_client_changes_floor(f->client);
  const char *msg = err && err->message[0] ? err->message : sa_strerror(SA_EGONE);
  return api_resp_json(api_resp_new(410),
                       json_pack("{s:{s:s,s:s,s:o},s:o}", "error", "code", "gone", "message", msg,
                                 "oldest_since", api_json_u64(floor), "oldest_since",
                                 api_json_u64(floor)));
}

/* ---- open ---------------------------------------------------------------- */

api_response *api_feed_open(sa_client *c, const char *query, api_header_fn hdr, void *hdr_cls,
                            api_feed **out) {
  *out = NULL;
  api_feed *f = calloc(1, sizeof *f);
  if (!f) return &api_oom_response;
  f->client = c;
  f->limit = API_FEED_DEFAULT_LIMIT;
  char *since = NULL, *limit = NULL, *wait = NULL;
  api_response *e = NULL;
  if ((e = api_query(query, "since", &since)) || (e = api_query(query, "limit", &limit)) ||
      (e = api_query_bool(query, "include_values", &f->values)) ||
      (e = api_query(query, "wait", &wait)) || (e = api_query(query, "prefix", &f->prefix)))
    goto out;
  const char *accept = hdr ? hdr(hdr_cls, "Accept") : NULL;
  const char *last_id = hdr ? hdr(hdr_cls, "Last-Event-ID") : NULL;
  if (accept && strcasestr(accept, "text/event-stream")) f->mode = API_FEED_STREAM;
  if (f->prefix) {
    f->prefix_len = strlen(f->prefix);
    if (f->prefix_len == 0) {
      free(f->prefix);
      f->prefix = NULL;
    }
  }
  if (limit) {
    uint64_t l;
    if (api_parse_u64(limit, &l) != 0 || l < 1 || l > API_FEED_MAX_LIMIT) {
      e = api_reply_error(400, "bad_request", "limit must be an integer from 1 to %d",
                          API_FEED_MAX_LIMIT);
      goto out;
    }
    f->limit = (size_t)l;
  }
  if (wait && wait[0]) {
    uint64_t w;
    if (api_parse_u64(wait, &w) != 0 || w > API_FEED_MAX_WAIT_S) {
      e = api_reply_error(400, "bad_request", "wait must be a number of seconds from 0 to %d",
                          API_FEED_MAX_WAIT_S);
      goto out;
    }
    if (w > 0 && f->mode != API_FEED_STREAM) {
      f->mode = API_FEED_WAIT;
      f->wait_ms = (uint32_t)w * 1000u;
    }
  }
  /* The start: Last-Event-ID, else since, else oldest (page) or now (stream). */
  const char *start = (last_id && last_id[0]) ? last_id : since;
  const char *start_name = (last_id && last_id[0]) ? "Last-Event-ID" : "since";
  sa_status st;
  if (start && strcmp(start, "now") == 0) {
    if (sa_client_status(c, &st, NULL) == 0) f->pos = st.last_lsn;
  } else if (start && start[0]) {
    uint64_t epoch = 0; /* "E:N" names the epoch N is from (api_feed_pos.c) */
    bool has_epoch = false;
    if (api_feed_pos_parse(start, &f->pos, &epoch, &has_epoch) != 0) {
      e = api_reply_error(400, "bad_request",
                          "%s must be an LSN (a decimal integer), EPOCH:LSN or \"now\"",
                          start_name);
      goto out;
    }
    if ((e = api_feed_pos_check(c, query, f->pos, has_epoch, epoch)) != NULL) goto out;
  } else if (f->mode == API_FEED_STREAM) {
    if (sa_client_status(c, &st, NULL) == 0) f->pos = st.last_lsn;
  } else {
    f->pos = sa_client_changes_floor(c);
  }
out:
  free(since);
  free(limit);
  free(wait);
  if (e) {
    api_feed_free(f);
    return e;
  }
  *out = f;
  return NULL;
}

void api_feed_free(api_feed *f) {
  if (!f) return;
  if (f->page_cls_free) f->page_cls_free(f->page_cls);
  free(f->prefix);
  free(f);
}

api_feed *api_feed_custom(sa_client *c, uint32_t wait_ms, uint64_t seen, api_feed_page_fn page,
                          void *cls, void (*cls_free)(void *cls)) {
  api_feed *f = calloc(1, sizeof *f);
  if (!f) return NULL;
  f->client = c;
  f->mode = API_FEED_WAIT;
  f->wait_ms = wait_ms;
  f->seen = seen;
  f->page_fn = page;
  f->page_cls = cls;
  f->page_cls_free = cls_free;
  return f;
}

api_feed_mode api_feed_get_mode(const api_feed *f) {
  return f->mode;
}

uint64_t api_feed_position(const api_feed *f) {
  return f->pos;
}

uint64_t api_feed_seen(const api_feed *f) {
  return f->seen;
}

uint32_t api_feed_wait_ms(const api_feed *f) {
  return f->mode == API_FEED_WAIT ? f->wait_ms : 0;
}

/* ---- pages --------------------------------------------------------------- */

api_response *api_feed_page(api_feed *f, bool final) {
  if (f->page_fn) return f->page_fn(f->page_cls, final, &f->seen);
  for (;;) { /* bounded: every turn moves pos on, or answers */
    sa_changes ch;
    sa_error err = {0};
    int rc = sa_client_changes(f->client, f->pos, f->limit, f->values, &ch, &err);
    if (rc == SA_EGONE) return api_feed_gone(f, &err);
    if (rc != 0) return api_reply_sa_error(rc, &err);
    f->seen = ch.last_lsn;
    size_t matched = 0;
    for (size_t i = 0; i < ch.count; i++)
      matched += api_feed_match(f, &ch.items[i]);
    /* Nothing for this client yet: a waiter keeps waiting (past changes a
     * prefix filter skipped, reading on while more pages exist). */
    if (!final && matched == 0) {
      bool more = ch.more && ch.next_since > f->pos;
      f->pos = ch.next_since;
      sa_changes_free(&ch);
      if (more) continue;
      return NULL;
    }
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < ch.count; i++) {
      if (!api_feed_match(f, &ch.items[i])) continue;
      json_t *o = api_feed_change_json(&ch.items[i], f->values);
      if (!o || json_array_append_new(arr, o) != 0) {
        json_decref(arr);
        arr = NULL;
      }
    }
    char ehex[17];
    api_feed_epoch_hex(f->client, ehex);
    json_t *j =
        arr ? json_pack("{s:o,s:I,s:o,s:o,s:b,s:s}", "changes", arr, "count", (json_int_t)matched,
                        "next_since", api_json_u64(ch.next_since), "last_lsn",
                        api_json_u64(ch.last_lsn), "more", (int)ch.more, "epoch", ehex)
            : NULL;
    f->pos = ch.next_since;
    sa_changes_free(&ch);
    return api_resp_json(api_resp_new(200), j);
  }
}

api_response *api_feed_respond(api_feed *f) {
  api_response *r = NULL;
  if (f->mode == API_FEED_PAGE) {
    r = api_feed_page(f, true);
  } else if (f->mode == API_FEED_WAIT) {
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) { /* bounded: every turn waits or ends, and the clock moves on */
      clock_gettime(CLOCK_MONOTONIC, &now);
      int64_t used = (now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000;
      bool last = used >= (int64_t)f->wait_ms;
      r = api_feed_page(f, last);
      if (r) break;
      uint64_t lsn;
      if (sa_client_wait(f->client, f->seen, f->wait_ms - (uint32_t)used, &lsn, NULL) != 0) {
        r = api_feed_page(f, true);
        break;
      }
    }
  } else {
    r = api_feed_stream_head(f);
    if (r->status == 200) {
      size_t n1 = 0, n2 = 0;
      char *hello = api_feed_stream_hello(f, &n1), *ev = NULL;
      int rc = api_feed_stream_next(f, &ev, &n2);
      char *body = malloc(n1 + n2 + 1);
      if (hello && rc >= 0 && body) {
        memcpy(body, hello, n1);
        if (ev) memcpy(body + n1, ev, n2);
        body[n1 + n2] = '\0';
        r->body = body;
        r->body_len = n1 + n2;
        body = NULL;
      } else {
        api_response_free(r);
        r = api_reply_error(500, "internal_error", "cannot read the change feed");
      }
      free(body);
      free(hello);
      free(ev);
    }
  }
  api_feed_free(f);
  return r;
}

api_response *api_feed_handle(sa_client *c, const char *query, api_header_fn hdr, void *hdr_cls,
                              bool can_defer, api_feed **deferred) {
  *deferred = NULL;
  api_feed *f;
  api_response *r = api_feed_open(c, query, hdr, hdr_cls, &f);
  if (r) return r;
  if (!can_defer || f->mode == API_FEED_PAGE) return api_feed_respond(f);
  if (f->mode == API_FEED_WAIT) {
    r = api_feed_page(f, false);
    if (r) {
      api_feed_free(f);
      return r;
    }
    r = api_resp_new(200);
    if (!r) {
      api_feed_free(f);
      return &api_oom_response;
    }
    *deferred = f;
    return r;
  }
  r = api_feed_stream_head(f);
  if (r->status != 200) {
    api_feed_free(f);
    return r;
  }
  *deferred = f;
  return r;
}

/* ---- Server-Sent Events ------------------------------------------------- */

api_response *api_feed_stream_head(api_feed *f) {
  uint64_t floor = sa_client_changes_floor(f->client);
  if (f->pos < floor) {
    sa_error err = {0};
    snprintf(err.message, sizeof err.message,
             "changes after LSN %llu are no longer all kept: the oldest since served is %llu; "
             "reload the keys and follow from the current LSN",
             (unsigned long long)f->pos, (unsigned long long)floor);
    return api_feed_gone(f, &err);
  }
  api_response *r = api_resp_new(200);
  if (!r) return &api_oom_response;
  r->content_type = "text/event-stream; charset=utf-8";
  api_resp_header(r, "Cache-Control", "no-cache");
  api_resp_header(r, "X-Accel-Buffering", "no");
  api_resp_header(r, "X-Content-Type-Options", "nosniff");
  return r;
}

char *api_feed_stream_hello(api_feed *f, size_t *len) {
  sa_status st;
  uint64_t last = f->pos;
  if (sa_client_status(f->client, &st, NULL) == 0 && st.last_lsn > last) last = st.last_lsn;
  char *s = NULL, ehex[17];
  api_feed_epoch_hex(f->client, ehex); /* a watcher resumes with Last-Event-ID EPOCH:LSN */
  int n = asprintf(&s,
                   "retry: %d\n: softadastra change feed\n\nevent: ready\n"
                   "data: {\"since\":%llu,\"last_lsn\":%llu,\"epoch\":\"%s\"}\n\n",
                   API_FEED_RETRY_MS, (unsigned long long)f->pos, (unsigned long long)last, ehex);
  if (n < 0) return NULL;
  *len = (size_t)n;
  return s;
}

/* A growing text buffer. */
typedef struct api_feed_buf {
  char *p;
  size_t len, cap;
  bool oom;
} api_feed_buf;

static void api_feed_put(api_feed_buf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + n + 1)
      cap *= 2;
    char *np = realloc(b->p, cap);
    if (!np) {
      b->oom = true;
      return;
    }
    b->p = np;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void api_feed_putf(api_feed_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void api_feed_putf(api_feed_buf *b, const char *fmt, ...) {
  char tmp[128];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof tmp) {
    b->oom = true;
    return;
  }
  api_feed_put(b, tmp, (size_t)n);
}

int api_feed_stream_next(api_feed *f, char **buf, size_t *len) {
  *buf = NULL;
  *len = 0;
  sa_changes ch;
  sa_error err = {0};
  api_feed_buf b = {0};
  int rc = sa_client_changes(f->client, f->pos, API_FEED_STREAM_PAGE, f->values, &ch, &err);
  if (rc == SA_EGONE) {
    api_feed_putf(&b, "event: gone\ndata: {\"oldest_since\":%llu}\n\n",
                  (unsigned long long)sa_client_changes_floor(f->client));
    if (b.oom) {
      free(b.p);
      return SA_ENOMEM;
    }
    *buf = b.p;
    *len = b.len;
    return 1;
  }
  if (rc != 0) return rc;
  f->seen = ch.last_lsn;
  uint64_t id = f->pos; /* the last id written */
  for (size_t i = 0; i < ch.count; i++) {
    const sa_change *c = &ch.items[i];
    bool group_end = i + 1 == ch.count || ch.items[i + 1].lsn != c->lsn;
    if (api_feed_match(f, c)) {
      json_t *o = api_feed_change_json(c, f->values);
      char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
      json_decref(o);
      if (!s) {
        b.oom = true;
        break;
      }
      api_feed_put(&b, "event: change\ndata: ", 20);
      api_feed_put(&b, s, strlen(s)); /* compact JSON has no newline */
      free(s);
      api_feed_put(&b, "\n", 1);
      if (group_end) {
        api_feed_putf(&b, "id: %llu\n", (unsigned long long)c->lsn);
        id = c->lsn;
      }
      api_feed_put(&b, "\n", 1);
    }
  }
  if (!b.oom && ch.count && ch.next_since > id) /* skipped by the filter: move the id on */
    api_feed_putf(&b, "id: %llu\n\n", (unsigned long long)ch.next_since);
  assert(ch.next_since >= f->pos);
  f->pos = ch.next_since;
  sa_changes_free(&ch);
  if (b.oom) {
    free(b.p);
    return SA_ENOMEM;
  }
  *buf = b.p;
  *len = b.len;
  return 0;
}

const char *api_feed_sse_heartbeat(void) {
  return ": heartbeat\n\n";
}

const char *api_feed_sse_bye(void) {
  return "event: bye\ndata: {\"reason\":\"shutting_down\"}\n\n";
}

/* GET /v1/changes: the change feed (api_feed.c).  A long-poll or a stream
 * from a server that can defer comes back with resp->feed set. */
api_response *api_h_changes(api_ctx *ctx, const api_request *req, const char *query) {
  api_feed *deferred = NULL;
  api_response *r =
      api_feed_handle(ctx->client, query, req->header, req->header_cls, req->can_defer, &deferred);
  if (deferred) r->feed = deferred; /* r is then a response of its own, never the static one */
  return r;
}
