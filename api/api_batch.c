/*
 * api_batch.c -- POST /v1/batch: several puts and deletes applied at once,
 * under one LSN, all or none; and DELETE /v1/store?prefix=P, every key
 * under a prefix deleted as one such batch.
 *
 * What it is: the strict parsing of {"ops":[{"op","key","value","encoding",
 * "if_match","if_none_match"}]} (no other member, 1..API_BATCH_MAX_OPS
 * operations, valid keys, values as UTF-8 text or base64, each within
 * max_value_bytes; if_match a version >= 1, if_none_match "*", not both) into
 * sa_batch_op and sa_write_opts, and the answer {"count","lsn","durable"}, or
 * 412 naming the op whose condition failed ("op": its index, "key").
 * What it is not: the atomicity nor the conditions' check; the core applies
 * the batch as one WAL record (sa_client_batch_ex), checks every condition
 * against the state before the batch, all before anything is logged, and
 * checks the payload against max_batch_bytes itself.
 *
 * Invariants: nothing reaches the core unless every operation parsed; the
 * ops point into the parsed JSON tree or into decoded base64 buffers, all
 * freed after the core returns.
 *
 * DELETE /v1/store?prefix=P lists the keys under P with their versions and
 * deletes them in one sa_client_batch_ex whose every op is conditioned on
 * the version listed: the record deletes exactly the keys listed, each
 * unchanged since, or nothing (a key changed in between: listed again, up
 * to API_PREFIX_TRIES times, then 409).  A key created under P after the
 * listing is not deleted (its write may even have a lower LSN than the
 * delete's record).  More than API_BATCH_MAX_OPS keys: 413 with the count.
 *
 * Threads: any request thread; sa_client_batch_ex blocks it until the batch is
 * durable (or the node refuses it).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api_internal.h"
#include "api_json.h"
#include "api_util.h"

/* Frees the decoded base64 buffers of a batch. */
static void api_batch_free(char **bufs, size_t n) {
  for (size_t i = 0; i < n; i++)
    free(bufs[i]);
  free(bufs);
}

