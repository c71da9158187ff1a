/* embedding_test.c: CUDA embedding (bf16 table, scale) against the CPU twin. */
#include "ktest.h"

static void run(int V, int H, int T, float scale)
{
    float *table = kt_randn((size_t)V * H, 11, 1.0f);
    float *tb = kt_bf16_copy(table, (size_t)V * H);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)T);
    for (int t = 0; t < T; t++)
        ids[t] = (int32_t)((t * 7919 + 3) % V);
    float *want = malloc(sizeof(float) * (size_t)T * H), *want_bf = malloc(sizeof(float) * (size_t)T * H);
    KT_CPU->embedding(want, table, ids, T, H, scale);
    KT_CPU->embedding(want_bf, tb, ids, T, H, scale);
    void *dt = KT_GPU->weight_upload(table, (size_t)V * H, 1);
    assert_non_null(dt);
    float *dout = KT_GPU->alloc(sizeof(float) * (size_t)T * H);
    KT_GPU->embedding(dout, dt, ids, T, H, scale);
    float *got = kt_host(dout, (size_t)T * H);
    char what[96];
    snprintf(what, sizeof what, "embedding V%d H%d T%d scale %g (bf16 table)", V, H, T, scale);
    kt_expect(what, got, want_bf, (size_t)T * H, 1e-6);
    snprintf(what, sizeof what, "embedding V%d H%d T%d scale %g (vs f32)", V, H, T, scale);
    kt_expect(what, got, want, (size_t)T * H, 1e-2);
    KT_GPU->weight_free(dt);
    KT_GPU->free(dout);
    free(table), free(tb), free(ids), free(want), free(want_bf), free(got);
}

static void test_embedding(void **state)
{
    run(1000, 300, 17, 1.0f);
    run(256, 64, 1, 12.0f);
    run(5000, 4096, 40, 0.5f);
}

int main(void)
{
    kt_init();
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_embedding)};
    return cmocka_run_group_tests_name("kernels_embedding", tests, NULL, NULL);
}
