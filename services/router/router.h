/* router.h: alora-router internals: state, worker registry, task pool, handlers. */
#ifndef ROUTER_H
#define ROUTER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/ipc/rpc.h"
#include "common/text/tokenizer.h"
#include "services/common/cluster_cfg.h"

#define ROUTER_MAX_INV 64
#define ROUTER_MAX_REQ_TOKENS (1 << 20) /* tokens in one request */
#define ROUTER_MAX_GEN_TOKENS 4096      /* max_tokens of one request */

/* ---- task pool: deferred RPC calls run here, off NNG's threads ------------------------------- */

typedef struct router router;
typedef struct router_task router_task;
typedef void (*router_task_fn)(router_task *t);

struct router_task {
    router *r;
    al_rpc_job *job;   /* the deferred call; completed by fn (or by the pool on shutdown) */
    const void *req;
    void *rep;
    router_task_fn fn;
    int intr;          /* intrinsic index (queue accounting), -1 = none */
    double t_accept;   /* al_now() when the handler accepted it */
    struct router_base *routed; /* ROUTER_INVOKE: the base it was already routed to, NULL = none */
    router_task *next;
};

typedef struct router_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    router_task *head, *tail;
    pthread_t *th;
    int n_th;
    bool stop;
} router_pool;

al_err router_pool_start(router_pool *p, int n_threads);
/* Defers the job and queues fn; on failure completes the job with an error itself. */
void router_pool_submit(router_pool *p, router *r, al_rpc_job *job, const void *req, void *rep,
                        router_task_fn fn, int intr);
/* The same for a call already routed to base `routed` (handed to the task), accepted at t_accept
 * (al_now(); 0 = now). */
void router_pool_submit_ex(router_pool *p, router *r, al_rpc_job *job, const void *req, void *rep,
                           router_task_fn fn, int intr, struct router_base *routed, double t_accept);
void router_pool_stop(router_pool *p); /* runs what is queued, then joins */
/* Queues fn with t->req = arg and no RPC job (the HTTP front door). false when stopping. */
bool router_pool_post(router_pool *p, router *r, router_task_fn fn, void *arg);

/* ---- worker registry ------------------------------------------------------------------------- */

typedef struct router_worker {
    char id[64], intrinsic[64], base_id[64], url[256], digest[80];
    int32_t inv[ROUTER_MAX_INV];
    int n_inv;
    uint32_t capacity, pid;
    bool supports_lora;
    al_rpc_client *cli;
    int refs;          /* picks in flight (+1 while in the registry list) */
    bool removed;      /* out of the registry; closed by the monitor once refs == 0 */
    int inflight;      /* router-side invocations on it */
    alora_Health health;
    uint32_t hb_active, hb_queued, leases_held;
    uint64_t invocations, requests, failures;
    double last_seen, registered;
    struct router_worker *next;
} router_worker;

/* Per intrinsic of the config: queue accounting. */
typedef struct router_intr {
    const al_intrinsic_cfg *cfg;
    int pending;       /* accepted invocations not yet answered */
    uint64_t requests, rejected;
} router_intr;

/* One base instance (base.instances of them): its client and what the monitor last saw. */
typedef struct router_base {
    int index;
    char url[320];
    al_rpc_client *cli;
    /* under r->mu */
    char id[64];              /* instance id ("" = never seen) */
    char backend[48];         /* HealthReply.backend ("cpu avx512", "cuda") */
    uint32_t pid;
    alora_Health health;
    double seen;              /* al_now() of the last good health check, 0 = never */
    alora_BaseStatsReply stats;
    bool stats_ok;
    int sessions;             /* sessions pinned to it */
    int inflight;             /* stateless requests routed to it and not done */
    uint64_t routed;          /* stateless requests routed to it */
    uint64_t hello_conn;      /* monitor thread: al_rpc_client_connections at the last BASE_HELLO */
    uint32_t reclaimed;       /* sequences this router got back from it (BASE_HELLO), kept or released */
} router_base;

/* Which bases hold which conversation prefixes, as far as the router's own routing implies:
 * block-chain hash (h_j = H(h_{j-1}, tokens of block j)) -> bit mask of bases. Fixed-size
 * open-addressing table with approximate LRU eviction (router_affinity.c). Under r->mu. */
typedef struct router_affinity {
    uint64_t *key;   /* [cap] chain hash, 0 = empty slot */
    uint64_t *mask;  /* [cap] bit b: base b was sent this prefix */
    uint32_t *tick;  /* [cap] last use */
    size_t cap;      /* power of two */
    uint32_t now;
    int block;       /* tokens per block (base.block_size) */
} router_affinity;

