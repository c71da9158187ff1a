/* cuda_ops.h: internals of the CUDA backend: error checks, the shared stream / cuBLAS handle,
 * grow-only device scratch and the CUDA twins of every op in kernels.h.
 *
 * Memory contract (same as the CPU backend's, pointers are device memory): activations, KV pools,
 * weights, LoRA factors and logits are device pointers. Step metadata stays on the host: token ids
 * (embedding), the RoPE cos/sin table, sequence views with their block tables, LoRA row ranges and
 * the top-k / argmax outputs. Such host data is packed and copied into device scratch per call.
 * The backend is single-threaded: one stream, one cuBLAS handle, static scratch (callers serialise). */
#ifndef AL_CUDA_OPS_H
#define AL_CUDA_OPS_H

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/kernels.h"

/* A failing CUDA / cuBLAS call is a programmer error here (bad pointer, bad launch): log file:line
 * and the error, then abort. Allocation failures are handled where they happen (NULL returns). */
#define ALC_CHECK(call)                                                                                   \
    do {                                                                                                  \
        cudaError_t alc_e_ = (call);                                                                      \
        if (alc_e_ != cudaSuccess) {                                                                      \
            fprintf(stderr, "alora CUDA error at %s:%d: %s: %s (%d): %s\n", __FILE__, __LINE__, #call,    \
                    cudaGetErrorName(alc_e_), (int)alc_e_, cudaGetErrorString(alc_e_));                   \
            abort();                                                                                      \
        }                                                                                                 \
    } while (0)
#define ALC_CUBLAS(call)                                                                                  \
    do {                                                                                                  \
        cublasStatus_t alc_s_ = (call);                                                                   \
        if (alc_s_ != CUBLAS_STATUS_SUCCESS) {                                                            \
            fprintf(stderr, "alora cuBLAS error at %s:%d: %s: %s (%d)\n", __FILE__, __LINE__, #call,      \
                    cublasGetStatusName(alc_s_), (int)alc_s_);                                            \
            abort();                                                                                      \
        }                                                                                                 \
    } while (0)
/* After a kernel launch: launch-configuration errors abort like any failing call. */
#define ALC_LAUNCHED() ALC_CHECK(cudaGetLastError())

/* The backend's stream and cuBLAS handle (created on first use by al_ops_cuda). */
cudaStream_t alc_stream(void);
cublasHandle_t alc_cublas(void);

/* Grow-only device scratch buffers, one per slot (contents undefined, valid until the next call
 * with the same slot). Aborts when the device is out of memory (scratch is small next to the KV). */
enum {
    ALC_SCR_IDS = 0,   /* embedding ids */
    ALC_SCR_ROPE,      /* rope cos/sin table */
    ALC_SCR_XBF16,     /* matmul activations in bf16 */
    ALC_SCR_KVW_META,  /* kv_write: packed sequence views + block tables */
    ALC_SCR_ATTN_META, /* attention: packed sequence views + block tables + work items */
    ALC_SCR_ATTN_PART, /* split-K partial results */
    ALC_SCR_TOPK,      /* top-k results */
    ALC_SCR_STAGE,     /* weight upload staging */
    ALC_SCR_COUNT
};
void *alc_scratch(int slot, size_t bytes);
/* Copies host bytes into the slot's scratch on the stream (skipped when the previous upload to this
 * slot had the same bytes); returns the device pointer. */
void *alc_scratch_upload(int slot, const void *host, size_t bytes);

static inline unsigned alc_blocks(size_t n, unsigned threads)
{
    size_t b = (n + threads - 1) / threads;
    return (unsigned)(b > 65535u * 32u ? 65535u * 32u : (b ? b : 1));
}

/* ops */
void alc_embedding(float *out, const void *table, const int32_t *ids, int T, int H, float scale);
void alc_rmsnorm(float *out, const float *x, const float *w, int T, int H, float eps);
void alc_rope(float *x, const float *cs, int T, int n_heads, int head_dim);
void alc_matmul(float *y, const float *x, const void *w, int T, int K, int N, int accumulate);
void alc_add_scaled(float *y, const float *x, float alpha, size_t n);
void alc_scale(float *y, float alpha, size_t n);
void alc_swiglu(float *out, const float *gate, const float *up, size_t n);
void alc_kv_write(const al_kv_geom *g, int layer, const al_seq_view *seqs, int n_seqs, const float *k,
                  const float *v);
void alc_attention(const al_kv_geom *g, int layer, int n_heads, float scale, const al_seq_view *seqs, int n_seqs,
                   const float *q, float *out);
void alc_lora(float *y, const float *x, const al_row_range *ranges, int n_ranges, const float *A, const float *B,
              const float *bias, int in, int out, int r, float scale, float *tmp);
void alc_logprobs_topk(const float *logits, int n, int V, int k, al_topk_entry *topk, int32_t *argmax);
/* f32 -> bf16 (round to nearest even) of n device floats. */
void alc_f32_to_bf16(__nv_bfloat16 *dst, const float *src, size_t n);

#endif
