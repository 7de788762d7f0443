/*
 * srv_disc_msg.c -- the discovery datagram and the addresses of discovery
 * (see srv_disc_msg.h).
 *
 * Every field is checked before the next is read, against the length
 * actually received: nothing is read past len, nothing is copied before
 * its size is known to fit, and a datagram is accepted only when its
 * fields end exactly at its last byte.  The node id follows the core's
 * rule (sa_node_id_check; tests/api/test_srv_disc.c compares the two).
 */
#include "srv_disc_msg.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *const srv_disc_reasons[SRV_DISC_NREASONS] = {
    "ok",      "size",  "format", "bad_id",   "bad_url", "unsigned",
    "bad_mac", "stale", "own_id", "loopback", "full",    "conflict",
};

const char *srv_disc_reason_name(srv_disc_reason r) {
  return (unsigned)r < SRV_DISC_NREASONS ? srv_disc_reasons[r] : "unknown";
}

static void srv_disc_why(char *why, size_t len, const char *msg) {
  if (why && len) snprintf(why, len, "%s", msg);
}

/* ---- SHA-256 and HMAC ------------------------------------------------------------ */

static const uint32_t srv_sha_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

typedef struct srv_sha {
  uint32_t h[8];
  unsigned char block[64];
  size_t used;    /* bytes in block */
  uint64_t total; /* bytes hashed */
} srv_sha;

static uint32_t srv_ror(uint32_t x, unsigned n) {
  return (x >> n) | (x << (32 - n));
}

