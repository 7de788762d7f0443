/*
 * srv_sync.h -- the HTTP transport of `softadastra serve`: one puller
 * thread per configured peer URL, pulling that peer's GET /v1/sync/ops and
 * applying what it gets through the core's sync API.
 *
 * What it is: the pull loop of issue 22's design (long-poll the peer's
 * feed from the cursor stored for its node id, apply each batch durably
 * with sa_client_sync_apply, tell the peer what was applied with `acked`),
 * catch-up from GET /v1/sync/snapshot when the peer answers 410, retries
 * with exponential backoff and jitter capped at SRV_SYNC_BACKOFF_MAX_MS,
 * and the per-peer state shown by GET /v1/sync/status and /metrics.  It
 * also counts, per puller id, what this node's own /v1/sync/ops served
 * (srv_sync_served, the API's hook): the "ops_sent" of a peer.
 *
 * What it is not: the protocol's source side (api/api_sync.c), the conflict
 * rule or the cursor's durability (the core: a batch and the cursor commit
 * together).  It never trusts a peer: the peer's node id is learned from
 * its answers (never from the URL), a peer that claims this node's id is
 * refused, a malformed answer is refused before anything is applied.
 *
 * Peers are configured (a --peer URL, kept for the node's life) or
 * discovered (srv_discovery.c calls srv_sync_discovered when it hears a
 * node, and srv_sync_expire forgets one silent past discovery_timeout_s).
 *
 * Threads: srv_sync_start starts the `sa-pull` threads of the configured
 * peers; srv_sync_discovered starts those of discovered peers and
 * srv_sync_expire joins the ended ones (the `sa-discovery` thread);
 * srv_sync_stop joins them all (the main thread, after the discovery
 * thread ended, before the node closes); srv_sync_peers, srv_sync_served
 * and srv_sync_write_metrics run on request threads, any number at once
 * (they take the table's mutex, a leaf lock).
 */
#ifndef SA_SRV_SYNC_H
#define SA_SRV_SYNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#include "api.h"
#include "softadastra.h"

#define SRV_SYNC_MAX_PEERS 32            /* peers: configured URLs and discovered ones */
#define SRV_SYNC_BACKOFF_MAX_MS 2000     /* cap of the retry delay toward a peer */
#define SRV_SYNC_WAIT_MS 10000           /* the long-poll's wait= */
#define SRV_SYNC_LIMIT 1000              /* items asked per pull */
#define SRV_SYNC_MAX_ANSWER (1ull << 30) /* largest answer read from a peer */

typedef struct srv_sync srv_sync;

typedef struct srv_sync_config {
  sa_client *client;             /* borrowed; open until srv_sync_stop returns */
  const char *self_id;           /* this node's id (copied) */
  const char *const *peers;      /* peer base URLs, "http://host:port" (copied) */
  size_t n_peers;                /* 1..SRV_SYNC_MAX_PEERS */
  const char *peer_token;        /* sent as a bearer token; NULL or "" = none (copied) */
  uint32_t wait_ms;              /* long-poll wait (0: SRV_SYNC_WAIT_MS) */
  uint32_t limit;                /* items per pull (0: SRV_SYNC_LIMIT) */
  uint32_t linger_ms;            /* pause after a pull that brought a partial page (0: none) */
  const char *extra_peer;        /* a pseudo-peer registered with the pullers' ids in every
                                    sa_client_sync_set_peers (the NATS publisher's
                                    "nats-pub.<stream>"); NULL = none (copied) */
  uint32_t max_batch_bytes;      /* the node's (0: the default): a pulled page is applied in
                                    chunks of at most half of it */
  atomic_uint *discovered_count; /* kept equal to the number of discovered peers (the
                                    core's sa_discovery.peers reads it); NULL = none */
} srv_sync_config;

/* Starts one puller per configured peer (there may be none: discovery adds
 * them).  Returns 0 and sets *out, or an errno value (out of memory, a
 * thread that could not start: nothing is left running). */
int srv_sync_start(const srv_sync_config *cfg, srv_sync **out);

/* Stops the pullers (an unfinished pull is abandoned: what was not applied
 * is pulled again next time) and joins them.  Bounded: a puller notices the
 * stop within about a second (libcurl's progress callback), or when the
 * batch it is applying is durable.  The table stays readable until srv_sync_free.
 * NULL is a no-op. */
void srv_sync_stop(srv_sync *s);

/* Frees s (after srv_sync_stop, once no request thread can call in any
 * more).  NULL is a no-op. */
void srv_sync_free(srv_sync *s);

/* What srv_sync_discovered did. */
typedef enum srv_sync_found {
  SRV_SYNC_FOUND_NEW,        /* a new peer: its puller started */
  SRV_SYNC_FOUND_KNOWN,      /* a discovered peer heard again: its silence ends */
  SRV_SYNC_FOUND_MOVED,      /* the id's URL changed: the old puller ends, a new one started */
  SRV_SYNC_FOUND_MOVED_FULL, /* the same, and the table was full: the old one ends only */
  SRV_SYNC_FOUND_CONFIGURED, /* a configured URL is this URL, or pulls this node id */
  SRV_SYNC_FOUND_CONFLICT,   /* another node id announced this URL first */
  SRV_SYNC_FOUND_FULL,       /* SRV_SYNC_MAX_PEERS peers already */
  SRV_SYNC_FOUND_STOPPING,   /* the pullers are stopping */
  SRV_SYNC_FOUND_ERROR,      /* out of memory, or the thread could not start */
} srv_sync_found;

/* Discovery heard node `id` announce `url` (both checked by the caller;
 * id is not this node's).  Adds a discovered peer (a puller, the id
 * registered once the peer itself says it is that id: the node id is
 * still learned from the protocol, and a URL that answers as another id is
 * refused), or refreshes it.  Called by the discovery thread only. */
srv_sync_found srv_sync_discovered(srv_sync *s, const char *id, const char *url);

/* Forgets the discovered peers not heard from for more than timeout_ms
 * (their pullers stop: nothing they applied is undone, their cursors stay
 * stored; their ids leave sa_client_sync_set_peers, so they no longer hold
 * outbox acknowledgements back), and joins the pullers that ended.
 * Returns how many were forgotten now.  Called by the discovery thread
 * only (it never waits on a running puller). */
size_t srv_sync_expire(srv_sync *s, uint64_t timeout_ms);

/* Discovered peers added and forgotten since start, and live now. */
void srv_sync_discovery_counts(srv_sync *s, uint64_t *found, uint64_t *forgotten, size_t *now);

/* The API's hook (api_config.sync_peers): copies the state of up to max
 * peers to out and returns how many.  s may be NULL (0 peers). */
size_t srv_sync_peers(void *s, api_sync_peer *out, size_t max);

/* The API's hook (api_config.sync_served): the puller `node` took `items`
 * ops from this node's feed, or (has_acked) said it applied through
 * `acked`. */
void srv_sync_served(void *s, const char *node, size_t items, uint64_t acked, bool has_acked);

/* Appends the per-peer series to /metrics (softadastra_sync_peer_*),
 * labelled by URL and node id. */
void srv_sync_write_metrics(srv_sync *s, FILE *f);

#endif /* SA_SRV_SYNC_H */
