/* attention.cu: CUDA paged-KV write and causal GQA attention (read-only prefix + private suffix):
 * a tiled online-softmax kernel in fp32 (query tiles x 64-key tiles in shared memory), with the key
 * range split across blocks and merged when there are too few tiles to fill the GPU (decode). */
#include <math.h>
#include <string.h>

#include "kernels/cuda/cuda_ops.h"

/* One sequence view as the kernels read it. Tables are offsets into the packed int32 table array. */
struct alc_seq {
    const float *ro_pool;
    float *rw_pool;
    int row0, n_rows, pos0;
    int ro_n, ro_pos0, rw_pos0;
    int ro_tab, rw_tab;
};

/* A query tile of one sequence over keys [k_lo, k_hi); part < 0: writes the output, else partial slot. */
struct alc_item {
    int seq, r0, nr, k_lo, k_hi, part;
};

/* A split query tile: its partials part0 .. part0 + n_split - 1 are merged by the combine kernel. */
struct alc_task {
    int seq, r0, nr, part0, n_split;
};

struct alc_geo {
    size_t block_floats; /* floats per KV block (all layers) */
    int layer, bs, kvd, hd;
};

static __device__ __forceinline__ const float *alc_kv_addr(const alc_seq &s, const int *tabs, const alc_geo &g,
                                                           int kv, int p)
{
    int ro = p < s.ro_n;
    int rel = p - (ro ? s.ro_pos0 : s.rw_pos0);
    int blk = tabs[(ro ? s.ro_tab : s.rw_tab) + rel / g.bs];
    const float *pool = ro ? s.ro_pool : s.rw_pool;
    return pool + (size_t)blk * g.block_floats + ((size_t)(g.layer * 2 + kv) * g.bs + rel % g.bs) * g.kvd;
}

/* --- host-side packing --- */

static char *alc_pack_buf;
static size_t alc_pack_cap;

static char *alc_pack_reserve(size_t bytes)
{
    if (bytes > alc_pack_cap) {
        size_t cap = alc_pack_cap ? alc_pack_cap : 4096;
        while (cap < bytes)
            cap *= 2;
        char *nb = (char *)realloc(alc_pack_buf, cap);
        if (!nb) {
            fprintf(stderr, "alora CUDA: out of host memory packing attention metadata\n");
            abort();
        }
        alc_pack_buf = nb;
        alc_pack_cap = cap;
    }
    return alc_pack_buf;
}

static int alc_ceil_div(long a, long b) { return a <= 0 ? 0 : (int)((a + b - 1) / b); }

/* Packs seqs (and their tables) into the staging buffer: returns its size; *tab_off = byte offset
 * of the table array. extra bytes are reserved at the end (8-aligned) for the caller. */
static size_t alc_pack_seqs(const al_kv_geom *g, const al_seq_view *seqs, int n_seqs, size_t *tab_off,
                            size_t *extra_off, size_t extra)
{
    int bs = g->block_size;
    long n_tab = 0;
    for (int s = 0; s < n_seqs; s++) {
        const al_seq_view *v = &seqs[s];
        if (v->ro.n > 0)
            n_tab += alc_ceil_div((long)v->ro.n - v->ro.pos0, bs);
        n_tab += alc_ceil_div((long)v->rw.n, bs);
    }
    size_t so = 0, to = sizeof(alc_seq) * (size_t)n_seqs;
    size_t eo = (to + sizeof(int32_t) * (size_t)n_tab + 7) & ~(size_t)7;
    char *buf = alc_pack_reserve(eo + extra);
    alc_seq *ds = (alc_seq *)(buf + so);
    int32_t *tabs = (int32_t *)(buf + to);
    int at = 0;
    for (int s = 0; s < n_seqs; s++) {
        const al_seq_view *v = &seqs[s];
        alc_seq d;
        memset(&d, 0, sizeof d);
        d.ro_pool = v->ro.pool;
        d.rw_pool = v->rw.pool;
        d.row0 = v->row0;
        d.n_rows = v->n_rows;
        d.pos0 = v->pos0;
        d.ro_n = v->ro.n > 0 ? v->ro.n : 0;
        d.ro_pos0 = v->ro.pos0;
        d.rw_pos0 = v->rw.pos0;
        d.ro_tab = at;
        if (v->ro.n > 0) {
            int nb = alc_ceil_div((long)v->ro.n - v->ro.pos0, bs);
            memcpy(tabs + at, v->ro.table, sizeof(int32_t) * (size_t)nb);
            at += nb;
        }
        d.rw_tab = at;
        int nb = alc_ceil_div((long)v->rw.n, bs);
        if (nb > 0) {
            memcpy(tabs + at, v->rw.table, sizeof(int32_t) * (size_t)nb);
            at += nb;
        }
        ds[s] = d;
    }
    if (extra)
        memset(buf + eo, 0, extra);
    *tab_off = to;
    *extra_off = eo;
    return eo + extra;
}

