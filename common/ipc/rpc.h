/* rpc.h: framed nanopb RPC over NNG REQ/REP: frames, server, client, callback-array helpers. */
#ifndef AL_RPC_H
#define AL_RPC_H

/*
 * The only module that knows both NNG and nanopb. Services fill and read the generated structs
 * of proto/alora.proto (alora.pb.h) and never call pb_* or nng_* themselves.
 *
 * Frame = one NNG message: a fixed 32-byte little-endian header, then the payload.
 *
 *   off size field
 *     0   4  magic        "ALRP" (AL_RPC_MAGIC)
 *     4   1  version      AL_RPC_VERSION (1)
 *     5   1  flags        AL_RPC_F_REPLY | AL_RPC_F_ERROR
 *     6   2  method       alora_Method; a reply repeats its request's method
 *     8   8  request id   chosen by the client, echoed by the server
 *    16   8  trace id     propagated end to end (0 = none)
 *    24   4  payload len  must equal the bytes that follow the header
 *    28   2  status       replies: alora_StatusCode (== al_err); 0 in requests
 *    30   2  reserved     0
 *
 * Payload: the method's request (a request), its reply (a reply), or alora_Status (a reply with
 * AL_RPC_F_ERROR). A bad frame (magic, version, truncation, length mismatch, unknown method,
 * undecodable payload) gets an error reply; the server never crashes and keeps serving.
 *
 * Callback fields (token/float arrays and blobs, no 16-bit limit): read a decoded field with
 * al_pb_i32()/al_pb_f32()/al_pb_bytes(); fill a field to encode with al_pb_set_* (copies) or
 * al_pb_ref_* (borrows: the memory must outlive the send). Memory for both lives in an
 * al_pbmem that the caller frees after it is done with the message.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "alora.pb.h"
#include "common/err.h"

#ifdef __cplusplus
extern "C" {
#endif

#define AL_RPC_MAGIC 0x50524c41u /* "ALRP" little-endian */
#define AL_RPC_VERSION 1
#define AL_RPC_HDR_SIZE 32
#define AL_RPC_F_REPLY 0x01u
#define AL_RPC_F_ERROR 0x02u

/* Defaults (options with value 0 take these). */
#define AL_RPC_DEFAULT_SERVER_RECV_MAX (64u << 20) /* bytes per received frame */
#define AL_RPC_DEFAULT_CLIENT_RECV_MAX (256u << 20)
#define AL_RPC_DEFAULT_MAX_ELEMS (16u << 20) /* elements per decoded callback field */
#define AL_RPC_DEFAULT_N_CTX 32
#define AL_RPC_DEFAULT_CONNECT_WAIT_MS 250
#define AL_RPC_DEFAULT_RESEND_MS 5000 /* idempotent methods only; others never resend */

/* ---- callback fields: memory and accessors ------------------------------------------------- */

typedef struct ali_pbnode ali_pbnode;
/* Owns the arrays attached to callback fields of one or more messages. Zero-initialise. */
typedef struct al_pbmem {
    ali_pbnode *head;
} al_pbmem;
#define AL_PBMEM_INIT {0}
void al_pbmem_free(al_pbmem *m);

/* Decoded (or set) contents of a callback field; n = 0 and *v = NULL when absent. */
size_t al_pb_i32(const pb_callback_t *cb, const int32_t **v);
size_t al_pb_f32(const pb_callback_t *cb, const float **v);
size_t al_pb_bytes(const pb_callback_t *cb, const uint8_t **p);

/* Fill a callback field for encoding. set = copy into mem; ref = borrow (no copy); push = append
 * one element (copy mode). A field holds one kind; mixing kinds is a bug (assert). */
al_err al_pb_set_i32(pb_callback_t *cb, al_pbmem *m, const int32_t *v, size_t n);
al_err al_pb_ref_i32(pb_callback_t *cb, al_pbmem *m, const int32_t *v, size_t n);
al_err al_pb_push_i32(pb_callback_t *cb, al_pbmem *m, int32_t v);
al_err al_pb_set_f32(pb_callback_t *cb, al_pbmem *m, const float *v, size_t n);
al_err al_pb_ref_f32(pb_callback_t *cb, al_pbmem *m, const float *v, size_t n);
al_err al_pb_push_f32(pb_callback_t *cb, al_pbmem *m, float v);
al_err al_pb_set_bytes(pb_callback_t *cb, al_pbmem *m, const void *p, size_t n);
al_err al_pb_ref_bytes(pb_callback_t *cb, al_pbmem *m, const void *p, size_t n);
al_err al_pb_set_str(pb_callback_t *cb, al_pbmem *m, const char *s); /* bytes, no NUL */

/* ---- methods, status codes, frames ---------------------------------------------------------- */

/* Name of a method ("BaseSeqAppend") or NULL when the id is unknown. */
const char *al_rpc_method_name(uint16_t method);
/* True for methods that are safe to execute twice (health, stats, status): only these resend. */
bool al_rpc_method_idempotent(uint16_t method);

