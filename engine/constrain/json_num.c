/* json_num.c: exact digit automata for bounded integers and bounded decimals (no exponent). */
#include "engine/constrain/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const ali_ast *ali_digits(ali_arena *a, char lo, char hi)
{
    return ali_ast_range(a, (uint32_t)lo, (uint32_t)hi, 1);
}

/* Digit strings of equal length from lo to hi (lo <= hi), leading digits as given. */
static const ali_ast *ali_same_len(ali_arena *a, const char *lo, const char *hi, int n)
{
    if (n == 0)
        return ali_ast_empty();
    if (lo[0] == hi[0])
        return ali_ast_cat2(a, ali_ast_lit(a, lo, 1, 1), ali_same_len(a, lo + 1, hi + 1, n - 1));
    int lo_zeros = 1, hi_nines = 1;
    for (int i = 1; i < n; i++) {
        lo_zeros &= lo[i] == '0';
        hi_nines &= hi[i] == '9';
    }
    char nines[24], zeros[24];
    memset(nines, '9', sizeof nines);
    memset(zeros, '0', sizeof zeros);
    const ali_ast *alts[3];
    int na = 0;
    char start = lo[0], end = hi[0];
    if (!lo_zeros) {
        alts[na++] = ali_ast_cat2(a, ali_ast_lit(a, lo, 1, 1), ali_same_len(a, lo + 1, nines, n - 1));
        start++;
    }
    if (!hi_nines)
        end--;
    if (start <= end)
        alts[na++] = ali_ast_cat2(a, ali_digits(a, start, end), ali_ast_repeat(a, ali_digits(a, '0', '9'), n - 1, n - 1));
    if (!hi_nines)
        alts[na++] = ali_ast_cat2(a, ali_ast_lit(a, hi, 1, 1), ali_same_len(a, zeros, hi + 1, n - 1));
    return ali_ast_alt(a, alts, na);
}

/* Non-negative integers in [lo, hi] (hi unbounded when !has_hi), canonical decimal. */
static const ali_ast *ali_nonneg(ali_arena *a, uint64_t lo, int has_hi, uint64_t hi)
{
    if (has_hi && lo > hi)
        return ali_ast_nothing();
    char ls[24], hs[24], l[24], h[24];
    int la = snprintf(ls, sizeof ls, "%llu", (unsigned long long)lo);
    int lb = has_hi ? snprintf(hs, sizeof hs, "%llu", (unsigned long long)hi) : la;
    ali_astv v = {0};
    for (int L = la; L <= lb; L++) {
        if (L == la)
            memcpy(l, ls, (size_t)L);
        else {
            l[0] = '1';
            memset(l + 1, '0', (size_t)L - 1);
        }
        if (has_hi && L == lb)
            memcpy(h, hs, (size_t)L);
        else
            memset(h, '9', (size_t)L);
        ali_astv_push(&v, ali_same_len(a, l, h, L));
    }
    if (!has_hi) /* every longer number */
        ali_astv_push(&v, ali_ast_cat2(a, ali_digits(a, '1', '9'), ali_ast_repeat(a, ali_digits(a, '0', '9'), la, -1)));
    return ali_astv_alt(a, &v);
}

const ali_ast *ali_json_int_range(ali_arena *a, int has_lo, int64_t lo, int has_hi, int64_t hi)
{
    if (!has_hi) { /* open sides stop at 18 digits (further when the other bound needs it) */
        hi = has_lo && lo > ALI_JSON_INT_CAP ? INT64_MAX : ALI_JSON_INT_CAP;
        has_hi = 1;
    }
    if (!has_lo) {
        lo = hi < -ALI_JSON_INT_CAP ? -INT64_MAX : -ALI_JSON_INT_CAP;
        has_lo = 1;
    }
    if (has_lo && has_hi && lo > hi)
        return ali_ast_nothing();
    const ali_ast *alts[2];
    int na = 0;
    if (!has_hi || hi >= 0)
        alts[na++] = ali_nonneg(a, has_lo && lo > 0 ? (uint64_t)lo : 0, has_hi, has_hi ? (uint64_t)hi : 0);
    if (!has_lo || lo < 0) {
        uint64_t mlo = has_hi && hi < 0 ? (uint64_t)(-hi) : 1;
        alts[na++] = ali_ast_cat2(a, ali_ast_str(a, "-"), ali_nonneg(a, mlo, has_lo, has_lo ? (uint64_t)(-lo) : 0));
    }
    return ali_ast_alt(a, alts, na);
}

