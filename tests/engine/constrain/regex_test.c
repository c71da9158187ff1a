/* regex_test.c: regex constraints against Python re.fullmatch verdicts (fixture), hand cases for
 * what Python lacks (lazy / possessive / ECMAScript names), error messages, UTF-8 validity. */
#include "ctest_util.h"

static al_vocab *bv;

static int setup(void **state)
{
    bv = ct_byte_vocab();
    return 0;
}

static int teardown(void **state)
{
    al_vocab_free(bv);
    return 0;
}

static void test_fixture(void **state)
{
    json_t *j = ct_load_json("tests/fixtures/constrain/regex_cases.json");
    assert_non_null(j);
    json_t *cases = json_object_get(j, "cases");
    size_t checked = 0, bad = 0;
    for (size_t i = 0; i < json_array_size(cases); i++) {
        json_t *c = json_array_get(cases, i);
        const char *pat = json_string_value(json_object_get(c, "pattern"));
        al_grammar *g = NULL;
        al_err e = ct_compile(AL_CONSTRAINT_REGEX, pat, bv, &g);
        if (e != AL_OK) {
            fprintf(stderr, "pattern /%s/: %s\n", pat, al_errmsg());
            bad++;
            continue;
        }
        json_t *rows = json_object_get(c, "strings");
        for (size_t k = 0; k < json_array_size(rows); k++) {
            json_t *r = json_array_get(rows, k);
            json_t *s = json_array_get(r, 0);
            int want = json_is_true(json_array_get(r, 1));
            int got = ct_match(g, json_string_value(s), json_string_length(s));
            if (got != want) {
                fprintf(stderr, "pattern /%s/ on \"%s\": got %d, Python says %d\n", pat, json_string_value(s), got, want);
                bad++;
            }
            checked++;
        }
        al_grammar_unref(g);
    }
    json_t *inv = json_object_get(j, "invalid"), *uns = json_object_get(j, "unsupported");
    for (size_t i = 0; i < json_array_size(inv); i++) {
        const char *pat = json_string_value(json_array_get(inv, i));
        al_constraint_spec sp = {AL_CONSTRAINT_REGEX, pat, strlen(pat)};
        al_err e = al_constraint_check(&sp);
        if (e == AL_OK || e == AL_EUNSUPPORTED || !strstr(al_errmsg(), "offset")) {
            fprintf(stderr, "invalid pattern /%s/: %s (%s)\n", pat, al_strerror(e), al_errmsg());
            bad++;
        }
    }
    for (size_t i = 0; i < json_array_size(uns); i++) {
        const char *pat = json_string_value(json_array_get(uns, i));
        al_constraint_spec sp = {AL_CONSTRAINT_REGEX, pat, strlen(pat)};
        al_err e = al_constraint_check(&sp);
        if (e != AL_EUNSUPPORTED || !strstr(al_errmsg(), "not supported") || !strstr(al_errmsg(), "offset")) {
            fprintf(stderr, "unsupported pattern /%s/: %s (%s)\n", pat, al_strerror(e), al_errmsg());
            bad++;
        }
    }
    fprintf(stderr, "regex fixture: %zu verdicts checked, %zu mismatches\n", checked, bad);
    assert_true(checked > 3000);
    assert_int_equal(bad, 0);
    json_decref(j);
}

static void test_hand(void **state)
{
    static const struct {
        const char *re, *s;
        int want;
    } t[] = {
        {"a*+b", "aab", 1},          /* possessive treated as greedy */
        {"a++", "aaa", 1},
        {"a{2,3}+", "aaa", 1},
        {"(?<word>ab)+", "abab", 1}, /* ECMAScript named group */
        {"(?<word>ab)+", "aba", 0},
        {"[\\u00e0-\\u00e5]", "\xc3\xa3", 1},
        {"\\ud800", "", 0},          /* a surrogate cannot be generated: never matches */
        {"\\ud800|x", "x", 1},
        {"\\/", "/", 1},
        {"\\-", "-", 1},
        {"[^\\s\\S]|ok", "ok", 1},
        {"((((a))))", "a", 1},
        {"^$", "", 1},
        {"$", "", 1},
        {"(a|b)*?c", "abc", 1},
        {"(?:a|^b)c", "bc", 1},
    };
    for (size_t i = 0; i < AL_ARRAY_LEN(t); i++) {
        al_grammar *g = NULL;
        al_err e = ct_compile(AL_CONSTRAINT_REGEX, t[i].re, bv, &g);
        if (e != AL_OK) {
            /* the two deliberately dead patterns compile to "nothing" */
            assert_true(t[i].want == 0);
            assert_int_equal(e, AL_EINVAL);
            assert_non_null(strstr(al_errmsg(), "no string"));
            continue;
        }
        if (ct_match(g, t[i].s, strlen(t[i].s)) != t[i].want)
            fail_msg("/%s/ on \"%s\": want %d", t[i].re, t[i].s, t[i].want);
        al_grammar_unref(g);
    }
}

