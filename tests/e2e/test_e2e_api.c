/*
 * test_e2e_api.c -- the REST API v1 end to end: the real executable on
 * 127.0.0.1 (ephemeral port, temporary data directory), spoken to with
 * libcurl.  Every route and its errors, CAS, paging through 10,000 keys,
 * batch atomicity, auth, CORS, metrics, and the route table against
 * api/openapi.yaml.
 */
#define _GNU_SOURCE
#include <check.h>
#include <curl/curl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "e2e_util.h"

static e2e_node node;

static void node_up(void) {
  e2e_node_init(&node);
  const char *args[] = {"--max-value-bytes", "65536", NULL};
  ck_assert_int_eq(e2e_node_start(&node, args, NULL, NULL), 0);
}

static void node_down(void) {
  int rc = e2e_node_stop(&node, SIGTERM); /* prints the node log if it fails */
  e2e_node_cleanup(&node);                /* before judging: a failure leaves no directory behind */
  ck_assert_int_eq(rc, 0);
}

/* Request helper: returns the status, keeps the response in *r. */
static long req(const char *method, const char *path, const char *const *h, const char *body,
                e2e_resp *r) {
  ck_assert_int_eq(e2e_http(&node, method, path, h, body, body ? strlen(body) : 0, r), 0);
  return r->status;
}

static json_t *body_json(const e2e_resp *r) {
  json_error_t e;
  json_t *j = json_loadb(r->body, r->len, 0, &e);
  ck_assert_msg(j != NULL, "not JSON: %s (%s)", r->body, e.text);
  return j;
}

/* Asserts an error response with the given status and code. */
static void expect_error(const char *method, const char *path, const char *const *h,
                         const char *body, long status, const char *code) {
  e2e_resp r;
  long st = req(method, path, h, body, &r);
  ck_assert_msg(st == status, "%s %s: status %ld, want %ld (%s)", method, path, st, status, r.body);
  json_t *j = body_json(&r);
  const char *c = json_string_value(json_object_get(json_object_get(j, "error"), "code"));
  const char *m = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
  ck_assert_msg(c && !strcmp(c, code), "%s %s: code %s, want %s", method, path, c, code);
  ck_assert_msg(m && *m, "error without message");
  ck_assert_str_eq(strstr(r.headers, "application/json") ? "json" : r.headers, "json");
  json_decref(j);
  e2e_resp_free(&r);
}

static long long jint(json_t *j, const char *k) {
  return (long long)json_integer_value(json_object_get(j, k));
}

START_TEST(test_status_and_probes) {
  e2e_resp r;
  ck_assert_int_eq(req("GET", "/v1/status", NULL, NULL, &r), 200);
  json_t *j = body_json(&r);
  ck_assert_str_eq(json_string_value(json_object_get(j, "node_id")), "node-1");
  ck_assert_ptr_nonnull(json_string_value(json_object_get(j, "version")));
  ck_assert(json_is_integer(json_object_get(j, "uptime_s")));
  json_t *wal = json_object_get(j, "wal");
  ck_assert(json_is_true(json_object_get(wal, "enabled")));
  ck_assert(json_is_true(json_object_get(wal, "durable")));
  ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(wal, "path")), "node-1.wal"));
  ck_assert(json_is_integer(json_object_get(wal, "bytes")));
  ck_assert(json_is_integer(json_object_get(wal, "last_lsn")));
  ck_assert(json_is_integer(json_object_get(json_object_get(j, "store"), "size")));
  json_t *sync = json_object_get(j, "sync");
  const char *fields[] = {"outbox_size", "queued",        "in_flight", "acknowledged",
                          "failed",      "total_retries", "ticks",     "last_lsn"};
  for (size_t i = 0; i < sizeof fields / sizeof *fields; i++)
    ck_assert_msg(json_is_integer(json_object_get(sync, fields[i])), "sync.%s", fields[i]);
  /* The http transport's peers (none without a transport). */
  ck_assert(json_is_array(json_object_get(sync, "peers")));
  ck_assert_uint_eq(json_array_size(json_object_get(sync, "peers")), 0);
  ck_assert(json_is_false(json_object_get(json_object_get(sync, "transport"), "enabled")));
  ck_assert(json_is_false(json_object_get(json_object_get(sync, "discovery"), "enabled")));
  json_decref(j);
  e2e_resp_free(&r);

  ck_assert_int_eq(req("GET", "/v1/sync/status", NULL, NULL, &r), 200);
  j = body_json(&r);
  ck_assert(json_is_object(json_object_get(j, "transport")));
  ck_assert_ptr_nonnull(json_object_get(j, "last_tick_at"));
  json_decref(j);
  e2e_resp_free(&r);

  ck_assert_int_eq(req("GET", "/healthz", NULL, NULL, &r), 200);
  e2e_resp_free(&r);
  ck_assert_int_eq(req("GET", "/readyz", NULL, NULL, &r), 200);
  e2e_resp_free(&r);
  ck_assert_int_eq(req("GET", "/", NULL, NULL, &r), 200);
  ck_assert_ptr_nonnull(strstr(r.body, "<html"));
  e2e_resp_free(&r);
  ck_assert_int_eq(req("HEAD", "/v1/status", NULL, NULL, &r), 200);
  ck_assert_uint_eq(r.len, 0);
  e2e_resp_free(&r);
}
END_TEST

