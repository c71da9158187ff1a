/* backprop.c: forward + backward of training examples through the ops table. The prefix before
 * the aLoRA activation start runs the base weights and keeps only its K/V (constants); the suffix
 * saves its activations and is back-propagated through, gradients reaching the adapter's A and B;
 * a batch's examples sharing a prefix run together, their suffix rows stacked. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "train/prefix_store.h"
#include "train/train.h"

/* Activations of a run of T rows through one layer (the suffix's are kept for the backward). */
typedef struct ali_tr_acts {
    float *xin;  /* [T, H] layer input (NULL: not kept) */
    float *xn1;  /* [T, H] attention norm */
    float *q;    /* [T, qd] after RoPE */
    float *att;  /* [T, qd] attention output */
    float *xmid; /* [T, H] residual after attention (NULL: not kept) */
    float *xn2;  /* [T, H] MLP norm */
    float *gate; /* [T, I] before SiLU */
    float *up;   /* [T, I] */
    float *act;  /* [T, I] silu(gate) * up */
    float *u[AL_T_COUNT]; /* [T, r] A x of each adapted module (suffix only) */
} ali_tr_acts;

/* ALORA_TRAIN_PROFILE=1: wall time per kind of work, printed to stderr when the trainer is freed. */
enum {
    ALI_P_PREFIX, ALI_P_QKV, ALI_P_ATT, ALI_P_O, ALI_P_GATEUP, ALI_P_DOWN, ALI_P_LORA, ALI_P_HEAD,
    ALI_P_DOWN_T, ALI_P_GATEUP_T, ALI_P_O_T, ALI_P_ATT_T, ALI_P_QKV_T, ALI_P_LORA_T, ALI_P_SUFFIX, ALI_P_N
};
static const char *const ali_prof_names[ALI_P_N] = {
    "prefix forward (base weights, K/V kept)", "q/k/v (+ adapters' A) forward", "attention forward",
    "o forward", "gate/up forward", "down forward", "adapters' B forward", "norm + lm_head + cross-entropy (fwd+bwd)",
    "down^T", "gate/up^T", "o^T", "attention backward", "q/k/v^T", "adapter gradients (A, B)",
    "suffix forward + backward (all of it)"};

struct al_trainer {
    const al_model *m;
    const al_ops *ops;
    float *arena;
    size_t cap, peak; /* floats */
    float *inv_freq;  /* [hd/2] */
    int32_t *choices; /* [n_choices] closed set of answers, NULL = none */
    int32_t n_choices;
    /* every position's K/V, kept between examples: rows [0, pc_n) are the base K/V (they do not
     * depend on the adapter) of the last example's prefix, the prefix cache */
    int32_t *pc_ids;  /* [kv_cap] the tokens of rows [0, pc_n) */
    float *kv;        /* [L][2][kv_cap, kvd] */
    int32_t pc_n, kv_cap;
    int64_t pc_hits;  /* prefix positions taken from the cache (the last prefix's rows or the store) */
    ali_pstore ps;    /* prefixes kept across steps and epochs (al_trainer_set_prefix_store) */
    double *prof;     /* [ALI_P_N] seconds (ALORA_TRAIN_PROFILE set), else NULL */
    double prof_t[ALI_P_N];
    int64_t prof_ex;
};

al_err al_trainer_create(const al_model *m, const al_ops *ops, al_trainer **out)
{
    if (!ops->matmul_dx || !ops->matmul_dw || !ops->rmsnorm_bwd || !ops->rope_bwd || !ops->swiglu_bwd ||
        !ops->attention_shared || !ops->attention_shared_bwd || !ops->cross_entropy)
        return ali_errf(AL_EUNSUPPORTED, "train: the training ops are not on this backend (%s)", ops->name);
    if (!al_ops_canonical_weights(ops) || !m->base)
        return ali_errf(AL_EUNSUPPORTED, "train: needs the f32 host weights (backend %s)", ops->name);
    const al_model_config *c = &m->cfg;
    al_trainer *tr = calloc(1, sizeof *tr);
    if (!tr)
        return ali_errf(AL_ENOMEM, "train: out of memory");
    tr->m = m;
    tr->ops = ops;
    tr->inv_freq = ali_aligned_alloc(sizeof(float) * (size_t)(c->head_dim / 2 + 1));
    if (!tr->inv_freq) {
        free(tr);
        return ali_errf(AL_ENOMEM, "train: out of memory");
    }
    const char *pe = getenv("ALORA_TRAIN_PROFILE");
    tr->prof = pe && *pe && strcmp(pe, "0") ? tr->prof_t : NULL;
    al_rope_inv_freq(tr->inv_freq, c->head_dim, c->rope_theta, c->rope_llama3, c->rope_factor,
                     c->rope_low_freq_factor, c->rope_high_freq_factor, c->rope_original_max_pos);
    *out = tr;
    return AL_OK;
}

void al_trainer_free(al_trainer *tr)
{
    if (!tr)
        return;
    if (tr->prof && tr->prof_ex > 0) {
        double suf = tr->prof[ALI_P_SUFFIX], parts = 0;
        fprintf(stderr, "train profile: %lld examples, ms per example\n", (long long)tr->prof_ex);
        for (int i = 0; i < ALI_P_N; i++) {
            fprintf(stderr, "  %-42s %8.2f\n", ali_prof_names[i], 1e3 * tr->prof[i] / (double)tr->prof_ex);
            parts += i != ALI_P_PREFIX && i != ALI_P_SUFFIX ? tr->prof[i] : 0;
        }
        fprintf(stderr, "  %-42s %8.2f\n", "suffix, the rest (norms, RoPE, SwiGLU, copies)",
                1e3 * (suf - parts) / (double)tr->prof_ex);
    }
    ali_aligned_free(tr->arena);
    ali_aligned_free(tr->inv_freq);
    free(tr->choices);
    free(tr->pc_ids);
    ali_aligned_free(tr->kv);
    ali_pstore_free(&tr->ps);
    free(tr);
}

