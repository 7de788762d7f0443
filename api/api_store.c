/*
 * api_store.c -- the store's routes: GET/HEAD/PUT/DELETE /v1/store/{key}
 * and GET /v1/store (a page of keys), and the deferred writes of api.h.
 *
 * What it is: query and precondition parsing (raw=1, If-None-Match on a
 * read; If-Match, If-None-Match: * and the Content-Type kept with the value
 * on a write), the answers to a read and to a settled write, and the
 * api_write handle that lets one server thread queue many writes into the
 * same group commit.
 *
 * Content types: a PUT's Content-Type is stored with the value
 * (sa_client_put_opts) once it passes sa_content_type_check (else 400
 * bad_content_type, nothing written); none, an empty one, and exactly
 * "application/x-www-form-urlencoded" (what curl sends by default with
 * --data and --data-binary: an HTML form never sends a PUT) store none.  A
 * raw GET answers with the stored type (application/octet-stream when none),
 * nosniff, and "Content-Security-Policy: sandbox": a stored HTML or SVG
 * value opened from the node's origin runs no script and reaches nothing of
 * that origin (the dashboard, its token).  What it is not: key
 * decoding or routing (api_routes.c decodes and checks the key first), nor
 * batches (api_batch.c).
 *
 * Invariants: a read's answer is built inside the core's read snapshot, so
 * its ETag and body come from one version; a write's answer (blocking or
 * deferred) is built by the one function api_write_reply, so both paths
 * answer byte for byte alike; an api_write is settled exactly once by the
 * node and armed exactly once by the server, and notify runs on whichever
 * of the two comes second (state is an atomic bit pair).
 *
 * Threads: the handlers on any request thread; api_write_settled on the
 * node's thread that settles writes (its writer, or its committer near a
 * full map, as api.h says; docs/threads.md); api_write_arm and api_write_finish on the
 * server thread that owns the request.
 */
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api_internal.h"
#include "api_json.h"
#include "api_util.h"

/* ---- query helpers -------------------------------------------------------- */

/* Decodes a query parameter into *out (caller frees).  Returns NULL on
 * success (found or not: *out NULL when absent), or an error response. */
api_response *api_query(const char *query, const char *name, char **out) {
  size_t len;
  int rc = api_query_get(query, name, out, &len);
  if (rc == -2) return &api_oom_response;
  if (rc == -1)
    return api_reply_error(400, "bad_encoding",
                           "query parameter \"%s\" is not correctly "
                           "percent-encoded",
                           name);
  if (rc == 1 && strlen(*out) != len) {
    free(*out);
    *out = NULL;
    return api_reply_error(400, "bad_request", "query parameter \"%s\" contains a NUL byte", name);
  }
  return NULL;
}

/* Parses a boolean query flag: absent/""/"0"/"false" false, "1"/"true" true. */
api_response *api_query_bool(const char *query, const char *name, bool *out) {
  char *v = NULL;
  api_response *e = api_query(query, name, &v);
  if (e) return e;
  *out = false;
  if (v) {
    if (strcmp(v, "1") == 0 || strcmp(v, "true") == 0 || strcmp(v, "yes") == 0)
      *out = true;
    else if (v[0] && strcmp(v, "0") != 0 && strcmp(v, "false") != 0 && strcmp(v, "no") != 0)
      e = api_reply_error(400, "bad_request", "query parameter \"%s\" must be 1 or 0", name);
    free(v);
  }
  return e;
}

/* ---- reads ----------------------------------------------------------------- */

/* GET /v1/store/{key}: the answer is built inside the core's read snapshot
 * (sa_client_get_with), so the value is copied once, from the store's map
 * into the response body, which the server hands on without a copy. */
typedef struct api_get {
  const char *key;  /* decoded key */
  const char *inm;  /* If-None-Match, or NULL */
  bool raw;         /* ?raw=1 */
  api_response *r;  /* the answer (NULL: out of memory) */
  uint64_t version; /* for the ETag */
} api_get;

