/*
 * srv_sync.c -- the pullers of the HTTP transport (see srv_sync.h).
 *
 * A puller (srv_peer) owns one peer URL and one libcurl handle.  Its loop:
 *   1. until the peer's node id is known: one short GET /v1/sync/ops
 *      (limit=1, no wait); the answer's node_id (or, on an error answer,
 *      its X-Softadastra-Node header) names the peer; the cursor stored for
 *      that id (sa_client_sync_cursor) is where pulling resumes; the id is
 *      registered with sa_client_sync_set_peers among every puller's;
 *   2. GET /v1/sync/ops?since=CURSOR&limit=L&wait=W&node=SELF&acked=CURSOR
 *      (a long-poll); the batch is parsed and checked whole, then applied
 *      with sa_client_sync_apply(peer_id, items, n, next_since): the items
 *      and the new cursor commit together, so a crash anywhere neither
 *      skips nor repeats a batch;
 *   3. 410 gone: GET /v1/sync/snapshot, read as it arrives and applied in
 *      chunks with the cursor unchanged (see "catch-up from a snapshot"):
 *      its items, then its "dropped" items (a delete with the pair of each
 *      tombstone the peer dropped by age, of keys it holds nowhere now: by
 *      the rule each removes this node's copy of the key when older, never
 *      a later write, and leaves every other key alone), the last chunk,
 *      once the whole document is in, with cursor = the snapshot's resume;
 *   4. any failure (refused connection, timeout, garbage, an answer cut
 *      short, a refused batch): the state says why, and the puller waits
 *      with exponential backoff and jitter, at most SRV_SYNC_BACKOFF_MAX_MS,
 *      so a returning peer is pulled again within a few seconds.
 *
 * Invariants: a peer answer is applied only after every item of it parsed;
 * the cursor moves only through sa_client_sync_apply; a peer whose answer
 * names this node's own id, or the id another puller already pulls, is
 * refused (nothing applied).  Everything shown in the state is written
 * under s->mu (a leaf lock: nothing else is taken while it is held).
 *
 * Threads: one `sa-pull` thread per peer; the hooks run on request threads.
 */
#define _GNU_SOURCE
#include "srv_sync.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api_util.h"
#include "srv_log.h"

#define SRV_SYNC_BACKOFF_MIN_MS 100
#define SRV_SYNC_SNAP_CHUNK 1000
#define SRV_SYNC_MAX_PULLERS 64 /* pullers of this node's feed remembered for ops_sent */

typedef enum srv_peer_state {
  SRV_PEER_UNREACHABLE = 0,
  SRV_PEER_CONNECTED,
  SRV_PEER_REFUSING,
  SRV_PEER_CATCHING_UP,
} srv_peer_state;

static const char *const srv_peer_state_name[] = {"unreachable", "connected", "refusing",
                                                  "catching_up"};

typedef struct srv_peer {
  srv_sync *s;   /* owner */
  char url[256]; /* base URL, no trailing slash; fixed while the slot is in use */
  pthread_t thread;
  bool started;
  /* The slot (under s->mu).  Readers skip a slot not in use or quitting. */
  bool in_use;
  bool discovered;                    /* added by srv_sync_discovered, not configured */
  atomic_bool quit;                   /* this puller alone stops (a discovered peer forgotten) */
  atomic_bool exited;                 /* its thread returned: srv_sync_expire joins it */
  char announced[SA_NODE_ID_MAX + 1]; /* discovered: the node id it announced */
  uint64_t heard_ms;                  /* discovered: CLOCK_MONOTONIC ms of its last announcement */
  uint64_t heard_unix_ms;             /* the same in unix ms (shown) */
  bool kick;  /* under s->mu: end the backoff now (the peer just pulled from us) */
  CURL *curl; /* the puller's own handle */
  /* The state (under s->mu). */
  char node_id[SA_NODE_ID_MAX + 1]; /* learned from the peer; "" until then */
  srv_peer_state state;
  uint64_t cursor; /* the peer's feed position applied here */
  uint64_t epoch;  /* the peer's epoch that cursor is in (0: not known yet) */
  bool own;        /* this node was restored since it caught up with the peer: its own writes too */
  uint64_t last_lsn;        /* the peer's last LSN as it last said */
  uint64_t behind_since_ms; /* unix ms since when cursor < last_lsn (0: caught up) */
  uint64_t last_contact_ms; /* unix ms of the last answer */
  char last_error[200];
  uint64_t ops_received; /* items applied from this peer (won or lost by the rule) */
  uint64_t applied;      /* of those, the ones that won */
  uint64_t refused_drift, refused_invalid, errors, catchups;
} srv_peer;

typedef struct srv_puller {
  char node_id[SA_NODE_ID_MAX + 1];
  uint64_t sent;  /* items served to it */
  uint64_t acked; /* the position it said it applied */
} srv_puller;

struct srv_sync {
  sa_client *client;
  atomic_uint *discovered_count; /* srv_sync_config's, or NULL */
  pthread_mutex_t reg_mu;        /* serializes srv_sync_register (before mu) */
  size_t reg_unknown;            /* under reg_mu: the unknown count last given to the core */
  char self[SA_NODE_ID_MAX + 1];
  char *auth;                     /* "Authorization: Bearer ..." or NULL */
  char extra[SA_NODE_ID_MAX + 1]; /* srv_sync_config.extra_peer, "" = none */
  uint32_t wait_ms, limit, linger_ms;
  size_t chunk_bytes; /* keys + values per sa_client_sync_apply (under max_batch_bytes) */
  atomic_bool stop;
  pthread_mutex_t mu; /* the state of the peers and the pullers */
  pthread_cond_t cv;  /* CLOCK_MONOTONIC: stop */
  size_t n;           /* slots ever used (a high-water mark): peers[0..n) */
  srv_peer peers[SRV_SYNC_MAX_PEERS];
  uint64_t found, forgotten; /* discovered peers added, and forgotten */
  size_t n_pullers;
  srv_puller pullers[SRV_SYNC_MAX_PULLERS];
};

/* A slot that holds a peer not being forgotten (with s->mu held). */
static bool srv_peer_live(const srv_peer *p) {
  return p->in_use && !atomic_load(&p->quit);
}

/* The puller should end: the node stops, or this peer was forgotten. */
static bool srv_peer_stopping(const srv_peer *p) {
  return atomic_load(&p->s->stop) || atomic_load(&p->quit);
}

static uint64_t srv_sync_mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t srv_sync_unix_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- state ------------------------------------------------------------------- */

static void srv_peer_set(srv_peer *p, srv_peer_state st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void srv_peer_set(srv_peer *p, srv_peer_state st, const char *fmt, ...) {
  char msg[200] = "";
  if (fmt) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
  }
  pthread_mutex_lock(&p->s->mu);
  srv_peer_state was = p->state;
  bool same = strcmp(msg, p->last_error) == 0;
  p->state = st;
  if (fmt) {
    snprintf(p->last_error, sizeof p->last_error, "%s", msg);
    p->errors++;
  }
  pthread_mutex_unlock(&p->s->mu);
  if (fmt && (!same || was != st)) { /* logged once per change, not per retry */
    char q1[300], q2[300];
    srv_log(st == SRV_PEER_REFUSING ? SRV_LOG_WARN : SRV_LOG_INFO, "sync_peer",
            "peer=%s state=%s error=%s", srv_log_q(p->url, q1, sizeof q1), srv_peer_state_name[st],
            srv_log_q(msg, q2, sizeof q2));
  } else if (!fmt && was != st) {
    char q1[300], q2[100];
    srv_log(SRV_LOG_INFO, "sync_peer", "peer=%s state=%s node_id=%s",
            srv_log_q(p->url, q1, sizeof q1), srv_peer_state_name[st],
            srv_log_q(p->node_id, q2, sizeof q2));
  }
}

/* Waits ms unless stopping or kicked (srv_sync_served: the peer is back).
 * Returns false when stopping (or forgotten); *backoff restarts after a kick. */
static bool srv_sync_nap(srv_peer *p, uint32_t ms, uint32_t *backoff) {
  srv_sync *s = p->s;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  uint64_t ns = (uint64_t)ts.tv_nsec + (uint64_t)ms * 1000000u;
  ts.tv_sec += (time_t)(ns / 1000000000u);
  ts.tv_nsec = (long)(ns % 1000000000u);
  pthread_mutex_lock(&s->mu);
  while (!srv_peer_stopping(p) && !p->kick)
    if (pthread_cond_timedwait(&s->cv, &s->mu, &ts) == ETIMEDOUT) break;
  if (p->kick) *backoff = 0;
  p->kick = false;
  pthread_mutex_unlock(&s->mu);
  return !srv_peer_stopping(p);
}

/* The next delay of a backoff: doubles from SRV_SYNC_BACKOFF_MIN_MS up to
 * the cap, then a random point in its upper half (jitter: peers that lost a
 * node together do not come back in step). */
static uint32_t srv_sync_backoff(uint32_t *cur, unsigned *seed) {
  uint32_t d = *cur ? *cur * 2 : SRV_SYNC_BACKOFF_MIN_MS;
  if (d > SRV_SYNC_BACKOFF_MAX_MS) d = SRV_SYNC_BACKOFF_MAX_MS;
  *cur = d;
  return d / 2 + (uint32_t)(rand_r(seed) % (d / 2 + 1));
}

/* ---- HTTP --------------------------------------------------------------------- */

typedef struct srv_buf {
  char *p;
  size_t len, cap;
  bool over;
} srv_buf;

static size_t srv_sync_write_cb(char *data, size_t size, size_t nmemb, void *cls) {
  srv_buf *b = cls;
  size_t n = size * nmemb;
  if (b->len + n + 1 > SRV_SYNC_MAX_ANSWER) {
    b->over = true;
    return 0; /* aborts the transfer */
  }
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 16384;
    while (cap < b->len + n + 1)
      cap *= 2;
    char *np = realloc(b->p, cap);
    if (!np) return 0;
    b->p = np;
    b->cap = cap;
  }
  memcpy(b->p + b->len, data, n);
  b->len += n;
  b->p[b->len] = '\0';
  return n;
}

typedef struct srv_hdrs {
  char node[SA_NODE_ID_MAX + 1]; /* X-Softadastra-Node */
  uint64_t epoch;                /* X-Softadastra-Epoch (0: absent or malformed) */
} srv_hdrs;

/* X-Softadastra-Epoch's value: exactly 16 hex digits, else 0. */
static uint64_t srv_sync_epoch_value(const char *v, size_t n) {
  if (n != 16) return 0;
  uint64_t e = 0;
  for (size_t i = 0; i < n; i++) {
    char c = v[i];
    int d = c >= '0' && c <= '9'   ? c - '0'
            : c >= 'a' && c <= 'f' ? c - 'a' + 10
            : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                   : -1;
    if (d < 0) return 0;
    e = e << 4 | (uint64_t)d;
  }
  return e;
}

