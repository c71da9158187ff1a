/* rpc_test.c: framing, malformed frames, deferred/concurrent serving, big token arrays, peer
 * notifications, timeouts and unavailability of common/ipc/rpc, over ipc:// and tcp://. No fork. */
#include "al_test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <time.h>

#include "common/ipc/rpc.h"
#include "common/ipc/rpc_int.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- a fake engine thread that completes deferred jobs --------------------------------------- */

typedef struct job_item {
    al_rpc_job *job;
    const void *req;
    void *rep;
    struct job_item *next;
} job_item;

typedef struct engine {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job_item *head, *tail;
    bool stop;
    pthread_t th;
    int delay_us;
} engine;

static void *engine_main(void *arg)
{
    engine *e = arg;
    for (;;) {
        pthread_mutex_lock(&e->mu);
        while (!e->head && !e->stop)
            pthread_cond_wait(&e->cv, &e->mu);
        job_item *it = e->head;
        if (it) {
            e->head = it->next;
            if (!e->head)
                e->tail = NULL;
        }
        bool stop = e->stop && !it;
        pthread_mutex_unlock(&e->mu);
        if (stop)
            return NULL;
        if (e->delay_us) {
            struct timespec ts = {0, e->delay_us * 1000L};
            nanosleep(&ts, NULL);
        }
        const alora_SeqAppendRequest *rq = it->req;
        alora_SeqAppendReply *rp = it->rep;
        const int32_t *t;
        size_t n = al_pb_i32(&rq->tokens, &t);
        rp->n_tokens = (uint32_t)(rq->seq_id + n + (n ? (uint32_t)t[n - 1] : 0));
        rp->timings.total_ms = 1.5;
        al_rpc_complete(it->job, AL_OK);
        free(it);
    }
}

