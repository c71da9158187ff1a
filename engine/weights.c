/* weights.c: base weights in a backend's own format in one buffer (an engine's upload or a shared
 * weight arena): the deterministic layout, the store and the view a worker rebuilds from a config. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"

#define ALI_WALIGN 256 /* every tensor starts on a 256-byte boundary (cuBLAS, vector loads) */

/* Layout walker state: at each tensor it advances the offset; with bind it points the tensor
 * there; with store it writes the host tensor there in the backend's format. */
typedef struct ali_wl {
    const al_ops *ops;
    char *base; /* NULL: sizes only */
    size_t off;
    int store;
} ali_wl;

static size_t ali_wl_round(size_t n) { return (n + ALI_WALIGN - 1) / ALI_WALIGN * ALI_WALIGN; }

/* Part of a region at byte `at` from the current offset (no padding inside a region): a vector of
 * n floats (K = 0) or a matrix of n / K rows of K weights. */
static void ali_wl_part(ali_wl *s, float **dst, const float *src, size_t n, int K, size_t at)
{
    char *p = s->base ? s->base + s->off + at : NULL;
    if (dst)
        *dst = (float *)p;
    if (!s->store)
        return;
    if (K && s->ops->weight_store_rows)
        s->ops->weight_store_rows(p, src, n / (size_t)K, K);
    else
        s->ops->weight_store(p, src, n, K != 0);
}

/* Bytes of n values: a matrix of n / K rows in the backend's format, or n floats (K = 0). */
static size_t ali_wl_bytes(const ali_wl *s, size_t n, int K)
{
    return K ? al_ops_matrix_bytes(s->ops, n / (size_t)K, K) : n * sizeof(float);
}

static void ali_wl_one(ali_wl *s, float **dst, const float *src, size_t n, int K)
{
    ali_wl_part(s, dst, src, n, K, 0);
    s->off += ali_wl_round(ali_wl_bytes(s, n, K));
}

/* The layout: every tensor / fused region on a 256-byte boundary, matrices in the backend's format
 * (ops->weight_bytes per element, or rows of ops->weight_row_bytes), vectors f32:
 *   embed [V,H] · norm [H] · lm_head [V,H] (untied only) ·
 *   per layer: attn_norm [H] · ffn_norm [H] · wq|wk|wv [(nh+2nkv)*hd, H] · wo [H, nh*hd] ·
 *              w_gate|w_up [2I, H] · w_down [H, I]
 * q|k|v and gate|up are back to back so a one-row step can run each as one matmul. dst and src
 * may be NULL (no bind / no store). Returns the total bytes. */
static size_t ali_wl_walk(const al_model_config *c, const al_ops *ops, char *base, al_weights *dst,
                          const al_weights *src)
{
    size_t H = (size_t)c->hidden_size, I = (size_t)c->intermediate_size, V = (size_t)c->vocab_size;
    size_t qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim;
    int h = c->hidden_size, q = (int)qd, in = c->intermediate_size;
    ali_wl s = {.ops = ops, .base = base, .store = src != NULL};
#define D(f) (dst ? &dst->f : NULL)
#define S(f) (src ? src->f : NULL)
    ali_wl_one(&s, D(embed), S(embed), V * H, h);
    ali_wl_one(&s, D(norm), S(norm), H, 0);
    if (!c->tie_word_embeddings)
        ali_wl_one(&s, D(lm_head), S(lm_head), V * H, h);
    else if (dst)
        dst->lm_head = dst->embed;
    for (int l = 0; l < c->n_layers; l++) {
        ali_wl_one(&s, D(layers[l].attn_norm), S(layers[l].attn_norm), H, 0);
        ali_wl_one(&s, D(layers[l].ffn_norm), S(layers[l].ffn_norm), H, 0);
        ali_wl_part(&s, D(layers[l].wq), S(layers[l].wq), qd * H, h, 0);
        ali_wl_part(&s, D(layers[l].wk), S(layers[l].wk), kvd * H, h, ali_wl_bytes(&s, qd * H, h));
        ali_wl_part(&s, D(layers[l].wv), S(layers[l].wv), kvd * H, h, ali_wl_bytes(&s, (qd + kvd) * H, h));
        s.off += ali_wl_round(ali_wl_bytes(&s, (qd + 2 * kvd) * H, h));
        ali_wl_one(&s, D(layers[l].wo), S(layers[l].wo), H * qd, q);
        ali_wl_part(&s, D(layers[l].w_gate), S(layers[l].w_gate), I * H, h, 0);
        ali_wl_part(&s, D(layers[l].w_up), S(layers[l].w_up), I * H, h, ali_wl_bytes(&s, I * H, h));
        s.off += ali_wl_round(ali_wl_bytes(&s, 2 * I * H, h));
        ali_wl_one(&s, D(layers[l].w_down), S(layers[l].w_down), H * I, in);
    }
#undef D
#undef S
    return s.off;
}

