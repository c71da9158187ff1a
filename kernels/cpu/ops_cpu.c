/* ops_cpu.c: the CPU backend's ops table and thread control. */
#include <cblas.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"

#include "kernels/cpu/cpu_ops.h"

static int ali_cpu_nthreads = 0;

void al_cpu_set_threads(int n)
{
    if (n <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (int)c : 1;
    }
    ali_cpu_nthreads = n;
    openblas_set_num_threads(n);
}

int al_cpu_threads(void) { return ali_cpu_nthreads > 0 ? ali_cpu_nthreads : openblas_get_num_threads(); }

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

static const al_ops ali_cpu_ops = {
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
    .scale = ali_cpu_scale,
    .embedding = ali_cpu_embedding,
    .rmsnorm = ali_cpu_rmsnorm,
    .rope = ali_cpu_rope,
    .matmul = ali_cpu_matmul,
    .add_scaled = ali_cpu_add_scaled,
    .swiglu = ali_cpu_swiglu,
    .kv_write = ali_cpu_kv_write,
    .attention = ali_cpu_attention,
    .lora = ali_cpu_lora,
    .logprobs_topk = ali_cpu_logprobs_topk,
    .set_threads = al_cpu_set_threads,
};

const al_ops *al_ops_cpu(void) { return &ali_cpu_ops; }

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
    ali_cpu_bf16_ops = ali_cpu_ops;
    ali_cpu_bf16_ops.name = "cpu-bf16";
    ali_cpu_bf16_ops.weight_bytes = 2;
    ali_cpu_bf16_ops.weight_upload = ali_cpu_bf16_upload;
    ali_cpu_bf16_ops.weight_free = ali_cpu_free;
    ali_cpu_bf16_ops.weight_store = ali_cpu_bf16_store;
    ali_cpu_bf16_ops.embedding = ali_cpu_embedding_bf16;
    ali_cpu_bf16_ops.matmul = ali_cpu_matmul_bf16;
}

const al_ops *al_ops_cpu_bf16(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, ali_cpu_bf16_init);
    return &ali_cpu_bf16_ops;
}
