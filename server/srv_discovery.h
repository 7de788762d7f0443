/*
 * srv_discovery.h -- UDP discovery of `softadastra serve --discovery udp`
 * (issue 22 item 8): the node announces its id and the URL peers should
 * pull on a UDP port, and adds the nodes it hears as peers of the http
 * transport (srv_sync.c), forgetting those silent past discovery_timeout_s.
 *
 * What it is: one thread (`sa-discovery`) owning two UDP sockets: one
 * bound to the discovery port (SO_REUSEADDR and SO_REUSEPORT, so every
 * node of a host binds it) that receives, one unbound that sends.  Every
 * discovery_interval_ms it sends one datagram (srv_disc_msg.h) to
 * 127.255.255.255 (the nodes of this host) and, unless the node listens on
 * a loopback address, to the broadcast address of each up IPv4 interface;
 * it answers a newly heard node at once, so two nodes find each other as
 * soon as the second one starts.  Every datagram received is checked
 * whole (size, form, node id, URL, signature, own id, loopback URL from
 * another host); a bad one is counted by reason and skipped, and the first
 * of each reason (then one a minute) is logged.
 *
 * What it is not: the pullers (srv_sync.c: srv_sync_discovered adds one,
 * srv_sync_expire forgets) or the datagram's code (srv_disc_msg.c).
 *
 * Tokens: with auth_token or peer_token set, announcements are signed
 * (HMAC-SHA256 with auth_token, else peer_token) and only announcements
 * that verify under peer_token (else auth_token) are heard: this node
 * sends its peer_token only to nodes that proved they hold it, and applies
 * data only from them.
 *
 * Threads: srv_discovery_start starts `sa-discovery`; srv_discovery_stop
 * wakes and joins it (the main thread, before srv_sync_stop);
 * srv_discovery_info and srv_discovery_write_metrics run on request
 * threads (they read atomics and the fixed settings).
 */
#ifndef SA_SRV_DISCOVERY_H
#define SA_SRV_DISCOVERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "api.h"
#include "srv_sync.h"

#define SRV_DISCOVERY_MAX_DEST 16 /* broadcast addresses announced to */

typedef struct srv_discovery srv_discovery;

typedef struct srv_discovery_config {
  srv_sync *sync;            /* the pullers discovered peers join (borrowed) */
  const char *self_id;       /* this node's id */
  const char *listen_host;   /* the numeric host the node listens on (cfg_parse_listen) */
  uint16_t listen_port;      /* the port it is bound to */
  const char *advertise_url; /* discovery_url; NULL or "": derived (srv_disc_advertise_url) */
  uint16_t port;             /* discovery_port */
  uint32_t interval_ms;      /* discovery_interval_ms */
  uint32_t timeout_s;        /* discovery_timeout_s */
  const char *sign_key;      /* signs announcements; NULL or "": unsigned */
  const char *verify_key;    /* checks them; NULL or "": not checked */
  uint32_t window_ms;        /* a signed announcement this far from now is a replay */
} srv_discovery_config;

/* Derives the advertised URL, opens and binds the sockets, starts the
 * thread.  Returns 0 and sets *out, or -1 with a sentence in why (the URL
 * cannot be derived, the port cannot be bound...); nothing is left open. */
int srv_discovery_start(const srv_discovery_config *cfg, srv_discovery **out, char *why,
                        size_t whylen);

/* The URL this node advertises (fixed once started). */
const char *srv_discovery_url(const srv_discovery *d);

/* How the URL was chosen ("discovery_url", "listen address", ...). */
const char *srv_discovery_url_source(const srv_discovery *d);

/* Stops and joins the thread (bounded: it wakes at once).  NULL: no-op. */
void srv_discovery_stop(srv_discovery *d);

/* Closes the sockets and frees d (after srv_discovery_stop, once no request
 * thread can call in).  NULL: no-op. */
void srv_discovery_free(srv_discovery *d);

/* The API's hook (api_config.sync_discovery); d may be NULL (false). */
bool srv_discovery_info(void *d, api_sync_discovery *out);

/* Appends softadastra_discovery_* to /metrics.  NULL: nothing. */
void srv_discovery_write_metrics(srv_discovery *d, FILE *f);

#endif /* SA_SRV_DISCOVERY_H */
