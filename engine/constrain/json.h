/* json.h: JSON Schema and JSON value grammars as constraint syntax trees. Output format: no
 * whitespace except optionally one space after ':' and after ','. */
#ifndef ALI_JSON_H
#define ALI_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "engine/constrain/ast.h"

/* Nesting of containers in "any JSON value" (json_object constraints and the {} / true schema). */
#define ALI_JSON_ANY_DEPTH 4
/* How many times a recursive $ref target is expanded along one path. */
#define ALI_JSON_REF_DEPTH 3
/* Deepest schema nesting accepted. */
#define ALI_JSON_MAX_NESTING 128
/* Largest minLength / maxLength / minItems / maxItems honoured exactly. */
#define ALI_JSON_MAX_COUNT 100000
/* Numeric bounds must lie within +-this (integers and decimals without exponent). */
#define ALI_JSON_MAX_BOUND 9.0e18
/* An open side of an integer range (and the integer part of any number) stops at 18 digits, and
 * exponents have at most 2 digits, so every output parses into an int64 / a finite double. */
#define ALI_JSON_INT_CAP 999999999999999999ll
#define ALI_JSON_EXP_DIGITS 2

/* Schema text to a tree; errors name the problem and its JSON pointer. */
al_err ali_json_schema_ast(ali_arena *a, const char *text, size_t len, const ali_ast **out);

/* Pieces (json_value.c). */
const ali_ast *ali_json_sep(ali_arena *a);   /* ',' then an optional space */
const ali_ast *ali_json_colon(ali_arena *a); /* ':' then an optional space */
const ali_ast *ali_json_char(ali_arena *a);  /* one string character: raw UTF-8 or an escape */
const ali_ast *ali_json_string(ali_arena *a, int32_t min, int32_t max); /* quoted, length in chars */
const ali_ast *ali_json_number(ali_arena *a);                           /* any JSON number */
const ali_ast *ali_json_any(ali_arena *a, int depth);                   /* any JSON value */
const ali_ast *ali_json_any_object(ali_arena *a, int depth);
/* A regex tree over characters to the tree of their JSON string encodings (unquoted). */
const ali_ast *ali_json_escape(ali_arena *a, const ali_ast *re);
/* A quoted JSON string whose content differs from each of keys[0..n) (raw spellings; keys longer
 * than ALI_JSON_KEY_EXCLUDE_MAX bytes are not excluded). */
#define ALI_JSON_KEY_EXCLUDE_MAX 256
const ali_ast *ali_json_key_not_in(ali_arena *a, const char *const *keys, const size_t *lens, int32_t n);
/* Regex text for a string format (date, time, date-time, uuid, email, ipv4, hostname); NULL if unknown. */
const char *ali_json_format_regex(const char *format);

/* Numbers (json_num.c). Integers in [lo, hi] (has_*: bound present), exactly, no leading zeros. */
const ali_ast *ali_json_int_range(ali_arena *a, int has_lo, int64_t lo, int has_hi, int64_t hi);
/* Decimals without exponent with lo <(=) x <(=) hi; bounds are doubles read as their shortest
 * round-trip decimal. Returns NULL (and sets the error) for a bound outside ALI_JSON_MAX_BOUND. */
typedef struct ali_numbound {
    int on, incl;
    double v;
} ali_numbound;
const ali_ast *ali_json_num_range(ali_arena *a, ali_numbound lo, ali_numbound hi);

#endif
