/* main.c: alora-base: loads the model into shared arenas and serves prefill, generation and leases. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/proc.h"
#include "services/base/base.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: alora-base -c FILE [--instance K]\n"
               "--instance: which of base.instances this process is (default 0): its listen address and,\n"
               "on CUDA, its GPU (K %% the number of GPUs)\n");
}

int main(int argc, char **argv)
{
    const char *cfg_path = NULL;
    int instance = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-c") && i + 1 < argc) {
            cfg_path = argv[++i];
        } else if (!strcmp(argv[i], "--instance") && i + 1 < argc) {
            char *end;
            long k = strtol(argv[++i], &end, 10);
            if (!*argv[i] || *end || k < 0 || k > 1023) {
                usage(stderr);
                return 2;
            }
            instance = (int)k;
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (!cfg_path) {
        usage(stderr);
        return 2;
    }
    char tag[32];
    if (instance)
        snprintf(tag, sizeof tag, "base-%d", instance);
    else
        snprintf(tag, sizeof tag, "base");
    al_log_set_tag(tag);
    if (al_proc_bind_supervisor() != 0)
        return 1; /* started by an `alora up` that is already gone */
    if (al_proc_catch_signals() != 0) {
        AL_ERROR("cannot install signal handlers");
        return 1;
    }

    static base_ctx b;
    b.t_start = al_now();
    b.instance = instance;
    int rc = 0;
    al_err e = base_config_load(cfg_path, &b);
    if (e != AL_OK)
        rc = AL_EXIT_CONFIG; /* the config, or the model it names: a restart cannot help */
    if (e == AL_OK)
        e = base_arenas_create(&b);
    if (e == AL_OK)
        e = base_loop_start(&b);
    if (e == AL_OK)
        e = base_server_start(&b);
    if (e != AL_OK) {
        AL_ERROR("%s: %s", al_strerror(e), al_errmsg());
        if (!rc)
            rc = 1;
    } else {
        int sig = al_proc_wait_signal();
        AL_INFO("signal %d: shutting down", sig);
    }
    base_loop_stop(&b);
    if (b.srv)
        base_server_stop(&b);
    base_loop_free(&b);
    base_arenas_destroy(&b);
    al_cluster_cfg_free(&b.cfg);
    al_rpc_tls_clear();
    return rc;
}
