/* chat.c: built-in chat templates (granite, llama3, chatml, raw) and OpenAI-style message JSON. */
#include "common/text/chat.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/utf8.h"

typedef struct cb {
    char *s;
    size_t n, cap;
    int oom;
} cb;

static void cb_add(cb *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 1024;
        while (nc < b->n + n + 1)
            nc *= 2;
        char *p = realloc(b->s, nc);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->s = p;
        b->cap = nc;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}

static void cb_str(cb *b, const char *s) { cb_add(b, s, strlen(s)); }

/* Python str.isspace(), which Jinja's trim filter uses. */
static int ali_py_space(uint32_t c)
{
    return (c >= 9 && c <= 13) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
           c == 0x202F || c == 0x205F || c == 0x3000;
}

static void cb_trimmed(cb *b, const char *s)
{
    size_t n = strlen(s), i = 0, e = n;
    const unsigned char *u = (const unsigned char *)s;
    while (i < n) {
        uint32_t cp;
        int l = al_utf8_decode(u + i, n - i, &cp, NULL);
        if (!l || !ali_py_space(cp))
            break;
        i += (size_t)l;
    }
    while (e > i) {
        size_t p = e - 1;
        while (p > i && (u[p] & 0xC0) == 0x80)
            p--;
        uint32_t cp;
        int l = al_utf8_decode(u + p, e - p, &cp, NULL);
        if (!l || (size_t)l != e - p || !ali_py_space(cp))
            break;
        e = p;
    }
    cb_add(b, s + i, e - i);
}

/* ---- Python's json.dumps (what transformers' tojson filter runs): ensure_ascii=False, key order
 * kept, separators ", " / ": " (indent > 0: "," + newline), or "," / ":" when compact. */

static void ali_pj_str(cb *b, const char *s, size_t n)
{
    cb_str(b, "\"");
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char u[8];
        switch (c) {
        case '"':
            esc = "\\\"";
            break;
        case '\\':
            esc = "\\\\";
            break;
        case '\n':
            esc = "\\n";
            break;
        case '\r':
            esc = "\\r";
            break;
        case '\t':
            esc = "\\t";
            break;
        case '\b':
            esc = "\\b";
            break;
        case '\f':
            esc = "\\f";
            break;
        default:
            if (c < 0x20) {
                snprintf(u, sizeof u, "\\u%04x", c);
                esc = u;
            }
        }
        if (!esc)
            continue;
        cb_add(b, s + run, i - run);
        cb_str(b, esc);
        run = i + 1;
    }
    cb_add(b, s + run, n - run);
    cb_str(b, "\"");
}

/* Python's repr of a float: the shortest digits that round-trip, fixed notation for exponents in
 * [-4, 16), else d.ddde+XX. */
