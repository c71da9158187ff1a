/* tokenizer_bpe.c: the BPE model (merge queue over a symbol list), its hash maps and word cache. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "common/text/tokenizer_int.h"
#include "common/utf8.h"

/* ---------------------------------------------------------------- buffers */

al_err ali_ivec_push(ali_ivec *a, int32_t x)
{
    if (a->n == a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 64;
        int32_t *v = realloc(a->v, nc * sizeof *v);
        if (!v)
            return ali_errf(AL_ENOMEM, "tokenizer: out of memory");
        a->v = v;
        a->cap = nc;
    }
    a->v[a->n++] = x;
    return AL_OK;
}

al_err ali_ivec_append(ali_ivec *a, const int32_t *x, size_t n)
{
    if (n == 0) /* (a->v may still be NULL) */
        return AL_OK;
    if (a->n + n > a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 64;
        while (nc < a->n + n)
            nc *= 2;
        int32_t *v = realloc(a->v, nc * sizeof *v);
        if (!v)
            return ali_errf(AL_ENOMEM, "tokenizer: out of memory");
        a->v = v;
        a->cap = nc;
    }
    memcpy(a->v + a->n, x, n * sizeof *x);
    a->n += n;
    return AL_OK;
}

al_err ali_sbuf_reserve(ali_sbuf *b, size_t extra)
{
    if (b->n + extra + 1 > b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 256;
        while (nc < b->n + extra + 1)
            nc *= 2;
        char *s = realloc(b->s, nc);
        if (!s)
            return ali_errf(AL_ENOMEM, "tokenizer: out of memory");
        b->s = s;
        b->cap = nc;
    }
    return AL_OK;
}

al_err ali_sbuf_add(ali_sbuf *b, const void *p, size_t n)
{
    AL_TRY(ali_sbuf_reserve(b, n));
    if (n)
        memcpy(b->s + b->n, p, n);
    b->n += n;
    b->s[b->n] = 0;
    return AL_OK;
}

/* ---------------------------------------------------------------- hash maps */

uint64_t ali_hash_bytes(const void *p, size_t n) { return XXH3_64bits(p, n); }

static al_err ali_strmap_grow(ali_strmap *m)
{
    size_t cap = m->s ? (m->mask + 1) * 2 : 1024;
    ali_strmap_slot *s = calloc(cap, sizeof *s);
    if (!s)
        return ali_errf(AL_ENOMEM, "tokenizer: out of memory");
    for (size_t i = 0; m->s && i <= m->mask; i++) {
        if (!m->s[i].key)
            continue;
        size_t j = m->s[i].h & (cap - 1);
        while (s[j].key)
            j = (j + 1) & (cap - 1);
        s[j] = m->s[i];
    }
    free(m->s);
    m->s = s;
    m->mask = cap - 1;
    return AL_OK;
}

al_err ali_strmap_put(ali_strmap *m, const char *key, size_t klen, int32_t val)
{
    if (!m->s || (m->n + 1) * 2 > m->mask + 1)
        AL_TRY(ali_strmap_grow(m));
    uint64_t h = ali_hash_bytes(key, klen);
    size_t j = h & m->mask;
    while (m->s[j].key) {
        if (m->s[j].h == h && m->s[j].klen == klen && !memcmp(m->s[j].key, key, klen)) {
            m->s[j].val = val;
            return AL_OK;
        }
        j = (j + 1) & m->mask;
    }
    m->s[j] = (ali_strmap_slot){h, key, (uint32_t)klen, val};
    m->n++;
    return AL_OK;
}

int32_t ali_strmap_get(const ali_strmap *m, const char *key, size_t klen)
{
    if (!m->s)
        return -1;
    uint64_t h = ali_hash_bytes(key, klen);
    size_t j = h & m->mask;
    while (m->s[j].key) {
        if (m->s[j].h == h && m->s[j].klen == klen && !memcmp(m->s[j].key, key, klen))
            return m->s[j].val;
        j = (j + 1) & m->mask;
    }
    return -1;
}

