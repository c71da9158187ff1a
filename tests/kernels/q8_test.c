/* q8_test.c: the cpu-q8 ops (int8 matrix weights) against a double-precision f32 reference with a
 * worst-case quantization bound, the few-row kernel bitwise against the plain C reference, thread
 * invariance, the embedding, and the format's bookkeeping. */
#include "al_test.h"

#include <math.h>

#include "common/util.h"
#include "kernels/cpu/q8.h"
#include "kernels/kernels.h"

static float *randn(size_t n, uint64_t seed, float scale)
{
    float *x = malloc(sizeof(float) * (n ? n : 1));
    al_rng r;
    al_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)al_rng_normal(&r) * scale;
    return x;
}

static void *store(const al_ops *o, const float *w, int N, int K)
{
    void *d = ali_aligned_alloc(al_ops_matrix_bytes(o, (size_t)N, K) + 64);
    assert_non_null(d);
    o->weight_store_rows(d, w, (size_t)N, K);
    return d;
}

/* The tolerance, from the format alone. With symmetric round-to-nearest, |w - s_w q| <= s_w / 2 =
 * max|w_n| / 254 per weight, and likewise for an activation row quantized per row (every path: the
 * few-row dots and the packed GEMM alike). So |y - y_q| <= sum|x| max|w_n| / 254 + sum|w_n| max|x|
 * / 254 + K max|x| max|w_n| / 254^2, plus f32 rounding (1e-5 of sum|x w|). A worst case, not an
 * estimate: every element must be inside it. And every path takes exact int32 dots, so the result
 * is also bitwise the plain C reference's, whatever the row count, ISA or kernel. */
static void check_case(const al_ops *o, int T, int K, int N, int accumulate, uint64_t seed)
{
    float *x = randn((size_t)T * K, seed, 1.0f), *w = randn((size_t)N * K, seed + 1, 0.05f);
    float *y = randn((size_t)T * N, seed + 2, 1.0f), *y0 = malloc(sizeof(float) * (size_t)T * N);
    memcpy(y0, y, sizeof(float) * (size_t)T * N);
    if (K > 3)
        x[3] = 9.0f; /* an outlier channel */
    void *wq = store(o, w, N, K);
    o->matmul(y, x, wq, T, K, N, accumulate);
    for (int t = 0; t < T; t++) {
        const float *xr = x + (size_t)t * K;
        double xabs = 0, xmax = 0;
        for (int k = 0; k < K; k++) {
            xabs += fabs(xr[k]);
            xmax = fmax(xmax, fabs(xr[k]));
        }
        for (int n = 0; n < N; n++) {
            const float *wr = w + (size_t)n * K;
            double ref = accumulate ? y0[(size_t)t * N + n] : 0, wabs = 0, wmax = 0, xw = 0;
            for (int k = 0; k < K; k++) {
                ref += (double)xr[k] * wr[k];
                wabs += fabs(wr[k]);
                wmax = fmax(wmax, fabs(wr[k]));
                xw += fabs((double)xr[k] * wr[k]);
            }
            double tol = xabs * wmax / 254 + wabs * xmax / 254 + K * xmax * wmax / (254.0 * 254.0) + 1e-5 * xw + 1e-6;
            double got = y[(size_t)t * N + n];
            if (!(fabs(got - ref) <= tol)) {
                fprintf(stderr, "T=%d K=%d N=%d acc=%d [%d,%d]: got %.7g want %.7g (tol %.3g)\n", T, K, N, accumulate,
                        t, n, got, ref, tol);
                fail();
            }
        }
    }
    { /* every ISA variant and path takes exact int32 dots: the same bits as the C reference */
        float *yr = malloc(sizeof(float) * (size_t)T * N);
        memcpy(yr, y0, sizeof(float) * (size_t)T * N);
        ali_q8_matmul_ref(yr, x, wq, T, K, N, accumulate);
        assert_memory_equal(y, yr, sizeof(float) * (size_t)T * N);
        free(yr);
    }
    ali_aligned_free(wq);
    free(x);
    free(w);
    free(y);
    free(y0);
}

static void test_matmul_shapes(void **state)
{
    const al_ops *o = al_ops_cpu_q8();
    printf("cpu isa %s\n", al_cpu_isa());
    static const int Ks[] = {1, 5, 16, 31, 32, 33, 63, 64, 65, 100, 172, 768};
    static const int Ns[] = {1, 3, 4, 5, 17, 70, 130};
    uint64_t seed = 1;
    for (int T = 1; T <= 12; T++)
        for (size_t a = 0; a < AL_ARRAY_LEN(Ks); a++)
            for (size_t b = 0; b < AL_ARRAY_LEN(Ns); b++)
                check_case(o, T, Ks[a], Ns[b], (int)(seed % 3 == 0), seed), seed += 7;
    check_case(o, 1, 2048, 768, 0, 99); /* the 85m down projection */
    check_case(o, 3, 768, 2048, 1, 98);
    check_case(o, 40, 768, 600, 0, 97);
    /* the packed GEMM (more than 8 rows): panel edges (64 weight rows), row blocks (6), K tails */
    check_case(o, 9, 768, 64, 1, 96);
    check_case(o, 13, 33, 129, 1, 95);
    check_case(o, 17, 2048, 200, 0, 94);
    check_case(o, 64, 100, 65, 1, 93);
    check_case(o, 100, 7, 3, 0, 92);
    check_case(o, 203, 768, 130, 1, 91);
}

