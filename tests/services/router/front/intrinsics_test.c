/* intrinsics_test.c: intrinsic catalogue and config loading, every parser on fixed outputs, probabilities,
 * masks. */
#include "al_test.h"

#include <math.h>

#include "common/util.h"
#include "engine/constrain/constrain.h"
#include "services/router/front/intrinsics.h"

#define TOKFIX "tests/fixtures/tokenizer/bl_gpt2.tokenizer.json"

static al_intrinsic builtin(const char *name)
{
    al_intrinsic in;
    assert_int_equal(al_intrinsic_builtin(name, &in), AL_OK);
    return in;
}

/* Parses text with no tokenizer; returns the result's JSON text (malloc'd) and the error code. */
static char *parse_text(const char *name, const char *text, al_err *e)
{
    al_intrinsic in = builtin(name);
    json_t *r = NULL;
    char *field = (char *)1;
    *e = al_intrinsic_parse(&in, text, NULL, 0, NULL, 0, NULL, &r, &field);
    assert_non_null(r);
    if (*e == AL_OK) {
        assert_null(field);
        assert_null(json_object_get(r, "error"));
    } else {
        assert_int_equal(*e, AL_EFORMAT);
        assert_non_null(field);
        assert_string_equal(field, json_string_value(json_object_get(r, "error")));
        assert_non_null(json_string_value(json_object_get(r, "raw")));
        free(field);
    }
    char *s = json_dumps(r, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(6));
    json_decref(r);
    al_intrinsic_free(&in);
    return s;
}

static void expect(const char *name, const char *text, al_err want_e, const char *want)
{
    al_err e;
    char *s = parse_text(name, text, &e);
    if (e != want_e || (want && strcmp(s, want)))
        fail_msg("%s(%s): got %s [%s], want %s [%s]", name, text, al_strerror(e), s, al_strerror(want_e),
                 want ? want : "*");
    free(s);
}

static void test_catalogue(void **state)
{
    (void)state;
    const char *const *names;
    int n = al_intrinsic_builtin_names(&names);
    assert_int_equal(n, 10);
    for (int i = 0; i < n; i++) {
        al_intrinsic in = builtin(names[i]);
        assert_string_equal(in.name, names[i]);
        assert_non_null(in.invocation_string);
        assert_true(in.max_tokens >= 1);
        assert_true(in.temperature == 0);
        assert_true(in.parser > AL_PARSER_AUTO && in.parser < AL_PARSER_COUNT);
        assert_true(in.documents > AL_DOCS_AUTO && in.documents < AL_DOCS_COUNT);
        al_intrinsic_free(&in);
    }
    al_intrinsic u = builtin("uncertainty");
    assert_int_equal(u.parser, AL_PARSER_CERTAINTY);
    assert_int_equal(u.outputs.n, 10);
    assert_string_equal(u.invocation_string, "<|start_of_role|>certainty<|end_of_role|>");
    al_intrinsic_free(&u);
    al_intrinsic j = builtin("jailbreak");
    assert_int_equal(j.parser, AL_PARSER_GUARDIAN);
    assert_non_null(strstr(j.instruction, "jailbreak"));
    al_intrinsic_free(&j);
    al_intrinsic x;
    assert_int_equal(al_intrinsic_builtin("nope", &x), AL_ENOTFOUND);
    assert_string_equal(al_intr_parser_name(AL_PARSER_HALLUCINATION), "hallucination_detection");
    assert_string_equal(al_intr_docs_name(AL_DOCS_NONE), "none");
    assert_string_equal(al_intr_parser_name(99), "?");
}

/* deploy/intrinsics.cfg mirrors the catalogue exactly. */
static void test_deploy_cfg(void **state)
{
    (void)state;
    al_intrinsics l;
    al_err e = al_intrinsics_load("deploy/intrinsics.cfg", &l);
    if (e != AL_OK)
        fail_msg("%s", al_errmsg());
    const char *const *names;
    int n = al_intrinsic_builtin_names(&names);
    assert_int_equal(l.n, n - 1); /* "uncertainty" is an alias only */
    for (int i = 0; i < l.n; i++) {
        const al_intrinsic *a = &l.v[i];
        al_intrinsic b = builtin(a->name);
        assert_non_null(a->adapter);
        assert_string_equal(a->invocation_string, b.invocation_string);
        if (b.instruction)
            assert_string_equal(a->instruction, b.instruction);
        else
            assert_null(a->instruction);
        assert_int_equal(a->documents, b.documents);
        assert_int_equal(a->max_tokens, b.max_tokens);
        assert_int_equal(a->parser, b.parser);
        assert_int_equal(a->outputs.n, b.outputs.n);
        for (int k = 0; k < b.outputs.n; k++)
            assert_string_equal(a->outputs.v[k], b.outputs.v[k]);
        al_intrinsic_free(&b);
    }
    assert_non_null(al_intrinsics_find(&l, "citations"));
    assert_null(al_intrinsics_find(&l, "uncertainty"));
    al_intrinsics_free(&l);
}

