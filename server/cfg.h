/*
 * cfg.h -- the configuration of `softadastra serve`: defaults, the JSON
 * config file, SOFTADASTRA_* environment variables and command-line flags.
 *
 * Precedence: flags > environment > config file > built-in defaults.  One
 * table in cfg.c describes every setting (name, type, range, default, help);
 * the file keys, the environment names (SOFTADASTRA_ + upper-case name) and
 * the flags (--name-with-dashes) all come from it, so they cannot drift.
 * Unknown keys and bad values (the listen address and the node id too) are
 * rejected with a message naming the key and where it came from (default,
 * file, environment variable or flag); a SOFTADASTRA_* variable that no
 * setting reads is reported (cfg_env_check) with the closest known name.
 *
 * What it is not: it does not open files other than the config file, create
 * directories or touch the node; server/srv.c does that with the result.
 * It has no global state, so a fuzz target can drive cfg_apply_json.
 *
 * Threads: a cfg_config belongs to one thread; functions are reentrant.
 */
#ifndef SA_CFG_H
#define SA_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct cfg_config {
  char *listen;                    /* "host:port" to bind ("127.0.0.1:8080"; port 0 = any free) */
  char *data_dir;                  /* directory of the WAL and the store ("data") */
  char *node_id;                   /* node id ("node-1") */
  char *wal_path;                  /* WAL file; "" = <data_dir>/<node_id>.wal */
  char *store_path;                /* LMDB file; "" = the WAL path with .mdb */
  bool auto_flush;                 /* ack after fdatasync (true) or after write(2) */
  bool enable_transport;           /* sync transport (false) */
  bool enable_discovery;           /* peer discovery (false) */
  bool create_data_dir;            /* create data_dir at start when missing (true) */
  bool new_node;                   /* start even beside another node's WAL (false) */
  uint32_t flush_interval_ms;      /* background flush period with auto_flush off */
  uint32_t store_sync_interval_ms; /* period of the store's sync points */
  uint32_t store_writeback_ms;     /* write-back kick period between them (0: none) */
  uint32_t store_commit_ms;        /* answered writes applied to the store within this */
  uint32_t store_commit_busy_ms;   /* the same under load (0: never longer) */
  uint32_t store_commit_sync_ms;   /* the same for a stream of peers' batches (0: never longer) */
  uint32_t tick_interval_ms;       /* outbox tick period */
  char *transport_kind;            /* with enable_transport: "http", "stub" or "disabled" */
  char **peers;                    /* transport "http": peer base URLs ("http://host:port") */
  size_t n_peers;                  /* entries in peers */
  char *peer_token;                /* bearer token sent to peers; "" = none */
  uint32_t max_clock_drift_ms;     /* a peer batch this far ahead of the clock is refused */
  uint32_t tombstone_ttl_s;        /* tombstones are dropped at the latest after this */
  char *discovery_kind;            /* with enable_discovery: "udp", "stub" or "disabled" */
  uint32_t discovery_port;         /* udp: the UDP port of announcements */
  uint32_t discovery_interval_ms;  /* udp: between two announcements */
  uint32_t discovery_timeout_s;    /* udp: a discovered peer silent this long is forgotten */
  char *discovery_url;             /* udp: the URL to advertise; "" = from the listen address */
  uint32_t sync_pull_linger_ms;    /* pause after a partial page before the next pull */
  uint32_t sync_batch_size;        /* ops handed to the transport per tick */
  uint32_t max_retries;            /* attempts before an op is marked failed */
  uint32_t retry_base_ms;          /* first retry delay (doubles per attempt) */
  uint32_t retry_max_ms;           /* cap of the retry delay */
  uint32_t ack_timeout_ms;         /* an unanswered in-flight op expires after this */
  uint64_t outbox_max;             /* outbox entries before it reports overflow */
  uint64_t outbox_retention_ms;    /* acknowledged entries are pruned after this */
  uint32_t max_value_bytes;        /* largest value */
  uint32_t max_batch_bytes;        /* largest batch payload */
  uint64_t wal_max_bytes;          /* WAL size bound */
  uint64_t store_max_bytes;        /* LMDB map size */
  uint32_t threads;                /* HTTP worker threads (0: one per online CPU) */
  uint32_t max_connections;        /* concurrent HTTP connections */
  uint32_t connection_timeout_s;   /* idle or stalled connection timeout */
  uint32_t max_header_bytes;       /* memory per connection for the request line and headers */
  uint32_t max_streams;            /* concurrent change-feed SSE streams (GET /v1/changes) */
  uint32_t sse_heartbeat_s;        /* seconds between heartbeat comments on an SSE stream */
  uint32_t shutdown_timeout_s;     /* longest wait for in-flight requests at SIGTERM */
  char *auth_token;                /* bearer token; "" = auth off */
  bool auth_probes;                /* with a token: /healthz and /readyz need it (false) */
  bool auth_metrics;               /* with a token: /metrics needs it (true) */
  char **cors_origins;             /* browser origins allowed by CORS; none = off */
  size_t n_cors_origins;           /* entries in cors_origins */
  char *log_level;                 /* "debug", "info", "warn" or "error" */
  char *config_path;               /* the config file that was read, or NULL */
  /* The nats transport (transport_kind "nats" or "http+nats"; srv_nats.c). */
  char *nats_urls;           /* comma-separated nats://host:port URLs */
  char *nats_stream;         /* JetStream stream ("SOFTADASTRA") */
  char *nats_subject_prefix; /* subject prefix ("sa.ops") */
  uint32_t nats_replicas;    /* stream replicas (0: 3 with >= 3 servers, else 1) */
  char *nats_creds;          /* credentials file ("" : none) */
  char *nats_token;          /* token ("" : none) */
  char *nats_filter_prefix;  /* consume only keys under this prefix ("" : all) */
} cfg_config;

