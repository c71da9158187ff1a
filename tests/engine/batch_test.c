/* batch_test.c: the worker's batching: invocations stepped together (their rows stacked in one
 * forward pass, each attending to its own read-only prefix) give what each gives alone: bit for bit
 * while every step stays within the few-row matmul (<= 8 rows) and always with max_shared_rows = 8,
 * within a stated tolerance when larger steps go to sgemm, and within the PEFT goldens' tolerance
 * (tests/fixtures/oracle). */
#include "al_test.h"

#include <math.h>

#include "common/util.h"
#include "engine/golden.c.inc"

static golden G;

#define NGEN 4
#define MAXB 8

/* One invocation: the prefix [0, np) of a golden prompt computed by the base engine (its pool), the
 * suffix [np, n_prompt) run by the worker engine over it with the case's adapter from act. */
typedef struct inv {
    const golden_case *c;
    int32_t np, act;
    al_kv_seg seg;
    int32_t slot;
    int32_t toks[NGEN];
    float *gl;  /* [NGEN, V] logits of the generated tokens */
    float *lp;  /* [NGEN] their logprobs */
} inv;

typedef struct bat_stats {
    int32_t max_rows;
    uint64_t shared_steps, steps;
} bat_stats;

/* Runs invs [lo, hi) together in one worker engine (a fresh one); records tokens and logits. */
static void run_worker(const al_ops *ops, inv *iv, int lo, int hi, int32_t shared_rows, bat_stats *bs)
{
    const al_model *m = iv[lo].c->m;
    al_engine *w = NULL;
    al_engine_opts wo = {.block_size = 16, .n_blocks = 256, .max_seqs = MAXB, .max_batch_tokens = 256, .ops = ops,
                         .max_shared_rows = shared_rows};
    assert_int_equal(al_engine_create(m, &wo, &w), AL_OK);
    const al_adapter *added[8];
    int n_added = 0;
    int32_t ids[MAXB];
    for (int i = lo; i < hi; i++) {
        int k = 0;
        while (k < n_added && added[k] != iv[i].c->a)
            k++;
        if (k == n_added) {
            int32_t slot;
            assert_int_equal(al_engine_add_adapter(w, iv[i].c->a, &slot), AL_OK);
            assert_int_equal(slot, k);
            added[n_added++] = iv[i].c->a;
        }
        iv[i].slot = k;
        al_request r = {.tokens = iv[i].c->prompt + iv[i].np, .n_tokens = iv[i].c->n_prompt - iv[i].np,
                        .adapter = iv[i].slot, .act_start = iv[i].act, .max_tokens = NGEN, .ignore_eos = 1,
                        .top_logprobs = 1, .gen_logits = iv[i].gl, .prefix = iv[i].seg};
        assert_int_equal(al_engine_submit(w, &r, &ids[i - lo]), AL_OK);
    }
    int32_t n = 1;
    while (n > 0) {
        assert_int_equal(al_engine_step(w, &n), AL_OK);
        al_engine_stats st;
        al_engine_stats_get(w, &st);
        bs->max_rows = AL_MAX(bs->max_rows, st.last_step_rows);
    }
    al_engine_stats st;
    al_engine_stats_get(w, &st);
    bs->shared_steps += st.shared_steps;
    bs->steps += st.steps;
    for (int i = lo; i < hi; i++) {
        al_result r;
        assert_int_equal(al_engine_result(w, ids[i - lo], &r), AL_OK);
        assert_int_equal(r.finish, AL_FINISH_LENGTH);
        assert_int_equal(r.n_tokens, NGEN);
        memcpy(iv[i].toks, r.tokens, sizeof iv[i].toks);
        /* the sequence's own step count: it ran alone iff every step it ran in held only it */
        assert_true(r.steps >= 1 && r.step_seqs >= r.steps);
        if (hi - lo == 1)
            assert_int_equal(r.step_seqs, r.steps);
        else
            assert_true(r.step_seqs > r.steps);
        memcpy(iv[i].lp, r.logprobs, sizeof(float) * NGEN);
    }
    al_engine_free(w);
}

