/* nfa.c: the syntax tree to a byte NFA, built backwards: each node is compiled knowing the state
 * that follows it, so object members and separated lists share their continuations. */
#include "engine/constrain/nfa.h"

#include <stdlib.h>
#include <string.h>

int32_t ali_nfa_add(ali_nfa *f, uint8_t kind, uint8_t lo, uint8_t hi, uint8_t unit, int32_t out, int32_t out1)
{
    if (f->failed)
        return -1;
    if (f->n == f->cap) {
        int32_t nc = f->cap ? f->cap * 2 : 256;
        if (nc > ALI_NFA_MAX_STATES)
            nc = ALI_NFA_MAX_STATES;
        if (f->n >= nc) {
            f->failed = 2;
            return -1;
        }
        ali_nstate *s = realloc(f->s, (size_t)nc * sizeof *s);
        if (!s) {
            f->failed = f->failed ? f->failed : 1;
            return -1;
        }
        f->s = s;
        f->cap = nc;
    }
    ali_nstate *s = &f->s[f->n];
    s->kind = kind;
    s->lo = lo;
    s->hi = hi;
    s->unit = unit;
    s->out = out;
    s->out1 = out1;
    return f->n++;
}

int32_t ali_nfa_add_set(ali_nfa *f, const uint32_t set[8], uint8_t unit, int32_t out)
{
    int32_t k = 0;
    for (; k < f->nbset; k++) /* few distinct sets per grammar: a linear search is fine */
        if (memcmp(f->bset[k], set, sizeof f->bset[k]) == 0)
            break;
    if (k == f->nbset) {
        if (f->failed)
            return -1;
        if (f->nbset == f->bset_cap) {
            int32_t nc = f->bset_cap ? f->bset_cap * 2 : 8;
            uint32_t(*b)[8] = realloc(f->bset, (size_t)nc * sizeof *b);
            if (!b) {
                f->failed = f->failed ? f->failed : 1;
                return -1;
            }
            f->bset = b;
            f->bset_cap = nc;
        }
        memcpy(f->bset[k], set, sizeof f->bset[k]);
        f->nbset++;
    }
    return ali_nfa_add(f, ALI_NS_SET, 0, 0, unit, out, k);
}

static int ali_i32_cmp(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return x < y ? -1 : x > y;
}

int32_t ali_nfa_split_chain(ali_nfa *f, const int32_t *e, int32_t n)
{
    int32_t buf[16], *u = n <= 16 ? buf : malloc((size_t)n * sizeof *u), m = 0;
    if (!u) {
        f->failed = f->failed ? f->failed : 1;
        return -1;
    }
    for (int32_t i = 0; i < n; i++)
        if (e[i] >= 0)
            u[m++] = e[i];
    if (m > 1) {
        qsort(u, (size_t)m, sizeof *u, ali_i32_cmp);
        int32_t w = 1;
        for (int32_t i = 1; i < m; i++)
            if (u[i] != u[w - 1])
                u[w++] = u[i];
        m = w;
    }
    int32_t s = m ? u[m - 1] : -1;
    for (int32_t i = m - 2; i >= 0 && s >= 0; i--)
        s = ali_nfa_add(f, ALI_NS_SPLIT, 0, 0, 0, u[i], s);
    if (u != buf)
        free(u);
    return s;
}

static int32_t ali_comp(ali_nfa *f, const ali_ast *x, int32_t next);

/* Literal alternatives share their prefixes: a byte trie, built from the sorted literals. */
static int ali_lit_cmp(const void *a, const void *b)
{
    const ali_ast *x = *(const ali_ast *const *)a, *y = *(const ali_ast *const *)b;
    int32_t n = x->n < y->n ? x->n : y->n;
    int c = memcmp(x->bytes, y->bytes, (size_t)n);
    return c ? c : (x->n > y->n) - (x->n < y->n);
}

