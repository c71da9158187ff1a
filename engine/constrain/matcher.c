/* matcher.c: one sequence's position in a grammar: masks (with the max_tokens budget rule),
 * applying them to logits, and advancing by sampled tokens. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/constrain/constrain_int.h"

struct al_matcher {
    al_grammar *g;
    int32_t state;
    int finished; /* EOS accepted */
    ali_mask *scratch;
};

al_err al_matcher_new(al_grammar *g, al_matcher **out)
{
    if (!g || !out)
        return ali_errf(AL_EINVAL, "al_matcher_new: NULL argument");
    al_matcher *m = calloc(1, sizeof *m);
    ali_mask *s = malloc(sizeof(ali_mask) + (size_t)g->nwords * sizeof(uint32_t));
    if (!m || !s) {
        free(m);
        free(s);
        return ali_errf(AL_ENOMEM, "al_matcher_new: out of memory");
    }
    m->g = al_grammar_ref(g);
    m->scratch = s;
    m->state = g->dfa.start;
    *out = m;
    return AL_OK;
}

void al_matcher_free(al_matcher *m)
{
    if (!m)
        return;
    al_grammar_unref(m->g);
    free(m->scratch);
    free(m);
}

void al_matcher_reset(al_matcher *m)
{
    m->state = m->g->dfa.start;
    m->finished = 0;
}

int32_t ali_matcher_state(const al_matcher *m) { return m->state; }

int al_matcher_accepting(const al_matcher *m)
{
    return m->finished || (m->g->dfa.flags[m->state] & ALI_DFA_ACCEPT) != 0;
}

int al_matcher_finished(const al_matcher *m)
{
    uint8_t f = m->g->dfa.flags[m->state];
    return m->finished || ((f & ALI_DFA_ACCEPT) && !(f & ALI_DFA_HASOUT));
}

static int32_t ali_eos_only(const al_grammar *g, uint32_t *bits)
{
    memset(bits, 0, (size_t)g->nwords * sizeof *bits);
    for (int32_t i = 0; i < g->trie->n_eos; i++)
        bits[g->trie->eos[i] >> 5] |= 1u << (g->trie->eos[i] & 31);
    return g->trie->n_eos;
}

/* The allowed set now: a pointer to cached bits, or bits written into `buf`. */
static const uint32_t *ali_matcher_bits(al_matcher *m, int32_t remaining, uint32_t *buf, int32_t *count)
{
    al_grammar *g = m->g;
    if (m->finished) {
        *count = ali_eos_only(g, buf);
        return buf;
    }
    const ali_mask *mk = ali_mask_of(g, m->state, m->scratch);
    if (!mk) {
        *count = 0;
        memset(buf, 0, (size_t)g->nwords * sizeof *buf);
        return buf;
    }
    /* budget rule: with r tokens left, the next token must end within r - 1 bytes of acceptance */
    if (remaining > 0 && remaining - 1 < mk->max_end && remaining - 1 < g->max_dist) {
        int32_t mx, mn, c = ali_mask_walk(g, m->state, remaining - 1, buf, &mx, &mn);
        if (c == 0 && mn != INT32_MAX) /* out of budget anyway: head for acceptance */
            c = ali_mask_walk(g, m->state, mn, buf, &mx, &mn);
        if (c < 0) { /* error set by the walk */
            memset(buf, 0, (size_t)g->nwords * sizeof *buf);
            c = 0;
        }
        *count = c;
        return buf;
    }
    *count = mk->count;
    return mk->bits;
}

int32_t al_matcher_mask(al_matcher *m, int32_t remaining, uint32_t *bits)
{
    int32_t c;
    const uint32_t *b = ali_matcher_bits(m, remaining, bits, &c);
    if (b != bits)
        memcpy(bits, b, (size_t)m->g->nwords * sizeof *bits);
    return c;
}

static const float ali_ninf32[32] = {[0 ... 31] = -INFINITY};

int32_t al_matcher_apply(al_matcher *m, int32_t remaining, float *logits, int32_t V)
{
    int32_t c, n = m->g->trie->n;
    const uint32_t *b = ali_matcher_bits(m, remaining, m->scratch->bits, &c);
    int32_t lim = V < n ? V : n, full = lim >> 5;
    for (int32_t w = 0; w < full; w++) {
        uint32_t x = b[w];
        if (x == 0xFFFFFFFFu)
            continue;
        float *l = logits + ((size_t)w << 5);
        if (x == 0) { /* a vector copy (twice as fast as a store loop) */
            memcpy(l, ali_ninf32, sizeof ali_ninf32);
            continue;
        }
        for (uint32_t y = ~x; y; y &= y - 1)
            l[__builtin_ctz(y)] = -INFINITY;
    }
    for (int32_t i = full << 5; i < lim; i++)
        if (!(b[i >> 5] >> (i & 31) & 1))
            logits[i] = -INFINITY;
    for (int32_t i = lim; i < V; i++)
        logits[i] = -INFINITY;
    if (V < n) { /* ids past the logits cannot be sampled: do not count them */
        c = 0;
        for (int32_t i = 0; i < V; i++)
            c += (int32_t)(b[i >> 5] >> (i & 31) & 1);
    }
    return c;
}

al_err al_matcher_accept(al_matcher *m, int32_t token)
{
    al_grammar *g = m->g;
    const ali_trie *tr = g->trie;
    if (m->finished)
        return ali_errf(AL_EINVAL, "constraint: token %d after EOS", token);
    if (token < 0 || token >= tr->n)
        return ali_errf(AL_EINVAL, "constraint: token %d out of range [0, %d)", token, tr->n);
    if (tr->is_eos[token]) {
        if (!(g->dfa.flags[m->state] & ALI_DFA_ACCEPT))
            return ali_errf(AL_EINVAL, "constraint: EOS token %d before the output is complete", token);
        m->finished = 1;
        return AL_OK;
    }
    uint32_t len = tr->off[token + 1] - tr->off[token];
    if (len == 0 || len > ALI_TRIE_MAX_TOKEN)
        return ali_errf(AL_EINVAL, "constraint: token %d is never allowed (special or empty)", token);
    const uint8_t *p = tr->data + tr->off[token];
    int32_t s = m->state;
    for (uint32_t i = 0; i < len; i++) {
        s = ali_dfa_step(&g->dfa, s, p[i]);
        if (s < 0)
            return ali_errf(AL_ERANGE, "constraint: the automaton needs more than %d DFA states", ALI_DFA_MAX_STATES);
        if (s == ALI_DFA_DEAD)
            return ali_errf(AL_EINVAL, "constraint: token %d is not allowed here", token);
    }
    m->state = s;
    return AL_OK;
}
