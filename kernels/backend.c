/* backend.c: run-time backend choice (cpu, cuda, auto) and the loader of the CUDA plugin. */
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "kernels/kernels.h"

#ifdef ALORA_HAVE_CUDA
#include <dlfcn.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* The CUDA ops live in libalora_cuda.so (kernels/cuda), opened on first use so that processes
 * that stay on the CPU never map cuBLAS. Searched: $ALORA_CUDA_LIB, next to the executable,
 * <exe>/../lib/alora/, the build tree it came from, then the dynamic linker's path. */
#define ALI_CUDA_PLUGIN "libalora_cuda.so"

static pthread_once_t ali_cuda_once = PTHREAD_ONCE_INIT;
static const al_ops *(*ali_cuda_ops_fn)(void);
static int (*ali_cuda_dev_fn)(int, char *, size_t);
static char ali_cuda_why[768];

static int ali_cuda_try(const char *path)
{
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *d = dlerror();
        /* keep the first real failure (a plugin that exists but cannot load says the most) */
        if (!ali_cuda_why[0] || access(path, F_OK) == 0)
            snprintf(ali_cuda_why, sizeof ali_cuda_why, "%s", d ? d : path);
        return 0;
    }
    ali_cuda_ops_fn = (const al_ops *(*)(void))dlsym(h, "alc_plugin_ops");
    ali_cuda_dev_fn = (int (*)(int, char *, size_t))dlsym(h, "alc_plugin_use_device");
    if (!ali_cuda_ops_fn || !ali_cuda_dev_fn) {
        snprintf(ali_cuda_why, sizeof ali_cuda_why, "%s: not an alora CUDA plugin (entry points missing)", path);
        ali_cuda_ops_fn = NULL;
        ali_cuda_dev_fn = NULL;
        dlclose(h);
        return 0;
    }
    return 1; /* stays open for the life of the process */
}

static void ali_cuda_load(void)
{
    const char *env = getenv("ALORA_CUDA_LIB");
    if (env && *env) {
        if (!ali_cuda_try(env))
            AL_WARN("ALORA_CUDA_LIB=%s: %s", env, ali_cuda_why);
        return;
    }
    char exe[PATH_MAX], path[PATH_MAX + 64];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        const char *dir = dirname(exe);
        snprintf(path, sizeof path, "%s/" ALI_CUDA_PLUGIN, dir);
        if (ali_cuda_try(path))
            return;
        snprintf(path, sizeof path, "%s/../lib/alora/" ALI_CUDA_PLUGIN, dir);
        if (ali_cuda_try(path))
            return;
    }
#ifdef ALORA_CUDA_PLUGIN_BUILT
    if (ali_cuda_try(ALORA_CUDA_PLUGIN_BUILT))
        return;
#endif
    ali_cuda_try(ALI_CUDA_PLUGIN);
}

const al_ops *al_ops_cuda(void)
{
    static int logged;
    pthread_once(&ali_cuda_once, ali_cuda_load);
    if (!ali_cuda_ops_fn) {
        if (!logged++)
            AL_WARN("CUDA: the backend plugin " ALI_CUDA_PLUGIN " could not be loaded: %s", ali_cuda_why);
        return NULL;
    }
    return ali_cuda_ops_fn();
}

al_err al_cuda_use_device(int dev)
{
    pthread_once(&ali_cuda_once, ali_cuda_load);
    if (!ali_cuda_dev_fn)
        return ali_errf(AL_ENODEV, "CUDA: the backend plugin " ALI_CUDA_PLUGIN " could not be loaded: %s",
                        ali_cuda_why);
    char msg[256] = "";
    int e = ali_cuda_dev_fn(dev, msg, sizeof msg);
    return e == AL_OK ? AL_OK : ali_errf((al_err)e, "%s", msg);
}
#else
const al_ops *al_ops_cuda(void) { return NULL; }
al_err al_cuda_use_device(int dev)
{
    (void)dev;
    return ali_errf(AL_ENODEV, "this build has no CUDA backend (nvcc was not found)");
}
#endif

void al_ops_describe(const al_ops *ops, char *buf, size_t n)
{
    if (ops->host_memory)
        snprintf(buf, n, "%s %s", ops->name, al_cpu_isa());
    else
        snprintf(buf, n, "%s", ops->name);
}

al_err al_ops_select(const char *name, const al_ops **out)
{
    static int logged;
    if (!name || !strcmp(name, "auto")) {
        const al_ops *c = al_ops_cuda();
        *out = c ? c : al_ops_cpu();
        if (!logged++)
            AL_INFO("backend: %s (auto)", (*out)->name);
        return AL_OK;
    }
    if (!strcmp(name, "cpu")) {
        *out = al_ops_cpu();
        return AL_OK;
    }
    if (!strcmp(name, "cpu-bf16")) {
        *out = al_ops_cpu_bf16();
        return AL_OK;
    }
    if (!strcmp(name, "cuda")) {
        const al_ops *c = al_ops_cuda();
        if (!c)
#ifdef ALORA_HAVE_CUDA
            return ali_errf(AL_ENODEV, "device = \"cuda\": no usable CUDA device");
#else
            return ali_errf(AL_ENODEV, "device = \"cuda\": this build has no CUDA backend (nvcc was not found)");
#endif
        *out = c;
        return AL_OK;
    }
    return ali_errf(AL_EINVAL, "device '%s' is not one of auto, cpu, cpu-bf16, cuda", name);
}
