/*
 * api_feed.h -- GET /v1/changes: the change feed of a node as JSON pages,
 * long-polls and Server-Sent Events, without a socket.
 *
 * What it is: parsing of the feed's query (since, limit, include_values,
 * wait, prefix) and of Last-Event-ID; the JSON of a page; the 410 answer
 * that names the oldest `since` still served; the text of an SSE stream
 * (events, the ready event, heartbeats, the goodbye).  A request becomes an
 * api_feed, a small cursor over sa_client_changes that the caller drives.
 *
 * What it is not: a waiter or a streamer.  It never blocks (except in
 * api_feed_respond when asked to, see there) and never sees a connection:
 * server/srv_sse.c decides when to read the next page (sa_client_wait in its
 * notifier thread) and moves the bytes.
 *
 * Modes, decided by api_feed_open:
 *   API_FEED_PAGE    one JSON page of the changes after `since`, now;
 *   API_FEED_WAIT    wait=SECONDS (1..60): the same page as soon as it holds
 *                    a change, or an empty page when the wait ends;
 *   API_FEED_STREAM  "Accept: text/event-stream": an endless SSE stream.
 *
 * SSE format: one event per change ("event: change", data = the change's
 * JSON).  The LSN is the event id, written on the LAST change of each LSN
 * only: a batch shares one LSN, so a client that reconnects with
 * Last-Event-ID never lands in the middle of a batch.  When a prefix filter
 * skips changes, an id-only event ("id: N" alone) still moves the client's
 * resume point forward.
 *
 * Where the position starts: Last-Event-ID (takes precedence), else `since`
 * (a number, or "now" for the node's current last LSN), else the oldest
 * kept change for a page or a wait, and "now" for a stream.
 *
 * Threads: an api_feed belongs to one thread at a time (the caller hands it
 * over with its own locking); different feeds may run concurrently.
 */
#ifndef SA_API_FEED_H
#define SA_API_FEED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api.h"
#include "softadastra.h"

#define API_FEED_MAX_WAIT_S 60     /* longest wait= */
#define API_FEED_DEFAULT_LIMIT 100 /* changes per page */
#define API_FEED_MAX_LIMIT 10000   /* the core's bound */
#define API_FEED_STREAM_PAGE 256   /* changes read per SSE chunk */
#define API_FEED_RETRY_MS 2000     /* SSE "retry:" advice to clients */

typedef struct api_feed api_feed;

typedef enum api_feed_mode {
  API_FEED_PAGE = 0, /* answer now */
  API_FEED_WAIT,     /* long-poll */
  API_FEED_STREAM,   /* Server-Sent Events */
} api_feed_mode;

/* Parses a GET /v1/changes request: query is the raw query string (may be
 * NULL), hdr/hdr_cls look up Accept and Last-Event-ID (hdr may be NULL).
 * Returns NULL and sets *out (free with api_feed_free), or a 400 error
 * response (same ownership as api_handle) with *out NULL.  c is borrowed
 * and must outlive the feed. */
api_response *api_feed_open(sa_client *c, const char *query, api_header_fn hdr, void *hdr_cls,
                            api_feed **out);

/* Frees f.  NULL is a no-op. */
void api_feed_free(api_feed *f);

api_feed_mode api_feed_get_mode(const api_feed *f);

/* The LSN after which the next change is read. */
uint64_t api_feed_position(const api_feed *f);

/* The node's last LSN as of the latest read (0 before the first read): a
 * waiter needs a new read only once the node's last LSN is above it. */
uint64_t api_feed_seen(const api_feed *f);

/* The wait= of a long-poll in milliseconds (0 for the other modes). */
uint32_t api_feed_wait_ms(const api_feed *f);

/* PAGE and WAIT: reads the changes after the position.  Returns a 200 JSON
 * page {"changes":[...],"count","next_since","last_lsn","more"}, a 410 when
 * the position is below the feed's floor (the body's error has
 * "oldest_since"), or another error.  When the page is empty and final is
 * false, returns NULL instead (nothing to say yet: keep waiting).  Same
 * ownership as api_handle. */
api_response *api_feed_page(api_feed *f, bool final);

/* The whole answer to a feed request for a caller that cannot wait or
 * stream (tests/api, an embedding): PAGE answers now; WAIT blocks this
 * thread in sa_client_wait for at most the wait; STREAM answers with the
 * events available now as a finite text/event-stream body (an EventSource
 * reconnects with Last-Event-ID and gets the rest).  Takes f (freed). */
api_response *api_feed_respond(api_feed *f);

/* A page of another route's long-poll: the answer, or NULL when there is
 * nothing to say yet and final is false; sets *seen to the node's last LSN
 * as read (a waiter needs a new page only once the node is past it). */
typedef api_response *(*api_feed_page_fn)(void *cls, bool final, uint64_t *seen);

/* A WAIT feed whose pages come from page(cls, ...) instead of the change
 * feed (GET /v1/sync/ops, api_sync.c), so a server waits on it exactly as
 * on a /v1/changes long-poll (server/srv_sse.c).  seen: the last LSN the
 * first, empty page read.  Takes cls (freed with cls_free, may be NULL, by
 * api_feed_free).  Returns NULL out of memory (cls not taken then). */
api_feed *api_feed_custom(sa_client *c, uint32_t wait_ms, uint64_t seen, api_feed_page_fn page,
                          void *cls, void (*cls_free)(void *cls));

/* The handler of GET /v1/changes (api.c calls it after auth and routing).
 * Returns the response (same ownership as api_handle) and sets *deferred
 * to NULL, except when can_defer is true and the request must wait or
 * stream: then *deferred receives the feed (the caller frees it with
 * api_feed_free) and the response is the stream head (200) or, for a
 * long-poll with nothing yet, a 200 placeholder without body that the
 * caller drops once api_feed_page has the real answer. */
api_response *api_feed_handle(sa_client *c, const char *query, api_header_fn hdr, void *hdr_cls,
                              bool can_defer, api_feed **deferred);

/* STREAM: the head of the stream: 200 with Content-Type text/event-stream,
 * Cache-Control no-cache, no body; or a 410 when the position is already
 * below the floor.  Same ownership as api_handle. */
api_response *api_feed_stream_head(api_feed *f);

/* STREAM: the first bytes of the stream: the retry advice and a "ready"
 * event {"since":N,"last_lsn":L}.  Returns a new buffer the caller frees
 * (*len bytes), or NULL out of memory. */
char *api_feed_stream_hello(api_feed *f, size_t *len);

/* STREAM: reads the next page after the position and renders it as SSE
 * events; advances the position.  Returns 0 and sets *buf (a new buffer the
 * caller frees, or NULL when there was nothing) and *len; 1 when the feed
 * lost the position (the floor passed it): *buf then holds a final "gone"
 * event and the stream must end; a negative SA_E code on failure (*buf
 * NULL). */
int api_feed_stream_next(api_feed *f, char **buf, size_t *len);

/* STREAM: a heartbeat comment line and the goodbye event sent when the node
 * shuts down.  Static strings. */
const char *api_feed_sse_heartbeat(void);
const char *api_feed_sse_bye(void);

#endif /* SA_API_FEED_H */
