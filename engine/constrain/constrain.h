/* constrain.h: structured-output constraints for token sampling: a regex, a list of choices, a
 * JSON schema or "any JSON object" compiled to a byte-level lazy DFA, with per-step masks of the
 * allowed token ids and a matcher per sequence. See engine/constrain/README.md. */
#ifndef AL_CONSTRAIN_H
#define AL_CONSTRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "engine/constrain/vocab.h"

typedef enum al_constraint_kind {
    AL_CONSTRAINT_NONE = 0,
    AL_CONSTRAINT_REGEX,
    AL_CONSTRAINT_CHOICE,
    AL_CONSTRAINT_JSON_SCHEMA,
    AL_CONSTRAINT_JSON_OBJECT,
} al_constraint_kind;

typedef struct al_constraint_spec {
    al_constraint_kind kind;
    const char *text; /* regex; JSON array of strings for CHOICE; schema JSON for JSON_SCHEMA;
                         ignored for JSON_OBJECT */
    size_t len;
} al_constraint_spec;

/* Compiled: immutable apart from lazily built, mutex-guarded DFA / mask caches; refcounted;
 * shareable across sequences and threads. */
typedef struct al_grammar al_grammar;

/* Errors name the problem ("regex: ... at offset k", "json schema: unsupported keyword 'not' at
 * /properties/x/not", ...). */
al_err al_grammar_compile(const al_constraint_spec *spec, const al_vocab *v, al_grammar **out);
al_grammar *al_grammar_ref(al_grammar *g);
void al_grammar_unref(al_grammar *g);

/* Process-wide cache keyed by xxhash of (kind, text, vocab hash), LRU of AL_CONSTRAIN_CACHE_SIZE
 * grammars. Returns a new reference. */
#define AL_CONSTRAIN_CACHE_SIZE 64
al_err al_grammar_get(const al_constraint_spec *spec, const al_vocab *v, al_grammar **out);
/* Drops every cached grammar (references held elsewhere stay valid). */
void al_grammar_cache_clear(void);

/* Validates only (no vocabulary needed): the same parse and automaton build as a compile. */
al_err al_constraint_check(const al_constraint_spec *spec);

/* Total bytes of cached masks over all grammars; beyond it masks are recomputed, not cached. */
#define AL_CONSTRAIN_MASK_BUDGET ((size_t)256 << 20)

typedef struct al_matcher al_matcher; /* one sequence's state */
al_err al_matcher_new(al_grammar *g, al_matcher **out); /* takes its own reference on g */
void al_matcher_free(al_matcher *m);
/* Allowed tokens now, given `remaining` tokens still to generate including this one (<= 0: no
 * limit); writes a bitset of ceil(n/32) words. Returns the number of allowed ids (0 with a detail
 * message in al_errmsg() if the DFA state cap was reached). */
int32_t al_matcher_mask(al_matcher *m, int32_t remaining, uint32_t *bits);
/* Sets logits[i] = -INFINITY for every disallowed id (ids >= vocab n too). Returns the number
 * allowed (0 = nothing allowed: the caller ends the sequence with an error). */
int32_t al_matcher_apply(al_matcher *m, int32_t remaining, float *logits, int32_t V);
/* Advances by one sampled token; AL_EINVAL if it is not allowed (state unchanged). EOS moves to a
 * finished state. */
al_err al_matcher_accept(al_matcher *m, int32_t token);
int al_matcher_accepting(const al_matcher *m); /* the bytes so far are a complete match */
int al_matcher_finished(const al_matcher *m);  /* nothing but EOS is possible (or EOS accepted) */
void al_matcher_reset(al_matcher *m);

#endif
