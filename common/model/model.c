/* model.c: HF config.json parsing (Llama, Granite), the canonical f32 weight layout, loading. */
#include "common/model/model.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"

#define ALI_MAX_DIM (1 << 20)
#define ALI_MAX_VOCAB (1 << 22)
#define ALI_MAX_LAYERS 4096
#define ALI_MAX_POS (1 << 24)

/* ---- typed getters: a wrong type is AL_EFORMAT naming the key ---- */

static al_err ali_get_int(json_t *o, const char *what, const char *key, int req, int64_t def,
                          int64_t *out)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        if (req)
            return ali_errf(AL_EFORMAT, "%s: required key '%s' is missing", what, key);
        *out = def;
        return AL_OK;
    }
    if (!json_is_integer(v))
        return ali_errf(AL_EFORMAT, "%s: '%s' must be an integer", what, key);
    *out = json_integer_value(v);
    return AL_OK;
}

static al_err ali_get_num(json_t *o, const char *what, const char *key, int req, double def, double *out)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        if (req)
            return ali_errf(AL_EFORMAT, "%s: required key '%s' is missing", what, key);
        *out = def;
        return AL_OK;
    }
    if (!json_is_number(v))
        return ali_errf(AL_EFORMAT, "%s: '%s' must be a number", what, key);
    *out = json_number_value(v);
    if (!isfinite(*out))
        return ali_errf(AL_ERANGE, "%s: '%s' is not finite", what, key);
    return AL_OK;
}

static al_err ali_get_bool(json_t *o, const char *what, const char *key, int def, int *out)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return AL_OK;
    }
    if (!json_is_boolean(v))
        return ali_errf(AL_EFORMAT, "%s: '%s' must be true or false", what, key);
    *out = json_is_true(v);
    return AL_OK;
}

static al_err ali_dim(json_t *o, const char *what, const char *key, int req, int64_t def, int64_t cap,
                      int32_t *out)
{
    int64_t v = 0;
    AL_TRY(ali_get_int(o, what, key, req, def, &v));
    if (v <= 0 || v >= cap)
        return ali_errf(AL_ERANGE, "%s: '%s' = %lld is out of range (1..%lld)", what, key, (long long)v,
                        (long long)cap - 1);
    *out = (int32_t)v;
    return AL_OK;
}

static al_err ali_token(json_t *v, const char *what, const char *key, int32_t vocab, int32_t *out)
{
    if (!json_is_integer(v))
        return ali_errf(AL_EFORMAT, "%s: '%s' must be an integer or a list of integers", what, key);
    json_int_t t = json_integer_value(v);
    if (t < 0 || t >= vocab)
        return ali_errf(AL_ERANGE, "%s: '%s' = %lld is outside the vocabulary (%d)", what, key,
                        (long long)t, vocab);
    *out = (int32_t)t;
    return AL_OK;
}

