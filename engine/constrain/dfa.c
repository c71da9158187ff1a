/* dfa.c: lazy subset construction: epsilon closures, interning of NFA-state sets, byte classes. */
#include "engine/constrain/dfa.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <xxhash.h>

static void *ali_map(size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void ali_unmap(void *p, size_t bytes)
{
    if (p)
        munmap(p, bytes);
}

/* Adds the epsilon closure of q (live important states only) to d->buf. */
static void ali_closure(ali_dfa *d, int32_t q, int32_t *nb)
{
    const ali_nfa *f = d->nfa;
    int32_t sp = 0;
    d->stk[sp++] = q;
    while (sp > 0) {
        q = d->stk[--sp];
        if (q < 0 || d->mark[q] == d->gen)
            continue;
        d->mark[q] = d->gen;
        if (f->dist[q] == ALI_NFA_INF)
            continue;
        const ali_nstate *s = &f->s[q];
        if (s->kind == ALI_NS_SPLIT) {
            if (s->out1 >= 0 && d->mark[s->out1] != d->gen)
                d->stk[sp++] = s->out1;
            if (s->out >= 0 && d->mark[s->out] != d->gen)
                d->stk[sp++] = s->out;
        } else {
            d->buf[(*nb)++] = q;
        }
    }
}

static void ali_next_gen(ali_dfa *d)
{
    if (++d->gen == 0) {
        memset(d->mark, 0, (size_t)d->nfa->n * sizeof *d->mark);
        d->gen = 1;
    }
}

static int ali_i32cmp(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return x < y ? -1 : x > y;
}

static int ali_hgrow(ali_dfa *d)
{
    uint32_t nc = d->hcap ? d->hcap * 2 : 1024;
    int32_t *t = calloc(nc, sizeof *t);
    if (!t)
        return -1;
    for (uint32_t i = 0; i < d->hcap; i++) {
        int32_t s = d->htab[i];
        if (!s)
            continue;
        uint32_t h = (uint32_t)d->set_hash[s] & (nc - 1);
        while (t[h])
            h = (h + 1) & (nc - 1);
        t[h] = s;
    }
    free(d->htab);
    d->htab = t;
    d->hcap = nc;
    return 0;
}

/* The state for the set in buf[0..nb) (sorted here); -1 on overflow / allocation failure. */
static int32_t ali_intern(ali_dfa *d, int32_t nb)
{
    if (nb == 0)
        return ALI_DFA_DEAD;
    if (nb > 1)
        qsort(d->buf, (size_t)nb, sizeof *d->buf, ali_i32cmp);
    uint64_t hv = XXH3_64bits(d->buf, (size_t)nb * sizeof *d->buf);
    uint32_t h = (uint32_t)hv & (d->hcap - 1);
    for (int32_t s; (s = d->htab[h]) != 0; h = (h + 1) & (d->hcap - 1))
        if (d->set_hash[s] == hv && d->set_len[s] == nb &&
            memcmp(d->sets + d->set_off[s], d->buf, (size_t)nb * sizeof *d->buf) == 0)
            return s;
    int32_t s = d->nstates;
    if (s >= ALI_DFA_MAX_STATES) {
        __atomic_store_n(&d->overflow, 1, __ATOMIC_RELEASE);
        return -1;
    }
    if (s >= d->info_cap) {
        int32_t nc = d->info_cap * 2;
        uint64_t *o = realloc(d->set_off, (size_t)nc * sizeof *o);
        if (o)
            d->set_off = o;
        int32_t *l = realloc(d->set_len, (size_t)nc * sizeof *l);
        if (l)
            d->set_len = l;
        uint64_t *hh = realloc(d->set_hash, (size_t)nc * sizeof *hh);
        if (hh)
            d->set_hash = hh;
        if (!o || !l || !hh)
            return -1;
        d->info_cap = nc;
    }
    if (d->sets_n + (uint64_t)nb > d->sets_cap) {
        uint64_t nc = d->sets_cap * 2 + (uint64_t)nb;
        int32_t *ns = realloc(d->sets, nc * sizeof *ns);
        if (!ns)
            return -1;
        d->sets = ns;
        d->sets_cap = nc;
    }
    if ((uint32_t)s * 2 >= d->hcap && ali_hgrow(d) != 0)
        return -1;
    memcpy(d->sets + d->sets_n, d->buf, (size_t)nb * sizeof *d->buf);
    d->set_off[s] = d->sets_n;
    d->set_len[s] = nb;
    d->set_hash[s] = hv;
    d->sets_n += (uint64_t)nb;
    int32_t dist = ALI_NFA_INF;
    uint8_t fl = 0;
    for (int32_t i = 0; i < nb; i++) {
        int32_t q = d->buf[i];
        if (d->bdist[q] < dist)
            dist = d->bdist[q];
        fl |= d->nfa->s[q].kind == ALI_NS_MATCH ? ALI_DFA_ACCEPT : ALI_DFA_HASOUT;
    }
    d->dist[s] = dist;
    d->flags[s] = fl;
    h = (uint32_t)hv & (d->hcap - 1);
    while (d->htab[h])
        h = (h + 1) & (d->hcap - 1);
    d->htab[h] = s;
    __atomic_store_n(&d->nstates, s + 1, __ATOMIC_RELEASE);
    return s;
}

int32_t ali_dfa_step_slow(ali_dfa *d, int32_t s, uint8_t b)
{
    size_t slot = ((size_t)s << d->shift) + d->cls[b];
    pthread_mutex_lock(&d->mu);
    int32_t t = __atomic_load_n(&d->trans[slot], __ATOMIC_ACQUIRE);
    if (t == ALI_DFA_UNKNOWN) {
        int32_t nb = 0;
        ali_next_gen(d);
        const int32_t *set = d->sets + d->set_off[s];
        int32_t n = d->set_len[s];
        for (int32_t i = 0; i < n; i++) {
            const ali_nstate *q = &d->nfa->s[set[i]];
            if (ali_nfa_has_byte(d->nfa, q, b))
                ali_closure(d, q->out, &nb);
        }
        t = ali_intern(d, nb);
        if (t < 0) {
            __atomic_store_n(&d->overflow, 1, __ATOMIC_RELEASE);
        } else {
            __atomic_store_n(&d->trans[slot], t << d->shift, __ATOMIC_RELEASE);
        }
    } else {
        t >>= d->shift;
    }
    pthread_mutex_unlock(&d->mu);
    return t;
}

al_err ali_dfa_init(ali_dfa *d, const ali_nfa *nfa, const int32_t *bdist)
{
    memset(d, 0, sizeof *d);
    d->nfa = nfa;
    d->bdist = bdist;
    pthread_mutex_init(&d->mu, NULL);
    /* byte classes: boundaries at every range start and end + 1 */
    uint8_t cut[257] = {0};
    for (int32_t q = 0; q < nfa->n; q++)
        if (nfa->s[q].kind == ALI_NS_BYTE) {
            cut[nfa->s[q].lo] = 1;
            cut[nfa->s[q].hi + 1] = 1;
        }
    for (int32_t k = 0; k < nfa->nbset; k++) /* every run boundary of every byte set */
        for (int b = 0; b <= 256; b++) {
            int in = b < 256 && (nfa->bset[k][b >> 5] >> (b & 31) & 1);
            int prev = b > 0 && (nfa->bset[k][(b - 1) >> 5] >> ((b - 1) & 31) & 1);
            if (in != prev)
                cut[b] = 1;
        }
    int32_t c = -1;
    for (int b = 0; b < 256; b++) {
        if (b == 0 || cut[b]) {
            c++;
            d->rep[c] = (uint8_t)b;
        }
        d->cls[b] = (uint8_t)c;
    }
    d->ncls = c + 1;
    while ((1 << d->shift) < d->ncls)
        d->shift++;
    d->trans = ali_map(((size_t)ALI_DFA_MAX_STATES << d->shift) * sizeof *d->trans);
    d->dist = ali_map((size_t)ALI_DFA_MAX_STATES * sizeof *d->dist);
    d->flags = ali_map((size_t)ALI_DFA_MAX_STATES);
    d->aux = ali_map((size_t)ALI_DFA_MAX_STATES * sizeof *d->aux);
    d->info_cap = 256;
    d->set_off = malloc((size_t)d->info_cap * sizeof *d->set_off);
    d->set_len = malloc((size_t)d->info_cap * sizeof *d->set_len);
    d->set_hash = malloc((size_t)d->info_cap * sizeof *d->set_hash);
    d->mark = calloc((size_t)nfa->n, sizeof *d->mark);
    d->stk = malloc(((size_t)nfa->n * 2 + 2) * sizeof *d->stk);
    d->buf = malloc(((size_t)nfa->n + 1) * sizeof *d->buf);
    d->sets_cap = 1024;
    d->sets = malloc(d->sets_cap * sizeof *d->sets);
    if (!d->trans || !d->dist || !d->flags || !d->aux || !d->set_off || !d->set_len || !d->set_hash ||
        !d->mark || !d->stk || !d->buf || !d->sets || ali_hgrow(d) != 0) {
        ali_dfa_free(d);
        return ali_errf(AL_ENOMEM, "constraint: cannot allocate the DFA");
    }
    d->nstates = 2;
    d->dist[ALI_DFA_DEAD] = ALI_NFA_INF;
    for (int32_t k = 0; k < d->ncls; k++)
        d->trans[((size_t)ALI_DFA_DEAD << d->shift) + k] = ALI_DFA_DEAD << d->shift;
    int32_t nb = 0;
    ali_next_gen(d);
    ali_closure(d, nfa->start, &nb);
    d->start = ali_intern(d, nb);
    if (d->start < 0) {
        ali_dfa_free(d);
        return ali_errf(AL_ENOMEM, "constraint: cannot allocate the DFA");
    }
    return AL_OK;
}

void ali_dfa_free(ali_dfa *d)
{
    if (d->nfa)
        pthread_mutex_destroy(&d->mu);
    ali_unmap(d->trans, ((size_t)ALI_DFA_MAX_STATES << d->shift) * sizeof *d->trans);
    ali_unmap(d->dist, (size_t)ALI_DFA_MAX_STATES * sizeof *d->dist);
    ali_unmap(d->flags, (size_t)ALI_DFA_MAX_STATES);
    ali_unmap(d->aux, (size_t)ALI_DFA_MAX_STATES * sizeof *d->aux);
    free(d->set_off);
    free(d->set_len);
    free(d->set_hash);
    free(d->sets);
    free(d->htab);
    free(d->mark);
    free(d->stk);
    free(d->buf);
    memset(d, 0, sizeof *d);
}
