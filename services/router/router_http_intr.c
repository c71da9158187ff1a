/* router_http_intr.c: intrinsics over HTTP: prompt building (instruction turn, documents, invocation),
 * the stateless invocation through router_invoke_run, output parsing, logprob rendering. */
#include "services/router/router_http.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"

al_err rh_intrinsic_prompt(router_http *h, const char *name, const al_chat_msg *msgs, int n, const al_chat_doc *docs,
                           int n_docs, int32_t **ids, int32_t *n_ids)
{
    router *r = h->r;
    *ids = NULL;
    *n_ids = 0;
    const al_intrinsic *d = rh_def(h, name);
    const al_intrinsic_cfg *ic = al_cluster_cfg_intrinsic(&r->cfg, name);
    const char *instr = d ? d->instruction : ic ? ic->instruction : NULL;
    int place = d ? d->documents : AL_DOCS_TEMPLATE;
    if (place == AL_DOCS_AUTO)
        place = AL_DOCS_TEMPLATE;
    if (place == AL_DOCS_TEMPLATE && n_docs && h->fmt != AL_CHAT_GRANITE)
        place = AL_DOCS_INSTRUCTION; /* the template has no documents section */
    int32_t inv[ROUTER_MAX_INV];
    int n_inv = 0;
    AL_TRY(router_intr_invocation(r, name, inv, &n_inv));

    al_chat_msg *m = calloc((size_t)n + 1, sizeof *m);
    if (!m)
        return ali_errf(AL_ENOMEM, "router: out of memory");
    memcpy(m, msgs, sizeof *m * (size_t)n);
    int nm = n;
    char *turn = NULL;
    size_t tl = 0;
    FILE *f = NULL;
    if ((instr && instr[0]) || (place == AL_DOCS_INSTRUCTION && n_docs)) {
        f = open_memstream(&turn, &tl);
        if (!f) {
            free(m);
            return ali_errf(AL_ENOMEM, "router: out of memory");
        }
        if (place == AL_DOCS_INSTRUCTION)
            for (int i = 0; i < n_docs; i++)
                fprintf(f, "%s%s", i ? "\n\n" : "", docs[i].text ? docs[i].text : "");
        if (instr && instr[0])
            fprintf(f, "%s%s", place == AL_DOCS_INSTRUCTION && n_docs ? "\n\n" : "", instr);
        fclose(f);
        m[nm++] = (al_chat_msg){.role = "user", .content = turn};
    }
    char *text = NULL;
    int32_t *enc = NULL, ne = 0;
    al_err e = rh_render(h, m, nm, place == AL_DOCS_TEMPLATE ? docs : NULL, place == AL_DOCS_TEMPLATE ? n_docs : 0, 0,
                         &text);
    if (e == AL_OK)
        e = rh_encode(h, text, 0, &enc, &ne);
    free(text);
    free(turn);
    free(m);
    AL_TRY(e);
    int32_t *all = realloc(enc, sizeof(int32_t) * (size_t)(ne + n_inv + 1));
    if (!all) {
        free(enc);
        return ali_errf(AL_ENOMEM, "router: out of memory");
    }
    memcpy(all + ne, inv, sizeof(int32_t) * (size_t)n_inv);
    *ids = all;
    *n_ids = ne + n_inv;
    return AL_OK;
}

json_t *rh_parse_output(router_http *h, const char *name, const char *text, const int32_t *toks, size_t n,
                        const int32_t *top_ids, const float *top_lp, uint32_t top_n)
{
    const al_intrinsic *d = rh_def(h, name);
    if (!d)
        return json_pack("{s:s}", "text", text);
    al_topk_entry *top = NULL;
    if (top_n && n) {
        top = calloc(n * top_n, sizeof *top);
        for (size_t i = 0; top && i < n * top_n; i++)
            top[i] = (al_topk_entry){.id = top_ids[i], .logprob = top_lp[i]};
    }
    json_t *res = NULL;
    char *ef = NULL;
    al_intrinsic_parse(d, text, toks, (int)n, top, top ? (int)top_n : 0, h->r->tok, &res, &ef);
    free(ef);
    free(top);
    return res ? res : json_pack("{s:s,s:s}", "error", "parser failed", "raw", text);
}

