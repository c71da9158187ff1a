/* sched.c: engine lifecycle, sequences, block tables and the continuous-batching step. */
#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "engine/engine_int.h"

static al_err ali_grow(void **p, int32_t *cap, int32_t need, size_t elem)
{
    if (need <= *cap)
        return AL_OK;
    int32_t nc = *cap ? *cap : 16;
    while (nc < need)
        nc *= 2;
    void *np = realloc(*p, (size_t)nc * elem);
    if (!np)
        return ali_errf(AL_ENOMEM, "engine: cannot grow a buffer to %d elements", nc);
    *p = np;
    *cap = nc;
    return AL_OK;
}

al_err al_engine_create(const al_model *m, const al_engine_opts *opts, al_engine **out)
{
    al_engine_opts o = opts ? *opts : (al_engine_opts){0};
    const al_model_config *c = &m->cfg;
    if (o.block_size == 0)
        o.block_size = 16;
    if (o.max_batch_tokens == 0)
        o.max_batch_tokens = 512;
    if (o.max_seqs == 0)
        o.max_seqs = 64;
    if (o.max_seqs < 1 || o.max_seqs > 4096)
        return ali_errf(AL_ERANGE, "engine: max_seqs %d out of range [1, 4096]", o.max_seqs);
    if (o.max_batch_tokens < o.max_seqs && o.max_batch_tokens < 1)
        return ali_errf(AL_ERANGE, "engine: max_batch_tokens %d must be >= 1", o.max_batch_tokens);
    if (o.max_batch_tokens > 65536)
        return ali_errf(AL_ERANGE, "engine: max_batch_tokens %d out of range [1, 65536]", o.max_batch_tokens);
    if (o.max_shared_rows < 0 || o.max_shared_rows > 65536)
        return ali_errf(AL_ERANGE, "engine: max_shared_rows %d out of range [0, 65536]", o.max_shared_rows);
    if (c->head_dim > 1024 || c->head_dim % 2)
        return ali_errf(AL_EUNSUPPORTED, "engine: head_dim %d must be even and <= 1024", c->head_dim);
    if (o.n_blocks == 0) {
        int64_t nb = ((int64_t)AL_MIN(c->max_position_embeddings, 2048) + o.block_size - 1) / o.block_size;
        nb *= AL_MIN(o.max_seqs, 8);
        o.n_blocks = (int32_t)AL_MAX(nb, 64);
    }
    al_engine *e = calloc(1, sizeof *e);
    if (!e)
        return ali_errf(AL_ENOMEM, "engine: out of memory");
    e->m = m;
    e->o = o;
    e->ops = o.ops ? o.ops : al_ops_cpu();
    if (o.threads != 0 && e->ops->set_threads)
        e->ops->set_threads(o.threads < 0 ? 0 : o.threads);
    e->g = (al_kv_geom){.n_layers = c->n_layers, .n_kv_heads = c->n_kv_heads, .head_dim = c->head_dim,
                        .block_size = o.block_size};
    void *kv_mem = o.kv_mem;
    if (!kv_mem && !e->ops->host_memory) {
        kv_mem = e->kv_owned = e->ops->alloc(al_kvpool_bytes(&e->g, o.n_blocks));
        if (!kv_mem) {
            const char *bn = e->ops->name;
            free(e);
            return ali_errf(AL_ENOMEM, "engine: cannot allocate %d KV blocks on the %s backend", o.n_blocks, bn);
        }
    }
    al_err err = al_kvpool_init(&e->pool, &e->g, o.n_blocks, kv_mem);
    e->pool.copy = e->ops->host_memory ? NULL : e->ops->copy;
    if (err == AL_OK)
        err = ali_weights_upload(e);
    if (err == AL_OK && o.prefix_cache) {
        e->pc = calloc(1, sizeof *e->pc);
        err = e->pc ? ali_pcache_init(e->pc, &e->pool) : ali_errf(AL_ENOMEM, "engine: out of memory");
    }
    if (err == AL_OK)
        err = ali_runstate_init(&e->rs, e->ops, c, o.max_batch_tokens, 64);
    int32_t T = o.max_batch_tokens, S = o.max_seqs;
    e->seqs = calloc((size_t)S, sizeof(ali_seq));
    e->ids = malloc(sizeof(int32_t) * (size_t)T);
    e->pos = malloc(sizeof(int32_t) * (size_t)T);
    e->out_rows = malloc(sizeof(int32_t) * (size_t)T);
    e->out_seq = malloc(sizeof(int32_t) * (size_t)T);
    e->out_idx = malloc(sizeof(int32_t) * (size_t)T);
    e->views = malloc(sizeof(al_seq_view) * (size_t)S);
    e->view_seq = malloc(sizeof(int32_t) * (size_t)S);
    e->ranges = malloc(sizeof(al_row_range) * (size_t)S);
    if (err == AL_OK && (!e->seqs || !e->ids || !e->pos || !e->out_rows || !e->out_seq || !e->out_idx ||
                         !e->views || !e->view_seq || !e->ranges))
        err = ali_errf(AL_ENOMEM, "engine: out of memory");
    if (err != AL_OK) {
        al_engine_free(e);
        return err;
    }
    *out = e;
    return AL_OK;
}

/* 1 when the sequence's own KV is plain base-model KV for blocks [0, upto) (cacheable). */
static int ali_seq_cacheable(const al_engine *e, const ali_seq *s, int32_t upto_tokens)
{
    if (!e->pc || s->prefix.n != 0)
        return 0;
    return s->adapter < 0 || s->act_start < 0 || upto_tokens <= s->act_start;
}

