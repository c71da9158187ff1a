/* openai_resp.c: OpenAI-compatible response bodies, SSE chunks, the models list and response ids. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "common/utf8.h"
#include "services/router/front/openai.h"

#define ALI_DUMP_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(9))

static json_t *ali_jstr(const char *s)
{
    if (!s)
        return json_null();
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

static json_t *ali_bytes(const char *s)
{
    json_t *a = json_array();
    for (const unsigned char *p = (const unsigned char *)s; a && *p; p++)
        json_array_append_new(a, json_integer(*p));
    return a;
}

/* chat: {"content":[{"token","logprob","bytes","top_logprobs":[...]}]} */
static json_t *ali_chat_logprobs(const al_oai_token_logprob *lp, int n)
{
    json_t *content = json_array();
    for (int i = 0; i < n; i++) {
        json_t *e = json_object(), *top = json_array();
        json_object_set_new(e, "token", ali_jstr(lp[i].token ? lp[i].token : ""));
        json_object_set_new(e, "logprob", json_real(lp[i].logprob));
        json_object_set_new(e, "bytes", ali_bytes(lp[i].token ? lp[i].token : ""));
        for (int k = 0; k < lp[i].n_top; k++) {
            const al_oai_top *t = &lp[i].top[k];
            json_t *te = json_object();
            json_object_set_new(te, "token", ali_jstr(t->token ? t->token : ""));
            json_object_set_new(te, "logprob", json_real(t->logprob));
            json_object_set_new(te, "bytes", ali_bytes(t->token ? t->token : ""));
            json_array_append_new(top, te);
        }
        json_object_set_new(e, "top_logprobs", top);
        json_array_append_new(content, e);
    }
    json_t *o = json_object();
    json_object_set_new(o, "content", content);
    return o;
}

/* completions: {"tokens","token_logprobs","top_logprobs":[{tok: lp}],"text_offset"} */
static json_t *ali_text_logprobs(const al_oai_token_logprob *lp, int n)
{
    json_t *toks = json_array(), *lps = json_array(), *tops = json_array(), *offs = json_array();
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        const char *t = lp[i].token ? lp[i].token : "";
        json_array_append_new(toks, ali_jstr(t));
        json_array_append_new(lps, lp[i].no_context ? json_null() : json_real(lp[i].logprob));
        if (lp[i].no_context) {
            json_array_append_new(tops, json_null());
            json_array_append_new(offs, json_integer((json_int_t)off));
            off += strlen(t);
            continue;
        }
        json_t *m = json_object();
        for (int k = 0; k < lp[i].n_top; k++) {
            json_t *key = ali_jstr(lp[i].top[k].token ? lp[i].top[k].token : "");
            if (key && !json_object_get(m, json_string_value(key)))
                json_object_set_new(m, json_string_value(key), json_real(lp[i].top[k].logprob));
            json_decref(key);
        }
        json_array_append_new(tops, m);
        json_array_append_new(offs, json_integer((json_int_t)off));
        off += strlen(t);
    }
    json_t *o = json_object();
    json_object_set_new(o, "tokens", toks);
    json_object_set_new(o, "token_logprobs", lps);
    json_object_set_new(o, "top_logprobs", tops);
    json_object_set_new(o, "text_offset", offs);
    return o;
}

static json_t *ali_logprobs(al_oai_kind k, int has, const al_oai_token_logprob *lp, int n)
{
    if (!has)
        return json_null();
    return k == AL_OAI_CHAT ? ali_chat_logprobs(lp, n) : ali_text_logprobs(lp, n);
}

static json_t *ali_usage(const al_oai_usage *u)
{
    json_t *o = json_object(), *d = json_object();
    json_object_set_new(o, "prompt_tokens", json_integer(u->prompt_tokens));
    json_object_set_new(o, "completion_tokens", json_integer(u->completion_tokens));
    json_object_set_new(o, "total_tokens", json_integer((json_int_t)u->prompt_tokens + u->completion_tokens));
    json_object_set_new(d, "cached_tokens", json_integer(u->cached_tokens));
    json_object_set_new(o, "prompt_tokens_details", d);
    return o;
}

/* [{"index"?,"id","type":"function","function":{"name","arguments"}}] */
static json_t *ali_tool_calls(const al_chat_tool_call *tc, int n, int with_index)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++) {
        json_t *c = json_object(), *fn = json_object();
        if (with_index)
            json_object_set_new(c, "index", json_integer(i));
        json_object_set_new(c, "id", ali_jstr(tc[i].id ? tc[i].id : ""));
        json_object_set_new(c, "type", json_string("function"));
        json_object_set_new(fn, "name", ali_jstr(tc[i].name ? tc[i].name : ""));
        json_object_set_new(fn, "arguments", ali_jstr(tc[i].arguments ? tc[i].arguments : "{}"));
        json_object_set_new(c, "function", fn);
        json_array_append_new(a, c);
    }
    return a;
}

static json_t *ali_head(const char *id, const char *object, int64_t created, const char *model)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", ali_jstr(id ? id : ""));
    json_object_set_new(o, "object", json_string(object));
    json_object_set_new(o, "created", json_integer(created));
    json_object_set_new(o, "model", ali_jstr(model ? model : ""));
    return o;
}