static const char *rh_finish_name(alora_FinishReason f)
{
    return f == alora_FinishReason_FINISH_LENGTH ? "length" : "stop";
}

al_err rh_iout_from_reply(router_http *h, const char *name, int32_t n_prompt, const alora_InvokeReply *rep, rh_iout *o)
{
    memset(o, 0, sizeof *o);
    const int32_t *ot, *ti;
    const float *lp, *tl;
    const uint8_t *txt;
    size_t nt = al_pb_i32(&rep->tokens, &ot), nlp = al_pb_f32(&rep->logprobs.logprob, &lp);
    size_t nti = al_pb_i32(&rep->logprobs.top_ids, &ti), ntl = al_pb_f32(&rep->logprobs.top_logprobs, &tl);
    size_t nx = al_pb_bytes(&rep->text, &txt);
    uint32_t top_n = rep->logprobs.top_n;
    if (nti != nt * top_n || ntl != nti)
        top_n = 0;
    o->n = (int)nt;
    o->top_n = (int)top_n;
    o->toks = malloc(sizeof(int32_t) * (nt + 1));
    o->lp = calloc(nt + 1, sizeof(float));
    o->tids = malloc(sizeof(int32_t) * (nt * top_n + 1));
    o->tlp = malloc(sizeof(float) * (nt * top_n + 1));
    o->text = strndup(txt ? (const char *)txt : "", nx);
    if (!o->toks || !o->lp || !o->tids || !o->tlp || !o->text) {
        rh_iout_free(o);
        return ali_errf(AL_ENOMEM, "router: out of memory");
    }
    if (nt)
        memcpy(o->toks, ot, sizeof(int32_t) * nt);
    if (nt && nlp == nt)
        memcpy(o->lp, lp, sizeof(float) * nt);
    if (nt > 0 && top_n > 0) {
        memcpy(o->tids, ti, sizeof(int32_t) * nt * top_n);
        memcpy(o->tlp, tl, sizeof(float) * nt * top_n);
    }
    o->finish = rh_finish_name(rep->finish_reason);
    o->cached = rep->prefix_cached_tokens;
    o->computed = rep->computed_tokens;
    o->ttft_ms = rep->timings.ttft_ms;
    o->prompt_tokens = n_prompt;
    json_t *res = rh_parse_output(h, name, o->text, o->toks, nt, o->tids, o->tlp, top_n);
    o->info = json_pack("{s:s,s:o,s:i,s:i,s:i,s:i,s:s,s:s,s:o}", "name", name, "result", res, "prompt_tokens",
                        (json_int_t)n_prompt, "prefix_cached_tokens", (json_int_t)rep->prefix_cached_tokens,
                        "computed_tokens", (json_int_t)rep->computed_tokens, "completion_tokens", (json_int_t)nt,
                        "text", o->text, "worker_id", rep->worker_id, "timings", rh_timings_json(&rep->timings));
    if (!o->info) {
        rh_iout_free(o);
        return ali_errf(AL_ENOMEM, "router: out of memory");
    }
    json_object_set_new(o->info, "activation_start",
                        rep->has_activation_start ? json_integer(rep->activation_start) : json_null());
    json_t *err = json_object_get(res, "error");
    if (json_is_string(err))
        json_object_set(o->info, "error", err);
    return AL_OK;
}

/* An intrinsic's output contract as its default constraint: its closed set of outputs, else the
 * JSON schema its parser reads (query rewrite, hallucination detection, citations). */