START_TEST(test_put_get_delete) {
  e2e_resp r;
  ck_assert_int_eq(req("PUT", "/v1/store/settings/theme", NULL, "dark", &r), 201);
  json_t *j = body_json(&r);
  ck_assert_str_eq(json_string_value(json_object_get(j, "key")), "settings/theme");
  ck_assert_int_eq(jint(j, "version"), 1);
  ck_assert_int_gt(jint(j, "lsn"), 0);
  ck_assert(json_is_true(json_object_get(j, "durable")));
  char *etag = e2e_header(&r, "ETag");
  ck_assert_str_eq(etag, "\"1\"");
  free(etag);
  json_decref(j);
  e2e_resp_free(&r);

  /* The same key, percent-encoded slash. */
  ck_assert_int_eq(req("GET", "/v1/store/settings%2Ftheme", NULL, NULL, &r), 200);
  j = body_json(&r);
  ck_assert_str_eq(json_string_value(json_object_get(j, "value")), "dark");
  ck_assert_str_eq(json_string_value(json_object_get(j, "encoding")), "utf-8");
  ck_assert_int_eq(jint(j, "version"), 1);
  ck_assert(json_is_string(json_object_get(j, "updated_at")));
  json_decref(j);
  e2e_resp_free(&r);

  ck_assert_int_eq(req("PUT", "/v1/store/settings/theme", NULL, "light", &r), 200);
  e2e_resp_free(&r);

  /* raw, nosniff, ETag, 304 */
  ck_assert_int_eq(req("GET", "/v1/store/settings/theme?raw=1", NULL, NULL, &r), 200);
  ck_assert_str_eq(r.body, "light");
  char *nos = e2e_header(&r, "X-Content-Type-Options");
  ck_assert_str_eq(nos, "nosniff");
  free(nos);
  etag = e2e_header(&r, "ETag");
  ck_assert_str_eq(etag, "\"2\"");
  e2e_resp_free(&r);
  char inm[64];
  snprintf(inm, sizeof inm, "If-None-Match: %s", etag);
  const char *h304[] = {inm, NULL};
  ck_assert_int_eq(req("GET", "/v1/store/settings/theme", h304, NULL, &r), 304);
  e2e_resp_free(&r);
  const char *h200[] = {"If-None-Match: \"1\"", NULL};
  ck_assert_int_eq(req("GET", "/v1/store/settings/theme", h200, NULL, &r), 200);
  e2e_resp_free(&r);
  free(etag);

  /* binary value comes back base64 */
  ck_assert_int_eq(e2e_http(&node, "PUT", "/v1/store/bin", NULL, "\xff\x00\x01", 3, &r), 0);
  ck_assert_int_eq(r.status, 201);
  e2e_resp_free(&r);
  ck_assert_int_eq(req("GET", "/v1/store/bin", NULL, NULL, &r), 200);
  j = body_json(&r);
  ck_assert_str_eq(json_string_value(json_object_get(j, "encoding")), "base64");
  ck_assert_str_eq(json_string_value(json_object_get(j, "value")), "/wAB");
  json_decref(j);
  e2e_resp_free(&r);
  ck_assert_int_eq(req("GET", "/v1/store/bin?raw=1", NULL, NULL, &r), 200);
  ck_assert_uint_eq(r.len, 3);
  ck_assert_int_eq(memcmp(r.body, "\xff\x00\x01", 3), 0);
  e2e_resp_free(&r);

  /* empty value, unicode key */
  ck_assert_int_eq(req("PUT", "/v1/store/caf%C3%A9", NULL, "", &r), 201);
  e2e_resp_free(&r);
  ck_assert_int_eq(req("GET", "/v1/store/caf%C3%A9", NULL, NULL, &r), 200);
  j = body_json(&r);
  ck_assert_str_eq(json_string_value(json_object_get(j, "key")), "caf\xc3\xa9");
  ck_assert_str_eq(json_string_value(json_object_get(j, "value")), "");
  json_decref(j);
  e2e_resp_free(&r);

  ck_assert_int_eq(req("DELETE", "/v1/store/settings/theme", NULL, NULL, &r), 200);
  j = body_json(&r);
  ck_assert(json_is_true(json_object_get(j, "deleted")));
  json_decref(j);
  e2e_resp_free(&r);
  expect_error("GET", "/v1/store/settings/theme", NULL, NULL, 404, "not_found");
  expect_error("DELETE", "/v1/store/settings/theme", NULL, NULL, 404, "not_found");
}
END_TEST

START_TEST(test_errors) {
  expect_error("GET", "/nope", NULL, NULL, 404, "route_not_found");
  expect_error("GET", "/v1/store/", NULL, NULL, 400, "invalid_key");
  expect_error("GET", "/v1/store/%ZZ", NULL, NULL, 400, "bad_encoding");
  expect_error("GET", "/v1/store/a%00b", NULL, NULL, 400, "invalid_key");
  expect_error("GET", "/v1/store/%FF", NULL, NULL, 400, "invalid_key");
  e2e_resp r, m;
  ck_assert_int_eq(req("PATCH", "/v1/store/x", NULL, "v", &m), 405);
  char *allow = e2e_header(&m, "Allow");
  ck_assert_ptr_nonnull(allow);
  ck_assert_ptr_nonnull(strstr(allow, "PUT"));
  free(allow);
  e2e_resp_free(&m);
  expect_error("POST", "/v1/status", NULL, "x", 405, "method_not_allowed");
  expect_error("GET", "/v1/batch", NULL, NULL, 405, "method_not_allowed");

  /* 413: the node runs with --max-value-bytes 65536 */
  char *big = malloc(65537 + 1);
  memset(big, 'x', 65537);
  big[65537] = '\0';
  expect_error("PUT", "/v1/store/big", NULL, big, 413, "payload_too_large");
  big[65536] = '\0';
  ck_assert_int_eq(req("PUT", "/v1/store/big", NULL, big, &r), 201);
  e2e_resp_free(&r);
  free(big);

  expect_error("GET", "/v1/store?limit=0", NULL, NULL, 400, "bad_request");
  expect_error("GET", "/v1/store?limit=10001", NULL, NULL, 400, "bad_request");
  expect_error("GET", "/v1/store?prefix=%G0", NULL, NULL, 400, "bad_encoding");
  expect_error("GET", "/v1/store/x?raw=maybe", NULL, NULL, 400, "bad_request");
}
END_TEST

/* Keys up to SA_KEY_MAX bytes are accepted, one more byte is refused. */
START_TEST(test_key_max) {
  char longkey[SA_KEY_MAX + 32];
  strcpy(longkey, "/v1/store/");
  memset(longkey + 10, 'k', SA_KEY_MAX + 1);
  longkey[10 + SA_KEY_MAX + 1] = '\0';
  expect_error("PUT", longkey, NULL, "v", 400, "invalid_key");
  longkey[10 + SA_KEY_MAX] = '\0';
  e2e_resp r;
  ck_assert_int_eq(req("PUT", longkey, NULL, "v", &r), 201);
  e2e_resp_free(&r);
  ck_assert_int_eq(req("GET", longkey, NULL, NULL, &r), 200);
  e2e_resp_free(&r);
}
END_TEST

