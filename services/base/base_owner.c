/* base_owner.c: who owns the base's sequences: their client (BASE_HELLO id) or connection, orphaning on disconnect, reclaim, grace expiry. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "services/base/base.h"

/* The client bound to a connection, NULL when it never said hello. */
static base_client *base_client_of(base_ctx *b, uint32_t pipe)
{
    for (int32_t i = 0; pipe && i < b->n_clients; i++)
        if (b->clients[i].pipe == pipe)
            return &b->clients[i];
    return NULL;
}

static void base_orphan(base_ctx *b, base_seq *s, double now)
{
    s->pipe = 0;
    s->orphan_at = now + b->cfg.base.seq_grace_ms / 1e3;
    b->n_orphaned++;
}

/* Closed already: a command it sent before going away (queued behind busy work) finishes later. */
static bool base_pipe_gone(const base_ctx *b, uint32_t pipe)
{
    uint32_t n = b->n_gone < 256 ? b->n_gone : 256;
    for (uint32_t i = 0; i < n; i++)
        if (b->gone[i] == pipe)
            return true;
    return false;
}

void base_owner_set(base_ctx *b, base_seq *s, uint32_t pipe)
{
    const base_client *cl = base_client_of(b, pipe);
    s->pipe = pipe;
    s->orphan_at = 0;
    snprintf(s->owner, sizeof s->owner, "%s", cl ? cl->id : "");
    if (!pipe || base_pipe_gone(b, pipe)) /* its creator is gone already: orphaned from the start */
        base_orphan(b, s, al_now());
}

void base_owner_peer_gone(base_ctx *b, uint32_t pipe)
{
    double now = al_now();
    int n = 0;
    for (int32_t i = 0; i < b->n_seqs; i++)
        if (b->seqs[i].pipe == pipe) {
            base_orphan(b, &b->seqs[i], now);
            n++;
        }
    b->gone[b->n_gone++ % 256] = pipe;
    base_client *cl = base_client_of(b, pipe);
    if (n)
        AL_INFO("pipe %u (%s) disconnected: %d sequence(s) orphaned, freed in %d ms unless reclaimed", pipe,
                cl ? cl->id : "no hello", n, b->cfg.base.seq_grace_ms);
    if (cl)
        *cl = b->clients[--b->n_clients];
}

double base_owner_expire(base_ctx *b, double now)
{
    double next = 3600;
    if (b->n_orphaned == 0)
        return next;
    for (int32_t i = 0; i < b->n_seqs;) {
        base_seq *s = &b->seqs[i];
        if (s->pipe || s->orphan_at <= 0) {
            i++;
            continue;
        }
        if (s->orphan_at > now || s->busy) { /* busy: a command still runs on it; look again soon */
            double w = s->busy ? 0.05 : s->orphan_at - now;
            next = w < next ? w : next;
            i++;
            continue;
        }
        AL_INFO("sequence %llu of %s: owner gone for base.seq_grace_ms (%d ms): freed", (unsigned long long)s->id,
                s->owner[0] ? s->owner : "an anonymous connection", b->cfg.base.seq_grace_ms);
        b->seqs_freed++;
        base_seq_drop(b, s->id); /* counts it out of n_orphaned; moves the last sequence into slot i */
    }
    return next;
}

static al_err base_client_id_check(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > 64)
        return ali_errf(AL_EINVAL, "client_id: must be 1..64 characters (got %zu)", n);
    for (const char *p = id; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_' ||
              *p == '-' || *p == '.'))
            return ali_errf(AL_EINVAL, "client_id: '%s': only [A-Za-z0-9_.-] allowed", id);
    return AL_OK;
}

/* BASE_HELLO (engine thread): binds the connection to client_id, checks the epoch, gives back the
 * client's orphaned sequences (and those still on an older connection of it), adopts the ones this
 * connection created before its hello. */
