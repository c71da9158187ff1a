/* openai_test.c: OpenAI request validation (every field, types, huge values), response/SSE/error bytes. */
#include "al_test.h"

#include "common/util.h"
#include "services/router/front/openai.h"

static al_err chat(const char *body, al_oai_request *r)
{
    return al_oai_parse_chat(body, strlen(body), NULL, r);
}

static al_err compl(const char *body, al_oai_request *r)
{
    return al_oai_parse_completion(body, strlen(body), NULL, r);
}

static void test_chat_valid(void **state)
{
    (void)state;
    al_oai_request r;
    const char *min = "{\"model\":\"granite\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    assert_int_equal(chat(min, &r), AL_OK);
    assert_int_equal(r.kind, AL_OAI_CHAT);
    assert_string_equal(r.model, "granite");
    assert_int_equal(r.chat->n_msgs, 1);
    assert_string_equal(r.chat->msgs[0].content, "hi");
    assert_int_equal(r.max_tokens, -1);
    assert_true(r.temperature == 1 && r.top_p == 1);
    assert_int_equal(r.has_seed, 0);
    assert_int_equal(r.n_stop, 0);
    assert_int_equal(r.stream, 0);
    al_oai_request_free(&r);

    const char *full =
        "{\"model\":\"certainty\",\"messages\":[{\"role\":\"system\",\"content\":\"s\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":"
        "\"b\"}]}],"
        "\"documents\":[{\"text\":\"doc\",\"doc_id\":3}],\"max_tokens\":10,\"max_completion_tokens\":20,"
        "\"temperature\":0,\"top_p\":0.5,\"seed\":-5,\"stop\":[\"\\n\",\"END\"],\"logprobs\":true,"
        "\"top_logprobs\":5,\"stream\":true,\"stream_options\":{\"include_usage\":true},\"n\":1,"
        "\"presence_penalty\":0.5,\"frequency_penalty\":-2,\"user\":\"u\",\"tools\":[],\"some_future_field\":"
        "{}}";
    assert_int_equal(chat(full, &r), AL_OK);
    assert_int_equal(r.chat->n_msgs, 2);
    assert_string_equal(r.chat->msgs[1].content, "ab");
    assert_int_equal(r.chat->n_docs, 1);
    assert_string_equal(r.chat->docs[0].doc_id, "3");
    assert_int_equal(r.max_tokens, 20); /* max_completion_tokens wins */
    assert_true(r.temperature == 0 && r.top_p == 0.5);
    assert_true(r.has_seed && r.seed == -5);
    assert_int_equal(r.n_stop, 2);
    assert_string_equal(r.stop[1], "END");
    assert_true(r.logprobs && r.top_logprobs == 5 && r.stream && r.include_usage);
    assert_true(r.presence_penalty == 0.5 && r.frequency_penalty == -2);
    al_oai_request_free(&r);

    /* nulls are absent; a stop string; integral reals; max seed */
    assert_int_equal(
        chat("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":null,"
             "\"stop\":\"###\",\"max_tokens\":8.0,\"seed\":18446744073709551615,\"logprobs\":null,"
             "\"stream_options\":null,\"documents\":null}",
             &r),
        AL_EINVAL); /* seed beyond int64 */
    assert_string_equal(al_errmsg(), "seed: expected a 64-bit integer");
    assert_int_equal(
        chat("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":null,"
             "\"stop\":\"###\",\"max_tokens\":8.0,\"seed\":9223372036854775807,\"logprobs\":null}",
             &r),
        AL_OK);
    assert_true(r.temperature == 1);
    assert_int_equal(r.n_stop, 1);
    assert_string_equal(r.stop[0], "###");
    assert_int_equal(r.max_tokens, 8);
    assert_true(r.seed == INT64_MAX);
    al_oai_request_free(&r);
}

typedef struct {
    const char *body, *msg;
    al_err e;
} bad_case;

#define MSG "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]"

