/*
 * cfg.c -- configuration of `softadastra serve` (see cfg.h).
 *
 * cfg_settings[] is the single description of every setting.  A value
 * arrives either typed (the JSON file: strings, booleans, integers, arrays of
 * strings) or as text (environment, flags); both paths end in the same range
 * checks, and every message names the setting and its origin.
 */
#define _GNU_SOURCE /* strdup, strndup */
#include "cfg.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "softadastra.h"
#include "srv_disc_msg.h"

typedef enum cfg_type { CFG_STR, CFG_BOOL, CFG_U32, CFG_U64, CFG_LIST } cfg_type;

typedef struct cfg_setting {
  const char *name;  /* file key; flag and environment names derive from it */
  cfg_type type;     /* how the value is stored */
  size_t off;        /* offset in cfg_config */
  uint64_t min, max; /* range for integers; min 1 means non-empty for strings */
  const char *def;   /* default, in text form */
  const char *alias; /* extra flag name, or NULL */
  const char *help;  /* one line */
} cfg_setting;

#define CFG_OFF(f) offsetof(cfg_config, f)

static const cfg_setting cfg_settings[] = {
    {"listen", CFG_STR, CFG_OFF(listen), 1, 0, "127.0.0.1:8080", NULL,
     "address and port to listen on: ADDR:PORT, or :PORT for 127.0.0.1 (port 0: any free port)"},
    {"data_dir", CFG_STR, CFG_OFF(data_dir), 1, 0, "data", NULL,
     "directory of the WAL and the store"},
    {"node_id", CFG_STR, CFG_OFF(node_id), 1, 0, "node-1", NULL,
     "node id: 1-64 of A-Z a-z 0-9 . _ -"},
    {"wal_path", CFG_STR, CFG_OFF(wal_path), 0, 0, "", "wal",
     "WAL file (empty: <data_dir>/<node_id>.wal)"},
    {"store_path", CFG_STR, CFG_OFF(store_path), 0, 0, "", "store",
     "LMDB store file (empty: the WAL path with .mdb)"},
    {"auto_flush", CFG_BOOL, CFG_OFF(auto_flush), 0, 0, "true", NULL,
     "acknowledge writes after fdatasync (false: after write(2), durable:false)"},
    {"flush_interval_ms", CFG_U32, CFG_OFF(flush_interval_ms), 1, 3600000, "1000", NULL,
     "background flush period when auto_flush is false"},
    {"store_sync_interval_ms", CFG_U32, CFG_OFF(store_sync_interval_ms), 10, 60000, "200", NULL,
     "period of the store's sync points: shorter smooths write latency, longer costs less I/O"},
    {"store_writeback_ms", CFG_U32, CFG_OFF(store_writeback_ms), 0, 1000, "2", NULL,
     "while writes come in, start the store's write-back this often (0: only at sync points); "
     "evens out write latency for some throughput"},
    {"store_commit_ms", CFG_U32, CFG_OFF(store_commit_ms), 1, 1000, "10", NULL,
     "writes answered at their WAL sync are applied to the store together within this long: "
     "longer gives more write throughput and a longer latency tail"},
    {"store_commit_busy_ms", CFG_U32, CFG_OFF(store_commit_busy_ms), 0, 1000, "30", NULL,
     "the same span while 128 or more operations wait for their store commit (under load), so "
     "that a busy node writes each hot B-tree page once for more writes; 0: never longer than "
     "store_commit_ms"},
    {"store_commit_sync_ms", CFG_U32, CFG_OFF(store_commit_sync_ms), 0, 1000, "100", NULL,
     "the busy span while only peers' batches wait, after 3 busy commits in a row (a sustained "
     "stream from peers: nobody waits on those commits; this node's feed shows them that much "
     "later); 0: never longer than store_commit_busy_ms"},
    {"enable_transport", CFG_BOOL, CFG_OFF(enable_transport), 0, 0, "false", NULL,
     "enable the sync transport"},
    {"enable_discovery", CFG_BOOL, CFG_OFF(enable_discovery), 0, 0, "false", NULL,
     "enable peer discovery"},
    {"tick_interval_ms", CFG_U32, CFG_OFF(tick_interval_ms), 1, 3600000, "1000", NULL,
     "outbox tick period"},
    {"transport_kind", CFG_STR, CFG_OFF(transport_kind), 1, 0, "stub", NULL,
     "sync transport used when enable_transport is true: http (pull the peers), nats (through "
     "a NATS JetStream hub), http+nats, stub or "
     "disabled; --transport KIND sets both"},
    {"peers", CFG_LIST, CFG_OFF(peers), 0, 0, "", "peer",
     "comma-separated peer URLs (http://host:port) the http transport pulls; --peer URL may "
     "be repeated"},
    {"peer_token", CFG_STR, CFG_OFF(peer_token), 0, 0, "", NULL,
     "bearer token sent to the peers (their auth_token; empty: none)"},
    {"sync_pull_linger_ms", CFG_U32, CFG_OFF(sync_pull_linger_ms), 0, 1000, "10", NULL,
     "http transport: after a pull that brought a partial page, wait this long before the next, "
     "so that pages gather more changes under load (one durable apply each); 0: pull again at "
     "once. Adds at most this much to the lag of a busy peer, nothing to a quiet one"},
    {"max_clock_drift_ms", CFG_U32, CFG_OFF(max_clock_drift_ms), 1, 86400000, "60000", NULL,
     "a peer batch holding a change this far ahead of the local clock is refused"},
    {"tombstone_ttl_s", CFG_U32, CFG_OFF(tombstone_ttl_s), 1, 315360000, "604800", NULL,
     "a delete's tombstone is dropped at the latest this long after it was written"},
    {"discovery_kind", CFG_STR, CFG_OFF(discovery_kind), 1, 0, "stub", NULL,
     "peer discovery used when enable_discovery is true: udp (announce this node and pull the "
     "nodes heard on discovery_port over the http transport), stub or disabled; --discovery "
     "KIND sets both"},
    {"discovery_port", CFG_U32, CFG_OFF(discovery_port), 1, 65535, "7979", NULL,
     "UDP port where discovery udp announces and listens (every node of a fleet uses the same)"},
    {"discovery_interval_ms", CFG_U32, CFG_OFF(discovery_interval_ms), 50, 600000, "2000", NULL,
     "time between two announcements of discovery udp"},
    {"discovery_timeout_s", CFG_U32, CFG_OFF(discovery_timeout_s), 1, 86400, "15", NULL,
     "a discovered peer not heard for this long is forgotten (its puller stops)"},
    {"discovery_url", CFG_STR, CFG_OFF(discovery_url), 0, 0, "", "advertise-url",
     "the URL discovery udp tells peers to pull (empty: from the listen address; needed when "
     "listening on 0.0.0.0 finds no single interface address)"},
    {"sync_batch_size", CFG_U32, CFG_OFF(sync_batch_size), 1, 10000, "64", NULL,
     "operations handed to the transport per tick"},
    {"max_retries", CFG_U32, CFG_OFF(max_retries), 1, 1000000, "10", NULL,
     "attempts before an operation is marked failed"},
    {"retry_base_ms", CFG_U32, CFG_OFF(retry_base_ms), 1, 86400000, "1000", NULL,
     "first retry delay; doubles per attempt, with jitter"},
    {"retry_max_ms", CFG_U32, CFG_OFF(retry_max_ms), 1, 86400000, "60000", NULL,
     "cap of the retry delay"},
    {"ack_timeout_ms", CFG_U32, CFG_OFF(ack_timeout_ms), 1, 86400000, "10000", NULL,
     "an in-flight operation without an answer expires after this"},
    {"outbox_max", CFG_U64, CFG_OFF(outbox_max), 1, 1ull << 40, "100000", NULL,
     "outbox entries before sync status reports overflow"},
    {"outbox_retention_ms", CFG_U64, CFG_OFF(outbox_retention_ms), 1, 1ull << 40, "3600000", NULL,
     "acknowledged outbox entries are pruned after this"},
    {"max_value_bytes", CFG_U32, CFG_OFF(max_value_bytes), 1, 1u << 30, "1048576", NULL,
     "largest value accepted"},
    {"max_batch_bytes", CFG_U32, CFG_OFF(max_batch_bytes), 1, 1u << 30, "16777216", NULL,
     "largest batch payload (keys + values)"},
    {"wal_max_bytes", CFG_U64, CFG_OFF(wal_max_bytes), 1u << 16, 1ull << 50, "67108864", NULL,
     "WAL size bound kept by checkpoints"},
    {"store_max_bytes", CFG_U64, CFG_OFF(store_max_bytes), 1u << 20, 1ull << 50, "8589934592", NULL,
     "store size limit (LMDB map size)"},
    {"create_data_dir", CFG_BOOL, CFG_OFF(create_data_dir), 0, 0, "true", NULL,
     "create data_dir at start when it is missing"},
    {"new_node", CFG_BOOL, CFG_OFF(new_node), 0, 0, "false", NULL,
     "start node_id as a new node even though its WAL is absent from a data_dir that holds "
     "another node's WAL (without it such a start is refused, naming the other node)"},
    {"threads", CFG_U32, CFG_OFF(threads), 0, 256, "0", NULL,
     "HTTP threads: front loops and libmicrohttpd workers, this many of each; 0: one per "
     "online CPU (a write waiting for its fdatasync does not hold one)"},
    {"max_connections", CFG_U32, CFG_OFF(max_connections), 1, 65536, "512", NULL,
     "concurrent HTTP connections"},
    {"connection_timeout_s", CFG_U32, CFG_OFF(connection_timeout_s), 1, 3600, "30", NULL,
     "close a connection idle or stalled this long"},
    {"max_header_bytes", CFG_U32, CFG_OFF(max_header_bytes), 4096, 1u << 20, "16384", NULL,
     "memory per connection for the request line and headers (larger: 431)"},
    {"max_streams", CFG_U32, CFG_OFF(max_streams), 1, 100000, "32", NULL,
     "concurrent change-feed streams (GET /v1/changes as SSE); over it: 503"},
    {"sse_heartbeat_s", CFG_U32, CFG_OFF(sse_heartbeat_s), 1, 3600, "15", NULL,
     "seconds between heartbeat comments on a change-feed stream"},
    {"shutdown_timeout_s", CFG_U32, CFG_OFF(shutdown_timeout_s), 0, 3600, "10", NULL,
     "at SIGINT/SIGTERM, wait this long for in-flight requests before stopping"},
    {"auth_token", CFG_STR, CFG_OFF(auth_token), 0, 0, "", NULL,
     "bearer token required on every route but the probes, as auth_probes and auth_metrics "
     "say, and the dashboard's files (empty: off)"},
    {"auth_probes", CFG_BOOL, CFG_OFF(auth_probes), 0, 0, "false", NULL,
     "with auth_token: /healthz and /readyz need the token too (default: open, so probes "
     "carry no secret)"},
    {"auth_metrics", CFG_BOOL, CFG_OFF(auth_metrics), 0, 0, "true", NULL,
     "with auth_token: /metrics needs the token (false: open to a scraper without it)"},
    {"cors_origins", CFG_LIST, CFG_OFF(cors_origins), 0, 0, "", NULL,
     "comma-separated browser origins allowed by CORS, * for any (empty: off)"},
    {"log_level", CFG_STR, CFG_OFF(log_level), 1, 0, "info", NULL, "debug, info, warn or error"},
    {"nats_urls", CFG_STR, CFG_OFF(nats_urls), 0, 0, "", "nats-url",
     "comma-separated NATS URLs (nats://host:4222) of the hub the nats transport uses"},
    {"nats_stream", CFG_STR, CFG_OFF(nats_stream), 1, 0, "SOFTADASTRA", NULL,
     "JetStream stream of the nats transport (made when missing)"},
    {"nats_subject_prefix", CFG_STR, CFG_OFF(nats_subject_prefix), 1, 0, "sa.ops", NULL,
     "subject prefix of the ops in the stream"},
    {"nats_replicas", CFG_U32, CFG_OFF(nats_replicas), 0, 5, "0", NULL,
     "replicas of a stream the node makes (0: 3 when the hub has >= 3 servers, else 1)"},
    {"nats_creds", CFG_STR, CFG_OFF(nats_creds), 0, 0, "", NULL,
     "NATS credentials file (empty: none)"},
    {"nats_token", CFG_STR, CFG_OFF(nats_token), 0, 0, "", NULL, "NATS token (empty: none)"},
    {"nats_filter_prefix", CFG_STR, CFG_OFF(nats_filter_prefix), 0, 0, "", NULL,
     "consume only keys starting with this from the hub (empty: all)"},
};
#define CFG_NSETTINGS (sizeof cfg_settings / sizeof cfg_settings[0])

