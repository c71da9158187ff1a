/* engine.h: the inference engine: sequences over a paged KV pool, chunked prefill, decode and
 * continuous batching with per-sequence aLoRA adapters and activation starts. */
#ifndef AL_ENGINE_H
#define AL_ENGINE_H

#include <stdint.h>

#include "common/err.h"
#include "common/model/adapter.h"
#include "common/model/model.h"
#include "common/util.h"
#include "engine/kvpool.h"
#include "kernels/kernels.h"

#define AL_ACT_AUTO (-2) /* activation start from the adapter's invocation matcher */
#define AL_ACT_NONE (-1) /* no match: base model everywhere */
#define AL_MAX_TOP_LOGPROBS 20

typedef struct al_sampling {
    float temperature; /* <= 0: greedy */
    int32_t top_k;     /* 0 = off */
    float top_p;       /* 1 = off */
    uint64_t seed;
} al_sampling;

typedef struct al_engine_opts {
    int32_t block_size;       /* tokens per KV block (default 16) */
    int32_t n_blocks;         /* KV pool size in blocks (default: enough for max_seqs * 2048 tokens) */
    int32_t max_batch_tokens; /* tokens per forward step, prefill chunk budget (default 512) */
    int32_t max_seqs;         /* sequences alive at once (default 64) */
    const al_ops *ops;        /* backend (NULL = CPU) */
    void *kv_mem;             /* optional external KV storage (an arena) of al_kvpool_bytes bytes */
    const al_weights *weights; /* optional base weights already in backend memory (e.g. a weight
                                  arena bound with al_weights_backend_bind); not owned. NULL: the
                                  engine uses the model's host weights (uploaded if the backend
                                  needs its own copy) */
    int32_t prefix_cache;     /* 1: reuse the KV of identical token prefixes across sequences */
    int32_t threads;          /* CPU threads of the backend (process-wide): n > 0, -1 = all cores,
                                 0 = leave the process's setting */
} al_engine_opts;

typedef struct al_request {
    const int32_t *tokens;  /* [n_tokens] prompt (after the read-only prefix, if any) */
    int32_t n_tokens;
    int32_t adapter;        /* engine adapter slot, -1 = none */
    int32_t act_start;      /* AL_ACT_AUTO, AL_ACT_NONE, or an absolute position */
    int32_t max_tokens;     /* tokens to generate (0 = prefill only) */
    al_sampling sampling;
    int32_t top_logprobs;   /* 0..AL_MAX_TOP_LOGPROBS per generated token */
    int32_t ignore_eos;     /* keep generating past EOS */
    float *prompt_logits;   /* optional out [n_tokens, V]: logits at every prompt position */
    float *gen_logits;      /* optional out [max_tokens, V]: the logits each generated token came from */
    /* Read-only prefix (the worker case): positions [0, prefix.n) already in another pool. */
    al_kv_seg prefix;
    const int32_t *prefix_tokens; /* [prefix.n] for AL_ACT_AUTO matching; may be NULL */
} al_request;

typedef enum al_finish { AL_FINISH_NONE = 0, AL_FINISH_LENGTH, AL_FINISH_STOP, AL_FINISH_ERROR } al_finish;

typedef struct al_result {
    const int32_t *tokens;       /* [n_tokens] generated */
    const float *logprobs;       /* [n_tokens] log-probability of each (log-softmax of the raw logits) */
    int32_t n_tokens;
    const al_topk_entry *top;    /* [n_tokens, top_logprobs] */
    int32_t top_logprobs;
    int32_t activation_start;    /* absolute, -1 = none */
    al_finish finish;
    al_err error;
    double prefill_ms, decode_ms;
    int32_t computed_tokens;     /* tokens whose KV this sequence computed */
    int32_t cached_tokens;       /* prompt tokens whose KV came from the prefix cache */
} al_result;

typedef struct al_engine_stats {
    int32_t blocks_total, blocks_used, blocks_free, blocks_cached; /* cached: unreferenced, kept */
    int32_t sequences, running;
    uint64_t cache_hit_blocks, cache_miss_blocks, cache_hit_tokens;
    uint64_t prefill_tokens, decode_tokens, steps;
} al_engine_stats;

typedef struct al_engine al_engine;