static void ali_pj_real(cb *b, double d)
{
    char m[40], o[64];
    int p;
    for (p = 1; p <= 17; p++) {
        snprintf(m, sizeof m, "%.*e", p - 1, d);
        if (strtod(m, NULL) == d)
            break;
    }
    const char *e = strchr(m, 'e');
    int exp = atoi(e + 1), neg = m[0] == '-';
    char dig[24];
    int nd = 0;
    for (const char *q = m + neg; q < e; q++)
        if (*q >= '0' && *q <= '9')
            dig[nd++] = *q;
    while (nd > 1 && dig[nd - 1] == '0')
        nd--;
    dig[nd] = 0;
    size_t k = 0;
    if (neg)
        o[k++] = '-';
    if (exp >= -4 && exp < 16) {
        if (exp < 0) {
            o[k++] = '0';
            o[k++] = '.';
            for (int i = -1; i > exp; i--)
                o[k++] = '0';
            for (int i = 0; i < nd; i++)
                o[k++] = dig[i];
        } else {
            for (int i = 0; i <= exp; i++)
                o[k++] = i < nd ? dig[i] : '0';
            o[k++] = '.';
            if (nd > exp + 1)
                for (int i = exp + 1; i < nd; i++)
                    o[k++] = dig[i];
            else
                o[k++] = '0';
        }
        o[k] = 0;
    } else {
        o[k++] = dig[0];
        if (nd > 1) {
            o[k++] = '.';
            for (int i = 1; i < nd; i++)
                o[k++] = dig[i];
        }
        snprintf(o + k, sizeof o - k, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    }
    cb_str(b, o);
}

static void ali_pj_nl(cb *b, int indent, int level)
{
    cb_str(b, "\n");
    for (int i = 0; i < indent * level; i++)
        cb_str(b, " ");
}

static void ali_pj(cb *b, json_t *v, int indent, int compact, int level)
{
    const char *item = indent > 0 || compact ? "," : ", ", *kv = compact ? ":" : ": ";
    char num[32];
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        if (!json_object_size(v)) {
            cb_str(b, "{}");
            return;
        }
        cb_str(b, "{");
        const char *k;
        json_t *x;
        int first = 1;
        json_object_foreach(v, k, x)
        {
            if (!first)
                cb_str(b, item);
            first = 0;
            if (indent > 0)
                ali_pj_nl(b, indent, level + 1);
            ali_pj_str(b, k, strlen(k));
            cb_str(b, kv);
            ali_pj(b, x, indent, compact, level + 1);
        }
        if (indent > 0)
            ali_pj_nl(b, indent, level);
        cb_str(b, "}");
        return;
    }
    case JSON_ARRAY: {
        if (!json_array_size(v)) {
            cb_str(b, "[]");
            return;
        }
        cb_str(b, "[");
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i)
                cb_str(b, item);
            if (indent > 0)
                ali_pj_nl(b, indent, level + 1);
            ali_pj(b, json_array_get(v, i), indent, compact, level + 1);
        }
        if (indent > 0)
            ali_pj_nl(b, indent, level);
        cb_str(b, "]");
        return;
    }
    case JSON_STRING:
        ali_pj_str(b, json_string_value(v), json_string_length(v));
        return;
    case JSON_INTEGER:
        snprintf(num, sizeof num, "%lld", (long long)json_integer_value(v));
        cb_str(b, num);
        return;
    case JSON_REAL:
        ali_pj_real(b, json_real_value(v));
        return;
    case JSON_TRUE:
        cb_str(b, "true");
        return;
    case JSON_FALSE:
        cb_str(b, "false");
        return;
    default:
        cb_str(b, "null");
    }
}

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
static json_t *ali_tools_list(const al_chat_opts *o)
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
static void ali_pj_args(cb *b, const char *args, int compact)
{
    json_t *j = args ? ali_json_load(args, strlen(args)) : json_object();
    if (j)
        ali_pj(b, j, 0, compact, 0);
    else
        ali_pj_str(b, args, strlen(args));
    json_decref(j);
}

/* [{"name": .., "arguments": ..}, ...] (granite, raw). */
static void ali_calls_list(cb *b, const al_chat_msg *m)
{
    cb_str(b, "[");
    for (int k = 0; k < m->n_tool_calls; k++) {
        cb_str(b, k ? ", {\"name\": " : "{\"name\": ");
        const char *nm = m->tool_calls[k].name ? m->tool_calls[k].name : "";
        ali_pj_str(b, nm, strlen(nm));
        cb_str(b, ", \"arguments\": ");
        ali_pj_args(b, m->tool_calls[k].arguments, 0);
        cb_str(b, "}");
    }
    cb_str(b, "]");
}

static const char ali_granite_tools_prompt[] =
    " You are a helpful assistant with access to the following tools. When a tool is required to "
    "answer the user's query, respond only with <|tool_call|> followed by a JSON list of tools used. "
    "If a tool does not exist in the provided list of tools, notify the user that you do not have "
    "the ability to fulfill the request.";

static const char ali_granite_docs_prompt[] =
    " Write the response to the user's input by strictly aligning with the facts in the provided "
    "documents. If the information needed to answer the question is not available in the "
    "documents, inform the user that the question cannot be answered based on the available "
    "data.";

