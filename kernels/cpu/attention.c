/* attention.c: CPU paged-KV write and causal GQA attention (read-only prefix + private suffix). */
#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu_ops.h"

/* Address of K (kv = 0) or V (kv = 1) rows of one block for one layer: [block_size, kv_dim]. */
static inline float *ali_kv_block(const al_kv_geom *g, float *pool, int32_t block, int layer, int kv)
{
    size_t kvd = (size_t)g->n_kv_heads * g->head_dim;
    return pool + (size_t)block * al_kv_block_floats(g) + ((size_t)layer * 2 + kv) * g->block_size * kvd;
}

/* Row of absolute position p for a sequence view: from ro when p < ro.n, else from rw. */
static inline float *ali_kv_row(const al_kv_geom *g, const al_seq_view *s, int layer, int kv, int32_t p)
{
    const al_kv_seg *seg = p < s->ro.n ? &s->ro : &s->rw;
    int32_t rel = p - seg->pos0;
    int32_t blk = seg->table[rel / g->block_size];
    size_t kvd = (size_t)g->n_kv_heads * g->head_dim;
    return ali_kv_block(g, seg->pool, blk, layer, kv) + (size_t)(rel % g->block_size) * kvd;
}

void ali_cpu_kv_write(const al_kv_geom *g, int layer, const al_seq_view *seqs, int n_seqs, const float *k,
                      const float *v)
{
    size_t kvd = (size_t)g->n_kv_heads * g->head_dim;
    for (int s = 0; s < n_seqs; s++) {
        const al_seq_view *sv = &seqs[s];
        for (int j = 0; j < sv->n_rows; j++) {
            int32_t p = sv->pos0 + j;
            size_t row = (size_t)(sv->row0 + j);
            memcpy(ali_kv_row(g, sv, layer, 0, p), k + row * kvd, kvd * sizeof(float));
            memcpy(ali_kv_row(g, sv, layer, 1, p), v + row * kvd, kvd * sizeof(float));
        }
    }
}

/* Copies K or V of positions [0, n) of a sequence into dst [n, kv_dim], block by block. */
static void ali_kv_gather(const al_kv_geom *g, const al_seq_view *s, int layer, int kv, int32_t n, float *dst)
{
    size_t kvd = (size_t)g->n_kv_heads * g->head_dim;
    int32_t p = 0;
    while (p < n) {
        const al_kv_seg *seg = p < s->ro.n ? &s->ro : &s->rw;
        int32_t seg_end = p < s->ro.n ? s->ro.n : n;
        int32_t rel = p - seg->pos0;
        int32_t in_blk = rel % g->block_size;
        int32_t cnt = g->block_size - in_blk;
        if (cnt > seg_end - p)
            cnt = seg_end - p;
        if (cnt > n - p)
            cnt = n - p;
        const float *src = ali_kv_block(g, seg->pool, seg->table[rel / g->block_size], layer, kv) + (size_t)in_blk * kvd;
        memcpy(dst + (size_t)p * kvd, src, (size_t)cnt * kvd * sizeof(float));
        p += cnt;
    }
}

#define ALI_ATTN_TILE 128
#define ALI_ATTN_FEW 8 /* up to this many query rows: straight from the blocks, K and V read once */


typedef struct ali_few_job {
    const al_kv_geom *g;
    int layer, n_heads, n_tasks;
    float scale;
    const al_seq_view *s;
    const float *q;
    float *out, *scores;
} ali_few_job;

