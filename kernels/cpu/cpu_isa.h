/* cpu_isa.h: the CPU ops compiled once per ISA variant (no include guard: included per variant). */

/*
 * attention.c, elementwise.c, logprobs.c and matmul.c are compiled once per instruction-set
 * variant (CMake: -march=x86-64-v2 / -v3 / -v4, or -march=native alone) with ALI_CPU_ISA_SFX set
 * to the variant's suffix (_v2, _v3, _v4, _native). The macros below give each variant's ops their
 * own names (ali_cpu_matmul -> ali_cpu_matmul_v3), so the variants link side by side;
 * kernels/cpu/ops_cpu.c includes this header once per compiled variant, with ALI_CPU_ISA_SFX
 * redefined, to declare each one and fill its table (ALI_CPU_ISA_TABLE), and picks one at start.
 */
#ifndef ALI_CPU_ISA_SFX
#error "define ALI_CPU_ISA_SFX (the variant suffix) before including kernels/cpu/cpu_isa.h"
#endif

#ifndef ALI_CPU_ISA_CAT
#define ALI_CPU_ISA_CAT_(a, b) a##b
#define ALI_CPU_ISA_CAT(a, b) ALI_CPU_ISA_CAT_(a, b)
#define ali_cpu_embedding ALI_CPU_ISA_CAT(ali_cpu_embedding, ALI_CPU_ISA_SFX)
#define ali_cpu_embedding_bf16 ALI_CPU_ISA_CAT(ali_cpu_embedding_bf16, ALI_CPU_ISA_SFX)
#define ali_cpu_rmsnorm ALI_CPU_ISA_CAT(ali_cpu_rmsnorm, ALI_CPU_ISA_SFX)
#define ali_cpu_rope ALI_CPU_ISA_CAT(ali_cpu_rope, ALI_CPU_ISA_SFX)
#define ali_cpu_matmul ALI_CPU_ISA_CAT(ali_cpu_matmul, ALI_CPU_ISA_SFX)
#define ali_cpu_matmul_bf16 ALI_CPU_ISA_CAT(ali_cpu_matmul_bf16, ALI_CPU_ISA_SFX)
#define ali_cpu_add_scaled ALI_CPU_ISA_CAT(ali_cpu_add_scaled, ALI_CPU_ISA_SFX)
#define ali_cpu_scale ALI_CPU_ISA_CAT(ali_cpu_scale, ALI_CPU_ISA_SFX)
#define ali_cpu_swiglu ALI_CPU_ISA_CAT(ali_cpu_swiglu, ALI_CPU_ISA_SFX)
#define ali_cpu_kv_write ALI_CPU_ISA_CAT(ali_cpu_kv_write, ALI_CPU_ISA_SFX)
#define ali_cpu_attention ALI_CPU_ISA_CAT(ali_cpu_attention, ALI_CPU_ISA_SFX)
#define ali_cpu_lora ALI_CPU_ISA_CAT(ali_cpu_lora, ALI_CPU_ISA_SFX)
#define ali_cpu_logprobs_topk ALI_CPU_ISA_CAT(ali_cpu_logprobs_topk, ALI_CPU_ISA_SFX)
#define ali_cpu_gemm_n ALI_CPU_ISA_CAT(ali_cpu_gemm_n, ALI_CPU_ISA_SFX)
#define ali_cpu_gemm_dx_n ALI_CPU_ISA_CAT(ali_cpu_gemm_dx_n, ALI_CPU_ISA_SFX)

/* One variant's ops (the entries of al_ops that differ between variants). */
typedef struct ali_cpu_isa {
    const char *name;
    void (*embedding)(float *out, const void *table, const int32_t *ids, int T, int H, float scale);
    void (*embedding_bf16)(float *out, const void *table, const int32_t *ids, int T, int H, float scale);
    void (*rmsnorm)(float *out, const float *x, const float *w, int T, int H, float eps);
    void (*rope)(float *x, const float *cs, int T, int n_heads, int head_dim);
    void (*matmul)(float *y, const float *x, const void *w, int T, int K, int N, int accumulate);
    void (*matmul_bf16)(float *y, const float *x, const void *w, int T, int K, int N, int accumulate);
    void (*add_scaled)(float *y, const float *x, float alpha, size_t n);
    void (*scale)(float *y, float alpha, size_t n);
    void (*swiglu)(float *out, const float *gate, const float *up, size_t n);
    void (*kv_write)(const al_kv_geom *g, int layer, const al_seq_view *seqs, int n_seqs, const float *k,
                     const float *v);
    void (*attention)(const al_kv_geom *g, int layer, int n_heads, float scale, const al_seq_view *seqs,
                      int n_seqs, const float *q, float *out);
    void (*lora)(float *y, const float *x, const al_row_range *ranges, int n_ranges, const float *A,
                 const float *B, const float *bias, int in, int out, int r, float scale, float *tmp);
    void (*logprobs_topk)(const float *logits, int n, int V, int k, al_topk_entry *topk, int32_t *argmax);
} ali_cpu_isa;

#define ALI_CPU_ISA_TABLE(nm)                                                                              \
    {                                                                                                      \
        .name = nm, .embedding = ali_cpu_embedding, .embedding_bf16 = ali_cpu_embedding_bf16,              \
        .rmsnorm = ali_cpu_rmsnorm, .rope = ali_cpu_rope, .matmul = ali_cpu_matmul,                        \
        .matmul_bf16 = ali_cpu_matmul_bf16, .add_scaled = ali_cpu_add_scaled, .scale = ali_cpu_scale,      \
        .swiglu = ali_cpu_swiglu, .kv_write = ali_cpu_kv_write, .attention = ali_cpu_attention,            \
        .lora = ali_cpu_lora, .logprobs_topk = ali_cpu_logprobs_topk,                                      \
    }
#endif

void ali_cpu_embedding(float *out, const void *table, const int32_t *ids, int T, int H, float scale);
void ali_cpu_embedding_bf16(float *out, const void *table, const int32_t *ids, int T, int H, float scale);
void ali_cpu_rmsnorm(float *out, const float *x, const float *w, int T, int H, float eps);
void ali_cpu_rope(float *x, const float *cs, int T, int n_heads, int head_dim);
void ali_cpu_matmul(float *y, const float *x, const void *w, int T, int K, int N, int accumulate);
void ali_cpu_matmul_bf16(float *y, const float *x, const void *w, int T, int K, int N, int accumulate);
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
/* The many-row GEMM of matmul.c (matmul_gemm.h) for the trainer's products: y[p] [T, N[p]] (+)=
 * x [T, K] · w[p] [N[p], K]^T for p < n (<= 8) over f32 weights, x packed once; returns 0 (nothing
 * done) on a variant without it (sse4.2), where the caller uses sgemm. */
int ali_cpu_gemm_n(const float *x, int T, int K, int n, float *const *y, const float *const *w, const int *N,
                   int accumulate);
/* The same for the transposed products: dx [T, K] = sum over p < n (<= 8) of alpha[p] dy[p] [T, N[p]]
 * · w[p] [N[p], K] (+ dx if accumulate), every N[p] > 0; returns 0 on a variant without it. */
int ali_cpu_gemm_dx_n(float *dx, int T, int K, int n, const float *const *dy, const float *const *w, const int *N,
                      const float *alpha, int accumulate);
