/* kvpool.h: fixed-size KV block pool with refcounts and a free list. */
#ifndef AL_KVPOOL_H
#define AL_KVPOOL_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "kernels/kernels.h"

typedef struct al_kvpool {
    al_kv_geom g;
    int32_t n_blocks;
    float *data;       /* [n_blocks, block floats] (see al_kv_block_floats) */
    int32_t *refcnt;   /* [n_blocks] */
    int32_t *free_ids; /* stack of free block ids */
    int32_t n_free;
    int owns_data;
    uint64_t copied_bytes; /* KV bytes ever copied between blocks (copy-on-write; zero-copy proof) */
    /* Optional prefix-cache hooks: on_zero returns 1 when it keeps a block that lost its last
     * reference (the block is then neither free nor used); evict returns a kept block to reuse,
     * or -1. */
    int (*on_zero)(void *ctx, int32_t block);
    int32_t (*evict)(void *ctx);
    void *hook_ctx;
    void (*copy)(void *dst, const void *src, size_t bytes); /* block copies (device memory); NULL = memcpy */
} al_kvpool;

/* Bytes of KV storage for n_blocks blocks. */
size_t al_kvpool_bytes(const al_kv_geom *g, int32_t n_blocks);
/* mem may be NULL (allocated here) or caller storage of al_kvpool_bytes bytes (e.g. an arena). */
al_err al_kvpool_init(al_kvpool *p, const al_kv_geom *g, int32_t n_blocks, void *mem);
void al_kvpool_destroy(al_kvpool *p);

/* Takes a free block (refcount 1), evicting a kept block when none is free; AL_ECAPACITY when
 * neither exists. */
al_err al_kvpool_alloc(al_kvpool *p, int32_t *block);
void al_kvpool_ref(al_kvpool *p, int32_t block);
/* Drops a reference; returns 1 when the block lost its last reference (freed or kept). */
int al_kvpool_unref(al_kvpool *p, int32_t block);
int32_t al_kvpool_used(const al_kvpool *p);
/* Copies every layer's K/V rows [0, rows) of block src into block dst (counted in copied_bytes). */
void al_kvpool_copy_block(al_kvpool *p, int32_t dst, int32_t src, int32_t rows);

#endif
