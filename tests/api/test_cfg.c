/*
 * test_cfg.c -- the configuration of `softadastra serve` (server/cfg.c):
 * defaults, the JSON file, the environment, flags, precedence, and the
 * rejection of unknown keys and bad values with a message naming the key
 * and its origin, misspelled SOFTADASTRA_* variables, and the messages
 * config/README.md shows (replayed from its examples).
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
  const char *bad_listen[] = {"127.0.0.1", ":",       "127.0.0.1:",      "127.0.0.1:65536",
                              "1.2.3:80",  "[::1:80", "host.example:80", "127.0.0.1:8x"};
  for (size_t i = 0; i < sizeof bad_listen / sizeof *bad_listen; i++) {
    cfg_config c;
    cfg_init(&c);
    /* refused when set, naming the origin ... */
    ck_assert_msg(cfg_set(&c, "listen", bad_listen[i], "t", err, sizeof err) == CFG_EVALUE,
                  "%s accepted", bad_listen[i]);
    ck_assert_msg(strstr(err, "\"listen\" (t)"), "%s", err);
    /* ... and by cfg_validate when it got there another way */
    free(c.listen);
    c.listen = strdup(bad_listen[i]);
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
  ck_assert_int_eq(cfg_set(&c, "log_level", "loud", "t", err, sizeof err), CFG_EVALUE);
  ck_assert(strstr(err, "\"log_level\" (t)"));
  free(c.log_level);
  c.log_level = strdup("loud");
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

/* ":PORT" is 127.0.0.1:PORT. */
START_TEST(test_listen_port_alone) {
  char host[64];
  uint16_t port;
  ck_assert_int_eq(cfg_parse_listen(":8091", host, sizeof host, &port), 0);
  ck_assert_str_eq(host, "127.0.0.1");
  ck_assert_uint_eq(port, 8091);
  cfg_config c;
  bool help;
  char *argv[] = {"--listen", ":0", NULL};
  ck_assert_msg(cfg_load(&c, 2, argv, NULL, &help, err, sizeof err) == CFG_OK, "%s", err);
  cfg_free(&c);
}
END_TEST

/* A bad listen address names where it came from, like every setting. */
START_TEST(test_listen_names_its_origin) {
  cfg_config c;
  bool help;
  char *argv[] = {"--listen", "8091", NULL};
  ck_assert_int_eq(cfg_load(&c, 2, argv, NULL, &help, err, sizeof err), CFG_EVALUE);
  ck_assert_msg(strstr(err, "invalid setting \"listen\" (flag --listen): \"8091\""), "%s", err);
  cfg_free(&c);
  char *env[] = {"SOFTADASTRA_LISTEN=nowhere:1", NULL};
  ck_assert_int_eq(cfg_load(&c, 0, NULL, env, &help, err, sizeof err), CFG_EVALUE);
  ck_assert_msg(strstr(err, "(environment SOFTADASTRA_LISTEN)"), "%s", err);
  cfg_free(&c);
  cfg_init(&c);
  const char *j = "{\"listen\":\"1.2.3:4\"}";
  ck_assert_int_eq(cfg_apply_json(&c, j, strlen(j), "my.json", err, sizeof err), CFG_EVALUE);
  ck_assert_msg(strstr(err, "invalid setting \"listen\" (my.json): \"1.2.3:4\""), "%s", err);
  cfg_free(&c);
}
END_TEST

/* A SOFTADASTRA_* variable no one reads is reported with the closest
 * known name; the settings and the other known variables are not. */
START_TEST(test_env_misspelled) {
  char *env[] = {"SOFTADASTRA_LISTN=:8091",
                 "SOFTADASTRA_NODEID=n2",
                 "SOFTADASTRA_listen=:1",
                 "SOFTADASTRA_QWERTYUIOP=1",
                 "SOFTADASTRA_LISTEN=:8092",
                 "SOFTADASTRA_URL=http://x",
                 "SOFTADASTRA_TOKEN=t",
                 "SOFTADASTRA_CONFIG=",
                 "SOFTADASTRA_FAULTS_FILE=f",
                 "PATH=/bin",
                 NULL};
  char out[1024];
  ck_assert_int_eq(cfg_env_check(env, out, sizeof out), 4);
  ck_assert_msg(strstr(out, "unknown variable SOFTADASTRA_LISTN is ignored; did you mean "
                            "SOFTADASTRA_LISTEN?\n"),
                "%s", out);
  ck_assert_msg(strstr(out, "SOFTADASTRA_NODEID is ignored; did you mean SOFTADASTRA_NODE_ID?\n"),
                "%s", out);
  ck_assert_msg(strstr(out, "SOFTADASTRA_listen is ignored; did you mean SOFTADASTRA_LISTEN?\n"),
                "%s", out);
  ck_assert_msg(strstr(out, "SOFTADASTRA_QWERTYUIOP is ignored (softadastra serve --help"), "%s",
                out);
  ck_assert_ptr_null(strstr(out, "SOFTADASTRA_URL"));
  ck_assert_ptr_null(strstr(out, "SOFTADASTRA_FAULTS"));
  char *none[] = {"SOFTADASTRA_DATA_DIR=d", "SOFTADASTRA_HEALTH_URL=u", NULL};
  ck_assert_int_eq(cfg_env_check(none, out, sizeof out), 0);
  ck_assert_str_eq(out, "");
  /* the buffer may be short or absent: the count stays right */
  ck_assert_int_eq(cfg_env_check(env, out, 8), 4);
  ck_assert_int_eq(cfg_env_check(env, NULL, 0), 4);
}
END_TEST

