/* base.h: alora-base internals: the process context shared by its files. */
#ifndef BASE_H
#define BASE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/ipc/arena.h"
#include "common/ipc/rpc.h"
#include "common/model/model.h"
#include "engine/engine.h"
#include "services/common/cluster_cfg.h"
#include "services/common/vocab.h"
#include "services/common/wire.h"

/* ---- commands: RPC handlers queue them, the engine thread executes them ----------------------- */

typedef enum base_cmd_kind {
    BASE_CMD_RPC = 0,  /* a deferred RPC call (method in job) */
    BASE_CMD_PEER_GONE /* a pipe disconnected: drop its leases */
} base_cmd_kind;

typedef struct base_cmd {
    base_cmd_kind kind;
    uint16_t method;
    al_rpc_job *job;
    const void *req;
    void *rep;
    uint32_t pipe;
    double t_queued;
    /* execution state (engine thread) */
    int32_t eseq;      /* engine sequence the command waits on, -1 = none */
    int32_t tmp_seq;   /* temporary engine sequence to release when done, -1 = none */
    uint64_t seq_id;   /* base sequence the command works on, 0 = none */
    int owns_busy;     /* this command set that sequence's busy flag */
    int32_t cached0;   /* cached_tokens before a continue */
    int32_t n0;        /* sequence length before the command */
    int32_t stage;     /* per-command scratch (SeqGenerate: top_logprobs requested) */
    double t_start;
    struct base_cmd *next;
} base_cmd;

/* A base sequence (SeqCreate). */
typedef struct base_seq {
    uint64_t id;
    int32_t eseq;  /* engine sequence, -1 = no tokens yet */
    int busy;      /* a command is running on it */
    uint32_t pipe; /* the owner's connection; 0 = orphaned (the owner went away) */
    char owner[65]; /* the owner's client id (BASE_HELLO), "" = an anonymous connection */
    double orphan_at; /* orphaned: al_now() when it is freed unless reclaimed */
} base_seq;

/* A connection that said BASE_HELLO. */
typedef struct base_client {
    uint32_t pipe;
    uint64_t epoch;
    char id[65];
} base_client;

/* The highest epoch each client id has said hello with (kept for the base's life). */
typedef struct base_epoch {
    char id[65];
    uint64_t epoch;
} base_epoch;

typedef struct base_lease {
    uint64_t id;       /* 0 = free slot */
    uint64_t generation;
    uint32_t pipe;     /* holder */
    double expiry;     /* al_now() seconds */
    int32_t row;
    int32_t n_tokens;
    int32_t n_blocks;
    int32_t *blocks;   /* points into the row of the table arena */
} base_lease;

typedef struct base_ctx {
    al_cluster_cfg cfg;
    char instance_id[33];
    int instance;       /* which of base.instances (--instance) */
    double t_start;

    /* backend + arenas: weights and KV in the backend's memory (shm for the CPU, CUDA IPC for a
     * GPU); block tables always in shm (host-side metadata, read by workers) */
    const al_ops *ops;
    al_arena *weights, *kv, *tables;
    size_t manifest_offset, manifest_bytes;
    al_model *model;         /* config (+ host weights on the CPU backend) */
    al_vocab *vocab;         /* token bytes for stop strings / constraints; NULL = no tokenizer */
    al_weights wview;        /* the weight arena in the backend's layout (what the engine reads) */
    int32_t max_blocks_per_seq;
    size_t row_stride;

    /* engine thread */
    al_engine *engine;
    pthread_t thread;
    bool thread_started, mu_init;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    base_cmd *q_head, *q_tail; /* new commands (under mu) */
    bool stop;                  /* under mu */
    uint32_t queued;            /* under mu: commands not yet started */

    /* engine-thread state */
    base_cmd *waiting;          /* started later (sequence busy / engine full) */
    base_cmd *running;          /* waiting on the engine */
    base_seq *seqs;
    int32_t n_seqs, cap_seqs;
    uint64_t next_seq_id;
    base_lease *leases;         /* [cfg.base.max_leases] */
    int32_t n_leases;
    uint64_t next_lease_id, next_generation;
    uint64_t leases_expired, leases_dropped, requests;
    base_client *clients;       /* connections that said hello */
    int32_t n_clients;
    base_epoch *epochs;
    int32_t n_epochs;
    int32_t n_orphaned;         /* sequences whose owner went away */
    uint32_t gone[256];         /* recently closed connections (a command of theirs may still run) */
    uint32_t n_gone;            /* connections closed so far; gone[i % 256] */
    uint64_t seqs_reclaimed, seqs_freed;

    /* rpc */
    al_rpc_server *srv;
    int peers;                  /* atomic */
} base_ctx;

