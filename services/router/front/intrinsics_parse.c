/* intrinsics_parse.c: intrinsic output parsers: closed-set probabilities from top-k logprobs, JSON lists,
 * tags. */
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/utf8.h"
#include "services/router/front/intrinsics.h"

#define ALI_MSG 512

/* A JSON string of s (ill-formed UTF-8 repaired to U+FFFD); NULL only when out of memory. */
static json_t *ali_jstr(const char *s, size_t n)
{
    if (al_utf8_check(s, n) == n)
        return json_stringn(s, n);
    char *r;
    size_t rl;
    if (al_utf8_repair(s, n, &r, &rl) != AL_OK)
        return NULL;
    json_t *j = json_stringn(r, rl);
    free(r);
    return j;
}

static al_err ali_fail(const char *raw, json_t **res, char **err_field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static al_err ali_fail(const char *raw, json_t **res, char **err_field, const char *fmt, ...)
{
    char msg[ALI_MSG];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *o = json_object();
    if (o) {
        json_object_set_new(o, "error", ali_jstr(msg, strlen(msg)));
        json_object_set_new(o, "raw", ali_jstr(raw, strlen(raw)));
    }
    *res = o;
    if (err_field)
        *err_field = strdup(msg);
    return ali_errf(AL_EFORMAT, "%s", msg);
}

/* [*b, *e) of text without surrounding whitespace and trailing special tokens ("<|end_of_text|>", "</s>"). */
static void ali_trim(const char *text, const char **b, const char **e)
{
    const char *s = text, *t = text + strlen(text);
    for (;;) {
        while (s < t && isspace((unsigned char)*s))
            s++;
        while (t > s && isspace((unsigned char)t[-1]))
            t--;
        if (t - s >= 4 && !memcmp(t - 2, "|>", 2)) {
            const char *p = t - 2;
            while (p > s && memcmp(p, "<|", 2))
                p--;
            if (!memcmp(p, "<|", 2)) {
                t = p;
                continue;
            }
        }
        if (t - s >= 4 && !memcmp(t - 4, "</s>", 4)) {
            t -= 4;
            continue;
        }
        break;
    }
    *b = s;
    *e = t;
}

/* Lower-cased copy of s[0..n) without leading/trailing non-alphanumeric characters, in buf. */
static void ali_core(const char *s, size_t n, char *buf, size_t cap)
{
    size_t i = 0, j = n;
    while (i < j && !isalnum((unsigned char)s[i]) && !((unsigned char)s[i] & 0x80))
        i++;
    while (j > i && !isalnum((unsigned char)s[j - 1]) && !((unsigned char)s[j - 1] & 0x80))
        j--;
    size_t k = 0;
    for (; i < j && k + 1 < cap; i++)
        buf[k++] = (char)tolower((unsigned char)s[i]);
    buf[k] = 0;
}

/* Lower-cased s[0..n) without surrounding quotes, emphasis and trailing sentence punctuation. */
static void ali_label_core(const char *s, size_t n, char *buf, size_t cap)
{
    size_t i = 0, j = n;
    while (i < j && strchr(" \t\n\"'`*", s[i]))
        i++;
    while (j > i && strchr(" \t\n\"'`*.!,;:", s[j - 1]))
        j--;
    size_t k = 0;
    for (; i < j && k + 1 < cap; i++)
        buf[k++] = (char)tolower((unsigned char)s[i]);
    buf[k] = 0;
}

/* Index of the output that text t[0..n) names, or -1. */
static int ali_match_label(const al_intrinsic *in, const char *t, size_t n)
{
    for (int i = 0; i < in->outputs.n; i++)
        if (strlen(in->outputs.v[i]) == n && !memcmp(in->outputs.v[i], t, n))
            return i;
    char c[256], o[256];
    if (n >= sizeof c)
        return -1;
    ali_label_core(t, n, c, sizeof c);
    for (int i = 0; *c && i < in->outputs.n; i++) {
        ali_label_core(in->outputs.v[i], strlen(in->outputs.v[i]), o, sizeof o);
        if (!strcmp(c, o))
            return i;
    }
    return -1;
}

/* Label index from the text: plain ("answerable"), punctuated ("Yes."), or a JSON object
 * ({"score": "yes"}, {"label": ..}, {"answer": ..} or an object with a single string value). */
static int ali_label(const al_intrinsic *in, const char *b, const char *e)
{
    int k = ali_match_label(in, b, (size_t)(e - b));
    if (k >= 0 || e == b || *b != '{')
        return k;
    json_t *j = json_loadb(b, (size_t)(e - b), 0, NULL);
    if (!json_is_object(j)) {
        json_decref(j);
        return -1;
    }
    static const char *const keys[] = {"score", "label", "answer", "result"};
    json_t *v = NULL;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0] && !v; i++)
        v = json_object_get(j, keys[i]);
    if (!v && json_object_size(j) == 1)
        v = json_object_iter_value(json_object_iter(j));
    if (json_is_string(v))
        k = ali_match_label(in, json_string_value(v), json_string_length(v));
    json_decref(j);
    return k;
}