static void cfg_errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void cfg_errf(char *err, size_t errlen, const char *fmt, ...) {
  if (!err || errlen == 0) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

static const cfg_setting *cfg_find(const char *name) {
  for (size_t i = 0; i < CFG_NSETTINGS; i++)
    if (strcmp(cfg_settings[i].name, name) == 0) return &cfg_settings[i];
  return NULL;
}

/* The array and the count of a list setting (cors_origins, peers). */
static void cfg_list_slot(cfg_config *c, const cfg_setting *s, char ****arr, size_t **n) {
  *arr = (char ***)((char *)c + s->off);
  *n = s->off == CFG_OFF(peers) ? &c->n_peers : &c->n_cors_origins;
}

static void cfg_list_free(cfg_config *c, const cfg_setting *s) {
  char ***arr;
  size_t *n;
  cfg_list_slot(c, s, &arr, &n);
  for (size_t i = 0; i < *n; i++)
    free((*arr)[i]);
  free(*arr);
  *arr = NULL;
  *n = 0;
}

/* Replaces the list from comma-separated text (empty items skipped), or
 * with append adds the items to it. */
static int cfg_list_set_text(cfg_config *c, const cfg_setting *s, const char *text, bool append) {
  if (!append) cfg_list_free(c, s);
  char ***arr;
  size_t *cnt;
  cfg_list_slot(c, s, &arr, &cnt);
  size_t cap = *cnt + 1;
  for (const char *p = text; *p; p++)
    cap += *p == ',';
  char **na = realloc(*arr, cap * sizeof *na);
  if (!na) return CFG_ENOMEM;
  *arr = na;
  const char *p = text;
  while (*p) {
    while (*p == ' ')
      p++;
    size_t n = strcspn(p, ",");
    size_t m = n;
    while (m > 0 && p[m - 1] == ' ')
      m--;
    if (m > 0) {
      char *d = strndup(p, m);
      if (!d) return CFG_ENOMEM;
      (*arr)[(*cnt)++] = d;
    }
    p += n;
    if (*p == ',') p++;
  }
  return CFG_OK;
}

/* Checks the text of a string setting that has a shape (listen, node_id,
 * log_level, auth_token).  Returns NULL when v is fine, else what is wrong
 * with it (after the quoted value) in why. */
static const char *cfg_str_problem(const char *name, const char *v, char *why, size_t len) {
  if (!strcmp(name, "listen")) {
    char host[64];
    uint16_t port;
    if (cfg_parse_listen(v, host, sizeof host, &port) == 0) return NULL;
    snprintf(why, len,
             "is not ADDR:PORT (an IPv4 address, localhost or [IPv6], and a port 0-65535; "
             ":PORT alone means 127.0.0.1:PORT)");
    return why;
  }
  if (!strcmp(name, "node_id")) {
    size_t n = strlen(v);
    bool ok = n >= 1 && n <= SA_NODE_ID_MAX;
    for (const char *p = v; ok && *p; p++)
      ok = isalnum((unsigned char)*p) || *p == '.' || *p == '_' || *p == '-';
    if (ok) return NULL;
    snprintf(why, len, "must be 1-%d characters of A-Z a-z 0-9 . _ -", SA_NODE_ID_MAX);
    return why;
  }
  if (!strcmp(name, "discovery_kind")) {
    if (!strcmp(v, "udp") || !strcmp(v, "stub") || !strcmp(v, "disabled")) return NULL;
    snprintf(why, len, "must be udp, stub or disabled");
    return why;
  }
  if (!strcmp(name, "discovery_url") && v[0]) {
    char r[120];
    if (srv_disc_url_check(v, r, sizeof r)) return NULL;
    snprintf(why, len, "is not a URL peers can use: %s", r);
    return why;
  }
  if (!strcmp(name, "log_level")) {
    if (!strcmp(v, "debug") || !strcmp(v, "info") || !strcmp(v, "warn") || !strcmp(v, "error"))
      return NULL;
    snprintf(why, len, "must be debug, info, warn or error");
    return why;
  }
  if (!strcmp(name, "auth_token") || !strcmp(name, "peer_token") || !strcmp(name, "nats_token")) {
    for (const char *p = v; *p; p++) {
      if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) {
        snprintf(why, len, "must be printable ASCII without spaces");
        return why;
      }
    }
  }
  return NULL;
}

