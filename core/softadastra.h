/*
 * softadastra.h -- the embedding API of the Softadastra node core.
 *
 *     Write locally.  Persist locally.  Recover later.  Sync when a peer is there.
 *
 * A C program opens a client (a local node), writes keys, and reads them
 * back.  With a persistent client every write is appended to the node's own
 * write-ahead log (WAL), made durable with fdatasync (shared by concurrent
 * writers: group commit), and only then acknowledged; the LMDB store applies
 * it with its outbox entry within store_commit_ms, 10 ms by default (one
 * transaction for every write of that time), and a read waits for that when
 * it would otherwise miss an acknowledged write, so every read sees every
 * acknowledged write.  When the client is opened again -- after a close, a
 * crash or kill -9 -- the WAL is replayed and every acknowledged write is
 * back.
 *
 * Conventions (the same everywhere in this header):
 *   - Functions return an int: 0 (SA_OK) on success or a negative SA_E*
 *     code.  Outputs are the last parameters.
 *   - Every function that can fail takes an optional `sa_error *err` (may be
 *     NULL).  On failure it receives the code and a human message that names
 *     the path or key and the cause.  sa_strerror(code) gives the code alone.
 *   - Ownership is stated per function: "the caller frees" means with the
 *     matching sa_*_free function; "borrowed" means valid until the named
 *     event.
 *   - An sa_client is safe to use from many threads at once (that is how
 *     group commit happens), except sa_client_open / sa_client_close.
 *
 * Keys are 1..1024 bytes of valid UTF-8 with no control characters (U+0000
 * to U+001F and U+007F).  Values are arbitrary bytes up to
 * sa_options.max_value_bytes (default 1 MiB).  A value may carry a content
 * type (a media type such as "application/json", sa_client_put_opts), kept
 * with it, returned with it and moved with it by sync; a put replaces the
 * value and its type together.  Violations are errors, never truncation.
 *
 * Caveats -- what this library deliberately does not do:
 *   - It does not create the data directory.  A missing directory is an error
 *     whose message says how to create it.
 *   - One process owns a WAL at a time (an advisory lock).  Several clients
 *     in one process on one WAL are refused as well.
 *   - A failed write is never visible half-applied.  When the WAL append
 *     fails (SA_EIO, SA_ENOSPC) the bytes are truncated away and the client
 *     stays writable; the write did not happen.  When the fdatasync fails the
 *     outcome is unknown -- the record may be found whole in the WAL at the
 *     next open and then applied whole -- and the client turns read-only
 *     until it is closed and opened again (it never retries an fsync and
 *     pretends success).  If the truncation itself fails, it turns
 *     read-only too.
 *   - Listing order is bytewise, except among keys longer than 480 bytes
 *     that share their first 480 bytes (LMDB keys are at most 511 bytes):
 *     those follow one another in a stable order by hash.
 *   - With auto_flush=false a write is acknowledged after write(2) and is
 *     only durable after the next periodic flush; results say durable=false.
 *   - Persistence is not synchronization: the outbox records sync work; the
 *     transport that moves it is off by default.
 */
#ifndef SOFTADASTRA_H
#define SOFTADASTRA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SA_VERSION_STRING "0.1.0"

/* ---- error codes (0 is success; all errors are negative) -------------- */
enum {
  SA_OK = 0,
  SA_EINVAL = -1,     /* invalid argument or option */
  SA_ENOTFOUND = -2,  /* key (or file) not found */
  SA_EKEY = -3,       /* key empty, too long, not UTF-8, or has control chars */
  SA_ETOOBIG = -4,    /* value or batch larger than the configured maximum */
  SA_ELOCKED = -5,    /* WAL locked by another process or client */
  SA_ENODE = -6,      /* WAL or store belongs to another node id */
  SA_ECORRUPT = -7,   /* WAL or store corrupt (message names file, offset) */
  SA_ENOSPC = -8,     /* no space left on the device (or store map full) */
  SA_EIO = -9,        /* I/O error */
  SA_EREADONLY = -10, /* node is read-only after a failed fdatasync */
  SA_ECONFLICT = -11, /* compare-and-set condition failed */
  SA_ENOENT = -12,    /* a directory or file that must exist does not */
  SA_EACCES = -13,    /* permission denied */
  SA_ENOMEM = -14,    /* out of memory */
  SA_ECLOSED = -15,   /* client is closing */
  SA_EFORMAT = -16,   /* unsupported on-disk format version */
  SA_EINTERNAL = -17, /* unexpected error from a library (message says which) */
  SA_EGONE = -18,     /* changes before the asked LSN are no longer kept */
  SA_EDRIFT = -19,    /* a peer's clock is too far ahead (max_clock_drift_ms) */
};

/* The short description of a code ("key not found", ...).  Static string. */
const char *sa_strerror(int code);

/* The library version, SA_VERSION_STRING.  Static string. */
const char *sa_version(void);

#define SA_ERROR_MESSAGE_MAX 512

/* Caller-owned error report.  Filled only on failure. */
typedef struct sa_error {
  int code;                           /* one of SA_E* */
  char message[SA_ERROR_MESSAGE_MAX]; /* human text naming the path and cause */
} sa_error;

/* ---- options ----------------------------------------------------------- */

#define SA_KEY_MAX 1024                         /* bytes */
#define SA_CONTENT_TYPE_MAX 127                 /* bytes of a value's content type */
#define SA_DEFAULT_MAX_VALUE_BYTES (1u << 20)   /* 1 MiB */
#define SA_DEFAULT_MAX_BATCH_BYTES (16u << 20)  /* 16 MiB */
#define SA_DEFAULT_WAL_MAX_BYTES (64ull << 20)  /* 64 MiB */
#define SA_DEFAULT_STORE_MAX_BYTES (8ull << 30) /* 8 GiB (LMDB map size) */
#define SA_DEFAULT_FLUSH_INTERVAL_MS 1000
#define SA_DEFAULT_STORE_SYNC_INTERVAL_MS 200
#define SA_DEFAULT_STORE_WRITEBACK_MS 2
#define SA_STORE_WRITEBACK_OFF UINT32_MAX /* sa_options.store_writeback_ms: no kicks */
#define SA_DEFAULT_STORE_COMMIT_MS 10
#define SA_DEFAULT_STORE_COMMIT_BUSY_MS 30
#define SA_STORE_COMMIT_BUSY_OFF UINT32_MAX /* sa_options.store_commit_busy_ms: never longer */
#define SA_COMMIT_BUSY_OPS 128 /* operations waiting that make the committer gather longer */
#define SA_DEFAULT_STORE_COMMIT_SYNC_MS 100
#define SA_COMMIT_SYNC_STREAK 3 /* busy commits in a row before store_commit_sync_ms applies */
#define SA_DEFAULT_TICK_INTERVAL_MS 1000
#define SA_NODE_ID_MAX 64 /* bytes */
#define SA_DEFAULT_SYNC_BATCH_SIZE 64
#define SA_DEFAULT_MAX_RETRIES 10
#define SA_DEFAULT_RETRY_BASE_MS 1000
#define SA_DEFAULT_RETRY_MAX_MS 60000
#define SA_DEFAULT_ACK_TIMEOUT_MS 10000
#define SA_DEFAULT_OUTBOX_MAX 100000
#define SA_DEFAULT_OUTBOX_RETENTION_MS 3600000
#define SA_DEFAULT_MAX_CLOCK_DRIFT_MS 60000
#define SA_DEFAULT_TOMBSTONE_TTL_S 604800 /* 7 days */

