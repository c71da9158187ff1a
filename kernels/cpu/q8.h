/* q8.h: the cpu-q8 weight format (int8 rows with a per-row scale) and its per-row quantizer. */
#ifndef AL_CPU_Q8_H
#define AL_CPU_Q8_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/*
 * A matrix [N, K] is N rows back to back, each ali_q8_row_bytes(K) bytes:
 *   q [K] int8 in [-127, 127] · zero padding to a multiple of 4 · scale f32 · sum int32 (of q)
 * with w[n, k] ~= scale * q[k]. Symmetric (no zero point), scale = max|w| / 127 of the row; the
 * sum lets an unsigned-times-signed dot (AVX-512 VNNI) take x + 128 and subtract 128 * sum. Rows of
 * the same K concatenate into a matrix of more rows (the fused q|k|v and gate|up of one-row steps).
 * The largest K the int32 dot products allow: K * 127 * 127 < 2^31.
 */
#define ALI_Q8_MAX_K 131072

static inline size_t ali_q8_row_bytes(int K) { return ((size_t)K + 3) / 4 * 4 + 8; }

static inline float ali_q8_row_scale(const int8_t *row, int K)
{
    float s;
    memcpy(&s, row + ((size_t)K + 3) / 4 * 4, sizeof s);
    return s;
}

static inline int32_t ali_q8_row_sum(const int8_t *row, int K)
{
    int32_t s;
    memcpy(&s, row + ((size_t)K + 3) / 4 * 4 + 4, sizeof s);
    return s;
}

/* Quantizes x [K] symmetrically: q [K] = rint(x * 127 / max|x|) (nearest-even), clamped to
 * [-127, 127]; returns the scale max|x| / 127 (0 for an all-zero row, q all 0) and the sum of q in
 * *sum (may be NULL). Single IEEE operations only: the same bits from every ISA variant. A NaN or
 * infinite value gives a NaN scale (the products are NaN, as they would be in f32). */
static inline float ali_q8_quantize(int8_t *q, int32_t *sum, const float *x, int K)
{
    float amax = 0.0f;
    int bad = 0;
    for (int k = 0; k < K; k++) {
        float a = fabsf(x[k]);
        bad |= !(a <= 3.0e38f);
        amax = a > amax ? a : amax;
    }
    int32_t s = 0;
    if (bad || amax == 0.0f) {
        for (int k = 0; k < K; k++)
            q[k] = 0;
        if (sum)
            *sum = 0;
        return bad ? NAN : 0.0f;
    }
    float inv = 127.0f / amax;
    for (int k = 0; k < K; k++) {
        float v = rintf(x[k] * inv); /* nearest-even (the default mode); one roundss per value */
        v = v > 127.0f ? 127.0f : (v < -127.0f ? -127.0f : v);
        q[k] = (int8_t)v;
        s += q[k];
    }
    if (sum)
        *sum = s;
    return amax / 127.0f;
}

/* q8.c: the format's row store and a plain C matmul (the reference every ISA variant must match
 * bitwise on few rows). */
void ali_q8_store_rows(void *dst, const float *host, size_t rows, int K);
/* y [T, N] (+)= dequantized-x [T, K] · w [N, K]^T exactly as the few-row kernels compute it:
 * x quantized per row (ali_q8_quantize), exact int32 dots, y = (float)dot * (sw * sx). */
void ali_q8_matmul_ref(float *y, const float *x, const void *w, int T, int K, int N, int accumulate);
/* Whether the CPU has AVX-512 VNNI (cpuid, cached). */
int ali_q8_cpu_vnni(void);
/* Whether the packed GEMM uses AMX: cpuid has AMX-TILE and AMX-INT8, Linux granted the tile state
 * (arch_prctl ARCH_REQ_XCOMP_PERM, asked once per process), and ali_q8_use_amx has not turned it
 * off. Same bits either way (exact int32 dots), only the speed differs. */
int ali_q8_cpu_amx(void);
/* Turns the AMX path off (0) or back on where available (1), for tests and benchmarks; returns
 * the previous setting. */
int ali_q8_use_amx(int on);
/* The embedding op of cpu-q8: out [T, H] = dequantized table rows [V, H] at ids, times scale. */
void ali_cpu_q8_embedding(float *out, const void *table, const int32_t *ids, int T, int H, float scale);

#endif