static alc_geo alc_geo_of(const al_kv_geom *g, int layer)
{
    alc_geo o;
    o.block_floats = al_kv_block_floats(g);
    o.layer = layer;
    o.bs = g->block_size;
    o.kvd = g->n_kv_heads * g->head_dim;
    o.hd = g->head_dim;
    return o;
}

/* --- kv_write --- */

static __global__ void alc_kv_write_k(const alc_seq *seqs, const int *tabs, alc_geo g, const float *k, const float *v)
{
    alc_seq s = seqs[blockIdx.y];
    size_t total = (size_t)s.n_rows * g.kvd;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        int j = (int)(i / g.kvd), e = (int)(i % g.kvd);
        int p = s.pos0 + j;
        size_t row = (size_t)(s.row0 + j) * g.kvd + e;
        float *kd = (float *)alc_kv_addr(s, tabs, g, 0, p);
        kd[e] = k[row];
        kd[(size_t)g.bs * g.kvd + e] = v[row]; /* V rows follow the block's K rows of this layer */
    }
}

void alc_kv_write(const al_kv_geom *g, int layer, const al_seq_view *seqs, int n_seqs, const float *k, const float *v)
{
    if (n_seqs <= 0)
        return;
    size_t tab_off, extra_off;
    size_t bytes = alc_pack_seqs(g, seqs, n_seqs, &tab_off, &extra_off, 0);
    char *d = (char *)alc_scratch_upload(ALC_SCR_KVW_META, alc_pack_buf, bytes);
    int max_rows = 0;
    for (int s = 0; s < n_seqs; s++)
        if (seqs[s].n_rows > max_rows)
            max_rows = seqs[s].n_rows;
    if (max_rows == 0)
        return;
    alc_geo geo = alc_geo_of(g, layer);
    size_t per = (size_t)max_rows * geo.kvd;
    unsigned bx = (unsigned)((per + 255) / 256);
    if (bx > 4096)
        bx = 4096;
    dim3 grid(bx, (unsigned)n_seqs);
    alc_kv_write_k<<<grid, 256, 0, alc_stream()>>>((const alc_seq *)d, (const int *)(d + tab_off), geo, k, v);
    ALC_LAUNCHED();
}

/* --- attention --- */

struct alc_attn_args {
    const alc_seq *seqs;
    const int *tabs;
    const alc_item *items;
    alc_geo g;
    const float *q;
    float *out;
    float *pm, *pl, *po; /* partials: [part][Y][BQ] and [part][Y][BQ][D] */
    float scale;
    int n_heads, group, hg, n_hc; /* heads per kv head; heads per block; head chunks per kv head */
};

/* Block: BQ = 16*RI query vectors (rows x heads of one kv head) against BK-key tiles; 256 threads as a
 * 16 x 16 grid: thread (ty, tx) holds S[ty + 16i][tx + 16j] and O[ty + 16i][tx + 16j]. D <= 16*NJ. */
