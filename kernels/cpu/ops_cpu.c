/* ops_cpu.c: the CPU backend's ops table, its ISA variant chosen at start, and thread control. */
#include <assert.h>
#include <cblas.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#if defined(__x86_64__)
#include <cpuid.h>
#endif

#include "common/log.h"
#include "common/util.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/q8.h"
#include "kernels/cpu/train_ops.h"

/* ---- the ISA variants compiled into this build (CMake defines ALI_CPU_HAVE_<V>) ---------------- */

#ifdef ALI_CPU_HAVE_NATIVE
#define ALI_CPU_ISA_SFX _native
#include "kernels/cpu/cpu_isa.h"
static const ali_cpu_isa ali_isa_native = ALI_CPU_ISA_TABLE("native");
#include "kernels/cpu/q8_isa.h"
static void (*const ali_q8mm_native)(float *, const float *, const void *, int, int, int, int) = ali_cpu_matmul_q8;
void ali_cpu_train_ops_native(al_ops *o);
#undef ALI_CPU_ISA_SFX
#endif
#ifdef ALI_CPU_HAVE_V4
#define ALI_CPU_ISA_SFX _v4
#include "kernels/cpu/cpu_isa.h"
static const ali_cpu_isa ali_isa_v4 = ALI_CPU_ISA_TABLE("avx512");
#include "kernels/cpu/q8_isa.h"
static void (*const ali_q8mm_v4)(float *, const float *, const void *, int, int, int, int) = ali_cpu_matmul_q8;
void ali_cpu_train_ops_v4(al_ops *o);
#undef ALI_CPU_ISA_SFX
#endif
#ifdef ALI_CPU_HAVE_V3
#define ALI_CPU_ISA_SFX _v3
#include "kernels/cpu/cpu_isa.h"
static const ali_cpu_isa ali_isa_v3 = ALI_CPU_ISA_TABLE("avx2");
#include "kernels/cpu/q8_isa.h"
static void (*const ali_q8mm_v3)(float *, const float *, const void *, int, int, int, int) = ali_cpu_matmul_q8;
void ali_cpu_train_ops_v3(al_ops *o);
#undef ALI_CPU_ISA_SFX
#endif
#ifdef ALI_CPU_HAVE_V2
#define ALI_CPU_ISA_SFX _v2
#include "kernels/cpu/cpu_isa.h"
static const ali_cpu_isa ali_isa_v2 = ALI_CPU_ISA_TABLE("sse4.2");
#include "kernels/cpu/q8_isa.h"
static void (*const ali_q8mm_v2)(float *, const float *, const void *, int, int, int, int) = ali_cpu_matmul_q8;
void ali_cpu_train_ops_v2(al_ops *o);
#undef ALI_CPU_ISA_SFX
#endif

/* Whether this CPU runs a variant: x86-64-v4 = AVX-512 F/BW/CD/DQ/VL, v3 = AVX2 + FMA + BMI1/2 +
 * F16C + LZCNT + MOVBE, v2 = SSE4.2 + POPCNT + SSSE3 (+ CX16, LAHF). */
#if defined(__x86_64__)
/* F16C from cpuid leaf 1 (clang 14's __builtin_cpu_supports does not know "f16c"; gcc's does). */
static int ali_cpu_has_f16c(void)
{
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}
#endif

static int ali_cpu_runs(const ali_cpu_isa *v)
{
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (!strcmp(v->name, "avx512"))
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx512vl") && ali_cpu_runs(&(ali_cpu_isa){.name = "avx2"});
    if (!strcmp(v->name, "avx2"))
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi") &&
               __builtin_cpu_supports("bmi2") && ali_cpu_has_f16c() &&
               ali_cpu_runs(&(ali_cpu_isa){.name = "sse4.2"});
    if (!strcmp(v->name, "sse4.2"))
        return __builtin_cpu_supports("sse4.2") && __builtin_cpu_supports("popcnt") &&
               __builtin_cpu_supports("ssse3");
#endif
    return 1; /* native: built for this machine */
}