static void test_config(void **state)
{
    (void)state;
    al_intrinsics l;
    /* name only -> catalogue; overrides; cluster keys accepted; custom intrinsic */
    const char *ok =
        "intrinsics = (\n"
        "  { name = \"answerability\"; adapter = \"/a\"; replicas = 2; capacity = 4; },\n"
        "  { name = \"certainty\"; max_tokens = 1; invocation_tokens = \"5, 6 7\"; },\n"
        "  { name = \"mine\"; parser = \"choice\"; outputs = [\"A\", \"B\"]; documents = \"none\"; },\n"
        "  { name = \"free\"; instruction = \"Say hi.\"; },\n"
        "  { name = \"ans2\"; parser = \"answerability\"; }\n"
        ");\n";
    if (al_intrinsics_load_string(ok, &l) != AL_OK)
        fail_msg("%s", al_errmsg());
    assert_int_equal(l.n, 5);
    assert_string_equal(l.v[0].adapter, "/a");
    assert_int_equal(l.v[0].parser, AL_PARSER_ANSWERABILITY);
    assert_int_equal(l.v[0].outputs.n, 2);
    assert_int_equal(l.v[0].max_tokens, 6);
    assert_int_equal(l.v[1].max_tokens, 1);
    assert_int_equal(l.v[1].n_invocation_tokens, 3);
    assert_int_equal(l.v[1].invocation_tokens[2], 7);
    assert_null(l.v[1].invocation_string); /* the tokens replace the catalogue's string */
    assert_int_equal(l.v[2].parser, AL_PARSER_CHOICE);
    assert_int_equal(l.v[2].documents, AL_DOCS_NONE);
    assert_int_equal(l.v[3].parser, AL_PARSER_RAW);
    assert_int_equal(l.v[3].max_tokens, 8);
    assert_string_equal(l.v[3].instruction, "Say hi.");
    assert_int_equal(l.v[4].outputs.n, 2); /* from the catalogue entry of its parser */
    al_intrinsics_free(&l);

    static const struct {
        const char *text, *want;
        al_err e;
    } bad[] = {
        {"intrinsics = (\n { name = \"a\"; colour = 1; }\n);",
         "<string>:2: unknown key 'intrinsics[0].colour'", AL_EFORMAT},
        {"intrinsics = (\n { name = \"a\";\n parser = \"magic\"; }\n);", "<string>:3: intrinsics[0].parser",
         AL_EFORMAT},
        {"intrinsics = (\n { adapter = \"x\"; }\n);", "missing required key 'name'", AL_ENOTFOUND},
        {"intrinsics = (\n { name = \"a\"; max_tokens = 0; }\n);", "<string>:2: intrinsics[0].max_tokens",
         AL_ERANGE},
        {"intrinsics = (\n { name = \"a\";\n invocation_tokens = \"1, x\"; }\n);",
         "<string>:3: intrinsics[0].invocation_tokens", AL_EFORMAT},
        {"intrinsics = (\n {name = \"a\";},\n\n { name = \"certainty\"; outputs = [\"0\", \"high\"]; }\n);",
         "<string>:4: intrinsics[1]: outputs[1] \"high\": parser \"certainty\" needs single digits",
         AL_EFORMAT},
        {"intrinsics = (\n { name = \"a\"; parser = \"choice\"; }\n);",
         "<string>:2: intrinsics[0]: parser \"choice\" needs outputs", AL_EFORMAT},
        {"intrinsics = (\n { name = \"a\"; },\n { name = \"a\"; }\n);",
         "<string>:3: intrinsics[1]: name 'a' is also intrinsics[0].name", AL_EFORMAT},
        {"intrinsics = (\n { name = \"a b\"; }\n);", "<string>:2: intrinsics[0]: name 'a b'", AL_EFORMAT},
        {"intrinsics = (\n { name = \"a\"; outputs = [\"x\", \"x\"]; }\n);", "outputs[1] \"x\" repeats",
         AL_EFORMAT},
        {"intrinsics = (\n { name = \"a\"; replicas = 0; }\n);", "<string>:2: intrinsics[0].replicas",
         AL_ERANGE},
        {"intrinsics = ( { name = \"a\" } ", "<string>:1", AL_EFORMAT},
    };
    for (size_t i = 0; i < AL_ARRAY_LEN(bad); i++) {
        al_err e = al_intrinsics_load_string(bad[i].text, &l);
        if (e != bad[i].e || !strstr(al_errmsg(), bad[i].want))
            fail_msg("bad[%zu]: got %s '%s', want %s '%s'", i, al_strerror(e), al_errmsg(),
                     al_strerror(bad[i].e), bad[i].want);
        assert_null(l.v);
        assert_int_equal(l.n, 0);
    }

    /* a file: errors name file:line */
    char *dir = al_test_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/x.cfg", dir);
    FILE *f = fopen(path, "w");
    fputs("intrinsics = (\n  { name = \"certainty\"; },\n  { name = \"z\"; parser = \"guardian\";\n"
          "    outputs = [\"yes\"]; }\n);\n",
          f);
    fclose(f);
    assert_int_equal(al_intrinsics_load(path, &l), AL_EFORMAT);
    char want[600];
    snprintf(want, sizeof want, "%s:3: intrinsics[1]: parser \"guardian\" needs outputs", path);
    if (!strstr(al_errmsg(), want))
        fail_msg("got '%s', want '%s'", al_errmsg(), want);
    assert_int_equal(al_intrinsics_load("/nonexistent/x.cfg", &l), AL_ENOTFOUND);

    /* the cluster config file: its intrinsics list through this table */
    snprintf(path, sizeof path, "%s/cluster.cfg", dir);
    f = fopen(path, "w");
    fputs("run_dir = \"/tmp/x\";\nbase = { model = \"m\"; };\n"
          "intrinsics = (\n  { name = \"answerability\"; adapter = \"/ad\"; replicas = 2; max_tokens = 3; "
          "}\n);\n",
          f);
    fclose(f);
    if (al_intrinsics_load_cluster(path, &l) != AL_OK)
        fail_msg("%s", al_errmsg());
    assert_int_equal(l.n, 1);
    assert_int_equal(l.v[0].max_tokens, 3);
    assert_int_equal(l.v[0].outputs.n, 2);
    assert_string_equal(l.v[0].adapter, "/ad");
    al_intrinsics_free(&l);
    al_test_rmrf(dir);
    free(dir);
}

