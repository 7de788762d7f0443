/*
 * cli.c -- client subcommands (see cli.h).
 *
 * Every HTTP command is one or a few requests through cli_http; the node's
 * JSON is parsed with jansson and either printed as is (--json) or turned
 * into the aligned human form.  The mapping of HTTP answers to exit codes is
 * in one place, cli_fail_from_response.
 */
#define _GNU_SOURCE /* asprintf */
#include "cli.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli_watch.h"
#include "softadastra.h"

#define CLI_DEFAULT_URL "http://127.0.0.1:8080"
#define CLI_PAGE 1000

typedef struct cli_opts {
  const char *url;      /* node URL, no trailing slash needed */
  const char *token;    /* bearer token or NULL */
  bool json;            /* print the node's JSON */
  bool raw;             /* store get: the bytes alone */
  const char *prefix;   /* store ls */
  long limit;           /* store ls: -1 = all */
  const char *if_match; /* store put/rm: version */
  bool create_only;     /* store put: If-None-Match: * */
} cli_opts;

typedef struct cli_buf {
  char *data;
  size_t len;
} cli_buf;

static size_t cli_write_cb(char *ptr, size_t size, size_t nmemb, void *ud) {
  cli_buf *b = ud;
  size_t n = size * nmemb;
  char *nd = realloc(b->data, b->len + n + 1);
  if (!nd) return 0;
  memcpy(nd + b->len, ptr, n);
  b->data = nd;
  b->len += n;
  b->data[b->len] = '\0';
  return n;
}

static void cli_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void cli_err(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("softadastra: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

/* Percent-encodes s for a path (keeps '/' and unreserved characters). */
static char *cli_path_escape(const char *s, bool keep_slash) {
  static const char hex[] = "0123456789ABCDEF";
  size_t n = strlen(s);
  char *o = malloc(3 * n + 1);
  if (!o) return NULL;
  size_t k = 0;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    unsigned char c = *p;
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '.' || c == '_' || c == '~' || (keep_slash && c == '/')) {
      o[k++] = (char)c;
    } else {
      o[k++] = '%';
      o[k++] = hex[c >> 4];
      o[k++] = hex[c & 15];
    }
  }
  o[k] = '\0';
  return o;
}

/* One HTTP exchange.  path starts with '/'.  extra_header may be NULL.
 * Returns 0 and sets *status and *out (caller frees out->data), or
 * CLI_FAIL after printing one line naming the URL. */
static int cli_http(const cli_opts *o, const char *method, const char *path, const char *body,
                    size_t body_len, const char *extra_header, long *status, cli_buf *out) {
  out->data = NULL;
  out->len = 0;
  CURL *c = curl_easy_init();
  if (!c) {
    cli_err("cannot initialise libcurl");
    return CLI_FAIL;
  }
  size_t ul = strlen(o->url);
  while (ul > 0 && o->url[ul - 1] == '/')
    ul--;
  char *url = NULL;
  if (asprintf(&url, "%.*s%s", (int)ul, o->url, path) < 0) {
    curl_easy_cleanup(c);
    return CLI_FAIL;
  }
  struct curl_slist *h = NULL;
  char *auth = NULL;
  if (o->token && *o->token && asprintf(&auth, "Authorization: Bearer %s", o->token) > 0)
    h = curl_slist_append(h, auth);
  if (extra_header) h = curl_slist_append(h, extra_header);
  if (body) {
    h = curl_slist_append(h, "Expect:");
    if (strcmp(path, "/v1/batch") == 0)
      h = curl_slist_append(h, "Content-Type: application/json");
    else
      h = curl_slist_append(h, "Content-Type: application/octet-stream");
  }
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, cli_write_cb);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 120000L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
  if (body) {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
  }
  CURLcode rc = curl_easy_perform(c);
  int ret = 0;
  if (rc != CURLE_OK) {
    cli_err("cannot reach the node at %.*s: %s (is `softadastra serve` running? set --url or "
            "SOFTADASTRA_URL)",
            (int)ul, o->url, curl_easy_strerror(rc));
    free(out->data);
    out->data = NULL;
    ret = CLI_FAIL;
  } else {
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    if (!out->data) {
      out->data = calloc(1, 1);
    }
  }
  curl_slist_free_all(h);
  free(auth);
  free(url);
  curl_easy_cleanup(c);
  return ret;
}

