/* router_http_sess.c: /v1/sessions over HTTP, on top of the router's session API (ROUTER_SESSION_*,
 * called on this router's own RPC socket). Messages are rendered with the chat template; each append
 * sends only the text the template adds after what the session already holds. */
#include "services/router/router_http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/util.h"

static int rh_timeout(const router *r)
{
    return r->cfg.router.request_timeout_ms > 0 ? r->cfg.router.request_timeout_ms : 60000;
}

/* An RPC to this router's own API; errors keep Retry-After. */
static al_err rh_self(rh_call *c, uint16_t method, const void *req, void *rep, al_pbmem *m, int *retry_s)
{
    al_rpc_callopts o = {.timeout_ms = rh_timeout(c->h->r) + 5000};
    al_err e = al_rpc_callx(c->h->self, method, req, rep, m, &o);
    *retry_s = o.retry_after_ms ? (int)((o.retry_after_ms + 999) / 1000) : 0;
    return e;
}

/* ---- HTTP-side state ---------------------------------------------------------------------------- */

static void rh_sess_free(rh_sess *s)
{
    for (int i = 0; i < s->n; i++) {
        free((char *)s->msgs[i].role);
        free((char *)s->msgs[i].content);
    }
    for (int i = 0; i < s->n_docs; i++) {
        free((char *)s->docs[i].title);
        free((char *)s->docs[i].text);
        free((char *)s->docs[i].doc_id);
    }
    free(s->msgs);
    free(s->docs);
    free(s->committed);
    free(s);
}

void rh_sess_free_all(router_http *h)
{
    while (h->sess) {
        rh_sess *s = h->sess;
        h->sess = s->next;
        rh_sess_free(s);
    }
}

void rh_sess_forget(router_http *h, const char *id)
{
    pthread_mutex_lock(&h->mu);
    for (rh_sess **pp = &h->sess; *pp; pp = &(*pp)->next)
        if (!strcmp((*pp)->id, id)) {
            rh_sess *s = *pp;
            *pp = s->next;
            rh_sess_free(s);
            break;
        }
    pthread_mutex_unlock(&h->mu);
}

static char *rh_strdup0(const char *s) { return s ? strdup(s) : NULL; }

static al_err rh_sess_push(rh_sess *s, const char *role, const char *content)
{
    if (s->n == s->cap) {
        int cap = s->cap ? s->cap * 2 : 8;
        al_chat_msg *m = realloc(s->msgs, sizeof *m * (size_t)cap);
        if (!m)
            return ali_errf(AL_ENOMEM, "router: out of memory");
        s->msgs = m;
        s->cap = cap;
    }
    char *r = strdup(role), *c = strdup(content ? content : "");
    if (!r || !c) {
        free(r);
        free(c);
        return ali_errf(AL_ENOMEM, "router: out of memory");
    }
    s->msgs[s->n++] = (al_chat_msg){.role = r, .content = c};
    return AL_OK;
}

static al_err rh_sess_commit(rh_sess *s, const char *add)
{
    size_t a = s->committed ? strlen(s->committed) : 0, b = strlen(add);
    char *n = realloc(s->committed, a + b + 1);
    if (!n)
        return ali_errf(AL_ENOMEM, "router: out of memory");
    memcpy(n + a, add, b + 1);
    s->committed = n;
    return AL_OK;
}

/* The session's HTTP state, created when absent (a session made over NNG), marked busy. */
static rh_sess *rh_sess_get(router_http *h, const char *id, bool *busy)
{
    pthread_mutex_lock(&h->mu);
    rh_sess *s = h->sess;
    while (s && strcmp(s->id, id))
        s = s->next;
    if (!s && (s = calloc(1, sizeof *s)) != NULL) {
        ROUTER_STRCPY(s->id, id);
        s->committed = strdup("");
        s->next = h->sess;
        h->sess = s;
    }
    *busy = s && s->busy;
    if (s && !s->busy)
        s->busy = true;
    pthread_mutex_unlock(&h->mu);
    return s;
}

static void rh_sess_put(router_http *h, rh_sess *s)
{
    pthread_mutex_lock(&h->mu);
    s->busy = false;
    pthread_mutex_unlock(&h->mu);
}

