/* router_session.c: sessions (token histories) backed by base sequences; SessionInvoke leases them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "services/router/router.h"

#define ROUTER_MAX_SESSIONS 4096

static int router_timeout(const router *r)
{
    return r->cfg.router.request_timeout_ms > 0 ? r->cfg.router.request_timeout_ms : 60000;
}

static bool router_sid_ok(const char *s)
{
    if (!s[0])
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '_' || *s == '.'))
            return false;
    return true;
}

static router_session *router_sess_find_locked(router *r, const char *id)
{
    for (router_session *s = r->sessions; s; s = s->next)
        if (!s->deleted && !strcmp(s->id, id))
            return s;
    return NULL;
}

/* Marks the session busy (one operation at a time). */
static al_err router_sess_acquire(router *r, const char *id, router_session **out)
{
    if (!router_sid_ok(id))
        return ali_errf(AL_EINVAL, "session_id: '%s' is not a valid id", id);
    pthread_mutex_lock(&r->mu);
    router_session *s = router_sess_find_locked(r, id);
    al_err e = AL_OK;
    if (!s)
        e = ali_errf(AL_ENOTFOUND, "session_id: no session '%s'", id);
    else if (s->busy)
        e = ali_errf(AL_EOVERLOADED, "session_id: session '%s' is busy with another request", id);
    else
        s->busy = 1;
    pthread_mutex_unlock(&r->mu);
    *out = e == AL_OK ? s : NULL;
    return e;
}

static void router_sess_release(router *r, router_session *s)
{
    pthread_mutex_lock(&r->mu);
    s->busy = 0;
    if (s->deleted) { /* unlink and free */
        for (router_session **pp = &r->sessions; *pp; pp = &(*pp)->next)
            if (*pp == s) {
                *pp = s->next;
                break;
            }
        r->n_sessions--;
        s->base->sessions--;
        free(s->toks);
        free(s);
    }
    pthread_mutex_unlock(&r->mu);
}

static al_err router_sess_push(router_session *s, const int32_t *t, size_t n)
{
    if (!n)
        return AL_OK;
    if ((size_t)s->n + n > (size_t)s->cap) {
        size_t cap = s->cap ? (size_t)s->cap : 256;
        while (cap < (size_t)s->n + n)
            cap *= 2;
        int32_t *nt = realloc(s->toks, sizeof(int32_t) * cap);
        if (!nt)
            return ali_errf(AL_ENOMEM, "router: out of memory");
        s->toks = nt;
        s->cap = (int32_t)cap;
    }
    memcpy(s->toks + s->n, t, sizeof(int32_t) * n);
    s->n += (int32_t)n;
    return AL_OK;
}

/* Tokens of a request: raw tokens, or text encoded by the router's tokenizer (*owned to free). */
static al_err router_req_tokens(router *r, const pb_callback_t *tk, const pb_callback_t *tx, const char *tf,
                                const char *xf, const int32_t **t, size_t *n, int32_t **owned)
{
    const uint8_t *txt;
    size_t tl = al_pb_bytes(tx, &txt);
    *owned = NULL;
    *n = al_pb_i32(tk, t);
    if (*n && tl)
        return ali_errf(AL_EINVAL, "%s, %s: give one, not both", tf, xf);
    if (tl) {
        if (!r->tok)
            return ali_errf(AL_EUNSUPPORTED, "%s: the router has no tokenizer; send %s", xf, tf);
        int32_t ne = 0;
        AL_TRY(ali_errctx(al_tokenizer_encode(r->tok, (const char *)txt, tl, 0, owned, &ne), "%s", xf));
        *t = *owned;
        *n = (size_t)ne;
    }
    return router_check_tokens(r, *owned ? xf : tf, *t, *n);
}

/* ---- create ------------------------------------------------------------------------------------- */

