/* router_http_oai.c: POST /v1/chat/completions and /v1/completions: the base model (SeqCreate +
 * stepwise SeqGenerate, streamed as SSE) or an intrinsic (model = its name; parsed result added). */
#include "services/router/router_http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/util.h"
#include "services/common/wire.h"
#include "services/router/front/metrics.h"
#include "services/router/front/tools.h"

#define RH_STREAM_STEP 8 /* tokens per SeqGenerate call while streaming (the first call makes 1) */

static int rh_timeout(const router *r)
{
    return r->cfg.router.request_timeout_ms > 0 ? r->cfg.router.request_timeout_ms : 60000;
}

typedef struct rh_out {
    int32_t *toks, *tids;
    float *lp, *tlp;
    int n, cap, top_n;
} rh_out;

static al_err rh_out_push(rh_out *o, const alora_SeqGenerateReply *g)
{
    const int32_t *t, *ti;
    const float *lp, *tl;
    size_t n = al_pb_i32(&g->tokens, &t), nlp = al_pb_f32(&g->logprobs.logprob, &lp);
    size_t nti = al_pb_i32(&g->logprobs.top_ids, &ti);
    al_pb_f32(&g->logprobs.top_logprobs, &tl);
    int top_n = (int)g->logprobs.top_n;
    if (nti != n * (size_t)top_n)
        top_n = 0;
    if (o->n == 0)
        o->top_n = top_n;
    if (top_n != o->top_n)
        o->top_n = 0;
    if ((size_t)o->n + n > (size_t)o->cap) {
        int cap = o->cap ? o->cap : 64;
        while ((size_t)cap < (size_t)o->n + n)
            cap *= 2;
        int32_t *a = realloc(o->toks, sizeof(int32_t) * (size_t)cap);
        if (a)
            o->toks = a;
        float *b = realloc(o->lp, sizeof(float) * (size_t)cap);
        if (b)
            o->lp = b;
        int32_t *c = realloc(o->tids, sizeof(int32_t) * (size_t)cap * 20);
        if (c)
            o->tids = c;
        float *d = realloc(o->tlp, sizeof(float) * (size_t)cap * 20);
        if (d)
            o->tlp = d;
        if (!a || !b || !c || !d)
            return ali_errf(AL_ENOMEM, "router: out of memory");
        o->cap = cap;
    }
    for (size_t i = 0; i < n; i++) {
        o->toks[o->n + i] = t[i];
        o->lp[o->n + i] = nlp == n ? lp[i] : 0;
        for (int j = 0; j < o->top_n && j < 20; j++) {
            o->tids[(size_t)(o->n + i) * 20 + j] = ti[i * (size_t)top_n + j];
            o->tlp[(size_t)(o->n + i) * 20 + j] = tl[i * (size_t)top_n + j];
        }
    }
    o->n += (int)n;
    return AL_OK;
}

static void rh_out_free(rh_out *o)
{
    free(o->toks);
    free(o->tids);
    free(o->lp);
    free(o->tlp);
}

/* Decoded text of o (special tokens skipped unless keep_special). */
static char *rh_decode(router_http *h, const int32_t *t, int n, int keep_special)
{
    char *s = NULL;
    size_t len = 0;
    if (!h->r->tok || al_tokenizer_decode(h->r->tok, t, n, !keep_special, &s, &len) != AL_OK)
        return strdup("");
    return s;
}

/* Earliest stop string in text: its offset, or -1. */
static long rh_find_stop(const al_oai_request *q, const char *text)
{
    long best = -1;
    for (int i = 0; i < q->n_stop; i++) {
        if (!q->stop[i][0])
            continue;
        const char *p = strstr(text, q->stop[i]);
        if (p && (best < 0 || p - text < best))
            best = p - text;
    }
    return best;
}

static size_t rh_max_stop_len(const al_oai_request *q)
{
    size_t m = 0;
    for (int i = 0; i < q->n_stop; i++)
        if (strlen(q->stop[i]) > m)
            m = strlen(q->stop[i]);
    return m;
}

