/* adapter_text_test.c: legacy invocation_string resolution and invocation reachability. */
#include "al_test.h"

#include "common/text/adapter_text.h"

#define TOK "tests/fixtures/tokenizer/bl_llama3.tokenizer.json"

static void test_resolve(void **state)
{
    (void)state;
    al_tokenizer *t;
    assert_int_equal(al_tokenizer_load(TOK, &t), AL_OK);
    al_adapter a;
    memset(&a, 0, sizeof a);
    strcpy(a.name, "legacy");
    a.invocation_string = "<|start_of_role|>certainty<|end_of_role|>";
    /* full tokenization is [2, 75, 526, 3]: the first token is dropped */
    assert_int_equal(al_adapter_resolve_invocation(&a, t), AL_OK);
    assert_int_equal(a.n_invocation, 3);
    assert_int_equal(a.invocation[0], 75);
    assert_int_equal(a.invocation[1], 526);
    assert_int_equal(a.invocation[2], 3);
    /* already resolved: untouched */
    int32_t *keep = a.invocation;
    assert_int_equal(al_adapter_resolve_invocation(&a, t), AL_OK);
    assert_ptr_equal(a.invocation, keep);
    free(a.invocation);
    /* one token only: nothing left */
    memset(&a, 0, sizeof a);
    a.invocation_string = "<|end_of_role|>";
    assert_int_equal(al_adapter_resolve_invocation(&a, t), AL_EFORMAT);
    assert_null(a.invocation);
    /* plain LoRA: no-op */
    memset(&a, 0, sizeof a);
    assert_int_equal(al_adapter_resolve_invocation(&a, t), AL_OK);
    assert_null(a.invocation);
    al_tokenizer_free(t);
}

static void test_reachable(void **state)
{
    (void)state;
    al_tokenizer *t;
    assert_int_equal(al_tokenizer_load(TOK, &t), AL_OK);
    int32_t *inv, n;
    /* "<|start_of_role|>requirements" -> [2, 276, 406]; legacy drop -> "re" "quirements" */
    const char *s = "<|start_of_role|>requirements";
    assert_int_equal(al_tokenizer_encode(t, s, strlen(s), 0, &inv, &n), AL_OK);
    assert_int_equal(n, 3);
    assert_int_equal(al_invocation_reachable(t, inv + 1, n - 1,
                                             "x<|start_of_role|>requirements<|end_of_role|>"),
                     1);
    /* inside running text "requirements" gets another tokenization ("Ġrequirements") */
    assert_int_equal(al_invocation_reachable(t, inv + 1, n - 1, "check the requirements"), 0);
    assert_int_equal(al_invocation_reachable(t, inv, n, ""), 0);
    assert_int_equal(al_invocation_reachable(t, inv, 0, "x"), 0);
    free(inv);
    /* ">" ":" merge: the invocation "<tag>" + ":" split apart is not what the text gives */
    const char *tag = ">:";
    assert_int_equal(al_tokenizer_encode(t, tag, strlen(tag), 0, &inv, &n), AL_OK);
    int32_t gt = al_tokenizer_token_id(t, ">"), colon = al_tokenizer_token_id(t, ":");
    if (n == 1 && gt >= 0 && colon >= 0) {
        int32_t split[2] = {gt, colon};
        assert_int_equal(al_invocation_reachable(t, split, 2, "a <b>: c"), 0);
    }
    free(inv);
    al_tokenizer_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resolve),
        cmocka_unit_test(test_reachable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