al_err al_trainer_set_choices(al_trainer *tr, const int32_t *ids, int32_t n)
{
    free(tr->choices);
    tr->choices = NULL;
    tr->n_choices = 0;
    if (n <= 0)
        return AL_OK;
    for (int32_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= tr->m->cfg.vocab_size)
            return ali_errf(AL_EINVAL, "train: choice token %d outside the vocabulary", ids[i]);
    tr->choices = malloc(sizeof(int32_t) * (size_t)n);
    if (!tr->choices)
        return ali_errf(AL_ENOMEM, "train: out of memory");
    memcpy(tr->choices, ids, sizeof(int32_t) * (size_t)n);
    tr->n_choices = n;
    return AL_OK;
}

size_t al_trainer_peak_bytes(const al_trainer *tr) { return tr->peak * sizeof(float); }

/* Bump allocator over the arena (64-byte aligned pieces); a first pass with base = NULL counts. */
typedef struct ali_carve {
    float *base;
    size_t used;
} ali_carve;

static float *ali_take(ali_carve *cv, size_t n)
{
    float *p = cv->base ? cv->base + cv->used : NULL;
    cv->used += (n + 15) & ~(size_t)15;
    return p;
}

/* y [T, out] += scale * u B^T, u = x A^T [T, r] (computed with the frozen products) */
static void ali_tr_lora_expand(const al_ops *o, const al_tmod *md, float *y, const float *u, float *tmp, int T)
{
    memcpy(tmp, u, sizeof(float) * (size_t)T * md->r);
    o->scale(tmp, md->scale, (size_t)T * md->r);
    o->matmul(y, tmp, md->B, T, md->r, md->out, 1);
}

/* Given dy [T, out] of y += scale * B A x: gB += scale dy^T u, du = scale dy B, gA += du^T x (the
 * input gradient du A joins the frozen weights' transposed products). */
static void ali_tr_lora_grads(const al_ops *o, const al_tmod *md, const float *x, const float *u, const float *dy,
                              float *du, int T)
{
    o->matmul_dw(md->gB, dy, u, T, md->r, md->out, md->scale, 1);
    o->matmul_dx(du, dy, md->B, T, md->r, md->out, md->scale, 0);
    o->matmul_dw(md->gA, du, x, T, md->in, md->r, 1.0f, 1);
}

typedef struct ali_tr_ctx {
    const al_model_config *c;
    const al_weights *w;
    const al_ops *o;
    const al_tlora *t; /* NULL: base weights (the prefix) */
    float **K, **V;    /* [L] each [n_in, kvd]: every position's K (after RoPE) and V */
    const float *cs;   /* [T, hd] RoPE table of the rows run */
    const int32_t *seg; /* [n_seg] rows of each stacked example (attention sees its own and the prefix's) */
    int n_seg;
    float *proj;       /* [T, H] scratch */
    float *tmp;        /* [T, r] scratch */
    double *prof;      /* [ALI_P_N] or NULL */
} ali_tr_ctx;

/* stmt, its wall time added to prof[k] when profiling */
#define ALI_TR_TIMED(prof, k, ...)                  \
    do {                                            \
        double ali_t0_ = (prof) ? al_now() : 0;     \
        __VA_ARGS__;                                \
        if (prof)                                   \
            (prof)[k] += al_now() - ali_t0_;        \
    } while (0)

/* y [T,N] (+)= x [T,K] · w^T over base weights: the backend's trainer product when it has one */
static void ali_tr_mm(const al_ops *o, float *y, const float *x, const float *w, int T, int K, int N, int acc)
{
    if (o->matmul_fwd)
        o->matmul_fwd(y, x, w, T, K, N, acc);
    else
        o->matmul(y, x, w, T, K, N, acc);
}

/* Products over base weights sharing the input x [T, K]: y[p] [T, N[p]] = x w[p]^T, one pass (the
 * backend's fused op when it has one). */
typedef struct ali_tr_fan {
    int n;
    float *y[8];
    const float *w[8];
    int N[8];
} ali_tr_fan;

static void ali_tr_fan_add(ali_tr_fan *f, float *y, const float *w, int N)
{
    f->y[f->n] = y, f->w[f->n] = w, f->N[f->n++] = N;
}

static void ali_tr_fan_run(const al_ops *o, const ali_tr_fan *f, const float *x, int T, int K)
{
    if (o->matmul_fwd_n) {
        o->matmul_fwd_n(x, T, K, f->n, f->y, f->w, f->N, 0);
        return;
    }
    for (int p = 0; p < f->n; p++)
        ali_tr_mm(o, f->y[p], x, f->w[p], T, K, f->N[p], 0);
}

/* dx [T, K] = sum alpha[p] dy[p] w[p] (+ dx if accumulate) */
typedef struct ali_tr_sum {
    int n;
    const float *dy[8];
    const float *w[8];
    int N[8];
    float alpha[8];
} ali_tr_sum;

static void ali_tr_sum_add(ali_tr_sum *f, const float *dy, const float *w, int N, float alpha)
{
    f->dy[f->n] = dy, f->w[f->n] = w, f->N[f->n] = N, f->alpha[f->n++] = alpha;
}

