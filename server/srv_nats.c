/*
 * srv_nats.c -- the NATS JetStream transport (see srv_nats.h).
 *
 * The stream: subjects <prefix>.>, limits retention, file storage, one
 * message kept per subject (MaxMsgsPerSubject 1).  A subject names a key
 * and an origin, and an origin's later op of a key always carries a larger
 * HLC, so the stream keeps, for every key, each origin's latest op: the
 * winner by the rule is always among them, and a node consuming the stream
 * from its start ends with the whole state (a new node needs no snapshot
 * from the hub).  An existing stream is used when compatible (its subjects
 * cover <prefix>.>, limits retention); else a clear error, nothing sent.
 *
 * A message body: "SA" 1, op (1 put, 2 delete), hlc (u64 BE), origin_lsn
 * (u64 BE), origin length (u8) and bytes, key length (u16 BE) and bytes,
 * then the value (puts; nothing after the key for a delete).  Header
 * Nats-Msg-Id: <origin>:<lsn>:<16 hex digits of the key's hash> (one LSN
 * may hold several keys: a batch); header Softadastra-Content-Type: the
 * value's content type, on a put that has one (a node of an older build
 * ignores it; a malformed one makes the message unparsable: skipped and
 * counted, never a batch refused).
 *
 * The publisher keeps a ring of what it sent, in feed order: one entry per
 * published item (acknowledged by the ack callback) and one mark per page
 * read (its next_since, acknowledged at once).  The acknowledged position
 * is the mark or item before the first unacknowledged entry (an item's LSN
 * minus one while it waits: the LSN's other keys may wait too).  A failed
 * publish, or one not acknowledged within SRV_NATS_ACK_TIMEOUT, takes every
 * pending message back (js_PublishAsyncGetPendingList) and reads the feed
 * again from the acknowledged position: what was stored twice is dropped by
 * the dedup window, or is the same op again (skipped by the rule; the
 * stream keeps one message per subject).  When the hub comes back with a
 * stream whose last sequence is below one this node saw acknowledged, or a
 * new stream, it lost ops: the publisher reads the feed from 0 again (the
 * origin owns its ops; the hub's ack is not durability).  The stream's
 * creation time and that sequence are kept in the node's store (the
 * pseudo-peer's epoch and cursor), so the check holds across restarts.
 *
 * Threads: sa-nats-pub, sa-nats-sub; the ack callback on nats.c's thread.
 */
#define _GNU_SOURCE
#include "srv_nats.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "srv_log.h"

#define SRV_NATS_STREAM_MAX 64
#define SRV_NATS_BACKOFF_MAX_MS 2000

typedef struct pub_entry {
  uint64_t pos;  /* item: its LSN; mark: the page's next_since */
  natsMsg *msg;  /* item: the message sent (identity only, owned by nats.c); NULL: a mark */
  uint64_t t_ms; /* when sent */
  bool acked;
} pub_entry;

struct srv_nats {
  sa_client *client;
  char self[SA_NODE_ID_MAX + 1];
  char stream[SRV_NATS_STREAM_MAX + 1];
  char prefix[256];
  char filter_subject[SRV_NATS_SUBJECT_MAX];
  char filter_prefix[SA_KEY_MAX + 1];
  char durable[SA_NODE_ID_MAX * 2 + 8];
  char pub_peer[80]; /* nats-pub.<stream> (stream <= 32 chars: a valid node id) */
  char sub_peer[80]; /* nats.<stream> */
  char urls[1024];
  uint32_t replicas, window, batch;
  natsOptions *opts;
  natsOptions *probe_opts; /* one connection attempt: why is the hub unreachable? */
  natsConnection *nc;
  jsCtx *js;
  atomic_bool stop;
  atomic_bool ever_published; /* js_PublishAsyncGetPendingList is safe only after a publish */
  pthread_t pub_thread, sub_thread;
  bool pub_started, sub_started;
  pthread_mutex_t mu; /* everything below (a leaf) */
  pthread_cond_t cv;  /* CLOCK_MONOTONIC: acks, stop */
  bool stream_ok;     /* the stream was found or made, and is compatible */
  int64_t stream_created;
  bool check_stream; /* (re)connected: look at the stream again */
  pub_entry *ring;
  size_t r_head, r_len, r_cap;
  size_t ack_hint; /* offset from r_head where the next ack is likely */
  size_t inflight;
  bool pub_failed;
  char pub_error[200];
  char sub_error[200];
  char conn_error[200];
  bool pub_refusing, sub_refusing; /* causes retrying alone will not fix (stream config,
                                       a refused batch) */
  bool republish;                  /* the hub lost ops it had acknowledged: publish again */
  uint64_t max_pub_seq;            /* largest stream sequence of an acknowledged publish */
  uint64_t kept_pub_seq;           /* the max_pub_seq handed to the node to keep (pub thread) */
  uint64_t sub_created;            /* the stream the consumer's cursor is in (sub thread) */
  uint64_t pub_acked_pos;          /* the feed position the hub holds */
  uint64_t published, acked, pub_errors, resends, too_big;
  uint64_t cursor, lag, received, applied, own_skipped, filtered, invalid, drift, refused,
      sub_errors, gaps, last_contact_ms;
};

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- pure helpers ------------------------------------------------------------------ */

static uint64_t fnv64(const void *p, size_t n) {
  const unsigned char *b = p;
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) {
    h ^= b[i];
    h *= 1099511628211ull;
  }
  return h;
}

static const char b64u[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Appends base64url (no padding) of p[0..n) at out[*o]; false when full. */
static bool put_b64u(char *out, size_t outlen, size_t *o, const unsigned char *p, size_t n) {
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16;
    size_t k = n - i >= 3 ? 3 : n - i;
    if (k > 1) v |= (uint32_t)p[i + 1] << 8;
    if (k > 2) v |= p[i + 2];
    size_t chars = k + 1;
    if (*o + chars >= outlen) return false;
    for (size_t c = 0; c < chars; c++)
      out[(*o)++] = b64u[(v >> (18 - 6 * c)) & 63];
  }
  out[*o] = '\0';
  return true;
}

static bool put_str(char *out, size_t outlen, size_t *o, const char *s, size_t n) {
  if (*o + n >= outlen) return false;
  memcpy(out + *o, s, n);
  *o += n;
  out[*o] = '\0';
  return true;
}

static bool seg_safe(const char *s, size_t n) {
  if (n == 0 || n > 64) return false;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
          c == '-'))
      return false;
  }
  return true;
}

/* The first token of a key whose first segment is s[0..n) followed by '/'. */
static bool put_first(char *out, size_t outlen, size_t *o, const char *s, size_t n) {
  char t[160];
  if (seg_safe(s, n)) {
    snprintf(t, sizeof t, "s%.*s", (int)n, s);
  } else if (n <= 64) {
    t[0] = 'x';
    for (size_t i = 0; i < n; i++)
      snprintf(t + 1 + 2 * i, 3, "%02x", (unsigned char)s[i]);
    t[1 + 2 * n] = '\0';
  } else {
    snprintf(t, sizeof t, "h%016" PRIx64, fnv64(s, n));
  }
  return put_str(out, outlen, o, t, strlen(t));
}

int srv_nats_subject(const char *prefix, const char *key, const char *origin, char *out,
                     size_t outlen) {
  size_t o = 0;
  if (!outlen) return -1;
  out[0] = '\0';
  if (!put_str(out, outlen, &o, prefix, strlen(prefix)) || !put_str(out, outlen, &o, ".", 1))
    return -1;
  const char *slash = strchr(key, '/');
  if (slash) {
    if (!put_first(out, outlen, &o, key, (size_t)(slash - key))) return -1;
  } else if (!put_str(out, outlen, &o, "n", 1)) {
    return -1;
  }
  if (!put_str(out, outlen, &o, ".", 1) ||
      !put_b64u(out, outlen, &o, (const unsigned char *)key, strlen(key)) ||
      !put_str(out, outlen, &o, ".", 1) ||
      !put_b64u(out, outlen, &o, (const unsigned char *)origin, strlen(origin)))
    return -1;
  return 0;
}

