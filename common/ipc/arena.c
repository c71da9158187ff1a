/* arena.c: arena handles, the POSIX shared-memory backend, and stale-segment recovery. */
#include "common/ipc/arena.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/ipc/arena_impl.h"
#include "common/log.h"

#define ALI_MAGIC "ALAH"
#define ALI_VERSION 1
#define ALI_SHM_DIR "/dev/shm"
#define ALI_SHM_PREFIX "alora-"

/* Blob layout (little-endian):
 *   0 magic[4]  4 version  5 kind  6 device  7 zero  8 size u64  16 pid u32  20 tag[16]
 *   36 id[16]  52 ipc[64]  116 zero[8]  124 fnv1a32 of bytes 0..123 */
enum { ALI_O_SIZE = 8, ALI_O_PID = 16, ALI_O_TAG = 20, ALI_O_ID = 36, ALI_O_IPC = 52,
       ALI_O_PAD = 116, ALI_O_SUM = 124 };

static uint32_t ali_fnv1a(const uint8_t *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

static void ali_put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t ali_get_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static int ali_tag_ok(const char *t, size_t len)
{
    if (len == 0 || len > AL_ARENA_TAG_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = t[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
              c == '.' || c == '-'))
            return 0;
    }
    return 1;
}

void al_arena_handle_encode(const struct al_arena_handle *h, uint8_t out[AL_ARENA_HANDLE_BYTES])
{
    memset(out, 0, AL_ARENA_HANDLE_BYTES);
    memcpy(out, ALI_MAGIC, 4);
    out[4] = ALI_VERSION;
    out[5] = h->kind;
    out[6] = h->device;
    ali_put_le(out + ALI_O_SIZE, h->size, 8);
    ali_put_le(out + ALI_O_PID, h->pid, 4);
    memcpy(out + ALI_O_TAG, h->tag, strnlen(h->tag, AL_ARENA_TAG_MAX));
    memcpy(out + ALI_O_ID, h->id, 16);
    memcpy(out + ALI_O_IPC, h->ipc, 64);
    ali_put_le(out + ALI_O_SUM, ali_fnv1a(out, ALI_O_SUM), 4);
}

al_err al_arena_handle_decode(const uint8_t in[AL_ARENA_HANDLE_BYTES], struct al_arena_handle *h)
{
    if (!in || !h)
        return ali_errf(AL_EINVAL, "arena handle: NULL");
    if (memcmp(in, ALI_MAGIC, 4) != 0)
        return ali_errf(AL_EINVAL, "arena handle: bad magic (not an alora arena handle)");
    if (in[4] != ALI_VERSION)
        return ali_errf(AL_EINVAL, "arena handle: version %u, expected %u", in[4], ALI_VERSION);
    if (ali_get_le(in + ALI_O_SUM, 4) != ali_fnv1a(in, ALI_O_SUM))
        return ali_errf(AL_EINVAL, "arena handle: checksum mismatch (corrupted)");
    if (in[5] != AL_ARENA_CPU && in[5] != AL_ARENA_CUDA)
        return ali_errf(AL_EINVAL, "arena handle: unknown kind %u", in[5]);
    if (in[7] != 0)
        return ali_errf(AL_EINVAL, "arena handle: reserved byte set");
    for (int i = ALI_O_PAD; i < ALI_O_SUM; i++)
        if (in[i])
            return ali_errf(AL_EINVAL, "arena handle: reserved bytes set");
    memset(h, 0, sizeof *h);
    h->kind = in[5];
    h->device = in[6];
    h->size = ali_get_le(in + ALI_O_SIZE, 8);
    h->pid = (uint32_t)ali_get_le(in + ALI_O_PID, 4);
    size_t tl = strnlen((const char *)in + ALI_O_TAG, 16);
    if (tl > AL_ARENA_TAG_MAX || !ali_tag_ok((const char *)in + ALI_O_TAG, tl))
        return ali_errf(AL_EINVAL, "arena handle: bad tag");
    for (size_t i = tl; i < 16; i++)
        if (in[ALI_O_TAG + i])
            return ali_errf(AL_EINVAL, "arena handle: bad tag padding");
    memcpy(h->tag, in + ALI_O_TAG, tl);
    memcpy(h->id, in + ALI_O_ID, 16);
    memcpy(h->ipc, in + ALI_O_IPC, 64);
    if (h->size == 0 || h->size > (uint64_t)SIZE_MAX / 2)
        return ali_errf(AL_EINVAL, "arena handle: bad size %llu", (unsigned long long)h->size);
    if (h->pid == 0 || h->pid > 0x7fffffffu)
        return ali_errf(AL_EINVAL, "arena handle: bad pid %u", h->pid);
    if (h->kind == AL_ARENA_CPU) {
        for (int i = 0; i < 64; i++)
            if (h->ipc[i])
                return ali_errf(AL_EINVAL, "arena handle: CPU handle with CUDA bytes");
        if (h->device)
            return ali_errf(AL_EINVAL, "arena handle: CPU handle with a device");
    }
    return AL_OK;
}

