/* base_seq.c: the base's commands on the engine thread: sequences, generation, leases, stats. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "common/log.h"
#include "services/base/base.h"

/* ---- base sequences ------------------------------------------------------------------------- */

base_seq *base_seq_find(base_ctx *b, uint64_t id)
{
    for (int32_t i = 0; id && i < b->n_seqs; i++)
        if (b->seqs[i].id == id)
            return &b->seqs[i];
    return NULL;
}

static base_seq *base_seq_add(base_ctx *b)
{
    if (b->n_seqs == b->cap_seqs) {
        int32_t cap = b->cap_seqs ? 2 * b->cap_seqs : 16;
        base_seq *ns = realloc(b->seqs, sizeof *ns * (size_t)cap);
        if (!ns)
            return NULL;
        b->seqs = ns;
        b->cap_seqs = cap;
    }
    base_seq *s = &b->seqs[b->n_seqs++];
    *s = (base_seq){.id = b->next_seq_id++, .eseq = -1};
    return s;
}

void base_seq_drop(base_ctx *b, uint64_t id)
{
    for (int32_t i = 0; i < b->n_seqs; i++)
        if (b->seqs[i].id == id) {
            if (b->seqs[i].eseq >= 0)
                al_engine_release(b->engine, b->seqs[i].eseq);
            if (!b->seqs[i].pipe && b->seqs[i].orphan_at > 0) /* released by hand while orphaned */
                b->n_orphaned--;
            b->seqs[i] = b->seqs[--b->n_seqs];
            return;
        }
}

void base_seqs_free(base_ctx *b)
{
    if (b->engine)
        for (int32_t i = 0; i < b->n_seqs; i++)
            if (b->seqs[i].eseq >= 0)
                al_engine_release(b->engine, b->seqs[i].eseq);
    free(b->seqs);
    b->seqs = NULL;
    b->n_seqs = b->cap_seqs = 0;
}

/* ---- helpers ---------------------------------------------------------------------------------- */

/* Completes c's RPC (e != AL_OK: the thread's al_errmsg is the message) and frees c. Returns 1. */
static int base_done(base_ctx *b, base_cmd *c, al_err e)
{
    if (c->tmp_seq >= 0)
        al_engine_release(b->engine, c->tmp_seq);
    if (c->seq_id && c->owns_busy) {
        base_seq *s = base_seq_find(b, c->seq_id);
        if (s)
            s->busy = 0;
    }
    if (e != AL_OK)
        AL_DEBUG("%s failed: %s: %s", al_rpc_method_name(c->method), al_strerror(e), al_errmsg());
    if (c->job)
        al_rpc_complete(c->job, e);
    free(c);
    return 1;
}

/* The sequence a command names. NULL when the command must not start now, with *rc what the start
 * function returns: 1 after failing the command (no such sequence), -1 to retry (it is busy). */
static base_seq *base_cmd_seq(base_ctx *b, base_cmd *c, uint64_t id, int *rc)
{
    base_seq *s = base_seq_find(b, id);
    if (!s)
        *rc = base_done(b, c, ali_errf(AL_ENOTFOUND, "seq_id: sequence %llu does not exist", (unsigned long long)id));
    else if (s->busy)
        *rc = -1;
    return s && !s->busy ? s : NULL;
}

static int32_t base_seq_len(base_ctx *b, int32_t eseq, int32_t *n_computed)
{
    const int32_t *t;
    int32_t n = 0, nc = 0;
    if (eseq < 0 || al_engine_seq_tokens(b->engine, eseq, &t, &n, &nc) != AL_OK)
        n = nc = 0;
    if (n_computed)
        *n_computed = nc;
    return n;
}

/* A sequence is done when the engine says so, or when it has nothing left to compute: a prefill-only
 * submit fully served by the prefix cache is never scheduled, so the engine never marks it finished. */
int base_eseq_done(base_ctx *b, int32_t eseq)
{
    if (al_engine_done(b->engine, eseq))
        return 1;
    const int32_t *t;
    int32_t n = 0, nc = 0;
    return al_engine_seq_tokens(b->engine, eseq, &t, &n, &nc) == AL_OK && n == nc;
}

