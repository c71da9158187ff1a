/* openai.c: OpenAI-compatible request bodies parsed into al_oai_request, each error naming its field. */
#include "services/router/front/openai.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/utf8.h"
#include "services/router/front/openai_int.h"

void al_oai_request_free(al_oai_request *r)
{
    if (!r)
        return;
    free(r->model);
    al_chat_free(r->chat);
    free(r->prompt);
    free(r->prompt_tokens);
    free(r->bias_ids);
    free(r->bias_vals);
    free(r->constraint);
    free(r->controls);
    ali_oai_tools_free(&r->tools);
    for (int i = 0; i < r->n_stop; i++)
        free(r->stop[i]);
    memset(r, 0, sizeof *r);
}

/* The member, or NULL when absent or null. */
static json_t *ali_get(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_null(v) ? NULL : v;
}

/* An integer in [lo, hi]: a JSON integer, or an integral real (2.0, and huge literals, which are
 * read as reals so that the field can be named). */
static int ali_int_of(json_t *v, double lo, double hi, int64_t *out)
{
    double d;
    if (json_is_integer(v))
        d = (double)json_integer_value(v);
    else if (json_is_real(v))
        d = json_real_value(v);
    else
        return 0;
    if (!(d >= lo && d <= hi) || d != floor(d))
        return 0;
    *out = json_is_integer(v) ? (int64_t)json_integer_value(v) : (int64_t)d;
    return 1;
}

static al_err ali_int(json_t *o, const char *key, int64_t lo, int64_t hi, int64_t *out, int *present)
{
    json_t *v = ali_get(o, key);
    *present = v != NULL;
    if (v && !ali_int_of(v, (double)lo, (double)hi, out))
        return ali_errf(AL_EINVAL, "%s: expected an integer in [%lld, %lld]", key, (long long)lo,
                        (long long)hi);
    return AL_OK;
}

static al_err ali_num(json_t *o, const char *key, double lo, double hi, int lo_open, double *out)
{
    json_t *v = ali_get(o, key);
    if (!v)
        return AL_OK;
    double d = json_is_number(v) ? json_number_value(v) : NAN;
    if (!(d <= hi && (lo_open ? d > lo : d >= lo)))
        return ali_errf(AL_EINVAL, "%s: expected a number in %c%g, %g]", key, lo_open ? '(' : '[', lo, hi);
    *out = d;
    return AL_OK;
}

static al_err ali_bool(json_t *o, const char *key, int *out)
{
    json_t *v = ali_get(o, key);
    if (!v)
        return AL_OK;
    if (!json_is_boolean(v))
        return ali_errf(AL_EINVAL, "%s: expected true or false", key);
    *out = json_is_true(v);
    return AL_OK;
}

static al_err ali_dup(json_t *v, char **out)
{
    size_t n = json_string_length(v);
    if (strlen(json_string_value(v)) != n)
        return AL_EINVAL; /* embedded NUL: the caller names the field */
    if (!(*out = strdup(json_string_value(v))))
        return ali_errf(AL_ENOMEM, "openai: out of memory");
    return AL_OK;
}

static al_err ali_model(json_t *root, al_oai_request *r)
{
    json_t *v = ali_get(root, "model");
    if (!v)
        return ali_errf(AL_EINVAL, "model: missing");
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 256 ||
        ali_dup(v, &r->model) != AL_OK)
        return ali_errf(AL_EINVAL, "model: expected a non-empty string of at most 256 bytes");
    return AL_OK;
}

static al_err ali_stop(json_t *root, al_oai_request *r)
{
    json_t *v = ali_get(root, "stop");
    if (!v)
        return AL_OK;
    if (json_is_string(v)) {
        if (json_string_length(v) == 0 || ali_dup(v, &r->stop[0]) != AL_OK)
            return ali_errf(AL_EINVAL, "stop: expected a non-empty string");
        r->n_stop = 1;
        return AL_OK;
    }
    if (!json_is_array(v) || json_array_size(v) > AL_OAI_MAX_STOP)
        return ali_errf(AL_EINVAL, "stop: expected a string or a list of at most %d strings",
                        AL_OAI_MAX_STOP);
    for (size_t i = 0; i < json_array_size(v); i++) {
        json_t *s = json_array_get(v, i);
        if (!json_is_string(s) || json_string_length(s) == 0 || ali_dup(s, &r->stop[i]) != AL_OK)
            return ali_errf(AL_EINVAL, "stop[%zu]: expected a non-empty string", i);
        r->n_stop = (int)i + 1;
    }
    return AL_OK;
}

