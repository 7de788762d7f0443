/*
 * sync_lag.c -- the live-lag probe of tests/bench/sync.sh: a paced writer on
 * one node and a follower of its peer's change feed, in one process (one
 * clock), printing how long each write took to become readable on the peer.
 *
 *   sync_lag WRITE_URL READ_URL RATE SECONDS CONNS PREFIX
 *
 * Writer: CONNS threads, each with its own keep-alive libcurl handle; write i
 * (0 <= i < RATE * SECONDS) is due at t0 + i / RATE and goes to thread
 * i % CONNS, which sleeps until it is due (a thread that falls behind sends at
 * once: the printed `late` counts those, and `rate` is what was achieved).
 * Each write is PUT WRITE_URL/v1/store/PREFIXnnnnnnnn with a 100-byte value;
 * its send time (just before the request) and its answer time are recorded.
 *
 * Follower: one thread long-polls READ_URL/v1/changes?since=S&prefix=PREFIX
 * &wait=1 (seconds) from the peer's last LSN at the start; the first time a key
 * shows in the peer's feed is when that write became readable there (the feed
 * lists a change once it is applied: a GET then returns it).  It stops once
 * every write was seen or SECONDS + 30 s have passed.  A second follower
 * does the same on the writer node's own feed (local_*): the time a write
 * takes to show in a followed feed without sync, on the same machine.
 *
 * Prints one line (lags in ms, from a write's send time to its first sight on
 * the peer; ack = the writer's own round trip):
 *   LAG rate_target=R rate=A writes=N seen=M late=L p50_ms=.. p90_ms=.. p99_ms=..
 *       max_ms=.. ack_p50_ms=.. ack_p99_ms=.. local_p50_ms=.. local_p99_ms=.. errors=E
 *
 * What it is not: a load generator for throughput (wrk is), nor a check: it
 * asserts nothing about times.  Bounded: every request has a timeout, the
 * followers a deadline.  Threads: main, CONNS writers, two followers.
 */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SL_VALUE_LEN 100
#define SL_MAX_CONNS 64
#define SL_MAX_WRITES 2000000

typedef struct sl_buf {
  char *p;
  size_t n, cap;
} sl_buf;

static const char *write_url, *read_url, *prefix;
static double rate, t0;
static size_t nwrites, nconns;
static double *sent, *acked; /* monotonic seconds; 0 = not yet */
static atomic_size_t late, errors;

/* One followed feed: the peer's (the lag) or the writer's own (the same
 * measure without sync: what following a feed costs on this machine). */
typedef struct sl_follow {
  const char *url; /* base URL of the node whose feed is followed */
  uint64_t since;  /* its last LSN at the start */
  double *seen;    /* per write: first sight; 0 = not yet */
  atomic_size_t nseen;
} sl_follow;

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void sleep_until(double t) {
  struct timespec ts;
  ts.tv_sec = (time_t)t;
  ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
  }
}

static size_t sl_sink(char *data, size_t size, size_t nmemb, void *arg) {
  sl_buf *b = arg;
  size_t n = size * nmemb;
  if (!b) return n;
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 65536;
    while (cap < b->n + n + 1)
      cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return 0;
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->n, data, n);
  b->n += n;
  b->p[b->n] = 0;
  return n;
}

static void *writer_main(void *arg) {
  size_t k = (size_t)(uintptr_t)arg;
  CURL *c = curl_easy_init();
  if (!c) return NULL;
  char url[512], val[SL_VALUE_LEN];
  memset(val, 'w', sizeof val);
  struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/octet-stream");
  h = curl_slist_append(h, "Expect:");
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "PUT");
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, val);
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)sizeof val);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sl_sink);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, NULL);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
  for (size_t i = k; i < nwrites; i += nconns) {
    double due = t0 + (double)i / rate;
    double now = now_s();
    if (now < due)
      sleep_until(due);
    else if (now > due + 0.001)
      atomic_fetch_add(&late, 1);
    snprintf(url, sizeof url, "%s/v1/store/%s%08zu", write_url, prefix, i);
    curl_easy_setopt(c, CURLOPT_URL, url);
    sent[i] = now_s();
    CURLcode rc = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    if (rc != CURLE_OK || (code != 200 && code != 201))
      atomic_fetch_add(&errors, 1);
    else
      acked[i] = now_s();
  }
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
  return NULL;
}

