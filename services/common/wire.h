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
/* The generation controls of a wire Sampling message for the engine: logit bias, penalties,
 * min_tokens, stop strings, and the constraint compiled for vocab (al_grammar_get: cached by hash).
 * w->ctl points into `in` (valid while the message lives) and into *w; al_pb_gen_ctl_free releases
 * it. vocab may be NULL (a process without a tokenizer): stop strings and constraints are then
 * refused, naming why. Errors name the field. */
#define AL_WIRE_MAX_STOP 16
#define AL_WIRE_MAX_STOP_BYTES 256
#define AL_WIRE_MAX_LOGIT_BIAS 300
typedef struct al_wire_ctl {
    al_gen_ctl ctl;
    const char *stop[AL_WIRE_MAX_STOP];  /* into the message's stop bytes */
    int32_t stop_len[AL_WIRE_MAX_STOP];
    al_logit_bias *bias;                 /* [ctl.n_logit_bias] */
} al_wire_ctl;
al_err al_pb_get_gen_ctl(const alora_Sampling *in, const al_vocab *vocab, int32_t vocab_n, al_wire_ctl *w);
void al_pb_gen_ctl_free(al_wire_ctl *w);
/* Stop strings into Sampling.stop (each followed by a NUL; a string with a NUL byte is refused). */
al_err al_pb_set_stop(alora_Sampling *s, al_pbmem *m, const char *const *stop, const size_t *len, int n);

/* Fills a TokenLogprobs message from an engine result: the log-probability of each of the first
 * n_out generated tokens and top_n alternatives per token (top_n <= r->top_logprobs). */
al_err al_pb_set_logprobs(alora_TokenLogprobs *lp, al_pbmem *m, const al_result *r, int32_t n_out, int32_t top_n);

#endif