static al_err base_check_len(base_ctx *b, const char *field, int64_t n)
{
    int32_t maxp = b->model->cfg.max_position_embeddings;
    if (n > maxp)
        return ali_errf(AL_ERANGE, "%s: %lld tokens exceed the model's max_position_embeddings %d", field,
                        (long long)n, maxp);
    return AL_OK;
}

/* Submits a prefill-only (max_tokens 0 unless given) base request; EOVERLOADED when all engine slots
 * are busy (the caller retries while other work runs). */
static al_err base_submit_ex(base_ctx *b, const int32_t *toks, int32_t n, int32_t max_tokens, const al_sampling *smp,
                             const al_gen_ctl *ctl, int32_t top_logprobs, int32_t ignore_eos, int32_t prompt_top,
                             int32_t *eseq)
{
    al_request r = {.tokens = toks, .n_tokens = n, .adapter = -1, .act_start = AL_ACT_NONE,
                    .max_tokens = max_tokens, .top_logprobs = top_logprobs, .ignore_eos = ignore_eos,
                    .prompt_logprobs = prompt_top >= 0, .prompt_top_logprobs = AL_MAX(prompt_top, 0)};
    if (smp)
        r.sampling = *smp;
    if (ctl)
        r.ctl = *ctl;
    return al_engine_submit(b->engine, &r, eseq);
}

static al_err base_submit(base_ctx *b, const int32_t *toks, int32_t n, int32_t max_tokens, const al_sampling *smp,
                          const al_gen_ctl *ctl, int32_t top_logprobs, int32_t ignore_eos, int32_t *eseq)
{
    return base_submit_ex(b, toks, n, max_tokens, smp, ctl, top_logprobs, ignore_eos, -1, eseq);
}

/* -1 (retry later) when the engine is full but other work will free slots, else complete with e. */
static int base_submit_failed(base_ctx *b, base_cmd *c, al_err e, const char *field)
{
    if (e == AL_EOVERLOADED && b->running)
        return -1;
    if (e == AL_EOVERLOADED)
        al_rpc_job_set_retry_after(c->job, 100);
    return base_done(b, c, ali_errctx(e, "%s", field));
}

static void base_timings(const base_cmd *c, const al_result *r, int32_t prefill_tokens, alora_Timings *t)
{
    double now = al_now();
    t->queue_ms = (c->t_start - c->t_queued) * 1e3;
    t->total_ms = (now - c->t_queued) * 1e3;
    if (r) {
        t->prefill_ms = r->prefill_ms;
        t->decode_ms = r->decode_ms;
        t->ttft_ms = t->queue_ms + r->prefill_ms;
        t->decode_tokens = (uint32_t)r->n_tokens;
    }
    t->prefill_tokens = prefill_tokens > 0 ? (uint32_t)prefill_tokens : 0;
    t->batch_size = 0;
}

static al_err base_result(base_ctx *b, int32_t eseq, al_result *r)
{
    AL_TRY(al_engine_result(b->engine, eseq, r));
    if (r->finish == AL_FINISH_ERROR) {
        al_err e = r->error != AL_OK ? r->error : AL_EINTERNAL;
        return ali_errf(e, "engine: sequence failed: %s", al_strerror(e));
    }
    return AL_OK;
}

/* ---- SeqCreate / SeqAppend ------------------------------------------------------------------- */

static int base_seq_create_start(base_ctx *b, base_cmd *c)
{
    const alora_SeqCreateRequest *rq = c->req;
    alora_SeqCreateReply *rp = c->rep;
    const int32_t *t;
    size_t n = al_pb_i32(&rq->tokens, &t);
    al_err e = base_check_len(b, "tokens", (int64_t)n);
    if (e != AL_OK)
        return base_done(b, c, e);
    if (rq->prompt_top_logprobs > AL_MAX_TOP_LOGPROBS)
        return base_done(b, c, ali_errf(AL_ERANGE, "prompt_top_logprobs: %u > max %d", rq->prompt_top_logprobs,
                                        AL_MAX_TOP_LOGPROBS));
    int32_t eseq = -1;
    if (n > 0) {
        e = base_submit_ex(b, t, (int32_t)n, 0, NULL, NULL, 0, 0,
                           rq->prompt_logprobs ? (int32_t)rq->prompt_top_logprobs : -1, &eseq);
        if (e != AL_OK)
            return base_submit_failed(b, c, e, "tokens");
    }
    base_seq *s = base_seq_add(b);
    if (!s) {
        if (eseq >= 0)
            al_engine_release(b->engine, eseq);
        return base_done(b, c, ali_errf(AL_ENOMEM, "base: out of memory"));
    }
    s->eseq = eseq;
    base_owner_set(b, s, c->pipe);
    rp->seq_id = s->id;
    if (n == 0) {
        base_timings(c, NULL, 0, &rp->timings);
        return base_done(b, c, AL_OK);
    }
    s->busy = 1;
    c->owns_busy = 1;
    c->seq_id = s->id;
    c->eseq = eseq;
    return 0;
}

