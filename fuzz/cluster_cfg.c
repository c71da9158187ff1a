/* cluster_cfg.c: libFuzzer target: the libconfig cluster file (services/common/cluster_cfg.c through the
 * table-driven loader common/cfg.c) as every process reads it, its intrinsics list as the router
 * reads it (services/router/front/intrinsics.c), and the URL / name helpers the processes derive. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "fuzz/fuzz_util.h"
#include "services/common/cluster_cfg.h"
#include "services/router/front/intrinsics.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    FUZZ_QUIET_INIT();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_cstr(data, size);
    /* @include reads other files (any path, e.g. /dev/stdin): out of scope for an in-memory fuzzer */
    if (strstr(text, "@include")) {
        free(text);
        return 0;
    }
    char path[512];
    fuzz_write("cluster.cfg", text, strlen(text), path, sizeof path);
    al_cluster_cfg c;
    if (al_cluster_cfg_load(path, &c) == AL_OK) {
        char id[256], url[512];
        int nb = c.base.instances < 4 ? c.base.instances : 4;
        for (int k = 0; k < nb; k++)
            if (al_cluster_base_url(&c, k, url, sizeof url) == AL_OK)
                (void)al_cluster_url_loopback(url);
        for (int i = 0; i < c.n_intrinsics && i < 8; i++) {
            if (al_cluster_cfg_intrinsic(&c, c.intrinsics[i].name) == NULL)
                abort(); /* every listed intrinsic is found by its name */
            (void)al_cluster_worker_name(&c, c.intrinsics[i].name, nb > 1 ? 1 : 0, 0, id, sizeof id, url, sizeof url);
        }
        (void)al_cluster_url_loopback(c.router.http ? c.router.http : "");
        if (nb > 1)
            (void)al_cluster_cfg_use_base(&c, 1);
        al_cluster_cfg_free(&c);
        al_intrinsics l;
        if (al_intrinsics_load_cluster(path, &l) == AL_OK)
            al_intrinsics_free(&l);
    }
    /* a standalone intrinsics file (deploy/intrinsics.cfg) */
    al_intrinsics l;
    if (al_intrinsics_load_string(text, &l) == AL_OK)
        al_intrinsics_free(&l);
    free(text);
    return 0;
}
