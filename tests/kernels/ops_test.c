/* ops_test.c: CPU ops against naive reference implementations (dense attention, plain loops). */
#include "al_test.h"

#include <math.h>

#include "common/util.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/kernels.h"

static void fill(float *x, size_t n, al_rng *r, float scale)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)al_rng_normal(r) * scale;
}

static float maxdiff(const float *a, const float *b, size_t n)
{
    float m = 0;
    for (size_t i = 0; i < n; i++)
        m = fmaxf(m, fabsf(a[i] - b[i]));
    return m;
}

static void test_rmsnorm_swiglu_embedding(void **state)
{
    const al_ops *ops = al_ops_cpu();
    al_rng r;
    al_rng_seed(&r, 1);
    int T = 3, H = 37;
    float x[3 * 37], w[37], out[3 * 37];
    fill(x, (size_t)T * H, &r, 1.0f);
    fill(w, (size_t)H, &r, 1.0f);
    ops->rmsnorm(out, x, w, T, H, 1e-5f);
    for (int t = 0; t < T; t++) {
        double ss = 0;
        for (int i = 0; i < H; i++)
            ss += (double)x[t * H + i] * x[t * H + i];
        double inv = 1.0 / sqrt(ss / H + 1e-5);
        for (int i = 0; i < H; i++)
            assert_true(fabs(out[t * H + i] - w[i] * x[t * H + i] * inv) < 1e-5);
    }
    float g[5] = {-3, -0.5f, 0, 0.5f, 4}, u[5] = {1, 2, 3, 4, 5}, o[5];
    ops->swiglu(o, g, u, 5);
    for (int i = 0; i < 5; i++)
        assert_true(fabsf(o[i] - g[i] / (1 + expf(-g[i])) * u[i]) < 1e-6f);
    float table[4 * 2] = {0, 1, 2, 3, 4, 5, 6, 7}, emb[3 * 2];
    int32_t ids[3] = {3, 0, 2};
    ops->embedding(emb, table, ids, 3, 2, 2.0f);
    float want[6] = {12, 14, 0, 2, 8, 10};
    al_assert_floats_identical(emb, want, 3, 2);
}

/* The matmul paths (streaming kernel for 1-8 rows with its 16- and 8-row weight tiles and 1-2 row
 * activation tiles, sgemm above) against a double-precision loop: every row count 1..12, K with
 * and without a 16-multiple tail, N not a multiple of any tile, accumulate, 1 and 2 threads (the
 * pool splits N); the threads must not change a single bit. */
static void test_matmul_paths(void **state)
{
    const al_ops *ops = al_ops_cpu();
    al_rng r;
    al_rng_seed(&r, 9);
    static const int Ks[] = {16, 37, 768}, Ns[] = {1, 5, 23, 130, 1000};
    int saved = al_cpu_threads();
    for (size_t ki = 0; ki < AL_ARRAY_LEN(Ks); ki++)
        for (size_t ni = 0; ni < AL_ARRAY_LEN(Ns); ni++) {
            int K = Ks[ki], N = Ns[ni];
            float *x = malloc(sizeof(float) * 12 * K), *w = malloc(sizeof(float) * (size_t)N * K);
            float *y = malloc(sizeof(float) * 12 * N), *y2 = malloc(sizeof(float) * 12 * N);
            fill(x, (size_t)12 * K, &r, 1);
            fill(w, (size_t)N * K, &r, 1);
            for (int T = 1; T <= 12; T++)
                for (int acc = 0; acc < 2; acc++) {
                    for (int i = 0; i < T * N; i++)
                        y[i] = y2[i] = (float)i * 0.25f;
                    al_cpu_set_threads(1);
                    ops->matmul(y, x, w, T, K, N, acc);
                    al_cpu_set_threads(2);
                    ops->matmul(y2, x, w, T, K, N, acc);
                    al_assert_floats_identical(y, y2, T, N);
                    for (int t = 0; t < T; t++)
                        for (int n = 0; n < N; n++) {
                            double s = acc ? (double)(t * N + n) * 0.25 : 0;
                            for (int k = 0; k < K; k++)
                                s += (double)x[t * K + k] * w[(size_t)n * K + k];
                            if (fabs(y[t * N + n] - s) > 1e-4 * (1 + sqrt((double)K)))
                                fail_msg("T %d K %d N %d acc %d: y[%d,%d] = %g, want %g", T, K, N, acc, t, n,
                                         y[t * N + n], s);
                        }
                }
            free(x);
            free(w);
            free(y);
            free(y2);
        }
    al_cpu_set_threads(saved);
}

