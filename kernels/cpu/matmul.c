/* matmul.c: CPU GEMM through OpenBLAS (gemv for one row) and the masked LoRA shrink/expand. */
#include <cblas.h>

#include "cpu_ops.h"

void ali_cpu_matmul(float *y, const float *x, const void *w_, int T, int K, int N, int accumulate)
{
    const float *w = w_;
    float beta = accumulate ? 1.0f : 0.0f;
    if (T == 1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, N, K, 1.0f, w, K, x, 1, beta, y, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, N, K, 1.0f, x, K, w, K, beta, y, N);
}

void ali_cpu_lora(float *y, const float *x, const al_row_range *ranges, int n_ranges, const float *A,
                  const float *B, const float *bias, int in, int out, int r, float scale, float *tmp)
{
    for (int i = 0; i < n_ranges; i++) {
        int n = ranges[i].n;
        if (n <= 0)
            continue;
        const float *xr = x + (size_t)ranges[i].row0 * in;
        float *yr = y + (size_t)ranges[i].row0 * out;
        /* shrink: tmp [n, r] = xr [n, in] · A[r, in]^T */
        if (n == 1) {
            cblas_sgemv(CblasRowMajor, CblasNoTrans, r, in, 1.0f, A, in, xr, 1, 0.0f, tmp, 1);
            /* expand: yr [out] += scale * B[out, r] · tmp */
            cblas_sgemv(CblasRowMajor, CblasNoTrans, out, r, scale, B, r, tmp, 1, 1.0f, yr, 1);
        } else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, r, in, 1.0f, xr, in, A, in, 0.0f, tmp, r);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, r, scale, tmp, r, B, r, 1.0f, yr, out);
        }
        if (bias)
            for (int t = 0; t < n; t++)
                for (int o = 0; o < out; o++)
                    yr[(size_t)t * out + o] += scale * bias[o];
    }
}
