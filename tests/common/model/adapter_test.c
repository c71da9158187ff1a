/* adapter_test.c: the aLoRA matcher, PEFT adapter loading (scales, patterns, bias) and rejections. */
#include "al_test.h"

#include <math.h>
#include <sys/stat.h>
#include <xxhash.h>

#include "common/model/adapter.h"
#include "common/model/safetensors.h"
#include "common/util.h"

static char *at_dir;
static al_model_config at_cfg; /* V32 H8 I12 L2 nh2 nkv1 hd4: q out 8, k/v out 4 */

static int at_setup(void **state)
{
    at_dir = al_test_tmpdir();
    const char *cfg = "{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":32,\"hidden_size\":8,"
                      "\"intermediate_size\":12,\"num_hidden_layers\":2,\"num_attention_heads\":2,"
                      "\"num_key_value_heads\":1}";
    if (!at_dir || al_config_parse(cfg, "cfg", &at_cfg) != AL_OK)
        return -1;
    return 0;
}

static int at_teardown(void **state)
{
    al_test_rmrf(at_dir);
    free(at_dir);
    return 0;
}

/* ---- matcher ---- */

static void test_matcher(void **state)
{
    const int32_t inv[2] = {1, 2};
    assert_int_equal(al_alora_find_start((int32_t[]){9, 1, 2, 2}, 4, inv, 2), 1);
    assert_int_equal(al_alora_find_start((int32_t[]){1, 2, 1, 2}, 4, inv, 2), 2);
    assert_int_equal(al_alora_find_start((int32_t[]){1, 2}, 2, inv, 2), 0);
    assert_int_equal(al_alora_find_start((int32_t[]){2, 1}, 2, inv, 2), -1);
    assert_int_equal(al_alora_find_start((int32_t[]){1}, 1, inv, 2), -1);
    assert_int_equal(al_alora_find_start(NULL, 0, inv, 2), -1);
    assert_int_equal(al_alora_find_start((int32_t[]){5, 1, 2, 7, 1, 2, 9}, 7, inv, 2), 4);
    /* Overlapping self-similar invocation: [7,7,7] in [7,7,7,7] -> last occurrence starts at 1. */
    assert_int_equal(al_alora_find_start((int32_t[]){7, 7, 7, 7}, 4, (int32_t[]){7, 7, 7}, 3), 1);
    /* A partial match at the end does not count. */
    assert_int_equal(al_alora_find_start((int32_t[]){1, 2, 3, 1}, 4, (int32_t[]){1, 2, 3}, 3), 0);

    al_adapter plain = {0};
    assert_int_equal(al_adapter_activation_start(&plain, (int32_t[]){4, 5, 6}, 3), 0);
    assert_int_equal(al_adapter_activation_start(&plain, NULL, 0), 0);
    int32_t iv[4] = {303, 266, 358, 430};
    al_adapter al = {.invocation = iv, .n_invocation = 4};
    assert_int_equal(al_adapter_activation_start(&al, (int32_t[]){1, 303, 266, 358, 430, 13}, 6), 1);
    assert_int_equal(al_adapter_activation_start(&al, (int32_t[]){1, 303, 266, 358}, 4), -1);
}

static void test_targets(void **state)
{
    assert_string_equal(al_target_module(AL_T_Q), "q_proj");
    assert_string_equal(al_target_module(AL_T_GATE), "gate_proj");
    assert_string_equal(al_target_module(AL_T_DOWN), "down_proj");
    assert_int_equal(al_target_parse("q"), AL_T_Q);
    assert_int_equal(al_target_parse("o_proj"), AL_T_O);
    assert_int_equal(al_target_parse("up"), AL_T_UP);
    assert_int_equal(al_target_parse("down_proj"), AL_T_DOWN);
    assert_int_equal(al_target_parse("embed_tokens"), -1);
    assert_int_equal(al_target_parse(""), -1);
    assert_int_equal(al_target_parse(NULL), -1);
}

/* ---- synthetic adapters ---- */

typedef struct at_spec {
    const char *cfg;                /* adapter_config.json */
    const char *targets;            /* e.g. "qkv": which modules get tensors (q k v o g u d) */
    int rank[AL_T_COUNT];           /* 0 = 4 */
    int bias;                       /* write lora_B.bias */
    int layers;                     /* 0 = 2 */
    const char *skip;               /* leave this tensor out */
    const char *extra;              /* add this tensor ([1] f32) */
    const char *bad;                /* this tensor gets one more column */
} at_spec;