static size_t srv_sync_header_cb(char *data, size_t size, size_t nmemb, void *cls) {
  srv_hdrs *h = cls;
  size_t n = size * nmemb;
  static const char name[] = "x-softadastra-node:", ename[] = "x-softadastra-epoch:";
  bool node = n > sizeof name - 1 && strncasecmp(data, name, sizeof name - 1) == 0;
  bool epoch = !node && n > sizeof ename - 1 && strncasecmp(data, ename, sizeof ename - 1) == 0;
  if (node || epoch) {
    size_t skip = node ? sizeof name - 1 : sizeof ename - 1;
    const char *v = data + skip;
    size_t vl = n - skip;
    while (vl && (*v == ' ' || *v == '\t'))
      v++, vl--;
    while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
      vl--;
    if (epoch) {
      h->epoch = srv_sync_epoch_value(v, vl);
    } else if (vl <= SA_NODE_ID_MAX) {
      memcpy(h->node, v, vl);
      h->node[vl] = '\0';
    }
  }
  return n;
}

static int srv_sync_progress_cb(void *cls, curl_off_t dt, curl_off_t dn, curl_off_t ut,
                                curl_off_t un) {
  (void)dt, (void)dn, (void)ut, (void)un;
  return srv_peer_stopping(cls) ? 1 : 0; /* non-zero aborts */
}

/* Readies the peer's handle for a GET of url: reset, the token and Accept
 * headers, the connect bound, the abort when the puller stops, http(s)
 * only.  Returns the header list, which the caller frees after the
 * transfer; the caller sets its own timeouts and sinks. */
static struct curl_slist *srv_sync_curl_prepare(srv_peer *p, const char *url) {
  CURL *c = p->curl;
  curl_easy_reset(c);
  struct curl_slist *hl = NULL;
  if (p->s->auth) hl = curl_slist_append(hl, p->s->auth);
  hl = curl_slist_append(hl, "Accept: application/json");
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 3000L);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, srv_sync_progress_cb);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, p);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  return hl;
}

/* One GET of path on the peer with a timeout.  Returns 0 with *status and
 * the body in b (caller frees b->p), or -1 with the reason in why. */
static int srv_sync_get(srv_peer *p, const char *path, uint32_t timeout_ms, long *status,
                        srv_buf *b, srv_hdrs *h, char *why, size_t whylen) {
  memset(b, 0, sizeof *b);
  memset(h, 0, sizeof *h);
  char url[1024];
  snprintf(url, sizeof url, "%s%s", p->url, path);
  CURL *c = p->curl;
  struct curl_slist *hl = srv_sync_curl_prepare(p, url);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L); /* a peer that stalls mid-answer */
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, (long)(timeout_ms / 1000 + 5));
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, srv_sync_write_cb);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, srv_sync_header_cb);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, h);
  CURLcode rc = curl_easy_perform(c);
  curl_slist_free_all(hl);
  if (rc != CURLE_OK) {
    if (b->over)
      snprintf(why, whylen, "the answer is over %llu bytes",
               (unsigned long long)SRV_SYNC_MAX_ANSWER);
    else
      snprintf(why, whylen, "%s", curl_easy_strerror(rc));
    free(b->p);
    b->p = NULL;
    return -1;
  }
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
  return 0;
}

/* ---- parsing ------------------------------------------------------------------- */

/* The items of one answer, parsed and owned. */
typedef struct srv_batch {
  sa_sync_item *items;
  size_t n;
  char **bufs; /* decoded values and keys to free */
  size_t nbufs;
} srv_batch;

static void srv_batch_free(srv_batch *b) {
  for (size_t i = 0; i < b->nbufs; i++)
    free(b->bufs[i]);
  free(b->bufs);
  free(b->items);
  memset(b, 0, sizeof *b);
}

static bool srv_json_u64(json_t *o, const char *name, uint64_t *out) {
  json_t *v = json_object_get(o, name);
  if (!json_is_integer(v) || json_integer_value(v) < 0) return false;
  *out = (uint64_t)json_integer_value(v);
  return true;
}

/* A decoded base64 string member, kept in b->bufs. */
static bool srv_json_b64(srv_batch *b, json_t *o, const char *name, char **out, size_t *len) {
  json_t *v = json_object_get(o, name);
  if (!json_is_string(v)) return false;
  char *d = NULL;
  if (api_base64_decode(json_string_value(v), json_string_length(v), &d, len) != 0) return false;
  b->bufs[b->nbufs++] = d;
  *out = d;
  return true;
}

/* Parses one item object o into it (with seq when with_seq); decoded
 * base64 goes to b->bufs, which must have room for two more.  Returns NULL,
 * or what is wrong. */
static const char *srv_item_json(srv_batch *b, json_t *o, bool with_seq, sa_sync_item *it) {
  memset(it, 0, sizeof *it);
  const char *bad = NULL;
  const char *op = json_string_value(json_object_get(o, "op"));
  json_t *k = json_object_get(o, "key");
  json_t *origin = json_object_get(o, "origin");
  json_t *ct = json_object_get(o, "content_type");
  size_t kl = 0;
  if (!json_is_object(o))
    bad = "not an object";
  else if (with_seq && !srv_json_u64(o, "seq", &it->seq))
    bad = "\"seq\" is not a non-negative integer";
  else if (!op || (strcmp(op, "put") && strcmp(op, "delete")))
    bad = "\"op\" is not \"put\" or \"delete\"";
  else if (!srv_json_u64(o, "hlc", &it->hlc))
    bad = "\"hlc\" is not a non-negative integer";
  else if (!srv_json_u64(o, "origin_lsn", &it->origin_lsn))
    bad = "\"origin_lsn\" is not a non-negative integer";
  else if (!json_is_string(origin) || json_string_length(origin) == 0 ||
           json_string_length(origin) > SA_NODE_ID_MAX ||
           strlen(json_string_value(origin)) != json_string_length(origin))
    bad = "\"origin\" is not a node id";
  else if (json_is_string(k)) {
    if (strlen(json_string_value(k)) != json_string_length(k) || json_string_length(k) == 0)
      bad = "\"key\" is empty or holds a NUL";
    else
      it->key = (char *)json_string_value(k);
  } else if (!srv_json_b64(b, o, "key_b64", &it->key, &kl) || kl == 0 || strlen(it->key) != kl) {
    bad = "no valid \"key\" or \"key_b64\"";
  }
  if (!bad) {
    it->op = strcmp(op, "put") == 0 ? SA_OP_PUT : SA_OP_DELETE;
    snprintf(it->origin, sizeof it->origin, "%s", json_string_value(origin));
    if (it->op == SA_OP_PUT && !srv_json_b64(b, o, "value_b64", &it->data, &it->len))
      bad = "a put without a valid \"value_b64\"";
    else if (ct && !json_is_null(ct) &&
             (it->op != SA_OP_PUT || !json_is_string(ct) || json_string_length(ct) == 0 ||
              json_string_length(ct) > SA_CONTENT_TYPE_MAX ||
              strlen(json_string_value(ct)) != json_string_length(ct)))
      bad = "\"content_type\" is not the content type of a put (1 to 127 bytes)";
    else if (ct && json_is_string(ct))
      it->content_type = (char *)json_string_value(ct); /* checked by sa_client_sync_apply */
  }
  return bad;
}

/* Parses the items array (with seq when with_seq).  Returns 0, or -1 with
 * the reason in why (nothing kept). */
static int srv_batch_parse(json_t *arr, bool with_seq, srv_batch *b, char *why, size_t whylen) {
  memset(b, 0, sizeof *b);
  if (!json_is_array(arr)) {
    snprintf(why, whylen, "\"items\" is not an array");
    return -1;
  }
  size_t n = json_array_size(arr);
  b->items = calloc(n ? n : 1, sizeof *b->items);
  b->bufs = calloc(n ? 2 * n : 1, sizeof *b->bufs);
  if (!b->items || !b->bufs) {
    snprintf(why, whylen, "out of memory");
    srv_batch_free(b);
    return -1;
  }
  for (size_t i = 0; i < n; i++) {
    const char *bad = srv_item_json(b, json_array_get(arr, i), with_seq, &b->items[i]);
    if (bad) {
      snprintf(why, whylen, "malformed batch: item %zu: %s", i, bad);
      srv_batch_free(b);
      return -1;
    }
  }
  b->n = n;
  return 0;
}

/* ---- the fast path: a page of /v1/sync/ops parsed in place ------------------------ *
 *
 * jansson builds a tree of the whole page (an object, a hash table and a
 * string per member of every item) that is thrown away at once: most of a
 * catch-up's CPU.  This reader takes the page as the API writes it (any
 * member order, whitespace, escapes), decodes strings and base64 in place
 * (the decoded bytes are never longer than their text) and points the
 * items into the answer's buffer.  It accepts a subset of JSON: anything
 * it does not expect (a float, a negative number, a nested value where an
 * item member is, invalid UTF-8) makes it give up, and the answer goes
 * through jansson and srv_batch_parse, which name the problem. */

typedef struct srv_fp {
  char *p, *end;
} srv_fp;

static void srv_fp_ws(srv_fp *f) {
  while (f->p < f->end && (*f->p == ' ' || *f->p == '\t' || *f->p == '\n' || *f->p == '\r'))
    f->p++;
}

static bool srv_fp_eat(srv_fp *f, char c) {
  srv_fp_ws(f);
  if (f->p < f->end && *f->p == c) {
    f->p++;
    return true;
  }
  return false;
}

static int srv_fp_hex(char c) {
  return c >= '0' && c <= '9'   ? c - '0'
         : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                : -1;
}

