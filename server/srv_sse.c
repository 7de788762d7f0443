/*
 * srv_sse.c -- SSE streams and long-polls of GET /v1/changes (see
 * srv_sse.h for the design: suspend/resume driven by one notifier thread).
 *
 * A subscriber (srv_sub) is one waiting request:
 *   - a stream: created in srv_feed_serve, read by libmicrohttpd through
 *     srv_sub_reader (on the connection's worker thread), freed by
 *     srv_sub_free_cb when libmicrohttpd destroys its response;
 *   - a long-poll: created in srv_feed_serve, answered by srv_feed_resume,
 *     freed by srv_feed_done.
 * Every subscriber is on the hub's list from creation to free; `suspended`
 * is only read and written under the hub mutex.
 *
 * The notifier loop: wait in sa_client_wait for an LSN above the hub's
 * last (at most SRV_FEED_TICK_MS), then resume every suspended subscriber
 * that has news (last LSN above what it has seen), whose long-poll wait has
 * ended, whose heartbeat is due, or all of them when stopping.  While no
 * subscriber is suspended it sleeps on the hub's own condition variable
 * instead (signalled when one suspends): waking on every commit of the node
 * for nobody cost a thread switch and a contended lock per write group.
 */
#define _GNU_SOURCE
#include "srv_sse.h"

#include <assert.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "srv_answer.h"

#define SRV_FEED_TICK_MS 500 /* longest notifier sleep: bounds deadline lateness and stop */
#define SRV_FEED_BLOCK 4096  /* libmicrohttpd read block of a stream */

typedef struct srv_sub {
  struct srv_sub *prev, *next; /* the hub's list */
  srv_feed *hub;               /* owner */
  struct MHD_Connection *con;  /* the request's connection (NULL: a front-loop wait) */
  void (*wake)(void *);        /* a front-loop wait: called once per suspension */
  void *wake_cls;              /* its argument */
  api_feed *feed;              /* the cursor (owned) */
  bool stream;                 /* SSE stream (else long-poll) */
  bool suspended;              /* suspended by us; under hub->mu */
  uint64_t deadline_ns;        /* long-poll: when the wait ends */
  uint64_t beat_ns;            /* stream: when the next heartbeat is due */
  char *buf;                   /* stream: bytes not yet handed to libmicrohttpd */
  size_t len, off;             /* stream: bytes in buf, bytes handed over */
  bool hello_sent;             /* stream: the retry advice and ready event went out */
  bool ending;                 /* stream: end after buf drains */
  int fd;                      /* stream: the connection's socket, for hang-up checks */
  bool hangup;                 /* stream: the client went away while suspended */
} srv_sub;

struct srv_feed {
  sa_client *client;      /* borrowed */
  pthread_mutex_t mu;     /* guards everything below but the atomics */
  pthread_cond_t cv;      /* CLOCK_MONOTONIC: a subscriber suspended, or stop */
  pthread_t thread;       /* the notifier */
  bool started;           /* thread started */
  bool quit;              /* notifier: leave */
  bool stopping;          /* shutdown: no new requests, no suspensions */
  srv_sub *subs;          /* every live subscriber */
  unsigned streams;       /* SSE streams on the list */
  unsigned polls;         /* long-polls on the list */
  unsigned max_streams;   /* bound on streams */
  uint64_t heartbeat_ns;  /* stream heartbeat period */
  uint64_t last;          /* the node's last LSN as the notifier saw it */
  atomic_ullong total;    /* streams started */
  atomic_ullong rejected; /* streams refused (503) */
  atomic_ullong bytes;    /* SSE bytes handed over */
};

static uint64_t srv_feed_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void srv_feed_link(srv_feed *h, srv_sub *s) {
  s->prev = NULL;
  s->next = h->subs;
  if (h->subs) h->subs->prev = s;
  h->subs = s;
  if (s->stream)
    h->streams++;
  else
    h->polls++;
}