/* The many-row path (T > 8; on avx512 / avx2 our GEMM of matmul_gemm.h, on sse4.2 sgemm per tile)
 * against a double-precision loop, f32 and bf16 weights: row counts across several row panels with
 * a partial last one, N with partial column panels and tiles, K with odd tails, accumulate; 1, 2
 * and 3 threads bitwise. On our GEMM each output is one FMA chain over k from zero, so a row's
 * result must not depend on where it sits in the call either: the rows of a T = 41 call are
 * recomputed as T = 25 calls at other offsets and must match bit for bit (both at or above
 * ALI_G_MIN_T = 24, where the GEMM takes over from sgemm per tile). */
static void test_gemm_blocks(void **state)
{
    const char *isa = al_cpu_isa();
    int own = !strcmp(isa, "avx512") || !strcmp(isa, "avx2");
    al_rng r;
    al_rng_seed(&r, 21);
    static const int Ts[] = {9, 13, 25, 41}, Ks[] = {1, 37, 300}, Ns[] = {1, 33, 130, 777};
    int saved = al_cpu_threads();
    for (int bf = 0; bf < 2; bf++) {
        const al_ops *ops = bf ? al_ops_cpu_bf16() : al_ops_cpu();
        for (size_t ki = 0; ki < AL_ARRAY_LEN(Ks); ki++)
            for (size_t ni = 0; ni < AL_ARRAY_LEN(Ns); ni++) {
                int K = Ks[ki], N = Ns[ni];
                float *x = malloc(sizeof(float) * 41 * K), *w = malloc(sizeof(float) * (size_t)N * K);
                float *y[3], *part = malloc(sizeof(float) * 25 * N);
                for (int i = 0; i < 3; i++)
                    y[i] = malloc(sizeof(float) * 41 * N);
                fill(x, (size_t)41 * K, &r, 1);
                fill(w, (size_t)N * K, &r, 1);
                void *wd = ops->weight_upload(w, (size_t)N * K, 1);
                assert_non_null(wd);
                if (bf)
                    for (size_t i = 0; i < (size_t)N * K; i++)
                        w[i] = ali_bf16_to_f32(ali_f32_to_bf16(w[i]));
                for (size_t ti = 0; ti < AL_ARRAY_LEN(Ts); ti++)
                    for (int acc = 0; acc < 2; acc++) {
                        int T = Ts[ti];
                        for (int th = 0; th < 3; th++) {
                            for (int i = 0; i < T * N; i++)
                                y[th][i] = (float)(i % 17) * 0.25f;
                            al_cpu_set_threads(th + 1);
                            ops->matmul(y[th], x, wd, T, K, N, acc);
                        }
                        al_assert_floats_identical(y[0], y[1], T, N);
                        al_assert_floats_identical(y[0], y[2], T, N);
                        for (int t = 0; t < T; t++)
                            for (int n = 0; n < N; n++) {
                                double s = acc ? (double)((t * N + n) % 17) * 0.25 : 0;
                                for (int k = 0; k < K; k++)
                                    s += (double)x[t * K + k] * w[(size_t)n * K + k];
                                if (fabs(y[0][t * N + n] - s) > 1e-4 * (1 + sqrt((double)K)))
                                    fail_msg("%s T %d K %d N %d acc %d: y[%d,%d] = %g, want %g", bf ? "bf16" : "f32", T,
                                             K, N, acc, t, n, y[0][t * N + n], s);
                            }
                        if (own && T == 41 && !acc)
                            for (int t0 = 1; t0 + 25 <= T; t0 += 7) {
                                ops->matmul(part, x + (size_t)t0 * K, wd, 25, K, N, 0);
                                al_assert_floats_identical(part, y[0] + (size_t)t0 * N, 25, N);
                            }
                    }
                ops->weight_free(wd);
                free(x), free(w), free(part);
                for (int i = 0; i < 3; i++)
                    free(y[i]);
            }
    }
    al_cpu_set_threads(saved);
}

/* cpu-bf16: matmul (few-row kernel and widened sgemm blocks) and embedding against the same
 * reference over bf16-rounded weights; 1 and 2 threads bitwise; the bf16 <-> f32 conversions. */