static al_err rh_send_chunk(rh_call *c, const al_oai_chunk *ch, json_t *extra)
{
    char *s = NULL;
    size_t n = 0;
    AL_TRY(al_oai_sse_chunk(ch, &s, &n));
    if (extra && n > 8) { /* add the extra members to the chunk object */
        json_t *j = json_loadb(s + 6, n - 8, 0, NULL);
        if (j) {
            json_object_update(j, extra);
            char *d = json_dumps(j, JSON_COMPACT);
            json_decref(j);
            if (d) {
                free(s);
                n = strlen(d) + 8;
                s = malloc(n + 1);
                if (s)
                    snprintf(s, n + 1, "data: %s\n\n", d);
                free(d);
                if (!s)
                    return ali_errf(AL_ENOMEM, "router: out of memory");
            }
        }
    }
    al_err e = rh_sse_send(c, s, n);
    free(s);
    return e;
}

static void rh_observe_ttft(double s)
{
    const al_alora_metrics *am = al_metrics_alora();
    if (am)
        al_metric_observe(am->ttft, NULL, s);
}

/* ---- generation controls ------------------------------------------------------------------------ */

static const alora_ConstraintKind rh_kinds[] = {
    [AL_CONSTRAINT_NONE] = alora_ConstraintKind_CONSTRAINT_NONE,
    [AL_CONSTRAINT_REGEX] = alora_ConstraintKind_CONSTRAINT_REGEX,
    [AL_CONSTRAINT_CHOICE] = alora_ConstraintKind_CONSTRAINT_CHOICE,
    [AL_CONSTRAINT_JSON_SCHEMA] = alora_ConstraintKind_CONSTRAINT_JSON_SCHEMA,
    [AL_CONSTRAINT_JSON_OBJECT] = alora_ConstraintKind_CONSTRAINT_JSON_OBJECT,
};

al_err rh_gen_fill(router *r, const al_oai_request *q, alora_Sampling *s, al_pbmem *m, bool *stateful)
{
    s->frequency_penalty = (float)q->frequency_penalty;
    s->presence_penalty = (float)q->presence_penalty;
    s->repetition_penalty = q->repetition_penalty == 1 ? 0 : (float)q->repetition_penalty;
    s->min_tokens = (uint32_t)q->min_tokens;
    if (q->max_tokens > 0 && q->min_tokens > q->max_tokens)
        return ali_errf(AL_EINVAL, "min_tokens: %d > max_tokens %d", q->min_tokens, q->max_tokens);
    for (int i = 0; i < q->n_bias; i++)
        if (r->vocab > 0 && q->bias_ids[i] >= r->vocab)
            return ali_errf(AL_EINVAL, "logit_bias: token %d is outside the vocabulary [0, %d)", q->bias_ids[i],
                            r->vocab);
    if (q->n_bias) {
        AL_TRY(al_pb_set_i32(&s->logit_bias_ids, m, q->bias_ids, (size_t)q->n_bias));
        AL_TRY(al_pb_set_f32(&s->logit_bias_values, m, q->bias_vals, (size_t)q->n_bias));
    }
    if (q->n_stop) {
        size_t len[AL_OAI_MAX_STOP];
        for (int i = 0; i < q->n_stop; i++)
            len[i] = strlen(q->stop[i]);
        AL_TRY(ali_errctx(al_pb_set_stop(s, m, (const char *const *)q->stop, len, q->n_stop), "stop"));
    }
    if (q->constraint_kind) {
        s->constraint_kind = rh_kinds[q->constraint_kind];
        AL_TRY(al_pb_set_bytes(&s->constraint, m, q->constraint, strlen(q->constraint)));
    }
    *stateful = q->constraint_kind || q->frequency_penalty != 0 || q->presence_penalty != 0 ||
                q->repetition_penalty != 1 || q->min_tokens > 0 || q->n_stop > 0;
    return AL_OK;
}

/* ---- base model --------------------------------------------------------------------------------- */

/* The end of a streamed answer whose output is read for tool calls: with calls, the content not
 * yet sent (the text before the calls), one delta with every call, then the finish chunk
 * ("tool_calls"). *done = 0 when the output holds no call (the caller streams the rest as text). */