static void ali_tr_sum_run(const al_ops *o, const ali_tr_sum *f, float *dx, int T, int K)
{
    if (o->matmul_dx_n) {
        o->matmul_dx_n(dx, T, K, f->n, f->dy, f->w, f->N, f->alpha, 0);
        return;
    }
    for (int p = 0; p < f->n; p++)
        o->matmul_dx(dx, f->dy[p], f->w[p], T, K, f->N[p], f->alpha[p], p > 0);
}

static const al_tmod *ali_tr_mod(const ali_tr_ctx *x, int l, al_target t)
{
    if (!x->t)
        return NULL;
    const al_tmod *m = &x->t->mods[l * AL_T_COUNT + t];
    return m->r > 0 ? m : NULL;
}

/* T rows through layer l: x [T, H] in place, activations into a; their K/V land in rows p0 .. p0+T-1
 * of the layer's K/V, the rows' attention sees rows 0 .. p0-1 (the prefix) and its own example's
 * (cx->seg). kv_only: only the rows' K and V (the last layer of a prefix: nothing after them is
 * ever read). Each group of products sharing an input (q / k / v with their adapters' A, o, gate /
 * up, down) is one pass over the weights. */
static void ali_tr_layer_fwd(const ali_tr_ctx *cx, int l, int p0, int T, float *x, const ali_tr_acts *a, int kv_only)
{
    const al_model_config *c = cx->c;
    const al_layer_weights *lw = &cx->w->layers[l];
    const al_ops *o = cx->o;
    int H = c->hidden_size, I = c->intermediate_size, nh = c->n_heads, nkv = c->n_kv_heads, hd = c->head_dim;
    int qd = nh * hd, kvd = nkv * hd;
    float *k = cx->K[l] + (size_t)p0 * kvd, *v = cx->V[l] + (size_t)p0 * kvd;
    const al_tmod *md;
    ali_tr_fan f = {0};
    if (a->xin)
        memcpy(a->xin, x, sizeof(float) * (size_t)T * H);
    o->rmsnorm(a->xn1, x, lw->attn_norm, T, H, c->rms_eps);
    if (!kv_only)
        ali_tr_fan_add(&f, a->q, lw->wq, qd);
    ali_tr_fan_add(&f, k, lw->wk, kvd);
    ali_tr_fan_add(&f, v, lw->wv, kvd);
    for (int t = AL_T_Q; t <= AL_T_V && !kv_only; t++)
        if ((md = ali_tr_mod(cx, l, t)))
            ali_tr_fan_add(&f, a->u[t], md->A, md->r);
    ALI_TR_TIMED(cx->prof, ALI_P_QKV, ali_tr_fan_run(o, &f, a->xn1, T, H));
    if (kv_only) {
        o->rope(k, cx->cs, T, nkv, hd);
        return;
    }
    if ((md = ali_tr_mod(cx, l, AL_T_Q)))
        ALI_TR_TIMED(cx->prof, ALI_P_LORA, ali_tr_lora_expand(o, md, a->q, a->u[AL_T_Q], cx->tmp, T));
    if ((md = ali_tr_mod(cx, l, AL_T_K)))
        ALI_TR_TIMED(cx->prof, ALI_P_LORA, ali_tr_lora_expand(o, md, k, a->u[AL_T_K], cx->tmp, T));
    if ((md = ali_tr_mod(cx, l, AL_T_V)))
        ALI_TR_TIMED(cx->prof, ALI_P_LORA, ali_tr_lora_expand(o, md, v, a->u[AL_T_V], cx->tmp, T));
    o->rope(a->q, cx->cs, T, nh, hd);
    o->rope(k, cx->cs, T, nkv, hd);
    ALI_TR_TIMED(cx->prof, ALI_P_ATT, o->attention_shared(a->att, a->q, cx->K[l], cx->V[l], p0, k, v, cx->seg, cx->n_seg, nh, nkv, hd,
                        c->attention_multiplier));
    f.n = 0;
    ali_tr_fan_add(&f, cx->proj, lw->wo, H);
    if ((md = ali_tr_mod(cx, l, AL_T_O)))
        ali_tr_fan_add(&f, a->u[AL_T_O], md->A, md->r);
    ALI_TR_TIMED(cx->prof, ALI_P_O, ali_tr_fan_run(o, &f, a->att, T, qd));
    if (md)
        ALI_TR_TIMED(cx->prof, ALI_P_LORA, ali_tr_lora_expand(o, md, cx->proj, a->u[AL_T_O], cx->tmp, T));
    o->add_scaled(x, cx->proj, c->residual_multiplier, (size_t)T * H);
    if (a->xmid)
        memcpy(a->xmid, x, sizeof(float) * (size_t)T * H);
    o->rmsnorm(a->xn2, x, lw->ffn_norm, T, H, c->rms_eps);
    f.n = 0;
    ali_tr_fan_add(&f, a->gate, lw->w_gate, I);
    ali_tr_fan_add(&f, a->up, lw->w_up, I);
    for (int t = AL_T_GATE; t <= AL_T_UP; t++)
        if ((md = ali_tr_mod(cx, l, t)))
            ali_tr_fan_add(&f, a->u[t], md->A, md->r);
    ALI_TR_TIMED(cx->prof, ALI_P_GATEUP, ali_tr_fan_run(o, &f, a->xn2, T, H));
    if ((md = ali_tr_mod(cx, l, AL_T_GATE)))
        ALI_TR_TIMED(cx->prof, ALI_P_LORA, ali_tr_lora_expand(o, md, a->gate, a->u[AL_T_GATE], cx->tmp, T));
    if ((md = ali_tr_mod(cx, l, AL_T_UP)))
        ALI_TR_TIMED(cx->prof, ALI_P_LORA, ali_tr_lora_expand(o, md, a->up, a->u[AL_T_UP], cx->tmp, T));
    o->swiglu(a->act, a->gate, a->up, (size_t)T * I);
    f.n = 0;
    ali_tr_fan_add(&f, cx->proj, lw->w_down, H);
    if ((md = ali_tr_mod(cx, l, AL_T_DOWN)))
        ali_tr_fan_add(&f, a->u[AL_T_DOWN], md->A, md->r);
    ALI_TR_TIMED(cx->prof, ALI_P_DOWN, ali_tr_fan_run(o, &f, a->act, T, I));
    if (md)
        ALI_TR_TIMED(cx->prof, ALI_P_LORA, ali_tr_lora_expand(o, md, cx->proj, a->u[AL_T_DOWN], cx->tmp, T));
    o->add_scaled(x, cx->proj, c->residual_multiplier, (size_t)T * H);
}