/* Dumps o (consumed) between pre and post. */
static al_err ali_dump(json_t *o, const char *pre, const char *post, char **out, size_t *len)
{
    *out = NULL;
    char *s = o ? json_dumps(o, ALI_DUMP_FLAGS) : NULL;
    json_decref(o);
    if (!s)
        return ali_errf(AL_ENOMEM, "openai: out of memory");
    size_t n = strlen(pre) + strlen(s) + strlen(post);
    char *r = malloc(n + 1);
    if (r)
        snprintf(r, n + 1, "%s%s%s", pre, s, post);
    free(s);
    if (!r)
        return ali_errf(AL_ENOMEM, "openai: out of memory");
    *out = r;
    if (len)
        *len = n;
    return AL_OK;
}

al_err al_oai_response_json(const al_oai_response *r, char **out, size_t *len)
{
    int chat = r->kind == AL_OAI_CHAT;
    json_t *o = ali_head(r->id, chat ? "chat.completion" : "text_completion", r->created, r->model);
    json_t *choice = json_object(), *choices = json_array();
    json_object_set_new(choice, "index", json_integer(0));
    if (chat) {
        json_t *msg = json_object();
        json_object_set_new(msg, "role", json_string("assistant"));
        if (r->n_tool_calls > 0) {
            json_object_set_new(msg, "content", r->text && *r->text ? ali_jstr(r->text) : json_null());
            json_object_set_new(msg, "tool_calls", ali_tool_calls(r->tool_calls, r->n_tool_calls, 0));
        } else {
            json_object_set_new(msg, "content", ali_jstr(r->text ? r->text : ""));
        }
        json_object_set_new(choice, "message", msg);
    } else {
        json_object_set_new(choice, "text", ali_jstr(r->text ? r->text : ""));
    }
    json_object_set_new(choice, "logprobs",
                        ali_logprobs(r->kind, r->has_logprobs, r->logprobs, r->n_logprobs));
    json_object_set_new(choice, "finish_reason", ali_jstr(r->finish_reason));
    json_array_append_new(choices, choice);
    json_object_set_new(o, "choices", choices);
    json_object_set_new(o, "usage", ali_usage(&r->usage));
    if (json_is_object(r->extra))
        json_object_update(o, r->extra);
    return ali_dump(o, "", "", out, len);
}

al_err al_oai_sse_chunk(const al_oai_chunk *c, char **out, size_t *len)
{
    int chat = c->kind == AL_OAI_CHAT;
    json_t *o = ali_head(c->id, chat ? "chat.completion.chunk" : "text_completion", c->created, c->model);
    json_t *choices = json_array();
    if (!c->usage) {
        json_t *choice = json_object();
        json_object_set_new(choice, "index", json_integer(0));
        if (chat) {
            json_t *delta = json_object();
            if (c->role)
                json_object_set_new(delta, "role", json_string("assistant"));
            if (c->text)
                json_object_set_new(delta, "content", ali_jstr(c->text));
            if (c->n_tool_calls > 0)
                json_object_set_new(delta, "tool_calls", ali_tool_calls(c->tool_calls, c->n_tool_calls, 1));
            json_object_set_new(choice, "delta", delta);
        } else {
            json_object_set_new(choice, "text", ali_jstr(c->text ? c->text : ""));
        }
        json_object_set_new(choice, "logprobs",
                            ali_logprobs(c->kind, c->has_logprobs, c->logprobs, c->n_logprobs));
        json_object_set_new(choice, "finish_reason", ali_jstr(c->finish_reason));
        json_array_append_new(choices, choice);
    }
    json_object_set_new(o, "choices", choices);
    if (c->usage)
        json_object_set_new(o, "usage", ali_usage(c->usage));
    return ali_dump(o, "data: ", "\n\n", out, len);
}

const char *al_oai_sse_done(void)
{
    return "data: [DONE]\n\n";
}

al_err al_oai_models_json(const char *const *ids, int n, int64_t created, const char *owned_by, char **out,
                          size_t *len)
{
    json_t *o = json_object(), *data = json_array();
    json_object_set_new(o, "object", json_string("list"));
    for (int i = 0; i < n; i++) {
        json_t *m = json_object();
        json_object_set_new(m, "id", ali_jstr(ids[i]));
        json_object_set_new(m, "object", json_string("model"));
        json_object_set_new(m, "created", json_integer(created));
        json_object_set_new(m, "owned_by", ali_jstr(owned_by ? owned_by : "alora"));
        json_array_append_new(data, m);
    }
    json_object_set_new(o, "data", data);
    return ali_dump(o, "", "", out, len);
}

void al_oai_make_id(const char *prefix, char *buf, size_t cap)
{
    static atomic_uint_fast64_t counter;
    unsigned char r[12];
    if (getrandom(r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r) {
        uint64_t x =
            (uint64_t)time(NULL) ^ ((uint64_t)atomic_fetch_add(&counter, 1) << 32) ^ (uint64_t)clock();
        for (size_t i = 0; i < sizeof r; i++, x = x * 6364136223846793005ull + 1442695040888963407ull)
            r[i] = (unsigned char)(x >> 56);
    }
    char hex[2 * sizeof r + 1];
    for (size_t i = 0; i < sizeof r; i++)
        snprintf(hex + 2 * i, 3, "%02x", r[i]);
    snprintf(buf, cap, "%s-%s", prefix ? prefix : "cmpl", hex);
}
