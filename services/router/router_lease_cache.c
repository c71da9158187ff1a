/* router_lease_cache.c: prefix leases kept for router.lease_hold_ms and reused by the next intrinsic
 * call on the same conversation prefix (one base round trip fewer per call). */
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "common/log.h"
#include "common/util.h"
#include "services/router/router.h"

enum { ROUTER_LC_MAX = 64 }; /* entries over all bases */

struct router_lcache_ent {
    router_base *b;
    char base_inst[64]; /* the base instance that granted it (a restarted base has a new id) */
    uint64_t hash;      /* XXH3 of toks */
    int32_t *toks;      /* [n] the leased prefix */
    int32_t n;
    alora_LeaseReply lr; /* as granted */
    double until;        /* al_now() after which no new call uses it */
    int users;           /* calls using it now */
    bool dead;           /* invalidated: released once users == 0 */
};

struct router_lcache {
    pthread_mutex_t mu;
    router_lcache_ent *e[ROUTER_LC_MAX];
    int n;
    uint64_t hits, misses;
};

static uint64_t router_lc_hash(const int32_t *t, int32_t n)
{
    return XXH3_64bits(t, sizeof(int32_t) * (size_t)n);
}

al_err router_lcache_init(router *r)
{
    if (r->cfg.router.lease_hold_ms <= 0)
        return AL_OK;
    r->lc = calloc(1, sizeof *r->lc);
    if (!r->lc)
        return ali_errf(AL_ENOMEM, "router: out of memory for the lease cache");
    pthread_mutex_init(&r->lc->mu, NULL);
    return AL_OK;
}

/* Removes entry i (lc->mu held) and returns it; the caller unleases and frees it unlocked. */
static router_lcache_ent *router_lc_take(router_lcache *lc, int i)
{
    router_lcache_ent *e = lc->e[i];
    lc->e[i] = lc->e[--lc->n];
    lc->e[lc->n] = NULL;
    return e;
}

static void router_lc_release(router *r, router_lcache_ent *e)
{
    router_unlease_later(r, e->b, e->lr.lease_id);
    free(e->toks);
    free(e);
}

bool router_lcache_get(router *r, router_base *b, const int32_t *t, int32_t n, alora_LeaseReply *lr,
                       router_lcache_ent **out)
{
    router_lcache *lc = r->lc;
    *out = NULL;
    if (!lc || n <= 0)
        return false;
    char inst[64];
    pthread_mutex_lock(&r->mu);
    memcpy(inst, b->id, sizeof inst);
    pthread_mutex_unlock(&r->mu);
    uint64_t h = router_lc_hash(t, n);
    double now = al_now();
    pthread_mutex_lock(&lc->mu);
    for (int i = 0; i < lc->n; i++) {
        router_lcache_ent *e = lc->e[i];
        if (e->b != b || e->n != n || e->hash != h || e->dead || e->until <= now)
            continue;
        if (strcmp(e->base_inst, inst) != 0) { /* granted by a base process that is gone */
            e->dead = true;
            continue;
        }
        if (memcmp(e->toks, t, sizeof(int32_t) * (size_t)n) != 0)
            continue;
        e->users++;
        lc->hits++;
        *lr = e->lr;
        *out = e;
        pthread_mutex_unlock(&lc->mu);
        return true;
    }
    lc->misses++;
    pthread_mutex_unlock(&lc->mu);
    return false;
}

