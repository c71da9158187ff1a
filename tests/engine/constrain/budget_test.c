/* budget_test.c: the max_tokens budget rule: with remaining = dist(start) .. dist(start) + 5, every
 * generation that picks uniformly random allowed tokens ends accepted within `remaining` tokens,
 * for byte, byte-level BPE, SentencePiece and synthetic long-token vocabularies. */
#include "ctest_util.h"

static const char *const schemas[] = {
    "{\"type\":\"object\",\"properties\":{\"name\":{\"const\":\"get_weather\"},\"arguments\":{\"type\":\"object\","
    "\"properties\":{\"city\":{\"type\":\"string\"},\"unit\":{\"enum\":[\"celsius\",\"fahrenheit\"]},\"days\":"
    "{\"type\":\"integer\",\"minimum\":1,\"maximum\":14}},\"required\":[\"city\",\"unit\"]}},\"required\":[\"name\",\"arguments\"]}",
    "{\"type\":\"array\",\"items\":{\"type\":\"object\",\"properties\":{\"sentence\":{\"type\":\"string\"},"
    "\"label\":{\"enum\":[\"supported\",\"unsupported\"]},\"score\":{\"type\":\"number\",\"minimum\":0,\"maximum\":1}},"
    "\"required\":[\"sentence\",\"label\",\"score\"]},\"minItems\":2}",
    "{\"type\":\"object\",\"properties\":{\"rewritten_question\":{\"type\":\"string\",\"minLength\":5}},\"required\":[\"rewritten_question\"]}",
    "{\"type\":\"string\",\"format\":\"date-time\"}",
    "{\"$defs\":{\"n\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"integer\"},\"c\":{\"type\":\"array\",\"items\":"
    "{\"$ref\":\"#/$defs/n\"},\"minItems\":1}},\"required\":[\"v\"]}},\"$ref\":\"#/$defs/n\"}",
    "{\"type\":\"integer\",\"minimum\":100000,\"maximum\":100500}",
};

static int run_budget(const al_vocab *v, al_constraint_kind kind, const char *text, uint64_t seed)
{
    al_grammar *g = NULL;
    if (ct_compile(kind, text, v, &g) != AL_OK)
        fail_msg("compile %s: %s", text ? text : "(json_object)", al_errmsg());
    uint32_t *bits = malloc((size_t)g->nwords * 4);
    al_rng r;
    al_rng_seed(&r, seed);
    int32_t d0 = g->dfa.dist[g->dfa.start], runs = 0;
    for (int32_t R = d0 > 0 ? d0 : 1; R <= d0 + 5; R++)
        for (int k = 0; k < 12; k++) {
            al_matcher *m;
            assert_int_equal(al_matcher_new(g, &m), AL_OK);
            int32_t rem = R, used = 0;
            for (;;) {
                int32_t c = al_matcher_mask(m, rem, bits);
                if (c <= 0)
                    fail_msg("%s: nothing allowed with %d of %d tokens left", text ? text : "json_object", rem, R);
                int32_t pick = -1, seen = 0;
                for (int32_t i = 0; i < v->n; i++)
                    if ((bits[i >> 5] >> (i & 31) & 1) && al_rng_next(&r) % (uint64_t)++seen == 0)
                        pick = i;
                assert_int_equal(al_matcher_accept(m, pick), AL_OK);
                used++;
                if (al_matcher_finished(m) || --rem == 0)
                    break;
            }
            if (!al_matcher_accepting(m))
                fail_msg("%s: generation of %d tokens (budget %d) ends unaccepted", text ? text : "json_object", used, R);
            assert_true(used <= R);
            al_matcher_free(m);
            runs++;
        }
    free(bits);
    al_grammar_unref(g);
    return runs;
}

static void run_all(const al_vocab *v, const char *name)
{
    int runs = 0;
    for (size_t i = 0; i < AL_ARRAY_LEN(schemas); i++)
        runs += run_budget(v, AL_CONSTRAINT_JSON_SCHEMA, schemas[i], 10 + i);
    runs += run_budget(v, AL_CONSTRAINT_JSON_OBJECT, NULL, 1);
    runs += run_budget(v, AL_CONSTRAINT_REGEX, "\\d{3}-\\d{4}( ext\\. \\d+)?", 2);
    runs += run_budget(v, AL_CONSTRAINT_REGEX, "[a-z ]{10,}\\.", 3);
    runs += run_budget(v, AL_CONSTRAINT_CHOICE, "[\"supported\",\"unsupported\",\"partially supported\"]", 4);
    fprintf(stderr, "%s: %d budgeted generations ended accepted\n", name, runs);
}

static void test_byte_vocab(void **state)
{
    al_vocab *v = ct_byte_vocab();
    run_all(v, "bytes");
    al_vocab_free(v);
}

static void test_gpt2(void **state)
{
    al_vocab *v = ct_load_tokenizer("tests/fixtures/tokenizer/bl_gpt2.tokenizer.json", 1,
                                    (const char *const[]){"<|endoftext|>", NULL});
    run_all(v, "bl_gpt2");
    al_vocab_free(v);
}

/* Not byte-complete (no 0xF0-0xFF tokens): the rule counts only bytes that are tokens alone. */
static void test_sentencepiece(void **state)
{
    al_vocab *v = ct_load_tokenizer("tests/fixtures/tokenizer/sp_meta.tokenizer.json", 0,
                                    (const char *const[]){"</s>", NULL});
    run_all(v, "sp_meta");
    al_vocab_free(v);
}

/* Synthetic: all 256 single bytes plus 3000 random tokens of 2-12 bytes from a JSON-ish alphabet. */
static void test_long_tokens(void **state)
{
    enum { N = 256 + 3000 + 1 };
    static const char alpha[] = "{}[]\":, abcdefgxyz0123456789.-e\\u";
    uint8_t *store = malloc((size_t)N * 12), *p[N];
    int32_t len[N], eos = N - 1;
    al_rng r;
    al_rng_seed(&r, 77);
    for (int i = 0; i < N - 1; i++) {
        p[i] = store + (size_t)i * 12;
        if (i < 256) {
            p[i][0] = (uint8_t)i;
            len[i] = 1;
        } else {
            len[i] = 2 + (int32_t)(al_rng_next(&r) % 11);
            for (int k = 0; k < len[i]; k++)
                p[i][k] = (uint8_t)alpha[al_rng_next(&r) % (sizeof alpha - 1)];
        }
    }
    p[N - 1] = NULL;
    len[N - 1] = 0;
    al_vocab *v = NULL;
    assert_int_equal(al_vocab_new(N, (const uint8_t *const *)p, len, &eos, 1, &v), AL_OK);
    free(store);
    run_all(v, "synthetic");
    al_vocab_free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_byte_vocab),
        cmocka_unit_test(test_gpt2),
        cmocka_unit_test(test_sentencepiece),
        cmocka_unit_test(test_long_tokens),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    al_grammar_cache_clear();
    return rc;
}