static void test_parsers_text(void **state)
{
    (void)state;
    /* certainty */
    expect("certainty", "7", AL_OK, "{\"certainty\":0.75,\"digit\":7}");
    expect("uncertainty", " 0<|end_of_text|>", AL_OK, "{\"certainty\":0.05,\"digit\":0}");
    expect("certainty", "9\n", AL_OK, "{\"certainty\":0.95,\"digit\":9}");
    expect("certainty", "high", AL_EFORMAT, NULL);
    expect("certainty", "12", AL_EFORMAT, NULL);
    expect("certainty", "", AL_EFORMAT, NULL);
    expect("certainty", "-1", AL_EFORMAT, NULL);
    /* answerability */
    expect("answerability", "answerable", AL_OK,
           "{\"answerability\":\"answerable\",\"answerability_likelihood\":1.0}");
    expect("answerability", " unanswerable<|end_of_text|>", AL_OK,
           "{\"answerability\":\"unanswerable\",\"answerability_likelihood\":0.0}");
    expect("answerability", "Answerable.", AL_OK, NULL);
    expect(
        "answerability", "maybe", AL_EFORMAT,
        "{\"error\":\"output: expected one of \\\"answerable\\\", \\\"unanswerable\\\"\",\"raw\":\"maybe\"}");
    expect("answerability", "answerable because", AL_EFORMAT, NULL);
    /* requirement check */
    expect("requirement_check", "Y", AL_OK, "{\"requirement_check\":\"Y\",\"requirement_likelihood\":1.0}");
    expect("requirement_check", "N", AL_OK, "{\"requirement_check\":\"N\",\"requirement_likelihood\":0.0}");
    expect("requirement_check", "Maybe", AL_EFORMAT, NULL);
    /* context relevance */
    expect("context_relevance", "partially relevant", AL_OK,
           "{\"context_relevance\":\"partially "
           "relevant\",\"context_relevance_likelihood\":0.0,\"probabilities\":"
           "{\"irrelevant\":0.0,\"partially relevant\":1.0,\"relevant\":0.0}}");
    expect("context_relevance", "somewhat", AL_EFORMAT, NULL);
    /* guardian / jailbreak */
    expect("guardian", "Yes", AL_OK, "{\"probability\":1.0,\"score\":\"yes\"}");
    expect("jailbreak", "{\"score\": \"no\"}", AL_OK, "{\"probability\":0.0,\"score\":\"no\"}");
    expect("guardian", "{\"score\": 3}", AL_EFORMAT, NULL);
    expect("guardian", "{\"score\": ", AL_EFORMAT, NULL);
    /* query rewrite */
    expect("query_rewrite", "{\"rewritten_question\": \"What is the capital of France?\"}", AL_OK,
           "{\"rewritten_question\":\"What is the capital of France?\"}");
    expect("query_rewrite", "Sure: {\"rewritten_question\": \"x\"} done", AL_OK,
           "{\"rewritten_question\":\"x\"}");
    expect("query_rewrite", "What is the capital?", AL_EFORMAT, NULL);
    expect("query_rewrite", "{\"rewritten_question\": 5}", AL_EFORMAT,
           "{\"error\":\"output.rewritten_question: expected a non-empty string\",\"raw\":"
           "\"{\\\"rewritten_question\\\": 5}\"}");
    expect("query_rewrite", "{\"rewritten_question\": \"unterminated", AL_EFORMAT, NULL);
    expect("query_rewrite", "{}", AL_EFORMAT, NULL);
    /* hallucination detection */
    expect("hallucination_detection", "[{\"i\": 0, \"r\": \"0.8-0.9\"}, {\"i\": 1, \"r\": \"0.0-0.1\"}]",
           AL_OK,
           "{\"faithfulness\":[{\"faithfulness_likelihood\":0.85,\"sentence\":0},"
           "{\"faithfulness_likelihood\":0.05,\"sentence\":1}]}");
    expect("hallucination_detection",
           "[{\"response_sentence\": \"<r0>\", \"faithfulness_likelihood\": 0.9, \"explanation\": \"ok\"}]",
           AL_OK,
           "{\"faithfulness\":[{\"explanation\":\"ok\",\"faithfulness_likelihood\":0.9,\"sentence\":0}]}");
    expect("hallucination_detection", "{\"r0\": \"faithful\", \"r1\": \"unfaithful\", \"r2\": \"partial\"}",
           AL_OK,
           "{\"faithfulness\":[{\"faithfulness_likelihood\":1.0,\"label\":\"faithful\",\"sentence\":0},"
           "{\"faithfulness_likelihood\":0.0,\"label\":\"unfaithful\",\"sentence\":1},"
           "{\"faithfulness_likelihood\":0.5,\"label\":\"partial\",\"sentence\":2}]}");
    expect("hallucination_detection", "[{\"r1\": 0.25}]", AL_OK,
           "{\"faithfulness\":[{\"faithfulness_likelihood\":0.25,\"sentence\":1}]}");
    expect("hallucination_detection", "[]", AL_OK, "{\"faithfulness\":[]}");
    expect("hallucination_detection", "all faithful", AL_EFORMAT, NULL);
    expect("hallucination_detection", "[{\"i\": 0, \"r\": 1.5}]", AL_EFORMAT,
           "{\"error\":\"output[0]: expected a faithfulness likelihood in [0, 1], a range \\\"a-b\\\" or a "
           "label\","
           "\"raw\":\"[{\\\"i\\\": 0, \\\"r\\\": 1.5}]\"}");
    expect("hallucination_detection", "[{\"i\": -1, \"r\": 0.5}]", AL_EFORMAT, NULL);
    expect("hallucination_detection", "[3]", AL_EFORMAT, NULL);
    expect("hallucination_detection", "[{\"i\": 0, \"r\": \"0.9-0.1\"}]", AL_EFORMAT, NULL);
    expect("hallucination_detection", "[{\"i\": 0, \"r\": \"maybe\"}]", AL_EFORMAT, NULL);
    expect("hallucination_detection", "[{\"i\": 0, \"r\":", AL_EFORMAT, NULL);
    expect("hallucination_detection", "\"just a string\"", AL_EFORMAT, NULL);
    /* citations */
    expect("citations", "[{\"r\": 0, \"c\": [1, 3]}, {\"r\": 1, \"c\": []}]", AL_OK,
           "{\"citations\":[{\"context_sentences\":[1,3],\"response_sentence\":0},"
           "{\"context_sentences\":[],\"response_sentence\":1}]}");
    expect("citations", "<r0> <c1> <c3> <r1> <c2>", AL_OK,
           "{\"citations\":[{\"context_sentences\":[1,3],\"response_sentence\":0},"
           "{\"context_sentences\":[2],\"response_sentence\":1}]}");
    expect("citations", "[{\"response_sentence\": \"r2\", \"citations\": [\"<c4>\"]}]", AL_OK,
           "{\"citations\":[{\"context_sentences\":[4],\"response_sentence\":2}]}");
    expect("citations", "[]", AL_OK, "{\"citations\":[]}");
    expect("citations", "", AL_EFORMAT, NULL);
    expect("citations", "<c1> <r0>", AL_EFORMAT, NULL);
    expect("citations", "<r0> <cx>", AL_EFORMAT, NULL);
    expect("citations", "[{\"r\": 0, \"c\": [\"x\"]}]", AL_EFORMAT,
           "{\"error\":\"output[0].c[0]: expected a context sentence index\",\"raw\":"
           "\"[{\\\"r\\\": 0, \\\"c\\\": [\\\"x\\\"]}]\"}");
    expect("citations", "[{\"c\": [1]}]", AL_EFORMAT, NULL);
    expect("citations", "{\"r\": 0}", AL_EFORMAT, NULL);
    expect("citations", "the first sentence cites doc 1", AL_EFORMAT, NULL);

    /* raw and json parsers, NULL text, ill-formed UTF-8 in raw */
    al_intrinsic in = {.name = "x", .parser = AL_PARSER_RAW};
    json_t *r;
    assert_int_equal(al_intrinsic_parse(&in, "  hi \xff<|end_of_text|>", NULL, 0, NULL, 0, NULL, &r, NULL),
                     AL_OK);
    assert_string_equal(json_string_value(json_object_get(r, "text")), "hi \xef\xbf\xbd");
    json_decref(r);
    in.parser = AL_PARSER_JSON;
    assert_int_equal(al_intrinsic_parse(&in, "[1, 2]", NULL, 0, NULL, 0, NULL, &r, NULL), AL_OK);
    assert_int_equal(json_array_size(json_object_get(r, "value")), 2);
    json_decref(r);
    assert_int_equal(al_intrinsic_parse(&in, "nope \xc3", NULL, 0, NULL, 0, NULL, &r, NULL), AL_EFORMAT);
    assert_string_equal(json_string_value(json_object_get(r, "raw")), "nope \xef\xbf\xbd");
    json_decref(r);
    al_intrinsic c = builtin("certainty");
    assert_int_equal(al_intrinsic_parse(&c, NULL, NULL, 0, NULL, 0, NULL, &r, NULL), AL_EFORMAT);
    json_decref(r);
    al_intrinsic_free(&c);
}