/* Fields shared by both endpoints. */
static al_err ali_common(json_t *root, const al_oai_limits *lim, al_oai_request *r)
{
    int64_t x = 0;
    int has;
    AL_TRY(ali_model(root, r));
    int maxt = lim && lim->max_tokens > 0 ? lim->max_tokens : 1 << 20;
    r->max_tokens = -1;
    AL_TRY(ali_int(root, "max_completion_tokens", 1, maxt, &x, &has));
    if (has) {
        r->max_tokens = (int)x;
    } else {
        AL_TRY(ali_int(root, "max_tokens", 1, maxt, &x, &has));
        if (has)
            r->max_tokens = (int)x;
    }
    r->temperature = 1;
    r->top_p = 1;
    AL_TRY(ali_num(root, "temperature", 0, 2, 0, &r->temperature));
    AL_TRY(ali_num(root, "top_p", 0, 1, 1, &r->top_p));
    AL_TRY(ali_num(root, "presence_penalty", -2, 2, 0, &r->presence_penalty));
    AL_TRY(ali_num(root, "frequency_penalty", -2, 2, 0, &r->frequency_penalty));
    json_t *seed = ali_get(root, "seed");
    if (seed) {
        if (!ali_int_of(seed, -9223372036854775808.0, 9223372036854775807.0, &r->seed) ||
            (json_is_real(seed) && json_real_value(seed) >= 9223372036854775807.0))
            return ali_errf(AL_EINVAL, "seed: expected a 64-bit integer");
        r->has_seed = 1;
    }
    AL_TRY(ali_stop(root, r));
    AL_TRY(ali_oai_parse_gen(root, r));
    json_t *n = ali_get(root, "n");
    if (n && !ali_int_of(n, -1e300, 1e300, &x))
        return ali_errf(AL_EINVAL, "n: expected an integer");
    if (n && x != 1)
        return ali_errf(AL_EUNSUPPORTED, "n: only 1 is supported");
    AL_TRY(ali_bool(root, "stream", &r->stream));
    json_t *so = ali_get(root, "stream_options");
    if (so) {
        if (!json_is_object(so))
            return ali_errf(AL_EINVAL, "stream_options: expected an object");
        if (!r->stream)
            return ali_errf(AL_EINVAL, "stream_options: only allowed when stream is true");
        json_t *iu = ali_get(so, "include_usage");
        if (iu && !json_is_boolean(iu))
            return ali_errf(AL_EINVAL, "stream_options.include_usage: expected true or false");
        r->include_usage = json_is_true(iu);
    }
    return AL_OK;
}

/* Parses the body into a JSON object; huge integer literals are re-read as reals. */
static al_err ali_load(const char *body, size_t len, const al_oai_limits *lim, json_t **root)
{
    size_t maxb = lim && lim->max_body ? lim->max_body : AL_OAI_DEFAULT_MAX_BODY;
    *root = NULL;
    if (len > maxb)
        return ali_errf(AL_ERANGE, "body: %zu bytes exceeds the limit of %zu bytes", len, maxb);
    if (!body || len == 0)
        return ali_errf(AL_EINVAL, "body: empty (expected a JSON object)");
    json_error_t je;
    json_t *j = json_loadb(body, len, JSON_ALLOW_NUL, &je);
    if (!j && strstr(je.text, "too big"))
        j = json_loadb(body, len, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &je);
    if (!j)
        return ali_errf(AL_EINVAL, "body: invalid JSON at line %d column %d: %s", je.line, je.column,
                        je.text);
    if (!json_is_object(j)) {
        json_decref(j);
        return ali_errf(AL_EINVAL, "body: expected a JSON object");
    }
    *root = j;
    return AL_OK;
}

static al_err ali_finish(json_t *root, al_err e, al_oai_request *out)
{
    json_decref(root);
    if (e != AL_OK)
        al_oai_request_free(out);
    return e;
}