/* base_arenas.c */
al_err base_arenas_create(base_ctx *b);
void base_arenas_destroy(base_ctx *b);
void base_fill_attach(const base_ctx *b, alora_AttachReply *r);

/* base_loop.c */
al_err base_loop_start(base_ctx *b);
void base_loop_stop(base_ctx *b); /* stops the thread, fails queued calls */
void base_loop_free(base_ctx *b); /* leases, sequences, engine */
void base_loop_push(base_ctx *b, base_cmd *c);
uint32_t base_loop_queued(base_ctx *b);

/* base_seq.c (engine thread): start a command; returns 1 when it completed (or failed) now, 0 when it
 * now waits on c->eseq, -1 when it cannot start yet (sequence busy, engine full): retry later. */
int base_cmd_start(base_ctx *b, base_cmd *c);
/* c->eseq finished: continue or complete the command. Returns 1 when completed, 0 when still running. */
int base_cmd_finish(base_ctx *b, base_cmd *c);
base_seq *base_seq_find(base_ctx *b, uint64_t id);
/* Releases a sequence's engine sequence and removes it (the last one moves into its slot). */
void base_seq_drop(base_ctx *b, uint64_t id);
int base_eseq_done(base_ctx *b, int32_t eseq);
void base_seqs_free(base_ctx *b);

/* base_lease.c (engine thread) */
al_err base_leases_init(base_ctx *b);
void base_leases_free(base_ctx *b);
/* Pins [0, n_tokens) of engine sequence eseq and records a lease held by pipe. */
al_err base_lease_grant(base_ctx *b, int32_t eseq, int32_t n_tokens, uint32_t pipe, uint32_t ttl_ms,
                        alora_LeaseReply *rep);
al_err base_lease_release(base_ctx *b, uint64_t lease_id);
int base_lease_drop_pipe(base_ctx *b, uint32_t pipe);
/* Releases expired leases; returns seconds until the next expiry (or a large value). */
double base_lease_expire(base_ctx *b, double now);

/* base_owner.c (engine thread): sequence ownership. A sequence belongs to the connection that made
 * it and, once that connection said BASE_HELLO, to its client id. */
void base_owner_set(base_ctx *b, base_seq *s, uint32_t pipe);
/* The connection closed: its sequences are orphaned (freed after base.seq_grace_ms). */
void base_owner_peer_gone(base_ctx *b, uint32_t pipe);
/* Frees orphans past their grace; returns seconds until the next one is due (or a large value). */
double base_owner_expire(base_ctx *b, double now);
al_err base_hello(base_ctx *b, uint32_t pipe, const alora_HelloRequest *rq, alora_HelloReply *rp, al_pbmem *m);
void base_owner_free(base_ctx *b);

/* base_server.c */
al_err base_server_start(base_ctx *b);
void base_server_stop(base_ctx *b);
void base_stats_fill(base_ctx *b, alora_BaseStatsReply *r);

/* base_config.c */
al_err base_config_load(const char *path, base_ctx *b);
al_err base_random_hex(char *out, size_t n_bytes);

#endif