/* Every parser on random bytes and truncations: an error or a result, never a crash. */
static void test_parsers_fuzz(void **state)
{
    (void)state;
    const char *const *names;
    int n = al_intrinsic_builtin_names(&names);
    al_rng rng;
    al_rng_seed(&rng, 7);
    static const char alphabet[] = "{}[]\":,<>rc0123456789.- yesnoYN\\\xff\xc3";
    static const char *const seeds[] = {"[{\"i\": 0, \"r\": \"0.8-0.9\"}]", "<r0> <c1> <c3>",
                                        "{\"rewritten_question\": \"x\"}", "{\"score\": \"yes\"}"};
    char buf[64];
    for (int it = 0; it < 4000; it++) {
        size_t len;
        if (it % 2) {
            const char *s = seeds[it / 2 % 4];
            len = al_rng_next(&rng) % (strlen(s) + 1);
            memcpy(buf, s, len);
        } else {
            len = al_rng_next(&rng) % 40;
            for (size_t k = 0; k < len; k++)
                buf[k] = alphabet[al_rng_next(&rng) % (sizeof alphabet - 1)];
        }
        buf[len] = 0;
        al_intrinsic in = builtin(names[it % n]);
        json_t *r = NULL;
        char *f = NULL;
        al_err e = al_intrinsic_parse(&in, buf, NULL, 0, NULL, 0, NULL, &r, &f);
        assert_true(e == AL_OK || e == AL_EFORMAT);
        assert_non_null(r);
        char *s = json_dumps(r, 0);
        assert_non_null(s);
        free(s);
        json_decref(r);
        free(f);
        al_intrinsic_free(&in);
    }
}

