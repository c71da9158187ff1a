/* rope_test.c: CUDA RoPE (host cos/sin table) against the CPU twin. */
#include "ktest.h"

static void run(int T, int nh, int hd, int llama3)
{
    float *inv = malloc(sizeof(float) * (size_t)hd / 2);
    al_rope_inv_freq(inv, hd, 500000.0f, llama3, 8.0f, 1.0f, 4.0f, 8192);
    int32_t *pos = malloc(sizeof(int32_t) * (size_t)T);
    for (int t = 0; t < T; t++)
        pos[t] = 3 + t * 977;
    float *cs = malloc(sizeof(float) * (size_t)T * hd);
    al_rope_table(cs, pos, T, hd, inv);
    size_t n = (size_t)T * nh * hd;
    float *x = kt_randn(n, 31, 1.0f), *want = malloc(sizeof(float) * n);
    memcpy(want, x, sizeof(float) * n);
    KT_CPU->rope(want, cs, T, nh, hd);
    float *dx = kt_dev(x, n);
    KT_GPU->rope(dx, cs, T, nh, hd);
    KT_GPU->rope(dx, cs, T, nh, hd); /* twice: the second call reuses the uploaded table */
    KT_CPU->rope(want, cs, T, nh, hd);
    float *got = kt_host(dx, n);
    char what[64];
    snprintf(what, sizeof what, "rope T%d heads %d hd %d", T, nh, hd);
    kt_expect(what, got, want, n, 1e-5);
    KT_GPU->free(dx);
    free(inv), free(pos), free(cs), free(x), free(want), free(got);
}

static void test_rope(void **state)
{
    run(7, 4, 16, 0);
    run(33, 8, 128, 1);
    run(1, 32, 128, 1);
}

int main(void)
{
    kt_init();
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_rope)};
    return cmocka_run_group_tests_name("kernels_rope", tests, NULL, NULL);
}
