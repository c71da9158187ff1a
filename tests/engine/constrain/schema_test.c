/* schema_test.c: JSON-schema constraints against jsonschema verdicts (fixture documents and stored
 * random walks), and fresh random walks that must parse as JSON and pass an independent validator
 * for the subset (written here from the JSON Schema spec, not from the library). */
#include <math.h>

#include "ctest_util.h"

static al_vocab *bv;
static json_t *fixture;

static int setup(void **state)
{
    bv = ct_byte_vocab();
    fixture = ct_load_json("tests/fixtures/constrain/schema_cases.json");
    return fixture ? 0 : -1;
}

static int teardown(void **state)
{
    al_vocab_free(bv);
    json_decref(fixture);
    return 0;
}

static al_grammar *compile_schema(const json_t *schema)
{
    char *txt = json_dumps(schema, JSON_ENCODE_ANY | JSON_COMPACT);
    al_grammar *g = NULL;
    al_err e = ct_compile(AL_CONSTRAINT_JSON_SCHEMA, txt, bv, &g);
    if (e != AL_OK)
        fprintf(stderr, "schema %s: %s\n", txt, al_errmsg());
    free(txt);
    return g;
}

static void test_fixture_docs(void **state)
{
    json_t *schemas = json_object_get(fixture, "schemas");
    size_t n = 0, bad = 0, accepted = 0;
    for (size_t i = 0; i < json_array_size(schemas); i++) {
        json_t *c = json_array_get(schemas, i);
        const char *name = json_string_value(json_object_get(c, "name"));
        al_grammar *g = compile_schema(json_object_get(c, "schema"));
        if (!g) {
            bad++;
            continue;
        }
        json_t *docs = json_object_get(c, "docs");
        for (size_t k = 0; k < json_array_size(docs); k++) {
            json_t *d = json_array_get(docs, k);
            json_t *t = json_object_get(d, "doc");
            int valid = json_is_true(json_object_get(d, "valid")), canon = json_is_true(json_object_get(d, "canonical"));
            int ours = ct_match(g, json_string_value(t), json_string_length(t));
            accepted += ours;
            if ((ours && !valid) || (canon && ours != valid)) {
                fprintf(stderr, "%s: %s: accepted %d, jsonschema valid %d (canonical %d)\n", name,
                        json_string_value(t), ours, valid, canon);
                bad++;
            }
            n++;
        }
        json_t *walks = json_object_get(c, "walks");
        for (size_t k = 0; k < json_array_size(walks); k++) {
            json_t *w = json_array_get(walks, k), *t = json_array_get(w, 0);
            if (!json_is_true(json_array_get(w, 1)) || !ct_match(g, json_string_value(t), json_string_length(t))) {
                fprintf(stderr, "%s: stored walk %s: jsonschema valid %d\n", name, json_string_value(t),
                        json_is_true(json_array_get(w, 1)));
                bad++;
            }
            n++;
        }
        al_grammar_unref(g);
    }
    fprintf(stderr, "schema fixture: %zu documents and walks checked (%zu accepted), %zu mismatches\n", n, accepted, bad);
    assert_true(n > 2000);
    assert_int_equal(bad, 0);
}

/* --- an independent validator for the subset (patterns and formats are left to the fixture) --- */

static const json_t *v_resolve(const json_t *root, const char *ref)
{
    if (strcmp(ref, "#") == 0)
        return root;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", ref + 2);
    const json_t *cur = root;
    for (char *tok = strtok(buf, "/"); tok && cur; tok = strtok(NULL, "/"))
        cur = json_object_get(cur, tok);
    return cur;
}

static size_t v_u8len(const char *s, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += ((unsigned char)s[i] & 0xC0) != 0x80;
    return c;
}

static int v_type(const json_t *d, const char *t)
{
    if (!strcmp(t, "integer"))
        return json_is_integer(d) || (json_is_real(d) && json_real_value(d) == floor(json_real_value(d)));
    if (!strcmp(t, "number"))
        return json_is_number(d);
    if (!strcmp(t, "string"))
        return json_is_string(d);
    if (!strcmp(t, "boolean"))
        return json_is_boolean(d);
    if (!strcmp(t, "null"))
        return json_is_null(d);
    if (!strcmp(t, "object"))
        return json_is_object(d);
    return !strcmp(t, "array") && json_is_array(d);
}

static int v_num_eq(const json_t *a, const json_t *b)
{
    return json_is_number(a) && json_is_number(b) ? json_number_value(a) == json_number_value(b) : json_equal((json_t *)a, (json_t *)b);
}