/* The first token of s that is not only whitespace (this fixture adds a prefix space). */
static int32_t first_id(const al_tokenizer *t, const char *s)
{
    int32_t *ids, n, id = -1;
    assert_int_equal(al_tokenizer_encode(t, s, strlen(s), 0, &ids, &n), AL_OK);
    for (int i = 0; i < n && id < 0; i++) {
        char *txt;
        size_t l;
        assert_int_equal(al_tokenizer_decode(t, &ids[i], 1, 0, &txt, &l), AL_OK);
        if (strspn(txt, " ") < l)
            id = ids[i];
        free(txt);
    }
    free(ids);
    assert_true(id >= 0);
    return id;
}

/* Parses text (its own tokens) with the same top-k row at every position. */
static json_t *parse_topk(const al_intrinsic *in, const al_tokenizer *t, const char *text,
                          const al_topk_entry *row, int k)
{
    int32_t *ids, n;
    assert_int_equal(al_tokenizer_encode(t, text, strlen(text), 0, &ids, &n), AL_OK);
    al_topk_entry *top = malloc(sizeof *top * (size_t)(n * k + 1));
    for (int i = 0; i < n; i++)
        memcpy(top + (size_t)i * k, row, sizeof *row * (size_t)k);
    json_t *r = NULL;
    al_err e = al_intrinsic_parse(in, text, ids, n, top, k, t, &r, NULL);
    if (e != AL_OK)
        fail_msg("%s", al_errmsg());
    free(ids);
    free(top);
    return r;
}

