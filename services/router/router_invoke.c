/* router_invoke.c: ROUTER_INVOKE: activation start, BASE_LEASE (or a kept lease), WORKER_INVOKE (one retry), unlease. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/stage.h"
#include "common/model/adapter.h"
#include "common/util.h"
#include "services/router/front/metrics.h"
#include "services/router/router.h"

static int router_timeout(const router *r)
{
    return r->cfg.router.request_timeout_ms > 0 ? r->cfg.router.request_timeout_ms : 60000;
}

al_err router_check_tokens(const router *r, const char *field, const int32_t *t, size_t n)
{
    if (n > ROUTER_MAX_REQ_TOKENS)
        return ali_errf(AL_ERANGE, "%s: %zu tokens > max %d", field, n, ROUTER_MAX_REQ_TOKENS);
    if (r->max_pos > 0 && n > (size_t)r->max_pos)
        return ali_errf(AL_ERANGE, "%s: %zu tokens > the model's max_position_embeddings %d", field, n,
                        r->max_pos);
    for (size_t i = 0; i < n; i++)
        if (t[i] < 0 || (r->vocab > 0 && t[i] >= r->vocab))
            return ali_errf(AL_ERANGE, "%s[%zu]: token id %d is outside the vocabulary [0, %d)", field, i, t[i],
                            r->vocab);
    return AL_OK;
}

al_err router_check_sampling(const alora_Sampling *s, const char *p)
{
    if (!isfinite(s->temperature) || s->temperature < 0 || s->temperature > 100)
        return ali_errf(AL_ERANGE, "%s.temperature: %g is outside [0, 100]", p, s->temperature);
    if (!isfinite(s->top_p) || s->top_p < 0 || s->top_p > 1)
        return ali_errf(AL_ERANGE, "%s.top_p: %g is outside [0, 1]", p, s->top_p);
    if (!isfinite(s->min_p) || s->min_p < 0 || s->min_p > 1)
        return ali_errf(AL_ERANGE, "%s.min_p: %g is outside [0, 1]", p, s->min_p);
    if (!isfinite(s->repetition_penalty) || s->repetition_penalty < 0 || s->repetition_penalty > 100)
        return ali_errf(AL_ERANGE, "%s.repetition_penalty: %g is outside [0, 100]", p, s->repetition_penalty);
    if (s->max_tokens > ROUTER_MAX_GEN_TOKENS)
        return ali_errf(AL_ERANGE, "%s.max_tokens: %u > max %d", p, s->max_tokens, ROUTER_MAX_GEN_TOKENS);
    if (s->top_logprobs > 20)
        return ali_errf(AL_ERANGE, "%s.top_logprobs: %u > max 20", p, s->top_logprobs);
    if (s->top_k > (1u << 24))
        return ali_errf(AL_ERANGE, "%s.top_k: %u is too large", p, s->top_k);
    for (pb_size_t i = 0; i < s->stop_token_ids_count; i++)
        if (s->stop_token_ids[i] < 0)
            return ali_errf(AL_ERANGE, "%s.stop_token_ids[%u]: %d < 0", p, (unsigned)i, s->stop_token_ids[i]);
    return AL_OK;
}

static bool router_retryable(al_err e)
{
    return e == AL_EUNAVAILABLE || e == AL_ECLOSED || e == AL_EIO || e == AL_EOVERLOADED || e == AL_ECAPACITY;
}

/* WORKER_INVOKE on the least-loaded worker, once more on another replica when that one fails. */
static al_err router_call_worker(router *r, const router_base *b, const char *intrinsic,
                                 const alora_WorkerInvokeRequest *wq, alora_WorkerInvokeReply *wr, al_pbmem *wm,
                                 char *worker_id, size_t cap, char *wbase, size_t wbase_cap)
{
    router_worker *w = NULL, *prev = NULL;
    al_err e = AL_OK;
    char first[600] = "";
    for (int attempt = 0; attempt < 2; attempt++) {
        al_err pe = router_worker_pick(r, b, intrinsic, wq->mode == alora_InvokeMode_MODE_LORA, prev, &w);
        if (prev) {
            router_worker_put(r, prev, false);
            prev = NULL;
        }
        if (pe != AL_OK) {
            if (attempt == 0)
                return pe;
            return ali_errf(e, "%s; retry: %s", first, al_errmsg());
        }
        al_pbmem_free(wm); /* the reply of a failed attempt (the request lives in another pbmem) */
        snprintf(wbase, wbase_cap, "%s", w->base_id);
        e = al_rpc_call(w->cli, alora_Method_WORKER_INVOKE, wq, wr, wm, router_timeout(r));
        if (e == AL_OK) {
            snprintf(worker_id, cap, "%s", wr->worker_id[0] ? wr->worker_id : w->id);
            router_worker_put(r, w, true);
            return AL_OK;
        }
        snprintf(first, sizeof first, "worker %s: %s", w->id, al_errmsg());
        AL_WARN("router: invoke %s on %s failed (%s: %s)%s", intrinsic, w->id, al_strerror(e), al_errmsg(),
                attempt == 0 && router_retryable(e) ? ", retrying on another replica" : "");
        if (attempt > 0 || !router_retryable(e)) {
            router_worker_put(r, w, false);
            return ali_errf(e, "%s", first);
        }
        prev = w;
    }
    return ali_errf(AL_EINTERNAL, "unreachable");
}

