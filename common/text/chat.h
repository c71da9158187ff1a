/* chat.h: built-in chat templates (granite, llama3, chatml, raw) and OpenAI-style message JSON. */
#ifndef AL_CHAT_H
#define AL_CHAT_H

#include <stddef.h>

#include "common/err.h"

typedef enum { AL_CHAT_RAW, AL_CHAT_GRANITE, AL_CHAT_LLAMA3, AL_CHAT_CHATML } al_chat_format;

typedef struct {
    const char *role;
    const char *content;
} al_chat_msg;

typedef struct {
    const char *title;  /* not rendered by the Granite 3.3 template; kept for callers */
    const char *text;
    const char *doc_id; /* Granite's document_id; NULL renders as "" like the template */
} al_chat_doc;

typedef struct al_chat_opts {
    /* Granite's default system prompt "Today's Date: ..." ("April 16, 2025"); NULL = today. */
    const char *date;
} al_chat_opts;

/* Renders a conversation exactly like the model's Hugging Face chat template:
 *   granite: ibm-granite/granite-3.3-8b-instruct (system prompt, documents, no tools/controls)
 *   llama3:  meta-llama/Meta-Llama-3-8B-Instruct (contents trimmed, BOS text included)
 *   chatml:  <|im_start|>role\ncontent<|im_end|>\n
 *   raw:     contents joined with "\n"; the generation prompt adds nothing.
 * Documents are only supported by granite (AL_EUNSUPPORTED otherwise). The rendered text
 * already holds any BOS text: encode it with add_special = 0. *out is malloc'd. */
al_err al_chat_render(al_chat_format f, const al_chat_msg *msgs, int n, const al_chat_doc *docs,
                      int n_docs, int add_generation_prompt, char **out);
al_err al_chat_render_ex(al_chat_format f, const al_chat_msg *msgs, int n,
                         const al_chat_doc *docs, int n_docs, int add_generation_prompt,
                         const al_chat_opts *opts, char **out);

/* "raw", "granite", "llama3", "chatml" */
al_err al_chat_format_parse(const char *name, al_chat_format *f);
const char *al_chat_format_name(al_chat_format f);

/* From a tokenizer_config.json chat_template (may be NULL): <|start_of_role|> -> granite,
 * <|start_header_id|> -> llama3, <|im_start|> -> chatml, else raw. */
al_chat_format al_chat_detect(const char *chat_template);

/* Strings that end an assistant turn (static storage). */
void al_chat_stop_strings(al_chat_format f, const char *const **out, int *n);

/* A parsed conversation; every string is owned by it. */
typedef struct al_chat {
    al_chat_msg *msgs;
    int n_msgs;
    al_chat_doc *docs;
    int n_docs;
} al_chat;

/* Parses [{"role":..,"content":..}, ...] or {"messages":[...], "documents":[...]}. content is a
 * string or a list of {"type":"text","text":..} parts (joined); a document has "text" and
 * optional "title" and "doc_id" (string or integer). Errors name the bad field, e.g.
 * "messages[1].content: expected a string or a list of text parts". */
al_err al_chat_parse_json(const char *json, size_t len, al_chat **out);
void al_chat_free(al_chat *c);

#endif
