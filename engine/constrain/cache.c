/* cache.c: the process-wide LRU cache of compiled grammars keyed by (kind, text, vocabulary). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "engine/constrain/constrain_int.h"

typedef struct ali_centry {
    al_grammar *g;
    uint64_t key, vhash, used;
    al_constraint_kind kind;
    char *text;
    size_t len;
    int32_t vn;
} ali_centry;

static pthread_mutex_t ali_cache_mu = PTHREAD_MUTEX_INITIALIZER;
static ali_centry ali_cache[AL_CONSTRAIN_CACHE_SIZE];
static uint64_t ali_cache_tick;

static ali_centry *ali_cache_find(uint64_t key, const al_constraint_spec *spec, size_t len, uint64_t vh, int32_t vn)
{
    for (int i = 0; i < AL_CONSTRAIN_CACHE_SIZE; i++) {
        ali_centry *c = &ali_cache[i];
        if (c->g && c->key == key && c->kind == spec->kind && c->vhash == vh && c->vn == vn && c->len == len &&
            (len == 0 || memcmp(c->text, spec->text, len) == 0))
            return c;
    }
    return NULL;
}

al_err al_grammar_get(const al_constraint_spec *spec, const al_vocab *v, al_grammar **out)
{
    if (!spec || !v || !out)
        return ali_errf(AL_EINVAL, "al_grammar_get: NULL argument");
    size_t len = spec->kind == AL_CONSTRAINT_JSON_OBJECT || !spec->text ? 0 : spec->len;
    uint64_t vh = al_vocab_hash(v);
    uint64_t hdr[2] = {(uint64_t)spec->kind, vh};
    uint64_t key = XXH3_64bits_withSeed(len ? spec->text : "", len, XXH3_64bits(hdr, sizeof hdr));

    pthread_mutex_lock(&ali_cache_mu);
    ali_centry *c = ali_cache_find(key, spec, len, vh, v->n);
    if (c) {
        c->used = ++ali_cache_tick;
        *out = al_grammar_ref(c->g);
        pthread_mutex_unlock(&ali_cache_mu);
        return AL_OK;
    }
    pthread_mutex_unlock(&ali_cache_mu);

    al_grammar *g;
    AL_TRY(al_grammar_compile(spec, v, &g));
    char *text = malloc(len ? len : 1);
    if (!text) {
        *out = g; /* works, just not cached */
        return AL_OK;
    }
    if (len)
        memcpy(text, spec->text, len);
    al_grammar *evict = NULL;
    pthread_mutex_lock(&ali_cache_mu);
    c = ali_cache_find(key, spec, len, vh, v->n);
    if (c) { /* compiled concurrently by another thread: share that one */
        c->used = ++ali_cache_tick;
        *out = al_grammar_ref(c->g);
        pthread_mutex_unlock(&ali_cache_mu);
        al_grammar_unref(g);
        free(text);
        return AL_OK;
    }
    c = &ali_cache[0];
    for (int i = 0; i < AL_CONSTRAIN_CACHE_SIZE; i++) {
        if (!ali_cache[i].g) {
            c = &ali_cache[i];
            break;
        }
        if (ali_cache[i].used < c->used)
            c = &ali_cache[i];
    }
    evict = c->g;
    free(c->text);
    c->g = al_grammar_ref(g);
    c->key = key;
    c->vhash = vh;
    c->vn = v->n;
    c->kind = spec->kind;
    c->text = text;
    c->len = len;
    c->used = ++ali_cache_tick;
    pthread_mutex_unlock(&ali_cache_mu);
    al_grammar_unref(evict);
    *out = g;
    return AL_OK;
}

void al_grammar_cache_clear(void)
{
    al_grammar *drop[AL_CONSTRAIN_CACHE_SIZE];
    int n = 0;
    pthread_mutex_lock(&ali_cache_mu);
    for (int i = 0; i < AL_CONSTRAIN_CACHE_SIZE; i++) {
        if (ali_cache[i].g)
            drop[n++] = ali_cache[i].g;
        free(ali_cache[i].text);
        memset(&ali_cache[i], 0, sizeof ali_cache[i]);
    }
    pthread_mutex_unlock(&ali_cache_mu);
    for (int i = 0; i < n; i++)
        al_grammar_unref(drop[i]);
}