typedef struct sa_transport sa_transport;
typedef struct sa_discovery sa_discovery;

enum { SA_LOG_DEBUG = 0, SA_LOG_INFO = 1, SA_LOG_WARN = 2, SA_LOG_ERROR = 3 };

/* Receives the core's log lines (recovery, read-only, checkpoints, stubs).
 * Called from any of the core's threads; msg is borrowed for the call. */
typedef void (*sa_log_fn)(void *ctx, int level, const char *msg);

/* A clock in unix milliseconds.  Tests pass a logical clock. */
typedef uint64_t (*sa_clock_fn)(void *ctx);

typedef struct sa_options {
  const char *node_id;        /* 1..64 chars of [A-Za-z0-9._-]; borrowed during open */
  const char *wal_path;       /* WAL file; required when persistent */
  const char *store_path;     /* LMDB file; NULL: wal_path with ".wal" -> ".mdb" */
  bool persistent;            /* false: memory-only node (private temp store, no WAL) */
  bool auto_flush;            /* true: ack after fdatasync (durable); false: after write(2) */
  bool enable_transport;      /* sync transport (off by default: work stays queued) */
  bool enable_discovery;      /* peer discovery (off by default) */
  uint32_t flush_interval_ms; /* auto_flush=false: background flush period */
  uint32_t tick_interval_ms;  /* outbox tick period */
  uint32_t max_value_bytes;   /* largest accepted value */
  uint32_t max_batch_bytes;   /* largest accepted batch (keys + values) */
  uint64_t wal_max_bytes;     /* WAL size bound (at least 65536); checkpoints keep it below */
  uint64_t store_max_bytes;   /* LMDB map size: the store's size limit */

  /* Sync (outbox, tick thread, transport, discovery).  0 means the default. */
  const char *transport_kind;    /* with enable_transport: "stub" (default) or "disabled" */
  const sa_transport *transport; /* a transport of the caller's (overrides the kind);
                                    borrowed until sa_client_close */
  const char *discovery_kind;    /* with enable_discovery: "stub" (default) or "disabled" */
  const sa_discovery *discovery; /* a discovery of the caller's; borrowed until close */
  uint32_t sync_batch_size;      /* ops handed to the transport per tick (64) */
  uint32_t max_retries;          /* attempts before an op is marked failed (10) */
  uint32_t retry_base_ms;        /* first retry delay; doubles per attempt (1000) */
  uint32_t retry_max_ms;         /* cap of the retry delay (60000) */
  uint32_t ack_timeout_ms;       /* an in-flight op without an answer expires (10000) */
  uint64_t outbox_max;           /* entries kept (100000): commits above it prune
                                    acknowledged, failed, then superseded work;
                                    what is left above it is reported as overflow */
  uint64_t outbox_retention_ms;  /* acknowledged entries are pruned after (3600000) */
  bool tick_on_write;            /* wake the tick thread as soon as work is queued */
  bool tick_manual;              /* no tick thread: ticks only via sa_client_sync_tick */
  sa_clock_fn clock;             /* NULL: the wall clock (HLC and outbox timing) */
  void *clock_ctx;
  sa_log_fn log; /* NULL: the core is silent */
  void *log_ctx;
  uint32_t store_sync_interval_ms; /* period of the store's sync points (200; 0: the
                                      default): shorter smooths write latency, longer
                                      costs less I/O; a power loss replays at most
                                      about this much of the WAL */
  uint32_t store_writeback_ms;     /* between sync points, while writes come in, start
                                      the store's write-back this often (2; 0: the
                                      default; SA_STORE_WRITEBACK_OFF: never): the
                                      sync points then flush little at once, which
                                      keeps write latency even, for some throughput */
  uint32_t store_commit_ms;        /* a write answered at its WAL sync is applied to
                                      the store within this long, together with every
                                      write of that span (10; 0: the default; 1..1000);
                                      a read that needs it does not wait for the span.
                                      Longer: fewer, larger store commits, each B-tree
                                      page written once for more writes (more write
                                      throughput), larger bursts of store I/O (longer
                                      tail), and change-feed waiters told later */
  uint32_t max_clock_drift_ms;     /* a sync batch holding an item whose HLC is more
                                      than this ahead of the clock is refused whole
                                      (SA_EDRIFT) (60000; 0: the default) */
  uint32_t tombstone_ttl_s;        /* a tombstone is dropped at the latest this long
                                      after it was written, even if a configured peer
                                      has not acknowledged it (604800; 0: the default);
                                      one dropped by age leaves a record of its key
                                      until the delete is twice this old */
  uint32_t store_commit_busy_ms;   /* under load (at least SA_COMMIT_BUSY_OPS
                                      operations waiting), answered writes wait up to
                                      this long for their store commit instead of
                                      store_commit_ms (30; 0: the default; 1..1000;
                                      SA_STORE_COMMIT_BUSY_OFF, or a value not above
                                      store_commit_ms: never longer).  A quiet node
                                      commits as before; a busy one writes each hot
                                      B-tree page once for more writes, as
                                      store_commit_ms describes */
  uint32_t store_commit_sync_ms;   /* the busy span when every operation waiting is
                                      an item of a peer's batch (sa_client_sync_apply)
                                      and the last SA_COMMIT_SYNC_STREAK commits each
                                      held SA_COMMIT_BUSY_OPS or more: a sustained
                                      stream from peers (100; 0: the default;
                                      1..1000; SA_STORE_COMMIT_BUSY_OFF, or a value
                                      not above store_commit_busy_ms: never longer).
                                      A batch is answered once it is in the WAL, so
                                      no caller waits on it; this node's own change
                                      feed (its watchers, the peers relaying from it)
                                      sees such a stream up to this late.  A local
                                      write joining the queue brings the busy span
                                      back at once */
} sa_options;

/* Options for a persistent node with every default set: auto_flush on,
 * transport and discovery off.  The strings are borrowed, not copied: they
 * must stay valid until sa_client_open returns. */
