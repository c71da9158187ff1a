/* arena_cuda.c: the CUDA arena backend (cudaMalloc + cudaIpc*, refcounted opens) and IPC events. */
#include "common/ipc/arena_impl.h"

#include <stdlib.h>
#include <string.h>

#ifdef ALORA_HAVE_CUDA

#include <pthread.h>
#include <unistd.h>

#include <cuda_runtime_api.h>

#include "common/log.h"

/* One device mapping per process: the owner's allocation, or one cudaIpcOpenMemHandle. Every
 * al_arena object (owner or importer) holds one reference; the last release frees or closes. */
typedef struct ali_cuda_map {
    struct ali_cuda_map *next;
    uint8_t ipc[64];
    void *ptr;
    int device;
    int owned; /* cudaMalloc'ed here (vs. opened from another process) */
    int refs;
} ali_cuda_map;

static pthread_mutex_t ali_cuda_mu = PTHREAD_MUTEX_INITIALIZER;
static ali_cuda_map *ali_cuda_maps;

static al_err ali_cuda_err(al_err e, cudaError_t ce, const char *what)
{
    cudaGetLastError(); /* clear sticky-free errors so later calls are not confused */
    return ali_errf(e, "arena: %s: %s (%d): %s", what, cudaGetErrorName(ce), (int)ce, cudaGetErrorString(ce));
}

al_err al_cuda_available(int *n_devices)
{
    int n = 0;
    cudaError_t ce = cudaGetDeviceCount(&n);
    if (ce != cudaSuccess || n <= 0) {
        if (n_devices)
            *n_devices = 0;
        if (ce == cudaSuccess)
            return ali_errf(AL_ENODEV, "CUDA: no device");
        cudaGetLastError();
        return ali_errf(AL_ENODEV, "CUDA unavailable (no GPU or no driver): %s (%d): %s", cudaGetErrorName(ce),
                        (int)ce, cudaGetErrorString(ce));
    }
    if (n_devices)
        *n_devices = n;
    return AL_OK;
}

static al_err ali_cuda_uuid(int dev, uint8_t uuid[16])
{
    struct cudaDeviceProp prop;
    cudaError_t ce = cudaGetDeviceProperties(&prop, dev);
    if (ce != cudaSuccess)
        return ali_cuda_err(AL_EIO, ce, "cudaGetDeviceProperties");
    memcpy(uuid, prop.uuid.bytes, 16);
    return AL_OK;
}

static ali_cuda_map *ali_cuda_find(const uint8_t ipc[64])
{
    for (ali_cuda_map *m = ali_cuda_maps; m; m = m->next)
        if (memcmp(m->ipc, ipc, 64) == 0)
            return m;
    return NULL;
}

al_err ali_arena_cuda_create(al_arena *a)
{
    int dev = 0;
    AL_TRY(al_cuda_available(NULL));
    cudaError_t ce = cudaGetDevice(&dev);
    if (ce != cudaSuccess)
        return ali_cuda_err(AL_ENODEV, ce, "cudaGetDevice");
    if (dev < 0 || dev > 255)
        return ali_errf(AL_EUNSUPPORTED, "arena: device ordinal %d", dev);
    AL_TRY(ali_cuda_uuid(dev, a->h.id));
    ali_cuda_map *m = calloc(1, sizeof *m);
    if (!m)
        return ali_errf(AL_ENOMEM, "arena: out of memory");
    void *p = NULL;
    ce = cudaMalloc(&p, a->size);
    if (ce != cudaSuccess) {
        free(m);
        return ali_cuda_err(ce == cudaErrorMemoryAllocation ? AL_ECAPACITY : AL_EIO, ce, "cudaMalloc");
    }
    cudaIpcMemHandle_t ih;
    if ((ce = cudaMemset(p, 0, a->size)) != cudaSuccess || (ce = cudaDeviceSynchronize()) != cudaSuccess ||
        (ce = cudaIpcGetMemHandle(&ih, p)) != cudaSuccess) {
        cudaFree(p);
        free(m);
        return ali_cuda_err(AL_EIO, ce, "arena create (memset/ipc handle)");
    }
    _Static_assert(sizeof ih == 64, "cudaIpcMemHandle_t is 64 bytes");
    memcpy(a->h.ipc, &ih, 64);
    a->h.device = (uint8_t)dev;
    a->ptr = p;
    memcpy(m->ipc, &ih, 64);
    m->ptr = p;
    m->device = dev;
    m->owned = 1;
    m->refs = 1;
    pthread_mutex_lock(&ali_cuda_mu);
    m->next = ali_cuda_maps;
    ali_cuda_maps = m;
    pthread_mutex_unlock(&ali_cuda_mu);
    a->cuda_entry = m;
    return AL_OK;
}

