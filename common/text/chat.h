/* chat.h: built-in chat templates (granite, llama3, chatml, raw) and OpenAI-style message JSON. */
#ifndef AL_CHAT_H
#define AL_CHAT_H

#include <stddef.h>

#include "common/err.h"

typedef enum { AL_CHAT_RAW, AL_CHAT_GRANITE, AL_CHAT_LLAMA3, AL_CHAT_CHATML } al_chat_format;

/* One function call of an assistant turn (OpenAI tool_calls[i]). */
typedef struct al_chat_tool_call {
    const char *id;        /* "call_..."; NULL = none (not rendered by the built-in templates) */
    const char *name;      /* the function */
    const char *arguments; /* JSON text of the arguments object (rendered parsed, as vLLM does) */
} al_chat_tool_call;

typedef struct {
    const char *role;
    const char *content;                 /* "" for an assistant turn that only calls tools */
    const al_chat_tool_call *tool_calls; /* assistant: [n_tool_calls] calls, NULL = none */
    int n_tool_calls;
    const char *tool_call_id; /* role "tool": the call it answers (not rendered) */
} al_chat_msg;

/* A function the model may call (OpenAI tools[i]). */
typedef struct al_chat_tool {
    const char *name;
    const char *json; /* the whole definition as sent, {"type":"function","function":{...}} (JSON text) */
} al_chat_tool;

typedef struct {
    const char *title;  /* not rendered by the Granite 3.3 template; kept for callers */
    const char *text;
    const char *doc_id; /* Granite's document_id; NULL renders as "" like the template */
} al_chat_doc;

typedef struct al_chat_opts {
    /* Granite's default system prompt "Today's Date: ..." ("April 16, 2025"); NULL = today. */
    const char *date;
    /* Functions the model may call, rendered the way each template does (see al_chat_render). */
    const al_chat_tool *tools;
    int n_tools;
    /* Granite 3.3's chat_template_kwargs (other formats ignore them, as their templates do):
     * thinking: the default system prompt asks for <think></think><response></response>;
     * controls: a JSON object, e.g. {"citations": true, "length": "short"}: with documents, the
     * keys "citations" / "hallucinations" extend the default system prompt, and a non-empty object
     * follows the generation prompt's role ("assistant {...}"). NULL = none. */
    int thinking;
    const char *controls;
} al_chat_opts;

/* Renders a conversation exactly like the model's Hugging Face chat template:
 *   granite: ibm-granite/granite-3.3-8b-instruct (system prompt, documents, tools, thinking,
 *            controls)
 *   llama3:  meta-llama/Meta-Llama-3-8B-Instruct (contents trimmed, BOS text included); with
 *            tools, meta-llama/Llama-3.1-8B-Instruct (tools in the first user turn)
 *   chatml:  <|im_start|>role\ncontent<|im_end|>\n; with tools, the Hermes / Qwen layout
 *   raw:     contents joined with "\n"; the generation prompt adds nothing.
 * Tools (opts->tools) and tool turns (assistant tool_calls, role "tool"):
 *   granite: an available_tools turn (the list, JSON with indent 4) after the system turn (whose
 *            default prompt then names the tools); calls "<|tool_call|>[{"name": .., "arguments":
 *            {..}}]" after the turn's content; results as role "tool"
 *   llama3:  "Environment: ipython" system turn, the tools (indent 4) and the "Given the following
 *            functions..." preamble in the first user turn; a call is {"name": .., "parameters":
 *            {..}} (several joined with "; "); results as role "ipython", content as a JSON string
 *   chatml:  "# Tools ... <tools>\n{..}\n</tools> ..." in the system turn; calls
 *            "<tool_call>\n{"name": .., "arguments": {..}}\n</tool_call>"; consecutive results
 *            in one user turn, each "\n<tool_response>\n..\n</tool_response>"
 *   raw:     a first line "Tools: [..]" (the definitions, JSON); a call turn is the JSON list of calls.
 * Documents are only supported by granite (AL_EUNSUPPORTED otherwise). The rendered text
 * already holds any BOS text: encode it with add_special = 0. *out is malloc'd. */
al_err al_chat_render(al_chat_format f, const al_chat_msg *msgs, int n, const al_chat_doc *docs,
                      int n_docs, int add_generation_prompt, char **out);
al_err al_chat_render_ex(al_chat_format f, const al_chat_msg *msgs, int n,
                         const al_chat_doc *docs, int n_docs, int add_generation_prompt,
                         const al_chat_opts *opts, char **out);

/* ---- tool calls in model output ----
 * The text that starts the model's tool calls, to append to the generation prompt when the
 * output is constrained to be calls (static): granite "<|tool_call|>", chatml "<tool_call>\n",
 * llama3 and raw "". The constrained JSON is then the rest of the call syntax: a JSON list of
 * {"name", "arguments"} (granite, raw), one {"name", "arguments"} (chatml) or one
 * {"name", "parameters"} (llama3). */
const char *al_chat_tool_call_prefix(al_chat_format f);

/* Tool calls read out of a model's output. */
typedef struct al_chat_parsed {
    char *content;            /* the text before the calls (trimmed), or the whole text when none */
    al_chat_tool_call *calls; /* [n_calls]; id NULL, arguments compact JSON of an object */
    int n_calls;
} al_chat_parsed;

/* Reads the template's tool-call syntax out of text (vLLM's granite / hermes / llama3_json
 * parsers): granite "<|tool_call|>" or "<tool_call>" then a JSON list (or a bare list, when the
 * tokenizer dropped the special token); chatml "<tool_call>{..}</tool_call>" blocks (the last may
 * be unclosed); llama3 "{..}" objects separated by ";" (after an optional "<|python_tag|>"); raw a
 * JSON list or object of calls. A call is {"name": one of tools[], "arguments" or "parameters":
 * an object (or a JSON string of one)}. Anything else, an unknown name included, is content
 * (n_calls = 0). Errors only for memory. */
al_err al_chat_parse_tool_calls(al_chat_format f, const char *text, const al_chat_tool *tools, int n_tools,
                                al_chat_parsed *out);
void al_chat_parsed_free(al_chat_parsed *p);

/* While streaming: how many bytes of text (the output so far) are content for certain, i.e.
 * cannot be part of a tool call (what may follow is held back: a possible start of a call, a
 * partial marker, trailing whitespace). */
size_t al_chat_tool_content_len(al_chat_format f, const char *text, size_t len);

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
 * string or a list of {"type":"text","text":..} parts (joined); an assistant message may carry
 * "tool_calls": [{"id", "type": "function", "function": {"name", "arguments": a JSON string
 * or an object}}] and then a null or absent content (""); a "tool" message may carry
 * "tool_call_id". A document has "text" and optional "title" and "doc_id" (string or integer).
 * Errors name the bad field, e.g. "messages[1].content: expected a string or a list of text
 * parts", "messages[2].tool_calls[0].function.name: expected a non-empty string". */
al_err al_chat_parse_json(const char *json, size_t len, al_chat **out);
void al_chat_free(al_chat *c);

#endif
