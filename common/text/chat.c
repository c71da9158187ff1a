/* chat.c: built-in chat templates (granite, llama3, chatml, raw) and OpenAI-style message JSON. */
#include "common/text/chat.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/text/chat_int.h"
#include "common/utf8.h"

void ali_cb_add(ali_cb *b, const char *s, size_t n)
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

void ali_cb_str(ali_cb *b, const char *s) { ali_cb_add(b, s, strlen(s)); }

/* Python str.isspace(), which Jinja's trim filter uses. */
static int ali_py_space(uint32_t c)
{
    return (c >= 9 && c <= 13) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
           c == 0x202F || c == 0x205F || c == 0x3000;
}

void ali_cb_trimmed(ali_cb *b, const char *s)
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
    ali_cb_add(b, s + i, e - i);
}

/* ---- Python's json.dumps (what transformers' tojson filter runs): ensure_ascii=False, key order
 * kept, separators ", " / ": " (indent > 0: "," + newline), or "," / ":" when compact. */

void ali_pj_str(ali_cb *b, const char *s, size_t n)
{
    ali_cb_str(b, "\"");
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
        ali_cb_add(b, s + run, i - run);
        ali_cb_str(b, esc);
        run = i + 1;
    }
    ali_cb_add(b, s + run, n - run);
    ali_cb_str(b, "\"");
}

/* Python's repr of a float: the shortest digits that round-trip, fixed notation for exponents in
 * [-4, 16), else d.ddde+XX. */
static void ali_pj_real(ali_cb *b, double d)
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
    ali_cb_str(b, o);
}

static void ali_pj_nl(ali_cb *b, int indent, int level)
{
    ali_cb_str(b, "\n");
    for (int i = 0; i < indent * level; i++)
        ali_cb_str(b, " ");
}

void ali_pj(ali_cb *b, json_t *v, int indent, int compact, int level)
{
    const char *item = indent > 0 || compact ? "," : ", ", *kv = compact ? ":" : ": ";
    char num[32];
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        if (!json_object_size(v)) {
            ali_cb_str(b, "{}");
            return;
        }
        ali_cb_str(b, "{");
        const char *k;
        json_t *x;
        int first = 1;
        json_object_foreach(v, k, x)
        {
            if (!first)
                ali_cb_str(b, item);
            first = 0;
            if (indent > 0)
                ali_pj_nl(b, indent, level + 1);
            ali_pj_str(b, k, strlen(k));
            ali_cb_str(b, kv);
            ali_pj(b, x, indent, compact, level + 1);
        }
        if (indent > 0)
            ali_pj_nl(b, indent, level);
        ali_cb_str(b, "}");
        return;
    }
    case JSON_ARRAY: {
        if (!json_array_size(v)) {
            ali_cb_str(b, "[]");
            return;
        }
        ali_cb_str(b, "[");
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i)
                ali_cb_str(b, item);
            if (indent > 0)
                ali_pj_nl(b, indent, level + 1);
            ali_pj(b, json_array_get(v, i), indent, compact, level + 1);
        }
        if (indent > 0)
            ali_pj_nl(b, indent, level);
        ali_cb_str(b, "]");
        return;
    }
    case JSON_STRING:
        ali_pj_str(b, json_string_value(v), json_string_length(v));
        return;
    case JSON_INTEGER:
        snprintf(num, sizeof num, "%lld", (long long)json_integer_value(v));
        ali_cb_str(b, num);
        return;
    case JSON_REAL:
        ali_pj_real(b, json_real_value(v));
        return;
    case JSON_TRUE:
        ali_cb_str(b, "true");
        return;
    case JSON_FALSE:
        ali_cb_str(b, "false");
        return;
    default:
        ali_cb_str(b, "null");
    }
}

/* A compact JSON text of v (Python separators "," and ":"), malloc'd; NULL on OOM. */
char *ali_pj_compact(json_t *v)
{
    ali_cb b = {0};
    ali_cb_add(&b, "", 0);
    ali_pj(&b, v, 0, 1, 0);
    if (b.oom) {
        free(b.s);
        return NULL;
    }
    return b.s;
}

static const char ali_granite_docs_prompt[] =
    " Write the response to the user's input by strictly aligning with the facts in the provided "
    "documents. If the information needed to answer the question is not available in the "
    "documents, inform the user that the question cannot be answered based on the available "
    "data.";

