/* tokenizer_pre.c: normalizers and pre-tokenizers (regex splits on PCRE2, ByteLevel, Metaspace). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include <stdlib.h>
#include <string.h>

#include "common/text/tokenizer_int.h"

/* HF runs these regexes on Oniguruma, whose \s is exactly Unicode White_Space; PCRE2's \s
 * (UCP) also matches U+180E. Rewrite \s and \S with the explicit White_Space set. */
#define ALI_WS "\\t\\n\\x{0B}\\x{0C}\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}" \
               "\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
static char *ali_regex_rewrite(const char *p, size_t n, size_t *out_len)
{
    static const char ws[] = ALI_WS;
    size_t wl = sizeof ws - 1;
    char *o = malloc(n * (wl + 4) + 1);
    if (!o)
        return NULL;
    size_t k = 0;
    int in_class = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '\\' && i + 1 < n) {
            char d = p[i + 1];
            if ((d == 's' || d == 'S') && !in_class) {
                o[k++] = '[';
                if (d == 'S')
                    o[k++] = '^';
                memcpy(o + k, ws, wl);
                k += wl;
                o[k++] = ']';
            } else if (d == 's' && in_class) {
                memcpy(o + k, ws, wl);
                k += wl;
            } else {
                o[k++] = c;
                o[k++] = d;
            }
            i++;
            continue;
        }
        if (c == '[' && !in_class) {
            in_class = 1;
            o[k++] = c;
            /* a leading ']' or '^]' is literal */
            if (i + 1 < n && p[i + 1] == '^')
                o[k++] = p[++i];
            if (i + 1 < n && p[i + 1] == ']')
                o[k++] = p[++i];
            continue;
        }
        if (c == ']' && in_class)
            in_class = 0;
        o[k++] = c;
    }
    o[k] = 0;
    *out_len = k;
    return o;
}

al_err ali_regex_compile(const char *path, const char *field, const char *pat, size_t plen,
                         pcre2_code **out)
{
    size_t rl;
    char *rw = ali_regex_rewrite(pat, plen, &rl);
    if (!rw)
        return ali_errf(AL_ENOMEM, "tokenizer: out of memory");
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)rw, rl, PCRE2_UTF | PCRE2_UCP, &ec, &eo, NULL);
    free(rw);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return ali_errf(AL_EFORMAT, "%s: %s: bad regex /%.*s/: %s", path, field, (int)plen, pat,
                        (char *)msg);
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter on failure */
    *out = re;
    return AL_OK;
}

/* ---------------------------------------------------------------- matching */

typedef struct ali_matcher {
    pcre2_match_data *md;
    pcre2_match_context *mc;
    pcre2_jit_stack *js;
} ali_matcher;

static void ali_matcher_free(ali_matcher *m)
{
    if (m->md)
        pcre2_match_data_free(m->md);
    if (m->mc)
        pcre2_match_context_free(m->mc);
    if (m->js)
        pcre2_jit_stack_free(m->js);
    memset(m, 0, sizeof *m);
}

/* Next non-empty match of re in s[pos..n); 1 found, 0 none, or an error. */
static int ali_re_next(pcre2_code *re, ali_matcher *m, const char *s, size_t n, size_t pos,
                       size_t *ms, size_t *me, al_err *err)
{
    if (!m->md) {
        m->md = pcre2_match_data_create_from_pattern(re, NULL);
        if (!m->md) {
            *err = ali_errf(AL_ENOMEM, "tokenizer: out of memory");
            return -1;
        }
    }
    while (pos <= n) {
        int rc = pcre2_match(re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, m->md, m->mc);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !m->js) {
            m->mc = pcre2_match_context_create(NULL);
            m->js = pcre2_jit_stack_create(64 * 1024, 8 * 1024 * 1024, NULL);
            if (!m->mc || !m->js) {
                *err = ali_errf(AL_ENOMEM, "tokenizer: out of memory");
                return -1;
            }
            pcre2_jit_stack_assign(m->mc, NULL, m->js);
            continue;
        }
        if (rc == PCRE2_ERROR_NOMATCH)
            return 0;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            *err = ali_errf(AL_EINTERNAL, "tokenizer: regex match failed: %s", (char *)msg);
            return -1;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(m->md);
        if (ov[1] > ov[0]) {
            *ms = ov[0];
            *me = ov[1];
            return 1;
        }
        /* empty match: skip one character (the HF splitter drops empty pieces) */
        pos = ov[0] + 1;
        while (pos < n && ((unsigned char)s[pos] & 0xC0) == 0x80)
            pos++;
    }
    return 0;
}