/* "/alora-<tag>-<pid>-<32 hex>" */
static void ali_shm_name(const struct al_arena_handle *h, char *buf, size_t cap)
{
    char hex[33];
    for (int i = 0; i < 16; i++)
        snprintf(hex + 2 * i, 3, "%02x", h->id[i]);
    snprintf(buf, cap, "/" ALI_SHM_PREFIX "%s-%u-%s", h->tag, h->pid, hex);
}

/* Parses a /dev/shm entry name "alora-<tag>-<pid>-<32 hex>" (the tag may contain '-'). */
static int ali_parse_name(const char *name, al_arena_seg *seg)
{
    size_t pl = strlen(ALI_SHM_PREFIX);
    if (strncmp(name, ALI_SHM_PREFIX, pl) != 0 || strlen(name) >= sizeof seg->name)
        return 0;
    const char *rest = name + pl;
    const char *d2 = strrchr(rest, '-');
    if (!d2 || strlen(d2 + 1) != 32 || strspn(d2 + 1, "0123456789abcdef") != 32)
        return 0;
    const char *d1 = d2;
    while (d1 > rest && d1[-1] != '-')
        d1--;
    /* d1 is the start of the pid digits; the tag is rest .. d1-1 (exclusive of the '-'). */
    if (d1 == rest || d1 == d2 || (size_t)(d2 - d1) > 10 || strspn(d1, "0123456789") != (size_t)(d2 - d1))
        return 0;
    size_t tl = (size_t)(d1 - 1 - rest);
    if (!ali_tag_ok(rest, tl))
        return 0;
    memset(seg, 0, sizeof *seg);
    memcpy(seg->name, name, strlen(name) + 1); /* length checked above */
    memcpy(seg->tag, rest, tl);
    seg->pid = strtol(d1, NULL, 10);
    return seg->pid > 0;
}

static al_arena *ali_arena_new(void)
{
    al_arena *a = calloc(1, sizeof *a);
    if (a)
        a->mapper = getpid();
    return a;
}

static al_err ali_cpu_create(al_arena *a)
{
    char name[128];
    if (getrandom(a->h.id, sizeof a->h.id, 0) != (ssize_t)sizeof a->h.id)
        return ali_errf(AL_EIO, "arena: getrandom: %s", strerror(errno));
    ali_shm_name(&a->h, name, sizeof name);
    int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0)
        return ali_errf(AL_EIO, "arena: shm_open %s: %s", name, strerror(errno));
    /* Reserve the pages now: an oversized arena fails here, not with SIGBUS on first touch. */
    int rc;
    do
        rc = posix_fallocate(fd, 0, (off_t)a->size);
    while (rc == EINTR);
    al_err err = AL_OK;
    if (rc == ENOSPC || rc == EFBIG)
        err = ali_errf(AL_ECAPACITY, "arena '%s': %zu bytes do not fit in %s: %s", a->h.tag, a->size,
                       ALI_SHM_DIR, strerror(rc));
    else if (rc != 0 && ftruncate(fd, (off_t)a->size) != 0)
        err = ali_errf(AL_EIO, "arena '%s': ftruncate %zu: %s", a->h.tag, a->size, strerror(errno));
    if (err == AL_OK) {
        void *p = mmap(NULL, a->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p != MAP_FAILED)
            madvise(p, a->size, MADV_HUGEPAGE); /* huge pages where shmem THP is enabled (advise) */
        if (p == MAP_FAILED)
            err = ali_errf(AL_ENOMEM, "arena '%s': mmap %zu bytes: %s", a->h.tag, a->size, strerror(errno));
        else
            a->ptr = p;
    }
    close(fd);
    if (err != AL_OK)
        shm_unlink(name);
    return err;
}

