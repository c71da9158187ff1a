/* main.c: alora-base: loads the model into shared arenas and serves prefill, generation and leases. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "base.h"
#include "log.h"
#include "proc.h"

static void usage(FILE *f) { fprintf(f, "usage: alora-base -c FILE\n"); }

int main(int argc, char **argv)
{
    const char *cfg_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-c") && i + 1 < argc) {
            cfg_path = argv[++i];
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
    al_log_set_tag("base");
    if (al_proc_bind_supervisor() != 0)
        return 1; /* started by an `alora up` that is already gone */
    if (al_proc_catch_signals() != 0) {
        AL_ERROR("cannot install signal handlers");
        return 1;
    }

    static base_ctx b;
    b.t_start = al_now();
    int rc = 0;
    al_err e = base_config_load(cfg_path, &b);
    if (e == AL_OK)
        e = base_arenas_create(&b);
    if (e == AL_OK)
        e = base_loop_start(&b);
    if (e == AL_OK)
        e = base_server_start(&b);
    if (e != AL_OK) {
        AL_ERROR("%s: %s", al_strerror(e), al_errmsg());
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
    return rc;
}
