/* cluster_cfg.h: the one libconfig file every cluster process (up, base, worker, router) loads. */
#ifndef AL_CLUSTER_CFG_H
#define AL_CLUSTER_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/cfg.h"
#include "common/err.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum al_device_kind { AL_DEVICE_AUTO = 0, AL_DEVICE_CPU = 1, AL_DEVICE_CUDA = 2 } al_device_kind;

/* One entry of `intrinsics = ( {...}, ... )`. */
typedef struct al_intrinsic_cfg {
    char *name;         /* required, [A-Za-z0-9_.-], unique */
    char *adapter;      /* required: PEFT adapter directory */
    int replicas;       /* worker processes (default 1) */
    int max_tokens;     /* default tokens generated per invocation (default 8) */
    int capacity;       /* concurrent invocations per worker (default 8) */
    int max_queue;      /* router queue bound for this intrinsic (0 = router.max_queue) */
    int top_logprobs;   /* default alternatives returned per token (default 5) */
    char *parser;       /* output parser ("" / NULL = raw text): "certainty", "answerability", ... */
    char *instruction;  /* optional text the router inserts before the invocation */
    /* The intrinsics-module keys (services/router/front/intrinsics.h; read by al_intrinsics_load_cluster), kept here
     * so that one list carries both: */
    char *invocation_string; /* activation sequence as text */
    char *invocation_tokens; /* activation sequence as ids "1, 2, 3" */
    int documents;           /* al_intr_docs: "auto", "template", "none", "instruction" */
    al_cfg_strs outputs;     /* closed set of outputs */
} al_intrinsic_cfg;

typedef struct al_cluster_cfg {
    char *run_dir;      /* ipc sockets live here (default "/tmp/alora-local") */
    int log_level;      /* al_log_level: "debug", "info", "warn", "error" */
    bool allow_insecure_rpc; /* RPC (base.listen, router.listen) on a non-loopback plain tcp:// address (default false) */
    struct {                 /* mutual TLS for tls+tcp:// RPC URLs (PEM files) */
        char *ca;            /* the CA that signed every cluster certificate (verifies peers) */
        char *cert, *key;    /* this process's certificate and key (every role, unless overridden below) */
        char *base_cert, *base_key, *router_cert, *router_key, *worker_cert, *worker_key; /* per role */
    } tls;
    struct {
        char *model;           /* required: HF model directory */
        char *listen;          /* default ipc://<run_dir>/base.ipc */
        int kv_blocks;         /* shared KV pool, blocks (default 2048) */
        int block_size;        /* tokens per block (default 16) */
        int max_batch_tokens;  /* default 512 */
        int max_seqs;          /* sequences alive at once (default 64) */
        int threads;           /* BLAS threads (default 1) */
        int lease_ttl_ms;      /* default lease TTL (default 30000) */
        int seq_grace_ms;      /* a sequence whose owner disconnected is freed after this unless the owner
                                  (same BASE_HELLO client id) comes back first (default 30000) */
        int max_leases;        /* rows of the block-table arena (default 256) */
        int default_max_tokens; /* SeqGenerate with sampling.max_tokens 0 (default 256) */
        int device;            /* al_device_kind */
        int weights;           /* 0 auto, 1 f32, 2 bf16, 3 int8 (al_cluster_weights_names); the
                                  workers read the base's arena in the same format */
        int instances;         /* base processes (default 1): the router shards conversations across
                                  them; each gets every intrinsic's replicas. Instance k listens on
                                  al_cluster_base_url(k); on CUDA it takes GPU k % n_gpus */
    } base;
    struct {
        int kv_blocks;         /* private suffix KV pool, blocks (default 256) */
        int max_batch_tokens;  /* default 256 */
        int max_batch;         /* invocations that share one forward step (default 8; 1 = no batching:
                                  one invocation at a time); at most the intrinsic's capacity */
        int batch_rows;        /* rows a shared step may stack (default 8, the CPU few-row matmul's
                                  limit: batched results equal unbatched ones bit for bit); an
                                  invocation whose rows do not fit waits for the next step, a longer
                                  one runs alone; 0 = up to max_batch_tokens (al_engine_opts.max_shared_rows) */
        int threads;           /* BLAS threads (default 1) */
        int heartbeat_ms;      /* router heartbeat period (default 1000) */
        int health_ms;         /* base health-check period (default 1000) */
    } worker;
    struct {
        char *listen;          /* default ipc://<run_dir>/router.ipc */
        char *id;              /* the router's stable identity at the bases (BASE_HELLO); default: made once
                                  and kept in <run_dir>/router.id */
        char *http;            /* optional HTTP listen address, e.g. "127.0.0.1:8080" */
        int max_queue;         /* waiting requests per intrinsic before `overloaded` (default 64) */
        int heartbeat_ms;      /* told to workers (default 1000) */
        int worker_ttl_ms;     /* missed heartbeats for this long = deregistered (default 5000) */
        int request_timeout_ms; /* per backend call (default 60000) */
        int lease_hold_ms;     /* keep a conversation prefix's lease this long and reuse it for the next
                                  intrinsic call on it (default 2000; 0 = a lease per call) */
        char *chat_template;   /* "" / NULL = detect from the model */
        char *tokenizer;       /* tokenizer directory (default base.model) */
        char *model_name;      /* the base model's name in the HTTP API (default: basename of base.model) */
        al_cfg_strs api_keys;  /* HTTP bearer keys (none = no authentication) */
        bool allow_insecure;   /* allow no api_keys on a non-loopback router.http (default false) */
        size_t max_body;       /* HTTP request body cap, bytes (default 4 MiB) */
        int http_threads;      /* HTTP worker threads (default 16) */
        char *session_db;      /* SQLite session store (default <run_dir>/sessions.db) */
        int session_ttl_s;     /* a session unused this long is deleted (default 3600, 0 = never) */
        int session_max_per_key; /* sessions one API key may hold (default 256, 0 = no limit) */
        int64_t session_max_tokens_per_key; /* tokens over one key's sessions (default 0 = no limit) */
        int session_kv_percent; /* resident sessions may pin this % of a base's KV blocks; idle ones beyond
                                   it are evicted (tokens kept, rebuilt on next use) (default 50) */
        /* HTTP front door limits (docs/http.md, "Limits") */
        int http_max_connections;   /* open connections (default 2048) */
        int http_header_timeout_ms; /* request line + headers (default 10000) */
        int http_body_timeout_ms;   /* the whole body (default 60000) */
        int http_min_body_rate;     /* bytes/s over the body after its first 2 s (default 1024; 0 = off) */
        int http_idle_timeout_ms;   /* keep-alive connection idle between requests (default 30000) */
        int http_send_timeout_ms;   /* one write of a reply or SSE chunk (default 30000) */
        size_t http_max_header;     /* request line + headers, bytes (default 16 KiB) */
        size_t http_max_url;        /* request target, bytes (default 8 KiB) */
        int max_inflight_per_key;   /* requests in flight per API key (default 0 = no limit) */
        int max_inflight_per_addr;  /* requests in flight per client address (default 0 = no limit) */
    } router;
    struct {
        int grace_ms;          /* SIGTERM -> SIGKILL (default 5000) */
        int backoff_min_ms;    /* restart backoff (default 200) */
        int backoff_max_ms;    /* default 10000 */
    } up;
    union {
        al_cfg_list intrinsics_list; /* what the loader fills */
        struct {
            al_intrinsic_cfg *intrinsics; /* [n_intrinsics] */
            int n_intrinsics;
        };
    };
} al_cluster_cfg;

