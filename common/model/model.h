/* model.h: HF model config (Llama, Granite) and the f32 weight view the kernels read. */
#ifndef AL_MODEL_H
#define AL_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/model/safetensors.h"

typedef enum al_arch { AL_ARCH_LLAMA = 0, AL_ARCH_GRANITE = 1 } al_arch;

#define AL_MAX_EOS 8

typedef struct al_model_config {
    al_arch arch;
    char name[128];          /* _name_or_path or directory name */
    int32_t vocab_size;      /* V */
    int32_t hidden_size;     /* H */
    int32_t intermediate_size; /* I */
    int32_t n_layers;        /* L */
    int32_t n_heads;         /* nh */
    int32_t n_kv_heads;      /* nkv (GQA: nh % nkv == 0) */
    int32_t head_dim;        /* hd (config head_dim or H/nh) */
    int32_t max_position_embeddings;
    float rms_eps;
    float rope_theta;
    /* rope_scaling type llama3 (rope_llama3 = 1) */
    int32_t rope_llama3;
    float rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    int32_t rope_original_max_pos;
    int32_t tie_word_embeddings;
    /* Granite multipliers; Llama uses 1, 1/sqrt(hd), 1, 1. */
    float embedding_multiplier;
    float attention_multiplier; /* softmax scale */
    float residual_multiplier;
    float logits_scaling;       /* logits are divided by this */
    int32_t bos_token_id;       /* -1 if none */
    int32_t eos_token_ids[AL_MAX_EOS];
    int32_t n_eos;
    al_dtype dtype;             /* dtype of the weights on disk */
} al_model_config;

/* Every pointer is f32, row-major, the HF nn.Linear layout [out, in]. */
typedef struct al_layer_weights {
    float *attn_norm; /* [H] */
    float *wq;        /* [nh*hd, H] */
    float *wk;        /* [nkv*hd, H] */
    float *wv;        /* [nkv*hd, H] */
    float *wo;        /* [H, nh*hd] */
    float *ffn_norm;  /* [H] */
    float *w_gate;    /* [I, H] */
    float *w_up;      /* [I, H] */
    float *w_down;    /* [H, I] */
} al_layer_weights;

typedef struct al_weights {
    float *embed;             /* [V, H] */
    al_layer_weights *layers; /* [L] */
    float *norm;              /* [H] */
    float *lm_head;           /* [V, H]; == embed when tied */
} al_weights;

typedef struct al_model {
    al_model_config cfg;
    al_weights w;
    void *base;      /* one contiguous buffer with every tensor (see al_weights_layout) */
    size_t bytes;
    int owns_base;   /* 1 when al_model_free must free base */
} al_model;

/* Parses DIR/config.json (strict: required keys, types, ranges; unsupported options rejected). */
al_err al_config_load(const char *dir, al_model_config *cfg);
al_err al_config_parse(const char *json_text, const char *what, al_model_config *cfg);

/* Canonical f32 layout of all weights of a config in one buffer: total bytes. Deterministic, so
 * a process that maps the buffer can rebuild the pointers from the config alone. */
size_t al_weights_layout_bytes(const al_model_config *cfg);
/* Points w's tensors into base (which must hold al_weights_layout_bytes bytes). */
al_err al_weights_bind(const al_model_config *cfg, void *base, al_weights *w);
/* Frees what al_weights_bind allocated (the layers array; never the buffer). */
void al_weights_unbind(al_weights *w);

typedef void *(*al_alloc_fn)(void *ctx, size_t bytes);

/* Loads config + weights from an HF directory. alloc (may be NULL = aligned malloc) provides the
 * one weight buffer, e.g. a shared-memory arena. */
al_err al_model_load(const char *dir, al_model **out);
al_err al_model_load_ex(const char *dir, al_alloc_fn alloc, void *alloc_ctx, al_model **out);
/* Binds a model view over an existing buffer (workers attaching to a weight arena). base NULL: a
 * config-only model (no host weights; an engine then needs al_engine_opts.weights). */
al_err al_model_view(const al_model_config *cfg, void *base, al_model **out);
void al_model_free(al_model *m);

/* Reads a checkpoint's weights one tensor at a time through an f32 buffer the size of the largest
 * tensor and hands each to put(ctx, dst, data, n, matrix), dst being that tensor's pointer in w (a
 * view in some other layout, e.g. al_weights_backend_bind): no full f32 copy is ever held. */
typedef void (*al_tensor_put_fn)(void *ctx, void *dst, const float *data, size_t n, int matrix);
al_err al_model_load_via(const char *dir, const al_model_config *cfg, const al_weights *w, al_tensor_put_fn put,
                         void *ctx);

/* The dtype of a checkpoint's weights on disk (its embedding's), without loading them. */
al_err al_model_weights_dtype(const char *dir, al_dtype *dt);

int al_model_is_eos(const al_model_config *cfg, int32_t tok);

#endif
