/* arena_test.c: shared-memory arenas: attach/detach, OS-enforced read-only, bad handles, stale reclaim, CUDA. */
#include "al_test.h"

#include <errno.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "common/ipc/arena.h"

#ifdef ALORA_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

static int nsegs(const char *tag, long pid)
{
    int n = -1;
    assert_int_equal(al_arena_list_ours(tag, pid, NULL, 0, &n), AL_OK);
    return n;
}

/* Runs first: forks before anything in this process touches CUDA (a forked child cannot use CUDA
 * once the parent initialised it). The child exports a CUDA arena; the parent attaches twice. */
static void test_cuda(void **st)
{
    int up[2], down[2];
    assert_int_equal(pipe(up), 0);
    assert_int_equal(pipe(down), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        uint8_t msg[1 + AL_ARENA_HANDLE_BYTES + 64] = {0};
        int n = 0;
        al_arena *a = NULL;
        if (al_cuda_available(&n) != AL_OK || al_arena_create(AL_ARENA_CUDA, "t-cuda", 3 << 20, &a) != AL_OK) {
            _exit(write(up[1], msg, sizeof msg) == (ssize_t)sizeof msg ? 0 : 3);
        }
        msg[0] = 1;
        al_arena_handle(a, msg + 1);
#ifdef ALORA_HAVE_CUDA
        uint32_t pat[256];
        for (int i = 0; i < 256; i++)
            pat[i] = 0xC0DE0000u + (uint32_t)i;
        if (cudaMemcpy(al_arena_ptr(a), pat, sizeof pat, cudaMemcpyHostToDevice) != cudaSuccess)
            _exit(4);
        al_arena_event *ev = NULL;
        if (al_arena_event_create(&ev) != AL_OK || al_arena_event_record(ev, NULL) != AL_OK ||
            al_arena_event_handle(ev, msg + 1 + AL_ARENA_HANDLE_BYTES) != AL_OK)
            _exit(5);
#endif
        if (write(up[1], msg, sizeof msg) != (ssize_t)sizeof msg)
            _exit(6);
        char b;
        if (read(down[0], &b, 1) != 1)
            _exit(7);
#ifdef ALORA_HAVE_CUDA
        al_arena_event_destroy(ev);
#endif
        al_arena_destroy(a);
        _exit(0);
    }
    uint8_t msg[1 + AL_ARENA_HANDLE_BYTES + 64];
    assert_int_equal(read(up[0], msg, sizeof msg), (ssize_t)sizeof msg);
    int n = -1;
    al_err e = al_cuda_available(&n);
    if (!msg[0]) {
        /* No GPU (this is the path without a device): a clean AL_ENODEV everywhere. */
        assert_int_equal(e, AL_ENODEV);
        assert_int_equal(n, 0);
        assert_true(strlen(al_errmsg()) > 0);
        al_arena *a = (al_arena *)1;
        assert_int_equal(al_arena_create(AL_ARENA_CUDA, "t-cuda", 1 << 20, &a), AL_ENODEV);
        assert_null(a);
        fprintf(stderr, "note: no CUDA device: %s\n", al_errmsg());
        struct al_arena_handle h = {.kind = AL_ARENA_CUDA, .size = 1 << 20, .pid = 1, .tag = "t-cuda"};
        uint8_t blob[AL_ARENA_HANDLE_BYTES];
        al_arena_handle_encode(&h, blob);
        assert_int_equal(al_arena_attach(blob, 1, &a), AL_ENODEV);
        al_arena_event *ev = NULL;
        assert_int_equal(al_arena_event_create(&ev), AL_ENODEV);
    } else {
        assert_int_equal(e, AL_OK);
        assert_true(n >= 1);
        al_arena *a1 = NULL, *a2 = NULL;
        assert_int_equal(al_arena_attach(msg + 1, 1, &a1), AL_OK);
        assert_int_equal(al_arena_attach(msg + 1, 1, &a2), AL_OK); /* refcounted: no second open */
        assert_ptr_equal(al_arena_ptr(a1), al_arena_ptr(a2));
        assert_int_equal(al_arena_size(a1), 3 << 20);
        assert_int_equal(al_arena_kind_of(a1), AL_ARENA_CUDA);
#ifdef ALORA_HAVE_CUDA
        al_arena_event *ev = NULL;
        assert_int_equal(al_arena_event_open(msg + 1 + AL_ARENA_HANDLE_BYTES, &ev), AL_OK);
        assert_int_equal(al_arena_event_sync(ev), AL_OK);
        al_arena_event_destroy(ev);
        uint32_t got[256];
        assert_int_equal(cudaMemcpy(got, al_arena_ptr(a1), sizeof got, cudaMemcpyDeviceToHost), cudaSuccess);
        for (int i = 0; i < 256; i++)
            assert_int_equal(got[i], 0xC0DE0000u + (uint32_t)i);
        al_arena_detach(a1); /* one reference left: the mapping must still work */
        memset(got, 0, sizeof got);
        assert_int_equal(cudaMemcpy(got, al_arena_ptr(a2), sizeof got, cudaMemcpyDeviceToHost), cudaSuccess);
        assert_int_equal(got[255], 0xC0DE00FFu);
        al_arena_detach(a2); /* last: closes */
        al_arena *a3 = NULL;
        assert_int_equal(al_arena_attach(msg + 1, 0, &a3), AL_OK); /* reopen after close */
        assert_int_equal(cudaMemcpy(got, al_arena_ptr(a3), sizeof got, cudaMemcpyDeviceToHost), cudaSuccess);
        assert_int_equal(got[7], 0xC0DE0007u);
        al_arena_detach(a3);
        /* In the creating process an attach shares the owner's allocation. */
        al_arena *own = NULL, *imp = NULL;
        uint8_t h[AL_ARENA_HANDLE_BYTES];
        assert_int_equal(al_arena_create(AL_ARENA_CUDA, "t-cuda2", 1 << 20, &own), AL_OK);
        assert_int_equal(al_arena_handle(own, h), AL_OK);
        assert_int_equal(al_arena_attach(h, 1, &imp), AL_OK);
        assert_ptr_equal(al_arena_ptr(own), al_arena_ptr(imp));
        al_arena_destroy(own); /* deferred: imp still holds the allocation */
        assert_int_equal(cudaMemcpy(got, al_arena_ptr(imp), sizeof got, cudaMemcpyDeviceToHost), cudaSuccess);
        assert_int_equal(got[0], 0);
        al_arena_detach(imp);
        assert_int_equal(al_arena_attach(h, 1, &imp), AL_ENOTFOUND);
#endif
        fprintf(stderr, "note: CUDA IPC arena checked on %d device(s)\n", n);
    }
    assert_int_equal(write(down[1], "x", 1), 1);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    close(up[0]);
    close(up[1]);
    close(down[0]);
    close(down[1]);
}

