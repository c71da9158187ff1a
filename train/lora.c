/* lora.c: trainable LoRA / aLoRA parameters: PEFT initialisation, PEFT adapter output, optimizer
 * state, SGD / AdamW steps and the learning-rate schedule. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/model/safetensors.h"
#include "common/util.h"
#include "train/train.h"

static al_err ali_tl_alloc(const al_model_config *c, const int targets[AL_T_COUNT], int32_t rank, float alpha,
                           int rslora, const int32_t *inv, int32_t n_inv, al_tlora **out)
{
    if (rank <= 0 || rank > 4096)
        return ali_errf(AL_EINVAL, "train: rank %d out of range (1..4096)", rank);
    if (!(alpha > 0) || !isfinite(alpha))
        return ali_errf(AL_EINVAL, "train: alpha must be a positive number");
    int any = 0;
    for (int t = 0; t < AL_T_COUNT; t++)
        any |= targets[t];
    if (!any)
        return ali_errf(AL_EINVAL, "train: no target module");
    if (inv && n_inv <= 0)
        return ali_errf(AL_EINVAL, "train: empty invocation sequence");
    for (int32_t i = 0; inv && i < n_inv; i++)
        if (inv[i] < 0 || inv[i] >= c->vocab_size)
            return ali_errf(AL_EINVAL, "train: invocation token %d outside the vocabulary (%d)", inv[i],
                            c->vocab_size);
    al_tlora *t = calloc(1, sizeof *t);
    if (!t)
        return ali_errf(AL_ENOMEM, "train: out of memory");
    t->n_layers = c->n_layers;
    t->rank = rank;
    t->alpha = alpha;
    t->rslora = rslora;
    memcpy(t->targets, targets, sizeof t->targets);
    t->mods = calloc((size_t)c->n_layers * AL_T_COUNT, sizeof *t->mods);
    if (inv) {
        t->inv = malloc(sizeof(int32_t) * (size_t)n_inv);
        if (t->inv)
            memcpy(t->inv, inv, sizeof(int32_t) * (size_t)n_inv);
        t->n_inv = n_inv;
    }
    size_t n = 0;
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < AL_T_COUNT; k++)
            if (targets[k]) {
                int32_t in, o;
                al_target_dims(c, (al_target)k, &in, &o);
                n += (size_t)rank * (in + o);
            }
    t->n = n;
    t->w = ali_aligned_alloc(n * sizeof(float));
    t->g = ali_aligned_alloc(n * sizeof(float));
    t->m = ali_aligned_alloc(n * sizeof(float));
    t->v = ali_aligned_alloc(n * sizeof(float));
    if (!t->mods || (inv && !t->inv) || !t->w || !t->g || !t->m || !t->v) {
        al_tlora_free(t);
        return ali_errf(AL_ENOMEM, "train: out of memory for %zu parameters", n);
    }
    memset(t->w, 0, n * sizeof(float));
    memset(t->g, 0, n * sizeof(float));
    memset(t->m, 0, n * sizeof(float));
    memset(t->v, 0, n * sizeof(float));
    size_t off = 0;
    float scale = rslora ? alpha / sqrtf((float)rank) : alpha / (float)rank;
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < AL_T_COUNT; k++) {
            if (!targets[k])
                continue;
            al_tmod *md = &t->mods[l * AL_T_COUNT + k];
            al_target_dims(c, (al_target)k, &md->in, &md->out);
            md->r = rank;
            md->scale = scale;
            md->A = t->w + off;
            md->gA = t->g + off;
            off += (size_t)rank * md->in;
            md->B = t->w + off;
            md->gB = t->g + off;
            off += (size_t)rank * md->out;
        }
    *out = t;
    return AL_OK;
}

al_err al_tlora_init(const al_model_config *c, const al_tlora_opts *o, uint64_t seed, al_tlora **out)
{
    al_tlora *t;
    AL_TRY(ali_tl_alloc(c, o->targets, o->rank, o->alpha, o->rslora, o->inv, o->n_inv, &t));
    al_rng r;
    al_rng_seed(&r, seed);
    for (int32_t i = 0; i < t->n_layers * AL_T_COUNT; i++) {
        al_tmod *md = &t->mods[i];
        if (md->r <= 0)
            continue;
        /* nn.init.kaiming_uniform_(A, a=sqrt(5)): gain sqrt(2 / (1 + 5)), bound gain * sqrt(3 / fan_in) */
        double bound = 1.0 / sqrt((double)md->in);
        for (size_t j = 0; j < (size_t)md->r * md->in; j++)
            md->A[j] = (float)((2.0 * al_rng_uniform(&r) - 1.0) * bound);
    }
    *out = t;
    return AL_OK;
}

