/* nfa_class.c: code point classes to UTF-8 byte-range sequences (suffixes shared) in the NFA. */
#include "engine/constrain/nfa.h"

#include <stdlib.h>
#include <string.h>

typedef struct ali_u8seq {
    int n;
    uint8_t lo[4], hi[4];
} ali_u8seq;

static int ali_u8enc(uint32_t c, uint8_t *b)
{
    if (c < 0x80) {
        b[0] = (uint8_t)c;
        return 1;
    }
    if (c < 0x800) {
        b[0] = (uint8_t)(0xC0 | (c >> 6));
        b[1] = (uint8_t)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        b[0] = (uint8_t)(0xE0 | (c >> 12));
        b[1] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
        b[2] = (uint8_t)(0x80 | (c & 0x3F));
        return 3;
    }
    b[0] = (uint8_t)(0xF0 | (c >> 18));
    b[1] = (uint8_t)(0x80 | ((c >> 12) & 0x3F));
    b[2] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
    b[3] = (uint8_t)(0x80 | (c & 0x3F));
    return 4;
}

/* Splits the scalar range [lo, hi] (no surrogates inside) into byte-range sequences where every
 * combination of bytes is a valid encoding of a value in the range (the classic utf8-ranges
 * algorithm). Calls emit for each, in increasing order. */
typedef void (*ali_u8emit)(void *ctx, const ali_u8seq *s);

static void ali_u8seqs(uint32_t lo, uint32_t hi, ali_u8emit emit, void *ctx)
{
    uint32_t st[64][2];
    int sp = 0;
    st[sp][0] = lo;
    st[sp][1] = hi;
    sp++;
    while (sp > 0) {
        sp--;
        uint32_t a = st[sp][0], b = st[sp][1];
        for (;;) {
            if (a > b)
                break;
            int split = 0;
            static const uint32_t maxv[3] = {0x7F, 0x7FF, 0xFFFF};
            for (int i = 0; i < 3 && !split; i++)
                if (a <= maxv[i] && maxv[i] < b) {
                    st[sp][0] = maxv[i] + 1;
                    st[sp][1] = b;
                    sp++;
                    b = maxv[i];
                    split = 1;
                }
            if (split)
                continue;
            if (b <= 0x7F) {
                ali_u8seq s = {.n = 1, .lo = {(uint8_t)a}, .hi = {(uint8_t)b}};
                emit(ctx, &s);
                break;
            }
            for (int i = 1; i < 4 && !split; i++) {
                uint32_t m = (1u << (6 * i)) - 1;
                if ((a & ~m) != (b & ~m)) {
                    if ((a & m) != 0) {
                        st[sp][0] = (a | m) + 1;
                        st[sp][1] = b;
                        sp++;
                        b = a | m;
                        split = 1;
                    } else if ((b & m) != m) {
                        st[sp][0] = b & ~m;
                        st[sp][1] = b;
                        sp++;
                        b = (b & ~m) - 1;
                        split = 1;
                    }
                }
            }
            if (split)
                continue;
            ali_u8seq s;
            s.n = ali_u8enc(a, s.lo);
            ali_u8enc(b, s.hi);
            emit(ctx, &s);
            break;
        }
    }
}

typedef struct ali_sfx { /* suffix cache entry: (lo, hi, target) -> state + 1 (0: free slot) */
    int32_t target, state;
    uint8_t lo, hi;
} ali_sfx;

typedef struct ali_classb {
    ali_nfa *f;
    int32_t next;
    uint8_t unit;
    ali_sfx *tab;
    uint32_t tcap, tn;
    int32_t *entries;
    int32_t ne, ecap;
    int failed;
} ali_classb;

