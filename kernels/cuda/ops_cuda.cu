/* ops_cuda.cu: the CUDA backend's ops table: device detection, stream + cuBLAS handle, memory entries,
 * weight upload (bf16 matrices, f32 vectors) and grow-only device scratch. */
#include <string.h>

#include "kernels/cuda/cuda_ops.h"

static int alc_state = -1; /* -1 unknown, 0 no device, 1 usable */
static cudaStream_t alc_strm;
static cublasHandle_t alc_blas;
static int alc_dev = -1;                /* al_cuda_use_device; -1 = each thread's current device */
static int alc_dev_used = -1;           /* the device the stream was created on */
static __thread int alc_thread_dev = -1; /* this thread's binding to alc_dev */

/* Binds the calling thread to the pinned device (cheap after the first call per thread). */
static void alc_bind(void)
{
    if (alc_dev >= 0 && alc_thread_dev != alc_dev) {
        ALC_CHECK(cudaSetDevice(alc_dev));
        alc_thread_dev = alc_dev;
    }
}

/* Plugin entry (kernels/backend.c: al_cuda_use_device): an al_err, the reason in msg. */
extern "C" __attribute__((visibility("default"))) int alc_plugin_use_device(int dev, char *msg, size_t cap)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || dev < 0 || dev >= n) {
        cudaGetLastError();
        snprintf(msg, cap, "CUDA device %d is not usable here (%d visible)", dev, n);
        return AL_ENODEV;
    }
    if (alc_dev_used >= 0 && alc_dev_used != dev) {
        snprintf(msg, cap, "the CUDA backend already runs on device %d, not %d", alc_dev_used, dev);
        return AL_EINVAL;
    }
    alc_dev = dev;
    alc_bind();
    return AL_OK;
}

cudaStream_t alc_stream(void)
{
    alc_bind();
    if (!alc_strm) {
        ALC_CHECK(cudaGetDevice(&alc_dev_used));
        ALC_CHECK(cudaStreamCreate(&alc_strm)); /* blocking: orders with the legacy default stream */
    }
    return alc_strm;
}

cublasHandle_t alc_cublas(void)
{
    if (!alc_blas) {
        cudaStream_t s = alc_stream(); /* binds the device first: the handle lives on it */
        ALC_CUBLAS(cublasCreate(&alc_blas));
        ALC_CUBLAS(cublasSetStream(alc_blas, s));
        /* plain fp32 for the f32 GEMMs (LoRA): no TF32 down-conversion */
        ALC_CUBLAS(cublasSetMathMode(alc_blas, CUBLAS_DEFAULT_MATH));
    }
    return alc_blas;
}

/* --- scratch --- */

static void *alc_scr[ALC_SCR_COUNT];
static size_t alc_scr_cap[ALC_SCR_COUNT];
static void *alc_scr_last[ALC_SCR_COUNT]; /* host copy of the last upload, for de-duplication */
static size_t alc_scr_last_n[ALC_SCR_COUNT], alc_scr_last_cap[ALC_SCR_COUNT];
static int alc_scr_last_ok[ALC_SCR_COUNT];

void *alc_scratch(int slot, size_t bytes)
{
    if (bytes > alc_scr_cap[slot]) {
        size_t cap = alc_scr_cap[slot] ? alc_scr_cap[slot] : 4096;
        while (cap < bytes)
            cap *= 2;
        alc_stream(); /* binds the device */
        if (alc_scr[slot])
            ALC_CHECK(cudaFree(alc_scr[slot])); /* synchronises: no kernel still reads it */
        cudaError_t e = cudaMalloc(&alc_scr[slot], cap);
        if (e != cudaSuccess) {
            fprintf(stderr, "alora CUDA: cannot allocate %zu bytes of scratch: %s\n", cap, cudaGetErrorString(e));
            abort();
        }
        alc_scr_cap[slot] = cap;
        alc_scr_last_ok[slot] = 0;
    }
    return alc_scr[slot];
}

void *alc_scratch_upload(int slot, const void *host, size_t bytes)
{
    void *d = alc_scratch(slot, bytes);
    if (alc_scr_last_ok[slot] && alc_scr_last_n[slot] == bytes && !memcmp(alc_scr_last[slot], host, bytes))
        return d;
    if (bytes)
        ALC_CHECK(cudaMemcpyAsync(d, host, bytes, cudaMemcpyHostToDevice, alc_stream()));
    if (bytes > alc_scr_last_cap[slot]) {
        free(alc_scr_last[slot]);
        alc_scr_last[slot] = malloc(bytes);
        alc_scr_last_cap[slot] = alc_scr_last[slot] ? bytes : 0;
    }
    alc_scr_last_ok[slot] = alc_scr_last[slot] != NULL;
    if (alc_scr_last_ok[slot]) {
        memcpy(alc_scr_last[slot], host, bytes);
        alc_scr_last_n[slot] = bytes;
    }
    return d;
}

