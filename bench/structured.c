/* structured.c (bench): structured outputs (engine/constrain) through the engine, each number next
 * to a bound measured in the same run:
 *   1. property test: N random JSON schemas (seeded generator below), each decoded by the engine
 *      with random sampling (temperature 1, own seed) on a random model with the demo tokenizer's
 *      vocabulary; every output that finishes (AL_FINISH_STOP) must parse (jansson) and validate
 *      against its schema (the bench's own validator for exactly the keywords it generates). Also
 *      the schema compile time. Outputs cut at max_tokens are counted apart.
 *   2. mask cost per generated token (al_matcher_apply on a full logits row, replaying a decode of
 *      the 85m random model) for the intrinsics' schemas, against the 85m decode step time (1
 *      thread) measured in the same run; and on a 128k-token byte-level BPE vocabulary when
 *      /tmp/constrain_bpe_128000.tokenizer.json exists (tests/fixtures/constrain/train_vocab.py),
 *      against one log-softmax pass over a 128k logits row (what the engine computes per token).
 *   3. constrained vs unconstrained decode throughput of the 85m random model, same prompt, same
 *      number of generated tokens.
 *
 *   bench_structured [N=1000] [--quick] [--model tiny|small|85m] [--max-tokens 256]
 *                    [--vocab128k PATH|none] [--tokenizer deploy/tokenizer] [--seed S] [--show K]
 *                    [--property-only]
 * --quick: 100 schemas, shorter decodes, fewer repetitions (make bench); --show K: the first K
 * schemas and outputs of the property test on stderr; --property-only: section 1 alone. Run from
 * the repository
 * root (the demo tokenizer is deploy/tokenizer). Prints markdown tables, then one JSON line. */
#include <jansson.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_util.h"
#include "common/model/model.h"
#include "common/text/tokenizer.h"
#include "common/util.h"
#include "engine/engine.h"
#include "kernels/kernels.h"
#include "services/common/vocab.h"

static void die(const char *what)
{
    fprintf(stderr, "bench_structured: %s: %s\n", what, al_errmsg());
    exit(1);
}

/* ---- random model (the preset shapes of tools/cmd_make_model.c, vocabulary 512) -------------- */

typedef struct shape {
    const char *name;
    int hidden, layers, heads, kv_heads, inter;
} shape;

static const shape shapes[] = {
    {"tiny", 64, 2, 4, 2, 128},
    {"small", 256, 4, 8, 4, 688},
    {"85m", 768, 12, 12, 12, 2048},
};

static const shape *find_shape(const char *name)
{
    for (size_t i = 0; i < AL_ARRAY_LEN(shapes); i++)
        if (!strcmp(shapes[i].name, name))
            return &shapes[i];
    fprintf(stderr, "bench_structured: unknown model shape '%s' (tiny|small|85m)\n", name);
    exit(2);
}

static al_model *bench_model(const shape *s, int vocab, int32_t eos)
{
    al_model_config c = {.arch = AL_ARCH_LLAMA,
                         .vocab_size = vocab,
                         .hidden_size = s->hidden,
                         .intermediate_size = s->inter,
                         .n_layers = s->layers,
                         .n_heads = s->heads,
                         .n_kv_heads = s->kv_heads,
                         .head_dim = s->hidden / s->heads,
                         .max_position_embeddings = 4096,
                         .rms_eps = 1e-5f,
                         .rope_theta = 10000.0f,
                         .embedding_multiplier = 1.0f,
                         .residual_multiplier = 1.0f,
                         .logits_scaling = 1.0f,
                         .bos_token_id = 1,
                         .n_eos = 1,
                         .eos_token_ids = {eos},
                         .dtype = AL_DT_F32};
    c.attention_multiplier = 1.0f / sqrtf((float)c.head_dim);
    snprintf(c.name, sizeof c.name, "bench-%s", s->name);
    return bench_model_from_config(&c);
}

/* ---- schema generator ---------------------------------------------------------------------- */

#define MAX_DEPTH 3 /* containers (object / array / anyOf) nested at most this deep */

static int rnd(al_rng *r, int n)
{
    return (int)(al_rng_next(r) % (uint64_t)n);
}

static int chance(al_rng *r, double p)
{
    return al_rng_uniform(r) < p;
}

static void set_int(json_t *o, const char *k, json_int_t v)
{
    json_object_set_new(o, k, json_integer(v));
}

static json_t *typed(const char *type)
{
    json_t *o = json_object();
    json_object_set_new(o, "type", json_string(type));
    return o;
}

/* A simple pattern (ASCII classes, counts, alternation) and the length of its shortest match. */
static json_t *gen_string(al_rng *r)
{
    json_t *s = typed("string");
    int k = rnd(r, 10);
    if (k < 4) { /* bounded length */
        int mx = rnd(r, 17);
        set_int(s, "maxLength", mx);
        if (chance(r, 0.3))
            set_int(s, "minLength", rnd(r, AL_MIN(mx, 3) + 1));
    } else if (k < 9) { /* pattern, sometimes with a length bound */
        char p[96];
        int minlen, a, b;
        switch (rnd(r, 8)) {
        case 0:
            a = 1 + rnd(r, 3), b = a + rnd(r, 8);
            snprintf(p, sizeof p, "[a-z]{%d,%d}", a, b), minlen = a;
            break;
        case 1:
            snprintf(p, sizeof p, "[A-Z][a-z]{0,%d}", 1 + rnd(r, 8)), minlen = 1;
            break;
        case 2:
            snprintf(p, sizeof p, "[0-9]{3}-[0-9]{4}"), minlen = 8;
            break;
        case 3:
            snprintf(p, sizeof p, "(yes|no|maybe)"), minlen = 2;
            break;
        case 4:
            a = rnd(r, 3), b = a + 1 + rnd(r, 6);
            snprintf(p, sizeof p, "[a-f0-9]{%d,%d}", a, b), minlen = a;
            break;
        case 5:
            snprintf(p, sizeof p, "x[0-9]+"), minlen = 2;
            break;
        case 6:
            snprintf(p, sizeof p, "[a-z]+( [a-z]+){0,2}"), minlen = 1;
            break;
        default:
            snprintf(p, sizeof p, "[A-Za-z_][A-Za-z0-9_]{0,7}"), minlen = 1;
            break;
        }
        json_object_set_new(s, "pattern", json_string(p));
        if (chance(r, 0.25))
            set_int(s, "maxLength", minlen + rnd(r, 7));
    } /* else: any string */
    return s;
}

static json_t *gen_integer(al_rng *r)
{
    json_t *s = typed("integer");
    json_int_t lo = rnd(r, 4) == 0 ? -1000000 + rnd(r, 2000000) : -100 + rnd(r, 201);
    json_int_t hi = lo + 2 + rnd(r, 1000);
    switch (rnd(r, 6)) {
    case 0:
        break;
    case 1:
        set_int(s, "minimum", lo);
        break;
    case 2:
        set_int(s, "maximum", hi);
        break;
    case 3:
        set_int(s, "exclusiveMinimum", lo), set_int(s, "exclusiveMaximum", hi);
        break;
    default:
        set_int(s, "minimum", lo), set_int(s, "maximum", hi);
        break;
    }
    return s;
}

/* Bounds are multiples of 1/4 (exact in binary), inclusive only: an exclusive bound could be missed
 * by the validator's double rounding, not by the grammar. */
static json_t *gen_number(al_rng *r)
{
    json_t *s = typed("number");
    double lo = (-400 + rnd(r, 801)) / 4.0, hi = lo + (1 + rnd(r, 400)) / 4.0;
    switch (rnd(r, 4)) {
    case 0:
        break;
    case 1:
        json_object_set_new(s, "minimum", json_real(lo));
        break;
    default:
        json_object_set_new(s, "minimum", json_real(lo));
        json_object_set_new(s, "maximum", json_real(hi));
        break;
    }
    return s;
}