sa_options sa_options_persistent(const char *node_id, const char *wal_path);

/* Options for a memory-only node: nothing survives sa_client_close. */
sa_options sa_options_memory(const char *node_id);

/* ---- client ------------------------------------------------------------ */

typedef struct sa_client sa_client;

/* Opens a node.  For a persistent node: validates the options, takes the WAL
 * lock, checks the WAL header (format, node id), recovers (cuts a torn tail
 * into a side file, refuses a corrupt WAL naming file and offset), opens the
 * store, replays every WAL record above the store's applied LSN, and starts
 * the writer and committer threads.
 * Returns 0 and sets *out (free with sa_client_close), or an error with *out
 * set to NULL.  Files are not modified when open fails, except for the
 * creation of a new WAL. */
int sa_client_open(sa_client **out, const sa_options *opts, sa_error *err);

/* Flushes and syncs the WAL and the store, stops the threads, releases the
 * lock and frees the client.  Waits for writes in flight.  NULL is a no-op. */
void sa_client_close(sa_client *c);

/* Writes key = value (a NUL-terminated string, stored without the NUL).
 * Returns once acknowledged: durable if auto_flush is on. */
int sa_client_put(sa_client *c, const char *key, const char *value, sa_error *err);

/* Writes key = len bytes at data (data may be NULL when len is 0). */
int sa_client_put_bytes(sa_client *c, const char *key, const void *data, size_t len, sa_error *err);

/* Removes key.  SA_ENOTFOUND when it is absent (nothing is logged then). */
int sa_client_remove(sa_client *c, const char *key, sa_error *err);

/* A stored value.  data is NUL-terminated for convenience (data[len] == 0)
 * and owned by the caller: release it with sa_value_free. */
typedef struct sa_value {
  char *data;                      /* the bytes, plus a terminating NUL not counted in len */
  size_t len;                      /* number of bytes */
  uint64_t version;                /* 1 at creation, +1 per put; restarts after a remove */
  uint64_t lsn;                    /* LSN of the write that produced this value */
  uint64_t hlc;                    /* hybrid logical clock of that write */
  char origin[SA_NODE_ID_MAX + 1]; /* node id of the node where that write happened */
  char content_type[SA_CONTENT_TYPE_MAX + 1]; /* the type put with the value, "" when none */
} sa_value;

/* Reads key into *out.  SA_ENOTFOUND when absent (out->data is NULL then).
 * Every read (get, get_with, list, changes, outbox_list) sees every write
 * acknowledged before it began.  In the rare case where the store could not
 * apply acknowledged writes (an I/O error; the node is then read-only and
 * its next open replays them from the WAL) a read fails with that error
 * rather than answer without them. */
int sa_client_get(sa_client *c, const char *key, sa_value *out, sa_error *err);

/* Frees out->data and zeroes *out.  NULL or an empty value is a no-op. */
void sa_value_free(sa_value *v);

/* Reads key without copying its value: calls fn(arg, v) exactly once, from
 * this thread, while the read snapshot is held.  v->data points at the
 * stored bytes themselves: read-only, NOT NUL-terminated, valid only until
 * fn returns (copy what must outlive the call).  fn should be quick: the
 * snapshot's pages cannot be reused until it returns.  Returns 0 after fn
 * ran, or the error sa_client_get would give (SA_ENOTFOUND, SA_EKEY, ...;
 * fn not called). */
int sa_client_get_with(sa_client *c, const char *key, void (*fn)(void *arg, const sa_value *v),
                       void *arg, sa_error *err);

/* Number of keys in the store. */
size_t sa_client_size(sa_client *c);

/* ---- conditional writes and batches ------------------------------------ */

enum {
  SA_COND_NONE = 0,    /* unconditional */
  SA_COND_VERSION = 1, /* only if the key exists with exactly `version` (If-Match) */
  SA_COND_ABSENT = 2,  /* only if the key does not exist (If-None-Match: *) */
};

typedef struct sa_write_opts {
  int cond;         /* SA_COND_* */
  uint64_t version; /* for SA_COND_VERSION */
} sa_write_opts;

/* What an acknowledged write reports. */
typedef struct sa_write_result {
  uint64_t lsn;                    /* LSN of the WAL record */
  uint64_t version;                /* new version of the key (0 for a remove or a batch) */
  uint64_t hlc;                    /* hybrid logical clock of the operation */
  bool durable;                    /* true when fdatasync'ed before the acknowledgement */
  char origin[SA_NODE_ID_MAX + 1]; /* the write's origin: this node's id */
} sa_write_result;

/* put with an optional condition (wo may be NULL) and result (res may be
 * NULL).  SA_ECONFLICT when the condition fails (nothing is logged). */
int sa_client_put_ex(sa_client *c, const char *key, const void *data, size_t len,
                     const sa_write_opts *wo, sa_write_result *res, sa_error *err);

/* A put's options: its condition (as sa_write_opts) and its content type. */
typedef struct sa_put_opts {
  int cond;                 /* SA_COND_* */
  uint64_t version;         /* for SA_COND_VERSION */
  const char *content_type; /* NULL or "": none; else a media type (sa_content_type_check),
                               stored with the value and returned by every read of it */
} sa_put_opts;

/* 0 when ct is a content type a value may carry: 1..SA_CONTENT_TYPE_MAX
 * bytes of printable ASCII (0x20..0x7E) forming an RFC 9110 media type,
 * type "/" subtype, each a token, then any parameters ";" name "=" value
 * (a token or a quoted string), spaces allowed around each ";".  Otherwise
 * SA_EINVAL, err naming the cause and where.  The library stores the text
 * as given (no case folding). */
int sa_content_type_check(const char *ct, sa_error *err);

/* sa_client_put_ex with a content type: po (may be NULL: no condition, no
 * type) is copied before the call returns.  The type is checked with the
 * key and value, before anything is logged (SA_EINVAL naming the cause). */
int sa_client_put_opts(sa_client *c, const char *key, const void *data, size_t len,
                       const sa_put_opts *po, sa_write_result *res, sa_error *err);

/* remove with an optional condition and result.  SA_ENOTFOUND when absent. */
int sa_client_remove_ex(sa_client *c, const char *key, const sa_write_opts *wo,
                        sa_write_result *res, sa_error *err);

/* ---- asynchronous writes ------------------------------------------------ */

/* Called once per queued write, on one of the node's threads, after the
 * write's group was written to the WAL and synced (auto_flush) -- exactly
 * when the blocking call would have returned.  rc is 0
 * or the error the blocking call would have returned (err is then filled);
 * res is the result on success.  res and err are valid only during the call.
 * The callback must be quick and must not call back into the client's write,
 * flush or checkpoint functions (the node's threads serve them);
 * waking another thread (a condition variable, an event loop) is its job. */