static al_err rh_intr_default_constraint(router_http *h, const char *name, alora_Sampling *s, al_pbmem *m)
{
    const al_intrinsic *d = rh_def(h, name);
    if (!d)
        return AL_OK;
    if (d->outputs.n > 0) {
        json_t *a = json_array();
        for (int i = 0; i < d->outputs.n; i++)
            json_array_append_new(a, json_string(d->outputs.v[i]));
        char *txt = json_dumps(a, JSON_COMPACT);
        json_decref(a);
        if (!txt)
            return ali_errf(AL_ENOMEM, "router: out of memory");
        s->constraint_kind = alora_ConstraintKind_CONSTRAINT_CHOICE;
        al_err e = al_pb_set_bytes(&s->constraint, m, txt, strlen(txt));
        free(txt);
        return e;
    }
    const char *schema = al_intr_output_schema(d->parser);
    if (!schema)
        return AL_OK;
    s->constraint_kind = alora_ConstraintKind_CONSTRAINT_JSON_SCHEMA;
    return al_pb_set_bytes(&s->constraint, m, schema, strlen(schema));
}

al_err rh_intr_controls(router_http *h, const char *name, const al_oai_request *q, alora_Sampling *s, al_pbmem *m)
{
    bool stateful = false;
    al_err e = q ? rh_gen_fill(h->r, q, s, m, &stateful) : AL_OK;
    if (e == AL_OK && s->constraint_kind == alora_ConstraintKind_CONSTRAINT_NONE)
        e = rh_intr_default_constraint(h, name, s, m);
    return e;
}

al_err rh_run_intrinsic(router_http *h, const char *name, const int32_t *toks, int32_t n, uint64_t seq_id,
                        router_base *base, int max_tokens, int top_logprobs, const al_oai_request *q,
                        double t_accept, rh_iout *o)
{
    router *r = h->r;
    memset(o, 0, sizeof *o);
    int idx = router_intr_index(r, name);
    if (idx < 0)
        return ali_errf(AL_ENOTFOUND, "model: unknown intrinsic '%s'", name);
    router_invoke_args a = {.base = base, .intrinsic = name, .toks = toks, .n = n, .seq_id = seq_id,
                            .mode = alora_InvokeMode_MODE_ALORA, .t_accept = t_accept};
    router_sampling_defaults(r->intr[idx].cfg, &a.sampling, max_tokens > 0 ? (uint32_t)max_tokens : 0,
                             top_logprobs > 0 ? (uint32_t)top_logprobs : 0);
    if (a.sampling.top_logprobs < 5)
        a.sampling.top_logprobs = 5; /* the parsers read the decision position's top-k */
    a.sampling.temperature = 0;      /* intrinsics decode greedily */
    if (r->max_pos > 0 && (int64_t)n + (seq_id ? ROUTER_MAX_INV : 0) + a.sampling.max_tokens > r->max_pos)
        return ali_errf(AL_EINVAL, "max_tokens: %d prompt tokens + max_tokens %u > the model's context %d", n,
                        a.sampling.max_tokens, r->max_pos);
    al_pbmem m = AL_PBMEM_INIT;
    al_err e = rh_intr_controls(h, name, q, &a.sampling, &m);
    if (e == AL_OK)
        e = router_admit(r, idx, NULL);
    if (e != AL_OK) {
        al_pbmem_free(&m);
        return e;
    }
    alora_InvokeReply rep = alora_InvokeReply_init_zero;
    e = router_invoke_run(r, &a, &rep, &m);
    router_release(r, idx);
    if (e == AL_OK)
        e = rh_iout_from_reply(h, name, n, &rep, o);
    char msg[600];
    snprintf(msg, sizeof msg, "%s", al_errmsg());
    al_pbmem_free(&m);
    if (e != AL_OK)
        return ali_errf(e, "%s", msg);
    return AL_OK;
}

void rh_iout_free(rh_iout *o)
{
    free(o->toks);
    free(o->lp);
    free(o->tids);
    free(o->tlp);
    free(o->text);
    json_decref(o->info);
    memset(o, 0, sizeof *o);
}

