/* mask.c: allowed-token masks by one preorder walk of the vocabulary trie against the lazy DFA
 * (a dead state skips the whole subtree), and the budgeted per-state mask cache. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "engine/constrain/constrain_int.h"

static size_t ali_mask_total;                              /* atomic: cached bytes, all grammars */
static size_t ali_mask_budget = AL_CONSTRAIN_MASK_BUDGET; /* atomic */

size_t ali_mask_set_budget(size_t bytes) { return __atomic_exchange_n(&ali_mask_budget, bytes, __ATOMIC_RELAXED); }
size_t ali_mask_cached_bytes(void) { return __atomic_load_n(&ali_mask_total, __ATOMIC_RELAXED); }

/* Per-thread buffer of (token, end state) pairs the walk appends to: sequential stores keep the
 * walk's dependency chain free of the random bitset writes (about 2x faster), which happen after. */
typedef struct ali_pairs {
    int32_t *v; /* [2 * cap] */
    size_t cap;
} ali_pairs;

static pthread_key_t ali_pairs_key;
static pthread_once_t ali_pairs_once = PTHREAD_ONCE_INIT;

static void ali_pairs_free(void *p)
{
    ali_pairs *b = p;
    if (b)
        free(b->v);
    free(b);
}

static void ali_pairs_init(void) { pthread_key_create(&ali_pairs_key, ali_pairs_free); }

static int32_t *ali_pairs_get(size_t n)
{
    pthread_once(&ali_pairs_once, ali_pairs_init);
    ali_pairs *b = pthread_getspecific(ali_pairs_key);
    if (!b) {
        if (!(b = calloc(1, sizeof *b)))
            return NULL;
        pthread_setspecific(ali_pairs_key, b);
    }
    if (b->cap < n) {
        int32_t *v = realloc(b->v, n * 2 * sizeof *v);
        if (!v)
            return NULL;
        b->v = v;
        b->cap = n;
    }
    return b->v;
}

int32_t ali_mask_walk(al_grammar *g, int32_t s, int32_t limit, uint32_t *bits, int32_t *max_end, int32_t *min_end)
{
    const ali_trie *tr = g->trie;
    ali_dfa *d = &g->dfa;
    const ali_tnode *nd = tr->nodes;
    const int32_t nn = tr->nnodes, *dup = tr->dup, *dist = d->dist;
    const uint8_t *cls = d->cls;
    const int32_t *trans = d->trans, sh = d->shift, dead = ALI_DFA_DEAD << sh;
    int32_t off[ALI_TRIE_MAX_TOKEN + 1]; /* row offset of the state at each depth */
    int32_t mx = -1, mn = INT32_MAX, np = 0;
    int32_t *pairs = ali_pairs_get((size_t)tr->n + 1);
    if (!pairs) {
        ali_errf(AL_ENOMEM, "constraint: out of memory for a mask");
        return -1;
    }
    memset(bits, 0, (size_t)g->nwords * sizeof *bits);
    off[0] = s << sh;
    if (d->flags[s] & ALI_DFA_HASOUT) {
        for (int32_t i = 0; i < nn;) {
            const ali_tnode x = nd[i];
            int32_t t = __atomic_load_n(trans + off[x.depth] + cls[x.byte], __ATOMIC_RELAXED);
            if (t <= dead) {
                if (t == ALI_DFA_UNKNOWN) {
                    if ((t = ali_dfa_step_slow(d, off[x.depth] >> sh, x.byte)) < 0) {
                        ali_errf(AL_ERANGE, "constraint: the automaton needs more than %d DFA states", ALI_DFA_MAX_STATES);
                        return -1;
                    }
                    t <<= sh;
                }
                if (t == dead) {
                    i = x.skip;
                    continue;
                }
            }
            off[x.depth + 1] = t;
            pairs[2 * np] = x.tok; /* written always, kept only at token ends (no branch) */
            pairs[2 * np + 1] = t;
            np += x.tok >= 0;
            i++;
        }
    }
    /* the relaxed loads above read release-stored transitions: this fence orders our reads of the
     * new states' dist[] after them */
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    const int32_t lim = limit < 0 ? INT32_MAX : limit;
    int32_t cnt = 0;
    for (int32_t k = 0; k < np; k++) {
        const int32_t tok = pairs[2 * k], dd = dist[pairs[2 * k + 1] >> sh];
        mx = dd > mx ? dd : mx;
        mn = dd < mn ? dd : mn;
        if (dd > lim)
            continue;
        for (int32_t j = tok; j >= 0; j = dup[j]) {
            bits[j >> 5] |= 1u << (j & 31);
            cnt++;
        }
    }
    if (d->flags[s] & ALI_DFA_ACCEPT)
        for (int32_t i = 0; i < tr->n_eos; i++) {
            bits[tr->eos[i] >> 5] |= 1u << (tr->eos[i] & 31);
            cnt++;
        }
    if (max_end)
        *max_end = mx;
    if (min_end)
        *min_end = mn;
    return cnt;
}

const ali_mask *ali_mask_of(al_grammar *g, int32_t s, ali_mask *scratch)
{
    ali_mask *m = __atomic_load_n((ali_mask **)&g->dfa.aux[s], __ATOMIC_ACQUIRE);
    if (m)
        return m;
    size_t sz = sizeof(ali_mask) + (size_t)g->nwords * sizeof(uint32_t);
    size_t budget = __atomic_load_n(&ali_mask_budget, __ATOMIC_RELAXED);
    int cache = __atomic_add_fetch(&ali_mask_total, sz, __ATOMIC_RELAXED) <= budget;
    if (cache && !(m = malloc(sz)))
        cache = 0;
    if (!cache) {
        __atomic_sub_fetch(&ali_mask_total, sz, __ATOMIC_RELAXED);
        m = scratch;
    }
    m->count = ali_mask_walk(g, s, -1, m->bits, &m->max_end, NULL);
    if (m->count < 0) { /* error set by the walk */
        if (cache) {
            free(m);
            __atomic_sub_fetch(&ali_mask_total, sz, __ATOMIC_RELAXED);
        }
        return NULL;
    }
    if (!cache)
        return m;
    ali_mask *expect = NULL;
    if (!__atomic_compare_exchange_n((ali_mask **)&g->dfa.aux[s], &expect, m, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        free(m); /* another thread cached it first */
        __atomic_sub_fetch(&ali_mask_total, sz, __ATOMIC_RELAXED);
        return expect;
    }
    __atomic_add_fetch(&g->mask_bytes, sz, __ATOMIC_RELAXED);
    return m;
}

void ali_mask_release(al_grammar *g)
{
    if (!g->dfa.aux)
        return;
    int32_t n = __atomic_load_n(&g->dfa.nstates, __ATOMIC_ACQUIRE);
    for (int32_t s = 0; s < n; s++) {
        free(g->dfa.aux[s]);
        g->dfa.aux[s] = NULL;
    }
    __atomic_sub_fetch(&ali_mask_total, g->mask_bytes, __ATOMIC_RELAXED);
    g->mask_bytes = 0;
}
