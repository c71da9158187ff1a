/* chat_test.c: chat rendering against transformers goldens, detection, message JSON parsing. */
#include "al_test.h"

#include <jansson.h>

#include "common/text/chat.h"
#include "common/util.h"

#define FIX "tests/fixtures/chat/"

static void test_goldens(void **state)
{
    (void)state;
    json_error_t je;
    json_t *g = json_load_file(FIX "chat_goldens.json", 0, &je);
    assert_non_null(g);
    assert_true(json_array_size(g) >= 60);
    size_t i;
    json_t *c;
    json_array_foreach(g, i, c)
    {
        al_chat_format f;
        assert_int_equal(al_chat_format_parse(json_string_value(json_object_get(c, "format")), &f),
                         AL_OK);
        /* go through the JSON parser too: {"messages": [...], "documents": [...]} */
        json_t *req = json_pack("{sOsO}", "messages", json_object_get(c, "messages"), "documents",
                                json_object_get(c, "documents"));
        char *js = json_dumps(req, 0);
        al_chat *chat;
        assert_int_equal(al_chat_parse_json(js, strlen(js), &chat), AL_OK);
        al_chat_opts o = {.date = json_string_value(json_object_get(c, "date")),
                          .thinking = json_is_true(json_object_get(c, "thinking"))};
        json_t *ctl = json_object_get(c, "controls"); /* Granite's chat_template_kwargs */
        char *ctl_js = ctl ? json_dumps(ctl, JSON_COMPACT) : NULL;
        o.controls = ctl_js;
        char *out;
        assert_int_equal(al_chat_render_ex(f, chat->msgs, chat->n_msgs, chat->docs, chat->n_docs,
                                           json_is_true(json_object_get(c, "add_generation_prompt")),
                                           &o, &out),
                         AL_OK);
        const char *want = json_string_value(json_object_get(c, "expected"));
        if (strcmp(out, want))
            fail_msg("golden %zu (%s):\n got [%s]\nwant [%s]", i, al_chat_format_name(f), out,
                     want);
        free(out);
        free(ctl_js);
        al_chat_free(chat);
        free(js);
        json_decref(req);
    }
    json_decref(g);
}

static void test_render_misc(void **state)
{
    (void)state;
    al_chat_msg m[] = {{.role = "user", .content = "hi"}, {.role = "assistant", .content = "yo"}};
    char *out;
    assert_int_equal(al_chat_render(AL_CHAT_RAW, m, 2, NULL, 0, 1, &out), AL_OK);
    assert_string_equal(out, "hi\nyo");
    free(out);
    /* granite default system prompt carries today's date */
    assert_int_equal(al_chat_render(AL_CHAT_GRANITE, m, 1, NULL, 0, 1, &out), AL_OK);
    assert_non_null(strstr(out, "Today's Date: "));
    free(out);
    al_chat_doc d = {"t", "text", NULL};
    assert_int_equal(al_chat_render(AL_CHAT_LLAMA3, m, 1, &d, 1, 1, &out), AL_EUNSUPPORTED);
    assert_null(out);
    assert_int_equal(al_chat_render(AL_CHAT_CHATML, m, 0, NULL, 0, 1, &out), AL_EINVAL);
    al_chat_msg bad[] = {{.role = "user", .content = NULL}};
    assert_int_equal(al_chat_render(AL_CHAT_CHATML, bad, 1, NULL, 0, 1, &out), AL_EINVAL);
}

