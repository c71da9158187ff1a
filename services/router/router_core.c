/* router_core.c: router lifecycle (config, sockets, pools, monitor thread) and ROUTER_HEALTH. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/model/model.h"
#include "common/util.h"
#include "services/router/router.h"

#define ROUTER_VERSION "0.1"

double router_ms_since(double t) { return (al_now() - t) * 1e3; }

/* Readiness: every base answers and every intrinsic has its configured replicas registered on
 * each. Some base down (others serving): degraded. */
alora_Health router_health_locked(router *r, char *detail, size_t cap)
{
    detail[0] = 0;
    int up = 0, seen = 0;
    for (int b = 0; b < r->n_bases; b++) {
        const router_base *rb = &r->bases[b];
        seen += rb->seen > 0;
        if (rb->seen && rb->health == alora_Health_HEALTH_OK)
            up++;
        else if (!detail[0])
            snprintf(detail, cap, "base %s not available", rb->url);
    }
    if (up == 0)
        return seen ? alora_Health_HEALTH_DEGRADED : alora_Health_HEALTH_STARTING;
    alora_Health h = up < r->n_bases ? alora_Health_HEALTH_DEGRADED : alora_Health_HEALTH_OK;
    for (int b = 0; b < r->n_bases; b++) {
        const router_base *rb = &r->bases[b];
        if (!rb->seen || rb->health != alora_Health_HEALTH_OK)
            continue;
        for (int i = 0; i < r->cfg.n_intrinsics; i++) {
            int n = 0;
            const char *name = r->cfg.intrinsics[i].name;
            for (router_worker *w = r->workers; w; w = w->next)
                if (!w->removed && !strcmp(w->intrinsic, name) && !strcmp(w->base_id, rb->id) &&
                    w->health == alora_Health_HEALTH_OK)
                    n++;
            if (n < r->cfg.intrinsics[i].replicas) {
                if (!detail[0]) {
                    if (r->n_bases > 1)
                        snprintf(detail, cap, "intrinsic %s: %d of %d workers on base %d", name, n,
                                 r->cfg.intrinsics[i].replicas, b);
                    else
                        snprintf(detail, cap, "intrinsic %s: %d of %d workers", name, n, r->cfg.intrinsics[i].replicas);
                }
                if (n == 0 || h == alora_Health_HEALTH_OK)
                    h = n == 0 && up == 1 ? alora_Health_HEALTH_STARTING : alora_Health_HEALTH_DEGRADED;
            }
        }
    }
    return h;
}

static al_err router_on_health(al_rpc_job *job, const void *req, void *rep_, void *user)
{
    router *r = user;
    alora_HealthReply *rep = rep_;
    rep->role = alora_Role_ROLE_ROUTER;
    rep->pid = (uint32_t)getpid();
    ROUTER_STRCPY(rep->instance_id, r->id);
    rep->uptime_ms = (uint64_t)router_ms_since(r->t0);
    ROUTER_STRCPY(rep->version, ROUTER_VERSION);
    pthread_mutex_lock(&r->mu);
    rep->health = router_health_locked(r, rep->detail, sizeof rep->detail);
    pthread_mutex_unlock(&r->mu);
    return AL_OK;
}

