/* router_http.h: internals of the router's HTTP front door (router_http*.c): calls, replies, SSE, state. */
#ifndef ROUTER_HTTP_H
#define ROUTER_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <nng/nng.h>

#include "common/text/chat.h"
#include "services/router/front/intrinsics.h"
#include "services/router/front/openai.h"
#include "services/router/http_server.h"
#include "services/router/router.h"

/* HTTP-side state of a session: its messages (for rendering the next turn) and the exact text whose
 * tokens the session holds (the next append sends only what the template adds after it). */
#define RH_SESS_RESULTS 64
typedef struct rh_sess {
    char id[64];
    al_chat_msg *msgs; /* owned strings */
    int n, cap;
    al_chat_doc *docs; /* owned strings, given at creation */
    int n_docs;
    char *committed;   /* rendered text appended so far */
    json_t *results;   /* the session's intrinsic results, oldest first (at most RH_SESS_RESULTS) */
    bool busy;         /* an HTTP operation is running on it */
    bool gone;         /* deleted or expired while busy: freed by its holder */
    struct rh_sess *next;
} rh_sess;

typedef struct router_http {
    router *r;
    hs_server *srv;        /* the HTTP/1.1 server (http_server.c) */
    int *key_inflight;     /* [api_keys.n] requests in flight per API key */
    struct rh_addr *addrs; /* requests in flight per client address */
    router_pool pool;
    bool pool_on;
    al_rpc_client *self;   /* this router's own RPC API (sessions) */
    al_intrinsics defs;    /* the intrinsics' definitions (parsers, instructions) from the cluster file */
    bool defs_ok;
    al_chat_format fmt;    /* chat template */
    int32_t stop_ids[8];   /* token ids that end an assistant turn (EOS and the template's) */
    int n_stop_ids;
    int64_t created;       /* unix seconds (models' "created") */
    pthread_mutex_t mu;
    rh_sess *sess;
    int pending, max_pending;
} router_http;

/* One HTTP request, handled on a pool thread. */
typedef struct rh_call {
    router_http *h;
    hs_conn *conn;
    char method[16];
    char path[1024];       /* decoded of its query string */
    char *body;            /* [len] + NUL */
    size_t len;
    const char *endpoint;  /* metrics label, e.g. "/v1/sessions/{id}/generate" */
    double t0;
    bool replied;
    int key_index;         /* index in r->cfg.router.api_keys of the key it authenticated with; -1 when no keys
                            * are configured (or a path that needs none came without a valid one) */
    char addr[64];         /* the client's address */
    bool counted;          /* holds a slot of the in-flight limits */
    bool close;            /* close the connection after this request */
    bool streaming;        /* SSE reply under way */
    bool broken;           /* the client went away */
} rh_call;

/* ---- replies (router_http.c); each records alora_requests_total{endpoint,code} ---- */
void rh_reply(rh_call *c, int status, const char *ctype, const char *body, size_t len);
void rh_reply_json(rh_call *c, int status, json_t *j); /* steals j */
/* JSON error from an al_err: status and code from al_oai_http_status (AL_ERANGE is 400 unless
 * body_too_large); retry_after_s > 0 adds Retry-After. msg: the message (field first). */
void rh_error(rh_call *c, al_err e, const char *msg);
void rh_error_ra(rh_call *c, al_err e, const char *msg, int retry_after_s);
/* al_errmsg() without the "METHOD: " prefix of an RPC error. */
const char *rh_errmsg(void);

/* ---- server-sent events (chunked, then the connection closes) ---- */
al_err rh_sse_begin(rh_call *c);                          /* status line + headers */
al_err rh_sse_send(rh_call *c, const char *data, size_t len); /* one chunk (chunked encoding) */
void rh_sse_end(rh_call *c);                              /* last chunk, close */

