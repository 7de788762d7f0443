/*
 * srv_front.c -- the front loop (see srv_front.h).
 *
 * A connection's life in a loop:
 *   - accepted by whichever loop epoll woke (the listening socket is in
 *     every loop, EPOLLEXCLUSIVE), given to the loops in turn;
 *   - registered edge-triggered for input, output and peer half-close;
 *     `readable` records that input may be waiting;
 *   - at a request boundary, the loop peeks (MSG_PEEK) and the gate reads
 *     the request (srv_http_parse): every request on every connection goes
 *     through it.  MORE: wait for the next edge.  REFUSE: a JSON error with
 *     Connection: close, and the connection closes after it (what arrived
 *     behind the refused head is read and dropped, never parsed).  PASS: a
 *     checked request for another route; the connection goes to
 *     libmicrohttpd with the peeked bytes unread, for that one request:
 *     every answer libmicrohttpd sends says Connection: close
 *     (srv_answer_mhd_headers), so it never parses a second request.  OURS:
 *     exactly the request's bytes are consumed (MSG_TRUNC: discarded, the
 *     peeked copy is the one used), and the request is served: GET answers
 *     at once; PUT and DELETE queue the write on the node (api_write) and
 *     the connection waits, reading nothing, until the writer reports
 *     the write settled; the body and headers stay in the connection's
 *     buffer until then, as the node requires.  A sync pull's long-poll
 *     (GET /v1/sync/ops with wait) waits the same way, parked in the feed
 *     hub (srv_sse.h) until it has a page or its wait ends; a puller that
 *     half-closes or leaves meanwhile ends it at once;
 *   - answers go out in one sendmsg (head + body); the rest, if the socket
 *     is full, is kept and sent on the next output edge before anything
 *     else is read (responses stay in request order);
 *   - closed on peer close, on Connection: close, on an error, when idle
 *     past the timeout, or at shutdown.  A connection whose write is queued
 *     is never freed before the write settles: it is only marked dead.
 * Freed connections go to a graveyard emptied after each batch of epoll
 * events, so an event later in the same batch never touches freed memory.
 */
#define _GNU_SOURCE
#include "srv_front.h"

#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "api_feed.h"
#include "srv_answer.h"
#include "srv_chunked.h"
#include "srv_http.h"
#include "srv_log.h"
#include "srv_sse.h"

#define FRONT_BUF 16384       /* bytes of one request the loop serves, head and body */
#define FRONT_EVENTS 128      /* epoll events per wake */
#define FRONT_ACCEPTS 64      /* connections accepted per wake */
#define FRONT_SWEEP_MS 500    /* idle connections are looked for this often */
#define FRONT_PAUSE_MS 100    /* accepting pauses this long when out of descriptors */
#define FRONT_DISCARD 65536   /* unanswered input read and dropped before a close */
#define FRONT_BODY_STEP 65536 /* a body buffer grows by at least this much as bytes arrive */

enum { FRONT_RUN, FRONT_DRAIN, FRONT_STOP };

typedef struct floop floop;

typedef struct fconn {
  floop *l;                  /* the loop that serves it */
  struct fconn *prev, *next; /* the loop's connections */
  struct fconn *link;        /* the loop's incoming, settled or graveyard list */
  int fd;                    /* -1 once closed or handed off */
  bool readable;             /* input may be waiting (an edge since the last drain) */
  bool rdhup;                /* the peer closed its side: no more input will come */
  bool dead;                 /* closed while a write was queued: free once it settles */
  bool pending;              /* a write is queued on the node, or a long-poll waits (sub) */
  bool close_after;          /* close once the answer is out */
  api_write *write;          /* the queued write */
  srv_sub *sub;              /* the waiting long-poll (GET /v1/sync/ops), in the feed hub */
  char *out;                 /* unsent answer bytes */
  size_t out_len, out_off;   /* bytes at out, bytes sent */
  long long last_ms;         /* last input, answer or output progress (CLOCK_MONOTONIC) */
  int outq;                  /* the send queue's bytes at the last sweep (SIOCOUTQ) */
  struct timespec t0;        /* the request's start (debug log) */
  srv_http_req h;            /* the request being served (into buf) */
  api_request req;           /* its API form */
  api_gated gated;           /* api_precheck's routing of a request whose body follows */
  bool in_body;              /* its head is consumed, its body is being read */
  bool counted;              /* the request at hand counts in *active (fc_start .. its answer) */
  bool head_req;             /* a HEAD: the answer carries no body */
  srv_chunked ck;            /* the decoder of a chunked body */
  char *body;                /* a body read after its head (heap; NULL: in buf) */
  size_t body_len;           /* bytes at body */
  size_t body_cap;           /* allocated at body */
  uint64_t body_want;        /* Content-Length bytes still to read */
  socklen_t peer_len;        /* bytes at peer */
  struct sockaddr_storage peer;
  char buf[FRONT_BUF]; /* the peeked bytes of the request at hand */
} fconn;