void router_unlease_now(router_base *b, uint64_t lease_id)
{
    alora_UnleaseRequest uq = {.lease_id = lease_id};
    alora_Empty ur;
    al_pbmem um = AL_PBMEM_INIT;
    if (al_rpc_call(b->cli, alora_Method_BASE_UNLEASE, &uq, &ur, &um, 5000) != AL_OK)
        AL_WARN("router: unlease %llu: %s (the lease expires by TTL)", (unsigned long long)lease_id, al_errmsg());
    al_pbmem_free(&um);
}

typedef struct router_unlease_arg {
    router_base *b;
    uint64_t lease_id;
} router_unlease_arg;

static void router_unlease_task(router_task *t)
{
    router_unlease_arg *u = (router_unlease_arg *)t->req;
    router_unlease_now(u->b, u->lease_id);
    free(u);
}

/* The unlease is off the caller's critical path: the answer goes back while the control pool tells
 * the base (leases pin blocks by reference, so the sequence is free to change meanwhile; the
 * pool drains its queue before the bases close). Synchronous when the pool is stopping. */
void router_unlease_later(router *r, router_base *b, uint64_t lease_id)
{
    router_unlease_arg *u = malloc(sizeof *u);
    if (u) {
        *u = (router_unlease_arg){.b = b, .lease_id = lease_id};
        if (router_pool_post(&r->ctl, r, router_unlease_task, u))
            return;
        free(u);
    }
    router_unlease_now(b, lease_id);
}

