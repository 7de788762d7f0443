/*
 * srv_discovery.c -- the `sa-discovery` thread (see srv_discovery.h).
 *
 * Why broadcast and not multicast: a loopback interface carries no
 * multicast on Linux by default (lo has no MULTICAST flag), so two nodes on
 * 127.0.0.1 -- the tests, a developer's machine -- would not hear each
 * other without a route change; a datagram to 127.255.255.255 reaches
 * every socket bound to the port on this host.  On a LAN the same datagram
 * goes to each interface's broadcast address (one hop, no router passes
 * it; a fleet across subnets configures --peer URLs).  Several nodes on one
 * host share the port: SO_REUSEADDR (and SO_REUSEPORT) let each bind it,
 * and a broadcast datagram is delivered to every socket bound to it.
 *
 * A node listening on a loopback address binds its receiving socket to
 * 127.255.255.255 (it hears only this host's nodes: its own URL is of use
 * to no other host) and announces only there; any other node binds
 * 0.0.0.0.
 *
 * The loop: poll the receiving socket and an eventfd (the stop) until the
 * next announcement or the next expiry check; read at most
 * SRV_DISC_BURST datagrams per wake-up (non-blocking), each checked and
 * handled; announce when due (every interval_ms, with +-10% jitter so the
 * nodes of a fleet drift apart, and at most every SRV_DISC_REPLY_MS after
 * a new node was heard); forget peers silent past timeout_s
 * (srv_sync_expire) every min(timeout/4, 1 s).
 *
 * Invariants: a datagram touches nothing but counters until it parsed and
 * was judged whole; counters are atomics (request threads read them); the
 * rest of the state belongs to the thread.
 */
#define _GNU_SOURCE
#include "srv_discovery.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "srv_disc_msg.h"
#include "srv_log.h"

#define SRV_DISC_BURST 64        /* datagrams read per wake-up */
#define SRV_DISC_REPLY_MS 100    /* an answer to a new node waits at least this after the last */
#define SRV_DISC_LOG_EVERY 60000 /* a refusal reason is logged at most once a minute */

struct srv_discovery {
  srv_sync *sync;
  char self[SA_NODE_ID_MAX + 1];
  char url[SRV_DISC_URL_MAX + 1];
  const char *url_source;
  char listen_host[64];
  uint16_t port;
  uint32_t interval_ms, timeout_s, window_ms;
  char *sign_key, *verify_key; /* NULL: none */
  bool loopback_only;
  int rfd, sfd, efd;
  pthread_t thread;
  bool started;
  atomic_bool stop;
  uint64_t start_ms; /* CLOCK_MONOTONIC */
  /* Counters (read by request threads). */
  atomic_ullong sent, send_errors, received, own, refused[SRV_DISC_NREASONS];
  /* The thread's own. */
  uint64_t logged_ms[SRV_DISC_NREASONS];
  uint64_t suppressed[SRV_DISC_NREASONS];
  int last_send_errno;
};

static uint64_t srv_disc_mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t srv_disc_unix_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- announcing ------------------------------------------------------------------ */

static void srv_disc_announce(srv_discovery *d) {
  unsigned char buf[SRV_DISC_MAX];
  size_t len = srv_disc_encode(d->self, d->url, srv_disc_unix_ms(), d->sign_key, buf, sizeof buf);
  if (len == 0) return; /* cannot happen: both were checked at start */
  struct in_addr dest[SRV_DISCOVERY_MAX_DEST];
  size_t n = srv_disc_destinations(d->loopback_only, dest, SRV_DISCOVERY_MAX_DEST);
  for (size_t i = 0; i < n; i++) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(d->port), .sin_addr = dest[i]};
    if (sendto(d->sfd, buf, len, MSG_DONTWAIT, (struct sockaddr *)&a, sizeof a) == (ssize_t)len) {
      atomic_fetch_add_explicit(&d->sent, 1, memory_order_relaxed);
      continue;
    }
    int e = errno;
    atomic_fetch_add_explicit(&d->send_errors, 1, memory_order_relaxed);
    if (e != d->last_send_errno) { /* once per kind of failure, not per announcement */
      char to[INET_ADDRSTRLEN];
      inet_ntop(AF_INET, &dest[i], to, sizeof to);
      srv_log(SRV_LOG_WARN, "discovery_send", "to=%s:%u error=\"%s\"", to, (unsigned)d->port,
              strerror(e));
      d->last_send_errno = e;
    }
  }
}

