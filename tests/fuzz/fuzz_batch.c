/*
 * fuzz_batch.c -- the batch JSON parser: POST /v1/batch through api_handle
 * on a memory-only node (no socket, no WAL).
 *
 * Input: the request body.  Properties:
 *   - the answer is 200, 400, 413 or 415 -- never a 5xx for bad input;
 *   - its body is JSON: {"count","lsn","durable"} for 200, an error object
 *     {"error":{"code","message"}} otherwise;
 *   - a 200 reports as many operations as the "ops" array holds.
 * The node is reopened every 5000 inputs so the store stays small.
 */
#include "fuzz.h"

#include "api.h"
#include "softadastra.h"

#include <jansson.h>
#include <string.h>

static sa_client *fz_client;
static api_ctx *fz_api;
static long fz_runs;

static const char *hdr(void *cls, const char *name) {
  (void)cls;
  return strcasecmp(name, "Content-Type") == 0 ? "application/json" : NULL;
}

static void fz_open(void) {
  if (fz_api && fz_runs % 5000 != 0) return;
  api_ctx_destroy(fz_api);
  sa_client_close(fz_client);
  sa_options o = sa_options_memory("fuzz");
  sa_error err = {0};
  FUZZ_CHECK(sa_client_open(&fz_client, &o, &err) == 0);
  api_config cfg = {.client = fz_client};
  FUZZ_CHECK(api_ctx_create(&cfg, &fz_api) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_open();
  fz_runs++;
  api_request req = {.method = "POST",
                     .target = "/v1/batch",
                     .header = hdr,
                     .body = size ? (const char *)data : NULL,
                     .body_len = size};
  api_response *r = api_handle(fz_api, &req);
  FUZZ_CHECK(r != NULL);
  FUZZ_CHECK(r->status == 200 || r->status == 400 || r->status == 413 || r->status == 415);
  json_t *j = json_loadb(r->body ? r->body : "", r->body_len, JSON_ALLOW_NUL, NULL);
  FUZZ_CHECK(j != NULL);
  if (r->status == 200) {
    json_t *in = json_loadb((const char *)data, size, JSON_ALLOW_NUL, NULL);
    json_t *ops = json_object_get(in, "ops");
    FUZZ_CHECK(json_is_array(ops));
    FUZZ_CHECK(json_integer_value(json_object_get(j, "count")) == (json_int_t)json_array_size(ops));
    FUZZ_CHECK(json_is_integer(json_object_get(j, "lsn")));
    json_decref(in);
  } else {
    json_t *e = json_object_get(j, "error");
    FUZZ_CHECK(json_is_string(json_object_get(e, "code")));
    FUZZ_CHECK(json_is_string(json_object_get(e, "message")));
  }
  json_decref(j);
  api_response_free(r);
  return 0;
}