typedef struct ali_tr_grads {
    float *dproj; /* [T, H] */
    float *datt;  /* [T, qd] */
    float *dq;    /* [T, qd] */
    float *dk;    /* [T, kvd] */
    float *dv;    /* [T, kvd] */
    float *dxn;   /* [T, H] */
    float *dact;  /* [T, I] */
    float *dgate; /* [T, I] */
    float *dup;   /* [T, I] */
    float *du;    /* [3][T, r] the adapters' du of one fused product */
} ali_tr_grads;

/* dx [T, H]: the gradient at layer l's output on entry, at its input on return (layer 0: not
 * computed past the attention's input projections, nothing reads it). Each transposed product
 * sums its frozen weights' and adapters' terms in one pass. */
static void ali_tr_layer_bwd(const ali_tr_ctx *cx, int l, int p0, int T, float *dx, const ali_tr_acts *a,
                             const ali_tr_grads *g)
{
    const al_model_config *c = cx->c;
    const al_layer_weights *lw = &cx->w->layers[l];
    const al_ops *o = cx->o;
    int H = c->hidden_size, I = c->intermediate_size, nh = c->n_heads, nkv = c->n_kv_heads, hd = c->head_dim;
    int qd = nh * hd, kvd = nkv * hd, r = cx->t->rank;
    float rm = c->residual_multiplier;
    const al_tmod *md;
    ali_tr_sum f = {0};
    /* MLP: x_out = xmid + rm * down(act) */
    ali_tr_sum_add(&f, dx, lw->w_down, H, rm);
    if ((md = ali_tr_mod(cx, l, AL_T_DOWN))) {
        memcpy(g->dproj, dx, sizeof(float) * (size_t)T * H);
        o->scale(g->dproj, rm, (size_t)T * H);
        ALI_TR_TIMED(cx->prof, ALI_P_LORA_T, ali_tr_lora_grads(o, md, a->act, a->u[AL_T_DOWN], g->dproj, g->du, T));
        ali_tr_sum_add(&f, g->du, md->A, md->r, 1.0f);
    }
    ALI_TR_TIMED(cx->prof, ALI_P_DOWN_T, ali_tr_sum_run(o, &f, g->dact, T, I));
    o->swiglu_bwd(g->dgate, g->dup, g->dact, a->gate, a->up, (size_t)T * I);
    f.n = 0;
    ali_tr_sum_add(&f, g->dgate, lw->w_gate, I, 1.0f);
    ali_tr_sum_add(&f, g->dup, lw->w_up, I, 1.0f);
    for (int t = AL_T_GATE, i = 0; t <= AL_T_UP; t++)
        if ((md = ali_tr_mod(cx, l, t))) {
            float *du = g->du + (size_t)(i++) * T * r;
            ALI_TR_TIMED(cx->prof, ALI_P_LORA_T, ali_tr_lora_grads(o, md, a->xn2, a->u[t], t == AL_T_GATE ? g->dgate : g->dup, du, T));
            ali_tr_sum_add(&f, du, md->A, md->r, 1.0f);
        }
    ALI_TR_TIMED(cx->prof, ALI_P_GATEUP_T, ali_tr_sum_run(o, &f, g->dxn, T, H));
    o->rmsnorm_bwd(dx, g->dxn, a->xmid, lw->ffn_norm, T, H, c->rms_eps);
    /* attention: xmid = xin + rm * o(att) */
    f.n = 0;
    ali_tr_sum_add(&f, dx, lw->wo, H, rm);
    if ((md = ali_tr_mod(cx, l, AL_T_O))) {
        memcpy(g->dproj, dx, sizeof(float) * (size_t)T * H);
        o->scale(g->dproj, rm, (size_t)T * H);
        ALI_TR_TIMED(cx->prof, ALI_P_LORA_T, ali_tr_lora_grads(o, md, a->att, a->u[AL_T_O], g->dproj, g->du, T));
        ali_tr_sum_add(&f, g->du, md->A, md->r, 1.0f);
    }
    ALI_TR_TIMED(cx->prof, ALI_P_O_T, ali_tr_sum_run(o, &f, g->datt, T, qd));
    const float *k = cx->K[l] + (size_t)p0 * kvd, *v = cx->V[l] + (size_t)p0 * kvd;
    ALI_TR_TIMED(cx->prof, ALI_P_ATT_T, o->attention_shared_bwd(g->dq, g->dk, g->dv, g->datt, a->q, cx->K[l], cx->V[l], p0, k, v, cx->seg, cx->n_seg, nh,
                            nkv, hd, c->attention_multiplier));
    o->rope_bwd(g->dq, cx->cs, T, nh, hd);
    o->rope_bwd(g->dk, cx->cs, T, nkv, hd);
    f.n = 0;
    ali_tr_sum_add(&f, g->dq, lw->wq, qd, 1.0f);
    ali_tr_sum_add(&f, g->dk, lw->wk, kvd, 1.0f);
    ali_tr_sum_add(&f, g->dv, lw->wv, kvd, 1.0f);
    for (int t = AL_T_Q, i = 0; t <= AL_T_V; t++)
        if ((md = ali_tr_mod(cx, l, t))) {
            float *du = g->du + (size_t)(i++) * T * r;
            ALI_TR_TIMED(cx->prof, ALI_P_LORA_T, ali_tr_lora_grads(o, md, a->xn1, a->u[t], t == AL_T_Q ? g->dq : t == AL_T_K ? g->dk : g->dv, du, T));
            ali_tr_sum_add(&f, du, md->A, md->r, 1.0f);
        }
    if (l > 0) { /* layer 0: the gradient at the embeddings is not needed */
        ALI_TR_TIMED(cx->prof, ALI_P_QKV_T, ali_tr_sum_run(o, &f, g->dxn, T, H));
        o->rmsnorm_bwd(dx, g->dxn, a->xin, lw->attn_norm, T, H, c->rms_eps);
    }
}