/* ---- hearing ----------------------------------------------------------------------- */

/* Counts a refusal and logs it: the first of its reason, then at most one a
 * minute (with how many were not logged). */
static void srv_disc_refuse(srv_discovery *d, srv_disc_reason r, const char *from,
                            const srv_disc_msg *m, const char *why) {
  atomic_fetch_add_explicit(&d->refused[r], 1, memory_order_relaxed);
  uint64_t now = srv_disc_mono_ms();
  if (d->logged_ms[r] && now - d->logged_ms[r] < SRV_DISC_LOG_EVERY) {
    d->suppressed[r]++;
    return;
  }
  d->logged_ms[r] = now;
  char q1[100], q2[300], q3[300];
  if (r == SRV_DISC_OWN_ID)
    srv_log(SRV_LOG_WARN, "discovery_own_id",
            "from=%s node_id=%s url=%s own_url=%s unlogged=%llu msg=\"another node announces this "
            "node's own id from another URL: two nodes share one --node-id\"",
            from, srv_log_q(m->node_id, q1, sizeof q1), srv_log_q(m->url, q2, sizeof q2),
            srv_log_q(d->url, q3, sizeof q3), (unsigned long long)d->suppressed[r]);
  else
    srv_log(SRV_LOG_WARN, "discovery_refused",
            "reason=%s from=%s node_id=%s url=%s unlogged=%llu "
            "why=%s",
            srv_disc_reason_name(r), from, srv_log_q(m ? m->node_id : "", q1, sizeof q1),
            srv_log_q(m ? m->url : "", q2, sizeof q2), (unsigned long long)d->suppressed[r],
            srv_log_q(why, q3, sizeof q3));
  d->suppressed[r] = 0;
}

/* Handles one datagram of len bytes (its real length: may exceed buf).
 * Returns true when it named a node new to this one (answer it). */
static bool srv_disc_hear(srv_discovery *d, const unsigned char *buf, size_t len,
                          const struct sockaddr_in *from) {
  atomic_fetch_add_explicit(&d->received, 1, memory_order_relaxed);
  char addr[INET_ADDRSTRLEN + 8], ip[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &from->sin_addr, ip, sizeof ip);
  snprintf(addr, sizeof addr, "%s:%u", ip, (unsigned)ntohs(from->sin_port));
  srv_disc_msg m;
  char why[200] = "";
  srv_disc_reason r = srv_disc_parse(buf, len, d->verify_key, &m, why, sizeof why);
  if (r != SRV_DISC_OK) {
    srv_disc_refuse(d, r, addr, NULL, why);
    return false;
  }
  bool from_loop = (ntohl(from->sin_addr.s_addr) >> 24) == 127;
  switch (srv_disc_judge(&m, d->self, d->url, from_loop, srv_disc_unix_ms(), d->window_ms, &r)) {
  case SRV_DISC_SELF:
    atomic_fetch_add_explicit(&d->own, 1, memory_order_relaxed);
    return false;
  case SRV_DISC_REFUSED:
    srv_disc_refuse(d, r, addr, &m,
                    r == SRV_DISC_LOOPBACK ? "a loopback URL from another host"
                    : r == SRV_DISC_STALE  ? "a signed announcement outside the replay window "
                                             "(max_clock_drift_ms): a replay, or a clock off"
                                           : "");
    return false;
  case SRV_DISC_PEER:
    break;
  }
  srv_sync_found f = srv_sync_discovered(d->sync, m.node_id, m.url);
  char q1[100], q2[300];
  switch (f) {
  case SRV_SYNC_FOUND_NEW:
  case SRV_SYNC_FOUND_MOVED:
  case SRV_SYNC_FOUND_MOVED_FULL:
    srv_log(SRV_LOG_INFO, f == SRV_SYNC_FOUND_NEW ? "discovery_peer_found" : "discovery_peer_moved",
            "node_id=%s url=%s from=%s signed=%s since_start_ms=%llu%s",
            srv_log_q(m.node_id, q1, sizeof q1), srv_log_q(m.url, q2, sizeof q2), addr,
            m.verified    ? "verified"
            : m.is_signed ? "unchecked"
                          : "no",
            (unsigned long long)(srv_disc_mono_ms() - d->start_ms),
            f == SRV_SYNC_FOUND_MOVED_FULL ? " error=\"the peer table is full\"" : "");
    return f != SRV_SYNC_FOUND_MOVED_FULL;
  case SRV_SYNC_FOUND_CONFLICT:
    srv_disc_refuse(d, SRV_DISC_CONFLICT, addr, &m,
                    "another node id already announced this URL (it is forgotten once silent)");
    return false;
  case SRV_SYNC_FOUND_FULL:
    srv_disc_refuse(d, SRV_DISC_FULL, addr, &m, "the peer table is full (32 peers)");
    return false;
  case SRV_SYNC_FOUND_ERROR:
    srv_log(SRV_LOG_WARN, "discovery_peer", "node_id=%s url=%s error=\"cannot start a puller\"",
            srv_log_q(m.node_id, q1, sizeof q1), srv_log_q(m.url, q2, sizeof q2));
    return false;
  case SRV_SYNC_FOUND_KNOWN:
  case SRV_SYNC_FOUND_CONFIGURED:
  case SRV_SYNC_FOUND_STOPPING:
    break;
  }
  return false;
}