static int cfg_str_set(cfg_config *c, const cfg_setting *s, const char *v, const char *origin,
                       char *err, size_t errlen) {
  if (s->min > 0 && v[0] == '\0') {
    cfg_errf(err, errlen, "invalid setting \"%s\" (%s): must not be empty", s->name, origin);
    return CFG_EVALUE;
  }
  char why[160];
  if (cfg_str_problem(s->name, v, why, sizeof why)) {
    if (!strcmp(s->name, "auth_token") || !strcmp(s->name, "peer_token") ||
        !strcmp(s->name, "nats_token")) /* secrets */
      cfg_errf(err, errlen, "invalid setting \"%s\" (%s): %s", s->name, origin, why);
    else
      cfg_errf(err, errlen, "invalid setting \"%s\" (%s): \"%s\" %s", s->name, origin, v, why);
    return CFG_EVALUE;
  }
  char *dup = strdup(v);
  if (!dup) return CFG_ENOMEM;
  char **slot = (char **)((char *)c + s->off);
  free(*slot);
  *slot = dup;
  return CFG_OK;
}

static int cfg_int_set(cfg_config *c, const cfg_setting *s, uint64_t v, const char *shown,
                       const char *origin, char *err, size_t errlen) {
  if (v < s->min || v > s->max) {
    cfg_errf(err, errlen,
             "invalid setting \"%s\" (%s): must be an integer from %llu to %llu, "
             "got %s",
             s->name, origin, (unsigned long long)s->min, (unsigned long long)s->max, shown);
    return CFG_EVALUE;
  }
  if (s->type == CFG_U32)
    *(uint32_t *)((char *)c + s->off) = (uint32_t)v;
  else
    *(uint64_t *)((char *)c + s->off) = v;
  return CFG_OK;
}

