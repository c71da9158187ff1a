/* backprop_test.c: the trainer's forward against PEFT's golden logits, and its gradients of A and B
 * (aLoRA over the suffix only, plain LoRA over everything) against central finite differences. */
#include "al_test.h"

#include <jansson.h>
#include <math.h>

#include "common/util.h"
#include "train/train.h"

#define FIX "tests/fixtures/oracle"

/* sum over the targets of -log p, in double, from logits rows [n, V] */
static double nll_of(const float *logits, const int32_t *ids, int n_prompt, int n, int V)
{
    double s = 0;
    for (int p = n_prompt - 1; p < n - 1; p++) {
        const float *l = logits + (size_t)p * V;
        double m = -1e300, z = 0;
        for (int j = 0; j < V; j++)
            m = fmax(m, l[j]);
        for (int j = 0; j < V; j++)
            z += exp(l[j] - m);
        s += m + log(z) - l[ids[p + 1]];
    }
    return s;
}

/* The forward matches PEFT's logits: the loss of a golden case's own prompt, targets = its last 4
 * tokens, equals the one computed from PEFT's prompt_logits. */
static void forward_vs_peft(const char *model, const char *adapter, const char *cas)
{
    char dir[256];
    al_model *m;
    al_adapter *a;
    snprintf(dir, sizeof dir, FIX "/%s", model);
    assert_int_equal(al_model_load(dir, &m), AL_OK);
    snprintf(dir, sizeof dir, FIX "/adapters/%s", adapter);
    assert_int_equal(al_adapter_load(dir, &m->cfg, &a), AL_OK);
    json_error_t je;
    json_t *root = json_load_file(FIX "/goldens.json", 0, &je);
    assert_non_null(root);
    json_t *cases = json_object_get(root, "cases"), *c = NULL;
    size_t i;
    json_t *v;
    json_array_foreach(cases, i, v) if (strcmp(json_string_value(json_object_get(v, "name")), cas) == 0) c = v;
    assert_non_null(c);
    json_t *pr = json_object_get(c, "prompt");
    int n = (int)json_array_size(pr);
    int32_t ids[512];
    for (int k = 0; k < n; k++)
        ids[k] = (int32_t)json_integer_value(json_array_get(pr, (size_t)k));
    al_st *st;
    assert_int_equal(al_st_open(FIX "/goldens.safetensors", &st), AL_OK);
    char nm[128];
    snprintf(nm, sizeof nm, "%s.prompt_logits", cas);
    const al_st_tensor *t = al_st_find(st, nm);
    assert_non_null(t);
    int n_prompt = n - 4;
    double want = nll_of(t->data, ids, n_prompt, n, m->cfg.vocab_size);

    al_tlora *tl;
    assert_int_equal(al_tlora_from_adapter(&m->cfg, a, &tl), AL_OK);
    al_trainer *tr;
    assert_int_equal(al_trainer_create(m, al_ops_cpu(), &tr), AL_OK);
    al_train_result res;
    assert_int_equal(al_trainer_example(tr, tl, ids, n, n_prompt, 1.0f, 0, &res), AL_OK);
    fprintf(stderr, "%s: nll %.7f, PEFT %.7f, s %d\n", cas, res.nll, want, res.act_start);
    assert_true(fabs(res.nll - want) < 1e-4 * fmax(1.0, fabs(want)));
    al_trainer_free(tr);
    al_tlora_free(tl);
    al_st_close(st);
    json_decref(root);
    al_adapter_free(a);
    al_model_free(m);
}

static void test_forward_llama_lora(void **state) { forward_vs_peft("llama_f32", "lora_plain", "lora_plain"); }
static void test_forward_granite_alora(void **state) { forward_vs_peft("granite_f32", "alora_mlp", "alora_granite"); }

/* Gradients against central differences of the loss, for a sample of A and B entries of every
 * module. B is random (PEFT's zero init would make every A gradient zero). */
