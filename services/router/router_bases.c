/* router_bases.c: the base instances behind the router: clients, health, and which base a
 * conversation goes to (cache-aware with a load bound; sessions to the least-loaded base). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include "common/log.h"
#include "common/util.h"
#include "services/router/router.h"

/* ---- identity and hello ------------------------------------------------------------------------ */

static bool router_id_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_' ||
              *s == '-' || *s == '.'))
            return false;
    return true;
}

al_err router_identity_load(router *r)
{
    const char *dir = r->cfg.run_dir;
    char path[600], tmp[620], id[65] = "";
    unsigned long long epoch = 0;
    snprintf(path, sizeof path, "%s/router.id", dir);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return ali_errf(AL_EIO, "router: run_dir %s: %s", dir, strerror(errno));
    FILE *f = fopen(path, "r");
    if (f) {
        if (fscanf(f, "%64s %llu", id, &epoch) < 1)
            id[0] = 0;
        fclose(f);
        if (id[0] && !router_id_ok(id)) {
            AL_WARN("router: %s holds no valid id: making a new one", path);
            id[0] = 0;
            epoch = 0;
        }
    }
    const char *cfg_id = r->cfg.router.id;
    if (cfg_id && *cfg_id) {
        if (!router_id_ok(cfg_id))
            return ali_errf(AL_EFORMAT, "router.id: '%s': 1..64 characters of [A-Za-z0-9_.-]", cfg_id);
        if (strcmp(id, cfg_id))
            epoch = 0; /* another identity: its own epochs */
        snprintf(id, sizeof id, "%s", cfg_id);
    }
    if (!id[0]) {
        uint8_t raw[8];
        if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw)
            return ali_errf(AL_EIO, "router: getrandom failed");
        int k = snprintf(id, sizeof id, "router-");
        for (size_t i = 0; i < sizeof raw; i++)
            k += snprintf(id + k, sizeof id - (size_t)k, "%02x", raw[i]);
        epoch = 0;
    }
    epoch++;
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    FILE *w = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!w || fprintf(w, "%s %llu\n", id, epoch) < 0 || fclose(w) != 0 || rename(tmp, path) != 0) {
        if (w == NULL && fd >= 0)
            close(fd);
        return ali_errf(AL_EIO, "router: cannot write %s: %s", path, strerror(errno));
    }
    snprintf(r->client_id, sizeof r->client_id, "%s", id);
    r->epoch = epoch;
    AL_INFO("router: identity %s epoch %llu (%s)", id, epoch, cfg_id && *cfg_id ? "router.id" : path);
    return AL_OK;
}

/* Says BASE_HELLO on b's current connection: the sequences this router made before a restart or a
 * reconnect are its again. The ones no session of this router names are released at once (a router
 * without its sessions cannot use them); the rest stay its. */
static void router_base_hello(router *r, router_base *b, uint64_t conn)
{
    alora_HelloRequest q = alora_HelloRequest_init_zero;
    snprintf(q.client_id, sizeof q.client_id, "%s", r->client_id);
    q.epoch = r->epoch;
    q.role = alora_Role_ROLE_ROUTER;
    alora_HelloReply h;
    al_pbmem m = AL_PBMEM_INIT;
    al_err e = al_rpc_call(b->cli, alora_Method_BASE_HELLO, &q, &h, &m, 2000);
    if (e != AL_OK) {
        AL_WARN("router: base %d: hello as %s epoch %llu: %s", b->index, r->client_id, (unsigned long long)r->epoch,
                al_errmsg());
        if (e == AL_EINVAL)
            b->hello_conn = conn; /* refused (stale epoch): do not repeat it every poll */
        al_pbmem_free(&m);
        return;
    }
    b->hello_conn = conn;
    const uint8_t *raw;
    size_t nb = al_pb_bytes(&h.reclaimed_seq_ids, &raw);
    uint32_t kept = 0, released = 0;
    for (size_t i = 0; i + 8 <= nb; i += 8) {
        uint64_t id = 0;
        for (int k = 0; k < 8; k++)
            id |= (uint64_t)raw[i + (size_t)k] << (8 * k);
        bool known = false;
        pthread_mutex_lock(&r->mu);
        for (router_session *s = r->sessions; s && !known; s = s->next)
            known = !s->deleted && s->base == b && s->seq_id == id;
        pthread_mutex_unlock(&r->mu);
        if (known) {
            kept++;
            continue;
        }
        alora_SeqReleaseRequest rq = {.seq_id = id};
        alora_Empty rp;
        al_pbmem m2 = AL_PBMEM_INIT;
        if (al_rpc_call(b->cli, alora_Method_BASE_SEQ_RELEASE, &rq, &rp, &m2, 2000) == AL_OK)
            released++;
        al_pbmem_free(&m2);
    }
    al_pbmem_free(&m);
    pthread_mutex_lock(&r->mu);
    b->reclaimed += h.reclaimed;
    pthread_mutex_unlock(&r->mu);
    if (h.reclaimed)
        AL_INFO("router: base %d: hello as %s epoch %llu: %u sequence(s) reclaimed, %u kept (sessions), %u released",
                b->index, r->client_id, (unsigned long long)r->epoch, h.reclaimed, kept, released);
    else
        AL_DEBUG("router: base %d: hello as %s epoch %llu", b->index, r->client_id, (unsigned long long)r->epoch);
}

