/* worker_server.c: alora-worker RPC handlers: Invoke (queued, deferred), Health and Stats (at once). */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/log.h"
#include "common/stage.h"
#include "services/worker/worker.h"

static al_err worker_h_invoke(al_rpc_job *job, const void *req, void *rep, void *user)
{
    worker_ctx *w = user;
    worker_cmd *c = calloc(1, sizeof *c);
    if (!c)
        return ali_errf(AL_ENOMEM, "worker: out of memory");
    c->job = job;
    c->req = req;
    c->rep = rep;
    al_rpc_defer(job);
    al_stage("W2 worker push");
    worker_loop_push(w, c);
    return AL_OK;
}

static al_err worker_h_health(al_rpc_job *job, const void *req, void *rep, void *user)
{
    worker_ctx *w = user;
    alora_HealthReply *r = rep;
    r->role = alora_Role_ROLE_WORKER;
    r->health = alora_Health_HEALTH_OK;
    r->pid = (uint32_t)getpid();
    snprintf(r->instance_id, sizeof r->instance_id, "%s", w->worker_id);
    r->uptime_ms = (uint64_t)((al_now() - w->t_start) * 1e3);
    snprintf(r->version, sizeof r->version, "alora-worker %s", ALORA_VERSION);
    al_ops_describe(w->ops, r->backend, sizeof r->backend);
    return AL_OK;
}

static al_err worker_h_stats(al_rpc_job *job, const void *req, void *rep, void *user)
{
    worker_ctx *w = user;
    alora_WorkerStatsReply *r = rep;
    snprintf(r->worker_id, sizeof r->worker_id, "%s", w->worker_id);
    al_ops_describe(w->ops, r->backend, sizeof r->backend);
    snprintf(r->intrinsic, sizeof r->intrinsic, "%s", w->intr->name);
    snprintf(r->base_instance_id, sizeof r->base_instance_id, "%s", w->base_instance_id);
    r->active = __atomic_load_n(&w->n_active, __ATOMIC_RELAXED);
    r->queued = __atomic_load_n(&w->n_queued, __ATOMIC_RELAXED);
    r->capacity = (uint32_t)w->intr->capacity;
    r->invocations = __atomic_load_n(&w->invocations, __ATOMIC_RELAXED);
    r->errors = __atomic_load_n(&w->errors, __ATOMIC_RELAXED);
    r->computed_tokens = __atomic_load_n(&w->computed_tokens, __ATOMIC_RELAXED);
    r->reused_tokens = __atomic_load_n(&w->reused_tokens, __ATOMIC_RELAXED);
    int32_t nb = w->cfg.worker.kv_blocks;
    int32_t nfree = __atomic_load_n(&al_engine_kvpool(w->engine)->n_free, __ATOMIC_RELAXED);
    r->scratch_blocks_used = (uint32_t)(nb - nfree);
    r->scratch_blocks_free = (uint32_t)nfree;
    r->leases_held = 0; /* leases belong to the caller (the router); the worker only reads them */
    r->kv_copied_bytes = worker_kv_copied_bytes(w);
    r->steps = __atomic_load_n(&w->steps, __ATOMIC_RELAXED);
    r->shared_steps = __atomic_load_n(&w->shared_steps, __ATOMIC_RELAXED);
    r->step_calls = __atomic_load_n(&w->step_calls, __ATOMIC_RELAXED);
    r->step_rows = __atomic_load_n(&w->step_rows, __ATOMIC_RELAXED);
    r->max_batch = (uint32_t)w->cfg.worker.max_batch;
    return AL_OK;
}

al_err worker_server_start(worker_ctx *w)
{
    al_rpc_server_opts o;
    al_rpc_server_opts_default(&o);
    o.n_ctx = w->intr->capacity * 2 + 8;
    AL_TRY(al_rpc_server_new(&w->srv, &o));
    AL_TRY(al_rpc_server_handle(w->srv, alora_Method_WORKER_INVOKE, worker_h_invoke, w));
    AL_TRY(al_rpc_server_handle(w->srv, alora_Method_WORKER_HEALTH, worker_h_health, w));
    AL_TRY(al_rpc_server_handle(w->srv, alora_Method_WORKER_STATS, worker_h_stats, w));
    char bound[256];
    AL_TRY(al_rpc_server_listen(w->srv, w->url, bound, sizeof bound));
    AL_INFO("worker %s (%s) listening on %s", w->worker_id, w->intr->name, bound);
    return AL_OK;
}

void worker_server_stop(worker_ctx *w)
{
    al_rpc_server_close(w->srv);
    w->srv = NULL;
}
