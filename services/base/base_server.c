/* base_server.c: alora-base RPC handlers: Attach/Health answer at once, the rest queue engine commands. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "services/base/base.h"

static al_err base_h_attach(al_rpc_job *job, const void *req, void *rep, void *user)
{
    base_ctx *b = user;
    const alora_AttachRequest *rq = req;
    base_fill_attach(b, rep);
    AL_INFO("attach: %s pid %u (pipe %u)", rq->name[0] ? rq->name : "?", rq->pid, al_rpc_job_pipe(job));
    return AL_OK;
}

static al_err base_h_health(al_rpc_job *job, const void *req, void *rep, void *user)
{
    base_ctx *b = user;
    alora_HealthReply *r = rep;
    r->role = alora_Role_ROLE_BASE;
    r->health = alora_Health_HEALTH_OK;
    r->pid = (uint32_t)getpid();
    snprintf(r->instance_id, sizeof r->instance_id, "%s", b->instance_id);
    r->uptime_ms = (uint64_t)((al_now() - b->t_start) * 1e3);
    snprintf(r->version, sizeof r->version, "alora-base %s", ALORA_VERSION);
    al_ops_describe(b->ops, r->backend, sizeof r->backend);
    return AL_OK;
}

/* Everything that touches the engine: queue it, answer from the engine thread. */
static al_err base_h_queue(al_rpc_job *job, const void *req, void *rep, void *user)
{
    base_ctx *b = user;
    base_cmd *c = calloc(1, sizeof *c);
    if (!c)
        return ali_errf(AL_ENOMEM, "base: out of memory");
    c->kind = BASE_CMD_RPC;
    c->method = al_rpc_job_method(job);
    c->job = job;
    c->req = req;
    c->rep = rep;
    c->pipe = al_rpc_job_pipe(job);
    switch (c->method) {
    case alora_Method_BASE_SEQ_APPEND: c->seq_id = ((const alora_SeqAppendRequest *)req)->seq_id; break;
    case alora_Method_BASE_SEQ_GENERATE: c->seq_id = ((const alora_SeqGenerateRequest *)req)->seq_id; break;
    case alora_Method_BASE_SEQ_FORK: c->seq_id = ((const alora_SeqForkRequest *)req)->seq_id; break;
    case alora_Method_BASE_SEQ_RELEASE: c->seq_id = ((const alora_SeqReleaseRequest *)req)->seq_id; break;
    case alora_Method_BASE_LEASE: c->seq_id = ((const alora_LeaseRequest *)req)->seq_id; break;
    default: break;
    }
    al_rpc_defer(job);
    base_loop_push(b, c);
    return AL_OK;
}

static void base_on_peer(uint32_t pipe, uint64_t pid, bool connected, void *user)
{
    base_ctx *b = user;
    if (connected) {
        __atomic_add_fetch(&b->peers, 1, __ATOMIC_RELAXED);
        return;
    }
    __atomic_sub_fetch(&b->peers, 1, __ATOMIC_RELAXED);
    base_cmd *c = calloc(1, sizeof *c);
    if (!c) {
        AL_ERROR("pipe %u closed but no memory to queue its lease and sequence release", pipe);
        return;
    }
    c->kind = BASE_CMD_PEER_GONE;
    c->pipe = pipe;
    base_loop_push(b, c);
}

al_err base_server_start(base_ctx *b)
{
    al_rpc_server_opts o;
    al_rpc_server_opts_default(&o);
    o.n_ctx = 64;
    AL_TRY(al_rpc_server_new(&b->srv, &o));
    static const uint16_t queued[] = {alora_Method_BASE_STATS,       alora_Method_BASE_SEQ_CREATE,
                                      alora_Method_BASE_SEQ_APPEND,  alora_Method_BASE_SEQ_GENERATE,
                                      alora_Method_BASE_SEQ_FORK,    alora_Method_BASE_SEQ_RELEASE,
                                      alora_Method_BASE_LEASE,       alora_Method_BASE_UNLEASE,
                                      alora_Method_BASE_HELLO};
    AL_TRY(al_rpc_server_handle(b->srv, alora_Method_BASE_ATTACH, base_h_attach, b));
    AL_TRY(al_rpc_server_handle(b->srv, alora_Method_BASE_HEALTH, base_h_health, b));
    for (size_t i = 0; i < sizeof queued / sizeof queued[0]; i++)
        AL_TRY(al_rpc_server_handle(b->srv, queued[i], base_h_queue, b));
    AL_TRY(al_rpc_server_on_peer(b->srv, base_on_peer, b));
    char bound[256];
    AL_TRY(al_rpc_server_listen(b->srv, b->cfg.base.listen, bound, sizeof bound));
    AL_INFO("listening on %s (instance %s)", bound, b->instance_id);
    return AL_OK;
}

void base_server_stop(base_ctx *b)
{
    al_rpc_server_close(b->srv);
    b->srv = NULL;
}