template <int RI, int NJ, int BK>
static __global__ void __launch_bounds__(256) alc_attn_k(alc_attn_args a)
{
    constexpr int BQ = 16 * RI, SJ = BK / 16;
    extern __shared__ float sm[];
    const int D = a.g.hd, tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
    const alc_item it = a.items[blockIdx.x];
    const alc_seq s = a.seqs[it.seq];
    const int kvh = blockIdx.y / a.n_hc, hc = blockIdx.y % a.n_hc;
    float *Qs = sm;                          /* [BQ][D+1] */
    float *Ks = Qs + BQ * (D + 1);           /* [BK][D+1] */
    float *Vs = Ks + BK * (D + 1);           /* [BK][D] */
    float *Ps = Vs + BK * D;                 /* [BQ][BK+1] */
    const float **kp = (const float **)(Ps + BQ * (BK + 1) + 1); /* [BK] key row pointers (8-aligned below) */
    kp = (const float **)(((uintptr_t)kp + 7) & ~(uintptr_t)7);
    const int qd = a.n_heads * D;

    /* query vector qv -> row it.r0 + qv / hg, head kvh*group + hc*hg + qv % hg */
    for (int idx = tid; idx < BQ * D; idx += 256) {
        int qv = idx / D, d = idx - qv * D;
        int rr = qv / a.hg, hh = hc * a.hg + qv % a.hg;
        float val = 0.0f;
        if (rr < it.nr && hh < a.group)
            val = a.q[(size_t)(s.row0 + it.r0 + rr) * qd + (size_t)(kvh * a.group + hh) * D + d] * a.scale;
        Qs[qv * (D + 1) + d] = val;
    }
    int qpos[RI];
    float m[RI], l[RI], o[RI][NJ];
#pragma unroll
    for (int i = 0; i < RI; i++) {
        int qv = ty + 16 * i, rr = qv / a.hg, hh = hc * a.hg + qv % a.hg;
        qpos[i] = (rr < it.nr && hh < a.group) ? s.pos0 + it.r0 + rr : -1; /* -1: masks every key */
        m[i] = -INFINITY;
        l[i] = 0.0f;
#pragma unroll
        for (int j = 0; j < NJ; j++)
            o[i][j] = 0.0f;
    }
    const size_t voff = (size_t)a.g.bs * a.g.kvd;
    for (int kt = it.k_lo; kt < it.k_hi; kt += BK) {
        int nk = min(BK, it.k_hi - kt);
        __syncthreads(); /* previous tile fully consumed (and Qs written on the first pass) */
        if (tid < BK)
            kp[tid] = tid < nk ? alc_kv_addr(s, a.tabs, a.g, 0, kt + tid) + (size_t)kvh * D : NULL;
        __syncthreads();
        for (int idx = tid; idx < BK * D; idx += 256) {
            int kk = idx / D, d = idx - kk * D;
            const float *src = kp[kk];
            Ks[kk * (D + 1) + d] = src ? src[d] : 0.0f;
            Vs[kk * D + d] = src ? src[voff + d] : 0.0f;
        }
        __syncthreads();
        float sc[RI][SJ];
#pragma unroll
        for (int i = 0; i < RI; i++)
#pragma unroll
            for (int j = 0; j < SJ; j++)
                sc[i][j] = 0.0f;
        for (int d = 0; d < D; d++) {
            float qv[RI], kv[SJ];
#pragma unroll
            for (int i = 0; i < RI; i++)
                qv[i] = Qs[(ty + 16 * i) * (D + 1) + d];
#pragma unroll
            for (int j = 0; j < SJ; j++)
                kv[j] = Ks[(tx + 16 * j) * (D + 1) + d];
#pragma unroll
            for (int i = 0; i < RI; i++)
#pragma unroll
                for (int j = 0; j < SJ; j++)
                    sc[i][j] += qv[i] * kv[j];
        }
#pragma unroll
        for (int i = 0; i < RI; i++) {
            float mx = -INFINITY;
#pragma unroll
            for (int j = 0; j < SJ; j++) {
                int kk = tx + 16 * j;
                if (kk >= nk || kt + kk > qpos[i])
                    sc[i][j] = -INFINITY;
                mx = fmaxf(mx, sc[i][j]);
            }
            for (int off = 8; off > 0; off >>= 1)
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
            float mn = fmaxf(m[i], mx), corr = 1.0f, rs = 0.0f;
            if (mn == -INFINITY) {
#pragma unroll
                for (int j = 0; j < SJ; j++)
                    sc[i][j] = 0.0f;
            } else {
                corr = m[i] == -INFINITY ? 0.0f : expf(m[i] - mn);
#pragma unroll
                for (int j = 0; j < SJ; j++) {
                    sc[i][j] = sc[i][j] == -INFINITY ? 0.0f : expf(sc[i][j] - mn);
                    rs += sc[i][j];
                }
            }
            for (int off = 8; off > 0; off >>= 1)
                rs += __shfl_xor_sync(0xffffffffu, rs, off);
            l[i] = l[i] * corr + rs;
            m[i] = mn;
#pragma unroll
            for (int j = 0; j < NJ; j++)
                o[i][j] *= corr;
#pragma unroll
            for (int j = 0; j < SJ; j++)
                Ps[(ty + 16 * i) * (BK + 1) + tx + 16 * j] = sc[i][j];
        }
        __syncthreads();
        for (int kk = 0; kk < nk; kk++) {
            float pv[RI];
#pragma unroll
            for (int i = 0; i < RI; i++)
                pv[i] = Ps[(ty + 16 * i) * (BK + 1) + kk];
#pragma unroll
            for (int j = 0; j < NJ; j++) {
                int d = tx + 16 * j;
                if (d < D) {
                    float vv = Vs[kk * D + d];
#pragma unroll
                    for (int i = 0; i < RI; i++)
                        o[i][j] += pv[i] * vv;
                }
            }
        }
    }
    /* write out: the final row, or this split's partial (m, l, unnormalised o) */
#pragma unroll
    for (int i = 0; i < RI; i++) {
        int qv = ty + 16 * i;
        if (qpos[i] < 0)
            continue;
        int rr = qv / a.hg, head = kvh * a.group + hc * a.hg + qv % a.hg;
        if (it.part < 0) {
            float inv = l[i] > 0.0f ? 1.0f / l[i] : 0.0f;
            float *orow = a.out + (size_t)(s.row0 + it.r0 + rr) * qd + (size_t)head * D;
#pragma unroll
            for (int j = 0; j < NJ; j++) {
                int d = tx + 16 * j;
                if (d < D)
                    orow[d] = o[i][j] * inv;
            }
        } else {
            size_t base = ((size_t)it.part * gridDim.y + blockIdx.y) * BQ + qv;
            if (tx == 0) {
                a.pm[base] = m[i];
                a.pl[base] = l[i];
            }
#pragma unroll
            for (int j = 0; j < NJ; j++) {
                int d = tx + 16 * j;
                if (d < D)
                    a.po[base * D + d] = o[i][j];
            }
        }
    }
}