/* Registers the sequence's newly completed full blocks in the prefix cache. */
static void ali_seq_register_full(al_engine *e, ali_seq *s)
{
    int32_t bs = e->g.block_size;
    while ((s->n_hashed + 1) * bs <= s->n_computed && ali_seq_cacheable(e, s, (s->n_hashed + 1) * bs)) {
        const int32_t *t = s->toks + (size_t)s->n_hashed * bs;
        uint64_t key = ali_pcache_key(s->chain, t, bs);
        ali_pcache_insert(e->pc, s->blocks[s->n_hashed], key, t, bs);
        s->chain = key;
        s->n_hashed++;
    }
}

static void ali_seq_clear(al_engine *e, ali_seq *s)
{
    int32_t bs = e->g.block_size;
    if (s->used && e->pc && s->n_hashed * bs == s->n_computed - s->n_computed % bs && s->n_computed % bs &&
        ali_seq_cacheable(e, s, s->n_computed)) {
        /* keep the partial tail block too: a later request with the same prefix reuses it */
        int32_t k = s->n_computed % bs;
        const int32_t *t = s->toks + (size_t)s->n_hashed * bs;
        ali_pcache_insert(e->pc, s->blocks[s->n_hashed], ali_pcache_key(s->chain, t, k), t, k);
    }
    for (int32_t i = 0; i < s->n_blocks; i++)
        al_kvpool_unref(&e->pool, s->blocks[i]);
    free(s->toks);
    free(s->blocks);
    free(s->gen);
    free(s->lp);
    free(s->top);
    free(s->plp);
    free(s->ptop);
    ali_ctl_free(&s->ctl);
    free(s->pre_toks);
    memset(s, 0, sizeof *s);
}

void al_engine_free(al_engine *e)
{
    if (!e)
        return;
    if (e->seqs)
        for (int32_t i = 0; i < e->o.max_seqs; i++)
            if (e->seqs[i].used)
                ali_seq_clear(e, &e->seqs[i]);
    if (e->pc) {
        ali_pcache_free(e->pc);
        free(e->pc);
    }
    al_kvpool_destroy(&e->pool);
    if (e->kv_owned)
        e->ops->free(e->kv_owned);
    ali_runstate_free(&e->rs, e->ops);
    for (int32_t i = 0; i < e->n_adapters; i++)
        ali_adapter_release(e, e->adapters[i], e->amods[i]);
    ali_weights_release(e);
    free(e->seqs);
    free(e->ids);
    free(e->pos);
    free(e->out_rows);
    free(e->out_seq);
    free(e->out_idx);
    free(e->views);
    free(e->view_seq);
    free(e->ranges);
    free(e->ctl_logits);
    free(e);
}

al_err al_engine_add_adapter(al_engine *e, const al_adapter *a, int32_t *slot)
{
    if (e->n_adapters >= ALI_MAX_ADAPTERS)
        return ali_errf(AL_ECAPACITY, "engine: at most %d adapters", ALI_MAX_ADAPTERS);
    if (a->n_layers != e->m->cfg.n_layers)
        return ali_errf(AL_EINVAL, "adapter %s has %d layers, model has %d", a->name, a->n_layers,
                        e->m->cfg.n_layers);
    if (a->max_rank > e->rs.lora_cap) {
        e->ops->free(e->rs.lora_tmp);
        e->rs.lora_tmp = e->ops->alloc((size_t)e->o.max_batch_tokens * (size_t)a->max_rank * sizeof(float));
        if (!e->rs.lora_tmp)
            return ali_errf(AL_ENOMEM, "engine: cannot allocate LoRA scratch for rank %d", a->max_rank);
        e->rs.lora_cap = a->max_rank;
    }
    AL_TRY(ali_adapter_upload(e, a, &e->amods[e->n_adapters]));
    e->adapters[e->n_adapters] = a;
    *slot = e->n_adapters++;
    return AL_OK;
}

static al_err ali_seq_push_tokens(ali_seq *s, const int32_t *t, int32_t n)
{
    AL_TRY(ali_grow((void **)&s->toks, &s->cap_toks, s->n_toks + n, sizeof(int32_t)));
    if (n)
        memcpy(s->toks + s->n_toks, t, sizeof(int32_t) * (size_t)n);
    s->n_toks += n;
    return AL_OK;
}

static void ali_seq_finish(ali_seq *s, al_finish f, al_err err)
{
    ali_ctl_free(&s->ctl); /* the generation is over: its grammar state, counts and tail go */
    s->finish = f;
    s->error = err;
    s->t_end = al_now();
    if (s->t_first == 0)
        s->t_first = s->t_end;
}

/* Reuses cached blocks for the longest cached prefix of the sequence's first `limit` tokens. */
static al_err ali_seq_match_prefix(al_engine *e, ali_seq *s, int32_t limit)
{
    int32_t bs = e->g.block_size;
    while ((s->n_computed + bs) <= limit) {
        const int32_t *t = s->toks + s->n_computed;
        uint64_t key = ali_pcache_key(s->chain, t, bs);
        int32_t b = ali_pcache_lookup(e->pc, key, t, bs);
        if (b < 0) {
            e->pc->misses++;
            break;
        }
        AL_TRY(ali_grow((void **)&s->blocks, &s->cap_blocks, s->n_blocks + 1, sizeof(int32_t)));
        ali_pcache_acquire(e->pc, b);
        s->blocks[s->n_blocks++] = b;
        s->n_computed += bs;
        s->chain = key;
        s->n_hashed++;
        e->pc->hits++;
    }
    if (s->n_computed % bs == 0 && s->n_computed == s->n_hashed * bs) {
        for (int32_t k = AL_MIN(limit - s->n_computed, bs - 1); k > 0; k--) {
            const int32_t *t = s->toks + s->n_computed;
            int32_t b = ali_pcache_lookup(e->pc, ali_pcache_key(s->chain, t, k), t, k);
            if (b < 0)
                continue;
            AL_TRY(ali_grow((void **)&s->blocks, &s->cap_blocks, s->n_blocks + 1, sizeof(int32_t)));
            ali_pcache_acquire(e->pc, b); /* shared partial block: copied before it is written */
            s->blocks[s->n_blocks++] = b;
            s->n_computed += k;
            e->pc->hits++;
            break;
        }
    }
    s->cached_tokens = s->n_computed;
    e->pc->hit_tokens += (uint64_t)s->n_computed;
    return AL_OK;
}

