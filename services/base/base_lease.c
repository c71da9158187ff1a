/* base_lease.c: leases on prefix blocks: pin, table-arena rows, release by id / TTL / disconnect. */
#include <stdlib.h>
#include <string.h>

#include "common/ipc/lease_table.h"
#include "common/log.h"
#include "services/base/base.h"

al_err base_leases_init(base_ctx *b)
{
    b->leases = calloc((size_t)b->cfg.base.max_leases, sizeof *b->leases);
    if (!b->leases)
        return ali_errf(AL_ENOMEM, "base: out of memory for %d leases", b->cfg.base.max_leases);
    b->next_lease_id = 1;
    b->next_generation = 1;
    return AL_OK;
}

static al_lease_row_hdr *base_row_hdr(base_ctx *b, int32_t row)
{
    return (al_lease_row_hdr *)((char *)al_arena_ptr(b->tables) + (size_t)row * b->row_stride);
}

static void base_lease_free_slot(base_ctx *b, base_lease *l)
{
    al_lease_row_hdr *h = base_row_hdr(b, l->row);
    __atomic_store_n(&h->generation, 0, __ATOMIC_RELEASE);
    al_engine_unpin(b->engine, l->blocks, l->n_blocks);
    memset(l, 0, sizeof *l);
    b->n_leases--;
}

void base_leases_free(base_ctx *b)
{
    if (b->leases && b->engine)
        for (int32_t i = 0; i < b->cfg.base.max_leases; i++)
            if (b->leases[i].id)
                base_lease_free_slot(b, &b->leases[i]);
    free(b->leases);
    b->leases = NULL;
}

al_err base_lease_grant(base_ctx *b, int32_t eseq, int32_t n_tokens, uint32_t pipe, uint32_t ttl_ms,
                        alora_LeaseReply *rep)
{
    int32_t row = -1;
    for (int32_t i = 0; i < b->cfg.base.max_leases; i++)
        if (!b->leases[i].id) {
            row = i;
            break;
        }
    if (row < 0)
        return ali_errf(AL_ECAPACITY, "lease: all %d lease rows are in use (base.max_leases)", b->cfg.base.max_leases);
    al_lease_row_hdr *h = base_row_hdr(b, row);
    int32_t *ids = (int32_t *)((char *)h + AL_LEASE_ROW_HDR_BYTES);
    int32_t nb = 0;
    AL_TRY(al_engine_pin(b->engine, eseq, n_tokens, ids, b->max_blocks_per_seq, &nb));
    /* DESIGN §3: on a GPU the base's stream finishes before a lease is granted, so a worker reading
     * the blocks from its own context sees complete KV (the engine also syncs after a step without
     * logits; this makes the contract local). No-op on the CPU. */
    b->ops->sync();
    base_lease *l = &b->leases[row];
    l->id = b->next_lease_id++;
    l->generation = b->next_generation++;
    l->pipe = pipe;
    if (ttl_ms == 0)
        ttl_ms = (uint32_t)b->cfg.base.lease_ttl_ms;
    l->expiry = al_now() + ttl_ms / 1e3;
    l->row = row;
    l->n_tokens = n_tokens;
    l->n_blocks = nb;
    l->blocks = ids;
    h->n_blocks = nb;
    h->n_tokens = n_tokens;
    __atomic_store_n(&h->generation, l->generation, __ATOMIC_RELEASE);
    b->n_leases++;
    rep->lease_id = l->id;
    rep->n_tokens = (uint32_t)n_tokens;
    rep->table_offset = (uint64_t)row * b->row_stride + AL_LEASE_ROW_HDR_BYTES;
    rep->generation = l->generation;
    rep->n_blocks = (uint32_t)nb;
    rep->ttl_ms = ttl_ms;
    AL_DEBUG("lease %llu: %d tokens, %d blocks, row %d, pipe %u", (unsigned long long)l->id, n_tokens, nb, row, pipe);
    return AL_OK;
}

al_err base_lease_release(base_ctx *b, uint64_t lease_id)
{
    for (int32_t i = 0; lease_id && i < b->cfg.base.max_leases; i++)
        if (b->leases[i].id == lease_id) {
            base_lease_free_slot(b, &b->leases[i]);
            return AL_OK;
        }
    return ali_errf(AL_ENOTFOUND, "lease_id: lease %llu does not exist (released or expired)",
                    (unsigned long long)lease_id);
}

int base_lease_drop_pipe(base_ctx *b, uint32_t pipe)
{
    int n = 0;
    for (int32_t i = 0; i < b->cfg.base.max_leases; i++)
        if (b->leases[i].id && b->leases[i].pipe == pipe) {
            base_lease_free_slot(b, &b->leases[i]);
            n++;
        }
    b->leases_dropped += (uint64_t)n;
    if (n)
        AL_INFO("pipe %u disconnected: released %d lease(s)", pipe, n);
    return n;
}

double base_lease_expire(base_ctx *b, double now)
{
    double next = 3600;
    if (b->n_leases == 0)
        return next;
    for (int32_t i = 0; i < b->cfg.base.max_leases; i++) {
        base_lease *l = &b->leases[i];
        if (!l->id)
            continue;
        if (l->expiry <= now) {
            AL_INFO("lease %llu expired (TTL)", (unsigned long long)l->id);
            base_lease_free_slot(b, l);
            b->leases_expired++;
        } else if (l->expiry - now < next) {
            next = l->expiry - now;
        }
    }
    return next;
}
