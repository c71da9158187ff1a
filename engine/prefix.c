/* prefix.c: block-level prefix cache: a hash chain over token blocks, LRU of unreferenced blocks. */
#include "engine/prefix.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "common/util.h"

uint64_t ali_pcache_key(uint64_t parent, const int32_t *t, int32_t n)
{
    uint64_t k = XXH3_64bits_withSeed(t, sizeof(int32_t) * (size_t)n, parent ^ ((uint64_t)n << 56));
    return k < 2 ? k + 2 : k;
}

static uint32_t ali_slot(const ali_pcache *pc, uint64_t key) { return (uint32_t)(key * 0x9E3779B97F4A7C15ull >> 32) & (pc->cap - 1); }

static int32_t ali_map_get(const ali_pcache *pc, uint64_t key)
{
    for (uint32_t i = ali_slot(pc, key), n = 0; n < pc->cap; i = (i + 1) & (pc->cap - 1), n++) {
        if (pc->keys[i] == 0)
            return -1;
        if (pc->keys[i] == key)
            return pc->vals[i];
    }
    return -1;
}

static void ali_map_put(ali_pcache *pc, uint64_t key, int32_t block)
{
    for (uint32_t i = ali_slot(pc, key);; i = (i + 1) & (pc->cap - 1))
        if (pc->keys[i] < 2) {
            pc->keys[i] = key;
            pc->vals[i] = block;
            return;
        }
}

static void ali_map_del(ali_pcache *pc, uint64_t key)
{
    for (uint32_t i = ali_slot(pc, key), n = 0; n < pc->cap; i = (i + 1) & (pc->cap - 1), n++) {
        if (pc->keys[i] == 0)
            return;
        if (pc->keys[i] == key) {
            pc->keys[i] = 1;
            return;
        }
    }
}

static void ali_lru_remove(ali_pcache *pc, int32_t b)
{
    if (!pc->in_lru[b])
        return;
    if (pc->prev[b] >= 0)
        pc->next[pc->prev[b]] = pc->next[b];
    else
        pc->head = pc->next[b];
    if (pc->next[b] >= 0)
        pc->prev[pc->next[b]] = pc->prev[b];
    else
        pc->tail = pc->prev[b];
    pc->in_lru[b] = 0;
    pc->n_lru--;
}

static int ali_on_zero(void *ctx, int32_t b)
{
    ali_pcache *pc = ctx;
    if (!pc->hash[b])
        return 0;
    pc->prev[b] = pc->tail;
    pc->next[b] = -1;
    if (pc->tail >= 0)
        pc->next[pc->tail] = b;
    else
        pc->head = b;
    pc->tail = b;
    pc->in_lru[b] = 1;
    pc->n_lru++;
    return 1;
}

static int32_t ali_evict(void *ctx)
{
    ali_pcache *pc = ctx;
    int32_t b = pc->head;
    if (b < 0)
        return -1;
    ali_lru_remove(pc, b);
    ali_map_del(pc, pc->hash[b]);
    pc->hash[b] = 0;
    pc->ntok[b] = 0;
    return b;
}

al_err ali_pcache_init(ali_pcache *pc, al_kvpool *pool)
{
    memset(pc, 0, sizeof *pc);
    int32_t n = pool->n_blocks;
    pc->pool = pool;
    pc->bs = pool->g.block_size;
    pc->cap = 16;
    while (pc->cap < (uint32_t)n * 2)
        pc->cap *= 2;
    pc->hash = calloc((size_t)n, sizeof(uint64_t));
    pc->ntok = calloc((size_t)n, sizeof(int32_t));
    pc->toks = calloc((size_t)n * (size_t)pc->bs, sizeof(int32_t));
    pc->prev = calloc((size_t)n, sizeof(int32_t));
    pc->next = calloc((size_t)n, sizeof(int32_t));
    pc->in_lru = calloc((size_t)n, 1);
    pc->keys = calloc(pc->cap, sizeof(uint64_t));
    pc->vals = calloc(pc->cap, sizeof(int32_t));
    pc->head = pc->tail = -1;
    if (!pc->hash || !pc->ntok || !pc->toks || !pc->prev || !pc->next || !pc->in_lru || !pc->keys || !pc->vals) {
        ali_pcache_free(pc);
        return ali_errf(AL_ENOMEM, "prefix cache: out of memory for %d blocks", n);
    }
    pool->on_zero = ali_on_zero;
    pool->evict = ali_evict;
    pool->hook_ctx = pc;
    return AL_OK;
}

void ali_pcache_free(ali_pcache *pc)
{
    if (pc->pool && pc->pool->hook_ctx == pc) {
        pc->pool->on_zero = NULL;
        pc->pool->evict = NULL;
        pc->pool->hook_ctx = NULL;
    }
    free(pc->hash);
    free(pc->ntok);
    free(pc->toks);
    free(pc->prev);
    free(pc->next);
    free(pc->in_lru);
    free(pc->keys);
    free(pc->vals);
    memset(pc, 0, sizeof *pc);
}

int32_t ali_pcache_lookup(const ali_pcache *pc, uint64_t key, const int32_t *t, int32_t n)
{
    int32_t b = ali_map_get(pc, key);
    if (b < 0 || pc->ntok[b] != n || pc->hash[b] != key ||
        memcmp(pc->toks + (size_t)b * pc->bs, t, sizeof(int32_t) * (size_t)n) != 0)
        return -1;
    return b;
}

void ali_pcache_insert(ali_pcache *pc, int32_t block, uint64_t key, const int32_t *t, int32_t n)
{
    if (pc->hash[block] || ali_map_get(pc, key) >= 0)
        return;
    pc->hash[block] = key;
    pc->ntok[block] = n;
    memcpy(pc->toks + (size_t)block * pc->bs, t, sizeof(int32_t) * (size_t)n);
    ali_map_put(pc, key, block);
}

void ali_pcache_acquire(ali_pcache *pc, int32_t block)
{
    if (pc->in_lru[block]) {
        ali_lru_remove(pc, block);
        assert(pc->pool->refcnt[block] == 0);
        pc->pool->refcnt[block] = 1;
    } else {
        al_kvpool_ref(pc->pool, block);
    }
}