/* Lower-cased core text of one token. */
static void ali_tok_core(const al_tokenizer *tok, int32_t id, char *buf, size_t cap)
{
    char *s = NULL;
    size_t n = 0;
    buf[0] = 0;
    if (al_tokenizer_decode(tok, &id, 1, 0, &s, &n) == AL_OK)
        ali_core(s, n, buf, cap);
    free(s);
}

/* Whether token core t stands for output core o: a prefix of it, or o followed by punctuation. */
static int ali_tok_matches(const char *t, const char *o)
{
    size_t lt = strlen(t), lo = strlen(o);
    if (!lt)
        return 0;
    if (lt <= lo)
        return !memcmp(o, t, lt);
    return !memcmp(t, o, lo) && !isalnum((unsigned char)t[lo]);
}

/* p[outputs.n]: each output's probability. Returns 1 when it came from the logprobs, 0 when from
 * the generated label alone (no tokenizer / top-k, or no output in the top-k). */
static int ali_choice_probs(const al_intrinsic *in, const int32_t *tokens, int n, const al_topk_entry *top,
                            int top_k, const al_tokenizer *tok, int label, double *p)
{
    int m = in->outputs.n;
    for (int i = 0; i < m; i++)
        p[i] = i == label ? 1.0 : 0.0;
    if (!tok || !top || top_k < 1 || !tokens || n < 1)
        return 0;
    char oc[16][64], tc[256];
    int mm = m < 16 ? m : 16; /* closed sets beyond 16 outputs: text only */
    if (mm < m)
        return 0;
    for (int i = 0; i < m; i++)
        ali_core(in->outputs.v[i], strlen(in->outputs.v[i]), oc[i], sizeof oc[i]);
    int pos = -1;
    for (int t = 0; t < n && pos < 0; t++) {
        ali_tok_core(tok, tokens[t], tc, sizeof tc);
        for (int i = 0; i < m && pos < 0; i++)
            if (ali_tok_matches(tc, oc[i]))
                pos = t;
    }
    if (pos < 0)
        return 0;
    double mass[16] = {0}, total = 0;
    for (int j = 0; j < top_k; j++) {
        const al_topk_entry *te = &top[(size_t)pos * (size_t)top_k + (size_t)j];
        if (te->id < 0 || !isfinite(te->logprob))
            continue;
        ali_tok_core(tok, te->id, tc, sizeof tc);
        int hits = 0;
        for (int i = 0; i < m; i++)
            hits += ali_tok_matches(tc, oc[i]);
        if (!hits)
            continue;
        double pr = exp((double)te->logprob) / hits;
        for (int i = 0; i < m; i++)
            if (ali_tok_matches(tc, oc[i]))
                mass[i] += pr, total += pr;
    }
    if (!(total > 0))
        return 0;
    for (int i = 0; i < m; i++)
        p[i] = mass[i] / total;
    return 1;
}

static json_t *ali_probs_obj(const al_intrinsic *in, const double *p)
{
    json_t *o = json_object();
    for (int i = 0; o && i < in->outputs.n; i++)
        json_object_set_new(o, in->outputs.v[i], json_real(p[i]));
    return o;
}