bool router_lcache_add(router *r, router_base *b, const int32_t *t, int32_t n, const alora_LeaseReply *lr,
                       double granted, router_lcache_ent **out)
{
    router_lcache *lc = r->lc;
    *out = NULL;
    if (!lc || n <= 0)
        return false;
    /* what cached leases of one base may pin: a quarter of its KV blocks and of its lease rows */
    int64_t max_blocks = (int64_t)r->cfg.base.kv_blocks / 4, max_rows = r->cfg.base.max_leases / 4;
    if ((int64_t)lr->n_blocks > max_blocks || max_rows < 1)
        return false;
    router_lcache_ent *e = calloc(1, sizeof *e);
    int32_t *copy = malloc(sizeof(int32_t) * (size_t)n);
    if (!e || !copy) {
        free(e);
        free(copy);
        return false;
    }
    memcpy(copy, t, sizeof(int32_t) * (size_t)n);
    *e = (router_lcache_ent){.b = b, .hash = router_lc_hash(t, n), .toks = copy, .n = n, .lr = *lr,
                             .until = granted + r->cfg.router.lease_hold_ms / 1e3, .users = 1};
    pthread_mutex_lock(&r->mu);
    memcpy(e->base_inst, b->id, sizeof e->base_inst);
    pthread_mutex_unlock(&r->mu);
    router_lcache_ent *evict[ROUTER_LC_MAX];
    int n_evict = 0;
    bool ok = false;
    pthread_mutex_lock(&lc->mu);
    for (;;) {
        int64_t blocks = lr->n_blocks, rows = 1;
        int oldest_b = -1, oldest = -1; /* idle entries: of this base, of any */
        for (int i = 0; i < lc->n; i++) {
            router_lcache_ent *x = lc->e[i];
            if (x->b == b) {
                blocks += x->lr.n_blocks;
                rows++;
            }
            if (x->users)
                continue;
            if (x->b == b && (oldest_b < 0 || x->until < lc->e[oldest_b]->until))
                oldest_b = i;
            if (oldest < 0 || x->until < lc->e[oldest]->until)
                oldest = i;
        }
        bool over_base = blocks > max_blocks || rows > max_rows, full = lc->n >= ROUTER_LC_MAX;
        if (!over_base && !full) {
            lc->e[lc->n++] = e;
            ok = true;
            break;
        }
        int victim = over_base ? oldest_b : oldest;
        if (victim < 0)
            break; /* what would make room is in use: this lease is not kept */
        evict[n_evict++] = router_lc_take(lc, victim);
    }
    pthread_mutex_unlock(&lc->mu);
    for (int i = 0; i < n_evict; i++)
        router_lc_release(r, evict[i]);
    if (!ok) {
        free(copy);
        free(e);
        return false;
    }
    *out = e;
    return true;
}

void router_lcache_put(router *r, router_lcache_ent *e, bool bad)
{
    router_lcache *lc = r->lc;
    if (!lc || !e)
        return;
    router_lcache_ent *gone = NULL;
    pthread_mutex_lock(&lc->mu);
    e->users--;
    if (bad)
        e->dead = true;
    if (e->dead && e->users == 0)
        for (int i = 0; i < lc->n; i++)
            if (lc->e[i] == e) {
                gone = router_lc_take(lc, i);
                break;
            }
    pthread_mutex_unlock(&lc->mu);
    if (gone)
        router_lc_release(r, gone);
}

void router_lcache_drop_base(router *r, router_base *b)
{
    router_lcache *lc = r->lc;
    if (!lc)
        return;
    router_lcache_ent *evict[ROUTER_LC_MAX];
    int n_evict = 0;
    pthread_mutex_lock(&lc->mu);
    for (int i = 0; i < lc->n;) {
        router_lcache_ent *e = lc->e[i];
        if (e->b != b) {
            i++;
            continue;
        }
        e->dead = true;
        if (e->users == 0)
            evict[n_evict++] = router_lc_take(lc, i);
        else
            i++;
    }
    pthread_mutex_unlock(&lc->mu);
    for (int i = 0; i < n_evict; i++) { /* at once: the caller retries its lease right after */
        router_unlease_now(evict[i]->b, evict[i]->lr.lease_id);
        free(evict[i]->toks);
        free(evict[i]);
    }
}

void router_lcache_sweep(router *r, bool all)
{
    router_lcache *lc = r->lc;
    if (!lc)
        return;
    router_lcache_ent *evict[ROUTER_LC_MAX];
    int n_evict = 0;
    double now = al_now();
    pthread_mutex_lock(&lc->mu);
    for (int i = 0; i < lc->n;) {
        router_lcache_ent *e = lc->e[i];
        if (e->users == 0 && (all || e->dead || e->until <= now))
            evict[n_evict++] = router_lc_take(lc, i);
        else
            i++;
    }
    pthread_mutex_unlock(&lc->mu);
    for (int i = 0; i < n_evict; i++)
        router_lc_release(r, evict[i]);
}

const char *router_lcache_inst(const router_lcache_ent *e) { return e->base_inst; }

void router_lcache_stats(router *r, uint32_t *held, uint64_t *hits, uint64_t *misses)
{
    router_lcache *lc = r->lc;
    *held = 0;
    *hits = *misses = 0;
    if (!lc)
        return;
    pthread_mutex_lock(&lc->mu);
    *held = (uint32_t)lc->n;
    *hits = lc->hits;
    *misses = lc->misses;
    pthread_mutex_unlock(&lc->mu);
}

void router_lcache_free(router *r)
{
    router_lcache *lc = r->lc;
    if (!lc)
        return;
    /* every call is done; no BASE_UNLEASE here: the bases release a client's leases when its
     * connection closes, and a base that is stopping too would only make the router wait */
    for (int i = 0; i < lc->n; i++) {
        free(lc->e[i]->toks);
        free(lc->e[i]);
    }
    pthread_mutex_destroy(&lc->mu);
    free(lc);
    r->lc = NULL;
}
