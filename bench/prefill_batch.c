/* prefill_batch.c (bench): the base's case: prefills of N different conversations submitted at once
 * (one engine: continuous batching stacks their chunks into shared steps up to max_batch_tokens)
 * vs one after another, and the worker's case: N intrinsic calls of a few rows each over a leased
 * prefix, stacked (max_shared_rows 8 / unlimited) vs one at a time; 85m preset shape, same run. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_util.h"
#include "common/model/model.h"
#include "engine/engine.h"
#include "kernels/kernels.h"

static void toks(int32_t *t, int n, int conv)
{
    for (int i = 0; i < n; i++)
        t[i] = 10 + (int32_t)(((uint64_t)i * 7919u + (uint64_t)conv * 104729u + (uint64_t)i * i) % 480u);
}

/* N prefills of n tokens (1 generated token each): together (batched = 1) or one by one. Seconds;
 * *steps = forward steps. prefix / n_prefix: a read-only prefix (the worker case), act = n_prefix. */
static double run(const al_model *m, int N, int n, int batched, int budget, int shared_rows, const al_kv_seg *prefix,
                  int *steps, int reps)
{
    double best = 1e30;
    for (int rep = 0; rep < reps; rep++) {
        al_engine *e = NULL;
        al_engine_opts o = {.block_size = 16, .n_blocks = 4096, .max_seqs = 64, .max_batch_tokens = budget,
                            .max_shared_rows = shared_rows, .prefix_cache = 0};
        if (al_engine_create(m, &o, &e) != AL_OK) {
            fprintf(stderr, "bench: %s\n", al_errmsg());
            exit(1);
        }
        int32_t *t = malloc(sizeof(int32_t) * (size_t)n * N);
        double t0 = al_now();
        for (int k = 0; k < N; k++) {
            toks(t + (size_t)k * n, n, k + 1);
            al_request r = {.tokens = t + (size_t)k * n, .n_tokens = n, .adapter = -1, .max_tokens = 1,
                            .ignore_eos = 1};
            if (prefix)
                r.prefix = prefix[k];
            int32_t id;
            if (al_engine_submit(e, &r, &id) != AL_OK) {
                fprintf(stderr, "bench: %s\n", al_errmsg());
                exit(1);
            }
            if (!batched)
                al_engine_run(e);
        }
        al_engine_run(e);
        double dt = al_now() - t0;
        al_engine_stats st;
        al_engine_stats_get(e, &st);
        *steps = (int)st.steps;
        best = dt < best ? dt : best;
        free(t);
        al_engine_free(e);
    }
    return best;
}

int main(int argc, char **argv)
{
    int reps = argc > 1 ? atoi(argv[1]) : 2;
    int N = argc > 2 ? atoi(argv[2]) : 8;
    int ctx = argc > 3 ? atoi(argv[3]) : 256;
    if (reps < 1 || N < 1 || N > 64 || ctx < 16 || ctx > 2048) {
        fprintf(stderr, "usage: bench_prefill_batch [reps 2] [conversations 8] [tokens 256]\n");
        return 2;
    }
    al_cpu_set_threads(1);
    al_model *m = bench_random_model(768, 12, 12, 12, 2048, 512);
    printf("85m preset shape (f32), 1 thread, best of %d; %d conversations.\n\n", reps, N);
    printf("| case | rows per call | one at a time (ms) | together (ms) | steps alone / together | together / alone speed |\n");
    printf("|--|--:|--:|--:|--|--:|\n");
    int s1, s2;
    /* base: N new conversations of ctx tokens, budget 512 */
    double a = run(m, N, ctx, 0, 512, 0, NULL, &s1, reps), b = run(m, N, ctx, 1, 512, 0, NULL, &s2, reps);
    printf("| base prefill, max_batch_tokens 512 | %d | %.0f | %.0f | %d / %d | %.2f |\n", ctx, a * 1e3, b * 1e3, s1, s2,
           a / b);
    /* base: short turns appended (32 tokens each): several per step */
    a = run(m, N, 32, 0, 512, 0, NULL, &s1, reps);
    b = run(m, N, 32, 1, 512, 0, NULL, &s2, reps);
    printf("| base prefill of short turns | 32 | %.0f | %.0f | %d / %d | %.2f |\n", a * 1e3, b * 1e3, s1, s2, a / b);
    /* worker: N calls of 3 rows over a leased prefix of ctx tokens (computed by a base engine) */
    al_engine *base = NULL;
    al_engine_opts bo = {.block_size = 16, .n_blocks = 4096, .max_seqs = 64, .max_batch_tokens = 512};
    al_engine_create(m, &bo, &base);
    al_kv_seg seg[64];
    int32_t *pt = malloc(sizeof(int32_t) * (size_t)ctx);
    for (int k = 0; k < N; k++) {
        toks(pt, ctx, 100 + k);
        int32_t id;
        al_request r = {.tokens = pt, .n_tokens = ctx, .adapter = -1, .max_tokens = 0};
        al_engine_submit(base, &r, &id);
        al_engine_run(base);
        al_engine_seq_kv(base, id, &seg[k]);
    }
    for (int rows = 0; rows <= 8; rows += 8) {
        a = run(m, N, 3, 0, 256, rows, seg, &s1, reps);
        b = run(m, N, 3, 1, 256, rows, seg, &s2, reps);
        printf("| worker calls over a %d-token lease, max_shared_rows %d | 3 | %.0f | %.0f | %d / %d | %.2f |\n", ctx,
               rows, a * 1e3, b * 1e3, s1, s2, a / b);
    }
    free(pt);
    al_engine_free(base);
    al_model_free(m);
    return 0;
}
