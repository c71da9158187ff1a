/* adapter.c: PEFT LoRA / aLoRA adapter loading (strict) and the aLoRA activation matcher. */
#include "common/model/adapter.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <xxhash.h>

#include "common/model/safetensors.h"
#include "common/util.h"

static const char *const ali_target_names[AL_T_COUNT] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                                         "gate_proj", "up_proj", "down_proj"};
static const char *const ali_target_short[AL_T_COUNT] = {"q", "k", "v", "o", "gate", "up", "down"};

const char *al_target_module(al_target t)
{
    if ((int)t < 0 || t >= AL_T_COUNT)
        return "?";
    return ali_target_names[t];
}

int al_target_parse(const char *s)
{
    if (!s)
        return -1;
    for (int i = 0; i < AL_T_COUNT; i++)
        if (!strcmp(s, ali_target_names[i]) || !strcmp(s, ali_target_short[i]))
            return i;
    return -1;
}

static int ali_is_attn(int t) { return t <= AL_T_O; }

int32_t al_alora_find_start(const int32_t *toks, int32_t n, const int32_t *inv, int32_t n_inv)
{
    if (n_inv <= 0 || n < n_inv)
        return -1;
    for (int32_t i = n - n_inv; i >= 0; i--) {
        int32_t j = 0;
        while (j < n_inv && toks[i + j] == inv[j])
            j++;
        if (j == n_inv)
            return i;
    }
    return -1;
}

int32_t al_adapter_activation_start(const al_adapter *a, const int32_t *toks, int32_t n)
{
    if (!a->invocation || a->n_invocation <= 0)
        return 0;
    return al_alora_find_start(toks, n, a->invocation, a->n_invocation);
}

void al_adapter_free(al_adapter *a)
{
    if (!a)
        return;
    free(a->mods);
    free(a->invocation);
    free(a->invocation_string);
    ali_aligned_free(a->buf);
    free(a);
}

/* ---- adapter_config.json ---- */

typedef struct ali_acfg {
    int r;
    double alpha;
    int rslora, lora_bias;
    int targets[AL_T_COUNT];
    json_t *rank_pattern, *alpha_pattern; /* borrowed from the root, may be NULL */
} ali_acfg;

static int ali_truthy_list(json_t *v) /* non-null and not an empty list/object/string */
{
    if (!v || json_is_null(v) || json_is_false(v))
        return 0;
    if (json_is_array(v))
        return json_array_size(v) > 0;
    if (json_is_object(v))
        return json_object_size(v) > 0;
    if (json_is_string(v))
        return json_string_length(v) > 0;
    return 1;
}

static al_err ali_bool_opt(json_t *root, const char *what, const char *key, int *out)
{
    json_t *v = json_object_get(root, key);
    *out = 0;
    if (!v || json_is_null(v))
        return AL_OK;
    if (!json_is_boolean(v))
        return ali_errf(AL_EFORMAT, "%s: '%s' must be true or false", what, key);
    *out = json_is_true(v);
    return AL_OK;
}

static al_err ali_add_target(const char *what, const char *m, ali_acfg *c)
{
    if (!strcmp(m, "embed_tokens") || !strcmp(m, "lm_head"))
        return ali_errf(AL_EUNSUPPORTED, "%s: target_modules '%s': embedding and lm_head targets are not supported",
                        what, m);
    int t = -1;
    for (int i = 0; i < AL_T_COUNT; i++)
        if (!strcmp(m, ali_target_names[i]))
            t = i;
    if (t < 0)
        return ali_errf(AL_EUNSUPPORTED,
                        "%s: target_modules '%s' is not supported (q_proj, k_proj, v_proj, o_proj, "
                        "gate_proj, up_proj, down_proj)",
                        what, m);
    c->targets[t] = 1;
    return AL_OK;
}