static void grad_check(const char *model, const int32_t *inv, int n_inv)
{
    char dir[256];
    al_model *m;
    snprintf(dir, sizeof dir, FIX "/%s", model);
    assert_int_equal(al_model_load(dir, &m), AL_OK);
    al_tlora_opts o = {.targets = {1, 1, 1, 1, 1, 1, 1}, .rank = 3, .alpha = 6, .inv = inv, .n_inv = n_inv};
    al_tlora *t;
    assert_int_equal(al_tlora_init(&m->cfg, &o, 11, &t), AL_OK);
    al_rng r;
    al_rng_seed(&r, 12);
    for (size_t i = 0; i < t->n; i++)
        t->w[i] = (float)al_rng_normal(&r) * 0.2f;
    int32_t ids[24];
    for (int i = 0; i < 24; i++)
        ids[i] = 20 + (int32_t)(al_rng_next(&r) % 200);
    ids[0] = 1;
    if (inv)
        memcpy(ids + 12, inv, sizeof(int32_t) * (size_t)n_inv); /* s = 12 */
    int n = 24, n_prompt = 20;
    al_trainer *tr;
    assert_int_equal(al_trainer_create(m, al_ops_cpu(), &tr), AL_OK);
    al_train_result res;
    al_tlora_zero_grad(t);
    assert_int_equal(al_trainer_example(tr, t, ids, n, n_prompt, 1.0f, 1, &res), AL_OK);
    assert_int_equal(res.act_start, inv ? 12 : 0);
    assert_int_equal(res.n_grad_rows, inv ? 23 - 12 : 23);
    int bad = 0, checked = 0;
    double maxrel = 0;
    for (size_t i = 0; i < t->n; i += 1 + t->n / 300) {
        float keep = t->w[i], eps = 1e-2f;
        al_train_result rp, rm;
        t->w[i] = keep + eps;
        assert_int_equal(al_trainer_example(tr, t, ids, n, n_prompt, 1.0f, 0, &rp), AL_OK);
        t->w[i] = keep - eps;
        assert_int_equal(al_trainer_example(tr, t, ids, n, n_prompt, 1.0f, 0, &rm), AL_OK);
        t->w[i] = keep;
        double fd = (rp.nll - rm.nll) / (2 * eps), an = t->g[i];
        double err = fabs(fd - an) / fmax(2e-2, fabs(fd));
        maxrel = fmax(maxrel, err);
        checked++;
        if (err > 5e-2) { /* float forward, eps 1e-2: curvature + rounding; the PEFT fixtures are the tight check */
            fprintf(stderr, "param %zu: analytic %.6g, finite difference %.6g (loss at +eps %.9g, -eps %.9g)\n", i,
                    an, fd, rp.nll, rm.nll);
            /* the same two forwards again: a different loss names a non-deterministic forward (a
             * race), the same one a wrong gradient */
            al_train_result r2p, r2m;
            t->w[i] = keep + eps;
            assert_int_equal(al_trainer_example(tr, t, ids, n, n_prompt, 1.0f, 0, &r2p), AL_OK);
            t->w[i] = keep - eps;
            assert_int_equal(al_trainer_example(tr, t, ids, n, n_prompt, 1.0f, 0, &r2m), AL_OK);
            t->w[i] = keep;
            fprintf(stderr, "  again: +eps %.9g, -eps %.9g: %s\n", r2p.nll, r2m.nll,
                    r2p.nll == rp.nll && r2m.nll == rm.nll ? "the same (a wrong gradient)"
                                                           : "DIFFERENT (the forward is not deterministic)");
            bad++;
        }
    }
    fprintf(stderr, "%s %s: %d gradients checked, max rel err %.2e\n", model, inv ? "aLoRA" : "LoRA", checked, maxrel);
    assert_int_equal(bad, 0);
    al_trainer_free(tr);
    al_tlora_free(t);
    al_model_free(m);
}

static void test_grad_llama_alora(void **state)
{
    int32_t inv[3] = {7, 8, 9};
    grad_check("llama_f32", inv, 3);
}
static void test_grad_llama_lora(void **state) { grad_check("llama_f32", NULL, 0); }
static void test_grad_granite_alora(void **state)
{
    int32_t inv[2] = {11, 12};
    grad_check("granite_f32", inv, 2);
}

