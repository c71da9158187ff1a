/* scale_test.c: CUDA scale and add_scaled against the CPU twins, and the memory entries. */
#include "ktest.h"

static void test_scale_add(void **state)
{
    size_t n = 300001;
    float *y = kt_randn(n, 51, 1.0f), *x = kt_randn(n, 52, 1.0f);
    float *want = malloc(sizeof(float) * n);
    memcpy(want, y, sizeof(float) * n);
    float *dy = kt_dev(y, n), *dx = kt_dev(x, n);
    KT_CPU->scale(want, 0.125f, n);
    KT_GPU->scale(dy, 0.125f, n);
    KT_CPU->add_scaled(want, x, 1.0f, n);
    KT_GPU->add_scaled(dy, dx, 1.0f, n);
    KT_CPU->add_scaled(want, x, 0.22f, n);
    KT_GPU->add_scaled(dy, dx, 0.22f, n);
    float *got = kt_host(dy, n);
    kt_expect("scale + add_scaled", got, want, n, 1e-6);
    KT_GPU->free(dy), KT_GPU->free(dx);
    free(y), free(x), free(want), free(got);
}

static void test_memory(void **state)
{
    size_t n = 4097;
    float *z = KT_GPU->alloc(sizeof(float) * n);
    assert_non_null(z);
    float *h = kt_host(z, n);
    for (size_t i = 0; i < n; i++)
        assert_true(h[i] == 0.0f); /* alloc zeroes */
    float *src = kt_randn(n, 53, 1.0f);
    float *d1 = kt_dev(src, n);
    KT_GPU->copy(z + 1, d1, sizeof(float) * (n - 1));
    KT_GPU->sync();
    float *back = kt_host(z, n);
    assert_true(back[0] == 0.0f);
    al_assert_floats_identical(back + 1, src, 1, n - 1);
    /* vectors stay f32, matrices become bf16 */
    float *dv = KT_GPU->weight_upload(src, n, 0);
    float *v = kt_host(dv, n);
    al_assert_floats_identical(v, src, 1, n);
    assert_int_equal(KT_GPU->weight_bytes, 2);
    assert_int_equal(KT_GPU->host_memory, 0);
    assert_null(KT_GPU->alloc((size_t)1 << 50)); /* 1 PiB: a NULL, not an abort */
    KT_GPU->weight_free(dv);
    KT_GPU->free(z), KT_GPU->free(d1);
    free(h), free(src), free(back), free(v);
}

int main(void)
{
    kt_init();
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_scale_add), cmocka_unit_test(test_memory)};
    return cmocka_run_group_tests_name("kernels_scale", tests, NULL, NULL);
}
