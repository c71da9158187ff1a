/* tools.c: OpenAI tools / tool_choice: validation, the forced-call schema, calls in an output. */
#include "services/router/front/tools.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/constrain/constrain.h"
#include "services/router/front/openai_int.h"

#define ALI_EMPTY_PARAMS "{\"type\":\"object\",\"properties\":{}}"

static json_t *ali_member(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_null(v) ? NULL : v;
}

void ali_oai_tools_free(al_oai_tools *t)
{
    for (int i = 0; i < t->n; i++) {
        free((char *)t->defs[i].name);
        free((char *)t->defs[i].json);
        free(t->params[i]);
    }
    free(t->defs);
    free(t->params);
    memset(t, 0, sizeof *t);
}

static int ali_name_ok(const char *s, size_t n)
{
    if (n < 1 || n > 64 || strlen(s) != n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
              c == '-'))
            return 0;
    }
    return 1;
}

static al_err ali_oom(void)
{
    return ali_errf(AL_ENOMEM, "openai: out of memory");
}

/* tools[i]: {"type": "function", "function": {"name", "description"?, "parameters"?, "strict"?}}. */
static al_err ali_tool(json_t *v, size_t i, al_oai_tools *t)
{
    if (!json_is_object(v))
        return ali_errf(AL_EINVAL,
                        "tools[%zu]: expected an object {\"type\": \"function\", \"function\": {...}}", i);
    json_t *type = ali_member(v, "type"), *fn = ali_member(v, "function");
    if (!json_is_string(type) || strcmp(json_string_value(type), "function"))
        return ali_errf(AL_EINVAL, "tools[%zu].type: expected \"function\" (the only tool type supported)",
                        i);
    if (!json_is_object(fn))
        return ali_errf(AL_EINVAL, "tools[%zu].function: expected an object", i);
    json_t *name = ali_member(fn, "name"), *desc = ali_member(fn, "description");
    json_t *params = ali_member(fn, "parameters"), *strict = ali_member(fn, "strict");
    if (!json_is_string(name) || !ali_name_ok(json_string_value(name), json_string_length(name)))
        return ali_errf(AL_EINVAL,
                        "tools[%zu].function.name: expected 1 to 64 characters of a-z, A-Z, 0-9, _ "
                        "and -",
                        i);
    for (int k = 0; k < t->n; k++)
        if (!strcmp(t->defs[k].name, json_string_value(name)))
            return ali_errf(AL_EINVAL, "tools[%zu].function.name: '%s' is defined twice", i,
                            json_string_value(name));
    if (desc && !json_is_string(desc))
        return ali_errf(AL_EINVAL, "tools[%zu].function.description: expected a string", i);
    if (strict && !json_is_boolean(strict))
        return ali_errf(AL_EINVAL, "tools[%zu].function.strict: expected true or false", i);
    char *ptext = NULL;
    if (params) {
        json_t *pt = ali_member(params, "type");
        if (!json_is_object(params))
            return ali_errf(AL_EINVAL, "tools[%zu].function.parameters: expected a JSON schema object", i);
        if (pt && (!json_is_string(pt) || strcmp(json_string_value(pt), "object")))
            return ali_errf(AL_EINVAL,
                            "tools[%zu].function.parameters: expected an object schema (\"type\": "
                            "\"object\")",
                            i);
        if (!(ptext = json_dumps(params, JSON_COMPACT | JSON_REAL_PRECISION(17))))
            return ali_oom();
        al_constraint_spec spec = {.kind = AL_CONSTRAINT_JSON_SCHEMA, .text = ptext, .len = strlen(ptext)};
        if (al_constraint_check(&spec) != AL_OK) {
            free(ptext);
            return ali_errctx(AL_EINVAL, "tools[%zu].function.parameters", i);
        }
    } else if (!(ptext = strdup(ALI_EMPTY_PARAMS))) {
        return ali_oom();
    }
    char *nm = strdup(json_string_value(name)), *js = json_dumps(v, JSON_COMPACT | JSON_REAL_PRECISION(17));
    if (!nm || !js) {
        free(nm);
        free(js);
        free(ptext);
        return ali_oom();
    }
    t->defs[t->n] = (al_chat_tool){.name = nm, .json = js};
    t->params[t->n++] = ptext;
    return AL_OK;
}

