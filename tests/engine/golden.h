/* golden.h: loads the PEFT/transformers goldens of tests/fixtures/oracle for the engine tests. */
#ifndef AL_TEST_GOLDEN_H
#define AL_TEST_GOLDEN_H

#include <jansson.h>

#include "common/model/adapter.h"
#include "common/model/model.h"
#include "common/model/safetensors.h"
#include "engine/engine.h"

#define GOLDEN_DIR "tests/fixtures/oracle"
#define GOLDEN_MAX 64

typedef struct golden_case {
    const char *name, *model, *adapter;
    int32_t prompt[512];
    int32_t n_prompt;
    int32_t act_start; /* -1 = null */
    int32_t greedy[8];
    const float *prompt_logits; /* [n_prompt, V] */
    const float *gen_logits;    /* [8, V] */
    float tol;
    al_model *m;
    al_adapter *a;
} golden_case;

typedef struct golden {
    json_t *root;
    al_st *st;
    golden_case cases[GOLDEN_MAX];
    int n_cases;
    const char *mixed[GOLDEN_MAX];
    int n_mixed;
    al_model *models[8];
    const char *model_names[8];
    int n_models;
    al_adapter *adapters[8];
    const char *adapter_names[8];
    int n_adapters;
} golden;

int golden_load(golden *g);
void golden_free(golden *g);
golden_case *golden_find(golden *g, const char *name);
float golden_maxdiff(const float *a, const float *b, size_t n);
/* The worker's read-only-prefix path for case c on ops (NULL = CPU); see golden.c.inc. */
float *golden_readonly_prefix(const golden_case *c, const al_ops *ops, int32_t toks[8]);

#endif
