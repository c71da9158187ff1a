/* intrinsics.h: the intrinsics library: definitions, libconfig keys, the Granite RAG catalogue, output
 * parsers. */
#ifndef AL_INTRINSICS_H
#define AL_INTRINSICS_H

#include <stdint.h>

#include <jansson.h>

#include "common/cfg.h"
#include "common/err.h"
#include "common/text/tokenizer.h"
#include "engine/engine.h" /* al_topk_entry */

#ifdef __cplusplus
extern "C" {
#endif

/* How an intrinsic's output text becomes its JSON result (see al_intrinsic_parse). */
typedef enum al_intr_parser {
    AL_PARSER_AUTO = 0,      /* config only: the catalogue's parser for the name (raw if none) */
    AL_PARSER_RAW,           /* {"text": "..."} */
    AL_PARSER_CERTAINTY,     /* digit d in 0..9 -> {"certainty": E[0.05 + 0.1 d], "digit": d} */
    AL_PARSER_ANSWERABILITY, /* {"answerability": label, "answerability_likelihood": P(outputs[0])} */
    AL_PARSER_REQUIREMENT,   /* {"requirement_check": label, "requirement_likelihood": P(outputs[0])} */
    AL_PARSER_QUERY_REWRITE, /* {"rewritten_question": "..."} from the model's JSON object */
    AL_PARSER_HALLUCINATION, /* {"faithfulness": [{"sentence": i, "faithfulness_likelihood": p,
                                "label"?: ..., "explanation"?: ...}, ...]} */
    AL_PARSER_CITATIONS,     /* {"citations": [{"response_sentence": i, "context_sentences": [j,..]}, ..]} */
    AL_PARSER_CONTEXT_RELEVANCE, /* {"context_relevance": label, "context_relevance_likelihood":
                                    P(outputs[0]), "probabilities": {label: p, ...}} */
    AL_PARSER_GUARDIAN,          /* {"score": "yes"|"no", "probability": P(outputs[0] = "yes")} */
    AL_PARSER_CHOICE,            /* any closed set: {"label": label, "probabilities": {label: p, ...}} */
    AL_PARSER_JSON,              /* output must be one JSON value: {"value": ...} */
    AL_PARSER_COUNT
} al_intr_parser;

/* Where the request's documents go in the intrinsic's prompt (the router renders the prompt). */
typedef enum al_intr_docs {
    AL_DOCS_AUTO = 0,    /* config only: the catalogue's placement (template if none) */
    AL_DOCS_TEMPLATE,    /* the chat template's documents section (Granite: document turns up front) */
    AL_DOCS_NONE,        /* documents are not sent to this intrinsic */
    AL_DOCS_INSTRUCTION, /* document texts go into the instruction turn, before the instruction text */
    AL_DOCS_COUNT
} al_intr_docs;

#define AL_INTRINSIC_MAX_INVOCATION 64

/* One intrinsic. Owned strings are malloc'd; free with al_intrinsic_free. Invocation: when
 * n_invocation_tokens > 0 those ids are the activation sequence, else invocation_string (tokenized
 * by the router); when both are absent the adapter's own (adapter_config.json) is used. Decoding is
 * always greedy (temperature 0). */
typedef struct al_intrinsic {
    char *name;              /* [A-Za-z0-9_.-]{1,48} */
    char *adapter;           /* PEFT adapter directory (NULL in a catalogue entry) */
    char *invocation_string; /* e.g. "<|start_of_role|>certainty<|end_of_role|>" or NULL */
    int32_t invocation_tokens[AL_INTRINSIC_MAX_INVOCATION];
    int n_invocation_tokens;
    char *instruction;   /* NULL = none; else appended as a user turn before the invocation */
    int documents;       /* al_intr_docs */
    int max_tokens;      /* tokens generated per invocation (>= 1 after loading) */
    al_cfg_strs outputs; /* closed set of outputs (n == 0: free-form text) */
    int parser;          /* al_intr_parser */
    float temperature;   /* always 0 */
} al_intrinsic;

/* A loaded list (`intrinsics = ( {...}, ... )`). */
typedef struct al_intrinsics {
    union {
        al_cfg_list list;
        struct {
            al_intrinsic *v; /* [n] */
            int n;
        };
    };
} al_intrinsics;

/* ---- configuration ----
 * Element keys of `intrinsics = ( {...}, ... )`. The keys services/common/cluster_cfg.c owns (name, adapter,
 * replicas, max_tokens, capacity, max_queue, top_logprobs, parser, instruction) are accepted with
 * the same meaning, so one list loads through both tables; the cluster-only ones are validated here
 * and ignored. Keys added by this module (all optional, defaults from the catalogue by name):
 *   invocation_string = "<|start_of_role|>certainty<|end_of_role|>";
 *   invocation_tokens = "49152, 7141, 49153";      # ids, comma/space separated, <= 64; win over the string
 *   instruction       = "...";                      # user turn appended before the invocation
 *   documents         = "template" | "none" | "instruction";
 *   outputs           = ["answerable", "unanswerable"];   # closed set (constrained decoding)
 *   parser            = "raw" | "certainty" | "answerability" | "requirement_check" | "query_rewrite"
 *                       | "hallucination_detection" | "citations" | "context_relevance" | "guardian"
 *                       | "choice" | "json";
 *   max_tokens        = 4;
 * An entry whose name is a catalogue name (or, failing that, whose parser is a catalogue parser)
 * starts from that catalogue entry; keys given in the file override it. Errors name file:line. */
const al_cfg_key *al_intrinsic_keys(int *n_keys);

/* A file whose root holds only `intrinsics = (...)` (deploy/intrinsics.cfg). */
al_err al_intrinsics_load(const char *path, al_intrinsics *out);
al_err al_intrinsics_load_string(const char *text, al_intrinsics *out);
/* The cluster config file (services/common/cluster_cfg.h): its intrinsics list, read through this table. */
al_err al_intrinsics_load_cluster(const char *path, al_intrinsics *out);
void al_intrinsics_free(al_intrinsics *l);
const al_intrinsic *al_intrinsics_find(const al_intrinsics *l, const char *name); /* NULL if absent */

/* ---- the built-in catalogue (Granite 3.x RAG intrinsics; see deploy/intrinsics.cfg) ----
 * Names: "certainty" (alias "uncertainty"), "answerability", "requirement_check", "query_rewrite",
 * "hallucination_detection", "citations", "context_relevance", "guardian" (alias "jailbreak",
 * with a jailbreak instruction). *out gets malloc'd copies (name = the name asked for). */
al_err al_intrinsic_builtin(const char *name, al_intrinsic *out); /* AL_ENOTFOUND if unknown */
int al_intrinsic_builtin_names(const char *const **names);        /* NULL-terminated, static */
void al_intrinsic_free(al_intrinsic *in);                         /* frees fields, zeroes */

const char *al_intr_parser_name(int parser);  /* "certainty", ... ("?" if out of range) */
/* The output contract of a free-form parser as a JSON schema (the shape the parser reads, for the
 * default structured output of an intrinsic without a closed set of outputs); NULL when the parser
 * has none (raw text, closed sets). */
const char *al_intr_output_schema(int parser);
const char *al_intr_docs_name(int documents); /* "template", ... */

/* ---- output parsing ----
 * text: the decoded output (special tokens such as <|end_of_text|> at its end are ignored).
 * tokens[n]: the generated ids; top[n * top_k]: each position's top-k (id, logprob), row-major.
 * tok may be NULL (and top_k 0): probabilities then come from the text alone (1 for the generated
 * label, 0 for the others).
 * Closed sets: the decision position is the first generated token whose text (trimmed,
 * case-insensitive) is a prefix of an allowed output (e.g. "answer" of "answerable", "yes" inside
 * {"score": "yes"}). Every top-k entry there whose text is a prefix of an output (or an output
 * followed by punctuation) adds exp(logprob) to that output (split evenly when several match);
 * outputs absent from the top-k get 0 and the masses are renormalised over the outputs.
 * On success *result is the documented object (see al_intr_parser) and AL_OK is returned.
 * Malformed output: *result = {"error": "...", "raw": text}, *err_field (if not NULL) a malloc'd
 * copy of the message, AL_EFORMAT (al_errmsg() says the same). Never crashes on any text. */
al_err al_intrinsic_parse(const al_intrinsic *in, const char *text, const int32_t *tokens, int n,
                          const al_topk_entry *top, int top_k, const al_tokenizer *tok, json_t **result,
                          char **err_field);

/* Teacher-forced scoring: logprob_sums[i] = sum of the log-probabilities of choice i's tokens.
 * probs[i] = softmax (log-sum-exp). AL_EINVAL when n < 1 or no choice is finite. */
al_err al_choice_scores(const double *logprob_sums, int n, double *probs);

#ifdef __cplusplus
}
#endif
#endif