static al_err ali_check_pattern_obj(json_t *root, const char *what, const char *key, json_t **out)
{
    json_t *v = json_object_get(root, key);
    *out = NULL;
    if (!v || json_is_null(v))
        return AL_OK;
    if (!json_is_object(v))
        return ali_errf(AL_EFORMAT, "%s: '%s' must be an object", what, key);
    const char *k;
    json_t *x;
    json_object_foreach(v, k, x)
    {
        if (!json_is_number(x))
            return ali_errf(AL_EFORMAT, "%s: %s['%s'] must be a number", what, key, k);
        if (!strcmp(key, "rank_pattern") && (!json_is_integer(x) || json_integer_value(x) <= 0))
            return ali_errf(AL_ERANGE, "%s: rank_pattern['%s'] must be a positive integer", what, k);
    }
    *out = v;
    return AL_OK;
}

static al_err ali_parse_acfg(json_t *root, const char *what, const al_model_config *mc, ali_acfg *c,
                             al_adapter *a)
{
    if (!json_is_object(root))
        return ali_errf(AL_EFORMAT, "%s: not a JSON object", what);
    json_t *pt = json_object_get(root, "peft_type");
    if (!json_is_string(pt) || strcmp(json_string_value(pt), "LORA"))
        return ali_errf(AL_EUNSUPPORTED, "%s: 'peft_type' must be \"LORA\"", what);
    int b;
    AL_TRY(ali_bool_opt(root, what, "use_dora", &b));
    if (b)
        return ali_errf(AL_EUNSUPPORTED, "%s: 'use_dora' (DoRA) is not supported", what);
    AL_TRY(ali_bool_opt(root, what, "fan_in_fan_out", &b));
    if (b)
        return ali_errf(AL_EUNSUPPORTED, "%s: 'fan_in_fan_out' true is not supported", what);
    static const char *const rejected[] = {"modules_to_save", "layers_to_transform", "exclude_modules",
                                           "target_parameters", "layer_replication", "trainable_token_indices"};
    for (size_t i = 0; i < AL_ARRAY_LEN(rejected); i++)
        if (ali_truthy_list(json_object_get(root, rejected[i])))
            return ali_errf(AL_EUNSUPPORTED, "%s: '%s' is not supported (must be null)", what, rejected[i]);
    AL_TRY(ali_bool_opt(root, what, "use_rslora", &c->rslora));
    AL_TRY(ali_bool_opt(root, what, "lora_bias", &c->lora_bias));

    json_t *r = json_object_get(root, "r");
    if (!r || json_is_null(r))
        c->r = 8;
    else if (!json_is_integer(r) || json_integer_value(r) <= 0 || json_integer_value(r) > (1 << 16))
        return ali_errf(AL_ERANGE, "%s: 'r' must be a positive integer", what);
    else
        c->r = (int)json_integer_value(r);
    json_t *al = json_object_get(root, "lora_alpha");
    if (!al || json_is_null(al))
        c->alpha = 8;
    else if (!json_is_number(al) || !isfinite(json_number_value(al)))
        return ali_errf(AL_EFORMAT, "%s: 'lora_alpha' must be a number", what);
    else
        c->alpha = json_number_value(al);
    AL_TRY(ali_check_pattern_obj(root, what, "rank_pattern", &c->rank_pattern));
    AL_TRY(ali_check_pattern_obj(root, what, "alpha_pattern", &c->alpha_pattern));

    json_t *tm = json_object_get(root, "target_modules");
    if (json_is_string(tm)) {
        const char *s = json_string_value(tm);
        if (!strcmp(s, "all-linear")) {
            for (int i = 0; i < AL_T_COUNT; i++)
                c->targets[i] = 1;
        } else {
            AL_TRY(ali_add_target(what, s, c)); /* a plain module name only; regexes unsupported */
        }
    } else if (json_is_array(tm) && json_array_size(tm) > 0) {
        for (size_t i = 0; i < json_array_size(tm); i++) {
            json_t *x = json_array_get(tm, i);
            if (!json_is_string(x))
                return ali_errf(AL_EFORMAT, "%s: target_modules[%zu] is not a string", what, i);
            AL_TRY(ali_add_target(what, json_string_value(x), c));
        }
    } else {
        return ali_errf(AL_EFORMAT, "%s: 'target_modules' must be a non-empty list or a module name", what);
    }

    json_t *inv = json_object_get(root, "alora_invocation_tokens");
    if (inv && !json_is_null(inv)) {
        if (!json_is_array(inv))
            return ali_errf(AL_EFORMAT, "%s: 'alora_invocation_tokens' must be a list of token ids", what);
        size_t n = json_array_size(inv);
        if (n == 0)
            return ali_errf(AL_EFORMAT, "%s: 'alora_invocation_tokens' is empty", what);
        if (n > 4096)
            return ali_errf(AL_ERANGE, "%s: 'alora_invocation_tokens' has %zu tokens", what, n);
        a->invocation = malloc(n * sizeof *a->invocation);
        if (!a->invocation)
            return ali_errf(AL_ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
            json_t *x = json_array_get(inv, i);
            if (!json_is_integer(x))
                return ali_errf(AL_EFORMAT, "%s: alora_invocation_tokens[%zu] is not an integer", what, i);
            json_int_t t = json_integer_value(x);
            if (t < 0 || t >= mc->vocab_size)
                return ali_errf(AL_ERANGE, "%s: alora_invocation_tokens[%zu] = %lld is outside the vocabulary (%d)",
                                what, i, (long long)t, mc->vocab_size);
            a->invocation[i] = (int32_t)t;
        }
        a->n_invocation = (int32_t)n;
    }
    json_t *is = json_object_get(root, "invocation_string");
    if (is && !json_is_null(is)) {
        if (!json_is_string(is) || json_string_length(is) == 0)
            return ali_errf(AL_EFORMAT, "%s: 'invocation_string' must be a non-empty string", what);
        a->invocation_string = strdup(json_string_value(is));
        if (!a->invocation_string)
            return ali_errf(AL_ENOMEM, "out of memory");
    }
    return AL_OK;
}