al_err router_invoke_reply(router *r, const router_reply_in *in, alora_InvokeReply *rep, al_pbmem *m)
{
    const alora_WorkerInvokeReply *wr = in->wr;
    const alora_LeaseReply *lr = in->lr;
    const int32_t *ot;
    const float *lp, *tl;
    const int32_t *ti;
    size_t nt = al_pb_i32(&wr->tokens, &ot);
    size_t nlp = al_pb_f32(&wr->logprobs.logprob, &lp);
    size_t nti = al_pb_i32(&wr->logprobs.top_ids, &ti);
    size_t ntl = al_pb_f32(&wr->logprobs.top_logprobs, &tl);
    AL_TRY(al_pb_set_i32(&rep->tokens, m, ot, nt));
    AL_TRY(al_pb_set_f32(&rep->logprobs.logprob, m, lp, nlp));
    AL_TRY(al_pb_set_i32(&rep->logprobs.top_ids, m, ti, nti));
    AL_TRY(al_pb_set_f32(&rep->logprobs.top_logprobs, m, tl, ntl));
    rep->logprobs.top_n = wr->logprobs.top_n;
    if (r->tok && nt) {
        char *txt = NULL;
        size_t tl_len = 0;
        al_err e = AL_OK;
        if (al_tokenizer_decode(r->tok, ot, (int32_t)nt, 1, &txt, &tl_len) == AL_OK)
            e = al_pb_set_bytes(&rep->text, m, txt, tl_len);
        free(txt);
        AL_TRY(e);
    }
    rep->has_activation_start = in->s >= 0;
    rep->activation_start = in->s;
    rep->finish_reason = wr->finish_reason;
    rep->prefix_cached_tokens = lr ? lr->n_cached : 0;
    rep->lease_kept = in->kept;
    rep->computed_tokens = wr->computed_tokens;
    ROUTER_STRCPY(rep->worker_id, in->worker_id);
    double now = al_now();
    rep->timings = (alora_Timings){
        .queue_ms = (in->t_start - in->t_accept) * 1e3,
        .prefill_ms = (lr ? lr->timings.prefill_ms : 0) + wr->timings.prefill_ms,
        .decode_ms = wr->timings.decode_ms,
        .ttft_ms = (in->t_worker - in->t_accept) * 1e3 + wr->timings.ttft_ms,
        .total_ms = (now - in->t_accept) * 1e3,
        .prefill_tokens = (lr ? lr->timings.prefill_tokens : 0) + wr->timings.prefill_tokens,
        .decode_tokens = wr->timings.decode_tokens,
        .batch_size = wr->timings.batch_size,
    };
    const al_alora_metrics *am = al_metrics_alora();
    if (am) {
        const char *lab[1] = {in->intrinsic};
        al_metric_observe(am->intrinsic_latency, lab, now - in->t_accept);
        al_metric_observe(am->ttft, NULL, rep->timings.ttft_ms / 1e3);
        al_metric_add(am->prefix_hit_tokens, NULL, rep->prefix_cached_tokens);
    }
    return AL_OK;
}

static al_err router_invoke_run1(router *r, const router_invoke_args *a, alora_InvokeReply *rep, al_pbmem *m);

al_err router_invoke_run(router *r, const router_invoke_args *a, alora_InvokeReply *rep, al_pbmem *m)
{
    if (a->base && a->routed) { /* a session's base wins: the routing is undone */
        router_base_done(r, a->routed);
        router_invoke_args b = *a;
        b.routed = NULL;
        return router_invoke_run1(r, &b, rep, m);
    }
    return router_invoke_run1(r, a, rep, m);
}

