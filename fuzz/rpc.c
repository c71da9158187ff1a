/* rpc.c: libFuzzer target: RPC frame decode (common/ipc/rpc_pb.c: header checks, then the nanopb message of
 * the frame's method and kind, as rpc_server.c / rpc_client.c decode them), re-encode and decode
 * again, and the wire -> engine conversions the base and workers apply to a decoded Sampling. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "common/ipc/rpc.h"
#include "common/ipc/rpc_int.h"
#include "engine/constrain/vocab.h"
#include "fuzz/fuzz_util.h"
#include "services/common/wire.h"

static al_vocab *fuzz_vocab;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    FUZZ_QUIET_INIT();
    static uint8_t single[256];
    const uint8_t *bytes[257];
    int32_t len[257];
    for (int i = 0; i < 256; i++) {
        single[i] = (uint8_t)i;
        bytes[i] = &single[i];
        len[i] = 1;
    }
    bytes[256] = NULL;
    len[256] = 0;
    int32_t eos = 256;
    if (al_vocab_new(257, bytes, len, &eos, 1, &fuzz_vocab) != AL_OK)
        abort();
    return 0;
}

static void fuzz_sampling(const alora_Sampling *s)
{
    al_sampling smp;
    int32_t max_tokens = 0, top_n = 0;
    (void)al_pb_get_sampling(s, 16, &smp, &max_tokens, &top_n);
    al_wire_ctl w;
    if (al_pb_get_gen_ctl(s, fuzz_vocab, 257, &w) == AL_OK)
        al_pb_gen_ctl_free(&w);
}

/* Decodes one whole frame into a message of exactly its struct's size (so ASan sees any overrun);
 * a frame that decodes is encoded again and must decode again. */
static void fuzz_frame(const uint8_t *buf, size_t len)
{
    al_rpc_hdr h;
    const pb_msgdesc_t *d = NULL;
    size_t ssz = 0;
    if (al_rpc_hdr_read(buf, len, &h) != AL_OK || ali_frame_desc(&h, &d, &ssz) != AL_OK)
        return;
    void *msg = malloc(ssz ? ssz : 1);
    if (!msg)
        abort();
    al_pbmem m = AL_PBMEM_INIT;
    if (al_rpc_frame_decode(buf, len, &h, msg, &m, 0) == AL_OK) {
        if (!(h.flags & (AL_RPC_F_REPLY | AL_RPC_F_ERROR))) {
            if (h.method == alora_Method_BASE_SEQ_GENERATE)
                fuzz_sampling(&((alora_SeqGenerateRequest *)msg)->sampling);
            else if (h.method == alora_Method_WORKER_INVOKE)
                fuzz_sampling(&((alora_WorkerInvokeRequest *)msg)->sampling);
        }
        uint8_t *again = NULL;
        size_t again_len = 0;
        if (al_rpc_frame_encode(&h, msg, &again, &again_len) == AL_OK) {
            void *msg2 = malloc(ssz ? ssz : 1);
            al_pbmem m2 = AL_PBMEM_INIT;
            al_rpc_hdr h2;
            if (!msg2)
                abort();
            if (al_rpc_frame_decode(again, again_len, &h2, msg2, &m2, 0) != AL_OK) {
                fprintf(stderr, "re-encoded %s frame does not decode: %s\n", al_rpc_method_name(h.method),
                        al_errmsg());
                abort();
            }
            al_pbmem_free(&m2);
            free(msg2);
            free(again);
        }
    }
    al_pbmem_free(&m);
    free(msg);
}

/* Input: first byte < 0xf0: [kind: 0 request, 1 reply, 3 error (low 2 bits)] [method] [payload...]
 * framed here with a valid header, so the mutations reach the payload decoders; otherwise the
 * rest is a raw frame (header checks). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    if (data[0] >= 0xf0) {
        fuzz_frame(data + 1, size - 1);
        return 0;
    }
    static const uint8_t kinds[4] = {0, AL_RPC_F_REPLY, AL_RPC_F_REPLY, AL_RPC_F_REPLY | AL_RPC_F_ERROR};
    al_rpc_hdr h = {.version = AL_RPC_VERSION,
                    .flags = kinds[data[0] & 3],
                    .method = data[1],
                    .request_id = 7,
                    .trace_id = 9,
                    .payload_len = (uint32_t)(size - 2)};
    uint8_t *f = malloc(AL_RPC_HDR_SIZE + size - 2);
    if (!f)
        abort();
    al_rpc_hdr_write(f, &h);
    memcpy(f + AL_RPC_HDR_SIZE, data + 2, size - 2);
    fuzz_frame(f, AL_RPC_HDR_SIZE + size - 2);
    free(f);
    return 0;
}