/* Copy-on-write: before a sequence writes into its partially filled tail block, make sure the
 * block is its own (not shared with a lease, another sequence or the prefix cache). */
static al_err ali_seq_own_tail(al_engine *e, ali_seq *s)
{
    int32_t bs = e->g.block_size;
    if (s->n_computed % bs == 0)
        return AL_OK;
    int32_t idx = s->n_computed / bs, old = s->blocks[idx];
    if (e->pool.refcnt[old] == 1 && !ali_pcache_has(e->pc, old))
        return AL_OK;
    int32_t nb;
    AL_TRY(al_kvpool_alloc(&e->pool, &nb));
    al_kvpool_copy_block(&e->pool, nb, old, s->n_computed % bs);
    al_kvpool_unref(&e->pool, old);
    s->blocks[idx] = nb;
    return AL_OK;
}

al_err al_engine_submit(al_engine *e, const al_request *r, int32_t *seq_id)
{
    const al_model_config *c = &e->m->cfg;
    if (r->n_tokens < 0 || (r->n_tokens == 0 && r->prefix.n == 0))
        return ali_errf(AL_EINVAL, "request has no tokens");
    if (r->n_tokens > 0 && !r->tokens)
        return ali_errf(AL_EINVAL, "request tokens are NULL");
    for (int32_t i = 0; i < r->n_tokens; i++)
        if (r->tokens[i] < 0 || r->tokens[i] >= c->vocab_size)
            return ali_errf(AL_ERANGE, "token %d at index %d is outside the vocabulary [0, %d)", r->tokens[i], i,
                            c->vocab_size);
    if (r->max_tokens < 0)
        return ali_errf(AL_ERANGE, "max_tokens %d must be >= 0", r->max_tokens);
    if (r->top_logprobs < 0 || r->top_logprobs > AL_MAX_TOP_LOGPROBS)
        return ali_errf(AL_ERANGE, "top_logprobs %d out of range [0, %d]", r->top_logprobs, AL_MAX_TOP_LOGPROBS);
    if (r->adapter < -1 || r->adapter >= e->n_adapters)
        return ali_errf(AL_ENOTFOUND, "adapter slot %d is not registered", r->adapter);
    if (r->prefix.n < 0 || (r->prefix.n > 0 && (!r->prefix.pool || !r->prefix.table || r->prefix.pos0 != 0)))
        return ali_errf(AL_EINVAL, "read-only prefix must start at position 0 with a pool and a table");
    if (r->sampling.temperature > 0 && (r->sampling.top_p <= 0 || r->sampling.top_p > 1 || r->sampling.top_k < 0))
        return ali_errf(AL_ERANGE, "sampling: top_p must be in (0, 1] and top_k >= 0");
    int64_t total = (int64_t)r->prefix.n + r->n_tokens + r->max_tokens;
    if (total > (int64_t)e->pool.n_blocks * e->g.block_size)
        return ali_errf(AL_ECAPACITY, "request needs %lld tokens of KV, the pool holds %lld", (long long)total,
                        (long long)e->pool.n_blocks * e->g.block_size);
    int32_t id = -1;
    for (int32_t i = 0; i < e->o.max_seqs; i++)
        if (!e->seqs[i].used) {
            id = i;
            break;
        }
    if (id < 0)
        return ali_errf(AL_EOVERLOADED, "engine: all %d sequence slots busy", e->o.max_seqs);
    ali_ctl ctl;
    AL_TRY(ali_ctl_init(&ctl, &r->ctl, c->vocab_size, e->o.vocab));
    ali_seq *s = &e->seqs[id];
    memset(s, 0, sizeof *s);
    s->used = 1;
    s->ctl = ctl;
    s->stop_index = -1;
    if (ali_seq_push_tokens(s, r->tokens, r->n_tokens) != AL_OK) {
        ali_seq_clear(e, s);
        return AL_ENOMEM;
    }
    s->prompt_end = r->n_tokens;
    s->prefix = r->prefix;
    s->adapter = r->adapter;
    s->act_start = AL_ACT_NONE;
    if (r->adapter >= 0) {
        const al_adapter *a = e->adapters[r->adapter];
        if (r->act_start == AL_ACT_AUTO) {
            if (!a->invocation) {
                s->act_start = 0;
            } else {
                /* match over prefix tokens + own tokens */
                int32_t n = r->prefix.n + r->n_tokens;
                int32_t *all = malloc(sizeof(int32_t) * (size_t)(n > 0 ? n : 1));
                if (!all) {
                    ali_seq_clear(e, s);
                    return ali_errf(AL_ENOMEM, "engine: out of memory");
                }
                if (r->prefix.n > 0 && !r->prefix_tokens) {
                    free(all);
                    ali_seq_clear(e, s);
                    return ali_errf(AL_EINVAL, "AL_ACT_AUTO with a read-only prefix needs prefix_tokens");
                }
                if (r->prefix.n > 0)
                    memcpy(all, r->prefix_tokens, sizeof(int32_t) * (size_t)r->prefix.n);
                if (r->n_tokens > 0)
                    memcpy(all + r->prefix.n, r->tokens, sizeof(int32_t) * (size_t)r->n_tokens);
                s->act_start = al_alora_find_start(all, n, a->invocation, a->n_invocation);
                free(all);
            }
        } else if (r->act_start >= AL_ACT_NONE) {
            s->act_start = r->act_start;
        } else {
            ali_seq_clear(e, s);
            return ali_errf(AL_EINVAL, "act_start %d is invalid", r->act_start);
        }
        if (s->act_start >= 0 && s->act_start < r->prefix.n) {
            int32_t as = s->act_start;
            ali_seq_clear(e, s);
            return ali_errf(AL_EINVAL, "activation start %d lies inside the read-only prefix (%d tokens)", as,
                            r->prefix.n);
        }
    }
    s->gen_left = r->max_tokens;
    s->sampling = r->sampling;
    al_rng_seed(&s->rng, r->sampling.seed);
    s->top_logprobs = r->top_logprobs;
    s->ignore_eos = r->ignore_eos;
    s->prompt_logits = r->prompt_logits;
    s->gen_logits = r->gen_logits;
    if (r->prompt_logprobs) {
        if (r->prompt_top_logprobs < 0 || r->prompt_top_logprobs > AL_MAX_TOP_LOGPROBS) {
            ali_seq_clear(e, s);
            return ali_errf(AL_ERANGE, "prompt_top_logprobs: %d out of range [0, %d]", r->prompt_top_logprobs,
                            AL_MAX_TOP_LOGPROBS);
        }
        s->n_ptop = r->prompt_top_logprobs;
        s->plp = calloc((size_t)AL_MAX(r->n_tokens, 1), sizeof(float));
        s->ptop = s->n_ptop ? calloc((size_t)AL_MAX(r->n_tokens, 1) * (size_t)s->n_ptop, sizeof(al_topk_entry)) : NULL;
        if (!s->plp || (s->n_ptop && !s->ptop)) {
            ali_seq_clear(e, s);
            return ali_errf(AL_ENOMEM, "engine: out of memory for the prompt logprobs");
        }
    }
    s->t_start = al_now();
    s->order = e->next_order++;
    if (r->n_tokens == 0 && r->max_tokens > 0) {
        ali_seq_clear(e, s);
        return ali_errf(AL_EINVAL, "generation needs at least one token after the prefix");
    }
    if (r->ctl.resume < 0 || r->ctl.resume > r->n_tokens) {
        ali_seq_clear(e, s);
        return ali_errf(AL_EINVAL, "resume: %d tokens to resume but the request has %d", r->ctl.resume, r->n_tokens);
    }
    if (s->ctl.on) {
        int32_t n_pre = s->ctl.rep != 0.0f && r->prefix_tokens ? r->prefix.n : 0;
        al_err err = AL_OK;
        if (n_pre > 0 && !(s->pre_toks = malloc(sizeof(int32_t) * (size_t)n_pre)))
            err = ali_errf(AL_ENOMEM, "engine: out of memory");
        if (err == AL_OK && n_pre > 0)
            memcpy(s->pre_toks, r->prefix_tokens, sizeof(int32_t) * (size_t)n_pre);
        if (err == AL_OK)
            err = ali_ctl_begin(&s->ctl, c->vocab_size, -r->ctl.resume, s->pre_toks, n_pre, s->toks, s->n_toks);
        if (err == AL_OK)
            err = ali_ctl_resume(&s->ctl, e->o.vocab, s->toks + s->n_toks - r->ctl.resume, r->ctl.resume);
        s->ctl.extra = AL_MAX(0, r->ctl.max_total - r->ctl.resume - r->max_tokens);
        if (err != AL_OK) {
            ali_seq_clear(e, s);
            return err;
        }
    }
    if (e->pc && s->prefix.n == 0) {
        int32_t limit = s->n_toks;
        if (s->gen_left > 0)
            limit--; /* the last prompt token must run to produce logits */
        if (s->prompt_logits || s->plp)
            limit = 0; /* every prompt position's logits were asked for: compute them all */
        if (s->adapter >= 0 && s->act_start >= 0 && s->act_start < limit)
            limit = s->act_start;
        al_err err = ali_seq_match_prefix(e, s, limit);
        if (err != AL_OK) {
            ali_seq_clear(e, s);
            return err;
        }
    }
    if (s->n_computed == s->n_toks && s->gen_left <= 0)
        ali_seq_finish(s, AL_FINISH_LENGTH, AL_OK); /* everything came from the prefix cache */
    *seq_id = id;
    return AL_OK;
}

