/* bench_util.h: bounds measured in the same run (sgemm peak, memory copy and read bandwidth) and timing. */
#ifndef AL_BENCH_UTIL_H
#define AL_BENCH_UTIL_H

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

/* Best-of sgemm GFLOP/s for an M x K x N product (row-major, B transposed like nn.Linear). */
static inline double bench_sgemm_gflops(int M, int K, int N, double min_seconds)
{
    float *a = ali_aligned_alloc(sizeof(float) * (size_t)M * K);
    float *b = ali_aligned_alloc(sizeof(float) * (size_t)N * K);
    float *c = ali_aligned_alloc(sizeof(float) * (size_t)M * N);
    for (size_t i = 0; i < (size_t)M * K; i++)
        a[i] = (float)(i % 7) * 0.01f;
    for (size_t i = 0; i < (size_t)N * K; i++)
        b[i] = (float)(i % 5) * 0.01f;
    double best = 1e30, t_end = al_now() + min_seconds;
    int reps = 0;
    while (al_now() < t_end || reps < 3) {
        double t0 = al_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, a, K, b, K, 0.0f, c, N);
        double dt = al_now() - t0;
        if (dt < best)
            best = dt;
        reps++;
    }
    ali_aligned_free(a);
    ali_aligned_free(b);
    ali_aligned_free(c);
    return 2.0 * M * K * N / best * 1e-9;
}

/* Best-of memcpy bandwidth in GB/s (bytes copied per second) over a buffer far larger than caches. */
static inline double bench_copy_gbs(size_t bytes, double min_seconds)
{
    char *a = ali_aligned_alloc(bytes), *b = ali_aligned_alloc(bytes);
    memset(a, 1, bytes);
    memset(b, 2, bytes);
    double best = 1e30, t_end = al_now() + min_seconds;
    int reps = 0;
    while (al_now() < t_end || reps < 3) {
        double t0 = al_now();
        memcpy(b, a, bytes);
        double dt = al_now() - t0;
        if (dt < best)
            best = dt;
        reps++;
        a[reps % bytes] = (char)reps;
    }
    ali_aligned_free(a);
    ali_aligned_free(b);
    return (double)bytes / best * 1e-9;
}

/* One pass of a sum over n vectors (four independent accumulators, a prefetch ahead), compiled for
 * AVX-512, AVX2 and the baseline and picked at run time (the widest loads read fastest). */
typedef float bench_v16 __attribute__((vector_size(64)));
__attribute__((target_clones("avx512f", "avx2", "default"))) static float
bench_read_pass(const bench_v16 *a, size_t n)
{
    bench_v16 s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};
    for (size_t i = 0; i < n; i += 4) {
        __builtin_prefetch(&a[i + 64]);
        s0 += a[i];
        s1 += a[i + 1];
        s2 += a[i + 2];
        s3 += a[i + 3];
    }
    s0 += s1 + s2 + s3;
    return s0[0] + s0[15];
}

/* Best-of read bandwidth in GB/s: a sum over a buffer far larger than the caches (the sum is
 * returned through *sink so the loop is not optimised away). */
static inline double bench_read_gbs(size_t bytes, double min_seconds, float *sink)
{
    size_t n = bytes / sizeof(bench_v16) / 4 * 4;
    bench_v16 *a = ali_aligned_alloc((n + 64) * sizeof(bench_v16));
    memset(a, 0, (n + 64) * sizeof(bench_v16));
    for (size_t i = 0; i < n; i++)
        a[i][i % 16] = (float)(i % 3);
    double best = 1e30, t_end = al_now() + min_seconds;
    int reps = 0;
    float t = 0;
    while (al_now() < t_end || reps < 3) {
        double t0 = al_now();
        t += bench_read_pass(a, n);
        double dt = al_now() - t0;
        if (dt < best)
            best = dt;
        reps++;
    }
    *sink = t;
    ali_aligned_free(a);
    return (double)(n * sizeof(bench_v16)) / best * 1e-9;
}

#endif
