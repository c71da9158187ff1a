/* gpu.c (bench): the CUDA backend on a random-weight model with Llama-3-8B shapes (bf16 on the GPU):
 * decode weight bandwidth vs a device-to-device memcpy, prefill GFLOP/s vs cuBLAS on the same GEMM
 * shapes, and aLoRA time-to-first-token over a base prefix vs plain-LoRA re-prefill at 4k/16k/32k.
 * Usage: bench_gpu [out.json] [max_ctx]. Exits 77 without a CUDA device. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "common/model/adapter.h"
#include "common/model/model.h"
#include "common/util.h"
#include "engine/engine.h"
#include "kernels/kernels.h"

#ifndef ALORA_HAVE_CUDA
int main(void)
{
    printf("bench_gpu: skipped: this build has no CUDA backend\n");
    return 77;
}
#else
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#define CK(x)                                                                                    \
    do {                                                                                         \
        cudaError_t e_ = (x);                                                                    \
        if (e_ != cudaSuccess) {                                                                 \
            fprintf(stderr, "bench_gpu: %s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
            exit(1);                                                                             \
        }                                                                                        \
    } while (0)

/* --- results, rewritten to the JSON file after every measurement --- */
typedef struct ttft_row {
    int ctx;
    double base_prefill_s, alora_ttft_ms, alora_total_ms, lora_ttft_ms, lora_total_ms;
} ttft_row;

static struct {
    char device[256];
    double copy_gbs, model_build_s, upload_s;
    double decode_ms, decode_bytes, cublas_gflops, cublas_gemm_ms, engine_prefill_gflops, engine_prefill_s;
    ttft_row ttft[8];
    int n_ttft;
} R;
static const char *out_path = "bench_gpu.json";

static void write_json(void)
{
    FILE *f = fopen(out_path, "w");
    if (!f)
        return;
    double dec_gbs = R.decode_ms > 0 ? R.decode_bytes / (R.decode_ms * 1e-3) * 1e-9 : 0;
    fprintf(f, "{\n  \"device\": \"%s\",\n  \"model\": \"random Llama-3-8B shapes, bf16 weights, f32 KV\",\n", R.device);
    fprintf(f, "  \"memcpy_d2d_gbs\": %.1f,\n  \"memcpy_d2d_traffic_gbs\": %.1f,\n", R.copy_gbs, 2 * R.copy_gbs);
    fprintf(f, "  \"model_build_s\": %.2f,\n  \"weight_upload_s\": %.2f,\n", R.model_build_s, R.upload_s);
    fprintf(f, "  \"decode\": {\"ms_per_token\": %.3f, \"weight_bytes_per_token\": %.0f, \"weight_gbs\": %.1f, "
               "\"share_of_copy_traffic\": %.3f, \"share_of_copy_bytes\": %.3f},\n",
            R.decode_ms, R.decode_bytes, dec_gbs, R.copy_gbs > 0 ? dec_gbs / (2 * R.copy_gbs) : 0,
            R.copy_gbs > 0 ? dec_gbs / R.copy_gbs : 0);
    fprintf(f, "  \"prefill\": {\"tokens\": 4096, \"chunk\": 2048, \"engine_s\": %.3f, \"engine_matmul_gflops\": %.0f, "
               "\"cublas_same_shapes_gflops\": %.0f, \"share_of_cublas\": %.3f},\n",
            R.engine_prefill_s, R.engine_prefill_gflops, R.cublas_gflops,
            R.cublas_gflops > 0 ? R.engine_prefill_gflops / R.cublas_gflops : 0);
    fprintf(f, "  \"ttft\": [");
    for (int i = 0; i < R.n_ttft; i++) {
        ttft_row *t = &R.ttft[i];
        fprintf(f, "%s\n    {\"ctx\": %d, \"base_prefill_s\": %.3f, \"alora_ttft_ms\": %.2f, \"alora_4tok_ms\": %.2f, "
                   "\"lora_reprefill_ttft_ms\": %.2f, \"lora_4tok_ms\": %.2f, \"ttft_speedup\": %.1f}",
                i ? "," : "", t->ctx, t->base_prefill_s, t->alora_ttft_ms, t->alora_total_ms, t->lora_ttft_ms,
                t->lora_total_ms, t->alora_ttft_ms > 0 ? t->lora_ttft_ms / t->alora_ttft_ms : 0);
    }
    fprintf(f, "\n  ]\n}\n");
    fclose(f);
}

