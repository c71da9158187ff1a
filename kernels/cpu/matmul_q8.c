/* matmul_q8.c: matmul with cpu-q8 weights: exact int8 dot products for few rows (AVX-512 VNNI when
 * the CPU has it, else AVX2 / SSE4.2 / C); more rows go to the packed int8 GEMM (matmul_q8_gemm.c). */
#include <math.h>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/q8.h"
#include "kernels/cpu/q8_isa.h"

#if defined(__SSSE3__)
#include <immintrin.h>
#endif

/* Up to this many rows: int8 dots of each activation row against a few weight rows at a time
 * (memory-bound: a quarter of the f32 bytes); more: the packed GEMM (compute-bound). Both quantize
 * the activations per row and take exact int32 dots: the same bits either way. */
#define ALI_Q8_SMALL_T 8
#define ALI_Q8_NB 4 /* weight rows per tile of the dot kernels (the VNNI one's reduction assumes 4) */
_Static_assert(ALI_Q8_NB == 4, "ali_q8_dot_vnni reduces exactly 4 rows");
/* Software prefetch this many rows ahead (the next tile: rows are back to back, so the tile's rows
 * prefetch the next tile's; a row of 772 bytes is too short a stream for the hardware prefetcher
 * to ramp up on). Measured on the 85m decode shapes, 1 thread: +10-15% over none; 2 and 8 rows
 * ahead, or 8 and 16 rows per tile, were slower. */
#define ALI_Q8_PF_ROWS 4

typedef struct ali_q8_job {
    float *y;
    const float *x;
    const float *sx;  /* [T] activation scales */
    const int8_t *xq; /* [T, K] quantized activations */
    const void *w;    /* [N] rows of ali_q8_row_bytes(K) */
    int T, K, N, accumulate, rows_per_task;
} ali_q8_job;

/* ---- exact int32 dots of one activation row against ALI_Q8_NB weight rows ------------------- */

#if defined(__AVX512BW__)
/* AVX-512 VNNI: vpdpbusd multiplies unsigned by signed bytes and sums 4 products into int32
 * lanes, exactly: x + 128 (x ^ 0x80) is unsigned, and sum((x + 128) w) - 128 sum(w) = sum(x w).
 * The tail is a masked load (zero weights beyond K add nothing). */
__attribute__((target("avx512vnni"))) static void ali_q8_dot_vnni(const int8_t *x, const int8_t *const *w, int K,
                                                                   int32_t *out, size_t pf)
{
    __m512i acc[ALI_Q8_NB];
    for (int c = 0; c < ALI_Q8_NB; c++)
        acc[c] = _mm512_setzero_si512();
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    for (int k = 0; k < K; k += 64) {
        __mmask64 m = K - k >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << (K - k)) - 1);
        __m512i xu = _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, x + k), flip);
        for (int c = 0; c < ALI_Q8_NB; c++) {
            _mm_prefetch((const char *)w[c] + k + pf, _MM_HINT_T0);
            acc[c] = _mm512_dpbusd_epi32(acc[c], xu, _mm512_maskz_loadu_epi8(m, w[c] + k));
        }
    }
    /* the 4 horizontal sums at once: pairs of rows interleaved and added, then the 128-bit lanes */
    __m512i t0 = _mm512_add_epi32(_mm512_unpacklo_epi32(acc[0], acc[1]), _mm512_unpackhi_epi32(acc[0], acc[1]));
    __m512i t1 = _mm512_add_epi32(_mm512_unpacklo_epi32(acc[2], acc[3]), _mm512_unpackhi_epi32(acc[2], acc[3]));
    __m512i u = _mm512_add_epi32(_mm512_unpacklo_epi64(t0, t1), _mm512_unpackhi_epi64(t0, t1));
    __m256i h = _mm256_add_epi32(_mm512_castsi512_si256(u), _mm512_extracti64x4_epi64(u, 1));
    __m128i q = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
    /* the rows' sums after the loop: their line is in cache by now (before it, a miss per row) */
    __m128i ws = _mm_setr_epi32(ali_q8_row_sum(w[0], K), ali_q8_row_sum(w[1], K), ali_q8_row_sum(w[2], K),
                                ali_q8_row_sum(w[3], K));
    q = _mm_sub_epi32(q, _mm_slli_epi32(ws, 7));
    _mm_storeu_si128((__m128i *)out, q);
}

#endif

/* AVX2 / SSSE3: maddubs multiplies unsigned |x| by sign(w, x) (both within [-127, 127], so the
 * pair sums fit int16 without saturation: exact), madd widens the pairs to int32. */
static void ali_q8_dot_simd(const int8_t *x, const int8_t *const *w, int K, int32_t *out, size_t pf)
{
    int k = 0;
    int32_t s[ALI_Q8_NB] = {0};
#if defined(__AVX2__)
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i acc[ALI_Q8_NB];
    for (int c = 0; c < ALI_Q8_NB; c++)
        acc[c] = _mm256_setzero_si256();
    for (; k + 32 <= K; k += 32) {
        __m256i xv = _mm256_loadu_si256((const __m256i *)(x + k)), ax = _mm256_abs_epi8(xv);
        for (int c = 0; c < ALI_Q8_NB; c++) {
            _mm_prefetch((const char *)w[c] + k + pf, _MM_HINT_T0);
            __m256i sw = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(w[c] + k)), xv);
            acc[c] = _mm256_add_epi32(acc[c], _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sw), ones));
        }
    }
    for (int c = 0; c < ALI_Q8_NB; c++) {
        __m128i h = _mm_add_epi32(_mm256_castsi256_si128(acc[c]), _mm256_extracti128_si256(acc[c], 1));
        h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4e));
        h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xb1));
        s[c] = _mm_cvtsi128_si32(h);
    }