/* A string, unescaped in place and NUL-terminated: *out points at it. */
static bool srv_fp_str(srv_fp *f, char **out, size_t *len) {
  if (!srv_fp_eat(f, '"')) return false;
  char *o = f->p, *start = f->p;
  while (f->p < f->end && *f->p != '"') {
    unsigned char c = (unsigned char)*f->p++;
    if (c < 0x20) return false;
    if (c != '\\') {
      *o++ = (char)c;
      continue;
    }
    if (f->p >= f->end) return false;
    char e = *f->p++;
    switch (e) {
    case '"':
      *o++ = '"';
      break;
    case '\\':
      *o++ = '\\';
      break;
    case '/':
      *o++ = '/';
      break;
    case 'b':
      *o++ = '\b';
      break;
    case 'f':
      *o++ = '\f';
      break;
    case 'n':
      *o++ = '\n';
      break;
    case 'r':
      *o++ = '\r';
      break;
    case 't':
      *o++ = '\t';
      break;
    case 'u': {
      if (f->end - f->p < 4) return false;
      int h[4];
      for (int i = 0; i < 4; i++)
        if ((h[i] = srv_fp_hex(f->p[i])) < 0) return false;
      unsigned cp = (unsigned)(h[0] << 12 | h[1] << 8 | h[2] << 4 | h[3]);
      f->p += 4;
      if (cp == 0 || (cp >= 0xD800 && cp <= 0xDFFF)) return false; /* NUL, surrogates: jansson */
      if (cp < 0x80) {
        *o++ = (char)cp;
      } else if (cp < 0x800) {
        *o++ = (char)(0xC0 | cp >> 6);
        *o++ = (char)(0x80 | (cp & 0x3F));
      } else {
        *o++ = (char)(0xE0 | cp >> 12);
        *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *o++ = (char)(0x80 | (cp & 0x3F));
      }
      break;
    }
    default:
      return false;
    }
  }
  if (f->p >= f->end) return false;
  f->p++; /* the closing quote: o is at most there, so the NUL fits */
  *o = '\0';
  *out = start;
  *len = (size_t)(o - start);
  return api_utf8_valid(start, *len);
}

static bool srv_fp_u64(srv_fp *f, uint64_t *v) {
  srv_fp_ws(f);
  uint64_t n = 0;
  char *s0 = f->p;
  while (f->p < f->end && *f->p >= '0' && *f->p <= '9') {
    if (n > (UINT64_MAX - 9) / 10) return false;
    n = n * 10 + (uint64_t)(*f->p++ - '0');
  }
  if (f->p == s0 || (f->p - s0 > 1 && *s0 == '0')) return false;
  if (f->p < f->end && (*f->p == '.' || *f->p == 'e' || *f->p == 'E')) return false;
  if (n > INT64_MAX) return false; /* as jansson's json_int_t */
  *v = n;
  return true;
}

/* The value of a base64 digit, or -1. */
static int srv_fp_b64v(unsigned char c) {
  return c >= 'A' && c <= 'Z'   ? c - 'A'
         : c >= 'a' && c <= 'z' ? c - 'a' + 26
         : c >= '0' && c <= '9' ? c - '0' + 52
         : c == '+'             ? 62
         : c == '/'             ? 63
                                : -1;
}

/* Base64 decoded in place (padding required, no whitespace). */
static bool srv_fp_b64(char *s, size_t n, size_t *out) {
  if (n % 4) return false;
  size_t o = 0;
  for (size_t i = 0; i < n; i += 4) {
    int v[4], pad = 0;
    for (int k = 0; k < 4; k++) {
      unsigned char c = (unsigned char)s[i + k];
      if (c == '=' && i + 4 == n && k >= 2) {
        v[k] = 0;
        pad++;
      } else if (pad || (v[k] = srv_fp_b64v(c)) < 0) {
        return false;
      }
    }
    unsigned w = (unsigned)(v[0] << 18 | v[1] << 12 | v[2] << 6 | v[3]);
    s[o++] = (char)(w >> 16);
    if (pad < 2) s[o++] = (char)(w >> 8);
    if (pad < 1) s[o++] = (char)w;
  }
  s[o] = '\0';
  *out = o;
  return true;
}

static bool srv_fp_bool(srv_fp *f, bool *v) {
  srv_fp_ws(f);
  if (f->end - f->p >= 4 && !memcmp(f->p, "true", 4)) {
    f->p += 4;
    *v = true;
    return true;
  }
  if (f->end - f->p >= 5 && !memcmp(f->p, "false", 5)) {
    f->p += 5;
    *v = false;
    return true;
  }
  return false;
}

/* name (of length nl, decoded) is the literal lit: lengths first, then
 * memcmp; a page has seven names an item, and a strcmp chain was a fifth
 * of this reader's time. */
#define SRV_FP_IS(name, nl, lit)                                                                   \
  ((nl) == sizeof(lit) - 1 && memcmp((name), lit, sizeof(lit) - 1) == 0)

/* One item object into it (seq required when with_seq). */
static bool srv_fp_item(srv_fp *f, sa_sync_item *it, bool with_seq) {
  if (!srv_fp_eat(f, '{')) return false;
  memset(it, 0, sizeof *it);
  unsigned seen = 0;
  char *origin = NULL;
  size_t olen = 0;
  bool first = true;
  while (!srv_fp_eat(f, '}')) {
    if (!first && !srv_fp_eat(f, ',')) return false;
    first = false;
    char *name, *sv;
    size_t nl, sl;
    if (!srv_fp_str(f, &name, &nl) || !srv_fp_eat(f, ':')) return false;
    unsigned bit;
    if (SRV_FP_IS(name, nl, "seq")) {
      bit = 1;
      if (!srv_fp_u64(f, &it->seq)) return false;
    } else if (SRV_FP_IS(name, nl, "hlc")) {
      bit = 2;
      if (!srv_fp_u64(f, &it->hlc)) return false;
    } else if (SRV_FP_IS(name, nl, "origin_lsn")) {
      bit = 4;
      if (!srv_fp_u64(f, &it->origin_lsn)) return false;
    } else if (SRV_FP_IS(name, nl, "op")) {
      bit = 8;
      if (!srv_fp_str(f, &sv, &sl)) return false;
      if (SRV_FP_IS(sv, sl, "put"))
        it->op = SA_OP_PUT;
      else if (SRV_FP_IS(sv, sl, "delete"))
        it->op = SA_OP_DELETE;
      else
        return false;
    } else if (SRV_FP_IS(name, nl, "key")) {
      bit = 16;
      if (!srv_fp_str(f, &it->key, &sl) || sl == 0 || strlen(it->key) != sl) return false;
    } else if (SRV_FP_IS(name, nl, "value_b64")) {
      bit = 32;
      if (!srv_fp_str(f, &sv, &sl) || !srv_fp_b64(sv, sl, &it->len)) return false;
      it->data = sv;
    } else if (SRV_FP_IS(name, nl, "origin")) {
      bit = 64;
      if (!srv_fp_str(f, &origin, &olen)) return false;
    } else if (SRV_FP_IS(name, nl, "content_type")) {
      bit = 128;
      if (!srv_fp_str(f, &it->content_type, &sl) || sl == 0 || sl > SA_CONTENT_TYPE_MAX ||
          strlen(it->content_type) != sl)
        return false;
    } else {
      return false; /* key_b64 and anything else: the slow path */
    }
    if (seen & bit) return false; /* repeated member */
    seen |= bit;
  }
  unsigned want = with_seq ? 95 : 94; /* [seq,] hlc, origin_lsn, op, key, origin */
  if ((seen & want) != want || olen == 0 || olen > SA_NODE_ID_MAX || strlen(origin) != olen)
    return false;
  if ((it->op == SA_OP_PUT) != ((seen & 32) != 0)) return false;
  if ((seen & 128) && it->op != SA_OP_PUT) return false;
  memcpy(it->origin, origin, olen + 1);
  return true;
}

/* A whole page: {"node_id":..,"items":[..],"next_since":..,"last_lsn":..,
 * "more":..,"count":..}.  Returns true with b->items (pointing into buf)
 * and the fields set; false when the slow path must read it. */
static bool srv_fp_page(char *buf, size_t len, srv_batch *b, char *node, uint64_t *next,
                        uint64_t *last, bool *more) {
  srv_fp f = {buf, buf + len};
  memset(b, 0, sizeof *b);
  unsigned seen = 0;
  size_t cap = 0;
  bool first = true;
  if (!srv_fp_eat(&f, '{')) return false;
  while (!srv_fp_eat(&f, '}')) {
    if (!first && !srv_fp_eat(&f, ',')) goto bad;
    first = false;
    char *name, *sv;
    size_t nl, sl;
    uint64_t count;
    if (!srv_fp_str(&f, &name, &nl) || !srv_fp_eat(&f, ':')) goto bad;
    unsigned bit;
    if (!strcmp(name, "node_id")) {
      bit = 1;
      if (!srv_fp_str(&f, &sv, &sl) || sl > SA_NODE_ID_MAX || strlen(sv) != sl) goto bad;
      memcpy(node, sv, sl + 1);
    } else if (!strcmp(name, "next_since")) {
      bit = 2;
      if (!srv_fp_u64(&f, next)) goto bad;
    } else if (!strcmp(name, "last_lsn")) {
      bit = 4;
      if (!srv_fp_u64(&f, last)) goto bad;
    } else if (!strcmp(name, "more")) {
      bit = 8;
      if (!srv_fp_bool(&f, more)) goto bad;
    } else if (!strcmp(name, "count")) {
      bit = 16;
      if (!srv_fp_u64(&f, &count)) goto bad;
    } else if (!strcmp(name, "items")) {
      bit = 32;
      if (!srv_fp_eat(&f, '[')) goto bad;
      bool ifirst = true;
      while (!srv_fp_eat(&f, ']')) {
        if (!ifirst && !srv_fp_eat(&f, ',')) goto bad;
        ifirst = false;
        if (b->n == cap) {
          cap = cap ? cap * 2 : 256;
          sa_sync_item *ni = realloc(b->items, cap * sizeof *ni);
          if (!ni) goto bad;
          b->items = ni;
        }
        if (!srv_fp_item(&f, &b->items[b->n], true)) goto bad;
        b->n++;
      }
    } else {
      goto bad;
    }
    if (seen & bit) goto bad;
    seen |= bit;
  }
  srv_fp_ws(&f);
  if (f.p != f.end || (seen & 39) != 39) goto bad; /* node_id, next_since, last_lsn, items */
  if (!(seen & 8)) *more = false;
  return true;
bad:
  free(b->items);
  memset(b, 0, sizeof *b);
  return false;
}

/* ---- the pull loop --------------------------------------------------------------- */

/* Registers every learned peer id with the core: the live slots' ids (a
 * forgotten peer's no more), the count of those not identified yet, and
 * the NATS pseudo-peer.  Serialized by reg_mu, the table read under it, so
 * the last call always carries the latest table.  The core gets the two
 * calls in an order that is never less careful than the state before or
 * after: the unknown count first raised to the larger of the old and new,
 * then the ids, then the unknown count itself (an identified peer is thus
 * in the ids before it leaves the unknown count). */