static int base_seq_create_finish(base_ctx *b, base_cmd *c)
{
    alora_SeqCreateReply *rp = c->rep;
    al_result r;
    al_err e = base_result(b, c->eseq, &r);
    if (e != AL_OK) {
        base_seq_drop(b, c->seq_id);
        c->seq_id = 0;
        return base_done(b, c, e);
    }
    rp->n_tokens = (uint32_t)base_seq_len(b, c->eseq, NULL);
    rp->prefix_cached_tokens = (uint32_t)r.cached_tokens;
    if (r.prompt_logprobs) {
        al_result pr = {.logprobs = r.prompt_logprobs, .n_tokens = r.n_prompt, .top = r.prompt_top,
                        .top_logprobs = r.prompt_top_logprobs};
        e = al_pb_set_logprobs(&rp->prompt_logprobs, al_rpc_job_mem(c->job), &pr, r.n_prompt, r.prompt_top_logprobs);
        if (e != AL_OK) {
            base_seq_drop(b, c->seq_id);
            c->seq_id = 0;
            return base_done(b, c, e);
        }
    }
    base_timings(c, &r, r.computed_tokens, &rp->timings);
    rp->timings.decode_tokens = 0;
    return base_done(b, c, AL_OK);
}

static int base_seq_append_start(base_ctx *b, base_cmd *c)
{
    const alora_SeqAppendRequest *rq = c->req;
    alora_SeqAppendReply *rp = c->rep;
    int rc;
    base_seq *s = base_cmd_seq(b, c, rq->seq_id, &rc);
    if (!s)
        return rc;
    const int32_t *t;
    size_t n = al_pb_i32(&rq->tokens, &t);
    int32_t len = base_seq_len(b, s->eseq, NULL);
    al_err e = base_check_len(b, "tokens", (int64_t)len + (int64_t)n);
    if (e != AL_OK)
        return base_done(b, c, e);
    if (n == 0) {
        rp->n_tokens = (uint32_t)len;
        base_timings(c, NULL, 0, &rp->timings);
        return base_done(b, c, AL_OK);
    }
    c->n0 = len;
    if (s->eseq < 0) {
        int32_t eseq;
        e = base_submit(b, t, (int32_t)n, 0, NULL, NULL, 0, 0, &eseq);
        if (e != AL_OK)
            return base_submit_failed(b, c, e, "tokens");
        s->eseq = eseq;
        c->cached0 = 0;
    } else {
        al_result r = {.finish = AL_FINISH_LENGTH};
        if (al_engine_result(b->engine, s->eseq, &r) == AL_OK)
            c->cached0 = r.cached_tokens;
        if (r.finish == AL_FINISH_NONE) {
            /* never scheduled (all cached): the engine refuses to continue it; resubmit the whole
             * sequence instead (its blocks come back from the prefix cache) */
            const int32_t *old;
            int32_t no, nc;
            int32_t *all = malloc(sizeof(int32_t) * ((size_t)len + n));
            if (!all || al_engine_seq_tokens(b->engine, s->eseq, &old, &no, &nc) != AL_OK) {
                free(all);
                return base_done(b, c, ali_errf(AL_ENOMEM, "base: out of memory"));
            }
            memcpy(all, old, sizeof(int32_t) * (size_t)no);
            memcpy(all + no, t, sizeof(int32_t) * n);
            int32_t eseq;
            e = base_submit(b, all, no + (int32_t)n, 0, NULL, NULL, 0, 0, &eseq);
            free(all);
            if (e != AL_OK)
                return base_submit_failed(b, c, e, "tokens");
            al_engine_release(b->engine, s->eseq);
            s->eseq = eseq;
            c->cached0 = no;
        } else {
            e = al_engine_continue(b->engine, s->eseq, t, (int32_t)n, 0);
            if (e != AL_OK)
                return base_done(b, c, ali_errctx(e, "tokens"));
        }
    }
    s->busy = 1;
    c->owns_busy = 1;
    c->eseq = s->eseq;
    return 0;
}

