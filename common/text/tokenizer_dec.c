/* tokenizer_dec.c: decoding (HF decoder chain) and the streaming detokenizer. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include <stdlib.h>
#include <string.h>

#include "common/text/tokenizer_int.h"
#include "common/utf8.h"

/* A list of strings in one arena. */
typedef struct ali_slist {
    ali_sbuf a;
    size_t *off, *len;
    size_t n, cap;
} ali_slist;

static void ali_slist_free(ali_slist *l)
{
    free(l->a.s);
    free(l->off);
    free(l->len);
    memset(l, 0, sizeof *l);
}

static void ali_slist_clear(ali_slist *l)
{
    l->a.n = 0;
    l->n = 0;
}

/* Starts a new string; append to it with ali_slist_cat. */
static al_err ali_slist_new(ali_slist *l)
{
    if (!l->a.s) /* entries point into the buffer, even empty ones (no NULL + 0) */
        AL_TRY(ali_sbuf_reserve(&l->a, 0));
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 64;
        size_t *o = realloc(l->off, nc * sizeof *o);
        if (o)
            l->off = o;
        size_t *n = realloc(l->len, nc * sizeof *n);
        if (n)
            l->len = n;
        if (!o || !n)
            return ali_errf(AL_ENOMEM, "tokenizer: out of memory");
        l->cap = nc;
    }
    l->off[l->n] = l->a.n;
    l->len[l->n++] = 0;
    return AL_OK;
}

static al_err ali_slist_cat(ali_slist *l, const void *p, size_t n)
{
    AL_TRY(ali_sbuf_add(&l->a, p, n));
    l->len[l->n - 1] += n;
    return AL_OK;
}

static al_err ali_slist_add(ali_slist *l, const void *p, size_t n)
{
    AL_TRY(ali_slist_new(l));
    return ali_slist_cat(l, p, n);
}

/* Appends s with every a replaced by b. */
static al_err ali_cat_replace(ali_slist *l, const char *s, size_t n, const char *a, size_t al,
                              const char *b, size_t bl)
{
    size_t p = 0;
    while (p < n) {
        const char *f = al ? memmem(s + p, n - p, a, al) : NULL;
        size_t q = f ? (size_t)(f - s) : n;
        AL_TRY(ali_slist_cat(l, s + p, q - p));
        if (!f)
            break;
        AL_TRY(ali_slist_cat(l, b, bl));
        p = q + al;
    }
    return AL_OK;
}

static int ali_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* "<0xXX>" -> byte, or -1. */
static int ali_byte_token(const char *s, size_t n)
{
    if (n != 6 || memcmp(s, "<0x", 3) || s[5] != '>')
        return -1;
    int h = ali_hexval(s[3]), l = ali_hexval(s[4]);
    return h < 0 || l < 0 ? -1 : h * 16 + l;
}

static al_err ali_flush_bytes(ali_slist *o, ali_sbuf *bytes)
{
    if (!bytes->n)
        return AL_OK;
    if (al_utf8_check(bytes->s, bytes->n) == bytes->n) {
        AL_TRY(ali_slist_add(o, bytes->s, bytes->n));
    } else {
        for (size_t i = 0; i < bytes->n; i++)
            AL_TRY(ali_slist_add(o, "\xEF\xBF\xBD", 3));
    }
    bytes->n = 0;
    return AL_OK;
}