static al_err ali_cpu_attach(al_arena *a)
{
    char name[128];
    ali_shm_name(&a->h, name, sizeof name);
    int fd = shm_open(name, a->readonly ? O_RDONLY : O_RDWR, 0);
    if (fd < 0) {
        int e = errno;
        return ali_errf(e == ENOENT ? AL_ENOTFOUND : AL_EIO, "arena: attach %s: %s", name, strerror(e));
    }
    struct stat st;
    al_err err = AL_OK;
    if (fstat(fd, &st) != 0)
        err = ali_errf(AL_EIO, "arena: fstat %s: %s", name, strerror(errno));
    else if (st.st_uid != geteuid())
        err = ali_errf(AL_EINVAL, "arena: %s belongs to uid %u, not us", name, (unsigned)st.st_uid);
    else if ((uint64_t)st.st_size < a->h.size)
        err = ali_errf(AL_EINVAL, "arena: %s has %lld bytes, handle says %llu", name, (long long)st.st_size,
                       (unsigned long long)a->h.size);
    if (err == AL_OK) {
        int prot = a->readonly ? PROT_READ : PROT_READ | PROT_WRITE;
        void *p = mmap(NULL, a->size, prot, MAP_SHARED, fd, 0);
        if (p != MAP_FAILED)
            madvise(p, a->size, MADV_HUGEPAGE);
        if (p == MAP_FAILED)
            err = ali_errf(AL_ENOMEM, "arena: mmap %s: %s", name, strerror(errno));
        else
            a->ptr = p;
    }
    close(fd);
    return err;
}

al_err al_arena_create(al_arena_kind kind, const char *tag, size_t bytes, al_arena **out)
{
    if (!out)
        return ali_errf(AL_EINVAL, "arena: NULL out");
    *out = NULL;
    if (kind != AL_ARENA_CPU && kind != AL_ARENA_CUDA)
        return ali_errf(AL_EINVAL, "arena: unknown kind %d", (int)kind);
    if (!tag || !ali_tag_ok(tag, strlen(tag)))
        return ali_errf(AL_EINVAL, "arena: tag '%s' must be 1-%d characters of [A-Za-z0-9_.-]",
                        tag ? tag : "(null)", AL_ARENA_TAG_MAX);
    if (bytes == 0 || bytes > SIZE_MAX / 2)
        return ali_errf(AL_EINVAL, "arena '%s': bad size %zu", tag, bytes);
    al_arena *a = ali_arena_new();
    if (!a)
        return ali_errf(AL_ENOMEM, "arena: out of memory");
    a->owner = 1;
    a->size = bytes;
    a->h.kind = (uint8_t)kind;
    a->h.size = bytes;
    a->h.pid = (uint32_t)getpid();
    memcpy(a->h.tag, tag, strlen(tag));
    al_err err = kind == AL_ARENA_CPU ? ali_cpu_create(a) : ali_arena_cuda_create(a);
    if (err != AL_OK) {
        free(a);
        return err;
    }
    *out = a;
    return AL_OK;
}

al_err al_arena_handle(const al_arena *a, uint8_t out[AL_ARENA_HANDLE_BYTES])
{
    if (!a || !out)
        return ali_errf(AL_EINVAL, "arena: NULL argument");
    al_arena_handle_encode(&a->h, out);
    return AL_OK;
}

al_err al_arena_attach(const uint8_t handle[AL_ARENA_HANDLE_BYTES], int readonly, al_arena **out)
{
    if (!out)
        return ali_errf(AL_EINVAL, "arena: NULL out");
    *out = NULL;
    struct al_arena_handle h;
    AL_TRY(al_arena_handle_decode(handle, &h));
    al_arena *a = ali_arena_new();
    if (!a)
        return ali_errf(AL_ENOMEM, "arena: out of memory");
    a->h = h;
    a->size = (size_t)h.size;
    a->readonly = readonly != 0;
    al_err err = h.kind == AL_ARENA_CPU ? ali_cpu_attach(a) : ali_arena_cuda_attach(a);
    if (err != AL_OK) {
        free(a);
        return err;
    }
    *out = a;
    return AL_OK;
}

