/* base_prefix_test.c: a real alora-base over RPC: what a live session's sequence leaves in the prefix
 * cache for a stateless lease (the router's invoke path) of the same tokens. SeqCreate(A) ->
 * SeqAppend(B) -> SeqGenerate(n) -> Lease(tokens = A + B + generated) must find every full block of
 * that prefix cached, whether the session is still alive, generates again, or is released. */
#include "al_test.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "common/ipc/arena.h"
#include "common/ipc/rpc.h"

#define BS 16

static char *tmp;
static char cfg[600], url[700], base_bin[1024];
static pid_t pid_base;
static al_rpc_client *cl;

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int start_base(void)
{
    char log[700];
    snprintf(log, sizeof log, "%s/base.log", tmp);
    pid_base = fork();
    if (pid_base == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execv(base_bin, (char *[]){base_bin, "-c", cfg, NULL});
        _exit(127);
    }
    al_rpc_client_opts o;
    al_rpc_client_opts_default(&o);
    o.connect_wait_ms = 500;
    if (al_rpc_client_open(&cl, url, &o) != AL_OK)
        return -1;
    for (int i = 0; i < 200; i++) {
        alora_HealthReply hr;
        al_pbmem m = AL_PBMEM_INIT;
        al_err e = al_rpc_call(cl, alora_Method_BASE_HEALTH, &(alora_Empty){0}, &hr, &m, 1000);
        al_pbmem_free(&m);
        if (e == AL_OK && hr.health == alora_Health_HEALTH_OK)
            return 0;
        sleep_ms(50);
    }
    return -1;
}

/* ---- RPC helpers ------------------------------------------------------------------------------ */

static uint64_t seq_create(const int32_t *t, int32_t n, uint32_t *cached)
{
    al_pbmem m = AL_PBMEM_INIT;
    alora_SeqCreateRequest rq = {0};
    al_pb_ref_i32(&rq.tokens, &m, t, (size_t)n);
    alora_SeqCreateReply rp;
    assert_int_equal(al_rpc_call(cl, alora_Method_BASE_SEQ_CREATE, &rq, &rp, &m, 10000), AL_OK);
    assert_int_equal(rp.n_tokens, n);
    if (cached)
        *cached = rp.prefix_cached_tokens;
    al_pbmem_free(&m);
    return rp.seq_id;
}

static void seq_append(uint64_t id, const int32_t *t, int32_t n, uint32_t want_len)
{
    al_pbmem m = AL_PBMEM_INIT;
    alora_SeqAppendRequest rq = {.seq_id = id};
    al_pb_ref_i32(&rq.tokens, &m, t, (size_t)n);
    alora_SeqAppendReply rp;
    assert_int_equal(al_rpc_call(cl, alora_Method_BASE_SEQ_APPEND, &rq, &rp, &m, 10000), AL_OK);
    assert_int_equal(rp.n_tokens, want_len);
    al_pbmem_free(&m);
}

/* Greedy generation of n tokens (committed unless discard); appends them to out. */
static int32_t seq_generate(uint64_t id, int32_t n, bool discard, int32_t *out)
{
    al_pbmem m = AL_PBMEM_INIT;
    alora_SeqGenerateRequest rq = {.seq_id = id, .discard = discard};
    rq.sampling.max_tokens = (uint32_t)n;
    rq.sampling.ignore_eos = true;
    alora_SeqGenerateReply rp;
    assert_int_equal(al_rpc_call(cl, alora_Method_BASE_SEQ_GENERATE, &rq, &rp, &m, 10000), AL_OK);
    const int32_t *t;
    size_t k = al_pb_i32(&rp.tokens, &t);
    assert_int_equal(k, n);
    memcpy(out, t, sizeof(int32_t) * k);
    al_pbmem_free(&m);
    return (int32_t)k;
}

static void seq_release(uint64_t id)
{
    al_pbmem m = AL_PBMEM_INIT;
    alora_Empty er;
    assert_int_equal(al_rpc_call(cl, alora_Method_BASE_SEQ_RELEASE, &(alora_SeqReleaseRequest){.seq_id = id}, &er,
                                 &m, 5000),
                     AL_OK);
    al_pbmem_free(&m);
}

