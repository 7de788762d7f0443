/*
 * node_options.c -- sa_options: the defaults (sa_options_persistent,
 * sa_options_memory), the check of a caller's options at open, and the
 * store path derived from the WAL path.
 *
 * What it is not: where options take effect; the files that use a field
 * read it from c->opts.
 *
 * Invariants: after node_check_options returns 0 every numeric field is
 * non-zero and in its documented range (softadastra.h).
 *
 * Threads: any (pure functions of their arguments).
 */
#include "node_internal.h"

#include <stdlib.h>
#include <string.h>

static sa_options node_defaults(const char *node_id, const char *wal_path, bool persistent) {
  sa_options o;
  memset(&o, 0, sizeof o);
  o.node_id = node_id;
  o.wal_path = wal_path;
  o.persistent = persistent;
  o.auto_flush = true;
  o.flush_interval_ms = SA_DEFAULT_FLUSH_INTERVAL_MS;
  o.store_sync_interval_ms = SA_DEFAULT_STORE_SYNC_INTERVAL_MS;
  o.store_writeback_ms = SA_DEFAULT_STORE_WRITEBACK_MS;
  o.store_commit_ms = SA_DEFAULT_STORE_COMMIT_MS;
  o.store_commit_busy_ms = SA_DEFAULT_STORE_COMMIT_BUSY_MS;
  o.store_commit_sync_ms = SA_DEFAULT_STORE_COMMIT_SYNC_MS;
  o.tick_interval_ms = SA_DEFAULT_TICK_INTERVAL_MS;
  o.max_value_bytes = SA_DEFAULT_MAX_VALUE_BYTES;
  o.max_batch_bytes = SA_DEFAULT_MAX_BATCH_BYTES;
  o.wal_max_bytes = SA_DEFAULT_WAL_MAX_BYTES;
  o.store_max_bytes = SA_DEFAULT_STORE_MAX_BYTES;
  o.sync_batch_size = SA_DEFAULT_SYNC_BATCH_SIZE;
  o.max_retries = SA_DEFAULT_MAX_RETRIES;
  o.retry_base_ms = SA_DEFAULT_RETRY_BASE_MS;
  o.retry_max_ms = SA_DEFAULT_RETRY_MAX_MS;
  o.ack_timeout_ms = SA_DEFAULT_ACK_TIMEOUT_MS;
  o.outbox_max = SA_DEFAULT_OUTBOX_MAX;
  o.outbox_retention_ms = SA_DEFAULT_OUTBOX_RETENTION_MS;
  o.max_clock_drift_ms = SA_DEFAULT_MAX_CLOCK_DRIFT_MS;
  o.tombstone_ttl_s = SA_DEFAULT_TOMBSTONE_TTL_S;
  return o;
}

sa_options sa_options_persistent(const char *node_id, const char *wal_path) {
  return node_defaults(node_id, wal_path, true);
}

sa_options sa_options_memory(const char *node_id) {
  return node_defaults(node_id, NULL, false);
}

