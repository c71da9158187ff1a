/* matmul_gemm.h: the many-row f32 GEMM of matmul.c on AVX-512 / AVX2 (included once per ISA variant):
 * x packed once per call, weight tiles packed (or widened from bf16) per task, MR x NR register
 * blocks; each output is one FMA chain over k from zero, whatever the tiling or thread count. */

/*
 * y [T, N] (+)= x [T, K] · W[N, K]^T for T >= ALI_G_MIN_T (the trainer: T > 32).
 *
 * Why not sgemm per tile (the previous path, still used on the x86-64-v2 variant): to keep results
 * independent of the thread count, the weight rows are cut into a fixed partition of ~12 tiles and
 * each tile was one sgemm call; every call re-packed all of x, which on the 85m shapes (64-row
 * tiles) cost as much as half the kernel time (perf: sgemm_oncopy + incopy 12% of a prefill
 * against 33% in the kernel). Here x is packed once, into row panels
 *     xp [ceil(T/MR)][K][MR]   (rows past T are zero)
 * shared by all tasks; a task packs its weight tile into column panels
 *     wp [ceil(nb/NR)][K][NR]  (columns past the tile are zero; bf16 is widened here)
 * in its thread's scratch (f32: gathers, one per vector of columns per k), and runs the kernel on every (row panel, column panel) pair: MR rows x
 * NR columns of accumulators in registers, one broadcast of x and NR/VW loads of w per k.
 * Determinism: every y element is acc = 0; acc = fma(x[t,k], w[n,k], acc) for k = 0 .. K-1, then
 * stored (or added to y): the same bits for any tiling, thread count or row-panel position.
 */
#if defined(__AVX512F__)
#include <immintrin.h>
#define ALI_G_MR 12 /* 24 accumulators + 2 weight vectors of the 32 zmm */
#define ALI_G_VW 16
typedef __m512 ali_gv;
#define ALI_G_LOADU _mm512_loadu_ps
#define ALI_G_SET1 _mm512_set1_ps
#define ALI_G_FMA _mm512_fmadd_ps
#define ALI_G_ZERO _mm512_setzero_ps
#define ALI_G_STOREU _mm512_storeu_ps
#define ALI_G_ADD _mm512_add_ps
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define ALI_G_MR 6 /* 12 accumulators + 2 weight vectors + 1 broadcast of the 16 ymm */
#define ALI_G_VW 8
typedef __m256 ali_gv;
#define ALI_G_LOADU _mm256_loadu_ps
#define ALI_G_SET1 _mm256_set1_ps
#define ALI_G_FMA _mm256_fmadd_ps
#define ALI_G_ZERO _mm256_setzero_ps
#define ALI_G_STOREU _mm256_storeu_ps
#define ALI_G_ADD _mm256_add_ps
#endif

#ifdef ALI_G_MR
#define ALI_G_NR (2 * ALI_G_VW)
/* Below this many rows the engine's matmul keeps sgemm per tile: packing each weight tile (N K
 * gathers) is not paid back by T rows (paired on the 85m shapes: 10-20% slower at 12-16 rows, even
 * at 32-64, ahead from ~128; the trainer calls the GEMM above its 32 few rows). */
#define ALI_G_MIN_T 24

