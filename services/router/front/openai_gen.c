/* openai_gen.c: OpenAI / vLLM generation extensions of a request: logit_bias, repetition_penalty,
 * min_tokens and structured outputs (response_format, structured_outputs, guided_*). */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/constrain/constrain.h"
#include "services/router/front/openai_int.h"

static json_t *ali_member(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_null(v) ? NULL : v;
}

/* Sets the request's constraint once; a second source is an error naming both fields. */
static al_err ali_set(al_oai_request *r, const char *field, int kind, const char *text, size_t len)
{
    if (r->constraint_kind)
        return ali_errf(AL_EINVAL, "%s: only one structured output may be given (%s is set too)", field,
                        r->constraint_field);
    al_constraint_spec spec = {.kind = (al_constraint_kind)kind, .text = text, .len = len};
    al_err e = al_constraint_check(&spec);
    if (e != AL_OK) /* a bad regex or schema is the client's: 400 naming the field */
        return ali_errctx(AL_EINVAL, "%s", field); /* (not "%s", al_errmsg(): that buffer is the target) */
    if (!(r->constraint = strndup(text ? text : "", len)))
        return ali_errf(AL_ENOMEM, "openai: out of memory");
    r->constraint_kind = kind;
    r->constraint_field = field;
    return AL_OK;
}

/* A JSON schema given as an object (or as a JSON string holding one, as some clients send). */
static al_err ali_schema(al_oai_request *r, const char *field, json_t *v)
{
    json_t *own = NULL;
    if (json_is_string(v)) {
        json_error_t je;
        own = json_loadb(json_string_value(v), json_string_length(v), JSON_DECODE_ANY, &je);
        if (!own)
            return ali_errf(AL_EINVAL, "%s: not valid JSON: %s", field, je.text);
        v = own;
    }
    if (!json_is_object(v) && !json_is_boolean(v)) {
        json_decref(own);
        return ali_errf(AL_EINVAL, "%s: expected a JSON schema object", field);
    }
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(own);
    if (!s)
        return ali_errf(AL_ENOMEM, "openai: out of memory");
    al_err e = ali_set(r, field, AL_CONSTRAINT_JSON_SCHEMA, s, strlen(s));
    free(s);
    return e;
}

static al_err ali_choice(al_oai_request *r, const char *field, json_t *v)
{
    if (!json_is_array(v) || json_array_size(v) == 0)
        return ali_errf(AL_EINVAL, "%s: expected a non-empty list of strings", field);
    for (size_t i = 0; i < json_array_size(v); i++)
        if (!json_is_string(json_array_get(v, i)))
            return ali_errf(AL_EINVAL, "%s[%zu]: expected a string", field, i);
    char *s = json_dumps(v, JSON_COMPACT);
    if (!s)
        return ali_errf(AL_ENOMEM, "openai: out of memory");
    al_err e = ali_set(r, field, AL_CONSTRAINT_CHOICE, s, strlen(s));
    free(s);
    return e;
}

static al_err ali_regex(al_oai_request *r, const char *field, json_t *v)
{
    if (!json_is_string(v) || json_string_length(v) == 0)
        return ali_errf(AL_EINVAL, "%s: expected a non-empty regular expression string", field);
    return ali_set(r, field, AL_CONSTRAINT_REGEX, json_string_value(v), json_string_length(v));
}

/* OpenAI response_format: {"type": "text" | "json_object" | "json_schema", "json_schema":
 * {"name", "schema", "strict", "description"}}. */