int srv_nats_filter(const char *prefix, const char *key_prefix, char *out, size_t outlen) {
  size_t o = 0;
  if (!outlen) return -1;
  out[0] = '\0';
  if (!put_str(out, outlen, &o, prefix, strlen(prefix)) || !put_str(out, outlen, &o, ".", 1))
    return -1;
  const char *slash = key_prefix ? strchr(key_prefix, '/') : NULL;
  if (slash) {
    if (!put_first(out, outlen, &o, key_prefix, (size_t)(slash - key_prefix)) ||
        !put_str(out, outlen, &o, ".", 1))
      return -1;
  }
  return put_str(out, outlen, &o, ">", 1) ? 0 : -1;
}

static void be64(unsigned char *p, uint64_t v) {
  for (int i = 7; i >= 0; i--, v >>= 8)
    p[i] = (unsigned char)v;
}
static uint64_t rd64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = v << 8 | p[i];
  return v;
}

char *srv_nats_encode(const sa_sync_item *it, size_t *len) {
  size_t ol = strlen(it->origin), kl = strlen(it->key);
  size_t vl = it->op == SA_OP_PUT ? it->len : 0;
  size_t n = 20 + 1 + ol + 2 + kl + vl;
  unsigned char *b = malloc(n ? n : 1);
  if (!b) return NULL;
  b[0] = 'S', b[1] = 'A', b[2] = 1;
  b[3] = it->op == SA_OP_PUT ? 1 : 2;
  be64(b + 4, it->hlc);
  be64(b + 12, it->origin_lsn);
  b[20] = (unsigned char)ol;
  memcpy(b + 21, it->origin, ol);
  b[21 + ol] = (unsigned char)(kl >> 8);
  b[22 + ol] = (unsigned char)kl;
  memcpy(b + 23 + ol, it->key, kl);
  if (vl) memcpy(b + 23 + ol + kl, it->data, vl);
  *len = n;
  return (char *)b;
}

int srv_nats_decode(const void *body, size_t len, const char *ctype, sa_sync_item *it, char *why,
                    size_t whylen) {
  const unsigned char *b = body;
  memset(it, 0, sizeof *it);
  if (len < 23 || b[0] != 'S' || b[1] != 'A') {
    snprintf(why, whylen, "not a softadastra op (%zu bytes)", len);
    return -1;
  }
  if (b[2] != 1) {
    snprintf(why, whylen, "unknown op format version %u", b[2]);
    return -1;
  }
  if (b[3] != 1 && b[3] != 2) {
    snprintf(why, whylen, "unknown op kind %u", b[3]);
    return -1;
  }
  size_t ol = b[20];
  if (ol == 0 || ol > SA_NODE_ID_MAX || 21 + ol + 2 > len) {
    snprintf(why, whylen, "bad origin length %zu", ol);
    return -1;
  }
  size_t kl = (size_t)b[21 + ol] << 8 | b[22 + ol];
  if (kl == 0 || kl > SA_KEY_MAX || 23 + ol + kl > len) {
    snprintf(why, whylen, "bad key length %zu", kl);
    return -1;
  }
  const unsigned char *k = b + 23 + ol;
  if (memchr(k, 0, kl) || memchr(b + 21, 0, ol)) {
    snprintf(why, whylen, "a NUL byte in the key or the origin");
    return -1;
  }
  size_t vl = len - (23 + ol + kl);
  if (b[3] == 2 && vl) {
    snprintf(why, whylen, "a delete with %zu value bytes", vl);
    return -1;
  }
  it->op = b[3] == 1 ? SA_OP_PUT : SA_OP_DELETE;
  it->hlc = rd64(b + 4);
  it->origin_lsn = rd64(b + 12);
  if (it->hlc == 0) {
    snprintf(why, whylen, "hlc 0");
    return -1;
  }
  if (ctype && *ctype) {
    sa_error e;
    if (it->op != SA_OP_PUT) {
      snprintf(why, whylen, "a delete with a content type");
      return -1;
    }
    if (sa_content_type_check(ctype, &e) != 0) {
      snprintf(why, whylen, "%s", e.message);
      return -1;
    }
  }
  memcpy(it->origin, b + 21, ol);
  it->origin[ol] = '\0';
  it->key = strndup((const char *)k, kl);
  it->data = malloc(vl + 1);
  if (ctype && *ctype) it->content_type = strdup(ctype);
  if (!it->key || !it->data || (ctype && *ctype && !it->content_type)) {
    free(it->key);
    free(it->data);
    free(it->content_type);
    it->key = it->data = it->content_type = NULL;
    snprintf(why, whylen, "out of memory");
    return -1;
  }
  if (vl) memcpy(it->data, k + kl, vl);
  it->data[vl] = '\0';
  it->len = vl;
  return 0;
}

/* True when body is an op of origin self, read from its header alone: the
 * consumer skips the node's own ops without decoding (and copying) them. */
static bool own_op(const void *body, size_t len, const char *self, size_t self_len) {
  const unsigned char *b = body;
  return len >= 23 && b[0] == 'S' && b[1] == 'A' && b[20] == self_len && 21 + self_len <= len &&
         memcmp(b + 21, self, self_len) == 0;
}

/* ---- state ---------------------------------------------------------------------------- */

static void set_err(srv_nats *n, char *slot, bool refusing, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void set_err(srv_nats *n, char *slot, bool refusing, const char *fmt, ...) {
  char msg[200] = "";
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  pthread_mutex_lock(&n->mu);
  bool same = strcmp(slot, msg) == 0;
  snprintf(slot, 200, "%s", msg);
  if (refusing) *(slot == n->pub_error ? &n->pub_refusing : &n->sub_refusing) = true;
  pthread_mutex_unlock(&n->mu);
  if (!same && msg[0]) {
    char q[300];
    srv_log(refusing ? SRV_LOG_WARN : SRV_LOG_INFO, "nats", "stream=%s error=%s", n->stream,
            srv_log_q(msg, q, sizeof q));
  }
}

static void clear_err(srv_nats *n, char *slot) {
  pthread_mutex_lock(&n->mu);
  slot[0] = '\0';
  pthread_mutex_unlock(&n->mu);
}

/* The CLOCK_MONOTONIC time ms from now (n->cv's clock). */
static struct timespec deadline_in(uint32_t ms) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  uint64_t ns = (uint64_t)ts.tv_nsec + (uint64_t)ms * 1000000u;
  ts.tv_sec += (time_t)(ns / 1000000000u);
  ts.tv_nsec = (long)(ns % 1000000000u);
  return ts;
}

/* Waits ms unless stopping (or woken by an ack).  false when stopping. */
static bool nap(srv_nats *n, uint32_t ms) {
  struct timespec ts = deadline_in(ms);
  pthread_mutex_lock(&n->mu);
  if (!atomic_load(&n->stop)) pthread_cond_timedwait(&n->cv, &n->mu, &ts);
  pthread_mutex_unlock(&n->mu);
  return !atomic_load(&n->stop);
}

/* Waits until at most upto publishes are in flight (on_ack wakes it at
 * half the window and at none), a publish failed, stopping, or ms passed;
 * the test and the wait under one hold of mu, so no wake is lost. */
static void wait_acks(srv_nats *n, size_t upto, uint32_t ms) {
  struct timespec ts = deadline_in(ms);
  pthread_mutex_lock(&n->mu);
  while (!atomic_load(&n->stop) && !n->pub_failed && n->inflight > upto)
    if (pthread_cond_timedwait(&n->cv, &n->mu, &ts) != 0) break;
  pthread_mutex_unlock(&n->mu);
}

static uint32_t backoff(uint32_t *cur) {
  uint32_t d = *cur ? *cur * 2 : 100;
  if (d > SRV_NATS_BACKOFF_MAX_MS) d = SRV_NATS_BACKOFF_MAX_MS;
  *cur = d;
  return d / 2 + (uint32_t)(rand() % (int)(d / 2 + 1));
}

static const char *st_text(natsStatus s) {
  const char *t = nats_GetLastError(NULL);
  return t && *t ? t : natsStatus_GetText(s);
}

/* ---- the connection --------------------------------------------------------------------- */