/* Prints the node's error for a non-2xx answer and returns the exit code. */
static int cli_fail_from_response(long status, const cli_buf *b, const char *what) {
  json_t *j = json_loadb(b->data ? b->data : "", b->len, 0, NULL);
  const char *code = NULL, *msg = NULL;
  json_unpack(j, "{s:{s:s,s:s}}", "error", "code", &code, "message", &msg);
  if (msg)
    cli_err("%s: %s (HTTP %ld %s)", what, msg, status, code);
  else
    cli_err("%s: HTTP %ld", what, status);
  int rc = (status == 404 && code && strcmp(code, "not_found") == 0) ? CLI_NOTFOUND : CLI_FAIL;
  json_decref(j);
  return rc;
}

static json_t *cli_parse(const cli_buf *b) {
  json_t *j = json_loadb(b->data, b->len, JSON_ALLOW_NUL, NULL);
  if (!j) cli_err("the node answered something that is not JSON");
  return j;
}

static void cli_print_json(const cli_buf *b) {
  fwrite(b->data, 1, b->len, stdout);
  if (b->len == 0 || b->data[b->len - 1] != '\n') putchar('\n');
}

static long long cli_int(json_t *o, const char *path1, const char *path2) {
  json_t *v = json_object_get(o, path1);
  if (path2) v = json_object_get(v, path2);
  return json_is_integer(v) ? (long long)json_integer_value(v) : 0;
}

static const char *cli_str(json_t *o, const char *path1, const char *path2) {
  json_t *v = json_object_get(o, path1);
  if (path2) v = json_object_get(v, path2);
  return json_is_string(v) ? json_string_value(v) : "";
}

static const char *cli_yes(json_t *o, const char *path1, const char *path2) {
  json_t *v = json_object_get(o, path1);
  if (path2) v = json_object_get(v, path2);
  return json_is_true(v) ? "yes" : "no";
}

/* ---- commands ----------------------------------------------------------- */

/* "no", "yes (kind)" or "yes (kind, a stub that reaches no peer)" */
static const char *cli_link(json_t *s, const char *name, char *buf, size_t len) {
  json_t *o = json_object_get(s, name);
  if (!json_is_true(json_object_get(o, "enabled"))) return "no";
  snprintf(buf, len, "yes (%s%s)", cli_str(o, "kind", NULL),
           json_is_true(json_object_get(o, "stub")) ? ", a stub that reaches no peer" : "");
  return buf;
}

static void cli_print_sync(json_t *s, const char *indent) {
  const char *last = json_is_string(json_object_get(s, "last_tick_at"))
                         ? cli_str(s, "last_tick_at", NULL)
                         : "never";
  char t[128], d[128];
  printf("%soutbox       : %lld\n", indent, cli_int(s, "outbox_size", NULL));
  printf("%squeued       : %lld\n", indent, cli_int(s, "queued", NULL));
  printf("%sin flight    : %lld\n", indent, cli_int(s, "in_flight", NULL));
  printf("%sacknowledged : %lld\n", indent, cli_int(s, "acknowledged", NULL));
  printf("%sfailed       : %lld\n", indent, cli_int(s, "failed", NULL));
  printf("%sretries      : %lld\n", indent, cli_int(s, "total_retries", NULL));
  printf("%spruned       : %lld\n", indent, cli_int(s, "pruned", NULL));
  printf("%soverflow     : %s (max %lld)\n", indent, cli_yes(s, "overflow", NULL),
         cli_int(s, "outbox_max", NULL));
  printf("%sticks        : %lld\n", indent, cli_int(s, "ticks", NULL));
  printf("%slast tick    : %s\n", indent, last);
  printf("%slast lsn     : %lld\n", indent, cli_int(s, "last_lsn", NULL));
  printf("%stransport    : %s\n", indent, cli_link(s, "transport", t, sizeof t));
  printf("%sdiscovery    : %s\n", indent, cli_link(s, "discovery", d, sizeof d));
  printf("%speers        : %lld\n", indent, cli_int(s, "peers", NULL));
}

