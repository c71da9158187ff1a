/* sample.c: token sampling: greedy, temperature, top-k, top-p (nucleus), seeded. */
#include <math.h>
#include <stdlib.h>

#include "engine/engine.h"

typedef struct ali_cand {
    float v;
    int32_t id;
} ali_cand;

static int ali_cand_cmp(const void *a, const void *b)
{
    const ali_cand *x = a, *y = b;
    if (x->v != y->v)
        return x->v < y->v ? 1 : -1;
    return x->id - y->id;
}

static int32_t ali_argmax(const float *l, int32_t V)
{
    int32_t best = 0;
    for (int32_t i = 1; i < V; i++)
        if (l[i] > l[best])
            best = i;
    return best;
}

int32_t al_sample(const float *logits, int32_t V, const al_sampling *s, al_rng *rng)
{
    if (!s || s->temperature <= 0.0f)
        return ali_argmax(logits, V);
    ali_cand *c = malloc(sizeof(ali_cand) * (size_t)V);
    if (!c)
        return ali_argmax(logits, V);
    for (int32_t i = 0; i < V; i++)
        c[i] = (ali_cand){.v = logits[i] / s->temperature, .id = i};
    qsort(c, (size_t)V, sizeof *c, ali_cand_cmp);
    int32_t n = V;
    if (s->top_k > 0 && s->top_k < n)
        n = s->top_k;
    double m = c[0].v, sum = 0.0;
    for (int32_t i = 0; i < n; i++)
        sum += exp((double)c[i].v - m);
    if (s->top_p > 0.0f && s->top_p < 1.0f) {
        double cum = 0.0;
        int32_t keep = n;
        for (int32_t i = 0; i < n; i++) {
            cum += exp((double)c[i].v - m) / sum;
            if (cum >= s->top_p) {
                keep = i + 1;
                break;
            }
        }
        n = keep;
        sum = 0.0;
        for (int32_t i = 0; i < n; i++)
            sum += exp((double)c[i].v - m);
    }
    double u = al_rng_uniform(rng) * sum, acc = 0.0;
    int32_t tok = c[n - 1].id;
    for (int32_t i = 0; i < n; i++) {
        acc += exp((double)c[i].v - m);
        if (u < acc) {
            tok = c[i].id;
            break;
        }
    }
    free(c);
    return tok;
}