/* Does the router hold session id? n_tokens and a copy of its tokens (optional). */
static al_err rh_router_sess(router *r, const char *id, int32_t *n, int32_t **toks)
{
    pthread_mutex_lock(&r->mu);
    router_session *s = r->sessions;
    while (s && (s->deleted || strcmp(s->id, id)))
        s = s->next;
    al_err e = AL_OK;
    if (!s) {
        e = ali_errf(AL_ENOTFOUND, "session_id: no session '%s'", id);
    } else {
        *n = s->n;
        if (toks) {
            *toks = malloc(sizeof(int32_t) * (size_t)(s->n + 1));
            if (!*toks)
                e = ali_errf(AL_ENOMEM, "router: out of memory");
            else if (s->busy)
                e = ali_errf(AL_EOVERLOADED, "session_id: session '%s' is busy with another request", id);
            else
                memcpy(*toks, s->toks, sizeof(int32_t) * (size_t)s->n);
        }
    }
    pthread_mutex_unlock(&r->mu);
    return e;
}

/* The session's tokens (copy), base sequence and base. */
static al_err rh_router_sess_seq(router *r, const char *id, int32_t *n, int32_t **toks, uint64_t *seq,
                                 router_base **base)
{
    AL_TRY(rh_router_sess(r, id, n, toks));
    pthread_mutex_lock(&r->mu);
    router_session *s = r->sessions;
    while (s && (s->deleted || strcmp(s->id, id)))
        s = s->next;
    *seq = s ? s->seq_id : 0;
    *base = s ? s->base : NULL;
    pthread_mutex_unlock(&r->mu);
    if (!*seq) {
        free(*toks);
        *toks = NULL;
        return ali_errf(AL_ENOTFOUND, "session_id: no session '%s'", id);
    }
    return AL_OK;
}

/* Messages of a JSON body: {"messages":[...]} or one {"role","content"} (plus "documents"). */
static al_err rh_parse_msgs(json_t *body, bool single_ok, al_chat **out)
{
    *out = NULL;
    json_t *w = json_object();
    json_t *msgs = json_object_get(body, "messages");
    if (msgs)
        json_object_set(w, "messages", msgs);
    else if (single_ok && json_object_get(body, "role"))
        json_object_set_new(w, "messages", json_pack("[O]", body));
    else
        json_object_set_new(w, "messages", json_array());
    json_t *docs = json_object_get(body, "documents");
    if (docs)
        json_object_set(w, "documents", docs);
    json_t *sys = json_object_get(body, "system");
    if (sys && !json_is_string(sys)) {
        json_decref(w);
        return ali_errf(AL_EINVAL, "system: expected a string");
    }
    if (sys)
        json_array_insert_new(json_object_get(w, "messages"), 0, json_pack("{s:s,s:O}", "role", "system", "content", sys));
    bool empty = json_array_size(json_object_get(w, "messages")) == 0;
    if (empty) /* the parser wants one message: parse a placeholder, then drop it */
        json_array_append_new(json_object_get(w, "messages"), json_pack("{s:s,s:s}", "role", "user", "content", ""));
    char *s = json_dumps(w, JSON_COMPACT);
    json_decref(w);
    if (!s)
        return ali_errf(AL_ENOMEM, "router: out of memory");
    al_err e = al_chat_parse_json(s, strlen(s), out);
    free(s);
    if (e == AL_OK && empty && (*out)->n_msgs == 1) {
        free((char *)(*out)->msgs[0].role);
        free((char *)(*out)->msgs[0].content);
        (*out)->n_msgs = 0;
    }
    return e;
}

/* The text a turn adds: render(all) after what the session holds (or after render(before)). */
static al_err rh_diff(router_http *h, rh_sess *s, int n_before, int add_gen, char **out)
{
    char *all = NULL, *before = NULL;
    *out = NULL;
    AL_TRY(rh_render(h, s->msgs, s->n, s->docs, s->n_docs, add_gen, &all));
    size_t cl = s->committed ? strlen(s->committed) : 0;
    if (cl && !strncmp(all, s->committed, cl)) {
        *out = strdup(all + cl);
    } else if (!cl) {
        *out = strdup(all);
    } else {
        al_err e = rh_render(h, s->msgs, n_before, s->docs, s->n_docs, 0, &before);
        if (e != AL_OK) {
            free(all);
            return e;
        }
        size_t bl = strlen(before);
        *out = strdup(!strncmp(all, before, bl) ? all + bl : all);
    }
    free(all);
    free(before);
    return *out ? AL_OK : ali_errf(AL_ENOMEM, "router: out of memory");
}