/* Heads [h0, h1) of ali_attn_few, the scalar-order fallback (head_dim not a multiple of 16). */
static void ali_attn_few_heads_any(const ali_few_job *j, int h0, int h1)
{
    const al_kv_geom *g = j->g;
    const al_seq_view *s = j->s;
    int n_heads = j->n_heads, hd = g->head_dim, group = n_heads / g->n_kv_heads, nt = s->n_rows;
    size_t qd = (size_t)n_heads * hd;
    int32_t n_ctx = s->pos0 + nt;
    float *scores = j->scores;
    for (int32_t p = 0; p < n_ctx; p++) {
        const float *kr = ali_kv_row(g, s, j->layer, 0, p);
        for (int r = p > s->pos0 ? p - s->pos0 : 0; r < nt; r++) { /* causal: rows at or after p */
            const float *qr = j->q + (size_t)(s->row0 + r) * qd;
            float *sc = scores + (size_t)r * n_heads * n_ctx + p;
            for (int h = h0; h < h1; h++)
                sc[(size_t)h * n_ctx] = ali_dot(qr + (size_t)h * hd, kr + (size_t)(h / group) * hd, hd) * j->scale;
        }
    }
    for (int r = 0; r < nt; r++) {
        int32_t lim = s->pos0 + r + 1;
        float *orow = j->out + (size_t)(s->row0 + r) * qd;
        memset(orow + (size_t)h0 * hd, 0, sizeof(float) * (size_t)(h1 - h0) * hd);
        for (int h = h0; h < h1; h++)
            ali_softmax_row(scores + ((size_t)r * n_heads + h) * n_ctx, lim, lim);
    }
    for (int32_t p = 0; p < n_ctx; p++) {
        const float *vr = ali_kv_row(g, s, j->layer, 1, p);
        for (int r = p > s->pos0 ? p - s->pos0 : 0; r < nt; r++) {
            float *orow = j->out + (size_t)(s->row0 + r) * qd;
            const float *w = scores + (size_t)r * n_heads * n_ctx + p;
            for (int h = h0; h < h1; h++) {
                float wp = w[(size_t)h * n_ctx];
                float *oh = orow + (size_t)h * hd;
                const float *vh = vr + (size_t)(h / group) * hd;
                for (int i = 0; i < hd; i++)
                    oh[i] += wp * vh[i];
            }
        }
    }
}

/* Two-operand lane shuffle with constant indices into a||b (GCC and clang spell it differently). */
typedef int32_t ali_i16 __attribute__((vector_size(64)));
#if defined(__clang__)
#define ALI_SHUF(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define ALI_SHUF(a, b, ...) __builtin_shuffle(a, b, (ali_i16){__VA_ARGS__})
#endif

/* Lane i of the result = the sum of the 16 lanes of a[i]: a fixed tree of 15 shuffle-adds in four
 * levels instead of 16 sequential horizontal sums (the order never depends on the thread count). */