/* rope_scaling (transformers 4) or rope_parameters (transformers 5; also holds rope_theta). */
static al_err ali_parse_rope_scaling(json_t *root, const char *what, const char *key, al_model_config *c)
{
    json_t *rs = json_object_get(root, key);
    if (!rs || json_is_null(rs))
        return AL_OK;
    if (!json_is_object(rs))
        return ali_errf(AL_EFORMAT, "%s: 'rope_scaling' must be an object or null", what);
    json_t *ty = json_object_get(rs, "rope_type");
    if (!ty)
        ty = json_object_get(rs, "type");
    if (!json_is_string(ty))
        return ali_errf(AL_EFORMAT, "%s: 'rope_scaling' needs a string 'rope_type'", what);
    const char *t = json_string_value(ty);
    if (!strcmp(t, "default"))
        return AL_OK;
    if (strcmp(t, "llama3"))
        return ali_errf(AL_EUNSUPPORTED, "%s: rope_scaling.rope_type '%s' is not supported (llama3, default)",
                        what, t);
    double f = 0, lo = 0, hi = 0;
    int64_t orig = 0;
    char w2[600];
    snprintf(w2, sizeof w2, "%s: rope_scaling", what);
    AL_TRY(ali_get_num(rs, w2, "factor", 1, 0, &f));
    AL_TRY(ali_get_num(rs, w2, "low_freq_factor", 1, 0, &lo));
    AL_TRY(ali_get_num(rs, w2, "high_freq_factor", 1, 0, &hi));
    AL_TRY(ali_get_int(rs, w2, "original_max_position_embeddings", 1, 0, &orig));
    if (f <= 0)
        return ali_errf(AL_ERANGE, "%s: rope_scaling 'factor' must be > 0", what);
    if (lo <= 0 || hi <= lo)
        return ali_errf(AL_ERANGE, "%s: rope_scaling 'high_freq_factor' must exceed 'low_freq_factor' > 0",
                        what);
    if (orig <= 0 || orig >= ALI_MAX_POS)
        return ali_errf(AL_ERANGE, "%s: rope_scaling 'original_max_position_embeddings' out of range", what);
    c->rope_llama3 = 1;
    c->rope_factor = (float)f;
    c->rope_low_freq_factor = (float)lo;
    c->rope_high_freq_factor = (float)hi;
    c->rope_original_max_pos = (int32_t)orig;
    return AL_OK;
}

static al_err ali_parse_arch(json_t *root, const char *what, al_model_config *c)
{
    json_t *ar = json_object_get(root, "architectures");
    if (ar && !json_is_null(ar)) {
        if (!json_is_array(ar) || json_array_size(ar) == 0 || !json_is_string(json_array_get(ar, 0)))
            return ali_errf(AL_EFORMAT, "%s: 'architectures' must be a non-empty list of strings", what);
        const char *a = json_string_value(json_array_get(ar, 0));
        if (!strcmp(a, "LlamaForCausalLM"))
            c->arch = AL_ARCH_LLAMA;
        else if (!strcmp(a, "GraniteForCausalLM"))
            c->arch = AL_ARCH_GRANITE;
        else
            return ali_errf(AL_EUNSUPPORTED,
                            "%s: architectures '%s' is not supported (LlamaForCausalLM, GraniteForCausalLM)",
                            what, a);
        return AL_OK;
    }
    json_t *mt = json_object_get(root, "model_type");
    if (!json_is_string(mt))
        return ali_errf(AL_EUNSUPPORTED, "%s: no 'architectures' or 'model_type': unknown architecture",
                        what);
    const char *m = json_string_value(mt);
    if (!strcmp(m, "llama"))
        c->arch = AL_ARCH_LLAMA;
    else if (!strcmp(m, "granite"))
        c->arch = AL_ARCH_GRANITE;
    else
        return ali_errf(AL_EUNSUPPORTED, "%s: model_type '%s' is not supported (llama, granite)", what, m);
    return AL_OK;
}

