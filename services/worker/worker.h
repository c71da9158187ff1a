/* worker.h: alora-worker internals: the process context shared by its files. */
#ifndef WORKER_H
#define WORKER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/ipc/arena.h"
#include "common/ipc/rpc.h"
#include "common/model/adapter.h"
#include "common/model/model.h"
#include "engine/engine.h"
#include "services/common/cluster_cfg.h"
#include "services/common/vocab.h"
#include "services/common/wire.h"

#define WORKER_EXIT_BASE_GONE 3 /* exit code when the base disappears (the supervisor restarts us) */

typedef struct worker_cmd {
    al_rpc_job *job;
    const alora_WorkerInvokeRequest *req;
    alora_WorkerInvokeReply *rep;
    double t_queued, t_start;
    int32_t eseq;
    int32_t top_n;
    int32_t reused;
    const uint8_t *row_hdr; /* lease row header in the table arena, NULL without a lease */
    uint64_t generation;
    struct worker_cmd *next;
} worker_cmd;

typedef struct worker_ctx {
    al_cluster_cfg cfg;
    const al_intrinsic_cfg *intr;
    int replica;
    char router_url[256];
    bool no_router;
    char url[256];
    char worker_id[64];
    double t_start;

    /* the base */
    al_rpc_client *base;
    char base_instance_id[64];
    al_arena *weights, *kv, *tables;
    const al_ops *ops;   /* the base's backend: CPU over shm, CUDA over CUDA IPC */
    al_model *model;     /* config (+ host weight view on the CPU) */
    al_vocab *vocab;     /* token bytes for stop strings / constraints; NULL = no tokenizer */
    al_weights wview;    /* the weight arena in the backend's layout */
    int32_t block_size, kv_n_blocks, max_blocks_per_seq;

    /* adapter + private engine */
    al_adapter *adapter;
    int32_t slot;
    char digest[80];
    al_engine *engine;
    void *scratch_kv; /* private suffix pool (lazily touched anonymous memory) */
    size_t scratch_kv_bytes;

    /* engine thread */
    pthread_t thread;
    bool thread_started, mu_init;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    worker_cmd *q_head, *q_tail; /* new (under mu) */
    bool stop;                   /* under mu */
    worker_cmd *waiting, *running; /* engine thread */
    int32_t n_running;             /* engine thread: invocations in the engine (<= cfg.worker.max_batch) */
    /* counters (atomics) */
    uint32_t n_active, n_queued;
    uint64_t invocations, errors, computed_tokens, reused_tokens;
    uint64_t steps, shared_steps, step_calls, step_rows; /* forward steps and how they were shared */

    /* rpc */
    al_rpc_server *srv;

    /* router registration + base health */
    pthread_t reg_thread, health_thread;
    bool reg_started, health_started;
    volatile int bg_stop; /* atomic */
} worker_ctx;

/* worker_attach.c */
al_err worker_attach(worker_ctx *w);
void worker_detach(worker_ctx *w);
al_err worker_load_adapter(worker_ctx *w);

/* worker_loop.c */
al_err worker_loop_start(worker_ctx *w);
void worker_loop_stop(worker_ctx *w);
void worker_loop_free(worker_ctx *w);
void worker_loop_push(worker_ctx *w, worker_cmd *c);
uint64_t worker_kv_copied_bytes(worker_ctx *w);

/* worker_invoke.c (engine thread) */
int worker_invoke_start(worker_ctx *w, worker_cmd *c);
int worker_invoke_finish(worker_ctx *w, worker_cmd *c);
void worker_cmd_done(worker_ctx *w, worker_cmd *c, al_err e);

/* worker_server.c */
al_err worker_server_start(worker_ctx *w);
void worker_server_stop(worker_ctx *w);

/* worker_router.c */
al_err worker_bg_start(worker_ctx *w);
void worker_bg_stop(worker_ctx *w);

#endif