typedef void (*sa_write_cb)(void *arg, int rc, const sa_write_result *res, const sa_error *err);

/* put_ex without waiting: checks the arguments, queues the write and
 * returns.  0: queued, cb will be called exactly once, possibly before this
 * returns; key and data are borrowed until then.  Non-zero: refused now
 * (invalid key, value too large, read-only, closing), cb is never called and
 * err says why.  A server uses it so that one thread can have many writes in
 * the same group commit.  sa_client_close waits for every queued write. */
int sa_client_put_async(sa_client *c, const char *key, const void *data, size_t len,
                        const sa_write_opts *wo, sa_write_cb cb, void *arg, sa_error *err);

/* put_opts without waiting; same contract as sa_client_put_async, and
 * po->content_type is borrowed until cb is called too. */
int sa_client_put_opts_async(sa_client *c, const char *key, const void *data, size_t len,
                             const sa_put_opts *po, sa_write_cb cb, void *arg, sa_error *err);

/* remove_ex without waiting; same contract as sa_client_put_async. */
int sa_client_remove_async(sa_client *c, const char *key, const sa_write_opts *wo, sa_write_cb cb,
                           void *arg, sa_error *err);

enum { SA_OP_PUT = 1, SA_OP_DELETE = 2 };

typedef struct sa_batch_op {
  int op;           /* SA_OP_PUT or SA_OP_DELETE */
  const char *key;  /* borrowed for the call */
  const void *data; /* value for a put (borrowed for the call) */
  size_t len;       /* value length for a put */
} sa_batch_op;

/* Applies n (1..10000) operations atomically as one WAL record: all or
 * none.  Deleting an absent key inside a batch is not an error.  Every key
 * and value is validated before anything is logged.  A batch's puts carry
 * no content type (a key put by a batch has none, whatever it had). */
int sa_client_batch(sa_client *c, const sa_batch_op *ops, size_t n, sa_write_result *res,
                    sa_error *err);

/* sa_client_batch with a condition per operation: conds is NULL (none) or
 * n entries, conds[i] for ops[i] with the meaning of sa_write_opts
 * (SA_COND_VERSION: the key exists at exactly that version; SA_COND_ABSENT:
 * it does not exist).  Every condition is checked against the state before
 * the batch (an earlier op of the same batch does not count), all before
 * anything is logged: when one fails, nothing is written, the result is
 * SA_ECONFLICT and *failed (when failed is not NULL) is the index of the
 * first op, in op order, whose condition failed; err names it. */
int sa_client_batch_ex(sa_client *c, const sa_batch_op *ops, size_t n, const sa_write_opts *conds,
                       sa_write_result *res, size_t *failed, sa_error *err);

/* ---- listing ----------------------------------------------------------- */

typedef struct sa_entry {
  char *key;  /* NUL-terminated */
  char *data; /* value (NUL-terminated), NULL unless values were asked */
  size_t len; /* value length (also set when values were not asked) */
  uint64_t version;
  uint64_t lsn;
  uint64_t hlc;
  char origin[SA_NODE_ID_MAX + 1]; /* node id of the write that holds the key */
  char *content_type;              /* the value's content type, NULL when none */
} sa_entry;

typedef struct sa_list {
  sa_entry *items; /* count entries, sorted by key: bytewise, except that keys
                      longer than 480 bytes which share their first 480
                      bytes follow each other in a stable, hash-based order
                      (LMDB limits its keys to 511 bytes) */
  size_t count;
  bool more; /* true when keys after the last item match the prefix */
} sa_list;

/* Lists keys that start with prefix (NULL or "" for all), strictly after
 * `after` (NULL or "" to start at the beginning), at most limit (1..10000)
 * entries; with_values copies the values too.  The caller frees *out with
 * sa_list_free.  The next page starts after the last item's key. */
int sa_client_list(sa_client *c, const char *prefix, const char *after, size_t limit,
                   bool with_values, sa_list *out, sa_error *err);

void sa_list_free(sa_list *l);

/* ---- state ------------------------------------------------------------- */

typedef struct sa_sync_state {
  uint64_t outbox_size;   /* operations recorded in the outbox */
  uint64_t queued;        /* waiting for the transport */
  uint64_t in_flight;     /* handed to the transport, not yet acknowledged */
  uint64_t acknowledged;  /* acknowledged by a peer, kept until pruned */
  uint64_t failed;        /* gave up after max retries, or unreadable (never sent) */
  uint64_t total_retries; /* re-sends since open */
  uint64_t ticks;         /* outbox ticks run since open */
  uint64_t last_tick_ms;  /* unix ms of the last tick, 0 if none */
  uint64_t last_lsn;      /* last LSN written by this node */
  uint64_t outbox_max;    /* overflow threshold */
  bool overflow;          /* outbox_size > outbox_max after pruning */
  uint64_t pruned;        /* entries pruned since open */
  bool transport_enabled;
  bool transport_running;
  bool transport_stub; /* the transport is a stub that moves nothing */
  char transport_kind[32];
  bool discovery_enabled;
  bool discovery_stub;
  char discovery_kind[32];
  uint32_t peers;
} sa_sync_state;

int sa_client_sync_state(sa_client *c, sa_sync_state *out, sa_error *err);

/* Runs one outbox tick now, on the calling thread: expires in-flight work,
 * hands due work to the transport, records acknowledgements, prunes. */
int sa_client_sync_tick(sa_client *c, sa_error *err);

enum {
  SA_OUTBOX_QUEUED = 0,
  SA_OUTBOX_IN_FLIGHT = 1,
  SA_OUTBOX_ACKNOWLEDGED = 2,
  SA_OUTBOX_FAILED = 3
};

/* One outbox entry.  Its operation id is (node_id, lsn). */
typedef struct sa_outbox_entry {
  uint64_t lsn;
  uint64_t hlc;      /* last-writer-wins order: (hlc, node_id) */
  int state;         /* SA_OUTBOX_* */
  int type;          /* SA_OP_PUT, SA_OP_DELETE (a tombstone), SA_WAL_BATCH, SA_WAL_SYNC or
                        SA_WAL_PUT_TYPED */
  uint32_t attempts; /* times handed to the transport */
  uint64_t at_ms;    /* queued: not before; in flight: deadline; else: when */
} sa_outbox_entry;

/* Copies up to max entries with LSN > after_lsn (oldest first) into out;
 * *n receives the count. */
int sa_client_outbox_list(sa_client *c, uint64_t after_lsn, sa_outbox_entry *out, size_t max,
                          size_t *n, sa_error *err);

/* ---- change feed ------------------------------------------------------- */