static al_err rh_tools_stream_end(rh_call *c, const al_oai_request *q, const char *id, int64_t created,
                                  const char *text, size_t emitted, const rh_lp *lp, int *done)
{
    router_http *h = c->h;
    al_chat_parsed tp;
    *done = 0;
    AL_TRY(al_oai_tools_parse_output(q, h->fmt, text, &tp));
    al_err e = AL_OK;
    if (tp.n_calls > 0) {
        *done = 1;
        size_t end = al_oai_tools_forced(q) ? 0 : al_chat_tool_content_len(h->fmt, text, strlen(text));
        char *rest = strndup(text + (end > emitted ? emitted : 0), end > emitted ? end - emitted : 0);
        if (!rest)
            e = ali_errf(AL_ENOMEM, "router: out of memory");
        al_oai_chunk ch = {.kind = q->kind,
                           .id = id,
                           .model = q->model,
                           .created = created,
                           .text = rest && *rest ? rest : NULL,
                           .tool_calls = tp.calls,
                           .n_tool_calls = tp.n_calls,
                           .has_logprobs = q->logprobs,
                           .logprobs = lp->v,
                           .n_logprobs = lp->n};
        if (e == AL_OK)
            e = rh_send_chunk(c, &ch, NULL);
        free(rest);
        al_oai_chunk fin = {
            .kind = q->kind, .id = id, .model = q->model, .created = created, .finish_reason = "tool_calls"};
        if (e == AL_OK)
            e = rh_send_chunk(c, &fin, NULL);
    }
    al_chat_parsed_free(&tp);
    return e;
}

/* rh_lp_build, then the request's token naming (return_tokens_as_token_ids). */
static al_err rh_lp_q(router_http *h, const al_oai_request *q, const int32_t *toks, const float *lp, const int32_t *tids,
                      const float *tlp, int i0, int i1, int top_n, int want_top, rh_lp *l)
{
    AL_TRY(rh_lp_build(h, toks, lp, tids, tlp, i0, i1, top_n, want_top, l));
    return q->tokens_as_ids ? rh_lp_as_ids(l, toks, tids, i0, top_n) : AL_OK;
}

/* echo: the prompt's text (as sent, or decoded from its ids) and, when plp is given, its tokens'
 * logprobs from the base (the first token has no context: null). */
static al_err rh_echo(router_http *h, const al_oai_request *q, const int32_t *prompt, int32_t np,
                      const alora_TokenLogprobs *plp, char **text, rh_lp *lp)
{
    *text = q->prompt ? strdup(q->prompt) : rh_decode(h, prompt, np, 1);
    if (!*text)
        return ali_errf(AL_ENOMEM, "router: out of memory");
    if (!plp)
        return AL_OK;
    const float *l, *tl;
    const int32_t *ti;
    size_t nl = al_pb_f32(&plp->logprob, &l), nt = al_pb_i32(&plp->top_ids, &ti);
    al_pb_f32(&plp->top_logprobs, &tl);
    int top_n = (int)plp->top_n;
    if (nl != (size_t)np || nt != (size_t)np * (size_t)top_n)
        return ali_errf(AL_EINTERNAL, "base: %zu prompt logprobs for %d prompt tokens", nl, np);
    AL_TRY(rh_lp_q(h, q, prompt, l, ti, tl, 0, np, top_n, q->top_logprobs, lp));
    if (lp->n > 0)
        lp->v[0].no_context = 1;
    return AL_OK;
}

