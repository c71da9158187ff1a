/* router_session.c: sessions (token histories) backed by base sequences, durable in the session store,
 * owned by an API key, rebuilt from their tokens when their KV is gone; SessionInvoke leases them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "services/router/router.h"
#include "services/router/router_http.h"
#include "services/router/session_store.h"

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

static double router_wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

const char *router_owner(const router *r, int key_index)
{
    if (key_index >= 0 && key_index < r->cfg.router.api_keys.n && r->key_owner)
        return r->key_owner[key_index];
    return "local";
}

static al_err router_no_session(const char *id)
{
    return ali_errf(AL_ENOTFOUND, "session_id: no session '%s'", id);
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
        e = router_no_session(id);
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
    } else {
        s->last_used = router_wall();
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

/* Writes s (held busy by the caller, or not yet linked) to the store; touch: it is being used now. */
static void router_sess_persist(router *r, router_session *s, bool touch)
{
    if (!r->store)
        return;
    router_store_row row = {.created = s->created, .base_index = s->base->index, .seq_id = s->seq_id,
                            .toks = s->toks, .n = s->n};
    ROUTER_STRCPY(row.id, s->id);
    ROUTER_STRCPY(row.owner, s->owner);
    pthread_mutex_lock(&r->mu);
    if (touch)
        s->last_used = router_wall();
    row.last_used = s->last_used;
    ROUTER_STRCPY(row.base_inst, s->base_inst);
    pthread_mutex_unlock(&r->mu);
    if (router_store_put(r->store, &row) != AL_OK)
        AL_WARN("router: session %s: not saved: %s", s->id, al_errmsg());
}

/* Releases base sequence seq of base b if it still belongs to instance inst (a restarted base has
 * new sequences that may reuse the number). */
static void router_seq_drop(router *r, router_base *b, uint64_t seq, const char *inst, const char *why)
{
    pthread_mutex_lock(&r->mu);
    bool same = seq && inst[0] && !strcmp(b->id, inst);
    pthread_mutex_unlock(&r->mu);
    if (!same)
        return;
    al_pbmem m = AL_PBMEM_INIT;
    alora_SeqReleaseRequest rq = {.seq_id = seq};
    alora_Empty er;
    if (al_rpc_call(b->cli, alora_Method_BASE_SEQ_RELEASE, &rq, &er, &m, 5000) != AL_OK)
        AL_WARN("router: %s: releasing base sequence %llu: %s", why, (unsigned long long)seq, al_errmsg());
    al_pbmem_free(&m);
}

static int32_t router_blocks(const router *r, int32_t n)
{
    int bs = r->cfg.base.block_size > 0 ? r->cfg.base.block_size : 16;
    return (n + bs - 1) / bs;
}

/* Keeps the KV that resident sessions pin on base b (plus `extra` blocks about to be) within
 * router.session_kv_percent of its pool: the least recently used idle sessions (not `keep`) lose
 * their sequence (tokens kept; rebuilt on next use), so sessions never starve stateless traffic. */
static void router_sess_trim(router *r, router_base *b, const router_session *keep, int64_t extra)
{
    int64_t cap = (int64_t)r->cfg.base.kv_blocks * r->cfg.router.session_kv_percent / 100 - extra;
    for (;;) {
        pthread_mutex_lock(&r->mu);
        int64_t used = 0;
        router_session *lru = NULL;
        for (router_session *s = r->sessions; s; s = s->next) {
            if (s->deleted || s->base != b || !s->seq_id)
                continue;
            used += router_blocks(r, s->n);
            if (s != keep && !s->busy && (!lru || s->last_used < lru->last_used))
                lru = s;
        }
        if (used <= cap || !lru) {
            pthread_mutex_unlock(&r->mu);
            return;
        }
        lru->busy = 1;
        uint64_t seq = lru->seq_id;
        char inst[64];
        ROUTER_STRCPY(inst, lru->base_inst);
        lru->seq_id = 0;
        lru->base_inst[0] = 0;
        pthread_mutex_unlock(&r->mu);
        AL_INFO("router: session %s: KV evicted (sessions pin %lld of %lld blocks on base %d; %d tokens kept)",
                lru->id, (long long)used, (long long)cap, b->index, lru->n);
        router_seq_drop(r, b, seq, inst, "evicting an idle session");
        router_sess_persist(r, lru, false);
        pthread_mutex_lock(&r->mu);
        lru->busy = 0; /* not router_sess_release: an eviction is no use (last_used stays) */
        pthread_mutex_unlock(&r->mu);
    }
}

