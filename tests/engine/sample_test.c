/* sample_test.c: the sampler: greedy, top-k, top-p, temperature and seeds, against exact
 * softmax probabilities computed by hand. */
#include "al_test.h"

#include <math.h>

#include "engine/engine.h"

static void test_greedy_and_degenerate_filters(void **state)
{
    float l[5] = {0.1f, 2.0f, -1.0f, 1.9f, 0.0f}, c[5];
    al_rng r;
    al_rng_seed(&r, 1);
    memcpy(c, l, sizeof l);
    assert_int_equal(al_sample(c, 5, &(al_sampling){0}, &r), 1);
    for (int i = 0; i < 50; i++) {
        memcpy(c, l, sizeof l);
        assert_int_equal(al_sample(c, 5, &(al_sampling){.temperature = 1.0f, .top_k = 1, .top_p = 1.0f}, &r), 1);
        memcpy(c, l, sizeof l);
        assert_int_equal(al_sample(c, 5, &(al_sampling){.temperature = 1.0f, .top_p = 0.01f}, &r), 1);
    }
}

/* Frequencies over 20000 draws match softmax(l / T) restricted to the top-k / top-p set. */
static void test_distribution(void **state)
{
    float l[4] = {1.0f, 0.0f, 2.0f, -3.0f};
    struct {
        float t;
        int k;
        float p;
    } cfg[] = {{1.0f, 0, 1.0f}, {0.5f, 0, 1.0f}, {1.0f, 2, 1.0f}, {1.0f, 0, 0.8f}};
    for (size_t ci = 0; ci < AL_ARRAY_LEN(cfg); ci++) {
        double w[4], sum = 0;
        int order[4] = {2, 0, 1, 3}; /* by logit */
        int keep = cfg[ci].k ? cfg[ci].k : 4;
        for (int i = 0; i < 4; i++)
            w[i] = exp(l[i] / cfg[ci].t);
        if (cfg[ci].p < 1.0f) { /* nucleus: smallest prefix of `order` with mass >= p */
            double tot = 0, cum = 0;
            for (int i = 0; i < 4; i++)
                tot += w[i];
            for (keep = 0; keep < 4 && cum < cfg[ci].p * tot;)
                cum += w[order[keep++]];
        }
        double p[4] = {0};
        for (int i = 0; i < keep; i++)
            sum += w[order[i]];
        for (int i = 0; i < keep; i++)
            p[order[i]] = w[order[i]] / sum;
        int cnt[4] = {0}, N = 20000;
        al_rng r;
        al_rng_seed(&r, 7 + ci);
        for (int n = 0; n < N; n++) {
            float c[4];
            memcpy(c, l, sizeof l);
            cnt[al_sample(c, 4, &(al_sampling){.temperature = cfg[ci].t, .top_k = cfg[ci].k, .top_p = cfg[ci].p},
                          &r)]++;
        }
        for (int i = 0; i < 4; i++) {
            double f = (double)cnt[i] / N, sd = sqrt(p[i] * (1 - p[i]) / N) + 1e-9;
            if (fabs(f - p[i]) > 5 * sd + 1e-4)
                fprintf(stderr, "cfg %zu token %d: freq %.4f want %.4f\n", ci, i, f, p[i]);
            assert_true(fabs(f - p[i]) <= 5 * sd + 1e-4);
        }
    }
}

static void test_seed_determinism(void **state)
{
    float l[64];
    for (int i = 0; i < 64; i++)
        l[i] = (float)((i * 37) % 11) * 0.3f;
    int32_t a[32], b[32];
    for (int pass = 0; pass < 2; pass++) {
        al_rng r;
        al_rng_seed(&r, 123);
        for (int i = 0; i < 32; i++) {
            float c[64];
            memcpy(c, l, sizeof l);
            (pass ? b : a)[i] = al_sample(c, 64, &(al_sampling){.temperature = 1.3f, .top_p = 1.0f}, &r);
        }
    }
    assert_memory_equal(a, b, sizeof a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_and_degenerate_filters),
        cmocka_unit_test(test_distribution),
        cmocka_unit_test(test_seed_determinism),
    };
    return cmocka_run_group_tests_name("engine_sample", tests, NULL, NULL);
}
