/* base_owner_test.c: a real alora-base over RPC: sequences belong to the connection (and, after
 * BASE_HELLO, the client id) that made them. A client that creates sequences and vanishes leaves
 * none after base.seq_grace_ms; a client that says hello with the same id (a restarted router) gets
 * them back, another id does not; a stale epoch, a bad id and a NUL inside the id are refused. */
#include "al_test.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "common/ipc/arena.h"
#include "common/ipc/rpc.h"

#define GRACE_MS 4000

static char *tmp;
static char cfg[600], url[700], base_bin[1024];
static pid_t pid_base;
static al_rpc_client *mon; /* stays connected, never owns a sequence */

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static al_rpc_client *dial(void)
{
    al_rpc_client *c = NULL;
    al_rpc_client_opts o;
    al_rpc_client_opts_default(&o);
    o.connect_wait_ms = 2000;
    assert_int_equal(al_rpc_client_open(&c, url, &o), AL_OK);
    return c;
}

static alora_BaseStatsReply stats(void)
{
    alora_BaseStatsReply r;
    al_pbmem m = AL_PBMEM_INIT;
    assert_int_equal(al_rpc_call(mon, alora_Method_BASE_STATS, &(alora_Empty){0}, &r, &m, 5000), AL_OK);
    al_pbmem_free(&m);
    return r;
}

/* Waits (up to 20 s: the machine may be loaded) until field OP value holds; returns the stats. */
#define WAIT_STATS(cond)                                                                        \
    ({                                                                                          \
        alora_BaseStatsReply s_ = stats();                                                      \
        for (int i_ = 0; i_ < 400 && !({ alora_BaseStatsReply st = s_; (void)st; (cond); }); i_++) { \
            sleep_ms(50);                                                                       \
            s_ = stats();                                                                       \
        }                                                                                       \
        s_;                                                                                     \
    })

static uint64_t seq_create(al_rpc_client *c, int32_t first, int32_t n)
{
    int32_t t[64];
    for (int32_t i = 0; i < n; i++) /* the tiny model has 256 tokens; `first` keeps prompts apart */
        t[i] = i == 0 ? first % 256 : (first / 256 * 31 + i * 7) % 256;
    al_pbmem m = AL_PBMEM_INIT;
    alora_SeqCreateRequest rq = {0};
    al_pb_ref_i32(&rq.tokens, &m, t, (size_t)n);
    alora_SeqCreateReply rp;
    assert_int_equal(al_rpc_call(c, alora_Method_BASE_SEQ_CREATE, &rq, &rp, &m, 20000), AL_OK);
    assert_int_equal(rp.n_tokens, n);
    al_pbmem_free(&m);
    return rp.seq_id;
}

static al_err hello(al_rpc_client *c, const char *id, uint64_t epoch, alora_HelloReply *rp, uint64_t *ids, int cap)
{
    alora_HelloRequest q = alora_HelloRequest_init_zero;
    snprintf(q.client_id, sizeof q.client_id, "%s", id);
    q.epoch = epoch;
    q.role = alora_Role_ROLE_ROUTER;
    al_pbmem m = AL_PBMEM_INIT;
    al_err e = al_rpc_call(c, alora_Method_BASE_HELLO, &q, rp, &m, 5000);
    if (e == AL_OK && ids) {
        const uint8_t *raw;
        size_t nb = al_pb_bytes(&rp->reclaimed_seq_ids, &raw);
        assert_int_equal(nb, 8 * (size_t)rp->reclaimed);
        for (size_t i = 0; i < nb / 8 && (int)i < cap; i++) {
            ids[i] = 0;
            for (int k = 0; k < 8; k++)
                ids[i] |= (uint64_t)raw[8 * i + (size_t)k] << (8 * k);
        }
    }
    al_pbmem_free(&m);
    return e;
}

static bool has(const uint64_t *v, int n, uint64_t x)
{
    for (int i = 0; i < n; i++)
        if (v[i] == x)
            return true;
    return false;
}

