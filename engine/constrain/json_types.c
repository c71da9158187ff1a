/* json_types.c: JSON-schema types to syntax trees: enum / const literals, strings (length,
 * pattern, format), exact integer and decimal ranges, objects in schema order, arrays. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/constrain/json_schema_int.h"
#include "engine/constrain/regex.h"

/* A JSON value as a literal (enum / const), containers with the usual separators. */
static const ali_ast *ali_js_lit_at(ali_js *c, const json_t *v, int depth)
{
    ali_arena *a = c->a;
    char buf[64];
    if (depth > ALI_JSON_MAX_NESTING)
        return ali_js_fail(c, AL_ERANGE, "enum / const value nested deeper than %d", ALI_JSON_MAX_NESTING);
    switch (json_typeof(v)) {
    case JSON_STRING: {
        char *s = json_dumps(v, JSON_ENCODE_ANY);
        if (!s)
            return ali_js_fail(c, AL_ENOMEM, "cannot serialise a string");
        const ali_ast *x = ali_ast_str(a, s);
        free(s);
        return x;
    }
    case JSON_INTEGER:
        snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v));
        return ali_ast_str(a, buf);
    case JSON_REAL: {
        double d = json_real_value(v);
        for (int p = 1; p <= 17; p++) {
            snprintf(buf, sizeof buf, "%.*g", p, d);
            if (strtod(buf, NULL) == d)
                break;
        }
        return ali_ast_str(a, buf);
    }
    case JSON_TRUE:
        return ali_ast_str(a, "true");
    case JSON_FALSE:
        return ali_ast_str(a, "false");
    case JSON_NULL:
        return ali_ast_str(a, "null");
    case JSON_ARRAY: {
        ali_astv l = {0};
        ali_astv_push(&l, ali_ast_str(a, "["));
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i)
                ali_astv_push(&l, ali_json_sep(a));
            ali_astv_push(&l, ali_js_lit_at(c, json_array_get(v, i), depth + 1));
        }
        ali_astv_push(&l, ali_ast_str(a, "]"));
        return ali_astv_cat(a, &l);
    }
    case JSON_OBJECT: {
        ali_astv l = {0};
        const char *k;
        json_t *x;
        int first = 1;
        ali_astv_push(&l, ali_ast_str(a, "{"));
        json_object_foreach((json_t *)v, k, x) {
            json_t *ks = json_string(k);
            if (!first)
                ali_astv_push(&l, ali_json_sep(a));
            first = 0;
            ali_astv_push(&l, ali_js_lit_at(c, ks, depth + 1));
            json_decref(ks);
            ali_astv_push(&l, ali_json_colon(a));
            ali_astv_push(&l, ali_js_lit_at(c, x, depth + 1));
        }
        ali_astv_push(&l, ali_ast_str(a, "}"));
        return ali_astv_cat(a, &l);
    }
    }
    return ali_ast_nothing();
}

static const ali_ast *ali_js_lit(ali_js *c, const json_t *v) { return ali_js_lit_at(c, v, 0); }

/* Does value v have JSON Schema type name t? */
static int ali_js_type_is(const json_t *v, const char *t)
{
    if (strcmp(t, "integer") == 0)
        return json_is_integer(v) || (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)));
    if (strcmp(t, "number") == 0)
        return json_is_number(v);
    if (strcmp(t, "string") == 0)
        return json_is_string(v);
    if (strcmp(t, "boolean") == 0)
        return json_is_boolean(v);
    if (strcmp(t, "null") == 0)
        return json_is_null(v);
    if (strcmp(t, "object") == 0)
        return json_is_object(v);
    if (strcmp(t, "array") == 0)
        return json_is_array(v);
    return 0;
}

/* The type names of s (NULL entries when absent); returns the count or -1 on error. */
static int ali_js_types(ali_js *c, const json_t *s, const char *ptr, const char *names[8])
{
    const json_t *t = json_object_get(s, "type");
    int n = 0;
    static const char *const known[] = {"null", "boolean", "object", "array", "number", "integer", "string", NULL};
    if (!t)
        return 0;
    if (json_is_string(t)) {
        names[n++] = json_string_value(t);
    } else if (json_is_array(t) && json_array_size(t) > 0) {
        for (size_t i = 0; i < json_array_size(t); i++) {
            const json_t *x = json_array_get(t, i);
            if (!json_is_string(x) || n >= 7) {
                ali_js_fail(c, AL_EINVAL, "'type' must be a string or an array of strings at %s/type", ptr);
                return -1;
            }
            names[n++] = json_string_value(x);
        }
    } else {
        ali_js_fail(c, AL_EINVAL, "'type' must be a string or an array of strings at %s/type", ptr);
        return -1;
    }
    for (int i = 0; i < n; i++)
        if (!ali_js_in(known, names[i])) {
            ali_js_fail(c, AL_EINVAL, "unknown type '%s' at %s/type", names[i], ptr);
            return -1;
        }
    return n;
}

