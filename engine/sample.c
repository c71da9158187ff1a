/* sample.c: token sampling: greedy, temperature, top-k, top-p (nucleus), seeded; and the
 * per-generation controls applied to a logits row before it (al_gen_ctl: grammar, min_tokens, logit
 * bias, repetition / frequency / presence penalties) and after it (grammar, stop strings). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_int.h"

typedef struct ali_cand {
    float v;
    int32_t id;
} ali_cand;

static int ali_cand_cmp(const void *a, const void *b)
{
    const ali_cand *x = a, *y = b;
    if (x->v != y->v)
        return x->v < y->v ? 1 : -1;
    return x->id - y->id;
}

static int32_t ali_argmax(const float *l, int32_t V)
{
    int32_t best = 0;
    for (int32_t i = 1; i < V; i++)
        if (l[i] > l[best])
            best = i;
    return best;
}

int32_t al_sample(const float *logits, int32_t V, const al_sampling *s, al_rng *rng)
{
    if (!s || s->temperature <= 0.0f)
        return ali_argmax(logits, V);
    ali_cand *c = malloc(sizeof(ali_cand) * (size_t)V);
    if (!c)
        return ali_argmax(logits, V);
    for (int32_t i = 0; i < V; i++)
        c[i] = (ali_cand){.v = logits[i] / s->temperature, .id = i};
    qsort(c, (size_t)V, sizeof *c, ali_cand_cmp);
    int32_t n = V;
    if (s->top_k > 0 && s->top_k < n)
        n = s->top_k;
    double m = c[0].v, sum = 0.0;
    for (int32_t i = 0; i < n; i++)
        sum += exp((double)c[i].v - m);
    if (s->top_p > 0.0f && s->top_p < 1.0f) {
        double cum = 0.0;
        int32_t keep = n;
        for (int32_t i = 0; i < n; i++) {
            cum += exp((double)c[i].v - m) / sum;
            if (cum >= s->top_p) {
                keep = i + 1;
                break;
            }
        }
        n = keep;
        sum = 0.0;
        for (int32_t i = 0; i < n; i++)
            sum += exp((double)c[i].v - m);
    }
    double u = al_rng_uniform(rng) * sum, acc = 0.0;
    int32_t tok = c[n - 1].id;
    for (int32_t i = 0; i < n; i++) {
        acc += exp((double)c[i].v - m);
        if (u < acc) {
            tok = c[i].id;
            break;
        }
    }
    free(c);
    return tok;
}

/* ---- generation controls ------------------------------------------------------------------- */

static int ali_ctl_wanted(const al_gen_ctl *g)
{
    return g->frequency_penalty != 0.0f || g->presence_penalty != 0.0f ||
           (g->repetition_penalty != 0.0f && g->repetition_penalty != 1.0f) || g->min_tokens != 0 ||
           g->n_logit_bias != 0 || g->n_stop != 0 || g->grammar != NULL;
}

static al_err ali_ctl_grow(int32_t **p, int32_t *cap, int32_t need)
{
    if (need <= *cap)
        return AL_OK;
    int32_t nc = *cap ? *cap : 64;
    while (nc < need)
        nc *= 2;
    int32_t *np = realloc(*p, sizeof(int32_t) * (size_t)nc);
    if (!np)
        return ali_errf(AL_ENOMEM, "engine: out of memory");
    *p = np;
    *cap = nc;
    return AL_OK;
}

void ali_ctl_free(ali_ctl *c)
{
    free(c->bias);
    free(c->counts);
    free(c->cnt_ids);
    free(c->seen);
    free(c->seen_ids);
    free(c->stop_buf);
    free(c->stop_off);
    free(c->tail);
    al_matcher_free(c->m);
    memset(c, 0, sizeof *c);
}

