/* mask_test.c: token masks: a hand-made vocabulary with tokens that cross grammar boundaries and
 * split UTF-8 characters (expected sets written out), then the GPT-2-style byte-level and the
 * SentencePiece test tokenizers, where every trie-walk mask must equal a brute-force mask. */
#include "ctest_util.h"

enum { T_EOS, T_LB, T_RB, T_Q, T_QCOLON, T_QCOLONSP, T_1, T_1COMMA, T_QRB, T_A, T_AB, T_EACUTE, T_C3, T_A9,
       T_SMILE, T_F09F, T_COMMA, T_SP, T_COLON, T_LBQ, T_X, T_EMPTY, T_WHOLE, T_KEYB, T_N };

static const char *const hand_tok[T_N] = {
    [T_EOS] = NULL, [T_LB] = "{", [T_RB] = "}", [T_Q] = "\"", [T_QCOLON] = "\":", [T_QCOLONSP] = "\": ",
    [T_1] = "1", [T_1COMMA] = "1,", [T_QRB] = "\"}", [T_A] = "a", [T_AB] = "ab", [T_EACUTE] = "\xc3\xa9",
    [T_C3] = "\xc3", [T_A9] = "\xa9", [T_SMILE] = "\xf0\x9f\x98\x80", [T_F09F] = "\xf0\x9f", [T_COMMA] = ",",
    [T_SP] = " ", [T_COLON] = ":", [T_LBQ] = "{\"", [T_X] = "x", [T_EMPTY] = "", [T_WHOLE] = "\"a\":1}",
    [T_KEYB] = "\"b\":\"",
};

static al_vocab *hand_vocab(void)
{
    const uint8_t *p[T_N];
    int32_t len[T_N], eos = T_EOS;
    for (int i = 0; i < T_N; i++) {
        p[i] = (const uint8_t *)hand_tok[i];
        len[i] = hand_tok[i] ? (int32_t)strlen(hand_tok[i]) : 0;
    }
    al_vocab *v = NULL;
    assert_int_equal(al_vocab_new(T_N, p, len, &eos, 1, &v), AL_OK);
    return v;
}

/* The mask at the state after `prefix` equals exactly the listed ids (-1 terminated). */
static void expect_mask(al_grammar *g, const char *prefix, const int *ids)
{
    al_matcher *m;
    assert_int_equal(al_matcher_new(g, &m), AL_OK);
    int32_t s = ct_run(g, g->dfa.start, (const uint8_t *)prefix, strlen(prefix));
    assert_true(s > ALI_DFA_DEAD);
    struct {
        ali_mask m;
        uint32_t w[1];
    } scratch;
    const ali_mask *mk = ali_mask_of(g, s, &scratch.m);
    assert_non_null(mk);
    uint32_t want[1] = {0};
    int n = 0;
    for (; ids[n] >= 0; n++)
        want[0] |= 1u << ids[n];
    if (mk->bits[0] != want[0])
        fail_msg("after '%s': mask %08x, want %08x", prefix, mk->bits[0], want[0]);
    assert_int_equal(mk->count, n);
    al_matcher_free(m);
}