/* ---------------------------------------------------------------- closed sets */

static al_err ali_closed(const al_intrinsic *in, const char *text, const char *b, const char *e,
                         const int32_t *tokens, int n, const al_topk_entry *top, int top_k,
                         const al_tokenizer *tok, json_t **res, char **err_field)
{
    int m = in->outputs.n;
    if (m < 1)
        return ali_fail(text, res, err_field, "intrinsic '%s' has no outputs to choose from", in->name);
    int label = ali_label(in, b, e);
    if (label < 0) {
        char opts[256] = "";
        for (int i = 0; i < m; i++) {
            size_t l = strlen(opts);
            snprintf(opts + l, sizeof opts - l, "%s\"%s\"", i ? ", " : "", in->outputs.v[i]);
        }
        return ali_fail(text, res, err_field, "output: expected one of %s", opts);
    }
    double *p = calloc((size_t)m, sizeof *p);
    if (!p)
        return ali_errf(AL_ENOMEM, "intrinsics: out of memory");
    ali_choice_probs(in, tokens, n, top, top_k, tok, label, p);
    const char *lab = in->outputs.v[label];
    json_t *o = json_object();
    switch (in->parser) {
    case AL_PARSER_CERTAINTY: {
        double ev = 0, tot = 0;
        for (int i = 0; i < m; i++) {
            int d = in->outputs.v[i][0] - '0';
            if (d < 0 || d > 9 || in->outputs.v[i][1])
                continue;
            ev += p[i] * (0.05 + 0.1 * d);
            tot += p[i];
        }
        int d = lab[0] - '0';
        if (d < 0 || d > 9 || lab[1]) {
            json_decref(o);
            free(p);
            return ali_fail(text, res, err_field, "output: expected one digit 0-9, got \"%s\"", lab);
        }
        json_object_set_new(o, "certainty", json_real(tot > 0 ? ev / tot : 0.05 + 0.1 * d));
        json_object_set_new(o, "digit", json_integer(d));
        break;
    }
    case AL_PARSER_ANSWERABILITY:
        json_object_set_new(o, "answerability", json_string(lab));
        json_object_set_new(o, "answerability_likelihood", json_real(p[0]));
        break;
    case AL_PARSER_REQUIREMENT:
        json_object_set_new(o, "requirement_check", json_string(lab));
        json_object_set_new(o, "requirement_likelihood", json_real(p[0]));
        break;
    case AL_PARSER_CONTEXT_RELEVANCE:
        json_object_set_new(o, "context_relevance", json_string(lab));
        json_object_set_new(o, "context_relevance_likelihood", json_real(p[0]));
        json_object_set_new(o, "probabilities", ali_probs_obj(in, p));
        break;
    case AL_PARSER_GUARDIAN: {
        char l[64];
        ali_core(lab, strlen(lab), l, sizeof l);
        json_object_set_new(o, "score", json_string(l));
        json_object_set_new(o, "probability", json_real(p[0]));
        break;
    }
    default:
        json_object_set_new(o, "label", json_string(lab));
        json_object_set_new(o, "probabilities", ali_probs_obj(in, p));
        break;
    }
    free(p);
    *res = o;
    return o ? AL_OK : ali_errf(AL_ENOMEM, "intrinsics: out of memory");
}

/* ---------------------------------------------------------------- JSON outputs */

/* The first JSON value (object or list) in [b, e); trailing text is ignored. */
static json_t *ali_find_json(const char *b, const char *e, char *why, size_t cap)
{
    const char *p = b;
    while (p < e && *p != '{' && *p != '[')
        p++;
    if (p == e) {
        snprintf(why, cap, "no JSON object or list");
        return NULL;
    }
    json_error_t je;
    json_t *j = json_loadb(p, (size_t)(e - p), JSON_DISABLE_EOF_CHECK, &je);
    if (!j)
        snprintf(why, cap, "invalid JSON at column %d: %s", je.column, je.text);
    return j;
}