/* Sets s from text. */
static int cfg_set_text(cfg_config *c, const cfg_setting *s, const char *v, const char *origin,
                        char *err, size_t errlen) {
  switch (s->type) {
  case CFG_STR:
    return cfg_str_set(c, s, v, origin, err, errlen);
  case CFG_LIST:
    return cfg_list_set_text(c, s, v, false);
  case CFG_BOOL: {
    bool *b = (bool *)((char *)c + s->off);
    if (!strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "yes") || !strcmp(v, "on"))
      *b = true;
    else if (!strcmp(v, "false") || !strcmp(v, "0") || !strcmp(v, "no") || !strcmp(v, "off"))
      *b = false;
    else {
      cfg_errf(err, errlen, "invalid setting \"%s\" (%s): must be true or false, got \"%s\"",
               s->name, origin, v);
      return CFG_EVALUE;
    }
    return CFG_OK;
  }
  case CFG_U32:
  case CFG_U64: {
    uint64_t n = 0;
    bool ok = *v != '\0';
    for (const char *p = v; ok && *p; p++) {
      if (!isdigit((unsigned char)*p) || n > (UINT64_MAX - 9) / 10)
        ok = false;
      else
        n = n * 10 + (uint64_t)(*p - '0');
    }
    if (!ok) {
      cfg_errf(err, errlen,
               "invalid setting \"%s\" (%s): must be an integer from %llu to %llu, "
               "got \"%s\"",
               s->name, origin, (unsigned long long)s->min, (unsigned long long)s->max, v);
      return CFG_EVALUE;
    }
    char shown[32];
    snprintf(shown, sizeof shown, "%llu", (unsigned long long)n);
    return cfg_int_set(c, s, n, shown, origin, err, errlen);
  }
  }
  return CFG_EVALUE;
}

int cfg_init(cfg_config *c) {
  memset(c, 0, sizeof *c);
  for (size_t i = 0; i < CFG_NSETTINGS; i++) {
    int rc = cfg_set_text(c, &cfg_settings[i], cfg_settings[i].def, "default", NULL, 0);
    if (rc != CFG_OK) return rc;
  }
  return CFG_OK;
}

void cfg_free(cfg_config *c) {
  for (size_t i = 0; i < CFG_NSETTINGS; i++) {
    if (cfg_settings[i].type == CFG_STR) {
      char **slot = (char **)((char *)c + cfg_settings[i].off);
      free(*slot);
    }
  }
  for (size_t i = 0; i < CFG_NSETTINGS; i++)
    if (cfg_settings[i].type == CFG_LIST) cfg_list_free(c, &cfg_settings[i]);
  free(c->config_path);
  memset(c, 0, sizeof *c);
}

int cfg_set(cfg_config *c, const char *name, const char *value, const char *origin, char *err,
            size_t errlen) {
  const cfg_setting *s = cfg_find(name);
  if (!s) {
    cfg_errf(err, errlen, "unknown setting \"%s\" (%s)", name, origin);
    return CFG_EVALUE;
  }
  return cfg_set_text(c, s, value, origin, err, errlen);
}

