/* json_value.c: grammar pieces for JSON values: separators, string characters and escapes, numbers,
 * any value to a depth, regex-to-string-content escaping, key exclusion, string formats. */
#include "engine/constrain/json.h"

#include <stdlib.h>
#include <string.h>

const ali_ast *ali_json_sep(ali_arena *a)
{
    return ali_ast_cat2(a, ali_ast_str(a, ","), ali_ast_opt(a, ali_ast_str(a, " ")));
}

const ali_ast *ali_json_colon(ali_arena *a)
{
    return ali_ast_cat2(a, ali_ast_str(a, ":"), ali_ast_opt(a, ali_ast_str(a, " ")));
}

static const ali_ast *ali_hex(ali_arena *a)
{
    ali_cpset s = {0};
    ali_cpset_add(&s, '0', '9');
    ali_cpset_add(&s, 'a', 'f');
    ali_cpset_add(&s, 'A', 'F');
    const ali_ast *x = ali_ast_class(a, &s, 0);
    ali_cpset_free(&s);
    return x;
}

/* Four hex digits that are not a surrogate (D800-DFFF): each escape is one character. */
static const ali_ast *ali_hex4(ali_arena *a)
{
    const ali_ast *h = ali_hex(a);
    ali_cpset s = {0};
    ali_cpset_add(&s, '0', '9');
    ali_cpset_add(&s, 'a', 'c');
    ali_cpset_add(&s, 'A', 'C');
    ali_cpset_add(&s, 'e', 'f');
    ali_cpset_add(&s, 'E', 'F');
    const ali_ast *first = ali_ast_class(a, &s, 0);
    ali_cpset_clear(&s);
    ali_cpset_add(&s, 'd', 'd');
    ali_cpset_add(&s, 'D', 'D');
    const ali_ast *dd = ali_ast_class(a, &s, 0);
    ali_cpset_free(&s);
    const ali_ast *k1[4] = {first, h, h, h};
    const ali_ast *k2[4] = {dd, ali_ast_range(a, '0', '7', 0), h, h};
    return ali_ast_alt2(a, ali_ast_cat(a, k1, 4), ali_ast_cat(a, k2, 4));
}

static const ali_ast *ali_raw_chars(ali_arena *a)
{
    ali_cpset s = {0};
    ali_cpset_add(&s, 0x20, ALI_CP_MAX);
    ali_cpset_remove(&s, '"', '"');
    ali_cpset_remove(&s, '\\', '\\');
    const ali_ast *x = ali_ast_class(a, &s, 1);
    ali_cpset_free(&s);
    return x;
}

const ali_ast *ali_json_char(ali_arena *a)
{
    ali_cpset s = {0};
    for (const char *p = "\"\\/bfnrt"; *p; p++)
        ali_cpset_add(&s, (uint32_t)*p, (uint32_t)*p);
    const ali_ast *simple = ali_ast_class(a, &s, 0);
    ali_cpset_free(&s);
    const ali_ast *esc = ali_ast_cat2(a, ali_ast_lit(a, "\\", 1, 1),
                                      ali_ast_alt2(a, simple, ali_ast_cat2(a, ali_ast_str(a, "u"), ali_hex4(a))));
    return ali_ast_alt2(a, ali_raw_chars(a), esc);
}

const ali_ast *ali_json_string(ali_arena *a, int32_t min, int32_t max)
{
    const ali_ast *q = ali_ast_str(a, "\"");
    return ali_ast_cat3(a, q, ali_ast_repeat(a, ali_json_char(a), min, max), q);
}

const ali_ast *ali_json_number(ali_arena *a)
{
    const ali_ast *d09 = ali_ast_range(a, '0', '9', 1);
    const ali_ast *intp = ali_ast_alt2(a, ali_ast_str(a, "0"),
                                       ali_ast_cat2(a, ali_ast_range(a, '1', '9', 1), ali_ast_repeat(a, d09, 0, 17)));
    const ali_ast *frac = ali_ast_opt(a, ali_ast_cat2(a, ali_ast_str(a, "."), ali_ast_repeat(a, d09, 1, -1)));
    ali_cpset s = {0};
    ali_cpset_add(&s, 'e', 'e');
    ali_cpset_add(&s, 'E', 'E');
    const ali_ast *e = ali_ast_class(a, &s, 1);
    ali_cpset_clear(&s);
    ali_cpset_add(&s, '+', '+');
    ali_cpset_add(&s, '-', '-');
    const ali_ast *sign = ali_ast_opt(a, ali_ast_class(a, &s, 1));
    ali_cpset_free(&s);
    const ali_ast *exp = ali_ast_opt(a, ali_ast_cat3(a, e, sign, ali_ast_repeat(a, d09, 1, ALI_JSON_EXP_DIGITS)));
    const ali_ast *k[4] = {ali_ast_opt(a, ali_ast_str(a, "-")), intp, frac, exp};
    return ali_ast_cat(a, k, 4);
}