/* The probe: a raw client creates 20 sequences and disconnects without a word. */
static void test_vanished_client_freed(void **state)
{
    alora_BaseStatsReply s0 = stats();
    al_rpc_client *c = dial();
    for (int i = 0; i < 20; i++)
        seq_create(c, 10 + i, 37); /* distinct prompts: 3 blocks each */
    alora_BaseStatsReply s1 = stats();
    assert_int_equal(s1.sequences, s0.sequences + 20);
    assert_true(s1.kv_blocks_used >= s0.kv_blocks_used + 40);
    al_rpc_client_close(c);
    alora_BaseStatsReply s2 = WAIT_STATS(st.seqs_orphaned >= s0.seqs_orphaned + 20 || st.seqs_freed >= s0.seqs_freed + 20);
    if (s2.seqs_freed == s0.seqs_freed) /* still in its grace period: kept, not yet freed */
        assert_int_equal(s2.sequences, s0.sequences + 20);
    alora_BaseStatsReply s3 = WAIT_STATS(st.sequences == s0.sequences);
    assert_int_equal(s3.sequences, s0.sequences);
    assert_int_equal(s3.seqs_freed, s0.seqs_freed + 20);
    assert_int_equal(s3.seqs_orphaned, 0);
    assert_int_equal(s3.seqs_reclaimed, s0.seqs_reclaimed);
    assert_int_equal(s3.kv_blocks_used, s0.kv_blocks_used); /* their KV is unreferenced again */
}

/* A restarted router (same id, higher epoch) gets its sequences back, including one it made before
 * its hello on that connection; they outlive the grace period and still work. */
static void test_reclaim_same_id(void **state)
{
    alora_BaseStatsReply s0 = stats();
    al_rpc_client *c = dial();
    uint64_t mine[5];
    mine[0] = seq_create(c, 40, 20); /* before the hello: adopted by it */
    alora_HelloReply hr;
    assert_int_equal(hello(c, "router-t", 1, &hr, NULL, 0), AL_OK);
    assert_int_equal(hr.reclaimed, 0);
    assert_int_equal(hr.owned, 1);
    assert_int_equal(hr.seq_grace_ms, GRACE_MS);
    for (int i = 1; i < 5; i++)
        mine[i] = seq_create(c, 40 + i, 20);
    al_rpc_client_close(c); /* kill -9 of the router, as far as the base can tell */

    al_rpc_client *c2 = dial();
    uint64_t back[8] = {0};
    assert_int_equal(hello(c2, "router-t", 2, &hr, back, 8), AL_OK);
    assert_int_equal(hr.reclaimed, 5);
    assert_int_equal(hr.owned, 5);
    for (int i = 0; i < 5; i++)
        assert_true(has(back, 5, mine[i]));
    /* past the grace period they are still there, and usable */
    sleep_ms(GRACE_MS + 1000);
    alora_BaseStatsReply s1 = stats();
    assert_int_equal(s1.sequences, s0.sequences + 5);
    assert_int_equal(s1.seqs_reclaimed, s0.seqs_reclaimed + 5);
    assert_int_equal(s1.seqs_freed, s0.seqs_freed);
    assert_int_equal(s1.seqs_orphaned, 0);
    int32_t more[3] = {7, 8, 9};
    al_pbmem m = AL_PBMEM_INIT;
    alora_SeqAppendRequest aq = {.seq_id = mine[2]};
    al_pb_ref_i32(&aq.tokens, &m, more, 3);
    alora_SeqAppendReply ar;
    assert_int_equal(al_rpc_call(c2, alora_Method_BASE_SEQ_APPEND, &aq, &ar, &m, 20000), AL_OK);
    assert_int_equal(ar.n_tokens, 23);
    al_pbmem_free(&m);

    /* an older epoch of the same id is a stale instance: refused, and it takes nothing */
    al_rpc_client *c3 = dial();
    assert_int_equal(hello(c3, "router-t", 1, &hr, NULL, 0), AL_EINVAL);
    assert_non_null(strstr(al_errmsg(), "epoch"));
    al_rpc_client_close(c3);

    for (int i = 0; i < 5; i++) {
        alora_SeqReleaseRequest rq = {.seq_id = mine[i]};
        alora_Empty e;
        al_pbmem m2 = AL_PBMEM_INIT;
        assert_int_equal(al_rpc_call(c2, alora_Method_BASE_SEQ_RELEASE, &rq, &e, &m2, 5000), AL_OK);
        al_pbmem_free(&m2);
    }
    al_rpc_client_close(c2);
    alora_BaseStatsReply s2 = WAIT_STATS(st.sequences == s0.sequences);
    assert_int_equal(s2.sequences, s0.sequences);
    assert_int_equal(s2.seqs_freed, s0.seqs_freed); /* released by hand, not by the grace period */
}