static void test_bf16_ops(void **state)
{
    const al_ops *ops = al_ops_cpu_bf16();
    assert_int_equal(ops->weight_bytes, 2);
    /* conversions: exact round trip of bf16 values, round to nearest even, NaN stays NaN */
    assert_true(ali_bf16_to_f32(ali_f32_to_bf16(1.5f)) == 1.5f);
    assert_int_equal(ali_f32_to_bf16(1.0f + 1.0f / 256), 0x3f80); /* a tie: to even */
    assert_int_equal(ali_f32_to_bf16(1.0f + 3.0f / 256), 0x3f82);
    assert_true(isnan(ali_bf16_to_f32(ali_f32_to_bf16(NAN))));
    al_rng r;
    al_rng_seed(&r, 11);
    int K = 37, N = 300, saved = al_cpu_threads();
    float *x = malloc(sizeof(float) * 12 * K), *w = malloc(sizeof(float) * (size_t)N * K);
    float *y = malloc(sizeof(float) * 12 * N), *y2 = malloc(sizeof(float) * 12 * N);
    fill(x, (size_t)12 * K, &r, 1);
    fill(w, (size_t)N * K, &r, 1);
    void *wb = ops->weight_upload(w, (size_t)N * K, 1);
    assert_non_null(wb);
    for (size_t i = 0; i < (size_t)N * K; i++)
        w[i] = ali_bf16_to_f32(ali_f32_to_bf16(w[i])); /* what the backend holds */
    for (int T = 1; T <= 12; T++) {
        al_cpu_set_threads(1);
        ops->matmul(y, x, wb, T, K, N, 0);
        al_cpu_set_threads(2);
        ops->matmul(y2, x, wb, T, K, N, 0);
        al_assert_floats_identical(y, y2, T, N);
        for (int t = 0; t < T; t++)
            for (int n = 0; n < N; n++) {
                double s = 0;
                for (int k = 0; k < K; k++)
                    s += (double)x[t * K + k] * w[(size_t)n * K + k];
                if (fabs(y[t * N + n] - s) > 1e-4)
                    fail_msg("bf16 T %d: y[%d,%d] = %g, want %g", T, t, n, y[t * N + n], s);
            }
    }
    al_cpu_set_threads(saved);
    int32_t ids[3] = {7, 0, 299};
    float e[3 * 37];
    ops->embedding(e, wb, ids, 3, K, 2.0f);
    for (int t = 0; t < 3; t++)
        for (int k = 0; k < K; k++)
            assert_true(e[t * K + k] == 2.0f * w[(size_t)ids[t] * K + k]);
    ops->weight_free(wb);
    free(x);
    free(w);
    free(y);
    free(y2);
}

static void test_rope_hand_values(void **state)
{
    /* head_dim 4, theta 10000: inv_freq = [1, 0.01]; position 1 rotates pair (x0, x2) by 1 rad
     * and (x1, x3) by 0.01 rad (HF rotate_half pairs i with i + hd/2). */
    float inv[2];
    al_rope_inv_freq(inv, 4, 10000.0f, 0, 0, 0, 0, 0);
    assert_true(fabsf(inv[0] - 1.0f) < 1e-7f && fabsf(inv[1] - 0.01f) < 1e-7f);
    float x[4] = {1, 2, 3, 4};
    int32_t pos = 1;
    float cs[4];
    al_rope_table(cs, &pos, 1, 4, inv);
    al_ops_cpu()->rope(x, cs, 1, 1, 4);
    assert_true(fabsf(x[0] - (float)(1 * cos(1.0) - 3 * sin(1.0))) < 1e-6f);
    assert_true(fabsf(x[2] - (float)(3 * cos(1.0) + 1 * sin(1.0))) < 1e-6f);
    assert_true(fabsf(x[1] - (float)(2 * cos(0.01) - 4 * sin(0.01))) < 1e-6f);
    assert_true(fabsf(x[3] - (float)(4 * cos(0.01) + 2 * sin(0.01))) < 1e-6f);
    /* llama3 scaling (factor 8, low 1, high 4, original 8192, theta 500000, hd 64): low
     * frequencies are divided by 8, high ones kept (values from HF _compute_llama3_parameters). */
    float a[32], b[32];
    al_rope_inv_freq(a, 64, 500000.0f, 0, 0, 0, 0, 0);
    al_rope_inv_freq(b, 64, 500000.0f, 1, 8.0f, 1.0f, 4.0f, 8192);
    assert_true(fabsf(b[0] - a[0]) < 1e-9f);       /* wavelen 6.3 < 2048: kept */
    assert_true(fabsf(b[31] - a[31] / 8) < 1e-12f); /* wavelen > 8192: divided */
}