/* Reads what is waiting (at most SRV_DISC_BURST).  Returns true when a new
 * node was heard. */
static bool srv_disc_read(srv_discovery *d) {
  bool fresh = false;
  for (int k = 0; k < SRV_DISC_BURST; k++) {
    unsigned char buf[SRV_DISC_MAX + 1];
    struct sockaddr_in from;
    socklen_t fl = sizeof from;
    memset(&from, 0, sizeof from);
    /* MSG_TRUNC: the datagram's real length, so an oversize one is known */
    ssize_t n =
        recvfrom(d->rfd, buf, sizeof buf, MSG_DONTWAIT | MSG_TRUNC, (struct sockaddr *)&from, &fl);
    if (n < 0) break; /* EAGAIN: nothing more */
    fresh |= srv_disc_hear(d, buf, (size_t)n, &from);
  }
  return fresh;
}

static void *srv_disc_main(void *arg) {
  srv_discovery *d = arg;
  unsigned seed = (unsigned)(srv_disc_unix_ms() ^ (uintptr_t)d);
  uint64_t now = srv_disc_mono_ms();
  uint64_t next_announce = now, last_sent = 0, next_expire = now;
  uint64_t timeout_ms = (uint64_t)d->timeout_s * 1000;
  uint64_t expire_step = timeout_ms / 4 < 1000 ? timeout_ms / 4 : 1000;
  bool reply = false;
  while (!atomic_load(&d->stop)) {
    now = srv_disc_mono_ms();
    if (now >= next_announce || (reply && now >= last_sent + SRV_DISC_REPLY_MS)) {
      srv_disc_announce(d);
      last_sent = now;
      reply = false;
      if (now >= next_announce) { /* interval +-10% */
        uint32_t j = d->interval_ms / 5;
        next_announce = now + d->interval_ms - j / 2 + (j ? (uint32_t)rand_r(&seed) % (j + 1) : 0);
      }
    }
    if (now >= next_expire) {
      srv_sync_expire(d->sync, timeout_ms);
      next_expire = now + expire_step;
    }
    uint64_t until = next_announce < next_expire ? next_announce : next_expire;
    if (reply && last_sent + SRV_DISC_REPLY_MS < until) until = last_sent + SRV_DISC_REPLY_MS;
    int wait = until > now ? (int)(until - now) : 0;
    struct pollfd pf[2] = {{.fd = d->rfd, .events = POLLIN}, {.fd = d->efd, .events = POLLIN}};
    int rc = poll(pf, 2, wait);
    if (rc < 0 && errno != EINTR) break;
    if (rc > 0 && (pf[1].revents & POLLIN)) break; /* srv_discovery_stop */
    if (rc > 0 && (pf[0].revents & POLLIN) && srv_disc_read(d)) reply = true;
  }
  return NULL;
}

