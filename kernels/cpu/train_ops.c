/* train_ops.c: the CPU twins of the training (backward) ops: the trainer's forward matmul, the
 * matmul transposes, RMSNorm, RoPE, SwiGLU, causal attention over a constant prefix (one or several
 * stacked sequences) and its backward, cross-entropy. Compiled once per ISA variant like the other kernels (ALI_CPU_ISA_SFX). */
#include <assert.h>
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/train_ops.h"

/* Up to this many rows the products stream the weights once (every row served from each weight
 * tile while it is in cache); above, sgemm over fixed blocks of rows. */
#define ALI_TR_FEW 32
#define ALI_NB 16

/* ---- the engine's few-row streaming kernel (kernels/cpu/matmul_tiles.h), any row count ---- */
#define ALI_WT float
#define ALI_NV 1
#define ALI_WLOAD(v, p) ((v)[0] = ali_ld16(p))
#define ALI_WSCALAR(p) (*(p))
#define ALI_SFX _tr
#include "kernels/cpu/matmul_tiles.h"
#undef ALI_WT
#undef ALI_NV
#undef ALI_WLOAD
#undef ALI_WSCALAR
#undef ALI_SFX

/* Many rows, forward: sgemm per tile of weight rows (each tile packs its weights once and x once:
 * x is cache-resident, the weights stream from memory once in all). Transposed product: sgemm per
 * tile of weight columns (dx's columns), the same way: every weight packed once, dy re-packed per
 * tile. Tiles of ~192 rows / columns or more, a multiple of 16, an even number of them when more
 * than one (two threads stay busy). Each tile is one single-threaded sgemm; the partitions depend on
 * the shapes alone (OpenBLAS's result depends on the call's shape), so results are the same at any
 * thread count. */
static int ali_tr_col_tile(int N)
{
    int nt = N / 192;
    nt = nt > 1 ? nt / 2 * 2 : 1;
    int w = (N + nt - 1) / nt;
    return (w + 15) / 16 * 16;
}

typedef struct ali_tr_mm {
    float *y;
    const float *x, *w;
    int T, K, N, nb; /* nb: weight rows (forward) or columns (transpose) per tile */
    float alpha, beta;
} ali_tr_mm;

static void ali_tr_mm_cols_task(void *ctx, int b)
{
    const ali_tr_mm *j = ctx;
    int n0 = b * j->nb, nn = AL_TILE_MIN(j->nb, j->N - n0);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->T, nn, j->K, 1.0f, j->x, j->K, j->w + (size_t)n0 * j->K,
                j->K, j->beta, j->y + n0, j->N);
}

static void ali_tr_mm_dx_task(void *ctx, int b)
{
    const ali_tr_mm *j = ctx;
    int k0 = b * j->nb, kb = AL_TILE_MIN(j->nb, j->K - k0);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, j->T, kb, j->N, j->alpha, j->x, j->N, j->w + k0, j->K,
                j->beta, j->y + k0, j->K);
}

/* y [T,N] = x [T,K] · w [N,K]^T (+ y if accumulate): f32 weights */
static void ali_tr_matmul_fwd(float *y, const float *x, const float *w, int T, int K, int N, int accumulate)
{
    if (T <= 0 || N <= 0)
        return;
    if (K <= 0) {
        if (!accumulate)
            memset(y, 0, sizeof(float) * (size_t)T * N);
        return;
    }
    if (T <= ALI_TR_FEW) {
        ali_small_run(ali_small_task_tr, y, x, x, w, T, K, N, accumulate);
        return;
    }
    if (ali_cpu_gemm_n(x, T, K, 1, &y, &w, &N, accumulate))
        return;
    ali_tr_mm j = {.y = y, .x = x, .w = w, .T = T, .K = K, .N = N, .nb = ali_tr_col_tile(N), .alpha = 1.0f,
                   .beta = accumulate ? 1.0f : 0.0f};
    ali_par_run((N + j.nb - 1) / j.nb, ali_tr_mm_cols_task, &j);
}

