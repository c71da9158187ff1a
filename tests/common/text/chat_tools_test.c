/* chat_tools_test.c: tools in the chat templates: rendering (goldens, by hand), call parsing, hold-back. */
#include "al_test.h"

#include <jansson.h>

#include "common/text/chat.h"

/* chat_tools_goldens.json: tool conversations rendered by the public templates with jinja2 and
 * transformers' tojson (granite: ibm-granite/granite-3.3-8b-instruct, with the assistant's calls
 * given as "<|tool_call|>[...]" content, as that template has no tool_calls branch; llama3:
 * meta-llama Llama 3.1/3.2 with date_string "26 Jul 2024"; chatml: the Qwen3 layout). */
#define GOLDENS "tests/common/text/chat_tools_goldens.json"

static al_chat_tool *tools_of(json_t *arr, int *n)
{
    *n = (int)json_array_size(arr);
    al_chat_tool *t = calloc((size_t)*n + 1, sizeof *t);
    for (int i = 0; i < *n; i++) {
        json_t *x = json_array_get(arr, (size_t)i);
        t[i].name = json_string_value(json_object_get(json_object_get(x, "function"), "name"));
        t[i].json = json_dumps(x, JSON_COMPACT);
    }
    return t;
}

static void free_tools(al_chat_tool *t, int n)
{
    for (int i = 0; i < n; i++)
        free((char *)t[i].json);
    free(t);
}

static void test_goldens(void **state)
{
    (void)state;
    json_error_t je;
    json_t *g = json_load_file(GOLDENS, 0, &je);
    if (!g)
        fail_msg("%s: %s", GOLDENS, je.text);
    assert_true(json_array_size(g) >= 14);
    size_t i;
    json_t *c;
    json_array_foreach(g, i, c)
    {
        al_chat_format f;
        assert_int_equal(al_chat_format_parse(json_string_value(json_object_get(c, "format")), &f), AL_OK);
        json_t *req = json_pack("{sO}", "messages", json_object_get(c, "messages"));
        char *js = json_dumps(req, 0);
        al_chat *chat;
        if (al_chat_parse_json(js, strlen(js), &chat) != AL_OK)
            fail_msg("golden %zu: %s", i, al_errmsg());
        int nt;
        al_chat_tool *t = tools_of(json_object_get(c, "tools"), &nt);
        al_chat_opts o = {.date = json_string_value(json_object_get(c, "date")), .tools = t, .n_tools = nt};
        char *out;
        assert_int_equal(al_chat_render_ex(f, chat->msgs, chat->n_msgs, NULL, 0,
                                           json_is_true(json_object_get(c, "add_generation_prompt")), &o,
                                           &out),
                         AL_OK);
        const char *want = json_string_value(json_object_get(c, "expected"));
        if (strcmp(out, want))
            fail_msg("golden %zu (%s):\n got [%s]\nwant [%s]", i, al_chat_format_name(f), out, want);
        free(out);
        free_tools(t, nt);
        al_chat_free(chat);
        free(js);
        json_decref(req);
    }
    json_decref(g);
}

/* ---- hand-checked renderings of one small conversation per template ---- */

#define TOOL_ADD                                                                                             \
    "{\"type\":\"function\",\"function\":{\"name\":\"add\",\"description\":\"Sum\",\"parameters\":{"         \
    "\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"number\",\"minimum\":1e-05,\"maximum\":100.0},"   \
    "\"b\":{\"type\":\"integer\",\"maximum\":123456789012345678}},\"required\":[\"a\"]}}}"

static char *render(al_chat_format f, const char *messages, int with_tools, int agp)
{
    al_chat *chat;
    if (al_chat_parse_json(messages, strlen(messages), &chat) != AL_OK)
        fail_msg("%s", al_errmsg());
    al_chat_tool t = {.name = "add", .json = TOOL_ADD};
    al_chat_opts o = {.date = "April 16, 2025", .tools = &t, .n_tools = with_tools};
    char *out;
    assert_int_equal(al_chat_render_ex(f, chat->msgs, chat->n_msgs, NULL, 0, agp, &o, &out), AL_OK);
    al_chat_free(chat);
    return out;
}

