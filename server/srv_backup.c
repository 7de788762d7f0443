/*
 * srv_backup.c -- GET /v1/backup streamed to the client without holding a
 * libmicrohttpd thread for the backup's length (srv_backup.h).
 *
 * Why streaming (as etcd's snapshot save and Consul's snapshot save do)
 * rather than writing into a directory on the node's machine: the backup
 * leaves the machine the node runs on (a disk failure there takes no
 * backup with it), the node needs neither a writable destination nor room
 * for a second copy of its store, and the API takes no file path from a
 * client.  The cost is a client that stays connected for the copy's length;
 * a cut transfer leaves a file without its trailer, which verify and
 * restore refuse.
 *
 * One backup is a job (srv_bk): a producer thread runs sa_client_backup
 * with a sink that copies into the job's ring buffer (SRV_BK_RING bytes;
 * the sink waits while it is full, which slows LMDB's copy down to the
 * client's pace); libmicrohttpd reads the ring through srv_bk_reader on the
 * connection's worker.  An empty ring suspends the connection; the sink
 * resumes it when bytes arrive or the backup ends (the change feed's
 * suspend/resume pattern, srv_sse.c).  A failed backup ends the chunked
 * body without its last chunk, so the client sees a cut transfer.
 *
 * Invariants: mu guards everything in srv_bk but the immutable fields;
 * `suspended` is set only by the reader and cleared only by the producer,
 * both under mu; a job is freed by the last of its two owners (the
 * producer thread, libmicrohttpd's response); srv_bk_running counts
 * producer threads alive.
 *
 * Threads: see srv_backup.h.  Lock order: job mu -> libmicrohttpd's locks
 * (MHD_resume_connection, as the feed hub does).
 */
#define _GNU_SOURCE
#include "srv_backup.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "srv_answer.h"
#include "srv_log.h"

#define SRV_BK_RING (4u << 20) /* bytes buffered between the copy and the socket */
#define SRV_BK_BLOCK (256u * 1024u)

typedef struct srv_bk {
  pthread_mutex_t mu;
  pthread_cond_t cv; /* the reader took bytes, or the client went away */
  sa_client *client; /* borrowed */
  struct MHD_Connection *con;
  unsigned char *ring;
  size_t head, len; /* read position, bytes buffered */
  bool suspended;   /* by the reader, waiting for bytes */
  bool done;        /* the backup ended (rc) */
  bool abandoned;   /* libmicrohttpd freed the response, or shutdown: stop */
  bool stopped;     /* ... it was the shutdown (srv_backup_stop) */
  int rc;
  int refs; /* producer + response */
  sa_error err;
} srv_bk;

static pthread_mutex_t srv_bk_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t srv_bk_cv = PTHREAD_COND_INITIALIZER;
static unsigned srv_bk_running;
static atomic_bool srv_bk_stop; /* srv_backup_stop: every running backup ends */

static void srv_bk_unref(srv_bk *b) {
  pthread_mutex_lock(&b->mu);
  bool last = --b->refs == 0;
  pthread_mutex_unlock(&b->mu);
  if (!last) return;
  pthread_mutex_destroy(&b->mu);
  pthread_cond_destroy(&b->cv);
  free(b->ring);
  free(b);
}

/* With b->mu held: a suspended reader has something to do. */
static void srv_bk_wake_locked(srv_bk *b) {
  if (!b->suspended) return;
  b->suspended = false;
  MHD_resume_connection(b->con);
}

static int srv_bk_sink(void *ctx, const void *buf, size_t n) {
  srv_bk *b = ctx;
  const unsigned char *p = buf;
  pthread_mutex_lock(&b->mu);
  while (n) {
    while (b->len == SRV_BK_RING && !b->abandoned && !atomic_load(&srv_bk_stop)) {
      struct timespec dl; /* bounded: srv_backup_stop does not signal each job */
      clock_gettime(CLOCK_REALTIME, &dl);
      dl.tv_nsec += 100 * 1000000L;
      if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
      }
      pthread_cond_timedwait(&b->cv, &b->mu, &dl);
    }
    if (b->abandoned || atomic_load(&srv_bk_stop)) {
      b->stopped = !b->abandoned;
      b->abandoned = true;
      break;
    }
    size_t tail = (b->head + b->len) % SRV_BK_RING;
    size_t room = SRV_BK_RING - b->len;
    size_t run = SRV_BK_RING - tail;
    size_t k = n < room ? n : room;
    if (k > run) k = run;
    memcpy(b->ring + tail, p, k);
    b->len += k;
    p += k;
    n -= k;
    srv_bk_wake_locked(b);
  }
  bool stop = b->abandoned;
  pthread_mutex_unlock(&b->mu);
  return stop ? 1 : 0;
}