static void on_reconnected(natsConnection *nc, void *cls) {
  (void)nc;
  srv_nats *n = cls;
  pthread_mutex_lock(&n->mu);
  n->check_stream = true;
  n->conn_error[0] = '\0';
  pthread_cond_broadcast(&n->cv);
  pthread_mutex_unlock(&n->mu);
  srv_log(SRV_LOG_INFO, "nats", "stream=%s state=connected", n->stream);
}

static void on_disconnected(natsConnection *nc, void *cls) {
  srv_nats *n = cls;
  const char *le = NULL;
  natsConnection_GetLastError(nc, &le);
  pthread_mutex_lock(&n->mu);
  snprintf(n->conn_error, sizeof n->conn_error, "disconnected from the hub%s%s",
           le && *le ? ": " : "", le && *le ? le : "");
  pthread_mutex_unlock(&n->mu);
  srv_log(SRV_LOG_INFO, "nats", "stream=%s state=unreachable", n->stream);
}

/* One connection attempt with the node's servers and credentials: the
 * reason the hub cannot be reached goes to conn_error. */
static void probe(srv_nats *n) {
  natsConnection *pc = NULL;
  natsStatus s = natsConnection_Connect(&pc, n->probe_opts);
  if (s == NATS_OK) {
    natsConnection_Destroy(pc);
    return;
  }
  const char *t = nats_GetLastError(NULL);
  char why[200];
  bool auth = s == NATS_CONNECTION_AUTH_FAILED || (t && strcasestr(t, "authori"));
  if (auth)
    snprintf(why, sizeof why,
             "the hub refuses this node's credentials (nats_token / nats_creds): %.120s",
             t && *t ? t : natsStatus_GetText(s));
  else
    snprintf(why, sizeof why, "cannot reach the hub: %.150s", t && *t ? t : natsStatus_GetText(s));
  pthread_mutex_lock(&n->mu);
  bool same = strcmp(n->conn_error, why) == 0;
  snprintf(n->conn_error, sizeof n->conn_error, "%s", why);
  pthread_mutex_unlock(&n->mu);
  if (!same) {
    char q[300];
    srv_log(auth ? SRV_LOG_WARN : SRV_LOG_INFO, "nats", "stream=%s state=unreachable error=%s",
            n->stream, srv_log_q(why, q, sizeof q));
  }
}

static bool connected(srv_nats *n) {
  return natsConnection_Status(n->nc) == NATS_CONN_STATUS_CONNECTED;
}

/* Makes or checks the stream.  0, or -1 with the error set. */
static int ensure_stream(srv_nats *n) {
  pthread_mutex_lock(&n->mu);
  bool ok = n->stream_ok && !n->check_stream;
  pthread_mutex_unlock(&n->mu);
  if (ok) return 0;
  jsStreamInfo *si = NULL;
  jsErrCode je = 0;
  natsStatus s = js_GetStreamInfo(&si, n->js, n->stream, NULL, &je);
  if (s == NATS_NOT_FOUND || je == JSStreamNotFoundErr) {
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    char subj[300];
    snprintf(subj, sizeof subj, "%s.>", n->prefix);
    const char *subjects[1] = {subj};
    sc.Name = n->stream;
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Retention = js_LimitsPolicy;
    sc.Storage = js_FileStorage;
    sc.MaxMsgsPerSubject = 1;
    uint32_t r = n->replicas;
    if (!r) {
      char **srv = NULL;
      int cnt = 0;
      if (natsConnection_GetServers(n->nc, &srv, &cnt) == NATS_OK) {
        for (int i = 0; i < cnt; i++)
          free(srv[i]);
        free(srv);
      }
      r = cnt >= 3 ? 3 : 1;
    }
    sc.Replicas = r;
    je = 0;
    s = js_AddStream(&si, n->js, &sc, NULL, &je);
    if (s != NATS_OK) { /* another node made it at once? */
      jsErrCode je2 = 0;
      if (js_GetStreamInfo(&si, n->js, n->stream, NULL, &je2) != NATS_OK) {
        set_err(n, n->pub_error, je == JSStreamNameExistErr,
                "cannot create the stream %s (replicas %u): %s (JetStream error %d)", n->stream, r,
                st_text(s), (int)je);
        return -1;
      }
    } else {
      srv_log(SRV_LOG_INFO, "nats", "stream=%s created replicas=%u subjects=%s", n->stream, r,
              subj);
    }
  } else if (s != NATS_OK) {
    set_err(n, n->pub_error, false, "cannot read the stream %s: %s%s", n->stream, st_text(s),
            s == NATS_NO_RESPONDERS ? " (is JetStream enabled on the hub?)" : "");
    return -1;
  }
  /* Compatible? */
  char want[300];
  snprintf(want, sizeof want, "%s.>", n->prefix);
  bool covers = false;
  for (int i = 0; si->Config && i < si->Config->SubjectsLen; i++) {
    const char *sj = si->Config->Subjects[i];
    size_t l = strlen(sj);
    if (!strcmp(sj, want) || !strcmp(sj, ">") ||
        (l >= 2 && !strcmp(sj + l - 2, ".>") && !strncmp(want, sj, l - 1)))
      covers = true;
  }
  const char *why = NULL;
  if (!covers)
    why = "its subjects do not cover the subject prefix (nats_subject_prefix)";
  else if (si->Config->Retention != js_LimitsPolicy)
    why = "its retention is not limits (a work-queue or interest stream drops ops other nodes "
          "have not read)";
  if (why) {
    set_err(n, n->pub_error, true, "the stream %s is incompatible: %s; use another nats_stream",
            n->stream, why);
    jsStreamInfo_Destroy(si);
    return -1;
  }
  pthread_mutex_lock(&n->mu);
  bool lost = false;
  if (n->stream_created && si->Created != n->stream_created) lost = true; /* made again */
  if (si->State.LastSeq < n->max_pub_seq) lost = true;                    /* lost its tail */
  if (!n->stream_created && n->pub_acked_pos > 0 && si->State.LastSeq == 0) lost = true; /* new */
  bool keep = lost || si->Created != n->stream_created;
  n->stream_created = si->Created;
  n->stream_ok = true;
  n->check_stream = false;
  n->pub_refusing = false;
  if (lost) {
    n->max_pub_seq = 0;
    n->kept_pub_seq = 0;
    n->republish = true;
  }
  pthread_mutex_unlock(&n->mu);
  /* The stream's identity and the largest sequence acknowledged are kept by
   * the node (the pseudo-peer's epoch and cursor: peer records of the
   * store), so that a restart still sees a stream made again or a lost
   * tail; a lost one resets the kept sequence in the same transaction.  A
   * crash before the lazy write of the sequence only weakens the check. */
  if (keep)
    (void)sa_client_sync_peer_set_epoch(n->client, n->pub_peer, (uint64_t)si->Created, lost, NULL);
  jsStreamInfo_Destroy(si);
  clear_err(n, n->pub_error);
  return 0;
}

/* ---- the publisher ------------------------------------------------------------------------ */

static bool ring_push(srv_nats *n, uint64_t pos, natsMsg *msg) {
  if (n->r_len == n->r_cap) {
    size_t cap = n->r_cap ? n->r_cap * 2 : 1024;
    pub_entry *r = malloc(cap * sizeof *r);
    if (!r) return false;
    for (size_t i = 0; i < n->r_len; i++)
      r[i] = n->ring[(n->r_head + i) % n->r_cap];
    free(n->ring);
    n->ring = r;
    n->r_cap = cap;
    n->r_head = 0;
  }
  pub_entry *e = &n->ring[(n->r_head + n->r_len) % n->r_cap];
  e->pos = pos;
  e->msg = msg;
  e->t_ms = now_ms();
  e->acked = msg == NULL;
  n->r_len++;
  if (msg) n->inflight++;
  return true;
}

/* Pops the acknowledged prefix; returns the position it covers (or 0). With mu. */
static uint64_t ring_advance(srv_nats *n, uint64_t *oldest_ms) {
  uint64_t pos = 0;
  while (n->r_len) {
    pub_entry *e = &n->ring[n->r_head];
    if (!e->acked) {
      if (e->pos > 0 && e->pos - 1 > pos) pos = e->pos - 1;
      break;
    }
    pos = e->pos;
    n->r_head = (n->r_head + 1) % n->r_cap;
    n->r_len--;
    if (n->ack_hint) n->ack_hint--;
  }
  *oldest_ms = 0;
  if (n->r_len) {
    /* the first unacknowledged item */
    for (size_t i = 0; i < n->r_len; i++) {
      pub_entry *e = &n->ring[(n->r_head + i) % n->r_cap];
      if (!e->acked) {
        *oldest_ms = e->t_ms;
        break;
      }
    }
  }
  return pos;
}