static al_err ali_config_from_json(json_t *root, const char *what, al_model_config *c)
{
    if (!json_is_object(root))
        return ali_errf(AL_EFORMAT, "%s: config is not a JSON object", what);
    AL_TRY(ali_parse_arch(root, what, c));

    int b = 0;
    AL_TRY(ali_get_bool(root, what, "attention_bias", 0, &b));
    if (b)
        return ali_errf(AL_EUNSUPPORTED, "%s: 'attention_bias' true is not supported", what);
    AL_TRY(ali_get_bool(root, what, "mlp_bias", 0, &b));
    if (b)
        return ali_errf(AL_EUNSUPPORTED, "%s: 'mlp_bias' true is not supported", what);
    json_t *act = json_object_get(root, "hidden_act");
    if (act && !json_is_null(act)) {
        if (!json_is_string(act))
            return ali_errf(AL_EFORMAT, "%s: 'hidden_act' must be a string", what);
        const char *a = json_string_value(act);
        if (strcmp(a, "silu") && strcmp(a, "swish"))
            return ali_errf(AL_EUNSUPPORTED, "%s: 'hidden_act' '%s' is not supported (silu)", what, a);
    }

    AL_TRY(ali_dim(root, what, "vocab_size", 1, 0, ALI_MAX_VOCAB, &c->vocab_size));
    AL_TRY(ali_dim(root, what, "hidden_size", 1, 0, ALI_MAX_DIM, &c->hidden_size));
    AL_TRY(ali_dim(root, what, "intermediate_size", 1, 0, ALI_MAX_DIM, &c->intermediate_size));
    AL_TRY(ali_dim(root, what, "num_hidden_layers", 1, 0, ALI_MAX_LAYERS, &c->n_layers));
    AL_TRY(ali_dim(root, what, "num_attention_heads", 1, 0, ALI_MAX_DIM, &c->n_heads));
    AL_TRY(ali_dim(root, what, "num_key_value_heads", 0, c->n_heads, ALI_MAX_DIM, &c->n_kv_heads));
    if (c->n_kv_heads > c->n_heads || c->n_heads % c->n_kv_heads != 0)
        return ali_errf(AL_ERANGE, "%s: 'num_key_value_heads' = %d must divide num_attention_heads = %d",
                        what, c->n_kv_heads, c->n_heads);
    json_t *hd = json_object_get(root, "head_dim");
    if (hd && !json_is_null(hd)) {
        AL_TRY(ali_dim(root, what, "head_dim", 1, 0, ALI_MAX_DIM, &c->head_dim));
    } else {
        if (c->hidden_size % c->n_heads != 0)
            return ali_errf(AL_ERANGE, "%s: 'hidden_size' %d is not a multiple of num_attention_heads %d",
                            what, c->hidden_size, c->n_heads);
        c->head_dim = c->hidden_size / c->n_heads;
    }
    if ((int64_t)c->n_heads * c->head_dim >= ALI_MAX_DIM)
        return ali_errf(AL_ERANGE, "%s: 'head_dim' x num_attention_heads is too large", what);
    AL_TRY(ali_dim(root, what, "max_position_embeddings", 0, 2048, ALI_MAX_POS,
                   &c->max_position_embeddings));

    double d = 0;
    AL_TRY(ali_get_num(root, what, "rms_norm_eps", 0, 1e-6, &d));
    if (!(d > 0) || d >= 1)
        return ali_errf(AL_ERANGE, "%s: 'rms_norm_eps' = %g must be in (0, 1)", what, d);
    c->rms_eps = (float)d;
    AL_TRY(ali_get_num(root, what, "rope_theta", 0, 10000.0, &d));
    if (!(d > 0))
        return ali_errf(AL_ERANGE, "%s: 'rope_theta' = %g must be > 0", what, d);
    c->rope_theta = (float)d;
    json_t *rp = json_object_get(root, "rope_parameters");
    if (rp && !json_is_null(rp)) {
        if (!json_is_object(rp))
            return ali_errf(AL_EFORMAT, "%s: 'rope_parameters' must be an object or null", what);
        char w2[600];
        snprintf(w2, sizeof w2, "%s: rope_parameters", what);
        AL_TRY(ali_get_num(rp, w2, "rope_theta", 0, c->rope_theta, &d));
        if (!(d > 0))
            return ali_errf(AL_ERANGE, "%s: rope_parameters 'rope_theta' = %g must be > 0", what, d);
        c->rope_theta = (float)d;
        AL_TRY(ali_parse_rope_scaling(root, what, "rope_parameters", c));
    } else {
        AL_TRY(ali_parse_rope_scaling(root, what, "rope_scaling", c));
    }
    AL_TRY(ali_get_bool(root, what, "tie_word_embeddings", 0, &b));
    c->tie_word_embeddings = b;

    c->bos_token_id = -1;
    json_t *bos = json_object_get(root, "bos_token_id");
    if (bos && !json_is_null(bos))
        AL_TRY(ali_token(bos, what, "bos_token_id", c->vocab_size, &c->bos_token_id));
    json_t *eos = json_object_get(root, "eos_token_id");
    if (json_is_array(eos)) {
        if (json_array_size(eos) > AL_MAX_EOS)
            return ali_errf(AL_ERANGE, "%s: 'eos_token_id' has %zu ids, at most %d supported", what,
                            json_array_size(eos), AL_MAX_EOS);
        for (size_t i = 0; i < json_array_size(eos); i++)
            AL_TRY(ali_token(json_array_get(eos, i), what, "eos_token_id", c->vocab_size,
                             &c->eos_token_ids[c->n_eos++]));
    } else if (eos && !json_is_null(eos)) {
        AL_TRY(ali_token(eos, what, "eos_token_id", c->vocab_size, &c->eos_token_ids[c->n_eos++]));
    }

    json_t *dt = json_object_get(root, "torch_dtype");
    if (!dt || json_is_null(dt))
        dt = json_object_get(root, "dtype");
    c->dtype = AL_DT_F32;
    if (json_is_string(dt)) {
        const char *s = json_string_value(dt);
        if (!strcmp(s, "float16"))
            c->dtype = AL_DT_F16;
        else if (!strcmp(s, "bfloat16"))
            c->dtype = AL_DT_BF16;
    }

    if (c->arch == AL_ARCH_GRANITE) {
        AL_TRY(ali_get_num(root, what, "embedding_multiplier", 0, 1.0, &d));
        c->embedding_multiplier = (float)d;
        AL_TRY(ali_get_num(root, what, "attention_multiplier", 0, 1.0, &d));
        c->attention_multiplier = (float)d;
        AL_TRY(ali_get_num(root, what, "residual_multiplier", 0, 1.0, &d));
        c->residual_multiplier = (float)d;
        AL_TRY(ali_get_num(root, what, "logits_scaling", 0, 1.0, &d));
        if (d == 0)
            return ali_errf(AL_ERANGE, "%s: 'logits_scaling' must not be 0", what);
        c->logits_scaling = (float)d;
    } else {
        c->embedding_multiplier = 1.0f;
        c->attention_multiplier = (float)(1.0 / sqrt((double)c->head_dim));
        c->residual_multiplier = 1.0f;
        c->logits_scaling = 1.0f;
    }

    json_t *nm = json_object_get(root, "_name_or_path");
    if (json_is_string(nm))
        snprintf(c->name, sizeof c->name, "%s", json_string_value(nm));
    return AL_OK;
}