static void test_matmul_and_lora(void **state)
{
    const al_ops *ops = al_ops_cpu();
    al_rng r;
    al_rng_seed(&r, 2);
    enum { T = 5, K = 19, N = 23, R = 3 };
    float x[T * K], w[N * K], y[T * N], y1[N], A[R * K], B[N * R], bias[N], tmp[T * R];
    fill(x, sizeof x / 4, &r, 1);
    fill(w, sizeof w / 4, &r, 1);
    fill(A, sizeof A / 4, &r, 1);
    fill(B, sizeof B / 4, &r, 1);
    fill(bias, N, &r, 1);
    ops->matmul(y, x, w, T, K, N, 0);
    ops->matmul(y1, x + 2 * K, w, 1, K, N, 0); /* gemv path */
    for (int t = 0; t < T; t++)
        for (int n = 0; n < N; n++) {
            double s = 0;
            for (int k = 0; k < K; k++)
                s += (double)x[t * K + k] * w[n * K + k];
            assert_true(fabs(y[t * N + n] - s) < 1e-4);
            if (t == 2)
                assert_true(fabs(y1[n] - s) < 1e-4);
        }
    /* LoRA only on rows 1..2 and 4: the others stay untouched */
    float y2[T * N];
    memcpy(y2, y, sizeof y);
    al_row_range rr[2] = {{1, 2}, {4, 1}};
    ops->lora(y2, x, rr, 2, A, B, bias, K, N, R, 0.5f, tmp);
    for (int t = 0; t < T; t++) {
        int on = t == 1 || t == 2 || t == 4;
        for (int n = 0; n < N; n++) {
            double d = 0;
            for (int q = 0; q < R; q++) {
                double a = 0;
                for (int k = 0; k < K; k++)
                    a += (double)A[q * K + k] * x[t * K + k];
                d += B[n * R + q] * a;
            }
            d = on ? 0.5 * (d + bias[n]) : 0.0;
            assert_true(fabs(y2[t * N + n] - (y[t * N + n] + d)) < 1e-4);
        }
    }
}

/* Dense causal GQA attention reference over contiguous K/V [n_ctx, kvd]. */
static void attn_ref(const float *q, const float *K, const float *V, int n_rows, int pos0, int nh, int nkv,
                     int hd, float scale, float *out)
{
    int kvd = nkv * hd, qd = nh * hd, grp = nh / nkv;
    for (int j = 0; j < n_rows; j++)
        for (int h = 0; h < nh; h++) {
            int kh = h / grp, n = pos0 + j + 1;
            double *sc = malloc(sizeof(double) * (size_t)n), m = -1e300, sum = 0;
            for (int p = 0; p < n; p++) {
                double d = 0;
                for (int i = 0; i < hd; i++)
                    d += (double)q[j * qd + h * hd + i] * K[p * kvd + kh * hd + i];
                sc[p] = d * scale;
                m = fmax(m, sc[p]);
            }
            for (int p = 0; p < n; p++)
                sum += (sc[p] = exp(sc[p] - m));
            for (int i = 0; i < hd; i++) {
                double o = 0;
                for (int p = 0; p < n; p++)
                    o += sc[p] / sum * V[p * kvd + kh * hd + i];
                out[j * qd + h * hd + i] = (float)o;
            }
            free(sc);
        }
}

/* Paged attention equals dense attention for several block sizes, chunk splits, GQA ratios and a
 * read-only prefix living in a different pool with its own block table. */
