/* chat_tools.c: tool calling: tools, calls and results in the templates; calls parsed from model output. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common/text/chat.h"
#include "common/text/chat_int.h"

/* ---------------------------------------------------------------- tools in the templates */

/* JSON text, any value; huge integers are read as reals. NULL when it is not JSON. */
static json_t *ali_json_load(const char *s, size_t n)
{
    json_error_t je;
    json_t *j = json_loadb(s, n, JSON_DECODE_ANY, &je);
    if (!j && strstr(je.text, "too big"))
        j = json_loadb(s, n, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, &je);
    return j;
}

/* The tool definitions as one JSON list (NULL for none: the template leaves the section out). */
json_t *ali_tools_list(const al_chat_opts *o)
{
    if (!o || o->n_tools <= 0 || !o->tools)
        return NULL;
    json_t *a = json_array();
    for (int i = 0; a && i < o->n_tools; i++) {
        json_t *t = o->tools[i].json ? ali_json_load(o->tools[i].json, strlen(o->tools[i].json)) : NULL;
        json_array_append_new(a, t ? t
                                   : json_pack("{s:s,s:{s:s}}", "type", "function", "function", "name",
                                               o->tools[i].name ? o->tools[i].name : ""));
    }
    return a;
}

/* A call's arguments, parsed (rendered as JSON); text that is not JSON is rendered as a string. */
static void ali_pj_args(ali_cb *b, const char *args, int compact)
{
    json_t *j = args ? ali_json_load(args, strlen(args)) : json_object();
    if (j)
        ali_pj(b, j, 0, compact, 0);
    else
        ali_pj_str(b, args, strlen(args));
    json_decref(j);
}

/* [{"name": .., "arguments": ..}, ...] (granite, raw). */
static void ali_calls_list(ali_cb *b, const al_chat_msg *m)
{
    ali_cb_str(b, "[");
    for (int k = 0; k < m->n_tool_calls; k++) {
        ali_cb_str(b, k ? ", {\"name\": " : "{\"name\": ");
        const char *nm = m->tool_calls[k].name ? m->tool_calls[k].name : "";
        ali_pj_str(b, nm, strlen(nm));
        ali_cb_str(b, ", \"arguments\": ");
        ali_pj_args(b, m->tool_calls[k].arguments, 0);
        ali_cb_str(b, "}");
    }
    ali_cb_str(b, "]");
}

const char ali_granite_tools_prompt[] =
    " You are a helpful assistant with access to the following tools. When a tool is required to "
    "answer the user's query, respond only with <|tool_call|> followed by a JSON list of tools used. "
    "If a tool does not exist in the provided list of tools, notify the user that you do not have "
    "the ability to fulfill the request.";

/* The available_tools turn (the list, JSON with indent 4) after the system turn. */
void ali_granite_tools(ali_cb *b, json_t *tools)
{
    if (tools) {
        ali_cb_str(b, "<|start_of_role|>available_tools<|end_of_role|>");
        ali_pj(b, tools, 4, 0, 0);
        ali_cb_str(b, "<|end_of_text|>\n");
    }
}

void ali_granite_calls(ali_cb *b, const al_chat_msg *m)
{
    if (m->n_tool_calls > 0) {
        ali_cb_str(b, "<|tool_call|>");
        ali_calls_list(b, m);
    }
}

static int ali_is_tool_role(const char *role)
{
    return !strcmp(role, "tool") || !strcmp(role, "ipython");
}

static const char ali_llama_tools_preamble[] =
    "Given the following functions, please respond with a JSON for a function call with its proper "
    "arguments that best answers the given prompt.\n\nRespond in the format {\"name\": function name, "
    "\"parameters\": dictionary of argument name and its value}.Do not use variables.\n\n";

/* A Llama 3 tool turn: a tool-call turn ({"name": .., "parameters": ..}) or a tool result (role
 * ipython, the content as a JSON string, as Llama 3.1's template does). */