/* Appends text to the router's session (role for its bookkeeping). */
static al_err rh_append(rh_call *c, const char *id, const char *role, const char *text,
                        alora_SessionAppendReply *ar, int *ra)
{
    alora_SessionAppendRequest aq = alora_SessionAppendRequest_init_zero;
    al_pbmem m = AL_PBMEM_INIT;
    ROUTER_STRCPY(aq.session_id, id);
    ROUTER_STRCPY(aq.role, role);
    al_err e = al_pb_ref_bytes(&aq.text, &m, text, strlen(text));
    if (e == AL_OK)
        e = rh_self(c, alora_Method_ROUTER_SESSION_APPEND, &aq, ar, &m, ra);
    al_pbmem_free(&m);
    return e;
}

/* ---- endpoints ---------------------------------------------------------------------------------- */

static void rh_s_create(rh_call *c)
{
    router_http *h = c->h;
    al_err e;
    json_t *body = rh_body_json(c, &e);
    al_chat *chat = NULL;
    if (!body) {
        rh_error(c, e, al_errmsg());
        return;
    }
    json_t *sid = json_object_get(body, "session_id");
    if (sid && !json_is_string(sid)) {
        json_decref(body);
        rh_error(c, AL_EINVAL, "session_id: expected a string");
        return;
    }
    if ((e = rh_parse_msgs(body, false, &chat)) != AL_OK) {
        json_decref(body);
        rh_error(c, e, al_errmsg());
        return;
    }
    rh_sess *s = calloc(1, sizeof *s);
    char *text = NULL;
    if (!s) {
        e = ali_errf(AL_ENOMEM, "router: out of memory");
        goto out;
    }
    for (int i = 0; i < chat->n_msgs && e == AL_OK; i++)
        e = rh_sess_push(s, chat->msgs[i].role, chat->msgs[i].content);
    if (chat->n_docs) {
        s->docs = calloc((size_t)chat->n_docs, sizeof *s->docs);
        for (int i = 0; s->docs && i < chat->n_docs; i++)
            s->docs[i] = (al_chat_doc){.title = rh_strdup0(chat->docs[i].title), .text = rh_strdup0(chat->docs[i].text),
                                       .doc_id = rh_strdup0(chat->docs[i].doc_id)};
        s->n_docs = s->docs ? chat->n_docs : 0;
    }
    if (e == AL_OK && s->n)
        e = rh_render(h, s->msgs, s->n, s->docs, s->n_docs, 0, &text);
    if (e != AL_OK)
        goto out;
    if (s->n && !h->r->tok) {
        e = ali_errf(AL_EUNSUPPORTED, "messages: the router has no tokenizer (set router.tokenizer)");
        goto out;
    }
    s->committed = strdup(text ? text : "");
    alora_SessionCreateRequest cq = alora_SessionCreateRequest_init_zero;
    alora_SessionCreateReply cr;
    al_pbmem m = AL_PBMEM_INIT;
    if (sid)
        snprintf(cq.session_id, sizeof cq.session_id, "%s", json_string_value(sid));
    if (sid && strlen(json_string_value(sid)) >= sizeof cq.session_id) {
        e = ali_errf(AL_EINVAL, "session_id: longer than %zu characters", sizeof cq.session_id - 1);
        goto out;
    }
    int ra = 0;
    if (text && text[0])
        e = al_pb_ref_bytes(&cq.system, &m, text, strlen(text));
    if (e == AL_OK)
        e = rh_self(c, alora_Method_ROUTER_SESSION_CREATE, &cq, &cr, &m, &ra);
    al_pbmem_free(&m);
    if (e != AL_OK) {
        rh_error_ra(c, e, rh_errmsg(), ra);
        goto out;
    }
    ROUTER_STRCPY(s->id, cr.session_id);
    pthread_mutex_lock(&h->mu);
    s->next = h->sess;
    h->sess = s;
    pthread_mutex_unlock(&h->mu);
    rh_reply_json(c, 200, json_pack("{s:s,s:s,s:s,s:i,s:i,s:s}", "id", cr.session_id, "object", "session", "model",
                                    h->r->cfg.router.model_name, "n_tokens", (json_int_t)cr.n_tokens, "messages",
                                    chat->n_msgs, "base_instance", cr.base_instance_id));
    s = NULL;
out:
    if (e != AL_OK && !c->replied)
        rh_error(c, e, rh_errmsg());
    if (s)
        rh_sess_free(s);
    free(text);
    al_chat_free(chat);
    json_decref(body);
}

