/* train_ops.c: the CPU twins of the training (backward) ops: matmul transposes, RMSNorm, RoPE,
 * SwiGLU, contiguous causal attention and its backward, cross-entropy. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/train_ops.h"

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
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, K, N, alpha, dy, N, w, K, accumulate ? 1.0f : 0.0f,
                dx, K);
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

typedef struct ali_tr_att {
    float *out, *dq, *dk, *dv;
    const float *dout, *q, *k, *v;
    int p0, Tq, nh, nkv, hd;
    float scale;
} ali_tr_att;

/* p [n] = softmax over keys 0 .. n-1 of scale * q · k_j (kv head kh) */
static void ali_tr_probs(const ali_tr_att *a, const float *qrow, int kh, int n, float *p)
{
    int kvd = a->nkv * a->hd;
    float m = -INFINITY;
    for (int j = 0; j < n; j++) {
        p[j] = a->scale * ali_dot(qrow, a->k + (size_t)j * kvd + (size_t)kh * a->hd, a->hd);
        m = fmaxf(m, p[j]);
    }
    double sum = 0;
    for (int j = 0; j < n; j++) {
        p[j] = expf(p[j] - m);
        sum += p[j];
    }
    float inv = (float)(1.0 / sum);
    for (int j = 0; j < n; j++)
        p[j] *= inv;
}

/* one task per query head */
static void ali_tr_att_fwd_task(void *ctx, int h)
{
    const ali_tr_att *a = ctx;
    int qd = a->nh * a->hd, kvd = a->nkv * a->hd, kh = h / (a->nh / a->nkv);
    float *p = malloc(sizeof(float) * (size_t)(a->p0 + a->Tq));
    if (!p)
        abort(); /* a few KB: out of memory here is a stack overflow */
    for (int i = 0; i < a->Tq; i++) {
        int n = a->p0 + i + 1;
        const float *qrow = a->q + (size_t)i * qd + (size_t)h * a->hd;
        float *o = a->out + (size_t)i * qd + (size_t)h * a->hd;
        ali_tr_probs(a, qrow, kh, n, p);
        memset(o, 0, sizeof(float) * (size_t)a->hd);
        for (int j = 0; j < n; j++) {
            const float *vr = a->v + (size_t)j * kvd + (size_t)kh * a->hd;
            for (int d = 0; d < a->hd; d++)
                o[d] += p[j] * vr[d];
        }
    }
    free(p);
}

/* Many query rows (a prefix, a plain-LoRA sequence): per head two sgemms, scores = scale Q K^T
 * [Tq, p0+Tq] and out = P V, with the causal mask and softmax between them. */
static int ali_tr_att_fwd_blas(float *out, const float *q, const float *k, const float *v, int p0, int Tq, int nh,
                               int nkv, int hd, float scale)
{
    int L = p0 + Tq, qd = nh * hd, kvd = nkv * hd, grp = nh / nkv;
    float *P = ali_aligned_alloc(sizeof(float) * (size_t)Tq * L);
    if (!P)
        return 0; /* the per-row path needs no scratch */
    for (int h = 0; h < nh; h++) {
        int kh = h / grp;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Tq, L, hd, scale, q + (size_t)h * hd, qd,
                    k + (size_t)kh * hd, kvd, 0.0f, P, L);
        for (int i = 0; i < Tq; i++) {
            float *pr = P + (size_t)i * L, m = -INFINITY;
            int n = p0 + i + 1;
            for (int j = 0; j < n; j++)
                m = fmaxf(m, pr[j]);
            double sum = 0;
            for (int j = 0; j < n; j++) {
                pr[j] = expf(pr[j] - m);
                sum += pr[j];
            }
            float inv = (float)(1.0 / sum);
            for (int j = 0; j < n; j++)
                pr[j] *= inv;
            for (int j = n; j < L; j++)
                pr[j] = 0.0f;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Tq, hd, L, 1.0f, P, L, v + (size_t)kh * hd, kvd, 0.0f,
                    out + (size_t)h * hd, qd);
    }
    ali_aligned_free(P);
    return 1;
}