/* A sentence index: "3", "r3", "<r3>", "c3", "<c3>". -1 if not one. */
static long ali_index_str(const char *s)
{
    if (*s == '<')
        s++;
    if (*s == 'r' || *s == 'c' || *s == 'R' || *s == 'C')
        s++;
    if (!isdigit((unsigned char)*s))
        return -1;
    char *end;
    long x = strtol(s, &end, 10);
    if (*end == '>')
        end++;
    return *end || x > 1000000 ? -1 : x;
}

/* A sentence index: 3 or one of ali_index_str's strings. -1 if not one. */
static long ali_index(json_t *v)
{
    if (json_is_integer(v))
        return json_integer_value(v) >= 0 && json_integer_value(v) <= 1000000 ? (long)json_integer_value(v)
                                                                              : -1;
    return json_is_string(v) ? ali_index_str(json_string_value(v)) : -1;
}

static json_t *ali_get_any(json_t *o, const char *const *keys)
{
    for (; *keys; keys++) {
        json_t *v = json_object_get(o, *keys);
        if (v)
            return v;
    }
    return NULL;
}

/* Faithfulness from a number in [0, 1], "0.85", a range "0.8-0.9" (midpoint) or a label. */
static int ali_faith(json_t *v, double *p, const char **label)
{
    *label = NULL;
    if (json_is_number(v)) {
        *p = json_number_value(v);
        return *p >= 0 && *p <= 1;
    }
    if (!json_is_string(v))
        return 0;
    const char *s = json_string_value(v);
    char *end;
    double a = strtod(s, &end);
    if (end != s && isfinite(a)) {
        while (*end == ' ')
            end++;
        if (!*end) {
            *p = a;
            return a >= 0 && a <= 1;
        }
        if (*end == '-') {
            const char *q = end + 1;
            double c = strtod(q, &end);
            if (end != q && !*end && isfinite(c) && a >= 0 && c <= 1 && a <= c) {
                *p = (a + c) / 2;
                return 1;
            }
        }
        return 0;
    }
    static const struct {
        const char *l;
        double p;
    } labels[] = {{"faithful", 1.0},           {"partial", 0.5},    {"partially faithful", 0.5},
                  {"partially_faithful", 0.5}, {"unfaithful", 0.0}, {"hallucinated", 0.0},
                  {"hallucination", 0.0}};
    for (size_t i = 0; i < sizeof labels / sizeof labels[0]; i++)
        if (!strcasecmp(s, labels[i].l)) {
            *p = labels[i].p;
            *label = s;
            return 1;
        }
    return 0;
}

