/*
 * node_keyver.c -- the writer's key-version table: for each key written by
 * a group not yet committed, the version it will have once committed (0:
 * deleted), with the pair (hlc, origin) of the write that leaves it.  Open
 * addressing with linear probing, keys copied into one arena, FNV-1a hashes
 * (hash.h).  And the writer's origin table, which the pairs index: a few
 * node ids, each stored once, instead of one copy per key.
 *
 * What it is not: a cache of the store.  It holds only versions the
 * writer gave; a key absent from it is read from the store (node_version in
 * node_writer.c).  It never shrinks while in use: keyver_reset empties it
 * (and gives a big table back).
 *
 * Invariants: cap is a power of two and at least twice n; a slot's h is 0
 * exactly when it is empty; every entry's key bytes are keys[off..off+klen).
 *
 * Threads: the writer only (c->gov, c->wov, c->okv, c->onames); no
 * locking.
 */
#include "hash.h"
#include "node_internal.h"

#include <stdlib.h>
#include <string.h>

/* The key's FNV-1a; never 0 (0 marks an empty slot). */
static uint64_t keyver_hash(const char *key, uint32_t klen) {
  uint64_t h = sa_fnv1a(key, klen);
  return h ? h : 1;
}

/* Empties kv and sizes it for n entries (it grows past them); a big table
 * is given back.  -1 when out of memory. */
int keyver_reset(keyver *kv, size_t n) {
  size_t cap = 64;
  while (cap < 2 * n)
    cap *= 2;
  if (kv->cap > 4096 && kv->cap > 4 * cap) {
    free(kv->tab);
    free(kv->keys);
    *kv = (keyver){0};
  }
  if (cap > kv->cap) {
    keyver_ent *t = realloc(kv->tab, cap * sizeof *t);
    if (!t) return -1;
    kv->tab = t;
    kv->cap = cap;
  }
  memset(kv->tab, 0, kv->cap * sizeof *kv->tab);
  kv->n = 0;
  kv->kused = 0;
  return 0;
}

static keyver_ent *keyver_slot(const keyver *kv, const char *key, uint32_t klen, uint64_t h) {
  size_t mask = kv->cap - 1;
  for (size_t i = h & mask;; i = (i + 1) & mask) {
    keyver_ent *e = &kv->tab[i];
    if (e->h == 0 || (e->h == h && e->klen == klen && memcmp(kv->keys + e->off, key, klen) == 0))
      return e;
  }
}

const keyver_ent *keyver_get(const keyver *kv, const char *key, uint32_t klen) {
  if (!kv->n) return NULL;
  keyver_ent *e = keyver_slot(kv, key, klen, keyver_hash(key, klen));
  return e->h ? e : NULL;
}

bool keyver_find(const keyver *kv, const char *key, uint32_t klen, uint64_t *version) {
  const keyver_ent *e = keyver_get(kv, key, klen);
  if (!e) return false;
  *version = e->version;
  return true;
}

/* Doubles the table (the keys stay where they are).  -1 when out of memory. */
static int keyver_grow(keyver *kv) {
  size_t cap = kv->cap ? kv->cap * 2 : 64;
  keyver_ent *t = calloc(cap, sizeof *t);
  if (!t) return -1;
  for (size_t i = 0; i < kv->cap; i++) {
    const keyver_ent *e = &kv->tab[i];
    if (e->h == 0) continue;
    size_t j = e->h & (cap - 1);
    while (t[j].h)
      j = (j + 1) & (cap - 1);
    t[j] = *e;
  }
  free(kv->tab);
  kv->tab = t;
  kv->cap = cap;
  return 0;
}

/* key's entry (h: its keyver_hash), added (knowing no pair) when absent.
 * NULL when out of memory. */
static keyver_ent *keyver_put_h(keyver *kv, const char *key, uint32_t klen, uint64_t h) {
  if (2 * (kv->n + 1) > kv->cap && keyver_grow(kv) != 0) return NULL;
  keyver_ent *e = keyver_slot(kv, key, klen, h);
  if (e->h == 0) {
    if (kv->kused + klen > kv->kcap) {
      size_t cap = kv->kcap ? kv->kcap : 4096;
      while (cap < kv->kused + klen)
        cap *= 2;
      char *k = realloc(kv->keys, cap);
      if (!k) return NULL;
      kv->keys = k;
      kv->kcap = cap;
    }
    memcpy(kv->keys + kv->kused, key, klen);
    e->h = h;
    e->off = (uint32_t)kv->kused;
    e->klen = klen;
    e->hlc = 0;
    e->origin = 0;
    kv->kused += klen;
    kv->n++;
  }
  return e;
}

static keyver_ent *keyver_put(keyver *kv, const char *key, uint32_t klen) {
  return keyver_put_h(kv, key, klen, keyver_hash(key, klen));
}

int keyver_set(keyver *kv, const char *key, uint32_t klen, uint64_t version) {
  keyver_ent *e = keyver_put(kv, key, klen);
  if (!e) return -1;
  e->version = version;
  return 0;
}

int keyver_set_pair(keyver *kv, const char *key, uint32_t klen, uint64_t version, uint64_t hlc,
                    uint32_t origin) {
  keyver_ent *e = keyver_put(kv, key, klen);
  if (!e) return -1;
  e->version = version;
  e->hlc = hlc;
  e->origin = origin;
  return 0;
}

int keyver_merge(keyver *dst, const keyver *src) {
  for (size_t i = 0; i < src->cap; i++) {
    const keyver_ent *e = &src->tab[i];
    if (!e->h) continue;
    keyver_ent *d = keyver_put_h(dst, src->keys + e->off, e->klen, e->h); /* same hash */
    if (!d) return -1;
    d->version = e->version;
    if (e->hlc) {
      d->hlc = e->hlc;
      d->origin = e->origin;
    }
  }
  return 0;
}

void keyver_free(keyver *kv) {
  free(kv->tab);
  free(kv->keys);
}

/* ---- the origin table ---------------------------------------------------------- */

int node_origin_id(sa_client *c, const char *origin, uint32_t olen, uint32_t *id) {
  if (olen == strlen(c->node_id) && memcmp(origin, c->node_id, olen) == 0) {
    *id = 0; /* this node: no entry */
    return 0;
  }
  uint64_t v;
  if (keyver_find(&c->okv, origin, olen, &v)) {
    *id = (uint32_t)v;
    return 0;
  }
  if (olen > SA_NODE_ID_MAX) return -1;  /* the batch was checked: never */
  if (c->norigins == 0) c->norigins = 1; /* [0] stays unused */
  if (c->norigins >= c->ocap) {
    uint32_t cap = c->ocap ? c->ocap * 2 : 16;
    char(*o)[SA_NODE_ID_MAX + 1] = realloc(c->onames, cap * sizeof *o);
    if (!o) return -1;
    c->onames = o;
    c->ocap = cap;
  }
  if (keyver_set(&c->okv, origin, olen, c->norigins) != 0) return -1;
  memcpy(c->onames[c->norigins], origin, olen);
  c->onames[c->norigins][olen] = 0;
  *id = c->norigins++;
  return 0;
}

const char *node_origin_name(const sa_client *c, uint32_t id) {
  return id ? c->onames[id] : c->node_id;
}

void node_overlay_reset(sa_client *c) {
  (void)keyver_reset(&c->wov, 0);
  (void)keyver_reset(&c->okv, 0);
  c->norigins = 0;
}
