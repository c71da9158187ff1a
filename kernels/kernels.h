/* kernels.h: the backend ops table. Every op has a CPU twin (kernels/cpu) and a CUDA twin
 * (kernels/cuda) with the same name; pointers are host memory for CPU, device memory for CUDA. */
#ifndef AL_KERNELS_H
#define AL_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Geometry of a paged KV pool. A block holds block_size tokens for all layers:
 * pool[block][layer][k|v][row in block][kv_dim], kv_dim = n_kv_heads * head_dim. */
typedef struct al_kv_geom {
    int32_t n_layers;
    int32_t n_kv_heads;
    int32_t head_dim;
    int32_t block_size;
} al_kv_geom;

static inline size_t al_kv_block_floats(const al_kv_geom *g)
{
    return (size_t)g->n_layers * 2 * (size_t)g->block_size * (size_t)g->n_kv_heads * (size_t)g->head_dim;
}

/* One segment of a sequence's KV: absolute positions [pos0, pos0 + n) live in `pool`, position
 * p in block table[(p - pos0) / block_size], row (p - pos0) % block_size. */
typedef struct al_kv_seg {
    float *pool;          /* block pool base */
    const int32_t *table; /* block ids */
    int32_t pos0;
    int32_t n;
} al_kv_seg;

/* One sequence's part of a batched step. The chunk's queries are batch rows [row0, row0 + n_rows)
 * at absolute positions pos0 .. pos0 + n_rows - 1; each attends causally over positions <= its own.
 * Positions < ro.n come from the read-only segment `ro` (e.g. a leased base prefix in a shared
 * pool); the rest from `rw`, where this step's K/V are written. */
typedef struct al_seq_view {
    al_kv_seg ro;
    al_kv_seg rw;
    int32_t row0;
    int32_t n_rows;
    int32_t pos0;
} al_seq_view;

/* A contiguous run of batch rows that an adapter applies to. */
typedef struct al_row_range {
    int32_t row0;
    int32_t n;
} al_row_range;

typedef struct al_topk_entry {
    int32_t id;
    float logprob;
} al_topk_entry;

