/* worker_loop.c: the worker's engine thread: private engine; invocations that arrive while a step
 * computes wait in the queue and join the next step, up to worker.max_batch of them per step (their
 * rows stacked into one forward pass over the base weights, each with its own leased prefix). */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "common/log.h"
#include "common/stage.h"
#include "services/worker/worker.h"

static void worker_fail_list(worker_ctx *w, worker_cmd *c)
{
    while (c) {
        worker_cmd *n = c->next;
        ali_errf(AL_EUNAVAILABLE, "worker is shutting down");
        worker_cmd_done(w, c, AL_EUNAVAILABLE);
        c = n;
    }
}

void worker_loop_push(worker_ctx *w, worker_cmd *c)
{
    c->t_queued = al_now();
    c->eseq = -1;
    c->next = NULL;
    pthread_mutex_lock(&w->mu);
    if (w->stop) {
        pthread_mutex_unlock(&w->mu);
        worker_fail_list(w, c);
        return;
    }
    if (w->q_tail)
        w->q_tail->next = c;
    else
        w->q_head = c;
    w->q_tail = c;
    __atomic_add_fetch(&w->n_queued, 1, __ATOMIC_RELAXED);
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* Publishes the engine's step counters (the stats thread reads them while steps run). */
static void worker_loop_count(worker_ctx *w)
{
    al_engine_stats st;
    al_engine_stats_get(w->engine, &st);
    __atomic_store_n(&w->steps, st.steps, __ATOMIC_RELAXED);
    __atomic_store_n(&w->shared_steps, st.shared_steps, __ATOMIC_RELAXED);
    __atomic_store_n(&w->step_calls, st.step_seqs, __ATOMIC_RELAXED);
    __atomic_store_n(&w->step_rows, st.step_rows, __ATOMIC_RELAXED);
}

static void *worker_loop_main(void *arg)
{
    worker_ctx *w = arg;
    for (;;) {
        pthread_mutex_lock(&w->mu);
        while (!w->q_head && !w->stop && !w->running && !w->waiting)
            pthread_cond_wait(&w->cv, &w->mu);
        worker_cmd *in = w->q_head;
        if (in)
            al_stage("W3 engine woke");
        w->q_head = w->q_tail = NULL;
        bool stop = w->stop;
        pthread_mutex_unlock(&w->mu);
        if (stop) {
            worker_fail_list(w, in);
            break;
        }
        /* append the new commands to the waiting list, then start what fits */
        worker_cmd **tail = &w->waiting;
        while (*tail)
            tail = &(*tail)->next;
        *tail = in;
        worker_cmd **pp = &w->waiting;
        while (*pp && w->n_running < w->cfg.worker.max_batch) {
            worker_cmd *c = *pp, *next = c->next;
            int r = worker_invoke_start(w, c);
            if (r < 0)
                break; /* engine full: keep the order, wait for a slot */
            *pp = next;
            __atomic_sub_fetch(&w->n_queued, 1, __ATOMIC_RELAXED);
            if (r == 0) {
                c->next = w->running;
                w->running = c;
                w->n_running++;
                __atomic_add_fetch(&w->n_active, 1, __ATOMIC_RELAXED);
            }
        }
        if (!w->running) {
            if (w->waiting) { /* cannot start although nothing runs: should not happen */
                worker_cmd *c = w->waiting;
                w->waiting = c->next;
                __atomic_sub_fetch(&w->n_queued, 1, __ATOMIC_RELAXED);
                ali_errf(AL_EINTERNAL, "worker: invocation cannot be scheduled");
                worker_cmd_done(w, c, AL_EINTERNAL);
            }
            continue;
        }
        int32_t n_active = 0;
        al_stage("W4 step begin");
        al_err e = al_engine_step(w->engine, &n_active);
        al_stage("W5 step end");
        if (e != AL_OK)
            AL_ERROR("engine step failed: %s: %s", al_strerror(e), al_errmsg());
        worker_loop_count(w);
        pp = &w->running;
        while (*pp) {
            worker_cmd *c = *pp, *next = c->next;
            if (!al_engine_done(w->engine, c->eseq)) {
                pp = &c->next;
                continue;
            }
            *pp = next;
            w->n_running--;
            __atomic_sub_fetch(&w->n_active, 1, __ATOMIC_RELAXED);
            worker_invoke_finish(w, c);
        }
    }
    worker_fail_list(w, w->waiting);
    w->waiting = NULL;
    worker_fail_list(w, w->running);
    w->running = NULL;
    w->n_running = 0;
    return NULL;
}

al_err worker_loop_start(worker_ctx *w)
{
    al_kv_geom g = {.n_layers = w->model->cfg.n_layers, .n_kv_heads = w->model->cfg.n_kv_heads,
                    .head_dim = w->model->cfg.head_dim, .block_size = w->block_size};
    w->scratch_kv_bytes = al_kvpool_bytes(&g, w->cfg.worker.kv_blocks);
    if (w->ops->host_memory) {
        /* anonymous mapping: only the blocks the suffixes touch become resident */
        w->scratch_kv = mmap(NULL, w->scratch_kv_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (w->scratch_kv == MAP_FAILED)
            w->scratch_kv = NULL;
    } else {
        w->scratch_kv = w->ops->alloc(w->scratch_kv_bytes);
    }
    if (!w->scratch_kv)
        return ali_errf(AL_ENOMEM, "worker: cannot allocate %.1f MiB of %s scratch KV (worker.kv_blocks = %d)",
                        w->scratch_kv_bytes / 1048576.0, w->ops->name, w->cfg.worker.kv_blocks);
    al_engine_opts o = {.block_size = w->block_size,
                        .n_blocks = w->cfg.worker.kv_blocks,
                        .max_batch_tokens = w->cfg.worker.max_batch_tokens,
                        .max_seqs = w->intr->capacity,
                        .kv_mem = w->scratch_kv,
                        .ops = w->ops,
                        .weights = &w->wview,
                        .prefix_cache = 0,
                        .max_shared_rows = w->cfg.worker.batch_rows,
                        .threads = w->cfg.worker.threads > 0 ? w->cfg.worker.threads : -1};
    o.vocab = w->vocab = al_service_vocab(&w->cfg, &w->model->cfg);
    AL_TRY(al_engine_create(w->model, &o, &w->engine));
    AL_TRY(al_engine_add_adapter(w->engine, w->adapter, &w->slot));
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->mu_init = true;
    if (pthread_create(&w->thread, NULL, worker_loop_main, w) != 0)
        return ali_errf(AL_EINTERNAL, "worker: cannot start the engine thread");
    w->thread_started = true;
    return AL_OK;
}

void worker_loop_stop(worker_ctx *w)
{
    if (!w->thread_started)
        return;
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    w->thread_started = false;
    worker_fail_list(w, w->q_head);
    w->q_head = w->q_tail = NULL;
}

void worker_loop_free(worker_ctx *w)
{
    if (w->mu_init) {
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->cv);
        w->mu_init = false;
    }
    if (w->engine)
        AL_INFO("engine: %llu KV bytes copied in the private pool (leased base KV is read in place)",
                (unsigned long long)al_engine_kvpool(w->engine)->copied_bytes);
    al_engine_free(w->engine);
    w->engine = NULL;
    al_vocab_free(w->vocab);
    w->vocab = NULL;
    al_grammar_cache_clear(); /* the compiled constraints and their masks */
    if (w->scratch_kv && w->ops->host_memory)
        munmap(w->scratch_kv, w->scratch_kv_bytes);
    else if (w->scratch_kv)
        w->ops->free(w->scratch_kv);
    w->scratch_kv = NULL;
    al_adapter_free(w->adapter);
    w->adapter = NULL;
}

uint64_t worker_kv_copied_bytes(worker_ctx *w)
{
    /* a plain read of a counter the engine thread writes: a statistic, tearing is harmless on x86-64 */
    return w->engine ? __atomic_load_n(&al_engine_kvpool(w->engine)->copied_bytes, __ATOMIC_RELAXED) : 0;
}
