/* regex.c: recursive-descent regex parser producing the constraint syntax tree. */
#include "engine/constrain/regex.h"

#include <string.h>

typedef struct ali_rx {
    const uint8_t *s;
    size_t n, i;
    ali_arena *a;
    al_err err;
    int depth;
    int anchors; /* anchors seen so far (a quantified atom must not contain any) */
} ali_rx;

static const ali_ast *ali_rx_fail(ali_rx *p, al_err e, size_t at, const char *what)
{
    if (p->err == AL_OK) {
        p->err = e;
        if (e == AL_EUNSUPPORTED)
            ali_errf(e, "regex: %s at offset %zu is not supported", what, at);
        else
            ali_errf(e, "regex: %s at offset %zu", what, at);
    }
    return ali_ast_nothing();
}

static int ali_rx_peek(const ali_rx *p) { return p->i < p->n ? p->s[p->i] : -1; }

/* Decodes one UTF-8 code point at p->i; -1 (and an error) when invalid. */
static int32_t ali_rx_utf8(ali_rx *p)
{
    const uint8_t *s = p->s + p->i;
    size_t left = p->n - p->i;
    uint32_t c = s[0], need, min;
    if (c < 0x80) {
        p->i++;
        return (int32_t)c;
    }
    if (c >= 0xC2 && c <= 0xDF)
        need = 1, c &= 0x1F, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF)
        need = 2, c &= 0x0F, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4)
        need = 3, c &= 0x07, min = 0x10000;
    else
        goto bad;
    if (left < need + 1)
        goto bad;
    for (uint32_t k = 1; k <= need; k++) {
        if ((s[k] & 0xC0) != 0x80)
            goto bad;
        c = (c << 6) | (s[k] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        goto bad;
    p->i += need + 1;
    return (int32_t)c;
bad:
    ali_rx_fail(p, AL_EINVAL, p->i, "invalid UTF-8");
    return -1;
}

static int ali_hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Reads exactly k hex digits. */
static int32_t ali_rx_hex(ali_rx *p, int k, size_t at)
{
    uint32_t v = 0;
    for (int j = 0; j < k; j++) {
        int h = p->i < p->n ? ali_hexval(p->s[p->i]) : -1;
        if (h < 0) {
            ali_rx_fail(p, AL_EINVAL, at, "incomplete hex escape");
            return -1;
        }
        v = v * 16 + (uint32_t)h;
        p->i++;
    }
    if (v > 0x10FFFF) {
        ali_rx_fail(p, AL_EINVAL, at, "code point out of range in escape");
        return -1;
    }
    return (int32_t)v;
}

/* Escape after the backslash (p->i on the letter). Returns a code point >= 0, or -2 when the
 * escape is a class (added to cls), -1 on error. in_class: inside [...]. */
static int32_t ali_rx_escape(ali_rx *p, ali_cpset *cls, int in_class)
{
    size_t at = p->i - 1;
    if (p->i >= p->n) {
        ali_rx_fail(p, AL_EINVAL, at, "trailing backslash");
        return -1;
    }
    int c = p->s[p->i];
    if (c >= 0x80)
        return ali_rx_utf8(p);
    p->i++;
    switch (c) {
    case 'd': case 'D': case 'w': case 'W': case 's': case 'S':
        ali_cpset_add_perl(cls, (char)c);
        return -2;
    case 'n': return '\n';
    case 't': return '\t';
    case 'r': return '\r';
    case 'f': return '\f';
    case 'v': return '\v';
    case 'a': return 7;
    case 'x': return ali_rx_hex(p, 2, at);
    case 'u': return ali_rx_hex(p, 4, at);
    case 'U': return ali_rx_hex(p, 8, at);
    case '0': { /* octal: \0, \0o, \0oo */
        int32_t v = 0;
        for (int k = 0; k < 2 && p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '7'; k++)
            v = v * 8 + (p->s[p->i++] - '0');
        return v;
    }
    case 'b':
        if (in_class)
            return 8;
        ali_rx_fail(p, AL_EUNSUPPORTED, at, "word boundary \\b");
        return -1;
    case 'B':
        ali_rx_fail(p, AL_EUNSUPPORTED, at, "word boundary \\B");
        return -1;
    case 'p': case 'P':
        ali_rx_fail(p, AL_EUNSUPPORTED, at, "Unicode property class \\p / \\P");
        return -1;
    case 'N':
        ali_rx_fail(p, AL_EUNSUPPORTED, at, "named character \\N{...}");
        return -1;
    case 'k':
        ali_rx_fail(p, AL_EUNSUPPORTED, at, "backreference \\k<name>");
        return -1;
    default:
        break;
    }
    if (c >= '1' && c <= '9') {
        ali_rx_fail(p, in_class ? AL_EINVAL : AL_EUNSUPPORTED, at,
                    in_class ? "bad escape (octal or reference) in class" : "backreference");
        return -1;
    }
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
        ali_rx_fail(p, AL_EINVAL, at, "bad escape");
        return -1;
    }
    return c; /* escaped punctuation or space: itself */
}