static const char at_letters[AL_T_COUNT] = {'q', 'k', 'v', 'o', 'g', 'u', 'd'};

static void at_dims(int t, int64_t *in, int64_t *out)
{
    static const int64_t ins[AL_T_COUNT] = {8, 8, 8, 8, 8, 8, 12};
    static const int64_t outs[AL_T_COUNT] = {8, 4, 4, 8, 12, 12, 8};
    *in = ins[t];
    *out = outs[t];
}

/* A[l][t] element i = 100 l + 10 t + i/64; B = -(same); bias = 0.5 + i. */
static const char *at_write(const char *name, const at_spec *s)
{
    static char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", at_dir, name);
    mkdir(dir, 0700);
    char p[700];
    snprintf(p, sizeof p, "%s/adapter_config.json", dir);
    assert_int_equal(ali_write_file(p, s->cfg, strlen(s->cfg)), AL_OK);
    static char names[200][128];
    static al_st_wtensor ts[200];
    static float data[200][128];
    int n = 0;
    int L = s->layers ? s->layers : 2;
    for (int l = 0; l < L; l++)
        for (int t = 0; t < AL_T_COUNT; t++) {
            if (!strchr(s->targets, at_letters[t]))
                continue;
            int64_t in, out, r = s->rank[t] ? s->rank[t] : 4;
            at_dims(t, &in, &out);
            for (int k = 0; k < 3; k++) {
                if (k == 2 && !s->bias)
                    continue;
                snprintf(names[n], sizeof names[n], "base_model.model.model.layers.%d.%s.%s.%s", l,
                         t <= AL_T_O ? "self_attn" : "mlp", al_target_module((al_target)t),
                         k == 0 ? "lora_A.weight" : k == 1 ? "lora_B.weight" : "lora_B.bias");
                if (s->skip && !strcmp(s->skip, names[n]))
                    continue;
                al_st_wtensor *w = &ts[n];
                *w = (al_st_wtensor){.name = names[n], .dtype = AL_DT_F32, .n_dims = k == 2 ? 1 : 2};
                w->shape[0] = k == 0 ? r : out;
                w->shape[1] = k == 0 ? in : r;
                if (s->bad && !strcmp(s->bad, names[n]))
                    w->shape[1]++;
                int64_t ne = w->shape[0] * (k == 2 ? 1 : w->shape[1]);
                assert_true(ne <= 128);
                for (int64_t i = 0; i < ne; i++)
                    data[n][i] = k == 2 ? 0.5f + (float)i
                                        : (k ? -1.0f : 1.0f) * (100.0f * l + 10.0f * t + (float)i / 64.0f);
                w->data = data[n];
                n++;
            }
        }
    if (s->extra) {
        snprintf(names[n], sizeof names[n], "%s", s->extra);
        ts[n] = (al_st_wtensor){.name = names[n], .dtype = AL_DT_F32, .n_dims = 1, .shape = {1}};
        data[n][0] = 1;
        ts[n].data = data[n];
        n++;
    }
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", dir);
    assert_int_equal(al_st_write(p, ts, n), AL_OK);
    return dir;
}

static al_adapter *at_load_ok(const char *dir)
{
    al_adapter *a = NULL;
    al_err e = al_adapter_load(dir, &at_cfg, &a);
    if (e != AL_OK)
        fail_msg("load %s: %s: %s", dir, al_strerror(e), al_errmsg());
    return a;
}

#define AT_CFG(extra)                                                                              \
    "{\"peft_type\":\"LORA\",\"r\":4,\"lora_alpha\":8,\"target_modules\":[\"q_proj\",\"v_proj\"]" \
    extra "}"

