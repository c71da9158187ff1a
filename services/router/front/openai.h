/* openai.h: OpenAI-compatible request parsing/validation, response and SSE chunk builders, JSON error bodies.
 */
#ifndef AL_OPENAI_H
#define AL_OPENAI_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/err.h"
#include "common/text/chat.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum al_oai_kind { AL_OAI_CHAT, AL_OAI_COMPLETION } al_oai_kind;

#define AL_OAI_MAX_STOP 4
#define AL_OAI_MAX_LOGIT_BIAS 300
#define AL_OAI_MAX_TOP_LOGPROBS 20
#define AL_OAI_DEFAULT_MAX_BODY ((size_t)8 << 20)

typedef struct al_oai_limits {
    size_t max_body;       /* request body bytes (0 = AL_OAI_DEFAULT_MAX_BODY) */
    int max_tokens;        /* upper bound of max_tokens (0 = 1 << 20) */
    int max_prompt_tokens; /* upper bound of a token-list prompt (0 = 1 << 20) */
} al_oai_limits;

#define AL_OAI_MAX_TOOLS 128

/* tool_choice (chat): "none" (tools rendered, never called), "auto" (the model may call: the
 * output is parsed), "required" (at least one call, constrained), a named function (one call of
 * it, constrained). */
typedef enum al_oai_tool_choice {
    AL_OAI_TOOLS_NONE,
    AL_OAI_TOOLS_AUTO,
    AL_OAI_TOOLS_REQUIRED,
    AL_OAI_TOOLS_NAMED
} al_oai_tool_choice;

/* The request's tools (services/router/front/tools.h). Owned by the request. */
typedef struct al_oai_tools {
    al_chat_tool *defs; /* [n]: name and the definition's JSON (rendered by the chat template) */
    char **params;      /* [n]: the parameters schema (JSON text; an empty object schema when absent) */
    int n;
    int choice;   /* al_oai_tool_choice: auto when tools are given, else none */
    int named;    /* AL_OAI_TOOLS_NAMED: the index of the function in defs */
    int parallel; /* parallel_tool_calls (default 1); 0: at most one call */
} al_oai_tools;

/* A validated request. Absent optional fields keep the defaults noted. Owned by the struct. */
typedef struct al_oai_request {
    al_oai_kind kind;
    char *model;            /* required: the base model or an intrinsic name */
    al_chat *chat;          /* chat: messages and (extension) documents */
    char *prompt;           /* completions: text prompt, NULL when given as token ids */
    int32_t *prompt_tokens; /* completions: [n_prompt_tokens] ids when given as a list */
    int n_prompt_tokens;
    int max_tokens;           /* max_completion_tokens, else max_tokens; -1 = not given */
    double temperature;       /* [0, 2], default 1 */
    double top_p;             /* (0, 1], default 1 */
    double presence_penalty;  /* [-2, 2], default 0 */
    double frequency_penalty; /* [-2, 2], default 0 */
    double repetition_penalty; /* vLLM: (0, 100], default 1 (off) */
    int min_tokens;            /* vLLM: no end before this many tokens, default 0 */
    int keep_special;          /* vLLM skip_special_tokens: false -> special tokens stay in the text */
    int tokens_as_ids;         /* vLLM return_tokens_as_token_ids: logprobs name tokens "token_id:<id>" */
    int thinking;              /* chat_template_kwargs.thinking (Granite 3.3) */
    char *controls;            /* chat_template_kwargs.controls as compact JSON (Granite 3.3), NULL = none */
    int32_t *bias_ids;         /* [n_bias] logit_bias token ids ... */
    float *bias_vals;          /* [n_bias] ... and biases in [-100, 100] */
    int n_bias;
    /* structured output: response_format (json_object | json_schema), vLLM structured_outputs
     * (json | choice | regex | json_object) or guided_json / guided_choice / guided_regex */
    int constraint_kind;          /* al_constraint_kind (engine/constrain), 0 = none */
    char *constraint;             /* regex | JSON array of choices | schema JSON | "" */
    const char *constraint_field; /* the field it came from (messages), static */
    int has_seed;
    int64_t seed;
    char *stop[AL_OAI_MAX_STOP]; /* stop strings (a string or a list of up to 4) */
    int n_stop;
    int logprobs;      /* 1 = return the chosen tokens' logprobs */
    int top_logprobs;  /* alternatives per token, 0..20 (completions: the logprobs integer) */
    int stream;        /* SSE */
    int include_usage; /* stream_options.include_usage */
    int echo;          /* completions: the prompt comes back before the completion (and its logprobs) */
    al_oai_tools tools; /* chat: tools, tool_choice, parallel_tool_calls */
} al_oai_request;

