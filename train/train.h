/* train.h: aLoRA / LoRA fine-tuning: trainable adapter parameters with their gradients and
 * optimizer state (al_tlora), and the trainer that runs forward + backward of one example,
 * back-propagating through the post-activation positions only (al_trainer). */
#ifndef AL_TRAIN_H
#define AL_TRAIN_H

#include <stdint.h>

#include "common/err.h"
#include "common/model/adapter.h"
#include "common/model/model.h"
#include "kernels/kernels.h"

/* One trainable LoRA module: y += scale * B (A x). */
typedef struct al_tmod {
    int32_t r; /* 0 = not adapted */
    int32_t in, out;
    float scale;
    float *A, *B;   /* [r, in], [out, r]: views into al_tlora.w */
    float *gA, *gB; /* the same shapes, views into al_tlora.g */
} al_tmod;

typedef struct al_tlora_opts {
    int targets[AL_T_COUNT]; /* 1 = adapt this projection */
    int32_t rank;
    float alpha;
    int rslora;              /* scale alpha / sqrt(r) instead of alpha / r */
    const int32_t *inv;      /* alora_invocation_tokens; NULL = plain LoRA */
    int32_t n_inv;
} al_tlora_opts;

typedef struct al_tlora {
    int32_t n_layers;
    al_tmod *mods; /* [n_layers * AL_T_COUNT], index l * AL_T_COUNT + t */
    int targets[AL_T_COUNT];
    int32_t rank;
    float alpha;
    int rslora;
    int32_t *inv; /* [n_inv], NULL = plain LoRA */
    int32_t n_inv;
    size_t n;               /* parameters in all */
    float *w, *g, *m, *v;   /* [n] parameters, gradients, AdamW first / second moments */
    int64_t step;           /* optimizer steps taken */
} al_tlora;

/* PEFT's initialisation: A Kaiming-uniform (a = sqrt(5): U(-1/sqrt(in), 1/sqrt(in))), B zero.
 * Errors name a bad rank, alpha, target set or invocation. */
al_err al_tlora_init(const al_model_config *c, const al_tlora_opts *o, uint64_t seed, al_tlora **out);
/* Trainable copy of a loaded adapter (one rank and alpha for every module; no lora_B.bias). */
al_err al_tlora_from_adapter(const al_model_config *c, const al_adapter *a, al_tlora **out);
void al_tlora_free(al_tlora *t);
/* Writes DIR/adapter_config.json and DIR/adapter_model.safetensors (PEFT layout, f32), creating
 * DIR when needed. */
al_err al_tlora_save(const al_tlora *t, const al_model_config *c, const char *dir);
/* Optimizer state next to a saved adapter: PATH holds m, v and the step (safetensors). */
al_err al_tlora_save_state(const al_tlora *t, const char *path);
al_err al_tlora_load_state(al_tlora *t, const char *path);

void al_tlora_zero_grad(al_tlora *t);
/* L2 norm of all gradients; al_tlora_scale_grad multiplies them by f. */
double al_tlora_grad_norm(const al_tlora *t);
void al_tlora_scale_grad(al_tlora *t, float f);
/* w -= lr * g */
void al_tlora_sgd(al_tlora *t, float lr);
/* torch.optim.AdamW: decoupled weight decay, bias-corrected moments. */
void al_tlora_adamw(al_tlora *t, float lr, float beta1, float beta2, float eps, float weight_decay);

/* Learning-rate schedule (HF get_{linear,cosine}_schedule_with_warmup): the factor at `step`
 * (0-based) of `total`. cosine = 0: linear decay. */
double al_train_lr_factor(int64_t step, int64_t warmup, int64_t total, int cosine);

typedef struct al_trainer al_trainer;

/* A trainer for model m on ops (the f32 CPU backend: canonical weights; a backend without the
 * training ops is refused with "not on this backend"). */
al_err al_trainer_create(const al_model *m, const al_ops *ops, al_trainer **out);
void al_trainer_free(al_trainer *tr);