static void engine_push(engine *e, al_rpc_job *job, const void *req, void *rep)
{
    job_item *it = calloc(1, sizeof *it);
    it->job = job;
    it->req = req;
    it->rep = rep;
    pthread_mutex_lock(&e->mu);
    if (e->tail)
        e->tail->next = it;
    else
        e->head = it;
    e->tail = it;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

/* ---- fixture ------------------------------------------------------------------------------------ */

typedef struct fx {
    const char *kind; /* "ipc" or "tcp" */
    char url[256];
    al_rpc_server *srv;
    al_rpc_client *cli;
    engine eng;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int n_conn, n_disc;
    int n_async_done, n_async_ok;
    uint64_t last_pid;
    uint32_t last_pipe;
    al_rpc_job *held; /* SeqGenerate jobs parked here until the test completes them */
    const void *held_req;
    void *held_rep;
} fx;

static void peer_cb(uint32_t pipe_id, uint64_t pid, bool connected, void *user)
{
    fx *f = user;
    pthread_mutex_lock(&f->mu);
    if (connected)
        f->n_conn++;
    else
        f->n_disc++;
    f->last_pid = pid;
    f->last_pipe = pipe_id;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

/* WorkerInvoke: echo tokens (and tokens as floats in logprobs); tokens[0] == -1 -> overloaded. */
static al_err h_invoke(al_rpc_job *job, const void *req, void *rep, void *user)
{
    const alora_WorkerInvokeRequest *rq = req;
    alora_WorkerInvokeReply *rp = rep;
    const int32_t *t;
    size_t n = al_pb_i32(&rq->tokens, &t);
    if (n && t[0] == -1) {
        al_rpc_job_set_retry_after(job, 123);
        return ali_errf(AL_EOVERLOADED, "tokens: queue full");
    }
    al_pbmem *m = al_rpc_job_mem(job);
    if (al_pb_ref_i32(&rp->tokens, m, t, n) != AL_OK) /* t lives as long as the job */
        return AL_ENOMEM;
    float *f = malloc((n ? n : 1) * sizeof *f);
    for (size_t i = 0; i < n; i++)
        f[i] = (float)t[i] * 0.5f;
    al_err e = al_pb_set_f32(&rp->logprobs.logprob, m, f, n);
    free(f);
    if (e)
        return e;
    rp->logprobs.top_n = rq->sampling.top_logprobs;
    rp->computed_tokens = (uint32_t)n;
    rp->reused_tokens = rq->has_lease ? rq->lease.n_tokens : 0;
    rp->finish_reason = alora_FinishReason_FINISH_LENGTH;
    snprintf(rp->worker_id, sizeof rp->worker_id, "trace-%llu", (unsigned long long)al_rpc_job_trace(job));
    return AL_OK;
}

/* BaseHealth: immediate; reports the requester's pid and pipe. */
static al_err h_health(al_rpc_job *job, const void *req, void *rep, void *user)
{
    alora_HealthReply *rp = rep;
    rp->role = alora_Role_ROLE_BASE;
    rp->health = alora_Health_HEALTH_OK;
    rp->pid = (uint32_t)al_rpc_job_peer_pid(job);
    snprintf(rp->instance_id, sizeof rp->instance_id, "pipe-%u", al_rpc_job_pipe(job));
    return AL_OK;
}

/* BaseAttach: echoes the name (a string field) as the instance id. */
static al_err h_attach(al_rpc_job *job, const void *req, void *rep, void *user)
{
    const alora_AttachRequest *rq = req;
    alora_AttachReply *rp = rep;
    snprintf(rp->base_instance_id, sizeof rp->base_instance_id, "%s", rq->name);
    return AL_OK;
}

/* BaseSeqAppend: deferred to the engine thread. */
static al_err h_append(al_rpc_job *job, const void *req, void *rep, void *user)
{
    fx *f = user;
    al_rpc_defer(job);
    engine_push(&f->eng, job, req, rep);
    return AL_OK;
}

/* BaseSeqGenerate: parked until the test completes it (timeouts, peer loss). */
static al_err h_generate(al_rpc_job *job, const void *req, void *rep, void *user)
{
    fx *f = user;
    al_rpc_defer(job);
    pthread_mutex_lock(&f->mu);
    f->held = job;
    f->held_req = req;
    f->held_rep = rep;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
    return AL_OK;
}

static void release_held(fx *f)
{
    pthread_mutex_lock(&f->mu);
    al_rpc_job *j = f->held;
    f->held = NULL;
    pthread_mutex_unlock(&f->mu);
    if (j) {
        alora_SeqGenerateReply *rp = f->held_rep;
        rp->n_tokens = 1;
        al_rpc_complete(j, AL_OK);
    }
}

static int url_seq;

static void make_url(const char *kind, char *out, size_t n)
{
    if (strcmp(kind, "ipc") == 0)
        snprintf(out, n, "ipc:///tmp/alora-rpc-test-%d-%d.sock", (int)getpid(), url_seq++);
    else
        snprintf(out, n, "tcp://127.0.0.1:0");
}

static al_rpc_server *start_server(fx *f, const al_rpc_server_opts *o, char *bound, size_t n)
{
    al_rpc_server *s = NULL;
    char url[256];
    make_url(f->kind, url, sizeof url);
    assert_int_equal(al_rpc_server_new(&s, o), AL_OK);
    assert_int_equal(al_rpc_server_handle(s, alora_Method_WORKER_INVOKE, h_invoke, f), AL_OK);
    assert_int_equal(al_rpc_server_handle(s, alora_Method_BASE_HEALTH, h_health, f), AL_OK);
    assert_int_equal(al_rpc_server_handle(s, alora_Method_BASE_ATTACH, h_attach, f), AL_OK);
    assert_int_equal(al_rpc_server_handle(s, alora_Method_BASE_SEQ_APPEND, h_append, f), AL_OK);
    assert_int_equal(al_rpc_server_handle(s, alora_Method_BASE_SEQ_GENERATE, h_generate, f), AL_OK);
    assert_int_equal(al_rpc_server_on_peer(s, peer_cb, f), AL_OK);
    assert_int_equal(al_rpc_server_listen(s, url, bound, n), AL_OK);
    assert_int_equal(al_rpc_server_handle(s, alora_Method_ROUTER_STATUS, h_health, f), AL_EINVAL);
    return s;
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    f->kind = *state;
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    pthread_mutex_init(&f->eng.mu, NULL);
    pthread_cond_init(&f->eng.cv, NULL);
    pthread_create(&f->eng.th, NULL, engine_main, &f->eng);
    al_rpc_server_opts so;
    al_rpc_server_opts_default(&so);
    so.n_ctx = 4;
    f->srv = start_server(f, &so, f->url, sizeof f->url);
    if (strcmp(f->kind, "tcp") == 0)
        assert_true(strcmp(f->url, "tcp://127.0.0.1:0") != 0);
    assert_int_equal(al_rpc_client_open(&f->cli, f->url, &(al_rpc_client_opts){.dial_blocking = true}), AL_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    release_held(f);
    al_rpc_client_close(f->cli);
    al_rpc_server_close(f->srv);
    pthread_mutex_lock(&f->eng.mu);
    f->eng.stop = true;
    pthread_cond_signal(&f->eng.cv);
    pthread_mutex_unlock(&f->eng.mu);
    pthread_join(f->eng.th, NULL);
    pthread_mutex_destroy(&f->eng.mu);
    pthread_cond_destroy(&f->eng.cv);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cv);
    free(f);
    return 0;
}

/* ---- pure framing ------------------------------------------------------------------------------ */

static void test_status_map(void **state)
{
    for (int e = 0; e < AL_ERR_COUNT; e++) {
        assert_int_equal(al_rpc_status_err(al_rpc_status_code((al_err)e)), e);
    }
    assert_int_equal(al_rpc_status_err(999), AL_EPROTO);
    assert_int_equal(al_rpc_status_code((al_err)-3), alora_StatusCode_STATUS_INTERNAL);
    assert_string_equal(al_rpc_method_name(alora_Method_BASE_SEQ_APPEND), "BaseSeqAppend");
    assert_null(al_rpc_method_name(7777));
    assert_true(al_rpc_method_idempotent(alora_Method_BASE_HEALTH));
    assert_false(al_rpc_method_idempotent(alora_Method_BASE_SEQ_APPEND));
}

static void test_frame_roundtrip(void **state)
{
    const size_t n = 100000; /* > 65535: callbacks, not 16-bit counts */
    int32_t *tok = malloc(n * sizeof *tok);
    for (size_t i = 0; i < n; i++)
        tok[i] = (int32_t)(i * 7919 % 200000) - (i % 1000 == 0 ? 5 : 0); /* some negatives */
    al_pbmem em = AL_PBMEM_INIT, dm = AL_PBMEM_INIT;
    alora_SeqAppendRequest rq = alora_SeqAppendRequest_init_zero;
    rq.seq_id = 0xfeedbeefcafeULL;
    assert_int_equal(al_pb_ref_i32(&rq.tokens, &em, tok, n), AL_OK);
    al_rpc_hdr h = {.method = alora_Method_BASE_SEQ_APPEND, .request_id = 42, .trace_id = 0x1234567890abcdefULL};
    uint8_t *buf;
    size_t len;
    assert_int_equal(al_rpc_frame_encode(&h, &rq, &buf, &len), AL_OK);
    al_rpc_hdr h2;
    alora_SeqAppendRequest out;
    assert_int_equal(al_rpc_frame_decode(buf, len, &h2, &out, &dm, 0), AL_OK);
    assert_int_equal(h2.method, h.method);
    assert_int_equal(h2.request_id, 42);
    assert_int_equal(h2.trace_id, h.trace_id);
    assert_int_equal(h2.payload_len, len - AL_RPC_HDR_SIZE);
    assert_int_equal(out.seq_id, rq.seq_id);
    const int32_t *t;
    assert_int_equal(al_pb_i32(&out.tokens, &t), n);
    assert_memory_equal(t, tok, n * sizeof *tok);

    /* the cap rejects it */
    al_pbmem cm = AL_PBMEM_INIT;
    assert_int_equal(al_rpc_frame_decode(buf, len, &h2, &out, &cm, 1000), AL_EINVAL);
    assert_non_null(strstr(al_errmsg(), "more than 1000"));
    al_pbmem_free(&cm);

    /* every truncation and some bit flips: an error or a clean decode, never a crash */
    for (size_t cut = 0; cut < len; cut += (cut < 200 ? 1 : 997)) {
        al_pbmem tm = AL_PBMEM_INIT;
        assert_int_not_equal(al_rpc_frame_decode(buf, cut, &h2, &out, &tm, 0), AL_OK);
        al_pbmem_free(&tm);
    }
    srand(7);
    for (int it = 0; it < 3000; it++) {
        size_t fl = 200;
        uint8_t *cp = malloc(fl);
        memcpy(cp, buf, fl);
        cp[24] = (uint8_t)(fl - AL_RPC_HDR_SIZE); /* keep the length consistent */
        cp[25] = cp[26] = cp[27] = 0;
        for (int k = 0; k < 4; k++)
            cp[AL_RPC_HDR_SIZE + (size_t)rand() % (fl - AL_RPC_HDR_SIZE)] ^= (uint8_t)(1u << (rand() % 8));
        al_pbmem tm = AL_PBMEM_INIT;
        al_rpc_frame_decode(cp, fl, &h2, &out, &tm, 0);
        al_pbmem_free(&tm);
        free(cp);
    }
    free(buf);

    /* every method's empty request and reply, and an error frame */
    for (unsigned mth = 0; mth < 256; mth++) {
        if (!al_rpc_method_name((uint16_t)mth))
            continue;
        for (int rep = 0; rep < 2; rep++) {
            static uint8_t zero[64 * 1024];
            static uint8_t dec[64 * 1024];
            al_rpc_hdr hh = {.method = (uint16_t)mth, .flags = rep ? AL_RPC_F_REPLY : 0};
            assert_int_equal(al_rpc_frame_encode(&hh, zero, &buf, &len), AL_OK);
            al_pbmem tm = AL_PBMEM_INIT;
            assert_int_equal(al_rpc_frame_decode(buf, len, &h2, dec, &tm, 0), AL_OK);
            al_pbmem_free(&tm);
            free(buf);
        }
    }
    alora_Status st = {.code = alora_StatusCode_STATUS_OVERLOADED, .retry_after_ms = 9};
    snprintf(st.message, sizeof st.message, "busy");
    al_rpc_hdr he = {.method = alora_Method_ROUTER_INVOKE, .flags = AL_RPC_F_REPLY | AL_RPC_F_ERROR, .status = 9};
    assert_int_equal(al_rpc_frame_encode(&he, &st, &buf, &len), AL_OK);
    alora_Status st2;
    al_pbmem tm = AL_PBMEM_INIT;
    assert_int_equal(al_rpc_frame_decode(buf, len, &h2, &st2, &tm, 0), AL_OK);
    assert_int_equal(st2.code, alora_StatusCode_STATUS_OVERLOADED);
    assert_int_equal(st2.retry_after_ms, 9);
    assert_string_equal(st2.message, "busy");
    assert_int_equal(h2.status, 9);
    free(buf);

    /* header checks */
    uint8_t hb[AL_RPC_HDR_SIZE];
    h.payload_len = 5;
    al_rpc_hdr_write(hb, &h);
    assert_int_equal(al_rpc_hdr_read(hb, sizeof hb, &h2), AL_EPROTO); /* length mismatch */
    h.payload_len = 0;
    al_rpc_hdr_write(hb, &h);
    assert_int_equal(al_rpc_hdr_read(hb, sizeof hb, &h2), AL_OK);
    hb[4] = 9;
    assert_int_equal(al_rpc_hdr_read(hb, sizeof hb, &h2), AL_EPROTO);
    hb[4] = AL_RPC_VERSION;
    hb[0] ^= 1;
    assert_int_equal(al_rpc_hdr_read(hb, sizeof hb, &h2), AL_EPROTO);
    hb[0] ^= 1;
    hb[5] = AL_RPC_F_ERROR; /* error flag on a request */
    assert_int_equal(al_rpc_hdr_read(hb, sizeof hb, &h2), AL_EPROTO);
    hb[5] = 0;
    hb[31] = 1;
    assert_int_equal(al_rpc_hdr_read(hb, sizeof hb, &h2), AL_EPROTO);

    /* helpers: push, set, bytes */
    alora_InvokeReply ir = alora_InvokeReply_init_zero;
    for (int i = 0; i < 70000; i++)
        assert_int_equal(al_pb_push_i32(&ir.tokens, &em, i), AL_OK);
    assert_int_equal(al_pb_set_str(&ir.text, &em, "héllo"), AL_OK);
    assert_int_equal(al_pb_set_bytes(&ir.result_json, &em, "{\"certainty\":0.85}", 18), AL_OK);
    ir.has_activation_start = true;
    ir.activation_start = 0;
    al_rpc_hdr hi = {.method = alora_Method_ROUTER_INVOKE, .flags = AL_RPC_F_REPLY};
    assert_int_equal(al_rpc_frame_encode(&hi, &ir, &buf, &len), AL_OK);
    alora_InvokeReply ir2;
    assert_int_equal(al_rpc_frame_decode(buf, len, &h2, &ir2, &tm, 0), AL_OK);
    assert_int_equal(al_pb_i32(&ir2.tokens, &t), 70000);
    assert_int_equal(t[69999], 69999);
    const uint8_t *p;
    assert_int_equal(al_pb_bytes(&ir2.text, &p), strlen("héllo"));
    assert_memory_equal(p, "héllo", strlen("héllo"));
    assert_int_equal(al_pb_bytes(&ir2.result_json, &p), 18);
    assert_true(ir2.has_activation_start);
    assert_int_equal(ir2.activation_start, 0);
    const float *fv;
    assert_int_equal(al_pb_f32(&ir2.logprobs.logprob, &fv), 0);
    assert_null(fv);
    free(buf);
    al_pbmem_free(&tm);
    al_pbmem_free(&em);
    al_pbmem_free(&dm);
    free(tok);
}

/* ---- over a socket --------------------------------------------------------------------------- */

static void expect_error_reply(fx *f, const uint8_t *frame, size_t len, al_err want, const char *needle)
{
    uint8_t *rep;
    size_t rlen;
    assert_int_equal(al_rpc_call_raw(f->cli, frame, len, &rep, &rlen, 5000), AL_OK);
    al_rpc_hdr h;
    alora_Status st;
    al_pbmem m = AL_PBMEM_INIT;
    assert_int_equal(al_rpc_frame_decode(rep, rlen, &h, &st, &m, 0), AL_OK);
    assert_true(h.flags & AL_RPC_F_ERROR);
    assert_int_equal(h.status, want);
    assert_int_equal(st.code, want);
    if (needle && !strstr(st.message, needle))
        fail_msg("error message '%s' lacks '%s'", st.message, needle);
    al_pbmem_free(&m);
    free(rep);
}

static void call_health(fx *f)
{
    alora_HealthReply hr;
    al_pbmem m = AL_PBMEM_INIT;
    assert_int_equal(al_rpc_call(f->cli, alora_Method_BASE_HEALTH, &(alora_Empty){0}, &hr, &m, 5000), AL_OK);
    assert_int_equal(hr.health, alora_Health_HEALTH_OK);
    if (strcmp(f->kind, "ipc") == 0)
        assert_int_equal(hr.pid, (uint32_t)getpid());
    else
        assert_int_equal(hr.pid, 0);
    assert_int_equal(strncmp(hr.instance_id, "pipe-", 5), 0);
    al_pbmem_free(&m);
}

/* A decoded message forwards as is: its callback fields (a Sampling's stop / constraint /
 * logit_bias inside a request, as the router passes a client's Sampling on to a worker) re-encode
 * to the same contents. */
static void test_forward_decoded(void **state)
{
    (void)state;
    al_pbmem m0 = AL_PBMEM_INIT, m1 = AL_PBMEM_INIT, m2 = AL_PBMEM_INIT;
    alora_InvokeRequest a = alora_InvokeRequest_init_zero, b, c;
    int32_t ids[3] = {5, 7, 9}, toks[4] = {1, 2, 3, 4};
    float vals[3] = {1.5f, -2, 100};
    assert_int_equal(al_pb_set_i32(&a.sampling.logit_bias_ids, &m0, ids, 3), AL_OK);
    assert_int_equal(al_pb_set_f32(&a.sampling.logit_bias_values, &m0, vals, 3), AL_OK);
    assert_int_equal(al_pb_set_bytes(&a.sampling.stop, &m0, "ab\0cd\0", 6), AL_OK);
    assert_int_equal(al_pb_set_str(&a.sampling.constraint, &m0, "[0-9]+"), AL_OK);
    assert_int_equal(al_pb_set_i32(&a.tokens, &m0, toks, 4), AL_OK);
    a.sampling.constraint_kind = alora_ConstraintKind_CONSTRAINT_REGEX;
    uint8_t buf[512], buf2[512];
    size_t n, n2;
    assert_int_equal(ali_pb_size(alora_InvokeRequest_fields, &a, &n), AL_OK);
    assert_int_equal(ali_pb_write(alora_InvokeRequest_fields, &a, buf, n), AL_OK);
    assert_int_equal(ali_pb_read(alora_InvokeRequest_fields, buf, n, &b, sizeof b, &m1, 0), AL_OK);
    /* forward b as it was decoded */
    assert_int_equal(ali_pb_size(alora_InvokeRequest_fields, &b, &n2), AL_OK);
    assert_int_equal(n2, n);
    assert_int_equal(ali_pb_write(alora_InvokeRequest_fields, &b, buf2, n2), AL_OK);
    assert_memory_equal(buf, buf2, n);
    assert_int_equal(ali_pb_read(alora_InvokeRequest_fields, buf2, n2, &c, sizeof c, &m2, 0), AL_OK);
    const int32_t *gi;
    const float *gv;
    const uint8_t *gb;
    assert_int_equal(al_pb_i32(&c.sampling.logit_bias_ids, &gi), 3);
    al_assert_ints_equal(gi, ids, 3);
    assert_int_equal(al_pb_f32(&c.sampling.logit_bias_values, &gv), 3);
    al_assert_floats_identical(gv, vals, 1, 3);
    assert_int_equal(al_pb_bytes(&c.sampling.stop, &gb), 6);
    assert_memory_equal(gb, "ab\0cd\0", 6);
    assert_int_equal(al_pb_bytes(&c.sampling.constraint, &gb), 6);
    assert_int_equal(c.sampling.constraint_kind, alora_ConstraintKind_CONSTRAINT_REGEX);
    assert_int_equal(al_pb_i32(&c.tokens, &gi), 4);
    al_pbmem_free(&m0);
    al_pbmem_free(&m1);
    al_pbmem_free(&m2);
}

static void test_malformed(void **state)
{
    fx *f = *state;
    call_health(f);
    uint8_t junk[10] = {1, 2, 3};
    expect_error_reply(f, junk, sizeof junk, AL_EPROTO, "truncated");
    expect_error_reply(f, junk, 0, AL_EPROTO, "truncated");

    uint8_t fr[AL_RPC_HDR_SIZE + 8] = {0};
    al_rpc_hdr h = {.method = alora_Method_WORKER_INVOKE, .request_id = 5, .payload_len = 8};
    al_rpc_hdr_write(fr, &h);
    memset(fr + AL_RPC_HDR_SIZE, 0xff, 8); /* garbage payload */
    expect_error_reply(f, fr, sizeof fr, AL_EINVAL, "bad WorkerInvoke request");
    fr[0] = 'X';
    expect_error_reply(f, fr, sizeof fr, AL_EPROTO, "magic");
    al_rpc_hdr_write(fr, &h);
    fr[4] = 77;
    expect_error_reply(f, fr, sizeof fr, AL_EPROTO, "version");
    al_rpc_hdr_write(fr, &h);
    expect_error_reply(f, fr, sizeof fr - 3, AL_EPROTO, "length mismatch");
    h.flags = AL_RPC_F_REPLY;
    al_rpc_hdr_write(fr, &h);
    expect_error_reply(f, fr, sizeof fr, AL_EPROTO, "reply frame");
    h.flags = 0;
    h.payload_len = 0;
    h.method = 999;
    al_rpc_hdr_write(fr, &h);
    expect_error_reply(f, fr, AL_RPC_HDR_SIZE, AL_EUNSUPPORTED, "unknown method 999");
    h.method = alora_Method_ROUTER_STATUS;
    al_rpc_hdr_write(fr, &h);
    expect_error_reply(f, fr, AL_RPC_HDR_SIZE, AL_EUNSUPPORTED, "not served");
    /* a handler error carries its code, message and retry-after */
    al_pbmem m = AL_PBMEM_INIT;
    alora_WorkerInvokeRequest rq = alora_WorkerInvokeRequest_init_zero;
    int32_t bad[2] = {-1, 3};
    al_pb_ref_i32(&rq.tokens, &m, bad, 2);
    alora_WorkerInvokeReply rp;
    al_rpc_callopts co = {.timeout_ms = 5000};
    assert_int_equal(al_rpc_callx(f->cli, alora_Method_WORKER_INVOKE, &rq, &rp, &m, &co), AL_EOVERLOADED);
    assert_int_equal(co.retry_after_ms, 123);
    assert_non_null(strstr(al_errmsg(), "WorkerInvoke: tokens: queue full"));
    al_pbmem_free(&m);
    call_health(f); /* still serving */
}

/* A string field with a NUL byte inside is refused naming the field, never read as its prefix;
 * bytes fields may hold NULs. Payload: AttachRequest{role = 3, name = NAME} encoded by hand. */
static void test_nul_in_string(void **state)
{
    fx *f = *state;
    static const char name[] = "cert\0ainty";
    uint8_t fr[AL_RPC_HDR_SIZE + 64];
    uint8_t *p = fr + AL_RPC_HDR_SIZE;
    size_t n = 0, nl = sizeof name - 1;
    p[n++] = 0x08, p[n++] = 3;                    /* role = ROLE_WORKER */
    p[n++] = 0x1a, p[n++] = (uint8_t)nl;         /* name: field 3, length-delimited */
    memcpy(p + n, name, nl);
    n += nl;
    al_rpc_hdr h = {.method = alora_Method_BASE_ATTACH, .request_id = 9, .payload_len = (uint32_t)n};
    al_rpc_hdr_write(fr, &h);
    expect_error_reply(f, fr, AL_RPC_HDR_SIZE + n, AL_EINVAL, "field 3: a string holds a NUL byte at offset 4");
    /* the same frame without the NUL is served */
    memmove(p + 4 + 4, p + 4 + 5, nl - 5);
    p[3] = (uint8_t)(nl - 1);
    h.payload_len = (uint32_t)(n - 1);
    al_rpc_hdr_write(fr, &h);
    uint8_t *rep;
    size_t rlen;
    assert_int_equal(al_rpc_call_raw(f->cli, fr, AL_RPC_HDR_SIZE + n - 1, &rep, &rlen, 5000), AL_OK);
    alora_AttachReply ar;
    al_pbmem m = AL_PBMEM_INIT;
    assert_int_equal(al_rpc_frame_decode(rep, rlen, &h, &ar, &m, 0), AL_OK);
    assert_false(h.flags & AL_RPC_F_ERROR);
    assert_string_equal(ar.base_instance_id, "certainty");
    al_pbmem_free(&m);
    free(rep);
    /* bytes may carry NULs (stop strings are NUL-separated): test_forward_decoded; still serving */
    call_health(f);
}

static void test_oversized(void **state)
{
    fx *f = *state;
    al_rpc_server_opts so;
    al_rpc_server_opts_default(&so);
    so.recv_max = 64 * 1024;
    so.max_elems = 1000;
    char url[256];
    al_rpc_server *s = start_server(f, &so, url, sizeof url);
    al_rpc_client *c;
    assert_int_equal(al_rpc_client_open(&c, url, &(al_rpc_client_opts){.dial_blocking = true}), AL_OK);
    al_pbmem m = AL_PBMEM_INIT;
    int32_t *tok = calloc(100000, sizeof *tok);
    alora_WorkerInvokeRequest rq = alora_WorkerInvokeRequest_init_zero;
    alora_WorkerInvokeReply rp;
    /* over the element cap: an error reply naming the field */
    al_pb_ref_i32(&rq.tokens, &m, tok, 2000);
    assert_int_equal(al_rpc_call(c, alora_Method_WORKER_INVOKE, &rq, &rp, &m, 5000), AL_EINVAL);
    assert_non_null(strstr(al_errmsg(), "field 3: more than 1000 elements"));
    /* over the socket cap: NNG drops the connection; the client reports the peer lost */
    al_pb_ref_i32(&rq.tokens, &m, tok, 100000);
    al_err e = al_rpc_call(c, alora_Method_WORKER_INVOKE, &rq, &rp, &m, 3000);
    assert_true(e == AL_EUNAVAILABLE || e == AL_ETIMEDOUT);
    /* the client reconnects, the server keeps serving */
    al_pb_ref_i32(&rq.tokens, &m, tok, 10);
    for (int i = 0; i < 50 && (e = al_rpc_call(c, alora_Method_WORKER_INVOKE, &rq, &rp, &m, 3000)) == AL_EUNAVAILABLE; i++)
        sleep_ms(20);
    assert_int_equal(e, AL_OK);
    assert_int_equal(rp.computed_tokens, 10);
    al_pbmem_free(&m);
    free(tok);
    al_rpc_client_close(c);
    al_rpc_server_close(s);
}

static void test_big_tokens(void **state)
{
    fx *f = *state;
    const size_t n = 200000;
    int32_t *tok = malloc(n * sizeof *tok);
    for (size_t i = 0; i < n; i++)
        tok[i] = (int32_t)(i % 128256);
    al_pbmem m = AL_PBMEM_INIT;
    alora_WorkerInvokeRequest rq = alora_WorkerInvokeRequest_init_zero;
    rq.has_lease = true;
    rq.lease.n_tokens = 77;
    rq.sampling.top_logprobs = 5;
    al_pb_ref_i32(&rq.tokens, &m, tok, n);
    alora_WorkerInvokeReply rp;
    al_rpc_callopts co = {.timeout_ms = 10000, .trace_id = 99};
    assert_int_equal(al_rpc_callx(f->cli, alora_Method_WORKER_INVOKE, &rq, &rp, &m, &co), AL_OK);
    const int32_t *t;
    const float *lp;
    assert_int_equal(al_pb_i32(&rp.tokens, &t), n);
    assert_memory_equal(t, tok, n * sizeof *tok);
    assert_int_equal(al_pb_f32(&rp.logprobs.logprob, &lp), n);
    assert_true(lp[n - 1] == (float)tok[n - 1] * 0.5f);
    assert_int_equal(rp.computed_tokens, n);
    assert_int_equal(rp.reused_tokens, 77);
    assert_int_equal(rp.logprobs.top_n, 5);
    assert_string_equal(rp.worker_id, "trace-99");
    al_pbmem_free(&m);
    free(tok);
}

typedef struct cthread {
    fx *f;
    int id, n, bad;
} cthread;

static void *client_thread(void *arg)
{
    cthread *ct = arg;
    for (int i = 0; i < ct->n; i++) {
        al_pbmem m = AL_PBMEM_INIT;
        int32_t tok[3] = {1, 2, ct->id * 1000 + i};
        alora_SeqAppendRequest rq = alora_SeqAppendRequest_init_zero;
        rq.seq_id = (uint64_t)ct->id;
        al_pb_set_i32(&rq.tokens, &m, tok, 3);
        alora_SeqAppendReply rp;
        if (al_rpc_call(ct->f->cli, alora_Method_BASE_SEQ_APPEND, &rq, &rp, &m, 10000) != AL_OK ||
            rp.n_tokens != (uint32_t)(ct->id + 3 + tok[2]) || rp.timings.total_ms != 1.5)
            ct->bad++;
        al_pbmem_free(&m);
        if (i % 10 == 0) {
            alora_HealthReply hr;
            if (al_rpc_call(ct->f->cli, alora_Method_BASE_HEALTH, &(alora_Empty){0}, &hr, &m, 10000) != AL_OK)
                ct->bad++;
            al_pbmem_free(&m);
        }
    }
    return NULL;
}

static void test_concurrent_deferred(void **state)
{
    fx *f = *state;
    enum { NT = 6 };
    pthread_t th[NT];
    cthread ct[NT];
    f->eng.delay_us = 200;
    double t0 = now_ms();
    for (int i = 0; i < NT; i++) {
        ct[i] = (cthread){.f = f, .id = i + 1, .n = 150};
        pthread_create(&th[i], NULL, client_thread, &ct[i]);
    }
    for (int i = 0; i < NT; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(ct[i].bad, 0);
    }
    print_message("  %s: %d deferred calls from %d threads in %.0f ms\n", f->kind, NT * 150, NT, now_ms() - t0);
}

static bool wait_count(fx *f, int *ctr, int want, int ms)
{
    double t0 = now_ms();
    pthread_mutex_lock(&f->mu);
    while (*ctr < want && now_ms() - t0 < ms) {
        pthread_mutex_unlock(&f->mu);
        sleep_ms(2);
        pthread_mutex_lock(&f->mu);
    }
    bool ok = *ctr >= want;
    pthread_mutex_unlock(&f->mu);
    return ok;
}

static void async_done(al_err e, const char *msg, void *rep, void *arg)
{
    fx *f = arg;
    alora_WorkerInvokeReply *rp = rep;
    pthread_mutex_lock(&f->mu);
    f->n_async_done++;
    if (e == AL_OK && rp->computed_tokens == 3)
        f->n_async_ok++;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

static void test_async(void **state)
{
    fx *f = *state;
    enum { N = 20 };
    al_pbmem m[N];
    alora_WorkerInvokeReply rp[N];
    int32_t tok[3] = {4, 5, 6};
    for (int i = 0; i < N; i++) {
        m[i] = (al_pbmem)AL_PBMEM_INIT;
        alora_WorkerInvokeRequest rq = alora_WorkerInvokeRequest_init_zero;
        al_pb_set_i32(&rq.tokens, &m[i], tok, 3);
        al_rpc_callopts co = {.timeout_ms = 5000};
        assert_int_equal(al_rpc_call_async(f->cli, alora_Method_WORKER_INVOKE, &rq, &rp[i], &m[i], &co, async_done, f), AL_OK);
    }
    assert_true(wait_count(f, &f->n_async_done, N, 10000));
    assert_int_equal(f->n_async_ok, N);
    for (int i = 0; i < N; i++)
        al_pbmem_free(&m[i]);
}

static void test_peer_notify(void **state)
{
    fx *f = *state;
    assert_true(wait_count(f, &f->n_conn, 1, 2000)); /* the fixture's own client */
    sleep_ms(20);
    pthread_mutex_lock(&f->mu);
    int c0 = f->n_conn, d0 = f->n_disc;
    pthread_mutex_unlock(&f->mu);
    al_rpc_client *c;
    assert_int_equal(al_rpc_client_open(&c, f->url, &(al_rpc_client_opts){.dial_blocking = true}), AL_OK);
    assert_true(wait_count(f, &f->n_conn, c0 + 1, 2000));
    assert_int_equal(f->last_pid, strcmp(f->kind, "ipc") == 0 ? (uint64_t)getpid() : 0);
    uint32_t pipe = f->last_pipe;
    alora_HealthReply hr;
    al_pbmem m = AL_PBMEM_INIT;
    assert_int_equal(al_rpc_call(c, alora_Method_BASE_HEALTH, &(alora_Empty){0}, &hr, &m, 5000), AL_OK);
    char want[64];
    snprintf(want, sizeof want, "pipe-%u", pipe);
    assert_string_equal(hr.instance_id, want); /* the handler sees the requester's pipe */
    double t0 = now_ms();
    al_rpc_client_close(c);
    assert_true(wait_count(f, &f->n_disc, d0 + 1, 2000));
    assert_int_equal(f->last_pipe, pipe);
    print_message("  %s: disconnect noticed after %.2f ms\n", f->kind, now_ms() - t0);
}

static void test_timeout(void **state)
{
    fx *f = *state;
    alora_SeqGenerateRequest rq = alora_SeqGenerateRequest_init_zero;
    alora_SeqGenerateReply rp;
    al_pbmem m = AL_PBMEM_INIT;
    double t0 = now_ms();
    assert_int_equal(al_rpc_call(f->cli, alora_Method_BASE_SEQ_GENERATE, &rq, &rp, &m, 200), AL_ETIMEDOUT);
    double dt = now_ms() - t0;
    assert_true(dt >= 190 && dt < 2000);
    al_pbmem_free(&m);
    release_held(f); /* the late reply is dropped */
    call_health(f);
    /* the late reply does not confuse the next call on the same pooled context */
    assert_int_equal(al_rpc_call(f->cli, alora_Method_BASE_SEQ_GENERATE, &rq, &rp, &m, 200), AL_ETIMEDOUT);
    release_held(f);
    sleep_ms(20);
    for (int i = 0; i < 5; i++)
        call_health(f);
}

typedef struct pending_call {
    fx *f;
    al_err e;
    double ms;
} pending_call;

static void *generate_thread(void *arg)
{
    pending_call *pc = arg;
    alora_SeqGenerateRequest rq = alora_SeqGenerateRequest_init_zero;
    alora_SeqGenerateReply rp;
    al_pbmem m = AL_PBMEM_INIT;
    double t0 = now_ms();
    pc->e = al_rpc_call(pc->f->cli, alora_Method_BASE_SEQ_GENERATE, &rq, &rp, &m, 10000);
    pc->ms = now_ms() - t0;
    al_pbmem_free(&m);
    return NULL;
}

static void *close_thread(void *arg)
{
    al_rpc_server_close(arg);
    return NULL;
}

static void test_unavailable(void **state)
{
    fx *f = *state;
    /* nobody listening */
    char url[256];
    make_url(f->kind, url, sizeof url);
    if (strcmp(f->kind, "tcp") == 0)
        snprintf(url, sizeof url, "tcp://127.0.0.1:1");
    al_rpc_client *c;
    assert_int_equal(al_rpc_client_open(&c, url, &(al_rpc_client_opts){.dial_blocking = true}), AL_EUNAVAILABLE);
    assert_int_equal(al_rpc_client_open(&c, url, NULL), AL_OK);
    alora_HealthReply hr;
    al_pbmem m = AL_PBMEM_INIT;
    double t0 = now_ms();
    assert_int_equal(al_rpc_call(c, alora_Method_BASE_HEALTH, &(alora_Empty){0}, &hr, &m, 5000), AL_EUNAVAILABLE);
    assert_true(now_ms() - t0 < 1000);
    al_rpc_client_close(c);

    /* the server goes away while a call is in flight: fails fast, not at the 10 s deadline */
    pending_call pc = {.f = f};
    pthread_t th, cl;
    pthread_create(&th, NULL, generate_thread, &pc);
    pthread_mutex_lock(&f->mu);
    while (!f->held)
        pthread_cond_wait(&f->cv, &f->mu);
    pthread_mutex_unlock(&f->mu);
    pthread_create(&cl, NULL, close_thread, f->srv); /* waits for the deferred job */
    pthread_join(th, NULL);
    assert_int_equal(pc.e, AL_EUNAVAILABLE);
    assert_true(pc.ms < 3000);
    release_held(f); /* completion after close just frees the job */
    pthread_join(cl, NULL);
    /* the client notices there is no server */
    assert_int_equal(al_rpc_call(f->cli, alora_Method_BASE_HEALTH, &(alora_Empty){0}, &hr, &m, 5000), AL_EUNAVAILABLE);
    /* a new server on the same ipc path: the old client reconnects */
    if (strcmp(f->kind, "ipc") == 0) {
        al_rpc_server_opts so;
        al_rpc_server_opts_default(&so);
        al_rpc_server *s2;
        assert_int_equal(al_rpc_server_new(&s2, &so), AL_OK);
        assert_int_equal(al_rpc_server_handle(s2, alora_Method_BASE_HEALTH, h_health, f), AL_OK);
        assert_int_equal(al_rpc_server_listen(s2, f->url, NULL, 0), AL_OK);
        f->srv = s2;
        al_err e;
        for (int i = 0; i < 100 && (e = al_rpc_call(f->cli, alora_Method_BASE_HEALTH, &(alora_Empty){0}, &hr, &m, 2000)) != AL_OK; i++)
            sleep_ms(10);
        assert_int_equal(e, AL_OK);
    } else {
        f->srv = NULL;
    }
    al_pbmem_free(&m);
}

static void test_ipc_perms(void **state)
{
    fx *f = *state;
    struct stat st; /* the socket file, no fork (NNG is in use) */
    assert_int_equal(stat(f->url + strlen("ipc://"), &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0600);
}

#define NET_TESTS(kind)                                                                    \
    cmocka_unit_test_prestate_setup_teardown(test_malformed, setup, teardown, kind),       \
    cmocka_unit_test_prestate_setup_teardown(test_nul_in_string, setup, teardown, kind),   \
    cmocka_unit_test_prestate_setup_teardown(test_oversized, setup, teardown, kind),       \
    cmocka_unit_test_prestate_setup_teardown(test_big_tokens, setup, teardown, kind),      \
    cmocka_unit_test_prestate_setup_teardown(test_concurrent_deferred, setup, teardown, kind), \
    cmocka_unit_test_prestate_setup_teardown(test_async, setup, teardown, kind),           \
    cmocka_unit_test_prestate_setup_teardown(test_peer_notify, setup, teardown, kind),     \
    cmocka_unit_test_prestate_setup_teardown(test_timeout, setup, teardown, kind),         \
    cmocka_unit_test_prestate_setup_teardown(test_unavailable, setup, teardown, kind)

int main(void)
{
    static char ipc[] = "ipc", tcp[] = "tcp";
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_map),
        cmocka_unit_test(test_frame_roundtrip),
        cmocka_unit_test(test_forward_decoded),
        NET_TESTS(ipc),
        cmocka_unit_test_prestate_setup_teardown(test_ipc_perms, setup, teardown, ipc),
        NET_TESTS(tcp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