/* Another router id does not get them: they are freed after the grace period. */
static void test_other_id_does_not(void **state)
{
    alora_BaseStatsReply s0 = stats();
    al_rpc_client *c = dial();
    alora_HelloReply hr;
    assert_int_equal(hello(c, "router-a", 1, &hr, NULL, 0), AL_OK);
    for (int i = 0; i < 3; i++)
        seq_create(c, 50 + i, 20);
    al_rpc_client_close(c);
    WAIT_STATS(st.seqs_orphaned >= 3 || st.seqs_freed >= s0.seqs_freed + 3);
    al_rpc_client *c2 = dial();
    assert_int_equal(hello(c2, "router-b", 1, &hr, NULL, 0), AL_OK);
    assert_int_equal(hr.reclaimed, 0);
    assert_int_equal(hr.owned, 0);
    alora_BaseStatsReply s1 = WAIT_STATS(st.sequences == s0.sequences);
    assert_int_equal(s1.sequences, s0.sequences);
    assert_int_equal(s1.seqs_freed, s0.seqs_freed + 3);
    assert_int_equal(s1.seqs_reclaimed, s0.seqs_reclaimed);
    al_rpc_client_close(c2);
}

/* Bad identities, and a raw NUL inside the id (not read as its prefix "rout"). */
static void test_bad_hello(void **state)
{
    al_rpc_client *c = dial();
    alora_HelloReply hr;
    assert_int_equal(hello(c, "bad id!", 1, &hr, NULL, 0), AL_EINVAL);
    assert_non_null(strstr(al_errmsg(), "client_id"));
    assert_int_equal(hello(c, "", 1, &hr, NULL, 0), AL_EINVAL);
    assert_non_null(strstr(al_errmsg(), "client_id"));
    /* HelloRequest{client_id = "rout\0er-x", epoch = 1} by hand */
    static const char id[] = "rout\0er-x";
    uint8_t fr[AL_RPC_HDR_SIZE + 32];
    uint8_t *p = fr + AL_RPC_HDR_SIZE;
    size_t n = 0;
    p[n++] = 0x0a, p[n++] = (uint8_t)(sizeof id - 1);
    memcpy(p + n, id, sizeof id - 1);
    n += sizeof id - 1;
    p[n++] = 0x10, p[n++] = 1;
    al_rpc_hdr h = {.method = alora_Method_BASE_HELLO, .request_id = 77, .payload_len = (uint32_t)n};
    al_rpc_hdr_write(fr, &h);
    uint8_t *rep;
    size_t rlen;
    assert_int_equal(al_rpc_call_raw(c, fr, AL_RPC_HDR_SIZE + n, &rep, &rlen, 5000), AL_OK);
    alora_Status st;
    al_pbmem m = AL_PBMEM_INIT;
    assert_int_equal(al_rpc_frame_decode(rep, rlen, &h, &st, &m, 0), AL_OK);
    assert_true(h.flags & AL_RPC_F_ERROR);
    assert_int_equal(st.code, AL_EINVAL);
    assert_non_null(strstr(st.message, "NUL"));
    al_pbmem_free(&m);
    free(rep);
    alora_BaseStatsReply s = stats();
    assert_int_equal(s.clients, 0); /* none of them was bound */
    al_rpc_client_close(c);
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
    if (al_rpc_client_open(&mon, url, &o) != AL_OK)
        return -1;
    for (int i = 0; i < 400; i++) {
        alora_HealthReply hr;
        al_pbmem m = AL_PBMEM_INIT;
        al_err e = al_rpc_call(mon, alora_Method_BASE_HEALTH, &(alora_Empty){0}, &hr, &m, 1000);
        al_pbmem_free(&m);
        if (e == AL_OK && hr.health == alora_Health_HEALTH_OK)
            return 0;
        sleep_ms(50);
    }
    return -1;
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
            "base = { model = \"%s/m\"; kv_blocks = 256; block_size = 16; max_batch_tokens = 64; "
            "seq_grace_ms = %d; };\n"
            "intrinsics = ();\n",
            tmp, tmp, GRACE_MS);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s/run", tmp);
    mkdir(cmd, 0700);
    snprintf(url, sizeof url, "ipc://%s/run/base.ipc", tmp);
    int rc = 1;
    if (start_base() != 0) {
        fprintf(stderr, "alora-base did not come up\n");
    } else {
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_bad_hello),
            cmocka_unit_test(test_vanished_client_freed),
            cmocka_unit_test(test_reclaim_same_id),
            cmocka_unit_test(test_other_id_does_not),
        };
        rc = cmocka_run_group_tests_name("services_base_owner", tests, NULL, NULL);
    }
    if (mon)
        al_rpc_client_close(mon);
    if (pid_base > 0) {
        kill(pid_base, SIGTERM);
        int st;
        waitpid(pid_base, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "alora-base did not exit cleanly (status %d)\n", st);
            rc = 1;
        }
    }
    if (rc != 0) {
        snprintf(cmd, sizeof cmd, "tail -n 40 '%s/base.log' >&2", tmp);
        if (system(cmd) != 0)
            fprintf(stderr, "(no base log)\n");
    }
    al_arena_reclaim_stale(NULL);
    al_test_rmrf(tmp);
    free(tmp);
    return rc;
}
