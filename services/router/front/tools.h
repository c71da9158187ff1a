/* tools.h: OpenAI tool calling on the base model: a forced call's constraint, calls in the output. */
#ifndef AL_TOOLS_H
#define AL_TOOLS_H

#include "common/text/chat.h"
#include "services/router/front/openai.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 1 when the request's output must be read for tool calls (tools given, tool_choice not "none"). */
int al_oai_tools_active(const al_oai_request *r);

/* 1 when tool_choice forces a call ("required" or a named function). */
int al_oai_tools_forced(const al_oai_request *r);

/* For a forced call: sets r->constraint (AL_CONSTRAINT_JSON_SCHEMA, field "tool_choice") to the
 * JSON schema of the calls in f's syntax after al_chat_tool_call_prefix(f): granite and raw a list
 * of 1+ {"name": const, "arguments": parameters} (1 when named or parallel_tool_calls is false),
 * chatml one {"name", "arguments"}, llama3 one {"name", "parameters"}; several tools are an anyOf
 * (local $refs of each parameters schema are re-rooted). AL_EINVAL naming tool_choice when a
 * structured output is set too, or "tools: ..." when the engine cannot take the schema. A no-op
 * for other choices. */
al_err al_oai_tools_constraint(al_oai_request *r, al_chat_format f);

/* Reads the calls out of the generated text (after the forced prefix, when forced), as
 * al_chat_parse_tool_calls does; each call gets an id "call_" + 24 hex digits; with
 * parallel_tool_calls false only the first call is kept. No call: out->content = text. */
al_err al_oai_tools_parse_output(const al_oai_request *r, al_chat_format f, const char *text,
                                 al_chat_parsed *out);

/* "call_" + 24 random hex digits. */
void al_oai_tool_call_id(char *buf, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