/* Return codes of the cfg_* functions. */
enum {
  CFG_OK = 0,
  CFG_EUSAGE = -1, /* unknown flag, missing flag argument */
  CFG_EVALUE = -2, /* unknown key or bad value (file, environment or flag) */
  CFG_EFILE = -3,  /* the config file cannot be read or is not JSON */
  CFG_ENOMEM = -4, /* out of memory */
};

#define CFG_ERR_MAX 512

/* Sets every setting to its built-in default.  Returns CFG_OK or
 * CFG_ENOMEM; free with cfg_free in both cases. */
int cfg_init(cfg_config *c);

/* Frees the strings of c and zeroes it.  Safe on a zeroed struct. */
void cfg_free(cfg_config *c);

/* Applies a JSON object (text of len bytes) on top of c.  origin names the
 * source in messages (a file name).  Returns CFG_OK, CFG_EFILE (not a JSON
 * object), CFG_EVALUE (unknown key, wrong type, out of range) or
 * CFG_ENOMEM, with a message in err (errlen bytes, may be 0).  On failure c
 * may be partly updated. */
int cfg_apply_json(cfg_config *c, const char *text, size_t len, const char *origin, char *err,
                   size_t errlen);

/* Reads path and applies it with cfg_apply_json; records config_path. */
int cfg_load_file(cfg_config *c, const char *path, char *err, size_t errlen);

/* Applies SOFTADASTRA_<NAME> variables from envp (NULL-terminated
 * "NAME=value" strings, as environ).  Empty values count as unset.  Other
 * SOFTADASTRA_* variables (SOFTADASTRA_URL, SOFTADASTRA_CONFIG) are left
 * alone.  Returns CFG_OK, CFG_EVALUE or CFG_ENOMEM. */
int cfg_apply_env(cfg_config *c, char *const *envp, char *err, size_t errlen);

/* Looks for SOFTADASTRA_* variables in envp that nothing reads (a
 * misspelling is otherwise silently ignored).  For each, writes one line
 * "unknown variable SOFTADASTRA_LISTN is ignored; did you mean
 * SOFTADASTRA_LISTEN?" (the closest known name by edit distance, when one
 * is close) to out (outlen bytes, NUL-terminated, may be NULL).  Returns
 * how many there are. */
int cfg_env_check(char *const *envp, char *out, size_t outlen);

/* Sets one setting from its text form (as in the environment or a flag).
 * Returns CFG_OK, CFG_EVALUE (unknown name or bad value) or CFG_ENOMEM. */
int cfg_set(cfg_config *c, const char *name, const char *value, const char *origin, char *err,
            size_t errlen);

/* The whole precedence for `serve`: defaults, then the config file (the
 * --config flag, else SOFTADASTRA_CONFIG), then envp, then the flags in
 * argv[0..argc) (the arguments after "serve").  Validates the result.
 * Sets *help when --help/-h was given (nothing else is done then).
 * Returns CFG_OK or an error with the message in err; c must be freed with
 * cfg_free in every case. */
int cfg_load(cfg_config *c, int argc, char **argv, char *const *envp, bool *help, char *err,
             size_t errlen);

/* Checks the settings together (listen address, node id, log level).
 * Returns CFG_OK or CFG_EVALUE with a message. */
int cfg_validate(const cfg_config *c, char *err, size_t errlen);

/* The HTTP worker threads to start: c->threads, or with 0 one per online
 * CPU (at most 256). */
unsigned cfg_threads(const cfg_config *c);

/* Splits "host:port", "[v6]:port" or ":port".  host receives the numeric
 * address ("localhost" and an empty host become 127.0.0.1); returns 0, or
 * -1 when s is malformed. */
int cfg_parse_listen(const char *s, char *host, size_t hostlen, uint16_t *port);

/* Writes the `serve` flag reference (one line per setting with its
 * environment name and default) to f. */
void cfg_print_help(FILE *f);

/* Writes the default configuration as a JSON document to f (the content of
 * config/softadastra.json). */
void cfg_write_defaults(FILE *f);

#endif /* SA_CFG_H */
