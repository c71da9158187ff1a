/* batch.c: intrinsic calls/s through a running cluster with N concurrent closed-loop clients (one
 * conversation each, its prefix cached at the base after a warm-up call), for bench/batch.sh, which
 * runs it against a worker that batches concurrent calls and one that does not. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/bench_util.h"
#include "common/ipc/rpc.h"

typedef struct client {
    const char *url, *intr;
    int32_t *toks; /* [n] conversation + invocation tokens */
    int n, calls, max_tokens, id, cold, ctx, seed;
    double *lat;   /* [calls] ms */
    int failed;
    double sum_router_ms, sum_queue_ms, sum_batch; /* router's total and queue time, worker batch size */
    pthread_barrier_t *go;
} client;

static int one_call(al_rpc_client *c, client *k, double *ms)
{
    alora_InvokeRequest q = alora_InvokeRequest_init_zero;
    alora_InvokeReply r;
    al_pbmem m = AL_PBMEM_INIT;
    snprintf(q.intrinsic, sizeof q.intrinsic, "%s", k->intr);
    q.mode = alora_InvokeMode_MODE_ALORA;
    q.max_tokens = (uint32_t)k->max_tokens;
    q.top_logprobs = 1;
    q.sampling.ignore_eos = true;
    al_pb_ref_i32(&q.tokens, &m, k->toks, (size_t)k->n);
    double t0 = bench_now_ms();
    al_err e = al_rpc_call(c, alora_Method_ROUTER_INVOKE, &q, &r, &m, 600000);
    *ms = bench_now_ms() - t0;
    if (e != AL_OK)
        fprintf(stderr, "bench_batch: client %d: %s: %s\n", k->id, al_strerror(e), al_errmsg());
    else {
        k->sum_router_ms += r.timings.total_ms;
        k->sum_queue_ms += r.timings.queue_ms;
        k->sum_batch += r.timings.batch_size;
    }
    al_pbmem_free(&m);
    return e == AL_OK ? 0 : -1;
}

static void *client_main(void *arg)
{
    client *k = arg;
    al_rpc_client *c = NULL;
    al_rpc_client_opts co;
    al_rpc_client_opts_default(&co);
    co.connect_wait_ms = 5000;
    double ms;
    if (al_rpc_client_open(&c, k->url, &co) != AL_OK || one_call(c, k, &ms) != 0) /* warm: prefix cached */
        k->failed = 1;
    k->sum_router_ms = k->sum_queue_ms = k->sum_batch = 0;
    pthread_barrier_wait(k->go);
    for (int i = 0; i < k->calls && !k->failed; i++) {
        if (k->cold) /* a new conversation every call: the base prefills it (no cached prefix) */
            for (int t = 0; t < k->ctx; t++)
                k->toks[t] = 10 + (int32_t)(((uint64_t)t * 7919u + (uint64_t)(k->seed * 64 + k->id * k->calls + i + 17) * 104729u +
                                                 (uint64_t)t * t) % 480u);
        if (one_call(c, k, &k->lat[i]) != 0)
            k->failed = 1;
    }
    if (c)
        al_rpc_client_close(c);
    return NULL;
}

int main(int argc, char **argv)
{
    const char *url = NULL, *intr = "certainty", *inv_s = "500,501,502";
    int clients = 8, calls = 8, ctx = 256, max_tokens = 4, cold = 0, seed = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--router")) url = argv[i + 1];
        else if (!strcmp(argv[i], "--intrinsic")) intr = argv[i + 1];
        else if (!strcmp(argv[i], "--inv")) inv_s = argv[i + 1];
        else if (!strcmp(argv[i], "--clients")) clients = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--calls")) calls = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--ctx")) ctx = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--max-tokens")) max_tokens = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--cold")) cold = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seed")) seed = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "bench_batch: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (!url || clients < 1 || clients > 256 || calls < 1 || ctx < 1 || ctx > 100000 || max_tokens < 1) {
        fprintf(stderr, "usage: bench_batch --router URL [--intrinsic NAME] [--inv 500,501,502] [--clients 8]\n"
                        "                   [--calls 8 (per client)] [--ctx 256] [--max-tokens 4]\n"
                        "                   [--cold 1: a new conversation every call, prefilled by the base]\n"
                        "                   [--seed S: which new conversations (--cold; a new S per run, clients x calls <= 64)]\n");
        return 2;
    }
    int32_t inv[64];
    int n_inv = 0;
    for (char *p = (char *)inv_s; *p && n_inv < 64;) {
        inv[n_inv++] = (int32_t)strtol(p, &p, 10);
        if (*p == ',') p++;
    }
    client *ks = calloc((size_t)clients, sizeof *ks);
    pthread_t *th = calloc((size_t)clients, sizeof *th);
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, (unsigned)clients + 1);
    for (int j = 0; j < clients; j++) {
        client *k = &ks[j];
        k->url = url;
        k->intr = intr;
        k->id = j;
        k->n = ctx + n_inv;
        k->calls = calls;
        k->max_tokens = max_tokens;
        k->cold = cold;
        k->seed = seed;
        k->ctx = ctx;
        k->go = &go;
        k->toks = malloc(sizeof(int32_t) * (size_t)k->n);
        k->lat = calloc((size_t)calls, sizeof(double));
        for (int i = 0; i < ctx; i++) /* one conversation per client (and seed): no prefix shared between them */
            k->toks[i] = 10 + (int32_t)(((uint64_t)i * 7919u + (uint64_t)(j + 1 + 100 * seed) * 104729u +
                                         (uint64_t)i * i * (j + 3)) % 480u);
        memcpy(k->toks + ctx, inv, sizeof(int32_t) * (size_t)n_inv);
        pthread_create(&th[j], NULL, client_main, k);
    }
    pthread_barrier_wait(&go);
    double t0 = bench_now_ms();
    for (int j = 0; j < clients; j++)
        pthread_join(th[j], NULL);
    double wall = bench_now_ms() - t0;
    int failed = 0, n = 0;
    double s_router = 0, s_queue = 0, s_batch = 0;
    double *all = calloc((size_t)clients * calls, sizeof(double));
    for (int j = 0; j < clients; j++) {
        failed |= ks[j].failed;
        s_router += ks[j].sum_router_ms;
        s_queue += ks[j].sum_queue_ms;
        s_batch += ks[j].sum_batch;
        for (int i = 0; i < calls; i++)
            all[n++] = ks[j].lat[i];
        free(ks[j].toks);
        free(ks[j].lat);
    }
    qsort(all, (size_t)n, sizeof *all, bench_cmp_double);
    if (!failed)
        printf("clients %d calls %d ctx %d max_tokens %d wall_s %.3f calls_per_s %.3f p50_ms %.1f p99_ms %.1f "
               "router_total_ms %.1f router_queue_ms %.1f worker_batch %.2f\n",
               clients, n, ctx, max_tokens, wall / 1e3, n / (wall / 1e3), all[n / 2], all[(n * 99) / 100],
               s_router / n, s_queue / n, s_batch / n);
    pthread_barrier_destroy(&go);
    free(all);
    free(ks);
    free(th);
    return failed;
}
