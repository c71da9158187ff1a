/* clang_cpu.h: force-included into kernels/cpu/ops_cpu.c in the clang fuzz build only: clang 14's
 * __builtin_cpu_supports does not know "f16c" (gcc does), so that one feature is read from cpuid. */
#ifndef ALI_FUZZ_CLANG_CPU_H
#define ALI_FUZZ_CLANG_CPU_H

#include <cpuid.h>
#include <string.h>

static inline int ali_fuzz_cpu_supports(const char *f)
{
    if (!strcmp(f, "f16c")) {
        unsigned a, b, c, d;
        return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
    }
#define ALI_FUZZ_CPU(s)                                                                                          \
    if (!strcmp(f, s))                                                                                         \
        return __builtin_cpu_supports(s);
    ALI_FUZZ_CPU("avx512f")
    ALI_FUZZ_CPU("avx512bw")
    ALI_FUZZ_CPU("avx512cd")
    ALI_FUZZ_CPU("avx512dq")
    ALI_FUZZ_CPU("avx512vl")
    ALI_FUZZ_CPU("avx2")
    ALI_FUZZ_CPU("fma")
    ALI_FUZZ_CPU("bmi")
    ALI_FUZZ_CPU("bmi2")
    ALI_FUZZ_CPU("sse4.2")
    ALI_FUZZ_CPU("popcnt")
    ALI_FUZZ_CPU("ssse3")
#undef ALI_FUZZ_CPU
    return 0;
}
#define __builtin_cpu_supports(f) ali_fuzz_cpu_supports(f)

#endif
