/* cluster_cfg.c: key table, derived defaults and validation of the cluster config file. */
#include "services/common/cluster_cfg.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/ipc/rpc.h"
#include "common/util.h"

#define C(f) offsetof(al_cluster_cfg, f)
#define I(f) offsetof(al_intrinsic_cfg, f)

static const char *const ali_levels[] = {"debug", "info", "warn", "error", NULL};
static const char *const ali_devices[] = {"auto", "cpu", "cuda", NULL};
const char *const al_cluster_weights_names[] = {"auto", "f32", "bf16", "int8", NULL};
static const char *const ali_docs[] = {"auto", "template", "none", "instruction", NULL}; /* al_intr_docs */

static const al_cfg_key ali_intr_keys[] = {
    {.path = "name", .type = AL_CFG_STRING, .offset = I(name), .required = true, .help = "intrinsic name"},
    {.path = "adapter", .type = AL_CFG_STRING, .offset = I(adapter), .required = true,
     .help = "PEFT adapter directory"},
    {.path = "replicas", .type = AL_CFG_INT, .offset = I(replicas), .min = 1, .max = 64, .def_i = 1,
     .help = "worker processes"},
    {.path = "max_tokens", .type = AL_CFG_INT, .offset = I(max_tokens), .min = 1, .max = 65536, .def_i = 8,
     .help = "default tokens generated per invocation"},
    {.path = "capacity", .type = AL_CFG_INT, .offset = I(capacity), .min = 1, .max = 4096, .def_i = 8,
     .help = "concurrent invocations per worker"},
    {.path = "max_queue", .type = AL_CFG_INT, .offset = I(max_queue), .min = 0, .max = 1000000, .def_i = 0,
     .help = "router queue bound (0 = router.max_queue)"},
    {.path = "top_logprobs", .type = AL_CFG_INT, .offset = I(top_logprobs), .min = 0, .max = 20, .def_i = 5,
     .help = "default alternatives per generated token"},
    {.path = "parser", .type = AL_CFG_STRING, .offset = I(parser), .help = "output parser"},
    {.path = "instruction", .type = AL_CFG_STRING, .offset = I(instruction),
     .help = "text inserted before the invocation"},
    {.path = "invocation_string", .type = AL_CFG_STRING, .offset = I(invocation_string),
     .help = "activation sequence as text"},
    {.path = "invocation_tokens", .type = AL_CFG_STRING, .offset = I(invocation_tokens),
     .help = "activation sequence as token ids \"1, 2, 3\""},
    {.path = "documents", .type = AL_CFG_ENUM, .offset = I(documents), .choices = ali_docs, .def_i = 0,
     .help = "where documents go: template, none, instruction"},
    {.path = "outputs", .type = AL_CFG_STRINGS, .offset = I(outputs), .min = 1, .max = 256,
     .help = "closed set of allowed outputs"},
};

