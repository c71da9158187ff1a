/* model_test.c: HF config parsing (Llama, Granite), the f32 weight layout, and model loading. */
#include "al_test.h"

#include <math.h>
#include <sys/stat.h>

#include "common/model/model.h"
#include "common/model/safetensors.h"
#include "common/util.h"

static char *mt_dir;

static int mt_setup(void **state)
{
    mt_dir = al_test_tmpdir();
    return mt_dir ? 0 : -1;
}

static int mt_teardown(void **state)
{
    al_test_rmrf(mt_dir);
    free(mt_dir);
    return 0;
}

#define MT_LLAMA_BASE                                                                              \
    "\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":16,\"hidden_size\":8,"                \
    "\"intermediate_size\":12,\"num_hidden_layers\":2,\"num_attention_heads\":2"

static al_model_config mt_parse_ok(const char *json)
{
    al_model_config c;
    al_err e = al_config_parse(json, "test.json", &c);
    if (e != AL_OK)
        fail_msg("parse failed: %s: %s", al_strerror(e), al_errmsg());
    return c;
}

static void test_parse_llama_defaults(void **state)
{
    al_model_config c = mt_parse_ok("{" MT_LLAMA_BASE ", \"_name_or_path\": \"meta/tiny\"}");
    assert_int_equal(c.arch, AL_ARCH_LLAMA);
    assert_string_equal(c.name, "meta/tiny");
    assert_int_equal(c.vocab_size, 16);
    assert_int_equal(c.hidden_size, 8);
    assert_int_equal(c.intermediate_size, 12);
    assert_int_equal(c.n_layers, 2);
    assert_int_equal(c.n_heads, 2);
    assert_int_equal(c.n_kv_heads, 2); /* default = heads */
    assert_int_equal(c.head_dim, 4);   /* default = hidden / heads */
    assert_int_equal(c.max_position_embeddings, 2048);
    assert_true(c.rms_eps == 1e-6f);
    assert_true(c.rope_theta == 10000.0f);
    assert_int_equal(c.rope_llama3, 0);
    assert_int_equal(c.tie_word_embeddings, 0);
    assert_true(c.embedding_multiplier == 1.0f);
    assert_true(c.attention_multiplier == 0.5f); /* 1/sqrt(4) */
    assert_true(c.residual_multiplier == 1.0f);
    assert_true(c.logits_scaling == 1.0f);
    assert_int_equal(c.bos_token_id, -1);
    assert_int_equal(c.n_eos, 0);
    assert_int_equal(c.dtype, AL_DT_F32);
    assert_false(al_model_is_eos(&c, 2));

    /* model_type only, explicit values, torch_dtype. */
    c = mt_parse_ok("{\"model_type\":\"llama\",\"vocab_size\":16,\"hidden_size\":8,\"intermediate_size\":12,"
                    "\"num_hidden_layers\":1,\"num_attention_heads\":2,\"rms_norm_eps\":1e-5,"
                    "\"rope_theta\":500000.0,\"max_position_embeddings\":128,\"tie_word_embeddings\":true,"
                    "\"bos_token_id\":1,\"eos_token_id\":2,\"torch_dtype\":\"bfloat16\",\"hidden_act\":\"silu\","
                    "\"attention_bias\":false,\"mlp_bias\":false,\"rope_scaling\":null}");
    assert_int_equal(c.arch, AL_ARCH_LLAMA);
    assert_true(c.rms_eps == 1e-5f);
    assert_true(c.rope_theta == 500000.0f);
    assert_int_equal(c.max_position_embeddings, 128);
    assert_int_equal(c.tie_word_embeddings, 1);
    assert_int_equal(c.bos_token_id, 1);
    assert_int_equal(c.n_eos, 1);
    assert_int_equal(c.eos_token_ids[0], 2);
    assert_true(al_model_is_eos(&c, 2));
    assert_false(al_model_is_eos(&c, 1));
    assert_int_equal(c.dtype, AL_DT_BF16);
    assert_string_equal(c.name, "");
}