/* ---- dx [T,K] = alpha dy [T,N] · w [N,K]: for few rows a streaming kernel over column panels of
 * w, each panel read once (in blocks of weight rows that stay in L1) for every row of dy ---- */

#if defined(__AVX512F__)
#define ALI_DX_TB 4 /* dy rows per register tile: 4 x 4 zmm accumulators */
#else
#define ALI_DX_TB 2 /* 2 x 4 x (2 ymm) */
#endif
#define ALI_DX_CW 4   /* 16-float vectors per register tile: 64 columns */
#define ALI_DX_PANEL 128 /* columns per task (768 columns: 6 tasks, even over 1, 2, 3 or 6 threads) */
#define ALI_DX_NBLK 64   /* weight rows per L1 block (64 x 512 B) */

typedef struct ali_dx_job {
    float *dx;
    const float *dy; /* [T, N], alpha applied */
    const float *w;
    int T, K, N;
} ali_dx_job;

/* dx[t0 .. t0+tb, c0 .. c0+64) += dy[t0.., n0..n1) · w[n0..n1, c0..c0+64) */
static void ali_dx_tile(const ali_dx_job *j, int t0, int tb, int c0, int n0, int n1)
{
    ali_v16 acc[ALI_DX_TB][ALI_DX_CW];
    const int K = j->K, N = j->N;
    for (int i = 0; i < ALI_DX_TB; i++)
        for (int c = 0; c < ALI_DX_CW; c++)
            acc[i][c] = i < tb ? ali_ld16(j->dx + (size_t)(t0 + i) * K + c0 + 16 * c) : (ali_v16){0};
    for (int n = n0; n < n1; n++) {
        const float *wr = j->w + (size_t)n * K + c0;
        ali_v16 wv[ALI_DX_CW];
        for (int c = 0; c < ALI_DX_CW; c++)
            wv[c] = ali_ld16(wr + 16 * c);
        for (int i = 0; i < ALI_DX_TB; i++) {
            float d = j->dy[(size_t)(t0 + (i < tb ? i : 0)) * N + n];
            for (int c = 0; c < ALI_DX_CW; c++)
                acc[i][c] += d * wv[c];
        }
    }
    for (int i = 0; i < tb; i++)
        for (int c = 0; c < ALI_DX_CW; c++)
            memcpy(j->dx + (size_t)(t0 + i) * K + c0 + 16 * c, &acc[i][c], sizeof(ali_v16));
}

/* Column panel `task` of dx += dy · w (dy scaled already). */
static void ali_dx_panel(const ali_dx_job *j, int task)
{
    int c0 = task * ALI_DX_PANEL, c1 = AL_TILE_MIN(c0 + ALI_DX_PANEL, j->K);
    int cv = c0 + (c1 - c0) / 64 * 64; /* whole 64-column tiles; the rest per element */
    for (int n0 = 0; n0 < j->N; n0 += ALI_DX_NBLK) {
        int n1 = AL_TILE_MIN(n0 + ALI_DX_NBLK, j->N);
        for (int c = c0; c < cv; c += 64)
            for (int t = 0; t < j->T; t += ALI_DX_TB)
                ali_dx_tile(j, t, AL_TILE_MIN(ALI_DX_TB, j->T - t), c, n0, n1);
        for (int t = 0; t < j->T; t++)
            for (int k = cv; k < c1; k++) {
                float s = j->dx[(size_t)t * j->K + k];
                for (int n = n0; n < n1; n++)
                    s += j->dy[(size_t)t * j->N + n] * j->w[(size_t)n * j->K + k];
                j->dx[(size_t)t * j->K + k] = s;
            }
    }
}

static void ali_dx_task(void *ctx, int task) { ali_dx_panel(ctx, task); }

