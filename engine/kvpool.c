/* kvpool.c: fixed-size KV block pool with refcounts and a free list. */
#include "engine/kvpool.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

size_t al_kvpool_bytes(const al_kv_geom *g, int32_t n_blocks)
{
    return al_kv_block_floats(g) * sizeof(float) * (size_t)n_blocks;
}

al_err al_kvpool_init(al_kvpool *p, const al_kv_geom *g, int32_t n_blocks, void *mem)
{
    if (n_blocks <= 0)
        return ali_errf(AL_EINVAL, "kv pool: n_blocks must be > 0 (got %d)", n_blocks);
    if (g->block_size <= 0 || g->block_size > 1024)
        return ali_errf(AL_ERANGE, "kv pool: block_size %d out of range [1, 1024]", g->block_size);
    *p = (al_kvpool){.g = *g, .n_blocks = n_blocks};
    size_t bytes = al_kvpool_bytes(g, n_blocks);
    if (mem) {
        p->data = mem;
    } else {
        p->data = ali_aligned_alloc(bytes);
        p->owns_data = 1;
    }
    p->refcnt = calloc((size_t)n_blocks, sizeof(int32_t));
    p->free_ids = malloc(sizeof(int32_t) * (size_t)n_blocks);
    if (!p->data || !p->refcnt || !p->free_ids) {
        al_kvpool_destroy(p);
        return ali_errf(AL_ENOMEM, "kv pool: cannot allocate %d blocks (%zu bytes)", n_blocks, bytes);
    }
    for (int32_t i = 0; i < n_blocks; i++)
        p->free_ids[i] = n_blocks - 1 - i; /* pop order 0, 1, 2, ... */
    p->n_free = n_blocks;
    return AL_OK;
}

void al_kvpool_destroy(al_kvpool *p)
{
    if (p->owns_data)
        ali_aligned_free(p->data);
    free(p->refcnt);
    free(p->free_ids);
    *p = (al_kvpool){0};
}

al_err al_kvpool_alloc(al_kvpool *p, int32_t *block)
{
    if (p->n_free == 0 && p->evict) {
        int32_t b = p->evict(p->hook_ctx);
        if (b >= 0) {
            assert(p->refcnt[b] == 0);
            p->refcnt[b] = 1;
            *block = b;
            return AL_OK;
        }
    }
    if (p->n_free == 0)
        return ali_errf(AL_ECAPACITY, "kv pool exhausted (%d blocks of %d tokens all in use)", p->n_blocks,
                        p->g.block_size);
    int32_t b = p->free_ids[--p->n_free];
    assert(p->refcnt[b] == 0);
    p->refcnt[b] = 1;
    *block = b;
    return AL_OK;
}

void al_kvpool_ref(al_kvpool *p, int32_t block)
{
    assert(block >= 0 && block < p->n_blocks && p->refcnt[block] > 0);
    p->refcnt[block]++;
}

int al_kvpool_unref(al_kvpool *p, int32_t block)
{
    assert(block >= 0 && block < p->n_blocks && p->refcnt[block] > 0);
    if (--p->refcnt[block] == 0) {
        if (!(p->on_zero && p->on_zero(p->hook_ctx, block)))
            p->free_ids[p->n_free++] = block;
        return 1;
    }
    return 0;
}

int32_t al_kvpool_used(const al_kvpool *p) { return p->n_blocks - p->n_free; }

void al_kvpool_copy_block(al_kvpool *p, int32_t dst, int32_t src, int32_t rows)
{
    size_t kvd = (size_t)p->g.n_kv_heads * p->g.head_dim, bs = (size_t)p->g.block_size;
    size_t per = kvd * (size_t)rows * sizeof(float);
    for (int32_t l = 0; l < p->g.n_layers * 2; l++) {
        float *d = p->data + (size_t)dst * al_kv_block_floats(&p->g) + (size_t)l * bs * kvd;
        const float *s = p->data + (size_t)src * al_kv_block_floats(&p->g) + (size_t)l * bs * kvd;
        if (p->copy)
            p->copy(d, s, per);
        else
            memcpy(d, s, per);
    }
    p->copied_bytes += per * (size_t)p->g.n_layers * 2;
}
