/* rmsnorm_test.c: CUDA RMSNorm against the CPU twin (f32, ~1e-5). */
#include "ktest.h"

static void run(int T, int H, float eps)
{
    float *x = kt_randn((size_t)T * H, 21, 3.0f), *w = kt_randn((size_t)H, 22, 1.0f);
    float *want = malloc(sizeof(float) * (size_t)T * H);
    KT_CPU->rmsnorm(want, x, w, T, H, eps);
    float *dx = kt_dev(x, (size_t)T * H), *dw = KT_GPU->weight_upload(w, (size_t)H, 0);
    float *dout = KT_GPU->alloc(sizeof(float) * (size_t)T * H);
    KT_GPU->rmsnorm(dout, dx, dw, T, H, eps);
    float *got = kt_host(dout, (size_t)T * H);
    char what[64];
    snprintf(what, sizeof what, "rmsnorm T%d H%d", T, H);
    kt_expect(what, got, want, (size_t)T * H, 1e-5);
    KT_GPU->free(dx), KT_GPU->weight_free(dw), KT_GPU->free(dout);
    free(x), free(w), free(want), free(got);
}

static void test_rmsnorm(void **state)
{
    run(5, 64, 1e-5f);
    run(3, 37, 1e-6f);
    run(7, 4096, 1e-5f);
    run(2, 5000, 1e-5f);
}

int main(void)
{
    kt_init();
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_rmsnorm)};
    return cmocka_run_group_tests_name("kernels_rmsnorm", tests, NULL, NULL);
}