static __global__ void alc_attn_combine_k(alc_attn_args a, const alc_task *tasks, int BQ)
{
    const alc_task t = tasks[blockIdx.x];
    const alc_seq s = a.seqs[t.seq];
    const int D = a.g.hd, Y = gridDim.y, y = blockIdx.y;
    const int kvh = y / a.n_hc, hc = y % a.n_hc, qd = a.n_heads * D;
    for (int idx = threadIdx.x; idx < BQ * D; idx += blockDim.x) {
        int qv = idx / D, d = idx - qv * D;
        int rr = qv / a.hg, hh = hc * a.hg + qv % a.hg;
        if (rr >= t.nr || hh >= a.group)
            continue;
        float M = -INFINITY;
        for (int sp = 0; sp < t.n_split; sp++)
            M = fmaxf(M, a.pm[((size_t)(t.part0 + sp) * Y + y) * BQ + qv]);
        float L = 0.0f, O = 0.0f;
        for (int sp = 0; sp < t.n_split; sp++) {
            size_t base = ((size_t)(t.part0 + sp) * Y + y) * BQ + qv;
            float mi = a.pm[base];
            if (mi == -INFINITY)
                continue;
            float w = expf(mi - M);
            L += a.pl[base] * w;
            O += a.po[base * D + d] * w;
        }
        a.out[(size_t)(s.row0 + t.r0 + rr) * qd + (size_t)(kvh * a.group + hh) * D + d] = L > 0.0f ? O / L : 0.0f;
    }
}

