/* chat_int.h: internals shared by chat.c and chat_tools.c (not a public API). */
#ifndef AL_CHAT_INT_H
#define AL_CHAT_INT_H

#include <jansson.h>
#include <stddef.h>

#include "common/text/chat.h"

/* ---- text buffer (chat.c): grows as needed; after a failed allocation oom is set and further
 * additions are dropped. Start with {0} and ali_cb_add(b, "", 0) for a "" string. ---- */
typedef struct ali_cb {
    char *s;
    size_t n, cap;
    int oom;
} ali_cb;
void ali_cb_add(ali_cb *b, const char *s, size_t n);
void ali_cb_str(ali_cb *b, const char *s);
/* s without leading and trailing whitespace, as Jinja's trim filter does (Python str.isspace). */
void ali_cb_trimmed(ali_cb *b, const char *s);

/* ---- Python's json.dumps (chat.c) ---- */
/* Any value, with indent > 0: "," + newline + indent * level spaces; compact: "," / ":". */
void ali_pj(ali_cb *b, json_t *v, int indent, int compact, int level);
void ali_pj_str(ali_cb *b, const char *s, size_t n); /* s[0..n) as a JSON string */
/* A compact JSON text of v (Python separators "," and ":"), malloc'd; NULL on OOM. */
char *ali_pj_compact(json_t *v);

/* ---- tools in the templates (chat_tools.c); each renders nothing when there is nothing to render. */
/* The tool definitions as one JSON list (NULL for none: the template leaves the section out). */
json_t *ali_tools_list(const al_chat_opts *o);

/* granite: the sentence the default system prompt gains with tools, the available_tools turn,
 * and a turn's calls ("<|tool_call|>[...]" after its content). */
extern const char ali_granite_tools_prompt[];
void ali_granite_tools(ali_cb *b, json_t *tools);
void ali_granite_calls(ali_cb *b, const al_chat_msg *m);

/* llama3 with tools (Llama 3.1): the system turn and the first user turn with the tools, up to
 * its <|eot_id|>; returns how many messages it rendered. */
int ali_llama_tools_head(ali_cb *b, const al_chat_msg *m, int n, json_t *tools);
/* A tool-call turn or a tool result (role ipython), without its <|eot_id|>; 0 (nothing rendered)
 * for any other turn. */
int ali_llama_tool_turn(ali_cb *b, const al_chat_msg *m);

/* chatml with tools (Hermes / Qwen): the system turn with the tools (and the system message, if
 * m[0] is one); returns how many messages it rendered. */
int ali_chatml_tools(ali_cb *b, const al_chat_msg *m, int n, json_t *tools);
/* m[i] if it is a tool result (consecutive results share one user turn); 0 when it is not. */
int ali_chatml_tool_result(ali_cb *b, const al_chat_msg *m, int n, int i);
void ali_chatml_calls(ali_cb *b, const al_chat_msg *m); /* <tool_call> blocks after the content */

/* raw: the "Tools: [..]" line and a turn's JSON list of calls. */
void ali_raw_tools(ali_cb *b, json_t *tools);
void ali_raw_calls(ali_cb *b, const al_chat_msg *m);

#endif