static inline ali_v16 ali_hsum16x16(const ali_v16 *a)
{
    ali_v16 b[8], c[4], d[2];
    for (int k = 0; k < 8; k++)
        b[k] = ALI_SHUF(a[2 * k], a[2 * k + 1], 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
               ALI_SHUF(a[2 * k], a[2 * k + 1], 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
    for (int k = 0; k < 4; k++)
        c[k] = ALI_SHUF(b[2 * k], b[2 * k + 1], 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27) +
               ALI_SHUF(b[2 * k], b[2 * k + 1], 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
    for (int k = 0; k < 2; k++)
        d[k] = ALI_SHUF(c[2 * k], c[2 * k + 1], 0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29) +
               ALI_SHUF(c[2 * k], c[2 * k + 1], 2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31);
    return ALI_SHUF(d[0], d[1], 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30) +
           ALI_SHUF(d[0], d[1], 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
}

/* The next run of positions [p, p + *cnt) that lie in one block of one segment (at most 16): the
 * address of position p's K (kv = 0) or V row; the run's rows follow at a stride of kv_dim. */
static inline const float *ali_kv_run(const al_kv_geom *g, const al_seq_view *s, int layer, int kv, int32_t p,
                                      int32_t n_ctx, int *cnt)
{
    const al_kv_seg *seg = p < s->ro.n ? &s->ro : &s->rw;
    int32_t seg_end = p < s->ro.n ? s->ro.n : n_ctx;
    int32_t rel = p - seg->pos0, in_blk = rel % g->block_size;
    int32_t n = g->block_size - in_blk;
    if (n > seg_end - p)
        n = seg_end - p;
    *cnt = n < 16 ? (int)n : 16;
    size_t kvd = (size_t)g->n_kv_heads * g->head_dim;
    return ali_kv_block(g, seg->pool, seg->table[rel / g->block_size], layer, kv) + (size_t)in_blk * kvd;
}

/* Heads [h0, h1) of ali_attn_few (each head is computed whole by one caller: results do not
 * depend on how heads are split over threads). head_dim % 16 == 0. K and V are read in runs of up
 * to 16 positions of one block: per (head, row) the run's 16 dot products are accumulated in
 * vectors and reduced together (ali_hsum16x16), the scores stored contiguously; P·V keeps a (head,
 * row) slice of the output in registers over a run. Every score and output element sees the same
 * operations in the same order whatever the runs are, so results do not depend on where the
 * blocks or segments split the context. The run's K/V head slice stays in L1 across the rows, so
 * the context is read from memory once per layer. */
static void ali_attn_few_heads(const ali_few_job *j, int h0, int h1)
{
    const al_kv_geom *g = j->g;
    const al_seq_view *s = j->s;
    int n_heads = j->n_heads, hd = g->head_dim, group = n_heads / g->n_kv_heads, nt = s->n_rows;
    if (hd % 16 != 0 || hd > 512) {
        ali_attn_few_heads_any(j, h0, h1);
        return;
    }
    int nc = hd / 16;
    size_t qd = (size_t)n_heads * hd, kvd = (size_t)g->n_kv_heads * hd;
    int32_t n_ctx = s->pos0 + nt;
    float *scores = j->scores;
    ali_v16 sc16 = {0};
    sc16 += j->scale;
    for (int32_t p = 0; p < n_ctx;) {
        int cnt;
        const float *k0 = ali_kv_run(g, s, j->layer, 0, p, n_ctx, &cnt);
        for (int h = h0; h < h1; h++) {
            const float *kh = k0 + (size_t)(h / group) * hd;
            for (int r = 0; r < nt; r++) {
                if (p > s->pos0 + r)
                    continue; /* causal: this row sees none of the run (and a row that sees part
                               * of it computes it whole: scores past its limit are never read) */
                const float *qh = j->q + (size_t)(s->row0 + r) * qd + (size_t)h * hd;
                ali_v16 acc[16];
                for (int i = 0; i < 16; i++) {
                    acc[i] = (ali_v16){0};
                    if (i < cnt) {
                        const float *kr = kh + (size_t)i * kvd;
                        for (int c = 0; c < nc; c++)
                            acc[i] += ali_ld16(qh + 16 * c) * ali_ld16(kr + 16 * c);
                    }
                }
                ali_v16 d = ali_hsum16x16(acc) * sc16;
                memcpy(scores + ((size_t)r * n_heads + h) * n_ctx + p, &d, sizeof(float) * (size_t)cnt);
            }
        }
        p += cnt;
    }
    for (int r = 0; r < nt; r++) {
        int32_t lim = s->pos0 + r + 1;
        float *orow = j->out + (size_t)(s->row0 + r) * qd;
        memset(orow + (size_t)h0 * hd, 0, sizeof(float) * (size_t)(h1 - h0) * hd);
        for (int h = h0; h < h1; h++)
            ali_softmax_row(scores + ((size_t)r * n_heads + h) * n_ctx, lim, lim);
    }
    for (int32_t p = 0; p < n_ctx;) {
        int cnt;
        const float *v0 = ali_kv_run(g, s, j->layer, 1, p, n_ctx, &cnt);
        for (int h = h0; h < h1; h++) {
            const float *vh = v0 + (size_t)(h / group) * hd;
            for (int r = 0; r < nt; r++) {
                int32_t lim = s->pos0 + r + 1; /* causal: positions [0, lim) */
                int m = lim - p < cnt ? (int)(lim - p) : cnt;
                if (m <= 0)
                    continue;
                const float *w = scores + ((size_t)r * n_heads + h) * n_ctx + p;
                float *oh = j->out + (size_t)(s->row0 + r) * qd + (size_t)h * hd;
                /* o += w_p * v_p in position order, from the value in the output row: the same
                 * operations whatever the runs (a leased prefix splits them where the worker's own
                 * positions begin), so a worker's rows equal the in-process engine's bit for bit */
                int c = 0;
                for (; c + 4 <= nc; c += 4) {
                    ali_v16 o0 = ali_ld16(oh + 16 * c), o1 = ali_ld16(oh + 16 * c + 16);
                    ali_v16 o2 = ali_ld16(oh + 16 * c + 32), o3 = ali_ld16(oh + 16 * c + 48);
                    for (int i = 0; i < m; i++) {
                        const float *vr = vh + (size_t)i * kvd + 16 * c;
                        o0 += w[i] * ali_ld16(vr);
                        o1 += w[i] * ali_ld16(vr + 16);
                        o2 += w[i] * ali_ld16(vr + 32);
                        o3 += w[i] * ali_ld16(vr + 48);
                    }
                    memcpy(oh + 16 * c, &o0, sizeof o0);
                    memcpy(oh + 16 * c + 16, &o1, sizeof o1);
                    memcpy(oh + 16 * c + 32, &o2, sizeof o2);
                    memcpy(oh + 16 * c + 48, &o3, sizeof o3);
                }
                for (; c < nc; c++) {
                    ali_v16 o = ali_ld16(oh + 16 * c);
                    for (int i = 0; i < m; i++)
                        o += w[i] * ali_ld16(vh + (size_t)i * kvd + 16 * c);
                    memcpy(oh + 16 * c, &o, sizeof o);
                }
            }
        }
        p += cnt;
    }
}

static void ali_attn_few_task(void *ctx, int task)
{
    const ali_few_job *j = ctx;
    ali_attn_few_heads(j, task * j->n_heads / j->n_tasks, (task + 1) * j->n_heads / j->n_tasks);
}

/* A few query rows (an intrinsic's invocation tokens, a short chunk, decode) over a long context:
 * one pass over K and one over V straight from the blocks, every row and head served from each
 * K/V row while it is in cache (no gather: copying the whole context per layer cost more than the
 * products); heads split over the threads when there is enough work. scores holds
 * [n_rows, n_heads, n_ctx]. */
static void ali_attn_few(const al_kv_geom *g, int layer, int n_heads, float scale, const al_seq_view *s,
                         const float *q, float *out, float *scores)
{
    ali_few_job j = {.g = g, .layer = layer, .n_heads = n_heads, .scale = scale, .s = s, .q = q, .out = out,
                     .scores = scores, .n_tasks = 1};
    int64_t work = (int64_t)(s->pos0 + s->n_rows) * s->n_rows * n_heads * g->head_dim;
    int threads = al_cpu_threads();
    if (threads > 1 && work >= (1 << 20))
        j.n_tasks = n_heads < 2 * threads ? n_heads : 2 * threads;
    ali_par_run(j.n_tasks, ali_attn_few_task, &j);
}

/* Several query rows: gather K/V once, then S = Q·K^T and O = P·V per head with sgemm; the heads
 * are split over the pool (each head computed by the same single-threaded calls whatever the
 * thread count). */
typedef struct ali_chunk_job {
    const al_kv_geom *g;
    const al_seq_view *s;
    int n_heads;
    float scale;
    const float *q, *kbuf, *vbuf; /* kbuf, vbuf [n_ctx, kv_dim] gathered */
    float *out;
    int32_t sbuf_floats;          /* per-thread scores: [ALI_ATTN_TILE, n_ctx] */
} ali_chunk_job;

static void ali_attn_chunk_head(void *ctx, int h)
{
    const ali_chunk_job *j = ctx;
    const al_kv_geom *g = j->g;
    const al_seq_view *s = j->s;
    int hd = g->head_dim, group = j->n_heads / g->n_kv_heads, kh = h / group;
    int kvd = g->n_kv_heads * hd, qd = j->n_heads * hd;
    float *sbuf = ali_cpu_scratch(3, (size_t)j->sbuf_floats);
    for (int t0 = 0; t0 < s->n_rows; t0 += ALI_ATTN_TILE) {
        int nt = AL_TILE_MIN(ALI_ATTN_TILE, s->n_rows - t0);
        int32_t ctx_n = s->pos0 + t0 + nt; /* keys needed by the last row of the tile */
        const float *qh = j->q + (size_t)(s->row0 + t0) * qd + (size_t)h * hd;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nt, ctx_n, hd, j->scale, qh, qd,
                    j->kbuf + (size_t)kh * hd, kvd, 0.0f, sbuf, ctx_n);
        for (int r = 0; r < nt; r++) {
            float *row = sbuf + (size_t)r * ctx_n;
            int32_t lim = s->pos0 + t0 + r + 1; /* causal: keys [0, lim) */
            ali_softmax_row(row, lim, ctx_n);
        }
        float *oh = j->out + (size_t)(s->row0 + t0) * qd + (size_t)h * hd;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nt, hd, ctx_n, 1.0f, sbuf, ctx_n,
                    j->vbuf + (size_t)kh * hd, kvd, 0.0f, oh, qd);
    }
}

static void ali_attn_chunk(const al_kv_geom *g, int layer, int n_heads, float scale, const al_seq_view *s,
                           const float *q, float *out, float *kbuf, float *vbuf)
{
    int32_t n_ctx = s->pos0 + s->n_rows;
    ali_kv_gather(g, s, layer, 0, n_ctx, kbuf);
    ali_kv_gather(g, s, layer, 1, n_ctx, vbuf);
    ali_chunk_job j = {.g = g, .s = s, .n_heads = n_heads, .scale = scale, .q = q, .kbuf = kbuf, .vbuf = vbuf,
                       .out = out, .sbuf_floats = n_ctx * AL_TILE_MIN(s->n_rows, ALI_ATTN_TILE)};
    ali_par_run(n_heads, ali_attn_chunk_head, &j);
}

void ali_cpu_attention(const al_kv_geom *g, int layer, int n_heads, float scale, const al_seq_view *seqs,
                       int n_seqs, const float *q, float *out)
{
    int32_t max_ctx = 0, max_rows = 0;
    for (int s = 0; s < n_seqs; s++) {
        int32_t c = seqs[s].pos0 + seqs[s].n_rows;
        if (c > max_ctx)
            max_ctx = c;
        if (seqs[s].n_rows > max_rows)
            max_rows = seqs[s].n_rows;
    }
    if (max_ctx == 0)
        return;
    size_t kvd = (size_t)g->n_kv_heads * g->head_dim;
    float *scores = ali_cpu_scratch(0, (size_t)max_ctx * (size_t)n_heads * AL_TILE_MIN(max_rows, ALI_ATTN_FEW));
    float *kbuf = NULL, *vbuf = NULL;
    if (max_rows > ALI_ATTN_FEW) {
        kbuf = ali_cpu_scratch(1, (size_t)max_ctx * kvd);
        vbuf = ali_cpu_scratch(2, (size_t)max_ctx * kvd);
    }
    for (int s = 0; s < n_seqs; s++) {
        const al_seq_view *sv = &seqs[s];
        if (sv->n_rows >= 1 && sv->n_rows <= ALI_ATTN_FEW)
            ali_attn_few(g, layer, n_heads, scale, sv, q, out, scores);
        else if (sv->n_rows > ALI_ATTN_FEW)
            ali_attn_chunk(g, layer, n_heads, scale, sv, q, out, kbuf, vbuf);
    }
}
