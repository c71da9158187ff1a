/* elementwise.c: CPU embedding, RMSNorm, RoPE, residual add and SwiGLU. */
#include <math.h>
#include <string.h>

#include "kernels/cpu/cpu_ops.h"

void ali_cpu_embedding_bf16(float *out, const void *table_, const int32_t *ids, int T, int H, float scale)
{
    const uint16_t *table = table_;
    for (int t = 0; t < T; t++) {
        float *o = out + (size_t)t * H;
        ali_bf16_widen(o, table + (size_t)ids[t] * H, (size_t)H);
        if (scale != 1.0f)
            for (int i = 0; i < H; i++)
                o[i] *= scale;
    }
}

void ali_cpu_embedding(float *out, const void *table_, const int32_t *ids, int T, int H, float scale)
{
    const float *table = table_;
    for (int t = 0; t < T; t++) {
        const float *row = table + (size_t)ids[t] * H;
        float *o = out + (size_t)t * H;
        if (scale == 1.0f)
            memcpy(o, row, sizeof(float) * (size_t)H);
        else
            for (int i = 0; i < H; i++)
                o[i] = row[i] * scale;
    }
}

void ali_cpu_rmsnorm(float *out, const float *x, const float *w, int T, int H, float eps)
{
    for (int t = 0; t < T; t++) {
        const float *xr = x + (size_t)t * H;
        float *o = out + (size_t)t * H;
        float ss = 0.0f;
        for (int i = 0; i < H; i++)
            ss += xr[i] * xr[i];
        float inv = 1.0f / sqrtf(ss / (float)H + eps);
        for (int i = 0; i < H; i++)
            o[i] = w[i] * (xr[i] * inv);
    }
}

void ali_cpu_rope(float *x, const float *cs, int T, int n_heads, int head_dim)
{
    int half = head_dim / 2;
    for (int t = 0; t < T; t++) {
        const float *c = cs + (size_t)t * head_dim, *sn = c + half;
        for (int h = 0; h < n_heads; h++) {
            float *v = x + ((size_t)t * n_heads + h) * head_dim;
            for (int i = 0; i < half; i++) {
                float a = v[i], b = v[i + half];
                v[i] = a * c[i] - b * sn[i];
                v[i + half] = b * c[i] + a * sn[i];
            }
        }
    }
}

void ali_cpu_add_scaled(float *y, const float *x, float alpha, size_t n)
{
    if (alpha == 1.0f)
        for (size_t i = 0; i < n; i++)
            y[i] += x[i];
    else
        for (size_t i = 0; i < n; i++)
            y[i] += alpha * x[i];
}

void ali_cpu_scale(float *y, float alpha, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] *= alpha;
}

void ali_cpu_swiglu(float *out, const float *gate, const float *up, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + ali_expf(-g)) * up[i];
    }
}
