/* q8_test.c: the engine with int8 weights (cpu-q8): logits against the f32 engine on the oracle
 * fixture models with an aLoRA adapter (few-row int8 dots and the packed int8 GEMM), the checkpoint load
 * equal to the in-memory store, the memory saved, the backend choice, and on the real aidreams260K
 * (skipped without ../shared) top-1 agreement with f32 over real text. */
#include "al_test.h"

#include <math.h>

#include "common/model/adapter.h"
#include "common/model/model.h"
#include "common/text/tokenizer.h"
#include "common/util.h"
#include "engine/engine.h"

#define ORACLE "tests/fixtures/oracle"

/* Prompt and generation logits [n + 4, V] of one aLoRA request (both fixture invocations inside). */
static float *run_logits(const al_model *m, const al_ops *ops, const al_weights *w, const al_adapter *a, int chunk)
{
    static const int32_t prompt[] = {1, 20, 21, 22, 23, 24, 25, 26, 27, 5, 6, 31, 7, 8, 9, 40, 41, 42};
    int32_t n = (int32_t)AL_ARRAY_LEN(prompt), V = m->cfg.vocab_size;
    al_engine *e = NULL;
    al_engine_opts eo = {.block_size = 4, .max_batch_tokens = chunk, .n_blocks = 64, .ops = ops, .weights = w};
    assert_int_equal(al_engine_create(m, &eo, &e), AL_OK);
    int32_t slot = -1, id = -1;
    assert_int_equal(al_engine_add_adapter(e, a, &slot), AL_OK);
    float *pl = calloc((size_t)(n + 4) * V, sizeof(float));
    assert_non_null(pl);
    al_request r = {.tokens = prompt, .n_tokens = n, .adapter = slot, .act_start = AL_ACT_AUTO, .max_tokens = 4,
                    .ignore_eos = 1, .prompt_logits = pl, .gen_logits = pl + (size_t)n * V};
    assert_int_equal(al_engine_submit(e, &r, &id), AL_OK);
    assert_int_equal(al_engine_run(e), AL_OK);
    al_engine_free(e);
    return pl;
}

/*
 * The tolerance: every row of logits within 12% of that row's largest |logit| of f32's, and the
 * same argmax wherever f32's top two differ by more than that. Why: an int8 step is 1/127 of a
 * row's largest magnitude (bf16's is 2^-8 of each value's own), so a weight or activation of
 * typical size (~1/3 of the row max for these Gaussian-initialised fixtures) carries up to ~1.2%
 * rounding error, ~0.7% RMS; a product of a quantized weight row and a quantized activation row
 * (every matmul: both int8 paths quantize the activations per row) ~1% RMS; the matmuls in sequence (2 layers, an adapter, the lm_head) with the
 * residual stream carrying the errors forward give a few percent, the worst element of a row of
 * 256 a few times the RMS. Measured (printed below): 2-6.5% on these fixtures, so 12% is about
 * twice the worst seen while still failing any real format error (a wrong scale, row or K is
 * off by far more). Generated rows are compared while both runs generated the same tokens.
 */
static void compare(const char *what, const float *ref, const float *got, int n_prompt, int rows, int V)
{
    int prev_same = 1;
    double worst = 0;
    int agree = 0, decided = 0;
    for (int r = 0; r < rows && (r <= n_prompt || prev_same); r++) {
        const float *a = ref + (size_t)r * V, *b = got + (size_t)r * V;
        float mx = 1e-6f, d = 0;
        int ia = 0, ib = 0;
        for (int v = 0; v < V; v++) {
            mx = fmaxf(mx, fabsf(a[v]));
            d = fmaxf(d, fabsf(a[v] - b[v]));
            ia = a[v] > a[ia] ? v : ia;
            ib = b[v] > b[ib] ? v : ib;
        }
        worst = fmax(worst, d / mx);
        prev_same = ia == ib; /* the token generated from this row feeds the next */
        if (getenv("Q8_DEBUG"))
            fprintf(stderr, "  row %d: %.4f (max %g)\n", r, d / mx, mx);
        float second = -INFINITY;
        for (int v = 0; v < V; v++)
            if (v != ia)
                second = fmaxf(second, a[v]);
        if (a[ia] - second > 0.12f * mx) {
            decided++;
            agree += ia == ib;
            if (ia != ib)
                fprintf(stderr, "%s: row %d argmax %d vs f32's %d\n", what, r, ib, ia);
        }
    }
    fprintf(stderr, "%s: max |logit diff| / row max %.4f; argmax agrees on %d of %d decided rows\n", what, worst,
            agree, decided);
    assert_true(worst <= 0.12);
    assert_int_equal(agree, decided);
    assert_true(worst > 0); /* really quantized */
}