/* One change: an operation on one key.  A batch gives one change per key,
 * all with the batch's LSN. */
typedef struct sa_change {
  uint64_t lsn;
  uint64_t hlc;                    /* the change's HLC (its origin's): unix ms = hlc >> 16 */
  int op;                          /* SA_OP_PUT or SA_OP_DELETE */
  bool batch;                      /* part of a batch */
  char *key;                       /* NUL-terminated */
  uint64_t version;                /* the key's version after a put; 0 after a delete */
  char *data;                      /* the put's value (NUL-terminated), when values were asked */
  size_t len;                      /* value length of a put */
  char origin[SA_NODE_ID_MAX + 1]; /* node id where the change was written */
  char *content_type;              /* a put's content type, NULL when none */
} sa_change;

typedef struct sa_changes {
  sa_change *items;
  size_t count;
  uint64_t next_since; /* pass as `since` for the following page */
  uint64_t last_lsn;   /* the node's last LSN when read */
  bool more;           /* more changes after next_since exist now */
} sa_changes;

/* The changes with LSN > since, in LSN order: at most `limit` (1..10000)
 * operations (a batch is never split, so a page may hold a few more).
 * The feed keeps the latest change of every key; older changes of a key
 * may have been compacted away.  SA_EGONE when changes after `since` may be
 * missing (err names the oldest `since` still served): reload the state
 * (sa_client_list) and follow from the node's last LSN.  The caller frees
 * *out with sa_changes_free. */
int sa_client_changes(sa_client *c, uint64_t since, size_t limit, bool with_values, sa_changes *out,
                      sa_error *err);
void sa_changes_free(sa_changes *ch);

/* The lowest `since` sa_client_changes still serves. */
uint64_t sa_client_changes_floor(sa_client *c);

/* Waits until the node's last LSN is above after_lsn, at most timeout_ms.
 * Returns 0 with *last_lsn set (unchanged when the time ran out), or
 * SA_ECLOSED when the client is closing. */
int sa_client_wait(sa_client *c, uint64_t after_lsn, uint32_t timeout_ms, uint64_t *last_lsn,
                   sa_error *err);

/* ---- sync between nodes -------------------------------------------------- */

/* Every applied change of a key has a pair (hlc, origin): its HLC and the
 * id of the node where it was written.  The greater pair wins on every
 * node: HLC first, then origin bytewise (memcmp over the shorter length,
 * then the shorter first).  A delete is a tombstone with its own pair.
 * Versions stay local (+1 per applied change on this node); If-Match and
 * If-None-Match check the local version only.  The core moves nothing by
 * itself: a transport (the server's HTTP puller, or an embedder's) reads a
 * peer's feed with sa_client_sync_read and applies it here with
 * sa_client_sync_apply. */

/* One change as moved between nodes. */
typedef struct sa_sync_item {
  uint64_t seq; /* the SENDER's local LSN of this change (a position in its feed) */
  int op;       /* SA_OP_PUT or SA_OP_DELETE (a tombstone) */
  char *key;    /* NUL-terminated (keys hold no NUL) */
  char *data;   /* put: value bytes (binary, may hold NULs), +1 NUL not counted */
  size_t len;
  uint64_t hlc;
  char origin[SA_NODE_ID_MAX + 1];
  uint64_t origin_lsn; /* the LSN of the write on its origin node */
  char *content_type;  /* put: the value's content type (NUL-terminated), NULL when none */
} sa_sync_item;

typedef struct sa_sync_page {
  sa_sync_item *items;
  size_t count;
  uint64_t next_since; /* pass as since for the next page */
  uint64_t last_lsn;   /* the node's last LSN when read */
  bool more;           /* more may follow next_since now */
  size_t excluded;     /* changes left out as exclude_origin's (0: the page is every reader's) */
} sa_sync_page;

/* Changes with local LSN > since, oldest first, at most limit (1..10000)
 * items (an LSN's changes are never split).  State-based: a key appears
 * once, at the LSN of its current state (live value or tombstone, with the
 * pair that holds it); older changes of that key are skipped.  Items whose
 * origin equals exclude_origin (may be NULL) are left out but next_since
 * still moves past them.  SA_EGONE when since < the floor (changes may be
 * missing): err names the oldest since still served (read a snapshot).
 * Reads what the store holds: a write answered within the last
 * store_commit_ms may show only at the next store commit (wait for it with
 * sa_client_wait(c, its lsn - 1, ...), which returns at commits).  The
 * caller frees *out with sa_sync_page_free. */
int sa_client_sync_read(sa_client *c, uint64_t since, size_t limit, const char *exclude_origin,
                        sa_sync_page *out, sa_error *err);
void sa_sync_page_free(sa_sync_page *p);

/* A consistent snapshot: every live key and every tombstone, from one read
 * transaction, in key order, through fn (items borrowed for the call; seq is
 * the LSN of the key's state; origin_lsn the write's LSN on its origin, 0
 * when unknown -- a key written elsewhere and stored by a build before store
 * format 3; a non-zero return stops the walk and is returned).  *resume
 * receives the LSN the snapshot is at: read the feed from there after
 * applying it. */
int sa_client_sync_snapshot(sa_client *c, int (*fn)(void *arg, const sa_sync_item *it), void *arg,
                            uint64_t *resume, sa_error *err);

/* The same, then, from the same read transaction, dropped_fn (may be NULL)
 * for each key the node holds neither live nor as a tombstone but whose
 * tombstone it dropped by age (tombstone_ttl_s) and still remembers: a
 * delete item with that tombstone's pair (seq and origin_lsn 0).  A node
 * catching up from the snapshot applies those items like the others
 * (sa_client_sync_apply, with the same cursor, before the last chunk
 * moves it): by the rule, each removes that node's own copy of the key
 * when it is older than the delete, and never a later write; the keys not
 * listed are left alone. */
int sa_client_sync_snapshot_ex(sa_client *c, int (*fn)(void *arg, const sa_sync_item *it),
                               int (*dropped_fn)(void *arg, const sa_sync_item *it), void *arg,
                               uint64_t *resume, sa_error *err);

/* The same snapshot as a walk, for a reader that streams it with bounded
 * memory (the server's GET /v1/sync/snapshot): open takes its own read
 * transaction (*resume: the LSN it is at; with_dropped: the dropped-
 * tombstone records follow the items, as in sa_client_sync_snapshot_ex);
 * next gives one item at a time -- 1 with *it (its key, value and content
 * type valid until the next call or the close), *dropped true for a
 * dropped-tombstone record; 0 at the end; an SA_E* code on failure.  The
 * walk's pages are not reused while it is open (the store may grow): close
 * it as soon as it is done, on any thread, and always before
 * sa_client_close.  One thread at a time per walk. */