static void srv_sync_register(srv_sync *s) {
  const char *ids[SRV_SYNC_MAX_PEERS + 1];
  char copy[SRV_SYNC_MAX_PEERS][SA_NODE_ID_MAX + 1];
  size_t n = 0, unknown = 0;
  unsigned discovered = 0;
  pthread_mutex_lock(&s->reg_mu);
  pthread_mutex_lock(&s->mu);
  for (size_t i = 0; i < s->n; i++) {
    const srv_peer *p = &s->peers[i];
    if (!srv_peer_live(p)) continue;
    discovered += p->discovered;
    if (!p->node_id[0]) {
      unknown++;
      continue;
    }
    bool dup = false;
    for (size_t j = 0; j < n; j++)
      dup |= strcmp(copy[j], p->node_id) == 0;
    if (dup) continue;
    snprintf(copy[n], sizeof copy[n], "%s", p->node_id);
    ids[n] = copy[n];
    n++;
  }
  pthread_mutex_unlock(&s->mu);
  if (s->extra[0]) ids[n++] = s->extra; /* the hub's publisher: the outbox waits for it too */
  if (s->discovered_count) atomic_store(s->discovered_count, discovered);
  /* A peer URL not heard from since start holds every acknowledgement back:
   * it may be a node that has not seen a delete yet (tombstones stay). */
  if (unknown > s->reg_unknown) sa_client_sync_set_unknown_peers(s->client, unknown);
  sa_error err = {0};
  int rc = sa_client_sync_set_peers(s->client, ids, n, &err);
  sa_client_sync_set_unknown_peers(s->client, unknown);
  s->reg_unknown = unknown;
  pthread_mutex_unlock(&s->reg_mu);
  if (rc != 0) {
    char q[300];
    srv_log(SRV_LOG_WARN, "sync_set_peers", "error=%s",
            srv_log_q(err.message[0] ? err.message : sa_strerror(rc), q, sizeof q));
  }
}

/* The peer answered as node `id`: checks it and, when new, takes it as the
 * peer's id and loads its cursor.  Returns 0, or -1 (refused: state set). */
static int srv_peer_identify(srv_peer *p, const char *id) {
  srv_sync *s = p->s;
  if (!id[0]) {
    srv_peer_set(p, SRV_PEER_REFUSING, "the peer does not say its node id");
    return -1;
  }
  if (strcmp(id, s->self) == 0) {
    srv_peer_set(p, SRV_PEER_REFUSING,
                 "the peer claims this node's own id %s: two nodes share one --node-id, or the "
                 "URL points back at this node",
                 id);
    return -1;
  }
  if (p->discovered && strcmp(id, p->announced) != 0) {
    srv_peer_set(p, SRV_PEER_REFUSING,
                 "the node at this URL answers as %s, but the announcement named %s", id,
                 p->announced);
    return -1;
  }
  /* One puller per node id.  A configured URL wins over a discovered one:
   * the discovered puller of the same node is forgotten (its announcements
   * are then ignored while a configured puller pulls that id). */
  pthread_mutex_lock(&s->mu);
  bool same = strcmp(p->node_id, id) == 0;
  srv_peer *other = NULL;
  for (size_t i = 0; i < s->n; i++)
    if (&s->peers[i] != p && srv_peer_live(&s->peers[i]) && strcmp(s->peers[i].node_id, id) == 0)
      other = &s->peers[i];
  char other_url[256] = "";
  bool drop_other = other && other->discovered && !p->discovered;
  if (other) snprintf(other_url, sizeof other_url, "%s", other->url);
  if (drop_other) {
    atomic_store(&other->quit, true);
    pthread_cond_broadcast(&s->cv);
  } else if (other && p->discovered) {
    atomic_store(&p->quit, true); /* a configured URL pulls it: this puller ends */
  }
  pthread_mutex_unlock(&s->mu);
  if (drop_other) {
    char q1[300], q2[100];
    srv_log(SRV_LOG_INFO, "discovery_peer_dropped", "peer=%s node_id=%s reason=%s",
            srv_log_q(other_url, q1, sizeof q1), srv_log_q(id, q2, sizeof q2),
            "configured_url_pulls_this_node");
  } else if (other_url[0]) {
    srv_peer_set(p, SRV_PEER_REFUSING, "node %s is already pulled through %s", id, other_url);
    if (p->discovered) srv_sync_register(s);
    return -1;
  }
  if (same) return 0;
  uint64_t cursor = 0, epoch = 0, noted = 0, mine = sa_client_epoch(s->client);
  sa_error err = {0};
  int rc = sa_client_sync_cursor(s->client, id, &cursor, &err);
  if (rc == 0) rc = sa_client_sync_peer_epoch(s->client, id, &epoch, &err);
  if (rc == 0) rc = sa_client_sync_peer_self_epoch(s->client, id, &noted, &err);
  /* Never noted (a new peer, or a store from before the note): noted now.
   * Noted in another epoch of this node: it was restored from a backup
   * since; the writes it made after that backup may be held by this peer,
   * whose feed leaves them out for their origin: pull them too (own=1)
   * until caught up (srv_peer_pull notes the epoch then). */
  if (rc == 0 && noted == 0) rc = sa_client_sync_peer_set_self_epoch(s->client, id, mine, &err);
  if (rc != 0) {
    srv_peer_set(p, SRV_PEER_UNREACHABLE, "cannot read the cursor of %s: %s", id,
                 err.message[0] ? err.message : sa_strerror(rc));
    return -1;
  }
  pthread_mutex_lock(&s->mu);
  snprintf(p->node_id, sizeof p->node_id, "%s", id);
  p->cursor = cursor;
  p->epoch = epoch;
  p->own = noted != 0 && noted != mine;
  pthread_mutex_unlock(&s->mu);
  srv_sync_register(s);
  if (noted != 0 && noted != mine) {
    char q[300];
    srv_log(SRV_LOG_WARN, "sync_pull_own_writes",
            "peer=%s node_id=%s cursor=%llu: this node was restored since it last caught up with "
            "the peer: its own writes held there are pulled back too",
            srv_log_q(p->url, q, sizeof q), id, (unsigned long long)cursor);
  }
  char q1[300], q2[100];
  srv_log(SRV_LOG_INFO, "sync_peer_identified", "peer=%s node_id=%s cursor=%llu",
          srv_log_q(p->url, q1, sizeof q1), srv_log_q(id, q2, sizeof q2),
          (unsigned long long)cursor);
  return 1; /* new: the caller starts over from the loaded cursor */
}

/* Applies items through the core; the state tells a refusal.  Returns 0 or
 * -1. */
static int srv_peer_apply(srv_peer *p, const sa_sync_item *items, size_t n, uint64_t cursor) {
  srv_sync *s = p->s;
  sa_sync_apply_result res;
  memset(&res, 0, sizeof res);
  sa_error err = {0};
  int rc = sa_client_sync_apply(s->client, p->node_id, items, n, cursor, &res, &err);
  const char *msg = err.message[0] ? err.message : sa_strerror(rc);
  if (rc == SA_EDRIFT) {
    pthread_mutex_lock(&s->mu);
    p->refused_drift++;
    pthread_mutex_unlock(&s->mu);
    srv_peer_set(p, SRV_PEER_REFUSING, "batch refused (clock drift): %s", msg);
    return -1;
  }
  if (rc == SA_EINVAL) {
    pthread_mutex_lock(&s->mu);
    p->refused_invalid++;
    pthread_mutex_unlock(&s->mu);
    srv_peer_set(p, SRV_PEER_REFUSING, "batch refused (invalid): %s", msg);
    return -1;
  }
  if (rc != 0) {
    srv_peer_set(p, SRV_PEER_REFUSING, "cannot apply the batch: %s", msg);
    return -1;
  }
  pthread_mutex_lock(&s->mu);
  p->ops_received += n;
  p->applied += res.applied;
  p->cursor = cursor;
  pthread_mutex_unlock(&s->mu);
  return 0;
}

/* Applies n items in chunks the core accepts (at most chunk_bytes of keys
 * and values each, cut between two LSNs where one allows it, at most
 * SRV_SYNC_SNAP_CHUNK items): every chunk but the last with the cursor
 * unchanged (mid), the last with final.  A crash between chunks re-applies
 * the first ones from the old cursor, which the rule skips (equal pairs).
 * Returns 0 or -1 (state set). */
static int srv_peer_apply_chunked(srv_peer *p, const sa_sync_item *items, size_t n, uint64_t mid,
                                  uint64_t final) {
  size_t off = 0;
  do {
    size_t m = 0, bytes = 0, cut = 0;
    while (off + m < n && m < SRV_SYNC_SNAP_CHUNK) {
      const sa_sync_item *it = &items[off + m];
      size_t sz = strlen(it->key) + it->len + 64;
      if (m && bytes + sz > p->s->chunk_bytes) break;
      bytes += sz;
      m++;
      if (off + m == n || items[off + m].seq != it->seq) cut = m; /* an LSN ends here */
    }
    if (off + m < n && cut) m = cut; /* prefer to end the chunk between two LSNs */
    bool last = off + m >= n;
    if (srv_peer_apply(p, items + off, m, last ? final : mid) != 0) return -1;
    off += m;
  } while (off < n);
  return 0;
}

/* ---- catch-up from a snapshot, streamed ------------------------------------------ *
 *
 * GET /v1/sync/snapshot is read as it arrives (libcurl's write callback)
 * and applied in chunks while it is read: memory holds the chunk being
 * built (at most chunk_bytes of item text, SRV_SYNC_SNAP_CHUNK items) and
 * the item being received, never the whole snapshot.  The document's
 * members come in a fixed order -- {"node_id":..,"resume":..,"items":[..],
 * "dropped":[..],"count":..,"dropped_count":..} -- so each part is parsed
 * once its bytes are in: the head up to the items' '[', then each item
 * once its closing '}' is (items are flat objects), then the tail.  Items
 * are decoded in place (srv_fp_item) and point into the buffer until their
 * chunk is applied; one the fast reader does not take goes through jansson
 * from a copy of its text.  Every chunk is applied with the cursor as it
 * was; the last one, once the tail is in and the counts match, moves it to
 * the snapshot's resume: a snapshot cut short (the peer went away, a stop)
 * moves nothing, and the next catch-up applies the same chunks again (the
 * rule skips what is held). */

enum { SNAP_HEAD, SNAP_ITEMS, SNAP_MID, SNAP_DROPPED, SNAP_TAIL, SNAP_DONE };
/* failures: malformed (counted refused_invalid), refused (an older peer),
 * and those whose state is already set (identify, an apply) */
enum { SNAP_OK = 0, SNAP_BAD, SNAP_REFUSED, SNAP_STATE_SET };

typedef struct srv_snap {
  srv_peer *p;
  CURL *curl;
  long status;      /* 0 until the first body bytes */
  srv_buf other;    /* a non-200 answer's body (bounded) */
  char *buf;        /* received bytes from the first one still needed */
  size_t len, cap;  /* ... their count, the room */
  size_t pos;       /* parsed up to here */
  int part;         /* SNAP_* */
  bool any;         /* an item was read in the current array */
  bool expect_item; /* ... and the next thing is an item ('{') */
  size_t scan_at;   /* srv_snap_end resumes here (0: from pos) */
  bool scan_str, scan_esc;
  uint64_t resume, cur;
  uint64_t n_items, n_dropped;
  /* the chunk being built */
  srv_batch pend;
  size_t icap, bcap, pend_bytes;
  json_t **js; /* items read by jansson: kept until their chunk is applied */
  size_t njs, jcap;
  char *scratch; /* a copy of the item text for jansson */
  size_t scap;
  size_t max_buf; /* bound on buf: a chunk and an item */
  int fail;       /* SNAP_* */
  char why[200];
} srv_snap;

