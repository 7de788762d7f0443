/*
 * test_api_cases.c -- api_handle driven by a data file (cases.txt): each
 * case is a request and the answer expected from it, run in order against
 * one memory-only node, without a socket.
 *
 * File format (one directive per line; blank lines and # comments ignored):
 *   METHOD TARGET      starts a case (TARGET raw, as on the wire)
 *   h Name: value      a request header
 *   b bytes            the request body (escapes: \n \r \t \0 \xNN \\)
 *   = STATUS [code]    the expected status and error code; ends the request
 *   e text             the response body contains text (same escapes)
 *   ! text             the response body does not contain text
 *   r Name: value      the response has this header with exactly this value
 *   r Name             the response has this header
 *   x Name             the response does not have this header
 *   @auth TOKEN        from here on the API requires this bearer token
 *   @auth              from here on no token is required
 * The API runs with max_value_bytes 64, page_value_bytes 100 and CORS origin
 * http://dash.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api.h"
#include "softadastra.h"

#define MAX_HDRS 8

typedef struct tc_case {
  int line;              /* line of the METHOD TARGET line */
  char *method, *target; /* request */
  char *hname[MAX_HDRS]; /* request headers */
  char *hval[MAX_HDRS];
  int nh;
  char *body; /* request body */
  size_t body_len;
  int status;    /* expected */
  char code[64]; /* expected error code or "" */
} tc_case;

static const char *tc_header(void *cls, const char *name) {
  tc_case *c = cls;
  for (int i = 0; i < c->nh; i++)
    if (strcasecmp(c->hname[i], name) == 0) return c->hval[i];
  return NULL;
}

/* Unescapes s into a new buffer; *len gets its length. */
static char *tc_unescape(const char *s, size_t *len) {
  char *o = malloc(strlen(s) + 1);
  size_t n = 0;
  for (const char *p = s; *p; p++) {
    if (*p != '\\' || !p[1]) {
      o[n++] = *p;
      continue;
    }
    p++;
    switch (*p) {
    case 'n':
      o[n++] = '\n';
      break;
    case 'r':
      o[n++] = '\r';
      break;
    case 't':
      o[n++] = '\t';
      break;
    case '0':
      o[n++] = '\0';
      break;
    case 'x': {
      char hex[3] = {p[1], p[1] ? p[2] : 0, 0};
      o[n++] = (char)strtol(hex, NULL, 16);
      p += 2;
      break;
    }
    default:
      o[n++] = *p;
      break;
    }
  }
  o[n] = '\0';
  *len = n;
  return o;
}

static sa_client *client;
static api_ctx *ctx;

static void tc_make_ctx(const char *token) {
  api_ctx_destroy(ctx);
  const char *origins[] = {"http://dash"};
  api_config cfg = {.client = client,
                    .auth_token = token,
                    .cors_origins = origins,
                    .n_cors_origins = 1,
                    .max_value_bytes = 64,
                    .max_batch_bytes = 4096,
                    .page_value_bytes = 100};
  ck_assert_int_eq(api_ctx_create(&cfg, &ctx), 0);
}

static const char *tc_resp_header(const api_response *r, const char *name) {
  for (size_t i = 0; i < r->n_headers; i++)
    if (strcasecmp(r->headers[i].name, name) == 0) return r->headers[i].value;
  if (strcasecmp(name, "Content-Type") == 0) return r->content_type;
  return NULL;
}

static bool tc_contains(const api_response *r, const char *needle, size_t nlen) {
  if (nlen == 0) return true;
  for (size_t i = 0; r->body && i + nlen <= r->body_len; i++)
    if (memcmp(r->body + i, needle, nlen) == 0) return true;
  return false;
}

static void tc_free(tc_case *c) {
  free(c->method);
  free(c->target);
  for (int i = 0; i < c->nh; i++) {
    free(c->hname[i]);
    free(c->hval[i]);
  }
  free(c->body);
  memset(c, 0, sizeof *c);
}