static int cli_status(const cli_opts *o) {
  long st;
  cli_buf b;
  if (cli_http(o, "GET", "/v1/status", NULL, 0, NULL, &st, &b) != 0) return CLI_FAIL;
  int rc = CLI_OK;
  if (st != 200) {
    rc = cli_fail_from_response(st, &b, "status");
  } else if (o->json) {
    cli_print_json(&b);
  } else {
    json_t *j = cli_parse(&b);
    if (!j) {
      free(b.data);
      return CLI_FAIL;
    }
    printf("node\n");
    printf("  id       : %s\n", cli_str(j, "node_id", NULL));
    printf("  version  : %s\n", cli_str(j, "version", NULL));
    printf("  url      : %s\n", o->url);
    printf("  uptime   : %llds\n", cli_int(j, "uptime_s", NULL));
    if (json_is_true(json_object_get(j, "read_only")))
      printf("  read-only: %s\n", cli_str(j, "read_only_reason", NULL));
    printf("\nWAL\n");
    printf("  enabled  : %s\n", cli_yes(j, "wal", "enabled"));
    printf("  path     : %s\n", cli_str(j, "wal", "path"));
    printf("  durable  : %s\n", cli_yes(j, "wal", "durable"));
    printf("  bytes    : %lld\n", cli_int(j, "wal", "bytes"));
    printf("  last lsn : %lld\n", cli_int(j, "wal", "last_lsn"));
    printf("\nstore\n");
    printf("  size     : %lld\n", cli_int(j, "store", "size"));
    printf("\nsync\n");
    json_t *s = json_object_get(j, "sync");
    printf("  outbox   : %lld\n", cli_int(s, "outbox_size", NULL));
    printf("  queued   : %lld\n", cli_int(s, "queued", NULL));
    printf("  transport: %s\n", cli_yes(s, "transport", "enabled"));
    json_decref(j);
  }
  free(b.data);
  return rc;
}

static int cli_health(const cli_opts *o) {
  long st;
  cli_buf b;
  if (cli_http(o, "GET", "/healthz", NULL, 0, NULL, &st, &b) != 0) return CLI_FAIL;
  int rc = CLI_OK;
  if (st != 200)
    rc = cli_fail_from_response(st, &b, "health");
  else if (o->json)
    cli_print_json(&b);
  else
    printf("ok\n");
  free(b.data);
  return rc;
}

/* sync status, or with tick: run one outbox tick first (POST /v1/sync/tick
 * answers the state after it); both print the same block. */
static int cli_sync_status(const cli_opts *o, bool tick) {
  long st;
  cli_buf b;
  if (cli_http(o, tick ? "POST" : "GET", tick ? "/v1/sync/tick" : "/v1/sync/status", NULL, 0,
               NULL, &st, &b) != 0)
    return CLI_FAIL;
  int rc = CLI_OK;
  if (st != 200) {
    rc = cli_fail_from_response(st, &b, tick ? "sync tick" : "sync status");
  } else if (o->json) {
    cli_print_json(&b);
  } else {
    json_t *j = cli_parse(&b);
    if (!j) {
      free(b.data);
      return CLI_FAIL;
    }
    printf("sync\n");
    cli_print_sync(j, "  ");
    json_t *tr = json_object_get(j, "transport");
    if (cli_int(j, "queued", NULL) > 0 && !json_is_true(json_object_get(tr, "enabled")))
      printf("\ntransport is off: queued operations wait for a peer (this is normal)\n");
    else if (cli_int(j, "queued", NULL) > 0 && json_is_true(json_object_get(tr, "stub")))
      printf("\nthe transport is a stub: queued operations are retried, then marked failed\n");
    json_decref(j);
  }
  free(b.data);
  return rc;
}