static void rh_base(rh_call *c, const al_oai_request *q, const int32_t *prompt, int32_t np)
{
    router_http *h = c->h;
    router *r = h->r;
    int maxt = q->max_tokens >= 0 ? q->max_tokens : r->cfg.base.default_max_tokens;
    if (np <= 0) {
        rh_error(c, AL_EINVAL, q->kind == AL_OAI_CHAT ? "messages: empty prompt" : "prompt: empty");
        return;
    }
    if (r->max_pos > 0) {
        if (np >= r->max_pos) {
            char msg[160];
            snprintf(msg, sizeof msg, "%s: %d prompt tokens fill the model's context of %d",
                     q->kind == AL_OAI_CHAT ? "messages" : "prompt", np, r->max_pos);
            rh_error(c, AL_EINVAL, msg);
            return;
        }
        if (q->max_tokens < 0 && np + maxt > r->max_pos)
            maxt = r->max_pos - np;
        if (np + maxt > r->max_pos) {
            char msg[160];
            snprintf(msg, sizeof msg, "max_tokens: %d prompt tokens + max_tokens %d > the model's context %d", np,
                     maxt, r->max_pos);
            rh_error(c, AL_EINVAL, msg);
            return;
        }
    }
    if (maxt > ROUTER_MAX_GEN_TOKENS) {
        char msg[96];
        snprintf(msg, sizeof msg, "max_tokens: %d > max %d", maxt, ROUTER_MAX_GEN_TOKENS);
        rh_error(c, AL_EINVAL, msg);
        return;
    }
    alora_Sampling s = alora_Sampling_init_zero;
    s.temperature = (float)q->temperature;
    s.top_p = q->top_p >= 1 ? 0 : (float)q->top_p;
    s.top_logprobs = q->logprobs ? (uint32_t)(q->top_logprobs > 0 ? q->top_logprobs : 1) : 0;
    for (int i = 0; i < h->n_stop_ids && i < 16; i++)
        s.stop_token_ids[s.stop_token_ids_count++] = h->stop_ids[i];
    uint64_t seed = q->has_seed ? (uint64_t)q->seed : 0;
    if (q->has_seed && !seed)
        seed = 0x9E3779B97F4A7C15ull;
    al_pbmem sm = AL_PBMEM_INIT; /* the arrays of s: alive for every generate call */
    bool stateful = false;
    {
        al_err ge = rh_gen_fill(r, q, &s, &sm, &stateful);
        if (ge != AL_OK) {
            al_pbmem_free(&sm);
            rh_error(c, ge, al_errmsg());
            return;
        }
    }

    char id[64];
    al_oai_make_id(q->kind == AL_OAI_CHAT ? "chatcmpl" : "cmpl", id, sizeof id);
    int64_t created = (int64_t)time(NULL);
    al_pbmem m = AL_PBMEM_INIT;
    alora_SeqCreateRequest cq = alora_SeqCreateRequest_init_zero;
    alora_SeqCreateReply cr;
    rh_out o = {0};
    char *text = NULL;
    size_t emitted = 0;
    const char *finish = NULL;
    bool seq = false;
    /* the conversation's base (prefix affinity: a resent conversation meets its cached KV) */
    router_base *rb = router_base_route(r, prompt, np, NULL);
    al_err e = rb ? al_pb_ref_i32(&cq.tokens, &m, prompt, (size_t)np) : AL_EUNAVAILABLE;
    cq.prompt_logprobs = q->echo && q->logprobs;
    cq.prompt_top_logprobs = cq.prompt_logprobs ? (uint32_t)q->top_logprobs : 0;
    if (e == AL_OK && (e = al_rpc_call(rb->cli, alora_Method_BASE_SEQ_CREATE, &cq, &cr, &m, rh_timeout(r))) != AL_OK)
        e = ali_errctx(e, "base");
    seq = e == AL_OK;
    uint32_t cached = seq ? cr.prefix_cached_tokens : 0;
    uint64_t seq_id = seq ? cr.seq_id : 0;
    rh_lp echo_lp = {0}; /* echo: the prompt's logprobs */
    char *echo_text = NULL;
    if (e == AL_OK && q->echo)
        e = rh_echo(h, q, prompt, np, cq.prompt_logprobs ? &cr.prompt_logprobs : NULL, &echo_text, &echo_lp);
    al_pbmem_free(&m);
    if (e != AL_OK) {
        rh_error(c, e, rh_errmsg());
        goto out;
    }
    {
        const al_alora_metrics *am = al_metrics_alora();
        if (am)
            al_metric_add(am->prefix_hit_tokens, NULL, cached);
    }
    if (q->stream) {
        if ((e = rh_sse_begin(c)) != AL_OK)
            goto out;
        al_oai_chunk ch = {.kind = q->kind, .id = id, .model = q->model, .created = created, .role = 1,
                           .text = q->kind == AL_OAI_CHAT ? "" : NULL};
        if (q->kind == AL_OAI_CHAT && (e = rh_send_chunk(c, &ch, NULL)) != AL_OK)
            goto out;
        al_oai_chunk ec = {.kind = q->kind, .id = id, .model = q->model, .created = created, .text = echo_text,
                           .has_logprobs = q->logprobs, .logprobs = echo_lp.v, .n_logprobs = echo_lp.n};
        if (q->echo && (e = rh_send_chunk(c, &ec, NULL)) != AL_OK)
            goto out;
    }
    size_t hold = rh_max_stop_len(q);
    int tools = al_oai_tools_active(q), forced = al_oai_tools_forced(q);
    int lp_sent = 0; /* tokens whose logprobs a chunk carried (held-back text sends them later) */
    while (!finish) {
        int left = maxt - o.n;
        if (left <= 0) {
            finish = "length";
            break;
        }
        /* a stream comes in steps (one generate call each); a control that carries state from token
         * to token (constraint, penalties, min_tokens, stop strings) resumes from the output so far */
        int step = q->stream ? (o.n == 0 ? 1 : RH_STREAM_STEP) : left;
        if (step > left)
            step = left;
        alora_SeqGenerateRequest gq = {.seq_id = seq_id, .sampling = s};
        gq.sampling.max_tokens = (uint32_t)step;
        gq.sampling.resume = stateful ? (uint32_t)o.n : 0;
        gq.sampling.max_total = stateful ? (uint32_t)maxt : 0;
        gq.sampling.seed = seed ? seed + (uint64_t)o.n : 0;
        alora_SeqGenerateReply gr;
        if ((e = al_rpc_call(rb->cli, alora_Method_BASE_SEQ_GENERATE, &gq, &gr, &m, rh_timeout(r))) != AL_OK) {
            e = ali_errctx(e, "base");
            al_pbmem_free(&m);
            break;
        }
        int n0 = o.n;
        e = rh_out_push(&o, &gr);
        al_pbmem_free(&m);
        if (e != AL_OK)
            break;
        if (n0 == 0)
            rh_observe_ttft(al_now() - c->t0);
        if (gr.finish_reason == alora_FinishReason_FINISH_EOS || gr.finish_reason == alora_FinishReason_FINISH_STOP ||
            gr.finish_reason == alora_FinishReason_FINISH_ABORT || o.n == n0)
            finish = "stop";
        else if (o.n >= maxt)
            finish = "length";
        free(text);
        text = rh_decode(h, o.toks, o.n, q->keep_special);
        long st = rh_find_stop(q, text);
        if (st >= 0) {
            text[st] = 0;
            finish = "stop";
        }
        if (q->stream) {
            size_t len = strlen(text), safe = len;
            if (!finish) {
                safe = len > hold ? len - hold : 0; /* a stop string may still be completing */
                while (safe >= 3 && safe <= len && !memcmp(text + safe - 3, "\xEF\xBF\xBD", 3))
                    safe -= 3; /* an incomplete UTF-8 character */
                if (tools) {   /* a tool call may be starting: it is not content */
                    size_t cl = forced ? 0 : al_chat_tool_content_len(h->fmt, text, len);
                    if (cl < safe)
                        safe = cl;
                }
            }
            if (finish && tools) {
                rh_lp lp = {0};
                if (q->logprobs)
                    rh_lp_q(h, q, o.toks, o.lp, o.tids, o.tlp, lp_sent, o.n, 20,
                                o.top_n < q->top_logprobs ? o.top_n : q->top_logprobs, &lp);
                int done = 0;
                e = rh_tools_stream_end(c, q, id, created, text, emitted, &lp, &done);
                rh_lp_free(&lp);
                if (e != AL_OK || done)
                    break;
            }
            if (safe > emitted || finish) {
                char save = text[safe > emitted ? safe : emitted];
                text[safe > emitted ? safe : emitted] = 0;
                rh_lp lp = {0};
                if (q->logprobs)
                    rh_lp_q(h, q, o.toks, o.lp, o.tids, o.tlp, lp_sent, o.n, 20,
                                o.top_n < q->top_logprobs ? o.top_n : q->top_logprobs, &lp);
                al_oai_chunk ch = {.kind = q->kind, .id = id, .model = q->model, .created = created,
                                   .text = text + emitted, .finish_reason = finish, .has_logprobs = q->logprobs,
                                   .logprobs = lp.v, .n_logprobs = lp.n};
                e = rh_send_chunk(c, &ch, NULL);
                rh_lp_free(&lp);
                lp_sent = o.n;
                text[safe > emitted ? safe : emitted] = save;
                if (safe > emitted)
                    emitted = safe;
                if (e != AL_OK)
                    break;
            }
        }
    }
    if (e != AL_OK) {
        if (!q->stream || !c->streaming) {
            rh_error(c, e, rh_errmsg());
        } else if (!c->broken) {
            char *s2 = NULL;
            size_t n2 = 0;
            if (al_oai_sse_error(e, rh_errmsg(), &s2, &n2) == AL_OK)
                rh_sse_send(c, s2, n2);
            free(s2);
        }
        rh_count_error(e);
        goto out;
    }
    al_oai_usage usage = {.prompt_tokens = np, .completion_tokens = o.n, .cached_tokens = (int)cached};
    if (q->stream) {
        if (q->include_usage) {
            al_oai_chunk ch = {.kind = q->kind, .id = id, .model = q->model, .created = created, .usage = &usage};
            rh_send_chunk(c, &ch, NULL);
        }
        const char *d = al_oai_sse_done();
        rh_sse_send(c, d, strlen(d));
        goto out;
    }
    {
        rh_lp lp = {0};
        if (q->logprobs)
            rh_lp_q(h, q, o.toks, o.lp, o.tids, o.tlp, 0, o.n, 20, o.top_n < q->top_logprobs ? o.top_n : q->top_logprobs,
                        &lp);
        al_oai_response rs = {.kind = q->kind, .id = id, .model = q->model, .created = created,
                              .text = text ? text : "", .finish_reason = finish, .has_logprobs = q->logprobs,
                              .logprobs = lp.v, .n_logprobs = lp.n, .usage = usage};
        char *all_text = NULL;
        al_oai_token_logprob *all_lp = NULL;
        if (q->echo) { /* the prompt, then the completion */
            size_t a = strlen(echo_text), b = strlen(rs.text);
            all_text = malloc(a + b + 1);
            all_lp = calloc((size_t)(echo_lp.n + lp.n + 1), sizeof *all_lp);
            if (!all_text || !all_lp) {
                e = ali_errf(AL_ENOMEM, "router: out of memory");
            } else {
                memcpy(all_text, echo_text, a);
                memcpy(all_text + a, rs.text, b + 1);
                memcpy(all_lp, echo_lp.v, sizeof *all_lp * (size_t)echo_lp.n);
                memcpy(all_lp + echo_lp.n, lp.v, sizeof *all_lp * (size_t)lp.n);
                rs.text = all_text;
                rs.logprobs = all_lp;
                rs.n_logprobs = echo_lp.n + lp.n;
            }
        }
        al_chat_parsed tp = {0};
        if (tools && (e = al_oai_tools_parse_output(q, h->fmt, text ? text : "", &tp)) == AL_OK &&
            tp.n_calls) {
            rs.text = tp.content;
            rs.tool_calls = tp.calls;
            rs.n_tool_calls = tp.n_calls;
            rs.finish_reason = "tool_calls";
        }
        char *body = NULL;
        size_t bl = 0;
        if (e == AL_OK)
            e = al_oai_response_json(&rs, &body, &bl);
        al_chat_parsed_free(&tp);
        rh_lp_free(&lp);
        free(all_text);
        free(all_lp);
        if (e != AL_OK)
            rh_error(c, e, al_errmsg());
        else
            rh_reply(c, 200, "application/json", body, bl);
        free(body);
    }
out:
    router_base_done(r, rb);
    if (seq) {
        alora_SeqReleaseRequest rq = {.seq_id = seq_id};
        alora_Empty er;
        if (al_rpc_call(rb->cli, alora_Method_BASE_SEQ_RELEASE, &rq, &er, &m, 5000) != AL_OK)
            AL_WARN("router: http: releasing base sequence %llu: %s", (unsigned long long)seq_id, al_errmsg());
        al_pbmem_free(&m);
    }
    if (!c->replied)
        rh_error(c, e != AL_OK ? e : AL_EINTERNAL, rh_errmsg());
    free(text);
    free(echo_text);
    rh_lp_free(&echo_lp);
    rh_out_free(&o);
    al_pbmem_free(&sm);
}