static const ali_ast *ali_rx_alt(ali_rx *p, int start_ok, int *end_seen);

static const ali_ast *ali_rx_class(ali_rx *p)
{
    size_t at = p->i++; /* '[' */
    ali_cpset set = {0};
    int neg = 0, first = 1;
    if (ali_rx_peek(p) == '^') {
        neg = 1;
        p->i++;
    }
    for (;;) {
        int c = ali_rx_peek(p);
        if (c < 0) {
            ali_cpset_free(&set);
            return ali_rx_fail(p, AL_EINVAL, at, "unterminated character class");
        }
        if (c == ']' && !first) {
            p->i++;
            break;
        }
        first = 0;
        size_t item_at = p->i;
        int32_t lo;
        if (c == '\\') {
            p->i++;
            lo = ali_rx_escape(p, &set, 1);
        } else {
            lo = ali_rx_utf8(p);
        }
        if (lo == -1)
            break;
        /* a range? '-' followed by something other than ']' */
        if (ali_rx_peek(p) == '-' && p->i + 1 < p->n && p->s[p->i + 1] != ']') {
            p->i++;
            int32_t hi;
            ali_cpset dummy = {0};
            if (ali_rx_peek(p) == '\\') {
                p->i++;
                hi = ali_rx_escape(p, &dummy, 1);
            } else {
                hi = ali_rx_utf8(p);
            }
            ali_cpset_free(&dummy);
            if (hi == -1)
                break;
            if (lo == -2 || hi == -2) {
                ali_rx_fail(p, AL_EINVAL, item_at, "bad character range");
                break;
            }
            if (lo > hi) {
                ali_rx_fail(p, AL_EINVAL, item_at, "bad character range (reversed)");
                break;
            }
            ali_cpset_add(&set, (uint32_t)lo, (uint32_t)hi);
        } else if (lo >= 0) {
            ali_cpset_add(&set, (uint32_t)lo, (uint32_t)lo);
        }
    }
    if (p->err) {
        ali_cpset_free(&set);
        return ali_ast_nothing();
    }
    if (neg)
        ali_cpset_negate(&set);
    const ali_ast *x = ali_ast_class(p->a, &set, 1);
    ali_cpset_free(&set);
    return x;
}

/* (?...) extensions and plain groups; p->i on '('. */
static const ali_ast *ali_rx_group(ali_rx *p, int start_ok, int *end_seen)
{
    size_t at = p->i++;
    if (ali_rx_peek(p) == '?') {
        p->i++;
        int c = ali_rx_peek(p);
        if (c == ':') {
            p->i++;
        } else if (c == 'P' && p->i + 1 < p->n && p->s[p->i + 1] == '=') {
            return ali_rx_fail(p, AL_EUNSUPPORTED, at, "backreference (?P=name)");
        } else if (c == 'P' || (c == '<' && p->i + 1 < p->n && p->s[p->i + 1] != '=' && p->s[p->i + 1] != '!')) {
            p->i += c == 'P' ? 2 : 1;
            if (c == 'P' && (p->i > p->n || p->s[p->i - 1] != '<'))
                return ali_rx_fail(p, AL_EINVAL, at, "unknown extension (?P");
            size_t ns = p->i;
            while (p->i < p->n && (p->s[p->i] == '_' || (p->s[p->i] >= '0' && p->s[p->i] <= '9') ||
                                   ((p->s[p->i] | 0x20) >= 'a' && (p->s[p->i] | 0x20) <= 'z') || p->s[p->i] >= 0x80))
                p->i++;
            if (p->i == ns || ali_rx_peek(p) != '>' || (p->s[ns] >= '0' && p->s[ns] <= '9'))
                return ali_rx_fail(p, AL_EINVAL, at, "bad group name");
            p->i++;
        } else if (c == '=' || c == '!') {
            return ali_rx_fail(p, AL_EUNSUPPORTED, at, c == '=' ? "lookahead (?=" : "negative lookahead (?!");
        } else if (c == '<') {
            return ali_rx_fail(p, AL_EUNSUPPORTED, at, "lookbehind (?<= / (?<!");
        } else if (c == '#') {
            while (p->i < p->n && p->s[p->i] != ')')
                p->i++;
            if (p->i >= p->n)
                return ali_rx_fail(p, AL_EINVAL, at, "missing ), unterminated comment");
            p->i++;
            return ali_ast_empty();
        } else if (c == '>') {
            return ali_rx_fail(p, AL_EUNSUPPORTED, at, "atomic group (?>");
        } else if (c == '(') {
            return ali_rx_fail(p, AL_EUNSUPPORTED, at, "conditional group (?(");
        } else if (c >= 0 && strchr("aiLmsux-", c)) {
            return ali_rx_fail(p, AL_EUNSUPPORTED, at, "inline flags (?aiLmsux)");
        } else {
            return ali_rx_fail(p, AL_EINVAL, at, "unknown extension (?");
        }
    }
    if (++p->depth > ALI_REGEX_MAX_DEPTH)
        return ali_rx_fail(p, AL_ERANGE, at, "groups nested too deeply");
    const ali_ast *x = ali_rx_alt(p, start_ok, end_seen);
    p->depth--;
    if (p->err)
        return x;
    if (ali_rx_peek(p) != ')')
        return ali_rx_fail(p, AL_EINVAL, at, "missing ), unterminated subpattern");
    p->i++;
    return x;
}

