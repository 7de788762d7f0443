/*
 * api_json.c -- JSON value helpers; see api_json.h.
 */
#include "api_json.h"

#include <stdio.h>
#include <time.h>

json_t *api_json_u64(uint64_t v) {
  return json_integer((json_int_t)(v > (uint64_t)INT64_MAX ? (uint64_t)INT64_MAX : v));
}

json_t *api_json_time(uint64_t ms) {
  if (ms == 0) return json_null();
  time_t s = (time_t)(ms / 1000);
  struct tm tm;
  if (!gmtime_r(&s, &tm)) return json_null();
  char buf[64];
  snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900, tm.tm_mon + 1,
           tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(ms % 1000));
  return json_string(buf);
}