static void test_plain_lora(void **state)
{
    at_spec s = {.cfg = AT_CFG(",\"use_rslora\":false,\"modules_to_save\":null,\"layers_to_transform\":null,"
                               "\"rank_pattern\":{},\"alpha_pattern\":{},\"use_dora\":false"),
                 .targets = "qv"};
    const char *dir = at_write("plain", &s);
    al_adapter *a = at_load_ok(dir);
    assert_string_equal(a->name, "plain");
    assert_int_equal(a->n_layers, 2);
    assert_null(a->invocation);
    assert_int_equal(a->n_invocation, 0);
    assert_null(a->invocation_string);
    assert_int_equal(a->max_rank, 4);
    assert_int_equal(al_adapter_activation_start(a, (int32_t[]){3, 4}, 2), 0);
    const al_lora_mod *q1 = al_adapter_mod(a, 1, AL_T_Q);
    assert_int_equal(q1->r, 4);
    assert_int_equal(q1->in, 8);
    assert_int_equal(q1->out, 8);
    assert_true(q1->scale == 2.0f);
    assert_null(q1->bias);
    assert_true(q1->A[0] == 100.0f);
    assert_true(q1->A[31] == 100.0f + 31.0f / 64.0f);
    assert_true(q1->B[31] == -(100.0f + 31.0f / 64.0f));
    const al_lora_mod *v0 = al_adapter_mod(a, 0, AL_T_V);
    assert_int_equal(v0->out, 4);
    assert_true(v0->A[5] == 20.0f + 5.0f / 64.0f);
    assert_int_equal(al_adapter_mod(a, 0, AL_T_K)->r, 0);
    assert_int_equal(al_adapter_mod(a, 1, AL_T_DOWN)->r, 0);
    assert_null(al_adapter_mod(a, 1, AL_T_DOWN)->A);

    /* Digest: XXH64 of the config bytes followed by the safetensors bytes. */
    char p[700], *c1, *c2;
    size_t n1, n2;
    snprintf(p, sizeof p, "%s/adapter_config.json", dir);
    assert_int_equal(ali_read_file(p, 1 << 20, &c1, &n1), AL_OK);
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", dir);
    assert_int_equal(ali_read_file(p, 1 << 20, &c2, &n2), AL_OK);
    char *cat = malloc(n1 + n2);
    memcpy(cat, c1, n1);
    memcpy(cat + n1, c2, n2);
    assert_true(a->digest == XXH64(cat, n1 + n2, 0));
    free(cat);
    free(c1);
    free(c2);
    uint64_t d1 = a->digest;
    al_adapter_free(a);
    /* Another seed of values (alpha changes the config) changes the digest. */
    s.cfg = AT_CFG(",\"lora_alpha\":9");
    a = at_load_ok(at_write("plain2", &s));
    assert_true(a->digest != d1);
    assert_true(a->mods[AL_T_Q].scale == 2.25f);
    al_adapter_free(a);

    /* Every target, string target_modules naming one module. */
    s = (at_spec){.cfg = "{\"peft_type\":\"LORA\",\"r\":4,\"lora_alpha\":4,\"target_modules\":[\"q_proj\","
                         "\"k_proj\",\"v_proj\",\"o_proj\",\"gate_proj\",\"up_proj\",\"down_proj\"]}",
                  .targets = "qkvogud"};
    a = at_load_ok(at_write("all", &s));
    const al_lora_mod *d = al_adapter_mod(a, 1, AL_T_DOWN);
    assert_int_equal(d->in, 12);
    assert_int_equal(d->out, 8);
    assert_true(d->scale == 1.0f);
    assert_true(d->A[47] == 160.0f + 47.0f / 64.0f);
    assert_int_equal(al_adapter_mod(a, 0, AL_T_GATE)->out, 12);
    al_adapter_free(a);
    s = (at_spec){.cfg = "{\"peft_type\":\"LORA\",\"r\":4,\"lora_alpha\":4,\"target_modules\":\"o_proj\"}",
                  .targets = "o"};
    a = at_load_ok(at_write("stringtarget", &s));
    assert_int_equal(al_adapter_mod(a, 0, AL_T_O)->r, 4);
    assert_int_equal(al_adapter_mod(a, 0, AL_T_Q)->r, 0);
    al_adapter_free(a);
}

static void test_alora_and_legacy(void **state)
{
    at_spec s = {.cfg = AT_CFG(",\"alora_invocation_tokens\":[5,6,7]"), .targets = "qv"};
    al_adapter *a = at_load_ok(at_write("alora", &s));
    assert_int_equal(a->n_invocation, 3);
    assert_int_equal(a->invocation[0], 5);
    assert_int_equal(a->invocation[2], 7);
    assert_int_equal(al_adapter_activation_start(a, (int32_t[]){1, 5, 6, 7, 9, 5, 6, 7, 3}, 9), 5);
    assert_int_equal(al_adapter_activation_start(a, (int32_t[]){1, 5, 6}, 3), -1);
    al_adapter_free(a);
    s.cfg = AT_CFG(",\"invocation_string\":\"<|start_of_role|>certainty<|end_of_role|>\"");
    a = at_load_ok(at_write("legacy", &s));
    assert_null(a->invocation);
    assert_string_equal(a->invocation_string, "<|start_of_role|>certainty<|end_of_role|>");
    al_adapter_free(a);
}

