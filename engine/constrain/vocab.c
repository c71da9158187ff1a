/* vocab.c: owned token vocabularies and their content hash. */
#include "engine/constrain/vocab.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

static uint64_t ali_vocab_hash_compute(const al_vocab *v)
{
    XXH3_state_t *st = XXH3_createState();
    if (!st)
        return 0;
    XXH3_64bits_reset_withSeed(st, 0xA10AC0DEull);
    int32_t hdr[2] = {v->n, v->n_eos};
    XXH3_64bits_update(st, hdr, sizeof hdr);
    for (int32_t i = 0; i < v->n; i++) {
        int32_t l = (v->bytes && v->bytes[i] && v->len[i] > 0) ? v->len[i] : 0;
        XXH3_64bits_update(st, &l, sizeof l);
        if (l)
            XXH3_64bits_update(st, v->bytes[i], (size_t)l);
    }
    if (v->n_eos > 0)
        XXH3_64bits_update(st, v->eos, (size_t)v->n_eos * sizeof *v->eos);
    uint64_t h = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    return h ? h : 1;
}

uint64_t al_vocab_hash(const al_vocab *v) { return v->hash ? v->hash : ali_vocab_hash_compute(v); }

al_err al_vocab_new(int32_t n, const uint8_t *const *bytes, const int32_t *len, const int32_t *eos,
                    int32_t n_eos, al_vocab **out)
{
    if (n <= 0 || !bytes || !len || n_eos < 0 || (n_eos > 0 && !eos) || !out)
        return ali_errf(AL_EINVAL, "al_vocab_new: bad arguments (n %d, n_eos %d)", n, n_eos);
    size_t total = 0;
    for (int32_t i = 0; i < n; i++) {
        if (len[i] < 0)
            return ali_errf(AL_EINVAL, "al_vocab_new: token %d has negative length", i);
        if (bytes[i])
            total += (size_t)len[i];
    }
    for (int32_t i = 0; i < n_eos; i++)
        if (eos[i] < 0 || eos[i] >= n)
            return ali_errf(AL_EINVAL, "al_vocab_new: EOS id %d out of range [0, %d)", eos[i], n);
    size_t sz = sizeof(al_vocab) + (size_t)n * (sizeof(uint8_t *) + sizeof(int32_t)) +
                (size_t)n_eos * sizeof(int32_t) + total;
    al_vocab *v = calloc(1, sz);
    if (!v)
        return ali_errf(AL_ENOMEM, "al_vocab_new: cannot allocate %zu bytes", sz);
    const uint8_t **bp = (const uint8_t **)(v + 1);
    int32_t *lp = (int32_t *)(bp + n), *ep = lp + n;
    uint8_t *data = (uint8_t *)(ep + n_eos);
    for (int32_t i = 0; i < n; i++) {
        if (bytes[i] && len[i] > 0) {
            memcpy(data, bytes[i], (size_t)len[i]);
            bp[i] = data;
            lp[i] = len[i];
            data += len[i];
        } else {
            bp[i] = NULL;
            lp[i] = 0;
        }
    }
    if (n_eos)
        memcpy(ep, eos, (size_t)n_eos * sizeof *ep);
    v->n = n;
    v->bytes = bp;
    v->len = lp;
    v->eos = ep;
    v->n_eos = n_eos;
    v->hash = ali_vocab_hash_compute(v);
    *out = v;
    return AL_OK;
}

void al_vocab_free(al_vocab *v) { free(v); }
