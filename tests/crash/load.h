/*
 * load.h -- the write load and the shared checks of the crash harnesses
 * (crash.c: kill -9 / SIGTERM; powercut.c: simulated power cuts).
 *
 * One piece of code for what both programs do the same way:
 *   - W writer threads drive the node over HTTP (PUT, DELETE, POST
 *     /v1/batch), one request at a time each, and record every operation
 *     before it is sent with its start time, its end time and its outcome:
 *     acknowledged (2xx), a definite no-op (404 on DELETE), refused (any
 *     other status: nothing applied, and a failure), or unknown (the
 *     connection died with the node, or a 503 while a SIGTERM stops it);
 *   - values are unique per operation and name it ("w<writer>.c<cycle>.
 *     s<seq>.i<index>." plus padding that is a function of the name), so a
 *     recovered value points at the operation that wrote it;
 *   - after a restart: the paginated listing (in order, no key twice, only
 *     keys of the key space, text values), a GET of every key that must agree
 *     with it, and /v1/status whose wal.last_lsn must be at least every
 *     acknowledged LSN;
 *   - failures ("FAIL [cycle N] ..."), counted; the ones that report lost or
 *     absent data are counted apart for the self-tests (sabotage), whose exit
 *     status is inverted: 0 only when the checker reported a loss.
 * The programs differ in the key space (ld_mode.own_keys), the op mix and
 * value sizes, the check of the recovered state (crash.c: intervals over a
 * shared key space; powercut.c: per writer, a prefix of its operations) and
 * their main loops.
 *
 * Every acknowledgement is checked: an integer lsn > 0 and "durable" the
 * JSON boolean matching auto_flush (true unless --no-auto-flush is among the
 * serve arguments).
 */
#ifndef SA_LOAD_H
#define SA_LOAD_H

#include "harness.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LD_MAX_WRITERS 16
#define LD_SHARED_KEYS 48 /* the shared key space (own_keys false) */
#define LD_WRITER_KEYS 40 /* keys of each writer (own_keys true) */
#define LD_MAX_KEYS (LD_MAX_WRITERS * LD_WRITER_KEYS)
#define LD_BATCH_MAX 6
#define LD_MAX_OPS 20000 /* per writer and cycle: bounds a cycle's work */
#define LD_REQ_TIMEOUT_MS 30000
#define LD_VALUE_MAX 8192
#define LD_SKIP 77

enum { LD_ACKED = 1, LD_UNKNOWN, LD_NOOP /* 404 on DELETE */, LD_REFUSED };

typedef struct ld_effect {
  int key; /* global key index */
  bool put;
} ld_effect;

typedef struct ld_op {
  double s, e; /* start; end (answered) or INFINITY */
  int state;   /* LD_* */
  int n;       /* effects */
  bool batch;
  ld_effect eff[LD_BATCH_MAX];
} ld_op;

/* A key's state: absent, or the value of (cycle, seq, index). */
typedef struct ld_kstate {
  bool present;
  int c, s, i;
} ld_kstate;

typedef struct ld_writer {
  int id;
  pthread_t th;
  unsigned seed;
  ld_op *ops;
  int nops;
  ld_kstate cur[LD_WRITER_KEYS]; /* own_keys: after every acknowledged op */
  uint64_t max_lsn;              /* highest acknowledged LSN */
  long errors;                   /* unexpected answers before the kill */
  char first_error[512];
} ld_writer;

typedef struct ld_mode {
  const char *name;              /* "crash": output prefix and temporary directory */
  const char *env;               /* "SA_CRASH": prefix of the knobs _CYCLES _WRITERS ... */
  const char *event;             /* "kill": what ends the load, in messages */
  const char *tag;               /* prefix of listing and read failures ("" or "(c) ") */
  bool own_keys;                 /* each writer its own keys "pc/w<w>/k<nn>"; else "crash/k<nn>" */
  bool big_values;               /* one value in ten of 1 to 6 KiB; else up to 300 bytes */
  int batch_max;                 /* effects of a batch: 2 .. batch_max */
  int mix_den, mix_put, mix_del; /* rnd(mix_den) < mix_put: PUT, < mix_del: DELETE */
  int list_limit;                /* page size of the listing */
  int default_cycles;
} ld_mode;

typedef struct ld_listed { /* one key as listed */
  bool present;
  char *value; /* owned */
} ld_listed;

extern struct ld_global {
  const ld_mode *m;
  bool durable;  /* auto_flush on: acknowledgements say "durable": true */
  bool term;     /* a SIGTERM stops the load: 503s after it are unknown outcomes */
  bool sabotage; /* <env>_SABOTAGE: the self-test */
  int cycles, nwriters, max_run_ms, nkeys;
  int cycle; /* the cycle whose operations are written or checked */
  char url[64];
  atomic_int stop;   /* writers stop issuing requests */
  atomic_int killed; /* the node has been (or is being) stopped */
  ld_writer w[LD_MAX_WRITERS];
  uint64_t acked_lsn_max;
  long failures, lost_reports;
} ld;

void ld_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int ld_env_int(const char *name, int def);
void ld_sleep_ms(long ms);
int ld_rnd(unsigned *seed, int n);

/* Reads the knobs <env>_CYCLES, _WRITERS, _MAX_RUN_MS, _SABOTAGE, _SEED and
 * the serve arguments (--no-auto-flush).  0, or 2 on bad settings. */
int ld_setup(const ld_mode *m, int nargs, char **args, unsigned *seed);
/* Line-buffered stdout, signal handlers that kill the node, curl, writers
 * allocated and seeded.  0 or -1. */
int ld_start_process(unsigned seed);
/* Makes the temporary directory and the server with --log-level warn and the
 * serve arguments.  0 or -1. */
int ld_server_init(hs_server *s, const char *bin, char *dir, size_t dirlen, int nargs, char **args);

/* The name of global key index k; its owner (own_keys), its index there. */
void ld_key_name(int k, char *buf, size_t len);
int ld_key_owner(int k);
int ld_key_local(int k);
void ld_value_of(int w, int c, int s, int i, char *buf, size_t len);
/* Parses a value; true when it is exactly one that value_of makes. */
bool ld_parse_value(const char *v, int *w, int *c, int *s, int *i);

/* Starts the writers against ld.url (their nops reset). */
void ld_load_start(void);
/* Stops the node with sig under the load, joins the writers, reports their
 * unexpected answers as failures and adds their LSNs.  The wait status. */
int ld_load_stop(hs_server *s, int sig);

/* The whole store through the listing into ob[ld.nkeys].  0 or -1. */
int ld_read_all(hs_conn *c, ld_listed *ob);
void ld_listed_free(ld_listed *ob);
/* A GET of every key agrees with the listing. */
void ld_check_gets(hs_conn *c, const ld_listed *ob);
/* /v1/status answers; with lsn_must, wal.last_lsn >= every acknowledged LSN. */
void ld_check_status(hs_conn *c, bool lsn_must);

/* Frees, removes dir (or keeps it when a real run failed), and returns the
 * exit status: failures, or the self-test's verdict. */
int ld_finish(const char *dir, const char *kept_note);

#endif /* SA_LOAD_H */
