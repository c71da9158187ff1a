/* train_ops_test.c: the training (backward) ops against central finite differences of their
 * forward ops, and the forward attention / matmul transposes against naive double loops. */
#include "al_test.h"

#include <math.h>

#include "common/util.h"
#include "kernels/kernels.h"

static void fill(float *x, size_t n, al_rng *r, float scale)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)al_rng_normal(r) * scale;
}

static double dotd(const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

/* |got - want| <= tol * max(1, |want|) */
static void near(double got, double want, double tol, const char *what, size_t i)
{
    if (fabs(got - want) > tol * fmax(1.0, fabs(want))) {
        fprintf(stderr, "%s[%zu]: analytic %.8g, reference %.8g\n", what, i, got, want);
        fail();
    }
}

/* ---- matmul transposes against double loops ---- */
static void test_matmul_dx_dw(void **state)
{
    const al_ops *o = al_ops_cpu();
    al_rng r;
    al_rng_seed(&r, 3);
    int T = 5, K = 19, N = 11;
    float dy[5 * 11], w[11 * 19], x[5 * 19], dx[5 * 19], dw[11 * 19];
    fill(dy, sizeof dy / 4, &r, 1), fill(w, sizeof w / 4, &r, 1), fill(x, sizeof x / 4, &r, 1);
    for (int acc = 0; acc < 2; acc++) {
        for (size_t i = 0; i < sizeof dx / 4; i++)
            dx[i] = 0.5f;
        for (size_t i = 0; i < sizeof dw / 4; i++)
            dw[i] = 0.25f;
        o->matmul_dx(dx, dy, w, T, K, N, 0.7f, acc);
        o->matmul_dw(dw, dy, x, T, K, N, 1.3f, acc);
        for (int t = 0; t < T; t++)
            for (int k = 0; k < K; k++) {
                double s = 0;
                for (int n = 0; n < N; n++)
                    s += (double)dy[t * N + n] * w[n * K + k];
                near(dx[t * K + k], 0.7 * s + (acc ? 0.5 : 0), 1e-5, "matmul_dx", (size_t)(t * K + k));
            }
        for (int n = 0; n < N; n++)
            for (int k = 0; k < K; k++) {
                double s = 0;
                for (int t = 0; t < T; t++)
                    s += (double)dy[t * N + n] * x[t * K + k];
                near(dw[n * K + k], 1.3 * s + (acc ? 0.25 : 0), 1e-5, "matmul_dw", (size_t)(n * K + k));
            }
    }
}

/* The shapes the trainer's products take each path on: few rows (the weights streamed once; the
 * transpose in 128-column panels with a tail) and many rows (sgemm over weight tiles / row blocks): the same as
 * double loops, and bitwise the same on 1 thread and on all cores. */
static void test_matmul_paths(void **state)
{
    const al_ops *o = al_ops_cpu();
    al_rng r;
    al_rng_seed(&r, 11);
    static const int shapes[][3] = {{1, 64, 33},  {11, 200, 70}, {32, 131, 96}, {7, 130, 500},
                                    {33, 200, 70}, {40, 70, 500}, {300, 70, 45}};
    for (size_t si = 0; si < AL_ARRAY_LEN(shapes); si++) {
        int T = shapes[si][0], K = shapes[si][1], N = shapes[si][2];
        float *x = malloc(sizeof(float) * T * K), *w = malloc(sizeof(float) * N * K), *dy = malloc(sizeof(float) * T * N);
        float *y = malloc(sizeof(float) * T * N), *dx = malloc(sizeof(float) * T * K);
        float *y1 = malloc(sizeof(float) * T * N), *dx1 = malloc(sizeof(float) * T * K);
        fill(x, (size_t)T * K, &r, 1), fill(w, (size_t)N * K, &r, 1), fill(dy, (size_t)T * N, &r, 1);
        for (int acc = 0; acc < 2; acc++) {
            for (int th = 1; th >= 0; th--) {
                al_cpu_set_threads(th);
                for (int i = 0; i < T * N; i++)
                    y[i] = 0.5f;
                for (int i = 0; i < T * K; i++)
                    dx[i] = 0.25f;
                o->matmul_fwd(y, x, w, T, K, N, acc);
                o->matmul_dx(dx, dy, w, T, K, N, 0.7f, acc);
                if (th) {
                    memcpy(y1, y, sizeof(float) * T * N);
                    memcpy(dx1, dx, sizeof(float) * T * K);
                    continue;
                }
                if (memcmp(y1, y, sizeof(float) * T * N) || memcmp(dx1, dx, sizeof(float) * T * K)) {
                    fprintf(stderr, "T=%d K=%d N=%d: 1 thread and %d differ\n", T, K, N, al_cpu_threads());
                    fail();
                }
            }
            for (int t = 0; t < T; t++) {
                for (int n = 0; n < N; n++)
                    near(y[t * N + n], dotd(x + (size_t)t * K, w + (size_t)n * K, K) + (acc ? 0.5 : 0), 5e-5,
                         "matmul_fwd", (size_t)(t * N + n));
                for (int k = 0; k < K; k++) {
                    double s = 0;
                    for (int n = 0; n < N; n++)
                        s += (double)dy[t * N + n] * w[(size_t)n * K + k];
                    near(dx[t * K + k], 0.7 * s + (acc ? 0.25 : 0), 5e-5, "matmul_dx", (size_t)(t * K + k));
                }
            }
        }
        free(x), free(w), free(dy), free(y), free(dx), free(y1), free(dx1);
    }
    /* (1 thread = no pool, and one pool size: kernels/cpu/pool.c can hang when it is resized right
     * after starting a helper, which then misses the stop) */
}

/* ---- rmsnorm ---- */
static void test_rmsnorm_bwd(void **state)
{
    const al_ops *o = al_ops_cpu();
    al_rng r;
    al_rng_seed(&r, 4);
    int T = 3, H = 37;
    float x[3 * 37], w[37], dy[3 * 37], dx[3 * 37], out[3 * 37];
    fill(x, sizeof x / 4, &r, 1), fill(w, 37, &r, 1), fill(dy, sizeof dy / 4, &r, 1);
    for (size_t i = 0; i < sizeof dx / 4; i++)
        dx[i] = 0.125f; /* accumulates */
    o->rmsnorm_bwd(dx, dy, x, w, T, H, 1e-5f);
    for (size_t i = 0; i < (size_t)T * H; i++) {
        float keep = x[i], eps = 1e-2f;
        x[i] = keep + eps;
        o->rmsnorm(out, x, w, T, H, 1e-5f);
        double lp = dotd(out, dy, (size_t)T * H);
        x[i] = keep - eps;
        o->rmsnorm(out, x, w, T, H, 1e-5f);
        double lm = dotd(out, dy, (size_t)T * H);
        x[i] = keep;
        near(dx[i] - 0.125, (lp - lm) / (2 * eps), 2e-3, "rmsnorm_bwd", i);
    }
}

/* ---- rope: linear, so the transpose must hold exactly (up to rounding) ---- */
static void test_rope_bwd(void **state)
{
    const al_ops *o = al_ops_cpu();
    al_rng r;
    al_rng_seed(&r, 5);
    int T = 4, nh = 3, hd = 16;
    int32_t pos[4] = {0, 7, 8, 100};
    float inv[8], cs[4 * 16], x[4 * 3 * 16], y[4 * 3 * 16], g[4 * 3 * 16];
    al_rope_inv_freq(inv, hd, 10000.0f, 0, 0, 0, 0, 0);
    al_rope_table(cs, pos, T, hd, inv);
    fill(x, sizeof x / 4, &r, 1), fill(g, sizeof g / 4, &r, 1);
    memcpy(y, x, sizeof x);
    o->rope(y, cs, T, nh, hd);
    double lhs = dotd(y, g, sizeof y / 4); /* <rope(x), g> = <x, rope^T(g)> */
    o->rope_bwd(g, cs, T, nh, hd);
    near(lhs, dotd(x, g, sizeof x / 4), 1e-5, "rope_bwd", 0);
    /* and each column of the transpose by a finite difference */
    fill(g, sizeof g / 4, &r, 1);
    float gt[4 * 3 * 16];
    memcpy(gt, g, sizeof g);
    o->rope_bwd(gt, cs, T, nh, hd);
    for (size_t i = 0; i < sizeof x / 4; i += 7) {
        float keep = x[i];
        x[i] = keep + 1.0f;
        memcpy(y, x, sizeof x);
        o->rope(y, cs, T, nh, hd);
        double lp = dotd(y, g, sizeof y / 4);
        x[i] = keep;
        memcpy(y, x, sizeof x);
        o->rope(y, cs, T, nh, hd);
        near(gt[i], lp - dotd(y, g, sizeof y / 4), 1e-4, "rope_bwd column", i);
    }
}

/* ---- swiglu ---- */
static void test_swiglu_bwd(void **state)
{
    const al_ops *o = al_ops_cpu();
    al_rng r;
    al_rng_seed(&r, 6);
    enum { n = 41 };
    float gate[n], up[n], dout[n], dg[n], du[n], out[n];
    fill(gate, n, &r, 2), fill(up, n, &r, 1), fill(dout, n, &r, 1);
    o->swiglu_bwd(dg, du, dout, gate, up, n);
    for (size_t i = 0; i < n; i++) {
        for (int which = 0; which < 2; which++) {
            float *x = which ? up : gate, keep = x[i], eps = 1e-2f;
            x[i] = keep + eps;
            o->swiglu(out, gate, up, n);
            double lp = dotd(out, dout, n);
            x[i] = keep - eps;
            o->swiglu(out, gate, up, n);
            double lm = dotd(out, dout, n);
            x[i] = keep;
            near(which ? du[i] : dg[i], (lp - lm) / (2 * eps), 2e-3, which ? "swiglu dup" : "swiglu dgate", i);
        }
    }
}

/* ---- attention ---- */
enum { P0 = 5, TQ = 4, NH = 4, NKV = 2, HD = 8, QD = NH * HD, KVD = NKV * HD, NK = P0 + TQ };

static void att_ref(double *out, const float *q, const float *k, const float *v, float scale)
{
    for (int h = 0; h < NH; h++) {
        int kh = h / (NH / NKV);
        for (int i = 0; i < TQ; i++) {
            int n = P0 + i + 1;
            double s[NK], m = -1e300, sum = 0;
            for (int j = 0; j < n; j++) {
                s[j] = 0;
                for (int d = 0; d < HD; d++)
                    s[j] += (double)q[i * QD + h * HD + d] * k[j * KVD + kh * HD + d];
                s[j] *= scale;
                m = fmax(m, s[j]);
            }
            for (int j = 0; j < n; j++)
                sum += (s[j] = exp(s[j] - m));
            for (int d = 0; d < HD; d++) {
                double acc = 0;
                for (int j = 0; j < n; j++)
                    acc += s[j] / sum * v[j * KVD + kh * HD + d];
                out[i * QD + h * HD + d] = acc;
            }
        }
    }
}

static double att_loss(const float *q, const float *k, const float *v, const float *g, float scale)
{
    double out[TQ * QD], l = 0;
    att_ref(out, q, k, v, scale);
    for (int i = 0; i < TQ * QD; i++)
        l += out[i] * g[i];
    return l;
}

static void test_attention_ctg(void **state)
{
    const al_ops *o = al_ops_cpu();
    al_rng r;
    al_rng_seed(&r, 7);
    float q[TQ * QD], k[NK * KVD], v[NK * KVD], g[TQ * QD], out[TQ * QD];
    float dq[TQ * QD], dk[TQ * KVD], dv[TQ * KVD], scale = 0.35f;
    double ref[TQ * QD];
    fill(q, TQ * QD, &r, 1), fill(k, NK * KVD, &r, 1), fill(v, NK * KVD, &r, 1), fill(g, TQ * QD, &r, 1);
    o->attention_ctg(out, q, k, v, P0, TQ, NH, NKV, HD, scale);
    att_ref(ref, q, k, v, scale);
    for (int i = 0; i < TQ * QD; i++)
        near(out[i], ref[i], 1e-5, "attention_ctg", (size_t)i);
    for (int i = 0; i < TQ * KVD; i++)
        dk[i] = dv[i] = 99.0f; /* overwritten */
    o->attention_ctg_bwd(dq, dk, dv, g, q, k, v, P0, TQ, NH, NKV, HD, scale);
    /* finite differences in double (the reference forward), eps small */
    const double eps = 1e-3;
    for (int i = 0; i < TQ * QD; i++) {
        float keep = q[i];
        q[i] = (float)(keep + eps);
        double lp = att_loss(q, k, v, g, scale);
        q[i] = (float)(keep - eps);
        double lm = att_loss(q, k, v, g, scale);
        q[i] = keep;
        near(dq[i], (lp - lm) / (2 * eps), 2e-3, "attention dq", (size_t)i);
    }
    for (int which = 0; which < 2; which++) {
        float *x = which ? v : k, *an = which ? dv : dk;
        for (int i = P0 * KVD; i < NK * KVD; i++) { /* suffix keys only */
            float keep = x[i];
            x[i] = (float)(keep + eps);
            double lp = att_loss(q, k, v, g, scale);
            x[i] = (float)(keep - eps);
            double lm = att_loss(q, k, v, g, scale);
            x[i] = keep;
            near(an[i - P0 * KVD], (lp - lm) / (2 * eps), 2e-3, which ? "attention dv" : "attention dk", (size_t)i);
        }
    }
}

/* many query rows (one block of 37 after 13 keys): the same as a double reference */
static void test_attention_ctg_many_rows(void **state)
{
    const al_ops *o = al_ops_cpu();
    al_rng r;
    al_rng_seed(&r, 9);
    enum { p0 = 13, T = 37, nh = 6, nkv = 2, hd = 16, qd = nh * hd, kvd = nkv * hd, L = p0 + T };
    float *q = malloc(sizeof(float) * T * qd), *k = malloc(sizeof(float) * L * kvd);
    float *v = malloc(sizeof(float) * L * kvd), *out = malloc(sizeof(float) * T * qd);
    fill(q, T * qd, &r, 1), fill(k, L * kvd, &r, 1), fill(v, L * kvd, &r, 1);
    o->attention_ctg(out, q, k, v, p0, T, nh, nkv, hd, 0.25f);
    for (int h = 0; h < nh; h++)
        for (int i = 0; i < T; i++) {
            int kh = h / (nh / nkv), n = p0 + i + 1;
            double s[L], m = -1e300, z = 0;
            for (int j = 0; j < n; j++) {
                s[j] = 0.25 * dotd(q + i * qd + h * hd, k + j * kvd + kh * hd, hd);
                m = fmax(m, s[j]);
            }
            for (int j = 0; j < n; j++)
                z += (s[j] = exp(s[j] - m));
            for (int d = 0; d < hd; d++) {
                double acc = 0;
                for (int j = 0; j < n; j++)
                    acc += s[j] / z * v[j * kvd + kh * hd + d];
                near(out[i * qd + h * hd + d], acc, 1e-5, "attention_ctg (sgemm path)", (size_t)(i * qd + h * hd + d));
            }
        }
    free(q), free(k), free(v), free(out);
}

/* many query rows (two forward blocks of 64, a suffix of 70 after 9 constant keys): the backward
 * against the same gradients in double, straight from their definitions */
static void test_attention_bwd_many_rows(void **state)
{
    const al_ops *o = al_ops_cpu();
    al_rng r;
    al_rng_seed(&r, 10);
    enum { p0 = 9, T = 70, nh = 4, nkv = 2, hd = 16, qd = nh * hd, kvd = nkv * hd, L = p0 + T };
    float *q = malloc(sizeof(float) * T * qd), *k = malloc(sizeof(float) * L * kvd), *v = malloc(sizeof(float) * L * kvd);
    float *g = malloc(sizeof(float) * T * qd), *dq = malloc(sizeof(float) * T * qd);
    float *dk = malloc(sizeof(float) * T * kvd), *dv = malloc(sizeof(float) * T * kvd);
    double *rdk = calloc((size_t)T * kvd, sizeof(double)), *rdv = calloc((size_t)T * kvd, sizeof(double));
    const float sc = 0.3f;
    fill(q, T * qd, &r, 1), fill(k, L * kvd, &r, 1), fill(v, L * kvd, &r, 1), fill(g, T * qd, &r, 1);
    o->attention_ctg_bwd(dq, dk, dv, g, q, k, v, p0, T, nh, nkv, hd, sc);
    for (int h = 0; h < nh; h++)
        for (int i = 0; i < T; i++) {
            int kh = h / (nh / nkv), n = p0 + i + 1;
            const float *qr = q + i * qd + h * hd, *gr = g + i * qd + h * hd;
            double p[L], dp[L], m = -1e300, z = 0, D = 0;
            for (int j = 0; j < n; j++) {
                p[j] = sc * dotd(qr, k + j * kvd + kh * hd, hd);
                m = fmax(m, p[j]);
            }
            for (int j = 0; j < n; j++)
                z += (p[j] = exp(p[j] - m));
            for (int j = 0; j < n; j++) {
                p[j] /= z;
                dp[j] = dotd(gr, v + j * kvd + kh * hd, hd);
                D += p[j] * dp[j];
            }
            for (int d = 0; d < hd; d++) {
                double acc = 0;
                for (int j = 0; j < n; j++)
                    acc += p[j] * (dp[j] - D) * sc * k[j * kvd + kh * hd + d];
                near(dq[i * qd + h * hd + d], acc, 1e-4, "attention dq (many rows)", (size_t)(i * qd + h * hd + d));
            }
            for (int j = p0; j < n; j++)
                for (int d = 0; d < hd; d++) {
                    rdk[(j - p0) * kvd + kh * hd + d] += p[j] * (dp[j] - D) * sc * qr[d];
                    rdv[(j - p0) * kvd + kh * hd + d] += p[j] * gr[d];
                }
        }
    for (int i = 0; i < T * kvd; i++) {
        near(dk[i], rdk[i], 1e-4, "attention dk (many rows)", (size_t)i);
        near(dv[i], rdv[i], 1e-4, "attention dv (many rows)", (size_t)i);
    }
    free(q), free(k), free(v), free(g), free(dq), free(dk), free(dv), free(rdk), free(rdv);
}

/* several sequences over one constant prefix (the trainer's stacked examples): each sequence's
 * output and gradients equal attention_ctg's on its own contiguous keys (the prefix then its own),
 * within f32 rounding (other sgemm shapes); a sequence longer than a forward block (70 rows), one of
 * 1 row; 1 thread = all cores bitwise */
static void test_attention_shared(void **state)
{
    const al_ops *o = al_ops_cpu();
    al_rng r;
    al_rng_seed(&r, 12);
    enum { np = 21, nh = 4, nkv = 2, hd = 16, qd = nh * hd, kvd = nkv * hd, NS = 4 };
    const int32_t seg[NS] = {5, 70, 1, 12};
    int R = 0;
    for (int e = 0; e < NS; e++)
        R += seg[e];
    const float sc = 0.3f;
    float *q = malloc(sizeof(float) * R * qd), *kp = malloc(sizeof(float) * np * kvd), *vp = malloc(sizeof(float) * np * kvd);
    float *ks = malloc(sizeof(float) * R * kvd), *vs = malloc(sizeof(float) * R * kvd), *g = malloc(sizeof(float) * R * qd);
    float *out[2], *dq[2], *dk[2], *dv[2];
    for (int th = 0; th < 2; th++) {
        out[th] = malloc(sizeof(float) * R * qd), dq[th] = malloc(sizeof(float) * R * qd);
        dk[th] = malloc(sizeof(float) * R * kvd), dv[th] = malloc(sizeof(float) * R * kvd);
    }
    fill(q, (size_t)R * qd, &r, 1), fill(kp, np * kvd, &r, 1), fill(vp, np * kvd, &r, 1);
    fill(ks, (size_t)R * kvd, &r, 1), fill(vs, (size_t)R * kvd, &r, 1), fill(g, (size_t)R * qd, &r, 1);
    for (int th = 0; th < 2; th++) {
        al_cpu_set_threads(th ? 0 : 1);
        o->attention_shared(out[th], q, kp, vp, np, ks, vs, seg, NS, nh, nkv, hd, sc);
        o->attention_shared_bwd(dq[th], dk[th], dv[th], g, q, kp, vp, np, ks, vs, seg, NS, nh, nkv, hd, sc);
    }
    al_assert_floats_identical(out[1], out[0], R, qd);
    al_assert_floats_identical(dq[1], dq[0], R, qd);
    al_assert_floats_identical(dk[1], dk[0], R, kvd);
    al_assert_floats_identical(dv[1], dv[0], R, kvd);
    for (int e = 0, r0 = 0; e < NS; r0 += seg[e++]) {
        int T = seg[e], L = np + T;
        float *k = malloc(sizeof(float) * L * kvd), *v = malloc(sizeof(float) * L * kvd);
        float *o1 = malloc(sizeof(float) * T * qd), *dq1 = malloc(sizeof(float) * T * qd);
        float *dk1 = malloc(sizeof(float) * T * kvd), *dv1 = malloc(sizeof(float) * T * kvd);
        memcpy(k, kp, sizeof(float) * np * kvd), memcpy(v, vp, sizeof(float) * np * kvd);
        memcpy(k + np * kvd, ks + (size_t)r0 * kvd, sizeof(float) * T * kvd);
        memcpy(v + np * kvd, vs + (size_t)r0 * kvd, sizeof(float) * T * kvd);
        o->attention_ctg(o1, q + (size_t)r0 * qd, k, v, np, T, nh, nkv, hd, sc);
        o->attention_ctg_bwd(dq1, dk1, dv1, g + (size_t)r0 * qd, q + (size_t)r0 * qd, k, v, np, T, nh, nkv, hd, sc);
        /* both run their score and value products through sgemm, but with other shapes (64 stacked
         * rows vs one sequence's): OpenBLAS picks its kernel and blocking by core type and shape,
         * so the sums of <= 91 terms of O(1) values may round differently (seen with
         * OPENBLAS_CORETYPE=Haswell: 5e-8); 1e-5 of max(1, |x|) is far above that and far below a
         * real error (a wrong mask or prefix length moves values by ~0.1) */
        for (int i = 0; i < T * qd; i++) {
            near(out[0][(size_t)r0 * qd + i], o1[i], 1e-5, "attention_shared out vs attention_ctg", (size_t)i);
            near(dq[0][(size_t)r0 * qd + i], dq1[i], 1e-5, "attention_shared dq vs attention_ctg", (size_t)i);
        }
        for (int i = 0; i < T * kvd; i++) {
            near(dk[0][(size_t)r0 * kvd + i], dk1[i], 1e-5, "attention_shared dk vs attention_ctg", (size_t)i);
            near(dv[0][(size_t)r0 * kvd + i], dv1[i], 1e-5, "attention_shared dv vs attention_ctg", (size_t)i);
        }
        free(k), free(v), free(o1), free(dq1), free(dk1), free(dv1);
    }
    free(q), free(kp), free(vp), free(ks), free(vs), free(g);
    for (int th = 0; th < 2; th++)
        free(out[th]), free(dq[th]), free(dk[th]), free(dv[th]);
}

/* the fused products (several weights, one input; several (dy, w) into one dx) are bitwise the
 * single-weight ops called in turn: few rows and many, a column tail, an empty part */
static void test_matmul_fused(void **state)
{
    const al_ops *o = al_ops_cpu();
    al_rng r;
    al_rng_seed(&r, 13);
    static const int rows[] = {1, 11, 32, 45};
    enum { K = 200, NP = 4 };
    const int N[NP] = {96, 70, 0, 8};
    const float alpha[NP] = {0.5f, 1.0f, 2.0f, -1.5f};
    for (size_t ri = 0; ri < AL_ARRAY_LEN(rows); ri++) {
        int T = rows[ri];
        float *x = malloc(sizeof(float) * T * K), *dx = malloc(sizeof(float) * T * K), *dx1 = malloc(sizeof(float) * T * K);
        float *w[NP], *y[NP], *y1[NP], *dy[NP];
        for (int p = 0; p < NP; p++) {
            w[p] = malloc(sizeof(float) * (N[p] + 1) * K), y[p] = malloc(sizeof(float) * T * (N[p] + 1));
            y1[p] = malloc(sizeof(float) * T * (N[p] + 1)), dy[p] = malloc(sizeof(float) * T * (N[p] + 1));
            fill(w[p], (size_t)N[p] * K, &r, 1), fill(dy[p], (size_t)T * N[p], &r, 1);
            fill(y[p], (size_t)T * N[p], &r, 1);
            memcpy(y1[p], y[p], sizeof(float) * T * N[p]);
        }
        fill(x, (size_t)T * K, &r, 1), fill(dx, (size_t)T * K, &r, 1);
        memcpy(dx1, dx, sizeof(float) * T * K);
        for (int acc = 0; acc < 2; acc++) {
            o->matmul_fwd_n(x, T, K, NP, y, (const float *const *)w, N, acc);
            for (int p = 0; p < NP; p++)
                o->matmul_fwd(y1[p], x, w[p], T, K, N[p], acc);
            for (int p = 0; p < NP; p++)
                al_assert_floats_identical(y[p], y1[p], T, N[p]);
            o->matmul_dx_n(dx, T, K, NP, (const float *const *)dy, (const float *const *)w, N, alpha, acc);
            for (int p = 0; p < NP; p++)
                o->matmul_dx(dx1, dy[p], w[p], T, K, N[p], alpha[p], acc || p > 0);
            al_assert_floats_identical(dx, dx1, T, K);
        }
        for (int p = 0; p < NP; p++)
            free(w[p]), free(y[p]), free(y1[p]), free(dy[p]);
        free(x), free(dx), free(dx1);
    }
}

/* ---- cross-entropy ---- */
static void test_cross_entropy(void **state)
{
    const al_ops *o = al_ops_cpu();
    al_rng r;
    al_rng_seed(&r, 8);
    enum { n = 3, V = 29 };
    float l[n * V], d[n * V], nll[n];
    int32_t tgt[n] = {0, 17, 28};
    fill(l, n * V, &r, 3);
    o->cross_entropy(d, nll, l, tgt, n, V, 0.5f);
    for (int i = 0; i < n; i++) {
        double m = -1e300, s = 0;
        for (int j = 0; j < V; j++)
            m = fmax(m, l[i * V + j]);
        for (int j = 0; j < V; j++)
            s += exp(l[i * V + j] - m);
        double want = m + log(s) - l[i * V + tgt[i]];
        near(nll[i], want, 1e-6, "nll", (size_t)i);
        for (int j = 0; j < V; j++) {
            double p = exp(l[i * V + j] - m) / s;
            near(d[i * V + j], 0.5 * (p - (j == tgt[i])), 1e-6, "dlogits", (size_t)(i * V + j));
        }
    }
    /* in place (dlogits aliasing logits) gives the same */
    float d2[n * V], nll2[n];
    memcpy(d2, l, sizeof l);
    o->cross_entropy(d2, nll2, d2, tgt, n, V, 0.5f);
    for (int i = 0; i < n * V; i++)
        assert_true(d2[i] == d[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul_dx_dw), cmocka_unit_test(test_matmul_paths), cmocka_unit_test(test_rmsnorm_bwd), cmocka_unit_test(test_rope_bwd),
        cmocka_unit_test(test_swiglu_bwd),   cmocka_unit_test(test_attention_ctg), cmocka_unit_test(test_attention_ctg_many_rows),
        cmocka_unit_test(test_attention_bwd_many_rows), cmocka_unit_test(test_attention_shared),
        cmocka_unit_test(test_matmul_fused),
        cmocka_unit_test(test_cross_entropy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