static void check_model(const char *model, const char *adapter)
{
    al_model *m = NULL;
    al_adapter *a = NULL;
    assert_int_equal(al_model_load(model, &m), AL_OK);
    assert_int_equal(al_adapter_load(adapter, &m->cfg, &a), AL_OK);
    int rows = 18 + 4, V = m->cfg.vocab_size;
    const al_ops *q8 = al_ops_cpu_q8();
    char what[256];
    for (int c = 0; c < 2; c++) {
        int chunk = c ? 512 : 8; /* 8: every matmul on the int8 dot path; 512: prefill on the int8 GEMM */
        float *ref = run_logits(m, al_ops_cpu(), NULL, a, chunk), *got = run_logits(m, q8, NULL, a, chunk);
        snprintf(what, sizeof what, "%s chunk %d", model, chunk);
        compare(what, ref, got, 18, rows, V);
        free(ref);
        free(got);
    }
    /* the checkpoint loaded straight into the int8 layout (as alora-base fills its arena) equals the
     * engine's own store of the f32 host weights bitwise; a config-only model reads it */
    al_model *shell = NULL;
    void *buf = NULL;
    al_weights w;
    assert_int_equal(al_weights_backend_load(model, q8, NULL, NULL, &shell, &buf), AL_OK);
    assert_int_equal(al_weights_backend_bind(&shell->cfg, q8, buf, &w), AL_OK);
    float *own = run_logits(m, q8, NULL, a, 8), *ext = run_logits(shell, q8, &w, a, 8);
    al_assert_floats_identical(own, ext, 1, (size_t)rows * V);
    /* the same bytes, too */
    void *buf2 = q8->alloc(al_weights_backend_bytes(&m->cfg, q8));
    assert_int_equal(al_weights_backend_store(m, q8, buf2), AL_OK);
    assert_memory_equal(buf, buf2, al_weights_backend_bytes(&m->cfg, q8));
    q8->free(buf2);
    free(own);
    free(ext);
    al_weights_unbind(&w);
    q8->free(buf);
    al_model_free(shell);
    al_adapter_free(a);
    al_model_free(m);
}

static void test_llama_untied(void **st) { check_model(ORACLE "/llama_f32", ORACLE "/adapters/alora_qkvo"); }
static void test_llama_tied_bf16(void **st) { check_model(ORACLE "/llama_bf16", ORACLE "/adapters/alora_qv"); }
static void test_granite(void **st) { check_model(ORACLE "/granite_f32", ORACLE "/adapters/alora_mlp"); }

/* The memory: a quarter of f32 plus 8 bytes a row (the 85m preset's shape, config only). */
static void test_memory_and_choice(void **st)
{
    al_model_config c = {.arch = AL_ARCH_LLAMA, .vocab_size = 512, .hidden_size = 768, .intermediate_size = 2048,
                         .n_layers = 12, .n_heads = 12, .n_kv_heads = 12, .head_dim = 64};
    size_t f32 = al_weights_backend_bytes(&c, al_ops_cpu()), q8 = al_weights_backend_bytes(&c, al_ops_cpu_q8());
    size_t bf16 = al_weights_backend_bytes(&c, al_ops_cpu_bf16());
    fprintf(stderr, "85m shape: f32 %.1f MiB, bf16 %.1f MiB, int8 %.1f MiB (%.3f of f32)\n", f32 / 1048576.0,
            bf16 / 1048576.0, q8 / 1048576.0, (double)q8 / (double)f32);
    assert_true(q8 < f32 * 26 / 100 && q8 > f32 / 4);
    const al_ops *sel = NULL;
    assert_int_equal(al_ops_for_model("cpu", "int8", ORACLE "/llama_f32", &sel), AL_OK);
    assert_ptr_equal(sel, al_ops_cpu_q8());
    assert_int_equal(al_ops_for_model("cpu", "int8", ORACLE "/llama_bf16", &sel), AL_OK);
    assert_ptr_equal(sel, al_ops_cpu_q8());
    assert_int_equal(al_ops_for_model("cpu-bf16", "int8", ORACLE "/llama_f32", &sel), AL_EINVAL);
    assert_int_equal(al_ops_for_model("cpu", "int4", ORACLE "/llama_f32", &sel), AL_EINVAL);
    assert_non_null(strstr(al_errmsg(), "int8"));
}

