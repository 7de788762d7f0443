/*
 * srv_chunked.c -- the strict chunked-body decoder (see srv_chunked.h).
 */
#include "srv_chunked.h"

#include "srv_http.h" /* srv_http_tchar */

#include <stdbool.h>

#define CK_MAX_DIGITS 16    /* a 17th hex digit: over any limit (413) */
#define CK_MAX_EXT 1024     /* bytes of one chunk extension */
#define CK_MAX_TRAILER 8192 /* bytes of the whole trailer section */

enum {
  CK_SIZE0,    /* the first byte of a chunk size */
  CK_SIZE,     /* more size digits, an extension or CR */
  CK_EXT,      /* a chunk extension, up to CR */
  CK_SIZE_LF,  /* the LF after the size line */
  CK_DATA,     /* size data bytes left */
  CK_DATA_CR,  /* the CR after the data */
  CK_DATA_LF,  /* the LF after the data */
  CK_TR_START, /* a trailer line or the final CR */
  CK_TR_NAME,  /* a trailer field name */
  CK_TR_VALUE, /* a trailer field value, up to CR */
  CK_TR_LF,    /* the LF after a trailer line */
  CK_END_LF,   /* the LF of the final empty line */
  CK_DONE,
  CK_ERROR,
};

void srv_chunked_init(srv_chunked *d, uint64_t limit) {
  *d = (srv_chunked){.state = CK_SIZE0, .limit = limit};
}

static int ck_fail(srv_chunked *d, int status, const char *why) {
  d->state = CK_ERROR;
  d->status = status;
  d->why = why;
  return SRV_CHUNKED_ERROR;
}

static int ck_hex(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* The end of a size line: a last chunk opens the trailer section. */
static void ck_size_done(srv_chunked *d) {
  d->state = d->size == 0 ? CK_TR_START : CK_DATA;
}

int srv_chunked_feed(srv_chunked *d, const char *in, size_t n, size_t *used,
                     int (*emit)(void *cls, const char *p, size_t len), void *cls) {
  size_t i = 0;
  *used = 0;
  if (d->state == CK_ERROR) return SRV_CHUNKED_ERROR;
  while (i < n && d->state != CK_DONE) {
    unsigned char c = (unsigned char)in[i];
    switch (d->state) {
    case CK_SIZE0:
    case CK_SIZE: {
      int h = ck_hex(c);
      if (h >= 0) {
        if (++d->digits > CK_MAX_DIGITS)
          return ck_fail(d, 413, "a chunk size of more than 16 hex digits");
        d->size = d->size * 16 + (uint64_t)h;
        d->state = CK_SIZE;
        if (d->size > d->limit || d->total + d->size > d->limit)
          return ck_fail(d, 413, "the chunked body is over the route's limit");
        i++;
        break;
      }
      if (d->state == CK_SIZE0) return ck_fail(d, 400, "malformed chunk size: not a hex number");
      if (c == '\r') {
        d->state = CK_SIZE_LF;
      } else if (c == ';' || c == ' ' || c == '\t') {
        d->state = CK_EXT;
        d->line = 0;
        if (c != ';') d->line = SIZE_MAX; /* whitespace first: a ';' must follow */
      } else {
        return ck_fail(d, 400,
                       c == '\n' ? "a bare LF ends a chunk line"
                                 : "malformed chunk size: not a hex number");
      }
      i++;
      break;
    }
    case CK_EXT:
      if (c == '\r') {
        if (d->line == SIZE_MAX) return ck_fail(d, 400, "malformed chunk extension");
        d->state = CK_SIZE_LF;
      } else if (d->line == SIZE_MAX) { /* BWS before the ';' */
        if (c == ';')
          d->line = 0;
        else if (c != ' ' && c != '\t')
          return ck_fail(d, 400, "malformed chunk extension");
      } else if (c == '\n') {
        return ck_fail(d, 400, "a bare LF ends a chunk line");
      } else if (!((c >= 0x20 && c < 0x7f) || c == '\t') || ++d->line > CK_MAX_EXT) {
        return ck_fail(d, 400, "malformed chunk extension");
      }
      i++;
      break;
    case CK_SIZE_LF:
      if (c != '\n') return ck_fail(d, 400, "a CR without LF ends a chunk line");
      i++;
      ck_size_done(d);
      break;
    case CK_DATA: {
      size_t take = n - i < d->size ? n - i : (size_t)d->size;
      if (emit(cls, in + i, take) != 0) return ck_fail(d, 500, "out of memory reading a body");
      d->size -= take;
      d->total += take;
      i += take;
      if (d->size == 0) d->state = CK_DATA_CR;
      break;
    }
    case CK_DATA_CR:
      if (c != '\r') return ck_fail(d, 400, "chunk data longer than its size, or no CRLF after it");
      d->state = CK_DATA_LF;
      i++;
      break;
    case CK_DATA_LF:
      if (c != '\n') return ck_fail(d, 400, "a CR without LF after chunk data");
      d->state = CK_SIZE0;
      d->digits = 0;
      d->size = 0;
      i++;
      break;
    case CK_TR_START:
      if (c == '\r') {
        d->state = CK_END_LF;
      } else if (srv_http_tchar(c)) {
        d->state = CK_TR_NAME;
      } else {
        return ck_fail(d, 400,
                       c == '\n' ? "a bare LF ends the chunked body" : "malformed trailer field");
      }
      if (++d->trailer > CK_MAX_TRAILER)
        return ck_fail(d, 400, "the trailer section is over 8 KiB");
      i++;
      break;
    case CK_TR_NAME:
      if (c == ':')
        d->state = CK_TR_VALUE;
      else if (!srv_http_tchar(c))
        return ck_fail(d, 400, "malformed trailer field: the name is not a token");
      if (++d->trailer > CK_MAX_TRAILER)
        return ck_fail(d, 400, "the trailer section is over 8 KiB");
      i++;
      break;
    case CK_TR_VALUE:
      if (c == '\r')
        d->state = CK_TR_LF;
      else if (c == '\n' || (c < 0x20 && c != '\t') || c == 0x7f)
        return ck_fail(d, 400, "a control byte in a trailer field");
      if (++d->trailer > CK_MAX_TRAILER)
        return ck_fail(d, 400, "the trailer section is over 8 KiB");
      i++;
      break;
    case CK_TR_LF:
      if (c != '\n') return ck_fail(d, 400, "a CR without LF in the trailer section");
      d->state = CK_TR_START;
      i++;
      break;
    case CK_END_LF:
      if (c != '\n') return ck_fail(d, 400, "a CR without LF ends the chunked body");
      d->state = CK_DONE;
      i++;
      break;
    default:
      return ck_fail(d, 400, "malformed chunked body");
    }
  }
  *used = i;
  return d->state == CK_DONE ? SRV_CHUNKED_DONE : SRV_CHUNKED_MORE;
}