static const ali_cpu_isa *const ali_isas[] = {
#ifdef ALI_CPU_HAVE_NATIVE
    &ali_isa_native,
#endif
#ifdef ALI_CPU_HAVE_V4
    &ali_isa_v4,
#endif
#ifdef ALI_CPU_HAVE_V3
    &ali_isa_v3,
#endif
#ifdef ALI_CPU_HAVE_V2
    &ali_isa_v2,
#endif
};

static const ali_cpu_isa *ali_isa;
static char ali_isa_why[160];

/* The best variant this CPU runs, or the one $ALORA_CPU_ISA names (avx512 | avx2 | sse4.2 |
 * native; a variant the CPU cannot run, or one not built, is refused with a warning). */
static void ali_isa_pick(void)
{
    const char *want = getenv("ALORA_CPU_ISA");
    if (want && *want && strcmp(want, "auto")) {
        for (size_t i = 0; i < AL_ARRAY_LEN(ali_isas); i++)
            if (!strcmp(ali_isas[i]->name, want)) {
                if (ali_cpu_runs(ali_isas[i])) {
                    ali_isa = ali_isas[i];
                    snprintf(ali_isa_why, sizeof ali_isa_why, "ALORA_CPU_ISA=%s", want);
                    return;
                }
                AL_WARN("ALORA_CPU_ISA=%s: this CPU cannot run it; choosing automatically", want);
                break;
            }
        if (!ali_isa) {
            char have[96] = "";
            for (size_t i = 0; i < AL_ARRAY_LEN(ali_isas); i++)
                snprintf(have + strlen(have), sizeof have - strlen(have), "%s%s", i ? ", " : "", ali_isas[i]->name);
            AL_WARN("ALORA_CPU_ISA=%s: not a variant of this build (%s); choosing automatically", want, have);
        }
    }
    for (size_t i = 0; i < AL_ARRAY_LEN(ali_isas); i++)
        if (ali_cpu_runs(ali_isas[i])) {
            ali_isa = ali_isas[i];
            snprintf(ali_isa_why, sizeof ali_isa_why, "auto");
            return;
        }
    ali_isa = ali_isas[AL_ARRAY_LEN(ali_isas) - 1]; /* the baseline: x86-64-v2 is the build's floor */
    snprintf(ali_isa_why, sizeof ali_isa_why, "baseline");
}

/* ---- threads ------------------------------------------------------------------------------------ */

static int ali_cpu_nthreads = 0;

/* OpenBLAS always runs single-threaded: the ops split their work over the pool in a fixed
 * partition (each output element computed by one single-threaded call whatever the thread
 * count), so results never depend on the thread count or on OpenBLAS's own threading (which,
 * with some core types, is not bitwise thread-invariant). */
static void ali_cpu_init_once(void)
{
    openblas_set_num_threads(1);
    ali_isa_pick();
}

static pthread_once_t ali_cpu_once = PTHREAD_ONCE_INIT;
static void ali_cpu_init(void) { pthread_once(&ali_cpu_once, ali_cpu_init_once); }

void al_cpu_set_threads(int n)
{
    ali_cpu_init();
    if (n <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (int)c : 1;
    }
    ali_cpu_nthreads = n;
}

int al_cpu_threads(void)
{
    if (ali_cpu_nthreads > 0)
        return ali_cpu_nthreads;
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    return c > 0 ? (int)c : 1;
}

const char *ali_cpu_isa_name(void)
{
    ali_cpu_init();
    return ali_isa->name;
}

const char *al_cpu_isa(void) { return ali_cpu_isa_name(); }

const char *al_cpu_isa_reason(void)
{
    ali_cpu_init();
    return ali_isa_why;
}

