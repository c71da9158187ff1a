/* cmd_make_model.c: `alora make-model`: writes a random-weight Llama/Granite model in the HF layout. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/model/model.h"
#include "common/model/safetensors.h"
#include "common/util.h"
#include "tools/cli_util.h"
#include "tools/cmds.h"

typedef struct cli_preset {
    const char *name;
    int V, H, L, nh, nkv, hd, I, max_pos;
    double theta;
    int tied;
    int llama3; /* rope_scaling llama3: factor 32, low 1, high 4, original 8192 */
    int bos, eos[3], n_eos;
} cli_preset;

static const cli_preset cli_presets[] = {
    {"tiny", 256, 64, 2, 4, 2, 16, 128, 512, 10000.0, 0, 0, 1, {2}, 1},
    {"small", 1024, 256, 4, 8, 4, 32, 688, 2048, 10000.0, 1, 0, 1, {2}, 1},
    {"85m", 512, 768, 12, 12, 12, 64, 2048, 2048, 10000.0, 0, 0, 1, {2}, 1},
    {"1b", 128256, 2048, 16, 32, 8, 64, 8192, 131072, 500000.0, 1, 1, 128000, {128001, 128008, 128009}, 3},
    {"8b", 128256, 4096, 32, 32, 8, 128, 14336, 8192, 500000.0, 0, 0, 128000, {128001}, 1},
};

static void cli_mm_usage(FILE *f)
{
    fprintf(f, "usage: alora make-model --arch llama|granite --preset tiny|small|85m|1b|8b\n"
               "                        [--dtype f32|bf16|f16] [--seed S] [--tied|--untied] OUT_DIR\n"
               "Writes OUT_DIR/config.json and OUT_DIR/model.safetensors with random weights\n"
               "(normal, std 0.02; norm weights 1 + small noise), deterministic for a seed.\n");
}

static int cli_mm_fail(int code, const char *msg)
{
    fprintf(stderr, "alora make-model: %s\n", msg);
    if (code == 2)
        cli_mm_usage(stderr);
    return code;
}

/* mkdir -p */
/* Normal samples from the shared rng, both Box-Muller outputs used. */
typedef struct cli_gauss {
    al_rng rng;
    int have;
    double spare;
} cli_gauss;

static double cli_gauss_next(cli_gauss *g)
{
    if (g->have) {
        g->have = 0;
        return g->spare;
    }
    double u1 = al_rng_uniform(&g->rng), u2 = al_rng_uniform(&g->rng);
    if (u1 < 1e-300)
        u1 = 1e-300;
    double r = sqrt(-2.0 * log(u1)), th = 2.0 * M_PI * u2;
    g->spare = r * sin(th);
    g->have = 1;
    return r * cos(th);
}