struct floop {
  srv_front *f;
  pthread_t th;
  int ep;                  /* epoll */
  int evfd;                /* wakes the loop: connections given, writes settled, state */
  int state;               /* the front's state this loop has acted on */
  bool listening;          /* the listening socket is in ep */
  long long resume_ms;     /* when to listen again after running out of descriptors */
  long long warned_ms;     /* last "out of descriptors" warning */
  pthread_mutex_t mu;      /* guards incoming and settled */
  fconn *incoming;         /* connections given to this loop */
  fconn *settled;          /* connections whose write settled or long-poll woke */
  fconn *conns;            /* the loop's connections */
  fconn *graveyard;        /* closed, freed after the batch */
  size_t pending;          /* connections with a queued write or a waiting long-poll */
  char scratch[FRONT_BUF]; /* peeked bytes of a chunked body being decoded */
  time_t date_sec;         /* second of date */
  char date[40];           /* the Date header's value */
  size_t date_len;         /* its length */
};

struct srv_front {
  srv_front_config c;
  atomic_int state; /* FRONT_RUN, FRONT_DRAIN, FRONT_STOP */
  atomic_uint next; /* round-robin of accepted connections */
  unsigned n;       /* loops */
  floop *loops;
};

static long long front_now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &t);
  return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void front_wake(floop *l) {
  uint64_t one = 1;
  ssize_t n = write(l->evfd, &one, sizeof one);
  (void)n; /* EAGAIN: the counter is already non-zero, the loop wakes anyway */
}

/* ---- connections --------------------------------------------------------- */

static void fc_unlink(floop *l, fconn *c) {
  if (c->prev)
    c->prev->next = c->next;
  else
    l->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  c->prev = c->next = NULL;
}

/* A request starts (its head was accepted or refused): it counts among the
 * requests being served until its answer (or its connection's end). */
static void fc_start(floop *l, fconn *c) {
  if (c->counted) return;
  c->counted = true;
  atomic_fetch_add(l->f->c.active, 1);
  atomic_fetch_add(l->f->c.total, 1);
}

static void fc_end(floop *l, fconn *c) {
  if (!c->counted) return;
  c->counted = false;
  atomic_fetch_sub(l->f->c.active, 1);
}

/* Closes c (or marks it dead while its write is queued) and queues it for
 * freeing after the current batch of events. */
static void fc_close(floop *l, fconn *c) {
  if (c->fd < 0) return;
  if (c->pending && c->sub && srv_feed_wait_cancel(l->f->c.feed, c->sub)) {
    c->sub = NULL; /* a long-poll that was waiting: over now */
    c->pending = false;
    l->pending--;
  }
  if (c->pending) {
    c->dead = true;
    return;
  }
  close(c->fd); /* also leaves the epoll set */
  c->fd = -1;
  c->in_body = false;
  fc_end(l, c); /* a request cut short (its body never whole) is over */
  free(c->out);
  c->out = NULL;
  free(c->body);
  c->body = NULL;
  fc_unlink(l, c);
  atomic_fetch_sub(l->f->c.open, 1);
  c->link = l->graveyard;
  l->graveyard = c;
}

/* Gives c to libmicrohttpd, every byte unread. */
static void fc_handoff(floop *l, fconn *c) {
  srv_front *f = l->f;
  if (atomic_load(&f->state) == FRONT_STOP) {
    fc_close(l, c);
    return;
  }
  epoll_ctl(l->ep, EPOLL_CTL_DEL, c->fd, NULL);
  int fd = c->fd;
  c->fd = -1;
  fc_unlink(l, c);
  c->link = l->graveyard;
  l->graveyard = c;
  if (f->c.handoff(f->c.handoff_cls, fd, (struct sockaddr *)&c->peer, c->peer_len) != 0)
    atomic_fetch_sub(f->c.open, 1);
}

/* Sends what is left of c->out.  Returns -1 on a socket error.  Progress
 * counts as activity for the idle timeout (connection_timeout_s). */
static int fc_flush(fconn *c) {
  while (c->out_off < c->out_len) {
    ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      return -1;
    }
    c->out_off += (size_t)n;
    c->last_ms = front_now_ms(); /* a slow reader that keeps reading is not idle */
  }
  free(c->out);
  c->out = NULL;
  c->out_len = c->out_off = 0;
  return 0;
}

/* The Date header's value (IMF-fixdate), formatted once a second; its
 * length is l->date_len. */
static const char *fl_date(floop *l) {
  time_t now = time(NULL);
  if (now != l->date_sec) {
    l->date_len = srv_answer_date(l->date, now);
    l->date_sec = now;
  }
  return l->date;
}