static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *cls) {
  (void)js;
  srv_nats *n = cls;
  bool wake = false;
  pthread_mutex_lock(&n->mu);
  /* Acks come mostly in order: start where the last one was found. */
  size_t from = n->ack_hint < n->r_len ? n->ack_hint : 0;
  for (size_t j = 0; j < n->r_len; j++) {
    size_t i = (from + j) % n->r_len;
    pub_entry *e = &n->ring[(n->r_head + i) % n->r_cap];
    if (e->msg != msg || e->acked) continue;
    n->ack_hint = i + 1;
    if (pa) {
      e->acked = true;
      e->msg = NULL;
      n->inflight--;
      n->acked++;
      if (pa->Sequence > n->max_pub_seq) n->max_pub_seq = pa->Sequence;
      /* The publisher waits for these two (wait_acks); waking it for every
       * ack cost a thread switch and its bookkeeping per op. */
      wake = n->inflight == n->window / 2 || n->inflight == 0;
    } else {
      wake = true;
      n->pub_failed = true;
      n->check_stream = true; /* gone or made again? look before publishing again */
      n->pub_errors++;
      snprintf(n->pub_error, sizeof n->pub_error, "publish refused: %s (JetStream error %d)",
               pae ? natsStatus_GetText(pae->Err) : "?", pae ? (int)pae->ErrCode : 0);
    }
    break;
  }
  if (wake) pthread_cond_broadcast(&n->cv);
  pthread_mutex_unlock(&n->mu);
  natsMsg_Destroy(msg);
}

/* Takes every pending publish back and forgets the ring: the caller reads
 * again from the acknowledged position. */
static void pub_reset(srv_nats *n) {
  natsMsgList pending = {0};
  /* nats.c 3.4 crashes here before its first async publish: only after one */
  if (atomic_load(&n->ever_published) && js_PublishAsyncGetPendingList(&pending, n->js) == NATS_OK)
    natsMsgList_Destroy(&pending);
  pthread_mutex_lock(&n->mu);
  n->r_head = n->r_len = 0;
  n->ack_hint = 0;
  n->inflight = 0;
  n->pub_failed = false;
  n->resends++;
  pthread_mutex_unlock(&n->mu);
}

/* Publishes one item.  0, 1 (skipped: too big), -1 (failed). */
static int pub_one(srv_nats *n, const sa_sync_item *it) {
  char subj[SRV_NATS_SUBJECT_MAX];
  if (srv_nats_subject(n->prefix, it->key, it->origin, subj, sizeof subj) != 0) return 1;
  size_t len = 0;
  char *body = srv_nats_encode(it, &len);
  if (!body) return -1;
  if ((int64_t)len + 512 > natsConnection_GetMaxPayload(n->nc) &&
      natsConnection_GetMaxPayload(n->nc) > 0) {
    free(body);
    pthread_mutex_lock(&n->mu);
    n->too_big++;
    pthread_mutex_unlock(&n->mu);
    char q[300];
    srv_log(SRV_LOG_WARN, "nats",
            "stream=%s key=%s error=the op is larger than the hub's max_payload: not published",
            n->stream, srv_log_q(it->key, q, sizeof q));
    return 1;
  }
  natsMsg *m = NULL;
  natsStatus s = natsMsg_Create(&m, subj, NULL, body, (int)len);
  free(body);
  if (s != NATS_OK) return -1;
  char id[SA_NODE_ID_MAX + 64];
  snprintf(id, sizeof id, "%s:%" PRIu64 ":%016" PRIx64, it->origin, it->origin_lsn,
           fnv64(it->key, strlen(it->key)));
  natsMsgHeader_Set(m, "Nats-Msg-Id", id);
  if (it->op == SA_OP_PUT && it->content_type &&
      natsMsgHeader_Set(m, SRV_NATS_CT_HEADER, it->content_type) != NATS_OK) {
    natsMsg_Destroy(m);
    return -1;
  }
  pthread_mutex_lock(&n->mu);
  bool ok = ring_push(n, it->seq, m);
  pthread_mutex_unlock(&n->mu);
  if (!ok) {
    natsMsg_Destroy(m);
    return -1;
  }
  natsMsg *keep = m;
  atomic_store(&n->ever_published, true);
  s = js_PublishMsgAsync(n->js, &m, NULL);
  if (s != NATS_OK) {
    /* not taken: forget it (the reset below clears the ring anyway) */
    natsMsg_Destroy(m);
    pthread_mutex_lock(&n->mu);
    n->pub_failed = true;
    n->check_stream = true; /* gone or made again? look before publishing again */
    n->pub_errors++;
    snprintf(n->pub_error, sizeof n->pub_error, "publish: %s", st_text(s));
    for (size_t i = 0; i < n->r_len; i++) {
      pub_entry *e = &n->ring[(n->r_head + i) % n->r_cap];
      if (e->msg == keep) e->msg = NULL;
    }
    pthread_mutex_unlock(&n->mu);
    return -1;
  }
  pthread_mutex_lock(&n->mu);
  n->published++;
  pthread_mutex_unlock(&n->mu);
  return 0;
}

typedef struct snap_pub {
  srv_nats *n;
  int rc;
} snap_pub;

static int snap_pub_fn(void *arg, const sa_sync_item *it) {
  snap_pub *sp = arg;
  srv_nats *n = sp->n;
  if (strcmp(it->origin, n->self) != 0) return 0;
  for (int i = 0; i < 1000; i++) { /* the window */
    pthread_mutex_lock(&n->mu);
    bool room = n->inflight < n->window || n->pub_failed;
    pthread_mutex_unlock(&n->mu);
    if (room || atomic_load(&n->stop)) break;
    wait_acks(n, n->window / 2, 10);
  }
  if (atomic_load(&n->stop)) return 1;
  sa_sync_item c = *it;
  c.seq = 0; /* a snapshot item: acknowledged only with the snapshot's resume */
  int rc = pub_one(n, &c);
  if (rc < 0) {
    sp->rc = -1;
    return 1;
  }
  return 0;
}