/* Results never depend on the thread count (fixed partitions over weight rows). */
static void test_threads_bitwise(void **state)
{
    const al_ops *o = al_ops_cpu_q8();
    int shapes[][3] = {{1, 768, 2304}, {2, 768, 768}, {7, 2048, 768}, {64, 768, 1000}};
    for (size_t s = 0; s < AL_ARRAY_LEN(shapes); s++) {
        int T = shapes[s][0], K = shapes[s][1], N = shapes[s][2];
        float *x = randn((size_t)T * K, 5 + s, 1.0f), *w = randn((size_t)N * K, 6 + s, 0.05f);
        void *wq = store(o, w, N, K);
        float *y1 = malloc(sizeof(float) * (size_t)T * N), *y2 = malloc(sizeof(float) * (size_t)T * N);
        al_cpu_set_threads(1);
        o->matmul(y1, x, wq, T, K, N, 0);
        al_cpu_set_threads(3);
        o->matmul(y2, x, wq, T, K, N, 0);
        al_cpu_set_threads(1);
        assert_memory_equal(y1, y2, sizeof(float) * (size_t)T * N);
        free(x), free(w), free(y1), free(y2);
        ali_aligned_free(wq);
    }
}

/* AMX (tdpbusd) and AVX-512 VNNI (vpdpbusd) take the same exact int32 dots: the packed GEMM gives
 * the same bits with AMX on and off, and both the C reference's (skipped without AMX). */
static void test_amx_bitwise(void **state)
{
    if (!ali_q8_cpu_amx()) {
        printf("no AMX (cpuid, or the kernel refused the tile state): skipped\n");
        skip();
    }
    const al_ops *o = al_ops_cpu_q8();
    int shapes[][4] = {{9, 768, 64, 0}, {33, 33, 129, 1}, {47, 2048, 200, 0}, {100, 100, 65, 1}, {512, 768, 130, 0}};
    for (size_t s = 0; s < AL_ARRAY_LEN(shapes); s++) {
        int T = shapes[s][0], K = shapes[s][1], N = shapes[s][2], acc = shapes[s][3];
        float *x = randn((size_t)T * K, 40 + s, 1.0f), *w = randn((size_t)N * K, 50 + s, 0.05f);
        float *y0 = randn((size_t)T * N, 60 + s, 1.0f);
        void *wq = store(o, w, N, K);
        float *ya = malloc(sizeof(float) * (size_t)T * N), *yv = malloc(sizeof(float) * (size_t)T * N),
              *yr = malloc(sizeof(float) * (size_t)T * N);
        memcpy(ya, y0, sizeof(float) * (size_t)T * N);
        memcpy(yv, y0, sizeof(float) * (size_t)T * N);
        memcpy(yr, y0, sizeof(float) * (size_t)T * N);
        o->matmul(ya, x, wq, T, K, N, acc);
        assert_int_equal(ali_q8_use_amx(0), 1);
        assert_int_equal(ali_q8_cpu_amx(), 0);
        o->matmul(yv, x, wq, T, K, N, acc);
        ali_q8_use_amx(1);
        ali_q8_matmul_ref(yr, x, wq, T, K, N, acc);
        assert_memory_equal(ya, yv, sizeof(float) * (size_t)T * N);
        assert_memory_equal(ya, yr, sizeof(float) * (size_t)T * N);
        free(x), free(w), free(y0), free(ya), free(yv), free(yr);
        ali_aligned_free(wq);
    }
}

static void test_embedding_and_format(void **state)
{
    const al_ops *o = al_ops_cpu_q8();
    assert_string_equal(o->name, "cpu-q8");
    assert_int_equal(al_ops_canonical_weights(o), 0);
    assert_int_equal(al_ops_matrix_bytes(o, 3, 5), 3 * (8 + 8));
    assert_int_equal(al_ops_matrix_bytes(al_ops_cpu(), 3, 5), 60);
    assert_int_equal(al_ops_matrix_bytes(al_ops_cpu_bf16(), 3, 5), 30);
    assert_null(o->weight_upload((const float[]){1, 2}, 2, 1)); /* a matrix needs its row length */
    int V = 9, H = 37;
    float *tab = randn((size_t)V * H, 11, 0.3f);
    tab[2 * H + 5] = 0; /* an all-zero row quantizes to scale 0 */
    for (int h = 0; h < H; h++)
        tab[4 * H + h] = 0;
    void *tq = store(o, tab, V, H);
    const int32_t ids[] = {2, 4, 8, 0};
    float out[4 * 37];
    o->embedding(out, tq, ids, 4, H, 2.0f);
    for (int t = 0; t < 4; t++) {
        double m = 0;
        for (int h = 0; h < H; h++)
            m = fmax(m, fabs(tab[ids[t] * H + h]));
        for (int h = 0; h < H; h++) /* within half a step of the row's scale, times 2 */
            assert_true(fabs(out[t * H + h] - 2.0 * tab[ids[t] * H + h]) <= 2.0 * m / 254 * 1.0001 + 1e-7);
    }
    for (int h = 0; h < H; h++)
        assert_true(out[H + h] == 0.0f);
    /* the stored row: the max magnitude maps to +-127, the scale and the sum follow the q values */
    const int8_t *row = (const int8_t *)tq;
    int32_t sum = 0, mx = 0;
    for (int h = 0; h < H; h++)
        sum += row[h], mx = abs(row[h]) > mx ? abs(row[h]) : mx;
    assert_int_equal(mx, 127);
    assert_int_equal(ali_q8_row_sum(row, H), sum);
    ali_aligned_free(tq);
    free(tab);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_matmul_shapes), cmocka_unit_test(test_threads_bitwise),
                                       cmocka_unit_test(test_amx_bitwise),
                                       cmocka_unit_test(test_embedding_and_format)};
    return cmocka_run_group_tests_name("kernels_q8", tests, NULL, NULL);
}