al_err al_config_parse(const char *json_text, const char *what, al_model_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    if (!what)
        what = "config.json";
    json_error_t jerr;
    json_t *root = json_loads(json_text, 0, &jerr);
    if (!root)
        return ali_errf(AL_EFORMAT, "%s: invalid JSON: %s (line %d)", what, jerr.text, jerr.line);
    al_err e = ali_config_from_json(root, what, cfg);
    json_decref(root);
    return e;
}

al_err al_config_load(const char *dir, al_model_config *cfg)
{
    char path[4096];
    memset(cfg, 0, sizeof *cfg);
    AL_TRY(ali_path_join(path, sizeof path, dir, "config.json"));
    char *text;
    AL_TRY(ali_read_file(path, 4 << 20, &text, NULL));
    al_err e = al_config_parse(text, path, cfg);
    free(text);
    if (e == AL_OK && !cfg->name[0])
        ali_basename(dir, cfg->name, sizeof cfg->name);
    return e;
}

/* ---- layout ---- */

static size_t ali_al64(size_t x) { return (x + 63) & ~(size_t)63; }

typedef struct ali_layout {
    size_t embed, norm, lm_head, total;
    size_t layer0, layer_stride;
    size_t attn_norm, wq, wk, wv, wo, ffn_norm, w_gate, w_up, w_down; /* within a layer */
} ali_layout;