static void test_rslora_and_patterns(void **state)
{
    at_spec s = {.cfg = AT_CFG(",\"use_rslora\":true"), .targets = "qv"};
    al_adapter *a = at_load_ok(at_write("rslora", &s));
    assert_true(al_adapter_mod(a, 0, AL_T_Q)->scale == 4.0f); /* 8 / sqrt(4) */
    al_adapter_free(a);

    /* q has rank 2 everywhere; k in layer 1 gets alpha 16; v (regex key) alpha 6; "proj" must not
     * match "q_proj" (PEFT needs a '.' before the key). */
    s = (at_spec){.cfg = "{\"peft_type\":\"LORA\",\"r\":4,\"lora_alpha\":8,"
                         "\"target_modules\":[\"q_proj\",\"k_proj\",\"v_proj\"],"
                         "\"rank_pattern\":{\"q_proj\":2},"
                         "\"alpha_pattern\":{\"proj\":100,\"model.layers.1.self_attn.k_proj\":16,"
                         "\"layers\\\\.[0-9]+\\\\.self_attn\\\\.v_proj\":6}}",
                  .targets = "qkv",
                  .rank = {[AL_T_Q] = 2}};
    a = at_load_ok(at_write("patterns", &s));
    assert_int_equal(al_adapter_mod(a, 0, AL_T_Q)->r, 2);
    assert_int_equal(al_adapter_mod(a, 1, AL_T_Q)->r, 2);
    assert_true(al_adapter_mod(a, 1, AL_T_Q)->scale == 4.0f); /* 8 / 2 */
    assert_int_equal(al_adapter_mod(a, 0, AL_T_K)->r, 4);
    assert_true(al_adapter_mod(a, 0, AL_T_K)->scale == 2.0f);  /* 8 / 4 */
    assert_true(al_adapter_mod(a, 1, AL_T_K)->scale == 4.0f);  /* 16 / 4 */
    assert_true(al_adapter_mod(a, 0, AL_T_V)->scale == 1.5f);  /* 6 / 4 */
    assert_true(al_adapter_mod(a, 1, AL_T_V)->scale == 1.5f);
    assert_int_equal(a->max_rank, 4);
    al_adapter_free(a);

    /* Tensors of rank 4 where rank_pattern says 2. */
    s.rank[AL_T_Q] = 0;
    al_adapter *b = (al_adapter *)1;
    assert_int_equal(al_adapter_load(at_write("patterns-bad", &s), &at_cfg, &b), AL_EFORMAT);
    assert_null(b);
    assert_non_null(strstr(al_errmsg(), "layers.0.self_attn.q_proj.lora_A.weight"));
    /* A broken regex key. */
    s = (at_spec){.cfg = AT_CFG(",\"alpha_pattern\":{\"q_proj(\":2}"), .targets = "qv"};
    assert_int_equal(al_adapter_load(at_write("patterns-re", &s), &at_cfg, &b), AL_EFORMAT);
    assert_non_null(strstr(al_errmsg(), "q_proj("));
}

static void test_bias(void **state)
{
    at_spec s = {.cfg = AT_CFG(",\"lora_bias\":true"), .targets = "qv", .bias = 1};
    al_adapter *a = at_load_ok(at_write("bias", &s));
    const al_lora_mod *v1 = al_adapter_mod(a, 1, AL_T_V);
    assert_non_null(v1->bias);
    assert_true(v1->bias[0] == 0.5f && v1->bias[3] == 3.5f);
    assert_non_null(al_adapter_mod(a, 0, AL_T_Q)->bias);
    al_adapter_free(a);
    al_adapter *b = NULL;
    s.skip = "base_model.model.model.layers.1.self_attn.q_proj.lora_B.bias";
    assert_int_equal(al_adapter_load(at_write("bias-missing", &s), &at_cfg, &b), AL_ENOTFOUND);
    assert_non_null(strstr(al_errmsg(), s.skip));
    s = (at_spec){.cfg = AT_CFG(""), .targets = "qv", .bias = 1};
    assert_int_equal(al_adapter_load(at_write("bias-unexpected", &s), &at_cfg, &b), AL_EFORMAT);
    assert_non_null(strstr(al_errmsg(), "lora_B.bias"));
}