static const char loop_msgs[] =
    "[{\"role\":\"user\",\"content\":\"1+2?\"},"
    "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"call_1\",\"type\":\"function\","
    "\"function\":{\"name\":\"add\",\"arguments\":\"{\\\"a\\\":1,\\\"b\\\":2.50}\"}}]},"
    "{\"role\":\"tool\",\"tool_call_id\":\"call_1\",\"content\":\"3.5 \\\"ok\\\"\"}]";

static void test_render_by_hand(void **state)
{
    (void)state;
    char *s = render(AL_CHAT_GRANITE, loop_msgs, 1, 1);
    assert_string_equal(
        s,
        "<|start_of_role|>system<|end_of_role|>Knowledge Cutoff Date: April 2024.\nToday's Date: April 16, "
        "2025.\n"
        "You are Granite, developed by IBM. You are a helpful assistant with access to the following tools. "
        "When a "
        "tool is required to answer the user's query, respond only with <|tool_call|> followed by a JSON "
        "list of "
        "tools used. If a tool does not exist in the provided list of tools, notify the user that you do not "
        "have "
        "the ability to fulfill the request.<|end_of_text|>\n"
        "<|start_of_role|>available_tools<|end_of_role|>[\n    {\n        \"type\": \"function\",\n"
        "        \"function\": {\n            \"name\": \"add\",\n            \"description\": \"Sum\",\n"
        "            \"parameters\": {\n                \"type\": \"object\",\n                "
        "\"properties\": {\n"
        "                    \"a\": {\n                        \"type\": \"number\",\n"
        "                        \"minimum\": 1e-05,\n                        \"maximum\": 100.0\n"
        "                    },\n                    \"b\": {\n                        \"type\": "
        "\"integer\",\n"
        "                        \"maximum\": 123456789012345678\n                    }\n                },\n"
        "                \"required\": [\n                    \"a\"\n                ]\n            }\n"
        "        }\n    }\n]<|end_of_text|>\n"
        "<|start_of_role|>user<|end_of_role|>1+2?<|end_of_text|>\n"
        "<|start_of_role|>assistant<|end_of_role|><|tool_call|>[{\"name\": \"add\", \"arguments\": {\"a\": "
        "1, \"b\": "
        "2.5}}]<|end_of_text|>\n"
        "<|start_of_role|>tool<|end_of_role|>3.5 \"ok\"<|end_of_text|>\n"
        "<|start_of_role|>assistant<|end_of_role|>");
    free(s);
    /* without tools the calls and results keep each template's syntax */
    s = render(AL_CHAT_GRANITE, loop_msgs, 0, 0);
    assert_non_null(strstr(s, "You are a helpful AI assistant.<|end_of_text|>\n<|start_of_role|>user"));
    assert_non_null(strstr(s, "<|start_of_role|>assistant<|end_of_role|><|tool_call|>[{\"name\": \"add\""));
    free(s);
    s = render(AL_CHAT_LLAMA3, loop_msgs, 0, 1);
    assert_string_equal(
        s, "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n1+2?<|eot_id|>"
           "<|start_header_id|>assistant<|end_header_id|>\n\n{\"name\": \"add\", \"parameters\": "
           "{\"a\": 1, \"b\": 2.5}}<|eot_id|><|start_header_id|>ipython<|end_header_id|>\n\n"
           "\"3.5 \\\"ok\\\"\"<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
    free(s);
    s = render(AL_CHAT_LLAMA3,
               "[{\"role\":\"system\",\"content\":\" S \"},{\"role\":\"user\",\"content\":\" q \"}]", 1, 0);
    assert_string_equal(
        s,
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nEnvironment: ipython\nCutting "
        "Knowledge "
        "Date: December 2023\nToday Date: 26 Jul "
        "2024\n\nS<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n"
        "Given the following functions, please respond with a JSON for a function call with its proper "
        "arguments "
        "that best answers the given prompt.\n\nRespond in the format {\"name\": function name, "
        "\"parameters\": "
        "dictionary of argument name and its value}.Do not use variables.\n\n{\n    \"type\": \"function\",\n"
        "    \"function\": {\n        \"name\": \"add\",\n        \"description\": \"Sum\",\n        "
        "\"parameters\": "
        "{\n            \"type\": \"object\",\n            \"properties\": {\n                \"a\": {\n"
        "                    \"type\": \"number\",\n                    \"minimum\": 1e-05,\n"
        "                    \"maximum\": 100.0\n                },\n                \"b\": {\n"
        "                    \"type\": \"integer\",\n                    \"maximum\": 123456789012345678\n"
        "                }\n            },\n            \"required\": [\n                \"a\"\n            "
        "]\n"
        "        }\n    }\n}\n\nq<|eot_id|>");
    free(s);
    s = render(AL_CHAT_CHATML, loop_msgs, 1, 1);
    assert_string_equal(
        s,
        "<|im_start|>system\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
        "{\"type\": \"function\", \"function\": {\"name\": \"add\", \"description\": \"Sum\", "
        "\"parameters\": "
        "{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"number\", \"minimum\": 1e-05, "
        "\"maximum\": "
        "100.0}, \"b\": {\"type\": \"integer\", \"maximum\": 123456789012345678}}, \"required\": [\"a\"]}}}\n"
        "</tools>\n\nFor each function call, return a json object with function name and arguments within "
        "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
        "<args-json-object>}\n</"
        "tool_call><|im_end|>\n<|im_start|>user\n1+2?<|im_end|>\n<|im_start|>assistant\n"
        "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2.5}}\n</tool_call><|im_end|>\n"
        "<|im_start|>user\n<tool_response>\n3.5 \"ok\"\n</tool_response><|im_end|>\n<|im_start|>assistant\n");
    free(s);
    s = render(AL_CHAT_RAW, loop_msgs, 1, 1);
    assert_string_equal(
        s, "Tools: [{\"type\": \"function\", \"function\": {\"name\": \"add\", \"description\": \"Sum\", "
           "\"parameters\": {\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"number\", "
           "\"minimum\": 1e-05, \"maximum\": 100.0}, \"b\": {\"type\": \"integer\", \"maximum\": "
           "123456789012345678}}, \"required\": [\"a\"]}}}]\n1+2?\n[{\"name\": \"add\", \"arguments\": "
           "{\"a\": 1, \"b\": 2.5}}]\n3.5 \"ok\"");
    free(s);
    /* arguments that are not JSON are rendered as a string; an object is accepted too */
    s = render(
        AL_CHAT_CHATML,
        "[{\"role\":\"assistant\",\"content\":\"Sure.\",\"tool_calls\":[{\"function\":{\"name\":\"add\","
        "\"arguments\":\"not "
        "json\"}},{\"function\":{\"name\":\"add\",\"arguments\":{\"a\":-0.0,\"b\":1e300}}}]}]",
        0, 0);
    assert_string_equal(
        s, "<|im_start|>assistant\nSure.\n<tool_call>\n{\"name\": \"add\", \"arguments\": \"not json\"}\n"
           "</tool_call>\n<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": -0.0, \"b\": 1e+300}}\n"
           "</tool_call><|im_end|>\n");
    free(s);
}

/* ---- parsing ---- */

static const al_chat_tool ptools[] = {{.name = "add", .json = TOOL_ADD},
                                      {.name = "get_weather", .json = "{}"}};

/* Parses text and checks content and the calls "name:arguments" joined with "|" ("" = none). */
static void expect_parse(al_chat_format f, const char *text, const char *content, const char *calls)
{
    al_chat_parsed p;
    assert_int_equal(al_chat_parse_tool_calls(f, text, ptools, 2, &p), AL_OK);
    char got[1024] = "";
    for (int i = 0; i < p.n_calls; i++) {
        assert_null(p.calls[i].id);
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%s:%s", i ? "|" : "", p.calls[i].name,
                 p.calls[i].arguments);
    }
    if (strcmp(got, calls) || strcmp(p.content, content))
        fail_msg("%s [%s]: got content [%s] calls [%s], want [%s] [%s]", al_chat_format_name(f), text,
                 p.content, got, content, calls);
    al_chat_parsed_free(&p);
}