/* A {n}, {n,}, {,m}, {n,m} quantifier at p->i ('{'); 0 (p->i unchanged) when it is not one. */
static int ali_rx_braces(ali_rx *p, int32_t *min, int32_t *max)
{
    size_t j = p->i + 1;
    int64_t a = -1, b = -1;
    int comma = 0;
    while (j < p->n && p->s[j] >= '0' && p->s[j] <= '9') {
        a = (a < 0 ? 0 : a) * 10 + (p->s[j++] - '0');
        if (a > 1000000000)
            a = 1000000000;
    }
    if (j < p->n && p->s[j] == ',') {
        comma = 1;
        j++;
        while (j < p->n && p->s[j] >= '0' && p->s[j] <= '9') {
            b = (b < 0 ? 0 : b) * 10 + (p->s[j++] - '0');
            if (b > 1000000000)
                b = 1000000000;
        }
    }
    if (j >= p->n || p->s[j] != '}' || (!comma && a < 0))
        return 0;
    size_t at = p->i;
    p->i = j + 1;
    *min = a < 0 ? 0 : (int32_t)a;
    *max = comma ? (b < 0 ? -1 : (int32_t)b) : *min;
    if (*min > ALI_REGEX_MAX_COUNT || *max > ALI_REGEX_MAX_COUNT) {
        ali_rx_fail(p, AL_ERANGE, at, "repetition count too large (limit 100000)");
        return -1;
    }
    if (*max >= 0 && *min > *max) {
        ali_rx_fail(p, AL_EINVAL, at, "min repeat greater than max repeat");
        return -1;
    }
    return 1;
}

static int ali_rx_is_quant(ali_rx *p)
{
    int c = ali_rx_peek(p);
    if (c == '*' || c == '+' || c == '?')
        return 1;
    if (c == '{') {
        size_t save = p->i;
        int32_t a, b;
        int r = ali_rx_braces(p, &a, &b); /* a bad count sets the error here */
        p->i = save;
        return r != 0;
    }
    return 0;
}

