/* base_config.c: alora-base configuration (the shared cluster file) and its instance id. */
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "common/log.h"
#include "services/base/base.h"

al_err base_random_hex(char *out, size_t n_bytes)
{
    uint8_t raw[32];
    if (n_bytes > sizeof raw)
        return ali_errf(AL_EINVAL, "random id: at most %zu bytes", sizeof raw);
    if (getrandom(raw, n_bytes, 0) != (ssize_t)n_bytes)
        return ali_errf(AL_EIO, "getrandom failed");
    for (size_t i = 0; i < n_bytes; i++)
        snprintf(out + 2 * i, 3, "%02x", raw[i]);
    return AL_OK;
}

al_err base_config_load(const char *path, base_ctx *b)
{
    AL_TRY(al_cluster_cfg_load(path, &b->cfg));
    al_log_set_level((al_log_level)b->cfg.log_level);
    AL_TRY(al_cluster_tls_apply(&b->cfg, AL_ROLE_BASE)); /* tls+tcp:// listener: mutual TLS */
    al_err e = al_cluster_cfg_use_base(&b->cfg, b->instance);
    if (e != AL_OK)
        return ali_errctx(e, "%s: --instance %d", path, b->instance);
    static const char *const names[] = {"auto", "cpu", "cuda"};
    int d = b->cfg.base.device;
    if (d < 0 || d > 2)
        return ali_errf(AL_EINVAL, "%s: base.device %d", path, d);
    const char *wn = al_cluster_weights_names[b->cfg.base.weights];
    e = al_ops_for_model(names[d], wn, b->cfg.base.model, &b->ops);
    if (e != AL_OK)
        return ali_errctx(e, "%s: base.device = \"%s\", base.weights = \"%s\"", path, names[d], wn);
    if (!b->ops->host_memory) { /* instance k on GPU k % n: one base per GPU */
        int n = 0;
        if ((e = al_cuda_available(&n)) != AL_OK || (e = al_cuda_use_device(b->instance % n)) != AL_OK)
            return ali_errctx(e, "%s: base instance %d", path, b->instance);
        AL_INFO("base instance %d: GPU %d of %d", b->instance, b->instance % n, n);
    }
    AL_INFO("base.device = %s, base.weights = %s: running on the %s backend", names[d], wn, b->ops->name);
    return base_random_hex(b->instance_id, 16);
}