/* Reads all of stdin into *out. */
static int cli_read_stdin(char **out, size_t *len) {
  cli_buf b = {0};
  char chunk[65536];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, stdin)) > 0) {
    if (cli_write_cb(chunk, 1, n, &b) != n) {
      free(b.data);
      return -1;
    }
  }
  if (ferror(stdin)) {
    free(b.data);
    return -1;
  }
  *out = b.data ? b.data : calloc(1, 1);
  *len = b.len;
  return *out ? 0 : -1;
}

static int cli_store_put(const cli_opts *o, const char *key, const char *value) {
  char *data = NULL;
  size_t len;
  if (strcmp(value, "-") == 0) {
    if (cli_read_stdin(&data, &len) != 0) {
      cli_err("cannot read the value from stdin");
      return CLI_FAIL;
    }
  } else {
    data = strdup(value);
    len = strlen(value);
  }
  char *ek = cli_path_escape(key, true);
  char *path = NULL, *hdr = NULL;
  if (!data || !ek || asprintf(&path, "/v1/store/%s", ek) < 0) {
    free(data);
    free(ek);
    return CLI_FAIL;
  }
  if (o->if_match && asprintf(&hdr, "If-Match: \"%s\"", o->if_match) < 0)
    hdr = NULL;
  else if (o->create_only)
    hdr = strdup("If-None-Match: *");
  long st;
  cli_buf b;
  int rc = cli_http(o, "PUT", path, data, len, hdr, &st, &b);
  free(data);
  free(ek);
  free(path);
  free(hdr);
  if (rc != 0) return rc;
  if (st != 200 && st != 201) {
    rc = cli_fail_from_response(st, &b, "store put");
  } else if (o->json) {
    cli_print_json(&b);
  } else {
    json_t *j = cli_parse(&b);
    if (!j)
      rc = CLI_FAIL;
    else {
      printf("stored\n");
      printf("  key      : %s\n", cli_str(j, "key", NULL));
      printf("  version  : %lld\n", cli_int(j, "version", NULL));
      printf("  lsn      : %lld\n", cli_int(j, "lsn", NULL));
      printf("  durable  : %s\n", cli_yes(j, "durable", NULL));
      json_decref(j);
    }
  }
  free(b.data);
  return rc;
}

static int cli_store_get(const cli_opts *o, const char *key) {
  char *ek = cli_path_escape(key, true);
  char *path = NULL;
  if (!ek || asprintf(&path, "/v1/store/%s%s", ek, o->raw ? "?raw=1" : "") < 0) {
    free(ek);
    return CLI_FAIL;
  }
  long st;
  cli_buf b;
  int rc = cli_http(o, "GET", path, NULL, 0, NULL, &st, &b);
  free(ek);
  free(path);
  if (rc != 0) return rc;
  if (st != 200) {
    rc = cli_fail_from_response(st, &b, "store get");
  } else if (o->raw) {
    fwrite(b.data, 1, b.len, stdout);
  } else if (o->json) {
    cli_print_json(&b);
  } else {
    json_t *j = cli_parse(&b);
    if (!j)
      rc = CLI_FAIL;
    else {
      bool b64 = strcmp(cli_str(j, "encoding", NULL), "base64") == 0;
      printf("  key      : %s\n", cli_str(j, "key", NULL));
      printf("  value    : %s%s\n", b64 ? "(base64) " : "", cli_str(j, "value", NULL));
      printf("  version  : %lld\n", cli_int(j, "version", NULL));
      printf("  lsn      : %lld\n", cli_int(j, "lsn", NULL));
      printf("  size     : %lld\n", cli_int(j, "size", NULL));
      json_decref(j);
    }
  }
  free(b.data);
  return rc;
}

static int cli_store_rm(const cli_opts *o, const char *key) {
  char *ek = cli_path_escape(key, true);
  char *path = NULL, *hdr = NULL;
  if (!ek || asprintf(&path, "/v1/store/%s", ek) < 0) {
    free(ek);
    return CLI_FAIL;
  }
  if (o->if_match && asprintf(&hdr, "If-Match: \"%s\"", o->if_match) < 0) hdr = NULL;
  long st;
  cli_buf b;
  int rc = cli_http(o, "DELETE", path, NULL, 0, hdr, &st, &b);
  free(ek);
  free(path);
  free(hdr);
  if (rc != 0) return rc;
  if (st != 200) {
    rc = cli_fail_from_response(st, &b, "store rm");
  } else if (o->json) {
    cli_print_json(&b);
  } else {
    json_t *j = cli_parse(&b);
    if (!j)
      rc = CLI_FAIL;
    else {
      printf("removed\n");
      printf("  key      : %s\n", cli_str(j, "key", NULL));
      printf("  lsn      : %lld\n", cli_int(j, "lsn", NULL));
      printf("  durable  : %s\n", cli_yes(j, "durable", NULL));
      json_decref(j);
    }
  }
  free(b.data);
  return rc;
}

