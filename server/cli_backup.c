/*
 * cli_backup.c -- `softadastra backup DEST`, `softadastra backup verify
 * FILE` and `softadastra restore FILE --data-dir D [--node-id ID]
 * [--force]`: an online backup of a running node (GET /v1/backup, saved
 * to DEST and checked), the offline check of a backup file, and the
 * restore of one into a data directory that `softadastra serve` opens.
 *
 * What it is not: the backup or its format (core/node_backup.c,
 * core/store_backup.c), nor the other client commands (cli.c parses
 * theirs; these parse their own few options, see cli_backup_main).
 *
 * Invariants: DEST appears only once the whole backup arrived and passed
 * sa_backup_verify (it is written as DEST.partial and renamed); restore
 * changes nothing in the directory until the backup has been checked
 * (the store is written beside its final name and renamed).
 *
 * Threads: the CLI's single thread.
 */
#define _GNU_SOURCE
#include "cli_backup.h"

#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "cli_cmd.h"
#include "cli_http.h"
#include "cli_out.h"
#include "softadastra.h"

typedef struct bk_opts {
  const char *url, *token, *data_dir, *node_id;
  bool json, force, quiet;
  const char *pos[3];
  int npos;
} bk_opts;

static const char bk_usage[] =
    "usage: softadastra backup DEST [--url URL] [--token TOKEN] [--force] [--quiet] [--json]\n"
    "       softadastra backup verify FILE [--json]\n"
    "       softadastra restore FILE --data-dir DIR [--node-id ID] [--force] [--json]\n"
    "backup DEST      takes one consistent backup of the running node at --url (GET /v1/backup)\n"
    "                 while it keeps serving, and writes it to DEST (- for stdout) once\n"
    "                 complete and checked: every write acknowledged before it began is in it.\n"
    "                 Progress (bytes) goes to stderr on a terminal unless --quiet.\n"
    "                 --force replaces an existing DEST.\n"
    "backup verify    checks a backup file: header, length, the data's CRC-32C, the trailer.\n"
    "restore FILE     writes the backup's store into DIR, with a new epoch (feed positions\n"
    "                 from before are refused as from another epoch).  DIR must be empty or\n"
    "                 missing unless --force, which removes the node's WAL and store there\n"
    "                 first.  --node-id ID gives the store another node id (default: the\n"
    "                 backup's).  Then: softadastra serve --data-dir DIR --node-id ID.\n";

static int bk_usage_fail(const char *msg) {
  cli_errc("usage", "%s (see softadastra backup --help)", msg);
  return CLI_USAGE;
}

static int bk_parse(int argc, char **argv, bk_opts *o, bool *help) {
  memset(o, 0, sizeof *o);
  o->url = getenv("SOFTADASTRA_URL");
  o->token = getenv("SOFTADASTRA_TOKEN");
  if (!o->url || !*o->url) o->url = CLI_DEFAULT_URL;
  *help = false;
  bool rest = false;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (rest || a[0] != '-' || !a[1]) {
      if (o->npos == 3) return bk_usage_fail("too many arguments");
      o->pos[o->npos++] = a;
      continue;
    }
    if (!strcmp(a, "--")) {
      rest = true;
      continue;
    }
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      *help = true;
      continue;
    }
    if (!strcmp(a, "--json")) {
      o->json = true;
      continue;
    }
    if (!strcmp(a, "--force")) {
      o->force = true;
      continue;
    }
    if (!strcmp(a, "--quiet")) {
      o->quiet = true;
      continue;
    }
    const char **slot = !strcmp(a, "--url")        ? &o->url
                        : !strcmp(a, "--token")    ? &o->token
                        : !strcmp(a, "--data-dir") ? &o->data_dir
                        : !strcmp(a, "--node-id")  ? &o->node_id
                                                   : NULL;
    if (!slot) {
      char m[128];
      snprintf(m, sizeof m, "unknown option %.60s", a);
      return bk_usage_fail(m);
    }
    if (i + 1 >= argc) {
      char m[128];
      snprintf(m, sizeof m, "option %s needs a value", a);
      return bk_usage_fail(m);
    }
    *slot = argv[++i];
  }
  cli_out_json_errors(o->json);
  return CLI_OK;
}

static char *bk_hex(uint64_t v, char buf[17]) {
  snprintf(buf, 17, "%016" PRIx64, v);
  return buf;
}

