/* cluster_test.c: alora-base + alora-worker as real processes: lease + invoke parity with an in-process
 * engine, prefix-cache reuse, the sequence API, bad input and garbage frames, zero-copy private memory,
 * lease release on a holder's SIGKILL, worker exit on the base's death, clean shutdown (no shm left).
 * Every child is forked before this process makes its first NNG call. */
#include "al_test.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "common/ipc/arena.h"
#include "common/ipc/lease_table.h"
#include "common/ipc/rpc.h"
#include "engine/golden.c.inc"

#define CASE_TOL 1e-4f

static golden G;
static char *tmp;
static char cfg_a[512], cfg_b[512], run_a[512], run_b[512];
static char base_a_url[600], base_b_url[600], worker_a_url[600], worker_b_url[600], router_a_url[600];
static pid_t pid_base_a, pid_base_b, pid_worker_a, pid_worker_b, pid_holder;
static int holder_go = -1, holder_back = -1;
static al_rpc_client *ca, *cb, *cwa, *cwb;
static uint64_t weights_b_bytes;

/* ---- processes ----------------------------------------------------------------------------------- */

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

static pid_t spawn(const char *log, char *const argv[])
{
    pid_t p = fork();
    if (p == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    return p;
}

static int reap(pid_t *p, int timeout_ms)
{
    if (*p <= 0)
        return -1;
    double t0 = now_ms();
    int st = 0;
    for (;;) {
        pid_t r = waitpid(*p, &st, WNOHANG);
        if (r == *p)
            break;
        if (now_ms() - t0 > timeout_ms) {
            kill(*p, SIGKILL);
            waitpid(*p, &st, 0);
            *p = 0;
            return -2;
        }
        sleep_ms(10);
    }
    *p = 0;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void kill_all(void)
{
    pid_t *ps[] = {&pid_worker_a, &pid_worker_b, &pid_holder, &pid_base_a, &pid_base_b};
    for (size_t i = 0; i < AL_ARRAY_LEN(ps); i++)
        if (*ps[i] > 0) {
            kill(*ps[i], SIGTERM);
            reap(ps[i], 5000);
        }
}

static void dump_log(const char *name)
{
    char path[700], cmd[1600];
    snprintf(path, sizeof path, "%s/%s.log", tmp, name);
    snprintf(cmd, sizeof cmd, "(echo '--- %s'; grep -A24 'ERROR: AddressSanitizer' '%s' || tail -n 30 '%s') >&2", name,
             path, path);
    if (system(cmd) != 0)
        fprintf(stderr, "(no %s)\n", path);
}

/* The lease holder: leases a prefix on base A when told, reports the id, then waits to be killed. */
static void holder_main(int go, int back)
{
    char c;
    if (read(go, &c, 1) != 1)
        _exit(0);
    al_rpc_client *cl = NULL;
    if (al_rpc_client_open(&cl, base_a_url, NULL) != AL_OK)
        _exit(1);
    int32_t toks[20];
    for (int i = 0; i < 20; i++)
        toks[i] = 3 + i;
    alora_LeaseRequest rq = {0};
    al_pbmem m = AL_PBMEM_INIT;
    al_pb_set_i32(&rq.tokens, &m, toks, 20);
    alora_LeaseReply rp;
    uint64_t id = 0;
    if (al_rpc_call(cl, alora_Method_BASE_LEASE, &rq, &rp, &m, 5000) == AL_OK)
        id = rp.lease_id;
    if (write(back, &id, sizeof id) != sizeof id)
        _exit(1);
    for (;;)
        pause();
}

/* ---- helpers --------------------------------------------------------------------------------------- */

static al_rpc_client *open_client(const char *url)
{
    al_rpc_client *c = NULL;
    al_rpc_client_opts o;
    al_rpc_client_opts_default(&o);
    o.connect_wait_ms = 500;
    assert_int_equal(al_rpc_client_open(&c, url, &o), AL_OK);
    return c;
}

static int wait_health(al_rpc_client *c, uint16_t method, int timeout_ms)
{
    double t0 = now_ms();
    while (now_ms() - t0 < timeout_ms) {
        alora_HealthReply hr;
        al_pbmem m = AL_PBMEM_INIT;
        al_err e = al_rpc_call(c, method, &(alora_Empty){0}, &hr, &m, 1000);
        al_pbmem_free(&m);
        if (e == AL_OK && hr.health == alora_Health_HEALTH_OK)
            return 0;
        sleep_ms(50);
    }
    return -1;
}

static al_err lease_tokens(al_rpc_client *c, const int32_t *t, int32_t n, alora_LeaseReply *rp)
{
    alora_LeaseRequest rq = {0};
    al_pbmem m = AL_PBMEM_INIT;
    al_pb_ref_i32(&rq.tokens, &m, t, (size_t)n);
    al_err e = al_rpc_call(c, alora_Method_BASE_LEASE, &rq, rp, &m, 20000);
    al_pbmem_free(&m);
    return e;
}

static void unlease(al_rpc_client *c, uint64_t id)
{
    alora_UnleaseRequest rq = {.lease_id = id};
    alora_Empty rp;
    al_pbmem m = AL_PBMEM_INIT;
    assert_int_equal(al_rpc_call(c, alora_Method_BASE_UNLEASE, &rq, &rp, &m, 5000), AL_OK);
    al_pbmem_free(&m);
}

static void base_stats(al_rpc_client *c, alora_BaseStatsReply *st)
{
    al_pbmem m = AL_PBMEM_INIT;
    assert_int_equal(al_rpc_call(c, alora_Method_BASE_STATS, &(alora_Empty){0}, st, &m, 5000), AL_OK);
    al_pbmem_free(&m);
}

static void expect_err(al_err got, al_err want, const char *needle)
{
    if (got != want)
        fail_msg("got %s (%s), want %s", al_strerror(got), al_errmsg(), al_strerror(want));
    if (needle && !strstr(al_errmsg(), needle))
        fail_msg("error message '%s' lacks '%s'", al_errmsg(), needle);
}

/* In-process reference: the full sequence through one engine with the adapter. */
typedef struct ref_run {
    int32_t tokens[64];
    int32_t n;
    al_topk_entry top[64 * 5];
    int32_t act, computed;
} ref_run;

static void run_ref(const al_model *m, const al_adapter *a, const int32_t *p, int32_t n, int32_t act,
                    int32_t max_tokens, ref_run *out)
{
    al_engine *e = NULL;
    assert_int_equal(al_engine_create(m, &(al_engine_opts){.max_seqs = 1, .n_blocks = 64}, &e), AL_OK);
    int32_t slot = -1, id;
    if (a)
        assert_int_equal(al_engine_add_adapter(e, a, &slot), AL_OK);
    al_request r = {.tokens = p, .n_tokens = n, .adapter = slot, .act_start = act, .max_tokens = max_tokens,
                    .top_logprobs = 5, .ignore_eos = 1};
    assert_int_equal(al_engine_submit(e, &r, &id), AL_OK);
    assert_int_equal(al_engine_run(e), AL_OK);
    al_result res;
    assert_int_equal(al_engine_result(e, id, &res), AL_OK);
    out->n = res.n_tokens;
    memcpy(out->tokens, res.tokens, sizeof(int32_t) * (size_t)res.n_tokens);
    memcpy(out->top, res.top, sizeof(al_topk_entry) * (size_t)res.n_tokens * 5);
    out->act = res.activation_start;
    out->computed = res.computed_tokens;
    al_engine_free(e);
}

static void check_logprobs(const alora_TokenLogprobs *lp, const ref_run *ref)
{
    const int32_t *ids;
    const float *lpv, *chosen;
    assert_int_equal(lp->top_n, 5);
    assert_int_equal(al_pb_i32(&lp->top_ids, &ids), (size_t)ref->n * 5);
    assert_int_equal(al_pb_f32(&lp->top_logprobs, &lpv), (size_t)ref->n * 5);
    assert_int_equal(al_pb_f32(&lp->logprob, &chosen), (size_t)ref->n);
    float maxd = 0;
    for (int32_t i = 0; i < ref->n * 5; i++) {
        assert_int_equal(ids[i], ref->top[i].id);
        maxd = fmaxf(maxd, fabsf(lpv[i] - ref->top[i].logprob));
    }
    for (int32_t i = 0; i < ref->n; i++)
        maxd = fmaxf(maxd, fabsf(chosen[i] - ref->top[(size_t)i * 5].logprob)); /* greedy = top-1 */
    if (maxd > CASE_TOL)
        fail_msg("logprobs differ from the in-process engine by %g", maxd);
}

/* Lease the prefix before the activation start on base A, invoke worker A on the rest. */
static void invoke_case(const char *name)
{
    golden_case *c = golden_find(&G, name);
    assert_non_null(c);
    int32_t s = c->act_start, n = c->n_prompt;
    alora_LeaseReply lr;
    assert_int_equal(lease_tokens(ca, c->prompt, s, &lr), AL_OK);
    assert_int_equal(lr.n_tokens, s);
    alora_WorkerInvokeRequest rq = {.has_lease = true, .start_pos = (uint32_t)s, .has_activation_start = true,
                                    .activation_start = (uint32_t)s, .mode = alora_InvokeMode_MODE_ALORA};
    rq.lease = (alora_LeaseRef){.lease_id = lr.lease_id, .n_tokens = lr.n_tokens, .table_offset = lr.table_offset,
                                .generation = lr.generation};
    rq.sampling.max_tokens = 8;
    rq.sampling.top_logprobs = 5;
    rq.sampling.ignore_eos = true;
    al_pbmem m = AL_PBMEM_INIT;
    al_pb_ref_i32(&rq.tokens, &m, c->prompt + s, (size_t)(n - s));
    alora_WorkerInvokeReply rp;
    al_err e = al_rpc_call(cwa, alora_Method_WORKER_INVOKE, &rq, &rp, &m, 20000);
    if (e != AL_OK)
        fail_msg("invoke %s: %s", name, al_errmsg());
    ref_run ref;
    run_ref(c->m, c->a, c->prompt, n, AL_ACT_AUTO, 8, &ref);
    assert_int_equal(ref.act, s);
    const int32_t *toks;
    assert_int_equal(al_pb_i32(&rp.tokens, &toks), 8);
    al_assert_ints_equal(toks, ref.tokens, 8);
    al_assert_ints_equal(toks, c->greedy, 8); /* and PEFT's */
    check_logprobs(&rp.logprobs, &ref);
    assert_int_equal(rp.reused_tokens, s);
    assert_int_equal(rp.computed_tokens, n - s + 7); /* only the post-activation tokens */
    assert_int_equal(rp.finish_reason, alora_FinishReason_FINISH_LENGTH);
    al_pbmem_free(&m);
    unlease(ca, lr.lease_id);
}

/* ---- tests ------------------------------------------------------------------------------------------ */

static void test_up(void **state)
{
    ca = open_client(base_a_url);
    cb = open_client(base_b_url);
    cwa = open_client(worker_a_url);
    cwb = open_client(worker_b_url);
    int ok = wait_health(ca, alora_Method_BASE_HEALTH, 20000) == 0 && wait_health(cb, alora_Method_BASE_HEALTH, 20000) == 0 &&
             wait_health(cwa, alora_Method_WORKER_HEALTH, 20000) == 0 &&
             wait_health(cwb, alora_Method_WORKER_HEALTH, 20000) == 0;
    if (!ok) {
        dump_log("base-a");
        dump_log("base-b");
        dump_log("worker-a");
        dump_log("worker-b");
        fail_msg("the cluster did not come up");
    }
    alora_AttachReply ar;
    al_pbmem m = AL_PBMEM_INIT;
    assert_int_equal(al_rpc_call(cb, alora_Method_BASE_ATTACH, &(alora_AttachRequest){.role = alora_Role_ROLE_CLI},
                                 &ar, &m, 5000),
                     AL_OK);
    weights_b_bytes = ar.weights.bytes;
    assert_true(weights_b_bytes > 300u << 20);
    assert_int_equal(ar.kv_geometry.block_size, 16);
    assert_int_equal(strlen(ar.base_instance_id), 32);
    al_pbmem_free(&m);
}

/* The worker registers with the router (here: this test's fake router) and heartbeats. */
typedef struct fake_router {
    int registered, heartbeats;
    alora_RegisterRequest reg;
} fake_router;
static fake_router FR;

static al_err fr_register(al_rpc_job *job, const void *req, void *rep, void *user)
{
    FR.reg = *(const alora_RegisterRequest *)req;
    __atomic_add_fetch(&FR.registered, 1, __ATOMIC_SEQ_CST);
    alora_RegisterReply *r = rep;
    snprintf(r->worker_id, sizeof r->worker_id, "%s", FR.reg.worker_id);
    r->heartbeat_ms = 100;
    return AL_OK;
}

static al_err fr_heartbeat(al_rpc_job *job, const void *req, void *rep, void *user)
{
    __atomic_add_fetch(&FR.heartbeats, 1, __ATOMIC_SEQ_CST);
    return AL_OK;
}

static void test_registration(void **state)
{
    al_rpc_server *s = NULL;
    assert_int_equal(al_rpc_server_new(&s, NULL), AL_OK);
    assert_int_equal(al_rpc_server_handle(s, alora_Method_ROUTER_REGISTER, fr_register, NULL), AL_OK);
    assert_int_equal(al_rpc_server_handle(s, alora_Method_ROUTER_HEARTBEAT, fr_heartbeat, NULL), AL_OK);
    assert_int_equal(al_rpc_server_listen(s, router_a_url, NULL, 0), AL_OK);
    double t0 = now_ms();
    while ((__atomic_load_n(&FR.registered, __ATOMIC_SEQ_CST) < 1 || __atomic_load_n(&FR.heartbeats, __ATOMIC_SEQ_CST) < 2) &&
           now_ms() - t0 < 5000)
        sleep_ms(20);
    al_rpc_server_close(s);
    assert_true(FR.registered >= 1);
    assert_true(FR.heartbeats >= 2);
    assert_string_equal(FR.reg.intrinsic, "qkvo");
    assert_string_equal(FR.reg.url, worker_a_url);
    assert_int_equal(FR.reg.invocation_tokens_count, 3);
    assert_int_equal(FR.reg.invocation_tokens[0], 7);
    assert_int_equal(strlen(FR.reg.base_instance_id), 32);
    assert_int_equal(strncmp(FR.reg.adapter_digest, "xxh64:", 6), 0);
}

static void test_invoke_matches_engine(void **state)
{
    invoke_case("alora_mid");
    invoke_case("long_prompt");
    invoke_case("alora_block16");
}

/* MODE_LORA: the whole sequence through the adapter from position 0 in the worker. */
static void test_invoke_lora_mode(void **state)
{
    golden_case *c = golden_find(&G, "alora_mid");
    alora_WorkerInvokeRequest rq = {.mode = alora_InvokeMode_MODE_LORA};
    rq.sampling.max_tokens = 4;
    rq.sampling.top_logprobs = 5;
    rq.sampling.ignore_eos = true;
    al_pbmem m = AL_PBMEM_INIT;
    al_pb_ref_i32(&rq.full_tokens, &m, c->prompt, (size_t)c->n_prompt);
    alora_WorkerInvokeReply rp;
    assert_int_equal(al_rpc_call(cwa, alora_Method_WORKER_INVOKE, &rq, &rp, &m, 20000), AL_OK);
    ref_run ref;
    run_ref(c->m, c->a, c->prompt, c->n_prompt, 0, 4, &ref);
    const int32_t *toks;
    assert_int_equal(al_pb_i32(&rp.tokens, &toks), 4);
    al_assert_ints_equal(toks, ref.tokens, 4);
    assert_int_equal(rp.computed_tokens, c->n_prompt + 3);
    assert_int_equal(rp.reused_tokens, 0);
    al_pbmem_free(&m);
}

/* Concurrent invocations over one lease batch in the worker's engine thread; all equal PEFT's. */
typedef struct async_call {
    alora_WorkerInvokeReply rep;
    al_pbmem m;
    al_err e;
    int done;
} async_call;

static void async_done(al_err e, const char *msg, void *rep, void *arg)
{
    async_call *a = arg;
    a->e = e;
    __atomic_store_n(&a->done, 1, __ATOMIC_RELEASE);
}

static void test_concurrent_invokes(void **state)
{
    golden_case *c = golden_find(&G, "alora_mid");
    int32_t s = c->act_start, n = c->n_prompt;
    alora_LeaseReply lr;
    assert_int_equal(lease_tokens(ca, c->prompt, s, &lr), AL_OK);
    alora_WorkerInvokeRequest rq = {.has_lease = true, .start_pos = (uint32_t)s, .has_activation_start = true,
                                    .activation_start = (uint32_t)s, .mode = alora_InvokeMode_MODE_ALORA};
    rq.lease = (alora_LeaseRef){.lease_id = lr.lease_id, .n_tokens = lr.n_tokens, .table_offset = lr.table_offset,
                                .generation = lr.generation};
    rq.sampling.max_tokens = 8;
    rq.sampling.ignore_eos = true;
    al_pbmem m = AL_PBMEM_INIT;
    al_pb_ref_i32(&rq.tokens, &m, c->prompt + s, (size_t)(n - s));
    enum { N = 6 };
    static async_call calls[N];
    memset(calls, 0, sizeof calls);
    for (int i = 0; i < N; i++)
        assert_int_equal(al_rpc_call_async(cwa, alora_Method_WORKER_INVOKE, &rq, &calls[i].rep, &calls[i].m,
                                           &(al_rpc_callopts){.timeout_ms = 20000}, async_done, &calls[i]),
                         AL_OK);
    for (int i = 0; i < N; i++) {
        double t0 = now_ms();
        while (!__atomic_load_n(&calls[i].done, __ATOMIC_ACQUIRE) && now_ms() - t0 < 20000)
            sleep_ms(2);
        assert_int_equal(calls[i].e, AL_OK);
        const int32_t *toks;
        assert_int_equal(al_pb_i32(&calls[i].rep.tokens, &toks), 8);
        al_assert_ints_equal(toks, c->greedy, 8);
        al_pbmem_free(&calls[i].m);
    }
    al_pbmem_free(&m);
    unlease(ca, lr.lease_id);
}

/* A lease with a short TTL expires; invoking on it afterwards is a clear error. */
static void test_lease_ttl(void **state)
{
    golden_case *c = golden_find(&G, "alora_mid");
    alora_LeaseRequest rq = {.ttl_ms = 100};
    al_pbmem m = AL_PBMEM_INIT;
    al_pb_ref_i32(&rq.tokens, &m, c->prompt, 30);
    alora_LeaseReply lr;
    assert_int_equal(al_rpc_call(ca, alora_Method_BASE_LEASE, &rq, &lr, &m, 5000), AL_OK);
    assert_int_equal(lr.ttl_ms, 100);
    sleep_ms(400);
    alora_BaseStatsReply st;
    base_stats(ca, &st);
    assert_int_equal(st.leases, 0);
    assert_true(st.leases_expired >= 1);
    alora_WorkerInvokeRequest wq = {.has_lease = true, .start_pos = 30, .mode = alora_InvokeMode_MODE_ALORA};
    wq.lease = (alora_LeaseRef){.lease_id = lr.lease_id, .n_tokens = 30, .table_offset = lr.table_offset,
                                .generation = lr.generation};
    al_pb_ref_i32(&wq.tokens, &m, c->prompt + 30, 10);
    alora_WorkerInvokeReply wr;
    expect_err(al_rpc_call(cwa, alora_Method_WORKER_INVOKE, &wq, &wr, &m, 5000), AL_ENOTFOUND, "no longer held");
    expect_err(al_rpc_call(ca, alora_Method_BASE_UNLEASE, &(alora_UnleaseRequest){.lease_id = lr.lease_id},
                           &(alora_Empty){0}, &m, 5000),
               AL_ENOTFOUND, "lease_id");
    al_pbmem_free(&m);
}

static void test_lease_cached(void **state)
{
    golden_case *c = golden_find(&G, "long_prompt");
    alora_LeaseReply l1, l2;
    assert_int_equal(lease_tokens(ca, c->prompt, 100, &l1), AL_OK);
    assert_int_equal(lease_tokens(ca, c->prompt, 100, &l2), AL_OK);
    assert_int_equal(l2.n_cached, 100);
    assert_int_equal(l2.n_tokens, 100);
    assert_int_equal(l2.n_blocks, 7);
    assert_true(l1.lease_id != l2.lease_id);
    assert_true(l1.table_offset != l2.table_offset);
    alora_BaseStatsReply st;
    base_stats(ca, &st);
    assert_int_equal(st.leases, 2);
    assert_true(st.prefix_cache_hit_tokens >= 100);
    unlease(ca, l1.lease_id);
    unlease(ca, l2.lease_id);
    base_stats(ca, &st);
    assert_int_equal(st.leases, 0);
    assert_int_equal(st.kv_copied_bytes, 0);
}

/* SeqCreate / Append / Generate (discard and commit) / Lease by seq / Fork / Release. */
static void test_seq_api(void **state)
{
    golden_case *c = golden_find(&G, "alora_mid");
    al_pbmem m = AL_PBMEM_INIT;
    alora_SeqCreateRequest cr = {0};
    al_pb_ref_i32(&cr.tokens, &m, c->prompt, 20);
    alora_SeqCreateReply crp;
    assert_int_equal(al_rpc_call(ca, alora_Method_BASE_SEQ_CREATE, &cr, &crp, &m, 5000), AL_OK);
    assert_int_equal(crp.n_tokens, 20);
    assert_true(crp.prefix_cached_tokens >= 16); /* alora_mid's prefix was leased before */
    alora_SeqAppendRequest ap = {.seq_id = crp.seq_id};
    al_pb_ref_i32(&ap.tokens, &m, c->prompt + 20, 10);
    alora_SeqAppendReply apr;
    assert_int_equal(al_rpc_call(ca, alora_Method_BASE_SEQ_APPEND, &ap, &apr, &m, 5000), AL_OK);
    assert_int_equal(apr.n_tokens, 30);
    ref_run ref;
    run_ref(c->m, NULL, c->prompt, 30, AL_ACT_NONE, 4, &ref);
    for (int pass = 0; pass < 2; pass++) { /* discard, then commit: same tokens */
        alora_SeqGenerateRequest gr = {.seq_id = crp.seq_id, .discard = pass == 0};
        gr.sampling.max_tokens = 4;
        gr.sampling.top_logprobs = 5;
        gr.sampling.ignore_eos = true;
        alora_SeqGenerateReply grp;
        assert_int_equal(al_rpc_call(ca, alora_Method_BASE_SEQ_GENERATE, &gr, &grp, &m, 5000), AL_OK);
        const int32_t *t;
        assert_int_equal(al_pb_i32(&grp.tokens, &t), 4);
        al_assert_ints_equal(t, ref.tokens, 4);
        check_logprobs(&grp.logprobs, &ref);
        assert_int_equal(grp.n_tokens, pass == 0 ? 30 : 34);
    }
    alora_LeaseRequest lq = {.seq_id = crp.seq_id};
    alora_LeaseReply lr;
    assert_int_equal(al_rpc_call(ca, alora_Method_BASE_LEASE, &lq, &lr, &m, 5000), AL_OK);
    assert_int_equal(lr.n_tokens, 34); /* the last generated token's KV was computed for the lease */
    alora_SeqForkRequest fq = {.seq_id = crp.seq_id, .n_tokens = 25};
    alora_SeqForkReply fr;
    assert_int_equal(al_rpc_call(ca, alora_Method_BASE_SEQ_FORK, &fq, &fr, &m, 5000), AL_OK);
    assert_int_equal(fr.n_tokens, 25);
    assert_true(fr.seq_id != crp.seq_id);
    alora_BaseStatsReply st;
    base_stats(ca, &st);
    assert_int_equal(st.sequences, 2);
    assert_int_equal(st.leases, 1);
    alora_Empty er;
    assert_int_equal(al_rpc_call(ca, alora_Method_BASE_SEQ_RELEASE, &(alora_SeqReleaseRequest){.seq_id = crp.seq_id},
                                 &er, &m, 5000),
                     AL_OK);
    assert_int_equal(al_rpc_call(ca, alora_Method_BASE_SEQ_RELEASE, &(alora_SeqReleaseRequest){.seq_id = fr.seq_id},
                                 &er, &m, 5000),
                     AL_OK);
    expect_err(al_rpc_call(ca, alora_Method_BASE_SEQ_RELEASE, &(alora_SeqReleaseRequest){.seq_id = fr.seq_id}, &er,
                           &m, 5000),
               AL_ENOTFOUND, "seq_id");
    unlease(ca, lr.lease_id); /* the lease outlived its sequence */
    base_stats(ca, &st);
    assert_int_equal(st.sequences, 0);
    assert_int_equal(st.leases, 0);
    al_pbmem_free(&m);
}

static void raw_expect_error(al_rpc_client *c, const void *frame, size_t len)
{
    uint8_t *rep = NULL;
    size_t rlen = 0;
    assert_int_equal(al_rpc_call_raw(c, frame, len, &rep, &rlen, 5000), AL_OK);
    al_rpc_hdr h;
    assert_int_equal(al_rpc_hdr_read(rep, rlen, &h), AL_OK);
    assert_true(h.flags & AL_RPC_F_ERROR);
    assert_true(h.status != 0);
    free(rep);
}

static void test_bad_input(void **state)
{
    al_pbmem m = AL_PBMEM_INIT;
    alora_LeaseReply lr;
    int32_t bad[3] = {1, 70000, 5};
    expect_err(lease_tokens(ca, bad, 3, &lr), AL_ERANGE, "tokens");
    int32_t *big = calloc(100000, sizeof(int32_t));
    expect_err(lease_tokens(ca, big, 100000, &lr), AL_ERANGE, "tokens");
    free(big);
    alora_Empty er;
    expect_err(al_rpc_call(ca, alora_Method_BASE_UNLEASE, &(alora_UnleaseRequest){.lease_id = 424242}, &er, &m, 5000),
               AL_ENOTFOUND, "lease_id");
    alora_LeaseRequest both = {.seq_id = 5};
    int32_t one = 4;
    al_pb_ref_i32(&both.tokens, &m, &one, 1);
    expect_err(al_rpc_call(ca, alora_Method_BASE_LEASE, &both, &lr, &m, 5000), AL_EINVAL, "seq_id");
    expect_err(al_rpc_call(ca, alora_Method_BASE_LEASE, &(alora_LeaseRequest){0}, &lr, &m, 5000), AL_EINVAL, "seq_id");
    alora_SeqAppendRequest ap = {.seq_id = 999};
    alora_SeqAppendReply apr;
    expect_err(al_rpc_call(ca, alora_Method_BASE_SEQ_APPEND, &ap, &apr, &m, 5000), AL_ENOTFOUND, "seq_id");
    alora_SeqGenerateRequest gq = {.seq_id = 1};
    gq.sampling.top_logprobs = 99;
    alora_SeqGenerateReply gr;
    assert_true(al_rpc_call(ca, alora_Method_BASE_SEQ_GENERATE, &gq, &gr, &m, 5000) != AL_OK);

    /* garbage, truncated, mislabelled frames */
    uint8_t junk[64];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (uint8_t)(i * 37 + 11);
    raw_expect_error(ca, junk, sizeof junk);
    raw_expect_error(ca, junk, 5);
    uint8_t frame[AL_RPC_HDR_SIZE + 16];
    al_rpc_hdr h = {.version = AL_RPC_VERSION, .method = alora_Method_BASE_LEASE, .request_id = 7, .payload_len = 100};
    al_rpc_hdr_write(frame, &h);
    memset(frame + AL_RPC_HDR_SIZE, 0xff, 16);
    raw_expect_error(ca, frame, sizeof frame); /* length mismatch */
    h.payload_len = 16;
    al_rpc_hdr_write(frame, &h);
    raw_expect_error(ca, frame, sizeof frame); /* undecodable payload */
    h.method = 9999;
    al_rpc_hdr_write(frame, &h);
    raw_expect_error(ca, frame, sizeof frame); /* unknown method */
    /* oversized: over the server's receive cap, the connection is dropped; the base keeps serving */
    size_t huge = (64u << 20) + 4096;
    uint8_t *hb = calloc(1, huge);
    h = (al_rpc_hdr){.version = AL_RPC_VERSION, .method = alora_Method_BASE_LEASE, .payload_len = (uint32_t)(huge - AL_RPC_HDR_SIZE)};
    al_rpc_hdr_write(hb, &h);
    uint8_t *rep = NULL;
    size_t rlen = 0;
    al_rpc_client *tmpc = open_client(base_a_url);
    /* generous: the base must have dropped the connection before the call gives up (a call that
     * times out mid-send of 64 MiB can leave NNG 1.5 waiting forever in nng_close under ASan) */
    assert_true(al_rpc_call_raw(tmpc, hb, huge, &rep, &rlen, 20000) != AL_OK);
    al_rpc_client_close(tmpc);
    free(rep);
    free(hb);
    assert_int_equal(wait_health(ca, alora_Method_BASE_HEALTH, 3000), 0);

    /* worker: bad lease refs */
    alora_WorkerInvokeRequest wq = {.has_lease = true, .start_pos = 4, .mode = alora_InvokeMode_MODE_ALORA};
    wq.lease = (alora_LeaseRef){.lease_id = 1, .n_tokens = 4, .table_offset = 1u << 30, .generation = 1};
    int32_t wt[2] = {7, 8};
    al_pb_ref_i32(&wq.tokens, &m, wt, 2);
    alora_WorkerInvokeReply wr;
    expect_err(al_rpc_call(cwa, alora_Method_WORKER_INVOKE, &wq, &wr, &m, 5000), AL_EINVAL, "lease.table_offset");
    wq.lease.table_offset = AL_LEASE_ROW_HDR_BYTES; /* row 0: free (generation 0) */
    expect_err(al_rpc_call(cwa, alora_Method_WORKER_INVOKE, &wq, &wr, &m, 5000), AL_ENOTFOUND, "lease");
    wq.has_lease = false;
    expect_err(al_rpc_call(cwa, alora_Method_WORKER_INVOKE, &wq, &wr, &m, 5000), AL_EINVAL, "start_pos");
    wq.start_pos = 0;
    wt[1] = 1 << 20;
    expect_err(al_rpc_call(cwa, alora_Method_WORKER_INVOKE, &wq, &wr, &m, 5000), AL_ERANGE, "tokens");
    raw_expect_error(cwa, junk, sizeof junk);
    assert_int_equal(wait_health(cwa, alora_Method_WORKER_HEALTH, 3000), 0);
    al_pbmem_free(&m);
}

static long smaps_private_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long total = 0, v;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "Private_Clean: %ld kB", &v) == 1 || sscanf(line, "Private_Dirty: %ld kB", &v) == 1)
            total += v;
    fclose(f);
    return total;
}