/* Fills zero numeric fields with defaults and checks ranges. */
int node_check_options(sa_options *o, sa_error *err) {
  int rc = sa_node_id_check(o->node_id, err);
  if (rc) return rc;
  if (o->transport_kind && *o->transport_kind && strcmp(o->transport_kind, "stub") != 0 &&
      strcmp(o->transport_kind, "disabled") != 0)
    return sa_fail(err, SA_EINVAL,
                   "transport_kind '%.40s' is unknown: built in are \"stub\" and \"disabled\" "
                   "(or pass a transport of your own)",
                   o->transport_kind);
  if (o->discovery_kind && *o->discovery_kind && strcmp(o->discovery_kind, "stub") != 0 &&
      strcmp(o->discovery_kind, "disabled") != 0)
    return sa_fail(err, SA_EINVAL,
                   "discovery_kind '%.40s' is unknown: built in are \"stub\" and \"disabled\"",
                   o->discovery_kind);
  if ((o->transport && (!o->transport->kind || !o->transport->send)) ||
      (o->discovery && (!o->discovery->kind || !o->discovery->peers)))
    return sa_fail(err, SA_EINVAL,
                   "a custom transport needs kind and send; a discovery needs kind and peers");
  if (o->persistent && (!o->wal_path || !*o->wal_path))
    return sa_fail(err, SA_EINVAL,
                   "wal_path is empty: a persistent node needs a WAL file such as data/%s.wal",
                   o->node_id);
  if (!o->flush_interval_ms) o->flush_interval_ms = SA_DEFAULT_FLUSH_INTERVAL_MS;
  if (!o->store_sync_interval_ms) o->store_sync_interval_ms = SA_DEFAULT_STORE_SYNC_INTERVAL_MS;
  if (!o->store_writeback_ms) o->store_writeback_ms = SA_DEFAULT_STORE_WRITEBACK_MS;
  if (!o->store_commit_ms) o->store_commit_ms = SA_DEFAULT_STORE_COMMIT_MS;
  if (!o->store_commit_busy_ms) o->store_commit_busy_ms = SA_DEFAULT_STORE_COMMIT_BUSY_MS;
  if (!o->store_commit_sync_ms) o->store_commit_sync_ms = SA_DEFAULT_STORE_COMMIT_SYNC_MS;
  if (!o->tick_interval_ms) o->tick_interval_ms = SA_DEFAULT_TICK_INTERVAL_MS;
  if (!o->max_value_bytes) o->max_value_bytes = SA_DEFAULT_MAX_VALUE_BYTES;
  if (!o->max_batch_bytes) o->max_batch_bytes = SA_DEFAULT_MAX_BATCH_BYTES;
  if (!o->wal_max_bytes) o->wal_max_bytes = SA_DEFAULT_WAL_MAX_BYTES;
  if (!o->store_max_bytes) o->store_max_bytes = SA_DEFAULT_STORE_MAX_BYTES;
  if (!o->sync_batch_size) o->sync_batch_size = SA_DEFAULT_SYNC_BATCH_SIZE;
  if (!o->max_retries) o->max_retries = SA_DEFAULT_MAX_RETRIES;
  if (!o->retry_base_ms) o->retry_base_ms = SA_DEFAULT_RETRY_BASE_MS;
  if (!o->retry_max_ms) o->retry_max_ms = SA_DEFAULT_RETRY_MAX_MS;
  if (!o->ack_timeout_ms) o->ack_timeout_ms = SA_DEFAULT_ACK_TIMEOUT_MS;
  if (!o->outbox_max) o->outbox_max = SA_DEFAULT_OUTBOX_MAX;
  if (!o->outbox_retention_ms) o->outbox_retention_ms = SA_DEFAULT_OUTBOX_RETENTION_MS;
  if (!o->max_clock_drift_ms) o->max_clock_drift_ms = SA_DEFAULT_MAX_CLOCK_DRIFT_MS;
  if (!o->tombstone_ttl_s) o->tombstone_ttl_s = SA_DEFAULT_TOMBSTONE_TTL_S;
  if (o->sync_batch_size > 1024)
    return sa_fail(err, SA_EINVAL, "sync_batch_size %u is out of range (1..1024)",
                   o->sync_batch_size);
  if (o->retry_max_ms < o->retry_base_ms)
    return sa_fail(err, SA_EINVAL, "retry_max_ms %u is below retry_base_ms %u", o->retry_max_ms,
                   o->retry_base_ms);
  if (o->tick_interval_ms > 3600000)
    return sa_fail(err, SA_EINVAL, "tick_interval_ms %u is out of range (1..3600000)",
                   o->tick_interval_ms);
  if (o->store_sync_interval_ms < 10 || o->store_sync_interval_ms > 60000)
    return sa_fail(err, SA_EINVAL, "store_sync_interval_ms %u is out of range (10..60000)",
                   o->store_sync_interval_ms);
  if (o->store_writeback_ms != SA_STORE_WRITEBACK_OFF && o->store_writeback_ms > 1000)
    return sa_fail(err, SA_EINVAL,
                   "store_writeback_ms %u is out of range (1..1000, or SA_STORE_WRITEBACK_OFF)",
                   o->store_writeback_ms);
  if (o->store_commit_ms > 1000)
    return sa_fail(err, SA_EINVAL, "store_commit_ms %u is out of range (1..1000)",
                   o->store_commit_ms);
  if (o->store_commit_busy_ms != SA_STORE_COMMIT_BUSY_OFF && o->store_commit_busy_ms > 1000)
    return sa_fail(err, SA_EINVAL,
                   "store_commit_busy_ms %u is out of range (1..1000, or SA_STORE_COMMIT_BUSY_OFF)",
                   o->store_commit_busy_ms);
  if (o->store_commit_sync_ms != SA_STORE_COMMIT_BUSY_OFF && o->store_commit_sync_ms > 1000)
    return sa_fail(err, SA_EINVAL,
                   "store_commit_sync_ms %u is out of range (1..1000, or SA_STORE_COMMIT_BUSY_OFF)",
                   o->store_commit_sync_ms);
  if (o->flush_interval_ms > 3600000)
    return sa_fail(err, SA_EINVAL, "flush_interval_ms %u is out of range (1..3600000)",
                   o->flush_interval_ms);
  if (o->max_value_bytes > (256u << 20))
    return sa_fail(err, SA_EINVAL, "max_value_bytes %u is out of range (1..268435456)",
                   o->max_value_bytes);
  if (o->max_batch_bytes > (512u << 20))
    return sa_fail(err, SA_EINVAL, "max_batch_bytes %u is out of range (1..536870912)",
                   o->max_batch_bytes);
  if (o->wal_max_bytes < (64u << 10))
    return sa_fail(err, SA_EINVAL, "wal_max_bytes %llu is too small (at least 65536)",
                   (unsigned long long)o->wal_max_bytes);
  if (o->store_max_bytes < (1u << 20) || o->store_max_bytes > ((uint64_t)SIZE_MAX >> 1))
    return sa_fail(err, SA_EINVAL, "store_max_bytes %llu is out of range (at least 1048576)",
                   (unsigned long long)o->store_max_bytes);
  return 0;
}

/* store path for a WAL path: "x.wal" -> "x.mdb", anything else + ".mdb". */
char *node_store_path(const char *wal_path) {
  size_t n = strlen(wal_path);
  char *s = malloc(n + 5);
  if (!s) return NULL;
  memcpy(s, wal_path, n + 1);
  if (n > 4 && strcmp(s + n - 4, ".wal") == 0)
    memcpy(s + n - 4, ".mdb", 5);
  else
    memcpy(s + n, ".mdb", 5);
  return s;
}