static void test_create_attach(void **st)
{
    al_arena *own = NULL, *rw = NULL, *ro = NULL;
    const size_t sz = (1 << 20) + 123;
    assert_int_equal(al_arena_create(AL_ARENA_CPU, "t-basic", sz, &own), AL_OK);
    assert_true(al_arena_is_owner(own));
    assert_int_equal(al_arena_size(own), sz);
    assert_int_equal(nsegs("t-basic", getpid()), 1);
    uint8_t *p = al_arena_ptr(own);
    for (size_t i = 0; i < sz; i++)
        assert_int_equal(p[i], 0); /* zero-filled */
    memcpy(p, "hello", 6);
    uint8_t h[AL_ARENA_HANDLE_BYTES];
    assert_int_equal(al_arena_handle(own, h), AL_OK);
    struct al_arena_handle d;
    assert_int_equal(al_arena_handle_decode(h, &d), AL_OK);
    assert_int_equal(d.kind, AL_ARENA_CPU);
    assert_int_equal(d.size, sz);
    assert_int_equal(d.pid, (uint32_t)getpid());
    assert_string_equal(d.tag, "t-basic");

    assert_int_equal(al_arena_attach(h, 0, &rw), AL_OK);
    assert_false(al_arena_is_owner(rw));
    assert_string_equal((char *)al_arena_ptr(rw), "hello");
    memcpy((char *)al_arena_ptr(rw) + sz - 5, "tail", 5); /* importer writes, owner sees */
    assert_string_equal((char *)p + sz - 5, "tail");
    assert_int_equal(al_arena_attach(h, 1, &ro), AL_OK);
    assert_string_equal((char *)al_arena_ptr(ro), "hello");
    /* The mapping cannot be upgraded to writable: the fd was opened O_RDONLY. */
    assert_int_not_equal(mprotect(al_arena_ptr(ro), 4096, PROT_READ | PROT_WRITE), 0);
    assert_int_equal(errno, EACCES);
    al_arena_detach(rw);
    al_arena_detach(ro);
    al_arena_detach(NULL);
    al_arena_destroy(own);
    al_arena_destroy(NULL);
    assert_int_equal(nsegs("t-basic", getpid()), 0); /* no /dev/shm leak */
    assert_int_equal(al_arena_attach(h, 1, &ro), AL_ENOTFOUND);
    assert_null(ro);
}