/* Worker B maps the 85M-parameter base read-only: its private memory is a small fraction of it. */
static void test_private_memory(void **state)
{
    int32_t p[72];
    for (int i = 0; i < 72; i++)
        p[i] = 10 + (i * 13) % 400;
    p[64] = 7, p[65] = 8, p[66] = 9;
    alora_LeaseReply lr;
    assert_int_equal(lease_tokens(cb, p, 64, &lr), AL_OK);
    alora_WorkerInvokeRequest rq = {.has_lease = true, .start_pos = 64, .has_activation_start = true,
                                    .activation_start = 64, .mode = alora_InvokeMode_MODE_ALORA};
    rq.lease = (alora_LeaseRef){.lease_id = lr.lease_id, .n_tokens = lr.n_tokens, .table_offset = lr.table_offset,
                                .generation = lr.generation};
    rq.sampling.max_tokens = 4;
    al_pbmem m = AL_PBMEM_INIT;
    al_pb_ref_i32(&rq.tokens, &m, p + 64, 8);
    alora_WorkerInvokeReply rp;
    assert_int_equal(al_rpc_call(cwb, alora_Method_WORKER_INVOKE, &rq, &rp, &m, 30000), AL_OK);
    assert_int_equal(rp.computed_tokens, 8 + 3);
    assert_int_equal(rp.reused_tokens, 64);
    unlease(cb, lr.lease_id);
    alora_WorkerStatsReply ws;
    assert_int_equal(al_rpc_call(cwb, alora_Method_WORKER_STATS, &(alora_Empty){0}, &ws, &m, 5000), AL_OK);
    assert_int_equal(ws.kv_copied_bytes, 0);
    assert_int_equal(ws.invocations, 1);
    assert_int_equal(ws.reused_tokens, 64);
    long kb = smaps_private_kb(pid_worker_b);
    assert_true(kb > 0);
    double ratio = kb * 1024.0 / (double)weights_b_bytes;
    fprintf(stderr, "worker private memory: %ld KiB = %.2f%% of the %.1f MiB weight arena\n", kb, ratio * 100,
            weights_b_bytes / 1048576.0);
    assert_true(ratio < 0.10);
    al_pbmem_free(&m);
}