static int cfg_set_json(cfg_config *c, const cfg_setting *s, json_t *v, const char *origin,
                        char *err, size_t errlen) {
  switch (s->type) {
  case CFG_STR:
    if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v)) {
      cfg_errf(err, errlen, "invalid setting \"%s\" (%s): must be a string", s->name, origin);
      return CFG_EVALUE;
    }
    return cfg_str_set(c, s, json_string_value(v), origin, err, errlen);
  case CFG_BOOL:
    if (!json_is_boolean(v)) {
      cfg_errf(err, errlen, "invalid setting \"%s\" (%s): must be true or false", s->name, origin);
      return CFG_EVALUE;
    }
    *(bool *)((char *)c + s->off) = json_is_true(v);
    return CFG_OK;
  case CFG_U32:
  case CFG_U64: {
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
      cfg_errf(err, errlen, "invalid setting \"%s\" (%s): must be an integer from %llu to %llu",
               s->name, origin, (unsigned long long)s->min, (unsigned long long)s->max);
      return CFG_EVALUE;
    }
    char shown[32];
    snprintf(shown, sizeof shown, "%lld", (long long)json_integer_value(v));
    return cfg_int_set(c, s, (uint64_t)json_integer_value(v), shown, origin, err, errlen);
  }
  case CFG_LIST: {
    if (!json_is_array(v)) {
      cfg_errf(err, errlen, "invalid setting \"%s\" (%s): must be an array of strings", s->name,
               origin);
      return CFG_EVALUE;
    }
    cfg_list_free(c, s);
    size_t n = json_array_size(v);
    char ***arr;
    size_t *cnt;
    cfg_list_slot(c, s, &arr, &cnt);
    *arr = calloc(n ? n : 1, sizeof **arr);
    if (!*arr) return CFG_ENOMEM;
    for (size_t i = 0; i < n; i++) {
      json_t *it = json_array_get(v, i);
      if (!json_is_string(it) || json_string_length(it) == 0 ||
          strlen(json_string_value(it)) != json_string_length(it)) {
        cfg_errf(err, errlen, "invalid setting \"%s\" (%s): item %zu must be a non-empty string",
                 s->name, origin, i);
        return CFG_EVALUE;
      }
      char *d = strdup(json_string_value(it));
      if (!d) return CFG_ENOMEM;
      (*arr)[(*cnt)++] = d;
    }
    return CFG_OK;
  }
  }
  return CFG_EVALUE;
}

int cfg_apply_json(cfg_config *c, const char *text, size_t len, const char *origin, char *err,
                   size_t errlen) {
  json_error_t jerr;
  json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
  if (!root) {
    cfg_errf(err, errlen, "%s: not valid JSON (line %d, column %d): %s", origin, jerr.line,
             jerr.column, jerr.text);
    return CFG_EFILE;
  }
  int rc = CFG_OK;
  if (!json_is_object(root)) {
    cfg_errf(err, errlen, "%s: the configuration must be a JSON object", origin);
    rc = CFG_EFILE;
  } else {
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v) {
      const cfg_setting *s = cfg_find(k);
      if (!s) {
        cfg_errf(err, errlen, "unknown setting \"%s\" in %s", k, origin);
        rc = CFG_EVALUE;
        break;
      }
      rc = cfg_set_json(c, s, v, origin, err, errlen);
      if (rc != CFG_OK) break;
    }
  }
  json_decref(root);
  return rc;
}

int cfg_load_file(cfg_config *c, const char *path, char *err, size_t errlen) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    cfg_errf(err, errlen, "cannot read config file %s: %s", path, strerror(errno));
    return CFG_EFILE;
  }
  char *buf = NULL;
  size_t len = 0, cap = 0;
  for (;;) {
    if (len == cap) {
      cap = cap ? cap * 2 : 4096;
      if (cap > (16u << 20)) {
        fclose(f);
        free(buf);
        cfg_errf(err, errlen, "config file %s is larger than 16 MiB", path);
        return CFG_EFILE;
      }
      char *nb = realloc(buf, cap);
      if (!nb) {
        fclose(f);
        free(buf);
        return CFG_ENOMEM;
      }
      buf = nb;
    }
    size_t n = fread(buf + len, 1, cap - len, f);
    len += n;
    if (n == 0) break;
  }
  int rd_err = ferror(f);
  fclose(f);
  if (rd_err) {
    free(buf);
    cfg_errf(err, errlen, "cannot read config file %s", path);
    return CFG_EFILE;
  }
  int rc = cfg_apply_json(c, buf ? buf : "", len, path, err, errlen);
  free(buf);
  if (rc == CFG_OK) {
    free(c->config_path);
    c->config_path = strdup(path);
    if (!c->config_path) return CFG_ENOMEM;
  }
  return rc;
}

/* "data_dir" -> "SOFTADASTRA_DATA_DIR" */
static void cfg_env_name(const cfg_setting *s, char *out, size_t outlen) {
  size_t o = (size_t)snprintf(out, outlen, "SOFTADASTRA_");
  for (const char *p = s->name; *p && o + 1 < outlen; p++)
    out[o++] = (char)toupper(*p);
  out[o] = '\0';
}

/* "data_dir" -> "data-dir" */
static void cfg_flag_name(const char *name, char *out, size_t outlen) {
  size_t o = 0;
  for (const char *p = name; *p && o + 1 < outlen; p++)
    out[o++] = *p == '_' ? '-' : *p;
  out[o] = '\0';
}

int cfg_apply_env(cfg_config *c, char *const *envp, char *err, size_t errlen) {
  if (!envp) return CFG_OK;
  for (size_t i = 0; i < CFG_NSETTINGS; i++) {
    char name[64];
    cfg_env_name(&cfg_settings[i], name, sizeof name);
    size_t nl = strlen(name);
    for (char *const *e = envp; *e; e++) {
      if (strncmp(*e, name, nl) == 0 && (*e)[nl] == '=') {
        const char *v = *e + nl + 1;
        if (*v == '\0') continue;
        char origin[96];
        snprintf(origin, sizeof origin, "environment %s", name);
        int rc = cfg_set_text(c, &cfg_settings[i], v, origin, err, errlen);
        if (rc != CFG_OK) return rc;
      }
    }
  }
  return CFG_OK;
}