static void test_chat_invalid(void **state)
{
    (void)state;
    static const bad_case bad[] = {
        {"", "body: empty (expected a JSON object)", AL_EINVAL},
        {"{\"model\":", "body: invalid JSON at line 1 column 9", AL_EINVAL},
        {"[1,2]", "body: expected a JSON object", AL_EINVAL},
        {"\"str\"", "body: invalid JSON", AL_EINVAL},
        {"{" MSG "}", "model: missing", AL_EINVAL},
        {"{\"model\":null," MSG "}", "model: missing", AL_EINVAL},
        {"{\"model\":5," MSG "}", "model: expected a non-empty string", AL_EINVAL},
        {"{\"model\":\"\"," MSG "}", "model: expected a non-empty string", AL_EINVAL},
        {"{\"model\":\"m\"}", "messages: missing", AL_EINVAL},
        {"{\"model\":\"m\",\"messages\":{}}", "messages: expected a list", AL_EINVAL},
        {"{\"model\":\"m\",\"messages\":[]}", "messages: empty list", AL_EINVAL},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}]}", "messages[0].content: missing", AL_EINVAL},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":5}]}",
         "messages[0].content: expected a string or a list of text parts", AL_EINVAL},
        {"{\"model\":\"m\",\"messages\":[{\"role\":7,\"content\":\"x\"}]}", "messages[0].role: expected",
         AL_EINVAL},
        {"{\"model\":\"m\"," MSG ",\"documents\":[{\"title\":\"t\"}]}",
         "documents[0].text: expected a string", AL_EINVAL},
        {"{\"model\":\"m\"," MSG ",\"documents\":\"d\"}", "documents: expected a list", AL_EINVAL},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\\u0000\"}]}",
         "messages: strings must not contain \\u0000", AL_EINVAL},
        {"{\"model\":\"m\\u0000\"," MSG "}", "model: expected a non-empty string", AL_EINVAL},
        {"{\"model\":\"m\"," MSG ",\"max_tokens\":0}", "max_tokens: expected an integer in [1, 1048576]",
         AL_EINVAL},
        {"{\"model\":\"m\"," MSG ",\"max_tokens\":-3}", "max_tokens: expected an integer in [1, 1048576]",
         AL_EINVAL},
        {"{\"model\":\"m\"," MSG ",\"max_tokens\":1.5}", "max_tokens: expected an integer", AL_EINVAL},
        {"{\"model\":\"m\"," MSG ",\"max_tokens\":\"10\"}", "max_tokens: expected an integer", AL_EINVAL},
        {"{\"model\":\"m\"," MSG ",\"max_tokens\":1e300}", "max_tokens: expected an integer", AL_EINVAL},
        {"{\"model\":\"m\"," MSG ",\"max_tokens\":99999999999999999999999999}",
         "max_tokens: expected an integer", AL_EINVAL},
        {"{\"model\":\"m\"," MSG ",\"max_completion_tokens\":true}",
         "max_completion_tokens: expected an integer", AL_EINVAL},
        {"{\"model\":\"m\"," MSG ",\"temperature\":2.5}", "temperature: expected a number in [0, 2]",
         AL_EINVAL},
        {"{\"model\":\"m\"," MSG ",\"temperature\":-0.1}", "temperature: expected a number in [0, 2]",
         AL_EINVAL},
        {"{\"model\":\"m\"," MSG ",\"temperature\":\"hot\"}", "temperature: expected a number in [0, 2]",
         AL_EINVAL},
        {"{\"model\":\"m\"," MSG ",\"top_p\":0}", "top_p: expected a number in (0, 1]", AL_EINVAL},
        {"{\"model\":\"m\"," MSG ",\"top_p\":1.01}", "top_p: expected a number in (0, 1]", AL_EINVAL},
        {"{\"model\":\"m\"," MSG ",\"presence_penalty\":3}", "presence_penalty: expected a number in [-2, 2]",
         AL_EINVAL},
        {"{\"model\":\"m\"," MSG ",\"frequency_penalty\":[]}", "frequency_penalty: expected a number",
         AL_EINVAL},
        {"{\"model\":\"m\"," MSG ",\"seed\":\"1\"}", "seed: expected a 64-bit integer", AL_EINVAL},
        {"{\"model\":\"m\"," MSG ",\"seed\":1.5}", "seed: expected a 64-bit integer", AL_EINVAL},
        {"{\"model\":\"m\"," MSG ",\"stop\":5}", "stop: expected a string or a list of at most 4 strings",
         AL_EINVAL},
        {"{\"model\":\"m\"," MSG ",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}",
         "stop: expected a string or a list", AL_EINVAL},
        {"{\"model\":\"m\"," MSG ",\"stop\":[\"a\",3]}", "stop[1]: expected a non-empty string", AL_EINVAL},
        {"{\"model\":\"m\"," MSG ",\"stop\":\"\"}", "stop: expected a non-empty string", AL_EINVAL},
        {"{\"model\":\"m\"," MSG ",\"n\":2}", "n: only 1 is supported", AL_EUNSUPPORTED},
        {"{\"model\":\"m\"," MSG ",\"n\":\"1\"}", "n: expected an integer", AL_EINVAL},
        {"{\"model\":\"m\"," MSG ",\"stream\":1}", "stream: expected true or false", AL_EINVAL},
        {"{\"model\":\"m\"," MSG ",\"stream_options\":{\"include_usage\":true}}",
         "stream_options: only allowed when stream is true", AL_EINVAL},
        {"{\"model\":\"m\"," MSG ",\"stream\":true,\"stream_options\":[]}",
         "stream_options: expected an object", AL_EINVAL},
        {"{\"model\":\"m\"," MSG ",\"stream\":true,\"stream_options\":{\"include_usage\":\"yes\"}}",
         "stream_options.include_usage: expected true or false", AL_EINVAL},
        {"{\"model\":\"m\"," MSG ",\"logprobs\":5}", "logprobs: expected true or false", AL_EINVAL},
        {"{\"model\":\"m\"," MSG ",\"top_logprobs\":3}", "top_logprobs: requires logprobs: true", AL_EINVAL},
        {"{\"model\":\"m\"," MSG ",\"logprobs\":true,\"top_logprobs\":21}",
         "top_logprobs: expected an integer in [0, 20]", AL_EINVAL},
    };
    for (size_t i = 0; i < AL_ARRAY_LEN(bad); i++) {
        al_oai_request r;
        al_err e = chat(bad[i].body, &r);
        if (e != bad[i].e || strncmp(al_errmsg(), bad[i].msg, strlen(bad[i].msg)))
            fail_msg("bad[%zu] %s: got %s '%s', want %s '%s'", i, bad[i].body, al_strerror(e), al_errmsg(),
                     al_strerror(bad[i].e), bad[i].msg);
        assert_null(r.model);
        assert_null(r.chat);
        assert_int_equal(al_oai_http_status(e), 400);
    }
}