al_err router_affinity_init(router_affinity *a, size_t entries, int block);
void router_affinity_free(router_affinity *a);
/* Chain hashes of the full blocks of toks[0, n) into h (at most cap); returns how many. */
int router_affinity_hash(const router_affinity *a, const int32_t *toks, int32_t n, uint64_t *h, int cap);
/* For every base b < n_bases: the number of leading blocks of h the table says it holds. */
void router_affinity_match(const router_affinity *a, const uint64_t *h, int m, int n_bases, int *depth);
/* Records that base b now holds blocks h[0, m). */
void router_affinity_record(router_affinity *a, const uint64_t *h, int m, int b);
/* Base b restarted (its cache is empty): forget it. */
void router_affinity_forget(router_affinity *a, int b);

typedef struct router_session {
    char id[64];
    char owner[65];    /* hex SHA-256 of the API key that made it, "local" (no keys, or over RPC) */
    router_base *base; /* where its sequence lives */
    uint64_t seq_id;   /* 0 = not resident (evicted, or its base restarted): rebuilt from toks */
    char base_inst[64]; /* instance id of base when seq_id was made (a restarted base has a new one) */
    int32_t *toks;     /* the conversation so far (what the base sequence holds) */
    int32_t n, cap;
    double created, last_used; /* unix seconds */
    int32_t rebuilt;   /* tokens re-prefilled since the last router_session_take_rebuilt */
    int busy;          /* an operation is running on it */
    bool deleted;
    struct router_session *next;
} router_session;

/* Prefix leases kept and reused across intrinsic calls (router_lease_cache.c). */
typedef struct router_lcache router_lcache;
typedef struct router_lcache_ent router_lcache_ent;

struct router {
    al_cluster_cfg cfg;
    char id[64];
    char client_id[65];    /* stable identity at the bases (router.id or <run_dir>/router.id) */
    uint64_t epoch;        /* grows with every start (<run_dir>/router.id) */
    double t0;
    al_rpc_server *srv;
    char bound[256];
    router_base *bases;    /* [n_bases]: base.instances */
    int n_bases;
    router_affinity aff;   /* prefix -> bases (under mu) */
    router_lcache *lc;     /* kept prefix leases; NULL when router.lease_hold_ms = 0 */
    uint64_t fast_calls;   /* ROUTER_INVOKE calls answered on the fast path (atomic) */
    router_pool pool;      /* invocations, sessions */
    router_pool ctl;       /* registration, status */
    al_tokenizer *tok;     /* optional (text requests) */
    int32_t vocab, max_pos; /* from the model's config.json (0 = unknown) */

    pthread_mutex_t mu;
    pthread_cond_t cv;
    router_worker *workers;   /* registry (removed ones stay until closed) */
    router_intr *intr;        /* [cfg.n_intrinsics] */
    router_session *sessions;
    int n_sessions;
    struct router_store *store; /* the durable session store (session_store.c) */
    char (*key_owner)[65];    /* [cfg.router.api_keys.n] owner of each API key's sessions */
    double last_expiry;       /* al_now() of the last idle-TTL sweep */
    uint64_t n_requests;

    struct router_http *http; /* the HTTP front door (router_http*.c), NULL when router.http is unset */
    char cfg_path[512];
    bool config_error; /* router_start failed on the configuration: exit AL_EXIT_CONFIG */

    pthread_t monitor;
    bool monitor_on;
    volatile bool stopping;
};

al_err router_start(router *r, const char *cfg_path);
/* router_bases.c: the router's identity at the bases: router.id, else the id kept in
 * <run_dir>/router.id (made on first start); the epoch kept there goes up by one per start. */
al_err router_identity_load(router *r);
void router_stop(router *r);

/* Registry (router_registry.c). */
al_err router_registry_register_handlers(router *r);
/* Least-loaded live worker of intrinsic attached to base b (NULL + error when none); skips
 * `exclude`. Takes a reference: release with router_worker_put(ok = call succeeded). */
al_err router_worker_pick(router *r, const router_base *b, const char *intrinsic, bool need_lora,
                          const router_worker *exclude, router_worker **out);
