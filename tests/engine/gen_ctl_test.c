/* gen_ctl_test.c: the per-generation controls (al_gen_ctl) end to end through the engine on a tiny
 * random Llama made in process, each against a reference computed here from the raw logits the
 * engine reports (req.gen_logits): logit bias, frequency / presence / repetition penalties (the
 * read-only prefix's tokens included), min_tokens, stop strings across token boundaries, grammars
 * (choice, regex, JSON schema) under greedy and random sampling, logprobs of the raw
 * distribution, al_engine_continue_ex, invalid values, and no controls = the plain sampler. */
#include "al_test.h"

#include <jansson.h>
#include <math.h>

#include "common/util.h"
#include "engine/engine.h"

#define NV 512 /* vocabulary */
#define EOS 2
#define MAXT 64

static al_model *M;
static void *MBASE;
static al_vocab *VOC;
static const int32_t PROMPT[] = {1, 40, 77, 300, 5, 9, 123, 450, 61, 62};
#define NP ((int32_t)AL_ARRAY_LEN(PROMPT))

/* ---- fixture: a random 2-layer Llama and a byte vocabulary with multi-byte tokens ------------ */

static void fill(float *p, size_t n, al_rng *r, float sd)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (float)al_rng_normal(r) * sd;
}

static void ones(float *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = 1.0f;
}

static int setup(void **state)
{
    al_model_config c = {.arch = AL_ARCH_LLAMA,
                         .vocab_size = NV,
                         .hidden_size = 64,
                         .intermediate_size = 128,
                         .n_layers = 2,
                         .n_heads = 4,
                         .n_kv_heads = 2,
                         .head_dim = 16,
                         .max_position_embeddings = 1024,
                         .rms_eps = 1e-5f,
                         .rope_theta = 10000.0f,
                         .embedding_multiplier = 1.0f,
                         .attention_multiplier = 0.25f,
                         .residual_multiplier = 1.0f,
                         .logits_scaling = 1.0f,
                         .bos_token_id = 1,
                         .eos_token_ids = {EOS},
                         .n_eos = 1,
                         .dtype = AL_DT_F32};
    snprintf(c.name, sizeof c.name, "gen-ctl-tiny");
    size_t bytes = al_weights_layout_bytes(&c);
    MBASE = ali_aligned_alloc(bytes);
    assert_non_null(MBASE);
    memset(MBASE, 0, bytes);
    assert_int_equal(al_model_view(&c, MBASE, &M), AL_OK);
    al_rng r;
    al_rng_seed(&r, 2024);
    al_weights *w = &M->w;
    int32_t H = c.hidden_size, I = c.intermediate_size, q = c.n_heads * c.head_dim,
            kv = c.n_kv_heads * c.head_dim;
    fill(w->embed, (size_t)NV * H, &r, 1.0f);
    for (int l = 0; l < c.n_layers; l++) {
        al_layer_weights *lw = &w->layers[l];
        ones(lw->attn_norm, (size_t)H);
        ones(lw->ffn_norm, (size_t)H);
        fill(lw->wq, (size_t)q * H, &r, 0.15f);
        fill(lw->wk, (size_t)kv * H, &r, 0.15f);
        fill(lw->wv, (size_t)kv * H, &r, 0.15f);
        fill(lw->wo, (size_t)H * q, &r, 0.1f);
        fill(lw->w_gate, (size_t)I * H, &r, 0.1f);
        fill(lw->w_up, (size_t)I * H, &r, 0.1f);
        fill(lw->w_down, (size_t)H * I, &r, 0.1f);
    }
    ones(w->norm, (size_t)H);
    fill(w->lm_head, (size_t)NV * H, &r, 0.3f); /* logits of standard deviation ~2.4 */

    /* ids 0..2 special (no bytes, 2 = EOS), 3..258 the single bytes, 259..358 "00".."99", then
     * words and random 2-4 letter strings */
    static uint8_t store[NV][8];
    const uint8_t *p[NV];
    int32_t len[NV];
    static const char *words[] = {"yes", "no",  "ye",   "es", "true", "false", "null", "{\"", "\":", ": ",
                                  ", ",  "\"}", "name", "ok", "\"n",  "ab",    "cd",   "ef",  "abc", "the"};
    uint64_t lcg = 77;
    for (int32_t i = 0; i < NV; i++) {
        p[i] = store[i];
        if (i < 3) {
            p[i] = NULL;
            len[i] = 0;
        } else if (i < 259) {
            store[i][0] = (uint8_t)(i - 3);
            len[i] = 1;
        } else if (i < 359) {
            store[i][0] = (uint8_t)('0' + (i - 259) / 10);
            store[i][1] = (uint8_t)('0' + (i - 259) % 10);
            len[i] = 2;
        } else if (i < 359 + (int32_t)AL_ARRAY_LEN(words)) {
            len[i] = (int32_t)strlen(words[i - 359]);
            memcpy(store[i], words[i - 359], (size_t)len[i]);
        } else {
            lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
            len[i] = 2 + (int32_t)((lcg >> 33) % 3);
            for (int32_t k = 0; k < len[i]; k++)
                store[i][k] = (uint8_t)('a' + (lcg >> (8 + 5 * k)) % 26);
        }
    }
    int32_t eos = EOS;
    assert_int_equal(al_vocab_new(NV, p, len, &eos, 1, &VOC), AL_OK);
    return 0;
}

static int teardown(void **state)
{
    al_model_free(M);
    ali_aligned_free(MBASE);
    al_vocab_free(VOC);
    al_grammar_cache_clear();
    return 0;
}

/* ---- helpers --------------------------------------------------------------------------------- */

static al_engine *engine(int vocab)
{
    al_engine *e = NULL;
    al_engine_opts o = {.max_seqs = 4, .n_blocks = 256, .block_size = 16, .vocab = vocab ? VOC : NULL};
    assert_int_equal(al_engine_create(M, &o, &e), AL_OK);
    return e;
}

typedef struct run {
    int32_t tok[MAXT];
    float lp[MAXT];
    al_topk_entry top[MAXT * 5];
    float *gl; /* [MAXT, NV] raw logits of each step */
    int32_t n;
    al_finish finish;
    int32_t stop_index;
    al_err error;
    char msg[512];
} run;

static al_request req(int32_t max_tokens, al_sampling s, const al_gen_ctl *ctl)
{
    al_request r = {.tokens = PROMPT,
                    .n_tokens = NP,
                    .adapter = -1,
                    .act_start = AL_ACT_NONE,
                    .max_tokens = max_tokens,
                    .sampling = s,
                    .top_logprobs = 5};
    if (ctl)
        r.ctl = *ctl;
    return r;
}