static void test_parse_granite(void **state)
{
    al_model_config c = mt_parse_ok(
        "{\"architectures\":[\"GraniteForCausalLM\"],\"model_type\":\"granite\",\"vocab_size\":49155,"
        "\"hidden_size\":2048,\"intermediate_size\":8192,\"num_hidden_layers\":40,\"num_attention_heads\":32,"
        "\"num_key_value_heads\":8,\"embedding_multiplier\":12.0,\"attention_multiplier\":0.015625,"
        "\"residual_multiplier\":0.22,\"logits_scaling\":8.0,\"torch_dtype\":\"float16\","
        "\"eos_token_id\":0,\"bos_token_id\":0}");
    assert_int_equal(c.arch, AL_ARCH_GRANITE);
    assert_int_equal(c.head_dim, 64);
    assert_int_equal(c.n_kv_heads, 8);
    assert_true(c.embedding_multiplier == 12.0f);
    assert_true(c.attention_multiplier == 0.015625f);
    assert_true(c.residual_multiplier == 0.22f);
    assert_true(c.logits_scaling == 8.0f);
    assert_int_equal(c.dtype, AL_DT_F16);
    /* Granite defaults are 1.0; model_type alone picks the architecture. */
    c = mt_parse_ok("{\"model_type\":\"granite\",\"vocab_size\":16,\"hidden_size\":8,\"intermediate_size\":12,"
                    "\"num_hidden_layers\":1,\"num_attention_heads\":2}");
    assert_int_equal(c.arch, AL_ARCH_GRANITE);
    assert_true(c.embedding_multiplier == 1.0f && c.attention_multiplier == 1.0f);
    assert_true(c.residual_multiplier == 1.0f && c.logits_scaling == 1.0f);
}

static void test_parse_llama3_gqa(void **state)
{
    /* Llama-3.2-3B-like: head_dim given, GQA 24/8, llama3 rope scaling, eos list. */
    al_model_config c = mt_parse_ok(
        "{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":128256,\"hidden_size\":3072,"
        "\"intermediate_size\":8192,\"num_hidden_layers\":28,\"num_attention_heads\":24,"
        "\"num_key_value_heads\":8,\"head_dim\":128,\"max_position_embeddings\":131072,"
        "\"rope_theta\":500000.0,\"rope_scaling\":{\"factor\":32.0,\"high_freq_factor\":4.0,"
        "\"low_freq_factor\":1.0,\"original_max_position_embeddings\":8192,\"rope_type\":\"llama3\"},"
        "\"tie_word_embeddings\":true,\"bos_token_id\":128000,\"eos_token_id\":[128001,128008,128009]}");
    assert_int_equal(c.n_heads, 24);
    assert_int_equal(c.n_kv_heads, 8);
    assert_int_equal(c.head_dim, 128);
    assert_true(fabsf(c.attention_multiplier - 0.08838834764f) < 1e-7f);
    assert_int_equal(c.rope_llama3, 1);
    assert_true(c.rope_factor == 32.0f);
    assert_true(c.rope_low_freq_factor == 1.0f);
    assert_true(c.rope_high_freq_factor == 4.0f);
    assert_int_equal(c.rope_original_max_pos, 8192);
    assert_int_equal(c.n_eos, 3);
    assert_int_equal(c.eos_token_ids[2], 128009);
    assert_true(al_model_is_eos(&c, 128008));
    assert_false(al_model_is_eos(&c, 128000));
    /* "type" spelling, and "default" = no scaling. */
    c = mt_parse_ok("{" MT_LLAMA_BASE ",\"rope_scaling\":{\"type\":\"llama3\",\"factor\":8,"
                    "\"low_freq_factor\":1,\"high_freq_factor\":4,\"original_max_position_embeddings\":8192}}");
    assert_int_equal(c.rope_llama3, 1);
    assert_true(c.rope_factor == 8.0f);
    c = mt_parse_ok("{" MT_LLAMA_BASE ",\"rope_scaling\":{\"rope_type\":\"default\"}}");
    assert_int_equal(c.rope_llama3, 0);
    /* transformers 5 layout: rope_parameters holds rope_theta and the scaling fields. */
    c = mt_parse_ok("{" MT_LLAMA_BASE ",\"rope_parameters\":{\"rope_theta\":500000.0,\"rope_type\":\"llama3\","
                    "\"factor\":16,\"low_freq_factor\":1,\"high_freq_factor\":4,"
                    "\"original_max_position_embeddings\":4096}}");
    assert_true(c.rope_theta == 500000.0f);
    assert_int_equal(c.rope_llama3, 1);
    assert_true(c.rope_factor == 16.0f);
    assert_int_equal(c.rope_original_max_pos, 4096);
    c = mt_parse_ok("{" MT_LLAMA_BASE ",\"rope_parameters\":{\"rope_theta\":1234.0,\"rope_type\":\"default\"}}");
    assert_true(c.rope_theta == 1234.0f);
    assert_int_equal(c.rope_llama3, 0);
}