static void ali_tr_matmul_dx(float *dx, const float *dy, const float *w, int T, int K, int N, float alpha,
                             int accumulate)
{
    if (T <= 0 || K <= 0)
        return;
    if (N <= 0) {
        if (!accumulate)
            memset(dx, 0, sizeof(float) * (size_t)T * K);
        return;
    }
    if (T <= ALI_TR_FEW && K >= 64) {
        /* dy scaled by alpha in this thread's scratch (slot 2: free while the trainer runs) */
        float *dys = ali_cpu_scratch(2, (size_t)T * N);
        for (size_t i = 0; i < (size_t)T * N; i++)
            dys[i] = alpha * dy[i];
        if (!accumulate)
            memset(dx, 0, sizeof(float) * (size_t)T * K);
        ali_dx_job j = {.dx = dx, .dy = dys, .w = w, .T = T, .K = K, .N = N};
        ali_par_run((K + ALI_DX_PANEL - 1) / ALI_DX_PANEL, ali_dx_task, &j);
        return;
    }
    if (ali_cpu_gemm_dx_n(dx, T, K, 1, &dy, &w, &N, &alpha, accumulate))
        return;
    ali_tr_mm j = {.y = dx, .x = dy, .w = w, .T = T, .K = K, .N = N, .nb = ali_tr_col_tile(K), .alpha = alpha,
                   .beta = accumulate ? 1.0f : 0.0f};
    ali_par_run((K + j.nb - 1) / j.nb, ali_tr_mm_dx_task, &j);
}

/* ---- fused products: several weights with one input (forward: q / k / v, gate / up and the
 * adapters' A), or several (dy, w) pairs summed into one dx (backward): one fork-join, every output
 * element computed exactly as by the single-weight op (the same tiles and partitions per weight,
 * the same order of additions into dx), so the results are bitwise those of the separate calls ---- */
#define ALI_TR_MAXP 8

typedef struct ali_tr_multi {
    int n, T, K, accumulate, nt; /* nt: dx columns per tile (many rows) */
    float *y[ALI_TR_MAXP];       /* forward outputs [T, N[p]] */
    float *dx;                   /* backward output [T, K] */
    const float *x;              /* forward input [T, K] */
    const float *dy[ALI_TR_MAXP];/* backward inputs [T, N[p]] (few rows: scaled by alpha already) */
    const float *w[ALI_TR_MAXP]; /* [N[p], K] */
    int N[ALI_TR_MAXP], tile[ALI_TR_MAXP], t0[ALI_TR_MAXP + 1]; /* tile: weight rows per task; t0: first task */
    float alpha[ALI_TR_MAXP];
} ali_tr_multi;

static int ali_tr_multi_part(const ali_tr_multi *m, int task)
{
    int p = 0;
    while (task >= m->t0[p + 1])
        p++;
    return p;
}

static void ali_tr_fwd_few_task(void *ctx, int task)
{
    const ali_tr_multi *m = ctx;
    int p = ali_tr_multi_part(m, task), n0 = (task - m->t0[p]) * m->tile[p];
    ali_small_job j = {.y = m->y[p], .x = m->x, .xl = m->x, .w = m->w[p], .T = m->T, .K = m->K, .N = m->N[p],
                       .accumulate = m->accumulate, .rows_per_task = m->tile[p]};
    ali_small_rows_tr(&j, n0, AL_TILE_MIN(n0 + m->tile[p], m->N[p]));
}

static void ali_tr_fwd_many_task(void *ctx, int task)
{
    const ali_tr_multi *m = ctx;
    int p = ali_tr_multi_part(m, task), n0 = (task - m->t0[p]) * m->tile[p];
    int nn = AL_TILE_MIN(m->tile[p], m->N[p] - n0);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m->T, nn, m->K, 1.0f, m->x, m->K, m->w[p] + (size_t)n0 * m->K,
                m->K, m->accumulate ? 1.0f : 0.0f, m->y[p] + n0, m->N[p]);
}