static void bk_print_info(const bk_opts *o, const char *verb, const char *path,
                          const sa_backup_info *in, const char *extra_key, const char *extra) {
  char ep[17];
  if (o->json) {
    json_t *j = json_pack(
        "{s:s,s:s,s:s,s:i,s:i,s:I,s:I,s:s,s:I,s:I,s:I}", "result", verb, "file", path, "node_id",
        in->node_id, "version", (int)in->version, "store_format", (int)in->store_format,
        "applied_lsn", (json_int_t)in->applied_lsn, "acked_lsn", (json_int_t)in->acked_lsn,
        "source_epoch", bk_hex(in->epoch, ep), "created_ms", (json_int_t)in->created_ms,
        "data_bytes", (json_int_t)in->data_bytes, "file_bytes", (json_int_t)in->file_bytes);
    if (j && extra_key) json_object_set_new(j, extra_key, json_string(extra));
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    if (s) printf("%s\n", s);
    free(s);
    json_decref(j);
    return;
  }
  time_t t = (time_t)(in->created_ms / 1000);
  struct tm tm;
  char when[32] = "?";
  if (gmtime_r(&t, &tm)) strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
  printf("%s: %s\n"
         "  node        %s\n"
         "  taken       %s\n"
         "  applied_lsn %llu (every write acknowledged before it began: up to LSN %llu)\n"
         "  epoch       %s (the source's)\n"
         "  size        %llu bytes (store copy %llu bytes, format %u; CRC-32C ok)\n",
         verb, path, in->node_id, when, (unsigned long long)in->applied_lsn,
         (unsigned long long)in->acked_lsn, bk_hex(in->epoch, ep),
         (unsigned long long)in->file_bytes, (unsigned long long)in->data_bytes, in->store_format);
  if (extra_key) printf("  %-11s %s\n", extra_key, extra);
}

/* ---- backup DEST ------------------------------------------------------------ */

typedef struct bk_xfer {
  CURL *curl;
  FILE *out;
  long status; /* 0 until the first body bytes */
  cli_buf err; /* the body of a non-200 answer */
  uint64_t bytes;
  bool write_failed;
  bool progress; /* on a terminal, not --quiet */
  struct timespec last;
} bk_xfer;

static size_t bk_write(char *p, size_t size, size_t nmemb, void *ud) {
  bk_xfer *x = ud;
  size_t n = size * nmemb;
  if (!x->status) curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &x->status);
  if (x->status != 200) return cli_buf_write(p, size, nmemb, &x->err);
  if (fwrite(p, 1, n, x->out) != n) {
    x->write_failed = true;
    return 0;
  }
  x->bytes += n;
  return n;
}

static int bk_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un) {
  (void)dt, (void)dn, (void)ut, (void)un;
  bk_xfer *x = ud;
  if (!x->progress || x->status != 200) return 0;
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  if ((now.tv_sec - x->last.tv_sec) * 1000 + (now.tv_nsec - x->last.tv_nsec) / 1000000 < 250)
    return 0;
  x->last = now;
  fprintf(stderr, "\rbackup: %.1f MiB received", (double)x->bytes / (1024.0 * 1024.0));
  fflush(stderr);
  return 0;
}

