/* matmul_q8_gemm.c: the many-row cpu-q8 matmul (prefill): int8 activations times packed int8 weight
 * panels, AMX tdpbusd, vpdpbusd (AVX-512 VNNI) or maddubs (AVX2), exact int32 dots: the bits of
 * ali_q8_matmul_ref. */
#include <stdint.h>
#include <string.h>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/q8.h"
#include "kernels/cpu/q8_isa.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

/*
 * y [T, N] (+)= x [T, K] · w [N, K]^T with x quantized per row (ali_q8_quantize: the few-row
 * kernels' quantization), so every output is (float)(exact int32 dot) * (sw * sx), as in
 * ali_q8_matmul_ref: the same bits whatever the kernel, the blocking or the thread count.
 *
 * Blocking: the weight rows are cut into tasks of a fixed size that depends on N alone; each task
 * packs ALI_Q8G_NR of its rows at a time into a panel [Kp/4][NR][4] (4 consecutive k of one row are
 * one int32 lane, so one vector holds 16 rows' next 4 k) that stays in L2 while every block of
 * ALI_Q8G_MR activation rows runs over it (the activations: [Tp, Kp] int8, read 4 bytes at a time,
 * broadcast). The register tile is MR activation rows x NR weight rows of int32 accumulators.
 */
#define ALI_Q8G_NR 64 /* weight rows per panel: 4 zmm of int32 lanes */
#define ALI_Q8G_MR 6  /* activation rows per register tile (AVX-512: 24 accumulators) */

typedef struct ali_q8g_job {
    float *y;          /* [T, N] */
    const uint8_t *xa; /* [Tp, Kp] activations: int8, or int8 ^ 0x80 (u8) for vpdpbusd / AMX */
    const float *sx;   /* [T] activation scales */
    const void *w;     /* [N] rows of ali_q8_row_bytes(K) */
    int T, Tp, K, Kp, N, accumulate, tile, vnni, amx;
} ali_q8g_job;

#if defined(__AVX2__)

/* The panel's weights, scales and sums: bp [Kp/4][NR] int32 lanes of 4 k each, rows past nb zero
 * (they add nothing and are not stored). */
static void ali_q8g_pack(int32_t *bp, float *sw, int32_t *ws, const void *w, int n0, int nb, int K, int Kp)
{
    const size_t rb = ali_q8_row_bytes(K);
    const int K4 = (K + 3) / 4;
    for (int k4 = K4; k4 < Kp / 4; k4++) /* AMX pads K to whole tiles of 64 */
        for (int c = 0; c < ALI_Q8G_NR; c++)
            bp[(size_t)k4 * ALI_Q8G_NR + c] = 0;
    for (int c = nb; c < ALI_Q8G_NR; c++) {
        sw[c] = 0.0f;
        ws[c] = 0;
        for (int k4 = 0; k4 < K4; k4++)
            bp[(size_t)k4 * ALI_Q8G_NR + c] = 0;
    }
    for (int c = 0; c < nb; c++) {
        const int8_t *row = (const int8_t *)w + (size_t)(n0 + c) * rb;
        sw[c] = ali_q8_row_scale(row, K);
        ws[c] = ali_q8_row_sum(row, K);
    }
    /* 16 k4 (a cache line of each row) at a time across the panel's rows: the reads stay in L1 */
    for (int kb = 0; kb < K4; kb += 16) {
        int ke = kb + 16 < K4 ? kb + 16 : K4;
        for (int c = 0; c < nb; c++) {
            const int8_t *row = (const int8_t *)w + (size_t)(n0 + c) * rb;
            for (int k4 = kb; k4 < ke; k4++) /* rows are zero-padded to a multiple of 4 bytes */
                memcpy(&bp[(size_t)k4 * ALI_Q8G_NR + c], row + 4 * k4, 4);
        }
    }
}

/* y rows [t0, t0 + tb) x columns [n0, n0 + nb) from the int32 dots d [tb][ld] (for vpdpbusd and
 * AMX: the u8 dot, minus 128 * sum(w)); sw, ws: the columns' scales and sums. The same operations
 * as ali_q8_matmul_ref. */
