/* tools_test.c: tools validation, the forced-call schema per template, calls read back, response bytes. */
#include "al_test.h"

#include "engine/constrain/constrain.h"
#include "services/router/front/tools.h"

#define MSG "\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"
#define T_ADD                                                                                                \
    "{\"type\":\"function\",\"function\":{\"name\":\"add\",\"description\":\"Sum\",\"parameters\":{"         \
    "\"type\":"                                                                                              \
    "\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},\"b\":{\"type\":\"integer\"}},\"required\":["   \
    "\"a\","                                                                                                 \
    "\"b\"]},\"strict\":true}}"
#define T_NOW "{\"type\":\"function\",\"function\":{\"name\":\"now\"}}"

static al_err chat(const char *body, al_oai_request *r)
{
    return al_oai_parse_chat(body, strlen(body), NULL, r);
}

static void expect_err(const char *body, const char *needle)
{
    al_oai_request r;
    al_err e = chat(body, &r);
    if (e == AL_OK)
        fail_msg("expected an error for %s", body);
    assert_int_equal(e, AL_EINVAL);
    if (!strstr(al_errmsg(), needle))
        fail_msg("message '%s' lacks '%s'", al_errmsg(), needle);
    assert_null(r.model);
    assert_int_equal(r.tools.n, 0);
}