static void router_task_create(router_task *t)
{
    router *r = t->r;
    const alora_SessionCreateRequest *q = t->req;
    alora_SessionCreateReply *rep = t->rep;
    const int32_t *toks = NULL;
    size_t n = 0;
    int32_t *owned = NULL;
    pb_callback_t none = {0};
    al_pbmem m = AL_PBMEM_INIT;
    router_session *s = NULL;
    al_err e = router_req_tokens(r, &none, &q->system, "tokens", "system", &toks, &n, &owned);
    if (e != AL_OK)
        goto out;
    alora_SeqCreateRequest cq = alora_SeqCreateRequest_init_zero;
    alora_SeqCreateReply cr;
    if (n && (e = al_pb_ref_i32(&cq.tokens, &m, toks, n)) != AL_OK)
        goto out;
    /* the session lives on one base for its whole life: the least loaded one now */
    router_base *rb = router_base_for_session(r);
    if (!rb) {
        e = AL_EUNAVAILABLE;
        goto out;
    }
    if ((e = al_rpc_call(rb->cli, alora_Method_BASE_SEQ_CREATE, &cq, &cr, &m, router_timeout(r))) != AL_OK) {
        e = ali_errctx(e, "base");
        goto out;
    }
    s = calloc(1, sizeof *s);
    if (!s || router_sess_push(s, toks, n) != AL_OK) {
        e = ali_errf(AL_ENOMEM, "router: out of memory");
        goto release_seq;
    }
    s->seq_id = cr.seq_id;
    s->base = rb;
    pthread_mutex_lock(&r->mu);
    if (q->session_id[0]) {
        if (router_sess_find_locked(r, q->session_id)) {
            pthread_mutex_unlock(&r->mu);
            e = ali_errf(AL_EINVAL, "session_id: '%s' already exists", q->session_id);
            goto release_seq;
        }
        ROUTER_STRCPY(s->id, q->session_id);
    } else {
        snprintf(s->id, sizeof s->id, "s%d-%llu", (int)getpid() % 100000, (unsigned long long)++r->next_sess);
    }
    s->next = r->sessions;
    r->sessions = s;
    r->n_sessions++;
    rb->sessions++;
    ROUTER_STRCPY(rep->session_id, s->id);
    ROUTER_STRCPY(rep->base_instance_id, rb->id);
    pthread_mutex_unlock(&r->mu);
    rep->n_tokens = (uint32_t)n;
    s = NULL;
    goto out;
release_seq:;
    char msg[600];
    snprintf(msg, sizeof msg, "%s", al_errmsg());
    alora_SeqReleaseRequest rq = {.seq_id = cr.seq_id};
    alora_Empty er;
    al_rpc_call(rb->cli, alora_Method_BASE_SEQ_RELEASE, &rq, &er, &m, 5000);
    ali_errf(e, "%s", msg);
out:
    if (s) {
        free(s->toks);
        free(s);
    }
    free(owned);
    al_pbmem_free(&m);
    al_rpc_complete(t->job, e);
}

static al_err router_on_create(al_rpc_job *job, const void *req, void *rep, void *user)
{
    router *r = user;
    const alora_SessionCreateRequest *q = req;
    if (q->session_id[0] && !router_sid_ok(q->session_id))
        return ali_errf(AL_EINVAL, "session_id: '%s' is not a valid id ([A-Za-z0-9_.-])", q->session_id);
    if (q->chat_template[0])
        return ali_errf(AL_EUNSUPPORTED, "chat_template: per-session templates are not supported yet");
    pthread_mutex_lock(&r->mu);
    int ns = r->n_sessions;
    pthread_mutex_unlock(&r->mu);
    if (ns >= ROUTER_MAX_SESSIONS) {
        al_rpc_job_set_retry_after(job, 1000);
        return ali_errf(AL_EOVERLOADED, "sessions: %d open, the maximum", ns);
    }
    router_pool_submit(&r->pool, r, job, req, rep, router_task_create, -1);
    return AL_OK;
}

/* ---- append ------------------------------------------------------------------------------------- */

static void router_task_append(router_task *t)
{
    router *r = t->r;
    const alora_SessionAppendRequest *q = t->req;
    alora_SessionAppendReply *rep = t->rep;
    router_session *s;
    const int32_t *toks;
    size_t n;
    int32_t *owned = NULL;
    al_pbmem m = AL_PBMEM_INIT;
    al_err e = router_sess_acquire(r, q->session_id, &s);
    if (e != AL_OK)
        goto out2;
    if ((e = router_req_tokens(r, &q->tokens, &q->text, "tokens", "text", &toks, &n, &owned)) != AL_OK)
        goto out;
    if (!n) {
        e = ali_errf(AL_EINVAL, "tokens: empty (and no text)");
        goto out;
    }
    alora_SeqAppendRequest aq = {.seq_id = s->seq_id};
    alora_SeqAppendReply ar;
    if ((e = al_pb_ref_i32(&aq.tokens, &m, toks, n)) != AL_OK)
        goto out;
    if ((e = al_rpc_call(s->base->cli, alora_Method_BASE_SEQ_APPEND, &aq, &ar, &m, router_timeout(r))) != AL_OK) {
        e = ali_errctx(e, "base");
        goto out;
    }
    if ((e = router_sess_push(s, toks, n)) != AL_OK)
        goto out;
    rep->n_tokens = ar.n_tokens;
    rep->prefix_cached_tokens = ar.prefix_cached_tokens;
    rep->computed_tokens = (uint32_t)n - ar.prefix_cached_tokens;
    rep->timings = ar.timings;
out:
    router_sess_release(r, s);
out2:
    free(owned);
    al_pbmem_free(&m);
    al_rpc_complete(t->job, e);
}