static void ali_q8g_store(const ali_q8g_job *j, const int32_t *d, int ld, const float *sw, const int32_t *ws, int t0,
                          int tb, int n0, int nb)
{
    for (int r = 0; r < tb; r++) {
        float sx = j->sx[t0 + r], *yr = j->y + (size_t)(t0 + r) * j->N + n0;
        for (int c = 0; c < nb; c++) {
            int32_t dr = d[(size_t)r * ld + c];
            int32_t dot = j->vnni ? (int32_t)((uint32_t)dr - 128u * (uint32_t)ws[c]) : dr;
            float s = sw[c] * sx;
            yr[c] = j->accumulate ? fmaf((float)dot, s, yr[c]) : (float)dot * s;
        }
    }
}

#if defined(__AVX512BW__)
/* vpdpbusd: u8 (x ^ 0x80 = x + 128) times s8 weights, 4 products summed into each int32 lane,
 * wrapping (the true dot fits int32: K * 127 * 127 < 2^31, so the modular result is exact). */
__attribute__((target("avx512vnni"))) static void ali_q8g_tile_vnni(const ali_q8g_job *j, const int32_t *bp,
                                                                    const float *sw, const int32_t *ws, int t0,
                                                                    int n0, int nb)
{
    const int K4 = j->Kp / 4;
    const uint8_t *a = j->xa + (size_t)t0 * j->Kp;
    const size_t Kp = (size_t)j->Kp;
    /* 24 named accumulators: with an array, GCC spills it to the stack every iteration */
#define ALI_Q8G_Z(r) __m512i c##r##0 = _mm512_setzero_si512(), c##r##1 = c##r##0, c##r##2 = c##r##0, c##r##3 = c##r##0
    ALI_Q8G_Z(0);
    ALI_Q8G_Z(1);
    ALI_Q8G_Z(2);
    ALI_Q8G_Z(3);
    ALI_Q8G_Z(4);
    ALI_Q8G_Z(5);
#undef ALI_Q8G_Z
    for (int k4 = 0; k4 < K4; k4++) {
        const int32_t *b = bp + (size_t)k4 * ALI_Q8G_NR;
        const uint8_t *ak = a + 4 * (size_t)k4;
        __m512i b0 = _mm512_load_si512(b), b1 = _mm512_load_si512(b + 16), b2 = _mm512_load_si512(b + 32),
                b3 = _mm512_load_si512(b + 48);
#define ALI_Q8G_ROW(r)                                                                                      \
    do {                                                                                                    \
        int32_t av;                                                                                         \
        memcpy(&av, ak + (r) * Kp, 4);                                                                      \
        __m512i ab = _mm512_set1_epi32(av);                                                                 \
        c##r##0 = _mm512_dpbusd_epi32(c##r##0, ab, b0);                                                     \
        c##r##1 = _mm512_dpbusd_epi32(c##r##1, ab, b1);                                                     \
        c##r##2 = _mm512_dpbusd_epi32(c##r##2, ab, b2);                                                     \
        c##r##3 = _mm512_dpbusd_epi32(c##r##3, ab, b3);                                                     \
    } while (0)
        ALI_Q8G_ROW(0);
        ALI_Q8G_ROW(1);
        ALI_Q8G_ROW(2);
        ALI_Q8G_ROW(3);
        ALI_Q8G_ROW(4);
        ALI_Q8G_ROW(5);
#undef ALI_Q8G_ROW
    }
    _Static_assert(ALI_Q8G_MR == 6, "ali_q8g_tile_vnni names 6 rows of accumulators");
    const __m512i acc[ALI_Q8G_MR][4] = {{c00, c01, c02, c03}, {c10, c11, c12, c13}, {c20, c21, c22, c23},
                                        {c30, c31, c32, c33}, {c40, c41, c42, c43}, {c50, c51, c52, c53}};
    int tb = j->T - t0 < ALI_Q8G_MR ? j->T - t0 : ALI_Q8G_MR;
    if (!j->accumulate) { /* the common case, vectorized: y = cvt(d - 128 sum(w)) * (sw * sx) */
        __mmask16 m[4];
        for (int v = 0; v < 4; v++) {
            int left = nb - 16 * v;
            m[v] = left >= 16 ? (__mmask16)0xffff : left <= 0 ? 0 : (__mmask16)((1u << left) - 1);
        }
        for (int r = 0; r < tb; r++) {
            __m512 sx = _mm512_set1_ps(j->sx[t0 + r]);
            float *yr = j->y + (size_t)(t0 + r) * j->N + n0;
            for (int v = 0; v < 4; v++) {
                __m512i d = _mm512_sub_epi32(acc[r][v], _mm512_slli_epi32(_mm512_loadu_si512(ws + 16 * v), 7));
                __m512 s = _mm512_mul_ps(_mm512_loadu_ps(sw + 16 * v), sx);
                _mm512_mask_storeu_ps(yr + 16 * v, m[v], _mm512_mul_ps(_mm512_cvtepi32_ps(d), s));
            }
        }
        return;
    }
    int32_t d[ALI_Q8G_MR][ALI_Q8G_NR];
    for (int r = 0; r < ALI_Q8G_MR; r++)
        for (int v = 0; v < 4; v++)
            _mm512_storeu_si512(&d[r][16 * v], acc[r][v]);
    ali_q8g_store(j, &d[0][0], ALI_Q8G_NR, sw, ws, t0, tb, n0, nb);
}