static void test_parse(void **state)
{
    (void)state;
    /* granite: the marker then a list; a bare list (the special token decoded away) */
    expect_parse(AL_CHAT_GRANITE,
                 "<|tool_call|>[{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2.50}}]", "",
                 "add:{\"a\":1,\"b\":2.5}");
    expect_parse(AL_CHAT_GRANITE,
                 " [{\"name\":\"add\",\"arguments\":{}},{\"name\":\"get_weather\",\"arguments\":"
                 "{\"city\":\"Zürich\"}}] ",
                 "", "add:{}|get_weather:{\"city\":\"Zürich\"}");
    expect_parse(AL_CHAT_GRANITE,
                 "Let me add.\n<|tool_call|>[{\"name\":\"add\",\"arguments\":\"{\\\"a\\\":3}\"}]",
                 "Let me add.", "add:{\"a\":3}");
    expect_parse(AL_CHAT_GRANITE, "<tool_call>[{\"name\":\"add\",\"arguments\":{\"a\":3}}]</tool_call>", "",
                 "add:{\"a\":3}");
    expect_parse(AL_CHAT_GRANITE, "<|tool_call|>{\"name\":\"add\"}", "", "add:{}");
    /* not calls: the whole text is content, untouched */
    expect_parse(AL_CHAT_GRANITE, " [1, 2] ", " [1, 2] ", "");
    expect_parse(AL_CHAT_GRANITE, "<|tool_call|>[{\"name\":\"rm\",\"arguments\":{}}]",
                 "<|tool_call|>[{\"name\":\"rm\",\"arguments\":{}}]", "");
    expect_parse(AL_CHAT_GRANITE, "<|tool_call|>[{\"name\":\"add\",\"arguments\":{\"a\":",
                 "<|tool_call|>[{\"name\":"
                 "\"add\",\"arguments\":{\"a\":",
                 "");
    expect_parse(AL_CHAT_GRANITE, "<|tool_call|>[{\"name\":\"add\",\"arguments\":[1]}]",
                 "<|tool_call|>[{\"name\":\"add\",\"arguments\":[1]}]", "");
    expect_parse(AL_CHAT_GRANITE, "<|tool_call|>[]", "<|tool_call|>[]", "");
    expect_parse(AL_CHAT_GRANITE, "Hello", "Hello", "");
    /* chatml: blocks, the last may be unclosed */
    expect_parse(AL_CHAT_CHATML,
                 "Checking.\n<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1}}\n</tool_call>\n"
                 "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {}}\n</tool_call>",
                 "Checking.", "add:{\"a\":1}|get_weather:{}");
    expect_parse(AL_CHAT_CHATML, "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1e2}}", "",
                 "add:{\"a\":100.0}");
    expect_parse(
        AL_CHAT_CHATML,
        "<tool_call>{\"name\":\"add\"}</tool_call> and more <tool_call>{\"name\":\"add\"}"
        "</tool_call>",
        "<tool_call>{\"name\":\"add\"}</tool_call> and more <tool_call>{\"name\":\"add\"}</tool_call>", "");
    expect_parse(AL_CHAT_CHATML, "[{\"name\":\"add\",\"arguments\":{}}]",
                 "[{\"name\":\"add\",\"arguments\":{}}]", "");
    /* llama3: objects separated by ";", "parameters" or "arguments", an optional <|python_tag|> */
    expect_parse(AL_CHAT_LLAMA3, "{\"name\": \"add\", \"parameters\": {\"a\": 1}}", "", "add:{\"a\":1}");
    expect_parse(AL_CHAT_LLAMA3,
                 "<|python_tag|>{\"name\": \"add\", \"arguments\": {\"a\": 1}}; {\"name\": "
                 "\"get_weather\", \"parameters\": {}}",
                 "", "add:{\"a\":1}|get_weather:{}");
    expect_parse(AL_CHAT_LLAMA3, "{\"name\": \"add\"} trailing", "{\"name\": \"add\"} trailing", "");
    expect_parse(AL_CHAT_LLAMA3, "{\"name\": \"add\"};", "{\"name\": \"add\"};", "");
    expect_parse(AL_CHAT_LLAMA3, "The answer is 3.", "The answer is 3.", "");
    /* raw: a list or one object */
    expect_parse(AL_CHAT_RAW, "{\"name\":\"add\",\"arguments\":{\"b\":true,\"c\":null,\"d\":\"\\n\"}}", "",
                 "add:{\"b\":true,\"c\":null,\"d\":\"\\n\"}");
    expect_parse(AL_CHAT_RAW, "[{\"name\":\"add\"}]", "", "add:{}");
    expect_parse(AL_CHAT_RAW, "{\"a\":1}", "{\"a\":1}", "");
    /* no tools: nothing is a call */
    al_chat_parsed p;
    assert_int_equal(al_chat_parse_tool_calls(AL_CHAT_RAW, "[{\"name\":\"add\"}]", NULL, 0, &p), AL_OK);
    assert_int_equal(p.n_calls, 0);
    assert_string_equal(p.content, "[{\"name\":\"add\"}]");
    al_chat_parsed_free(&p);
    assert_string_equal(al_chat_tool_call_prefix(AL_CHAT_GRANITE), "<|tool_call|>");
    assert_string_equal(al_chat_tool_call_prefix(AL_CHAT_CHATML), "<tool_call>\n");
    assert_string_equal(al_chat_tool_call_prefix(AL_CHAT_LLAMA3), "");
    assert_string_equal(al_chat_tool_call_prefix(AL_CHAT_RAW), "");
}

