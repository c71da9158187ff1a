/* trie.c: building the flattened vocabulary trie, and the process-wide cache of tries. */
#include "engine/constrain/trie.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static pthread_mutex_t ali_trie_mu = PTHREAD_MUTEX_INITIALIZER;
static ali_trie *ali_trie_list;

static int ali_tok_cmp(const void *a, const void *b, void *ctx)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    const ali_trie *t = ctx;
    uint32_t lx = t->off[x + 1] - t->off[x], ly = t->off[y + 1] - t->off[y];
    int c = memcmp(t->data + t->off[x], t->data + t->off[y], lx < ly ? lx : ly);
    if (c)
        return c;
    if (lx != ly)
        return lx < ly ? -1 : 1;
    return x < y ? -1 : x > y;
}

static void ali_trie_destroy(ali_trie *t)
{
    if (!t)
        return;
    free(t->nodes);
    free(t->dup);
    free(t->eos);
    free(t->off);
    free(t->data);
    free(t->is_eos);
    free(t);
}

static al_err ali_trie_build(const al_vocab *v, uint64_t hash, ali_trie **out)
{
    ali_trie *t = calloc(1, sizeof *t);
    int32_t n = v->n, *ids = NULL, *open = NULL;
    if (!t)
        return ali_errf(AL_ENOMEM, "constraint: cannot allocate the vocabulary trie");
    t->refs = 1;
    t->hash = hash;
    t->n = n;
    t->is_eos = calloc((size_t)n, 1);
    t->dup = malloc((size_t)n * sizeof *t->dup);
    t->off = malloc(((size_t)n + 1) * sizeof *t->off);
    t->eos = malloc((size_t)(v->n_eos ? v->n_eos : 1) * sizeof *t->eos);
    ids = malloc((size_t)n * sizeof *ids);
    open = malloc((ALI_TRIE_MAX_TOKEN + 1) * sizeof *open);
    if (!t->is_eos || !t->dup || !t->off || !t->eos || !ids || !open)
        goto oom;
    for (int32_t i = 0; i < v->n_eos; i++)
        if (v->eos[i] >= 0 && v->eos[i] < n && !t->is_eos[v->eos[i]]) {
            t->is_eos[v->eos[i]] = 1;
            t->eos[t->n_eos++] = v->eos[i];
        }
    size_t total = 0;
    for (int32_t i = 0; i < n; i++) {
        int32_t l = v->bytes && v->bytes[i] ? v->len[i] : 0;
        if (l > 0 && !t->is_eos[i])
            total += (size_t)l;
    }
    if (total >= UINT32_MAX)
        goto oom;
    t->data = malloc(total ? total : 1);
    if (!t->data)
        goto oom;
    uint32_t o = 0;
    int32_t nid = 0;
    int seen[256] = {0};
    for (int32_t i = 0; i < n; i++) {
        t->off[i] = o;
        t->dup[i] = -1;
        int32_t l = v->bytes && v->bytes[i] ? v->len[i] : 0;
        if (l <= 0 || t->is_eos[i])
            continue;
        memcpy(t->data + o, v->bytes[i], (size_t)l);
        o += (uint32_t)l;
        if (l == 1)
            seen[v->bytes[i][0]] = 1;
        if (l <= ALI_TRIE_MAX_TOKEN)
            ids[nid++] = i;
    }
    t->off[n] = o;
    t->byte_complete = 1;
    for (int b = 0; b < 256; b++) {
        t->single[b] = (uint8_t)seen[b];
        if (!seen[b])
            t->byte_complete = 0;
    }
    qsort_r(ids, (size_t)nid, sizeof *ids, ali_tok_cmp, t);
    t->nodes = malloc((total ? total : 1) * sizeof *t->nodes);
    if (!t->nodes)
        goto oom;
    int32_t nn = 0, path = 0, prev = -1, prev_end = -1;
    for (int32_t k = 0; k < nid; k++) {
        int32_t id = ids[k];
        const uint8_t *b = t->data + t->off[id];
        int32_t l = (int32_t)(t->off[id + 1] - t->off[id]), lcp = 0;
        if (prev >= 0) {
            const uint8_t *pb = t->data + t->off[prev];
            int32_t pl = (int32_t)(t->off[prev + 1] - t->off[prev]);
            while (lcp < l && lcp < pl && pb[lcp] == b[lcp])
                lcp++;
            if (lcp == l && lcp == pl) { /* same bytes as the previous token: chain it */
                int32_t x = t->nodes[prev_end].tok;
                while (t->dup[x] >= 0)
                    x = t->dup[x];
                t->dup[x] = id;
                t->nodes[prev_end].dup = 1;
                continue;
            }
        }
        if (lcp > path)
            lcp = path;
        for (int32_t d = lcp; d < l; d++) {
            for (int32_t q = path - 1; q >= d; q--) /* close the nodes this one leaves */
                t->nodes[open[q]].skip = nn;
            path = d;
            ali_tnode *x = &t->nodes[nn];
            x->byte = b[d];
            x->dup = 0;
            x->depth = (uint16_t)d;
            x->skip = -1;
            x->tok = -1;
            open[d] = nn++;
            path = d + 1;
        }
        t->nodes[open[l - 1]].tok = id;
        prev = id;
        prev_end = open[l - 1];
        if (l > t->max_len)
            t->max_len = l;
    }
    for (int32_t q = path - 1; q >= 0; q--)
        t->nodes[open[q]].skip = nn;
    t->nnodes = nn;
    ali_tnode *sh = realloc(t->nodes, (size_t)(nn ? nn : 1) * sizeof *sh);
    if (sh)
        t->nodes = sh;
    free(ids);
    free(open);
    *out = t;
    return AL_OK;
oom:
    free(ids);
    free(open);
    ali_trie_destroy(t);
    return ali_errf(AL_ENOMEM, "constraint: cannot allocate the vocabulary trie (%d tokens)", n);
}

al_err ali_trie_get(const al_vocab *v, ali_trie **out)
{
    if (!v || v->n <= 0 || !v->bytes || !v->len || (v->n_eos > 0 && !v->eos))
        return ali_errf(AL_EINVAL, "constraint: bad vocabulary");
    uint64_t h = al_vocab_hash(v);
    pthread_mutex_lock(&ali_trie_mu);
    for (ali_trie *t = ali_trie_list; t; t = t->next)
        if (t->hash == h && t->n == v->n) {
            __atomic_add_fetch(&t->refs, 1, __ATOMIC_RELAXED);
            pthread_mutex_unlock(&ali_trie_mu);
            *out = t;
            return AL_OK;
        }
    ali_trie *t = NULL;
    al_err e = ali_trie_build(v, h, &t);
    if (e == AL_OK) {
        t->next = ali_trie_list;
        ali_trie_list = t;
        *out = t;
    }
    pthread_mutex_unlock(&ali_trie_mu);
    return e;
}

void ali_trie_unref(ali_trie *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&ali_trie_mu);
    if (__atomic_sub_fetch(&t->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        for (ali_trie **p = &ali_trie_list; *p; p = &(*p)->next)
            if (*p == t) {
                *p = t->next;
                break;
            }
        ali_trie_destroy(t);
    }
    pthread_mutex_unlock(&ali_trie_mu);
}
