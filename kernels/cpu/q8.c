/* q8.c: the cpu-q8 weight format's store, its embedding, the plain C reference matmul, and the
 * CPU feature probes of its kernels (AVX-512 VNNI, AMX). */
#include <assert.h>
#include <stdatomic.h>
#if defined(__x86_64__) && defined(__linux__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif
#include <math.h>
#include <pthread.h>
#include <stdlib.h>

#include "common/util.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/q8.h"

void ali_q8_store_rows(void *dst, const float *host, size_t rows, int K)
{
    assert(K > 0 && K <= ALI_Q8_MAX_K);
    size_t rb = ali_q8_row_bytes(K), kp = ((size_t)K + 3) / 4 * 4;
    for (size_t r = 0; r < rows; r++) {
        int8_t *row = (int8_t *)dst + r * rb;
        int32_t sum = 0;
        float s = ali_q8_quantize(row, &sum, host + r * (size_t)K, K);
        memset(row + K, 0, kp - (size_t)K);
        memcpy(row + kp, &s, sizeof s);
        memcpy(row + kp + 4, &sum, sizeof sum);
    }
}

void ali_q8_matmul_ref(float *y, const float *x, const void *w, int T, int K, int N, int accumulate)
{
    int8_t *xq = malloc((size_t)K);
    assert(xq);
    size_t rb = ali_q8_row_bytes(K);
    for (int t = 0; t < T; t++) {
        float sx = ali_q8_quantize(xq, NULL, x + (size_t)t * K, K);
        for (int n = 0; n < N; n++) {
            const int8_t *row = (const int8_t *)w + (size_t)n * rb;
            int32_t acc = 0;
            for (int k = 0; k < K; k++)
                acc += (int32_t)xq[k] * row[k];
            float s = ali_q8_row_scale(row, K) * sx, *o = y + (size_t)t * N + n;
            *o = accumulate ? fmaf((float)acc, s, *o) : (float)acc * s;
        }
    }
    free(xq);
}

int ali_q8_cpu_vnni(void)
{
    static int v = -1;
    if (v < 0) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("avx512vnni") ? 1 : 0;
    }
    return v;
}

#define ALI_ARCH_REQ_XCOMP_PERM 0x1023
#define ALI_XFEATURE_XTILEDATA 18

static int ali_q8_amx_probe(void)
{
#if !defined(__x86_64__) || !defined(__linux__)
    return 0;
#else
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return 0;
    if (!(d & (1u << 24)) || !(d & (1u << 25))) /* AMX-TILE, AMX-INT8 */
        return 0;
    /* the tile data is off until the process asks (Linux 5.16+); refused: no AMX */
    return syscall(SYS_arch_prctl, ALI_ARCH_REQ_XCOMP_PERM, ALI_XFEATURE_XTILEDATA) == 0;
#endif
}

static atomic_int ali_q8_amx_on = 1;

static int ali_q8_amx_ok;

static void ali_q8_amx_init(void) { ali_q8_amx_ok = ali_q8_amx_probe(); }

int ali_q8_cpu_amx(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, ali_q8_amx_init);
    return ali_q8_amx_ok && atomic_load(&ali_q8_amx_on);
}

int ali_q8_use_amx(int on) { return atomic_exchange(&ali_q8_amx_on, on ? 1 : 0); }

/* out [T, H] = dequantized table rows [V, H] at ids, times scale. */
void ali_cpu_q8_embedding(float *out, const void *table, const int32_t *ids, int T, int H, float scale)
{
    size_t rb = ali_q8_row_bytes(H);
    for (int t = 0; t < T; t++) {
        const int8_t *row = (const int8_t *)table + (size_t)ids[t] * rb;
        float s = ali_q8_row_scale(row, H) * scale;
        float *o = out + (size_t)t * H;
        for (int h = 0; h < H; h++)
            o[h] = (float)row[h] * s;
    }
}