static al_err router_invoke_run1(router *r, const router_invoke_args *a, alora_InvokeReply *rep, al_pbmem *m)
{
    double t_start = al_now();
    int32_t inv[ROUTER_MAX_INV];
    int n_inv = 0;
    al_err ie = router_intr_invocation(r, a->intrinsic, inv, &n_inv);
    if (ie != AL_OK) {
        router_base_done(r, a->routed);
        return ie;
    }

    /* The full token sequence the adapter sees, and the activation start s. */
    int32_t *full = NULL;
    int32_t N, s;
    const int32_t *seq = a->toks;
    if (a->seq_id) { /* session: history + invocation */
        N = a->n + n_inv;
        full = malloc(sizeof(int32_t) * (size_t)(N > 0 ? N : 1));
        if (!full) {
            router_base_done(r, a->routed);
            return ali_errf(AL_ENOMEM, "router: out of memory");
        }
        memcpy(full, a->toks, sizeof(int32_t) * (size_t)a->n);
        memcpy(full + a->n, inv, sizeof(int32_t) * (size_t)n_inv);
        seq = full;
        s = n_inv > 0 ? a->n : 0;
    } else {
        N = a->n;
        s = n_inv > 0 ? al_alora_find_start(a->toks, a->n, inv, n_inv) : 0;
    }
    if (N <= 0) {
        free(full);
        router_base_done(r, a->routed);
        return ali_errf(AL_EINVAL, "tokens: empty");
    }

    al_err e = AL_OK;
    alora_WorkerInvokeRequest wq = alora_WorkerInvokeRequest_init_zero;
    alora_WorkerInvokeReply wr;
    al_pbmem qm = AL_PBMEM_INIT, wm = AL_PBMEM_INIT, lm = AL_PBMEM_INIT; /* worker request, reply, lease */
    alora_LeaseReply lr = alora_LeaseReply_init_zero;
    bool leased = false, have_lease = false, kept = false; /* leased: ours to unlease; have_lease: lr is
                                                            * valid; kept: it came from the lease cache */
    router_lcache_ent *lce = NULL;           /* a kept lease in use (router_lease_cache.c) */
    char worker_id[64] = "";
    wq.sampling = a->sampling;
    wq.mode = a->mode;
    wq.deadline_ms = (uint32_t)router_timeout(r);
    double t_lease = al_now(), t_worker;
    /* The base: the session's, or the conversation's by prefix affinity (its tokens before the
     * activation start, so every intrinsic called on a conversation meets the same cached KV). */
    router_base *b = a->base, *routed = a->routed;
    int32_t pkey = s >= 0 && s < N ? s : N;
    if (!b)
        b = routed;
    if (!b && !(b = routed = router_base_route(r, seq, pkey, NULL))) {
        e = AL_EUNAVAILABLE;
        goto out;
    }

    int32_t p = 0; /* leased prefix */
    if (a->mode == alora_InvokeMode_MODE_LORA) {
        /* Plain-LoRA baseline: the whole sequence through the adapter, no base KV. */
        if ((e = al_pb_ref_i32(&wq.full_tokens, &qm, seq, (size_t)N)) != AL_OK)
            goto out;
        wq.has_activation_start = true;
        wq.activation_start = 0;
        s = 0;
    } else {
        p = s >= 0 ? s : N;
        if (p >= N) /* the worker needs one token to produce logits */
            p = N - 1;
        wq.start_pos = (uint32_t)p;
        if ((e = al_pb_ref_i32(&wq.tokens, &qm, seq + p, (size_t)(N - p))) != AL_OK)
            goto out;
        wq.has_activation_start = s >= 0;
        wq.activation_start = s >= 0 ? (uint32_t)s : 0;
    }
    char wbase[64] = "";
    for (int attempt = 0;; attempt++) {
        bool lc_hit = false;
        if (p > 0 && attempt == 0 && !a->seq_id && router_lcache_get(r, b, seq, p, &lr, &lce)) {
            /* a lease kept from an earlier call on this prefix: no base round trip */
            have_lease = lc_hit = kept = true;
            lr.n_cached = lr.n_tokens;
            lr.timings = (alora_Timings){0};
        } else if (p > 0) {
            alora_LeaseRequest lq = alora_LeaseRequest_init_zero;
            /* The lease must outlive the worker call it serves (a long structured output can take
             * more than the base's default TTL): the request timeout, twice for one retry on another
             * replica, plus a margin (plus router.lease_hold_ms when the router keeps it). We unlease
             * when done; a router that dies loses its leases with its connection. */
            int64_t ttl = 2 * (int64_t)router_timeout(r) + 5000 + (r->lc && !a->seq_id ? r->cfg.router.lease_hold_ms : 0);
            lq.ttl_ms = (uint32_t)AL_MIN(AL_MAX(ttl, (int64_t)r->cfg.base.lease_ttl_ms), (int64_t)UINT32_MAX);
            if (a->seq_id) {
                lq.seq_id = a->seq_id;
                lq.n_tokens = (uint32_t)p;
            } else if ((e = al_pb_ref_i32(&lq.tokens, &lm, seq, (size_t)p)) != AL_OK) {
                goto out;
            }
            t_lease = al_now();
            e = al_rpc_call(b->cli, alora_Method_BASE_LEASE, &lq, &lr, &lm, router_timeout(r));
            if (e == AL_ECAPACITY && r->lc) { /* its lease rows are short: give back the kept ones */
                router_lcache_drop_base(r, b);
                e = al_rpc_call(b->cli, alora_Method_BASE_LEASE, &lq, &lr, &lm, router_timeout(r));
            }
            if (e != AL_OK && !a->base && router_retryable(e) && e != AL_EOVERLOADED && r->n_bases > 1) {
                /* that base is gone: the conversation moves to the next base in its order */
                router_base *nb = router_base_route(r, seq, pkey, b);
                if (nb) {
                    AL_WARN("router: base %d: lease failed (%s: %s); moving the conversation to base %d", b->index,
                            al_strerror(e), al_errmsg(), nb->index);
                    router_base_done(r, routed);
                    b = routed = nb;
                    e = al_rpc_call(b->cli, alora_Method_BASE_LEASE, &lq, &lr, &lm, router_timeout(r));
                }
            }
            if (e != AL_OK) {
                e = ali_errctx(e, r->n_bases > 1 ? "base %d lease" : "base lease", b->index);
                goto out;
            }
            leased = have_lease = true;
            if (lr.n_tokens != (uint32_t)p) {
                e = ali_errf(AL_EINTERNAL, "base lease: %u tokens granted, %d asked", lr.n_tokens, p);
                goto out;
            }
            /* kept from now (the grant, after any prefill); the cache holds it then */
            if (!a->seq_id && router_lcache_add(r, b, seq, p, &lr, al_now(), &lce))
                leased = false;
        }
        if (have_lease) {
            wq.has_lease = true;
            wq.lease = (alora_LeaseRef){.lease_id = lr.lease_id, .n_tokens = lr.n_tokens,
                                        .table_offset = lr.table_offset, .generation = lr.generation};
        }
        t_worker = al_now();
        al_stage("R3b router lease ready");
        wbase[0] = 0;
        e = router_call_worker(r, b, a->intrinsic, &wq, &wr, &wm, worker_id, sizeof worker_id, wbase, sizeof wbase);
        if (e == AL_OK && lc_hit && strcmp(wbase, router_lcache_inst(lce)) != 0)
            /* the base restarted between the lookup and the pick: a kept lease names rows of the
             * old instance's table, which the worker must not have read from the new one */
            e = ali_errf(AL_EUNAVAILABLE, "kept lease of base instance %s, worker attached to %s",
                         router_lcache_inst(lce), wbase);
        if (e != AL_OK && lc_hit) {
            /* a kept lease the worker could not use (released by TTL, its base restarted, ...):
             * forget it and lease afresh once */
            AL_DEBUG("router: kept lease %llu failed (%s: %s); leasing again", (unsigned long long)lr.lease_id,
                     al_strerror(e), al_errmsg());
            router_lcache_put(r, lce, true);
            lce = NULL;
            have_lease = kept = false;
            continue;
        }
        break;
    }
    if (e != AL_OK && e != AL_EUNAVAILABLE && wbase[0]) {
        /* A worker still attached to a base that just restarted rejects the new base's lease: check
         * the base now and answer `unavailable` (retry later) instead of a confusing lease error. */
        char msg[600];
        snprintf(msg, sizeof msg, "%s", al_errmsg());
        router_base_poll(r);
        pthread_mutex_lock(&r->mu);
        bool moved = b->id[0] && strcmp(b->id, wbase) != 0;
        pthread_mutex_unlock(&r->mu);
        e = moved ? ali_errf(AL_EUNAVAILABLE, "base restarted (instance changed); workers of %s are re-attaching: %s",
                             a->intrinsic, msg)
                  : ali_errf(e, "%s", msg);
    }
    if (e != AL_OK)
        goto out;

    /* The reply. */
    double t_reply = al_now();
    router_reply_in ri = {.intrinsic = a->intrinsic, .s = s, .lr = have_lease ? &lr : NULL, .kept = kept,
                          .wr = &wr, .worker_id = worker_id, .t_accept = a->t_accept, .t_start = t_start,
                          .t_worker = t_worker};
    if ((e = router_invoke_reply(r, &ri, rep, m)) != AL_OK)
        goto out;
    AL_DEBUG("router: invoke %s n=%d s=%d mode=%d: before lease %.3f ms, lease %.3f ms, worker %.3f ms (its queue "
             "%.3f, prefill %.3f, decode %.3f, total %.3f), reply %.3f ms on %s", a->intrinsic, N, s, a->mode,
             (t_lease - t_start) * 1e3, (t_worker - t_lease) * 1e3, (t_reply - t_worker) * 1e3, wr.timings.queue_ms,
             wr.timings.prefill_ms, wr.timings.decode_ms, wr.timings.total_ms, (al_now() - t_reply) * 1e3, worker_id);
out:;
    char msg[600];
    snprintf(msg, sizeof msg, "%s", al_errmsg());
    if (leased)
        router_unlease_later(r, b, lr.lease_id);
    router_lcache_put(r, lce, e != AL_OK);
    router_base_done(r, routed);
    al_pbmem_free(&qm);
    al_pbmem_free(&wm);
    al_pbmem_free(&lm);
    free(full);
    if (e != AL_OK)
        return ali_errf(e, "%s", msg);
    return AL_OK;
}