al_err al_engine_create(const al_model *m, const al_engine_opts *o, al_engine **out);
void al_engine_free(al_engine *e);

/* Registers an adapter (not copied: it must outlive the engine); returns its slot. */
al_err al_engine_add_adapter(al_engine *e, const al_adapter *a, int32_t *slot);

/* Queues a sequence; it runs on the next steps. */
al_err al_engine_submit(al_engine *e, const al_request *r, int32_t *seq_id);
/* One batched forward step over every runnable sequence. *n_active = sequences still running. */
al_err al_engine_step(al_engine *e, int32_t *n_active);
/* Steps until no sequence is running. */
al_err al_engine_run(al_engine *e);
/* Results of a sequence (valid until the next call that changes it or its release). */
al_err al_engine_result(const al_engine *e, int32_t seq_id, al_result *out);
int al_engine_done(const al_engine *e, int32_t seq_id);
/* Continue a finished sequence: append tokens to prefill and/or generate more. */
al_err al_engine_continue(al_engine *e, int32_t seq_id, const int32_t *tokens, int32_t n, int32_t max_tokens);
/* Frees a sequence and its KV blocks. */
void al_engine_release(al_engine *e, int32_t seq_id);

/* Introspection (tests, base service). */
const al_kvpool *al_engine_kvpool(const al_engine *e);
const al_model *al_engine_model(const al_engine *e);
/* The sequence's own KV as a segment (positions [prefix.n, prefix.n + n_computed)). */
al_err al_engine_seq_kv(const al_engine *e, int32_t seq_id, al_kv_seg *seg);

/* Pins the blocks holding positions [0, n_tokens) of a sequence that is not running: each gets
 * one more reference so it outlives the sequence (a lease). Writes the block ids (at most cap). */
al_err al_engine_pin(al_engine *e, int32_t seq_id, int32_t n_tokens, int32_t *blocks, int32_t cap,
                     int32_t *n_blocks);
/* Drops the references al_engine_pin took. */
void al_engine_unpin(al_engine *e, const int32_t *blocks, int32_t n_blocks);
/* The sequence's own tokens (prompt and generated, committed or not) and how many have KV. */
al_err al_engine_seq_tokens(const al_engine *e, int32_t seq_id, const int32_t **toks, int32_t *n,
                            int32_t *n_computed);
void al_engine_stats_get(const al_engine *e, al_engine_stats *st);

/* Base weights in a backend's own format, in one buffer (engine/weights.c): the layout is a
 * function of the config and the backend alone, so a process that maps the buffer (a worker
 * attaching the weight arena) rebuilds the same view. For a host-memory backend it is the
 * canonical al_weights_layout. */
size_t al_weights_backend_bytes(const al_model_config *c, const al_ops *ops);
/* Writes m's host weights into dst (backend memory, 256-byte aligned, al_weights_backend_bytes). */
al_err al_weights_backend_store(const al_model *m, const al_ops *ops, void *dst);
/* Points w into dst (allocates w->layers: free with al_weights_unbind). */
al_err al_weights_backend_bind(const al_model_config *c, const al_ops *ops, void *dst, al_weights *w);

/* Loads a checkpoint straight into one buffer in the backend's layout, one tensor at a time (never
 * a full f32 copy: a bf16 8B model needs 16 GB, not 48). The buffer comes from alloc(ctx, bytes)
 * (e.g. a shared arena; it stays the caller's) or, alloc NULL, from ops->alloc (free with
 * ops->free). *model is config-only unless the backend reads the canonical layout. */
al_err al_weights_backend_load(const char *dir, const al_ops *ops, al_alloc_fn alloc, void *alloc_ctx,
                               al_model **model, void **buf);

/* The backend for a model directory: device "auto|cpu|cpu-bf16|cuda", weights "auto|f32|bf16".
 * CUDA keeps weights in bf16 (weights "f32" is refused there); on the CPU "auto" keeps a bf16
 * checkpoint in bf16 (cpu-bf16: half the memory, exact) and anything else in f32. */
al_err al_ops_for_model(const char *device, const char *weights, const char *model_dir, const al_ops **out);

/* Sampling (engine/sample.c) from raw logits [V] (not modified). */
int32_t al_sample(const float *logits, int32_t V, const al_sampling *s, al_rng *rng);

#endif