/* The local ordinal of the device with this UUID (ordinals differ across CUDA_VISIBLE_DEVICES). */
static al_err ali_cuda_find_device(const struct al_arena_handle *h, int *dev)
{
    int n = 0;
    AL_TRY(al_cuda_available(&n));
    uint8_t uuid[16];
    if (h->device < n && ali_cuda_uuid(h->device, uuid) == AL_OK && memcmp(uuid, h->id, 16) == 0) {
        *dev = h->device;
        return AL_OK;
    }
    for (int d = 0; d < n; d++) {
        if (ali_cuda_uuid(d, uuid) == AL_OK && memcmp(uuid, h->id, 16) == 0) {
            *dev = d;
            return AL_OK;
        }
    }
    return ali_errf(AL_ENODEV, "arena '%s': the exporting GPU (device %u of pid %u) is not visible here",
                    h->tag, h->device, h->pid);
}

al_err ali_arena_cuda_attach(al_arena *a)
{
    al_err err = AL_OK;
    pthread_mutex_lock(&ali_cuda_mu);
    ali_cuda_map *m = ali_cuda_find(a->h.ipc);
    if (m) {
        m->refs++;
        a->ptr = m->ptr;
        a->cuda_entry = m;
        pthread_mutex_unlock(&ali_cuda_mu);
        return AL_OK;
    }
    if (a->h.pid == (uint32_t)getpid()) {
        pthread_mutex_unlock(&ali_cuda_mu);
        return ali_errf(AL_ENOTFOUND, "arena '%s': created by this process and already destroyed", a->h.tag);
    }
    int dev = 0, cur = 0;
    err = ali_cuda_find_device(&a->h, &dev);
    m = err == AL_OK ? calloc(1, sizeof *m) : NULL;
    if (err == AL_OK && !m)
        err = ali_errf(AL_ENOMEM, "arena: out of memory");
    if (err == AL_OK) {
        cudaIpcMemHandle_t ih;
        memcpy(&ih, a->h.ipc, 64);
        void *p = NULL;
        cudaError_t ce = cudaGetDevice(&cur);
        if (ce == cudaSuccess)
            ce = cudaSetDevice(dev);
        if (ce == cudaSuccess) {
            ce = cudaIpcOpenMemHandle(&p, ih, cudaIpcMemLazyEnablePeerAccess);
            cudaSetDevice(cur);
        }
        if (ce != cudaSuccess) {
            /* H200 / CUDA 13: a freed or exporter-less handle gives cudaErrorInvalidValue. */
            int gone = ce == cudaErrorInvalidValue || ce == cudaErrorInvalidResourceHandle;
            err = ali_cuda_err(gone ? AL_ENOTFOUND : AL_EIO, ce,
                               "cudaIpcOpenMemHandle (exporter gone or handle invalid?)");
            free(m);
        } else {
            memcpy(m->ipc, a->h.ipc, 64);
            m->ptr = p;
            m->device = dev;
            m->refs = 1;
            m->next = ali_cuda_maps;
            ali_cuda_maps = m;
            a->ptr = p;
            a->cuda_entry = m;
        }
    }
    pthread_mutex_unlock(&ali_cuda_mu);
    return err;
}

int ali_arena_cuda_device(const al_arena *a) { return ((const ali_cuda_map *)a->cuda_entry)->device; }

void ali_arena_cuda_release(al_arena *a)
{
    ali_cuda_map *m = a->cuda_entry;
    if (!m)
        return;
    if (a->mapper != getpid())
        return; /* a forked child: CUDA state is not usable here; leave it to the parent */
    pthread_mutex_lock(&ali_cuda_mu);
    if (--m->refs > 0) {
        pthread_mutex_unlock(&ali_cuda_mu);
        return;
    }
    for (ali_cuda_map **pp = &ali_cuda_maps; *pp; pp = &(*pp)->next) {
        if (*pp == m) {
            *pp = m->next;
            break;
        }
    }
    pthread_mutex_unlock(&ali_cuda_mu);
    int cur = 0;
    cudaGetDevice(&cur);
    cudaSetDevice(m->device);
    cudaError_t ce = m->owned ? cudaFree(m->ptr) : cudaIpcCloseMemHandle(m->ptr);
    cudaSetDevice(cur);
    if (ce != cudaSuccess) {
        AL_WARN("arena '%s': %s: %s", a->h.tag, m->owned ? "cudaFree" : "cudaIpcCloseMemHandle",
                cudaGetErrorString(ce));
        cudaGetLastError();
    }
    free(m);
}

