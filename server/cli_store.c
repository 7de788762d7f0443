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
 * value goes as the raw body (application/octet-stream); a version
 * condition goes as If-Match: "<version>", --create as If-None-Match: *.
 *
 * Threads: the CLI's single thread.
 */
#define _GNU_SOURCE /* asprintf, strdup */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int cli_store_put(const cli_opts *o, const char *key, const char *value) {
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
  int rc = cli_request(o->url, o->token, "PUT", path, data, len, "application/octet-stream", hdr,
                       &st, &b);
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

int cli_store_get(const cli_opts *o, const char *key) {
  char *ek = cli_path_escape(key, true);
  char *path = NULL;
  if (!ek || asprintf(&path, "/v1/store/%s%s", ek, o->raw ? "?raw=1" : "") < 0) {
    free(ek);
    return CLI_FAIL;
  }
  long st;
  cli_buf b;
  int rc = cli_request(o->url, o->token, "GET", path, NULL, 0, NULL, NULL, &st, &b);
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

int cli_store_ls(const cli_opts *o) {
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