/* GET url into b; returns the HTTP status or -1. */
static long sl_get(CURL *c, const char *url, sl_buf *b, long timeout_ms) {
  b->n = 0;
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sl_sink);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  if (curl_easy_perform(c) != CURLE_OK) return -1;
  long code = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  return code;
}

static double deadline;

static void *follower_main(void *arg) {
  sl_follow *fl = arg;
  CURL *c = curl_easy_init();
  if (!c) return NULL;
  sl_buf b = {0};
  char url[512];
  uint64_t since = fl->since;
  size_t plen = strlen(prefix);
  while (now_s() < deadline && atomic_load(&fl->nseen) < nwrites) {
    snprintf(url, sizeof url, "%s/v1/changes?since=%llu&limit=1000&wait=1&prefix=%s", fl->url,
             (unsigned long long)since, prefix);
    long code = sl_get(c, url, &b, 5000);
    double t = now_s();
    if (code != 200) {
      atomic_fetch_add(&errors, 1);
      sleep_until(now_s() + 0.01);
      continue;
    }
    json_error_t je;
    json_t *j = json_loadb(b.p, b.n, 0, &je);
    if (!j) {
      atomic_fetch_add(&errors, 1);
      continue;
    }
    json_t *arr = json_object_get(j, "changes"), *ch;
    size_t ix;
    json_array_foreach(arr, ix, ch) {
      const char *key = json_string_value(json_object_get(ch, "key"));
      if (!key || strncmp(key, prefix, plen) != 0) continue;
      char *end;
      unsigned long long i = strtoull(key + plen, &end, 10);
      if (*end || i >= nwrites || fl->seen[i] != 0) continue;
      fl->seen[i] = t;
      atomic_fetch_add(&fl->nseen, 1);
    }
    json_t *ns = json_object_get(j, "next_since");
    if (json_is_integer(ns)) since = (uint64_t)json_integer_value(ns);
    json_decref(j);
  }
  free(b.p);
  curl_easy_cleanup(c);
  return NULL;
}

static int cmp_double(const void *x, const void *y) {
  double a = *(const double *)x, b = *(const double *)y;
  return (a > b) - (a < b);
}

static double pct(const double *v, size_t n, double p) {
  if (n == 0) return -1;
  size_t i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
  return v[i < n ? i : n - 1];
}