/* y[p] [T, N[p]] = x [T, K] · w[p] [N[p], K]^T (+ y[p] if accumulate) for p < n (<= 8) */
static void ali_tr_matmul_fwd_n(const float *x, int T, int K, int n, float *const *y, const float *const *w,
                                const int *N, int accumulate)
{
    ali_tr_multi m = {.n = 0, .T = T, .K = K, .accumulate = accumulate, .x = x};
    if (T <= 0 || n <= 0)
        return;
    assert(n <= ALI_TR_MAXP);
    if (T > ALI_TR_FEW && K > 0 && ali_cpu_gemm_n(x, T, K, n, y, w, N, accumulate))
        return; /* many rows: the GEMM, x packed once for all n products */
    for (int p = 0; p < n; p++) {
        if (N[p] <= 0)
            continue;
        if (K <= 0) {
            if (!accumulate)
                memset(y[p], 0, sizeof(float) * (size_t)T * N[p]);
            continue;
        }
        int q = m.n++;
        m.y[q] = y[p], m.w[q] = w[p], m.N[q] = N[p];
        m.tile[q] = T <= ALI_TR_FEW ? ali_small_rows_per_task(N[p]) : ali_tr_col_tile(N[p]);
        m.t0[q + 1] = m.t0[q] + (N[p] + m.tile[q] - 1) / m.tile[q];
    }
    if (m.n > 0)
        ali_par_run(m.t0[m.n], T <= ALI_TR_FEW ? ali_tr_fwd_few_task : ali_tr_fwd_many_task, &m);
}

static void ali_tr_dx_few_task(void *ctx, int task)
{
    const ali_tr_multi *m = ctx;
    for (int p = 0; p < m->n; p++) {
        ali_dx_job j = {.dx = m->dx, .dy = m->dy[p], .w = m->w[p], .T = m->T, .K = m->K, .N = m->N[p]};
        ali_dx_panel(&j, task);
    }
}

static void ali_tr_dx_many_task(void *ctx, int b)
{
    const ali_tr_multi *m = ctx;
    int k0 = b * m->nt, kb = AL_TILE_MIN(m->nt, m->K - k0);
    for (int p = 0; p < m->n; p++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m->T, kb, m->N[p], m->alpha[p], m->dy[p], m->N[p],
                    m->w[p] + k0, m->K, p == 0 && !m->accumulate ? 0.0f : 1.0f, m->dx + k0, m->K);
}

/* dx [T, K] = sum over p < n (<= 8) of alpha[p] dy[p] [T, N[p]] · w[p] [N[p], K] (+ dx if accumulate) */
static void ali_tr_matmul_dx_n(float *dx, int T, int K, int n, const float *const *dy, const float *const *w,
                               const int *N, const float *alpha, int accumulate)
{
    ali_tr_multi m = {.n = 0, .T = T, .K = K, .accumulate = accumulate, .dx = dx};
    if (T <= 0 || K <= 0)
        return;
    assert(n <= ALI_TR_MAXP);
    size_t tot = 0;
    for (int p = 0; p < n; p++) {
        if (N[p] <= 0)
            continue;
        int q = m.n++;
        m.dy[q] = dy[p], m.w[q] = w[p], m.N[q] = N[p], m.alpha[q] = alpha[p];
        tot += (size_t)T * N[p];
    }
    if (m.n == 0) {
        if (!accumulate)
            memset(dx, 0, sizeof(float) * (size_t)T * K);
        return;
    }
    if (T <= ALI_TR_FEW && K >= 64) {
        /* the dy scaled by alpha in this thread's scratch (slot 2: free while the trainer runs) */
        float *dys = ali_cpu_scratch(2, tot);
        for (int p = 0; p < m.n; p++) {
            for (size_t i = 0; i < (size_t)T * m.N[p]; i++)
                dys[i] = m.alpha[p] * m.dy[p][i];
            m.dy[p] = dys;
            dys += (size_t)T * m.N[p];
        }
        if (!accumulate)
            memset(dx, 0, sizeof(float) * (size_t)T * K);
        ali_par_run((K + ALI_DX_PANEL - 1) / ALI_DX_PANEL, ali_tr_dx_few_task, &m);
        return;
    }
    if (ali_cpu_gemm_dx_n(dx, T, K, m.n, m.dy, m.w, m.N, m.alpha, accumulate))
        return; /* many rows: the GEMM */
    m.nt = ali_tr_col_tile(K);
    ali_par_run((K + m.nt - 1) / m.nt, ali_tr_dx_many_task, &m);
}

