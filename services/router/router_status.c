/* router_status.c: ROUTER_STATUS (every process) and ROUTER_INTRINSICS. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "services/router/router.h"

/* Snapshot of one worker for the status (copied under the lock; stats fetched outside it). */
typedef struct router_wsnap {
    char id[64], intrinsic[64], base_id[64], url[256], backend[48];
    uint32_t pid, capacity, leases_held, active;
    alora_Health health;
    uint64_t requests;
    uint64_t steps, shared_steps, step_calls, step_rows; /* the worker's batching counters */
    double last_seen;
    al_rpc_client *cli;
    router_worker *w;
} router_wsnap;

static void router_task_status(router_task *t)
{
    router *r = t->r;
    alora_StatusReply *rep = t->rep;
    router_base_poll(r); /* fresh base numbers */

    router_wsnap *ws = NULL;
    int nw = 0, cap = 0;
    pthread_mutex_lock(&r->mu);
    for (router_worker *w = r->workers; w; w = w->next)
        if (!w->removed)
            cap++;
    ws = calloc((size_t)(cap ? cap : 1), sizeof *ws);
    for (router_worker *w = r->workers; w && ws; w = w->next) {
        if (w->removed)
            continue;
        router_wsnap *s = &ws[nw++];
        ROUTER_STRCPY(s->id, w->id);
        ROUTER_STRCPY(s->intrinsic, w->intrinsic);
        ROUTER_STRCPY(s->base_id, w->base_id);
        ROUTER_STRCPY(s->url, w->url);
        s->pid = w->pid;
        s->capacity = w->capacity;
        s->leases_held = w->leases_held;
        s->active = (uint32_t)w->inflight;
        s->health = w->health;
        bool current = false; /* attached to a base instance that still runs */
        for (int i = 0; i < r->n_bases; i++)
            current = current || !r->bases[i].id[0] || !strcmp(w->base_id, r->bases[i].id);
        if (!current)
            s->health = alora_Health_HEALTH_DEGRADED;
        s->requests = w->requests;
        s->last_seen = w->last_seen;
        s->w = w;
        w->refs++; /* keeps w->cli open while we ask for its stats */
    }
    /* router */
    alora_ProcessStatus *p = &rep->processes[rep->processes_count++];
    p->role = alora_Role_ROLE_ROUTER;
    p->pid = (uint32_t)getpid();
    ROUTER_STRCPY(p->id, r->id);
    ROUTER_STRCPY(p->base_instance_id, r->n_bases ? r->bases[0].id : "");
    snprintf(p->url, sizeof p->url, "%.127s", r->bound);
    p->health = alora_Health_HEALTH_OK;
    for (int i = 0; i < r->cfg.n_intrinsics; i++)
        p->active += (uint32_t)r->intr[i].pending;
    p->requests = r->n_requests;
    /* bases */
    for (int i = 0; i < r->n_bases && rep->processes_count < 128; i++) {
        const router_base *b = &r->bases[i];
        p = &rep->processes[rep->processes_count++];
        p->role = alora_Role_ROLE_BASE;
        p->pid = b->pid;
        ROUTER_STRCPY(p->id, b->id);
        ROUTER_STRCPY(p->base_instance_id, b->id);
        ROUTER_STRCPY(p->backend, b->backend);
        snprintf(p->url, sizeof p->url, "%.127s", b->url);
        p->health = b->seen ? b->health : alora_Health_HEALTH_DOWN;
        p->last_seen_ms = b->seen ? (uint64_t)router_ms_since(b->seen) : 0;
        if (b->stats_ok) {
            p->leases_held = b->stats.leases;
            p->kv_blocks_used = b->stats.kv_blocks_used;
            p->kv_blocks_free = b->stats.kv_blocks_free;
            p->active = b->stats.running + b->stats.queued;
            p->requests = b->stats.requests;
        }
    }
    rep->sessions = (uint32_t)r->n_sessions;
    pthread_mutex_unlock(&r->mu);
    rep->uptime_ms = (uint64_t)router_ms_since(r->t0);
    router_lcache_stats(r, &rep->kept_leases, &rep->kept_lease_hits, &rep->kept_lease_misses);
    rep->fast_calls = __atomic_load_n(&r->fast_calls, __ATOMIC_RELAXED);

    for (int i = 0; i < nw; i++) {
        router_wsnap *s = &ws[i];
        alora_Empty q = alora_Empty_init_zero;
        alora_WorkerStatsReply st;
        al_pbmem m = AL_PBMEM_INIT;
        if (al_rpc_call(s->w->cli, alora_Method_WORKER_STATS, &q, &st, &m, 1000) == AL_OK) {
            s->leases_held = st.leases_held;
            s->active = st.active + st.queued;
            ROUTER_STRCPY(s->backend, st.backend);
            s->steps = st.steps;
            s->shared_steps = st.shared_steps;
            s->step_calls = st.step_calls;
            s->step_rows = st.step_rows;
        } else {
            s->health = alora_Health_HEALTH_DOWN;
        }
        al_pbmem_free(&m);
        if (rep->processes_count < 128) {
            p = &rep->processes[rep->processes_count++];
            p->role = alora_Role_ROLE_WORKER;
            p->pid = s->pid;
            ROUTER_STRCPY(p->id, s->id);
            ROUTER_STRCPY(p->base_instance_id, s->base_id);
            ROUTER_STRCPY(p->intrinsic, s->intrinsic);
            snprintf(p->url, sizeof p->url, "%.127s", s->url);
            ROUTER_STRCPY(p->backend, s->backend);
            p->health = s->health;
            p->leases_held = s->leases_held;
            p->active = s->active;
            p->capacity = s->capacity;
            p->requests = s->requests;
            p->last_seen_ms = (uint64_t)router_ms_since(s->last_seen);
            p->steps = s->steps;
            p->shared_steps = s->shared_steps;
            p->step_calls = s->step_calls;
            p->step_rows = s->step_rows;
        }
    }
    pthread_mutex_lock(&r->mu);
    for (int i = 0; i < nw; i++)
        ws[i].w->refs--;
    pthread_mutex_unlock(&r->mu);
    free(ws);
    al_rpc_complete(t->job, AL_OK);
}

