/* openai_int.h: the request parser's parts shared between openai*.c files. */
#ifndef AL_OPENAI_INT_H
#define AL_OPENAI_INT_H

#include "services/router/front/openai.h"

/* The generation extensions of a request body (openai_gen.c): logit_bias, repetition_penalty,
 * min_tokens, and the structured output (response_format, structured_outputs, guided_*), each
 * validated (a schema or regex the constraint engine cannot take is a 400 naming the field). */
al_err ali_oai_parse_gen(json_t *root, al_oai_request *r);

/* tools, tool_choice and parallel_tool_calls of a chat body (tools.c), each validated (a name
 * outside [A-Za-z0-9_-]{1,64}, a parameters schema the constraint engine cannot take, an unknown
 * tool_choice function: 400 naming the field). */
al_err ali_oai_parse_tools(json_t *root, al_oai_request *r);
void ali_oai_tools_free(al_oai_tools *t);

#endif