START_TEST(test_cas) {
  e2e_resp r;
  const char *create[] = {"If-None-Match: *", NULL};
  ck_assert_int_eq(req("PUT", "/v1/store/cas", create, "a", &r), 201);
  e2e_resp_free(&r);
  expect_error("PUT", "/v1/store/cas", create, "b", 412, "precondition_failed");
  const char *v1[] = {"If-Match: \"1\"", NULL};
  ck_assert_int_eq(req("PUT", "/v1/store/cas", v1, "b", &r), 200);
  char *etag = e2e_header(&r, "ETag");
  ck_assert_str_eq(etag, "\"2\"");
  free(etag);
  e2e_resp_free(&r);
  expect_error("PUT", "/v1/store/cas", v1, "c", 412, "precondition_failed");
  const char *any[] = {"If-Match: *", NULL};
  ck_assert_int_eq(req("PUT", "/v1/store/cas", any, "c", &r), 200);
  e2e_resp_free(&r);
  expect_error("PUT", "/v1/store/cas-absent", any, "c", 412, "precondition_failed");
  expect_error("PUT", "/v1/store/cas-absent", v1, "c", 412, "precondition_failed");
  const char *bad[] = {"If-Match: three", NULL};
  expect_error("PUT", "/v1/store/cas", bad, "c", 400, "bad_precondition");
  const char *both[] = {"If-Match: \"3\"", "If-None-Match: *", NULL};
  expect_error("PUT", "/v1/store/cas", both, "c", 400, "bad_precondition");
  /* delete with a condition */
  expect_error("DELETE", "/v1/store/cas", v1, NULL, 412, "precondition_failed");
  const char *v3[] = {"If-Match: \"3\"", NULL};
  ck_assert_int_eq(req("DELETE", "/v1/store/cas", v3, NULL, &r), 200);
  e2e_resp_free(&r);
  /* the value is the one of the last successful write */
  ck_assert_int_eq(req("GET", "/v1/store/cas", NULL, NULL, &r), 404);
  e2e_resp_free(&r);
}
END_TEST

/* Writes keys k00000..k09999 with 10 batches of 1000, then pages through
 * them with a page size that does not divide 10,000. */
START_TEST(test_paging_10000) {
  for (int b = 0; b < 10; b++) {
    json_t *ops = json_array();
    for (int i = 0; i < 1000; i++) {
      char k[32], v[32];
      snprintf(k, sizeof k, "page/k%05d", b * 1000 + i);
      snprintf(v, sizeof v, "v%d", b * 1000 + i);
      json_array_append_new(ops, json_pack("{s:s,s:s,s:s}", "op", "put", "key", k, "value", v));
    }
    json_t *doc = json_pack("{s:o}", "ops", ops);
    char *body = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    e2e_resp r;
    const char *h[] = {"Content-Type: application/json", NULL};
    ck_assert_int_eq(req("POST", "/v1/batch", h, body, &r), 200);
    free(body);
    e2e_resp_free(&r);
  }
  char after[64] = "";
  int seen = 0, pages = 0;
  for (;;) {
    char path[256];
    snprintf(path, sizeof path, "/v1/store?prefix=page%%2F&limit=777&after=%s", after);
    e2e_resp r;
    ck_assert_int_eq(req("GET", path, NULL, NULL, &r), 200);
    json_t *j = body_json(&r);
    json_t *items = json_object_get(j, "items");
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it) {
      char want[32];
      snprintf(want, sizeof want, "page/k%05d", seen);
      ck_assert_str_eq(json_string_value(json_object_get(it, "key")), want);
      seen++;
    }
    pages++;
    ck_assert_int_le(pages, 20);
    bool more = json_is_true(json_object_get(j, "more"));
    if (more) {
      const char *next = json_string_value(json_object_get(j, "next"));
      ck_assert_ptr_nonnull(next);
      char *esc = curl_easy_escape(NULL, next, 0);
      snprintf(after, sizeof after, "%s", esc);
      curl_free(esc);
    } else {
      ck_assert(json_is_null(json_object_get(j, "next")));
    }
    json_decref(j);
    e2e_resp_free(&r);
    if (!more) break;
  }
  ck_assert_int_eq(seen, 10000);
  ck_assert_int_eq(pages, 13);
}
END_TEST

/* Per-op conditions of a batch (issue 25 item 8): checked against the state
 * before the batch, all or nothing, 412 naming the first op that failed. */
START_TEST(test_batch_conditions) {
  e2e_resp r;
  const char *h[] = {"Content-Type: application/json", NULL};
  ck_assert_int_eq(req("PUT", "/v1/store/bc/a", NULL, "a1", &r), 201);
  e2e_resp_free(&r);
  ck_assert_int_eq(req("PUT", "/v1/store/bc/a", NULL, "a2", &r), 200); /* version 2 */
  e2e_resp_free(&r);
  /* the second op's condition fails: 412 naming ops[1], nothing written */
  ck_assert_int_eq(req("POST", "/v1/batch", h,
                       "{\"ops\":[{\"op\":\"put\",\"key\":\"bc/b\",\"value\":\"b\","
                       "\"if_none_match\":\"*\"},"
                       "{\"op\":\"put\",\"key\":\"bc/a\",\"value\":\"a3\",\"if_match\":1},"
                       "{\"op\":\"delete\",\"key\":\"bc/zz\",\"if_match\":7}]}",
                       &r),
                   412);
  json_t *j = body_json(&r);
  json_t *er = json_object_get(j, "error");
  ck_assert_str_eq(json_string_value(json_object_get(er, "code")), "precondition_failed");
  ck_assert_int_eq(json_integer_value(json_object_get(er, "op")), 1);
  ck_assert_str_eq(json_string_value(json_object_get(er, "key")), "bc/a");
  ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(er, "message")),
                               "ops[1]: key 'bc/a' is at version 2, not 1"));
  json_decref(j);
  e2e_resp_free(&r);
  ck_assert_int_eq(req("GET", "/v1/store/bc/b", NULL, NULL, &r), 404); /* ops[0] not applied */
  e2e_resp_free(&r);
  /* conditions see the state before the batch, not earlier ops of it */
  ck_assert_int_eq(req("POST", "/v1/batch", h,
                       "{\"ops\":[{\"op\":\"put\",\"key\":\"bc/b\",\"value\":\"b\","
                       "\"if_none_match\":\"*\"},"
                       "{\"op\":\"put\",\"key\":\"bc/b\",\"value\":\"b2\",\"if_none_match\":\"*\"},"
                       "{\"op\":\"delete\",\"key\":\"bc/a\",\"if_match\":2}]}",
                       &r),
                   200);
  e2e_resp_free(&r);
  ck_assert_int_eq(req("GET", "/v1/store/bc/b?raw=1", NULL, NULL, &r), 200);
  ck_assert_uint_eq(r.len, 2); /* "b2", version 2 */
  e2e_resp_free(&r);
  ck_assert_int_eq(req("GET", "/v1/store/bc/a", NULL, NULL, &r), 404);
  e2e_resp_free(&r);
  /* malformed conditions: 400 before anything */
  const char *bad[] = {
      "{\"ops\":[{\"op\":\"delete\",\"key\":\"bc/b\",\"if_match\":0}]}",
      "{\"ops\":[{\"op\":\"delete\",\"key\":\"bc/b\",\"if_match\":\"2\"}]}",
      "{\"ops\":[{\"op\":\"delete\",\"key\":\"bc/b\",\"if_none_match\":\"x\"}]}",
      "{\"ops\":[{\"op\":\"delete\",\"key\":\"bc/b\",\"if_match\":2,\"if_none_match\":\"*\"}]}",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    ck_assert_int_eq(req("POST", "/v1/batch", h, bad[i], &r), 400);
    e2e_resp_free(&r);
  }
  ck_assert_int_eq(req("GET", "/v1/store/bc/b", NULL, NULL, &r), 200);
  e2e_resp_free(&r);
}
END_TEST