/* Sends r (freed here) as the answer to c's request, which ends it. */
static void fc_answer(floop *l, fconn *c, api_response *r) {
  srv_front *f = l->f;
  if (f->c.log_requests)
    srv_answer_log(c->req.method, c->req.target, r->status, &c->t0, c->req.body_len);
  size_t blen = srv_answer_bodiless(r->status) || c->head_req ? 0 : r->body_len;
  c->close_after = c->close_after || c->h.close || r->close || c->h.version == 10;
  size_t need = srv_answer_head_size(r);
  char stack[2048];
  char *hb = need <= sizeof stack ? stack : malloc(need);
  if (!hb) {
    api_response_free(r);
    c->close_after = true;
    fc_end(l, c);
    return;
  }
  const char *date = fl_date(l);
  size_t hlen = srv_answer_head(hb, r, c->close_after, date, l->date_len);
  assert(hlen <= need);
  struct iovec iov[2] = {{hb, hlen}, {r->body, blen}};
  struct msghdr mh = {.msg_iov = iov, .msg_iovlen = blen ? 2 : 1};
  ssize_t sent;
  do
    sent = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
  while (sent < 0 && errno == EINTR);
  if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) sent = 0;
  if (sent < 0) {
    c->close_after = true; /* the peer is gone; nothing more to send */
  } else if ((size_t)sent < hlen + blen) {
    size_t left = hlen + blen - (size_t)sent;
    c->out = malloc(left);
    if (!c->out) {
      c->close_after = true;
    } else {
      size_t o = 0;
      if ((size_t)sent < hlen) {
        memcpy(c->out, hb + sent, hlen - (size_t)sent);
        o = hlen - (size_t)sent;
      }
      memcpy(c->out + o, r->body + ((size_t)sent > hlen ? (size_t)sent - hlen : 0), left - o);
      c->out_len = left;
      c->out_off = 0;
    }
  }
  if (hb != stack) free(hb);
  api_response_free(r);
  fc_end(l, c);
  c->last_ms = front_now_ms();
  free(c->body); /* the request is over: its body goes (a write has settled) */
  c->body = NULL;
  c->body_len = c->body_cap = 0;
}

/* Answers a request the gate refused (c->h.status, code, why) and closes the
 * connection after the answer: the bytes after the refused head are never
 * parsed (fc_run discards what has arrived of them before the close). */
static void fc_refuse(floop *l, fconn *c) {
  srv_front *f = l->f;
  if (!c->counted && f->c.log_requests) clock_gettime(CLOCK_MONOTONIC, &c->t0);
  fc_start(l, c);
  if (!c->in_body) c->req = (api_request){0}; /* a body's refusal keeps its method and target */
  c->head_req = false;
  c->in_body = false;
  srv_log(SRV_LOG_DEBUG, "request_refused", "status=%d code=%s", c->h.status, c->h.code);
  api_response *r = api_error_response(f->c.api, c->h.status, c->h.code, c->h.why);
  r->close = true;
  c->close_after = true;
  fc_answer(l, c, r);
}

static const char *fc_header(void *cls, const char *name) {
  const srv_http_field *fld = srv_http_find(&((fconn *)cls)->h, name);
  return fld ? fld->value : NULL;
}

static bool fc_loop_poll(const srv_front *f, const srv_http_req *h);

static void fc_settled(void *cls) {
  fconn *c = cls;
  floop *l = c->l;
  pthread_mutex_lock(&l->mu);
  bool first = !l->settled && !l->incoming;
  c->link = l->settled;
  l->settled = c;
  pthread_mutex_unlock(&l->mu);
  if (first) front_wake(l);
}

/* NUL-terminates method, target and values in place: each is followed by
 * a separator byte inside the head (srv_http.h), and sets up c->req. */
static void fc_request(floop *l, fconn *c) {
  srv_http_req *h = &c->h;
  c->buf[h->method - c->buf + h->method_len] = '\0';
  c->buf[h->target - c->buf + h->target_len] = '\0'; /* the path ends there too */
  for (size_t i = 0; i < h->n_fields; i++)
    c->buf[h->fields[i].value - c->buf + h->fields[i].value_len] = '\0';
  if (l->f->c.log_requests) clock_gettime(CLOCK_MONOTONIC, &c->t0);
  fc_start(l, c);
  bool get = strcmp(h->method, "GET") == 0;
  c->head_req = strcmp(h->method, "HEAD") == 0;
  memset(&c->gated, 0, sizeof c->gated);
  c->req = (api_request){
      .method = h->method,
      .target = h->path, /* origin-form: an absolute-form target's path */
      .header = fc_header,
      .header_cls = c,
      /* A write (PUT, DELETE, batch) may be queued on the node; a GET or
       * HEAD is answered at once, but for a sync pull's long-poll, which
       * waits in the feed hub (the other feed routes are libmicrohttpd's). */
      .can_defer = (!get && !c->head_req) || fc_loop_poll(l->f, h),
  };
}

