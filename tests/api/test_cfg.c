/*
 * test_cfg.c -- the configuration of `softadastra serve` (server/cfg.c):
 * defaults, the JSON file, the environment, flags, precedence, and the
 * rejection of unknown keys and bad values with a message naming the key.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cfg.h"

static char err[CFG_ERR_MAX];

START_TEST(test_defaults) {
  cfg_config c;
  ck_assert_int_eq(cfg_init(&c), CFG_OK);
  ck_assert_str_eq(c.listen, "127.0.0.1:8080");
  ck_assert_str_eq(c.data_dir, "data");
  ck_assert_str_eq(c.node_id, "node-1");
  ck_assert_str_eq(c.wal_path, "");
  ck_assert(c.auto_flush);
  ck_assert(!c.enable_transport);
  ck_assert(!c.enable_discovery);
  ck_assert_uint_eq(c.max_value_bytes, 1u << 20);
  ck_assert_str_eq(c.auth_token, "");
  ck_assert_uint_eq(c.n_cors_origins, 0);
  ck_assert_int_eq(cfg_validate(&c, err, sizeof err), CFG_OK);
  cfg_free(&c);
}
END_TEST

/* config/softadastra.json holds exactly the defaults. */
START_TEST(test_shipped_file_is_defaults) {
  cfg_config a, b;
  ck_assert_int_eq(cfg_init(&a), CFG_OK);
  ck_assert_int_eq(cfg_init(&b), CFG_OK);
  ck_assert_msg(cfg_load_file(&b, SA_CONFIG_FILE, err, sizeof err) == CFG_OK, "%s", err);
  ck_assert_str_eq(a.listen, b.listen);
  ck_assert_str_eq(a.data_dir, b.data_dir);
  ck_assert_str_eq(a.node_id, b.node_id);
  ck_assert_uint_eq(a.store_max_bytes, b.store_max_bytes);
  ck_assert_uint_eq(a.threads, b.threads);
  ck_assert_int_eq(a.auto_flush, b.auto_flush);
  ck_assert_str_eq(b.config_path, SA_CONFIG_FILE);
  cfg_free(&a);
  cfg_free(&b);
}
END_TEST

/* threads 0 (the default): one HTTP worker per online CPU. */
START_TEST(test_threads_auto) {
  cfg_config c;
  cfg_init(&c);
  ck_assert_uint_eq(c.threads, 0);
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  ck_assert_int_gt(n, 0);
  ck_assert_uint_eq(cfg_threads(&c), n > 256 ? 256u : (unsigned)n);
  const char *j = "{\"threads\":0,\"store_commit_ms\":40}";
  ck_assert_msg(cfg_apply_json(&c, j, strlen(j), "test", err, sizeof err) == CFG_OK, "%s", err);
  ck_assert_uint_eq(c.store_commit_ms, 40);
  j = "{\"store_commit_ms\":0}";
  ck_assert_int_eq(cfg_apply_json(&c, j, strlen(j), "test", err, sizeof err), CFG_EVALUE);
  ck_assert_msg(strstr(err, "store_commit_ms") != NULL, "%s", err);
  cfg_free(&c);
}
END_TEST

START_TEST(test_json_values) {
  cfg_config c;
  cfg_init(&c);
  const char *j = "{\"listen\":\"[::1]:0\",\"auto_flush\":false,\"threads\":8,"
                  "\"store_max_bytes\":1073741824,\"cors_origins\":[\"http://a\",\"*\"],"
                  "\"auth_token\":\"t0k\"}";
  ck_assert_msg(cfg_apply_json(&c, j, strlen(j), "test", err, sizeof err) == CFG_OK, "%s", err);
  ck_assert_str_eq(c.listen, "[::1]:0");
  ck_assert(!c.auto_flush);
  ck_assert_uint_eq(c.threads, 8);
  ck_assert_uint_eq(cfg_threads(&c), 8);
  ck_assert_uint_eq(c.store_max_bytes, 1073741824ull);
  ck_assert_uint_eq(c.n_cors_origins, 2);
  ck_assert_str_eq(c.cors_origins[1], "*");
  ck_assert_int_eq(cfg_validate(&c, err, sizeof err), CFG_OK);
  cfg_free(&c);
}
END_TEST

