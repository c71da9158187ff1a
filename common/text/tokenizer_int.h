/* tokenizer_int.h: internals shared by the tokenizer_*.c files (not a public API). */
#ifndef AL_TOKENIZER_INT_H
#define AL_TOKENIZER_INT_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/text/tokenizer.h"

/* ---- growable buffers ---- */
typedef struct ali_ivec {
    int32_t *v;
    size_t n, cap;
} ali_ivec;
al_err ali_ivec_push(ali_ivec *a, int32_t x);
al_err ali_ivec_append(ali_ivec *a, const int32_t *x, size_t n);

typedef struct ali_sbuf {
    char *s;
    size_t n, cap;
} ali_sbuf;
al_err ali_sbuf_reserve(ali_sbuf *b, size_t extra);
al_err ali_sbuf_add(ali_sbuf *b, const void *p, size_t n);

/* ---- hash maps ---- */
uint64_t ali_hash_bytes(const void *p, size_t n);

typedef struct ali_strmap_slot {
    uint64_t h;
    const char *key; /* not owned */
    uint32_t klen;
    int32_t val;
} ali_strmap_slot;
typedef struct ali_strmap {
    ali_strmap_slot *s;
    size_t mask, n;
} ali_strmap;
/* Inserts or overwrites key -> val; key must outlive the map. */
al_err ali_strmap_put(ali_strmap *m, const char *key, size_t klen, int32_t val);
int32_t ali_strmap_get(const ali_strmap *m, const char *key, size_t klen); /* -1 if absent */
void ali_strmap_free(ali_strmap *m);

typedef struct ali_mergemap {
    uint64_t *keys; /* (a+1) << 32 | b, 0 = empty */
    int32_t *rank, *new_id;
    size_t mask, n;
} ali_mergemap;
al_err ali_mergemap_put(ali_mergemap *m, int32_t a, int32_t b, int32_t rank, int32_t new_id);
/* 1 (and the rank and new id) when (a, b) merges. */
int ali_mergemap_get(const ali_mergemap *m, int32_t a, int32_t b, int32_t *rank, int32_t *new_id);
void ali_mergemap_free(ali_mergemap *m);

/* ---- word cache (thread-safe, direct mapped) ---- */
typedef struct ali_cache ali_cache;
al_err ali_cache_new(ali_cache **out);
void ali_cache_free(ali_cache *c);
/* Appends the cached ids of key to out; 1 on hit. */
int ali_cache_get(ali_cache *c, const char *key, size_t klen, ali_ivec *out, al_err *err);
void ali_cache_put(ali_cache *c, const char *key, size_t klen, const int32_t *ids, size_t n);

/* ---- added tokens ---- */
typedef struct ali_added {
    char *content; /* as in tokenizer.json */
    size_t len;
    char *pattern; /* content, normalized when `normalized` */
    size_t plen;
    int32_t id;
    uint8_t special, lstrip, rstrip, single_word, normalized;
} ali_added;

typedef struct ali_trie_node {
    int32_t first, next; /* first child, next sibling (-1 = none) */
    int32_t tok;         /* index into added[] or -1 */
    uint8_t b;
} ali_trie_node;
typedef struct ali_trie {
    ali_trie_node *nodes;
    int32_t n, cap;
    int32_t root[256]; /* node index per first byte, -1 = none */
    int empty;         /* no patterns at all */
} ali_trie;
al_err ali_trie_add(ali_trie *tr, const char *p, size_t n, int32_t tok);
void ali_trie_init(ali_trie *tr);
void ali_trie_free(ali_trie *tr);
/* Longest pattern starting at s[0..n): its token index and *mlen, or -1. */
int32_t ali_trie_longest(const ali_trie *tr, const char *s, size_t n, size_t *mlen);

/* ---- pipeline steps ---- */
enum { ALI_N_PREPEND, ALI_N_REPLACE, ALI_N_REPLACE_RE };
typedef struct ali_norm {
    int kind;
    char *a, *b; /* prepend: a; replace: a -> b */
    size_t alen, blen;
    pcre2_code *re;
} ali_norm;

