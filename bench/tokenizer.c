/* tokenizer.c (bench): tokenizer encode/decode throughput in MB/s on one core. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/text/tokenizer.h"
#include "common/util.h"

/* usage: bench_tokenizer [TOKENIZER(.json|DIR) [TEXT_FILE [MB]]]
 * Defaults: the byte-level Llama-3-style fixture tokenizer and its English training text,
 * repeated to 8 MB, encoded in 4 KB documents (as a server sees prompts). */
int main(int argc, char **argv)
{
    const char *tok_path = argc > 1 ? argv[1] : "tests/fixtures/tokenizer/bl_llama3.tokenizer.json";
    const char *text_path = argc > 2 ? argv[2] : "tests/fixtures/tokenizer/train_corpus.txt";
    double mb = argc > 3 ? atof(argv[3]) : 8.0;
    al_tokenizer *t;
    double t0 = al_now();
    if (al_tokenizer_load(tok_path, &t) != AL_OK) {
        fprintf(stderr, "bench_tokenizer: %s\n", al_errmsg());
        return 1;
    }
    double load_s = al_now() - t0;
    char *src;
    size_t sl;
    if (ali_read_file(text_path, (size_t)1 << 30, &src, &sl) != AL_OK || sl == 0) {
        fprintf(stderr, "bench_tokenizer: %s\n", al_errmsg());
        return 1;
    }
    size_t total = (size_t)(mb * 1e6);
    char *text = malloc(total + 1);
    for (size_t i = 0; i < total; i += sl)
        memcpy(text + i, src, AL_MIN(sl, total - i));
    text[total] = 0;
    /* 4 KB chunks cut at a space so no word or character is split */
    size_t chunk = 4096, n_tok = 0;
    t0 = al_now();
    for (size_t off = 0; off < total;) {
        size_t end = AL_MIN(total, off + chunk);
        while (end < total && text[end] != ' ')
            end++;
        int32_t *ids, n;
        if (al_tokenizer_encode(t, text + off, end - off, 0, &ids, &n) != AL_OK) {
            fprintf(stderr, "bench_tokenizer: %s\n", al_errmsg());
            return 1;
        }
        n_tok += (size_t)n;
        free(ids);
        off = end;
    }
    double enc_s = al_now() - t0;
    /* one large document */
    int32_t *ids, n;
    t0 = al_now();
    if (al_tokenizer_encode(t, text, total, 0, &ids, &n) != AL_OK) {
        fprintf(stderr, "bench_tokenizer: %s\n", al_errmsg());
        return 1;
    }
    double big_s = al_now() - t0;
    t0 = al_now();
    char *dec;
    size_t dl;
    if (al_tokenizer_decode(t, ids, n, 0, &dec, &dl) != AL_OK) {
        fprintf(stderr, "bench_tokenizer: %s\n", al_errmsg());
        return 1;
    }
    double dec_s = al_now() - t0;
    printf("tokenizer %s (load %.3f s)\n", tok_path, load_s);
    printf("encode 4KB docs: %.1f MB/s (%zu tokens, %.2f bytes/token)\n", total / 1e6 / enc_s,
           n_tok, (double)total / (double)n_tok);
    printf("encode one %.0f MB doc: %.1f MB/s\n", total / 1e6, total / 1e6 / big_s);
    printf("decode: %.1f MB/s\n", dl / 1e6 / dec_s);
    free(dec);
    free(ids);
    free(text);
    free(src);
    al_tokenizer_free(t);
    return 0;
}