/* Makes s (held busy by the caller) resident on a live base: when its sequence is gone (evicted, or
 * its base restarted since it was made) a new one is prefilled with s->toks (counted in s->rebuilt). */
static al_err router_sess_ensure(router *r, router_session *s)
{
    pthread_mutex_lock(&r->mu);
    bool known = s->base->id[0] != 0;
    pthread_mutex_unlock(&r->mu);
    if (!known) /* a router just (re)started: learn the bases' instance ids */
        router_base_poll(r);
    pthread_mutex_lock(&r->mu);
    router_base *b = s->base;
    bool live = router_base_live_locked(b);
    bool same = s->seq_id && live && !strcmp(b->id, s->base_inst);
    pthread_mutex_unlock(&r->mu);
    if (same)
        return AL_OK;
    if (!live) {
        router_base *nb = router_base_for_session(r);
        if (!nb)
            return ali_errf(AL_EUNAVAILABLE, "session '%s': its base is not available (and no other base is live)",
                            s->id);
        pthread_mutex_lock(&r->mu);
        b->sessions--;
        nb->sessions++;
        s->base = b = nb;
        pthread_mutex_unlock(&r->mu);
    }
    router_sess_trim(r, b, s, router_blocks(r, s->n)); /* room for it first */
    alora_SeqCreateRequest cq = alora_SeqCreateRequest_init_zero;
    alora_SeqCreateReply cr;
    al_pbmem m = AL_PBMEM_INIT;
    al_err e = s->n ? al_pb_ref_i32(&cq.tokens, &m, s->toks, (size_t)s->n) : AL_OK;
    if (e == AL_OK)
        e = al_rpc_call(b->cli, alora_Method_BASE_SEQ_CREATE, &cq, &cr, &m, router_timeout(r));
    al_pbmem_free(&m);
    if (e != AL_OK)
        return ali_errctx(e, "base (rebuilding session %s)", s->id);
    pthread_mutex_lock(&r->mu);
    s->seq_id = cr.seq_id;
    ROUTER_STRCPY(s->base_inst, b->id);
    s->rebuilt += s->n;
    pthread_mutex_unlock(&r->mu);
    AL_INFO("router: session %s: KV rebuilt on base %d (%d tokens, %u from the prefix cache)", s->id, b->index, s->n,
            cr.prefix_cached_tokens);
    router_sess_persist(r, s, true);
    return AL_OK;
}

/* A base call on s failed because its sequence is gone (the base restarted, or freed it): forget the
 * sequence so that router_sess_ensure rebuilds it. */
static bool router_sess_gone(router *r, router_session *s, al_err e)
{
    if (e != AL_ENOTFOUND || !strstr(al_errmsg(), "does not exist"))
        return false;
    AL_INFO("router: session %s: base sequence %llu is gone (%s); rebuilding", s->id, (unsigned long long)s->seq_id,
            al_errmsg());
    pthread_mutex_lock(&r->mu);
    s->seq_id = 0;
    s->base_inst[0] = 0;
    pthread_mutex_unlock(&r->mu);
    router_base_poll(r);
    return true;
}

/* Quotas of owner (r->mu held): one more session, add_tokens more tokens. */
static al_err router_quota_locked(router *r, const char *owner, bool new_session, int64_t add_tokens)
{
    int ns = 0;
    int64_t nt = 0;
    for (router_session *s = r->sessions; s; s = s->next)
        if (!s->deleted && !strcmp(s->owner, owner)) {
            ns++;
            nt += s->n;
        }
    int max_s = r->cfg.router.session_max_per_key;
    int64_t max_t = r->cfg.router.session_max_tokens_per_key;
    if (new_session && max_s > 0 && ns >= max_s)
        return ali_errf(AL_ECAPACITY,
                        "quota: this API key holds %d sessions, the most router.session_max_per_key allows; "
                        "delete one first",
                        ns);
    if (new_session && ns >= ROUTER_MAX_SESSIONS)
        return ali_errf(AL_ECAPACITY, "sessions: %d open, the maximum", ns);
    if (max_t > 0 && add_tokens > 0 && nt + add_tokens > max_t)
        return ali_errf(AL_ECAPACITY,
                        "quota: this API key's sessions hold %lld tokens; %lld more would pass "
                        "router.session_max_tokens_per_key = %lld",
                        (long long)nt, (long long)add_tokens, (long long)max_t);
    return AL_OK;
}

/* Deletes s (held busy by the caller; router_sess_release frees it): its base sequence, its row, its
 * HTTP-side state. */