static int ali_q8g_vnni(void) { return ali_q8_cpu_vnni(); }

/* AMX (tdpbusd: the same u8 x s8 products, exact int32 sums) on 32 activation rows x the panel's
 * 64 weight rows: tiles 0-3 the four 16 x 16 int32 blocks of 32 columns at a time, 4-5 the two
 * 16 x 64-byte activation tiles, 6-7 two 16-column slices of the panel (its [K/4][NR][4] layout is
 * AMX's B layout, 256 bytes a row). K is padded to whole 64-byte tiles, rows to 32. */
typedef struct ali_q8g_tilecfg {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} ali_q8g_tilecfg;

__attribute__((target("amx-int8,amx-tile"))) static void ali_q8g_tile_amx(const ali_q8g_job *j, const int32_t *bp,
                                                                          const float *sw, const int32_t *ws,
                                                                          int t0, int n0, int nb)
{
    const size_t Kp = (size_t)j->Kp;
    const uint8_t *a = j->xa + (size_t)t0 * Kp;
    int32_t d[32][32] __attribute__((aligned(64)));
    int tb = j->T - t0 < 32 ? j->T - t0 : 32;
    for (int c0 = 0; c0 < nb; c0 += 32) {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        for (size_t k0 = 0; k0 < Kp; k0 += 64) {
            const int32_t *b = bp + k0 / 4 * ALI_Q8G_NR + c0;
            _tile_loadd(4, a + k0, Kp);
            _tile_loadd(5, a + 16 * Kp + k0, Kp);
            _tile_loadd(6, b, ALI_Q8G_NR * 4);
            _tile_loadd(7, b + 16, ALI_Q8G_NR * 4);
            _tile_dpbusd(0, 4, 6);
            _tile_dpbusd(1, 4, 7);
            _tile_dpbusd(2, 5, 6);
            _tile_dpbusd(3, 5, 7);
        }
        _tile_stored(0, &d[0][0], 128);
        _tile_stored(1, &d[0][16], 128);
        _tile_stored(2, &d[16][0], 128);
        _tile_stored(3, &d[16][16], 128);
        int nc = nb - c0 < 32 ? nb - c0 : 32;
        ali_q8g_store(j, &d[0][0], 32, sw + c0, ws + c0, t0, tb, n0 + c0, nc);
    }
}

/* In static storage: GCC 12's _tile_loadconfig tells the compiler it reads 8 bytes, so a local
 * configuration's other stores were dropped as dead. */
static const ali_q8g_tilecfg ali_q8g_cfg = {
    .palette = 1,
    .colsb = {64, 64, 64, 64, 64, 64, 64, 64},
    .rows = {16, 16, 16, 16, 16, 16, 16, 16},
};

__attribute__((target("amx-int8,amx-tile"))) static void ali_q8g_amx_begin(void) { _tile_loadconfig(&ali_q8g_cfg); }