static void srv_sha_block(srv_sha *s, const unsigned char *p) {
  uint32_t w[64];
  for (int i = 0; i < 16; i++)
    w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 |
           (uint32_t)p[4 * i + 3];
  for (int i = 16; i < 64; i++) {
    uint32_t s0 = srv_ror(w[i - 15], 7) ^ srv_ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
    uint32_t s1 = srv_ror(w[i - 2], 17) ^ srv_ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  uint32_t a = s->h[0], b = s->h[1], c = s->h[2], d = s->h[3], e = s->h[4], f = s->h[5],
           g = s->h[6], h = s->h[7];
  for (int i = 0; i < 64; i++) {
    uint32_t t1 = h + (srv_ror(e, 6) ^ srv_ror(e, 11) ^ srv_ror(e, 25)) + ((e & f) ^ (~e & g)) +
                  srv_sha_k[i] + w[i];
    uint32_t t2 = (srv_ror(a, 2) ^ srv_ror(a, 13) ^ srv_ror(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
    h = g;
    g = f;
    f = e;
    e = d + t1;
    d = c;
    c = b;
    b = a;
    a = t1 + t2;
  }
  s->h[0] += a;
  s->h[1] += b;
  s->h[2] += c;
  s->h[3] += d;
  s->h[4] += e;
  s->h[5] += f;
  s->h[6] += g;
  s->h[7] += h;
}

static void srv_sha_init(srv_sha *s) {
  static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  memcpy(s->h, h0, sizeof h0);
  s->used = 0;
  s->total = 0;
}

static void srv_sha_add(srv_sha *s, const void *data, size_t len) {
  const unsigned char *p = data;
  s->total += len;
  while (len) {
    size_t take = 64 - s->used < len ? 64 - s->used : len;
    memcpy(s->block + s->used, p, take);
    s->used += take;
    p += take;
    len -= take;
    if (s->used == 64) {
      srv_sha_block(s, s->block);
      s->used = 0;
    }
  }
}

static void srv_sha_end(srv_sha *s, unsigned char out[32]) {
  uint64_t bits = s->total * 8;
  unsigned char pad = 0x80;
  srv_sha_add(s, &pad, 1);
  unsigned char zero = 0;
  while (s->used != 56)
    srv_sha_add(s, &zero, 1);
  unsigned char len[8];
  for (int i = 0; i < 8; i++)
    len[i] = (unsigned char)(bits >> (56 - 8 * i));
  srv_sha_add(s, len, 8);
  for (int i = 0; i < 8; i++) {
    out[4 * i] = (unsigned char)(s->h[i] >> 24);
    out[4 * i + 1] = (unsigned char)(s->h[i] >> 16);
    out[4 * i + 2] = (unsigned char)(s->h[i] >> 8);
    out[4 * i + 3] = (unsigned char)s->h[i];
  }
}

void srv_sha256(const void *data, size_t len, unsigned char out[32]) {
  srv_sha s;
  srv_sha_init(&s);
  srv_sha_add(&s, data, len);
  srv_sha_end(&s, out);
}

void srv_hmac_sha256(const void *key, size_t klen, const void *data, size_t len,
                     unsigned char out[32]) {
  unsigned char k[64], pad[64], inner[32];
  memset(k, 0, sizeof k);
  if (klen > 64)
    srv_sha256(key, klen, k);
  else if (klen)
    memcpy(k, key, klen);
  srv_sha s;
  for (int i = 0; i < 64; i++)
    pad[i] = k[i] ^ 0x36;
  srv_sha_init(&s);
  srv_sha_add(&s, pad, 64);
  srv_sha_add(&s, data, len);
  srv_sha_end(&s, inner);
  for (int i = 0; i < 64; i++)
    pad[i] = k[i] ^ 0x5c;
  srv_sha_init(&s);
  srv_sha_add(&s, pad, 64);
  srv_sha_add(&s, inner, 32);
  srv_sha_end(&s, out);
}

/* ---- the fields -------------------------------------------------------------------- */

/* The core's node id rule (sa_node_id_check), on n bytes. */
static bool srv_disc_id_ok(const unsigned char *p, size_t n) {
  if (n < 1 || n > SA_NODE_ID_MAX) return false;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = p[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
          c == '_' || c == '-'))
      return false;
  }
  return true;
}

static bool srv_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* The host part of a URL that passed the check: [start, end) in url. */
static void srv_disc_url_host(const char *url, const char **start, const char **end) {
  const char *h = strstr(url, "://") + 3;
  const char *e;
  if (*h == '[') {
    e = strchr(h, ']');
    *start = h + 1;
    *end = e;
    return;
  }
  e = h;
  while (*e && *e != ':' && *e != '/')
    e++;
  *start = h;
  *end = e;
}

bool srv_disc_url_check(const char *url, char *why, size_t whylen) {
  size_t n = strlen(url);
  if (n == 0 || n > SRV_DISC_URL_MAX) {
    if (why && whylen)
      snprintf(why, whylen, "the URL is %zu bytes, it must be 1 to %d", n, SRV_DISC_URL_MAX);
    return false;
  }
  const char *p;
  if (!strncmp(url, "http://", 7))
    p = url + 7;
  else if (!strncmp(url, "https://", 8))
    p = url + 8;
  else {
    srv_disc_why(why, whylen, "the URL must start with http:// or https://");
    return false;
  }
  if (*p == '[') { /* [IPv6] */
    const char *rb = strchr(p, ']');
    char a[64];
    size_t l = rb ? (size_t)(rb - p - 1) : 0;
    struct in6_addr a6;
    if (!rb || l == 0 || l >= sizeof a) {
      srv_disc_why(why, whylen, "the URL's [IPv6] host is malformed");
      return false;
    }
    memcpy(a, p + 1, l);
    a[l] = '\0';
    if (inet_pton(AF_INET6, a, &a6) != 1) {
      srv_disc_why(why, whylen, "the URL's [IPv6] host is not an IPv6 address");
      return false;
    }
    p = rb + 1;
  } else { /* an IPv4 address, or a DNS name: labels of A-Z a-z 0-9 -, dots between */
    const char *h = p, *last = p;
    size_t label = 0;
    while (*p && *p != ':' && *p != '/') {
      char c = *p;
      if (c == '.') {
        if (label == 0) break;
        label = 0;
        last = p + 1;
      } else if (srv_alnum(c) || c == '-') {
        if (++label > 63) break;
      } else {
        break;
      }
      p++;
    }
    if (p == h || label == 0 || (size_t)(p - h) > 253 || *p == '@' ||
        (*p && *p != ':' && *p != '/' && *p != '?' && *p != '#')) {
      srv_disc_why(why, whylen,
                   "the URL's host must be an IPv4 address, an [IPv6] address or a DNS name "
                   "(A-Z a-z 0-9 . -), with no user info");
      return false;
    }
    char a[256];
    size_t l = (size_t)(p - h);
    memcpy(a, h, l);
    a[l] = '\0';
    struct in_addr a4;
    /* Not a dotted quad: then a name, whose last label is not a number.
     * The resolver would read "127.1", "2130706433" or "0x7f.1" as
     * addresses (inet_aton's forms), past the loopback check. */
    bool number = true, hex = (p - last) > 2 && last[0] == '0' && (last[1] | 0x20) == 'x';
    for (const char *q = last; q < p; q++) {
      number &= *q >= '0' && *q <= '9';
      hex &= q < last + 2 || (*q >= '0' && *q <= '9') || ((*q | 0x20) >= 'a' && (*q | 0x20) <= 'f');
    }
    if (inet_pton(AF_INET, a, &a4) != 1 && (number || hex)) {
      srv_disc_why(why, whylen, "the URL's host is neither an IPv4 address nor a DNS name");
      return false;
    }
  }
  if (*p == ':') {
    p++;
    unsigned long port = 0;
    const char *d = p;
    while (*p >= '0' && *p <= '9' && p - d < 6)
      port = port * 10 + (unsigned long)(*p++ - '0');
    if (p == d || port < 1 || port > 65535 || (*p >= '0' && *p <= '9')) {
      srv_disc_why(why, whylen, "the URL's port must be 1 to 65535");
      return false;
    }
  }
  for (const char *p0 = p; *p; p++) { /* the path: "/..." */
    char c = *p;
    if ((p == p0 && c != '/') ||
        !(srv_alnum(c) || c == '.' || c == '_' || c == '~' || c == '-' || c == '/')) {
      srv_disc_why(why, whylen,
                   "the URL's path may hold only A-Z a-z 0-9 . _ ~ - / (no query, fragment, "
                   "space or escape)");
      return false;
    }
  }
  return true;
}

bool srv_disc_addr_loopback(const char *addr) {
  struct in_addr a4;
  struct in6_addr a6;
  if (inet_pton(AF_INET, addr, &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
  if (inet_pton(AF_INET6, addr, &a6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&a6)) return true;
    if (IN6_IS_ADDR_V4MAPPED(&a6)) return a6.s6_addr[12] == 127;
  }
  return false;
}

bool srv_disc_url_loopback(const char *url) {
  const char *s, *e;
  srv_disc_url_host(url, &s, &e);
  char h[256];
  size_t l = (size_t)(e - s);
  if (l >= sizeof h) return false;
  memcpy(h, s, l);
  h[l] = '\0';
  if (!strcasecmp(h, "localhost") ||
      (l > 10 && !strcasecmp(h + l - 10, ".localhost"))) /* RFC 6761 */
    return true;
  return srv_disc_addr_loopback(h);
}

/* ---- encode / parse ------------------------------------------------------------------ */

size_t srv_disc_encode(const char *node_id, const char *url, uint64_t sent_ms, const char *key,
                       unsigned char *out, size_t cap) {
  size_t n = strlen(node_id), m = strlen(url);
  bool sign = key && key[0];
  size_t len = 16 + n + m + (sign ? SRV_DISC_MAC_LEN : 0);
  if (!srv_disc_id_ok((const unsigned char *)node_id, n) || !srv_disc_url_check(url, NULL, 0) ||
      len > cap)
    return 0;
  memcpy(out, SRV_DISC_MAGIC, 4);
  out[4] = SRV_DISC_VERSION;
  out[5] = sign ? SRV_DISC_FLAG_SIGNED : 0;
  for (int i = 0; i < 8; i++)
    out[6 + i] = (unsigned char)(sent_ms >> (56 - 8 * i));
  out[14] = (unsigned char)n;
  memcpy(out + 15, node_id, n);
  out[15 + n] = (unsigned char)m;
  memcpy(out + 16 + n, url, m);
  if (sign) srv_hmac_sha256(key, strlen(key), out, 16 + n + m, out + 16 + n + m);
  return len;
}

srv_disc_reason srv_disc_parse(const unsigned char *buf, size_t len, const char *key,
                               srv_disc_msg *out, char *why, size_t whylen) {
  memset(out, 0, sizeof *out);
  if (len < SRV_DISC_MIN || len > SRV_DISC_MAX) {
    if (why && whylen)
      snprintf(why, whylen, "a datagram of %zu bytes (a discovery datagram is %d to %d)", len,
               SRV_DISC_MIN, SRV_DISC_MAX);
    return SRV_DISC_SIZE;
  }
  if (memcmp(buf, SRV_DISC_MAGIC, 4) != 0) {
    srv_disc_why(why, whylen, "not a discovery datagram (magic)");
    return SRV_DISC_FORMAT;
  }
  if (buf[4] != SRV_DISC_VERSION) {
    if (why && whylen)
      snprintf(why, whylen, "discovery datagram version %u (this node speaks %d)", buf[4],
               SRV_DISC_VERSION);
    return SRV_DISC_FORMAT;
  }
  if (buf[5] & ~SRV_DISC_FLAG_SIGNED) {
    srv_disc_why(why, whylen, "unknown flags");
    return SRV_DISC_FORMAT;
  }
  bool sign = buf[5] & SRV_DISC_FLAG_SIGNED;
  size_t mac = sign ? SRV_DISC_MAC_LEN : 0;
  size_t n = buf[14];
  /* 15 + n bytes of header and id, then the URL's length byte */
  if (n == 0 || n > SA_NODE_ID_MAX || 16 + n > len) {
    srv_disc_why(why, whylen, "the node id's length is out of bounds");
    return SRV_DISC_FORMAT;
  }
  size_t m = buf[15 + n];
  if (m == 0 || m > SRV_DISC_URL_MAX || 16 + n + m + mac != len) {
    srv_disc_why(why, whylen, "the URL's length does not match the datagram's");
    return SRV_DISC_FORMAT;
  }
  if (!srv_disc_id_ok(buf + 15, n)) {
    srv_disc_why(why, whylen, "the node id must be 1-64 of A-Z a-z 0-9 . _ -");
    return SRV_DISC_BAD_ID;
  }
  char url[SRV_DISC_URL_MAX + 1];
  memcpy(url, buf + 16 + n, m);
  url[m] = '\0';
  if (memchr(url, '\0', m) || !srv_disc_url_check(url, why, whylen)) {
    if (memchr(url, '\0', m)) srv_disc_why(why, whylen, "the URL holds a NUL byte");
    return SRV_DISC_BAD_URL;
  }
  if (key && key[0]) {
    if (!sign) {
      srv_disc_why(why, whylen, "an unsigned announcement, and this node has a token");
      return SRV_DISC_UNSIGNED;
    }
    unsigned char want[SRV_DISC_MAC_LEN];
    srv_hmac_sha256(key, strlen(key), buf, 16 + n + m, want);
    unsigned char diff = 0;
    for (size_t i = 0; i < SRV_DISC_MAC_LEN; i++) /* constant time */
      diff |= (unsigned char)(want[i] ^ buf[16 + n + m + i]);
    if (diff) {
      srv_disc_why(why, whylen, "the signature does not verify under this node's token");
      return SRV_DISC_BAD_MAC;
    }
  }
  for (int i = 0; i < 8; i++)
    out->sent_ms = out->sent_ms << 8 | buf[6 + i];
  out->is_signed = sign;
  out->verified = sign && key && key[0];
  memcpy(out->node_id, buf + 15, n);
  out->node_id[n] = '\0';
  memcpy(out->url, url, m + 1);
  return SRV_DISC_OK;
}

srv_disc_verdict srv_disc_judge(const srv_disc_msg *m, const char *self_id, const char *self_url,
                                bool from_loopback, uint64_t now_ms, uint64_t window_ms,
                                srv_disc_reason *reason) {
  *reason = SRV_DISC_OK;
  if (strcmp(m->node_id, self_id) == 0) {
    if (strcmp(m->url, self_url) == 0) return SRV_DISC_SELF;
    *reason = SRV_DISC_OWN_ID;
    return SRV_DISC_REFUSED;
  }
  if (!from_loopback && srv_disc_url_loopback(m->url)) {
    *reason = SRV_DISC_LOOPBACK;
    return SRV_DISC_REFUSED;
  }
  if (m->verified &&
      (m->sent_ms > now_ms ? m->sent_ms - now_ms : now_ms - m->sent_ms) > window_ms) {
    *reason = SRV_DISC_STALE;
    return SRV_DISC_REFUSED;
  }
  return SRV_DISC_PEER;
}

/* ---- addresses --------------------------------------------------------------------- */

/* The source address the kernel would use toward the default route (a UDP
 * connect sends nothing: it only looks the route up), or false. */
static bool srv_disc_route_addr(char *out, size_t len) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(9)};
  inet_pton(AF_INET, "198.51.100.1", &a.sin_addr); /* TEST-NET-2: never reached */
  struct sockaddr_in got;
  socklen_t gl = sizeof got;
  bool ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
            getsockname(fd, (struct sockaddr *)&got, &gl) == 0 && got.sin_addr.s_addr != 0 &&
            (ntohl(got.sin_addr.s_addr) >> 24) != 127 &&
            inet_ntop(AF_INET, &got.sin_addr, out, (socklen_t)len) != NULL;
  close(fd);
  return ok;
}