static int base_seq_append_finish(base_ctx *b, base_cmd *c)
{
    alora_SeqAppendReply *rp = c->rep;
    al_result r;
    al_err e = base_result(b, c->eseq, &r);
    if (e != AL_OK)
        return base_done(b, c, e);
    int32_t len = base_seq_len(b, c->eseq, NULL);
    rp->n_tokens = (uint32_t)len;
    int32_t cached = r.cached_tokens - c->cached0;
    rp->prefix_cached_tokens = cached > 0 ? (uint32_t)cached : 0;
    base_timings(c, &r, len - c->n0 - (int32_t)rp->prefix_cached_tokens, &rp->timings);
    rp->timings.decode_tokens = 0;
    return base_done(b, c, AL_OK);
}

/* ---- SeqGenerate: a new engine sequence over the same tokens (prefix cache: the full blocks are
 * shared, not recomputed) with this call's sampling; commit = it replaces the old one. ---------- */

static al_err base_sampling(base_ctx *b, const alora_Sampling *in, al_sampling *out, int32_t *max_tokens,
                            int32_t *top_n)
{
    return al_pb_get_sampling(in, b->cfg.base.default_max_tokens, out, max_tokens, top_n);
}

static int base_seq_generate_start(base_ctx *b, base_cmd *c)
{
    const alora_SeqGenerateRequest *rq = c->req;
    int rc;
    base_seq *s = base_cmd_seq(b, c, rq->seq_id, &rc);
    if (!s)
        return rc;
    if (s->eseq < 0)
        return base_done(b, c, ali_errf(AL_EINVAL, "seq_id: sequence %llu has no tokens to continue",
                                        (unsigned long long)rq->seq_id));
    al_sampling smp;
    int32_t max_tokens = 0, top_n = 0;
    al_err e = base_sampling(b, &rq->sampling, &smp, &max_tokens, &top_n);
    if (e != AL_OK)
        return base_done(b, c, e);
    const int32_t *t;
    int32_t n, nc;
    e = al_engine_seq_tokens(b->engine, s->eseq, &t, &n, &nc);
    if (e != AL_OK)
        return base_done(b, c, e);
    e = base_check_len(b, "sampling.max_tokens", (int64_t)n + max_tokens);
    if (e != AL_OK)
        return base_done(b, c, e);
    int32_t eseq;
    al_wire_ctl wc;
    if ((e = al_pb_get_gen_ctl(&rq->sampling, b->vocab, b->model->cfg.vocab_size, &wc)) != AL_OK)
        return base_done(b, c, e);
    e = base_submit(b, t, n, max_tokens, &smp, &wc.ctl, AL_MAX(top_n, 1), rq->sampling.ignore_eos, &eseq);
    al_pb_gen_ctl_free(&wc); /* the engine copied what it keeps */
    if (e != AL_OK)
        return base_submit_failed(b, c, e, "seq_id");
    s->busy = 1;
    c->owns_busy = 1;
    c->eseq = eseq;
    c->tmp_seq = eseq; /* released unless committed */
    c->n0 = n;
    c->stage = top_n;
    return 0;
}

static void base_logprobs(base_ctx *b, base_cmd *c, const al_result *r, int32_t n_out, int32_t top_n,
                          alora_TokenLogprobs *lp)
{
    al_pb_set_logprobs(lp, al_rpc_job_mem(c->job), r, n_out, top_n);
}

