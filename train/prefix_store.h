/* prefix_store.h: the trainer's store of prefix K/V kept across steps and epochs (internal). */
#ifndef ALORA_TRAIN_PREFIX_STORE_H
#define ALORA_TRAIN_PREFIX_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "common/util.h"

/* One kept prefix: the base K/V of positions [0, n) (they depend on those tokens only). */
typedef struct ali_pstore_entry {
    int32_t n;    /* positions */
    int32_t *ids; /* [n] their tokens */
    float *kv;    /* [planes][n, kvd] (planes = 2 per layer: K then V) */
} ali_pstore_entry;

/* Entries in the order they came, kept until the byte limit: no eviction, because epochs read the
 * data in a cycle, where an LRU store smaller than the data would miss on every example while
 * keeping the first ones serves (limit / data) of them. */
typedef struct ali_pstore {
    ali_pstore_entry *e; /* [n_e] */
    int32_t n_e, cap_e;
    int32_t planes;      /* 2 * layers */
    size_t kvd;          /* floats per position and plane */
    size_t bytes, limit; /* held / at most (0: off) */
    int64_t hits;        /* positions served */
    int64_t refused;     /* prefixes not kept: over the limit */
} ali_pstore;

/* Bytes an entry of n positions holds (its K/V and its tokens). */
static inline size_t ali_pstore_bytes(const ali_pstore *ps, int32_t n)
{
    return (size_t)n * (sizeof(float) * ps->kvd * (size_t)ps->planes + sizeof(int32_t));
}

/* The entry sharing the longest run of leading tokens with ids[0 .. n-1] (NULL: none shares any);
 * *len = that run. */
const ali_pstore_entry *ali_pstore_find(const ali_pstore *ps, const int32_t *ids, int32_t n, int32_t *len);

/* Keeps a copy of positions [0, n) of kv ([planes][ld, kvd]) for tokens ids; a prefix over the
 * limit is counted in ps->refused and not kept (AL_OK). AL_ENOMEM when the allocation fails. */
al_err ali_pstore_put(ali_pstore *ps, const int32_t *ids, int32_t n, const float *kv, int32_t ld);

/* Copies positions [0, len) of entry pe into kv ([planes][ld, kvd]) and ids. */
void ali_pstore_get(const ali_pstore *ps, const ali_pstore_entry *pe, int32_t len, float *kv, int32_t ld,
                    int32_t *ids);

void ali_pstore_free(ali_pstore *ps);

#endif
