/*
 * srv_disc_msg.h -- the datagram of UDP discovery (issue 22 item 8): its
 * encoder, its strict parser, the checks that need the receiving node
 * (its own id, the sender's address, the clock), the form of an advertised
 * URL, and HMAC-SHA256 for signed announcements.
 *
 * What it is: functions without a thread or global state, so a unit test
 * and a fuzz target drive them alone; the datagram's are pure, the two
 * address functions at the end read the host's interfaces.  What it is
 * not: the discovery thread and its sockets (srv_discovery.c) or the
 * pullers (srv_sync.c).
 *
 * The datagram, version 1 (integers big-endian, nothing before or after):
 *
 *   offset  size  field
 *   0       4     magic: the four bytes 'S' 'A' 'D' 'G'
 *   4       1     version: 1
 *   5       1     flags: bit 0 = signed (a 32-byte HMAC ends the datagram);
 *                 every other bit 0
 *   6       8     sent_ms: the sender's unix time in ms
 *   14      1     N: the node id's length, 1..SA_NODE_ID_MAX
 *   15      N     the node id (sa_node_id_check: A-Z a-z 0-9 . _ -)
 *   15+N    1     M: the URL's length, 1..SRV_DISC_URL_MAX
 *   16+N    M     the base URL peers should pull (srv_disc_url_check)
 *   16+N+M  32    signed only: HMAC-SHA256(key, every byte before it)
 *
 * So a datagram is SRV_DISC_MIN (18) to SRV_DISC_MAX (312) bytes; anything else (a wrong length,
 * a byte out of place, trailing bytes) is refused whole, with a reason.
 *
 * Threads: every function is reentrant.
 */
#ifndef SA_SRV_DISC_MSG_H
#define SA_SRV_DISC_MSG_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "softadastra.h"

#define SRV_DISC_MAGIC "SADG"
#define SRV_DISC_VERSION 1
#define SRV_DISC_FLAG_SIGNED 0x01
#define SRV_DISC_URL_MAX 200 /* as a configured peer URL */
#define SRV_DISC_MAC_LEN 32
#define SRV_DISC_MIN (15 + 1 + 1 + 1)
#define SRV_DISC_MAX (15 + SA_NODE_ID_MAX + 1 + SRV_DISC_URL_MAX + SRV_DISC_MAC_LEN)

/* Why a datagram was refused (the /metrics label is srv_disc_reason_name). */
typedef enum srv_disc_reason {
  SRV_DISC_OK = 0,
  SRV_DISC_SIZE,     /* shorter than the smallest or longer than the largest datagram */
  SRV_DISC_FORMAT,   /* magic, version, flags, lengths or trailing bytes */
  SRV_DISC_BAD_ID,   /* the node id breaks sa_node_id_check */
  SRV_DISC_BAD_URL,  /* the URL breaks srv_disc_url_check */
  SRV_DISC_UNSIGNED, /* not signed, and this node has a key */
  SRV_DISC_BAD_MAC,  /* signed, and the MAC does not verify under this node's key */
  SRV_DISC_STALE,    /* signed, and sent_ms is outside the replay window */
  SRV_DISC_OWN_ID,   /* this node's own id from another URL (two nodes share an id) */
  SRV_DISC_LOOPBACK, /* a loopback URL from a sender that is not on this host */
  SRV_DISC_FULL,     /* the peer table is full */
  SRV_DISC_CONFLICT, /* the URL is already a peer under another node id */
  SRV_DISC_NREASONS
} srv_disc_reason;

/* "size", "format", "bad_id", ... */
const char *srv_disc_reason_name(srv_disc_reason r);

/* A parsed datagram. */
typedef struct srv_disc_msg {
  uint64_t sent_ms;
  bool is_signed; /* it carries a MAC */
  bool verified;  /* and the MAC was checked under this node's key (sent_ms is the sender's) */
  char node_id[SA_NODE_ID_MAX + 1];
  char url[SRV_DISC_URL_MAX + 1];
} srv_disc_msg;