/* Gradients got [n] equal ref [n] up to 1e-5 of ref's largest (and ref is not all zero); label: print
 * both figures under it. */
static void assert_grads_close(const float *ref, const float *got, size_t n, const char *label)
{
    double gm = 0, dm = 0;
    for (size_t i = 0; i < n; i++) {
        gm = fmax(gm, fabs(ref[i]));
        dm = fmax(dm, fabs(got[i] - ref[i]));
    }
    if (label)
        fprintf(stderr, "%s: max |g| %.4g, max difference %.3g\n", label, gm, dm);
    assert_true(gm > 0 && dm <= 1e-5 * gm);
}

/* The tiny Llama and an aLoRA (invocation 7, 8, 9; rank 2 on every target) with fixed non-zero
 * weights, for the prefix-cache and batch tests. */
static void llama_with_alora(al_model **m, al_tlora **t)
{
    static const int32_t inv[3] = {7, 8, 9};
    assert_int_equal(al_model_load(FIX "/llama_f32", m), AL_OK);
    al_tlora_opts o = {.targets = {1, 1, 1, 1, 1, 1, 1}, .rank = 2, .alpha = 4, .inv = inv, .n_inv = 3};
    assert_int_equal(al_tlora_init(&(*m)->cfg, &o, 5, t), AL_OK);
    for (size_t i = 0; i < (*t)->n; i++)
        (*t)->w[i] = 0.1f * (float)sin((double)i);
}

/* Examples sharing a conversation before the activation start reuse its K/V (the prefix cache):
 * the loss and gradients equal those of a fresh trainer. */
static void test_prefix_cache(void **state)
{
    al_model *m;
    al_tlora *t;
    llama_with_alora(&m, &t);
    int32_t inv[3] = {7, 8, 9};
    int32_t a[30], b[34];
    for (int i = 0; i < 30; i++)
        a[i] = b[i] = 20 + (i * 37) % 200;
    a[0] = b[0] = 1;
    memcpy(a + 22, inv, sizeof inv);            /* a: s = 22 */
    memcpy(b + 26, inv, sizeof inv), b[29] = 40; /* b: shares a's first 22 tokens, s = 26 */
    for (int i = 30; i < 34; i++)
        b[i] = 50 + i;
    al_trainer *tr, *fresh;
    assert_int_equal(al_trainer_create(m, al_ops_cpu(), &tr), AL_OK);
    al_train_result r;
    al_tlora_zero_grad(t);
    assert_int_equal(al_trainer_example(tr, t, a, 30, 27, 1.0f, 1, &r), AL_OK);
    assert_int_equal(al_trainer_cached_positions(tr), 0);
    float *g1 = malloc(t->n * sizeof(float));
    al_tlora_zero_grad(t);
    assert_int_equal(al_trainer_example(tr, t, b, 34, 31, 1.0f, 1, &r), AL_OK);
    assert_int_equal(al_trainer_cached_positions(tr), 22);
    memcpy(g1, t->g, t->n * sizeof(float));
    double nll1 = r.nll;
    assert_int_equal(al_trainer_create(m, al_ops_cpu(), &fresh), AL_OK);
    al_tlora_zero_grad(t);
    assert_int_equal(al_trainer_example(fresh, t, b, 34, 31, 1.0f, 1, &r), AL_OK);
    assert_true(fabs(r.nll - nll1) < 1e-5 * fabs(nll1));
    assert_grads_close(t->g, g1, t->n, NULL);
    /* the same example again: the whole prefix comes from the cache */
    assert_int_equal(al_trainer_example(tr, t, b, 34, 31, 1.0f, 0, &r), AL_OK);
    assert_int_equal(al_trainer_cached_positions(tr), 22 + 26);
    free(g1);
    al_trainer_free(fresh);
    al_trainer_free(tr);
    al_tlora_free(t);
    al_model_free(m);
}

/* The prefix store: a second epoch takes every prefix's K/V from the first (no prefix forward);
 * a prefix that extends a kept one computes only its new positions; results equal a trainer
 * without the store (bitwise for a prefix computed in one piece); the limit is kept. */
