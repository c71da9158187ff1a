/* wire.c: wire Sampling -> engine sampling, engine results -> wire TokenLogprobs. */
#include <stdlib.h>
#include <string.h>
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
    if (!(in->repetition_penalty >= 0) || in->repetition_penalty > 100)
        return ali_errf(AL_ERANGE, "sampling.repetition_penalty: %g out of range (0, 100] (0 = off)",
                        (double)in->repetition_penalty);
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

static const al_constraint_kind ali_kinds[] = {
    [alora_ConstraintKind_CONSTRAINT_NONE] = AL_CONSTRAINT_NONE,
    [alora_ConstraintKind_CONSTRAINT_REGEX] = AL_CONSTRAINT_REGEX,
    [alora_ConstraintKind_CONSTRAINT_CHOICE] = AL_CONSTRAINT_CHOICE,
    [alora_ConstraintKind_CONSTRAINT_JSON_SCHEMA] = AL_CONSTRAINT_JSON_SCHEMA,
    [alora_ConstraintKind_CONSTRAINT_JSON_OBJECT] = AL_CONSTRAINT_JSON_OBJECT,
};

al_err al_pb_get_gen_ctl(const alora_Sampling *in, const al_vocab *vocab, int32_t vocab_n, al_wire_ctl *w)
{
    memset(w, 0, sizeof *w);
    al_gen_ctl *c = &w->ctl;
    if (!(in->frequency_penalty >= -2 && in->frequency_penalty <= 2))
        return ali_errf(AL_EINVAL, "sampling.frequency_penalty: %g out of range [-2, 2]", (double)in->frequency_penalty);
    if (!(in->presence_penalty >= -2 && in->presence_penalty <= 2))
        return ali_errf(AL_EINVAL, "sampling.presence_penalty: %g out of range [-2, 2]", (double)in->presence_penalty);
    c->frequency_penalty = in->frequency_penalty;
    c->presence_penalty = in->presence_penalty;
    c->repetition_penalty = in->repetition_penalty == 1 ? 0 : in->repetition_penalty;
    c->min_tokens = (int32_t)(in->min_tokens < (1u << 20) ? in->min_tokens : (1u << 20));
    if (in->resume > (1u << 20))
        return ali_errf(AL_EINVAL, "sampling.resume: %u tokens is more than a sequence can hold", in->resume);
    c->resume = (int32_t)in->resume;
    c->max_total = (int32_t)(in->max_total < (1u << 24) ? in->max_total : (1u << 24));
    /* logit bias */
    const int32_t *ids;
    const float *vals;
    size_t ni = al_pb_i32(&in->logit_bias_ids, &ids), nv = al_pb_f32(&in->logit_bias_values, &vals);
    if (ni != nv)
        return ali_errf(AL_EINVAL, "sampling.logit_bias: %zu token ids but %zu values", ni, nv);
    if (ni > AL_WIRE_MAX_LOGIT_BIAS)
        return ali_errf(AL_EINVAL, "sampling.logit_bias: %zu entries > max %d", ni, AL_WIRE_MAX_LOGIT_BIAS);
    if (ni) {
        if (!(w->bias = malloc(ni * sizeof *w->bias)))
            return ali_errf(AL_ENOMEM, "out of memory");
        for (size_t i = 0; i < ni; i++) {
            if (ids[i] < 0 || ids[i] >= vocab_n) {
                al_pb_gen_ctl_free(w);
                return ali_errf(AL_EINVAL, "sampling.logit_bias: token %d is outside the vocabulary [0, %d)", ids[i],
                                vocab_n);
            }
            if (!(vals[i] >= -100 && vals[i] <= 100)) {
                al_pb_gen_ctl_free(w);
                return ali_errf(AL_EINVAL, "sampling.logit_bias: bias %g of token %d out of range [-100, 100]",
                                (double)vals[i], ids[i]);
            }
            w->bias[i] = (al_logit_bias){.token = ids[i], .bias = vals[i]};
        }
        c->logit_bias = w->bias;
        c->n_logit_bias = (int32_t)ni;
    }
    /* stop strings: "s1\0s2\0" */
    const uint8_t *sp;
    size_t sn = al_pb_bytes(&in->stop, &sp);
    for (size_t p = 0; p < sn;) {
        const uint8_t *z = memchr(sp + p, 0, sn - p);
        size_t l = z ? (size_t)(z - (sp + p)) : sn - p;
        if (!z || l == 0 || l > AL_WIRE_MAX_STOP_BYTES || w->ctl.n_stop == AL_WIRE_MAX_STOP) {
            al_pb_gen_ctl_free(w);
            return ali_errf(AL_EINVAL, "sampling.stop: at most %d strings of 1-%d bytes, each followed by a NUL",
                            AL_WIRE_MAX_STOP, AL_WIRE_MAX_STOP_BYTES);
        }
        w->stop[c->n_stop] = (const char *)sp + p;
        w->stop_len[c->n_stop++] = (int32_t)l;
        p += l + 1;
    }
    if (c->n_stop) {
        if (!vocab) {
            al_pb_gen_ctl_free(w);
            return ali_errf(AL_EUNSUPPORTED, "sampling.stop: this process has no tokenizer (router.tokenizer), "
                                             "which stop strings need");
        }
        c->stop = w->stop;
        c->stop_len = w->stop_len;
    }
    /* the constraint */
    if (in->constraint_kind != alora_ConstraintKind_CONSTRAINT_NONE) {
        if ((unsigned)in->constraint_kind >= AL_ARRAY_LEN(ali_kinds)) {
            al_pb_gen_ctl_free(w);
            return ali_errf(AL_EINVAL, "sampling.constraint_kind: %d is not a ConstraintKind", (int)in->constraint_kind);
        }
        if (!vocab) {
            al_pb_gen_ctl_free(w);
            return ali_errf(AL_EUNSUPPORTED, "sampling.constraint: this process has no tokenizer (router.tokenizer), "
                                             "which structured outputs need");
        }
        const uint8_t *cp;
        size_t cn = al_pb_bytes(&in->constraint, &cp);
        al_constraint_spec spec = {.kind = ali_kinds[in->constraint_kind], .text = (const char *)cp, .len = cn};
        al_err e = al_grammar_get(&spec, vocab, &c->grammar);
        if (e != AL_OK) {
            al_pb_gen_ctl_free(w);
            return ali_errctx(e, "sampling.constraint");
        }
    }
    return AL_OK;
}

