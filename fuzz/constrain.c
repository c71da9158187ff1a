/* constrain.c: libFuzzer target: the constrained decoder's compilers (engine/constrain/): a regex, a
 * choice list or a JSON schema (first byte picks which) compiled against a small vocabulary, then a
 * matcher walked a few steps through its token masks. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "engine/constrain/constrain.h"
#include "fuzz/fuzz_util.h"

/* 256 single bytes, some multi-byte pieces, EOS */
static const char *const fuzz_multi[] = {"{\"", "\":", "\",", "\"}", "true", "false", "null", "  ", "ab",
                                         "\xc3\xa9", "\xe2\x82\xac", "12", "-0", "e+", "\\u00", "\\\""};
#define FUZZ_NM ((int32_t)(sizeof fuzz_multi / sizeof *fuzz_multi))
#define FUZZ_V (256 + FUZZ_NM + 1)
static al_vocab *fuzz_vocab;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    FUZZ_QUIET_INIT();
    static uint8_t single[256];
    const uint8_t *bytes[FUZZ_V];
    int32_t len[FUZZ_V];
    for (int i = 0; i < 256; i++) {
        single[i] = (uint8_t)i;
        bytes[i] = &single[i];
        len[i] = 1;
    }
    for (int i = 0; i < FUZZ_NM; i++) {
        bytes[256 + i] = (const uint8_t *)fuzz_multi[i];
        len[256 + i] = (int32_t)strlen(fuzz_multi[i]);
    }
    bytes[FUZZ_V - 1] = NULL;
    len[FUZZ_V - 1] = 0;
    int32_t eos = FUZZ_V - 1;
    if (al_vocab_new(FUZZ_V, bytes, len, &eos, 1, &fuzz_vocab) != AL_OK)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const al_constraint_kind kinds[4] = {AL_CONSTRAINT_REGEX, AL_CONSTRAINT_CHOICE,
                                                AL_CONSTRAINT_JSON_SCHEMA, AL_CONSTRAINT_JSON_OBJECT};
    al_constraint_spec spec = {.kind = kinds[data[0] % 4], .text = (const char *)data + 1, .len = size - 1};
    /* the text is bytes with a length, as the base takes it from the wire (services/common/wire.c) */
    al_grammar *g = NULL;
    if (al_grammar_compile(&spec, fuzz_vocab, &g) == AL_OK) {
        al_matcher *m = NULL;
        if (al_matcher_new(g, &m) == AL_OK) {
            uint32_t bits[(FUZZ_V + 31) / 32];
            uint32_t h = (uint32_t)size * 2654435761u;
            for (int step = 0; step < 24 && !al_matcher_finished(m); step++) {
                int32_t n = al_matcher_mask(m, 0, bits);
                if (n <= 0)
                    break;
                /* the k-th allowed id, k from a hash of the input and the step */
                h = h * 1103515245u + 12345u + data[step % size];
                int32_t k = (int32_t)(h % (uint32_t)n), pick = -1;
                for (int32_t id = 0; id < FUZZ_V && pick < 0; id++)
                    if (bits[id / 32] >> (id % 32) & 1 && k-- == 0)
                        pick = id;
                if (pick < 0 || al_matcher_accept(m, pick) != AL_OK)
                    abort(); /* an id the mask allowed must be accepted */
            }
            (void)al_matcher_accepting(m);
            al_matcher_free(m);
        }
        al_grammar_unref(g);
    }
    return 0;
}