static void test_prefix_store(void **state)
{
    al_model *m;
    al_tlora *t;
    llama_with_alora(&m, &t);
    int32_t inv[3] = {7, 8, 9};
    enum { NE = 3 };
    /* A: s = 22; C: another conversation (no token in common at the start), s = 18; B: A's first 22
     * tokens then 4 more, s = 26. Order A, C, B: without the store B finds nothing in the last
     * prefix (C's). */
    int32_t ids[NE][40];
    static const int sa[NE] = {22, 18, 26}, na[NE] = {30, 25, 34};
    for (int e = 0; e < NE; e++) {
        for (int i = 0; i < na[e]; i++)
            ids[e][i] = e == 1 ? 220 - (i * 29) % 190 : 20 + (i * 37) % 200;
        memcpy(ids[e] + sa[e], inv, sizeof inv);
    }
    ids[2][22] = 41; /* B leaves A at position 22 */
    double nll[2][2][NE];
    float *g[2][2][NE];
    for (int st = 0; st < 2; st++) {
        al_trainer *tr;
        assert_int_equal(al_trainer_create(m, al_ops_cpu(), &tr), AL_OK);
        if (st)
            assert_int_equal(al_trainer_set_prefix_store(tr, 64u << 20), AL_OK);
        for (int ep = 0; ep < 2; ep++)
            for (int e = 0; e < NE; e++) {
                al_train_result r;
                al_tlora_zero_grad(t);
                assert_int_equal(al_trainer_example(tr, t, ids[e], na[e], na[e] - 3, 1.0f, 1, &r), AL_OK);
                assert_int_equal(r.act_start, sa[e]);
                nll[st][ep][e] = r.nll;
                g[st][ep][e] = malloc(t->n * sizeof(float));
                memcpy(g[st][ep][e], t->g, t->n * sizeof(float));
            }
        al_train_store_stats ps;
        al_trainer_prefix_store_stats(tr, &ps);
        if (!st) {
            assert_int_equal(ps.entries, 0);
            assert_int_equal(ps.limit, 0);
            /* epoch 2: A shares its whole prefix with B, the last one: 22 */
            assert_int_equal(al_trainer_cached_positions(tr), 22);
        } else {
            /* kept: A (22), C (18), B (26: computed after A's 22) */
            assert_int_equal(ps.entries, 3);
            assert_int_equal(ps.bytes, al_trainer_prefix_bytes(tr, 22 + 18 + 26));
            assert_int_equal(ps.refused, 0);
            /* B in epoch 1 (A's 22), then C and B in epoch 2; A in epoch 2 is the last prefix's */
            assert_int_equal(ps.hit_positions, 22 + 18 + 26);
            assert_int_equal(al_trainer_cached_positions(tr), 22 + 22 + 18 + 26);
        }
        al_trainer_free(tr);
    }
    for (int ep = 0; ep < 2; ep++)
        for (int e = 0; e < NE; e++) {
            assert_grads_close(g[0][ep][e], g[1][ep][e], t->n, NULL);
            assert_true(fabs(nll[1][ep][e] - nll[0][ep][e]) <= 1e-5 * fabs(nll[0][ep][e]));
        }
    /* C's prefix runs in one piece in both epochs of both trainers: bitwise */
    al_assert_floats_identical(g[1][1][1], g[0][1][1], 1, t->n);
    assert_true(nll[1][1][1] == nll[0][1][1]);
    for (int st = 0; st < 2; st++)
        for (int ep = 0; ep < 2; ep++)
            for (int e = 0; e < NE; e++)
                free(g[st][ep][e]);
    /* a limit that holds one prefix: the first is kept, the others refused; lowering the limit
     * drops what is held; plain LoRA has no prefix to keep */
    al_trainer *tr;
    assert_int_equal(al_trainer_create(m, al_ops_cpu(), &tr), AL_OK);
    assert_int_equal(al_trainer_set_prefix_store(tr, al_trainer_prefix_bytes(tr, 22)), AL_OK);
    for (int e = 0; e < NE; e++)
        assert_int_equal(al_trainer_example(tr, t, ids[e], na[e], na[e] - 3, 1.0f, 0, NULL), AL_OK);
    al_train_store_stats ps;
    al_trainer_prefix_store_stats(tr, &ps);
    assert_int_equal(ps.entries, 1);
    assert_int_equal(ps.refused, 2);
    assert_int_equal(ps.hit_positions, 22); /* B took A's */
    assert_int_equal(al_trainer_set_prefix_store(tr, 0), AL_OK);
    al_trainer_prefix_store_stats(tr, &ps);
    assert_int_equal(ps.entries, 0);
    assert_int_equal(ps.bytes, 0);
    al_trainer_free(tr);
    al_tlora *pl;
    al_tlora_opts o = {.targets = {1, 1, 1, 1, 1, 1, 1}, .rank = 2, .alpha = 4};
    assert_int_equal(al_tlora_init(&m->cfg, &o, 5, &pl), AL_OK);
    assert_int_equal(al_trainer_create(m, al_ops_cpu(), &tr), AL_OK);
    assert_int_equal(al_trainer_set_prefix_store(tr, 64u << 20), AL_OK);
    assert_int_equal(al_trainer_example(tr, pl, ids[0], na[0], na[0] - 3, 1.0f, 1, NULL), AL_OK);
    al_trainer_prefix_store_stats(tr, &ps);
    assert_int_equal(ps.entries, 0);
    al_trainer_free(tr);
    al_tlora_free(pl);
    al_tlora_free(t);
    al_model_free(m);
}