static json_t *enum_value(int k)
{
    static const char *const strs[] = {"red", "green", "a b", "x\"y", "\xc3\xbc", "", "back\\slash"};
    if (k < 7)
        return json_string(strs[k]);
    switch (k) {
    case 7:
        return json_integer(0);
    case 8:
        return json_integer(-7);
    case 9:
        return json_integer(42);
    case 10:
        return json_real(2.5);
    case 11:
        return json_true();
    case 12:
        return json_false();
    case 13:
        return json_null();
    case 14:
        return json_pack("[ii]", 1, 2);
    default:
        return json_pack("{ss}", "k", "v");
    }
}

static json_t *gen_enum(al_rng *r)
{
    json_t *s = json_object();
    if (chance(r, 0.15)) {
        json_object_set_new(s, "const", enum_value(rnd(r, 16)));
        return s;
    }
    json_t *a = json_array();
    int n = 1 + rnd(r, 4), used = 0;
    for (int i = 0; i < n; i++) {
        int k = rnd(r, 16);
        if (!(used & (1 << k)))
            json_array_append_new(a, enum_value(k));
        used |= 1 << k;
    }
    json_object_set_new(s, "enum", a);
    return s;
}

static const char *const prop_names[] = {"id",    "name", "age",   "tags", "score", "items", "kind",
                                         "ok",    "note", "level", "x",    "y",     "data",  "meta",
                                         "value", "list", "flag",  "code", "title", "count"};

static json_t *gen_schema(al_rng *r, int depth);

static json_t *gen_object(al_rng *r, int depth)
{
    json_t *s = typed("object"), *props = json_object(), *req = json_array();
    int n = rnd(r, 20) == 0 ? 0 : 1 + rnd(r, 4);
    uint32_t used = 0;
    for (int i = 0; i < n; i++) {
        int k = rnd(r, (int)AL_ARRAY_LEN(prop_names));
        if (used & (1u << k))
            continue;
        used |= 1u << k;
        json_object_set_new(props, prop_names[k], gen_schema(r, depth + 1));
        if (chance(r, 0.7))
            json_array_append_new(req, json_string(prop_names[k]));
    }
    json_object_set_new(s, "properties", props);
    if (json_array_size(req) > 0)
        json_object_set_new(s, "required", req);
    else
        json_decref(req);
    json_object_set_new(s, "additionalProperties", json_false());
    return s;
}

static json_t *gen_array(al_rng *r, int depth)
{
    json_t *s = typed("array");
    json_object_set_new(s, "items", gen_schema(r, depth + 1));
    int mn = 0;
    if (chance(r, 0.6))
        set_int(s, "minItems", mn = rnd(r, depth == 0 ? 3 : 2));
    if (chance(r, 0.8))
        set_int(s, "maxItems", AL_MAX(mn, 1) + rnd(r, 4));
    return s;
}

static json_t *gen_anyof(al_rng *r, int depth)
{
    json_t *s = json_object(), *a = json_array();
    int n = 2 + rnd(r, 2);
    for (int i = 0; i < n; i++)
        json_array_append_new(a, gen_schema(r, depth + 1));
    json_object_set_new(s, "anyOf", a);
    return s;
}

static json_t *gen_schema(al_rng *r, int depth)
{
    int k = depth >= MAX_DEPTH ? rnd(r, 14) : rnd(r, 23);
    if (depth == 0)
        k = chance(r, 0.6) ? 14 : rnd(r, 23);
    if (k < 5)
        return gen_string(r);
    if (k < 8)
        return gen_integer(r);
    if (k < 10)
        return gen_number(r);
    if (k < 11)
        return typed("boolean");
    if (k < 12)
        return typed("null");
    if (k < 14)
        return gen_enum(r);
    if (k < 18)
        return gen_object(r, depth);
    if (k < 21)
        return gen_array(r, depth);
    return gen_anyof(r, depth);
}

/* ---- reference validator: exactly the keywords gen_schema emits, strict --------------------- */

static size_t utf8_chars(const char *s, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += ((unsigned char)s[i] & 0xC0) != 0x80;
    return c;
}

static int fail(char *why, size_t wn, const char *fmt, const char *a)
{
    if (why && !why[0])
        snprintf(why, wn, fmt, a);
    return 0;
}

static int validate(json_t *schema, json_t *v, char *why, size_t wn);

static int type_ok(const char *t, json_t *v)
{
    if (!strcmp(t, "object"))
        return json_is_object(v);
    if (!strcmp(t, "array"))
        return json_is_array(v);
    if (!strcmp(t, "string"))
        return json_is_string(v);
    if (!strcmp(t, "integer"))
        return json_is_integer(v); /* strict: the grammar writes integers without fraction / exponent */
    if (!strcmp(t, "number"))
        return json_is_number(v);
    if (!strcmp(t, "boolean"))
        return json_is_boolean(v);
    if (!strcmp(t, "null"))
        return json_is_null(v);
    fprintf(stderr, "bench_structured: validator: unknown type '%s'\n", t);
    exit(1);
}

/* v compared with a numeric bound: <0, 0, >0 (integers exactly, else as doubles). */
static int num_cmp(json_t *v, json_t *bound)
{
    if (json_is_integer(v) && json_is_integer(bound)) {
        json_int_t a = json_integer_value(v), b = json_integer_value(bound);
        return (a > b) - (a < b);
    }
    double a = json_number_value(v), b = json_number_value(bound);
    return (a > b) - (a < b);
}

