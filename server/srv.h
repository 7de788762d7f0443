/*
 * srv.h -- `softadastra serve`: opens the node, serves the REST API over
 * HTTP (the front loop for the store's GET/PUT/DELETE of one key,
 * libmicrohttpd for everything else), and shuts down gracefully on
 * SIGINT/SIGTERM.
 *
 * What it is: the adapter between libmicrohttpd and api_handle (libmicrohttpd
 * types never leave srv.c), the start of the front loop (srv_front.h), the
 * start-up line, signals, and the shutdown order (stop accepting, finish
 * in-flight requests, stop the loops and the daemon, close the node: flush +
 * sync + unlock).  What it is not: the API (api/) or the engine (core/).
 *
 * Threads: srv_serve runs on the main thread and blocks SIGINT/SIGTERM/
 * SIGHUP in it before any thread starts (so the core's, the front loop's and
 * libmicrohttpd's threads inherit the mask), then waits for them with
 * sigwait.  Requests run on the front loop's threads or on libmicrohttpd's
 * pool threads and call the thread-safe core directly.
 */
#ifndef SA_SRV_H
#define SA_SRV_H

#include "cfg.h"

/* Runs the node until SIGINT or SIGTERM.  Prints the start-up line on stdout
 * once it listens; logs to stderr.  Returns the process exit code: 0 after a
 * clean shutdown, 1 when the node or the listener cannot start (the message
 * names the path or address and the cause). */
int srv_serve(const cfg_config *cfg);

#endif /* SA_SRV_H */