struct al_arena_event {
    cudaEvent_t ev;
};

al_err al_arena_event_create(al_arena_event **out)
{
    *out = NULL;
    AL_TRY(al_cuda_available(NULL));
    al_arena_event *e = calloc(1, sizeof *e);
    if (!e)
        return ali_errf(AL_ENOMEM, "event: out of memory");
    cudaError_t ce = cudaEventCreateWithFlags(&e->ev, cudaEventInterprocess | cudaEventDisableTiming);
    if (ce != cudaSuccess) {
        free(e);
        return ali_cuda_err(AL_EIO, ce, "cudaEventCreateWithFlags");
    }
    *out = e;
    return AL_OK;
}

al_err al_arena_event_handle(const al_arena_event *e, uint8_t out[64])
{
    cudaIpcEventHandle_t h;
    _Static_assert(sizeof h == 64, "cudaIpcEventHandle_t is 64 bytes");
    cudaError_t ce = cudaIpcGetEventHandle(&h, e->ev);
    if (ce != cudaSuccess)
        return ali_cuda_err(AL_EIO, ce, "cudaIpcGetEventHandle");
    memcpy(out, &h, 64);
    return AL_OK;
}

al_err al_arena_event_open(const uint8_t handle[64], al_arena_event **out)
{
    *out = NULL;
    AL_TRY(al_cuda_available(NULL));
    al_arena_event *e = calloc(1, sizeof *e);
    if (!e)
        return ali_errf(AL_ENOMEM, "event: out of memory");
    cudaIpcEventHandle_t h;
    memcpy(&h, handle, 64);
    cudaError_t ce = cudaIpcOpenEventHandle(&e->ev, h);
    if (ce != cudaSuccess) {
        free(e);
        return ali_cuda_err(AL_EIO, ce, "cudaIpcOpenEventHandle");
    }
    *out = e;
    return AL_OK;
}

al_err al_arena_event_record(al_arena_event *e, void *stream)
{
    cudaError_t ce = cudaEventRecord(e->ev, (cudaStream_t)stream);
    return ce == cudaSuccess ? AL_OK : ali_cuda_err(AL_EIO, ce, "cudaEventRecord");
}

al_err al_arena_event_wait(al_arena_event *e, void *stream)
{
    cudaError_t ce = cudaStreamWaitEvent((cudaStream_t)stream, e->ev, 0);
    return ce == cudaSuccess ? AL_OK : ali_cuda_err(AL_EIO, ce, "cudaStreamWaitEvent");
}

al_err al_arena_event_sync(al_arena_event *e)
{
    cudaError_t ce = cudaEventSynchronize(e->ev);
    return ce == cudaSuccess ? AL_OK : ali_cuda_err(AL_EIO, ce, "cudaEventSynchronize");
}

void al_arena_event_destroy(al_arena_event *e)
{
    if (!e)
        return;
    cudaEventDestroy(e->ev);
    free(e);
}

#else /* !ALORA_HAVE_CUDA */

static al_err ali_no_cuda(void) { return ali_errf(AL_ENODEV, "CUDA: this build has no CUDA support"); }

al_err al_cuda_available(int *n_devices)
{
    if (n_devices)
        *n_devices = 0;
    return ali_no_cuda();
}

al_err ali_arena_cuda_create(al_arena *a) { return ali_no_cuda(); }
al_err ali_arena_cuda_attach(al_arena *a) { return ali_no_cuda(); }
int ali_arena_cuda_device(const al_arena *a) { return (int)a->h.device; }
void ali_arena_cuda_release(al_arena *a) {}

struct al_arena_event {
    int unused;
};

al_err al_arena_event_create(al_arena_event **out)
{
    *out = NULL;
    return ali_no_cuda();
}
al_err al_arena_event_handle(const al_arena_event *e, uint8_t out[64]) { return ali_no_cuda(); }
al_err al_arena_event_open(const uint8_t handle[64], al_arena_event **out)
{
    *out = NULL;
    return ali_no_cuda();
}
al_err al_arena_event_record(al_arena_event *e, void *stream) { return ali_no_cuda(); }
al_err al_arena_event_wait(al_arena_event *e, void *stream) { return ali_no_cuda(); }
al_err al_arena_event_sync(al_arena_event *e) { return ali_no_cuda(); }
void al_arena_event_destroy(al_arena_event *e) { free(e); }

#endif