typedef struct mt_bad {
    const char *json;
    al_err err;
    const char *must;
} mt_bad;

static void test_parse_rejections(void **state)
{
    static const mt_bad cases[] = {
        {"{" MT_LLAMA_BASE ",\"attention_bias\":true}", AL_EUNSUPPORTED, "attention_bias"},
        {"{" MT_LLAMA_BASE ",\"mlp_bias\":true}", AL_EUNSUPPORTED, "mlp_bias"},
        {"{" MT_LLAMA_BASE ",\"hidden_act\":\"gelu\"}", AL_EUNSUPPORTED, "hidden_act"},
        {"{\"architectures\":[\"MistralForCausalLM\"],\"vocab_size\":16}", AL_EUNSUPPORTED, "MistralForCausalLM"},
        {"{\"model_type\":\"gpt2\",\"vocab_size\":16}", AL_EUNSUPPORTED, "gpt2"},
        {"{\"vocab_size\":16}", AL_EUNSUPPORTED, "architecture"},
        {"{\"architectures\":[],\"vocab_size\":16}", AL_EFORMAT, "architectures"},
        {"{" MT_LLAMA_BASE ",\"rope_scaling\":{\"rope_type\":\"linear\",\"factor\":2}}", AL_EUNSUPPORTED,
         "linear"},
        {"{" MT_LLAMA_BASE ",\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8}}", AL_EFORMAT,
         "low_freq_factor"},
        {"{" MT_LLAMA_BASE ",\"rope_scaling\":[1]}", AL_EFORMAT, "rope_scaling"},
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":16,\"hidden_size\":8,"
         "\"intermediate_size\":12,\"num_hidden_layers\":2}",
         AL_EFORMAT, "num_attention_heads"},
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":16,\"hidden_size\":0,"
         "\"intermediate_size\":12,\"num_hidden_layers\":2,\"num_attention_heads\":2}",
         AL_ERANGE, "hidden_size"},
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":16,\"hidden_size\":-8,"
         "\"intermediate_size\":12,\"num_hidden_layers\":2,\"num_attention_heads\":2}",
         AL_ERANGE, "hidden_size"},
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":4194304,\"hidden_size\":8,"
         "\"intermediate_size\":12,\"num_hidden_layers\":2,\"num_attention_heads\":2}",
         AL_ERANGE, "vocab_size"},
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":16,\"hidden_size\":1048576,"
         "\"intermediate_size\":12,\"num_hidden_layers\":2,\"num_attention_heads\":2}",
         AL_ERANGE, "hidden_size"},
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":16,\"hidden_size\":\"8\","
         "\"intermediate_size\":12,\"num_hidden_layers\":2,\"num_attention_heads\":2}",
         AL_EFORMAT, "hidden_size"},
        {"{" MT_LLAMA_BASE ",\"num_key_value_heads\":3}", AL_ERANGE, "num_key_value_heads"},
        {"{" MT_LLAMA_BASE ",\"num_key_value_heads\":4}", AL_ERANGE, "num_key_value_heads"},
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":16,\"hidden_size\":9,"
         "\"intermediate_size\":12,\"num_hidden_layers\":2,\"num_attention_heads\":2}",
         AL_ERANGE, "hidden_size"},
        {"{" MT_LLAMA_BASE ",\"rms_norm_eps\":0}", AL_ERANGE, "rms_norm_eps"},
        {"{" MT_LLAMA_BASE ",\"rms_norm_eps\":-1e-5}", AL_ERANGE, "rms_norm_eps"},
        {"{" MT_LLAMA_BASE ",\"rope_theta\":0}", AL_ERANGE, "rope_theta"},
        {"{" MT_LLAMA_BASE ",\"eos_token_id\":16}", AL_ERANGE, "eos_token_id"},
        {"{" MT_LLAMA_BASE ",\"eos_token_id\":[1,2,3,4,5,6,7,8,9]}", AL_ERANGE, "eos_token_id"},
        {"{" MT_LLAMA_BASE ",\"eos_token_id\":\"2\"}", AL_EFORMAT, "eos_token_id"},
        {"{" MT_LLAMA_BASE ",\"bos_token_id\":-1}", AL_ERANGE, "bos_token_id"},
        {"{" MT_LLAMA_BASE ",\"tie_word_embeddings\":1}", AL_EFORMAT, "tie_word_embeddings"},
        {"{" MT_LLAMA_BASE ",\"num_hidden_layers\":5000}", AL_ERANGE, "num_hidden_layers"},
        {"{" MT_LLAMA_BASE, AL_EFORMAT, "JSON"},
        {"[1]", AL_EFORMAT, "object"},
    };
    for (size_t i = 0; i < AL_ARRAY_LEN(cases); i++) {
        al_model_config c;
        al_err e = al_config_parse(cases[i].json, "cfg.json", &c);
        if (e != cases[i].err)
            fail_msg("case %zu: got %s (%s), want %s", i, al_strerror(e), al_errmsg(),
                     al_strerror(cases[i].err));
        if (!strstr(al_errmsg(), cases[i].must) || !strstr(al_errmsg(), "cfg.json"))
            fail_msg("case %zu: message '%s' lacks '%s' or the file name", i, al_errmsg(), cases[i].must);
    }
}