al_err ali_ctl_init(ali_ctl *c, const al_gen_ctl *g, int32_t V, const al_vocab *vocab)
{
    memset(c, 0, sizeof *c);
    if (!g || !ali_ctl_wanted(g))
        return AL_OK;
    if (!isfinite(g->frequency_penalty))
        return ali_errf(AL_EINVAL, "frequency_penalty: %g is not a finite number", (double)g->frequency_penalty);
    if (!isfinite(g->presence_penalty))
        return ali_errf(AL_EINVAL, "presence_penalty: %g is not a finite number", (double)g->presence_penalty);
    if (!isfinite(g->repetition_penalty) || g->repetition_penalty < 0.0f)
        return ali_errf(AL_EINVAL, "repetition_penalty: %g must be a finite number > 0 (0 = off)",
                        (double)g->repetition_penalty);
    if (g->min_tokens < 0)
        return ali_errf(AL_EINVAL, "min_tokens: %d must be >= 0", g->min_tokens);
    if (g->n_logit_bias < 0 || (g->n_logit_bias > 0 && !g->logit_bias))
        return ali_errf(AL_EINVAL, "logit_bias: %d entries without an array", g->n_logit_bias);
    for (int32_t i = 0; i < g->n_logit_bias; i++) {
        if (g->logit_bias[i].token < 0 || g->logit_bias[i].token >= V)
            return ali_errf(AL_EINVAL, "logit_bias: token %d is outside the vocabulary [0, %d)",
                            g->logit_bias[i].token, V);
        if (!isfinite(g->logit_bias[i].bias))
            return ali_errf(AL_EINVAL, "logit_bias: the bias of token %d (%g) is not a finite number",
                            g->logit_bias[i].token, (double)g->logit_bias[i].bias);
    }
    if (g->n_stop < 0 || (g->n_stop > 0 && !g->stop))
        return ali_errf(AL_EINVAL, "stop: %d strings without an array", g->n_stop);
    if (g->n_stop > 0 && !vocab)
        return ali_errf(AL_EUNSUPPORTED, "stop: stop strings need the engine's vocabulary (al_engine_opts.vocab)");
    size_t stop_bytes = 0;
    for (int32_t i = 0; i < g->n_stop; i++) {
        size_t len = !g->stop[i] ? 0 : g->stop_len ? (size_t)AL_MAX(g->stop_len[i], 0) : strlen(g->stop[i]);
        if (len == 0)
            return ali_errf(AL_EINVAL, "stop: string %d is empty or NULL", i);
        if (len > (1u << 20))
            return ali_errf(AL_EINVAL, "stop: string %d is %zu bytes long (at most %u)", i, len, 1u << 20);
        stop_bytes += len;
    }
    if (stop_bytes > (1u << 24))
        return ali_errf(AL_EINVAL, "stop: %zu bytes of stop strings (at most %u)", stop_bytes, 1u << 24);
    c->on = 1;
    c->freq = g->frequency_penalty;
    c->pres = g->presence_penalty;
    c->rep = g->repetition_penalty == 1.0f ? 0.0f : g->repetition_penalty;
    c->min_tokens = g->min_tokens;
    al_err err = AL_OK;
    if (g->n_logit_bias > 0) {
        c->bias = malloc(sizeof(al_logit_bias) * (size_t)g->n_logit_bias);
        if (!c->bias)
            goto nomem;
        memcpy(c->bias, g->logit_bias, sizeof(al_logit_bias) * (size_t)g->n_logit_bias);
        c->n_bias = g->n_logit_bias;
    }
    if (g->n_stop > 0) {
        c->stop_buf = malloc(stop_bytes);
        c->stop_off = malloc(sizeof(int32_t) * (size_t)(g->n_stop + 1));
        if (!c->stop_buf || !c->stop_off)
            goto nomem;
        int32_t off = 0;
        for (int32_t i = 0; i < g->n_stop; i++) {
            int32_t len = g->stop_len ? g->stop_len[i] : (int32_t)strlen(g->stop[i]);
            memcpy(c->stop_buf + off, g->stop[i], (size_t)len);
            c->stop_off[i] = off;
            off += len;
            c->stop_max = AL_MAX(c->stop_max, len);
        }
        c->stop_off[g->n_stop] = off;
        c->n_stop = g->n_stop;
    }
    if (g->grammar && (err = al_matcher_new(g->grammar, &c->m)) != AL_OK) {
        ali_ctl_free(c);
        return ali_errctx(err, "grammar");
    }
    return AL_OK;
nomem:
    ali_ctl_free(c);
    return ali_errf(AL_ENOMEM, "engine: out of memory for the generation controls");
}