/* Carves (or, with cv->base NULL, counts) every buffer of one group of stacked examples: the prefix
 * of s positions computed from row hit on, Ts suffix rows in all, nt loss rows in all. */
typedef struct ali_tr_bufs {
    float **K, **V;      /* [L] pointers */
    float *cs;           /* [max(s - hit, Ts), hd] RoPE table of the rows run */
    float *px;           /* [s - hit, H] prefix residual */
    ali_tr_acts pre;     /* prefix activations (overwritten per layer) */
    ali_tr_acts *suf;    /* [L] suffix activations */
    float *x;            /* [Ts, H] */
    float *proj, *tmp;   /* [max(s - hit, Ts), H], [Ts, r] */
    float *hout;         /* [nt, H] */
    float *logits;       /* [nt, V] */
    float *nll;          /* [nt] */
    int32_t *tgt;        /* [nt] */
    int32_t *pos;        /* [max(s - hit, Ts)] positions of the rows run */
    float *dx, *dhout;   /* [Ts, H], [nt, H] */
    ali_tr_grads g;
} ali_tr_bufs;

static void ali_tr_carve(ali_carve *cv, const al_model_config *c, const al_tlora *t, int np, int Ts, int nt,
                         ali_tr_bufs *b)
{
    size_t H = (size_t)c->hidden_size, I = (size_t)c->intermediate_size, qd = (size_t)c->n_heads * c->head_dim;
    size_t kvd = (size_t)c->n_kv_heads * c->head_dim, V = (size_t)c->vocab_size, r = (size_t)t->rank;
    size_t S = (size_t)np, R = AL_MAX(S, (size_t)Ts), T = (size_t)Ts;
    b->cs = ali_take(cv, R * c->head_dim);
    b->pos = (int32_t *)ali_take(cv, R);
    b->px = ali_take(cv, S * H);
    b->pre = (ali_tr_acts){.xn1 = ali_take(cv, S * H), .q = ali_take(cv, S * qd), .att = ali_take(cv, S * qd),
                           .xn2 = ali_take(cv, S * H), .gate = ali_take(cv, S * I), .up = ali_take(cv, S * I),
                           .act = ali_take(cv, S * I)};
    for (int l = 0; l < c->n_layers; l++) {
        ali_tr_acts a = {.xin = ali_take(cv, T * H), .xn1 = ali_take(cv, T * H), .q = ali_take(cv, T * qd),
                         .att = ali_take(cv, T * qd), .xmid = ali_take(cv, T * H), .xn2 = ali_take(cv, T * H),
                         .gate = ali_take(cv, T * I), .up = ali_take(cv, T * I), .act = ali_take(cv, T * I)};
        for (int k = 0; k < AL_T_COUNT; k++)
            if (t->mods[l * AL_T_COUNT + k].r > 0)
                a.u[k] = ali_take(cv, T * r);
        if (cv->base)
            b->suf[l] = a;
    }
    b->x = ali_take(cv, T * H);
    b->proj = ali_take(cv, R * H);
    b->tmp = ali_take(cv, R * r);
    b->hout = ali_take(cv, (size_t)nt * H);
    b->logits = ali_take(cv, (size_t)nt * V);
    b->nll = ali_take(cv, (size_t)nt);
    b->tgt = (int32_t *)ali_take(cv, (size_t)nt);
    b->dx = ali_take(cv, T * H);
    b->dhout = ali_take(cv, (size_t)nt * H);
    b->g = (ali_tr_grads){.dproj = ali_take(cv, T * H), .datt = ali_take(cv, T * qd), .dq = ali_take(cv, T * qd),
                          .dk = ali_take(cv, T * kvd), .dv = ali_take(cv, T * kvd), .dxn = ali_take(cv, T * H),
                          .dact = ali_take(cv, T * I), .dgate = ali_take(cv, T * I), .dup = ali_take(cv, T * I),
                          .du = ali_take(cv, 3 * T * r)};
}

