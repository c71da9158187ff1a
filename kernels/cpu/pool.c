/* pool.c: a small fork-join thread pool for the CPU ops: helpers spin briefly for the next job
 * (ops come back to back within a step), then sleep; one job at a time (a second caller runs its
 * tasks itself). */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include "kernels/cpu/cpu_ops.h"

#define ALI_POOL_MAX 64
#define ALI_POOL_SPIN 20000 /* polls (~tens of µs) before a helper sleeps */

typedef struct ali_pool {
    pthread_mutex_t run_mu;  /* held by the caller running a job */
    pthread_mutex_t mu;      /* sleep / wake-up */
    pthread_cond_t cv;
    pthread_t th[ALI_POOL_MAX];
    int n_helpers;
    uint64_t start_gen;      /* gen when the helpers were started: what a new helper has "seen" */
    _Atomic uint64_t gen;    /* the current job's number (bumped per job, and to stop) */
    _Atomic uint64_t next;   /* job number << 32 | next task index: a task is taken by CAS, so a
                                helper still looking at an older job can never take a new one's */
    _Atomic int done;        /* tasks of the current job finished */
    _Atomic int sleepers;
    _Atomic bool stop;
    _Atomic int n_tasks;
    void (*fn)(void *ctx, int task);
    void *ctx;
} ali_pool;

static ali_pool ali_P = {.run_mu = PTHREAD_MUTEX_INITIALIZER, .mu = PTHREAD_MUTEX_INITIALIZER,
                         .cv = PTHREAD_COND_INITIALIZER};
static pthread_once_t ali_pool_once = PTHREAD_ONCE_INIT;

/* Takes and runs tasks of job g until none is left. After a successful CAS the job cannot end
 * (that task is not done), so fn / ctx are still job g's. */
static void ali_pool_work(ali_pool *p, uint64_t g)
{
    for (;;) {
        uint64_t x = atomic_load_explicit(&p->next, memory_order_acquire);
        if ((uint32_t)(x >> 32) != (uint32_t)g ||
            (uint32_t)x >= (uint32_t)atomic_load_explicit(&p->n_tasks, memory_order_relaxed))
            return;
        if (!atomic_compare_exchange_weak_explicit(&p->next, &x, x + 1, memory_order_acq_rel, memory_order_acquire))
            continue;
        p->fn(p->ctx, (int)(uint32_t)x);
        atomic_fetch_add_explicit(&p->done, 1, memory_order_acq_rel);
    }
}

static void *ali_pool_main(void *arg)
{
    ali_pool *p = arg;
    /* not the current gen: a helper that first runs after a stop (or a job) was published would
     * take that gen as already seen and miss it (a stop missed: pthread_join never returns) */
    uint64_t seen = p->start_gen;
    for (;;) {
        uint64_t g;
        int spins = 0;
        while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen) {
            if (++spins < ALI_POOL_SPIN) {
#if defined(__x86_64__)
                __builtin_ia32_pause();
#endif
                continue;
            }
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleepers, 1);
            while (atomic_load(&p->gen) == seen)
                pthread_cond_wait(&p->cv, &p->mu);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->mu);
        }
        seen = g;
        if (atomic_load(&p->stop))
            return NULL;
        ali_pool_work(p, g);
    }
}

static void ali_pool_stop_locked(ali_pool *p)
{
    if (!p->n_helpers)
        return;
    atomic_store(&p->stop, true);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->gen, 1);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_helpers; i++)
        pthread_join(p->th[i], NULL);
    p->n_helpers = 0;
    atomic_store(&p->stop, false);
}

/* A forked child has only the forking thread: forget the helpers (started again on demand). */
static void ali_pool_atfork_child(void)
{
    ali_P.n_helpers = 0;
    pthread_mutex_init(&ali_P.run_mu, NULL);
    pthread_mutex_init(&ali_P.mu, NULL);
    pthread_cond_init(&ali_P.cv, NULL);
}

static void ali_pool_init_once(void) { pthread_atfork(NULL, NULL, ali_pool_atfork_child); }

static void ali_pool_resize_locked(ali_pool *p, int want)
{
    if (want > ALI_POOL_MAX)
        want = ALI_POOL_MAX;
    if (want == p->n_helpers)
        return;
    ali_pool_stop_locked(p);
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setstacksize(&at, 256u << 10);
    p->start_gen = atomic_load(&p->gen); /* written before pthread_create, which publishes it */
    for (int i = 0; i < want; i++) {
        if (pthread_create(&p->th[i], &at, ali_pool_main, p) != 0)
            break;
        p->n_helpers = i + 1;
    }
    pthread_attr_destroy(&at);
}

/* ---- per-thread scratch ---------------------------------------------------------------------- */

static _Thread_local float *ali_scr[ALI_SCRATCH_SLOTS];
static _Thread_local size_t ali_scr_n[ALI_SCRATCH_SLOTS];
static pthread_key_t ali_scr_key;
static pthread_once_t ali_scr_once = PTHREAD_ONCE_INIT;

/* Runs when a thread that used the scratch exits (engine threads of the services). */
static void ali_scr_release(void *unused)
{
    (void)unused;
    for (int i = 0; i < ALI_SCRATCH_SLOTS; i++) {
        free(ali_scr[i]);
        ali_scr[i] = NULL;
        ali_scr_n[i] = 0;
    }
}

static void ali_scr_key_init(void) { pthread_key_create(&ali_scr_key, ali_scr_release); }

float *ali_cpu_scratch(int slot, size_t n)
{
    if (n > ali_scr_n[slot]) {
        pthread_once(&ali_scr_once, ali_scr_key_init);
        pthread_setspecific(ali_scr_key, (void *)1); /* arms the destructor for this thread */
        free(ali_scr[slot]);
        void *p = NULL;
        if (posix_memalign(&p, 64, sizeof(float) * n) != 0)
            abort(); /* a few MB of scratch: treated like a stack overflow */
        ali_scr[slot] = p;
        ali_scr_n[slot] = n;
    }
    return ali_scr[slot];
}

/* ---- the pool ---------------------------------------------------------------------------------- */

void ali_par_run(int n_tasks, void (*fn)(void *ctx, int task), void *ctx)
{
    ali_pool *p = &ali_P;
    int threads = al_cpu_threads();
    if (n_tasks <= 1 || threads <= 1 || pthread_mutex_trylock(&p->run_mu) != 0) {
        for (int t = 0; t < n_tasks; t++) /* alone, or another engine thread holds the pool */
            fn(ctx, t);
        return;
    }
    pthread_once(&ali_pool_once, ali_pool_init_once);
    ali_pool_resize_locked(p, threads - 1);
    uint64_t g = atomic_load(&p->gen) + 1;
    p->fn = fn;
    p->ctx = ctx;
    atomic_store_explicit(&p->n_tasks, n_tasks, memory_order_relaxed);
    atomic_store(&p->done, 0);
    atomic_store_explicit(&p->next, g << 32, memory_order_release); /* publishes the job */
    /* store gen, then read sleepers (a helper does the opposite, both seq_cst): a helper that is
     * about to sleep either sees the new job or is counted, and then waits on mu for the wake-up */
    atomic_store(&p->gen, g);
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    ali_pool_work(p, g);
    while (atomic_load_explicit(&p->done, memory_order_acquire) < n_tasks) {
#if defined(__x86_64__)
        __builtin_ia32_pause();
#endif
    }
    pthread_mutex_unlock(&p->run_mu);
}
