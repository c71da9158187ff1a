/* bad_input_test.c: malformed and unsupported specs give errors that name the problem (keyword and
 * JSON pointer, regex construct and offset); bad arguments are errors; mutated specs never crash. */
#include "ctest_util.h"

typedef struct {
    al_constraint_kind kind;
    const char *text;
    al_err e;
    const char *msg;
} ct_bad;

static const ct_bad bad[] = {
    {AL_CONSTRAINT_JSON_SCHEMA, "{\"type\":\"object\",\"properties\":{\"x\":{\"not\":{\"type\":\"string\"}}}}",
     AL_EUNSUPPORTED, "unsupported keyword 'not' at /properties/x/not"},
    {AL_CONSTRAINT_JSON_SCHEMA, "{\"if\":{\"type\":\"string\"},\"then\":{\"minLength\":1}}", AL_EUNSUPPORTED,
     "unsupported keyword 'if' at /if"},
    {AL_CONSTRAINT_JSON_SCHEMA, "{\"type\":\"object\",\"patternProperties\":{\"^a\":{}}}", AL_EUNSUPPORTED,
     "'patternProperties' at /patternProperties"},
    {AL_CONSTRAINT_JSON_SCHEMA, "{\"type\":\"array\",\"items\":{\"type\":\"array\",\"uniqueItems\":true}}", AL_EUNSUPPORTED,
     "'uniqueItems' at /items/uniqueItems"},
    {AL_CONSTRAINT_JSON_SCHEMA, "{\"type\":\"integer\",\"multipleOf\":5}", AL_EUNSUPPORTED, "'multipleOf' at /multipleOf"},
    {AL_CONSTRAINT_JSON_SCHEMA, "{\"$defs\":{\"a~b/c\":{\"type\":\"object\",\"propertyNames\":{}}},\"$ref\":\"#/$defs/a~0b~1c\"}",
     AL_EUNSUPPORTED, "'propertyNames' at /$defs/a~0b~1c/propertyNames"},
    {AL_CONSTRAINT_JSON_SCHEMA, "{\"$ref\":\"http://example.com/s.json\"}", AL_EUNSUPPORTED, "non-local $ref"},
    {AL_CONSTRAINT_JSON_SCHEMA, "{\"$ref\":\"#/$defs/missing\"}", AL_EINVAL, "unresolved $ref '#/$defs/missing'"},
    {AL_CONSTRAINT_JSON_SCHEMA, "{\"$ref\":\"#/$defs/a\",\"type\":\"string\",\"$defs\":{\"a\":{}}}", AL_EUNSUPPORTED,
     "'$ref' with sibling keyword 'type'"},
    {AL_CONSTRAINT_JSON_SCHEMA, "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"strin\"}}}", AL_EINVAL,
     "unknown type 'strin' at /properties/a/type"},
    {AL_CONSTRAINT_JSON_SCHEMA, "{\"type\":\"string\",\"minLength\":-1}", AL_EINVAL, "'minLength' must be a non-negative integer"},
    {AL_CONSTRAINT_JSON_SCHEMA, "{\"type\":\"string\",\"pattern\":\"a(b\"}", AL_EINVAL,
     "/pattern: regex: missing ), unterminated subpattern at offset 1"},
    {AL_CONSTRAINT_JSON_SCHEMA, "{\"type\":\"string\",\"pattern\":\"(?=x)\"}", AL_EUNSUPPORTED, "/pattern: regex: lookahead"},
    {AL_CONSTRAINT_JSON_SCHEMA, "{\"allOf\":[{\"type\":\"string\"},{\"maxLength\":3}]}", AL_EUNSUPPORTED,
     "'allOf' with more than one subschema"},
    {AL_CONSTRAINT_JSON_SCHEMA, "{\"anyOf\":[]}", AL_EINVAL, "'anyOf' must be a non-empty array"},
    {AL_CONSTRAINT_JSON_SCHEMA, "{\"type\":\"string\",\"anyOf\":[{\"type\":\"integer\"}]}", AL_EUNSUPPORTED,
     "keyword 'type' both beside 'anyOf' and inside it"},
    {AL_CONSTRAINT_JSON_SCHEMA, "{\"type\":\"integer\",\"minimum\":5,\"maximum\":3}", AL_EINVAL, "no JSON value satisfies"},
    {AL_CONSTRAINT_JSON_SCHEMA, "{\"type\":\"integer\",\"maximum\":1e300}", AL_EUNSUPPORTED, "'maximum' 1e+300 outside"},
    {AL_CONSTRAINT_JSON_SCHEMA, "{\"type\":\"number\",\"minimum\":\"0\"}", AL_EINVAL, "'minimum' must be a number"},
    {AL_CONSTRAINT_JSON_SCHEMA, "{\"type\":\"object\",", AL_EINVAL, "invalid JSON at line 1"},
    {AL_CONSTRAINT_JSON_SCHEMA, "[1,2]", AL_EINVAL, "must be an object or a boolean"},
    {AL_CONSTRAINT_JSON_SCHEMA, "false", AL_EINVAL, "no JSON value satisfies"},
    {AL_CONSTRAINT_JSON_SCHEMA, "{\"type\":\"string\",\"format\":\"date\",\"pattern\":\"x\"}", AL_EUNSUPPORTED,
     "'pattern' together with format 'date'"},
    {AL_CONSTRAINT_JSON_SCHEMA, "{\"type\":\"string\",\"minLength\":200000}", AL_ERANGE, "minLength 200000 above"},
    {AL_CONSTRAINT_JSON_SCHEMA, "{\"type\":\"object\",\"properties\":{\"a\":{\"$ref\":\"#\"}},\"required\":[\"a\"]}",
     AL_EINVAL, "recursive $ref '#' leaves no valid document within the unroll depth 3"},
    {AL_CONSTRAINT_JSON_SCHEMA, "{\"required\":[1]}", AL_EINVAL, "'required' must be an array of strings at /required/0"},
    {AL_CONSTRAINT_JSON_SCHEMA, "{\"properties\":{\"a\":5}}", AL_EINVAL, "schema must be an object or a boolean at /properties/a"},
    {AL_CONSTRAINT_CHOICE, "[\"a\",1]", AL_EINVAL, "choice: element 1 is not a string"},
    {AL_CONSTRAINT_CHOICE, "[]", AL_EINVAL, "non-empty JSON array of strings"},
    {AL_CONSTRAINT_CHOICE, "\"a\"", AL_EINVAL, "non-empty JSON array"},
    {AL_CONSTRAINT_CHOICE, "[\"a\"", AL_EINVAL, "choice: invalid JSON"},
    {AL_CONSTRAINT_REGEX, "a(?<=b)", AL_EUNSUPPORTED, "lookbehind (?<= / (?<! at offset 1 is not supported"},
    {AL_CONSTRAINT_REGEX, "[", AL_EINVAL, "unterminated character class at offset 0"},
    {AL_CONSTRAINT_NONE, "x", AL_EINVAL, "unknown kind"},
    {(al_constraint_kind)42, "x", AL_EINVAL, "unknown kind"},
};

