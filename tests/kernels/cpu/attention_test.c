/* attention_test.c: the CPU attention (few-row runs of 16 positions, the chunk path, the fallback for
 * head_dim % 16 != 0) against a double-precision reference over the same paged KV: a read-only
 * prefix of up to 2040 positions, block sizes 1..32, shuffled tables, GQA; and the same bytes
 * whatever the thread count and wherever a read-only prefix ends. */
#include "al_test.h"

#include <math.h>

#include "common/util.h"
#include "kernels/kernels.h"

typedef struct spec {
    int ro_n, prev, n_rows; /* read-only prefix, own positions already in the pool, this step's rows */
} spec;

static float *randn(size_t n, uint64_t seed)
{
    float *x = malloc(sizeof(float) * (n ? n : 1));
    al_rng r;
    al_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)al_rng_normal(&r);
    return x;
}

static void shuffle(int32_t *a, int n, al_rng *r)
{
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(al_rng_next(r) % (uint64_t)(i + 1));
        int32_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

/* K or V row of absolute position p, looked up independently of the kernel's helpers. */
static const float *ref_row(const al_kv_geom *g, const al_seq_view *v, int layer, int kv, int p)
{
    const al_kv_seg *sg = p < v->ro.n ? &v->ro : &v->rw;
    int rel = p - sg->pos0, kvd = g->n_kv_heads * g->head_dim;
    size_t blk = (size_t)sg->table[rel / g->block_size];
    return sg->pool + blk * al_kv_block_floats(g) + ((size_t)layer * 2 + (size_t)kv) * (size_t)g->block_size * kvd +
           (size_t)(rel % g->block_size) * kvd;
}

static void run(int hd, int nh, int nkv, int bs, spec sp)
{
    al_kv_geom g = {.n_layers = 2, .n_kv_heads = nkv, .head_dim = hd, .block_size = bs};
    const int layer = 1, kvd = nkv * hd, qd = nh * hd, T = sp.n_rows;
    size_t bf = al_kv_block_floats(&g);
    int nb_ro = (sp.ro_n + bs - 1) / bs + 1, nb_rw = (sp.prev + T + bs - 1) / bs + 2;
    al_rng r;
    al_rng_seed(&r, (uint64_t)(hd * 131 + nh * 17 + bs + sp.ro_n));
    int32_t *t_ro = malloc(sizeof(int32_t) * (size_t)nb_ro), *t_rw = malloc(sizeof(int32_t) * (size_t)nb_rw);
    for (int i = 0; i < nb_ro; i++)
        t_ro[i] = i;
    for (int i = 0; i < nb_rw; i++)
        t_rw[i] = i;
    shuffle(t_ro, nb_ro, &r);
    shuffle(t_rw, nb_rw, &r);
    float *ro = randn((size_t)nb_ro * bf, 11), *rw = randn((size_t)nb_rw * bf, 12);
    float *q = randn((size_t)T * qd, 13), *k = randn((size_t)T * kvd, 14), *v = randn((size_t)T * kvd, 15);
    al_seq_view sv = {.ro = {.pool = ro, .table = sp.ro_n ? t_ro : NULL, .pos0 = 0, .n = sp.ro_n},
                      .rw = {.pool = rw, .table = t_rw, .pos0 = sp.ro_n, .n = sp.prev + T},
                      .row0 = 0, .n_rows = T, .pos0 = sp.ro_n + sp.prev};
    const al_ops *ops = al_ops_cpu();
    float scale = 1.0f / sqrtf((float)hd);
    ops->kv_write(&g, layer, &sv, 1, k, v);
    float *out1 = calloc((size_t)T * qd, sizeof(float)), *out2 = calloc((size_t)T * qd, sizeof(float));
    ops->set_threads(1);
    ops->attention(&g, layer, nh, scale, &sv, 1, q, out1);
    ops->set_threads(2);
    ops->attention(&g, layer, nh, scale, &sv, 1, q, out2);
    ops->set_threads(0);
    char what[160];
    snprintf(what, sizeof what, "hd %d heads %d/%d block %d prefix %d prev %d rows %d", hd, nh, nkv, bs, sp.ro_n,
             sp.prev, T);
    for (size_t i = 0; i < (size_t)T * qd; i++)
        if (memcmp(&out1[i], &out2[i], sizeof(float)) != 0)
            fail_msg("%s: 1 vs 2 threads differ at %zu: %.9g vs %.9g", what, i, out1[i], out2[i]);
    int n_ctx = sv.pos0 + T;
    double *sc = malloc(sizeof(double) * (size_t)n_ctx), worst = 0;
    for (int row = 0; row < T; row++)
        for (int h = 0; h < nh; h++) {
            int kh = h / (nh / nkv), lim = sv.pos0 + row + 1;
            const float *qh = q + (size_t)row * qd + (size_t)h * hd;
            double m = -INFINITY, sum = 0;
            for (int p = 0; p < lim; p++) {
                const float *kr = ref_row(&g, &sv, layer, 0, p) + (size_t)kh * hd;
                double d = 0;
                for (int i = 0; i < hd; i++)
                    d += (double)qh[i] * kr[i];
                sc[p] = d * scale;
                m = sc[p] > m ? sc[p] : m;
            }
            for (int p = 0; p < lim; p++)
                sum += (sc[p] = exp(sc[p] - m));
            for (int i = 0; i < hd; i++) {
                double o = 0;
                for (int p = 0; p < lim; p++)
                    o += sc[p] / sum * ref_row(&g, &sv, layer, 1, p)[(size_t)kh * hd + i];
                double got = out1[(size_t)row * qd + (size_t)h * hd + i], err = fabs(got - o) / (fabs(o) + 1e-2);
                if (err > worst)
                    worst = err;
                if (err > 1e-4)
                    fail_msg("%s: row %d head %d [%d]: %.7g, reference %.7g", what, row, h, i, got, o);
            }
        }
    printf("  %s: worst relative error %.2g\n", what, worst);
    free(sc), free(out1), free(out2), free(q), free(k), free(v), free(ro), free(rw), free(t_ro), free(t_rw);
}

/* Attention of T rows after ro_n positions, the context laid out as one private segment (split =
 * 0) or as a read-only prefix of `split` positions plus the rest: the same K/V, bit-identical
 * outputs (the worker over a leased prefix vs the in-process engine). */
static float *split_run(int hd, int nh, int nkv, int bs, int n_prev, int T, int split, const float *kall,
                        const float *vall, const float *q)
{
    al_kv_geom g = {.n_layers = 1, .n_kv_heads = nkv, .head_dim = hd, .block_size = bs};
    int kvd = nkv * hd, n_ctx = n_prev + T;
    size_t bf = al_kv_block_floats(&g);
    int nb = (n_ctx + bs - 1) / bs + 2;
    float *ro = calloc((size_t)nb * bf, sizeof(float)), *rw = calloc((size_t)nb * bf, sizeof(float));
    int32_t *tro = malloc(sizeof(int32_t) * (size_t)nb), *trw = malloc(sizeof(int32_t) * (size_t)nb);
    for (int i = 0; i < nb; i++)
        tro[i] = trw[i] = nb - 1 - i;
    al_seq_view sv = {.ro = {.pool = ro, .table = split ? tro : NULL, .pos0 = 0, .n = split},
                      .rw = {.pool = rw, .table = trw, .pos0 = split, .n = n_ctx - split},
                      .row0 = 0, .n_rows = T, .pos0 = n_prev};
    for (int p = 0; p < n_prev; p++) /* the context before this step's rows */
        for (int kv = 0; kv < 2; kv++)
            memcpy((float *)ref_row(&g, &sv, 0, kv, p), (kv ? vall : kall) + (size_t)p * kvd, sizeof(float) * kvd);
    const al_ops *ops = al_ops_cpu();
    ops->kv_write(&g, 0, &sv, 1, kall + (size_t)n_prev * kvd, vall + (size_t)n_prev * kvd);
    float *out = calloc((size_t)T * nh * hd, sizeof(float));
    ops->attention(&g, 0, nh, 0.125f, &sv, 1, q, out);
    free(ro), free(rw), free(tro), free(trw);
    return out;
}

static void test_split_invariance(void **state)
{
    const int hd = 64, nh = 8, nkv = 4, n_prev = 45, T = 3;
    int splits[] = {45, 1, 17, 32, 44};
    float *k = randn((size_t)(n_prev + T) * nkv * hd, 21), *v = randn((size_t)(n_prev + T) * nkv * hd, 22);
    float *q = randn((size_t)T * nh * hd, 23);
    for (int bs = 4; bs <= 32; bs *= 2) {
        float *want = split_run(hd, nh, nkv, bs, n_prev, T, 0, k, v, q);
        for (size_t i = 0; i < AL_ARRAY_LEN(splits); i++) {
            float *got = split_run(hd, nh, nkv, bs, n_prev, T, splits[i], k, v, q);
            if (memcmp(got, want, sizeof(float) * (size_t)T * nh * hd) != 0)
                fail_msg("block %d: a read-only prefix of %d positions changes the output", bs, splits[i]);
            free(got);
        }
        free(want);
    }
    free(k), free(v), free(q);
}

/* The intrinsic case: a few invocation rows over a long leased prefix. */
static void test_few_rows_long_prefix(void **state)
{
    run(64, 12, 12, 16, (spec){2037, 0, 3});
    run(64, 12, 12, 16, (spec){253, 0, 3});
    run(64, 12, 4, 16, (spec){1021, 0, 8});
    run(128, 32, 8, 16, (spec){700, 5, 1});
    run(64, 8, 8, 16, (spec){0, 0, 5}); /* no prefix: the rows see part of one run */
}

static void test_few_rows_odd_blocks(void **state)
{
    int bss[] = {1, 5, 7, 32};
    for (size_t i = 0; i < AL_ARRAY_LEN(bss); i++) {
        run(32, 4, 2, bss[i], (spec){301, 9, 4});
        run(16, 4, 1, bss[i], (spec){40, 0, 8});
    }
}

static void test_fallback_and_chunk(void **state)
{
    run(80, 6, 2, 16, (spec){513, 3, 3}); /* head_dim % 16 != 0: the scalar-order fallback */
    run(8, 2, 2, 5, (spec){33, 2, 2});
    run(64, 8, 2, 16, (spec){200, 0, 40}); /* more than 8 rows: gather + sgemm */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_few_rows_long_prefix),
        cmocka_unit_test(test_few_rows_odd_blocks),
        cmocka_unit_test(test_fallback_and_chunk),
        cmocka_unit_test(test_split_invariance),
    };
    return cmocka_run_group_tests_name("kernels_cpu_attention", tests, NULL, NULL);
}