static int base_seq_generate_finish(base_ctx *b, base_cmd *c)
{
    const alora_SeqGenerateRequest *rq = c->req;
    alora_SeqGenerateReply *rp = c->rep;
    al_result r;
    al_err e = base_result(b, c->eseq, &r);
    if (e != AL_OK)
        return base_done(b, c, e);
    int32_t n_out = r.n_tokens;
    rp->finish_reason = r.finish != AL_FINISH_STOP ? alora_FinishReason_FINISH_LENGTH
                        : r.stop_index >= 0    ? alora_FinishReason_FINISH_STOP
                                               : alora_FinishReason_FINISH_EOS;
    for (int32_t i = 0; i < n_out; i++)
        for (pb_size_t j = 0; j < rq->sampling.stop_token_ids_count; j++)
            if (r.tokens[i] == rq->sampling.stop_token_ids[j]) {
                n_out = i + 1;
                rp->finish_reason = alora_FinishReason_FINISH_STOP;
            }
    al_pb_set_i32(&rp->tokens, al_rpc_job_mem(c->job), r.tokens, (size_t)n_out);
    base_logprobs(b, c, &r, n_out, c->stage, &rp->logprobs);
    base_timings(c, &r, r.computed_tokens - r.n_tokens, &rp->timings);
    rp->timings.decode_tokens = (uint32_t)n_out;
    if (!rq->discard) {
        base_seq *s = base_seq_find(b, c->seq_id);
        if (s) {
            al_engine_release(b->engine, s->eseq);
            s->eseq = c->eseq;
            c->tmp_seq = -1;
        }
        rp->n_tokens = (uint32_t)(c->n0 + r.n_tokens);
    } else {
        rp->n_tokens = (uint32_t)c->n0;
    }
    return base_done(b, c, AL_OK);
}

/* ---- SeqFork: a new sequence over the first n tokens (blocks shared through the prefix cache) -- */

static int base_seq_fork_start(base_ctx *b, base_cmd *c)
{
    const alora_SeqForkRequest *rq = c->req;
    alora_SeqForkReply *rp = c->rep;
    int rc;
    base_seq *s = base_cmd_seq(b, c, rq->seq_id, &rc);
    if (!s)
        return rc;
    const int32_t *t = NULL;
    int32_t n = 0, nc = 0;
    if (s->eseq >= 0 && al_engine_seq_tokens(b->engine, s->eseq, &t, &n, &nc) != AL_OK)
        return base_done(b, c, ali_errf(AL_EINTERNAL, "seq_id: engine sequence lost"));
    int32_t want = rq->n_tokens ? (int32_t)AL_MIN(rq->n_tokens, (uint32_t)INT32_MAX) : n;
    if (want > n)
        return base_done(b, c, ali_errf(AL_ERANGE, "n_tokens: %d > sequence length %d", want, n));
    int32_t eseq = -1;
    if (want > 0) {
        al_err e = base_submit(b, t, want, 0, NULL, NULL, 0, 0, &eseq);
        if (e != AL_OK)
            return base_submit_failed(b, c, e, "seq_id");
    }
    base_seq *ns = base_seq_add(b);
    if (!ns) {
        if (eseq >= 0)
            al_engine_release(b->engine, eseq);
        return base_done(b, c, ali_errf(AL_ENOMEM, "base: out of memory"));
    }
    ns->eseq = eseq;
    base_owner_set(b, ns, c->pipe);
    rp->seq_id = ns->id;
    rp->n_tokens = (uint32_t)want;
    if (eseq < 0)
        return base_done(b, c, AL_OK);
    ns->busy = 1;
    base_seq_find(b, rq->seq_id)->busy = 1; /* the source (base_seq_add may have moved it) */
    c->owns_busy = 1;
    c->n0 = want;
    c->eseq = eseq;
    return 0;
}

static int base_seq_fork_finish(base_ctx *b, base_cmd *c)
{
    alora_SeqForkReply *rp = c->rep;
    base_seq *ns = base_seq_find(b, rp->seq_id);
    if (ns)
        ns->busy = 0;
    al_result r;
    al_err e = base_result(b, c->eseq, &r);
    if (e != AL_OK) {
        base_seq_drop(b, rp->seq_id);
        return base_done(b, c, e);
    }
    return base_done(b, c, AL_OK);
}

/* ---- SeqRelease --------------------------------------------------------------------------------- */

static int base_seq_release_start(base_ctx *b, base_cmd *c)
{
    const alora_SeqReleaseRequest *rq = c->req;
    int rc;
    base_seq *s = base_cmd_seq(b, c, rq->seq_id, &rc);
    if (!s)
        return rc;
    base_seq_drop(b, rq->seq_id); /* its leases keep their pinned blocks */
    c->seq_id = 0;
    return base_done(b, c, AL_OK);
}

