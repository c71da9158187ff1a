/* rpc_server.c: async NNG REP server: N contexts, aio state machines, deferred replies, peers. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/supplemental/tls/tls.h>

#include "common/ipc/rpc_int.h"
#include "common/log.h"
#include "common/stage.h"

enum { ALI_SRV_IDLE, ALI_SRV_RECV, ALI_SRV_WAIT, ALI_SRV_SEND };
/* Call states (atomic): the handler is running / it deferred / the completion came while it was
 * still running / it returned after deferring (the completer sends). */
enum { ALI_CALL_RUNNING, ALI_CALL_DEFER_RUNNING, ALI_CALL_EARLY, ALI_CALL_DEFERRED };

typedef struct ali_srv_ctx {
    al_rpc_server *s;
    nng_ctx ctx;
    nng_aio *aio;
    int state;
} ali_srv_ctx;

typedef struct ali_peer {
    uint32_t id;
    uint64_t pid;
} ali_peer;

struct al_rpc_server {
    nng_socket sock;
    al_rpc_server_opts o;
    struct {
        al_rpc_handler fn;
        void *user;
    } h[ALI_RPC_MAX_METHOD];
    al_rpc_peer_cb peer_cb;
    void *peer_user;
    ali_srv_ctx *w;
    int n_w;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int deferred; /* deferred calls not yet sent */
    _Atomic bool closing;
    ali_peer *peers;
    size_t n_peers, cap_peers;
};

struct al_rpc_job {
    al_rpc_server *s;
    ali_srv_ctx *w;
    const ali_method *m;
    al_rpc_hdr h;
    _Atomic int state;
    bool deferred;
    al_err result;
    uint32_t retry_after_ms;
    uint32_t pipe;
    uint64_t pid;
    al_pbmem mem;
    void *req, *rep;
    char errmsg[512];
};

static uint64_t ali_srv_peer_pid(al_rpc_server *s, uint32_t id)
{
    uint64_t pid = 0;
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->n_peers; i++)
        if (s->peers[i].id == id) {
            pid = s->peers[i].pid;
            break;
        }
    pthread_mutex_unlock(&s->mu);
    return pid;
}

/* ---- replies ------------------------------------------------------------------------------- */

/* Builds a reply message: payload msg of type d (or NULL = error Status from code/text). */
static nng_msg *ali_srv_build(const al_rpc_hdr *req, const pb_msgdesc_t *d, const void *msg,
                              al_err code, const char *text, uint32_t retry_after_ms)
{
    alora_Status st = alora_Status_init_zero;
    al_rpc_hdr h = {.flags = AL_RPC_F_REPLY, .method = req->method, .request_id = req->request_id,
                    .trace_id = req->trace_id};
    if (!d) {
        h.flags |= AL_RPC_F_ERROR;
        h.status = (uint16_t)al_rpc_status_code(code);
        st.code = al_rpc_status_code(code);
        snprintf(st.message, sizeof st.message, "%s", text && text[0] ? text : al_strerror(code));
        st.retry_after_ms = retry_after_ms;
        d = &alora_Status_msg;
        msg = &st;
    }
    size_t plen;
    const uint8_t *small = NULL; /* one encoding pass when it fits the scratch buffer */
    if (ali_pb_encode_small(d, msg, &small, &plen) != AL_OK) {
        small = NULL;
        if (ali_pb_size(d, msg, &plen) != AL_OK)
            return NULL;
    }
    if (plen > UINT32_MAX)
        return NULL;
    nng_msg *r;
    if (nng_msg_alloc(&r, AL_RPC_HDR_SIZE + plen) != 0)
        return NULL;
    uint8_t *b = nng_msg_body(r);
    h.payload_len = (uint32_t)plen;
    al_rpc_hdr_write(b, &h);
    if (small)
        memcpy(b + AL_RPC_HDR_SIZE, small, plen);
    else if (ali_pb_write(d, msg, b + AL_RPC_HDR_SIZE, plen) != AL_OK) {
        nng_msg_free(r);
        return NULL;
    }
    return r;
}

