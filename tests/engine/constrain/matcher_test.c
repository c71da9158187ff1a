/* matcher_test.c: the matcher and grammar API: logits masking, EOS and finished states, the
 * grammar cache, concurrent masks on a shared grammar, the mask-memory budget, the DFA state cap. */
#include <math.h>
#include <pthread.h>

#include "ctest_util.h"

static al_vocab *gpt2(void)
{
    return ct_load_tokenizer("tests/fixtures/tokenizer/bl_gpt2.tokenizer.json", 1,
                             (const char *const[]){"<|endoftext|>", NULL});
}

static void test_apply(void **state)
{
    al_vocab *v = gpt2();
    al_grammar *g = NULL;
    assert_int_equal(ct_compile(AL_CONSTRAINT_JSON_OBJECT, NULL, v, &g), AL_OK);
    al_matcher *m;
    assert_int_equal(al_matcher_new(g, &m), AL_OK);
    int32_t n = v->n, V[3] = {n, n + 77, n - 40};
    uint32_t *bits = malloc((size_t)g->nwords * 4);
    float *l = malloc((size_t)(n + 100) * sizeof *l);
    al_rng r;
    al_rng_seed(&r, 3);
    for (int step = 0; step < 12; step++) {
        int32_t c = al_matcher_mask(m, 0, bits);
        for (int k = 0; k < 3; k++) {
            for (int32_t i = 0; i < V[k]; i++)
                l[i] = (float)i;
            int32_t got = al_matcher_apply(m, 0, l, V[k]), want = 0;
            for (int32_t i = 0; i < V[k]; i++) {
                int allowed = i < n && (bits[i >> 5] >> (i & 31) & 1);
                want += allowed;
                if (allowed ? l[i] != (float)i : !isinf(l[i]))
                    fail_msg("V=%d id %d: allowed %d, logit %g", V[k], i, allowed, l[i]);
            }
            assert_int_equal(got, want);
            if (V[k] >= n)
                assert_int_equal(got, c);
        }
        int32_t pick = -1, seen = 0; /* advance by a random allowed non-EOS token */
        for (int32_t i = 1; i < n; i++)
            if ((bits[i >> 5] >> (i & 31) & 1) && al_rng_next(&r) % (uint64_t)++seen == 0)
                pick = i;
        if (pick < 0)
            break;
        assert_int_equal(al_matcher_accept(m, pick), AL_OK);
    }
    free(bits);
    free(l);
    al_matcher_free(m);
    al_grammar_unref(g);
    al_vocab_free(v);
}

static void test_eos_and_finished(void **state)
{
    al_vocab *v = ct_byte_vocab();
    al_grammar *g = NULL;
    uint32_t bits[9];
    assert_int_equal(ct_compile(AL_CONSTRAINT_REGEX, "ab|a*", v, &g), AL_OK);
    al_matcher *m;
    assert_int_equal(al_matcher_new(g, &m), AL_OK);
    assert_true(al_matcher_accepting(m)); /* "" matches a* */
    assert_false(al_matcher_finished(m));
    assert_int_equal(al_matcher_mask(m, 0, bits), 2); /* 'a' and EOS */
    assert_int_equal(al_matcher_accept(m, 'b'), AL_EINVAL);
    assert_int_equal(al_matcher_accept(m, 'a'), AL_OK);
    assert_int_equal(al_matcher_accept(m, 'b'), AL_OK);
    assert_true(al_matcher_finished(m)); /* "ab": nothing but EOS */
    assert_int_equal(al_matcher_mask(m, 0, bits), 1);
    assert_true(bits[8] & 1);
    float l[257];
    for (int i = 0; i < 257; i++)
        l[i] = 0;
    assert_int_equal(al_matcher_apply(m, 5, l, 257), 1);
    assert_true(l[256] == 0 && isinf(l['a']));
    assert_int_equal(al_matcher_accept(m, 256), AL_OK);
    assert_true(al_matcher_finished(m) && al_matcher_accepting(m));
    assert_int_equal(al_matcher_accept(m, 'a'), AL_EINVAL);
    al_matcher_reset(m);
    assert_false(al_matcher_finished(m));
    assert_int_equal(al_matcher_accept(m, 300), AL_EINVAL);
    assert_int_equal(al_matcher_accept(m, -1), AL_EINVAL);
    al_matcher_free(m);
    al_grammar_unref(g);
    /* EOS before the output is complete is refused */
    assert_int_equal(ct_compile(AL_CONSTRAINT_REGEX, "abc", v, &g), AL_OK);
    assert_int_equal(al_matcher_new(g, &m), AL_OK);
    assert_int_equal(al_matcher_accept(m, 256), AL_EINVAL);
    assert_non_null(strstr(al_errmsg(), "EOS"));
    /* remaining <= 0 means no limit; remaining 1 in a non-accepting state allows nothing that
     * cannot finish in time: the closest tokens still come back (best effort) */
    assert_int_equal(al_matcher_mask(m, 0, bits), 1);
    assert_int_equal(al_matcher_mask(m, 1, bits), 1);
    al_matcher_free(m);
    al_grammar_unref(g);
    al_vocab_free(v);
}