static void *router_monitor_main(void *arg)
{
    router *r = arg;
    double last_poll = 0;
    int period = r->cfg.worker.health_ms > 0 ? r->cfg.worker.health_ms : 1000;
    if (period > 500)
        period = 500; /* notice a restarted base quickly */
    pthread_mutex_lock(&r->mu);
    while (!r->stopping) {
        pthread_mutex_unlock(&r->mu);
        if (router_ms_since(last_poll) >= period) {
            router_base_poll(r);
            last_poll = al_now();
        }
        router_registry_sweep(r, false);
        router_sessions_expire(r);
        router_lcache_sweep(r, false);
        pthread_mutex_lock(&r->mu);
        if (r->stopping)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&r->cv, &r->mu, &ts);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* mkdir -p of the directory of an ipc:// path. */
static void router_ipc_dir(const char *url)
{
    if (strncmp(url, "ipc://", 6) != 0)
        return;
    char d[512];
    snprintf(d, sizeof d, "%s", url + 6);
    char *s = strrchr(d, '/');
    if (!s || s == d)
        return;
    *s = 0;
    for (char *p = d + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(d, 0700);
            *p = '/';
        }
    mkdir(d, 0700);
}

al_err router_start(router *r, const char *cfg_path)
{
    memset(r, 0, sizeof *r);
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    r->t0 = al_now();
    snprintf(r->id, sizeof r->id, "router-%d", (int)getpid());
    snprintf(r->cfg_path, sizeof r->cfg_path, "%s", cfg_path);
    al_err e = al_cluster_cfg_load(cfg_path, &r->cfg);
    if (e != AL_OK) {
        r->config_error = true;
        return e;
    }
    al_log_set_level((al_log_level)r->cfg.log_level);
    if ((e = al_cluster_tls_apply(&r->cfg, AL_ROLE_ROUTER)) != AL_OK) {
        r->config_error = true;
        return e;
    }

    al_model_config mc;
    if (al_config_load(r->cfg.base.model, &mc) == AL_OK) {
        r->vocab = mc.vocab_size;
        r->max_pos = mc.max_position_embeddings;
    } else {
        AL_WARN("router: cannot read the model config (%s); token ids are checked by the base", al_errmsg());
    }
    const char *tk = r->cfg.router.tokenizer ? r->cfg.router.tokenizer : r->cfg.base.model;
    if (al_tokenizer_load(tk, &r->tok) != AL_OK) {
        AL_INFO("router: no tokenizer (%s): requests must carry tokens", al_errmsg());
        r->tok = NULL;
    }
    r->intr = calloc((size_t)(r->cfg.n_intrinsics > 0 ? r->cfg.n_intrinsics : 1), sizeof *r->intr);
    if (!r->intr)
        return ali_errf(AL_ENOMEM, "router: out of memory");
    for (int i = 0; i < r->cfg.n_intrinsics; i++)
        r->intr[i].cfg = &r->cfg.intrinsics[i];

    AL_TRY(router_identity_load(r));
    AL_TRY(router_bases_open(r));

    int total_cap = 0;
    for (int i = 0; i < r->cfg.n_intrinsics; i++) {
        int c = r->cfg.intrinsics[i].capacity > 0 ? r->cfg.intrinsics[i].capacity : 8;
        total_cap += c * (r->cfg.intrinsics[i].replicas > 0 ? r->cfg.intrinsics[i].replicas : 1) * r->n_bases;
    }
    int nth = total_cap + 8;
    nth = nth < 16 ? 16 : nth > 128 ? 128 : nth;
    AL_TRY(router_pool_start(&r->pool, nth));
    AL_TRY(router_pool_start(&r->ctl, 4));

    al_rpc_server_opts so;
    al_rpc_server_opts_default(&so);
    so.n_ctx = 512;                       /* accept (and queue or reject) this many at once */
    so.recv_max = 16u << 20;              /* client-facing: cap frames */
    so.max_elems = ROUTER_MAX_REQ_TOKENS; /* cap token arrays */
    AL_TRY(al_rpc_server_new(&r->srv, &so));
    AL_TRY(al_rpc_server_handle(r->srv, alora_Method_ROUTER_HEALTH, router_on_health, r));
    AL_TRY(router_registry_register_handlers(r));
    AL_TRY(router_invoke_register_handlers(r));
    AL_TRY(router_session_register_handlers(r));
    AL_TRY(router_status_register_handlers(r));

    /* sessions before the monitor: its first hello to a base keeps the sequences they name */
    {
        char d[512]; /* the session store's directory (the run dir by default) */
        snprintf(d, sizeof d, "%s", r->cfg.router.session_db);
        char *sl = strrchr(d, '/');
        if (sl && sl != d) {
            *sl = 0;
            mkdir(d, 0700);
        }
    }
    if ((e = router_sessions_load(r)) != AL_OK) {
        r->config_error = e == AL_EFORMAT || e == AL_EIO; /* restarting would not help */
        return e;
    }
    AL_TRY(router_lcache_init(r));
    if (pthread_create(&r->monitor, NULL, router_monitor_main, r) != 0)
        return ali_errf(AL_EINTERNAL, "router: cannot start the monitor thread");
    r->monitor_on = true;
    router_ipc_dir(r->cfg.router.listen);
    AL_TRY(al_rpc_server_listen(r->srv, r->cfg.router.listen, r->bound, sizeof r->bound));
    if (r->n_bases > 1)
        AL_INFO("router: %s listening on %s (%d bases %s .. %s, %d intrinsics, %d pool threads)", r->id, r->bound,
                r->n_bases, r->bases[0].url, r->bases[r->n_bases - 1].url, r->cfg.n_intrinsics, nth);
    else
        AL_INFO("router: %s listening on %s (base %s, %d intrinsics, %d pool threads)", r->id, r->bound,
                r->bases[0].url, r->cfg.n_intrinsics, nth);
    if (r->cfg.router.http && r->cfg.router.http[0])
        AL_TRY(router_http_start(r));
    return AL_OK;
}

void router_stop(router *r)
{
    pthread_mutex_lock(&r->mu);
    r->stopping = true;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (r->monitor_on)
        pthread_join(r->monitor, NULL);
    r->monitor_on = false;
    router_http_stop(r); /* before the RPC server: HTTP calls use it */
    if (r->srv)
        al_rpc_server_close(r->srv); /* waits for deferred calls: the pools still run them */
    r->srv = NULL;
    router_pool_stop(&r->pool);
    router_pool_stop(&r->ctl);
    router_lcache_free(r); /* every call is done (the bases drop its leases with its connection) */
    router_registry_sweep(r, true);
    router_sessions_free(r); /* before the bases: sessions point at them */
    router_bases_close(r);
    al_tokenizer_free(r->tok);
    free(r->intr);
    al_cluster_cfg_free(&r->cfg);
    al_rpc_tls_clear();
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
}
