/* train_ops.c: the CPU twins of the training (backward) ops: the trainer's forward matmul, the
 * matmul transposes, RMSNorm, RoPE, SwiGLU, causal attention over a constant prefix (one or several
 * stacked sequences) and its backward, cross-entropy. Compiled once per ISA variant like the other kernels (ALI_CPU_ISA_SFX). */
#include <cblas.h>
#include <float.h>
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
 * x is cache-resident, the weights stream from memory once in all). Tiles of ~192 rows or more, a
 * multiple of 16, an even number of them when more than one (two threads stay busy). Transposed
 * product: sgemm per block of ~128 rows of dy (each block packs the weights: under 1% of its
 * product). Each tile or block is one single-threaded sgemm; the partitions depend on the shapes
 * alone (OpenBLAS's result depends on the call's shape), so results are the same at any thread
 * count. */
static int ali_tr_col_tile(int N)
{
    int nt = N / 192;
    nt = nt > 1 ? nt / 2 * 2 : 1;
    int w = (N + nt - 1) / nt;
    return (w + 15) / 16 * 16;
}

static int ali_tr_row_blocks(int T)
{
    int nb = (T + 127) / 128;
    return nb > 1 ? (nb + 1) / 2 * 2 : 1;
}

typedef struct ali_tr_mm {
    float *y;
    const float *x, *w;
    int T, K, N, nb; /* nb: forward: weight rows per tile; transpose: blocks of dy rows */
    float alpha, beta;
} ali_tr_mm;

static void ali_tr_mm_cols_task(void *ctx, int b)
{
    const ali_tr_mm *j = ctx;
    int n0 = b * j->nb, nn = AL_TILE_MIN(j->nb, j->N - n0);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->T, nn, j->K, 1.0f, j->x, j->K, j->w + (size_t)n0 * j->K,
                j->K, j->beta, j->y + n0, j->N);
}

static void ali_tr_mm_rows_task(void *ctx, int b)
{
    const ali_tr_mm *j = ctx;
    int r0 = (int)((int64_t)j->T * b / j->nb), r1 = (int)((int64_t)j->T * (b + 1) / j->nb);
    if (r1 > r0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r1 - r0, j->K, j->N, j->alpha,
                    j->x + (size_t)r0 * j->N, j->N, j->w, j->K, j->beta, j->y + (size_t)r0 * j->K, j->K);
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

static void ali_dx_task(void *ctx, int task)
{
    const ali_dx_job *j = ctx;
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
    ali_tr_mm j = {.y = dx, .x = dy, .w = w, .T = T, .K = K, .N = N, .nb = ali_tr_row_blocks(T), .alpha = alpha,
                   .beta = accumulate ? 1.0f : 0.0f};
    ali_par_run(j.nb, ali_tr_mm_rows_task, &j);
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
        float g = gate[i], sg = 1.0f / (1.0f + expf(-g)), d = dout[i];
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

/* Forward: one task per (query head, block of ALI_ATT_BQ query rows of one sequence): scores =
 * scale Q K^T over the prefix and the sequence's keys up to the block's last row, the causal mask
 * and softmax, out = P V; single-threaded sgemms (prefix part, own part), the scores in the thread's
 * scratch. */
#define ALI_ATT_BQ 64

/* One row of causal attention probabilities in place: softmax over pr[0 .. n-1], zeros in pr[n .. L-1]. */
static void ali_tr_softmax_causal(float *pr, int n, int L)
{
    float m = -FLT_MAX, sum = 0.0f;
    for (int j = 0; j < n; j++)
        m = pr[j] > m ? pr[j] : m;
    for (int j = 0; j < n; j++)
        pr[j] = ali_expf(pr[j] - m);
    for (int j = 0; j < n; j++)
        sum += pr[j];
    float inv = 1.0f / sum;
    for (int j = 0; j < n; j++)
        pr[j] *= inv;
    for (int j = n; j < L; j++)
        pr[j] = 0.0f;
}

/* P [m, L] = scale * Q [m, hd] · (kp [np] then ks [L - np])^T, rows of stride qd / kvd */
static void ali_tr_att_scores(float *P, const float *Q, const float *kp, const float *ks, int m, int np, int L,
                              int hd, int qd, int kvd, float scale)
{
    if (np > 0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, np, hd, scale, Q, qd, kp, kvd, 0.0f, P, L);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, L - np, hd, scale, Q, qd, ks, kvd, 0.0f, P + np, L);
}

static void ali_tr_att_fwd_task(void *ctx, int task)
{
    const ali_tr_att *a = ctx;
    int h = task % a->nh, blk = task / a->nh, e = 0, nb;
    size_t r0 = 0; /* the sequence's first row */
    while (blk >= (nb = (a->seg[e] + ALI_ATT_BQ - 1) / ALI_ATT_BQ)) {
        blk -= nb;
        r0 += (size_t)a->seg[e++];
    }
    int i0 = blk * ALI_ATT_BQ, bq = AL_TILE_MIN(ALI_ATT_BQ, a->seg[e] - i0), own = i0 + bq;
    int np = a->np, L = np + own, qd = a->nh * a->hd, kvd = a->nkv * a->hd, kh = h / (a->nh / a->nkv);
    size_t row = r0 + (size_t)i0;
    const float *ks = a->ks + r0 * kvd + (size_t)kh * a->hd; /* the sequence's own keys */
    const float *vs = a->vs + r0 * kvd + (size_t)kh * a->hd;
    float *P = ali_cpu_scratch(0, (size_t)bq * L); /* [bq, L] */
    float *out = a->out + row * qd + (size_t)h * a->hd;
    ali_tr_att_scores(P, a->q + row * qd + (size_t)h * a->hd, a->kp + (size_t)kh * a->hd, ks, bq, np, L, a->hd, qd,
                      kvd, a->scale);
    for (int i = 0; i < bq; i++)
        ali_tr_softmax_causal(P + (size_t)i * L, np + i0 + i + 1, L);
    if (np > 0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, bq, a->hd, np, 1.0f, P, L, a->vp + (size_t)kh * a->hd,
                    kvd, 0.0f, out, qd);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, bq, a->hd, own, 1.0f, P + np, L, vs, kvd,
                np > 0 ? 1.0f : 0.0f, out, qd);
}