static void test_error_messages(void **state)
{
    for (size_t i = 0; i < AL_ARRAY_LEN(bad); i++) {
        al_constraint_spec s = {bad[i].kind, bad[i].text, strlen(bad[i].text)};
        al_err e = al_constraint_check(&s);
        if (e != bad[i].e || !strstr(al_errmsg(), bad[i].msg))
            fail_msg("%s: got %s \"%s\", want %s containing \"%s\"", bad[i].text, al_strerror(e), al_errmsg(),
                     al_strerror(bad[i].e), bad[i].msg);
    }
}

static void test_annotations_ignored(void **state)
{
    const char *s = "{\"$schema\":\"https://json-schema.org/draft/2020-12/schema\",\"$id\":\"x\",\"title\":\"T\","
                    "\"description\":\"d\",\"examples\":[1],\"default\":3,\"$comment\":\"c\",\"deprecated\":true,"
                    "\"readOnly\":true,\"x-vendor\":{\"not\":1},\"type\":\"integer\",\"uniqueItems\":false}";
    al_constraint_spec sp = {AL_CONSTRAINT_JSON_SCHEMA, s, strlen(s)};
    assert_int_equal(al_constraint_check(&sp), AL_OK);
}

static void test_bad_arguments(void **state)
{
    al_vocab *v = ct_byte_vocab();
    al_grammar *g = NULL;
    assert_int_equal(al_grammar_compile(NULL, v, &g), AL_EINVAL);
    al_constraint_spec sp = {AL_CONSTRAINT_REGEX, "a", 1};
    assert_int_equal(al_grammar_compile(&sp, NULL, &g), AL_EINVAL);
    assert_int_equal(al_grammar_compile(&sp, v, NULL), AL_EINVAL);
    assert_int_equal(al_constraint_check(NULL), AL_EINVAL);
    al_constraint_spec nul = {AL_CONSTRAINT_REGEX, NULL, 3};
    assert_int_equal(al_constraint_check(&nul), AL_EINVAL);
    assert_int_equal(al_grammar_get(NULL, v, &g), AL_EINVAL);
    al_matcher *m;
    assert_int_equal(al_matcher_new(NULL, &m), AL_EINVAL);
    const uint8_t *p[2] = {(const uint8_t *)"a", NULL};
    int32_t len[2] = {1, 0}, eos = 5, neg[2] = {-1, 0};
    al_vocab *bvv;
    assert_int_equal(al_vocab_new(2, p, len, &eos, 1, &bvv), AL_EINVAL);
    assert_int_equal(al_vocab_new(0, p, len, NULL, 0, &bvv), AL_EINVAL);
    assert_int_equal(al_vocab_new(2, p, neg, NULL, 0, &bvv), AL_EINVAL);
    al_vocab empty = {0};
    assert_int_equal(al_grammar_compile(&sp, &empty, &g), AL_EINVAL);
    al_matcher_free(NULL);
    al_grammar_unref(NULL);
    al_vocab_free(v);
}