/* ---- ROUTER_INVOKE ---------------------------------------------------------------------------- */

/* Effective sampling: max_tokens/top_logprobs overrides, else the intrinsic's defaults. */
void router_sampling_defaults(const al_intrinsic_cfg *ic, alora_Sampling *s, uint32_t max_tokens,
                              uint32_t top_logprobs)
{
    if (max_tokens)
        s->max_tokens = max_tokens;
    if (!s->max_tokens)
        s->max_tokens = (uint32_t)(ic->max_tokens > 0 ? ic->max_tokens : 8);
    if (top_logprobs)
        s->top_logprobs = top_logprobs;
    if (!s->top_logprobs && ic->top_logprobs > 0)
        s->top_logprobs = (uint32_t)ic->top_logprobs;
}

/* Queue admission: at most (capacity of live workers + max_queue) accepted invocations. */
al_err router_admit(router *r, int idx, al_rpc_job *job)
{
    const al_intrinsic_cfg *ic = r->intr[idx].cfg;
    int maxq = ic->max_queue > 0 ? ic->max_queue : r->cfg.router.max_queue > 0 ? r->cfg.router.max_queue : 64;
    int n;
    uint32_t cap, act;
    pthread_mutex_lock(&r->mu);
    router_intr_workers(r, idx, &n, &cap, &act);
    r->intr[idx].requests++;
    r->n_requests++;
    if (r->intr[idx].pending >= (int)cap + maxq) {
        r->intr[idx].rejected++;
        int pend = r->intr[idx].pending;
        pthread_mutex_unlock(&r->mu);
        if (job)
            al_rpc_job_set_retry_after(job, 200);
        return ali_errf(AL_EOVERLOADED, "intrinsic %s: %d requests waiting (capacity %u + max_queue %d)", ic->name,
                        pend, cap, maxq);
    }
    r->intr[idx].pending++;
    pthread_mutex_unlock(&r->mu);
    return AL_OK;
}