static int bk_backup(const bk_opts *o, const char *dest) {
  bool to_stdout = !strcmp(dest, "-");
  char *part = NULL;
  struct stat st;
  if (!to_stdout && !o->force && stat(dest, &st) == 0) {
    cli_errc("exists", "%s exists; choose another name or pass --force", dest);
    return CLI_FAIL;
  }
  if (!to_stdout && asprintf(&part, "%s.partial", dest) < 0) return CLI_FAIL;
  bk_xfer x = {0};
  x.out = to_stdout ? stdout : fopen(part, "wb");
  if (!x.out) {
    cli_errc("io", "cannot create %s: %s", part, strerror(errno));
    free(part);
    return CLI_FAIL;
  }
  x.progress = !o->quiet && isatty(STDERR_FILENO);
  clock_gettime(CLOCK_MONOTONIC, &x.last);
  cli_conn c;
  if (cli_conn_open(&c, o->url, o->token, "/v1/backup") != 0) {
    if (!to_stdout) fclose(x.out);
    free(part);
    cli_errc("internal", "out of memory");
    return CLI_FAIL;
  }
  x.curl = c.curl;
  cli_conn_ready(&c);
  curl_easy_setopt(c.curl, CURLOPT_WRITEFUNCTION, bk_write);
  curl_easy_setopt(c.curl, CURLOPT_WRITEDATA, &x);
  curl_easy_setopt(c.curl, CURLOPT_XFERINFOFUNCTION, bk_progress);
  curl_easy_setopt(c.curl, CURLOPT_XFERINFODATA, &x);
  curl_easy_setopt(c.curl, CURLOPT_NOPROGRESS, 0L);
  /* A stalled node: give up after 60 s without a byte. */
  curl_easy_setopt(c.curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(c.curl, CURLOPT_LOW_SPEED_TIME, 60L);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  CURLcode cr = curl_easy_perform(c.curl);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  if (!x.status) curl_easy_getinfo(c.curl, CURLINFO_RESPONSE_CODE, &x.status);
  char why[256] = "";
  if (cr != CURLE_OK) cli_http_why(c.curl, cr, why, sizeof why);
  cli_conn_close(&c);
  if (x.progress) fputc('\n', stderr);
  /* The file is made durable before it gets its name (then its directory). */
  int wrc = 0;
  if (to_stdout) {
    wrc = fflush(stdout);
  } else {
    if (fflush(x.out) != 0 || fsync(fileno(x.out)) != 0) wrc = -1;
    if (fclose(x.out) != 0) wrc = -1;
  }
  int rc = CLI_OK;
  if (x.status != 200 && x.status != 0) {
    rc = cli_fail_from_response(x.status, &x.err, "backup");
  } else if (cr != CURLE_OK) {
    cli_errc("transfer", "backup cut after %llu bytes: %s; nothing was saved",
             (unsigned long long)x.bytes, why);
    rc = CLI_FAIL;
  } else if (x.write_failed || wrc != 0) {
    cli_errc("io", "cannot write %s: %s", to_stdout ? "stdout" : part, strerror(errno));
    rc = CLI_FAIL;
  }
  free(x.err.data);
  if (to_stdout) {
    free(part);
    return rc;
  }
  sa_backup_info info;
  sa_error err = {0};
  if (rc == CLI_OK && sa_backup_verify(part, &info, &err) != 0) {
    cli_errc("corrupt", "the backup received does not check: %s; nothing was saved", err.message);
    rc = CLI_FAIL;
  }
  if (rc == CLI_OK && rename(part, dest) != 0) {
    cli_errc("io", "rename %s to %s: %s", part, dest, strerror(errno));
    rc = CLI_FAIL;
  }
  if (rc == CLI_OK) {
    char *dir = strdup(dest), *slash = dir ? strrchr(dir, '/') : NULL;
    if (slash) *(slash == dir ? slash + 1 : slash) = '\0';
    int dfd = dir ? open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (dfd >= 0) {
      (void)fsync(dfd);
      close(dfd);
    }
    free(dir);
  }
  if (rc != CLI_OK) unlink(part);
  free(part);
  if (rc != CLI_OK) return rc;
  double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  char speed[64];
  snprintf(speed, sizeof speed, "%.2f s, %.1f MB/s", s,
           s > 0 ? (double)info.file_bytes / 1e6 / s : 0.0);
  bk_print_info(o, "backup", dest, &info, "took", speed);
  return CLI_OK;
}

/* ---- restore ------------------------------------------------------------------ */

/* True when dir has an entry besides . and ..; errno-style failure: -1. */
static int bk_dir_nonempty(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return errno == ENOENT ? 0 : -1;
  struct dirent *e;
  int found = 0;
  while ((e = readdir(d)) != NULL)
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
      found = 1;
      break;
    }
  closedir(d);
  return found;
}