/* al_err <-> alora_StatusCode (identical values; unknown codes map to AL_EPROTO). */
alora_StatusCode al_rpc_status_code(al_err e);
al_err al_rpc_status_err(uint32_t code);

typedef struct al_rpc_hdr {
    uint8_t version;
    uint8_t flags;
    uint16_t method;
    uint64_t request_id;
    uint64_t trace_id;
    uint32_t payload_len;
    uint16_t status;
} al_rpc_hdr;

/* Header bytes <-> struct. read checks magic, version, reserved bits and that exactly
 * payload_len bytes follow (len = the whole frame): AL_EPROTO with a detail message. */
void al_rpc_hdr_write(uint8_t out[AL_RPC_HDR_SIZE], const al_rpc_hdr *h);
al_err al_rpc_hdr_read(const uint8_t *buf, size_t len, al_rpc_hdr *h);

/* Encodes a whole frame into a malloc'ed buffer. h->payload_len is computed. msg is the method's
 * request (flags 0), reply (AL_RPC_F_REPLY) or an alora_Status (AL_RPC_F_ERROR). */
al_err al_rpc_frame_encode(const al_rpc_hdr *h, const void *msg, uint8_t **out, size_t *out_len);
/* Decodes a whole frame: header into *h, payload into msg (the struct matching h's method and
 * flags, zeroed here; callback fields land in m, capped at max_elems elements, 0 = default).
 * A decoded error frame returns AL_OK with msg = alora_Status. */
al_err al_rpc_frame_decode(const uint8_t *buf, size_t len, al_rpc_hdr *h, void *msg, al_pbmem *m,
                           size_t max_elems);

/* ---- transport security ------------------------------------------------------------------- */

/*
 * tls+tcp:// URLs (listen and dial) use mutual TLS: each side presents its certificate and
 * verifies the peer's against the CA (a listener requires a client certificate; a dialer checks
 * that the server's certificate names the host it dialed). Call al_rpc_tls_setup once per process
 * before the first tls+tcp:// listen or dial: it reads the PEM files and checks that they load
 * (errors name tls.ca / tls.cert / tls.key and the file). Other schemes ignore it.
 */
al_err al_rpc_tls_setup(const char *ca_file, const char *cert_file, const char *key_file);
void al_rpc_tls_clear(void); /* forgets them (the key is wiped) */
bool al_rpc_url_tls(const char *url); /* tls+tcp://, tls+tcp4://, tls+tcp6:// */

/* ---- server ---------------------------------------------------------------------------------- */

typedef struct al_rpc_server al_rpc_server;
typedef struct al_rpc_job al_rpc_job;

typedef struct al_rpc_server_opts {
    int n_ctx;         /* requests handled (or deferred) at once; more wait in NNG. 0 = 32 */
    size_t recv_max;   /* NNG_OPT_RECVMAXSZ: a larger frame drops the connection. 0 = 64 MiB */
    size_t max_elems;  /* cap per decoded callback field, else invalid_argument. 0 = 16 Mi */
    int ipc_perms;     /* mode of ipc:// socket files. 0 = 0600 */
} al_rpc_server_opts;

/*
 * Handler: runs on an NNG thread and must not block. req = decoded request struct, rep = zeroed
 * reply struct of the method. Return AL_OK to send rep, or an error (detail from ali_errf) to send
 * an error reply. To answer later (engine thread, batching): call al_rpc_defer(job) BEFORE
 * handing the call to another thread, return AL_OK, and later call al_rpc_complete(call, e) once
 * from any thread. req, rep and al_rpc_job_mem(job) stay valid until then.
 */
typedef al_err (*al_rpc_handler)(al_rpc_job *job, const void *req, void *rep, void *user);

/* Peer connect/disconnect (NNG thread; must not block). pid = peer pid on ipc://, else 0. */
typedef void (*al_rpc_peer_cb)(uint32_t pipe_id, uint64_t pid, bool connected, void *user);

void al_rpc_server_opts_default(al_rpc_server_opts *o);
al_err al_rpc_server_new(al_rpc_server **out, const al_rpc_server_opts *opts);
/* Register before the first listen. */
al_err al_rpc_server_handle(al_rpc_server *s, uint16_t method, al_rpc_handler fn, void *user);
al_err al_rpc_server_on_peer(al_rpc_server *s, al_rpc_peer_cb cb, void *user);
/* Listens (callable several times: ipc + tcp) and starts serving. bound (optional) receives the
 * URL actually bound, e.g. tcp://127.0.0.1:0 -> tcp://127.0.0.1:40123. ipc files get 0600. */
al_err al_rpc_server_listen(al_rpc_server *s, const char *url, char *bound, size_t bound_len);
/* Stops serving, waits for every deferred call to be completed (completion after close is
 * allowed and just frees the call), frees everything. */
void al_rpc_server_close(al_rpc_server *s);

