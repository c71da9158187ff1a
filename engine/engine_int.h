/* engine_int.h: engine internals shared by forward.c, sched.c and sample.c. */
#ifndef AL_ENGINE_INT_H
#define AL_ENGINE_INT_H

#include "engine/engine.h"
#include "engine/prefix.h"

#define ALI_MAX_ADAPTERS 64
#define ALI_LOGIT_ROWS 32 /* rows of logits computed per lm_head matmul */

typedef struct ali_seq {
    int used;
    int32_t *toks;   /* [n_toks] own tokens (after the prefix): prompt then generated */
    int32_t n_toks, cap_toks;
    int32_t n_computed; /* own tokens whose KV is in the pool */
    int32_t prompt_end; /* own tokens that were prompt (prompt_logits rows) */
    int32_t *blocks;    /* [n_blocks] own block table */
    int32_t n_blocks, cap_blocks;
    al_kv_seg prefix;   /* read-only prefix */
    int32_t adapter;    /* slot or -1 */
    int32_t act_start;  /* absolute, -1 none */
    int32_t gen_left;
    al_sampling sampling;
    al_rng rng;
    int32_t top_logprobs;
    int32_t ignore_eos;
    int32_t *gen;       /* [n_gen] generated tokens */
    float *lp;          /* [n_gen] log-probability of each generated token (raw logits) */
    al_topk_entry *top; /* [n_gen, top_logprobs] */
    int32_t n_gen, cap_gen;
    float *prompt_logits;
    float *gen_logits;
    al_finish finish;
    al_err error;
    double t_start, t_first, t_end;
    int32_t computed_tokens;
    int32_t cached_tokens;
    uint64_t chain;     /* prefix-cache chain value after n_hashed full blocks */
    int32_t n_hashed;
    uint64_t order;
} ali_seq;

/* Per-step scratch, sized for max_batch_tokens rows. */
typedef struct ali_runstate {
    float *x;      /* [T, H] residual stream */
    float *xn;     /* [T, H] normed */
    float *q;      /* [T, nh*hd] */
    float *k;      /* [T, nkv*hd] */
    float *v;      /* [T, nkv*hd] */
    float *att;    /* [T, nh*hd] */
    float *proj;   /* [T, H] projection output before the residual add */
    float *gate;   /* [T, I] */
    float *up;     /* [T, I] */
    float *lora_tmp; /* [T, max rank] */
    float *hout;   /* [T, H] final normed hidden of the output rows */
    float *logits; /* [ALI_LOGIT_ROWS, V] */
    float *logits_host; /* [ALI_LOGIT_ROWS, V] host copy for sampling */
    float *inv_freq; /* [hd/2] host */
    float *rope_cs;  /* [T, hd] host cos/sin table of the step's positions */
    float *fused;    /* [nh*hd + 2*nkv*hd + 2*I] one-row fused QKV / gate-up output */
    int32_t lora_cap; /* max rank the lora_tmp fits */
} ali_runstate;

typedef struct ali_lora_group {
    const al_adapter *a;
    al_row_range *ranges; /* [n_ranges] */
    int32_t n_ranges;
} ali_lora_group;

typedef struct ali_batch {
    int32_t T;
    const int32_t *ids; /* [T] */
    const int32_t *pos; /* [T] absolute positions */
    const al_seq_view *views;
    int32_t n_views;
    const ali_lora_group *groups;
    int32_t n_groups;
    const int32_t *out_rows; /* [n_out] rows whose final hidden state is wanted */
    int32_t n_out;
} ali_batch;

struct al_engine {
    const al_model *m;
    const al_ops *ops;
    al_weights w;          /* the model's weights in backend memory and format */
    int own_w;             /* 1 when w.layers was bound here (freed with the engine) */
    void *w_buf;           /* backend copy of the weights (al_weights_backend_*), NULL = none */
    al_lora_mod *amods[ALI_MAX_ADAPTERS]; /* adapters' modules in backend memory */
    void *kv_owned;        /* backend KV storage allocated by the engine */
    al_engine_opts o;
    al_kv_geom g;
    al_kvpool pool;
    ali_pcache *pc; /* NULL when the prefix cache is off */
    ali_runstate rs;
    uint64_t n_prefill_tokens, n_decode_tokens, n_steps;
    const al_adapter *adapters[ALI_MAX_ADAPTERS];
    int32_t n_adapters;
    ali_seq *seqs; /* [max_seqs] */
    uint64_t next_order;
    /* step scratch */
    int32_t *ids, *pos, *out_rows, *out_seq, *out_idx;
    al_seq_view *views;
    int32_t *view_seq;
    ali_lora_group groups[ALI_MAX_ADAPTERS];
    al_row_range *ranges; /* [max_seqs] */
};

al_err ali_runstate_init(ali_runstate *rs, const al_ops *ops, const al_model_config *c, int32_t T, int32_t max_rank);
void ali_runstate_free(ali_runstate *rs, const al_ops *ops);
/* Backend copies of the model's weights / an adapter's modules (CPU: the same pointers). */
al_err ali_weights_upload(al_engine *e);
void ali_weights_release(al_engine *e);
al_err ali_adapter_upload(al_engine *e, const al_adapter *a, al_lora_mod **out);
void ali_adapter_release(al_engine *e, const al_adapter *a, al_lora_mod *mods);
/* Batched forward: writes the final normed hidden state of b->out_rows into rs->hout [n_out, H]. */
void ali_forward(al_engine *e, const ali_batch *b);
/* logits [n, V] for n <= ALI_LOGIT_ROWS rows of hidden [n, H]. */
void ali_lm_head(al_engine *e, const float *hidden, int32_t n, float *logits);

#endif
