/* matmul.cu: CUDA GEMM with bf16 weights (a gemv kernel for a few rows, cuBLAS bf16 tensor-core GEMM
 * with fp32 accumulation otherwise) and the masked LoRA shrink/expand in fp32 cuBLAS. */
#include <stdint.h>

#include "kernels/cuda/cuda_ops.h"

#define ALC_GEMV_MAX_T 8

/* One warp per output column n: y[t, n] = sum_k x[t, k] * w[n, k] for t < T (T <= 8). VEC: 16-byte
 * loads of 8 bf16 weights (K % 8 == 0, 16-byte aligned w and x). */
template <bool VEC>
static __global__ void alc_gemv_k(float *y, const float *x, const __nv_bfloat16 *W, int T, int K, int N, int acc)
{
    int n = (int)((blockIdx.x * (size_t)blockDim.x + threadIdx.x) >> 5);
    int lane = threadIdx.x & 31;
    if (n >= N)
        return;
    const __nv_bfloat16 *w = W + (size_t)n * K;
    float a[ALC_GEMV_MAX_T];
#pragma unroll
    for (int t = 0; t < ALC_GEMV_MAX_T; t++)
        a[t] = 0.0f;
    if (VEC) {
#pragma unroll 4
        for (int k0 = lane * 8; k0 < K; k0 += 256) {
            uint4 u = __ldg((const uint4 *)(w + k0));
            const __nv_bfloat162 *h = (const __nv_bfloat162 *)&u;
            float2 w01 = __bfloat1622float2(h[0]), w23 = __bfloat1622float2(h[1]);
            float2 w45 = __bfloat1622float2(h[2]), w67 = __bfloat1622float2(h[3]);
#pragma unroll
            for (int t = 0; t < ALC_GEMV_MAX_T; t++) {
                if (t < T) {
                    const float4 *xr = (const float4 *)(x + (size_t)t * K + k0);
                    float4 x0 = __ldg(xr), x1 = __ldg(xr + 1);
                    a[t] += w01.x * x0.x + w01.y * x0.y + w23.x * x0.z + w23.y * x0.w + w45.x * x1.x + w45.y * x1.y +
                            w67.x * x1.z + w67.y * x1.w;
                }
            }
        }
    } else {
        for (int k = lane; k < K; k += 32) {
            float wv = __bfloat162float(w[k]);
#pragma unroll
            for (int t = 0; t < ALC_GEMV_MAX_T; t++)
                if (t < T)
                    a[t] += wv * x[(size_t)t * K + k];
        }
    }
#pragma unroll
    for (int t = 0; t < ALC_GEMV_MAX_T; t++) {
        if (t < T) {
            float v = a[t];
            for (int o = 16; o > 0; o >>= 1)
                v += __shfl_xor_sync(0xffffffffu, v, o);
            if (lane == 0) {
                float *yp = y + (size_t)t * N + n;
                *yp = acc ? *yp + v : v;
            }
        }
    }
}

void alc_matmul(float *y, const float *x, const void *w, int T, int K, int N, int accumulate)
{
    if (T <= 0 || N <= 0)
        return;
    const __nv_bfloat16 *W = (const __nv_bfloat16 *)w;
    if (T <= ALC_GEMV_MAX_T) {
        int vec = K % 8 == 0 && ((uintptr_t)W % 16) == 0 && ((uintptr_t)x % 16) == 0;
        unsigned blocks = (unsigned)(((size_t)N * 32 + 255) / 256);
        if (vec)
            alc_gemv_k<true><<<blocks, 256, 0, alc_stream()>>>(y, x, W, T, K, N, accumulate);
        else
            alc_gemv_k<false><<<blocks, 256, 0, alc_stream()>>>(y, x, W, T, K, N, accumulate);
        ALC_LAUNCHED();
        return;
    }
    /* activations to bf16, then y^T [N, T] = W [N, K] . x^T on the tensor cores (fp32 accumulate) */
    __nv_bfloat16 *xb = (__nv_bfloat16 *)alc_scratch(ALC_SCR_XBF16, sizeof(__nv_bfloat16) * (size_t)T * K);
    alc_f32_to_bf16(xb, x, (size_t)T * K);
    float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    ALC_CUBLAS(cublasGemmEx(alc_cublas(), CUBLAS_OP_T, CUBLAS_OP_N, N, T, K, &alpha, W, CUDA_R_16BF, K, xb,
                            CUDA_R_16BF, K, &beta, y, CUDA_R_32F, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

static __global__ void alc_bias_k(float *y, const float *bias, int n, int out, float scale)
{
    size_t total = (size_t)n * out;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x)
        y[i] += scale * bias[i % out];
}

void alc_lora(float *y, const float *x, const al_row_range *ranges, int n_ranges, const float *A, const float *B,
              const float *bias, int in, int out, int r, float scale, float *tmp)
{
    cublasHandle_t h = alc_cublas();
    const float one = 1.0f, zero = 0.0f;
    for (int i = 0; i < n_ranges; i++) {
        int n = ranges[i].n;
        if (n <= 0)
            continue;
        const float *xr = x + (size_t)ranges[i].row0 * in;
        float *yr = y + (size_t)ranges[i].row0 * out;
        /* shrink: tmp [n, r] = xr [n, in] . A [r, in]^T ; expand: yr [n, out] += scale * tmp . B [out, r]^T */
        ALC_CUBLAS(cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, r, n, in, &one, A, in, xr, in, &zero, tmp, r));
        ALC_CUBLAS(cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, out, n, r, &scale, B, r, tmp, r, &one, yr, out));
        if (bias) {
            size_t total = (size_t)n * out;
            alc_bias_k<<<alc_blocks(total, 256), 256, 0, alc_stream()>>>(yr, bias, n, out, scale);
            ALC_LAUNCHED();
        }
    }
}
