/*
 * srv_dir.h -- start-up checks of the data directory that need the whole
 * directory, not one file: is this node id the one whose data is here?
 *
 * What it is not: the creation of the directory (srv.c: srv_prepare_dir)
 * or the WAL's own header checks (the core refuses a WAL of another node
 * id when it opens it).
 *
 * Threads: the main thread at start, before any other thread exists.
 */
#ifndef SA_SRV_DIR_H
#define SA_SRV_DIR_H

#include <stdbool.h>

/* Refuses to start a node whose WAL (wal) is absent in a data directory
 * that holds another node's WAL (<other>.wal): that start would make a new,
 * empty node, which is rarely what was meant (a misspelled or changed node
 * id).  Returns 0 to go on: wal exists, the directory is missing or holds
 * no other WAL, or new_node is true (then the fresh node's start beside the
 * others is logged, naming them).  Returns -1 after one message on stderr
 * that names the other node(s) and the two ways on (--node-id OTHER,
 * --new-node). */
int srv_dir_check_node(const char *data_dir, const char *node_id, const char *wal, bool new_node);

#endif /* SA_SRV_DIR_H */