static double num(json_t *r, const char *key)
{
    return json_number_value(json_object_get(r, key));
}

static void test_probabilities(void **state)
{
    (void)state;
    al_tokenizer *t;
    assert_int_equal(al_tokenizer_load(TOKFIX, &t), AL_OK);
    int32_t A = first_id(t, "answerable"), U = first_id(t, "unanswerable"), Z = first_id(t, "zebra");
    assert_true(A != U && A != Z && U != Z);

    /* answerability: 0.6 / (0.6 + 0.3); an unrelated token's mass is dropped */
    al_intrinsic in = builtin("answerability");
    al_topk_entry row[3] = {{A, logf(0.6f)}, {U, logf(0.3f)}, {Z, logf(0.1f)}};
    json_t *r = parse_topk(&in, t, "answerable", row, 3);
    assert_float_equal(num(r, "answerability_likelihood"), 0.6 / 0.9, 1e-6);
    assert_string_equal(json_string_value(json_object_get(r, "answerability")), "answerable");
    json_decref(r);
    /* only one option in the top-k -> renormalised over the options present: 1 */
    al_topk_entry row1[2] = {{U, logf(0.2f)}, {Z, logf(0.7f)}};
    r = parse_topk(&in, t, "unanswerable", row1, 2);
    assert_float_equal(num(r, "answerability_likelihood"), 0.0, 1e-9);
    json_decref(r);
    /* no option in the top-k: from the text */
    al_topk_entry row2[1] = {{Z, logf(0.9f)}};
    r = parse_topk(&in, t, "answerable", row2, 1);
    assert_float_equal(num(r, "answerability_likelihood"), 1.0, 1e-9);
    json_decref(r);
    al_intrinsic_free(&in);

    /* certainty: E over digits = (0.5*0.85 + 0.3*0.95 + 0.1*0.75) / 0.9 */
    in = builtin("certainty");
    al_topk_entry drow[4] = {{first_id(t, "8"), logf(0.5f)},
                             {first_id(t, "9"), logf(0.3f)},
                             {first_id(t, "7"), logf(0.1f)},
                             {Z, logf(0.1f)}};
    r = parse_topk(&in, t, "8", drow, 4);
    assert_float_equal(num(r, "certainty"), 0.785 / 0.9, 1e-6);
    assert_int_equal(json_integer_value(json_object_get(r, "digit")), 8);
    json_decref(r);
    al_intrinsic_free(&in);

    /* guardian: JSON output, the decision at the "yes" token; P(yes) = 0.8 / (0.8 + 0.15) */
    in = builtin("guardian");
    al_topk_entry grow[3] = {
        {first_id(t, "yes"), logf(0.8f)}, {first_id(t, "no"), logf(0.15f)}, {Z, logf(0.05f)}};
    r = parse_topk(&in, t, "{\"score\": \"yes\"}", grow, 3);
    assert_string_equal(json_string_value(json_object_get(r, "score")), "yes");
    assert_float_equal(num(r, "probability"), 0.8 / 0.95, 1e-6);
    json_decref(r);
    al_intrinsic_free(&in);

    /* context relevance: three choices */
    in = builtin("context_relevance");
    al_topk_entry crow[3] = {{first_id(t, "relevant"), logf(0.5f)},
                             {first_id(t, "irrelevant"), logf(0.25f)},
                             {first_id(t, "partially"), logf(0.25f)}};
    if (crow[0].id != crow[1].id && crow[1].id != crow[2].id && crow[0].id != crow[2].id) {
        r = parse_topk(&in, t, "relevant", crow, 3);
        json_t *p = json_object_get(r, "probabilities");
        assert_float_equal(num(p, "relevant"), 0.5, 1e-6);
        assert_float_equal(num(p, "irrelevant"), 0.25, 1e-6);
        assert_float_equal(num(p, "partially relevant"), 0.25, 1e-6);
        assert_float_equal(num(r, "context_relevance_likelihood"), 0.5, 1e-6);
        json_decref(r);
    }
    al_intrinsic_free(&in);

    al_tokenizer_free(t);
}

