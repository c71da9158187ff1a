/* vocab.h: the constraint vocabulary of a model's tokenizer, for stop strings and structured outputs
 * in the base and the workers. */
#ifndef AL_SERVICES_VOCAB_H
#define AL_SERVICES_VOCAB_H

#include "common/model/model.h"
#include "common/text/tokenizer.h"
#include "engine/constrain/vocab.h"
#include "services/common/cluster_cfg.h"

/* Every id of the model's vocabulary (mc->vocab_size; ids past the tokenizer's and special tokens
 * have no bytes and are never allowed by a grammar) with the bytes it stands for inside a text
 * (al_tokenizer_token_bytes); EOS = the model config's EOS ids and the tokenizer's. mc may be NULL
 * (the tokenizer's size). Free with al_vocab_free. */
al_err al_vocab_from_tokenizer(const al_tokenizer *t, const al_model_config *mc, al_vocab **out);

/* A service's vocabulary: the tokenizer of the cluster config (router.tokenizer, default
 * base.model) for the model mc; NULL (logged: stop strings and structured outputs are then
 * refused) when there is none or it does not load. */
al_vocab *al_service_vocab(const al_cluster_cfg *cfg, const al_model_config *mc);

#endif