static void test_limits(void **state)
{
    (void)state;
    al_oai_request r;
    al_oai_limits lim = {.max_body = 64, .max_tokens = 100, .max_prompt_tokens = 3};
    char big[200];
    memset(big, ' ', sizeof big);
    big[sizeof big - 1] = 0;
    memcpy(big, "{\"model\":\"m\",", 13);
    assert_int_equal(al_oai_parse_chat(big, strlen(big), &lim, &r), AL_ERANGE);
    assert_string_equal(al_errmsg(), "body: 199 bytes exceeds the limit of 64 bytes");
    assert_int_equal(al_oai_http_status(AL_ERANGE), 413);
    const char *b = "{\"model\":\"m\"," MSG ",\"max_tokens\":101}";
    lim.max_body = 0;
    assert_int_equal(al_oai_parse_chat(b, strlen(b), &lim, &r), AL_EINVAL);
    assert_string_equal(al_errmsg(), "max_tokens: expected an integer in [1, 100]");
    b = "{\"model\":\"m\",\"prompt\":[1,2,3,4]}";
    assert_int_equal(al_oai_parse_completion(b, strlen(b), &lim, &r), AL_ERANGE);
    assert_string_equal(al_errmsg(), "prompt: 4 tokens exceeds the limit of 3");
    /* the default limit: 8 MiB */
    size_t n = AL_OAI_DEFAULT_MAX_BODY + 1;
    char *huge = malloc(n);
    memset(huge, ' ', n);
    assert_int_equal(al_oai_parse_chat(huge, n, NULL, &r), AL_ERANGE);
    free(huge);
    /* deep nesting is a JSON error, not a crash */
    char deep[20010];
    memset(deep, '[', 20000);
    deep[20000] = 0;
    assert_int_equal(chat(deep, &r), AL_EINVAL);
    assert_non_null(strstr(al_errmsg(), "body: invalid JSON"));
}