static void ali_compute_layout(const al_model_config *c, ali_layout *L)
{
    size_t V = (size_t)c->vocab_size, H = (size_t)c->hidden_size, I = (size_t)c->intermediate_size;
    size_t q = (size_t)c->n_heads * (size_t)c->head_dim, kv = (size_t)c->n_kv_heads * (size_t)c->head_dim;
    size_t o = 0;
    L->embed = o;
    o += ali_al64(V * H * 4);
    L->layer0 = o;
    size_t lo = 0;
    L->attn_norm = lo;
    lo += ali_al64(H * 4);
    L->wq = lo;
    lo += ali_al64(q * H * 4);
    L->wk = lo;
    lo += ali_al64(kv * H * 4);
    L->wv = lo;
    lo += ali_al64(kv * H * 4);
    L->wo = lo;
    lo += ali_al64(H * q * 4);
    L->ffn_norm = lo;
    lo += ali_al64(H * 4);
    L->w_gate = lo;
    lo += ali_al64(I * H * 4);
    L->w_up = lo;
    lo += ali_al64(I * H * 4);
    L->w_down = lo;
    lo += ali_al64(H * I * 4);
    L->layer_stride = lo;
    o += lo * (size_t)c->n_layers;
    L->norm = o;
    o += ali_al64(H * 4);
    L->lm_head = c->tie_word_embeddings ? L->embed : o;
    if (!c->tie_word_embeddings)
        o += ali_al64(V * H * 4);
    L->total = o;
}

size_t al_weights_layout_bytes(const al_model_config *cfg)
{
    ali_layout L;
    ali_compute_layout(cfg, &L);
    return L.total;
}

al_err al_weights_bind(const al_model_config *cfg, void *base, al_weights *w)
{
    memset(w, 0, sizeof *w);
    if (!base || ((uintptr_t)base & 63))
        return ali_errf(AL_EINVAL, "weights base must be non-NULL and 64-byte aligned");
    if (cfg->n_layers <= 0)
        return ali_errf(AL_EINVAL, "config has no layers");
    ali_layout L;
    ali_compute_layout(cfg, &L);
    char *b = base;
    w->layers = calloc((size_t)cfg->n_layers, sizeof *w->layers);
    if (!w->layers)
        return ali_errf(AL_ENOMEM, "out of memory");
    w->embed = (float *)(b + L.embed);
    for (int l = 0; l < cfg->n_layers; l++) {
        char *lb = b + L.layer0 + (size_t)l * L.layer_stride;
        al_layer_weights *lw = &w->layers[l];
        lw->attn_norm = (float *)(lb + L.attn_norm);
        lw->wq = (float *)(lb + L.wq);
        lw->wk = (float *)(lb + L.wk);
        lw->wv = (float *)(lb + L.wv);
        lw->wo = (float *)(lb + L.wo);
        lw->ffn_norm = (float *)(lb + L.ffn_norm);
        lw->w_gate = (float *)(lb + L.w_gate);
        lw->w_up = (float *)(lb + L.w_up);
        lw->w_down = (float *)(lb + L.w_down);
    }
    w->norm = (float *)(b + L.norm);
    w->lm_head = (float *)(b + L.lm_head);
    return AL_OK;
}

void al_weights_unbind(al_weights *w)
{
    if (!w)
        return;
    free(w->layers);
    memset(w, 0, sizeof *w);
}

/* ---- loading ---- */

void al_model_free(al_model *m)
{
    if (!m)
        return;
    free(m->w.layers);
    if (m->owns_base)
        ali_aligned_free(m->base);
    free(m);
}

