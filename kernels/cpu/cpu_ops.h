/* cpu_ops.h: the CPU backend's internals: inline vector helpers, scratch, the pool, the ops. */
#ifndef AL_CPU_OPS_H
#define AL_CPU_OPS_H

#include "kernels/kernels.h"

#define AL_TILE_MIN(a, b) ((a) < (b) ? (a) : (b))

#include <float.h>
#include <stdint.h>
#include <string.h>

/* expf for the softmax and SiLU loops: Cody-Waite range reduction and a degree-6 polynomial
 * (relative error < 2e-7 on [-87, 88]); branch-free so the compiler vectorises the loops. */
static inline float ali_expf(float x)
{
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round to nearest */
    float r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union {
        int32_t i;
        float f;
    } scale = {.i = ((int32_t)n + 127) << 23};
    return p * scale.f;
}

/* 16 floats as one vector (AVX-512 with -march=native, pairs/quads of narrower registers otherwise). */
typedef float ali_v16 __attribute__((vector_size(64)));
typedef int32_t ali_v16i __attribute__((vector_size(64))); /* lane masks of comparisons */

static inline ali_v16 ali_ld16(const float *p)
{
    ali_v16 v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline float ali_hsum16(ali_v16 v)
{
    float s = 0;
    for (int i = 0; i < 16; i++)
        s += v[i];
    return s;
}

/* a · b over n floats: 16 lanes at a time, then the tail (a fixed order: deterministic). */
static inline float ali_dot(const float *a, const float *b, int n)
{
    int n16 = n & ~15;
    ali_v16 acc = {0};
    for (int i = 0; i < n16; i += 16)
        acc += ali_ld16(a + i) * ali_ld16(b + i);
    float s = ali_hsum16(acc);
    for (int i = n16; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* In place over row[0, n): the max-shifted exponentials, normalised; row[n, L) = 0 (a causal
 * row's masked keys). Max and sum 16 lanes at a time, then the tail: a fixed order (deterministic,
 * the same whatever the caller's tiling or thread count). */
static inline void ali_softmax_row(float *row, int32_t n, int32_t L)
{
    int32_t n16 = n & ~15;
    float m = -FLT_MAX, sum;
    if (n16 > 0) {
        ali_v16 mv = ali_ld16(row);
        for (int32_t j = 16; j < n16; j += 16) { /* a compare and a blend (a per-lane ?: went scalar) */
            ali_v16 x = ali_ld16(row + j);
            ali_v16i gt = x > mv;
            mv = (ali_v16)((gt & (ali_v16i)x) | (~gt & (ali_v16i)mv));
        }
        for (int i = 0; i < 16; i++)
            m = mv[i] > m ? mv[i] : m;
    }
    for (int32_t j = n16; j < n; j++)
        m = row[j] > m ? row[j] : m;
    for (int32_t j = 0; j < n; j++)
        row[j] = ali_expf(row[j] - m);
    ali_v16 sv = {0};
    for (int32_t j = 0; j < n16; j += 16)
        sv += ali_ld16(row + j);
    sum = ali_hsum16(sv);
    for (int32_t j = n16; j < n; j++)
        sum += row[j];
    float inv = 1.0f / sum;
    for (int32_t j = 0; j < n; j++)
        row[j] *= inv;
    for (int32_t j = n; j < L; j++)
        row[j] = 0.0f;
}

/* bf16 <-> f32. Widening is exact (bf16 is the top half of an f32); narrowing rounds to nearest
 * even and keeps NaN a NaN. */
static inline float ali_bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint16_t ali_f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40u); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

typedef uint16_t ali_u16x16 __attribute__((vector_size(32)));
typedef uint32_t ali_u32x16 __attribute__((vector_size(64)));

/* 16 bf16 weights at p as f32 lanes. */
static inline ali_v16 ali_ld16_bf16(const uint16_t *p)
{
    ali_u16x16 h;
    memcpy(&h, p, sizeof h);
    ali_u32x16 u = __builtin_convertvector(h, ali_u32x16) << 16;
    ali_v16 f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline void ali_bf16_widen(float *dst, const uint16_t *src, size_t n)
{
    size_t n16 = n & ~(size_t)15;
    for (size_t i = 0; i < n16; i += 16) {
        ali_v16 v = ali_ld16_bf16(src + i);
        memcpy(dst + i, &v, sizeof v);
    }
    for (size_t i = n16; i < n; i++)
        dst[i] = ali_bf16_to_f32(src[i]);
}

/* pool.c: per-thread grow-only scratch (slot 0-3: attention, 4: bf16 widening, 5: bf16 activation
 * layout), freed when the thread exits. Aborts when out of memory (a few MB: a stack overflow). */
#define ALI_SCRATCH_SLOTS 6
float *ali_cpu_scratch(int slot, size_t n);

/* pool.c: runs fn(ctx, 0 .. n_tasks-1) on al_cpu_threads() threads (the caller included) and
 * returns when all are done. Serial when one thread is configured or another job is running. */
void ali_par_run(int n_tasks, void (*fn)(void *ctx, int task), void *ctx);

/* The few-row streaming matmul (kernels/cpu/matmul_tiles.h, instantiated per weight format by
 * matmul.c and by the trainer's train_ops.c): one job, tasks of whole tiles of weight rows. */
typedef struct ali_small_job {
    float *y;
    const float *x;
    const float *xl; /* x in the lane order of the weight format (x itself for f32) */
    const void *w;   /* [N, K] in the instantiation's weight format */
    int T, K, N, accumulate, rows_per_task;
} ali_small_job;

/* Runs the few-row kernel `task` over N split into whole tiles, ~4 tasks per thread (a multiple of
 * 16 weight rows, at least 64). Every output element is one task's, computed the same way whatever
 * the split: results do not depend on the thread count. */
static inline int ali_small_rows_per_task(int N)
{
    int threads = al_cpu_threads(), tasks = threads > 1 ? 4 * threads : 1;
    int rows = (N + tasks - 1) / tasks;
    rows = (rows + 15) / 16 * 16;
    return rows < 64 ? 64 : rows;
}

static inline void ali_small_run(void (*task)(void *, int), float *y, const float *x, const float *xl,
                                 const void *w, int T, int K, int N, int accumulate)
{
    int rows = ali_small_rows_per_task(N);
    ali_small_job j = {.y = y, .x = x, .xl = xl, .w = w, .T = T, .K = K, .N = N, .accumulate = accumulate,
                       .rows_per_task = rows};
    ali_par_run((N + rows - 1) / rows, task, &j);
}

/* The ops themselves: in a variant's translation unit (ALI_CPU_ISA_SFX set by CMake) under that
 * variant's names; ops_cpu.c declares every compiled variant (kernels/cpu/cpu_isa.h). */
#ifdef ALI_CPU_ISA_SFX
#include "kernels/cpu/cpu_isa.h"
#endif

/* ops_cpu.c: the variant in use (its name: "avx512", "avx2", "sse4.2", "native"). */
const char *ali_cpu_isa_name(void);

#endif