static al_err router_on_status(al_rpc_job *job, const void *req, void *rep, void *user)
{
    router *r = user;
    router_pool_submit(&r->ctl, r, job, req, rep, router_task_status, -1);
    return AL_OK;
}

static al_err router_on_intrinsics(al_rpc_job *job, const void *req, void *rep_, void *user)
{
    router *r = user;
    alora_IntrinsicsReply *rep = rep_;
    pthread_mutex_lock(&r->mu);
    for (int i = 0; i < r->cfg.n_intrinsics && i < 64; i++) {
        alora_IntrinsicInfo *in = &rep->intrinsics[rep->intrinsics_count++];
        ROUTER_STRCPY(in->name, r->cfg.intrinsics[i].name);
        int n;
        router_intr_workers(r, i, &n, &in->capacity, &in->active);
        in->n_workers = (uint32_t)n;
        for (router_worker *w = r->workers; w; w = w->next)
            if (!w->removed && !strcmp(w->intrinsic, in->name)) {
                ROUTER_STRCPY(in->adapter_digest, w->digest);
                in->n_invocation_tokens = (uint32_t)w->n_inv;
                break;
            }
    }
    pthread_mutex_unlock(&r->mu);
    return AL_OK;
}

al_err router_status_register_handlers(router *r)
{
    AL_TRY(al_rpc_server_handle(r->srv, alora_Method_ROUTER_STATUS, router_on_status, r));
    AL_TRY(al_rpc_server_handle(r->srv, alora_Method_ROUTER_INTRINSICS, router_on_intrinsics, r));
    return AL_OK;
}