/* ---- rank_pattern / alpha_pattern (PEFT: key matches the module name or its "."-suffix) ---- */

static al_err ali_key_matches(const char *what, const char *key, const char *mod, int *hit)
{
    *hit = 0;
    if (!strpbrk(key, "\\^$*+?()[]{}|")) {
        size_t kl = strlen(key), ml = strlen(mod);
        *hit = !strcmp(key, mod) || (ml > kl && mod[ml - kl - 1] == '.' && !strcmp(mod + ml - kl, key));
        return AL_OK;
    }
    size_t pl = strlen(key) + 32;
    char *pat = malloc(pl);
    if (!pat)
        return ali_errf(AL_ENOMEM, "out of memory");
    snprintf(pat, pl, "(?:.*\\.)?(?:%s)$", key);
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_ANCHORED, &ec, &eo, NULL);
    free(pat);
    if (!re)
        return ali_errf(AL_EFORMAT, "%s: pattern key '%s' is not a valid regular expression", what, key);
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    if (!md) {
        pcre2_code_free(re);
        return ali_errf(AL_ENOMEM, "out of memory");
    }
    int rc = pcre2_match(re, (PCRE2_SPTR)mod, strlen(mod), 0, 0, md, NULL);
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    *hit = rc >= 0;
    return AL_OK;
}

/* First key of pat (in file order) that matches mod: its value in *val; *found = 0 if none. */
static al_err ali_pattern_lookup(const char *what, json_t *pat, const char *mod, double *val, int *found)
{
    *found = 0;
    if (!pat)
        return AL_OK;
    const char *k;
    json_t *v;
    json_object_foreach(pat, k, v)
    {
        int hit;
        AL_TRY(ali_key_matches(what, k, mod, &hit));
        if (hit) {
            *val = json_number_value(v);
            *found = 1;
            return AL_OK;
        }
    }
    return AL_OK;
}

/* ---- tensor names ---- */

enum { ALI_A = 0, ALI_B = 1, ALI_BIAS = 2 };
static const char *const ali_kind_names[3] = {"lora_A.weight", "lora_B.weight", "lora_B.bias"};
#define ALI_PREFIX "base_model.model.model.layers."