static void test_parse(void **state)
{
    (void)state;
    al_oai_request r;
    assert_int_equal(chat("{" MSG ",\"tools\":[" T_ADD "," T_NOW "]}", &r), AL_OK);
    assert_int_equal(r.tools.n, 2);
    assert_string_equal(r.tools.defs[0].name, "add");
    assert_string_equal(r.tools.defs[1].name, "now");
    assert_string_equal(r.tools.defs[1].json, T_NOW);
    assert_string_equal(r.tools.params[1], "{\"type\":\"object\",\"properties\":{}}");
    assert_int_equal(r.tools.choice, AL_OAI_TOOLS_AUTO);
    assert_int_equal(r.tools.parallel, 1);
    assert_true(al_oai_tools_active(&r) && !al_oai_tools_forced(&r));
    al_oai_request_free(&r);

    assert_int_equal(chat("{" MSG ",\"tools\":[" T_ADD "," T_NOW "],\"tool_choice\":{\"type\":\"function\","
                          "\"function\":{\"name\":\"now\"}},\"parallel_tool_calls\":false}",
                          &r),
                     AL_OK);
    assert_int_equal(r.tools.choice, AL_OAI_TOOLS_NAMED);
    assert_int_equal(r.tools.named, 1);
    assert_int_equal(r.tools.parallel, 0);
    assert_true(al_oai_tools_forced(&r));
    al_oai_request_free(&r);

    assert_int_equal(chat("{" MSG ",\"tools\":[" T_NOW "],\"tool_choice\":\"none\"}", &r), AL_OK);
    assert_int_equal(r.tools.choice, AL_OAI_TOOLS_NONE);
    assert_false(al_oai_tools_active(&r));
    al_oai_request_free(&r);
    /* no tools: "none" / "auto" are accepted and change nothing; null is absent */
    assert_int_equal(chat("{" MSG ",\"tools\":[],\"tool_choice\":\"auto\",\"parallel_tool_calls\":null}", &r),
                     AL_OK);
    assert_int_equal(r.tools.n, 0);
    assert_false(al_oai_tools_active(&r));
    al_oai_request_free(&r);
    /* a $ref'd schema (as pydantic writes) is accepted */
    assert_int_equal(
        chat("{" MSG ",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"p\",\"parameters\":{"
             "\"$defs\":{\"P\":{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"string\"}}}},"
             "\"type\":\"object\",\"properties\":{\"p\":{\"$ref\":\"#/$defs/P\"}},\"required\":[\"p\"]}}}],"
             "\"tool_choice\":\"required\"}",
             &r),
        AL_OK);
    al_oai_request_free(&r);

    expect_err("{" MSG ",\"tools\":{}}", "tools: expected a list");
    expect_err("{" MSG ",\"tools\":[1]}", "tools[0]: expected an object");
    expect_err("{" MSG ",\"tools\":[{\"type\":\"retrieval\"}]}", "tools[0].type");
    expect_err("{" MSG ",\"tools\":[{\"type\":\"function\"}]}", "tools[0].function: expected an object");
    expect_err("{" MSG ",\"tools\":[" T_NOW ",{\"type\":\"function\",\"function\":{\"name\":\"a b\"}}]}",
               "tools[1].function.name");
    expect_err("{" MSG
               ",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"x12345678901234567890123456789012"
               "34567890123456789012345678901234\"}}]}",
               "tools[0].function.name");
    expect_err("{" MSG ",\"tools\":[" T_NOW "," T_NOW "]}", "tools[1].function.name: 'now' is defined twice");
    expect_err("{" MSG
               ",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"a\",\"description\":1}}]}",
               "tools[0].function.description");
    expect_err("{" MSG ",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"a\",\"strict\":1}}]}",
               "tools[0].function.strict");
    expect_err("{" MSG
               ",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"a\",\"parameters\":[]}}]}",
               "tools[0].function.parameters: expected a JSON schema object");
    expect_err("{" MSG
               ",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"a\",\"parameters\":{\"type\":"
               "\"array\"}}}]}",
               "tools[0].function.parameters: expected an object schema");
    expect_err("{" MSG ",\"tools\":[" T_NOW
               ",{\"type\":\"function\",\"function\":{\"name\":\"a\",\"parameters\":{"
               "\"type\":\"object\",\"properties\":{\"x\":{\"not\":{}}}}}}]}",
               "tools[1].function.parameters: json schema: unsupported keyword 'not' at /properties/x/not");
    expect_err("{" MSG ",\"tool_choice\":\"required\"}", "tool_choice: \"required\" needs tools");
    expect_err("{" MSG ",\"tools\":[" T_NOW "],\"tool_choice\":\"always\"}", "tool_choice: expected");
    expect_err("{" MSG ",\"tools\":[" T_NOW "],\"tool_choice\":5}", "tool_choice: expected");
    expect_err("{" MSG ",\"tools\":[" T_NOW "],\"tool_choice\":{\"type\":\"x\"}}", "tool_choice.type");
    expect_err("{" MSG ",\"tools\":[" T_NOW "],\"tool_choice\":{\"type\":\"function\",\"function\":{}}}",
               "tool_choice.function.name: expected a string");
    expect_err("{" MSG ",\"tools\":[" T_NOW
               "],\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"x\"}}}",
               "tool_choice.function.name: unknown function 'x'");
    expect_err("{" MSG ",\"tools\":[" T_NOW "],\"parallel_tool_calls\":\"yes\"}", "parallel_tool_calls");
    /* messages with tool calls and tool results are accepted */
    assert_int_equal(
        chat("{\"model\":\"m\",\"tools\":[" T_ADD "],\"messages\":[{\"role\":\"user\",\"content\":\"1+2\"},"
             "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"call_9\",\"type\":"
             "\"function\",\"function\":{\"name\":\"add\",\"arguments\":\"{\\\"a\\\":1,\\\"b\\\":2}\"}}]},"
             "{\"role\":\"tool\",\"tool_call_id\":\"call_9\",\"content\":\"3\"}]}",
             &r),
        AL_OK);
    assert_int_equal(r.chat->msgs[1].n_tool_calls, 1);
    assert_string_equal(r.chat->msgs[2].tool_call_id, "call_9");
    al_oai_request_free(&r);
    expect_err("{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{"
               "\"function\":"
               "{\"name\":1}}]}]}",
               "messages[0].tool_calls[0].function.name");
}

/* The schema al_oai_tools_constraint sets for body in format f (NULL: an error naming needle). */
static void expect_schema(const char *body, al_chat_format f, const char *want)
{
    al_oai_request r;
    assert_int_equal(chat(body, &r), AL_OK);
    al_err e = al_oai_tools_constraint(&r, f);
    if (e != AL_OK)
        fail_msg("%s: %s", body, al_errmsg());
    if (strcmp(r.constraint ? r.constraint : "", want))
        fail_msg("%s (%s):\n got %s\nwant %s", body, al_chat_format_name(f), r.constraint, want);
    if (*want) {
        assert_int_equal(r.constraint_kind, AL_CONSTRAINT_JSON_SCHEMA);
        assert_string_equal(r.constraint_field, "tool_choice");
    } else {
        assert_int_equal(r.constraint_kind, 0);
    }
    al_oai_request_free(&r);
}

