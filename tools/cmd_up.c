/* cmd_up.c: `alora up -c FILE`: a whole local cluster as supervised child processes. */
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/model/adapter.h"
#include "common/model/model.h"
#include "common/proc.h"
#include "common/text/chat.h"
#include "services/common/cluster_cfg.h"
#include "tools/cli_util.h"
#include "tools/cmds.h"
#include "tools/supervisor.h"

/* the options that take a value */
#define UP_VALUE_OPTS "-c --config --bin-dir --ready-file --ready-timeout"

static void up_usage(FILE *f)
{
    fprintf(f, "usage: alora up -c FILE [--bin-dir DIR] [--ready-file PATH] [--ready-timeout MS] [--check]\n"
               "Starts alora-base, the workers of every intrinsic (replicas each) and alora-router from\n"
               "one config, restarts crashed ones (exponential backoff) and stops them all on\n"
               "SIGINT/SIGTERM. Prints 'alora up: ready (router URL)' on stdout once the router reports\n"
               "every process healthy (and writes the router URL to --ready-file).\n"
               "Binaries are looked up next to this executable unless --bin-dir is given.\n"
               "--check: load and validate the config, print the resolved addresses and the process\n"
               "plan (one 'exec' line per process), start nothing; exit 0 if valid, 1 if not.\n");
}

/* --check: the resolved config and the process plan `alora up` would start; starts nothing. */
static int up_check(const al_cluster_cfg *cfg, const char *cfg_path, const char *bin_dir)
{
    static const char *const devices[] = {"auto", "cpu", "cuda"};
    /* what the services check at start, beyond the config file itself (al_cluster_cfg_load): the
     * model's config, every adapter against it, the chat template. A path that does not exist here
     * only warns (the config may be meant for another host, e.g. a container image). */
    al_model_config mc;
    bool have_model = access(cfg->base.model, F_OK) == 0;
    if (!have_model)
        fprintf(stderr, "alora up --check: warning: base.model %s does not exist here: not checked\n", cfg->base.model);
    else if (al_config_load(cfg->base.model, &mc) != AL_OK) {
        fprintf(stderr, "alora up --check: %s: base.model: %s\n", cfg_path, al_errmsg());
        return AL_EXIT_CONFIG;
    }
    for (int i = 0; i < cfg->n_intrinsics; i++) {
        const char *ad = cfg->intrinsics[i].adapter;
        al_adapter *a = NULL;
        if (access(ad, F_OK) != 0) {
            fprintf(stderr, "alora up --check: warning: intrinsics[%d] (%s).adapter %s does not exist here: not checked\n",
                    i, cfg->intrinsics[i].name, ad);
        } else if (have_model && al_adapter_load(ad, &mc, &a) != AL_OK) {
            fprintf(stderr, "alora up --check: %s: intrinsics[%d] (%s).adapter: %s\n", cfg_path, i,
                    cfg->intrinsics[i].name, al_errmsg());
            return AL_EXIT_CONFIG;
        }
        al_adapter_free(a);
    }
    al_chat_format fmt;
    if (cfg->router.chat_template && cfg->router.chat_template[0] &&
        al_chat_format_parse(cfg->router.chat_template, &fmt) != AL_OK) {
        fprintf(stderr, "alora up --check: %s: router.chat_template: %s\n", cfg_path, al_errmsg());
        return AL_EXIT_CONFIG;
    }
    printf("config %s: ok\n", cfg_path);
    printf("run_dir = %s\n", cfg->run_dir);
    printf("base.model = %s\n", cfg->base.model);
    printf("base.listen = %s\n", cfg->base.listen);
    printf("base.device = %s\n", cfg->base.device >= 0 && cfg->base.device <= 2 ? devices[cfg->base.device] : "?");
    printf("base.weights = %s\n", al_cluster_weights_names[cfg->base.weights]);
    printf("base.instances = %d\n", cfg->base.instances);
    printf("base.kv_blocks = %d\n", cfg->base.kv_blocks);
    printf("base.block_size = %d\n", cfg->base.block_size);
    printf("base.max_leases = %d\n", cfg->base.max_leases);
    printf("router.listen = %s\n", cfg->router.listen);
    printf("router.http = %s\n", cfg->router.http ? cfg->router.http : "");
    printf("router.tokenizer = %s\n", cfg->router.tokenizer);
    printf("router.model_name = %s\n", cfg->router.model_name);
    printf("router.api_keys = %d\n", cfg->router.api_keys.n);
    printf("router.allow_insecure = %s\n", cfg->router.allow_insecure ? "true" : "false");
    for (int i = 0; i < cfg->n_intrinsics; i++)
        printf("intrinsic %s adapter=%s replicas=%d\n", cfg->intrinsics[i].name, cfg->intrinsics[i].adapter,
               cfg->intrinsics[i].replicas);
    /* A missing binary only warns: the config may be meant for another host (a container image). */
    static const char *const roles[] = {"base", "worker", "router"};
    for (int i = 0; i < 3; i++) {
        char bin[PATH_MAX + 32];
        snprintf(bin, sizeof bin, "%.*s/alora-%s", PATH_MAX - 1, bin_dir, roles[i]);
        if (access(bin, X_OK) != 0) {
            fprintf(stderr, "alora up --check: warning: %s is not an executable (use --bin-dir DIR)\n", bin);
        }
    }
    printf("exec base: %s/alora-base -c %s\n", bin_dir, cfg_path);
    for (int b = 1; b < cfg->base.instances; b++) {
        char url[320];
        if (al_cluster_base_url(cfg, b, url, sizeof url) != AL_OK) {
            fprintf(stderr, "alora up --check: %s\n", al_errmsg());
            return 1;
        }
        printf("exec base-%d %s: %s/alora-base -c %s --instance %d\n", b, url, bin_dir, cfg_path, b);
    }
    printf("exec router: %s/alora-router -c %s\n", bin_dir, cfg_path);
    for (int b = 0; b < cfg->base.instances; b++)
        for (int i = 0; i < cfg->n_intrinsics; i++)
            for (int k = 0; k < cfg->intrinsics[i].replicas; k++) {
                char url[512], id[160], extra[32] = "";
                if (al_cluster_worker_name(cfg, cfg->intrinsics[i].name, b, k, id, sizeof id, url, sizeof url) !=
                    AL_OK) {
                    fprintf(stderr, "alora up --check: %s\n", al_errmsg());
                    return 1;
                }
                if (b)
                    snprintf(extra, sizeof extra, " --base %d", b);
                printf("exec worker %s %s: %s/alora-worker -c %s --intrinsic %s --replica %d%s\n", id, url, bin_dir,
                       cfg_path, cfg->intrinsics[i].name, k, extra);
            }
    return 0;
}

int cmd_up(int argc, char **argv)
{
    const char *cfg_path = NULL, *bin_dir = NULL, *ready_file = NULL;
    long ready_timeout = 0;
    int check = 0;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v;
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
            up_usage(stdout);
            return 0;
        }
        if (!strcmp(o, "--check")) {
            check = 1;
            continue;
        }
        if (!(v = cli_value("up", UP_VALUE_OPTS, argc, argv, &i)))
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
        return AL_EXIT_CONFIG;
    }
    if (check) {
        int rc = up_check(&cfg, cfg_path, bin_dir);
        al_cluster_cfg_free(&cfg);
        return rc;
    }
    sup_opts so = {.cfg_path = cfg_path, .bin_dir = bin_dir, .ready_file = ready_file,
                   .ready_timeout_ms = (int)ready_timeout};
    int rc = sup_run(&cfg, &so);
    al_cluster_cfg_free(&cfg);
    return rc;
}