static void test_paged_attention(void **state)
{
    const al_ops *ops = al_ops_cpu();
    al_rng r;
    al_rng_seed(&r, 3);
    int cfgs[][5] = {/* block, nh, nkv, hd, ro_n */ {16, 4, 2, 8, 0}, {1, 2, 2, 4, 0}, {5, 6, 3, 8, 7},
                     {16, 4, 1, 16, 16}, {3, 4, 4, 8, 10}};
    for (size_t ci = 0; ci < AL_ARRAY_LEN(cfgs); ci++) {
        int bs = cfgs[ci][0], nh = cfgs[ci][1], nkv = cfgs[ci][2], hd = cfgs[ci][3], ro_n = cfgs[ci][4];
        int L = 2, layer = 1, n_ctx = 41, kvd = nkv * hd, qd = nh * hd;
        al_kv_geom g = {.n_layers = L, .n_kv_heads = nkv, .head_dim = hd, .block_size = bs};
        int nb = (n_ctx + bs - 1) / bs + 2;
        size_t bf = al_kv_block_floats(&g);
        float *pool_ro = calloc(bf * (size_t)nb, 4), *pool_rw = calloc(bf * (size_t)nb, 4);
        int32_t tab_ro[64], tab_rw[64];
        for (int i = 0; i < nb; i++) { /* scrambled block order */
            tab_ro[i] = (i * 7 + 3) % nb;
            tab_rw[i] = nb - 1 - i;
        }
        float *K = malloc(sizeof(float) * (size_t)n_ctx * kvd), *V = malloc(sizeof(float) * (size_t)n_ctx * kvd);
        float *q = malloc(sizeof(float) * (size_t)n_ctx * qd);
        float *o = malloc(sizeof(float) * (size_t)n_ctx * qd), *oref = malloc(sizeof(float) * (size_t)n_ctx * qd);
        fill(K, (size_t)n_ctx * kvd, &r, 1);
        fill(V, (size_t)n_ctx * kvd, &r, 1);
        fill(q, (size_t)n_ctx * qd, &r, 1);
        /* write the prefix through a view whose rw segment is the ro pool, then the rest in chunks */
        al_seq_view pv = {.rw = {pool_ro, tab_ro, 0, ro_n}, .row0 = 0, .n_rows = ro_n, .pos0 = 0};
        if (ro_n)
            ops->kv_write(&g, layer, &pv, 1, K, V);
        int chunks[] = {1, 9, 13};
        int p = ro_n, c = 0;
        while (p < n_ctx) {
            int want = chunks[c++ % 3];
            int n = AL_MIN(want, n_ctx - p);
            al_seq_view sv = {.ro = {pool_ro, tab_ro, 0, ro_n}, .rw = {pool_rw, tab_rw, ro_n, p + n - ro_n},
                              .row0 = 0, .n_rows = n, .pos0 = p};
            ops->kv_write(&g, layer, &sv, 1, K + (size_t)p * kvd, V + (size_t)p * kvd);
            ops->attention(&g, layer, nh, 0.3f, &sv, 1, q + (size_t)p * qd, o + (size_t)p * qd);
            p += n;
        }
        attn_ref(q + (size_t)ro_n * qd, K, V, n_ctx - ro_n, ro_n, nh, nkv, hd, 0.3f, oref);
        float d = maxdiff(o + (size_t)ro_n * qd, oref, (size_t)(n_ctx - ro_n) * qd);
        if (d > 1e-5f)
            fprintf(stderr, "config %zu: max diff %g\n", ci, d);
        assert_true(d < 1e-5f);
        free(pool_ro);
        free(pool_rw);
        free(K);
        free(V);
        free(q);
        free(o);
        free(oref);
    }
}

/* A few rows over a long context (the intrinsic / decode path) split over threads by head: the same
 * bits with 1 and 2 threads, and equal to the dense reference. */