static void test_cache(void **state)
{
    al_vocab *v = ct_byte_vocab(), *v2 = gpt2();
    al_constraint_spec a = {AL_CONSTRAINT_REGEX, "[0-9]+", 6}, b = {AL_CONSTRAINT_REGEX, "[0-9]*", 6};
    al_constraint_spec o1 = {AL_CONSTRAINT_JSON_OBJECT, NULL, 0}, o2 = {AL_CONSTRAINT_JSON_OBJECT, "junk", 4};
    al_grammar *g1, *g2, *g3, *g4, *g5, *g6;
    assert_int_equal(al_grammar_get(&a, v, &g1), AL_OK);
    assert_int_equal(al_grammar_get(&a, v, &g2), AL_OK);
    assert_ptr_equal(g1, g2);
    al_grammar_unref(g2);
    assert_int_equal(al_grammar_get(&b, v, &g3), AL_OK);
    assert_ptr_not_equal(g1, g3);
    assert_int_equal(al_grammar_get(&a, v2, &g4), AL_OK);
    assert_ptr_not_equal(g1, g4);
    assert_int_equal(al_grammar_get(&o1, v, &g5), AL_OK);
    assert_int_equal(al_grammar_get(&o2, v, &g6), AL_OK);
    assert_ptr_equal(g5, g6);
    /* errors are reported, not cached */
    al_constraint_spec bad = {AL_CONSTRAINT_REGEX, "(", 1};
    al_grammar *gb = NULL;
    assert_int_equal(al_grammar_get(&bad, v, &gb), AL_EINVAL);
    assert_null(gb);
    /* LRU: more distinct specs than the cache holds evict the oldest */
    char re[32];
    for (int i = 0; i < AL_CONSTRAIN_CACHE_SIZE + 5; i++) {
        snprintf(re, sizeof re, "x{%d}", i + 1);
        al_constraint_spec s = {AL_CONSTRAINT_REGEX, re, strlen(re)};
        al_grammar *t;
        assert_int_equal(al_grammar_get(&s, v, &t), AL_OK);
        al_grammar_unref(t);
    }
    assert_int_equal(al_grammar_get(&a, v, &g2), AL_OK);
    assert_ptr_not_equal(g1, g2); /* recompiled: g1 (still referenced here) was evicted */
    al_grammar *gs[] = {g1, g2, g3, g4, g5, g6};
    for (size_t i = 0; i < AL_ARRAY_LEN(gs); i++)
        al_grammar_unref(gs[i]);
    al_grammar_cache_clear();
    al_vocab_free(v);
    al_vocab_free(v2);
}

typedef struct {
    al_grammar *g;
    const al_vocab *v;
    uint64_t seed;
    int bad, checked;
} ct_thr;

