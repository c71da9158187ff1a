/* lease_table.h: layout of the block-table arena the base writes and workers read (header only). */
#ifndef AL_LEASE_TABLE_H
#define AL_LEASE_TABLE_H

#include <stddef.h>
#include <stdint.h>

/*
 * The table arena is n_rows rows of al_lease_row_stride(max_blocks_per_seq) bytes. Row r starts at
 * r * stride with a 16-byte header, then max_blocks_per_seq int32 block ids (KV arena blocks).
 * LeaseReply.table_offset points at the ids (so `arena + table_offset` is the block table an
 * al_kv_seg wants); the header sits 16 bytes before it.
 *
 * generation: 0 = free row; otherwise the lease's generation, unique per grant. The base writes the
 * ids and n_blocks first and publishes the generation last (release store); on release it stores 0
 * first. A worker checks generation == LeaseRef.generation before and after it reads the KV: a
 * change means the lease was released meanwhile (e.g. TTL) and the result must be discarded.
 */
typedef struct al_lease_row_hdr {
    uint64_t generation;
    int32_t n_blocks;
    int32_t n_tokens;
} al_lease_row_hdr;

#define AL_LEASE_ROW_HDR_BYTES 16

static inline size_t al_lease_row_stride(int32_t max_blocks_per_seq)
{
    size_t b = AL_LEASE_ROW_HDR_BYTES + sizeof(int32_t) * (size_t)max_blocks_per_seq;
    return (b + 63) & ~(size_t)63;
}

static inline size_t al_lease_table_bytes(int32_t max_blocks_per_seq, int32_t n_rows)
{
    return al_lease_row_stride(max_blocks_per_seq) * (size_t)n_rows;
}

static inline uint64_t al_lease_row_generation(const void *hdr)
{
    return __atomic_load_n(&((const al_lease_row_hdr *)hdr)->generation, __ATOMIC_ACQUIRE);
}

#endif