/* Random byte mutations of valid specs: any verdict, never a crash (run under ASan/UBSan too). */
static void test_fuzz(void **state)
{
    static const struct {
        al_constraint_kind k;
        const char *t;
    } seeds[] = {
        {AL_CONSTRAINT_REGEX, "(?P<y>\\d{4})-[01]\\d|[^\\x00-\\x1f]{2,5}?(a|b)*c+\\u00e9[\\w.]"},
        {AL_CONSTRAINT_JSON_SCHEMA,
         "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\",\"minimum\":-5,\"maximum\":99},"
         "\"b\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/s\"},\"minItems\":1,\"maxItems\":3},"
         "\"c\":{\"anyOf\":[{\"type\":\"number\",\"exclusiveMinimum\":0.5},{\"enum\":[\"x\",null]}]}},"
         "\"required\":[\"a\"],\"$defs\":{\"s\":{\"type\":\"string\",\"pattern\":\"^[a-z]+$\",\"maxLength\":4}}}"},
        {AL_CONSTRAINT_CHOICE, "[\"alpha\",\"beta\",\"\\u00e9\"]"},
    };
    al_vocab *v = ct_byte_vocab();
    al_rng r;
    al_rng_seed(&r, 31337);
    char buf[1024];
    uint8_t out[512];
    int ok = 0, err = 0;
    for (int it = 0; it < 3000; it++) {
        size_t si = al_rng_next(&r) % AL_ARRAY_LEN(seeds), n = strlen(seeds[si].t);
        memcpy(buf, seeds[si].t, n);
        int muts = 1 + (int)(al_rng_next(&r) % 4);
        for (int k = 0; k < muts; k++) {
            size_t at = al_rng_next(&r) % n;
            switch (al_rng_next(&r) % 3) {
            case 0: { /* replace with a syntax-heavy byte */
                static const char pool[] = "{}[]()\"\\,:*+?|^$.-09azAZ\xc3\xff ";
                buf[at] = pool[al_rng_next(&r) % (sizeof pool - 1)];
                break;
            }
            case 1: /* delete */
                memmove(buf + at, buf + at + 1, n - at - 1);
                n--;
                break;
            default: /* duplicate a span */
                if (n < sizeof buf / 2) {
                    size_t l = 1 + al_rng_next(&r) % 8;
                    l = at + l > n ? n - at : l;
                    memmove(buf + at + l, buf + at, n - at);
                    n += l;
                }
            }
        }
        al_constraint_spec sp = {seeds[si].k, buf, n};
        al_grammar *g = NULL;
        if (al_grammar_compile(&sp, v, &g) != AL_OK) {
            err++;
            assert_true(al_errmsg()[0] != 0);
            continue;
        }
        ok++;
        long len = ct_walk(g, &r, g->dfa.dist[g->dfa.start] + 30, 0.2, out, sizeof out);
        assert_true(len >= 0);
        assert_true(ct_match(g, out, (size_t)len));
        al_grammar_unref(g);
    }
    fprintf(stderr, "fuzz: %d compiled, %d rejected\n", ok, err);
    assert_true(ok > 100 && err > 100);
    al_vocab_free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_messages),
        cmocka_unit_test(test_annotations_ignored),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_fuzz),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    al_grammar_cache_clear();
    return rc;
}