/* Runs r alone in e (gen_logits into out->gl) and copies the result. */
static void go(al_engine *e, al_request r, run *out)
{
    memset(out, 0, offsetof(run, gl));
    if (!out->gl)
        out->gl = calloc((size_t)MAXT * NV, sizeof(float));
    assert_non_null(out->gl);
    assert_true(r.max_tokens <= MAXT);
    r.gen_logits = out->gl;
    int32_t id;
    assert_int_equal(al_engine_submit(e, &r, &id), AL_OK);
    ali_errclear();
    assert_int_equal(al_engine_run(e), AL_OK);
    snprintf(out->msg, sizeof out->msg, "%s", al_errmsg());
    al_result res;
    assert_int_equal(al_engine_result(e, id, &res), AL_OK);
    out->n = res.n_tokens;
    out->finish = res.finish;
    out->stop_index = res.stop_index;
    out->error = res.error;
    memcpy(out->tok, res.tokens, sizeof(int32_t) * (size_t)res.n_tokens);
    memcpy(out->lp, res.logprobs, sizeof(float) * (size_t)res.n_tokens);
    if (res.top_logprobs == 5)
        memcpy(out->top, res.top, sizeof(al_topk_entry) * 5 * (size_t)res.n_tokens);
    al_engine_release(e, id);
}

static void run_free(run *r)
{
    free(r->gl);
    r->gl = NULL;
}

static double lse(const float *l)
{
    double m = -INFINITY, s = 0;
    for (int32_t i = 0; i < NV; i++)
        m = l[i] > m ? l[i] : m;
    for (int32_t i = 0; i < NV; i++)
        s += exp((double)l[i] - m);
    return m + log(s);
}

/* logprobs and top_logprobs are the raw distribution of the step's gen_logits row */
static void check_raw_logprobs(const run *r)
{
    for (int32_t i = 0; i < r->n; i++) {
        const float *l = r->gl + (size_t)i * NV;
        double z = lse(l);
        assert_true(fabs(r->lp[i] - (l[r->tok[i]] - z)) < 1e-4);
        int32_t am = 0;
        for (int32_t v = 1; v < NV; v++)
            if (l[v] > l[am])
                am = v;
        assert_int_equal(r->top[i * 5].id, am);
        for (int k = 0; k < 5; k++) {
            const al_topk_entry *t = &r->top[i * 5 + k];
            assert_true(fabs(t->logprob - (l[t->id] - z)) < 1e-4);
            if (k)
                assert_true(t->logprob <= r->top[i * 5 + k - 1].logprob);
        }
    }
}

static int32_t count(const int32_t *t, int32_t n, int32_t v)
{
    int32_t c = 0;
    for (int32_t i = 0; i < n; i++)
        c += t[i] == v;
    return c;
}

/* The documented processing (engine.h), written independently: min_tokens EOS mask, bias,
 * repetition over prompt + output (+ extra prefix tokens), then frequency / presence over output. */
static void ref_process(float *l, const al_gen_ctl *g, const int32_t *pre, int32_t n_pre, const int32_t *out,
                        int32_t n_out, int ignore_eos)
{
    if (n_out < g->min_tokens && !ignore_eos)
        l[EOS] = -INFINITY;
    for (int32_t i = 0; i < g->n_logit_bias; i++)
        l[g->logit_bias[i].token] += g->logit_bias[i].bias;
    for (int32_t v = 0; v < NV; v++) {
        int32_t c = count(out, n_out, v);
        if (g->repetition_penalty > 0 && g->repetition_penalty != 1 &&
            (c || count(PROMPT, NP, v) || count(pre, n_pre, v)))
            l[v] = l[v] > 0 ? l[v] / g->repetition_penalty : l[v] * g->repetition_penalty;
        if (c)
            l[v] = l[v] - g->frequency_penalty * (float)c - g->presence_penalty;
    }
}

/* Each token of r is what the reference gives from the raw row: greedy = its argmax (up to
 * rounding), sampled = al_sample on it with the request's random stream. */
static void check_against_ref(const run *r, al_sampling s, const al_gen_ctl *g, const int32_t *pre,
                              int32_t n_pre, int ignore_eos)
{
    float l[NV];
    al_rng rng;
    al_rng_seed(&rng, s.seed);
    for (int32_t i = 0; i < r->n; i++) {
        memcpy(l, r->gl + (size_t)i * NV, sizeof l);
        ref_process(l, g, pre, n_pre, r->tok, i, ignore_eos);
        if (s.temperature <= 0) {
            float mx = -INFINITY;
            for (int32_t v = 0; v < NV; v++)
                mx = l[v] > mx ? l[v] : mx;
            if (!(l[r->tok[i]] >= mx - 1e-4f))
                fail_msg("step %d: token %d has processed logit %g, the max is %g", i, r->tok[i],
                         (double)l[r->tok[i]], (double)mx);
        } else {
            assert_int_equal(al_sample(l, NV, &s, &rng), r->tok[i]);
        }
    }
}

static int32_t argmax_raw(const float *l)
{
    int32_t am = 0;
    for (int32_t v = 1; v < NV; v++)
        if (l[v] > l[am])
            am = v;
    return am;
}

static const al_sampling GREEDY = {0};
static al_sampling temp1(uint64_t seed)
{
    return (al_sampling){.temperature = 1.0f, .top_p = 1.0f, .seed = seed};
}

/* ---- tests ----------------------------------------------------------------------------------- */

/* No controls: every token is al_sample over the raw row with the request's stream and the logprob
 * is computed as before; a neutral control (bias 0) on the processing path changes nothing bitwise. */
static void test_no_controls_is_plain_sampler(void **state)
{
    al_engine *e = engine(1);
    al_sampling ss[] = {GREEDY, {.temperature = 0.8f, .top_k = 50, .top_p = 0.9f, .seed = 5}, temp1(11)};
    al_logit_bias zero = {.token = 7, .bias = 0.0f};
    al_gen_ctl neutral = {.logit_bias = &zero, .n_logit_bias = 1};
    for (size_t k = 0; k < AL_ARRAY_LEN(ss); k++) {
        run a = {0}, b = {0};
        al_request r = req(24, ss[k], NULL);
        r.ignore_eos = 1;
        go(e, r, &a);
        assert_int_equal(a.n, 24);
        assert_int_equal(a.stop_index, -1);
        al_rng rng;
        al_rng_seed(&rng, ss[k].seed);
        for (int32_t i = 0; i < a.n; i++) {
            const float *l = a.gl + (size_t)i * NV;
            assert_int_equal(al_sample(l, NV, &ss[k], &rng), a.tok[i]);
            float mx = l[0];
            for (int32_t v = 1; v < NV; v++)
                mx = l[v] > mx ? l[v] : mx;
            double se = 0.0;
            for (int32_t v = 0; v < NV; v++)
                se += exp((double)l[v] - mx);
            float want = l[a.tok[i]] - (mx + (float)log(se));
            al_assert_floats_identical(&a.lp[i], &want, 1, 1);
        }
        check_raw_logprobs(&a);
        r.ctl = neutral;
        go(e, r, &b);
        assert_int_equal(b.n, a.n);
        al_assert_ints_equal(b.tok, a.tok, a.n);
        al_assert_floats_identical(b.lp, a.lp, 1, a.n);
        al_assert_floats_identical(b.gl, a.gl, a.n, NV);
        assert_memory_equal(b.top, a.top, sizeof(al_topk_entry) * 5 * (size_t)a.n);
        run_free(&a);
        run_free(&b);
    }
    al_engine_free(e);
}

