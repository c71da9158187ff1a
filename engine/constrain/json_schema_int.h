/* json_schema_int.h: the JSON-schema compiler's shared context and helpers (json_schema.c walks
 * the schema, json_types.c builds each type). */
#ifndef ALI_JSON_SCHEMA_INT_H
#define ALI_JSON_SCHEMA_INT_H

#include <jansson.h>

#include "engine/constrain/json.h"

typedef struct ali_js {
    ali_arena *a;
    json_t *root;
    json_t *owned; /* merged schemas made here (kept alive until the end) */
    al_err err;
    int depth;
    const json_t *stack[ALI_JSON_MAX_NESTING + 1]; /* $ref targets being expanded */
    int nstack;
    const char *dropped; /* first $ref cut at the unroll depth */
} ali_js;

/* Is k in the NULL-terminated list? */
int ali_js_in(const char *const *list, const char *k);
/* Records the first error (message "json schema: ...") and returns NOTHING. */
const ali_ast *ali_js_fail(ali_js *c, al_err e, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* JSON pointers of children: ptr/tok (escaped) and ptr/kw/i; "(root)" for the empty pointer. */
const char *ali_js_ptr(ali_js *c, const char *ptr, const char *tok);
const char *ali_js_ptri(ali_js *c, const char *ptr, const char *kw, size_t i);
const char *ali_js_at(const char *ptr);
/* Any schema (boolean, $ref, combinators, typed) at pointer ptr. */
const ali_ast *ali_js_schema(ali_js *c, const json_t *s, const char *ptr);
/* A schema without $ref / combinators: enum / const, or the union of its types. */
const ali_ast *ali_js_typed(ali_js *c, const json_t *s, const char *ptr);

#endif
