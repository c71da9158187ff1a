/* json_schema.c: JSON Schema (the subset tool calls and intrinsics use) to the constraint syntax
 * tree: keyword checks, local $ref unrolled to a fixed depth, anyOf / oneOf / allOf; the types
 * themselves are built in json_types.c. Unsupported validity keywords are errors naming their
 * JSON pointer. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/constrain/json_schema_int.h"

/* Keywords that change validity but are not supported (errors); every keyword in neither list
 * (title, description, examples, default, $schema, $id, $comment, deprecated, readOnly, $defs, ...)
 * is an annotation and ignored. */
static const char *const ali_js_unsupported[] = {
    "not", "if", "then", "else", "patternProperties", "multipleOf", "dependentRequired",
    "dependentSchemas", "dependencies", "propertyNames", "minProperties", "maxProperties", "contains",
    "minContains", "maxContains", "unevaluatedProperties", "unevaluatedItems", "$dynamicRef",
    "$recursiveRef", "uniqueItems", NULL};
static const char *const ali_js_validation[] = {
    "type", "enum", "const", "properties", "required", "additionalProperties", "items", "prefixItems",
    "additionalItems", "minItems", "maxItems", "minLength", "maxLength", "pattern", "format", "minimum",
    "maximum", "exclusiveMinimum", "exclusiveMaximum", "anyOf", "oneOf", "allOf", "$ref", NULL};

int ali_js_in(const char *const *list, const char *k)
{
    for (; *list; list++)
        if (strcmp(*list, k) == 0)
            return 1;
    return 0;
}

const ali_ast *ali_js_fail(ali_js *c, al_err e, const char *fmt, ...)
{
    if (c->err == AL_OK) {
        char msg[900];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        ali_errf(e, "json schema: %s", msg);
        c->err = e;
    }
    return ali_ast_nothing();
}

/* JSON pointer of a child (tokens escaped: ~ as ~0, / as ~1). */
const char *ali_js_ptr(ali_js *c, const char *ptr, const char *tok)
{
    size_t n = strlen(tok), extra = 0;
    for (size_t i = 0; i < n; i++)
        extra += tok[i] == '~' || tok[i] == '/';
    size_t pl = strlen(ptr);
    char *p = ali_arena_alloc(c->a, pl + 1 + n + extra + 1);
    if (!p)
        return ptr;
    memcpy(p, ptr, pl);
    char *w = p + pl;
    *w++ = '/';
    for (size_t i = 0; i < n; i++) {
        if (tok[i] == '~' || tok[i] == '/') {
            *w++ = '~';
            *w++ = tok[i] == '~' ? '0' : '1';
        } else {
            *w++ = tok[i];
        }
    }
    *w = 0;
    return p;
}

const char *ali_js_ptri(ali_js *c, const char *ptr, const char *kw, size_t i)
{
    return ali_arena_printf(c->a, "%s/%s/%zu", ptr, kw, i);
}

const char *ali_js_at(const char *ptr) { return *ptr ? ptr : "(root)"; }



/* Resolves a local $ref ("#", "#/a/b" with ~0 ~1 and %XX escapes). */
static const json_t *ali_js_resolve(ali_js *c, const char *ref, const char *ptr)
{
    if (ref[0] != '#') {
        ali_js_fail(c, AL_EUNSUPPORTED, "non-local $ref '%s' at %s/$ref", ref, ptr);
        return NULL;
    }
    const json_t *cur = c->root;
    const char *p = ref + 1;
    if (*p && *p != '/') {
        ali_js_fail(c, AL_EUNSUPPORTED, "$ref to an anchor '%s' at %s/$ref", ref, ptr);
        return NULL;
    }
    char tok[512];
    while (*p == '/') {
        p++;
        size_t n = 0;
        while (*p && *p != '/' && n + 1 < sizeof tok) {
            char ch = *p++;
            if (ch == '~' && (*p == '0' || *p == '1'))
                ch = *p++ == '0' ? '~' : '/';
            else if (ch == '%' && p[0] && p[1]) {
                char hx[3] = {p[0], p[1], 0};
                ch = (char)strtol(hx, NULL, 16);
                p += 2;
            }
            tok[n++] = ch;
        }
        tok[n] = 0;
        if (json_is_object(cur)) {
            cur = json_object_get(cur, tok);
        } else if (json_is_array(cur)) {
            char *end;
            long i = strtol(tok, &end, 10);
            cur = *end || i < 0 ? NULL : json_array_get(cur, (size_t)i);
        } else {
            cur = NULL;
        }
        if (!cur) {
            ali_js_fail(c, AL_EINVAL, "unresolved $ref '%s' at %s/$ref", ref, ptr);
            return NULL;
        }
    }
    return cur;
}