enum { ALI_P_SPLIT, ALI_P_PREFIX_SPACE, ALI_P_METASPACE };
enum { ALI_B_REMOVED, ALI_B_ISOLATED, ALI_B_MERGED_PREV, ALI_B_MERGED_NEXT, ALI_B_CONTIGUOUS };
typedef struct ali_pretok {
    int kind;
    int behavior, invert;
    pcre2_code *re; /* regex split */
    char *str;      /* string split (when re == NULL) */
    size_t slen;
    char repl[8]; /* metaspace replacement (UTF-8) */
    int repl_len;
    int prepend; /* metaspace: 0 never, 1 first, 2 always */
    int split;   /* metaspace: split on the replacement (MergedWithNext) */
} ali_pretok;

enum { ALI_D_REPLACE, ALI_D_BYTEFALLBACK, ALI_D_FUSE, ALI_D_STRIP, ALI_D_BYTELEVEL, ALI_D_METASPACE };
typedef struct ali_dec {
    int kind;
    char *a, *b; /* replace a -> b; strip: a = the char; metaspace: a = replacement */
    size_t alen, blen;
    int start, stop; /* strip counts */
    int prepend;     /* metaspace: strip the first leading space unless 'never' */
} ali_dec;

struct al_tokenizer {
    char *path; /* tokenizer.json path (for messages) */
    int32_t n_vocab;
    char **pieces;      /* [n_vocab] id -> string (NULL = hole) */
    uint32_t *piece_len;
    char **extra;       /* model strings replaced in pieces[] by added tokens (still map keys) */
    int n_extra;
    uint8_t *flags;     /* [n_vocab] ALI_TF_* */
    ali_strmap vocab;   /* model vocab */
    ali_strmap all;     /* model vocab + added tokens */
    ali_mergemap merges;
    int32_t unk_id; /* -1 */
    int fuse_unk, byte_fallback, ignore_merges;
    int32_t byte_tok[256]; /* <0xXX> ids for byte_fallback, -1 */
    ali_added *added;
    int n_added;
    ali_trie trie_raw, trie_norm;
    ali_norm *norms;
    int n_norms;
    ali_pretok *pre;
    int n_pre;
    int byte_level;       /* ByteLevel pre-tokenizer: map bytes to GPT-2 chars */
    int ws_split;         /* words may be split before U+2581 runs (see tokenizer_bpe.c) */
    ali_dec *decs;
    int n_decs, has_decoder;
    int32_t *prefix_ids, *suffix_ids; /* post_processor single template */
    int n_prefix, n_suffix;
    int32_t bos, eos;
    char *chat_template;
    ali_cache *cache;
};
#define ALI_TF_ADDED 1
#define ALI_TF_SPECIAL 2

/* GPT-2 byte <-> unicode mapping. */
extern char ali_bytelevel_str[256][3]; /* UTF-8 of each byte's char, NUL padded */
extern uint8_t ali_bytelevel_len[256];
/* Byte for the code point, or -1. */
int ali_bytelevel_byte(uint32_t cp);
void ali_bytelevel_init(void);

/* BPE model: appends the ids of one pre-tokenized word (raw bytes when t->byte_level). */
al_err ali_bpe_word(const al_tokenizer *t, const char *w, size_t n, ali_ivec *out);
/* Computes t->ws_split from the vocab. */
void ali_bpe_prepare(al_tokenizer *t);

/* Normalizes s into out (replacing its contents). */
al_err ali_normalize(const al_tokenizer *t, const char *s, size_t n, ali_sbuf *out);

/* Pre-tokenized pieces: ranges of an arena. */
typedef struct ali_piece {
    size_t off, len;
} ali_piece;
typedef struct ali_pieces {
    ali_piece *p;
    size_t n, cap;
} ali_pieces;
/* Pre-tokenizes s (at_start: s begins the original input) and runs the model on each piece. */
al_err ali_pretok_encode(const al_tokenizer *t, const char *s, size_t n, int at_start,
                         ali_ivec *out);

/* pcre2 helpers */
al_err ali_regex_compile(const char *path, const char *field, const char *pat, size_t plen,
                         pcre2_code **out);

#endif