/* Writes the datagram of (node_id, url, sent_ms) to out (cap bytes),
 * signed with key when key is not NULL or "".  Returns its length, or 0
 * when node_id or url is invalid or cap too small. */
size_t srv_disc_encode(const char *node_id, const char *url, uint64_t sent_ms, const char *key,
                       unsigned char *out, size_t cap);

/* Parses len bytes.  key: this node's verification key (NULL or "": none;
 * then a signature is not checked and an unsigned datagram is fine).
 * Returns SRV_DISC_OK with *out filled, or the reason of the refusal with
 * a sentence in why (whylen bytes, may be 0).  Checks the form only; see
 * srv_disc_judge for the rest. */
srv_disc_reason srv_disc_parse(const unsigned char *buf, size_t len, const char *key,
                               srv_disc_msg *out, char *why, size_t whylen);

/* What a parsed datagram means to the receiving node. */
typedef enum srv_disc_verdict {
  SRV_DISC_PEER,    /* a peer to add or refresh */
  SRV_DISC_SELF,    /* this node's own announcement coming back: ignored */
  SRV_DISC_REFUSED, /* *reason says why */
} srv_disc_verdict;

/* Judges m for the node self_id advertising self_url: its own id with its
 * own URL is SELF, with another URL REFUSED (SRV_DISC_OWN_ID); a loopback
 * URL (127.0.0.0/8, [::1], localhost) from a sender whose address is not
 * loopback (from_loopback false) is refused (SRV_DISC_LOOPBACK: this node
 * would pull some local port); a verified datagram whose sent_ms is more
 * than window_ms away from now_ms is refused (SRV_DISC_STALE: a replay).
 * The loopback check reads the URL's text (an address, "localhost"); it
 * does not resolve names. */
srv_disc_verdict srv_disc_judge(const srv_disc_msg *m, const char *self_id, const char *self_url,
                                bool from_loopback, uint64_t now_ms, uint64_t window_ms,
                                srv_disc_reason *reason);

/* Checks an advertised base URL: "http://" or "https://", a host (an IPv4
 * address, an [IPv6] address or a DNS name of A-Z a-z 0-9 . -), an
 * optional :port (1..65535), an optional path of A-Z a-z 0-9 . _ ~ - /;
 * no user info, query, fragment, space or other byte; at most
 * SRV_DISC_URL_MAX bytes.  Returns true when it is fine, else false with
 * the reason in why. */
bool srv_disc_url_check(const char *url, char *why, size_t whylen);

/* True when url's host is a loopback address or name (127.0.0.0/8, ::1,
 * localhost).  url must pass srv_disc_url_check. */
bool srv_disc_url_loopback(const char *url);

/* True when the textual address (IPv4 or IPv6, no brackets) is loopback. */
bool srv_disc_addr_loopback(const char *addr);

/* The URL this node advertises, from its numeric listen host and bound
 * port: `configured` (discovery_url) when set -- refused when it is a
 * loopback URL and host is not loopback; else from the listen address:
 * a loopback or specific address as it is; 0.0.0.0: the address of the
 * interface of the default route, else the only up non-loopback IPv4
 * address; "::" and every other case: none.  Never a loopback address
 * unless host is one.  Returns 0 with the URL in out and *how naming the
 * source, or -1 with a sentence in why that names the setting to give
 * (--advertise-url / discovery_url). */
int srv_disc_advertise_url(const char *host, uint16_t port, const char *configured, char *out,
                           size_t outlen, const char **how, char *why, size_t whylen);

/* Where announcements go: 127.255.255.255 (the nodes of this host), and
 * unless loopback_only the broadcast address of every up, non-loopback
 * IPv4 interface.  Writes at most max; returns how many. */
size_t srv_disc_destinations(bool loopback_only, struct in_addr *out, size_t max);

/* SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104). */
void srv_sha256(const void *data, size_t len, unsigned char out[32]);
void srv_hmac_sha256(const void *key, size_t klen, const void *data, size_t len,
                     unsigned char out[32]);

#endif /* SA_SRV_DISC_MSG_H */
