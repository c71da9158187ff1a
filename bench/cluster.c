/* cluster.c: intrinsic latency through a running cluster (router -> base lease -> worker), aLoRA vs
 * plain LoRA per context length, and the RPC overhead of a call (client wall time minus the compute
 * the base and the worker report). Driven by bench/cluster.sh, which starts the cluster. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/ipc/rpc.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n ? v[n / 2] : 0;
}

typedef struct shot {
    double wall, ttft, compute;
    uint32_t computed, cached;
} shot;

static int call(al_rpc_client *c, const char *intr, const int32_t *t, int n, int mode, int max_tokens, shot *s)
{
    alora_InvokeRequest q = alora_InvokeRequest_init_zero;
    alora_InvokeReply r;
    al_pbmem m = AL_PBMEM_INIT;
    snprintf(q.intrinsic, sizeof q.intrinsic, "%s", intr);
    q.mode = mode;
    q.max_tokens = (uint32_t)max_tokens;
    q.top_logprobs = 1;
    q.sampling.ignore_eos = true;
    al_pb_ref_i32(&q.tokens, &m, t, (size_t)n);
    double t0 = now_ms();
    al_err e = al_rpc_call(c, alora_Method_ROUTER_INVOKE, &q, &r, &m, 300000);
    double t1 = now_ms();
    if (e != AL_OK) {
        fprintf(stderr, "bench_cluster: invoke %s (n=%d, mode %d): %s: %s\n", intr, n, mode, al_strerror(e), al_errmsg());
        al_pbmem_free(&m);
        return -1;
    }
    s->wall = t1 - t0;
    s->ttft = r.timings.ttft_ms;
    s->compute = r.timings.prefill_ms + r.timings.decode_ms;
    s->computed = r.computed_tokens;
    s->cached = r.prefix_cached_tokens;
    al_pbmem_free(&m);
    return 0;
}

int main(int argc, char **argv)
{
    const char *url = NULL, *intr = "certainty", *inv_s = "500,501,502", *ctx_s = "256,1024,2040";
    int reps = 3, max_tokens = 1, vocab_lo = 10, vocab_hi = 490;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--router")) url = argv[i + 1];
        else if (!strcmp(argv[i], "--intrinsic")) intr = argv[i + 1];
        else if (!strcmp(argv[i], "--inv")) inv_s = argv[i + 1];
        else if (!strcmp(argv[i], "--ctx")) ctx_s = argv[i + 1];
        else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--max-tokens")) max_tokens = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "bench_cluster: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (!url || reps < 1) {
        fprintf(stderr, "usage: bench_cluster --router URL [--intrinsic NAME] [--inv 500,501,502]\n"
                        "                     [--ctx 256,1024,2040] [--reps 3] [--max-tokens 1]\n");
        return 2;
    }
    int32_t inv[64];
    int n_inv = 0;
    for (char *p = (char *)inv_s; *p && n_inv < 64;) {
        inv[n_inv++] = (int32_t)strtol(p, &p, 10);
        if (*p == ',') p++;
    }
    al_rpc_client *c;
    al_rpc_client_opts co;
    al_rpc_client_opts_default(&co);
    co.connect_wait_ms = 5000;
    if (al_rpc_client_open(&c, url, &co) != AL_OK) {
        fprintf(stderr, "bench_cluster: %s\n", al_errmsg());
        return 1;
    }
    printf("| context | aLoRA ttft, cold prefix (ms) | aLoRA ttft, cached prefix (ms) | plain LoRA ttft (ms) | "
           "speedup (cached) | computed aLoRA / LoRA | RPC overhead per call (ms) |\n");
    printf("|--------:|-----------------------------:|-------------------------------:|---------------------:|"
           "-----------------:|----------------------:|---------------------------:|\n");
    int rc = 0;
    for (char *p = (char *)ctx_s; *p;) {
        int ctx = (int)strtol(p, &p, 10);
        if (*p == ',') p++;
        int n = ctx + n_inv;
        int32_t *t = malloc(sizeof(int32_t) * (size_t)n);
        for (int i = 0; i < ctx; i++) /* a fresh conversation per length: no prefix shared */
            t[i] = vocab_lo + (int32_t)(((uint64_t)i * 7919u + (uint64_t)ctx * 104729u + (uint64_t)i * i) %
                                        (uint64_t)(vocab_hi - vocab_lo));
        memcpy(t + ctx, inv, sizeof(int32_t) * (size_t)n_inv);
        shot cold, s;
        double *wa = calloc((size_t)reps, sizeof(double)), *wl = calloc((size_t)reps, sizeof(double));
        double *ov = calloc((size_t)reps, sizeof(double));
        uint32_t ca = 0, cl = 0;
        if (call(c, intr, t, n, alora_InvokeMode_MODE_ALORA, max_tokens, &cold) != 0) {
            rc = 1;
            goto next;
        }
        for (int k = 0; k < reps; k++) {
            if (call(c, intr, t, n, alora_InvokeMode_MODE_ALORA, max_tokens, &s) != 0) {
                rc = 1;
                goto next;
            }
            wa[k] = s.ttft;
            ov[k] = s.wall - s.compute;
            ca = s.computed;
        }
        for (int k = 0; k < reps; k++) {
            if (call(c, intr, t, n, alora_InvokeMode_MODE_LORA, max_tokens, &s) != 0) {
                rc = 1;
                goto next;
            }
            wl[k] = s.ttft;
            cl = s.computed;
        }
        double ma = median(wa, reps), ml = median(wl, reps);
        char comp[48];
        snprintf(comp, sizeof comp, "%u / %u", ca, cl);
        printf("| %7d | %28.1f | %30.1f | %20.1f | %15.1fx | %21s | %26.2f |\n", n, cold.ttft, ma, ml,
               ma > 0 ? ml / ma : 0, comp, median(ov, reps));
        fflush(stdout);
    next:
        free(t);
        free(wa);
        free(wl);
        free(ov);
        if (rc)
            break;
    }
    al_rpc_client_close(c);
    return rc;
}