static int32_t ali_lit_trie(ali_nfa *f, const ali_ast **l, int32_t cnt, int32_t d, int32_t next)
{
    /* common prefix of the group beyond d (sorted: that of the first and the last) */
    int32_t cp = 0;
    while (d + cp < l[0]->n && d + cp < l[cnt - 1]->n && l[0]->bytes[d + cp] == l[cnt - 1]->bytes[d + cp])
        cp++;
    if (cp > 0) {
        int32_t t = ali_lit_trie(f, l, cnt, d + cp, next);
        for (int32_t k = d + cp - 1; k >= d && t >= 0; k--)
            t = ali_nfa_add(f, ALI_NS_BYTE, l[0]->bytes[k], l[0]->bytes[k], 0, t, -1);
        return t;
    }
    int32_t nalt = 0, cap = 16, *alts = malloc((size_t)cap * sizeof *alts), i = 0;
    if (!alts) {
        f->failed = f->failed ? f->failed : 1;
        return -1;
    }
    if (l[0]->n == d) { /* a literal ends here (duplicates too) */
        alts[nalt++] = next;
        while (i < cnt && l[i]->n == d)
            i++;
    }
    while (i < cnt && !f->failed) {
        uint8_t c = l[i]->bytes[d];
        int32_t j = i;
        while (j < cnt && l[j]->bytes[d] == c)
            j++;
        int32_t sub = ali_lit_trie(f, l + i, j - i, d + 1, next);
        int32_t st = sub >= 0 ? ali_nfa_add(f, ALI_NS_BYTE, c, c, 0, sub, -1) : -1;
        if (nalt == cap) {
            int32_t *na = realloc(alts, (size_t)(cap *= 2) * sizeof *na);
            if (!na) {
                f->failed = f->failed ? f->failed : 1;
                break;
            }
            alts = na;
        }
        alts[nalt++] = st;
        i = j;
    }
    int32_t e = f->failed ? -1 : ali_nfa_split_chain(f, alts, nalt);
    free(alts);
    return e;
}

static int32_t ali_comp_alt(ali_nfa *f, const ali_ast *x, int32_t next)
{
    int32_t *e = malloc((size_t)(x->n + 1) * sizeof *e), ne = 0, nl = 0;
    const ali_ast **lits = malloc((size_t)x->n * sizeof *lits);
    if (!e || !lits) {
        free(e);
        free(lits);
        f->failed = f->failed ? f->failed : 1;
        return -1;
    }
    for (int32_t i = 0; i < x->n && !f->failed; i++) {
        const ali_ast *k = x->kids[i];
        if (k->kind == ALI_AST_LIT && !k->unit)
            lits[nl++] = k;
        else
            e[ne++] = ali_comp(f, k, next);
    }
    if (nl > 0 && !f->failed) {
        qsort(lits, (size_t)nl, sizeof *lits, ali_lit_cmp);
        e[ne++] = ali_lit_trie(f, lits, nl, 0, next);
    }
    int32_t r = f->failed ? -1 : ali_nfa_split_chain(f, e, ne);
    free(e);
    free(lits);
    return r;
}

static int32_t ali_comp_repeat(ali_nfa *f, const ali_ast *x, int32_t next)
{
    const ali_ast *b = x->sub, *sep = x->sep;
    int32_t min = x->min, max = x->max, cur;
    if (sep) { /* b (sep b)*: count b's */
        if (min == 0) {
            ali_ast one = *x;
            one.min = 1;
            int32_t e = ali_comp_repeat(f, &one, next);
            int32_t pair[2] = {e, next};
            return e < 0 ? next : ali_nfa_split_chain(f, pair, 2);
        }
        if (max < 0) { /* after >= min items: L = (sep b L)? next; the last forced b is shared */
            int32_t L = ali_nfa_add(f, ALI_NS_SPLIT, 0, 0, 0, -1, next);
            if (L < 0)
                return -1;
            int32_t E = ali_comp(f, b, L);
            if (E < 0)
                return -1;
            int32_t back = ali_comp(f, sep, E); /* (f->s may move while compiling) */
            f->s[L].out = back;
            cur = E;
            for (int32_t i = 1; i < min && cur >= 0; i++)
                cur = ali_comp(f, b, ali_comp(f, sep, cur));
            return cur;
        }
        cur = next; /* bounded: b (sep b){min-1, max-1} */
        for (int32_t i = 0; i < max - min && cur >= 0 && !f->failed; i++) {
            int32_t e = ali_comp(f, b, cur);
            e = e >= 0 ? ali_comp(f, sep, e) : -1;
            int32_t pair[2] = {e, next};
            cur = ali_nfa_split_chain(f, pair, 2);
        }
        for (int32_t i = 0; i < min - 1 && cur >= 0 && !f->failed; i++)
            cur = ali_comp(f, sep, ali_comp(f, b, cur));
        return cur >= 0 ? ali_comp(f, b, cur) : -1;
    }
    if (max < 0) {
        int32_t L = ali_nfa_add(f, ALI_NS_SPLIT, 0, 0, 0, -1, next);
        if (L < 0)
            return -1;
        int32_t body = ali_comp(f, b, L);
        if (body >= 0 && body != L)
            f->s[L].out = body;
        cur = L;
    } else {
        cur = next;
        for (int32_t i = 0; i < max - min && !f->failed; i++) {
            int32_t pair[2] = {ali_comp(f, b, cur), next};
            cur = ali_nfa_split_chain(f, pair, 2);
        }
    }
    for (int32_t i = 0; i < min && cur >= 0 && !f->failed; i++)
        cur = ali_comp(f, b, cur);
    return f->failed ? -1 : cur;
}

