/* router_affinity.c: which base holds which conversation prefix: block-chain hashes -> base bit
 * masks in a fixed-size open-addressing table with approximate LRU eviction. */
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "services/router/router.h"

#define AFF_PROBE 16 /* slots looked at per key */

al_err router_affinity_init(router_affinity *a, size_t entries, int block)
{
    memset(a, 0, sizeof *a);
    size_t cap = 4096;
    while (cap < entries && cap < ((size_t)1 << 22))
        cap <<= 1;
    a->key = calloc(cap, sizeof *a->key);
    a->mask = calloc(cap, sizeof *a->mask);
    a->tick = calloc(cap, sizeof *a->tick);
    if (!a->key || !a->mask || !a->tick) {
        router_affinity_free(a);
        return ali_errf(AL_ENOMEM, "router: out of memory (affinity table)");
    }
    a->cap = cap;
    a->block = block > 0 ? block : 16;
    return AL_OK;
}

void router_affinity_free(router_affinity *a)
{
    free(a->key);
    free(a->mask);
    free(a->tick);
    memset(a, 0, sizeof *a);
}

int router_affinity_hash(const router_affinity *a, const int32_t *toks, int32_t n, uint64_t *h, int cap)
{
    int m = 0;
    uint64_t prev = 0x9E3779B97F4A7C15ull;
    for (int32_t at = 0; at + a->block <= n && m < cap; at += a->block) {
        prev = XXH3_64bits_withSeed(toks + at, sizeof(int32_t) * (size_t)a->block, prev);
        h[m++] = prev ? prev : 1; /* 0 marks an empty slot */
    }
    return m;
}

static size_t aff_find(const router_affinity *a, uint64_t k)
{
    size_t at = (size_t)k & (a->cap - 1);
    for (int i = 0; i < AFF_PROBE; i++, at = (at + 1) & (a->cap - 1)) {
        if (a->key[at] == k)
            return at;
        if (!a->key[at])
            break;
    }
    return (size_t)-1;
}

void router_affinity_match(const router_affinity *a, const uint64_t *h, int m, int n_bases, int *depth)
{
    uint64_t found = 0, all = n_bases >= 64 ? ~0ull : ((1ull << n_bases) - 1);
    for (int b = 0; b < n_bases; b++)
        depth[b] = 0;
    /* deepest first: a base's depth is its deepest recorded block (the chain implies the rest) */
    for (int j = m - 1; j >= 0 && found != all; j--) {
        size_t at = aff_find(a, h[j]);
        if (at == (size_t)-1)
            continue;
        uint64_t fresh = a->mask[at] & all & ~found;
        for (int b = 0; fresh && b < n_bases; b++)
            if (fresh & (1ull << b))
                depth[b] = j + 1;
        found |= fresh;
    }
}

void router_affinity_record(router_affinity *a, const uint64_t *h, int m, int b)
{
    a->now++;
    for (int j = 0; j < m; j++) {
        size_t at = (size_t)h[j] & (a->cap - 1), slot = (size_t)-1, oldest = (size_t)-1;
        for (int i = 0; i < AFF_PROBE; i++, at = (at + 1) & (a->cap - 1)) {
            if (a->key[at] == h[j] || !a->key[at]) {
                slot = at;
                break;
            }
            if (oldest == (size_t)-1 || (uint32_t)(a->now - a->tick[at]) > (uint32_t)(a->now - a->tick[oldest]))
                oldest = at;
        }
        if (slot == (size_t)-1) { /* window full: evict its least recently used entry */
            slot = oldest;
            a->key[slot] = 0;
        }
        if (a->key[slot] != h[j]) {
            a->key[slot] = h[j];
            a->mask[slot] = 0;
        }
        a->mask[slot] |= 1ull << b;
        a->tick[slot] = a->now;
    }
}

void router_affinity_forget(router_affinity *a, int b)
{
    for (size_t i = 0; i < a->cap; i++)
        a->mask[i] &= ~(1ull << b); /* keys stay (probe chains intact); an empty mask matches nothing */
}