size_t al_weights_backend_bytes(const al_model_config *c, const al_ops *ops)
{
    if (al_ops_canonical_weights(ops))
        return al_weights_layout_bytes(c);
    return ali_wl_walk(c, ops, NULL, NULL, NULL);
}

/* Device memory must sit on a 256-byte boundary (cuBLAS); host memory on a cache line. */
static int ali_wl_misaligned(const al_ops *ops, const void *p)
{
    return !p || ((uintptr_t)p % (ops->host_memory ? 64 : ALI_WALIGN));
}

al_err al_weights_backend_bind(const al_model_config *c, const al_ops *ops, void *dst, al_weights *w)
{
    if (al_ops_canonical_weights(ops))
        return al_weights_bind(c, dst, w);
    memset(w, 0, sizeof *w);
    if (ali_wl_misaligned(ops, dst))
        return ali_errf(AL_EINVAL, "weights: the %s buffer must be non-NULL and %d-byte aligned", ops->name,
                        ops->host_memory ? 64 : ALI_WALIGN);
    if (c->n_layers <= 0)
        return ali_errf(AL_EINVAL, "weights: the config has no layers");
    if (ops->weight_row_bytes && (c->hidden_size > 131072 || c->intermediate_size > 131072 ||
                                  c->n_heads * c->head_dim > 131072)) /* int32 dots: K * 127^2 < 2^31 */
        return ali_errf(AL_EUNSUPPORTED, "weights: %s rows hold at most 131072 weights (hidden %d, intermediate %d)",
                        ops->name, c->hidden_size, c->intermediate_size);
    w->layers = calloc((size_t)c->n_layers, sizeof *w->layers);
    if (!w->layers)
        return ali_errf(AL_ENOMEM, "out of memory");
    ali_wl_walk(c, ops, dst, w, NULL);
    return AL_OK;
}

typedef struct ali_put_ctx {
    const al_ops *ops;
    const al_model_config *c;
    const al_weights *w; /* the bound view: which tensor dst is tells its row length */
} ali_put_ctx;

static void ali_put(void *ctx, void *dst, const float *data, size_t n, int matrix)
{
    const ali_put_ctx *p = ctx;
    if (!matrix || !p->ops->weight_store_rows) {
        p->ops->weight_store(dst, data, n, matrix);
        return;
    }
    int K = p->c->hidden_size; /* embed, lm_head, wq, wk, wv, w_gate, w_up */
    for (int l = 0; l < p->c->n_layers; l++)
        if (dst == p->w->layers[l].wo)
            K = p->c->n_heads * p->c->head_dim;
        else if (dst == p->w->layers[l].w_down)
            K = p->c->intermediate_size;
    p->ops->weight_store_rows(dst, data, n / (size_t)K, K);
}

