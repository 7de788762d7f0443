/*
 * srv_sse.h -- the server side of GET /v1/changes: Server-Sent Events
 * streams and long-polls that wait without holding a worker thread.
 *
 * What it is: a hub (srv_feed) that owns every waiting feed request of the
 * daemon, one notifier thread that sleeps in sa_client_wait and resumes the
 * requests that have something to say, the libmicrohttpd content reader of
 * the streams, and the bound on concurrent streams.  The feed's semantics
 * (query, JSON, SSE text) are api/api_feed.c's; this file only moves bytes
 * and decides when.
 *
 * Why suspend/resume: libmicrohttpd runs a handful of pool threads (poll).
 * A stream that blocked one of them in a wait would take it away from every
 * other connection of that thread; 20 streams would stop the node.  Instead
 * a request with nothing to send is suspended (MHD_suspend_connection, from
 * the access handler for a long-poll, from the content reader for a stream)
 * and costs no thread at all; the notifier resumes it when the node's last
 * LSN passes what the request has seen, when a long-poll's wait ends, when a
 * stream's heartbeat is due, and at shutdown.  libmicrohttpd does not see a
 * client close a suspended connection, so the notifier also polls the
 * sockets of suspended streams for a hang-up (POLLRDHUP, nothing is read)
 * and ends those streams; the heartbeat catches what that misses (a
 * vanished peer).  Requires a daemon started
 * with MHD_ALLOW_SUSPEND_RESUME (and MHD_USE_ITC).
 *
 * Invariants (under the hub mutex): a request is resumed only when it is
 * marked suspended, and it is suspended while the mutex is held, so a resume
 * can neither be lost nor hit a connection that is not suspended; a
 * suspended connection cannot be closed by libmicrohttpd, so the hub never
 * resumes a freed one.  After srv_feed_shutdown no request suspends again.
 *
 * Threads: srv_feed_serve/resume/done run on libmicrohttpd's worker threads
 * (any number at once); srv_feed_shutdown and srv_feed_destroy on the main
 * thread; the notifier is the hub's own thread.
 */
#ifndef SA_SRV_SSE_H
#define SA_SRV_SSE_H

#include <microhttpd.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "api.h"
#include "api_feed.h"
#include "softadastra.h"

typedef struct srv_feed srv_feed;

typedef struct srv_feed_stats {
  uint64_t streams_open;     /* SSE streams now */
  uint64_t streams_total;    /* SSE streams started since start */
  uint64_t streams_rejected; /* 503 over max_streams */
  uint64_t polls_waiting;    /* long-polls suspended now */
  uint64_t bytes_sent;       /* SSE bytes handed to libmicrohttpd */
} srv_feed_stats;

/* Creates the hub and starts its notifier thread.  max_streams bounds the
 * concurrent SSE streams (over it: 503 too_many_streams); heartbeat_s is
 * the period of the streams' heartbeat comments.  Returns 0 and sets *out,
 * or SA_ENOMEM / SA_EINTERNAL (thread) with *out NULL.  c is borrowed and
 * must stay open until srv_feed_destroy. */
int srv_feed_create(sa_client *c, unsigned max_streams, unsigned heartbeat_s, srv_feed **out);

/* Serves a feed request that api_handle deferred (deferred is the api_feed
 * it handed over; resp its placeholder or stream head, both taken).  A
 * stream gets its head at once and then its events; a long-poll is
 * suspended.  *slot is the request's per-request pointer for the hub (NULL
 * on entry; pass it to srv_feed_resume and srv_feed_done).  head: a HEAD
 * request (answered with the head alone).  Returns the value for the access
 * handler. */
enum MHD_Result srv_feed_serve(srv_feed *h, struct MHD_Connection *con, api_response *resp,
                               api_feed *deferred, bool head, void **slot);

/* The access handler ran again for a request whose *slot is set (a resumed
 * long-poll): answers it, or suspends it again. */
enum MHD_Result srv_feed_resume(srv_feed *h, struct MHD_Connection *con, void **slot);

/* The request is complete (libmicrohttpd's completion callback): frees what
 * *slot holds and sets it to NULL.  NULL *slot is a no-op. */
void srv_feed_done(srv_feed *h, void **slot);

/* ---- long-polls served by the front loop (srv_front.c) ----
 *
 * The loop serves GET /v1/sync/ops itself, on the puller's kept-alive
 * connection (a connection per page cost both sides a connect, an accept
 * and a hand-over: README, Performance, Sync); its long-polls wait in this
 * hub like libmicrohttpd's, with a callback in place of a suspended
 * connection.  A subscriber is a srv_sub (opaque). */
typedef struct srv_sub srv_sub;

/* Registers a long-poll (f, taken: freed with the subscriber, or here on
 * failure).  wake(cls) is called once for each time srv_feed_wait_poll
 * returned NULL (on the notifier thread, or the caller of
 * srv_feed_shutdown, with the hub's mutex held: it must only queue work for
 * the loop).  Returns NULL when out of memory. */
srv_sub *srv_feed_wait_start(srv_feed *h, api_feed *f, void (*wake)(void *), void *cls);

/* The answer of s now, or NULL: nothing to say yet, s waits (wake comes on
 * news, at the wait's end, or at shutdown; then call this again).  Call at
 * the start and after each wake, never while s waits. */
api_response *srv_feed_wait_poll(srv_feed *h, srv_sub *s);

/* The loop's connection closed while s waits: frees s and returns true if
 * it was still waiting; false when a wake is already on its way (then call
 * srv_feed_wait_end after it). */
bool srv_feed_wait_cancel(srv_feed *h, srv_sub *s);

/* Frees s after its answer (or after a wake for a closed connection). */
void srv_feed_wait_end(srv_feed *h, srv_sub *s);

/* Starts the shutdown: refuses new feed requests (503 shutting_down), ends
 * every stream after a "bye" event and answers every long-poll now.  Returns
 * at once; the requests finish on the worker threads.  Idempotent. */
void srv_feed_shutdown(srv_feed *h);

/* Counters for logs and metrics.  Thread-safe. */
void srv_feed_get_stats(srv_feed *h, srv_feed_stats *out);

/* Writes the hub's counters to f in the Prometheus text format
 * (softadastra_feed_streams_open, _streams_total, _streams_rejected_total,
 * _polls_waiting, _sse_bytes_total).  h is a srv_feed (void * so it fits
 * api_config's metrics hook).  Thread-safe. */
void srv_feed_write_metrics(void *h, FILE *f);

/* Stops the notifier and frees the hub.  Call after the daemon is stopped
 * and before the client is closed.  NULL is a no-op. */
void srv_feed_destroy(srv_feed *h);

#endif /* SA_SRV_SSE_H */