/* --- random fill on all cores --- */
typedef struct fill_job {
    float *p;
    size_t n;
    float amp;
    uint64_t seed;
} fill_job;

static void *fill_worker(void *arg)
{
    fill_job *j = arg;
    uint64_t x = j->seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < j->n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        j->p[i] = ((float)(x >> 40) * (1.0f / 16777216.0f) - 0.5f) * 2.0f * j->amp;
    }
    return NULL;
}

static void fill(float *p, size_t n, float amp, uint64_t seed)
{
    enum { NT = 16 };
    pthread_t th[NT];
    fill_job jobs[NT];
    size_t per = (n + NT - 1) / NT;
    for (int t = 0; t < NT; t++) {
        size_t a = per * t < n ? per * t : n, b = per * (t + 1) < n ? per * (t + 1) : n;
        jobs[t] = (fill_job){p + a, b - a, amp, seed * 64 + (uint64_t)t};
        pthread_create(&th[t], NULL, fill_worker, &jobs[t]);
    }
    for (int t = 0; t < NT; t++)
        pthread_join(th[t], NULL);
}

static void fill_const(float *p, size_t n, float v)
{
    for (size_t i = 0; i < n; i++)
        p[i] = v;
}

/* The model: a view over an untouched (lazily mapped) buffer; only layer 0, the embedding, the final
 * norm and the LM head are filled, and every layer points at layer 0's host tensors. The upload still
 * gives each layer its own device copy, so the GPU holds (and reads) the full 16 GB. */
static al_model *build_model(void **base_out, size_t *bytes_out)
{
    al_model_config c = {.arch = AL_ARCH_LLAMA, .vocab_size = 128256, .hidden_size = 4096,
                         .intermediate_size = 14336, .n_layers = 32, .n_heads = 32, .n_kv_heads = 8, .head_dim = 128,
                         .max_position_embeddings = 131072, .rms_eps = 1e-5f, .rope_theta = 500000.0f,
                         .rope_llama3 = 1, .rope_factor = 8.0f, .rope_low_freq_factor = 1.0f,
                         .rope_high_freq_factor = 4.0f, .rope_original_max_pos = 8192, .embedding_multiplier = 1.0f,
                         .residual_multiplier = 1.0f, .logits_scaling = 1.0f, .bos_token_id = 128000, .n_eos = 0,
                         .dtype = AL_DT_BF16};
    c.attention_multiplier = 1.0f / sqrtf((float)c.head_dim);
    snprintf(c.name, sizeof c.name, "random-llama3-8b");
    size_t bytes = al_weights_layout_bytes(&c);
    void *base = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    al_model *m = NULL;
    if (base == MAP_FAILED || al_model_view(&c, base, &m) != AL_OK) {
        fprintf(stderr, "bench_gpu: cannot build the model: %s\n", al_errmsg());
        exit(1);
    }
    size_t H = 4096, I = 14336, V = 128256, qd = 4096, kvd = 1024;
    al_layer_weights *l0 = &m->w.layers[0];
    fill(m->w.embed, V * H, 0.05f, 1);
    fill(m->w.lm_head, V * H, 0.02f, 2);
    fill_const(m->w.norm, H, 1.0f);
    fill_const(l0->attn_norm, H, 1.0f);
    fill_const(l0->ffn_norm, H, 1.0f);
    fill(l0->wq, qd * H, 0.02f, 3);
    fill(l0->wk, kvd * H, 0.02f, 4);
    fill(l0->wv, kvd * H, 0.02f, 5);
    fill(l0->wo, H * qd, 0.02f, 6);
    fill(l0->w_gate, I * H, 0.02f, 7);
    fill(l0->w_up, I * H, 0.02f, 8);
    fill(l0->w_down, H * I, 0.01f, 9);
    for (int l = 1; l < c.n_layers; l++)
        m->w.layers[l] = *l0;
    *base_out = base;
    *bytes_out = bytes;
    return m;
}

