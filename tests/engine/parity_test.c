/* parity_test.c: the engine against PEFT/transformers goldens (tests/fixtures/oracle): prompt and
 * generation logits, greedy tokens and activation starts, across block sizes, prefill chunking,
 * mixed batches and the worker's read-only-prefix path. */
#include "al_test.h"

#include <math.h>

#include "common/util.h"
#include "engine/golden.c.inc"

static golden G;

typedef struct run_opts {
    int32_t block_size, chunk;
} run_opts;

/* Runs cases [n] in ONE engine (a batch when n > 1) and checks each against its golden. */
static void run_cases(golden_case **cs, int n, run_opts o)
{
    al_model *m = cs[0]->m;
    al_engine *e = NULL;
    al_engine_opts eo = {.block_size = o.block_size, .max_batch_tokens = o.chunk, .max_seqs = n,
                         .n_blocks = 1024};
    assert_int_equal(al_engine_create(m, &eo, &e), AL_OK);
    int32_t V = m->cfg.vocab_size;
    int32_t ids[GOLDEN_MAX];
    float *pl[GOLDEN_MAX], *gl[GOLDEN_MAX];
    for (int i = 0; i < n; i++) {
        golden_case *c = cs[i];
        assert_ptr_equal(c->m, m);
        int32_t slot = -1;
        if (c->a)
            assert_int_equal(al_engine_add_adapter(e, c->a, &slot), AL_OK);
        pl[i] = calloc((size_t)c->n_prompt * V, sizeof(float));
        gl[i] = calloc((size_t)8 * V, sizeof(float));
        al_request r = {.tokens = c->prompt, .n_tokens = c->n_prompt, .adapter = slot, .act_start = AL_ACT_AUTO,
                        .max_tokens = 8, .ignore_eos = 1, .top_logprobs = 5, .prompt_logits = pl[i],
                        .gen_logits = gl[i], .prompt_logprobs = 1, .prompt_top_logprobs = 3};
        assert_int_equal(al_engine_submit(e, &r, &ids[i]), AL_OK);
    }
    assert_int_equal(al_engine_run(e), AL_OK);
    for (int i = 0; i < n; i++) {
        golden_case *c = cs[i];
        al_result r;
        assert_int_equal(al_engine_result(e, ids[i], &r), AL_OK);
        assert_int_equal(r.finish, AL_FINISH_LENGTH);
        assert_int_equal(r.n_tokens, 8);
        float dp = golden_maxdiff(pl[i], c->prompt_logits, (size_t)c->n_prompt * V);
        float dg = golden_maxdiff(gl[i], c->gen_logits, (size_t)8 * V);
        if (getenv("ALORA_PARITY_VERBOSE") || dp > c->tol || dg > c->tol || r.activation_start != c->act_start ||
            memcmp(r.tokens, c->greedy, sizeof c->greedy))
            fprintf(stderr, "case %s (block %d chunk %d batch %d): prompt diff %g gen diff %g tol %g act %d/%d\n",
                    c->name, o.block_size, o.chunk, n, dp, dg, c->tol, r.activation_start, c->act_start);
        assert_true(dp <= c->tol);
        assert_true(dg <= c->tol);
        assert_int_equal(r.activation_start, c->act_start);
        al_assert_ints_equal(r.tokens, c->greedy, AL_ARRAY_LEN(c->greedy));
        /* prompt logprobs: log-softmax of PyTorch's logits at the position before, at the prompt token;
         * the best alternative is the row's maximum (a log-softmax moves values by up to 2 tol) */
        assert_int_equal(r.n_prompt, c->n_prompt);
        assert_int_equal(r.prompt_top_logprobs, 3);
        for (int32_t t = 1; t < c->n_prompt; t++) {
            const float *g = c->prompt_logits + (size_t)(t - 1) * V;
            double mx = g[0], se = 0.0;
            for (int32_t v = 1; v < V; v++)
                mx = g[v] > mx ? g[v] : mx;
            for (int32_t v = 0; v < V; v++)
                se += exp((double)g[v] - mx);
            double lse = mx + log(se), want = (double)g[c->prompt[t]] - lse;
            if (fabs(r.prompt_logprobs[t] - want) > 2 * c->tol || fabs(r.prompt_top[t * 3].logprob - (mx - lse)) > 2 * c->tol)
                fail_msg("case %s: prompt token %d: logprob %g want %g, best %g want %g", c->name, t,
                         (double)r.prompt_logprobs[t], want, (double)r.prompt_top[t * 3].logprob, mx - lse);
            assert_true(r.prompt_top[t * 3 + 2].logprob <= r.prompt_top[t * 3 + 1].logprob);
        }
        /* top logprobs: the first entry is the greedy token, logprobs sorted and <= 0 */
        assert_int_equal(r.top[0].id, r.tokens[0]);
        for (int k = 1; k < 5; k++)
            assert_true(r.top[k].logprob <= r.top[k - 1].logprob && r.top[k].logprob <= 0.0f);
        free(pl[i]);
        free(gl[i]);
    }
    al_engine_free(e);
}