void ali_strmap_free(ali_strmap *m)
{
    free(m->s);
    memset(m, 0, sizeof *m);
}

static inline uint64_t ali_mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static al_err ali_mergemap_grow(ali_mergemap *m)
{
    size_t cap = m->keys ? (m->mask + 1) * 2 : 1024;
    uint64_t *k = calloc(cap, sizeof *k);
    int32_t *r = malloc(cap * sizeof *r), *ni = malloc(cap * sizeof *ni);
    if (!k || !r || !ni) {
        free(k);
        free(r);
        free(ni);
        return ali_errf(AL_ENOMEM, "tokenizer: out of memory");
    }
    for (size_t i = 0; m->keys && i <= m->mask; i++) {
        if (!m->keys[i])
            continue;
        size_t j = ali_mix64(m->keys[i]) & (cap - 1);
        while (k[j])
            j = (j + 1) & (cap - 1);
        k[j] = m->keys[i];
        r[j] = m->rank[i];
        ni[j] = m->new_id[i];
    }
    free(m->keys);
    free(m->rank);
    free(m->new_id);
    m->keys = k;
    m->rank = r;
    m->new_id = ni;
    m->mask = cap - 1;
    return AL_OK;
}

al_err ali_mergemap_put(ali_mergemap *m, int32_t a, int32_t b, int32_t rank, int32_t new_id)
{
    if (!m->keys || (m->n + 1) * 2 > m->mask + 1)
        AL_TRY(ali_mergemap_grow(m));
    uint64_t key = ((uint64_t)(uint32_t)a + 1) << 32 | (uint32_t)b;
    size_t j = ali_mix64(key) & m->mask;
    while (m->keys[j] && m->keys[j] != key)
        j = (j + 1) & m->mask;
    if (!m->keys[j])
        m->n++;
    m->keys[j] = key;
    m->rank[j] = rank;
    m->new_id[j] = new_id;
    return AL_OK;
}

int ali_mergemap_get(const ali_mergemap *m, int32_t a, int32_t b, int32_t *rank, int32_t *new_id)
{
    if (!m->keys)
        return 0;
    uint64_t key = ((uint64_t)(uint32_t)a + 1) << 32 | (uint32_t)b;
    size_t j = ali_mix64(key) & m->mask;
    while (m->keys[j]) {
        if (m->keys[j] == key) {
            *rank = m->rank[j];
            *new_id = m->new_id[j];
            return 1;
        }
        j = (j + 1) & m->mask;
    }
    return 0;
}

void ali_mergemap_free(ali_mergemap *m)
{
    free(m->keys);
    free(m->rank);
    free(m->new_id);
    memset(m, 0, sizeof *m);
}

/* ---------------------------------------------------------------- word cache */

#define ALI_CACHE_SLOTS 65536
#define ALI_CACHE_LOCKS 64
#define ALI_CACHE_MAX_KEY 128

typedef struct ali_centry {
    uint64_t h;
    char *mem; /* key bytes, then the ids */
    uint32_t klen, n;
} ali_centry;

struct ali_cache {
    pthread_mutex_t lock[ALI_CACHE_LOCKS];
    ali_centry e[ALI_CACHE_SLOTS];
};

al_err ali_cache_new(ali_cache **out)
{
    ali_cache *c = calloc(1, sizeof *c);
    if (!c)
        return ali_errf(AL_ENOMEM, "tokenizer: out of memory");
    for (int i = 0; i < ALI_CACHE_LOCKS; i++)
        pthread_mutex_init(&c->lock[i], NULL);
    *out = c;
    return AL_OK;
}

void ali_cache_free(ali_cache *c)
{
    if (!c)
        return;
    for (int i = 0; i < ALI_CACHE_SLOTS; i++)
        free(c->e[i].mem);
    for (int i = 0; i < ALI_CACHE_LOCKS; i++)
        pthread_mutex_destroy(&c->lock[i]);
    free(c);
}