static int cli_store_ls(const cli_opts *o) {
  char *after = NULL;
  long printed = 0;
  int rc = CLI_OK;
  json_t *all = o->json ? json_array() : NULL;
  for (;;) {
    long want = CLI_PAGE;
    if (o->limit >= 0 && o->limit - printed < want) want = o->limit - printed;
    if (want <= 0) break;
    char *ep = cli_path_escape(o->prefix ? o->prefix : "", false);
    char *ea = cli_path_escape(after ? after : "", false);
    char *path = NULL;
    if (!ep || !ea || asprintf(&path, "/v1/store?limit=%ld&prefix=%s&after=%s", want, ep, ea) < 0)
      path = NULL;
    free(ep);
    free(ea);
    if (!path) {
      rc = CLI_FAIL;
      break;
    }
    long st;
    cli_buf b;
    int hr = cli_http(o, "GET", path, NULL, 0, NULL, &st, &b);
    free(path);
    if (hr != 0) {
      rc = hr;
      break;
    }
    if (st != 200) {
      rc = cli_fail_from_response(st, &b, "store ls");
      free(b.data);
      break;
    }
    json_t *j = cli_parse(&b);
    free(b.data);
    if (!j) {
      rc = CLI_FAIL;
      break;
    }
    json_t *items = json_object_get(j, "items");
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it) {
      if (all)
        json_array_append(all, it);
      else
        printf("%s\n", cli_str(it, "key", NULL));
      printed++;
    }
    bool more = json_is_true(json_object_get(j, "more"));
    free(after);
    after = more ? strdup(cli_str(j, "next", NULL)) : NULL;
    json_decref(j);
    if (!more || !after) break;
  }
  free(after);
  if (all) {
    if (rc == CLI_OK) {
      char *s = json_dumps(all, JSON_COMPACT);
      if (s) printf("{\"items\":%s,\"count\":%ld}\n", s, printed);
      free(s);
    }
    json_decref(all);
  }
  return rc;
}

/* ---- offline WAL tools -------------------------------------------------- */

static const char *cli_wal_state(int s) {
  return s == SA_WAL_CLEAN ? "clean" : s == SA_WAL_TORN ? "torn" : "corrupt";
}

typedef struct cli_wal_visit {
  bool print;  /* print each record (human inspect) */
  json_t *arr; /* collect each record (--json inspect) */
} cli_wal_visit;

static int cli_wal_visit_fn(const sa_wal_record *r, void *ctx) {
  cli_wal_visit *v = ctx;
  const char *type = r->type == SA_OP_PUT      ? "put"
                     : r->type == SA_OP_DELETE ? "delete"
                     : r->type == SA_WAL_BATCH ? "batch"
                                               : "?";
  char key[160];
  size_t kl = r->key_len < sizeof key - 1 ? r->key_len : sizeof key - 1;
  memcpy(key, r->key ? r->key : "", kl);
  key[kl] = '\0';
  for (size_t i = 0; i < kl; i++)
    if ((unsigned char)key[i] < 0x20 || key[i] == 0x7f) key[i] = '?';
  if (v->arr) {
    json_array_append_new(
        v->arr, json_pack("{s:I,s:I,s:I,s:s,s:I,s:I,s:s%,s:I,s:s}", "offset", (json_int_t)r->offset,
                          "lsn", (json_int_t)r->lsn, "hlc", (json_int_t)r->hlc, "type", type,
                          "length", (json_int_t)r->length, "count", (json_int_t)r->count, "key",
                          key, strlen(key), "value_len", (json_int_t)r->value_len, "crc", "ok"));
  } else if (v->print) {
    if (r->type == SA_WAL_BATCH)
      printf("  lsn %-8llu offset %-10llu batch   %u ops, first %s  crc ok\n",
             (unsigned long long)r->lsn, (unsigned long long)r->offset, r->count, key);
    else if (r->type == SA_OP_PUT)
      printf("  lsn %-8llu offset %-10llu put     %s (%u bytes)  crc ok\n",
             (unsigned long long)r->lsn, (unsigned long long)r->offset, key, r->value_len);
    else
      printf("  lsn %-8llu offset %-10llu %-7s %s  crc ok\n", (unsigned long long)r->lsn,
             (unsigned long long)r->offset, type, key);
  }
  return 0;
}

