/*
 * srv_log.c -- logfmt lines on stderr (see srv_log.h).  A line is built in
 * a local buffer and written with one fputs so that lines from different
 * threads never interleave.
 */
#include "srv_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static srv_log_level srv_log_min = SRV_LOG_INFO;

static const char *const srv_log_names[] = {"debug", "info", "warn", "error"};

void srv_log_set_level(const char *name) {
  for (int i = 0; i < 4; i++)
    if (name && strcmp(name, srv_log_names[i]) == 0) srv_log_min = (srv_log_level)i;
}

int srv_log_enabled(srv_log_level level) {
  return level >= srv_log_min;
}

void srv_log(srv_log_level level, const char *event, const char *fmt, ...) {
  if (level < srv_log_min) return;
  char line[2048];
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  int n = snprintf(line, sizeof line, "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s event=%s",
                   tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                   ts.tv_nsec / 1000000, srv_log_names[level], event);
  if (n < 0) return;
  size_t used = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
  if (fmt && used + 2 < sizeof line) {
    line[used++] = ' ';
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + used, sizeof line - used, fmt, ap);
    va_end(ap);
    if (m > 0) used += (size_t)m < sizeof line - used ? (size_t)m : sizeof line - used - 1;
  }
  if (used + 2 > sizeof line) used = sizeof line - 2;
  line[used++] = '\n';
  line[used] = '\0';
  fputs(line, stderr);
}

const char *srv_log_q(const char *s, char *buf, unsigned buflen) {
  static const char hex[] = "0123456789abcdef";
  unsigned o = 0;
  if (buflen < 3) {
    if (buflen) buf[0] = '\0';
    return buf;
  }
  buf[o++] = '"';
  for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
    if (o + 6 >= buflen) break;
    if (*p == '"' || *p == '\\') {
      buf[o++] = '\\';
      buf[o++] = (char)*p;
    } else if (*p < 0x20 || *p == 0x7f) {
      buf[o++] = '\\';
      buf[o++] = 'x';
      buf[o++] = hex[*p >> 4];
      buf[o++] = hex[*p & 15];
    } else {
      buf[o++] = (char)*p;
    }
  }
  buf[o++] = '"';
  buf[o] = '\0';
  return buf;
}