/* ---- intrinsic as a model ----------------------------------------------------------------------- */

static void rh_intr(rh_call *c, const al_oai_request *q, const int32_t *toks, int32_t n)
{
    router_http *h = c->h;
    if (q->echo) {
        rh_error(c, AL_EUNSUPPORTED, "echo: not supported for intrinsics (their prompt is the conversation rendered with "
                                     "the invocation; ask the base model)");
        return;
    }
    rh_iout o;
    al_err e = rh_run_intrinsic(h, q->model, toks, n, 0, NULL, q->max_tokens > 0 ? q->max_tokens : 0,
                                q->top_logprobs, q, c->t0, &o);
    if (e != AL_OK) {
        rh_error(c, e, rh_errmsg());
        return;
    }
    char id[64];
    al_oai_make_id(q->kind == AL_OAI_CHAT ? "chatcmpl" : "cmpl", id, sizeof id);
    int64_t created = (int64_t)time(NULL);
    al_oai_usage usage = {.prompt_tokens = n, .completion_tokens = o.n, .cached_tokens = (int)o.cached};
    json_t *extra = json_pack("{s:O}", "intrinsic", o.info);
    rh_lp lp = {0};
    if (q->logprobs)
        rh_lp_q(h, q, o.toks, o.lp, o.tids, o.tlp, 0, o.n, o.top_n, q->top_logprobs, &lp);
    if (q->stream) { /* the output is complete: sent as one content chunk */
        if (rh_sse_begin(c) == AL_OK) {
            al_oai_chunk ch = {.kind = q->kind, .id = id, .model = q->model, .created = created, .role = 1,
                               .text = q->kind == AL_OAI_CHAT ? "" : NULL};
            if (q->kind == AL_OAI_CHAT)
                rh_send_chunk(c, &ch, NULL);
            al_oai_chunk cc = {.kind = q->kind, .id = id, .model = q->model, .created = created, .text = o.text,
                               .finish_reason = o.finish, .has_logprobs = q->logprobs, .logprobs = lp.v,
                               .n_logprobs = lp.n};
            rh_send_chunk(c, &cc, extra);
            if (q->include_usage) {
                al_oai_chunk cu = {.kind = q->kind, .id = id, .model = q->model, .created = created, .usage = &usage};
                rh_send_chunk(c, &cu, NULL);
            }
            const char *d = al_oai_sse_done();
            rh_sse_send(c, d, strlen(d));
        }
    } else {
        al_oai_response rs = {.kind = q->kind, .id = id, .model = q->model, .created = created, .text = o.text,
                              .finish_reason = o.finish, .has_logprobs = q->logprobs, .logprobs = lp.v,
                              .n_logprobs = lp.n, .usage = usage, .extra = extra};
        char *body = NULL;
        size_t bl = 0;
        e = al_oai_response_json(&rs, &body, &bl);
        if (e != AL_OK)
            rh_error(c, e, al_errmsg());
        else
            rh_reply(c, 200, "application/json", body, bl);
        free(body);
    }
    if (!c->replied)
        rh_error(c, AL_EINTERNAL, "router: could not start the event stream");
    rh_lp_free(&lp);
    json_decref(extra);
    rh_iout_free(&o);
}

