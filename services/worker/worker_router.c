/* worker_router.c: background threads: router registration + heartbeats, base health watch. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "services/worker/worker.h"

static int worker_bg_sleep(worker_ctx *w, int ms)
{
    while (ms > 0 && !__atomic_load_n(&w->bg_stop, __ATOMIC_ACQUIRE)) {
        int step = ms < 50 ? ms : 50;
        struct timespec ts = {0, step * 1000000L};
        nanosleep(&ts, NULL);
        ms -= step;
    }
    return __atomic_load_n(&w->bg_stop, __ATOMIC_ACQUIRE);
}

static al_err worker_register(worker_ctx *w, al_rpc_client *c, int *hb_ms)
{
    alora_RegisterRequest rq = {.capacity = (uint32_t)w->intr->capacity, .pid = (uint32_t)getpid(),
                                .supports_lora = true};
    snprintf(rq.worker_id, sizeof rq.worker_id, "%s", w->worker_id);
    snprintf(rq.intrinsic, sizeof rq.intrinsic, "%s", w->intr->name);
    snprintf(rq.adapter_digest, sizeof rq.adapter_digest, "%s", w->digest);
    snprintf(rq.base_instance_id, sizeof rq.base_instance_id, "%s", w->base_instance_id);
    snprintf(rq.url, sizeof rq.url, "%.*s", (int)sizeof rq.url - 1, w->url);
    rq.invocation_tokens_count = (pb_size_t)w->adapter->n_invocation;
    for (int i = 0; i < w->adapter->n_invocation; i++)
        rq.invocation_tokens[i] = w->adapter->invocation[i];
    alora_RegisterReply rp;
    al_pbmem m = AL_PBMEM_INIT;
    al_err e = al_rpc_call(c, alora_Method_ROUTER_REGISTER, &rq, &rp, &m, 2000);
    al_pbmem_free(&m);
    if (e != AL_OK)
        return e;
    if (rp.worker_id[0] && strcmp(rp.worker_id, w->worker_id) != 0) {
        AL_INFO("router assigned worker id %s", rp.worker_id);
        snprintf(w->worker_id, sizeof w->worker_id, "%s", rp.worker_id);
    }
    *hb_ms = rp.heartbeat_ms ? (int)rp.heartbeat_ms : w->cfg.worker.heartbeat_ms;
    return AL_OK;
}

static void *worker_reg_main(void *arg)
{
    worker_ctx *w = arg;
    al_rpc_client_opts o;
    al_rpc_client_opts_default(&o);
    o.connect_wait_ms = 250;
    al_rpc_client *c = NULL;
    if (al_rpc_client_open(&c, w->router_url, &o) != AL_OK) {
        AL_ERROR("router %s: %s", w->router_url, al_errmsg());
        return NULL;
    }
    bool registered = false;
    int hb_ms = w->cfg.worker.heartbeat_ms, fails = 0;
    while (!__atomic_load_n(&w->bg_stop, __ATOMIC_ACQUIRE)) {
        if (!registered) {
            al_err e = worker_register(w, c, &hb_ms);
            if (e == AL_OK) {
                registered = true;
                fails = 0;
                AL_INFO("registered with the router at %s", w->router_url);
            } else if (fails++ % 20 == 0) {
                AL_INFO("router %s: not registered yet (%s); retrying", w->router_url, al_errmsg());
            }
            if (worker_bg_sleep(w, registered ? hb_ms : 250))
                break;
            continue;
        }
        alora_HeartbeatRequest hq = {.health = alora_Health_HEALTH_OK,
                                     .active = __atomic_load_n(&w->n_active, __ATOMIC_RELAXED),
                                     .queued = __atomic_load_n(&w->n_queued, __ATOMIC_RELAXED),
                                     .invocations = __atomic_load_n(&w->invocations, __ATOMIC_RELAXED)};
        snprintf(hq.worker_id, sizeof hq.worker_id, "%s", w->worker_id);
        alora_HeartbeatReply hr;
        al_pbmem m = AL_PBMEM_INIT;
        al_err e = al_rpc_call(c, alora_Method_ROUTER_HEARTBEAT, &hq, &hr, &m, 2000);
        al_pbmem_free(&m);
        if (e == AL_OK && hr.reregister) {
            AL_INFO("router asks to re-register");
            registered = false;
            continue;
        }
        if (e == AL_ENOTFOUND) {
            registered = false;
            continue;
        }
        if (e != AL_OK && fails++ % 20 == 0)
            AL_WARN("heartbeat to %s failed: %s", w->router_url, al_errmsg());
        if (e == AL_OK)
            fails = 0;
        if (worker_bg_sleep(w, hb_ms))
            break;
    }
    if (registered) {
        alora_DeregisterRequest dq = {0};
        snprintf(dq.worker_id, sizeof dq.worker_id, "%s", w->worker_id);
        snprintf(dq.reason, sizeof dq.reason, "shutdown");
        alora_Empty er;
        al_pbmem m = AL_PBMEM_INIT;
        al_rpc_call(c, alora_Method_ROUTER_DEREGISTER, &dq, &er, &m, 300);
        al_pbmem_free(&m);
    }
    al_rpc_client_close(c);
    return NULL;
}

/* The base is gone when its connection stays down or health fails 3 times, or it restarted (new id). */
static void *worker_health_main(void *arg)
{
    worker_ctx *w = arg;
    int fails = 0;
    double down_since = 0, next_check = 0;
    const char *why = NULL;
    char detail[320] = "";
    while (!worker_bg_sleep(w, 50)) {
        double now = al_now();
        if (al_rpc_client_connected(w->base) == 0) {
            if (down_since == 0)
                down_since = now;
            if (now - down_since > 0.5) {
                why = "connection to the base lost";
                break;
            }
        } else {
            down_since = 0;
        }
        if (now < next_check)
            continue;
        next_check = now + w->cfg.worker.health_ms / 1e3;
        alora_Empty rq = {0};
        alora_HealthReply rp;
        al_pbmem m = AL_PBMEM_INIT;
        al_err e = al_rpc_call(w->base, alora_Method_BASE_HEALTH, &rq, &rp, &m, 1000);
        al_pbmem_free(&m);
        if (e == AL_OK && strcmp(rp.instance_id, w->base_instance_id) != 0) {
            snprintf(detail, sizeof detail, "base restarted (instance %s, attached to %s)", rp.instance_id,
                     w->base_instance_id);
            why = detail;
            break;
        }
        if (e != AL_OK && ++fails >= 3) {
            snprintf(detail, sizeof detail, "3 base health checks failed (%s)", al_errmsg());
            why = detail;
            break;
        }
        if (e == AL_OK)
            fails = 0;
    }
    if (why) {
        AL_ERROR("%s: exiting so the supervisor restarts this worker", why);
        kill(getpid(), SIGUSR1);
    }
    return NULL;
}

al_err worker_bg_start(worker_ctx *w)
{
    if (pthread_create(&w->health_thread, NULL, worker_health_main, w) != 0)
        return ali_errf(AL_EINTERNAL, "worker: cannot start the health thread");
    w->health_started = true;
    if (!w->no_router) {
        if (pthread_create(&w->reg_thread, NULL, worker_reg_main, w) != 0)
            return ali_errf(AL_EINTERNAL, "worker: cannot start the registration thread");
        w->reg_started = true;
    }
    return AL_OK;
}

void worker_bg_stop(worker_ctx *w)
{
    __atomic_store_n(&w->bg_stop, 1, __ATOMIC_RELEASE);
    if (w->health_started)
        pthread_join(w->health_thread, NULL);
    if (w->reg_started)
        pthread_join(w->reg_thread, NULL);
    w->health_started = w->reg_started = false;
}