typedef struct sa_sync_snapshot sa_sync_snapshot;
int sa_client_sync_snapshot_open(sa_client *c, bool with_dropped, sa_sync_snapshot **out,
                                 uint64_t *resume, sa_error *err);
int sa_sync_snapshot_next(sa_sync_snapshot *sn, sa_sync_item *it, bool *dropped, sa_error *err);
void sa_sync_snapshot_close(sa_sync_snapshot *sn);

/* The lowest since that sa_client_sync_read still serves (what its
 * SA_EGONE names): below it a peer reads a snapshot. */
uint64_t sa_client_sync_floor(sa_client *c);

/* The last LSN the store has committed: what a read sees at least.  It
 * only grows (a restore starts a new epoch, sa_client_epoch).  A page read
 * while it stays the same holds the same changes: a server may give one
 * page to every reader that asks for it meanwhile. */
uint64_t sa_client_committed_lsn(sa_client *c);

/* What sa_client_sync_apply did with a batch. */
typedef struct sa_sync_apply_result {
  uint64_t applied; /* items that won and were applied */
  uint64_t skipped; /* equal pair (already held) or lost to the held pair */
  uint64_t stale;   /* items of keys not held, at or below the key's dropped-tombstone record */
  uint64_t lsn;     /* the local LSN of the batch's record (0: none written) */
} sa_sync_apply_result;

/* Applies a batch received from peer_id durably and exactly once.  Every
 * item is validated first (op, key, value size, origin id, HLC not 0, and
 * the drift: an item whose HLC's ms part is more than max_clock_drift_ms
 * ahead of the node's clock refuses the whole batch with SA_EDRIFT); a
 * malformed batch is SA_EINVAL (or SA_EKEY, SA_ETOOBIG) naming the item and
 * the cause, nothing applied.  peer_id equal to this node's own id is
 * SA_EINVAL; items whose origin is this node's id are fine (decided by the
 * rule like any).  Then one WAL record (peer_id, cursor, the items with
 * their pairs and the decision of each), synced with its group, and one
 * store commit that applies the winners AND stores cursor as peer_id's
 * cursor.  Each item is decided by the rule against the key's state; an
 * item for a key held neither live nor as a tombstone is applied unless
 * the key's dropped-tombstone record (sa_client_sync_snapshot_ex) is at
 * or above its pair: then it is stale (an older write of a key deleted
 * since), never because of another key.  Every item first advances the
 * node's clock (so a later local write wins).  n may be 0.  When nothing
 * is applied (every item equal, older or stale, or none) no record is
 * written: the cursor moves at once for sa_client_sync_cursor and is
 * persisted at the next sync tick (a crash before it only makes the
 * puller read those items again), so that two nodes pulling each other
 * with nothing new write nothing; an empty batch (n == 0) does not even
 * wait for the writer.  res (may be NULL). */
int sa_client_sync_apply(sa_client *c, const char *peer_id, const sa_sync_item *items, size_t n,
                         uint64_t cursor, sa_sync_apply_result *res, sa_error *err);

/* The cursor stored for peer_id (0 when none): where to resume pulling. */
int sa_client_sync_cursor(sa_client *c, const char *peer_id, uint64_t *cursor, sa_error *err);

/* The epoch of peer_id's store that its stored cursor belongs to (0 when
 * none is known).  A node restored from a backup (or recreated) starts a new
 * epoch (sa_client_epoch) and numbers its changes again from the backup's
 * LSN: a cursor of the old epoch would skip its new writes. */
int sa_client_sync_peer_epoch(sa_client *c, const char *peer_id, uint64_t *epoch, sa_error *err);

/* Stores epoch as peer_id's epoch; with reset_cursor its cursor goes back
 * to 0 in the same store transaction (the peer answered that the cursor is
 * from another epoch: pull its feed, or its snapshot, again).  A crash
 * before it only means the peer answers so again. */
int sa_client_sync_peer_set_epoch(sa_client *c, const char *peer_id, uint64_t epoch,
                                  bool reset_cursor, sa_error *err);

/* This node's own epoch (sa_client_epoch) as noted for peer_id when its
 * puller last caught up with that peer's feed (0: never noted).  Another
 * epoch than the node's means this node was restored from a backup since:
 * its writes made after the backup are gone here, but a peer may hold them,
 * and a peer's feed leaves out the puller's own writes.  The puller then
 * asks for them too (own=1) until it caught up, and notes the new epoch. */
int sa_client_sync_peer_self_epoch(sa_client *c, const char *peer_id, uint64_t *epoch,
                                   sa_error *err);
int sa_client_sync_peer_set_self_epoch(sa_client *c, const char *peer_id, uint64_t epoch,
                                       sa_error *err);

/* A puller (peer_id) reports it has durably applied this node's feed
 * through seq.  With every configured peer past an outbox entry, the entry
 * is acknowledged; tombstones every configured peer is past are dropped.
 * Kept in memory at once, persisted lazily (at the next sync tick): losing
 * the latest value in a crash only delays acknowledgements and GC.  A
 * lower seq than the one known is ignored; one past the node's last LSN
 * (no position it served) is SA_EINVAL and changes nothing. */
int sa_client_sync_peer_ack(sa_client *c, const char *peer_id, uint64_t seq, sa_error *err);

/* The peer ids that count as "configured" (replaces the list; n may be 0:
 * no peers, the outbox then behaves as without sync).  Copied. */
int sa_client_sync_set_peers(sa_client *c, const char *const *peer_ids, size_t n, sa_error *err);

/* n configured peers whose node ids are not known yet (a peer URL that has
 * not answered since this node started).  While n > 0 they count as peers
 * at position 0: no outbox entry is acknowledged and no tombstone dropped
 * because the known peers are past it (tombstone_ttl_s still applies), so a
 * peer that is down at a restart is never treated as having seen a delete. */
int sa_client_sync_set_unknown_peers(sa_client *c, size_t n);

/* by_ttl_only: tombstones are dropped by age (tombstone_ttl_s) only, never
 * because the configured peers acknowledged them; the outbox still goes by
 * the acknowledgements.  For a transport through a hub (NATS JetStream): a
 * hub acknowledging a delete does not mean every node has seen it, and an
 * older put of the key from another origin may still come through the hub
 * after it, so the tombstone must stay to beat it. */
int sa_client_sync_keep_tombstones(sa_client *c, bool by_ttl_only);

/* The acknowledged position of peer_id (0 when unknown). */
uint64_t sa_client_sync_peer_acked(sa_client *c, const char *peer_id);