al_err al_oai_parse_chat(const char *body, size_t len, const al_oai_limits *lim, al_oai_request *out)
{
    memset(out, 0, sizeof *out);
    out->kind = AL_OAI_CHAT;
    json_t *root;
    AL_TRY(ali_load(body, len, lim, &root));
    al_err e = ali_common(root, lim, out);
    int echo = 0;
    if (e == AL_OK && (e = ali_bool(root, "echo", &echo)) == AL_OK && echo)
        e = ali_errf(AL_EUNSUPPORTED, "echo: only /v1/completions echoes its prompt");
    if (e == AL_OK) {
        json_t *m = ali_get(root, "messages");
        if (!m)
            e = ali_errf(AL_EINVAL, "messages: missing");
    }
    if (e == AL_OK) {
        /* Only messages and documents go to the chat parser (its errors name the field). */
        json_t *sub = json_object();
        json_object_set(sub, "messages", json_object_get(root, "messages"));
        if (ali_get(root, "documents"))
            json_object_set(sub, "documents", json_object_get(root, "documents"));
        char *s = json_dumps(sub, JSON_COMPACT);
        json_decref(sub);
        e = s ? al_chat_parse_json(s, strlen(s), &out->chat) : ali_errf(AL_ENOMEM, "openai: out of memory");
        free(s);
        if (e == AL_EFORMAT && !strncmp(al_errmsg(), "chat: invalid JSON", 18)) /* only \u0000 gets here */
            e = ali_errf(AL_EINVAL, "%s: strings must not contain \\u0000",
                         ali_get(root, "documents") ? "messages/documents" : "messages");
        if (e == AL_EFORMAT)
            e = AL_EINVAL;
    }
    if (e == AL_OK)
        e = ali_oai_parse_tools(root, out);
    if (e == AL_OK) {
        e = ali_bool(root, "logprobs", &out->logprobs);
        int64_t x = 0;
        int has = 0;
        if (e == AL_OK)
            e = ali_int(root, "top_logprobs", 0, AL_OAI_MAX_TOP_LOGPROBS, &x, &has);
        if (e == AL_OK && has) {
            if (!out->logprobs)
                e = ali_errf(AL_EINVAL, "top_logprobs: requires logprobs: true");
            out->top_logprobs = (int)x;
        }
    }
    return ali_finish(root, e, out);
}

static al_err ali_prompt_tokens(json_t *v, const char *field, int maxp, al_oai_request *r)
{
    size_t n = json_array_size(v);
    if (n == 0)
        return ali_errf(AL_EINVAL, "%s: must not be empty", field);
    if (n > (size_t)maxp)
        return ali_errf(AL_ERANGE, "%s: %zu tokens exceeds the limit of %d", field, n, maxp);
    r->prompt_tokens = malloc(n * sizeof *r->prompt_tokens);
    if (!r->prompt_tokens)
        return ali_errf(AL_ENOMEM, "openai: out of memory");
    for (size_t i = 0; i < n; i++) {
        int64_t x;
        if (!ali_int_of(json_array_get(v, i), 0, INT32_MAX, &x))
            return ali_errf(AL_EINVAL, "%s[%zu]: expected a token id in [0, %d]", field, i, INT32_MAX);
        r->prompt_tokens[i] = (int32_t)x;
    }
    r->n_prompt_tokens = (int)n;
    return AL_OK;
}

static al_err ali_prompt(json_t *root, const al_oai_limits *lim, al_oai_request *r)
{
    int maxp = lim && lim->max_prompt_tokens > 0 ? lim->max_prompt_tokens : 1 << 20;
    json_t *v = ali_get(root, "prompt");
    const char *field = "prompt";
    if (!v)
        return ali_errf(AL_EINVAL, "prompt: missing");
    if (json_is_array(v) && json_array_size(v) >= 1 &&
        (json_is_string(json_array_get(v, 0)) || json_is_array(json_array_get(v, 0)))) {
        if (json_array_size(v) > 1)
            return ali_errf(AL_EUNSUPPORTED, "prompt: only one prompt is supported");
        v = json_array_get(v, 0);
        field = "prompt[0]";
    }
    if (json_is_string(v)) {
        if (json_string_length(v) == 0)
            return ali_errf(AL_EINVAL, "%s: must not be empty", field);
        if (ali_dup(v, &r->prompt) != AL_OK)
            return ali_errf(AL_EINVAL, "%s: contains NUL", field);
        return AL_OK;
    }
    if (json_is_array(v))
        return ali_prompt_tokens(v, field, maxp, r);
    return ali_errf(AL_EINVAL, "%s: expected a string or a list of token ids", field);
}

