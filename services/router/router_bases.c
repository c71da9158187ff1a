/* router_bases.c: the base instances behind the router: clients, health, and which base a
 * conversation goes to (prefix affinity by rendezvous hashing; sessions to the least-loaded base). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "log.h"
#include "router.h"
#include "util.h"

al_err router_bases_open(router *r)
{
    int n = r->cfg.base.instances > 0 ? r->cfg.base.instances : 1;
    r->bases = calloc((size_t)n, sizeof *r->bases);
    if (!r->bases)
        return ali_errf(AL_ENOMEM, "router: out of memory");
    r->n_bases = n;
    al_rpc_client_opts co;
    al_rpc_client_opts_default(&co);
    co.connect_wait_ms = 500;
    co.reconnect_max_ms = 500;
    for (int i = 0; i < n; i++) {
        router_base *b = &r->bases[i];
        b->index = i;
        b->health = alora_Health_HEALTH_DOWN;
        AL_TRY(al_cluster_base_url(&r->cfg, i, b->url, sizeof b->url));
        AL_TRY(al_rpc_client_open(&b->cli, b->url, &co));
    }
    return AL_OK;
}

void router_bases_close(router *r)
{
    for (int i = 0; i < r->n_bases; i++)
        if (r->bases[i].cli)
            al_rpc_client_close(r->bases[i].cli);
    free(r->bases);
    r->bases = NULL;
    r->n_bases = 0;
}

static void router_base_poll_one(router *r, router_base *b)
{
    alora_Empty q = alora_Empty_init_zero;
    alora_HealthReply h;
    alora_BaseStatsReply st;
    al_pbmem m = AL_PBMEM_INIT;
    al_err e = al_rpc_call(b->cli, alora_Method_BASE_HEALTH, &q, &h, &m, 1000);
    al_err es = e == AL_OK ? al_rpc_call(b->cli, alora_Method_BASE_STATS, &q, &st, &m, 1000) : e;
    al_pbmem_free(&m);
    pthread_mutex_lock(&r->mu);
    if (e == AL_OK) {
        if (strcmp(b->id, h.instance_id))
            AL_INFO("router: base %d: instance %s (pid %u) at %s", b->index, h.instance_id, h.pid, b->url);
        ROUTER_STRCPY(b->id, h.instance_id);
        b->pid = h.pid;
        b->health = h.health;
        b->seen = al_now();
    } else {
        if (b->health != alora_Health_HEALTH_DOWN && b->seen)
            AL_WARN("router: base %d at %s is down: %s", b->index, b->url, al_errmsg());
        b->health = alora_Health_HEALTH_DOWN;
    }
    b->stats_ok = es == AL_OK;
    if (es == AL_OK)
        b->stats = st;
    pthread_mutex_unlock(&r->mu);
}

void router_base_poll(router *r)
{
    for (int i = 0; i < r->n_bases; i++)
        router_base_poll_one(r, &r->bases[i]);
}

bool router_base_live_locked(const router_base *b)
{
    return b->seen > 0 && b->id[0] && b->health != alora_Health_HEALTH_DOWN;
}

router_base *router_base_route(router *r, const int32_t *toks, int32_t n, const router_base *exclude)
{
    /* Rendezvous (highest random weight) hashing: every base scores hash(key, base index) and the
     * best live one wins, so a base that goes away only moves its own conversations. The key is the
     * conversation's first ROUTER_AFFINITY_TOKENS tokens: a conversation keeps its base as it grows
     * past them (below that, a move costs at most that many tokens of prefill). */
    int32_t k = n < ROUTER_AFFINITY_TOKENS ? n : ROUTER_AFFINITY_TOKENS;
    uint64_t key = XXH3_64bits(toks, sizeof(int32_t) * (size_t)(k > 0 ? k : 0));
    router_base *best = NULL;
    uint64_t best_w = 0;
    pthread_mutex_lock(&r->mu);
    for (int i = 0; i < r->n_bases; i++) {
        router_base *b = &r->bases[i];
        if (b == exclude || !router_base_live_locked(b))
            continue;
        uint64_t w = XXH3_64bits_withSeed(&key, sizeof key, (uint64_t)i + 1);
        if (!best || w > best_w) {
            best = b;
            best_w = w;
        }
    }
    if (best)
        best->routed++;
    pthread_mutex_unlock(&r->mu);
    if (!best)
        ali_errf(AL_EUNAVAILABLE, "no base available%s (%d configured)", exclude ? " to retry on" : "", r->n_bases);
    return best;
}

router_base *router_base_for_session(router *r)
{
    router_base *best = NULL;
    pthread_mutex_lock(&r->mu);
    for (int i = 0; i < r->n_bases; i++) {
        router_base *b = &r->bases[i];
        if (router_base_live_locked(b) && (!best || b->sessions < best->sessions))
            best = b;
    }
    pthread_mutex_unlock(&r->mu);
    if (!best)
        ali_errf(AL_EUNAVAILABLE, "no base available (%d configured)", r->n_bases);
    return best;
}
