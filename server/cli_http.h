/*
 * cli_http.h -- the CLI's HTTP client: one libcurl setup (URL joining,
 * bearer token, timeouts, no signals, the path sent as is) shared by every
 * client command and by `watch`, plus a growing body buffer and
 * percent-encoding.
 *
 * What it is not: it does not interpret answers (cli_out.h maps them to
 * messages and exit codes) and parses no JSON.
 *
 * Invariants: a base URL may end in slashes (they are dropped before the
 * path is appended); a path starts with '/'; the token, when set, travels
 * only as "Authorization: Bearer".
 *
 * Threads: the CLI's single thread; curl_global_init has been called
 * (cli_main and cli_watch do it).
 */
#ifndef SA_CLI_HTTP_H
#define SA_CLI_HTTP_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>

/* A body received (or read from stdin): data is NUL-terminated after len
 * bytes when not NULL; the owner frees data. */
typedef struct cli_buf {
  char *data;
  size_t len;
} cli_buf;

/* A curl handle set up for one request, and its header list. */
typedef struct cli_conn {
  CURL *curl;
  struct curl_slist *headers;
} cli_conn;

/* libcurl write callback: appends to the cli_buf in ud.  Returns n, or 0
 * when out of memory (libcurl then fails the transfer). */
size_t cli_buf_write(char *ptr, size_t size, size_t nmemb, void *ud);

/* Length of base without its trailing slashes. */
int cli_url_len(const char *base);

/* Prepares c for a request to base + path (path with its query) with the
 * token (NULL or "" for none), a 5 s connect timeout, no signals and the
 * path sent as is.  Returns 0, or -1 (out of memory; c is then clean).
 * Add headers with cli_conn_header, set callbacks, perform, then
 * cli_conn_close. */
int cli_conn_open(cli_conn *c, const char *base, const char *token, const char *path);

/* Appends one "Name: value" header line; returns 0 or -1. */
int cli_conn_header(cli_conn *c, const char *line);

/* Installs the header list on the handle (call once, after the last
 * cli_conn_header and before curl_easy_perform). */
void cli_conn_ready(cli_conn *c);

/* Frees the handle and the header list.  Safe on a zeroed cli_conn. */
void cli_conn_close(cli_conn *c);

/* One exchange with the node at base: method and path (with its query),
 * an optional body of body_len bytes sent with content_type (NULL: no
 * Content-Type at all, not libcurl's form type), an optional
 * extra header line.  Returns 0 with *status and *out set (the caller frees
 * out->data), or CLI_FAIL after printing one line naming the node's URL. */
int cli_request(const char *base, const char *token, const char *method, const char *path,
                const char *body, size_t body_len, const char *content_type,
                const char *extra_header, long *status, cli_buf *out);

/* What went wrong with a transfer that ended in rc, in the node's terms
 * ("connection refused", "the node closed the connection", "timed out"),
 * into buf.  Returns buf. */
const char *cli_http_why(CURL *c, CURLcode rc, char *buf, size_t len);

/* True when rc cannot get better by retrying (a malformed URL, an
 * unsupported scheme). */
bool cli_http_fatal(CURLcode rc);

/* Percent-encodes s (keeps unreserved characters, and '/' when keep_slash).
 * Returns a new string or NULL. */
char *cli_path_escape(const char *s, bool keep_slash);

#endif /* SA_CLI_HTTP_H */