/* Object members: P_i = pair_i continuing into A_{i+1}; A_i (something already emitted) =
 * sep P_i, or also A_{i+1} when optional; B_i (nothing emitted yet) = P_i, or also B_{i+1}. The
 * extra pairs (if any) loop after the listed ones. Linear in the members. */
static int32_t ali_comp_props(ali_nfa *f, const ali_ast *x, int32_t next)
{
    int32_t A = next, B = next;
    if (x->extra) {
        int32_t L = ali_nfa_add(f, ALI_NS_SPLIT, 0, 0, 0, -1, next);
        if (L < 0)
            return -1;
        int32_t E = ali_comp(f, x->extra, L);
        if (E >= 0) {
            int32_t back = ali_comp(f, x->sep, E);
            f->s[L].out = back;
            int32_t pair[2] = {E, next};
            B = ali_nfa_split_chain(f, pair, 2);
        }
        A = L;
    }
    for (int32_t i = x->n - 1; i >= 0 && !f->failed; i--) {
        int32_t P = ali_comp(f, x->kids[i], A);
        int32_t S = P >= 0 ? ali_comp(f, x->sep, P) : -1;
        if (x->req[i]) {
            if (P < 0 || S < 0)
                return -1;
            A = S;
            B = P;
        } else {
            int32_t pa[2] = {S, A}, pb[2] = {P, B};
            A = ali_nfa_split_chain(f, pa, 2);
            B = ali_nfa_split_chain(f, pb, 2);
        }
    }
    return f->failed ? -1 : B;
}

/* sub restricted to min..max character units: the product of sub's own NFA with a counter. */
static int32_t ali_comp_counted(ali_nfa *f, const ali_ast *x, int32_t next)
{
    ali_nfa sub = {0};
    sub.match = ali_nfa_add(&sub, ALI_NS_MATCH, 0, 0, 0, -1, -1);
    sub.start = sub.match >= 0 ? ali_comp(&sub, x->sub, sub.match) : -1;
    if (sub.failed || sub.start < 0) {
        if (sub.failed)
            f->failed = sub.failed;
        ali_nfa_free(&sub);
        return -1;
    }
    int64_t K = x->max >= 0 ? x->max : x->min; /* counter saturates at min when unbounded */
    int64_t total = (int64_t)sub.n * (K + 1);
    if (total + f->n > ALI_NFA_MAX_STATES) {
        f->failed = 2;
        ali_nfa_free(&sub);
        return -1;
    }
    int32_t base = f->n;
    for (int64_t k = 0; k <= K && !f->failed; k++)
        for (int32_t q = 0; q < sub.n; q++) {
            const ali_nstate *s = &sub.s[q];
            int32_t o = -1, o1 = -1;
            if (s->kind == ALI_NS_BYTE || s->kind == ALI_NS_SET) {
                int64_t k2 = s->unit ? k + 1 : k;
                if (k2 > K && x->max < 0)
                    k2 = K;
                if (k2 <= K && s->out >= 0)
                    o = (int32_t)(base + k2 * sub.n + s->out);
                if (o < 0)
                    ali_nfa_add(f, ALI_NS_SPLIT, 0, 0, 0, -1, -1);
                else if (s->kind == ALI_NS_BYTE)
                    ali_nfa_add(f, ALI_NS_BYTE, s->lo, s->hi, s->unit, o, -1);
                else
                    ali_nfa_add_set(f, sub.bset[s->out1], s->unit, o);
            } else if (s->kind == ALI_NS_SPLIT) {
                o = s->out >= 0 ? (int32_t)(base + k * sub.n + s->out) : -1;
                o1 = s->out1 >= 0 ? (int32_t)(base + k * sub.n + s->out1) : -1;
                ali_nfa_add(f, ALI_NS_SPLIT, 0, 0, 0, o, o1);
            } else {
                ali_nfa_add(f, ALI_NS_SPLIT, 0, 0, 0, k >= x->min ? next : -1, -1);
            }
        }
    int32_t e = f->failed ? -1 : base + sub.start;
    ali_nfa_free(&sub);
    return e;
}

