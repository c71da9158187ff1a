/* ast.c: the arena and the simplifying constructors of the constraint syntax tree. */
#include "engine/constrain/ast.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ali_arena_blk {
    struct ali_arena_blk *next;
    size_t cap;
    _Alignas(16) unsigned char data[];
};

#define ALI_ARENA_BLK (64 * 1024)

void ali_arena_init(ali_arena *a, size_t limit)
{
    memset(a, 0, sizeof *a);
    a->limit = limit;
}

void ali_arena_free(ali_arena *a)
{
    struct ali_arena_blk *b = a->blk;
    while (b) {
        struct ali_arena_blk *n = b->next;
        free(b);
        b = n;
    }
    a->blk = NULL;
    a->used = a->total = 0;
}

void *ali_arena_alloc(ali_arena *a, size_t bytes)
{
    if (a->failed)
        return NULL;
    bytes = (bytes + 15) & ~(size_t)15;
    if (!a->blk || a->used + bytes > a->blk->cap) {
        size_t cap = bytes > ALI_ARENA_BLK ? bytes : ALI_ARENA_BLK;
        if (a->total + cap > a->limit) {
            a->failed = 1;
            return NULL;
        }
        struct ali_arena_blk *b = malloc(sizeof *b + cap);
        if (!b) {
            a->failed = 1;
            return NULL;
        }
        b->next = a->blk;
        b->cap = cap;
        a->blk = b;
        a->used = 0;
        a->total += cap;
    }
    void *p = a->blk->data + a->used;
    a->used += bytes;
    memset(p, 0, bytes);
    return p;
}