static void srv_feed_unlink(srv_feed *h, srv_sub *s) {
  if (s->prev)
    s->prev->next = s->next;
  else
    h->subs = s->next;
  if (s->next) s->next->prev = s->prev;
  if (s->stream)
    h->streams--;
  else
    h->polls--;
}

/* Suspends s's connection unless something is already there to say.  Call
 * with h->mu held.  Returns true when suspended. */
static bool srv_feed_suspend_locked(srv_feed *h, srv_sub *s) {
  assert(!s->suspended);
  if (h->stopping || h->last > api_feed_seen(s->feed)) return false;
  if (!s->stream && srv_feed_now() >= s->deadline_ns) return false;
  s->suspended = true;
  if (s->con) MHD_suspend_connection(s->con);
  pthread_cond_signal(&h->cv); /* the notifier may be idle */
  return true;
}

/* Ends s's suspension: resumes its libmicrohttpd connection, or tells the
 * front loop that holds it.  Call with h->mu held and s->suspended set. */
static void srv_sub_resume_locked(srv_sub *s) {
  s->suspended = false;
  if (s->con)
    MHD_resume_connection(s->con);
  else
    s->wake(s->wake_cls);
}

static bool srv_feed_any_suspended(const srv_feed *h) {
  for (const srv_sub *s = h->subs; s; s = s->next)
    if (s->suspended) return true;
  return false;
}

/* ---- the notifier -------------------------------------------------------- */

/* libmicrohttpd does not watch a suspended connection, so a client that
 * closed its stream would hold a slot until the next heartbeat write fails
 * (two writes, in fact).  Instead the notifier polls the sockets of the
 * suspended streams (no data is read) and resumes the ones that hung up;
 * their reader then ends them.  Call with h->mu held. */
static void srv_feed_check_hangups(srv_feed *h) {
  struct pollfd pf[64];
  srv_sub *who[64];
  srv_sub *s = h->subs;
  while (s) { /* in rounds of 64 */
    nfds_t n = 0;
    for (; s && n < 64; s = s->next)
      if (s->stream && s->suspended && s->fd >= 0) {
        pf[n].fd = s->fd;
        pf[n].events = POLLRDHUP;
        pf[n].revents = 0;
        who[n++] = s;
      }
    if (n == 0 || poll(pf, n, 0) <= 0) continue;
    for (nfds_t i = 0; i < n; i++)
      if (pf[i].revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) {
        who[i]->hangup = true;
        who[i]->suspended = false;
        MHD_resume_connection(who[i]->con);
      }
  }
}

static void *srv_feed_main(void *arg) {
  srv_feed *h = arg;
  pthread_setname_np(pthread_self(), "sa-feed"); /* top -H, perf, gdb; docs/threads.md */
  pthread_mutex_lock(&h->mu);
  uint64_t last = h->last;
  uint32_t sleep_ms = SRV_FEED_TICK_MS;
  pthread_mutex_unlock(&h->mu);
  for (;;) {
    pthread_mutex_lock(&h->mu);
    while (!h->quit && !h->stopping && !srv_feed_any_suspended(h)) { /* idle: nobody waits */
      uint64_t due = srv_feed_now() + (uint64_t)SRV_FEED_TICK_MS * 1000000u;
      struct timespec ts = {(time_t)(due / 1000000000u), (long)(due % 1000000000u)};
      pthread_cond_timedwait(&h->cv, &h->mu, &ts);
    }
    pthread_mutex_unlock(&h->mu);
    uint64_t now_lsn = last;
    int rc = sa_client_wait(h->client, last, sleep_ms, &now_lsn, NULL);
    pthread_mutex_lock(&h->mu);
    if (h->quit) {
      pthread_mutex_unlock(&h->mu);
      break;
    }
    if (now_lsn > h->last) h->last = now_lsn;
    last = h->last;
    uint64_t now = srv_feed_now();
    uint64_t next = now + (uint64_t)SRV_FEED_TICK_MS * 1000000u; /* the next deadline or beat */
    for (srv_sub *s = h->subs; s; s = s->next) {
      if (!s->suspended) continue;
      uint64_t at = s->stream ? s->beat_ns : s->deadline_ns;
      bool news = h->last > api_feed_seen(s->feed);
      if (news || now >= at || h->stopping || rc == SA_ECLOSED) {
        srv_sub_resume_locked(s);
      } else if (at < next) {
        next = at;
      }
    }
    srv_feed_check_hangups(h);
    /* Sleep until the next due time (at least 1 ms); a subscriber that
     * suspends meanwhile is served at most a TICK late. */
    sleep_ms = (uint32_t)((next - now) / 1000000u) + 1;
    pthread_mutex_unlock(&h->mu);
    if (rc == SA_ECLOSED) { /* the node is closing: nothing more will come */
      struct timespec nap = {0, SRV_FEED_TICK_MS * 1000000L};
      nanosleep(&nap, NULL);
    }
  }
  return NULL;
}