typedef struct at_bad {
    const char *name;
    at_spec spec;
    al_err err;
    const char *must;
} at_bad;

static void test_rejections(void **state)
{
    static const at_bad cases[] = {
        {"dora", {.cfg = AT_CFG(",\"use_dora\":true"), .targets = "qv"}, AL_EUNSUPPORTED, "use_dora"},
        {"mts", {.cfg = AT_CFG(",\"modules_to_save\":[\"lm_head\"]"), .targets = "qv"}, AL_EUNSUPPORTED,
         "modules_to_save"},
        {"fifo", {.cfg = AT_CFG(",\"fan_in_fan_out\":true"), .targets = "qv"}, AL_EUNSUPPORTED,
         "fan_in_fan_out"},
        {"ltt", {.cfg = AT_CFG(",\"layers_to_transform\":[0]"), .targets = "qv"}, AL_EUNSUPPORTED,
         "layers_to_transform"},
        {"embed",
         {.cfg = "{\"peft_type\":\"LORA\",\"r\":4,\"lora_alpha\":8,\"target_modules\":[\"q_proj\",\"embed_tokens\"]}",
          .targets = "q"},
         AL_EUNSUPPORTED, "embed_tokens"},
        {"lmhead",
         {.cfg = "{\"peft_type\":\"LORA\",\"r\":4,\"lora_alpha\":8,\"target_modules\":[\"lm_head\"]}", .targets = "q"},
         AL_EUNSUPPORTED, "lm_head"},
        {"unknown-target",
         {.cfg = "{\"peft_type\":\"LORA\",\"r\":4,\"lora_alpha\":8,\"target_modules\":[\"qkv_proj\"]}", .targets = "q"},
         AL_EUNSUPPORTED, "qkv_proj"},
        {"regex-target",
         {.cfg = "{\"peft_type\":\"LORA\",\"r\":4,\"lora_alpha\":8,\"target_modules\":\".*\\\\.(q|v)_proj\"}",
          .targets = "qv"},
         AL_EUNSUPPORTED, "(q|v)_proj"},
        {"peft-type", {.cfg = "{\"peft_type\":\"IA3\",\"target_modules\":[\"q_proj\"]}", .targets = "q"},
         AL_EUNSUPPORTED, "peft_type"},
        {"no-targets", {.cfg = "{\"peft_type\":\"LORA\",\"r\":4}", .targets = "q"}, AL_EFORMAT, "target_modules"},
        {"bad-json", {.cfg = "{\"peft_type\":", .targets = "q"}, AL_EFORMAT, "adapter_config.json"},
        {"shape-in",
         {.cfg = AT_CFG(""), .targets = "qv", .bad = "base_model.model.model.layers.1.self_attn.v_proj.lora_A.weight"},
         AL_EFORMAT, "layers.1.self_attn.v_proj.lora_A.weight"},
        {"shape-r",
         {.cfg = AT_CFG(""), .targets = "qv", .bad = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"},
         AL_EFORMAT, "layers.0.self_attn.q_proj.lora_B.weight"},
        {"missing-b",
         {.cfg = AT_CFG(""), .targets = "qv", .skip = "base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight"},
         AL_ENOTFOUND, "layers.1.self_attn.q_proj.lora_B.weight"},
        {"missing-layer", {.cfg = AT_CFG(""), .targets = "qv", .layers = 1}, AL_ENOTFOUND, "layers.1.self_attn.q_proj"},
        {"extra-layer", {.cfg = AT_CFG(""), .targets = "qv", .layers = 3}, AL_ERANGE, "layers.2."},
        {"untargeted", {.cfg = AT_CFG(""), .targets = "qvk"}, AL_EFORMAT, "k_proj"},
        {"unknown-tensor", {.cfg = AT_CFG(""), .targets = "qv", .extra = "base_model.model.lm_head.weight"},
         AL_EFORMAT, "base_model.model.lm_head.weight"},
        {"dora-tensor",
         {.cfg = AT_CFG(""), .targets = "qv",
          .extra = "base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector"},
         AL_EFORMAT, "lora_magnitude_vector"},
        {"inv-vocab", {.cfg = AT_CFG(",\"alora_invocation_tokens\":[5,32]"), .targets = "qv"}, AL_ERANGE,
         "alora_invocation_tokens"},
        {"inv-neg", {.cfg = AT_CFG(",\"alora_invocation_tokens\":[-1]"), .targets = "qv"}, AL_ERANGE,
         "alora_invocation_tokens"},
        {"inv-empty", {.cfg = AT_CFG(",\"alora_invocation_tokens\":[]"), .targets = "qv"}, AL_EFORMAT,
         "alora_invocation_tokens"},
        {"inv-type", {.cfg = AT_CFG(",\"alora_invocation_tokens\":[\"5\"]"), .targets = "qv"}, AL_EFORMAT,
         "alora_invocation_tokens"},
        {"r-zero", {.cfg = AT_CFG(",\"r\":0"), .targets = "qv"}, AL_ERANGE, "'r'"},
    };
    for (size_t i = 0; i < AL_ARRAY_LEN(cases); i++) {
        al_adapter *a = (al_adapter *)1;
        const char *dir = at_write(cases[i].name, &cases[i].spec);
        al_err e = al_adapter_load(dir, &at_cfg, &a);
        if (e != cases[i].err)
            fail_msg("%s: got %s (%s), want %s", cases[i].name, al_strerror(e), al_errmsg(),
                     al_strerror(cases[i].err));
        assert_null(a);
        if (!strstr(al_errmsg(), cases[i].must) || !strstr(al_errmsg(), dir))
            fail_msg("%s: message '%s' lacks '%s' or the path", cases[i].name, al_errmsg(), cases[i].must);
    }
    /* No directory at all. */
    al_adapter *a;
    char nodir[600];
    snprintf(nodir, sizeof nodir, "%s/absent", at_dir);
    assert_int_equal(al_adapter_load(nodir, &at_cfg, &a), AL_ENOTFOUND);
}

static void test_shared_isense(void **state)
{
    const char *sh = al_test_shared();
    char mdir[1024], adir[1024];
    if (sh) {
        snprintf(mdir, sizeof mdir, "%s/models/aidreams260K/hf", sh);
        snprintf(adir, sizeof adir, "%s/models/aidreams260K/alora-isense/peft", sh);
    }
    if (!sh || access(adir, R_OK) != 0 || access(mdir, R_OK) != 0)
        skip();
    al_model_config c;
    assert_int_equal(al_config_load(mdir, &c), AL_OK);
    al_adapter *a;
    al_err e = al_adapter_load(adir, &c, &a);
    if (e != AL_OK)
        fail_msg("%s", al_errmsg());
    assert_string_equal(a->name, "peft");
    assert_int_equal(a->n_layers, 4);
    assert_int_equal(a->max_rank, 4);
    assert_int_equal(a->n_invocation, 4);
    assert_int_equal(a->invocation[0], 303);
    assert_int_equal(a->invocation[1], 266);
    assert_int_equal(a->invocation[2], 358);
    assert_int_equal(a->invocation[3], 430);
    for (int l = 0; l < 4; l++) {
        for (int t = AL_T_Q; t <= AL_T_V; t++) {
            const al_lora_mod *m = al_adapter_mod(a, l, (al_target)t);
            assert_int_equal(m->r, 4);
            assert_int_equal(m->in, 64);
            assert_int_equal(m->out, 64);
            assert_true(m->scale == 2.0f);
            assert_null(m->bias);
        }
        for (int t = AL_T_O; t < AL_T_COUNT; t++)
            assert_int_equal(al_adapter_mod(a, l, (al_target)t)->r, 0);
    }
    /* Values read with Python's safetensors. */
    assert_true(al_adapter_mod(a, 0, AL_T_Q)->A[0] == -0.2004796f);
    assert_true(al_adapter_mod(a, 3, AL_T_V)->B[63 * 4 + 3] == -0.056611866f);
    assert_int_equal(al_adapter_activation_start(a, (int32_t[]){1, 400, 303, 266, 358, 430, 13}, 7), 2);
    al_adapter_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matcher),
        cmocka_unit_test(test_targets),
        cmocka_unit_test(test_plain_lora),
        cmocka_unit_test(test_alora_and_legacy),
        cmocka_unit_test(test_rslora_and_patterns),
        cmocka_unit_test(test_bias),
        cmocka_unit_test(test_rejections),
        cmocka_unit_test(test_shared_isense),
    };
    return cmocka_run_group_tests(tests, at_setup, at_teardown);
}