static void ali_srv_send(ali_srv_ctx *w, nng_msg *r)
{
    if (atomic_load(&w->s->closing)) { /* the contexts are being stopped */
        if (r)
            nng_msg_free(r);
        return;
    }
    if (!r) { /* could not build any reply: the requester times out; keep serving */
        AL_ERROR("rpc: could not build a reply (out of memory)");
        w->state = ALI_SRV_RECV;
        nng_ctx_recv(w->ctx, w->aio);
        return;
    }
    nng_aio_set_msg(w->aio, r);
    w->state = ALI_SRV_SEND;
    nng_ctx_send(w->ctx, w->aio);
}

static void ali_srv_error(ali_srv_ctx *w, const al_rpc_hdr *h, al_err e, const char *text)
{
    ali_srv_send(w, ali_srv_build(h, NULL, NULL, e, text, 0));
}

/* Encodes the call's outcome, frees the call, sends on its context. */
static void ali_call_finish(al_rpc_job *call)
{
    al_rpc_server *s = call->s;
    ali_srv_ctx *w = call->w;
    bool deferred = call->deferred;
    nng_msg *r;
    if (call->result == AL_OK) {
        r = ali_srv_build(&call->h, call->m->rep, call->rep, AL_OK, NULL, 0);
        if (!r) {
            char text[256];
            snprintf(text, sizeof text, "%s: reply does not encode: %s", call->m->name, al_errmsg());
            r = ali_srv_build(&call->h, NULL, NULL, AL_EINTERNAL, text, 0);
        }
    } else {
        r = ali_srv_build(&call->h, NULL, NULL, call->result, call->errmsg, call->retry_after_ms);
    }
    if (call->h.method == alora_Method_ROUTER_INVOKE)
        al_stage("R8 router reply built");
    else if (call->h.method == alora_Method_WORKER_INVOKE)
        al_stage("W8 worker reply built");
    al_pbmem_free(&call->mem);
    free(call);
    if (!deferred) { /* on the context's own callback */
        ali_srv_send(w, r);
        return;
    }
    /* Another thread: hold mu so close cannot stop the context between the check and the send. */
    pthread_mutex_lock(&s->mu);
    ali_srv_send(w, r);
    s->deferred--;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void ali_call_set_result(al_rpc_job *call, al_err e)
{
    call->result = e;
    if (e != AL_OK) {
        const char *m = al_errmsg();
        snprintf(call->errmsg, sizeof call->errmsg, "%s", m && m[0] ? m : al_strerror(e));
    }
}

/* ---- request handling (RECV completed) -------------------------------------------------- */

static void ali_srv_handle(ali_srv_ctx *w)
{
    al_rpc_server *s = w->s;
    nng_msg *msg = nng_aio_get_msg(w->aio);
    nng_aio_set_msg(w->aio, NULL);
    const uint8_t *buf = nng_msg_body(msg);
    size_t len = nng_msg_len(msg);
    al_rpc_hdr h;
    char text[600];

    al_err e = al_rpc_hdr_read(buf, len, &h);
    if (e == AL_OK && (h.flags & AL_RPC_F_REPLY))
        e = ali_errf(AL_EPROTO, "a reply frame sent as a request");
    if (e != AL_OK) {
        ali_hdr_peek(buf, len, &h);
        snprintf(text, sizeof text, "%s", al_errmsg());
        nng_msg_free(msg);
        ali_srv_error(w, &h, e, text);
        return;
    }
    if (h.method == alora_Method_ROUTER_INVOKE)
        al_stage("R1 router srv recv");
    else if (h.method == alora_Method_WORKER_INVOKE)
        al_stage("W1 worker srv recv");
    const ali_method *m = ali_rpc_method(h.method);
    al_rpc_handler fn = m ? s->h[h.method].fn : NULL;
    if (!fn) {
        nng_msg_free(msg);
        if (!m)
            snprintf(text, sizeof text, "unknown method %u", h.method);
        else
            snprintf(text, sizeof text, "method %s is not served here", m->name);
        ali_srv_error(w, &h, AL_EUNSUPPORTED, text);
        return;
    }
    size_t off_req = (sizeof(al_rpc_job) + 15) & ~(size_t)15;
    size_t off_rep = (off_req + m->req_size + 15) & ~(size_t)15;
    al_rpc_job *call = calloc(1, off_rep + m->rep_size);
    if (!call) {
        nng_msg_free(msg);
        ali_srv_error(w, &h, AL_ENOMEM, "out of memory");
        return;
    }
    call->s = s;
    call->w = w;
    call->m = m;
    call->h = h;
    call->req = (char *)call + off_req;
    call->rep = (char *)call + off_rep;
    nng_pipe p = nng_msg_get_pipe(msg);
    call->pipe = nng_pipe_id(p) > 0 ? (uint32_t)nng_pipe_id(p) : 0;
    call->pid = call->pipe ? ali_srv_peer_pid(s, call->pipe) : 0;
    e = ali_pb_read(m->req, buf + AL_RPC_HDR_SIZE, h.payload_len, call->req, m->req_size, &call->mem,
                    s->o.max_elems);
    if (e == AL_OK)
        e = ali_pb_check_strings(m->req, call->req, buf + AL_RPC_HDR_SIZE, h.payload_len);
    nng_msg_free(msg);
    if (e != AL_OK) {
        snprintf(text, sizeof text, "bad %s request: %s", m->name, al_errmsg());
        al_pbmem_free(&call->mem);
        free(call);
        ali_srv_error(w, &h, e, text);
        return;
    }
    atomic_store(&call->state, ALI_CALL_RUNNING);
    w->state = ALI_SRV_WAIT;
    ali_errclear();
    e = fn(call, call->req, call->rep, s->h[h.method].user);
    int st = ALI_CALL_RUNNING;
    if (atomic_load(&call->state) == st) { /* answered now */
        ali_call_set_result(call, e);
        ali_call_finish(call);
        return;
    }
    /* Deferred: whoever comes second (this thread or the completer) sends. Do not touch the call
     * after a successful hand-over: the completer may free it at once. */
    st = ALI_CALL_DEFER_RUNNING;
    if (atomic_compare_exchange_strong(&call->state, &st, ALI_CALL_DEFERRED))
        return;
    ali_call_finish(call); /* ALI_CALL_EARLY: completed while the handler ran */
}

static void ali_srv_cb(void *arg)
{
    ali_srv_ctx *w = arg;
    int rv = nng_aio_result(w->aio);
    switch (w->state) {
    case ALI_SRV_RECV:
        if (rv != 0) {
            if (rv == NNG_ENOMEM) /* transient: keep serving */
                nng_ctx_recv(w->ctx, w->aio);
            return; /* closed (NNG_ECLOSED, NNG_ECANCELED, NNG_ENOENT) */
        }
        ali_srv_handle(w);
        return;
    case ALI_SRV_SEND:
        if (rv != 0) { /* a failed send leaves the message with us */
            nng_msg_free(nng_aio_get_msg(w->aio));
            nng_aio_set_msg(w->aio, NULL);
            if (rv == NNG_ECLOSED || rv == NNG_ECANCELED || rv == NNG_ENOENT)
                return;
        }
        w->state = ALI_SRV_RECV;
        nng_ctx_recv(w->ctx, w->aio);
        return;
    default:
        return;
    }
}

/* ---- peers ---------------------------------------------------------------------------------- */

static void ali_srv_pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
    al_rpc_server *s = arg;
    uint32_t id = (uint32_t)nng_pipe_id(p);
    uint64_t pid = 0;
    bool known = false;
    if (ev == NNG_PIPE_EV_ADD_POST) {
        if (nng_pipe_get_uint64(p, NNG_OPT_IPC_PEER_PID, &pid) != 0)
            pid = 0;
        pthread_mutex_lock(&s->mu);
        if (s->n_peers == s->cap_peers) {
            size_t cap = s->cap_peers ? 2 * s->cap_peers : 16;
            ali_peer *np = realloc(s->peers, cap * sizeof *np);
            if (np) {
                s->peers = np;
                s->cap_peers = cap;
            }
        }
        if (s->n_peers < s->cap_peers) {
            s->peers[s->n_peers++] = (ali_peer){id, pid};
            known = true;
        }
        pthread_mutex_unlock(&s->mu);
    } else if (ev == NNG_PIPE_EV_REM_POST) {
        pthread_mutex_lock(&s->mu);
        for (size_t i = 0; i < s->n_peers; i++)
            if (s->peers[i].id == id) {
                pid = s->peers[i].pid;
                s->peers[i] = s->peers[--s->n_peers];
                known = true;
                break;
            }
        pthread_mutex_unlock(&s->mu);
    }
    if (known && s->peer_cb)
        s->peer_cb(id, pid, ev == NNG_PIPE_EV_ADD_POST, s->peer_user);
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

void al_rpc_server_opts_default(al_rpc_server_opts *o)
{
    memset(o, 0, sizeof *o);
    o->n_ctx = AL_RPC_DEFAULT_N_CTX;
    o->recv_max = AL_RPC_DEFAULT_SERVER_RECV_MAX;
    o->max_elems = AL_RPC_DEFAULT_MAX_ELEMS;
    o->ipc_perms = 0600;
}

al_err al_rpc_server_new(al_rpc_server **out, const al_rpc_server_opts *opts)
{
    *out = NULL;
    al_rpc_server *s = calloc(1, sizeof *s);
    if (!s)
        return ali_errf(AL_ENOMEM, "rpc: out of memory");
    al_rpc_server_opts_default(&s->o);
    if (opts) {
        if (opts->n_ctx > 0)
            s->o.n_ctx = opts->n_ctx;
        if (opts->recv_max)
            s->o.recv_max = opts->recv_max;
        if (opts->max_elems)
            s->o.max_elems = opts->max_elems;
        if (opts->ipc_perms)
            s->o.ipc_perms = opts->ipc_perms;
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    int rv = nng_rep0_open(&s->sock);
    if (rv != 0) {
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cv);
        free(s);
        return ali_errf(AL_EIO, "rpc: rep socket: %s", nng_strerror(rv));
    }
    nng_socket_set_size(s->sock, NNG_OPT_RECVMAXSZ, s->o.recv_max);
    nng_pipe_notify(s->sock, NNG_PIPE_EV_ADD_POST, ali_srv_pipe_cb, s);
    nng_pipe_notify(s->sock, NNG_PIPE_EV_REM_POST, ali_srv_pipe_cb, s);
    *out = s;
    return AL_OK;
}

al_err al_rpc_server_handle(al_rpc_server *s, uint16_t method, al_rpc_handler fn, void *user)
{
    if (s->started)
        return ali_errf(AL_EINVAL, "rpc: handlers must be registered before listening");
    if (!ali_rpc_method(method))
        return ali_errf(AL_EINVAL, "rpc: unknown method %u", method);
    s->h[method].fn = fn;
    s->h[method].user = user;
    return AL_OK;
}

al_err al_rpc_server_on_peer(al_rpc_server *s, al_rpc_peer_cb cb, void *user)
{
    if (s->started)
        return ali_errf(AL_EINVAL, "rpc: peer callback must be set before listening");
    s->peer_cb = cb;
    s->peer_user = user;
    return AL_OK;
}

static al_err ali_srv_start(al_rpc_server *s)
{
    s->w = calloc((size_t)s->o.n_ctx, sizeof *s->w);
    if (!s->w)
        return ali_errf(AL_ENOMEM, "rpc: out of memory");
    for (int i = 0; i < s->o.n_ctx; i++) {
        ali_srv_ctx *w = &s->w[i];
        w->s = s;
        int rv = nng_aio_alloc(&w->aio, ali_srv_cb, w);
        if (rv == 0) {
            rv = nng_ctx_open(&w->ctx, s->sock);
            if (rv != 0) {
                nng_aio_free(w->aio);
                w->aio = NULL;
            }
        }
        if (rv != 0)
            return ali_errf(AL_EIO, "rpc: context %d: %s", i, nng_strerror(rv));
        s->n_w = i + 1;
    }
    s->started = true;
    for (int i = 0; i < s->n_w; i++) {
        s->w[i].state = ALI_SRV_RECV;
        nng_ctx_recv(s->w[i].ctx, s->w[i].aio);
    }
    return AL_OK;
}

al_err al_rpc_server_listen(al_rpc_server *s, const char *url, char *bound, size_t bound_len)
{
    nng_listener l;
    int rv = nng_listener_create(&l, s->sock, url);
    if (rv != 0)
        return ali_errf(AL_EINVAL, "rpc: listen %s: %s", url, nng_strerror(rv));
    nng_listener_set_size(l, NNG_OPT_RECVMAXSZ, s->o.recv_max);
    if (al_rpc_url_tls(url)) {
        nng_tls_config *tc;
        al_err e = ali_tls_for(url, true, &tc);
        if (e != AL_OK) {
            nng_listener_close(l);
            return e;
        }
        rv = nng_listener_set_ptr(l, NNG_OPT_TLS_CONFIG, tc);
        nng_tls_config_free(tc); /* the listener holds it */
        if (rv != 0) {
            nng_listener_close(l);
            return ali_errf(AL_EIO, "rpc: listen %s: tls: %s", url, nng_strerror(rv));
        }
    }
    if (strncmp(url, "ipc://", 6) == 0) {
        rv = nng_listener_set_int(l, NNG_OPT_IPC_PERMISSIONS, s->o.ipc_perms);
        if (rv != 0) {
            nng_listener_close(l);
            return ali_errf(AL_EIO, "rpc: listen %s: permissions: %s", url, nng_strerror(rv));
        }
    }
    rv = nng_listener_start(l, 0);
    if (rv != 0) {
        nng_listener_close(l);
        return ali_errf(rv == NNG_EADDRINUSE ? AL_EUNAVAILABLE : AL_EIO, "rpc: listen %s: %s", url,
                        nng_strerror(rv));
    }
    if (bound && bound_len) {
        snprintf(bound, bound_len, "%s", url);
        nng_sockaddr sa;
        const char *colon = strrchr(url, ':');
        if ((strncmp(url, "tcp", 3) == 0 || al_rpc_url_tls(url)) && colon &&
            nng_listener_get_addr(l, NNG_OPT_LOCADDR, &sa) == 0 &&
            (sa.s_family == NNG_AF_INET || sa.s_family == NNG_AF_INET6)) {
            uint16_t port = sa.s_family == NNG_AF_INET ? sa.s_in.sa_port : sa.s_in6.sa_port;
            port = (uint16_t)((port >> 8) | (port << 8)); /* network order */
            snprintf(bound, bound_len, "%.*s:%u", (int)(colon - url), url, port);
        }
    }
    if (!s->started)
        return ali_srv_start(s);
    return AL_OK;
}

void al_rpc_server_close(al_rpc_server *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    atomic_store(&s->closing, true); /* completions from now on free their reply */
    pthread_mutex_unlock(&s->mu);
    nng_close(s->sock);
    for (int i = 0; i < s->n_w; i++) { /* waits for running callbacks; no new receives */
        nng_aio_stop(s->w[i].aio);
        nng_msg *left = nng_aio_get_msg(s->w[i].aio);
        if (left)
            nng_msg_free(left);
        nng_aio_set_msg(s->w[i].aio, NULL);
    }
    pthread_mutex_lock(&s->mu);
    while (s->deferred > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&s->cv, &s->mu, &ts);
        if (s->deferred > 0)
            AL_WARN("rpc: server close waits for %d deferred call(s)", s->deferred);
    }
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < s->n_w; i++)
        nng_aio_free(s->w[i].aio);
    free(s->w);
    free(s->peers);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