/* ---------------------------------------------------------------- normalizers */

al_err ali_normalize(const al_tokenizer *t, const char *s, size_t n, ali_sbuf *out)
{
    out->n = 0;
    AL_TRY(ali_sbuf_add(out, s, n));
    ali_sbuf tmp = {0};
    al_err e = AL_OK;
    ali_matcher m = {0};
    for (int i = 0; i < t->n_norms && e == AL_OK; i++) {
        const ali_norm *nm = &t->norms[i];
        tmp.n = 0;
        if (nm->kind == ALI_N_PREPEND) {
            if (out->n == 0)
                continue;
            if ((e = ali_sbuf_add(&tmp, nm->a, nm->alen)) != AL_OK ||
                (e = ali_sbuf_add(&tmp, out->s, out->n)) != AL_OK)
                break;
        } else if (nm->kind == ALI_N_REPLACE) {
            size_t p = 0;
            while (p < out->n && e == AL_OK) {
                const char *f = nm->alen ? memmem(out->s + p, out->n - p, nm->a, nm->alen) : NULL;
                size_t q = f ? (size_t)(f - out->s) : out->n;
                e = ali_sbuf_add(&tmp, out->s + p, q - p);
                if (f && e == AL_OK)
                    e = ali_sbuf_add(&tmp, nm->b, nm->blen);
                p = f ? q + nm->alen : out->n;
            }
        } else { /* regex replace */
            size_t p = 0, ms, me;
            ali_matcher_free(&m);
            int r;
            while ((r = ali_re_next(nm->re, &m, out->s, out->n, p, &ms, &me, &e)) == 1) {
                if ((e = ali_sbuf_add(&tmp, out->s + p, ms - p)) != AL_OK ||
                    (e = ali_sbuf_add(&tmp, nm->b, nm->blen)) != AL_OK)
                    break;
                p = me;
            }
            if (r < 0 || e != AL_OK)
                break;
            e = ali_sbuf_add(&tmp, out->s + p, out->n - p);
        }
        if (e == AL_OK) {
            ali_sbuf sw = *out;
            *out = tmp;
            tmp = sw;
        }
    }
    ali_matcher_free(&m);
    free(tmp.s);
    if (e == AL_OK && !out->s)
        e = ali_sbuf_add(out, "", 0);
    return e;
}

/* ---------------------------------------------------------------- pre-tokenizers */

typedef struct ali_seg {
    size_t s, e;
    int m;
} ali_seg;

typedef struct ali_pt {
    ali_sbuf arena;
    ali_piece *p, *q; /* current and next piece lists */
    uint8_t *pf, *qf; /* per piece: begins the original input */
    size_t np, nq, capp, capq;
    ali_seg *seg;
    size_t nseg, capseg;
} ali_pt;

static al_err ali_pt_emit(ali_pt *pt, size_t off, size_t len, int first)
{
    if (len == 0)
        return AL_OK;
    if (pt->nq == pt->capq) {
        size_t nc = pt->capq ? pt->capq * 2 : 64;
        ali_piece *q = realloc(pt->q, nc * sizeof *q);
        if (q)
            pt->q = q;
        uint8_t *qf = realloc(pt->qf, nc);
        if (qf)
            pt->qf = qf;
        if (!q || !qf)
            return ali_errf(AL_ENOMEM, "tokenizer: out of memory");
        pt->capq = nc;
    }
    pt->q[pt->nq] = (ali_piece){off, len};
    pt->qf[pt->nq++] = (uint8_t)first;
    return AL_OK;
}

static al_err ali_pt_seg(ali_pt *pt, size_t s, size_t e, int m)
{
    if (pt->nseg == pt->capseg) {
        size_t nc = pt->capseg ? pt->capseg * 2 : 64;
        ali_seg *g = realloc(pt->seg, nc * sizeof *g);
        if (!g)
            return ali_errf(AL_ENOMEM, "tokenizer: out of memory");
        pt->seg = g;
        pt->capseg = nc;
    }
    pt->seg[pt->nseg++] = (ali_seg){s, e, m};
    return AL_OK;
}