static void test_logit_bias(void **state)
{
    al_engine *e = engine(0);
    al_logit_bias up = {.token = 300, .bias = 100.0f};
    al_gen_ctl g = {.logit_bias = &up, .n_logit_bias = 1};
    run r = {0};
    for (uint64_t seed = 0; seed < 4; seed++) { /* greedy, then temperature 1 with three seeds */
        al_request q = req(12, seed ? temp1(seed) : GREEDY, &g);
        go(e, q, &r);
        assert_int_equal(r.n, 12);
        for (int32_t i = 0; i < r.n; i++)
            assert_int_equal(r.tok[i], 300);
        check_raw_logprobs(&r); /* the raw distribution, not the biased one */
        assert_true(r.lp[0] < -0.01f);
    }
    /* a ban of the plain greedy token (and a boost elsewhere): the reference decides every step */
    go(e, req(16, GREEDY, NULL), &r);
    int32_t first = r.tok[0];
    al_logit_bias lb[3] = {{first, -100.0f}, {17, 3.5f}, {17, 1.0f}}; /* the same id twice: both count */
    al_gen_ctl g2 = {.logit_bias = lb, .n_logit_bias = 3};
    for (uint64_t seed = 0; seed < 3; seed++) {
        al_sampling s = seed ? temp1(seed) : GREEDY;
        go(e, req(16, s, &g2), &r);
        assert_int_not_equal(r.tok[0], first);
        check_against_ref(&r, s, &g2, NULL, 0, 0);
        check_raw_logprobs(&r);
    }
    run_free(&r);
    al_engine_free(e);
}

static void test_frequency_presence(void **state)
{
    al_engine *e = engine(0);
    run plain = {0}, r = {0};
    al_request q = req(40, GREEDY, NULL);
    q.ignore_eos = 1;
    go(e, q, &plain);
    al_gen_ctl gs[] = {{.frequency_penalty = 0.8f, .presence_penalty = 0.5f},
                       {.frequency_penalty = 2.0f},
                       {.presence_penalty = 1.5f},
                       {.frequency_penalty = -0.7f, .presence_penalty = 0.3f}};
    for (size_t k = 0; k < AL_ARRAY_LEN(gs); k++)
        for (uint64_t seed = 0; seed < 3; seed++) {
            al_sampling s = seed ? temp1(seed * 13) : GREEDY;
            q = req(40, s, &gs[k]);
            q.ignore_eos = 1;
            go(e, q, &r);
            assert_int_equal(r.n, 40);
            check_against_ref(&r, s, &gs[k], NULL, 0, 1);
            check_raw_logprobs(&r);
            if (!seed && k < 3) /* the penalties change the greedy output of this model */
                assert_memory_not_equal(r.tok, plain.tok, sizeof(int32_t) * 40);
        }
    run_free(&plain);
    run_free(&r);
    al_engine_free(e);
}

static void test_repetition_penalty(void **state)
{
    al_engine *e = engine(0);
    run r = {0};
    float ps[] = {1.8f, 0.6f, 4.0f};
    for (size_t k = 0; k < AL_ARRAY_LEN(ps); k++)
        for (uint64_t seed = 0; seed < 3; seed++) {
            al_sampling s = seed ? temp1(seed * 7) : GREEDY;
            al_gen_ctl g = {.repetition_penalty = ps[k], .presence_penalty = k == 2 ? 0.25f : 0.0f};
            al_request q = req(32, s, &g);
            q.ignore_eos = 1;
            go(e, q, &r);
            assert_int_equal(r.n, 32);
            check_against_ref(&r, s, &g, NULL, 0, 1);
            check_raw_logprobs(&r);
        }
    /* repetition_penalty 1 is off: bitwise the plain run */
    run a = {0};
    go(e, req(16, temp1(3), NULL), &a);
    go(e, req(16, temp1(3), &(al_gen_ctl){.repetition_penalty = 1.0f}), &r);
    al_assert_ints_equal(r.tok, a.tok, a.n);
    run_free(&a);
    run_free(&r);
    al_engine_free(e);
}

/* The worker's case: a read-only prefix from another engine's pool. Its tokens count for the
 * repetition penalty when prefix_tokens are given. The suffix is chosen so that the first raw
 * greedy token is in the prefix and not in the suffix: the penalty must then move it. */
static void test_repetition_over_readonly_prefix(void **state)
{
    int32_t pre[48];
    for (int i = 0; i < 48; i++)
        pre[i] = 3 + ((i * 37) % 500);
    al_engine *base = engine(0), *worker = engine(0);
    int32_t bid;
    al_request br = {.tokens = pre, .n_tokens = 48, .adapter = -1, .act_start = AL_ACT_NONE};
    assert_int_equal(al_engine_submit(base, &br, &bid), AL_OK);
    assert_int_equal(al_engine_run(base), AL_OK);
    al_kv_seg seg;
    assert_int_equal(al_engine_seq_kv(base, bid, &seg), AL_OK);
    float *gl = calloc((size_t)MAXT * NV, sizeof(float));
    int found = 0;
    int32_t suf[4];
    al_rng rr;
    al_rng_seed(&rr, 99);
    for (int attempt = 0; attempt < 200 && !found; attempt++) {
        for (int i = 0; i < 4; i++)
            suf[i] = 3 + (int32_t)(al_rng_next(&rr) % 500);
        al_request wr = {.tokens = suf,
                         .n_tokens = 4,
                         .adapter = -1,
                         .act_start = AL_ACT_NONE,
                         .max_tokens = 1,
                         .gen_logits = gl,
                         .prefix = seg};
        int32_t wid;
        assert_int_equal(al_engine_submit(worker, &wr, &wid), AL_OK);
        assert_int_equal(al_engine_run(worker), AL_OK);
        al_engine_release(worker, wid);
        int32_t a = argmax_raw(gl);
        float other = -INFINITY; /* the best logit the penalty leaves alone */
        for (int32_t v = 0; v < NV; v++)
            if (!count(pre, 48, v) && !count(suf, 4, v) && gl[v] > other)
                other = gl[v];
        found = count(pre, 48, a) && !count(suf, 4, a) && gl[a] > 0 && gl[a] / 4.0f < other - 1e-3f;
    }
    assert_true(found);
    int32_t a = argmax_raw(gl);
    al_gen_ctl g = {.repetition_penalty = 4.0f};
    for (int with = 0; with < 2; with++) {
        al_request wr = {.tokens = suf,
                         .n_tokens = 4,
                         .adapter = -1,
                         .act_start = AL_ACT_NONE,
                         .max_tokens = 12,
                         .ignore_eos = 1,
                         .gen_logits = gl,
                         .prefix = seg,
                         .ctl = g,
                         .prefix_tokens = with ? pre : NULL};
        int32_t wid;
        assert_int_equal(al_engine_submit(worker, &wr, &wid), AL_OK);
        assert_int_equal(al_engine_run(worker), AL_OK);
        al_result res;
        assert_int_equal(al_engine_result(worker, wid, &res), AL_OK);
        assert_int_equal(res.n_tokens, 12);
        if (with)
            assert_int_not_equal(res.tokens[0], a);
        else
            assert_int_equal(res.tokens[0], a); /* without the prefix's tokens: not penalised */
        float l[NV];
        for (int32_t i = 0; i < res.n_tokens; i++) {
            memcpy(l, gl + (size_t)i * NV, sizeof l);
            for (int32_t v = 0; v < NV; v++)
                if (count(res.tokens, i, v) || count(suf, 4, v) || (with && count(pre, 48, v)))
                    l[v] = l[v] > 0 ? l[v] / 4.0f : l[v] * 4.0f;
            float mx = -INFINITY;
            for (int32_t v = 0; v < NV; v++)
                mx = l[v] > mx ? l[v] : mx;
            assert_true(l[res.tokens[i]] >= mx - 1e-4f);
        }
        al_engine_release(worker, wid);
    }
    free(gl);
    al_engine_free(worker);
    al_engine_free(base);
}