/* DELETE /v1/store?prefix=P (issue 25 item 6): every key under P in one WAL
 * record, none else; past 10,000 keys 413 naming the count, nothing
 * deleted; no prefix 400. */
START_TEST(test_delete_prefix) {
  e2e_resp r;
  const char *keys[] = {"/v1/store/dp/a", "/v1/store/dp/b", "/v1/store/dp/c/d", "/v1/store/dq"};
  for (size_t i = 0; i < 4; i++) {
    ck_assert_int_eq(req("PUT", keys[i], NULL, "v", &r), 201);
    e2e_resp_free(&r);
  }
  ck_assert_int_eq(req("DELETE", "/v1/store?prefix=dp%2F", NULL, NULL, &r), 200);
  json_t *j = body_json(&r);
  ck_assert_int_eq(jint(j, "deleted"), 3);
  ck_assert_str_eq(json_string_value(json_object_get(j, "prefix")), "dp/");
  long long lsn = jint(j, "lsn");
  json_decref(j);
  e2e_resp_free(&r);
  for (size_t i = 0; i < 3; i++) {
    ck_assert_int_eq(req("GET", keys[i], NULL, NULL, &r), 404);
    e2e_resp_free(&r);
  }
  ck_assert_int_eq(req("GET", "/v1/store/dq", NULL, NULL, &r), 200);
  e2e_resp_free(&r);
  /* one record: the feed shows the three deletes under one LSN */
  char path[128];
  snprintf(path, sizeof path, "/v1/changes?since=%lld&prefix=dp%%2F", lsn - 1);
  ck_assert_int_eq(req("GET", path, NULL, NULL, &r), 200);
  j = body_json(&r);
  json_t *ch = json_object_get(j, "changes");
  ck_assert_int_eq(json_array_size(ch), 3);
  for (size_t i = 0; i < 3; i++) {
    ck_assert_int_eq(jint(json_array_get(ch, i), "lsn"), lsn);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(ch, i), "op")), "delete");
  }
  json_decref(j);
  e2e_resp_free(&r);
  /* nothing under it: deleted 0 */
  ck_assert_int_eq(req("DELETE", "/v1/store?prefix=dp%2F", NULL, NULL, &r), 200);
  j = body_json(&r);
  ck_assert_int_eq(jint(j, "deleted"), 0);
  json_decref(j);
  e2e_resp_free(&r);
  /* no prefix, an empty one: 400 */
  ck_assert_int_eq(req("DELETE", "/v1/store", NULL, NULL, &r), 400);
  e2e_resp_free(&r);
  ck_assert_int_eq(req("DELETE", "/v1/store?prefix=", NULL, NULL, &r), 400);
  e2e_resp_free(&r);
  /* 10,001 keys: 413 naming the count, nothing deleted; one fewer: all */
  const char *h[] = {"Content-Type: application/json", NULL};
  for (int b = 0; b < 2; b++) {
    size_t cap = 5001 * 48 + 16, n = 0;
    char *body = malloc(cap);
    ck_assert_ptr_nonnull(body);
    n += (size_t)snprintf(body + n, cap - n, "{\"ops\":[");
    for (int i = 0; i < 5001 - b; i++)
      n += (size_t)snprintf(body + n, cap - n,
                            "%s{\"op\":\"put\",\"key\":\"big/%d/%05d\",\"value\":\"\"}",
                            i ? "," : "", b, i);
    n += (size_t)snprintf(body + n, cap - n, "]}");
    ck_assert_int_eq(req("POST", "/v1/batch", h, body, &r), 200);
    e2e_resp_free(&r);
    free(body);
  }
  ck_assert_int_eq(req("DELETE", "/v1/store?prefix=big%2F", NULL, NULL, &r), 413);
  j = body_json(&r);
  json_t *er = json_object_get(j, "error");
  ck_assert_int_eq(jint(er, "count"), 10001);
  ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(er, "message")),
                               "holds 10001 keys; one delete takes at most 10000"));
  json_decref(j);
  e2e_resp_free(&r);
  ck_assert_int_eq(req("GET", "/v1/store/big/0/00000", NULL, NULL, &r), 200);
  e2e_resp_free(&r);
  ck_assert_int_eq(req("DELETE", "/v1/store/big/0/00000", NULL, NULL, &r), 200);
  e2e_resp_free(&r);
  ck_assert_int_eq(req("DELETE", "/v1/store?prefix=big%2F", NULL, NULL, &r), 200);
  j = body_json(&r);
  ck_assert_int_eq(jint(j, "deleted"), 10000);
  json_decref(j);
  e2e_resp_free(&r);
  ck_assert_int_eq(req("GET", "/v1/store?prefix=big%2F", NULL, NULL, &r), 200);
  j = body_json(&r);
  ck_assert_int_eq(jint(j, "count"), 0);
  json_decref(j);
  e2e_resp_free(&r);
}
END_TEST