static int32_t ali_classb_state(ali_classb *c, uint8_t lo, uint8_t hi, int32_t target, uint8_t unit)
{
    if (c->tn * 2 >= c->tcap) {
        uint32_t nc = c->tcap ? c->tcap * 2 : 64;
        ali_sfx *t = calloc(nc, sizeof *t);
        if (!t) {
            c->failed = 1;
            return -1;
        }
        for (uint32_t i = 0; i < c->tcap; i++) {
            if (!c->tab[i].state)
                continue;
            uint32_t h = ((uint32_t)c->tab[i].target * 2654435761u ^ c->tab[i].lo * 97u ^ c->tab[i].hi) & (nc - 1);
            while (t[h].state)
                h = (h + 1) & (nc - 1);
            t[h] = c->tab[i];
        }
        free(c->tab);
        c->tab = t;
        c->tcap = nc;
    }
    uint32_t h = ((uint32_t)target * 2654435761u ^ lo * 97u ^ hi) & (c->tcap - 1);
    while (c->tab[h].state) { /* state ids stored +1 so 0 marks a free slot */
        if (c->tab[h].lo == lo && c->tab[h].hi == hi && c->tab[h].target == target)
            return c->tab[h].state - 1;
        h = (h + 1) & (c->tcap - 1);
    }
    int32_t s = ali_nfa_add(c->f, ALI_NS_BYTE, lo, hi, unit, target, -1);
    if (s < 0) {
        c->failed = 1;
        return -1;
    }
    c->tab[h].lo = lo;
    c->tab[h].hi = hi;
    c->tab[h].target = target;
    c->tab[h].state = s + 1;
    c->tn++;
    return s;
}

/* Every sequence's continuation after its first byte is built at once (suffixes shared); first
 * bytes are collected as (byte range, continuation) and merged per continuation at the end. */
static void ali_classb_emit(void *ctx, const ali_u8seq *s)
{
    ali_classb *c = ctx;
    if (c->failed)
        return;
    int32_t t = c->next;
    for (int i = s->n - 1; i >= 1 && t >= 0; i--)
        t = ali_classb_state(c, s->lo[i], s->hi[i], t, 0);
    if (t < 0)
        return;
    if (c->ne + 3 > c->ecap) {
        int32_t nc = c->ecap ? c->ecap * 2 : 48;
        int32_t *e = realloc(c->entries, (size_t)nc * sizeof *e);
        if (!e) {
            c->failed = 1;
            return;
        }
        c->entries = e;
        c->ecap = nc;
    }
    c->entries[c->ne++] = s->lo[0];
    c->entries[c->ne++] = s->hi[0];
    c->entries[c->ne++] = t;
}

int32_t ali_nfa_class(ali_nfa *f, const ali_cprange *r, int32_t n, int unit, int32_t next)
{
    ali_classb c = {.f = f, .next = next, .unit = (uint8_t)(unit != 0)};
    for (int32_t i = 0; i < n && !c.failed; i++)
        ali_u8seqs(r[i].lo, r[i].hi, ali_classb_emit, &c);
    int32_t e = -1, nfirst = c.ne / 3, nent = 0;
    int32_t *ent = c.failed ? NULL : malloc((size_t)(nfirst ? nfirst : 1) * sizeof *ent);
    for (int32_t i = 0; ent && i < nfirst && !f->failed; i++) {
        int32_t t = c.entries[3 * i + 2], lo = c.entries[3 * i], hi = c.entries[3 * i + 1], runs = 1, seen = 0;
        for (int32_t j = 0; j < i && !seen; j++)
            seen = c.entries[3 * j + 2] == t;
        if (seen)
            continue; /* merged into the first range with this continuation */
        uint32_t set[8] = {0};
        for (int32_t j = i; j < nfirst; j++)
            if (c.entries[3 * j + 2] == t) {
                runs += j > i;
                for (int32_t b = c.entries[3 * j]; b <= c.entries[3 * j + 1]; b++)
                    set[b >> 5] |= 1u << (b & 31);
            }
        ent[nent++] = runs == 1 ? ali_nfa_add(f, ALI_NS_BYTE, (uint8_t)lo, (uint8_t)hi, c.unit, t, -1)
                                : ali_nfa_add_set(f, set, c.unit, t);
    }
    if (!ent)
        c.failed = 1;
    else if (!f->failed)
        e = ali_nfa_split_chain(f, ent, nent);
    if (c.failed)
        f->failed = f->failed ? f->failed : 1;
    free(ent);
    free(c.tab);
    free(c.entries);
    return e;
}
