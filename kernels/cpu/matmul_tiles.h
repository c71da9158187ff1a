/* matmul_tiles.h: the few-row streaming matmul, instantiated once per weight format: matmul.c
 * includes it with ALI_WT (weight element type), ALI_NV (f32 vectors per step: a step covers
 * 16 * ALI_NV weights of a row), ALI_WLOAD(v, p) (fills ali_v16 v[ALI_NV] from the step's weights
 * at p, in the lane order the activations were laid out in, see ali_x_layout), ALI_WSCALAR(p) (one
 * weight as float, for the tail) and ALI_SFX (a name suffix) defined. */

#define ALI_CAT2(a, b) a##b
#define ALI_CAT(a, b) ALI_CAT2(a, b)
#define ALI_FN(name) ALI_CAT(name, ALI_SFX)

/* One tile: activation rows xr[0, TB) against weight rows wr[0, NB), written to the y rows from
 * yr (tb, nb: how many of them are real). One function per shape, each with an accumulator array
 * of exactly TB x NB vectors, so the compiler keeps them all in registers. */
#define ALI_TILE_FN(TB, NB)                                                                             \
    static void ALI_FN(ali_tile_##TB##x##NB)(const ali_small_job *j, const float *const *xr,           \
                                             const ALI_WT *const *wr, float *yr, int tb, int nb)        \
    {                                                                                                   \
        const int K = j->K, KS = K / (16 * ALI_NV) * (16 * ALI_NV);                                     \
        ali_v16 acc[TB][NB];                                                                            \
        for (int i = 0; i < TB; i++)                                                                    \
            for (int c = 0; c < NB; c++)                                                                \
                acc[i][c] = (ali_v16){0};                                                               \
        for (int k = 0; k < KS; k += 16 * ALI_NV) {                                                     \
            ali_v16 xv[TB][ALI_NV];                                                                     \
            for (int i = 0; i < TB; i++)                                                                \
                for (int v = 0; v < ALI_NV; v++)                                                        \
                    xv[i][v] = ali_ld16(xr[i] + k + 16 * v);                                            \
            for (int c = 0; c < NB; c++) {                                                              \
                ali_v16 wv[ALI_NV];                                                                     \
                ALI_WLOAD(wv, wr[c] + k);                                                               \
                for (int i = 0; i < TB; i++)                                                            \
                    for (int v = 0; v < ALI_NV; v++)                                                    \
                        acc[i][c] += xv[i][v] * wv[v];                                                  \
            }                                                                                           \
        }                                                                                               \
        for (int i = 0; i < tb; i++)                                                                    \
            for (int c = 0; c < nb; c++) {                                                              \
                float s = ali_hsum16(acc[i][c]);                                                        \
                for (int k = KS; k < K; k++)                                                            \
                    s += xr[i][k] * ALI_WSCALAR(wr[c] + k);                                             \
                float *o = yr + (size_t)i * j->N + c;                                                   \
                *o = j->accumulate ? *o + s : s;                                                        \
            }                                                                                           \
    }
ALI_TILE_FN(1, 16)
ALI_TILE_FN(1, 8)
ALI_TILE_FN(2, 8)
#undef ALI_TILE_FN

/* y[t, n] (+)= x[t, :] · w[n, :] for the weight rows [n0, n1): each tile of weight rows is read
 * from memory once and used for every activation row (while it stays in cache). */
static void ALI_FN(ali_small_rows)(const ali_small_job *j, int n0, int n1)
{
    const int K = j->K, T = j->T;
    const ALI_WT *w = j->w;
    /* weight rows per tile: 16 for one activation row, else 8 (16 accumulators of the 32 zmm;
     * enough weight streams in flight to keep memory busy); activation rows 2 at a time while
     * the weight rows stay in cache */
    const int NBK = T == 1 ? 16 : 8;
    for (int n = n0; n < n1; n += NBK) {
        int nb = n1 - n < NBK ? n1 - n : NBK;
        const ALI_WT *wr[ALI_NB];
        for (int c = 0; c < ALI_NB; c++)
            wr[c] = w + (size_t)(n + (c < nb ? c : 0)) * K;
        for (int t0 = 0; t0 < T; t0 += 2) {
            int tb = T - t0 < 2 ? T - t0 : 2;
            const float *xr[2] = {j->xl + (size_t)t0 * K, j->xl + (size_t)(t0 + tb - 1) * K};
            float *yr = j->y + (size_t)t0 * j->N + n;
            if (tb == 2)
                ALI_FN(ali_tile_2x8)(j, xr, wr, yr, tb, nb);
            else if (NBK == 16)
                ALI_FN(ali_tile_1x16)(j, xr, wr, yr, tb, nb);
            else
                ALI_FN(ali_tile_1x8)(j, xr, wr, yr, tb, nb);
        }
    }
}

static void ALI_FN(ali_small_task)(void *ctx, int task)
{
    const ali_small_job *j = ctx;
    int n0 = task * j->rows_per_task, n1 = n0 + j->rows_per_task;
    ALI_FN(ali_small_rows)(j, n0, n1 < j->N ? n1 : j->N);
}

#undef ALI_FN
#undef ALI_CAT
#undef ALI_CAT2