/* --- memory entries --- */

static void *alc_alloc(size_t bytes)
{
    void *p = NULL;
    if (bytes == 0)
        bytes = 256;
    alc_stream(); /* binds the device */
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess) {
        cudaGetLastError(); /* not sticky: clear it */
        return NULL;
    }
    ALC_CHECK(cudaMemsetAsync(p, 0, bytes, alc_stream()));
    return p;
}

static void alc_free(void *p)
{
    if (p)
        ALC_CHECK(cudaFree(p));
}

static void alc_upload(void *dst, const void *src, size_t bytes)
{
    if (!bytes)
        return;
    ALC_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, alc_stream()));
    ALC_CHECK(cudaStreamSynchronize(alc_stream())); /* the caller may reuse src at once */
}

static void alc_download(void *dst, const void *src, size_t bytes)
{
    if (!bytes)
        return;
    ALC_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, alc_stream()));
    ALC_CHECK(cudaStreamSynchronize(alc_stream()));
}

static void alc_copy(void *dst, const void *src, size_t bytes)
{
    if (bytes)
        ALC_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, alc_stream()));
}

static void alc_sync(void) { ALC_CHECK(cudaStreamSynchronize(alc_stream())); }

#define ALC_STAGE_FLOATS ((size_t)16 << 20) /* 64 MB of f32 per staged chunk */

static void alc_weight_store(void *d, const float *host, size_t n, int matrix)
{
    if (!matrix) {
        alc_upload(d, host, n * sizeof(float));
        return;
    }
    if (!n)
        return;
    float *stage = (float *)alc_scratch(ALC_SCR_STAGE, sizeof(float) * (n < ALC_STAGE_FLOATS ? n : ALC_STAGE_FLOATS));
    for (size_t off = 0; off < n; off += ALC_STAGE_FLOATS) {
        size_t c = n - off < ALC_STAGE_FLOATS ? n - off : ALC_STAGE_FLOATS;
        ALC_CHECK(cudaMemcpyAsync(stage, host + off, c * sizeof(float), cudaMemcpyHostToDevice, alc_stream()));
        alc_f32_to_bf16((__nv_bfloat16 *)d + off, stage, c);
    }
    ALC_CHECK(cudaStreamSynchronize(alc_stream())); /* the caller may reuse host at once */
}

static void *alc_weight_upload(const float *host, size_t n, int matrix)
{
    void *d = NULL;
    size_t bytes = n * (matrix ? sizeof(__nv_bfloat16) : sizeof(float));
    alc_stream(); /* binds the device */
    if (cudaMalloc(&d, bytes ? bytes : 256) != cudaSuccess) {
        cudaGetLastError();
        return NULL;
    }
    alc_weight_store(d, host, n, matrix);
    return d;
}

static void alc_weight_free(void *p) { alc_free(p); }

static al_ops alc_ops;

/* Plugin entry (kernels/backend.c: al_ops_cuda): the ops table, or NULL without a usable device. */
extern "C" __attribute__((visibility("default"))) const al_ops *alc_plugin_ops(void)
{
    if (alc_state < 0) {
        int n = 0;
        cudaError_t e = cudaGetDeviceCount(&n);
        if (e != cudaSuccess || n <= 0) {
            if (e != cudaSuccess)
                fprintf(stderr, "alora: CUDA: no device (%s: %s)\n", cudaGetErrorName(e), cudaGetErrorString(e));
            else
                fprintf(stderr, "alora: CUDA: no device (cudaGetDeviceCount = 0)\n");
            cudaGetLastError();
            alc_state = 0;
        } else {
            alc_state = 1;
            al_ops *o = &alc_ops;
            o->name = "cuda";
            o->host_memory = 0;
            o->weight_bytes = 2;
            o->alloc = alc_alloc;
            o->free = alc_free;
            o->upload = alc_upload;
            o->download = alc_download;
            o->copy = alc_copy;
            o->sync = alc_sync;
            o->weight_upload = alc_weight_upload;
            o->weight_free = alc_weight_free;
            o->weight_store = alc_weight_store;
            o->embedding = alc_embedding;
            o->rmsnorm = alc_rmsnorm;
            o->rope = alc_rope;
            o->matmul = alc_matmul;
            o->add_scaled = alc_add_scaled;
            o->scale = alc_scale;
            o->swiglu = alc_swiglu;
            o->kv_write = alc_kv_write;
            o->attention = alc_attention;
            o->lora = alc_lora;
            o->logprobs_topk = alc_logprobs_topk;
        }
    }
    return alc_state == 1 ? &alc_ops : NULL;
}