/* ---- logprobs ----------------------------------------------------------------------------------- */

void rh_lp_free(rh_lp *l)
{
    for (int i = 0; i < l->n_strs; i++)
        free(l->strs[i]);
    free(l->strs);
    free(l->tops);
    free(l->v);
    memset(l, 0, sizeof *l);
}

/* A token's text for logprobs: its own bytes inside a text (a lone byte of a multi-byte character
 * stays that byte, so "bytes" is exact; al_tokenizer_token_bytes), a special token's text, or <id>. */
static const char *rh_piece(router_http *h, rh_lp *l, int32_t id)
{
    char *s = NULL;
    size_t n = 0;
    if (h->r->tok && al_tokenizer_token_bytes(h->r->tok, id, &s, &n) == AL_OK && memchr(s, 0, n)) {
        free(s); /* a NUL byte cannot travel in a C string: fall back to the decoded text */
        s = NULL;
    }
    if (!s && (!h->r->tok || al_tokenizer_decode(h->r->tok, &id, 1, 0, &s, &n) != AL_OK)) {
        s = malloc(16);
        if (s)
            snprintf(s, 16, "<%d>", id);
    }
    if (!s)
        return "";
    l->strs[l->n_strs++] = s;
    return s;
}

al_err rh_lp_as_ids(rh_lp *l, const int32_t *toks, const int32_t *tids, int i0, int top_n)
{
    int per = l->n > 0 ? 1 + l->v[0].n_top : 0;
    char **ns = realloc(l->strs, sizeof *ns * (size_t)(l->n_strs + l->n * per + 1));
    if (!ns)
        return ali_errf(AL_ENOMEM, "router: out of memory");
    l->strs = ns;
    for (int i = 0; i < l->n; i++)
        for (int j = -1; j < l->v[i].n_top; j++) {
            int32_t id = j < 0 ? toks[i0 + i] : tids[(size_t)(i0 + i) * top_n + j];
            char *s = malloc(24);
            if (!s)
                return ali_errf(AL_ENOMEM, "router: out of memory");
            snprintf(s, 24, "token_id:%d", id);
            l->strs[l->n_strs++] = s;
            if (j < 0)
                l->v[i].token = s;
            else
                l->tops[(size_t)i * l->v[i].n_top + j].token = s;
        }
    return AL_OK;
}

al_err rh_lp_build(router_http *h, const int32_t *toks, const float *lp, const int32_t *tids, const float *tlp, int i0,
                   int i1, int top_n, int want_top, rh_lp *l)
{
    memset(l, 0, sizeof *l);
    int n = i1 - i0, k = want_top < top_n ? want_top : top_n;
    if (n <= 0)
        return AL_OK;
    l->v = calloc((size_t)n, sizeof *l->v);
    l->tops = calloc((size_t)(n * (k > 0 ? k : 1)), sizeof *l->tops);
    l->strs = calloc((size_t)(n * (k + 1)), sizeof *l->strs);
    if (!l->v || !l->tops || !l->strs) {
        rh_lp_free(l);
        return ali_errf(AL_ENOMEM, "router: out of memory");
    }
    for (int i = 0; i < n; i++) {
        int t = i0 + i;
        al_oai_token_logprob *v = &l->v[i];
        v->token = rh_piece(h, l, toks[t]);
        v->logprob = lp ? lp[t] : 0;
        v->top = l->tops + (size_t)i * k;
        v->n_top = k;
        for (int j = 0; j < k; j++) {
            al_oai_top *tp = &l->tops[(size_t)i * k + j];
            tp->token = rh_piece(h, l, tids[(size_t)t * top_n + j]);
            tp->logprob = tlp[(size_t)t * top_n + j];
            if (!isfinite(tp->logprob))
                tp->logprob = -9999.0;
        }
    }
    l->n = n;
    return AL_OK;
}