/* Roles for al_cluster_tls_files / al_cluster_tls_apply. */
typedef enum al_cluster_role { AL_ROLE_CLI = 0, AL_ROLE_BASE, AL_ROLE_ROUTER, AL_ROLE_WORKER } al_cluster_role;

/* True when base.listen or router.listen is a tls+tcp:// URL (every process then needs TLS). */
bool al_cluster_uses_tls(const al_cluster_cfg *cfg);
/* The certificate and key files of a role (its tls.<role>_cert / _key, else tls.cert / tls.key) and
 * the config key names they came from (for errors). NULL when unset. */
void al_cluster_tls_files(const al_cluster_cfg *cfg, al_cluster_role role, const char **cert, const char **key,
                          const char **cert_key, const char **key_key);
/* When the cluster uses tls+tcp://: loads the CA and the role's certificate and key for this
 * process's RPC (al_rpc_tls_setup). No-op otherwise. */
al_err al_cluster_tls_apply(const al_cluster_cfg *cfg, al_cluster_role role);

/* The key table (for documentation / `alora config --help`). */
const al_cfg_key *al_cluster_cfg_keys(int *n_keys);

/* Loads and validates a cluster config file; fills derived defaults (listen URLs from run_dir,
 * router.tokenizer from base.model). Errors name file:line and the key. Free with al_cluster_cfg_free. */
al_err al_cluster_cfg_load(const char *path, al_cluster_cfg *cfg);
al_err al_cluster_cfg_load_string(const char *text, al_cluster_cfg *cfg);
void al_cluster_cfg_free(al_cluster_cfg *cfg);

/* "auto", "f32", "bf16", "int8": base.weights by value. */
extern const char *const al_cluster_weights_names[];

/* Intrinsic by name, NULL if absent. */
const al_intrinsic_cfg *al_cluster_cfg_intrinsic(const al_cluster_cfg *cfg, const char *name);
/* Listen URL of base instance k: base.listen for k = 0; for k > 0 "-<k>" before an ipc URL's
 * ".ipc" (ipc://<run_dir>/base-1.ipc) or the tcp port + k. */
al_err al_cluster_base_url(const al_cluster_cfg *cfg, int k, char *buf, size_t cap);

/* True for ipc:// (and inproc://) URLs and TCP / HTTP URLs whose host is loopback (127.x,
 * localhost, ::1): addresses no other machine can reach. */
bool al_cluster_url_loopback(const char *url);

/* Makes this process's view of the config that of base instance k: base.listen = its URL. */
al_err al_cluster_cfg_use_base(al_cluster_cfg *cfg, int k);
/* The worker of replica K of an intrinsic on base instance b: its id ("<NAME>-<K>", on b > 0
 * "<NAME>-b<b>-<K>") and its URL ipc://<run_dir>/worker-<id>.ipc. Either out may be NULL. */
al_err al_cluster_worker_name(const al_cluster_cfg *cfg, const char *intrinsic, int base, int replica, char *id,
                              size_t id_cap, char *url, size_t url_cap);

#ifdef __cplusplus
}
#endif
#endif