al_err base_hello(base_ctx *b, uint32_t pipe, const alora_HelloRequest *rq, alora_HelloReply *rp, al_pbmem *m)
{
    AL_TRY(base_client_id_check(rq->client_id));
    if (!pipe)
        return ali_errf(AL_EINVAL, "hello: no connection id");
    base_epoch *ep = NULL;
    for (int32_t i = 0; i < b->n_epochs; i++)
        if (!strcmp(b->epochs[i].id, rq->client_id))
            ep = &b->epochs[i];
    if (ep && rq->epoch && rq->epoch < ep->epoch)
        return ali_errf(AL_EINVAL,
                        "epoch: client '%s' says epoch %llu but epoch %llu already said hello: a stale instance "
                        "of that client (two with the same id?)",
                        rq->client_id, (unsigned long long)rq->epoch, (unsigned long long)ep->epoch);
    if (!ep) {
        base_epoch *ne = realloc(b->epochs, sizeof *ne * (size_t)(b->n_epochs + 1));
        if (!ne)
            return ali_errf(AL_ENOMEM, "base: out of memory");
        b->epochs = ne;
        ep = &b->epochs[b->n_epochs++];
        memset(ep, 0, sizeof *ep);
        snprintf(ep->id, sizeof ep->id, "%s", rq->client_id);
    }
    if (rq->epoch > ep->epoch)
        ep->epoch = rq->epoch;
    base_client *cl = base_client_of(b, pipe);
    if (!cl) {
        base_client *nc = realloc(b->clients, sizeof *nc * (size_t)(b->n_clients + 1));
        if (!nc)
            return ali_errf(AL_ENOMEM, "base: out of memory");
        b->clients = nc;
        cl = &b->clients[b->n_clients++];
    }
    memset(cl, 0, sizeof *cl);
    cl->pipe = pipe;
    cl->epoch = rq->epoch;
    snprintf(cl->id, sizeof cl->id, "%s", rq->client_id);

    uint64_t *ids = NULL;
    uint32_t n_back = 0, owned = 0;
    if (b->n_seqs && !(ids = malloc(sizeof *ids * (size_t)b->n_seqs)))
        return ali_errf(AL_ENOMEM, "base: out of memory");
    for (int32_t i = 0; i < b->n_seqs; i++) {
        base_seq *s = &b->seqs[i];
        if (s->pipe == pipe && !s->owner[0]) /* created on this connection before the hello */
            snprintf(s->owner, sizeof s->owner, "%s", cl->id);
        if (strcmp(s->owner, cl->id))
            continue;
        if (s->pipe != pipe) { /* orphaned, or on an older connection of the same client */
            if (!s->pipe)
                b->n_orphaned--;
            s->pipe = pipe;
            s->orphan_at = 0;
            ids[n_back++] = s->id;
        }
        owned++;
    }
    b->seqs_reclaimed += n_back;
    uint8_t *raw = NULL;
    if (n_back && (raw = malloc(8 * (size_t)n_back)))
        for (uint32_t i = 0; i < n_back; i++)
            for (int k = 0; k < 8; k++)
                raw[8 * i + k] = (uint8_t)(ids[i] >> (8 * k));
    free(ids);
    al_err e = raw ? al_pb_set_bytes(&rp->reclaimed_seq_ids, m, raw, 8 * (size_t)n_back) : AL_OK;
    free(raw);
    if (n_back && !raw)
        e = ali_errf(AL_ENOMEM, "base: out of memory");
    AL_TRY(e);
    snprintf(rp->base_instance_id, sizeof rp->base_instance_id, "%s", b->instance_id);
    rp->reclaimed = n_back;
    rp->owned = owned;
    rp->seq_grace_ms = (uint32_t)b->cfg.base.seq_grace_ms;
    AL_INFO("hello: client %s epoch %llu on pipe %u: %u sequence(s) reclaimed, %u owned", cl->id,
            (unsigned long long)rq->epoch, pipe, n_back, owned);
    return AL_OK;
}

void base_owner_free(base_ctx *b)
{
    free(b->clients);
    b->clients = NULL;
    b->n_clients = 0;
    free(b->epochs);
    b->epochs = NULL;
    b->n_epochs = 0;
}