static const ali_ast *ali_scalars(ali_arena *a)
{
    const ali_ast *k[5] = {ali_json_string(a, 0, -1), ali_json_number(a), ali_ast_str(a, "true"),
                           ali_ast_str(a, "false"), ali_ast_str(a, "null")};
    return ali_ast_alt(a, k, 5);
}

const ali_ast *ali_json_any_object(ali_arena *a, int depth)
{
    const ali_ast *v = ali_json_any(a, depth - 1);
    const ali_ast *pair = ali_ast_cat3(a, ali_json_string(a, 0, -1), ali_json_colon(a), v);
    return ali_ast_cat3(a, ali_ast_str(a, "{"), ali_ast_seplist(a, pair, ali_json_sep(a), 0, -1), ali_ast_str(a, "}"));
}

const ali_ast *ali_json_any(ali_arena *a, int depth)
{
    if (depth <= 0)
        return ali_scalars(a);
    const ali_ast *arr = ali_ast_cat3(a, ali_ast_str(a, "["),
                                      ali_ast_seplist(a, ali_json_any(a, depth - 1), ali_json_sep(a), 0, -1),
                                      ali_ast_str(a, "]"));
    const ali_ast *k[3] = {ali_scalars(a), ali_json_any_object(a, depth), arr};
    return ali_ast_alt(a, k, 3);
}

/* The escaped spellings of a character that cannot appear raw in a JSON string. */
static void ali_escapes_of(ali_arena *a, uint32_t c, ali_astv *out)
{
    static const char hex[] = "0123456789abcdef";
    const char *s = NULL;
    switch (c) {
    case '"': s = "\\\""; break;
    case '\\': s = "\\\\"; break;
    case '\b': s = "\\b"; break;
    case '\f': s = "\\f"; break;
    case '\n': s = "\\n"; break;
    case '\r': s = "\\r"; break;
    case '\t': s = "\\t"; break;
    default: break;
    }
    if (s)
        ali_astv_push(out, ali_ast_lit(a, s, 2, 1));
    if (c < 0x20) {
        char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        ali_astv_push(out, ali_ast_lit(a, u, 6, 1));
    }
}

const ali_ast *ali_json_escape(ali_arena *a, const ali_ast *x)
{
    switch (x->kind) {
    case ALI_AST_CLASS: {
        ali_cpset raw = {0};
        ali_astv alts = {0};
        for (int32_t i = 0; i < x->n; i++) {
            uint32_t lo = x->ranges[i].lo, hi = x->ranges[i].hi;
            ali_cpset_add(&raw, lo, hi);
            for (uint32_t c = lo; c <= hi && c < 0x20; c++)
                ali_escapes_of(a, c, &alts);
            if (lo <= '"' && hi >= '"')
                ali_escapes_of(a, '"', &alts);
            if (lo <= '\\' && hi >= '\\')
                ali_escapes_of(a, '\\', &alts);
        }
        ali_cpset_remove(&raw, 0, 0x1F);
        ali_cpset_remove(&raw, '"', '"');
        ali_cpset_remove(&raw, '\\', '\\');
        ali_astv_push(&alts, ali_ast_class(a, &raw, x->unit));
        ali_cpset_free(&raw);
        return ali_astv_alt(a, &alts);
    }
    case ALI_AST_CAT:
    case ALI_AST_ALT: {
        ali_astv v = {0};
        for (int32_t i = 0; i < x->n; i++)
            ali_astv_push(&v, ali_json_escape(a, x->kids[i]));
        return x->kind == ALI_AST_CAT ? ali_astv_cat(a, &v) : ali_astv_alt(a, &v);
    }
    case ALI_AST_REPEAT:
        return ali_ast_seplist(a, ali_json_escape(a, x->sub), x->sep ? ali_json_escape(a, x->sep) : NULL, x->min, x->max);
    case ALI_AST_COUNTED:
        return ali_ast_counted(a, ali_json_escape(a, x->sub), x->min, x->max);
    default: /* NOTHING, EMPTY; regex trees have no LIT / PROPS */
        return x;
    }
}

/* Next code point of a valid UTF-8 string at *i. */
static uint32_t ali_u8next(const char *s, size_t n, size_t *i)
{
    const uint8_t *p = (const uint8_t *)s + *i;
    uint32_t c = p[0];
    int k = c < 0x80 ? 0 : c < 0xE0 ? 1 : c < 0xF0 ? 2 : 3;
    if (k)
        c &= (uint32_t)(0x3F >> k);
    for (int j = 1; j <= k && *i + (size_t)j < n; j++)
        c = (c << 6) | (p[j] & 0x3F);
    *i += (size_t)k + 1;
    return c;
}

typedef struct ali_keyref {
    const char *s;
    size_t n;
} ali_keyref;

static int ali_keyref_cmp(const void *x, const void *y)
{
    const ali_keyref *a = x, *b = y;
    size_t m = a->n < b->n ? a->n : b->n;
    int c = memcmp(a->s, b->s, m);
    return c ? c : (a->n > b->n) - (a->n < b->n);
}

