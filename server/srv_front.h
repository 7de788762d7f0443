/*
 * srv_front.h -- the front loop: the listening socket, and the store's
 * hot requests served without libmicrohttpd.
 *
 * What it is: a few threads (one per `threads`), each an epoll loop over
 * the connections it accepted.  At every request boundary a loop peeks at
 * the bytes the client sent (MSG_PEEK: nothing is consumed) and the gate
 * (srv_http.h) reads the request: no request reaches a handler or
 * libmicrohttpd unless the gate has read its whole head and decided its
 * framing.  A refused request is answered here (a JSON error) and the
 * connection closed.  A GET, PUT or DELETE of /v1/store/{key} with plain
 * framing is consumed and answered by the loop through the same API calls
 * libmicrohttpd's callbacks make (api_handle, and for a write
 * api_write_arm/api_write_finish).  Any other accepted request hands the
 * connection, its bytes still unread, to libmicrohttpd (the handoff
 * callback: MHD_add_connection in srv.c) for that one request: its answer
 * says Connection: close and the connection ends there, so libmicrohttpd
 * never parses a request the gate has not checked.
 *
 * Why: with libmicrohttpd a deferred PUT costs a suspend, a resume (an
 * eventfd write per request from the writer) and one more pass of a
 * worker's loop, about 20 us of CPU per PUT at 16 connections (README,
 * Performance).  Here the writer pushes the settled writes of a loop on
 * one list and wakes the loop once per group; the loop answers them all.
 *
 * Threads: srv_front_start starts the loops.  A loop that accepts a
 * connection gives it to the loops in turn (a locked list and an eventfd),
 * so the connections are spread evenly; each is then served by one loop
 * only.  The node's writer thread (its committer, near a full map) calls
 * into a loop only through api_write_arm's notify (the same list lock and
 * eventfd).  The functions below run on the thread that started the front.
 */
#ifndef SA_SRV_FRONT_H
#define SA_SRV_FRONT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "api.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct srv_front srv_front;

typedef struct srv_front_config {
  int listen_fd;            /* bound and listening, non-blocking; borrowed (closed by the caller
                               after srv_front_stop) */
  unsigned threads;         /* loops to start (>= 1) */
  api_ctx *api;             /* borrowed */
  unsigned max_connections; /* open connections (*open) past which an accepted one is closed */
  unsigned timeout_s;       /* an idle connection of a loop is closed after this */
  size_t max_head;          /* request line + headers (max_header_bytes) */
  /* Gives a connection to libmicrohttpd with every byte unread.  Returns 0,
   * or -1 when it was refused (the socket is closed either way).  On 0 the
   * connection stays counted in *open; the receiver decrements it when it
   * closes the connection. */
  int (*handoff)(void *cls, int fd, const struct sockaddr *peer, socklen_t peer_len);
  void *handoff_cls;
  atomic_long *open;   /* open connections, the loops' and the handed ones */
  atomic_long *active; /* requests being served (srv.c's drain waits for 0) */
  atomic_ulong *total; /* requests started */
  bool log_requests;   /* one debug line per request */
  /* The long-polls of GET /v1/sync/ops wait in this hub (srv_sse.h) while
   * the loop keeps their connections; NULL: that route goes to
   * libmicrohttpd like the other feed routes.  Borrowed; srv_feed_shutdown
   * before srv_front_drain answers every one. */
  struct srv_feed *feed;
} srv_front_config;

/* Starts the loops.  Returns 0 and sets *out, or an errno value (the
 * message is logged). */
int srv_front_start(const srv_front_config *cfg, srv_front **out);

/* Stops accepting and closes the loops' idle connections; requests being
 * served go on (their answers say Connection: close: api draining). */
void srv_front_drain(srv_front *f);

/* Ends the loops: every connection is closed once the write it waits for
 * (if any) is answered; the node settles every queued write, so this
 * returns.  Frees the front.  NULL is a no-op. */
void srv_front_stop(srv_front *f);

#ifdef __cplusplus
}
#endif

#endif /* SA_SRV_FRONT_H */