static void test_hand_vocab(void **state)
{
    al_vocab *v = hand_vocab();
    al_grammar *g = NULL;
    const char *schema = "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},\"b\":{\"type\":\"string\"}},"
                         "\"required\":[\"a\"]}";
    assert_int_equal(ct_compile(AL_CONSTRAINT_JSON_SCHEMA, schema, v, &g), AL_OK);
    expect_mask(g, "", (int[]){T_LB, T_LBQ, -1});
    expect_mask(g, "{", (int[]){T_Q, T_WHOLE, -1});
    expect_mask(g, "{\"a", (int[]){T_Q, T_QCOLON, T_QCOLONSP, -1});
    expect_mask(g, "{\"a\":", (int[]){T_1, T_1COMMA, T_SP, -1});
    expect_mask(g, "{\"a\":1", (int[]){T_1, T_1COMMA, T_RB, T_COMMA, -1});
    expect_mask(g, "{\"a\":1,", (int[]){T_Q, T_SP, T_KEYB, -1});
    /* inside a string: every content token, a lead byte alone, not a lone continuation byte */
    expect_mask(g, "{\"a\":1,\"b\":\"",
                (int[]){T_LB, T_RB, T_Q, T_1, T_1COMMA, T_QRB, T_A, T_AB, T_EACUTE, T_C3, T_SMILE, T_F09F, T_COMMA,
                        T_SP, T_COLON, T_LBQ, T_X, -1});
    expect_mask(g, "{\"a\":1,\"b\":\"\xc3", (int[]){T_A9, -1});
    expect_mask(g, "{\"a\":1,\"b\":\"\xf0\x9f", (int[]){T_A9, -1});
    /* complete: only EOS */
    expect_mask(g, "{\"a\":1}", (int[]){T_EOS, -1});

    al_matcher *m;
    assert_int_equal(al_matcher_new(g, &m), AL_OK);
    int seq[] = {T_LBQ, T_A, T_QCOLONSP, T_1, T_1COMMA, T_KEYB, T_C3, T_A9, T_SMILE, T_QRB};
    for (size_t i = 0; i < AL_ARRAY_LEN(seq); i++) {
        assert_false(al_matcher_finished(m));
        assert_int_equal(al_matcher_accept(m, seq[i]), AL_OK);
    }
    assert_true(al_matcher_accepting(m));
    assert_true(al_matcher_finished(m));
    assert_int_equal(al_matcher_accept(m, T_X), AL_EINVAL);
    assert_int_equal(al_matcher_accept(m, T_EOS), AL_OK);
    assert_int_equal(al_matcher_accept(m, T_EOS), AL_EINVAL); /* after EOS */
    al_matcher_free(m);
    al_grammar_unref(g);

    /* regex "a+" : accepting but not finished (more a's possible): EOS and a/ab? only a */
    assert_int_equal(ct_compile(AL_CONSTRAINT_REGEX, "a+", v, &g), AL_OK);
    expect_mask(g, "", (int[]){T_A, -1});
    expect_mask(g, "a", (int[]){T_EOS, T_A, -1});
    al_grammar_unref(g);
    al_vocab_free(v);
}

/* Random token walks; at each state the trie mask equals the brute-force mask, unrestricted and
 * for a few byte limits (the budget rule's restriction). Returns the states checked. */
static int check_vocab(const al_vocab *v, const char *name, al_constraint_kind kind, const char *text, uint64_t seed)
{
    al_grammar *g = NULL;
    if (ct_compile(kind, text, v, &g) != AL_OK)
        fail_msg("%s: %s", name, al_errmsg());
    uint32_t *a = malloc((size_t)g->nwords * 4), *b = malloc((size_t)g->nwords * 4);
    al_rng r;
    al_rng_seed(&r, seed);
    int checked = 0;
    for (int walk = 0; walk < 6; walk++) {
        al_matcher *m;
        assert_int_equal(al_matcher_new(g, &m), AL_OK);
        for (int step = 0; step < 40; step++) {
            int32_t s = ali_matcher_state(m);
            int32_t ca = al_matcher_mask(m, 0, a), cb = ct_brute_mask(g, v, s, -1, b);
            if (ca != cb || memcmp(a, b, (size_t)g->nwords * 4) != 0)
                fail_msg("%s %s: state %d: trie mask (%d) != brute force (%d)", name, text, s, ca, cb);
            for (int32_t lim = 0; lim < 6; lim++) {
                int32_t mx, mn;
                ca = ali_mask_walk(g, s, lim, a, &mx, &mn);
                cb = ct_brute_mask(g, v, s, lim, b);
                if (ca != cb || memcmp(a, b, (size_t)g->nwords * 4) != 0)
                    fail_msg("%s %s: state %d limit %d: trie %d != brute %d", name, text, s, lim, ca, cb);
            }
            checked++;
            /* next: a random allowed non-EOS token (the walk ends at a dead end or EOS-only) */
            int32_t pick = -1, seen = 0;
            al_matcher_mask(m, 0, a);
            for (int32_t i = 0; i < v->n; i++) {
                int is_eos = 0;
                for (int32_t e = 0; e < v->n_eos; e++)
                    is_eos |= v->eos[e] == i;
                if (!is_eos && (a[i >> 5] >> (i & 31) & 1) && al_rng_next(&r) % (uint64_t)++seen == 0)
                    pick = i;
            }
            if (pick < 0)
                break;
            assert_int_equal(al_matcher_accept(m, pick), AL_OK);
        }
        al_matcher_free(m);
    }
    free(a);
    free(b);
    al_grammar_unref(g);
    return checked;
}