/* The base's chat prompt: the conversation with the request's tools and template arguments
 * (chat_template_kwargs) rendered by the template,
 * plus, when tool_choice forces a call, the template's tool-call prefix (the output is then
 * constrained to the calls, al_oai_tools_constraint). */
static al_err rh_render_chat(router_http *h, al_oai_request *q, char **text)
{
    const al_chat *ch = q->chat;
    if (!q->tools.n && !q->thinking && !q->controls)
        return rh_render(h, ch->msgs, ch->n_msgs, ch->docs, ch->n_docs, 1, text);
    al_chat_opts o = {.tools = q->tools.defs, .n_tools = q->tools.n, .thinking = q->thinking, .controls = q->controls};
    al_err e = al_chat_render_ex(h->fmt, ch->msgs, ch->n_msgs, ch->docs, ch->n_docs, 1, &o, text);
    if (e == AL_EUNSUPPORTED && ch->n_docs)
        return ali_errf(AL_EINVAL, "documents: the chat template '%s' has no documents section",
                        al_chat_format_name(h->fmt));
    if (e != AL_OK)
        return ali_errctx(e, "messages");
    AL_TRY(al_oai_tools_constraint(q, h->fmt));
    const char *pre = al_oai_tools_forced(q) ? al_chat_tool_call_prefix(h->fmt) : "";
    if (*pre) {
        size_t a = strlen(*text), b = strlen(pre);
        char *t = realloc(*text, a + b + 1);
        if (!t)
            return ali_errf(AL_ENOMEM, "router: out of memory");
        memcpy(t + a, pre, b + 1);
        *text = t;
    }
    return AL_OK;
}

