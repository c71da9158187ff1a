/* worker_invoke.c: WORKER_INVOKE on the engine thread: validate the lease, submit, reply. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "common/ipc/lease_table.h"
#include "common/log.h"
#include "common/stage.h"
#include "services/worker/worker.h"

void worker_cmd_done(worker_ctx *w, worker_cmd *c, al_err e)
{
    if (e != AL_OK) {
        __atomic_add_fetch(&w->errors, 1, __ATOMIC_RELAXED);
        AL_DEBUG("invoke failed: %s: %s", al_strerror(e), al_errmsg());
    }
    al_stage("W6 worker complete");
    al_rpc_complete(c->job, e); /* the reply holds copies: the answer goes before the clean-up */
    al_stage("W9 worker complete returned");
    if (c->eseq >= 0 && w->engine) /* on the engine thread, before it looks at its queue again */
        al_engine_release(w->engine, c->eseq);
    free(c);
}

static int worker_fail(worker_ctx *w, worker_cmd *c, al_err e)
{
    worker_cmd_done(w, c, e);
    return 1;
}

/* The lease row for (table_offset, generation), checked against the arenas. */
static al_err worker_lease_check(worker_ctx *w, const alora_LeaseRef *l, uint32_t start_pos, const int32_t **table,
                                 const uint8_t **hdr_out)
{
    size_t tbytes = al_arena_size(w->tables);
    size_t ids_bytes = sizeof(int32_t) * (size_t)w->max_blocks_per_seq;
    if (l->table_offset < AL_LEASE_ROW_HDR_BYTES || l->table_offset % 16 != 0 || l->table_offset > tbytes ||
        tbytes - l->table_offset < ids_bytes)
        return ali_errf(AL_EINVAL, "lease.table_offset: %llu is not a block-table row of the %zu-byte table arena",
                        (unsigned long long)l->table_offset, tbytes);
    if (start_pos > l->n_tokens)
        return ali_errf(AL_ERANGE, "start_pos: %u > lease.n_tokens %u", start_pos, l->n_tokens);
    const uint8_t *hdr = (const uint8_t *)al_arena_ptr(w->tables) + l->table_offset - AL_LEASE_ROW_HDR_BYTES;
    uint64_t gen = al_lease_row_generation(hdr);
    if (gen == 0 || (l->generation && gen != l->generation))
        return ali_errf(AL_ENOTFOUND, "lease: lease %llu is no longer held (row generation %llu, expected %llu)",
                        (unsigned long long)l->lease_id, (unsigned long long)gen, (unsigned long long)l->generation);
    const al_lease_row_hdr *h = (const al_lease_row_hdr *)hdr;
    int32_t need = (int32_t)(((int64_t)start_pos + w->block_size - 1) / w->block_size);
    if (h->n_tokens < (int32_t)start_pos || h->n_blocks < need || h->n_blocks > w->max_blocks_per_seq)
        return ali_errf(AL_ERANGE, "lease: row holds %d tokens in %d blocks, %u positions requested", h->n_tokens,
                        h->n_blocks, start_pos);
    const int32_t *ids = (const int32_t *)(hdr + AL_LEASE_ROW_HDR_BYTES);
    for (int32_t i = 0; i < need; i++)
        if (ids[i] < 0 || ids[i] >= w->kv_n_blocks)
            return ali_errf(AL_EINVAL, "lease: block id %d out of range [0, %d)", ids[i], w->kv_n_blocks);
    *table = ids;
    *hdr_out = hdr;
    return AL_OK;
}

static al_err worker_sampling(worker_ctx *w, const alora_Sampling *in, al_sampling *out, int32_t *max_tokens,
                              int32_t *top_n)
{
    return al_pb_get_sampling(in, w->intr->max_tokens, out, max_tokens, top_n);
}