int srv_disc_advertise_url(const char *host, uint16_t port, const char *configured, char *out,
                           size_t outlen, const char **how, char *why, size_t whylen) {
  bool v6 = strchr(host, ':') != NULL;
  bool loop = srv_disc_addr_loopback(host);
  char reason[160];
  *how = "";
  if (configured && configured[0]) {
    if (!srv_disc_url_check(configured, reason, sizeof reason)) {
      if (why && whylen)
        snprintf(why, whylen, "discovery_url \"%s\" is not a URL peers can use: %s", configured,
                 reason);
      return -1;
    }
    if (!loop && srv_disc_url_loopback(configured)) {
      if (why && whylen)
        snprintf(why, whylen,
                 "the node listens on %s but discovery_url \"%s\" is a loopback address: peers "
                 "on other hosts would pull their own host; set --advertise-url to an address "
                 "they reach",
                 host, configured);
      return -1;
    }
    snprintf(out, outlen, "%s", configured);
    *how = "discovery_url";
    return 0;
  }
  if (loop || (strcmp(host, "0.0.0.0") != 0 && strcmp(host, "::") != 0)) {
    snprintf(out, outlen, v6 ? "http://[%s]:%u" : "http://%s:%u", host, (unsigned)port);
    *how = "listen address";
    return 0;
  }
  char addr[64] = "";
  if (!v6 && srv_disc_route_addr(addr, sizeof addr)) {
    snprintf(out, outlen, "http://%s:%u", addr, (unsigned)port);
    *how = "the default route's interface";
    return 0;
  }
  /* No default route: the one up, non-loopback IPv4 address, if there is one. */
  char list[512] = "";
  size_t used = 0, count = 0;
  struct ifaddrs *ifs = NULL;
  if (!v6 && getifaddrs(&ifs) == 0) {
    for (struct ifaddrs *i = ifs; i; i = i->ifa_next) {
      if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || !(i->ifa_flags & IFF_UP) ||
          (i->ifa_flags & IFF_LOOPBACK))
        continue;
      char a[INET_ADDRSTRLEN];
      inet_ntop(AF_INET, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, a, sizeof a);
      if (count++ == 0) snprintf(addr, sizeof addr, "%s", a);
      int w =
          snprintf(list + used, sizeof list - used, "%s%s %s", used ? ", " : "", i->ifa_name, a);
      if (w > 0 && (size_t)w < sizeof list - used) used += (size_t)w;
    }
    freeifaddrs(ifs);
  }
  if (count == 1) {
    snprintf(out, outlen, "http://%s:%u", addr, (unsigned)port);
    *how = "the only interface";
    return 0;
  }
  if (why && whylen)
    snprintf(why, whylen,
             "the node listens on %s and discovery found no single address to advertise (%s%s): "
             "set --advertise-url http://ADDRESS:%u (discovery_url) to the URL peers should use",
             host, count ? "interfaces: " : "no default route and no interface address",
             count ? list : "", (unsigned)port);
  return -1;
}

size_t srv_disc_destinations(bool loopback_only, struct in_addr *out, size_t max) {
  size_t n = 0;
  if (max == 0) return 0;
  inet_pton(AF_INET, "127.255.255.255", &out[n++]);
  struct ifaddrs *ifs = NULL;
  if (loopback_only || getifaddrs(&ifs) != 0) return n;
  for (struct ifaddrs *i = ifs; i && n < max; i = i->ifa_next) {
    if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || !i->ifa_broadaddr ||
        !(i->ifa_flags & IFF_UP) || !(i->ifa_flags & IFF_BROADCAST) ||
        (i->ifa_flags & IFF_LOOPBACK))
      continue;
    struct in_addr b = ((struct sockaddr_in *)i->ifa_broadaddr)->sin_addr;
    bool dup = false;
    for (size_t k = 0; k < n; k++)
      dup |= out[k].s_addr == b.s_addr;
    if (!dup && b.s_addr != 0) out[n++] = b;
  }
  freeifaddrs(ifs);
  return n;
}
