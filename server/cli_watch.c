/*
 * cli_watch.c -- `softadastra watch` (see cli_watch.h).
 *
 * What it is: the change-feed follower.  What it is not: an HTTP setup of
 * its own (cli_http.c prepares the handle, as for every command).
 *
 * One libcurl transfer per connection: the write callback splits the body
 * into SSE lines and events (cli_watch_line), the progress callback (called
 * at least once a second, even on an idle stream) aborts the transfer once
 * SIGINT or SIGTERM has set the stop flag.  The last event id is kept so a
 * reconnection resumes exactly where the stream stopped.
 */
#define _GNU_SOURCE /* asprintf */
#include "cli_watch.h"

#include "cli_cmd.h"
#include "cli_http.h"

#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CLI_WATCH_BACKOFF_MIN_MS 250   /* the first pause after a failed connection */
#define CLI_WATCH_BACKOFF_MAX_MS 10000 /* the pauses double up to this */

static volatile sig_atomic_t cli_watch_stop;

static long long cli_watch_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void cli_watch_on_signal(int sig) {
  (void)sig;
  cli_watch_stop = 1;
}

typedef struct cli_watch {
  bool json;             /* print the change JSON */
  char line[1 << 16];    /* the line being assembled */
  size_t line_len;       /* bytes in line */
  bool line_long;        /* the line passed the buffer: dropped */
  char event[64];        /* event type of the event being assembled */
  char *data;            /* its data (grows) */
  size_t data_len;       /* bytes in data */
  char last_id[32];      /* the latest event id, "" before any */
  bool bye;              /* the node said goodbye */
  bool gone;             /* the node no longer has our position */
  unsigned long printed; /* changes printed */
  /* Positions are epoch-checked (api/api_feed_pos.c): the node's epoch from
   * the ready event goes back in Last-Event-ID as EPOCH:LSN; a refusal's
   * body is kept to say what happened. */
  char epoch[17];     /* "" until the node tells it */
  CURL *curl;         /* the transfer (its status decides where bytes go) */
  char refusal[1024]; /* the start of a non-200 answer's body */
  size_t refusal_len;
} cli_watch;

static void cli_watch_print(cli_watch *w, const char *data) {
  if (w->json) {
    printf("%s\n", data);
    fflush(stdout);
    w->printed++;
    return;
  }
  json_error_t e;
  json_t *j = json_loads(data, 0, &e);
  if (!j) return;
  const char *op = json_string_value(json_object_get(j, "op"));
  const char *key = json_string_value(json_object_get(j, "key"));
  const char *time = json_string_value(json_object_get(j, "time"));
  json_int_t lsn = json_integer_value(json_object_get(j, "lsn"));
  json_int_t version = json_integer_value(json_object_get(j, "version"));
  json_int_t size = json_integer_value(json_object_get(j, "size"));
  bool batch = json_is_true(json_object_get(j, "batch"));
  if (op && key) {
    if (strcmp(op, "delete") == 0)
      printf("%s  lsn %-6lld delete  %s%s\n", time ? time : "-", (long long)lsn, key,
             batch ? "  (batch)" : "");
    else
      printf("%s  lsn %-6lld put     %s  (version %lld, %lld bytes)%s\n", time ? time : "-",
             (long long)lsn, key, (long long)version, (long long)size, batch ? " (batch)" : "");
    fflush(stdout);
    w->printed++;
  }
  json_decref(j);
}