static al_err ali_dec_step(const ali_dec *d, const ali_slist *in, ali_slist *o)
{
    ali_slist_clear(o);
    switch (d->kind) {
    case ALI_D_REPLACE:
        for (size_t i = 0; i < in->n; i++) {
            AL_TRY(ali_slist_new(o));
            AL_TRY(ali_cat_replace(o, in->a.s + in->off[i], in->len[i], d->a, d->alen, d->b,
                                   d->blen));
        }
        return AL_OK;
    case ALI_D_BYTEFALLBACK: {
        ali_sbuf bytes = {0};
        al_err e = AL_OK;
        for (size_t i = 0; i < in->n && e == AL_OK; i++) {
            const char *s = in->a.s + in->off[i];
            int b = ali_byte_token(s, in->len[i]);
            if (b >= 0) {
                unsigned char c = (unsigned char)b;
                e = ali_sbuf_add(&bytes, &c, 1);
                continue;
            }
            if ((e = ali_flush_bytes(o, &bytes)) == AL_OK)
                e = ali_slist_add(o, s, in->len[i]);
        }
        if (e == AL_OK)
            e = ali_flush_bytes(o, &bytes);
        free(bytes.s);
        return e;
    }
    case ALI_D_FUSE:
        AL_TRY(ali_slist_new(o));
        for (size_t i = 0; i < in->n; i++)
            AL_TRY(ali_slist_cat(o, in->a.s + in->off[i], in->len[i]));
        return AL_OK;
    case ALI_D_STRIP:
        for (size_t i = 0; i < in->n; i++) {
            const char *s = in->a.s + in->off[i];
            size_t b = 0, e = in->len[i];
            for (int k = 0; k < d->start && e - b >= d->alen && d->alen; k++) {
                if (memcmp(s + b, d->a, d->alen))
                    break;
                b += d->alen;
            }
            for (int k = 0; k < d->stop && e - b >= d->alen && d->alen; k++) {
                if (memcmp(s + e - d->alen, d->a, d->alen))
                    break;
                e -= d->alen;
            }
            AL_TRY(ali_slist_add(o, s + b, e - b));
        }
        return AL_OK;
    case ALI_D_METASPACE:
        for (size_t i = 0; i < in->n; i++) {
            AL_TRY(ali_slist_new(o));
            int drop = i == 0 && d->prepend;
            AL_TRY(ali_cat_replace(o, in->a.s + in->off[i], in->len[i], d->a, d->alen,
                                   drop ? "" : " ", drop ? 0 : 1));
        }
        return AL_OK;
    case ALI_D_BYTELEVEL: {
        ali_sbuf raw = {0};
        al_err e = AL_OK;
        for (size_t i = 0; i < in->n && e == AL_OK; i++) {
            const char *s = in->a.s + in->off[i];
            size_t n = in->len[i], start = raw.n;
            int ok = 1;
            for (size_t j = 0; j < n && ok;) {
                uint32_t cp;
                int bad, l = al_utf8_decode((const unsigned char *)s + j, n - j, &cp, &bad);
                int b = l ? ali_bytelevel_byte(cp) : -1;
                if (b < 0) {
                    ok = 0;
                    break;
                }
                unsigned char c = (unsigned char)b;
                if ((e = ali_sbuf_add(&raw, &c, 1)) != AL_OK)
                    break;
                j += (size_t)l;
            }
            if (!ok && e == AL_OK) { /* not a byte-level string: its UTF-8 bytes as they are */
                raw.n = start;
                e = ali_sbuf_add(&raw, s, n);
            }
        }
        char *fixed = NULL;
        size_t fl = 0;
        if (e == AL_OK)
            e = al_utf8_repair(raw.s ? raw.s : "", raw.n, &fixed, &fl);
        if (e == AL_OK)
            e = ali_slist_add(o, fixed, fl);
        free(fixed);
        free(raw.s);
        return e;
    }
    }
    return ali_errf(AL_EINTERNAL, "tokenizer: unknown decoder step");
}

static al_err ali_decode(const al_tokenizer *t, const int32_t *ids, size_t n, int skip_special,
                         ali_sbuf *out)
{
    ali_slist a = {0}, b = {0};
    al_err e = AL_OK;
    for (size_t i = 0; i < n && e == AL_OK; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->n_vocab || !t->pieces[id])
            continue;
        if (skip_special && (t->flags[id] & ALI_TF_SPECIAL))
            continue;
        e = ali_slist_add(&a, t->pieces[id], t->piece_len[id]);
    }
    for (int k = 0; k < t->n_decs && e == AL_OK; k++) {
        e = ali_dec_step(&t->decs[k], &a, &b);
        ali_slist tmp = a;
        a = b;
        b = tmp;
    }
    out->n = 0;
    e = e == AL_OK ? ali_sbuf_add(out, "", 0) : e;
    for (size_t i = 0; i < a.n && e == AL_OK; i++) {
        if (!t->has_decoder && i > 0)
            e = ali_sbuf_add(out, " ", 1);
        if (e == AL_OK)
            e = ali_sbuf_add(out, a.a.s + a.off[i], a.len[i]);
    }
    ali_slist_free(&a);
    ali_slist_free(&b);
    return e;
}