static void test_layout(void **state)
{
    /* tiny preset: V256 H64 L2 nh4 nkv2 hd16 I128 (every tensor already a multiple of 64 bytes). */
    al_model_config c = mt_parse_ok(
        "{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":256,\"hidden_size\":64,"
        "\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
        "\"num_key_value_heads\":2,\"head_dim\":16}");
    /* embed 65536 + 2 x (256 + 16384 + 8192 + 8192 + 16384 + 256 + 3 x 32768 = 147968) + 256
     * + lm_head 65536 */
    assert_int_equal(al_weights_layout_bytes(&c), 427264);
    c.tie_word_embeddings = 1;
    assert_int_equal(al_weights_layout_bytes(&c), 361728);

    /* Odd sizes: every tensor padded to 64 bytes. V7 H6 L1 nh2 nkv1 hd3 I5. */
    c = mt_parse_ok("{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":7,\"hidden_size\":6,"
                    "\"intermediate_size\":5,\"num_hidden_layers\":1,\"num_attention_heads\":2,"
                    "\"num_key_value_heads\":1}");
    assert_int_equal(c.head_dim, 3);
    /* embed 168->192; layer 64+192+128+128+192+64+128+128+128 = 1152; norm 64; lm_head 192 */
    size_t bytes = al_weights_layout_bytes(&c);
    assert_int_equal(bytes, 1600);
    void *base = ali_aligned_alloc(bytes);
    al_weights w;
    assert_int_equal(al_weights_bind(&c, base, &w), AL_OK);
    char *b = base;
    assert_ptr_equal((char *)w.embed, b);
    assert_ptr_equal((char *)w.layers[0].attn_norm, b + 192);
    assert_ptr_equal((char *)w.layers[0].wq, b + 256);
    assert_ptr_equal((char *)w.layers[0].wk, b + 448);
    assert_ptr_equal((char *)w.layers[0].wv, b + 576);
    assert_ptr_equal((char *)w.layers[0].wo, b + 704);
    assert_ptr_equal((char *)w.layers[0].ffn_norm, b + 896);
    assert_ptr_equal((char *)w.layers[0].w_gate, b + 960);
    assert_ptr_equal((char *)w.layers[0].w_up, b + 1088);
    assert_ptr_equal((char *)w.layers[0].w_down, b + 1216);
    assert_ptr_equal((char *)w.norm, b + 1344);
    assert_ptr_equal((char *)w.lm_head, b + 1408);
    al_weights_unbind(&w);
    c.tie_word_embeddings = 1;
    assert_int_equal(al_weights_bind(&c, base, &w), AL_OK);
    assert_ptr_equal(w.lm_head, w.embed);
    al_weights_unbind(&w);
    /* Misaligned base is refused. */
    assert_int_equal(al_weights_bind(&c, b + 4, &w), AL_EINVAL);
    ali_aligned_free(base);
}

