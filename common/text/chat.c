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

static const char ali_granite_docs_prompt[] =
    " Write the response to the user's input by strictly aligning with the facts in the provided "
    "documents. If the information needed to answer the question is not available in the "
    "documents, inform the user that the question cannot be answered based on the available "
    "data.";

static void ali_render_granite(cb *b, const al_chat_msg *m, int n, const al_chat_doc *docs,
                               int n_docs, int agp, const char *date)
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
        cb_str(b, n_docs ? ali_granite_docs_prompt : " You are a helpful AI assistant.");
    }
    cb_str(b, "<|end_of_text|>\n");
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
        cb_str(b, "<|end_of_text|>\n");
        if (i == n - 1 && agp)
            cb_str(b, "<|start_of_role|>assistant<|end_of_role|>");
    }
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
        ali_render_granite(&b, msgs, n, docs, n_docs, add_generation_prompt, date);
        break;
    }
    case AL_CHAT_LLAMA3:
        cb_str(&b, "<|begin_of_text|>");
        for (int i = 0; i < n; i++) {
            cb_str(&b, "<|start_header_id|>");
            cb_str(&b, msgs[i].role);
            cb_str(&b, "<|end_header_id|>\n\n");
            cb_trimmed(&b, msgs[i].content);
            cb_str(&b, "<|eot_id|>");
        }
        if (add_generation_prompt)
            cb_str(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        break;
    case AL_CHAT_CHATML:
        for (int i = 0; i < n; i++) {
            cb_str(&b, "<|im_start|>");
            cb_str(&b, msgs[i].role);
            cb_str(&b, "\n");
            cb_str(&b, msgs[i].content);
            cb_str(&b, "<|im_end|>\n");
        }
        if (add_generation_prompt)
            cb_str(&b, "<|im_start|>assistant\n");
        break;
    case AL_CHAT_RAW:
        for (int i = 0; i < n; i++) {
            if (i)
                cb_str(&b, "\n");
            cb_str(&b, msgs[i].content);
        }
        break;
    default:
        free(b.s);
        return ali_errf(AL_EINVAL, "chat: unknown format %d", (int)f);
    }
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
        if (!json_is_string(role) || json_string_length(role) == 0)
            return ali_errf(AL_EFORMAT, "messages[%zu].role: expected a non-empty string", i);
        if (!content)
            return ali_errf(AL_EFORMAT, "messages[%zu].content: missing", i);
        if (strlen(json_string_value(role)) != json_string_length(role))
            return ali_errf(AL_EFORMAT, "messages[%zu].role: contains NUL", i);
        AL_TRY(ali_dup(json_string_value(role), json_string_length(role), &c->msgs[i].role));
        c->n_msgs++;
        AL_TRY(ali_parse_content(content, (int)i, &c->msgs[i].content));
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
