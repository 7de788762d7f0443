/*
 * api_sync.c -- the sync routes of the REST API: GET /v1/sync/ops (the
 * feed a peer pulls, long-polled), GET /v1/sync/snapshot (a peer's
 * catch-up), GET /v1/sync/digest (the convergence check), and the per-peer
 * part of GET /v1/sync/status.
 *
 * What it is: query parsing and validation (every input bounded), the JSON
 * of sync items written by hand (values in base64: binary-safe), the 410 of
 * a position below the floor, and the calls into the core's sync API
 * (sa_client_sync_read, _snapshot, _digest, _peer_ack).  The protocol is
 * the one of issue 22's design note; every answer of these routes, errors
 * included, carries "X-Softadastra-Node: <this node's id>" and
 * "X-Softadastra-Epoch: <16 hex digits>" (sa_client_epoch: a restore starts
 * a new one).  A puller keeps the epoch beside its cursor and sends it back
 * (epoch=E): a cursor of another epoch is answered 410, reason "epoch"
 * (the node was restored and numbers its changes again from the backup's
 * LSN: that cursor would skip its new writes).  The snapshot is an
 * api_stream (api.h) when the caller can stream: made a block at a time
 * from the core's snapshot walk while it is sent.
 *
 * What it is not: a puller (server/srv_sync.c pulls peers, over HTTP) or a
 * waiter: a long-poll that must wait is handed to the caller as an api_feed
 * (api_feed_custom), which server/srv_sse.c suspends and resumes exactly
 * like a /v1/changes long-poll, so no worker thread is held while it waits.
 *
 * Invariants: an item's pair (hlc, origin) and origin_lsn are the stored
 * ones, never re-stamped; items whose origin is the puller's own id are
 * left out by the core (never echoed back), and next_since still moves past
 * them; a puller that claims this node's id is refused (400 same_node_id).
 *
 * Threads: any request thread, many at once; a deferred long-poll's page
 * function runs on whichever worker thread resumes it (one at a time).
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <pthread.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api_feed.h"
#include "api_feed_pos.h"
#include "api_internal.h"
#include "api_json.h"
#include "api_util.h"

#define API_SYNC_DEFAULT_LIMIT 1000
#define API_SYNC_MAX_LIMIT 10000
#define API_SYNC_MAX_WAIT_MS 30000
#define API_SYNC_PAGE_BYTES (16u << 20) /* a page of /v1/sync/ops stops past this */

/* ---- a growing text buffer ------------------------------------------------ */

typedef struct jbuf {
  char *p;
  size_t len, cap;
  bool oom;
} jbuf;

static bool jb_room(jbuf *b, size_t n) {
  if (b->oom) return false;
  if (b->len + n + 1 <= b->cap) return true;
  size_t cap = b->cap ? b->cap : 4096;
  while (cap < b->len + n + 1)
    cap *= 2;
  char *np = realloc(b->p, cap);
  if (!np) {
    b->oom = true;
    return false;
  }
  b->p = np;
  b->cap = cap;
  return true;
}

static void jb_put(jbuf *b, const char *s, size_t n) {
  if (!jb_room(b, n)) return;
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void jb_lit(jbuf *b, const char *s) {
  jb_put(b, s, strlen(s));
}

static void jb_u64(jbuf *b, uint64_t v) {
  if (v > INT64_MAX) v = INT64_MAX; /* as api_json_u64 clamps */
  char tmp[24];
  char *e = api_u64_put(tmp, v);
  jb_put(b, tmp, (size_t)(e - tmp));
}

/* A JSON string of valid UTF-8 (the caller checked): escapes '"', '\\' and
 * the control characters. */
static void jb_str(jbuf *b, const char *s, size_t n) {
  if (!jb_room(b, n * 6 + 2)) return;
  char *o = b->p + b->len;
  *o++ = '"';
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') {
      *o++ = '\\';
      *o++ = (char)c;
    } else if (c < 0x20 || c == 0x7f) {
      static const char hex[] = "0123456789abcdef";
      *o++ = '\\';
      *o++ = 'u';
      *o++ = '0';
      *o++ = '0';
      *o++ = hex[c >> 4];
      *o++ = hex[c & 15];
    } else {
      *o++ = (char)c;
    }
  }
  *o++ = '"';
  b->len = (size_t)(o - b->p);
  b->p[b->len] = '\0';
}

static void jb_b64(jbuf *b, const void *data, size_t len) {
  size_t n = 4 * ((len + 2) / 3);
  if (!jb_room(b, n + 2)) return;
  b->p[b->len++] = '"';
  b->len += api_base64_put(b->p + b->len, data, len);
  b->p[b->len++] = '"';
  b->p[b->len] = '\0';
}

/* One item: {"seq":N,"op":"put"|"delete","key":K,"value_b64":V,"hlc":N,
 * "origin":O,"origin_lsn":N,"content_type":C}; seq only when with_seq (the
 * snapshot has none), content_type only for a put that has one (a puller
 * of an older build ignores it).  A key that is not valid UTF-8 (an
 * embedder's) goes as "key_b64". */
