/*
 * srv_http.h -- the gate: the one strict HTTP/1.1 request parser that reads
 * every request on every connection of the node before anything serves it.
 *
 * What it is: a pure function over bytes.  Given the bytes a client has sent
 * at a request boundary, it says one of four things:
 *   MORE    the bytes are a prefix of a request the gate would accept or
 *           refuse only on later bytes: wait for more;
 *   OURS    one complete, checked request, head and Content-Length body (or
 *           none), within the caller's window: buf[0, total);
 *   PASS    one checked head whose body the caller reads after it: chunked
 *           (decoded strictly by srv_chunked.h), after Expect: 100-continue,
 *           or a Content-Length body larger than the window;
 *   REFUSE  a request the node will not serve: out->status, out->code and
 *           out->why say the answer (a JSON error); the connection is closed
 *           after it and no byte after the refused head is ever parsed.
 * On OURS and PASS the head's framing is decided; which thread serves the
 * request (the front loop, or libmicrohttpd for the change feed's streams)
 * is srv_front.c's choice.
 * It never allocates, never writes to the buffer and keeps no state between
 * calls, so it can be fuzzed alone (tests/fuzz/fuzz_http.c).  The accepted
 * subset of RFC 9112, form by form, with the answer to each refused form, is
 * the table at the top of srv_http.c.
 *
 * What it is not: the chunked body decoder (srv_chunked.h), nor a router
 * (the API answers 404/405).
 */
#ifndef SA_SRV_HTTP_H
#define SA_SRV_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum srv_http_verdict {
  SRV_HTTP_MORE = 0,   /* a prefix: wait for more bytes */
  SRV_HTTP_OURS = 1,   /* one complete request in buf[0, total): the loop serves it */
  SRV_HTTP_PASS = 2,   /* one checked head: libmicrohttpd serves this request, then closes */
  SRV_HTTP_REFUSE = 3, /* refused: answer status/code/why, close, parse nothing after */
} srv_http_verdict;

#define SRV_HTTP_MAX_FIELDS 100  /* header fields of a request (more: 431), all kept */
#define SRV_HTTP_TARGET_MAX 8192 /* bytes of a request-target (more: 414) */

typedef struct srv_http_field {
  const char *name; /* into buf; a token, not NUL-terminated */
  size_t name_len;
  const char *value; /* into buf, without the surrounding whitespace */
  size_t value_len;
} srv_http_field;

typedef struct srv_http_req {
  const char *method; /* into buf, a token */
  size_t method_len;
  const char *target; /* the raw request-target, into buf */
  size_t target_len;
  const char *path; /* origin-form part of target (absolute-form: after the authority) */
  size_t path_len;  /* 0 for "*" and for an absolute-form target without a path */
  int version;      /* 10 (HTTP/1.0) or 11 (HTTP/1.1) */
  size_t n_fields;  /* fields (at most SRV_HTTP_MAX_FIELDS) */
  srv_http_field fields[SRV_HTTP_MAX_FIELDS];
  bool close;           /* Connection: close */
  bool chunked;         /* Transfer-Encoding: chunked */
  bool expect_continue; /* Expect: 100-continue */
  bool has_length;      /* a Content-Length field */
  uint64_t length;      /* its value */
  size_t skip;          /* empty lines before the request line (RFC 9112 2.2) */
  size_t head_len;      /* bytes up to and including the blank line (skip included) */
  const char *body;     /* buf + head_len */
  size_t body_len;      /* OURS: the Content-Length (0 without one) */
  size_t total;         /* OURS: head_len + body_len, the request's bytes in buf */
  /* REFUSE: the answer */
  int status;       /* 400, 413, 414, 417, 431, 501, 505 */
  const char *code; /* the JSON error code: a static string */
  const char *why;  /* the JSON error message: a static string */
} srv_http_req;

/* Reads the request at the start of buf[0, len).  max_head bounds the
 * request line and headers (431 past it, 414 while still in the target),
 * cap the whole request held in the caller's window (a bigger body is PASS:
 * the caller reads it after the head and applies the route's own limit).
 * On OURS and PASS the bytes after a separator (the space after the method
 * and the target, the CR or whitespace after a value) are the caller's to
 * overwrite with a NUL, and the head fields (method, target, path, version,
 * fields, framing) are valid; on REFUSE status/code/why are; on MORE the
 * head fields are valid when head_len is not 0 (the head is whole, its
 * body has not all arrived), else *out is garbage. */
srv_http_verdict srv_http_parse(const char *buf, size_t len, size_t max_head, size_t cap,
                                srv_http_req *out);

/* Is c a token character (RFC 9110 tchar: a header name's bytes)? */
bool srv_http_tchar(unsigned char c);

/* The value of the first field named name (case-insensitive), or NULL. */
const srv_http_field *srv_http_find(const srv_http_req *r, const char *name);

/* The origin-form path of a request-target as the gate routes it: target
 * itself for origin-form, the part after the authority for absolute-form
 * ("http://h/p?q" -> "/p?q", "http://h" -> ""), NULL for anything else.
 * target is NUL-terminated here (libmicrohttpd's URI callback). */
const char *srv_http_origin(const char *target);

#ifdef __cplusplus
}
#endif

#endif /* SA_SRV_HTTP_H */