int srv_feed_create(sa_client *c, unsigned max_streams, unsigned heartbeat_s, srv_feed **out) {
  *out = NULL;
  srv_feed *h = calloc(1, sizeof *h);
  if (!h) return SA_ENOMEM;
  h->client = c;
  h->max_streams = max_streams;
  h->heartbeat_ns = (uint64_t)(heartbeat_s ? heartbeat_s : 15) * 1000000000u;
  atomic_init(&h->total, 0);
  atomic_init(&h->rejected, 0);
  atomic_init(&h->bytes, 0);
  sa_status st;
  if (sa_client_status(c, &st, NULL) == 0) h->last = st.last_lsn;
  pthread_mutex_init(&h->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&h->cv, &ca);
  pthread_condattr_destroy(&ca);
  if (pthread_create(&h->thread, NULL, srv_feed_main, h) != 0) {
    pthread_cond_destroy(&h->cv);
    pthread_mutex_destroy(&h->mu);
    free(h);
    return SA_EINTERNAL;
  }
  h->started = true;
  *out = h;
  return 0;
}

void srv_feed_shutdown(srv_feed *h) {
  if (!h) return;
  pthread_mutex_lock(&h->mu);
  h->stopping = true;
  pthread_cond_signal(&h->cv);
  for (srv_sub *s = h->subs; s; s = s->next)
    if (s->suspended) srv_sub_resume_locked(s);
  pthread_mutex_unlock(&h->mu);
}

void srv_feed_destroy(srv_feed *h) {
  if (!h) return;
  pthread_mutex_lock(&h->mu);
  h->quit = true;
  h->stopping = true;
  pthread_cond_signal(&h->cv);
  pthread_mutex_unlock(&h->mu);
  if (h->started) pthread_join(h->thread, NULL);
  /* The daemon is stopped: every subscriber has been freed by now. */
  assert(h->subs == NULL);
  pthread_mutex_destroy(&h->mu);
  pthread_cond_destroy(&h->cv);
  free(h);
}

void srv_feed_get_stats(srv_feed *h, srv_feed_stats *out) {
  memset(out, 0, sizeof *out);
  if (!h) return;
  pthread_mutex_lock(&h->mu);
  out->streams_open = h->streams;
  out->polls_waiting = h->polls;
  pthread_mutex_unlock(&h->mu);
  out->streams_total = atomic_load(&h->total);
  out->streams_rejected = atomic_load(&h->rejected);
  out->bytes_sent = atomic_load(&h->bytes);
}