/* aidreams260K (a trained model: real activations, real text): greedy next-token agreement with
 * f32 at every position of the fixture text, prefill (int8 GEMM) and decode-sized steps (int8 dots). */
static void test_aidreams_top1(void **st)
{
    const char *shared = al_test_shared();
    if (!shared)
        skip();
    char dir[1024], tokp[1024], txtp[1024];
    snprintf(dir, sizeof dir, "%s/models/aidreams260K/hf", shared);
    snprintf(tokp, sizeof tokp, "%s/models/aidreams260K/hf/tokenizer.json", shared);
    snprintf(txtp, sizeof txtp, "%s/models/aidreams260K/fixtures/ppl.txt", shared);
    al_model *m = NULL;
    al_tokenizer *tk = NULL;
    assert_int_equal(al_model_load(dir, &m), AL_OK);
    assert_int_equal(al_tokenizer_load(tokp, &tk), AL_OK);
    size_t len = 0;
    char *text = NULL;
    assert_int_equal(ali_read_file(txtp, 1 << 20, &text, &len), AL_OK);
    int V = m->cfg.vocab_size, max_pos = m->cfg.max_position_embeddings;
    int positions[2] = {0}, agree[2] = {0};
    for (char *line = text, *end; line && *line; line = end ? end + 1 : NULL) {
        end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line) : strlen(line);
        int32_t *ids = NULL, nid = 0;
        assert_int_equal(al_tokenizer_encode(tk, line, n, 1, &ids, &nid), AL_OK);
        if (nid > max_pos)
            nid = max_pos;
        for (int c = 0; c < 2 && nid > 1; c++) {
            float *lg[2];
            for (int b = 0; b < 2; b++) {
                al_engine *e = NULL;
                al_engine_opts eo = {.max_batch_tokens = c ? 512 : 4, .n_blocks = 64, .max_seqs = 1,
                                     .ops = b ? al_ops_cpu_q8() : al_ops_cpu()};
                assert_int_equal(al_engine_create(m, &eo, &e), AL_OK);
                lg[b] = calloc((size_t)nid * V, sizeof(float));
                int32_t id;
                al_request r = {.tokens = ids, .n_tokens = nid, .adapter = -1, .prompt_logits = lg[b]};
                assert_int_equal(al_engine_submit(e, &r, &id), AL_OK);
                assert_int_equal(al_engine_run(e), AL_OK);
                al_engine_free(e);
            }
            for (int p = 0; p < nid; p++) {
                const float *a = lg[0] + (size_t)p * V, *b = lg[1] + (size_t)p * V;
                int ia = 0, ib = 0;
                for (int v = 1; v < V; v++) {
                    ia = a[v] > a[ia] ? v : ia;
                    ib = b[v] > b[ib] ? v : ib;
                }
                positions[c]++;
                agree[c] += ia == ib;
            }
            free(lg[0]);
            free(lg[1]);
        }
        free(ids);
    }
    for (int c = 0; c < 2; c++)
        fprintf(stderr, "aidreams260K int8 vs f32 top-1 (%s): %d of %d positions agree (%.1f%%)\n",
                c ? "prefill, int8 GEMM path" : "chunks of 4, int8 dot path", agree[c], positions[c],
                100.0 * agree[c] / positions[c]);
    fprintf(stderr, "aidreams260K weights: f32 %zu bytes, int8 %zu bytes (%.3f)\n",
            al_weights_backend_bytes(&m->cfg, al_ops_cpu()), al_weights_backend_bytes(&m->cfg, al_ops_cpu_q8()),
            (double)al_weights_backend_bytes(&m->cfg, al_ops_cpu_q8()) / (double)al_weights_backend_bytes(&m->cfg, al_ops_cpu()));
    assert_true(positions[0] >= 200);
    /* the bound: at least 95% (measured above; a broken format or scale agrees on a few %) */
    assert_true(agree[0] * 100 >= positions[0] * 95 && agree[1] * 100 >= positions[1] * 95);
    free(text);
    al_tokenizer_free(tk);
    al_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama_untied), cmocka_unit_test(test_llama_tied_bf16),
        cmocka_unit_test(test_granite), cmocka_unit_test(test_memory_and_choice),
        cmocka_unit_test(test_aidreams_top1),
    };
    return cmocka_run_group_tests_name("engine_q8", tests, NULL, NULL);
}