/* ---- calls ---------------------------------------------------------------------------------- */

void al_rpc_defer(al_rpc_job *call)
{
    int st = ALI_CALL_RUNNING;
    if (!atomic_compare_exchange_strong(&call->state, &st, ALI_CALL_DEFER_RUNNING))
        return; /* deferred twice: harmless */
    call->deferred = true;
    pthread_mutex_lock(&call->s->mu);
    call->s->deferred++;
    pthread_mutex_unlock(&call->s->mu);
}

void al_rpc_complete(al_rpc_job *call, al_err e)
{
    ali_call_set_result(call, e);
    int st = ALI_CALL_DEFER_RUNNING;
    if (atomic_compare_exchange_strong(&call->state, &st, ALI_CALL_EARLY))
        return; /* the handler is still running: it sends when it returns */
    ali_call_finish(call);
}

void al_rpc_job_set_retry_after(al_rpc_job *call, uint32_t ms) { call->retry_after_ms = ms; }
uint16_t al_rpc_job_method(const al_rpc_job *call) { return call->h.method; }
uint32_t al_rpc_job_pipe(const al_rpc_job *call) { return call->pipe; }
uint64_t al_rpc_job_peer_pid(const al_rpc_job *call) { return call->pid; }
uint64_t al_rpc_job_trace(const al_rpc_job *call) { return call->h.trace_id; }
uint64_t al_rpc_job_request_id(const al_rpc_job *call) { return call->h.request_id; }
al_pbmem *al_rpc_job_mem(al_rpc_job *call) { return &call->mem; }