static void srv_snap_fail(srv_snap *x, int kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void srv_snap_fail(srv_snap *x, int kind, const char *fmt, ...) {
  if (x->fail) return;
  x->fail = kind;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(x->why, sizeof x->why, fmt, ap);
  va_end(ap);
}

static void srv_snap_clear(srv_snap *x) {
  for (size_t i = 0; i < x->pend.nbufs; i++)
    free(x->pend.bufs[i]);
  for (size_t i = 0; i < x->njs; i++)
    json_decref(x->js[i]);
  x->pend.n = x->pend.nbufs = x->njs = x->pend_bytes = 0;
}

/* Applies the chunk built so far with cursor (the state says why on a
 * failure), then drops the bytes it pointed into. */
/* Drops the bytes before pos (nothing may point into them). */
static void srv_snap_compact(srv_snap *x) {
  memmove(x->buf, x->buf + x->pos, x->len - x->pos);
  x->len -= x->pos;
  if (x->scan_at) x->scan_at -= x->pos;
  x->pos = 0;
}

static bool srv_snap_flush(srv_snap *x, uint64_t cursor) {
  if (x->fail) return false;
  if (srv_peer_apply(x->p, x->pend.items, x->pend.n, cursor) != 0) {
    srv_snap_fail(x, SNAP_STATE_SET, "apply");
    return false;
  }
  srv_snap_clear(x);
  srv_snap_compact(x); /* nothing points into buf now */
  return true;
}

/* Where the unit starting at pos ends: the first `close` outside strings
 * (the item's '}', the head's '['), or 0 when it is not all in yet (the
 * scan resumes where it stopped when more bytes come: a large item is
 * scanned once, not once per piece).  -1 when a nested '{' or '[' comes
 * first inside an item (flat objects only). */
static long srv_snap_end(srv_snap *x, char close, bool flat) {
  size_t i = x->scan_at > x->pos ? x->scan_at : x->pos;
  bool str = x->scan_at > x->pos && x->scan_str, esc = x->scan_at > x->pos && x->scan_esc;
  for (; i < x->len; i++) {
    char c = x->buf[i];
    if (str) {
      if (esc)
        esc = false;
      else if (c == '\\')
        esc = true;
      else if (c == '"')
        str = false;
    } else if (c == '"') {
      str = true;
    } else if (c == close) {
      x->scan_at = 0;
      return (long)i;
    } else if (flat && i > x->pos && (c == '{' || c == '[')) {
      return -1;
    }
  }
  x->scan_at = x->len;
  x->scan_str = str;
  x->scan_esc = esc;
  return 0;
}

static bool srv_snap_ws(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Expects the member name `name` then ':' at f. */
static bool srv_fp_name(srv_fp *f, const char *name) {
  char *n;
  size_t nl;
  return srv_fp_str(f, &n, &nl) && !strcmp(n, name) && srv_fp_eat(f, ':');
}

/* Reads the item at pos..end (its '}'), into the chunk (after applying the
 * chunk when it is full).  false on a failure (x->fail set). */
static bool srv_snap_item(srv_snap *x, size_t end) {
  size_t tlen = end + 1 - x->pos;
  if (x->pend.n &&
      (x->pend.n >= SRV_SYNC_SNAP_CHUNK || x->pend_bytes + tlen > x->p->s->chunk_bytes)) {
    if (!srv_snap_flush(x, x->cur)) return false;
    end = x->pos + tlen - 1; /* the item moved to buf's start */
  }
  if (x->pend.n == x->icap) {
    size_t cap = x->icap ? 2 * x->icap : 64;
    sa_sync_item *ni = realloc(x->pend.items, cap * sizeof *ni);
    if (!ni) return srv_snap_fail(x, SNAP_BAD, "out of memory"), false;
    x->pend.items = ni;
    x->icap = cap;
  }
  if (x->pend.nbufs + 2 > x->bcap) {
    size_t cap = x->bcap ? 2 * x->bcap : 64;
    char **nb = realloc(x->pend.bufs, cap * sizeof *nb);
    if (!nb) return srv_snap_fail(x, SNAP_BAD, "out of memory"), false;
    x->pend.bufs = nb;
    x->bcap = cap;
  }
  if (tlen + 1 > x->scap) {
    char *ns = realloc(x->scratch, tlen + 1);
    if (!ns) return srv_snap_fail(x, SNAP_BAD, "out of memory"), false;
    x->scratch = ns;
    x->scap = tlen + 1;
  }
  char *text = x->buf + x->pos;
  memcpy(x->scratch, text, tlen); /* the fast reader decodes in place */
  x->scratch[tlen] = '\0';
  sa_sync_item *it = &x->pend.items[x->pend.n];
  srv_fp f = {text, text + tlen};
  if (!srv_fp_item(&f, it, false) || f.p != text + tlen) {
    if (x->njs == x->jcap) {
      size_t cap = x->jcap ? 2 * x->jcap : 16;
      json_t **nj = realloc(x->js, cap * sizeof *nj);
      if (!nj) return srv_snap_fail(x, SNAP_BAD, "out of memory"), false;
      x->js = nj;
      x->jcap = cap;
    }
    json_error_t je;
    json_t *o = json_loadb(x->scratch, tlen, 0, &je);
    const char *bad = o ? srv_item_json(&x->pend, o, false, it) : je.text;
    if (o) x->js[x->njs++] = o;
    if (bad) {
      return srv_snap_fail(x, SNAP_BAD, "malformed snapshot: %s %llu: %s",
                           x->part == SNAP_ITEMS ? "item" : "dropped item",
                           (unsigned long long)(x->part == SNAP_ITEMS ? x->n_items : x->n_dropped),
                           bad),
             false;
    }
  }
  if (x->part == SNAP_DROPPED && it->op != SA_OP_DELETE)
    return srv_snap_fail(x, SNAP_BAD, "malformed snapshot: dropped item %llu is not a delete",
                         (unsigned long long)x->n_dropped),
           false;
  x->pend.n++;
  x->pend_bytes += tlen;
  if (x->part == SNAP_ITEMS)
    x->n_items++;
  else
    x->n_dropped++;
  x->pos = end + 1;
  x->any = true;
  return true;
}

/* Parses what the buffer holds.  false on a failure (x->fail set). */
static bool srv_snap_parse(srv_snap *x) {
  for (;;) {
    while (x->pos < x->len && srv_snap_ws(x->buf[x->pos]))
      x->pos++;
    if (x->pos == x->len) return true;
    srv_fp f = {x->buf + x->pos, x->buf + x->len};
    long end;
    switch (x->part) {
    case SNAP_HEAD: { /* {"node_id":ID,"resume":N,"items":[ */
      if ((end = srv_snap_end(x, '[', false)) == 0) {
        if (x->len - x->pos > 4096)
          return srv_snap_fail(x, SNAP_BAD, "malformed snapshot head"), false;
        return true;
      }
      f.end = x->buf + end + 1;
      char *id, *name;
      size_t il, nl;
      if (!srv_fp_eat(&f, '{') || !srv_fp_name(&f, "node_id") || !srv_fp_str(&f, &id, &il) ||
          il == 0 || il > SA_NODE_ID_MAX || strlen(id) != il || !srv_fp_eat(&f, ',') ||
          !srv_fp_str(&f, &name, &nl) || !srv_fp_eat(&f, ':'))
        return srv_snap_fail(x, SNAP_BAD, "malformed snapshot head"), false;
      if (!strcmp(name, "items")) /* the format before the per-key records */
        return srv_snap_fail(x, SNAP_REFUSED,
                             "snapshot: the peer runs an older build (a node-wide horizon_hlc, "
                             "no per-key \"dropped\" records): upgrade it to catch up from it"),
               false;
      if (strcmp(name, "resume") || !srv_fp_u64(&f, &x->resume) || !srv_fp_eat(&f, ',') ||
          !srv_fp_name(&f, "items") || !srv_fp_eat(&f, '[') || f.p != f.end)
        return srv_snap_fail(x, SNAP_BAD, "malformed snapshot head"), false;
      if (srv_peer_identify(x->p, id) < 0)
        return srv_snap_fail(x, SNAP_STATE_SET, "identify"), false;
      x->pos = (size_t)end + 1;
      x->part = SNAP_ITEMS;
      x->any = x->expect_item = false;
      break;
    }
    case SNAP_ITEMS:
    case SNAP_DROPPED:
      if (!x->expect_item) { /* ']', or ',' then an item (the first: an item) */
        if (x->buf[x->pos] == ']') {
          x->pos++;
          x->part = x->part == SNAP_ITEMS ? SNAP_MID : SNAP_TAIL;
        } else if (x->any && x->buf[x->pos] != ',') {
          return srv_snap_fail(x, SNAP_BAD, "malformed snapshot: no ',' between items"), false;
        } else {
          x->pos += x->any; /* the ',' */
          x->expect_item = true;
        }
        break;
      }
      if (x->buf[x->pos] != '{')
        return srv_snap_fail(x, SNAP_BAD, "malformed snapshot: an item is not an object"), false;
      if ((end = srv_snap_end(x, '}', true)) < 0)
        return srv_snap_fail(x, SNAP_BAD, "malformed snapshot: a nested value in an item"), false;
      if (end == 0) return true; /* the rest of the item comes later */
      if (!srv_snap_item(x, (size_t)end)) return false;
      x->expect_item = false;
      break;
    case SNAP_MID: /* ,"dropped":[ */
      if ((end = srv_snap_end(x, '[', false)) == 0) {
        if (x->len - x->pos > 64) return srv_snap_fail(x, SNAP_BAD, "malformed snapshot"), false;
        return true;
      }
      f.end = x->buf + end + 1;
      if (!srv_fp_eat(&f, ',') || !srv_fp_name(&f, "dropped") || !srv_fp_eat(&f, '[') ||
          f.p != f.end)
        return srv_snap_fail(x, SNAP_BAD, "malformed snapshot: no \"dropped\" after the items"),
               false;
      x->pos = (size_t)end + 1;
      x->part = SNAP_DROPPED;
      x->any = x->expect_item = false;
      break;
    case SNAP_TAIL: { /* ,"count":N,"dropped_count":N} */
      if ((end = srv_snap_end(x, '}', false)) == 0) {
        if (x->len - x->pos > 128) return srv_snap_fail(x, SNAP_BAD, "malformed snapshot"), false;
        return true;
      }
      f.end = x->buf + end + 1;
      uint64_t n, nd;
      if (!srv_fp_eat(&f, ',') || !srv_fp_name(&f, "count") || !srv_fp_u64(&f, &n) ||
          !srv_fp_eat(&f, ',') || !srv_fp_name(&f, "dropped_count") || !srv_fp_u64(&f, &nd) ||
          !srv_fp_eat(&f, '}') || f.p != f.end)
        return srv_snap_fail(x, SNAP_BAD, "malformed snapshot tail"), false;
      if (n != x->n_items || nd != x->n_dropped)
        return srv_snap_fail(x, SNAP_BAD,
                             "malformed snapshot: it says %llu items and %llu dropped, %llu and "
                             "%llu came",
                             (unsigned long long)n, (unsigned long long)nd,
                             (unsigned long long)x->n_items, (unsigned long long)x->n_dropped),
               false;
      x->pos = (size_t)end + 1;
      x->part = SNAP_DONE;
      break;
    }
    default: /* SNAP_DONE: only whitespace may follow */
      return srv_snap_fail(x, SNAP_BAD, "malformed snapshot: bytes after its end"), false;
    }
  }
}

static size_t srv_snap_write(char *data, size_t size, size_t nmemb, void *cls) {
  srv_snap *x = cls;
  size_t n = size * nmemb;
  if (!x->status) curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &x->status);
  if (x->status != 200) { /* an error answer: kept (bounded) for the state */
    size_t k = x->other.len + n < 65536 ? n : 65536 - x->other.len;
    return srv_sync_write_cb(data, 1, k, &x->other) == k ? n : 0;
  }
  if (x->fail) return 0;
  if (x->len + n > x->cap) {
    if (x->pos && !x->pend.n) { /* nothing points into buf: drop what was read */
      srv_snap_compact(x);
    } else if (x->pend.n && !srv_snap_flush(x, x->cur)) {
      return 0;
    }
  }
  if (x->len + n > x->cap) {
    size_t cap = x->cap ? x->cap : 65536;
    while (cap < x->len + n)
      cap *= 2;
    if (cap > x->max_buf) {
      srv_snap_fail(x, SNAP_BAD, "snapshot: an item of more than %zu bytes", x->max_buf / 2);
      return 0;
    }
    char *nb = realloc(x->buf, cap + 1);
    if (!nb) {
      srv_snap_fail(x, SNAP_BAD, "out of memory reading a snapshot");
      return 0;
    }
    x->buf = nb;
    x->cap = cap;
  }
  memcpy(x->buf + x->len, data, n);
  x->len += n;
  x->buf[x->len] = '\0';
  return srv_snap_parse(x) ? n : 0;
}

/* 410 from the peer: catch up from its snapshot, streamed.  Returns 0 or -1
 * (the state says why). */
static int srv_peer_catch_up(srv_peer *p) {
  srv_sync *s = p->s;
  srv_peer_set(p, SRV_PEER_CATCHING_UP, NULL);
  srv_snap x;
  memset(&x, 0, sizeof x);
  x.p = p;
  x.curl = p->curl;
  x.max_buf = 4 * s->chunk_bytes + (1u << 20);
  pthread_mutex_lock(&s->mu);
  x.cur = p->cursor;
  p->catchups++;
  pthread_mutex_unlock(&s->mu);
  char url[1024];
  snprintf(url, sizeof url, "%s/v1/sync/snapshot?node=%s", p->url, s->self);
  CURL *c = p->curl;
  struct curl_slist *hl = srv_sync_curl_prepare(p, url);
  /* no bound on the whole: a large snapshot takes its time; a peer that
   * stalls mid-answer is left after 60 s without a byte */
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, srv_snap_write);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &x);
  CURLcode cr = curl_easy_perform(c);
  curl_slist_free_all(hl);
  if (!x.status) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &x.status);
  int rc = -1;
  if (x.fail == SNAP_BAD) {
    pthread_mutex_lock(&s->mu);
    p->refused_invalid++;
    pthread_mutex_unlock(&s->mu);
    srv_peer_set(p, SRV_PEER_REFUSING, "%s", x.why);
  } else if (x.fail == SNAP_REFUSED) {
    srv_peer_set(p, SRV_PEER_REFUSING, "%s", x.why);
  } else if (x.fail) {
    /* SNAP_STATE_SET: refused by identify, or an apply failed: the state says why */
  } else if (cr != CURLE_OK) {
    if (!atomic_load(&s->stop))
      srv_peer_set(p, SRV_PEER_UNREACHABLE, "snapshot: %s", curl_easy_strerror(cr));
  } else if (x.status != 200) {
    srv_peer_set(p, SRV_PEER_UNREACHABLE, "snapshot: HTTP %ld", x.status);
  } else if (x.part != SNAP_DONE) {
    srv_snap_fail(&x, SNAP_BAD, "snapshot: the answer ended before the snapshot did");
    pthread_mutex_lock(&s->mu);
    p->refused_invalid++;
    pthread_mutex_unlock(&s->mu);
    srv_peer_set(p, SRV_PEER_REFUSING, "%s", x.why);
  } else if (srv_snap_flush(&x, x.resume)) { /* the last chunk moves the cursor */
    rc = 0;
  }
  char q[300];
  srv_log(SRV_LOG_INFO, "sync_catch_up", "peer=%s items=%llu dropped=%llu resume=%llu ok=%s",
          srv_log_q(p->url, q, sizeof q), (unsigned long long)x.n_items,
          (unsigned long long)x.n_dropped, (unsigned long long)x.resume,
          rc == 0 ? "true" : "false");
  srv_snap_clear(&x);
  free(x.pend.items);
  free(x.pend.bufs);
  free(x.js);
  free(x.scratch);
  free(x.buf);
  free(x.other.p);
  return rc;
}