const char *al_cpu_isa_built(void)
{
    static char built[96];
    if (!built[0])
        for (size_t i = 0; i < AL_ARRAY_LEN(ali_isas); i++)
            snprintf(built + strlen(built), sizeof built - strlen(built), "%s%s", i ? " " : "", ali_isas[i]->name);
    return built;
}

static void *ali_cpu_alloc(size_t bytes) { return ali_aligned_alloc(bytes); }
static void ali_cpu_free(void *p) { ali_aligned_free(p); }
static void ali_cpu_memcpy(void *dst, const void *src, size_t bytes)
{
    if (bytes)
        memcpy(dst, src, bytes);
}
static void ali_cpu_sync(void) {}
static void *ali_cpu_weight_upload(const float *host, size_t n, int matrix) { return (void *)host; }
static void ali_cpu_weight_free(void *p) {}
static void ali_cpu_weight_store(void *dst, const float *host, size_t n, int matrix)
{
    (void)matrix;
    if (dst != host)
        ali_cpu_memcpy(dst, host, n * sizeof(float));
}

static al_ops ali_cpu_ops;

/* The training ops of the variant in use (kernels/cpu/train_ops.c is compiled per variant too). */
static void ali_cpu_train_ops_pick(al_ops *o)
{
#ifdef ALI_CPU_HAVE_NATIVE
    if (ali_isa == &ali_isa_native)
        ali_cpu_train_ops_native(o);
#endif
#ifdef ALI_CPU_HAVE_V4
    if (ali_isa == &ali_isa_v4)
        ali_cpu_train_ops_v4(o);
#endif
#ifdef ALI_CPU_HAVE_V3
    if (ali_isa == &ali_isa_v3)
        ali_cpu_train_ops_v3(o);
#endif
#ifdef ALI_CPU_HAVE_V2
    if (ali_isa == &ali_isa_v2)
        ali_cpu_train_ops_v2(o);
#endif
}

static void ali_cpu_ops_init(void)
{
    ali_cpu_init();
    const ali_cpu_isa *v = ali_isa;
    ali_cpu_ops = (al_ops){
        .name = "cpu",
        .host_memory = 1,
        .weight_bytes = 4,
        .alloc = ali_cpu_alloc,
        .free = ali_cpu_free,
        .upload = ali_cpu_memcpy,
        .download = ali_cpu_memcpy,
        .copy = ali_cpu_memcpy,
        .sync = ali_cpu_sync,
        .weight_upload = ali_cpu_weight_upload,
        .weight_free = ali_cpu_weight_free,
        .weight_store = ali_cpu_weight_store,
        .scale = v->scale,
        .embedding = v->embedding,
        .rmsnorm = v->rmsnorm,
        .rope = v->rope,
        .matmul = v->matmul,
        .add_scaled = v->add_scaled,
        .swiglu = v->swiglu,
        .kv_write = v->kv_write,
        .attention = v->attention,
        .lora = v->lora,
        .logprobs_topk = v->logprobs_topk,
        .set_threads = al_cpu_set_threads,
    };
    ali_cpu_train_ops_pick(&ali_cpu_ops);
}

const al_ops *al_ops_cpu(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, ali_cpu_ops_init);
    return &ali_cpu_ops;
}

/* ---- cpu-bf16: the same ops with bf16 matrix weights (half the memory and bandwidth; computed
 * in f32, exact for bf16 checkpoints). Vectors and LoRA factors stay f32. */

static void ali_cpu_bf16_store(void *dst, const float *host, size_t n, int matrix)
{
    if (!matrix) {
        ali_cpu_weight_store(dst, host, n, 0);
        return;
    }
    uint16_t *d = dst;
    for (size_t i = 0; i < n; i++)
        d[i] = ali_f32_to_bf16(host[i]);
}