int ali_cache_get(ali_cache *c, const char *key, size_t klen, ali_ivec *out, al_err *err)
{
    if (klen > ALI_CACHE_MAX_KEY)
        return 0;
    uint64_t h = ali_hash_bytes(key, klen);
    size_t slot = h & (ALI_CACHE_SLOTS - 1);
    pthread_mutex_t *lk = &c->lock[slot & (ALI_CACHE_LOCKS - 1)];
    int hit = 0;
    pthread_mutex_lock(lk);
    ali_centry *e = &c->e[slot];
    if (e->mem && e->h == h && e->klen == klen && !memcmp(e->mem, key, klen)) {
        int32_t ids[ALI_CACHE_MAX_KEY];
        memcpy(ids, e->mem + ((klen + 3) & ~(size_t)3), e->n * sizeof(int32_t));
        size_t n = e->n;
        pthread_mutex_unlock(lk);
        *err = ali_ivec_append(out, ids, n);
        return 1;
    }
    pthread_mutex_unlock(lk);
    return hit;
}

void ali_cache_put(ali_cache *c, const char *key, size_t klen, const int32_t *ids, size_t n)
{
    if (klen > ALI_CACHE_MAX_KEY || n > ALI_CACHE_MAX_KEY)
        return;
    size_t koff = (klen + 3) & ~(size_t)3;
    char *mem = malloc(koff + n * sizeof(int32_t) + 1);
    if (!mem)
        return;
    memcpy(mem, key, klen);
    if (n)
        memcpy(mem + koff, ids, n * sizeof(int32_t));
    uint64_t h = ali_hash_bytes(key, klen);
    size_t slot = h & (ALI_CACHE_SLOTS - 1);
    pthread_mutex_t *lk = &c->lock[slot & (ALI_CACHE_LOCKS - 1)];
    pthread_mutex_lock(lk);
    ali_centry *e = &c->e[slot];
    char *old = e->mem;
    e->mem = mem;
    e->h = h;
    e->klen = (uint32_t)klen;
    e->n = (uint32_t)n;
    pthread_mutex_unlock(lk);
    free(old);
}

/* ---------------------------------------------------------------- byte level map */

char ali_bytelevel_str[256][3];
uint8_t ali_bytelevel_len[256];
static int16_t ali_bl_rev[324];
static pthread_once_t ali_bl_once = PTHREAD_ONCE_INIT;

static void ali_bytelevel_build(void)
{
    char(*str)[3] = ali_bytelevel_str;
    uint8_t *len = ali_bytelevel_len;
    int n = 0;
    for (int i = 0; i < 324; i++)
        ali_bl_rev[i] = -1;
    for (int b = 0; b < 256; b++) {
        uint32_t cp;
        if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF))
            cp = (uint32_t)b;
        else
            cp = 256 + (uint32_t)n++;
        char tmp[4];
        int l = al_utf8_encode(cp, tmp);
        memcpy(str[b], tmp, (size_t)l);
        len[b] = (uint8_t)l;
        ali_bl_rev[cp] = (int16_t)b;
    }
}

void ali_bytelevel_init(void) { pthread_once(&ali_bl_once, ali_bytelevel_build); }

int ali_bytelevel_byte(uint32_t cp) { return cp < 324 ? ali_bl_rev[cp] : -1; }

/* ---------------------------------------------------------------- BPE */

typedef struct ali_sym {
    int32_t id, prev, next;
    uint32_t len; /* bytes; 0 = merged away */
} ali_sym;

typedef struct ali_merge {
    int32_t rank, pos, new_id;
} ali_merge;

static inline int ali_merge_less(ali_merge a, ali_merge b)
{
    return a.rank != b.rank ? a.rank < b.rank : a.pos < b.pos;
}

static void ali_heap_push(ali_merge *h, size_t *n, ali_merge m)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!ali_merge_less(m, h[p]))
            break;
        h[i] = h[p];
        i = p;
    }
    h[i] = m;
}