static void *pub_main(void *arg) {
  srv_nats *n = arg;
  pthread_mutex_lock(&n->mu);
  uint64_t read_pos = n->pub_acked_pos;
  pthread_mutex_unlock(&n->mu);
  uint32_t bo = 0;
  uint64_t probed = 0;
  while (!atomic_load(&n->stop)) {
    if (!connected(n)) {
      if (now_ms() - probed > 3000) {
        probe(n);
        probed = now_ms();
      }
      if (!nap(n, 200)) break;
      continue;
    }
    if (ensure_stream(n) < 0) {
      if (!nap(n, backoff(&bo))) break;
      continue;
    }
    pthread_mutex_lock(&n->mu);
    bool again = n->republish;
    n->republish = false;
    pthread_mutex_unlock(&n->mu);
    if (again) {
      srv_log(SRV_LOG_WARN, "nats",
              "stream=%s error=the hub lost ops it had acknowledged (a new stream, or its last "
              "sequence is below one acknowledged before): publishing this node's ops again",
              n->stream);
      pub_reset(n);
      read_pos = 0;
    }
    /* acknowledgements */
    uint64_t oldest = 0;
    pthread_mutex_lock(&n->mu);
    uint64_t pos = ring_advance(n, &oldest);
    bool failed = n->pub_failed;
    size_t inflight = n->inflight;
    bool empty = n->r_len == 0;
    pthread_mutex_unlock(&n->mu);
    pthread_mutex_lock(&n->mu);
    uint64_t seq = n->max_pub_seq > n->kept_pub_seq ? n->max_pub_seq : 0;
    if (seq) n->kept_pub_seq = seq;
    pthread_mutex_unlock(&n->mu);
    if (seq) /* an empty batch: the cursor moves in memory, the tick persists it */
      (void)sa_client_sync_apply(n->client, n->pub_peer, NULL, 0, seq, NULL, NULL);
    if (pos > 0) {
      sa_client_sync_peer_ack(n->client, n->pub_peer, pos, NULL);
      pthread_mutex_lock(&n->mu);
      if (pos > n->pub_acked_pos) n->pub_acked_pos = pos;
      pthread_mutex_unlock(&n->mu);
    }
    if (failed || (oldest && now_ms() - oldest > SRV_NATS_ACK_TIMEOUT)) {
      if (!failed) {
        pthread_mutex_lock(&n->mu);
        n->pub_errors++;
        snprintf(n->pub_error, sizeof n->pub_error,
                 "no publish acknowledgement within %d ms: publishing again", SRV_NATS_ACK_TIMEOUT);
        pthread_mutex_unlock(&n->mu);
      }
      pub_reset(n);
      pthread_mutex_lock(&n->mu);
      read_pos = n->pub_acked_pos;
      pthread_mutex_unlock(&n->mu);
      if (!nap(n, backoff(&bo))) break;
      continue;
    }
    if (empty) clear_err(n, n->pub_error);
    if (inflight > n->window / 2) { /* read pages of half a window or more */
      wait_acks(n, n->window / 2, 50);
      continue;
    }
    sa_sync_page pg;
    sa_error err = {0};
    size_t limit = n->window - inflight;
    if (limit > 1000) limit = 1000;
    int rc = sa_client_sync_read(n->client, read_pos, limit, NULL, &pg, &err);
    if (rc == SA_EGONE) {
      /* the feed no longer holds every change after read_pos: publish this
       * node's own keys from a snapshot, then follow from its position */
      snap_pub sp = {n, 0};
      uint64_t resume = 0;
      rc = sa_client_sync_snapshot(n->client, snap_pub_fn, &sp, &resume, &err);
      if (rc == 0 && sp.rc == 0) {
        pthread_mutex_lock(&n->mu);
        ring_push(n, resume, NULL);
        pthread_mutex_unlock(&n->mu);
        read_pos = resume;
      } else if (!nap(n, backoff(&bo))) {
        break;
      }
      continue;
    }
    if (rc != 0) {
      set_err(n, n->pub_error, false, "cannot read the feed: %s",
              err.message[0] ? err.message : sa_strerror(rc));
      if (!nap(n, backoff(&bo))) break;
      continue;
    }
    bool bad = false;
    size_t sent = 0;
    for (size_t i = 0; i < pg.count && !bad; i++) {
      if (strcmp(pg.items[i].origin, n->self) != 0) continue;
      int r = pub_one(n, &pg.items[i]);
      if (r < 0) bad = true;
      if (r == 0) sent++;
    }
    if (!bad) {
      pthread_mutex_lock(&n->mu);
      ring_push(n, pg.next_since, NULL);
      pthread_mutex_unlock(&n->mu);
      read_pos = pg.next_since;
      bo = 0;
    }
    bool more = pg.more;
    uint64_t next = pg.next_since;
    sa_sync_page_free(&pg);
    if (bad) continue;
    if (!more && sent == 0) {
      /* caught up: wait for a local write, or for acks */
      pthread_mutex_lock(&n->mu);
      bool waiting = n->inflight > 0;
      pthread_mutex_unlock(&n->mu);
      if (waiting)
        wait_acks(n, 0, 20);
      else
        sa_client_wait(n->client, next, 200, NULL, NULL);
    }
  }
  return NULL;
}

/* ---- the consumer --------------------------------------------------------------------------- */

/* Deletes (when asked) and creates the durable consumer at cursor + 1. */
static int make_consumer(srv_nats *n, bool del, uint64_t cursor) {
  jsErrCode je = 0;
  if (del) js_DeleteConsumer(n->js, n->stream, n->durable, NULL, &je);
  jsConsumerConfig cc;
  jsConsumerConfig_Init(&cc);
  cc.Durable = n->durable;
  cc.AckPolicy = js_AckAll;
  cc.AckWait = (int64_t)30 * 1000000000;
  cc.MaxAckPending = 20000;
  cc.MaxDeliver = -1;
  cc.FilterSubject = n->filter_subject;
  if (cursor > 0) {
    cc.DeliverPolicy = js_DeliverByStartSequence;
    cc.OptStartSeq = cursor + 1;
  } else {
    cc.DeliverPolicy = js_DeliverAll;
  }
  jsConsumerInfo *ci = NULL;
  je = 0;
  natsStatus s = js_AddConsumer(&ci, n->js, n->stream, &cc, NULL, &je);
  if (s != NATS_OK) {
    set_err(n, n->sub_error, false, "cannot create the consumer %s: %s (JetStream error %d)",
            n->durable, st_text(s), (int)je);
    return -1;
  }
  jsConsumerInfo_Destroy(ci);
  srv_log(SRV_LOG_INFO, "nats", "stream=%s consumer=%s created start_seq=%" PRIu64, n->stream,
          n->durable, cursor + 1);
  return 0;
}

/* Binds to the durable consumer, making it (or moving it to cursor + 1 when
 * it is elsewhere).  Returns the subscription or NULL. */
static natsSubscription *sub_open(srv_nats *n, uint64_t *cursor, bool force, uint64_t *cseq) {
  if (ensure_stream(n) < 0) return NULL;
  jsStreamInfo *si = NULL;
  jsErrCode je = 0;
  if (js_GetStreamInfo(&si, n->js, n->stream, NULL, &je) != NATS_OK) return NULL;
  uint64_t last = si->State.LastSeq, created = (uint64_t)si->Created;
  jsStreamInfo_Destroy(si);
  bool reset = false;
  /* The cursor is a sequence of one stream: the one made at created (kept
   * in the store as the pseudo-peer's epoch).  Another stream of the same
   * name (made again while this node was away, then filled by others) can
   * already be past the cursor: its sequences mean nothing here. */
  if (created != n->sub_created) {
    bool again = n->sub_created != 0 && *cursor > 0;
    if (again)
      srv_log(SRV_LOG_WARN, "nats",
              "stream=%s error=the stream was made again (created %" PRIu64 ", this node's "
              "position %" PRIu64 " is in the one created %" PRIu64 "): reading it from its start",
              n->stream, created, *cursor, n->sub_created);
    sa_error err = {0};
    if (sa_client_sync_peer_set_epoch(n->client, n->sub_peer, created, again, &err) != 0) {
      set_err(n, n->sub_error, false, "cannot keep the stream's identity: %s", err.message);
      return NULL;
    }
    n->sub_created = created;
    if (again) {
      *cursor = 0;
      reset = true;
    }
  }
  if (*cursor > last) {
    srv_log(SRV_LOG_WARN, "nats",
            "stream=%s error=the stream's last sequence %" PRIu64 " is below this node's "
            "position %" PRIu64 " (the stream was made again or lost its tail): reading it again "
            "from its start",
            n->stream, last, *cursor);
    *cursor = 0;
    reset = true;
  }
  jsConsumerInfo *ci = NULL;
  je = 0;
  natsStatus s = js_GetConsumerInfo(&ci, n->js, n->stream, n->durable, NULL, &je);
  *cseq = 0;
  if (s == NATS_OK) {
    bool moved = ci->Delivered.Stream > *cursor || ci->AckFloor.Stream > *cursor;
    bool other = !ci->Config || !ci->Config->FilterSubject ||
                 strcmp(ci->Config->FilterSubject, n->filter_subject) != 0 ||
                 ci->Config->AckPolicy != js_AckAll;
    *cseq = ci->Delivered.Consumer;
    jsConsumerInfo_Destroy(ci);
    if (moved || other || reset || force) {
      *cseq = 0;
      if (make_consumer(n, true, *cursor) != 0) return NULL;
    }
  } else if (s == NATS_NOT_FOUND || je == JSConsumerNotFoundErr) {
    if (make_consumer(n, false, *cursor) != 0) return NULL;
  } else {
    set_err(n, n->sub_error, false, "cannot read the consumer %s: %s", n->durable, st_text(s));
    return NULL;
  }
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Stream = n->stream;
  so.Consumer = n->durable;
  natsSubscription *sub = NULL;
  je = 0;
  s = js_PullSubscribe(&sub, n->js, n->filter_subject, n->durable, NULL, &so, &je);
  if (s != NATS_OK) {
    set_err(n, n->sub_error, false, "cannot bind to the consumer %s: %s", n->durable, st_text(s));
    return NULL;
  }
  clear_err(n, n->sub_error);
  return sub;
}