/* ---- helpers ---- */
json_t *rh_body_json(rh_call *c, al_err *e); /* the body as a JSON object (NULL + error message) */
bool rh_is_base(const router_http *h, const char *model);
const al_intrinsic *rh_def(const router_http *h, const char *name);
/* Renders and encodes a conversation (add_gen: the assistant prompt). */
al_err rh_render(router_http *h, const al_chat_msg *msgs, int n, const al_chat_doc *docs, int n_docs, int add_gen,
                 char **text);
al_err rh_encode(router_http *h, const char *text, int add_special, int32_t **ids, int32_t *n);
/* Intrinsic prompt: messages (+ instruction turn, documents as the intrinsic wants), rendered,
 * encoded, the invocation appended. */
al_err rh_intrinsic_prompt(router_http *h, const char *name, const al_chat_msg *msgs, int n, const al_chat_doc *docs,
                           int n_docs, int32_t **ids, int32_t *n_ids);
/* An intrinsic's output: tokens, logprobs, text and {"name","result","error"?,...} (info). */
typedef struct rh_iout {
    json_t *info;
    char *text;
    int32_t *toks, *tids; /* [n], [n * top_n] */
    float *lp, *tlp;
    int n, top_n;
    const char *finish;
    uint32_t cached, computed;
    int32_t prompt_tokens;
    double ttft_ms;
} rh_iout;
/* Runs intrinsic `name` on toks through router_invoke_run (admission, lease, worker): stateless
 * (seq_id 0: toks include the invocation; routed by prefix) or on base sequence seq_id of base `base`
 * holding toks (invocation appended). */
al_err rh_run_intrinsic(router_http *h, const char *name, const int32_t *toks, int32_t n, uint64_t seq_id,
                        router_base *base, int max_tokens, int top_logprobs, const al_oai_request *q,
                        double t_accept, rh_iout *o);
/* The generation controls of request q (penalties, logit_bias, min_tokens, stop strings, its
 * structured output) into s, arrays in m. *stateful: a control that carries state from token to
 * token (a constraint, penalties, min_tokens): the output must come from one generate call. */
al_err rh_gen_fill(router *r, const al_oai_request *q, alora_Sampling *s, al_pbmem *m, bool *stateful);
/* An intrinsic call's controls: q's (may be NULL), and unless q brings a structured output, the
 * intrinsic's output contract (its closed set of outputs, or its parser's JSON schema). */
al_err rh_intr_controls(router_http *h, const char *name, const al_oai_request *q, alora_Sampling *s, al_pbmem *m);
al_err rh_iout_from_reply(router_http *h, const char *name, int32_t n_prompt, const alora_InvokeReply *rep,
                          rh_iout *o);
void rh_iout_free(rh_iout *o);
/* The intrinsic's parsed result (raw {"text"} when it has no definition). */
json_t *rh_parse_output(router_http *h, const char *name, const char *text, const int32_t *toks, size_t n,
                        const int32_t *top_ids, const float *top_lp, uint32_t top_n);

/* OpenAI logprobs of tokens [i0, i1) (token strings owned by l). */
typedef struct rh_lp {
    al_oai_token_logprob *v;
    int n;
    al_oai_top *tops;
    char **strs;
    int n_strs;
} rh_lp;
al_err rh_lp_build(router_http *h, const int32_t *toks, const float *lp, const int32_t *tids, const float *tlp, int i0,
                   int i1, int top_n, int want_top, rh_lp *l);
void rh_lp_free(rh_lp *l);
/* vLLM return_tokens_as_token_ids: l's token strings (of tokens [i0, i0 + l->n) of toks, and
 * alternatives tids with stride top_n) become "token_id:<id>". */
al_err rh_lp_as_ids(rh_lp *l, const int32_t *toks, const int32_t *tids, int i0, int top_n);
json_t *rh_timings_json(const alora_Timings *t);
void rh_count_error(al_err e);

/* ---- endpoints ---- */
void rh_openai(rh_call *c, al_oai_kind kind);  /* router_http_oai.c */
void rh_sessions(rh_call *c);                  /* router_http_sess.c */
void rh_sess_forget(router_http *h, const char *id);
void rh_sess_free_all(router_http *h);

#endif