static al_err ali_tool_choice(json_t *tc, al_oai_tools *t)
{
    static const char usage[] = "tool_choice: expected \"none\", \"auto\", \"required\" or {\"type\": "
                                "\"function\", \"function\": {\"name\": ..}}";
    if (json_is_string(tc)) {
        const char *s = json_string_value(tc);
        if (!strcmp(s, "none"))
            t->choice = AL_OAI_TOOLS_NONE;
        else if (!strcmp(s, "auto"))
            t->choice = t->n ? AL_OAI_TOOLS_AUTO : AL_OAI_TOOLS_NONE;
        else if (!strcmp(s, "required"))
            t->choice = AL_OAI_TOOLS_REQUIRED;
        else
            return ali_errf(AL_EINVAL, "%s", usage);
        if (t->choice == AL_OAI_TOOLS_REQUIRED && !t->n)
            return ali_errf(AL_EINVAL, "tool_choice: \"required\" needs tools");
        return AL_OK;
    }
    if (!json_is_object(tc))
        return ali_errf(AL_EINVAL, "%s", usage);
    json_t *type = ali_member(tc, "type"), *fn = ali_member(tc, "function");
    if (!json_is_string(type) || strcmp(json_string_value(type), "function"))
        return ali_errf(AL_EINVAL, "tool_choice.type: expected \"function\"");
    const char *name = json_string_value(ali_member(fn, "name"));
    if (!json_is_object(fn) || !name)
        return ali_errf(AL_EINVAL, "tool_choice.function.name: expected a string");
    for (int k = 0; k < t->n; k++)
        if (!strcmp(t->defs[k].name, name)) {
            t->choice = AL_OAI_TOOLS_NAMED;
            t->named = k;
            return AL_OK;
        }
    return ali_errf(AL_EINVAL, "tool_choice.function.name: unknown function '%.64s' (not in tools)", name);
}

al_err ali_oai_parse_tools(json_t *root, al_oai_request *r)
{
    al_oai_tools *t = &r->tools;
    t->parallel = 1;
    json_t *tools = ali_member(root, "tools");
    if (tools) {
        if (!json_is_array(tools))
            return ali_errf(AL_EINVAL,
                            "tools: expected a list of {\"type\": \"function\", \"function\": {...}}");
        size_t n = json_array_size(tools);
        if (n > AL_OAI_MAX_TOOLS)
            return ali_errf(AL_EINVAL, "tools: %zu tools exceed the limit of %d", n, AL_OAI_MAX_TOOLS);
        if (n) {
            t->defs = calloc(n, sizeof *t->defs);
            t->params = calloc(n, sizeof *t->params);
            if (!t->defs || !t->params)
                return ali_oom();
        }
        for (size_t i = 0; i < n; i++)
            AL_TRY(ali_tool(json_array_get(tools, i), i, t));
    }
    t->choice = t->n ? AL_OAI_TOOLS_AUTO : AL_OAI_TOOLS_NONE;
    json_t *tc = ali_member(root, "tool_choice");
    if (tc)
        AL_TRY(ali_tool_choice(tc, t));
    json_t *ptc = ali_member(root, "parallel_tool_calls");
    if (ptc && !json_is_boolean(ptc))
        return ali_errf(AL_EINVAL, "parallel_tool_calls: expected true or false");
    if (ptc)
        t->parallel = json_is_true(ptc);
    return AL_OK;
}

int al_oai_tools_active(const al_oai_request *r)
{
    return r->kind == AL_OAI_CHAT && r->tools.n > 0 && r->tools.choice != AL_OAI_TOOLS_NONE;
}

int al_oai_tools_forced(const al_oai_request *r)
{
    return al_oai_tools_active(r) &&
           (r->tools.choice == AL_OAI_TOOLS_REQUIRED || r->tools.choice == AL_OAI_TOOLS_NAMED);
}

/* Local "$ref": "#..." of a schema that moves to the JSON pointer base: "#" + base + "...". The
 * values of enum / const / default / examples are data, not schemas. */
static int ali_rebase(json_t *v, const char *base)
{
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++)
            if (!ali_rebase(json_array_get(v, i), base))
                return 0;
        return 1;
    }
    if (!json_is_object(v))
        return 1;
    const char *k;
    json_t *x;
    json_object_foreach(v, k, x)
    {
        if (!strcmp(k, "$ref") && json_is_string(x) && json_string_value(x)[0] == '#') {
            const char *ref = json_string_value(x);
            size_t n = strlen(base) + strlen(ref) + 1;
            char *s = malloc(n);
            if (!s)
                return 0;
            snprintf(s, n, "#%s%s", base, ref + 1);
            int ok = json_string_set(x, s) == 0;
            free(s);
            if (!ok)
                return 0;
        } else if (strcmp(k, "enum") && strcmp(k, "const") && strcmp(k, "default") && strcmp(k, "examples")) {
            if (!ali_rebase(x, base))
                return 0;
        }
    }
    return 1;
}

/* {"type":"object","properties":{"name":{"const":NAME},ARGKEY:PARAMS},"required":[..],
 * "additionalProperties":false}, the call object at JSON pointer at. */
