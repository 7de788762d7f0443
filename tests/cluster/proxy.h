/*
 * proxy.h -- a loopback TCP proxy the cluster tests put on every link
 * between two nodes, so that a link can be cut and restored while the nodes
 * run.  It listens on 127.0.0.1:0 and forwards each accepted connection to
 * 127.0.0.1:<target port>, both ways, byte for byte (half-closes passed on).
 *
 * What it is not: a general proxy.  Loopback only, no TLS, no address
 * rewriting, at most PROXY_MAX_CONNS connections at a time (beyond that it
 * stops accepting: the kernel's backlog holds the rest).
 *
 * A cut comes in three kinds, because peers fail in different ways:
 *   PROXY_REFUSE     live connections are reset (RST) and the listening
 *                    socket is closed: new connects get ECONNREFUSED (a peer
 *                    that is down).  heal binds the same port again.
 *   PROXY_BLACKHOLE  live connections are reset; new connections are
 *                    accepted and held silent, nothing forwarded (a peer
 *                    that accepts and never answers).  heal resets the held
 *                    ones.
 *   PROXY_STALL      live connections freeze (nothing read or written, the
 *                    kernel buffers fill) and new ones are held as in
 *                    BLACKHOLE (a partition).  heal resumes the frozen ones
 *                    where they stopped and resets the held ones.
 *
 * Invariants: every buffer is bounded (PROXY_BUF_BYTES per direction per
 * connection); every wait is bounded; the proxy's sockets are all closed by
 * proxy_stop.
 *
 * Threads: each proxy runs one poll thread of its own (named "sa-proxy").
 * The functions below may be called from any thread, one at a time per
 * proxy (the commands are synchronous: each returns once the poll thread
 * has carried it out).
 */
#ifndef SA_CLUSTER_PROXY_H
#define SA_CLUSTER_PROXY_H

#include <stdint.h>

#define PROXY_MAX_CONNS 128
#define PROXY_BUF_BYTES 65536

typedef enum proxy_cut_mode { PROXY_REFUSE, PROXY_BLACKHOLE, PROXY_STALL } proxy_cut_mode;

typedef struct proxy proxy;

typedef struct proxy_stats {
  uint64_t accepted;     /* connections accepted (forwarded or held) */
  uint64_t forwarded;    /* connections whose upstream connect succeeded */
  uint64_t upstream_err; /* upstream connect failed or no target: client reset */
  uint64_t cut_resets;   /* connections reset by a cut or a heal */
  uint64_t held;         /* connections accepted and held silent during a cut */
  uint64_t bytes_up;     /* client -> target bytes forwarded */
  uint64_t bytes_down;   /* target -> client bytes forwarded */
  uint64_t cuts, heals;
} proxy_stats;

/* Starts a proxy listening on 127.0.0.1:0 that forwards to
 * 127.0.0.1:target_port (0: no target yet; clients are reset until one is
 * set).  Returns NULL when a socket or the thread could not be made. */
proxy *proxy_start(int target_port);

/* The port the proxy listens on (stays the same across cut and heal). */
int proxy_port(const proxy *p);

/* Sets the target port for new connections (live ones keep theirs). */
void proxy_set_target(proxy *p, int target_port);

/* Cuts the link (see the modes above).  Returns 0 once done, -1 when the
 * poll thread did not carry it out within 5 s.  Cutting a cut link first
 * heals it, then cuts it with the new mode. */
int proxy_cut(proxy *p, proxy_cut_mode mode);

/* Restores the link.  Returns 0, or -1 when the listening port could not be
 * bound again (after a REFUSE cut; retried for 2 s) or the thread did not
 * answer.  Healing a link that is not cut does nothing. */
int proxy_heal(proxy *p);

/* True while the link is cut. */
int proxy_is_cut(proxy *p);

/* A copy of the counters. */
proxy_stats proxy_get_stats(proxy *p);

/* Closes every connection and the listening socket, joins the thread and
 * frees p.  NULL does nothing. */
void proxy_stop(proxy *p);

#endif /* SA_CLUSTER_PROXY_H */