static al_err ali_read_tensor(const al_st *st, const char *dir, const char *name, float *dst, int nd,
                              int64_t d0, int64_t d1)
{
    const al_st_tensor *t = al_st_find(st, name);
    if (!t)
        return ali_errf(AL_ENOTFOUND, "%s: tensor '%s' not found", dir, name);
    int64_t want[2] = {d0, d1};
    return al_st_read_f32(t, dst, nd, want);
}

/* Where tensors go: straight into f32 destinations (put NULL), or through tmp into put(). */
typedef struct ali_sink {
    al_tensor_put_fn put;
    void *ctx;
    float *tmp; /* f32 buffer of the largest tensor (put != NULL) */
} ali_sink;

static al_err ali_read_into(const al_st *st, const char *dir, const char *name, void *dst, int nd, int64_t d0,
                            int64_t d1, const ali_sink *k)
{
    if (!k->put)
        return ali_read_tensor(st, dir, name, dst, nd, d0, d1);
    AL_TRY(ali_read_tensor(st, dir, name, k->tmp, nd, d0, d1));
    k->put(k->ctx, dst, k->tmp, (size_t)d0 * (size_t)(nd == 2 ? d1 : 1), nd == 2);
    return AL_OK;
}

static al_err ali_load_weights(const al_st *st, const char *dir, const al_model_config *c,
                               const al_weights *w, const ali_sink *k)
{
    int64_t V = c->vocab_size, H = c->hidden_size, I = c->intermediate_size;
    int64_t q = (int64_t)c->n_heads * c->head_dim, kv = (int64_t)c->n_kv_heads * c->head_dim;
    char n[256];
    AL_TRY(ali_read_into(st, dir, "model.embed_tokens.weight", w->embed, 2, V, H, k));
    for (int l = 0; l < c->n_layers; l++) {
        const al_layer_weights *lw = &w->layers[l];
#define ALI_T(suffix, dst, nd, a, b)                                            \
    do {                                                                        \
        snprintf(n, sizeof n, "model.layers.%d.%s", l, suffix);                 \
        AL_TRY(ali_read_into(st, dir, n, dst, nd, a, b, k));                    \
    } while (0)
        ALI_T("input_layernorm.weight", lw->attn_norm, 1, H, 0);
        ALI_T("self_attn.q_proj.weight", lw->wq, 2, q, H);
        ALI_T("self_attn.k_proj.weight", lw->wk, 2, kv, H);
        ALI_T("self_attn.v_proj.weight", lw->wv, 2, kv, H);
        ALI_T("self_attn.o_proj.weight", lw->wo, 2, H, q);
        ALI_T("post_attention_layernorm.weight", lw->ffn_norm, 1, H, 0);
        ALI_T("mlp.gate_proj.weight", lw->w_gate, 2, I, H);
        ALI_T("mlp.up_proj.weight", lw->w_up, 2, I, H);
        ALI_T("mlp.down_proj.weight", lw->w_down, 2, H, I);
#undef ALI_T
    }
    AL_TRY(ali_read_into(st, dir, "model.norm.weight", w->norm, 1, H, 0, k));
    if (!c->tie_word_embeddings)
        AL_TRY(ali_read_into(st, dir, "lm_head.weight", w->lm_head, 2, V, H, k));
    return AL_OK;
}

al_err al_model_load_via(const char *dir, const al_model_config *cfg, const al_weights *w, al_tensor_put_fn put,
                         void *ctx)
{
    size_t H = (size_t)cfg->hidden_size, V = (size_t)cfg->vocab_size, I = (size_t)cfg->intermediate_size;
    size_t q = (size_t)cfg->n_heads * cfg->head_dim, big = V * H;
    big = big > I * H ? big : I * H;
    big = big > q * H ? big : q * H;
    ali_sink k = {.put = put, .ctx = ctx, .tmp = ali_aligned_alloc(big * sizeof(float))};
    if (!k.tmp)
        return ali_errf(AL_ENOMEM, "%s: out of memory for a %.1f MiB tensor buffer", dir, big * 4 / 1048576.0);
    al_st *st = NULL;
    al_err e = al_st_open_dir(dir, "model", &st);
    double t0 = al_now();
    if (e == AL_OK)
        e = ali_load_weights(st, dir, cfg, w, &k);
    if (e == AL_OK && al_now() - t0 > 5)
        AL_INFO("loaded %s tensor by tensor in %.1f s", dir, al_now() - t0);
    al_st_close(st);
    ali_aligned_free(k.tmp);
    return e;
}