/* A non-negative decimal magnitude: integer part and fraction digits (no trailing zeros). */
typedef struct ali_dec {
    uint64_t ip;
    char fr[400];
    int nfr;
} ali_dec;

/* |x| as its shortest round-trip decimal in positional form; -1 when out of range. */
static int ali_dec_from(double x, ali_dec *d)
{
    if (x < 0)
        x = -x;
    if (!(x <= ALI_JSON_MAX_BOUND))
        return -1;
    char buf[64];
    for (int p = 1; p <= 17; p++) {
        snprintf(buf, sizeof buf, "%.*e", p - 1, x);
        if (strtod(buf, NULL) == x)
            break;
    }
    /* buf: D[.DDD]e[+-]XX */
    char dig[32];
    int nd = 0;
    const char *q = buf;
    for (; *q && *q != 'e'; q++)
        if (*q >= '0' && *q <= '9')
            dig[nd++] = *q;
    int e = atoi(q + 1); /* value = 0.dig * 10^(e+1) */
    memset(d, 0, sizeof *d);
    int ilen = e + 1;
    for (int i = 0; i < ilen; i++)
        d->ip = d->ip * 10 + (uint64_t)(i < nd ? dig[i] - '0' : 0);
    if (ilen < 0) {
        int z = -ilen;
        if (z + nd >= (int)sizeof d->fr)
            return -1;
        memset(d->fr, '0', (size_t)z);
        memcpy(d->fr + z, dig, (size_t)nd);
        d->nfr = z + nd;
    } else if (ilen < nd) {
        memcpy(d->fr, dig + ilen, (size_t)(nd - ilen));
        d->nfr = nd - ilen;
    }
    while (d->nfr > 0 && d->fr[d->nfr - 1] == '0')
        d->nfr--;
    return 0;
}

/* A bound on a fraction 0.g (g: digits, no trailing zeros). */
typedef struct ali_fb {
    int on, incl;
    const char *g;
    int n;
} ali_fb;

/* Digit strings s (empty allowed when allow_empty) with lo <(=) 0.s <(=) hi. */
static const ali_ast *ali_frac(ali_arena *a, ali_fb lo, ali_fb hi, int allow_empty)
{
    if (lo.on && lo.n == 0 && lo.incl)
        lo.on = 0; /* >= 0: always */
    if (hi.on && hi.n == 0 && !hi.incl)
        return ali_ast_nothing(); /* < 0: never */
    const ali_ast *d09 = ali_digits(a, '0', '9');
    int lo_pos = lo.on && lo.n == 0; /* > 0 */
    int hi_zero = hi.on && hi.n == 0; /* <= 0: all zeros */
    if (lo_pos && hi_zero)
        return ali_ast_nothing();
    if (!lo.on && !hi.on)
        return ali_ast_repeat(a, d09, allow_empty ? 0 : 1, -1);
    if (hi_zero && !lo.on)
        return ali_ast_repeat(a, ali_ast_str(a, "0"), allow_empty ? 0 : 1, -1);
    if (lo_pos && !hi.on)
        return ali_ast_cat3(a, ali_ast_repeat(a, ali_ast_str(a, "0"), 0, -1), ali_digits(a, '1', '9'),
                            ali_ast_repeat(a, d09, 0, -1));
    ali_astv v = {0};
    int empty_ok = (!lo.on || (lo.n == 0 && lo.incl)) && (!hi.on || hi.n > 0 || hi.incl);
    if (allow_empty && empty_ok)
        ali_astv_push(&v, ali_ast_empty());
    int g1 = lo.on ? (lo.n ? lo.g[0] - '0' : 0) : -1, h1 = hi.on ? (hi.n ? hi.g[0] - '0' : 0) : 10;
    /* digits group by outcome: below g1 fail, g1 tight-low, between free, h1 tight-high, above fail */
    for (int d = 0; d <= 9;) {
        if (d < g1 || d > h1) {
            d++;
            continue;
        }
        ali_fb nl = {0}, nh = {0};
        if (d == g1) {
            nl = lo;
            if (lo.n) {
                nl.g = lo.g + 1;
                nl.n = lo.n - 1;
            }
        }
        if (d == h1) {
            nh = hi;
            if (hi.n) {
                nh.g = hi.g + 1;
                nh.n = hi.n - 1;
            }
        }
        int e = d;
        if (d != g1 && d != h1) /* a run of free digits */
            while (e + 1 <= 9 && e + 1 != g1 && e + 1 != h1 && e + 1 <= h1)
                e++;
        ali_astv_push(&v, ali_ast_cat2(a, ali_digits(a, (char)('0' + d), (char)('0' + e)), ali_frac(a, nl, nh, 1)));
        d = e + 1;
    }
    return ali_astv_alt(a, &v);
}

