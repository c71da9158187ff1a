/* rpc_int.h: internals shared by rpc_pb.c, rpc_server.c and rpc_client.c (method table, codec). */
#ifndef ALI_RPC_INT_H
#define ALI_RPC_INT_H

#include <pb.h>

#include "common/ipc/rpc.h"

#define ALI_RPC_MAX_METHOD 256

typedef struct ali_method {
    const char *name;
    const pb_msgdesc_t *req;
    size_t req_size;
    const pb_msgdesc_t *rep;
    size_t rep_size;
    bool idempotent;
} ali_method;

/* NULL when method is unknown. */
const ali_method *ali_rpc_method(uint16_t method);

/* The payload type of a frame with this header: request, reply or alora_Status. */
al_err ali_frame_desc(const al_rpc_hdr *h, const pb_msgdesc_t **d, size_t *struct_size);

/* Encoded size of msg, then the encoding itself into dst[len]. */
al_err ali_pb_size(const pb_msgdesc_t *d, const void *msg, size_t *len);
al_err ali_pb_write(const pb_msgdesc_t *d, const void *msg, uint8_t *dst, size_t len);
/* One pass for a small message: encodes msg into this thread's scratch buffer (*buf, valid until the
 * thread's next call); AL_ECAPACITY when it does not fit (then size + write as usual). */
al_err ali_pb_encode_small(const pb_msgdesc_t *d, const void *msg, const uint8_t **buf, size_t *len);
/* Zeroes msg (struct_size bytes), attaches decode arrays to its callback fields, decodes. */
al_err ali_pb_read(const pb_msgdesc_t *d, const uint8_t *buf, size_t len, void *msg,
                   size_t struct_size, al_pbmem *m, size_t max_elems);

/* AL_EINVAL naming the field when a string field of the encoded message buf (submessages included)
 * holds a NUL byte; msg = the struct it decoded into. The servers run it on every request: C strings
 * must not be cut short silently ("name\0junk" read as "name"). */
al_err ali_pb_check_strings(const pb_msgdesc_t *d, void *msg, const uint8_t *buf, size_t len);

/* A new TLS config (hold released by the caller with nng_tls_config_free) for a tls+tcp:// listener
 * (server) or dialer of url (client: the server's certificate must name url's host). AL_EINVAL when
 * al_rpc_tls_setup was not called. */
typedef struct nng_tls_config nng_tls_config;
al_err ali_tls_for(const char *url, bool server, nng_tls_config **out);

/* Best-effort header fields of a frame that failed al_rpc_hdr_read (for the error reply). */
void ali_hdr_peek(const uint8_t *buf, size_t len, al_rpc_hdr *h);

#endif
