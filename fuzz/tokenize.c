/* tokenize.c: libFuzzer target: any text through real tokenizers (common/text/tokenizer*.c): encode with and
 * without special tokens, decode, streaming decode, for the byte-level GPT-2 / Llama 3 and the
 * SentencePiece fixtures (tests/fixtures/tokenizer): what every prompt from HTTP goes through. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "common/text/tokenizer.h"
#include "common/utf8.h"
#include "fuzz/fuzz_util.h"

static const char *const fuzz_names[] = {"bl_gpt2", "bl_llama3", "sp_meta"};
#define FUZZ_NT 3
static al_tokenizer *fuzz_tok[FUZZ_NT];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    FUZZ_QUIET_INIT();
    const char *src = getenv("ALORA_SOURCE_DIR") ? getenv("ALORA_SOURCE_DIR") : ALORA_SOURCE_DIR;
    for (int i = 0; i < FUZZ_NT; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/tests/fixtures/tokenizer/%s.tokenizer.json", src, fuzz_names[i]);
        if (al_tokenizer_load(path, &fuzz_tok[i]) != AL_OK) {
            fprintf(stderr, "fuzz: %s (set ALORA_SOURCE_DIR to the source tree)\n", al_errmsg());
            abort();
        }
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (int i = 0; i < FUZZ_NT; i++) {
        const al_tokenizer *t = fuzz_tok[i];
        int32_t *ids = NULL, n = 0;
        if (al_tokenizer_encode(t, (const char *)data, size, (int)(size & 1), &ids, &n) != AL_OK)
            continue;
        char *out = NULL;
        size_t olen = 0;
        for (int skip = 0; skip < 2; skip++)
            if (al_tokenizer_decode(t, ids, n, skip, &out, &olen) == AL_OK) {
                if (al_utf8_check(out, olen) != olen || out[olen])
                    abort(); /* documented: valid UTF-8, NUL-terminated */
                free(out);
            }
        /* streaming decode of the first 256 ids: al_detok holds text back while it ends in U+FFFD, as
         * HF's DecodeStream does, re-decoding the held window per push, so a long run of bytes that
         * never become valid UTF-8 costs O(n^2) (bench/reports/fuzz-2026-12-03.md; not on the
         * serving path) */
        al_detok *d = NULL;
        if (al_detok_new(t, 0, &d) == AL_OK) {
            for (int32_t k = 0; k < n && k < 256; k++)
                if (al_detok_push(d, ids[k], &out, &olen) == AL_OK)
                    free(out);
            if (al_detok_flush(d, &out, &olen) == AL_OK)
                free(out);
            al_detok_free(d);
        }
        free(ids);
    }
    return 0;
}