static const al_cfg_key ali_keys[] = {
    {.path = "run_dir", .type = AL_CFG_STRING, .offset = C(run_dir), .def_s = "/tmp/alora-local",
     .help = "directory of the ipc sockets"},
    {.path = "allow_insecure_rpc", .type = AL_CFG_BOOL, .offset = C(allow_insecure_rpc), .def_i = 0,
     .help = "let base.listen / router.listen use a non-loopback plain tcp:// address (no authentication; "
             "use tls+tcp:// with the tls keys instead)"},
    {.path = "tls.ca", .type = AL_CFG_STRING, .offset = C(tls.ca),
     .help = "PEM CA certificate that signed the cluster's certificates (tls+tcp:// RPC: both sides verify)"},
    {.path = "tls.cert", .type = AL_CFG_STRING, .offset = C(tls.cert),
     .help = "PEM certificate of every process (unless tls.<role>_cert is set); `alora certs` makes them"},
    {.path = "tls.key", .type = AL_CFG_STRING, .offset = C(tls.key), .help = "PEM private key of tls.cert"},
    {.path = "tls.base_cert", .type = AL_CFG_STRING, .offset = C(tls.base_cert), .help = "the base's certificate"},
    {.path = "tls.base_key", .type = AL_CFG_STRING, .offset = C(tls.base_key), .help = "the base's key"},
    {.path = "tls.router_cert", .type = AL_CFG_STRING, .offset = C(tls.router_cert),
     .help = "the router's certificate"},
    {.path = "tls.router_key", .type = AL_CFG_STRING, .offset = C(tls.router_key), .help = "the router's key"},
    {.path = "tls.worker_cert", .type = AL_CFG_STRING, .offset = C(tls.worker_cert),
     .help = "the workers' certificate"},
    {.path = "tls.worker_key", .type = AL_CFG_STRING, .offset = C(tls.worker_key), .help = "the workers' key"},
    {.path = "log_level", .type = AL_CFG_ENUM, .offset = C(log_level), .choices = ali_levels, .def_i = 1},
    /* base */
    {.path = "base.model", .type = AL_CFG_STRING, .offset = C(base.model), .required = true,
     .help = "HF model directory"},
    {.path = "base.listen", .type = AL_CFG_STRING, .offset = C(base.listen),
     .help = "default ipc://<run_dir>/base.ipc"},
    {.path = "base.kv_blocks", .type = AL_CFG_INT, .offset = C(base.kv_blocks), .min = 1, .max = 1 << 24,
     .def_i = 2048},
    {.path = "base.block_size", .type = AL_CFG_INT, .offset = C(base.block_size), .min = 1, .max = 1024,
     .def_i = 16},
    {.path = "base.max_batch_tokens", .type = AL_CFG_INT, .offset = C(base.max_batch_tokens), .min = 1,
     .max = 65536, .def_i = 512},
    {.path = "base.max_seqs", .type = AL_CFG_INT, .offset = C(base.max_seqs), .min = 1, .max = 4096, .def_i = 64},
    {.path = "base.threads", .type = AL_CFG_INT, .offset = C(base.threads), .min = 0, .max = 1024, .def_i = 1},
    {.path = "base.lease_ttl_ms", .type = AL_CFG_INT, .offset = C(base.lease_ttl_ms), .min = 1,
     .max = 86400000, .def_i = 30000},
    {.path = "base.seq_grace_ms", .type = AL_CFG_INT, .offset = C(base.seq_grace_ms), .min = 0,
     .max = 86400000, .def_i = 30000,
     .help = "free a disconnected client's sequences after this unless it says hello again (same id)"},
    {.path = "base.max_leases", .type = AL_CFG_INT, .offset = C(base.max_leases), .min = 1, .max = 1 << 20,
     .def_i = 256},
    {.path = "base.default_max_tokens", .type = AL_CFG_INT, .offset = C(base.default_max_tokens), .min = 1,
     .max = 1 << 20, .def_i = 256},
    {.path = "base.device", .type = AL_CFG_ENUM, .offset = C(base.device), .choices = ali_devices, .def_i = 0,
     .help = "auto|cpu|cuda"},
    {.path = "base.weights", .type = AL_CFG_ENUM, .offset = C(base.weights), .choices = al_cluster_weights_names,
     .def_i = 0, .help = "auto|f32|bf16|int8: matrix weights in memory (auto: bf16 for a bf16 checkpoint; int8: quantized at load, CPU only)"},
    {.path = "base.instances", .type = AL_CFG_INT, .offset = C(base.instances), .min = 1, .max = 64, .def_i = 1,
     .help = "base processes the router shards conversations across (each with every intrinsic's replicas)"},
    /* worker */
    {.path = "worker.kv_blocks", .type = AL_CFG_INT, .offset = C(worker.kv_blocks), .min = 1, .max = 1 << 24,
     .def_i = 256},
    {.path = "worker.max_batch_tokens", .type = AL_CFG_INT, .offset = C(worker.max_batch_tokens), .min = 1,
     .max = 65536, .def_i = 256},
    {.path = "worker.max_batch", .type = AL_CFG_INT, .offset = C(worker.max_batch), .min = 1, .max = 4096,
     .def_i = 8},
    {.path = "worker.batch_rows", .type = AL_CFG_INT, .offset = C(worker.batch_rows), .min = 0, .max = 65536,
     .def_i = 8},
    {.path = "worker.threads", .type = AL_CFG_INT, .offset = C(worker.threads), .min = 0, .max = 1024, .def_i = 1},
    {.path = "worker.heartbeat_ms", .type = AL_CFG_INT, .offset = C(worker.heartbeat_ms), .min = 10,
     .max = 600000, .def_i = 1000},
    {.path = "worker.health_ms", .type = AL_CFG_INT, .offset = C(worker.health_ms), .min = 10, .max = 600000,
     .def_i = 1000},
    /* router */
    {.path = "router.listen", .type = AL_CFG_STRING, .offset = C(router.listen),
     .help = "default ipc://<run_dir>/router.ipc"},
    {.path = "router.id", .type = AL_CFG_STRING, .offset = C(router.id),
     .help = "stable router identity at the bases (default: made once, kept in <run_dir>/router.id)"},
    {.path = "router.http", .type = AL_CFG_STRING, .offset = C(router.http), .help = "HTTP listen address"},
    {.path = "router.max_queue", .type = AL_CFG_INT, .offset = C(router.max_queue), .min = 0, .max = 1000000,
     .def_i = 64},
    {.path = "router.heartbeat_ms", .type = AL_CFG_INT, .offset = C(router.heartbeat_ms), .min = 10,
     .max = 600000, .def_i = 1000},
    {.path = "router.worker_ttl_ms", .type = AL_CFG_INT, .offset = C(router.worker_ttl_ms), .min = 10,
     .max = 3600000, .def_i = 5000},
    {.path = "router.lease_hold_ms", .type = AL_CFG_INT, .offset = C(router.lease_hold_ms), .min = 0,
     .max = 3600000, .def_i = 2000,
     .help = "keep a prefix lease this long for the next intrinsic call on the same prefix (0 = one lease per call)"},
    {.path = "router.request_timeout_ms", .type = AL_CFG_INT, .offset = C(router.request_timeout_ms), .min = 1,
     .max = 86400000, .def_i = 60000},
    {.path = "router.chat_template", .type = AL_CFG_STRING, .offset = C(router.chat_template)},
    {.path = "router.tokenizer", .type = AL_CFG_STRING, .offset = C(router.tokenizer),
     .help = "tokenizer directory (default base.model)"},
    {.path = "router.model_name", .type = AL_CFG_STRING, .offset = C(router.model_name),
     .help = "the base model's name in the HTTP API (default: basename of base.model)"},
    {.path = "router.api_keys", .type = AL_CFG_STRINGS, .offset = C(router.api_keys), .max = 1024,
     .help = "HTTP API keys (Authorization: Bearer KEY); none = no authentication"},
    {.path = "router.allow_insecure", .type = AL_CFG_BOOL, .offset = C(router.allow_insecure), .def_i = 0,
     .help = "serve HTTP without api_keys on a non-loopback address"},
    {.path = "router.max_body", .type = AL_CFG_SIZE, .offset = C(router.max_body), .min = 1024,
     .max = (int64_t)1 << 30, .def_i = 4 << 20, .help = "HTTP request body cap (default 4MiB)"},
    {.path = "router.http_threads", .type = AL_CFG_INT, .offset = C(router.http_threads), .min = 1, .max = 1024,
     .def_i = 16, .help = "HTTP worker threads"},
    {.path = "router.session_db", .type = AL_CFG_STRING, .offset = C(router.session_db),
     .help = "SQLite session store (default <run_dir>/sessions.db)"},
    {.path = "router.session_ttl_s", .type = AL_CFG_INT, .offset = C(router.session_ttl_s), .min = 0,
     .max = 365 * 86400, .def_i = 3600, .help = "idle seconds before a session is deleted (0 = never)"},
    {.path = "router.session_max_per_key", .type = AL_CFG_INT, .offset = C(router.session_max_per_key), .min = 0,
     .max = 1000000, .def_i = 256, .help = "sessions one API key may hold (0 = no limit)"},
    {.path = "router.session_max_tokens_per_key", .type = AL_CFG_INT64,
     .offset = C(router.session_max_tokens_per_key), .min = 0, .max = (int64_t)1 << 40, .def_i = 0,
     .help = "tokens over one API key's sessions (0 = no limit)"},
    {.path = "router.session_kv_percent", .type = AL_CFG_INT, .offset = C(router.session_kv_percent), .min = 1,
     .max = 100, .def_i = 50, .help = "% of a base's KV blocks sessions may pin; idle ones beyond are evicted"},
    {.path = "router.http_max_connections", .type = AL_CFG_INT, .offset = C(router.http_max_connections), .min = 1,
     .max = 1000000, .def_i = 2048,
     .help = "open HTTP connections; beyond it the longest-idle one is closed, else 503"},
    {.path = "router.http_header_timeout_ms", .type = AL_CFG_INT, .offset = C(router.http_header_timeout_ms),
     .min = 100, .max = 3600000, .def_i = 10000, .help = "request line + headers must arrive within this (408)"},
    {.path = "router.http_body_timeout_ms", .type = AL_CFG_INT, .offset = C(router.http_body_timeout_ms), .min = 100,
     .max = 3600000, .def_i = 60000, .help = "a request body must arrive within this (408)"},
    {.path = "router.http_min_body_rate", .type = AL_CFG_INT, .offset = C(router.http_min_body_rate), .min = 0,
     .max = 1 << 30, .def_i = 1024, .help = "bytes/s a body must average after its first 2 s (408; 0 = off)"},
    {.path = "router.http_idle_timeout_ms", .type = AL_CFG_INT, .offset = C(router.http_idle_timeout_ms), .min = 100,
     .max = 86400000, .def_i = 30000, .help = "keep-alive: close a connection idle this long between requests"},
    {.path = "router.http_send_timeout_ms", .type = AL_CFG_INT, .offset = C(router.http_send_timeout_ms), .min = 100,
     .max = 3600000, .def_i = 30000, .help = "one write of a reply or SSE chunk; then the connection is dropped"},
    {.path = "router.http_max_header", .type = AL_CFG_SIZE, .offset = C(router.http_max_header), .min = 1024,
     .max = 1 << 20, .def_i = 16 << 10, .help = "request line + headers cap (431)"},
    {.path = "router.http_max_url", .type = AL_CFG_SIZE, .offset = C(router.http_max_url), .min = 256,
     .max = 1 << 20, .def_i = 8 << 10, .help = "request URL cap (414); below router.http_max_header"},
    {.path = "router.max_inflight_per_key", .type = AL_CFG_INT, .offset = C(router.max_inflight_per_key), .min = 0,
     .max = 1000000, .def_i = 0, .help = "requests in flight per API key, beyond: 429 (0 = no limit)"},
    {.path = "router.max_inflight_per_addr", .type = AL_CFG_INT, .offset = C(router.max_inflight_per_addr), .min = 0,
     .max = 1000000, .def_i = 0, .help = "requests in flight per client address, beyond: 429 (0 = no limit)"},
    /* up */
    {.path = "up.grace_ms", .type = AL_CFG_INT, .offset = C(up.grace_ms), .min = 0, .max = 600000, .def_i = 5000},
    {.path = "up.backoff_min_ms", .type = AL_CFG_INT, .offset = C(up.backoff_min_ms), .min = 1, .max = 600000,
     .def_i = 200},
    {.path = "up.backoff_max_ms", .type = AL_CFG_INT, .offset = C(up.backoff_max_ms), .min = 1, .max = 3600000,
     .def_i = 10000},
    /* intrinsics */
    {.path = "intrinsics", .type = AL_CFG_GROUPS, .offset = C(intrinsics_list), .sub = ali_intr_keys,
     .n_sub = (int)AL_ARRAY_LEN(ali_intr_keys), .elem_size = sizeof(al_intrinsic_cfg), .max = 64},
};
#define ALI_NKEYS ((int)AL_ARRAY_LEN(ali_keys))