/* A batch: examples sharing a conversation run stacked (here 38 suffix rows: the many-row product
 * path) with the others in their own groups; the loss of each example and the summed gradients
 * equal running them one by one, results are bitwise the same on 1 thread and on all cores, the
 * prefix cache counts as if they had run in turn, and a bad example is named. */
static void test_batch(void **state)
{
    al_model *m;
    al_tlora *t;
    llama_with_alora(&m, &t);
    int32_t inv[3] = {7, 8, 9};
    enum { NE = 5 };
    /* conversation (tokens before the invocation), question + answer tokens after it, answer length */
    static const int conv_len[NE] = {20, 20, 20, 20, 25}, which[NE] = {0, 0, 1, 0, 0}, after[NE] = {9, 11, 8, 12, 6},
                     answer[NE] = {4, 3, 4, 2, 2};
    int32_t ids[NE][64];
    al_train_ex ex[NE];
    for (int e = 0; e < NE; e++) {
        int n = 0;
        for (int i = 0; i < conv_len[e]; i++)
            ids[e][n++] = i == 0 ? 1 : 20 + (i * (which[e] ? 53 : 37) + which[e]) % 200;
        for (int i = 0; i < 3; i++)
            ids[e][n++] = inv[i];
        for (int i = 0; i < after[e]; i++)
            ids[e][n++] = 30 + (i * 7 + e * 11) % 150;
        ex[e] = (al_train_ex){.ids = ids[e], .n = n, .n_prompt = n - answer[e]};
    }
    float *gseq = malloc(t->n * sizeof(float)), *g1 = malloc(t->n * sizeof(float));
    double nll[NE];
    al_trainer *tr;
    assert_int_equal(al_trainer_create(m, al_ops_cpu(), &tr), AL_OK);
    al_tlora_zero_grad(t);
    for (int e = 0; e < NE; e++) {
        al_train_result r;
        assert_int_equal(al_trainer_example(tr, t, ex[e].ids, ex[e].n, ex[e].n_prompt, 0.1f, 1, &r), AL_OK);
        nll[e] = r.nll;
    }
    memcpy(gseq, t->g, t->n * sizeof(float));
    size_t peak_one = al_trainer_peak_bytes(tr);
    al_trainer_free(tr);
    for (int th = 1; th >= 0; th--) {
        al_cpu_set_threads(th);
        assert_int_equal(al_trainer_create(m, al_ops_cpu(), &tr), AL_OK);
        al_train_result res[NE];
        al_tlora_zero_grad(t);
        assert_int_equal(al_trainer_batch(tr, t, ex, NE, 0.1f, 1, res), AL_OK);
        /* groups {0, 1, 3} (the first computes the prefix, the others take its 20 positions),
         * {2} and {4}: each finds the cached BOS only */
        assert_int_equal(al_trainer_cached_positions(tr), 2 * 20 + 1 + 1);
        assert_true(al_trainer_peak_bytes(tr) > peak_one); /* the 38 stacked rows' activations */
        for (int e = 0; e < NE; e++) {
            assert_int_equal(res[e].n_targets, answer[e]);
            assert_int_equal(res[e].act_start, conv_len[e]);
            assert_int_equal(res[e].n_grad_rows, ex[e].n - 1 - conv_len[e]);
            if (fabs(res[e].nll - nll[e]) > 1e-5 * fabs(nll[e])) {
                fprintf(stderr, "example %d: batch nll %.8g, alone %.8g\n", e, res[e].nll, nll[e]);
                fail();
            }
        }
        assert_grads_close(gseq, t->g, t->n, "batch vs one by one");
        if (th)
            memcpy(g1, t->g, t->n * sizeof(float));
        else
            al_assert_floats_identical(t->g, g1, 1, t->n);
        al_trainer_free(tr);
    }
    al_cpu_set_threads(0);
    /* a bad example: named, nothing computed */
    assert_int_equal(al_trainer_create(m, al_ops_cpu(), &tr), AL_OK);
    al_train_result res[NE];
    ex[2].n_prompt = ex[2].n;
    assert_int_equal(al_trainer_batch(tr, t, ex, NE, 0.1f, 1, res), AL_EINVAL);
    assert_non_null(strstr(al_errmsg(), "example 3 of 5"));
    assert_int_equal(al_trainer_cached_positions(tr), 0);
    al_trainer_free(tr);
    free(gseq), free(g1);
    al_tlora_free(t);
    al_model_free(m);
}

