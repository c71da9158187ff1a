/* router_pool.c: a small thread pool that runs deferred RPC calls off NNG's threads. */
#include <stdlib.h>

#include "common/log.h"
#include "common/util.h"
#include "services/router/router.h"

static void *router_pool_main(void *arg)
{
    router_pool *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (!p->head && !p->stop)
            pthread_cond_wait(&p->cv, &p->mu);
        router_task *t = p->head;
        if (!t) { /* stop and drained */
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        p->head = t->next;
        if (!p->head)
            p->tail = NULL;
        pthread_mutex_unlock(&p->mu);
        t->fn(t);
        free(t);
    }
}

al_err router_pool_start(router_pool *p, int n_threads)
{
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->head = p->tail = NULL;
    p->stop = false;
    p->th = calloc((size_t)n_threads, sizeof *p->th);
    if (!p->th)
        return ali_errf(AL_ENOMEM, "router: out of memory");
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setstacksize(&at, 1u << 20);
    for (p->n_th = 0; p->n_th < n_threads; p->n_th++)
        if (pthread_create(&p->th[p->n_th], &at, router_pool_main, p) != 0) {
            pthread_attr_destroy(&at);
            return ali_errf(AL_EINTERNAL, "router: cannot start pool thread %d", p->n_th);
        }
    pthread_attr_destroy(&at);
    return AL_OK;
}

void router_pool_submit(router_pool *p, router *r, al_rpc_job *job, const void *req, void *rep,
                        router_task_fn fn, int intr)
{
    router_pool_submit_ex(p, r, job, req, rep, fn, intr, NULL, 0);
}

void router_pool_submit_ex(router_pool *p, router *r, al_rpc_job *job, const void *req, void *rep,
                           router_task_fn fn, int intr, router_base *routed, double t_accept)
{
    al_rpc_defer(job);
    router_task *t = calloc(1, sizeof *t);
    if (!t) {
        router_base_done(r, routed);
        if (intr >= 0)
            router_release(r, intr);
        al_rpc_complete(job, ali_errf(AL_ENOMEM, "router: out of memory"));
        return;
    }
    *t = (router_task){.r = r, .job = job, .req = req, .rep = rep, .fn = fn, .intr = intr,
                       .t_accept = t_accept > 0 ? t_accept : al_now(), .routed = routed};
    pthread_mutex_lock(&p->mu);
    if (p->stop) {
        pthread_mutex_unlock(&p->mu);
        free(t);
        router_base_done(r, routed);
        if (intr >= 0)
            router_release(r, intr);
        al_rpc_complete(job, ali_errf(AL_ECLOSED, "router: shutting down"));
        return;
    }
    if (p->tail)
        p->tail->next = t;
    else
        p->head = t;
    p->tail = t;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

void router_pool_stop(router_pool *p)
{
    if (!p->th)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_th; i++)
        pthread_join(p->th[i], NULL);
    free(p->th);
    p->th = NULL;
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
}

bool router_pool_post(router_pool *p, router *r, router_task_fn fn, void *arg)
{
    router_task *t = calloc(1, sizeof *t);
    if (!t)
        return false;
    *t = (router_task){.r = r, .req = arg, .fn = fn, .intr = -1, .t_accept = al_now()};
    pthread_mutex_lock(&p->mu);
    if (p->stop) {
        pthread_mutex_unlock(&p->mu);
        free(t);
        return false;
    }
    if (p->tail)
        p->tail->next = t;
    else
        p->head = t;
    p->tail = t;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return true;
}