api_response *api_h_batch(api_ctx *ctx, const api_request *req) {
  const char *ct = api_hdr(req, "Content-Type");
  if (ct && strncasecmp(ct, "application/json", 16) != 0)
    return api_reply_error(415, "unsupported_media_type", "a batch is application/json, not \"%s\"",
                           ct);
  json_error_t jerr;
  json_t *root = json_loadb(req->body ? req->body : "", req->body_len,
                            JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
  if (!root)
    return api_reply_error(400, "invalid_json", "invalid JSON at line %d column %d: %s", jerr.line,
                           jerr.column, jerr.text);
  api_response *e = NULL;
  sa_batch_op *ops = NULL;
  sa_write_opts *conds = NULL;
  bool any_cond = false;
  char **bufs = NULL;
  size_t n = 0;
  json_t *arr = json_is_object(root) ? json_object_get(root, "ops") : NULL;
  if (!arr || !json_is_array(arr) || json_object_size(root) != 1) {
    e = api_reply_error(400, "bad_request", "a batch is {\"ops\": [...]} and nothing else");
    goto out;
  }
  n = json_array_size(arr);
  if (n == 0 || n > API_BATCH_MAX_OPS) {
    e = api_reply_error(400, "bad_request", "a batch holds 1 to %d operations, not %zu",
                        API_BATCH_MAX_OPS, n);
    goto out;
  }
  ops = calloc(n, sizeof *ops);
  conds = calloc(n, sizeof *conds);
  bufs = calloc(n, sizeof *bufs);
  if (!ops || !conds || !bufs) {
    e = &api_oom_response;
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    json_t *o = json_array_get(arr, i);
    const char *opname = NULL, *key = NULL, *enc = "utf-8";
    json_t *val = NULL;
    size_t keylen = 0;
    if (!json_is_object(o)) {
      e = api_reply_error(400, "bad_request", "ops[%zu] is not an object", i);
      goto out;
    }
    const char *mname;
    json_t *mval;
    json_object_foreach(o, mname, mval) {
      if (strcmp(mname, "op") == 0 && json_is_string(mval))
        opname = json_string_value(mval);
      else if (strcmp(mname, "key") == 0 && json_is_string(mval)) {
        key = json_string_value(mval);
        keylen = json_string_length(mval);
      } else if (strcmp(mname, "value") == 0 && json_is_string(mval))
        val = mval;
      else if (strcmp(mname, "encoding") == 0 && json_is_string(mval))
        enc = json_string_value(mval);
      else if (strcmp(mname, "if_match") == 0 && conds[i].cond == SA_COND_NONE) {
        json_int_t v = json_is_integer(mval) ? json_integer_value(mval) : 0;
        if (v < 1) {
          e = api_reply_error(400, "bad_request",
                              "ops[%zu]: if_match is a version (an integer >= 1)", i);
          goto out;
        }
        conds[i].cond = SA_COND_VERSION;
        conds[i].version = (uint64_t)v;
      } else if (strcmp(mname, "if_none_match") == 0 && conds[i].cond == SA_COND_NONE) {
        if (!json_is_string(mval) || strcmp(json_string_value(mval), "*") != 0) {
          e = api_reply_error(400, "bad_request",
                              "ops[%zu]: if_none_match is \"*\" (the key must not exist)", i);
          goto out;
        }
        conds[i].cond = SA_COND_ABSENT;
      } else if (strcmp(mname, "if_match") == 0 || strcmp(mname, "if_none_match") == 0) {
        e = api_reply_error(400, "bad_request",
                            "ops[%zu]: if_match and if_none_match contradict each other", i);
        goto out;
      } else {
        e = api_reply_error(400, "bad_request",
                            "ops[%zu]: unexpected member \"%s\" (or not a string)", i, mname);
        goto out;
      }
    }
    if (!opname || !key) {
      e = api_reply_error(400, "bad_request", "ops[%zu] needs \"op\" and \"key\"", i);
      goto out;
    }
    const char *why = api_key_problem(key, keylen);
    if (why) {
      e = api_reply_error(400, "invalid_key", "ops[%zu]: %s", i, why);
      goto out;
    }
    ops[i].key = key;
    any_cond |= conds[i].cond != SA_COND_NONE;
    if (strcmp(opname, "put") == 0) {
      if (!val) {
        e = api_reply_error(400, "bad_request", "ops[%zu]: a put needs a string \"value\"", i);
        goto out;
      }
      ops[i].op = SA_OP_PUT;
      if (strcmp(enc, "utf-8") == 0) {
        ops[i].data = json_string_value(val);
        ops[i].len = json_string_length(val);
      } else if (strcmp(enc, "base64") == 0) {
        int rc = api_base64_decode(json_string_value(val), json_string_length(val), &bufs[i],
                                   &ops[i].len);
        if (rc != 0) {
          e = rc == -2 ? &api_oom_response
                       : api_reply_error(400, "bad_request", "ops[%zu]: value is not base64", i);
          goto out;
        }
        ops[i].data = bufs[i];
      } else {
        e = api_reply_error(400, "bad_request",
                            "ops[%zu]: encoding must be \"utf-8\" or \"base64\"", i);
        goto out;
      }
      if (ops[i].len > ctx->max_value_bytes) {
        e = api_reply_error(413, "payload_too_large", "ops[%zu]: value over the limit of %u", i,
                            ctx->max_value_bytes);
        goto out;
      }
    } else if (strcmp(opname, "delete") == 0) {
      if (val) {
        e = api_reply_error(400, "bad_request", "ops[%zu]: a delete has no value", i);
        goto out;
      }
      ops[i].op = SA_OP_DELETE;
    } else {
      e = api_reply_error(400, "bad_request", "ops[%zu]: op must be \"put\" or \"delete\"", i);
      goto out;
    }
  }
  sa_write_result res = {0};
  sa_error err = {0};
  size_t failed = 0;
  int rc = sa_client_batch_ex(ctx->client, ops, n, any_cond ? conds : NULL, &res, &failed, &err);
  if (rc == SA_ECONFLICT && failed < n) { /* which op, for a program as for a person */
    const char *msg =
        api_utf8_valid(err.message, strlen(err.message)) ? err.message : "a condition failed";
    e = api_resp_json(api_resp_new(412),
                      json_pack("{s:{s:s,s:s,s:I,s:s}}", "error", "code", "precondition_failed",
                                "message", msg, "op", (json_int_t)failed, "key", ops[failed].key));
    goto out;
  }
  if (rc != 0) {
    e = api_reply_sa_error(rc, &err);
    goto out;
  }
  e = api_resp_json(api_resp_new(200),
                    json_pack("{s:I,s:o,s:b}", "count", (json_int_t)n, "lsn", api_json_u64(res.lsn),
                              "durable", (int)res.durable));
out:
  api_batch_free(bufs, bufs ? n : 0);
  free(ops);
  free(conds);
  json_decref(root);
  return e;
}

/* ---- DELETE /v1/store?prefix=P ------------------------------------------- */

/* Attempts before a prefix delete gives up on keys that keep changing. */
#define API_PREFIX_TRIES 5

/* Counts the keys under prefix (pages without values), for the 413. */
static int api_prefix_count(api_ctx *ctx, const char *prefix, size_t *count, sa_error *err) {
  char *after = NULL;
  *count = 0;
  for (;;) {
    sa_list l;
    int rc = sa_client_list(ctx->client, prefix, after, API_LIST_MAX_LIMIT, false, &l, err);
    if (rc) {
      free(after);
      return rc;
    }
    *count += l.count;
    free(after);
    after = l.more && l.count ? strdup(l.items[l.count - 1].key) : NULL;
    bool more = l.more && l.count;
    sa_list_free(&l);
    if (!more) break;
    if (!after) {
      err->code = SA_ENOMEM;
      snprintf(err->message, sizeof err->message, "out of memory counting keys");
      return SA_ENOMEM;
    }
  }
  return 0;
}

api_response *api_h_delete_prefix(api_ctx *ctx, const char *query) {
  char *prefix = NULL;
  api_response *e = api_query(query, "prefix", &prefix);
  if (e) return e;
  if (!prefix || !prefix[0]) {
    free(prefix);
    return api_reply_error(400, "bad_request",
                           "DELETE /v1/store needs a non-empty prefix (?prefix=P): it deletes "
                           "every key under it");
  }
  sa_error err = {0};
  for (int attempt = 1;; attempt++) {
    /* The keys and their versions now; one record deletes each only if it
     * still has that version, so a key changed in between makes the batch
     * fail whole and the next attempt lists again. */
    sa_list l;
    int rc = sa_client_list(ctx->client, prefix, NULL, API_BATCH_MAX_OPS, false, &l, &err);
    if (rc) {
      e = api_reply_sa_error(rc, &err);
      break;
    }
    if (l.more) { /* more than API_BATCH_MAX_OPS */
      sa_list_free(&l);
      size_t n = 0;
      rc = api_prefix_count(ctx, prefix, &n, &err);
      if (rc) {
        e = api_reply_sa_error(rc, &err);
        break;
      }
      char msg[1400];
      snprintf(msg, sizeof msg,
               "prefix \"%.1024s\" holds %zu keys; one delete takes at most %d (delete narrower "
               "prefixes first); nothing was deleted",
               prefix, n, API_BATCH_MAX_OPS);
      e = api_resp_json(api_resp_new(413),
                        json_pack("{s:{s:s,s:s,s:I}}", "error", "code", "payload_too_large",
                                  "message", msg, "count", (json_int_t)n));
      break;
    }
    if (l.count == 0) {
      sa_list_free(&l);
      e = api_resp_json(api_resp_new(200), json_pack("{s:s,s:i,s:i,s:b}", "prefix", prefix,
                                                     "deleted", 0, "lsn", 0, "durable", 1));
      break;
    }
    sa_batch_op *ops = calloc(l.count, sizeof *ops);
    sa_write_opts *conds = calloc(l.count, sizeof *conds);
    if (!ops || !conds) {
      free(ops);
      free(conds);
      sa_list_free(&l);
      e = &api_oom_response;
      break;
    }
    for (size_t i = 0; i < l.count; i++) {
      ops[i].op = SA_OP_DELETE;
      ops[i].key = l.items[i].key;
      conds[i].cond = SA_COND_VERSION;
      conds[i].version = l.items[i].version;
    }
    sa_write_result res = {0};
    size_t failed = 0;
    rc = sa_client_batch_ex(ctx->client, ops, l.count, conds, &res, &failed, &err);
    size_t n = l.count;
    free(ops);
    free(conds);
    sa_list_free(&l);
    if (rc == 0) {
      e = api_resp_json(api_resp_new(200),
                        json_pack("{s:s,s:I,s:o,s:b}", "prefix", prefix, "deleted", (json_int_t)n,
                                  "lsn", api_json_u64(res.lsn), "durable", (int)res.durable));
      break;
    }
    if (rc != SA_ECONFLICT) {
      e = api_reply_sa_error(rc, &err);
      break;
    }
    if (attempt == API_PREFIX_TRIES) {
      e = api_reply_error(409, "conflict",
                          "keys under the prefix kept changing while it was deleted (%d attempts); "
                          "nothing was deleted",
                          API_PREFIX_TRIES);
      break;
    }
  }
  free(prefix);
  return e;
}