static void router_sess_drop(router *r, router_session *s, const char *why)
{
    pthread_mutex_lock(&r->mu);
    uint64_t seq = s->seq_id;
    char inst[64];
    ROUTER_STRCPY(inst, s->base_inst);
    s->deleted = true;
    pthread_mutex_unlock(&r->mu);
    router_seq_drop(r, s->base, seq, inst, why);
    if (r->store && router_store_delete(r->store, s->id) != AL_OK)
        AL_WARN("router: session %s: %s", s->id, al_errmsg());
    if (r->http && !r->stopping) /* stopping: the front door is being freed */
        rh_sess_forget(r->http, s->id);
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

al_err router_session_new(router *r, const char *owner, const int32_t *toks, size_t n, const char *want_id,
                          char id[64], char base_id[64])
{
    pthread_mutex_lock(&r->mu);
    al_err e = router_quota_locked(r, owner, true, (int64_t)n);
    pthread_mutex_unlock(&r->mu);
    if (e != AL_OK)
        return e;
    router_session *s = calloc(1, sizeof *s);
    if (!s || router_sess_push(s, toks, n) != AL_OK) {
        if (s)
            free(s->toks);
        free(s);
        return ali_errf(AL_ENOMEM, "router: out of memory");
    }
    if (want_id && want_id[0]) {
        ROUTER_STRCPY(s->id, want_id);
    } else {
        char rid[33];
        if ((e = router_session_new_id(rid)) != AL_OK)
            goto fail;
        ROUTER_STRCPY(s->id, rid);
    }
    ROUTER_STRCPY(s->owner, owner);
    s->created = s->last_used = router_wall();
    /* the session lives on one base while it is up: the least loaded one now */
    router_base *rb = router_base_for_session(r);
    if (!rb) {
        e = AL_EUNAVAILABLE;
        goto fail;
    }
    s->base = rb;
    s->busy = 1;
    pthread_mutex_lock(&r->mu);
    if (router_sess_find_locked(r, s->id)) {
        pthread_mutex_unlock(&r->mu);
        e = ali_errf(AL_EINVAL, "session_id: '%s' already exists", s->id);
        goto fail;
    }
    s->next = r->sessions;
    r->sessions = s;
    r->n_sessions++;
    rb->sessions++;
    pthread_mutex_unlock(&r->mu);
    if ((e = router_sess_ensure(r, s)) != AL_OK) { /* SeqCreate with its tokens */
        char msg[600];
        snprintf(msg, sizeof msg, "%s", al_errmsg());
        pthread_mutex_lock(&r->mu);
        s->deleted = true;
        pthread_mutex_unlock(&r->mu);
        router_sess_release(r, s);
        return ali_errf(e, "%s", msg);
    }
    pthread_mutex_lock(&r->mu);
    s->rebuilt = 0; /* its first prefill, not a rebuild */
    snprintf(id, 64, "%s", s->id);
    snprintf(base_id, 64, "%s", s->base->id);
    pthread_mutex_unlock(&r->mu);
    router_sess_release(r, s);
    return AL_OK;
fail:
    free(s->toks);
    free(s);
    return e;
}

static void router_task_create(router_task *t)
{
    router *r = t->r;
    const alora_SessionCreateRequest *q = t->req;
    alora_SessionCreateReply *rep = t->rep;
    const int32_t *toks = NULL;
    size_t n = 0;
    int32_t *owned = NULL;
    pb_callback_t none = {0};
    al_err e = router_req_tokens(r, &none, &q->system, "tokens", "system", &toks, &n, &owned);
    if (e == AL_OK) /* the RPC API is the cluster's own (no API keys): sessions made here are "local" */
        e = router_session_new(r, "local", toks, n, q->session_id, rep->session_id, rep->base_instance_id);
    if (e == AL_OK)
        rep->n_tokens = (uint32_t)n;
    free(owned);
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
    pthread_mutex_lock(&r->mu);
    e = router_quota_locked(r, s->owner, false, (int64_t)n);
    pthread_mutex_unlock(&r->mu);
    if (e != AL_OK)
        goto out;
    alora_SeqAppendRequest aq = alora_SeqAppendRequest_init_zero;
    alora_SeqAppendReply ar;
    if ((e = al_pb_ref_i32(&aq.tokens, &m, toks, n)) != AL_OK)
        goto out;
    for (int attempt = 0;; attempt++) {
        if ((e = router_sess_ensure(r, s)) != AL_OK)
            goto out;
        aq.seq_id = s->seq_id;
        e = al_rpc_call(s->base->cli, alora_Method_BASE_SEQ_APPEND, &aq, &ar, &m, router_timeout(r));
        if (e == AL_OK || attempt > 0 || !router_sess_gone(r, s, e))
            break;
    }
    if (e != AL_OK) {
        e = ali_errctx(e, "base");
        goto out;
    }
    if ((e = router_sess_push(s, toks, n)) != AL_OK)
        goto out;
    router_sess_persist(r, s, true);
    router_sess_trim(r, s->base, s, 0);
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
    pthread_mutex_lock(&r->mu);
    e = q->discard ? AL_OK : router_quota_locked(r, s->owner, false, 1);
    pthread_mutex_unlock(&r->mu);
    if (e != AL_OK)
        goto out;
    alora_SeqGenerateRequest gq = {.sampling = q->sampling, .discard = q->discard};
    alora_SeqGenerateReply gr;
    for (int attempt = 0;; attempt++) {
        if ((e = router_sess_ensure(r, s)) != AL_OK)
            goto out;
        gq.seq_id = s->seq_id;
        e = al_rpc_call(s->base->cli, alora_Method_BASE_SEQ_GENERATE, &gq, &gr, &m, router_timeout(r));
        if (e == AL_OK || attempt > 0 || !router_sess_gone(r, s, e))
            break;
        al_pbmem_free(&m);
    }
    if (e != AL_OK) {
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
    if (!q->discard) {
        router_sess_persist(r, s, true);
        router_sess_trim(r, s->base, s, 0);
    }
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
    router_sess_drop(r, s, "deleting a session");
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
            for (int attempt = 0;; attempt++) {
                if ((e = router_sess_ensure(r, s)) != AL_OK)
                    break;
                router_invoke_args a = {.base = s->base, .intrinsic = q->intrinsic, .toks = s->toks, .n = s->n,
                                        .seq_id = s->seq_id, .mode = q->mode, .sampling = q->sampling,
                                        .t_accept = t->t_accept};
                router_sampling_defaults(r->intr[t->intr].cfg, &a.sampling, 0, 0);
                e = router_invoke_run(r, &a, t->rep, al_rpc_job_mem(t->job));
                if (e == AL_OK || attempt > 0 || !router_sess_gone(r, s, e))
                    break;
            }
            if (e == AL_OK)
                router_sess_persist(r, s, true); /* last used */
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

/* ---- the HTTP front door's view, the store, expiry ----------------------------------------------- */

al_err router_session_get(router *r, const char *id, const char *owner, int32_t *n, int32_t **toks)
{
    if (toks)
        *toks = NULL;
    pthread_mutex_lock(&r->mu);
    router_session *s = router_sid_ok(id) ? router_sess_find_locked(r, id) : NULL;
    al_err e = AL_OK;
    if (!s || strcmp(s->owner, owner)) { /* someone else's: exactly like a missing one */
        e = router_no_session(id);
    } else {
        *n = s->n;
        if (toks) {
            if (s->busy)
                e = ali_errf(AL_EOVERLOADED, "session_id: session '%s' is busy with another request", id);
            else if (!(*toks = malloc(sizeof(int32_t) * (size_t)(s->n + 1))))
                e = ali_errf(AL_ENOMEM, "router: out of memory");
            else
                memcpy(*toks, s->toks, sizeof(int32_t) * (size_t)s->n);
        }
    }
    pthread_mutex_unlock(&r->mu);
    return e;
}

al_err router_session_seq(router *r, const char *id, uint64_t gone, uint64_t *seq, router_base **base)
{
    router_session *s;
    AL_TRY(router_sess_acquire(r, id, &s));
    if (gone) {
        pthread_mutex_lock(&r->mu);
        if (s->seq_id == gone) {
            s->seq_id = 0;
            s->base_inst[0] = 0;
        }
        pthread_mutex_unlock(&r->mu);
    }
    al_err e = router_sess_ensure(r, s);
    *seq = s->seq_id;
    *base = s->base;
    router_sess_release(r, s);
    return e;
}

int32_t router_session_take_rebuilt(router *r, const char *id)
{
    pthread_mutex_lock(&r->mu);
    router_session *s = router_sess_find_locked(r, id);
    int32_t n = s ? s->rebuilt : 0;
    if (s)
        s->rebuilt = 0;
    pthread_mutex_unlock(&r->mu);
    return n;
}

static int router_info_cmp(const void *a, const void *b)
{
    const router_session_info *x = a, *y = b;
    return x->created < y->created ? -1 : x->created > y->created ? 1 : strcmp(x->id, y->id);
}

al_err router_session_list(router *r, const char *owner, router_session_info **out, int *n)
{
    pthread_mutex_lock(&r->mu);
    int k = 0;
    router_session_info *v = malloc(sizeof *v * (size_t)(r->n_sessions + 1));
    for (router_session *s = r->sessions; v && s; s = s->next)
        if (!s->deleted && !strcmp(s->owner, owner)) {
            v[k] = (router_session_info){.n = s->n, .created = s->created, .last_used = s->last_used,
                                         .resident = s->seq_id != 0};
            ROUTER_STRCPY(v[k].id, s->id);
            k++;
        }
    pthread_mutex_unlock(&r->mu);
    if (!v)
        return ali_errf(AL_ENOMEM, "router: out of memory");
    qsort(v, (size_t)k, sizeof *v, router_info_cmp);
    *out = v;
    *n = k;
    return AL_OK;
}

void router_sessions_expire(router *r)
{
    int ttl = r->cfg.router.session_ttl_s;
    if (ttl <= 0 || al_now() - r->last_expiry < 1.0)
        return;
    r->last_expiry = al_now();
    for (;;) {
        double now = router_wall();
        pthread_mutex_lock(&r->mu);
        router_session *s = r->sessions;
        while (s && (s->deleted || s->busy || now - s->last_used <= ttl))
            s = s->next;
        if (s)
            s->busy = 1;
        pthread_mutex_unlock(&r->mu);
        if (!s)
            return;
        AL_INFO("router: session %s expired (idle %.0f s, router.session_ttl_s = %d)", s->id, now - s->last_used, ttl);
        router_sess_drop(r, s, "expiring a session");
        router_sess_release(r, s);
    }
}

typedef struct router_load {
    router *r;
    char (*expired)[64];
    int n_expired, cap_expired;
    int loaded;
} router_load;

static al_err router_load_row(const router_store_row *row, void *user)
{
    router_load *L = user;
    router *r = L->r;
    int ttl = r->cfg.router.session_ttl_s;
    if ((ttl > 0 && router_wall() - row->last_used > ttl) || !router_sid_ok(row->id)) {
        if (L->n_expired == L->cap_expired) {
            int cap = L->cap_expired ? 2 * L->cap_expired : 16;
            char(*nv)[64] = realloc(L->expired, sizeof *nv * (size_t)cap);
            if (!nv)
                return ali_errf(AL_ENOMEM, "router: out of memory");
            L->expired = nv;
            L->cap_expired = cap;
        }
        ROUTER_STRCPY(L->expired[L->n_expired], row->id);
        L->n_expired++;
        return AL_OK;
    }
    router_session *s = calloc(1, sizeof *s);
    if (!s || router_sess_push(s, row->toks, (size_t)row->n) != AL_OK) {
        free(s);
        return ali_errf(AL_ENOMEM, "router: out of memory");
    }
    ROUTER_STRCPY(s->id, row->id);
    ROUTER_STRCPY(s->owner, row->owner);
    s->created = row->created;
    s->last_used = row->last_used;
    bool ok = row->base_index >= 0 && row->base_index < r->n_bases;
    s->base = &r->bases[ok ? row->base_index : 0];
    /* the sequence may still be on that base instance (router_sess_ensure checks the instance id;
     * an op that finds it gone rebuilds it) */
    s->seq_id = ok ? row->seq_id : 0;
    ROUTER_STRCPY(s->base_inst, ok ? row->base_inst : "");
    s->next = r->sessions;
    r->sessions = s;
    r->n_sessions++;
    s->base->sessions++;
    L->loaded++;
    return AL_OK;
}

al_err router_sessions_load(router *r)
{
    int nk = r->cfg.router.api_keys.n;
    if (nk > 0) {
        if (!(r->key_owner = calloc((size_t)nk, sizeof *r->key_owner)))
            return ali_errf(AL_ENOMEM, "router: out of memory");
        for (int i = 0; i < nk; i++)
            router_session_owner_of_key(r->cfg.router.api_keys.v[i], r->key_owner[i]);
    }
    AL_TRY(router_store_open(r->cfg.router.session_db, &r->store));
    router_load L = {.r = r};
    pthread_mutex_lock(&r->mu);
    al_err e = router_store_each(r->store, router_load_row, &L);
    pthread_mutex_unlock(&r->mu);
    for (int i = 0; e == AL_OK && i < L.n_expired; i++)
        e = router_store_delete(r->store, L.expired[i]);
    free(L.expired);
    if (e != AL_OK)
        return e;
    if (L.loaded || L.n_expired)
        AL_INFO("router: %d sessions loaded from %s (%d expired, dropped)", L.loaded, r->cfg.router.session_db,
                L.n_expired);
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
    router_store_close(r->store);
    r->store = NULL;
    free(r->key_owner);
    r->key_owner = NULL;
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
