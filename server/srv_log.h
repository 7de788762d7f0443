/*
 * srv_log.h -- structured logs of the server on stderr, one logfmt line per
 * event: ts=2026-01-02T03:04:05.678Z level=info event=listening key=value ...
 *
 * What it is not: an access log sink or a file logger; stderr only, so that
 * systemd, docker and tests capture it.  Threads: srv_log may be called from
 * any thread (one fprintf per line, stdio locks the stream); set the level
 * before starting threads.
 */
#ifndef SA_SRV_LOG_H
#define SA_SRV_LOG_H

typedef enum srv_log_level {
  SRV_LOG_DEBUG = 0,
  SRV_LOG_INFO = 1,
  SRV_LOG_WARN = 2,
  SRV_LOG_ERROR = 3,
} srv_log_level;

/* Sets the lowest level written ("debug", "info", "warn", "error"); an
 * unknown name leaves the level unchanged.  Not thread-safe. */
void srv_log_set_level(const char *name);

/* True when level would be written. */
int srv_log_enabled(srv_log_level level);

/* Writes one line: the time, the level, event=<event>, then the fields
 * formatted by fmt (logfmt "key=value" pairs; quote values with spaces via
 * srv_log_q).  fmt may be NULL. */
void srv_log(srv_log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Quotes s for a logfmt value into buf ("..." with \" and \\ escaped,
 * control bytes as \xNN), truncating to buflen.  Returns buf. */
const char *srv_log_q(const char *s, char *buf, unsigned buflen);

#endif /* SA_SRV_LOG_H */
