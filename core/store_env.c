/*
 * store_env.c -- the LMDB-backed materialized store: the environment
 * (open, close, the node-id and format checks), the meta database, the
 * error mapping, and the store's small accessors.  The layout of the file
 * is in store.h.
 *
 * Durability split: the WAL is the commit point; LMDB is the current state.
 * A persistent store runs LMDB with MDB_NOSYNC and is made durable at sync
 * points (store_syncpoint.c): a commit costs no fdatasync, and a power loss
 * rolls the file back to the last sync point, from which the WAL replays.
 * A memory-only store is never synced.
 *
 * The store's files: store_env.c (this), store_syncpoint.c (sync points),
 * store_write.c (the write transaction), store_longkey.c (keys longer than
 * LMDB's limit), store_outbox.c (outbox and ops databases), store_read.c
 * (read transactions, get, list), store_feed.c (the change feed).
 *
 * What it is not: the write or read paths (see the files above).
 *
 * Invariants: the environment is opened with MDB_NOTLS so read
 * transactions are not tied to threads (libmicrohttpd pools reuse threads
 * freely).  A store is closed with no write transaction open (asserted).
 *
 * Threads: store_open and store_close on the node's opening/closing thread
 * (no other thread uses the store then); the accessors on any thread.
 */
#define _GNU_SOURCE
#include "store_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int store_err(sa_store *s, int rc, const char *what, sa_error *err) {
  const char *path = s ? s->path : "?";
  switch (rc) {
  case MDB_MAP_FULL:
    return sa_fail(err, SA_ENOSPC,
                   "store '%s' is full (%s): the store_max_bytes limit of %llu bytes is reached",
                   path, what, (unsigned long long)(s ? s->map_bytes : 0));
  case MDB_KEYEXIST:
    return sa_fail(err, SA_EINTERNAL,
                   "store '%s': %s: 65536 keys already share this key's first 480 bytes and "
                   "hash",
                   path, what);
  case MDB_INVALID:
    return sa_fail(err, SA_ECORRUPT, "store '%s' is not an LMDB file (%s)", path, what);
  case MDB_VERSION_MISMATCH:
    return sa_fail(err, SA_EFORMAT, "store '%s' was written by another LMDB version (%s)", path,
                   what);
  case MDB_CORRUPTED:
  case MDB_PAGE_NOTFOUND:
    return sa_fail(err, SA_ECORRUPT, "store '%s' is corrupt (%s): %s", path, what,
                   mdb_strerror(rc));
  default:
    if (rc > 0)
      return sa_fail(err, sa_errno_code(rc), "store '%s': %s failed: %s", path, what, strerror(rc));
    return sa_fail(err, SA_EINTERNAL, "store '%s': %s failed: %s", path, what, mdb_strerror(rc));
  }
}

int store_meta_get_u64(MDB_txn *txn, MDB_dbi dbi, const char *name, uint64_t *out) {
  MDB_val k = {strlen(name), (void *)name}, v;
  int rc = mdb_get(txn, dbi, &k, &v);
  if (rc == 0) {
    if (v.mv_size != 8) return MDB_CORRUPTED;
    *out = sa_get_u64(v.mv_data);
  }
  return rc;
}

int store_meta_put_u64(MDB_txn *txn, MDB_dbi dbi, const char *name, uint64_t val) {
  unsigned char b[8];
  sa_put_u64(b, val);
  MDB_val k = {strlen(name), (void *)name}, v = {8, b};
  return mdb_put(txn, dbi, &k, &v, 0);
}

uint64_t store_headroom(sa_store *s) {
  MDB_envinfo info;
  MDB_stat st;
  mdb_env_info(s->env, &info);
  if (mdb_env_stat(s->env, &st) != 0) return 0;
  uint64_t used = ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
  return info.me_mapsize > used ? info.me_mapsize - used : 0;
}

uint64_t store_txnid(const sa_store *s) {
  return __atomic_load_n(&s->txnid, __ATOMIC_SEQ_CST);
}

int store_mode(const sa_store *s) {
  return s->mode;
}

const store_open_report *store_report(const sa_store *s) {
  return &s->report;
}

static void store_free(sa_store *s) {
  if (!s) return;
  if (s->pin) mdb_txn_abort(s->pin);
  for (int i = 0; i < STORE_RPOOL; i++)
    if (s->rslot[i].txn) mdb_txn_abort(s->rslot[i].txn);
  if (s->env) mdb_env_close(s->env);
  if (s->sync_fd >= 0) close(s->sync_fd);
  pthread_mutex_destroy(&s->commit_mu);
  pthread_mutex_destroy(&s->sync_mu);
  free(s->sync_path);
  free(s->path);
  free(s);
}