void router_release(router *r, int idx)
{
    pthread_mutex_lock(&r->mu);
    r->intr[idx].pending--;
    pthread_mutex_unlock(&r->mu);
}

void router_task_invoke(router_task *t)
{
    al_stage("R3 router pool picked");
    router *r = t->r;
    const alora_InvokeRequest *q = t->req;
    al_pbmem *m = al_rpc_job_mem(t->job);
    const int32_t *toks;
    size_t n = al_pb_i32(&q->tokens, &toks);
    int32_t *enc = NULL;
    al_err e = AL_OK;
    if (!n) { /* text */
        const uint8_t *txt;
        size_t tl = al_pb_bytes(&q->text, &txt);
        int32_t ne = 0;
        if ((e = al_tokenizer_encode(r->tok, (const char *)txt, tl, 1, &enc, &ne)) != AL_OK) {
            e = ali_errctx(e, "text");
            goto done;
        }
        if ((e = router_check_tokens(r, "text", enc, (size_t)ne)) != AL_OK)
            goto done;
        toks = enc;
        n = (size_t)ne;
    }
    router_invoke_args a = {.intrinsic = q->intrinsic, .toks = toks, .n = (int32_t)n, .mode = q->mode,
                            .sampling = q->sampling, .t_accept = t->t_accept, .routed = t->routed};
    t->routed = NULL; /* router_invoke_run owns it now */
    router_sampling_defaults(r->intr[t->intr].cfg, &a.sampling, q->max_tokens, q->top_logprobs);
    if (r->max_pos > 0 && (int64_t)n + a.sampling.max_tokens > r->max_pos) {
        e = ali_errf(AL_ERANGE, "tokens: %zu tokens + max_tokens %u > the model's max_position_embeddings %d", n,
                     a.sampling.max_tokens, r->max_pos);
        goto done;
    }
    e = router_invoke_run(r, &a, t->rep, m);
done:
    router_base_done(r, t->routed); /* not handed to router_invoke_run */
    free(enc);
    router_release(r, t->intr);
    al_stage("R7b router complete");
    al_rpc_complete(t->job, e);
    al_stage("R9 router complete returned");
}