static void test_completion(void **state)
{
    (void)state;
    al_oai_request r;
    assert_int_equal(
        compl("{\"model\":\"m\",\"prompt\":\"Hello\",\"max_tokens\":5,\"logprobs\":3,\"echo\":false}", &r),
        AL_OK);
    assert_int_equal(r.kind, AL_OAI_COMPLETION);
    assert_string_equal(r.prompt, "Hello");
    assert_null(r.prompt_tokens);
    assert_true(r.logprobs && r.top_logprobs == 3);
    assert_false(r.echo);
    al_oai_request_free(&r);
    assert_int_equal(compl("{\"model\":\"m\",\"prompt\":\"Hi\",\"echo\":true,\"logprobs\":1}", &r), AL_OK);
    assert_true(r.echo);
    al_oai_request_free(&r);
    const char *ce = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"echo\":true}";
    assert_int_equal(al_oai_parse_chat(ce, strlen(ce), NULL, &r), AL_EUNSUPPORTED);
    assert_non_null(strstr(al_errmsg(), "echo"));
    al_oai_request_free(&r);
    assert_int_equal(compl("{\"model\":\"m\",\"prompt\":[1,2,2147483647]}", &r), AL_OK);
    assert_int_equal(r.n_prompt_tokens, 3);
    assert_int_equal(r.prompt_tokens[2], INT32_MAX);
    assert_false(r.logprobs);
    al_oai_request_free(&r);
    assert_int_equal(compl("{\"model\":\"m\",\"prompt\":[\"one\"]}", &r), AL_OK);
    assert_string_equal(r.prompt, "one");
    al_oai_request_free(&r);
    assert_int_equal(compl("{\"model\":\"m\",\"prompt\":[[7,8]]}", &r), AL_OK);
    assert_int_equal(r.n_prompt_tokens, 2);
    al_oai_request_free(&r);
    assert_int_equal(compl("{\"model\":\"m\",\"prompt\":\"x\",\"logprobs\":0}", &r), AL_OK);
    assert_true(r.logprobs && r.top_logprobs == 0);
    al_oai_request_free(&r);

    static const bad_case bad[] = {
        {"{\"model\":\"m\"}", "prompt: missing", AL_EINVAL},
        {"{\"model\":\"m\",\"prompt\":\"\"}", "prompt: must not be empty", AL_EINVAL},
        {"{\"model\":\"m\",\"prompt\":[]}", "prompt: must not be empty", AL_EINVAL},
        {"{\"model\":\"m\",\"prompt\":5}", "prompt: expected a string or a list of token ids", AL_EINVAL},
        {"{\"model\":\"m\",\"prompt\":[\"a\",\"b\"]}", "prompt: only one prompt is supported",
         AL_EUNSUPPORTED},
        {"{\"model\":\"m\",\"prompt\":[1,-1]}", "prompt[1]: expected a token id in [0, 2147483647]",
         AL_EINVAL},
        {"{\"model\":\"m\",\"prompt\":[1,2147483648]}", "prompt[1]: expected a token id", AL_EINVAL},
        {"{\"model\":\"m\",\"prompt\":[1,\"a\"]}", "prompt[1]: expected a token id", AL_EINVAL},
        {"{\"model\":\"m\",\"prompt\":[1,1e40]}", "prompt[1]: expected a token id", AL_EINVAL},
        {"{\"model\":\"m\",\"prompt\":[[1,\"a\"]]}", "prompt[0][1]: expected a token id", AL_EINVAL},
        {"{\"model\":\"m\",\"prompt\":\"a\\u0000b\"}", "prompt: contains NUL", AL_EINVAL},
        {"{\"model\":\"m\",\"prompt\":\"x\",\"logprobs\":true}", "logprobs: expected an integer in [0, 20]",
         AL_EINVAL},
        {"{\"model\":\"m\",\"prompt\":\"x\",\"logprobs\":21}", "logprobs: expected an integer in [0, 20]",
         AL_EINVAL},
        {"{\"model\":\"m\",\"prompt\":\"x\",\"echo\":\"no\"}", "echo: expected true or false", AL_EINVAL},
        {"{\"model\":\"m\",\"prompt\":\"x\",\"suffix\":\"s\"}", "suffix: not supported", AL_EUNSUPPORTED},
        {"{\"model\":\"m\",\"prompt\":\"x\",\"best_of\":2}", "best_of: only 1 is supported", AL_EUNSUPPORTED},
        {"{\"model\":\"m\",\"prompt\":\"x\",\"temperature\":3}", "temperature: expected a number in [0, 2]",
         AL_EINVAL},
        {"{\"prompt\":\"x\"}", "model: missing", AL_EINVAL},
    };
    for (size_t i = 0; i < AL_ARRAY_LEN(bad); i++) {
        al_err e = compl(bad[i].body, &r);
        if (e != bad[i].e || strncmp(al_errmsg(), bad[i].msg, strlen(bad[i].msg)))
            fail_msg("bad[%zu] %s: got %s '%s', want %s '%s'", i, bad[i].body, al_strerror(e), al_errmsg(),
                     al_strerror(bad[i].e), bad[i].msg);
        assert_null(r.model);
        assert_null(r.prompt);
        assert_null(r.prompt_tokens);
    }
}

