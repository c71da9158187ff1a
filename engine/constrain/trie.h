/* trie.h: the byte trie of a vocabulary, flattened in DFS preorder with a skip index (the next
 * node outside a node's subtree), shared by every grammar compiled for that vocabulary. */
#ifndef ALI_TRIE_H
#define ALI_TRIE_H

#include <stdint.h>

#include "common/err.h"
#include "engine/constrain/vocab.h"

/* Tokens longer than this are never allowed. */
#define ALI_TRIE_MAX_TOKEN 4096

typedef struct ali_tnode {
    uint8_t byte;   /* the byte on the edge into this node */
    uint8_t dup;    /* tok has same-bytes duplicates (dup[] chain) */
    uint16_t depth; /* 0 for the children of the root */
    int32_t skip;   /* index of the next node not in this node's subtree */
    int32_t tok;    /* a token whose bytes end here (more in dup[]), or -1 */
} ali_tnode;

typedef struct ali_trie {
    int refs;            /* atomic; guarded list membership in trie.c */
    uint64_t hash;       /* al_vocab_hash */
    int32_t n;           /* vocabulary size */
    int32_t nnodes;
    ali_tnode *nodes;    /* [nnodes] */
    int32_t *dup;        /* [n] next token with the same bytes, -1 */
    int32_t *eos;        /* [n_eos] */
    int32_t n_eos;
    uint32_t *off;       /* [n + 1] token bytes are data[off[i] .. off[i+1]) (empty: never allowed) */
    uint8_t *data;
    uint8_t *is_eos;     /* [n] */
    int32_t max_len;     /* longest token in the trie */
    int byte_complete;   /* every single byte is a (non-EOS) token */
    uint8_t single[256]; /* single[b]: byte b alone is a (non-EOS) token */
    struct ali_trie *next;
} ali_trie;

/* The trie of v, built on first use and then shared (a new reference). */
al_err ali_trie_get(const al_vocab *v, ali_trie **out);
void ali_trie_unref(ali_trie *t);

#endif