char *ali_arena_strdup(ali_arena *a, const char *s, size_t n)
{
    char *p = ali_arena_alloc(a, n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

char *ali_arena_printf(ali_arena *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *p = ali_arena_alloc(a, (size_t)(n < 0 ? 0 : n) + 1);
    if (!p)
        return (char *)"";
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

static const ali_ast ali_nothing_node = {.kind = ALI_AST_NOTHING};
static const ali_ast ali_empty_node = {.kind = ALI_AST_EMPTY};

const ali_ast *ali_ast_nothing(void) { return &ali_nothing_node; }
const ali_ast *ali_ast_empty(void) { return &ali_empty_node; }

static ali_ast *ali_node(ali_arena *a, ali_ast_kind k)
{
    ali_ast *x = ali_arena_alloc(a, sizeof *x);
    if (x)
        x->kind = k;
    return x;
}

const ali_ast *ali_ast_lit(ali_arena *a, const void *bytes, size_t n, int unit)
{
    if (n == 0)
        return ali_ast_empty();
    ali_ast *x = ali_node(a, ALI_AST_LIT);
    uint8_t *b = ali_arena_alloc(a, n);
    if (!x || !b || n > INT32_MAX)
        return ali_ast_nothing();
    memcpy(b, bytes, n);
    x->bytes = b;
    x->n = (int32_t)n;
    x->unit = (uint8_t)(unit != 0);
    return x;
}

const ali_ast *ali_ast_str(ali_arena *a, const char *s) { return ali_ast_lit(a, s, strlen(s), 0); }

const ali_ast *ali_ast_class(ali_arena *a, ali_cpset *s, int unit)
{
    if (s->failed) {
        a->failed = 1;
        return ali_ast_nothing();
    }
    ali_cpset_norm(s);
    if (s->failed) {
        a->failed = 1;
        return ali_ast_nothing();
    }
    if (s->n == 0)
        return ali_ast_nothing();
    ali_ast *x = ali_node(a, ALI_AST_CLASS);
    ali_cprange *r = ali_arena_alloc(a, (size_t)s->n * sizeof *r);
    if (!x || !r)
        return ali_ast_nothing();
    memcpy(r, s->r, (size_t)s->n * sizeof *r);
    x->ranges = r;
    x->n = s->n;
    x->unit = (uint8_t)(unit != 0);
    return x;
}

const ali_ast *ali_ast_range(ali_arena *a, uint32_t lo, uint32_t hi, int unit)
{
    ali_cpset s = {0};
    ali_cpset_add(&s, lo, hi);
    const ali_ast *x = ali_ast_class(a, &s, unit);
    ali_cpset_free(&s);
    return x;
}

static const ali_ast *ali_ast_list(ali_arena *a, ali_ast_kind k, const ali_ast *const *kids, int32_t n)
{
    int32_t m = 0, flat = 0;
    for (int32_t i = 0; i < n; i++) {
        const ali_ast *c = kids[i];
        if (k == ALI_AST_CAT && c->kind == ALI_AST_NOTHING)
            return ali_ast_nothing();
        if ((k == ALI_AST_CAT && c->kind == ALI_AST_EMPTY) || (k == ALI_AST_ALT && c->kind == ALI_AST_NOTHING))
            continue;
        if (c->kind == k) /* flatten nested lists of the same kind */
            flat += c->n;
        else
            flat++;
        m++;
    }
    if (m == 0)
        return k == ALI_AST_CAT ? ali_ast_empty() : ali_ast_nothing();
    if (m == 1)
        for (int32_t i = 0; i < n; i++)
            if (!((k == ALI_AST_CAT && kids[i]->kind == ALI_AST_EMPTY) ||
                  (k == ALI_AST_ALT && kids[i]->kind == ALI_AST_NOTHING)))
                return kids[i];
    ali_ast *x = ali_node(a, k);
    const ali_ast **v = ali_arena_alloc(a, (size_t)flat * sizeof *v);
    if (!x || !v)
        return ali_ast_nothing();
    int32_t w = 0;
    for (int32_t i = 0; i < n; i++) {
        const ali_ast *c = kids[i];
        if ((k == ALI_AST_CAT && c->kind == ALI_AST_EMPTY) || (k == ALI_AST_ALT && c->kind == ALI_AST_NOTHING))
            continue;
        if (c->kind == k)
            for (int32_t j = 0; j < c->n; j++)
                v[w++] = c->kids[j];
        else
            v[w++] = c;
    }
    x->kids = v;
    x->n = w;
    return x;
}

const ali_ast *ali_ast_cat(ali_arena *a, const ali_ast *const *kids, int32_t n)
{
    return ali_ast_list(a, ALI_AST_CAT, kids, n);
}

const ali_ast *ali_ast_alt(ali_arena *a, const ali_ast *const *kids, int32_t n)
{
    return ali_ast_list(a, ALI_AST_ALT, kids, n);
}

const ali_ast *ali_ast_cat2(ali_arena *a, const ali_ast *x, const ali_ast *y)
{
    const ali_ast *k[2] = {x, y};
    return ali_ast_cat(a, k, 2);
}

const ali_ast *ali_ast_cat3(ali_arena *a, const ali_ast *x, const ali_ast *y, const ali_ast *z)
{
    const ali_ast *k[3] = {x, y, z};
    return ali_ast_cat(a, k, 3);
}

const ali_ast *ali_ast_alt2(ali_arena *a, const ali_ast *x, const ali_ast *y)
{
    const ali_ast *k[2] = {x, y};
    return ali_ast_alt(a, k, 2);
}

const ali_ast *ali_ast_repeat(ali_arena *a, const ali_ast *x, int32_t min, int32_t max)
{
    if (max >= 0 && min > max)
        return ali_ast_nothing();
    if (x->kind == ALI_AST_NOTHING)
        return min == 0 ? ali_ast_empty() : ali_ast_nothing();
    if (x->kind == ALI_AST_EMPTY || max == 0)
        return ali_ast_empty();
    if (min == 1 && max == 1)
        return x;
    ali_ast *r = ali_node(a, ALI_AST_REPEAT);
    if (!r)
        return ali_ast_nothing();
    r->sub = x;
    r->min = min;
    r->max = max;
    return r;
}

const ali_ast *ali_ast_opt(ali_arena *a, const ali_ast *x) { return ali_ast_repeat(a, x, 0, 1); }

const ali_ast *ali_ast_seplist(ali_arena *a, const ali_ast *x, const ali_ast *sep, int32_t min, int32_t max)
{
    if (!sep || sep->kind == ALI_AST_EMPTY)
        return ali_ast_repeat(a, x, min, max);
    if (max >= 0 && min > max)
        return ali_ast_nothing();
    if (sep->kind == ALI_AST_NOTHING)
        return min > 1 ? ali_ast_nothing() : ali_ast_repeat(a, x, min, 1);
    if (x->kind == ALI_AST_NOTHING || max == 0)
        return min == 0 ? ali_ast_empty() : ali_ast_nothing();
    if (max == 1)
        return min == 0 ? ali_ast_opt(a, x) : x;
    ali_ast *r = ali_node(a, ALI_AST_REPEAT);
    if (!r)
        return ali_ast_nothing();
    r->sub = x;
    r->sep = sep;
    r->min = min;
    r->max = max;
    return r;
}

const ali_ast *ali_ast_props(ali_arena *a, const ali_ast *const *pairs, const uint8_t *req, int32_t n,
                             const ali_ast *sep, const ali_ast *extra)
{
    int32_t m = 0;
    for (int32_t i = 0; i < n; i++) {
        if (pairs[i]->kind == ALI_AST_NOTHING && req[i])
            return ali_ast_nothing();
        if (pairs[i]->kind != ALI_AST_NOTHING)
            m++;
    }
    if (extra && extra->kind == ALI_AST_NOTHING)
        extra = NULL;
    ali_ast *x = ali_node(a, ALI_AST_PROPS);
    const ali_ast **v = ali_arena_alloc(a, (size_t)(m ? m : 1) * sizeof *v);
    uint8_t *r = ali_arena_alloc(a, (size_t)(m ? m : 1));
    if (!x || !v || !r)
        return ali_ast_nothing();
    int32_t w = 0;
    for (int32_t i = 0; i < n; i++)
        if (pairs[i]->kind != ALI_AST_NOTHING) {
            v[w] = pairs[i];
            r[w++] = req[i] ? 1 : 0;
        }
    x->kids = v;
    x->req = r;
    x->n = m;
    x->sep = sep;
    x->extra = extra;
    return x;
}

const ali_ast *ali_ast_counted(ali_arena *a, const ali_ast *x, int32_t min, int32_t max)
{
    if (max >= 0 && min > max)
        return ali_ast_nothing();
    if (x->kind == ALI_AST_NOTHING)
        return x;
    if (min <= 0 && max < 0)
        return x;
    ali_ast *r = ali_node(a, ALI_AST_COUNTED);
    if (!r)
        return ali_ast_nothing();
    r->sub = x;
    r->min = min;
    r->max = max;
    return r;
}

void ali_astv_push(ali_astv *l, const ali_ast *x)
{
    if (l->failed)
        return;
    if (l->n == l->cap) {
        int32_t nc = l->cap ? l->cap * 2 : 8;
        const ali_ast **v = realloc(l->v, (size_t)nc * sizeof *v);
        if (!v) {
            l->failed = 1;
            return;
        }
        l->v = v;
        l->cap = nc;
    }
    l->v[l->n++] = x;
}

void ali_astv_free(ali_astv *l)
{
    free(l->v);
    memset(l, 0, sizeof *l);
}

const ali_ast *ali_astv_cat(ali_arena *a, ali_astv *l)
{
    const ali_ast *x = l->failed ? (a->failed = 1, ali_ast_nothing()) : ali_ast_cat(a, l->v, l->n);
    ali_astv_free(l);
    return x;
}

const ali_ast *ali_astv_alt(ali_arena *a, ali_astv *l)
{
    const ali_ast *x = l->failed ? (a->failed = 1, ali_ast_nothing()) : ali_ast_alt(a, l->v, l->n);
    ali_astv_free(l);
    return x;
}