/* SOFTADASTRA_* variables that are not settings but are read elsewhere
 * (the client commands, the fault-injection build, the container files). */
static const char *const cfg_env_others[] = {
    "SOFTADASTRA_CONFIG",      "SOFTADASTRA_URL",        "SOFTADASTRA_TOKEN", "SOFTADASTRA_FAULTS",
    "SOFTADASTRA_FAULTS_FILE", "SOFTADASTRA_HEALTH_URL", "SOFTADASTRA_PORT",
};

/* Optimal string alignment distance (edits, with adjacent swaps as one),
 * ignoring case; names are short (< 64). */
static size_t cfg_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 63 || lb > 63) return (size_t)-1;
  size_t d[64][64];
  for (size_t i = 0; i <= la; i++)
    d[i][0] = i;
  for (size_t j = 0; j <= lb; j++)
    d[0][j] = j;
  for (size_t i = 1; i <= la; i++) {
    for (size_t j = 1; j <= lb; j++) {
      size_t cost = toupper((unsigned char)a[i - 1]) != toupper((unsigned char)b[j - 1]);
      size_t v = d[i - 1][j] + 1;
      if (d[i][j - 1] + 1 < v) v = d[i][j - 1] + 1;
      if (d[i - 1][j - 1] + cost < v) v = d[i - 1][j - 1] + cost;
      if (i > 1 && j > 1 && toupper((unsigned char)a[i - 1]) == toupper((unsigned char)b[j - 2]) &&
          toupper((unsigned char)a[i - 2]) == toupper((unsigned char)b[j - 1]) &&
          d[i - 2][j - 2] + 1 < v)
        v = d[i - 2][j - 2] + 1;
      d[i][j] = v;
    }
  }
  return d[la][lb];
}

int cfg_env_check(char *const *envp, char *out, size_t outlen) {
  if (out && outlen) out[0] = '\0';
  if (!envp) return 0;
  int n = 0;
  size_t used = 0;
  for (char *const *e = envp; *e; e++) {
    const char *eq = strchr(*e, '=');
    size_t nl = eq ? (size_t)(eq - *e) : strlen(*e);
    if (nl <= 12 || strncmp(*e, "SOFTADASTRA_", 12) != 0 || nl >= 64) continue;
    char name[64];
    memcpy(name, *e, nl);
    name[nl] = '\0';
    const char *best = NULL;
    size_t best_d = (size_t)-1;
    char cand[64], best_buf[64] = "";
    bool known = false;
    for (size_t i = 0; i < CFG_NSETTINGS + sizeof cfg_env_others / sizeof *cfg_env_others; i++) {
      if (i < CFG_NSETTINGS)
        cfg_env_name(&cfg_settings[i], cand, sizeof cand);
      else
        snprintf(cand, sizeof cand, "%s", cfg_env_others[i - CFG_NSETTINGS]);
      if (!strcmp(cand, name)) {
        known = true;
        break;
      }
      size_t d = cfg_distance(name + 12, cand + 12);
      if (d < best_d) {
        best_d = d;
        snprintf(best_buf, sizeof best_buf, "%s", cand);
        best = best_buf;
      }
    }
    if (known) continue;
    size_t suffix = nl - 12;
    char line[256];
    if (best && best_d <= 2 && best_d * 3 <= suffix)
      snprintf(line, sizeof line, "unknown variable %s is ignored; did you mean %s?", name, best);
    else
      snprintf(line, sizeof line,
               "unknown variable %s is ignored (softadastra serve --help lists the settings)",
               name);
    n++;
    if (out && outlen > used) {
      int w = snprintf(out + used, outlen - used, "%s\n", line);
      if (w > 0) used += (size_t)w < outlen - used ? (size_t)w : outlen - used - 1;
    }
  }
  return n;
}

int cfg_parse_listen(const char *s, char *host, size_t hostlen, uint16_t *port) {
  const char *colon;
  char h[64];
  if (s[0] == '[') {
    const char *rb = strchr(s, ']');
    if (!rb || rb[1] != ':') return -1;
    size_t n = (size_t)(rb - s - 1);
    if (n == 0 || n >= sizeof h) return -1;
    memcpy(h, s + 1, n);
    h[n] = '\0';
    colon = rb + 1;
    struct in6_addr a6;
    if (inet_pton(AF_INET6, h, &a6) != 1) return -1;
  } else {
    colon = strrchr(s, ':');
    if (!colon) return -1;
    size_t n = (size_t)(colon - s);
    if (n >= sizeof h) return -1;
    memcpy(h, s, n);
    h[n] = '\0';
    if (n == 0 || strcmp(h, "localhost") == 0) strcpy(h, "127.0.0.1"); /* ":8091" is local */
    struct in_addr a4;
    if (inet_pton(AF_INET, h, &a4) != 1) return -1;
  }
  const char *p = colon + 1;
  if (!*p || strlen(p) > 5) return -1;
  unsigned long v = 0;
  for (; *p; p++) {
    if (!isdigit((unsigned char)*p)) return -1;
    v = v * 10 + (unsigned long)(*p - '0');
  }
  if (v > 65535) return -1;
  if (strlen(h) >= hostlen) return -1;
  strcpy(host, h);
  *port = (uint16_t)v;
  return 0;
}