static void rh_s_messages(rh_call *c, const char *id)
{
    router_http *h = c->h;
    al_err e;
    int32_t n_now = 0;
    if ((e = rh_router_sess(h->r, id, &n_now, NULL)) != AL_OK) {
        rh_error(c, e, al_errmsg());
        return;
    }
    json_t *body = rh_body_json(c, &e);
    al_chat *chat = NULL;
    if (!body || (e = rh_parse_msgs(body, true, &chat)) != AL_OK) {
        json_decref(body);
        rh_error(c, e, al_errmsg());
        return;
    }
    if (!chat->n_msgs) {
        rh_error(c, AL_EINVAL, "messages: empty (send {\"role\":..,\"content\":..} or {\"messages\":[...]})");
        goto out2;
    }
    bool busy;
    rh_sess *s = rh_sess_get(h, id, &busy);
    if (!s || busy) {
        rh_error_ra(c, s ? AL_EOVERLOADED : AL_ENOMEM, "session_id: busy with another request", 1);
        goto out2;
    }
    int n_before = s->n;
    char *diff = NULL;
    for (int i = 0; i < chat->n_msgs && e == AL_OK; i++)
        e = rh_sess_push(s, chat->msgs[i].role, chat->msgs[i].content);
    if (e == AL_OK)
        e = rh_diff(h, s, n_before, 0, &diff);
    int ra = 0;
    alora_SessionAppendReply ar = alora_SessionAppendReply_init_zero;
    if (e == AL_OK && diff[0])
        e = rh_append(c, id, chat->msgs[chat->n_msgs - 1].role, diff, &ar, &ra);
    if (e == AL_OK)
        e = rh_sess_commit(s, diff);
    if (e != AL_OK) { /* undo the messages */
        while (s->n > n_before) {
            s->n--;
            free((char *)s->msgs[s->n].role);
            free((char *)s->msgs[s->n].content);
        }
        rh_error_ra(c, e, rh_errmsg(), ra);
    } else {
        rh_reply_json(c, 200,
                      json_pack("{s:s,s:s,s:i,s:i,s:i,s:i,s:o}", "id", id, "object", "session.messages", "n_tokens",
                                (json_int_t)ar.n_tokens, "appended_tokens",
                                (json_int_t)(ar.n_tokens > (uint32_t)n_now ? ar.n_tokens - (uint32_t)n_now : 0),
                                "prefix_cached_tokens", (json_int_t)ar.prefix_cached_tokens, "computed_tokens",
                                (json_int_t)ar.computed_tokens, "timings", rh_timings_json(&ar.timings)));
    }
    free(diff);
    rh_sess_put(h, s);
out2:
    al_chat_free(chat);
    json_decref(body);
}

