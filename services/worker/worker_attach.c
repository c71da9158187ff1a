/* worker_attach.c: attach the base's arenas read-only (zero copy), build the model view, load the adapter. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/ipc/lease_table.h"
#include "common/log.h"
#include "common/text/adapter_text.h"
#include "common/text/tokenizer.h"
#include "services/worker/worker.h"

static char worker_model_path[256];

/* Sleeps ms, or returns 1 at once when SIGINT/SIGTERM arrives (they are blocked: sigwait-style). */
static int worker_sleep_or_signal(int ms)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    int sig = sigtimedwait(&set, NULL, &ts);
    return sig > 0;
}

static al_err worker_map(const alora_ArenaRef *ref, const char *what, al_arena **out)
{
    if (ref->kind != alora_ArenaKind_ARENA_SHM && ref->kind != alora_ArenaKind_ARENA_CUDA_IPC)
        return ali_errf(AL_EUNSUPPORTED, "attach: %s arena kind %d (shm or cuda ipc)", what, (int)ref->kind);
    al_err e = al_arena_attach(ref->handle, 1, out);
    if (e != AL_OK)
        return ali_errctx(e, "attach: %s arena", what);
    if ((al_arena_kind_of(*out) == AL_ARENA_CUDA) != (ref->kind == alora_ArenaKind_ARENA_CUDA_IPC))
        return ali_errf(AL_EINVAL, "attach: %s arena: the handle's kind disagrees with ArenaRef.kind", what);
    if (al_arena_size(*out) < ref->bytes)
        return ali_errf(AL_EINVAL, "attach: %s arena maps %zu bytes, the base says %llu", what, al_arena_size(*out),
                        (unsigned long long)ref->bytes);
    return AL_OK;
}

/* The backend that reads the base's arenas: CPU for shm, CUDA (on the arena's GPU) for CUDA IPC.
 * The weight format must be the one that backend computes with. */
static al_err worker_pick_backend(worker_ctx *w, const alora_AttachReply *rp)
{
    if (al_arena_kind_of(w->weights) == AL_ARENA_CPU) {
        AL_TRY(al_ops_select(rp->model.dtype == alora_Dtype_DTYPE_BF16 ? "cpu-bf16" : "cpu", &w->ops));
        /* int8 (cpu-q8): the wire's Dtype has no int8 value, so the arena says f32; the cluster
         * config's base.weights (the base reads the same file) says int8, and the arena's size
         * must agree (checked below) */
        if (rp->model.dtype != alora_Dtype_DTYPE_BF16 && !strcmp(al_cluster_weights_names[w->cfg.base.weights], "int8"))
            w->ops = al_ops_cpu_q8();
    } else {
        int dev = al_arena_device(w->weights);
        al_err e = al_cuda_use_device(dev);
        if (e == AL_OK)
            e = al_ops_select("cuda", &w->ops);
        if (e != AL_OK)
            return ali_errctx(e, "attach: the base's arenas are on GPU %d", dev);
    }
    alora_Dtype want = w->ops->weight_bytes == 2 ? alora_Dtype_DTYPE_BF16 : alora_Dtype_DTYPE_F32; /* int8: f32 */
    if (rp->model.dtype != want)
        return ali_errf(AL_EINVAL, "attach: the weight arena holds dtype %d, the %s backend computes with %s",
                        (int)rp->model.dtype, w->ops->name, want == alora_Dtype_DTYPE_BF16 ? "bf16" : "f32");
    return AL_OK;
}