static const char ali_granite_think_prompt[] =
    " You are a helpful AI assistant.\nRespond to every user query in a comprehensive and detailed way. You can "
    "write down your thoughts and reasoning process before responding. In the thought process, engage in a "
    "comprehensive cycle of analysis, summarization, exploration, reassessment, reflection, backtracing, and "
    "iteration to develop well-considered thinking process. In the response section, based on various attempts, "
    "explorations, and reflections from the thoughts section, systematically present the final solution that you "
    "deem correct. The response should summarize the thought process. Write your thoughts between "
    "<think></think> and write your response between <response></response> for each user query.";
static const char ali_granite_cite_prompt[] =
    "\nUse the symbols <|start_of_cite|> and <|end_of_cite|> to indicate when a fact comes from a document in "
    "the search result, e.g <|start_of_cite|> {document_id: 1}my fact <|end_of_cite|> for a fact from document "
    "1. Afterwards, list all the citations with their corresponding documents in an ordered list.";
static const char ali_granite_hallu_prompt[] =
    "\nFinally, after the response is written, include a numbered list of sentences from the response with a "
    "corresponding risk value that are hallucinated and not based in the documents.";

/* tools: the tools list (NULL = none); controls: Granite's controls object (NULL = none). */
static void ali_render_granite(ali_cb *b, const al_chat_msg *m, int n, const al_chat_doc *docs, int n_docs,
                               int agp, const char *date, json_t *tools, int thinking, json_t *controls)
{
    int first = 0;
    ali_cb_str(b, "<|start_of_role|>system<|end_of_role|>");
    if (!strcmp(m[0].role, "system")) {
        ali_cb_str(b, m[0].content);
        first = 1;
    } else {
        ali_cb_str(b, "Knowledge Cutoff Date: April 2024.\nToday's Date: ");
        ali_cb_str(b, date);
        ali_cb_str(b, ".\nYou are Granite, developed by IBM.");
        if (tools) {
            ali_cb_str(b, ali_granite_tools_prompt);
            if (n_docs) {
                ali_cb_str(b, "\n");
                ali_cb_str(b, ali_granite_docs_prompt + 1);
            }
        } else {
            ali_cb_str(b, n_docs     ? ali_granite_docs_prompt
                          : thinking ? ali_granite_think_prompt
                                     : " You are a helpful AI assistant.");
        }
        /* the template tests the keys ('citations' in controls), not their values */
        if (n_docs && json_object_get(controls, "citations"))
            ali_cb_str(b, ali_granite_cite_prompt);
        if (n_docs && json_object_get(controls, "hallucinations"))
            ali_cb_str(b, ali_granite_hallu_prompt);
    }
    ali_cb_str(b, "<|end_of_text|>\n");
    ali_granite_tools(b, tools);
    for (int i = 0; i < n_docs; i++) {
        ali_cb_str(b, "<|start_of_role|>document {\"document_id\": \"");
        ali_cb_str(b, docs[i].doc_id ? docs[i].doc_id : "");
        ali_cb_str(b, "\"}<|end_of_role|>\n");
        ali_cb_str(b, docs[i].text);
        ali_cb_str(b, "<|end_of_text|>\n");
    }
    for (int i = first; i < n; i++) {
        ali_cb_str(b, "<|start_of_role|>");
        ali_cb_str(b, m[i].role);
        ali_cb_str(b, "<|end_of_role|>");
        ali_cb_str(b, m[i].content);
        ali_granite_calls(b, &m[i]);
        ali_cb_str(b, "<|end_of_text|>\n");
        if (i == n - 1 && agp) {
            ali_cb_str(b, "<|start_of_role|>assistant");
            if (json_object_size(controls) > 0) { /* Jinja's tojson: json.dumps, ", " and ": " */
                char *js = json_dumps(controls, JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
                ali_cb_str(b, " ");
                if (js)
                    ali_cb_str(b, js);
                else
                    b->oom = 1;
                free(js);
            }
            ali_cb_str(b, "<|end_of_role|>");
        }
    }
}

/* One Llama 3 turn: a tool-call turn or a tool result (chat_tools.c) or a plain turn (content
 * trimmed). */
static void ali_llama_turn(ali_cb *b, const al_chat_msg *m)
{
    if (!ali_llama_tool_turn(b, m)) {
        ali_cb_str(b, "<|start_header_id|>");
        ali_cb_str(b, m->role);
        ali_cb_str(b, "<|end_header_id|>\n\n");
        ali_cb_trimmed(b, m->content);
    }
    ali_cb_str(b, "<|eot_id|>");
}

/* ChatML; with tools the Hermes / Qwen layout (tools in the system turn, <tool_call> blocks,
 * consecutive tool results in one user turn of <tool_response> blocks: chat_tools.c). */
static void ali_render_chatml(ali_cb *b, const al_chat_msg *m, int n, json_t *tools, int agp)
{
    for (int i = ali_chatml_tools(b, m, n, tools); i < n; i++) {
        if (ali_chatml_tool_result(b, m, n, i))
            continue;
        ali_cb_str(b, "<|im_start|>");
        ali_cb_str(b, m[i].role);
        ali_cb_str(b, "\n");
        ali_cb_str(b, m[i].content);
        ali_chatml_calls(b, &m[i]);
        ali_cb_str(b, "<|im_end|>\n");
    }
    if (agp)
        ali_cb_str(b, "<|im_start|>assistant\n");
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
    json_t *controls = NULL;
    if (opts && opts->controls && f == AL_CHAT_GRANITE) {
        json_error_t je;
        controls = json_loads(opts->controls, JSON_DECODE_ANY, &je);
        if (!json_is_object(controls)) {
            json_decref(controls);
            return ali_errf(AL_EINVAL, "chat: controls: expected a JSON object");
        }
    }
    json_t *tools = ali_tools_list(opts);
    ali_cb b = {0};
    ali_cb_add(&b, "", 0);
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
        ali_render_granite(&b, msgs, n, docs, n_docs, add_generation_prompt, date, tools, opts && opts->thinking,
                           controls);
        break;
    }
    case AL_CHAT_LLAMA3: {
        int i = 0;
        if (tools)
            i = ali_llama_tools_head(&b, msgs, n, tools);
        else
            ali_cb_str(&b, "<|begin_of_text|>");
        for (; i < n; i++)
            ali_llama_turn(&b, &msgs[i]);
        if (add_generation_prompt)
            ali_cb_str(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        break;
    }
    case AL_CHAT_CHATML:
        ali_render_chatml(&b, msgs, n, tools, add_generation_prompt);
        break;
    case AL_CHAT_RAW:
        ali_raw_tools(&b, tools);
        for (int i = 0; i < n; i++) {
            if (i)
                ali_cb_str(&b, "\n");
            ali_cb_str(&b, msgs[i].content);
            ali_raw_calls(&b, &msgs[i]);
        }
        break;
    default:
        json_decref(tools);
        json_decref(controls);
        free(b.s);
        return ali_errf(AL_EINVAL, "chat: unknown format %d", (int)f);
    }
    json_decref(tools);
    json_decref(controls);
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
    ali_cb b = {0};
    ali_cb_add(&b, "", 0);
    for (size_t k = 0; k < json_array_size(v); k++) {
        json_t *p = json_array_get(v, k), *type = json_object_get(p, "type"),
               *text = json_object_get(p, "text");
        if (!json_is_object(p) || !json_is_string(type) || strcmp(json_string_value(type), "text") ||
            !json_is_string(text)) {
            free(b.s);
            return ali_errf(AL_EFORMAT, "messages[%d].content[%zu]: expected {\"type\": \"text\", "
                            "\"text\": string}", i, k);
        }
        ali_cb_add(&b, json_string_value(text), json_string_length(text));
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
        const char *rs = json_string_value(role);
        if (!strcmp(rs, "developer")) /* OpenAI's newer name of the system role */
            rs = "system";
        if (strcmp(rs, "system") && strcmp(rs, "user") && strcmp(rs, "assistant") && strcmp(rs, "tool"))
            return ali_errf(AL_EFORMAT, "messages[%zu].role: '%.40s' is not one of system, developer, user, "
                            "assistant, tool", i, rs);
        AL_TRY(ali_dup(rs, strlen(rs), &c->msgs[i].role));
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
