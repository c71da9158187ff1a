/* session_rebuild_test.c: a session whose base sequence the base freed (behind the router's back)
 * is rebuilt from its token history on the next call, through a real cluster (`alora up`). */
#include "al_test.h"
#include "common/ipc/rpc.h"
#include "integration/up_fixture.h"

/* Appends toks to session id. */
static void append(al_rpc_client *c, const char *id, const int32_t *toks, size_t n)
{
    al_pbmem m = AL_PBMEM_INIT;
    alora_SessionAppendRequest aq = alora_SessionAppendRequest_init_zero;
    alora_SessionAppendReply ar;
    snprintf(aq.session_id, sizeof aq.session_id, "%s", id);
    al_pb_ref_i32(&aq.tokens, &m, toks, n);
    assert_int_equal(al_rpc_call(c, alora_Method_ROUTER_SESSION_APPEND, &aq, &ar, &m, 10000), AL_OK);
    al_pbmem_free(&m);
}

/* Greedy generate of 5 tokens on session id into out. */
static void generate(al_rpc_client *c, const char *id, int32_t out[5])
{
    al_pbmem m = AL_PBMEM_INIT;
    alora_SessionGenerateRequest gq = alora_SessionGenerateRequest_init_zero;
    alora_SessionGenerateReply gr;
    snprintf(gq.session_id, sizeof gq.session_id, "%s", id);
    gq.sampling.max_tokens = 5;
    gq.sampling.ignore_eos = true;
    assert_int_equal(al_rpc_call(c, alora_Method_ROUTER_SESSION_GENERATE, &gq, &gr, &m, 20000), AL_OK);
    const int32_t *t;
    assert_int_equal(al_pb_i32(&gr.tokens, &t), 5);
    memcpy(out, t, sizeof(int32_t) * 5);
    al_pbmem_free(&m);
}

static uint32_t base_sequences(al_rpc_client *b)
{
    al_pbmem m = AL_PBMEM_INIT;
    alora_Empty q = alora_Empty_init_zero;
    alora_BaseStatsReply st;
    assert_int_equal(al_rpc_call(b, alora_Method_BASE_STATS, &q, &st, &m, 10000), AL_OK);
    al_pbmem_free(&m);
    return st.sequences;
}

/* The base frees one of two identical sessions' sequences behind the router's back (as it will for a
 * vanished client's): the next calls on it rebuild the KV from the token history and answer exactly
 * like the intact twin. */
static void test_rebuild_after_base_freed_sequence(void **state)
{
    al_rpc_client *c, *b;
    char base_url[600];
    snprintf(base_url, sizeof base_url, "ipc://%s/run/base.ipc", tdir);
    assert_int_equal(al_rpc_client_open(&c, router_url, NULL), AL_OK);
    assert_int_equal(al_rpc_client_open(&b, base_url, NULL), AL_OK);
    al_pbmem m = AL_PBMEM_INIT;
    int32_t hist[40];
    for (int i = 0; i < 40; i++)
        hist[i] = 3 + (i * 11) % 50;
    const char *ids[2] = {"twin-a", "twin-b"};
    for (int k = 0; k < 2; k++) {
        alora_SessionCreateRequest cq = alora_SessionCreateRequest_init_zero;
        alora_SessionCreateReply cr;
        snprintf(cq.session_id, sizeof cq.session_id, "%s", ids[k]);
        assert_int_equal(al_rpc_call(c, alora_Method_ROUTER_SESSION_CREATE, &cq, &cr, &m, 10000), AL_OK);
        append(c, ids[k], hist, 40);
    }
    uint32_t n0 = base_sequences(b);
    assert_int_equal(n0, 2);
    /* release one sequence directly on the base. Sequence ids count up from a random start (per
     * base instance): a probe sequence made now has the next id; the twins' are just below it */
    alora_SeqCreateRequest pq = alora_SeqCreateRequest_init_zero;
    alora_SeqCreateReply pr;
    assert_int_equal(al_rpc_call(b, alora_Method_BASE_SEQ_CREATE, &pq, &pr, &m, 10000), AL_OK);
    al_pbmem_free(&m);
    int released = 0;
    for (uint64_t id = pr.seq_id - 1; id + 64 > pr.seq_id && !released; id--) {
        alora_SeqReleaseRequest rq = {.seq_id = id};
        alora_Empty er;
        released = al_rpc_call(b, alora_Method_BASE_SEQ_RELEASE, &rq, &er, &m, 10000) == AL_OK;
        al_pbmem_free(&m);
    }
    assert_true(released);
    alora_SeqReleaseRequest prq = {.seq_id = pr.seq_id};
    alora_Empty per;
    assert_int_equal(al_rpc_call(b, alora_Method_BASE_SEQ_RELEASE, &prq, &per, &m, 10000), AL_OK);
    al_pbmem_free(&m);
    assert_int_equal(base_sequences(b), 1);

    int32_t ga[5], gb[5];
    generate(c, ids[0], ga);
    generate(c, ids[1], gb);
    al_assert_ints_equal(ga, gb, 5); /* the rebuilt one continues exactly like its twin */
    assert_int_equal(base_sequences(b), 2);
    /* and both keep going: the generated tokens are part of both histories */
    int32_t more[3] = {7, 8, 9};
    append(c, ids[0], more, 3);
    append(c, ids[1], more, 3);
    generate(c, ids[0], ga);
    generate(c, ids[1], gb);
    al_assert_ints_equal(ga, gb, 5);

    for (int k = 0; k < 2; k++) {
        alora_SessionDeleteRequest dq = alora_SessionDeleteRequest_init_zero;
        alora_Empty de;
        snprintf(dq.session_id, sizeof dq.session_id, "%s", ids[k]);
        assert_int_equal(al_rpc_call(c, alora_Method_ROUTER_SESSION_DELETE, &dq, &de, &m, 10000), AL_OK);
    }
    assert_int_equal(base_sequences(b), 0);
    al_pbmem_free(&m);
    al_rpc_client_close(b);
    al_rpc_client_close(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_rebuild_after_base_freed_sequence)};
    if (access(al_test_bin(), X_OK) != 0)
        return AL_TEST_SKIP_CODE;
    return cmocka_run_group_tests(tests, setup, teardown);
}