int cfg_validate(const cfg_config *c, char *err, size_t errlen) {
  /* The values were checked as they were set (naming their origin); this
   * catches a cfg_config filled in by other means. */
  const char *names[] = {"listen", "node_id", "log_level", "auth_token"};
  const char *vals[] = {c->listen, c->node_id, c->log_level, c->auth_token};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    char why[160];
    if (cfg_str_problem(names[i], vals[i] ? vals[i] : "", why, sizeof why)) {
      if (i == 3)
        cfg_errf(err, errlen, "invalid setting \"%s\": %s", names[i], why);
      else
        cfg_errf(err, errlen, "invalid setting \"%s\": \"%s\" %s", names[i], vals[i] ? vals[i] : "",
                 why);
      return CFG_EVALUE;
    }
  }
  for (size_t i = 0; i < c->n_peers; i++) {
    const char *u = c->peers[i];
    if ((strncmp(u, "http://", 7) && strncmp(u, "https://", 8)) || strlen(u) > 200 ||
        strpbrk(u, " ?#\"")) {
      cfg_errf(err, errlen,
               "invalid setting \"peers\": \"%s\" is not a peer URL (http://host:port, at most "
               "200 characters, no query)",
               u);
      return CFG_EVALUE;
    }
  }
  if (c->n_peers > 32) {
    cfg_errf(err, errlen, "invalid setting \"peers\": %zu peers, at most 32", c->n_peers);
    return CFG_EVALUE;
  }
  if (c->enable_transport && c->transport_kind &&
      (!strcmp(c->transport_kind, "nats") || !strcmp(c->transport_kind, "http+nats")) &&
      (!c->nats_urls || !c->nats_urls[0])) {
    cfg_errf(err, errlen,
             "the nats transport needs the hub's URL: --nats-url nats://HOST:4222, "
             "SOFTADASTRA_NATS_URLS or \"nats_urls\" in the config file");
    return CFG_EVALUE;
  }
  bool udp = c->enable_discovery && c->discovery_kind && !strcmp(c->discovery_kind, "udp");
  bool http = c->enable_transport && c->transport_kind &&
              (!strcmp(c->transport_kind, "http") || !strcmp(c->transport_kind, "http+nats"));
  if (http && c->n_peers == 0 && !udp) {
    cfg_errf(err, errlen,
             "the http transport needs at least one peer: --peer URL, SOFTADASTRA_PEERS or "
             "\"peers\" in the config file (or --discovery udp to find them)");
    return CFG_EVALUE;
  }
  if (udp && c->enable_transport && !http) {
    cfg_errf(err, errlen,
             "discovery udp adds the nodes it finds to the http transport, but transport_kind is "
             "\"%s\": use --transport http (or http+nats), or leave the transport unset",
             c->transport_kind ? c->transport_kind : "");
    return CFG_EVALUE;
  }
  if (udp && (uint64_t)c->discovery_timeout_s * 1000 < 2 * (uint64_t)c->discovery_interval_ms) {
    cfg_errf(err, errlen,
             "discovery_timeout_s (%u s) must be at least two discovery intervals "
             "(discovery_interval_ms %u): a peer would be forgotten between two announcements",
             c->discovery_timeout_s, c->discovery_interval_ms);
    return CFG_EVALUE;
  }
  if (udp && c->discovery_url && c->discovery_url[0]) {
    char host[64];
    uint16_t port;
    if (cfg_parse_listen(c->listen, host, sizeof host, &port) == 0 &&
        !srv_disc_addr_loopback(host) && srv_disc_url_loopback(c->discovery_url)) {
      cfg_errf(err, errlen,
               "invalid setting \"discovery_url\": \"%s\" is a loopback address but the node "
               "listens on %s: peers on other hosts would pull their own host; set "
               "--advertise-url to an address they reach",
               c->discovery_url, c->listen);
      return CFG_EVALUE;
    }
  }
  return CFG_OK;
}

/* One flag from the command line, applied after the file and environment. */
typedef struct cfg_flag {
  const cfg_setting *s; /* the setting */
  const char *value;    /* text value (borrowed from argv or static) */
} cfg_flag;

