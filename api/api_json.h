/*
 * api_json.h -- JSON value helpers shared by the API's handlers (api.c,
 * api_feed.c).  Pure functions; the api_json_u64/api_json_time return a new
 * jansson reference (or NULL when out of memory), which the caller owns or
 * steals into a container.
 *
 * api_json_value_doc writes the body of GET /v1/store/{key} by hand, without
 * a jansson tree: it is the hottest response of the API.  Its output is
 * byte for byte what json_dumps(JSON_COMPACT | JSON_ENCODE_ANY) gives for the
 * same object (tests/api/test_api_util.c checks it against jansson).
 * api_json_write_doc does the same for the answer to a write.
 */
#ifndef SA_API_JSON_H
#define SA_API_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

/* An unsigned counter as a JSON integer (clamped to INT64_MAX). */
json_t *api_json_u64(uint64_t v);

/* True when a value's bytes (len at data) go into JSON as text: valid UTF-8
 * holding no NUL byte.  Anything else is binary (base64): a NUL would come
 * out as six bytes of "\u0000" each and be cut by every C client. */
bool api_json_value_is_text(const char *data, size_t len);

/* A value's bytes (len at data, may hold NUL bytes) as a JSON string: the
 * text itself when api_json_value_is_text, else its base64; *encoding is set to
 * "utf-8" or "base64" (static).  Returns a new reference, or NULL when out
 * of memory.  GET /v1/store?values=1 and the change feed both use it. */
json_t *api_json_value(const char *data, size_t len, const char **encoding);

/* RFC 3339 UTC time with milliseconds ("2026-11-23T22:49:42.077Z") of unix
 * milliseconds, or JSON null for 0. */
json_t *api_json_time(uint64_t ms);

/* The body of GET /v1/store/{key} (a JSON object and a newline):
 *   {"key":K,"size":N,"version":N,"lsn":N,"hlc":N,"origin":O,"updated_at":T,
 *    "content_type":C,"encoding":"utf-8"|"base64","value":V}
 * (hlc, origin) is the pair of the write that holds the key (origin: a node
 * id, valid UTF-8); C is ctype as a string, or null when ctype is NULL or
 * "" (a content type is printable ASCII).
 * key (klen bytes) must be valid UTF-8; the value (len bytes at data, may
 * hold NUL bytes) is written as a JSON string when api_json_value_is_text,
 * else base64.  Integers are clamped to INT64_MAX as api_json_u64 does; T is
 * api_json_time(updated_ms).  Returns a new buffer (free()), NUL-terminated,
 * its length in *out_len; NULL when out of memory. */
char *api_json_value_doc(const char *key, size_t klen, const char *data, size_t len,
                         uint64_t version, uint64_t lsn, uint64_t hlc, const char *origin,
                         uint64_t updated_ms, const char *ctype, size_t *out_len);

/* The body of a settled write of key (PUT and DELETE /v1/store/{key}):
 *   put:    {"key":K,"version":N,"lsn":N,"hlc":N,"origin":O,"durable":B,"size":N,
 *            "content_type":C}   (C: ctype, or null when NULL or "")
 *   delete: {"key":K,"deleted":true,"lsn":N,"hlc":N,"origin":O,"durable":B}
 * and a newline; by hand for the same reason as api_json_value_doc, with
 * the same guarantees (byte for byte jansson's output; a new buffer, NULL
 * when out of memory).  version and lsn are clamped to INT64_MAX. */
char *api_json_write_doc(const char *key, size_t klen, bool put, uint64_t version, uint64_t lsn,
                         uint64_t hlc, const char *origin, bool durable, size_t size,
                         const char *ctype, size_t *out_len);

#endif
