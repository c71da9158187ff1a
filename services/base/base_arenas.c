/* base_arenas.c: the base's shared regions: weight arena (+ manifest), KV arena, block-table arena. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/ipc/lease_table.h"
#include "common/log.h"
#include "services/base/base.h"

#define BASE_MANIFEST_ALIGN 4096

typedef struct base_alloc_ctx {
    al_arena *arena;
    al_err err;
    char msg[256];
} base_alloc_ctx;

static size_t base_round(size_t n, size_t a) { return (n + a - 1) / a * a; }

/* al_model_load_ex allocator: the weights live in a shm arena, with room for the manifest after them. */
static void *base_weights_alloc(void *ctx, size_t bytes)
{
    base_alloc_ctx *c = ctx;
    size_t total = base_round(bytes, BASE_MANIFEST_ALIGN) + BASE_MANIFEST_ALIGN;
    c->err = al_arena_create(AL_ARENA_CPU, "weights", total, &c->arena);
    if (c->err != AL_OK) {
        snprintf(c->msg, sizeof c->msg, "%s", al_errmsg());
        return NULL;
    }
    return al_arena_ptr(c->arena);
}

/* CPU backend: the safetensors are read straight into a shm arena in the canonical f32 layout. */
static al_err base_weights_host(base_ctx *b)
{
    const al_cluster_cfg *cfg = &b->cfg;
    base_alloc_ctx ac = {0};
    al_err e = al_model_load_ex(cfg->base.model, base_weights_alloc, &ac, &b->model);
    b->weights = ac.arena;
    if (e != AL_OK) {
        if (ac.err != AL_OK)
            return ali_errf(ac.err, "base.model %s: weight arena: %s", cfg->base.model, ac.msg);
        return ali_errctx(e, "base.model");
    }
    b->manifest_offset = base_round(b->model->bytes, BASE_MANIFEST_ALIGN);
    memcpy((char *)al_arena_ptr(b->weights) + b->manifest_offset, &b->model->cfg, sizeof(al_model_config));
    return AL_OK;
}

/* Other layouts (bf16 matrices on CUDA or cpu-bf16): the checkpoint is read tensor by tensor
 * straight into the arena (CUDA IPC or shm) in the backend's layout; the base keeps the config. */
typedef struct base_conv_ctx {
    base_ctx *b;
    al_arena_kind kind;
    al_err err;
    char msg[256];
} base_conv_ctx;

static void *base_weights_conv_alloc(void *ctx, size_t bytes)
{
    base_conv_ctx *c = ctx;
    c->b->manifest_offset = base_round(bytes, BASE_MANIFEST_ALIGN);
    c->err = al_arena_create(c->kind, "weights", c->b->manifest_offset + BASE_MANIFEST_ALIGN, &c->b->weights);
    if (c->err != AL_OK) {
        snprintf(c->msg, sizeof c->msg, "%s", al_errmsg());
        return NULL;
    }
    return al_arena_ptr(c->b->weights);
}

static al_err base_weights_converted(base_ctx *b, al_arena_kind kind)
{
    const al_cluster_cfg *cfg = &b->cfg;
    base_conv_ctx cc = {.b = b, .kind = kind};
    void *dst = NULL;
    al_err e = al_weights_backend_load(cfg->base.model, b->ops, base_weights_conv_alloc, &cc, &b->model, &dst);
    if (e != AL_OK) {
        if (cc.err != AL_OK)
            return ali_errf(cc.err, "base.model %s: %s weight arena: %s", cfg->base.model, b->ops->name, cc.msg);
        return ali_errctx(e, "base.model");
    }
    b->ops->upload((char *)dst + b->manifest_offset, &b->model->cfg, sizeof(al_model_config));
    return AL_OK;
}

al_err base_arenas_create(base_ctx *b)
{
    const al_cluster_cfg *cfg = &b->cfg;
    double t0 = al_now();
    if (!b->ops)
        AL_TRY(al_ops_select("cpu", &b->ops));
    al_arena_kind kind = b->ops->host_memory ? AL_ARENA_CPU : AL_ARENA_CUDA;
    /* manifest: the model config as this build lays it out; weights follow al_weights_backend_bind */
    _Static_assert(sizeof(al_model_config) <= BASE_MANIFEST_ALIGN, "manifest fits");
    b->manifest_bytes = sizeof(al_model_config);
    AL_TRY(al_ops_canonical_weights(b->ops) ? base_weights_host(b) : base_weights_converted(b, kind));
    const al_model_config *mc = &b->model->cfg;
    AL_TRY(al_weights_backend_bind(mc, b->ops, al_arena_ptr(b->weights), &b->wview));

    al_kv_geom g = {.n_layers = mc->n_layers, .n_kv_heads = mc->n_kv_heads, .head_dim = mc->head_dim,
                    .block_size = cfg->base.block_size};
    size_t kv_bytes = al_kvpool_bytes(&g, cfg->base.kv_blocks);
    al_err e = al_arena_create(kind, "kv", kv_bytes, &b->kv);
    if (e != AL_OK)
        return ali_errctx(e, "base.kv_blocks = %d: %.1f MiB %s KV arena", cfg->base.kv_blocks,
                          kv_bytes / 1048576.0, b->ops->name);
    int64_t mb = ((int64_t)mc->max_position_embeddings + cfg->base.block_size - 1) / cfg->base.block_size;
    if (mb > cfg->base.kv_blocks)
        mb = cfg->base.kv_blocks;
    b->max_blocks_per_seq = (int32_t)mb;
    b->row_stride = al_lease_row_stride(b->max_blocks_per_seq);
    AL_TRY(al_arena_create(AL_ARENA_CPU, "tables", al_lease_table_bytes(b->max_blocks_per_seq, cfg->base.max_leases),
                           &b->tables));
    AL_INFO("arenas (%s): weights %.1f MiB (%s, %d layers, %s), kv %.1f MiB (%d blocks of %d tokens), tables "
            "%.1f KiB (%d rows x %d blocks), loaded in %.0f ms",
            kind == AL_ARENA_CPU ? "shm" : "cuda ipc", al_arena_size(b->weights) / 1048576.0, mc->name,
            mc->n_layers, b->ops->weight_bytes == 2 ? "bf16" : "f32", kv_bytes / 1048576.0, cfg->base.kv_blocks,
            cfg->base.block_size, al_arena_size(b->tables) / 1024.0, cfg->base.max_leases, b->max_blocks_per_seq,
            (al_now() - t0) * 1e3);
    return AL_OK;
}

