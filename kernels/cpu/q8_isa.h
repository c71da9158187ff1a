/* q8_isa.h: the cpu-q8 ops compiled once per ISA variant (no include guard: included per variant,
 * as kernels/cpu/cpu_isa.h; the names take the variant's suffix when used). */
#ifndef ALI_CPU_ISA_SFX
#error "define ALI_CPU_ISA_SFX (the variant suffix) before including kernels/cpu/q8_isa.h"
#endif
#ifndef ali_cpu_matmul_q8
#define ALI_Q8_CAT_(a, b) a##b
#define ALI_Q8_CAT(a, b) ALI_Q8_CAT_(a, b)
#define ali_cpu_matmul_q8 ALI_Q8_CAT(ali_cpu_matmul_q8, ALI_CPU_ISA_SFX)
#define ali_q8_gemm ALI_Q8_CAT(ali_q8_gemm, ALI_CPU_ISA_SFX)
#endif

/* matmul with cpu-q8 weights (kernels/cpu/q8.h): y [T,N] (+)= x [T,K] · w[N,K]^T. */
void ali_cpu_matmul_q8(float *y, const float *x, const void *w, int T, int K, int N, int accumulate);
/* matmul_q8_gemm.c: the same product for many rows (packed int8 GEMM, same bits); returns 0 (and
 * does nothing) where the variant has no kernel for it (no AVX2). */
int ali_q8_gemm(float *y, const float *x, const void *w, int T, int K, int N, int accumulate);