void *al_arena_ptr(const al_arena *a) { return a ? a->ptr : NULL; }
size_t al_arena_size(const al_arena *a) { return a ? a->size : 0; }
al_arena_kind al_arena_kind_of(const al_arena *a) { return a ? (al_arena_kind)a->h.kind : AL_ARENA_CPU; }
int al_arena_is_owner(const al_arena *a) { return a && a->owner; }
int al_arena_device(const al_arena *a)
{
    if (!a || a->h.kind != AL_ARENA_CUDA)
        return -1;
    return a->cuda_entry ? ali_arena_cuda_device(a) : (int)a->h.device;
}

static void ali_release(al_arena *a)
{
    if (!a)
        return;
    if (a->h.kind == AL_ARENA_CUDA) {
        ali_arena_cuda_release(a);
    } else {
        if (a->ptr)
            munmap(a->ptr, a->size);
        if (a->owner && a->mapper == getpid()) {
            char name[128];
            ali_shm_name(&a->h, name, sizeof name);
            if (shm_unlink(name) != 0 && errno != ENOENT)
                AL_WARN("arena: shm_unlink %s: %s", name, strerror(errno));
        }
    }
    free(a);
}

void al_arena_detach(al_arena *a) { ali_release(a); }
void al_arena_destroy(al_arena *a) { ali_release(a); }

/* Calls fn for each of our segments matching the filter; stops early when fn returns nonzero. */
static al_err ali_scan(const char *tag_prefix, long pid, int (*fn)(al_arena_seg *, void *), void *ctx)
{
    DIR *d = opendir(ALI_SHM_DIR);
    if (!d)
        return ali_errf(AL_EIO, "arena: opendir %s: %s", ALI_SHM_DIR, strerror(errno));
    size_t pl = tag_prefix ? strlen(tag_prefix) : 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        al_arena_seg seg;
        if (!ali_parse_name(de->d_name, &seg))
            continue;
        if (pl && strncmp(seg.tag, tag_prefix, pl) != 0)
            continue;
        if (pid > 0 && seg.pid != pid)
            continue;
        struct stat st;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode) ||
            st.st_uid != geteuid())
            continue;
        seg.bytes = (uint64_t)st.st_size;
        if (fn(&seg, ctx))
            break;
    }
    closedir(d);
    return AL_OK;
}

typedef struct {
    al_arena_seg *out;
    int cap, n;
} ali_list_ctx;

static int ali_list_fn(al_arena_seg *seg, void *p)
{
    ali_list_ctx *c = p;
    if (c->n < c->cap)
        c->out[c->n] = *seg;
    c->n++;
    return 0;
}

al_err al_arena_list_ours(const char *tag_prefix, long pid, al_arena_seg *out, int cap, int *n)
{
    ali_list_ctx c = {out, out ? cap : 0, 0};
    al_err e = ali_scan(tag_prefix, pid, ali_list_fn, &c);
    if (n)
        *n = c.n;
    return e;
}

static int ali_reclaim_fn(al_arena_seg *seg, void *p)
{
    int *count = p;
    if (kill((pid_t)seg->pid, 0) == 0 || errno != ESRCH)
        return 0; /* alive (or not ours to signal: EPERM means alive) */
    char name[128];
    snprintf(name, sizeof name, "/%s", seg->name);
    if (shm_unlink(name) == 0) {
        AL_WARN("arena: reclaimed stale segment %s (%llu bytes, creator pid %ld is dead)", seg->name,
                (unsigned long long)seg->bytes, seg->pid);
        (*count)++;
    } else if (errno != ENOENT) {
        AL_WARN("arena: cannot reclaim %s: %s", seg->name, strerror(errno));
    }
    return 0;
}

al_err al_arena_reclaim_stale(const char *tag_prefix)
{
    int count = 0;
    AL_TRY(ali_scan(tag_prefix, 0, ali_reclaim_fn, &count));
    if (count)
        AL_INFO("arena: reclaimed %d stale segment(s)", count);
    return AL_OK;
}
