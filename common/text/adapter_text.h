/* adapter_text.h: the text side of aLoRA adapters: legacy invocation strings and reachability. */
#ifndef AL_ADAPTER_TEXT_H
#define AL_ADAPTER_TEXT_H

#include <stdint.h>

#include "common/err.h"
#include "common/model/adapter.h"
#include "common/text/tokenizer.h"

/* Legacy adapters carry an invocation_string instead of alora_invocation_tokens. When
 * a->invocation is NULL and a->invocation_string is set, tokenizes the string (add_special = 0),
 * drops the FIRST token (as the reference implementation does), stores the rest in
 * a->invocation / a->n_invocation (malloc'd; al_adapter_free frees it) and logs a warning.
 * No-op for adapters that already have tokens or have no string. AL_EFORMAT when nothing is
 * left after dropping the first token. */
al_err al_adapter_resolve_invocation(al_adapter *a, const al_tokenizer *t);

/* 1 when the invocation token sequence occurs in the tokenization (add_special = 0) of
 * instruction_text, else 0 (also on errors). A 0 means the adapter can never activate on that
 * prompt text: e.g. "<requirements>:" where the tokenizer merges ">" with ":". Callers should
 * warn loudly. */
int al_invocation_reachable(const al_tokenizer *t, const int32_t *inv, int n_inv,
                            const char *instruction_text);

#endif
