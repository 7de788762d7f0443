/*
 * api_backup.c -- GET /v1/backup: the route's checks and answer head, and
 * the backup series of GET /metrics.
 *
 * What it is: the handler answers a placeholder 200 whose `backup` flag
 * tells the server to stream one online backup as the body (the server's
 * srv_backup.c runs sa_client_backup; the format is described in
 * core/store_backup.c).  Auth and the method are checked by the router
 * (api_routes.c) like every route.
 *
 * What it is not: the backup (core/node_backup.c) nor the streaming.
 *
 * Invariants: a request that cannot wait (can_defer false: the server is
 * closing) is answered 503, never a placeholder; HEAD gets the head and
 * runs no backup.
 *
 * Threads: any request thread.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "api_internal.h"

api_response *api_h_backup(api_ctx *ctx, const api_request *req) {
  bool head = !strcmp(req->method, "HEAD"); /* the head alone: no backup runs */
  if (!req->can_defer && !head)
    return api_reply_error(503, "shutting_down", "the node is shutting down; no backup now");
  api_response *r = api_resp_new(200);
  if (!r) return &api_oom_response;
  r->content_type = "application/octet-stream";
  r->backup = !head;
  api_resp_header(r, "Content-Disposition", "attachment; filename=\"%s.sabackup\"", ctx->node_id);
  api_resp_header(r, "Cache-Control", "no-store");
  api_resp_header(r, "X-Softadastra-Epoch", "%016" PRIx64, sa_client_epoch(ctx->client));
  return r;
}

void api_backup_write_metrics(api_ctx *ctx, FILE *f) {
  sa_backup_stats b;
  sa_client_backup_stats(ctx->client, &b);
  fprintf(f,
          "# HELP softadastra_backups_total Backups (GET /v1/backup) finished since the node "
          "opened.\n"
          "# TYPE softadastra_backups_total counter\nsoftadastra_backups_total %llu\n"
          "# HELP softadastra_backups_failed_total Backups stopped by an error or a client that "
          "went away.\n"
          "# TYPE softadastra_backups_failed_total counter\n"
          "softadastra_backups_failed_total %llu\n"
          "# HELP softadastra_backups_running Backups running now.\n"
          "# TYPE softadastra_backups_running gauge\nsoftadastra_backups_running %llu\n"
          "# HELP softadastra_backup_bytes_total Bytes of the finished backups.\n"
          "# TYPE softadastra_backup_bytes_total counter\nsoftadastra_backup_bytes_total %llu\n"
          "# HELP softadastra_backup_last_duration_seconds Duration of the last finished "
          "backup.\n"
          "# TYPE softadastra_backup_last_duration_seconds gauge\n"
          "softadastra_backup_last_duration_seconds %.3f\n"
          "# HELP softadastra_backup_last_bytes Size of the last finished backup.\n"
          "# TYPE softadastra_backup_last_bytes gauge\nsoftadastra_backup_last_bytes %llu\n",
          (unsigned long long)b.total, (unsigned long long)b.failed, (unsigned long long)b.running,
          (unsigned long long)b.bytes, (double)b.last_ms / 1000.0,
          (unsigned long long)b.last_bytes);
}