/* The optional fraction part ("." digits) of a number whose fraction satisfies lo / hi. */
static const ali_ast *ali_frac_part(ali_arena *a, ali_fb lo, ali_fb hi)
{
    const ali_ast *none = ali_ast_empty();
    int empty_ok = (!lo.on || (lo.n == 0 && lo.incl)) && (!hi.on || hi.n > 0 || hi.incl);
    const ali_ast *dot = ali_ast_cat2(a, ali_ast_str(a, "."), ali_frac(a, lo, hi, 0));
    return empty_ok ? ali_ast_alt2(a, none, dot) : dot;
}

static const ali_ast *ali_uint_lit(ali_arena *a, uint64_t v)
{
    char s[24];
    int n = snprintf(s, sizeof s, "%llu", (unsigned long long)v);
    return ali_ast_lit(a, s, (size_t)n, 0);
}

/* Magnitudes m with lo <(=) m <(=) hi (hi.on == 0: unbounded); lo always on. */
typedef struct ali_mb {
    int on, incl;
    ali_dec d;
} ali_mb;

static const ali_ast *ali_mag(ali_arena *a, const ali_mb *lo, const ali_mb *hi)
{
    ali_fb lf = {1, lo->incl, lo->d.fr, lo->d.nfr}, hf = {1, hi->incl, hi->d.fr, hi->d.nfr}, off = {0};
    if (hi->on && lo->d.ip > hi->d.ip)
        return ali_ast_nothing();
    if (hi->on && lo->d.ip == hi->d.ip)
        return ali_ast_cat2(a, ali_uint_lit(a, lo->d.ip), ali_frac_part(a, lf, hf));
    const ali_ast *alts[3];
    int na = 0;
    alts[na++] = ali_ast_cat2(a, ali_uint_lit(a, lo->d.ip), ali_frac_part(a, lf, off));
    if (!hi->on || hi->d.ip > lo->d.ip + 1) { /* an open side stops at 18 integer digits */
        uint64_t top = hi->on ? hi->d.ip - 1 : (lo->d.ip + 1 > (uint64_t)ALI_JSON_INT_CAP ? (uint64_t)INT64_MAX
                                                                                        : (uint64_t)ALI_JSON_INT_CAP);
        alts[na++] = ali_ast_cat2(a, ali_nonneg(a, lo->d.ip + 1, 1, top), ali_frac_part(a, off, off));
    }
    if (hi->on)
        alts[na++] = ali_ast_cat2(a, ali_uint_lit(a, hi->d.ip), ali_frac_part(a, off, hf));
    return ali_ast_alt(a, alts, na);
}

const ali_ast *ali_json_num_range(ali_arena *a, ali_numbound lo, ali_numbound hi)
{
    ali_mb *m = calloc(4, sizeof *m); /* big (fraction buffers): off the stack */
    if (!m) {
        a->failed = 1;
        return ali_ast_nothing();
    }
    ali_dec dl, dh;
    if ((lo.on && ali_dec_from(lo.v, &dl) != 0) || (hi.on && ali_dec_from(hi.v, &dh) != 0)) {
        free(m);
        ali_errf(AL_EUNSUPPORTED, "number bound outside +-%g (or with too many digits)", ALI_JSON_MAX_BOUND);
        return NULL;
    }
    int lo_neg = lo.on && lo.v < 0, hi_neg = hi.on && hi.v < 0;
    const ali_ast *alts[2];
    int na = 0;
    /* x >= 0 */
    if (!hi_neg) {
        ali_mb *l = &m[0], *h = &m[1];
        l->on = 1;
        l->incl = 1;
        if (lo.on && !lo_neg) {
            l->d = dl;
            l->incl = lo.incl;
        }
        if (hi.on) {
            h->on = 1;
            h->incl = hi.incl;
            h->d = dh;
        }
        alts[na++] = ali_mag(a, l, h);
    }
    /* x < 0: "-" then magnitude m > 0 */
    if (!lo.on || lo_neg) {
        ali_mb *l = &m[2], *h = &m[3];
        l->on = 1;
        l->incl = 0; /* m > 0 */
        if (hi_neg) {
            l->d = dh;
            l->incl = hi.incl;
        }
        if (lo.on) {
            h->on = 1;
            h->incl = lo.incl;
            h->d = dl;
        }
        alts[na++] = ali_ast_cat2(a, ali_ast_str(a, "-"), ali_mag(a, l, h));
    }
    free(m);
    return ali_ast_alt(a, alts, na);
}