static al_err ali_response_format(json_t *root, al_oai_request *r)
{
    json_t *rf = ali_member(root, "response_format");
    if (!rf)
        return AL_OK;
    if (!json_is_object(rf))
        return ali_errf(AL_EINVAL, "response_format: expected an object");
    const char *t = json_string_value(ali_member(rf, "type"));
    if (!t)
        return ali_errf(AL_EINVAL, "response_format.type: expected \"text\", \"json_object\" or \"json_schema\"");
    if (!strcmp(t, "text"))
        return AL_OK;
    if (!strcmp(t, "json_object"))
        return ali_set(r, "response_format", AL_CONSTRAINT_JSON_OBJECT, "", 0);
    if (strcmp(t, "json_schema"))
        return ali_errf(AL_EINVAL, "response_format.type: '%s' is not \"text\", \"json_object\" or \"json_schema\"", t);
    json_t *js = ali_member(rf, "json_schema");
    if (!json_is_object(js))
        return ali_errf(AL_EINVAL, "response_format.json_schema: expected an object with a schema");
    json_t *name = ali_member(js, "name"), *strict = ali_member(js, "strict");
    if (name && (!json_is_string(name) || json_string_length(name) > 64))
        return ali_errf(AL_EINVAL, "response_format.json_schema.name: expected a string of at most 64 characters");
    if (strict && !json_is_boolean(strict))
        return ali_errf(AL_EINVAL, "response_format.json_schema.strict: expected true or false");
    json_t *schema = ali_member(js, "schema");
    if (!schema) /* OpenAI: no schema = any JSON object */
        return ali_set(r, "response_format.json_schema", AL_CONSTRAINT_JSON_OBJECT, "", 0);
    return ali_schema(r, "response_format.json_schema.schema", schema);
}

/* vLLM structured_outputs: exactly one of json, choice, regex, json_object (grammar and
 * structural_tag are not supported). */
static al_err ali_structured_outputs(json_t *root, al_oai_request *r)
{
    json_t *so = ali_member(root, "structured_outputs");
    if (!so)
        return AL_OK;
    if (!json_is_object(so))
        return ali_errf(AL_EINVAL, "structured_outputs: expected an object");
    static const char *const unsupported[] = {"grammar", "structural_tag"};
    for (size_t i = 0; i < sizeof unsupported / sizeof *unsupported; i++)
        if (ali_member(so, unsupported[i]))
            return ali_errf(AL_EUNSUPPORTED, "structured_outputs.%s: not supported (use json, choice, regex or "
                                             "json_object)", unsupported[i]);
    json_t *v;
    if ((v = ali_member(so, "json")))
        AL_TRY(ali_schema(r, "structured_outputs.json", v));
    if ((v = ali_member(so, "choice")))
        AL_TRY(ali_choice(r, "structured_outputs.choice", v));
    if ((v = ali_member(so, "regex")))
        AL_TRY(ali_regex(r, "structured_outputs.regex", v));
    if ((v = ali_member(so, "json_object"))) {
        if (!json_is_boolean(v))
            return ali_errf(AL_EINVAL, "structured_outputs.json_object: expected true or false");
        if (json_is_true(v))
            AL_TRY(ali_set(r, "structured_outputs.json_object", AL_CONSTRAINT_JSON_OBJECT, "", 0));
    }
    return AL_OK;
}

/* vLLM's older guided_json / guided_choice / guided_regex (guided_grammar is not supported). */
static al_err ali_guided(json_t *root, al_oai_request *r)
{
    json_t *v;
    if (ali_member(root, "guided_grammar"))
        return ali_errf(AL_EUNSUPPORTED, "guided_grammar: not supported (use guided_json, guided_choice or "
                                         "guided_regex)");
    if ((v = ali_member(root, "guided_json")))
        AL_TRY(ali_schema(r, "guided_json", v));
    if ((v = ali_member(root, "guided_choice")))
        AL_TRY(ali_choice(r, "guided_choice", v));
    if ((v = ali_member(root, "guided_regex")))
        AL_TRY(ali_regex(r, "guided_regex", v));
    return AL_OK;
}

/* OpenAI logit_bias: {"<token id>": bias in [-100, 100]} (the vocabulary range is the router's). */
static al_err ali_logit_bias(json_t *root, al_oai_request *r)
{
    json_t *lb = ali_member(root, "logit_bias");
    if (!lb)
        return AL_OK;
    if (!json_is_object(lb))
        return ali_errf(AL_EINVAL, "logit_bias: expected an object of token id -> bias");
    size_t n = json_object_size(lb);
    if (n > AL_OAI_MAX_LOGIT_BIAS)
        return ali_errf(AL_EINVAL, "logit_bias: %zu entries > max %d", n, AL_OAI_MAX_LOGIT_BIAS);
    if (!n)
        return AL_OK;
    r->bias_ids = malloc(n * sizeof *r->bias_ids);
    r->bias_vals = malloc(n * sizeof *r->bias_vals);
    if (!r->bias_ids || !r->bias_vals)
        return ali_errf(AL_ENOMEM, "openai: out of memory");
    const char *key;
    json_t *v;
    json_object_foreach(lb, key, v)
    {
        char *end;
        long id = strtol(key, &end, 10);
        if (!*key || *end || id < 0 || id > INT32_MAX)
            return ali_errf(AL_EINVAL, "logit_bias: key '%.32s' is not a token id", key);
        double b = json_is_number(v) ? json_number_value(v) : NAN;
        if (!(b >= -100 && b <= 100))
            return ali_errf(AL_EINVAL, "logit_bias[\"%s\"]: expected a number in [-100, 100]", key);
        r->bias_ids[r->n_bias] = (int32_t)id;
        r->bias_vals[r->n_bias++] = (float)b;
    }
    return AL_OK;
}