START_TEST(test_batch_atomic) {
  e2e_resp r;
  ck_assert_int_eq(req("PUT", "/v1/store/batch/gone", NULL, "x", &r), 201);
  e2e_resp_free(&r);
  const char *h[] = {"Content-Type: application/json", NULL};
  ck_assert_int_eq(req("POST", "/v1/batch", h,
                       "{\"ops\":[{\"op\":\"put\",\"key\":\"batch/a\",\"value\":\"1\"},"
                       "{\"op\":\"put\",\"key\":\"batch/b\",\"value\":\"AAE=\","
                       "\"encoding\":\"base64\"},"
                       "{\"op\":\"delete\",\"key\":\"batch/gone\"},"
                       "{\"op\":\"delete\",\"key\":\"batch/never-there\"}]}",
                       &r),
                   200);
  json_t *j = body_json(&r);
  long long lsn = jint(j, "lsn");
  ck_assert_int_eq(jint(j, "count"), 4);
  json_decref(j);
  e2e_resp_free(&r);
  ck_assert_int_eq(req("GET", "/v1/store/batch/a", NULL, NULL, &r), 200);
  j = body_json(&r);
  ck_assert_int_eq(jint(j, "lsn"), lsn); /* one WAL record for the whole batch */
  json_decref(j);
  e2e_resp_free(&r);
  ck_assert_int_eq(req("GET", "/v1/store/batch/b?raw=1", NULL, NULL, &r), 200);
  ck_assert_uint_eq(r.len, 2);
  e2e_resp_free(&r);
  ck_assert_int_eq(req("GET", "/v1/store/batch/gone", NULL, NULL, &r), 404);
  e2e_resp_free(&r);

  /* One bad op: nothing is applied. */
  expect_error("POST", "/v1/batch", h,
               "{\"ops\":[{\"op\":\"put\",\"key\":\"batch/c\",\"value\":\"1\"},"
               "{\"op\":\"put\",\"key\":\"\",\"value\":\"1\"}]}",
               400, "invalid_key");
  expect_error("POST", "/v1/batch", h,
               "{\"ops\":[{\"op\":\"put\",\"key\":\"batch/c\",\"value\":\"1\"},"
               "{\"op\":\"frob\",\"key\":\"batch/d\"}]}",
               400, "bad_request");
  ck_assert_int_eq(req("GET", "/v1/store/batch/c", NULL, NULL, &r), 404);
  e2e_resp_free(&r);
  expect_error("POST", "/v1/batch", h, "{", 400, "invalid_json");
  const char *text[] = {"Content-Type: text/plain", NULL};
  expect_error("POST", "/v1/batch", text, "{\"ops\":[]}", 415, "unsupported_media_type");
}
END_TEST

START_TEST(test_metrics) {
  e2e_resp r;
  ck_assert_int_eq(req("PUT", "/v1/store/metrics/a", NULL, "1", &r), 201);
  e2e_resp_free(&r);
  ck_assert_int_eq(req("GET", "/v1/store/metrics/a", NULL, NULL, &r), 200); /* commits it */
  e2e_resp_free(&r);
  ck_assert_int_eq(req("GET", "/metrics", NULL, NULL, &r), 200);
  char *ct = e2e_header(&r, "Content-Type");
  ck_assert_ptr_nonnull(strstr(ct, "text/plain"));
  free(ct);
  const char *want[] = {
      "# TYPE softadastra_http_requests_total counter",
      "softadastra_http_requests_total{route=\"/v1/store/{key}\",status=\"201\"}",
      "softadastra_http_request_duration_seconds_bucket{route=\"/v1/store/{key}\",le=\"+Inf\"}",
      "softadastra_wal_bytes ",
      "softadastra_outbox_size ",
      "softadastra_store_keys ",
      "# TYPE softadastra_wal_fsync_duration_seconds histogram",
      "softadastra_wal_fsync_duration_seconds_bucket{le=\"+Inf\"} ",
      "# TYPE softadastra_group_commit_ops histogram",
      "softadastra_group_commit_ops_count ",
      "softadastra_wal_written_bytes_total ",
      "# TYPE softadastra_store_commits_total counter"};
  for (size_t i = 0; i < sizeof want / sizeof *want; i++)
    ck_assert_msg(strstr(r.body, want[i]), "metrics lack %s", want[i]);
  /* The PUT above was fdatasync'ed in some group commit. */
  const char *c = strstr(r.body, "softadastra_wal_fsync_duration_seconds_count ");
  ck_assert_int_ge(atoll(c + strlen("softadastra_wal_fsync_duration_seconds_count ")), 1);
  c = strstr(r.body, "softadastra_group_commit_ops_sum ");
  ck_assert_int_ge(atoll(c + strlen("softadastra_group_commit_ops_sum ")), 1);
  /* ... and applied to the store (the GET waited for that commit). */
  c = strstr(r.body, "\nsoftadastra_store_commits_total "); /* the sample, not # HELP */
  ck_assert_ptr_nonnull(c);
  ck_assert_int_ge(atoll(c + strlen("\nsoftadastra_store_commits_total ")), 1);
  e2e_resp_free(&r);
}
END_TEST

/* Every route of the server is in api/openapi.yaml with its methods, and
 * every path and method of the spec is served (not 404 route_not_found and
 * not 405). */
