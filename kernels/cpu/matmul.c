/* matmul.c: CPU matmul: a streaming kernel for few rows (decode, small batches, the invocation
 * tokens of an intrinsic), OpenBLAS sgemm for more; the masked LoRA shrink/expand. */
#include <cblas.h>

#include "cpu_ops.h"

/* Up to this many rows the streaming kernel wins: OpenBLAS packs the whole weight matrix for
 * every sgemm call, which for a few rows costs more than the product (measured on the 85m shapes,
 * 1 thread: 2.2-2.4x faster at 1-4 rows, 1.3x at 8, even at ~12). */
#define ALI_SMALL_T 8
#define ALI_NB 16 /* weight rows per tile (at most) */

typedef struct ali_small_job {
    float *y;
    const float *x, *w;
    int T, K, N, accumulate, rows_per_task;
} ali_small_job;

/* One tile: activation rows xr[0, TB) against weight rows wr[0, NB), written to the y rows from
 * yr (tb, nb: how many of them are real). One function per shape, each with an accumulator array
 * of exactly TB x NB vectors, so the compiler keeps them all in registers. */
#define ALI_TILE_FN(TB, NB)                                                                             \
    static void ali_tile_##TB##x##NB(const ali_small_job *j, const float *const *xr, const float *const *wr, \
                                     float *yr, int tb, int nb)                                          \
    {                                                                                                   \
        const int K = j->K, K16 = K & ~15;                                                              \
        ali_v16 acc[TB][NB];                                                                            \
        for (int i = 0; i < TB; i++)                                                                    \
            for (int c = 0; c < NB; c++)                                                                \
                acc[i][c] = (ali_v16){0};                                                               \
        for (int k = 0; k < K16; k += 16) {                                                             \
            ali_v16 wv[NB];                                                                             \
            for (int c = 0; c < NB; c++)                                                                \
                wv[c] = ali_ld16(wr[c] + k);                                                            \
            for (int i = 0; i < TB; i++) {                                                              \
                ali_v16 xv = ali_ld16(xr[i] + k);                                                       \
                for (int c = 0; c < NB; c++)                                                            \
                    acc[i][c] += xv * wv[c];                                                            \
            }                                                                                           \
        }                                                                                               \
        for (int i = 0; i < tb; i++)                                                                    \
            for (int c = 0; c < nb; c++) {                                                              \
                float s = ali_hsum16(acc[i][c]);                                                        \
                for (int k = K16; k < K; k++)                                                           \
                    s += xr[i][k] * wr[c][k];                                                           \
                float *o = yr + (size_t)i * j->N + c;                                                   \
                *o = j->accumulate ? *o + s : s;                                                        \
            }                                                                                           \
    }
ALI_TILE_FN(1, 16)
ALI_TILE_FN(1, 8)
ALI_TILE_FN(2, 8)

/* y[t, n] (+)= x[t, :] · w[n, :] for the weight rows [n0, n1): each block of ALI_NB weight rows
 * is read from memory once and used for every activation row (they stay in L1). */
static void ali_small_rows(const ali_small_job *j, int n0, int n1)
{
    const int K = j->K, T = j->T;
    /* weight rows per tile: 16 for one activation row, else 8 (16 accumulators of the 32 zmm;
     * enough weight streams in flight to keep memory busy); activation rows 2 at a time while
     * the weight rows stay in cache */
    const int NBK = T == 1 ? 16 : 8;
    for (int n = n0; n < n1; n += NBK) {
        int nb = n1 - n < NBK ? n1 - n : NBK;
        const float *wr[ALI_NB];
        for (int c = 0; c < ALI_NB; c++)
            wr[c] = j->w + (size_t)(n + (c < nb ? c : 0)) * K;
        for (int t0 = 0; t0 < T; t0 += 2) {
            int tb = T - t0 < 2 ? T - t0 : 2;
            const float *xr[2] = {j->x + (size_t)t0 * K, j->x + (size_t)(t0 + tb - 1) * K};
            float *yr = j->y + (size_t)t0 * j->N + n;
            if (tb == 2)
                ali_tile_2x8(j, xr, wr, yr, tb, nb);
            else if (NBK == 16)
                ali_tile_1x16(j, xr, wr, yr, tb, nb);
            else
                ali_tile_1x8(j, xr, wr, yr, tb, nb);
        }
    }
}

static void ali_small_task(void *ctx, int task)
{
    const ali_small_job *j = ctx;
    int n0 = task * j->rows_per_task, n1 = n0 + j->rows_per_task;
    ali_small_rows(j, n0, n1 < j->N ? n1 : j->N);
}

void ali_cpu_matmul(float *y, const float *x, const void *w_, int T, int K, int N, int accumulate)
{
    const float *w = w_;
    if (T <= ALI_SMALL_T) {
        /* tasks of whole tiles, ~4 per thread so uneven progress evens out */
        int threads = al_cpu_threads(), tasks = threads > 1 ? 4 * threads : 1;
        int rows = (N + tasks - 1) / tasks;
        rows = (rows + 15) / 16 * 16;
        if (rows < 64)
            rows = 64;
        ali_small_job j = {.y = y, .x = x, .w = w, .T = T, .K = K, .N = N, .accumulate = accumulate,
                           .rows_per_task = rows};
        ali_par_run((N + rows - 1) / rows, ali_small_task, &j);
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, N, K, 1.0f, x, K, w, K, accumulate ? 1.0f : 0.0f, y, N);
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