/* Each bad document is refused and the message names the key. */
START_TEST(test_json_rejections) {
  struct {
    const char *doc;
    int rc;
    const char *needle;
  } cases[] = {
      {"{\"nodeid\":\"x\"}", CFG_EVALUE, "\"nodeid\""},
      {"{\"threads\":\"4\"}", CFG_EVALUE, "\"threads\""},
      {"{\"threads\":1000}", CFG_EVALUE, "\"threads\""},
      {"{\"threads\":-1}", CFG_EVALUE, "\"threads\""},
      {"{\"threads\":1.5}", CFG_EVALUE, "\"threads\""},
      {"{\"auto_flush\":\"yes\"}", CFG_EVALUE, "\"auto_flush\""},
      {"{\"data_dir\":\"\"}", CFG_EVALUE, "\"data_dir\""},
      {"{\"data_dir\":null}", CFG_EVALUE, "\"data_dir\""},
      {"{\"node_id\":\"a\\u0000b\"}", CFG_EVALUE, "\"node_id\""},
      {"{\"cors_origins\":\"http://a\"}", CFG_EVALUE, "\"cors_origins\""},
      {"{\"cors_origins\":[1]}", CFG_EVALUE, "\"cors_origins\""},
      {"{\"threads\":2,\"threads\":3}", CFG_EFILE, "duplicate"},
      {"[]", CFG_EFILE, "JSON object"},
      {"{", CFG_EFILE, "not valid JSON"},
      {"", CFG_EFILE, "not valid JSON"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    cfg_config c;
    cfg_init(&c);
    err[0] = '\0';
    int rc = cfg_apply_json(&c, cases[i].doc, strlen(cases[i].doc), "f.json", err, sizeof err);
    ck_assert_msg(rc == cases[i].rc, "%s: rc %d want %d (%s)", cases[i].doc, rc, cases[i].rc, err);
    ck_assert_msg(strstr(err, cases[i].needle), "%s: message \"%s\" lacks %s", cases[i].doc, err,
                  cases[i].needle);
    cfg_free(&c);
  }
}
END_TEST

START_TEST(test_validate) {
  const char *bad_listen[] = {"127.0.0.1", ":80",     "127.0.0.1:",      "127.0.0.1:65536",
                              "1.2.3:80",  "[::1:80", "host.example:80", "127.0.0.1:8x"};
  for (size_t i = 0; i < sizeof bad_listen / sizeof *bad_listen; i++) {
    cfg_config c;
    cfg_init(&c);
    ck_assert_int_eq(cfg_set(&c, "listen", bad_listen[i], "t", err, sizeof err), CFG_OK);
    ck_assert_msg(cfg_validate(&c, err, sizeof err) == CFG_EVALUE, "%s accepted", bad_listen[i]);
    ck_assert(strstr(err, "\"listen\""));
    cfg_free(&c);
  }
  char host[64];
  uint16_t port;
  ck_assert_int_eq(cfg_parse_listen("localhost:9", host, sizeof host, &port), 0);
  ck_assert_str_eq(host, "127.0.0.1");
  ck_assert_uint_eq(port, 9);
  ck_assert_int_eq(cfg_parse_listen("[::1]:0", host, sizeof host, &port), 0);
  ck_assert_str_eq(host, "::1");
  const char *bad_ids[] = {"", "a b", "a/b", "\xc3\xa9"};
  for (size_t i = 0; i < sizeof bad_ids / sizeof *bad_ids; i++) {
    cfg_config c;
    cfg_init(&c);
    free(c.node_id);
    c.node_id = strdup(bad_ids[i]);
    ck_assert_int_eq(cfg_validate(&c, err, sizeof err), CFG_EVALUE);
    ck_assert(strstr(err, "\"node_id\""));
    cfg_free(&c);
  }
  cfg_config c;
  cfg_init(&c);
  ck_assert_int_eq(cfg_set(&c, "log_level", "loud", "t", err, sizeof err), CFG_OK);
  ck_assert_int_eq(cfg_validate(&c, err, sizeof err), CFG_EVALUE);
  ck_assert(strstr(err, "\"log_level\""));
  cfg_free(&c);
}
END_TEST

/* flags > environment > file > defaults */
START_TEST(test_precedence) {
  char path[] = "/tmp/sa-cfg-test-XXXXXX";
  int fd = mkstemp(path);
  ck_assert_int_ge(fd, 0);
  FILE *f = fdopen(fd, "w");
  fputs("{\"node_id\":\"file\",\"data_dir\":\"file-dir\",\"threads\":2,\"log_level\":\"warn\"}", f);
  fclose(f);
  char cfgenv[64];
  snprintf(cfgenv, sizeof cfgenv, "SOFTADASTRA_CONFIG=%s", path);
  char *env[] = {cfgenv,
                 "SOFTADASTRA_NODE_ID=env",
                 "SOFTADASTRA_DATA_DIR=env-dir",
                 "SOFTADASTRA_URL=http://ignored",
                 "SOFTADASTRA_AUTH_TOKEN=",
                 NULL};
  char *argv[] = {"--node-id", "flag", "--no-auto-flush", "--cors-origins=http://x,http://y", NULL};
  cfg_config c;
  bool help;
  int rc = cfg_load(&c, 4, argv, env, &help, err, sizeof err);
  ck_assert_msg(rc == CFG_OK, "%s", err);
  ck_assert(!help);
  ck_assert_str_eq(c.node_id, "flag");          /* flag beats env and file */
  ck_assert_str_eq(c.data_dir, "env-dir");      /* env beats file */
  ck_assert_uint_eq(c.threads, 2);              /* file beats default */
  ck_assert_str_eq(c.log_level, "warn");        /* file */
  ck_assert_str_eq(c.listen, "127.0.0.1:8080"); /* default */
  ck_assert_str_eq(c.auth_token, "");           /* empty env = unset */
  ck_assert(!c.auto_flush);
  ck_assert_uint_eq(c.n_cors_origins, 2);
  ck_assert_str_eq(c.cors_origins[1], "http://y");
  ck_assert_str_eq(c.config_path, path);
  cfg_free(&c);

  /* --config beats SOFTADASTRA_CONFIG */
  char *argv2[] = {"--config", "/nonexistent.json", NULL};
  ck_assert_int_eq(cfg_load(&c, 2, argv2, env, &help, err, sizeof err), CFG_EFILE);
  ck_assert(strstr(err, "/nonexistent.json"));
  cfg_free(&c);
  unlink(path);
}
END_TEST

START_TEST(test_flags) {
  cfg_config c;
  bool help;
  char *h[] = {"--listen", "x", "--help", NULL};
  ck_assert_int_eq(cfg_load(&c, 3, h, NULL, &help, err, sizeof err), CFG_OK);
  ck_assert(help);
  cfg_free(&c);
  struct {
    int argc;
    char *argv[4];
    int rc;
    const char *needle;
  } cases[] = {
      {1, {"--bogus"}, CFG_EUSAGE, "--bogus"},
      {1, {"--listen"}, CFG_EUSAGE, "--listen needs a value"},
      {1, {"positional"}, CFG_EUSAGE, "positional"},
      {1, {"--no-listen"}, CFG_EUSAGE, "--no-listen"},
      {2, {"--threads", "x"}, CFG_EVALUE, "flag --threads"},
      {1, {"--auto-flush=maybe"}, CFG_EVALUE, "\"auto_flush\""},
      {2, {"--wal", ""}, CFG_OK, ""},
      {2, {"--store", "/tmp/x.mdb"}, CFG_OK, ""},
      {1, {"--config"}, CFG_EUSAGE, "--config"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    err[0] = '\0';
    int rc = cfg_load(&c, cases[i].argc, cases[i].argv, NULL, &help, err, sizeof err);
    ck_assert_msg(rc == cases[i].rc, "case %zu: rc %d want %d (%s)", i, rc, cases[i].rc, err);
    ck_assert_msg(strstr(err, cases[i].needle), "case %zu: \"%s\" lacks %s", i, err,
                  cases[i].needle);
    cfg_free(&c);
  }
  char *env[] = {"SOFTADASTRA_THREADS=abc", NULL};
  ck_assert_int_eq(cfg_load(&c, 0, NULL, env, &help, err, sizeof err), CFG_EVALUE);
  ck_assert(strstr(err, "SOFTADASTRA_THREADS"));
  cfg_free(&c);
}
END_TEST

int main(void) {
  Suite *s = suite_create("cfg");
  TCase *tc = tcase_create("cfg");
  tcase_add_test(tc, test_defaults);
  tcase_add_test(tc, test_shipped_file_is_defaults);
  tcase_add_test(tc, test_json_values);
  tcase_add_test(tc, test_threads_auto);
  tcase_add_test(tc, test_json_rejections);
  tcase_add_test(tc, test_validate);
  tcase_add_test(tc, test_precedence);
  tcase_add_test(tc, test_flags);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