/* ---- Lease / Unlease ------------------------------------------------------------------------------ */

static int base_lease_start(base_ctx *b, base_cmd *c)
{
    const alora_LeaseRequest *rq = c->req;
    alora_LeaseReply *rp = c->rep;
    const int32_t *t;
    size_t n = al_pb_i32(&rq->tokens, &t);
    if ((rq->seq_id != 0) == (n > 0))
        return base_done(b, c, ali_errf(AL_EINVAL, "lease: exactly one of seq_id and tokens must be set"));
    if (rq->seq_id) {
        int rc;
        base_seq *s = base_cmd_seq(b, c, rq->seq_id, &rc);
        if (!s)
            return rc;
        int32_t nc, len = base_seq_len(b, s->eseq, &nc);
        int64_t want = rq->n_tokens ? (int64_t)rq->n_tokens : len;
        if (want <= 0)
            return base_done(b, c, ali_errf(AL_EINVAL, "seq_id: sequence %llu is empty", (unsigned long long)rq->seq_id));
        if (want > len)
            return base_done(b, c, ali_errf(AL_ERANGE, "n_tokens: %lld > sequence length %d", (long long)want, len));
        c->n0 = (int32_t)want;
        c->eseq = s->eseq;
        /* n_cached of a session lease: every leased token whose KV the session already holds (its
         * own or shared from the prefix cache); not the sequence's cached_tokens, which only counts
         * what the cache served when it was submitted (0 for a fresh conversation) */
        c->cached0 = (int32_t)AL_MIN((int64_t)nc, want);
        if (want > nc) { /* the last generated token has no KV yet: compute it */
            al_err e = al_engine_continue(b->engine, s->eseq, NULL, 0, 0);
            if (e != AL_OK)
                return base_done(b, c, ali_errctx(e, "seq_id"));
            s->busy = 1;
            c->owns_busy = 1;
            return 0;
        }
        c->eseq = -1;
        c->stage = 1;
        return base_cmd_finish(b, c) ? 1 : 0;
    }
    int64_t want = rq->n_tokens ? (int64_t)rq->n_tokens : (int64_t)n;
    if (want > (int64_t)n)
        return base_done(b, c, ali_errf(AL_ERANGE, "n_tokens: %lld > %zu tokens given", (long long)want, n));
    al_err e = base_check_len(b, "tokens", want);
    if (e != AL_OK)
        return base_done(b, c, e);
    int32_t eseq;
    e = base_submit(b, t, (int32_t)want, 0, NULL, NULL, 0, 0, &eseq);
    if (e != AL_OK)
        return base_submit_failed(b, c, e, "tokens");
    c->eseq = eseq;
    c->tmp_seq = eseq;
    c->n0 = (int32_t)want;
    (void)rp;
    return 0;
}

static int base_lease_finish(base_ctx *b, base_cmd *c)
{
    const alora_LeaseRequest *rq = c->req;
    alora_LeaseReply *rp = c->rep;
    int32_t eseq = c->tmp_seq >= 0 ? c->tmp_seq : c->eseq;
    if (eseq < 0) {
        base_seq *s = base_seq_find(b, c->seq_id);
        if (!s)
            return base_done(b, c, ali_errf(AL_ENOTFOUND, "seq_id: sequence released"));
        eseq = s->eseq;
    }
    al_result r;
    al_err e = base_result(b, eseq, &r);
    if (e != AL_OK)
        return base_done(b, c, e);
    e = base_lease_grant(b, eseq, c->n0, c->job ? al_rpc_job_pipe(c->job) : 0, rq->ttl_ms, rp);
    if (e != AL_OK)
        return base_done(b, c, e);
    bool by_seq = rq->seq_id != 0;
    rp->n_cached = (uint32_t)(by_seq ? c->cached0 : AL_MIN(r.cached_tokens, c->n0));
    base_timings(c, by_seq ? NULL : &r, by_seq ? c->n0 - c->cached0 : r.computed_tokens, &rp->timings);
    AL_DEBUG("lease: queued %.2f ms, ran %.2f ms, %u of %d tokens cached", (c->t_start - c->t_queued) * 1e3,
             (al_now() - c->t_start) * 1e3, rp->n_cached, c->n0);
    return base_done(b, c, AL_OK);
}