static void ali_tr_matmul_dw(float *dw, const float *dy, const float *x, int T, int K, int N, float alpha,
                             int accumulate)
{
    if (N <= 0 || K <= 0)
        return;
    if (T <= 0) {
        if (!accumulate)
            memset(dw, 0, sizeof(float) * (size_t)N * K);
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, K, T, alpha, dy, N, x, K, accumulate ? 1.0f : 0.0f,
                dw, K);
}

/* out_i = x_i r w_i, r = (mean x^2 + eps)^-1/2:  dx_i = r w_i dy_i - x_i r^3 / H * sum_j dy_j w_j x_j */
static void ali_tr_rmsnorm_bwd(float *dx, const float *dy, const float *x, const float *w, int T, int H, float eps)
{
    for (int t = 0; t < T; t++) {
        const float *xr = x + (size_t)t * H, *gr = dy + (size_t)t * H;
        float *d = dx + (size_t)t * H;
        double ss = 0, dot = 0;
        for (int i = 0; i < H; i++) {
            ss += (double)xr[i] * xr[i];
            dot += (double)gr[i] * w[i] * xr[i];
        }
        double r = 1.0 / sqrt(ss / H + eps);
        double c = dot * r * r * r / H;
        for (int i = 0; i < H; i++)
            d[i] += (float)(r * w[i] * gr[i] - xr[i] * c);
    }
}

/* forward: y1 = x1 c - x2 s, y2 = x2 c + x1 s; transpose: dx1 = dy1 c + dy2 s, dx2 = dy2 c - dy1 s */
static void ali_tr_rope_bwd(float *dx, const float *cs, int T, int n_heads, int head_dim)
{
    int half = head_dim / 2;
    for (int t = 0; t < T; t++) {
        const float *c = cs + (size_t)t * head_dim, *s = c + half;
        for (int h = 0; h < n_heads; h++) {
            float *d = dx + ((size_t)t * n_heads + h) * head_dim;
            for (int i = 0; i < half; i++) {
                float d1 = d[i], d2 = d[i + half];
                d[i] = d1 * c[i] + d2 * s[i];
                d[i + half] = d2 * c[i] - d1 * s[i];
            }
        }
    }
}

static void ali_tr_swiglu_bwd(float *dgate, float *dup, const float *dout, const float *gate, const float *up, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float g = gate[i], sg = 1.0f / (1.0f + ali_expf(-g)), d = dout[i];
        float du = d * g * sg;
        dgate[i] = d * up[i] * sg * (1.0f + g * (1.0f - sg));
        dup[i] = du;
    }
}

/* ---- causal attention of several sequences over one constant prefix (the trainer's examples that
 * share a conversation, stacked): sequence e is rows [r_e, r_e + T_e) of q / out / ks / vs, its
 * query i at position np + i attends over the prefix kp, vp [np] and its own keys rows r_e .. r_e+i ---- */
typedef struct ali_tr_att {
    float *out, *dq, *dk, *dv;
    const float *dout, *q, *kp, *vp, *ks, *vs;
    const int32_t *seg; /* [n_seg] rows of each sequence */
    int np, n_seg, nh, nkv, hd;
    float scale;
} ali_tr_att;

/* Forward: one task per (query head, chunk of ALI_ATT_BQ stacked query rows): the chunk's scores
 * against the prefix in one sgemm (every sequence's rows together: the prefix's keys packed once
 * per chunk), against each sequence's own keys up to the chunk's last row of it in one per
 * sequence; the causal softmax; out = P V the same way. Single-threaded sgemms, the scores in the
 * thread's scratch. */
#define ALI_ATT_BQ 64

/* The part of the stacked rows [ra, rb) in sequence e (rows [r0, r0 + seg[e])): rows [*i0, *i1) of
 * the sequence, 0 when none. */