static void test_min_tokens(void **state)
{
    al_engine *e = engine(0);
    run r = {0};
    al_logit_bias eosb = {.token = EOS, .bias = 50.0f};
    al_gen_ctl g0 = {.logit_bias = &eosb, .n_logit_bias = 1};
    go(e, req(20, GREEDY, &g0), &r); /* EOS at once without min_tokens */
    assert_int_equal(r.n, 1);
    assert_int_equal(r.tok[0], EOS);
    assert_int_equal(r.finish, AL_FINISH_STOP);
    for (uint64_t seed = 0; seed < 4; seed++) {
        al_sampling s = seed ? temp1(seed) : GREEDY;
        al_gen_ctl g = {.logit_bias = &eosb, .n_logit_bias = 1, .min_tokens = 5};
        go(e, req(20, s, &g), &r);
        assert_int_equal(r.n, 6);
        for (int32_t i = 0; i < 5; i++)
            assert_int_not_equal(r.tok[i], EOS);
        assert_int_equal(r.tok[5], EOS);
        assert_int_equal(r.finish, AL_FINISH_STOP);
        assert_int_equal(r.stop_index, -1);
        check_against_ref(&r, s, &g, NULL, 0, 0);
        check_raw_logprobs(&r);
    }
    /* min_tokens beyond max_tokens: the length ends it */
    go(e, req(3, GREEDY, &(al_gen_ctl){.logit_bias = &eosb, .n_logit_bias = 1, .min_tokens = 10}), &r);
    assert_int_equal(r.n, 3);
    assert_int_equal(r.finish, AL_FINISH_LENGTH);
    run_free(&r);
    al_engine_free(e);
}

/* concatenated bytes of tokens [0, n) and the byte end offset of each token */
static int32_t text(const int32_t *t, int32_t n, uint8_t *buf, int32_t *ends)
{
    int32_t o = 0;
    for (int32_t i = 0; i < n; i++) {
        if (VOC->bytes[t[i]]) {
            memcpy(buf + o, VOC->bytes[t[i]], (size_t)VOC->len[t[i]]);
            o += VOC->len[t[i]];
        }
        ends[i] = o;
    }
    return o;
}

/* The reference for stop strings: the first token (index >= min_tokens - 1) whose bytes complete a
 * stop string that ends inside them; -1 if none. *which = that string (first to end, lowest index). */
static int32_t ref_stop(const int32_t *t, int32_t n, const char *const *stops, int32_t n_stop,
                        int32_t min_tokens, int32_t *which)
{
    uint8_t buf[MAXT * 8];
    int32_t ends[MAXT];
    int32_t total = text(t, n, buf, ends);
    for (int32_t pos = 1; pos <= total; pos++) { /* pos: byte end of a match */
        int32_t tk = 0;
        while (ends[tk] < pos)
            tk++;
        if (tk + 1 < min_tokens)
            continue;
        for (int32_t i = 0; i < n_stop; i++) {
            int32_t L = (int32_t)strlen(stops[i]);
            if (L <= pos && memcmp(buf + pos - L, stops[i], (size_t)L) == 0) {
                *which = i;
                return tk;
            }
        }
    }
    return -1;
}

static void test_stop_strings(void **state)
{
    al_engine *e = engine(1);
    run plain = {0}, r = {0};
    al_request q = req(48, GREEDY, NULL);
    q.ignore_eos = 1;
    go(e, q, &plain);
    uint8_t buf[MAXT * 8];
    int32_t ends[MAXT];
    text(plain.tok, plain.n, buf, ends);
    /* stop strings that straddle token boundaries: the last byte of token k - 1 and the first of
     * token k; and all of token k plus the first byte of token k + 1 (three tokens when k - 1 too) */
    int tried = 0;
    for (int32_t k = 2; k + 1 < plain.n && tried < 6; k++) {
        int32_t b0 = k >= 2 ? ends[k - 2] : 0, b1 = ends[k - 1], b2 = ends[k], b3 = ends[k + 1];
        if (b1 - b0 < 1 || b2 - b1 < 1 || b3 - b2 < 1)
            continue; /* a special token without bytes */
        char s1[64] = {0}, s2[64] = {0};
        memcpy(s1, buf + b1 - 1, 2);
        memcpy(s2, buf + b1 - 1, (size_t)(b2 - b1 + 2));
        if (memchr(s1, 0, 2) || memchr(s2, 0, (size_t)(b2 - b1 + 2)))
            continue;
        const char *cands[2] = {s1, s2};
        for (int c = 0; c < 2; c++) {
            const char *stops[3] = {"\xff\xfe never", cands[c], "\x01\x02\x03"};
            int32_t lens[3] = {(int32_t)strlen(stops[0]), (int32_t)strlen(stops[1]),
                               (int32_t)strlen(stops[2])};
            for (int32_t min_tokens = 0; min_tokens <= k + 3; min_tokens += k + 3) {
                for (int nul = 0; nul < 2; nul++) { /* stop_len given, or NULL (NUL-terminated) */
                    al_gen_ctl g = {
                        .stop = stops, .stop_len = nul ? NULL : lens, .n_stop = 3, .min_tokens = min_tokens};
                    q = req(48, GREEDY, &g);
                    q.ignore_eos = 1;
                    go(e, q, &r);
                    int32_t which = -1, at = ref_stop(plain.tok, plain.n, stops, 3, min_tokens, &which);
                    if (at < 0) {
                        assert_int_equal(r.finish, AL_FINISH_LENGTH);
                        assert_int_equal(r.n, 48);
                        assert_int_equal(r.stop_index, -1);
                    } else {
                        assert_int_equal(r.finish, AL_FINISH_STOP);
                        assert_int_equal(r.stop_index, which);
                        assert_int_equal(r.n, at + 1); /* the completing token is kept */
                        if (min_tokens == 0)
                            assert_true(at <= k + c);
                    }
                    al_assert_ints_equal(r.tok, plain.tok, r.n); /* stop strings do not change sampling */
                    check_raw_logprobs(&r);
                }
            }
        }
        tried++;
    }
    assert_true(tried > 0);
    /* a stop string at the very first token, and one that is a whole later token */
    char one[8] = {0};
    memcpy(one, buf, (size_t)ends[0] < sizeof one - 1 ? (size_t)ends[0] : sizeof one - 1);
    if (one[0]) {
        const char *stops[1] = {one};
        go(e, req(48, GREEDY, &(al_gen_ctl){.stop = stops, .n_stop = 1}), &r);
        assert_int_equal(r.finish, AL_FINISH_STOP);
        assert_int_equal(r.stop_index, 0);
    }
    run_free(&plain);
    run_free(&r);
    al_engine_free(e);
}

