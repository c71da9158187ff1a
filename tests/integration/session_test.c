/* session_test.c: the router's session API through a real cluster (`alora up` with a tiny model):
 * SessionCreate/Append/Generate/Invoke/Delete, session invoke == stateless invoke of the same
 * tokens, field-naming errors. Every child is spawned before the first NNG call. */
#include "al_test.h"
#include "common/ipc/rpc.h"
#include "integration/up_fixture.h"

static void test_sessions(void **state)
{
    al_rpc_client *c;
    assert_int_equal(al_rpc_client_open(&c, router_url, NULL), AL_OK);
    al_pbmem m = AL_PBMEM_INIT;

    alora_SessionCreateRequest cq = alora_SessionCreateRequest_init_zero;
    alora_SessionCreateReply cr;
    snprintf(cq.session_id, sizeof cq.session_id, "conv-1");
    assert_int_equal(al_rpc_call(c, alora_Method_ROUTER_SESSION_CREATE, &cq, &cr, &m, 10000), AL_OK);
    assert_string_equal(cr.session_id, "conv-1");
    assert_int_equal(al_rpc_call(c, alora_Method_ROUTER_SESSION_CREATE, &cq, &cr, &m, 10000), AL_EINVAL);
    assert_non_null(strstr(al_errmsg(), "session_id"));

    int32_t hist[64];
    for (int i = 0; i < 40; i++)
        hist[i] = 3 + (i * 7) % 40;
    alora_SessionAppendRequest aq = alora_SessionAppendRequest_init_zero;
    alora_SessionAppendReply ar;
    snprintf(aq.session_id, sizeof aq.session_id, "conv-1");
    snprintf(aq.role, sizeof aq.role, "user");
    al_pb_ref_i32(&aq.tokens, &m, hist, 40);
    assert_int_equal(al_rpc_call(c, alora_Method_ROUTER_SESSION_APPEND, &aq, &ar, &m, 10000), AL_OK);
    assert_int_equal(ar.n_tokens, 40);

    /* generate 3 tokens with the base, committed to the session */
    alora_SessionGenerateRequest gq = alora_SessionGenerateRequest_init_zero;
    alora_SessionGenerateReply gr;
    snprintf(gq.session_id, sizeof gq.session_id, "conv-1");
    gq.sampling.max_tokens = 3;
    gq.sampling.ignore_eos = true;
    assert_int_equal(al_rpc_call(c, alora_Method_ROUTER_SESSION_GENERATE, &gq, &gr, &m, 10000), AL_OK);
    const int32_t *gt;
    size_t ng = al_pb_i32(&gr.tokens, &gt);
    assert_int_equal(ng, 3);
    assert_int_equal(gr.n_tokens, 43);
    memcpy(hist + 40, gt, sizeof(int32_t) * 3);

    /* session invoke == stateless invoke of history + invocation */
    alora_SessionInvokeRequest sq = alora_SessionInvokeRequest_init_zero;
    alora_InvokeReply sr, ir;
    snprintf(sq.session_id, sizeof sq.session_id, "conv-1");
    snprintf(sq.intrinsic, sizeof sq.intrinsic, "certainty");
    sq.sampling.ignore_eos = true;
    assert_int_equal(al_rpc_call(c, alora_Method_ROUTER_SESSION_INVOKE, &sq, &sr, &m, 10000), AL_OK);
    assert_true(sr.has_activation_start);
    assert_int_equal(sr.activation_start, 43);
    assert_int_equal(sr.computed_tokens, 2 + 3 - 1); /* invocation + generated; the history is leased */
    hist[43] = 50;
    hist[44] = 51;
    alora_InvokeRequest iq = alora_InvokeRequest_init_zero;
    snprintf(iq.intrinsic, sizeof iq.intrinsic, "certainty");
    iq.sampling.ignore_eos = true;
    al_pb_ref_i32(&iq.tokens, &m, hist, 45);
    assert_int_equal(al_rpc_call(c, alora_Method_ROUTER_INVOKE, &iq, &ir, &m, 10000), AL_OK);
    const int32_t *a, *b;
    size_t na = al_pb_i32(&sr.tokens, &a), nb = al_pb_i32(&ir.tokens, &b);
    assert_int_equal(na, 3);
    assert_int_equal(na, nb);
    al_assert_ints_equal(a, b, na);
    assert_int_equal(ir.activation_start, 43);

    /* mode lora on the session */
    sq.mode = alora_InvokeMode_MODE_LORA;
    assert_int_equal(al_rpc_call(c, alora_Method_ROUTER_SESSION_INVOKE, &sq, &sr, &m, 10000), AL_OK);
    assert_true(sr.computed_tokens >= 45);

    /* errors name the field */
    snprintf(sq.intrinsic, sizeof sq.intrinsic, "nope");
    assert_int_equal(al_rpc_call(c, alora_Method_ROUTER_SESSION_INVOKE, &sq, &sr, &m, 10000), AL_ENOTFOUND);
    assert_non_null(strstr(al_errmsg(), "intrinsic"));
    snprintf(aq.session_id, sizeof aq.session_id, "bad id!");
    assert_int_equal(al_rpc_call(c, alora_Method_ROUTER_SESSION_APPEND, &aq, &ar, &m, 10000), AL_EINVAL);
    assert_non_null(strstr(al_errmsg(), "session_id"));

    alora_SessionDeleteRequest dq = alora_SessionDeleteRequest_init_zero;
    alora_Empty de;
    snprintf(dq.session_id, sizeof dq.session_id, "conv-1");
    assert_int_equal(al_rpc_call(c, alora_Method_ROUTER_SESSION_DELETE, &dq, &de, &m, 10000), AL_OK);
    assert_int_equal(al_rpc_call(c, alora_Method_ROUTER_SESSION_DELETE, &dq, &de, &m, 10000), AL_ENOTFOUND);

    alora_Empty q = alora_Empty_init_zero;
    alora_StatusReply *st = calloc(1, sizeof *st);
    assert_int_equal(al_rpc_call(c, alora_Method_ROUTER_STATUS, &q, st, &m, 10000), AL_OK);
    assert_int_equal(st->sessions, 0);
    assert_int_equal(st->processes_count, 3);
    free(st);
    alora_IntrinsicsReply in;
    assert_int_equal(al_rpc_call(c, alora_Method_ROUTER_INTRINSICS, &q, &in, &m, 10000), AL_OK);
    assert_int_equal(in.intrinsics_count, 1);
    assert_int_equal(in.intrinsics[0].n_workers, 1);
    assert_int_equal(in.intrinsics[0].n_invocation_tokens, 2);
    al_pbmem_free(&m);
    al_rpc_client_close(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_sessions)};
    if (access(al_test_bin(), X_OK) != 0)
        return AL_TEST_SKIP_CODE;
    return cmocka_run_group_tests(tests, setup, teardown);
}