/* Room for the K/V of n positions in tr->kv, keeping the cached prefix rows. */
static al_err ali_tr_kv_reserve(al_trainer *tr, int32_t n, size_t kvd)
{
    if (n <= tr->kv_cap)
        return AL_OK;
    int L = tr->m->cfg.n_layers;
    int32_t cap = AL_MAX(n, tr->kv_cap + tr->kv_cap / 2);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)cap);
    float *kv = ali_aligned_alloc(sizeof(float) * (size_t)L * 2 * (size_t)cap * kvd);
    if (!ids || !kv) {
        free(ids);
        ali_aligned_free(kv);
        return ali_errf(AL_ENOMEM, "train: cannot allocate %.1f MiB of keys and values for %d tokens",
                        4.0 * L * 2 * (double)cap * kvd / 1048576.0, n);
    }
    for (int i = 0; i < 2 * L && tr->pc_n > 0; i++)
        memcpy(kv + (size_t)i * cap * kvd, tr->kv + (size_t)i * tr->kv_cap * kvd, sizeof(float) * (size_t)tr->pc_n * kvd);
    if (tr->pc_n > 0)
        memcpy(ids, tr->pc_ids, sizeof(int32_t) * (size_t)tr->pc_n);
    free(tr->pc_ids);
    ali_aligned_free(tr->kv);
    tr->pc_ids = ids;
    tr->kv = kv;
    tr->kv_cap = cap;
    return AL_OK;
}

int64_t al_trainer_cached_positions(const al_trainer *tr) { return tr->pc_hits; }

al_err al_trainer_set_prefix_store(al_trainer *tr, size_t bytes)
{
    const al_model_config *c = &tr->m->cfg;
    if (bytes < tr->ps.bytes)
        ali_pstore_free(&tr->ps);
    tr->ps.planes = 2 * c->n_layers;
    tr->ps.kvd = (size_t)c->n_kv_heads * c->head_dim;
    tr->ps.limit = bytes;
    return AL_OK;
}

void al_trainer_prefix_store_stats(const al_trainer *tr, al_train_store_stats *st)
{
    *st = (al_train_store_stats){.entries = tr->ps.n_e, .bytes = tr->ps.bytes, .limit = tr->ps.limit,
                                 .hit_positions = tr->ps.hits, .refused = tr->ps.refused};
}

size_t al_trainer_prefix_bytes(const al_trainer *tr, int32_t n)
{
    const al_model_config *c = &tr->m->cfg;
    ali_pstore shape = {.planes = 2 * c->n_layers, .kvd = (size_t)c->n_kv_heads * c->head_dim};
    return ali_pstore_bytes(&shape, n);
}

/* Checks one example and finds its activation start. */
static al_err ali_tr_check(const al_trainer *tr, const al_tlora *t, const al_train_ex *e, int32_t *s_out)
{
    const al_model_config *c = &tr->m->cfg;
    int32_t n = e->n, n_prompt = e->n_prompt;
    if (n_prompt < 1 || n_prompt >= n)
        return ali_errf(AL_EINVAL, "train: example needs a prompt and at least one target token (prompt %d of %d)",
                        n_prompt, n);
    if (n > c->max_position_embeddings)
        return ali_errf(AL_ERANGE, "train: example of %d tokens is longer than the model's context (%d)", n,
                        c->max_position_embeddings);
    for (int32_t i = 0; i < n; i++)
        if (e->ids[i] < 0 || e->ids[i] >= c->vocab_size)
            return ali_errf(AL_EINVAL, "train: token %d at position %d outside the vocabulary (%d)", e->ids[i], i,
                            c->vocab_size);
    int32_t s = 0;
    if (t->inv) {
        s = al_alora_find_start(e->ids, n, t->inv, t->n_inv);
        if (s < 0)
            return ali_errf(AL_EINVAL, "train: the example does not contain the invocation sequence");
        if (s > n_prompt - 1)
            return ali_errf(AL_EINVAL,
                            "train: the invocation's last occurrence starts at %d, inside the targets (prompt %d "
                            "tokens): the adapter would not see the target positions",
                            s, n_prompt);
    }
    *s_out = s;
    return AL_OK;
}

/* One group: the examples ex[idx[0 .. m-1]], all with activation start s and the same tokens before
 * it. The prefix runs once (or comes from the cache); their suffix rows are stacked, every product
 * over the frozen weights runs once for all of them, attention per example over the shared prefix. */