static void items_free(sa_sync_item *items, size_t k) {
  for (size_t i = 0; i < k; i++) {
    free(items[i].key);
    free(items[i].data);
    free(items[i].content_type);
  }
}

/* Applies items with cursor seq (prev: the cursor before them); when the
 * node refuses the batch as malformed, applies the items one by one so one
 * bad op costs only itself (counted, logged).  0, or -1 (clock drift or an
 * error: nothing of it applied, read again later). */
static int sub_apply(srv_nats *n, const sa_sync_item *items, size_t k, uint64_t seq,
                     uint64_t prev) {
  sa_sync_apply_result res = {0};
  sa_error err = {0};
  int rc = sa_client_sync_apply(n->client, n->sub_peer, items, k, seq, &res, &err);
  const char *msg = err.message[0] ? err.message : sa_strerror(rc);
  if (rc == 0) {
    pthread_mutex_lock(&n->mu);
    n->applied += res.applied;
    n->received += k;
    n->sub_refusing = false;
    pthread_mutex_unlock(&n->mu);
    return 0;
  }
  if (rc == SA_EDRIFT) {
    pthread_mutex_lock(&n->mu);
    n->drift++;
    pthread_mutex_unlock(&n->mu);
    set_err(n, n->sub_error, true, "batch refused (clock drift): %s", msg);
    return -1;
  }
  if (rc != SA_EINVAL && rc != SA_EKEY && rc != SA_ETOOBIG) {
    set_err(n, n->sub_error, false, "cannot apply a batch: %s", msg);
    return -1;
  }
  if (k == 1) {
    pthread_mutex_lock(&n->mu);
    n->refused++;
    pthread_mutex_unlock(&n->mu);
    char q[300];
    srv_log(SRV_LOG_WARN, "nats", "stream=%s seq=%" PRIu64 " refused_op=%s", n->stream,
            items[0].seq, srv_log_q(msg, q, sizeof q));
    return sa_client_sync_apply(n->client, n->sub_peer, NULL, 0, seq, NULL, NULL) == 0 ? 0 : -1;
  }
  for (size_t i = 0; i < k; i++) {
    uint64_t c = i + 1 == k ? seq : prev;
    if (sub_apply(n, &items[i], 1, c, prev) != 0) return -1;
  }
  return 0;
}

static void *sub_main(void *arg) {
  srv_nats *n = arg;
  uint64_t cursor = 0;
  sa_client_sync_cursor(n->client, n->sub_peer, &cursor, NULL);
  sa_client_sync_peer_epoch(n->client, n->sub_peer, &n->sub_created, NULL);
  pthread_mutex_lock(&n->mu);
  n->cursor = cursor;
  pthread_mutex_unlock(&n->mu);
  natsSubscription *sub = NULL;
  uint32_t bo = 0;
  uint64_t cseq = 0;  /* the consumer sequence of the last message received */
  bool force = false; /* move the consumer back to cursor + 1 at the next open */
  sa_sync_item *items = calloc(n->batch, sizeof *items);
  size_t self_len = strlen(n->self);
  while (items && !atomic_load(&n->stop)) {
    if (!sub) {
      if (!connected(n) || !(sub = sub_open(n, &cursor, force, &cseq))) {
        if (!nap(n, connected(n) ? backoff(&bo) : 200)) break;
        continue;
      }
    }
    natsMsgList list = {0};
    jsErrCode je = 0;
    natsStatus s = natsSubscription_Fetch(&list, sub, (int)n->batch, 1000, &je);
    if (s == NATS_TIMEOUT) {
      natsMsgList_Destroy(&list);
      /* Nothing came: were messages delivered that never arrived (lost
       * with a server or a connection)?  They would come back only after
       * the ack wait; the consumer is moved back at once instead. */
      jsConsumerInfo *ci = NULL;
      jsErrCode cje = 0;
      if (js_GetConsumerInfo(&ci, n->js, n->stream, n->durable, NULL, &cje) == NATS_OK) {
        bool lost = ci->Delivered.Consumer > cseq;
        pthread_mutex_lock(&n->mu);
        n->lag = ci->NumPending + (uint64_t)ci->NumAckPending;
        n->last_contact_ms = now_ms();
        pthread_mutex_unlock(&n->mu);
        jsConsumerInfo_Destroy(ci);
        if (lost) {
          srv_log(SRV_LOG_INFO, "nats",
                  "stream=%s consumer=%s event=delivery_lost: reading again from seq %" PRIu64,
                  n->stream, n->durable, cursor + 1);
          pthread_mutex_lock(&n->mu);
          n->gaps++;
          pthread_mutex_unlock(&n->mu);
          natsSubscription_Destroy(sub);
          sub = NULL;
          force = true;
        }
      } else if (cje == JSConsumerNotFoundErr || cje == JSStreamNotFoundErr) {
        /* The consumer went with its stream while no fetch was waiting
         * (a waiting one gets "Consumer Deleted"): every fetch would time
         * out for good.  Open it again, which finds a stream made again. */
        srv_log(SRV_LOG_INFO, "nats",
                "stream=%s consumer=%s event=consumer_gone (JetStream error %d)", n->stream,
                n->durable, (int)cje);
        natsSubscription_Destroy(sub);
        sub = NULL;
      }
      continue;
    }
    if (s != NATS_OK) {
      natsMsgList_Destroy(&list);
      pthread_mutex_lock(&n->mu);
      n->sub_errors++;
      pthread_mutex_unlock(&n->mu);
      if (connected(n))
        set_err(n, n->sub_error, false, "fetch: %s (JetStream error %d)", st_text(s), (int)je);
      natsSubscription_Destroy(sub);
      sub = NULL;
      if (!nap(n, backoff(&bo))) break;
      continue;
    }
    force = false;
    bo = 0;
    size_t k = 0;
    bool gap = false;
    uint64_t last_seq = cursor, pending = 0;
    natsMsg *last_msg = NULL;
    uint64_t own = 0, filtered = 0, invalid = 0;
    for (int i = 0; i < list.Count; i++) {
      natsMsg *m = list.Msgs[i];
      jsMsgMetaData *md = NULL;
      if (natsMsg_GetMetaData(&md, m) != NATS_OK) continue;
      uint64_t seq = md->Sequence.Stream;
      /* Every delivery takes the next consumer sequence: a jump means
       * messages were delivered and lost on the way (a server died, the
       * connection moved).  AckAll would then acknowledge them unseen:
       * nothing of the batch is applied, the consumer goes back. */
      if (md->Sequence.Consumer != cseq + 1) gap = true;
      cseq = md->Sequence.Consumer;
      pending = md->NumPending;
      jsMsgMetaData_Destroy(md);
      if (gap) break;
      last_msg = m;
      if (seq <= cursor) continue; /* applied before (a redelivery) */
      if (seq > last_seq) last_seq = seq;
      if (own_op(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), n->self, self_len)) {
        own++;
        continue;
      }
      char why[SA_ERROR_MESSAGE_MAX];
      const char *ct = NULL;
      if (natsMsgHeader_Get(m, SRV_NATS_CT_HEADER, &ct) != NATS_OK) ct = NULL;
      if (srv_nats_decode(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), ct, &items[k], why,
                          sizeof why) != 0) {
        invalid++;
        char q[300];
        srv_log(SRV_LOG_WARN, "nats",
                "stream=%s seq=%" PRIu64 " subject=%s error=unparsable message skipped: %s",
                n->stream, seq, natsMsg_GetSubject(m), srv_log_q(why, q, sizeof q));
        continue;
      }
      if (!strcmp(items[k].origin, n->self)) {
        own++;
        items_free(&items[k], 1);
        continue;
      }
      if (n->filter_prefix[0] &&
          strncmp(items[k].key, n->filter_prefix, strlen(n->filter_prefix)) != 0) {
        filtered++;
        items_free(&items[k], 1);
        continue;
      }
      items[k].seq = seq;
      k++;
    }
    int rc = 0;
    if (gap) {
      rc = -1;
      force = true;
      pthread_mutex_lock(&n->mu);
      n->gaps++;
      pthread_mutex_unlock(&n->mu);
      srv_log(SRV_LOG_INFO, "nats",
              "stream=%s consumer=%s event=delivery_gap: reading again from seq %" PRIu64,
              n->stream, n->durable, cursor + 1);
    } else if (last_seq > cursor) {
      rc = sub_apply(n, items, k, last_seq, cursor);
    }
    items_free(items, k);
    pthread_mutex_lock(&n->mu);
    n->own_skipped += own;
    n->filtered += filtered;
    n->invalid += invalid;
    n->last_contact_ms = now_ms();
    pthread_mutex_unlock(&n->mu);
    if (rc == 0) {
      if (last_msg) natsMsg_Ack(last_msg, NULL); /* AckAll: every message before it too */
      cursor = last_seq;
      pthread_mutex_lock(&n->mu);
      n->cursor = cursor;
      n->lag = pending;
      pthread_mutex_unlock(&n->mu);
      if (!invalid)
        clear_err(n, n->sub_error);
      else
        set_err(n, n->sub_error, false, "%" PRIu64 " unparsable message(s) skipped", invalid);
    } else {
      /* not applied: the consumer is moved back to cursor + 1 and read again later */
      force = true;
      natsMsgList_Destroy(&list);
      natsSubscription_Destroy(sub);
      sub = NULL;
      if (!nap(n, backoff(&bo))) break;
      continue; /* sub_open moves the consumer back (it delivered past cursor) */
    }
    natsMsgList_Destroy(&list);
  }
  if (sub) natsSubscription_Destroy(sub); /* bound, not created here: the consumer stays */
  free(items);
  return NULL;
}