typedef struct al_train_result {
    double nll;        /* sum over the target tokens of -log p */
    int32_t n_targets;
    int32_t act_start; /* first adapted position (0 for plain LoRA) */
    int32_t n_grad_rows; /* positions back-propagated through */
    int32_t n_correct; /* target tokens that are the argmax of their logits (teacher-forced) */
    int32_t choice;    /* the first target position's argmax among the trainer's choices (-1: none set) */
} al_train_result;

/* One example: ids [n] = prompt (ids[0 .. n_prompt-1]) then targets; the loss is the next-token
 * loss at the target positions. Adds gscale * d(sum nll)/d(A, B) to t->g when backward = 1. The
 * adapter is active from the activation start s (the last occurrence of t's invocation in ids,
 * as PEFT finds it; 0 for plain LoRA): positions < s run the base weights without saving anything
 * (their K/V are constants) and only positions >= s are back-propagated through. */
al_err al_trainer_example(al_trainer *tr, al_tlora *t, const int32_t *ids, int32_t n, int32_t n_prompt, float gscale,
                          int backward, al_train_result *res);

/* One example of a batch: ids [n] = prompt (ids[0 .. n_prompt-1]) then targets. */
typedef struct al_train_ex {
    const int32_t *ids;
    int32_t n, n_prompt;
} al_train_ex;

/* Several examples with one adapter (an optimizer step's): res[i] is example i's, the gradients the
 * sum of every example's (as al_trainer_example on each in turn, up to the rounding of a different
 * order of additions). Examples with the same activation start and the same tokens before it (a
 * shared conversation) run together: the prefix once, their suffix rows stacked so that every
 * product over the frozen weights reads them once for all, attention per example over the shared
 * prefix K/V. Results do not depend on the thread count. An invalid example is an error naming it
 * (nothing computed). */
al_err al_trainer_batch(al_trainer *tr, al_tlora *t, const al_train_ex *ex, int32_t n_ex, float gscale, int backward,
                        al_train_result *res);

/* A closed set of answers (ids [n], copied; n = 0 clears): al_train_result.choice is then the one
 * of them with the largest logit at the first target position, as constrained decoding picks. */
al_err al_trainer_set_choices(al_trainer *tr, const int32_t *ids, int32_t n);

/* Prefix positions whose K/V came from the trainer's prefix cache so far: consecutive examples
 * that share a conversation before their activation start compute it once; positions served by
 * the prefix store (below) count too. */
int64_t al_trainer_cached_positions(const al_trainer *tr);

/* Keeps the prefix K/V of examples across steps and epochs, up to `bytes` (0, the default: off;
 * a smaller limit than what is held drops everything held). A later example whose tokens before
 * its activation start begin with a kept prefix takes those positions' K/V from the store instead
 * of running the prefix forward again: the same values (bitwise when the prefix was computed in
 * one piece), since they depend on the base weights and those tokens only. Prefixes are kept in
 * the order they come until the limit; one over it is not kept (no eviction: epochs read the data
 * in a cycle). Plain LoRA has no prefix. */
al_err al_trainer_set_prefix_store(al_trainer *tr, size_t bytes);

typedef struct al_train_store_stats {
    int32_t entries;       /* prefixes kept */
    size_t bytes, limit;   /* held / at most */
    int64_t hit_positions; /* prefix positions served from the store */
    int64_t refused;       /* prefixes not kept: over the limit */
} al_train_store_stats;
void al_trainer_prefix_store_stats(const al_trainer *tr, al_train_store_stats *st);

/* Bytes the store needs for a prefix of n positions on the trainer's model. */
size_t al_trainer_prefix_bytes(const al_trainer *tr, int32_t n);

/* Bytes of the trainer's largest scratch so far (the activations saved for the backward and every
 * position's K/V, which also hold the prefix cache). */
size_t al_trainer_peak_bytes(const al_trainer *tr);

#endif