/* Bad input: clear errors, no crash. */
static void test_errors(void **state)
{
    al_model *m;
    assert_int_equal(al_model_load(FIX "/llama_f32", &m), AL_OK);
    int32_t inv[2] = {7, 8};
    al_tlora_opts o = {.targets = {1}, .rank = 2, .alpha = 4, .inv = inv, .n_inv = 2};
    al_tlora *t;
    assert_int_equal(al_tlora_init(&m->cfg, &o, 1, &t), AL_OK);
    al_trainer *tr;
    assert_int_equal(al_trainer_create(m, al_ops_cpu(), &tr), AL_OK);
    int32_t ids[6] = {1, 30, 31, 32, 33, 34};
    assert_int_equal(al_trainer_example(tr, t, ids, 6, 4, 1, 1, NULL), AL_EINVAL); /* no invocation */
    assert_non_null(strstr(al_errmsg(), "invocation"));
    int32_t ids2[6] = {1, 30, 31, 32, 7, 8};
    assert_int_equal(al_trainer_example(tr, t, ids2, 6, 4, 1, 1, NULL), AL_EINVAL); /* only in the targets */
    int32_t ids3[6] = {1, 7, 8, 32, 33, 999};
    assert_int_equal(al_trainer_example(tr, t, ids3, 6, 4, 1, 1, NULL), AL_EINVAL); /* bad token */
    assert_int_equal(al_trainer_example(tr, t, ids3, 6, 6, 1, 1, NULL), AL_EINVAL); /* no target */
    o.rank = 0;
    assert_int_equal(al_tlora_init(&m->cfg, &o, 1, &t), AL_EINVAL);
    al_tlora_opts o2 = {.targets = {1}, .rank = 2, .alpha = 4, .inv = inv, .n_inv = 2};
    al_tlora *t2;
    assert_int_equal(al_tlora_init(&m->cfg, &o2, 1, &t2), AL_OK);
    al_tlora_free(t2);
    al_trainer_free(tr);
    al_tlora_free(t);
    al_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_llama_lora), cmocka_unit_test(test_forward_granite_alora),
        cmocka_unit_test(test_grad_llama_alora),   cmocka_unit_test(test_grad_llama_lora),
        cmocka_unit_test(test_grad_granite_alora), cmocka_unit_test(test_prefix_cache),
        cmocka_unit_test(test_prefix_store),
        cmocka_unit_test(test_batch),              cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