static void ali_tr_attention_ctg(float *out, const float *q, const float *k, const float *v, int p0, int Tq, int nh,
                                 int nkv, int hd, float scale)
{
    ali_tr_att a = {.out = out, .q = q, .k = k, .v = v, .p0 = p0, .Tq = Tq, .nh = nh, .nkv = nkv, .hd = hd,
                    .scale = scale};
    if (Tq >= 16 && ali_tr_att_fwd_blas(out, q, k, v, p0, Tq, nh, nkv, hd, scale))
        return;
    if (Tq > 0)
        ali_par_run(nh, ali_tr_att_fwd_task, &a);
}

/* one task per KV head: it owns that head's columns of dk / dv and its query heads' dq */
static void ali_tr_att_bwd_task(void *ctx, int kh)
{
    const ali_tr_att *a = ctx;
    int qd = a->nh * a->hd, kvd = a->nkv * a->hd, grp = a->nh / a->nkv, L = a->p0 + a->Tq;
    float *p = malloc(sizeof(float) * 2 * (size_t)L);
    if (!p)
        abort();
    float *dp = p + L;
    for (int j = 0; j < a->Tq; j++) {
        memset(a->dk + (size_t)j * kvd + (size_t)kh * a->hd, 0, sizeof(float) * (size_t)a->hd);
        memset(a->dv + (size_t)j * kvd + (size_t)kh * a->hd, 0, sizeof(float) * (size_t)a->hd);
    }
    for (int h = kh * grp; h < (kh + 1) * grp; h++)
        for (int i = 0; i < a->Tq; i++) {
            int n = a->p0 + i + 1;
            const float *qrow = a->q + (size_t)i * qd + (size_t)h * a->hd;
            const float *go = a->dout + (size_t)i * qd + (size_t)h * a->hd;
            float *gq = a->dq + (size_t)i * qd + (size_t)h * a->hd;
            ali_tr_probs(a, qrow, kh, n, p);
            double D = 0;
            for (int j = 0; j < n; j++) {
                dp[j] = ali_dot(go, a->v + (size_t)j * kvd + (size_t)kh * a->hd, a->hd);
                D += (double)p[j] * dp[j];
            }
            memset(gq, 0, sizeof(float) * (size_t)a->hd);
            for (int j = 0; j < n; j++) {
                float ds = p[j] * (dp[j] - (float)D) * a->scale; /* d score_j, scale folded in */
                const float *kr = a->k + (size_t)j * kvd + (size_t)kh * a->hd;
                for (int d = 0; d < a->hd; d++)
                    gq[d] += ds * kr[d];
                if (j >= a->p0) {
                    float *gk = a->dk + (size_t)(j - a->p0) * kvd + (size_t)kh * a->hd;
                    float *gv = a->dv + (size_t)(j - a->p0) * kvd + (size_t)kh * a->hd;
                    for (int d = 0; d < a->hd; d++) {
                        gk[d] += ds * qrow[d];
                        gv[d] += p[j] * go[d];
                    }
                }
            }
        }
    free(p);
}

static void ali_tr_attention_ctg_bwd(float *dq, float *dk, float *dv, const float *dout, const float *q,
                                     const float *k, const float *v, int p0, int Tq, int nh, int nkv, int hd,
                                     float scale)
{
    ali_tr_att a = {.dq = dq, .dk = dk, .dv = dv, .dout = dout, .q = q, .k = k, .v = v, .p0 = p0, .Tq = Tq,
                    .nh = nh, .nkv = nkv, .hd = hd, .scale = scale};
    if (Tq > 0)
        ali_par_run(nkv, ali_tr_att_bwd_task, &a);
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
    o->matmul_dx = ali_tr_matmul_dx;
    o->matmul_dw = ali_tr_matmul_dw;
    o->rmsnorm_bwd = ali_tr_rmsnorm_bwd;
    o->rope_bwd = ali_tr_rope_bwd;
    o->swiglu_bwd = ali_tr_swiglu_bwd;
    o->attention_ctg = ali_tr_attention_ctg;
    o->attention_ctg_bwd = ali_tr_attention_ctg_bwd;
    o->cross_entropy = ali_tr_cross_entropy;
}
