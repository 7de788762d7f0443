/*
 * worker.c -- the core's background-thread primitive, see worker.h.
 *
 * What it is not: a scheduler or a pool; one sa_worker is one thread.
 *
 * Invariants: see worker.h (no lost kick, no spurious return, stop sticks).
 *
 * Threads: the owner starts and stops; anyone kicks; the worker waits.
 */
#define _GNU_SOURCE
#include "worker.h"

#include "internal.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <time.h>

int sa_worker_init(sa_worker *w) {
  memset(w, 0, sizeof *w);
  int rc = pthread_mutex_init(&w->mu, NULL);
  if (rc) return rc;
  pthread_condattr_t ca;
  if ((rc = pthread_condattr_init(&ca)) != 0) {
    pthread_mutex_destroy(&w->mu);
    return rc;
  }
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  rc = pthread_cond_init(&w->cv, &ca);
  pthread_condattr_destroy(&ca);
  if (rc) pthread_mutex_destroy(&w->mu);
  return rc;
}

void sa_worker_destroy(sa_worker *w) {
  assert(!w->started || w->joined); /* a running thread would use them */
  pthread_cond_destroy(&w->cv);
  pthread_mutex_destroy(&w->mu);
}

static void *sa_worker_main(void *arg) {
  sa_worker *w = arg;
  pthread_setname_np(pthread_self(), w->name); /* top -H, ps -T, perf, gdb */
  w->fn(w->arg);
  return NULL;
}

int sa_worker_start(sa_worker *w, const char *name, void (*fn)(void *), void *arg) {
  assert(!w->started);
  snprintf(w->name, sizeof w->name, "%s", name);
  w->fn = fn;
  w->arg = arg;
  w->started = true; /* before the thread runs: it may read the flag */
  int rc = pthread_create(&w->thread, NULL, sa_worker_main, w);
  if (rc) w->started = false;
  return rc;
}

void sa_worker_kick_locked(sa_worker *w) {
  w->kicked = true;
  pthread_cond_signal(&w->cv);
}

void sa_worker_kick(sa_worker *w) {
  pthread_mutex_lock(&w->mu);
  sa_worker_kick_locked(w);
  pthread_mutex_unlock(&w->mu);
}

sa_worker_wake sa_worker_wait(sa_worker *w, uint64_t deadline_ns) {
  assert(sa_worker_is_self(w));
  struct timespec ts = {(time_t)(deadline_ns / 1000000000u), (long)(deadline_ns % 1000000000u)};
  for (;;) {
    if (w->stop) return SA_WORKER_STOP;
    if (w->kicked) {
      w->kicked = false;
      return SA_WORKER_KICK;
    }
    if (deadline_ns == SA_WORKER_FOREVER) {
      pthread_cond_wait(&w->cv, &w->mu);
    } else if (pthread_cond_timedwait(&w->cv, &w->mu, &ts) == ETIMEDOUT) {
      if (w->stop) return SA_WORKER_STOP;
      if (w->kicked) continue; /* a kick that raced the deadline wins */
      return SA_WORKER_TIMEOUT;
    }
  }
}

void sa_worker_stop_locked(sa_worker *w) {
  w->stop = true;
  pthread_cond_signal(&w->cv);
}

void sa_worker_join(sa_worker *w) {
  if (!w->started || w->joined) return;
  assert(!sa_worker_is_self(w)); /* a worker cannot join itself */
  pthread_join(w->thread, NULL);
  w->joined = true;
}

void sa_worker_stop(sa_worker *w) {
  if (!w->started || w->joined) return;
  pthread_mutex_lock(&w->mu);
  sa_worker_stop_locked(w);
  pthread_mutex_unlock(&w->mu);
  sa_worker_join(w);
}

bool sa_worker_is_self(const sa_worker *w) {
  /* w->thread is written by pthread_create before the thread starts. */
  return w->started && pthread_equal(w->thread, pthread_self());
}