/* Sets up n invocations over the llama_f32 aLoRA cases (cycled): suffix = the last `suffix` tokens
 * (0: from the case's activation start, the goldens' split). The base engine keeps the prefixes. */
static al_engine *setup(const al_ops *ops, inv *iv, int n, int32_t suffix, float **gl_all, float **lp_all)
{
    golden_case *cs[GOLDEN_MAX];
    int nc = 0;
    for (int i = 0; i < G.n_cases; i++)
        if (G.cases[i].a && G.cases[i].act_start > 0 && !strcmp(G.cases[i].model, "llama_f32") &&
            (!suffix || G.cases[i].n_prompt - suffix > G.cases[i].act_start))
            cs[nc++] = &G.cases[i];
    assert_true(nc >= 2);
    al_engine *base = NULL;
    al_engine_opts bo = {.block_size = 16, .n_blocks = 512, .max_seqs = 2 * MAXB, .ops = ops};
    assert_int_equal(al_engine_create(cs[0]->m, &bo, &base), AL_OK);
    int32_t V = cs[0]->m->cfg.vocab_size;
    *gl_all = calloc((size_t)2 * n * NGEN * V, sizeof(float));
    *lp_all = calloc((size_t)2 * n * NGEN, sizeof(float));
    assert_non_null(*gl_all);
    for (int i = 0; i < n; i++) {
        inv *v = &iv[i];
        v->c = cs[i % nc];
        v->np = suffix ? v->c->n_prompt - suffix : v->c->act_start;
        v->act = suffix ? v->np : v->c->act_start; /* explicit: adapted from the first suffix token */
        int32_t bid;
        al_request br = {.tokens = v->c->prompt, .n_tokens = v->np, .adapter = -1, .max_tokens = 0};
        assert_int_equal(al_engine_submit(base, &br, &bid), AL_OK);
        assert_int_equal(al_engine_run(base), AL_OK);
        assert_int_equal(al_engine_seq_kv(base, bid, &v->seg), AL_OK);
        v->gl = *gl_all + (size_t)i * NGEN * V;
        v->lp = *lp_all + (size_t)i * NGEN;
        /* the twin (alone) run writes into the second half */
        iv[n + i] = *v;
        iv[n + i].gl = *gl_all + (size_t)(n + i) * NGEN * V;
        iv[n + i].lp = *lp_all + (size_t)(n + i) * NGEN;
    }
    return base;
}

/* Few rows: n invocations of a 2-token suffix = 2n <= 8 rows in the prefill step, n in a decode
 * step. The few-row kernel (kernels/cpu/matmul_tiles.h) computes every output element of a row
 * with the same accumulation order whatever the other rows (one accumulator per row and weight
 * row, 16-lane partial sums in k order, the same horizontal sum and tail), LoRA runs per
 * sequence range, attention per sequence, the elementwise ops per element: so stacking rows
 * changes no bit. This checks it, f32 and bf16 weights. */
static void few_rows(const al_ops *ops)
{
    enum { N = 4 };
    inv iv[2 * N];
    float *gl, *lp;
    al_engine *base = setup(ops, iv, N, 2, &gl, &lp);
    int32_t V = iv[0].c->m->cfg.vocab_size;
    bat_stats together = {0}, alone = {0};
    run_worker(ops, iv, 0, N, 0, &together);
    for (int i = 0; i < N; i++)
        run_worker(ops, iv, N + i, N + i + 1, 0, &alone);
    assert_true(together.max_rows <= 8);
    assert_true(together.shared_steps >= NGEN); /* prefill + decode steps ran all N at once */
    assert_int_equal(alone.shared_steps, 0);
    for (int i = 0; i < N; i++) {
        al_assert_ints_equal(iv[i].toks, iv[N + i].toks, NGEN);
        if (memcmp(iv[i].gl, iv[N + i].gl, sizeof(float) * (size_t)NGEN * V) ||
            memcmp(iv[i].lp, iv[N + i].lp, sizeof(float) * NGEN))
            fail_msg("%s: invocation %d (%s): batched logits differ from alone (max %g): not bitwise", ops->name,
                     i, iv[i].c->name, (double)golden_maxdiff(iv[i].gl, iv[N + i].gl, (size_t)NGEN * V));
    }
    free(gl);
    free(lp);
    al_engine_free(base);
}

