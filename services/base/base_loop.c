/* base_loop.c: the engine thread: owns the al_engine, runs queued commands, steps, expires leases. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "services/base/base.h"

/* Fails every command (shutdown). */
static void base_fail_all(base_ctx *b, base_cmd *list)
{
    while (list) {
        base_cmd *n = list->next;
        if (list->job) {
            ali_errf(AL_EUNAVAILABLE, "base is shutting down");
            al_rpc_complete(list->job, AL_EUNAVAILABLE);
        }
        free(list);
        list = n;
    }
}

void base_loop_push(base_ctx *b, base_cmd *c)
{
    c->t_queued = al_now();
    c->eseq = -1;
    c->tmp_seq = -1;
    c->next = NULL;
    pthread_mutex_lock(&b->mu);
    if (b->stop) {
        pthread_mutex_unlock(&b->mu);
        base_fail_all(b, c);
        return;
    }
    if (b->q_tail)
        b->q_tail->next = c;
    else
        b->q_head = c;
    b->q_tail = c;
    b->queued++;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

uint32_t base_loop_queued(base_ctx *b)
{
    pthread_mutex_lock(&b->mu);
    uint32_t n = b->queued;
    pthread_mutex_unlock(&b->mu);
    return n;
}

static void base_list_append(base_cmd **head, base_cmd *c)
{
    c->next = NULL;
    while (*head)
        head = &(*head)->next;
    *head = c;
}

/* Runs the commands that wait (in order; a command behind a blocked one on the same sequence waits). */
static void base_start_waiting(base_ctx *b)
{
    base_cmd **pp = &b->waiting;
    uint64_t blocked[64];
    int n_blocked = 0;
    while (*pp) {
        base_cmd *c = *pp, *next = c->next;
        int skip = 0;
        for (int i = 0; i < n_blocked; i++)
            if (c->seq_id && blocked[i] == c->seq_id)
                skip = 1;
        int r = skip ? -1 : base_cmd_start(b, c);
        if (r < 0) {
            if (c->seq_id && n_blocked < 64)
                blocked[n_blocked++] = c->seq_id;
            pp = &c->next;
            continue;
        }
        *pp = next; /* c may be freed (completed) */
        pthread_mutex_lock(&b->mu);
        b->queued--;
        pthread_mutex_unlock(&b->mu);
        if (r == 0)
            base_list_append(&b->running, c);
    }
}

static void base_finish_running(base_ctx *b)
{
    base_cmd **pp = &b->running;
    while (*pp) {
        base_cmd *c = *pp, *next = c->next;
        if (c->eseq >= 0 && !base_eseq_done(b, c->eseq)) {
            pp = &c->next;
            continue;
        }
        if (base_cmd_finish(b, c)) { /* completed and freed */
            *pp = next;
            continue;
        }
        pp = &c->next;
    }
}

static void *base_loop_main(void *arg)
{
    base_ctx *b = arg;
    for (;;) {
        double now = al_now(), wait_s = base_lease_expire(b, now), wait_o = base_owner_expire(b, now);
        if (wait_o < wait_s)
            wait_s = wait_o;
        pthread_mutex_lock(&b->mu);
        if (!b->q_head && !b->stop && !b->running) {
            if (wait_s > 0.25)
                wait_s = 0.25;
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            long ns = ts.tv_nsec + (long)(wait_s * 1e9);
            ts.tv_sec += ns / 1000000000L;
            ts.tv_nsec = ns % 1000000000L;
            pthread_cond_timedwait(&b->cv, &b->mu, &ts);
        }
        base_cmd *in = b->q_head;
        b->q_head = b->q_tail = NULL;
        bool stop = b->stop;
        pthread_mutex_unlock(&b->mu);
        if (stop) {
            base_fail_all(b, in);
            break;
        }
        /* disconnects first: they may free rows the new commands need */
        base_cmd **pp = &in;
        while (*pp) {
            base_cmd *c = *pp;
            if (c->kind == BASE_CMD_PEER_GONE) {
                *pp = c->next;
                base_lease_drop_pipe(b, c->pipe);
                base_owner_peer_gone(b, c->pipe);
                pthread_mutex_lock(&b->mu);
                b->queued--;
                pthread_mutex_unlock(&b->mu);
                free(c);
            } else {
                pp = &c->next;
            }
        }
        while (in) {
            base_cmd *n = in->next;
            base_list_append(&b->waiting, in);
            in = n;
        }
        base_start_waiting(b);
        if (b->running) {
            int32_t n_active = 0;
            al_err e = al_engine_step(b->engine, &n_active);
            if (e != AL_OK)
                AL_ERROR("engine step failed: %s: %s", al_strerror(e), al_errmsg());
            base_finish_running(b);
        }
    }
    base_fail_all(b, b->waiting);
    b->waiting = NULL;
    base_fail_all(b, b->running);
    b->running = NULL;
    return NULL;
}

al_err base_loop_start(base_ctx *b)
{
    al_engine_opts o = {.block_size = b->cfg.base.block_size,
                        .n_blocks = b->cfg.base.kv_blocks,
                        .max_batch_tokens = b->cfg.base.max_batch_tokens,
                        .max_seqs = b->cfg.base.max_seqs,
                        .kv_mem = al_arena_ptr(b->kv),
                        .ops = b->ops,
                        .weights = &b->wview,
                        .prefix_cache = 1,
                        .threads = b->cfg.base.threads > 0 ? b->cfg.base.threads : -1};
    o.vocab = b->vocab = al_service_vocab(&b->cfg, &b->model->cfg);
    AL_TRY(al_engine_create(b->model, &o, &b->engine));
    AL_TRY(base_leases_init(b));
    /* Sequence ids start at a random multiple of 2^32: an id a client kept from an earlier instance
     * of this base (a router that has not yet noticed a restart) names no sequence of this one,
     * instead of someone else's. */
    uint32_t r32 = 0;
    if (getrandom(&r32, sizeof r32, 0) != (ssize_t)sizeof r32)
        r32 = (uint32_t)time(NULL) ^ (uint32_t)getpid() * 2654435761u;
    b->next_seq_id = ((uint64_t)(r32 & 0x7fffffffu) << 32) | 1;
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    b->mu_init = true;
    if (pthread_create(&b->thread, NULL, base_loop_main, b) != 0)
        return ali_errf(AL_EINTERNAL, "base: cannot start the engine thread");
    b->thread_started = true;
    return AL_OK;
}

void base_loop_stop(base_ctx *b)
{
    if (b->thread_started) {
        pthread_mutex_lock(&b->mu);
        b->stop = true;
        pthread_cond_signal(&b->cv);
        pthread_mutex_unlock(&b->mu);
        pthread_join(b->thread, NULL);
        b->thread_started = false;
        /* commands pushed after the thread left (server already closed: none expected) */
        base_fail_all(b, b->q_head);
        b->q_head = b->q_tail = NULL;
    }
}

void base_loop_free(base_ctx *b)
{
    if (b->mu_init) {
        pthread_mutex_destroy(&b->mu);
        pthread_cond_destroy(&b->cv);
        b->mu_init = false;
    }
    base_leases_free(b);
    base_seqs_free(b);
    base_owner_free(b);
    al_engine_free(b->engine);
    b->engine = NULL;
    al_vocab_free(b->vocab);
    b->vocab = NULL;
    al_grammar_cache_clear(); /* the compiled constraints and their masks */
}