static int v_valid(const json_t *s, const json_t *root, const json_t *d)
{
    if (json_is_boolean(s))
        return json_is_true(s);
    const json_t *x;
    if ((x = json_object_get(s, "$ref")))
        return v_valid(v_resolve(root, json_string_value(x)), root, d);
    if ((x = json_object_get(s, "allOf")))
        for (size_t i = 0; i < json_array_size(x); i++)
            if (!v_valid(json_array_get(x, i), root, d))
                return 0;
    const json_t *alts = json_object_get(s, "anyOf") ? json_object_get(s, "anyOf") : json_object_get(s, "oneOf");
    if (alts) {
        int any = 0;
        for (size_t i = 0; i < json_array_size(alts) && !any; i++)
            any = v_valid(json_array_get(alts, i), root, d);
        if (!any)
            return 0;
    }
    if ((x = json_object_get(s, "const")) && !v_num_eq(x, d))
        return 0;
    if ((x = json_object_get(s, "enum"))) {
        int any = 0;
        for (size_t i = 0; i < json_array_size(x) && !any; i++)
            any = v_num_eq(json_array_get(x, i), d);
        if (!any)
            return 0;
    }
    if ((x = json_object_get(s, "type"))) {
        int any = 0;
        if (json_is_string(x))
            any |= v_type(d, json_string_value(x));
        for (size_t i = 0; i < json_array_size(x); i++)
            any |= v_type(d, json_string_value(json_array_get(x, i)));
        if (!any)
            return 0;
    }
    if (json_is_number(d)) {
        double v = json_number_value(d);
        const json_t *mn = json_object_get(s, "minimum"), *mx = json_object_get(s, "maximum");
        const json_t *emn = json_object_get(s, "exclusiveMinimum"), *emx = json_object_get(s, "exclusiveMaximum");
        if (mn && (json_is_true(emn) ? v <= json_number_value(mn) : v < json_number_value(mn)))
            return 0;
        if (mx && (json_is_true(emx) ? v >= json_number_value(mx) : v > json_number_value(mx)))
            return 0;
        if (json_is_number(emn) && v <= json_number_value(emn))
            return 0;
        if (json_is_number(emx) && v >= json_number_value(emx))
            return 0;
    }
    if (json_is_string(d)) {
        size_t n = v_u8len(json_string_value(d), json_string_length(d));
        if ((x = json_object_get(s, "minLength")) && n < (size_t)json_integer_value(x))
            return 0;
        if ((x = json_object_get(s, "maxLength")) && n > (size_t)json_integer_value(x))
            return 0;
    }
    if (json_is_array(d)) {
        size_t n = json_array_size(d), k = 0;
        if ((x = json_object_get(s, "minItems")) && n < (size_t)json_integer_value(x))
            return 0;
        if ((x = json_object_get(s, "maxItems")) && n > (size_t)json_integer_value(x))
            return 0;
        const json_t *pre = json_object_get(s, "prefixItems"), *it = json_object_get(s, "items");
        for (; pre && k < json_array_size(pre) && k < n; k++)
            if (!v_valid(json_array_get(pre, k), root, json_array_get(d, k)))
                return 0;
        for (; it && k < n; k++)
            if (!v_valid(it, root, json_array_get(d, k)))
                return 0;
    }
    if (json_is_object(d)) {
        const json_t *props = json_object_get(s, "properties"), *req = json_object_get(s, "required");
        const json_t *ap = json_object_get(s, "additionalProperties");
        for (size_t i = 0; i < json_array_size(req); i++)
            if (!json_object_get(d, json_string_value(json_array_get(req, i))))
                return 0;
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)d, k, v) {
            const json_t *ps = props ? json_object_get(props, k) : NULL;
            if (ps ? !v_valid(ps, root, v) : (ap && !v_valid(ap, root, v)))
                return 0;
        }
    }
    return 1;
}

/* Random walks: JSON that the subset validator accepts. CT_DUMP_WALKS=path writes a few per
 * schema for gen_schema_cases.py --walks. */
