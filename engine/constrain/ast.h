/* ast.h: the constraint syntax tree every source (regex, choices, JSON schema) compiles to, and
 * the arena its nodes live in. Nodes are immutable once built and may be shared (a DAG). */
#ifndef ALI_AST_H
#define ALI_AST_H

#include <stddef.h>
#include <stdint.h>

#include "engine/constrain/cpset.h"

/* Arena: bump allocation in blocks. An allocation failure (or passing the size limit) sets
 * `failed`; constructors then return the NOTHING node, so builders check `failed` once at the end. */
typedef struct ali_arena {
    struct ali_arena_blk *blk;
    size_t used, total, limit; /* bytes in the current block, all blocks, the cap */
    int failed;
} ali_arena;

void ali_arena_init(ali_arena *a, size_t limit);
void ali_arena_free(ali_arena *a);
void *ali_arena_alloc(ali_arena *a, size_t bytes); /* zeroed; NULL (and failed) on failure */
char *ali_arena_strdup(ali_arena *a, const char *s, size_t n);
char *ali_arena_printf(ali_arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

typedef enum ali_ast_kind {
    ALI_AST_NOTHING, /* matches no string */
    ALI_AST_EMPTY,   /* matches the empty string */
    ALI_AST_LIT,     /* a byte string */
    ALI_AST_CLASS,   /* one code point from a set, UTF-8 encoded */
    ALI_AST_CAT,     /* kids in order */
    ALI_AST_ALT,     /* any one kid */
    ALI_AST_REPEAT,  /* sub repeated min..max times (max -1: unbounded); with sep set, the
                        copies are joined by sep (sub (sep sub)*) */
    ALI_AST_PROPS,   /* object members: kids[i] are "key":value pairs in order, req[i] says which
                        are required; included ones are joined by sep; extra (if set) is a pair
                        that may repeat after them */
    ALI_AST_COUNTED, /* sub, restricted to strings of min..max character units (max -1: none) */
} ali_ast_kind;

typedef struct ali_ast ali_ast;
struct ali_ast {
    ali_ast_kind kind;
    uint8_t unit;        /* LIT/CLASS: the first byte starts a character unit (COUNTED counts them) */
    int32_t n;           /* LIT: bytes; CLASS: ranges; CAT/ALT/PROPS: kids */
    int32_t min, max;    /* REPEAT/COUNTED */
    const uint8_t *bytes;        /* LIT [n] */
    const ali_cprange *ranges;   /* CLASS [n], sorted, merged, no surrogates */
    const ali_ast *const *kids;  /* CAT/ALT/PROPS [n] */
    const uint8_t *req;          /* PROPS [n] */
    const ali_ast *sub;          /* REPEAT/COUNTED body */
    const ali_ast *sep;          /* PROPS / REPEAT: separator (REPEAT: may be NULL) */
    const ali_ast *extra;        /* PROPS */
};

const ali_ast *ali_ast_nothing(void);
const ali_ast *ali_ast_empty(void);
const ali_ast *ali_ast_lit(ali_arena *a, const void *bytes, size_t n, int unit);
const ali_ast *ali_ast_str(ali_arena *a, const char *s); /* literal of a C string, unit 0 */
/* One code point of the set (normalised here; an empty set gives NOTHING). */
const ali_ast *ali_ast_class(ali_arena *a, ali_cpset *s, int unit);
const ali_ast *ali_ast_range(ali_arena *a, uint32_t lo, uint32_t hi, int unit);
const ali_ast *ali_ast_cat(ali_arena *a, const ali_ast *const *kids, int32_t n);
const ali_ast *ali_ast_alt(ali_arena *a, const ali_ast *const *kids, int32_t n);
const ali_ast *ali_ast_cat2(ali_arena *a, const ali_ast *x, const ali_ast *y);
const ali_ast *ali_ast_cat3(ali_arena *a, const ali_ast *x, const ali_ast *y, const ali_ast *z);
const ali_ast *ali_ast_alt2(ali_arena *a, const ali_ast *x, const ali_ast *y);
const ali_ast *ali_ast_repeat(ali_arena *a, const ali_ast *x, int32_t min, int32_t max);
const ali_ast *ali_ast_opt(ali_arena *a, const ali_ast *x);
/* min..max copies of x joined by sep. */
const ali_ast *ali_ast_seplist(ali_arena *a, const ali_ast *x, const ali_ast *sep, int32_t min, int32_t max);
const ali_ast *ali_ast_props(ali_arena *a, const ali_ast *const *pairs, const uint8_t *req, int32_t n,
                             const ali_ast *sep, const ali_ast *extra);
const ali_ast *ali_ast_counted(ali_arena *a, const ali_ast *x, int32_t min, int32_t max);

/* A growable list of kids built before a CAT / ALT node is made (malloc'ed; freed by the take). */
typedef struct ali_astv {
    const ali_ast **v;
    int32_t n, cap;
    int failed;
} ali_astv;
void ali_astv_push(ali_astv *l, const ali_ast *x);
const ali_ast *ali_astv_cat(ali_arena *a, ali_astv *l); /* builds and frees the list */
const ali_ast *ali_astv_alt(ali_arena *a, ali_astv *l);
void ali_astv_free(ali_astv *l);

#endif
