/* tokenizer.c: libFuzzer target: tokenizer.json loading (common/text/tokenizer_load.c); a tokenizer that
 * loads then encodes and decodes a fixed text and a piece of the input (pre-tokenizer, BPE, decoder). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "common/text/tokenizer.h"
#include "fuzz/fuzz_util.h"

static const char fuzz_text[] = "Hello, world! 123  <|end_of_text|> caf\xc3\xa9 \xe2\x96\x81x\n\t\xff";

static void fuzz_roundtrip(const al_tokenizer *t, const char *text, size_t len)
{
    int32_t *ids = NULL;
    int32_t n = 0;
    if (al_tokenizer_encode(t, text, len, 1, &ids, &n) != AL_OK)
        return;
    char *out = NULL;
    size_t olen = 0;
    if (al_tokenizer_decode(t, ids, n, 0, &out, &olen) == AL_OK)
        free(out);
    al_detok *d = NULL;
    if (al_detok_new(t, 1, &d) == AL_OK) {
        for (int32_t i = 0; i < n; i++)
            if (al_detok_push(d, ids[i], &out, &olen) == AL_OK)
                free(out);
        if (al_detok_flush(d, &out, &olen) == AL_OK)
            free(out);
        al_detok_free(d);
    }
    for (int32_t i = 0; i < n; i++) {
        (void)al_tokenizer_piece(t, ids[i]);
        if (al_tokenizer_token_bytes(t, ids[i], &out, &olen) == AL_OK)
            free(out);
    }
    free(ids);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    FUZZ_QUIET_INIT();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[512];
    fuzz_write("tokenizer.json", data, size, path, sizeof path);
    al_tokenizer *t = NULL;
    if (al_tokenizer_load(path, &t) != AL_OK)
        return 0;
    fuzz_roundtrip(t, fuzz_text, sizeof fuzz_text - 1);
    /* the input's tail as text: arbitrary bytes through the loaded pipeline */
    size_t k = size > 200 ? 200 : size;
    fuzz_roundtrip(t, (const char *)data + size - k, k);
    (void)al_tokenizer_chat_template(t);
    al_tokenizer_free(t);
    return 0;
}