/* Serves c->req with the body given (its bytes already consumed). */
static void fc_serve(floop *l, fconn *c, const char *body, size_t body_len) {
  srv_front *f = l->f;
  c->req.body = body_len ? body : NULL;
  c->req.body_len = body_len;
  if (c->gated.passed) c->req.gated = &c->gated;
  api_response *r = api_handle(f->c.api, &c->req);
  if (r->write) {
    c->write = r->write;
    r->write = NULL;
    api_response_free(r);
    c->pending = true;
    l->pending++;
    api_write_arm(c->write, fc_settled, c);
    return;
  }
  if (r->feed && f->c.feed && api_feed_get_mode(r->feed) != API_FEED_STREAM) {
    /* A sync pull's long-poll: it waits in the feed hub (fc_settled is its
     * wake), the connection parked as for a write. */
    api_feed *fd = r->feed;
    r->feed = NULL;
    api_response_free(r); /* the placeholder */
    c->sub = srv_feed_wait_start(f->c.feed, fd, fc_settled, c);
    r = c->sub ? srv_feed_wait_poll(f->c.feed, c->sub)
               : api_error_response(f->c.api, 500, "internal_error", "out of memory");
    if (!r) {
      c->pending = true;
      l->pending++;
      return;
    }
    if (c->sub) srv_feed_wait_end(f->c.feed, c->sub);
    c->sub = NULL;
  }
  if (r->feed || r->backup || r->stream) { /* cannot be: those routes go to libmicrohttpd
                                               (fc_stream_route) */
    if (r->feed) api_feed_free(r->feed);
    r->feed = NULL;
    r->backup = false;
    api_response_free(r);
    r = api_error_response(f->c.api, 500, "internal_error", "a stream outside the feed's server");
  }
  fc_answer(l, c, r);
}

/* The routes whose answers are streams or waits (the change feed's SSE and
 * long-polls, the sync snapshot, an online backup, and the sync pull when
 * the loop has no feed hub): a GET or HEAD of these paths is served by
 * libmicrohttpd, which can hold a connection suspended, or stream from a
 * callback, without holding a loop. */
static bool fc_is_get(const srv_http_req *h) {
  return (h->method_len == 3 && memcmp(h->method, "GET", 3) == 0) ||
         (h->method_len == 4 && memcmp(h->method, "HEAD", 4) == 0);
}

static bool fc_path_is(const srv_http_req *h, const char *path) {
  size_t n = strlen(path);
  return h->path_len >= n && memcmp(h->path, path, n) == 0 &&
         (h->path_len == n || h->path[n] == '?');
}

/* GET or HEAD of /v1/sync/ops, served by the loop itself when it has a
 * feed hub: a puller's long-polls then reuse one kept-alive connection. */
static bool fc_loop_poll(const srv_front *f, const srv_http_req *h) {
  return f->c.feed && fc_is_get(h) && fc_path_is(h, "/v1/sync/ops");
}

static bool fc_stream_route(const srv_front *f, const srv_http_req *h) {
  static const char *const paths[] = {"/v1/changes", "/v1/sync/ops", "/v1/sync/snapshot",
                                      "/v1/backup"};
  if (!fc_is_get(h) || fc_loop_poll(f, h)) return false;
  for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
    if (fc_path_is(h, paths[i])) return true;
  return false;
}

/* Refuses c's request now with status/code/why (after its head was read). */
static void fc_refuse_now(floop *l, fconn *c, int status, const char *code, const char *why) {
  c->h.status = status;
  c->h.code = code;
  c->h.why = why;
  fc_refuse(l, c);
}

static int fc_body_grow(fconn *c, size_t need) {
  if (need <= c->body_cap) return 0;
  size_t cap = c->body_cap ? c->body_cap : 4096;
  while (cap < need)
    cap *= 2;
  char *b = realloc(c->body, cap);
  if (!b) return -1;
  c->body = b;
  c->body_cap = cap;
  return 0;
}

static int fc_emit(void *cls, const char *p, size_t n) {
  fconn *c = cls;
  if (fc_body_grow(c, c->body_len + n) != 0) return -1;
  memcpy(c->body + c->body_len, p, n);
  c->body_len += n;
  return 0;
}

/* Starts reading the body of c->h (a PASS: chunked, after Expect, or larger
 * than the window): the checks that need no body first (auth, route,
 * method: api_precheck; the route's size limit), then the head is consumed
 * and the body is read by fc_body.  Returns false when c was answered. */