const al_cfg_key *al_cluster_cfg_keys(int *n_keys)
{
    if (n_keys)
        *n_keys = ALI_NKEYS;
    return ali_keys;
}

static int ali_name_ok(const char *s)
{
    if (!s || !*s || strlen(s) > 48)
        return 0;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_' ||
              *p == '-' || *p == '.'))
            return 0;
    return 1;
}

/* The host of "scheme://HOST[:PORT][/...]" ("[v6]" keeps its brackets) into out; "" for ipc:// and
 * inproc:// (no network), NULL when the URL has no "://". */
static const char *ali_url_host(const char *url, char *out, size_t n)
{
    const char *p = strstr(url, "://");
    if (!p)
        return NULL;
    if (!strncmp(url, "ipc://", 6) || !strncmp(url, "inproc://", 9) || !strncmp(url, "abstract://", 11)) {
        out[0] = 0;
        return out;
    }
    p += 3;
    size_t k = p[0] == '[' ? strcspn(p, "]") + (p[strcspn(p, "]")] == ']') : strcspn(p, ":/");
    if (k >= n)
        k = n - 1;
    memcpy(out, p, k);
    out[k] = 0;
    return out;
}

bool al_cluster_url_loopback(const char *url)
{
    char h[256];
    if (!ali_url_host(url, h, sizeof h))
        return false;
    return !h[0] || !strcmp(h, "localhost") || !strncmp(h, "127.", 4) || !strcmp(h, "::1") || !strcmp(h, "[::1]");
}