/* Parses base_model.model.model.layers.N.{self_attn,mlp}.X_proj.{lora_A.weight,...}. */
static int ali_parse_name(const char *name, long *layer, int *t, int *kind)
{
    size_t pl = strlen(ALI_PREFIX);
    if (strncmp(name, ALI_PREFIX, pl))
        return 0;
    const char *p = name + pl;
    if (*p < '0' || *p > '9')
        return 0;
    long l = 0;
    int digits = 0;
    while (*p >= '0' && *p <= '9') {
        if (++digits > 6)
            return 0;
        l = l * 10 + (*p++ - '0');
    }
    if (*p++ != '.')
        return 0;
    int attn;
    if (!strncmp(p, "self_attn.", 10)) {
        attn = 1;
        p += 10;
    } else if (!strncmp(p, "mlp.", 4)) {
        attn = 0;
        p += 4;
    } else {
        return 0;
    }
    for (int i = 0; i < AL_T_COUNT; i++) {
        size_t ml = strlen(ali_target_names[i]);
        if (strncmp(p, ali_target_names[i], ml) || p[ml] != '.')
            continue;
        if (ali_is_attn(i) != attn)
            return 0;
        for (int k = 0; k < 3; k++)
            if (!strcmp(p + ml + 1, ali_kind_names[k])) {
                *layer = l;
                *t = i;
                *kind = k;
                return 1;
            }
        return 0;
    }
    return 0;
}

void al_target_dims(const al_model_config *c, al_target t, int32_t *in, int32_t *out)
{
    int32_t H = c->hidden_size, I = c->intermediate_size;
    int32_t q = c->n_heads * c->head_dim, kv = c->n_kv_heads * c->head_dim;
    switch (t) {
    case AL_T_Q: *in = H; *out = q; break;
    case AL_T_K:
    case AL_T_V: *in = H; *out = kv; break;
    case AL_T_O: *in = q; *out = H; break;
    case AL_T_GATE:
    case AL_T_UP: *in = H; *out = I; break;
    default: *in = I; *out = H; break;
    }
}

static al_err ali_digest(const char *cfg_text, size_t cfg_len, const char *st_path, uint64_t *out)
{
    XXH64_state_t *s = XXH64_createState();
    if (!s)
        return ali_errf(AL_ENOMEM, "out of memory");
    XXH64_reset(s, 0);
    XXH64_update(s, cfg_text, cfg_len);
    FILE *f = fopen(st_path, "rb");
    char *buf = malloc(1 << 16);
    if (!f || !buf) {
        if (f)
            fclose(f);
        free(buf);
        XXH64_freeState(s);
        return ali_errf(AL_EIO, "%s: cannot reopen for the digest", st_path);
    }
    size_t n;
    while ((n = fread(buf, 1, 1 << 16, f)) > 0)
        XXH64_update(s, buf, n);
    int err = ferror(f);
    fclose(f);
    free(buf);
    *out = XXH64_digest(s);
    XXH64_freeState(s);
    if (err)
        return ali_errf(AL_EIO, "%s: read error", st_path);
    return AL_OK;
}