static al_err ali_ctl_see(ali_ctl *c, int32_t t)
{
    if (c->seen[t])
        return AL_OK;
    AL_TRY(ali_ctl_grow(&c->seen_ids, &c->cap_seen, c->n_seen + 1));
    c->seen[t] = 1;
    c->seen_ids[c->n_seen++] = t;
    return AL_OK;
}

al_err ali_ctl_begin(ali_ctl *c, int32_t V, int32_t gen0, const int32_t *pre, int32_t n_pre, const int32_t *toks,
                     int32_t n_toks)
{
    c->gen0 = gen0;
    if (!c->on)
        return AL_OK;
    if (c->freq != 0.0f || c->pres != 0.0f) {
        c->counts = calloc((size_t)V, sizeof(int32_t));
        if (!c->counts)
            return ali_errf(AL_ENOMEM, "engine: out of memory for the penalty counts");
    }
    if (c->rep != 0.0f) {
        c->seen = calloc((size_t)V, 1);
        if (!c->seen)
            return ali_errf(AL_ENOMEM, "engine: out of memory for the repetition penalty");
        for (int32_t i = 0; i < n_pre; i++)
            if (pre[i] >= 0 && pre[i] < V)
                AL_TRY(ali_ctl_see(c, pre[i]));
        for (int32_t i = 0; i < n_toks; i++)
            AL_TRY(ali_ctl_see(c, toks[i]));
    }
    return AL_OK;
}

al_err ali_ctl_resume(ali_ctl *c, const al_vocab *vocab, const int32_t *toks, int32_t n)
{
    for (int32_t i = 0; c->on && i < n; i++) {
        int32_t stop, done;
        AL_TRY(ali_ctl_accept(c, vocab, toks[i], i + 1, &stop, &done));
    }
    return AL_OK;
}

/* Sets the logit of id to -inf; returns 1 when it was allowed before. */
static int ali_ctl_ban(float *logits, int32_t V, int32_t id)
{
    if (id < 0 || id >= V || logits[id] == -INFINITY)
        return 0;
    logits[id] = -INFINITY;
    return 1;
}

