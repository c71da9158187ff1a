/* prefix_cache_test.c: block-level prefix cache: reuse across sequences (full and partial blocks
 * with copy-on-write), pins that outlive sequences, LRU eviction, and no adapter KV ever cached. */
#include "al_test.h"

#include <math.h>

#include "common/util.h"
#include "engine/golden.c.inc"

static golden G;

/* pl: prompt logits (turns the cache off for that request), gl: generation logits */
static int32_t submit_ex(al_engine *e, const int32_t *t, int32_t n, int32_t adapter, int32_t max_tokens, float *pl,
                         float *gl)
{
    int32_t id;
    al_request r = {.tokens = t, .n_tokens = n, .adapter = adapter, .act_start = AL_ACT_AUTO,
                    .max_tokens = max_tokens, .ignore_eos = 1, .prompt_logits = pl, .gen_logits = gl};
    assert_int_equal(al_engine_submit(e, &r, &id), AL_OK);
    assert_int_equal(al_engine_run(e), AL_OK);
    return id;
}

static int32_t submit(al_engine *e, const int32_t *t, int32_t n, int32_t adapter, int32_t max_tokens, float *pl)
{
    return submit_ex(e, t, n, adapter, max_tokens, pl, NULL);
}

static al_result result(al_engine *e, int32_t id)
{
    al_result r;
    assert_int_equal(al_engine_result(e, id, &r), AL_OK);
    assert_int_not_equal(r.finish, AL_FINISH_ERROR);
    return r;
}

static void test_reuse_full_and_partial(void **state)
{
    golden_case *c = golden_find(&G, "alora_mid"); /* 40 tokens, used here without its adapter */
    assert_non_null(c);
    int32_t V = c->m->cfg.vocab_size, n = c->n_prompt;
    al_engine *e = NULL, *ref = NULL;
    assert_int_equal(al_engine_create(c->m, &(al_engine_opts){.n_blocks = 64, .max_seqs = 4, .prefix_cache = 1}, &e),
                     AL_OK);
    assert_int_equal(al_engine_create(c->m, &(al_engine_opts){.n_blocks = 64, .max_seqs = 4}, &ref), AL_OK);
    /* A: prefill-only of 30 tokens, released: 1 full block + a 14-token partial block stay cached */
    int32_t a = submit(e, c->prompt, 30, -1, 0, NULL);
    al_result ra = result(e, a);
    assert_int_equal(ra.cached_tokens, 0);
    assert_int_equal(ra.computed_tokens, 30);
    al_engine_release(e, a);
    al_engine_stats st;
    al_engine_stats_get(e, &st);
    assert_int_equal(st.blocks_cached, 2);
    assert_int_equal(st.blocks_used, 0);
    /* B: the same 30 tokens: everything from the cache, nothing computed */
    int32_t b = submit(e, c->prompt, 30, -1, 0, NULL);
    al_result rb = result(e, b);
    assert_int_equal(rb.cached_tokens, 30);
    assert_int_equal(rb.computed_tokens, 0);
    al_engine_release(e, b);
    /* C: 40 tokens + 8 generated: 30 cached (the partial block copied before it is written) */
    float *pl = calloc((size_t)n * V, sizeof(float)), *plr = calloc((size_t)n * V, sizeof(float));
    uint64_t copied0 = al_engine_kvpool(e)->copied_bytes;
    int32_t cid = submit_ex(e, c->prompt, n, -1, 8, NULL, pl);
    al_result rc = result(e, cid);
    assert_int_equal(rc.cached_tokens, 30);
    assert_int_equal(rc.computed_tokens, n - 30 + 7);
    assert_true(al_engine_kvpool(e)->copied_bytes > copied0); /* copy-on-write happened */
    int32_t rid = submit_ex(ref, c->prompt, n, -1, 8, NULL, plr);
    al_result rr = result(ref, rid);
    al_assert_ints_equal(rc.tokens, rr.tokens, 8);
    assert_true(golden_maxdiff(pl, plr, (size_t)8 * V) <= 1e-5f);
    /* the cached partial block was not modified: a 30-token request still hits and matches */
    al_engine_release(e, cid);
    int32_t d = submit_ex(e, c->prompt, 31, -1, 1, NULL, pl);
    al_result rd = result(e, d);
    assert_int_equal(rd.cached_tokens, 30);
    al_engine_release(ref, rid);
    int32_t d2 = submit_ex(ref, c->prompt, 31, -1, 1, NULL, plr);
    assert_true(golden_maxdiff(pl, plr, (size_t)V) <= 1e-5f);
    assert_int_equal(result(e, d).tokens[0], result(ref, d2).tokens[0]);
    /* asking for every prompt position's logits computes them all, cache or not */
    al_engine_release(e, d);
    int32_t f = submit(e, c->prompt, n, -1, 0, pl);
    assert_int_equal(result(e, f).cached_tokens, 0);
    al_engine_release(ref, d2);
    int32_t f2 = submit(ref, c->prompt, n, -1, 0, plr);
    assert_true(golden_maxdiff(pl, plr, (size_t)n * V) <= 1e-5f);
    (void)f2;
    free(pl);
    free(plr);
    al_engine_free(e);
    al_engine_free(ref);
}