static void jb_item(jbuf *b, const sa_sync_item *it, bool with_seq) {
  jb_lit(b, "{");
  if (with_seq) {
    jb_lit(b, "\"seq\":");
    jb_u64(b, it->seq);
    jb_lit(b, ",");
  }
  jb_lit(b, it->op == SA_OP_DELETE ? "\"op\":\"delete\"," : "\"op\":\"put\",");
  size_t kl = strlen(it->key);
  if (api_utf8_valid(it->key, kl)) {
    jb_lit(b, "\"key\":");
    jb_str(b, it->key, kl);
  } else {
    jb_lit(b, "\"key_b64\":");
    jb_b64(b, it->key, kl);
  }
  if (it->op != SA_OP_DELETE) {
    jb_lit(b, ",\"value_b64\":");
    jb_b64(b, it->data ? it->data : "", it->data ? it->len : 0);
  }
  jb_lit(b, ",\"hlc\":");
  jb_u64(b, it->hlc);
  jb_lit(b, ",\"origin\":");
  jb_str(b, it->origin, strlen(it->origin));
  jb_lit(b, ",\"origin_lsn\":");
  jb_u64(b, it->origin_lsn);
  if (it->op == SA_OP_PUT && it->content_type) {
    jb_lit(b, ",\"content_type\":");
    jb_str(b, it->content_type, strlen(it->content_type));
  }
  jb_lit(b, "}");
}

/* ---- answers ---------------------------------------------------------------- */

/* This node's id (cached in the ctx at create: the id never changes). */
static const char *api_sync_self(const api_ctx *ctx) {
  return ctx->node_id;
}

/* Adds X-Softadastra-Node unless r has it already. */
static api_response *api_sync_tag(const api_ctx *ctx, api_response *r) {
  for (size_t i = 0; i < r->n_headers; i++)
    if (strcmp(r->headers[i].name, "X-Softadastra-Node") == 0) return r;
  if (ctx->node_id[0]) api_resp_header(r, "X-Softadastra-Node", "%s", api_sync_self(ctx));
  api_resp_header(r, "X-Softadastra-Epoch", "%016" PRIx64, sa_client_epoch(ctx->client));
  return r;
}

/* A 200 JSON answer with the buffer b as body (taken); out of memory: 500. */
static api_response *api_sync_body(const api_ctx *ctx, jbuf *b) {
  jb_lit(b, "\n");
  api_response *r = b->oom ? NULL : api_resp_new(200);
  if (!r) {
    free(b->p);
    return api_sync_tag(ctx, api_reply_error(500, "internal_error", "out of memory"));
  }
  r->content_type = "application/json";
  r->body = b->p;
  r->body_len = b->len;
  b->p = NULL;
  return api_sync_tag(ctx, r);
}

