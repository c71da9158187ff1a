/* swiglu_test.c: CUDA SwiGLU against the CPU twin (f32). */
#include "ktest.h"

static void test_swiglu(void **state)
{
    size_t ns[] = {1, 5, 100003};
    for (size_t k = 0; k < AL_ARRAY_LEN(ns); k++) {
        size_t n = ns[k];
        float *g = kt_randn(n, 41, 4.0f), *u = kt_randn(n, 42, 1.0f), *want = malloc(sizeof(float) * n);
        KT_CPU->swiglu(want, g, u, n);
        float *dg = kt_dev(g, n), *du = kt_dev(u, n), *dout = KT_GPU->alloc(sizeof(float) * n);
        KT_GPU->swiglu(dout, dg, du, n);
        float *got = kt_host(dout, n);
        kt_expect("swiglu", got, want, n, 1e-5);
        KT_GPU->swiglu(dg, dg, du, n); /* in place, as the engine calls it */
        float *got2 = kt_host(dg, n);
        kt_expect("swiglu in place", got2, want, n, 1e-5);
        KT_GPU->free(dg), KT_GPU->free(du), KT_GPU->free(dout);
        free(g), free(u), free(want), free(got), free(got2);
    }
}

int main(void)
{
    kt_init();
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_swiglu)};
    return cmocka_run_group_tests_name("kernels_swiglu", tests, NULL, NULL);
}