__attribute__((target("amx-int8,amx-tile"))) static void ali_q8g_amx_end(void) { _tile_release(); }
#else
static int ali_q8g_vnni(void) { return 0; }
#endif

/* AVX2 (no VNNI): maddubs(|x|, sign(w, x)) (both within [-127, 127]: the pair sums fit int16, no
 * saturation), madd with ones widens to int32: exact. 4 activation rows x 16 weight rows per pass,
 * the panel's 64 rows in 4 passes. */
static void ali_q8g_tile_avx2(const ali_q8g_job *j, const int32_t *bp, const float *sw, const int32_t *ws, int t0,
                              int n0, int nb)
{
    const int K4 = j->Kp / 4, MR = 4;
    const __m256i ones = _mm256_set1_epi16(1);
    int32_t d[ALI_Q8G_MR][ALI_Q8G_NR];
    for (int t1 = 0; t1 < ALI_Q8G_MR; t1 += MR) {
        const uint8_t *a = j->xa + (size_t)(t0 + t1) * j->Kp;
        int mr = ALI_Q8G_MR - t1 < MR ? ALI_Q8G_MR - t1 : MR;
        for (int c0 = 0; c0 < nb; c0 += 16) {
            __m256i acc[4][2];
            for (int r = 0; r < MR; r++)
                acc[r][0] = acc[r][1] = _mm256_setzero_si256();
            for (int k4 = 0; k4 < K4; k4++) {
                const int32_t *b = bp + (size_t)k4 * ALI_Q8G_NR + c0;
                __m256i b0 = _mm256_load_si256((const __m256i *)b), b1 = _mm256_load_si256((const __m256i *)(b + 8));
                for (int r = 0; r < MR; r++) {
                    int32_t av;
                    memcpy(&av, a + (size_t)(r < mr ? r : 0) * j->Kp + 4 * (size_t)k4, 4);
                    __m256i ab = _mm256_set1_epi32(av), aa = _mm256_abs_epi8(ab);
                    acc[r][0] = _mm256_add_epi32(
                        acc[r][0], _mm256_madd_epi16(_mm256_maddubs_epi16(aa, _mm256_sign_epi8(b0, ab)), ones));
                    acc[r][1] = _mm256_add_epi32(
                        acc[r][1], _mm256_madd_epi16(_mm256_maddubs_epi16(aa, _mm256_sign_epi8(b1, ab)), ones));
                }
            }
            for (int r = 0; r < mr; r++) {
                _mm256_storeu_si256((__m256i *)&d[t1 + r][c0], acc[r][0]);
                _mm256_storeu_si256((__m256i *)&d[t1 + r][c0 + 8], acc[r][1]);
            }
        }
    }
    int tb = j->T - t0 < ALI_Q8G_MR ? j->T - t0 : ALI_Q8G_MR;
    ali_q8g_store(j, &d[0][0], ALI_Q8G_NR, sw, ws, t0, tb, n0, nb);
}

static void ali_q8g_task(void *ctx, int task)
{
    const ali_q8g_job *j = ctx;
    int n_end = (task + 1) * j->tile < j->N ? (task + 1) * j->tile : j->N;
    /* per thread: the panel [Kp/4][NR] int32, then its scales and sums */
    float *scr = ali_cpu_scratch(4, (size_t)j->Kp / 4 * ALI_Q8G_NR + 2 * ALI_Q8G_NR);
    int32_t *bp = (int32_t *)scr, *ws = bp + (size_t)j->Kp / 4 * ALI_Q8G_NR;
    float *sw = (float *)(ws + ALI_Q8G_NR);
#if defined(__AVX512BW__)
    if (j->amx)
        ali_q8g_amx_begin(); /* tile configuration is per thread */
#endif
    for (int n0 = task * j->tile; n0 < n_end; n0 += ALI_Q8G_NR) {
        int nb = n_end - n0 < ALI_Q8G_NR ? n_end - n0 : ALI_Q8G_NR;
        ali_q8g_pack(bp, sw, ws, j->w, n0, nb, j->K, j->Kp);
#if defined(__AVX512BW__)
        if (j->amx) {
            for (int t0 = 0; t0 < j->T; t0 += 32)
                ali_q8g_tile_amx(j, bp, sw, ws, t0, n0, nb);
            continue;
        }
#endif
        for (int t0 = 0; t0 < j->T; t0 += ALI_Q8G_MR) {
#if defined(__AVX512BW__)
            if (j->vnni) {
                ali_q8g_tile_vnni(j, bp, sw, ws, t0, n0, nb);
                continue;
            }
#endif
            ali_q8g_tile_avx2(j, bp, sw, ws, t0, n0, nb);
        }
    }
#if defined(__AVX512BW__)
    if (j->amx)
        ali_q8g_amx_end();
#endif
}