/* A copy in the backend's format (tests, benches; the engine stores base weights itself). */
static void *ali_cpu_bf16_upload(const float *host, size_t n, int matrix)
{
    void *d = ali_aligned_alloc(n * (matrix ? sizeof(uint16_t) : sizeof(float)) + 64);
    if (d)
        ali_cpu_bf16_store(d, host, n, matrix);
    return d;
}

static al_ops ali_cpu_bf16_ops;

/* The CPU table with the four entries that see matrix weights replaced. */
static void ali_cpu_bf16_init(void)
{
    ali_cpu_bf16_ops = *al_ops_cpu();
    ali_cpu_bf16_ops.name = "cpu-bf16";
    ali_cpu_bf16_ops.weight_bytes = 2;
    ali_cpu_bf16_ops.weight_upload = ali_cpu_bf16_upload;
    ali_cpu_bf16_ops.weight_free = ali_cpu_free;
    ali_cpu_bf16_ops.weight_store = ali_cpu_bf16_store;
    ali_cpu_bf16_ops.embedding = ali_isa->embedding_bf16;
    ali_cpu_bf16_ops.matmul = ali_isa->matmul_bf16;
}

const al_ops *al_ops_cpu_bf16(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, ali_cpu_bf16_init);
    return &ali_cpu_bf16_ops;
}

/* ---- cpu-q8: the same ops with int8 matrix weights (kernels/cpu/q8.h: a quarter of the f32 memory
 * and bandwidth). Vectors and LoRA factors stay f32; the embedding table (and a tied lm_head) is
 * int8 too. */

static size_t ali_cpu_q8_row_bytes(int K) { return ali_q8_row_bytes(K); }

/* Vectors only: a matrix needs its row length (weight_store_rows). */
static void ali_cpu_q8_store(void *dst, const float *host, size_t n, int matrix)
{
    assert(!matrix && "cpu-q8 stores matrices with weight_store_rows");
    ali_cpu_weight_store(dst, host, n, 0);
}

/* A copy of a vector (tests, benches); NULL for a matrix, which needs its row length. */
static void *ali_cpu_q8_upload(const float *host, size_t n, int matrix)
{
    if (matrix)
        return NULL;
    void *d = ali_aligned_alloc(n * sizeof(float) + 64);
    if (d)
        ali_cpu_weight_store(d, host, n, 0);
    return d;
}

static al_ops ali_cpu_q8_ops;

static void ali_cpu_q8_init(void)
{
    ali_cpu_q8_ops = *al_ops_cpu();
    ali_cpu_q8_ops.name = "cpu-q8";
    ali_cpu_q8_ops.weight_bytes = 1;
    ali_cpu_q8_ops.weight_upload = ali_cpu_q8_upload;
    ali_cpu_q8_ops.weight_free = ali_cpu_free;
    ali_cpu_q8_ops.weight_store = ali_cpu_q8_store;
    ali_cpu_q8_ops.weight_row_bytes = ali_cpu_q8_row_bytes;
    ali_cpu_q8_ops.weight_store_rows = ali_q8_store_rows;
    ali_cpu_q8_ops.embedding = ali_cpu_q8_embedding;
#ifdef ALI_CPU_HAVE_NATIVE
    if (ali_isa == &ali_isa_native)
        ali_cpu_q8_ops.matmul = ali_q8mm_native;
#endif
#ifdef ALI_CPU_HAVE_V4
    if (ali_isa == &ali_isa_v4)
        ali_cpu_q8_ops.matmul = ali_q8mm_v4;
#endif
#ifdef ALI_CPU_HAVE_V3
    if (ali_isa == &ali_isa_v3)
        ali_cpu_q8_ops.matmul = ali_q8mm_v3;
#endif
#ifdef ALI_CPU_HAVE_V2
    if (ali_isa == &ali_isa_v2)
        ali_cpu_q8_ops.matmul = ali_q8mm_v2;
#endif
}

const al_ops *al_ops_cpu_q8(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, ali_cpu_q8_init);
    return &ali_cpu_q8_ops;
}