void router_worker_put(router *r, router_worker *w, bool ok);
/* The intrinsic's invocation tokens from its registered workers (copies); AL_EUNAVAILABLE none. */
al_err router_intr_invocation(router *r, const char *intrinsic, int32_t *inv, int *n_inv);
/* Monitor pass: expire workers that missed heartbeats, close removed ones (not on NNG threads). */
void router_registry_sweep(router *r, bool all);
int router_intr_index(const router *r, const char *name);
/* Live workers of an intrinsic (on live bases) and their total capacity. */
void router_intr_workers(router *r, int idx, int *n, uint32_t *capacity, uint32_t *active);

/* Invocation (router_invoke.c). */
al_err router_invoke_register_handlers(router *r);
/* The core flow shared by ROUTER_INVOKE and ROUTER_SESSION_INVOKE. seq_id != 0: lease the
 * session's sequence (toks = its history, n_hist = its length, the invocation is appended). */
typedef struct router_invoke_args {
    router_base *base;  /* the session's base; NULL = route the conversation (router_base_route) */
    const char *intrinsic;
    const int32_t *toks;
    int32_t n;
    uint64_t seq_id;
    alora_InvokeMode mode;
    alora_Sampling sampling;
    double t_accept;
    router_base *routed; /* already routed (router_base_route) for this call; NULL = route here */
} router_invoke_args;
al_err router_invoke_run(router *r, const router_invoke_args *a, alora_InvokeReply *rep, al_pbmem *m);
/* The pool task of ROUTER_INVOKE (t->req an InvokeRequest; releases the admission, completes). */
void router_task_invoke(router_task *t);
/* What the InvokeReply is made of: the worker's reply, the lease (NULL = none), the stamps. */
typedef struct router_reply_in {
    const char *intrinsic;
    int32_t s;                     /* activation start, -1 = none */
    const alora_LeaseReply *lr;    /* NULL: no lease */
    bool kept;                     /* lr came from the lease cache */
    const alora_WorkerInvokeReply *wr;
    const char *worker_id;
    double t_accept, t_start, t_worker; /* al_now(): accepted, started, worker call sent */
} router_reply_in;
/* Fills rep (its arrays copied into m) and observes the call's metrics. */
al_err router_invoke_reply(router *r, const router_reply_in *in, alora_InvokeReply *rep, al_pbmem *m);
/* ROUTER_INVOKE's fast path (router_invoke_fast.c): a stateless aLoRA call on tokens whose prefix
 * has a kept lease is answered without the pool: the worker call is asynchronous and its reply is
 * turned into the answer on the NNG thread that read it. false: not taken (the caller queues the
 * call on the pool); routed = the base it routed to (handed to the pool run), else NULL. When the
 * asynchronous call fails the call goes to the pool, which leases afresh (the kept lease dropped). */
bool router_invoke_fast(router *r, al_rpc_job *job, const alora_InvokeRequest *q, alora_InvokeReply *rep, int intr,
                        router_base **routed);
/* BASE_UNLEASE now, or off the caller's path on the control pool (synchronously when it stops). */
void router_unlease_now(router_base *b, uint64_t lease_id);
void router_unlease_later(router *r, router_base *b, uint64_t lease_id);

/* Lease cache (router_lease_cache.c): a lease on a conversation prefix is kept for
 * router.lease_hold_ms after it is granted, and the next call on the same base with the same prefix
 * tokens uses it instead of a BASE_LEASE round trip. At most a quarter of a base's KV blocks and
 * lease rows are held this way. Entries granted by a base instance that is gone are never used. */
al_err router_lcache_init(router *r);
/* A live kept lease of toks[0, n) on b: *lr, and a use reference in *e (router_lcache_put). */
bool router_lcache_get(router *r, router_base *b, const int32_t *toks, int32_t n, alora_LeaseReply *lr,
                       router_lcache_ent **e);
/* Keeps a lease just granted (at al_now() `granted`), with a use reference in *e; false = not kept
 * (the caller unleases it as usual). */
bool router_lcache_add(router *r, router_base *b, const int32_t *toks, int32_t n, const alora_LeaseReply *lr,
                       double granted, router_lcache_ent **e);
/* The base instance id that granted a kept lease. */
const char *router_lcache_inst(const router_lcache_ent *e);
/* Drops a use reference; bad = the lease failed (it is released once unused). */
void router_lcache_put(router *r, router_lcache_ent *e, bool bad);
/* Releases base b's kept leases (its lease rows or KV are short). */
void router_lcache_drop_base(router *r, router_base *b);
/* Releases expired (all = every unused) kept leases; the monitor calls it. router_lcache_free
 * (router_stop) forgets the rest without RPCs: a base drops a client's leases when it disconnects. */
