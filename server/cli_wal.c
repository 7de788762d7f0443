/*
 * cli_wal.c -- the offline WAL tools: `wal inspect`, `wal verify` and
 * `wal repair` (see cli_cmd.h).
 *
 * What it is: a reader of a WAL file through the core's sa_wal_scan and
 * sa_wal_repair, printing a report (and for inspect each record), human or
 * --json.  What it is not: an HTTP client; it never talks to a node, and
 * the node must not run on the file (repair takes the WAL's lock and fails
 * when a node holds it).
 *
 * Invariants: verify exits 1 exactly when the file is corrupt; repair keeps
 * a copy of the original before it truncates.
 *
 * Threads: the CLI's single thread.
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "cli_cmd.h"
#include "cli_out.h"
#include "softadastra.h"

static const char *cli_wal_state(int s) {
  return s == SA_WAL_CLEAN ? "clean" : s == SA_WAL_TORN ? "torn" : "corrupt";
}

typedef struct cli_wal_visit {
  bool print;  /* print each record (human inspect) */
  json_t *arr; /* collect each record (--json inspect) */
} cli_wal_visit;

static int cli_wal_visit_fn(const sa_wal_record *r, void *ctx) {
  cli_wal_visit *v = ctx;
  const char *type = r->type == SA_OP_PUT || r->type == SA_WAL_PUT_TYPED ? "put"
                     : r->type == SA_OP_DELETE                           ? "delete"
                     : r->type == SA_WAL_BATCH                           ? "batch"
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
    else if (r->type == SA_OP_PUT || r->type == SA_WAL_PUT_TYPED)
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
  return json_pack(
      "{s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:s,s:I,s:I,s:s,s:s}", "path", path, "node_id",
      rep->node_id, "format_version", (json_int_t)rep->format_version, "start_lsn",
      (json_int_t)rep->start_lsn, "file_bytes", (json_int_t)rep->file_bytes, "data_bytes",
      (json_int_t)rep->data_bytes, "records", (json_int_t)rep->records, "first_lsn",
      (json_int_t)rep->first_lsn, "last_lsn", (json_int_t)rep->last_lsn, "state",
      cli_wal_state(rep->state), "bad_offset", (json_int_t)rep->bad_offset, "next_good_offset",
      (json_int_t)rep->next_good_offset, "reason", rep->reason, "backup_path", rep->backup_path);
}

int cli_wal(const cli_opts *o, const char *verb, const char *path) {
  sa_wal_report rep;
  sa_error err = {0};
  memset(&rep, 0, sizeof rep);
  if (strcmp(verb, "repair") == 0) {
    int rc = sa_wal_repair(path, &rep, &err);
    if (rc != 0) {
      cli_errc(rc == SA_ENOENT ? "not_found" : "failed", "wal repair %s: %s", path,
               err.message[0] ? err.message : sa_strerror(rc));
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
    cli_errc(rc == SA_ENOENT || rc == SA_ENOTFOUND ? "not_found" : "failed", "wal %s %s: %s", verb,
             path, err.message[0] ? err.message : sa_strerror(rc));
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
