/* cmd_up.c: `alora up -c FILE`: a whole local cluster as supervised child processes. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_util.h"
#include "cluster_cfg.h"
#include "cmds.h"
#include "supervisor.h"

static void up_usage(FILE *f)
{
    fprintf(f, "usage: alora up -c FILE [--bin-dir DIR] [--ready-file PATH] [--ready-timeout MS]\n"
               "Starts alora-base, the workers of every intrinsic (replicas each) and alora-router from\n"
               "one config, restarts crashed ones (exponential backoff) and stops them all on\n"
               "SIGINT/SIGTERM. Prints 'alora up: ready (router URL)' on stdout once the router reports\n"
               "every process healthy (and writes the router URL to --ready-file).\n"
               "Binaries are looked up next to this executable unless --bin-dir is given.\n");
}

int cmd_up(int argc, char **argv)
{
    const char *cfg_path = NULL, *bin_dir = NULL, *ready_file = NULL;
    long ready_timeout = 0;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v;
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
            up_usage(stdout);
            return 0;
        }
        if (!(v = cli_value("up", argc, argv, &i)))
            return 2;
        if (!strcmp(o, "-c") || !strcmp(o, "--config"))
            cfg_path = v;
        else if (!strcmp(o, "--bin-dir"))
            bin_dir = v;
        else if (!strcmp(o, "--ready-file"))
            ready_file = v;
        else if (!strcmp(o, "--ready-timeout")) {
            if (cli_parse_long(o, v, 0, 86400000L, &ready_timeout) != AL_OK) {
                fprintf(stderr, "alora up: %s\n", al_errmsg());
                return 2;
            }
        } else {
            fprintf(stderr, "alora up: unknown option '%s'\n", o);
            up_usage(stderr);
            return 2;
        }
    }
    if (!cfg_path) {
        fprintf(stderr, "alora up: -c FILE is required\n");
        up_usage(stderr);
        return 2;
    }
    char self[PATH_MAX];
    if (!bin_dir) {
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n <= 0) {
            fprintf(stderr, "alora up: cannot find my own executable; use --bin-dir DIR\n");
            return 2;
        }
        self[n] = 0;
        char *slash = strrchr(self, '/');
        if (slash)
            *slash = 0;
        bin_dir = self;
    }
    al_cluster_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    if (al_cluster_cfg_load(cfg_path, &cfg) != AL_OK) {
        fprintf(stderr, "alora up: %s\n", al_errmsg());
        return 1;
    }
    sup_opts so = {.cfg_path = cfg_path, .bin_dir = bin_dir, .ready_file = ready_file,
                   .ready_timeout_ms = (int)ready_timeout};
    int rc = sup_run(&cfg, &so);
    al_cluster_cfg_free(&cfg);
    return rc;
}