static int base_unlease(base_ctx *b, base_cmd *c)
{
    const alora_UnleaseRequest *rq = c->req;
    return base_done(b, c, base_lease_release(b, rq->lease_id));
}

static int base_stats(base_ctx *b, base_cmd *c)
{
    base_stats_fill(b, c->rep);
    return base_done(b, c, AL_OK);
}

void base_stats_fill(base_ctx *b, alora_BaseStatsReply *r)
{
    al_engine_stats st;
    al_engine_stats_get(b->engine, &st);
    snprintf(r->base_instance_id, sizeof r->base_instance_id, "%s", b->instance_id);
    r->kv_blocks_total = (uint32_t)st.blocks_total;
    r->kv_blocks_used = (uint32_t)st.blocks_used;
    r->kv_blocks_free = (uint32_t)st.blocks_free;
    r->kv_blocks_cached = (uint32_t)st.blocks_cached;
    r->leases = (uint32_t)b->n_leases;
    r->sequences = (uint32_t)b->n_seqs;
    r->prefix_cache_hits = st.cache_hit_blocks;
    r->prefix_cache_misses = st.cache_miss_blocks;
    r->prefix_cache_hit_tokens = st.cache_hit_tokens;
    r->running = (uint32_t)st.running;
    r->queued = base_loop_queued(b);
    r->prefill_tokens = st.prefill_tokens;
    r->decode_tokens = st.decode_tokens;
    r->requests = b->requests;
    r->peers = (uint32_t)__atomic_load_n(&b->peers, __ATOMIC_RELAXED);
    r->kv_copied_bytes = al_engine_kvpool(b->engine)->copied_bytes;
    r->leases_expired = b->leases_expired;
    r->leases_dropped = b->leases_dropped;
    r->seqs_orphaned = (uint32_t)b->n_orphaned;
    r->seqs_reclaimed = b->seqs_reclaimed;
    r->seqs_freed = b->seqs_freed;
    r->clients = (uint32_t)b->n_clients;
    r->steps = st.steps;
    r->shared_steps = st.shared_steps;
    r->step_seqs = st.step_seqs;
    r->step_rows = st.step_rows;
}

static int base_hello_cmd(base_ctx *b, base_cmd *c)
{
    return base_done(b, c, base_hello(b, c->pipe, c->req, c->rep, al_rpc_job_mem(c->job)));
}

/* ---- dispatch ------------------------------------------------------------------------------------ */

int base_cmd_start(base_ctx *b, base_cmd *c)
{
    c->t_start = al_now();
    int r;
    switch (c->method) {
    case alora_Method_BASE_SEQ_CREATE: r = base_seq_create_start(b, c); break;
    case alora_Method_BASE_SEQ_APPEND: r = base_seq_append_start(b, c); break;
    case alora_Method_BASE_SEQ_GENERATE: r = base_seq_generate_start(b, c); break;
    case alora_Method_BASE_SEQ_FORK: r = base_seq_fork_start(b, c); break;
    case alora_Method_BASE_SEQ_RELEASE: r = base_seq_release_start(b, c); break;
    case alora_Method_BASE_LEASE: r = base_lease_start(b, c); break;
    case alora_Method_BASE_UNLEASE: r = base_unlease(b, c); break;
    case alora_Method_BASE_STATS: r = base_stats(b, c); break;
    case alora_Method_BASE_HELLO: r = base_hello_cmd(b, c); break;
    default: r = base_done(b, c, ali_errf(AL_EINTERNAL, "base: method %u has no engine command", c->method));
    }
    if (r >= 0)
        b->requests++;
    return r;
}

int base_cmd_finish(base_ctx *b, base_cmd *c)
{
    switch (c->method) {
    case alora_Method_BASE_SEQ_CREATE: return base_seq_create_finish(b, c);
    case alora_Method_BASE_SEQ_APPEND: return base_seq_append_finish(b, c);
    case alora_Method_BASE_SEQ_GENERATE: return base_seq_generate_finish(b, c);
    case alora_Method_BASE_SEQ_FORK: return base_seq_fork_finish(b, c);
    case alora_Method_BASE_LEASE: return base_lease_finish(b, c);
    default: return base_done(b, c, ali_errf(AL_EINTERNAL, "base: method %u does not wait", c->method));
    }
}
