/* arena_impl.h: internals shared by the arena front end (arena.c) and its CUDA backend. */
#ifndef AL_ARENA_IMPL_H
#define AL_ARENA_IMPL_H

#include <sys/types.h>

#include "common/ipc/arena.h"

struct al_arena {
    struct al_arena_handle h; /* decoded handle (kind, size, pid, tag, id, ipc) */
    int owner;         /* created by al_arena_create */
    int readonly;
    pid_t mapper;      /* process that mapped/opened it (a forked child must not unlink) */
    void *ptr;         /* [size] bytes, host (CPU) or device (CUDA) address */
    size_t size;
    void *cuda_entry;  /* CUDA: per-process refcounted mapping (arena_cuda.c) */
};

/* CUDA backend: fill a->ptr and a->h.{ipc,id,device} for a new region of a->size bytes. */
al_err ali_arena_cuda_create(al_arena *a);
/* CUDA backend: map a->h (refcounted per process); fills a->ptr, a->cuda_entry. */
al_err ali_arena_cuda_attach(al_arena *a);
/* CUDA backend: the local ordinal of the device a mapped arena lives on. */
int ali_arena_cuda_device(const al_arena *a);
/* CUDA backend: drop this object's reference; the last one frees / closes. */
void ali_arena_cuda_release(al_arena *a);

#endif