/* ---- a model written the way make-model writes one ---- */

#define MT_TINY_CFG                                                                                \
    "{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":16,\"hidden_size\":8,"               \
    "\"intermediate_size\":12,\"num_hidden_layers\":2,\"num_attention_heads\":2,"                  \
    "\"num_key_value_heads\":1,\"bos_token_id\":1,\"eos_token_id\":2,\"tie_word_embeddings\":%s}"

/* Tensor k element i has value k + i/128 (exact in f32). */
static float mt_val(int k, int64_t i) { return (float)k + (float)(i % 128) / 128.0f; }

typedef struct mt_opts {
    int tied;            /* config says tied */
    int write_lm_head;   /* write lm_head.weight anyway */
    const char *skip;    /* a tensor name to leave out */
    const char *bad;     /* a tensor name to write with a wrong shape */
    al_dtype dt;
} mt_opts;

static int mt_write_model(const char *dir, const mt_opts *o)
{
    mkdir(dir, 0700);
    char p[600], cfg[1024];
    snprintf(cfg, sizeof cfg, MT_TINY_CFG, o->tied ? "true" : "false");
    snprintf(p, sizeof p, "%s/config.json", dir);
    assert_int_equal(ali_write_file(p, cfg, strlen(cfg)), AL_OK);
    static char names[32][96];
    al_st_wtensor ts[32];
    float *data[32];
    int n = 0;
    int64_t V = 16, H = 8, I = 12, q = 8, kv = 4;
    struct {
        const char *suffix;
        int nd;
        int64_t a, b;
    } per[9] = {{"input_layernorm.weight", 1, H, 0},     {"self_attn.q_proj.weight", 2, q, H},
                {"self_attn.k_proj.weight", 2, kv, H},    {"self_attn.v_proj.weight", 2, kv, H},
                {"self_attn.o_proj.weight", 2, H, q},     {"post_attention_layernorm.weight", 1, H, 0},
                {"mlp.gate_proj.weight", 2, I, H},        {"mlp.up_proj.weight", 2, I, H},
                {"mlp.down_proj.weight", 2, H, I}};
#define MT_ADD(nm, nd_, a_, b_)                                                                    \
    do {                                                                                           \
        snprintf(names[n], sizeof names[n], "%s", nm);                                             \
        if (!o->skip || strcmp(o->skip, names[n])) {                                               \
            ts[n] = (al_st_wtensor){.name = names[n], .dtype = o->dt, .n_dims = nd_,               \
                                    .shape = {a_, b_}};                                            \
            if (o->bad && !strcmp(o->bad, names[n]))                                               \
                ts[n].shape[0] += 1;                                                               \
            int64_t ne = ts[n].shape[0] * (nd_ == 2 ? ts[n].shape[1] : 1);                         \
            data[n] = malloc(sizeof(float) * (size_t)ne);                                          \
            for (int64_t i_ = 0; i_ < ne; i_++)                                                    \
                data[n][i_] = mt_val(n, i_);                                                       \
            ts[n].data = data[n];                                                                  \
            n++;                                                                                   \
        }                                                                                          \
    } while (0)
    MT_ADD("model.embed_tokens.weight", 2, V, H);
    for (int l = 0; l < 2; l++)
        for (int k = 0; k < 9; k++) {
            char nm[96];
            snprintf(nm, sizeof nm, "model.layers.%d.%s", l, per[k].suffix);
            MT_ADD(nm, per[k].nd, per[k].a, per[k].b);
        }
    MT_ADD("model.norm.weight", 1, H, 0);
    if (!o->tied || o->write_lm_head)
        MT_ADD("lm_head.weight", 2, V, H);
#undef MT_ADD
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    assert_int_equal(al_st_write(p, ts, n), AL_OK);
    for (int i = 0; i < n; i++)
        free(data[i]);
    return n;
}