void srv_feed_write_metrics(void *hub, FILE *f) {
  srv_feed_stats st;
  srv_feed_get_stats(hub, &st);
  fprintf(f,
          "# HELP softadastra_feed_streams_open Change-feed SSE streams open now.\n"
          "# TYPE softadastra_feed_streams_open gauge\n"
          "softadastra_feed_streams_open %llu\n"
          "# HELP softadastra_feed_streams_total Change-feed SSE streams started.\n"
          "# TYPE softadastra_feed_streams_total counter\n"
          "softadastra_feed_streams_total %llu\n"
          "# HELP softadastra_feed_streams_rejected_total Streams refused over max_streams.\n"
          "# TYPE softadastra_feed_streams_rejected_total counter\n"
          "softadastra_feed_streams_rejected_total %llu\n"
          "# HELP softadastra_feed_polls_waiting Change-feed long-polls waiting now.\n"
          "# TYPE softadastra_feed_polls_waiting gauge\n"
          "softadastra_feed_polls_waiting %llu\n"
          "# HELP softadastra_feed_sse_bytes_total Bytes sent on change-feed streams.\n"
          "# TYPE softadastra_feed_sse_bytes_total counter\n"
          "softadastra_feed_sse_bytes_total %llu\n",
          (unsigned long long)st.streams_open, (unsigned long long)st.streams_total,
          (unsigned long long)st.streams_rejected, (unsigned long long)st.polls_waiting,
          (unsigned long long)st.bytes_sent);
}

/* ---- responses ----------------------------------------------------------- */

/* Queues a buffered response; frees resp in every case. */
static enum MHD_Result srv_feed_queue(struct MHD_Connection *con, api_response *resp) {
  return srv_answer_mhd(con, resp);
}

/* ---- streams --------------------------------------------------------------- */

/* Sets s->buf to a copy of the static text t. */
static bool srv_sub_set_text(srv_sub *s, const char *t) {
  free(s->buf);
  s->off = 0;
  s->len = strlen(t);
  s->buf = strdup(t);
  if (!s->buf) s->len = 0;
  return s->buf != NULL;
}

/* libmicrohttpd's content reader of a stream (worker thread).  Hands over
 * pending bytes; else makes the next bytes (bye, heartbeat, events); else
 * suspends the connection and returns 0. */
static ssize_t srv_sub_reader(void *cls, uint64_t pos, char *out, size_t max) {
  srv_sub *s = cls;
  srv_feed *h = s->hub;
  for (int turn = 0; turn < 8; turn++) { /* bounded: each turn makes bytes or ends */
    if (s->off < s->len) {
      size_t n = s->len - s->off;
      if (n > max) n = max;
      memcpy(out, s->buf + s->off, n);
      s->off += n;
      atomic_fetch_add(&h->bytes, n);
      return (ssize_t)n;
    }
    free(s->buf);
    s->buf = NULL;
    s->len = s->off = 0;
    if (s->ending) return MHD_CONTENT_READER_END_OF_STREAM;
    if (s->hangup) return MHD_CONTENT_READER_END_WITH_ERROR; /* closes the connection */
    uint64_t now = srv_feed_now();
    if (!s->hello_sent) {
      s->hello_sent = true;
      s->buf = api_feed_stream_hello(s->feed, &s->len);
      if (!s->buf) return MHD_CONTENT_READER_END_WITH_ERROR;
      s->beat_ns = now + h->heartbeat_ns;
      continue;
    }
    pthread_mutex_lock(&h->mu);
    bool stopping = h->stopping;
    pthread_mutex_unlock(&h->mu);
    if (stopping) {
      s->ending = true;
      if (!srv_sub_set_text(s, api_feed_sse_bye())) return MHD_CONTENT_READER_END_OF_STREAM;
      continue;
    }
    char *b = NULL;
    size_t n = 0;
    int rc = api_feed_stream_next(s->feed, &b, &n);
    if (rc < 0) return MHD_CONTENT_READER_END_WITH_ERROR;
    if (rc == 1) s->ending = true; /* the feed lost our position: b says "gone" */
    if (b && n) {
      s->buf = b;
      s->len = n;
      s->beat_ns = now + h->heartbeat_ns;
      continue;
    }
    free(b);
    if (now >= s->beat_ns) {
      s->beat_ns = now + h->heartbeat_ns;
      if (!srv_sub_set_text(s, api_feed_sse_heartbeat())) return MHD_CONTENT_READER_END_WITH_ERROR;
      continue;
    }
    pthread_mutex_lock(&h->mu);
    bool suspended = srv_feed_suspend_locked(h, s);
    pthread_mutex_unlock(&h->mu);
    if (suspended) return 0; /* called again once resumed */
  }
  return 0; /* nothing after the bounded turns: libmicrohttpd asks again */
}