static const char *const tool_schema =
    "{\"type\":\"object\",\"properties\":{\"name\":{\"const\":\"get_weather\"},\"arguments\":{\"type\":\"object\","
    "\"properties\":{\"city\":{\"type\":\"string\",\"maxLength\":12},\"unit\":{\"enum\":[\"c\",\"f\"]},\"days\":"
    "{\"type\":\"integer\",\"minimum\":1,\"maximum\":14}},\"required\":[\"city\"]}},\"required\":[\"name\",\"arguments\"]}";
static const char *const halluc_schema =
    "{\"type\":\"array\",\"items\":{\"type\":\"object\",\"properties\":{\"sentence\":{\"type\":\"string\"},"
    "\"label\":{\"enum\":[\"supported\",\"unsupported\"]},\"score\":{\"type\":\"number\",\"minimum\":0,\"maximum\":1}},"
    "\"required\":[\"sentence\",\"label\",\"score\"]},\"maxItems\":3}";

static void check_real(const char *file, int byte_level, const char *const *eos)
{
    al_vocab *v = ct_load_tokenizer(file, byte_level, eos);
    assert_non_null(v);
    int n = 0;
    n += check_vocab(v, file, AL_CONSTRAINT_JSON_SCHEMA, tool_schema, 1);
    n += check_vocab(v, file, AL_CONSTRAINT_JSON_SCHEMA, halluc_schema, 2);
    n += check_vocab(v, file, AL_CONSTRAINT_JSON_OBJECT, NULL, 3);
    n += check_vocab(v, file, AL_CONSTRAINT_REGEX, "(the|a|an) [a-z]{2,8}( [a-z]+)*\\.", 4);
    n += check_vocab(v, file, AL_CONSTRAINT_REGEX, "[^a-z]{0,40}", 5);
    n += check_vocab(v, file, AL_CONSTRAINT_CHOICE, "[\"positive\",\"negative\",\"neutral\"]", 6);
    fprintf(stderr, "%s: %d tokens, %d states checked against brute force\n", file, v->n, n);
    assert_true(n > 300);
    al_vocab_free(v);
}

static void test_gpt2_vocab(void **state)
{
    check_real("tests/fixtures/tokenizer/bl_gpt2.tokenizer.json", 1, (const char *const[]){"<|endoftext|>", NULL});
}

static void test_sp_vocab(void **state)
{
    check_real("tests/fixtures/tokenizer/sp_meta.tokenizer.json", 0, (const char *const[]){"</s>", "<|eot|>", NULL});
}

/* The trie and vocabulary bookkeeping: byte completeness, duplicates, shared tries. */
static void test_trie(void **state)
{
    al_vocab *gv = ct_load_tokenizer("tests/fixtures/tokenizer/bl_gpt2.tokenizer.json", 1,
                                     (const char *const[]){"<|endoftext|>", NULL});
    al_vocab *sv = ct_load_tokenizer("tests/fixtures/tokenizer/sp_meta.tokenizer.json", 0,
                                     (const char *const[]){"</s>", NULL});
    ali_trie *t1, *t2, *t3;
    assert_int_equal(ali_trie_get(gv, &t1), AL_OK);
    assert_int_equal(ali_trie_get(gv, &t2), AL_OK);
    assert_ptr_equal(t1, t2);
    assert_true(t1->byte_complete);
    assert_int_equal(ali_trie_get(sv, &t3), AL_OK);
    assert_false(t3->byte_complete); /* this small fixture has byte fallback only for 0x00-0xEF */
    /* skip indices: each node's subtree is contiguous and deeper */
    for (int32_t i = 0; i < t1->nnodes; i++) {
        assert_true(t1->nodes[i].skip > i && t1->nodes[i].skip <= t1->nnodes);
        for (int32_t k = i + 1; k < t1->nodes[i].skip; k++)
            assert_true(t1->nodes[k].depth > t1->nodes[i].depth);
    }
    /* SentencePiece: "▁" and <0x20> both decode to a space: duplicates share a node */
    int dups = 0;
    for (int32_t i = 0; i < t3->n; i++)
        dups += t3->dup[i] >= 0;
    assert_true(dups > 0);
    ali_trie_unref(t1);
    ali_trie_unref(t2);
    ali_trie_unref(t3);
    assert_int_not_equal(al_vocab_hash(gv), al_vocab_hash(sv));
    al_vocab_free(gv);
    al_vocab_free(sv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_vocab),
        cmocka_unit_test(test_trie),
        cmocka_unit_test(test_gpt2_vocab),
        cmocka_unit_test(test_sp_vocab),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    al_grammar_cache_clear();
    return rc;
}