static int validate(json_t *schema, json_t *v, char *why, size_t wn)
{
    const char *k;
    json_t *x;
    json_object_foreach(schema, k, x)
    {
        if (!strcmp(k, "type")) {
            if (!type_ok(json_string_value(x), v))
                return fail(why, wn, "not of type %s", json_string_value(x));
        } else if (!strcmp(k, "enum")) {
            size_t i;
            json_t *e;
            int hit = 0;
            json_array_foreach(x, i, e)
            {
                hit |= json_equal(e, v);
            }
            if (!hit)
                return fail(why, wn, "%s", "not one of the enum values");
        } else if (!strcmp(k, "const")) {
            if (!json_equal(x, v))
                return fail(why, wn, "%s", "not the const value");
        } else if (!strcmp(k, "anyOf")) {
            size_t i;
            json_t *e;
            int hit = 0;
            json_array_foreach(x, i, e)
            {
                hit |= validate(e, v, NULL, 0);
            }
            if (!hit)
                return fail(why, wn, "%s", "matches no anyOf branch");
        } else if (!strcmp(k, "properties")) {
            if (!json_is_object(v))
                continue;
            const char *pk;
            json_t *pv;
            json_object_foreach(v, pk, pv)
            {
                json_t *ps = json_object_get(x, pk);
                if (!ps) /* additionalProperties is always false */
                    return fail(why, wn, "extra property '%s'", pk);
                if (!validate(ps, pv, why, wn))
                    return fail(why, wn, "property '%s'", pk);
            }
        } else if (!strcmp(k, "required")) {
            size_t i;
            json_t *e;
            if (!json_is_object(v))
                continue;
            json_array_foreach(x, i, e)
            {
                if (!json_object_get(v, json_string_value(e)))
                    return fail(why, wn, "missing required property '%s'", json_string_value(e));
            }
        } else if (!strcmp(k, "additionalProperties")) {
            if (!json_is_false(x)) {
                fprintf(stderr, "bench_structured: validator: additionalProperties must be false\n");
                exit(1);
            }
        } else if (!strcmp(k, "items")) {
            size_t i;
            json_t *e;
            if (!json_is_array(v))
                continue;
            json_array_foreach(v, i, e)
            {
                if (!validate(x, e, why, wn))
                    return fail(why, wn, "%s", "array item");
            }
        } else if (!strcmp(k, "minItems")) {
            if (json_is_array(v) && (json_int_t)json_array_size(v) < json_integer_value(x))
                return fail(why, wn, "%s", "fewer items than minItems");
        } else if (!strcmp(k, "maxItems")) {
            if (json_is_array(v) && (json_int_t)json_array_size(v) > json_integer_value(x))
                return fail(why, wn, "%s", "more items than maxItems");
        } else if (!strcmp(k, "minimum")) {
            if (json_is_number(v) && num_cmp(v, x) < 0)
                return fail(why, wn, "%s", "below minimum");
        } else if (!strcmp(k, "maximum")) {
            if (json_is_number(v) && num_cmp(v, x) > 0)
                return fail(why, wn, "%s", "above maximum");
        } else if (!strcmp(k, "exclusiveMinimum")) {
            if (json_is_number(v) && num_cmp(v, x) <= 0)
                return fail(why, wn, "%s", "not above exclusiveMinimum");
        } else if (!strcmp(k, "exclusiveMaximum")) {
            if (json_is_number(v) && num_cmp(v, x) >= 0)
                return fail(why, wn, "%s", "not below exclusiveMaximum");
        } else if (!strcmp(k, "minLength") || !strcmp(k, "maxLength")) {
            if (!json_is_string(v))
                continue;
            json_int_t n = (json_int_t)utf8_chars(json_string_value(v), json_string_length(v));
            if (k[1] == 'i' ? n < json_integer_value(x) : n > json_integer_value(x))
                return fail(why, wn, "string length out of %s", k);
        } else if (!strcmp(k, "pattern")) {
            if (!json_is_string(v))
                continue;
            const char *s = json_string_value(v);
            if (strlen(s) != json_string_length(v)) /* a NUL: no generated pattern allows one */
                return fail(why, wn, "%s", "NUL in a pattern string");
            char re[160];
            snprintf(re, sizeof re, "^(%s)$", json_string_value(x));
            regex_t rx; /* POSIX ERE, C locale: bytes (every generated pattern is ASCII) */
            if (regcomp(&rx, re, REG_EXTENDED | REG_NOSUB) != 0) {
                fprintf(stderr, "bench_structured: validator: regcomp '%s' failed\n", re);
                exit(1);
            }
            int ok = regexec(&rx, s, 0, NULL, 0) == 0;
            regfree(&rx);
            if (!ok)
                return fail(why, wn, "does not match pattern %s", json_string_value(x));
        } else {
            fprintf(stderr, "bench_structured: validator: keyword '%s' is not handled\n", k);
            exit(1);
        }
    }
    return 1;
}

/* Sanity of the reference itself: hand-made documents it must accept and reject. */
static void validator_selftest(void)
{
    static const struct {
        const char *schema, *doc;
        int valid;
    } t[] = {
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\",\"minimum\":1}},"
         "\"required\":[\"a\"],\"additionalProperties\":false}",
         "{\"a\":1}", 1},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}},\"additionalProperties\":false}",
         "{\"a\":1,\"b\":2}", 0},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}},\"required\":[\"a\"],"
         "\"additionalProperties\":false}",
         "{}", 0},
        {"{\"type\":\"integer\",\"minimum\":1}", "0", 0},
        {"{\"type\":\"integer\"}", "1.0", 0},
        {"{\"type\":\"integer\",\"exclusiveMaximum\":5}", "5", 0},
        {"{\"type\":\"number\",\"maximum\":2.5}", "2.5", 1},
        {"{\"type\":\"number\",\"maximum\":2.5}", "2.75", 0},
        {"{\"type\":\"string\",\"maxLength\":2}", "\"\xc3\xbc\xc3\xbc\"", 1},
        {"{\"type\":\"string\",\"maxLength\":2}", "\"abc\"", 0},
        {"{\"type\":\"string\",\"pattern\":\"[a-z]{1,3}\"}", "\"abcd\"", 0},
        {"{\"type\":\"string\",\"pattern\":\"(yes|no|maybe)\"}", "\"maybe\"", 1},
        {"{\"type\":\"array\",\"items\":{\"type\":\"null\"},\"minItems\":1,\"maxItems\":2}", "[]", 0},
        {"{\"type\":\"array\",\"items\":{\"type\":\"null\"},\"minItems\":1,\"maxItems\":2}", "[null,null]",
         1},
        {"{\"enum\":[\"x\\\"y\",[1,2],2.5]}", "[1,2]", 1},
        {"{\"enum\":[\"x\\\"y\",[1,2],2.5]}", "2", 0},
        {"{\"anyOf\":[{\"type\":\"boolean\"},{\"type\":\"null\"}]}", "null", 1},
        {"{\"anyOf\":[{\"type\":\"boolean\"},{\"type\":\"null\"}]}", "0", 0},
    };
    for (size_t i = 0; i < AL_ARRAY_LEN(t); i++) {
        json_t *s = json_loads(t[i].schema, 0, NULL), *d = json_loads(t[i].doc, JSON_DECODE_ANY, NULL);
        char why[160] = "";
        if (!s || !d || validate(s, d, why, sizeof why) != t[i].valid) {
            fprintf(stderr, "bench_structured: validator self-test %zu failed (%s on %s)\n", i, t[i].schema,
                    t[i].doc);
            exit(1);
        }
        json_decref(s);
        json_decref(d);
    }
}

/* ---- helpers ------------------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The bytes of generated tokens (EOS and other byte-less ids contribute nothing). */
static char *detok(const al_vocab *v, const int32_t *t, int32_t n, size_t *len)
{
    size_t total = 1;
    for (int32_t i = 0; i < n; i++)
        total += t[i] >= 0 && t[i] < v->n && v->bytes[t[i]] ? (size_t)v->len[t[i]] : 0;
    char *b = malloc(total), *p = b;
    for (int32_t i = 0; i < n; i++)
        if (t[i] >= 0 && t[i] < v->n && v->bytes[t[i]]) {
            memcpy(p, v->bytes[t[i]], (size_t)v->len[t[i]]);
            p += v->len[t[i]];
        }
    *p = 0;
    *len = (size_t)(p - b);
    return b;
}

static int is_eos(const al_vocab *v, int32_t t)
{
    for (int32_t k = 0; k < v->n_eos; k++)
        if (v->eos[k] == t)
            return 1;
    return 0;
}

static al_grammar *compile(al_constraint_kind kind, const char *text, const al_vocab *v, double *ms)
{
    al_constraint_spec spec = {.kind = kind, .text = text, .len = text ? strlen(text) : 0};
    al_grammar *g = NULL;
    double t0 = al_now();
    al_err e = al_grammar_compile(&spec, v, &g);
    if (ms)
        *ms = (al_now() - t0) * 1e3;
    return e == AL_OK ? g : NULL;
}

/* ---- 1. property test ---------------------------------------------------------------------- */

typedef struct prop_stats {
    int schemas, compile_err, submit_err, finished, parsed, valid, cut, cut_valid, errors, max_tok;
    long tokens;
    double compile_ms_sum, compile_ms_p50, compile_ms_p99, compile_ms_max, wall_s, tok_s;
} prop_stats;

