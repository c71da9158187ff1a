/* matmul_test.c: CUDA matmul (bf16 weights: gemv for few rows, cuBLAS GEMM otherwise) against the
 * CPU twin, with and without accumulate. */
#include "ktest.h"

static void run(int T, int K, int N, int accumulate)
{
    float *x = kt_randn((size_t)T * K, 61, 1.0f), *w = kt_randn((size_t)N * K, 62, 0.05f);
    float *y0 = kt_randn((size_t)T * N, 63, 1.0f);
    float *wb = kt_bf16_copy(w, (size_t)N * K);
    float *want = malloc(sizeof(float) * (size_t)T * N), *want_bf = malloc(sizeof(float) * (size_t)T * N);
    memcpy(want, y0, sizeof(float) * (size_t)T * N);
    memcpy(want_bf, y0, sizeof(float) * (size_t)T * N);
    KT_CPU->matmul(want, x, w, T, K, N, accumulate);
    KT_CPU->matmul(want_bf, x, wb, T, K, N, accumulate);
    void *dw = KT_GPU->weight_upload(w, (size_t)N * K, 1);
    assert_non_null(dw);
    float *dx = kt_dev(x, (size_t)T * K), *dy = kt_dev(y0, (size_t)T * N);
    KT_GPU->matmul(dy, dx, dw, T, K, N, accumulate);
    float *got = kt_host(dy, (size_t)T * N);
    char what[96];
    /* the same bf16 weights: only activation rounding (GEMM path) and summation order differ */
    snprintf(what, sizeof what, "matmul T%d K%d N%d acc%d vs bf16-weight CPU", T, K, N, accumulate);
    kt_expect(what, got, want_bf, (size_t)T * N, 1e-2);
    snprintf(what, sizeof what, "matmul T%d K%d N%d acc%d vs f32 CPU", T, K, N, accumulate);
    kt_expect(what, got, want, (size_t)T * N, 2e-2);
    KT_GPU->weight_free(dw);
    KT_GPU->free(dx), KT_GPU->free(dy);
    free(x), free(w), free(y0), free(wb), free(want), free(want_bf), free(got);
}

static void test_matmul(void **state)
{
    int shapes[][3] = {{1, 4096, 1024}, {1, 13, 7},   {3, 64, 96},     {8, 100, 37}, {8, 4096, 512},
                       {9, 64, 96},     {64, 4096, 1024}, {300, 256, 333}, {1, 64, 256}, {2048, 512, 768}};
    for (size_t i = 0; i < AL_ARRAY_LEN(shapes); i++)
        for (int acc = 0; acc < 2; acc++)
            run(shapes[i][0], shapes[i][1], shapes[i][2], acc);
}

/* Stacked matrices (fused QKV on one-row steps): a sub-matrix pointer into one upload. */
static void test_submatrix(void **state)
{
    int K = 64, N1 = 96, N2 = 32;
    float *w = kt_randn((size_t)(N1 + N2) * K, 64, 0.1f), *x = kt_randn((size_t)K, 65, 1.0f);
    float *wb = kt_bf16_copy(w, (size_t)(N1 + N2) * K);
    char *dw = KT_GPU->weight_upload(w, (size_t)(N1 + N2) * K, 1);
    float *dx = kt_dev(x, (size_t)K), *dy = KT_GPU->alloc(sizeof(float) * (size_t)N2);
    KT_GPU->matmul(dy, dx, dw + (size_t)N1 * K * KT_GPU->weight_bytes, 1, K, N2, 0);
    float want[32];
    KT_CPU->matmul(want, x, wb + (size_t)N1 * K, 1, K, N2, 0);
    float *got = kt_host(dy, (size_t)N2);
    kt_expect("matmul on a stacked sub-matrix", got, want, (size_t)N2, 1e-5);
    KT_GPU->weight_free(dw);
    KT_GPU->free(dx), KT_GPU->free(dy);
    free(w), free(x), free(wb), free(got);
}

int main(void)
{
    kt_init();
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_matmul), cmocka_unit_test(test_submatrix)};
    return cmocka_run_group_tests_name("kernels_matmul", tests, NULL, NULL);
}