/* Who can reach the cluster without a key: HTTP off loopback needs router.api_keys (or
 * router.allow_insecure); RPC off loopback has no authentication at all (allow_insecure_rpc). */
static al_err ali_check_exposure(const al_cluster_cfg *c, const char *what)
{
    const char *http = c->router.http;
    if (http && *http) {
        if (strncmp(http, "http://", 7) != 0 || !http[7])
            return ali_errf(AL_EFORMAT, "%s: router.http: '%s' is not an http://HOST:PORT URL", what, http);
        if (!c->router.api_keys.n && !al_cluster_url_loopback(http) && !c->router.allow_insecure)
            return ali_errf(AL_EFORMAT,
                            "%s: router.http: %s is not a loopback address and router.api_keys is empty; set "
                            "api_keys (or router.allow_insecure = true to serve without authentication)",
                            what, http);
    }
    const char *const names[] = {"base.listen", "router.listen"};
    const char *const urls[] = {c->base.listen, c->router.listen};
    for (int i = 0; i < 2; i++) {
        if (!strncmp(urls[i], "tcp+tls://", 10))
            return ali_errf(AL_EFORMAT, "%s: %s: '%s': the scheme is tls+tcp://", what, names[i], urls[i]);
        if (!c->allow_insecure_rpc && !al_rpc_url_tls(urls[i]) && !al_cluster_url_loopback(urls[i]))
            return ali_errf(AL_EFORMAT,
                            "%s: %s: %s is plain tcp off loopback: the RPC would be open to the network and "
                            "anyone who reaches it bypasses router.api_keys. Use tls+tcp:// with tls.ca, tls.cert "
                            "and tls.key (`alora certs` makes them), ipc:// or 127.0.0.1, or set "
                            "allow_insecure_rpc = true on a private network",
                            what, names[i], urls[i]);
    }
    if (!al_cluster_uses_tls(c))
        return AL_OK;
    /* tls+tcp://: every process dials or listens with TLS, so every role needs its files */
    if (!c->tls.ca || !*c->tls.ca)
        return ali_errf(AL_EFORMAT, "%s: %s uses tls+tcp:// but tls.ca is not set (the CA certificate, PEM)", what,
                        al_rpc_url_tls(c->base.listen) ? "base.listen" : "router.listen");
    if (access(c->tls.ca, R_OK) != 0)
        return ali_errf(AL_EFORMAT, "%s: tls.ca: %s: %s", what, c->tls.ca, strerror(errno));
    for (int r = AL_ROLE_CLI; r <= AL_ROLE_WORKER; r++) {
        const char *cert, *key, *ck, *kk;
        al_cluster_tls_files(c, (al_cluster_role)r, &cert, &key, &ck, &kk);
        if (r == AL_ROLE_CLI && !cert && !key)
            continue; /* `alora up` itself only needs one when it dials (status, readiness) */
        if (!cert || !*cert)
            return ali_errf(AL_EFORMAT, "%s: tls+tcp:// needs %s (a PEM certificate signed by tls.ca)", what, ck);
        if (!key || !*key)
            return ali_errf(AL_EFORMAT, "%s: tls+tcp:// needs %s (the PEM key of %s)", what, kk, ck);
        if (access(cert, R_OK) != 0)
            return ali_errf(AL_EFORMAT, "%s: %s: %s: %s", what, ck, cert, strerror(errno));
        if (access(key, R_OK) != 0)
            return ali_errf(AL_EFORMAT, "%s: %s: %s: %s", what, kk, key, strerror(errno));
    }
    return AL_OK;
}