/* Lease of a session's first n tokens (0 = all): returns n_cached (and unleases). */
static uint32_t lease_seq_cached(uint64_t id, int32_t n, int32_t want_len)
{
    al_pbmem m = AL_PBMEM_INIT;
    alora_LeaseRequest rq = {.seq_id = id, .n_tokens = (uint32_t)n};
    alora_LeaseReply rp;
    assert_int_equal(al_rpc_call(cl, alora_Method_BASE_LEASE, &rq, &rp, &m, 10000), AL_OK);
    assert_int_equal(rp.n_tokens, want_len);
    uint32_t c = rp.n_cached;
    alora_UnleaseRequest uq = {.lease_id = rp.lease_id};
    alora_Empty er;
    assert_int_equal(al_rpc_call(cl, alora_Method_BASE_UNLEASE, &uq, &er, &m, 5000), AL_OK);
    al_pbmem_free(&m);
    return c;
}

/* Stateless lease of t[0, n): returns n_cached (and unleases). */
static uint32_t lease_cached(const int32_t *t, int32_t n)
{
    al_pbmem m = AL_PBMEM_INIT;
    alora_LeaseRequest rq = {0};
    al_pb_ref_i32(&rq.tokens, &m, t, (size_t)n);
    alora_LeaseReply rp;
    assert_int_equal(al_rpc_call(cl, alora_Method_BASE_LEASE, &rq, &rp, &m, 10000), AL_OK);
    assert_int_equal(rp.n_tokens, n);
    uint32_t c = rp.n_cached;
    alora_UnleaseRequest uq = {.lease_id = rp.lease_id};
    alora_Empty er;
    assert_int_equal(al_rpc_call(cl, alora_Method_BASE_UNLEASE, &uq, &er, &m, 5000), AL_OK);
    al_pbmem_free(&m);
    return c;
}

static void fill(int32_t *t, int32_t n, int32_t salt)
{
    for (int32_t i = 0; i < n; i++)
        t[i] = 3 + (int32_t)((i * 37 + salt * 101) % 240);
}

#define FULL(n) (((n) / BS) * BS)
#define EXPECT_CACHED(got, n)                                                                                   \
    do {                                                                                                        \
        uint32_t g_ = (got);                                                                                    \
        if (g_ < (uint32_t)FULL(n))                                                                             \
            fail_msg("%s:%d: lease of %d tokens found %u cached, want >= %d (its full blocks)", __FILE__,       \
                     __LINE__, (int)(n), g_, FULL(n));                                                          \
    } while (0)

/* ---- tests ------------------------------------------------------------------------------------- */

/* The reported case: create, append, generate (commit), then a stateless lease of everything. */
static void test_create_append_generate_lease(void **state)
{
    (void)state;
    int32_t t[256];
    fill(t, 40, 1);           /* A: 40 tokens */
    fill(t + 40, 27, 2);      /* B: 27 tokens */
    uint64_t id = seq_create(t, 40, NULL);
    seq_append(id, t + 40, 27, 67);
    int32_t n = 67 + seq_generate(id, 12, false, t + 67); /* 79 tokens; the last has no KV yet */
    EXPECT_CACHED(lease_cached(t, n), n - 1);
    EXPECT_CACHED(lease_cached(t, 67), 67); /* A + B alone */
    /* generate again on the live session, then lease everything again */
    n += seq_generate(id, 20, false, t + n);
    EXPECT_CACHED(lease_cached(t, n), n - 1);
    seq_release(id);
    EXPECT_CACHED(lease_cached(t, n), n - 1);
}

/* Generation right at a block edge, and a session whose prompt is a block multiple. */
static void test_block_edges(void **state)
{
    (void)state;
    int32_t t[256];
    fill(t, 48, 3);
    uint64_t id = seq_create(t, 32, NULL);
    seq_append(id, t + 32, 16, 48);
    int32_t n = 48 + seq_generate(id, 16, false, t + 48); /* 64 */
    EXPECT_CACHED(lease_cached(t, n), n - 1);
    seq_append(id, (int32_t[]){5, 6, 7}, 3, (uint32_t)n + 3);
    t[n] = 5, t[n + 1] = 6, t[n + 2] = 7;
    n += 3;
    EXPECT_CACHED(lease_cached(t, n), n);
    n += seq_generate(id, 5, false, t + n);
    EXPECT_CACHED(lease_cached(t, n), n - 1);
    seq_release(id);
}

/* A session created over tokens that are already cached (its SeqCreate is never scheduled), then
 * appended to and generated on. */