static void ali_tr_attention_shared(float *out, const float *q, const float *kp, const float *vp, int np,
                                    const float *ks, const float *vs, const int32_t *seg, int n_seg, int nh, int nkv,
                                    int hd, float scale)
{
    ali_tr_att a = {.out = out, .q = q, .kp = kp, .vp = vp, .ks = ks, .vs = vs, .seg = seg, .np = np,
                    .n_seg = n_seg, .nh = nh, .nkv = nkv, .hd = hd, .scale = scale};
    int blocks = 0;
    for (int e = 0; e < n_seg; e++)
        blocks += (seg[e] + ALI_ATT_BQ - 1) / ALI_ATT_BQ;
    if (blocks > 0)
        ali_par_run(nh * blocks, ali_tr_att_fwd_task, &a);
}

/* Backward: one task per (sequence, KV head): it owns that head's columns of the sequence's dk / dv
 * and its query heads' dq; per query head, with P the forward's probabilities (recomputed) and
 * dP = dO V^T:
 *   dS = P * (dP - rowsum(P * dP)) * scale,  dQ = dS K,  dK_own = dS_own^T Q,  dV_own = P_own^T dO
 * (the prefix's keys are constants), each product single-threaded sgemms. */
static void ali_tr_att_bwd_task(void *ctx, int task)
{
    const ali_tr_att *a = ctx;
    int kh = task % a->nkv, e = task / a->nkv;
    int qd = a->nh * a->hd, kvd = a->nkv * a->hd, grp = a->nh / a->nkv, hd = a->hd, np = a->np;
    int Tq = a->seg[e], L = np + Tq;
    if (Tq <= 0)
        return;
    size_t r0 = 0;
    for (int i = 0; i < e; i++)
        r0 += (size_t)a->seg[i];
    float *P = ali_cpu_scratch(0, (size_t)Tq * L), *dP = ali_cpu_scratch(1, (size_t)Tq * L); /* [Tq, L] */
    const float *Kp = a->kp + (size_t)kh * hd, *Vp = a->vp + (size_t)kh * hd; /* rows of stride kvd */
    const float *Ks = a->ks + r0 * kvd + (size_t)kh * hd, *Vs = a->vs + r0 * kvd + (size_t)kh * hd;
    float *dK = a->dk + r0 * kvd + (size_t)kh * hd, *dV = a->dv + r0 * kvd + (size_t)kh * hd;
    for (int g = 0; g < grp; g++) {
        int h = kh * grp + g;
        const float *Q = a->q + r0 * qd + (size_t)h * hd, *dO = a->dout + r0 * qd + (size_t)h * hd;
        float *dQ = a->dq + r0 * qd + (size_t)h * hd;
        float beta = g ? 1.0f : 0.0f;
        ali_tr_att_scores(P, Q, Kp, Ks, Tq, np, L, hd, qd, kvd, a->scale);
        ali_tr_att_scores(dP, dO, Vp, Vs, Tq, np, L, hd, qd, kvd, 1.0f);
        for (int i = 0; i < Tq; i++) {
            float *pr = P + (size_t)i * L, *dr = dP + (size_t)i * L, D = 0.0f;
            int n = np + i + 1;
            ali_tr_softmax_causal(pr, n, L);
            for (int j = 0; j < n; j++)
                D += pr[j] * dr[j];
            for (int j = 0; j < n; j++)
                dr[j] = pr[j] * (dr[j] - D) * a->scale;
            for (int j = n; j < L; j++)
                dr[j] = 0.0f;
        }
        if (np > 0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Tq, hd, np, 1.0f, dP, L, Kp, kvd, 0.0f, dQ, qd);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Tq, hd, Tq, 1.0f, dP + np, L, Ks, kvd,
                    np > 0 ? 1.0f : 0.0f, dQ, qd);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Tq, hd, Tq, 1.0f, dP + np, L, Q, qd, beta, dK, kvd);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Tq, hd, Tq, 1.0f, P + np, L, dO, qd, beta, dV, kvd);
    }
}

static void ali_tr_attention_shared_bwd(float *dq, float *dk, float *dv, const float *dout, const float *q,
                                        const float *kp, const float *vp, int np, const float *ks, const float *vs,
                                        const int32_t *seg, int n_seg, int nh, int nkv, int hd, float scale)
{
    ali_tr_att a = {.dq = dq, .dk = dk, .dv = dv, .dout = dout, .q = q, .kp = kp, .vp = vp, .ks = ks, .vs = vs,
                    .seg = seg, .np = np, .n_seg = n_seg, .nh = nh, .nkv = nkv, .hd = hd, .scale = scale};
    if (n_seg > 0)
        ali_par_run(n_seg * nkv, ali_tr_att_bwd_task, &a);
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
    o->cross_entropy = ali_tr_cross_entropy;
}