al_err worker_attach(worker_ctx *w)
{
    al_rpc_client_opts o;
    al_rpc_client_opts_default(&o);
    o.connect_wait_ms = 500;
    AL_TRY(al_rpc_client_open(&w->base, w->cfg.base.listen, &o));
    alora_AttachRequest rq = {.role = alora_Role_ROLE_WORKER, .pid = (uint32_t)getpid()};
    snprintf(rq.name, sizeof rq.name, "%s", w->worker_id);
    alora_AttachReply rp;
    al_pbmem m = AL_PBMEM_INIT;
    double t0 = al_now();
    al_err e;
    int logged = 0;
    for (;;) {
        e = al_rpc_call(w->base, alora_Method_BASE_ATTACH, &rq, &rp, &m, 5000);
        al_pbmem_free(&m);
        if (e == AL_OK)
            break;
        if (e != AL_EUNAVAILABLE && e != AL_ETIMEDOUT)
            return ali_errctx(e, "attach to %s", w->cfg.base.listen);
        if (al_now() - t0 > 120)
            return ali_errf(e, "attach: the base at %s did not answer for 120 s", w->cfg.base.listen);
        if (!logged++)
            AL_INFO("waiting for the base at %s", w->cfg.base.listen);
        if (worker_sleep_or_signal(200))
            return ali_errf(AL_ECLOSED, "attach: interrupted by a signal");
    }
    snprintf(w->base_instance_id, sizeof w->base_instance_id, "%s", rp.base_instance_id);
    snprintf(worker_model_path, sizeof worker_model_path, "%s", rp.model.model_path);

    /* weights + manifest; the weight arena's kind picks the backend (the base's own) */
    AL_TRY(worker_map(&rp.weights, "weights", &w->weights));
    AL_TRY(worker_pick_backend(w, &rp));
    uint8_t *wbase = al_arena_ptr(w->weights);
    size_t wsize = al_arena_size(w->weights);
    if (rp.manifest_bytes != sizeof(al_model_config) || rp.manifest_offset > wsize ||
        wsize - rp.manifest_offset < rp.manifest_bytes)
        return ali_errf(AL_EINVAL, "attach: manifest at %llu (+%llu) does not fit the %zu-byte weight arena or this "
                                   "build's layout (%zu bytes)", (unsigned long long)rp.manifest_offset,
                        (unsigned long long)rp.manifest_bytes, wsize, sizeof(al_model_config));
    al_model_config mc;
    w->ops->download(&mc, wbase + rp.manifest_offset, sizeof mc);
    const alora_ModelConfig *pm = &rp.model;
    if ((uint32_t)mc.vocab_size != pm->vocab_size || (uint32_t)mc.hidden_size != pm->hidden_size ||
        (uint32_t)mc.n_layers != pm->n_layers || (uint32_t)mc.n_heads != pm->n_heads ||
        (uint32_t)mc.n_kv_heads != pm->n_kv_heads || (uint32_t)mc.head_dim != pm->head_dim ||
        (uint32_t)mc.intermediate_size != pm->intermediate_size)
        return ali_errf(AL_EINVAL, "attach: the weight manifest disagrees with AttachReply.model");
    if (mc.n_layers <= 0 || mc.n_layers > 4096 || mc.hidden_size <= 0 || mc.vocab_size <= 0)
        return ali_errf(AL_EINVAL, "attach: the weight manifest is not a model config");
    if (al_weights_backend_bytes(&mc, w->ops) > rp.manifest_offset)
        return ali_errf(AL_EINVAL, "attach: weights need %zu bytes on the %s backend, the manifest sits at %llu",
                        al_weights_backend_bytes(&mc, w->ops), w->ops->name, (unsigned long long)rp.manifest_offset);
    /* an int8 arena is a quarter of an f32 one; one at least the size of the bf16 layout is not int8
     * (base.weights differs between the base's config and this worker's) */
    if (w->ops == al_ops_cpu_q8() && rp.manifest_offset >= al_weights_backend_bytes(&mc, al_ops_cpu_bf16()))
        return ali_errf(AL_EINVAL, "attach: base.weights = \"int8\" here, but the base's weight arena (%llu bytes) "
                                   "is not int8 (%zu bytes): the base runs with other weights",
                        (unsigned long long)rp.manifest_offset, al_weights_backend_bytes(&mc, w->ops));
    AL_TRY(al_model_view(&mc, al_ops_canonical_weights(w->ops) ? wbase : NULL, &w->model));
    AL_TRY(al_weights_backend_bind(&mc, w->ops, wbase, &w->wview));

    /* KV pool */
    const alora_KvGeometry *g = &rp.kv_geometry;
    if (g->n_layers != (uint32_t)mc.n_layers || g->n_kv_heads != (uint32_t)mc.n_kv_heads ||
        g->head_dim != (uint32_t)mc.head_dim || g->dtype != alora_Dtype_DTYPE_F32 || g->block_size == 0 ||
        g->block_size > 1024 || g->n_blocks == 0 || g->n_blocks > (1u << 24) || g->max_blocks_per_seq == 0)
        return ali_errf(AL_EINVAL, "attach: kv_geometry does not match the model");
    al_kv_geom kg = {.n_layers = mc.n_layers, .n_kv_heads = mc.n_kv_heads, .head_dim = mc.head_dim,
                     .block_size = (int32_t)g->block_size};
    AL_TRY(worker_map(&rp.kv, "kv", &w->kv));
    if (al_arena_kind_of(w->kv) != al_arena_kind_of(w->weights) || al_arena_device(w->kv) != al_arena_device(w->weights))
        return ali_errf(AL_EINVAL, "attach: the kv and weight arenas are not in the same memory");
    if (al_arena_size(w->kv) < al_kvpool_bytes(&kg, (int32_t)g->n_blocks))
        return ali_errf(AL_EINVAL, "attach: kv arena has %zu bytes, %u blocks need %zu", al_arena_size(w->kv),
                        g->n_blocks, al_kvpool_bytes(&kg, (int32_t)g->n_blocks));
    w->block_size = (int32_t)g->block_size;
    w->kv_n_blocks = (int32_t)g->n_blocks;
    w->max_blocks_per_seq = (int32_t)g->max_blocks_per_seq;

    /* block tables */
    AL_TRY(worker_map(&rp.block_tables, "block_tables", &w->tables));
    if (al_arena_kind_of(w->tables) != AL_ARENA_CPU)
        return ali_errf(AL_EINVAL, "attach: block_tables must be a shm arena (host metadata)");
    if (al_arena_size(w->tables) < al_lease_table_bytes(w->max_blocks_per_seq, 1))
        return ali_errf(AL_EINVAL, "attach: block_tables arena is smaller than one row");
    AL_INFO("attached base %s: %s, weights %.1f MiB, kv %u blocks of %u tokens (read-only, zero copy, %s)",
            w->base_instance_id, mc.name, wsize / 1048576.0, g->n_blocks, g->block_size,
            w->ops->host_memory ? "shm" : "cuda ipc");
    return AL_OK;
}