int ali_llama_tool_turn(ali_cb *b, const al_chat_msg *m)
{
    if (m->n_tool_calls > 0) {
        ali_cb_str(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        for (int k = 0; k < m->n_tool_calls; k++) {
            if (k)
                ali_cb_str(b, "; ");
            ali_cb_str(b, "{\"name\": \"");
            ali_cb_str(b, m->tool_calls[k].name ? m->tool_calls[k].name : "");
            ali_cb_str(b, "\", \"parameters\": ");
            ali_pj_args(b, m->tool_calls[k].arguments, 0);
            ali_cb_str(b, "}");
        }
        return 1;
    }
    if (ali_is_tool_role(m->role)) {
        ali_cb_str(b, "<|start_header_id|>ipython<|end_header_id|>\n\n");
        ali_pj_str(b, m->content, strlen(m->content));
        return 1;
    }
    return 0;
}

/* Llama 3.1 with tools: the system turn, then the tools in the first user turn. */
int ali_llama_tools_head(ali_cb *b, const al_chat_msg *m, int n, json_t *tools)
{
    int i = 0;
    ali_cb_str(b, "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nEnvironment: ipython\n"
                  "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n");
    if (n > 0 && !strcmp(m[0].role, "system"))
        ali_cb_trimmed(b, m[i++].content);
    ali_cb_str(b, "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n");
    ali_cb_str(b, ali_llama_tools_preamble);
    for (size_t k = 0; k < json_array_size(tools); k++) {
        ali_pj(b, json_array_get(tools, k), 4, 0, 0);
        ali_cb_str(b, "\n\n");
    }
    if (i < n)
        ali_cb_trimmed(b, m[i++].content);
    ali_cb_str(b, "<|eot_id|>");
    return i;
}

/* ChatML with tools, the Hermes / Qwen layout: the tools in the system turn, <tool_call> blocks,
 * consecutive tool results in one user turn of <tool_response> blocks. */
int ali_chatml_tools(ali_cb *b, const al_chat_msg *m, int n, json_t *tools)
{
    int i = 0;
    if (!tools)
        return 0;
    ali_cb_str(b, "<|im_start|>system\n");
    if (n > 0 && !strcmp(m[0].role, "system")) {
        ali_cb_str(b, m[i++].content);
        ali_cb_str(b, "\n\n");
    }
    ali_cb_str(b, "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
                  "You are provided with function signatures within <tools></tools> XML tags:\n<tools>");
    for (size_t k = 0; k < json_array_size(tools); k++) {
        ali_cb_str(b, "\n");
        ali_pj(b, json_array_get(tools, k), 0, 0, 0);
    }
    ali_cb_str(b, "\n</tools>\n\nFor each function call, return a json object with function name and "
                  "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": "
                  "<function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n");
    return i;
}

int ali_chatml_tool_result(ali_cb *b, const al_chat_msg *m, int n, int i)
{
    if (strcmp(m[i].role, "tool"))
        return 0;
    if (i == 0 || strcmp(m[i - 1].role, "tool"))
        ali_cb_str(b, "<|im_start|>user");
    ali_cb_str(b, "\n<tool_response>\n");
    ali_cb_str(b, m[i].content);
    ali_cb_str(b, "\n</tool_response>");
    if (i == n - 1 || strcmp(m[i + 1].role, "tool"))
        ali_cb_str(b, "<|im_end|>\n");
    return 1;
}

void ali_chatml_calls(ali_cb *b, const al_chat_msg *m)
{
    for (int k = 0; k < m->n_tool_calls; k++) {
        if (k || m->content[0])
            ali_cb_str(b, "\n");
        ali_cb_str(b, "<tool_call>\n{\"name\": \"");
        ali_cb_str(b, m->tool_calls[k].name ? m->tool_calls[k].name : "");
        ali_cb_str(b, "\", \"arguments\": ");
        ali_pj_args(b, m->tool_calls[k].arguments, 0);
        ali_cb_str(b, "}\n</tool_call>");
    }
}

/* raw: a first line "Tools: [..]" (the definitions, JSON); a call turn is the JSON list of calls. */
void ali_raw_tools(ali_cb *b, json_t *tools)
{
    if (tools) {
        ali_cb_str(b, "Tools: ");
        ali_pj(b, tools, 0, 0, 0);
        ali_cb_str(b, "\n");
    }
}

void ali_raw_calls(ali_cb *b, const al_chat_msg *m)
{
    if (m->n_tool_calls > 0) {
        if (m->content[0])
            ali_cb_str(b, "\n");
        ali_calls_list(b, m);
    }
}

/* ---------------------------------------------------------------- tool calls in the output */

const char *al_chat_tool_call_prefix(al_chat_format f)
{
    switch (f) {
    case AL_CHAT_GRANITE:
        return "<|tool_call|>";
    case AL_CHAT_CHATML:
        return "<tool_call>\n";
    default:
        return "";
    }
}

void al_chat_parsed_free(al_chat_parsed *p)
{
    if (!p)
        return;
    free(p->content);
    for (int i = 0; i < p->n_calls; i++) {
        free((char *)p->calls[i].id);
        free((char *)p->calls[i].name);
        free((char *)p->calls[i].arguments);
    }
    free(p->calls);
    memset(p, 0, sizeof *p);
}

static int ali_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Appends the call o ({"name": a known tool, "arguments" | "parameters": an object or a JSON
 * string of one}) to p: 1 done, 0 not a call, -1 out of memory. */
static int ali_push_call(al_chat_parsed *p, json_t *o, const al_chat_tool *tools, int n_tools)
{
    if (!json_is_object(o))
        return 0;
    const char *name = json_string_value(json_object_get(o, "name"));
    int known = 0;
    for (int i = 0; name && i < n_tools; i++)
        known |= tools[i].name && !strcmp(tools[i].name, name);
    if (!known)
        return 0;
    json_t *a = json_object_get(o, "arguments");
    if (!a)
        a = json_object_get(o, "parameters");
    json_t *own = NULL;
    if (json_is_string(a))
        a = own = ali_json_load(json_string_value(a), json_string_length(a));
    if (a && !json_is_object(a)) {
        json_decref(own);
        return 0;
    }
    json_t *empty = a ? NULL : json_object();
    char *args = ali_pj_compact(a ? a : empty);
    json_decref(own);
    json_decref(empty);
    char *nm = strdup(name);
    al_chat_tool_call *c = realloc(p->calls, sizeof *c * (size_t)(p->n_calls + 1));
    if (!args || !nm || !c) {
        free(args);
        free(nm);
        if (c)
            p->calls = c;
        return -1;
    }
    p->calls = c;
    c[p->n_calls++] = (al_chat_tool_call){.name = nm, .arguments = args};
    return 1;
}

/* The calls in JSON text s[0..n): a list of calls, or one call where allowed. */
static int ali_push_json(al_chat_parsed *p, const char *s, size_t n, int list_ok, int object_ok,
                         const al_chat_tool *tools, int n_tools)
{
    json_t *j = ali_json_load(s, n);
    int r = 0;
    if (json_is_array(j) && list_ok && json_array_size(j) > 0) {
        r = 1;
        for (size_t i = 0; r == 1 && i < json_array_size(j); i++)
            r = ali_push_call(p, json_array_get(j, i), tools, n_tools);
    } else if (json_is_object(j) && object_ok) {
        r = ali_push_call(p, j, tools, n_tools);
    }
    json_decref(j);
    return r;
}

static const char *ali_find(const char *s, size_t n, const char *needle)
{
    return memmem(s, n, needle, strlen(needle));
}

/* Reads the calls; returns the offset where the call syntax starts (0..len), -1 when the text
 * holds no calls, -2 out of memory. */
static long ali_parse_calls(al_chat_format f, const char *t, size_t len, const al_chat_tool *tools,
                            int n_tools, al_chat_parsed *p)
{
    size_t w = 0, e = len;
    while (w < len && ali_ws(t[w]))
        w++;
    while (e > w && ali_ws(t[e - 1]))
        e--;
    int r = 0;
    long start = -1;
    switch (f) {
    case AL_CHAT_GRANITE: {
        const char *m = ali_find(t, len, "<|tool_call|>"), *h = ali_find(t, len, "<tool_call>");
        size_t ml = strlen("<|tool_call|>");
        if (!m || (h && h < m)) {
            m = h;
            ml = strlen("<tool_call>");
        }
        if (m) {
            size_t a = (size_t)(m - t) + ml, z = e;
            if (z - a >= 12 &&
                !memcmp(t + z - 12, "</tool_call>", 12)) /* vLLM: <tool_call>[..]</tool_call> */
                z -= 12;
            r = a <= z ? ali_push_json(p, t + a, z - a, 1, 1, tools, n_tools) : 0;
            start = m - t;
        } else if (w < e && t[w] == '[') {
            r = ali_push_json(p, t + w, e - w, 1, 0, tools, n_tools);
            start = (long)w;
        }
        break;
    }
    case AL_CHAT_CHATML: {
        const char *m = ali_find(t, len, "<tool_call>");
        if (!m)
            break;
        start = m - t;
        r = 1;
        while (m && r == 1) {
            const char *a = m + strlen("<tool_call>"),
                       *z = ali_find(a, (size_t)(t + len - a), "</tool_call>");
            const char *zz = z ? z : t + len;
            r = ali_push_json(p, a, (size_t)(zz - a), 1, 1, tools, n_tools);
            if (!z)
                break;
            const char *q = z + strlen("</tool_call>");
            while (q < t + len && ali_ws(*q))
                q++;
            m = q < t + len ? ali_find(q, (size_t)(t + len - q), "<tool_call>") : NULL;
            if (m && m != q) /* text between blocks: not the call syntax */
                r = 0;
        }
        break;
    }
    case AL_CHAT_LLAMA3: {
        size_t a = w;
        if (e - a >= 14 && !memcmp(t + a, "<|python_tag|>", 14))
            a += 14;
        while (a < e && ali_ws(t[a]))
            a++;
        if (a >= e || t[a] != '{')
            break;
        start = (long)w;
        r = 1;
        while (r == 1 && a < e) {
            json_error_t je;
            json_t *j = json_loadb(t + a, e - a, JSON_DISABLE_EOF_CHECK, &je);
            if (!j) {
                r = 0;
                break;
            }
            r = ali_push_call(p, j, tools, n_tools);
            json_decref(j);
            a += je.position;
            while (a < e && ali_ws(t[a]))
                a++;
            if (a < e && t[a] == ';') {
                a++;
                while (a < e && ali_ws(t[a]))
                    a++;
                if (a >= e)
                    r = 0;
            } else if (a < e) {
                r = 0;
            }
        }
        break;
    }
    default:
        if (w < e && (t[w] == '[' || t[w] == '{')) {
            r = ali_push_json(p, t + w, e - w, 1, 1, tools, n_tools);
            start = (long)w;
        }
    }
    if (r < 0)
        return -2;
    return r == 1 && p->n_calls > 0 ? start : -1;
}

al_err al_chat_parse_tool_calls(al_chat_format f, const char *text, const al_chat_tool *tools, int n_tools,
                                al_chat_parsed *out)
{
    memset(out, 0, sizeof *out);
    if (!text)
        text = "";
    size_t len = strlen(text);
    long start = n_tools > 0 ? ali_parse_calls(f, text, len, tools, n_tools, out) : -1;
    if (start == -2) {
        al_chat_parsed_free(out);
        return ali_errf(AL_ENOMEM, "chat: out of memory");
    }
    if (start < 0) { /* no calls: the whole text is content */
        for (int i = 0; i < out->n_calls; i++) {
            free((char *)out->calls[i].name);
            free((char *)out->calls[i].arguments);
        }
        free(out->calls);
        out->calls = NULL;
        out->n_calls = 0;
        start = (long)len;
    }
    size_t a = 0, z = (size_t)start;
    if (out->n_calls) {
        while (a < z && ali_ws(text[a]))
            a++;
        while (z > a && ali_ws(text[z - 1]))
            z--;
    }
    out->content = strndup(text + a, z - a);
    if (!out->content) {
        al_chat_parsed_free(out);
        return ali_errf(AL_ENOMEM, "chat: out of memory");
    }
    return AL_OK;
}

size_t al_chat_tool_content_len(al_chat_format f, const char *t, size_t len)
{
    static const char *const granite_start[] = {"[", "<|tool_call|>", "<tool_call>", NULL};
    static const char *const chatml_start[] = {"<tool_call>", NULL};
    static const char *const llama_start[] = {"{", "<|python_tag|>", NULL};
    static const char *const raw_start[] = {"{", "[", NULL};
    static const char *const granite_marks[] = {"<|tool_call|>", "<tool_call>", NULL};
    static const char *const chatml_marks[] = {"<tool_call>", NULL};
    static const char *const no_marks[] = {NULL};
    const char *const *starts = raw_start, *const *marks = no_marks;
    if (f == AL_CHAT_GRANITE) {
        starts = granite_start;
        marks = granite_marks;
    } else if (f == AL_CHAT_CHATML) {
        starts = chatml_start;
        marks = chatml_marks;
    } else if (f == AL_CHAT_LLAMA3) {
        starts = llama_start;
    }
    size_t w = 0;
    while (w < len && ali_ws(t[w]))
        w++;
    if (w == len)
        return 0;
    for (int i = 0; starts[i]; i++) {
        size_t sl = strlen(starts[i]), k = len - w < sl ? len - w : sl;
        if (!memcmp(t + w, starts[i], k)) /* the output may be starting a call */
            return 0;
    }
    size_t end = len;
    for (int i = 0; marks[i]; i++) {
        const char *m = ali_find(t, len, marks[i]);
        if (m && (size_t)(m - t) < end)
            end = (size_t)(m - t);
    }
    if (end == len)
        for (int i = 0; marks[i]; i++) { /* a marker may be arriving */
            size_t ml = strlen(marks[i]);
            for (size_t k = ml - 1 < len ? ml - 1 : len; k > 0; k--)
                if (!memcmp(t + len - k, marks[i], k)) {
                    if (len - k < end)
                        end = len - k;
                    break;
                }
        }
    while (end > 0 && ali_ws(t[end - 1]))
        end--;
    return end;
}
