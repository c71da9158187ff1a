/* router_registry.c: the worker registry: register/heartbeat/deregister, TTL expiry, picking. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "services/router/router.h"

static bool router_name_ok(const char *s)
{
    if (!s[0])
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '_' || *s == '.'))
            return false;
    return true;
}

int router_intr_index(const router *r, const char *name)
{
    for (int i = 0; i < r->cfg.n_intrinsics; i++)
        if (!strcmp(r->cfg.intrinsics[i].name, name))
            return i;
    return -1;
}

static router_worker *router_find_locked(router *r, const char *id)
{
    for (router_worker *w = r->workers; w; w = w->next)
        if (!w->removed && !strcmp(w->id, id))
            return w;
    return NULL;
}

static void router_remove_locked(router *r, router_worker *w, const char *why)
{
    if (w->removed)
        return;
    w->removed = true;
    w->refs--; /* the registry's own reference */
    AL_INFO("router: worker %s (%s, pid %u) removed: %s", w->id, w->intrinsic, w->pid, why);
}

/* A worker is eligible when it is live, healthy and attached to base b (any live base: b NULL). */
static bool router_live_locked(const router *r, const router_base *b, const router_worker *w)
{
    if (w->removed || w->health == alora_Health_HEALTH_DOWN || w->health == alora_Health_HEALTH_DRAINING)
        return false;
    if (b)
        return b->id[0] && !strcmp(w->base_id, b->id);
    for (int i = 0; i < r->n_bases; i++)
        if (router_base_live_locked(&r->bases[i]) && !strcmp(w->base_id, r->bases[i].id))
            return true;
    return false;
}

void router_intr_workers(router *r, int idx, int *n, uint32_t *capacity, uint32_t *active)
{
    *n = 0;
    *capacity = 0;
    *active = 0;
    const char *name = r->cfg.intrinsics[idx].name;
    for (router_worker *w = r->workers; w; w = w->next)
        if (router_live_locked(r, NULL, w) && !strcmp(w->intrinsic, name)) {
            (*n)++;
            *capacity += w->capacity;
            *active += (uint32_t)w->inflight;
        }
}

al_err router_worker_pick(router *r, const router_base *b, const char *intrinsic, bool need_lora,
                          const router_worker *exclude, router_worker **out)
{
    *out = NULL;
    router_worker *best = NULL;
    double best_score = 0;
    int seen = 0;
    pthread_mutex_lock(&r->mu);
    for (router_worker *w = r->workers; w; w = w->next) {
        if (strcmp(w->intrinsic, intrinsic) || !router_live_locked(r, b, w))
            continue;
        seen++;
        if (w == exclude || (need_lora && !w->supports_lora))
            continue;
        /* load = router-side in-flight calls per unit of capacity; a worker whose connection is
         * down (crashed, not yet expired) goes last. */
        double score = (double)w->inflight / (double)(w->capacity ? w->capacity : 1);
        if (!al_rpc_client_connected(w->cli))
            score += 1e6;
        if (w->health != alora_Health_HEALTH_OK)
            score += 1e3;
        score += (double)w->requests * 1e-9; /* ties: round robin */
        if (!best || score < best_score) {
            best = w;
            best_score = score;
        }
    }
    if (best) {
        best->refs++;
        best->inflight++;
        best->requests++;
    }
    pthread_mutex_unlock(&r->mu);
    if (!best) {
        if (exclude && seen)
            return ali_errf(AL_EUNAVAILABLE, "intrinsic %s: no other worker to retry on", intrinsic);
        if (need_lora && seen)
            return ali_errf(AL_EUNAVAILABLE, "intrinsic %s: no worker supports mode=lora", intrinsic);
        if (r->n_bases > 1)
            return ali_errf(AL_EUNAVAILABLE, "intrinsic %s: no worker available on base %d%s", intrinsic, b->index,
                            b->id[0] ? "" : " (base not reachable)");
        return ali_errf(AL_EUNAVAILABLE, "intrinsic %s: no worker available%s", intrinsic,
                        b->id[0] ? "" : " (base not reachable)");
    }
    *out = best;
    return AL_OK;
}