int main(int argc, char **argv) {
  if (argc != 7) {
    fprintf(stderr, "usage: sync_lag WRITE_URL READ_URL RATE SECONDS CONNS PREFIX\n");
    return 2;
  }
  write_url = argv[1];
  read_url = argv[2];
  rate = atof(argv[3]);
  double secs = atof(argv[4]);
  nconns = (size_t)atoi(argv[5]);
  prefix = argv[6];
  if (rate <= 0 || secs <= 0 || nconns < 1 || nconns > SL_MAX_CONNS) {
    fprintf(stderr, "sync_lag: bad RATE, SECONDS or CONNS (1..%d)\n", SL_MAX_CONNS);
    return 2;
  }
  nwrites = (size_t)(rate * secs);
  if (nwrites < 1 || nwrites > SL_MAX_WRITES) {
    fprintf(stderr, "sync_lag: RATE x SECONDS must be 1..%d\n", SL_MAX_WRITES);
    return 2;
  }
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) return 1;
  sent = calloc(nwrites, sizeof *sent);
  acked = calloc(nwrites, sizeof *acked);
  sl_follow fl[2] = {{.url = read_url}, {.url = write_url}}; /* the peer, the writer itself */
  for (int k = 0; k < 2; k++) {
    fl[k].seen = calloc(nwrites, sizeof(double));
    atomic_init(&fl[k].nseen, 0);
  }
  if (!sent || !acked || !fl[0].seen || !fl[1].seen) return 1;

  /* Each node's last LSN now: its follower reads what comes after it. */
  for (int k = 0; k < 2; k++) {
    CURL *c = curl_easy_init();
    sl_buf b = {0};
    char url[512];
    snprintf(url, sizeof url, "%s/v1/status", fl[k].url);
    long code = c ? sl_get(c, url, &b, 5000) : -1;
    json_t *j = code == 200 ? json_loadb(b.p, b.n, 0, NULL) : NULL;
    json_t *wal = j ? json_object_get(j, "wal") : NULL;
    json_t *l = wal ? json_object_get(wal, "last_lsn") : NULL;
    if (!json_is_integer(l)) {
      fprintf(stderr, "sync_lag: no wal.last_lsn in %s (HTTP %ld)\n", url, code);
      return 1;
    }
    fl[k].since = (uint64_t)json_integer_value(l);
    json_decref(j);
    free(b.p);
    curl_easy_cleanup(c);
  }

  pthread_t w[SL_MAX_CONNS], f[2];
  t0 = now_s() + 0.2;
  deadline = t0 + secs + 30;
  for (int k = 0; k < 2; k++)
    if (pthread_create(&f[k], NULL, follower_main, &fl[k]) != 0) return 1;
  for (size_t k = 0; k < nconns; k++)
    if (pthread_create(&w[k], NULL, writer_main, (void *)(uintptr_t)k) != 0) return 1;
  for (size_t k = 0; k < nconns; k++)
    pthread_join(w[k], NULL);
  double t_end = now_s();
  for (int k = 0; k < 2; k++)
    pthread_join(f[k], NULL);

  double *lag = malloc(nwrites * sizeof *lag), *loc = malloc(nwrites * sizeof *loc),
         *ack = malloc(nwrites * sizeof *ack);
  if (!lag || !loc || !ack) return 1;
  size_t nl = 0, nloc = 0, na = 0;
  double first = 0, last = 0;
  for (size_t i = 0; i < nwrites; i++) {
    if (sent[i] && fl[0].seen[i]) lag[nl++] = (fl[0].seen[i] - sent[i]) * 1e3;
    if (sent[i] && fl[1].seen[i]) loc[nloc++] = (fl[1].seen[i] - sent[i]) * 1e3;
    if (sent[i] && acked[i]) ack[na++] = (acked[i] - sent[i]) * 1e3;
    if (sent[i] && (!first || sent[i] < first)) first = sent[i];
    if (sent[i] > last) last = sent[i];
  }
  qsort(lag, nl, sizeof *lag, cmp_double);
  qsort(loc, nloc, sizeof *loc, cmp_double);
  qsort(ack, na, sizeof *ack, cmp_double);
  double span = (last > first ? last - first : t_end - t0);
  printf("LAG rate_target=%.0f rate=%.0f writes=%zu seen=%zu late=%zu p50_ms=%.2f p90_ms=%.2f "
         "p99_ms=%.2f max_ms=%.2f ack_p50_ms=%.2f ack_p99_ms=%.2f local_p50_ms=%.2f "
         "local_p99_ms=%.2f errors=%zu\n",
         rate, span > 0 ? (double)(nwrites - 1) / span : 0, nwrites, nl, atomic_load(&late),
         pct(lag, nl, 50), pct(lag, nl, 90), pct(lag, nl, 99), nl ? lag[nl - 1] : -1,
         pct(ack, na, 50), pct(ack, na, 99), pct(loc, nloc, 50), pct(loc, nloc, 99),
         atomic_load(&errors));
  free(lag);
  free(loc);
  free(ack);
  free(sent);
  free(acked);
  free(fl[0].seen);
  free(fl[1].seen);
  curl_global_cleanup();
  return 0;
}