#define ADD_CALL(key, params)                                                                                \
    "{\"type\":\"object\",\"properties\":{\"name\":{\"const\":\"add\"},\"" key "\":" params                  \
    "},\"required\":[\"name\","                                                                              \
    "\"" key "\"],\"additionalProperties\":false}"
#define ADD_PARAMS                                                                                           \
    "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},\"b\":{\"type\":\"integer\"}},"       \
    "\"required\":"                                                                                          \
    "[\"a\",\"b\"]}"
#define NOW_CALL(key)                                                                                        \
    "{\"type\":\"object\",\"properties\":{\"name\":{\"const\":\"now\"},\"" key                               \
    "\":{\"type\":\"object\",\"properties\":"                                                                \
    "{}}},\"required\":[\"name\",\"" key "\"],\"additionalProperties\":false}"

static void test_constraint(void **state)
{
    (void)state;
    const char *req1 = "{" MSG ",\"tools\":[" T_ADD "],\"tool_choice\":\"required\"}";
    expect_schema(req1, AL_CHAT_GRANITE,
                  "{\"type\":\"array\",\"items\":" ADD_CALL("arguments", ADD_PARAMS) ",\"minItems\":1}");
    expect_schema(req1, AL_CHAT_CHATML, ADD_CALL("arguments", ADD_PARAMS));
    expect_schema(req1, AL_CHAT_LLAMA3, ADD_CALL("parameters", ADD_PARAMS));
    const char *req2 = "{" MSG ",\"tools\":[" T_ADD "," T_NOW
                       "],\"tool_choice\":\"required\",\"parallel_tool_calls\":false}";
    expect_schema(req2, AL_CHAT_RAW,
                  "{\"type\":\"array\",\"items\":{\"anyOf\":[" ADD_CALL("arguments", ADD_PARAMS) "," NOW_CALL(
                      "arguments") "]},\"minItems\":1,\"maxItems\":1}");
    expect_schema(req2, AL_CHAT_CHATML,
                  "{\"anyOf\":[" ADD_CALL("arguments", ADD_PARAMS) "," NOW_CALL("arguments") "]}");
    const char *req3 =
        "{" MSG ",\"tools\":[" T_ADD "," T_NOW "],\"tool_choice\":{\"type\":\"function\",\"function\":{"
        "\"name\":\"now\"}}}";
    expect_schema(req3, AL_CHAT_GRANITE,
                  "{\"type\":\"array\",\"items\":" NOW_CALL("arguments") ",\"minItems\":1,"
                                                                         "\"maxItems\":1}");
    expect_schema(req3, AL_CHAT_LLAMA3, NOW_CALL("parameters"));
    /* auto / none: no constraint */
    expect_schema("{" MSG ",\"tools\":[" T_ADD "]}", AL_CHAT_GRANITE, "");
    expect_schema("{" MSG ",\"tools\":[" T_ADD "],\"tool_choice\":\"none\"}", AL_CHAT_GRANITE, "");
    /* local $refs follow the parameters to their new place; data under enum / const is untouched */
    expect_schema("{" MSG ",\"tools\":[" T_NOW
                  ",{\"type\":\"function\",\"function\":{\"name\":\"p\",\"parameters\":{"
                  "\"$defs\":{\"P\":{\"enum\":[{\"$ref\":\"#/"
                  "x\"}]}},\"type\":\"object\",\"properties\":{\"p\":{\"$ref\":"
                  "\"#/$defs/P\"},\"q\":{\"$ref\":\"#\"}}}}}],\"tool_choice\":\"required\"}",
                  AL_CHAT_GRANITE,
                  "{\"type\":\"array\",\"items\":{\"anyOf\":[" NOW_CALL(
                      "arguments") ",{\"type\":\"object\",\"properties\":"
                                   "{\"name\":{\"const\":\"p\"},\"arguments\":{\"$defs\":{\"P\":{\"enum\":[{"
                                   "\"$ref\":\"#/x\"}]}},\"type\":"
                                   "\"object\",\"properties\":{\"p\":{\"$ref\":\"#/items/anyOf/1/properties/"
                                   "arguments/$defs/P\"},\"q\":"
                                   "{\"$ref\":\"#/items/anyOf/1/properties/"
                                   "arguments\"}}}},\"required\":[\"name\",\"arguments\"],"
                                   "\"additionalProperties\":false}]},\"minItems\":1}");
    /* a forced call and a structured output exclude each other */
    al_oai_request r;
    assert_int_equal(
        chat("{" MSG ",\"tools\":[" T_ADD "],\"tool_choice\":\"required\",\"guided_regex\":\"a\"}", &r),
        AL_OK);
    assert_int_equal(al_oai_tools_constraint(&r, AL_CHAT_GRANITE), AL_EINVAL);
    assert_non_null(strstr(al_errmsg(),
                           "tool_choice: a forced tool call cannot be combined with a structured output "
                           "(guided_regex is set)"));
    al_oai_request_free(&r);
    /* auto with a structured output is fine (the output is still read for calls) */
    assert_int_equal(chat("{" MSG ",\"tools\":[" T_ADD "],\"guided_regex\":\"a\"}", &r), AL_OK);
    assert_int_equal(al_oai_tools_constraint(&r, AL_CHAT_GRANITE), AL_OK);
    assert_string_equal(r.constraint, "a");
    al_oai_request_free(&r);
}