al_err al_tokenizer_decode(const al_tokenizer *t, const int32_t *ids, int32_t n, int skip_special,
                           char **text, size_t *len)
{
    *text = NULL;
    if (len)
        *len = 0;
    if (!t || n < 0 || (n && !ids))
        return ali_errf(AL_EINVAL, "tokenizer: decode: bad arguments");
    ali_sbuf out = {0};
    al_err e = ali_decode(t, ids, (size_t)n, skip_special, &out);
    if (e != AL_OK) {
        free(out.s);
        return e;
    }
    *text = out.s;
    if (len)
        *len = out.n;
    return AL_OK;
}

/* ---------------------------------------------------------------- streaming (HF DecodeStream) */

struct al_detok {
    const al_tokenizer *t;
    int skip_special;
    ali_ivec ids;       /* the window of ids still needed as context */
    ali_sbuf prefix;    /* decode of ids[0 .. prefix_index) */
    size_t prefix_index; /* ids before it only give context */
    ali_sbuf cur;
};

al_err al_detok_new(const al_tokenizer *t, int skip_special, al_detok **out)
{
    *out = NULL;
    if (!t)
        return ali_errf(AL_EINVAL, "detok: no tokenizer");
    al_detok *d = calloc(1, sizeof *d);
    if (!d)
        return ali_errf(AL_ENOMEM, "detok: out of memory");
    d->t = t;
    d->skip_special = skip_special;
    *out = d;
    return AL_OK;
}

void al_detok_free(al_detok *d)
{
    if (!d)
        return;
    free(d->ids.v);
    free(d->prefix.s);
    free(d->cur.s);
    free(d);
}

static al_err ali_emit(const char *s, size_t n, char **text, size_t *len)
{
    char *p = malloc(n + 1);
    if (!p)
        return ali_errf(AL_ENOMEM, "detok: out of memory");
    if (n)
        memcpy(p, s, n);
    p[n] = 0;
    *text = p;
    if (len)
        *len = n;
    return AL_OK;
}

static int ali_ends_fffd(const ali_sbuf *b)
{
    return b->n >= 3 && !memcmp(b->s + b->n - 3, "\xEF\xBF\xBD", 3);
}

al_err al_detok_push(al_detok *d, int32_t id, char **text, size_t *len)
{
    *text = NULL;
    if (len)
        *len = 0;
    AL_TRY(ali_ivec_push(&d->ids, id));
    AL_TRY(ali_decode(d->t, d->ids.v, d->ids.n, d->skip_special, &d->cur));
    if (d->cur.n > d->prefix.n && !ali_ends_fffd(&d->cur)) {
        size_t common = d->prefix.n;
        if (memcmp(d->cur.s, d->prefix.s ? d->prefix.s : "", common) != 0) {
            /* The context changed its own text (should not happen): emit what is new. */
            common = 0;
            while (common < d->prefix.n && d->cur.s[common] == d->prefix.s[common])
                common++;
        }
        AL_TRY(ali_emit(d->cur.s + common, d->cur.n - common, text, len));
        size_t new_prefix_index = d->ids.n - d->prefix_index;
        memmove(d->ids.v, d->ids.v + d->prefix_index,
                (d->ids.n - d->prefix_index) * sizeof(int32_t));
        d->ids.n -= d->prefix_index;
        AL_TRY(ali_decode(d->t, d->ids.v, d->ids.n, d->skip_special, &d->prefix));
        d->prefix_index = new_prefix_index;
        return AL_OK;
    }
    return ali_emit("", 0, text, len);
}