static al_grammar *grammar(al_constraint_kind kind, const char *text)
{
    al_constraint_spec sp = {.kind = kind, .text = text, .len = strlen(text)};
    al_grammar *g = NULL;
    al_err err = al_grammar_compile(&sp, VOC, &g);
    if (err != AL_OK)
        fail_msg("compile %s: %s", text, al_errmsg());
    return g;
}

typedef int (*check_fn)(const char *s, size_t n);

static int is_choice(const char *s, size_t n)
{
    return (n == 3 && !memcmp(s, "yes", 3)) || (n == 2 && !memcmp(s, "no", 2));
}

static int is_3digits(const char *s, size_t n)
{
    return n == 3 && s[0] >= '0' && s[0] <= '9' && s[1] >= '0' && s[1] <= '9' && s[2] >= '0' && s[2] <= '9';
}

static int is_doc(const char *s, size_t n)
{
    json_error_t je;
    json_t *j = json_loadb(s, n, JSON_ALLOW_NUL, &je);
    if (!j)
        return 0;
    json_t *nm = json_object_get(j, "name"), *k = json_object_get(j, "n"), *ok = json_object_get(j, "ok");
    size_t chars = 0; /* maxLength counts code points */
    for (size_t i = 0; json_is_string(nm) && i < json_string_length(nm); i++)
        chars += (json_string_value(nm)[i] & 0xC0) != 0x80;
    int good = json_is_object(j) && json_object_size(j) == 3 && json_is_string(nm) && chars <= 6 &&
               json_is_integer(k) && json_integer_value(k) >= 0 && json_integer_value(k) <= 99 &&
               json_is_boolean(ok);
    json_decref(j);
    return good;
}

/* The grammar's reference: the token is allowed by a matcher of our own (same remaining budget),
 * greedy = the argmax of the raw row over the allowed set, sampled = al_sample on the masked row. */
static void check_grammar_ref(const run *r, al_grammar *g, al_sampling s, int32_t max_tokens)
{
    al_matcher *m;
    assert_int_equal(al_matcher_new(g, &m), AL_OK);
    al_rng rng;
    al_rng_seed(&rng, s.seed);
    uint32_t bits[NV / 32];
    float l[NV];
    for (int32_t i = 0; i < r->n; i++) {
        assert_true(al_matcher_mask(m, max_tokens - i, bits) > 0);
        assert_true(bits[r->tok[i] >> 5] >> (r->tok[i] & 31) & 1);
        memcpy(l, r->gl + (size_t)i * NV, sizeof l);
        float mx = -INFINITY;
        for (int32_t v = 0; v < NV; v++)
            if (!(bits[v >> 5] >> (v & 31) & 1))
                l[v] = -INFINITY;
            else
                mx = l[v] > mx ? l[v] : mx;
        if (s.temperature <= 0)
            assert_true(l[r->tok[i]] >= mx);
        else
            assert_int_equal(al_sample(l, NV, &s, &rng), r->tok[i]);
        assert_int_equal(al_matcher_accept(m, r->tok[i]), AL_OK);
    }
    assert_true(al_matcher_finished(m));
    al_matcher_free(m);
}

static void test_grammars(void **state)
{
    struct {
        al_constraint_kind kind;
        const char *text;
        check_fn ok;
        int32_t max_tokens;
    } cs[] = {
        {AL_CONSTRAINT_CHOICE, "[\"yes\", \"no\"]", is_choice, 8},
        {AL_CONSTRAINT_REGEX, "[0-9]{3}", is_3digits, 8},
        {AL_CONSTRAINT_JSON_SCHEMA,
         "{\"type\": \"object\", \"properties\": {\"name\": {\"type\": \"string\", \"maxLength\": 6}, "
         "\"n\": {\"type\": \"integer\", \"minimum\": 0, \"maximum\": 99}, \"ok\": {\"type\": \"boolean\"}}, "
         "\"required\": [\"name\", \"n\", \"ok\"]}",
         is_doc, 60},
    };
    al_engine *e = engine(0);
    run r = {0};
    for (size_t c = 0; c < AL_ARRAY_LEN(cs); c++)
        for (int ignore_eos = 0; ignore_eos < 2; ignore_eos++)
            for (uint64_t seed = 0; seed < 6; seed++) {
                al_grammar *g = grammar(cs[c].kind, cs[c].text);
                al_sampling s = seed ? temp1(seed * 31 + c) : GREEDY;
                al_request q = req(cs[c].max_tokens, s, &(al_gen_ctl){.grammar = g});
                q.ignore_eos = ignore_eos;
                go(e, q, &r); /* go() submits first: the engine holds its own reference */
                assert_int_equal(r.finish, AL_FINISH_STOP);
                assert_int_equal(r.stop_index, -1);
                uint8_t buf[MAXT * 8];
                int32_t ends[MAXT];
                int32_t n = text(r.tok, r.n, buf, ends);
                if (!cs[c].ok((const char *)buf, (size_t)n))
                    fail_msg("%s (seed %d, ignore_eos %d): generated '%.*s'", cs[c].text, (int)seed,
                             ignore_eos, n, (const char *)buf);
                for (int32_t i = 0; i + 1 < r.n; i++)
                    assert_int_not_equal(r.tok[i], EOS); /* EOS only as the last token */
                check_grammar_ref(&r, g, s, cs[c].max_tokens);
                check_raw_logprobs(&r); /* the unconstrained distribution */
                al_grammar_unref(g);
            }
    run_free(&r);
    al_engine_free(e);
}

