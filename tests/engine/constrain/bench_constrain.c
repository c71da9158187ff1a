/* bench_constrain.c: constraint benchmark (not a registered test): schema compile time, trie walk
 * speed, and the mean cost of constraining one generated token (al_matcher_apply on a full logits
 * row: mask + -inf writes), cold (fresh grammar: lazy DFA and masks built on the way) and warm
 * (the same output again: cached masks), for intrinsic and tool-call schemas.
 *
 *   tests/engine/constrain/build_standalone.sh bench
 *   build-constrain/bench_constrain [tokenizer.json ...]
 * Default vocabularies: the bl_gpt2 test tokenizer and /tmp/constrain_bpe_{32000,128000}.tokenizer.json
 * from tests/fixtures/constrain/train_vocab.py. The "model" emits a fixed plausible document,
 * tokenized greedily (longest allowed token that spells the next bytes). */
#include <math.h>

#include "ctest_util.h"

typedef struct {
    const char *name;
    al_constraint_kind kind;
    const char *spec, *doc;
} bench_case;

static const bench_case cases[] = {
    {"digit", AL_CONSTRAINT_JSON_SCHEMA, "{\"type\":\"integer\",\"minimum\":0,\"maximum\":9}", "7"},
    {"labels", AL_CONSTRAINT_JSON_SCHEMA,
     "{\"type\":\"string\",\"enum\":[\"supported\",\"unsupported\",\"partially_supported\",\"irrelevant\"]}",
     "\"partially_supported\""},
    {"rewrite", AL_CONSTRAINT_JSON_SCHEMA,
     "{\"type\":\"object\",\"properties\":{\"rewritten_question\":{\"type\":\"string\"}},\"required\":[\"rewritten_question\"]}",
     "{\"rewritten_question\": \"What were the main causes of the French Revolution, and how did they change the "
     "role of the monarchy in the years that followed?\"}"},
    {"hallucination", AL_CONSTRAINT_JSON_SCHEMA,
     "{\"type\":\"array\",\"items\":{\"type\":\"object\",\"properties\":{\"response_sentence_id\":{\"type\":\"integer\","
     "\"minimum\":0},\"hallucination_risk\":{\"enum\":[\"low\",\"high\",\"unanswerable\"]},\"reasoning\":{\"type\":"
     "\"string\"}},\"required\":[\"response_sentence_id\",\"hallucination_risk\",\"reasoning\"]}}",
     "[{\"response_sentence_id\": 0, \"hallucination_risk\": \"low\", \"reasoning\": \"The sentence is directly "
     "supported by the second document.\"}, {\"response_sentence_id\": 1, \"hallucination_risk\": \"high\", "
     "\"reasoning\": \"No document mentions the date given in this sentence.\"}]"},
    {"tool_call", AL_CONSTRAINT_JSON_SCHEMA,
     "{\"type\":\"object\",\"properties\":{\"name\":{\"enum\":[\"get_weather\",\"search_web\",\"send_email\"]},"
     "\"arguments\":{\"anyOf\":[{\"type\":\"object\",\"properties\":{\"location\":{\"type\":\"string\",\"description\":"
     "\"City and state\"},\"unit\":{\"type\":\"string\",\"enum\":[\"celsius\",\"fahrenheit\"]},\"days\":{\"type\":"
     "\"integer\",\"minimum\":1,\"maximum\":14}},\"required\":[\"location\"],\"additionalProperties\":false},"
     "{\"type\":\"object\",\"properties\":{\"query\":{\"type\":\"string\"},\"max_results\":{\"type\":\"integer\","
     "\"minimum\":1,\"maximum\":50}},\"required\":[\"query\"]},{\"type\":\"object\",\"properties\":{\"to\":{\"type\":"
     "\"array\",\"items\":{\"type\":\"string\",\"format\":\"email\"},\"minItems\":1},\"subject\":{\"type\":\"string\","
     "\"maxLength\":120},\"body\":{\"type\":\"string\"}},\"required\":[\"to\",\"subject\",\"body\"]}]}},"
     "\"required\":[\"name\",\"arguments\"]}",
     "{\"name\": \"get_weather\", \"arguments\": {\"location\": \"San Francisco, CA\", \"unit\": \"celsius\", "
     "\"days\": 3}}"},
    {"json_object", AL_CONSTRAINT_JSON_OBJECT, NULL,
     "{\"name\": \"get_weather\", \"arguments\": {\"location\": \"San Francisco, CA\", \"days\": [1, 2.5, true]}}"},
};

/* Longest allowed token spelling a prefix of text (logits: -inf where disallowed); -1 if none. */
static int32_t greedy_token(const ali_trie *t, const char *text, size_t n, const float *logits)
{
    int32_t best = -1, i = 0, d = 0;
    while (i < t->nnodes && (size_t)d < n) {
        const ali_tnode *x = &t->nodes[i];
        if (x->depth != d)
            break; /* no more siblings at this depth */
        if (x->byte == (uint8_t)text[d]) {
            for (int32_t k = x->tok; k >= 0; k = t->dup[k])
                if (!isinf(logits[k]))
                    best = k;
            i++;
            d++;
        } else {
            i = x->skip;
        }
    }
    return best;
}

typedef struct {
    double sec;
    int tokens;
} run_stat;

