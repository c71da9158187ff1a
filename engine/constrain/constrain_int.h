/* constrain_int.h: internals shared by the constraint library's files and its tests. */
#ifndef ALI_CONSTRAIN_INT_H
#define ALI_CONSTRAIN_INT_H

#include "engine/constrain/ast.h"
#include "engine/constrain/constrain.h"
#include "engine/constrain/dfa.h"
#include "engine/constrain/nfa.h"
#include "engine/constrain/trie.h"

struct al_grammar {
    int refs; /* atomic */
    al_constraint_kind kind;
    ali_nfa nfa;
    int32_t *bdist;   /* [nfa.n] min single-byte tokens to acceptance (ALI_NFA_INF: none) */
    int32_t max_dist; /* max finite bdist over the live reachable NFA states */
    ali_dfa dfa;
    ali_trie *trie;
    int32_t nwords;    /* ceil(n / 32) */
    size_t mask_bytes; /* atomic: this grammar's share of the cached-mask budget */
};

/* A state's allowed tokens: count, the largest dist of an allowed token's end state (-1: none),
 * and the bitset (EOS bits included). */
typedef struct ali_mask {
    int32_t count;
    int32_t max_end;
    uint32_t bits[];
} ali_mask;

/* The source of a spec as a syntax tree (arena-allocated). */
al_err ali_spec_ast(const al_constraint_spec *spec, ali_arena *a, const ali_ast **out);

/* The mask of DFA state s: cached, or computed into scratch (nwords of bits) past the budget;
 * NULL (error set) when the DFA state cap was reached. */
const ali_mask *ali_mask_of(al_grammar *g, int32_t s, ali_mask *scratch);
/* Trie walk from s: tokens that keep the DFA alive and (limit >= 0) end in a state with dist <=
 * limit, plus EOS when s accepts; clears and fills bits. max_end / min_end: over the alive tokens
 * regardless of limit (-1 / INT32_MAX when none). Returns the count, -1 (error set) on DFA overflow
 * or allocation failure. */
int32_t ali_mask_walk(al_grammar *g, int32_t s, int32_t limit, uint32_t *bits, int32_t *max_end, int32_t *min_end);
/* Frees g's cached masks. */
void ali_mask_release(al_grammar *g);
/* Sets the process-wide cached-mask budget (tests); returns the previous one. */
size_t ali_mask_set_budget(size_t bytes);
size_t ali_mask_cached_bytes(void);

/* For tests and benchmarks. */
int32_t ali_matcher_state(const al_matcher *m);
static inline int32_t ali_grammar_step(al_grammar *g, int32_t s, uint8_t b) { return ali_dfa_step(&g->dfa, s, b); }

#endif