static void expect_id(const char *id)
{
    assert_int_equal(strlen(id), 5 + 24);
    assert_memory_equal(id, "call_", 5);
    for (int i = 5; i < 29; i++)
        assert_non_null(strchr("0123456789abcdef", id[i]));
}

static void test_output(void **state)
{
    (void)state;
    al_oai_request r;
    al_chat_parsed p;
    /* forced: the prefix was in the prompt, the output is the bare JSON */
    assert_int_equal(chat("{" MSG ",\"tools\":[" T_ADD "," T_NOW "],\"tool_choice\":\"required\"}", &r),
                     AL_OK);
    assert_int_equal(
        al_oai_tools_parse_output(&r, AL_CHAT_GRANITE,
                                  "[{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}, {\"name\": "
                                  "\"now\", \"arguments\": {}}]",
                                  &p),
        AL_OK);
    assert_int_equal(p.n_calls, 2);
    assert_string_equal(p.content, "");
    assert_string_equal(p.calls[0].name, "add");
    assert_string_equal(p.calls[0].arguments, "{\"a\":1,\"b\":2}");
    expect_id(p.calls[0].id);
    expect_id(p.calls[1].id);
    assert_string_not_equal(p.calls[0].id, p.calls[1].id);
    al_chat_parsed_free(&p);
    assert_int_equal(
        al_oai_tools_parse_output(&r, AL_CHAT_CHATML, "{\"name\": \"now\", \"arguments\": {}}", &p), AL_OK);
    assert_int_equal(p.n_calls, 1);
    al_chat_parsed_free(&p);
    /* an output cut short is content (without the prefix) */
    assert_int_equal(al_oai_tools_parse_output(&r, AL_CHAT_CHATML, "{\"name\": \"no", &p), AL_OK);
    assert_int_equal(p.n_calls, 0);
    assert_string_equal(p.content, "{\"name\": \"no");
    al_chat_parsed_free(&p);
    al_oai_request_free(&r);

    /* parallel_tool_calls false keeps the first call; auto reads the template's syntax */
    assert_int_equal(chat("{" MSG ",\"tools\":[" T_ADD "," T_NOW "],\"parallel_tool_calls\":false}", &r),
                     AL_OK);
    assert_int_equal(
        al_oai_tools_parse_output(&r, AL_CHAT_GRANITE,
                                  "On it. <|tool_call|>[{\"name\": \"now\"}, {\"name\": \"add\"}]", &p),
        AL_OK);
    assert_int_equal(p.n_calls, 1);
    assert_string_equal(p.calls[0].name, "now");
    assert_string_equal(p.content, "On it.");
    al_chat_parsed_free(&p);
    assert_int_equal(al_oai_tools_parse_output(&r, AL_CHAT_GRANITE, "[{\"name\": \"now\"}", &p), AL_OK);
    assert_int_equal(p.n_calls, 0);
    al_chat_parsed_free(&p);
    al_oai_request_free(&r);

    /* named: a call of another function is not that call */
    assert_int_equal(chat("{" MSG ",\"tools\":[" T_ADD "," T_NOW "],\"tool_choice\":{\"type\":\"function\","
                          "\"function\":{\"name\":\"now\"}}}",
                          &r),
                     AL_OK);
    assert_int_equal(
        al_oai_tools_parse_output(&r, AL_CHAT_LLAMA3, "{\"name\": \"add\", \"parameters\": {}}", &p), AL_OK);
    assert_int_equal(p.n_calls, 0);
    assert_string_equal(p.content, "{\"name\": \"add\", \"parameters\": {}}");
    al_chat_parsed_free(&p);
    assert_int_equal(
        al_oai_tools_parse_output(&r, AL_CHAT_LLAMA3, "{\"name\": \"now\", \"parameters\": {}}", &p), AL_OK);
    assert_int_equal(p.n_calls, 1);
    al_chat_parsed_free(&p);
    al_oai_request_free(&r);

    char id[64];
    al_oai_tool_call_id(id, sizeof id);
    expect_id(id);
}