al_err al_oai_parse_completion(const char *body, size_t len, const al_oai_limits *lim, al_oai_request *out)
{
    memset(out, 0, sizeof *out);
    out->kind = AL_OAI_COMPLETION;
    json_t *root;
    AL_TRY(ali_load(body, len, lim, &root));
    al_err e = ali_common(root, lim, out);
    if (e == AL_OK)
        e = ali_prompt(root, lim, out);
    if (e == AL_OK) {
        int64_t x = 0;
        int has;
        e = ali_int(root, "logprobs", 0, AL_OAI_MAX_TOP_LOGPROBS, &x, &has);
        if (e == AL_OK && has) {
            out->logprobs = 1;
            out->top_logprobs = (int)x;
        }
    }
    int echo = 0;
    if (e == AL_OK)
        e = ali_bool(root, "echo", &echo);
    out->echo = echo;
    if (e == AL_OK && ali_get(root, "suffix"))
        e = ali_errf(AL_EUNSUPPORTED, "suffix: not supported");
    json_t *bo = ali_get(root, "best_of");
    int64_t x = 0;
    if (e == AL_OK && bo && (!ali_int_of(bo, 1, 1, &x)))
        e = ali_errf(AL_EUNSUPPORTED, "best_of: only 1 is supported");
    return ali_finish(root, e, out);
}

/* ---------------------------------------------------------------- errors */

int al_oai_http_status(al_err e)
{
    switch (e) {
    case AL_EINVAL:
    case AL_EFORMAT:
    case AL_EUNSUPPORTED:
    case AL_EPROTO:
        return 400;
    case AL_ENOTFOUND:
        return 404;
    case AL_ERANGE:
        return 413;
    case AL_EOVERLOADED:
    case AL_ECAPACITY:
        return 429;
    case AL_EUNAVAILABLE:
    case AL_ECLOSED:
    case AL_ETIMEDOUT:
    case AL_ENODEV:
        return 503;
    default:
        return 500;
    }
}

const char *al_oai_error_code(al_err e)
{
    switch (al_oai_http_status(e)) {
    case 400:
        return "invalid_argument";
    case 404:
        return "not_found";
    case 413:
        return "request_too_large";
    case 429:
        return "overloaded";
    case 503:
        return "unavailable";
    default:
        return "internal";
    }
}

static const char *ali_error_type(al_err e)
{
    switch (al_oai_http_status(e)) {
    case 400:
    case 413:
        return "invalid_request_error";
    case 404:
        return "not_found_error";
    case 429:
        return "rate_limit_error";
    case 503:
        return "service_unavailable_error";
    default:
        return "server_error";
    }
}

/* A JSON string; ill-formed UTF-8 is repaired to U+FFFD. */
static json_t *ali_jstr(const char *s)
{
    size_t n = strlen(s);
    if (al_utf8_check(s, n) == n)
        return json_stringn(s, n);
    char *r;
    size_t rl;
    if (al_utf8_repair(s, n, &r, &rl) != AL_OK)
        return NULL;
    json_t *j = json_stringn(r, rl);
    free(r);
    return j;
}

static al_err ali_error_json(al_err e, const char *message, const char *pre, char **out, size_t *len)
{
    *out = NULL;
    json_t *err = json_object(), *root = json_object();
    json_object_set_new(err, "code", json_string(al_oai_error_code(e)));
    json_object_set_new(err, "message", ali_jstr(message && *message ? message : al_strerror(e)));
    json_object_set_new(err, "type", json_string(ali_error_type(e)));
    json_object_set_new(root, "error", err);
    char *s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (!s)
        return ali_errf(AL_ENOMEM, "openai: out of memory");
    size_t n = strlen(pre) + strlen(s) + (*pre ? 2 : 0);
    char *o = malloc(n + 1);
    if (o)
        snprintf(o, n + 1, "%s%s%s", pre, s, *pre ? "\n\n" : "");
    free(s);
    if (!o)
        return ali_errf(AL_ENOMEM, "openai: out of memory");
    *out = o;
    if (len)
        *len = n;
    return AL_OK;
}

al_err al_oai_error_body(al_err e, const char *message, char **out, size_t *len)
{
    return ali_error_json(e, message, "", out, len);
}

al_err al_oai_sse_error(al_err e, const char *message, char **out, size_t *len)
{
    return ali_error_json(e, message, "data: ", out, len);
}