/* One generation of the case's document; returns 0 on success. */
static int run_doc(al_grammar *g, const al_vocab *v, const bench_case *c, float *logits, run_stat *st, int mask_only,
                   uint32_t *bits)
{
    al_matcher *m;
    if (al_matcher_new(g, &m) != AL_OK)
        return -1;
    const char *p = c->doc;
    size_t left = strlen(p);
    int32_t max_tokens = 512, rem = max_tokens;
    for (;;) {
        for (int32_t i = 0; i < v->n; i++)
            logits[i] = 0.0f;
        double t0 = al_now();
        int32_t cnt = mask_only ? al_matcher_mask(m, rem, bits) : al_matcher_apply(m, rem, logits, v->n);
        st->sec += al_now() - t0;
        st->tokens++;
        if (mask_only) /* greedy choice needs the logits view */
            for (int32_t i = 0; i < v->n; i++)
                logits[i] = (bits[i >> 5] >> (i & 31) & 1) ? 0.0f : -INFINITY;
        if (cnt <= 0)
            break;
        if (left == 0) {
            int ok = !isinf(logits[v->eos[0]]) && al_matcher_accept(m, v->eos[0]) == AL_OK;
            al_matcher_free(m);
            return ok ? 0 : -1;
        }
        int32_t tok = greedy_token(g->trie, p, left, logits);
        if (tok < 0 || al_matcher_accept(m, tok) != AL_OK)
            break;
        p += v->len[tok];
        left -= (size_t)v->len[tok];
        rem--;
    }
    fprintf(stderr, "%s: generation stuck at \"%.20s\"\n", c->name, p);
    al_matcher_free(m);
    return -1;
}

static void bench_vocab(const char *path)
{
    al_vocab *v = ct_load_tokenizer(path, 1, (const char *const[]){"<|endoftext|>", NULL});
    if (!v) {
        printf("(skipping %s: not found; see tests/fixtures/constrain/train_vocab.py)\n", path);
        return;
    }
    double t0 = al_now();
    ali_trie *t;
    if (ali_trie_get(v, &t) != AL_OK)
        abort();
    double trie_ms = (al_now() - t0) * 1e3;
    printf("\n== %s: %d tokens, trie %d nodes, max token %d bytes, byte-complete %d, trie build %.1f ms\n", path, v->n,
           t->nnodes, t->max_len, t->byte_complete, trie_ms);
    float *logits = malloc((size_t)v->n * sizeof *logits);
    uint32_t *bits = malloc(((size_t)v->n + 31) / 32 * 4);
    printf("%-14s %9s %6s %7s %7s | %10s %10s %10s | %9s\n", "case", "compile", "tokens", "dfa", "nfa",
           "cold us/t", "warm us/t", "warm mask", "walk ns/n");
    for (size_t ci = 0; ci < AL_ARRAY_LEN(cases); ci++) {
        const bench_case *c = &cases[ci];
        al_constraint_spec sp = {c->kind, c->spec, c->spec ? strlen(c->spec) : 0};
        double best = 1e9;
        al_grammar *g = NULL;
        for (int k = 0; k < 5; k++) { /* compile (the trie is shared, so this is the grammar alone) */
            al_grammar *x;
            double a = al_now();
            if (al_grammar_compile(&sp, v, &x) != AL_OK) {
                printf("%s: %s\n", c->name, al_errmsg());
                abort();
            }
            double b = al_now() - a;
            best = b < best ? b : best;
            if (g)
                al_grammar_unref(g);
            g = x;
        }
        run_stat cold = {0}, warm = {0}, wmask = {0};
        int ok = run_doc(g, v, c, logits, &cold, 0, bits);
        for (int k = 0; k < 20 && ok == 0; k++)
            ok |= run_doc(g, v, c, logits, &warm, 0, bits);
        for (int k = 0; k < 20 && ok == 0; k++)
            ok |= run_doc(g, v, c, logits, &wmask, 1, bits);
        /* trie walk speed from the most permissive state reached: time / nodes */
        double walk_ns = 0;
        int32_t smax = g->dfa.start, cmax = -1;
        int32_t ns = __atomic_load_n(&g->dfa.nstates, __ATOMIC_ACQUIRE);
        for (int32_t s = 2; s < ns; s++) {
            const ali_mask *mk = g->dfa.aux[s];
            if (mk && mk->count > cmax) {
                cmax = mk->count;
                smax = s;
            }
        }
        {
            int reps = 20;
            double a = al_now();
            for (int k = 0; k < reps; k++)
                ali_mask_walk(g, smax, -1, bits, NULL, NULL);
            walk_ns = (al_now() - a) / reps / t->nnodes * 1e9;
        }
        printf("%-14s %7.2fms %6d %7d %7d | %10.1f %10.1f %10.1f | %9.2f%s\n", c->name, best * 1e3,
               cold.tokens, ns - 2, g->nfa.n, cold.sec / cold.tokens * 1e6, warm.sec / warm.tokens * 1e6,
               wmask.sec / wmask.tokens * 1e6, walk_ns, ok ? "  (generation FAILED)" : "");
        al_grammar_unref(g);
    }
    ali_trie_unref(t);
    free(logits);
    free(bits);
    al_vocab_free(v);
}

int main(int argc, char **argv)
{
    static const char *const defaults[] = {"tests/fixtures/tokenizer/bl_gpt2.tokenizer.json",
                                           "/tmp/constrain_bpe_32000.tokenizer.json",
                                           "/tmp/constrain_bpe_128000.tokenizer.json"};
    printf("columns: compile = best of 5 al_grammar_compile (trie cached); tokens = generated incl. EOS;\n"
           "dfa / nfa = states; cold / warm us/t = mean al_matcher_apply per token on a full logits row\n"
           "(fresh grammar / cached masks); warm mask = al_matcher_mask (bitset copy) per token;\n"
           "walk ns/n = one trie walk from the most permissive state / trie nodes\n");
    if (argc > 1)
        for (int i = 1; i < argc; i++)
            bench_vocab(argv[i]);
    else
        for (size_t i = 0; i < AL_ARRAY_LEN(defaults); i++)
            bench_vocab(defaults[i]);
    al_grammar_cache_clear();
    return 0;
}