static al_err cli_write_config(const char *path, const cli_preset *p, int granite, int tied, al_dtype dt)
{
    json_t *o = json_object();
    json_t *arch = json_array();
    json_array_append_new(arch, json_string(granite ? "GraniteForCausalLM" : "LlamaForCausalLM"));
    json_object_set_new(o, "architectures", arch);
    json_object_set_new(o, "model_type", json_string(granite ? "granite" : "llama"));
    char name[128];
    snprintf(name, sizeof name, "alora-random-%s-%s", granite ? "granite" : "llama", p->name);
    json_object_set_new(o, "_name_or_path", json_string(name));
    json_object_set_new(o, "vocab_size", json_integer(p->V));
    json_object_set_new(o, "hidden_size", json_integer(p->H));
    json_object_set_new(o, "intermediate_size", json_integer(p->I));
    json_object_set_new(o, "num_hidden_layers", json_integer(p->L));
    json_object_set_new(o, "num_attention_heads", json_integer(p->nh));
    json_object_set_new(o, "num_key_value_heads", json_integer(p->nkv));
    json_object_set_new(o, "head_dim", json_integer(p->hd));
    json_object_set_new(o, "max_position_embeddings", json_integer(p->max_pos));
    json_object_set_new(o, "rms_norm_eps", json_real(1e-5));
    json_object_set_new(o, "rope_theta", json_real(p->theta));
    if (p->llama3) {
        json_t *rs = json_object();
        json_object_set_new(rs, "rope_type", json_string("llama3"));
        json_object_set_new(rs, "factor", json_real(32.0));
        json_object_set_new(rs, "low_freq_factor", json_real(1.0));
        json_object_set_new(rs, "high_freq_factor", json_real(4.0));
        json_object_set_new(rs, "original_max_position_embeddings", json_integer(8192));
        json_object_set_new(o, "rope_scaling", rs);
    } else {
        json_object_set_new(o, "rope_scaling", json_null());
    }
    json_object_set_new(o, "hidden_act", json_string("silu"));
    json_object_set_new(o, "tie_word_embeddings", json_boolean(tied));
    json_object_set_new(o, "attention_bias", json_false());
    json_object_set_new(o, "mlp_bias", json_false());
    json_object_set_new(o, "bos_token_id", json_integer(p->bos));
    if (p->n_eos == 1) {
        json_object_set_new(o, "eos_token_id", json_integer(p->eos[0]));
    } else {
        json_t *e = json_array();
        for (int i = 0; i < p->n_eos; i++)
            json_array_append_new(e, json_integer(p->eos[i]));
        json_object_set_new(o, "eos_token_id", e);
    }
    json_object_set_new(o, "torch_dtype",
                        json_string(dt == AL_DT_F32 ? "float32" : dt == AL_DT_F16 ? "float16" : "bfloat16"));
    json_object_set_new(o, "initializer_range", json_real(0.02));
    if (granite) {
        json_object_set_new(o, "embedding_multiplier", json_real(12.0));
        json_object_set_new(o, "attention_multiplier", json_real(1.0 / p->hd));
        json_object_set_new(o, "residual_multiplier", json_real(0.22));
        json_object_set_new(o, "logits_scaling", json_real(8.0));
    }
    int rc = json_dump_file(o, path, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
    json_decref(o);
    if (rc != 0)
        return ali_errf(AL_EIO, "%s: cannot write", path);
    return AL_OK;
}

static void cli_set(al_st_wtensor *t, const char *name, al_dtype dt, int nd, int64_t a, int64_t b)
{
    t->name = strdup(name);
    t->dtype = dt;
    t->n_dims = nd;
    t->shape[0] = a;
    t->shape[1] = b;
    t->data = NULL;
}

static al_err cli_write_weights(const char *path, const cli_preset *p, int tied, al_dtype dt, uint64_t seed)
{
    int n_max = 2 + 9 * p->L + 1;
    al_st_wtensor *ts = calloc((size_t)n_max, sizeof *ts);
    int *is_norm = calloc((size_t)n_max, sizeof *is_norm);
    float *buf = malloc(sizeof(float) << 20);
    al_err e = AL_OK;
    al_st_writer *w = NULL;
    if (!ts || !is_norm || !buf) {
        e = ali_errf(AL_ENOMEM, "out of memory");
        goto out;
    }
    int n = 0;
    int64_t V = p->V, H = p->H, I = p->I, q = (int64_t)p->nh * p->hd, kv = (int64_t)p->nkv * p->hd;
    char nm[160];
    cli_set(&ts[n++], "model.embed_tokens.weight", dt, 2, V, H);
    for (int l = 0; l < p->L; l++) {
#define CLI_T(suffix, nd, a, b, norm)                                  \
    do {                                                               \
        snprintf(nm, sizeof nm, "model.layers.%d.%s", l, suffix);      \
        is_norm[n] = norm;                                             \
        cli_set(&ts[n++], nm, dt, nd, a, b);                           \
    } while (0)
        CLI_T("input_layernorm.weight", 1, H, 0, 1);
        CLI_T("self_attn.q_proj.weight", 2, q, H, 0);
        CLI_T("self_attn.k_proj.weight", 2, kv, H, 0);
        CLI_T("self_attn.v_proj.weight", 2, kv, H, 0);
        CLI_T("self_attn.o_proj.weight", 2, H, q, 0);
        CLI_T("post_attention_layernorm.weight", 1, H, 0, 1);
        CLI_T("mlp.gate_proj.weight", 2, I, H, 0);
        CLI_T("mlp.up_proj.weight", 2, I, H, 0);
        CLI_T("mlp.down_proj.weight", 2, H, I, 0);
#undef CLI_T
    }
    is_norm[n] = 1;
    cli_set(&ts[n++], "model.norm.weight", dt, 1, H, 0);
    if (!tied)
        cli_set(&ts[n++], "lm_head.weight", dt, 2, V, H);
    for (int i = 0; i < n; i++)
        if (!ts[i].name) {
            e = ali_errf(AL_ENOMEM, "out of memory");
            goto out;
        }
    e = al_st_writer_open(path, ts, n, &w);
    if (e != AL_OK)
        goto out;
    double total = 0;
    for (int i = 0; i < n; i++)
        total += (double)ts[i].shape[0] * (ts[i].n_dims == 2 ? (double)ts[i].shape[1] : 1.0);
    int verbose = total > 3e8;
    cli_gauss g = {0};
    al_rng_seed(&g.rng, seed);
    double t0 = al_now();
    for (int i = 0; i < n && e == AL_OK; i++) {
        int64_t ne = ts[i].shape[0] * (ts[i].n_dims == 2 ? ts[i].shape[1] : 1);
        for (int64_t done = 0; done < ne && e == AL_OK;) {
            int64_t c = AL_MIN(ne - done, (int64_t)1 << 20);
            for (int64_t k = 0; k < c; k++) {
                double z = cli_gauss_next(&g);
                buf[k] = is_norm[i] ? (float)(1.0 + 0.02 * z) : (float)(0.02 * z);
            }
            e = al_st_writer_put(w, buf, c);
            done += c;
        }
        if (verbose && (i % 9 == 0 || i == n - 1))
            fprintf(stderr, "alora make-model: tensor %d/%d (%s) %.0f s\n", i + 1, n, ts[i].name,
                    al_now() - t0);
    }
    if (e == AL_OK) {
        e = al_st_writer_close(w);
        w = NULL;
    }
out:
    al_st_writer_abort(w);
    if (ts)
        for (int i = 0; i < n_max; i++)
            free((char *)ts[i].name);
    free(ts);
    free(is_norm);
    free(buf);
    return e;
}

int cmd_make_model(int argc, char **argv)
{
    const char *arch = NULL, *preset = NULL, *dtype = "f32", *out = NULL;
    uint64_t seed = 42;
    int tied_override = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            cli_mm_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--tied")) {
            tied_override = 1;
        } else if (!strcmp(a, "--untied")) {
            tied_override = 0;
        } else if (!strcmp(a, "--arch") || !strcmp(a, "--preset") || !strcmp(a, "--dtype") ||
                   !strcmp(a, "--seed")) {
            if (i + 1 >= argc) {
                char m[128];
                snprintf(m, sizeof m, "%s needs a value", a);
                return cli_mm_fail(2, m);
            }
            const char *v = argv[++i];
            if (!strcmp(a, "--arch"))
                arch = v;
            else if (!strcmp(a, "--preset"))
                preset = v;
            else if (!strcmp(a, "--dtype"))
                dtype = v;
            else {
                char *end;
                errno = 0;
                unsigned long long s = strtoull(v, &end, 10);
                if (errno || !*v || *end || *v == '-')
                    return cli_mm_fail(2, "--seed must be a non-negative integer");
                seed = s;
            }
        } else if (a[0] == '-' && a[1]) {
            char m[256];
            snprintf(m, sizeof m, "unknown option '%s'", a);
            return cli_mm_fail(2, m);
        } else if (!out) {
            out = a;
        } else {
            return cli_mm_fail(2, "more than one OUT_DIR given");
        }
    }
    if (!arch)
        return cli_mm_fail(2, "--arch is required (llama or granite)");
    int granite;
    if (!strcmp(arch, "llama"))
        granite = 0;
    else if (!strcmp(arch, "granite"))
        granite = 1;
    else
        {
        fprintf(stderr, "alora make-model: unknown --arch '%s'\n", arch);
        return cli_mm_fail(2, "--arch must be llama or granite");
    }
    if (!preset)
        return cli_mm_fail(2, "--preset is required (tiny, small, 85m, 1b, 8b)");
    const cli_preset *p = NULL;
    for (size_t i = 0; i < AL_ARRAY_LEN(cli_presets); i++)
        if (!strcmp(preset, cli_presets[i].name))
            p = &cli_presets[i];
    if (!p)
        {
        fprintf(stderr, "alora make-model: unknown --preset '%s'\n", preset);
        return cli_mm_fail(2, "--preset must be one of tiny, small, 85m, 1b, 8b");
    }
    al_dtype dt;
    if (!strcmp(dtype, "f32"))
        dt = AL_DT_F32;
    else if (!strcmp(dtype, "bf16"))
        dt = AL_DT_BF16;
    else if (!strcmp(dtype, "f16"))
        dt = AL_DT_F16;
    else
        {
        fprintf(stderr, "alora make-model: unknown --dtype '%s'\n", dtype);
        return cli_mm_fail(2, "--dtype must be f32, bf16 or f16");
    }
    if (!out)
        return cli_mm_fail(2, "OUT_DIR is required");
    int tied = tied_override >= 0 ? tied_override : p->tied;

    if (cli_mkdirs(out) != 0) {
        fprintf(stderr, "alora make-model: cannot create %s: %s\n", out, strerror(errno));
        return 1;
    }
    char path[4096];
    al_err e = ali_path_join(path, sizeof path, out, "config.json");
    if (e == AL_OK)
        e = cli_write_config(path, p, granite, tied, dt);
    if (e == AL_OK)
        e = ali_path_join(path, sizeof path, out, "model.safetensors");
    if (e == AL_OK)
        e = cli_write_weights(path, p, tied, dt, seed);
    if (e != AL_OK) {
        fprintf(stderr, "alora make-model: %s\n", al_errmsg());
        return 1;
    }
    static const char *const dts[] = {[AL_DT_F32] = "f32", [AL_DT_BF16] = "bf16", [AL_DT_F16] = "f16"};
    printf("alora make-model: wrote %s (%s %s preset: %d layers, hidden %d, vocab %d, context %d, %s, random "
           "weights, seed %llu)\n",
           out, granite ? "granite" : "llama", p->name, p->L, p->H, p->V, p->max_pos, dts[dt],
           (unsigned long long)seed);
    return 0;
}