void worker_detach(worker_ctx *w)
{
    al_weights_unbind(&w->wview);
    al_model_free(w->model);
    w->model = NULL;
    al_arena_detach(w->tables);
    al_arena_detach(w->kv);
    al_arena_detach(w->weights);
    w->tables = w->kv = w->weights = NULL;
    if (w->base)
        al_rpc_client_close(w->base);
    w->base = NULL;
}

al_err worker_load_adapter(worker_ctx *w)
{
    AL_TRY(al_adapter_load(w->intr->adapter, &w->model->cfg, &w->adapter));
    if (!w->adapter->invocation && w->adapter->invocation_string) {
        al_tokenizer *t = NULL;
        al_err e = al_tokenizer_load(worker_model_path, &t);
        if (e == AL_OK)
            e = al_adapter_resolve_invocation(w->adapter, t);
        al_tokenizer_free(t);
        if (e != AL_OK)
            return ali_errctx(e, "intrinsic '%s': legacy invocation_string", w->intr->name);
    }
    if (w->adapter->n_invocation > 64)
        return ali_errf(AL_EUNSUPPORTED, "intrinsic '%s': %d invocation tokens (at most 64 can be registered)",
                        w->intr->name, w->adapter->n_invocation);
    snprintf(w->digest, sizeof w->digest, "xxh64:%016llx", (unsigned long long)w->adapter->digest);
    AL_INFO("adapter %s: %s, rank <= %d, %d invocation tokens, digest %s", w->intr->name, w->intr->adapter,
            w->adapter->max_rank, w->adapter->n_invocation, w->digest);
    return AL_OK;
}