static void api_get_answer(void *arg, const sa_value *v) {
  api_get *g = arg;
  g->version = v->version;
  api_response *r;
  if (g->inm && api_etag_list_matches(g->inm, v->version)) {
    r = api_resp_new(304);
  } else if (g->raw) {
    r = api_resp_new(200);
    char *body = r ? malloc(v->len + 1) : NULL;
    if (body) {
      memcpy(body, v->data, v->len);
      body[v->len] = '\0';
      r->body = body;
      r->body_len = v->len;
      if (v->content_type[0]) {
        memcpy(r->ctbuf, v->content_type, sizeof r->ctbuf);
        r->content_type = r->ctbuf;
      } else {
        r->content_type = "application/octet-stream";
      }
      api_resp_header(r, "X-Content-Type-Options", "nosniff");
      api_resp_header(r, "Content-Security-Policy", "sandbox");
    } else {
      api_response_free(r);
      r = NULL;
    }
  } else {
    r = api_resp_new(200);
    if (r) {
      r->body = api_json_value_doc(g->key, strlen(g->key), v->data, v->len, v->version, v->lsn,
                                   v->hlc, v->origin, api_hlc_ms(v->hlc),
                                   v->content_type[0] ? v->content_type : NULL, &r->body_len);
      r->content_type = "application/json";
      if (!r->body) {
        api_response_free(r);
        r = NULL;
      }
    }
  }
  g->r = r;
}

api_response *api_h_get_key(api_ctx *ctx, const api_request *req, const char *query,
                            const char *key) {
  api_get g = {.key = key};
  api_response *e = api_query_bool(query, "raw", &g.raw);
  if (e) return e;
  g.inm = api_hdr(req, "If-None-Match");
  sa_error err = {0};
  int rc = sa_client_get_with(ctx->client, key, api_get_answer, &g, &err);
  if (rc != 0) return api_reply_sa_error(rc, &err);
  api_response *r = g.r ? g.r : &api_oom_response;
  api_resp_etag(r, g.version);
  api_resp_header(r, "Cache-Control", "no-cache");
  return r;
}

/* ---- writes of one key: blocking, or deferred (api.h) ------------------- */

/* Reads If-Match / If-None-Match of a write into *wo.  Returns NULL or an
 * error response.  put says whether If-None-Match: * is allowed. */
static api_response *api_write_cond(api_ctx *ctx, const api_request *req, const char *key, bool put,
                                    sa_write_opts *wo) {
  const char *im = api_hdr(req, "If-Match");
  const char *inm = api_hdr(req, "If-None-Match");
  wo->cond = SA_COND_NONE;
  wo->version = 0;
  if (im && inm)
    return api_reply_error(400, "bad_precondition", "use either If-Match or If-None-Match");
  if (inm) {
    const char *p = inm;
    while (*p == ' ')
      p++;
    if (!put || strcmp(p, "*") != 0)
      return api_reply_error(400, "bad_precondition",
                             "If-None-Match on a write must be \"*\" (create only)");
    wo->cond = SA_COND_ABSENT;
    return NULL;
  }
  if (!im) return NULL;
  const char *p = im;
  while (*p == ' ')
    p++;
  if (strcmp(p, "*") == 0) {
    /* "any current version": pin the version that exists now. */
    sa_value v;
    sa_error err = {0};
    int rc = sa_client_get(ctx->client, key, &v, &err);
    if (rc == SA_ENOTFOUND)
      return api_reply_error(412, "precondition_failed", "If-Match: * but key \"%s\" is absent",
                             key);
    if (rc != 0) return api_reply_sa_error(rc, &err);
    wo->cond = SA_COND_VERSION;
    wo->version = v.version;
    sa_value_free(&v);
    return NULL;
  }
  uint64_t ver;
  if (api_etag_parse(p, &ver) != 0) {
    if (strchr(p, '"'))
      return api_reply_error(412, "precondition_failed",
                             "If-Match must be one strong ETag \"<version>\"; %s never matches", p);
    return api_reply_error(400, "bad_precondition", "If-Match must be an ETag like \"3\"");
  }
  wo->cond = SA_COND_VERSION;
  wo->version = ver;
  return NULL;
}

/* The content type a PUT stores (see the top): *out NULL for none, else
 * the request's header (borrowed until it is answered).  Returns NULL, or
 * the 400 naming why the header is refused. */
static api_response *api_put_ctype(const api_request *req, const char **out) {
  const char *ct = api_hdr(req, "Content-Type");
  *out = NULL;
  if (!ct || !*ct || strcasecmp(ct, "application/x-www-form-urlencoded") == 0) return NULL;
  sa_error err = {0};
  if (sa_content_type_check(ct, &err) != 0)
    return api_reply_error(400, "bad_content_type", "Content-Type: %s", err.message);
  *out = ct;
  return NULL;
}

