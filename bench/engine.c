/* engine.c (bench): prefill and decode speed of the engine on a random model with the 85m preset
 * shape, next to the sgemm GFLOP/s and memory-copy GB/s measured in the same run. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_util.h"
#include "common/model/model.h"
#include "engine/engine.h"
#include "kernels/kernels.h"

static double weight_params(const al_model_config *c)
{
    double H = c->hidden_size, qd = (double)c->n_heads * c->head_dim, kvd = (double)c->n_kv_heads * c->head_dim;
    double layer = H * qd * 2 + H * kvd * 2 + 3.0 * H * c->intermediate_size;
    return layer * c->n_layers;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 0;
    int n_prompt = argc > 2 ? atoi(argv[2]) : 512;
    int n_decode = argc > 3 ? atoi(argv[3]) : 128;
    const char *wfmt = argc > 4 ? argv[4] : "f32"; /* f32 | bf16 | int8: matrix weights in memory */
    const al_ops *ops = !strcmp(wfmt, "bf16") ? al_ops_cpu_bf16() : !strcmp(wfmt, "int8") ? al_ops_cpu_q8() : al_ops_cpu();
    al_cpu_set_threads(threads);
    threads = al_cpu_threads();
    al_model *m = bench_random_model(768, 12, 12, 12, 2048, 512);
    const al_model_config *c = &m->cfg;

    double sgemm = bench_sgemm_gflops(512, 768, 2048, 1.0);
    double copy = bench_copy_gbs((size_t)256 << 20, 1.0);

    int32_t *prompt = malloc(sizeof(int32_t) * (size_t)n_prompt);
    for (int i = 0; i < n_prompt; i++)
        prompt[i] = 3 + (i * 37) % (c->vocab_size - 3);
    al_engine *e = NULL;
    al_engine_opts eo = {.max_seqs = 1, .max_batch_tokens = 512, .n_blocks = (n_prompt + n_decode) / 16 + 4,
                         .ops = ops};
    if (al_engine_create(m, &eo, &e) != AL_OK) {
        fprintf(stderr, "bench: %s\n", al_errmsg());
        return 1;
    }
    double best_prefill = 1e30, best_decode = 1e30;
    for (int rep = 0; rep < 3; rep++) {
        int32_t id;
        al_request r = {.tokens = prompt, .n_tokens = n_prompt, .adapter = -1, .max_tokens = 1};
        double t0 = al_now();
        al_engine_submit(e, &r, &id);
        al_engine_run(e);
        double t1 = al_now();
        al_engine_release(e, id);
        if (t1 - t0 < best_prefill)
            best_prefill = t1 - t0;
        /* decode: short prompt, n_decode tokens */
        al_request d = {.tokens = prompt, .n_tokens = 8, .adapter = -1, .max_tokens = n_decode + 1,
                        .ignore_eos = 1};
        al_engine_submit(e, &d, &id);
        al_engine_step(e, NULL); /* prefill + first token */
        double t2 = al_now();
        al_engine_run(e);
        double t3 = al_now();
        al_engine_release(e, id);
        if (t3 - t2 < best_decode)
            best_decode = t3 - t2;
    }
    double params = weight_params(c);
    double prefill_tps = n_prompt / best_prefill;
    double prefill_gflops = 2.0 * params * n_prompt / best_prefill * 1e-9;
    double decode_tps = n_decode / best_decode;
    /* bytes of matrix weights streamed per token (the embedding row is negligible; lm_head counts) */
    double bytes_per_tok = (params + (double)c->vocab_size * c->hidden_size) * (double)ops->weight_bytes;
    double decode_gbs = bytes_per_tok * decode_tps * 1e-9;
    printf("alora engine bench: 85m preset shape (hidden %d, %d layers, %d heads, inter %d, vocab %d), %s "
           "weights, %d thread(s)\n",
           c->hidden_size, c->n_layers, c->n_heads, c->intermediate_size, c->vocab_size, wfmt, threads);
    printf("| measure | value | bound (same run) | ratio |\n|---|---|---|---|\n");
    printf("| prefill %d tokens | %.1f tok/s, %.1f GFLOP/s | sgemm 512x768x2048 %.1f GFLOP/s | %.2f |\n", n_prompt,
           prefill_tps, prefill_gflops, sgemm, prefill_gflops / sgemm);
    printf("| decode %d tokens | %.1f tok/s, %.2f GB/s of weights | memcpy %.2f GB/s | %.2f |\n", n_decode,
           decode_tps, decode_gbs, copy, decode_gbs / copy);
    printf("{\"prefill_tok_s\":%.2f,\"prefill_gflops\":%.2f,\"sgemm_gflops\":%.2f,\"prefill_ratio\":%.3f,"
           "\"decode_tok_s\":%.2f,\"decode_gbs\":%.3f,\"copy_gbs\":%.3f,\"decode_ratio\":%.3f,\"threads\":%d,"
           "\"weights\":\"%s\"}\n",
           prefill_tps, prefill_gflops, sgemm, prefill_gflops / sgemm, decode_tps, decode_gbs, copy,
           decode_gbs / copy, threads, wfmt);
    al_engine_free(e);
    al_model_free(m);
    free(prompt);
    return 0;
}
