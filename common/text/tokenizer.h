/* tokenizer.h: Hugging Face tokenizer.json BPE tokenizers (SentencePiece-style and byte-level). */
#ifndef AL_TOKENIZER_H
#define AL_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* Supported tokenizer.json subset (anything else is a clear AL_EUNSUPPORTED / AL_EFORMAT error):
 *   model:          BPE (vocab, merges as "a b" or ["a","b"], unk_token, fuse_unk, byte_fallback,
 *                   ignore_merges; dropout is ignored)
 *   normalizer:     Prepend, Replace (String or Regex), Sequence; NFC/NFKC/NFD/NFKD are accepted
 *                   as identity with a warning (no Unicode tables here)
 *   pre_tokenizer:  Split (String or Regex; Isolated, Removed, MergedWithPrevious,
 *                   MergedWithNext, Contiguous; invert), ByteLevel (add_prefix_space, use_regex,
 *                   must be the last step), Digits, Metaspace, Sequence
 *   post_processor: TemplateProcessing (single), ByteLevel, BertProcessing, RobertaProcessing,
 *                   Sequence
 *   decoder:        Replace, ByteFallback, Fuse, Strip, ByteLevel, Metaspace, Sequence
 *   added_tokens:   matched before the model, leftmost-longest, with lstrip / rstrip /
 *                   single_word / normalized as the HF library does.
 * Regexes run on PCRE2 (UTF + UCP, JIT) with \s / \S rewritten to Unicode White_Space, which is
 * what HF's Oniguruma matches (PCRE2's own \s also takes U+180E).
 *
 * Invalid UTF-8 input: encode first replaces every maximal ill-formed subpart with U+FFFD
 * (exactly Python's bytes.decode("utf-8", "replace")), then tokenizes the repaired text.
 * Decode output is always valid UTF-8 (ill-formed byte sequences decode to U+FFFD as in HF).
 *
 * A loaded tokenizer is immutable apart from an internal, locked word cache: every function
 * taking a const al_tokenizer * may be called from several threads at once. */

typedef struct al_tokenizer al_tokenizer;

/* A tokenizer.json file, or a directory holding tokenizer.json (and optionally
 * tokenizer_config.json, read for chat_template / bos_token / eos_token / add_bos_token). */
al_err al_tokenizer_load(const char *path, al_tokenizer **out);
void al_tokenizer_free(al_tokenizer *t);

/* add_special: apply the post_processor (e.g. BOS) like HF encode(add_special_tokens=True).
 * *ids is malloc'd (never NULL on success, even when *n_ids == 0). */
al_err al_tokenizer_encode(const al_tokenizer *t, const char *text, size_t len, int add_special,
                           int32_t **ids, int32_t *n_ids);
/* Unknown ids are skipped (as HF does). *text is malloc'd and NUL-terminated. */
al_err al_tokenizer_decode(const al_tokenizer *t, const int32_t *ids, int32_t n, int skip_special,
                           char **text, size_t *len);

const char *al_tokenizer_piece(const al_tokenizer *t, int32_t id); /* vocab string or NULL */
/* The bytes token id stands for inside a text (the decoder chain without its start-of-text rules:
 * "▁the" -> " the", "<0x0A>" -> "\n", byte-level "Ġthe" -> " the"; a lone byte of a multi-byte
 * character stays that byte). *out is malloc'd (len may be 0). AL_ENOTFOUND for ids that are
 * holes or special tokens (no text). */
al_err al_tokenizer_token_bytes(const al_tokenizer *t, int32_t id, char **out, size_t *len);
int32_t al_tokenizer_vocab_size(const al_tokenizer *t);           /* max id + 1 (with added) */
int32_t al_tokenizer_token_id(const al_tokenizer *t, const char *piece); /* -1 if none */
int al_tokenizer_is_special(const al_tokenizer *t, int32_t id);
int32_t al_tokenizer_bos(const al_tokenizer *t); /* -1 if none */
int32_t al_tokenizer_eos(const al_tokenizer *t); /* -1 if none */
/* tokenizer_config.json chat_template (or its "default" entry) or NULL. */
const char *al_tokenizer_chat_template(const al_tokenizer *t);
/* 1 when encode(add_special=1) puts tokens before the text (e.g. BOS). */
int al_tokenizer_adds_prefix(const al_tokenizer *t);

/* Streaming decoder: emits text only once it is complete (no partial UTF-8 characters), with
 * the HF DecodeStream algorithm; the concatenation of every push plus al_detok_flush equals
 * al_tokenizer_decode of all ids (for ids whose byte-fallback runs are valid UTF-8). */
typedef struct al_detok al_detok;
al_err al_detok_new(const al_tokenizer *t, int skip_special, al_detok **out);
/* Newly completed text (may be empty, *text is then "" and still malloc'd). */
al_err al_detok_push(al_detok *d, int32_t id, char **text, size_t *len);
/* Whatever is still held back (e.g. a trailing incomplete character as U+FFFD). */
al_err al_detok_flush(al_detok *d, char **text, size_t *len);
void al_detok_free(al_detok *d);

#endif