static api_response *api_sync_bad(const api_ctx *ctx, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static api_response *api_sync_bad(const api_ctx *ctx, const char *code, const char *fmt, ...) {
  char msg[300];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return api_sync_tag(ctx, api_reply_error(400, code, "%s", msg));
}

/* The 410 of a since below the floor: the error and "oldest_since". */
static api_response *api_sync_gone(const api_ctx *ctx, uint64_t since) {
  uint64_t floor = sa_client_sync_floor(ctx->client);
  jbuf b = {0};
  char msg[200];
  snprintf(msg, sizeof msg,
           "changes after %llu are no longer all kept: the oldest since served is %llu; catch up "
           "from GET /v1/sync/snapshot",
           (unsigned long long)since, (unsigned long long)floor);
  jb_lit(&b, "{\"error\":{\"code\":\"gone\",\"message\":");
  jb_str(&b, msg, strlen(msg));
  jb_lit(&b, "},\"oldest_since\":");
  jb_u64(&b, floor);
  jb_lit(&b, "}");
  api_response *r = api_sync_body(ctx, &b);
  if (r->status == 200) r->status = 410;
  return r;
}

/* The 410 of a cursor from another epoch of this node: "reason": "epoch",
 * the node's epoch and the oldest since (0 reads the whole feed). */
static api_response *api_sync_epoch_gone(const api_ctx *ctx, uint64_t since, uint64_t theirs) {
  char mine[17], msg[400];
  api_feed_epoch_hex(ctx->client, mine);
  snprintf(msg, sizeof msg,
           "since %llu is from epoch %016" PRIx64
           " of this node, which is now epoch %s (restored from a backup or recreated since): "
           "pull again from since=0 with epoch=%s",
           (unsigned long long)since, theirs, mine, mine);
  jbuf b = {0};
  jb_lit(&b, "{\"error\":{\"code\":\"gone\",\"reason\":\"epoch\",\"message\":");
  jb_str(&b, msg, strlen(msg));
  jb_lit(&b, ",\"epoch\":");
  jb_str(&b, mine, strlen(mine));
  jb_lit(&b, "},\"oldest_since\":");
  jb_u64(&b, sa_client_sync_floor(ctx->client));
  jb_lit(&b, "}");
  api_response *r = api_sync_body(ctx, &b);
  if (r->status == 200) r->status = 410;
  return r;
}

/* ---- query parameters ------------------------------------------------------ */

/* A decimal parameter in [min, max] into *out (left alone when absent). */
static api_response *api_sync_u64(const api_ctx *ctx, const char *query, const char *name,
                                  uint64_t min, uint64_t max, uint64_t *out, bool *present) {
  char *v = NULL;
  api_response *e = api_query(query, name, &v);
  if (e) return api_sync_tag(ctx, e);
  if (present) *present = v != NULL;
  if (!v) return NULL;
  uint64_t n;
  if (api_parse_u64(v, &n) != 0 || n < min || n > max) {
    free(v);
    return api_sync_bad(ctx, "bad_request", "%s must be an integer from %llu to %llu", name,
                        (unsigned long long)min, (unsigned long long)max);
  }
  free(v);
  *out = n;
  return NULL;
}

static bool api_sync_node_id_ok(const char *s) {
  size_t n = strlen(s);
  if (n < 1 || n > SA_NODE_ID_MAX) return false;
  for (const char *p = s; *p; p++)
    if (!isalnum((unsigned char)*p) && *p != '.' && *p != '_' && *p != '-') return false;
  return true;
}

/* node=PULLER_ID into out (SA_NODE_ID_MAX + 1 bytes; "" when absent). */
static api_response *api_sync_node(const api_ctx *ctx, const char *query, char *out) {
  out[0] = '\0';
  char *v = NULL;
  api_response *e = api_query(query, "node", &v);
  if (e) return api_sync_tag(ctx, e);
  if (!v) return NULL;
  if (!api_sync_node_id_ok(v)) {
    free(v);
    return api_sync_bad(ctx, "bad_request",
                        "node must be a node id: 1-%d characters of A-Z a-z 0-9 . _ -",
                        SA_NODE_ID_MAX);
  }
  if (strcmp(v, api_sync_self(ctx)) == 0) {
    free(v);
    return api_sync_bad(ctx, "same_node_id",
                        "the puller says it is node %s, which is this node's own id: two nodes "
                        "share one --node-id",
                        api_sync_self(ctx));
  }
  snprintf(out, SA_NODE_ID_MAX + 1, "%s", v);
  free(v);
  return NULL;
}

/* ---- one page for every puller that asks for it ---------------------------- *
 *
 * Under load every puller of this node waits on the same store commit and,
 * when it lands, asks for the same page: the same since (where the commit
 * before left each of them) and the same limit.  Reading a page costs a
 * store lookup and copies per item, writing it as JSON base64 and escapes:
 * with two peers pulling a node under load both were paid twice per page
 * (issue 22: the node's own CPU per PUT rose by about 27% at c64 with two
 * peers, most of it in the loops that serve the feed).  So the last page
 * read is kept, with what makes it the answer to another request:
 *   - the epoch, since and limit it was read for;
 *   - the store's committed LSN before the read: while it has not moved, a
 *     read sees the same store (sa_client_committed_lsn).  A commit that
 *     lands between that load and the read makes the kept page newer than
 *     the key says: still an answer the node could have given;
 *   - the puller it was read for and how many changes it left out as that
 *     puller's own (excluded), and the origins of its items.
 * Another puller gets a copy when the read left nothing out and none of
 * the items is its own (a read for it would leave those out); the same
 * puller (a retry) gets it in any case.  The copy is the answer a read
 * would have given at the first puller's moment, and a puller only moves
 * on from next_since: such an answer is right.  A page with no items (the
 * long-poll keeps waiting) or above API_SHARE_MAX_BYTES is not kept.
 * Memory: one body of at most API_SHARE_MAX_BYTES.
 *
 * Two pullers woken by the same commit on two threads would both read: the
 * first to ask claims the read (the key it reads at), and a puller asking
 * for the same key meanwhile waits for it (at most API_SHARE_WAIT_MS, a
 * bound that no read of a page comes near) and then takes the copy when it
 * is its answer.  The wait holds its thread about as long as the read it
 * saves would have: a front loop answers its other connections no later,
 * and one core does the work once.  With two peers pulling at c64 the
 * copies went from 28-30% of the pages with changes to 46-50% (of 50% at most). */

#define API_SHARE_ORIGINS 4            /* distinct origins a kept page may hold */
#define API_SHARE_MAX_BYTES (4u << 20) /* a larger page is not kept */
#define API_SHARE_WAIT_MS 100          /* the longest wait for another puller's read */

struct api_sync_share {
  pthread_mutex_t mu;
  pthread_cond_t cv; /* broadcast when a claimed read ends (CLOCK_MONOTONIC) */
  bool reading;      /* a read is claimed, at the key below */
  uint64_t r_epoch, r_committed, r_since;
  size_t r_limit;
  bool valid;
  uint64_t epoch, since, committed, next;
  size_t limit, count;
  char puller[SA_NODE_ID_MAX + 1]; /* the exclude it was read with ("" none) */
  size_t excluded;
  char origins[API_SHARE_ORIGINS][SA_NODE_ID_MAX + 1];
  size_t norigins; /* API_SHARE_ORIGINS + 1: more than that (kept for its puller only) */
  char *body;
  size_t len;
  uint64_t pages, shared; /* pages with items answered; of them, copies (under mu) */
};

struct api_sync_share *api_sync_share_create(void) {
  struct api_sync_share *sh = calloc(1, sizeof *sh);
  if (!sh) return NULL;
  pthread_condattr_t ca;
  bool ok = pthread_condattr_init(&ca) == 0;
  ok = ok && pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0 &&
       pthread_cond_init(&sh->cv, &ca) == 0;
  pthread_condattr_destroy(&ca);
  if (ok && pthread_mutex_init(&sh->mu, NULL) != 0) {
    pthread_cond_destroy(&sh->cv);
    ok = false;
  }
  if (!ok) {
    free(sh);
    return NULL;
  }
  return sh;
}

void api_sync_share_destroy(struct api_sync_share *sh) {
  if (!sh) return;
  pthread_cond_destroy(&sh->cv);
  pthread_mutex_destroy(&sh->mu);
  free(sh->body);
  free(sh);
}

void api_sync_write_metrics(api_ctx *ctx, FILE *f) {
  struct api_sync_share *sh = ctx->sync_share;
  pthread_mutex_lock(&sh->mu);
  uint64_t pages = sh->pages, shared = sh->shared;
  pthread_mutex_unlock(&sh->mu);
  fprintf(f,
          "# HELP softadastra_sync_feed_pages_total Pages with changes answered on GET "
          "/v1/sync/ops.\n"
          "# TYPE softadastra_sync_feed_pages_total counter\n"
          "softadastra_sync_feed_pages_total %llu\n"
          "# HELP softadastra_sync_feed_pages_shared_total Of them, copies of the page read for "
          "another puller (the same since, nothing committed between).\n"
          "# TYPE softadastra_sync_feed_pages_shared_total counter\n"
          "softadastra_sync_feed_pages_shared_total %llu\n",
          (unsigned long long)pages, (unsigned long long)shared);
}

/* Is the kept page the answer for a puller that would read with exclude
 * (NULL: none) at this key?  Under sh->mu. */
static bool api_share_fits(const struct api_sync_share *sh, uint64_t epoch, uint64_t committed,
                           uint64_t since, size_t limit, const char *exclude) {
  bool fits = sh->valid && sh->epoch == epoch && sh->committed == committed && sh->since == since &&
              sh->limit == limit;
  if (fits && strcmp(sh->puller, exclude ? exclude : "") != 0) {
    fits = sh->excluded == 0 && sh->norigins <= API_SHARE_ORIGINS;
    for (size_t i = 0; fits && exclude && i < sh->norigins; i++)
      fits = strcmp(sh->origins[i], exclude) != 0;
  }
  return fits;
}

static bool api_share_reading(const struct api_sync_share *sh, uint64_t epoch, uint64_t committed,
                              uint64_t since, size_t limit) {
  return sh->reading && sh->r_epoch == epoch && sh->r_committed == committed &&
         sh->r_since == since && sh->r_limit == limit;
}

/* The kept page as the answer for a puller that would read with exclude
 * (NULL: none) at since/limit, or NULL when it is not that answer.  Sets
 * *count and *next when it is.  A read of the same key claimed by another
 * puller is waited for first; when none is, *claimed tells the caller
 * that it holds the claim now (release it with api_share_put or
 * api_share_release). */
static api_response *api_share_get(api_ctx *ctx, uint64_t epoch, uint64_t committed, uint64_t since,
                                   size_t limit, const char *exclude, size_t *count, uint64_t *next,
                                   bool *claimed) {
  struct api_sync_share *sh = ctx->sync_share;
  char *copy = NULL;
  size_t len = 0;
  *claimed = false;
  pthread_mutex_lock(&sh->mu);
  bool fits = api_share_fits(sh, epoch, committed, since, limit, exclude);
  if (!fits && api_share_reading(sh, epoch, committed, since, limit)) {
    struct timespec due;
    clock_gettime(CLOCK_MONOTONIC, &due);
    due.tv_nsec += API_SHARE_WAIT_MS * 1000000L;
    due.tv_sec += due.tv_nsec / 1000000000L;
    due.tv_nsec %= 1000000000L;
    while (api_share_reading(sh, epoch, committed, since, limit))
      if (pthread_cond_timedwait(&sh->cv, &sh->mu, &due) != 0) break;
    fits = api_share_fits(sh, epoch, committed, since, limit, exclude);
  } else if (!fits && !sh->reading) {
    sh->reading = *claimed = true;
    sh->r_epoch = epoch;
    sh->r_committed = committed;
    sh->r_since = since;
    sh->r_limit = limit;
  }
  if (fits && (copy = malloc(sh->len + 1)) != NULL) {
    memcpy(copy, sh->body, sh->len + 1);
    len = sh->len;
    *count = sh->count;
    *next = sh->next;
    sh->pages++;
    sh->shared++;
  }
  pthread_mutex_unlock(&sh->mu);
  if (!copy) return NULL;
  api_response *r = api_resp_new(200);
  if (!r) {
    free(copy);
    return NULL; /* the caller reads the page itself */
  }
  r->content_type = "application/json";
  r->body = copy;
  r->body_len = len;
  return api_sync_tag(ctx, r);
}

/* Ends a claimed read that kept nothing (an error, an empty page). */
static void api_share_release(api_ctx *ctx) {
  struct api_sync_share *sh = ctx->sync_share;
  pthread_mutex_lock(&sh->mu);
  sh->reading = false;
  pthread_cond_broadcast(&sh->cv);
  pthread_mutex_unlock(&sh->mu);
}

/* Keeps r's body (a page of count items read with exclude) for the pullers
 * after this one; counts the page; ends the claim when claimed. */
static void api_share_put(api_ctx *ctx, uint64_t epoch, uint64_t committed, uint64_t since,
                          size_t limit, const char *exclude, const sa_sync_page *pg, size_t count,
                          uint64_t next, const api_response *r, bool claimed) {
  struct api_sync_share *sh = ctx->sync_share;
  char *copy = NULL;
  bool keep = r->status == 200 && r->body && r->body_len <= API_SHARE_MAX_BYTES;
  if (keep && (copy = malloc(r->body_len + 1)) != NULL) {
    memcpy(copy, r->body, r->body_len);
    copy[r->body_len] = '\0';
  }
  pthread_mutex_lock(&sh->mu);
  sh->pages++;
  if (copy) {
    free(sh->body);
    sh->body = copy;
    sh->len = r->body_len;
    sh->valid = true;
    sh->epoch = epoch;
    sh->committed = committed;
    sh->since = since;
    sh->limit = limit;
    sh->count = count;
    sh->next = next;
    snprintf(sh->puller, sizeof sh->puller, "%s", exclude ? exclude : "");
    sh->excluded = pg->excluded;
    sh->norigins = 0;
    for (size_t i = 0; i < count && sh->norigins <= API_SHARE_ORIGINS; i++) {
      bool seen = false;
      for (size_t j = 0; j < sh->norigins && !seen; j++)
        seen = strcmp(sh->origins[j], pg->items[i].origin) == 0;
      if (seen) continue;
      if (sh->norigins == API_SHARE_ORIGINS) {
        sh->norigins++; /* too many to list: kept for its puller only */
        break;
      }
      memcpy(sh->origins[sh->norigins++], pg->items[i].origin, SA_NODE_ID_MAX + 1);
    }
  }
  if (claimed) {
    sh->reading = false;
    pthread_cond_broadcast(&sh->cv);
  }
  pthread_mutex_unlock(&sh->mu);
}

/* ---- GET /v1/sync/ops ------------------------------------------------------- */

/* One pull: the state of a long-poll between its pages. */
typedef struct api_sync_pull {
  api_ctx *ctx;                  /* borrowed (outlives every request) */
  uint64_t since;                /* read after this */
  size_t limit;                  /* items per page */
  char node[SA_NODE_ID_MAX + 1]; /* the puller ("" = anonymous) */
  bool own;                      /* own=1: the puller's own writes too (it was restored) */
} api_sync_pull;

/* Reads a page for p.  Returns the answer, or NULL when the page is empty
 * and final is false (nothing to send yet: keep waiting; *seen is then the
 * node's last LSN as read, and p->since has moved past what was skipped). */
static api_response *api_sync_pull_page(void *cls, bool final, uint64_t *seen) {
  api_sync_pull *p = cls;
  api_ctx *ctx = p->ctx;
  const char *exclude = p->node[0] && !p->own ? p->node : NULL;
  uint64_t epoch = sa_client_epoch(ctx->client);
  uint64_t committed = sa_client_committed_lsn(ctx->client);
  size_t n = 0;
  uint64_t next = 0;
  bool claimed = false;
  /* The floor first: a since below it is answered 410 by the read. */
  api_response *r =
      p->since >= sa_client_sync_floor(ctx->client)
          ? api_share_get(ctx, epoch, committed, p->since, p->limit, exclude, &n, &next, &claimed)
          : NULL;
  if (r) {
    if (seen) *seen = committed;
    if (p->node[0] && ctx->sync_served) ctx->sync_served(ctx->sync_cls, p->node, n, 0, false);
    if (next > p->since) p->since = next;
    return r;
  }
  sa_sync_page pg;
  memset(&pg, 0, sizeof pg);
  sa_error err = {0};
  int rc = sa_client_sync_read(ctx->client, p->since, p->limit, exclude, &pg, &err);
  if (rc != 0 || (!final && pg.count == 0)) {
    if (claimed) api_share_release(ctx);
    if (rc == SA_EGONE) return api_sync_gone(ctx, p->since);
    if (rc != 0) return api_sync_tag(ctx, api_reply_sa_error(rc, &err));
  }
  if (seen) *seen = pg.last_lsn;
  if (!final && pg.count == 0) {
    if (pg.next_since > p->since) p->since = pg.next_since;
    sa_sync_page_free(&pg);
    return NULL;
  }
  jbuf b = {0};
  jb_lit(&b, "{\"node_id\":");
  jb_str(&b, api_sync_self(ctx), strlen(api_sync_self(ctx)));
  jb_lit(&b, ",\"items\":[");
  /* A page stops past API_SYNC_PAGE_BYTES at an LSN boundary (a batch is
   * never split): large values cannot make an answer no puller can take. */
  n = pg.count;
  next = pg.next_since;
  bool more = pg.more;
  for (size_t i = 0; i < pg.count; i++) {
    if (i && b.len > API_SYNC_PAGE_BYTES && pg.items[i].seq != pg.items[i - 1].seq) {
      n = i;
      next = pg.items[i - 1].seq;
      more = true;
      break;
    }
    if (i) jb_lit(&b, ",");
    jb_item(&b, &pg.items[i], true);
  }
  jb_lit(&b, "],\"count\":");
  jb_u64(&b, n);
  jb_lit(&b, ",\"next_since\":");
  jb_u64(&b, next);
  jb_lit(&b, ",\"last_lsn\":");
  jb_u64(&b, pg.last_lsn);
  jb_lit(&b, more ? ",\"more\":true}" : ",\"more\":false}");
  if (p->node[0] && n && ctx->sync_served) ctx->sync_served(ctx->sync_cls, p->node, n, 0, false);
  r = api_sync_body(ctx, &b);
  if (n)
    api_share_put(ctx, epoch, committed, p->since, p->limit, exclude, &pg, n, next, r, claimed);
  else if (claimed)
    api_share_release(ctx);
  if (next > p->since) p->since = next;
  sa_sync_page_free(&pg);
  return r;
}

api_response *api_h_sync_ops(api_ctx *ctx, const api_request *req, const char *query) {
  api_sync_pull *p = calloc(1, sizeof *p);
  if (!p) return &api_oom_response;
  p->ctx = ctx;
  uint64_t limit = API_SYNC_DEFAULT_LIMIT, wait = 0, acked = 0, own = 0;
  bool has_acked = false;
  api_response *e;
  if ((e = api_sync_u64(ctx, query, "since", 0, INT64_MAX, &p->since, NULL)) ||
      (e = api_sync_u64(ctx, query, "limit", 1, API_SYNC_MAX_LIMIT, &limit, NULL)) ||
      (e = api_sync_u64(ctx, query, "wait", 0, API_SYNC_MAX_WAIT_MS, &wait, NULL)) ||
      (e = api_sync_u64(ctx, query, "acked", 0, INT64_MAX, &acked, &has_acked)) ||
      (e = api_sync_u64(ctx, query, "own", 0, 1, &own, NULL)) ||
      (e = api_sync_node(ctx, query, p->node))) {
    free(p);
    return e;
  }
  p->limit = (size_t)limit;
  p->own = own == 1;
  char *ev = NULL;
  if ((e = api_query(query, "epoch", &ev)) != NULL) {
    free(p);
    return api_sync_tag(ctx, e);
  }
  if (ev) {
    uint64_t theirs = 0, since = p->since;
    bool bad = api_feed_pos_parse_epoch(ev, &theirs) != 0;
    free(ev);
    if (bad) {
      free(p);
      return api_sync_bad(ctx, "bad_request",
                          "epoch must be 1-16 hex digits (the X-Softadastra-Epoch of an answer)");
    }
    if (theirs != sa_client_epoch(ctx->client)) {
      free(p);
      return api_sync_epoch_gone(ctx, since, theirs);
    }
  }
  if (has_acked && !p->node[0]) {
    free(p);
    return api_sync_bad(ctx, "bad_request", "acked needs node (the puller's id)");
  }
  if (p->node[0]) {
    sa_error err = {0};
    int rc = has_acked ? sa_client_sync_peer_ack(ctx->client, p->node, acked, &err) : 0;
    if (rc != 0) {
      free(p);
      return api_sync_tag(ctx, api_reply_sa_error(rc, &err));
    }
    if (ctx->sync_served) ctx->sync_served(ctx->sync_cls, p->node, 0, acked, has_acked);
  }
  if (wait == 0) {
    api_response *r = api_sync_pull_page(p, true, NULL);
    free(p);
    return r;
  }
  uint64_t seen = 0;
  api_response *r = api_sync_pull_page(p, false, &seen);
  if (r) {
    free(p);
    return r;
  }
  api_feed *f = api_feed_custom(ctx->client, (uint32_t)wait, seen, api_sync_pull_page, p, free);
  if (!f) {
    free(p);
    return &api_oom_response;
  }
  if (!req->can_defer) return api_feed_respond(f); /* blocks this thread (tests, embedders) */
  r = api_resp_new(200); /* the placeholder: the caller waits on the feed */
  if (!r) {
    api_feed_free(f);
    return &api_oom_response;
  }
  r->feed = f;
  return r;
}

/* ---- GET /v1/sync/snapshot ------------------------------------------------- *
 *
 * {"node_id":ID,"resume":N,"items":[ITEM...],"dropped":[ITEM...],
 *  "count":N,"dropped_count":N}: the members in this order, so that a
 * reader can act on each as it arrives.  items: every live key and
 * tombstone (no seq); dropped: a delete item per key whose tombstone went
 * by age and that is held nowhere now, with that tombstone's pair
 * (sa_client_sync_snapshot_ex); all from one read transaction. */

typedef struct api_snap {
  const api_ctx *ctx;
  jbuf *b;
  const uint64_t *resume; /* set by the core before the first item */
  size_t n, nd;
  int part; /* 0: nothing written, 1: in items, 2: in dropped */
} api_snap;

/* Writes what comes before the part `to` (1 items, 2 dropped, 3 the end). */
static void api_snap_to(api_snap *s, int to) {
  if (s->part == 0) {
    jb_lit(s->b, "{\"node_id\":");
    jb_str(s->b, api_sync_self(s->ctx), strlen(api_sync_self(s->ctx)));
    jb_lit(s->b, ",\"resume\":");
    jb_u64(s->b, *s->resume);
    jb_lit(s->b, ",\"items\":[");
    s->part = 1;
  }
  if (s->part == 1 && to >= 2) {
    jb_lit(s->b, "],\"dropped\":[");
    s->part = 2;
  }
  if (s->part == 2 && to >= 3) {
    jb_lit(s->b, "],\"count\":");
    jb_u64(s->b, s->n);
    jb_lit(s->b, ",\"dropped_count\":");
    jb_u64(s->b, s->nd);
    jb_lit(s->b, "}");
    s->part = 3;
  }
}

static int api_snap_item(void *arg, const sa_sync_item *it) {
  api_snap *s = arg;
  api_snap_to(s, 1);
  if (s->n++) jb_lit(s->b, ",");
  jb_item(s->b, it, false);
  return s->b->oom ? SA_ENOMEM : 0;
}

static int api_snap_dropped(void *arg, const sa_sync_item *it) {
  api_snap *s = arg;
  api_snap_to(s, 2);
  if (s->nd++) jb_lit(s->b, ",");
  jb_item(s->b, it, false);
  return s->b->oom ? SA_ENOMEM : 0;
}

/* The streamed body (api.h, api_stream): the walk's items written as they
 * are read, a block at a time, so a snapshot of any size costs the node
 * about one block plus its largest item, and the peer gets the first bytes
 * at once.  The walk's read transaction ends as soon as the last item is
 * written (or with the stream). */
#define API_SNAP_BLOCK (64u * 1024u)

struct api_stream {
  sa_sync_snapshot *sn; /* NULL once the walk ended */
  uint64_t resume;
  jbuf b; /* bytes made and not yet read: b.p[off, len) */
  size_t off;
  api_snap s;  /* the JSON's state */
  bool failed; /* the walk failed: the body is cut */
  char why[200];
};

const char *api_stream_error(const api_stream *st) {
  return st->why[0] ? st->why : st->b.oom ? "out of memory" : "";
}

void api_stream_free(api_stream *st) {
  if (!st) return;
  sa_sync_snapshot_close(st->sn);
  free(st->b.p);
  free(st);
}

/* Makes the next block: items until the buffer holds API_SNAP_BLOCK bytes,
 * or the end.  false when the walk failed (why says how). */
static bool api_stream_fill(api_stream *st) {
  while (st->sn && st->b.len < API_SNAP_BLOCK && !st->b.oom) {
    sa_sync_item it;
    bool dropped;
    sa_error err = {0};
    int rc = sa_sync_snapshot_next(st->sn, &it, &dropped, &err);
    if (rc < 0) {
      snprintf(st->why, sizeof st->why, "%.190s", err.message[0] ? err.message : sa_strerror(rc));
      return false;
    }
    if (rc == 0) { /* the end: the transaction goes now, not with the response */
      sa_sync_snapshot_close(st->sn);
      st->sn = NULL;
      api_snap_to(&st->s, 3);
      jb_lit(&st->b, "\n");
      break;
    }
    (dropped ? api_snap_dropped : api_snap_item)(&st->s, &it);
  }
  return !st->b.oom;
}

long api_stream_read(api_stream *st, char *buf, size_t max) {
  size_t out = 0;
  while (out < max) {
    if (st->off < st->b.len) {
      size_t k = st->b.len - st->off < max - out ? st->b.len - st->off : max - out;
      memcpy(buf + out, st->b.p + st->off, k);
      st->off += k;
      out += k;
      continue;
    }
    st->b.len = st->off = 0;
    if (st->b.cap > 4 * API_SNAP_BLOCK) { /* after a large value: give the room back */
      free(st->b.p);
      st->b.p = NULL;
      st->b.cap = 0;
    }
    if (st->failed || !st->sn) break;
    if (!api_stream_fill(st)) {
      st->failed = true;
      break;
    }
  }
  return out || !st->failed ? (long)out : -1;
}

api_response *api_h_sync_snapshot(api_ctx *ctx, const api_request *req, const char *query) {
  char node[SA_NODE_ID_MAX + 1];
  api_response *e = api_sync_node(ctx, query, node);
  if (e) return e;
  api_stream *st = calloc(1, sizeof *st);
  if (!st) return api_sync_tag(ctx, api_reply_error(500, "internal_error", "out of memory"));
  sa_error err = {0};
  int rc = sa_client_sync_snapshot_open(ctx->client, true, &st->sn, &st->resume, &err);
  if (rc != 0) {
    free(st);
    return api_sync_tag(ctx, api_reply_sa_error(rc, &err));
  }
  st->s = (api_snap){.ctx = ctx, .b = &st->b, .resume = &st->resume};
  api_snap_to(&st->s, 1); /* the head: node_id, resume */
  if (!req->can_defer) {  /* the caller cannot stream (tests, embedders): the whole body */
    jbuf whole = {0};
    char blk[API_SNAP_BLOCK];
    long n;
    while ((n = api_stream_read(st, blk, sizeof blk)) > 0)
      jb_put(&whole, blk, (size_t)n);
    api_stream_free(st);
    if (n < 0 || whole.oom) {
      free(whole.p);
      return api_sync_tag(ctx, api_reply_error(500, "internal_error", "the snapshot failed"));
    }
    api_response *r = api_resp_new(200);
    if (!r) {
      free(whole.p);
      return &api_oom_response;
    }
    r->content_type = "application/json";
    r->body = whole.p;
    r->body_len = whole.len;
    return api_sync_tag(ctx, r);
  }
  api_response *r = api_resp_new(200);
  if (!r) {
    api_stream_free(st);
    return &api_oom_response;
  }
  r->content_type = "application/json";
  r->stream = st;
  api_resp_header(r, "Cache-Control", "no-store");
  return api_sync_tag(ctx, r);
}

/* ---- GET /v1/sync/digest ----------------------------------------------------- */

api_response *api_h_sync_digest(api_ctx *ctx) {
  char hex[65];
  uint64_t keys = 0;
  sa_error err = {0};
  int rc = sa_client_sync_digest(ctx->client, hex, &keys, &err);
  if (rc != 0) return api_sync_tag(ctx, api_reply_sa_error(rc, &err));
  sa_status st;
  rc = sa_client_status(ctx->client, &st, &err);
  if (rc != 0) return api_sync_tag(ctx, api_reply_sa_error(rc, &err));
  jbuf b = {0};
  jb_lit(&b, "{\"digest\":");
  jb_str(&b, hex, strlen(hex));
  jb_lit(&b, ",\"keys\":");
  jb_u64(&b, keys);
  jb_lit(&b, ",\"node_id\":");
  jb_str(&b, st.node_id, strlen(st.node_id));
  jb_lit(&b, ",\"last_lsn\":");
  jb_u64(&b, st.last_lsn);
  jb_lit(&b, "}");
  return api_sync_body(ctx, &b);
}

/* ---- GET /v1/sync/status: the peers ---------------------------------------- */

json_t *api_sync_peers_json(api_ctx *ctx) {
  json_t *arr = json_array();
  if (!arr || !ctx->sync_peers) return arr;
  api_sync_peer peers[API_SYNC_MAX_PEERS];
  size_t n = ctx->sync_peers(ctx->sync_cls, peers, API_SYNC_MAX_PEERS);
  for (size_t i = 0; i < n && i < API_SYNC_MAX_PEERS; i++) {
    const api_sync_peer *p = &peers[i];
    json_t *o = json_pack(
        "{s:s,s:s?,s:s,s:o,s:o,s:o,s:o,s:o,s:s?,s:o,s:o,s:o,s:o,s:o}", "url", p->url, "node_id",
        p->node_id[0] ? p->node_id : NULL, "state", p->state, "cursor", api_json_u64(p->cursor),
        "lag_ops", api_json_u64(p->lag_ops), "lag_ms", api_json_u64(p->lag_ms), "last_contact_ms",
        api_json_u64(p->last_contact_ms), "last_contact_at", api_json_time(p->last_contact_ms),
        "last_error", p->last_error[0] ? p->last_error : NULL, "ops_received",
        api_json_u64(p->ops_received), "ops_sent", api_json_u64(p->ops_sent), "acked",
        api_json_u64(p->acked), "refused_drift", api_json_u64(p->refused_drift), "refused_invalid",
        api_json_u64(p->refused_invalid));
    if (o && p->hub)
      json_object_set_new(
          o, "hub",
          json_pack("{s:o,s:o,s:o,s:o}", "published", api_json_u64(p->hub_published), "acked",
                    api_json_u64(p->hub_acked), "in_flight", api_json_u64(p->hub_in_flight),
                    "unpublished", api_json_u64(p->hub_unpublished)));
    if (o) json_object_set_new(o, "source", json_string(p->source ? p->source : "configured"));
    if (o && p->announced_ms) { /* a discovered peer: when it last announced itself */
      json_object_set_new(o, "last_announce_ms", api_json_u64(p->announced_ms));
      json_object_set_new(o, "last_announce_at", api_json_time(p->announced_ms));
    }
    if (o) json_array_append_new(arr, o);
  }
  return arr;
}

api_response *api_sync_tag_node(const api_ctx *ctx, api_response *r) {
  return api_sync_tag(ctx, r);
}
