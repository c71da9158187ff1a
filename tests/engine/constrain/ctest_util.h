/* ctest_util.h: header-only helpers for the constraint tests and benchmark: fixture paths, a byte
 * vocabulary, tokenizer.json vocabularies, DFA runs, random walks, brute-force masks. */
#ifndef CT_UTIL_H
#define CT_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "common/util.h"
#include "engine/constrain/constrain_int.h"

#define CT_SKIP 77

/* A repository-relative path that exists from the current directory or from this file's tree. */
static inline const char *ct_path(const char *rel, char *buf, size_t cap)
{
    if (access(rel, R_OK) == 0)
        return rel;
    const char *f = __FILE__, *p = strstr(f, "tests/engine/constrain/");
    if (p) {
        snprintf(buf, cap, "%.*s%s", (int)(p - f), f, rel);
        if (access(buf, R_OK) == 0)
            return buf;
    }
    return rel;
}

static inline json_t *ct_load_json(const char *rel)
{
    char buf[4096];
    json_error_t e;
    json_t *j = json_load_file(ct_path(rel, buf, sizeof buf), JSON_ALLOW_NUL, &e);
    if (!j)
        fprintf(stderr, "cannot load %s: %s (line %d)\n", rel, e.text, e.line);
    return j;
}

/* 256 single-byte tokens (id = byte) and EOS = 256. */
static inline al_vocab *ct_byte_vocab(void)
{
    static uint8_t b[256];
    const uint8_t *p[257];
    int32_t len[257], eos = 256;
    for (int i = 0; i < 256; i++) {
        b[i] = (uint8_t)i;
        p[i] = &b[i];
        len[i] = 1;
    }
    p[256] = NULL;
    len[256] = 0;
    al_vocab *v = NULL;
    assert_int_equal(al_vocab_new(257, p, len, &eos, 1, &v), AL_OK);
    return v;
}

static inline al_err ct_compile(al_constraint_kind k, const char *text, const al_vocab *v, al_grammar **g)
{
    al_constraint_spec s = {k, text, text ? strlen(text) : 0};
    return al_grammar_compile(&s, v, g);
}

static inline int32_t ct_run(al_grammar *g, int32_t s, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n && s > ALI_DFA_DEAD; i++)
        s = ali_grammar_step(g, s, p[i]);
    return s;
}

/* Does the grammar accept exactly these bytes? */
static inline int ct_match(al_grammar *g, const void *p, size_t n)
{
    int32_t s = ct_run(g, g->dfa.start, p, n);
    return s > ALI_DFA_DEAD && (g->dfa.flags[s] & ALI_DFA_ACCEPT);
}

/* Random byte-level walk: each step picks a uniformly random byte that keeps the DFA alive within
 * the byte budget (dist of the next state <= budget left - 1); stops at acceptance with p_stop, or
 * when forced. Returns the length (-1: stuck, which must not happen). */
static inline long ct_walk(al_grammar *g, al_rng *r, long budget, double p_stop, uint8_t *out, size_t cap)
{
    int32_t s = g->dfa.start;
    size_t n = 0;
    for (;;) {
        int acc = (g->dfa.flags[s] & ALI_DFA_ACCEPT) != 0;
        if (acc && (budget == 0 || n + 1 >= cap || al_rng_uniform(r) < p_stop))
            return (long)n;
        uint8_t cand[256];
        int32_t next[256], nc = 0;
        for (int b = 0; b < 256; b++) {
            int32_t t = ali_grammar_step(g, s, (uint8_t)b);
            if (t > ALI_DFA_DEAD && g->dfa.dist[t] <= budget - 1) {
                cand[nc] = (uint8_t)b;
                next[nc++] = t;
            }
        }
        if (nc == 0 || n + 1 >= cap)
            return acc ? (long)n : -1;
        int k = (int)(al_rng_next(r) % (uint64_t)nc);
        out[n++] = cand[k];
        s = next[k];
        budget--;
    }
}

/* --- tokenizer.json vocabularies ---------------------------------------------------------- */

static inline int ct_u8dec(const unsigned char **p, const unsigned char *end, uint32_t *cp)
{
    const unsigned char *s = *p;
    uint32_t c = s[0];
    int k = c < 0x80 ? 0 : c < 0xE0 ? 1 : c < 0xF0 ? 2 : 3;
    if (s + k >= end) {
        *p = end;
        return -1;
    }
    if (k)
        c &= (uint32_t)(0x3F >> k);
    for (int j = 1; j <= k; j++)
        c = (c << 6) | (s[j] & 0x3F);
    *p = s + k + 1;
    *cp = c;
    return 0;
}

