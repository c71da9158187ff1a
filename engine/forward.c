/* forward.c: one batched transformer forward step (Llama / Granite) with masked LoRA. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "engine/engine_int.h"

al_err ali_runstate_init(ali_runstate *rs, const al_ops *ops, const al_model_config *c, int32_t T, int32_t max_rank)
{
    size_t H = (size_t)c->hidden_size, qd = (size_t)c->n_heads * c->head_dim;
    size_t kvd = (size_t)c->n_kv_heads * c->head_dim, I = (size_t)c->intermediate_size;
    size_t t = (size_t)T, V = (size_t)c->vocab_size;
    memset(rs, 0, sizeof *rs);
    rs->x = ops->alloc(t * H * sizeof(float));
    rs->xn = ops->alloc(t * H * sizeof(float));
    rs->q = ops->alloc(t * qd * sizeof(float));
    rs->k = ops->alloc(t * kvd * sizeof(float));
    rs->v = ops->alloc(t * kvd * sizeof(float));
    rs->att = ops->alloc(t * qd * sizeof(float));
    rs->proj = ops->alloc(t * H * sizeof(float));
    rs->gate = ops->alloc(t * I * sizeof(float));
    rs->up = ops->alloc(t * I * sizeof(float));
    rs->hout = ops->alloc(t * H * sizeof(float));
    rs->logits = ops->alloc((size_t)ALI_LOGIT_ROWS * V * sizeof(float));
    rs->fused = ops->alloc((qd + 2 * kvd + 2 * I) * sizeof(float));
    rs->lora_cap = max_rank > 0 ? max_rank : 1;
    rs->lora_tmp = ops->alloc(t * (size_t)rs->lora_cap * sizeof(float));
    rs->logits_host = ali_aligned_alloc((size_t)ALI_LOGIT_ROWS * V * sizeof(float));
    rs->inv_freq = ali_aligned_alloc((size_t)c->head_dim / 2 * sizeof(float) + 4);
    rs->rope_cs = ali_aligned_alloc(t * (size_t)c->head_dim * sizeof(float));
    if (!rs->x || !rs->xn || !rs->q || !rs->k || !rs->v || !rs->att || !rs->proj || !rs->gate || !rs->up ||
        !rs->hout || !rs->logits || !rs->fused || !rs->lora_tmp || !rs->logits_host || !rs->inv_freq ||
        !rs->rope_cs) {
        ali_runstate_free(rs, ops);
        return ali_errf(AL_ENOMEM, "engine: cannot allocate scratch for %d tokens per step", T);
    }
    al_rope_inv_freq(rs->inv_freq, c->head_dim, c->rope_theta, c->rope_llama3, c->rope_factor,
                     c->rope_low_freq_factor, c->rope_high_freq_factor, c->rope_original_max_pos);
    return AL_OK;
}

void ali_runstate_free(ali_runstate *rs, const al_ops *ops)
{
    float *dev[] = {rs->x, rs->xn, rs->q, rs->k, rs->v, rs->att, rs->proj, rs->gate, rs->up, rs->hout, rs->logits,
                    rs->fused, rs->lora_tmp};
    for (size_t i = 0; i < AL_ARRAY_LEN(dev); i++)
        if (dev[i])
            ops->free(dev[i]);
    ali_aligned_free(rs->logits_host);
    ali_aligned_free(rs->inv_freq);
    ali_aligned_free(rs->rope_cs);
    memset(rs, 0, sizeof *rs);
}

al_err ali_weights_upload(al_engine *e)
{
    const al_model_config *c = &e->m->cfg;
    e->own_w = 0;
    if (e->o.weights) { /* already in backend memory (a weight arena) */
        e->w = *e->o.weights;
        return AL_OK;
    }
    if (!e->m->base)
        return ali_errf(AL_EINVAL, "engine: model '%s' has no host weights and no backend weights were given",
                        c->name);
    if (al_ops_canonical_weights(e->ops)) {
        e->w = e->m->w;
        return AL_OK;
    }
    /* one buffer in the backend's layout (the same one a shared weight arena uses) */
    size_t bytes = al_weights_backend_bytes(c, e->ops);
    e->w_buf = e->ops->alloc(bytes);
    if (!e->w_buf)
        return ali_errf(AL_ENOMEM, "engine: cannot allocate %.1f MiB of weights on the %s backend",
                        bytes / 1048576.0, e->ops->name);
    e->own_w = 1;
    AL_TRY(al_weights_backend_store(e->m, e->ops, e->w_buf));
    return al_weights_backend_bind(c, e->ops, e->w_buf, &e->w);
}