/* Parse and validate a request body. Every error names the field:
 *   body too large -> AL_ERANGE ("body: N bytes exceeds the limit of M bytes") = HTTP 413;
 *   invalid JSON / not an object / wrong type / bad value -> AL_EINVAL (e.g. "temperature: expected
 *   a number in [0, 2]"), unsupported values (n > 1, echo) -> AL_EUNSUPPORTED: both HTTP 400.
 * null counts as absent; unknown fields are ignored, as OpenAI does. On error *out is zeroed. */
al_err al_oai_parse_chat(const char *body, size_t len, const al_oai_limits *lim, al_oai_request *out);
al_err al_oai_parse_completion(const char *body, size_t len, const al_oai_limits *lim, al_oai_request *out);
void al_oai_request_free(al_oai_request *r);

/* ---- errors ----
 * al_err -> HTTP status and stable code:
 *   AL_EINVAL, AL_EFORMAT, AL_EUNSUPPORTED, AL_EPROTO     400 invalid_argument
 *   AL_ENOTFOUND                                          404 not_found
 *   AL_ERANGE                                             413 request_too_large
 *   AL_EOVERLOADED, AL_ECAPACITY                          429 overloaded  (send Retry-After)
 *   AL_EUNAVAILABLE, AL_ECLOSED, AL_ETIMEDOUT, AL_ENODEV  503 unavailable
 *   anything else                                         500 internal */
int al_oai_http_status(al_err e);
const char *al_oai_error_code(al_err e);
/* {"error":{"code":"invalid_argument","message":"...","type":"invalid_request_error"}} */
al_err al_oai_error_body(al_err e, const char *message, char **out, size_t *len);
/* data: {"error":{...}}\n\n (an error after a stream has started) */
al_err al_oai_sse_error(al_err e, const char *message, char **out, size_t *len);

/* ---- responses ---- */
typedef struct al_oai_top {
    const char *token; /* token text (may be a partial UTF-8 sequence: "bytes" keeps it exact) */
    double logprob;
} al_oai_top;

typedef struct al_oai_token_logprob {
    const char *token;
    double logprob;
    const al_oai_top *top; /* [n_top] alternatives */
    int n_top;
    int no_context;        /* an echoed prompt's first token: its logprob and alternatives are null */
} al_oai_token_logprob;

typedef struct al_oai_usage {
    int prompt_tokens, completion_tokens, cached_tokens;
} al_oai_usage;

typedef struct al_oai_response {
    al_oai_kind kind;
    const char *id; /* al_oai_make_id */
    const char *model;
    int64_t created;                      /* unix seconds */
    const char *text;                     /* chat: message content; completions: text */
    const char *finish_reason;            /* "stop", "length", NULL */
    int has_logprobs;                     /* render logprobs (else null) */
    const al_oai_token_logprob *logprobs; /* [n_logprobs] */
    int n_logprobs;
    al_oai_usage usage;
    json_t *extra; /* optional, borrowed: its members are added to the top-level object */
    const al_chat_tool_call *tool_calls; /* chat: [n_tool_calls] calls (id, name, arguments) */
    int n_tool_calls;
} al_oai_response;

/* Non-streaming body: {"id","object":"chat.completion"|"text_completion","created","model",
 * "choices":[{"index":0,"message":{"role":"assistant","content":..}|"text":..,"logprobs":..,
 * "finish_reason":..}],"usage":{"prompt_tokens","completion_tokens","total_tokens",
 * "prompt_tokens_details":{"cached_tokens"}}} (compact JSON). With tool calls the message is
 * {"role","content" (null when empty),"tool_calls":[{"id","type":"function","function":{"name",
 * "arguments"}}]}. */
al_err al_oai_response_json(const al_oai_response *r, char **out, size_t *len);

typedef struct al_oai_chunk {
    al_oai_kind kind;
    const char *id, *model;
    int64_t created;
    int role;                  /* chat: delta carries "role":"assistant" (the first chunk) */
    const char *text;          /* delta content / text (NULL: chat omits "content"; completions "") */
    const char *finish_reason; /* NULL until the last content chunk */
    int has_logprobs;
    const al_oai_token_logprob *logprobs;
    int n_logprobs;
    const al_oai_usage *usage; /* non-NULL: the usage chunk ("choices":[] and "usage") */
    const al_chat_tool_call *tool_calls; /* chat: delta "tool_calls":[{"index","id","type",
                                          * "function":{"name","arguments"}}] (whole calls) */
    int n_tool_calls;
} al_oai_chunk;

/* "data: {...}\n\n" with object "chat.completion.chunk" / "text_completion". */
al_err al_oai_sse_chunk(const al_oai_chunk *c, char **out, size_t *len);
/* "data: [DONE]\n\n" */
const char *al_oai_sse_done(void);

/* GET /v1/models: {"object":"list","data":[{"id","object":"model","created","owned_by"}, ...]} */
al_err al_oai_models_json(const char *const *ids, int n, int64_t created, const char *owned_by, char **out,
                          size_t *len);

/* prefix + "-" + 24 random hex digits, e.g. "chatcmpl-1f3a...". */
void al_oai_make_id(const char *prefix, char *buf, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