/* Standard fields this server cannot honour: a 400 naming each (unknown fields are ignored, as
 * OpenAI does; accepted no-ops: user, store, metadata, service_tier, reasoning_effort); and the
 * chat template's arguments (chat_template_kwargs) into r. */
static al_err ali_refused(json_t *root, al_oai_request *r)
{
    static const struct {
        const char *field, *why;
    } refused[] = {
        {"audio", "audio output is not supported"},
        {"prediction", "predicted outputs are not supported"},
        {"functions", "deprecated: use tools"},
        {"function_call", "deprecated: use tool_choice"},
        {"web_search_options", "web search is not supported"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++)
        if (ali_member(root, refused[i].field))
            return ali_errf(AL_EUNSUPPORTED, "%s: %s", refused[i].field, refused[i].why);
    json_t *mod = ali_member(root, "modalities");
    if (mod) {
        bool ok = json_is_array(mod);
        for (size_t i = 0; ok && i < json_array_size(mod); i++)
            ok = json_is_string(json_array_get(mod, i)) && !strcmp(json_string_value(json_array_get(mod, i)), "text");
        if (!ok)
            return ali_errf(AL_EUNSUPPORTED, "modalities: only [\"text\"] is supported");
    }
    json_t *ctk = ali_member(root, "chat_template_kwargs");
    if (ctk && !json_is_object(ctk))
        return ali_errf(AL_EINVAL, "chat_template_kwargs: expected an object");
    /* Granite 3.3's: thinking, controls (other keys and templates: ignored, as a template ignores
     * variables it does not use) */
    json_t *th = ali_member(ctk, "thinking"), *ctl = ali_member(ctk, "controls");
    if (th && !json_is_boolean(th))
        return ali_errf(AL_EINVAL, "chat_template_kwargs.thinking: expected true or false");
    r->thinking = json_is_true(th);
    if (ctl && !json_is_object(ctl))
        return ali_errf(AL_EINVAL, "chat_template_kwargs.controls: expected an object");
    if (ctl && !(r->controls = json_dumps(ctl, JSON_COMPACT)))
        return ali_errf(AL_ENOMEM, "openai: out of memory");
    return AL_OK;
}

al_err ali_oai_parse_gen(json_t *root, al_oai_request *r)
{
    AL_TRY(ali_refused(root, r));
    r->repetition_penalty = 1;
    json_t *rp = ali_member(root, "repetition_penalty");
    if (rp) {
        double d = json_is_number(rp) ? json_number_value(rp) : NAN;
        if (!(d > 0 && d <= 100))
            return ali_errf(AL_EINVAL, "repetition_penalty: expected a number in (0, 100]");
        r->repetition_penalty = d;
    }
    json_t *mt = ali_member(root, "min_tokens");
    if (mt) {
        double d = json_is_number(mt) ? json_number_value(mt) : NAN;
        if (!(d >= 0 && d <= (1 << 20)) || d != floor(d))
            return ali_errf(AL_EINVAL, "min_tokens: expected an integer >= 0");
        r->min_tokens = (int)d;
    }
    json_t *sst = ali_member(root, "skip_special_tokens");
    if (sst && !json_is_boolean(sst))
        return ali_errf(AL_EINVAL, "skip_special_tokens: expected true or false");
    r->keep_special = json_is_false(sst);
    json_t *rti = ali_member(root, "return_tokens_as_token_ids");
    if (rti && !json_is_boolean(rti))
        return ali_errf(AL_EINVAL, "return_tokens_as_token_ids: expected true or false");
    r->tokens_as_ids = json_is_true(rti);
    AL_TRY(ali_logit_bias(root, r));
    AL_TRY(ali_response_format(root, r));
    AL_TRY(ali_structured_outputs(root, r));
    return ali_guided(root, r);
}