void al_pb_gen_ctl_free(al_wire_ctl *w)
{
    if (w->ctl.grammar)
        al_grammar_unref(w->ctl.grammar);
    free(w->bias);
    memset(w, 0, sizeof *w);
}

al_err al_pb_set_stop(alora_Sampling *s, al_pbmem *m, const char *const *stop, const size_t *len, int n)
{
    if (n > AL_WIRE_MAX_STOP)
        return ali_errf(AL_ERANGE, "stop: %d strings > max %d", n, AL_WIRE_MAX_STOP);
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        if (len[i] == 0 || len[i] > AL_WIRE_MAX_STOP_BYTES)
            return ali_errf(AL_ERANGE, "stop[%d]: %zu bytes (1-%d)", i, len[i], AL_WIRE_MAX_STOP_BYTES);
        if (memchr(stop[i], 0, len[i]))
            return ali_errf(AL_EINVAL, "stop[%d]: contains a NUL character", i);
        total += len[i] + 1;
    }
    if (!n)
        return AL_OK;
    char *buf = malloc(total), *p = buf;
    if (!buf)
        return ali_errf(AL_ENOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        memcpy(p, stop[i], len[i]);
        p += len[i];
        *p++ = 0;
    }
    al_err e = al_pb_set_bytes(&s->stop, m, buf, total);
    free(buf);
    return e;
}