static void rh_s_generate(rh_call *c, const char *id)
{
    router_http *h = c->h;
    router *r = h->r;
    al_err e;
    int32_t n_now = 0;
    if ((e = rh_router_sess(r, id, &n_now, NULL)) != AL_OK) {
        rh_error(c, e, al_errmsg());
        return;
    }
    json_t *body = rh_body_json(c, &e);
    if (!body) {
        rh_error(c, e, al_errmsg());
        return;
    }
    /* The sampling fields are validated as a chat completion's. */
    json_object_set_new(body, "model", json_string(r->cfg.router.model_name));
    json_object_set_new(body, "messages", json_pack("[{s:s,s:s}]", "role", "user", "content", ""));
    json_object_del(body, "stream");
    char *bs = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    al_oai_request q;
    al_oai_limits lim = {.max_body = r->cfg.router.max_body, .max_tokens = ROUTER_MAX_GEN_TOKENS};
    e = bs ? al_oai_parse_chat(bs, strlen(bs), &lim, &q) : ali_errf(AL_ENOMEM, "router: out of memory");
    free(bs);
    if (e != AL_OK) {
        rh_error(c, e, al_errmsg());
        return;
    }
    bool busy;
    rh_sess *s = rh_sess_get(h, id, &busy);
    if (!s || busy) {
        rh_error_ra(c, s ? AL_EOVERLOADED : AL_ENOMEM, "session_id: busy with another request", 1);
        al_oai_request_free(&q);
        return;
    }
    char *gen = NULL, *full = NULL, *text = NULL;
    int ra = 0;
    al_pbmem m = AL_PBMEM_INIT;
    rh_lp lp = {0};
    e = rh_diff(h, s, s->n, 1, &gen);
    alora_SessionAppendReply ar = alora_SessionAppendReply_init_zero;
    if (e == AL_OK && gen[0])
        e = rh_append(c, id, "assistant", gen, &ar, &ra);
    if (e == AL_OK)
        e = rh_sess_commit(s, gen);
    if (e != AL_OK)
        goto out;
    alora_SessionGenerateRequest gq = alora_SessionGenerateRequest_init_zero;
    ROUTER_STRCPY(gq.session_id, id);
    gq.sampling.temperature = (float)q.temperature;
    gq.sampling.top_p = q.top_p >= 1 ? 0 : (float)q.top_p;
    gq.sampling.max_tokens = q.max_tokens > 0 ? (uint32_t)q.max_tokens : (uint32_t)r->cfg.base.default_max_tokens;
    gq.sampling.seed = q.has_seed ? (q.seed ? (uint64_t)q.seed : 0x9E3779B97F4A7C15ull) : 0;
    gq.sampling.top_logprobs = q.logprobs ? (uint32_t)(q.top_logprobs > 0 ? q.top_logprobs : 1) : 0;
    for (int i = 0; i < h->n_stop_ids; i++)
        gq.sampling.stop_token_ids[gq.sampling.stop_token_ids_count++] = h->stop_ids[i];
    bool stateful; /* one generate call either way */
    if ((e = rh_gen_fill(r, &q, &gq.sampling, &m, &stateful)) != AL_OK) /* penalties, stop, structured output */
        goto out;
    alora_SessionGenerateReply gr;
    if ((e = rh_self(c, alora_Method_ROUTER_SESSION_GENERATE, &gq, &gr, &m, &ra)) != AL_OK)
        goto out;
    const int32_t *ot, *ti;
    const float *olp, *tl;
    size_t nt = al_pb_i32(&gr.tokens, &ot), nlp = al_pb_f32(&gr.logprobs.logprob, &olp);
    size_t nti = al_pb_i32(&gr.logprobs.top_ids, &ti);
    al_pb_f32(&gr.logprobs.top_logprobs, &tl);
    size_t fl = 0;
    text = NULL;
    size_t tlen = 0;
    if (r->tok) {
        al_tokenizer_decode(r->tok, ot, (int32_t)nt, 0, &full, &fl);
        al_tokenizer_decode(r->tok, ot, (int32_t)nt, 1, &text, &tlen);
    }
    if (!full)
        full = strdup("");
    if (!text)
        text = strdup("");
    const char *finish = gr.finish_reason == alora_FinishReason_FINISH_LENGTH ? "length" : "stop";
    for (int i = 0; i < q.n_stop && text; i++) { /* stop strings cut the reply (the session keeps the tokens) */
        char *p = q.stop[i][0] ? strstr(text, q.stop[i]) : NULL;
        if (p) {
            *p = 0;
            finish = "stop";
        }
    }
    if (!full || !text || rh_sess_push(s, "assistant", text) != AL_OK || rh_sess_commit(s, full) != AL_OK) {
        e = ali_errf(AL_ENOMEM, "router: out of memory");
        goto out;
    }
    if (q.logprobs && nlp == nt)
        rh_lp_build(h, ot, olp, ti, tl, 0, (int)nt, nti == nt * gr.logprobs.top_n ? (int)gr.logprobs.top_n : 0,
                    q.top_logprobs, &lp);
    uint32_t prompt = gr.n_tokens > nt ? gr.n_tokens - (uint32_t)nt : 0;
    uint32_t computed_prompt = gr.timings.prefill_tokens;
    char cid[64];
    al_oai_make_id("chatcmpl", cid, sizeof cid);
    json_t *extra = json_pack("{s:{s:s,s:i,s:i,s:o}}", "session", "id", id, "n_tokens", (json_int_t)gr.n_tokens,
                              "computed_tokens", (json_int_t)gr.computed_tokens, "timings",
                              rh_timings_json(&gr.timings));
    al_oai_response rs = {.kind = AL_OAI_CHAT, .id = cid, .model = r->cfg.router.model_name,
                          .created = (int64_t)time(NULL), .text = text, .finish_reason = finish,
                          .has_logprobs = q.logprobs, .logprobs = lp.v, .n_logprobs = lp.n,
                          .usage = {.prompt_tokens = (int)prompt, .completion_tokens = (int)nt,
                                    .cached_tokens = (int)(prompt > computed_prompt ? prompt - computed_prompt : 0)},
                          .extra = extra};
    char *out = NULL;
    size_t ol = 0;
    e = al_oai_response_json(&rs, &out, &ol);
    json_decref(extra);
    if (e == AL_OK)
        rh_reply(c, 200, "application/json", out, ol);
    free(out);
out:
    if (e != AL_OK)
        rh_error_ra(c, e, rh_errmsg(), ra);
    rh_lp_free(&lp);
    al_pbmem_free(&m);
    rh_sess_put(h, s);
    free(gen);
    free(full);
    free(text);
    al_oai_request_free(&q);
}

