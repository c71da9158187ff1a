/* prefix.h: block-level prefix cache: a hash chain over token blocks, LRU of unreferenced blocks. */
#ifndef AL_PREFIX_H
#define AL_PREFIX_H

#include <stdint.h>

#include "common/err.h"
#include "engine/kvpool.h"

typedef struct ali_pcache {
    al_kvpool *pool;
    int32_t bs;
    uint64_t *hash;  /* [n_blocks] key of the block's entry, 0 = none */
    int32_t *ntok;   /* [n_blocks] tokens the entry covers (bs = full block) */
    int32_t *toks;   /* [n_blocks, bs] the entry's tokens (verified on lookup) */
    int32_t *prev, *next; /* LRU links of unreferenced cached blocks */
    uint8_t *in_lru;
    int32_t head, tail, n_lru;
    uint64_t *keys;  /* open-addressing map key -> block; 0 empty, 1 tombstone */
    int32_t *vals;
    uint32_t cap;
    uint64_t hits, misses, hit_tokens;
} ali_pcache;

al_err ali_pcache_init(ali_pcache *pc, al_kvpool *pool);
void ali_pcache_free(ali_pcache *pc);
/* Key of n tokens following the chain value parent (n = bs for a full block). */
uint64_t ali_pcache_key(uint64_t parent, const int32_t *t, int32_t n);
/* Block whose entry is (key, t[0..n)), or -1. */
int32_t ali_pcache_lookup(const ali_pcache *pc, uint64_t key, const int32_t *t, int32_t n);
/* Registers block under key unless the key already has a block or the block has an entry. */
void ali_pcache_insert(ali_pcache *pc, int32_t block, uint64_t key, const int32_t *t, int32_t n);
/* Takes a reference on a block found by lookup (leaving the LRU if it was unreferenced). */
void ali_pcache_acquire(ali_pcache *pc, int32_t block);
/* 1 when block carries a cache entry. */
static inline int ali_pcache_has(const ali_pcache *pc, int32_t block) { return pc && pc->hash[block] != 0; }

#endif