static void test_attention_long_threads(void **state)
{
    const al_ops *ops = al_ops_cpu();
    al_rng r;
    al_rng_seed(&r, 5);
    int bs = 16, nh = 8, nkv = 2, hd = 64, n_ctx = 1500, kvd = nkv * hd, qd = nh * hd;
    al_kv_geom g = {.n_layers = 1, .n_kv_heads = nkv, .head_dim = hd, .block_size = bs};
    int nb = (n_ctx + bs - 1) / bs;
    float *pool = calloc(al_kv_block_floats(&g) * (size_t)nb, 4);
    int32_t *tab = malloc(sizeof(int32_t) * (size_t)nb);
    for (int i = 0; i < nb; i++)
        tab[i] = (i * 37 + 5) % nb; /* scrambled (37 is prime to nb = 94) */
    float *K = malloc(sizeof(float) * (size_t)n_ctx * kvd), *V = malloc(sizeof(float) * (size_t)n_ctx * kvd);
    float *q = malloc(sizeof(float) * 3 * qd), *o1 = malloc(sizeof(float) * 3 * qd), *o2 = malloc(sizeof(float) * 3 * qd);
    float *oref = malloc(sizeof(float) * 3 * qd);
    fill(K, (size_t)n_ctx * kvd, &r, 1);
    fill(V, (size_t)n_ctx * kvd, &r, 1);
    fill(q, (size_t)3 * qd, &r, 1);
    al_seq_view all = {.rw = {pool, tab, 0, n_ctx}, .row0 = 0, .n_rows = n_ctx, .pos0 = 0};
    ops->kv_write(&g, 0, &all, 1, K, V);
    int saved = al_cpu_threads();
    for (int rows = 1; rows <= 3; rows++) {
        al_seq_view sv = {.rw = {pool, tab, 0, n_ctx}, .row0 = 0, .n_rows = rows, .pos0 = n_ctx - rows};
        al_cpu_set_threads(1);
        ops->attention(&g, 0, nh, 0.125f, &sv, 1, q, o1);
        al_cpu_set_threads(2);
        ops->attention(&g, 0, nh, 0.125f, &sv, 1, q, o2);
        al_assert_floats_identical(o1, o2, rows, qd);
        attn_ref(q, K, V, rows, n_ctx - rows, nh, nkv, hd, 0.125f, oref);
        assert_true(maxdiff(o1, oref, (size_t)rows * qd) < 1e-5f);
    }
    al_cpu_set_threads(saved);
    free(pool);
    free(tab);
    free(K);
    free(V);
    free(q);
    free(o1);
    free(o2);
    free(oref);
}

static void test_logprobs_topk(void **state)
{
    float l[2 * 6] = {1, 3, 2, 3, 0, -1, /* row 2 */ 5, 5, 5, 5, 5, 5};
    al_topk_entry tk[2 * 3];
    int32_t am[2];
    al_ops_cpu()->logprobs_topk(l, 2, 6, 3, tk, am);
    double lse = log(exp(1) + exp(3) + exp(2) + exp(3) + exp(0) + exp(-1));
    assert_int_equal(am[0], 1); /* first of the tied maxima */
    assert_int_equal(tk[0].id, 1);
    assert_int_equal(tk[1].id, 3);
    assert_int_equal(tk[2].id, 2);
    assert_true(fabs(tk[0].logprob - (3 - lse)) < 1e-5);
    assert_true(fabs(tk[2].logprob - (2 - lse)) < 1e-5);
    assert_true(fabs(tk[3].logprob - log(1.0 / 6)) < 1e-5);
    assert_int_equal(tk[3].id, 0);
}

/* The vectorisable expf used by softmax and SiLU stays within 3e-7 relative error of libm. */
static void test_fast_expf(void **state)
{
    double worst = 0;
    for (float x = -87.0f; x <= 88.0f; x += 0.00123f) {
        double want = exp((double)x), got = ali_expf(x);
        double rel = fabs(got - want) / want;
        if (rel > worst)
            worst = rel;
    }
    assert_true(worst < 3e-7);
    assert_true(ali_expf(-1000.0f) >= 0.0f && ali_expf(-1000.0f) < 1e-37f);
}

int main(void)
{
    /* ctest runs this file again per lower ISA variant ($ALORA_CPU_ISA): make sure it is the one used */
    const char *want = getenv("ALORA_CPU_ISA");
    printf("cpu kernels: %s (%s)\n", al_cpu_isa(), al_cpu_isa_reason());
    if (want && *want && strcmp(al_cpu_isa(), want) != 0) {
        printf("skip: this CPU cannot run the '%s' kernels\n", want);
        return AL_TEST_SKIP_CODE;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rmsnorm_swiglu_embedding), cmocka_unit_test(test_rope_hand_values),
        cmocka_unit_test(test_matmul_and_lora),          cmocka_unit_test(test_paged_attention),
        cmocka_unit_test(test_matmul_paths),
        cmocka_unit_test(test_gemm_blocks),
        cmocka_unit_test(test_attention_long_threads),
        cmocka_unit_test(test_bf16_ops),
        cmocka_unit_test(test_logprobs_topk),
        cmocka_unit_test(test_fast_expf),
    };
    return cmocka_run_group_tests_name("kernels_cpu", tests, NULL, NULL);
}
