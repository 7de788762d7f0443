/*
 * srv_dir.c -- see srv_dir.h: is this node id the one whose data is in the
 * data directory?
 *
 * What it is: one scan of the data directory's names at start.  A file
 * named <id>.wal (a regular file, id not empty) is taken as node id's WAL:
 * the server names WALs so (srv.c), and `wal repair` keeps its copies under
 * other suffixes.  It reads no file's content.
 * What it is not: a lock (the core's WAL lock refuses a second node on the
 * same WAL) nor a check of the WAL's header (the core's).
 *
 * Invariants: it refuses only when this node's WAL is absent; an existing
 * WAL is never second-guessed here.  At most SRV_DIR_NAMES other nodes are
 * named in the message, then "and N more".
 *
 * Threads: the main thread at start.
 */
#define _GNU_SOURCE
#include "srv_dir.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "srv_log.h"

#define SRV_DIR_NAMES 4

int srv_dir_check_node(const char *data_dir, const char *node_id, const char *wal, bool new_node) {
  struct stat st;
  if (stat(wal, &st) == 0 || errno != ENOENT) return 0; /* there, or the core says why not */
  DIR *d = opendir(data_dir);
  if (!d) return 0; /* missing: the core reports it, or it was just made empty */
  char names[512] = "";
  size_t used = 0, found = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    size_t n = strlen(e->d_name);
    if (n <= 4 || strcmp(e->d_name + n - 4, ".wal") != 0) continue;
    if (n - 4 == strlen(node_id) && !strncmp(e->d_name, node_id, n - 4)) continue;
    if (fstatat(dirfd(d), e->d_name, &st, 0) != 0 || !S_ISREG(st.st_mode)) continue;
    if (found < SRV_DIR_NAMES) {
      int w = snprintf(names + used, sizeof names - used, "%s%.*s", found ? ", " : "", (int)(n - 4),
                       e->d_name);
      if (w > 0) used += (size_t)w < sizeof names - used ? (size_t)w : sizeof names - used - 1;
    }
    found++;
  }
  closedir(d);
  if (found == 0) return 0;
  char more[48] = "";
  if (found > SRV_DIR_NAMES) snprintf(more, sizeof more, " and %zu more", found - SRV_DIR_NAMES);
  if (new_node) {
    char q1[256], q2[600];
    srv_log(SRV_LOG_INFO, "new_node", "node=%s beside=%s%s", srv_log_q(node_id, q1, sizeof q1),
            srv_log_q(names, q2, sizeof q2), more);
    return 0;
  }
  fprintf(stderr,
          "softadastra: data directory %s holds the WAL of node %s%s but none of node %s: "
          "starting would make a new, empty node %s.  To serve that data, start with "
          "--node-id %.*s; to start node %s beside it, add --new-node\n",
          data_dir, names, more, node_id, node_id, (int)strcspn(names, ","), names, node_id);
  return -1;
}