typedef void (*alc_attn_fn)(alc_attn_args);

static size_t alc_attn_smem(int BQ, int BK, int D)
{
    return sizeof(float) * ((size_t)BQ * (D + 1) + (size_t)BK * (D + 1) + (size_t)BK * D + (size_t)BQ * (BK + 1) + 1) +
           sizeof(void *) * ((size_t)BK + 1);
}

static int alc_sm_count(void)
{
    static int n;
    if (!n) {
        int dev = 0;
        ALC_CHECK(cudaGetDevice(&dev));
        ALC_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
        if (n <= 0)
            n = 1;
    }
    return n;
}

static int alc_smem_optin(void)
{
    static int n;
    if (!n) {
        int dev = 0;
        ALC_CHECK(cudaGetDevice(&dev));
        ALC_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    }
    return n;
}

/* Picks the kernel instance for head_dim D and rows-per-block choice ri (1 or 4). */
static alc_attn_fn alc_attn_pick(int D, int ri, int *bk)
{
    *bk = 64;
    if (D <= 64)
        return ri == 4 ? alc_attn_k<4, 4, 64> : alc_attn_k<1, 4, 64>;
    if (D <= 128)
        return ri == 4 ? alc_attn_k<4, 8, 64> : alc_attn_k<1, 8, 64>;
    if (D <= 256)
        return ri == 4 ? alc_attn_k<4, 16, 64> : alc_attn_k<1, 16, 64>;
    *bk = 16;
    return alc_attn_k<1, 64, 16>;
}