static const ali_ast *ali_js_enum(ali_js *c, const json_t *s, const char *ptr, const char **types, int nt)
{
    const json_t *e = json_object_get(s, "enum"), *k = json_object_get(s, "const");
    if (e && !json_is_array(e))
        return ali_js_fail(c, AL_EINVAL, "'enum' must be an array at %s/enum", ptr);
    ali_astv alts = {0};
    size_t n = e ? json_array_size(e) : 1;
    for (size_t i = 0; i < n; i++) {
        const json_t *v = e ? json_array_get(e, i) : k;
        if (e && k && !json_equal((json_t *)v, (json_t *)k))
            continue;
        int ok = nt == 0;
        for (int j = 0; j < nt && !ok; j++)
            ok = ali_js_type_is(v, types[j]);
        if (ok)
            ali_astv_push(&alts, ali_js_lit(c, v));
    }
    return ali_astv_alt(c->a, &alts);
}

/* A non-negative integer keyword (absent: def). */
static int64_t ali_js_count(ali_js *c, const json_t *s, const char *ptr, const char *kw, int64_t def)
{
    const json_t *v = json_object_get(s, kw);
    if (!v)
        return def;
    double d = json_is_integer(v) ? (double)json_integer_value(v) : json_is_real(v) ? json_real_value(v) : -1;
    if (d < 0 || d != floor(d)) {
        ali_js_fail(c, AL_EINVAL, "'%s' must be a non-negative integer at %s/%s", kw, ptr, kw);
        return def;
    }
    return d > 1e15 ? (int64_t)1e15 : (int64_t)d;
}

static const ali_ast *ali_js_string(ali_js *c, const json_t *s, const char *ptr)
{
    ali_arena *a = c->a;
    int64_t mn = ali_js_count(c, s, ptr, "minLength", 0), mx = ali_js_count(c, s, ptr, "maxLength", -1);
    const json_t *pat = json_object_get(s, "pattern"), *fmt = json_object_get(s, "format");
    if (c->err)
        return ali_ast_nothing();
    if (mn > ALI_JSON_MAX_COUNT)
        return ali_js_fail(c, AL_ERANGE, "minLength %lld above the supported %d at %s/minLength", (long long)mn,
                           ALI_JSON_MAX_COUNT, ptr);
    if (mx > ALI_JSON_MAX_COUNT)
        mx = -1; /* longer than any output we will generate */
    if (pat && !json_is_string(pat))
        return ali_js_fail(c, AL_EINVAL, "'pattern' must be a string at %s/pattern", ptr);
    if (fmt && !json_is_string(fmt))
        return ali_js_fail(c, AL_EINVAL, "'format' must be a string at %s/format", ptr);
    const char *fre = fmt ? ali_json_format_regex(json_string_value(fmt)) : NULL;
    if (pat && fre)
        return ali_js_fail(c, AL_EUNSUPPORTED, "'pattern' together with format '%s' at %s", json_string_value(fmt),
                           ali_js_at(ptr));
    const ali_ast *q = ali_ast_str(a, "\""), *content;
    if (pat || fre) {
        const char *re = pat ? json_string_value(pat) : fre;
        size_t rl = pat ? json_string_length(pat) : strlen(fre);
        const ali_ast *rx;
        al_err e = ali_regex_parse(a, re, rl, &rx);
        if (e != AL_OK) {
            c->err = e;
            ali_errctx(e, "json schema: %s/%s", ptr, pat ? "pattern" : "format");
            return ali_ast_nothing();
        }
        content = ali_json_escape(a, rx);
        if (mn > 0 || mx >= 0)
            content = ali_ast_counted(a, content, (int32_t)mn, (int32_t)mx);
    } else {
        content = ali_ast_repeat(a, ali_json_char(a), (int32_t)mn, (int32_t)mx);
    }
    return ali_ast_cat3(a, q, content, q);
}