static ali_seq *ali_seq_get(const al_engine *e, int32_t id)
{
    if (id < 0 || id >= e->o.max_seqs || !e->seqs[id].used)
        return NULL;
    return &e->seqs[id];
}

static int ali_seq_runnable(const ali_seq *s)
{
    return s->used && s->finish == AL_FINISH_NONE && s->n_toks > s->n_computed;
}


/* Makes sure the sequence owns blocks for own positions [0, n). */
static al_err ali_seq_reserve(al_engine *e, ali_seq *s, int32_t n)
{
    int32_t need = (n + e->g.block_size - 1) / e->g.block_size;
    AL_TRY(ali_grow((void **)&s->blocks, &s->cap_blocks, need, sizeof(int32_t)));
    while (s->n_blocks < need) {
        int32_t b;
        AL_TRY(al_kvpool_alloc(&e->pool, &b));
        s->blocks[s->n_blocks++] = b;
    }
    return AL_OK;
}

static int ali_seq_order_cmp(const void *a, const void *b, void *ctx)
{
    const al_engine *e = ctx;
    const ali_seq *x = &e->seqs[*(const int32_t *)a], *y = &e->seqs[*(const int32_t *)b];
    if (x->waited != y->waited) /* sequences a full step left out first */
        return y->waited - x->waited;
    int dx = x->n_gen > 0, dy = y->n_gen > 0; /* decoding sequences first */
    if (dx != dy)
        return dy - dx;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* Samples the next token of s from its raw logits row (not modified) and records logprobs of the
 * raw distribution; with generation controls the token comes from a processed copy of the row.
 * Updates the finish state. */
static al_err ali_seq_sample(al_engine *e, ali_seq *s, const float *logits, const float *dev_logits)
{
    const al_model_config *c = &e->m->cfg;
    int32_t V = c->vocab_size;
    int32_t cap0 = s->cap_gen;
    AL_TRY(ali_grow((void **)&s->gen, &s->cap_gen, s->n_gen + 1, sizeof(int32_t)));
    if (s->cap_gen != cap0 || !s->lp) {
        float *nl = realloc(s->lp, sizeof(float) * (size_t)s->cap_gen);
        if (!nl)
            return ali_errf(AL_ENOMEM, "engine: out of memory");
        s->lp = nl;
    }
    if (s->top_logprobs > 0) {
        al_topk_entry *nt = realloc(s->top, sizeof(al_topk_entry) * (size_t)s->cap_gen * (size_t)s->top_logprobs);
        if (!nt)
            return ali_errf(AL_ENOMEM, "engine: out of memory");
        s->top = nt;
        e->ops->logprobs_topk(dev_logits, 1, V, s->top_logprobs, s->top + (size_t)s->n_gen * s->top_logprobs,
                              NULL);
    }
    if (s->gen_logits)
        memcpy(s->gen_logits + (size_t)s->n_gen * V, logits, sizeof(float) * (size_t)V);
    float mx = logits[0];
    for (int32_t i = 1; i < V; i++)
        mx = logits[i] > mx ? logits[i] : mx;
    double se = 0.0;
    for (int32_t i = 0; i < V; i++)
        se += exp((double)logits[i] - mx);
    float lse = mx + (float)log(se);
    const float *row = logits;
    int32_t n_gen = s->n_gen - s->ctl.gen0; /* tokens of this generation so far */
    if (s->ctl.on) {
        if (!e->ctl_logits && !(e->ctl_logits = malloc(sizeof(float) * (size_t)V)))
            return ali_errf(AL_ENOMEM, "engine: out of memory");
        memcpy(e->ctl_logits, logits, sizeof(float) * (size_t)V);
        AL_TRY(ali_ctl_logits(&s->ctl, c, e->o.vocab, s->ignore_eos, n_gen, s->gen_left + s->ctl.extra,
                              e->ctl_logits));
        row = e->ctl_logits;
    }
    int32_t tok = al_sample(row, V, &s->sampling, &s->rng);
    s->lp[s->n_gen] = logits[tok] - lse;
    s->gen[s->n_gen++] = tok;
    if (s->n_gen == 1)
        s->t_first = al_now();
    AL_TRY(ali_seq_push_tokens(s, &tok, 1));
    s->gen_left--;
    int32_t stop = -1;
    int done = 0;
    if (s->ctl.on)
        AL_TRY(ali_ctl_accept(&s->ctl, e->o.vocab, tok, n_gen + 1, &stop, &done));
    if (!s->ignore_eos && al_model_is_eos(c, tok))
        ali_seq_finish(s, AL_FINISH_STOP, AL_OK);
    else if (stop >= 0) {
        s->stop_index = stop;
        ali_seq_finish(s, AL_FINISH_STOP, AL_OK);
    } else if (done)
        ali_seq_finish(s, AL_FINISH_STOP, AL_OK);
    else if (s->gen_left <= 0)
        ali_seq_finish(s, AL_FINISH_LENGTH, AL_OK);
    return AL_OK;
}

al_err al_engine_step(al_engine *e, int32_t *n_active)
{
    int32_t S = e->o.max_seqs, budget = e->o.max_batch_tokens;
    int32_t *order = e->view_seq; /* reuse as scratch for the ordering */
    int32_t n_run = 0;
    for (int32_t i = 0; i < S; i++)
        if (ali_seq_runnable(&e->seqs[i]))
            order[n_run++] = i;
    if (n_run == 0) {
        if (n_active)
            *n_active = 0;
        return AL_OK;
    }
    qsort_r(order, (size_t)n_run, sizeof(int32_t), ali_seq_order_cmp, e);
    int32_t sched[4096], chunk[4096];
    int32_t n_sched = 0, T = 0;
    for (int32_t k = 0; k < n_run && T < budget; k++) {
        ali_seq *s = &e->seqs[order[k]];
        int32_t c = AL_MIN(s->n_toks - s->n_computed, budget - T);
        if (e->o.max_shared_rows > 0 && T > 0 &&
            T + AL_MIN(s->n_toks - s->n_computed, budget) > e->o.max_shared_rows) {
            s->waited = 1; /* its whole chunk does not fit: next step, first */
            continue;
        }
        if (ali_seq_own_tail(e, s) != AL_OK)
            continue; /* no block to copy into this step */
        if (ali_seq_reserve(e, s, s->n_computed + c) != AL_OK) {
            /* use what the blocks we already hold allow */
            c = AL_MIN(c, s->n_blocks * e->g.block_size - s->n_computed);
            if (c <= 0)
                continue;
        }
        sched[n_sched] = order[k];
        chunk[n_sched++] = c;
        s->waited = 0;
        T += c;
    }
    if (n_sched == 0) {
        /* KV pool exhausted: fail the youngest sequence so the others make progress */
        ali_seq *victim = &e->seqs[order[n_run - 1]];
        ali_errf(AL_ECAPACITY, "kv pool exhausted (%d blocks)", e->pool.n_blocks);
        ali_seq_finish(victim, AL_FINISH_ERROR, AL_ECAPACITY);
        AL_WARN("engine: KV pool exhausted, failing a sequence");
        if (n_active)
            *n_active = n_run - 1;
        return AL_OK;
    }
    /* build the batch */
    int32_t row = 0, n_out = 0, n_groups = 0, n_ranges = 0;
    for (int32_t gi = 0; gi < e->n_adapters; gi++)
        e->groups[gi].n_ranges = 0;
    /* ranges are laid out grouped by adapter: count first */
    int32_t per_adapter[ALI_MAX_ADAPTERS] = {0};
    for (int32_t k = 0; k < n_sched; k++) {
        ali_seq *s = &e->seqs[sched[k]];
        if (s->adapter >= 0 && s->act_start >= 0)
            per_adapter[s->adapter]++;
    }
    int32_t offs[ALI_MAX_ADAPTERS];
    for (int32_t a = 0; a < e->n_adapters; a++) {
        offs[a] = n_ranges;
        n_ranges += per_adapter[a];
        e->groups[a].a = e->adapters[a];
        e->groups[a].ranges = e->ranges + offs[a];
        e->groups[a].n_ranges = 0;
    }
    n_groups = e->n_adapters;
    for (int32_t k = 0; k < n_sched; k++) {
        ali_seq *s = &e->seqs[sched[k]];
        int32_t c = chunk[k];
        int32_t pos0 = s->prefix.n + s->n_computed;
        for (int32_t j = 0; j < c; j++) {
            e->ids[row + j] = s->toks[s->n_computed + j];
            e->pos[row + j] = pos0 + j;
        }
        al_seq_view *v = &e->views[k];
        v->ro = s->prefix;
        v->rw = (al_kv_seg){.pool = e->pool.data, .table = s->blocks, .pos0 = s->prefix.n,
                            .n = s->n_computed + c};
        v->row0 = row;
        v->n_rows = c;
        v->pos0 = pos0;
        if (s->adapter >= 0 && s->act_start >= 0) {
            int32_t first = AL_MAX(0, s->act_start - pos0);
            if (first < c) {
                ali_lora_group *grp = &e->groups[s->adapter];
                grp->ranges[grp->n_ranges++] = (al_row_range){.row0 = row + first, .n = c - first};
            }
        }
        /* output rows: prompt logits wanted, or the last row when a token is sampled next */
        int32_t end = s->n_computed + c;
        if (s->prompt_logits || s->plp)
            for (int32_t j = 0; j < c; j++)
                if (s->n_computed + j < s->prompt_end) {
                    e->out_rows[n_out] = row + j;
                    e->out_seq[n_out] = sched[k];
                    e->out_idx[n_out++] = s->n_computed + j;
                }
        if (end == s->n_toks && s->gen_left > 0 &&
            !(n_out > 0 && e->out_rows[n_out - 1] == row + c - 1)) {
            e->out_rows[n_out] = row + c - 1;
            e->out_seq[n_out] = sched[k];
            e->out_idx[n_out++] = end - 1;
        }
        row += c;
    }
    ali_batch b = {.T = T, .ids = e->ids, .pos = e->pos, .views = e->views, .n_views = n_sched,
                   .groups = e->groups, .n_groups = n_groups, .out_rows = e->out_rows, .n_out = n_out};
    ali_forward(e, &b);
    e->n_steps++;
    e->n_step_seqs += (uint64_t)n_sched;
    e->n_step_rows += (uint64_t)T;
    if (n_sched > 1) {
        e->n_shared_steps++;
        e->n_shared_rows += (uint64_t)T;
    }
    e->last_step_seqs = n_sched;
    e->last_step_rows = T;
    for (int32_t k = 0; k < n_sched; k++) {
        e->seqs[sched[k]].steps++;
        e->seqs[sched[k]].step_seqs += n_sched;
    }
    for (int32_t k = 0; k < n_sched; k++) {
        ali_seq *s = &e->seqs[sched[k]];
        if (s->n_computed >= s->prompt_end)
            e->n_decode_tokens += (uint64_t)chunk[k];
        else
            e->n_prefill_tokens += (uint64_t)chunk[k];
        s->n_computed += chunk[k];
        s->computed_tokens += chunk[k];
        if (e->pc)
            ali_seq_register_full(e, s);
    }
    /* logits, in groups of ALI_LOGIT_ROWS */
    int32_t V = e->m->cfg.vocab_size, H = e->m->cfg.hidden_size;
    for (int32_t o0 = 0; o0 < n_out; o0 += ALI_LOGIT_ROWS) {
        int32_t n = AL_MIN(ALI_LOGIT_ROWS, n_out - o0);
        ali_lm_head(e, e->rs.hout + (size_t)o0 * H, n, e->rs.logits);
        e->ops->download(e->rs.logits_host, e->rs.logits, sizeof(float) * (size_t)n * V);
        for (int32_t i = 0; i < n; i++) {
            ali_seq *s = &e->seqs[e->out_seq[o0 + i]];
            int32_t idx = e->out_idx[o0 + i];
            float *lg = e->rs.logits_host + (size_t)i * V;
            if (s->prompt_logits && idx < s->prompt_end)
                memcpy(s->prompt_logits + (size_t)idx * V, lg, sizeof(float) * (size_t)V);
            if (s->plp && idx + 1 < s->prompt_end) { /* this row predicts prompt token idx + 1 */
                float mx = lg[0];
                for (int32_t v = 1; v < V; v++)
                    mx = lg[v] > mx ? lg[v] : mx;
                double se = 0.0;
                for (int32_t v = 0; v < V; v++)
                    se += exp((double)(lg[v] - mx));
                s->plp[idx + 1] = (float)((double)lg[s->toks[idx + 1]] - ((double)mx + log(se)));
                if (s->n_ptop)
                    e->ops->logprobs_topk(e->rs.logits + (size_t)i * V, 1, V, s->n_ptop,
                                          s->ptop + (size_t)(idx + 1) * s->n_ptop, NULL);
            }
            if (idx == s->n_toks - 1 && s->n_computed == s->n_toks && s->gen_left > 0 &&
                s->finish == AL_FINISH_NONE) {
                al_err err = ali_seq_sample(e, s, lg, e->rs.logits + (size_t)i * V);
                if (err != AL_OK)
                    ali_seq_finish(s, AL_FINISH_ERROR, err);
            }
        }
    }
    /* a step that produced no logits (prefill only) has not waited for the device: finish it here,
     * so results, timings and leases of its KV (the base's) see completed work */
    if (n_out == 0)
        e->ops->sync();
    int32_t active = 0;
    for (int32_t k = 0; k < n_sched; k++) {
        ali_seq *s = &e->seqs[sched[k]];
        if (s->finish == AL_FINISH_NONE && s->n_computed == s->n_toks && s->gen_left <= 0)
            ali_seq_finish(s, AL_FINISH_LENGTH, AL_OK);
    }
    for (int32_t i = 0; i < S; i++)
        if (ali_seq_runnable(&e->seqs[i]))
            active++;
    if (n_active)
        *n_active = active;
    return AL_OK;
}

al_err al_engine_run(al_engine *e)
{
    int32_t n = 1;
    while (n > 0)
        AL_TRY(al_engine_step(e, &n));
    return AL_OK;
}

int al_engine_done(const al_engine *e, int32_t id)
{
    const ali_seq *s = ali_seq_get(e, id);
    return !s || s->finish != AL_FINISH_NONE;
}

al_err al_engine_result(const al_engine *e, int32_t id, al_result *out)
{
    const ali_seq *s = ali_seq_get(e, id);
    if (!s)
        return ali_errf(AL_ENOTFOUND, "sequence %d does not exist", id);
    *out = (al_result){.tokens = s->gen, .logprobs = s->lp, .n_tokens = s->n_gen, .top = s->top, .top_logprobs = s->top_logprobs,
                       .prompt_logprobs = s->plp, .prompt_top = s->ptop, .n_prompt = s->plp ? s->prompt_end : 0,
                       .prompt_top_logprobs = s->n_ptop,
                       .activation_start = s->adapter >= 0 ? s->act_start : -1, .finish = s->finish,
                       .stop_index = s->stop_index, .error = s->error, .computed_tokens = s->computed_tokens,
                       .cached_tokens = s->cached_tokens, .steps = s->steps, .step_seqs = s->step_seqs};
    if (s->finish != AL_FINISH_NONE) {
        out->prefill_ms = (s->t_first - s->t_start) * 1e3;
        out->decode_ms = (s->t_end - s->t_first) * 1e3;
    }
    return AL_OK;
}

al_err al_engine_continue(al_engine *e, int32_t id, const int32_t *tokens, int32_t n, int32_t max_tokens)
{
    return al_engine_continue_ex(e, id, tokens, n, max_tokens, NULL, NULL);
}

al_err al_engine_continue_ex(al_engine *e, int32_t id, const int32_t *tokens, int32_t n, int32_t max_tokens,
                             const al_sampling *sp, const al_gen_ctl *ctl)
{
    ali_seq *s = ali_seq_get(e, id);
    int32_t V = e->m->cfg.vocab_size;
    if (!s)
        return ali_errf(AL_ENOTFOUND, "sequence %d does not exist", id);
    if (s->finish == AL_FINISH_NONE)
        return ali_errf(AL_EINVAL, "sequence %d is still running", id);
    if (s->finish == AL_FINISH_ERROR)
        return ali_errf(AL_EINVAL, "sequence %d failed", id);
    if (n < 0 || (n > 0 && !tokens))
        return ali_errf(AL_EINVAL, "continue: %d tokens without an array", n);
    for (int32_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= V)
            return ali_errf(AL_ERANGE, "token %d at index %d is outside the vocabulary", tokens[i], i);
    if (max_tokens < 0)
        return ali_errf(AL_ERANGE, "max_tokens %d must be >= 0", max_tokens);
    if (sp && sp->temperature > 0 && (sp->top_p <= 0 || sp->top_p > 1 || sp->top_k < 0))
        return ali_errf(AL_ERANGE, "sampling: top_p must be in (0, 1] and top_k >= 0");
    if (n == 0 && s->n_toks == s->n_computed && max_tokens > 0)
        return ali_errf(AL_EINVAL, "nothing to compute");
    int32_t resume = ctl ? ctl->resume : 0;
    if (resume < 0 || resume > s->n_toks + n)
        return ali_errf(AL_EINVAL, "resume: %d tokens to resume but sequence %d holds %d", resume, id, s->n_toks + n);
    ali_ctl nc;
    AL_TRY(ali_ctl_init(&nc, ctl, V, e->o.vocab));
    al_err err = ali_seq_push_tokens(s, tokens, n);
    if (err == AL_OK)
        err = ali_ctl_begin(&nc, V, s->n_gen - resume, s->pre_toks, s->pre_toks ? s->prefix.n : 0, s->toks, s->n_toks);
    if (err == AL_OK)
        err = ali_ctl_resume(&nc, e->o.vocab, s->toks + s->n_toks - resume, resume);
    nc.extra = ctl ? AL_MAX(0, ctl->max_total - resume - max_tokens) : 0;
    if (err != AL_OK)
        s->n_toks -= n; /* the sequence stays as it was */
    if (err != AL_OK) {
        ali_ctl_free(&nc);
        return err;
    }
    ali_ctl_free(&s->ctl);
    s->ctl = nc;
    if (sp) {
        s->sampling = *sp;
        al_rng_seed(&s->rng, sp->seed);
    }
    s->prompt_end = s->n_toks;
    s->prompt_logits = NULL;
    free(s->plp); /* a continue computes no prompt logprobs: the submit's go with it */
    free(s->ptop);
    s->plp = NULL;
    s->ptop = NULL;
    s->n_ptop = 0;
    s->gen_logits = NULL;
    s->gen_left = max_tokens;
    s->stop_index = -1;
    s->finish = AL_FINISH_NONE;
    s->t_start = al_now();
    s->t_first = 0;
    if (s->n_toks == s->n_computed)
        ali_seq_finish(s, AL_FINISH_LENGTH, AL_OK);
    return AL_OK;
}

void al_engine_release(al_engine *e, int32_t id)
{
    ali_seq *s = ali_seq_get(e, id);
    if (s)
        ali_seq_clear(e, s);
}

const al_kvpool *al_engine_kvpool(const al_engine *e) { return &e->pool; }
const al_model *al_engine_model(const al_engine *e) { return e->m; }

al_err al_engine_seq_kv(const al_engine *e, int32_t id, al_kv_seg *seg)
{
    const ali_seq *s = ali_seq_get(e, id);
    if (!s)
        return ali_errf(AL_ENOTFOUND, "sequence %d does not exist", id);
    *seg = (al_kv_seg){.pool = e->pool.data, .table = s->blocks, .pos0 = s->prefix.n, .n = s->n_computed};
    return AL_OK;
}

al_err al_engine_pin(al_engine *e, int32_t id, int32_t n_tokens, int32_t *blocks, int32_t cap, int32_t *n_blocks)
{
    ali_seq *s = ali_seq_get(e, id);
    if (!s)
        return ali_errf(AL_ENOTFOUND, "sequence %d does not exist", id);
    if (ali_seq_runnable(s))
        return ali_errf(AL_EINVAL, "sequence %d is still running", id);
    if (s->prefix.n != 0)
        return ali_errf(AL_EINVAL, "sequence %d has a read-only prefix and cannot be pinned", id);
    if (n_tokens < 0 || n_tokens > s->n_computed)
        return ali_errf(AL_ERANGE, "pin of %d tokens: sequence %d has %d computed tokens", n_tokens, id,
                        s->n_computed);
    int32_t nb = (n_tokens + e->g.block_size - 1) / e->g.block_size;
    if (nb > cap)
        return ali_errf(AL_ERANGE, "pin needs %d blocks, the table row holds %d", nb, cap);
    for (int32_t i = 0; i < nb; i++) {
        al_kvpool_ref(&e->pool, s->blocks[i]);
        blocks[i] = s->blocks[i];
    }
    *n_blocks = nb;
    return AL_OK;
}

void al_engine_unpin(al_engine *e, const int32_t *blocks, int32_t n_blocks)
{
    for (int32_t i = 0; i < n_blocks; i++)
        al_kvpool_unref(&e->pool, blocks[i]);
}

al_err al_engine_seq_tokens(const al_engine *e, int32_t id, const int32_t **toks, int32_t *n, int32_t *n_computed)
{
    const ali_seq *s = ali_seq_get(e, id);
    if (!s)
        return ali_errf(AL_ENOTFOUND, "sequence %d does not exist", id);
    *toks = s->toks;
    *n = s->n_toks;
    if (n_computed)
        *n_computed = s->n_computed;
    return AL_OK;
}

void al_engine_stats_get(const al_engine *e, al_engine_stats *st)
{
    memset(st, 0, sizeof *st);
    st->blocks_total = e->pool.n_blocks;
    st->blocks_cached = e->pc ? e->pc->n_lru : 0;
    st->blocks_free = e->pool.n_free;
    st->blocks_used = e->pool.n_blocks - e->pool.n_free - st->blocks_cached;
    for (int32_t i = 0; i < e->o.max_seqs; i++)
        if (e->seqs[i].used) {
            st->sequences++;
            if (ali_seq_runnable(&e->seqs[i]))
                st->running++;
        }
    if (e->pc) {
        st->cache_hit_blocks = e->pc->hits;
        st->cache_miss_blocks = e->pc->misses;
        st->cache_hit_tokens = e->pc->hit_tokens;
    }
    st->prefill_tokens = e->n_prefill_tokens;
    st->decode_tokens = e->n_decode_tokens;
    st->steps = e->n_steps;
    st->step_seqs = e->n_step_seqs;
    st->step_rows = e->n_step_rows;
    st->shared_steps = e->n_shared_steps;
    st->shared_rows = e->n_shared_rows;
    st->last_step_seqs = e->last_step_seqs;
    st->last_step_rows = e->last_step_rows;
}
