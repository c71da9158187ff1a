/* logprobs_topk_test.c: CUDA log-softmax top-k and argmax (device logits, host outputs) against the
 * CPU twin: same ids (ties: lower id first), logprobs within 1e-5. */
#include "ktest.h"

static void run(int n, int V, int k, int ties)
{
    float *l = kt_randn((size_t)n * V, 81, 3.0f);
    if (ties)
        for (int r = 0; r < n; r++)
            for (int i = 0; i < V; i += 3)
                l[(size_t)r * V + i] = (float)((i / 3) % 4); /* many equal values, the max among them */
    al_topk_entry *want = calloc((size_t)n * (k > 0 ? k : 1), sizeof *want), *got = calloc((size_t)n * (k > 0 ? k : 1), sizeof *got);
    int32_t *am_want = calloc((size_t)n, sizeof(int32_t)), *am_got = calloc((size_t)n, sizeof(int32_t));
    KT_CPU->logprobs_topk(l, n, V, k, want, am_want);
    float *dl = kt_dev(l, (size_t)n * V);
    KT_GPU->logprobs_topk(dl, n, V, k, got, am_got);
    printf("  logprobs_topk n%d V%d k%d ties%d\n", n, V, k, ties);
    assert_memory_equal(am_got, am_want, sizeof(int32_t) * (size_t)n);
    for (size_t i = 0; i < (size_t)n * k; i++) {
        if (got[i].id != want[i].id)
            fprintf(stderr, "entry %zu: id %d vs %d (lp %g vs %g)\n", i, got[i].id, want[i].id, got[i].logprob,
                    want[i].logprob);
        assert_int_equal(got[i].id, want[i].id);
        if (isinf(want[i].logprob))
            assert_true(isinf(got[i].logprob) && got[i].logprob < 0);
        else
            assert_true(fabsf(got[i].logprob - want[i].logprob) <= 1e-5f * fmaxf(1.0f, fabsf(want[i].logprob)));
    }
    /* argmax may be requested alone */
    KT_GPU->logprobs_topk(dl, n, V, 0, NULL, am_got);
    assert_memory_equal(am_got, am_want, sizeof(int32_t) * (size_t)n);
    KT_GPU->free(dl);
    free(l), free(want), free(got), free(am_want), free(am_got);
}

static void test_topk(void **state)
{
    run(3, 256, 5, 0);
    run(2, 32000, 20, 0);
    run(1, 128256, 64, 0);
    run(4, 1000, 64, 1);
    run(2, 10, 64, 0); /* k > V: the tail is id -1, -inf */
    run(32, 512, 1, 0);
}

int main(void)
{
    kt_init();
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_topk)};
    return cmocka_run_group_tests_name("kernels_logprobs_topk", tests, NULL, NULL);
}
