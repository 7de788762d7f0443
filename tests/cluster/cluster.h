/*
 * cluster.h -- the harness of the cluster tests: N real `softadastra serve`
 * nodes on 127.0.0.1 wired to each other through proxies of the test
 * (proxy.h), writers loading every node over HTTP, kill -9 and restart of
 * nodes, and the convergence check of issue 22.
 *
 * Wiring: every directed link "i pulls from j" is a proxy that forwards to
 * node j's port; node i gets `--peer http://127.0.0.1:<that proxy's port>`.
 * The proxies start first (their ports are known before any node starts);
 * each node listens on 127.0.0.1:0 the first time, its port is read from
 * its start line and set as the target of the proxies toward it.  A
 * restart asks for the same port again, and falls back to a new one (then
 * the proxies are retargeted) when it is taken.  Cutting the link i-j cuts
 * one or both directed proxies.
 *
 * What it is not: a model of the store.  The check knows only what the
 * node answered: acknowledged writes with their (hlc, origin), and the
 * final GET of each key on each node (plus tombstones from
 * /v1/sync/snapshot when the node serves it).
 *
 * Invariants: every wait is bounded (cl_wait_ms()); every node runs with
 * PR_SET_PDEATHSIG(SIGKILL) and is stopped by its PID; the temporary
 * directory is removed by cl_destroy unless SA_CLUSTER_KEEP is set.
 *
 * Threads: the cluster functions belong to one thread (the test's);
 * writers run in threads of their own (cl_writers_start) and share nothing
 * with it until cl_writers_stop returns.
 */
#ifndef SA_CLUSTER_H
#define SA_CLUSTER_H

#include "proxy.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define CL_MAX_NODES 8
#define CL_MAX_LINKS (CL_MAX_NODES * (CL_MAX_NODES - 1))
#define CL_ID_MAX 64

/* Upper bound on any single wait for a node: 20 s, 120 s under
 * SA_TEST_SLOW (valgrind). */
int cl_wait_ms(void);
bool cl_slow(void);
double cl_now(void);
void cl_sleep_ms(long ms);

typedef enum cl_topology { CL_MESH, CL_LINE, CL_NONE } cl_topology;

typedef struct cl_node {
  char id[CL_ID_MAX + 1]; /* --node-id */
  char dir[600];          /* its directory (data dir dir/data, logs dir/node.out, dir/node.err) */
  pid_t pid;              /* 0 when down */
  int port;               /* the port it listens on (kept across restarts when possible) */
  char url[64];           /* http://127.0.0.1:port */
  int starts, kills;
} cl_node;

typedef struct cl_link {
  int from, to; /* from pulls from to (from's --peer is this proxy) */
  proxy *px;
} cl_link;

typedef struct cluster {
  const char *bin; /* the softadastra executable (borrowed) */
  char base[512];  /* temporary directory of the run */
  int n;
  cl_node nodes[CL_MAX_NODES];
  cl_link links[CL_MAX_LINKS];
  int nlinks;
  bool sync;             /* pass --transport http and the --peer flags */
  const char *extra[16]; /* more serve arguments for every node, NULL-terminated */
  const char *extra_node[CL_MAX_NODES][8]; /* more serve arguments per node, NULL-terminated */
  _Atomic int wport[CL_MAX_NODES];         /* node ports as the writer threads read them */
  int cuts;                                /* cut commands given */
} cluster;

/* Makes the temporary directory, the node ids (prefix + index, e.g. "n0")
 * and one proxy per directed link of the topology (CL_NONE: none).  With
 * sync, each node is started with --transport http and a --peer per link
 * it pulls on.  Starts no node.  Returns 0 or -1 (message on stderr). */
int cl_init(cluster *c, const char *bin, int n, cl_topology topo, bool sync, const char *prefix);

/* Starts node i (first start: port 0; later: its previous port, or a new
 * one when that is taken) and waits for its start line; retargets the
 * proxies toward it.  Returns 0, or -1 when it did not start (its stderr
 * is printed). */
int cl_start(cluster *c, int i);

/* Sends sig to node i and waits for it to end (bounded).  Returns the
 * wait status, or -1 when it was not running. */
int cl_stop(cluster *c, int i, int sig);

/* Stops every node (SIGTERM, then SIGKILL after the wait), every proxy,
 * and removes the directory unless keep (or SA_CLUSTER_KEEP) is set.
 * Returns how many nodes did not exit 0 at SIGTERM (each reported with
 * its log). */
int cl_destroy(cluster *c, bool keep);

/* The link index of "from pulls from to", or -1 when not in the topology. */
int cl_link_of(const cluster *c, int from, int to);

/* Prints the last max_bytes of node i's stderr (why names the occasion). */
void cl_dump_log(const cluster *c, int i, const char *why, size_t max_bytes);

/* ---- HTTP ------------------------------------------------------------------ */

typedef struct cl_http cl_http; /* one keep-alive libcurl handle */
cl_http *cl_http_new(void);
void cl_http_free(cl_http *h);