/* Numeric bounds (draft 4 boolean exclusive* too); the tightest of each side. */
static int ali_js_bounds(ali_js *c, const json_t *s, const char *ptr, ali_numbound *lo, ali_numbound *hi)
{
    static const char *const kws[4] = {"minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"};
    memset(lo, 0, sizeof *lo);
    memset(hi, 0, sizeof *hi);
    const json_t *emin = json_object_get(s, "exclusiveMinimum"), *emax = json_object_get(s, "exclusiveMaximum");
    for (int k = 0; k < 4; k++) {
        const json_t *v = json_object_get(s, kws[k]);
        if (!v || json_is_boolean(v)) {
            if (v && (k == 0 || k == 2)) {
                ali_js_fail(c, AL_EINVAL, "'%s' must be a number at %s/%s", kws[k], ptr, kws[k]);
                return -1;
            }
            continue;
        }
        if (!json_is_number(v)) {
            ali_js_fail(c, AL_EINVAL, "'%s' must be a number at %s/%s", kws[k], ptr, kws[k]);
            return -1;
        }
        double d = json_number_value(v);
        if (fabs(d) > ALI_JSON_MAX_BOUND) {
            ali_js_fail(c, AL_EUNSUPPORTED, "'%s' %g outside the supported +-%g at %s/%s", kws[k], d,
                        ALI_JSON_MAX_BOUND, ptr, kws[k]);
            return -1;
        }
        int incl = k == 0 ? !json_is_true(emin) : k == 2 ? !json_is_true(emax) : 0;
        ali_numbound *b = k < 2 ? lo : hi;
        int tighter = !b->on || (k < 2 ? d > b->v : d < b->v) || (d == b->v && !incl);
        if (tighter) {
            b->on = 1;
            b->v = d;
            b->incl = incl;
        }
    }
    return 0;
}

static const ali_ast *ali_js_integer(ali_js *c, const json_t *s, const char *ptr)
{
    ali_numbound lo, hi;
    if (ali_js_bounds(c, s, ptr, &lo, &hi) != 0)
        return ali_ast_nothing();
    int64_t l = 0, h = 0;
    if (lo.on)
        l = lo.incl ? (int64_t)ceil(lo.v) : (int64_t)floor(lo.v) + 1;
    if (hi.on)
        h = hi.incl ? (int64_t)floor(hi.v) : (int64_t)ceil(hi.v) - 1;
    return ali_json_int_range(c->a, lo.on, l, hi.on, h);
}

static const ali_ast *ali_js_number(ali_js *c, const json_t *s, const char *ptr)
{
    ali_numbound lo, hi;
    if (ali_js_bounds(c, s, ptr, &lo, &hi) != 0)
        return ali_ast_nothing();
    if (!lo.on && !hi.on)
        return ali_json_number(c->a);
    const ali_ast *x = ali_json_num_range(c->a, lo, hi);
    if (!x) {
        ali_errctx(AL_EUNSUPPORTED, "json schema: at %s", ali_js_at(ptr));
        c->err = AL_EUNSUPPORTED;
        return ali_ast_nothing();
    }
    return x;
}

static const ali_ast *ali_js_keylit(ali_js *c, const char *k)
{
    json_t *ks = json_string(k);
    if (!ks)
        return ali_js_fail(c, AL_EINVAL, "property name is not valid UTF-8");
    const ali_ast *x = ali_js_lit(c, ks);
    json_decref(ks);
    return x;
}

