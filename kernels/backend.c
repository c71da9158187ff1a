/* backend.c: run-time backend choice (cpu, cuda, auto) and the CUDA stub of CPU-only builds. */
#include <string.h>

#include "kernels.h"
#include "log.h"

#ifndef ALORA_HAVE_CUDA
const al_ops *al_ops_cuda(void) { return NULL; }
#endif

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
    return ali_errf(AL_EINVAL, "device '%s' is not one of auto, cpu, cuda", name);
}