/* A rank-16 adapter on q, k, v, o (one random A/B per module kind, shared by the layers). */
static al_adapter *build_adapter(const al_model_config *c, const int32_t *inv, int n_inv)
{
    al_adapter *a = calloc(1, sizeof *a);
    snprintf(a->name, sizeof a->name, inv ? "bench-alora" : "bench-lora");
    a->n_layers = c->n_layers;
    a->mods = calloc((size_t)c->n_layers * AL_T_COUNT, sizeof(al_lora_mod));
    a->max_rank = 16;
    int H = c->hidden_size, qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
    int ins[4] = {H, H, H, qd}, outs[4] = {qd, kvd, kvd, H};
    for (int t = 0; t < 4; t++) {
        float *A = malloc(sizeof(float) * 16 * (size_t)ins[t]), *B = malloc(sizeof(float) * 16 * (size_t)outs[t]);
        fill(A, 16 * (size_t)ins[t], 0.02f, 100 + (uint64_t)t);
        fill(B, 16 * (size_t)outs[t], 0.02f, 200 + (uint64_t)t);
        for (int l = 0; l < c->n_layers; l++)
            a->mods[l * AL_T_COUNT + t] = (al_lora_mod){.r = 16, .in = ins[t], .out = outs[t], .scale = 2.0f, .A = A, .B = B};
    }
    if (inv) {
        a->invocation = malloc(sizeof(int32_t) * (size_t)n_inv);
        memcpy(a->invocation, inv, sizeof(int32_t) * (size_t)n_inv);
        a->n_invocation = n_inv;
    }
    return a;
}

static double copy_bandwidth(void)
{
    size_t bytes = (size_t)1 << 30;
    void *a, *b;
    CK(cudaMalloc(&a, bytes));
    CK(cudaMalloc(&b, bytes));
    CK(cudaMemset(a, 1, bytes));
    CK(cudaMemset(b, 2, bytes));
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    float best = 1e30f;
    for (int i = 0; i < 8; i++) {
        CK(cudaEventRecord(e0, 0));
        CK(cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice));
        CK(cudaEventRecord(e1, 0));
        CK(cudaEventSynchronize(e1));
        float ms;
        CK(cudaEventElapsedTime(&ms, e0, e1));
        if (i > 0 && ms < best)
            best = ms;
    }
    CK(cudaFree(a));
    CK(cudaFree(b));
    return (double)bytes / (best * 1e-3) * 1e-9;
}

/* cuBLAS bf16 x bf16 -> f32 GEMMs on the engine's prefill shapes (one layer, M rows). */
static void cublas_baseline(const al_ops *ops, int M, double *gflops, double *ms_out)
{
    int shapes[7][2] = {{4096, 4096}, {1024, 4096}, {1024, 4096}, {4096, 4096}, {14336, 4096}, {14336, 4096}, {4096, 14336}};
    size_t wmax = (size_t)14336 * 4096, xmax = (size_t)M * 14336;
    float *h = malloc(sizeof(float) * (wmax > xmax ? wmax : xmax));
    fill(h, wmax > xmax ? wmax : xmax, 0.05f, 77);
    void *W = ops->weight_upload(h, wmax, 1), *X = ops->weight_upload(h, xmax, 1);
    float *Y;
    CK(cudaMalloc((void **)&Y, sizeof(float) * xmax));
    cublasHandle_t hd;
    cublasCreate(&hd);
    float one = 1.0f, zero = 0.0f;
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    double flops = 0;
    for (int s = 0; s < 7; s++)
        flops += 2.0 * M * shapes[s][0] * shapes[s][1];
    float best = 1e30f;
    for (int rep = 0; rep < 8; rep++) {
        CK(cudaEventRecord(e0, 0));
        for (int s = 0; s < 7; s++) {
            int N = shapes[s][0], K = shapes[s][1];
            if (cublasGemmEx(hd, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &one, W, CUDA_R_16BF, K, X, CUDA_R_16BF, K, &zero,
                             Y, CUDA_R_32F, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) != CUBLAS_STATUS_SUCCESS) {
                fprintf(stderr, "bench_gpu: cublasGemmEx failed\n");
                exit(1);
            }
        }
        CK(cudaEventRecord(e1, 0));
        CK(cudaEventSynchronize(e1));
        float ms;
        CK(cudaEventElapsedTime(&ms, e0, e1));
        if (rep > 1 && ms < best)
            best = ms;
    }
    *gflops = flops / (best * 1e-3) * 1e-9;
    *ms_out = best;
    cublasDestroy(hd);
    CK(cudaFree(Y));
    ops->weight_free(W);
    ops->weight_free(X);
    free(h);
}