static al_err ali_load_tensors(const char *stp, const al_st *st, const al_model_config *mc,
                               const ali_acfg *c, const char *what, al_adapter *a)
{
    int L = mc->n_layers, nm = L * AL_T_COUNT;
    int *idx = malloc(sizeof *idx * (size_t)nm * 3);
    if (!idx)
        return ali_errf(AL_ENOMEM, "out of memory");
    al_err e = AL_OK;
    for (int i = 0; i < nm * 3; i++)
        idx[i] = -1;
    for (int i = 0; i < al_st_count(st); i++) {
        const al_st_tensor *t = al_st_get(st, i);
        long l;
        int tg, kind;
        if (!ali_parse_name(t->name, &l, &tg, &kind)) {
            e = ali_errf(AL_EFORMAT, "%s: unexpected tensor '%s' (not a LoRA weight of a supported module)",
                         stp, t->name);
            goto out;
        }
        if (l >= L) {
            e = ali_errf(AL_ERANGE, "%s: tensor '%s': layer %ld is beyond the model's %d layers", stp,
                         t->name, l, L);
            goto out;
        }
        if (!c->targets[tg]) {
            e = ali_errf(AL_EFORMAT, "%s: tensor '%s': module '%s' is not in target_modules", stp, t->name,
                         ali_target_names[tg]);
            goto out;
        }
        if (kind == ALI_BIAS && !c->lora_bias) {
            e = ali_errf(AL_EFORMAT, "%s: unexpected tensor '%s' (lora_bias is false)", stp, t->name);
            goto out;
        }
        idx[((int)l * AL_T_COUNT + tg) * 3 + kind] = i;
    }
    /* Validate every module and size the buffer. */
    size_t total = 0;
    char mod[160];
    for (int l = 0; l < L; l++)
        for (int tg = 0; tg < AL_T_COUNT; tg++) {
            if (!c->targets[tg])
                continue;
            al_lora_mod *m = &a->mods[l * AL_T_COUNT + tg];
            snprintf(mod, sizeof mod, "model.layers.%d.%s.%s", l, ali_is_attn(tg) ? "self_attn" : "mlp",
                     ali_target_names[tg]);
            int *ix = &idx[(l * AL_T_COUNT + tg) * 3];
            for (int k = 0; k < (c->lora_bias ? 3 : 2); k++)
                if (ix[k] < 0) {
                    e = ali_errf(AL_ENOTFOUND, "%s: tensor 'base_model.model.%s.%s' is missing", stp, mod,
                                 ali_kind_names[k]);
                    goto out;
                }
            const al_st_tensor *A = al_st_get(st, ix[ALI_A]), *B = al_st_get(st, ix[ALI_B]);
            int32_t in, outd;
            al_target_dims(mc, tg, &in, &outd);
            double rv = c->r, av = c->alpha;
            int found;
            e = ali_pattern_lookup(what, c->rank_pattern, mod, &rv, &found);
            if (e == AL_OK)
                e = ali_pattern_lookup(what, c->alpha_pattern, mod, &av, &found);
            if (e != AL_OK)
                goto out;
            int32_t r = (int32_t)rv;
            if (A->n_dims != 2 || A->shape[0] != r || A->shape[1] != in) {
                e = ali_errf(AL_EFORMAT, "%s: tensor '%s': shape must be [%d, %d] (r, in)", stp, A->name, r, in);
                goto out;
            }
            if (B->n_dims != 2 || B->shape[0] != outd || B->shape[1] != r) {
                e = ali_errf(AL_EFORMAT, "%s: tensor '%s': shape must be [%d, %d] (out, r)", stp, B->name, outd,
                             r);
                goto out;
            }
            if (c->lora_bias) {
                const al_st_tensor *bi = al_st_get(st, ix[ALI_BIAS]);
                if (bi->n_dims != 1 || bi->shape[0] != outd) {
                    e = ali_errf(AL_EFORMAT, "%s: tensor '%s': shape must be [%d]", stp, bi->name, outd);
                    goto out;
                }
            }
            m->r = r;
            m->in = in;
            m->out = outd;
            m->scale = (float)(c->rslora ? av / sqrt((double)r) : av / (double)r);
            if (r > a->max_rank)
                a->max_rank = r;
            total += ((size_t)r * (size_t)in + 15) & ~(size_t)15;
            total += ((size_t)outd * (size_t)r + 15) & ~(size_t)15;
            if (c->lora_bias)
                total += ((size_t)outd + 15) & ~(size_t)15;
        }
    a->buf = ali_aligned_alloc(total * sizeof(float));
    if (!a->buf) {
        e = ali_errf(AL_ENOMEM, "%s: cannot allocate %zu bytes", stp, total * sizeof(float));
        goto out;
    }
    float *p = a->buf;
    for (int mi = 0; mi < nm; mi++) {
        al_lora_mod *m = &a->mods[mi];
        if (!m->r)
            continue;
        int *ix = &idx[mi * 3];
        m->A = p;
        e = al_st_read_f32(al_st_get(st, ix[ALI_A]), m->A, 0, NULL);
        p += ((size_t)m->r * (size_t)m->in + 15) & ~(size_t)15;
        m->B = p;
        if (e == AL_OK)
            e = al_st_read_f32(al_st_get(st, ix[ALI_B]), m->B, 0, NULL);
        p += ((size_t)m->out * (size_t)m->r + 15) & ~(size_t)15;
        if (c->lora_bias) {
            m->bias = p;
            if (e == AL_OK)
                e = al_st_read_f32(al_st_get(st, ix[ALI_BIAS]), m->bias, 0, NULL);
            p += ((size_t)m->out + 15) & ~(size_t)15;
        }
        if (e != AL_OK)
            goto out;
    }
out:
    free(idx);
    return e;
}