/* One MR x NR block: xp [K][MR], wp [K][NR] -> y rows 0..mr-1, columns 0..nc-1 (stride ldy). */
static inline __attribute__((always_inline)) void ali_g_kernel(const float *xp, const float *wp, int K, float *y,
                                                               size_t ldy, int mr, int nc, int accumulate)
{
    ali_gv c0[ALI_G_MR], c1[ALI_G_MR];
#pragma GCC unroll 16
    for (int i = 0; i < ALI_G_MR; i++)
        c0[i] = c1[i] = ALI_G_ZERO();
    for (int k = 0; k < K; k++) {
        ali_gv b0 = ALI_G_LOADU(wp + (size_t)k * ALI_G_NR), b1 = ALI_G_LOADU(wp + (size_t)k * ALI_G_NR + ALI_G_VW);
        const float *a = xp + (size_t)k * ALI_G_MR;
#pragma GCC unroll 16
        for (int i = 0; i < ALI_G_MR; i++) {
            ali_gv av = ALI_G_SET1(a[i]);
            c0[i] = ALI_G_FMA(av, b0, c0[i]);
            c1[i] = ALI_G_FMA(av, b1, c1[i]);
        }
    }
    if (mr == ALI_G_MR && nc == ALI_G_NR) {
#pragma GCC unroll 16
        for (int i = 0; i < ALI_G_MR; i++) {
            float *yr = y + (size_t)i * ldy;
            if (accumulate) {
                c0[i] = ALI_G_ADD(ALI_G_LOADU(yr), c0[i]);
                c1[i] = ALI_G_ADD(ALI_G_LOADU(yr + ALI_G_VW), c1[i]);
            }
            ALI_G_STOREU(yr, c0[i]);
            ALI_G_STOREU(yr + ALI_G_VW, c1[i]);
        }
        return;
    }
    float buf[ALI_G_MR][ALI_G_NR]; /* an edge block: through memory, only its valid part stored */
    for (int i = 0; i < ALI_G_MR; i++) {
        ALI_G_STOREU(buf[i], c0[i]);
        ALI_G_STOREU(buf[i] + ALI_G_VW, c1[i]);
    }
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nc; j++)
            y[(size_t)i * ldy + j] = accumulate ? y[(size_t)i * ldy + j] + buf[i][j] : buf[i][j];
}

#define ALI_G_MAXP 8 /* products sharing one x per call */

typedef struct ali_g_job {
    const float *x;  /* [T, K] */
    float *xp;       /* [n_rp][K][MR] */
    int T, K, n_rp, bf16, accumulate, n;
    float *y[ALI_G_MAXP];      /* [T, N[p]] */
    const void *w[ALI_G_MAXP]; /* [N[p], K] f32 or bf16 */
    int N[ALI_G_MAXP], tile[ALI_G_MAXP];
    int t0[ALI_G_MAXP + 1];    /* first task of each product */
} ali_g_job;

/* d [len][MR] = a * the mr rows of s (row stride ld) interleaved, rows past mr zero. k outer: the
 * writes are sequential, the reads mr sequential streams. a = 1 is exact (x); the transposed
 * products pack alpha dy. */
static void ali_g_pack_rows(float *d, const float *s, size_t ld, int len, int mr, float a)
{
    for (int k = 0; k < len; k++, d += ALI_G_MR) {
        for (int i = 0; i < mr; i++)
            d[i] = a * s[(size_t)i * ld + k];
        for (int i = mr; i < ALI_G_MR; i++)
            d[i] = 0.0f;
    }
}

/* Task rp: row panel rp of x into xp. */
static void ali_g_pack_x(void *ctx, int rp)
{
    const ali_g_job *j = ctx;
    ali_g_pack_rows(j->xp + (size_t)rp * j->K * ALI_G_MR, j->x + (size_t)rp * ALI_G_MR * j->K, (size_t)j->K, j->K,
                    AL_TILE_MIN(ALI_G_MR, j->T - rp * ALI_G_MR), 1.0f);
}

/* d [K][NR] = the NR rows of s [NR, K] (row stride K), transposed with gathers: the scalar loop
 * (NR strided loads per k) cost more than the kernel at a few dozen rows. */
static inline void ali_g_pack_gather(float *d, const float *s, int K)
{
#if defined(__AVX512F__)
    __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                     _mm512_set1_epi32(K));
    const float *s1 = s + (size_t)16 * K;
    for (int k = 0; k < K; k++, d += ALI_G_NR) {
        _mm512_storeu_ps(d, _mm512_i32gather_ps(idx, s + k, 4));
        _mm512_storeu_ps(d + 16, _mm512_i32gather_ps(idx, s1 + k, 4));
    }