static bool fc_body_begin(floop *l, fconn *c) {
  srv_front *f = l->f;
  fc_request(l, c);
  c->req.body_pending = true;
  c->req.gated = &c->gated;
  api_response *pre = api_precheck(f->c.api, &c->req);
  c->req.gated = NULL;
  c->req.body_pending = false;
  size_t limit = api_body_limit(f->c.api, c->req.method, c->req.target);
  if (!pre && c->h.has_length && c->h.length > limit)
    pre = api_too_large(f->c.api, c->req.method, c->req.target, limit);
  if (pre) { /* the body stays unread: the connection ends after the answer */
    pre->close = true;
    c->close_after = true;
    fc_answer(l, c, pre);
    return false;
  }
  ssize_t got;
  do
    got = recv(c->fd, c->buf, c->h.head_len, MSG_TRUNC | MSG_DONTWAIT);
  while (got < 0 && errno == EINTR);
  if (got != (ssize_t)c->h.head_len) { /* the peeked bytes are the queue's head: cannot be */
    fc_close(l, c);
    return false;
  }
  c->in_body = true;
  c->body_len = 0;
  if (c->h.chunked) {
    srv_chunked_init(&c->ck, limit);
  } else {
    c->body_want = c->h.length; /* the buffer grows as the bytes arrive (fc_body): an
                                   announced length alone reserves no memory */
  }
  if (c->h.expect_continue) { /* RFC 9110 10.1.1: the client waits for this */
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    ssize_t n;
    do
      n = send(c->fd, cont, sizeof cont - 1, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n != (ssize_t)(sizeof cont - 1)) { /* a fresh socket's buffer is empty: the peer is gone */
      fc_close(l, c);
      return false;
    }
  }
  return true;
}

/* Reads what has arrived of c's body.  Returns 1 when it is whole (served),
 * 0 to wait for more input, -1 when c was answered or closed. */
static int fc_body(floop *l, fconn *c) {
  for (;;) {
    if (!c->h.chunked) {
      if (c->body_want == 0) break;
      size_t room = c->body_want < FRONT_BODY_STEP ? (size_t)c->body_want : FRONT_BODY_STEP;
      if (fc_body_grow(c, c->body_len + room) != 0) {
        c->in_body = false;
        fc_refuse_now(l, c, 500, "internal_error", "out of memory reading a body");
        return -1;
      }
      ssize_t n = recv(c->fd, c->body + c->body_len,
                       c->body_cap - c->body_len < c->body_want ? c->body_cap - c->body_len
                                                                : (size_t)c->body_want,
                       MSG_DONTWAIT);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        c->readable = false;
        return 0;
      }
      if (n <= 0) { /* the client left before its body was whole: nothing is served */
        fc_close(l, c);
        return -1;
      }
      c->body_len += (size_t)n;
      c->body_want -= (uint64_t)n;
      continue;
    }
    ssize_t n = recv(c->fd, l->scratch, sizeof l->scratch, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      c->readable = false;
      return 0;
    }
    if (n <= 0) {
      fc_close(l, c);
      return -1;
    }
    size_t used = 0;
    int v = srv_chunked_feed(&c->ck, l->scratch, (size_t)n, &used, fc_emit, c);
    if (v == SRV_CHUNKED_ERROR) {
      c->in_body = false;
      fc_refuse_now(l, c, c->ck.status,
                    c->ck.status == 413   ? "payload_too_large"
                    : c->ck.status == 500 ? "internal_error"
                                          : "bad_request",
                    c->ck.why);
      return -1;
    }
    ssize_t got; /* exactly the body's bytes: a pipelined request stays unread */
    do
      got = recv(c->fd, l->scratch, used, MSG_TRUNC | MSG_DONTWAIT);
    while (got < 0 && errno == EINTR);
    if (got != (ssize_t)used) {
      fc_close(l, c);
      return -1;
    }
    if (v == SRV_CHUNKED_DONE) {
      c->readable = true; /* a pipelined request may be there */
      break;
    }
  }
  c->in_body = false;
  fc_serve(l, c, c->body, c->body_len);
  return 1;
}