/* The default structured output of the free-form intrinsics: each schema compiles in the constraint
 * engine, and a document of that shape is what the intrinsic's parser reads. */
static void test_output_schemas(void **state)
{
    (void)state;
    static const struct {
        const char *name, *doc;
    } cases[] = {{"query_rewrite", "{\"rewritten_question\": \"Where is Paris?\"}"},
                 {"hallucination_detection", "[{\"i\": 0, \"faithfulness_likelihood\": 0.25}, {\"i\": 1, "
                                             "\"faithfulness_likelihood\": 1}]"},
                 {"citations", "[{\"r\": 0, \"c\": [2, 5]}]"}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        al_intrinsic in = builtin(cases[k].name);
        const char *schema = al_intr_output_schema(in.parser);
        assert_non_null(schema);
        al_constraint_spec spec = {.kind = AL_CONSTRAINT_JSON_SCHEMA, .text = schema, .len = strlen(schema)};
        if (al_constraint_check(&spec) != AL_OK)
            fail_msg("%s: %s", cases[k].name, al_errmsg());
        json_t *r = NULL;
        char *f = NULL;
        assert_int_equal(al_intrinsic_parse(&in, cases[k].doc, NULL, 0, NULL, 0, NULL, &r, &f), AL_OK);
        assert_null(json_object_get(r, "error"));
        json_decref(r);
        free(f);
        al_intrinsic_free(&in);
    }
    al_intrinsic c = builtin("certainty");
    assert_null(al_intr_output_schema(c.parser)); /* a closed set: its outputs are the constraint */
    al_intrinsic_free(&c);
}

static void test_choice_scores(void **state)
{
    (void)state;
    double p[3];
    double lp[3] = {log(0.2), log(0.6), -INFINITY};
    assert_int_equal(al_choice_scores(lp, 3, p), AL_OK);
    assert_float_equal(p[0], 0.25, 1e-12);
    assert_float_equal(p[1], 0.75, 1e-12);
    assert_float_equal(p[2], 0.0, 1e-12);
    /* sums of several tokens' log-probabilities, large magnitudes: log-sum-exp keeps them finite */
    double big[2] = {-1000.0, -1001.0};
    assert_int_equal(al_choice_scores(big, 2, p), AL_OK);
    assert_float_equal(p[0], 1 / (1 + exp(-1.0)), 1e-12);
    double none[2] = {-INFINITY, NAN};
    assert_int_equal(al_choice_scores(none, 2, p), AL_EINVAL);
    assert_int_equal(al_choice_scores(lp, 0, p), AL_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_output_schemas),
        cmocka_unit_test(test_catalogue),     cmocka_unit_test(test_deploy_cfg),
        cmocka_unit_test(test_config),        cmocka_unit_test(test_parsers_text),
        cmocka_unit_test(test_parsers_fuzz),  cmocka_unit_test(test_probabilities),
        cmocka_unit_test(test_choice_scores),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