void ali_weights_release(al_engine *e)
{
    if (e->own_w)
        al_weights_unbind(&e->w);
    if (e->w_buf)
        e->ops->free(e->w_buf);
    e->w_buf = NULL;
    memset(&e->w, 0, sizeof e->w);
    e->own_w = 0;
}

al_err ali_adapter_upload(al_engine *e, const al_adapter *a, al_lora_mod **out)
{
    size_t n = (size_t)a->n_layers * AL_T_COUNT;
    if (e->ops->host_memory) {
        *out = a->mods;
        return AL_OK;
    }
    al_lora_mod *m = calloc(n, sizeof *m);
    if (!m)
        return ali_errf(AL_ENOMEM, "engine: out of memory");
    for (size_t i = 0; i < n; i++) {
        m[i] = a->mods[i];
        if (m[i].r <= 0)
            continue;
        m[i].A = e->ops->weight_upload(a->mods[i].A, (size_t)m[i].r * m[i].in, 0);
        m[i].B = e->ops->weight_upload(a->mods[i].B, (size_t)m[i].out * m[i].r, 0);
        m[i].bias = a->mods[i].bias ? e->ops->weight_upload(a->mods[i].bias, (size_t)m[i].out, 0) : NULL;
        if (!m[i].A || !m[i].B || (a->mods[i].bias && !m[i].bias)) {
            ali_adapter_release(e, a, m);
            return ali_errf(AL_ENOMEM, "engine: cannot upload adapter %s to the %s backend", a->name, e->ops->name);
        }
    }
    *out = m;
    return AL_OK;
}

void ali_adapter_release(al_engine *e, const al_adapter *a, al_lora_mod *m)
{
    if (!m || m == a->mods)
        return;
    for (size_t i = 0; i < (size_t)a->n_layers * AL_T_COUNT; i++) {
        if (m[i].A)
            e->ops->weight_free(m[i].A);
        if (m[i].B)
            e->ops->weight_free(m[i].B);
        if (m[i].bias)
            e->ops->weight_free(m[i].bias);
    }
    free(m);
}

/* y [T, out] += LoRA delta of module t of layer l for every adapter group's rows. */
static void ali_apply_lora(al_engine *e, const ali_batch *b, int layer, al_target t, float *y, const float *x)
{
    for (int32_t gi = 0; gi < b->n_groups; gi++) {
        const ali_lora_group *grp = &b->groups[gi];
        const al_lora_mod *mod = &e->amods[gi][layer * AL_T_COUNT + t];
        if (mod->r <= 0 || grp->n_ranges == 0)
            continue;
        e->ops->lora(y, x, grp->ranges, grp->n_ranges, mod->A, mod->B, mod->bias, mod->in, mod->out, mod->r,
                     mod->scale, e->rs.lora_tmp);
    }
}

/* One-row steps read several weight matrices back to back: when the canonical layout put them
 * next to each other, one gemv over the stacked matrix replaces several small ones. */
static int ali_adjacent(const al_engine *e, const float *a, size_t rows, int K, const float *b)
{
    return (const char *)a + al_ops_matrix_bytes(e->ops, rows, K) == (const char *)b;
}