static al_result run_one(al_engine *e, const al_request *r, int32_t *id_out)
{
    int32_t id;
    if (al_engine_submit(e, r, &id) != AL_OK || al_engine_run(e) != AL_OK) {
        fprintf(stderr, "bench_gpu: engine: %s\n", al_errmsg());
        exit(1);
    }
    al_result res;
    al_engine_result(e, id, &res);
    if (res.finish == AL_FINISH_ERROR) {
        fprintf(stderr, "bench_gpu: request failed: %s\n", al_errmsg());
        exit(1);
    }
    *id_out = id;
    return res;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        out_path = argv[1];
    int max_ctx = argc > 2 ? atoi(argv[2]) : 32768;
    const al_ops *ops = al_ops_cuda();
    if (!ops) {
        printf("bench_gpu: skipped: no usable CUDA device\n");
        return 77;
    }
    struct cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    snprintf(R.device, sizeof R.device, "%s", prop.name);
    R.copy_gbs = copy_bandwidth();
    printf("device %s: D2D memcpy %.0f GB/s (%.0f GB/s read+write)\n", R.device, R.copy_gbs, 2 * R.copy_gbs);
    write_json();

    double t0 = al_now();
    void *base;
    size_t base_bytes;
    al_model *m = build_model(&base, &base_bytes);
    const al_model_config *c = &m->cfg;
    R.model_build_s = al_now() - t0;
    int32_t inv[8] = {128006, 78191, 128007, 271, 40, 1097, 264, 1296};
    al_adapter *alora = build_adapter(c, inv, 8), *lora = build_adapter(c, NULL, 0);
    int bs = 16, chunk = 2048;
    al_engine_opts eo = {.block_size = bs, .n_blocks = max_ctx / bs + 128, .max_batch_tokens = chunk, .max_seqs = 4,
                         .ops = ops};
    t0 = al_now();
    al_engine *e = NULL;
    if (al_engine_create(m, &eo, &e) != AL_OK) {
        fprintf(stderr, "bench_gpu: engine: %s\n", al_errmsg());
        return 1;
    }
    int32_t slot_alora, slot_lora;
    al_engine_add_adapter(e, alora, &slot_alora);
    al_engine_add_adapter(e, lora, &slot_lora);
    R.upload_s = al_now() - t0;
    printf("model built in %.1f s, uploaded in %.1f s\n", R.model_build_s, R.upload_s);
    write_json();

    int32_t *toks = malloc(sizeof(int32_t) * (size_t)(max_ctx + 64));
    for (int i = 0; i < max_ctx + 64; i++)
        toks[i] = 1000 + (int32_t)((i * 7919u) % 100000u);
    toks[0] = 128000;

    /* (a) decode: weight bytes per token over time per token, batch 1, short context */
    {
        int32_t id;
        al_request r = {.tokens = toks, .n_tokens = 32, .adapter = -1, .max_tokens = 8, .ignore_eos = 1};
        run_one(e, &r, &id); /* warm-up */
        al_engine_release(e, id);
        r.max_tokens = 129;
        al_result res = run_one(e, &r, &id);
        R.decode_ms = res.decode_ms / (res.n_tokens - 1);
        al_engine_release(e, id);
        double H = c->hidden_size, qd = 4096, kvd = 1024, I = c->intermediate_size;
        double layer = H * qd * 2 + H * kvd * 2 + 3 * H * I;
        R.decode_bytes = 2.0 * (layer * c->n_layers + (double)c->vocab_size * H);
        printf("decode: %.2f ms/token, %.0f GB/s of weights\n", R.decode_ms, R.decode_bytes / R.decode_ms * 1e-6);
        write_json();
    }
    /* (b) prefill throughput vs cuBLAS on the same shapes */
    {
        double ms;
        cublas_baseline(ops, chunk, &R.cublas_gflops, &ms);
        R.cublas_gemm_ms = ms;
        printf("cuBLAS bf16 GEMMs of one layer at M=%d: %.0f GFLOP/s\n", chunk, R.cublas_gflops);
        write_json();
    }
    int ctxs[3] = {4096, 16384, 32768};
    for (int ci = 0; ci < 3 && ctxs[ci] <= max_ctx; ci++) {
        int ctx = ctxs[ci];
        ttft_row *row = &R.ttft[R.n_ttft];
        row->ctx = ctx;
        /* base prefill of the context */
        int32_t bid;
        al_request br = {.tokens = toks, .n_tokens = ctx, .adapter = -1, .max_tokens = 0};
        t0 = al_now();
        run_one(e, &br, &bid);
        row->base_prefill_s = al_now() - t0;
        if (ctx == 4096) {
            double H = c->hidden_size, layer = H * 4096 * 2 + H * 1024 * 2 + 3 * H * c->intermediate_size;
            R.engine_prefill_s = row->base_prefill_s;
            R.engine_prefill_gflops = 2.0 * layer * c->n_layers * ctx / row->base_prefill_s * 1e-9;
        }
        /* aLoRA: invocation + 4 generated tokens over the base KV as a read-only prefix */
        al_kv_seg seg;
        al_engine_seq_kv(e, bid, &seg);
        if (getenv("ALORA_GPU_DIAG")) { /* where does the first suffix step's time go? */
            for (int pass = 0; pass < 2; pass++) {
                int32_t did;
                al_request dr = {.tokens = inv, .n_tokens = 8, .adapter = pass ? slot_alora : -1,
                                 .act_start = pass ? ctx : AL_ACT_NONE, .max_tokens = 1, .prefix = seg,
                                 .prefix_tokens = toks};
                double d0 = al_now();
                al_result dres = run_one(e, &dr, &did);
                printf("diag ctx %d: 8-token suffix over the prefix, %s: %.1f ms (prefill_ms %.1f)\n", ctx,
                       pass ? "aLoRA" : "no adapter", (al_now() - d0) * 1e3, dres.prefill_ms);
                al_engine_release(e, did);
            }
            int32_t did;
            al_request dr = {.tokens = toks, .n_tokens = 8, .adapter = slot_alora, .act_start = 0, .max_tokens = 1};
            double d0 = al_now();
            run_one(e, &dr, &did);
            printf("diag: 8 tokens, no prefix, adapter on: %.1f ms\n", (al_now() - d0) * 1e3);
            al_engine_release(e, did);
        }
        int32_t aid;
        al_request ar = {.tokens = inv, .n_tokens = 8, .adapter = slot_alora, .act_start = ctx, .max_tokens = 4,
                         .ignore_eos = 1, .prefix = seg, .prefix_tokens = toks};
        al_result res = run_one(e, &ar, &aid);
        row->alora_ttft_ms = res.prefill_ms;
        row->alora_total_ms = res.prefill_ms + res.decode_ms;
        al_engine_release(e, aid);
        al_engine_release(e, bid);
        /* plain LoRA: the whole context + invocation re-prefilled with the adapter */
        memcpy(toks + ctx, inv, sizeof inv);
        int32_t lid;
        al_request lr = {.tokens = toks, .n_tokens = ctx + 8, .adapter = slot_lora, .act_start = AL_ACT_AUTO,
                         .max_tokens = 4, .ignore_eos = 1};
        res = run_one(e, &lr, &lid);
        row->lora_ttft_ms = res.prefill_ms;
        row->lora_total_ms = res.prefill_ms + res.decode_ms;
        al_engine_release(e, lid);
        for (int i = 0; i < 8; i++)
            toks[ctx + i] = 1000 + (int32_t)(((ctx + i) * 7919u) % 100000u);
        R.n_ttft++;
        printf("ctx %5d: base prefill %.2f s; aLoRA TTFT %.1f ms (4 tokens %.1f ms); LoRA re-prefill TTFT %.1f ms "
               "(%.1fx)\n",
               ctx, row->base_prefill_s, row->alora_ttft_ms, row->alora_total_ms, row->lora_ttft_ms,
               row->lora_ttft_ms / row->alora_ttft_ms);
        if (ctx == 4096)
            printf("prefill: %.0f GFLOP/s of matmuls (%.0f%% of cuBLAS on the same shapes)\n", R.engine_prefill_gflops,
                   100 * R.engine_prefill_gflops / R.cublas_gflops);
        write_json();
    }
    al_engine_free(e);
    munmap(base, base_bytes);
    return 0;
}
#endif