/* Combines an anyOf / oneOf / allOf alternative with the validation keywords beside the combinator. */
static const json_t *ali_js_merge(ali_js *c, const json_t *s, const char *comb, const json_t *alt, const char *ptr)
{
    const char *k;
    json_t *v;
    int sib = 0;
    json_object_foreach((json_t *)s, k, v)
        sib += strcmp(k, comb) != 0 && ali_js_in(ali_js_validation, k);
    if (!sib)
        return alt;
    if (json_is_boolean(alt)) {
        if (json_is_false(alt))
            return alt;
        alt = json_object();
        json_array_append_new(c->owned, (json_t *)alt);
    }
    if (!json_is_object(alt)) {
        ali_js_fail(c, AL_EINVAL, "subschema must be an object or a boolean at %s", ali_js_at(ptr));
        return NULL;
    }
    json_t *m = json_copy((json_t *)alt);
    if (!m) {
        ali_js_fail(c, AL_ENOMEM, "out of memory");
        return NULL;
    }
    json_array_append_new(c->owned, m);
    json_object_foreach((json_t *)s, k, v) {
        if (strcmp(k, comb) == 0 || !ali_js_in(ali_js_validation, k))
            continue;
        json_t *have = json_object_get(m, k);
        if (have && !json_equal(have, v)) {
            ali_js_fail(c, AL_EUNSUPPORTED, "keyword '%s' both beside '%s' and inside it at %s (intersection)", k,
                        comb, ali_js_at(ptr));
            return NULL;
        }
        json_object_set(m, k, v);
    }
    return m;
}