static void test_detect_and_names(void **state)
{
    (void)state;
    static const struct {
        const char *file;
        al_chat_format f;
    } cases[] = {{FIX "granite-3.3-8b-instruct.jinja", AL_CHAT_GRANITE},
                 {FIX "meta-llama-3-8b-instruct.jinja", AL_CHAT_LLAMA3},
                 {FIX "chatml.jinja", AL_CHAT_CHATML}};
    for (size_t i = 0; i < AL_ARRAY_LEN(cases); i++) {
        char *t;
        assert_int_equal(ali_read_file(cases[i].file, 1 << 20, &t, NULL), AL_OK);
        assert_int_equal(al_chat_detect(t), cases[i].f);
        free(t);
    }
    assert_int_equal(al_chat_detect(NULL), AL_CHAT_RAW);
    assert_int_equal(al_chat_detect("{{ messages }}"), AL_CHAT_RAW);
    for (int f = AL_CHAT_RAW; f <= AL_CHAT_CHATML; f++) {
        al_chat_format g;
        assert_int_equal(al_chat_format_parse(al_chat_format_name((al_chat_format)f), &g), AL_OK);
        assert_int_equal(g, f);
    }
    al_chat_format g;
    assert_int_equal(al_chat_format_parse("vicuna", &g), AL_EINVAL);
    assert_non_null(strstr(al_errmsg(), "vicuna"));
    const char *const *s;
    int n;
    al_chat_stop_strings(AL_CHAT_GRANITE, &s, &n);
    assert_int_equal(n, 1);
    assert_string_equal(s[0], "<|end_of_text|>");
    al_chat_stop_strings(AL_CHAT_LLAMA3, &s, &n);
    assert_string_equal(s[0], "<|eot_id|>");
    al_chat_stop_strings(AL_CHAT_CHATML, &s, &n);
    assert_string_equal(s[0], "<|im_end|>");
    al_chat_stop_strings(AL_CHAT_RAW, &s, &n);
    assert_int_equal(n, 0);
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
    const char *ok = "[{\"role\":\"system\",\"content\":\"s\"},{\"role\":\"user\",\"content\":"
                     "[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"}]}]";
    al_chat *c;
    assert_int_equal(al_chat_parse_json(ok, strlen(ok), &c), AL_OK);
    assert_int_equal(c->n_msgs, 2);
    assert_int_equal(c->n_docs, 0);
    assert_string_equal(c->msgs[1].role, "user");
    assert_string_equal(c->msgs[1].content, "ab");
    al_chat_free(c);
    const char *withdocs = "{\"messages\":[{\"role\":\"user\",\"content\":\"q\",\"name\":\"x\"}],"
                           "\"documents\":[{\"doc_id\":3,\"title\":\"T\",\"text\":\"D\"},"
                           "{\"text\":\"E\"}]}";
    assert_int_equal(al_chat_parse_json(withdocs, strlen(withdocs), &c), AL_OK);
    assert_int_equal(c->n_docs, 2);
    assert_string_equal(c->docs[0].doc_id, "3");
    assert_string_equal(c->docs[0].title, "T");
    assert_null(c->docs[1].doc_id);
    assert_null(c->docs[1].title);
    al_chat_free(c);

    expect_json_error("[{\"role\":\"wizard\",\"content\":\"x\"}]", "messages[0].role: 'wizard' is not one of");
    const char *dev = "[{\"role\":\"developer\",\"content\":\"be brief\"}]";
    assert_int_equal(al_chat_parse_json(dev, strlen(dev), &c), AL_OK);
    assert_string_equal(c->msgs[0].role, "system");
    al_chat_free(c);
    expect_json_error("", "invalid JSON");
    expect_json_error("[{\"role\":\"user\",\"content\":\"x\"}", "invalid JSON");
    expect_json_error("42", "expected a list of messages");
    expect_json_error("[]", "messages: empty");
    expect_json_error("{}", "messages: missing");
    expect_json_error("{\"messages\":{}}", "messages: expected a list");
    expect_json_error("[1]", "messages[0]: expected an object");
    expect_json_error("[{\"content\":\"x\"}]", "messages[0].role");
    expect_json_error("[{\"role\":\"\",\"content\":\"x\"}]", "messages[0].role");
    expect_json_error("[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"user\"}]",
                      "messages[1].content: missing");
    expect_json_error("[{\"role\":\"user\",\"content\":5}]", "messages[0].content");
    expect_json_error("[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]",
                      "messages[0].content[0]");
    expect_json_error("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"documents\":{}}",
                      "documents: expected a list");
    expect_json_error("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"documents\":[{}]}",
                      "documents[0].text");
    expect_json_error("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"documents\":"
                      "[{\"text\":\"a\",\"doc_id\":[]}]}", "documents[0].doc_id");
    expect_json_error("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"documents\":"
                      "[{\"text\":\"a\",\"title\":1}]}", "documents[0].title");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_goldens),
        cmocka_unit_test(test_render_misc),
        cmocka_unit_test(test_detect_and_names),
        cmocka_unit_test(test_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