static int ali_tr_att_part(const ali_tr_att *a, int e, size_t r0, size_t ra, size_t rb, int *i0, int *i1)
{
    size_t r1 = r0 + (size_t)a->seg[e];
    size_t lo = ra > r0 ? ra : r0, hi = rb < r1 ? rb : r1;
    if (lo >= hi)
        return 0;
    *i0 = (int)(lo - r0), *i1 = (int)(hi - r0);
    return 1;
}

/* The longest own-key run any row of the stacked rows [ra, rb) sees (the score row length past the prefix). */
static int ali_tr_att_own_max(const ali_tr_att *a, size_t ra, size_t rb)
{
    int own = 0, i0, i1;
    size_t r0 = 0;
    for (int e = 0; e < a->n_seg && r0 < rb; r0 += (size_t)a->seg[e++])
        if (ali_tr_att_part(a, e, r0, ra, rb, &i0, &i1) && i1 > own)
            own = i1;
    return own;
}

static void ali_tr_att_fwd_task(void *ctx, int task)
{
    const ali_tr_att *a = ctx;
    int h = task % a->nh, chunk = task / a->nh, hd = a->hd, np = a->np;
    int qd = a->nh * hd, kvd = a->nkv * hd, kh = h / (a->nh / a->nkv);
    size_t R = 0;
    for (int e = 0; e < a->n_seg; e++)
        R += (size_t)a->seg[e];
    size_t ra = (size_t)chunk * ALI_ATT_BQ, rb = ra + ALI_ATT_BQ < R ? ra + ALI_ATT_BQ : R;
    int m = (int)(rb - ra), L = np + ali_tr_att_own_max(a, ra, rb), i0, i1;
    float *P = ali_cpu_scratch(0, (size_t)m * L); /* [m, L]: prefix scores, then the own keys' */
    const float *Q = a->q + ra * qd + (size_t)h * hd;
    float *out = a->out + ra * qd + (size_t)h * hd;
    if (np > 0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, np, hd, a->scale, Q, qd, a->kp + (size_t)kh * hd, kvd,
                    0.0f, P, L);
    size_t r0 = 0;
    for (int e = 0; e < a->n_seg && r0 < rb; r0 += (size_t)a->seg[e++]) {
        if (!ali_tr_att_part(a, e, r0, ra, rb, &i0, &i1))
            continue;
        size_t pr = r0 + (size_t)i0 - ra; /* the part's first row in P */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, i1 - i0, i1, hd, a->scale, Q + pr * qd, qd,
                    a->ks + r0 * kvd + (size_t)kh * hd, kvd, 0.0f, P + pr * L + np, L);
        for (int i = i0; i < i1; i++)
            ali_softmax_row(P + (pr + (size_t)(i - i0)) * L, np + i + 1, L);
    }
    if (np > 0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, hd, np, 1.0f, P, L, a->vp + (size_t)kh * hd, kvd,
                    0.0f, out, qd);
    r0 = 0;
    for (int e = 0; e < a->n_seg && r0 < rb; r0 += (size_t)a->seg[e++]) {
        if (!ali_tr_att_part(a, e, r0, ra, rb, &i0, &i1))
            continue;
        size_t pr = r0 + (size_t)i0 - ra;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, i1 - i0, hd, i1, 1.0f, P + pr * L + np, L,
                    a->vs + r0 * kvd + (size_t)kh * hd, kvd, np > 0 ? 1.0f : 0.0f, out + pr * qd, qd);
    }
}

static void ali_tr_attention_shared(float *out, const float *q, const float *kp, const float *vp, int np,
                                    const float *ks, const float *vs, const int32_t *seg, int n_seg, int nh, int nkv,
                                    int hd, float scale)
{
    ali_tr_att a = {.out = out, .q = q, .kp = kp, .vp = vp, .ks = ks, .vs = vs, .seg = seg, .np = np,
                    .n_seg = n_seg, .nh = nh, .nkv = nkv, .hd = hd, .scale = scale};
    size_t R = 0;
    for (int e = 0; e < n_seg; e++)
        R += (size_t)seg[e];
    if (R > 0)
        ali_par_run(nh * (int)((R + ALI_ATT_BQ - 1) / ALI_ATT_BQ), ali_tr_att_fwd_task, &a);
}