/* A hash over every live key's (key, value, hlc, origin, and its content
 * type when it has one) in key order,
 * equal on nodes holding the same state: two FNV-1a-64 over the same
 * length-prefixed fields with different offset bases, written as 32
 * lower-case hex digits (NUL-terminated in hex).  *keys (may be NULL): the
 * number of live keys hashed. */
int sa_client_sync_digest(sa_client *c, char hex[65], uint64_t *keys, sa_error *err);

/* Sync counters since open. */
typedef struct sa_sync_counters {
  uint64_t batches; /* sa_client_sync_apply calls that wrote a record */
  uint64_t applied, skipped, stale;
  uint64_t refused_drift;   /* batches refused with SA_EDRIFT */
  uint64_t refused_invalid; /* batches refused as malformed */
  uint64_t tombs;           /* tombstones held now */
  uint64_t tombs_dropped;   /* dropped by GC since open */
  uint64_t dropped_records; /* dropped-tombstone records held now (one per key deleted
                               whose tombstone went by age, for 2 x tombstone_ttl_s) */
  uint64_t dropped_expired; /* records that expired since open */
  uint64_t tombs_bytes;     /* the LMDB pages of the tombstones */
  uint64_t dropped_bytes;   /* ... and of the dropped-tombstone records */
} sa_sync_counters;
int sa_client_sync_counters(sa_client *c, sa_sync_counters *out, sa_error *err);

/* ---- sync interfaces ----------------------------------------------------- */

/* An operation handed to a transport.  Pointers borrowed for the call. */
typedef struct sa_sync_op {
  const char *node_id; /* with lsn: the operation id, unique across restarts */
  uint64_t lsn;
  uint64_t hlc;
  int type;            /* SA_OP_PUT, SA_OP_DELETE, SA_WAL_BATCH, SA_WAL_SYNC or
                        SA_WAL_PUT_TYPED */
  uint32_t attempt;    /* 1 for the first hand-over */
  const void *payload; /* the operation in the WAL payload encoding (core/wal.c) */
  uint32_t len;
} sa_sync_op;

/* A transport moves operations to peers.  Called from the tick thread (or
 * the thread calling sa_client_sync_tick), never concurrently. */
struct sa_transport {
  const char *kind; /* shown in the sync state */
  bool stub;        /* true: moves nothing, and says so */
  void *ctx;
  /* Hands n operations over; sets acked[i] for each one a peer has durably
   * acknowledged.  Returns 0, or an SA_E code (then none counts as acked).
   * Operations not acknowledged are retried with backoff. */
  int (*send)(void *ctx, const sa_sync_op *ops, size_t n, bool *acked);
  bool (*running)(void *ctx); /* may be NULL: running */
  void (*close)(void *ctx);   /* may be NULL; at sa_client_close */
};

/* Discovery finds peers. */
struct sa_discovery {
  const char *kind;
  bool stub;
  void *ctx;
  uint32_t (*peers)(void *ctx); /* peers known now */
  void (*close)(void *ctx);     /* may be NULL */
};

/* What the last open found in the WAL. */
typedef struct sa_recovery {
  uint64_t records_scanned;  /* whole, valid records in the WAL */
  uint64_t records_replayed; /* of those, applied to the store at open */
  uint64_t torn_bytes;       /* bytes cut off a torn tail (0 if none) */
  char torn_path[512];       /* side file holding the cut bytes, "" if none */
  bool store_rolled_back;    /* the store went back to its last sync point (a
                                reboot after an unclean stop) */
} sa_recovery;

typedef struct sa_status {
  char node_id[SA_NODE_ID_MAX + 1];
  bool persistent; /* WAL enabled */
  bool durable;    /* auto_flush on: acks are fdatasync'ed */
  bool read_only;  /* a failed fdatasync turned the node read-only */
  char read_only_reason[SA_ERROR_MESSAGE_MAX];
  const char *wal_path;      /* borrowed, valid until close; "" when memory-only */
  const char *store_path;    /* borrowed, valid until close */
  uint64_t wal_bytes;        /* WAL logical size: end of its last record (the
                                file may hold up to one chunk of zeros more) */
  uint64_t last_lsn;         /* last LSN written */
  uint64_t applied_lsn;      /* last LSN applied to the store */
  uint64_t synced_lsn;       /* last LSN the store holds durably (its last sync
                                point; the WAL covers the rest) */
  uint64_t store_syncs;      /* store sync points since open */
  uint64_t store_writebacks; /* write-back kicks since open (store_writeback_ms) */
  uint64_t size;             /* number of keys */
  uint64_t checkpoints;      /* checkpoints since open */
  sa_recovery recovery;      /* what open found */
} sa_status;

int sa_client_status(sa_client *c, sa_status *out, sa_error *err);

/* Write-path statistics since open, for metrics.  Histograms are
 * cumulative-free: bucket i counts observations <= the i-th bound (and
 * above the previous one); the last bucket is everything above. */
#define SA_STATS_SYNC_BUCKETS 12  /* fdatasync seconds */
#define SA_STATS_GROUP_BUCKETS 10 /* operations per group commit */
extern const double sa_stats_sync_bounds[SA_STATS_SYNC_BUCKETS - 1];
extern const double sa_stats_group_bounds[SA_STATS_GROUP_BUCKETS - 1];

typedef struct sa_stats {
  uint64_t groups;    /* group commits (one WAL write and fdatasync each) */
  uint64_t group_ops; /* operations in them (sum) */
  uint64_t group_hist[SA_STATS_GROUP_BUCKETS];
  uint64_t syncs;      /* WAL fdatasyncs */
  double sync_seconds; /* their total time */
  uint64_t sync_hist[SA_STATS_SYNC_BUCKETS];
  uint64_t wal_bytes_written; /* bytes appended to the WAL */
  uint64_t write_errors;      /* writes failed by I/O or a full disk */
  uint64_t store_commits;     /* store transactions that applied groups (several per txn) */
} sa_stats;

/* Copies the statistics (a consistent snapshot is not promised: each
 * counter is read atomically on its own). */
int sa_client_stats(sa_client *c, sa_stats *out, sa_error *err);

/* Makes every acknowledged write durable now (fdatasync of the WAL).  Useful
 * with auto_flush=false.  SA_EREADONLY after a failed fdatasync. */
int sa_client_flush(sa_client *c, sa_error *err);

/* Syncs the store and drops the WAL records it now holds durably. */
int sa_client_checkpoint(sa_client *c, sa_error *err);

/* ---- offline WAL tools (the node must not be running on the file) ------ */

enum {
  SA_WAL_CLEAN = 0,   /* every byte belongs to a valid record */
  SA_WAL_TORN = 1,    /* valid records, then a torn tail (cut at next open) */
  SA_WAL_CORRUPT = 2, /* a bad record followed by valid ones */
};