bool al_cluster_uses_tls(const al_cluster_cfg *c)
{
    return al_rpc_url_tls(c->base.listen) || al_rpc_url_tls(c->router.listen);
}

void al_cluster_tls_files(const al_cluster_cfg *c, al_cluster_role role, const char **cert, const char **key,
                          const char **cert_key, const char **key_key)
{
    static const char *const ck[] = {"tls.cert", "tls.base_cert", "tls.router_cert", "tls.worker_cert"};
    static const char *const kk[] = {"tls.key", "tls.base_key", "tls.router_key", "tls.worker_key"};
    char *const rc[] = {NULL, c->tls.base_cert, c->tls.router_cert, c->tls.worker_cert};
    char *const rk[] = {NULL, c->tls.base_key, c->tls.router_key, c->tls.worker_key};
    int r = role >= AL_ROLE_CLI && role <= AL_ROLE_WORKER ? (int)role : 0;
    bool own = rc[r] || rk[r];
    *cert = own ? rc[r] : c->tls.cert;
    *key = own ? rk[r] : c->tls.key;
    *cert_key = own ? ck[r] : ck[0];
    *key_key = own ? kk[r] : kk[0];
}

al_err al_cluster_tls_apply(const al_cluster_cfg *c, al_cluster_role role)
{
    if (!al_cluster_uses_tls(c))
        return AL_OK;
    const char *cert, *key, *ck, *kk;
    al_cluster_tls_files(c, role, &cert, &key, &ck, &kk);
    if (!cert || !key)
        return ali_errf(AL_EFORMAT, "tls+tcp:// needs %s and %s", ck, kk);
    al_err e = al_rpc_tls_setup(c->tls.ca, cert, key);
    return e == AL_OK ? AL_OK : ali_errctx(e, "%s / %s", ck, kk);
}