static void test_random_walks(void **state)
{
    json_t *schemas = json_object_get(fixture, "schemas");
    const char *dump = getenv("CT_DUMP_WALKS");
    json_t *out = json_object();
    al_rng r;
    al_rng_seed(&r, 2024);
    uint8_t *buf = malloc(1 << 16);
    size_t total = 0, bad = 0;
    for (size_t i = 0; i < json_array_size(schemas); i++) {
        json_t *c = json_array_get(schemas, i);
        const char *name = json_string_value(json_object_get(c, "name"));
        json_t *schema = json_object_get(c, "schema");
        al_grammar *g = compile_schema(schema);
        assert_non_null(g);
        json_t *list = json_array();
        for (int w = 0; w < 60; w++) {
            long budget = g->dfa.dist[g->dfa.start] + (long)(al_rng_next(&r) % 160);
            long n = ct_walk(g, &r, budget, 0.05, buf, 1 << 16);
            assert_true(n >= 0 && n <= budget);
            json_error_t je;
            json_t *doc = json_loadb((const char *)buf, (size_t)n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
            if (!doc || !v_valid(schema, schema, doc)) {
                fprintf(stderr, "%s: walk %.*s: %s\n", name, (int)n, buf, doc ? "fails the validator" : je.text);
                bad++;
            }
            if (w < 20)
                json_array_append_new(list, json_stringn_nocheck((const char *)buf, (size_t)n));
            json_decref(doc);
            total++;
        }
        json_object_set_new(out, name, list);
        al_grammar_unref(g);
    }
    if (dump)
        json_dump_file(out, dump, JSON_ENSURE_ASCII);
    json_decref(out);
    free(buf);
    fprintf(stderr, "random walks: %zu documents, %zu failures\n", total, bad);
    assert_int_equal(bad, 0);
}

/* Recursion: the tree schema accepts exactly 3 nested levels of node (the unroll depth). */
static void test_recursion_depth(void **state)
{
    al_grammar *g = NULL;
    const char *s = "{\"$defs\":{\"n\":{\"type\":\"object\",\"properties\":{\"c\":{\"type\":\"array\",\"items\":"
                    "{\"$ref\":\"#/$defs/n\"}}}}},\"$ref\":\"#/$defs/n\"}";
    assert_int_equal(ct_compile(AL_CONSTRAINT_JSON_SCHEMA, s, bv, &g), AL_OK);
    assert_true(ct_match(g, "{\"c\":[{\"c\":[{}]}]}", 18));
    assert_true(ct_match(g, "{\"c\":[{\"c\":[{\"c\":[]}]}]}", 24));
    assert_false(ct_match(g, "{\"c\":[{\"c\":[{\"c\":[{}]}]}]}", 26));
    al_grammar_unref(g);
    /* a required self-reference cannot terminate: the error says so */
    const char *inf = "{\"type\":\"object\",\"properties\":{\"a\":{\"$ref\":\"#\"}},\"required\":[\"a\"]}";
    assert_int_equal(ct_compile(AL_CONSTRAINT_JSON_SCHEMA, inf, bv, &g), AL_EINVAL);
    assert_non_null(strstr(al_errmsg(), "recursive $ref '#'"));
    assert_non_null(strstr(al_errmsg(), "unroll depth 3"));
}

/* JSON_OBJECT: objects of any values, nested to the fixed depth. */
static void test_json_object(void **state)
{
    al_grammar *g = NULL;
    assert_int_equal(ct_compile(AL_CONSTRAINT_JSON_OBJECT, NULL, bv, &g), AL_OK);
    static const struct {
        const char *s;
        int ok;
    } t[] = {{"{}", 1}, {"{\"a\":1}", 1}, {"{\"a\": [1, {\"b\": null}], \"c\": \"x\"}", 1}, {"[]", 0}, {"1", 0},
             {"{\"a\":{\"b\":{\"c\":{\"d\":1}}}}", 1}, {"{\"a\":{\"b\":{\"c\":{\"d\":{}}}}}", 0},
             {"{\"a\":1,}", 0}, {"{\"a\"  :1}", 0}, {"{\"a\":-0.5e+3}", 1}};
    for (size_t i = 0; i < AL_ARRAY_LEN(t); i++)
        if (ct_match(g, t[i].s, strlen(t[i].s)) != t[i].ok)
            fail_msg("json_object on %s: want %d", t[i].s, t[i].ok);
    al_rng r;
    al_rng_seed(&r, 5);
    uint8_t buf[4096];
    for (int w = 0; w < 200; w++) {
        long n = ct_walk(g, &r, 2 + (long)(al_rng_next(&r) % 300), 0.05, buf, sizeof buf);
        json_error_t je;
        json_t *d = json_loadb((const char *)buf, (size_t)n, JSON_ALLOW_NUL, &je);
        if (!d || !json_is_object(d))
            fail_msg("json_object walk %.*s: %s", (int)n, buf, je.text);
        json_decref(d);
    }
    al_grammar_unref(g);
}

/* Choices: exactly one of the strings, raw bytes (not JSON-quoted). */
static void test_choice(void **state)
{
    al_grammar *g = NULL;
    assert_int_equal(ct_compile(AL_CONSTRAINT_CHOICE, "[\"yes\",\"no\",\"yes, but\",\"日本\",\"\"]", bv, &g), AL_OK);
    assert_true(ct_match(g, "yes", 3));
    assert_true(ct_match(g, "yes, but", 8));
    assert_true(ct_match(g, "no", 2));
    assert_true(ct_match(g, "\xe6\x97\xa5\xe6\x9c\xac", 6));
    assert_true(ct_match(g, "", 0));
    assert_false(ct_match(g, "ye", 2));
    assert_false(ct_match(g, "\"yes\"", 5));
    al_grammar_unref(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixture_docs),
        cmocka_unit_test(test_random_walks),
        cmocka_unit_test(test_recursion_depth),
        cmocka_unit_test(test_json_object),
        cmocka_unit_test(test_choice),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    al_grammar_cache_clear();
    return rc;
}