static void expect_content_len(al_chat_format f, const char *text, size_t want)
{
    size_t got = al_chat_tool_content_len(f, text, strlen(text));
    if (got != want)
        fail_msg("%s [%s]: %zu, want %zu", al_chat_format_name(f), text, got, want);
}

static void test_content_len(void **state)
{
    (void)state;
    expect_content_len(AL_CHAT_GRANITE, "", 0);
    expect_content_len(AL_CHAT_GRANITE, "  \n", 0);
    expect_content_len(AL_CHAT_GRANITE, " [", 0);   /* may be a bare list of calls */
    expect_content_len(AL_CHAT_GRANITE, "<|to", 0); /* may be the marker */
    expect_content_len(AL_CHAT_GRANITE, "Hello world", 11);
    expect_content_len(AL_CHAT_GRANITE, "Hello <|tool", 5); /* partial marker and whitespace held */
    expect_content_len(AL_CHAT_GRANITE, "Hello <|tool_call|>[{", 5);
    expect_content_len(AL_CHAT_GRANITE, "Hello <b>", 9);
    expect_content_len(AL_CHAT_CHATML, "Sure. <tool_c", 5);
    expect_content_len(AL_CHAT_CHATML, "Sure.\n<tool_call>\n{", 5);
    expect_content_len(AL_CHAT_CHATML, "[1, 2]", 6);
    expect_content_len(AL_CHAT_CHATML, "<tool", 0);
    expect_content_len(AL_CHAT_LLAMA3, "{\"name\"", 0);
    expect_content_len(AL_CHAT_LLAMA3, "<|python", 0);
    expect_content_len(AL_CHAT_LLAMA3, "It is {x} ", 9);
    expect_content_len(AL_CHAT_RAW, "[", 0);
    expect_content_len(AL_CHAT_RAW, "ok <tool_call>", 14);
}

