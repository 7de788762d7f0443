/*
 * worker.h -- one background thread of the core: a mutex, a condition
 * variable on CLOCK_MONOTONIC, a stop flag and a kick flag, with
 * start/kick/stop and a timed wait.  The writer, the committer, the store
 * syncer and the tick thread are each one sa_worker (docs/threads.md).
 *
 * What it is not: a queue.  The owner keeps its own job state (a request
 * FIFO, a group queue) under the worker's mutex, kicks the worker after a
 * change, and the thread's loop re-checks that state after every wait.
 *
 * Invariants:
 *  - stop and kicked are read and written under mu only.
 *  - A kick is never lost: it sets kicked, and the next sa_worker_wait
 *    returns at once (then clears it).  A wait may therefore return KICK
 *    with nothing new to do; loops re-check their own state.
 *  - sa_worker_wait never returns for a spurious wake-up: KICK, STOP or
 *    TIMEOUT each mean what they say.
 *  - Once stop is set it stays set; sa_worker_wait then returns STOP at once.
 *  - sa_worker_kick is safe after sa_worker_stop (until sa_worker_destroy):
 *    it only takes the mutex.
 *
 * Threads: sa_worker_init/destroy/start/stop from the owner (one thread at a
 * time); sa_worker_kick from any thread; sa_worker_wait from the worker's
 * own thread only (asserted).
 */
#ifndef SA_WORKER_H
#define SA_WORKER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define SA_WORKER_FOREVER UINT64_MAX /* a deadline that never comes */

typedef enum {
  SA_WORKER_KICK = 1,    /* sa_worker_kick was called since the last wait */
  SA_WORKER_STOP = 2,    /* sa_worker_stop was called */
  SA_WORKER_TIMEOUT = 3, /* the deadline passed */
} sa_worker_wake;

typedef struct sa_worker {
  pthread_mutex_t mu; /* guards stop, kicked and the owner's job state */
  pthread_cond_t cv;  /* the worker's wake-up (CLOCK_MONOTONIC) */
  pthread_t thread;   /* valid once started */
  bool started;       /* set by sa_worker_start; never cleared before destroy */
  bool joined;        /* sa_worker_stop joined the thread (owner only) */
  bool stop;          /* under mu: the loop should end */
  bool kicked;        /* under mu: a kick not yet seen by a wait */
  void (*fn)(void *); /* the loop; returns when it sees STOP */
  void *arg;          /* fn's argument */
  char name[16];      /* thread name (pthread_setname_np: 15 chars) */
} sa_worker;

/* Initializes w (mutex, monotonic condition variable, flags clear).
 * Returns 0, or an errno from pthread.  Pairs with sa_worker_destroy. */
int sa_worker_init(sa_worker *w);

/* Destroys w's mutex and condition variable.  The thread, if started, must
 * have been stopped (sa_worker_stop). */
void sa_worker_destroy(sa_worker *w);

/* Starts the thread: it names itself name (at most 15 chars kept) and runs
 * fn(arg), which must return once sa_worker_wait returns SA_WORKER_STOP
 * (it may finish work first).  Returns 0, or an errno from pthread_create
 * (then nothing was started). */
int sa_worker_start(sa_worker *w, const char *name, void (*fn)(void *), void *arg);

/* Wakes the worker: sets kicked and signals.  Any thread; takes mu. */
void sa_worker_kick(sa_worker *w);

/* The same with w->mu held by the caller. */
void sa_worker_kick_locked(sa_worker *w);

/* With w->mu held, from the worker's thread: waits until a kick, the stop
 * flag or deadline_ns (sa_mono_ns clock; SA_WORKER_FOREVER: none).  Stop
 * wins over a kick, a kick over the deadline.  Clears kicked. */
sa_worker_wake sa_worker_wait(sa_worker *w, uint64_t deadline_ns);

/* True once stop was requested; call with w->mu held. */
static inline bool sa_worker_stopping(const sa_worker *w) {
  return w->stop;
}

/* With w->mu held: sets stop and signals; the caller then releases mu and
 * calls sa_worker_join.  For an owner that must change its own state in
 * the same critical section (the writer's close wakes the feed waiters). */
void sa_worker_stop_locked(sa_worker *w);

/* Joins the thread once (later calls, or a worker never started: no-op). */
void sa_worker_join(sa_worker *w);

/* sa_worker_stop_locked under mu, then sa_worker_join.  Idempotent. */
void sa_worker_stop(sa_worker *w);

/* True on the worker's own thread (for ownership asserts). */
bool sa_worker_is_self(const sa_worker *w);

#endif