static al_err ali_default_url(char **dst, const char *run_dir, const char *file)
{
    if (*dst)
        return AL_OK;
    size_t n = strlen(run_dir) + strlen(file) + 16;
    *dst = malloc(n);
    if (!*dst)
        return ali_errf(AL_ENOMEM, "config: out of memory");
    snprintf(*dst, n, "ipc://%s/%s", run_dir, file);
    return AL_OK;
}

static al_err ali_finish(al_cluster_cfg *c, const char *what)
{
    if (!c->run_dir || !*c->run_dir)
        return ali_errf(AL_EFORMAT, "%s: run_dir must not be empty", what);
    if (strlen(c->run_dir) > 200)
        return ali_errf(AL_ERANGE, "%s: run_dir is longer than 200 characters", what);
    AL_TRY(ali_default_url(&c->base.listen, c->run_dir, "base.ipc"));
    AL_TRY(ali_default_url(&c->router.listen, c->run_dir, "router.ipc"));
    if (!c->router.session_db) {
        size_t n = strlen(c->run_dir) + 16;
        if (!(c->router.session_db = malloc(n)))
            return ali_errf(AL_ENOMEM, "config: out of memory");
        snprintf(c->router.session_db, n, "%s/sessions.db", c->run_dir);
    }
    if (!c->router.session_db[0])
        return ali_errf(AL_EFORMAT, "%s: router.session_db must not be empty", what);
    if (!c->router.tokenizer) {
        c->router.tokenizer = strdup(c->base.model);
        if (!c->router.tokenizer)
            return ali_errf(AL_ENOMEM, "config: out of memory");
    }
    if (!c->router.model_name) {
        const char *m = c->base.model;
        size_t n = strlen(m);
        while (n > 1 && m[n - 1] == '/')
            n--;
        size_t b = n;
        while (b > 0 && m[b - 1] != '/')
            b--;
        c->router.model_name = strndup(m + b, n - b);
        if (!c->router.model_name)
            return ali_errf(AL_ENOMEM, "config: out of memory");
    }
    if (!c->router.model_name[0])
        return ali_errf(AL_EFORMAT, "%s: router.model_name must not be empty", what);
    if (c->router.http_max_url >= c->router.http_max_header)
        return ali_errf(AL_EFORMAT, "%s: router.http_max_url (%zu) must be below router.http_max_header (%zu)", what,
                        c->router.http_max_url, c->router.http_max_header);
    for (int i = 0; i < c->router.api_keys.n; i++)
        if (strlen(c->router.api_keys.v[i]) < 8)
            return ali_errf(AL_EFORMAT, "%s: router.api_keys[%d] is shorter than 8 characters", what, i);
    for (int k = 1; k < c->base.instances; k++) { /* every instance needs a distinct address */
        char u[320];
        al_err e = al_cluster_base_url(c, k, u, sizeof u);
        if (e != AL_OK)
            return ali_errctx(e, "%s", what);
    }
    AL_TRY(ali_check_exposure(c, what));
    if (c->up.backoff_max_ms < c->up.backoff_min_ms)
        return ali_errf(AL_ERANGE, "%s: up.backoff_max_ms %d < up.backoff_min_ms %d", what, c->up.backoff_max_ms,
                        c->up.backoff_min_ms);
    for (int i = 0; i < c->n_intrinsics; i++) {
        const al_intrinsic_cfg *a = &c->intrinsics[i];
        if (!ali_name_ok(a->name))
            return ali_errf(AL_EFORMAT, "%s: intrinsics[%d].name '%s' must be 1-48 characters of [A-Za-z0-9_.-]",
                            what, i, a->name ? a->name : "");
        for (int j = 0; j < i; j++)
            if (!strcmp(c->intrinsics[j].name, a->name))
                return ali_errf(AL_EFORMAT, "%s: intrinsics[%d].name '%s' is also intrinsics[%d].name", what, i,
                                a->name, j);
    }
    return AL_OK;
}