static void expect_bytes(char *got, size_t len, const char *want)
{
    if (strcmp(got, want))
        fail_msg("got:\n%s\nwant:\n%s", got, want);
    assert_int_equal(len, strlen(want));
    free(got);
}

static void test_errors(void **state)
{
    (void)state;
    static const struct {
        al_err e;
        int status;
        const char *code;
    } map[] = {
        {AL_EINVAL, 400, "invalid_argument"},
        {AL_EFORMAT, 400, "invalid_argument"},
        {AL_EUNSUPPORTED, 400, "invalid_argument"},
        {AL_ENOTFOUND, 404, "not_found"},
        {AL_ERANGE, 413, "request_too_large"},
        {AL_EOVERLOADED, 429, "overloaded"},
        {AL_ECAPACITY, 429, "overloaded"},
        {AL_EUNAVAILABLE, 503, "unavailable"},
        {AL_ETIMEDOUT, 503, "unavailable"},
        {AL_EINTERNAL, 500, "internal"},
        {AL_ENOMEM, 500, "internal"},
        {AL_EIO, 500, "internal"},
    };
    for (size_t i = 0; i < AL_ARRAY_LEN(map); i++) {
        assert_int_equal(al_oai_http_status(map[i].e), map[i].status);
        assert_string_equal(al_oai_error_code(map[i].e), map[i].code);
    }
    char *s;
    size_t n;
    assert_int_equal(al_oai_error_body(AL_EINVAL, "temperature: expected a number in [0, 2]", &s, &n), AL_OK);
    expect_bytes(
        s, n,
        "{\"error\":{\"code\":\"invalid_argument\",\"message\":\"temperature: expected a number in [0, 2]\","
        "\"type\":\"invalid_request_error\"}}");
    assert_int_equal(al_oai_error_body(AL_ENOTFOUND, "model: unknown model 'x\"y'", &s, &n), AL_OK);
    expect_bytes(s, n,
                 "{\"error\":{\"code\":\"not_found\",\"message\":\"model: unknown model 'x\\\"y'\","
                 "\"type\":\"not_found_error\"}}");
    assert_int_equal(al_oai_error_body(AL_EOVERLOADED, NULL, &s, &n), AL_OK);
    expect_bytes(
        s, n,
        "{\"error\":{\"code\":\"overloaded\",\"message\":\"overloaded\",\"type\":\"rate_limit_error\"}}");
    assert_int_equal(al_oai_error_body(AL_EUNAVAILABLE, "bad \xff utf8", &s, &n), AL_OK);
    expect_bytes(s, n,
                 "{\"error\":{\"code\":\"unavailable\",\"message\":\"bad \xef\xbf\xbd utf8\","
                 "\"type\":\"service_unavailable_error\"}}");
    assert_int_equal(al_oai_sse_error(AL_EINTERNAL, "boom", &s, &n), AL_OK);
    expect_bytes(
        s, n, "data: {\"error\":{\"code\":\"internal\",\"message\":\"boom\",\"type\":\"server_error\"}}\n\n");
}