/* Runs cfg_load on the NULL-terminated flags; returns its code (err set). */
static int load_flags(cfg_config *c, const char *const *flags) {
  char *argv[32];
  int n = 0;
  for (; flags[n]; n++)
    argv[n] = (char *)flags[n];
  bool help;
  char *envp[] = {NULL};
  err[0] = '\0';
  return cfg_load(c, n, argv, envp, &help, err, sizeof err);
}

/* Discovery udp (issue 22 item 8): --discovery KIND sets two settings, udp
 * alone turns the http transport on (no --peer needed), --advertise-url is
 * discovery_url, and what cannot work is refused at start naming why. */
START_TEST(test_discovery_settings) {
  cfg_config c;
  const char *a1[] = {"--discovery", "udp", "--discovery-port", "7000", NULL};
  ck_assert_msg(load_flags(&c, a1) == CFG_OK, "%s", err);
  ck_assert(c.enable_discovery);
  ck_assert_str_eq(c.discovery_kind, "udp");
  ck_assert(c.enable_transport);
  ck_assert_str_eq(c.transport_kind, "http");
  ck_assert_uint_eq(c.n_peers, 0);
  ck_assert_uint_eq(c.discovery_port, 7000);
  ck_assert_uint_eq(c.discovery_interval_ms, 2000);
  ck_assert_uint_eq(c.discovery_timeout_s, 15);
  ck_assert_str_eq(c.discovery_url, "");
  cfg_free(&c);
  const char *a2[] = {
      "--listen",    "0.0.0.0:8091", "--discovery=udp", "--advertise-url", "http://node-a.lan:8091",
      "--transport", "http+nats",    "--nats-url",      "nats://hub:4222", NULL};
  ck_assert_msg(load_flags(&c, a2) == CFG_OK, "%s", err);
  ck_assert_str_eq(c.discovery_url, "http://node-a.lan:8091");
  ck_assert_str_eq(c.transport_kind, "http+nats");
  cfg_free(&c);
  /* the stub stays the default kind, and without --discovery nothing changes */
  const char *a3[] = {"--enable-discovery", NULL};
  ck_assert_msg(load_flags(&c, a3) == CFG_OK, "%s", err);
  ck_assert_str_eq(c.discovery_kind, "stub");
  ck_assert(!c.enable_transport);
  cfg_free(&c);
  const struct {
    const char *flags[8];
    const char *part;
  } bad[] = {
      {{"--discovery", "multicast", NULL}, "must be udp, stub or disabled"},
      {{"--discovery", NULL}, "--discovery needs a kind"},
      {{"--discovery", "udp", "--transport", "nats", "--nats-url", "nats://h:1", NULL},
       "use --transport http"},
      {{"--discovery", "udp", "--transport", "stub", NULL}, "use --transport http"},
      {{"--discovery", "udp", "--discovery-timeout-s", "1", NULL}, "two discovery intervals"},
      {{"--discovery", "udp", "--discovery-port", "0", NULL}, "discovery_port"},
      {{"--discovery", "udp", "--discovery-port", "65536", NULL}, "discovery_port"},
      {{"--discovery", "udp", "--discovery-interval-ms", "10", NULL}, "discovery_interval_ms"},
      {{"--discovery", "udp", "--advertise-url", "ftp://x", NULL}, "not a URL peers can use"},
      {{"--discovery", "udp", "--advertise-url", "http://a:1?q", NULL}, "no query"},
      {{"--listen", "0.0.0.0:1", "--discovery", "udp", "--advertise-url", "http://127.0.0.1:1",
        NULL},
       "loopback address"},
      {{"--listen", "10.1.2.3:1", "--discovery", "udp", "--advertise-url", "http://localhost:1",
        NULL},
       "--advertise-url"},
      {{"--transport", "http", NULL}, "--discovery udp to find them"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    int rc = load_flags(&c, bad[i].flags);
    ck_assert_msg(rc != CFG_OK && strstr(err, bad[i].part), "case %zu: rc %d, \"%s\"", i, rc, err);
    cfg_free(&c);
  }
  /* a loopback node may advertise a loopback URL */
  const char *a4[] = {"--discovery", "udp", "--advertise-url", "http://127.0.0.1:1", NULL};
  ck_assert_msg(load_flags(&c, a4) == CFG_OK, "%s", err);
  cfg_free(&c);
}
END_TEST

/* Splits a "$ A=1 softadastra serve --x \"a b\"" line into env and args
 * (double quotes group words).  Returns the number of args after "serve",
 * or -1 when the line is not such a command. */
static int split_example(char *line, char **env, int *nenv, char **args) {
  char *words[32];
  int n = 0;
  for (char *p = line; *p && n < 31;) {
    while (*p == ' ')
      p++;
    if (!*p) break;
    char *w = p, *o = p;
    bool q = false;
    for (; *p && (q || *p != ' '); p++) {
      if (*p == '"')
        q = !q;
      else
        *o++ = *p;
    }
    if (*p) p++;
    *o = '\0';
    words[n++] = w;
  }
  int i = 0;
  *nenv = 0;
  while (i < n && strchr(words[i], '=') && strncmp(words[i], "--", 2) != 0)
    env[(*nenv)++] = words[i++];
  env[*nenv] = NULL;
  if (i + 1 >= n || strcmp(words[i], "softadastra") || strcmp(words[i + 1], "serve")) return -1;
  int na = 0;
  for (i += 2; i < n; i++)
    args[na++] = words[i];
  args[na] = NULL;
  return na;
}

/* Every "$ ... softadastra serve ..." example of config/README.md prints
 * exactly the "softadastra serve: " lines shown under it (the warnings of
 * cfg_env_check, then the error of cfg_load, as server/main.c prints them). */
START_TEST(test_readme_messages) {
  char path[1024];
  snprintf(path, sizeof path, "%s", SA_CONFIG_FILE);
  char *slash = strrchr(path, '/');
  ck_assert_ptr_nonnull(slash);
  snprintf(slash + 1, sizeof path - (size_t)(slash + 1 - path), "README.md");
  FILE *f = fopen(path, "r");
  ck_assert_msg(f != NULL, "cannot open %s", path);
  char line[1024], cmd[1024] = "", want[4096] = "";
  int examples = 0;
  bool in = false;
  for (;;) {
    char *got = fgets(line, sizeof line, f);
    bool shown = got && strncmp(line, "    softadastra serve: ", 23) == 0;
    if (in && shown) {
      strncat(want, line + 4, sizeof want - strlen(want) - 1);
      continue;
    }
    if (in) { /* the example ended: replay it */
      char *env[16], *args[16];
      int nenv;
      int na = split_example(cmd, env, &nenv, args);
      ck_assert_msg(na >= 0, "not a serve command: %s", cmd);
      char warn[2048], printed[4096] = "";
      cfg_env_check(env, warn, sizeof warn);
      for (char *w = warn, *nl; (nl = strchr(w, '\n')) != NULL; w = nl + 1)
        snprintf(printed + strlen(printed), sizeof printed - strlen(printed),
                 "softadastra serve: warning: %.*s\n", (int)(nl - w), w);
      cfg_config c;
      bool help;
      err[0] = '\0';
      if (cfg_load(&c, na, args, env, &help, err, sizeof err) != CFG_OK)
        snprintf(printed + strlen(printed), sizeof printed - strlen(printed),
                 "softadastra serve: %s\n", err);
      cfg_free(&c);
      ck_assert_msg(strcmp(printed, want) == 0, "config/README.md shows\n%sthe program prints\n%s",
                    want, printed);
      examples++;
      in = false;
    }
    if (!got) break;
    if (strncmp(line, "    $ ", 6) == 0 && strstr(line, "softadastra serve")) {
      snprintf(cmd, sizeof cmd, "%s", line + 6);
      cmd[strcspn(cmd, "\n")] = '\0';
      want[0] = '\0';
      in = true;
    }
  }
  fclose(f);
  ck_assert_int_ge(examples, 5);
}
END_TEST

int main(void) {
  Suite *s = suite_create("cfg");
  TCase *tc = tcase_create("cfg");
  tcase_add_test(tc, test_defaults);
  tcase_add_test(tc, test_discovery_settings);
  tcase_add_test(tc, test_shipped_file_is_defaults);
  tcase_add_test(tc, test_json_values);
  tcase_add_test(tc, test_threads_auto);
  tcase_add_test(tc, test_json_rejections);
  tcase_add_test(tc, test_validate);
  tcase_add_test(tc, test_precedence);
  tcase_add_test(tc, test_flags);
  tcase_add_test(tc, test_listen_port_alone);
  tcase_add_test(tc, test_listen_names_its_origin);
  tcase_add_test(tc, test_env_misspelled);
  tcase_add_test(tc, test_readme_messages);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
