/*
 * srv_answer.h -- the one writer of the node's HTTP answers, and of the
 * request-log line.
 *
 * What it is: every answer the node sends is an api_response (api.h) turned
 * into bytes here.  The front loop's answers get their head from
 * srv_answer_head; the answers libmicrohttpd sends (its routes, the change
 * feed's SSE heads and long-polls, the errors of srv.c) get their headers
 * from srv_answer_mhd_headers.  Both give the same header set from the same
 * response: Content-Type, the API's headers, and Connection: close when the
 * connection ends after the answer -- which is always the case on
 * libmicrohttpd's side, since the gate hands it one request per connection
 * (srv_http.h).  srv_answer_log writes the one request-log line format.
 *
 * What it is not: a router or an error mapper (api/ maps errors to statuses),
 * nor a sender: the caller writes the bytes.
 *
 * Threads: every function is reentrant; call from any thread.
 */
#ifndef SA_SRV_ANSWER_H
#define SA_SRV_ANSWER_H

#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "api.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Does an answer with this status carry no body (204, 304, 1xx)? */
bool srv_answer_bodiless(int status);

/* The bytes srv_answer_head may write for r (an upper bound). */
size_t srv_answer_head_size(const api_response *r);

/* Writes the answer head for r into buf (at least srv_answer_head_size(r)
 * bytes): status line, Date (date, date_len: an IMF-fixdate), Content-Length
 * (unless bodiless), Content-Type, r's headers, Connection: close when close
 * is set, the blank line.  Returns the bytes written. */
size_t srv_answer_head(char *buf, const api_response *r, bool close, const char *date,
                       size_t date_len);

/* Formats the IMF-fixdate of t into buf (at least 30 bytes); returns its
 * length (29). */
size_t srv_answer_date(char *buf, time_t t);

/* Adds r's headers to a libmicrohttpd response, and Connection: close:
 * libmicrohttpd serves exactly one request per connection. */
void srv_answer_mhd_headers(struct MHD_Response *m, const api_response *r);

/* Queues r on con as a buffered answer; r is freed here in every case (the
 * body is not copied: the MHD response owns r).  Returns MHD_queue_response's
 * result, MHD_NO when out of memory. */
enum MHD_Result srv_answer_mhd(struct MHD_Connection *con, api_response *r);

/* The request-log line (debug level): method, target, status, the time since
 * t0 (CLOCK_MONOTONIC) and the body bytes received.  method and target may be
 * NULL (a request the gate refused before they were read). */
void srv_answer_log(const char *method, const char *target, int status, const struct timespec *t0,
                    size_t bytes_in);

#ifdef __cplusplus
}
#endif

#endif /* SA_SRV_ANSWER_H */