static json_t *ali_call_schema(const al_oai_tools *t, int i, const char *argkey, const char *at)
{
    json_t *params = json_loads(t->params[i], 0, NULL);
    char base[160];
    snprintf(base, sizeof base, "%s/properties/%s", at, argkey);
    if (!params || !ali_rebase(params, base)) {
        json_decref(params);
        return NULL;
    }
    return json_pack("{s:s,s:{s:{s:s},s:o},s:[s,s],s:b}", "type", "object", "properties", "name", "const",
                     t->defs[i].name, argkey, params, "required", "name", argkey, "additionalProperties", 0);
}

al_err al_oai_tools_constraint(al_oai_request *r, al_chat_format f)
{
    if (!al_oai_tools_forced(r))
        return AL_OK;
    const al_oai_tools *t = &r->tools;
    if (r->constraint_kind)
        return ali_errf(AL_EINVAL,
                        "tool_choice: a forced tool call cannot be combined with a structured output "
                        "(%s is set)",
                        r->constraint_field);
    const char *argkey = f == AL_CHAT_LLAMA3 ? "parameters" : "arguments";
    int list = f == AL_CHAT_GRANITE || f == AL_CHAT_RAW;
    const char *at = list ? "/items" : "";
    json_t *one = NULL;
    if (t->choice == AL_OAI_TOOLS_NAMED || t->n == 1) {
        one = ali_call_schema(t, t->choice == AL_OAI_TOOLS_NAMED ? t->named : 0, argkey, at);
    } else {
        json_t *any = json_array();
        for (int i = 0; any && i < t->n; i++) {
            char path[64];
            snprintf(path, sizeof path, "%s/anyOf/%d", at, i);
            json_t *c = ali_call_schema(t, i, argkey, path);
            if (!c || json_array_append_new(any, c)) {
                json_decref(any);
                any = NULL;
            }
        }
        one = any ? json_pack("{s:o}", "anyOf", any) : NULL;
    }
    json_t *schema = one;
    if (one && list) {
        schema = json_pack("{s:s,s:o,s:i}", "type", "array", "items", one, "minItems", 1);
        if (schema && (t->choice == AL_OAI_TOOLS_NAMED || !t->parallel))
            json_object_set_new(schema, "maxItems", json_integer(1));
    }
    char *s = schema ? json_dumps(schema, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
    json_decref(schema);
    if (!s)
        return ali_oom();
    al_constraint_spec spec = {.kind = AL_CONSTRAINT_JSON_SCHEMA, .text = s, .len = strlen(s)};
    if (al_constraint_check(&spec) != AL_OK) {
        free(s);
        return ali_errctx(AL_EINVAL, "tools: the schema of the tool calls");
    }
    free(r->constraint);
    r->constraint = s;
    r->constraint_kind = AL_CONSTRAINT_JSON_SCHEMA;
    r->constraint_field = "tool_choice";
    return AL_OK;
}

void al_oai_tool_call_id(char *buf, size_t cap)
{
    al_oai_make_id("call", buf, cap);
    if (cap > 5 && buf[4] == '-')
        buf[4] = '_';
}

al_err al_oai_tools_parse_output(const al_oai_request *r, al_chat_format f, const char *text,
                                 al_chat_parsed *out)
{
    memset(out, 0, sizeof *out);
    const al_oai_tools *t = &r->tools;
    const char *pre = al_oai_tools_forced(r) ? al_chat_tool_call_prefix(f) : "";
    size_t pl = strlen(pre), tl = strlen(text ? text : "");
    char *all = malloc(pl + tl + 1);
    if (!all)
        return ali_oom();
    memcpy(all, pre, pl);
    memcpy(all + pl, text ? text : "", tl + 1);
    al_err e = al_chat_parse_tool_calls(f, all, t->defs, t->n, out);
    free(all);
    if (e != AL_OK)
        return e;
    if (t->choice == AL_OAI_TOOLS_NAMED) /* only the named function may be called */
        for (int i = 0; i < out->n_calls; i++)
            if (strcmp(out->calls[i].name, t->defs[t->named].name)) {
                al_chat_parsed_free(out);
                break;
            }
    if (!out->n_calls) {
        free(out->content);
        if (!(out->content = strdup(text ? text : ""))) {
            al_chat_parsed_free(out);
            return ali_oom();
        }
        return AL_OK;
    }
    for (int i = t->parallel ? out->n_calls : 1; i < out->n_calls; i++) {
        free((char *)out->calls[i].name);
        free((char *)out->calls[i].arguments);
    }
    if (!t->parallel)
        out->n_calls = 1;
    for (int i = 0; i < out->n_calls; i++) {
        char id[40];
        al_oai_tool_call_id(id, sizeof id);
        if (!(out->calls[i].id = strdup(id))) {
            al_chat_parsed_free(out);
            return ali_oom();
        }
    }
    return AL_OK;
}