static void test_few_rows_bitwise_f32(void **state) { few_rows(al_ops_cpu()); }
static void test_few_rows_bitwise_bf16(void **state) { few_rows(al_ops_cpu_bf16()); }

/* Many rows: 8 invocations with the goldens' suffixes (from the activation start) stack 8 x 3-16
 * rows into steps above the few-row limit, where OpenBLAS sgemm computes the base matmuls; its
 * blocking may depend on the row count, so batched and alone agree within 1e-4 (f32 logits of
 * magnitude ~10: a few ulps of sgemm summation order per layer), with the same tokens, and both
 * match the PEFT goldens within their tolerance. */
static void test_many_rows_tolerance(void **state)
{
    enum { N = 8 };
    inv iv[2 * N];
    float *gl, *lp;
    al_engine *base = setup(al_ops_cpu(), iv, N, 0, &gl, &lp);
    int32_t V = iv[0].c->m->cfg.vocab_size;
    bat_stats together = {0}, alone = {0};
    run_worker(al_ops_cpu(), iv, 0, N, 0, &together);
    for (int i = 0; i < N; i++)
        run_worker(al_ops_cpu(), iv, N + i, N + i + 1, 0, &alone);
    assert_true(together.max_rows > 8);
    assert_true(together.shared_steps >= NGEN);
    float worst = 0;
    for (int i = 0; i < N; i++) {
        const golden_case *c = iv[i].c;
        al_assert_ints_equal(iv[i].toks, iv[N + i].toks, NGEN);
        al_assert_ints_equal(iv[i].toks, c->greedy, NGEN);
        float d = golden_maxdiff(iv[i].gl, iv[N + i].gl, (size_t)NGEN * V);
        worst = AL_MAX(worst, d);
        assert_true(d <= 1e-4f);
        assert_true(golden_maxdiff(iv[i].gl, c->gen_logits, (size_t)NGEN * V) <= c->tol);
        assert_true(golden_maxdiff(iv[N + i].gl, c->gen_logits, (size_t)NGEN * V) <= c->tol);
    }
    fprintf(stderr, "many rows: %d invocations, up to %d rows a step, batched vs alone max |diff| %g\n", N,
            together.max_rows, (double)worst);
    free(gl);
    free(lp);
    al_engine_free(base);
}

/* max_shared_rows = 8 (the worker's default, worker.batch_rows): the same 8 invocations with the
 * goldens' suffixes (3-16 rows each) share only steps of <= 8 rows, a sequence joins with its whole
 * chunk or waits, a chunk above 8 rows runs alone: every sequence's chunks are those it runs alone
 * and every shared step stays in the few-row kernel, so batched equals alone bit for bit by
 * construction, while the decode steps are still shared. */