typedef struct al_ops {
    const char *name;
    int host_memory;  /* 1: backend memory is host memory */
    int weight_bytes; /* bytes per element of matrix weights (4 = f32, 2 = bf16) */

    /* Memory. alloc returns zeroed backend memory (NULL on failure). */
    void *(*alloc)(size_t bytes);
    void (*free)(void *p);
    void (*upload)(void *dst, const void *src, size_t bytes);   /* host -> backend */
    void (*download)(void *dst, const void *src, size_t bytes); /* backend -> host */
    void (*copy)(void *dst, const void *src, size_t bytes);     /* backend -> backend */
    void (*sync)(void);
    /* A weight tensor in the backend's format: matrix = 1 for matmul / embedding weights (bf16 on
     * CUDA), 0 for vectors and LoRA factors (f32). CPU returns `host` itself (no copy). */
    void *(*weight_upload)(const float *host, size_t n, int matrix);
    void (*weight_free)(void *p);
    /* Writes a weight tensor of n f32 host values in the backend's format (as weight_upload) into
     * dst, backend memory the caller owns (n * weight_bytes bytes for a matrix, n * 4 otherwise). */
    void (*weight_store)(void *dst, const float *host, size_t n, int matrix);

    /* out[t,:] = table[ids[t],:] * scale                                   out [T,H], table [V,H] */
    void (*embedding)(float *out, const void *table, const int32_t *ids, int T, int H, float scale);
    /* out[t,:] = x[t,:] / rms(x[t,:]) * w                                  out, x [T,H], w [H] */
    void (*rmsnorm)(float *out, const float *x, const float *w, int T, int H, float eps);
    /* HF rotate_half RoPE in place on x [T, n_heads, head_dim]; cs [T, head_dim] holds per row
     * cos[head_dim/2] then sin[head_dim/2] (see al_rope_table). */
    void (*rope)(float *x, const float *cs, int T, int n_heads, int head_dim);
    /* y [T,N] = x [T,K] · w[N,K]^T (+ y if accumulate). gemv when T == 1. */
    void (*matmul)(float *y, const float *x, const void *w, int T, int K, int N, int accumulate);
    /* y[t,:] += alpha * x[t,:]                                              [T,N] */
    void (*add_scaled)(float *y, const float *x, float alpha, size_t n);
    /* y [n] *= alpha */
    void (*scale)(float *y, float alpha, size_t n);
    /* out [n] = silu(gate) * up */
    void (*swiglu)(float *out, const float *gate, const float *up, size_t n);
    /* Writes the step's K, V rows ([T, kv_dim] each) into each sequence's rw segment. */
    void (*kv_write)(const al_kv_geom *g, int layer, const al_seq_view *seqs, int n_seqs,
                     const float *k, const float *v);
    /* Causal GQA attention over paged KV: out/q [T, n_heads*head_dim]. */
    void (*attention)(const al_kv_geom *g, int layer, int n_heads, float scale,
                      const al_seq_view *seqs, int n_seqs, const float *q, float *out);
    /* Masked LoRA: for rows in ranges, y[row,:] += scale * (B · (A · x[row,:]) + bias).
     * x [T,in], y [T,out], A [r,in], B [out,r], bias [out] or NULL. tmp holds >= T*r floats. */
    void (*lora)(float *y, const float *x, const al_row_range *ranges, int n_ranges,
                 const float *A, const float *B, const float *bias, int in, int out, int r,
                 float scale, float *tmp);
    /* Per row of logits [n,V] (backend memory): log-softmax top-k (sorted, k <= 64) into the host
     * array topk [n,k]; and the greedy argmax into the host array argmax[n] (may be NULL). */
    void (*logprobs_topk)(const float *logits, int n, int V, int k, al_topk_entry *topk, int32_t *argmax);

    /* Threads the backend's host-side work uses (n <= 0: all cores); NULL when it has none to set. */
    void (*set_threads)(int n);

    /* ---- int8 weights (cpu-q8, issue 15) ---- */
    /* Matrix formats whose rows carry their own scale: bytes of one row of K weights (NULL: plain
     * elements of weight_bytes each; see al_ops_matrix_bytes), and the store that writes host
     * [rows, K] f32 in that format into dst (weight_store cannot: it does not know K). */
    size_t (*weight_row_bytes)(int K);
    void (*weight_store_rows)(void *dst, const float *host, size_t rows, int K);
    /* ---- training (alora train, train/): the backward ops. CPU twins in kernels/cpu/train_ops.c;
     * NULL on a backend without them (CUDA for now: the trainer says "not on this backend").
     * Every tensor is f32 in backend memory, weights in the HF [out, in] layout. ---- */
    /* dx [T,K] = alpha * dy [T,N] · w [N,K]  (+ dx if accumulate): the input gradient of matmul */
    void (*matmul_dx)(float *dx, const float *dy, const float *w, int T, int K, int N, float alpha, int accumulate);
    /* dw [N,K] = alpha * dy[T,N]^T · x [T,K]  (+ dw if accumulate): the weight gradient of matmul */
    void (*matmul_dw)(float *dw, const float *dy, const float *x, int T, int K, int N, float alpha, int accumulate);
    /* dx [T,H] += the gradient through out = rmsnorm(x) * w of dy [T,H] (w [H] frozen) */
    void (*rmsnorm_bwd)(float *dx, const float *dy, const float *x, const float *w, int T, int H, float eps);
    /* The transpose of rope in place on dx [T, n_heads, head_dim] (cs as for rope) */
    void (*rope_bwd)(float *dx, const float *cs, int T, int n_heads, int head_dim);
    /* dgate, dup [n] = the gradients of out = silu(gate) * up given dout [n] */
    void (*swiglu_bwd)(float *dgate, float *dup, const float *dout, const float *gate, const float *up, size_t n);
    /* Causal GQA attention over contiguous K/V: queries q [Tq, nh*hd] at positions p0 .. p0+Tq-1
     * attend over k, v [p0+Tq, nkv*hd] (positions 0 ..), out [Tq, nh*hd]. */
    void (*attention_ctg)(float *out, const float *q, const float *k, const float *v, int p0, int Tq, int nh,
                          int nkv, int hd, float scale);
    /* Its backward given dout [Tq, nh*hd]: dq [Tq, nh*hd]; dk, dv [Tq, nkv*hd] for the keys at
     * positions p0 .. p0+Tq-1 only (keys before p0 are constants: no gradient). All overwritten. */
    void (*attention_ctg_bwd)(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                              const float *v, int p0, int Tq, int nh, int nkv, int hd, float scale);
    /* Per row of logits [n,V]: nll[i] = -log softmax(logits[i])[target[i]] (host array) and
     * dlogits [n,V] = (softmax - onehot(target)) * gscale (may alias logits). */
    void (*cross_entropy)(float *dlogits, float *nll, const float *logits, const int32_t *target, int n, int V,
                          float gscale);
    /* The trainer's forward product over f32 weights w [N,K]: y [T,N] = x [T,K] · w^T (+ y if
     * accumulate), as matmul, tuned for its shapes (few-row suffixes: the weights streamed once for
     * up to 32 rows; more rows: the CPU backend's GEMM, x packed once, or sgemm per tile of
     * weight rows where the CPU has neither AVX-512 nor AVX2).
     * NULL: the trainer uses matmul. */
    void (*matmul_fwd)(float *y, const float *x, const float *w, int T, int K, int N, int accumulate);
    /* Causal GQA attention of several sequences sharing one constant prefix (the trainer's examples
     * on one conversation, their rows stacked): kp, vp [np, nkv*hd] the prefix (positions 0 ..
     * np-1); sequence e is rows [r_e, r_e + seg[e]) of q, out [sum seg, nh*hd] and ks, vs
     * [sum seg, nkv*hd] (r_e = seg[0] + .. + seg[e-1]); its query i (position np + i) attends over
     * the prefix and its own keys r_e .. r_e + i. attention_ctg is the case of one sequence. */
    void (*attention_shared)(float *out, const float *q, const float *kp, const float *vp, int np, const float *ks,
                             const float *vs, const int32_t *seg, int n_seg, int nh, int nkv, int hd, float scale);
    /* Its backward given dout: dq [sum seg, nh*hd]; dk, dv [sum seg, nkv*hd] for the sequences' own
     * keys (the prefix is constant: no gradient). All overwritten. */
    void (*attention_shared_bwd)(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *kp,
                                 const float *vp, int np, const float *ks, const float *vs, const int32_t *seg,
                                 int n_seg, int nh, int nkv, int hd, float scale);
    /* Fused products over f32 weights (the trainer's q / k / v, gate / up with the adapters' A):
     * forward y[p] [T, N[p]] = x [T, K] · w[p] [N[p], K]^T (+ y[p] if accumulate) for p < n (<= 8);
     * backward dx [T, K] = sum over p of alpha[p] dy[p] [T, N[p]] · w[p] [N[p], K] (+ dx if
     * accumulate). Bitwise the results of matmul_fwd / matmul_dx called on each in turn. */
    void (*matmul_fwd_n)(const float *x, int T, int K, int n, float *const *y, const float *const *w, const int *N,
                         int accumulate);
    void (*matmul_dx_n)(float *dx, int T, int K, int n, const float *const *dy, const float *const *w, const int *N,
                        const float *alpha, int accumulate);
} al_ops;

