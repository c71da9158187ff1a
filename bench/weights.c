/* weights.c (bench): f32 vs bf16 vs int8 matrix weights in one run: prefill and decode tok/s of the
 * engine on one checkpoint (the 85m preset from `alora make-model`, or a random 85m-shaped model),
 * at the thread counts given, with each format's ratio to f32 measured side by side. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_util.h"
#include "common/model/model.h"
#include "engine/engine.h"
#include "kernels/kernels.h"

#define N_FMT 3
static const char *const fmt_names[N_FMT] = {"f32", "bf16", "int8"};

typedef struct fmt_run {
    const al_ops *ops;
    al_model *m; /* f32: the host model; others: a config-only view */
    void *buf;   /* backend weights (bf16 / int8) */
    al_weights w;
    size_t bytes;
} fmt_run;

static void fail(const char *what)
{
    fprintf(stderr, "bench_weights: %s: %s\n", what, al_errmsg());
    exit(1);
}

static void fmt_open(fmt_run *r, int f, const char *dir)
{
    memset(r, 0, sizeof *r);
    r->ops = f == 0 ? al_ops_cpu() : f == 1 ? al_ops_cpu_bf16() : al_ops_cpu_q8();
    if (f == 0) {
        if (al_model_load(dir, &r->m) != AL_OK)
            fail(dir);
        r->bytes = al_weights_layout_bytes(&r->m->cfg);
        return;
    }
    if (al_weights_backend_load(dir, r->ops, NULL, NULL, &r->m, &r->buf) != AL_OK ||
        al_weights_backend_bind(&r->m->cfg, r->ops, r->buf, &r->w) != AL_OK)
        fail(dir);
    r->bytes = al_weights_backend_bytes(&r->m->cfg, r->ops);
}

/* Best-of-reps prefill (n_prompt tokens, one request) and decode (n_decode tokens after 8). */
static void measure(fmt_run *r, const int32_t *prompt, int n_prompt, int n_decode, double *prefill, double *decode)
{
    al_engine *e = NULL;
    al_engine_opts eo = {.max_seqs = 1, .max_batch_tokens = 512, .n_blocks = (n_prompt + n_decode) / 16 + 4,
                         .ops = r->ops, .weights = r->buf ? &r->w : NULL};
    if (al_engine_create(r->m, &eo, &e) != AL_OK)
        fail("engine");
    int32_t id;
    al_request p = {.tokens = prompt, .n_tokens = n_prompt, .adapter = -1, .max_tokens = 1};
    double t0 = al_now();
    al_engine_submit(e, &p, &id);
    al_engine_run(e);
    double t1 = al_now();
    al_engine_release(e, id);
    al_request d = {.tokens = prompt, .n_tokens = 8, .adapter = -1, .max_tokens = n_decode + 1, .ignore_eos = 1};
    al_engine_submit(e, &d, &id);
    al_engine_step(e, NULL); /* prefill + first token */
    double t2 = al_now();
    al_engine_run(e);
    double t3 = al_now();
    al_engine_release(e, id);
    al_engine_free(e);
    *prefill = fmax(*prefill, n_prompt / (t1 - t0));
    *decode = fmax(*decode, n_decode / (t3 - t2));
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_weights MODEL_DIR [THREADS,...] [N_PROMPT] [N_DECODE] [REPS]\n");
        return 2;
    }
    const char *dir = argv[1];
    const char *tl = argc > 2 ? argv[2] : "1,2";
    int n_prompt = argc > 3 ? atoi(argv[3]) : 512, n_decode = argc > 4 ? atoi(argv[4]) : 128;
    int reps = argc > 5 ? atoi(argv[5]) : 3;
    fmt_run runs[N_FMT];
    for (int f = 0; f < N_FMT; f++)
        fmt_open(&runs[f], f, dir);
    const al_model_config *c = &runs[0].m->cfg;
    int32_t *prompt = malloc(sizeof(int32_t) * (size_t)n_prompt);
    for (int i = 0; i < n_prompt; i++)
        prompt[i] = 3 + (i * 37) % (c->vocab_size - 3);
    printf("alora weights bench: %s (hidden %d, %d layers, inter %d, vocab %d), cpu kernels %s, prefill %d "
           "tokens, decode %d tokens, best of %d (formats interleaved)\n",
           c->name, c->hidden_size, c->n_layers, c->intermediate_size, c->vocab_size, al_cpu_isa(), n_prompt,
           n_decode, reps);
    printf("| threads | weights | MiB | prefill tok/s | decode tok/s | prefill / f32 | decode / f32 |\n"
           "|---|---|---|---|---|---|---|\n");
    char buf[64];
    snprintf(buf, sizeof buf, "%s", tl);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        int threads = atoi(tok);
        al_cpu_set_threads(threads);
        double pre[N_FMT] = {0}, dec[N_FMT] = {0};
        for (int rep = 0; rep < reps; rep++)
            for (int f = 0; f < N_FMT; f++)
                measure(&runs[f], prompt, n_prompt, n_decode, &pre[f], &dec[f]);
        for (int f = 0; f < N_FMT; f++) {
            printf("| %d | %s | %.1f | %.1f | %.1f | %.2f | %.2f |\n", threads, fmt_names[f],
                   runs[f].bytes / 1048576.0, pre[f], dec[f], pre[f] / pre[0], dec[f] / dec[0]);
            printf("{\"threads\":%d,\"weights\":\"%s\",\"mib\":%.1f,\"prefill_tok_s\":%.2f,\"decode_tok_s\":%.2f,"
                   "\"prefill_vs_f32\":%.3f,\"decode_vs_f32\":%.3f}\n",
                   threads, fmt_names[f], runs[f].bytes / 1048576.0, pre[f], dec[f], pre[f] / pre[0],
                   dec[f] / dec[0]);
        }
    }
    for (int f = 0; f < N_FMT; f++) {
        if (runs[f].buf) {
            al_weights_unbind(&runs[f].w);
            runs[f].ops->free(runs[f].buf);
        }
        al_model_free(runs[f].m);
    }
    free(prompt);
    return 0;
}