void al_rpc_defer(al_rpc_job *job);
/* Completes a deferred call: e == AL_OK sends rep, else an error reply whose message is the
 * calling thread's al_errmsg(). Frees the call. */
void al_rpc_complete(al_rpc_job *job, al_err e);
/* Error replies only: Status.retry_after_ms (e.g. with AL_EOVERLOADED). */
void al_rpc_job_set_retry_after(al_rpc_job *job, uint32_t ms);

uint16_t al_rpc_job_method(const al_rpc_job *job);
uint32_t al_rpc_job_pipe(const al_rpc_job *job);    /* requester's connection id */
uint64_t al_rpc_job_peer_pid(const al_rpc_job *job); /* ipc:// only, else 0 */
uint64_t al_rpc_job_trace(const al_rpc_job *job);
uint64_t al_rpc_job_request_id(const al_rpc_job *job);
al_pbmem *al_rpc_job_mem(al_rpc_job *job); /* for al_pb_set_* on rep; freed with the call */

/* ---- client ---------------------------------------------------------------------------------- */

typedef struct al_rpc_client al_rpc_client;

typedef struct al_rpc_client_opts {
    size_t recv_max;       /* 0 = 256 MiB */
    size_t max_elems;      /* cap per decoded callback field. 0 = 16 Mi */
    int reconnect_min_ms;  /* NNG_OPT_RECONNMINT. 0 = 10 ms ipc, 100 ms tcp */
    int reconnect_max_ms;  /* NNG_OPT_RECONNMAXT. 0 = 2000 ms */
    int connect_wait_ms;   /* a call waits this long for a connection, then AL_EUNAVAILABLE.
                              0 = 250 ms; < 0 = no wait */
    int resend_ms;         /* NNG_OPT_REQ_RESENDTIME for idempotent methods. 0 = 5000 ms;
                              non-idempotent calls never resend (NNG_DURATION_INFINITE) */
    bool dial_blocking;    /* open fails with AL_EUNAVAILABLE when nobody listens */
} al_rpc_client_opts;

typedef struct al_rpc_callopts {
    int timeout_ms;          /* <= 0: no deadline */
    uint64_t trace_id;       /* 0 = none */
    uint32_t retry_after_ms; /* out: Status.retry_after_ms of an error reply */
    bool no_wait;            /* async: AL_EUNAVAILABLE at once when not connected (never blocks) */
} al_rpc_callopts;

void al_rpc_client_opts_default(al_rpc_client_opts *o);
/* Dials url (reconnecting in the background). Thread-safe: any number of threads may call. */
al_err al_rpc_client_open(al_rpc_client **out, const char *url, const al_rpc_client_opts *opts);
/* Waits for in-flight async calls to finish (they complete with AL_ECLOSED) and frees. */
void al_rpc_client_close(al_rpc_client *c);
/* Connected pipes right now (0 = the peer is down). */
int al_rpc_client_connected(al_rpc_client *c);
/* Connections ever made (grows by one at every (re)connect): a caller that must introduce itself
 * on each new connection (BASE_HELLO) compares it with the value at its last introduction. */
uint64_t al_rpc_client_connections(al_rpc_client *c);

/*
 * Synchronous call. req = the method's request struct (callback fields set with al_pb_set_*),
 * rep = its reply struct (zeroed here; callback fields decoded into m; free m after use).
 * Errors: AL_ETIMEDOUT (deadline), AL_EUNAVAILABLE (no connection / peer went away), AL_EPROTO
 * (bad reply), AL_EINVAL (req does not encode), or the server's error code with its message in
 * al_errmsg() ("<method>: <message>").
 */
al_err al_rpc_call(al_rpc_client *c, uint16_t method, const void *req, void *rep, al_pbmem *m,
                   int timeout_ms);
al_err al_rpc_callx(al_rpc_client *c, uint16_t method, const void *req, void *rep, al_pbmem *m,
                    al_rpc_callopts *o);

/* Asynchronous call: req is encoded before this returns; done runs once on an NNG thread (must
 * not block) with the result; rep and m must stay valid until then. msg = al_errmsg() text. The
 * request is written on the caller's thread and the reply's callback runs on the NNG thread that
 * read it (no extra thread hand-off). It waits up to connect_wait_ms for a connection unless
 * o->no_wait. */
typedef void (*al_rpc_done)(al_err e, const char *msg, void *rep, void *arg);
al_err al_rpc_call_async(al_rpc_client *c, uint16_t method, const void *req, void *rep,
                         al_pbmem *m, const al_rpc_callopts *o, al_rpc_done done, void *arg);

/* Sends a raw frame and returns the raw reply frame (malloc'ed). For tests, fuzzing, proxies. */
al_err al_rpc_call_raw(al_rpc_client *c, const void *frame, size_t len, uint8_t **reply,
                       size_t *reply_len, int timeout_ms);

#ifdef __cplusplus
}
#endif
#endif
