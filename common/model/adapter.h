/* adapter.h: PEFT LoRA / aLoRA adapters and the aLoRA activation matcher. */
#ifndef AL_ADAPTER_H
#define AL_ADAPTER_H

#include <stdint.h>

#include "common/err.h"
#include "common/model/model.h"

typedef enum al_target {
    AL_T_Q = 0,
    AL_T_K,
    AL_T_V,
    AL_T_O,
    AL_T_GATE,
    AL_T_UP,
    AL_T_DOWN,
    AL_T_COUNT
} al_target;

/* "q_proj", "k_proj", ... */
const char *al_target_module(al_target t);
/* in/out features of target t's projection in a model. */
void al_target_dims(const al_model_config *c, al_target t, int32_t *in, int32_t *out);

/* Parses "q", "q_proj", "gate", "gate_proj", ...; -1 if unknown. */
int al_target_parse(const char *s);

typedef struct al_lora_mod {
    int32_t r;      /* 0 = this module is not adapted */
    int32_t in, out;
    float scale;    /* alpha/r or alpha/sqrt(r) (rsLoRA) */
    float *A;       /* [r, in] */
    float *B;       /* [out, r] */
    float *bias;    /* [out] lora_B.bias or NULL */
} al_lora_mod;

typedef struct al_adapter {
    char name[128];
    int32_t n_layers;
    al_lora_mod *mods;     /* [n_layers * AL_T_COUNT], index l*AL_T_COUNT + t */
    int32_t *invocation;   /* alora_invocation_tokens, NULL for plain LoRA */
    int32_t n_invocation;
    char *invocation_string; /* legacy IBM adapters: resolved once a tokenizer exists */
    uint64_t digest;       /* content digest (xxh64 of config + tensors) */
    int32_t max_rank;
    void *buf;             /* owns A/B/bias storage */
} al_adapter;

/* Writes a PEFT adapter_config.json (LoRA, CAUSAL_LM) at path: rank r, lora_alpha, the adapted
 * projections (targets [AL_T_COUNT], 1 = adapted), rsLoRA, and alora_invocation_tokens when
 * n_inv > 0 (an aLoRA). base_model: base_model_name_or_path. */
al_err al_adapter_write_config(const char *path, const char *base_model, int r, double alpha,
                               const int targets[AL_T_COUNT], int rslora, const int32_t *inv, int n_inv);

/* Loads DIR/adapter_config.json + DIR/adapter_model.safetensors against a model config. */
al_err al_adapter_load(const char *dir, const al_model_config *cfg, al_adapter **out);
void al_adapter_free(al_adapter *a);

static inline const al_lora_mod *al_adapter_mod(const al_adapter *a, int layer, al_target t)
{
    return &a->mods[layer * AL_T_COUNT + t];
}

/* Index of the first token of the LAST occurrence of inv in toks (overlaps allowed), -1 if none. */
int32_t al_alora_find_start(const int32_t *toks, int32_t n, const int32_t *inv, int32_t n_inv);

/* Activation start for a prompt: 0 for plain LoRA, the matcher for aLoRA, -1 = no match. */
int32_t al_adapter_activation_start(const al_adapter *a, const int32_t *toks, int32_t n);

#endif