static int bk_restore(const bk_opts *o, const char *file) {
  if (!o->data_dir || !*o->data_dir) return bk_usage_fail("restore needs --data-dir DIR");
  sa_backup_info info;
  sa_error err = {0};
  /* Check first: a damaged backup changes nothing in the directory. */
  if (sa_backup_verify(file, &info, &err) != 0) {
    cli_errc(err.code == SA_ENOENT ? "not_found" : "corrupt", "restore refused: %s", err.message);
    return CLI_FAIL;
  }
  const char *id = o->node_id && *o->node_id ? o->node_id : info.node_id;
  char *wal = NULL, *store = NULL, *side = NULL;
  if (asprintf(&wal, "%s/%s.wal", o->data_dir, id) < 0 ||
      asprintf(&store, "%s/%s.mdb", o->data_dir, id) < 0 || asprintf(&side, "%s-", store) < 0) {
    cli_errc("internal", "out of memory");
    return CLI_FAIL;
  }
  int rc = CLI_OK;
  int ne = bk_dir_nonempty(o->data_dir);
  if (ne < 0) {
    cli_errc("io", "cannot read %s: %s", o->data_dir, strerror(errno));
    rc = CLI_FAIL;
  } else if (ne && !o->force) {
    cli_errc("not_empty",
             "restore refused: %s is not empty; restore into an empty directory, or pass --force "
             "to replace node %s's WAL and store there (stop the node first)",
             o->data_dir, id);
    rc = CLI_FAIL;
  } else if (mkdir(o->data_dir, 0755) != 0 && errno != EEXIST) {
    cli_errc("io", "cannot create %s: %s", o->data_dir, strerror(errno));
    rc = CLI_FAIL;
  }
  if (rc == CLI_OK && ne) {
    /* --force: the node's WAL holds writes of the old epoch (replayed over
     * the restored store they would mix two histories): it goes too. */
    const char *suffix[] = {"sync", "lock"};
    int lfd = open(wal, O_RDONLY | O_CLOEXEC);
    if (lfd >= 0 && flock(lfd, LOCK_EX | LOCK_NB) != 0) { /* the node's WAL lock (wal.c) */
      cli_errc("locked", "restore refused: a node is running on %s; stop it first", wal);
      rc = CLI_FAIL;
    }
    if (lfd >= 0) close(lfd);
    if (rc == CLI_OK && unlink(wal) != 0 && errno != ENOENT) {
      cli_errc("io", "cannot remove %s: %s (is the node still running?)", wal, strerror(errno));
      rc = CLI_FAIL;
    }
    if (rc == CLI_OK && unlink(store) != 0 && errno != ENOENT) {
      cli_errc("io", "cannot remove %s: %s", store, strerror(errno));
      rc = CLI_FAIL;
    }
    for (int i = 0; rc == CLI_OK && i < 2; i++) {
      char *p = NULL;
      if (asprintf(&p, "%s%s", side, suffix[i]) >= 0) unlink(p);
      free(p);
    }
  }
  uint64_t epoch = 0;
  if (rc == CLI_OK && sa_backup_restore(file, store, o->node_id && *o->node_id ? id : NULL, &info,
                                        &epoch, &err) != 0) {
    cli_errc(err.code == SA_ECORRUPT ? "corrupt" : "restore", "restore failed: %s", err.message);
    rc = CLI_FAIL;
  }
  if (rc == CLI_OK) {
    char ep[17], how[512];
    bk_hex(epoch, ep);
    if (o->json) {
      bk_print_info(o, "restored", file, &info, "epoch", ep);
    } else {
      bk_print_info(o, "restored", file, &info, "new epoch", ep);
      snprintf(how, sizeof how, "softadastra serve --data-dir %s --node-id %s", o->data_dir, id);
      printf("  store       %s\n  start with  %s\n", store, how);
    }
  }
  free(wal);
  free(store);
  free(side);
  return rc;
}

int cli_backup_main(int argc, char **argv) {
  bk_opts o;
  bool help;
  int rc = bk_parse(argc - 1, argv + 1, &o, &help);
  if (rc != CLI_OK) return rc;
  if (help) {
    fputs(bk_usage, stdout);
    return CLI_OK;
  }
  bool restore = !strcmp(argv[0], "restore");
  if (restore) {
    if (o.npos != 1) return bk_usage_fail("usage: softadastra restore FILE --data-dir DIR");
    return bk_restore(&o, o.pos[0]);
  }
  if (o.npos == 2 && !strcmp(o.pos[0], "verify")) {
    sa_backup_info info;
    sa_error err = {0};
    if (sa_backup_verify(o.pos[1], &info, &err) != 0) {
      cli_errc(err.code == SA_ENOENT ? "not_found" : "corrupt", "%s", err.message);
      return CLI_FAIL;
    }
    bk_print_info(&o, "ok", o.pos[1], &info, NULL, NULL);
    return CLI_OK;
  }
  if (o.npos != 1) return bk_usage_fail("usage: softadastra backup DEST | backup verify FILE");
  if (o.data_dir || o.node_id) return bk_usage_fail("--data-dir and --node-id are for restore");
  curl_global_init(CURL_GLOBAL_DEFAULT);
  rc = bk_backup(&o, o.pos[0]);
  curl_global_cleanup();
  return rc;
}