static void test_holder_killed(void **state)
{
    char go = 'g';
    assert_int_equal(write(holder_go, &go, 1), 1);
    uint64_t id = 0;
    assert_int_equal(read(holder_back, &id, sizeof id), (ssize_t)sizeof id);
    assert_true(id != 0);
    alora_BaseStatsReply st;
    base_stats(ca, &st);
    assert_int_equal(st.leases, 1);
    kill(pid_holder, SIGKILL);
    double t0 = now_ms();
    reap(&pid_holder, 2000);
    for (;;) { /* the lease TTL is 30 s: anything released before it came from the disconnect */
        base_stats(ca, &st);
        if (st.leases == 0 || now_ms() - t0 > 15000)
            break;
        sleep_ms(5);
    }
    double dt = now_ms() - t0;
    fprintf(stderr, "lease released %.1f ms after the holder's SIGKILL\n", dt);
    assert_int_equal(st.leases, 0);
    assert_true(st.leases_dropped >= 1); /* dropped with its holder's pipe, not expired */
}

/* SIGTERM: the worker and base B exit 0 and leave no shm segment; SIGKILL of base A: worker A exits 3. */
static void test_shutdown(void **state)
{
    al_rpc_client_close(cwb);
    cwb = NULL;
    al_rpc_client_close(cb);
    cb = NULL;
    pid_t bb = pid_base_b;
    kill(pid_worker_b, SIGTERM);
    assert_int_equal(reap(&pid_worker_b, 5000), 0);
    kill(pid_base_b, SIGTERM);
    assert_int_equal(reap(&pid_base_b, 5000), 0);
    int n = -1;
    assert_int_equal(al_arena_list_ours(NULL, bb, NULL, 0, &n), AL_OK);
    assert_int_equal(n, 0);

    al_rpc_client_close(cwa);
    cwa = NULL;
    al_rpc_client_close(ca);
    ca = NULL;
    pid_t ba = pid_base_a;
    kill(pid_base_a, SIGKILL);
    reap(&pid_base_a, 5000);
    double t0 = now_ms();
    int rc = reap(&pid_worker_a, 10000);
    fprintf(stderr, "worker exited %d, %.0f ms after the base's SIGKILL\n", rc, now_ms() - t0);
    assert_int_equal(rc, 3);
    assert_int_equal(al_arena_reclaim_stale(NULL), AL_OK); /* what `alora up` does */
    assert_int_equal(al_arena_list_ours(NULL, ba, NULL, 0, &n), AL_OK);
    assert_int_equal(n, 0);
}