static al_err router_on_append(al_rpc_job *job, const void *req, void *rep, void *user)
{
    router *r = user;
    const alora_SessionAppendRequest *q = req;
    if (!router_sid_ok(q->session_id))
        return ali_errf(AL_EINVAL, "session_id: '%s' is not a valid id", q->session_id);
    if (q->role[0] && strcmp(q->role, "user") && strcmp(q->role, "assistant") && strcmp(q->role, "system") &&
        strcmp(q->role, "tool"))
        return ali_errf(AL_EINVAL, "role: '%s' is not user, assistant, system or tool", q->role);
    router_pool_submit(&r->pool, r, job, req, rep, router_task_append, -1);
    return AL_OK;
}

/* ---- generate ----------------------------------------------------------------------------------- */

static void router_task_generate(router_task *t)
{
    router *r = t->r;
    const alora_SessionGenerateRequest *q = t->req;
    alora_SessionGenerateReply *rep = t->rep;
    al_pbmem *rm = al_rpc_job_mem(t->job);
    router_session *s;
    al_pbmem m = AL_PBMEM_INIT;
    al_err e = router_sess_acquire(r, q->session_id, &s);
    if (e != AL_OK)
        goto out2;
    alora_SeqGenerateRequest gq = {.seq_id = s->seq_id, .sampling = q->sampling, .discard = q->discard};
    alora_SeqGenerateReply gr;
    if ((e = al_rpc_call(s->base->cli, alora_Method_BASE_SEQ_GENERATE, &gq, &gr, &m, router_timeout(r))) != AL_OK) {
        e = ali_errctx(e, "base");
        goto out;
    }
    const int32_t *ot, *ti;
    const float *lp, *tl;
    size_t nt = al_pb_i32(&gr.tokens, &ot), nlp = al_pb_f32(&gr.logprobs.logprob, &lp);
    size_t nti = al_pb_i32(&gr.logprobs.top_ids, &ti), ntl = al_pb_f32(&gr.logprobs.top_logprobs, &tl);
    if ((e = al_pb_set_i32(&rep->tokens, rm, ot, nt)) != AL_OK ||
        (e = al_pb_set_f32(&rep->logprobs.logprob, rm, lp, nlp)) != AL_OK ||
        (e = al_pb_set_i32(&rep->logprobs.top_ids, rm, ti, nti)) != AL_OK ||
        (e = al_pb_set_f32(&rep->logprobs.top_logprobs, rm, tl, ntl)) != AL_OK)
        goto out;
    rep->logprobs.top_n = gr.logprobs.top_n;
    if (!q->discard && (e = router_sess_push(s, ot, nt)) != AL_OK)
        goto out;
    if (r->tok && nt) {
        char *txt = NULL;
        size_t n = 0;
        if (al_tokenizer_decode(r->tok, ot, (int32_t)nt, 1, &txt, &n) == AL_OK)
            e = al_pb_set_bytes(&rep->text, rm, txt, n);
        free(txt);
    }
    rep->finish_reason = gr.finish_reason;
    rep->n_tokens = gr.n_tokens;
    rep->computed_tokens = gr.timings.prefill_tokens + gr.timings.decode_tokens;
    rep->timings = gr.timings;
out:
    router_sess_release(r, s);
out2:
    al_pbmem_free(&m);
    al_rpc_complete(t->job, e);
}

static al_err router_on_generate(al_rpc_job *job, const void *req, void *rep, void *user)
{
    router *r = user;
    const alora_SessionGenerateRequest *q = req;
    if (!router_sid_ok(q->session_id))
        return ali_errf(AL_EINVAL, "session_id: '%s' is not a valid id", q->session_id);
    AL_TRY(router_check_sampling(&q->sampling, "sampling"));
    router_pool_submit(&r->pool, r, job, req, rep, router_task_generate, -1);
    return AL_OK;
}

/* ---- delete ------------------------------------------------------------------------------------- */