static void cli_wal_print_report(const char *path, const sa_wal_report *rep) {
  printf("WAL\n");
  printf("  path     : %s\n", path);
  printf("  node id  : %s\n", rep->node_id);
  printf("  format   : %u\n", rep->format_version);
  printf("  bytes    : %llu\n", (unsigned long long)rep->file_bytes);
  if (rep->state == SA_WAL_CLEAN && rep->file_bytes > rep->data_bytes)
    printf("  free     : %llu zero bytes after the records (preallocated)\n",
           (unsigned long long)(rep->file_bytes - rep->data_bytes));
  printf("  records  : %llu\n", (unsigned long long)rep->records);
  if (rep->records)
    printf("  lsn      : %llu .. %llu\n", (unsigned long long)rep->first_lsn,
           (unsigned long long)rep->last_lsn);
  printf("  state    : %s\n", cli_wal_state(rep->state));
  if (rep->state != SA_WAL_CLEAN) {
    printf("  bad at   : offset %llu (%s)\n", (unsigned long long)rep->bad_offset, rep->reason);
    if (rep->state == SA_WAL_CORRUPT)
      printf("  next good: offset %llu\n", (unsigned long long)rep->next_good_offset);
  }
}

static json_t *cli_wal_report_json(const char *path, const sa_wal_report *rep) {
  return json_pack("{s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:s,s:I,s:I,s:s,s:s}", "path", path,
                   "node_id", rep->node_id, "format_version", (json_int_t)rep->format_version,
                   "start_lsn", (json_int_t)rep->start_lsn, "file_bytes",
                   (json_int_t)rep->file_bytes, "data_bytes", (json_int_t)rep->data_bytes, "records",
                   (json_int_t)rep->records, "first_lsn", (json_int_t)rep->first_lsn, "last_lsn",
                   (json_int_t)rep->last_lsn, "state", cli_wal_state(rep->state), "bad_offset",
                   (json_int_t)rep->bad_offset, "next_good_offset",
                   (json_int_t)rep->next_good_offset, "reason", rep->reason, "backup_path",
                   rep->backup_path);
}