static void mt_subdir(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", mt_dir, name);
}

static size_t mt_alloc_calls;
static void *mt_alloc(void *ctx, size_t bytes)
{
    mt_alloc_calls++;
    *(size_t *)ctx = bytes;
    return ali_aligned_alloc(bytes);
}

static void test_load(void **state)
{
    char dir[512];
    mt_subdir(dir, sizeof dir, "untied");
    mt_opts o = {.dt = AL_DT_F32};
    assert_int_equal(mt_write_model(dir, &o), 21);
    al_model *m;
    al_err e = al_model_load(dir, &m);
    if (e != AL_OK)
        fail_msg("%s", al_errmsg());
    assert_string_equal(m->cfg.name, "untied"); /* directory basename */
    assert_int_equal(m->owns_base, 1);
    assert_int_equal(m->bytes, al_weights_layout_bytes(&m->cfg));
    assert_int_equal(m->cfg.dtype, AL_DT_F32);
    /* Tensor numbering: 0 embed, layer l tensor k = 1 + 9l + k, 19 norm, 20 lm_head. */
    assert_true(m->w.embed[0] == 0.0f);
    assert_true(m->w.embed[127] == 127.0f / 128.0f);
    assert_true(m->w.layers[0].attn_norm[3] == 1.0f + 3.0f / 128.0f);
    assert_true(m->w.layers[0].wq[9] == 2.0f + 9.0f / 128.0f);
    assert_true(m->w.layers[1].wk[31] == 12.0f + 31.0f / 128.0f);
    assert_true(m->w.layers[1].wo[5] == 14.0f + 5.0f / 128.0f);
    assert_true(m->w.layers[1].w_down[95] == 18.0f + 95.0f / 128.0f);
    assert_true(m->w.norm[7] == 19.0f + 7.0f / 128.0f);
    assert_true(m->w.lm_head[100] == 20.0f + 100.0f / 128.0f);
    assert_ptr_not_equal(m->w.lm_head, m->w.embed);
    assert_int_equal(((uintptr_t)m->w.layers[1].w_up) % 64, 0);
    assert_true(al_model_is_eos(&m->cfg, 2));

    /* A view over the same buffer sees the same weights. */
    al_model *v;
    assert_int_equal(al_model_view(&m->cfg, m->base, &v), AL_OK);
    assert_int_equal(v->owns_base, 0);
    assert_ptr_equal(v->w.layers[1].wo, m->w.layers[1].wo);
    al_model_free(v);
    al_model_free(m);

    /* Custom allocator: called once with the layout size; the model does not own the buffer. */
    size_t got = 0;
    mt_alloc_calls = 0;
    assert_int_equal(al_model_load_ex(dir, mt_alloc, &got, &m), AL_OK);
    assert_int_equal(mt_alloc_calls, 1);
    assert_int_equal(got, m->bytes);
    assert_int_equal(m->owns_base, 0);
    void *base = m->base;
    al_model_free(m);
    ali_aligned_free(base);

    /* Tied: lm_head absent, or present and ignored. */
    mt_subdir(dir, sizeof dir, "tied");
    o = (mt_opts){.tied = 1, .dt = AL_DT_F32};
    assert_int_equal(mt_write_model(dir, &o), 20);
    assert_int_equal(al_model_load(dir, &m), AL_OK);
    assert_ptr_equal(m->w.lm_head, m->w.embed);
    assert_true(m->w.norm[7] == 19.0f + 7.0f / 128.0f);
    al_model_free(m);
    mt_subdir(dir, sizeof dir, "tied-extra");
    o = (mt_opts){.tied = 1, .write_lm_head = 1, .dt = AL_DT_F32};
    assert_int_equal(mt_write_model(dir, &o), 21);
    assert_int_equal(al_model_load(dir, &m), AL_OK);
    assert_ptr_equal(m->w.lm_head, m->w.embed);
    al_model_free(m);

    /* bf16 on disk: values k + i/128 with k < 32 need at most 12 significant bits; check ones that
     * bf16 (8 bits) holds exactly. */
    mt_subdir(dir, sizeof dir, "bf16");
    o = (mt_opts){.dt = AL_DT_BF16};
    mt_write_model(dir, &o);
    assert_int_equal(al_model_load(dir, &m), AL_OK);
    assert_int_equal(m->cfg.dtype, AL_DT_BF16);
    assert_true(m->w.embed[64] == 0.5f);
    assert_true(m->w.norm[0] == 19.0f);
    assert_true(m->w.layers[0].wq[32] == 2.0f + 0.25f);
    al_model_free(m);
}

