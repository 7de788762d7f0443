/*
 * api_json.h -- JSON value helpers shared by the API's handlers (api.c,
 * api_feed.c).  Pure functions; every one returns a new jansson reference
 * (or NULL when out of memory), which the caller owns or steals into a
 * container.
 */
#ifndef SA_API_JSON_H
#define SA_API_JSON_H

#include <jansson.h>
#include <stdint.h>

/* An unsigned counter as a JSON integer (clamped to INT64_MAX). */
json_t *api_json_u64(uint64_t v);

/* RFC 3339 UTC time with milliseconds ("2026-11-23T22:49:42.077Z") of unix
 * milliseconds, or JSON null for 0. */
json_t *api_json_time(uint64_t ms);

#endif