/* Content strings that differ from every key in k[0..n) (sorted, sharing the first `at` bytes). */
static const ali_ast *ali_not_in(ali_arena *a, const ali_keyref *k, int32_t n, size_t at, const ali_ast *free_tail)
{
    ali_astv alts = {0};
    int32_t i = 0;
    if (k[0].n == at) { /* a key ends here: the empty rest is taken */
        while (i < n && k[i].n == at)
            i++;
    } else {
        ali_astv_push(&alts, ali_ast_empty());
    }
    ali_cpset excl = {0};
    while (i < n) {
        size_t j0 = at;
        uint32_t c = ali_u8next(k[i].s, k[i].n, &j0);
        int32_t j = i;
        while (j < n && k[j].n >= j0 && memcmp(k[j].s + at, k[i].s + at, j0 - at) == 0)
            j++;
        if (c >= 0x20 && c != '"' && c != '\\') { /* raw-spellable: follow the key */
            ali_cpset_add(&excl, c, c);
            ali_astv_push(&alts, ali_ast_cat2(a, ali_ast_range(a, c, c, 1), ali_not_in(a, k + i, j - i, j0, free_tail)));
        }
        i = j;
    }
    /* any other first character, then anything */
    ali_cpset other = {0};
    ali_cpset_add(&other, 0x20, ALI_CP_MAX);
    ali_cpset_remove(&other, '"', '"');
    ali_cpset_remove(&other, '\\', '\\');
    for (int32_t r = 0; r < excl.n; r++)
        ali_cpset_remove(&other, excl.r[r].lo, excl.r[r].hi);
    ali_cpset_free(&excl);
    const ali_ast *oc = ali_ast_class(a, &other, 1);
    ali_cpset_free(&other);
    ali_cpset s = {0};
    for (const char *p = "\"\\/bfnrt"; *p; p++)
        ali_cpset_add(&s, (uint32_t)*p, (uint32_t)*p);
    const ali_ast *simple = ali_ast_class(a, &s, 0);
    ali_cpset_free(&s);
    const ali_ast *esc = ali_ast_cat2(a, ali_ast_lit(a, "\\", 1, 1),
                                      ali_ast_alt2(a, simple, ali_ast_cat2(a, ali_ast_str(a, "u"), ali_hex4(a))));
    ali_astv_push(&alts, ali_ast_cat2(a, ali_ast_alt2(a, oc, esc), free_tail));
    return ali_astv_alt(a, &alts);
}

const ali_ast *ali_json_key_not_in(ali_arena *a, const char *const *keys, const size_t *lens, int32_t n)
{
    const ali_ast *q = ali_ast_str(a, "\"");
    if (n == 0)
        return ali_json_string(a, 0, -1);
    ali_keyref *k = malloc((size_t)n * sizeof *k);
    if (!k) {
        a->failed = 1;
        return ali_ast_nothing();
    }
    int32_t m = 0;
    for (int32_t i = 0; i < n; i++)
        if (lens[i] <= ALI_JSON_KEY_EXCLUDE_MAX) { /* longer keys are not excluded (bounded recursion) */
            k[m].s = keys[i];
            k[m++].n = lens[i];
        }
    if (m == 0) {
        free(k);
        return ali_json_string(a, 0, -1);
    }
    n = m;
    qsort(k, (size_t)n, sizeof *k, ali_keyref_cmp);
    const ali_ast *free_tail = ali_ast_repeat(a, ali_json_char(a), 0, -1);
    const ali_ast *x = ali_ast_cat3(a, q, ali_not_in(a, k, n, 0, free_tail), q);
    free(k);
    return x;
}

#define ALI_YEAR "(?:0(?:0(?:0[1-9]|[1-9]\\d)|[1-9]\\d\\d)|[1-9]\\d{3})"
#define ALI_LEAP "(?:\\d\\d(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)"
#define ALI_DATE                                                                                             \
    "(?:" ALI_YEAR "-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\\d|30)|"  \
    "02-(?:0[1-9]|1\\d|2[0-8]))|" ALI_LEAP "-02-29)"
#define ALI_TIME "(?:[01]\\d|2[0-3]):[0-5]\\d:[0-5]\\d(?:\\.\\d+)?(?:Z|[+-](?:[01]\\d|2[0-3]):[0-5]\\d)"
#define ALI_LABEL "[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
#define ALI_OCTET "(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)"

const char *ali_json_format_regex(const char *f)
{
    static const struct {
        const char *name, *re;
    } fmts[] = {
        {"date", ALI_DATE},
        {"time", ALI_TIME},
        {"date-time", ALI_DATE "T" ALI_TIME},
        {"uuid", "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"},
        {"email", "[A-Za-z0-9._%+-]+@" ALI_LABEL "(?:\\." ALI_LABEL ")+"},
        {"ipv4", "(?:" ALI_OCTET "\\.){3}" ALI_OCTET},
        {"hostname", ALI_LABEL "(?:\\." ALI_LABEL ")*"},
    };
    for (size_t i = 0; i < sizeof fmts / sizeof fmts[0]; i++)
        if (strcmp(fmts[i].name, f) == 0)
            return fmts[i].re;
    return NULL;
}