void base_arenas_destroy(base_ctx *b)
{
    al_weights_unbind(&b->wview);
    al_model_free(b->model); /* does not own the arena's buffer */
    b->model = NULL;
    al_arena_destroy(b->tables);
    al_arena_destroy(b->kv);
    al_arena_destroy(b->weights);
    b->tables = b->kv = b->weights = NULL;
}

static void base_ref(const al_arena *a, alora_ArenaRef *r)
{
    r->kind = al_arena_kind_of(a) == AL_ARENA_CUDA ? alora_ArenaKind_ARENA_CUDA_IPC : alora_ArenaKind_ARENA_SHM;
    _Static_assert(sizeof r->handle == AL_ARENA_HANDLE_BYTES, "ArenaRef.handle must hold an arena handle");
    al_arena_handle(a, r->handle);
    r->bytes = al_arena_size(a);
    r->device = al_arena_device(a);
}

void base_fill_attach(const base_ctx *b, alora_AttachReply *r)
{
    const al_model_config *mc = &b->model->cfg;
    snprintf(r->base_instance_id, sizeof r->base_instance_id, "%s", b->instance_id);
    r->base_pid = (uint32_t)getpid();
    base_ref(b->weights, &r->weights);
    r->manifest_offset = b->manifest_offset;
    r->manifest_bytes = b->manifest_bytes;
    base_ref(b->kv, &r->kv);
    base_ref(b->tables, &r->block_tables);
    alora_ModelConfig *m = &r->model;
    snprintf(m->name, sizeof m->name, "%s", mc->name);
    snprintf(m->arch, sizeof m->arch, "%s", mc->arch == AL_ARCH_GRANITE ? "GraniteForCausalLM" : "LlamaForCausalLM");
    m->dtype = b->ops->weight_bytes == 2 ? alora_Dtype_DTYPE_BF16 : alora_Dtype_DTYPE_F32;
    m->vocab_size = (uint32_t)mc->vocab_size;
    m->hidden_size = (uint32_t)mc->hidden_size;
    m->intermediate_size = (uint32_t)mc->intermediate_size;
    m->n_layers = (uint32_t)mc->n_layers;
    m->n_heads = (uint32_t)mc->n_heads;
    m->n_kv_heads = (uint32_t)mc->n_kv_heads;
    m->head_dim = (uint32_t)mc->head_dim;
    m->max_position = (uint32_t)mc->max_position_embeddings;
    m->rms_norm_eps = mc->rms_eps;
    m->rope_theta = mc->rope_theta;
    snprintf(m->rope_scaling_type, sizeof m->rope_scaling_type, "%s", mc->rope_llama3 ? "llama3" : "");
    m->rope_factor = mc->rope_factor;
    m->rope_low_freq_factor = mc->rope_low_freq_factor;
    m->rope_high_freq_factor = mc->rope_high_freq_factor;
    m->rope_original_max_position = (uint32_t)mc->rope_original_max_pos;
    m->tie_word_embeddings = mc->tie_word_embeddings != 0;
    m->embedding_multiplier = mc->embedding_multiplier;
    m->attention_multiplier = mc->attention_multiplier;
    m->residual_multiplier = mc->residual_multiplier;
    m->logits_scaling = mc->logits_scaling;
    m->bos_token_id = mc->bos_token_id;
    m->eos_token_ids_count = (pb_size_t)(mc->n_eos < 8 ? mc->n_eos : 8);
    for (int i = 0; i < (int)m->eos_token_ids_count; i++)
        m->eos_token_ids[i] = mc->eos_token_ids[i];
    snprintf(m->model_path, sizeof m->model_path, "%s", b->cfg.base.model);
    alora_KvGeometry *g = &r->kv_geometry;
    g->n_layers = (uint32_t)mc->n_layers;
    g->n_kv_heads = (uint32_t)mc->n_kv_heads;
    g->head_dim = (uint32_t)mc->head_dim;
    g->block_size = (uint32_t)b->cfg.base.block_size;
    g->n_blocks = (uint32_t)b->cfg.base.kv_blocks;
    g->dtype = alora_Dtype_DTYPE_F32;
    al_kv_geom kg = {.n_layers = mc->n_layers, .n_kv_heads = mc->n_kv_heads, .head_dim = mc->head_dim,
                     .block_size = b->cfg.base.block_size};
    g->block_bytes = al_kv_block_floats(&kg) * sizeof(float);
    g->max_blocks_per_seq = (uint32_t)b->max_blocks_per_seq;
    r->lease_ttl_ms = (uint32_t)b->cfg.base.lease_ttl_ms;
}