static void rh_s_intrinsic(rh_call *c, const char *id, const char *name)
{
    router_http *h = c->h;
    router *r = h->r;
    al_err e;
    int idx = router_intr_index(r, name);
    if (idx < 0) {
        char msg[200];
        snprintf(msg, sizeof msg, "intrinsic: unknown '%.100s' (GET /v1/intrinsics lists them)", name);
        rh_error(c, AL_ENOTFOUND, msg);
        return;
    }
    int32_t n_now = 0;
    if ((e = rh_router_sess(r, id, &n_now, NULL)) != AL_OK) {
        rh_error(c, e, al_errmsg());
        return;
    }
    json_t *body = rh_body_json(c, &e);
    if (!body) {
        rh_error(c, e, al_errmsg());
        return;
    }
    json_t *mt = json_object_get(body, "max_tokens"), *tl = json_object_get(body, "top_logprobs");
    int max_tokens = 0, top = 0;
    if (mt && !json_is_null(mt)) {
        if (!json_is_integer(mt) || json_integer_value(mt) < 1 || json_integer_value(mt) > ROUTER_MAX_GEN_TOKENS) {
            json_decref(body);
            rh_error(c, AL_EINVAL, "max_tokens: expected an integer in [1, 4096]");
            return;
        }
        max_tokens = (int)json_integer_value(mt);
    }
    if (tl && !json_is_null(tl)) {
        if (!json_is_integer(tl) || json_integer_value(tl) < 0 || json_integer_value(tl) > 20) {
            json_decref(body);
            rh_error(c, AL_EINVAL, "top_logprobs: expected an integer in [0, 20]");
            return;
        }
        top = (int)json_integer_value(tl);
    }
    /* the generation controls (structured output, stop, penalties) are validated as a chat
     * completion's; a client's structured output replaces the intrinsic's default contract */
    json_object_set_new(body, "model", json_string(r->cfg.router.model_name));
    json_object_set_new(body, "messages", json_pack("[{s:s,s:s}]", "role", "user", "content", ""));
    json_object_del(body, "stream");
    char *bstr = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    al_oai_request q;
    al_oai_limits lim = {.max_body = r->cfg.router.max_body, .max_tokens = ROUTER_MAX_GEN_TOKENS};
    e = bstr ? al_oai_parse_chat(bstr, strlen(bstr), &lim, &q) : ali_errf(AL_ENOMEM, "router: out of memory");
    free(bstr);
    if (e != AL_OK) {
        rh_error(c, e, al_errmsg());
        return;
    }
    const al_intrinsic *d = rh_def(h, name);
    const al_intrinsic_cfg *ic = r->intr[idx].cfg;
    const char *instr = d ? d->instruction : ic->instruction;
    bool bs;
    rh_sess *s = rh_sess_get(h, id, &bs);
    if (!s || bs) {
        rh_error_ra(c, s ? AL_EOVERLOADED : AL_ENOMEM, "session_id: busy with another request", 1);
        al_oai_request_free(&q);
        return;
    }
    rh_iout o = {0};
    int ra = 0;
    int32_t *toks = NULL, n = 0;
    char *turn = NULL;
    if ((instr && instr[0]) || (d && d->documents == AL_DOCS_INSTRUCTION && s->n_docs)) {
        /* The instruction turn is not part of the conversation: a fork of the session's base sequence
         * (sharing its KV blocks) gets the turn, the intrinsic runs on the fork, the fork is released. */
        int32_t *ext = NULL, ne = 0;
        uint64_t seq = 0, fork = 0;
        router_base *rb = NULL;
        e = rh_router_sess_seq(r, id, &n, &toks, &seq, &rb);
        if (e == AL_OK && (e = rh_sess_push(s, "user", instr ? instr : "")) == AL_OK) {
            e = rh_diff(h, s, s->n - 1, 0, &turn);
            s->n--;
            free((char *)s->msgs[s->n].role);
            free((char *)s->msgs[s->n].content);
        }
        if (e == AL_OK)
            e = rh_encode(h, turn, 0, &ext, &ne);
        int32_t *all = e == AL_OK ? realloc(toks, sizeof(int32_t) * (size_t)(n + ne + 1)) : NULL;
        if (e == AL_OK && !all)
            e = ali_errf(AL_ENOMEM, "router: out of memory");
        al_pbmem m = AL_PBMEM_INIT;
        if (all) {
            toks = all;
            memcpy(toks + n, ext, sizeof(int32_t) * (size_t)ne);
            alora_SeqForkRequest fq = {.seq_id = seq, .n_tokens = (uint32_t)n};
            alora_SeqForkReply fr;
            e = al_rpc_call(rb->cli, alora_Method_BASE_SEQ_FORK, &fq, &fr, &m, rh_timeout(r));
            fork = e == AL_OK ? fr.seq_id : 0;
            al_pbmem_free(&m);
            alora_SeqAppendRequest aq = {.seq_id = fork};
            alora_SeqAppendReply apr;
            if (e == AL_OK && ne > 0 && (e = al_pb_ref_i32(&aq.tokens, &m, ext, (size_t)ne)) == AL_OK)
                e = al_rpc_call(rb->cli, alora_Method_BASE_SEQ_APPEND, &aq, &apr, &m, rh_timeout(r));
            al_pbmem_free(&m);
            if (e != AL_OK)
                e = ali_errctx(e, "base");
            n += ne;
        }
        free(ext);
        if (e == AL_OK)
            e = rh_run_intrinsic(h, name, toks, n, fork, rb, max_tokens, top, &q, c->t0, &o);
        if (fork) {
            char msg[600];
            snprintf(msg, sizeof msg, "%s", al_errmsg());
            alora_SeqReleaseRequest rq = {.seq_id = fork};
            alora_Empty er;
            if (al_rpc_call(rb->cli, alora_Method_BASE_SEQ_RELEASE, &rq, &er, &m, 5000) != AL_OK)
                AL_WARN("router: http: releasing fork %llu: %s", (unsigned long long)fork, al_errmsg());
            al_pbmem_free(&m);
            if (e != AL_OK)
                ali_errf(e, "%s", msg);
        }
    } else {
        alora_SessionInvokeRequest iq = alora_SessionInvokeRequest_init_zero;
        ROUTER_STRCPY(iq.session_id, id);
        ROUTER_STRCPY(iq.intrinsic, name);
        iq.sampling.max_tokens = (uint32_t)max_tokens;
        iq.sampling.top_logprobs = (uint32_t)(top > 5 ? top : 5);
        alora_InvokeReply rep;
        al_pbmem m = AL_PBMEM_INIT;
        e = rh_intr_controls(h, name, &q, &iq.sampling, &m);
        if (e == AL_OK)
            e = rh_self(c, alora_Method_ROUTER_SESSION_INVOKE, &iq, &rep, &m, &ra);
        if (e == AL_OK)
            e = rh_iout_from_reply(h, name, n_now, &rep, &o);
        al_pbmem_free(&m);
    }
    rh_sess_put(h, s);
    if (e != AL_OK) {
        rh_error_ra(c, e, rh_errmsg(), ra);
    } else {
        json_object_set_new(o.info, "session_id", json_string(id));
        json_object_set_new(o.info, "object", json_string("session.intrinsic"));
        json_t *j = o.info;
        o.info = NULL;
        rh_reply_json(c, 200, j);
    }
    rh_iout_free(&o);
    free(toks);
    free(turn);
    al_oai_request_free(&q);
}

