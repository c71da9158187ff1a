/* router_invoke_fast.c: ROUTER_INVOKE on a kept lease without the pool: async worker call, reply on NNG's thread. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/model/adapter.h"
#include "common/stage.h"
#include "common/util.h"
#include "services/router/router.h"

/* One call in flight on the fast path (freed when answered or handed to the pool). */
typedef struct router_fast {
    router *r;
    al_rpc_job *job;
    const alora_InvokeRequest *q; /* in the job's memory */
    alora_InvokeReply *rep;
    int intr;
    router_base *b;
    router_worker *w;
    router_lcache_ent *lce;
    alora_LeaseReply lr;
    int32_t s;
    double t_accept, t_worker;
    alora_WorkerInvokeReply wr;
    al_pbmem wm;
} router_fast;

/* The worker call failed (or answered from another base instance): the kept lease is dropped and
 * the call runs again on the pool, which leases afresh and retries on another replica. */
static void router_fast_fallback(router_fast *f, const char *why)
{
    router *r = f->r;
    AL_DEBUG("router: kept lease %llu on the fast path failed (%s); leasing again", (unsigned long long)f->lr.lease_id,
             why);
    router_lcache_put(r, f->lce, true);
    router_pool_submit_ex(&r->pool, r, f->job, f->q, f->rep, router_task_invoke, f->intr, f->b, f->t_accept);
    al_pbmem_free(&f->wm);
    free(f);
}

static void router_fast_done(al_err e, const char *msg, void *rep, void *arg)
{
    router_fast *f = arg;
    router *r = f->r;
    al_stage("R6 router recv done");
    char worker_id[64];
    snprintf(worker_id, sizeof worker_id, "%s", e == AL_OK && f->wr.worker_id[0] ? f->wr.worker_id : f->w->id);
    bool moved = e == AL_OK && strcmp(f->w->base_id, router_lcache_inst(f->lce)) != 0;
    router_worker_put(r, f->w, e == AL_OK);
    if (e != AL_OK || moved) {
        /* a kept lease names rows of the instance that granted it: a worker attached to another
         * one (the base restarted between the lookup and the pick) must not have read them */
        if (e != AL_OK)
            AL_WARN("router: invoke %s on %s failed (%s: %s), retrying with a fresh lease", f->q->intrinsic, worker_id,
                    al_strerror(e), msg);
        router_fast_fallback(f, e != AL_OK ? msg : "worker attached to another base instance");
        return;
    }
    router_reply_in ri = {.intrinsic = f->q->intrinsic, .s = f->s, .lr = &f->lr, .kept = true, .wr = &f->wr,
                          .worker_id = worker_id, .t_accept = f->t_accept, .t_start = f->t_accept,
                          .t_worker = f->t_worker};
    e = router_invoke_reply(r, &ri, f->rep, al_rpc_job_mem(f->job));
    router_lcache_put(r, f->lce, e != AL_OK);
    router_base_done(r, f->b);
    router_release(r, f->intr);
    al_pbmem_free(&f->wm);
    al_rpc_job *job = f->job;
    free(f);
    __atomic_add_fetch(&r->fast_calls, 1, __ATOMIC_RELAXED);
    al_stage("R7b router complete");
    al_rpc_complete(job, e);
}

bool router_invoke_fast(router *r, al_rpc_job *job, const alora_InvokeRequest *q, alora_InvokeReply *rep, int intr,
                        router_base **routed)
{
    *routed = NULL;
    const int32_t *toks;
    size_t n = al_pb_i32(&q->tokens, &toks);
    if (!r->lc || !n || q->mode != alora_InvokeMode_MODE_ALORA)
        return false;
    int32_t inv[ROUTER_MAX_INV];
    int n_inv = 0;
    if (router_intr_invocation(r, q->intrinsic, inv, &n_inv) != AL_OK)
        return false; /* the pool answers the error */
    alora_Sampling sampling = q->sampling;
    router_sampling_defaults(r->intr[intr].cfg, &sampling, q->max_tokens, q->top_logprobs);
    if (r->max_pos > 0 && (int64_t)n + sampling.max_tokens > r->max_pos)
        return false;
    int32_t N = (int32_t)n, s = n_inv > 0 ? al_alora_find_start(toks, N, inv, n_inv) : 0;
    int32_t p = s >= 0 ? s : N, pkey = s >= 0 && s < N ? s : N;
    if (p >= N)
        p = N - 1;
    if (p <= 0)
        return false;
    router_base *b = router_base_route(r, toks, pkey, NULL);
    if (!b)
        return false;
    *routed = b;
    alora_LeaseReply lr;
    router_lcache_ent *lce;
    if (!router_lcache_get(r, b, toks, p, &lr, &lce))
        return false;
    router_worker *w;
    if (router_worker_pick(r, b, q->intrinsic, false, NULL, &w) != AL_OK) {
        router_lcache_put(r, lce, false);
        return false;
    }
    router_fast *f = calloc(1, sizeof *f);
    if (!f) {
        router_worker_put(r, w, false);
        router_lcache_put(r, lce, false);
        return false;
    }
    *f = (router_fast){.r = r, .job = job, .q = q, .rep = rep, .intr = intr, .b = b, .w = w, .lce = lce, .lr = lr,
                       .s = s, .t_accept = al_now(), .wm = AL_PBMEM_INIT};
    f->lr.n_cached = f->lr.n_tokens; /* a kept lease: every leased token was cached, no prefill */
    f->lr.timings = (alora_Timings){0};

    alora_WorkerInvokeRequest wq = alora_WorkerInvokeRequest_init_zero;
    al_pbmem qm = AL_PBMEM_INIT;
    int timeout = r->cfg.router.request_timeout_ms > 0 ? r->cfg.router.request_timeout_ms : 60000;
    wq.sampling = sampling;
    wq.mode = alora_InvokeMode_MODE_ALORA;
    wq.deadline_ms = (uint32_t)timeout;
    wq.start_pos = (uint32_t)p;
    wq.has_activation_start = s >= 0;
    wq.activation_start = s >= 0 ? (uint32_t)s : 0;
    wq.has_lease = true;
    wq.lease = (alora_LeaseRef){.lease_id = lr.lease_id, .n_tokens = lr.n_tokens, .table_offset = lr.table_offset,
                                .generation = lr.generation};
    al_rpc_callopts co = {.timeout_ms = timeout, .no_wait = true};
    al_err e = al_pb_ref_i32(&wq.tokens, &qm, toks + p, (size_t)(N - p));
    al_rpc_defer(job);
    f->t_worker = al_now();
    al_stage("R4 router encode");
    if (e == AL_OK) /* the request is encoded before this returns: qm can go */
        e = al_rpc_call_async(w->cli, alora_Method_WORKER_INVOKE, &wq, &f->wr, &f->wm, &co, router_fast_done, f);
    al_pbmem_free(&qm);
    if (e != AL_OK) { /* not sent (the worker is not connected, ...): the pool takes it */
        router_worker_put(r, w, false);
        router_lcache_put(r, lce, false);
        free(f);
        return false;
    }
    return true;
}
