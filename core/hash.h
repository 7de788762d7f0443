/*
 * hash.h -- FNV-1a, 64 bits: the core's one non-cryptographic hash (the
 * writer's key-version table, the store's long-key groups, the seed of the
 * outbox backoff jitter).
 *
 * What it is not: a keyed or collision-resistant hash.  Callers that face
 * chosen keys must tolerate collisions (the store chains them; the table
 * compares keys).
 *
 * Invariants: pure; the same bytes give the same value on every platform
 * and in every release (the store persists long-key hashes in its keys).
 *
 * Threads: any.
 */
#ifndef SA_HASH_H
#define SA_HASH_H

#include <stddef.h>
#include <stdint.h>

#define SA_FNV64_OFFSET 1469598103934665603ull /* FNV-1a 64-bit offset basis */
#define SA_FNV64_PRIME 1099511628211ull        /* FNV-1a 64-bit prime */

/* Folds n bytes of p into the running hash h (start with SA_FNV64_OFFSET). */
static inline uint64_t sa_fnv1a_more(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++)
    h = (h ^ b[i]) * SA_FNV64_PRIME;
  return h;
}

/* FNV-1a-64 of n bytes at p. */
static inline uint64_t sa_fnv1a(const void *p, size_t n) {
  return sa_fnv1a_more(SA_FNV64_OFFSET, p, n);
}

#endif