/* Loads a Hugging Face tokenizer.json (BPE) as a vocabulary. byte_level: GPT-2 bytes_to_unicode
 * mapping; else SentencePiece: U+2581 is a space and <0xHH> is that byte. Special added tokens
 * get no bytes; those named in eos_names are the EOS ids. */
static inline al_vocab *ct_load_tokenizer(const char *rel, int byte_level, const char *const *eos_names)
{
    json_t *j = ct_load_json(rel);
    if (!j)
        return NULL;
    int inv[512];
    for (int i = 0; i < 512; i++)
        inv[i] = -1;
    int nn = 0;
    for (int b = 0; b < 256; b++) {
        int keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        inv[keep ? b : 256 + nn++] = b;
    }
    json_t *vocab = json_object_get(json_object_get(j, "model"), "vocab"), *added = json_object_get(j, "added_tokens");
    int32_t n = 0;
    const char *k;
    json_t *v;
    json_object_foreach(vocab, k, v) if (json_integer_value(v) + 1 > n) n = (int32_t)json_integer_value(v) + 1;
    for (size_t i = 0; i < json_array_size(added); i++) {
        int32_t id = (int32_t)json_integer_value(json_object_get(json_array_get(added, i), "id"));
        if (id + 1 > n)
            n = id + 1;
    }
    uint8_t **bytes = calloc((size_t)n, sizeof *bytes);
    int32_t *len = calloc((size_t)n, sizeof *len), eos[16], neos = 0;
    json_object_foreach(vocab, k, v) {
        int32_t id = (int32_t)json_integer_value(v);
        size_t kl = strlen(k);
        uint8_t *out = malloc(kl + 1);
        int32_t ol = 0, ok = 1;
        if (!byte_level && kl == 6 && strncmp(k, "<0x", 3) == 0 && k[5] == '>') {
            out[ol++] = (uint8_t)strtol(k + 3, NULL, 16);
        } else {
            const unsigned char *p = (const unsigned char *)k, *end = p + kl;
            while (p < end && ok) {
                uint32_t cp;
                const unsigned char *s0 = p;
                if (ct_u8dec(&p, end, &cp) != 0) {
                    ok = 0;
                } else if (byte_level) {
                    if (cp < 512 && inv[cp] >= 0)
                        out[ol++] = (uint8_t)inv[cp];
                    else
                        ok = 0;
                } else if (cp == 0x2581) {
                    out[ol++] = ' ';
                } else {
                    memcpy(out + ol, s0, (size_t)(p - s0));
                    ol += (int32_t)(p - s0);
                }
            }
        }
        if (ok) {
            bytes[id] = out;
            len[id] = ol;
        } else {
            free(out);
        }
    }
    for (size_t i = 0; i < json_array_size(added); i++) {
        json_t *t = json_array_get(added, i);
        int32_t id = (int32_t)json_integer_value(json_object_get(t, "id"));
        const char *c = json_string_value(json_object_get(t, "content"));
        free(bytes[id]);
        bytes[id] = NULL;
        len[id] = 0;
        for (int e = 0; eos_names[e]; e++)
            if (strcmp(eos_names[e], c) == 0 && neos < 16)
                eos[neos++] = id;
        if (json_is_true(json_object_get(t, "special")))
            continue;
        bytes[id] = (uint8_t *)strdup(c);
        len[id] = (int32_t)strlen(c);
    }
    al_vocab *out = NULL;
    al_vocab_new(n, (const uint8_t *const *)bytes, len, eos, neos, &out);
    for (int32_t i = 0; i < n; i++)
        free(bytes[i]);
    free(bytes);
    free(len);
    json_decref(j);
    return out;
}

/* Brute force: every token fed byte by byte from state s (EOS when accepting), optional dist limit. */
static inline int32_t ct_brute_mask(al_grammar *g, const al_vocab *v, int32_t s, int32_t limit, uint32_t *bits)
{
    int32_t cnt = 0;
    memset(bits, 0, (size_t)g->nwords * 4);
    for (int32_t i = 0; i < v->n; i++) {
        int is_eos = 0;
        for (int32_t e = 0; e < v->n_eos; e++)
            is_eos |= v->eos[e] == i;
        int ok;
        if (is_eos) {
            ok = (g->dfa.flags[s] & ALI_DFA_ACCEPT) != 0;
        } else if (!v->bytes[i] || v->len[i] <= 0) {
            ok = 0;
        } else {
            int32_t t = ct_run(g, s, v->bytes[i], (size_t)v->len[i]);
            ok = t > ALI_DFA_DEAD && (limit < 0 || g->dfa.dist[t] <= limit);
        }
        if (ok) {
            bits[i >> 5] |= 1u << (i & 31);
            cnt++;
        }
    }
    return cnt;
}

#endif