static void test_grammar_with_min_tokens(void **state)
{
    al_engine *e = engine(1);
    run r = {0};
    /* an accepting state with more to come: EOS (heavily favoured) waits for min_tokens */
    al_grammar *g = grammar(AL_CONSTRAINT_REGEX, "[0-9]+");
    al_logit_bias eosb = {.token = EOS, .bias = 40.0f};
    for (int ignore_eos = 0; ignore_eos < 2; ignore_eos++) {
        al_gen_ctl ctl = {.grammar = g, .min_tokens = 4, .logit_bias = &eosb, .n_logit_bias = 1};
        al_request q = req(20, GREEDY, &ctl);
        q.ignore_eos = ignore_eos;
        go(e, q, &r);
        assert_int_equal(r.finish, AL_FINISH_STOP);
        assert_int_equal(r.n, 5);
        assert_int_equal(r.tok[4], EOS);
        for (int32_t i = 0; i < 4; i++)
            assert_true((r.tok[i] >= 3 + '0' && r.tok[i] <= 3 + '9') || (r.tok[i] >= 259 && r.tok[i] < 359));
    }
    al_grammar_unref(g);
    /* a complete grammar cannot wait for min_tokens: the sequence fails, saying why */
    g = grammar(AL_CONSTRAINT_CHOICE, "[\"yes\", \"no\"]");
    go(e, req(20, GREEDY, &(al_gen_ctl){.grammar = g, .min_tokens = 6}), &r);
    assert_int_equal(r.finish, AL_FINISH_ERROR);
    assert_int_not_equal(r.error, AL_OK);
    assert_non_null(strstr(r.msg, "min_tokens"));
    assert_true(r.n >= 1 && r.n <= 3);
    /* a stop string inside the grammar's output ends it first */
    const char *stops[1] = {"e"};
    go(e, req(20, GREEDY, &(al_gen_ctl){.grammar = g, .stop = stops, .n_stop = 1}), &r);
    assert_int_equal(r.finish, AL_FINISH_STOP);
    uint8_t buf[MAXT * 8];
    int32_t ends[MAXT];
    int32_t n = text(r.tok, r.n, buf, ends);
    assert_int_equal(r.stop_index, memchr(buf, 'e', (size_t)n) ? 0 : -1);
    al_grammar_unref(g);
    run_free(&r);
    al_engine_free(e);
}

/* Several sequences with different controls in one batch: each as it is alone (the processed row
 * scratch is shared by the engine). */
static void test_batch_mixed_controls(void **state)
{
    al_engine *e = engine(1);
    al_grammar *g = grammar(AL_CONSTRAINT_REGEX, "[a-f]{2,5}[0-9]");
    al_logit_bias lb = {.token = 17, .bias = 4.0f};
    const char *stops[1] = {"q"};
    al_gen_ctl ctls[4] = {{0},
                          {.frequency_penalty = 1.0f, .repetition_penalty = 1.3f},
                          {.grammar = g, .logit_bias = &lb, .n_logit_bias = 1},
                          {.stop = stops, .n_stop = 1, .min_tokens = 2}};
    run alone[4];
    memset(alone, 0, sizeof alone);
    for (int k = 0; k < 4; k++) {
        al_request q = req(20, temp1(100 + k), &ctls[k]);
        q.ignore_eos = 1;
        go(e, q, &alone[k]);
    }
    int32_t ids[4];
    float *gl[4];
    for (int k = 0; k < 4; k++) {
        gl[k] = calloc((size_t)MAXT * NV, sizeof(float));
        al_request q = req(20, temp1(100 + k), &ctls[k]);
        q.ignore_eos = 1;
        q.gen_logits = gl[k];
        assert_int_equal(al_engine_submit(e, &q, &ids[k]), AL_OK);
    }
    assert_int_equal(al_engine_run(e), AL_OK);
    for (int k = 0; k < 4; k++) {
        al_result res;
        assert_int_equal(al_engine_result(e, ids[k], &res), AL_OK);
        assert_int_equal(res.n_tokens, alone[k].n);
        assert_int_equal(res.finish, alone[k].finish);
        assert_int_equal(res.stop_index, alone[k].stop_index);
        al_assert_ints_equal(res.tokens, alone[k].tok, res.n_tokens);
        al_engine_release(e, ids[k]);
        free(gl[k]);
        run_free(&alone[k]);
    }
    al_grammar_unref(g);
    al_engine_free(e);
}