static al_err router_on_invoke(al_rpc_job *job, const void *req, void *rep, void *user)
{
    router *r = user;
    const alora_InvokeRequest *q = req;
    if (!q->intrinsic[0])
        return ali_errf(AL_EINVAL, "intrinsic: empty");
    int idx = router_intr_index(r, q->intrinsic);
    if (idx < 0)
        return ali_errf(AL_ENOTFOUND, "intrinsic: unknown '%s'", q->intrinsic);
    if (q->mode != alora_InvokeMode_MODE_ALORA && q->mode != alora_InvokeMode_MODE_LORA)
        return ali_errf(AL_EINVAL, "mode: %d is not MODE_ALORA or MODE_LORA", (int)q->mode);
    const int32_t *toks;
    const uint8_t *txt;
    size_t n = al_pb_i32(&q->tokens, &toks), tl = al_pb_bytes(&q->text, &txt);
    if (n && tl)
        return ali_errf(AL_EINVAL, "tokens, text: give one, not both");
    if (!n && !tl)
        return ali_errf(AL_EINVAL, "tokens: empty (and no text)");
    if (tl && !r->tok)
        return ali_errf(AL_EUNSUPPORTED, "text: the router has no tokenizer; send tokens");
    if (tl > (4u << 20))
        return ali_errf(AL_ERANGE, "text: %zu bytes > max 4 MiB", tl);
    AL_TRY(router_check_tokens(r, "tokens", toks, n));
    if (q->max_tokens > ROUTER_MAX_GEN_TOKENS)
        return ali_errf(AL_ERANGE, "max_tokens: %u > max %d", q->max_tokens, ROUTER_MAX_GEN_TOKENS);
    if (q->top_logprobs > 20)
        return ali_errf(AL_ERANGE, "top_logprobs: %u > max 20", q->top_logprobs);
    AL_TRY(router_check_sampling(&q->sampling, "sampling"));
    AL_TRY(router_admit(r, idx, job));
    al_stage("R2 router submit");
    router_base *routed;
    if (router_invoke_fast(r, job, q, rep, idx, &routed))
        return AL_OK;
    router_pool_submit_ex(&r->pool, r, job, req, rep, router_task_invoke, idx, routed, 0);
    return AL_OK;
}

al_err router_invoke_register_handlers(router *r)
{
    return al_rpc_server_handle(r->srv, alora_Method_ROUTER_INVOKE, router_on_invoke, r);
}