/* Backward: one task per KV head (it owns that head's columns of dk / dv and its query heads' dq),
 * every stacked row at once; per query head, with P the forward's probabilities (recomputed) and
 * dP = dO V^T:
 *   dS = P * (dP - rowsum(P * dP)) * scale,  dQ = dS K,  dK_own = dS_own^T Q,  dV_own = P_own^T dO
 * (the prefix's keys are constants). The products against the prefix run once for all the rows, the
 * rest per sequence; single-threaded sgemms. */
static void ali_tr_att_bwd_task(void *ctx, int kh)
{
    const ali_tr_att *a = ctx;
    int qd = a->nh * a->hd, kvd = a->nkv * a->hd, grp = a->nh / a->nkv, hd = a->hd, np = a->np, own = 0;
    size_t R = 0;
    for (int e = 0; e < a->n_seg; e++) {
        R += (size_t)a->seg[e];
        own = a->seg[e] > own ? a->seg[e] : own;
    }
    int L = np + own;
    float *P = ali_cpu_scratch(0, R * L), *dP = ali_cpu_scratch(1, R * L); /* [R, L] */
    const float *Kp = a->kp + (size_t)kh * hd, *Vp = a->vp + (size_t)kh * hd; /* rows of stride kvd */
    for (int g = 0; g < grp; g++) {
        int h = kh * grp + g;
        const float *Q = a->q + (size_t)h * hd, *dO = a->dout + (size_t)h * hd;
        float *dQ = a->dq + (size_t)h * hd;
        float beta = g ? 1.0f : 0.0f;
        if (np > 0) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)R, np, hd, a->scale, Q, qd, Kp, kvd, 0.0f, P, L);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)R, np, hd, 1.0f, dO, qd, Vp, kvd, 0.0f, dP, L);
        }
        size_t r0 = 0;
        for (int e = 0; e < a->n_seg; r0 += (size_t)a->seg[e++]) {
            int T = a->seg[e];
            if (T <= 0)
                continue;
            const float *Ks = a->ks + r0 * kvd + (size_t)kh * hd, *Vs = a->vs + r0 * kvd + (size_t)kh * hd;
            float *Pe = P + r0 * L, *dPe = dP + r0 * L;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, a->scale, Q + r0 * qd, qd, Ks, kvd, 0.0f,
                        Pe + np, L);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, 1.0f, dO + r0 * qd, qd, Vs, kvd, 0.0f,
                        dPe + np, L);
            for (int i = 0; i < T; i++) {
                float *pr = Pe + (size_t)i * L, *dr = dPe + (size_t)i * L, D = 0.0f;
                int n = np + i + 1;
                ali_softmax_row(pr, n, L);
                for (int j = 0; j < n; j++)
                    D += pr[j] * dr[j];
                for (int j = 0; j < n; j++)
                    dr[j] = pr[j] * (dr[j] - D) * a->scale;
                for (int j = n; j < L; j++)
                    dr[j] = 0.0f;
            }
        }
        if (np > 0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)R, hd, np, 1.0f, dP, L, Kp, kvd, 0.0f, dQ, qd);
        r0 = 0;
        for (int e = 0; e < a->n_seg; r0 += (size_t)a->seg[e++]) {
            int T = a->seg[e];
            if (T <= 0)
                continue;
            const float *Ks = a->ks + r0 * kvd + (size_t)kh * hd;
            float *dK = a->dk + r0 * kvd + (size_t)kh * hd, *dV = a->dv + r0 * kvd + (size_t)kh * hd;
            const float *dPe = dP + r0 * L + np, *Pe = P + r0 * L + np;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, 1.0f, dPe, L, Ks, kvd,
                        np > 0 ? 1.0f : 0.0f, dQ + r0 * qd, qd);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hd, T, 1.0f, dPe, L, Q + r0 * qd, qd, beta, dK,
                        kvd);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hd, T, 1.0f, Pe, L, dO + r0 * qd, qd, beta, dV,
                        kvd);
        }
    }
}