/* ---- life cycle ----------------------------------------------------------------------------- */

static bool name_ok(const char *s, bool dots) {
  if (!*s) return false;
  for (const char *p = s; *p; p++) {
    char c = *p;
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || (dots && c == '.');
    if (!ok) return false;
  }
  return true;
}

int srv_nats_start(const srv_nats_config *cfg, srv_nats **out, char *err, size_t errlen) {
  *out = NULL;
  if (!cfg->urls || !cfg->urls[0]) {
    snprintf(err, errlen, "the nats transport needs nats_urls (--nats-url)");
    return EINVAL;
  }
  if (!name_ok(cfg->stream, false) || strlen(cfg->stream) > 32) {
    snprintf(err, errlen, "invalid nats_stream \"%s\": 1-32 characters of A-Z a-z 0-9 _ -",
             cfg->stream);
    return EINVAL;
  }
  const char *pf = cfg->subject_prefix;
  bool pfok = name_ok(pf, true) && pf[0] != '.' && pf[strlen(pf) - 1] != '.' && !strstr(pf, "..") &&
              strlen(pf) < 200;
  if (!pfok) {
    snprintf(err, errlen,
             "invalid nats_subject_prefix \"%s\": tokens of A-Z a-z 0-9 _ - separated by dots", pf);
    return EINVAL;
  }
  srv_nats *n = calloc(1, sizeof *n);
  if (!n) return ENOMEM;
  n->client = cfg->client;
  snprintf(n->self, sizeof n->self, "%s", cfg->self_id);
  snprintf(n->stream, sizeof n->stream, "%s", cfg->stream);
  snprintf(n->prefix, sizeof n->prefix, "%s", pf);
  snprintf(n->urls, sizeof n->urls, "%s", cfg->urls);
  snprintf(n->filter_prefix, sizeof n->filter_prefix, "%s",
           cfg->filter_prefix ? cfg->filter_prefix : "");
  snprintf(n->pub_peer, sizeof n->pub_peer, "nats-pub.%s", n->stream);
  snprintf(n->sub_peer, sizeof n->sub_peer, "nats.%s", n->stream);
  /* The durable's name: the node id with '.' (not allowed) written _d and '_' written __. */
  size_t o = 0;
  for (const char *p = n->self; *p && o + 3 < sizeof n->durable; p++) {
    if (*p == '.' || *p == '_') {
      n->durable[o++] = '_';
      n->durable[o++] = *p == '.' ? 'd' : '_';
    } else {
      n->durable[o++] = *p;
    }
  }
  n->durable[o] = '\0';
  srv_nats_filter(n->prefix, n->filter_prefix, n->filter_subject, sizeof n->filter_subject);
  n->replicas = cfg->replicas;
  n->window = cfg->window ? cfg->window : SRV_NATS_WINDOW;
  n->batch = cfg->batch ? cfg->batch : SRV_NATS_BATCH;
  atomic_init(&n->stop, false);
  atomic_init(&n->ever_published, false);
  pthread_mutex_init(&n->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&n->cv, &ca);
  pthread_condattr_destroy(&ca);
  snprintf(n->conn_error, sizeof n->conn_error, "not connected yet");
  n->pub_acked_pos = sa_client_sync_peer_acked(n->client, n->pub_peer);
  uint64_t created = 0, seq = 0; /* what ensure_stream keeps: a restart still sees a loss */
  if (sa_client_sync_peer_epoch(n->client, n->pub_peer, &created, NULL) == 0 &&
      sa_client_sync_cursor(n->client, n->pub_peer, &seq, NULL) == 0) {
    n->stream_created = (int64_t)created;
    n->max_pub_seq = n->kept_pub_seq = seq;
  }

  natsStatus s = nats_Open(-1);
  if (s == NATS_OK) s = natsOptions_Create(&n->opts);
  if (s == NATS_OK) { /* natsOptions_SetURL takes one URL: the list goes to SetServers */
    char copy[sizeof n->urls];
    const char *list[32];
    int cnt = 0;
    snprintf(copy, sizeof copy, "%s", n->urls);
    for (char *save = NULL, *u = strtok_r(copy, ", ", &save); u && cnt < 32;
         u = strtok_r(NULL, ", ", &save))
      list[cnt++] = u;
    s = cnt ? natsOptions_SetServers(n->opts, list, cnt) : NATS_INVALID_ARG;
  }
  if (s == NATS_OK) {
    char name[100];
    snprintf(name, sizeof name, "softadastra %s", n->self);
    s = natsOptions_SetName(n->opts, name);
  }
  if (s == NATS_OK) s = natsOptions_SetMaxReconnect(n->opts, -1);
  if (s == NATS_OK) s = natsOptions_SetReconnectWait(n->opts, 250);
  if (s == NATS_OK) s = natsOptions_SetReconnectJitter(n->opts, 250, 1000);
  if (s == NATS_OK) s = natsOptions_SetTimeout(n->opts, 2000);
  if (s == NATS_OK) s = natsOptions_SetPingInterval(n->opts, 2000);
  if (s == NATS_OK) s = natsOptions_SetMaxPingsOut(n->opts, 2);
  if (s == NATS_OK) s = natsOptions_SetRetryOnFailedConnect(n->opts, true, on_reconnected, n);
  if (s == NATS_OK) s = natsOptions_SetReconnectedCB(n->opts, on_reconnected, n);
  if (s == NATS_OK) s = natsOptions_SetDisconnectedCB(n->opts, on_disconnected, n);
  if (s == NATS_OK && cfg->token && cfg->token[0]) s = natsOptions_SetToken(n->opts, cfg->token);
  if (s == NATS_OK && cfg->creds && cfg->creds[0])
    s = natsOptions_SetUserCredentialsFromFiles(n->opts, cfg->creds, NULL);
  /* The probe's options: the same servers and credentials, one try each,
   * to learn why the hub cannot be reached (nats.c's retrying connection
   * keeps only "no server available"). */
  if (s == NATS_OK) s = natsOptions_Create(&n->probe_opts);
  if (s == NATS_OK) {
    char copy[sizeof n->urls];
    const char *list[32];
    int cnt = 0;
    snprintf(copy, sizeof copy, "%s", n->urls);
    for (char *save = NULL, *u = strtok_r(copy, ", ", &save); u && cnt < 32;
         u = strtok_r(NULL, ", ", &save))
      list[cnt++] = u;
    s = natsOptions_SetServers(n->probe_opts, list, cnt);
  }
  if (s == NATS_OK) s = natsOptions_SetTimeout(n->probe_opts, 1000);
  if (s == NATS_OK) s = natsOptions_SetAllowReconnect(n->probe_opts, false);
  if (s == NATS_OK && cfg->token && cfg->token[0])
    s = natsOptions_SetToken(n->probe_opts, cfg->token);
  if (s == NATS_OK && cfg->creds && cfg->creds[0])
    s = natsOptions_SetUserCredentialsFromFiles(n->probe_opts, cfg->creds, NULL);
  if (s != NATS_OK) {
    snprintf(err, errlen, "nats options: %s", st_text(s));
    srv_nats_free(n);
    return EINVAL;
  }
  s = natsConnection_Connect(&n->nc, n->opts);
  if (s != NATS_OK && s != NATS_NOT_YET_CONNECTED) {
    snprintf(err, errlen, "cannot connect to %s: %s", n->urls, st_text(s));
    srv_nats_free(n);
    return EINVAL;
  }
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = 3000;
  jo.PublishAsync.MaxPending = n->window + 16;
  jo.PublishAsync.AckHandler = on_ack;
  jo.PublishAsync.AckHandlerClosure = n;
  s = natsConnection_JetStream(&n->js, n->nc, &jo);
  if (s != NATS_OK) {
    snprintf(err, errlen, "JetStream context: %s", st_text(s));
    srv_nats_free(n);
    return ENOMEM;
  }
  if (pthread_create(&n->pub_thread, NULL, pub_main, n) != 0) {
    srv_nats_free(n);
    return EAGAIN;
  }
  pthread_setname_np(n->pub_thread, "sa-nats-pub");
  n->pub_started = true;
  if (pthread_create(&n->sub_thread, NULL, sub_main, n) != 0) {
    srv_nats_stop(n);
    srv_nats_free(n);
    return EAGAIN;
  }
  pthread_setname_np(n->sub_thread, "sa-nats-sub");
  n->sub_started = true;
  *out = n;
  return 0;
}