static void test_readonly_segfaults(void **st)
{
    al_arena *own = NULL;
    assert_int_equal(al_arena_create(AL_ARENA_CPU, "t-ro", 8192, &own), AL_OK);
    uint8_t h[AL_ARENA_HANDLE_BYTES];
    assert_int_equal(al_arena_handle(own, h), AL_OK);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct sigaction sa = {.sa_handler = SIG_DFL}; /* not ASan's handler: die by the signal */
        sigaction(SIGSEGV, &sa, NULL);
        sigaction(SIGBUS, &sa, NULL);
        al_arena *ro = NULL;
        if (al_arena_attach(h, 1, &ro) != AL_OK)
            _exit(2);
        volatile uint8_t *q = al_arena_ptr(ro);
        q[100] = 42; /* must fault */
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGSEGV);
    assert_int_equal(((uint8_t *)al_arena_ptr(own))[100], 0);
    /* A forked child destroying the inherited owner object only unmaps; the segment survives. */
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        al_arena_destroy(own);
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_int_equal(nsegs("t-ro", getpid()), 1);
    al_arena_destroy(own);
    assert_int_equal(nsegs("t-ro", getpid()), 0);
}

static void test_bad_handles(void **st)
{
    al_arena *a = (al_arena *)1, *own = NULL;
    uint8_t blob[AL_ARENA_HANDLE_BYTES];
    memset(blob, 0, sizeof blob);
    assert_int_equal(al_arena_attach(blob, 1, &a), AL_EINVAL);
    assert_null(a);
    for (size_t i = 0; i < sizeof blob; i++)
        blob[i] = (uint8_t)(i * 37 + 11);
    assert_int_equal(al_arena_attach(blob, 1, &a), AL_EINVAL);
    assert_int_equal(al_arena_attach(NULL, 1, &a), AL_EINVAL);

    assert_int_equal(al_arena_create(AL_ARENA_CPU, "t-bad", 4096, &own), AL_OK);
    uint8_t h[AL_ARENA_HANDLE_BYTES];
    assert_int_equal(al_arena_handle(own, h), AL_OK);
    for (size_t i = 0; i < sizeof h; i++) { /* any flipped byte is caught */
        memcpy(blob, h, sizeof h);
        blob[i] ^= 0x40;
        assert_int_equal(al_arena_attach(blob, 1, &a), AL_EINVAL);
    }
    /* A well-formed handle naming a segment that does not exist. */
    struct al_arena_handle d;
    assert_int_equal(al_arena_handle_decode(h, &d), AL_OK);
    d.id[0] ^= 1;
    al_arena_handle_encode(&d, blob);
    assert_int_equal(al_arena_attach(blob, 1, &a), AL_ENOTFOUND);
    /* Size mismatch: the handle claims more than the segment holds. */
    assert_int_equal(al_arena_handle_decode(h, &d), AL_OK);
    d.size = 8192;
    al_arena_handle_encode(&d, blob);
    assert_int_equal(al_arena_attach(blob, 1, &a), AL_EINVAL);
    assert_non_null(strstr(al_errmsg(), "handle says 8192"));
    /* A smaller claim is fine (a view of the start). */
    d.size = 100;
    al_arena_handle_encode(&d, blob);
    assert_int_equal(al_arena_attach(blob, 1, &a), AL_OK);
    assert_int_equal(al_arena_size(a), 100);
    al_arena_detach(a);
    al_arena_destroy(own);

    /* Bad create arguments, and an arena too large for /dev/shm, leave nothing behind. */
    assert_int_equal(al_arena_create(AL_ARENA_CPU, "", 4096, &own), AL_EINVAL);
    assert_int_equal(al_arena_create(AL_ARENA_CPU, "bad/tag", 4096, &own), AL_EINVAL);
    assert_int_equal(al_arena_create(AL_ARENA_CPU, "much-too-long-tag", 4096, &own), AL_EINVAL);
    assert_int_equal(al_arena_create(AL_ARENA_CPU, "t-bad", 0, &own), AL_EINVAL);
    assert_int_equal(al_arena_create((al_arena_kind)7, "t-bad", 4096, &own), AL_EINVAL);
    assert_int_equal(al_arena_create(AL_ARENA_CPU, "t-bad", (size_t)1 << 50, &own), AL_ECAPACITY);
    assert_null(own);
    assert_int_equal(nsegs("t-bad", getpid()), 0);
}