static int cli_wal(const cli_opts *o, const char *verb, const char *path) {
  sa_wal_report rep;
  sa_error err = {0};
  memset(&rep, 0, sizeof rep);
  if (strcmp(verb, "repair") == 0) {
    int rc = sa_wal_repair(path, &rep, &err);
    if (rc != 0) {
      cli_err("wal repair %s: %s", path, err.message[0] ? err.message : sa_strerror(rc));
      return rc == SA_ENOENT ? CLI_NOTFOUND : CLI_FAIL;
    }
    if (o->json) {
      json_t *j = cli_wal_report_json(path, &rep);
      json_dumpf(j, stdout, JSON_COMPACT);
      putchar('\n');
      json_decref(j);
    } else {
      cli_wal_print_report(path, &rep);
      if (rep.backup_path[0])
        printf("\nrepaired: truncated at offset %llu; the original is kept in %s\n",
               (unsigned long long)rep.bad_offset, rep.backup_path);
      else
        printf("\nnothing to repair: the WAL is clean\n");
    }
    return CLI_OK;
  }
  bool inspect = strcmp(verb, "inspect") == 0;
  cli_wal_visit v = {.print = inspect && !o->json, .arr = inspect && o->json ? json_array() : NULL};
  /* Scan once silently for the report (printed first), then for records. */
  int rc = sa_wal_scan(path, NULL, NULL, &rep, &err);
  if (rc == 0 && (v.print || v.arr)) {
    if (v.print) {
      cli_wal_print_report(path, &rep);
      printf("\nrecords\n");
    }
    rc = sa_wal_scan(path, cli_wal_visit_fn, &v, &rep, &err);
  }
  if (rc != 0) {
    cli_err("wal %s %s: %s", verb, path, err.message[0] ? err.message : sa_strerror(rc));
    json_decref(v.arr);
    return rc == SA_ENOENT || rc == SA_ENOTFOUND ? CLI_NOTFOUND : CLI_FAIL;
  }
  if (o->json) {
    json_t *j = cli_wal_report_json(path, &rep);
    if (v.arr) json_object_set_new(j, "records_list", v.arr);
    json_dumpf(j, stdout, JSON_COMPACT);
    putchar('\n');
    json_decref(j);
  } else if (!inspect) {
    cli_wal_print_report(path, &rep);
    if (rep.state == SA_WAL_TORN)
      printf("\ntorn tail: it will be cut (and kept aside) when the node opens\n");
    else if (rep.state == SA_WAL_CORRUPT)
      printf("\ncorrupt: the node will refuse to start; `softadastra wal repair %s` truncates "
             "at offset %llu, keeping a copy\n",
             path, (unsigned long long)rep.bad_offset);
  }
  return rep.state == SA_WAL_CORRUPT ? CLI_FAIL : CLI_OK;
}

/* ---- entry ------------------------------------------------------------- */

void cli_print_help(FILE *f) {
  fputs("Client commands (talk HTTP to a node at --url, SOFTADASTRA_URL, default " CLI_DEFAULT_URL
        "):\n"
        "  status                         node, WAL, store and sync summary\n"
        "  health                         liveness (GET /healthz, no token needed): ok or exit 1\n"
        "  store put KEY VALUE            write a value (VALUE - reads stdin)\n"
        "        [--if-match VERSION]     only if the key has this version\n"
        "        [--create]               only if the key does not exist\n"
        "  store get KEY [--raw]          read a value (--raw: the bytes alone)\n"
        "  store rm KEY [--if-match V]    remove a key\n"
        "  store ls [--prefix P] [--limit N]  list keys in order\n"
        "  sync status                    outbox and transport state\n"
        "  watch [--prefix P] [--since N|now]  follow the change feed, one line per change\n"
        "                                 (from now unless --since; Ctrl-C stops)\n"
        "  sync tick                      run one outbox tick now, then show the state\n"
        "Offline WAL tools (the node must not run on the file):\n"
        "  wal inspect FILE               header, records, LSNs, CRC state\n"
        "  wal verify FILE                check the file (exit 1 when corrupt)\n"
        "  wal repair FILE                truncate at the first bad record, keeping a copy\n"
        "Client options:\n"
        "  --url URL                      node URL (env SOFTADASTRA_URL)\n"
        "  --token TOKEN                  bearer token (env SOFTADASTRA_TOKEN)\n"
        "  --json                         print JSON for scripts\n"
        "  --                             what follows is KEY/VALUE even if it starts with --\n"
        "Exit codes: 0 ok, 1 failure, 2 usage, 3 not found.\n",
        f);
}

static int cli_usage(const char *msg) {
  cli_err("%s (see softadastra --help)", msg);
  return CLI_USAGE;
}

