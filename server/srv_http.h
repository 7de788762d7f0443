/*
 * srv_http.h -- the request parser of the front loop (srv_front.c).
 *
 * What it is: a pure function over bytes that says whether a buffer starts
 * with one complete HTTP/1.1 request the front loop serves itself (a GET,
 * PUT or DELETE of /v1/store/{key}, origin-form, plain framing), needs more
 * bytes to tell, or is anything else.  It never allocates, never writes to
 * the buffer and keeps no state between calls, so it can be fuzzed alone
 * (tests/fuzz/fuzz_http.c).
 *
 * What it is not: a general HTTP parser.  It accepts a strict subset and
 * answers SRV_HTTP_PASS for everything outside it: other methods and paths,
 * HTTP/1.0, absolute-form targets, Transfer-Encoding, Expect, Upgrade, a
 * Connection option other than close/keep-alive, obs-fold, a header name that
 * is not a token, a control byte in a value, a missing or repeated Host, a
 * Content-Length that is not plain digits or is repeated, a body on GET or
 * DELETE, a body or a head over the given limits.  The front loop hands such
 * a connection, with every byte still unread, to libmicrohttpd, which serves
 * it or answers the error (400, 413, 431, 501) as it always has.  So being
 * strict here never refuses a request; it only picks the slower path.
 */
#ifndef SA_SRV_HTTP_H
#define SA_SRV_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum srv_http_verdict {
  SRV_HTTP_MORE = 0, /* a prefix of a request the loop may serve: wait for more bytes */
  SRV_HTTP_OURS = 1, /* one complete request in buf[0, total): the loop serves it */
  SRV_HTTP_PASS = 2, /* anything else: libmicrohttpd serves the connection */
} srv_http_verdict;

#define SRV_HTTP_MAX_FIELDS 32 /* header fields of a request the loop serves */

typedef struct srv_http_field {
  const char *name; /* into buf; a token, not NUL-terminated */
  size_t name_len;
  const char *value; /* into buf, without the surrounding whitespace */
  size_t value_len;
} srv_http_field;

typedef struct srv_http_req {
  const char *method; /* "GET", "PUT" or "DELETE", into buf */
  size_t method_len;
  const char *target; /* "/v1/store/...", raw, into buf */
  size_t target_len;
  size_t n_fields;
  srv_http_field fields[SRV_HTTP_MAX_FIELDS];
  bool close;       /* Connection: close */
  size_t head_len;  /* bytes up to and including the blank line */
  const char *body; /* buf + head_len */
  size_t body_len;  /* the Content-Length (0 without one) */
  size_t total;     /* head_len + body_len: the request's bytes in buf */
} srv_http_req;

/* Parses the request at the start of buf[0, len).  max_head bounds the
 * request line and headers, max_body the Content-Length, and cap the whole
 * request (the caller's buffer: a request that cannot fit in it is passed).
 * On SRV_HTTP_OURS *out describes it; the bytes after a separator (the space
 * after the method and the target, the CR or whitespace after a value) are
 * the caller's to overwrite with a NUL.  On MORE and PASS *out is garbage. */
srv_http_verdict srv_http_parse(const char *buf, size_t len, size_t max_head, size_t max_body,
                                size_t cap, srv_http_req *out);

/* Is c a token character (RFC 9110 tchar: a header name's bytes)? */
bool srv_http_tchar(unsigned char c);

/* The value of the first field named name (case-insensitive), or NULL. */
const srv_http_field *srv_http_find(const srv_http_req *r, const char *name);

#ifdef __cplusplus
}
#endif

#endif /* SA_SRV_HTTP_H */