static void expect_bytes(const char *s, size_t n, const char *want)
{
    if (n != strlen(want) || memcmp(s, want, n))
        fail_msg("got  %.*s\nwant %s", (int)n, s, want);
    free((char *)s);
}

static void test_bytes(void **state)
{
    (void)state;
    al_chat_tool_call tc[2] = {{.id = "call_a", .name = "add", .arguments = "{\"a\":1}"},
                               {.id = "call_b", .name = "now", .arguments = "{}"}};
    al_oai_response r = {.kind = AL_OAI_CHAT,
                         .id = "chatcmpl-1",
                         .model = "g",
                         .created = 5,
                         .text = "",
                         .finish_reason = "tool_calls",
                         .tool_calls = tc,
                         .n_tool_calls = 2,
                         .usage = {.prompt_tokens = 3, .completion_tokens = 2}};
    char *s;
    size_t n;
    assert_int_equal(al_oai_response_json(&r, &s, &n), AL_OK);
    expect_bytes(
        s, n,
        "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"created\":5,\"model\":\"g\",\"choices\":[{"
        "\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"call_a\","
        "\"type\":\"function\",\"function\":{\"name\":\"add\",\"arguments\":\"{\\\"a\\\":1}\"}},{\"id\":"
        "\"call_b\",\"type\":\"function\",\"function\":{\"name\":\"now\",\"arguments\":\"{}\"}}]},"
        "\"logprobs\":"
        "null,\"finish_reason\":\"tool_calls\"}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,"
        "\"total_tokens\":5,\"prompt_tokens_details\":{\"cached_tokens\":0}}}");
    r.text = "Sure.";
    r.n_tool_calls = 1;
    assert_int_equal(al_oai_response_json(&r, &s, &n), AL_OK);
    assert_non_null(
        strstr(s, "\"message\":{\"role\":\"assistant\",\"content\":\"Sure.\",\"tool_calls\":[{\"id\":"
                  "\"call_a\""));
    free(s);
    al_oai_chunk k = {.kind = AL_OAI_CHAT,
                      .id = "chatcmpl-1",
                      .model = "g",
                      .created = 5,
                      .tool_calls = tc,
                      .n_tool_calls = 2};
    assert_int_equal(al_oai_sse_chunk(&k, &s, &n), AL_OK);
    expect_bytes(
        s, n,
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":5,\"model\":\"g\","
        "\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_a\",\"type\":"
        "\"function\",\"function\":{\"name\":\"add\",\"arguments\":\"{\\\"a\\\":1}\"}},{\"index\":1,\"id\":"
        "\"call_b\",\"type\":\"function\",\"function\":{\"name\":\"now\",\"arguments\":\"{}\"}}]},"
        "\"logprobs\":null,\"finish_reason\":null}]}\n\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_constraint),
        cmocka_unit_test(test_output),
        cmocka_unit_test(test_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