START_TEST(test_openapi_matches_routes) {
  char path[512];
  snprintf(path, sizeof path, "%s/api/openapi.yaml", e2e_source_dir());
  char *spec = e2e_read_file(path, NULL);
  ck_assert_ptr_nonnull(spec);
  /* Minimal reader: under "paths:", a path is a 2-space-indented key starting
   * with '/', its methods 4-space-indented keys. */
  char spaths[64][128];
  char smethods[64][64];
  int np = 0;
  bool in_paths = false;
  for (char *line = strtok(spec, "\n"); line; line = strtok(NULL, "\n")) {
    if (!strcmp(line, "paths:")) {
      in_paths = true;
      continue;
    }
    if (!in_paths) continue;
    if (line[0] != ' ' && line[0] != '\0') break;
    if (!strncmp(line, "  /", 3)) {
      char *c = strrchr(line, ':');
      ck_assert_ptr_nonnull(c);
      *c = '\0';
      ck_assert_int_lt(np, 64);
      snprintf(spaths[np], sizeof spaths[np], "%s", line + 2);
      smethods[np][0] = '\0';
      np++;
    } else if (np > 0 && !strncmp(line, "    ", 4) && line[4] != ' ') {
      const char *ms[] = {"get:", "put:", "post:", "delete:", "patch:", "head:"};
      for (size_t k = 0; k < 6; k++) {
        if (!strncmp(line + 4, ms[k], strlen(ms[k]))) {
          char up[16];
          size_t n = strlen(ms[k]) - 1;
          for (size_t q = 0; q < n; q++)
            up[q] = (char)(ms[k][q] - 32);
          up[n] = '\0';
          if (smethods[np - 1][0]) strcat(smethods[np - 1], ",");
          strcat(smethods[np - 1], up);
        }
      }
    }
  }
  free(spec);
  size_t nr;
  const api_route_info *routes = api_routes(&nr);
  ck_assert_int_eq(np, (int)nr);
  for (size_t i = 0; i < nr; i++) {
    int found = -1;
    for (int k = 0; k < np; k++)
      if (!strcmp(spaths[k], routes[i].path)) found = k;
    ck_assert_msg(found >= 0, "route %s is not in openapi.yaml", routes[i].path);
    /* Same methods, HEAD aside (implied by GET). */
    char want[64] = "";
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%s", routes[i].methods);
    for (char *m = strtok(tmp, ","); m; m = strtok(NULL, ",")) {
      if (!strcmp(m, "HEAD")) continue;
      if (want[0]) strcat(want, ",");
      strcat(want, m);
    }
    ck_assert_msg(!strcmp(want, smethods[found]), "%s: server %s, spec %s", routes[i].path, want,
                  smethods[found]);
  }
  /* And the running server serves each of them. */
  for (int k = 0; k < np; k++) {
    char p[160];
    snprintf(p, sizeof p, "%.140s", spaths[k]);
    char *brace = strstr(p, "{key}");
    if (brace) strcpy(brace, "openapi-probe");
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%.60s", smethods[k]);
    for (char *m = strtok(tmp, ","); m; m = strtok(NULL, ",")) {
      e2e_resp r;
      const char *h[] = {"Content-Type: application/json", NULL};
      const char *body = !strcmp(m, "POST")  ? "{\"ops\":[{\"op\":\"delete\",\"key\":\"x\"}]}"
                         : !strcmp(m, "PUT") ? "v"
                                             : NULL;
      long st = req(m, p, h, body, &r);
      ck_assert_msg(st != 405 && !strstr(r.body, "route_not_found"), "%s %s -> %ld", m, p, st);
      e2e_resp_free(&r);
    }
  }
}
END_TEST

/* ---- auth and CORS: nodes of their own ------------------------------- */