static void test_cached_create(void **state)
{
    (void)state;
    int32_t t[256];
    fill(t, 70, 4);
    (void)lease_cached(t, 64); /* puts 4 full blocks in the cache */
    uint32_t c0 = 0;
    uint64_t id = seq_create(t, 64, &c0);
    assert_int_equal(c0, 64);
    seq_append(id, t + 64, 6, 70);
    int32_t n = 70 + seq_generate(id, 9, false, t + 70);
    EXPECT_CACHED(lease_cached(t, n), n - 1);
    seq_release(id);
}

/* A discarded generation leaves the session as it was; its tokens' KV may still be found, but the
 * session's own prefix must be. */
static void test_discard(void **state)
{
    (void)state;
    int32_t t[256];
    fill(t, 50, 5);
    uint64_t id = seq_create(t, 50, NULL);
    int32_t g[32];
    seq_generate(id, 8, true, g);
    EXPECT_CACHED(lease_cached(t, 50), 50);
    int32_t n = 50 + seq_generate(id, 8, false, t + 50);
    EXPECT_CACHED(lease_cached(t, n), n - 1);
    seq_release(id);
}

/* A lease of the session itself (the router's session invoke) reuses the session's own KV: n_cached
 * counts every leased token whose KV existed, not what the prefix cache had when the session's
 * sequence was first submitted (0 for a fresh conversation). */
static void test_session_lease_cached(void **state)
{
    (void)state;
    int32_t t[256];
    fill(t, 40, 6);
    fill(t + 40, 27, 7);
    uint64_t id = seq_create(t, 40, NULL); /* fresh tokens: nothing in the cache */
    assert_int_equal(lease_seq_cached(id, 0, 40), 40);
    seq_append(id, t + 40, 27, 67);
    assert_int_equal(lease_seq_cached(id, 0, 67), 67);
    assert_int_equal(lease_seq_cached(id, 50, 50), 50);
    int32_t n = 67 + seq_generate(id, 10, false, t + 67);
    /* the last generated token has no KV: the lease computes it */
    assert_int_equal(lease_seq_cached(id, 0, n), n - 1);
    assert_int_equal(lease_seq_cached(id, 0, n), n); /* now it has */
    EXPECT_CACHED(lease_cached(t, n), n);
    seq_release(id);
}

int main(void)
{
    const char *build = getenv("ALORA_BUILD");
    snprintf(base_bin, sizeof base_bin, "%s/alora-base", build ? build : "build");
    if (access(base_bin, X_OK) != 0 || access(al_test_bin(), X_OK) != 0) {
        fprintf(stderr, "no %s / %s: skipped\n", base_bin, al_test_bin());
        return AL_TEST_SKIP_CODE;
    }
    tmp = al_test_tmpdir();
    if (!tmp)
        return 1;
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' make-model --arch llama --preset tiny --seed 5 '%s/m' >/dev/null", al_test_bin(),
             tmp);
    if (system(cmd) != 0) {
        fprintf(stderr, "make-model failed\n");
        return 1;
    }
    snprintf(cfg, sizeof cfg, "%s/c.cfg", tmp);
    FILE *f = fopen(cfg, "w");
    if (!f)
        return 1;
    fprintf(f,
            "run_dir = \"%s/run\";\n"
            "base = { model = \"%s/m\"; kv_blocks = 256; block_size = %d; max_batch_tokens = 64; };\n"
            "intrinsics = ();\n",
            tmp, tmp, BS);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s/run", tmp);
    mkdir(cmd, 0700);
    snprintf(url, sizeof url, "ipc://%s/run/base.ipc", tmp);
    int rc = 1;
    if (start_base() != 0) {
        fprintf(stderr, "alora-base did not come up\n");
    } else {
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_create_append_generate_lease),
            cmocka_unit_test(test_block_edges),
            cmocka_unit_test(test_cached_create),
            cmocka_unit_test(test_discard),
            cmocka_unit_test(test_session_lease_cached),
        };
        rc = cmocka_run_group_tests_name("services_base_prefix", tests, NULL, NULL);
    }
    if (cl)
        al_rpc_client_close(cl);
    if (pid_base > 0) {
        kill(pid_base, SIGTERM);
        int st;
        waitpid(pid_base, &st, 0);
    }
    if (rc != 0) {
        snprintf(cmd, sizeof cmd, "tail -n 30 '%s/base.log' >&2", tmp);
        if (system(cmd) != 0)
            fprintf(stderr, "(no base log)\n");
    }
    al_arena_reclaim_stale(NULL);
    al_test_rmrf(tmp);
    free(tmp);
    return rc;
}