/* ---- setup ------------------------------------------------------------------------------------------ */

static int write_cfgs(const char *bin)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "'%s' make-model --arch llama --preset 85m '%s/m85' >/dev/null && '%s' make-adapter --model '%s/m85' "
             "--targets q,v,gate --rank 8 --alpha 16 --invocation 7,8,9 '%s/a85' >/dev/null",
             bin, tmp, bin, tmp, tmp);
    if (system(cmd) != 0)
        return -1;
    char oracle[PATH_MAX];
    if (!realpath(GOLDEN_DIR, oracle))
        return -1;
    snprintf(run_a, sizeof run_a, "%s/run-a", tmp);
    snprintf(run_b, sizeof run_b, "%s/run-b", tmp);
    mkdir(run_a, 0700);
    mkdir(run_b, 0700);
    snprintf(cfg_a, sizeof cfg_a, "%s/a.cfg", tmp);
    snprintf(cfg_b, sizeof cfg_b, "%s/b.cfg", tmp);
    FILE *f = fopen(cfg_a, "w");
    if (!f)
        return -1;
    fprintf(f,
            "run_dir = \"%s\";\n"
            "base = { model = \"%s/llama_f32\"; kv_blocks = 128; block_size = 16; lease_ttl_ms = 30000; };\n"
            "worker = { kv_blocks = 32; max_batch_tokens = 64; };\n"
            "intrinsics = ( { name = \"qkvo\"; adapter = \"%s/adapters/alora_qkvo\"; max_tokens = 8; } );\n",
            run_a, oracle, oracle);
    fclose(f);
    f = fopen(cfg_b, "w");
    if (!f)
        return -1;
    fprintf(f,
            "run_dir = \"%s\";\n"
            "base = { model = \"%s/m85\"; kv_blocks = 32; max_batch_tokens = 128; };\n"
            "worker = { kv_blocks = 8; max_batch_tokens = 32; };\n"
            "intrinsics = ( { name = \"cert\"; adapter = \"%s/a85\"; capacity = 2; } );\n",
            run_b, tmp, tmp);
    fclose(f);
    snprintf(base_a_url, sizeof base_a_url, "ipc://%s/base.ipc", run_a);
    snprintf(base_b_url, sizeof base_b_url, "ipc://%s/base.ipc", run_b);
    snprintf(router_a_url, sizeof router_a_url, "ipc://%s/router.ipc", run_a);
    snprintf(worker_a_url, sizeof worker_a_url, "ipc://%s/worker-qkvo-0.ipc", run_a);
    snprintf(worker_b_url, sizeof worker_b_url, "ipc://%s/worker-cert-0.ipc", run_b);
    return 0;
}