static const ali_ast *ali_js_object(ali_js *c, const json_t *s, const char *ptr)
{
    ali_arena *a = c->a;
    const json_t *props = json_object_get(s, "properties"), *req = json_object_get(s, "required");
    const json_t *ap = json_object_get(s, "additionalProperties");
    if (props && !json_is_object(props))
        return ali_js_fail(c, AL_EINVAL, "'properties' must be an object at %s/properties", ptr);
    if (req && !json_is_array(req))
        return ali_js_fail(c, AL_EINVAL, "'required' must be an array of strings at %s/required", ptr);
    if (ap && !json_is_boolean(ap) && !json_is_object(ap))
        return ali_js_fail(c, AL_EINVAL, "'additionalProperties' must be a boolean or a schema at %s/additionalProperties", ptr);
    size_t nreq = req ? json_array_size(req) : 0, np = props ? json_object_size(props) : 0;
    for (size_t i = 0; i < nreq; i++)
        if (!json_is_string(json_array_get(req, i)))
            return ali_js_fail(c, AL_EINVAL, "'required' must be an array of strings at %s/required/%zu", ptr, i);
    size_t cap = np + nreq + 1;
    const ali_ast **pairs = ali_arena_alloc(a, cap * sizeof *pairs);
    uint8_t *rq = ali_arena_alloc(a, cap);
    const char **keys = ali_arena_alloc(a, cap * sizeof *keys);
    size_t *lens = ali_arena_alloc(a, cap * sizeof *lens);
    if (!pairs || !rq || !keys || !lens)
        return ali_ast_nothing();
    const ali_ast *colon = ali_json_colon(a);
    int32_t n = 0;
    const char *k;
    json_t *v;
    if (props) {
        const char *pp = ali_js_ptr(c, ptr, "properties");
        json_object_foreach((json_t *)props, k, v) {
            int isreq = 0;
            for (size_t i = 0; i < nreq && !isreq; i++)
                isreq = strcmp(json_string_value(json_array_get(req, i)), k) == 0;
            const ali_ast *val = ali_js_schema(c, v, ali_js_ptr(c, pp, k));
            if (c->err)
                return ali_ast_nothing();
            pairs[n] = ali_ast_cat3(a, ali_js_keylit(c, k), colon, val);
            rq[n] = (uint8_t)isreq;
            keys[n] = k;
            lens[n] = strlen(k);
            n++;
        }
    }
    for (size_t i = 0; i < nreq; i++) { /* required names without a property schema: any value */
        const char *r = json_string_value(json_array_get(req, i));
        int dup = 0;
        for (int32_t j = 0; j < n && !dup; j++)
            dup = strcmp(keys[j], r) == 0;
        if (dup)
            continue;
        pairs[n] = ali_ast_cat3(a, ali_js_keylit(c, r), colon, ali_json_any(a, ALI_JSON_ANY_DEPTH - 1));
        rq[n] = 1;
        keys[n] = r;
        lens[n] = strlen(r);
        n++;
    }
    int open = ap ? (json_is_true(ap) || json_is_object(ap)) : props == NULL;
    const ali_ast *extra = NULL;
    if (open) {
        const ali_ast *ev = json_is_object(ap) ? ali_js_schema(c, ap, ali_js_ptr(c, ptr, "additionalProperties"))
                                               : ali_json_any(a, ALI_JSON_ANY_DEPTH - 1);
        extra = ali_ast_cat3(a, ali_json_key_not_in(a, keys, lens, n), colon, ev);
    }
    const ali_ast *body = ali_ast_props(a, pairs, rq, n, ali_json_sep(a), extra);
    return ali_ast_cat3(a, ali_ast_str(a, "{"), body, ali_ast_str(a, "}"));
}