static ali_merge ali_heap_pop(ali_merge *h, size_t *n)
{
    ali_merge top = h[0], last = h[--(*n)];
    size_t i = 0, m = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m)
            break;
        if (c + 1 < m && ali_merge_less(h[c + 1], h[c]))
            c++;
        if (!ali_merge_less(h[c], last))
            break;
        h[i] = h[c];
        i = c;
    }
    if (m)
        h[i] = last;
    return top;
}

static void ali_sym_add(ali_sym *s, size_t *n, int32_t id, uint32_t len)
{
    size_t i = (*n)++;
    s[i].id = id;
    s[i].len = len;
    s[i].prev = (int32_t)i - 1;
    s[i].next = (int32_t)i + 1;
}

/* BPE over the characters of the UTF-8 string w (HF BPE::merge_word without dropout). */
static al_err ali_bpe_chars(const al_tokenizer *t, const char *w, size_t n, ali_ivec *out)
{
    if (n == 0)
        return AL_OK;
    if (t->ignore_merges) {
        int32_t id = ali_strmap_get(&t->vocab, w, n);
        if (id >= 0)
            return ali_ivec_push(out, id);
    }
    ali_sym sbuf[256];
    ali_merge hbuf[256];
    ali_sym *sym = sbuf;
    ali_merge *heap = hbuf;
    if (n > 64) { /* a char may add up to 4 byte-fallback symbols */
        sym = malloc(n * sizeof *sym);
        heap = malloc((n * 3 + 1) * sizeof *heap);
        if (!sym || !heap) {
            if (sym != sbuf)
                free(sym);
            if (heap != hbuf)
                free(heap);
            return ali_errf(AL_ENOMEM, "tokenizer: out of memory");
        }
    }
    size_t ns = 0;
    int32_t unk_id = -1;
    uint32_t unk_len = 0;
    const unsigned char *u = (const unsigned char *)w;
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        int bad = 1;
        int l = al_utf8_decode(u + i, n - i, &cp, &bad);
        if (!l)
            l = bad; /* cannot happen for repaired input; treat the bytes as one char */
        int32_t id = ali_strmap_get(&t->vocab, w + i, (size_t)l);
        if (id >= 0) {
            if (unk_id >= 0) {
                ali_sym_add(sym, &ns, unk_id, unk_len);
                unk_id = -1;
            }
            ali_sym_add(sym, &ns, id, (uint32_t)l);
        } else {
            int done = 0;
            if (t->byte_fallback) {
                int ok = 1;
                for (int k = 0; k < l; k++)
                    ok &= t->byte_tok[u[i + k]] >= 0;
                if (ok) {
                    for (int k = 0; k < l; k++)
                        ali_sym_add(sym, &ns, t->byte_tok[u[i + k]], 1);
                    done = 1;
                }
            }
            if (!done && t->unk_id >= 0) {
                if (unk_id >= 0 && t->fuse_unk) {
                    unk_len += (uint32_t)l;
                } else {
                    if (unk_id >= 0)
                        ali_sym_add(sym, &ns, unk_id, unk_len);
                    unk_id = t->unk_id;
                    unk_len = (uint32_t)l;
                }
            }
        }
        i += (size_t)l;
    }
    if (unk_id >= 0)
        ali_sym_add(sym, &ns, unk_id, unk_len);
    if (ns)
        sym[ns - 1].next = -1;

    size_t nh = 0;
    for (size_t k = 0; k + 1 < ns; k++) {
        int32_t r, nid;
        if (ali_mergemap_get(&t->merges, sym[k].id, sym[k + 1].id, &r, &nid))
            ali_heap_push(heap, &nh, (ali_merge){r, (int32_t)k, nid});
    }
    while (nh) {
        ali_merge top = ali_heap_pop(heap, &nh);
        ali_sym *cur = &sym[top.pos];
        if (cur->len == 0 || cur->next < 0)
            continue;
        ali_sym *right = &sym[cur->next];
        int32_t r, nid;
        if (!ali_mergemap_get(&t->merges, cur->id, right->id, &r, &nid) || nid != top.new_id)
            continue;
        cur->id = top.new_id;
        cur->len += right->len;
        right->len = 0;
        cur->next = right->next;
        if (right->next >= 0)
            sym[right->next].prev = top.pos;
        if (cur->prev >= 0 &&
            ali_mergemap_get(&t->merges, sym[cur->prev].id, cur->id, &r, &nid))
            ali_heap_push(heap, &nh, (ali_merge){r, cur->prev, nid});
        if (cur->next >= 0 && ali_mergemap_get(&t->merges, cur->id, sym[cur->next].id, &r, &nid))
            ali_heap_push(heap, &nh, (ali_merge){r, top.pos, nid});
    }
    al_err e = AL_OK;
    for (size_t k = 0; k < ns && e == AL_OK; k++)
        if (sym[k].len)
            e = ali_ivec_push(out, sym[k].id);
    if (sym != sbuf)
        free(sym);
    if (heap != hbuf)
        free(heap);
    return e;
}