/* Moves c along as far as it can go without waiting. */
static void fc_run(floop *l, fconn *c) {
  srv_front *f = l->f;
  for (;;) {
    if (c->fd < 0 || c->pending) return;
    if (c->out) {
      if (fc_flush(c) != 0) {
        fc_close(l, c);
        return;
      }
      if (c->out) return;
    }
    int st = atomic_load(&f->state);
    if (c->close_after || st == FRONT_STOP) {
      /* Requests pipelined after the last answered one are never answered;
       * discarding what has arrived of them lets the close be a FIN, so a
       * client still reading the last answer does not get a reset (bytes
       * that arrive later still draw one: there is no lingering close). */
      for (size_t left = FRONT_DISCARD; left > 0;) {
        ssize_t got = recv(c->fd, c->buf, sizeof c->buf, MSG_DONTWAIT);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;
        left -= (size_t)got < left ? (size_t)got : left;
      }
      fc_close(l, c);
      return;
    }
    if (!c->readable) return;
    if (c->in_body) {
      if (fc_body(l, c) == 0) return; /* wait for more of the body */
      continue;                       /* served, or answered and closing */
    }
    ssize_t n = recv(c->fd, c->buf, sizeof c->buf, MSG_PEEK);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      c->readable = false;
      if (st != FRONT_RUN) fc_close(l, c); /* draining: an idle connection goes */
      return;
    }
    if (n <= 0) { /* the peer closed, or an error */
      fc_close(l, c);
      return;
    }
    srv_http_verdict v = srv_http_parse(c->buf, (size_t)n, f->c.max_head, sizeof c->buf, &c->h);
    if (v == SRV_HTTP_MORE && c->h.head_len > 0) {
      /* The head is whole, the body has not all arrived: read it after the
       * head (so a body over the route's limit is refused now, and a slow
       * body is not peeked again and again). */
      v = SRV_HTTP_PASS;
    }
    if (v == SRV_HTTP_MORE) {
      if (c->rdhup) { /* it can never complete: close as libmicrohttpd does */
        /* discard the partial request first, so the close is a FIN and
         * not a reset */
        while (recv(c->fd, c->buf, (size_t)n, MSG_TRUNC | MSG_DONTWAIT) < 0 && errno == EINTR)
          ;
        fc_close(l, c);
        return;
      }
      c->readable = false; /* the next input is an edge */
      return;
    }
    if (v == SRV_HTTP_REFUSE) {
      fc_refuse(l, c);
      continue; /* sends the answer, then discards and closes */
    }
    if (fc_stream_route(f, &c->h)) {
      /* libmicrohttpd serves the feed's streams: it parses this one head
       * (checked; no body, so no framing of its own to get wrong) and the
       * connection ends after its answer (srv_answer_mhd_headers). */
      if (c->h.has_length || c->h.chunked || c->h.expect_continue) {
        fc_request(l, c); /* answered here: a body over the route's limit is a 413 as anywhere */
        size_t lim = api_body_limit(f->c.api, c->req.method, c->req.target);
        if (c->h.has_length && c->h.length > lim) {
          api_response *r = api_too_large(f->c.api, c->req.method, c->req.target, lim);
          r->close = true;
          c->close_after = true;
          fc_answer(l, c, r);
        } else {
          fc_refuse_now(l, c, 400, "bad_request", "a request of the change feed carries no body");
        }
        continue;
      }
      fc_handoff(l, c);
      return;
    }
    if (v == SRV_HTTP_PASS) {
      if (!fc_body_begin(l, c)) continue; /* answered: flush, then close */
      continue;                           /* read the body */
    }
    ssize_t got;
    do
      got = recv(c->fd, c->buf, c->h.total, MSG_TRUNC | MSG_DONTWAIT);
    while (got < 0 && errno == EINTR);
    if (got != (ssize_t)c->h.total) { /* the peeked bytes are the queue's head: cannot be */
      fc_close(l, c);
      return;
    }
    c->readable = (size_t)n > c->h.total; /* pipelined bytes, or wait for an edge */
    fc_request(l, c);
    fc_serve(l, c, c->h.body, c->h.body_len);
  }
}

/* ---- the loop ---------------------------------------------------------- */

static void fl_attach(floop *l, fconn *c) {
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c};
  if (epoll_ctl(l->ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
    close(c->fd);
    atomic_fetch_sub(l->f->c.open, 1);
    free(c);
    return;
  }
  c->next = l->conns;
  if (l->conns) l->conns->prev = c;
  l->conns = c;
  c->readable = true; /* the request may already be there */
  fc_run(l, c);
}

static void fl_listen(floop *l, bool on) {
  if (l->listening == on) return;
  int lfd = l->f->c.listen_fd;
  if (on) {
    struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = NULL};
    if (epoll_ctl(l->ep, EPOLL_CTL_ADD, lfd, &ev) != 0) return;
  } else {
    epoll_ctl(l->ep, EPOLL_CTL_DEL, lfd, NULL);
  }
  l->listening = on;
}

