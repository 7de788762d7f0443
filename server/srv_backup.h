/*
 * srv_backup.h -- GET /v1/backup: one online backup streamed to the client
 * (srv_backup.c has the design).
 *
 * What it is not: the backup itself (sa_client_backup, core/node_backup.c)
 * nor the route's checks (auth, method, closing: api/api_backup.c).
 *
 * Invariants: every backup started here has ended (its thread too) once
 * srv_backup_wait returns 0; the node must not be closed before.
 *
 * Threads: srv_backup_serve on a libmicrohttpd worker; the content reader
 * on the connection's worker; one producer thread ("sa-backup") per
 * running backup; srv_backup_wait on the main thread at shutdown.
 */
#ifndef SA_SRV_BACKUP_H
#define SA_SRV_BACKUP_H

#include <microhttpd.h>

#include "api.h"
#include "softadastra.h"

/* Queues a streamed backup of client as the answer to con: resp (200,
 * its headers; freed here) gives the head.  Starts the producer thread;
 * without one answers 503.  Returns MHD_queue_response's result. */
enum MHD_Result srv_backup_serve(struct MHD_Connection *con, api_response *resp, sa_client *client);

/* Shutdown: every running backup stops at its next chunk (its client sees
 * a cut transfer, which verify and restore refuse). */
void srv_backup_stop(void);

/* Waits until no backup runs (at most timeout_ms); 0, or -1 on timeout.
 * Call after libmicrohttpd has stopped (it frees the responses, which stops
 * the backups whose clients are gone) and before the node closes. */
int srv_backup_wait(unsigned timeout_ms);

#endif