static void test_continue_ex(void **state)
{
    al_engine *e = engine(1);
    int32_t id;
    al_logit_bias b = {.token = 300, .bias = 100.0f};
    al_request q = req(5, GREEDY, &(al_gen_ctl){.logit_bias = &b, .n_logit_bias = 1});
    q.ignore_eos = 1;
    assert_int_equal(al_engine_submit(e, &q, &id), AL_OK);
    assert_int_equal(al_engine_run(e), AL_OK);
    al_result res;
    assert_int_equal(al_engine_result(e, id, &res), AL_OK);
    assert_int_equal(res.n_tokens, 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(res.tokens[i], 300);
    /* counts restart: the bias wins once (count 0), then the frequency penalty pushes 300 away;
     * counts carried over from the first five would forbid it at once */
    al_logit_bias b2 = {.token = 300, .bias = 20.0f};
    al_gen_ctl g = {.logit_bias = &b2, .n_logit_bias = 1, .frequency_penalty = 30.0f};
    assert_int_equal(al_engine_continue_ex(e, id, NULL, 0, 4, NULL, &g), AL_OK);
    assert_int_equal(al_engine_run(e), AL_OK);
    assert_int_equal(al_engine_result(e, id, &res), AL_OK);
    assert_int_equal(res.finish, AL_FINISH_LENGTH);
    assert_int_equal(res.n_tokens, 9);
    assert_int_equal(res.tokens[5], 300);
    for (int i = 6; i < 9; i++)
        assert_int_not_equal(res.tokens[i], 300);
    /* a continue with prompt tokens, new sampling and a stop string on the first generated byte;
     * then plain continue: no controls any more */
    const int32_t more[2] = {44, 45};
    al_gen_ctl g3 = {.grammar = grammar(AL_CONSTRAINT_CHOICE, "[\"abc\"]")};
    al_sampling s = temp1(9);
    assert_int_equal(al_engine_continue_ex(e, id, more, 2, 6, &s, &g3), AL_OK);
    al_grammar_unref(g3.grammar);
    assert_int_equal(al_engine_run(e), AL_OK);
    assert_int_equal(al_engine_result(e, id, &res), AL_OK);
    assert_int_equal(res.finish, AL_FINISH_STOP);
    uint8_t buf[MAXT * 8];
    int32_t ends[MAXT];
    int32_t n = text(res.tokens + 9, res.n_tokens - 9, buf, ends);
    assert_int_equal(n, 3);
    assert_memory_equal(buf, "abc", 3);
    int32_t n0 = res.n_tokens;
    const char *stops[1] = {"zzzz"};
    assert_int_equal(
        al_engine_continue_ex(e, id, NULL, 0, 3, NULL, &(al_gen_ctl){.stop = stops, .n_stop = 1}), AL_OK);
    assert_int_equal(al_engine_run(e), AL_OK);
    assert_int_equal(al_engine_result(e, id, &res), AL_OK);
    assert_int_equal(res.n_tokens, n0 + 3);
    assert_int_equal(res.stop_index, -1);
    /* invalid controls: refused, the sequence as it was */
    al_logit_bias bad = {.token = 99999, .bias = 1.0f};
    assert_int_equal(
        al_engine_continue_ex(e, id, more, 2, 3, NULL, &(al_gen_ctl){.logit_bias = &bad, .n_logit_bias = 1}),
        AL_EINVAL);
    const int32_t *toks;
    int32_t nt, nc;
    assert_int_equal(al_engine_seq_tokens(e, id, &toks, &nt, &nc), AL_OK);
    assert_int_equal(nt, NP + 5 + 4 + 2 + (n0 - 9) + 3);
    assert_int_equal(al_engine_continue(e, id, NULL, 0, 2), AL_OK);
    assert_int_equal(al_engine_run(e), AL_OK);
    assert_int_equal(al_engine_result(e, id, &res), AL_OK);
    assert_int_equal(res.n_tokens, n0 + 5);
    assert_int_equal(res.finish, AL_FINISH_LENGTH);
    /* the same sequence as a fresh request, for the sampling check below */
    assert_int_equal(al_engine_seq_tokens(e, id, &toks, &nt, &nc), AL_OK);
    al_request q2 = req(4, GREEDY, NULL);
    int32_t *all = malloc(sizeof(int32_t) * (size_t)nt);
    memcpy(all, toks, sizeof(int32_t) * (size_t)nt);
    q2.tokens = all;
    q2.n_tokens = nt;
    al_engine_release(e, id);
    /* min_tokens counts this generation's tokens: an EOS-heavy bias waits for 3 of them */
    al_logit_bias noeos = {.token = EOS, .bias = -100.0f}, eosb = {.token = EOS, .bias = 50.0f};
    q = req(6, GREEDY, &(al_gen_ctl){.logit_bias = &noeos, .n_logit_bias = 1});
    assert_int_equal(al_engine_submit(e, &q, &id), AL_OK);
    assert_int_equal(al_engine_run(e), AL_OK);
    assert_int_equal(
        al_engine_continue_ex(e, id, NULL, 0, 10, NULL,
                              &(al_gen_ctl){.logit_bias = &eosb, .n_logit_bias = 1, .min_tokens = 3}),
        AL_OK);
    assert_int_equal(al_engine_run(e), AL_OK);
    assert_int_equal(al_engine_result(e, id, &res), AL_OK);
    assert_int_equal(res.finish, AL_FINISH_STOP);
    assert_int_equal(res.n_tokens, 6 + 4);
    assert_int_equal(res.tokens[9], EOS);
    al_engine_release(e, id);
    /* new sampling settings: the continued tokens are those of a fresh request with them */
    for (uint64_t seed = 1; seed < 4; seed++) {
        run ref = {0};
        q2.sampling = temp1(seed);
        q2.max_tokens = 10;
        q2.ignore_eos = 1;
        go(e, q2, &ref);
        q = req(3, GREEDY, NULL);
        q.tokens = all;
        q.n_tokens = nt - 2; /* prefill, then continue with the last two tokens */
        q.max_tokens = 0;
        assert_int_equal(al_engine_submit(e, &q, &id), AL_OK);
        assert_int_equal(al_engine_run(e), AL_OK);
        al_sampling s2 = temp1(seed);
        assert_int_equal(al_engine_continue_ex(e, id, all + nt - 2, 2, 10, &s2, NULL), AL_OK);
        assert_int_equal(al_engine_run(e), AL_OK);
        assert_int_equal(al_engine_result(e, id, &res), AL_OK);
        assert_int_equal(res.n_tokens, 10);
        al_assert_ints_equal(res.tokens, ref.tok, 10);
        al_engine_release(e, id);
        run_free(&ref);
    }
    free(all);
    al_engine_free(e);
}

/* A generation in steps (a stream: max_tokens 1, then 3 at a time, each resuming the output so far)
 * gives what one call gives, for every stateful control: grammar with its budget, penalties,
 * min_tokens, stop strings. Steps on one sequence (continue_ex) are bitwise one call's; steps as
 * fresh submits of the whole token list (the base's SeqGenerate) keep the grammar's state. */
static void test_resume_in_steps(void **state)
{
    al_engine *e = engine(1);
    al_grammar *g = grammar(AL_CONSTRAINT_REGEX, "[a-f]{2,9}[0-9]");
    al_grammar *g2 = grammar(AL_CONSTRAINT_REGEX, "[a-f]{1,9}[0-9]{0,3}"); /* accepts early */
    al_logit_bias eosb = {.token = EOS, .bias = 30.0f};
    const char *stops[1] = {"ca"};
    al_gen_ctl ctls[4] = {{.grammar = g, .frequency_penalty = 0.7f},
                          {.grammar = g2, .min_tokens = 3, .presence_penalty = 0.4f},
                          {.logit_bias = &eosb, .n_logit_bias = 1, .min_tokens = 6, .frequency_penalty = 1.5f},
                          {.stop = stops, .n_stop = 1, .repetition_penalty = 1.2f}};
    const int32_t maxt = 14;
    for (int k = 0; k < 4; k++) {
        run one = {0};
        al_request q = req(maxt, GREEDY, &ctls[k]);
        go(e, q, &one);
        if (one.finish == AL_FINISH_ERROR)
            fail_msg("control set %d: %s", k, one.msg);
        /* steps on one sequence */
        int32_t id, got = 0;
        al_gen_ctl c = ctls[k];
        c.max_total = maxt;
        q = req(1, GREEDY, &c);
        assert_int_equal(al_engine_submit(e, &q, &id), AL_OK);
        al_result res;
        for (;;) {
            assert_int_equal(al_engine_run(e), AL_OK);
            assert_int_equal(al_engine_result(e, id, &res), AL_OK);
            got = res.n_tokens;
            if (res.finish != AL_FINISH_LENGTH || got >= maxt)
                break;
            c.resume = got;
            assert_int_equal(al_engine_continue_ex(e, id, NULL, 0, AL_MIN(3, maxt - got), NULL, &c), AL_OK);
        }
        assert_int_equal(got, one.n);
        al_assert_ints_equal(res.tokens, one.tok, got);
        assert_int_equal(res.finish, one.finish);
        assert_int_equal(res.stop_index, one.stop_index);
        al_engine_release(e, id);
        run_free(&one);
    }
    /* the base's way: each step a fresh submit of prompt + output so far; the grammar resumes
     * (without resume it would start over and could accept a lone digit after "ab") */
    int32_t toks[NP + MAXT];
    memcpy(toks, PROMPT, sizeof PROMPT);
    int32_t n_out = 0;
    uint8_t buf[MAXT * 8];
    int32_t ends[MAXT];
    const int32_t a = 3 + 'a', b = 3 + 'b';
    toks[NP + n_out++] = a; /* "ab": earlier output */
    toks[NP + n_out++] = b;
    al_logit_bias digit = {.token = 3 + '7', .bias = 50.0f};
    for (int step = 0; step < MAXT; step++) {
        al_gen_ctl c = {.grammar = g, .logit_bias = &digit, .n_logit_bias = 1, .resume = n_out, .max_total = 12};
        al_request q = req(2, GREEDY, &c);
        q.tokens = toks;
        q.n_tokens = NP + n_out;
        run r = {0};
        go(e, q, &r);
        assert_int_not_equal(r.finish, AL_FINISH_ERROR);
        for (int32_t i = 0; i < r.n; i++)
            if (r.tok[i] != EOS)
                toks[NP + n_out++] = r.tok[i];
        run_free(&r);
        if (r.finish == AL_FINISH_STOP || r.n == 0)
            break;
    }
    int32_t n = text(toks + NP, n_out, buf, ends);
    assert_int_equal(n, 3); /* "ab" then the favoured digit: the grammar knew "ab" was there */
    assert_memory_equal(buf, "ab7", 3);
    /* resume beyond the tokens there are: refused */
    al_request bad = req(2, GREEDY, &(al_gen_ctl){.grammar = g, .resume = NP + 1});
    int32_t id;
    assert_int_equal(al_engine_submit(e, &bad, &id), AL_EINVAL);
    assert_non_null(strstr(al_errmsg(), "resume"));
    al_grammar_unref(g);
    al_grammar_unref(g2);
    al_engine_free(e);
}

/* The max_tokens budget reaches the grammar: with 'x' made unlikely, the output still ends in it
 * within max_tokens. */
static void test_grammar_budget(void **state)
{
    al_engine *e = engine(0);
    al_grammar *g = grammar(AL_CONSTRAINT_REGEX, "[a-f]{1,40}x");
    al_logit_bias lb[NV];
    int32_t n_lb = 0;
    for (int32_t v = 0; v < NV; v++)
        if (VOC->bytes[v] && memchr(VOC->bytes[v], 'x', (size_t)VOC->len[v]))
            lb[n_lb++] = (al_logit_bias){v, -10.0f};
    run r = {0};
    for (uint64_t seed = 0; seed < 5; seed++) {
        al_sampling s = seed ? temp1(seed) : GREEDY;
        al_request q = req(5, s, &(al_gen_ctl){.grammar = g, .logit_bias = lb, .n_logit_bias = n_lb});
        go(e, q, &r);
        assert_int_equal(r.finish, AL_FINISH_STOP);
        uint8_t buf[MAXT * 8];
        int32_t ends[MAXT];
        int32_t n = text(r.tok, r.n, buf, ends);
        assert_true(n >= 2 && buf[n - 1] == 'x');
        for (int32_t i = 0; i + 1 < n; i++)
            assert_true(buf[i] >= 'a' && buf[i] <= 'f');
    }
    al_grammar_unref(g);
    run_free(&r);
    al_engine_free(e);
}

static void expect_invalid(al_engine *e, const al_gen_ctl *g, al_err want, const char *needle)
{
    al_request q = req(4, GREEDY, g);
    int32_t id = -1;
    al_err err = al_engine_submit(e, &q, &id);
    if (err != want || !strstr(al_errmsg(), needle))
        fail_msg("want %s with '%s', got %s: %s", al_strerror(want), needle, al_strerror(err), al_errmsg());
}

static void test_invalid_controls(void **state)
{
    al_engine *e = engine(0), *ev = engine(1);
    al_logit_bias out = {.token = 99999, .bias = 1.0f}, neg = {.token = -1, .bias = 1.0f},
                  nanb = {.token = 5, .bias = NAN};
    expect_invalid(e, &(al_gen_ctl){.logit_bias = &out, .n_logit_bias = 1}, AL_EINVAL,
                   "logit_bias: token 99999 is outside the vocabulary [0, 512)");
    expect_invalid(e, &(al_gen_ctl){.logit_bias = &neg, .n_logit_bias = 1}, AL_EINVAL,
                   "logit_bias: token -1");
    expect_invalid(e, &(al_gen_ctl){.logit_bias = &nanb, .n_logit_bias = 1}, AL_EINVAL, "logit_bias");
    expect_invalid(e, &(al_gen_ctl){.n_logit_bias = 2}, AL_EINVAL, "logit_bias");
    expect_invalid(e, &(al_gen_ctl){.repetition_penalty = -1.0f}, AL_EINVAL, "repetition_penalty");
    expect_invalid(e, &(al_gen_ctl){.repetition_penalty = NAN}, AL_EINVAL, "repetition_penalty");
    expect_invalid(e, &(al_gen_ctl){.frequency_penalty = NAN}, AL_EINVAL, "frequency_penalty");
    expect_invalid(e, &(al_gen_ctl){.presence_penalty = INFINITY}, AL_EINVAL, "presence_penalty");
    expect_invalid(e, &(al_gen_ctl){.min_tokens = -1}, AL_EINVAL, "min_tokens");
    const char *stops[2] = {"ab", ""};
    expect_invalid(e, &(al_gen_ctl){.stop = stops, .n_stop = 1}, AL_EUNSUPPORTED, "al_engine_opts.vocab");
    expect_invalid(ev, &(al_gen_ctl){.stop = stops, .n_stop = 2}, AL_EINVAL, "stop: string 1 is empty");
    expect_invalid(ev, &(al_gen_ctl){.n_stop = 1}, AL_EINVAL, "stop");
    /* nothing was left behind */
    al_engine_stats st;
    al_engine_stats_get(e, &st);
    assert_int_equal(st.sequences, 0);
    al_engine_stats_get(ev, &st);
    assert_int_equal(st.sequences, 0);
    al_engine_free(e);
    al_engine_free(ev);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_controls_is_plain_sampler),
        cmocka_unit_test(test_logit_bias),
        cmocka_unit_test(test_frequency_presence),
        cmocka_unit_test(test_repetition_penalty),
        cmocka_unit_test(test_repetition_over_readonly_prefix),
        cmocka_unit_test(test_min_tokens),
        cmocka_unit_test(test_stop_strings),
        cmocka_unit_test(test_grammars),
        cmocka_unit_test(test_grammar_with_min_tokens),
        cmocka_unit_test(test_batch_mixed_controls),
        cmocka_unit_test(test_continue_ex),
        cmocka_unit_test(test_resume_in_steps),
        cmocka_unit_test(test_grammar_budget),
        cmocka_unit_test(test_invalid_controls),
    };
    return cmocka_run_group_tests_name("engine_gen_ctl", tests, setup, teardown);
}
