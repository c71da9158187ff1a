/* wire.h: conversions between wire messages (proto/alora.proto) and the engine's types, shared by the
 * base and the worker. */
#ifndef AL_WIRE_H
#define AL_WIRE_H

#include <stdint.h>

#include "common/ipc/rpc.h"
#include "engine/engine.h"

/* Checks a wire Sampling message and converts it for the engine (errors name the field). seed 0
 * picks a random seed; max_tokens 0 takes default_max_tokens. */
al_err al_pb_get_sampling(const alora_Sampling *in, int32_t default_max_tokens, al_sampling *out,
                          int32_t *max_tokens, int32_t *top_n);
/* Fills a TokenLogprobs message from an engine result: the log-probability of each of the first
 * n_out generated tokens and top_n alternatives per token (top_n <= r->top_logprobs). */
al_err al_pb_set_logprobs(alora_TokenLogprobs *lp, al_pbmem *m, const al_result *r, int32_t n_out, int32_t top_n);

#endif