/* The transaction id of the latest commit. */
uint64_t store_env_txnid(sa_store *s) {
  MDB_envinfo info;
  mdb_env_info(s->env, &info);
  return info.me_last_txnid;
}

int store_open(sa_store **out, const char *path, const char *node_id, bool persistent,
               uint64_t map_bytes, sa_error *err) {
  *out = NULL;
  sa_store *s = calloc(1, sizeof *s);
  if (!s) return sa_fail(err, SA_ENOMEM, "out of memory opening store '%s'", path);
  s->fd = s->sync_fd = -1;
  pthread_mutex_init(&s->commit_mu, NULL);
  pthread_mutex_init(&s->sync_mu, NULL);
  size_t plen = strlen(path);
  if (!(s->path = strdup(path)) || !(s->sync_path = malloc(plen + 6))) {
    store_free(s);
    return sa_fail(err, SA_ENOMEM, "out of memory opening store '%s'", path);
  }
  snprintf(s->sync_path, plen + 6, "%s-sync", path);
  snprintf(s->node_id, sizeof s->node_id, "%s", node_id);
  s->map_bytes = map_bytes;
  int major = 0, minor = 0;
  mdb_version(&major, &minor, NULL);
  s->mode = !persistent                ? STORE_MEMORY
            : major == 0 && minor == 9 ? STORE_SNAPSHOTS
                                       : STORE_SYNC_EACH;
  bool fresh = true; /* needs a sync point once open */
  MDB_txn *txn = NULL;
  int rc;
  if (s->mode == STORE_SNAPSHOTS) {
    store_read_boot_id(s->boot);
    if ((rc = store_restore(s, &fresh, err)) != 0) {
      store_free(s);
      return rc;
    }
  }
  if ((rc = mdb_env_create(&s->env)) != 0) goto lmdb_fail;
  mdb_env_set_maxdbs(s->env, 8);
  mdb_env_set_maxreaders(s->env, 1024);
  if ((rc = mdb_env_set_mapsize(s->env, (size_t)map_bytes)) != 0) goto lmdb_fail;
  unsigned flags =
      MDB_NOSUBDIR | MDB_NOTLS | (s->mode == STORE_SYNC_EACH ? MDB_NOMETASYNC : MDB_NOSYNC);
  rc = mdb_env_open(s->env, path, flags, 0644);
  if (rc == ENOENT) {
    int code =
        sa_fail(err, SA_ENOENT,
                "cannot open store '%s': its directory does not exist; create it first", path);
    store_free(s);
    return code;
  }
  if (rc) goto lmdb_fail;
  MDB_stat st;
  if ((rc = mdb_env_get_fd(s->env, &s->fd)) != 0 || (rc = mdb_env_stat(s->env, &st)) != 0)
    goto lmdb_fail;
  if (s->psize && s->psize != st.ms_psize) { /* a record of another file */
    s->report.foreign_sync = true;
    fresh = true;
    if (s->sync_fd >= 0) close(s->sync_fd);
    s->sync_fd = -1; /* rewritten whole */
  }
  s->psize = st.ms_psize;
  s->txnid = store_env_txnid(s);
  if (s->mode == STORE_SNAPSHOTS) {
    /* Pin before anything commits: the snapshot the record describes (the
     * file is exactly it), or, when a sync point is due at once, the latest
     * (which the open transaction below leaves as it is, for a store that
     * already exists). */
    if (!fresh && s->txnid != s->sync_txnid) fresh = true;
    if ((rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &s->pin)) != 0) goto lmdb_fail;
  }
  if ((rc = mdb_txn_begin(s->env, NULL, 0, &txn)) != 0) goto lmdb_fail;
  if ((rc = mdb_dbi_open(txn, "kv", MDB_CREATE, &s->kv)) != 0 ||
      (rc = mdb_dbi_open(txn, "outbox", MDB_CREATE, &s->outbox)) != 0 ||
      (rc = mdb_dbi_open(txn, "ops", MDB_CREATE, &s->ops)) != 0 ||
      (rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &s->meta)) != 0 ||
      (rc = mdb_dbi_open(txn, "tombs", MDB_CREATE, &s->tombs)) != 0 ||
      (rc = mdb_dbi_open(txn, "peers", MDB_CREATE, &s->peers)) != 0 ||
      (rc = mdb_dbi_open(txn, "dropped", MDB_CREATE, &s->dropped)) != 0)
    goto lmdb_fail;

  /* Meta: a new store takes this node's id; an old one must match it. */
  MDB_val k = {7, "node_id"}, v;
  rc = mdb_get(txn, s->meta, &k, &v);
  if (rc == MDB_NOTFOUND) {
    v.mv_size = strlen(node_id);
    v.mv_data = (void *)node_id;
    unsigned char fmt[4];
    sa_put_u32(fmt, SA_STORE_FORMAT);
    MDB_val fk = {6, "format"}, fv = {4, fmt};
    if ((rc = mdb_put(txn, s->meta, &k, &v, 0)) != 0 ||
        (rc = mdb_put(txn, s->meta, &fk, &fv, 0)) != 0)
      goto lmdb_fail;
  } else if (rc == 0) {
    if (v.mv_size != strlen(node_id) || memcmp(v.mv_data, node_id, v.mv_size) != 0) {
      int code = sa_fail(err, SA_ENODE, "store '%s' belongs to node '%.*s', not to node '%s'", path,
                         (int)(v.mv_size > 64 ? 64 : v.mv_size), (const char *)v.mv_data, node_id);
      mdb_txn_abort(txn);
      store_free(s);
      return code;
    }
    MDB_val fk = {6, "format"}, fv;
    if ((rc = mdb_get(txn, s->meta, &fk, &fv)) != 0) goto lmdb_fail;
    uint32_t fmt = fv.mv_size == 4 ? sa_get_u32(fv.mv_data) : 0, was = fmt;
    /* Upgrades in place, one format after the other, in this transaction
     * (a crash before its commit leaves the store as it was).  Nothing is
     * rewritten; the new number makes older builds refuse the store. */
    if (fmt == 1) {
      /* Format 1 -> 2: the kv entries read as they are (origin: this node);
       * the tombs and peers databases were just created. */
      fmt = 2;
    }
    if (fmt == 2) {
      /* Format 2 -> 3: the kv entries read as they are (no content type:
       * the byte that holds its length was always 0); the store may now
       * hold typed values. */
      fmt = 3;
    }
    if (fmt == 3) {
      /* Format 3 -> 4: kv and tombs entries read as they are (bit 7 of
       * their type byte was always 0: no origin LSN kept); the dropped
       * database was just created.  The node-wide horizon_hlc goes: it said
       * that some tombstone below it was dropped by age, not which key's,
       * and refusing every older write of a key not held lost writes nobody
       * deleted.  The keys whose tombstones were dropped by age before the
       * upgrade are not known: a node away since then may bring such a key
       * back. */
      MDB_val hk = {11, "horizon_hlc"};
      rc = mdb_del(txn, s->meta, &hk, NULL);
      if (rc && rc != MDB_NOTFOUND) goto lmdb_fail;
      fmt = 4;
    }
    if (fmt == SA_STORE_FORMAT && was != fmt) {
      s->report.upgraded_from = was;
      unsigned char b[4];
      sa_put_u32(b, SA_STORE_FORMAT);
      MDB_val nv = {4, b};
      if ((rc = mdb_put(txn, s->meta, &fk, &nv, 0)) != 0) goto lmdb_fail;
    }
    if (fmt != SA_STORE_FORMAT) {
      int code = sa_fail(err, SA_EFORMAT,
                         "store '%s' has format version %u; this build reads versions 1 to %d",
                         path, fmt, SA_STORE_FORMAT);
      mdb_txn_abort(txn);
      store_free(s);
      return code;
    }
  } else {
    goto lmdb_fail;
  }
  rc = store_meta_get_u64(txn, s->meta, "applied_lsn", &s->applied_lsn);
  if (rc && rc != MDB_NOTFOUND) goto lmdb_fail;
  rc = store_meta_get_u64(txn, s->meta, "hlc", &s->hlc);
  if (rc && rc != MDB_NOTFOUND) goto lmdb_fail;
  rc = store_meta_get_u64(txn, s->meta, "feed_floor", &s->feed_floor);
  if (rc && rc != MDB_NOTFOUND) goto lmdb_fail;
  rc = store_meta_get_u64(txn, s->meta, "sync_floor", &s->sync_floor);
  if (rc && rc != MDB_NOTFOUND) goto lmdb_fail;
  rc = mdb_txn_commit(txn);
  txn = NULL;
  if (rc) goto lmdb_fail;
  s->txnid = store_env_txnid(s);
  if (s->mode == STORE_SNAPSHOTS && (fresh || store_sync_due(s)) &&
      (rc = store_sync(s, err)) != 0) {
    store_free(s);
    return rc;
  }
  *out = s;
  return 0;

lmdb_fail:;
  int code = store_err(s, rc, "open", err);
  if (txn) mdb_txn_abort(txn);
  store_free(s);
  return code;
}

void store_close(sa_store *s) {
  if (!s) return;
  assert(!s->w_busy);
  store_free(s);
}

uint64_t store_applied_lsn(const sa_store *s) {
  return __atomic_load_n(&s->applied_lsn, __ATOMIC_ACQUIRE);
}

uint64_t store_meta_hlc(const sa_store *s) {
  return s->hlc;
}