static void property_test(const shape *sh, const al_vocab *v, int n_schemas, int max_tokens, uint64_t seed,
                          int show, prop_stats *st)
{
    al_model *m = bench_model(sh, 512, v->eos[0]);
    enum { S = 16, PROMPT = 4 };
    al_engine *e = NULL;
    al_engine_opts eo = {.max_seqs = S,
                         .max_batch_tokens = 512,
                         .vocab = v,
                         .threads = -1,
                         .n_blocks = S * ((PROMPT + max_tokens + 16) / 16 + 1) + 8};
    if (al_engine_create(m, &eo, &e) != AL_OK)
        die("engine");
    memset(st, 0, sizeof *st);
    st->schemas = n_schemas;
    double *cms = calloc((size_t)n_schemas, sizeof(double));
    int n_cms = 0, shown = 0, slowest_i = -1;
    double slowest_ms = 0.0;
    char *slowest = NULL;
    int32_t ids[S];
    json_t *schemas[S];
    int idx[S];
    for (int k = 0; k < S; k++)
        ids[k] = -1;
    int next = 0, active = 0;
    double t0 = al_now();
    while (next < n_schemas || active > 0) {
        for (int k = 0; k < S && next < n_schemas; k++) {
            if (ids[k] >= 0)
                continue;
            int i = next++;
            al_rng r;
            al_rng_seed(&r, seed * 1000003u + (uint64_t)i);
            json_t *s = gen_schema(&r, 0);
            char *text = json_dumps(s, JSON_COMPACT | JSON_ENCODE_ANY);
            al_grammar *g = compile(AL_CONSTRAINT_JSON_SCHEMA, text, v, &cms[n_cms]);
            if (!g) {
                st->compile_err++;
                if (shown++ < 5)
                    fprintf(stderr, "schema %d: compile failed: %s\n  %s\n", i, al_errmsg(), text);
                free(text);
                json_decref(s);
                continue;
            }
            if (cms[n_cms] > slowest_ms) {
                slowest_ms = cms[n_cms];
                free(slowest);
                slowest = strdup(text);
                slowest_i = i;
            }
            n_cms++;
            int32_t prompt[PROMPT] = {1, 5 + i % 400, 5 + (i * 7) % 400, 5 + (i * 13) % 400};
            al_request rq = {
                .tokens = prompt,
                .n_tokens = PROMPT,
                .adapter = -1,
                .act_start = AL_ACT_NONE,
                .max_tokens = max_tokens,
                .sampling = {.temperature = 1.0f, .top_p = 1.0f, .seed = seed + 7919u * (uint64_t)i},
                .ctl = {.grammar = g}};
            int32_t id;
            al_err err = al_engine_submit(e, &rq, &id);
            al_grammar_unref(g);
            if (err != AL_OK) {
                st->submit_err++;
                if (shown++ < 5)
                    fprintf(stderr, "schema %d: submit failed: %s\n", i, al_errmsg());
                free(text);
                json_decref(s);
                continue;
            }
            free(text);
            ids[k] = id, schemas[k] = s, idx[k] = i;
            active++;
        }
        if (!active)
            continue;
        if (al_engine_step(e, NULL) != AL_OK)
            die("engine step");
        for (int k = 0; k < S; k++) {
            if (ids[k] < 0 || !al_engine_done(e, ids[k]))
                continue;
            al_result res;
            al_engine_result(e, ids[k], &res);
            st->tokens += res.n_tokens;
            st->max_tok = AL_MAX(st->max_tok, res.n_tokens);
            size_t len;
            char *out = detok(v, res.tokens, res.n_tokens, &len);
            json_error_t jerr;
            json_t *doc =
                json_loadb(out, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
            char why[200] = "";
            int ok = doc && validate(schemas[k], doc, why, sizeof why);
            for (int32_t t = 0; t < res.n_tokens && ok; t++) /* only EOS may lack bytes */
                if (!v->bytes[res.tokens[t]] && !is_eos(v, res.tokens[t]))
                    ok = 0, snprintf(why, sizeof why, "token %d has no bytes", res.tokens[t]);
            if (res.finish == AL_FINISH_STOP) {
                st->finished++;
                st->parsed += doc != NULL;
                st->valid += ok;
                if (!ok && shown++ < 10) {
                    char *sj = json_dumps(schemas[k], JSON_COMPACT | JSON_ENCODE_ANY);
                    fprintf(stderr, "schema %d: finished output %s: %s\n  schema: %s\n  output: %.*s\n",
                            idx[k], doc ? "invalid" : "does not parse", doc ? why : jerr.text, sj, (int)len,
                            out);
                    free(sj);
                }
            } else if (res.finish == AL_FINISH_LENGTH) {
                st->cut++;
                st->cut_valid += ok;
            } else {
                st->errors++;
                if (shown++ < 10)
                    fprintf(stderr, "schema %d: finish error %d after %d tokens\n", idx[k], (int)res.error,
                            res.n_tokens);
            }
            if (idx[k] < show) {
                char *sj = json_dumps(schemas[k], JSON_COMPACT | JSON_ENCODE_ANY);
                fprintf(stderr, "schema %d: %s\n  finish %d, %d tokens, %s: %.*s\n", idx[k], sj,
                        (int)res.finish, res.n_tokens, ok ? "valid" : "INVALID", (int)len, out);
                free(sj);
            }
            json_decref(doc);
            free(out);
            json_decref(schemas[k]);
            al_engine_release(e, ids[k]);
            ids[k] = -1;
            active--;
        }
    }
    st->wall_s = al_now() - t0;
    if (slowest)
        fprintf(stderr, "bench_structured: slowest compile: schema %d, %.3f ms: %s\n", slowest_i, slowest_ms,
                slowest);
    free(slowest);
    st->tok_s = st->tokens / st->wall_s;
    qsort(cms, (size_t)n_cms, sizeof(double), cmp_double);
    for (int i = 0; i < n_cms; i++)
        st->compile_ms_sum += cms[i];
    if (n_cms > 0) {
        st->compile_ms_p50 = cms[n_cms / 2];
        st->compile_ms_p99 = cms[(n_cms * 99) / 100];
        st->compile_ms_max = cms[n_cms - 1];
    }
    free(cms);
    al_engine_free(e);
    al_model_free(m);
}

/* ---- 2 / 3. the 85m engine: decode step, mask cost, throughput ------------------------------ */

typedef struct intr_case {
    const char *name;
    al_constraint_kind kind;
    const char *spec;
    int max_tokens;
} intr_case;

/* The intrinsics' output constraints: the catalogue's (services/router/front/intrinsics.c) choices and
 * query-rewrite schema, and the hallucination schema of the structured-outputs issue. */
static const intr_case intr_cases[] = {
    {"certainty digit (choice of 10)", AL_CONSTRAINT_CHOICE,
     "[\"0\",\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\"]", 2},
    {"answerability labels (choice)", AL_CONSTRAINT_CHOICE, "[\"answerable\",\"unanswerable\"]", 6},
    {"query rewrite {rewritten_question: string}", AL_CONSTRAINT_JSON_SCHEMA,
     "{\"type\":\"object\",\"properties\":{\"rewritten_question\":{\"type\":\"string\"}},"
     "\"required\":[\"rewritten_question\"],\"additionalProperties\":false}",
     256},
    {"query rewrite as deployed (maxLength 2000)", AL_CONSTRAINT_JSON_SCHEMA,
     "{\"type\":\"object\",\"properties\":{\"rewritten_question\":{\"type\":\"string\",\"maxLength\":2000}},"
     "\"required\":[\"rewritten_question\"],\"additionalProperties\":false}",
     256},
    {"hallucination [{response_begin, response_end, response_text, faithfulness_likelihood}]",
     AL_CONSTRAINT_JSON_SCHEMA,
     "{\"type\":\"array\",\"items\":{\"type\":\"object\",\"properties\":{"
     "\"response_begin\":{\"type\":\"integer\",\"minimum\":0},"
     "\"response_end\":{\"type\":\"integer\",\"minimum\":0},\"response_text\":{\"type\":\"string\"},"
     "\"faithfulness_likelihood\":{\"type\":\"number\",\"minimum\":0,\"maximum\":1}},"
     "\"required\":[\"response_begin\",\"response_end\",\"response_text\",\"faithfulness_likelihood\"],"
     "\"additionalProperties\":false}}",
     256},
};
#define N_INTR ((int)AL_ARRAY_LEN(intr_cases))

typedef struct decode_run {
    int32_t *tokens;
    int32_t n;
    al_finish finish;
} decode_run;

/* One sequence on the engine (max_seqs 1) to the end; g NULL = unconstrained (ignore_eos). */
static void decode_one(al_engine *e, const int32_t *prompt, int32_t n_prompt, al_grammar *g, int max_tokens,
                       uint64_t seed, decode_run *out)
{
    al_request rq = {.tokens = prompt,
                     .n_tokens = n_prompt,
                     .adapter = -1,
                     .act_start = AL_ACT_NONE,
                     .max_tokens = max_tokens,
                     .ignore_eos = g == NULL,
                     .sampling = {.temperature = 1.0f, .top_p = 1.0f, .seed = seed},
                     .ctl = {.grammar = g}};
    int32_t id;
    if (al_engine_submit(e, &rq, &id) != AL_OK || al_engine_run(e) != AL_OK)
        die("decode");
    al_result res;
    al_engine_result(e, id, &res);
    out->n = res.n_tokens;
    out->finish = res.finish;
    out->tokens = malloc(sizeof(int32_t) * (size_t)AL_MAX(res.n_tokens, 1));
    memcpy(out->tokens, res.tokens, sizeof(int32_t) * (size_t)res.n_tokens);
    al_engine_release(e, id);
}

/* Replays tokens [n] through al_matcher_apply on a fresh matcher of g (remaining counting down from
 * max_tokens, as the engine passes it), the logits row [V] restored before each call (the cost does
 * not depend on its values); dt[i] = min(dt[i], this replay's seconds for step i). */
static void replay_apply(al_grammar *g, const int32_t *tokens, int32_t n, int max_tokens, const float *row,
                         float *work, int32_t V, double *dt)
{
    al_matcher *mt;
    if (al_matcher_new(g, &mt) != AL_OK)
        die("matcher");
    for (int32_t i = 0; i < n; i++) {
        memcpy(work, row, sizeof(float) * (size_t)V);
        double t0 = al_now();
        int32_t allowed = al_matcher_apply(mt, max_tokens - i, work, V);
        double t = al_now() - t0;
        dt[i] = t < dt[i] ? t : dt[i];
        if (allowed <= 0 || isinf(work[tokens[i]]) || al_matcher_accept(mt, tokens[i]) != AL_OK) {
            fprintf(stderr, "bench_structured: replay: token %d (step %d) not allowed\n", tokens[i], i);
            exit(1);
        }
    }
    al_matcher_free(mt);
}

/* Mean of dt [n] in µs; *median_us its median (dt gets sorted). */
static double step_stats(double *dt, int32_t n, double *median_us)
{
    double sum = 0.0;
    for (int32_t i = 0; i < n; i++)
        sum += dt[i];
    qsort(dt, (size_t)n, sizeof(double), cmp_double);
    *median_us = n ? dt[n / 2] * 1e6 : 0.0;
    return n ? sum / n * 1e6 : 0.0;
}

typedef struct mask_row {
    double compile_ms, cold_us, cold_med_us, warm_us, warm_med_us, warm_nob_us;
    int32_t tokens;
    al_finish finish;
} mask_row;

#define REPLAYS 3 /* per-step minimum over this many replays: robust to preemption on a shared machine */

/* Compile time (best of REPLAYS fresh compiles); cold: the tokens replayed on each freshly compiled
 * grammar (lazy DFA and masks built on the way); warm: REPLAYS more replays on the last one (cached
 * masks); warm_nob: the same without the max_tokens budget (near the end of a decode cut by the
 * budget, its restricted masks are uncached trie walks). Each step's time is its minimum over the
 * replays. */
static void cold_warm(const intr_case *c, const al_vocab *v, const int32_t *tokens, int32_t n,
                      const float *row, float *work, mask_row *out)
{
    double *dt = malloc(sizeof(double) * (size_t)AL_MAX(n, 1));
    for (int32_t i = 0; i < n; i++)
        dt[i] = 1e30;
    al_grammar *g = NULL;
    out->compile_ms = 1e30;
    for (int k = 0; k < REPLAYS; k++) {
        double ms;
        al_grammar_unref(g);
        if (!(g = compile(c->kind, c->spec, v, &ms)))
            die(c->name);
        out->compile_ms = ms < out->compile_ms ? ms : out->compile_ms;
        replay_apply(g, tokens, n, c->max_tokens, row, work, v->n, dt);
    }
    out->cold_us = step_stats(dt, n, &out->cold_med_us);
    for (int32_t i = 0; i < n; i++)
        dt[i] = 1e30;
    for (int k = 0; k < REPLAYS; k++)
        replay_apply(g, tokens, n, c->max_tokens, row, work, v->n, dt);
    out->warm_us = step_stats(dt, n, &out->warm_med_us);
    for (int32_t i = 0; i < n; i++) /* again without the max_tokens budget (remaining <= 0) */
        dt[i] = 1e30;
    for (int k = 0; k < REPLAYS; k++)
        replay_apply(g, tokens, n, 0, row, work, v->n, dt);
    double med;
    out->warm_nob_us = step_stats(dt, n, &med);
    al_grammar_unref(g);
    free(dt);
}

/* Categorical sample over the finite entries of l [V] (temperature 1). */
static int32_t sample_row(const float *l, int32_t V, al_rng *r)
{
    float mx = -INFINITY;
    for (int32_t i = 0; i < V; i++)
        mx = l[i] > mx ? l[i] : mx;
    double sum = 0.0;
    for (int32_t i = 0; i < V; i++)
        if (l[i] > -INFINITY)
            sum += exp((double)(l[i] - mx));
    double u = al_rng_uniform(r) * sum, acc = 0.0;
    int32_t last = -1;
    for (int32_t i = 0; i < V; i++)
        if (l[i] > -INFINITY) {
            acc += exp((double)(l[i] - mx));
            last = i;
            if (u < acc)
                return i;
        }
    return last;
}

/* The engine's per-token log-softmax normaliser over a row (engine/sched.c ali_seq_sample). */
static double lse_pass(const float *logits, int32_t V)
{
    float mx = logits[0];
    for (int32_t i = 1; i < V; i++)
        mx = logits[i] > mx ? logits[i] : mx;
    double se = 0.0;
    for (int32_t i = 0; i < V; i++)
        se += exp((double)logits[i] - mx);
    return mx + log(se);
}

/* A decode on the 128k vocabulary without a model of that size: each step draws a fresh random
 * logits row (std 0.3, as flat as the random models' rows), applies g, samples, accepts. Writes
 * the tokens (room for max_tokens), returns their number. */
static int32_t decode_128k(al_grammar *g, const al_vocab *v, int max_tokens, uint64_t seed, float *l,
                           int32_t *toks, al_finish *finish)
{
    int32_t V = v->n, n = 0;
    al_rng r;
    al_rng_seed(&r, seed);
    al_matcher *mt;
    if (al_matcher_new(g, &mt) != AL_OK)
        die("matcher");
    *finish = AL_FINISH_LENGTH;
    while (n < max_tokens) {
        for (int32_t i = 0; i < V; i++)
            l[i] = (float)(0.3 * al_rng_normal(&r));
        if (al_matcher_apply(mt, max_tokens - n, l, V) <= 0) {
            fprintf(stderr, "bench_structured: nothing allowed on the 128k vocabulary: %s\n", al_errmsg());
            *finish = AL_FINISH_ERROR;
            break;
        }
        int32_t t = sample_row(l, V, &r);
        toks[n++] = t;
        if (al_matcher_accept(mt, t) != AL_OK)
            die("accept");
        if (is_eos(v, t) || al_matcher_finished(mt)) {
            *finish = AL_FINISH_STOP;
            break;
        }
    }
    al_matcher_free(mt);
    return n;
}

/* The tokens come from up to 8 seeded decodes on one grammar (the first that fills half of
 * max_tokens, else the longest); cold = their replay on a freshly compiled grammar, warm = again on
 * the same grammar. */
static void mask_128k(const al_vocab *v, const intr_case *c, uint64_t seed, mask_row *row)
{
    memset(row, 0, sizeof *row);
    int32_t V = v->n;
    float *l = malloc(sizeof(float) * (size_t)V), *w = malloc(sizeof(float) * (size_t)V);
    int32_t *toks = malloc(sizeof(int32_t) * (size_t)c->max_tokens),
            *best = malloc(sizeof(int32_t) * (size_t)c->max_tokens);
    al_grammar *g = compile(c->kind, c->spec, v, NULL);
    if (!g)
        die(c->name);
    int32_t n = 0;
    for (int k = 0; k < 8 && n < c->max_tokens / 2; k++) {
        al_finish f;
        int32_t m = decode_128k(g, v, c->max_tokens, seed + (uint64_t)k, l, toks, &f);
        if (m > n) {
            n = m;
            row->finish = f;
            memcpy(best, toks, sizeof(int32_t) * (size_t)m);
        }
    }
    al_grammar_unref(g);
    row->tokens = n;
    al_rng r;
    al_rng_seed(&r, seed ^ 0x5eed);
    for (int32_t i = 0; i < V; i++)
        l[i] = (float)(0.3 * al_rng_normal(&r));
    cold_warm(c, v, best, n, l, w, row);
    free(l);
    free(w);
    free(toks);
    free(best);
}

static void print_property(const prop_stats *st, const shape *sh, const al_vocab *v, int max_tokens)
{
    const prop_stats ps = *st;
    const shape *prop_shape = sh;
    printf("### 1. property test: %d random JSON schemas, random model '%s' shape (hidden %d, %d layers, "
           "vocab 512), demo tokenizer vocabulary (%d ids), temperature 1, max_tokens %d, 16 sequences "
           "batched, all cores\n\n",
           ps.schemas, prop_shape->name, prop_shape->hidden, prop_shape->layers, v->n, max_tokens);
    printf("| schemas | compile errors | finished (stop) | parsed | valid | valid / finished | cut at "
           "max_tokens (still valid) | finish errors | tokens (mean, max) | tok/s |\n"
           "|---|---|---|---|---|---|---|---|---|---|\n");
    printf("| %d | %d | %d | %d | %d | %.2f%% | %d (%d) | %d | %ld (%.1f, %d) | %.0f |\n\n", ps.schemas,
           ps.compile_err + ps.submit_err, ps.finished, ps.parsed, ps.valid,
           ps.finished ? 100.0 * ps.valid / ps.finished : 0.0, ps.cut, ps.cut_valid, ps.errors, ps.tokens,
           ps.schemas ? (double)ps.tokens / ps.schemas : 0.0, ps.max_tok, ps.tok_s);
    int n_comp = ps.schemas - ps.compile_err;
    printf(
        "Schema compile time (demo vocabulary, %d schemas): mean %.3f ms, median %.3f ms, p99 %.3f ms, max "
        "%.3f ms.\n\n",
        n_comp, n_comp ? ps.compile_ms_sum / n_comp : 0.0, ps.compile_ms_p50, ps.compile_ms_p99,
        ps.compile_ms_max);
}

/* ---- main ---------------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    int n_schemas = 1000, n_given = 0, quick = 0, max_tokens = 256, show = 0, property_only = 0;
    const char *model_name = "small", *vocab128k = "/tmp/constrain_bpe_128000.tokenizer.json",
               *tok_path = "deploy/tokenizer";
    uint64_t seed = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick"))
            quick = 1;
        else if (!strcmp(argv[i], "--model") && i + 1 < argc)
            model_name = argv[++i];
        else if (!strcmp(argv[i], "--max-tokens") && i + 1 < argc)
            max_tokens = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--vocab128k") && i + 1 < argc)
            vocab128k = argv[++i];
        else if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc)
            tok_path = argv[++i];
        else if (!strcmp(argv[i], "--property-only"))
            property_only = 1;
        else if (!strcmp(argv[i], "--show") && i + 1 < argc)
            show = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
            seed = strtoull(argv[++i], NULL, 10);
        else if (argv[i][0] != '-' && atoi(argv[i]) > 0)
            n_schemas = atoi(argv[i]), n_given = 1;
        else {
            fprintf(stderr, "usage: bench_structured [N=1000] [--quick] [--model tiny|small|85m] "
                            "[--max-tokens 256] [--vocab128k PATH|none] [--tokenizer DIR] [--seed S] "
                            "[--show K] [--property-only]\n");
            return 2;
        }
    }
    if (quick && !n_given)
        n_schemas = 100;
    const shape *prop_shape = find_shape(model_name);
    validator_selftest();

    al_tokenizer *tok = NULL;
    if (al_tokenizer_load(tok_path, &tok) != AL_OK)
        die("demo tokenizer (run from the repository root or pass --tokenizer)");
    al_model_config vc = {.vocab_size = 512, .n_eos = 0};
    al_vocab *v = NULL;
    if (al_vocab_from_tokenizer(tok, &vc, &v) != AL_OK || v->n_eos < 1)
        die("vocabulary");
    int32_t eos = v->eos[0];
    /* A vocabulary's trie lives while some grammar of it does (a server's grammar cache keeps one):
     * hold one for the whole run so that compile times do not include rebuilding it. */
    double demo_trie_ms;
    al_grammar *keep_demo = compile(AL_CONSTRAINT_REGEX, "x", v, &demo_trie_ms);
    if (!keep_demo)
        die("demo vocabulary grammar");

    /* 1. property test */
    prop_stats ps;
    double t_start = al_now();
    property_test(prop_shape, v, n_schemas, max_tokens, seed, show, &ps);
    fprintf(stderr, "bench_structured: property test: %d schemas in %.1f s\n", n_schemas, al_now() - t_start);
    if (property_only) {
        print_property(&ps, prop_shape, v, max_tokens);
        printf("{\"schemas\":%d,\"compile_errors\":%d,\"finished\":%d,\"parsed\":%d,\"valid\":%d,\"cut\":%d,"
               "\"cut_valid\":%d,\"finish_errors\":%d,\"prop_model\":\"%s\",\"prop_tok_s\":%.1f,"
               "\"seed\":%llu}\n",
               ps.schemas, ps.compile_err + ps.submit_err, ps.finished, ps.parsed, ps.valid, ps.cut,
               ps.cut_valid, ps.errors, prop_shape->name, ps.tok_s, (unsigned long long)seed);
        al_grammar_unref(keep_demo);
        al_vocab_free(v);
        al_tokenizer_free(tok);
        return ps.finished == ps.valid && ps.errors == 0 && ps.compile_err + ps.submit_err == 0 ? 0 : 1;
    }

    /* 2 / 3. the 85m random model, 1 thread */
    const shape *s85 = find_shape("85m");
    al_model *m = bench_model(s85, 512, eos);
    int n_thr = 32, reps = quick ? 8 : 16, n_dec = quick ? 32 : 64;
    int32_t prompt[32];
    for (int i = 0; i < n_thr; i++)
        prompt[i] = 5 + (i * 37) % 490;
    /* one engine per decode variant of section 3, on the same weights; section 2 uses the first */
    al_engine *es[3];
    al_engine_opts eo = {
        .max_seqs = 1, .max_batch_tokens = 512, .vocab = v, .threads = 1, .n_blocks = (n_thr + 300) / 16 + 4};
    for (int k = 0; k < 3; k++)
        if (al_engine_create(m, &eo, &es[k]) != AL_OK)
            die("engine");
    al_engine *e = es[0];
    int V = m->cfg.vocab_size;

    /* 3. throughput: unconstrained / a permissive regex / the deployed query-rewrite schema, stepped
     * in turn (one step of each per round) so that the three see the same load of a shared machine.
     * A constrained decode must reach n_dec tokens without finishing: the first seed whose decode
     * does is kept (sampling is deterministic for a seed). */
    const char *thr_name[3] = {"unconstrained", "regex [ -~\\n]* (printable text)",
                               "query-rewrite schema (maxLength 2000)"};
    al_grammar *thr_g[3] = {NULL, compile(AL_CONSTRAINT_REGEX, "[ -~\\n]*", v, NULL),
                            compile(AL_CONSTRAINT_JSON_SCHEMA, intr_cases[3].spec, v, NULL)};
    uint64_t thr_seed[3] = {11, 0, 0};
    for (int k = 1; k < 3; k++) {
        if (!thr_g[k])
            die("throughput grammar");
        for (uint64_t sd = 100; sd < 200 && !thr_seed[k]; sd++) {
            decode_run d;
            decode_one(es[k], prompt, n_thr, thr_g[k], n_dec, sd, &d);
            if (d.n == n_dec) /* cut at n_dec, or closed by the budget rule at exactly n_dec */
                thr_seed[k] = sd;
            free(d.tokens);
        }
        if (!thr_seed[k]) {
            fprintf(stderr, "bench_structured: no seed in 100 decodes %d tokens long for %s\n", n_dec,
                    thr_name[k]);
            return 1;
        }
    }
    double thr_best[3] = {1e30, 1e30, 1e30}, thr_med[3], thr_pair[3] = {1.0, 0, 0};
    int32_t thr_n[3] = {0, 0, 0};
    double *thr_steps[3], *pairs[3];
    int thr_ns[3] = {0, 0, 0}, n_pairs[3] = {0, 0, 0};
    for (int k = 0; k < 3; k++) {
        thr_steps[k] = malloc(sizeof(double) * (size_t)reps * (size_t)n_dec);
        pairs[k] = malloc(sizeof(double) * (size_t)reps * (size_t)n_dec);
    }
    for (int rep = 0; rep < reps; rep++) {
        int32_t id[3], act[3];
        double run_s[3] = {0, 0, 0};
        for (int k = 0; k < 3; k++) {
            al_request rq = {.tokens = prompt,
                             .n_tokens = n_thr,
                             .adapter = -1,
                             .act_start = AL_ACT_NONE,
                             .max_tokens = n_dec,
                             .ignore_eos = thr_g[k] == NULL,
                             .sampling = {.temperature = 1.0f, .top_p = 1.0f, .seed = thr_seed[k]},
                             .ctl = {.grammar = thr_g[k]}};
            if (al_engine_submit(es[k], &rq, &id[k]) != AL_OK || al_engine_step(es[k], &act[k]) != AL_OK)
                die("decode"); /* prefill + first token */
        }
        while (act[0] > 0 || act[1] > 0 || act[2] > 0) {
            double dt[3] = {0, 0, 0};
            for (int k = 0; k < 3; k++) {
                if (act[k] <= 0)
                    continue;
                double t0 = al_now();
                if (al_engine_step(es[k], &act[k]) != AL_OK)
                    die("decode step");
                dt[k] = al_now() - t0;
                run_s[k] += dt[k];
                if (thr_ns[k] < reps * n_dec)
                    thr_steps[k][thr_ns[k]++] = dt[k];
            }
            for (int k = 1; k < 3; k++) /* same round: unconstrained step / constrained step */
                if (dt[0] > 0 && dt[k] > 0 && n_pairs[k] < reps * n_dec)
                    pairs[k][n_pairs[k]++] = dt[0] / dt[k];
        }
        for (int k = 0; k < 3; k++) {
            al_result res;
            al_engine_result(es[k], id[k], &res);
            thr_n[k] = res.n_tokens;
            if (res.n_tokens > 1 && run_s[k] / (res.n_tokens - 1) * 1e3 < thr_best[k])
                thr_best[k] = run_s[k] / (res.n_tokens - 1) * 1e3;
            al_engine_release(es[k], id[k]);
        }
    }
    for (int k = 0; k < 3; k++) { /* medians: robust to other load on a shared machine */
        qsort(thr_steps[k], (size_t)thr_ns[k], sizeof(double), cmp_double);
        thr_med[k] = thr_steps[k][thr_ns[k] / 2] * 1e3;
        if (k > 0 && n_pairs[k] > 0) {
            qsort(pairs[k], (size_t)n_pairs[k], sizeof(double), cmp_double);
            thr_pair[k] = pairs[k][n_pairs[k] / 2];
        }
        free(thr_steps[k]);
        free(pairs[k]);
    }
    double step_ms = thr_med[0];
    fprintf(stderr, "bench_structured: throughput done at %.1f s\n", al_now() - t_start);

    /* 2. mask cost on the demo vocabulary: decode with the grammar on the engine, then replay the
     * tokens through al_matcher_apply on a fresh grammar (cold: lazy DFA and masks built on the way)
     * and again on the same grammar (warm: cached masks). */
    float *row = malloc(sizeof(float) * (size_t)V), *work = malloc(sizeof(float) * (size_t)V);
    al_rng rr;
    al_rng_seed(&rr, 5);
    for (int i = 0; i < V; i++)
        row[i] = (float)(0.3 * al_rng_normal(&rr));
    double timer_ns;
    {
        double t0 = al_now(), x = 0;
        for (int i = 0; i < 100000; i++)
            x += al_now();
        timer_ns = (al_now() - t0) / 100000 * 1e9;
        (void)x;
    }
    mask_row demo[N_INTR];
    double max_ratio_cold = 0.0, max_ratio_warm = 0.0;
    for (int c = 0; c < N_INTR; c++) {
        const intr_case *ic = &intr_cases[c];
        mask_row *mr = &demo[c];
        memset(mr, 0, sizeof *mr);
        /* a representative decode: the first of up to 8 seeds that fills half of max_tokens, else
         * the longest (random sampling often closes an array at once: "[]") */
        al_grammar *g = compile(ic->kind, ic->spec, v, NULL);
        decode_run d = {0};
        for (int k = 0; k < 8 && d.n < ic->max_tokens / 2; k++) {
            decode_run t;
            decode_one(e, prompt, n_thr, g, ic->max_tokens, 1000 + 100 * (uint64_t)c + (uint64_t)k, &t);
            if (t.n > d.n) {
                free(d.tokens);
                d = t;
            } else {
                free(t.tokens);
            }
        }
        al_grammar_unref(g);
        mr->tokens = d.n;
        mr->finish = d.finish;
        cold_warm(ic, v, d.tokens, d.n, row, work, mr);
        free(d.tokens);
        max_ratio_cold = fmax(max_ratio_cold, mr->cold_us * 1e-3 / step_ms);
        max_ratio_warm = fmax(max_ratio_warm, mr->warm_us * 1e-3 / step_ms);
    }
    for (int k = 1; k < 3; k++)
        al_grammar_unref(thr_g[k]);
    for (int k = 0; k < 3; k++)
        al_engine_free(es[k]);
    al_model_free(m);
    fprintf(stderr, "bench_structured: mask cost (demo vocabulary) done at %.1f s\n", al_now() - t_start);

    /* 2b. the 128k vocabulary, when there is one */
    int have128 = 0;
    mask_row big[N_INTR];
    double trie_ms = 0.0, lse_us = 0.0, max_cold_128 = 0.0, max_warm_128 = 0.0;
    int32_t n128 = 0;
    al_tokenizer *t128 = NULL;
    al_vocab *v128 = NULL;
    FILE *probe = strcmp(vocab128k, "none") ? fopen(vocab128k, "r") : NULL;
    if (probe) {
        fclose(probe);
        if (al_tokenizer_load(vocab128k, &t128) != AL_OK ||
            al_vocab_from_tokenizer(t128, NULL, &v128) != AL_OK)
            die(vocab128k);
        n128 = v128->n;
        /* the first grammar of the vocabulary builds its trie; hold it (see keep_demo) */
        al_grammar *keep128 = compile(AL_CONSTRAINT_REGEX, "x", v128, &trie_ms);
        if (!keep128)
            die("128k vocabulary grammar");
        float *l = malloc(sizeof(float) * (size_t)n128);
        for (int32_t i = 0; i < n128; i++)
            l[i] = (float)(0.3 * al_rng_normal(&rr));
        double bestl = 1e30, sink = 0;
        for (int k = 0; k < 20; k++) {
            double t1 = al_now();
            sink += lse_pass(l, n128);
            double dt = al_now() - t1;
            bestl = dt < bestl ? dt : bestl;
        }
        lse_us = bestl * 1e6;
        if (sink == 12345.0)
            printf(" ");
        free(l);
        for (int c = 0; c < N_INTR; c++) {
            mask_128k(v128, &intr_cases[c], 2000 + (uint64_t)c, &big[c]);
            max_cold_128 = fmax(max_cold_128, big[c].cold_us);
            max_warm_128 = fmax(max_warm_128, big[c].warm_us);
        }
        al_grammar_unref(keep128);
        have128 = 1;
    }

    /* ---- report ---- */
    static const char *const fin[] = {"none", "length", "stop", "error"};
    printf("alora structured-outputs bench\n\n");
    print_property(&ps, prop_shape, v, max_tokens);
    printf(
        "### 2. mask cost per generated token (al_matcher_apply on a full logits row), 85m random model, 1 "
        "thread (target: <= 0.02 of a decode step)\n\n");
    printf(
        "Bound: the 85m decode step in the same run, median %.2f ms (%.1f tok/s). Demo vocabulary (%d ids): "
        "first grammar (builds the trie) %.3f ms. The tokens of a decode with the grammar, replayed: cold on "
        "freshly compiled grammars (lazy DFA and masks built on the way), warm on the same grammar again; "
        "each step's time is its minimum over %d replays. Timer overhead %.0f ns per measured call "
        "(included).\n\n",
        step_ms, 1e3 / step_ms, v->n, demo_trie_ms, REPLAYS, timer_ns);
    printf("| constraint | compile | tokens (finish) | cold µs/token mean (median) | warm µs/token mean "
           "(median) | warm, no budget | cold / step | warm / step |\n|---|---|---|---|---|---|---|---|\n");
    for (int c = 0; c < N_INTR; c++)
        printf("| %s | %.3f ms | %d (%s) | %.2f (%.2f) | %.2f (%.2f) | %.2f | %.5f | %.5f |\n",
               intr_cases[c].name, demo[c].compile_ms, demo[c].tokens, fin[demo[c].finish], demo[c].cold_us,
               demo[c].cold_med_us, demo[c].warm_us, demo[c].warm_med_us, demo[c].warm_nob_us,
               demo[c].cold_us * 1e-3 / step_ms, demo[c].warm_us * 1e-3 / step_ms);
    printf("\n");
    if (have128) {
        printf(
            "128k byte-level BPE vocabulary (%s, %d ids; target: <= 100 µs/token): first grammar (builds the "
            "trie) %.1f ms, once per vocabulary. Bound: one log-softmax pass over a %d-logit row (the "
            "engine's per-token normaliser) %.1f µs. Tokens from random flat logits (no 128k model "
            "here).\n\n",
            vocab128k, n128, trie_ms, n128, lse_us);
        printf("| constraint | compile | tokens (finish) | cold µs/token mean (median) | warm µs/token mean "
               "(median) | warm, no budget | cold / log-softmax | warm / log-softmax |\n"
               "|---|---|---|---|---|---|---|---|\n");
        for (int c = 0; c < N_INTR; c++)
            printf("| %s | %.3f ms | %d (%s) | %.1f (%.1f) | %.1f (%.1f) | %.1f | %.3f | %.3f |\n",
                   intr_cases[c].name, big[c].compile_ms, big[c].tokens, fin[big[c].finish], big[c].cold_us,
                   big[c].cold_med_us, big[c].warm_us, big[c].warm_med_us, big[c].warm_nob_us,
                   big[c].cold_us / lse_us, big[c].warm_us / lse_us);
        printf("\n");
    } else {
        printf(
            "128k vocabulary: skipped (%s not found; tests/fixtures/constrain/train_vocab.py makes it).\n\n",
            vocab128k);
    }

    printf("### 3. decode throughput, 85m random model, 1 thread, %d-token prompt, %d generated tokens, %d "
           "runs; the three decodes stepped in turn, one step each per round (target: constrained / "
           "unconstrained >= 0.95)\n\n",
           n_thr, n_dec, reps);
    printf("| decode | tokens | median ms/step | tok/s (median step) | best run ms/token | / unconstrained "
           "(median steps) | / unconstrained (median of same-round step ratios) |\n"
           "|---|---|---|---|---|---|---|\n");
    for (int k = 0; k < 3; k++)
        printf("| %s | %d | %.2f | %.1f | %.2f | %.3f | %.3f |\n", thr_name[k], thr_n[k], thr_med[k],
               1e3 / thr_med[k], thr_best[k], thr_med[0] / thr_med[k], thr_pair[k]);
    printf("\n");

    printf(
        "{\"schemas\":%d,\"compile_errors\":%d,\"finished\":%d,\"parsed\":%d,\"valid\":%d,"
        "\"valid_ratio\":%.4f,\"cut\":%d,\"cut_valid\":%d,\"finish_errors\":%d,\"prop_model\":\"%s\",\"prop_"
        "tok_s\":%.1f,"
        "\"compile_ms_mean\":%.4f,\"compile_ms_max\":%.3f,\"step_ms\":%.3f,\"mask_cold_step_ratio_max\":%.5f,"
        "\"mask_warm_step_ratio_max\":%.5f,\"vocab128k\":%s,\"mask128k_cold_us_max\":%.1f,"
        "\"mask128k_warm_us_max\":%.1f,\"lse128k_us\":%.1f,\"throughput_ratio_regex\":%.3f,"
        "\"throughput_ratio_schema\":%.3f,\"quick\":%d}\n",
        ps.schemas, ps.compile_err + ps.submit_err, ps.finished, ps.parsed, ps.valid,
        ps.finished ? (double)ps.valid / ps.finished : 0.0, ps.cut, ps.cut_valid, ps.errors, prop_shape->name,
        ps.tok_s, ps.schemas > ps.compile_err ? ps.compile_ms_sum / (ps.schemas - ps.compile_err) : 0.0,
        ps.compile_ms_max, step_ms, max_ratio_cold, max_ratio_warm, have128 ? "true" : "false", max_cold_128,
        max_warm_128, lse_us, thr_pair[1], thr_pair[2], quick);

    free(row);
    free(work);
    al_grammar_unref(keep_demo);
    al_vocab_free(v128);
    al_tokenizer_free(t128);
    al_vocab_free(v);
    al_tokenizer_free(tok);
    al_grammar_cache_clear();
    return ps.finished == ps.valid && ps.errors == 0 && ps.compile_err + ps.submit_err == 0 ? 0 : 1;
}
