/*
 * srv_nats.h -- the NATS JetStream transport of `softadastra serve`
 * (issue 23): this node's own ops are published to a JetStream stream, and
 * every node consumes that stream through a durable pull consumer of its
 * own, so a fleet syncs through a hub (one or more nats-server) instead of
 * a connection to every peer.
 *
 * What it is:
 *   - the publisher (thread `sa-nats-pub`): reads this node's sync feed
 *     (sa_client_sync_read) from the position the hub acknowledged, keeps
 *     the items of this node's own origin, publishes each asynchronously to
 *     <prefix>.<key tokens>.<origin token> with a Nats-Msg-Id header (the
 *     server's dedup), at most `window` unacknowledged at once, and moves
 *     the pseudo-peer "nats-pub.<stream>"'s acknowledged position
 *     (sa_client_sync_peer_ack) only over publishes JetStream acknowledged,
 *     in order.  A local write never waits on it.
 *   - the consumer (thread `sa-nats-sub`): a durable pull consumer named
 *     after the node id, created explicitly with js_AddConsumer (so closing
 *     the subscription never deletes it) and bound to; fetched batches are
 *     decoded whole, ops of this node's own origin are left out, the rest
 *     applied with sa_client_sync_apply(peer "nats.<stream>", cursor = the
 *     last stream sequence of the batch) -- the sequence commits with the
 *     items -- and only then acknowledged (AckAll).  Messages at or below
 *     the stored sequence are skipped, so a kill -9 anywhere neither skips
 *     nor applies twice.
 *   - the hub's state for GET /v1/sync/status, `softadastra peers` and
 *     /metrics.
 *
 * What it is not: the conflict rule or the apply path (the core), nor the
 * HTTP transport (srv_sync.c; both can run together).
 *
 * Invariants: a batch is applied only after every message of it decoded;
 * the consumer's cursor moves only through sa_client_sync_apply; the
 * publisher's acknowledged position never passes an op JetStream did not
 * acknowledge.  The state is written under the transport's mutex (a leaf).
 *
 * Threads: srv_nats_start starts `sa-nats-pub` and `sa-nats-sub` (and
 * nats.c starts its own: the connection's reader and flusher, the
 * publish-ack subscription's dispatcher, which runs the ack callback);
 * srv_nats_stop joins them (the main thread); srv_nats_peers and
 * srv_nats_write_metrics run on request threads.
 */
#ifndef SA_SRV_NATS_H
#define SA_SRV_NATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "api.h"
#include "softadastra.h"

/* Unacknowledged async publishes.  Publishing is bound by the window over
 * the acknowledgement's round trip: with 256, 60,000 ops through a 3-server
 * R3 cluster went at 13.7-15.9k ops/s, with 1024 at 19.2-19.5k (raw nats.c
 * async publish 24-25k in the same runs). */
#define SRV_NATS_WINDOW 1024
#define SRV_NATS_BATCH 500        /* messages per fetch */
#define SRV_NATS_ACK_TIMEOUT 5000 /* ms: a publish not acknowledged by then is sent again */
#define SRV_NATS_SUBJECT_MAX 2048

typedef struct srv_nats srv_nats;

typedef struct srv_nats_config {
  sa_client *client;          /* borrowed; open until srv_nats_stop returns */
  const char *self_id;        /* this node's id */
  const char *urls;           /* comma-separated nats:// URLs */
  const char *stream;         /* stream name (SOFTADASTRA) */
  const char *subject_prefix; /* subject prefix (sa.ops) */
  uint32_t replicas;          /* stream replicas; 0: 3 with >= 3 servers known, else 1 */
  const char *creds;          /* credentials file ("" : none) */
  const char *token;          /* token ("" : none) */
  const char *filter_prefix;  /* consume only keys starting with this ("" : all) */
  uint32_t window;            /* 0: SRV_NATS_WINDOW */
  uint32_t batch;             /* 0: SRV_NATS_BATCH */
} srv_nats_config;

/* Checks cfg (stream name, subject prefix) and starts the transport.
 * Returns 0 and sets *out, or an errno value with the reason in err (a
 * hub that is down is not an error: the threads connect when it comes). */
int srv_nats_start(const srv_nats_config *cfg, srv_nats **out, char *err, size_t errlen);

/* Stops and joins the threads (a fetched batch not applied is fetched
 * again next time; unacknowledged publishes are published again).  NULL
 * is a no-op. */
void srv_nats_stop(srv_nats *n);

/* Frees n after srv_nats_stop.  NULL is a no-op. */
void srv_nats_free(srv_nats *n);

/* The pseudo-peer id whose acknowledged position is what JetStream stored
 * of this node's ops ("nats-pub.<stream>"): register it with
 * sa_client_sync_set_peers so the outbox waits for the hub. */
const char *srv_nats_pub_peer(const srv_nats *n);

/* The hub as one entry of the peers' state (url in use, state, cursor =
 * the stream sequence applied, lag_ops = the consumer's pending count,
 * ops_sent = publishes acknowledged, acked = the feed position the hub
 * holds).  Returns 0 or 1. */
size_t srv_nats_peers(srv_nats *n, api_sync_peer *out, size_t max);

/* Appends softadastra_nats_* series to /metrics. */
void srv_nats_write_metrics(srv_nats *n, FILE *f);

/* ---- pure helpers (unit-tested) --------------------------------------------------- */

/* The subject of an op on key from origin: <prefix>.<first>.<key>.<origin>
 * where <first> is "s" + the key's first path segment when it is followed
 * by '/' and made of [A-Za-z0-9_-] (1..64 bytes), "x" + its hex otherwise
 * (up to 64 bytes), "h" + 16 hex digits of a hash for a longer one, "n" when
 * the key holds no '/'; <key> and <origin> are base64url without padding.
 * No '.', '*', '>' or whitespace of a key or an id reaches the subject.
 * Returns 0, or -1 when it does not fit in outlen. */
int srv_nats_subject(const char *prefix, const char *key, const char *origin, char *out,
                     size_t outlen);

/* The consumer's filter subject for keys starting with key_prefix ("":
 * every key): <prefix>.<first>.> when key_prefix ends its first segment
 * with '/', else <prefix>.> (the consumer then filters by key itself). */
int srv_nats_filter(const char *prefix, const char *key_prefix, char *out, size_t outlen);

/* Encodes an item as a message body (malloc'ed, *len bytes). NULL when out
 * of memory. */
char *srv_nats_encode(const sa_sync_item *it, size_t *len);

/* The message header that carries a put's content type (the body does not). */
#define SRV_NATS_CT_HEADER "Softadastra-Content-Type"

/* Decodes a body into it, with the content type of the message's
 * SRV_NATS_CT_HEADER (ctype: NULL or "" when it has none; checked with
 * sa_content_type_check, puts only).  key, data and content_type are
 * malloc'ed: free them.  Returns 0, or -1 with the cause in why. */
int srv_nats_decode(const void *body, size_t len, const char *ctype, sa_sync_item *it, char *why,
                    size_t whylen);

#endif /* SA_SRV_NATS_H */
