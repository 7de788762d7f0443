/*
 * e2e_util.h -- helpers of the end-to-end tests: start the real `softadastra`
 * executable on 127.0.0.1 with an ephemeral port and a temporary data
 * directory, speak HTTP to it (libcurl, or raw bytes on a socket for what
 * curl cannot send), run CLI commands, and stop the node by its PID.
 *
 * Every wait is bounded (E2E_WAIT_MS); nothing here asserts on timing.
 * Threads: e2e_http and e2e_raw may run from several threads at once (each
 * call has its own curl handle / socket); the node functions may not.
 */
#ifndef SA_E2E_UTIL_H
#define SA_E2E_UTIL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Upper bound on any wait for the node: 20 s, or 120 s when the processes
 * under test run under a slow wrapper (e2e_slow()). */
#define E2E_WAIT_MS (e2e_wait_ms())
int e2e_wait_ms(void);

/* True when SA_TEST_SLOW is set (not "0"): tests/crash/valgrind.sh sets it,
 * every process then runs under memcheck, many times slower.  Tests widen
 * their time bounds then; they never assert on timing either way. */
bool e2e_slow(void);

typedef struct e2e_node {
  pid_t pid;          /* the serve process, 0 when not running */
  int port;           /* bound port */
  char dir[256];      /* temporary directory (data dir is dir/data) */
  char data_dir[300]; /* dir/data */
  char url[64];       /* http://127.0.0.1:port */
  char log[300];      /* stderr of the node */
  char out[300];      /* stdout of the node */
} e2e_node;

/* Creates a fresh temporary directory for a node in n (not started). */
void e2e_node_init(e2e_node *n);

/* Starts `softadastra serve --listen 127.0.0.1:0 --data-dir <dir>/data`
 * plus extra args (NULL-terminated, may be NULL) with extra environment
 * entries "NAME=value" (NULL-terminated, may be NULL).  Waits for the
 * start-up line and parses the port.  Returns 0, or -1 when the process
 * exited or printed nothing in time (then *exit_code holds its exit status
 * when it exited, else -1). */
int e2e_node_start(e2e_node *n, const char *const *args, const char *const *env, int *exit_code);

/* Sends sig to the node and waits for it to exit (bounded; SIGKILL after
 * E2E_WAIT_MS).  Returns the exit status (0..255), 128+signal when killed by
 * a signal, or -1 when it had to be killed after the wait.  When a stop with
 * another signal than SIGKILL fails, the node's log is printed to stderr. */
int e2e_node_stop(e2e_node *n, int sig);

/* Prints the node's stderr log to stderr between marker lines (why names
 * the occasion), so a failed stop shows its cause in the test output. */
void e2e_node_dump_log(const e2e_node *n, const char *why);

/* Removes the temporary directory (rm -rf). */
void e2e_node_cleanup(e2e_node *n);

/* Reads a whole file into a new NUL-terminated buffer (caller frees), or
 * NULL. */
char *e2e_read_file(const char *path, size_t *len);

typedef struct e2e_resp {
  long status;   /* HTTP status, 0 when the exchange failed */
  char *body;    /* NUL-terminated body (caller frees with e2e_resp_free) */
  size_t len;    /* body bytes */
  char *headers; /* raw response headers, NUL-terminated */
} e2e_resp;

/* One HTTP request with libcurl.  headers is NULL-terminated "Name: value"
 * (may be NULL).  body may be NULL.  Returns 0 (resp->status set) or -1 when
 * the connection failed. */
int e2e_http(const e2e_node *n, const char *method, const char *path, const char *const *headers,
             const char *body, size_t body_len, e2e_resp *resp);

/* The value of response header name (case-insensitive) in a new buffer the
 * caller frees, or NULL. */
char *e2e_header(const e2e_resp *r, const char *name);

void e2e_resp_free(e2e_resp *r);

/* Sends len raw bytes to the node, optionally half-closes the write side,
 * and reads the answer until the peer closes or timeout_ms passes.
 * Returns the status code of the first response line, 0 when the node
 * closed without answering, -1 on a socket error.  The answer is copied to
 * out (outlen bytes, NUL-terminated) when out is not NULL. */
int e2e_raw(const e2e_node *n, const char *req, size_t len, bool shut_wr, int timeout_ms, char *out,
            size_t outlen);

/* Like e2e_raw, but sends nparts NUL-terminated pieces with pause_ms
 * between them (a slow client), without half-closing. */
int e2e_raw_parts(const e2e_node *n, const char *const *parts, int nparts, int pause_ms,
                  int timeout_ms, char *out, size_t outlen);

/* Runs `softadastra args...` with SOFTADASTRA_URL set to the node (when n
 * is not NULL) and stdin from stdin_data (may be NULL).  Captures stdout
 * and stderr into new buffers (caller frees).  Returns the exit code, or -1. */
int e2e_cli(const e2e_node *n, const char *const *args, const char *stdin_data, char **out,
            char **err);

/* ---- time, ports ----------------------------------------------------------- */

/* Milliseconds on the monotonic clock. */
long long e2e_now_ms(void);

/* Sleeps ms milliseconds. */
void e2e_nap_ms(int ms);

/* A port free at this moment on 127.0.0.1 for type (SOCK_STREAM or
 * SOCK_DGRAM): bound to port 0, read, closed.  For the tests that must name
 * a port before the process using it starts.  Aborts when the system gives
 * none (a test cannot go on without it). */
int e2e_free_port(int type);

/* ---- requests of the tests ------------------------------------------------- */

/* One request with an optional bearer token (token may be NULL); a POST
 * with a body is sent as application/json.  When out is not NULL, *out is
 * the body parsed as JSON (NULL when it is not JSON).  Returns the HTTP
 * status, or 0 when the exchange failed. */
long e2e_req(const e2e_node *n, const char *method, const char *path, const char *body,
             const char *token, json_t **out);

/* GET /v1/store/<key>?raw=1 (token may be NULL): the status, with the body
 * copied into buf (len bytes, NUL-terminated); 0 when the exchange failed. */
long e2e_get_raw(const e2e_node *n, const char *key, const char *token, char *buf, size_t len);

/* The Content-Type of key's raw GET (a new buffer the caller frees), or NULL
 * when the GET did not answer 200. */
char *e2e_raw_type(const e2e_node *n, const char *key);

/* Polls until key reads value on n (value NULL: until it is 404), for at
 * most ms.  Returns the milliseconds it took, or -1 when the bound passed. */
long long e2e_wait_value(const e2e_node *n, const char *key, const char *value, const char *token,
                         int ms);

/* n's GET /v1/sync/digest: the digest (a new string the caller frees), and
 * its key count into *keys when keys is not NULL; NULL when it failed. */
char *e2e_digest(const e2e_node *n, long long *keys);

/* Polls until the count nodes' digests are all equal, for at most ms.
 * Returns the milliseconds it took, or -1 when the bound passed. */
long long e2e_wait_converged(e2e_node *const *ns, int count, int ms);

/* The value of the first line of n's GET /metrics that is name then a
 * space (token may be NULL), or -1 when there is none. */
long long e2e_metric(const e2e_node *n, const char *name, const char *token);

/* Path of the executable under test and the source tree. */
const char *e2e_bin(void);
const char *e2e_source_dir(void);

#endif /* SA_E2E_UTIL_H */
