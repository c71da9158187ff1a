/* ops_cpu.c: the CPU backend's ops table and thread control. */
#include <cblas.h>
#include <unistd.h>

#include "cpu_ops.h"

static int ali_cpu_nthreads = 0;

void al_cpu_set_threads(int n)
{
    if (n <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (int)c : 1;
    }
    ali_cpu_nthreads = n;
    openblas_set_num_threads(n);
}

int al_cpu_threads(void) { return ali_cpu_nthreads > 0 ? ali_cpu_nthreads : openblas_get_num_threads(); }

static const al_ops ali_cpu_ops = {
    .name = "cpu",
    .embedding = ali_cpu_embedding,
    .rmsnorm = ali_cpu_rmsnorm,
    .rope = ali_cpu_rope,
    .matmul = ali_cpu_matmul,
    .add_scaled = ali_cpu_add_scaled,
    .swiglu = ali_cpu_swiglu,
    .kv_write = ali_cpu_kv_write,
    .attention = ali_cpu_attention,
    .lora = ali_cpu_lora,
    .logprobs_topk = ali_cpu_logprobs_topk,
};

const al_ops *al_ops_cpu(void) { return &ali_cpu_ops; }