al_err ali_ctl_logits(ali_ctl *c, const al_model_config *cfg, const al_vocab *vocab, int ignore_eos, int32_t n_gen,
                      int32_t remaining, float *logits)
{
    int32_t V = cfg->vocab_size, allowed = V;
    if (c->m) {
        ali_errclear();
        allowed = al_matcher_apply(c->m, remaining, logits, V);
        if (allowed <= 0) {
            if (al_errmsg()[0]) /* e.g. the DFA state cap */
                return ali_errctx(AL_ERANGE, "grammar: no token is allowed after %d generated tokens", n_gen);
            return ali_errf(AL_EINVAL,
                            "grammar: no token is allowed after %d generated tokens (no token of the vocabulary "
                            "continues the output)",
                            n_gen);
        }
    }
    /* min_tokens: EOS would end the generation (with ignore_eos only a grammar ends it on EOS) */
    if (n_gen < c->min_tokens && (!ignore_eos || c->m)) {
        int32_t before = allowed;
        for (int32_t i = 0; i < cfg->n_eos; i++)
            allowed -= ali_ctl_ban(logits, V, cfg->eos_token_ids[i]);
        if (c->m && vocab) /* the grammar's EOS ids, should they differ from the model's */
            for (int32_t i = 0; i < vocab->n_eos; i++)
                allowed -= ali_ctl_ban(logits, V, vocab->eos[i]);
        if (allowed <= 0)
            return ali_errf(AL_EINVAL,
                            "min_tokens %d: %s after %d generated tokens (only EOS is allowed there)", c->min_tokens,
                            c->m && before > 0 ? "the grammar is complete" : "nothing but EOS can follow", n_gen);
    }
    for (int32_t i = 0; i < c->n_bias; i++)
        logits[c->bias[i].token] += c->bias[i].bias;
    if (c->seen) /* HF / vLLM: divide positive logits, multiply negative ones */
        for (int32_t i = 0; i < c->n_seen; i++) {
            float *l = &logits[c->seen_ids[i]];
            *l = *l > 0.0f ? *l / c->rep : *l * c->rep;
        }
    if (c->counts) /* OpenAI: l -= count * frequency + (count > 0) * presence */
        for (int32_t i = 0; i < c->n_cnt; i++) {
            int32_t t = c->cnt_ids[i];
            logits[t] -= (float)c->counts[t] * c->freq + c->pres;
        }
    return AL_OK;
}

/* Appends b [n] to the tail and returns the stop string the new bytes complete first (earliest end,
 * lowest index on a tie; only when check), -1 if none; keeps the last stop_max - 1 bytes. */
static al_err ali_ctl_stop_scan(ali_ctl *c, const uint8_t *b, int32_t n, int check, int32_t *hit)
{
    *hit = -1;
    if (n <= 0)
        return AL_OK;
    if (c->n_tail + n > c->cap_tail) {
        int32_t nc = AL_MAX(c->n_tail + n, 2 * c->cap_tail);
        uint8_t *nt = realloc(c->tail, (size_t)nc);
        if (!nt)
            return ali_errf(AL_ENOMEM, "engine: out of memory");
        c->tail = nt;
        c->cap_tail = nc;
    }
    uint8_t *t = c->tail;
    int32_t t0 = c->n_tail;
    memcpy(t + t0, b, (size_t)n);
    int32_t end = t0 + n;
    for (int32_t e = t0 + 1; check && e <= end && *hit < 0; e++)
        for (int32_t i = 0; i < c->n_stop; i++) {
            int32_t len = c->stop_off[i + 1] - c->stop_off[i];
            if (len <= e && t[e - 1] == c->stop_buf[c->stop_off[i + 1] - 1] &&
                memcmp(t + e - len, c->stop_buf + c->stop_off[i], (size_t)len) == 0) {
                *hit = i;
                break;
            }
        }
    int32_t keep = AL_MIN(end, c->stop_max - 1);
    memmove(t, t + end - keep, (size_t)keep);
    c->n_tail = keep;
    return AL_OK;
}

al_err ali_ctl_accept(ali_ctl *c, const al_vocab *vocab, int32_t tok, int32_t n_gen, int32_t *stop, int *done)
{
    *stop = -1;
    *done = 0;
    if (c->m) {
        al_err err = al_matcher_accept(c->m, tok);
        if (err != AL_OK)
            return ali_errctx(err, "grammar");
        *done = al_matcher_finished(c->m) && n_gen >= c->min_tokens;
    }
    if (c->counts) {
        if (c->counts[tok]++ == 0) {
            AL_TRY(ali_ctl_grow(&c->cnt_ids, &c->cap_cnt, c->n_cnt + 1));
            c->cnt_ids[c->n_cnt++] = tok;
        }
    }
    if (c->seen)
        AL_TRY(ali_ctl_see(c, tok));
    if (c->n_stop > 0 && tok < vocab->n && vocab->bytes[tok])
        AL_TRY(ali_ctl_stop_scan(c, vocab->bytes[tok], vocab->len[tok], n_gen >= c->min_tokens, stop));
    return AL_OK;
}