const ali_ast *ali_js_schema(ali_js *c, const json_t *s, const char *ptr)
{
    if (c->err)
        return ali_ast_nothing();
    if (json_is_true(s))
        return ali_json_any(c->a, ALI_JSON_ANY_DEPTH);
    if (json_is_false(s))
        return ali_ast_nothing();
    if (!json_is_object(s))
        return ali_js_fail(c, AL_EINVAL, "schema must be an object or a boolean at %s", ali_js_at(ptr));
    if (c->depth >= ALI_JSON_MAX_NESTING)
        return ali_js_fail(c, AL_ERANGE, "schema nested deeper than %d at %s", ALI_JSON_MAX_NESTING, ali_js_at(ptr));
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)s, k, v) {
        if (!ali_js_in(ali_js_unsupported, k))
            continue;
        if (strcmp(k, "uniqueItems") == 0 && json_is_false(v))
            continue;
        if ((strcmp(k, "minProperties") == 0 || strcmp(k, "minContains") == 0) && json_is_integer(v) &&
            json_integer_value(v) == 0)
            continue;
        if (strcmp(k, "unevaluatedProperties") == 0 && json_is_true(v))
            continue;
        return ali_js_fail(c, AL_EUNSUPPORTED, "unsupported keyword '%s' at %s", k, ali_js_ptr(c, ptr, k));
    }
    const ali_ast *x;
    c->depth++;
    const json_t *ref = json_object_get(s, "$ref");
    const json_t *any = json_object_get(s, "anyOf"), *one = json_object_get(s, "oneOf"), *all = json_object_get(s, "allOf");
    if (ref) {
        json_object_foreach((json_t *)s, k, v)
            if (strcmp(k, "$ref") != 0 && ali_js_in(ali_js_validation, k)) {
                c->depth--;
                return ali_js_fail(c, AL_EUNSUPPORTED, "'$ref' with sibling keyword '%s' at %s", k, ali_js_at(ptr));
            }
        if (!json_is_string(ref)) {
            c->depth--;
            return ali_js_fail(c, AL_EINVAL, "'$ref' must be a string at %s/$ref", ptr);
        }
        const char *rs = json_string_value(ref);
        const json_t *t = ali_js_resolve(c, rs, ptr);
        if (!t) {
            c->depth--;
            return ali_ast_nothing();
        }
        int cnt = 0;
        for (int i = 0; i < c->nstack; i++)
            cnt += c->stack[i] == t;
        if (cnt >= ALI_JSON_REF_DEPTH) { /* unrolled far enough: this branch is dropped */
            if (!c->dropped)
                c->dropped = ali_arena_strdup(c->a, rs, strlen(rs));
            x = ali_ast_nothing();
        } else {
            c->stack[c->nstack++] = t;
            x = ali_js_schema(c, t, rs[1] ? rs + 1 : "");
            c->nstack--;
        }
    } else if ((any != NULL) + (one != NULL) + (all != NULL) > 1) {
        x = ali_js_fail(c, AL_EUNSUPPORTED, "more than one of anyOf / oneOf / allOf at %s", ali_js_at(ptr));
    } else if (all) {
        if (!json_is_array(all)) {
            x = ali_js_fail(c, AL_EINVAL, "'allOf' must be an array at %s/allOf", ptr);
        } else if (json_array_size(all) > 1) {
            x = ali_js_fail(c, AL_EUNSUPPORTED, "'allOf' with more than one subschema at %s/allOf", ptr);
        } else if (json_array_size(all) == 0) {
            json_t *m = json_copy((json_t *)s);
            json_object_del(m, "allOf");
            json_array_append_new(c->owned, m);
            x = ali_js_schema(c, m, ptr);
        } else {
            const json_t *m = ali_js_merge(c, s, "allOf", json_array_get(all, 0), ptr);
            x = m ? ali_js_schema(c, m, ali_js_ptri(c, ptr, "allOf", 0)) : ali_ast_nothing();
        }
    } else if (any || one) {
        const json_t *arr = any ? any : one;
        const char *kw = any ? "anyOf" : "oneOf";
        if (!json_is_array(arr) || json_array_size(arr) == 0) {
            x = ali_js_fail(c, AL_EINVAL, "'%s' must be a non-empty array at %s/%s", kw, ptr, kw);
        } else {
            ali_astv alts = {0};
            for (size_t i = 0; i < json_array_size(arr) && !c->err; i++) {
                const char *ip = ali_js_ptri(c, ptr, kw, i);
                const json_t *m = ali_js_merge(c, s, kw, json_array_get(arr, i), ip);
                if (m)
                    ali_astv_push(&alts, ali_js_schema(c, m, ip));
            }
            x = ali_astv_alt(c->a, &alts);
        }
    } else {
        x = ali_js_typed(c, s, ptr);
    }
    c->depth--;
    return c->err ? ali_ast_nothing() : x;
}

al_err ali_json_schema_ast(ali_arena *a, const char *text, size_t len, const ali_ast **out)
{
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_DECODE_ANY, &je);
    if (!root)
        return ali_errf(AL_EINVAL, "json schema: invalid JSON at line %d column %d: %s", je.line, je.column, je.text);
    if (!json_is_object(root) && !json_is_boolean(root)) {
        json_decref(root);
        return ali_errf(AL_EINVAL, "json schema: the schema must be an object or a boolean");
    }
    ali_js *c = calloc(1, sizeof *c);
    if (!c) {
        json_decref(root);
        return ali_errf(AL_ENOMEM, "json schema: out of memory");
    }
    c->a = a;
    c->root = root;
    c->owned = json_array();
    c->stack[c->nstack++] = root; /* "#" refers to a schema already being expanded */
    const ali_ast *x = ali_js_schema(c, root, "");
    al_err e = c->err;
    const char *dropped = c->dropped;
    json_decref(c->owned);
    json_decref(root);
    free(c);
    if (e != AL_OK)
        return e;
    if (a->failed)
        return ali_errf(AL_ERANGE, "json schema: the schema expands to too large a grammar");
    if (x->kind == ALI_AST_NOTHING) {
        if (dropped)
            return ali_errf(AL_EINVAL, "json schema: recursive $ref '%s' leaves no valid document within the "
                                       "unroll depth %d", dropped, ALI_JSON_REF_DEPTH);
        return ali_errf(AL_EINVAL, "json schema: no JSON value satisfies the schema");
    }
    *out = x;
    return AL_OK;
}