al_err al_adapter_load(const char *dir, const al_model_config *cfg, al_adapter **out)
{
    *out = NULL;
    char cpath[4096], stp[4096];
    AL_TRY(ali_path_join(cpath, sizeof cpath, dir, "adapter_config.json"));
    AL_TRY(ali_path_join(stp, sizeof stp, dir, "adapter_model.safetensors"));
    char *text = NULL;
    size_t tlen = 0;
    AL_TRY(ali_read_file(cpath, 4 << 20, &text, &tlen));
    json_error_t jerr;
    json_t *root = json_loads(text, 0, &jerr);
    al_st *st = NULL;
    al_err e = AL_OK;
    al_adapter *a = calloc(1, sizeof *a);
    if (!a) {
        e = ali_errf(AL_ENOMEM, "out of memory");
        goto out;
    }
    if (!root) {
        e = ali_errf(AL_EFORMAT, "%s: invalid JSON: %s (line %d)", cpath, jerr.text, jerr.line);
        goto out;
    }
    ali_acfg c;
    memset(&c, 0, sizeof c);
    e = ali_parse_acfg(root, cpath, cfg, &c, a);
    if (e != AL_OK)
        goto out;
    ali_basename(dir, a->name, sizeof a->name);
    a->n_layers = cfg->n_layers;
    a->mods = calloc((size_t)cfg->n_layers * AL_T_COUNT, sizeof *a->mods);
    if (!a->mods) {
        e = ali_errf(AL_ENOMEM, "out of memory");
        goto out;
    }
    e = al_st_open(stp, &st);
    if (e != AL_OK)
        goto out;
    e = ali_load_tensors(stp, st, cfg, &c, cpath, a);
    if (e != AL_OK)
        goto out;
    e = ali_digest(text, tlen, stp, &a->digest);
out:
    al_st_close(st);
    json_decref(root);
    free(text);
    if (e != AL_OK) {
        al_adapter_free(a);
        return e;
    }
    *out = a;
    return AL_OK;
}

al_err al_adapter_write_config(const char *path, const char *base_model, int r, double alpha,
                               const int targets[AL_T_COUNT], int rslora, const int32_t *inv, int n_inv)
{
    json_t *j = json_object();
    json_object_set_new(j, "peft_type", json_string("LORA"));
    json_object_set_new(j, "task_type", json_string("CAUSAL_LM"));
    json_object_set_new(j, "base_model_name_or_path", json_string(base_model ? base_model : ""));
    json_object_set_new(j, "r", json_integer(r));
    json_object_set_new(j, "lora_alpha", json_real(alpha));
    json_object_set_new(j, "lora_dropout", json_real(0.0));
    json_object_set_new(j, "bias", json_string("none"));
    json_t *tm = json_array();
    for (int t = 0; t < AL_T_COUNT; t++)
        if (targets[t])
            json_array_append_new(tm, json_string(al_target_module((al_target)t)));
    json_object_set_new(j, "target_modules", tm);
    json_object_set_new(j, "fan_in_fan_out", json_false());
    json_object_set_new(j, "inference_mode", json_true());
    json_object_set_new(j, "use_rslora", json_boolean(rslora));
    json_object_set_new(j, "use_dora", json_false());
    json_object_set_new(j, "init_lora_weights", json_true());
    json_object_set_new(j, "modules_to_save", json_null());
    json_object_set_new(j, "layers_to_transform", json_null());
    json_object_set_new(j, "rank_pattern", json_object());
    json_object_set_new(j, "alpha_pattern", json_object());
    if (inv && n_inv > 0) {
        json_t *a = json_array();
        for (int i = 0; i < n_inv; i++)
            json_array_append_new(a, json_integer(inv[i]));
        json_object_set_new(j, "alora_invocation_tokens", a);
    }
    int rc = json_dump_file(j, path, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
    json_decref(j);
    if (rc != 0)
        return ali_errf(AL_EIO, "%s: cannot write", path);
    return AL_OK;
}