al_err al_detok_flush(al_detok *d, char **text, size_t *len)
{
    *text = NULL;
    if (len)
        *len = 0;
    AL_TRY(ali_decode(d->t, d->ids.v, d->ids.n, d->skip_special, &d->cur));
    size_t common = 0;
    while (common < d->prefix.n && common < d->cur.n && d->cur.s[common] == d->prefix.s[common])
        common++;
    AL_TRY(ali_emit(d->cur.s + common, d->cur.n - common, text, len));
    /* Everything is out: the whole window becomes context. */
    d->prefix.n = 0;
    AL_TRY(ali_sbuf_add(&d->prefix, d->cur.s, d->cur.n));
    d->prefix_index = d->ids.n;
    return AL_OK;
}

/* ---- one token's bytes (structured outputs, stop strings) ------------------------------------ */

/* The decoder chain on one piece as it reads inside a text: no first-token rules (Strip, the
 * Metaspace prepend), byte-fallback and byte-level pieces to their raw bytes, no UTF-8 repair. */
al_err al_tokenizer_token_bytes(const al_tokenizer *t, int32_t id, char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    if (id < 0 || id >= t->n_vocab || !t->pieces[id])
        return ali_errf(AL_ENOTFOUND, "token %d: not in the vocabulary", id);
    if (t->flags[id] & ALI_TF_SPECIAL)
        return ali_errf(AL_ENOTFOUND, "token %d: a special token (no text)", id);
    ali_sbuf cur = {0}, nxt = {0};
    al_err e = ali_sbuf_add(&cur, t->pieces[id], t->piece_len[id]);
    for (int k = 0; k < t->n_decs && e == AL_OK; k++) {
        const ali_dec *d = &t->decs[k];
        nxt.n = 0;
        switch (d->kind) {
        case ALI_D_REPLACE:
        case ALI_D_METASPACE: {
            const char *b = d->kind == ALI_D_REPLACE ? d->b : " ";
            size_t bl = d->kind == ALI_D_REPLACE ? d->blen : 1, p = 0;
            while (p < cur.n && e == AL_OK) {
                const char *f = d->alen ? memmem(cur.s + p, cur.n - p, d->a, d->alen) : NULL;
                size_t q = f ? (size_t)(f - cur.s) : cur.n;
                e = ali_sbuf_add(&nxt, cur.s + p, q - p);
                if (!f)
                    break;
                if (e == AL_OK)
                    e = ali_sbuf_add(&nxt, b, bl);
                p = q + d->alen;
            }
            e = e == AL_OK ? ali_sbuf_add(&nxt, "", 0) : e;
            break;
        }
        case ALI_D_BYTEFALLBACK: {
            int byte = ali_byte_token(cur.s, cur.n);
            unsigned char c = (unsigned char)byte;
            e = byte >= 0 ? ali_sbuf_add(&nxt, &c, 1) : ali_sbuf_add(&nxt, cur.s, cur.n);
            break;
        }
        case ALI_D_BYTELEVEL: {
            size_t j = 0;
            for (; j < cur.n && e == AL_OK;) {
                uint32_t cp;
                int bad, l = al_utf8_decode((const unsigned char *)cur.s + j, cur.n - j, &cp, &bad);
                int b = l ? ali_bytelevel_byte(cp) : -1;
                if (b < 0)
                    break;
                unsigned char c = (unsigned char)b;
                e = ali_sbuf_add(&nxt, &c, 1);
                j += (size_t)l;
            }
            if (j < cur.n && e == AL_OK) { /* not a byte-level string: its UTF-8 bytes as they are */
                nxt.n = 0;
                e = ali_sbuf_add(&nxt, cur.s, cur.n);
            }
            break;
        }
        default: /* Fuse: one piece; Strip: only at the start or end of a whole text */
            e = ali_sbuf_add(&nxt, cur.s, cur.n);
            break;
        }
        ali_sbuf tmp = cur;
        cur = nxt;
        nxt = tmp;
    }
    free(nxt.s);
    if (e != AL_OK) {
        free(cur.s);
        return e;
    }
    if (!cur.s && (e = ali_sbuf_add(&cur, "", 0)) != AL_OK)
        return e;
    *out = cur.s;
    *len = cur.n;
    return AL_OK;
}