al_err router_bases_open(router *r)
{
    int n = r->cfg.base.instances > 0 ? r->cfg.base.instances : 1;
    r->bases = calloc((size_t)n, sizeof *r->bases);
    if (!r->bases)
        return ali_errf(AL_ENOMEM, "router: out of memory");
    r->n_bases = n;
    if (n > 64)
        return ali_errf(AL_ERANGE, "router: %d bases (at most 64)", n);
    /* room for what the bases can cache: twice their blocks */
    AL_TRY(router_affinity_init(&r->aff, (size_t)2 * (size_t)n * (size_t)r->cfg.base.kv_blocks, r->cfg.base.block_size));
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
    router_affinity_free(&r->aff);
}

static void router_base_poll_one(router *r, router_base *b)
{
    alora_Empty q = alora_Empty_init_zero;
    alora_HealthReply h;
    alora_BaseStatsReply st;
    al_pbmem m = AL_PBMEM_INIT;
    uint64_t conn = al_rpc_client_connections(b->cli); /* before the calls: a reconnect after it is seen next time */
    al_err e = al_rpc_call(b->cli, alora_Method_BASE_HEALTH, &q, &h, &m, 1000);
    if (e == AL_OK && conn != b->hello_conn)
        router_base_hello(r, b, conn);
    al_err es = e == AL_OK ? al_rpc_call(b->cli, alora_Method_BASE_STATS, &q, &st, &m, 1000) : e;
    al_pbmem_free(&m);
    pthread_mutex_lock(&r->mu);
    if (e == AL_OK) {
        if (strcmp(b->id, h.instance_id)) {
            AL_INFO("router: base %d: instance %s (pid %u) at %s", b->index, h.instance_id, h.pid, b->url);
            if (b->id[0])
                router_affinity_forget(&r->aff, b->index); /* a new process: its prefix cache is empty */
        }
        ROUTER_STRCPY(b->id, h.instance_id);
        ROUTER_STRCPY(b->backend, h.backend);
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

/* Tie-break between bases of equal claim: a rendezvous weight of the conversation's start, so ties
 * are stable per conversation and spread across conversations. */
static uint64_t router_rdv(uint64_t key, int b) { return XXH3_64bits_withSeed(&key, sizeof key, (uint64_t)b + 1); }

router_base *router_base_route(router *r, const int32_t *toks, int32_t n, const router_base *exclude)
{
    /* the prefix's block hashes (outside the lock: only the immutable block size is read); with
     * one base there is nothing to choose: no hashing, no table (a request's cost independent of
     * its context) */
    int cap = n > 0 && r->n_bases > 1 ? n / r->aff.block : 0;
    uint64_t hbuf[256], *h = cap <= 256 ? hbuf : malloc(sizeof(uint64_t) * (size_t)cap);
    if (!h) {
        ali_errf(AL_ENOMEM, "router: out of memory");
        return NULL;
    }
    int m = router_affinity_hash(&r->aff, toks, n, h, cap);
    int depth[64]; /* n_bases <= 64 (router_bases_open) */
    int32_t k = n < 64 ? n : 64;
    uint64_t key = XXH3_64bits(toks, sizeof(int32_t) * (size_t)(k > 0 ? k : 0));
    pthread_mutex_lock(&r->mu);
    router_affinity_match(&r->aff, h, m, r->n_bases, depth);
    router_base *best = NULL, *least = NULL;
    for (int i = 0; i < r->n_bases; i++) {
        router_base *b = &r->bases[i];
        if (b == exclude || !router_base_live_locked(b))
            continue;
        /* the longest cached prefix; then the least loaded; then the rendezvous weight */
        if (!best || depth[i] > depth[best->index] ||
            (depth[i] == depth[best->index] &&
             (b->inflight < best->inflight ||
              (b->inflight == best->inflight && router_rdv(key, i) > router_rdv(key, best->index)))))
            best = b;
        if (!least || b->inflight < least->inflight ||
            (b->inflight == least->inflight && router_rdv(key, i) > router_rdv(key, least->index)))
            least = b;
    }
    if (best && least && best != least && best->inflight >= least->inflight + ROUTER_AFFINITY_SLACK &&
        best->inflight >= 2 * least->inflight)
        best = least; /* load bound: the busy base's cache is not worth the queue */
    if (best) {
        best->inflight++;
        best->routed++;
        router_affinity_record(&r->aff, h, m, best->index);
    }
    pthread_mutex_unlock(&r->mu);
    if (h != hbuf)
        free(h);
    if (!best)
        ali_errf(AL_EUNAVAILABLE, "no base available%s (%d configured)", exclude ? " to retry on" : "", r->n_bases);
    return best;
}

void router_base_done(router *r, router_base *b)
{
    if (!b)
        return;
    pthread_mutex_lock(&r->mu);
    b->inflight--;
    pthread_mutex_unlock(&r->mu);
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