static void test_each_case(void **state)
{
    setenv("ALORA_PARITY_VERBOSE", "1", 1); /* the CI log shows every case's max difference */
    for (int i = 0; i < G.n_cases; i++) {
        golden_case *c = &G.cases[i];
        run_cases(&c, 1, (run_opts){16, 512});
    }
    unsetenv("ALORA_PARITY_VERBOSE");
}

static void test_block_sizes_and_chunks(void **state)
{
    run_opts variants[] = {{1, 512}, {5, 7}, {32, 13}, {16, 16}, {16, 1}};
    for (size_t v = 0; v < AL_ARRAY_LEN(variants); v++)
        for (int i = 0; i < G.n_cases; i++) {
            golden_case *c = &G.cases[i];
            if (variants[v].chunk == 1 && c->n_prompt > 40)
                continue; /* token-by-token prefill of the long prompt adds nothing */
            run_cases(&c, 1, variants[v]);
        }
}

static void test_mixed_batch(void **state)
{
    golden_case *cs[GOLDEN_MAX];
    for (int i = 0; i < G.n_mixed; i++) {
        cs[i] = golden_find(&G, G.mixed[i]);
        assert_non_null(cs[i]);
    }
    run_cases(cs, G.n_mixed, (run_opts){16, 512});
    /* small step budget: chunked prefills interleave with decodes of other sequences */
    run_cases(cs, G.n_mixed, (run_opts){16, 24});
}

/* The worker's case: the base prefix [0, s) computed in one engine (its pool), the adapter part
 * computed in another engine that attends over that prefix read-only. */
static void test_readonly_prefix(void **state)
{
    for (int i = 0; i < G.n_cases; i++) {
        golden_case *c = &G.cases[i];
        if (!c->a || c->act_start <= 0)
            continue;
        int32_t s = c->act_start, V = c->m->cfg.vocab_size, toks[8];
        float *pl = golden_readonly_prefix(c, NULL, toks);
        float d = golden_maxdiff(pl, c->prompt_logits + (size_t)s * V, (size_t)(c->n_prompt - s) * V);
        if (d > c->tol)
            fprintf(stderr, "readonly prefix %s: diff %g\n", c->name, d);
        assert_true(d <= c->tol);
        al_assert_ints_equal(toks, c->greedy, AL_ARRAY_LEN(c->greedy));
        free(pl);
    }
}

/* Positions before the activation start are the base model's, bit for bit up to GEMM blocking. */
static void test_prefix_equals_base(void **state)
{
    for (int i = 0; i < G.n_cases; i++) {
        golden_case *c = &G.cases[i];
        if (!c->a || c->act_start <= 0)
            continue;
        int32_t V = c->m->cfg.vocab_size, s = c->act_start;
        float *with = calloc((size_t)c->n_prompt * V, sizeof(float));
        float *without = calloc((size_t)c->n_prompt * V, sizeof(float));
        for (int pass = 0; pass < 2; pass++) {
            al_engine *e = NULL;
            assert_int_equal(al_engine_create(c->m, &(al_engine_opts){.max_seqs = 1, .n_blocks = 64}, &e), AL_OK);
            int32_t slot = -1, id;
            if (pass == 0)
                assert_int_equal(al_engine_add_adapter(e, c->a, &slot), AL_OK);
            al_request r = {.tokens = c->prompt, .n_tokens = c->n_prompt, .adapter = slot, .act_start = AL_ACT_AUTO,
                            .prompt_logits = pass == 0 ? with : without};
            assert_int_equal(al_engine_submit(e, &r, &id), AL_OK);
            assert_int_equal(al_engine_run(e), AL_OK);
            al_engine_free(e);
        }
        assert_true(golden_maxdiff(with, without, (size_t)s * V) <= 1e-6f);
        assert_true(golden_maxdiff(with + (size_t)s * V, without + (size_t)s * V, (size_t)V) > 1e-3f);
        free(with);
        free(without);
    }
}

int main(void)
{
    if (golden_load(&G) != 0) {
        fprintf(stderr, "cannot load the goldens\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_case),
        cmocka_unit_test(test_block_sizes_and_chunks),
        cmocka_unit_test(test_mixed_batch),
        cmocka_unit_test(test_readonly_prefix),
        cmocka_unit_test(test_prefix_equals_base),
    };
    int rc = cmocka_run_group_tests_name("engine_parity", tests, NULL, NULL);
    golden_free(&G);
    return rc;
}
