/*
 * srv_chunked.h -- the strict decoder of a chunked request body (RFC 9112
 * section 7.1), for the front loop.
 *
 * What it is: an incremental state machine over the bytes that follow a
 * request head with Transfer-Encoding: chunked.  It is fed whatever bytes
 * have arrived, says how many of them belong to the body (never one past the
 * end of the chunked message, so a pipelined request behind it stays
 * unread), hands the data bytes to a callback, and ends exactly after the
 * blank line that closes the trailer section.  Accepted, and nothing else:
 *
 *   chunked-body = *chunk last-chunk trailer-section CRLF
 *   chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
 *   chunk-size   = 1*16HEXDIG          (17 digits or more: 413)
 *   last-chunk   = 1*("0") [ chunk-ext ] CRLF
 *   chunk-ext    = *WSP ";" then VCHAR / SP / HTAB up to CRLF (<= 1 KiB)
 *   trailer      = field lines as in a head (token ":" value without control
 *                  bytes), at most 8 KiB in all; they are read and dropped
 *
 * A bare LF, a CR without LF, a sign, "0x", whitespace before the size, data
 * longer or shorter than its size, a control byte: 400.  Data past the
 * caller's limit: 413, as soon as a chunk size says so.
 *
 * What it is not: a parser of the head (srv_http.h), nor a buffer owner: the
 * callback copies the data where it wants.  No allocation, no I/O; one
 * decoder per body; call from one thread.
 */
#ifndef SA_SRV_CHUNKED_H
#define SA_SRV_CHUNKED_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct srv_chunked {
  int state;       /* where in the grammar (srv_chunked.c) */
  uint64_t size;   /* the chunk size being read, then the data bytes left */
  unsigned digits; /* hex digits of the size read */
  size_t line;     /* bytes of the current extension or trailer line */
  size_t trailer;  /* trailer bytes so far */
  uint64_t total;  /* data bytes so far */
  uint64_t limit;  /* most data bytes accepted (413 past it) */
  int status;      /* on error: 400 or 413 */
  const char *why; /* on error: a static message */
} srv_chunked;

enum {
  SRV_CHUNKED_MORE = 0,  /* every byte given was used: feed more */
  SRV_CHUNKED_DONE = 1,  /* the body ended; *used bytes belonged to it */
  SRV_CHUNKED_ERROR = -1 /* d->status and d->why say why; stop reading */
};

/* Starts a decoder for a body of at most limit data bytes. */
void srv_chunked_init(srv_chunked *d, uint64_t limit);

/* Feeds in[0, n).  Data bytes go to emit(cls, p, len) as they are found
 * (emit returns 0, or -1 to fail the body: out of memory, status 500).
 * Returns SRV_CHUNKED_MORE (all n bytes used), SRV_CHUNKED_DONE (the body
 * ended after *used bytes; the rest is not the body's), or
 * SRV_CHUNKED_ERROR. */
int srv_chunked_feed(srv_chunked *d, const char *in, size_t n, size_t *used,
                     int (*emit)(void *cls, const char *p, size_t len), void *cls);

#ifdef __cplusplus
}
#endif

#endif /* SA_SRV_CHUNKED_H */