static void *srv_bk_main(void *arg) {
  srv_bk *b = arg;
  pthread_setname_np(pthread_self(), "sa-backup");
  sa_backup_info info;
  sa_error err = {0};
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  int rc = sa_client_backup(b->client, srv_bk_sink, b, &info, &err);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
  pthread_mutex_lock(&b->mu);
  const char *why = b->stopped ? "the node is shutting down" : "the client went away";
  bool abandoned = b->abandoned;
  b->done = true;
  b->rc = rc;
  b->err = err;
  srv_bk_wake_locked(b);
  pthread_mutex_unlock(&b->mu);
  if (rc == 0)
    srv_log(SRV_LOG_INFO, "backup", "bytes=%llu applied_lsn=%llu acked_lsn=%llu ms=%ld",
            (unsigned long long)info.file_bytes, (unsigned long long)info.applied_lsn,
            (unsigned long long)info.acked_lsn, ms);
  else
    srv_log(SRV_LOG_WARN, "backup", "failed=%s ms=%ld", abandoned ? why : err.message, ms);
  srv_bk_unref(b);
  pthread_mutex_lock(&srv_bk_mu);
  srv_bk_running--;
  pthread_cond_broadcast(&srv_bk_cv);
  pthread_mutex_unlock(&srv_bk_mu);
  return NULL;
}

static ssize_t srv_bk_reader(void *cls, uint64_t pos, char *out, size_t max) {
  (void)pos;
  srv_bk *b = cls;
  pthread_mutex_lock(&b->mu);
  ssize_t r;
  if (b->len) {
    size_t run = SRV_BK_RING - b->head;
    size_t k = b->len < max ? b->len : max;
    if (k > run) k = run;
    memcpy(out, b->ring + b->head, k);
    b->head = (b->head + k) % SRV_BK_RING;
    b->len -= k;
    pthread_cond_signal(&b->cv);
    r = (ssize_t)k;
  } else if (b->done) {
    r = b->rc == 0 ? MHD_CONTENT_READER_END_OF_STREAM : MHD_CONTENT_READER_END_WITH_ERROR;
  } else {
    b->suspended = true; /* the producer resumes us */
    MHD_suspend_connection(b->con);
    r = 0;
  }
  pthread_mutex_unlock(&b->mu);
  return r;
}

static void srv_bk_free_cb(void *cls) {
  srv_bk *b = cls;
  pthread_mutex_lock(&b->mu);
  b->abandoned = true;
  b->suspended = false; /* the connection is gone: never resumed from here on */
  pthread_cond_broadcast(&b->cv);
  pthread_mutex_unlock(&b->mu);
  srv_bk_unref(b);
}

enum MHD_Result srv_backup_serve(struct MHD_Connection *con, api_response *resp,
                                 sa_client *client) {
  srv_bk *b = calloc(1, sizeof *b);
  unsigned char *ring = b ? malloc(SRV_BK_RING) : NULL;
  if (!ring) {
    free(b);
    api_response_free(resp);
    return srv_answer_mhd(con, api_error_response(NULL, 500, "internal_error",
                                                  "out of memory for a backup; try again"));
  }
  pthread_mutex_init(&b->mu, NULL);
  pthread_cond_init(&b->cv, NULL);
  b->client = client;
  b->con = con;
  b->ring = ring;
  b->refs = 2;
  pthread_t th;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_mutex_lock(&srv_bk_mu);
  bool started = pthread_create(&th, &attr, srv_bk_main, b) == 0;
  if (started) srv_bk_running++;
  pthread_mutex_unlock(&srv_bk_mu);
  pthread_attr_destroy(&attr);
  if (!started) {
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
    free(ring);
    free(b);
    api_response_free(resp);
    return srv_answer_mhd(con, api_error_response(NULL, 500, "internal_error",
                                                  "cannot start a backup now; try again"));
  }
  /* From here the response owns the job with the producer: freed with it. */
  struct MHD_Response *m = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, SRV_BK_BLOCK,
                                                             srv_bk_reader, b, srv_bk_free_cb);
  if (!m) {
    srv_bk_free_cb(b); /* the producer sees abandoned and stops */
    api_response_free(resp);
    return MHD_NO;
  }
  srv_answer_mhd_headers(m, resp);
  enum MHD_Result ok = MHD_queue_response(con, resp->status, m);
  MHD_destroy_response(m);
  api_response_free(resp);
  return ok;
}

void srv_backup_stop(void) {
  atomic_store(&srv_bk_stop, true);
}

int srv_backup_wait(unsigned timeout_ms) {
  struct timespec dl;
  clock_gettime(CLOCK_REALTIME, &dl);
  dl.tv_sec += timeout_ms / 1000;
  dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
  if (dl.tv_nsec >= 1000000000L) {
    dl.tv_sec++;
    dl.tv_nsec -= 1000000000L;
  }
  pthread_mutex_lock(&srv_bk_mu);
  int rc = 0;
  while (srv_bk_running && rc == 0)
    if (pthread_cond_timedwait(&srv_bk_cv, &srv_bk_mu, &dl) != 0) rc = -1;
  int left = srv_bk_running ? -1 : 0;
  pthread_mutex_unlock(&srv_bk_mu);
  return left;
}