static void test_shared_rows_bitwise(void **state)
{
    enum { N = 8 };
    const al_ops *ops[] = {al_ops_cpu(), al_ops_cpu_bf16()};
    for (size_t o = 0; o < AL_ARRAY_LEN(ops); o++) {
        inv iv[2 * N];
        float *gl, *lp;
        al_engine *base = setup(ops[o], iv, N, 0, &gl, &lp);
        int32_t V = iv[0].c->m->cfg.vocab_size;
        bat_stats together = {0}, alone = {0};
        run_worker(ops[o], iv, 0, N, 8, &together);
        for (int i = 0; i < N; i++)
            run_worker(ops[o], iv, N + i, N + i + 1, 8, &alone);
        assert_true(together.shared_steps >= NGEN - 1); /* the decodes of all 8 share steps */
        assert_true(together.steps < alone.steps);
        for (int i = 0; i < N; i++) {
            al_assert_ints_equal(iv[i].toks, iv[N + i].toks, NGEN);
            if (memcmp(iv[i].gl, iv[N + i].gl, sizeof(float) * (size_t)NGEN * V) ||
                memcmp(iv[i].lp, iv[N + i].lp, sizeof(float) * NGEN))
                fail_msg("%s: invocation %d (%s): batched logits differ from alone (max %g)", ops[o]->name, i,
                         iv[i].c->name, (double)golden_maxdiff(iv[i].gl, iv[N + i].gl, (size_t)NGEN * V));
            if (ops[o] == al_ops_cpu())
                assert_true(golden_maxdiff(iv[i].gl, iv[i].c->gen_logits, (size_t)NGEN * V) <= iv[i].c->tol);
        }
        fprintf(stderr, "%s, max_shared_rows 8: %llu steps batched (%llu shared) vs %llu alone, bitwise equal\n",
                ops[o]->name, (unsigned long long)together.steps, (unsigned long long)together.shared_steps,
                (unsigned long long)alone.steps);
        free(gl);
        free(lp);
        al_engine_free(base);
    }
}

/* A chunk that cannot join a shared step waits one step at most: it goes first in the next one,
 * even while other sequences keep decoding (no starvation); budget-limited chunks still work. */
static void test_shared_rows_no_starvation(void **state)
{
    const golden_case *c = golden_find(&G, "long_prompt");
    assert_non_null(c);
    al_engine *e = NULL;
    al_engine_opts o = {.block_size = 16, .n_blocks = 256, .max_seqs = 8, .max_batch_tokens = 64, .max_shared_rows = 8};
    assert_int_equal(al_engine_create(c->m, &o, &e), AL_OK);
    int32_t dec[4], big;
    for (int i = 0; i < 4; i++) {
        al_request r = {.tokens = c->prompt + i, .n_tokens = 2, .adapter = -1, .max_tokens = 40, .ignore_eos = 1};
        assert_int_equal(al_engine_submit(e, &r, &dec[i]), AL_OK);
    }
    int32_t n = 0;
    assert_int_equal(al_engine_step(e, &n), AL_OK); /* 4 x 2 rows: shared, then they decode */
    al_request r = {.tokens = c->prompt, .n_tokens = c->n_prompt, .adapter = -1, .max_tokens = 1};
    assert_int_equal(al_engine_submit(e, &r, &big), AL_OK);
    int steps = 0;
    while (!al_engine_done(e, big)) {
        assert_int_equal(al_engine_step(e, &n), AL_OK);
        al_engine_stats st;
        al_engine_stats_get(e, &st);
        assert_true(st.last_step_rows <= 8 || st.last_step_seqs == 1); /* long chunks alone */
        steps++;
        assert_true(steps <= 2 * ((c->n_prompt + 63) / 64) + 1);
    }
    for (int i = 0; i < 4; i++)
        assert_false(al_engine_done(e, dec[i])); /* the decoders were still running meanwhile */
    assert_int_equal(al_engine_run(e), AL_OK);
    al_result res;
    assert_int_equal(al_engine_result(e, big, &res), AL_OK);
    assert_int_equal(res.finish, AL_FINISH_LENGTH);
    al_engine_free(e);
}

int main(void)
{
    if (golden_load(&G) != 0) {
        fprintf(stderr, "cannot load the goldens\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_few_rows_bitwise_f32),
        cmocka_unit_test(test_few_rows_bitwise_bf16),
        cmocka_unit_test(test_many_rows_tolerance),
        cmocka_unit_test(test_shared_rows_bitwise),
        cmocka_unit_test(test_shared_rows_no_starvation),
    };
    int rc = cmocka_run_group_tests_name("engine_batch", tests, NULL, NULL);
    golden_free(&G);
    return rc;
}