al_err al_cluster_cfg_load(const char *path, al_cluster_cfg *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    al_err e = al_cfg_load(path, ali_keys, ALI_NKEYS, cfg);
    if (e == AL_OK)
        e = ali_finish(cfg, path);
    if (e != AL_OK)
        al_cluster_cfg_free(cfg);
    return e;
}

al_err al_cluster_cfg_load_string(const char *text, al_cluster_cfg *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    al_err e = al_cfg_load_string(text, NULL, ali_keys, ALI_NKEYS, cfg);
    if (e == AL_OK)
        e = ali_finish(cfg, "<string>");
    if (e != AL_OK)
        al_cluster_cfg_free(cfg);
    return e;
}

void al_cluster_cfg_free(al_cluster_cfg *cfg)
{
    if (!cfg)
        return;
    al_cfg_free(ali_keys, ALI_NKEYS, cfg);
    memset(cfg, 0, sizeof *cfg);
}

const al_intrinsic_cfg *al_cluster_cfg_intrinsic(const al_cluster_cfg *cfg, const char *name)
{
    for (int i = 0; name && i < cfg->n_intrinsics; i++)
        if (!strcmp(cfg->intrinsics[i].name, name))
            return &cfg->intrinsics[i];
    return NULL;
}

al_err al_cluster_base_url(const al_cluster_cfg *cfg, int k, char *buf, size_t cap)
{
    const char *u = cfg->base.listen;
    size_t n = strlen(u);
    int w = -1;
    if (k < 0 || k >= (cfg->base.instances > 0 ? cfg->base.instances : 1))
        return ali_errf(AL_ERANGE, "base instance %d: base.instances is %d", k, cfg->base.instances);
    if (k == 0) {
        w = snprintf(buf, cap, "%s", u);
    } else if (!strncmp(u, "ipc://", 6) && n > 10 && !strcmp(u + n - 4, ".ipc")) {
        w = snprintf(buf, cap, "%.*s-%d.ipc", (int)(n - 4), u, k);
    } else if (!strncmp(u, "tcp://", 6) || !strncmp(u, "tls+tcp://", 10)) {
        const char *colon = strrchr(u, ':');
        char *end = NULL;
        long port = colon ? strtol(colon + 1, &end, 10) : -1;
        if (!colon || colon < strstr(u, "://") + 3 || !end || *end || port <= 0)
            return ali_errf(AL_EFORMAT, "base.listen %s: base.instances > 1 needs an explicit tcp port", u);
        if (port + k > 65535)
            return ali_errf(AL_ERANGE, "base.listen %s: port %ld + instance %d is above 65535", u, port, k);
        w = snprintf(buf, cap, "%.*s:%ld", (int)(colon - u), u, port + k);
    } else {
        return ali_errf(AL_EFORMAT, "base.listen %s: base.instances > 1 needs an ipc://...ipc, tcp://host:port or tls+tcp://host:port URL", u);
    }
    if (w < 0 || (size_t)w >= cap)
        return ali_errf(AL_ERANGE, "base instance %d: url too long", k);
    return AL_OK;
}