typedef struct sa_wal_report {
  char node_id[SA_NODE_ID_MAX + 1]; /* from the header */
  uint32_t format_version;
  uint64_t start_lsn; /* records in this file have LSN > start_lsn */
  uint64_t file_bytes;
  uint64_t records;   /* valid records before the first bad byte */
  uint64_t first_lsn; /* 0 if no records */
  uint64_t last_lsn;
  int state;                 /* SA_WAL_CLEAN / TORN / CORRUPT */
  uint64_t bad_offset;       /* where the first bad record starts (not CLEAN) */
  uint64_t next_good_offset; /* CORRUPT: where a later valid record starts */
  char reason[256];          /* why the record at bad_offset is invalid */
  char backup_path[512];     /* repair: copy of the file before truncation */
  /* End of the last valid record (the WAL's logical size).  When CLEAN,
   * the bytes from here to file_bytes are zeros: preallocated free space. */
  uint64_t data_bytes;
  /* Not CLEAN: bytes from bad_offset through the last non-zero byte of the
   * file (what a torn-tail cut keeps in its side file). */
  uint64_t rest_bytes;
} sa_wal_report;

/* One record, as sa_wal_scan shows it.  Pointers borrowed for the call. */
typedef struct sa_wal_record {
  uint64_t offset; /* file offset of the record header */
  uint64_t lsn;
  uint64_t hlc;
  int type;        /* SA_OP_PUT, SA_OP_DELETE, SA_WAL_BATCH, SA_WAL_SYNC or
                        SA_WAL_PUT_TYPED */
  uint32_t length; /* payload bytes */
  uint32_t count;  /* operations in the record (1 unless a batch) */
  const char *key; /* first key (not NUL-terminated), key_len bytes */
  uint32_t key_len;
  uint32_t value_len; /* first value's length (puts) */
} sa_wal_record;

/* SA_WAL_SYNC: a batch applied from a peer (sa_client_sync_apply); its
 * payload is the sync record's (core/wal.c), its count every item, applied
 * or not.  SA_WAL_PUT_TYPED: a put with a content type (sa_client_put_opts;
 * its payload holds the type too). */
enum { SA_WAL_BATCH = 3, SA_WAL_SYNC = 4, SA_WAL_PUT_TYPED = 5 };

typedef int (*sa_wal_visit_fn)(const sa_wal_record *rec, void *ctx);

/* Reads the WAL at path without modifying it and reports its state.  Calls
 * visit (may be NULL) for each valid record; a non-zero return stops the
 * scan, and rep then describes only the records visited.  Returns 0 when
 * the file could be read (whatever its state: see rep->state), or an error
 * when it cannot be opened or has no valid header. */
int sa_wal_scan(const char *path, sa_wal_visit_fn visit, void *ctx, sa_wal_report *rep,
                sa_error *err);

/* Explicit repair: copies the file to rep->backup_path, then truncates the
 * WAL at the first bad record and syncs it.  A clean WAL is left untouched
 * (no copy).  Takes the WAL lock: fails with SA_ELOCKED if a node runs. */
int sa_wal_repair(const char *path, sa_wal_report *rep, sa_error *err);

/* ---- backup and restore (core/node_backup.c, core/store_backup.c) ------- */

/* A backup file: a header (its manifest), the store as one LMDB file
 * consistent at one transaction (a compacting copy), and a trailer with the
 * data's length and CRC-32C.  The format is described in store_backup.c. */
typedef struct sa_backup_info {
  char node_id[SA_NODE_ID_MAX + 1]; /* the node the store belonged to */
  uint32_t version;                 /* container version */
  uint32_t store_format;            /* the store's format version */
  uint64_t applied_lsn;             /* the copy holds every write up to this LSN */
  uint64_t acked_lsn;  /* the last write acknowledged when the backup began (<= applied_lsn) */
  uint64_t epoch;      /* the source node's epoch */
  uint64_t created_ms; /* wall clock, unix ms */
  uint64_t data_bytes; /* bytes of the LMDB copy */
  uint32_t data_crc;   /* their CRC-32C */
  uint64_t file_bytes; /* header + data + trailer */
} sa_backup_info;

/* Receives the backup's bytes in order; a non-zero return stops the backup
 * (it then fails with SA_EIO, or with the code the sink put in *err). */
typedef int (*sa_backup_sink)(void *ctx, const void *buf, size_t len);

/* Writes one consistent backup of the running node to sink while it keeps
 * serving reads and writes: first the store is made to hold every write
 * acknowledged so far (the read barrier), then the copy is taken from one
 * LMDB snapshot, so it holds every write acknowledged before the call and
 * no torn one.  Restoring needs no WAL.  info (may be NULL) receives the
 * manifest.  Any thread but the node's own; blocks for the copy's length.
 * Backups may run concurrently (each pins its snapshot while it runs). */
int sa_client_backup(sa_client *c, sa_backup_sink sink, void *ctx, sa_backup_info *info,
                     sa_error *err);

/* Backups taken by this node since open. */
typedef struct sa_backup_stats {
  uint64_t total;      /* finished */
  uint64_t failed;     /* stopped by an error or by the sink */
  uint64_t running;    /* now */
  uint64_t bytes;      /* bytes of the finished ones */
  uint64_t last_ms;    /* duration of the last finished one */
  uint64_t last_bytes; /* its size */
  uint64_t last_lsn;   /* its applied LSN */
} sa_backup_stats;
void sa_client_backup_stats(sa_client *c, sa_backup_stats *out);

/* The node's epoch: a random 64-bit id of this incarnation of its store,
 * drawn when the store is created (or first opened by a build that has
 * epochs) and again by a restore.  A feed position is only meaningful with
 * the epoch it was read in. */
uint64_t sa_client_epoch(sa_client *c);

/* Checks a backup file: header, length, the data's CRC-32C, the trailer.
 * SA_ECORRUPT names the cause (truncated, damaged header, data checksum,
 * not a backup), SA_EFORMAT a container or store format this build cannot
 * read.  info (may be NULL) receives the manifest. */
int sa_backup_verify(const char *path, sa_backup_info *info, sa_error *err);

/* Restores a backup into store_path (which must not exist) after checking
 * it like sa_backup_verify: the data goes to "<store_path>.restoring",
 * is checked, given node_id (NULL: keep the backup's) and a new epoch,
 * synced and renamed into place.  No WAL is needed or made: the node that
 * opens the store starts a new WAL after its applied LSN.  *epoch (may be
 * NULL) receives the new epoch. */
int sa_backup_restore(const char *path, const char *store_path, const char *node_id,
                      sa_backup_info *info, uint64_t *epoch, sa_error *err);

#ifdef __cplusplus
}
#endif

#endif /* SOFTADASTRA_H */
