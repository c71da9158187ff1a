/* attention_test.c: CUDA kv_write + causal GQA attention over paged KV against the CPU twins: block
 * sizes 1..32, shuffled block tables, a read-only prefix in a separate allocation, prefill chunks,
 * decode rows (split key ranges) and mixed batches, head_dim 16..320, GQA groups 1..32. */
#include "ktest.h"

typedef struct seq_spec {
    int ro_n;    /* read-only prefix positions */
    int prev;    /* own positions already in the pool */
    int n_rows;  /* this step's rows */
} seq_spec;

static void shuffle(int32_t *a, int n, al_rng *r)
{
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(al_rng_next(r) % (uint64_t)(i + 1));
        int32_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

static void run(int hd, int nh, int nkv, int bs, const seq_spec *sp, int n_seqs)
{
    al_kv_geom g = {.n_layers = 2, .n_kv_heads = nkv, .head_dim = hd, .block_size = bs};
    const int layer = 1, kvd = nkv * hd, qd = nh * hd;
    size_t bf = al_kv_block_floats(&g);
    int nb_rw = 0, nb_ro = 0, T = 0;
    for (int s = 0; s < n_seqs; s++) {
        nb_rw += (sp[s].prev + sp[s].n_rows + bs - 1) / bs;
        nb_ro += (sp[s].ro_n + bs - 1) / bs;
        T += sp[s].n_rows;
    }
    nb_rw += 3; /* spare blocks nobody owns */
    nb_ro += 1;
    al_rng r;
    al_rng_seed(&r, (uint64_t)(hd * 131 + nh * 17 + bs));
    int32_t *perm_rw = malloc(sizeof(int32_t) * (size_t)nb_rw), *perm_ro = malloc(sizeof(int32_t) * (size_t)nb_ro);
    for (int i = 0; i < nb_rw; i++)
        perm_rw[i] = i;
    for (int i = 0; i < nb_ro; i++)
        perm_ro[i] = i;
    shuffle(perm_rw, nb_rw, &r);
    shuffle(perm_ro, nb_ro, &r);
    float *rw = kt_randn((size_t)nb_rw * bf, 91, 1.0f), *ro = kt_randn((size_t)nb_ro * bf, 92, 1.0f);
    float *d_rw = kt_dev(rw, (size_t)nb_rw * bf), *d_ro = kt_dev(ro, (size_t)nb_ro * bf);
    al_seq_view *vc = calloc((size_t)n_seqs, sizeof *vc), *vg = calloc((size_t)n_seqs, sizeof *vg);
    int at_rw = 0, at_ro = 0, row = 0;
    for (int s = 0; s < n_seqs; s++) {
        al_seq_view *v = &vc[s];
        v->ro = (al_kv_seg){.pool = ro, .table = perm_ro + at_ro, .pos0 = 0, .n = sp[s].ro_n};
        v->rw = (al_kv_seg){.pool = rw, .table = perm_rw + at_rw, .pos0 = sp[s].ro_n, .n = sp[s].prev + sp[s].n_rows};
        if (sp[s].ro_n == 0)
            v->ro.table = NULL;
        v->row0 = row;
        v->n_rows = sp[s].n_rows;
        v->pos0 = sp[s].ro_n + sp[s].prev;
        at_ro += (sp[s].ro_n + bs - 1) / bs;
        at_rw += (sp[s].prev + sp[s].n_rows + bs - 1) / bs;
        row += sp[s].n_rows;
        vg[s] = *v;
        vg[s].ro.pool = d_ro;
        vg[s].rw.pool = d_rw;
    }
    float *q = kt_randn((size_t)T * qd, 93, 1.0f), *k = kt_randn((size_t)T * kvd, 94, 1.0f);
    float *v = kt_randn((size_t)T * kvd, 95, 1.0f);
    float *dq = kt_dev(q, (size_t)T * qd), *dk = kt_dev(k, (size_t)T * kvd), *dv = kt_dev(v, (size_t)T * kvd);
    float *want = calloc((size_t)T * qd, sizeof(float)), *dout = KT_GPU->alloc(sizeof(float) * (size_t)T * qd);
    float scale = 1.0f / sqrtf((float)hd);
    KT_CPU->kv_write(&g, layer, vc, n_seqs, k, v);
    KT_GPU->kv_write(&g, layer, vg, n_seqs, dk, dv);
    KT_CPU->attention(&g, layer, nh, scale, vc, n_seqs, q, want);
    KT_GPU->attention(&g, layer, nh, scale, vg, n_seqs, dq, dout);
    float *got_rw = kt_host(d_rw, (size_t)nb_rw * bf), *got_ro = kt_host(d_ro, (size_t)nb_ro * bf);
    al_assert_floats_identical(got_rw, rw, nb_rw, bf); /* kv_write: same bytes, same places */
    al_assert_floats_identical(got_ro, ro, nb_ro, bf); /* the prefix is never written */
    float *got = kt_host(dout, (size_t)T * qd);
    char what[128];
    snprintf(what, sizeof what, "attention hd%d heads %d/%d block %d seqs %d rows %d", hd, nh, nkv, bs, n_seqs, T);
    kt_expect(what, got, want, (size_t)T * qd, 2e-5);
    /* a second layer-0 pass reuses the uploaded metadata */
    KT_CPU->kv_write(&g, 0, vc, n_seqs, k, v);
    KT_GPU->kv_write(&g, 0, vg, n_seqs, dk, dv);
    KT_CPU->attention(&g, 0, nh, scale, vc, n_seqs, q, want);
    KT_GPU->attention(&g, 0, nh, scale, vg, n_seqs, dq, dout);
    free(got);
    got = kt_host(dout, (size_t)T * qd);
    kt_expect("  (again, layer 0)", got, want, (size_t)T * qd, 2e-5);
    KT_GPU->free(d_rw), KT_GPU->free(d_ro), KT_GPU->free(dq), KT_GPU->free(dk), KT_GPU->free(dv), KT_GPU->free(dout);
    free(perm_rw), free(perm_ro), free(rw), free(ro), free(vc), free(vg), free(q), free(k), free(v), free(want);
    free(got_rw), free(got_ro), free(got);
}

static void test_mixed_block_sizes(void **state)
{
    seq_spec sp[] = {{0, 0, 37}, {20, 6, 11}, {128, 172, 1}, {0, 600, 40}};
    int bss[] = {1, 5, 16, 32};
    for (size_t i = 0; i < AL_ARRAY_LEN(bss); i++)
        run(16, 4, 2, bss[i], sp, 4);
}

static void test_decode_llama_shape(void **state)
{
    seq_spec sp[] = {{1000, 23, 1}, {0, 5, 1}, {0, 2047, 1}};
    run(128, 32, 8, 16, sp, 3);
    seq_spec one[] = {{0, 4000, 1}};
    run(128, 32, 8, 16, one, 1);
}

static void test_prefill_llama_shape(void **state)
{
    seq_spec sp[] = {{64, 0, 130}};
    run(128, 32, 8, 16, sp, 1);
    seq_spec suf[] = {{700, 0, 12}}; /* the aLoRA suffix over a base prefix */
    run(128, 32, 8, 16, suf, 1);
}

static void test_odd_shapes(void **state)
{
    seq_spec sp[] = {{9, 3, 20}, {0, 50, 1}};
    run(80, 6, 2, 7, sp, 2);   /* group 3 */
    run(256, 2, 1, 16, sp, 2); /* head_dim 256 */
    run(320, 2, 2, 4, sp, 2);  /* head_dim 320: the narrow-tile kernel */
    run(64, 32, 1, 16, sp, 2); /* group 32 */
    seq_spec dec[] = {{0, 300, 1}, {10, 10, 1}};
    run(64, 32, 1, 16, dec, 2);
}

int main(void)
{
    kt_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mixed_block_sizes),
        cmocka_unit_test(test_decode_llama_shape),
        cmocka_unit_test(test_prefill_llama_shape),
        cmocka_unit_test(test_odd_shapes),
    };
    return cmocka_run_group_tests_name("kernels_attention", tests, NULL, NULL);
}