#else
    __m256i idx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(K));
    const float *s1 = s + (size_t)8 * K;
    for (int k = 0; k < K; k++, d += ALI_G_NR) {
        _mm256_storeu_ps(d, _mm256_i32gather_ps(s + k, idx, 4));
        _mm256_storeu_ps(d + 8, _mm256_i32gather_ps(s1 + k, idx, 4));
    }
#endif
}

/* The same for bf16 weights: each 32-bit gather reads the weights k and k + 1 of a row; `<< 16`
 * widens the first, `& 0xffff0000` the second (exact). An odd K's last column goes one by one. */
static inline void ali_g_pack_gather_bf16(float *d, const uint16_t *s, int K)
{
    int k = 0;
#if defined(__AVX512F__)
    __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                     _mm512_set1_epi32(K));
    __m512i hi = _mm512_set1_epi32((int)0xffff0000u);
    const uint16_t *s1 = s + (size_t)16 * K;
    for (; k + 1 < K; k += 2, d += 2 * ALI_G_NR) {
        __m512i a = _mm512_i32gather_epi32(idx, s + k, 2), b = _mm512_i32gather_epi32(idx, s1 + k, 2);
        _mm512_storeu_ps(d, _mm512_castsi512_ps(_mm512_slli_epi32(a, 16)));
        _mm512_storeu_ps(d + 16, _mm512_castsi512_ps(_mm512_slli_epi32(b, 16)));
        _mm512_storeu_ps(d + 32, _mm512_castsi512_ps(_mm512_and_si512(a, hi)));
        _mm512_storeu_ps(d + 48, _mm512_castsi512_ps(_mm512_and_si512(b, hi)));
    }
#else
    __m256i idx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(K));
    __m256i hi = _mm256_set1_epi32((int)0xffff0000u);
    const uint16_t *s1 = s + (size_t)8 * K;
    for (; k + 1 < K; k += 2, d += 2 * ALI_G_NR) {
        __m256i a = _mm256_i32gather_epi32((const int *)(const void *)(s + k), idx, 2);
        __m256i b = _mm256_i32gather_epi32((const int *)(const void *)(s1 + k), idx, 2);
        _mm256_storeu_ps(d, _mm256_castsi256_ps(_mm256_slli_epi32(a, 16)));
        _mm256_storeu_ps(d + 8, _mm256_castsi256_ps(_mm256_slli_epi32(b, 16)));
        _mm256_storeu_ps(d + 16, _mm256_castsi256_ps(_mm256_and_si256(a, hi)));
        _mm256_storeu_ps(d + 24, _mm256_castsi256_ps(_mm256_and_si256(b, hi)));
    }
#endif
    for (; k < K; k++, d += ALI_G_NR)
        for (int c = 0; c < ALI_G_NR; c++)
            d[c] = ali_bf16_to_f32(s[(size_t)c * K + k]);
}