void ali_forward(al_engine *e, const ali_batch *b)
{
    const al_model_config *c = &e->m->cfg;
    const al_weights *w = &e->w;
    const al_ops *ops = e->ops;
    ali_runstate *rs = &e->rs;
    int T = b->T, H = c->hidden_size, I = c->intermediate_size;
    int nh = c->n_heads, nkv = c->n_kv_heads, hd = c->head_dim;
    int qd = nh * hd, kvd = nkv * hd;

    ops->embedding(rs->x, w->embed, b->ids, T, H, c->embedding_multiplier);
    al_rope_table(rs->rope_cs, b->pos, T, hd, rs->inv_freq);
    for (int l = 0; l < c->n_layers; l++) {
        const al_layer_weights *lw = &w->layers[l];
        float *q = rs->q, *k = rs->k, *v = rs->v, *gate = rs->gate, *up = rs->up;
        /* attention block */
        ops->rmsnorm(rs->xn, rs->x, lw->attn_norm, T, H, c->rms_eps);
        if (T == 1 && ali_adjacent(e, lw->wq, (size_t)qd, H, lw->wk) && ali_adjacent(e, lw->wk, (size_t)kvd, H, lw->wv)) {
            q = rs->fused;
            k = q + qd;
            v = k + kvd;
            ops->matmul(q, rs->xn, lw->wq, 1, H, qd + 2 * kvd, 0);
        } else {
            ops->matmul(q, rs->xn, lw->wq, T, H, qd, 0);
            ops->matmul(k, rs->xn, lw->wk, T, H, kvd, 0);
            ops->matmul(v, rs->xn, lw->wv, T, H, kvd, 0);
        }
        ali_apply_lora(e, b, l, AL_T_Q, q, rs->xn);
        ali_apply_lora(e, b, l, AL_T_K, k, rs->xn);
        ali_apply_lora(e, b, l, AL_T_V, v, rs->xn);
        ops->rope(q, rs->rope_cs, T, nh, hd);
        ops->rope(k, rs->rope_cs, T, nkv, hd);
        ops->kv_write(&e->g, l, b->views, b->n_views, k, v);
        ops->attention(&e->g, l, nh, c->attention_multiplier, b->views, b->n_views, q, rs->att);
        ops->matmul(rs->proj, rs->att, lw->wo, T, qd, H, 0);
        ali_apply_lora(e, b, l, AL_T_O, rs->proj, rs->att);
        ops->add_scaled(rs->x, rs->proj, c->residual_multiplier, (size_t)T * H);
        /* MLP block */
        ops->rmsnorm(rs->xn, rs->x, lw->ffn_norm, T, H, c->rms_eps);
        if (T == 1 && ali_adjacent(e, lw->w_gate, (size_t)I, H, lw->w_up)) {
            gate = rs->fused;
            up = gate + I;
            ops->matmul(gate, rs->xn, lw->w_gate, 1, H, 2 * I, 0);
        } else {
            ops->matmul(gate, rs->xn, lw->w_gate, T, H, I, 0);
            ops->matmul(up, rs->xn, lw->w_up, T, H, I, 0);
        }
        ali_apply_lora(e, b, l, AL_T_GATE, gate, rs->xn);
        ali_apply_lora(e, b, l, AL_T_UP, up, rs->xn);
        ops->swiglu(gate, gate, up, (size_t)T * I);
        ops->matmul(rs->proj, gate, lw->w_down, T, I, H, 0);
        ali_apply_lora(e, b, l, AL_T_DOWN, rs->proj, gate);
        ops->add_scaled(rs->x, rs->proj, c->residual_multiplier, (size_t)T * H);
    }
    /* final norm of the wanted rows only */
    for (int32_t i = 0; i < b->n_out; i++)
        ops->rmsnorm(rs->hout + (size_t)i * H, rs->x + (size_t)b->out_rows[i] * H, w->norm, 1, H, c->rms_eps);
}

void ali_lm_head(al_engine *e, const float *hidden, int32_t n, float *logits)
{
    const al_model_config *c = &e->m->cfg;
    e->ops->matmul(logits, hidden, e->w.lm_head, n, c->hidden_size, c->vocab_size, 0);
    if (c->logits_scaling != 1.0f)
        e->ops->scale(logits, 1.0f / c->logits_scaling, (size_t)n * c->vocab_size);
}