/* ---- life cycle ------------------------------------------------------------------- */

static int srv_disc_fail(srv_discovery *d, char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int srv_disc_fail(srv_discovery *d, char *why, size_t whylen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (why && whylen) vsnprintf(why, whylen, fmt, ap);
  va_end(ap);
  srv_discovery_free(d);
  return -1;
}

int srv_discovery_start(const srv_discovery_config *cfg, srv_discovery **out, char *why,
                        size_t whylen) {
  *out = NULL;
  srv_discovery *d = calloc(1, sizeof *d);
  if (!d) return srv_disc_fail(NULL, why, whylen, "out of memory");
  d->rfd = d->sfd = d->efd = -1;
  d->sync = cfg->sync;
  snprintf(d->self, sizeof d->self, "%s", cfg->self_id);
  snprintf(d->listen_host, sizeof d->listen_host, "%s", cfg->listen_host);
  d->port = cfg->port;
  d->interval_ms = cfg->interval_ms ? cfg->interval_ms : 2000;
  d->timeout_s = cfg->timeout_s ? cfg->timeout_s : 15;
  d->window_ms = cfg->window_ms;
  atomic_init(&d->stop, false);
  atomic_init(&d->sent, 0);
  atomic_init(&d->send_errors, 0);
  atomic_init(&d->received, 0);
  atomic_init(&d->own, 0);
  for (int i = 0; i < SRV_DISC_NREASONS; i++)
    atomic_init(&d->refused[i], 0);
  if ((cfg->sign_key && cfg->sign_key[0] && !(d->sign_key = strdup(cfg->sign_key))) ||
      (cfg->verify_key && cfg->verify_key[0] && !(d->verify_key = strdup(cfg->verify_key))))
    return srv_disc_fail(d, why, whylen, "out of memory");
  char reason[600];
  if (srv_disc_advertise_url(cfg->listen_host, cfg->listen_port, cfg->advertise_url, d->url,
                             sizeof d->url, &d->url_source, reason, sizeof reason) != 0)
    return srv_disc_fail(d, why, whylen, "%s", reason);
  d->loopback_only = srv_disc_addr_loopback(cfg->listen_host);
  int one = 1;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(cfg->port)};
  a.sin_addr.s_addr = htonl(d->loopback_only ? 0x7fffffffu : INADDR_ANY); /* 127.255.255.255 */
  d->rfd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (d->rfd < 0 || setsockopt(d->rfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
      setsockopt(d->rfd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
      bind(d->rfd, (struct sockaddr *)&a, sizeof a) != 0)
    return srv_disc_fail(d, why, whylen, "cannot bind the discovery port UDP %s:%u: %s",
                         d->loopback_only ? "127.255.255.255" : "0.0.0.0", (unsigned)cfg->port,
                         strerror(errno));
  d->sfd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (d->sfd < 0 || setsockopt(d->sfd, SOL_SOCKET, SO_BROADCAST, &one, sizeof one) != 0)
    return srv_disc_fail(d, why, whylen, "cannot open the discovery socket: %s", strerror(errno));
  d->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (d->efd < 0) return srv_disc_fail(d, why, whylen, "eventfd: %s", strerror(errno));
  d->start_ms = srv_disc_mono_ms();
  if (pthread_create(&d->thread, NULL, srv_disc_main, d) != 0)
    return srv_disc_fail(d, why, whylen, "cannot start the discovery thread");
  pthread_setname_np(d->thread, "sa-discovery");
  d->started = true;
  *out = d;
  return 0;
}

const char *srv_discovery_url(const srv_discovery *d) {
  return d->url;
}

const char *srv_discovery_url_source(const srv_discovery *d) {
  return d->url_source;
}

void srv_discovery_stop(srv_discovery *d) {
  if (!d || !d->started) return;
  atomic_store(&d->stop, true);
  uint64_t one = 1;
  ssize_t w = write(d->efd, &one, sizeof one);
  (void)w; /* the stop flag is read at every wake-up anyway */
  pthread_join(d->thread, NULL);
  d->started = false;
}

void srv_discovery_free(srv_discovery *d) {
  if (!d) return;
  if (d->rfd >= 0) close(d->rfd);
  if (d->sfd >= 0) close(d->sfd);
  if (d->efd >= 0) close(d->efd);
  free(d->sign_key);
  free(d->verify_key);
  free(d);
}

/* ---- what it shows ------------------------------------------------------------------ */

static uint64_t srv_disc_refused_total(srv_discovery *d) {
  uint64_t t = 0;
  for (int i = 1; i < SRV_DISC_NREASONS; i++)
    t += atomic_load_explicit(&d->refused[i], memory_order_relaxed);
  return t;
}

bool srv_discovery_info(void *cls, api_sync_discovery *out) {
  srv_discovery *d = cls;
  if (!d) return false;
  memset(out, 0, sizeof *out);
  out->port = d->port;
  snprintf(out->url, sizeof out->url, "%s", d->url);
  out->is_signed = d->sign_key != NULL;
  out->interval_ms = d->interval_ms;
  out->timeout_s = d->timeout_s;
  size_t now = 0;
  srv_sync_discovery_counts(d->sync, &out->found, &out->forgotten, &now);
  out->peers = now;
  out->sent = atomic_load_explicit(&d->sent, memory_order_relaxed);
  out->received = atomic_load_explicit(&d->received, memory_order_relaxed);
  out->refused = srv_disc_refused_total(d);
  return true;
}

void srv_discovery_write_metrics(srv_discovery *d, FILE *f) {
  if (!d) return;
  api_sync_discovery i;
  srv_discovery_info(d, &i);
  fprintf(f,
          "# HELP softadastra_discovery_datagrams_sent_total Discovery announcements sent (one per "
          "destination address).\n"
          "# TYPE softadastra_discovery_datagrams_sent_total counter\n"
          "softadastra_discovery_datagrams_sent_total %llu\n"
          "# HELP softadastra_discovery_send_errors_total Announcements the kernel refused to "
          "send.\n"
          "# TYPE softadastra_discovery_send_errors_total counter\n"
          "softadastra_discovery_send_errors_total %llu\n"
          "# HELP softadastra_discovery_datagrams_received_total Datagrams received on the "
          "discovery port (this node's own included).\n"
          "# TYPE softadastra_discovery_datagrams_received_total counter\n"
          "softadastra_discovery_datagrams_received_total %llu\n"
          "# HELP softadastra_discovery_datagrams_refused_total Datagrams refused, by reason.\n"
          "# TYPE softadastra_discovery_datagrams_refused_total counter\n",
          (unsigned long long)i.sent,
          (unsigned long long)atomic_load_explicit(&d->send_errors, memory_order_relaxed),
          (unsigned long long)i.received);
  for (int r = 1; r < SRV_DISC_NREASONS; r++)
    fprintf(f, "softadastra_discovery_datagrams_refused_total{reason=\"%s\"} %llu\n",
            srv_disc_reason_name((srv_disc_reason)r),
            (unsigned long long)atomic_load_explicit(&d->refused[r], memory_order_relaxed));
  fprintf(f,
          "# HELP softadastra_discovery_peers Discovered peers now.\n"
          "# TYPE softadastra_discovery_peers gauge\n"
          "softadastra_discovery_peers %llu\n"
          "# HELP softadastra_discovery_peers_found_total Discovered peers added.\n"
          "# TYPE softadastra_discovery_peers_found_total counter\n"
          "softadastra_discovery_peers_found_total %llu\n"
          "# HELP softadastra_discovery_peers_forgotten_total Discovered peers forgotten after "
          "discovery_timeout_s of silence.\n"
          "# TYPE softadastra_discovery_peers_forgotten_total counter\n"
          "softadastra_discovery_peers_forgotten_total %llu\n",
          (unsigned long long)i.peers, (unsigned long long)i.found,
          (unsigned long long)i.forgotten);
}