al_err al_cluster_cfg_use_base(al_cluster_cfg *cfg, int k)
{
    char u[320];
    AL_TRY(al_cluster_base_url(cfg, k, u, sizeof u));
    char *d = strdup(u);
    if (!d)
        return ali_errf(AL_ENOMEM, "config: out of memory");
    free(cfg->base.listen);
    cfg->base.listen = d;
    return AL_OK;
}

al_err al_cluster_worker_name(const al_cluster_cfg *cfg, const char *intrinsic, int base, int replica, char *id,
                              size_t id_cap, char *url, size_t url_cap)
{
    char tmp[160];
    int n = base > 0 ? snprintf(tmp, sizeof tmp, "%s-b%d-%d", intrinsic, base, replica)
                     : snprintf(tmp, sizeof tmp, "%s-%d", intrinsic, replica);
    if (n < 0 || (size_t)n >= sizeof tmp || (id && (size_t)n >= id_cap))
        return ali_errf(AL_ERANGE, "worker id for '%s' replica %d is too long", intrinsic, replica);
    if (id)
        snprintf(id, id_cap, "%s", tmp);
    if (url) {
        n = snprintf(url, url_cap, "ipc://%s/worker-%s.ipc", cfg->run_dir, tmp);
        if (n < 0 || (size_t)n >= url_cap)
            return ali_errf(AL_ERANGE, "worker url for '%s' replica %d is too long", intrinsic, replica);
    }
    return AL_OK;
}