al_err al_tlora_from_adapter(const al_model_config *c, const al_adapter *a, al_tlora **out)
{
    int targets[AL_T_COUNT] = {0};
    int32_t rank = 0;
    float scale = 0;
    for (int32_t l = 0; l < a->n_layers; l++)
        for (int k = 0; k < AL_T_COUNT; k++) {
            const al_lora_mod *m = al_adapter_mod(a, l, (al_target)k);
            if (m->r <= 0)
                continue;
            if (m->bias)
                return ali_errf(AL_EUNSUPPORTED, "train: adapter %s has lora_B.bias: not trainable here", a->name);
            if ((rank && m->r != rank) || (scale != 0 && m->scale != scale))
                return ali_errf(AL_EUNSUPPORTED, "train: adapter %s mixes ranks or scales (rank_pattern / alpha_pattern)",
                                a->name);
            rank = m->r;
            scale = m->scale;
            targets[k] = 1;
        }
    if (rank == 0)
        return ali_errf(AL_EINVAL, "train: adapter %s adapts nothing", a->name);
    for (int32_t l = 0; l < a->n_layers; l++)
        for (int k = 0; k < AL_T_COUNT; k++)
            if (targets[k] && al_adapter_mod(a, l, (al_target)k)->r <= 0)
                return ali_errf(AL_EUNSUPPORTED, "train: adapter %s does not adapt %s in every layer", a->name,
                                al_target_module((al_target)k));
    al_tlora *t;
    AL_TRY(ali_tl_alloc(c, targets, rank, scale * rank, 0, a->invocation, a->n_invocation, &t));
    for (int32_t i = 0; i < t->n_layers * AL_T_COUNT; i++) {
        al_tmod *md = &t->mods[i];
        if (md->r <= 0)
            continue;
        const al_lora_mod *m = &a->mods[i];
        md->scale = m->scale; /* exact, whatever rsLoRA said */
        memcpy(md->A, m->A, sizeof(float) * (size_t)md->r * md->in);
        memcpy(md->B, m->B, sizeof(float) * (size_t)md->r * md->out);
    }
    *out = t;
    return AL_OK;
}

void al_tlora_free(al_tlora *t)
{
    if (!t)
        return;
    free(t->mods);
    free(t->inv);
    ali_aligned_free(t->w);
    ali_aligned_free(t->g);
    ali_aligned_free(t->m);
    ali_aligned_free(t->v);
    free(t);
}

static al_err ali_tl_mkdir(const char *dir)
{
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return ali_errf(AL_EIO, "%s: cannot create directory: %s", dir, strerror(errno));
    return AL_OK;
}

static al_err ali_tl_write_config(const al_tlora *t, const al_model_config *c, const char *path)
{
    return al_adapter_write_config(path, c->name, t->rank, t->alpha, t->targets, t->rslora, t->inv,
                                   t->inv ? t->n_inv : 0);
}

al_err al_tlora_save(const al_tlora *t, const al_model_config *c, const char *dir)
{
    char path[4096];
    AL_TRY(ali_tl_mkdir(dir));
    AL_TRY(ali_path_join(path, sizeof path, dir, "adapter_config.json"));
    AL_TRY(ali_tl_write_config(t, c, path));
    int n = 0;
    for (int32_t i = 0; i < t->n_layers * AL_T_COUNT; i++)
        n += t->mods[i].r > 0 ? 2 : 0;
    al_st_wtensor *ts = calloc((size_t)n, sizeof *ts);
    char *names = calloc((size_t)n, 160);
    if (!ts || !names) {
        free(ts);
        free(names);
        return ali_errf(AL_ENOMEM, "train: out of memory");
    }
    int k = 0;
    for (int32_t l = 0; l < t->n_layers; l++)
        for (int tg = 0; tg < AL_T_COUNT; tg++) {
            const al_tmod *md = &t->mods[l * AL_T_COUNT + tg];
            if (md->r <= 0)
                continue;
            for (int ab = 0; ab < 2; ab++, k++) {
                char *nm = names + (size_t)k * 160;
                snprintf(nm, 160, "base_model.model.model.layers.%d.%s.%s.lora_%c.weight", l,
                         tg <= AL_T_O ? "self_attn" : "mlp", al_target_module((al_target)tg), ab ? 'B' : 'A');
                ts[k] = (al_st_wtensor){.name = nm, .dtype = AL_DT_F32, .n_dims = 2,
                                        .shape = {ab ? md->out : md->r, ab ? md->r : md->in},
                                        .data = ab ? md->B : md->A};
            }
        }
    al_err e = ali_path_join(path, sizeof path, dir, "adapter_model.safetensors");
    if (e == AL_OK)
        e = al_st_write(path, ts, n);
    free(ts);
    free(names);
    return e;
}