static int32_t ali_comp(ali_nfa *f, const ali_ast *x, int32_t next)
{
    if (next < 0 || f->failed)
        return -1;
    switch (x->kind) {
    case ALI_AST_NOTHING:
        return -1;
    case ALI_AST_EMPTY:
        return next;
    case ALI_AST_LIT:
        for (int32_t i = x->n - 1; i >= 0 && next >= 0; i--)
            next = ali_nfa_add(f, ALI_NS_BYTE, x->bytes[i], x->bytes[i], i == 0 ? x->unit : 0, next, -1);
        return next;
    case ALI_AST_CLASS:
        return ali_nfa_class(f, x->ranges, x->n, x->unit, next);
    case ALI_AST_CAT:
        for (int32_t i = x->n - 1; i >= 0 && next >= 0; i--)
            next = ali_comp(f, x->kids[i], next);
        return next;
    case ALI_AST_ALT:
        return ali_comp_alt(f, x, next);
    case ALI_AST_REPEAT:
        return ali_comp_repeat(f, x, next);
    case ALI_AST_PROPS:
        return ali_comp_props(f, x, next);
    case ALI_AST_COUNTED:
        return ali_comp_counted(f, x, next);
    }
    return -1;
}

al_err ali_nfa_build(const ali_ast *root, ali_nfa *nfa)
{
    memset(nfa, 0, sizeof *nfa);
    nfa->match = ali_nfa_add(nfa, ALI_NS_MATCH, 0, 0, 0, -1, -1);
    nfa->start = ali_comp(nfa, root, nfa->match);
    if (nfa->failed) {
        int big = nfa->failed == 2;
        ali_nfa_free(nfa);
        if (big)
            return ali_errf(AL_ERANGE, "constraint: automaton too large (more than %d NFA states); "
                                       "reduce repetition counts, lengths or nesting", ALI_NFA_MAX_STATES);
        return ali_errf(AL_ENOMEM, "constraint: out of memory building the automaton");
    }
    if (nfa->start < 0) {
        ali_nfa_free(nfa);
        return ali_errf(AL_EINVAL, "constraint: no string satisfies the constraint");
    }
    al_err e = ali_nfa_dist(nfa, NULL, &nfa->dist);
    if (e != AL_OK) {
        ali_nfa_free(nfa);
        return e;
    }
    if (nfa->dist[nfa->start] == ALI_NFA_INF) {
        ali_nfa_free(nfa);
        return ali_errf(AL_EINVAL, "constraint: no string satisfies the constraint");
    }
    ali_nstate *s = realloc(nfa->s, (size_t)nfa->n * sizeof *s);
    if (s)
        nfa->s = s;
    nfa->max_dist = ali_nfa_max_dist(nfa, nfa->dist);
    if (nfa->max_dist < 0) {
        ali_nfa_free(nfa);
        return ali_errf(AL_ENOMEM, "constraint: out of memory analysing the automaton");
    }
    return AL_OK;
}

void ali_nfa_free(ali_nfa *nfa)
{
    free(nfa->s);
    free(nfa->bset);
    free(nfa->dist);
    memset(nfa, 0, sizeof *nfa);
}
