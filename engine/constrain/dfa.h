/* dfa.h: lazy DFA over the byte NFA (states are sets of NFA states, created on first use and
 * cached, like RE2). Transitions are read lock-free; new ones are computed under a mutex. */
#ifndef ALI_DFA_H
#define ALI_DFA_H

#include <pthread.h>
#include <stdint.h>

#include "common/err.h"
#include "engine/constrain/nfa.h"

#define ALI_DFA_MAX_STATES (1 << 16)
#define ALI_DFA_UNKNOWN 0 /* transition not computed yet */
#define ALI_DFA_DEAD 1    /* the empty set: no continuation can be accepted */

enum { ALI_DFA_ACCEPT = 1, ALI_DFA_HASOUT = 2 };

typedef struct ali_dfa {
    const ali_nfa *nfa;
    uint8_t cls[256]; /* byte -> equivalence class (bytes no NFA range tells apart) */
    uint8_t rep[256]; /* class -> a byte of it */
    int32_t ncls;
    int32_t shift;    /* rows are 1 << shift >= ncls entries apart */
    int32_t *trans;   /* [ALI_DFA_MAX_STATES << shift] row offset (next state << shift) of each
                         transition, 0 = unknown (lazily mapped); row offsets let the trie walk
                         chain loads without multiplying */
    const int32_t *bdist; /* [nfa->n] budget distance of NFA states (see ali_dfa_init) */
    int32_t *dist;    /* [ALI_DFA_MAX_STATES] min over the state's NFA set of bdist */
    uint8_t *flags;   /* [ALI_DFA_MAX_STATES] ALI_DFA_ACCEPT | ALI_DFA_HASOUT */
    void **aux;       /* [ALI_DFA_MAX_STATES] per-state slot for the mask cache (atomic) */
    int32_t start;
    int32_t nstates;  /* atomic; ids 0 and 1 are the unknown / dead markers */
    int overflow;     /* atomic: ALI_DFA_MAX_STATES was reached */
    pthread_mutex_t mu;
    /* guarded by mu */
    uint64_t *set_off; /* [state] offset of its NFA set in sets */
    int32_t *set_len;
    uint64_t *set_hash;
    int32_t *sets;
    uint64_t sets_n, sets_cap;
    int32_t info_cap;
    int32_t *htab; /* open addressing of state ids (0 = free) */
    uint32_t hcap;
    uint32_t *mark;
    uint32_t gen;
    int32_t *stk, *buf;
} ali_dfa;

/* bdist: per NFA state, the distance the budget rule uses (nfa->dist, or the distance in
 * single-byte tokens of a vocabulary); kept by pointer. */
al_err ali_dfa_init(ali_dfa *d, const ali_nfa *nfa, const int32_t *bdist);
void ali_dfa_free(ali_dfa *d);
/* Computes (and caches) a transition; -1 when the state cap was reached. */
int32_t ali_dfa_step_slow(ali_dfa *d, int32_t s, uint8_t b);

static inline int32_t ali_dfa_step(ali_dfa *d, int32_t s, uint8_t b)
{
    int32_t t = __atomic_load_n(&d->trans[((size_t)s << d->shift) + d->cls[b]], __ATOMIC_ACQUIRE);
    return t != ALI_DFA_UNKNOWN ? t >> d->shift : ali_dfa_step_slow(d, s, b);
}

#endif