static al_err ali_tr_group(al_trainer *tr, al_tlora *t, const al_train_ex *ex, const int *idx, int m, int32_t s,
                           float gscale, int backward, al_train_result *res)
{
    const al_model_config *c = &tr->m->cfg;
    const al_weights *w = &tr->m->w;
    const al_ops *o = tr->ops;
    int H = c->hidden_size, V = c->vocab_size, hd = c->head_dim;
    const int32_t *ids0 = ex[idx[0]].ids;
    int32_t *seg = malloc(sizeof(int32_t) * (size_t)m);
    if (!seg)
        return ali_errf(AL_ENOMEM, "train: out of memory");
    int Ts = 0, nt = 0;
    for (int k = 0; k < m; k++) {
        seg[k] = ex[idx[k]].n - 1 - s;
        Ts += seg[k];
        nt += ex[idx[k]].n - ex[idx[k]].n_prompt;
    }
    /* the prefix: base weights, nothing kept but K/V; positions whose tokens match the cached
     * prefix's keep its K/V (causal: they depend on those tokens only), the rest are computed in
     * place after them */
    int32_t hit = 0;
    while (hit < s && hit < tr->pc_n && tr->pc_ids[hit] == ids0[hit])
        hit++;
    ali_tr_bufs b;
    float *Kp[512], *Vp[512];
    ali_tr_acts sufp[512];
    memset(&b, 0, sizeof b);
    b.K = Kp, b.V = Vp, b.suf = sufp;
    size_t kvd = (size_t)c->n_kv_heads * hd;
    al_err e = ali_tr_kv_reserve(tr, s + Ts, kvd);
    if (e != AL_OK) {
        free(seg);
        return e;
    }
    for (int l = 0; l < c->n_layers; l++) {
        b.K[l] = tr->kv + (size_t)(2 * l) * tr->kv_cap * kvd;
        b.V[l] = tr->kv + (size_t)(2 * l + 1) * tr->kv_cap * kvd;
    }
    /* a longer run of the prefix kept in the store (an earlier step's or epoch's): its rows, the
     * same values the forward would compute */
    if (hit < s && tr->ps.n_e > 0) {
        int32_t len;
        const ali_pstore_entry *pe = ali_pstore_find(&tr->ps, ids0, s, &len);
        if (pe && len > hit) {
            ali_pstore_get(&tr->ps, pe, len, tr->kv, tr->kv_cap, tr->pc_ids);
            tr->ps.hits += len;
            hit = len;
        }
    }
    int np = s - hit;
    ali_carve cv = {0};
    ali_tr_carve(&cv, c, t, np, Ts, nt, &b);
    if (cv.used > tr->cap) {
        ali_aligned_free(tr->arena);
        tr->arena = ali_aligned_alloc(cv.used * sizeof(float));
        tr->cap = tr->arena ? cv.used : 0;
        if (!tr->arena) {
            free(seg);
            return ali_errf(AL_ENOMEM, "train: cannot allocate %.1f MiB of activations for %d rows",
                            cv.used * 4.0 / 1048576.0, s + Ts);
        }
    }
    tr->peak = AL_MAX(tr->peak, cv.used + (size_t)c->n_layers * 2 * (size_t)tr->kv_cap * kvd); /* + K/V */
    cv = (ali_carve){.base = tr->arena};
    ali_tr_carve(&cv, c, t, np, Ts, nt, &b);

    ali_tr_ctx cx = {.c = c, .w = w, .o = o, .t = NULL, .K = b.K, .V = b.V, .cs = b.cs, .proj = b.proj,
                     .tmp = b.tmp, .seg = &np, .n_seg = 1};
    tr->pc_hits += hit + (int64_t)s * (m - 1); /* the group's other examples: all of it */
    tr->pc_n = hit; /* the rows after it are about to be overwritten */
    double t_pre = al_now();
    if (np > 0) {
        for (int i = 0; i < np; i++)
            b.pos[i] = hit + i;
        al_rope_table(b.cs, b.pos, np, hd, tr->inv_freq);
        o->embedding(b.px, w->embed, ids0 + hit, np, H, c->embedding_multiplier);
        for (int l = 0; l < c->n_layers; l++)
            ali_tr_layer_fwd(&cx, l, hit, np, b.px, &b.pre, l == c->n_layers - 1);
        memcpy(tr->pc_ids + hit, ids0 + hit, sizeof(int32_t) * (size_t)np);
        /* no stored prefix covers it (np > 0): keep it for the next epoch, within the limit */
        if (tr->ps.limit > 0 && (e = ali_pstore_put(&tr->ps, ids0, s, tr->kv, tr->kv_cap)) != AL_OK) {
            free(seg);
            return e;
        }
    }
    tr->pc_n = s;
    double t_suf = al_now();
    if (tr->prof) {
        tr->prof[ALI_P_PREFIX] += t_suf - t_pre;
        tr->prof_ex += m;
    }
    /* the suffixes, stacked: the adapter on, activations kept */
    cx.t = t;
    cx.prof = tr->prof;
    cx.seg = seg;
    cx.n_seg = m;
    for (int k = 0, r = 0; k < m; k++) {
        for (int i = 0; i < seg[k]; i++)
            b.pos[r + i] = s + i;
        o->embedding(b.x + (size_t)r * H, w->embed, ex[idx[k]].ids + s, seg[k], H, c->embedding_multiplier);
        r += seg[k];
    }
    al_rope_table(b.cs, b.pos, Ts, hd, tr->inv_freq);
    for (int l = 0; l < c->n_layers; l++)
        ali_tr_layer_fwd(&cx, l, s, Ts, b.x, &b.suf[l], 0);
    double t_head = al_now();
    /* loss rows: the last n - n_prompt rows of each example (positions n_prompt-1 .. n-2 predict
     * ids[n_prompt ..]) */
    for (int k = 0, r = 0, j = 0; k < m; k++) {
        const al_train_ex *x = &ex[idx[k]];
        int ntk = x->n - x->n_prompt;
        o->rmsnorm(b.hout + (size_t)j * H, b.x + (size_t)(r + seg[k] - ntk) * H, w->norm, ntk, H, c->rms_eps);
        memcpy(b.tgt + j, x->ids + x->n_prompt, sizeof(int32_t) * (size_t)ntk);
        r += seg[k];
        j += ntk;
    }
    ali_tr_mm(o, b.logits, b.hout, w->lm_head, nt, H, V, 0);
    if (c->logits_scaling != 1.0f)
        o->scale(b.logits, 1.0f / c->logits_scaling, (size_t)nt * V);
    /* the logits are in backend memory: host on the f32 CPU backend */
    for (int k = 0, j = 0; k < m; k++) {
        const al_train_ex *x = &ex[idx[k]];
        int ntk = x->n - x->n_prompt;
        int32_t n_correct = 0, choice = -1;
        for (int i = j; i < j + ntk; i++) {
            const float *lr = b.logits + (size_t)i * V;
            int32_t best = 0;
            for (int q = 1; q < V; q++)
                if (lr[q] > lr[best])
                    best = q;
            n_correct += best == b.tgt[i];
        }
        const float *l0 = b.logits + (size_t)j * V;
        for (int32_t q = 0; q < tr->n_choices; q++)
            if (choice < 0 || l0[tr->choices[q]] > l0[choice])
                choice = tr->choices[q];
        res[idx[k]] = (al_train_result){.n_targets = ntk, .act_start = s, .n_grad_rows = backward ? seg[k] : 0,
                                          .n_correct = n_correct, .choice = choice};
        j += ntk;
    }
    o->cross_entropy(b.logits, b.nll, b.logits, b.tgt, nt, V, gscale / c->logits_scaling);
    for (int k = 0, j = 0; k < m; k++) {
        al_train_result *rk = &res[idx[k]];
        for (int i = 0; i < rk->n_targets; i++)
            rk->nll += b.nll[j + i];
        j += rk->n_targets;
    }
    if (tr->prof)
        tr->prof[ALI_P_HEAD] += al_now() - t_head;
    if (backward) {
        /* the head, then the layers in reverse over the suffix rows */
        t_head = al_now();
        o->matmul_dx(b.dhout, b.logits, w->lm_head, nt, H, V, 1.0f, 0);
        memset(b.dx, 0, sizeof(float) * (size_t)Ts * H);
        for (int k = 0, r = 0, j = 0; k < m; k++) {
            int ntk = res[idx[k]].n_targets;
            size_t r0 = (size_t)(r + seg[k] - ntk);
            o->rmsnorm_bwd(b.dx + r0 * H, b.dhout + (size_t)j * H, b.x + r0 * H, w->norm, ntk, H, c->rms_eps);
            r += seg[k];
            j += ntk;
        }
        if (tr->prof)
            tr->prof[ALI_P_HEAD] += al_now() - t_head;
        for (int l = c->n_layers - 1; l >= 0; l--)
            ali_tr_layer_bwd(&cx, l, s, Ts, b.dx, &b.suf[l], &b.g);
    }
    if (tr->prof)
        tr->prof[ALI_P_SUFFIX] += al_now() - t_suf;
    free(seg);
    return AL_OK;
}

