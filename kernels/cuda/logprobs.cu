/* logprobs.cu: CUDA log-softmax top-k (k block-wide selection rounds) and greedy argmax per logits row. */
#include <math.h>
#include <string.h>

#include "kernels/cuda/cuda_ops.h"

#define ALC_TOPK_THREADS 1024

/* (v, i) ranks before (w, j): larger value first, equal values by lower id (the CPU's order). */
static __device__ __forceinline__ bool alc_before(float v, int i, float w, int j)
{
    if (i < 0)
        return false;
    if (j < 0)
        return true;
    return v > w || (v == w && i < j);
}

static __device__ void alc_block_best(float &v, int &i)
{
    __shared__ float sv[32];
    __shared__ int si[32];
    for (int o = 16; o > 0; o >>= 1) {
        float w = __shfl_xor_sync(0xffffffffu, v, o);
        int j = __shfl_xor_sync(0xffffffffu, i, o);
        if (alc_before(w, j, v, i)) {
            v = w;
            i = j;
        }
    }
    int wid = threadIdx.x >> 5, lane = threadIdx.x & 31;
    __syncthreads();
    if (lane == 0) {
        sv[wid] = v;
        si[wid] = i;
    }
    __syncthreads();
    int nw = blockDim.x >> 5;
    v = lane < nw ? sv[lane] : -INFINITY;
    i = lane < nw ? si[lane] : -1;
    for (int o = 16; o > 0; o >>= 1) {
        float w = __shfl_xor_sync(0xffffffffu, v, o);
        int j = __shfl_xor_sync(0xffffffffu, i, o);
        if (alc_before(w, j, v, i)) {
            v = w;
            i = j;
        }
    }
}

static __device__ double alc_block_sum_d(double x)
{
    __shared__ double part[32];
    for (int o = 16; o > 0; o >>= 1)
        x += __shfl_xor_sync(0xffffffffu, x, o);
    int wid = threadIdx.x >> 5, lane = threadIdx.x & 31;
    __syncthreads();
    if (lane == 0)
        part[wid] = x;
    __syncthreads();
    int nw = blockDim.x >> 5;
    x = lane < nw ? part[lane] : 0.0;
    for (int o = 16; o > 0; o >>= 1)
        x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

static __global__ void alc_topk_k(const float *logits, int V, int k, al_topk_entry *topk, int32_t *argmax)
{
    const float *l = logits + (size_t)blockIdx.x * V;
    float bv = -INFINITY;
    int bi = -1;
    for (int i = threadIdx.x; i < V; i += blockDim.x)
        if (alc_before(l[i], i, bv, bi)) {
            bv = l[i];
            bi = i;
        }
    alc_block_best(bv, bi);
    if (threadIdx.x == 0)
        argmax[blockIdx.x] = bi < 0 ? 0 : bi;
    if (k <= 0)
        return;
    const float m = bv;
    double s = 0.0;
    for (int i = threadIdx.x; i < V; i += blockDim.x)
        s += exp((double)l[i] - (double)m);
    s = alc_block_sum_d(s);
    const float lse = m + (float)log(s);
    al_topk_entry *out = topk + (size_t)blockIdx.x * k;
    float pv = bv;
    int pi = bi;
    for (int r = 0; r < k; r++) {
        if (r > 0) {
            float cv = -INFINITY;
            int ci = -1;
            if (pi >= 0)
                for (int i = threadIdx.x; i < V; i += blockDim.x) {
                    float v = l[i];
                    if (alc_before(pv, pi, v, i) && alc_before(v, i, cv, ci)) {
                        cv = v;
                        ci = i;
                    }
                }
            alc_block_best(cv, ci);
            pv = cv;
            pi = ci;
        }
        if (threadIdx.x == 0) {
            out[r].id = pi;
            out[r].logprob = pi >= 0 ? pv - lse : -INFINITY;
        }
    }
}

void alc_logprobs_topk(const float *logits, int n, int V, int k, al_topk_entry *topk, int32_t *argmax)
{
    if (n <= 0)
        return;
    if (k < 0)
        k = 0;
    size_t tk_bytes = sizeof(al_topk_entry) * (size_t)n * k, am_bytes = sizeof(int32_t) * (size_t)n;
    char *d = (char *)alc_scratch(ALC_SCR_TOPK, tk_bytes + am_bytes + 16);
    al_topk_entry *d_topk = (al_topk_entry *)d;
    int32_t *d_am = (int32_t *)(d + tk_bytes);
    alc_topk_k<<<n, ALC_TOPK_THREADS, 0, alc_stream()>>>(logits, V, k, d_topk, d_am);
    ALC_LAUNCHED();
    if (k > 0)
        ALC_CHECK(cudaMemcpyAsync(topk, d_topk, tk_bytes, cudaMemcpyDeviceToHost, alc_stream()));
    if (argmax)
        ALC_CHECK(cudaMemcpyAsync(argmax, d_am, am_bytes, cudaMemcpyDeviceToHost, alc_stream()));
    ALC_CHECK(cudaStreamSynchronize(alc_stream()));
}