/* One complete line of the stream (without its newline). */
static void cli_watch_line(cli_watch *w, const char *line, size_t len) {
  if (len == 0) { /* end of an event */
    if (w->data && strcmp(w->event, "change") == 0)
      cli_watch_print(w, w->data);
    else if (strcmp(w->event, "bye") == 0)
      w->bye = true;
    else if (strcmp(w->event, "gone") == 0)
      w->gone = true;
    else if (w->data && strcmp(w->event, "ready") == 0) {
      json_t *j = json_loads(w->data, 0, NULL);
      const char *ep = json_string_value(json_object_get(j, "epoch"));
      if (ep && strlen(ep) < sizeof w->epoch) snprintf(w->epoch, sizeof w->epoch, "%s", ep);
      json_decref(j);
    }
    free(w->data);
    w->data = NULL;
    w->data_len = 0;
    snprintf(w->event, sizeof w->event, "message");
    return;
  }
  if (line[0] == ':') return; /* a comment: the heartbeat */
  const char *colon = memchr(line, ':', len);
  size_t flen = colon ? (size_t)(colon - line) : len;
  const char *v = colon ? colon + 1 : line + len;
  size_t vlen = (size_t)(line + len - v);
  if (vlen && *v == ' ') {
    v++;
    vlen--;
  }
  if (flen == 5 && memcmp(line, "event", 5) == 0) {
    snprintf(w->event, sizeof w->event, "%.*s", (int)vlen, v);
  } else if (flen == 4 && memcmp(line, "data", 4) == 0) {
    char *nd = realloc(w->data, w->data_len + vlen + 2);
    if (!nd) return;
    w->data = nd;
    if (w->data_len) w->data[w->data_len++] = '\n';
    memcpy(w->data + w->data_len, v, vlen);
    w->data_len += vlen;
    w->data[w->data_len] = '\0';
  } else if (flen == 2 && memcmp(line, "id", 2) == 0 && vlen < sizeof w->last_id) {
    memcpy(w->last_id, v, vlen);
    w->last_id[vlen] = '\0';
  }
}

static size_t cli_watch_write(char *ptr, size_t size, size_t nmemb, void *ud) {
  cli_watch *w = ud;
  size_t n = size * nmemb;
  long status = 200;
  if (w->curl) curl_easy_getinfo(w->curl, CURLINFO_RESPONSE_CODE, &status);
  if (status != 200) { /* an error answer: kept, not parsed as a stream */
    size_t k = sizeof w->refusal - 1 - w->refusal_len;
    if (k > n) k = n;
    memcpy(w->refusal + w->refusal_len, ptr, k);
    w->refusal_len += k;
    w->refusal[w->refusal_len] = '\0';
    return n;
  }
  for (size_t i = 0; i < n; i++) {
    char c = ptr[i];
    if (c == '\n') {
      if (!w->line_long) {
        size_t l = w->line_len;
        if (l && w->line[l - 1] == '\r') l--;
        w->line[l] = '\0';
        cli_watch_line(w, w->line, l);
      }
      w->line_len = 0;
      w->line_long = false;
    } else if (w->line_len + 1 < sizeof w->line) {
      w->line[w->line_len++] = c;
    } else {
      w->line_long = true;
    }
  }
  return n;
}

static int cli_watch_progress(void *ud, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d) {
  (void)ud;
  (void)a;
  (void)b;
  (void)c;
  (void)d;
  return cli_watch_stop ? 1 : 0;
}

