/* nfa.h: Thompson-style byte NFA compiled from the constraint syntax tree, with the minimum
 * number of bytes from each state to acceptance. */
#ifndef ALI_NFA_H
#define ALI_NFA_H

#include <stdint.h>

#include "common/err.h"
#include "engine/constrain/ast.h"

#define ALI_NFA_MAX_STATES (1 << 21)
#define ALI_NFA_INF INT32_MAX

enum { ALI_NS_BYTE = 0, ALI_NS_SPLIT = 1, ALI_NS_MATCH = 2, ALI_NS_SET = 3 };

typedef struct ali_nstate {
    uint8_t kind;   /* ALI_NS_* */
    uint8_t lo, hi; /* BYTE: the byte range */
    uint8_t unit;   /* BYTE / SET: starts a character unit (ALI_AST_COUNTED) */
    int32_t out;    /* BYTE / SET: next state; SPLIT: first epsilon target (-1: none) */
    int32_t out1;   /* SPLIT: second epsilon target (-1: none); SET: index into bset */
} ali_nstate;

typedef struct ali_nfa {
    ali_nstate *s; /* [n] */
    int32_t n, cap;
    int32_t start, match;
    int failed;    /* sticky: allocation failed or ALI_NFA_MAX_STATES passed */
    uint32_t (*bset)[8]; /* [nbset] byte sets of SET states (256 bits each, deduplicated) */
    int32_t nbset, bset_cap;
    int32_t *dist; /* [n] min bytes from the state to acceptance (ALI_NFA_INF: dead) */
    int32_t max_dist; /* max dist over live states reachable from start */
} ali_nfa;

/* Compiles root (followed by acceptance) and computes dist; errors when the automaton is too
 * large or accepts nothing. */
al_err ali_nfa_build(const ali_ast *root, ali_nfa *nfa);
void ali_nfa_free(ali_nfa *nfa);

/* Min bytes to acceptance per state; with usable (a [256] byte set), only byte edges with a usable
 * byte count (others are impassable). Caller frees *dist. */
al_err ali_nfa_dist(const ali_nfa *nfa, const uint8_t *usable, int32_t **dist);
/* Max finite dist[] over the live states reachable from start; -1 on allocation failure. */
int32_t ali_nfa_max_dist(const ali_nfa *nfa, const int32_t *dist);

/* Builder internals shared with nfa_class.c (-1 is returned for "no state" or failure). */
int32_t ali_nfa_add(ali_nfa *f, uint8_t kind, uint8_t lo, uint8_t hi, uint8_t unit, int32_t out, int32_t out1);
/* A SET state: any byte of the 256-bit set, then out. */
int32_t ali_nfa_add_set(ali_nfa *f, const uint32_t set[8], uint8_t unit, int32_t out);
static inline int ali_nfa_has_byte(const ali_nfa *f, const ali_nstate *s, uint8_t b)
{
    return s->kind == ALI_NS_BYTE ? b >= s->lo && b <= s->hi
                                  : s->kind == ALI_NS_SET && (f->bset[s->out1][b >> 5] >> (b & 31) & 1);
}
/* Entry state of one code point of the ranges, UTF-8 encoded, continuing into next. */
int32_t ali_nfa_class(ali_nfa *f, const ali_cprange *r, int32_t n, int unit, int32_t next);
/* Entry state of a choice among entries (a chain of splits; -1 entries are skipped). */
int32_t ali_nfa_split_chain(ali_nfa *f, const int32_t *e, int32_t n);

#endif