static void fl_accept(floop *l) {
  srv_front *f = l->f;
  for (int i = 0; i < FRONT_ACCEPTS; i++) {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    int fd = accept4(f->c.listen_fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        long long now = front_now_ms();
        if (now - l->warned_ms > 10000) {
          srv_log(SRV_LOG_WARN, "accept_failed", "error=%s pause_ms=%d", strerror(errno),
                  FRONT_PAUSE_MS);
          l->warned_ms = now;
        }
        fl_listen(l, false);
        l->resume_ms = now + FRONT_PAUSE_MS;
      }
      return;
    }
    if (atomic_load(&f->state) != FRONT_RUN ||
        atomic_load(f->c.open) >= (long)f->c.max_connections) {
      srv_log(SRV_LOG_DEBUG, "connection_refused", "reason=%s",
              atomic_load(&f->state) != FRONT_RUN ? "shutdown" : "max_connections");
      close(fd);
      continue;
    }
    fconn *c = malloc(sizeof *c);
    if (!c) {
      close(fd);
      continue;
    }
    memset(c, 0, offsetof(fconn, buf));
    c->fd = fd;
    c->peer = ss;
    c->peer_len = sl;
    c->last_ms = front_now_ms();
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    atomic_fetch_add(f->c.open, 1);
    floop *to = &f->loops[atomic_fetch_add(&f->next, 1) % f->n];
    c->l = to;
    if (to == l) {
      fl_attach(l, c);
    } else {
      pthread_mutex_lock(&to->mu);
      bool first = !to->settled && !to->incoming;
      c->link = to->incoming;
      to->incoming = c;
      pthread_mutex_unlock(&to->mu);
      if (first) front_wake(to);
    }
  }
}

/* The eventfd fired: connections given, writes settled, or a new state. */
static void fl_woken(floop *l) {
  uint64_t v;
  ssize_t n = read(l->evfd, &v, sizeof v);
  (void)n;
  pthread_mutex_lock(&l->mu);
  fconn *in = l->incoming, *done = l->settled;
  l->incoming = l->settled = NULL;
  pthread_mutex_unlock(&l->mu);
  fconn *rev = NULL; /* settled in the order they settled */
  while (done) {
    fconn *nx = done->link;
    done->link = rev;
    rev = done;
    done = nx;
  }
  for (fconn *c = rev, *nx; c; c = nx) {
    nx = c->link;
    c->link = NULL;
    api_response *r;
    if (c->sub) { /* a long-poll woke: its answer, or it waits again */
      srv_feed *h = l->f->c.feed;
      if (c->dead) {
        r = api_error_response(l->f->c.api, 499, "client_closed", "the client left");
      } else if (!(r = srv_feed_wait_poll(h, c->sub))) {
        continue; /* still pending */
      }
      srv_feed_wait_end(h, c->sub);
      c->sub = NULL;
    } else {
      r = api_write_finish(l->f->c.api, c->write, &c->req);
      c->write = NULL;
    }
    c->pending = false;
    l->pending--;
    if (c->dead) {
      if (l->f->c.log_requests)
        srv_answer_log(c->req.method, c->req.target, r->status, &c->t0, c->req.body_len);
      api_response_free(r);
      fc_end(l, c);
      fc_close(l, c);
      continue;
    }
    fc_answer(l, c, r);
    fc_run(l, c);
  }
  for (fconn *c = in, *nx; c; c = nx) {
    nx = c->link;
    c->link = NULL;
    fl_attach(l, c);
  }
}

/* Acts on a change of the front's state. */
static void fl_state(floop *l, int st) {
  l->state = st;
  fl_listen(l, false);
  fconn *nx;
  for (fconn *c = l->conns; c; c = nx) {
    nx = c->next;
    if (c->pending) continue;
    if (st == FRONT_STOP) {
      fc_close(l, c);
    } else if (!c->out) {
      c->readable = true; /* idle ones close, a request already sent is served */
      fc_run(l, c);
    }
  }
}

static void fl_sweep(floop *l, long long now) {
  long long idle = (long long)l->f->c.timeout_s * 1000;
  fconn *nx;
  for (fconn *c = l->conns; c; c = nx) {
    nx = c->next;
    if (c->out) {
      /* An answer the client is still reading: the kernel's send queue
       * shrinks between two output edges, which may be seconds apart for a
       * slow reader of a large value.  Progress there is activity too. */
      int q = 0;
      if (ioctl(c->fd, SIOCOUTQ, &q) == 0 && q != c->outq) {
        c->outq = q;
        c->last_ms = now;
      }
    }
    if (!c->pending && now - c->last_ms > idle) fc_close(l, c);
  }
}