/* Quantizes the activation rows [t0, t1) into the job's xa (zero padding to Kp; ^ 0x80 for vnni). */
static void ali_q8g_quantize_rows(const ali_q8g_job *j, const float *x, float *sx, int t0, int t1)
{
    for (int t = t0; t < t1; t++) {
        int8_t *q = (int8_t *)j->xa + (size_t)t * j->Kp;
        if (t < j->T) {
            sx[t] = ali_q8_quantize(q, NULL, x + (size_t)t * j->K, j->K);
            memset(q + j->K, 0, (size_t)(j->Kp - j->K));
        } else {
            memset(q, 0, (size_t)j->Kp);
        }
        if (j->vnni)
            for (int k = 0; k < j->Kp; k++)
                q[k] = (int8_t)((uint8_t)q[k] ^ 0x80u);
    }
}

typedef struct ali_q8g_qjob {
    const ali_q8g_job *j;
    const float *x;
    float *sx;
    int rows;
} ali_q8g_qjob;

static void ali_q8g_quantize_task(void *ctx, int task)
{
    const ali_q8g_qjob *q = ctx;
    int t0 = task * q->rows, t1 = t0 + q->rows < q->j->Tp ? t0 + q->rows : q->j->Tp;
    ali_q8g_quantize_rows(q->j, q->x, q->sx, t0, t1);
}

int ali_q8_gemm(float *y, const float *x, const void *w, int T, int K, int N, int accumulate)
{
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2"))
        return 0;
    ali_q8g_job j = {.y = y, .w = w, .T = T, .K = K, .N = N, .accumulate = accumulate, .vnni = ali_q8g_vnni()};
#if defined(__AVX512BW__)
    j.amx = j.vnni && ali_q8_cpu_amx(); /* AMX implies AVX-512 VNNI on every CPU that has it */
    j.vnni |= j.amx;
#endif
    /* K: whole int32 lanes (AMX: whole 64-byte tiles); rows: whole register tiles (AMX: 32) */
    j.Kp = j.amx ? (K + 63) / 64 * 64 : (K + 3) / 4 * 4;
    int mr = j.amx ? 32 : ALI_Q8G_MR;
    j.Tp = (T + mr - 1) / mr * mr;
    /* the caller's scratch: [T] scales, then [Tp, Kp] bytes of activations */
    float *scr = ali_cpu_scratch(5, (size_t)T + ((size_t)j.Tp * (size_t)j.Kp + 3) / 4 + 16);
    j.sx = scr;
    j.xa = (const uint8_t *)(scr + T);
    /* rows in fixed chunks of 32 (per-row work: the chunking changes nothing) */
    ali_q8g_qjob qj = {.j = &j, .x = x, .sx = scr, .rows = 32};
    ali_par_run((j.Tp + qj.rows - 1) / qj.rows, ali_q8g_quantize_task, &qj);
    /* a fixed partition of the weight rows that depends on N alone, whole panels */
    int tile = (N + 11) / 12;
    tile = (tile + ALI_Q8G_NR - 1) / ALI_Q8G_NR * ALI_Q8G_NR;
    j.tile = tile;
    ali_par_run((N + j.tile - 1) / j.tile, ali_q8g_task, &j);
    return 1;
}

#else /* no AVX2 in this variant: the caller takes the few-row kernels */

int ali_q8_gemm(float *y, const float *x, const void *w, int T, int K, int N, int accumulate)
{
    (void)y, (void)x, (void)w, (void)T, (void)K, (void)N, (void)accumulate;
    return 0;
}

#endif
