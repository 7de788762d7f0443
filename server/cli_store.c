/*
 * cli_store.c -- the store commands: `store put`, `store get`, `store rm`
 * and `store ls` (see cli_cmd.h).
 *
 * What it is: the key-value requests of /v1/store and their output, the
 * node's JSON (--json) or the aligned human form.  `ls` follows the node's
 * page cursor (next) until --limit keys are printed or the listing ends.
 * What it is not: the HTTP setup (cli_http.c) or option parsing (cli.c).
 *
 * Invariants: a key is percent-encoded in the path with its '/' kept; a
 * value goes as the raw body, with --content-type as its Content-Type or
 * with none (the value then has no type); a version condition goes as
 * If-Match: "<version>", --create as If-None-Match: *.
 *
 * Threads: the CLI's single thread.
 */
#define _GNU_SOURCE /* asprintf, strdup */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_cmd.h"
#include "cli_out.h"

#define CLI_PAGE 1000

/* Reads all of stdin into *out. */
static int cli_read_stdin(char **out, size_t *len) {
  cli_buf b = {0};
  char chunk[65536];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, stdin)) > 0) {
    if (cli_buf_write(chunk, 1, n, &b) != n) {
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

static int cli_read_file(const char *file, cli_buf *b);

static void cli_print_stored(json_t *j, void *ctx) {
  (void)ctx;
  printf("stored\n");
  printf("  key      : %s\n", cli_str(j, "key", NULL));
  printf("  version  : %lld\n", cli_int(j, "version", NULL));
  printf("  lsn      : %lld\n", cli_int(j, "lsn", NULL));
  printf("  durable  : %s\n", cli_yes(j, "durable", NULL));
  const char *ct = json_string_value(json_object_get(j, "content_type"));
  if (ct) printf("  type     : %s\n", ct);
}

static void cli_print_value(json_t *j, void *ctx) {
  (void)ctx;
  bool b64 = strcmp(cli_str(j, "encoding", NULL), "base64") == 0;
  printf("  key      : %s\n", cli_str(j, "key", NULL));
  if (b64) /* binary: its bytes never go to a terminal; say how to get them */
    printf("  value    : (binary, %lld bytes: store get KEY --raw > FILE, or -o FILE)\n",
           cli_int(j, "size", NULL));
  else
    printf("  value    : %s\n", cli_str(j, "value", NULL));
  printf("  version  : %lld\n", cli_int(j, "version", NULL));
  printf("  lsn      : %lld\n", cli_int(j, "lsn", NULL));
  printf("  size     : %lld\n", cli_int(j, "size", NULL));
  const char *ct = json_string_value(json_object_get(j, "content_type"));
  if (ct) printf("  type     : %s\n", ct);
}

static void cli_print_removed(json_t *j, void *ctx) {
  (void)ctx;
  printf("removed\n");
  printf("  key      : %s\n", cli_str(j, "key", NULL));
  printf("  lsn      : %lld\n", cli_int(j, "lsn", NULL));
  printf("  durable  : %s\n", cli_yes(j, "durable", NULL));
}

static void cli_print_applied(json_t *j, void *ctx) {
  printf("applied\n");
  printf("  ops      : %zu\n", *(const size_t *)ctx);
  printf("  lsn      : %lld\n", cli_int(j, "lsn", NULL));
  printf("  durable  : %s\n", cli_yes(j, "durable", NULL));
}

int cli_store_put(const cli_opts *o, const char *key, const char *value) {
  char *data = NULL;
  size_t len = 0;
  const char *file = o->file ? o->file : value && !strcmp(value, "-") ? "-" : NULL;
  if (file) { /* every byte, NUL bytes included */
    cli_buf in = {0};
    if (cli_read_file(file, &in) != 0) {
      free(in.data);
      if (strcmp(file, "-") == 0)
        cli_err("cannot read the value from stdin");
      else
        cli_errc("not_found", "cannot read %s", file);
      return CLI_FAIL;
    }
    data = in.data;
    len = in.len;
  } else {
    if (!value) value = o->value;
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
  int rc = cli_request(o->url, o->token, "PUT", path, data, len, o->content_type, hdr, &st, &b);
  free(data);
  free(ek);
  free(path);
  free(hdr);
  if (rc != 0) return rc;
  return cli_answer(o->json, st, &b, 200, 201, "store put", cli_print_stored, NULL);
}

/* Writes a raw GET's bytes (b, freed here) to stdout or to o->output. */
static int cli_write_value(const cli_opts *o, const char *key, cli_buf *b) {
  const char *file = o->output && strcmp(o->output, "-") != 0 ? o->output : NULL;
  FILE *f = file ? fopen(file, "wb") : stdout;
  bool ok = f != NULL;
  if (ok && b->len && fwrite(b->data, 1, b->len, f) != b->len) ok = false;
  if (f && (file ? fclose(f) : fflush(f)) != 0) ok = false;
  free(b->data);
  if (!ok) {
    cli_errc("io_error", "cannot write the value to %s", file ? file : "stdout");
    return CLI_FAIL;
  }
  if (!file) return CLI_OK;
  if (o->json) {
    json_t *d = json_pack("{s:s,s:s,s:I}", "key", key, "file", file, "size", (json_int_t)b->len);
    char *s = d ? json_dumps(d, JSON_COMPACT) : NULL;
    if (s) printf("%s\n", s);
    free(s);
    json_decref(d);
  } else {
    printf("saved\n  key      : %s\n  file     : %s\n  size     : %zu\n", key, file, b->len);
  }
  return CLI_OK;
}

int cli_store_get(const cli_opts *o, const char *key) {
  bool raw = o->raw || o->output;
  char *ek = cli_path_escape(key, true);
  char *path = NULL;
  if (!ek || asprintf(&path, "/v1/store/%s%s", ek, raw ? "?raw=1" : "") < 0) {
    free(ek);
    return CLI_FAIL;
  }
  long st;
  cli_buf b;
  int rc = cli_request(o->url, o->token, "GET", path, NULL, 0, NULL, NULL, &st, &b);
  free(ek);
  free(path);
  if (rc != 0) return rc;
  if (raw && st == 200) /* the bytes alone, whatever they are, all of them */
    return cli_write_value(o, key, &b);
  return cli_answer(o->json, st, &b, 200, 200, "store get", cli_print_value, NULL);
}

int cli_store_rm(const cli_opts *o, const char *key) {
  char *ek = cli_path_escape(key, true);
  char *path = NULL, *hdr = NULL;
  if (!ek || asprintf(&path, "/v1/store/%s", ek) < 0) {
    free(ek);
    return CLI_FAIL;
  }
  if (o->if_match && asprintf(&hdr, "If-Match: \"%s\"", o->if_match) < 0) hdr = NULL;
  long st;
  cli_buf b;
  int rc = cli_request(o->url, o->token, "DELETE", path, NULL, 0, NULL, hdr, &st, &b);
  free(ek);
  free(path);
  free(hdr);
  if (rc != 0) return rc;
  return cli_answer(o->json, st, &b, 200, 200, "store rm", cli_print_removed, NULL);
}

static void cli_print_removed_prefix(json_t *j, void *ctx) {
  (void)ctx;
  printf("removed\n");
  printf("  prefix   : %s\n", cli_str(j, "prefix", NULL));
  printf("  keys     : %lld\n", cli_int(j, "deleted", NULL));
  printf("  lsn      : %lld\n", cli_int(j, "lsn", NULL));
  printf("  durable  : %s\n", cli_yes(j, "durable", NULL));
}

/* Asks on the terminal whether to remove the keys under o->prefix, saying
 * how many there are.  Returns CLI_OK to go on, else the exit code (after
 * a message). */
static int cli_confirm_prefix(const cli_opts *o, const char *ep) {
  char *path = NULL;
  if (asprintf(&path, "/v1/store?limit=10000&prefix=%s", ep) < 0) return CLI_FAIL;
  long st;
  cli_buf b;
  int rc = cli_request(o->url, o->token, "GET", path, NULL, 0, NULL, NULL, &st, &b);
  free(path);
  if (rc != 0) return rc;
  if (st != 200) {
    rc = cli_fail_from_response(st, &b, "store rm");
    free(b.data);
    return rc;
  }
  json_t *j = cli_parse(&b);
  free(b.data);
  if (!j) return CLI_FAIL;
  long long n = cli_int(j, "count", NULL);
  bool more = json_is_true(json_object_get(j, "more"));
  json_decref(j);
  if (n == 0) return CLI_OK; /* nothing to ask about: the node says 0 */
  fprintf(stderr, "remove %s%lld key%s under \"%s\" (one record, all or none)? [y/N] ",
          more ? "more than " : "", n, n == 1 && !more ? "" : "s", o->prefix);
  fflush(stderr);
  char line[64];
  if (!fgets(line, sizeof line, stdin)) line[0] = '\0';
  if (strcmp(line, "y\n") != 0 && strcmp(line, "yes\n") != 0 && strcmp(line, "Y\n") != 0) {
    cli_errc("not_confirmed", "not confirmed: nothing was removed");
    return CLI_FAIL;
  }
  return CLI_OK;
}

int cli_store_rm_prefix(const cli_opts *o) {
  if (!o->yes && !isatty(STDIN_FILENO)) {
    cli_errc("usage",
             "store rm --prefix asks before it removes, and stdin is not a terminal: "
             "add --yes to remove every key under \"%s\"",
             o->prefix);
    return CLI_USAGE;
  }
  char *ep = cli_path_escape(o->prefix, false);
  if (!ep) return CLI_FAIL;
  int rc = o->yes ? CLI_OK : cli_confirm_prefix(o, ep);
  char *path = NULL;
  if (rc == CLI_OK && asprintf(&path, "/v1/store?prefix=%s", ep) < 0) rc = CLI_FAIL;
  free(ep);
  if (rc != CLI_OK) return rc;
  long st;
  cli_buf b;
  rc = cli_request(o->url, o->token, "DELETE", path, NULL, 0, NULL, NULL, &st, &b);
  free(path);
  if (rc != 0) return rc;
  return cli_answer(o->json, st, &b, 200, 200, "store rm", cli_print_removed_prefix, NULL);
}

int cli_store_ls(const cli_opts *o) {
  char *after = o->after ? strdup(o->after) : NULL;
  if (o->after && !after) return CLI_FAIL;
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
    int hr = cli_request(o->url, o->token, "GET", path, NULL, 0, NULL, NULL, &st, &b);
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
  if (all) {
    /* after is the node's cursor past the last key printed, or NULL when
     * the listing ended: a script passes it back as --after */
    if (rc == CLI_OK) {
      json_t *doc =
          json_pack("{s:o,s:I,s:b,s:o}", "items", all, "count", (json_int_t)printed, "more",
                    after != NULL, "next", after ? json_string(after) : json_null());
      char *s = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
      if (s)
        printf("%s\n", s);
      else
        rc = CLI_FAIL;
      free(s);
      json_decref(doc);
    } else {
      json_decref(all);
    }
  }
  free(after);
  return rc;
}

/* ---- store batch ---------------------------------------------------------- */

/* Reads a whole file ("-": stdin) into *b. */
static int cli_read_file(const char *file, cli_buf *b) {
  if (strcmp(file, "-") == 0) return cli_read_stdin(&b->data, &b->len);
  FILE *f = fopen(file, "rb");
  if (!f) return -1;
  char chunk[65536];
  size_t n;
  int rc = 0;
  while (rc == 0 && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
    if (cli_buf_write(chunk, 1, n, b) != n) rc = -1;
  if (ferror(f)) rc = -1;
  fclose(f);
  if (rc == 0 && !b->data) b->data = calloc(1, 1);
  return rc == 0 && b->data ? 0 : -1;
}

/* s[0..n) in base64 (for a line file's value that is not UTF-8). */
static json_t *cli_base64(const char *s, size_t n) {
  static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  char *o = malloc(4 * (n / 3 + 1) + 1);
  if (!o) return NULL;
  size_t k = 0;
  const unsigned char *p = (const unsigned char *)s;
  for (size_t i = 0; i < n; i += 3) {
    unsigned v = (unsigned)p[i] << 16 | (i + 1 < n ? (unsigned)p[i + 1] << 8 : 0) |
                 (i + 2 < n ? p[i + 2] : 0);
    o[k++] = tab[v >> 18 & 63];
    o[k++] = tab[v >> 12 & 63];
    o[k++] = i + 1 < n ? tab[v >> 6 & 63] : '=';
    o[k++] = i + 2 < n ? tab[v & 63] : '=';
  }
  json_t *j = json_stringn(o, k);
  free(o);
  return j;
}

/* One op of a line file; returns 0, or -1 with the problem in why. */
static int cli_batch_line(json_t *ops, const char *line, size_t len, const char **why) {
  const char *sp = memchr(line, ' ', len);
  size_t vl = sp ? (size_t)(sp - line) : len;
  const char *rest = sp ? sp + 1 : line + len;
  size_t rl = (size_t)(line + len - rest);
  json_t *op = NULL;
  if (vl == 3 && !memcmp(line, "put", 3)) {
    const char *ks = memchr(rest, ' ', rl);
    if (!ks || ks == rest) {
      *why = "expected put KEY VALUE";
      return -1;
    }
    size_t kl = (size_t)(ks - rest);
    const char *v = ks + 1;
    size_t n = (size_t)(rest + rl - v);
    json_t *val = json_stringn(v, n);
    bool b64 = val == NULL; /* not UTF-8 */
    if (b64) val = cli_base64(v, n);
    json_t *key = json_stringn(rest, kl);
    op = key && val ? json_pack("{s:s,s:o,s:o}", "op", "put", "key", key, "value", val) : NULL;
    if (!op) {
      json_decref(key);
      json_decref(val);
      *why = key ? "out of memory" : "the key is not UTF-8";
      return -1;
    }
    if (b64) json_object_set_new(op, "encoding", json_string("base64"));
  } else if ((vl == 6 && !memcmp(line, "delete", 6)) || (vl == 3 && !memcmp(line, "del", 3)) ||
             (vl == 2 && !memcmp(line, "rm", 2))) {
    json_t *key = rl ? json_stringn(rest, rl) : NULL;
    op = key ? json_pack("{s:s,s:o}", "op", "delete", "key", key) : NULL;
    if (!op) {
      json_decref(key);
      *why = rl ? "the key is not UTF-8" : "expected delete KEY";
      return -1;
    }
  } else {
    *why = "expected put KEY VALUE or delete KEY";
    return -1;
  }
  return json_array_append_new(ops, op) == 0 ? 0 : -1;
}

/* The {"ops":[...]} document of a batch file, or NULL after a message. */
static json_t *cli_batch_doc(const char *file, const cli_buf *b) {
  size_t i = 0;
  while (i < b->len &&
         (b->data[i] == ' ' || b->data[i] == '\t' || b->data[i] == '\r' || b->data[i] == '\n'))
    i++;
  if (i < b->len && (b->data[i] == '[' || b->data[i] == '{')) {
    json_error_t je;
    json_t *j = json_loadb(b->data, b->len, JSON_REJECT_DUPLICATES, &je);
    if (!j) {
      cli_errc("usage", "%s:%d:%d: not valid JSON: %s", file, je.line, je.column, je.text);
      return NULL;
    }
    if (json_is_array(j)) return json_pack("{s:o}", "ops", j);
    if (json_is_object(j) && json_is_array(json_object_get(j, "ops"))) return j;
    json_decref(j);
    cli_errc("usage", "%s: a JSON batch is an array of operations or {\"ops\": [...]}", file);
    return NULL;
  }
  json_t *ops = json_array();
  if (!ops) return NULL;
  size_t lineno = 0;
  for (size_t p = 0; p < b->len;) {
    const char *nl = memchr(b->data + p, '\n', b->len - p);
    size_t e = nl ? (size_t)(nl - b->data) : b->len;
    size_t len = e - p;
    lineno++;
    if (len && b->data[p + len - 1] == '\r') len--;
    const char *why = NULL;
    if (len && b->data[p] != '#' && cli_batch_line(ops, b->data + p, len, &why) != 0) {
      cli_errc("usage", "%s:%zu: %s", file, lineno, why ? why : "out of memory");
      json_decref(ops);
      return NULL;
    }
    p = e + 1;
  }
  if (json_array_size(ops) == 0) {
    cli_errc("usage", "%s: no operations", file);
    json_decref(ops);
    return NULL;
  }
  return json_pack("{s:o}", "ops", ops);
}

int cli_store_batch(const cli_opts *o, const char *file) {
  cli_buf in = {0};
  if (cli_read_file(file, &in) != 0) {
    cli_errc("not_found", "cannot read %s", strcmp(file, "-") ? file : "stdin");
    free(in.data);
    return CLI_FAIL;
  }
  json_t *doc = cli_batch_doc(file, &in);
  free(in.data);
  if (!doc) return CLI_USAGE;
  char *body = json_dumps(doc, JSON_COMPACT);
  size_t nops = json_array_size(json_object_get(doc, "ops"));
  json_decref(doc);
  if (!body) return CLI_FAIL;
  long st;
  cli_buf b;
  int rc = cli_request(o->url, o->token, "POST", "/v1/batch", body, strlen(body),
                       "application/json", NULL, &st, &b);
  free(body);
  if (rc != 0) return rc;
  return cli_answer(o->json, st, &b, 200, 200, "store batch", cli_print_applied, &nops);
}
