/* prefix_store.c: the trainer's store of prefix K/V kept across steps and epochs. */
#include <stdlib.h>
#include <string.h>

#include "train/prefix_store.h"

const ali_pstore_entry *ali_pstore_find(const ali_pstore *ps, const int32_t *ids, int32_t n, int32_t *len)
{
    const ali_pstore_entry *best = NULL;
    int32_t bl = 0;
    for (int32_t i = 0; i < ps->n_e; i++) {
        const ali_pstore_entry *pe = &ps->e[i];
        int32_t m = AL_MIN(pe->n, n), k = 0;
        if (m <= bl)
            continue;
        while (k < m && pe->ids[k] == ids[k])
            k++;
        if (k > bl)
            bl = k, best = pe;
    }
    *len = bl;
    return best;
}

al_err ali_pstore_put(ali_pstore *ps, const int32_t *ids, int32_t n, const float *kv, int32_t ld)
{
    size_t row = ps->kvd * (size_t)n, need = ali_pstore_bytes(ps, n);
    if (n <= 0 || ps->bytes + need > ps->limit) {
        ps->refused += n > 0;
        return AL_OK;
    }
    if (ps->n_e == ps->cap_e) {
        int32_t cap = ps->cap_e ? 2 * ps->cap_e : 16;
        ali_pstore_entry *e = realloc(ps->e, sizeof *e * (size_t)cap);
        if (!e)
            return ali_errf(AL_ENOMEM, "train: out of memory for the prefix store");
        ps->e = e, ps->cap_e = cap;
    }
    float *k = ali_aligned_alloc(sizeof(float) * row * (size_t)ps->planes);
    int32_t *id = malloc(sizeof(int32_t) * (size_t)n);
    if (!k || !id) {
        ali_aligned_free(k);
        free(id);
        return ali_errf(AL_ENOMEM, "train: cannot allocate %.1f MiB for the prefix store", need / 1048576.0);
    }
    for (int32_t p = 0; p < ps->planes; p++)
        memcpy(k + (size_t)p * row, kv + (size_t)p * (size_t)ld * ps->kvd, sizeof(float) * row);
    memcpy(id, ids, sizeof(int32_t) * (size_t)n);
    ps->e[ps->n_e++] = (ali_pstore_entry){.n = n, .ids = id, .kv = k};
    ps->bytes += need;
    return AL_OK;
}

void ali_pstore_get(const ali_pstore *ps, const ali_pstore_entry *pe, int32_t len, float *kv, int32_t ld,
                    int32_t *ids)
{
    for (int32_t p = 0; p < ps->planes; p++)
        memcpy(kv + (size_t)p * (size_t)ld * ps->kvd, pe->kv + (size_t)p * (size_t)pe->n * ps->kvd,
               sizeof(float) * (size_t)len * ps->kvd);
    memcpy(ids, pe->ids, sizeof(int32_t) * (size_t)len);
}

void ali_pstore_free(ali_pstore *ps)
{
    for (int32_t i = 0; i < ps->n_e; i++) {
        ali_aligned_free(ps->e[i].kv);
        free(ps->e[i].ids);
    }
    free(ps->e);
    *ps = (ali_pstore){0};
}
