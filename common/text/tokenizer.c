/* tokenizer.c: the encode pipeline (added tokens, normalizer, pre-tokenizer, BPE, template). */
#include <stdlib.h>
#include <string.h>

#include "common/text/tokenizer_int.h"
#include "common/utf8.h"

/* ---------------------------------------------------------------- trie */

void ali_trie_init(ali_trie *tr)
{
    memset(tr, 0, sizeof *tr);
    for (int i = 0; i < 256; i++)
        tr->root[i] = -1;
    tr->empty = 1;
}

void ali_trie_free(ali_trie *tr)
{
    free(tr->nodes);
    ali_trie_init(tr);
}

static int32_t ali_trie_node_new(ali_trie *tr, uint8_t b)
{
    if (tr->n == tr->cap) {
        int32_t nc = tr->cap ? tr->cap * 2 : 256;
        ali_trie_node *nn = realloc(tr->nodes, (size_t)nc * sizeof *nn);
        if (!nn)
            return -1;
        tr->nodes = nn;
        tr->cap = nc;
    }
    tr->nodes[tr->n] = (ali_trie_node){-1, -1, -1, b};
    return tr->n++;
}

al_err ali_trie_add(ali_trie *tr, const char *p, size_t n, int32_t tok)
{
    if (n == 0)
        return AL_OK;
    const uint8_t *u = (const uint8_t *)p;
    int32_t cur = tr->root[u[0]];
    if (cur < 0) {
        if ((cur = ali_trie_node_new(tr, u[0])) < 0)
            return ali_errf(AL_ENOMEM, "tokenizer: out of memory");
        tr->root[u[0]] = cur;
    }
    for (size_t i = 1; i < n; i++) {
        int32_t c = tr->nodes[cur].first;
        while (c >= 0 && tr->nodes[c].b != u[i])
            c = tr->nodes[c].next;
        if (c < 0) {
            if ((c = ali_trie_node_new(tr, u[i])) < 0)
                return ali_errf(AL_ENOMEM, "tokenizer: out of memory");
            tr->nodes[c].next = tr->nodes[cur].first;
            tr->nodes[cur].first = c;
        }
        cur = c;
    }
    if (tr->nodes[cur].tok < 0)
        tr->nodes[cur].tok = tok; /* first definition wins for duplicate contents */
    tr->empty = 0;
    return AL_OK;
}

int32_t ali_trie_longest(const ali_trie *tr, const char *s, size_t n, size_t *mlen)
{
    const uint8_t *u = (const uint8_t *)s;
    int32_t cur = tr->root[u[0]], best = -1;
    size_t i = 1;
    while (cur >= 0) {
        if (tr->nodes[cur].tok >= 0) {
            best = tr->nodes[cur].tok;
            *mlen = i;
        }
        if (i == n)
            break;
        int32_t c = tr->nodes[cur].first;
        while (c >= 0 && tr->nodes[c].b != u[i])
            c = tr->nodes[c].next;
        cur = c;
        i++;
    }
    return best;
}

/* ---------------------------------------------------------------- char classes */