/* One request to base + path.  Returns the HTTP status, -1 when the
 * connection was refused (nothing sent), or 0 when the exchange failed
 * otherwise (the request may have been received).  The body (NUL-terminated) stays valid until the
 * next request on h (*body may be NULL). */
long cl_http_do(cl_http *h, const char *method, const char *base, const char *path,
                const char *body, size_t len, const char *ctype, long timeout_ms, const char **out,
                size_t *out_len);

/* ---- the state of a key ------------------------------------------------------ */

typedef struct cl_pair {
  uint64_t hlc;
  char origin[CL_ID_MAX + 1];
} cl_pair;

/* The conflict rule's order: hlc, then origin bytewise (memcmp over the
 * shorter length, then the shorter first).  <0, 0, >0. */
int cl_pair_cmp(const cl_pair *a, const cl_pair *b);

typedef struct cl_state {
  int status;      /* 200 live, 404 absent (deleted or never written), else the failure */
  cl_pair pair;    /* when live */
  char value[128]; /* when live (the tests' values are short text) */
} cl_state;

/* GET /v1/store/<key> on base: fills st.  Returns 0 when the answer was
 * 200 (with hlc and origin) or 404, -1 otherwise (st->status says). */
int cl_get_state(cl_http *h, const char *base, const char *key, cl_state *st);

/* GET /v1/sync/digest: fills hex (65 bytes) and keys.  Returns the HTTP
 * status (200 on success) or 0. */
long cl_get_digest(cl_http *h, const char *base, char hex[65], uint64_t *keys);

/* Polls the digest of every running node until all are equal (checked
 * twice in a row 50 ms apart), at most timeout_ms counted from since (a
 * cl_now() time, e.g. the heal; 0: now).  Returns 0 and the time from
 * since to the first of the two equal rounds in *ms, or -1 (*why says what
 * differed or failed). */
int cl_wait_converged(cluster *c, double since, long timeout_ms, double *ms, char *why,
                      size_t why_len);

/* ---- writers ------------------------------------------------------------------ */

typedef struct cl_write {
  int node;       /* the node the writer spoke to */
  int key;        /* index in the key space */
  int status;     /* the HTTP status of the answer, 0 when the exchange failed */
  bool del;       /* DELETE (else PUT) */
  bool acked;     /* 2xx with hlc and origin */
  cl_pair pair;   /* from the answer, when acked */
  char value[96]; /* the PUT's value: "<node id>.<writer>.<seq>" */
} cl_write;

typedef struct cl_writers cl_writers;

/* Starts per_node writer threads on every node: each loops PUT (about 70%)
 * and DELETE over nkeys keys "<prefix><NN>" with pauses of 0..pause_ms ms,
 * until cl_writers_stop.  Failed exchanges (node down) are recorded as not
 * acknowledged and retried after a short pause. */
cl_writers *cl_writers_start(cluster *c, int per_node, int nkeys, const char *key_prefix,
                             int pause_ms, uint64_t seed);

/* Stops and joins the writers; returns every write attempted (the caller
 * frees *out) and their number in *n. */
void cl_writers_stop(cl_writers *w, cl_write **out, size_t *n);

/* ---- the convergence check ---------------------------------------------------- */

typedef struct cl_check_result {
  size_t acked_checked;      /* acknowledged writes checked against a final state */
  size_t unacked;            /* writes whose outcome is unknown (not checked) */
  size_t violations;         /* reported on stdout, each with the key, the write and the state */
  size_t via_tombstone;      /* deletes vouched for by a tombstone from /v1/sync/snapshot */
  size_t via_unacked_delete; /* a 404 over a put explained only by an unacknowledged delete */
} cl_check_result;

/* Reads the final state of every key on every running node and checks:
 * every node holds the same state for every key; a live value's origin is
 * the node its value was written on (relay never re-stamps); for every
 * acknowledged write, the final state is that write or one with a larger
 * (hlc, origin) (a 404 over an acknowledged put needs a delete with a
 * larger pair: a tombstone in the node's snapshot, an acknowledged delete,
 * or, counted apart, an unacknowledged delete of that key).  Prints each
 * violation (tag names the run, e.g. the seed).  Returns violations. */
size_t cl_check(cluster *c, const cl_write *w, size_t n, int nkeys, const char *key_prefix,
                const char *tag, cl_check_result *res);

/* The judging half of cl_check, on states already read: st holds m nodes'
 * states (m * nkeys, node-major; ids[i] names node i), tomb/has the
 * tombstones of node 0 (has may be NULL), w the writes (writer_ids[w.node]
 * names their node).  Returns the violations (each printed). */
size_t cl_judge(const cl_state *st, int m, const char *const *ids, const cl_pair *tomb,
                const bool *has, const cl_write *w, size_t n, const char *const *writer_ids,
                int nkeys, const char *prefix, const char *tag, cl_check_result *res);

#endif /* SA_CLUSTER_H */
