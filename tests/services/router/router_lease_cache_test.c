/* router_lease_cache_test.c: kept prefix leases through a real cluster (`alora up`, router.lease_hold_ms):
 * the second intrinsic call on a conversation reuses the first call's lease (lease_kept, no new
 * lease at the base) with bit-identical output; another prefix gets its own; the base holds the
 * kept leases until the hold ends, then none; after the base is killed and restarted a lease kept
 * from the dead instance is never used (the call leases afresh and answers the same); and with
 * router.lease_hold_ms = 0 nothing is kept. The fast path of a call on a kept lease
 * (router_invoke_fast.c): concurrent calls all answered the same, a worker error answered (the call
 * re-run with a fresh lease), a killed worker's call not lost. Every child is spawned before the first NNG call. */
#include "al_test.h"

#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <time.h>

#include "common/ipc/rpc.h"

extern char **environ;

static char *tdir;
static pid_t up_pid[2];
static char router_url[2][600], base_url[2][600];

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int run_wait(char *const argv[])
{
    pid_t pid;
    int st;
    if (posix_spawn(&pid, argv[0], NULL, NULL, argv, environ) != 0 || waitpid(pid, &st, 0) != pid)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Cluster k in <tdir>/run<k> with router.lease_hold_ms = hold. */
static int start_up(int k, const char *model, const char *ad, int hold)
{
    char cfg[1100], ready[1100];
    snprintf(cfg, sizeof cfg, "%s/c%d.cfg", tdir, k);
    snprintf(ready, sizeof ready, "%s/ready%d", tdir, k);
    snprintf(router_url[k], sizeof router_url[k], "ipc://%s/run%d/router.ipc", tdir, k);
    snprintf(base_url[k], sizeof base_url[k], "ipc://%s/run%d/base.ipc", tdir, k);
    FILE *f = fopen(cfg, "w");
    if (!f)
        return -1;
    fprintf(f,
            "run_dir = \"%s/run%d\";\nbase = { model = \"%s\"; kv_blocks = 128; block_size = 4; };\n"
            "worker = { kv_blocks = 32; };\nrouter = { lease_hold_ms = %d; };\n"
            "intrinsics = ( { name = \"certainty\"; adapter = \"%s\"; replicas = 1; max_tokens = 3; } );\n",
            tdir, k, model, hold, ad);
    fclose(f);
    const char *bin = al_test_bin();
    char *up[] = {(char *)bin, "up", "-c", cfg, "--ready-file", ready, NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", 1 /* O_WRONLY */, 0);
    int rc = posix_spawn(&up_pid[k], bin, &fa, NULL, up, environ);
    posix_spawn_file_actions_destroy(&fa);
    return rc == 0 ? 0 : -1;
}

static int setup(void **state)
{
    const char *bin = al_test_bin();
    char model[1100], ad[1100], ready[1100];
    if (access(bin, X_OK) != 0)
        return -1;
    tdir = al_test_tmpdir();
    snprintf(model, sizeof model, "%s/model", tdir);
    snprintf(ad, sizeof ad, "%s/cert", tdir);
    char *mm[] = {(char *)bin, "make-model", "--arch", "llama", "--preset", "tiny", "--seed", "5", model, NULL};
    char *ma[] = {(char *)bin, "make-adapter", "--model", model, "--targets", "q,v", "--rank", "4", "--alpha", "8",
                  "--invocation", "50,51", "--seed", "2", ad, NULL};
    if (run_wait(mm) != 0 || run_wait(ma) != 0)
        return -1;
    /* cluster 0 keeps leases 2.5 s; cluster 1 takes a lease per call */
    if (start_up(0, model, ad, 2500) != 0 || start_up(1, model, ad, 0) != 0)
        return -1;
    for (int k = 0; k < 2; k++) {
        snprintf(ready, sizeof ready, "%s/ready%d", tdir, k);
        for (int i = 0; i < 600 && access(ready, R_OK) != 0; i++)
            sleep_ms(100);
        if (access(ready, R_OK) != 0)
            return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    for (int k = 0; k < 2; k++)
        if (up_pid[k] > 0) {
            int st;
            kill(up_pid[k], SIGTERM);
            waitpid(up_pid[k], &st, 0);
            assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        }
    al_test_rmrf(tdir);
    free(tdir);
    return 0;
}

typedef struct reply {
    int32_t tokens[8];
    float lp[8];
    int n;
    bool kept;
    uint32_t cached;
} reply;

/* ROUTER_INVOKE of conversation t[0, n) + the invocation 50, 51 (retried while the cluster says
 * unavailable, e.g. its workers re-attaching to a restarted base). */
static void invoke(al_rpc_client *c, const int32_t *t, int n, reply *out)
{
    int32_t buf[128];
    memcpy(buf, t, sizeof(int32_t) * (size_t)n);
    buf[n] = 50;
    buf[n + 1] = 51;
    for (int attempt = 0;; attempt++) {
        alora_InvokeRequest q = alora_InvokeRequest_init_zero;
        alora_InvokeReply r;
        al_pbmem m = AL_PBMEM_INIT;
        snprintf(q.intrinsic, sizeof q.intrinsic, "certainty");
        q.mode = alora_InvokeMode_MODE_ALORA;
        q.max_tokens = 3;
        q.top_logprobs = 1;
        q.sampling.ignore_eos = true;
        assert_int_equal(al_pb_ref_i32(&q.tokens, &m, buf, (size_t)n + 2), AL_OK);
        al_err e = al_rpc_call(c, alora_Method_ROUTER_INVOKE, &q, &r, &m, 30000);
        if ((e == AL_EUNAVAILABLE || e == AL_EOVERLOADED) && attempt < 300) {
            al_pbmem_free(&m);
            sleep_ms(100);
            continue;
        }
        if (e != AL_OK)
            fail_msg("invoke: %s: %s", al_strerror(e), al_errmsg());
        const int32_t *ot;
        const float *lp;
        out->n = (int)al_pb_i32(&r.tokens, &ot);
        assert_true(out->n > 0 && out->n <= 8);
        memcpy(out->tokens, ot, sizeof(int32_t) * (size_t)out->n);
        assert_int_equal(al_pb_f32(&r.logprobs.logprob, &lp), (size_t)out->n);
        memcpy(out->lp, lp, sizeof(float) * (size_t)out->n);
        out->kept = r.lease_kept;
        out->cached = r.prefix_cached_tokens;
        al_pbmem_free(&m);
        return;
    }
}

static void expect_same(const reply *a, const reply *b, const char *what)
{
    if (a->n != b->n || memcmp(a->tokens, b->tokens, sizeof(int32_t) * (size_t)a->n) != 0 ||
        memcmp(a->lp, b->lp, sizeof(float) * (size_t)a->n) != 0)
        fail_msg("%s: outputs differ (%d vs %d tokens, first %d vs %d, logprob %.9g vs %.9g)", what, a->n, b->n,
                 a->tokens[0], b->tokens[0], a->lp[0], b->lp[0]);
}

static uint32_t base_leases(al_rpc_client *c, uint32_t *pid)
{
    alora_BaseStatsReply st;
    al_pbmem m = AL_PBMEM_INIT;
    assert_int_equal(al_rpc_call(c, alora_Method_BASE_STATS, &(alora_Empty){0}, &st, &m, 5000), AL_OK);
    al_pbmem_free(&m);
    if (pid) {
        alora_HealthReply h;
        m = (al_pbmem)AL_PBMEM_INIT;
        assert_int_equal(al_rpc_call(c, alora_Method_BASE_HEALTH, &(alora_Empty){0}, &h, &m, 5000), AL_OK);
        al_pbmem_free(&m);
        *pid = h.pid;
    }
    return st.leases;
}

static al_rpc_client *open_cli(const char *url)
{
    al_rpc_client *c;
    al_rpc_client_opts o;
    al_rpc_client_opts_default(&o);
    o.connect_wait_ms = 10000;
    assert_int_equal(al_rpc_client_open(&c, url, &o), AL_OK);
    return c;
}

static void conv(int32_t *t, int n, int seed)
{
    for (int i = 0; i < n; i++)
        t[i] = 3 + (i * 7 + seed * 13 + i * i) % 40; /* never the invocation 50, 51 */
}

static void test_kept_lease(void **state)
{
    al_rpc_client *r0 = open_cli(router_url[0]), *r1 = open_cli(router_url[1]), *b0 = open_cli(base_url[0]);
    int32_t a[64], b[64];
    conv(a, 37, 1);
    conv(b, 23, 2);
    reply first, again, other, plain, plain2;
    invoke(r0, a, 37, &first);
    assert_false(first.kept);
    assert_int_equal(base_leases(b0, NULL), 1); /* kept after the call */
    invoke(r0, a, 37, &again);
    assert_true(again.kept);
    assert_int_equal(again.cached, 37);
    expect_same(&first, &again, "kept lease vs fresh lease");
    assert_int_equal(base_leases(b0, NULL), 1); /* the same one: no new lease */
    invoke(r0, b, 23, &other);
    assert_false(other.kept);
    assert_int_equal(base_leases(b0, NULL), 2);
    /* the same model and adapter without keeping: the same answers, no lease left after the call */
    invoke(r1, a, 37, &plain);
    invoke(r1, a, 37, &plain2);
    assert_false(plain.kept);
    assert_false(plain2.kept);
    expect_same(&first, &plain, "router.lease_hold_ms = 2500 vs 0");
    /* the hold ends: the router gives both back */
    int left = -1;
    for (int i = 0; i < 100 && (left = (int)base_leases(b0, NULL)) != 0; i++)
        sleep_ms(100);
    assert_int_equal(left, 0);
    invoke(r0, a, 37, &again);
    assert_false(again.kept); /* expired: leased afresh (and kept again) */
    expect_same(&first, &again, "after the hold");
    al_rpc_client_close(b0);
    al_rpc_client_close(r1);
    al_rpc_client_close(r0);
}

/* ---- the fast path (router_invoke_fast.c): a call on a kept lease is answered on NNG's threads ---- */

typedef struct async_call {
    alora_InvokeRequest q;
    alora_InvokeReply r;
    al_pbmem qm, m;
    al_err e;
    char msg[300];
} async_call;

static pthread_mutex_t amu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t acv = PTHREAD_COND_INITIALIZER;
static int a_done;

static void async_done(al_err e, const char *msg, void *rep, void *arg)
{
    async_call *c = arg;
    c->e = e;
    snprintf(c->msg, sizeof c->msg, "%s", msg ? msg : "");
    pthread_mutex_lock(&amu);
    a_done++;
    pthread_cond_broadcast(&acv);
    pthread_mutex_unlock(&amu);
}

/* The worker's pid from the router's status, and its fast-path call count. */
static uint32_t worker_pid(al_rpc_client *r0, uint64_t *fast)
{
    alora_StatusReply st;
    al_pbmem m = AL_PBMEM_INIT;
    uint32_t pid = 0;
    assert_int_equal(al_rpc_call(r0, alora_Method_ROUTER_STATUS, &(alora_Empty){0}, &st, &m, 5000), AL_OK);
    for (pb_size_t j = 0; j < st.processes_count; j++)
        if (st.processes[j].role == alora_Role_ROLE_WORKER)
            pid = st.processes[j].pid;
    if (fast)
        *fast = st.fast_calls;
    al_pbmem_free(&m);
    return pid;
}

static void test_fast_path(void **state)
{
    al_rpc_client *r0 = open_cli(router_url[0]);
    int32_t a[64];
    conv(a, 45, 4);
    reply first, again;
    uint64_t fast0, fast1;
    invoke(r0, a, 45, &first);
    worker_pid(r0, &fast0);
    /* concurrent calls on one kept lease: every one answered on the fast path, the same answer (the
     * worker batches them; a call's result does not depend on its batch) */
    enum { NC = 6 };
    async_call calls[NC];
    int32_t buf[64];
    memcpy(buf, a, sizeof(int32_t) * 45);
    buf[45] = 50;
    buf[46] = 51;
    a_done = 0;
    for (int i = 0; i < NC; i++) {
        async_call *c = &calls[i];
        *c = (async_call){.q = alora_InvokeRequest_init_zero, .qm = AL_PBMEM_INIT, .m = AL_PBMEM_INIT};
        snprintf(c->q.intrinsic, sizeof c->q.intrinsic, "certainty");
        c->q.mode = alora_InvokeMode_MODE_ALORA;
        c->q.max_tokens = 3;
        c->q.top_logprobs = 1;
        c->q.sampling.ignore_eos = true;
        assert_int_equal(al_pb_ref_i32(&c->q.tokens, &c->qm, buf, 47), AL_OK);
        al_rpc_callopts co = {.timeout_ms = 30000};
        assert_int_equal(al_rpc_call_async(r0, alora_Method_ROUTER_INVOKE, &c->q, &c->r, &c->m, &co, async_done, c),
                         AL_OK);
    }
    pthread_mutex_lock(&amu);
    while (a_done < NC)
        pthread_cond_wait(&acv, &amu);
    pthread_mutex_unlock(&amu);
    for (int i = 0; i < NC; i++) {
        async_call *c = &calls[i];
        if (c->e != AL_OK)
            fail_msg("concurrent call %d: %s: %s", i, al_strerror(c->e), c->msg);
        const int32_t *ot;
        const float *lp;
        reply got = {.n = (int)al_pb_i32(&c->r.tokens, &ot), .kept = c->r.lease_kept};
        assert_true(got.n > 0 && got.n <= 8);
        memcpy(got.tokens, ot, sizeof(int32_t) * (size_t)got.n);
        assert_int_equal(al_pb_f32(&c->r.logprobs.logprob, &lp), (size_t)got.n);
        memcpy(got.lp, lp, sizeof(float) * (size_t)got.n);
        assert_true(got.kept);
        assert_int_equal(c->r.prefix_cached_tokens, 45);
        expect_same(&first, &got, "concurrent call on a kept lease");
        al_pbmem_free(&c->qm);
        al_pbmem_free(&c->m);
    }
    worker_pid(r0, &fast1);
    assert_int_equal(fast1 - fast0, NC); /* every one on the fast path */
    /* the worker refuses a kept-lease call (a logit bias outside the vocabulary, which only the worker
     * checks): the router runs it again with a fresh lease and answers the worker's error */
    {
        alora_InvokeRequest q = alora_InvokeRequest_init_zero;
        alora_InvokeReply r;
        al_pbmem m = AL_PBMEM_INIT;
        snprintf(q.intrinsic, sizeof q.intrinsic, "certainty");
        q.mode = alora_InvokeMode_MODE_ALORA;
        q.max_tokens = 3;
        int32_t bias_id = 100000;
        float bias = 1.0f;
        assert_int_equal(al_pb_ref_i32(&q.tokens, &m, buf, 47), AL_OK);
        assert_int_equal(al_pb_ref_i32(&q.sampling.logit_bias_ids, &m, &bias_id, 1), AL_OK);
        assert_int_equal(al_pb_ref_f32(&q.sampling.logit_bias_values, &m, &bias, 1), AL_OK);
        al_err e = al_rpc_call(r0, alora_Method_ROUTER_INVOKE, &q, &r, &m, 30000);
        assert_int_equal(e, AL_EINVAL);
        assert_non_null(strstr(al_errmsg(), "logit_bias"));
        al_pbmem_free(&m);
    }
    worker_pid(r0, &fast0);
    assert_int_equal(fast0, fast1); /* a failed fast-path call is not counted: the pool answered it */
    invoke(r0, a, 45, &again); /* the failed kept lease was dropped: leased afresh, kept again */
    assert_false(again.kept);
    expect_same(&first, &again, "after a worker error on the fast path");
    invoke(r0, a, 45, &again);
    assert_true(again.kept);
    expect_same(&first, &again, "kept again");
    /* the worker dies with a kept lease in the cache: the next call is not lost (the fast path gives
     * it to the pool, which waits for the restarted worker) and answers the same */
    uint32_t wpid = worker_pid(r0, NULL);
    assert_true(wpid > 0);
    assert_int_equal(kill((pid_t)wpid, SIGKILL), 0);
    invoke(r0, a, 45, &again);
    expect_same(&first, &again, "after the worker was killed");
    al_rpc_client_close(r0);
}

static void test_base_restart(void **state)
{
    al_rpc_client *r0 = open_cli(router_url[0]), *b0 = open_cli(base_url[0]);
    int32_t a[64];
    conv(a, 41, 3);
    reply first, again;
    invoke(r0, a, 41, &first);
    uint32_t pid = 0, pid2 = 0;
    assert_true(base_leases(b0, &pid) >= 1);
    assert_true(pid > 0);
    al_rpc_client_close(b0);
    assert_int_equal(kill((pid_t)pid, SIGKILL), 0);
    /* alora up restarts it; the kept lease named rows of the dead instance's table arena */
    for (int i = 0; i < 300; i++) {
        sleep_ms(100);
        al_rpc_client *c;
        al_rpc_client_opts o;
        al_rpc_client_opts_default(&o);
        o.connect_wait_ms = 200;
        if (al_rpc_client_open(&c, base_url[0], &o) != AL_OK)
            continue;
        alora_HealthReply h;
        al_pbmem m = AL_PBMEM_INIT;
        al_err e = al_rpc_call(c, alora_Method_BASE_HEALTH, &(alora_Empty){0}, &h, &m, 1000);
        al_pbmem_free(&m);
        al_rpc_client_close(c);
        if (e == AL_OK && h.pid != pid && h.health == alora_Health_HEALTH_OK) {
            pid2 = h.pid;
            break;
        }
    }
    assert_true(pid2 > 0 && pid2 != pid);
    /* until the router has seen the new instance and a worker attached to it, a call may still be
     * served by a worker attached to the old one (its memory is still mapped there) */
    bool seen = false;
    for (int i = 0; i < 300 && !seen; i++) {
        alora_StatusReply st;
        al_pbmem m = AL_PBMEM_INIT;
        if (al_rpc_call(r0, alora_Method_ROUTER_STATUS, &(alora_Empty){0}, &st, &m, 5000) == AL_OK) {
            const char *inst = NULL;
            for (pb_size_t j = 0; j < st.processes_count; j++)
                if (st.processes[j].role == alora_Role_ROLE_BASE && st.processes[j].pid == pid2)
                    inst = st.processes[j].id;
            for (pb_size_t j = 0; inst && j < st.processes_count; j++)
                if (st.processes[j].role == alora_Role_ROLE_WORKER && !strcmp(st.processes[j].base_instance_id, inst) &&
                    st.processes[j].health == alora_Health_HEALTH_OK)
                    seen = true;
        }
        al_pbmem_free(&m);
        if (!seen)
            sleep_ms(100);
    }
    assert_true(seen);
    invoke(r0, a, 41, &again);
    assert_false(again.kept); /* the kept lease names the dead instance: never used */
    expect_same(&first, &again, "after the base restart");
    invoke(r0, a, 41, &again);
    assert_true(again.kept); /* kept from the new instance */
    expect_same(&first, &again, "kept lease of the new base");
    al_rpc_client_close(r0);
}

int main(void)
{
    if (access(al_test_bin(), X_OK) != 0) {
        printf("skipped: %s not built\n", al_test_bin());
        return AL_TEST_SKIP_CODE;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kept_lease),
        cmocka_unit_test(test_fast_path),
        cmocka_unit_test(test_base_restart),
    };
    return cmocka_run_group_tests_name("services_router_lease_cache", tests, setup, teardown);
}
