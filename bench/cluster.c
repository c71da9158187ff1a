/* cluster.c: intrinsic latency through a running cluster (router -> base lease -> worker), aLoRA vs
 * plain LoRA per context length, the RPC overhead of a call (client wall time minus the compute
 * the base and the worker report) against bare NNG round trips, and the TTFT against the floor
 * measured in the same run (weights + KV read once at the measured read bandwidth, plus the
 * few-token FLOPs at the measured sgemm rate). Driven by bench/cluster.sh, which starts the cluster. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/bench_util.h"
#include "common/ipc/rpc.h"
#include "common/stage.h"
#include "common/model/model.h"
#include "kernels/kernels.h"

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return n ? v[n / 2] : 0;
}

typedef struct shot {
    double wall, ttft, compute;
    uint32_t computed, cached;
    bool kept; /* the router used a lease kept from an earlier call: no base round trip */
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
    double t0 = bench_now_ms();
    al_err e = al_rpc_call(c, alora_Method_ROUTER_INVOKE, &q, &r, &m, 300000);
    double t1 = bench_now_ms();
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
    s->kept = r.lease_kept;
    al_pbmem_free(&m);
    return 0;
}

/* The floor of a few-token intrinsic step: bytes read once and FLOPs of n_new tokens over ctx
 * positions of KV (f32), at the read bandwidth (GB/s) and sgemm rate (GFLOP/s) measured here. */
typedef struct floor_model {
    al_model_config c;
    double wbytes, abytes, gbs, gflops; /* weight bytes (as stored), adapter bytes */
} floor_model;

static double floor_ms(const floor_model *f, int ctx, int n_new)
{
    const al_model_config *c = &f->c;
    double H = c->hidden_size, qd = (double)c->n_heads * c->head_dim, kvd = (double)c->n_kv_heads * c->head_dim;
    double lin = c->n_layers * (H * qd * 2 + H * kvd * 2 + 3 * H * c->intermediate_size) + H * c->vocab_size;
    double kv = (double)(ctx + n_new) * c->n_layers * 2 * kvd * sizeof(float);
    double flops = n_new * (2 * lin + 2 * f->abytes / sizeof(float)) +
                   (double)n_new * c->n_layers * 4 * qd * (ctx + n_new);
    return (f->wbytes + f->abytes + kv) / (f->gbs * 1e9) * 1e3 + flops / (f->gflops * 1e9) * 1e3;
}

/* Conversation of ctx tokens (fixed per length: a fresh one per length, no prefix shared) + the
 * invocation. */
static int32_t *conversation(int ctx, const int32_t *inv, int n_inv, int lo, int hi)
{
    int32_t *t = malloc(sizeof(int32_t) * (size_t)(ctx + n_inv));
    if (!t) {
        fprintf(stderr, "bench_cluster: out of memory\n");
        exit(1);
    }
    for (int i = 0; i < ctx; i++)
        t[i] = lo + (int32_t)(((uint64_t)i * 7919u + (uint64_t)ctx * 104729u + (uint64_t)i * i) % (uint64_t)(hi - lo));
    memcpy(t + ctx, inv, sizeof(int32_t) * (size_t)n_inv);
    return t;
}

static const char *met(double v, double bound) { return v <= bound ? "met" : "missed"; }