void srv_nats_stop(srv_nats *n) {
  if (!n) return;
  pthread_mutex_lock(&n->mu);
  atomic_store(&n->stop, true);
  pthread_cond_broadcast(&n->cv);
  pthread_mutex_unlock(&n->mu);
  if (n->pub_started) pthread_join(n->pub_thread, NULL);
  if (n->sub_started) pthread_join(n->sub_thread, NULL);
  n->pub_started = n->sub_started = false;
}

void srv_nats_free(srv_nats *n) {
  if (!n) return;
  if (n->js && atomic_load(&n->ever_published)) {
    natsMsgList pending = {0};
    if (js_PublishAsyncGetPendingList(&pending, n->js) == NATS_OK) natsMsgList_Destroy(&pending);
  }
  if (n->nc) natsConnection_Close(n->nc);
  if (n->js) jsCtx_Destroy(n->js);
  if (n->nc) natsConnection_Destroy(n->nc);
  if (n->opts) natsOptions_Destroy(n->opts);
  if (n->probe_opts) natsOptions_Destroy(n->probe_opts);
  nats_CloseAndWait(2000);
  free(n->ring);
  pthread_cond_destroy(&n->cv);
  pthread_mutex_destroy(&n->mu);
  free(n);
}

const char *srv_nats_pub_peer(const srv_nats *n) {
  return n->pub_peer;
}

/* This node's last committed LSN, the end of the feed the publisher reads.
 * sa_client_wait with a zero timeout reads it as it is; sa_client_status
 * would pass the read barrier first, forcing a store commit on every
 * status request and every /metrics scrape. */
static uint64_t committed_lsn(srv_nats *n) {
  uint64_t last = 0;
  (void)sa_client_wait(n->client, UINT64_MAX, 0, &last, NULL);
  return last;
}

size_t srv_nats_peers(srv_nats *n, api_sync_peer *out, size_t max) {
  if (!n || max == 0) return 0;
  char url[256] = "";
  bool up = connected(n);
  if (!up || natsConnection_GetConnectedUrl(n->nc, url, sizeof url) != NATS_OK || !url[0])
    snprintf(url, sizeof url, "%.255s", n->urls);
  const char *le = NULL;
  if (!up) natsConnection_GetLastError(n->nc, &le);
  uint64_t last = committed_lsn(n);
  api_sync_peer *o = out;
  memset(o, 0, sizeof *o);
  pthread_mutex_lock(&n->mu);
  snprintf(o->url, sizeof o->url, "%s", url);
  snprintf(o->node_id, sizeof o->node_id, "%.64s", n->sub_peer);
  const char *err = n->pub_error[0] ? n->pub_error : n->sub_error;
  if (!up) {
    o->state = "unreachable";
    size_t w = strlen(n->conn_error) < sizeof o->last_error - 1 ? strlen(n->conn_error)
                                                                : sizeof o->last_error - 1;
    memcpy(o->last_error, n->conn_error, w);
    o->last_error[w] = '\0';
    if (le && *le && !strstr(n->conn_error, le) && w + 3 < sizeof o->last_error)
      snprintf(o->last_error + w, sizeof o->last_error - w, ": %.150s", le);
  } else if (n->pub_refusing || n->sub_refusing) {
    o->state = "refusing";
    snprintf(o->last_error, sizeof o->last_error, "%s", err);
  } else {
    o->state = n->lag > 0 ? "catching_up" : "connected";
    snprintf(o->last_error, sizeof o->last_error, "%s", err);
  }
  o->cursor = n->cursor;
  o->lag_ops = n->lag;
  o->last_contact_ms = n->last_contact_ms;
  o->ops_received = n->received;
  o->ops_sent = n->acked;
  o->acked = n->pub_acked_pos;
  o->refused_drift = n->drift;
  o->refused_invalid = n->invalid + n->refused;
  o->hub = true;
  o->hub_published = n->published;
  o->hub_acked = n->acked;
  o->hub_in_flight = n->inflight;
  o->hub_unpublished = last > n->pub_acked_pos ? last - n->pub_acked_pos : 0;
  pthread_mutex_unlock(&n->mu);
  return 1;
}

void srv_nats_write_metrics(srv_nats *n, FILE *f) {
  if (!n) return;
  bool up = connected(n);
  uint64_t last = committed_lsn(n);
  pthread_mutex_lock(&n->mu);
  uint64_t v[] = {up,
                  n->published,
                  n->acked,
                  n->inflight,
                  last > n->pub_acked_pos ? last - n->pub_acked_pos : 0,
                  n->pub_errors,
                  n->received,
                  n->applied,
                  n->lag,
                  n->cursor,
                  n->invalid,
                  n->refused,
                  n->drift,
                  n->sub_errors};
  pthread_mutex_unlock(&n->mu);
  static const struct {
    const char *name, *type, *help;
  } m[] = {
      {"softadastra_nats_connected", "gauge", "1 when connected to the NATS hub."},
      {"softadastra_nats_published_total", "counter", "Ops of this node published to the hub."},
      {"softadastra_nats_acked_total", "counter", "Publishes JetStream acknowledged."},
      {"softadastra_nats_pending", "gauge", "Publishes waiting for JetStream's ack."},
      {"softadastra_nats_unpublished_lsn", "gauge",
       "LSNs of this node's feed past the position the hub acknowledged."},
      {"softadastra_nats_publish_errors_total", "counter", "Publishes refused or timed out."},
      {"softadastra_nats_received_total", "counter", "Ops of other nodes applied from the hub."},
      {"softadastra_nats_applied_total", "counter", "Of those, ops that won by the rule."},
      {"softadastra_nats_consumer_lag", "gauge", "Messages the consumer has not read yet."},
      {"softadastra_nats_stream_seq", "gauge", "The stream sequence applied here."},
      {"softadastra_nats_invalid_total", "counter", "Unparsable messages skipped."},
      {"softadastra_nats_refused_total", "counter", "Ops refused by the node (invalid)."},
      {"softadastra_nats_refused_drift_total", "counter", "Batches refused for clock drift."},
      {"softadastra_nats_fetch_errors_total", "counter", "Failed fetches."},
  };
  for (size_t k = 0; k < sizeof m / sizeof m[0]; k++)
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n%s{stream=\"%s\"} %llu\n", m[k].name, m[k].help,
            m[k].name, m[k].type, m[k].name, n->stream, (unsigned long long)v[k]);
}
