/* weights_test.c: the backend weight layout (engine/weights.c), which the base's weight arena and
 * every attaching worker share. CPU: it is the canonical f32 layout. A bf16 device layout (a CPU
 * stand-in ops table with weight_bytes 2 and host memory): every tensor 256-byte aligned, inside
 * the buffer, disjoint, q|k|v and gate|up back to back, tied lm_head == embed, each region holding
 * the bf16 (round to nearest even) of its own host tensor. Engines reading weights through
 * opts.weights (a config-only model, as a GPU worker has) give the same logits bitwise as engines
 * reading the model. On a GPU (that test skips without one): an engine over weights stored in one
 * device buffer with al_weights_backend_store equals the engine's own upload bitwise. */
#include "al_test.h"

#include <math.h>

#include "common/model/adapter.h"
#include "common/model/model.h"
#include "common/util.h"
#include "engine/engine.h"

#define ORACLE "tests/fixtures/oracle"

/* ---- a stand-in bf16 device: host memory, bf16 matrices, records every store ---------------- */

typedef struct region {
    const char *p;
    size_t bytes;
} region;
static region R[4096];
static int n_regions;

static uint16_t bf16_rne(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static void fake_store(void *dst, const float *host, size_t n, int matrix)
{
    assert_true(n_regions < (int)AL_ARRAY_LEN(R));
    R[n_regions++] = (region){dst, n * (matrix ? 2 : 4)};
    if (!matrix) {
        memcpy(dst, host, n * 4);
        return;
    }
    uint16_t *d = dst;
    for (size_t i = 0; i < n; i++)
        d[i] = bf16_rne(host[i]);
}

static void fake_sync(void) {}

static al_ops fake_ops(void)
{
    al_ops o = *al_ops_cpu();
    o.name = "fake-bf16";
    o.host_memory = 0;
    o.weight_bytes = 2;
    o.weight_store = fake_store;
    o.sync = fake_sync;
    return o;
}

static int cmp_region(const void *a, const void *b)
{
    const region *x = a, *y = b;
    return x->p < y->p ? -1 : x->p > y->p;
}

/* every element of a bound tensor equals the (bf16 of the) host tensor */
static void check_tensor(const void *dev, const float *host, size_t n, int matrix)
{
    if (!matrix) {
        assert_memory_equal(dev, host, n * 4);
        return;
    }
    const uint16_t *d = dev;
    for (size_t i = 0; i < n; i++)
        if (d[i] != bf16_rne(host[i]))
            fail_msg("element %zu: stored %04x, bf16 of the host value %04x", i, d[i], bf16_rne(host[i]));
}

static void check_device_layout(const char *model_dir)
{
    al_model *m = NULL;
    assert_int_equal(al_model_load(model_dir, &m), AL_OK);
    const al_model_config *c = &m->cfg;
    al_ops o = fake_ops();
    size_t bytes = al_weights_backend_bytes(c, &o);
    /* bf16 matrices: about half the f32 canonical layout, never more */
    assert_true(bytes < al_weights_layout_bytes(c));
    char *buf = NULL;
    assert_int_equal(posix_memalign((void **)&buf, 256, bytes), 0);
    memset(buf, 0xa5, bytes);
    n_regions = 0;
    assert_int_equal(al_weights_backend_store(m, &o, buf), AL_OK);
    /* aligned regions inside the buffer, disjoint */
    for (int i = 0; i < n_regions; i++) {
        assert_true(R[i].p >= buf && R[i].p + R[i].bytes <= buf + bytes);
    }
    qsort(R, (size_t)n_regions, sizeof *R, cmp_region);
    for (int i = 1; i < n_regions; i++)
        assert_true(R[i - 1].p + R[i - 1].bytes <= R[i].p);
    size_t H = (size_t)c->hidden_size, I = (size_t)c->intermediate_size, V = (size_t)c->vocab_size;
    size_t qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim;
    int expect = 2 + (c->tie_word_embeddings ? 0 : 1) + c->n_layers * 9;
    assert_int_equal(n_regions, expect);

    al_weights w;
    assert_int_equal(al_weights_backend_bind(c, &o, buf, &w), AL_OK);
    assert_int_equal((uintptr_t)w.embed % 256, 0);
    check_tensor(w.embed, m->w.embed, V * H, 1);
    check_tensor(w.norm, m->w.norm, H, 0);
    if (c->tie_word_embeddings)
        assert_ptr_equal(w.lm_head, w.embed);
    else
        check_tensor(w.lm_head, m->w.lm_head, V * H, 1);
    for (int l = 0; l < c->n_layers; l++) {
        const al_layer_weights *d = &w.layers[l], *s = &m->w.layers[l];
        const void *ps[] = {d->attn_norm, d->ffn_norm, d->wq, d->wo, d->w_gate, d->w_down};
        for (size_t i = 0; i < AL_ARRAY_LEN(ps); i++)
            assert_int_equal((uintptr_t)ps[i] % 256, 0);
        /* fused pairs back to back: one-row steps run q|k|v and gate|up as one matmul */
        assert_ptr_equal((const char *)d->wk, (const char *)d->wq + qd * H * 2);
        assert_ptr_equal((const char *)d->wv, (const char *)d->wk + kvd * H * 2);
        assert_ptr_equal((const char *)d->w_up, (const char *)d->w_gate + I * H * 2);
        check_tensor(d->attn_norm, s->attn_norm, H, 0);
        check_tensor(d->ffn_norm, s->ffn_norm, H, 0);
        check_tensor(d->wq, s->wq, qd * H, 1);
        check_tensor(d->wk, s->wk, kvd * H, 1);
        check_tensor(d->wv, s->wv, kvd * H, 1);
        check_tensor(d->wo, s->wo, H * qd, 1);
        check_tensor(d->w_gate, s->w_gate, I * H, 1);
        check_tensor(d->w_up, s->w_up, I * H, 1);
        check_tensor(d->w_down, s->w_down, H * I, 1);
    }
    /* a second bind (a worker attaching) gives the same view */
    al_weights w2;
    assert_int_equal(al_weights_backend_bind(c, &o, buf, &w2), AL_OK);
    assert_ptr_equal(w2.layers[c->n_layers - 1].w_down, w.layers[c->n_layers - 1].w_down);
    assert_ptr_equal(w2.lm_head, w.lm_head);
    /* misaligned or missing buffers are refused */
    al_weights w3;
    assert_int_equal(al_weights_backend_bind(c, &o, buf + 64, &w3), AL_EINVAL);
    assert_int_equal(al_weights_backend_bind(c, &o, NULL, &w3), AL_EINVAL);
    al_weights_unbind(&w);
    al_weights_unbind(&w2);
    free(buf);
    al_model_free(m);
}

static void test_device_layout_untied(void **st) { check_device_layout(ORACLE "/llama_f32"); }
static void test_device_layout_tied(void **st) { check_device_layout(ORACLE "/llama_bf16"); }
static void test_device_layout_granite(void **st) { check_device_layout(ORACLE "/granite_f32"); }

/* CPU: the backend layout is the canonical one */
static void test_cpu_layout(void **st)
{
    al_model *m = NULL;
    assert_int_equal(al_model_load(ORACLE "/llama_f32", &m), AL_OK);
    const al_ops *o = al_ops_cpu();
    assert_int_equal(al_weights_backend_bytes(&m->cfg, o), al_weights_layout_bytes(&m->cfg));
    al_weights w;
    assert_int_equal(al_weights_backend_bind(&m->cfg, o, m->base, &w), AL_OK);
    assert_ptr_equal(w.embed, m->w.embed);
    assert_ptr_equal(w.layers[1].w_down, m->w.layers[1].w_down);
    assert_ptr_equal(w.lm_head, m->w.lm_head);
    al_weights_unbind(&w);
    al_model_free(m);
}

/* max |a - b| over n floats; *mx = max(1, max |a|) */
static float max_diff(const float *a, const float *b, size_t n, float *mx)
{
    float m = 1, d = 0;
    for (size_t i = 0; i < n; i++) {
        m = fmaxf(m, fabsf(a[i]));
        d = fmaxf(d, fabsf(a[i] - b[i]));
    }
    *mx = m;
    return d;
}

/* Runs one aLoRA request and returns its prompt and generation logits. The prompt holds both
 * fixture invocations: [5,6] (alora_qv, llama_bf16) at 9 and [7,8,9] (alora_qkvo, llama_f32) at 12. */
static float *run_logits(const al_model *m, const al_ops *ops, const al_weights *w, const al_adapter *a)
{
    static const int32_t prompt[] = {1, 20, 21, 22, 23, 24, 25, 26, 27, 5, 6, 31, 7, 8, 9, 40, 41, 42};
    int32_t n = (int32_t)AL_ARRAY_LEN(prompt), V = m->cfg.vocab_size;
    al_engine *e = NULL;
    al_engine_opts eo = {.block_size = 4, .max_batch_tokens = 8, .n_blocks = 64, .ops = ops, .weights = w};
    assert_int_equal(al_engine_create(m, &eo, &e), AL_OK);
    int32_t slot = -1, id = -1;
    assert_int_equal(al_engine_add_adapter(e, a, &slot), AL_OK);
    float *pl = calloc((size_t)(n + 4) * V, sizeof(float));
    assert_non_null(pl);
    al_request r = {.tokens = prompt, .n_tokens = n, .adapter = slot, .act_start = AL_ACT_AUTO, .max_tokens = 4,
                    .ignore_eos = 1, .prompt_logits = pl, .gen_logits = pl + (size_t)n * V};
    assert_int_equal(al_engine_submit(e, &r, &id), AL_OK);
    assert_int_equal(al_engine_run(e), AL_OK);
    al_result res;
    assert_int_equal(al_engine_result(e, id, &res), AL_OK);
    assert_int_equal(res.activation_start, a->invocation[0] == 5 ? 9 : 12);
    assert_int_equal(res.n_tokens, 4);
    al_engine_free(e);
    return pl;
}

/* A model, an adapter, a config-only copy of the model and the model's weights stored in one
 * backend buffer (what alora-base puts in its weight arena), bound as w. */
typedef struct ext_fixture {
    al_model *m, *shell;
    al_adapter *a;
    void *buf;
    al_weights w;
    size_t n_logits; /* floats run_logits returns */
} ext_fixture;

static void ext_open(ext_fixture *f, const char *model, const char *adapter, const al_ops *o)
{
    memset(f, 0, sizeof *f);
    assert_int_equal(al_model_load(model, &f->m), AL_OK);
    assert_int_equal(al_adapter_load(adapter, &f->m->cfg, &f->a), AL_OK);
    assert_int_equal(al_model_view(&f->m->cfg, NULL, &f->shell), AL_OK);
    f->buf = o->alloc(al_weights_backend_bytes(&f->m->cfg, o));
    assert_non_null(f->buf);
    assert_int_equal(al_weights_backend_store(f->m, o, f->buf), AL_OK);
    assert_int_equal(al_weights_backend_bind(&f->m->cfg, o, f->buf, &f->w), AL_OK);
    f->n_logits = (size_t)(18 + 4) * f->m->cfg.vocab_size;
}

static void ext_close(ext_fixture *f, const al_ops *o)
{
    al_weights_unbind(&f->w);
    o->free(f->buf);
    al_adapter_free(f->a);
    al_model_free(f->shell);
    al_model_free(f->m);
}

/* An engine over opts.weights and a config-only model (the GPU worker's shape) equals one over the
 * model's own weights, bitwise; a config-only model without opts.weights is refused. */
static void test_engine_external_weights_cpu(void **st)
{
    const al_ops *o = al_ops_cpu();
    ext_fixture f;
    ext_open(&f, ORACLE "/llama_f32", ORACLE "/adapters/alora_qkvo", o);
    float *ref = run_logits(f.m, o, NULL, f.a);
    float *got = run_logits(f.shell, o, &f.w, f.a);
    al_assert_floats_identical(ref, got, 1, f.n_logits);
    /* the store refuses a model without host weights; the engine a model without any weights */
    assert_int_equal(al_weights_backend_store(f.shell, o, f.buf), AL_EINVAL);
    al_engine *e = NULL;
    al_engine_opts eo = {.n_blocks = 16};
    assert_int_equal(al_engine_create(f.shell, &eo, &e), AL_EINVAL);
    assert_non_null(strstr(al_errmsg(), "no host weights"));
    free(ref);
    free(got);
    ext_close(&f, o);
}

/* GPU: weights stored into one device buffer (what alora-base puts in its CUDA weight arena) and
 * read through opts.weights give the engine's own upload's logits bitwise. */
static void test_engine_external_weights_cuda(void **st)
{
    const al_ops *o = al_ops_cuda();
    if (!o) {
        fprintf(stderr, "no usable CUDA backend: GPU part skipped\n");
        skip();
    }
    ext_fixture f;
    ext_open(&f, ORACLE "/llama_bf16", ORACLE "/adapters/alora_qv", o);
    float *ref = run_logits(f.m, o, NULL, f.a);
    float *got = run_logits(f.shell, o, &f.w, f.a);
    al_assert_floats_identical(ref, got, 1, f.n_logits);
    /* and within the bf16 tolerance of the CPU */
    float *cpu = run_logits(f.m, al_ops_cpu(), NULL, f.a);
    float mx, d = max_diff(cpu, got, f.n_logits, &mx);
    fprintf(stderr, "cuda vs cpu: max |logit diff| %g (largest logit %g)\n", d, mx);
    assert_true(d <= 3e-2f * mx);
    free(ref);
    free(got);
    free(cpu);
    ext_close(&f, o);
}

/* cpu-bf16: a bf16 checkpoint gives the f32 engine's logits (up to the order of f32 sums) with half
 * the weight memory;
 * an f32 checkpoint rounded to bf16 stays within the bf16 tolerance. */
static void test_cpu_bf16_engine(void **st)
{
    const al_ops *o = al_ops_cpu_bf16();
    al_model *m = NULL;
    al_adapter *a = NULL;
    assert_int_equal(al_model_load(ORACLE "/llama_bf16", &m), AL_OK);
    assert_int_equal(al_adapter_load(ORACLE "/adapters/alora_qv", &m->cfg, &a), AL_OK);
    size_t n = (size_t)(18 + 4) * m->cfg.vocab_size;
    assert_true(al_weights_backend_bytes(&m->cfg, o) < al_weights_layout_bytes(&m->cfg) * 6 / 10);
    float *ref = run_logits(m, al_ops_cpu(), NULL, a);
    float *got = run_logits(m, o, NULL, a);
    float mx, d = max_diff(ref, got, n, &mx);
    /* the same weights exactly; only the order of the f32 sums differs */
    fprintf(stderr, "cpu-bf16 vs cpu on a bf16 checkpoint: max |logit diff| %g (largest %g)\n", d, mx);
    assert_true(d <= 1e-5f * mx);
    free(ref);
    free(got);
    al_adapter_free(a);
    al_model_free(m);
    /* f32 weights rounded to bf16 */
    assert_int_equal(al_model_load(ORACLE "/llama_f32", &m), AL_OK);
    assert_int_equal(al_adapter_load(ORACLE "/adapters/alora_qkvo", &m->cfg, &a), AL_OK);
    n = (size_t)(18 + 4) * m->cfg.vocab_size;
    ref = run_logits(m, al_ops_cpu(), NULL, a);
    got = run_logits(m, o, NULL, a);
    d = max_diff(ref, got, n, &mx);
    fprintf(stderr, "cpu-bf16 vs cpu on an f32 checkpoint: max |logit diff| %g (largest %g)\n", d, mx);
    assert_true(d > 0 && d <= 3e-2f * mx);
    free(ref);
    free(got);
    al_adapter_free(a);
    al_model_free(m);
    /* the backend choice: auto follows the checkpoint, explicit choices conflict loudly */
    const al_ops *sel = NULL;
    assert_int_equal(al_ops_for_model("cpu", "auto", ORACLE "/llama_bf16", &sel), AL_OK);
    assert_ptr_equal(sel, o);
    assert_int_equal(al_ops_for_model("cpu", "auto", ORACLE "/llama_f32", &sel), AL_OK);
    assert_ptr_equal(sel, al_ops_cpu());
    assert_int_equal(al_ops_for_model("cpu", "bf16", ORACLE "/llama_f32", &sel), AL_OK);
    assert_ptr_equal(sel, o);
    assert_int_equal(al_ops_for_model("cpu-bf16", "f32", ORACLE "/llama_f32", &sel), AL_EINVAL);
    assert_int_equal(al_ops_for_model("cpu", "f16", ORACLE "/llama_f32", &sel), AL_EINVAL);
    assert_int_equal(al_ops_for_model("cpu", "auto", "/nonexistent", &sel) != AL_OK, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cpu_layout),
        cmocka_unit_test(test_device_layout_untied),
        cmocka_unit_test(test_device_layout_tied),
        cmocka_unit_test(test_device_layout_granite),
        cmocka_unit_test(test_engine_external_weights_cpu),
        cmocka_unit_test(test_engine_external_weights_cuda),
        cmocka_unit_test(test_cpu_bf16_engine),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