int cfg_load(cfg_config *c, int argc, char **argv, char *const *envp, bool *help, char *err,
             size_t errlen) {
  *help = false;
  int rc = cfg_init(c);
  if (rc != CFG_OK) return rc;
  cfg_flag *flags = calloc(2 * (size_t)argc + 1, sizeof *flags); /* --transport sets two */
  if (!flags) return CFG_ENOMEM;
  size_t nflags = 0;
  const char *config_path = NULL;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      *help = true;
      free(flags);
      return CFG_OK;
    }
    if (strncmp(a, "--", 2) != 0) {
      cfg_errf(err, errlen, "unexpected argument \"%s\" (serve takes only --flags)", a);
      free(flags);
      return CFG_EUSAGE;
    }
    const char *name = a + 2;
    const char *eq = strchr(name, '=');
    char fname[64];
    size_t fl = eq ? (size_t)(eq - name) : strlen(name);
    if (fl >= sizeof fname) fl = sizeof fname - 1;
    memcpy(fname, name, fl);
    fname[fl] = '\0';
    const char *value = eq ? eq + 1 : NULL;
    if (!strcmp(fname, "transport") || !strcmp(fname, "discovery")) {
      /* --transport KIND: --enable-transport --transport-kind KIND; --discovery the same */
      bool tr = fname[0] == 't';
      if (!value && i + 1 < argc) value = argv[++i];
      if (!value) {
        cfg_errf(err, errlen, "--%s needs a kind (%s)", fname, tr ? "http" : "udp");
        free(flags);
        return CFG_EUSAGE;
      }
      flags[nflags].s = cfg_find(tr ? "enable_transport" : "enable_discovery");
      flags[nflags++].value = "true";
      flags[nflags].s = cfg_find(tr ? "transport_kind" : "discovery_kind");
      flags[nflags++].value = value;
      continue;
    }
    if (!strcmp(fname, "config")) {
      if (!value && i + 1 < argc) value = argv[++i];
      if (!value) {
        cfg_errf(err, errlen, "--config needs a file name");
        free(flags);
        return CFG_EUSAGE;
      }
      config_path = value;
      continue;
    }
    const cfg_setting *s = NULL;
    bool negated = false;
    for (size_t k = 0; k < CFG_NSETTINGS && !s; k++) {
      char fn[64];
      cfg_flag_name(cfg_settings[k].name, fn, sizeof fn);
      if (!strcmp(fn, fname) || (cfg_settings[k].alias && !strcmp(cfg_settings[k].alias, fname)))
        s = &cfg_settings[k];
      else if (cfg_settings[k].type == CFG_BOOL && !strncmp(fname, "no-", 3) &&
               !strcmp(fn, fname + 3))
        s = &cfg_settings[k], negated = true;
    }
    if (!s) {
      cfg_errf(err, errlen, "unknown flag --%s (see softadastra serve --help)", fname);
      free(flags);
      return CFG_EUSAGE;
    }
    if (s->type == CFG_BOOL && !value) {
      value = negated ? "false" : "true";
    } else if (negated) {
      cfg_errf(err, errlen, "--%s takes no value", fname);
      free(flags);
      return CFG_EUSAGE;
    } else if (!value) {
      if (i + 1 >= argc) {
        cfg_errf(err, errlen, "--%s needs a value", fname);
        free(flags);
        return CFG_EUSAGE;
      }
      value = argv[++i];
    }
    flags[nflags].s = s;
    flags[nflags].value = value;
    nflags++;
  }
  if (!config_path && envp) {
    for (char *const *e = envp; *e; e++)
      if (!strncmp(*e, "SOFTADASTRA_CONFIG=", 19) && (*e)[19]) config_path = *e + 19;
  }
  if (config_path) rc = cfg_load_file(c, config_path, err, errlen);
  if (rc == CFG_OK) rc = cfg_apply_env(c, envp, err, errlen);
  for (size_t i = 0; rc == CFG_OK && i < nflags; i++) {
    char origin[96], fn[64];
    cfg_flag_name(flags[i].s->name, fn, sizeof fn);
    snprintf(origin, sizeof origin, "flag --%s", fn);
    bool again = false; /* a list flag given again adds to the list (--peer A --peer B) */
    for (size_t k = 0; k < i; k++)
      again |= flags[k].s == flags[i].s;
    if (flags[i].s->type == CFG_LIST && again)
      rc = cfg_list_set_text(c, flags[i].s, flags[i].value, true);
    else
      rc = cfg_set_text(c, flags[i].s, flags[i].value, origin, err, errlen);
  }
  free(flags);
  /* Discovery udp finds peers for the http transport: alone, it turns it on. */
  if (rc == CFG_OK && c->enable_discovery && !strcmp(c->discovery_kind, "udp") &&
      !c->enable_transport) {
    char *k = strdup("http");
    if (!k) return CFG_ENOMEM;
    free(c->transport_kind);
    c->transport_kind = k;
    c->enable_transport = true;
  }
  if (rc == CFG_OK) rc = cfg_validate(c, err, errlen);
  return rc;
}

void cfg_print_help(FILE *f) {
  fputs("  --config FILE                  JSON config file (env SOFTADASTRA_CONFIG)\n", f);
  fputs("  --transport KIND               short for --enable-transport --transport-kind KIND\n", f);
  fputs("  --discovery KIND               short for --enable-discovery --discovery-kind KIND\n", f);
  for (size_t i = 0; i < CFG_NSETTINGS; i++) {
    const cfg_setting *s = &cfg_settings[i];
    char fn[64], env[64], left[160];
    cfg_flag_name(s->name, fn, sizeof fn);
    cfg_env_name(s, env, sizeof env);
    if (s->type == CFG_BOOL)
      snprintf(left, sizeof left, "--%s, --no-%s", fn, fn);
    else
      snprintf(left, sizeof left, "--%s%s%s VALUE", fn, s->alias ? ", --" : "",
               s->alias ? s->alias : "");
    if (strlen(left) > 30)
      fprintf(f, "  %s\n  %-30s %s\n", left, "", s->help);
    else
      fprintf(f, "  %-30s %s\n", left, s->help);
    fprintf(f, "  %-30s   env %s, default \"%s\"\n", "", env, s->def);
  }
}

void cfg_write_defaults(FILE *f) {
  fputs("{\n", f);
  for (size_t i = 0; i < CFG_NSETTINGS; i++) {
    const cfg_setting *s = &cfg_settings[i];
    const char *sep = i + 1 < CFG_NSETTINGS ? "," : "";
    switch (s->type) {
    case CFG_STR:
      fprintf(f, "  \"%s\": \"%s\"%s\n", s->name, s->def, sep);
      break;
    case CFG_LIST:
      fprintf(f, "  \"%s\": []%s\n", s->name, sep);
      break;
    default:
      fprintf(f, "  \"%s\": %s%s\n", s->name, s->def, sep);
      break;
    }
  }
  fputs("}\n", f);
}

unsigned cfg_threads(const cfg_config *c) {
  if (c->threads) return c->threads;
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1u : n > 256 ? 256u : (unsigned)n;
}