static void test_responses(void **state)
{
    (void)state;
    char *s;
    size_t n;
    al_oai_response r = {.kind = AL_OAI_CHAT,
                         .id = "chatcmpl-1",
                         .model = "granite",
                         .created = 1700000000,
                         .text = "Hello \"there\"\n",
                         .finish_reason = "stop",
                         .usage = {.prompt_tokens = 10, .completion_tokens = 3, .cached_tokens = 8}};
    assert_int_equal(al_oai_response_json(&r, &s, &n), AL_OK);
    expect_bytes(
        s, n,
        "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"created\":1700000000,\"model\":\"granite\","
        "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"Hello "
        "\\\"there\\\"\\n\"},"
        "\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":10,"
        "\"completion_tokens\":3,\"total_tokens\":13,\"prompt_tokens_details\":{\"cached_tokens\":8}}}");

    al_oai_top top[2] = {{"Hi", -0.25}, {"\xc3", -1.5}};
    al_oai_token_logprob lp[2] = {{"Hi", -0.25, top, 2, 0}, {"!", -0.5, NULL, 0, 0}};
    r.text = "Hi!";
    r.finish_reason = "length";
    r.has_logprobs = 1;
    r.logprobs = lp;
    r.n_logprobs = 2;
    json_t *extra = json_pack("{s{sf}}", "intrinsic", "certainty", 0.85);
    r.extra = extra;
    assert_int_equal(al_oai_response_json(&r, &s, &n), AL_OK);
    expect_bytes(
        s, n,
        "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"created\":1700000000,\"model\":\"granite\","
        "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"Hi!\"},"
        "\"logprobs\":{\"content\":[{\"token\":\"Hi\",\"logprob\":-0.25,\"bytes\":[72,105],"
        "\"top_logprobs\":[{\"token\":\"Hi\",\"logprob\":-0.25,\"bytes\":[72,105]},"
        "{\"token\":\"\xef\xbf\xbd\",\"logprob\":-1.5,\"bytes\":[195]}]},"
        "{\"token\":\"!\",\"logprob\":-0.5,\"bytes\":[33],\"top_logprobs\":[]}]},"
        "\"finish_reason\":\"length\"}],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":3,"
        "\"total_tokens\":13,\"prompt_tokens_details\":{\"cached_tokens\":8}},"
        "\"intrinsic\":{\"certainty\":0.85}}");
    json_decref(extra);

    al_oai_response c = {.kind = AL_OAI_COMPLETION,
                         .id = "cmpl-2",
                         .model = "m",
                         .created = 5,
                         .text = "Hi!",
                         .finish_reason = NULL,
                         .has_logprobs = 1,
                         .logprobs = lp,
                         .n_logprobs = 2,
                         .usage = {.prompt_tokens = 1, .completion_tokens = 2}};
    assert_int_equal(al_oai_response_json(&c, &s, &n), AL_OK);
    expect_bytes(
        s, n,
        "{\"id\":\"cmpl-2\",\"object\":\"text_completion\",\"created\":5,\"model\":\"m\","
        "\"choices\":[{\"index\":0,\"text\":\"Hi!\",\"logprobs\":{\"tokens\":[\"Hi\",\"!\"],"
        "\"token_logprobs\":[-0.25,-0.5],\"top_logprobs\":[{\"Hi\":-0.25,\"\xef\xbf\xbd\":-1.5},{}],"
        "\"text_offset\":[0,2]},\"finish_reason\":null}],\"usage\":{\"prompt_tokens\":1,"
        "\"completion_tokens\":2,\"total_tokens\":3,\"prompt_tokens_details\":{\"cached_tokens\":0}}}");
    /* echo: the prompt's first token has no context, so null logprob and alternatives */
    lp[0].no_context = 1;
    assert_int_equal(al_oai_response_json(&c, &s, &n), AL_OK);
    expect_bytes(
        s, n,
        "{\"id\":\"cmpl-2\",\"object\":\"text_completion\",\"created\":5,\"model\":\"m\","
        "\"choices\":[{\"index\":0,\"text\":\"Hi!\",\"logprobs\":{\"tokens\":[\"Hi\",\"!\"],"
        "\"token_logprobs\":[null,-0.5],\"top_logprobs\":[null,{}],"
        "\"text_offset\":[0,2]},\"finish_reason\":null}],\"usage\":{\"prompt_tokens\":1,"
        "\"completion_tokens\":2,\"total_tokens\":3,\"prompt_tokens_details\":{\"cached_tokens\":0}}}");
}

