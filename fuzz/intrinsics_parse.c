/* intrinsics_parse.c: libFuzzer target: the intrinsics' output parsers (al_intrinsic_parse,
 * services/router/front/intrinsics_parse.c) on what a worker may send back: any text, any token ids,
 * any top-k ids and log-probabilities (NaN and infinities included), with a real tokenizer. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "fuzz/fuzz_util.h"
#include "services/router/front/intrinsics.h"

#define FUZZ_MAX_INTR 24
static al_intrinsic fuzz_intr[FUZZ_MAX_INTR];
static int fuzz_n_intr;
static al_tokenizer *fuzz_tok;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    FUZZ_QUIET_INIT();
    const char *src = getenv("ALORA_SOURCE_DIR") ? getenv("ALORA_SOURCE_DIR") : ALORA_SOURCE_DIR;
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/fixtures/tokenizer/bl_gpt2.tokenizer.json", src);
    if (al_tokenizer_load(path, &fuzz_tok) != AL_OK) {
        fprintf(stderr, "fuzz: %s (set ALORA_SOURCE_DIR to the source tree)\n", al_errmsg());
        abort();
    }
    /* the built-in catalogue, then the generic parsers as a config file declares them */
    const char *const *names = NULL;
    al_intrinsic_builtin_names(&names);
    for (int i = 0; names[i] && fuzz_n_intr < FUZZ_MAX_INTR - 4; i++)
        if (al_intrinsic_builtin(names[i], &fuzz_intr[fuzz_n_intr]) == AL_OK)
            fuzz_n_intr++;
    al_intrinsics l;
    if (al_intrinsics_load_string("intrinsics = ("
                                  "{ name = \"c\"; parser = \"choice\"; outputs = [\"yes\", \"no\", \"yes sir\"]; },"
                                  "{ name = \"j\"; parser = \"json\"; },"
                                  "{ name = \"r\"; parser = \"raw\"; },"
                                  "{ name = \"g\"; parser = \"guardian\"; outputs = [\"Yes\", \"No\"]; } );",
                                  &l) != AL_OK) {
        fprintf(stderr, "fuzz: %s\n", al_errmsg());
        abort();
    }
    for (int i = 0; i < l.n && fuzz_n_intr < FUZZ_MAX_INTR; i++) {
        fuzz_intr[fuzz_n_intr++] = l.v[i]; /* moved */
        memset(&l.v[i], 0, sizeof l.v[i]);
    }
    al_intrinsics_free(&l);
    return 0;
}

static uint32_t fuzz_take(const uint8_t **p, const uint8_t *end, size_t n)
{
    uint32_t v = 0;
    for (size_t i = 0; i < n; i++)
        v |= (uint32_t)(*p < end ? *(*p)++ : 0) << (8 * i);
    return v;
}

/* Input: [intrinsic] [top_k 0..5] [n tokens 0..15] [n x int32 ids] [n*k x (int32 id, f32 logprob)]
 * then the text (up to a NUL, as the router keeps it). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *p = data, *end = data + size;
    const al_intrinsic *in = &fuzz_intr[fuzz_take(&p, end, 1) % (uint32_t)fuzz_n_intr];
    int k = (int)(fuzz_take(&p, end, 1) % 6);
    int n = (int)(fuzz_take(&p, end, 1) % 16);
    int32_t toks[16];
    al_topk_entry top[16 * 5];
    for (int i = 0; i < n; i++)
        toks[i] = (int32_t)fuzz_take(&p, end, 4);
    for (int i = 0; i < n * k; i++) {
        top[i].id = (int32_t)fuzz_take(&p, end, 4);
        uint32_t b = fuzz_take(&p, end, 4);
        memcpy(&top[i].logprob, &b, sizeof b);
    }
    char *text = fuzz_cstr(p, (size_t)(end - p));
    for (int with_tok = 0; with_tok < 2; with_tok++) {
        json_t *res = NULL;
        char *ef = NULL;
        al_err e = al_intrinsic_parse(in, text, toks, n, with_tok ? top : NULL, with_tok ? k : 0,
                                      with_tok ? fuzz_tok : NULL, &res, &ef);
        if (!res || (e != AL_OK && !ef))
            abort(); /* documented: a result object always, an error message with every error */
        char *js = json_dumps(res, JSON_COMPACT);
        if (!js)
            abort(); /* the result must serialise (no NaN / infinity in it) */
        free(js);
        json_decref(res);
        free(ef);
    }
    free(text);
    return 0;
}