/* Splits piece (off, len) with pattern matches per the HF SplitDelimiterBehavior. */
static al_err ali_pt_split(ali_pt *pt, const ali_pretok *st, ali_matcher *m, size_t off,
                           size_t len, int first)
{
    const char *s = pt->arena.s + off;
    pt->nseg = 0;
    size_t prev = 0, ms, me;
    al_err e = AL_OK;
    for (;;) {
        int r;
        if (st->re) {
            r = ali_re_next(st->re, m, s, len, prev, &ms, &me, &e);
            if (r < 0)
                return e;
        } else {
            const char *f = st->slen && prev < len ? memmem(s + prev, len - prev, st->str, st->slen)
                                                    : NULL;
            r = f != NULL;
            if (f) {
                ms = (size_t)(f - s);
                me = ms + st->slen;
            }
        }
        if (!r)
            break;
        if (prev != ms)
            AL_TRY(ali_pt_seg(pt, prev, ms, 0));
        AL_TRY(ali_pt_seg(pt, ms, me, 1));
        prev = me;
    }
    if (prev != len)
        AL_TRY(ali_pt_seg(pt, prev, len, 0));
    if (st->invert)
        for (size_t i = 0; i < pt->nseg; i++)
            pt->seg[i].m = !pt->seg[i].m;
    /* Apply the behaviour in place on seg[] (segments become plain pieces). */
    size_t k = 0;
    int prevm = 0;
    switch (st->behavior) {
    case ALI_B_REMOVED:
        for (size_t i = 0; i < pt->nseg; i++)
            if (!pt->seg[i].m)
                pt->seg[k++] = pt->seg[i];
        break;
    case ALI_B_ISOLATED:
        k = pt->nseg;
        break;
    case ALI_B_CONTIGUOUS:
        for (size_t i = 0; i < pt->nseg; i++) {
            if (k && pt->seg[i].m == prevm)
                pt->seg[k - 1].e = pt->seg[i].e;
            else
                pt->seg[k++] = pt->seg[i];
            prevm = pt->seg[i].m;
        }
        break;
    case ALI_B_MERGED_PREV:
        for (size_t i = 0; i < pt->nseg; i++) {
            if (pt->seg[i].m && !prevm && k)
                pt->seg[k - 1].e = pt->seg[i].e;
            else
                pt->seg[k++] = pt->seg[i];
            prevm = pt->seg[i].m;
        }
        break;
    case ALI_B_MERGED_NEXT: {
        /* walk backwards, then reverse */
        for (size_t i = pt->nseg; i-- > 0;) {
            if (pt->seg[i].m && !prevm && k)
                pt->seg[k - 1].s = pt->seg[i].s;
            else
                pt->seg[k++] = pt->seg[i];
            prevm = pt->seg[i].m;
        }
        for (size_t i = 0; i < k / 2; i++) {
            ali_seg tmp = pt->seg[i];
            pt->seg[i] = pt->seg[k - 1 - i];
            pt->seg[k - 1 - i] = tmp;
        }
        break;
    }
    }
    for (size_t i = 0; i < k; i++)
        AL_TRY(ali_pt_emit(pt, off + pt->seg[i].s, pt->seg[i].e - pt->seg[i].s,
                           first && pt->seg[i].s == 0));
    return AL_OK;
}