struct api_write {
  atomic_int state;          /* API_WRITE_SETTLED | API_WRITE_ARMED */
  void (*notify)(void *cls); /* set by api_write_arm */
  void *notify_cls;
  bool put;                            /* PUT, else DELETE */
  size_t size;                         /* PUT: bytes of the value */
  char ctype[SA_CONTENT_TYPE_MAX + 1]; /* PUT: the content type stored ("" none) */
  int rc;                              /* the node's answer, once settled */
  sa_write_result res;
  sa_error err;
  api_route_id route; /* for the metrics at api_write_finish */
  struct timespec t0;
  char key[]; /* decoded key, NUL-terminated */
};

enum { API_WRITE_SETTLED = 1, API_WRITE_ARMED = 2 };

/* The answer to a settled write of key (ctype: the type a put stored, NULL
 * or "" for none). */
static api_response *api_write_reply(const char *key, bool put, size_t size, const char *ctype,
                                     int rc, const sa_write_result *res, const sa_error *err) {
  if (rc != 0) return api_reply_sa_error(rc, err);
  api_response *r = api_resp_new(put && res->version == 1 ? 201 : 200);
  if (!r) return &api_oom_response;
  r->body = api_json_write_doc(key, strlen(key), put, res->version, res->lsn, res->hlc, res->origin,
                               res->durable, size, ctype && *ctype ? ctype : NULL, &r->body_len);
  if (!r->body) {
    api_response_free(r);
    return &api_oom_response;
  }
  r->content_type = "application/json";
  if (put) api_resp_etag(r, res->version);
  return r;
}

/* The node's callback, on its writer thread (sa-writer, docs/threads.md):
 * record the answer, then wake the server if it has armed the write. */
static void api_write_settled(void *arg, int rc, const sa_write_result *res, const sa_error *err) {
  api_write *w = arg;
  w->rc = rc;
  if (res) w->res = *res;
  if (err) w->err = *err;
  if (atomic_fetch_or(&w->state, API_WRITE_SETTLED) & API_WRITE_ARMED) w->notify(w->notify_cls);
}

void api_write_arm(api_write *w, void (*notify)(void *cls), void *cls) {
  w->notify = notify;
  w->notify_cls = cls;
  if (atomic_fetch_or(&w->state, API_WRITE_ARMED) & API_WRITE_SETTLED) notify(cls);
}

void api_write_free(api_write *w) {
  free(w);
}

/* Queues the write of key without waiting.  Returns the placeholder, or
 * NULL when the node refused it at once (then *e is the error answer). */
static api_response *api_write_defer(api_ctx *ctx, const api_request *req, const char *key,
                                     bool put, const sa_write_opts *wo, const char *ctype,
                                     api_response **e) {
  size_t klen = strlen(key);
  api_write *w = calloc(1, sizeof *w + klen + 1);
  api_response *r = api_resp_new(202);
  if (!w || !r) {
    free(w);
    api_response_free(r);
    *e = &api_oom_response;
    return NULL;
  }
  memcpy(w->key, key, klen + 1);
  atomic_init(&w->state, 0);
  w->put = put;
  w->size = req->body_len;
  if (ctype) snprintf(w->ctype, sizeof w->ctype, "%s", ctype);
  sa_put_opts po = {.cond = wo->cond, .version = wo->version, .content_type = w->ctype};
  sa_error err = {0};
  int rc = put ? sa_client_put_opts_async(ctx->client, w->key, req->body_len ? req->body : NULL,
                                          req->body_len, &po, api_write_settled, w, &err)
               : sa_client_remove_async(ctx->client, w->key, wo, api_write_settled, w, &err);
  if (rc != 0) {
    free(w);
    api_response_free(r);
    *e = api_reply_sa_error(rc, &err);
    return NULL;
  }
  r->write = w;
  return r;
}

