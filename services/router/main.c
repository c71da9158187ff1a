/* main.c: alora-router -c FILE: the client-facing router of the cluster (docs/cluster.md). */
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/proc.h"
#include "services/router/router.h"

static void router_usage(FILE *f)
{
    fprintf(f, "usage: alora-router -c FILE\n"
               "Serves the client API (ROUTER_*) on router.listen of the cluster config; workers\n"
               "register here; invocations lease base KV and run on the intrinsic's workers.\n");
}

int main(int argc, char **argv)
{
    const char *cfg = NULL;
    for (int i = 1; i < argc; i++) {
        if ((!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) && i + 1 < argc) {
            cfg = argv[++i];
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            router_usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "alora-router: unexpected argument '%s'\n", argv[i]);
            router_usage(stderr);
            return 2;
        }
    }
    if (!cfg) {
        router_usage(stderr);
        return 2;
    }
    al_log_set_tag("router");
    /* Under `alora up`: stop with the supervisor even if it is SIGKILLed. */
    if (al_proc_bind_supervisor() != 0)
        return 1; /* the supervisor is already gone */
    if (al_proc_catch_signals() != 0) {
        fprintf(stderr, "alora-router: cannot install signal handlers\n");
        return 1;
    }

    static router r;
    if (router_start(&r, cfg) != AL_OK) {
        fprintf(stderr, "alora-router: %s\n", al_errmsg());
        bool config_error = r.config_error;
        router_stop(&r);
        return config_error ? AL_EXIT_CONFIG : 1;
    }
    int sig = al_proc_wait_signal();
    AL_INFO("router: signal %d, stopping", sig);
    router_stop(&r);
    return 0;
}
