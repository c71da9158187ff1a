/* bench_util.h: bounds measured in the same run (sgemm peak, memory copy and read bandwidth), timing, and the
 * random model of the 85m preset shape the engine benchmarks run. */
#ifndef AL_BENCH_UTIL_H
#define AL_BENCH_UTIL_H

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/model/model.h"
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

/* Monotonic milliseconds. */
static inline double bench_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* qsort comparator for doubles (ascending). */
static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* A random f32 Llama of the given shape (weights uniform in +-0.02, seed 42), owning its memory; exits on
 * failure (a benchmark has nothing to fall back to). */
/* A model of config c over one aligned allocation of random weights (seed 42, uniform +-0.02). */
static inline al_model *bench_model_from_config(al_model_config *c)
{
    size_t bytes = al_weights_layout_bytes(c);
    void *base = ali_aligned_alloc(bytes);
    al_model *m = NULL;
    if (!base || al_model_view(c, base, &m) != AL_OK) {
        fprintf(stderr, "bench: cannot build the model: %s\n", al_errmsg());
        exit(1);
    }
    m->owns_base = 1;
    al_rng r;
    al_rng_seed(&r, 42);
    float *f = base;
    for (size_t i = 0; i < bytes / sizeof(float); i++)
        f[i] = (float)(al_rng_uniform(&r) - 0.5) * 0.04f;
    return m;
}

static inline al_model *bench_random_model(int hidden, int layers, int heads, int kv_heads, int inter, int vocab)
{
    al_model_config c = {.arch = AL_ARCH_LLAMA, .vocab_size = vocab, .hidden_size = hidden,
                         .intermediate_size = inter, .n_layers = layers, .n_heads = heads, .n_kv_heads = kv_heads,
                         .head_dim = hidden / heads, .max_position_embeddings = 4096, .rms_eps = 1e-5f,
                         .rope_theta = 10000.0f, .embedding_multiplier = 1.0f, .residual_multiplier = 1.0f,
                         .logits_scaling = 1.0f, .bos_token_id = 1, .n_eos = 0, .dtype = AL_DT_F32};
    c.attention_multiplier = 1.0f / sqrtf((float)c.head_dim);
    snprintf(c.name, sizeof c.name, "bench-85m");
    return bench_model_from_config(&c);
}

#endif