/* The first answer that says the peer's epoch while none is stored: it is
 * kept beside the cursor from now on.  Returns 0 or -1 (state set). */
static int srv_peer_adopt_epoch(srv_peer *p, uint64_t epoch) {
  srv_sync *s = p->s;
  sa_error err = {0};
  int rc = sa_client_sync_peer_set_epoch(s->client, p->node_id, epoch, false, &err);
  if (rc != 0) {
    srv_peer_set(p, SRV_PEER_UNREACHABLE, "cannot store the epoch of %s: %s", p->node_id,
                 err.message[0] ? err.message : sa_strerror(rc));
    return -1;
  }
  pthread_mutex_lock(&s->mu);
  p->epoch = epoch;
  pthread_mutex_unlock(&s->mu);
  return 0;
}

/* Caught up with the peer's feed, own writes included, after a restore of
 * this node: its epoch is noted for the peer and pulls leave them out again.
 * Returns 0 or -1 (state set). */
static int srv_peer_own_done(srv_peer *p) {
  srv_sync *s = p->s;
  sa_error err = {0};
  int rc =
      sa_client_sync_peer_set_self_epoch(s->client, p->node_id, sa_client_epoch(s->client), &err);
  if (rc != 0) {
    srv_peer_set(p, SRV_PEER_UNREACHABLE, "cannot note this node's epoch for %s: %s", p->node_id,
                 err.message[0] ? err.message : sa_strerror(rc));
    return -1;
  }
  pthread_mutex_lock(&s->mu);
  p->own = false;
  pthread_mutex_unlock(&s->mu);
  char q[300];
  srv_log(SRV_LOG_INFO, "sync_pull_own_writes_done", "peer=%s node_id=%s",
          srv_log_q(p->url, q, sizeof q), p->node_id);
  return 0;
}

/* 410 "epoch": the peer was restored from a backup (or recreated) since
 * the cursor was read, and numbers its changes again from the backup's
 * LSN.  The cursor goes back to 0 with the new epoch, durably, and the
 * pull starts over (the whole feed, or a snapshot when the peer's floor
 * is above 0); what this node already holds is skipped by the rule.
 * Returns 1 (pull again) or -1 (state set). */
static int srv_peer_new_epoch(srv_peer *p, uint64_t epoch) {
  srv_sync *s = p->s;
  if (!epoch) {
    pthread_mutex_lock(&s->mu);
    p->refused_invalid++;
    pthread_mutex_unlock(&s->mu);
    srv_peer_set(p, SRV_PEER_REFUSING, "410 epoch without a valid X-Softadastra-Epoch");
    return -1;
  }
  sa_error err = {0};
  int rc = sa_client_sync_peer_set_epoch(s->client, p->node_id, epoch, true, &err);
  if (rc != 0) {
    srv_peer_set(p, SRV_PEER_UNREACHABLE, "cannot reset the cursor of %s: %s", p->node_id,
                 err.message[0] ? err.message : sa_strerror(rc));
    return -1;
  }
  pthread_mutex_lock(&s->mu);
  uint64_t old = p->epoch, cursor = p->cursor;
  p->epoch = epoch;
  p->cursor = 0;
  pthread_mutex_unlock(&s->mu);
  char q[300];
  srv_log(SRV_LOG_WARN, "sync_peer_new_epoch",
          "peer=%s node_id=%s old_epoch=%016llx epoch=%016llx old_cursor=%llu: the peer was "
          "restored or recreated; pulling it again from 0",
          srv_log_q(p->url, q, sizeof q), p->node_id, (unsigned long long)old,
          (unsigned long long)epoch, (unsigned long long)cursor);
  return 1;
}

/* One pull.  Returns 2 after a page of items with nothing more waiting (the
 * linger may pass before the next), 1 when more is waiting (pull again at
 * once), 0 after a pull that moved nothing, -1 on a failure (back off). */