int cli_watch_run(const cli_opts *o) {
  const char *url = o->url, *token = o->token, *prefix = o->prefix, *since = o->since;
  int ul = cli_url_len(url);

  struct sigaction sa, old_int, old_term;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = cli_watch_on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);

  cli_watch *w = calloc(1, sizeof *w);
  int rc = 1;
  if (!w) goto out;
  w->json = o->json;
  snprintf(w->event, sizeof w->event, "message");
  long long trouble_since = -1; /* when the node stopped answering, -1 while it does */
  bool announced = false;       /* "cannot reach" was said for this trouble */
  long long delay_ms = 0;       /* the next pause before a retry */
  while (!cli_watch_stop) {
    char *ep = cli_path_escape(prefix ? prefix : "", false);
    char *es = cli_path_escape(since ? since : "", false);
    char *path = NULL;
    if (!ep || !es || asprintf(&path, "/v1/changes?prefix=%s&since=%s", ep, es) < 0) path = NULL;
    free(ep);
    free(es);
    cli_conn conn;
    if (!path || cli_conn_open(&conn, url, token, path) != 0) {
      free(path);
      break;
    }
    free(path);
    char *lei = NULL;
    int bad = cli_conn_header(&conn, "Accept: text/event-stream");
    if (w->last_id[0] &&
        asprintf(&lei, "Last-Event-ID: %s%s%s", w->epoch, w->epoch[0] ? ":" : "", w->last_id) > 0)
      bad |= cli_conn_header(&conn, lei);
    free(lei);
    if (bad) {
      cli_conn_close(&conn);
      break;
    }
    cli_conn_ready(&conn);
    CURL *c = conn.curl;
    w->curl = c;
    w->refusal_len = 0;
    w->refusal[0] = '\0';
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, cli_watch_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, w);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, cli_watch_progress);
    CURLcode cr = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    char why[160];
    cli_http_why(c, cr, why, sizeof why);
    cli_conn_close(&conn);
    w->curl = NULL;
    if (cli_watch_stop) {
      rc = 0;
      break;
    }
    if (status == 409 || (status == 410 && strstr(w->refusal, "\"reason\":\"epoch\""))) {
      /* A position ahead of the node, or from another epoch of it (restored
       * or recreated): the changes after it under these numbers are not the
       * ones we missed. */
      json_t *j = json_loads(w->refusal, 0, NULL);
      json_t *er = json_object_get(j, "error");
      fprintf(stderr, "softadastra watch: %s\n",
              json_string_value(json_object_get(er, "message"))
                  ? json_string_value(json_object_get(er, "message"))
                  : "the node refused our position");
      json_decref(j);
      if (!o->from_now) {
        fprintf(stderr, "softadastra watch: not following on; reload (softadastra store ls) and "
                        "watch again, or pass --from-now to start over from the node's current "
                        "position\n");
        rc = 1;
        break;
      }
      fprintf(stderr, "softadastra watch: --from-now: starting over from the node's current "
                      "position; changes in between are not shown\n");
      w->last_id[0] = '\0';
      w->epoch[0] = '\0';
      since = "now";
      continue;
    }
    if (status == 410 || w->gone) {
      fprintf(stderr,
              "softadastra watch: the node no longer keeps changes after %s: reload "
              "(softadastra store ls) and watch from now%s\n",
              w->last_id[0] ? w->last_id : (since ? since : "that LSN"),
              o->from_now ? "; --from-now: starting over from the node's current position" : "");
      if (!o->from_now) {
        rc = 1;
        break;
      }
      w->gone = false;
      w->last_id[0] = '\0';
      since = "now";
      continue;
    }
    if (status == 401) {
      fprintf(stderr, "softadastra watch: the node wants a token (HTTP 401): pass --token or set "
                      "SOFTADASTRA_TOKEN\n");
      rc = 1;
      break;
    }
    if (status >= 400) {
      fprintf(stderr, "softadastra watch: the node answered HTTP %ld\n", status);
      rc = 1;
      break;
    }
    if (w->bye) {
      fprintf(stderr, "softadastra watch: the node is shutting down\n");
      rc = 0;
      break;
    }
    long long now = cli_watch_now_ms();
    if (status == 200) {
      /* The stream was up, then ended without the node's goodbye (it died,
       * or the connection broke): say so once, and reconnect at once. */
      fprintf(stderr, "softadastra watch: the node closed the stream; reconnecting\n");
      trouble_since = now;
      announced = false;
      delay_ms = 0;
    } else if (status == 0 && cli_http_fatal(cr)) {
      fprintf(stderr, "softadastra watch: cannot use the URL %.*s: %s\n", ul, url, why);
      rc = 1;
      break;
    } else {
      if (trouble_since < 0) trouble_since = now;
      if (!announced) {
        fprintf(stderr, "softadastra watch: cannot reach the node at %.*s: %s; retrying\n", ul, url,
                why);
        announced = true;
      }
      delay_ms = delay_ms ? delay_ms * 2 : CLI_WATCH_BACKOFF_MIN_MS;
      if (delay_ms > CLI_WATCH_BACKOFF_MAX_MS) delay_ms = CLI_WATCH_BACKOFF_MAX_MS;
    }
    long long left = o->retry_for_ms < 0 ? -1 : trouble_since + o->retry_for_ms - now;
    if (o->retry_for_ms >= 0 && left <= 0 && status != 200) {
      fprintf(stderr, "softadastra watch: giving up: no answer from the node at %.*s for %s\n", ul,
              url, o->retry_for_text ? o->retry_for_text : "0s");
      rc = 1;
      break;
    }
    long long nap = left >= 0 && left < delay_ms ? left : delay_ms;
    for (long long t = 0; t < nap && !cli_watch_stop; t += 50) /* SIGINT ends the nap */
      usleep(50 * 1000);
    if (w->last_id[0]) since = NULL; /* Last-Event-ID carries the position now */
  }
  if (cli_watch_stop) rc = 0;
out:
  if (w) free(w->data);
  free(w);
  sigaction(SIGINT, &old_int, NULL);
  sigaction(SIGTERM, &old_term, NULL);
  return rc;
}
