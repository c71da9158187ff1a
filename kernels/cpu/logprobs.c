/* logprobs.c: CPU log-softmax top-k and greedy argmax over logits rows. */
#include <math.h>

#include "kernels/cpu/cpu_ops.h"

void ali_cpu_logprobs_topk(const float *logits, int n, int V, int k, al_topk_entry *topk, int32_t *argmax)
{
    for (int r = 0; r < n; r++) {
        const float *l = logits + (size_t)r * V;
        int best = 0;
        float m = l[0];
        for (int i = 1; i < V; i++)
            if (l[i] > m) {
                m = l[i];
                best = i;
            }
        if (argmax)
            argmax[r] = best;
        if (k <= 0)
            continue;
        double s = 0.0;
        for (int i = 0; i < V; i++)
            s += exp((double)l[i] - (double)m);
        float lse = m + (float)log(s);
        al_topk_entry *out = topk + (size_t)r * k;
        int have = 0;
        for (int i = 0; i < V; i++) {
            float v = l[i];
            if (have == k && v <= out[k - 1].logprob)
                continue;
            int j = have < k ? have++ : k - 1;
            while (j > 0 && out[j - 1].logprob < v) { /* stable: equal values keep lower id first */
                out[j] = out[j - 1];
                j--;
            }
            out[j].id = i;
            out[j].logprob = v;
        }
        for (int j = 0; j < have; j++)
            out[j].logprob -= lse;
        for (int j = have; j < k; j++) {
            out[j].id = -1;
            out[j].logprob = -INFINITY;
        }
    }
}