static al_err ali_hallucination(const char *text, const char *b, const char *e, json_t **res,
                                char **err_field)
{
    char why[256];
    json_t *j = ali_find_json(b, e, why, sizeof why);
    if (!j)
        return ali_fail(text, res, err_field, "output: expected a JSON list of per-sentence results: %s",
                        why);
    static const char *const ik[] = {"i",           "r",  "sentence", "response_sentence",
                                     "response_id", "id", "index",    NULL};
    static const char *const fk[] = {
        "faithfulness_likelihood", "likelihood", "f", "faithfulness", "score", "range", "label", NULL};
    static const char *const ek[] = {"explanation", "e", NULL};
    json_t *list = json_array(), *out = json_object();
    char bad[256] = "";
    size_t n = json_is_array(j) ? json_array_size(j) : json_is_object(j) ? json_object_size(j) : 0;
    if (!json_is_array(j) && !json_is_object(j))
        snprintf(bad, sizeof bad, "output: expected a JSON list");
    void *it = json_is_object(j) ? json_object_iter(j) : NULL;
    for (size_t k = 0; k < n && !*bad; k++) {
        json_t *fv, *ex = NULL;
        long x = -1;
        char at[64];
        if (json_is_array(j)) {
            json_t *item = json_array_get(j, k);
            snprintf(at, sizeof at, "output[%zu]", k);
            if (!json_is_object(item)) {
                snprintf(bad, sizeof bad, "%s: expected an object", at);
                break;
            }
            json_t *iv = ali_get_any(item, ik);
            fv = ali_get_any(item, fk);
            ex = ali_get_any(item, ek);
            if (!fv && json_object_get(item, "i"))
                fv = json_object_get(item, "r"); /* {"i": 0, "r": "0.8-0.9"} */
            if (iv) {
                x = ali_index(iv);
            } else if (json_object_size(item) == 1) { /* {"r0": 0.9} */
                x = ali_index_str(json_object_iter_key(json_object_iter(item)));
                fv = json_object_iter_value(json_object_iter(item));
            }
        } else {
            const char *key = json_object_iter_key(it);
            snprintf(at, sizeof at, "output.%.40s", key);
            json_t *val = json_object_iter_value(it);
            it = json_object_iter_next(j, it);
            x = ali_index_str(key);
            fv = json_is_object(val) ? ali_get_any(val, fk) : val;
            ex = json_is_object(val) ? ali_get_any(val, ek) : NULL;
        }
        double p = 0;
        const char *label;
        if (x < 0)
            snprintf(bad, sizeof bad, "%s: expected a sentence index (0, \"r0\" or \"<r0>\")", at);
        else if (!fv || !ali_faith(fv, &p, &label))
            snprintf(bad, sizeof bad,
                     "%s: expected a faithfulness likelihood in [0, 1], a range \"a-b\" or a label", at);
        else {
            json_t *r = json_object();
            json_object_set_new(r, "sentence", json_integer(x));
            json_object_set_new(r, "faithfulness_likelihood", json_real(p));
            if (label)
                json_object_set_new(r, "label", json_string(label));
            if (json_is_string(ex))
                json_object_set(r, "explanation", ex);
            json_array_append_new(list, r);
        }
    }
    json_decref(j);
    if (*bad) {
        json_decref(list);
        json_decref(out);
        return ali_fail(text, res, err_field, "%s", bad);
    }
    json_object_set_new(out, "faithfulness", list);
    *res = out;
    return AL_OK;
}

/* "<r0> <c1> <c3> <r1> <c2>" -> [{r: 0, c: [1, 3]}, {r: 1, c: [2]}]; 0 when not in that form. */
static json_t *ali_cite_tags(const char *b, const char *e)
{
    json_t *list = json_array(), *cur = NULL;
    const char *p = b;
    while (p < e) {
        while (p < e && isspace((unsigned char)*p))
            p++;
        if (p == e)
            break;
        char kind = p + 1 < e && *p == '<' ? p[1] : 0;
        if (kind != 'r' && kind != 'c')
            goto bad;
        char *end;
        long x = strtol(p + 2, &end, 10);
        if (end == p + 2 || end >= e || *end != '>' || x < 0 || x > 1000000 || !isdigit((unsigned char)p[2]))
            goto bad;
        p = end + 1;
        if (kind == 'r') {
            cur = json_object();
            json_object_set_new(cur, "response_sentence", json_integer(x));
            json_object_set_new(cur, "context_sentences", json_array());
            json_array_append_new(list, cur);
        } else {
            if (!cur)
                goto bad;
            json_array_append_new(json_object_get(cur, "context_sentences"), json_integer(x));
        }
    }
    return list;
bad:
    json_decref(list);
    return NULL;
}