/* Task: the weight rows n0 .. n0+nb-1 packed into this thread's scratch, then every block of them. */
static void ali_g_task(void *ctx, int task)
{
    const ali_g_job *j = ctx;
    int p = 0;
    while (task >= j->t0[p + 1])
        p++;
    int K = j->K, N = j->N[p], n0 = (task - j->t0[p]) * j->tile[p], nb = AL_TILE_MIN(j->tile[p], N - n0);
    int n_cp = (nb + ALI_G_NR - 1) / ALI_G_NR;
    float *wp = ali_cpu_scratch(4, (size_t)n_cp * K * ALI_G_NR);
    /* per column panel, k outer: sequential writes, NR sequential read streams (bf16 widened) */
    for (int cp = 0; cp < n_cp; cp++) {
        float *d = wp + (size_t)cp * K * ALI_G_NR;
        int nc = AL_TILE_MIN(ALI_G_NR, nb - cp * ALI_G_NR);
        size_t r0 = (size_t)(n0 + cp * ALI_G_NR) * K;
        if (j->bf16 && nc == ALI_G_NR) {
            ali_g_pack_gather_bf16(d, (const uint16_t *)j->w[p] + r0, K);
        } else if (j->bf16) {
            const uint16_t *s = (const uint16_t *)j->w[p] + r0;
            for (int k = 0; k < K; k++, d += ALI_G_NR) {
                for (int c = 0; c < nc; c++)
                    d[c] = ali_bf16_to_f32(s[(size_t)c * K + k]);
                for (int c = nc; c < ALI_G_NR; c++)
                    d[c] = 0.0f;
            }
        } else if (nc == ALI_G_NR) { /* a whole panel: ALI_G_NR / VW gathers per k */
            const float *s = (const float *)j->w[p] + r0;
            ali_g_pack_gather(d, s, K);
        } else {
            const float *s = (const float *)j->w[p] + r0;
            for (int k = 0; k < K; k++, d += ALI_G_NR) {
                for (int c = 0; c < nc; c++)
                    d[c] = s[(size_t)c * K + k];
                for (int c = nc; c < ALI_G_NR; c++)
                    d[c] = 0.0f;
            }
        }
    }
    for (int rp = 0; rp < j->n_rp; rp++) {
        int mr = AL_TILE_MIN(ALI_G_MR, j->T - rp * ALI_G_MR);
        for (int cp = 0; cp < n_cp; cp++)
            ali_g_kernel(j->xp + (size_t)rp * K * ALI_G_MR, wp + (size_t)cp * K * ALI_G_NR, K,
                         j->y[p] + (size_t)rp * ALI_G_MR * N + n0 + cp * ALI_G_NR, (size_t)N, mr,
                         AL_TILE_MIN(ALI_G_NR, nb - cp * ALI_G_NR), j->accumulate);
    }
}

/* y[p] [T, N[p]] (+)= x [T, K] · w[p] [N[p], K]^T for p < n (<= ALI_G_MAXP): x packed once for all
 * of them, one fork-join over every product's tiles (each product's partition depends on its N
 * alone). */
static void ali_gemm_n(const float *x, int T, int K, int n, float *const *y, const void *const *w, const int *N,
                       int accumulate, int bf16)
{
    ali_g_job j = {.x = x, .T = T, .K = K, .n_rp = (T + ALI_G_MR - 1) / ALI_G_MR, .bf16 = bf16,
                   .accumulate = accumulate};
    for (int p = 0; p < n; p++) {
        if (N[p] <= 0)
            continue;
        int q = j.n++;
        j.y[q] = y[p], j.w[q] = w[p], j.N[q] = N[p], j.tile[q] = ali_big_tile(N[p]);
        j.t0[q + 1] = j.t0[q] + (N[p] + j.tile[q] - 1) / j.tile[q];
    }
    if (j.n == 0 || T <= 0)
        return;
    j.xp = ali_cpu_scratch(5, (size_t)j.n_rp * K * ALI_G_MR);
    ali_par_run(j.n_rp, ali_g_pack_x, &j);
    ali_par_run(j.t0[j.n], ali_g_task, &j);
}

static void ali_gemm(float *y, const float *x, const void *w, int T, int K, int N, int accumulate, int bf16)
{
    ali_gemm_n(x, T, K, 1, &y, &w, &N, accumulate, bf16);
}
/* ---- dx [T, K] (+)= sum over p of alpha[p] dy[p] [T, N[p]] · w[p] [N[p], K] (the trainer's
 * transposed products): the same kernel with the reduction over N[p]; alpha[p] dy[p] packed once
 * into row panels [n_rp][N[p]][MR], a task owns a tile of dx's columns and packs, per product,
 * the tile's columns of w[p] into panels [N[p]][NR] (contiguous strips of rows). The products are
 * added into dx one after the other, each from its own FMA chain: bitwise what one call per
 * product with accumulate gives. ---- */