static al_err ali_pt_step(ali_pt *pt, const ali_pretok *st, ali_matcher *m)
{
    pt->nq = 0;
    for (size_t i = 0; i < pt->np; i++) {
        size_t off = pt->p[i].off, len = pt->p[i].len;
        int first = pt->pf[i];
        if (st->kind == ALI_P_SPLIT) {
            AL_TRY(ali_pt_split(pt, st, m, off, len, first));
        } else if (st->kind == ALI_P_PREFIX_SPACE) {
            if (pt->arena.s[off] == ' ') {
                AL_TRY(ali_pt_emit(pt, off, len, first));
            } else {
                size_t no = pt->arena.n;
                AL_TRY(ali_sbuf_reserve(&pt->arena, len + 1));
                pt->arena.s[pt->arena.n++] = ' ';
                memcpy(pt->arena.s + pt->arena.n, pt->arena.s + off, len);
                pt->arena.n += len;
                AL_TRY(ali_pt_emit(pt, no, len + 1, first));
            }
        } else { /* metaspace */
            size_t no = pt->arena.n;
            size_t rl = (size_t)st->repl_len;
            AL_TRY(ali_sbuf_reserve(&pt->arena, len * rl + rl));
            char *o = pt->arena.s + no;
            size_t k = 0;
            const char *src = pt->arena.s + off;
            int starts = (len >= rl && !memcmp(src, st->repl, rl)) || (len && src[0] == ' ');
            if (!starts && (st->prepend == 2 || (st->prepend == 1 && first))) {
                memcpy(o, st->repl, rl);
                k += rl;
            }
            for (size_t j = 0; j < len; j++) {
                if (src[j] == ' ') {
                    memcpy(o + k, st->repl, rl);
                    k += rl;
                } else {
                    o[k++] = src[j];
                }
            }
            pt->arena.n += k;
            if (st->split) {
                ali_pretok sp = {.kind = ALI_P_SPLIT, .behavior = ALI_B_MERGED_NEXT,
                                 .str = (char *)st->repl, .slen = rl};
                AL_TRY(ali_pt_split(pt, &sp, m, no, k, first));
            } else {
                AL_TRY(ali_pt_emit(pt, no, k, first));
            }
        }
    }
    ali_piece *tp = pt->p;
    pt->p = pt->q;
    pt->q = tp;
    uint8_t *tf = pt->pf;
    pt->pf = pt->qf;
    pt->qf = tf;
    size_t tc = pt->capp;
    pt->capp = pt->capq;
    pt->capq = tc;
    pt->np = pt->nq;
    return AL_OK;
}

al_err ali_pretok_encode(const al_tokenizer *t, const char *s, size_t n, int at_start,
                         ali_ivec *out)
{
    if (n == 0)
        return AL_OK;
    if (t->n_pre == 0)
        return ali_bpe_word(t, s, n, out);
    /* Fast path: one regex split (Isolated) straight into the model. */
    if (t->n_pre == 1 && t->pre[0].kind == ALI_P_SPLIT && t->pre[0].re &&
        t->pre[0].behavior == ALI_B_ISOLATED && !t->pre[0].invert) {
        ali_matcher m = {0};
        al_err e = AL_OK;
        size_t prev = 0, ms, me;
        int r;
        while ((r = ali_re_next(t->pre[0].re, &m, s, n, prev, &ms, &me, &e)) == 1) {
            if (ms > prev && (e = ali_bpe_word(t, s + prev, ms - prev, out)) != AL_OK)
                break;
            if ((e = ali_bpe_word(t, s + ms, me - ms, out)) != AL_OK)
                break;
            prev = me;
        }
        if (r >= 0 && e == AL_OK && prev < n)
            e = ali_bpe_word(t, s + prev, n - prev, out);
        ali_matcher_free(&m);
        return e;
    }
    ali_pt pt = {0};
    al_err e = ali_sbuf_add(&pt.arena, s, n);
    if (e == AL_OK)
        e = ali_pt_emit(&pt, 0, n, at_start);
    if (e == AL_OK) {
        /* move q -> p */
        ali_piece *tp = pt.p;
        pt.p = pt.q;
        pt.q = tp;
        uint8_t *tf = pt.pf;
        pt.pf = pt.qf;
        pt.qf = tf;
        pt.capp = pt.capq;
        pt.capq = 0;
        pt.np = pt.nq;
    }
    ali_matcher m = {0};
    for (int i = 0; i < t->n_pre && e == AL_OK; i++) {
        ali_matcher_free(&m);
        e = ali_pt_step(&pt, &t->pre[i], &m);
    }
    ali_matcher_free(&m);
    for (size_t i = 0; i < pt.np && e == AL_OK; i++)
        e = ali_bpe_word(t, pt.arena.s + pt.p[i].off, pt.p[i].len, out);
    free(pt.arena.s);
    free(pt.p);
    free(pt.q);
    free(pt.pf);
    free(pt.qf);
    free(pt.seg);
    return e;
}