static al_err ali_citations(const char *text, const char *b, const char *e, json_t **res, char **err_field)
{
    if (b == e)
        return ali_fail(text, res, err_field, "output: empty (expected a JSON list of citations)");
    json_t *list = NULL;
    if (*b == '<') {
        if (!(list = ali_cite_tags(b, e)))
            return ali_fail(text, res, err_field, "output: expected \"<rN> <cM> ...\" citation tags");
    } else {
        char why[256];
        json_t *j = ali_find_json(b, e, why, sizeof why);
        if (!j)
            return ali_fail(text, res, err_field, "output: expected a JSON list of citations: %s", why);
        if (!json_is_array(j)) {
            json_decref(j);
            return ali_fail(text, res, err_field, "output: expected a JSON list of citations");
        }
        static const char *const rk[] = {"r", "response_sentence", "response_id", "i", NULL};
        static const char *const ck[] = {"c", "citations", "context_sentences", "context", NULL};
        list = json_array();
        char bad[256] = "";
        for (size_t k = 0; k < json_array_size(j) && !*bad; k++) {
            json_t *item = json_array_get(j, k);
            long r = json_is_object(item) ? ali_index(ali_get_any(item, rk)) : -1;
            json_t *c = json_is_object(item) ? ali_get_any(item, ck) : NULL;
            if (!json_is_object(item)) {
                snprintf(bad, sizeof bad, "output[%zu]: expected an object {\"r\": i, \"c\": [j, ...]}", k);
                break;
            }
            if (r < 0) {
                snprintf(bad, sizeof bad, "output[%zu].r: expected a response sentence index", k);
                break;
            }
            json_t *cs = json_array();
            if (c && !json_is_array(c)) {
                long x = ali_index(c);
                if (x < 0)
                    snprintf(bad, sizeof bad, "output[%zu].c: expected a list of context sentence indices",
                             k);
                else
                    json_array_append_new(cs, json_integer(x));
            }
            for (size_t q = 0; json_is_array(c) && q < json_array_size(c) && !*bad; q++) {
                long x = ali_index(json_array_get(c, q));
                if (x < 0)
                    snprintf(bad, sizeof bad, "output[%zu].c[%zu]: expected a context sentence index", k, q);
                else
                    json_array_append_new(cs, json_integer(x));
            }
            json_t *o = json_object();
            json_object_set_new(o, "response_sentence", json_integer(r));
            json_object_set_new(o, "context_sentences", cs);
            json_array_append_new(list, o);
        }
        json_decref(j);
        if (*bad) {
            json_decref(list);
            return ali_fail(text, res, err_field, "%s", bad);
        }
    }
    json_t *out = json_object();
    json_object_set_new(out, "citations", list);
    *res = out;
    return AL_OK;
}

static al_err ali_rewrite(const char *text, const char *b, const char *e, json_t **res, char **err_field)
{
    char why[256];
    json_t *j = ali_find_json(b, e, why, sizeof why);
    if (!j)
        return ali_fail(text, res, err_field,
                        "output: expected a JSON object {\"rewritten_question\": ...}: %s", why);
    json_t *q = json_object_get(j, "rewritten_question");
    if (!json_is_string(q) || json_string_length(q) == 0) {
        json_decref(j);
        return ali_fail(text, res, err_field, "output.rewritten_question: expected a non-empty string");
    }
    json_t *out = json_object();
    json_object_set(out, "rewritten_question", q);
    json_decref(j);
    *res = out;
    return AL_OK;
}

al_err al_intrinsic_parse(const al_intrinsic *in, const char *text, const int32_t *tokens, int n,
                          const al_topk_entry *top, int top_k, const al_tokenizer *tok, json_t **result,
                          char **err_field)
{
    *result = NULL;
    if (err_field)
        *err_field = NULL;
    if (!text)
        text = "";
    const char *b, *e;
    ali_trim(text, &b, &e);
    switch (in->parser) {
    case AL_PARSER_CERTAINTY:
    case AL_PARSER_ANSWERABILITY:
    case AL_PARSER_REQUIREMENT:
    case AL_PARSER_CONTEXT_RELEVANCE:
    case AL_PARSER_GUARDIAN:
    case AL_PARSER_CHOICE:
        return ali_closed(in, text, b, e, tokens, n, top, top_k, tok, result, err_field);
    case AL_PARSER_QUERY_REWRITE:
        return ali_rewrite(text, b, e, result, err_field);
    case AL_PARSER_HALLUCINATION:
        return ali_hallucination(text, b, e, result, err_field);
    case AL_PARSER_CITATIONS:
        return ali_citations(text, b, e, result, err_field);
    case AL_PARSER_JSON: {
        json_error_t je;
        json_t *j = json_loadb(b, (size_t)(e - b), JSON_DECODE_ANY, &je);
        if (!j)
            return ali_fail(text, result, err_field, "output: invalid JSON at column %d: %s", je.column,
                            je.text);
        json_t *o = json_object();
        json_object_set_new(o, "value", j);
        *result = o;
        return AL_OK;
    }
    default: {
        json_t *o = json_object();
        json_object_set_new(o, "text", ali_jstr(b, (size_t)(e - b)));
        *result = o;
        return AL_OK;
    }
    }
}
