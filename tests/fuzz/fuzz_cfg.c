/*
 * fuzz_cfg.c -- the config parser (server/cfg.c): cfg_apply_json on the
 * input as a config file, then cfg_validate; cfg_set and cfg_parse_listen on
 * the input as text.  Properties: no crash, no leak (cfg_free frees all);
 * every failure comes with a message; a config that validates has a
 * listen address cfg_parse_listen accepts and a non-empty node id; a
 * successful cfg_parse_listen gives a NUL-terminated host.
 */
#include "fuzz.h"

#include "cfg.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  cfg_config c;
  char err[CFG_ERR_MAX];
  FUZZ_CHECK(cfg_init(&c) == CFG_OK);
  err[0] = 0;
  int rc = cfg_apply_json(&c, (const char *)data, size, "fuzz.json", err, sizeof err);
  FUZZ_CHECK(rc == CFG_OK || rc == CFG_EFILE || rc == CFG_EVALUE || rc == CFG_ENOMEM);
  if (rc != CFG_OK) FUZZ_CHECK(err[0] != 0);
  if (rc == CFG_OK) {
    err[0] = 0;
    if (cfg_validate(&c, err, sizeof err) == CFG_OK) {
      char host[64];
      uint16_t port;
      FUZZ_CHECK(cfg_parse_listen(c.listen, host, sizeof host, &port) == 0);
      FUZZ_CHECK(c.node_id && c.node_id[0]);
    } else {
      FUZZ_CHECK(err[0] != 0);
    }
  }
  cfg_free(&c);

  /* the input as "name=value" for cfg_set, and as a listen address */
  char *text = malloc(size + 1);
  FUZZ_CHECK(text != NULL);
  memcpy(text, data, size);
  text[size] = 0;
  FUZZ_CHECK(cfg_init(&c) == CFG_OK);
  char *eq = strchr(text, '=');
  if (eq) {
    *eq = 0;
    err[0] = 0;
    rc = cfg_set(&c, text, eq + 1, "fuzz", err, sizeof err);
    FUZZ_CHECK(rc == CFG_OK || rc == CFG_EVALUE || rc == CFG_ENOMEM);
    if (rc != CFG_OK) FUZZ_CHECK(err[0] != 0);
    *eq = '=';
  }
  cfg_free(&c);
  char host[64];
  memset(host, 'x', sizeof host);
  uint16_t port;
  if (cfg_parse_listen(text, host, sizeof host, &port) == 0)
    FUZZ_CHECK(memchr(host, 0, sizeof host));
  free(text);
  return 0;
}