static void ali_tr_attention_shared_bwd(float *dq, float *dk, float *dv, const float *dout, const float *q,
                                        const float *kp, const float *vp, int np, const float *ks, const float *vs,
                                        const int32_t *seg, int n_seg, int nh, int nkv, int hd, float scale)
{
    ali_tr_att a = {.dq = dq, .dk = dk, .dv = dv, .dout = dout, .q = q, .kp = kp, .vp = vp, .ks = ks, .vs = vs,
                    .seg = seg, .np = np, .n_seg = n_seg, .nh = nh, .nkv = nkv, .hd = hd, .scale = scale};
    size_t R = 0;
    for (int e = 0; e < n_seg; e++)
        R += (size_t)seg[e];
    if (R > 0)
        ali_par_run(nkv, ali_tr_att_bwd_task, &a);
}

/* Contiguous K/V (positions 0 .. p0+Tq-1): one sequence whose first p0 positions are the prefix. */
static void ali_tr_attention_ctg(float *out, const float *q, const float *k, const float *v, int p0, int Tq, int nh,
                                 int nkv, int hd, float scale)
{
    size_t kvd = (size_t)nkv * hd;
    int32_t seg = Tq;
    if (Tq > 0)
        ali_tr_attention_shared(out, q, k, v, p0, k + (size_t)p0 * kvd, v + (size_t)p0 * kvd, &seg, 1, nh, nkv, hd,
                                scale);
}

static void ali_tr_attention_ctg_bwd(float *dq, float *dk, float *dv, const float *dout, const float *q,
                                     const float *k, const float *v, int p0, int Tq, int nh, int nkv, int hd,
                                     float scale)
{
    size_t kvd = (size_t)nkv * hd;
    int32_t seg = Tq;
    if (Tq > 0)
        ali_tr_attention_shared_bwd(dq, dk, dv, dout, q, k, v, p0, k + (size_t)p0 * kvd, v + (size_t)p0 * kvd, &seg,
                                    1, nh, nkv, hd, scale);
}

static void ali_tr_cross_entropy(float *dlogits, float *nll, const float *logits, const int32_t *target, int n, int V,
                                 float gscale)
{
    for (int i = 0; i < n; i++) {
        const float *l = logits + (size_t)i * V;
        float *d = dlogits + (size_t)i * V;
        float m = -INFINITY;
        for (int j = 0; j < V; j++)
            m = fmaxf(m, l[j]);
        double sum = 0;
        for (int j = 0; j < V; j++)
            sum += exp((double)l[j] - m);
        double lse = m + log(sum);
        float tl = l[target[i]];
        nll[i] = (float)(lse - tl);
        for (int j = 0; j < V; j++)
            d[j] = (float)exp((double)l[j] - lse) * gscale;
        d[target[i]] -= gscale;
    }
}

void ali_cpu_train_ops(al_ops *o)
{
    o->matmul_fwd = ali_tr_matmul_fwd;
    o->matmul_dx = ali_tr_matmul_dx;
    o->matmul_dw = ali_tr_matmul_dw;
    o->rmsnorm_bwd = ali_tr_rmsnorm_bwd;
    o->rope_bwd = ali_tr_rope_bwd;
    o->swiglu_bwd = ali_tr_swiglu_bwd;
    o->attention_ctg = ali_tr_attention_ctg;
    o->attention_ctg_bwd = ali_tr_attention_ctg_bwd;
    o->attention_shared = ali_tr_attention_shared;
    o->attention_shared_bwd = ali_tr_attention_shared_bwd;
    o->matmul_fwd_n = ali_tr_matmul_fwd_n;
    o->matmul_dx_n = ali_tr_matmul_dx_n;
    o->cross_entropy = ali_tr_cross_entropy;
}
