/*
 * api_feed_pos.h -- the change feed's position checks (api_feed_pos.c has
 * the design: positions ahead of the node, positions of another epoch).
 *
 * What it is not: the feed (api_feed.h).
 *
 * Threads: any request thread.
 */
#ifndef SA_API_FEED_POS_H
#define SA_API_FEED_POS_H

#include <stdbool.h>
#include <stdint.h>

#include "api.h"
#include "softadastra.h"

/* Parses a start position: "N", or "E:N" (E: the epoch, 1..16 hex digits;
 * then *has_epoch is set).  0, or -1 when malformed. */
int api_feed_pos_parse(const char *s, uint64_t *lsn, uint64_t *epoch, bool *has_epoch);

/* An epoch as sent back by a client (1-16 hex digits) into *epoch; -1 when
 * malformed. */
int api_feed_pos_parse_epoch(const char *s, uint64_t *epoch);

/* The node's epoch as 16 hex digits. */
void api_feed_epoch_hex(sa_client *c, char out[17]);

/* Checks an explicit start position pos (with the epoch it came with, and
 * the query's epoch parameter) against the node: NULL when it may be
 * served, else the answer (400 bad epoch, 409 since_ahead, 410 gone with
 * reason "epoch"). */
api_response *api_feed_pos_check(sa_client *c, const char *query, uint64_t pos, bool has_epoch,
                                 uint64_t epoch);

#endif
