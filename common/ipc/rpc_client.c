/* rpc_client.c: NNG REQ client: pooled contexts, sync/async calls, timeouts, peer-down detection. */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/tls/tls.h>
#include <nng/supplemental/util/platform.h>

#include "common/ipc/rpc_int.h"
#include "common/stage.h"

typedef struct ali_cslot ali_cslot;
struct ali_cslot {
    al_rpc_client *c;
    nng_ctx ctx;
    nng_aio *aio;
    nng_aio *saio;          /* async calls: the send, without a callback (completes inline) */
    ali_cslot *next, *prev; /* free list (next only) or in-flight list */
    bool lost;              /* the peer went away while this call was in flight */
    /* async calls */
    uint16_t method;
    uint64_t request_id;
    nng_time deadline;
    void *rep;
    al_pbmem *m;
    al_rpc_done done;
    void *arg;
};

struct al_rpc_client {
    nng_socket sock;
    al_rpc_client_opts o;
    char url[256];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int npipes;
    uint64_t n_connects;
    int n_async;
    bool closing;
    ali_cslot *free;
    ali_cslot *afree; /* async slots of calls that succeeded, kept for the next async call */
    ali_cslot *inflight;
    _Atomic uint64_t next_id;
};


static al_err ali_nng_err(int rv, const char *what, const char *url)
{
    switch (rv) {
    case NNG_ETIMEDOUT:
        return ali_errf(AL_ETIMEDOUT, "%s %s: timed out", what, url);
    case NNG_ECONNRESET:
    case NNG_ECONNREFUSED:
    case NNG_ECONNSHUT:
    case NNG_ECONNABORTED:
    case NNG_EADDRINVAL:
    case NNG_ENOENT:
        return ali_errf(AL_EUNAVAILABLE, "%s %s: peer unavailable (%s)", what, url, nng_strerror(rv));
    case NNG_ECLOSED:
    case NNG_ECANCELED:
        return ali_errf(AL_ECLOSED, "%s %s: client closed", what, url);
    case NNG_ENOMEM:
        return ali_errf(AL_ENOMEM, "%s %s: out of memory", what, url);
    default:
        return ali_errf(AL_EIO, "%s %s: %s", what, url, nng_strerror(rv));
    }
}

/* ---- peers ---------------------------------------------------------------------------------- */

static void ali_cli_pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
    al_rpc_client *c = arg;
    pthread_mutex_lock(&c->mu);
    if (ev == NNG_PIPE_EV_ADD_POST) {
        c->npipes++;
        c->n_connects++;
        pthread_cond_broadcast(&c->cv);
    } else if (ev == NNG_PIPE_EV_REM_POST && c->npipes > 0) {
        if (--c->npipes == 0) /* fail in-flight calls fast instead of resending them later */
            for (ali_cslot *s = c->inflight; s; s = s->next) {
                s->lost = true;
                nng_aio_abort(s->aio, NNG_ECONNRESET);
            }
    }
    pthread_mutex_unlock(&c->mu);
}

static void ali_inflight_add(al_rpc_client *c, ali_cslot *s)
{
    s->lost = false;
    s->prev = NULL;
    s->next = c->inflight;
    if (c->inflight)
        c->inflight->prev = s;
    c->inflight = s;
}