al_err al_tlora_save_state(const al_tlora *t, const char *path)
{
    float step[2] = {(float)(t->step & 0xffffff), (float)(t->step >> 24)}; /* exact in f32 */
    al_st_wtensor ts[3] = {
        {.name = "adam_m", .dtype = AL_DT_F32, .n_dims = 1, .shape = {(int64_t)t->n}, .data = t->m},
        {.name = "adam_v", .dtype = AL_DT_F32, .n_dims = 1, .shape = {(int64_t)t->n}, .data = t->v},
        {.name = "step", .dtype = AL_DT_F32, .n_dims = 1, .shape = {2}, .data = step},
    };
    return al_st_write(path, ts, 3);
}

al_err al_tlora_load_state(al_tlora *t, const char *path)
{
    al_st *st;
    AL_TRY(al_st_open(path, &st));
    const al_st_tensor *m = al_st_find(st, "adam_m"), *v = al_st_find(st, "adam_v"), *s = al_st_find(st, "step");
    int64_t want = (int64_t)t->n, two = 2;
    float step[2];
    al_err e = AL_OK;
    if (!m || !v || !s)
        e = ali_errf(AL_EFORMAT, "%s: not an optimizer state (adam_m, adam_v, step)", path);
    if (e == AL_OK)
        e = al_st_read_f32(m, t->m, 1, &want);
    if (e == AL_OK)
        e = al_st_read_f32(v, t->v, 1, &want);
    if (e == AL_OK)
        e = al_st_read_f32(s, step, 1, &two);
    if (e == AL_OK)
        t->step = (int64_t)step[0] + ((int64_t)step[1] << 24);
    al_st_close(st);
    return e;
}

void al_tlora_zero_grad(al_tlora *t) { memset(t->g, 0, t->n * sizeof(float)); }

double al_tlora_grad_norm(const al_tlora *t)
{
    double s = 0;
    for (size_t i = 0; i < t->n; i++)
        s += (double)t->g[i] * t->g[i];
    return sqrt(s);
}

void al_tlora_scale_grad(al_tlora *t, float f)
{
    for (size_t i = 0; i < t->n; i++)
        t->g[i] *= f;
}

void al_tlora_sgd(al_tlora *t, float lr)
{
    for (size_t i = 0; i < t->n; i++)
        t->w[i] -= lr * t->g[i];
    t->step++;
}

void al_tlora_adamw(al_tlora *t, float lr, float beta1, float beta2, float eps, float weight_decay)
{
    t->step++;
    double bc1 = 1.0 - pow(beta1, (double)t->step), bc2 = 1.0 - pow(beta2, (double)t->step);
    float step_size = (float)(lr / bc1), bc2s = (float)sqrt(bc2);
    for (size_t i = 0; i < t->n; i++) {
        float g = t->g[i];
        t->w[i] *= 1.0f - lr * weight_decay;
        t->m[i] = beta1 * t->m[i] + (1.0f - beta1) * g;
        t->v[i] = beta2 * t->v[i] + (1.0f - beta2) * g * g;
        t->w[i] -= step_size * t->m[i] / (sqrtf(t->v[i]) / bc2s + eps);
    }
}

double al_train_lr_factor(int64_t step, int64_t warmup, int64_t total, int cosine)
{
    if (step < warmup)
        return (double)step / (double)(warmup > 1 ? warmup : 1);
    double p = (double)(step - warmup) / (double)(total - warmup > 1 ? total - warmup : 1);
    if (p > 1)
        p = 1;
    return cosine ? 0.5 * (1.0 + cos(M_PI * p)) : 1.0 - p;
}
