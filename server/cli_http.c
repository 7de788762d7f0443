/*
 * cli_http.c -- the CLI's HTTP client (see cli_http.h).
 *
 * What it is: the libcurl handle setup shared by `watch` and by
 * cli_request, the one exchange every other command makes.  What it is not:
 * answer handling (status codes, JSON), which is the caller's.
 *
 * Threads: the CLI's single thread.
 */
#define _GNU_SOURCE /* asprintf */
#include "cli_http.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_out.h"
#include "softadastra.h"

size_t cli_buf_write(char *ptr, size_t size, size_t nmemb, void *ud) {
  cli_buf *b = ud;
  size_t n = size * nmemb;
  char *nd = realloc(b->data, b->len + n + 1);
  if (!nd) return 0;
  memcpy(nd + b->len, ptr, n);
  b->data = nd;
  b->len += n;
  b->data[b->len] = '\0';
  return n;
}

int cli_url_len(const char *base) {
  size_t ul = strlen(base);
  while (ul > 0 && base[ul - 1] == '/')
    ul--;
  return (int)ul;
}

int cli_conn_open(cli_conn *c, const char *base, const char *token, const char *path) {
  c->curl = curl_easy_init();
  c->headers = NULL;
  char *url = NULL;
  if (!c->curl || asprintf(&url, "%.*s%s", cli_url_len(base), base, path) < 0) {
    cli_conn_close(c);
    return -1;
  }
  curl_easy_setopt(c->curl, CURLOPT_URL, url); /* libcurl copies it */
  free(url);
  if (token && *token) {
    char *auth = NULL;
    if (asprintf(&auth, "Authorization: Bearer %s", token) < 0) {
      cli_conn_close(c);
      return -1;
    }
    int rc = cli_conn_header(c, auth);
    free(auth);
    if (rc != 0) {
      cli_conn_close(c);
      return -1;
    }
  }
  curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
  curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c->curl, CURLOPT_PATH_AS_IS, 1L);
  return 0;
}

int cli_conn_header(cli_conn *c, const char *line) {
  struct curl_slist *h = curl_slist_append(c->headers, line);
  if (!h) return -1;
  c->headers = h;
  return 0;
}

void cli_conn_ready(cli_conn *c) {
  curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, c->headers);
}

void cli_conn_close(cli_conn *c) {
  if (c->curl) curl_easy_cleanup(c->curl);
  curl_slist_free_all(c->headers);
  c->curl = NULL;
  c->headers = NULL;
}

const char *cli_http_why(CURL *c, CURLcode rc, char *buf, size_t len) {
  long os = 0;
  curl_easy_getinfo(c, CURLINFO_OS_ERRNO, &os);
  switch (rc) {
  case CURLE_COULDNT_CONNECT:
    if (os == ECONNREFUSED)
      snprintf(buf, len, "connection refused");
    else if (os)
      snprintf(buf, len, "cannot connect (%s)", strerror((int)os));
    else
      snprintf(buf, len, "cannot connect");
    break;
  case CURLE_COULDNT_RESOLVE_HOST:
    snprintf(buf, len, "unknown host");
    break;
  case CURLE_OPERATION_TIMEDOUT:
    snprintf(buf, len, "no answer in time");
    break;
  case CURLE_PARTIAL_FILE:
  case CURLE_RECV_ERROR:
  case CURLE_GOT_NOTHING:
  case CURLE_SEND_ERROR:
    snprintf(buf, len, "the node closed the connection");
    break;
  default:
    snprintf(buf, len, "%s", curl_easy_strerror(rc));
    break;
  }
  return buf;
}

bool cli_http_fatal(CURLcode rc) {
  return rc == CURLE_URL_MALFORMAT || rc == CURLE_UNSUPPORTED_PROTOCOL;
}

char *cli_path_escape(const char *s, bool keep_slash) {
  static const char hex[] = "0123456789ABCDEF";
  size_t n = strlen(s);
  char *o = malloc(3 * n + 1);
  if (!o) return NULL;
  size_t k = 0;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    unsigned char c = *p;
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '.' || c == '_' || c == '~' || (keep_slash && c == '/')) {
      o[k++] = (char)c;
    } else {
      o[k++] = '%';
      o[k++] = hex[c >> 4];
      o[k++] = hex[c & 15];
    }
  }
  o[k] = '\0';
  return o;
}

int cli_request(const char *base, const char *token, const char *method, const char *path,
                const char *body, size_t body_len, const char *content_type,
                const char *extra_header, long *status, cli_buf *out) {
  out->data = NULL;
  out->len = 0;
  cli_conn c;
  if (cli_conn_open(&c, base, token, path) != 0) {
    cli_err("cannot initialise libcurl");
    return CLI_FAIL;
  }
  int bad = extra_header ? cli_conn_header(&c, extra_header) : 0;
  if (body) {
    /* "Content-Type:" alone: none at all (libcurl would send its form type) */
    char ct[SA_CONTENT_TYPE_MAX + 16];
    snprintf(ct, sizeof ct, "Content-Type:%s%s", content_type ? " " : "",
             content_type ? content_type : "");
    bad |= cli_conn_header(&c, "Expect:");
    bad |= cli_conn_header(&c, ct);
  }
  if (bad) {
    cli_conn_close(&c);
    return CLI_FAIL;
  }
  cli_conn_ready(&c);
  curl_easy_setopt(c.curl, CURLOPT_CUSTOMREQUEST, method);
  curl_easy_setopt(c.curl, CURLOPT_WRITEFUNCTION, cli_buf_write);
  curl_easy_setopt(c.curl, CURLOPT_WRITEDATA, out);
  curl_easy_setopt(c.curl, CURLOPT_TIMEOUT_MS, 120000L);
  if (body) {
    curl_easy_setopt(c.curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c.curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
  }
  CURLcode rc = curl_easy_perform(c.curl);
  int ret = 0;
  if (rc != CURLE_OK) {
    char why[160];
    cli_errc("unreachable",
             "cannot reach the node at %.*s: %s (is `softadastra serve` running? set --url or "
             "SOFTADASTRA_URL)",
             cli_url_len(base), base, cli_http_why(c.curl, rc, why, sizeof why));
    free(out->data);
    out->data = NULL;
    ret = CLI_FAIL;
  } else {
    curl_easy_getinfo(c.curl, CURLINFO_RESPONSE_CODE, status);
    if (!out->data) out->data = calloc(1, 1);
  }
  cli_conn_close(&c);
  return ret;
}
