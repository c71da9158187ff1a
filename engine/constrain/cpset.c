/* cpset.c: code point range sets: add, normalise, negate, remove, the \d \w \s classes. */
#include "engine/constrain/cpset.h"

#include <stdlib.h>

void ali_cpset_free(ali_cpset *s)
{
    free(s->r);
    s->r = NULL;
    s->n = s->cap = 0;
    s->failed = 0;
}

void ali_cpset_clear(ali_cpset *s) { s->n = 0; }

void ali_cpset_add(ali_cpset *s, uint32_t lo, uint32_t hi)
{
    if (lo > hi || lo > ALI_CP_MAX || s->failed)
        return;
    if (hi > ALI_CP_MAX)
        hi = ALI_CP_MAX;
    if (s->n == s->cap) {
        int32_t nc = s->cap ? s->cap * 2 : 8;
        ali_cprange *r = realloc(s->r, (size_t)nc * sizeof *r);
        if (!r) {
            s->failed = 1;
            s->n = 0;
            return;
        }
        s->r = r;
        s->cap = nc;
    }
    s->r[s->n].lo = lo;
    s->r[s->n].hi = hi;
    s->n++;
}

void ali_cpset_add_set(ali_cpset *s, const ali_cpset *o)
{
    for (int32_t i = 0; i < o->n; i++)
        ali_cpset_add(s, o->r[i].lo, o->r[i].hi);
}

static int ali_cprange_cmp(const void *a, const void *b)
{
    const ali_cprange *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

static void ali_cpset_merge(ali_cpset *s)
{
    if (s->n == 0)
        return;
    qsort(s->r, (size_t)s->n, sizeof *s->r, ali_cprange_cmp);
    int32_t w = 0;
    for (int32_t i = 1; i < s->n; i++) {
        if (s->r[i].lo <= s->r[w].hi + 1) {
            if (s->r[i].hi > s->r[w].hi)
                s->r[w].hi = s->r[i].hi;
        } else {
            s->r[++w] = s->r[i];
        }
    }
    s->n = w + 1;
}

void ali_cpset_remove(ali_cpset *s, uint32_t lo, uint32_t hi)
{
    ali_cpset_merge(s);
    int32_t n = s->n;
    for (int32_t i = 0; i < n; i++) {
        ali_cprange r = s->r[i];
        if (r.hi < lo || r.lo > hi)
            continue;
        if (r.lo < lo && r.hi > hi) { /* split: keep the left part here, append the right part */
            s->r[i].hi = lo - 1;
            ali_cpset_add(s, hi + 1, r.hi);
            continue;
        }
        if (r.lo >= lo && r.hi <= hi) {
            s->r[i].lo = 1;
            s->r[i].hi = 0; /* emptied: dropped below */
        } else if (r.lo < lo) {
            s->r[i].hi = lo - 1;
        } else {
            s->r[i].lo = hi + 1;
        }
    }
    int32_t w = 0;
    for (int32_t i = 0; i < s->n; i++)
        if (s->r[i].lo <= s->r[i].hi)
            s->r[w++] = s->r[i];
    s->n = w;
    ali_cpset_merge(s);
}

void ali_cpset_norm(ali_cpset *s) { ali_cpset_remove(s, 0xD800, 0xDFFF); }

void ali_cpset_negate(ali_cpset *s)
{
    ali_cpset_merge(s);
    int32_t n = s->n;
    uint32_t next = 0;
    for (int32_t i = 0; i < n; i++) { /* appended complement ranges land after the originals */
        if (s->r[i].lo > next)
            ali_cpset_add(s, next, s->r[i].lo - 1);
        next = s->r[i].hi + 1;
    }
    if (next <= ALI_CP_MAX)
        ali_cpset_add(s, next, ALI_CP_MAX);
    if (s->failed)
        return;
    int32_t m = s->n - n;
    for (int32_t i = 0; i < m; i++)
        s->r[i] = s->r[n + i];
    s->n = m;
    ali_cpset_norm(s);
}

int ali_cpset_has(const ali_cpset *s, uint32_t c)
{
    int32_t lo = 0, hi = s->n - 1;
    while (lo <= hi) {
        int32_t mid = (lo + hi) / 2;
        if (c < s->r[mid].lo)
            hi = mid - 1;
        else if (c > s->r[mid].hi)
            lo = mid + 1;
        else
            return 1;
    }
    return 0;
}

void ali_cpset_add_perl(ali_cpset *s, char cls)
{
    ali_cpset t = {0};
    switch (cls | 0x20) {
    case 'd':
        ali_cpset_add(&t, '0', '9');
        break;
    case 'w':
        ali_cpset_add(&t, '0', '9');
        ali_cpset_add(&t, 'A', 'Z');
        ali_cpset_add(&t, 'a', 'z');
        ali_cpset_add(&t, '_', '_');
        break;
    default: /* 's': [ \t\n\v\f\r] */
        ali_cpset_add(&t, '\t', '\r');
        ali_cpset_add(&t, ' ', ' ');
        break;
    }
    if (cls >= 'A' && cls <= 'Z')
        ali_cpset_negate(&t);
    if (t.failed)
        s->failed = 1;
    ali_cpset_add_set(s, &t);
    ali_cpset_free(&t);
}