int main(void)
{
    const char *build = getenv("ALORA_BUILD");
    char base_bin[1024], worker_bin[1024];
    snprintf(base_bin, sizeof base_bin, "%s/alora-base", build ? build : "build");
    snprintf(worker_bin, sizeof worker_bin, "%s/alora-worker", build ? build : "build");
    if (access(base_bin, X_OK) != 0 || access(worker_bin, X_OK) != 0) {
        fprintf(stderr, "no %s / %s: skipped\n", base_bin, worker_bin);
        return AL_TEST_SKIP_CODE;
    }
    tmp = al_test_tmpdir();
    if (!tmp || write_cfgs(al_test_bin()) != 0 || golden_load(&G) != 0) {
        fprintf(stderr, "setup failed\n");
        return 1;
    }
    /* ASan builds: the CPU attention kernel keeps per-thread scratch that is never freed when an engine
     * thread exits (kernels/cpu/attention.c ali_scratch); not this test's subject */
    char supp[700], lsan[800];
    snprintf(supp, sizeof supp, "%s/lsan.supp", tmp);
    FILE *sf = fopen(supp, "w");
    if (sf) {
        fputs("leak:ali_scratch\n", sf);
        fclose(sf);
        snprintf(lsan, sizeof lsan, "suppressions=%s:print_suppressions=0", supp);
        setenv("LSAN_OPTIONS", lsan, 0);
    }
    char log[4][700];
    const char *names[4] = {"base-a", "base-b", "worker-a", "worker-b"};
    for (int i = 0; i < 4; i++)
        snprintf(log[i], sizeof log[i], "%s/%s.log", tmp, names[i]);
    pid_base_a = spawn(log[0], (char *[]){base_bin, "-c", cfg_a, NULL});
    pid_base_b = spawn(log[1], (char *[]){base_bin, "-c", cfg_b, NULL});
    pid_worker_a = spawn(log[2], (char *[]){worker_bin, "-c", cfg_a, "--intrinsic", "qkvo", "--replica", "0", NULL});
    pid_worker_b = spawn(log[3], (char *[]){worker_bin, "-c", cfg_b, "--intrinsic", "cert", "--replica", "0",
                                            "--router", "none", NULL});
    int go[2], back[2];
    if (pipe(go) != 0 || pipe(back) != 0)
        return 1;
    pid_holder = fork();
    if (pid_holder == 0) {
        close(go[1]);
        close(back[0]);
        holder_main(go[0], back[1]);
    }
    close(go[0]);
    close(back[1]);
    holder_go = go[1];
    holder_back = back[0];

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_up),
        cmocka_unit_test(test_registration),
        cmocka_unit_test(test_invoke_matches_engine),
        cmocka_unit_test(test_invoke_lora_mode),
        cmocka_unit_test(test_concurrent_invokes),
        cmocka_unit_test(test_lease_ttl),
        cmocka_unit_test(test_lease_cached),
        cmocka_unit_test(test_seq_api),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_private_memory),
        cmocka_unit_test(test_holder_killed),
        cmocka_unit_test(test_shutdown),
    };
    int rc = cmocka_run_group_tests_name("services_cluster", tests, NULL, NULL);
    if (rc != 0)
        for (int i = 0; i < 4; i++)
            dump_log(names[i]);
    if (cwa)
        al_rpc_client_close(cwa);
    if (cwb)
        al_rpc_client_close(cwb);
    if (ca)
        al_rpc_client_close(ca);
    if (cb)
        al_rpc_client_close(cb);
    close(holder_go);
    kill_all();
    al_arena_reclaim_stale(NULL);
    golden_free(&G);
    al_test_rmrf(tmp);
    free(tmp);
    return rc;
}