/* Bytes of a [rows, K] matrix in the backend's weight format. */
static inline size_t al_ops_matrix_bytes(const al_ops *o, size_t rows, int K)
{
    return o->weight_row_bytes ? rows * o->weight_row_bytes(K) : rows * (size_t)K * (size_t)o->weight_bytes;
}

/* 1 when the backend computes straight from a model's canonical f32 host layout (al_weights_bind);
 * otherwise base weights are stored in its own layout (al_weights_backend_*). */
static inline int al_ops_canonical_weights(const al_ops *o) { return o->host_memory && o->weight_bytes == 4; }

const al_ops *al_ops_cpu(void);
/* The CPU backend with bf16 matrix weights (half the memory; products in f32). */
const al_ops *al_ops_cpu_bf16(void);
/* The CPU backend with int8 matrix weights (cpu-q8): each row of K weights is K int8 values q and a
 * per-row f32 scale s (w = s * q, symmetric, s = max|w| / 127) and the int32 sum of q (see
 * kernels/cpu/q8.c). Few-row matmuls quantize the activations per row to int8 and take exact int32
 * dot products (AVX-512 VNNI / AVX2 / SSE4.2 / C, bitwise the same); more rows widen tiles of
 * weights to f32 and use sgemm. Vectors and LoRA factors stay f32. */
const al_ops *al_ops_cpu_q8(void);
/* The CUDA backend, or NULL (with a logged reason) when not built or no device is present. */
const al_ops *al_ops_cuda(void);
/* Pins the CUDA backend to device dev (an ordinal of this process) for every thread that uses it.
 * Call before its first op; AL_EINVAL when it already runs on another device, AL_ENODEV without
 * CUDA. Without a call the backend uses each thread's current device (0 unless set). */
al_err al_cuda_use_device(int dev);
/* Backend by name: "cpu", "cpu-bf16", "cuda", or "auto" (CUDA when available, else CPU; logged
 * once). */
al_err al_ops_select(const char *name, const al_ops **out);

/* Sets the CPU backend's thread count (OpenBLAS and the op loops); 0 = all cores. */
void al_cpu_set_threads(int n);
int al_cpu_threads(void);
/* The CPU kernels' instruction-set variant in use ("avx512", "avx2", "sse4.2", or "native" in a
 * -march=native build), chosen once from cpuid, or forced with $ALORA_CPU_ISA; and why ("auto",
 * "ALORA_CPU_ISA=avx2", ...). */
const char *al_cpu_isa(void);
const char *al_cpu_isa_reason(void);
/* The variants this binary holds, best first ("avx512 avx2 sse4.2" or "native"). */
const char *al_cpu_isa_built(void);
/* One line naming a backend as status and --version print it: "cpu avx512" (the name and, on the
 * CPU, the kernels' ISA variant) or "cuda". */
void al_ops_describe(const al_ops *ops, char *buf, size_t n);

/* RoPE inverse frequencies (HF convention incl. llama3 scaling) into inv_freq [head_dim/2]. */
void al_rope_inv_freq(float *inv_freq, int head_dim, float theta, int llama3, float factor,
                      float low_freq_factor, float high_freq_factor, int original_max_pos);

/* cs [T, head_dim]: cos then sin of pos[t] * inv_freq[i], the angle computed in float32 as HF does. */
void al_rope_table(float *cs, const int32_t *pos, int T, int head_dim, const float *inv_freq);

#ifdef __cplusplus
}
#endif
#endif