api_response *api_h_write_key(api_ctx *ctx, const api_request *req, const char *key, bool put) {
  if (put && req->body_len > ctx->max_value_bytes)
    return api_reply_error(413, "payload_too_large", "value of %zu bytes is over the limit of %u",
                           req->body_len, ctx->max_value_bytes);
  const char *ctype = NULL;
  api_response *e = put ? api_put_ctype(req, &ctype) : NULL;
  if (e) return e;
  sa_write_opts wo;
  if ((e = api_write_cond(ctx, req, key, put, &wo)) != NULL) return e;
  if (req->can_defer) {
    api_response *r = api_write_defer(ctx, req, key, put, &wo, ctype, &e);
    return r ? r : e;
  }
  sa_write_result res = {0};
  sa_error err = {0};
  sa_put_opts po = {.cond = wo.cond, .version = wo.version, .content_type = ctype};
  int rc = put ? sa_client_put_opts(ctx->client, key, req->body_len ? req->body : NULL,
                                    req->body_len, &po, &res, &err)
               : sa_client_remove_ex(ctx->client, key, &wo, &res, &err);
  return api_write_reply(key, put, req->body_len, ctype, rc, &res, &err);
}

void api_write_stamp(api_write *w, api_route_id route, const struct timespec *t0) {
  w->route = route;
  w->t0 = *t0;
}

api_response *api_write_finish(api_ctx *ctx, api_write *w, const api_request *req) {
  api_response *r = api_write_reply(w->key, w->put, w->size, w->ctype, w->rc, &w->res, &w->err);
  r = api_finish(ctx, req, w->route, r, &w->t0);
  api_write_free(w);
  return r;
}

/* ---- listing ----------------------------------------------------------------- */

/* Sets "encoding" and "value" on obj, in that order (the listing's bytes
 * stay what they were).  Returns 0, or -1 out of memory. */
static int api_json_set_value(json_t *obj, const char *data, size_t len) {
  const char *enc;
  json_t *v = api_json_value(data, len, &enc);
  if (!v) return -1;
  if (json_object_set_new(obj, "encoding", json_string(enc)) != 0) {
    json_decref(v);
    return -1;
  }
  return json_object_set_new(obj, "value", v);
}

api_response *api_h_list(api_ctx *ctx, const char *query) {
  char *prefix = NULL, *after = NULL, *limit_s = NULL;
  bool values = false;
  api_response *e = NULL;
  size_t limit = API_LIST_DEFAULT_LIMIT;
  if ((e = api_query(query, "prefix", &prefix)) || (e = api_query(query, "after", &after)) ||
      (e = api_query(query, "limit", &limit_s)) || (e = api_query_bool(query, "values", &values)))
    goto out;
  if (limit_s) {
    uint64_t l;
    if (api_parse_u64(limit_s, &l) != 0 || l < 1 || l > API_LIST_MAX_LIMIT) {
      e = api_reply_error(400, "bad_request", "limit must be an integer from 1 to %d",
                          API_LIST_MAX_LIMIT);
      goto out;
    }
    limit = (size_t)l;
  }
  if (values && limit > API_LIST_MAX_LIMIT_VALUES) limit = API_LIST_MAX_LIMIT_VALUES;
  sa_list list;
  sa_error err = {0};
  int rc = sa_client_list(ctx->client, prefix, after, limit, values, &list, &err);
  if (rc != 0) {
    e = api_reply_sa_error(rc, &err);
    goto out;
  }
  json_t *items = json_array();
  size_t count = 0, value_bytes = 0;
  bool more = list.more;
  for (size_t i = 0; items && i < list.count; i++) {
    const sa_entry *en = &list.items[i];
    if (values && i > 0 && value_bytes + en->len > ctx->page_value_bytes) {
      more = true; /* the page is full: the client continues after the last item */
      break;
    }
    value_bytes += en->len;
    count++;
    json_t *it =
        json_pack("{s:s,s:o,s:o,s:o,s:o,s:s?}", "key", en->key, "size", api_json_u64(en->len),
                  "version", api_json_u64(en->version), "lsn", api_json_u64(en->lsn), "updated_at",
                  api_json_time(api_hlc_ms(en->hlc)), "content_type", en->content_type);
    if (it && values && api_json_set_value(it, en->data, en->len) != 0) {
      json_decref(it);
      it = NULL;
    }
    if (!it || json_array_append_new(items, it) != 0) {
      json_decref(items);
      items = NULL;
    }
  }
  json_t *j = NULL;
  if (items) {
    const char *next = (more && count) ? list.items[count - 1].key : NULL;
    j = json_pack("{s:o,s:I,s:b,s:s?}", "items", items, "count", (json_int_t)count, "more",
                  (int)more, "next", next);
    if (j && !next) json_object_set_new(j, "next", json_null());
  }
  sa_list_free(&list);
  e = api_resp_json(api_resp_new(200), j);
out:
  free(prefix);
  free(after);
  free(limit_s);
  return e;
}