static void srv_sub_free(srv_sub *s) {
  api_feed_free(s->feed);
  free(s->buf);
  free(s);
}

/* libmicrohttpd destroys a stream's response: the stream is over. */
static void srv_sub_free_cb(void *cls) {
  srv_sub *s = cls;
  srv_feed *h = s->hub;
  pthread_mutex_lock(&h->mu);
  assert(!s->suspended);
  srv_feed_unlink(h, s);
  pthread_mutex_unlock(&h->mu);
  srv_sub_free(s);
}

static enum MHD_Result srv_feed_start_stream(srv_feed *h, struct MHD_Connection *con,
                                             api_response *resp, api_feed *f) {
  srv_sub *s = calloc(1, sizeof *s);
  if (!s) {
    api_feed_free(f);
    return srv_feed_queue(con, api_error_response(NULL, 500, "internal_error", "out of memory"));
  }
  s->hub = h;
  s->con = con;
  s->feed = f;
  s->stream = true;
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(con, MHD_CONNECTION_INFO_CONNECTION_FD);
  s->fd = ci ? (int)ci->connect_fd : -1;
  pthread_mutex_lock(&h->mu);
  const char *why = NULL;
  int status = 503;
  char msg[160];
  if (h->stopping) {
    why = "shutting_down";
    snprintf(msg, sizeof msg, "the node is shutting down");
  } else if (h->streams >= h->max_streams) {
    why = "too_many_streams";
    snprintf(msg, sizeof msg,
             "%u change streams are open, the limit (max_streams) is %u: close one, or use "
             "long-polling (wait=SECONDS)",
             h->streams, h->max_streams);
    atomic_fetch_add(&h->rejected, 1);
  } else {
    srv_feed_link(h, s);
    atomic_fetch_add(&h->total, 1);
  }
  pthread_mutex_unlock(&h->mu);
  if (why) {
    srv_sub_free(s);
    api_response_free(resp);
    api_response *e = api_error_response(NULL, status, why, msg);
    if (e->n_headers < API_MAX_HEADERS && (e->headers[e->n_headers].value = strdup("5")))
      e->headers[e->n_headers++].name = "Retry-After";
    return srv_feed_queue(con, e);
  }
  struct MHD_Response *m = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, SRV_FEED_BLOCK,
                                                             srv_sub_reader, s, srv_sub_free_cb);
  if (!m) {
    pthread_mutex_lock(&h->mu);
    srv_feed_unlink(h, s);
    pthread_mutex_unlock(&h->mu);
    srv_sub_free(s);
    api_response_free(resp);
    return MHD_NO;
  }
  srv_answer_mhd_headers(m, resp);
  enum MHD_Result rc = MHD_queue_response(con, (unsigned)resp->status, m);
  MHD_destroy_response(m); /* on failure this frees s through srv_sub_free_cb */
  api_response_free(resp);
  return rc;
}

/* ---- long-polls ------------------------------------------------------------ */

/* Answers the long-poll in s now or suspends it again.  *slot holds s. */
static enum MHD_Result srv_feed_poll(srv_feed *h, struct MHD_Connection *con, srv_sub *s) {
  for (int turn = 0; turn < 4; turn++) { /* bounded: a turn answers or suspends */
    pthread_mutex_lock(&h->mu);
    bool stopping = h->stopping; /* read under mu: shutdown sets it from the main thread */
    bool final = stopping || srv_feed_now() >= s->deadline_ns;
    pthread_mutex_unlock(&h->mu);
    api_response *r = api_feed_page(s->feed, final);
    if (r) {
      if (stopping) r->close = true;
      return srv_feed_queue(con, r);
    }
    pthread_mutex_lock(&h->mu);
    bool suspended = srv_feed_suspend_locked(h, s);
    pthread_mutex_unlock(&h->mu);
    if (suspended) return MHD_YES;
  }
  return srv_feed_queue(con, api_feed_page(s->feed, true));
}