int worker_invoke_start(worker_ctx *w, worker_cmd *c)
{
    const alora_WorkerInvokeRequest *rq = c->req;
    c->t_start = al_now();
    if (rq->deadline_ms && (c->t_start - c->t_queued) * 1e3 > rq->deadline_ms)
        return worker_fail(w, c, ali_errf(AL_ETIMEDOUT, "deadline_ms: %u ms passed in the queue", rq->deadline_ms));
    al_request r = {.adapter = w->slot};
    al_err e = worker_sampling(w, &rq->sampling, &r.sampling, &r.max_tokens, &c->top_n);
    if (e != AL_OK)
        return worker_fail(w, c, e);
    r.top_logprobs = AL_MAX(c->top_n, 1);
    r.ignore_eos = rq->sampling.ignore_eos;
    const int32_t *t;
    size_t n;
    int64_t total;
    if (rq->mode == alora_InvokeMode_MODE_LORA) {
        n = al_pb_i32(&rq->full_tokens, &t);
        if (n == 0)
            return worker_fail(w, c, ali_errf(AL_EINVAL, "full_tokens: MODE_LORA needs the whole token sequence"));
        r.act_start = 0; /* plain LoRA baseline: adapted from position 0, no reuse */
        total = (int64_t)n + r.max_tokens;
        c->reused = 0;
    } else if (rq->mode == alora_InvokeMode_MODE_ALORA) {
        n = al_pb_i32(&rq->tokens, &t);
        if (n == 0)
            return worker_fail(w, c, ali_errf(AL_EINVAL, "tokens: at least one token after start_pos is needed"));
        if (rq->has_lease) {
            const int32_t *table = NULL;
            e = worker_lease_check(w, &rq->lease, rq->start_pos, &table, &c->row_hdr);
            if (e != AL_OK)
                return worker_fail(w, c, e);
            c->generation = al_lease_row_generation(c->row_hdr);
            r.prefix = (al_kv_seg){.pool = (float *)al_arena_ptr(w->kv), .table = table, .pos0 = 0,
                                   .n = (int32_t)rq->start_pos};
        } else if (rq->start_pos != 0) {
            return worker_fail(w, c, ali_errf(AL_EINVAL, "lease: start_pos %u > 0 needs a lease", rq->start_pos));
        }
        if (rq->has_activation_start) {
            if (rq->activation_start < rq->start_pos)
                return worker_fail(w, c, ali_errf(AL_ERANGE, "activation_start: %u lies inside the leased prefix "
                                                             "(start_pos %u)", rq->activation_start, rq->start_pos));
            r.act_start = (int32_t)AL_MIN(rq->activation_start, (uint32_t)INT32_MAX);
        } else {
            r.act_start = AL_ACT_NONE;
        }
        total = (int64_t)rq->start_pos + (int64_t)n + r.max_tokens;
        c->reused = (int32_t)rq->start_pos;
    } else {
        return worker_fail(w, c, ali_errf(AL_EINVAL, "mode: %d is not a known InvokeMode", (int)rq->mode));
    }
    if (total > w->model->cfg.max_position_embeddings)
        return worker_fail(w, c, ali_errf(AL_ERANGE, "tokens: %lld positions exceed max_position_embeddings %d",
                                          (long long)total, w->model->cfg.max_position_embeddings));
    r.tokens = t;
    r.n_tokens = (int32_t)n;
    al_wire_ctl wc;
    if ((e = al_pb_get_gen_ctl(&rq->sampling, w->vocab, w->model->cfg.vocab_size, &wc)) != AL_OK)
        return worker_fail(w, c, e);
    r.ctl = wc.ctl;
    e = al_engine_submit(w->engine, &r, &c->eseq);
    al_stage("W3c submitted");
    al_pb_gen_ctl_free(&wc); /* the engine copied what it keeps */
    if (e == AL_EOVERLOADED && w->running) {
        c->eseq = -1;
        return -1;
    }
    if (e != AL_OK) {
        c->eseq = -1;
        return worker_fail(w, c, ali_errctx(e, "tokens"));
    }
    return 0;
}

int worker_invoke_finish(worker_ctx *w, worker_cmd *c)
{
    const alora_WorkerInvokeRequest *rq = c->req;
    alora_WorkerInvokeReply *rp = c->rep;
    al_result r;
    al_err e = al_engine_result(w->engine, c->eseq, &r);
    if (e == AL_OK && r.finish == AL_FINISH_ERROR)
        e = ali_errf(r.error ? r.error : AL_EINTERNAL, "engine: invocation failed: %s", al_strerror(r.error));
    if (e == AL_OK && c->row_hdr && al_lease_row_generation(c->row_hdr) != c->generation)
        e = ali_errf(AL_EUNAVAILABLE, "lease: lease %llu was released during the invocation",
                     (unsigned long long)rq->lease.lease_id);
    if (e != AL_OK)
        return worker_fail(w, c, e);
    al_stage_val("W5c compute ms", r.prefill_ms + r.decode_ms);
    al_pbmem *m = al_rpc_job_mem(c->job);
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
    al_pb_set_i32(&rp->tokens, m, r.tokens, (size_t)n_out);
    al_pb_set_logprobs(&rp->logprobs, m, &r, n_out, c->top_n);
    rp->computed_tokens = (uint32_t)r.computed_tokens;
    rp->reused_tokens = (uint32_t)c->reused;
    double now = al_now();
    rp->timings.queue_ms = (c->t_start - c->t_queued) * 1e3;
    rp->timings.prefill_ms = r.prefill_ms;
    rp->timings.decode_ms = r.decode_ms;
    rp->timings.ttft_ms = rp->timings.queue_ms + r.prefill_ms;
    rp->timings.total_ms = (now - c->t_queued) * 1e3;
    rp->timings.prefill_tokens = (uint32_t)AL_MAX(r.computed_tokens - r.n_tokens + 1, 0);
    rp->timings.decode_tokens = (uint32_t)n_out;
    /* mean invocations per forward step this one ran in (1 = it ran alone) */
    rp->timings.batch_size = r.steps ? (uint32_t)((r.step_seqs + r.steps / 2) / r.steps) : 0;
    snprintf(rp->worker_id, sizeof rp->worker_id, "%s", w->worker_id);
    __atomic_add_fetch(&w->invocations, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&w->computed_tokens, (uint64_t)r.computed_tokens, __ATOMIC_RELAXED);
    __atomic_add_fetch(&w->reused_tokens, (uint64_t)c->reused, __ATOMIC_RELAXED);
    worker_cmd_done(w, c, AL_OK);
    return 1;
}
