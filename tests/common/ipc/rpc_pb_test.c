/* rpc_pb_test.c: payload decoding edge cases of common/ipc/rpc_pb.c found by fuzzing (fuzz/rpc.c):
 * empty packed fields decode to empty arrays, next to a non-empty one. */
#include "al_test.h"

#include "common/ipc/rpc.h"

/* A whole BaseSeqGenerate request frame around payload[n]. */
static size_t frame(const uint8_t *payload, size_t n, uint8_t *out)
{
    al_rpc_hdr h = {.version = AL_RPC_VERSION, .method = alora_Method_BASE_SEQ_GENERATE, .request_id = 1,
                    .payload_len = (uint32_t)n};
    al_rpc_hdr_write(out, &h);
    memcpy(out + AL_RPC_HDR_SIZE, payload, n);
    return AL_RPC_HDR_SIZE + n;
}

static void test_empty_packed(void **state)
{
    /* seq_id = 1; sampling = { logit_bias_ids = [] (field 14), logit_bias_values = [] (15),
     * stop_token_ids = [7, 300] (8) } */
    static const uint8_t payload[] = {0x08, 0x01, 0x12, 0x09, 0x72, 0x00, 0x7a, 0x00,
                                      0x42, 0x03, 0x07, 0xac, 0x02};
    uint8_t buf[128];
    size_t len = frame(payload, sizeof payload, buf);
    al_rpc_hdr h;
    alora_SeqGenerateRequest rq;
    al_pbmem m = AL_PBMEM_INIT;
    assert_int_equal(al_rpc_frame_decode(buf, len, &h, &rq, &m, 0), AL_OK);
    assert_int_equal(rq.seq_id, 1);
    const int32_t *ids;
    const float *vals;
    assert_int_equal(al_pb_i32(&rq.sampling.logit_bias_ids, &ids), 0);
    assert_int_equal(al_pb_f32(&rq.sampling.logit_bias_values, &vals), 0);
    assert_int_equal(rq.sampling.stop_token_ids_count, 2);
    assert_int_equal(rq.sampling.stop_token_ids[0], 7);
    assert_int_equal(rq.sampling.stop_token_ids[1], 300);
    al_pbmem_free(&m);
}

static void test_packed_floats(void **state)
{
    /* sampling.logit_bias_values = [] then [1.5, -2] (a repeated packed field appends) */
    static const uint8_t payload[] = {0x08, 0x02, 0x12, 0x0c, 0x7a, 0x00, 0x7a, 0x08,
                                      0x00, 0x00, 0xc0, 0x3f, 0x00, 0x00, 0x00, 0xc0};
    uint8_t buf[128];
    size_t len = frame(payload, sizeof payload, buf);
    al_rpc_hdr h;
    alora_SeqGenerateRequest rq;
    al_pbmem m = AL_PBMEM_INIT;
    assert_int_equal(al_rpc_frame_decode(buf, len, &h, &rq, &m, 0), AL_OK);
    const float *vals;
    assert_int_equal(al_pb_f32(&rq.sampling.logit_bias_values, &vals), 2);
    assert_true(vals[0] == 1.5f && vals[1] == -2.0f);
    al_pbmem_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_packed),
        cmocka_unit_test(test_packed_floats),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