static void test_errors_name_problem(void **state)
{
    static const struct {
        const char *re;
        al_err e;
        const char *msg;
    } t[] = {
        {"ab(?=c)", AL_EUNSUPPORTED, "lookahead (?= at offset 2"},
        {"(?<!x)y", AL_EUNSUPPORTED, "lookbehind"},
        {"(a)\\1", AL_EUNSUPPORTED, "backreference at offset 3"},
        {"x(?i)", AL_EUNSUPPORTED, "inline flags"},
        {"a\\b", AL_EUNSUPPORTED, "word boundary"},
        {"ab^c", AL_EUNSUPPORTED, "^ anchor not at the start"},
        {"a$b", AL_EUNSUPPORTED, "$ anchor not at the end of the pattern at offset 1"},
        {"(a$)b", AL_EUNSUPPORTED, "$ anchor not at the end"},
        {"[abc", AL_EINVAL, "unterminated character class at offset 0"},
        {"ab)", AL_EINVAL, "unbalanced parenthesis at offset 2"},
        {"(ab", AL_EINVAL, "missing ), unterminated subpattern at offset 0"},
        {"a{5,2}", AL_EINVAL, "min repeat greater than max repeat at offset 1"},
        {"a{100001}", AL_ERANGE, "repetition count too large"},
        {"*", AL_EINVAL, "nothing to repeat at offset 0"},
        {"a**", AL_EINVAL, "multiple repeat at offset 2"},
        {"\\q", AL_EINVAL, "bad escape at offset 0"},
        {"\\x4", AL_EINVAL, "incomplete hex escape"},
        {"[b-a]", AL_EINVAL, "bad character range"},
        {"(a{1000}){3000}", AL_ERANGE, "automaton too large"},
        {"\xff", AL_EINVAL, "invalid UTF-8 at offset 0"},
    };
    for (size_t i = 0; i < AL_ARRAY_LEN(t); i++) {
        al_constraint_spec sp = {AL_CONSTRAINT_REGEX, t[i].re, strlen(t[i].re)};
        al_err e = al_constraint_check(&sp);
        if (e != t[i].e || !strstr(al_errmsg(), t[i].msg))
            fail_msg("/%s/: got %s \"%s\", want %s containing \"%s\"", t[i].re, al_strerror(e), al_errmsg(),
                     al_strerror(t[i].e), t[i].msg);
    }
    /* deep nesting is an error, not a stack overflow */
    char deep[2000];
    for (int i = 0; i < 600; i++) {
        deep[i] = '(';
        deep[1200 - i - 1] = ')';
    }
    deep[1200] = 0;
    al_constraint_spec sp = {AL_CONSTRAINT_REGEX, deep, 1200};
    assert_int_equal(al_constraint_check(&sp), AL_ERANGE);
}

/* dist(start) is the shortest match length; walks only ever produce valid UTF-8 that matches. */
static int ct_valid_utf8(const uint8_t *s, long n)
{
    for (long i = 0; i < n;) {
        uint32_t c = s[i];
        int k = c < 0x80 ? 0 : (c >= 0xC2 && c <= 0xDF) ? 1 : (c >= 0xE0 && c <= 0xEF) ? 2 : (c >= 0xF0 && c <= 0xF4) ? 3 : -1;
        if (k < 0 || i + k >= n + (k == 0))
            return k == 0;
        uint32_t v = c & (0x7F >> k);
        for (int j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80)
                return 0;
            v = v << 6 | (s[i + j] & 0x3F);
        }
        if ((k == 2 && v < 0x800) || (k == 3 && (v < 0x10000 || v > 0x10FFFF)) || (v >= 0xD800 && v <= 0xDFFF))
            return 0;
        i += k + 1;
    }
    return 1;
}

static void test_dist_and_walks(void **state)
{
    static const struct {
        const char *re;
        int32_t dist;
    } t[] = {{"a{3,5}", 3}, {"\\d{4}-\\d\\d", 7}, {".", 1}, {"[^a]", 1}, {"x*", 0}, {"(ab|c)+d", 2},
             {"[\\u0800-\\uffff]{2}", 6}, {"\\U0001F600", 4}, {".{3,10}", 3}, {"[^\\x00-\\x7f]*z", 1}};
    al_rng r;
    al_rng_seed(&r, 42);
    uint8_t buf[512];
    for (size_t i = 0; i < AL_ARRAY_LEN(t); i++) {
        al_grammar *g = NULL;
        assert_int_equal(ct_compile(AL_CONSTRAINT_REGEX, t[i].re, bv, &g), AL_OK);
        assert_int_equal(g->dfa.dist[g->dfa.start], t[i].dist);
        for (int w = 0; w < 200; w++) {
            long n = ct_walk(g, &r, t[i].dist + 40, 0.1, buf, sizeof buf);
            assert_true(n >= 0);
            assert_true(ct_valid_utf8(buf, n));
            assert_true(ct_match(g, buf, (size_t)n));
        }
        al_grammar_unref(g);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixture),
        cmocka_unit_test(test_hand),
        cmocka_unit_test(test_errors_name_problem),
        cmocka_unit_test(test_dist_and_walks),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    al_grammar_cache_clear();
    return rc;
}