START_TEST(test_auth) {
  e2e_node n;
  e2e_node_init(&n);
  const char *args[] = {"--auth-token", "s3cret", NULL};
  ck_assert_int_eq(e2e_node_start(&n, args, NULL, NULL), 0);
  e2e_resp r;
  const char *good[] = {"Authorization: Bearer s3cret", NULL};
  const char *wrong[] = {"Authorization: Bearer s3cre", NULL};
  const char *basic[] = {"Authorization: Basic czNjcmV0", NULL};
  /* probes carry no secret by default (issue 25 item 10): /healthz and
   * /readyz answer without the token, /metrics does not */
  const char *probes[] = {"/healthz", "/readyz"};
  for (size_t i = 0; i < 2; i++) {
    ck_assert_int_eq(e2e_http(&n, "GET", probes[i], NULL, NULL, 0, &r), 0);
    ck_assert_msg(r.status == 200, "%s without token: %ld", probes[i], r.status);
    e2e_resp_free(&r);
  }
  /* the dashboard's static files hold no data: the page asks for the token */
  const char *open_routes[] = {"/", "/dashboard", "/dashboard.js", "/dashboard.css"};
  for (size_t i = 0; i < sizeof open_routes / sizeof *open_routes; i++) {
    ck_assert_int_eq(e2e_http(&n, "GET", open_routes[i], NULL, NULL, 0, &r), 0);
    ck_assert_msg(r.status == 200, "%s without token: %ld", open_routes[i], r.status);
    e2e_resp_free(&r);
  }
  const char *routes[] = {"/v1/status", "/v1/sync/status", "/v1/store", "/v1/store/a",
                          "/metrics",   "/v1/changes",     "/nope"};
  for (size_t i = 0; i < sizeof routes / sizeof *routes; i++) {
    ck_assert_int_eq(e2e_http(&n, "GET", routes[i], NULL, NULL, 0, &r), 0);
    ck_assert_msg(r.status == 401, "%s without token: %ld", routes[i], r.status);
    char *www = e2e_header(&r, "WWW-Authenticate");
    ck_assert_ptr_nonnull(www);
    free(www);
    e2e_resp_free(&r);
    ck_assert_int_eq(e2e_http(&n, "GET", routes[i], wrong, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 401);
    e2e_resp_free(&r);
    ck_assert_int_eq(e2e_http(&n, "GET", routes[i], basic, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 401);
    e2e_resp_free(&r);
  }
  ck_assert_int_eq(e2e_http(&n, "PUT", "/v1/store/a", NULL, "1", 1, &r), 0);
  ck_assert_int_eq(r.status, 401);
  e2e_resp_free(&r);
  ck_assert_int_eq(e2e_http(&n, "PUT", "/v1/store/a", good, "1", 1, &r), 0);
  ck_assert_int_eq(r.status, 201);
  e2e_resp_free(&r);
  ck_assert_int_eq(e2e_http(&n, "GET", "/v1/status", good, NULL, 0, &r), 0);
  ck_assert_int_eq(r.status, 200);
  e2e_resp_free(&r);
  /* Refused before the body is read: no "100 Continue", the 401 at once. */
  const char *big = "PUT /v1/store/a HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n"
                    "Expect: 100-continue\r\n\r\n";
  char raw[1024];
  ck_assert_int_eq(e2e_raw(&n, big, strlen(big), false, 10000, raw, sizeof raw), 401);
  ck_assert_ptr_null(strstr(raw, "100 Continue"));
  ck_assert_ptr_nonnull(strstr(raw, "Connection: close"));
  /* The CLI passes the token. */
  char *out = NULL, *err = NULL;
  const char *cli_no[] = {"store", "get", "a", NULL};
  ck_assert_int_eq(e2e_cli(&n, cli_no, NULL, &out, &err), 1);
  ck_assert_ptr_nonnull(strstr(err, "401"));
  free(out);
  free(err);
  const char *cli_yes[] = {"store", "get", "a", "--token", "s3cret", NULL};
  ck_assert_int_eq(e2e_cli(&n, cli_yes, NULL, &out, &err), 0);
  ck_assert_ptr_nonnull(strstr(out, "value    : 1"));
  free(out);
  free(err);
  ck_assert_int_eq(e2e_node_stop(&n, SIGTERM), 0);
  e2e_node_cleanup(&n);
}
END_TEST

/* The settings turn the probes' exemption off (auth_probes, also from the
 * environment) and open /metrics (--no-auth-metrics). */
START_TEST(test_auth_settings) {
  e2e_node n;
  e2e_node_init(&n);
  const char *args[] = {"--auth-token", "s3cret", "--no-auth-metrics", NULL};
  const char *env[] = {"SOFTADASTRA_AUTH_PROBES=true", NULL};
  ck_assert_int_eq(e2e_node_start(&n, args, env, NULL), 0);
  const char *good[] = {"Authorization: Bearer s3cret", NULL};
  e2e_resp r;
  const char *probes[] = {"/healthz", "/readyz"};
  for (size_t i = 0; i < 2; i++) {
    ck_assert_int_eq(e2e_http(&n, "GET", probes[i], NULL, NULL, 0, &r), 0);
    ck_assert_msg(r.status == 401, "%s without token: %ld", probes[i], r.status);
    e2e_resp_free(&r);
    ck_assert_int_eq(e2e_http(&n, "GET", probes[i], good, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 200);
    e2e_resp_free(&r);
  }
  ck_assert_int_eq(e2e_http(&n, "GET", "/metrics", NULL, NULL, 0, &r), 0);
  ck_assert_int_eq(r.status, 200);
  e2e_resp_free(&r);
  ck_assert_int_eq(e2e_http(&n, "GET", "/v1/status", NULL, NULL, 0, &r), 0);
  ck_assert_int_eq(r.status, 401);
  e2e_resp_free(&r);
  int rc = e2e_node_stop(&n, SIGTERM);
  e2e_node_cleanup(&n);
  ck_assert_int_eq(rc, 0);
}
END_TEST

START_TEST(test_cors) {
  e2e_node n;
  e2e_node_init(&n);
  const char *args[] = {"--cors-origins", "http://dash.local, http://other.local", NULL};
  ck_assert_int_eq(e2e_node_start(&n, args, NULL, NULL), 0);
  e2e_resp r;
  const char *ok[] = {"Origin: http://dash.local", NULL};
  const char *no[] = {"Origin: http://evil.example", NULL};
  ck_assert_int_eq(e2e_http(&n, "GET", "/v1/status", ok, NULL, 0, &r), 0);
  ck_assert_int_eq(r.status, 200);
  char *acao = e2e_header(&r, "Access-Control-Allow-Origin");
  ck_assert_str_eq(acao, "http://dash.local");
  free(acao);
  char *expose = e2e_header(&r, "Access-Control-Expose-Headers");
  ck_assert_ptr_nonnull(expose);
  free(expose);
  e2e_resp_free(&r);
  ck_assert_int_eq(e2e_http(&n, "GET", "/v1/status", no, NULL, 0, &r), 0);
  ck_assert_int_eq(r.status, 200);
  ck_assert_ptr_null(e2e_header(&r, "Access-Control-Allow-Origin"));
  e2e_resp_free(&r);
  const char *pre[] = {"Origin: http://other.local", "Access-Control-Request-Method: PUT",
                       "Access-Control-Request-Headers: if-match", NULL};
  ck_assert_int_eq(e2e_http(&n, "OPTIONS", "/v1/store/x", pre, NULL, 0, &r), 0);
  ck_assert_int_eq(r.status, 204);
  acao = e2e_header(&r, "Access-Control-Allow-Origin");
  ck_assert_str_eq(acao, "http://other.local");
  free(acao);
  char *meth = e2e_header(&r, "Access-Control-Allow-Methods");
  ck_assert_ptr_nonnull(strstr(meth, "PUT"));
  free(meth);
  char *hdrs = e2e_header(&r, "Access-Control-Allow-Headers");
  ck_assert_ptr_nonnull(strstr(hdrs, "If-Match"));
  free(hdrs);
  e2e_resp_free(&r);
  const char *pre_no[] = {"Origin: http://evil.example", "Access-Control-Request-Method: PUT",
                          NULL};
  ck_assert_int_eq(e2e_http(&n, "OPTIONS", "/v1/store/x", pre_no, NULL, 0, &r), 0);
  ck_assert_int_eq(r.status, 403);
  e2e_resp_free(&r);
  ck_assert_int_eq(e2e_node_stop(&n, SIGTERM), 0);
  e2e_node_cleanup(&n);

  /* CORS is off by default: no CORS headers at all. */
  e2e_node_init(&n);
  ck_assert_int_eq(e2e_node_start(&n, NULL, NULL, NULL), 0);
  ck_assert_int_eq(e2e_http(&n, "GET", "/v1/status", ok, NULL, 0, &r), 0);
  ck_assert_ptr_null(e2e_header(&r, "Access-Control-Allow-Origin"));
  e2e_resp_free(&r);
  ck_assert_int_eq(e2e_node_stop(&n, SIGTERM), 0);
  e2e_node_cleanup(&n);
}
END_TEST

/* A header of a raw answer (the head up to the blank line), or NULL. */
static bool raw_has(const char *answer, const char *line) {
  const char *end = strstr(answer, "\r\n\r\n");
  const char *p = strstr(answer, line);
  return p && end && p < end;
}

/* issue 25 item 3: the Content-Type of a PUT is kept and served by a raw
 * GET and HEAD: bodies in the loop's window, past it (read into the heap),
 * chunked, and across a kill -9. */
START_TEST(test_content_type) {
  e2e_node n;
  e2e_node_init(&n);
  ck_assert_int_eq(e2e_node_start(&n, NULL, NULL, NULL), 0);
  e2e_resp r;
  const char *json_h[] = {"Content-Type: application/json", NULL};
  ck_assert_int_eq(e2e_http(&n, "PUT", "/v1/store/doc", json_h, "{\"a\":1}", 7, &r), 0);
  ck_assert_int_eq(r.status, 201);
  ck_assert_ptr_nonnull(strstr(r.body, "\"content_type\":\"application/json\""));
  e2e_resp_free(&r);
  ck_assert_int_eq(e2e_http(&n, "GET", "/v1/store/doc?raw=1", NULL, NULL, 0, &r), 0);
  ck_assert_int_eq(r.status, 200);
  ck_assert_str_eq(r.body, "{\"a\":1}");
  char *ct = e2e_header(&r, "Content-Type"), *csp = e2e_header(&r, "Content-Security-Policy"),
       *nos = e2e_header(&r, "X-Content-Type-Options");
  ck_assert_str_eq(ct, "application/json");
  ck_assert_str_eq(csp, "sandbox");
  ck_assert_str_eq(nos, "nosniff");
  free(ct), free(csp), free(nos);
  e2e_resp_free(&r);
  ck_assert_int_eq(e2e_http(&n, "GET", "/v1/store/doc", NULL, NULL, 0, &r), 0);
  json_t *j = body_json(&r);
  ck_assert_str_eq(json_string_value(json_object_get(j, "content_type")), "application/json");
  json_decref(j);
  e2e_resp_free(&r);
  char out[4096];
  const char head[] = "HEAD /v1/store/doc?raw=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  ck_assert_int_eq(e2e_raw(&n, head, sizeof head - 1, false, E2E_WAIT_MS, out, sizeof out), 200);
  ck_assert_msg(raw_has(out, "\r\nContent-Type: application/json\r\n"), "%s", out);
  ck_assert_msg(raw_has(out, "\r\nContent-Length: 7\r\n"), "%s", out);

  /* libcurl's default type for a body (application/x-www-form-urlencoded)
   * stores none: served as application/octet-stream. */
  ck_assert_int_eq(e2e_http(&n, "PUT", "/v1/store/doc", NULL, "plain", 5, &r), 0);
  ck_assert_int_eq(r.status, 200);
  ck_assert_ptr_nonnull(strstr(r.body, "\"content_type\":null"));
  e2e_resp_free(&r);
  ck_assert_int_eq(e2e_http(&n, "GET", "/v1/store/doc?raw=1", NULL, NULL, 0, &r), 0);
  ct = e2e_header(&r, "Content-Type");
  ck_assert_str_eq(ct, "application/octet-stream");
  free(ct);
  e2e_resp_free(&r);

  /* A bad type: 400 naming it, nothing written. */
  const char *bad_h[] = {"Content-Type: image", NULL};
  ck_assert_int_eq(e2e_http(&n, "PUT", "/v1/store/bad", bad_h, "x", 1, &r), 0);
  ck_assert_int_eq(r.status, 400);
  ck_assert_ptr_nonnull(strstr(r.body, "bad_content_type"));
  ck_assert_ptr_nonnull(strstr(r.body, "not a media type"));
  e2e_resp_free(&r);
  ck_assert_int_eq(e2e_http(&n, "GET", "/v1/store/bad", NULL, NULL, 0, &r), 0);
  ck_assert_int_eq(r.status, 404);
  e2e_resp_free(&r);

  /* A 20000-byte body (past the loop's 16 KiB window), and a chunked one. */
  size_t big = 20000;
  char *png = malloc(big);
  memset(png, 0x89, big);
  const char *png_h[] = {"Content-Type: image/png", NULL};
  ck_assert_int_eq(e2e_http(&n, "PUT", "/v1/store/big", png_h, png, big, &r), 0);
  ck_assert_int_eq(r.status, 201);
  e2e_resp_free(&r);
  free(png);
  const char chunked[] = "PUT /v1/store/chunked HTTP/1.1\r\nHost: x\r\n"
                         "Content-Type: text/plain; charset=utf-8\r\n"
                         "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                         "5\r\nhello\r\n0\r\n\r\n";
  ck_assert_int_eq(e2e_raw(&n, chunked, sizeof chunked - 1, false, E2E_WAIT_MS, out, sizeof out),
                   201);

  /* kill -9 once they are acknowledged: they come back with their type. */
  ck_assert_int_eq(e2e_node_stop(&n, SIGKILL), 128 + SIGKILL);
  ck_assert_int_eq(e2e_node_start(&n, NULL, NULL, NULL), 0);
  ck_assert_int_eq(e2e_http(&n, "GET", "/v1/store/big?raw=1", NULL, NULL, 0, &r), 0);
  ck_assert_int_eq(r.status, 200);
  ck_assert_uint_eq(r.len, big);
  ct = e2e_header(&r, "Content-Type");
  ck_assert_str_eq(ct, "image/png");
  free(ct);
  e2e_resp_free(&r);
  ck_assert_int_eq(e2e_http(&n, "GET", "/v1/store/chunked?raw=1", NULL, NULL, 0, &r), 0);
  ck_assert_str_eq(r.body, "hello");
  ct = e2e_header(&r, "Content-Type");
  ck_assert_str_eq(ct, "text/plain; charset=utf-8");
  free(ct);
  e2e_resp_free(&r);
  ck_assert_int_eq(e2e_node_stop(&n, SIGTERM), 0);
  e2e_node_cleanup(&n);
}
END_TEST

static Suite *e2e_api_suite(void) {
  Suite *s = suite_create("e2e_api");
  TCase *tc = tcase_create("shared_node");
  tcase_add_unchecked_fixture(tc, node_up, node_down);
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_status_and_probes);
  tcase_add_test(tc, test_put_get_delete);
  tcase_add_test(tc, test_errors);
  tcase_add_test(tc, test_key_max);
  tcase_add_test(tc, test_cas);
  tcase_add_test(tc, test_paging_10000);
  tcase_add_test(tc, test_batch_atomic);
  tcase_add_test(tc, test_batch_conditions);
  tcase_add_test(tc, test_delete_prefix);
  tcase_add_test(tc, test_metrics);
  tcase_add_test(tc, test_openapi_matches_routes);
  suite_add_tcase(s, tc);
  TCase *own = tcase_create("own_node");
  tcase_set_timeout(own, 120);
  tcase_add_test(own, test_auth);
  tcase_add_test(own, test_auth_settings);
  tcase_add_test(own, test_cors);
  tcase_add_test(own, test_content_type);
  suite_add_tcase(s, own);
  return s;
}

int main(void) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
  SRunner *sr = srunner_create(e2e_api_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  curl_global_cleanup();
  return failed ? 1 : 0;
}