typedef struct ali_gdx_job {
    float *dx;                   /* [T, K] */
    int T, K, n, n_rp, tile, accumulate;
    const float *dy[ALI_G_MAXP]; /* [T, N[p]] */
    const float *w[ALI_G_MAXP];  /* [N[p], K] */
    float *xp[ALI_G_MAXP];       /* [n_rp][N[p]][MR]: alpha[p] dy[p] */
    int N[ALI_G_MAXP];
    float alpha[ALI_G_MAXP];
} ali_gdx_job;

/* Task (p, rp): row panel rp of alpha[p] dy[p]. */
static void ali_gdx_pack(void *ctx, int task)
{
    const ali_gdx_job *j = ctx;
    int p = task / j->n_rp, rp = task % j->n_rp, N = j->N[p];
    ali_g_pack_rows(j->xp[p] + (size_t)rp * N * ALI_G_MR, j->dy[p] + (size_t)rp * ALI_G_MR * N, (size_t)N, N,
                    AL_TILE_MIN(ALI_G_MR, j->T - rp * ALI_G_MR), j->alpha[p]);
}

static void ali_gdx_task(void *ctx, int task)
{
    const ali_gdx_job *j = ctx;
    int K = j->K, c0 = task * j->tile, nb = AL_TILE_MIN(j->tile, K - c0);
    int n_cp = (nb + ALI_G_NR - 1) / ALI_G_NR;
    for (int p = 0; p < j->n; p++) {
        int N = j->N[p];
        float *wp = ali_cpu_scratch(4, (size_t)n_cp * N * ALI_G_NR);
        for (int cp = 0; cp < n_cp; cp++) {
            int nc = AL_TILE_MIN(ALI_G_NR, nb - cp * ALI_G_NR);
            float *d = wp + (size_t)cp * N * ALI_G_NR;
            const float *s = j->w[p] + c0 + cp * ALI_G_NR;
            for (int n = 0; n < N; n++, d += ALI_G_NR) {
                memcpy(d, s + (size_t)n * K, sizeof(float) * (size_t)nc);
                for (int c = nc; c < ALI_G_NR; c++)
                    d[c] = 0.0f;
            }
        }
        for (int rp = 0; rp < j->n_rp; rp++) {
            int mr = AL_TILE_MIN(ALI_G_MR, j->T - rp * ALI_G_MR);
            for (int cp = 0; cp < n_cp; cp++)
                ali_g_kernel(j->xp[p] + (size_t)rp * N * ALI_G_MR, wp + (size_t)cp * N * ALI_G_NR, N,
                             j->dx + (size_t)rp * ALI_G_MR * K + c0 + cp * ALI_G_NR, (size_t)K, mr,
                             AL_TILE_MIN(ALI_G_NR, nb - cp * ALI_G_NR), p > 0 || j->accumulate);
        }
    }
}

/* N[p] > 0 for every p < n (<= ALI_G_MAXP), T > 0, K > 0. */
static void ali_gemm_dx_n(float *dx, int T, int K, int n, const float *const *dy, const float *const *w,
                          const int *N, const float *alpha, int accumulate)
{
    ali_gdx_job j = {.dx = dx, .T = T, .K = K, .n = n, .n_rp = (T + ALI_G_MR - 1) / ALI_G_MR,
                     .tile = ali_big_tile(K), .accumulate = accumulate};
    size_t tot = 0;
    for (int p = 0; p < n; p++)
        tot += (size_t)j.n_rp * N[p] * ALI_G_MR;
    float *xp = ali_cpu_scratch(5, tot);
    for (int p = 0; p < n; p++) {
        j.dy[p] = dy[p], j.w[p] = w[p], j.N[p] = N[p], j.alpha[p] = alpha[p], j.xp[p] = xp;
        xp += (size_t)j.n_rp * N[p] * ALI_G_MR;
    }
    ali_par_run(n * j.n_rp, ali_gdx_pack, &j);
    ali_par_run((K + j.tile - 1) / j.tile, ali_gdx_task, &j);
}
#endif