void router_worker_put(router *r, router_worker *w, bool ok)
{
    pthread_mutex_lock(&r->mu);
    w->inflight--;
    w->refs--;
    if (!ok)
        w->failures++;
    pthread_mutex_unlock(&r->mu);
}

al_err router_intr_invocation(router *r, const char *intrinsic, int32_t *inv, int *n_inv)
{
    al_err e = ali_errf(AL_EUNAVAILABLE, "intrinsic %s: no worker registered", intrinsic);
    pthread_mutex_lock(&r->mu);
    for (router_worker *w = r->workers; w; w = w->next)
        if (!w->removed && !strcmp(w->intrinsic, intrinsic)) {
            memcpy(inv, w->inv, sizeof(int32_t) * (size_t)w->n_inv);
            *n_inv = w->n_inv;
            e = AL_OK;
            if (router_live_locked(r, NULL, w))
                break;
        }
    pthread_mutex_unlock(&r->mu);
    return e;
}

void router_registry_sweep(router *r, bool all)
{
    router_worker *dead = NULL;
    double now = al_now();
    int ttl = r->cfg.router.worker_ttl_ms > 0 ? r->cfg.router.worker_ttl_ms : 5000;
    pthread_mutex_lock(&r->mu);
    for (router_worker **pp = &r->workers; *pp;) {
        router_worker *w = *pp;
        if (all)
            router_remove_locked(r, w, "router stopping");
        else if (!w->removed && (now - w->last_seen) * 1e3 > ttl)
            router_remove_locked(r, w, "heartbeat TTL expired");
        if (w->removed && w->refs <= 0) {
            *pp = w->next;
            w->next = dead;
            dead = w;
        } else {
            pp = &w->next;
        }
    }
    pthread_mutex_unlock(&r->mu);
    while (dead) { /* close outside the lock (it waits for the client's threads) */
        router_worker *w = dead;
        dead = w->next;
        al_rpc_client_close(w->cli);
        free(w);
    }
}

/* ---- handlers ---------------------------------------------------------------------------------- */

static void router_task_register(router_task *t)
{
    router *r = t->r;
    const alora_RegisterRequest *q = t->req;
    alora_RegisterReply *rep = t->rep;
    router_worker *w = calloc(1, sizeof *w);
    if (!w) {
        al_rpc_complete(t->job, ali_errf(AL_ENOMEM, "router: out of memory"));
        return;
    }
    al_rpc_client_opts co;
    al_rpc_client_opts_default(&co);
    co.connect_wait_ms = 500;
    co.reconnect_max_ms = 500;
    al_err e = al_rpc_client_open(&w->cli, q->url, &co);
    if (e != AL_OK) {
        free(w);
        al_rpc_complete(t->job, ali_errctx(e, "url: cannot dial %s", q->url));
        return;
    }
    ROUTER_STRCPY(w->intrinsic, q->intrinsic);
    ROUTER_STRCPY(w->base_id, q->base_instance_id);
    ROUTER_STRCPY(w->url, q->url);
    ROUTER_STRCPY(w->digest, q->adapter_digest);
    w->n_inv = q->invocation_tokens_count;
    memcpy(w->inv, q->invocation_tokens, sizeof(int32_t) * (size_t)w->n_inv);
    w->capacity = q->capacity ? q->capacity : 1;
    w->pid = q->pid;
    w->supports_lora = q->supports_lora;
    w->health = alora_Health_HEALTH_OK;
    w->last_seen = w->registered = al_now();
    w->refs = 1;

    pthread_mutex_lock(&r->mu);
    if (q->worker_id[0]) {
        ROUTER_STRCPY(w->id, q->worker_id);
    } else {
        int k = 0;
        do
            snprintf(w->id, sizeof w->id, "%.40s-%d", q->intrinsic, k++);
        while (router_find_locked(r, w->id));
    }
    router_worker *old = router_find_locked(r, w->id);
    if (old)
        router_remove_locked(r, old, "re-registered");
    for (router_worker *o = r->workers; o; o = o->next)
        if (!o->removed && !strcmp(o->intrinsic, w->intrinsic) && strcmp(o->digest, w->digest))
            AL_WARN("router: intrinsic %s: worker %s has adapter %s, worker %s has %s", w->intrinsic, w->id,
                    w->digest, o->id, o->digest);
    w->next = r->workers;
    r->workers = w;
    ROUTER_STRCPY(rep->worker_id, w->id);
    pthread_mutex_unlock(&r->mu);
    rep->heartbeat_ms = (uint32_t)(r->cfg.router.heartbeat_ms > 0 ? r->cfg.router.heartbeat_ms : 1000);
    rep->ttl_ms = (uint32_t)(r->cfg.router.worker_ttl_ms > 0 ? r->cfg.router.worker_ttl_ms : 5000);
    AL_INFO("router: worker %s registered (intrinsic %s, pid %u, base %s, capacity %u, %d invocation tokens, %s)",
            w->id, w->intrinsic, w->pid, w->base_id, w->capacity, w->n_inv, w->url);
    al_rpc_complete(t->job, AL_OK);
}