static void test_load_errors(void **state)
{
    char dir[512];
    al_model *m = (al_model *)1;
    /* Missing tensor. */
    mt_subdir(dir, sizeof dir, "missing");
    mt_opts o = {.skip = "model.layers.1.mlp.up_proj.weight"};
    mt_write_model(dir, &o);
    assert_int_equal(al_model_load(dir, &m), AL_ENOTFOUND);
    assert_null(m);
    assert_non_null(strstr(al_errmsg(), "model.layers.1.mlp.up_proj.weight"));
    assert_non_null(strstr(al_errmsg(), dir));
    /* Untied model without lm_head. */
    mt_subdir(dir, sizeof dir, "nohead");
    o = (mt_opts){.skip = "lm_head.weight"};
    mt_write_model(dir, &o);
    assert_int_equal(al_model_load(dir, &m), AL_ENOTFOUND);
    assert_non_null(strstr(al_errmsg(), "lm_head.weight"));
    /* Wrong shape. */
    mt_subdir(dir, sizeof dir, "shape");
    o = (mt_opts){.bad = "model.layers.0.self_attn.k_proj.weight"};
    mt_write_model(dir, &o);
    assert_int_equal(al_model_load(dir, &m), AL_EFORMAT);
    assert_non_null(strstr(al_errmsg(), "model.layers.0.self_attn.k_proj.weight"));
    assert_non_null(strstr(al_errmsg(), "[5, 8]"));
    assert_non_null(strstr(al_errmsg(), "expected [4, 8]"));
    /* Truncated file: the last tensor's end is beyond the data section. */
    mt_subdir(dir, sizeof dir, "trunc");
    o = (mt_opts){0};
    mt_write_model(dir, &o);
    char p[600];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(truncate(p, st.st_size - 10), 0);
    assert_int_equal(al_model_load(dir, &m), AL_EFORMAT);
    assert_non_null(strstr(al_errmsg(), p));
    assert_non_null(strstr(al_errmsg(), "lm_head.weight"));
    assert_non_null(strstr(al_errmsg(), "beyond"));
    /* No weights at all; no config. */
    mt_subdir(dir, sizeof dir, "noweights");
    mkdir(dir, 0700);
    snprintf(p, sizeof p, "%s/config.json", dir);
    char cfg[1024];
    snprintf(cfg, sizeof cfg, MT_TINY_CFG, "false");
    assert_int_equal(ali_write_file(p, cfg, strlen(cfg)), AL_OK);
    assert_int_equal(al_model_load(dir, &m), AL_ENOTFOUND);
    assert_non_null(strstr(al_errmsg(), "model.safetensors"));
    mt_subdir(dir, sizeof dir, "nothing");
    mkdir(dir, 0700);
    assert_int_equal(al_model_load(dir, &m), AL_ENOTFOUND);
    assert_non_null(strstr(al_errmsg(), "config.json"));
    /* Unsupported config in a directory. */
    mt_subdir(dir, sizeof dir, "badcfg");
    mkdir(dir, 0700);
    snprintf(p, sizeof p, "%s/config.json", dir);
    const char *bad = "{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":16,\"hidden_size\":8,"
                      "\"intermediate_size\":12,\"num_hidden_layers\":2,\"num_attention_heads\":2,"
                      "\"attention_bias\":true}";
    assert_int_equal(ali_write_file(p, bad, strlen(bad)), AL_OK);
    assert_int_equal(al_model_load(dir, &m), AL_EUNSUPPORTED);
    assert_non_null(strstr(al_errmsg(), p));
}