static void test_pin_outlives_sequence(void **state)
{
    golden_case *c = golden_find(&G, "base_llama_f32");
    al_engine *e = NULL;
    assert_int_equal(al_engine_create(c->m, &(al_engine_opts){.n_blocks = 8, .max_seqs = 2, .prefix_cache = 1}, &e),
                     AL_OK);
    int32_t a = submit(e, c->prompt, 30, -1, 0, NULL), blocks[8], nb;
    assert_int_equal(al_engine_pin(e, a, 30, blocks, 8, &nb), AL_OK);
    assert_int_equal(nb, 2);
    assert_int_equal(al_engine_pin(e, a, 31, blocks, 8, &nb), AL_ERANGE);
    assert_int_equal(al_engine_pin(e, 5, 1, blocks, 8, &nb), AL_ENOTFOUND);
    assert_int_equal(al_engine_pin(e, a, 30, blocks, 8, &nb), AL_OK);
    al_engine_unpin(e, blocks, nb); /* second pin dropped again */
    al_engine_release(e, a);
    al_engine_stats st;
    al_engine_stats_get(e, &st);
    assert_int_equal(st.blocks_used, 2); /* held by the pin */
    /* fill the pool with other prompts: pinned blocks are never evicted */
    int32_t other[120];
    for (int round = 0; round < 4; round++) {
        for (int i = 0; i < 90; i++)
            other[i] = 3 + (i * 7 + round * 31) % 250;
        int32_t id = submit(e, other, 90, -1, 0, NULL);
        al_engine_release(e, id);
    }
    al_engine_stats_get(e, &st);
    assert_int_equal(st.blocks_used, 2);
    int32_t b = submit(e, c->prompt, 30, -1, 0, NULL);
    assert_int_equal(result(e, b).cached_tokens, 30);
    al_engine_release(e, b);
    al_engine_unpin(e, blocks, nb);
    al_engine_stats_get(e, &st);
    assert_int_equal(st.blocks_used, 0);
    al_engine_free(e);
}

static void test_eviction_lru(void **state)
{
    golden_case *c = golden_find(&G, "long_prompt"); /* 150 tokens */
    al_engine *e = NULL;
    assert_int_equal(al_engine_create(c->m, &(al_engine_opts){.n_blocks = 12, .max_seqs = 1, .prefix_cache = 1}, &e),
                     AL_OK);
    int32_t a = submit(e, c->prompt, 64, -1, 0, NULL); /* 4 blocks */
    al_engine_release(e, a);
    int32_t b = submit(e, c->prompt + 64, 80, -1, 0, NULL); /* 5 more: 9 of 12 */
    al_engine_release(e, b);
    int32_t d = submit(e, c->prompt + 20, 64, -1, 0, NULL); /* needs 4: evicts the oldest (a's) */
    al_engine_release(e, d);
    int32_t x = submit(e, c->prompt, 64, -1, 0, NULL);
    assert_true(result(e, x).cached_tokens < 64);
    al_engine_release(e, x);
    int32_t y = submit(e, c->prompt + 20, 64, -1, 0, NULL);
    assert_int_equal(result(e, y).cached_tokens, 64);
    al_engine_release(e, y);
    al_engine_free(e);
}

/* KV computed with an adapter is never cached: a base request afterwards equals an uncached run. */
static void test_adapter_never_taints(void **state)
{
    golden_case *c = golden_find(&G, "alora_mid"); /* activation start 30 */
    int32_t V = c->m->cfg.vocab_size, n = c->n_prompt, slot;
    al_engine *e = NULL;
    assert_int_equal(al_engine_create(c->m, &(al_engine_opts){.n_blocks = 64, .max_seqs = 2, .prefix_cache = 1}, &e),
                     AL_OK);
    assert_int_equal(al_engine_add_adapter(e, c->a, &slot), AL_OK);
    int32_t a = submit(e, c->prompt, n, slot, 8, NULL);
    assert_int_equal(result(e, a).activation_start, 30);
    al_engine_release(e, a);
    /* a base request of the first 30 tokens: only the block wholly before s is reused, and the
     * logits at position 29 are the golden ones there (positions < s are base logits) */
    float *gl = calloc((size_t)V, sizeof(float));
    int32_t b = submit_ex(e, c->prompt, 30, -1, 1, NULL, gl);
    al_result rb = result(e, b);
    assert_int_equal(rb.cached_tokens, 16);
    assert_true(golden_maxdiff(gl, c->prompt_logits + (size_t)29 * V, (size_t)V) <= c->tol);
    free(gl);
    (void)n;
    al_engine_free(e);
}

int main(void)
{
    if (golden_load(&G) != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reuse_full_and_partial),
        cmocka_unit_test(test_pin_outlives_sequence),
        cmocka_unit_test(test_eviction_lru),
        cmocka_unit_test(test_adapter_never_taints),
    };
    int rc = cmocka_run_group_tests_name("engine_prefix_cache", tests, NULL, NULL);
    golden_free(&G);
    return rc;
}
