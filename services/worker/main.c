/* main.c: alora-worker: one intrinsic's aLoRA over the base's shared weights and leased KV. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/proc.h"
#include "services/worker/worker.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: alora-worker -c FILE --intrinsic NAME --replica K [--base B] [--router URL|none]\n"
               "--base: the base instance (0 .. base.instances-1) to attach to (default 0)\n");
}

static int parse(int argc, char **argv, const char **cfg, const char **name, int *replica, int *base,
                 const char **router)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            exit(0);
        }
        if (i + 1 >= argc)
            return -1;
        const char *v = argv[++i];
        if (!strcmp(a, "-c"))
            *cfg = v;
        else if (!strcmp(a, "--intrinsic"))
            *name = v;
        else if (!strcmp(a, "--router"))
            *router = v;
        else if (!strcmp(a, "--replica") || !strcmp(a, "--base")) {
            char *end;
            long k = strtol(v, &end, 10);
            if (!*v || *end || k < 0 || k > 1023)
                return -1;
            *(!strcmp(a, "--base") ? base : replica) = (int)k;
        } else
            return -1;
    }
    return *cfg && *name ? 0 : -1;
}

int main(int argc, char **argv)
{
    const char *cfg_path = NULL, *name = NULL, *router = NULL;
    int replica = 0, base = 0;
    if (parse(argc, argv, &cfg_path, &name, &replica, &base, &router) != 0) {
        usage(stderr);
        return 2;
    }
    /* SIGINT / SIGTERM stop; SIGUSR1 comes from the health thread: the base is gone */
    if (al_proc_catch_signals() != 0) {
        AL_ERROR("cannot install signal handlers");
        return 1;
    }

    static worker_ctx w;
    w.t_start = al_now();
    w.replica = replica;
    char tag[96];
    if (base > 0)
        snprintf(tag, sizeof tag, "worker-%s-b%d-%d", name, base, replica);
    else
        snprintf(tag, sizeof tag, "worker-%s-%d", name, replica);
    al_log_set_tag(tag);
    if (al_proc_bind_supervisor() != 0)
        return 1; /* started by an `alora up` that is already gone */
    int rc = 0;
    al_err e = al_cluster_cfg_load(cfg_path, &w.cfg);
    if (e == AL_OK) {
        al_log_set_level((al_log_level)w.cfg.log_level);
        w.intr = al_cluster_cfg_intrinsic(&w.cfg, name);
        if (!w.intr)
            e = ali_errf(AL_ENOTFOUND, "--intrinsic: '%s' is not in %s's intrinsics", name, cfg_path);
    }
    if (e == AL_OK)
        e = al_cluster_tls_apply(&w.cfg, AL_ROLE_WORKER); /* dials base and router over tls+tcp:// */
    if (e == AL_OK && (e = al_cluster_cfg_use_base(&w.cfg, base)) != AL_OK)
        e = ali_errctx(e, "--base %d", base);
    if (e == AL_OK) {
        snprintf(w.router_url, sizeof w.router_url, "%s", router ? router : w.cfg.router.listen);
        w.no_router = router && !strcmp(router, "none");
        e = al_cluster_worker_name(&w.cfg, name, base, replica, w.worker_id, sizeof w.worker_id, w.url,
                                   sizeof w.url);
    }
    bool config_error = e != AL_OK; /* the config itself, or the adapter it names: fatal */
    if (e == AL_OK)
        e = worker_attach(&w);
    if (e == AL_OK && (e = worker_load_adapter(&w)) != AL_OK)
        config_error = e == AL_ENOTFOUND || e == AL_EFORMAT || e == AL_EUNSUPPORTED;
    if (e == AL_OK)
        e = worker_loop_start(&w);
    if (e == AL_OK)
        e = worker_server_start(&w);
    if (e == AL_OK)
        e = worker_bg_start(&w);
    if (e != AL_OK) {
        if (e == AL_ECLOSED) {
            AL_INFO("%s", al_errmsg());
        } else {
            AL_ERROR("%s: %s", al_strerror(e), al_errmsg());
            rc = config_error                                   ? AL_EXIT_CONFIG
                 : e == AL_EUNAVAILABLE || e == AL_ETIMEDOUT ? WORKER_EXIT_BASE_GONE
                                                             : 1;
        }
    } else {
        int sig = al_proc_wait_signal();
        if (sig == SIGUSR1)
            rc = WORKER_EXIT_BASE_GONE;
        else
            AL_INFO("signal %d: shutting down", sig);
    }
    worker_bg_stop(&w);
    worker_loop_stop(&w);
    if (w.srv)
        worker_server_stop(&w);
    worker_loop_free(&w);
    worker_detach(&w);
    al_cluster_cfg_free(&w.cfg);
    al_rpc_tls_clear();
    return rc;
}
