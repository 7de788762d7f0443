/*
 * api_feed_pos.c -- the change feed's positions are checked before they are
 * served: a position ahead of the node's last LSN, or from another epoch
 * of the node, is refused instead of silently waiting for changes that
 * will never come under those numbers.
 *
 * The design.  A position is an LSN of one incarnation of a node's store,
 * named by its epoch (sa_client_epoch: a random 64-bit id drawn when the
 * store is created and again at every restore).  The feed tells the epoch
 * in every answer ("epoch" in a page and in the SSE ready event, 16 hex
 * digits); a watcher keeps it beside its position and sends it back:
 *   - with since: the query parameter epoch=E;
 *   - in Last-Event-ID: "E:N" (N alone is still an LSN without an epoch).
 * Then:
 *   - E differs from the node's epoch: the node was restored from a backup
 *     or recreated since the watcher read N, and N means nothing here.
 *     Answered like a position the node no longer keeps: 410, code "gone",
 *     "reason": "epoch", with the node's epoch, last_lsn and oldest_since,
 *     and what to do (reload, then follow from now).
 *   - N above the node's last LSN: 409, code "since_ahead", with the real
 *     last_lsn and the epoch (a cursor kept across a wipe, or taken from
 *     another node).  The node's last LSN is read after its read barrier,
 *     so a position taken from any answer it gave is never ahead.
 * Without an epoch only the second check can apply.
 *
 * What it is not: the feed's cursor or pages (api_feed.c).
 *
 * Threads: any request thread.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_feed_pos.h"

#include "api_feed.h"
#include "api_internal.h"
#include "api_json.h"
#include "api_util.h"

/* 1..16 hex digits into *out; -1 otherwise. */
static int api_feed_hex64(const char *s, size_t n, uint64_t *out) {
  if (n == 0 || n > 16) return -1;
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    int d = c >= '0' && c <= '9'   ? c - '0'
            : c >= 'a' && c <= 'f' ? c - 'a' + 10
            : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                   : -1;
    if (d < 0) return -1;
    v = (v << 4) | (uint64_t)d;
  }
  *out = v;
  return 0;
}

int api_feed_pos_parse(const char *s, uint64_t *lsn, uint64_t *epoch, bool *has_epoch) {
  const char *colon = strchr(s, ':');
  if (!colon) return api_parse_u64(s, lsn);
  if (api_feed_hex64(s, (size_t)(colon - s), epoch) != 0) return -1;
  *has_epoch = true;
  return api_parse_u64(colon + 1, lsn);
}

int api_feed_pos_parse_epoch(const char *s, uint64_t *epoch) {
  return api_feed_hex64(s, strlen(s), epoch);
}

void api_feed_epoch_hex(sa_client *c, char out[17]) {
  snprintf(out, 17, "%016" PRIx64, sa_client_epoch(c));
}

api_response *api_feed_pos_check(sa_client *c, const char *query, uint64_t pos, bool has_epoch,
                                 uint64_t epoch) {
  char *e = NULL;
  api_response *r = api_query(query, "epoch", &e);
  if (r) return r;
  if (e) {
    uint64_t q;
    int bad = api_feed_hex64(e, strlen(e), &q);
    free(e);
    if (bad)
      return api_reply_error(400, "bad_request",
                             "epoch must be the node's epoch as given by the feed (16 hex digits)");
    if (has_epoch && q != epoch)
      return api_reply_error(400, "bad_request",
                             "the epoch query parameter and the one in Last-Event-ID differ");
    epoch = q;
    has_epoch = true;
  }
  sa_status st;
  sa_error err = {0};
  int rc = sa_client_status(c, &st, &err); /* after the read barrier: no acked LSN is above */
  if (rc) return api_reply_sa_error(rc, &err);
  uint64_t mine = sa_client_epoch(c);
  char ehex[17];
  api_feed_epoch_hex(c, ehex);
  if (has_epoch && epoch != mine) {
    char msg[400];
    snprintf(msg, sizeof msg,
             "position %" PRIu64 " is from epoch %016" PRIx64
             " of this node, which is now epoch %s (it was restored from a backup or recreated "
             "since): that position means nothing here.  Reload the keys (GET /v1/store), then "
             "follow from since=now with epoch=%s",
             pos, epoch, ehex, ehex);
    return api_resp_json(api_resp_new(410),
                         json_pack("{s:{s:s,s:s,s:s,s:o,s:s,s:o},s:o}", "error", "code", "gone",
                                   "message", msg, "reason", "epoch", "last_lsn",
                                   api_json_u64(st.last_lsn), "epoch", ehex, "oldest_since",
                                   api_json_u64(sa_client_changes_floor(c)), "oldest_since",
                                   api_json_u64(sa_client_changes_floor(c))));
  }
  if (pos > st.last_lsn) {
    char msg[400];
    snprintf(msg, sizeof msg,
             "position %" PRIu64 " is ahead of this node's last LSN %" PRIu64
             " (epoch %s): it was not read from this node as it is now (kept across a wipe, or "
             "taken from another node).  Reload the keys, then follow from since=now",
             pos, st.last_lsn, ehex);
    return api_resp_json(api_resp_new(409), json_pack("{s:{s:s,s:s,s:o,s:s}}", "error", "code",
                                                      "since_ahead", "message", msg, "last_lsn",
                                                      api_json_u64(st.last_lsn), "epoch", ehex));
  }
  return NULL;
}