static void *thr_main(void *arg)
{
    ct_thr *t = arg;
    al_rng r;
    al_rng_seed(&r, t->seed);
    uint32_t *a = malloc((size_t)t->g->nwords * 4), *b = malloc((size_t)t->g->nwords * 4);
    for (int walk = 0; walk < 8; walk++) {
        al_matcher *m;
        al_matcher_new(t->g, &m);
        for (int step = 0; step < 30; step++) {
            int32_t ca = al_matcher_mask(m, 0, a), cb = ct_brute_mask(t->g, t->v, ali_matcher_state(m), -1, b);
            t->bad += ca != cb || memcmp(a, b, (size_t)t->g->nwords * 4) != 0;
            t->checked++;
            int32_t pick = -1, seen = 0;
            for (int32_t i = 1; i < t->v->n; i++)
                if ((a[i >> 5] >> (i & 31) & 1) && al_rng_next(&r) % (uint64_t)++seen == 0)
                    pick = i;
            if (pick < 0 || al_matcher_accept(m, pick) != AL_OK)
                break;
        }
        al_matcher_free(m);
    }
    free(a);
    free(b);
    return NULL;
}

static void test_threads(void **state)
{
    al_vocab *v = gpt2();
    al_grammar *g;
    assert_int_equal(ct_compile(AL_CONSTRAINT_JSON_OBJECT, NULL, v, &g), AL_OK);
    ct_thr t[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        t[i] = (ct_thr){g, v, 100 + (uint64_t)i, 0, 0};
        pthread_create(&th[i], NULL, thr_main, &t[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(t[i].bad, 0);
        assert_true(t[i].checked > 20);
    }
    al_grammar_unref(g);
    al_vocab_free(v);
}

static void test_mask_budget(void **state)
{
    al_vocab *v = gpt2();
    al_grammar *g;
    size_t before = ali_mask_cached_bytes();
    size_t old = ali_mask_set_budget(0); /* nothing may be cached: masks are recomputed */
    assert_int_equal(ct_compile(AL_CONSTRAINT_REGEX, "[a-z]+( [a-z]+)*", v, &g), AL_OK);
    al_matcher *m;
    assert_int_equal(al_matcher_new(g, &m), AL_OK);
    uint32_t *a = malloc((size_t)g->nwords * 4), *b = malloc((size_t)g->nwords * 4);
    for (int k = 0; k < 3; k++) {
        int32_t ca = al_matcher_mask(m, 0, a), cb = ct_brute_mask(g, v, ali_matcher_state(m), -1, b);
        assert_int_equal(ca, cb);
        assert_memory_equal(a, b, (size_t)g->nwords * 4);
    }
    assert_int_equal(ali_mask_cached_bytes(), before);
    ali_mask_set_budget(old);
    assert_int_equal(al_matcher_mask(m, 0, a), ct_brute_mask(g, v, ali_matcher_state(m), -1, b));
    assert_true(ali_mask_cached_bytes() > before);
    al_matcher_free(m);
    al_grammar_unref(g);
    assert_int_equal(ali_mask_cached_bytes(), before);
    free(a);
    free(b);
    al_vocab_free(v);
}

/* (a|b)*a(a|b){17}: the DFA needs 2^18 states; the cap turns into errors, not crashes. */
static void test_state_cap(void **state)
{
    al_vocab *v = ct_byte_vocab();
    al_grammar *g;
    assert_int_equal(ct_compile(AL_CONSTRAINT_REGEX, "[ab]*a[ab]{17}", v, &g), AL_OK);
    al_matcher *m;
    assert_int_equal(al_matcher_new(g, &m), AL_OK);
    al_rng r;
    al_rng_seed(&r, 9);
    al_err e = AL_OK;
    for (int i = 0; i < 400000 && e == AL_OK; i++)
        e = al_matcher_accept(m, (al_rng_next(&r) & 1) ? 'a' : 'b');
    assert_int_equal(e, AL_ERANGE);
    assert_non_null(strstr(al_errmsg(), "DFA states"));
    uint32_t bits[9];
    al_matcher_reset(m);
    (void)al_matcher_mask(m, 0, bits); /* known states still answer, or report the cap */
    al_matcher_free(m);
    al_grammar_unref(g);
    al_vocab_free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_apply),
        cmocka_unit_test(test_eos_and_finished),
        cmocka_unit_test(test_cache),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_mask_budget),
        cmocka_unit_test(test_state_cap),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    al_grammar_cache_clear();
    return rc;
}
