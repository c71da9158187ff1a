/* rpc.c: round-trip latency of bare NNG req/rep versus the framed nanopb RPC (common/ipc/rpc), ipc and tcp. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>

#include "bench/bench_util.h"
#include "common/ipc/rpc.h"

enum { WARMUP = 200, DEFAULT_ITERS = 5000 };

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static void report(const char *transport, const char *what, double *t, int n)
{
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += t[i];
    qsort(t, (size_t)n, sizeof *t, bench_cmp_double);
    printf("| %-5s | %-34s | %8.1f | %8.1f | %8.1f |\n", transport, what, sum / n, t[n / 2],
           t[(int)((double)n * 0.99)]);
    fflush(stdout);
}

/* ---- bare NNG: REP echo loop on its own thread, synchronous REQ client -------------------- */

static void *bare_server(void *arg)
{
    nng_socket s = *(nng_socket *)arg;
    for (;;) {
        nng_msg *m;
        if (nng_recvmsg(s, &m, 0) != 0)
            return NULL;
        if (nng_sendmsg(s, m, 0) != 0)
            nng_msg_free(m);
    }
}

static void bench_bare(const char *transport, const char *url, size_t size, int iters, double *t)
{
    nng_socket rep, req;
    nng_listener l;
    char bound[256];
    snprintf(bound, sizeof bound, "%s", url);
    if (nng_rep0_open(&rep) || nng_listener_create(&l, rep, url) || nng_listener_start(l, 0)) {
        fprintf(stderr, "bare listen %s failed\n", url);
        exit(1);
    }
    nng_sockaddr sa;
    if (strncmp(url, "tcp", 3) == 0 && nng_listener_get_addr(l, NNG_OPT_LOCADDR, &sa) == 0) {
        uint16_t p = sa.s_in.sa_port;
        snprintf(bound, sizeof bound, "tcp://127.0.0.1:%u", (unsigned)(uint16_t)((p >> 8) | (p << 8)));
    }
    pthread_t th;
    pthread_create(&th, NULL, bare_server, &rep);
    if (nng_req0_open(&req) || nng_dial(req, bound, NULL, 0)) {
        fprintf(stderr, "bare dial %s failed\n", bound);
        exit(1);
    }
    nng_socket_set_ms(req, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
    char *buf = calloc(1, size);
    for (int i = -WARMUP; i < iters; i++) {
        double t0 = now_us();
        nng_msg *m;
        nng_msg_alloc(&m, size);
        memcpy(nng_msg_body(m), buf, size);
        if (nng_sendmsg(req, m, 0) != 0 || nng_recvmsg(req, &m, 0) != 0) {
            fprintf(stderr, "bare round trip failed\n");
            exit(1);
        }
        nng_msg_free(m);
        if (i >= 0)
            t[i] = now_us() - t0;
    }
    free(buf);
    nng_close(req);
    nng_close(rep);
    pthread_join(th, NULL);
    char what[64];
    snprintf(what, sizeof what, "bare nng req/rep, %zu B", size);
    report(transport, what, t, iters);
}

/* ---- framed RPC -------------------------------------------------------------------------- */

static al_err h_health(al_rpc_job *job, const void *req, void *rep, void *user)
{
    alora_HealthReply *r = rep;
    r->health = alora_Health_HEALTH_OK;
    r->pid = (uint32_t)getpid();
    return AL_OK;
}

static al_err h_append(al_rpc_job *job, const void *req, void *rep, void *user)
{
    const alora_SeqAppendRequest *rq = req;
    alora_SeqAppendReply *r = rep;
    const int32_t *t;
    r->n_tokens = (uint32_t)al_pb_i32(&rq->tokens, &t);
    return AL_OK;
}

static void bench_rpc(const char *transport, const char *url, int iters, double *t)
{
    al_rpc_server *s;
    al_rpc_client *c;
    char bound[256];
    if (al_rpc_server_new(&s, NULL) || al_rpc_server_handle(s, alora_Method_BASE_HEALTH, h_health, NULL) ||
        al_rpc_server_handle(s, alora_Method_BASE_SEQ_APPEND, h_append, NULL) ||
        al_rpc_server_listen(s, url, bound, sizeof bound) ||
        al_rpc_client_open(&c, bound, &(al_rpc_client_opts){.dial_blocking = true})) {
        fprintf(stderr, "rpc setup %s failed: %s\n", url, al_errmsg());
        exit(1);
    }
    for (int i = -WARMUP; i < iters; i++) {
        double t0 = now_us();
        alora_HealthReply hr;
        al_pbmem m = AL_PBMEM_INIT;
        if (al_rpc_call(c, alora_Method_BASE_HEALTH, &(alora_Empty){0}, &hr, &m, 5000) != AL_OK) {
            fprintf(stderr, "rpc call failed: %s\n", al_errmsg());
            exit(1);
        }
        al_pbmem_free(&m);
        if (i >= 0)
            t[i] = now_us() - t0;
    }
    report(transport, "rpc BaseHealth (framed nanopb)", t, iters);

    enum { NTOK = 4096 };
    int32_t *tok = malloc(NTOK * sizeof *tok);
    for (int i = 0; i < NTOK; i++)
        tok[i] = (i * 7919) % 128256;
    for (int i = -WARMUP; i < iters; i++) {
        double t0 = now_us();
        al_pbmem m = AL_PBMEM_INIT;
        alora_SeqAppendRequest rq = alora_SeqAppendRequest_init_zero;
        alora_SeqAppendReply rp;
        al_pb_ref_i32(&rq.tokens, &m, tok, NTOK);
        if (al_rpc_call(c, alora_Method_BASE_SEQ_APPEND, &rq, &rp, &m, 5000) != AL_OK || rp.n_tokens != NTOK) {
            fprintf(stderr, "rpc call failed: %s\n", al_errmsg());
            exit(1);
        }
        al_pbmem_free(&m);
        if (i >= 0)
            t[i] = now_us() - t0;
    }
    free(tok);
    report(transport, "rpc BaseSeqAppend, 4096 tokens", t, iters);
    al_rpc_client_close(c);
    al_rpc_server_close(s);
}

int main(int argc, char **argv)
{
    int iters = argc > 1 ? atoi(argv[1]) : DEFAULT_ITERS;
    if (iters <= 0)
        iters = DEFAULT_ITERS;
    double *t = malloc((size_t)iters * sizeof *t);
    char ipc[128];
    printf("round trips: %d (after %d warm-up), client and server threads in one process; µs\n\n", iters, WARMUP);
    printf("| %-5s | %-34s | %8s | %8s | %8s |\n", "xport", "what", "mean", "p50", "p99");
    printf("|-------|------------------------------------|----------|----------|----------|\n");
    for (int k = 0; k < 2; k++) {
        const char *tr = k == 0 ? "ipc" : "tcp";
        int seq = 0;
#define URL() (k == 0 ? (snprintf(ipc, sizeof ipc, "ipc:///tmp/alora-bench-rpc-%d-%d.sock", (int)getpid(), seq++), ipc) \
                      : "tcp://127.0.0.1:0")
        bench_bare(tr, URL(), 64, iters, t);
        bench_rpc(tr, URL(), iters, t);
        bench_bare(tr, URL(), 10 * 1024, iters, t);
    }
    free(t);
    return 0;
}