static void test_reclaim_stale(void **st)
{
    /* Tags carry our pid so that concurrent runs of this test never reclaim each other's segments. */
    char pre[16], tx[20], ty[20];
    snprintf(pre, sizeof pre, "ts%d-", (int)getpid() % 10000000);
    snprintf(tx, sizeof tx, "%sx", pre);
    snprintf(ty, sizeof ty, "%sy", pre);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        al_arena *a = NULL;
        uint8_t h[AL_ARENA_HANDLE_BYTES] = {0};
        if (al_arena_create(AL_ARENA_CPU, tx, 65536, &a) == AL_OK)
            al_arena_handle(a, h);
        if (write(fds[1], h, sizeof h) != (ssize_t)sizeof h)
            _exit(1);
        pause();
        _exit(0);
    }
    uint8_t h[AL_ARENA_HANDLE_BYTES];
    assert_int_equal(read(fds[0], h, sizeof h), (ssize_t)sizeof h);
    close(fds[0]);
    close(fds[1]);
    al_arena *live = NULL, *a = NULL;
    assert_int_equal(al_arena_create(AL_ARENA_CPU, ty, 4096, &live), AL_OK);
    assert_int_equal(nsegs(pre, pid), 1);
    al_arena_reclaim_stale(pre); /* child alive: nothing to do */
    assert_int_equal(nsegs(pre, pid), 1);
    kill(pid, SIGKILL);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_int_equal(nsegs(pre, pid), 1); /* a crash leaves the segment */
    al_arena_seg segs[4];
    int n = 0;
    assert_int_equal(al_arena_list_ours(pre, pid, segs, 4, &n), AL_OK);
    assert_int_equal(n, 1);
    assert_string_equal(segs[0].tag, tx);
    assert_int_equal(segs[0].pid, pid);
    assert_int_equal(segs[0].bytes, 65536);
    assert_int_equal(al_arena_attach(h, 1, &a), AL_OK); /* still attachable until reclaimed */
    al_arena_detach(a);
    assert_int_equal(al_arena_reclaim_stale(pre), AL_OK);
    assert_int_equal(nsegs(pre, pid), 0);
    assert_int_equal(nsegs(ty, getpid()), 1); /* ours is alive: kept */
    assert_int_equal(al_arena_attach(h, 1, &a), AL_ENOTFOUND);
    al_arena_destroy(live);
    assert_int_equal(nsegs(pre, getpid()), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cuda), /* first: forks before CUDA is initialised here */
        cmocka_unit_test(test_create_attach),
        cmocka_unit_test(test_readonly_segfaults),
        cmocka_unit_test(test_bad_handles),
        cmocka_unit_test(test_reclaim_stale),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