static void ali_inflight_del(al_rpc_client *c, ali_cslot *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        c->inflight = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->next = s->prev = NULL;
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

void al_rpc_client_opts_default(al_rpc_client_opts *o)
{
    memset(o, 0, sizeof *o);
    o->recv_max = AL_RPC_DEFAULT_CLIENT_RECV_MAX;
    o->max_elems = AL_RPC_DEFAULT_MAX_ELEMS;
    o->reconnect_max_ms = 2000;
    o->connect_wait_ms = AL_RPC_DEFAULT_CONNECT_WAIT_MS;
    o->resend_ms = AL_RPC_DEFAULT_RESEND_MS;
}

al_err al_rpc_client_open(al_rpc_client **out, const char *url, const al_rpc_client_opts *opts)
{
    *out = NULL;
    al_rpc_client *c = calloc(1, sizeof *c);
    if (!c)
        return ali_errf(AL_ENOMEM, "rpc: out of memory");
    al_rpc_client_opts_default(&c->o);
    bool ipc = strncmp(url, "ipc://", 6) == 0 || strncmp(url, "abstract://", 11) == 0;
    c->o.reconnect_min_ms = ipc ? 10 : 100;
    if (opts) {
        if (opts->recv_max)
            c->o.recv_max = opts->recv_max;
        if (opts->max_elems)
            c->o.max_elems = opts->max_elems;
        if (opts->reconnect_min_ms > 0)
            c->o.reconnect_min_ms = opts->reconnect_min_ms;
        if (opts->reconnect_max_ms > 0)
            c->o.reconnect_max_ms = opts->reconnect_max_ms;
        if (opts->connect_wait_ms)
            c->o.connect_wait_ms = opts->connect_wait_ms;
        if (opts->resend_ms > 0)
            c->o.resend_ms = opts->resend_ms;
        c->o.dial_blocking = opts->dial_blocking;
    }
    snprintf(c->url, sizeof c->url, "%s", url);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    atomic_init(&c->next_id, 1);
    int rv = nng_req0_open(&c->sock);
    if (rv != 0) {
        pthread_mutex_destroy(&c->mu);
        pthread_cond_destroy(&c->cv);
        free(c);
        return ali_errf(AL_EIO, "rpc: req socket: %s", nng_strerror(rv));
    }
    nng_socket_set_size(c->sock, NNG_OPT_RECVMAXSZ, c->o.recv_max);
    nng_socket_set_ms(c->sock, NNG_OPT_RECONNMINT, c->o.reconnect_min_ms);
    nng_socket_set_ms(c->sock, NNG_OPT_RECONNMAXT, c->o.reconnect_max_ms);
    nng_socket_set_ms(c->sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
    nng_pipe_notify(c->sock, NNG_PIPE_EV_ADD_POST, ali_cli_pipe_cb, c);
    nng_pipe_notify(c->sock, NNG_PIPE_EV_REM_POST, ali_cli_pipe_cb, c);
    nng_dialer dl;
    rv = nng_dialer_create(&dl, c->sock, url);
    if (rv == 0 && al_rpc_url_tls(url)) {
        nng_tls_config *tc;
        al_err te = ali_tls_for(url, false, &tc);
        if (te != AL_OK) {
            nng_close(c->sock);
            pthread_mutex_destroy(&c->mu);
            pthread_cond_destroy(&c->cv);
            free(c);
            return te;
        }
        rv = nng_dialer_set_ptr(dl, NNG_OPT_TLS_CONFIG, tc);
        nng_tls_config_free(tc); /* the dialer holds it */
    }
    if (rv == 0)
        rv = nng_dialer_start(dl, c->o.dial_blocking ? 0 : NNG_FLAG_NONBLOCK);
    if (rv != 0) {
        al_err e = c->o.dial_blocking && rv != NNG_EADDRINVAL && rv != NNG_ENOTSUP && rv != NNG_EINVAL
                       ? AL_EUNAVAILABLE
                       : AL_EINVAL;
        ali_errf(e, "rpc: dial %s: %s", url, nng_strerror(rv));
        nng_close(c->sock);
        pthread_mutex_destroy(&c->mu);
        pthread_cond_destroy(&c->cv);
        free(c);
        return e;
    }
    *out = c;
    return AL_OK;
}

void al_rpc_client_close(al_rpc_client *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    c->closing = true;
    pthread_mutex_unlock(&c->mu);
    nng_close(c->sock); /* in-flight async calls complete with AL_ECLOSED */
    pthread_mutex_lock(&c->mu);
    while (c->n_async > 0)
        pthread_cond_wait(&c->cv, &c->mu);
    ali_cslot *s = c->free, *as = c->afree;
    c->free = c->afree = NULL;
    pthread_mutex_unlock(&c->mu);
    while (s) {
        ali_cslot *next = s->next;
        nng_aio_free(s->aio);
        free(s);
        s = next;
    }
    while (as) { /* nng_aio_free waits for a callback still returning */
        ali_cslot *next = as->next;
        nng_aio_free(as->saio);
        nng_aio_free(as->aio);
        free(as);
        as = next;
    }
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c);
}

uint64_t al_rpc_client_connections(al_rpc_client *c)
{
    pthread_mutex_lock(&c->mu);
    uint64_t n = c->n_connects;
    pthread_mutex_unlock(&c->mu);
    return n;
}

int al_rpc_client_connected(al_rpc_client *c)
{
    pthread_mutex_lock(&c->mu);
    int n = c->npipes;
    pthread_mutex_unlock(&c->mu);
    return n;
}

/* ---- helpers -------------------------------------------------------------------------------- */

static nng_time ali_deadline(int timeout_ms)
{
    return timeout_ms > 0 ? nng_clock() + (nng_time)timeout_ms : 0;
}

static nng_duration ali_remaining(nng_time deadline)
{
    if (!deadline)
        return NNG_DURATION_INFINITE;
    nng_time now = nng_clock();
    return now >= deadline ? 0 : (nng_duration)(deadline - now);
}

/* Waits (with c->mu held) until a pipe is connected. */
static al_err ali_wait_connected(al_rpc_client *c, nng_time deadline)
{
    if (c->closing)
        return ali_errf(AL_ECLOSED, "rpc %s: client closed", c->url);
    if (c->npipes > 0)
        return AL_OK;
    if (c->o.connect_wait_ms > 0) {
        nng_time until = nng_clock() + (nng_time)c->o.connect_wait_ms;
        if (deadline && deadline < until)
            until = deadline;
        nng_time now = nng_clock();
        nng_duration left = until > now ? (nng_duration)(until - now) : 0;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += left / 1000;
        ts.tv_nsec += (long)(left % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        while (left > 0 && c->npipes == 0 && !c->closing)
            if (pthread_cond_timedwait(&c->cv, &c->mu, &ts) != 0)
                break; /* ETIMEDOUT */
    }
    if (c->npipes > 0)
        return AL_OK;
    return ali_errf(AL_EUNAVAILABLE, "rpc %s: not connected (peer down?)", c->url);
}

static al_err ali_encode_request(al_rpc_client *c, uint16_t method, const void *req, uint64_t trace,
                                 nng_msg **out, uint64_t *id)
{
    const ali_method *m = ali_rpc_method(method);
    if (!m)
        return ali_errf(AL_EINVAL, "rpc: unknown method %u", method);
    size_t plen;
    const uint8_t *small = NULL; /* one encoding pass when it fits the scratch buffer */
    al_err e = ali_pb_encode_small(m->req, req, &small, &plen);
    if (e != AL_OK) {
        small = NULL;
        e = ali_pb_size(m->req, req, &plen);
    }
    if (e != AL_OK || plen > UINT32_MAX)
        return ali_errf(AL_EINVAL, "rpc %s: request does not encode", m->name);
    nng_msg *msg;
    if (nng_msg_alloc(&msg, AL_RPC_HDR_SIZE + plen) != 0)
        return ali_errf(AL_ENOMEM, "rpc %s: out of memory (%zu bytes)", m->name, plen);
    al_rpc_hdr h = {.method = method, .request_id = atomic_fetch_add(&c->next_id, 1),
                    .trace_id = trace, .payload_len = (uint32_t)plen};
    uint8_t *b = nng_msg_body(msg);
    al_rpc_hdr_write(b, &h);
    if (small)
        memcpy(b + AL_RPC_HDR_SIZE, small, plen);
    else
        e = ali_pb_write(m->req, req, b + AL_RPC_HDR_SIZE, plen);
    if (e != AL_OK) {
        nng_msg_free(msg);
        return ali_errctx(e, "rpc %s", m->name);
    }
    *out = msg;
    *id = h.request_id;
    return AL_OK;
}

/* Checks and decodes a reply frame; consumes msg. */
static al_err ali_decode_reply(al_rpc_client *c, nng_msg *msg, uint16_t method, uint64_t id,
                               void *rep, al_pbmem *m, uint32_t *retry_after)
{
    const ali_method *md = ali_rpc_method(method);
    const uint8_t *buf = nng_msg_body(msg);
    size_t len = nng_msg_len(msg);
    al_rpc_hdr h;
    al_err e = al_rpc_hdr_read(buf, len, &h);
    if (e == AL_OK && !(h.flags & AL_RPC_F_REPLY))
        e = ali_errf(AL_EPROTO, "not a reply frame");
    if (e == AL_OK && (h.flags & AL_RPC_F_ERROR)) {
        alora_Status st;
        al_pbmem sm = AL_PBMEM_INIT;
        e = ali_pb_read(&alora_Status_msg, buf + AL_RPC_HDR_SIZE, h.payload_len, &st, sizeof st, &sm, 16);
        al_pbmem_free(&sm);
        nng_msg_free(msg);
        if (e != AL_OK)
            return ali_errf(AL_EPROTO, "rpc %s: bad error reply: %s", md->name, al_errmsg());
        if (retry_after)
            *retry_after = st.retry_after_ms;
        al_err re = al_rpc_status_err((uint32_t)st.code);
        if (re == AL_OK)
            re = AL_EPROTO;
        return ali_errf(re, "%s: %s", md->name, st.message);
    }
    if (e == AL_OK && (h.method != method || h.request_id != id))
        e = ali_errf(AL_EPROTO, "reply for method %u request %llu, expected %u request %llu", h.method,
                     (unsigned long long)h.request_id, method, (unsigned long long)id);
    if (e == AL_OK) {
        e = ali_pb_read(md->rep, buf + AL_RPC_HDR_SIZE, h.payload_len, rep, md->rep_size, m, c->o.max_elems);
        if (e != AL_OK)
            e = ali_errf(AL_EPROTO, "bad %s reply: %s", md->name, al_errmsg());
    } else {
        e = ali_errctx(AL_EPROTO, "rpc %s", md->name);
    }
    nng_msg_free(msg);
    return e;
}

static ali_cslot *ali_slot_new(al_rpc_client *c, void (*cb)(void *), bool async)
{
    ali_cslot *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->c = c;
    if (nng_aio_alloc(&s->aio, cb, async ? s : NULL) != 0) {
        free(s);
        return NULL;
    }
    if (nng_ctx_open(&s->ctx, c->sock) != 0) {
        nng_aio_free(s->aio);
        free(s);
        return NULL;
    }
    return s;
}

/* Starts op (send or recv) on slot s unless the peer is gone. c->mu held. */
static bool ali_start(al_rpc_client *c, ali_cslot *s, bool send, nng_time deadline)
{
    if (s->lost || c->npipes == 0 || c->closing)
        return false;
    nng_aio_set_timeout(s->aio, ali_remaining(deadline));
    if (send)
        nng_ctx_send(s->ctx, s->aio);
    else
        nng_ctx_recv(s->ctx, s->aio);
    return true;
}

/* One synchronous round trip: consumes req, returns the reply message. */
static al_err ali_roundtrip(al_rpc_client *c, nng_msg *req, uint16_t method, nng_time deadline, nng_msg **rep)
{
    *rep = NULL;
    pthread_mutex_lock(&c->mu);
    al_err e = ali_wait_connected(c, deadline);
    ali_cslot *s = NULL;
    if (e == AL_OK) {
        s = c->free;
        if (s)
            c->free = s->next;
        else if (!(s = ali_slot_new(c, NULL, false)))
            e = ali_errf(AL_ENOMEM, "rpc %s: no context", c->url);
    }
    if (e != AL_OK) {
        pthread_mutex_unlock(&c->mu);
        nng_msg_free(req);
        return e;
    }
    ali_inflight_add(c, s);
    nng_ctx_set_ms(s->ctx, NNG_OPT_REQ_RESENDTIME,
                   al_rpc_method_idempotent(method) ? c->o.resend_ms : NNG_DURATION_INFINITE);
    nng_aio_set_msg(s->aio, req);
    bool started = ali_start(c, s, true, deadline);
    pthread_mutex_unlock(&c->mu);
    int rv = NNG_ECONNRESET;
    if (started) {
        nng_aio_wait(s->aio);
        rv = nng_aio_result(s->aio);
    }
    if (method == alora_Method_WORKER_INVOKE)
        al_stage("R5 router send done");
    else if (method == alora_Method_ROUTER_INVOKE)
        al_stage("C1 client send done");
    if (rv != 0) {
        nng_msg_free(nng_aio_get_msg(s->aio));
        nng_aio_set_msg(s->aio, NULL);
    } else {
        pthread_mutex_lock(&c->mu);
        started = ali_start(c, s, false, deadline);
        pthread_mutex_unlock(&c->mu);
        rv = NNG_ECONNRESET;
        if (started) {
            nng_aio_wait(s->aio);
            rv = nng_aio_result(s->aio);
        }
        if (method == alora_Method_WORKER_INVOKE)
            al_stage("R6 router recv done");
        else if (method == alora_Method_ROUTER_INVOKE)
            al_stage("C2 client recv done");
        if (rv == 0) {
            *rep = nng_aio_get_msg(s->aio);
            nng_aio_set_msg(s->aio, NULL);
        }
    }
    pthread_mutex_lock(&c->mu);
    bool lost = s->lost;
    ali_inflight_del(c, s);
    s->next = c->free;
    c->free = s;
    pthread_mutex_unlock(&c->mu);
    if (rv == 0)
        return AL_OK;
    if (lost || rv == NNG_ECONNRESET)
        return ali_errf(AL_EUNAVAILABLE, "%s %s: peer went away", al_rpc_method_name(method) ?: "rpc", c->url);
    return ali_nng_err(rv, al_rpc_method_name(method) ?: "rpc", c->url);
}

/* ---- calls ---------------------------------------------------------------------------------- */

al_err al_rpc_callx(al_rpc_client *c, uint16_t method, const void *req, void *rep, al_pbmem *m,
                    al_rpc_callopts *o)
{
    int timeout = o ? o->timeout_ms : 0;
    nng_time deadline = ali_deadline(timeout);
    nng_msg *msg = NULL, *reply = NULL;
    uint64_t id = 0;
    if (o)
        o->retry_after_ms = 0;
    if (method == alora_Method_WORKER_INVOKE)
        al_stage("R4 router encode");
    else if (method == alora_Method_ROUTER_INVOKE)
        al_stage("C0 client encode");
    AL_TRY(ali_encode_request(c, method, req, o ? o->trace_id : 0, &msg, &id));
    AL_TRY(ali_roundtrip(c, msg, method, deadline, &reply));
    al_err de = ali_decode_reply(c, reply, method, id, rep, m, o ? &o->retry_after_ms : NULL);
    if (method == alora_Method_WORKER_INVOKE)
        al_stage("R7 router decoded");
    else if (method == alora_Method_ROUTER_INVOKE)
        al_stage("C3 client decoded");
    return de;
}

al_err al_rpc_call(al_rpc_client *c, uint16_t method, const void *req, void *rep, al_pbmem *m, int timeout_ms)
{
    al_rpc_callopts o = {.timeout_ms = timeout_ms};
    return al_rpc_callx(c, method, req, rep, m, &o);
}

al_err al_rpc_call_raw(al_rpc_client *c, const void *frame, size_t len, uint8_t **reply,
                       size_t *reply_len, int timeout_ms)
{
    *reply = NULL;
    *reply_len = 0;
    nng_msg *msg, *r = NULL;
    if (nng_msg_alloc(&msg, len) != 0)
        return ali_errf(AL_ENOMEM, "rpc: out of memory");
    if (len)
        memcpy(nng_msg_body(msg), frame, len);
    AL_TRY(ali_roundtrip(c, msg, 0, ali_deadline(timeout_ms), &r));
    size_t n = nng_msg_len(r);
    *reply = malloc(n ? n : 1);
    if (!*reply) {
        nng_msg_free(r);
        return ali_errf(AL_ENOMEM, "rpc: out of memory");
    }
    memcpy(*reply, nng_msg_body(r), n);
    *reply_len = n;
    nng_msg_free(r);
    return AL_OK;
}

/* ---- async ---------------------------------------------------------------------------------- */

static void ali_async_finish(ali_cslot *s, al_err e)
{
    al_rpc_client *c = s->c;
    char msg[600];
    snprintf(msg, sizeof msg, "%s", e != AL_OK ? al_errmsg() : "");
    s->done(e, msg, s->rep, s->arg);
    /* A slot whose call succeeded is kept for the next async call (its REQ context is ready for a
     * new request; NNG lets an aio start again while its callback returns): no context to open, no
     * aio to allocate, nothing for NNG's reaper thread to wake up for. */
    pthread_mutex_lock(&c->mu);
    ali_inflight_del(c, s);
    bool keep = e == AL_OK && !c->closing;
    if (keep) {
        s->next = c->afree;
        c->afree = s;
    }
    pthread_mutex_unlock(&c->mu);
    if (!keep) {
        nng_ctx_close(s->ctx); /* a send still queued (no pipe yet) is aborted: saio completes inline */
        nng_aio_wait(s->saio);
        nng_msg_free(nng_aio_get_msg(s->saio)); /* left there when the send failed */
        nng_aio_set_msg(s->saio, NULL);
        nng_aio_reap(s->saio);
        nng_aio_reap(s->aio); /* freed on NNG's reaper: we are inside its callback */
        free(s);
    }
    pthread_mutex_lock(&c->mu);
    c->n_async--;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

/* The receive's callback (the send completed inline or is aborted by the ctx close in finish). */
static void ali_async_cb(void *arg)
{
    ali_cslot *s = arg;
    al_rpc_client *c = s->c;
    int rv = nng_aio_result(s->aio);
    const char *name = al_rpc_method_name(s->method);
    if (rv != 0) {
        pthread_mutex_lock(&c->mu);
        bool lost = s->lost;
        pthread_mutex_unlock(&c->mu);
        if (rv == NNG_ESTATE) { /* the send failed at once: its error is the one to report */
            nng_aio_wait(s->saio);
            int srv = nng_aio_result(s->saio);
            rv = srv ? srv : rv;
        }
        al_err e = lost || rv == NNG_ECONNRESET
                       ? ali_errf(AL_EUNAVAILABLE, "%s %s: peer went away", name, c->url)
                       : ali_nng_err(rv, name, c->url);
        ali_async_finish(s, e);
        return;
    }
    nng_msg *r = nng_aio_get_msg(s->aio);
    nng_aio_set_msg(s->aio, NULL);
    ali_async_finish(s, ali_decode_reply(c, r, s->method, s->request_id, s->rep, s->m, NULL));
}

al_err al_rpc_call_async(al_rpc_client *c, uint16_t method, const void *req, void *rep,
                         al_pbmem *m, const al_rpc_callopts *o, al_rpc_done done, void *arg)
{
    nng_msg *msg = NULL;
    uint64_t id = 0;
    nng_time deadline = ali_deadline(o ? o->timeout_ms : 0);
    if (o && o->no_wait && !al_rpc_client_connected(c))
        return ali_errf(AL_EUNAVAILABLE, "rpc %s: not connected (peer down?)", c->url);
    AL_TRY(ali_encode_request(c, method, req, o ? o->trace_id : 0, &msg, &id));
    pthread_mutex_lock(&c->mu);
    ali_cslot *s = c->afree;
    if (s)
        c->afree = s->next;
    pthread_mutex_unlock(&c->mu);
    if (!s && (s = ali_slot_new(c, ali_async_cb, true)) && nng_aio_alloc(&s->saio, NULL, NULL) != 0) {
        nng_ctx_close(s->ctx);
        nng_aio_free(s->aio);
        free(s);
        s = NULL;
    }
    if (!s) {
        nng_msg_free(msg);
        return ali_errf(AL_ENOMEM, "rpc %s: no context", c->url);
    }
    s->method = method;
    s->request_id = id;
    s->deadline = deadline;
    s->rep = rep;
    s->m = m;
    s->done = done;
    s->arg = arg;
    nng_ctx_set_ms(s->ctx, NNG_OPT_REQ_RESENDTIME,
                   al_rpc_method_idempotent(method) ? c->o.resend_ms : NNG_DURATION_INFINITE);
    pthread_mutex_lock(&c->mu);
    al_err e = o && o->no_wait && c->npipes == 0 && !c->closing
                   ? ali_errf(AL_EUNAVAILABLE, "rpc %s: not connected (peer down?)", c->url)
                   : ali_wait_connected(c, deadline);
    if (e == AL_OK) {
        c->n_async++;
        ali_inflight_add(c, s);
        /* The send has no callback: REQ finishes it inline once the request is queued on a pipe
         * (no NNG thread wakes for it), and the receive can be posted right after it. */
        nng_aio_set_msg(s->saio, msg);
        nng_aio_set_timeout(s->saio, ali_remaining(deadline));
        nng_ctx_send(s->ctx, s->saio);
        bool started = ali_start(c, s, false, deadline); /* connected under mu: cannot refuse */
        assert(started);
        (void)started;
    }
    pthread_mutex_unlock(&c->mu);
    if (e != AL_OK) {
        nng_msg_free(msg);
        nng_ctx_close(s->ctx);
        nng_aio_free(s->saio);
        nng_aio_free(s->aio);
        free(s);
        return e;
    }
    return AL_OK;
}