static void ali_render_granite(cb *b, const al_chat_msg *m, int n, const al_chat_doc *docs, int n_docs,
                               int agp, const char *date, json_t *tools)
{
    int first = 0;
    cb_str(b, "<|start_of_role|>system<|end_of_role|>");
    if (!strcmp(m[0].role, "system")) {
        cb_str(b, m[0].content);
        first = 1;
    } else {
        cb_str(b, "Knowledge Cutoff Date: April 2024.\nToday's Date: ");
        cb_str(b, date);
        cb_str(b, ".\nYou are Granite, developed by IBM.");
        if (tools) {
            cb_str(b, ali_granite_tools_prompt);
            if (n_docs) {
                cb_str(b, "\n");
                cb_str(b, ali_granite_docs_prompt + 1);
            }
        } else {
            cb_str(b, n_docs ? ali_granite_docs_prompt : " You are a helpful AI assistant.");
        }
    }
    cb_str(b, "<|end_of_text|>\n");
    if (tools) {
        cb_str(b, "<|start_of_role|>available_tools<|end_of_role|>");
        ali_pj(b, tools, 4, 0, 0);
        cb_str(b, "<|end_of_text|>\n");
    }
    for (int i = 0; i < n_docs; i++) {
        cb_str(b, "<|start_of_role|>document {\"document_id\": \"");
        cb_str(b, docs[i].doc_id ? docs[i].doc_id : "");
        cb_str(b, "\"}<|end_of_role|>\n");
        cb_str(b, docs[i].text);
        cb_str(b, "<|end_of_text|>\n");
    }
    for (int i = first; i < n; i++) {
        cb_str(b, "<|start_of_role|>");
        cb_str(b, m[i].role);
        cb_str(b, "<|end_of_role|>");
        cb_str(b, m[i].content);
        if (m[i].n_tool_calls > 0) {
            cb_str(b, "<|tool_call|>");
            ali_calls_list(b, &m[i]);
        }
        cb_str(b, "<|end_of_text|>\n");
        if (i == n - 1 && agp)
            cb_str(b, "<|start_of_role|>assistant<|end_of_role|>");
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

/* One Llama 3 turn: a tool-call turn ({"name": .., "parameters": ..}), a tool result (role ipython,
 * the content as a JSON string, as Llama 3.1's template does) or a plain turn (content trimmed). */
static void ali_llama_turn(cb *b, const al_chat_msg *m)
{
    if (m->n_tool_calls > 0) {
        cb_str(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        for (int k = 0; k < m->n_tool_calls; k++) {
            if (k)
                cb_str(b, "; ");
            cb_str(b, "{\"name\": \"");
            cb_str(b, m->tool_calls[k].name ? m->tool_calls[k].name : "");
            cb_str(b, "\", \"parameters\": ");
            ali_pj_args(b, m->tool_calls[k].arguments, 0);
            cb_str(b, "}");
        }
    } else if (ali_is_tool_role(m->role)) {
        cb_str(b, "<|start_header_id|>ipython<|end_header_id|>\n\n");
        ali_pj_str(b, m->content, strlen(m->content));
    } else {
        cb_str(b, "<|start_header_id|>");
        cb_str(b, m->role);
        cb_str(b, "<|end_header_id|>\n\n");
        cb_trimmed(b, m->content);
    }
    cb_str(b, "<|eot_id|>");
}

/* Llama 3.1 with tools: the system turn, then the tools in the first user turn. */
static void ali_render_llama_tools(cb *b, const al_chat_msg *m, int n, json_t *tools, int agp)
{
    int i = 0;
    cb_str(b, "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nEnvironment: ipython\n"
              "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n");
    if (n > 0 && !strcmp(m[0].role, "system"))
        cb_trimmed(b, m[i++].content);
    cb_str(b, "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n");
    cb_str(b, ali_llama_tools_preamble);
    for (size_t k = 0; k < json_array_size(tools); k++) {
        ali_pj(b, json_array_get(tools, k), 4, 0, 0);
        cb_str(b, "\n\n");
    }
    if (i < n)
        cb_trimmed(b, m[i++].content);
    cb_str(b, "<|eot_id|>");
    for (; i < n; i++)
        ali_llama_turn(b, &m[i]);
    if (agp)
        cb_str(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

/* ChatML; with tools the Hermes / Qwen layout (tools in the system turn, <tool_call> blocks,
 * consecutive tool results in one user turn of <tool_response> blocks). */
static void ali_render_chatml(cb *b, const al_chat_msg *m, int n, json_t *tools, int agp)
{
    int i = 0;
    if (tools) {
        cb_str(b, "<|im_start|>system\n");
        if (n > 0 && !strcmp(m[0].role, "system")) {
            cb_str(b, m[i++].content);
            cb_str(b, "\n\n");
        }
        cb_str(b, "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
                  "You are provided with function signatures within <tools></tools> XML tags:\n<tools>");
        for (size_t k = 0; k < json_array_size(tools); k++) {
            cb_str(b, "\n");
            ali_pj(b, json_array_get(tools, k), 0, 0, 0);
        }
        cb_str(b, "\n</tools>\n\nFor each function call, return a json object with function name and "
                  "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": "
                  "<function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n");
    }
    for (; i < n; i++) {
        if (!strcmp(m[i].role, "tool")) {
            if (i == 0 || strcmp(m[i - 1].role, "tool"))
                cb_str(b, "<|im_start|>user");
            cb_str(b, "\n<tool_response>\n");
            cb_str(b, m[i].content);
            cb_str(b, "\n</tool_response>");
            if (i == n - 1 || strcmp(m[i + 1].role, "tool"))
                cb_str(b, "<|im_end|>\n");
            continue;
        }
        cb_str(b, "<|im_start|>");
        cb_str(b, m[i].role);
        cb_str(b, "\n");
        cb_str(b, m[i].content);
        for (int k = 0; k < m[i].n_tool_calls; k++) {
            if (k || m[i].content[0])
                cb_str(b, "\n");
            cb_str(b, "<tool_call>\n{\"name\": \"");
            cb_str(b, m[i].tool_calls[k].name ? m[i].tool_calls[k].name : "");
            cb_str(b, "\", \"arguments\": ");
            ali_pj_args(b, m[i].tool_calls[k].arguments, 0);
            cb_str(b, "}\n</tool_call>");
        }
        cb_str(b, "<|im_end|>\n");
    }
    if (agp)
        cb_str(b, "<|im_start|>assistant\n");
}

al_err al_chat_render_ex(al_chat_format f, const al_chat_msg *msgs, int n,
                         const al_chat_doc *docs, int n_docs, int add_generation_prompt,
                         const al_chat_opts *opts, char **out)
{
    *out = NULL;
    if (n <= 0 || !msgs)
        return ali_errf(AL_EINVAL, "chat: no messages");
    if (n_docs < 0 || (n_docs && !docs))
        return ali_errf(AL_EINVAL, "chat: bad documents");
    for (int i = 0; i < n; i++)
        if (!msgs[i].role || !msgs[i].content)
            return ali_errf(AL_EINVAL, "chat: messages[%d]: role and content are required", i);
    for (int i = 0; i < n_docs; i++)
        if (!docs[i].text)
            return ali_errf(AL_EINVAL, "chat: documents[%d]: text is required", i);
    if (n_docs && f != AL_CHAT_GRANITE)
        return ali_errf(AL_EUNSUPPORTED, "chat: documents are only supported by the granite "
                        "format, not %s", al_chat_format_name(f));
    for (int i = 0; i < n; i++)
        for (int k = 0; k < msgs[i].n_tool_calls; k++)
            if (!msgs[i].tool_calls || !msgs[i].tool_calls[k].name)
                return ali_errf(AL_EINVAL, "chat: messages[%d].tool_calls[%d]: name is required", i, k);
    json_t *tools = ali_tools_list(opts);
    cb b = {0};
    cb_add(&b, "", 0);
    switch (f) {
    case AL_CHAT_GRANITE: {
        char today[64];
        const char *date = opts && opts->date ? opts->date : NULL;
        if (!date) {
            time_t now = time(NULL);
            struct tm tm;
            localtime_r(&now, &tm);
            strftime(today, sizeof today, "%B %d, %Y", &tm);
            date = today;
        }
        ali_render_granite(&b, msgs, n, docs, n_docs, add_generation_prompt, date, tools);
        break;
    }
    case AL_CHAT_LLAMA3:
        if (tools) {
            ali_render_llama_tools(&b, msgs, n, tools, add_generation_prompt);
            break;
        }
        cb_str(&b, "<|begin_of_text|>");
        for (int i = 0; i < n; i++)
            ali_llama_turn(&b, &msgs[i]);
        if (add_generation_prompt)
            cb_str(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        break;
    case AL_CHAT_CHATML:
        ali_render_chatml(&b, msgs, n, tools, add_generation_prompt);
        break;
    case AL_CHAT_RAW:
        if (tools) {
            cb_str(&b, "Tools: ");
            ali_pj(&b, tools, 0, 0, 0);
            cb_str(&b, "\n");
        }
        for (int i = 0; i < n; i++) {
            if (i)
                cb_str(&b, "\n");
            cb_str(&b, msgs[i].content);
            if (msgs[i].n_tool_calls > 0) {
                if (msgs[i].content[0])
                    cb_str(&b, "\n");
                ali_calls_list(&b, &msgs[i]);
            }
        }
        break;
    default:
        json_decref(tools);
        free(b.s);
        return ali_errf(AL_EINVAL, "chat: unknown format %d", (int)f);
    }
    json_decref(tools);
    if (b.oom) {
        free(b.s);
        return ali_errf(AL_ENOMEM, "chat: out of memory");
    }
    *out = b.s;
    return AL_OK;
}

al_err al_chat_render(al_chat_format f, const al_chat_msg *msgs, int n, const al_chat_doc *docs,
                      int n_docs, int add_generation_prompt, char **out)
{
    return al_chat_render_ex(f, msgs, n, docs, n_docs, add_generation_prompt, NULL, out);
}

static const char *const ali_fmt_names[] = {"raw", "granite", "llama3", "chatml"};

al_err al_chat_format_parse(const char *name, al_chat_format *f)
{
    for (int i = 0; name && i < 4; i++)
        if (!strcmp(name, ali_fmt_names[i])) {
            *f = (al_chat_format)i;
            return AL_OK;
        }
    return ali_errf(AL_EINVAL, "chat: unknown chat format '%s' (raw, granite, llama3, chatml)",
                    name ? name : "(null)");
}

const char *al_chat_format_name(al_chat_format f)
{
    return (unsigned)f < 4 ? ali_fmt_names[f] : "unknown";
}

al_chat_format al_chat_detect(const char *tmpl)
{
    if (!tmpl)
        return AL_CHAT_RAW;
    if (strstr(tmpl, "<|start_of_role|>"))
        return AL_CHAT_GRANITE;
    if (strstr(tmpl, "<|start_header_id|>"))
        return AL_CHAT_LLAMA3;
    if (strstr(tmpl, "<|im_start|>"))
        return AL_CHAT_CHATML;
    return AL_CHAT_RAW;
}

void al_chat_stop_strings(al_chat_format f, const char *const **out, int *n)
{
    static const char *const granite[] = {"<|end_of_text|>"};
    static const char *const llama3[] = {"<|eot_id|>", "<|end_of_text|>"};
    static const char *const chatml[] = {"<|im_end|>", "<|endoftext|>"};
    switch (f) {
    case AL_CHAT_GRANITE:
        *out = granite;
        *n = 1;
        return;
    case AL_CHAT_LLAMA3:
        *out = llama3;
        *n = 2;
        return;
    case AL_CHAT_CHATML:
        *out = chatml;
        *n = 2;
        return;
    default:
        *out = NULL;
        *n = 0;
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

/* A compact JSON text of v (Python separators "," and ":"), malloc'd; NULL on OOM. */
static char *ali_pj_compact(json_t *v)
{
    cb b = {0};
    cb_add(&b, "", 0);
    ali_pj(&b, v, 0, 1, 0);
    if (b.oom) {
        free(b.s);
        return NULL;
    }
    return b.s;
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

/* ---------------------------------------------------------------- JSON */

void al_chat_free(al_chat *c)
{
    if (!c)
        return;
    for (int i = 0; i < c->n_msgs; i++) {
        free((char *)c->msgs[i].role);
        free((char *)c->msgs[i].content);
        free((char *)c->msgs[i].tool_call_id);
        for (int k = 0; k < c->msgs[i].n_tool_calls; k++) {
            free((char *)c->msgs[i].tool_calls[k].id);
            free((char *)c->msgs[i].tool_calls[k].name);
            free((char *)c->msgs[i].tool_calls[k].arguments);
        }
        free((void *)c->msgs[i].tool_calls);
    }
    for (int i = 0; i < c->n_docs; i++) {
        free((char *)c->docs[i].title);
        free((char *)c->docs[i].text);
        free((char *)c->docs[i].doc_id);
    }
    free(c->msgs);
    free(c->docs);
    free(c);
}

static al_err ali_dup(const char *s, size_t n, const char **out)
{
    char *p = malloc(n + 1);
    if (!p)
        return ali_errf(AL_ENOMEM, "chat: out of memory");
    memcpy(p, s, n);
    p[n] = 0;
    *out = p;
    return AL_OK;
}

static al_err ali_parse_content(json_t *v, int i, const char **out)
{
    if (json_is_string(v))
        return ali_dup(json_string_value(v), json_string_length(v), out);
    if (!json_is_array(v))
        return ali_errf(AL_EFORMAT, "messages[%d].content: expected a string or a list of text "
                        "parts", i);
    cb b = {0};
    cb_add(&b, "", 0);
    for (size_t k = 0; k < json_array_size(v); k++) {
        json_t *p = json_array_get(v, k), *type = json_object_get(p, "type"),
               *text = json_object_get(p, "text");
        if (!json_is_object(p) || !json_is_string(type) || strcmp(json_string_value(type), "text") ||
            !json_is_string(text)) {
            free(b.s);
            return ali_errf(AL_EFORMAT, "messages[%d].content[%zu]: expected {\"type\": \"text\", "
                            "\"text\": string}", i, k);
        }
        cb_add(&b, json_string_value(text), json_string_length(text));
    }
    if (b.oom) {
        free(b.s);
        return ali_errf(AL_ENOMEM, "chat: out of memory");
    }
    *out = b.s;
    return AL_OK;
}

/* An assistant message's "tool_calls": [{"id", "type": "function", "function": {"name",
 * "arguments": a JSON string or an object}}]. */
static al_err ali_parse_calls_json(json_t *arr, size_t i, al_chat_msg *msg)
{
    if (!json_is_array(arr))
        return ali_errf(AL_EFORMAT, "messages[%zu].tool_calls: expected a list", i);
    if (strcmp(msg->role, "assistant"))
        return ali_errf(AL_EFORMAT, "messages[%zu].tool_calls: only assistant messages carry tool calls", i);
    size_t n = json_array_size(arr);
    if (!n)
        return AL_OK;
    al_chat_tool_call *tc = calloc(n, sizeof *tc);
    if (!tc)
        return ali_errf(AL_ENOMEM, "chat: out of memory");
    msg->tool_calls = tc;
    for (size_t k = 0; k < n; k++) {
        json_t *c = json_array_get(arr, k), *fn = json_object_get(c, "function");
        json_t *type = json_object_get(c, "type"), *id = json_object_get(c, "id");
        if (!json_is_object(c))
            return ali_errf(AL_EFORMAT, "messages[%zu].tool_calls[%zu]: expected an object", i, k);
        if (type && !json_is_null(type) &&
            (!json_is_string(type) || strcmp(json_string_value(type), "function")))
            return ali_errf(AL_EFORMAT, "messages[%zu].tool_calls[%zu].type: expected \"function\"", i, k);
        if (id && !json_is_null(id) && !json_is_string(id))
            return ali_errf(AL_EFORMAT, "messages[%zu].tool_calls[%zu].id: expected a string", i, k);
        if (!json_is_object(fn))
            return ali_errf(AL_EFORMAT, "messages[%zu].tool_calls[%zu].function: expected an object", i, k);
        json_t *name = json_object_get(fn, "name"), *args = json_object_get(fn, "arguments");
        if (!json_is_string(name) || !json_string_length(name) ||
            strlen(json_string_value(name)) != json_string_length(name))
            return ali_errf(AL_EFORMAT,
                            "messages[%zu].tool_calls[%zu].function.name: expected a non-empty "
                            "string",
                            i, k);
        if (args && !json_is_null(args) && !json_is_string(args) && !json_is_object(args))
            return ali_errf(AL_EFORMAT,
                            "messages[%zu].tool_calls[%zu].function.arguments: expected a JSON "
                            "string or an object",
                            i, k);
        msg->n_tool_calls = (int)k + 1;
        AL_TRY(ali_dup(json_string_value(name), json_string_length(name), &tc[k].name));
        if (json_is_string(id))
            AL_TRY(ali_dup(json_string_value(id), json_string_length(id), &tc[k].id));
        if (json_is_string(args)) {
            AL_TRY(ali_dup(json_string_value(args), json_string_length(args), &tc[k].arguments));
        } else {
            json_t *empty = json_is_object(args) ? NULL : json_object();
            char *s = ali_pj_compact(json_is_object(args) ? args : empty);
            json_decref(empty);
            if (!s)
                return ali_errf(AL_ENOMEM, "chat: out of memory");
            tc[k].arguments = s;
        }
    }
    return AL_OK;
}

static al_err ali_parse_msgs(json_t *arr, al_chat *c)
{
    if (!json_is_array(arr))
        return ali_errf(AL_EFORMAT, "messages: expected a list");
    size_t n = json_array_size(arr);
    if (n == 0)
        return ali_errf(AL_EFORMAT, "messages: empty list");
    if (n > 1000000)
        return ali_errf(AL_ERANGE, "messages: too many");
    c->msgs = calloc(n, sizeof *c->msgs);
    if (!c->msgs)
        return ali_errf(AL_ENOMEM, "chat: out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(arr, i);
        if (!json_is_object(m))
            return ali_errf(AL_EFORMAT, "messages[%zu]: expected an object", i);
        json_t *role = json_object_get(m, "role"), *content = json_object_get(m, "content");
        json_t *calls = json_object_get(m, "tool_calls"), *tcid = json_object_get(m, "tool_call_id");
        if (!json_is_string(role) || json_string_length(role) == 0)
            return ali_errf(AL_EFORMAT, "messages[%zu].role: expected a non-empty string", i);
        int has_calls = calls && !json_is_null(calls);
        if (!content && !has_calls)
            return ali_errf(AL_EFORMAT, "messages[%zu].content: missing", i);
        if (strlen(json_string_value(role)) != json_string_length(role))
            return ali_errf(AL_EFORMAT, "messages[%zu].role: contains NUL", i);
        AL_TRY(ali_dup(json_string_value(role), json_string_length(role), &c->msgs[i].role));
        c->n_msgs++;
        if (has_calls)
            AL_TRY(ali_parse_calls_json(calls, i, &c->msgs[i]));
        if ((!content || json_is_null(content)) && c->msgs[i].n_tool_calls > 0)
            AL_TRY(ali_dup("", 0, &c->msgs[i].content));
        else
            AL_TRY(ali_parse_content(content, (int)i, &c->msgs[i].content));
        if (tcid && !json_is_null(tcid)) {
            if (!json_is_string(tcid))
                return ali_errf(AL_EFORMAT, "messages[%zu].tool_call_id: expected a string", i);
            AL_TRY(ali_dup(json_string_value(tcid), json_string_length(tcid), &c->msgs[i].tool_call_id));
        }
    }
    return AL_OK;
}

static al_err ali_parse_docs(json_t *arr, al_chat *c)
{
    if (!arr || json_is_null(arr))
        return AL_OK;
    if (!json_is_array(arr))
        return ali_errf(AL_EFORMAT, "documents: expected a list");
    size_t n = json_array_size(arr);
    if (n > 1000000)
        return ali_errf(AL_ERANGE, "documents: too many");
    c->docs = calloc(n ? n : 1, sizeof *c->docs);
    if (!c->docs)
        return ali_errf(AL_ENOMEM, "chat: out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *d = json_array_get(arr, i);
        if (!json_is_object(d))
            return ali_errf(AL_EFORMAT, "documents[%zu]: expected an object", i);
        json_t *text = json_object_get(d, "text"), *title = json_object_get(d, "title"),
               *id = json_object_get(d, "doc_id");
        if (!json_is_string(text))
            return ali_errf(AL_EFORMAT, "documents[%zu].text: expected a string", i);
        if (title && !json_is_null(title) && !json_is_string(title))
            return ali_errf(AL_EFORMAT, "documents[%zu].title: expected a string", i);
        if (id && !json_is_null(id) && !json_is_string(id) && !json_is_integer(id))
            return ali_errf(AL_EFORMAT, "documents[%zu].doc_id: expected a string or an integer",
                            i);
        al_chat_doc *o = &c->docs[c->n_docs++];
        AL_TRY(ali_dup(json_string_value(text), json_string_length(text), &o->text));
        if (json_is_string(title))
            AL_TRY(ali_dup(json_string_value(title), json_string_length(title), &o->title));
        if (json_is_string(id)) {
            AL_TRY(ali_dup(json_string_value(id), json_string_length(id), &o->doc_id));
        } else if (json_is_integer(id)) {
            char tmp[32];
            int l = snprintf(tmp, sizeof tmp, "%lld", (long long)json_integer_value(id));
            AL_TRY(ali_dup(tmp, (size_t)l, &o->doc_id));
        }
    }
    return AL_OK;
}

al_err al_chat_parse_json(const char *json, size_t len, al_chat **out)
{
    *out = NULL;
    if (!json)
        return ali_errf(AL_EINVAL, "chat: no JSON");
    json_error_t je;
    json_t *root = json_loadb(json, len, JSON_DECODE_ANY, &je);
    if (!root)
        return ali_errf(AL_EFORMAT, "chat: invalid JSON at line %d column %d: %s", je.line,
                        je.column, je.text);
    al_chat *c = calloc(1, sizeof *c);
    al_err e = c ? AL_OK : ali_errf(AL_ENOMEM, "chat: out of memory");
    if (e == AL_OK) {
        if (json_is_array(root)) {
            e = ali_parse_msgs(root, c);
        } else if (json_is_object(root)) {
            json_t *m = json_object_get(root, "messages");
            e = m ? ali_parse_msgs(m, c) : ali_errf(AL_EFORMAT, "messages: missing");
            if (e == AL_OK)
                e = ali_parse_docs(json_object_get(root, "documents"), c);
        } else {
            e = ali_errf(AL_EFORMAT, "chat: expected a list of messages or an object with "
                         "\"messages\"");
        }
    }
    json_decref(root);
    if (e != AL_OK) {
        al_chat_free(c);
        return e;
    }
    *out = c;
    return AL_OK;
}