void alc_attention(const al_kv_geom *g, int layer, int n_heads, float scale, const al_seq_view *seqs, int n_seqs,
                   const float *q, float *out)
{
    if (n_seqs <= 0)
        return;
    const int D = g->head_dim, nkv = g->n_kv_heads, group = n_heads / nkv;
    if (D > 1024 || n_heads % nkv) {
        fprintf(stderr, "alora CUDA attention: unsupported head_dim %d / heads %d / kv heads %d\n", D, n_heads, nkv);
        abort();
    }
    int max_rows = 0;
    for (int s = 0; s < n_seqs; s++)
        max_rows = seqs[s].n_rows > max_rows ? seqs[s].n_rows : max_rows;
    if (max_rows == 0)
        return;
    int ri = (D > 256 || max_rows * (group < 16 ? group : 16) <= 16) ? 1 : 4, bk;
    alc_attn_fn fn = alc_attn_pick(D, ri, &bk);
    size_t smem = alc_attn_smem(16 * ri, bk, D);
    if (ri == 4 && smem > (size_t)alc_smem_optin()) {
        ri = 1;
        fn = alc_attn_pick(D, ri, &bk);
        smem = alc_attn_smem(16 * ri, bk, D);
    }
    const int BQ = 16 * ri;
    const int hg = group < BQ ? group : BQ, n_hc = (group + hg - 1) / hg, rpt = BQ / hg, Y = nkv * n_hc;

    /* tiles and the split of their key ranges */
    long n_tiles = 0;
    for (int s = 0; s < n_seqs; s++)
        n_tiles += alc_ceil_div(seqs[s].n_rows, rpt);
    long target = 2L * alc_sm_count();
    long want_split = n_tiles * Y >= target ? 1 : (target + n_tiles * Y - 1) / (n_tiles * Y);
    const int min_chunk = 256;
    long n_items = 0, n_tasks = 0;
    for (int s = 0; s < n_seqs; s++)
        for (int r0 = 0; r0 < seqs[s].n_rows; r0 += rpt) {
            int nr = seqs[s].n_rows - r0 < rpt ? seqs[s].n_rows - r0 : rpt;
            long kmax = (long)seqs[s].pos0 + r0 + nr;
            long ns = alc_ceil_div(kmax, min_chunk);
            ns = ns < want_split ? ns : want_split;
            if (ns <= 1) {
                n_items++;
            } else {
                long chunk = ((kmax + ns - 1) / ns + bk - 1) / bk * bk;
                n_items += alc_ceil_div(kmax, chunk);
                n_tasks++;
            }
        }
    size_t tab_off, extra_off;
    size_t extra = sizeof(alc_item) * (size_t)n_items + sizeof(alc_task) * (size_t)n_tasks;
    size_t bytes = alc_pack_seqs(g, seqs, n_seqs, &tab_off, &extra_off, extra);
    alc_item *items = (alc_item *)(alc_pack_buf + extra_off);
    alc_task *tasks = (alc_task *)(items + n_items);
    long ii = 0, ti = 0, n_part = 0;
    for (int s = 0; s < n_seqs; s++)
        for (int r0 = 0; r0 < seqs[s].n_rows; r0 += rpt) {
            int nr = seqs[s].n_rows - r0 < rpt ? seqs[s].n_rows - r0 : rpt;
            long kmax = (long)seqs[s].pos0 + r0 + nr;
            long ns = alc_ceil_div(kmax, min_chunk);
            ns = ns < want_split ? ns : want_split;
            if (ns <= 1) {
                items[ii++] = alc_item{s, r0, nr, 0, (int)kmax, -1};
                continue;
            }
            long chunk = ((kmax + ns - 1) / ns + bk - 1) / bk * bk;
            int cnt = alc_ceil_div(kmax, chunk);
            tasks[ti++] = alc_task{s, r0, nr, (int)n_part, cnt};
            for (int c = 0; c < cnt; c++) {
                long lo = c * chunk, hi = lo + chunk < kmax ? lo + chunk : kmax;
                items[ii++] = alc_item{s, r0, nr, (int)lo, (int)hi, (int)n_part++};
            }
        }
    char *d = (char *)alc_scratch_upload(ALC_SCR_ATTN_META, alc_pack_buf, bytes);

    alc_attn_args a;
    a.seqs = (const alc_seq *)d;
    a.tabs = (const int *)(d + tab_off);
    a.items = (const alc_item *)(d + extra_off);
    a.g = alc_geo_of(g, layer);
    a.q = q;
    a.out = out;
    a.pm = a.pl = a.po = NULL;
    a.scale = scale;
    a.n_heads = n_heads;
    a.group = group;
    a.hg = hg;
    a.n_hc = n_hc;
    if (n_part > 0) {
        size_t nv = (size_t)n_part * Y * BQ;
        float *p = (float *)alc_scratch(ALC_SCR_ATTN_PART, sizeof(float) * nv * (2 + (size_t)D));
        a.pm = p;
        a.pl = p + nv;
        a.po = p + 2 * nv;
    }
    static size_t smem_set[8];
    int slot = (D <= 64 ? 0 : D <= 128 ? 2 : D <= 256 ? 4 : 6) + (ri == 4);
    if (smem > 48 * 1024 && smem > smem_set[slot]) {
        ALC_CHECK(cudaFuncSetAttribute((const void *)fn, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        smem_set[slot] = smem;
    }
    fn<<<dim3((unsigned)n_items, (unsigned)Y), 256, smem, alc_stream()>>>(a);
    ALC_LAUNCHED();
    if (n_tasks > 0) {
        alc_attn_combine_k<<<dim3((unsigned)n_tasks, (unsigned)Y), 128, 0, alc_stream()>>>(
            a, (const alc_task *)(d + extra_off + sizeof(alc_item) * (size_t)n_items), BQ);
        ALC_LAUNCHED();
    }
}