static int ali_is_ws(uint32_t c) /* Rust char::is_whitespace (Unicode White_Space) */
{
    return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

static pcre2_code *ali_word_re;
static pthread_once_t ali_word_once = PTHREAD_ONCE_INIT;
static void ali_word_init(void)
{
    int ec;
    PCRE2_SIZE eo;
    ali_word_re = pcre2_compile((PCRE2_SPTR) "^[\\p{L}\\p{N}\\p{Nl}\\p{Mn}\\p{Mc}_]", PCRE2_ZERO_TERMINATED,
                                PCRE2_UTF | PCRE2_UCP, &ec, &eo, NULL);
}

/* Rust c.is_alphanumeric() || c == '_' for the character at s (approximately). */
static int ali_is_word_at(const char *s, size_t n)
{
    unsigned char b = (unsigned char)s[0];
    if (b < 0x80)
        return (b >= '0' && b <= '9') || (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') ||
               b == '_';
    pthread_once(&ali_word_once, ali_word_init);
    if (!ali_word_re)
        return 1;
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    if (!md)
        return 1;
    int rc = pcre2_match(ali_word_re, (PCRE2_SPTR)s, n, 0, PCRE2_NO_UTF_CHECK, md, NULL);
    pcre2_match_data_free(md);
    return rc >= 0;
}

static size_t ali_prev_char(const char *s, size_t i)
{
    do
        i--;
    while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80);
    return i;
}

static uint32_t ali_cp_at(const char *s, size_t n, size_t i, int *len)
{
    uint32_t cp = 0xFFFD;
    int bad;
    int l = al_utf8_decode((const unsigned char *)s + i, n - i, &cp, &bad);
    *len = l ? l : 1;
    return cp;
}

/* ---------------------------------------------------------------- added tokens */

typedef struct ali_split {
    size_t s, e;
    int32_t id; /* -1 = text */
} ali_split;

typedef struct ali_splits {
    ali_split *v;
    size_t n, cap;
} ali_splits;

static al_err ali_splits_push(ali_splits *a, size_t s, size_t e, int32_t id)
{
    if (a->n == a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 16;
        ali_split *v = realloc(a->v, nc * sizeof *v);
        if (!v)
            return ali_errf(AL_ENOMEM, "tokenizer: out of memory");
        a->v = v;
        a->cap = nc;
    }
    a->v[a->n++] = (ali_split){s, e, id};
    return AL_OK;
}

/* HF AddedVocabulary::find_matches: leftmost-longest, then single_word / lstrip / rstrip. */
static al_err ali_find_added(const al_tokenizer *t, const ali_trie *tr, const char *s, size_t n,
                             ali_splits *out)
{
    out->n = 0;
    size_t start_offset = 0, pos = 0;
    while (!tr->empty && pos < n) {
        if (tr->root[(unsigned char)s[pos]] < 0) {
            pos++;
            continue;
        }
        size_t mlen = 0;
        int32_t k = ali_trie_longest(tr, s + pos, n - pos, &mlen);
        if (k < 0) {
            pos++;
            continue;
        }
        const ali_added *ad = &t->added[k];
        size_t start = pos, stop = pos + mlen;
        pos = stop;
        if (ad->single_word) {
            int ok = (start == 0 || !ali_is_word_at(s + ali_prev_char(s, start),
                                                     n - ali_prev_char(s, start))) &&
                     (stop == n || !ali_is_word_at(s + stop, n - stop));
            if (!ok)
                continue;
        }
        if (ad->lstrip) {
            size_t ns = start;
            while (ns > 0) {
                size_t p = ali_prev_char(s, ns);
                int l;
                if (!ali_is_ws(ali_cp_at(s, n, p, &l)))
                    break;
                ns = p;
            }
            start = ns > start_offset ? ns : start_offset;
        }
        if (ad->rstrip) {
            while (stop < n) {
                int l;
                if (!ali_is_ws(ali_cp_at(s, n, stop, &l)))
                    break;
                stop += (size_t)l;
            }
        }
        if (start_offset < start)
            AL_TRY(ali_splits_push(out, start_offset, start, -1));
        AL_TRY(ali_splits_push(out, start, stop, ad->id));
        start_offset = stop;
    }
    if (start_offset < n)
        AL_TRY(ali_splits_push(out, start_offset, n, -1));
    return AL_OK;
}

/* ---------------------------------------------------------------- encode */

static al_err ali_encode_text(const al_tokenizer *t, const char *s, size_t n, ali_ivec *out)
{
    ali_splits raw = {0}, nsp = {0};
    ali_sbuf nb = {0};
    al_err e = ali_find_added(t, &t->trie_raw, s, n, &raw);
    for (size_t i = 0; i < raw.n && e == AL_OK; i++) {
        const ali_split *sp = &raw.v[i];
        if (sp->id >= 0) {
            e = ali_ivec_push(out, sp->id);
            continue;
        }
        const char *seg = s + sp->s;
        size_t segn = sp->e - sp->s;
        if (t->n_norms) {
            if ((e = ali_normalize(t, seg, segn, &nb)) != AL_OK)
                break;
            seg = nb.s;
            segn = nb.n;
        }
        if ((e = ali_find_added(t, &t->trie_norm, seg, segn, &nsp)) != AL_OK)
            break;
        for (size_t j = 0; j < nsp.n && e == AL_OK; j++) {
            const ali_split *q = &nsp.v[j];
            if (q->id >= 0)
                e = ali_ivec_push(out, q->id);
            else
                e = ali_pretok_encode(t, seg + q->s, q->e - q->s, sp->s == 0 && q->s == 0, out);
        }
    }
    free(raw.v);
    free(nsp.v);
    free(nb.s);
    return e;
}

al_err al_tokenizer_encode(const al_tokenizer *t, const char *text, size_t len, int add_special,
                           int32_t **ids, int32_t *n_ids)
{
    *ids = NULL;
    *n_ids = 0;
    if (!t || (!text && len))
        return ali_errf(AL_EINVAL, "tokenizer: encode: bad arguments");
    if (len > (size_t)1 << 30)
        return ali_errf(AL_ERANGE, "tokenizer: encode: text of %zu bytes is too long", len);
    char *fixed = NULL;
    if (len && al_utf8_check(text, len) != len) {
        size_t fl;
        AL_TRY(al_utf8_repair(text, len, &fixed, &fl));
        text = fixed;
        len = fl;
    }
    ali_ivec out = {0};
    al_err e = AL_OK;
    if (add_special && t->n_prefix)
        e = ali_ivec_append(&out, t->prefix_ids, (size_t)t->n_prefix);
    if (e == AL_OK && len)
        e = ali_encode_text(t, text, len, &out);
    if (e == AL_OK && add_special && t->n_suffix)
        e = ali_ivec_append(&out, t->suffix_ids, (size_t)t->n_suffix);
    if (e == AL_OK && !out.v) { /* always hand back an allocation */
        e = ali_ivec_push(&out, 0);
        out.n = 0;
    }
    free(fixed);
    if (e != AL_OK) {
        free(out.v);
        return e;
    }
    *ids = out.v;
    *n_ids = (int32_t)out.n;
    return AL_OK;
}

/* ---------------------------------------------------------------- accessors */

const char *al_tokenizer_piece(const al_tokenizer *t, int32_t id)
{
    return t && id >= 0 && id < t->n_vocab ? t->pieces[id] : NULL;
}

int32_t al_tokenizer_vocab_size(const al_tokenizer *t) { return t ? t->n_vocab : 0; }

int32_t al_tokenizer_token_id(const al_tokenizer *t, const char *piece)
{
    return t && piece ? ali_strmap_get(&t->all, piece, strlen(piece)) : -1;
}

int al_tokenizer_is_special(const al_tokenizer *t, int32_t id)
{
    return t && id >= 0 && id < t->n_vocab && (t->flags[id] & ALI_TF_SPECIAL);
}

int32_t al_tokenizer_bos(const al_tokenizer *t) { return t ? t->bos : -1; }
int32_t al_tokenizer_eos(const al_tokenizer *t) { return t ? t->eos : -1; }
const char *al_tokenizer_chat_template(const al_tokenizer *t) { return t ? t->chat_template : NULL; }
int al_tokenizer_adds_prefix(const al_tokenizer *t) { return t && t->n_prefix > 0; }