/* BPE of one piece through the word cache. */
static al_err ali_bpe_cached(const al_tokenizer *t, const char *w, size_t n, ali_ivec *out)
{
    al_err e = AL_OK;
    if (ali_cache_get(t->cache, w, n, out, &e))
        return e;
    size_t before = out->n;
    if (t->byte_level) {
        char sbuf[512];
        char *s = n * 2 <= sizeof sbuf ? sbuf : malloc(n * 2);
        if (!s)
            return ali_errf(AL_ENOMEM, "tokenizer: out of memory");
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            unsigned char b = (unsigned char)w[i];
            memcpy(s + k, ali_bytelevel_str[b], ali_bytelevel_len[b]);
            k += ali_bytelevel_len[b];
        }
        e = ali_bpe_chars(t, s, k, out);
        if (s != sbuf)
            free(s);
    } else {
        e = ali_bpe_chars(t, w, n, out);
    }
    if (e == AL_OK) /* (out->v is NULL while out is empty) */
        ali_cache_put(t->cache, w, n, out->n > before ? out->v + before : NULL, out->n - before);
    return e;
}

al_err ali_bpe_word(const al_tokenizer *t, const char *w, size_t n, ali_ivec *out)
{
    if (n == 0)
        return AL_OK;
    if (!t->ws_split)
        return ali_bpe_cached(t, w, n, out);
    /* Split before each run of U+2581 that follows another character. */
    size_t start = 0;
    for (size_t i = 1; i + 3 <= n; i++) {
        if (memcmp(w + i, "\xE2\x96\x81", 3) == 0 &&
            (i < 3 || memcmp(w + i - 3, "\xE2\x96\x81", 3) != 0)) {
            AL_TRY(ali_bpe_cached(t, w + start, i - start, out));
            start = i;
        }
    }
    return ali_bpe_cached(t, w + start, n - start, out);
}

void ali_bpe_prepare(al_tokenizer *t)
{
    /* Splitting a word before each run of U+2581 is exact when no model token contains
     * U+2581 right after another character (then no merge can cross such a boundary) and
     * U+2581 itself is a token (so unknown characters never fuse across it). */
    t->ws_split = 0;
    if (t->byte_level || t->ignore_merges || ali_strmap_get(&t->vocab, "\xE2\x96\x81", 3) < 0)
        return;
    for (size_t j = 0; j <= t->vocab.mask; j++) {
        const ali_strmap_slot *s = &t->vocab.s[j];
        if (!s->key)
            continue;
        for (size_t i = 1; i + 3 <= s->klen; i++)
            if (!memcmp(s->key + i, "\xE2\x96\x81", 3) &&
                (i < 3 || memcmp(s->key + i - 3, "\xE2\x96\x81", 3) != 0))
                return;
    }
    t->ws_split = 1;
}