static al_err router_on_register(al_rpc_job *job, const void *req, void *rep, void *user)
{
    router *r = user;
    const alora_RegisterRequest *q = req;
    if (!router_name_ok(q->intrinsic))
        return ali_errf(AL_EINVAL, "intrinsic: '%s' is not a valid name", q->intrinsic);
    if (router_intr_index(r, q->intrinsic) < 0)
        return ali_errf(AL_ENOTFOUND, "intrinsic: '%s' is not in the router's config", q->intrinsic);
    if (q->worker_id[0] && !router_name_ok(q->worker_id))
        return ali_errf(AL_EINVAL, "worker_id: '%s' is not a valid id", q->worker_id);
    if (strncmp(q->url, "ipc://", 6) && strncmp(q->url, "tcp://", 6) && strncmp(q->url, "inproc://", 9))
        return ali_errf(AL_EINVAL, "url: '%s' is not an ipc://, tcp:// or inproc:// URL", q->url);
    if (!q->base_instance_id[0])
        return ali_errf(AL_EINVAL, "base_instance_id: empty");
    if (q->capacity > 4096)
        return ali_errf(AL_ERANGE, "capacity: %u > 4096", q->capacity);
    router_pool_submit(&r->ctl, r, job, req, rep, router_task_register, -1);
    return AL_OK;
}

static al_err router_on_heartbeat(al_rpc_job *job, const void *req, void *rep_, void *user)
{
    router *r = user;
    const alora_HeartbeatRequest *q = req;
    alora_HeartbeatReply *rep = rep_;
    pthread_mutex_lock(&r->mu);
    router_worker *w = router_find_locked(r, q->worker_id);
    if (!w) {
        rep->reregister = true;
    } else {
        w->last_seen = al_now();
        w->health = q->health == alora_Health_HEALTH_UNKNOWN ? alora_Health_HEALTH_OK : q->health;
        w->hb_active = q->active;
        w->hb_queued = q->queued;
        w->leases_held = q->leases_held;
        w->invocations = q->invocations;
    }
    pthread_mutex_unlock(&r->mu);
    return AL_OK;
}

static al_err router_on_deregister(al_rpc_job *job, const void *req, void *rep, void *user)
{
    router *r = user;
    const alora_DeregisterRequest *q = req;
    pthread_mutex_lock(&r->mu);
    router_worker *w = router_find_locked(r, q->worker_id);
    if (w)
        router_remove_locked(r, w, q->reason[0] ? q->reason : "deregistered");
    pthread_mutex_unlock(&r->mu);
    if (!w)
        return ali_errf(AL_ENOTFOUND, "worker_id: '%s' is not registered", q->worker_id);
    return AL_OK;
}

al_err router_registry_register_handlers(router *r)
{
    AL_TRY(al_rpc_server_handle(r->srv, alora_Method_ROUTER_REGISTER, router_on_register, r));
    AL_TRY(al_rpc_server_handle(r->srv, alora_Method_ROUTER_HEARTBEAT, router_on_heartbeat, r));
    AL_TRY(al_rpc_server_handle(r->srv, alora_Method_ROUTER_DEREGISTER, router_on_deregister, r));
    return AL_OK;
}