static void rh_s_get(rh_call *c, const char *id)
{
    router_http *h = c->h;
    int32_t n = 0;
    al_err e = rh_router_sess(h->r, id, &n, NULL);
    if (e != AL_OK) {
        rh_error(c, e, al_errmsg());
        return;
    }
    json_t *msgs = json_array();
    pthread_mutex_lock(&h->mu);
    for (rh_sess *s = h->sess; s; s = s->next)
        if (!strcmp(s->id, id))
            for (int i = 0; i < s->n; i++)
                json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", s->msgs[i].role, "content",
                                                      s->msgs[i].content));
    pthread_mutex_unlock(&h->mu);
    rh_reply_json(c, 200, json_pack("{s:s,s:s,s:s,s:i,s:o}", "id", id, "object", "session", "model",
                                    h->r->cfg.router.model_name, "n_tokens", (json_int_t)n, "messages", msgs));
}

static void rh_s_delete(rh_call *c, const char *id)
{
    alora_SessionDeleteRequest dq = alora_SessionDeleteRequest_init_zero;
    alora_Empty er;
    al_pbmem m = AL_PBMEM_INIT;
    int ra = 0;
    if (strlen(id) >= sizeof dq.session_id) {
        rh_error(c, AL_ENOTFOUND, "session_id: no such session");
        return;
    }
    ROUTER_STRCPY(dq.session_id, id);
    al_err e = rh_self(c, alora_Method_ROUTER_SESSION_DELETE, &dq, &er, &m, &ra);
    al_pbmem_free(&m);
    if (e != AL_OK) {
        rh_error_ra(c, e, rh_errmsg(), ra);
        return;
    }
    rh_sess_forget(c->h, id);
    rh_reply_json(c, 200, json_pack("{s:s,s:s,s:b}", "id", id, "object", "session", "deleted", 1));
}

