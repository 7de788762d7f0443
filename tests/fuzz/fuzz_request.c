/*
 * fuzz_request.c -- whole requests through api_handle (routing, the raw
 * request-target's percent-decoding, query parsing, conditional headers,
 * every handler) on a memory-only node.
 *
 * Input: "METHOD\nTARGET\nHEADERS\nBODY" where HEADERS is a list of
 * "Name: value" separated by '\t'.  Properties: api_handle always answers
 * with a status from 200 to 599; a 5xx never comes from bad input (only 500
 * on internal errors, which a memory node does not have, and 503 while
 * draining, which is not set here); a JSON answer parses; an error answer
 * is {"error":{"code","message"}}.
 * Targets containing "changes" or "wait" are skipped: a long-poll would
 * stall the fuzzer, not find bugs.
 */
#define _GNU_SOURCE
#include "fuzz.h"

#include "api.h"
#include "softadastra.h"

#include <jansson.h>
#include <string.h>

static sa_client *fz_client;
static api_ctx *fz_api;
static long fz_runs;

typedef struct {
  char *names[8], *values[8];
  int n;
} fz_headers;

static const char *hdr(void *cls, const char *name) {
  fz_headers *h = cls;
  for (int i = 0; i < h->n; i++)
    if (strcasecmp(h->names[i], name) == 0) return h->values[i];
  return NULL;
}

static void fz_open(void) {
  if (fz_api && fz_runs % 5000 != 0) return;
  api_ctx_destroy(fz_api);
  sa_client_close(fz_client);
  sa_options o = sa_options_memory("fuzz");
  sa_error err = {0};
  FUZZ_CHECK(sa_client_open(&fz_client, &o, &err) == 0);
  api_config cfg = {.client = fz_client, .max_value_bytes = 4096, .max_batch_bytes = 8192};
  FUZZ_CHECK(api_ctx_create(&cfg, &fz_api) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *buf = malloc(size + 1);
  FUZZ_CHECK(buf != NULL);
  memcpy(buf, data, size);
  buf[size] = 0;
  /* split into 3 NUL-terminated lines and a body */
  char *parts[3] = {NULL, NULL, NULL};
  char *p = buf, *end = buf + size;
  for (int i = 0; i < 3; i++) {
    parts[i] = p;
    char *nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl) {
      p = end;
      for (int j = i + 1; j < 3; j++)
        parts[j] = end;
      break;
    }
    *nl = 0;
    p = nl + 1;
  }
  const char *body = p;
  size_t body_len = (size_t)(end - p);
  if (strstr(parts[1], "changes") || strstr(parts[1], "wait")) {
    free(buf);
    return 0;
  }
  fz_headers h = {.n = 0};
  char *save = NULL;
  for (char *it = strtok_r(parts[2], "\t", &save); it && h.n < 8;
       it = strtok_r(NULL, "\t", &save)) {
    char *colon = strchr(it, ':');
    if (!colon) continue;
    *colon = 0;
    char *v = colon + 1;
    while (*v == ' ')
      v++;
    h.names[h.n] = it;
    h.values[h.n++] = v;
  }
  fz_open();
  fz_runs++;
  api_request req = {.method = parts[0],
                     .target = parts[1],
                     .header = hdr,
                     .header_cls = &h,
                     .body = body_len ? body : NULL,
                     .body_len = body_len};
  api_response *r = api_handle(fz_api, &req);
  FUZZ_CHECK(r != NULL);
  FUZZ_CHECK(r->status >= 200 && r->status <= 599);
  if (r->status >= 500) {
    fprintf(stderr, "%d for %s %s: %.*s\n", r->status, parts[0], parts[1], (int)r->body_len,
            r->body ? r->body : "");
    FUZZ_CHECK(r->status < 500);
  }
  if (r->content_type && strncmp(r->content_type, "application/json", 16) == 0) {
    json_t *j = json_loadb(r->body ? r->body : "", r->body_len, JSON_ALLOW_NUL, NULL);
    FUZZ_CHECK(j != NULL);
    if (r->status >= 400) {
      json_t *e = json_object_get(j, "error");
      FUZZ_CHECK(json_is_string(json_object_get(e, "code")));
      FUZZ_CHECK(json_is_string(json_object_get(e, "message")));
    }
    json_decref(j);
  }
  api_response_free(r);
  free(buf);
  return 0;
}