static void test_sse(void **state)
{
    (void)state;
    char *s;
    size_t n;
    al_oai_chunk k = {
        .kind = AL_OAI_CHAT, .id = "chatcmpl-1", .model = "g", .created = 7, .role = 1, .text = ""};
    assert_int_equal(al_oai_sse_chunk(&k, &s, &n), AL_OK);
    expect_bytes(
        s, n,
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"g\","
        "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,"
        "\"finish_reason\":null}]}\n\n");
    al_oai_token_logprob lp = {"Hi", -0.125, NULL, 0, 0};
    k = (al_oai_chunk){.kind = AL_OAI_CHAT,
                       .id = "chatcmpl-1",
                       .model = "g",
                       .created = 7,
                       .text = "Hi",
                       .has_logprobs = 1,
                       .logprobs = &lp,
                       .n_logprobs = 1};
    assert_int_equal(al_oai_sse_chunk(&k, &s, &n), AL_OK);
    expect_bytes(
        s, n,
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"g\","
        "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"logprobs\":{\"content\":[{\"token\":"
        "\"Hi\",\"logprob\":-0.125,\"bytes\":[72,105],\"top_logprobs\":[]}]},\"finish_reason\":null}]}\n\n");
    k = (al_oai_chunk){
        .kind = AL_OAI_CHAT, .id = "chatcmpl-1", .model = "g", .created = 7, .finish_reason = "stop"};
    assert_int_equal(al_oai_sse_chunk(&k, &s, &n), AL_OK);
    expect_bytes(
        s, n,
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"g\","
        "\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}]}\n\n");
    al_oai_usage u = {4, 2, 1};
    k = (al_oai_chunk){.kind = AL_OAI_CHAT, .id = "chatcmpl-1", .model = "g", .created = 7, .usage = &u};
    assert_int_equal(al_oai_sse_chunk(&k, &s, &n), AL_OK);
    expect_bytes(
        s, n,
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"g\","
        "\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":2,\"total_tokens\":6,"
        "\"prompt_tokens_details\":{\"cached_tokens\":1}}}\n\n");
    k = (al_oai_chunk){
        .kind = AL_OAI_COMPLETION, .id = "cmpl-1", .model = "g", .created = 7, .text = "a\xff"};
    assert_int_equal(al_oai_sse_chunk(&k, &s, &n), AL_OK);
    expect_bytes(s, n,
                 "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":7,\"model\":\"g\","
                 "\"choices\":[{\"index\":0,\"text\":\"a\xef\xbf\xbd\",\"logprobs\":null,\"finish_reason\":"
                 "null}]}\n\n");
    assert_string_equal(al_oai_sse_done(), "data: [DONE]\n\n");
}

static void test_models_and_ids(void **state)
{
    (void)state;
    char *s;
    size_t n;
    const char *ids[] = {"granite", "certainty"};
    assert_int_equal(al_oai_models_json(ids, 2, 9, NULL, &s, &n), AL_OK);
    expect_bytes(s, n,
                 "{\"object\":\"list\",\"data\":[{\"id\":\"granite\",\"object\":\"model\",\"created\":9,"
                 "\"owned_by\":\"alora\"},{\"id\":\"certainty\",\"object\":\"model\",\"created\":9,"
                 "\"owned_by\":\"alora\"}]}");
    char a[64], b[64];
    al_oai_make_id("chatcmpl", a, sizeof a);
    al_oai_make_id("chatcmpl", b, sizeof b);
    assert_int_equal(strlen(a), strlen("chatcmpl-") + 24);
    assert_true(!strncmp(a, "chatcmpl-", 9));
    assert_string_not_equal(a, b);
    char tiny[6];
    al_oai_make_id("chatcmpl", tiny, sizeof tiny);
    assert_string_equal(tiny, "chatc");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chat_valid), cmocka_unit_test(test_chat_invalid),
        cmocka_unit_test(test_limits),     cmocka_unit_test(test_completion),
        cmocka_unit_test(test_errors),     cmocka_unit_test(test_responses),
        cmocka_unit_test(test_sse),        cmocka_unit_test(test_models_and_ids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
