/* lora_test.c: CUDA masked LoRA (host row ranges, f32 A/B/bias) against the CPU twin; rows outside
 * the ranges stay untouched. */
#include "ktest.h"

static void run(int T, int in, int out, int r, int with_bias, const al_row_range *ranges, int n_ranges)
{
    float *x = kt_randn((size_t)T * in, 71, 1.0f), *y = kt_randn((size_t)T * out, 72, 1.0f);
    float *A = kt_randn((size_t)r * in, 73, 0.1f), *B = kt_randn((size_t)out * r, 74, 0.1f);
    float *bias = with_bias ? kt_randn((size_t)out, 75, 0.5f) : NULL;
    float *want = malloc(sizeof(float) * (size_t)T * out), *tmp = malloc(sizeof(float) * (size_t)T * r);
    memcpy(want, y, sizeof(float) * (size_t)T * out);
    KT_CPU->lora(want, x, ranges, n_ranges, A, B, bias, in, out, r, 2.0f, tmp);
    float *dx = kt_dev(x, (size_t)T * in), *dy = kt_dev(y, (size_t)T * out);
    float *dA = KT_GPU->weight_upload(A, (size_t)r * in, 0), *dB = KT_GPU->weight_upload(B, (size_t)out * r, 0);
    float *db = bias ? KT_GPU->weight_upload(bias, (size_t)out, 0) : NULL;
    float *dtmp = KT_GPU->alloc(sizeof(float) * (size_t)T * r);
    KT_GPU->lora(dy, dx, ranges, n_ranges, dA, dB, db, in, out, r, 2.0f, dtmp);
    float *got = kt_host(dy, (size_t)T * out);
    char what[96];
    snprintf(what, sizeof what, "lora T%d in%d out%d r%d bias%d ranges %d", T, in, out, r, with_bias, n_ranges);
    kt_expect(what, got, want, (size_t)T * out, 1e-5);
    /* untouched rows are bit-identical */
    for (int t = 0; t < T; t++) {
        int in_range = 0;
        for (int i = 0; i < n_ranges; i++)
            in_range |= t >= ranges[i].row0 && t < ranges[i].row0 + ranges[i].n;
        if (!in_range)
            al_assert_floats_identical(got + (size_t)t * out, y + (size_t)t * out, 1, out);
    }
    KT_GPU->free(dx), KT_GPU->free(dy), KT_GPU->free(dtmp);
    KT_GPU->weight_free(dA), KT_GPU->weight_free(dB);
    if (db)
        KT_GPU->weight_free(db);
    free(x), free(y), free(A), free(B), free(bias), free(want), free(tmp), free(got);
}

static void test_lora(void **state)
{
    al_row_range r3[] = {{2, 5}, {10, 1}, {15, 5}};
    run(20, 64, 96, 8, 0, r3, 3);
    run(20, 64, 96, 8, 1, r3, 3);
    al_row_range one[] = {{0, 1}};
    run(1, 4096, 1024, 32, 1, one, 1);
    al_row_range big[] = {{100, 900}, {1500, 548}};
    run(2048, 512, 512, 16, 0, big, 2);
    al_row_range none[] = {{3, 0}};
    run(8, 16, 16, 4, 1, none, 1);
}

int main(void)
{
    kt_init();
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_lora)};
    return cmocka_run_group_tests_name("kernels_lora", tests, NULL, NULL);
}