al_err al_model_load_ex(const char *dir, al_alloc_fn alloc, void *alloc_ctx, al_model **out)
{
    *out = NULL;
    al_model *m = calloc(1, sizeof *m);
    if (!m)
        return ali_errf(AL_ENOMEM, "out of memory");
    al_st *st = NULL;
    al_err e = al_config_load(dir, &m->cfg);
    if (e != AL_OK)
        goto fail;
    e = al_st_open_dir(dir, "model", &st);
    if (e != AL_OK)
        goto fail;
    m->bytes = al_weights_layout_bytes(&m->cfg);
    double t0 = al_now();
    if (alloc) {
        m->base = alloc(alloc_ctx, m->bytes);
        m->owns_base = 0;
    } else {
        m->base = ali_aligned_alloc(m->bytes);
        m->owns_base = 1;
    }
    if (!m->base) {
        e = ali_errf(AL_ENOMEM, "%s: cannot allocate %zu bytes of weights", dir, m->bytes);
        goto fail;
    }
    e = al_weights_bind(&m->cfg, m->base, &m->w);
    if (e != AL_OK)
        goto fail;
    ali_sink direct = {0};
    e = ali_load_weights(st, dir, &m->cfg, &m->w, &direct);
    if (e != AL_OK)
        goto fail;
    const al_st_tensor *emb = al_st_find(st, "model.embed_tokens.weight");
    m->cfg.dtype = emb->dtype;
    if (m->bytes > ((size_t)1 << 30))
        AL_INFO("loaded %s: %d layers, %.2f GB f32 in %.1f s", dir, m->cfg.n_layers, (double)m->bytes / 1e9,
                al_now() - t0);
    al_st_close(st);
    *out = m;
    return AL_OK;
fail:
    al_st_close(st);
    al_model_free(m);
    return e;
}

al_err al_model_load(const char *dir, al_model **out) { return al_model_load_ex(dir, NULL, NULL, out); }

al_err al_model_weights_dtype(const char *dir, al_dtype *dt)
{
    al_st *st = NULL;
    AL_TRY(al_st_open_dir(dir, "model", &st));
    const al_st_tensor *t = al_st_find(st, "model.embed_tokens.weight");
    al_err e = t ? AL_OK : ali_errf(AL_ENOTFOUND, "%s: tensor 'model.embed_tokens.weight' not found", dir);
    if (t)
        *dt = t->dtype;
    al_st_close(st);
    return e;
}

al_err al_model_view(const al_model_config *cfg, void *base, al_model **out)
{
    *out = NULL;
    al_model *m = calloc(1, sizeof *m);
    if (!m)
        return ali_errf(AL_ENOMEM, "out of memory");
    m->cfg = *cfg;
    if (!base) { /* config only: the weights live elsewhere (device memory) */
        *out = m;
        return AL_OK;
    }
    m->base = base;
    m->bytes = al_weights_layout_bytes(cfg);
    m->owns_base = 0;
    al_err e = al_weights_bind(cfg, base, &m->w);
    if (e != AL_OK) {
        free(m);
        return e;
    }
    *out = m;
    return AL_OK;
}

int al_model_is_eos(const al_model_config *cfg, int32_t tok)
{
    for (int i = 0; i < cfg->n_eos; i++)
        if (cfg->eos_token_ids[i] == tok)
            return 1;
    return 0;
}