int cli_main(int argc, char **argv) {
  if (argc > 0 && !strcmp(argv[0], "watch")) return cli_watch_main(argc, argv); /* cli_watch.c */
  cli_opts o = {
      .url = getenv("SOFTADASTRA_URL"), .token = getenv("SOFTADASTRA_TOKEN"), .limit = -1};
  if (!o.url || !*o.url) o.url = CLI_DEFAULT_URL;
  char **pos = calloc((size_t)argc + 1, sizeof *pos);
  if (!pos) return CLI_FAIL;
  int np = 0;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    bool has_next = i + 1 < argc;
    if (!strcmp(a, "--")) { /* the rest is positional: values may start with "--" */
      while (++i < argc)
        pos[np++] = argv[i];
      break;
    }
    if (!strcmp(a, "--json"))
      o.json = true;
    else if (!strcmp(a, "--raw"))
      o.raw = true;
    else if (!strcmp(a, "--create"))
      o.create_only = true;
    else if (!strcmp(a, "--url") && has_next)
      o.url = argv[++i];
    else if (!strncmp(a, "--url=", 6))
      o.url = a + 6;
    else if (!strcmp(a, "--token") && has_next)
      o.token = argv[++i];
    else if (!strncmp(a, "--token=", 8))
      o.token = a + 8;
    else if (!strcmp(a, "--prefix") && has_next)
      o.prefix = argv[++i];
    else if (!strncmp(a, "--prefix=", 9))
      o.prefix = a + 9;
    else if (!strcmp(a, "--if-match") && has_next)
      o.if_match = argv[++i];
    else if ((!strcmp(a, "--limit") && has_next) || !strncmp(a, "--limit=", 8)) {
      const char *v = a[7] == '=' ? a + 8 : argv[++i];
      char *end;
      long l = strtol(v, &end, 10);
      if (*v == '\0' || *end || l < 1) {
        free(pos);
        return cli_usage("--limit needs a positive integer");
      }
      o.limit = l;
    } else if (a[0] == '-' && a[1] == '-' && a[2]) {
      fprintf(stderr, "softadastra: unknown option %s (see softadastra --help)\n", a);
      free(pos);
      return CLI_USAGE;
    } else
      pos[np++] = argv[i];
  }
  int rc = -1;
  const char *c0 = np > 0 ? pos[0] : "", *c1 = np > 1 ? pos[1] : "";
  if (o.if_match) {
    bool digits = o.if_match[0] != '\0';
    for (const char *p = o.if_match; *p; p++)
      digits = digits && *p >= '0' && *p <= '9';
    if (!digits) rc = cli_usage("--if-match needs a version number");
  }
  curl_global_init(CURL_GLOBAL_DEFAULT);
  if (rc != -1) {
    /* usage error already reported */
  } else if (!strcmp(c0, "status") && np == 1) {
    rc = cli_status(&o);
  } else if (!strcmp(c0, "health") && np == 1) {
    rc = cli_health(&o);
  } else if (!strcmp(c0, "sync") && !strcmp(c1, "status") && np == 2) {
    rc = cli_sync_status(&o, false);
  } else if (!strcmp(c0, "sync") && !strcmp(c1, "tick") && np == 2) {
    rc = cli_sync_status(&o, true);
  } else if (!strcmp(c0, "store") && !strcmp(c1, "put")) {
    rc = np == 4 ? cli_store_put(&o, pos[2], pos[3]) : cli_usage("usage: store put KEY VALUE");
  } else if (!strcmp(c0, "store") && !strcmp(c1, "get")) {
    rc = np == 3 ? cli_store_get(&o, pos[2]) : cli_usage("usage: store get KEY");
  } else if (!strcmp(c0, "store") && (!strcmp(c1, "rm") || !strcmp(c1, "delete"))) {
    rc = np == 3 ? cli_store_rm(&o, pos[2]) : cli_usage("usage: store rm KEY");
  } else if (!strcmp(c0, "store") && (!strcmp(c1, "ls") || !strcmp(c1, "list"))) {
    rc = np == 2 ? cli_store_ls(&o) : cli_usage("usage: store ls [--prefix P] [--limit N]");
  } else if (!strcmp(c0, "wal") &&
             (!strcmp(c1, "inspect") || !strcmp(c1, "verify") || !strcmp(c1, "repair"))) {
    rc = np == 3 ? cli_wal(&o, c1, pos[2]) : cli_usage("usage: wal inspect|verify|repair FILE");
  } else {
    char msg[256];
    snprintf(msg, sizeof msg, "unknown command \"%s%s%s\"", c0, np > 1 ? " " : "", c1);
    rc = cli_usage(msg);
  }
  curl_global_cleanup();
  free(pos);
  return rc;
}
