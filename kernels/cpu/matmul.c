/* matmul.c: CPU matmul: a streaming kernel for few rows (decode, small batches, the invocation
 * tokens of an intrinsic), OpenBLAS sgemm for more; the masked LoRA shrink/expand. */
#include <cblas.h>

#include "kernels/cpu/cpu_ops.h"

/* Up to this many rows the streaming kernel wins: OpenBLAS packs the whole weight matrix for
 * every sgemm call, which for a few rows costs more than the product (measured on the 85m shapes,
 * 1 thread: 2.2-2.4x faster at 1-4 rows, 1.3x at 8, even at ~12). */
#define ALI_SMALL_T 8
#define ALI_NB 16 /* weight rows per tile (at most) */

/* f32 weights */
#define ALI_WT float
#define ALI_NV 1
#define ALI_WLOAD(v, p) ((v)[0] = ali_ld16(p))
#define ALI_WSCALAR(p) (*(p))
#define ALI_SFX _f32
#include "kernels/cpu/matmul_tiles.h"
#undef ALI_WT
#undef ALI_NV
#undef ALI_WLOAD
#undef ALI_WSCALAR
#undef ALI_SFX

/* bf16 weights, 32 per step from one 64-byte load: each 32-bit lane holds an even and an odd
 * weight; `lane << 16` is the even one as f32, `lane & 0xffff0000` the odd one (exact, two cheap
 * instructions); the activations are laid out evens-then-odds per 32 to match (ali_x_bf16). */
static inline void ali_wload_bf16(ali_v16 *v, const uint16_t *p)
{
    ali_u32x16 u;
    memcpy(&u, p, sizeof u);
    ali_u32x16 ev = u << 16, od = u & 0xffff0000u;
    memcpy(&v[0], &ev, sizeof ev);
    memcpy(&v[1], &od, sizeof od);
}

#define ALI_WT uint16_t
#define ALI_NV 2
#define ALI_WLOAD(v, p) ali_wload_bf16((v), (p))
#define ALI_WSCALAR(p) ali_bf16_to_f32(*(p))
#define ALI_SFX _bf16
#include "kernels/cpu/matmul_tiles.h"
#undef ALI_WT
#undef ALI_NV
#undef ALI_WLOAD
#undef ALI_WSCALAR
#undef ALI_SFX

/* x [T, K] laid out for the bf16 tiles: per 32 columns the 16 even ones then the 16 odd ones; the
 * tail (K mod 32) as is. */
static const float *ali_x_bf16(const float *x, int T, int K)
{
    float *xl = ali_cpu_scratch(5, (size_t)T * (size_t)K);
    int K32 = K & ~31;
    for (int t = 0; t < T; t++) {
        const float *s = x + (size_t)t * K;
        float *d = xl + (size_t)t * K;
        for (int k = 0; k < K32; k += 32)
            for (int i = 0; i < 16; i++) {
                d[k + i] = s[k + 2 * i];
                d[k + 16 + i] = s[k + 2 * i + 1];
            }
        for (int k = K32; k < K; k++)
            d[k] = s[k];
    }
    return xl;
}

/* Many rows: a fixed partition of the weight rows into tiles, run by the pool. The partition depends
 * on N alone, so every output element comes from the same computation whatever the thread count:
 * results are bitwise the same at any thread count by construction. ~12 tiles (a multiple of 16
 * rows, at least 64) keep 1-4 threads busy while a tile stays big. On AVX-512 and AVX2 a tile is
 * our own GEMM (matmul_gemm.h: x packed once per call); elsewhere one OpenBLAS sgemm per tile
 * (single-threaded, see ops_cpu.c), which re-packs x for every tile. */
static int ali_big_tile(int N)
{
    int w = (N + 11) / 12;
    w = (w + 15) / 16 * 16;
    return w < 64 ? 64 : w;
}

#include "kernels/cpu/matmul_gemm.h"

/* sgemm per tile: every row count on sse4.2, 9 .. ALI_G_MIN_T - 1 rows on the GEMM variants */
typedef struct ali_big_job {
    float *y;
    const float *x;
    const void *w; /* [N, K] f32 or bf16 */
    int T, K, N, tile;
    float beta;
} ali_big_job;

static void ali_big_task_f32(void *ctx, int task)
{
    const ali_big_job *j = ctx;
    int n0 = task * j->tile, nb = AL_TILE_MIN(j->tile, j->N - n0);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->T, nb, j->K, 1.0f, j->x, j->K,
                (const float *)j->w + (size_t)n0 * j->K, j->K, j->beta, j->y + n0, j->N);
}

