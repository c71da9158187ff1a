/* ktest.h: helpers for the CPU-vs-CUDA op tests: backend setup (exit 77 without a device), random
 * data, device copies, bf16 rounding and relative-error checks. */
#ifndef AL_KTEST_H
#define AL_KTEST_H

#include "al_test.h"

#include <math.h>

#include "common/util.h"
#include "kernels/kernels.h"

static const al_ops *KT_CPU, *KT_GPU;

/* Both backends, or exit 77 (skipped) when there is no usable CUDA device. */
static inline void kt_init(void)
{
    KT_CPU = al_ops_cpu();
    KT_GPU = al_ops_cuda();
    if (!KT_GPU) {
        printf("skipped: no usable CUDA backend (no GPU / driver here, or a build without CUDA)\n");
        exit(AL_TEST_SKIP_CODE);
    }
}

static inline float *kt_randn(size_t n, uint64_t seed, float scale)
{
    float *x = malloc(sizeof(float) * (n ? n : 1));
    al_rng r;
    al_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)al_rng_normal(&r) * scale;
    return x;
}

/* Round to the nearest bf16 (even on ties), as the CUDA weight upload does. */
static inline float kt_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7f800000u) != 0x7f800000u)
        u += 0x7fffu + ((u >> 16) & 1u);
    u &= 0xffff0000u;
    memcpy(&f, &u, 4);
    return f;
}

static inline float *kt_bf16_copy(const float *x, size_t n)
{
    float *y = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++)
        y[i] = kt_bf16(x[i]);
    return y;
}

/* Device copy of host floats (backend memory of the CUDA ops). */
static inline float *kt_dev(const float *host, size_t n)
{
    float *d = KT_GPU->alloc(sizeof(float) * (n ? n : 1));
    assert_non_null(d);
    if (n)
        KT_GPU->upload(d, host, sizeof(float) * n);
    return d;
}

static inline float *kt_host(const float *dev, size_t n)
{
    float *h = malloc(sizeof(float) * (n ? n : 1));
    KT_GPU->download(h, dev, sizeof(float) * n);
    return h;
}

/* max |got - want| / max(max |want|, floor) */
static inline double kt_relerr(const float *got, const float *want, size_t n, double floor)
{
    double md = 0, mw = floor;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        if (!(d <= md))
            md = isnan(d) ? INFINITY : d;
        if (fabs(want[i]) > mw)
            mw = fabs(want[i]);
    }
    return md / mw;
}

static inline void kt_expect(const char *what, const float *got, const float *want, size_t n, double tol)
{
    double e = kt_relerr(got, want, n, 1e-30);
    printf("  %-48s rel err %.3g (tol %.3g)\n", what, e, tol);
    if (!(e <= tol))
        fprintf(stderr, "FAIL %s: rel err %g > %g\n", what, e, tol);
    assert_true(e <= tol);
}

#endif