/* /v1/sessions[/{id}[/messages|/generate|/intrinsics/{name}]] */
void rh_sessions(rh_call *c)
{
    char id[128] = "", sub[64] = "", name[128] = "";
    const char *p = c->path + 12;
    bool post = !strcmp(c->method, "POST"), get = !strcmp(c->method, "GET"), del = !strcmp(c->method, "DELETE");
    int parts = 0;
    if (*p == '/') {
        p++;
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        snprintf(id, sizeof id, "%.*s", (int)(n < sizeof id ? n : sizeof id - 1), p);
        parts = 1;
        if (e) {
            p = e + 1;
            e = strchr(p, '/');
            n = e ? (size_t)(e - p) : strlen(p);
            snprintf(sub, sizeof sub, "%.*s", (int)(n < sizeof sub ? n : sizeof sub - 1), p);
            parts = 2;
            if (e) {
                snprintf(name, sizeof name, "%s", e + 1);
                parts = 3;
            }
        }
    }
    if (parts == 0) {
        c->endpoint = "/v1/sessions";
        if (post)
            rh_s_create(c);
        else
            rh_error(c, AL_EINVAL, "method: use POST /v1/sessions");
        return;
    }
    if (strlen(id) >= 64) {
        c->endpoint = "/v1/sessions/{id}";
        rh_error(c, AL_ENOTFOUND, "session_id: no such session (ids are at most 63 characters)");
        return;
    }
    if (parts == 1) {
        c->endpoint = "/v1/sessions/{id}";
        if (get)
            rh_s_get(c, id);
        else if (del)
            rh_s_delete(c, id);
        else
            rh_error(c, AL_EINVAL, "method: use GET or DELETE /v1/sessions/{id}");
    } else if (parts == 2 && !strcmp(sub, "messages")) {
        c->endpoint = "/v1/sessions/{id}/messages";
        post ? rh_s_messages(c, id) : rh_error(c, AL_EINVAL, "method: use POST");
    } else if (parts == 2 && !strcmp(sub, "generate")) {
        c->endpoint = "/v1/sessions/{id}/generate";
        post ? rh_s_generate(c, id) : rh_error(c, AL_EINVAL, "method: use POST");
    } else if (parts == 3 && !strcmp(sub, "intrinsics") && name[0] && !strchr(name, '/')) {
        c->endpoint = "/v1/sessions/{id}/intrinsics/{name}";
        post ? rh_s_intrinsic(c, id, name) : rh_error(c, AL_EINVAL, "method: use POST");
    } else {
        c->endpoint = "other";
        rh_error(c, AL_ENOTFOUND, "path: no such session endpoint");
    }
}
