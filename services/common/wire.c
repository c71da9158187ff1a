/* wire.c: wire Sampling -> engine sampling, engine results -> wire TokenLogprobs. */
#include <sys/random.h>

#include "common/util.h"
#include "services/common/wire.h"

al_err al_pb_set_logprobs(alora_TokenLogprobs *lp, al_pbmem *m, const al_result *r, int32_t n_out, int32_t top_n)
{
    int32_t k = r->top_logprobs;
    if (top_n > k)
        top_n = k;
    lp->top_n = (uint32_t)(top_n > 0 ? top_n : 0);
    for (int32_t i = 0; i < n_out && i < r->n_tokens; i++) {
        AL_TRY(al_pb_push_f32(&lp->logprob, m, r->logprobs[i]));
        for (int32_t j = 0; j < top_n; j++) {
            const al_topk_entry *e = &r->top[(size_t)i * k + j];
            AL_TRY(al_pb_push_i32(&lp->top_ids, m, e->id));
            AL_TRY(al_pb_push_f32(&lp->top_logprobs, m, e->logprob));
        }
    }
    return AL_OK;
}

al_err al_pb_get_sampling(const alora_Sampling *in, int32_t default_max_tokens, al_sampling *out,
                          int32_t *max_tokens, int32_t *top_n)
{
    if (in->top_logprobs > AL_MAX_TOP_LOGPROBS)
        return ali_errf(AL_ERANGE, "sampling.top_logprobs: %u > max %d", in->top_logprobs, AL_MAX_TOP_LOGPROBS);
    if (in->min_p != 0)
        return ali_errf(AL_EUNSUPPORTED, "sampling.min_p: not supported by the engine (use 0)");
    if (in->repetition_penalty != 0 && in->repetition_penalty != 1)
        return ali_errf(AL_EUNSUPPORTED, "sampling.repetition_penalty: not supported by the engine (use 0 or 1)");
    if (!(in->temperature >= 0) || in->temperature > 100)
        return ali_errf(AL_ERANGE, "sampling.temperature: %g out of range [0, 100]", (double)in->temperature);
    if (in->top_k > 1000000)
        return ali_errf(AL_ERANGE, "sampling.top_k: %u out of range [0, 1000000]", in->top_k);
    if (!(in->top_p >= 0))
        return ali_errf(AL_ERANGE, "sampling.top_p: %g must be >= 0", (double)in->top_p);
    *out = (al_sampling){.temperature = in->temperature, .top_k = (int32_t)in->top_k,
                         .top_p = (in->top_p <= 0 || in->top_p >= 1) ? 1.0f : in->top_p, .seed = in->seed};
    if (out->seed == 0 && getrandom(&out->seed, sizeof out->seed, 0) != (ssize_t)sizeof out->seed)
        out->seed = (uint64_t)(al_now() * 1e9);
    *max_tokens = in->max_tokens ? (int32_t)(in->max_tokens < (1u << 20) ? in->max_tokens : (1u << 20))
                                 : default_max_tokens;
    *top_n = (int32_t)in->top_logprobs;
    return AL_OK;
}