static void test_shared_aidreams(void **state)
{
    const char *sh = al_test_shared();
    char dir[1024];
    if (sh)
        snprintf(dir, sizeof dir, "%s/models/aidreams260K/hf", sh);
    if (!sh || access(dir, R_OK) != 0)
        skip();
    al_model *m;
    al_err e = al_model_load(dir, &m);
    if (e != AL_OK)
        fail_msg("%s", al_errmsg());
    const al_model_config *c = &m->cfg;
    assert_string_equal(c->name, "aidreams260K");
    assert_int_equal(c->arch, AL_ARCH_LLAMA);
    assert_int_equal(c->vocab_size, 512);
    assert_int_equal(c->hidden_size, 64);
    assert_int_equal(c->intermediate_size, 172);
    assert_int_equal(c->n_layers, 4);
    assert_int_equal(c->n_heads, 4);
    assert_int_equal(c->n_kv_heads, 4);
    assert_int_equal(c->head_dim, 16);
    assert_int_equal(c->max_position_embeddings, 128);
    assert_true(c->rms_eps == 1e-5f);
    assert_int_equal(c->tie_word_embeddings, 1);
    assert_int_equal(c->bos_token_id, 1);
    assert_int_equal(c->n_eos, 1);
    assert_int_equal(c->eos_token_ids[0], 2);
    assert_true(c->attention_multiplier == 0.25f);
    assert_ptr_equal(m->w.lm_head, m->w.embed);
    /* Values read with Python's safetensors. */
    assert_true(m->w.embed[0] == 0.108048834f);
    assert_true(m->w.embed[511 * 64 + 63] == -0.11452662f);
    assert_true(m->w.norm[0] == 1.3196977f);
    assert_true(m->w.layers[3].w_down[63 * 172 + 171] == 0.008416813f);
    assert_true(m->w.layers[0].wq[1 * 64 + 2] == 0.026558181f);
    al_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_llama_defaults),
        cmocka_unit_test(test_parse_granite),
        cmocka_unit_test(test_parse_llama3_gqa),
        cmocka_unit_test(test_parse_rejections),
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_load),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_shared_aidreams),
    };
    return cmocka_run_group_tests(tests, mt_setup, mt_teardown);
}