static const ali_ast *ali_rx_cat(ali_rx *p, int start_ok, int *end_seen)
{
    ali_astv v = {0};
    int consumed = 0;
    size_t dollar_at = 0;
    while (!p->err) {
        int c = ali_rx_peek(p);
        if (c < 0 || c == '|' || c == ')')
            break;
        size_t at = p->i;
        if (ali_rx_is_quant(p)) {
            ali_rx_fail(p, AL_EINVAL, at, "nothing to repeat");
            break;
        }
        if (c == '^' || (c == '\\' && p->i + 1 < p->n && p->s[p->i + 1] == 'A')) {
            p->i += c == '^' ? 1 : 2;
            if (!start_ok || consumed)
                ali_rx_fail(p, AL_EUNSUPPORTED, at, "^ anchor not at the start of the pattern");
            else if (ali_rx_is_quant(p))
                ali_rx_fail(p, AL_EINVAL, p->i, "nothing to repeat");
            p->anchors++;
            continue;
        }
        if (c == '$' || (c == '\\' && p->i + 1 < p->n && (p->s[p->i + 1] == 'Z' || p->s[p->i + 1] == 'z'))) {
            p->i += c == '$' ? 1 : 2;
            if (ali_rx_is_quant(p))
                ali_rx_fail(p, AL_EINVAL, p->i, "nothing to repeat");
            if (!*end_seen)
                dollar_at = at;
            *end_seen = 1;
            p->anchors++;
            continue;
        }
        if (*end_seen) {
            ali_rx_fail(p, AL_EUNSUPPORTED, dollar_at, "$ anchor not at the end of the pattern");
            break;
        }
        int anchors_before = p->anchors, group_end = 0;
        const ali_ast *x;
        if (c == '(') {
            x = ali_rx_group(p, start_ok && !consumed, &group_end);
        } else if (c == '[') {
            x = ali_rx_class(p);
        } else if (c == '.') {
            p->i++;
            ali_cpset s = {0};
            ali_cpset_add(&s, '\n', '\n');
            ali_cpset_negate(&s);
            x = ali_ast_class(p->a, &s, 1);
            ali_cpset_free(&s);
        } else if (c == '\\') {
            p->i++;
            ali_cpset s = {0};
            int32_t cp = ali_rx_escape(p, &s, 0);
            if (cp >= 0)
                ali_cpset_add(&s, (uint32_t)cp, (uint32_t)cp);
            x = cp == -1 ? ali_ast_nothing() : ali_ast_class(p->a, &s, 1);
            ali_cpset_free(&s);
        } else {
            int32_t cp = ali_rx_utf8(p);
            x = cp < 0 ? ali_ast_nothing() : ali_ast_range(p->a, (uint32_t)cp, (uint32_t)cp, 1);
        }
        if (p->err)
            break;
        consumed = 1;
        /* quantifiers */
        int nq = 0;
        while (ali_rx_is_quant(p) && !p->err) {
            size_t qat = p->i;
            if (nq++ > 0) {
                ali_rx_fail(p, AL_EINVAL, qat, "multiple repeat");
                break;
            }
            int32_t min = 0, max = -1;
            int q = ali_rx_peek(p);
            if (q == '*')
                p->i++;
            else if (q == '+')
                p->i++, min = 1;
            else if (q == '?')
                p->i++, max = 1;
            else if (ali_rx_braces(p, &min, &max) < 0)
                break;
            if (ali_rx_peek(p) == '?' || ali_rx_peek(p) == '+') /* lazy / possessive: as greedy */
                p->i++;
            if (p->anchors != anchors_before && (max < 0 || max > 1)) {
                ali_rx_fail(p, AL_EUNSUPPORTED, qat, "anchor inside a repeated group");
                break;
            }
            x = ali_ast_repeat(p->a, x, min, max);
        }
        if (group_end) {
            *end_seen = 1;
            dollar_at = at;
        }
        ali_astv_push(&v, x);
    }
    if (p->err) {
        ali_astv_free(&v);
        return ali_ast_nothing();
    }
    return ali_astv_cat(p->a, &v);
}

static const ali_ast *ali_rx_alt(ali_rx *p, int start_ok, int *end_seen)
{
    ali_astv v = {0};
    for (;;) {
        int e = 0;
        ali_astv_push(&v, ali_rx_cat(p, start_ok, &e));
        if (e)
            *end_seen = 1;
        if (p->err || ali_rx_peek(p) != '|')
            break;
        p->i++;
    }
    if (p->err) {
        ali_astv_free(&v);
        return ali_ast_nothing();
    }
    return ali_astv_alt(p->a, &v);
}

al_err ali_regex_parse(ali_arena *a, const char *re, size_t len, const ali_ast **out)
{
    ali_rx p = {.s = (const uint8_t *)re, .n = len, .a = a};
    int end_seen = 0;
    const ali_ast *x = ali_rx_alt(&p, 1, &end_seen);
    if (p.err == AL_OK && p.i < p.n)
        ali_rx_fail(&p, AL_EINVAL, p.i, "unbalanced parenthesis");
    if (p.err == AL_OK && a->failed)
        return ali_errf(AL_ENOMEM, "regex: out of memory (or pattern too large)");
    if (p.err)
        return p.err;
    *out = x;
    return AL_OK;
}