void rh_openai(rh_call *c, al_oai_kind kind)
{
    router_http *h = c->h;
    router *r = h->r;
    al_oai_request q;
    al_oai_limits lim = {.max_body = r->cfg.router.max_body, .max_tokens = ROUTER_MAX_GEN_TOKENS,
                         .max_prompt_tokens = r->max_pos > 0 ? r->max_pos : ROUTER_MAX_REQ_TOKENS};
    al_err e = kind == AL_OAI_CHAT ? al_oai_parse_chat(c->body ? c->body : "", c->len, &lim, &q)
                                   : al_oai_parse_completion(c->body ? c->body : "", c->len, &lim, &q);
    if (e != AL_OK) {
        rh_error(c, e, al_errmsg());
        return;
    }
    bool base = rh_is_base(h, q.model);
    int idx = base ? -1 : router_intr_index(r, q.model);
    int32_t *toks = NULL, n = 0;
    char *text = NULL;
    if (!base && idx < 0) {
        char msg[300];
        snprintf(msg, sizeof msg, "model: unknown model '%.200s' (GET /v1/models lists them)", q.model);
        rh_error(c, AL_ENOTFOUND, msg);
        goto out;
    }
    if (kind == AL_OAI_CHAT) {
        if (base) {
            e = rh_render_chat(h, &q, &text);
            if (e == AL_OK)
                e = rh_encode(h, text, 0, &toks, &n);
        } else if (al_oai_tools_forced(&q)) {
            char msg[320];
            snprintf(msg, sizeof msg,
                     "tool_choice: only the base model calls tools ('%.200s' is an intrinsic)", q.model);
            e = ali_errf(AL_EINVAL, "%s", msg);
        } else {
            e = rh_intrinsic_prompt(h, q.model, q.chat->msgs, q.chat->n_msgs, q.chat->docs, q.chat->n_docs, &toks,
                                    &n);
        }
    } else {
        if (q.prompt) {
            e = rh_encode(h, q.prompt, 1, &toks, &n);
        } else {
            toks = malloc(sizeof(int32_t) * (size_t)(q.n_prompt_tokens + 1));
            e = toks ? router_check_tokens(r, "prompt", q.prompt_tokens, (size_t)q.n_prompt_tokens)
                     : ali_errf(AL_ENOMEM, "router: out of memory");
            if (e == AL_OK) {
                memcpy(toks, q.prompt_tokens, sizeof(int32_t) * (size_t)q.n_prompt_tokens);
                n = q.n_prompt_tokens;
            }
        }
        if (e == AL_OK && !base) {
            /* The invocation goes after the prompt, unless the prompt already holds it (a client that
             * renders the intrinsic's prompt itself, as granite-io does): then, as in vLLM, the
             * adapter starts at its last occurrence in the prompt. */
            int32_t inv[ROUTER_MAX_INV];
            int n_inv = 0;
            e = router_intr_invocation(r, q.model, inv, &n_inv);
            bool has = false;
            for (int32_t i = n - n_inv; e == AL_OK && n_inv > 0 && i >= 0 && !has; i--)
                has = !memcmp(toks + i, inv, sizeof(int32_t) * (size_t)n_inv);
            if (has)
                n_inv = 0;
            int32_t *all = e == AL_OK ? realloc(toks, sizeof(int32_t) * (size_t)(n + n_inv + 1)) : NULL;
            if (e == AL_OK && !all)
                e = ali_errf(AL_ENOMEM, "router: out of memory");
            if (all) {
                memcpy(all + n, inv, sizeof(int32_t) * (size_t)n_inv);
                toks = all;
                n += n_inv;
            }
        }
    }
    if (e != AL_OK) {
        rh_error(c, e, rh_errmsg());
        goto out;
    }
    if (base)
        rh_base(c, &q, toks, n);
    else
        rh_intr(c, &q, toks, n);
out:
    free(text);
    free(toks);
    al_oai_request_free(&q);
}