static void router_task_delete(router_task *t)
{
    router *r = t->r;
    const alora_SessionDeleteRequest *q = t->req;
    router_session *s;
    al_pbmem m = AL_PBMEM_INIT;
    al_err e = router_sess_acquire(r, q->session_id, &s);
    if (e != AL_OK)
        goto out;
    alora_SeqReleaseRequest rq = {.seq_id = s->seq_id};
    alora_Empty er;
    if (al_rpc_call(s->base->cli, alora_Method_BASE_SEQ_RELEASE, &rq, &er, &m, router_timeout(r)) != AL_OK)
        AL_WARN("router: session %s: releasing base sequence %llu: %s", s->id, (unsigned long long)s->seq_id,
                al_errmsg());
    pthread_mutex_lock(&r->mu);
    s->deleted = true;
    pthread_mutex_unlock(&r->mu);
    router_sess_release(r, s);
out:
    al_pbmem_free(&m);
    al_rpc_complete(t->job, e);
}

static al_err router_on_delete(al_rpc_job *job, const void *req, void *rep, void *user)
{
    router *r = user;
    const alora_SessionDeleteRequest *q = req;
    if (!router_sid_ok(q->session_id))
        return ali_errf(AL_EINVAL, "session_id: '%s' is not a valid id", q->session_id);
    router_pool_submit(&r->pool, r, job, req, rep, router_task_delete, -1);
    return AL_OK;
}

/* ---- invoke ------------------------------------------------------------------------------------- */

static void router_task_sinvoke(router_task *t)
{
    router *r = t->r;
    const alora_SessionInvokeRequest *q = t->req;
    router_session *s;
    al_err e = router_sess_acquire(r, q->session_id, &s);
    if (e == AL_OK) {
        if (s->n == 0) {
            e = ali_errf(AL_EINVAL, "session_id: session '%s' is empty", s->id);
        } else {
            router_invoke_args a = {.base = s->base, .intrinsic = q->intrinsic, .toks = s->toks, .n = s->n,
                                    .seq_id = s->seq_id,
                                    .mode = q->mode, .sampling = q->sampling, .t_accept = t->t_accept};
            router_sampling_defaults(r->intr[t->intr].cfg, &a.sampling, 0, 0);
            e = router_invoke_run(r, &a, t->rep, al_rpc_job_mem(t->job));
        }
        router_sess_release(r, s);
    }
    router_release(r, t->intr);
    al_rpc_complete(t->job, e);
}

static al_err router_on_sinvoke(al_rpc_job *job, const void *req, void *rep, void *user)
{
    router *r = user;
    const alora_SessionInvokeRequest *q = req;
    if (!router_sid_ok(q->session_id))
        return ali_errf(AL_EINVAL, "session_id: '%s' is not a valid id", q->session_id);
    int idx = router_intr_index(r, q->intrinsic);
    if (idx < 0)
        return ali_errf(q->intrinsic[0] ? AL_ENOTFOUND : AL_EINVAL, "intrinsic: unknown '%s'", q->intrinsic);
    if (q->mode != alora_InvokeMode_MODE_ALORA && q->mode != alora_InvokeMode_MODE_LORA)
        return ali_errf(AL_EINVAL, "mode: %d is not MODE_ALORA or MODE_LORA", (int)q->mode);
    AL_TRY(router_check_sampling(&q->sampling, "sampling"));
    AL_TRY(router_admit(r, idx, job));
    router_pool_submit(&r->pool, r, job, req, rep, router_task_sinvoke, idx);
    return AL_OK;
}

void router_sessions_free(router *r)
{
    while (r->sessions) {
        router_session *s = r->sessions;
        r->sessions = s->next;
        free(s->toks);
        free(s);
    }
    r->n_sessions = 0;
}

al_err router_session_register_handlers(router *r)
{
    AL_TRY(al_rpc_server_handle(r->srv, alora_Method_ROUTER_SESSION_CREATE, router_on_create, r));
    AL_TRY(al_rpc_server_handle(r->srv, alora_Method_ROUTER_SESSION_APPEND, router_on_append, r));
    AL_TRY(al_rpc_server_handle(r->srv, alora_Method_ROUTER_SESSION_GENERATE, router_on_generate, r));
    AL_TRY(al_rpc_server_handle(r->srv, alora_Method_ROUTER_SESSION_DELETE, router_on_delete, r));
    AL_TRY(al_rpc_server_handle(r->srv, alora_Method_ROUTER_SESSION_INVOKE, router_on_sinvoke, r));
    return AL_OK;
}