static const ali_ast *ali_js_array(ali_js *c, const json_t *s, const char *ptr)
{
    ali_arena *a = c->a;
    const json_t *pre = json_object_get(s, "prefixItems"), *items = json_object_get(s, "items");
    const json_t *tail = items;
    const char *pre_kw = "prefixItems", *tail_kw = "items";
    if (pre && !json_is_array(pre))
        return ali_js_fail(c, AL_EINVAL, "'prefixItems' must be an array at %s/prefixItems", ptr);
    if (json_is_array(items)) { /* draft 4-2019 tuple form */
        if (pre)
            return ali_js_fail(c, AL_EINVAL, "both 'prefixItems' and an 'items' array at %s", ali_js_at(ptr));
        pre = items;
        pre_kw = "items";
        tail = json_object_get(s, "additionalItems");
        tail_kw = "additionalItems";
    }
    if (tail && !json_is_boolean(tail) && !json_is_object(tail))
        return ali_js_fail(c, AL_EINVAL, "'%s' must be a schema at %s/%s", tail_kw, ptr, tail_kw);
    int64_t mn = ali_js_count(c, s, ptr, "minItems", 0), mx = ali_js_count(c, s, ptr, "maxItems", -1);
    if (c->err)
        return ali_ast_nothing();
    if (mn > ALI_JSON_MAX_COUNT)
        return ali_js_fail(c, AL_ERANGE, "minItems %lld above the supported %d at %s/minItems", (long long)mn,
                           ALI_JSON_MAX_COUNT, ptr);
    if (mx > ALI_JSON_MAX_COUNT)
        mx = -1;
    int32_t k = pre ? (int32_t)json_array_size(pre) : 0, min = (int32_t)mn, max = (int32_t)mx;
    int32_t kk = max >= 0 && max < k ? max : k;
    const ali_ast *T = NULL;
    if (!tail || json_is_true(tail))
        T = ali_json_any(a, ALI_JSON_ANY_DEPTH - 1);
    else if (json_is_object(tail))
        T = ali_js_schema(c, tail, ali_js_ptr(c, ptr, tail_kw));
    const ali_ast *sep = ali_json_sep(a), *body;
    if (kk == 0) {
        body = T ? ali_ast_seplist(a, T, sep, min, max) : (min == 0 ? ali_ast_empty() : ali_ast_nothing());
    } else {
        const ali_ast **ps = ali_arena_alloc(a, (size_t)kk * sizeof *ps);
        if (!ps)
            return ali_ast_nothing();
        for (int32_t i = 0; i < kk; i++)
            ps[i] = ali_js_schema(c, json_array_get(pre, (size_t)i), ali_js_ptri(c, ptr, pre_kw, (size_t)i));
        const ali_ast *acc;
        if (T)
            acc = ali_ast_repeat(a, ali_ast_cat2(a, sep, T), min > kk ? min - kk : 0, max < 0 ? -1 : max - kk);
        else
            acc = min <= kk ? ali_ast_empty() : ali_ast_nothing();
        for (int32_t i = kk - 1; i >= 1; i--) {
            acc = ali_ast_cat3(a, sep, ps[i], acc);
            if (i >= min)
                acc = ali_ast_opt(a, acc);
        }
        body = ali_ast_cat2(a, ps[0], acc);
        if (min == 0)
            body = ali_ast_opt(a, body);
    }
    return ali_ast_cat3(a, ali_ast_str(a, "["), body, ali_ast_str(a, "]"));
}

static int ali_js_has_any(const json_t *s, const char *const *kws)
{
    for (; *kws; kws++)
        if (json_object_get(s, *kws))
            return 1;
    return 0;
}

const ali_ast *ali_js_typed(ali_js *c, const json_t *s, const char *ptr)
{
    const char *types[8];
    int nt = ali_js_types(c, s, ptr, types);
    if (nt < 0)
        return ali_ast_nothing();
    if (json_object_get(s, "enum") || json_object_get(s, "const"))
        return ali_js_enum(c, s, ptr, types, nt);
    if (!json_object_get(s, "type")) {
        /* no type: the types whose keywords appear, else any value */
        static const char *const objk[] = {"properties", "required", "additionalProperties", NULL};
        static const char *const arrk[] = {"items", "prefixItems", "additionalItems", "minItems", "maxItems", NULL};
        static const char *const strk[] = {"minLength", "maxLength", "pattern", "format", NULL};
        static const char *const numk[] = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", NULL};
        if (ali_js_has_any(s, objk))
            types[nt++] = "object";
        if (ali_js_has_any(s, arrk))
            types[nt++] = "array";
        if (ali_js_has_any(s, strk))
            types[nt++] = "string";
        if (ali_js_has_any(s, numk))
            types[nt++] = "number";
        if (nt == 0)
            return ali_json_any(c->a, ALI_JSON_ANY_DEPTH);
    }
    ali_astv alts = {0};
    for (int i = 0; i < nt && !c->err; i++) {
        const char *t = types[i];
        const ali_ast *x;
        if (strcmp(t, "null") == 0)
            x = ali_ast_str(c->a, "null");
        else if (strcmp(t, "boolean") == 0)
            x = ali_ast_alt2(c->a, ali_ast_str(c->a, "true"), ali_ast_str(c->a, "false"));
        else if (strcmp(t, "integer") == 0)
            x = ali_js_integer(c, s, ptr);
        else if (strcmp(t, "number") == 0)
            x = ali_js_number(c, s, ptr);
        else if (strcmp(t, "string") == 0)
            x = ali_js_string(c, s, ptr);
        else if (strcmp(t, "array") == 0)
            x = ali_js_array(c, s, ptr);
        else
            x = ali_js_object(c, s, ptr);
        ali_astv_push(&alts, x);
    }
    if (c->err) {
        ali_astv_free(&alts);
        return ali_ast_nothing();
    }
    return ali_astv_alt(c->a, &alts);
}