al_err al_weights_backend_load(const char *dir, const al_ops *ops, al_alloc_fn alloc, void *alloc_ctx,
                               al_model **model, void **buf)
{
    *model = NULL;
    *buf = NULL;
    al_model_config cfg;
    AL_TRY(al_config_load(dir, &cfg));
    al_dtype dt = AL_DT_F32;
    AL_TRY(al_model_weights_dtype(dir, &dt));
    cfg.dtype = dt;
    size_t bytes = al_weights_backend_bytes(&cfg, ops);
    void *dst = alloc ? alloc(alloc_ctx, bytes) : ops->alloc(bytes);
    if (!dst)
        return ali_errf(AL_ENOMEM, "%s: cannot allocate %.1f MiB of %s weights", dir, bytes / 1048576.0, ops->name);
    al_weights w;
    al_err e = al_weights_backend_bind(&cfg, ops, dst, &w);
    if (e == AL_OK)
        e = al_model_load_via(dir, &cfg, &w, ali_put, &(ali_put_ctx){.ops = ops, .c = &cfg, .w = &w});
    al_weights_unbind(&w);
    if (e == AL_OK) {
        ops->sync();
        e = al_model_view(&cfg, al_ops_canonical_weights(ops) ? dst : NULL, model);
    }
    if (e != AL_OK && !alloc)
        ops->free(dst);
    if (e == AL_OK)
        *buf = dst;
    return e;
}

al_err al_ops_for_model(const char *device, const char *weights, const char *model_dir, const al_ops **out)
{
    const al_ops *o = NULL;
    AL_TRY(al_ops_select(device, &o));
    if (!weights)
        weights = "auto";
    if (strcmp(weights, "auto") && strcmp(weights, "f32") && strcmp(weights, "bf16") && strcmp(weights, "int8"))
        return ali_errf(AL_EINVAL, "weights '%s' is not one of auto, f32, bf16, int8", weights);
    if (!strcmp(weights, "int8")) {
        if (!o->host_memory)
            return ali_errf(AL_EUNSUPPORTED, "int8 weights: CPU only (the %s backend keeps matrix weights in bf16)",
                            o->name);
        if (o->weight_bytes == 2)
            return ali_errf(AL_EINVAL, "device %s with weights = \"int8\": pick one", o->name);
        o = al_ops_cpu_q8();
    } else if (!o->host_memory) {
        if (!strcmp(weights, "f32"))
            return ali_errf(AL_EUNSUPPORTED, "weights = \"f32\": the %s backend keeps matrix weights in bf16", o->name);
    } else if (o->weight_bytes == 2) {
        if (!strcmp(weights, "f32"))
            return ali_errf(AL_EINVAL, "device %s with weights = \"f32\": pick one", o->name);
    } else {
        bool bf16 = !strcmp(weights, "bf16");
        if (!strcmp(weights, "auto")) {
            al_dtype dt = AL_DT_F32;
            AL_TRY(al_model_weights_dtype(model_dir, &dt));
            bf16 = dt == AL_DT_BF16;
        }
        if (bf16)
            o = al_ops_cpu_bf16();
    }
    *out = o;
    return AL_OK;
}

al_err al_weights_backend_store(const al_model *m, const al_ops *ops, void *dst)
{
    if (!m->base)
        return ali_errf(AL_EINVAL, "weights: model '%s' has no host weights to store", m->cfg.name);
    if (ali_wl_misaligned(ops, dst) && !al_ops_canonical_weights(ops))
        return ali_errf(AL_EINVAL, "weights: the %s buffer must be non-NULL and %d-byte aligned", ops->name,
                        ops->host_memory ? 64 : ALI_WALIGN);
    if (!dst)
        return ali_errf(AL_EINVAL, "weights: no buffer");
    if (al_ops_canonical_weights(ops)) {
        if (dst != m->base)
            memcpy(dst, m->base, al_weights_layout_bytes(&m->cfg));
        return AL_OK;
    }
    ali_wl_walk(&m->cfg, ops, dst, NULL, &m->w);
    ops->sync();
    return AL_OK;
}