static void *fl_main(void *arg) {
  floop *l = arg;
  srv_front *f = l->f;
  pthread_setname_np(pthread_self(), "sa-http"); /* top -H, perf, gdb */
  struct epoll_event evs[FRONT_EVENTS];
  long long next_sweep = front_now_ms() + FRONT_SWEEP_MS;
  for (;;) {
    int st = atomic_load(&f->state);
    if (st != l->state) fl_state(l, st);
    if (st == FRONT_STOP && l->pending == 0 && !l->conns) {
      pthread_mutex_lock(&l->mu);
      bool more = l->incoming != NULL;
      pthread_mutex_unlock(&l->mu);
      if (!more) break;
    }
    int n = epoll_wait(l->ep, evs, FRONT_EVENTS,
                       l->listening || st != FRONT_RUN ? FRONT_SWEEP_MS : FRONT_PAUSE_MS);
    for (int i = 0; i < n; i++) {
      void *p = evs[i].data.ptr;
      if (!p) {
        fl_accept(l);
        continue;
      }
      if (p == l) {
        fl_woken(l);
        continue;
      }
      fconn *c = p;
      if (c->fd < 0) continue; /* closed earlier in this batch */
      uint32_t e = evs[i].events;
      if (e & (EPOLLERR | EPOLLHUP)) {
        fc_close(l, c);
        continue;
      }
      if (e & EPOLLRDHUP) c->rdhup = true;
      if (c->rdhup && c->sub) { /* the puller left a waiting long-poll: it ends now, not
                                   at its wait's end (the hub's streams do the same) */
        fc_close(l, c);
        continue;
      }
      if (e & (EPOLLIN | EPOLLRDHUP)) {
        c->readable = true;
        c->last_ms = front_now_ms();
      }
      fc_run(l, c);
    }
    while (l->graveyard) {
      fconn *c = l->graveyard;
      l->graveyard = c->link;
      free(c);
    }
    long long now = front_now_ms();
    if (!l->listening && st == FRONT_RUN && now >= l->resume_ms) fl_listen(l, true);
    if (now >= next_sweep) {
      fl_sweep(l, now);
      next_sweep = now + FRONT_SWEEP_MS;
    }
  }
  /* Whatever the state change left (a pending write's connection closed on
   * settling) is freed here. */
  while (l->graveyard) {
    fconn *c = l->graveyard;
    l->graveyard = c->link;
    free(c);
  }
  return NULL;
}

/* ---- start and stop -------------------------------------------------------- */

static void front_free(srv_front *f, unsigned started) {
  for (unsigned i = 0; i < f->n; i++) {
    floop *l = &f->loops[i];
    if (i < started) pthread_join(l->th, NULL);
    /* A connection another loop accepted just before the stop and gave to
     * this one after it had ended was never served: close it here. */
    for (fconn *c = l->incoming, *nx; c; c = nx) {
      nx = c->link;
      close(c->fd);
      atomic_fetch_sub(f->c.open, 1);
      free(c);
    }
    if (l->ep >= 0) close(l->ep);
    if (l->evfd >= 0) close(l->evfd);
    pthread_mutex_destroy(&l->mu);
  }
  free(f->loops);
  free(f);
}

int srv_front_start(const srv_front_config *cfg, srv_front **out) {
  *out = NULL;
  srv_front *f = calloc(1, sizeof *f);
  if (!f) return ENOMEM;
  f->c = *cfg;
  if (f->c.max_head > FRONT_BUF) f->c.max_head = FRONT_BUF;
  atomic_init(&f->state, FRONT_RUN);
  atomic_init(&f->next, 0);
  f->n = cfg->threads ? cfg->threads : 1;
  f->loops = calloc(f->n, sizeof *f->loops);
  if (!f->loops) {
    free(f);
    return ENOMEM;
  }
  int rc = 0;
  for (unsigned i = 0; i < f->n; i++) {
    floop *l = &f->loops[i];
    l->f = f;
    l->state = FRONT_RUN;
    pthread_mutex_init(&l->mu, NULL);
    l->ep = epoll_create1(EPOLL_CLOEXEC);
    l->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (l->ep < 0 || l->evfd < 0) {
      rc = errno;
      continue;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = l};
    if (epoll_ctl(l->ep, EPOLL_CTL_ADD, l->evfd, &ev) != 0) rc = errno;
    fl_listen(l, true);
    if (!l->listening) rc = errno;
  }
  unsigned started = 0;
  for (; rc == 0 && started < f->n; started++) {
    /* The loops inherit the caller's blocked signals (srv.c blocks them
     * before any thread starts). */
    rc = pthread_create(&f->loops[started].th, NULL, fl_main, &f->loops[started]);
    if (rc != 0) break;
  }
  if (rc != 0) {
    srv_log(SRV_LOG_ERROR, "front_failed", "error=%s", strerror(rc));
    atomic_store(&f->state, FRONT_STOP);
    for (unsigned i = 0; i < started; i++)
      front_wake(&f->loops[i]);
    front_free(f, started);
    return rc;
  }
  *out = f;
  return 0;
}

void srv_front_drain(srv_front *f) {
  if (!f) return;
  atomic_store(&f->state, FRONT_DRAIN);
  for (unsigned i = 0; i < f->n; i++)
    front_wake(&f->loops[i]);
}

void srv_front_stop(srv_front *f) {
  if (!f) return;
  atomic_store(&f->state, FRONT_STOP);
  for (unsigned i = 0; i < f->n; i++)
    front_wake(&f->loops[i]);
  front_free(f, f->n);
}
