/*
 * harness.h -- helpers shared by the crash harness (tests/crash) and the
 * load soak (tests/soak): start the real `softadastra serve` on 127.0.0.1
 * with an ephemeral port, find its URL on the start line, stop it by PID,
 * and speak HTTP to it with libcurl.
 *
 * What it is not: a test framework.  Each program counts its own failures.
 *
 * Every wait is bounded (HS_START_WAIT_MS); nothing here asserts on timing.
 * The server child gets PR_SET_PDEATHSIG(SIGKILL), so it never outlives the
 * harness, even when ctest kills the harness on a timeout.
 *
 * SA_SERVER_WRAPPER (environment): a command put before the server binary,
 * split on spaces, e.g. "valgrind --error-exitcode=99 --leak-check=full".
 * hs_server.env adds NAME=VALUE entries to the node's environment (e.g.
 * LD_PRELOAD for tests/crash/powercut.c).
 *
 * Threads: hs_http may run from several threads at once, each with its own
 * hs_conn.  The server functions belong to one thread.
 */
#ifndef SA_HARNESS_H
#define SA_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define HS_ENV_MAX 11           /* entries of hs_server.env */
#define HS_START_WAIT_MS 120000 /* upper bound on a start (valgrind is slow) */

typedef struct hs_server {
  const char *bin;                 /* the softadastra executable (borrowed) */
  char data_dir[512];              /* --data-dir */
  char out_path[600];              /* stdout of the node (truncated at each start) */
  char err_path[600];              /* stderr of the node (appended) */
  const char *extra[8];            /* extra serve arguments, NULL-terminated (borrowed) */
  const char *env[HS_ENV_MAX + 1]; /* NAME=VALUE added to (or replacing in) the node's environment,
                           NULL-terminated (borrowed); none by default */
  pid_t pid;                       /* 0 when not running */
  char url[64];                    /* http://127.0.0.1:PORT of the running node */
  char start_line[1024];           /* the start line the node printed */
} hs_server;

/* Makes a temporary directory under $TMPDIR (or /tmp) named after tag.
 * Returns 0 and the path in dir (dirlen bytes), or -1. */
int hs_tmpdir(const char *tag, char *dir, size_t dirlen);

/* Removes dir recursively (rm -rf).  Best effort. */
void hs_rmrf(const char *dir);

/* Initialises s for a node whose data directory is dir/data and whose logs
 * are dir/node.out and dir/node.err.  Does not start anything. */
void hs_server_init(hs_server *s, const char *bin, const char *dir);

/* Starts the node and waits for its start line.  Returns 0 (s->url and
 * s->start_line set), or -1 when the process exited first (its wait status
 * in *status, when status is not NULL; -1 there means it did not exit but
 * printed nothing in time, and it has been killed). */
int hs_server_start(hs_server *s, int *status);

/* Starts the node without waiting for anything.  Returns 0 or -1. */
int hs_server_spawn(hs_server *s);

/* Sends sig and waits (bounded; SIGKILL after HS_START_WAIT_MS).  Returns
 * the wait status, or -1 when there was no process. */
int hs_server_stop(hs_server *s, int sig);

/* Describes a wait status ("exit 0", "signal 9") into buf. */
const char *hs_status_str(int status, char *buf, size_t len);

/* Prints the node's stderr log (s->err_path) to stdout between marker
 * lines, at most its last max_bytes bytes, so that a failed stop or start
 * shows its cause (a sanitizer report, a drain timeout) in the test output
 * even after the temporary directory is gone.  why names the occasion. */
void hs_dump_log(const hs_server *s, const char *why, size_t max_bytes);

/* Kills the running node (if any) from an atexit handler or a signal. */
void hs_kill_all(void);

/* Resident set size of pid in KiB from /proc/PID/status, or -1. */
long hs_rss_kib(pid_t pid);

/* Monotonic time in seconds. */
double hs_now(void);

/* ---- HTTP ---------------------------------------------------------------- */

typedef struct hs_conn hs_conn;

/* A keep-alive connection (one libcurl easy handle).  NULL when out of
 * memory.  Free with hs_conn_free. */
hs_conn *hs_conn_new(void);
void hs_conn_free(hs_conn *c);

typedef struct hs_resp {
  long status; /* HTTP status, 0 when the exchange failed (connection) */
  char *body;  /* NUL-terminated, owned by the connection: valid until its next request */
  size_t len;
  char error[256]; /* curl's message when status is 0 */
} hs_resp;

/* One request: method, base URL + path, optional body and content type.
 * Returns 0 (r->status set) or -1 when the exchange failed (r->status 0).
 * timeout_ms bounds the whole exchange. */
int hs_http(hs_conn *c, const char *method, const char *base, const char *path, const char *body,
            size_t body_len, const char *content_type, long timeout_ms, hs_resp *r);

/* Percent-encodes s (everything but unreserved characters and '/') into a
 * new buffer the caller frees. */
char *hs_pct_encode(const char *s);

#endif /* SA_HARNESS_H */