START_TEST(test_cases) {
  sa_options o = sa_options_memory("api-cases");
  sa_error err;
  ck_assert_msg(sa_client_open(&client, &o, &err) == 0, "%s", err.message);
  tc_make_ctx(NULL);
  FILE *f = fopen(SA_API_CASES, "r");
  ck_assert_ptr_nonnull(f);
  char line[8192];
  int lineno = 0, ncases = 0;
  tc_case c = {0};
  api_response *resp = NULL;
  while (fgets(line, sizeof line, f)) {
    lineno++;
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
      line[--n] = '\0';
    if (n == 0 || line[0] == '#') continue;
    if (!strncmp(line, "@auth", 5)) {
      tc_make_ctx(line[5] == ' ' ? line + 6 : NULL);
      continue;
    }
    if (line[1] == ' ' && strchr("hb=er!x", line[0])) {
      const char *arg = line + 2;
      ck_assert_msg(c.method != NULL, "line %d: directive outside a case", lineno);
      switch (line[0]) {
      case 'h': {
        const char *colon = strchr(arg, ':');
        ck_assert_msg(colon && c.nh < MAX_HDRS, "line %d: bad header", lineno);
        c.hname[c.nh] = strndup(arg, (size_t)(colon - arg));
        c.hval[c.nh] = strdup(colon[1] == ' ' ? colon + 2 : colon + 1);
        c.nh++;
        break;
      }
      case 'b':
        free(c.body);
        c.body = tc_unescape(arg, &c.body_len);
        break;
      case '=': {
        c.status = atoi(arg);
        const char *sp = strchr(arg, ' ');
        snprintf(c.code, sizeof c.code, "%s", sp ? sp + 1 : "");
        api_request req = {.method = c.method,
                           .target = c.target,
                           .header = tc_header,
                           .header_cls = &c,
                           .body = c.body,
                           .body_len = c.body_len};
        api_response_free(resp);
        /* Every other case goes the server's way: api_precheck first, then
         * api_handle reusing its routing (api_gated); the rest api_handle alone. */
        api_gated gated = {0};
        resp = NULL;
        if (ncases % 2) {
          req.gated = &gated;
          resp = api_precheck(ctx, &req);
          ck_assert_msg(!resp == gated.passed, "line %d: api_gated disagrees", c.line);
        }
        if (!resp) resp = api_handle(ctx, &req);
        ncases++;
        ck_assert_msg(resp->status == c.status, "line %d: %s %s -> %d, want %d: %.*s", c.line,
                      c.method, c.target, resp->status, c.status, (int)resp->body_len,
                      resp->body ? resp->body : "");
        if (c.code[0]) {
          char want[128];
          snprintf(want, sizeof want, "{\"error\":{\"code\":\"%s\",\"message\":\"", c.code);
          ck_assert_msg(tc_contains(resp, want, strlen(want)), "line %d: want code %s: %.*s",
                        c.line, c.code, (int)resp->body_len, resp->body);
        }
        break;
      }
      case 'e':
      case '!': {
        ck_assert_msg(resp != NULL, "line %d: no response yet", lineno);
        size_t nl;
        char *needle = tc_unescape(arg, &nl);
        bool has = tc_contains(resp, needle, nl);
        ck_assert_msg(has == (line[0] == 'e'), "line %d: body %s \"%s\": %.*s", lineno,
                      line[0] == 'e' ? "lacks" : "has", needle, (int)resp->body_len,
                      resp->body ? resp->body : "");
        free(needle);
        break;
      }
      case 'r':
      case 'x': {
        ck_assert_msg(resp != NULL, "line %d: no response yet", lineno);
        const char *colon = strchr(arg, ':');
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)(colon ? colon - arg : (long)strlen(arg)), arg);
        const char *v = tc_resp_header(resp, name);
        if (line[0] == 'x') {
          ck_assert_msg(v == NULL, "line %d: unexpected header %s: %s", lineno, name, v);
        } else {
          ck_assert_msg(v != NULL, "line %d: no header %s", lineno, name);
          if (colon) ck_assert_msg(!strcmp(v, colon + 2), "line %d: %s is \"%s\"", lineno, name, v);
        }
        break;
      }
      }
      continue;
    }
    /* METHOD TARGET */
    tc_free(&c);
    char *sp = strchr(line, ' ');
    ck_assert_msg(sp != NULL, "line %d: want METHOD TARGET", lineno);
    c.method = strndup(line, (size_t)(sp - line));
    size_t tl;
    c.target = tc_unescape(sp + 1, &tl);
    c.line = lineno;
  }
  fclose(f);
  tc_free(&c);
  api_response_free(resp);
  api_ctx_destroy(ctx);
  ctx = NULL;
  sa_client_close(client);
  fprintf(stderr, "api cases run: %d\n", ncases);
  ck_assert_int_ge(ncases, 50);
}
END_TEST

int main(void) {
  Suite *s = suite_create("api_cases");
  TCase *tc = tcase_create("cases");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_cases);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
