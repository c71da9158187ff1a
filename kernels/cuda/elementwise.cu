/* elementwise.cu: CUDA embedding (bf16 table), RMSNorm, RoPE, residual add, scale and SwiGLU. */
#include "kernels/cuda/cuda_ops.h"

static __global__ void alc_embedding_k(float *out, const __nv_bfloat16 *table, const int32_t *ids, int H, float scale)
{
    int t = blockIdx.x;
    const __nv_bfloat16 *row = table + (size_t)ids[t] * H;
    float *o = out + (size_t)t * H;
    for (int i = threadIdx.x; i < H; i += blockDim.x)
        o[i] = __bfloat162float(row[i]) * scale;
}

void alc_embedding(float *out, const void *table, const int32_t *ids, int T, int H, float scale)
{
    if (T <= 0)
        return;
    const int32_t *d_ids = (const int32_t *)alc_scratch_upload(ALC_SCR_IDS, ids, sizeof(int32_t) * (size_t)T);
    alc_embedding_k<<<T, 256, 0, alc_stream()>>>(out, (const __nv_bfloat16 *)table, d_ids, H, scale);
    ALC_LAUNCHED();
}

/* Block-wide sum (blockDim.x a multiple of 32, at most 1024). */
static __device__ float alc_block_sum(float v)
{
    __shared__ float part[32];
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    int w = threadIdx.x >> 5, l = threadIdx.x & 31;
    __syncthreads();
    if (l == 0)
        part[w] = v;
    __syncthreads();
    int nw = blockDim.x >> 5;
    v = l < nw ? part[l] : 0.0f;
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

static __global__ void alc_rmsnorm_k(float *out, const float *x, const float *w, int H, float eps)
{
    const float *xr = x + (size_t)blockIdx.x * H;
    float *o = out + (size_t)blockIdx.x * H;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < H; i += blockDim.x)
        ss += xr[i] * xr[i];
    ss = alc_block_sum(ss);
    float inv = 1.0f / sqrtf(ss / (float)H + eps);
    for (int i = threadIdx.x; i < H; i += blockDim.x)
        o[i] = w[i] * (xr[i] * inv);
}

void alc_rmsnorm(float *out, const float *x, const float *w, int T, int H, float eps)
{
    if (T <= 0)
        return;
    int threads = H >= 4096 ? 1024 : H >= 1024 ? 512 : 128;
    alc_rmsnorm_k<<<T, threads, 0, alc_stream()>>>(out, x, w, H, eps);
    ALC_LAUNCHED();
}

static __global__ void alc_rope_k(float *x, const float *cs, int T, int n_heads, int head_dim)
{
    int half = head_dim / 2;
    size_t total = (size_t)T * n_heads * half;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        int d = (int)(i % half);
        size_t th = i / half; /* t * n_heads + h */
        int t = (int)(th / n_heads);
        const float *c = cs + (size_t)t * head_dim;
        float *v = x + th * head_dim;
        float a = v[d], b = v[d + half], cv = c[d], sv = c[half + d];
        v[d] = a * cv - b * sv;
        v[d + half] = b * cv + a * sv;
    }
}

void alc_rope(float *x, const float *cs, int T, int n_heads, int head_dim)
{
    if (T <= 0)
        return;
    const float *d_cs = (const float *)alc_scratch_upload(ALC_SCR_ROPE, cs, sizeof(float) * (size_t)T * head_dim);
    size_t total = (size_t)T * n_heads * (head_dim / 2);
    alc_rope_k<<<alc_blocks(total, 256), 256, 0, alc_stream()>>>(x, d_cs, T, n_heads, head_dim);
    ALC_LAUNCHED();
}

static __global__ void alc_add_scaled_k(float *y, const float *x, float alpha, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        y[i] = alpha == 1.0f ? y[i] + x[i] : y[i] + alpha * x[i];
}

void alc_add_scaled(float *y, const float *x, float alpha, size_t n)
{
    if (!n)
        return;
    alc_add_scaled_k<<<alc_blocks(n, 256), 256, 0, alc_stream()>>>(y, x, alpha, n);
    ALC_LAUNCHED();
}

static __global__ void alc_scale_k(float *y, float alpha, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        y[i] *= alpha;
}

void alc_scale(float *y, float alpha, size_t n)
{
    if (!n)
        return;
    alc_scale_k<<<alc_blocks(n, 256), 256, 0, alc_stream()>>>(y, alpha, n);
    ALC_LAUNCHED();
}

static __global__ void alc_swiglu_k(float *out, const float *gate, const float *up, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void alc_swiglu(float *out, const float *gate, const float *up, size_t n)
{
    if (!n)
        return;
    alc_swiglu_k<<<alc_blocks(n, 256), 256, 0, alc_stream()>>>(out, gate, up, n);
    ALC_LAUNCHED();
}

static __global__ void alc_f32_to_bf16_k(__nv_bfloat16 *dst, const float *src, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __float2bfloat16_rn(src[i]);
}

void alc_f32_to_bf16(__nv_bfloat16 *dst, const float *src, size_t n)
{
    if (!n)
        return;
    alc_f32_to_bf16_k<<<alc_blocks(n, 256), 256, 0, alc_stream()>>>(dst, src, n);
    ALC_LAUNCHED();
}