#elif defined(__SSSE3__)
    const __m128i ones = _mm_set1_epi16(1);
    __m128i acc[ALI_Q8_NB];
    for (int c = 0; c < ALI_Q8_NB; c++)
        acc[c] = _mm_setzero_si128();
    for (; k + 16 <= K; k += 16) {
        __m128i xv = _mm_loadu_si128((const __m128i *)(x + k)), ax = _mm_abs_epi8(xv);
        for (int c = 0; c < ALI_Q8_NB; c++) {
            _mm_prefetch((const char *)w[c] + k + pf, _MM_HINT_T0);
            __m128i sw = _mm_sign_epi8(_mm_loadu_si128((const __m128i *)(w[c] + k)), xv);
            acc[c] = _mm_add_epi32(acc[c], _mm_madd_epi16(_mm_maddubs_epi16(ax, sw), ones));
        }
    }
    for (int c = 0; c < ALI_Q8_NB; c++) {
        __m128i h = _mm_add_epi32(acc[c], _mm_shuffle_epi32(acc[c], 0x4e));
        h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xb1));
        s[c] = _mm_cvtsi128_si32(h);
    }
#endif
    for (; k < K; k++)
        for (int c = 0; c < ALI_Q8_NB; c++)
            s[c] += (int32_t)x[k] * w[c][k];
    for (int c = 0; c < ALI_Q8_NB; c++)
        out[c] = s[c];
}

/* out [NB] = x · w[c] over K (exact int32); pf: the prefetch distance in bytes (0: the same line). */
typedef void (*ali_q8_dot_fn)(const int8_t *x, const int8_t *const *w, int K, int32_t *out, size_t pf);

static ali_q8_dot_fn ali_q8_dot(void)
{
#if defined(__AVX512BW__)
    if (ali_q8_cpu_vnni())
        return ali_q8_dot_vnni;
#endif
    return ali_q8_dot_simd;
}

/* ---- few rows: int8 dots over a fixed partition of the weight rows ------------------------------ */

static void ali_q8_small_task(void *ctx, int task)
{
    const ali_q8_job *j = ctx;
    const int K = j->K, N = j->N;
    const size_t rb = ali_q8_row_bytes(K);
    int n0 = task * j->rows_per_task, n1 = n0 + j->rows_per_task;
    n1 = n1 < N ? n1 : N;
    ali_q8_dot_fn dot = ali_q8_dot();
    for (int n = n0; n < n1; n += ALI_Q8_NB) {
        int nb = n1 - n < ALI_Q8_NB ? n1 - n : ALI_Q8_NB;
        const int8_t *wr[ALI_Q8_NB];
        float sw[ALI_Q8_NB];
        int32_t d[ALI_Q8_NB];
        for (int c = 0; c < ALI_Q8_NB; c++)
            wr[c] = (const int8_t *)j->w + (size_t)(n + (c < nb ? c : 0)) * rb;
        for (int t = 0; t < j->T; t++) {
            /* the first activation row prefetches the next tile; the others find this one in L1 */
            dot(j->xq + (size_t)t * K, wr, K, d, t == 0 ? ALI_Q8_PF_ROWS * rb : 0);
            if (t == 0) /* the scales after the first dot: in cache by then (before it, a miss a row) */
                for (int c = 0; c < ALI_Q8_NB; c++)
                    sw[c] = ali_q8_row_scale(wr[c], K);
            float *yr = j->y + (size_t)t * N + n;
            for (int c = 0; c < nb; c++) {
                /* fmaf, not a product and a sum the compiler may or may not contract: the same
                 * bits from every variant and the reference */
                float s = sw[c] * j->sx[t];
                yr[c] = j->accumulate ? fmaf((float)d[c], s, yr[c]) : (float)d[c] * s;
            }
        }
    }
}

void ali_cpu_matmul_q8(float *y, const float *x, const void *w, int T, int K, int N, int accumulate)
{
    if (T > ALI_Q8_SMALL_T && ali_q8_gemm(y, x, w, T, K, N, accumulate))
        return;
    /* few rows (or no AVX2 for the packed kernel): the activations quantized once, by the caller;
     * the tasks share them read-only */
    ali_q8_job j = {.y = y, .w = w, .T = T, .K = K, .N = N, .accumulate = accumulate};
    int threads = al_cpu_threads();
    float *scr = ali_cpu_scratch(5, (size_t)T + ((size_t)T * (size_t)K + 3) / 4);
    int8_t *xq = (int8_t *)(scr + T);
    for (int t = 0; t < T; t++)
        scr[t] = ali_q8_quantize(xq + (size_t)t * K, NULL, x + (size_t)t * K, K);
    j.sx = scr;
    j.xq = xq;
    /* ~4 tasks per thread; the partition is over weight rows, so no result depends on it */
    int tasks = threads > 1 ? 4 * threads : 1;
    int rows = (N + tasks - 1) / tasks;
    rows = (rows + 15) / 16 * 16;
    j.rows_per_task = rows < 64 ? 64 : rows;
    ali_par_run((N + j.rows_per_task - 1) / j.rows_per_task, ali_q8_small_task, &j);
}