enum MHD_Result srv_feed_serve(srv_feed *h, struct MHD_Connection *con, api_response *resp,
                               api_feed *deferred, bool head, void **slot) {
  if (api_feed_get_mode(deferred) == API_FEED_STREAM) {
    if (head) {
      api_feed_free(deferred);
      return srv_feed_queue(con, resp);
    }
    return srv_feed_start_stream(h, con, resp, deferred);
  }
  api_response_free(resp); /* the placeholder of a long-poll */
  srv_sub *s = calloc(1, sizeof *s);
  if (!s) {
    api_feed_free(deferred);
    return srv_feed_queue(con, api_error_response(NULL, 500, "internal_error", "out of memory"));
  }
  s->hub = h;
  s->con = con;
  s->feed = deferred;
  s->deadline_ns = srv_feed_now() + (uint64_t)api_feed_wait_ms(deferred) * 1000000u;
  pthread_mutex_lock(&h->mu);
  srv_feed_link(h, s);
  pthread_mutex_unlock(&h->mu);
  *slot = s;
  return srv_feed_poll(h, con, s);
}

enum MHD_Result srv_feed_resume(srv_feed *h, struct MHD_Connection *con, void **slot) {
  srv_sub *s = *slot;
  return srv_feed_poll(h, con, s);
}

void srv_feed_done(srv_feed *h, void **slot) {
  srv_sub *s = *slot;
  if (!s) return;
  pthread_mutex_lock(&h->mu);
  assert(!s->suspended);
  srv_feed_unlink(h, s);
  pthread_mutex_unlock(&h->mu);
  srv_sub_free(s);
  *slot = NULL;
}

/* ---- long-polls of the front loop ------------------------------------------ *
 *
 * The same subscriber without a libmicrohttpd connection: "suspended" means
 * the loop holds the connection parked, and a resume is a call of wake. */

srv_sub *srv_feed_wait_start(srv_feed *h, api_feed *f, void (*wake)(void *), void *cls) {
  srv_sub *s = calloc(1, sizeof *s);
  if (!s) {
    api_feed_free(f);
    return NULL;
  }
  s->hub = h;
  s->feed = f;
  s->wake = wake;
  s->wake_cls = cls;
  s->fd = -1;
  s->deadline_ns = srv_feed_now() + (uint64_t)api_feed_wait_ms(f) * 1000000u;
  pthread_mutex_lock(&h->mu);
  srv_feed_link(h, s);
  pthread_mutex_unlock(&h->mu);
  return s;
}

api_response *srv_feed_wait_poll(srv_feed *h, srv_sub *s) {
  for (int turn = 0; turn < 4; turn++) { /* bounded: a turn answers or suspends */
    pthread_mutex_lock(&h->mu);
    bool stopping = h->stopping;
    bool final = stopping || srv_feed_now() >= s->deadline_ns;
    pthread_mutex_unlock(&h->mu);
    api_response *r = api_feed_page(s->feed, final);
    if (r) {
      if (stopping) r->close = true;
      return r;
    }
    pthread_mutex_lock(&h->mu);
    bool suspended = srv_feed_suspend_locked(h, s);
    pthread_mutex_unlock(&h->mu);
    if (suspended) return NULL;
  }
  return api_feed_page(s->feed, true);
}

bool srv_feed_wait_cancel(srv_feed *h, srv_sub *s) {
  pthread_mutex_lock(&h->mu);
  bool now = s->suspended;
  if (now) {
    s->suspended = false;
    srv_feed_unlink(h, s);
  }
  pthread_mutex_unlock(&h->mu);
  if (now) srv_sub_free(s);
  return now;
}

void srv_feed_wait_end(srv_feed *h, srv_sub *s) {
  pthread_mutex_lock(&h->mu);
  assert(!s->suspended);
  srv_feed_unlink(h, s);
  pthread_mutex_unlock(&h->mu);
  srv_sub_free(s);
}