static int srv_peer_pull(srv_peer *p) {
  srv_sync *s = p->s;
  pthread_mutex_lock(&s->mu);
  bool known = p->node_id[0] != '\0';
  uint64_t cursor = p->cursor, epoch = p->epoch;
  bool own = p->own;
  pthread_mutex_unlock(&s->mu);
  char path[320], why[200], ep[32] = "";
  /* Only a known epoch is sent: formatting an absent one as 16 zeros
   * glued them to the acked position (acked=4 went out as 4 followed by
   * 16 zeros, which the peer took as acknowledging everything). */
  if (epoch) snprintf(ep, sizeof ep, "&epoch=%.16llx", (unsigned long long)epoch);
  if (known)
    snprintf(path, sizeof path, "/v1/sync/ops?since=%llu&limit=%u&wait=%u&node=%s&acked=%llu%s%s",
             (unsigned long long)cursor, s->limit, s->wait_ms, s->self, (unsigned long long)cursor,
             ep, own ? "&own=1" : "");
  else /* first contact: who is there? */
    snprintf(path, sizeof path, "/v1/sync/ops?since=0&limit=1&node=%s", s->self);
  long status = 0;
  srv_buf buf;
  srv_hdrs h;
  if (srv_sync_get(p, path, s->wait_ms + 15000, &status, &buf, &h, why, sizeof why) != 0) {
    if (!srv_peer_stopping(p)) srv_peer_set(p, SRV_PEER_UNREACHABLE, "%s", why);
    return -1;
  }
  pthread_mutex_lock(&s->mu);
  p->last_contact_ms = srv_sync_unix_ms();
  pthread_mutex_unlock(&s->mu);
  int rc = -1;
  srv_batch b;
  memset(&b, 0, sizeof b);
  uint64_t next = 0, last = 0;
  bool more = false, fast = false;
  char fnode[SA_NODE_ID_MAX + 1] = "";
  char *copy = NULL; /* the fast reader writes into buf.p: the slow path reads a copy */
  if (status == 200 && buf.p && (copy = malloc(buf.len + 1))) {
    memcpy(copy, buf.p, buf.len + 1);
    fast = srv_fp_page(buf.p, buf.len, &b, fnode, &next, &last, &more);
  }
  json_error_t je;
  json_t *j = NULL;
  if (!fast) {
    j = json_loadb(copy ? copy : buf.p ? buf.p : "", buf.len, 0, &je);
    more = json_is_true(json_object_get(j, "more"));
  }
  const char *code = json_string_value(json_object_get(json_object_get(j, "error"), "code"));
  const char *reason = json_string_value(json_object_get(json_object_get(j, "error"), "reason"));
  if (status == 410 && reason && strcmp(reason, "epoch") == 0) {
    if (known && srv_peer_identify(p, h.node) == 0) rc = srv_peer_new_epoch(p, h.epoch);
  } else if (status == 410) {
    if (srv_peer_identify(p, h.node) >= 0) rc = srv_peer_catch_up(p) == 0 ? 1 : -1;
  } else if (status == 400 && code && strcmp(code, "same_node_id") == 0) {
    srv_peer_set(p, SRV_PEER_REFUSING, "the peer refuses this node: it has the same node id %s",
                 s->self);
  } else if (status == 401 || status == 403) {
    srv_peer_set(p, SRV_PEER_REFUSING,
                 "the peer refuses this node's token (HTTP %ld): set "
                 "peer_token to the peer's auth_token",
                 status);
  } else if (status != 200) {
    const char *msg = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
    srv_peer_set(p, SRV_PEER_UNREACHABLE, "HTTP %ld%s%s%s%.200s", status, code ? " " : "",
                 code ? code : "", msg ? ": " : "", msg ? msg : "");
  } else if (!fast &&
             (!j || !srv_json_u64(j, "next_since", &next) || !srv_json_u64(j, "last_lsn", &last) ||
              !json_is_string(json_object_get(j, "node_id")))) {
    pthread_mutex_lock(&s->mu);
    p->refused_invalid++;
    pthread_mutex_unlock(&s->mu);
    srv_peer_set(p, SRV_PEER_REFUSING, "malformed answer%s%s",
                 j ? "" : ": not JSON: ", j ? "" : je.text);
  } else {
    int id = srv_peer_identify(p, fast ? fnode : json_string_value(json_object_get(j, "node_id")));
    if (id == 1 || (id == 0 && !known)) {
      pthread_mutex_lock(&s->mu);
      p->last_error[0] = '\0';
      pthread_mutex_unlock(&s->mu);
      srv_peer_set(p, SRV_PEER_CONNECTED, NULL); /* it answered: connected while we long-poll */
      rc = 1; /* learned who it is: pull again from its stored cursor */
    } else if (id == 0) {
      if (!fast && srv_batch_parse(json_object_get(j, "items"), true, &b, why, sizeof why) != 0) {
        pthread_mutex_lock(&s->mu);
        p->refused_invalid++;
        pthread_mutex_unlock(&s->mu);
        srv_peer_set(p, SRV_PEER_REFUSING, "%s", why);
      } else if (next < cursor) {
        pthread_mutex_lock(&s->mu);
        p->refused_invalid++;
        pthread_mutex_unlock(&s->mu);
        srv_peer_set(p, SRV_PEER_REFUSING, "malformed answer: next_since %llu is below since %llu",
                     (unsigned long long)next, (unsigned long long)cursor);
      } else if ((b.n || next != cursor) &&
                 srv_peer_apply_chunked(p, b.items, b.n, cursor, next) != 0) {
        /* refused: state set */
      } else if (!epoch && h.epoch && srv_peer_adopt_epoch(p, h.epoch) != 0) {
        /* state set */
      } else if (own && next >= last && !more && srv_peer_own_done(p) != 0) {
        /* state set */
      } else {
        uint64_t now = srv_sync_unix_ms();
        pthread_mutex_lock(&s->mu);
        p->cursor = next;
        p->last_lsn = last;
        if (next >= last)
          p->behind_since_ms = 0;
        else if (!p->behind_since_ms)
          p->behind_since_ms = now;
        p->last_error[0] = '\0';
        pthread_mutex_unlock(&s->mu);
        srv_peer_set(p, SRV_PEER_CONNECTED, NULL);
        rc = more ? 1 : b.n ? 2 : 0;
      }
    }
  }
  srv_batch_free(&b); /* fast: items only (they point into buf.p) */
  json_decref(j);
  free(copy);
  free(buf.p);
  return rc;
}

static void *srv_peer_main(void *arg) {
  srv_peer *p = arg;
  srv_sync *s = p->s;
  unsigned seed = (unsigned)(srv_sync_unix_ms() ^ (uintptr_t)p);
  uint32_t backoff = 0;
  while (!srv_peer_stopping(p)) {
    int rc = srv_peer_pull(p);
    if (rc >= 0) {
      backoff = 0;
      /* Linger: under load the source's long-poll answers at each of its
       * store commits (every 10 ms, or store_commit_busy_ms when busy),
       * and each page costs this node a durable apply (a WAL record, its
       * fdatasync, a store commit) and both nodes a round trip.  A pause
       * after a partial page lets the next one gather more changes; a full
       * page (more) is pulled at once, and a quiet source's first change
       * is not delayed (the long-poll answers it as it comes). */
      if (rc == 2 && s->linger_ms && !srv_sync_nap(p, s->linger_ms, &backoff)) break;
      continue;
    }
    if (!srv_sync_nap(p, srv_sync_backoff(&backoff, &seed), &backoff)) break;
  }
  atomic_store(&p->exited, true);
  return NULL;
}

/* ---- life cycle ------------------------------------------------------------------- */

/* Prepares slot p for url (s->mu held or no thread running yet). */
static void srv_peer_init(srv_sync *s, srv_peer *p, const char *url, CURL *curl) {
  memset(p->url, 0, sizeof *p - offsetof(srv_peer, url));
  p->s = s;
  snprintf(p->url, sizeof p->url, "%s", url);
  size_t l = strlen(p->url);
  while (l && p->url[l - 1] == '/')
    p->url[--l] = '\0';
  atomic_init(&p->quit, false);
  atomic_init(&p->exited, false);
  snprintf(p->last_error, sizeof p->last_error, "not contacted yet");
  p->curl = curl;
  p->in_use = true;
}

int srv_sync_start(const srv_sync_config *cfg, srv_sync **out) {
  *out = NULL;
  if (cfg->n_peers > SRV_SYNC_MAX_PEERS) return EINVAL;
  curl_global_init(CURL_GLOBAL_DEFAULT); /* before any puller thread; idempotent */
  srv_sync *s = calloc(1, sizeof *s);
  if (!s) return ENOMEM;
  s->client = cfg->client;
  s->discovered_count = cfg->discovered_count;
  snprintf(s->self, sizeof s->self, "%s", cfg->self_id);
  snprintf(s->extra, sizeof s->extra, "%s", cfg->extra_peer ? cfg->extra_peer : "");
  s->wait_ms = cfg->wait_ms ? cfg->wait_ms : SRV_SYNC_WAIT_MS;
  s->limit = cfg->limit ? cfg->limit : SRV_SYNC_LIMIT;
  s->linger_ms = cfg->linger_ms;
  uint32_t mb = cfg->max_batch_bytes ? cfg->max_batch_bytes : SA_DEFAULT_MAX_BATCH_BYTES;
  s->chunk_bytes = mb / 2 > 4096 ? mb / 2 : 4096;
  if (cfg->peer_token && cfg->peer_token[0] &&
      asprintf(&s->auth, "Authorization: Bearer %s", cfg->peer_token) < 0) {
    free(s);
    return ENOMEM;
  }
  atomic_init(&s->stop, false);
  pthread_mutex_init(&s->mu, NULL);
  pthread_mutex_init(&s->reg_mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&s->cv, &ca);
  pthread_condattr_destroy(&ca);
  s->n = cfg->n_peers;
  for (size_t i = 0; i < s->n; i++) {
    CURL *c = curl_easy_init();
    srv_peer_init(s, &s->peers[i], cfg->peers[i], c);
    if (!c) {
      srv_sync_stop(s);
      srv_sync_free(s);
      return ENOMEM;
    }
  }
  srv_sync_register(s); /* every peer unknown yet: acknowledgements wait for them */
  for (size_t i = 0; i < s->n; i++) {
    srv_peer *p = &s->peers[i];
    if (pthread_create(&p->thread, NULL, srv_peer_main, p) != 0) {
      srv_sync_stop(s);
      srv_sync_free(s);
      return EAGAIN;
    }
    pthread_setname_np(p->thread, "sa-pull");
    p->started = true;
  }
  *out = s;
  return 0;
}

void srv_sync_stop(srv_sync *s) {
  if (!s) return;
  pthread_mutex_lock(&s->mu);
  atomic_store(&s->stop, true);
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
  for (size_t i = 0; i < s->n; i++)
    if (s->peers[i].started) {
      pthread_join(s->peers[i].thread, NULL);
      s->peers[i].started = false;
    }
}

void srv_sync_free(srv_sync *s) {
  if (!s) return;
  for (size_t i = 0; i < s->n; i++)
    if (s->peers[i].curl) curl_easy_cleanup(s->peers[i].curl);
  pthread_cond_destroy(&s->cv);
  pthread_mutex_destroy(&s->reg_mu);
  pthread_mutex_destroy(&s->mu);
  free(s->auth);
  free(s);
}

/* ---- discovered peers ------------------------------------------------------------- */