int main(int argc, char **argv)
{
    const char *url = NULL, *url2 = NULL, *intr = "certainty", *inv_s = "500,501,502", *ctx_s = "256,1024,2040";
    const char *model = NULL, *tsv = NULL, *weights = "auto", *label = "", *ov_out = NULL;
    double bare_us = 0, abytes = 0;
    int reps = 3, lora_reps = -1, ov_reps = 0, max_tokens = 1, vocab_lo = 10, vocab_hi = 490;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--router")) url = argv[i + 1];
        else if (!strcmp(argv[i], "--router2")) url2 = argv[i + 1];
        else if (!strcmp(argv[i], "--intrinsic")) intr = argv[i + 1];
        else if (!strcmp(argv[i], "--inv")) inv_s = argv[i + 1];
        else if (!strcmp(argv[i], "--ctx")) ctx_s = argv[i + 1];
        else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--lora-reps")) lora_reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--ov-reps")) ov_reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--max-tokens")) max_tokens = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--model")) model = argv[i + 1];
        else if (!strcmp(argv[i], "--adapter-bytes")) abytes = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--bare-us")) bare_us = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--tsv")) tsv = argv[i + 1];
        else if (!strcmp(argv[i], "--ov-out")) ov_out = argv[i + 1];
        else if (!strcmp(argv[i], "--weights")) weights = argv[i + 1];
        else if (!strcmp(argv[i], "--label")) label = argv[i + 1];
        else {
            fprintf(stderr, "bench_cluster: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (!url || reps < 1 || ov_reps < 0 || ov_reps > 100000) {
        fprintf(stderr, "usage: bench_cluster --router URL [--intrinsic NAME] [--inv 500,501,502]\n"
                        "                     [--ctx 256,1024,2040] [--reps 3] [--max-tokens 1]\n"
                        "                     [--model DIR --adapter-bytes B] (the floor: its config, the\n"
                        "                     bandwidth and sgemm rate measured here, 1 thread)\n"
                        "                     [--bare-us US] (a bare NNG round trip measured in the same run)\n"
                        "                     [--tsv FILE] (context, median client wall ms of the cached aLoRA call)\n"
                        "                     [--ov-out FILE] (appends each cached call's RPC overhead, us)\n"
                        "                     [--lora-reps N] (plain-LoRA calls per context, default --reps)\n"
                        "                     [--ov-reps N] (N more cached calls at the first context for the\n"
                        "                     RPC overhead; default 0)\n"
                        "                     [--router2 URL] (a second cluster: the --ov-reps calls alternate\n"
                        "                     between the two, the overhead of each printed: a paired A/B)\n"
                        "                     [--weights auto|f32|bf16|int8] (base.weights: the floor's weight bytes)\n"
                        "                     [--label S] (appended to the RATIO names)\n");
        return 2;
    }
    floor_model fm = {.abytes = abytes};
    if (model) {
        if (al_config_load(model, &fm.c) != AL_OK) {
            fprintf(stderr, "bench_cluster: --model %s: %s\n", model, al_errmsg());
            return 1;
        }
        const al_model_config *c = &fm.c;
        double H = c->hidden_size, qd = (double)c->n_heads * c->head_dim, kvd = (double)c->n_kv_heads * c->head_dim;
        /* bytes per matrix parameter in memory: int8 counts 1 (its per-row scales left out: a lower floor) */
        double bpp = !strcmp(weights, "int8") ? 1.0 : !strcmp(weights, "bf16") ? 2.0 : !strcmp(weights, "f32") ? 4.0
                                                                                 : (double)al_dtype_size(c->dtype);
        fm.wbytes = (c->n_layers * (H * qd * 2 + H * kvd * 2 + 3 * H * c->intermediate_size + 2 * H) +
                     H * c->vocab_size + H) * bpp;
        al_cpu_set_threads(1);
        float sink;
        fm.gbs = bench_read_gbs((size_t)512 << 20, 1.0, &sink);
        fm.gflops = bench_sgemm_gflops(512, c->hidden_size, c->intermediate_size, 1.0);
        printf("Floor inputs (measured now, 1 thread): read bandwidth %.2f GB/s (sum over 512 MiB), sgemm "
               "512x%dx%d %.1f GFLOP/s; weights %.1f MB in memory (%s) + adapter %.2f MB; KV f32 %.1f KB/token.\n\n", fm.gbs, c->hidden_size, c->intermediate_size, fm.gflops, fm.wbytes / 1e6,
               strcmp(weights, "auto") ? weights : al_dtype_name(c->dtype), fm.abytes / 1e6, c->n_layers * 2 * kvd * 4 / 1e3);
        volatile float keep = sink; /* the sum must be computed */
        (void)keep;
    }
    FILE *tf = tsv ? fopen(tsv, "w") : NULL;
    double floor_ratio[64];
    int n_ctx = 1;
    for (const char *p = ctx_s; *p; p++)
        n_ctx += *p == ',';
    double *ov_all = malloc(sizeof(double) * ((size_t)n_ctx * (size_t)reps + (size_t)ov_reps + 1));
    if (!ov_all) {
        fprintf(stderr, "bench_cluster: out of memory\n");
        return 1;
    }
    int n_ov = 0, n_fr = 0, fr_ctx[64], n_kept = 0;
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
    printf("| context | aLoRA ttft, cold prefix (ms) | aLoRA ttft, cached prefix (ms) | client wall, cached (ms) | "
           "floor (ms) | plain LoRA ttft (ms) | speedup (cached) | computed aLoRA / LoRA | RPC overhead per call (ms) |\n");
    printf("|--------:|-----------------------------:|-------------------------------:|-------------------------:|"
           "-----------:|---------------------:|-----------------:|----------------------:|---------------------------:|\n");
    int rc = 0;
    for (char *p = (char *)ctx_s; *p;) {
        int ctx = (int)strtol(p, &p, 10);
        if (*p == ',') p++;
        int n = ctx + n_inv;
        int32_t *t = conversation(ctx, inv, n_inv, vocab_lo, vocab_hi);
        shot cold, s;
        int nl = lora_reps >= 0 ? lora_reps : reps; /* plain-LoRA calls (0: skipped) */
        double *wa = calloc((size_t)reps, sizeof(double)), *wl = calloc((size_t)AL_MAX(nl, 1), sizeof(double));
        double *ov = calloc((size_t)reps, sizeof(double)), *ww = calloc((size_t)reps, sizeof(double));
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
            ww[k] = s.wall;
            ov[k] = s.wall - s.compute;
            ov_all[n_ov++] = ov[k];
            n_kept += s.kept;
            ca = s.computed;
        }
        for (int k = 0; k < nl; k++) {
            if (call(c, intr, t, n, alora_InvokeMode_MODE_LORA, max_tokens, &s) != 0) {
                rc = 1;
                goto next;
            }
            wl[k] = s.ttft;
            cl = s.computed;
        }
        double ma = median(wa, reps), ml = nl ? median(wl, nl) : 0, mw = median(ww, reps);
        double fl = model ? floor_ms(&fm, n - (int)ca, (int)ca) : 0;
        char comp[48], fls[32] = "-";
        snprintf(comp, sizeof comp, "%u / %u", ca, cl);
        if (model)
            snprintf(fls, sizeof fls, "%.1f", fl);
        printf("| %7d | %28.1f | %30.1f | %24.1f | %10s | %20.1f | %15.1fx | %21s | %26.2f |\n", n, cold.ttft, ma,
               mw, fls, ml, ma > 0 ? ml / ma : 0, comp, median(ov, reps));
        if (model && n_fr < 64) {
            fr_ctx[n_fr] = n;
            floor_ratio[n_fr++] = mw / fl;
        }
        if (tf)
            fprintf(tf, "%d\t%.3f\n", n, mw);
        fflush(stdout);
    next:
        free(t);
        free(wa);
        free(wl);
        free(ov);
        free(ww);
        if (rc)
            break;
    }
    if (tf)
        fclose(tf);
    al_rpc_client *c2 = NULL;
    if (rc == 0 && url2 && al_rpc_client_open(&c2, url2, &co) != AL_OK) {
        fprintf(stderr, "bench_cluster: %s\n", al_errmsg());
        rc = 1;
    }
    if (rc == 0 && ov_reps > 0) { /* more cached calls for the overhead: at the first context */
        int ctx = atoi(ctx_s), n = ctx + n_inv, n_b = 0;
        int32_t *t = conversation(ctx, inv, n_inv, vocab_lo, vocab_hi);
        double *ov_b = calloc((size_t)ov_reps, sizeof(double));
        shot s;
        if (c2 && call(c2, intr, t, n, alora_InvokeMode_MODE_ALORA, max_tokens, &s) != 0) /* its cold call */
            rc = 1;
        for (int k = 0; k < ov_reps && rc == 0 && ov_b; k++) {
            if (call(c, intr, t, n, alora_InvokeMode_MODE_ALORA, max_tokens, &s) != 0) {
                rc = 1;
                break;
            }
            ov_all[n_ov++] = s.wall - s.compute;
            n_kept += s.kept;
            if (c2) { /* B right after A: the same conditions */
                if (call(c2, intr, t, n, alora_InvokeMode_MODE_ALORA, max_tokens, &s) != 0) {
                    rc = 1;
                    break;
                }
                ov_b[n_b++] = s.wall - s.compute;
            }
        }
        if (c2 && n_b > 0) {
            double *a = malloc(sizeof(double) * (size_t)ov_reps);
            if (a) {
                memcpy(a, ov_all + n_ov - n_b, sizeof(double) * (size_t)n_b);
                double ma = median(a, n_b), mb = median(ov_b, n_b);
                printf("paired A/B, %d calls each, alternating: RPC overhead median A (--router) %.3f ms "
                       "[p25 %.3f, p75 %.3f], B (--router2) %.3f ms [p25 %.3f, p75 %.3f]\n", n_b, ma, a[n_b / 4],
                       a[3 * n_b / 4], mb, ov_b[n_b / 4], ov_b[3 * n_b / 4]);
                free(a);
            }
        }
        free(ov_b);
        free(t);
    }
    al_rpc_client_close(c2);
    FILE *of = ov_out ? fopen(ov_out, "a") : NULL;
    for (int i = 0; of && i < n_ov; i++)
        fprintf(of, "%.1f\n", ov_all[i] * 1e3);
    if (of)
        fclose(of);
    if (rc == 0) {
        printf("\n");
        for (int i = 0; i < n_fr; i++)
            printf("RATIO intrinsic TTFT (client wall, cached prefix) / floor, %d tokens%s: %.2f (target <= 2.00) %s\n",
                   fr_ctx[i], label, floor_ratio[i], met(floor_ratio[i], 2.0));
        double ov = median(ov_all, n_ov); /* sorts ov_all */
        printf("RPC overhead per cached call (client wall - the compute the base and worker report), %d calls: "
               "median %.3f ms, p25 %.3f, p75 %.3f, p90 %.3f\n", n_ov, ov, ov_all[n_ov / 4], ov_all[3 * n_ov / 4],
               ov_all[9 * n_ov / 10]);
        printf("RATIO RPC overhead per intrinsic call%s, ms: %.2f (target <= 0.50) %s\n", label, ov, met(ov, 0.5));
        if (bare_us > 0 && n_ov > 0) {
            /* the round trips on a call's critical path: client->router and router->worker, plus
             * router->base BASE_LEASE unless the router reused a kept lease (the unlease goes back
             * off the path, after the answer) */
            double hops = 2 + (double)(n_ov - n_kept) / n_ov, r = ov * 1e3 / (hops * bare_us);
            printf("(round trips per call on the critical path: %.2f of %.0f us each; %d of %d cached calls used a "
                   "kept lease)\n", hops, bare_us, n_kept, n_ov);
            printf("RATIO RPC overhead per intrinsic call / its bare NNG round trips%s: %.2f (target <= 1.50) %s\n", label, r,
                   met(r, 1.5));
        }
    }
    free(ov_all);
    al_rpc_client_close(c);
    return rc;
}