void router_lcache_sweep(router *r, bool all);
void router_lcache_stats(router *r, uint32_t *held, uint64_t *hits, uint64_t *misses);
void router_lcache_free(router *r);
/* Validates sampling fields (errors name "<prefix>.field"). */
al_err router_check_sampling(const alora_Sampling *s, const char *prefix);
al_err router_check_tokens(const router *r, const char *field, const int32_t *t, size_t n);
/* Effective sampling: max_tokens/top_logprobs overrides (!= 0), else the intrinsic's defaults. */
void router_sampling_defaults(const al_intrinsic_cfg *ic, alora_Sampling *s, uint32_t max_tokens,
                              uint32_t top_logprobs);
/* Queue admission for intrinsic idx (AL_EOVERLOADED + retry-after when full; job may be NULL);
 * release when done. */
al_err router_admit(router *r, int idx, al_rpc_job *job);
void router_release(router *r, int idx);

/* Sessions (router_session.c): durable (session_store.c), owned, rebuilt when their KV is gone. */
al_err router_session_register_handlers(router *r);
void router_sessions_free(router *r);
/* Opens router.session_db and loads the sessions in it (expired ones are dropped). */
al_err router_sessions_load(router *r);
/* Deletes sessions idle longer than router.session_ttl_s (their base KV freed); monitor thread. */
void router_sessions_expire(router *r);
/* The owner of a request authenticated with API key key_index (-1 = no keys configured: "local"). */
const char *router_owner(const router *r, int key_index);
/* A new session of owner holding toks[0, n) on the least loaded base (quotas checked); id gets
 * want_id, or (NULL / "") a 128-bit random id; base_id its base instance. */
al_err router_session_new(router *r, const char *owner, const int32_t *toks, size_t n, const char *want_id,
                          char id[64], char base_id[64]);
/* Session id of owner: its length and (optional, malloc'd) a copy of its tokens. Someone else's
 * session is AL_ENOTFOUND exactly like a missing one. Busy = AL_EOVERLOADED when toks is asked. */
al_err router_session_get(router *r, const char *id, const char *owner, int32_t *n, int32_t **toks);
/* Makes session id resident (rebuilt from its tokens when its sequence is gone): its sequence and base.
 * gone != 0: the caller found that sequence missing on the base (rebuild it if it is still the one). */
al_err router_session_seq(router *r, const char *id, uint64_t gone, uint64_t *seq, router_base **base);
/* Tokens re-prefilled to rebuild session id since the last call (and resets the count). */
int32_t router_session_take_rebuilt(router *r, const char *id);
/* One row of router_session_list. */
typedef struct router_session_info {
    char id[64];
    int32_t n;
    double created, last_used;
    bool resident;
} router_session_info;
/* The sessions of owner (malloc'd array, oldest first). */
al_err router_session_list(router *r, const char *owner, router_session_info **out, int *n);

/* Readiness of the cluster as the router sees it (r->mu held); detail says why not OK. */
alora_Health router_health_locked(router *r, char *detail, size_t cap);

/* HTTP front door (router_http*.c): serves router.http when set. */
al_err router_http_start(router *r);
void router_http_stop(router *r);

/* Status (router_status.c). */
al_err router_status_register_handlers(router *r);

/* Base instances (router_bases.c). */
al_err router_bases_open(router *r);
void router_bases_close(router *r);
/* Health + stats of every base (monitor); updates r->bases[i] under r->mu. */
void router_base_poll(router *r);
/* Answered its last health check (r->mu held). */
bool router_base_live_locked(const router_base *b);
/* The base for a conversation toks[0, n) (the tokens before the activation start), skipping
 * `exclude`: the live base that holds the longest prefix of it (router_affinity), unless that base
 * is loaded well above the least loaded one; ties go to the least loaded, then by rendezvous hash.
 * Counts the request in the base's inflight: call router_base_done when it ends. NULL with
 * AL_EUNAVAILABLE set when no base is live. */
router_base *router_base_route(router *r, const int32_t *toks, int32_t n, const router_base *exclude);
void router_base_done(router *r, router_base *b);
/* The live base with the fewest sessions (a new session's home); NULL + AL_EUNAVAILABLE. */
router_base *router_base_for_session(router *r);
/* A base more loaded than the least loaded one by this many requests (and twice as loaded) loses
 * its cached conversations to it: the load bound of cache-aware routing. */
#define ROUTER_AFFINITY_SLACK 4

/* Bounded C-string copy into a fixed array. */
#define ROUTER_STRCPY(dst, src) snprintf((dst), sizeof(dst), "%s", (src))

double router_ms_since(double t);

#endif