srv_sync_found srv_sync_discovered(srv_sync *s, const char *id, const char *url_in) {
  if (!s || atomic_load(&s->stop)) return SRV_SYNC_FOUND_STOPPING;
  char url[256];
  snprintf(url, sizeof url, "%s", url_in);
  size_t l = strlen(url);
  while (l && url[l - 1] == '/')
    url[--l] = '\0';
  uint64_t now = srv_sync_mono_ms(), unow = srv_sync_unix_ms();
  srv_sync_found res = SRV_SYNC_FOUND_NEW;
  srv_peer *p = NULL;
  pthread_mutex_lock(&s->mu);
  for (size_t i = 0; i < s->n && res == SRV_SYNC_FOUND_NEW; i++) {
    srv_peer *q = &s->peers[i];
    if (!srv_peer_live(q)) continue;
    if (q->discovered && !strcmp(q->announced, id)) {
      if (!strcmp(q->url, url)) {
        q->heard_ms = now;
        q->heard_unix_ms = unow;
        res = SRV_SYNC_FOUND_KNOWN;
      } else { /* the node moved (a restart on another port): pull the new URL */
        atomic_store(&q->quit, true);
        pthread_cond_broadcast(&s->cv);
        res = SRV_SYNC_FOUND_MOVED;
      }
    } else if (!q->discovered && (!strcmp(q->node_id, id) || !strcmp(q->url, url))) {
      res = SRV_SYNC_FOUND_CONFIGURED;
    } else if (!strcmp(q->url, url)) {
      res = SRV_SYNC_FOUND_CONFLICT; /* another id announced this URL first */
    }
  }
  if (res == SRV_SYNC_FOUND_NEW || res == SRV_SYNC_FOUND_MOVED) {
    for (size_t i = 0; i < SRV_SYNC_MAX_PEERS && !p; i++)
      if (!s->peers[i].in_use) p = &s->peers[i];
    if (!p) {
      res = res == SRV_SYNC_FOUND_MOVED ? SRV_SYNC_FOUND_MOVED_FULL : SRV_SYNC_FOUND_FULL;
    } else {
      CURL *c = curl_easy_init();
      if (!c) {
        p = NULL;
        res = SRV_SYNC_FOUND_ERROR;
      } else {
        srv_peer_init(s, p, url, c);
        p->discovered = true;
        snprintf(p->announced, sizeof p->announced, "%s", id);
        p->heard_ms = now;
        p->heard_unix_ms = unow;
        size_t idx = (size_t)(p - s->peers);
        if (idx + 1 > s->n) s->n = idx + 1;
        s->found++;
      }
    }
  }
  pthread_mutex_unlock(&s->mu);
  if (!p) {
    if (res == SRV_SYNC_FOUND_MOVED_FULL) srv_sync_register(s);
    return res;
  }
  srv_sync_register(s); /* an unknown peer more: acknowledgements wait for it */
  if (pthread_create(&p->thread, NULL, srv_peer_main, p) != 0) {
    pthread_mutex_lock(&s->mu);
    curl_easy_cleanup(p->curl);
    p->curl = NULL;
    p->in_use = false;
    pthread_mutex_unlock(&s->mu);
    srv_sync_register(s);
    return SRV_SYNC_FOUND_ERROR;
  }
  pthread_setname_np(p->thread, "sa-pull");
  pthread_mutex_lock(&s->mu);
  p->started = true;
  pthread_mutex_unlock(&s->mu);
  return res;
}

size_t srv_sync_expire(srv_sync *s, uint64_t timeout_ms) {
  if (!s) return 0;
  uint64_t now = srv_sync_mono_ms();
  size_t forgotten = 0, nj = 0;
  srv_peer *join[SRV_SYNC_MAX_PEERS];
  struct {
    char url[256], id[SA_NODE_ID_MAX + 1];
    uint64_t silent;
  } gone[SRV_SYNC_MAX_PEERS];
  pthread_mutex_lock(&s->mu);
  for (size_t i = 0; i < s->n; i++) {
    srv_peer *p = &s->peers[i];
    if (srv_peer_live(p) && p->discovered && now - p->heard_ms > timeout_ms) {
      atomic_store(&p->quit, true);
      snprintf(gone[forgotten].url, sizeof gone[forgotten].url, "%s", p->url);
      snprintf(gone[forgotten].id, sizeof gone[forgotten].id, "%s", p->announced);
      gone[forgotten].silent = now - p->heard_ms;
      forgotten++;
      s->forgotten++;
    }
    if (p->in_use && p->started && atomic_load(&p->quit) && atomic_load(&p->exited)) join[nj++] = p;
  }
  if (forgotten) pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
  for (size_t i = 0; i < forgotten; i++) {
    char q1[300], q2[100];
    srv_log(SRV_LOG_INFO, "discovery_peer_forgotten", "peer=%s node_id=%s silent_ms=%llu",
            srv_log_q(gone[i].url, q1, sizeof q1), srv_log_q(gone[i].id, q2, sizeof q2),
            (unsigned long long)gone[i].silent);
  }
  if (forgotten) srv_sync_register(s); /* it no longer holds acknowledgements back */
  for (size_t i = 0; i < nj; i++) {    /* ended already: the join does not wait */
    srv_peer *p = join[i];
    pthread_join(p->thread, NULL);
    pthread_mutex_lock(&s->mu);
    p->started = false;
    curl_easy_cleanup(p->curl);
    p->curl = NULL;
    p->in_use = false;
    pthread_mutex_unlock(&s->mu);
  }
  return forgotten;
}

void srv_sync_discovery_counts(srv_sync *s, uint64_t *found, uint64_t *forgotten, size_t *now) {
  *found = *forgotten = 0;
  *now = 0;
  if (!s) return;
  pthread_mutex_lock(&s->mu);
  *found = s->found;
  *forgotten = s->forgotten;
  for (size_t i = 0; i < s->n; i++)
    *now += srv_peer_live(&s->peers[i]) && s->peers[i].discovered;
  pthread_mutex_unlock(&s->mu);
}

/* ---- hooks --------------------------------------------------------------------------- */

static srv_puller *srv_sync_puller(srv_sync *s, const char *node, bool add) {
  for (size_t i = 0; i < s->n_pullers; i++)
    if (strcmp(s->pullers[i].node_id, node) == 0) return &s->pullers[i];
  if (!add || s->n_pullers == SRV_SYNC_MAX_PULLERS) return NULL;
  srv_puller *p = &s->pullers[s->n_pullers++];
  snprintf(p->node_id, sizeof p->node_id, "%s", node);
  return p;
}

void srv_sync_served(void *cls, const char *node, size_t items, uint64_t acked, bool has_acked) {
  srv_sync *s = cls;
  if (!s || !node || !node[0]) return;
  pthread_mutex_lock(&s->mu);
  srv_puller *p = srv_sync_puller(s, node, true);
  if (p) {
    p->sent += items;
    if (has_acked && acked > p->acked) p->acked = acked;
  }
  /* A node that pulls from us is up: a puller backing off toward it (or
   * toward a URL whose node is not known yet) tries again now, so a peer
   * that comes back is pulled within milliseconds, not after the backoff. */
  bool kicked = false;
  for (size_t i = 0; i < s->n; i++) {
    srv_peer *q = &s->peers[i];
    if (srv_peer_live(q) && q->state != SRV_PEER_CONNECTED &&
        (!q->node_id[0] || !strcmp(q->node_id, node)) && !q->kick) {
      q->kick = true;
      kicked = true;
    }
  }
  if (kicked) pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

size_t srv_sync_peers(void *cls, api_sync_peer *out, size_t max) {
  srv_sync *s = cls;
  if (!s) return 0;
  uint64_t now = srv_sync_unix_ms();
  pthread_mutex_lock(&s->mu);
  size_t n = 0;
  for (size_t i = 0; i < s->n && n < max; i++) {
    const srv_peer *p = &s->peers[i];
    if (!srv_peer_live(p)) continue;
    api_sync_peer *o = &out[n++];
    memset(o, 0, sizeof *o);
    o->source = p->discovered ? "discovered" : "configured";
    o->announced_ms = p->discovered ? p->heard_unix_ms : 0;
    snprintf(o->url, sizeof o->url, "%s", p->url);
    snprintf(o->node_id, sizeof o->node_id, "%s", p->node_id);
    o->state = srv_peer_state_name[p->state];
    o->cursor = p->cursor;
    o->lag_ops = p->last_lsn > p->cursor ? p->last_lsn - p->cursor : 0;
    o->lag_ms =
        o->lag_ops && p->behind_since_ms && now > p->behind_since_ms ? now - p->behind_since_ms : 0;
    o->last_contact_ms = p->last_contact_ms;
    snprintf(o->last_error, sizeof o->last_error, "%s", p->last_error);
    o->ops_received = p->ops_received;
    o->refused_drift = p->refused_drift;
    o->refused_invalid = p->refused_invalid;
    const srv_puller *q = p->node_id[0] ? srv_sync_puller(s, p->node_id, false) : NULL;
    if (q) {
      o->ops_sent = q->sent;
      o->acked = q->acked;
    }
  }
  pthread_mutex_unlock(&s->mu);
  return n;
}

/* A label value: the URL or id with '"' and '\\' escaped. */
static void srv_label(char *out, size_t n, const char *v) {
  size_t o = 0;
  for (; *v && o + 3 < n; v++) {
    if (*v == '"' || *v == '\\') out[o++] = '\\';
    out[o++] = *v == '\n' ? ' ' : *v;
  }
  out[o] = '\0';
}

void srv_sync_write_metrics(srv_sync *s, FILE *f) {
  if (!s) return;
  api_sync_peer peers[SRV_SYNC_MAX_PEERS];
  size_t n = srv_sync_peers(s, peers, SRV_SYNC_MAX_PEERS);
  static const struct {
    const char *name, *type, *help;
  } m[] = {
      {"softadastra_sync_peer_connected", "gauge", "1 when the last pull from the peer worked."},
      {"softadastra_sync_peer_lag_ops", "gauge", "Changes of the peer not yet applied here."},
      {"softadastra_sync_peer_ops_received_total", "counter", "Ops applied here from the peer."},
      {"softadastra_sync_peer_ops_sent_total", "counter", "Ops the peer pulled from this node."},
      {"softadastra_sync_peer_refused_total", "counter",
       "Batches from the peer refused (drift or invalid)."},
  };
  for (size_t k = 0; k < sizeof m / sizeof m[0]; k++) {
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", m[k].name, m[k].help, m[k].name, m[k].type);
    for (size_t i = 0; i < n; i++) {
      const api_sync_peer *p = &peers[i];
      char url[600], id[140];
      srv_label(url, sizeof url, p->url);
      srv_label(id, sizeof id, p->node_id);
      unsigned long long v = k == 0   ? (unsigned long long)(strcmp(p->state, "connected") == 0)
                             : k == 1 ? (unsigned long long)p->lag_ops
                             : k == 2 ? (unsigned long long)p->ops_received
                             : k == 3 ? (unsigned long long)p->ops_sent
                                      : (unsigned long long)(p->refused_drift + p->refused_invalid);
      fprintf(f, "%s{peer=\"%s\",node_id=\"%s\"} %llu\n", m[k].name, url, id, v);
    }
  }
}
