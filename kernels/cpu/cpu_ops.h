/* cpu_ops.h: declarations of the CPU twins of every op in kernels.h. */
#ifndef AL_CPU_OPS_H
#define AL_CPU_OPS_H

#include "../kernels.h"

#define AL_TILE_MIN(a, b) ((a) < (b) ? (a) : (b))

void ali_cpu_embedding(float *out, const void *table, const int32_t *ids, int T, int H, float scale);
void ali_cpu_rmsnorm(float *out, const float *x, const float *w, int T, int H, float eps);
void ali_cpu_rope(float *x, const float *cs, int T, int n_heads, int head_dim);
void ali_cpu_matmul(float *y, const float *x, const void *w, int T, int K, int N, int accumulate);
void ali_cpu_add_scaled(float *y, const float *x, float alpha, size_t n);
void ali_cpu_scale(float *y, float alpha, size_t n);
void ali_cpu_swiglu(float *out, const float *gate, const float *up, size_t n);
void ali_cpu_kv_write(const al_kv_geom *g, int layer, const al_seq_view *seqs, int n_seqs, const float *k,
                      const float *v);
void ali_cpu_attention(const al_kv_geom *g, int layer, int n_heads, float scale, const al_seq_view *seqs,
                       int n_seqs, const float *q, float *out);
void ali_cpu_lora(float *y, const float *x, const al_row_range *ranges, int n_ranges, const float *A,
                  const float *B, const float *bias, int in, int out, int r, float scale, float *tmp);
void ali_cpu_logprobs_topk(const float *logits, int n, int V, int k, al_topk_entry *topk, int32_t *argmax);

#endif