static void expect_json_error(const char *js, const char *needle)
{
    al_chat *c = (al_chat *)1;
    al_err e = al_chat_parse_json(js, strlen(js), &c);
    if (e == AL_OK)
        fail_msg("expected an error for %s", js);
    assert_null(c);
    if (!strstr(al_errmsg(), needle))
        fail_msg("message '%s' lacks '%s'", al_errmsg(), needle);
}

static void test_json(void **state)
{
    (void)state;
    al_chat *c;
    assert_int_equal(al_chat_parse_json(loop_msgs, strlen(loop_msgs), &c), AL_OK);
    assert_int_equal(c->n_msgs, 3);
    assert_string_equal(c->msgs[1].content, "");
    assert_int_equal(c->msgs[1].n_tool_calls, 1);
    assert_string_equal(c->msgs[1].tool_calls[0].id, "call_1");
    assert_string_equal(c->msgs[1].tool_calls[0].name, "add");
    assert_string_equal(c->msgs[1].tool_calls[0].arguments, "{\"a\":1,\"b\":2.50}");
    assert_string_equal(c->msgs[2].tool_call_id, "call_1");
    assert_null(c->msgs[0].tool_calls);
    al_chat_free(c);
    const char *absent =
        "[{\"role\":\"assistant\",\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":"
        "{\"x\":[1,{\"y\":0.1}]}}}],\"refusal\":null,\"function_call\":null}]";
    assert_int_equal(al_chat_parse_json(absent, strlen(absent), &c), AL_OK);
    assert_string_equal(c->msgs[0].content, "");
    assert_null(c->msgs[0].tool_calls[0].id);
    assert_string_equal(c->msgs[0].tool_calls[0].arguments, "{\"x\":[1,{\"y\":0.1}]}");
    al_chat_free(c);
    expect_json_error("[{\"role\":\"user\",\"tool_calls\":[]}]", "messages[0].tool_calls: only assistant");
    expect_json_error("[{\"role\":\"assistant\",\"tool_calls\":{}}]",
                      "messages[0].tool_calls: expected a list");
    expect_json_error("[{\"role\":\"assistant\",\"tool_calls\":[]}]", "messages[0].content");
    expect_json_error("[{\"role\":\"assistant\",\"content\":null}]", "messages[0].content");
    expect_json_error("[{\"role\":\"assistant\",\"tool_calls\":[1]}]",
                      "messages[0].tool_calls[0]: expected an object");
    expect_json_error(
        "[{\"role\":\"assistant\",\"tool_calls\":[{\"type\":\"x\",\"function\":{\"name\":\"f\"}}]}]",
        "messages[0].tool_calls[0].type");
    expect_json_error("[{\"role\":\"assistant\",\"tool_calls\":[{\"function\":{}}]}]",
                      "messages[0].tool_calls[0].function.name");
    expect_json_error("[{\"role\":\"assistant\",\"tool_calls\":[{\"id\":5,\"function\":{\"name\":\"f\"}}]}]",
                      "messages[0].tool_calls[0].id");
    expect_json_error(
        "[{\"role\":\"assistant\",\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":5}}]}]",
        "messages[0].tool_calls[0].function.arguments");
    expect_json_error("[{\"role\":\"tool\",\"content\":\"x\",\"tool_call_id\":1}]",
                      "messages[0].tool_call_id");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_goldens), cmocka_unit_test(test_render_by_hand),
        cmocka_unit_test(test_parse),   cmocka_unit_test(test_content_len),
        cmocka_unit_test(test_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
