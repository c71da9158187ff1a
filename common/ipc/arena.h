/* arena.h: one contiguous shared region (POSIX shm or CUDA IPC) behind one handle and one API. */
#ifndef AL_ARENA_H
#define AL_ARENA_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { AL_ARENA_CPU = 0, AL_ARENA_CUDA = 1 } al_arena_kind;

/* Size of the wire blob of a handle. 128, not 64: a cudaIpcMemHandle_t alone is 64 bytes, and the
 * blob also carries the kind, size, creator pid, device UUID and a checksum. */
#define AL_ARENA_HANDLE_BYTES 128
/* Longest tag (characters [A-Za-z0-9_.-], not empty). */
#define AL_ARENA_TAG_MAX 15

/* Decoded form of a handle (a struct tag only: the name al_arena_handle is the export function).
 * The blob is what travels; this struct is for inspection and tests. */
struct al_arena_handle {
    uint8_t kind;                      /* al_arena_kind */
    uint64_t size;                     /* bytes */
    uint32_t pid;                      /* creator process */
    char tag[AL_ARENA_TAG_MAX + 1];    /* NUL-terminated */
    uint8_t id[16];                    /* CPU: random name part; CUDA: device UUID */
    uint8_t device;                    /* CUDA: creator's device ordinal (a hint; UUID decides) */
    uint8_t ipc[64];                   /* CUDA: cudaIpcMemHandle_t; CPU: zero */
};

/* Blob <-> struct. decode checks magic, version, checksum, kind and tag: AL_EINVAL otherwise. */
void al_arena_handle_encode(const struct al_arena_handle *h, uint8_t out[AL_ARENA_HANDLE_BYTES]);
al_err al_arena_handle_decode(const uint8_t in[AL_ARENA_HANDLE_BYTES], struct al_arena_handle *h);

typedef struct al_arena al_arena;

/* Owner: a zero-filled region of `bytes` bytes. CPU: /dev/shm/alora-<tag>-<pid>-<128-bit hex>,
 * mode 0600, space reserved up front (AL_ECAPACITY when /dev/shm is too small). CUDA: cudaMalloc on
 * the current device; AL_ENODEV without a usable GPU (or in a build without CUDA). */
al_err al_arena_create(al_arena_kind kind, const char *tag, size_t bytes, al_arena **out);
/* Exports the handle blob (owner or importer). */
al_err al_arena_handle(const al_arena *a, uint8_t out[AL_ARENA_HANDLE_BYTES]);
/* Importer: maps the region. CPU + readonly maps PROT_READ (writes fault). Errors: AL_EINVAL for a
 * garbage/foreign blob or a segment smaller than the handle says, AL_ENOTFOUND when the segment is
 * gone, AL_ENODEV for a CUDA handle without that GPU. CUDA opens are reference-counted per process
 * (a second attach of the same handle shares one mapping; the last detach closes it); attaching a
 * CUDA arena in its own creating process returns the owner's pointer. readonly is advisory on CUDA. */
al_err al_arena_attach(const uint8_t handle[AL_ARENA_HANDLE_BYTES], int readonly, al_arena **out);

void *al_arena_ptr(const al_arena *a);
size_t al_arena_size(const al_arena *a);
al_arena_kind al_arena_kind_of(const al_arena *a);
/* CUDA: the local ordinal of the GPU the region lives on (differs across CUDA_VISIBLE_DEVICES from
 * the creator's); CPU or NULL: -1. */
int al_arena_device(const al_arena *a);
int al_arena_is_owner(const al_arena *a);

/* Importer: unmaps. Called on an owner it behaves as al_arena_destroy. NULL is fine. */
void al_arena_detach(al_arena *a);
/* Owner: unmaps and unlinks (CPU) / frees (CUDA). Called on an importer it behaves as detach; called
 * in a forked child of the creator it only unmaps. NULL is fine. */
void al_arena_destroy(al_arena *a);

/* Crash recovery: unlinks /dev/shm/alora-<tag>-<pid>-* segments owned by this uid whose creator pid
 * is dead (kill(pid, 0) == ESRCH), logging each. tag_prefix NULL or "" = any tag. */
al_err al_arena_reclaim_stale(const char *tag_prefix);

/* One of our /dev/shm segments as found by al_arena_list_ours. */
typedef struct al_arena_seg {
    char name[96];  /* without the leading '/', e.g. "alora-kv-123-<hex>" */
    char tag[AL_ARENA_TAG_MAX + 1];
    long pid;
    uint64_t bytes;
} al_arena_seg;

/* Lists our segments whose tag starts with tag_prefix (NULL/"" = any) and whose creator is pid
 * (pid <= 0 = any). Fills up to cap entries of out (out may be NULL with cap 0); *n = the number
 * that matched, which may exceed cap. */
al_err al_arena_list_ours(const char *tag_prefix, long pid, al_arena_seg *out, int cap, int *n);

/* Number of usable CUDA devices. AL_OK with *n_devices >= 1, or AL_ENODEV with *n_devices = 0 and
 * a message saying why (no driver, stub library, no device, built without CUDA). */
al_err al_cuda_available(int *n_devices);

/* Inter-process CUDA events (cudaEventInterprocess | cudaEventDisableTiming). The protocol does not
 * need them (the base synchronises its stream before granting a lease, DESIGN §3); they exist for a
 * finer-grained hand-off. Streams are cudaStream_t passed as void* (NULL = legacy default stream).
 * All return AL_ENODEV in a build without CUDA. */
typedef struct al_arena_event al_arena_event;
al_err al_arena_event_create(al_arena_event **out);
al_err al_arena_event_handle(const al_arena_event *e, uint8_t out[64]);
al_err al_arena_event_open(const uint8_t handle[64], al_arena_event **out);
al_err al_arena_event_record(al_arena_event *e, void *stream);
al_err al_arena_event_wait(al_arena_event *e, void *stream);  /* stream waits on the GPU */
al_err al_arena_event_sync(al_arena_event *e);                /* host blocks */
void al_arena_event_destroy(al_arena_event *e);

#ifdef __cplusplus
}
#endif
#endif