/* Rows stacked in one group at most (activations ~0.5 MB per row on the 85m shapes): beyond, the
 * examples sharing a prefix form several groups (the later ones take it from the cache). */
#define ALI_TR_GROUP_ROWS 256

al_err al_trainer_batch(al_trainer *tr, al_tlora *t, const al_train_ex *ex, int32_t n_ex, float gscale, int backward,
                        al_train_result *res)
{
    const al_model_config *c = &tr->m->cfg;
    if (t->n_layers != c->n_layers)
        return ali_errf(AL_EINVAL, "train: adapter has %d layers, model %d", t->n_layers, c->n_layers);
    if (c->n_layers > 512)
        return ali_errf(AL_EUNSUPPORTED, "train: more than 512 layers");
    if (n_ex <= 0)
        return AL_OK;
    int32_t *st = malloc(sizeof(int32_t) * (size_t)n_ex);
    int *grp = malloc(sizeof(int) * (size_t)n_ex), *idx = malloc(sizeof(int) * (size_t)n_ex);
    if (!st || !grp || !idx) {
        free(st), free(grp), free(idx);
        return ali_errf(AL_ENOMEM, "train: out of memory");
    }
    al_err e = AL_OK;
    for (int32_t i = 0; i < n_ex && e == AL_OK; i++)
        if ((e = ali_tr_check(tr, t, &ex[i], &st[i])) != AL_OK && n_ex > 1) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", al_errmsg());
            e = ali_errf(e, "example %d of %d: %s", i + 1, n_ex, msg);
        }
    for (int32_t i = 0; i < n_ex && e == AL_OK; i++)
        grp[i] = -1;
    /* groups in the order of their first example: the examples with the same activation start and
     * the same tokens before it, up to ALI_TR_GROUP_ROWS rows (an example alone may have more) */
    for (int32_t i = 0; i < n_ex && e == AL_OK; i++) {
        if (grp[i] >= 0)
            continue;
        int m = 0, rows = 0;
        for (int32_t j = i; j < n_ex; j++) {
            int rj = ex[j].n - 1 - st[j];
            if (grp[j] >= 0 || st[j] != st[i] || (m > 0 && rows + rj > ALI_TR_GROUP_ROWS) ||
                (j > i && memcmp(ex[j].ids, ex[i].ids, sizeof(int32_t) * (size_t)st[i]) != 0))
                continue;
            grp[j] = i;
            idx[m++] = j;
            rows += rj;
        }
        for (int k = 0; k < m; k++)
            res[idx[k]] = (al_train_result){0};
        e = ali_tr_group(tr, t, ex, idx, m, st[i], gscale, backward, res);
    }
    free(st), free(grp), free(idx);
    return e;
}

al_err al_trainer_example(al_trainer *tr, al_tlora *t, const int32_t *ids, int32_t n, int32_t n_prompt, float gscale,
                          int backward, al_train_result *res)
{
    al_train_ex x = {.ids = ids, .n = n, .n_prompt = n_prompt};
    al_train_result r;
    al_err e = al_trainer_batch(tr, t, &x, 1, gscale, backward, &r);
    if (e == AL_OK && res)
        *res = r;
    return e;
}
