/* nfa_dist.c: each NFA state's minimum number of bytes to acceptance (a backward 0-1 BFS), and
 * the largest such distance over the live reachable states. */
#include <stdlib.h>
#include <string.h>

#include "engine/constrain/nfa.h"

/* Backward 0-1 BFS from the match state (epsilon edges cost 0, byte edges 1); with usable set, a
 * byte edge counts only if one of its bytes is usable. */
al_err ali_nfa_dist(const ali_nfa *f, const uint8_t *usable, int32_t **out)
{
    int32_t n = f->n;
    int32_t *cnt = calloc((size_t)n + 1, sizeof *cnt), *pred = NULL, *dist = malloc((size_t)n * sizeof *dist);
    int32_t *cur = malloc((size_t)n * sizeof *cur), *nxt = malloc((size_t)n * sizeof *nxt);
    uint16_t pre[257]; /* pre[b] = usable bytes below b */
    pre[0] = 0;
    for (int b = 0; b < 256; b++)
        pre[b + 1] = (uint16_t)(pre[b] + (usable ? usable[b] != 0 : 1));
    uint8_t *set_ok = malloc((size_t)f->nbset + 1); /* does the byte set hold a usable byte? */
    if (!cnt || !dist || !cur || !nxt || !set_ok)
        goto oom;
    for (int32_t k = 0; k < f->nbset; k++) {
        set_ok[k] = 0;
        for (int b = 0; b < 256; b++)
            set_ok[k] |= (f->bset[k][b >> 5] >> (b & 31) & 1) && (!usable || usable[b]);
    }
    int64_t ne = 0;
    for (int32_t q = 0; q < n; q++) {
        const ali_nstate *s = &f->s[q];
        if (s->kind != ALI_NS_MATCH && s->out >= 0)
            cnt[s->out + 1]++, ne++;
        if (s->kind == ALI_NS_SPLIT && s->out1 >= 0)
            cnt[s->out1 + 1]++, ne++;
    }
    for (int32_t q = 0; q < n; q++)
        cnt[q + 1] += cnt[q];
    pred = malloc((size_t)(ne ? ne : 1) * sizeof *pred);
    if (!pred)
        goto oom;
    for (int32_t q = 0; q < n; q++) {
        const ali_nstate *s = &f->s[q];
        if (s->kind != ALI_NS_MATCH && s->out >= 0)
            pred[cnt[s->out]++] = q;
        if (s->kind == ALI_NS_SPLIT && s->out1 >= 0)
            pred[cnt[s->out1]++] = q;
    }
    for (int32_t q = n; q > 0; q--) /* cnt[q] was advanced to the end of q's list: shift back */
        cnt[q] = cnt[q - 1];
    cnt[0] = 0;
    for (int32_t q = 0; q < n; q++)
        dist[q] = ALI_NFA_INF;
    int32_t nc = 0, d = 0;
    dist[f->match] = 0;
    cur[nc++] = f->match;
    while (nc > 0) {
        for (int32_t i = 0; i < nc; i++) /* epsilon predecessors join this layer */
            for (int32_t k = cnt[cur[i]]; k < cnt[cur[i] + 1]; k++) {
                int32_t p = pred[k];
                if (f->s[p].kind == ALI_NS_SPLIT && dist[p] > d) {
                    dist[p] = d;
                    cur[nc++] = p;
                }
            }
        int32_t nn = 0;
        for (int32_t i = 0; i < nc; i++)
            for (int32_t k = cnt[cur[i]]; k < cnt[cur[i] + 1]; k++) {
                int32_t p = pred[k];
                const ali_nstate *ps = &f->s[p];
                int pass = ps->kind == ALI_NS_BYTE ? pre[ps->hi + 1] > pre[ps->lo]
                                                   : ps->kind == ALI_NS_SET && set_ok[ps->out1];
                if (pass && dist[p] > d + 1) {
                    dist[p] = d + 1;
                    nxt[nn++] = p;
                }
            }
        int32_t *t = cur;
        cur = nxt;
        nxt = t;
        nc = nn;
        d++;
    }
    free(cnt);
    free(pred);
    free(cur);
    free(nxt);
    free(set_ok);
    *out = dist;
    return AL_OK;
oom:
    free(set_ok);
    free(cnt);
    free(pred);
    free(dist);
    free(cur);
    free(nxt);
    return ali_errf(AL_ENOMEM, "constraint: out of memory analysing the automaton (%d states)", n);
}

int32_t ali_nfa_max_dist(const ali_nfa *f, const int32_t *dist)
{
    int32_t n = f->n, maxd = 0, sp = 0;
    int32_t *stk = malloc((size_t)n * sizeof *stk);
    uint8_t *seen = calloc((size_t)n, 1);
    if (!stk || !seen) {
        free(stk);
        free(seen);
        return -1;
    }
    if (f->dist[f->start] != ALI_NFA_INF) {
        stk[sp++] = f->start;
        seen[f->start] = 1;
    }
    while (sp > 0) {
        int32_t q = stk[--sp];
        if (dist[q] != ALI_NFA_INF && dist[q] > maxd)
            maxd = dist[q];
        const ali_nstate *s = &f->s[q];
        int32_t o[2] = {s->kind == ALI_NS_MATCH ? -1 : s->out, s->kind == ALI_NS_SPLIT ? s->out1 : -1};
        for (int j = 0; j < 2; j++)
            if (o[j] >= 0 && !seen[o[j]] && f->dist[o[j]] != ALI_NFA_INF) {
                seen[o[j]] = 1;
                stk[sp++] = o[j];
            }
    }
    free(stk);
    free(seen);
    return maxd;
}
