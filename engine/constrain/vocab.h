/* vocab.h: a token vocabulary as byte strings (what each id decodes to) plus the EOS ids. */
#ifndef AL_CONSTRAIN_VOCAB_H
#define AL_CONSTRAIN_VOCAB_H

#include <stdint.h>

#include "common/err.h"

typedef struct al_vocab {
    int32_t n;                   /* vocabulary size (ids 0..n-1) */
    const uint8_t *const *bytes; /* [n] bytes token i decodes to; NULL or len 0 = never allowed */
    const int32_t *len;          /* [n] */
    const int32_t *eos;          /* [n_eos] ids that end generation */
    int32_t n_eos;
    uint64_t hash;               /* cached al_vocab_hash; 0 = computed on demand (set by al_vocab_new) */
} al_vocab;

/* Copies the arrays into one allocation (bytes[i] may be NULL). */
al_err al_vocab_new(int32_t n, const uint8_t *const *bytes, const int32_t *len, const int32_t *eos,
                    int32_t n_eos, al_vocab **out);
void al_vocab_free(al_vocab *v);
/* 64-bit xxhash of the sizes, every token's bytes and the EOS ids (v->hash when set). */
uint64_t al_vocab_hash(const al_vocab *v);

#endif