/* bf16 weights: the task widens its tile into its thread's scratch (O(nb K)), then sgemm (O(T nb K)). */
static void ali_big_task_bf16(void *ctx, int task)
{
    const ali_big_job *j = ctx;
    int n0 = task * j->tile, nb = AL_TILE_MIN(j->tile, j->N - n0);
    float *buf = ali_cpu_scratch(4, (size_t)nb * (size_t)j->K);
    ali_bf16_widen(buf, (const uint16_t *)j->w + (size_t)n0 * j->K, (size_t)nb * j->K);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->T, nb, j->K, 1.0f, j->x, j->K, buf, j->K, j->beta,
                j->y + n0, j->N);
}

static void ali_big_run(void (*task)(void *, int), float *y, const float *x, const void *w, int T, int K, int N,
                        int accumulate)
{
    ali_big_job j = {.y = y, .x = x, .w = w, .T = T, .K = K, .N = N, .tile = ali_big_tile(N),
                     .beta = accumulate ? 1.0f : 0.0f};
    ali_par_run((N + j.tile - 1) / j.tile, task, &j);
}

void ali_cpu_matmul(float *y, const float *x, const void *w, int T, int K, int N, int accumulate)
{
    if (T <= ALI_SMALL_T)
        ali_small_run(ali_small_task_f32, y, x, x, w, T, K, N, accumulate);
#ifdef ALI_G_MR
    else if (T >= ALI_G_MIN_T)
        ali_gemm(y, x, w, T, K, N, accumulate, 0);
#endif
    else
        ali_big_run(ali_big_task_f32, y, x, w, T, K, N, accumulate);
}

void ali_cpu_matmul_bf16(float *y, const float *x, const void *w, int T, int K, int N, int accumulate)
{
    if (T <= ALI_SMALL_T)
        ali_small_run(ali_small_task_bf16, y, x, ali_x_bf16(x, T, K), w, T, K, N, accumulate);
#ifdef ALI_G_MR
    else if (T >= ALI_G_MIN_T)
        ali_gemm(y, x, w, T, K, N, accumulate, 1);
#endif
    else
        ali_big_run(ali_big_task_bf16, y, x, w, T, K, N, accumulate);
}

int ali_cpu_gemm_n(const float *x, int T, int K, int n, float *const *y, const float *const *w, const int *N,
                   int accumulate)
{
#ifdef ALI_G_MR
    ali_gemm_n(x, T, K, n, y, (const void *const *)w, N, accumulate, 0);
    return 1;
#else
    (void)x, (void)T, (void)K, (void)n, (void)y, (void)w, (void)N, (void)accumulate;
    return 0;
#endif
}

int ali_cpu_gemm_dx_n(float *dx, int T, int K, int n, const float *const *dy, const float *const *w, const int *N,
                      const float *alpha, int accumulate)
{
#ifdef ALI_G_MR
    ali_gemm_dx_n(dx, T, K, n, dy, w, N, alpha, accumulate);
    return 1;
#else
    (void)dx, (void)T, (void)K, (void)n, (void)dy, (void)w, (void)N, (void)alpha, (void)accumulate;
    return 0;
#endif
}

void ali_cpu_lora(float *y, const float *x, const al_row_range *ranges, int n_ranges, const float *A,
                  const float *B, const float *bias, int in, int out, int r, float scale, float *tmp)
{
    for (int i = 0; i < n_ranges; i++) {
        int n = ranges[i].n;
        if (n <= 0)
            continue;
        const float *xr = x + (size_t)ranges[i].row0 * in;
        float *yr = y + (size_t)ranges[i].row0 * out;
        /* shrink: tmp [n, r] = xr [n, in] · A[r, in]^T */
        if (n == 1) {
            cblas_sgemv(CblasRowMajor, CblasNoTrans, r, in, 1.0f, A, in, xr, 1, 0.0f, tmp, 1);
            /* expand: yr [out] += scale * B[out, r] · tmp */
            cblas_sgemv(CblasRowMajor, CblasNoTrans, out, r, scale, B, r, tmp, 1, 1.0f, yr, 1);
        } else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, r, in, 1.0f, xr, in, A, in, 0.0f, tmp, r);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, r, scale, tmp, r, B, r, 1.0f, yr, out);
        }
        if (bias)
            for (int t = 0; t < n; t++)
                for (int o = 0; o < out; o++)
                    yr[(size_t)t * out + o] += scale * bias[o];
    }
}
