/* vocab.c: the constraint vocabulary (token id -> bytes, EOS ids) of a model's tokenizer. */
#include <stdbool.h>
#include <stdlib.h>

#include "common/log.h"
#include "common/util.h"
#include "services/common/vocab.h"

al_err al_vocab_from_tokenizer(const al_tokenizer *t, const al_model_config *mc, al_vocab **out)
{
    *out = NULL;
    int32_t n = mc && mc->vocab_size > 0 ? mc->vocab_size : al_tokenizer_vocab_size(t);
    uint8_t **bytes = calloc((size_t)n, sizeof *bytes);
    int32_t *len = calloc((size_t)n, sizeof *len);
    int32_t eos[AL_MAX_EOS + 1], n_eos = 0;
    al_err e = bytes && len ? AL_OK : ali_errf(AL_ENOMEM, "vocab: out of memory");
    int32_t nt = al_tokenizer_vocab_size(t);
    for (int32_t id = 0; id < n && id < nt && e == AL_OK; id++) {
        char *b;
        size_t l;
        if (al_tokenizer_token_bytes(t, id, &b, &l) != AL_OK)
            continue; /* holes and special tokens: never text */
        bytes[id] = (uint8_t *)b;
        len[id] = (int32_t)l;
    }
    if (mc)
        for (int i = 0; i < mc->n_eos && n_eos < AL_MAX_EOS; i++)
            eos[n_eos++] = mc->eos_token_ids[i];
    int32_t te = al_tokenizer_eos(t);
    bool have = te < 0;
    for (int i = 0; i < n_eos && !have; i++)
        have = eos[i] == te;
    if (!have && te < n)
        eos[n_eos++] = te;
    if (e == AL_OK)
        e = al_vocab_new(n, (const uint8_t *const *)bytes, len, eos, n_eos, out);
    for (int32_t id = 0; bytes && id < n; id++)
        free(bytes[id]);
    free(bytes);
    free(len);
    return e;
}

al_vocab *al_service_vocab(const al_cluster_cfg *cfg, const al_model_config *mc)
{
    const char *dir = cfg->router.tokenizer ? cfg->router.tokenizer : cfg->base.model;
    al_tokenizer *t = NULL;
    al_vocab *v = NULL;
    double t0 = al_now();
    if (al_tokenizer_load(dir, &t) != AL_OK) {
        AL_INFO("no tokenizer (%s): stop strings and structured outputs are refused", al_errmsg());
        return NULL;
    }
    if (al_vocab_from_tokenizer(t, mc, &v) != AL_OK)
        AL_WARN("tokenizer %s: %s: stop strings and structured outputs are refused", dir, al_errmsg());
    else
        AL_INFO("vocabulary of %s: %d tokens (%.0f ms)", dir, v->n, (al_now() - t0) * 1e3);
    al_tokenizer_free(t);
    return v;
}
