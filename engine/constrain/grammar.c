/* grammar.c: compiling a constraint spec (regex, choices, JSON schema, any JSON object) into a
 * refcounted grammar: syntax tree, NFA, lazy DFA and the shared vocabulary trie. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "engine/constrain/constrain_int.h"
#include "engine/constrain/json.h"
#include "engine/constrain/regex.h"

/* Syntax trees are bounded so a hostile spec cannot take the process's memory. */
#define ALI_AST_ARENA_LIMIT ((size_t)256 << 20)

static al_err ali_choice_ast(const char *text, size_t len, ali_arena *a, const ali_ast **out)
{
    json_error_t je;
    json_t *j = json_loadb(text, len, JSON_ALLOW_NUL | JSON_DECODE_ANY, &je);
    if (!j)
        return ali_errf(AL_EINVAL, "choice: invalid JSON at line %d column %d: %s", je.line, je.column, je.text);
    if (!json_is_array(j) || json_array_size(j) == 0) {
        json_decref(j);
        return ali_errf(AL_EINVAL, "choice: expected a non-empty JSON array of strings");
    }
    ali_astv v = {0};
    for (size_t i = 0; i < json_array_size(j); i++) {
        const json_t *s = json_array_get(j, i);
        if (!json_is_string(s)) {
            ali_astv_free(&v);
            json_decref(j);
            return ali_errf(AL_EINVAL, "choice: element %zu is not a string", i);
        }
        ali_astv_push(&v, ali_ast_lit(a, json_string_value(s), json_string_length(s), 0));
    }
    json_decref(j);
    *out = ali_astv_alt(a, &v);
    return AL_OK;
}

al_err ali_spec_ast(const al_constraint_spec *spec, ali_arena *a, const ali_ast **out)
{
    if (!spec)
        return ali_errf(AL_EINVAL, "constraint: no spec");
    if (spec->kind != AL_CONSTRAINT_JSON_OBJECT && !spec->text && spec->len)
        return ali_errf(AL_EINVAL, "constraint: NULL text with length %zu", spec->len);
    const char *t = spec->text ? spec->text : "";
    al_err e;
    switch (spec->kind) {
    case AL_CONSTRAINT_REGEX:
        e = ali_regex_parse(a, t, spec->len, out);
        break;
    case AL_CONSTRAINT_CHOICE:
        e = ali_choice_ast(t, spec->len, a, out);
        break;
    case AL_CONSTRAINT_JSON_SCHEMA:
        e = ali_json_schema_ast(a, t, spec->len, out);
        break;
    case AL_CONSTRAINT_JSON_OBJECT:
        *out = ali_json_any_object(a, ALI_JSON_ANY_DEPTH);
        e = AL_OK;
        break;
    default:
        return ali_errf(AL_EINVAL, "constraint: unknown kind %d", (int)spec->kind);
    }
    if (e == AL_OK && a->failed)
        return ali_errf(AL_ERANGE, "constraint: the grammar is too large (syntax tree over %zu MiB)",
                        ALI_AST_ARENA_LIMIT >> 20);
    return e;
}

static al_err ali_build_nfa(const al_constraint_spec *spec, ali_nfa *nfa)
{
    ali_arena a;
    ali_arena_init(&a, ALI_AST_ARENA_LIMIT);
    const ali_ast *root = NULL;
    al_err e = ali_spec_ast(spec, &a, &root);
    if (e == AL_OK)
        e = ali_nfa_build(root, nfa);
    ali_arena_free(&a);
    return e;
}

al_err al_constraint_check(const al_constraint_spec *spec)
{
    ali_nfa nfa;
    al_err e = ali_build_nfa(spec, &nfa);
    if (e == AL_OK)
        ali_nfa_free(&nfa);
    return e;
}

al_err al_grammar_compile(const al_constraint_spec *spec, const al_vocab *v, al_grammar **out)
{
    if (!out || !v)
        return ali_errf(AL_EINVAL, "al_grammar_compile: NULL %s", out ? "vocabulary" : "output");
    al_grammar *g = calloc(1, sizeof *g);
    if (!g)
        return ali_errf(AL_ENOMEM, "al_grammar_compile: out of memory");
    al_err e = ali_build_nfa(spec, &g->nfa);
    if (e != AL_OK) {
        free(g);
        return e;
    }
    e = ali_trie_get(v, &g->trie);
    if (e == AL_OK) /* the budget rule counts single-byte tokens: bytes no token is alone are impassable */
        e = ali_nfa_dist(&g->nfa, g->trie->single, &g->bdist);
    if (e == AL_OK)
        e = ali_dfa_init(&g->dfa, &g->nfa, g->bdist);
    if (e != AL_OK) {
        ali_trie_unref(g->trie);
        free(g->bdist);
        ali_nfa_free(&g->nfa);
        free(g);
        return e;
    }
    g->max_dist = ali_nfa_max_dist(&g->nfa, g->bdist);
    g->refs = 1;
    g->kind = spec->kind;
    g->nwords = (g->trie->n + 31) / 32;
    *out = g;
    return AL_OK;
}

al_grammar *al_grammar_ref(al_grammar *g)
{
    if (g)
        __atomic_add_fetch(&g->refs, 1, __ATOMIC_RELAXED);
    return g;
}

void al_grammar_unref(al_grammar *g)
{
    if (!g || __atomic_sub_fetch(&g->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    ali_mask_release(g);
    ali_trie_unref(g->trie);
    ali_dfa_free(&g->dfa);
    free(g->bdist);
    ali_nfa_free(&g->nfa);
    free(g);
}
