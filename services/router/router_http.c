/* router_http.c: the router's HTTP front door: auth, in-flight limits, routing, replies, SSE (over
 * http_server.c), /healthz, /metrics, /v1/models, /v1/intrinsics. */
#include "services/router/router_http.h"

#include <ctype.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/util.h"
#include "services/router/front/metrics.h"

/* ---- replies ------------------------------------------------------------------------------------ */

static void rh_count(const rh_call *c, int status)
{
    const al_alora_metrics *am = al_metrics_alora();
    if (!am)
        return;
    char code[8];
    snprintf(code, sizeof code, "%d", status);
    const char *lab[2] = {c->endpoint ? c->endpoint : "other", code};
    al_metric_inc(am->requests, lab);
}

void rh_count_error(al_err e)
{
    const al_alora_metrics *am = al_metrics_alora();
    if (!am)
        return;
    const char *lab[1] = {al_oai_error_code(e)};
    al_metric_inc(am->errors, lab);
}


/* The reason phrase of a status we send. */
static const char *rh_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return status >= 500 ? "Server Error" : status >= 400 ? "Client Error" : "OK";
    }
}
static void rh_reply_ex(rh_call *c, int status, const char *ctype, const char *body, size_t len, int retry_after,
                        bool close)
{
    if (c->replied)
        return;
    c->replied = true;
    rh_count(c, status);
    char extra[96] = "";
    int n = 0;
    if (retry_after > 0)
        n += snprintf(extra + n, sizeof extra - (size_t)n, "Retry-After: %d\r\n", retry_after);
    if (status == 401)
        snprintf(extra + n, sizeof extra - (size_t)n, "WWW-Authenticate: Bearer\r\n");
    if (close)
        c->close = true;
    if (hs_respond(c->conn, status, rh_reason(status), ctype, extra, body, len, close) != AL_OK)
        c->broken = true;
}

void rh_reply(rh_call *c, int status, const char *ctype, const char *body, size_t len)
{
    rh_reply_ex(c, status, ctype, body, len, 0, false);
}

void rh_reply_json(rh_call *c, int status, json_t *j)
{
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!s) {
        rh_error(c, AL_ENOMEM, "router: out of memory");
        return;
    }
    rh_reply(c, status, "application/json", s, strlen(s));
    free(s);
}

const char *rh_errmsg(void)
{
    const char *m = al_errmsg();
    const char *p = m;
    while (*p && (isupper((unsigned char)*p) || *p == '_'))
        p++;
    if (p > m + 3 && p[0] == ':' && p[1] == ' ')
        return p + 2;
    return m;
}

static void rh_error_x(rh_call *c, al_err e, const char *msg, int retry_after, bool close, bool too_large)
{
    if (e == AL_ERANGE && !too_large)
        e = AL_EINVAL; /* a value out of range is a bad argument; 413 is for the body size */
    if ((e == AL_EOVERLOADED || e == AL_ECAPACITY) && retry_after <= 0)
        retry_after = 1;
    rh_count_error(e);
    char *body = NULL;
    size_t len = 0;
    if (al_oai_error_body(e, msg ? msg : "", &body, &len) != AL_OK) {
        rh_reply_ex(c, 500, "application/json", "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}",
                    55, 0, true);
        return;
    }
    rh_reply_ex(c, al_oai_http_status(e), "application/json", body, len, retry_after, close);
    free(body);
}

/* An error outside al_err's mapping (401, 405). */
static void rh_error_status(rh_call *c, int status, const char *code, const char *type, const char *msg, bool close)
{
    const al_alora_metrics *am = al_metrics_alora();
    if (am) {
        const char *lab[1] = {code};
        al_metric_inc(am->errors, lab);
    }
    json_t *j = json_pack("{s:{s:s,s:s,s:s}}", "error", "code", code, "message", msg, "type", type);
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    rh_reply_ex(c, status, "application/json", s ? s : "{}", s ? strlen(s) : 2, 0, close);
    free(s);
}

void rh_error(rh_call *c, al_err e, const char *msg) { rh_error_x(c, e, msg, 0, false, false); }
void rh_error_ra(rh_call *c, al_err e, const char *msg, int ra) { rh_error_x(c, e, msg, ra, false, false); }

/* ---- SSE: a chunked reply on the request's connection, which closes after it ------------------ */

static al_err rh_write(rh_call *c, const void *p, size_t n)
{
    if (c->broken)
        return ali_errf(AL_ECLOSED, "client went away");
    if (hs_write(c->conn, p, n) != AL_OK) {
        c->broken = true;
        return ali_errf(AL_ECLOSED, "client went away");
    }
    return AL_OK;
}

al_err rh_sse_begin(rh_call *c)
{
    c->streaming = true;
    c->replied = true;
    c->close = true;
    rh_count(c, 200);
    static const char hdr[] = "HTTP/1.1 200 OK\r\n"
                              "Content-Type: text/event-stream\r\n"
                              "Cache-Control: no-cache\r\n"
                              "Transfer-Encoding: chunked\r\n"
                              "Connection: close\r\n\r\n";
    return rh_write(c, hdr, sizeof hdr - 1);
}

al_err rh_sse_send(rh_call *c, const char *data, size_t len)
{
    if (!len)
        return AL_OK;
    char head[24];
    int hn = snprintf(head, sizeof head, "%zx\r\n", len);
    AL_TRY(rh_write(c, head, (size_t)hn));
    AL_TRY(rh_write(c, data, len));
    return rh_write(c, "\r\n", 2);
}

void rh_sse_end(rh_call *c)
{
    if (!c->streaming)
        return;
    rh_write(c, "0\r\n\r\n", 5);
    c->streaming = false;
}

/* ---- helpers ------------------------------------------------------------------------------------ */

json_t *rh_body_json(rh_call *c, al_err *e)
{
    json_error_t je;
    json_t *j = c->len ? json_loadb(c->body, c->len, 0, &je) : json_object();
    if (!j) {
        *e = ali_errf(AL_EINVAL, "body: invalid JSON at line %d column %d: %s", je.line, je.column, je.text);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        *e = ali_errf(AL_EINVAL, "body: expected a JSON object");
        return NULL;
    }
    *e = AL_OK;
    return j;
}

bool rh_is_base(const router_http *h, const char *model)
{
    const router *r = h->r;
    return !strcmp(model, r->cfg.router.model_name) || !strcmp(model, r->cfg.base.model);
}

const al_intrinsic *rh_def(const router_http *h, const char *name)
{
    return h->defs_ok ? al_intrinsics_find(&h->defs, name) : NULL;
}

json_t *rh_timings_json(const alora_Timings *t)
{
    return json_pack("{s:f,s:f,s:f,s:f,s:f,s:i,s:i}", "queue_ms", t->queue_ms, "prefill_ms", t->prefill_ms,
                     "decode_ms", t->decode_ms, "ttft_ms", t->ttft_ms, "total_ms", t->total_ms, "prefill_tokens",
                     (json_int_t)t->prefill_tokens, "decode_tokens", (json_int_t)t->decode_tokens);
}

al_err rh_render(router_http *h, const al_chat_msg *msgs, int n, const al_chat_doc *docs, int n_docs, int add_gen,
                 char **text)
{
    al_err e = al_chat_render(h->fmt, msgs, n, docs, n_docs, add_gen, text);
    if (e == AL_EUNSUPPORTED && n_docs)
        return ali_errf(AL_EINVAL, "documents: the chat template '%s' has no documents section",
                        al_chat_format_name(h->fmt));
    return ali_errctx(e, "messages");
}

al_err rh_encode(router_http *h, const char *text, int add_special, int32_t **ids, int32_t *n)
{
    router *r = h->r;
    *ids = NULL;
    *n = 0;
    if (!r->tok)
        return ali_errf(AL_EUNSUPPORTED, "messages: the router has no tokenizer (set router.tokenizer); "
                                         "send token ids to /v1/completions");
    AL_TRY(al_tokenizer_encode(r->tok, text, strlen(text), add_special, ids, n));
    al_err e = router_check_tokens(r, "prompt", *ids, (size_t)*n);
    if (e != AL_OK) {
        free(*ids);
        *ids = NULL;
    }
    return e;
}

/* ---- /healthz /metrics /v1/models /v1/intrinsics --------------------------------------------- */

static const char *rh_health_name(alora_Health hl)
{
    switch (hl) {
    case alora_Health_HEALTH_OK: return "ok";
    case alora_Health_HEALTH_STARTING: return "starting";
    case alora_Health_HEALTH_DEGRADED: return "degraded";
    case alora_Health_HEALTH_DRAINING: return "draining";
    case alora_Health_HEALTH_DOWN: return "down";
    default: return "unknown";
    }
}

static void rh_healthz(rh_call *c)
{
    router *r = c->h->r;
    char detail[256];
    pthread_mutex_lock(&r->mu);
    alora_Health hl = router_health_locked(r, detail, sizeof detail);
    int nw = 0;
    for (router_worker *w = r->workers; w; w = w->next)
        nw += !w->removed;
    pthread_mutex_unlock(&r->mu);
    json_t *j = json_pack("{s:s,s:s,s:i,s:f}", "status", rh_health_name(hl), "router", r->id, "workers", nw,
                          "uptime_s", router_ms_since(r->t0) / 1e3);
    if (detail[0])
        json_object_set_new(j, "detail", json_string(detail));
    rh_reply_json(c, hl == alora_Health_HEALTH_OK ? 200 : 503, j);
}

/* alora_http_connections: the front door's open connections (set at each scrape). */
static al_metric *rh_conn_gauge;
static void rh_conn_gauge_init(void)
{
    if (al_metrics_default() && al_metrics_gauge(al_metrics_default(), "alora_http_connections",
                                                 "open HTTP connections of the router", 0, NULL,
                                                 &rh_conn_gauge) != AL_OK)
        rh_conn_gauge = NULL;
}

static void rh_metrics(rh_call *c)
{
    router *r = c->h->r;
    const al_alora_metrics *am = al_metrics_alora();
    if (!am) {
        rh_error(c, AL_ENOMEM, "metrics: out of memory");
        return;
    }
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, rh_conn_gauge_init);
    if (rh_conn_gauge && c->h->srv)
        al_metric_set(rh_conn_gauge, NULL, (double)hs_open_connections(c->h->srv));
    static const alora_Health states[] = {alora_Health_HEALTH_OK, alora_Health_HEALTH_STARTING,
                                          alora_Health_HEALTH_DEGRADED, alora_Health_HEALTH_DRAINING,
                                          alora_Health_HEALTH_DOWN};
    int cnt[5] = {0};
    pthread_mutex_lock(&r->mu);
    /* KV and leases summed over the bases that answered */
    int64_t used = 0, fre = 0, leases = 0;
    bool any = false;
    for (int b = 0; b < r->n_bases; b++)
        if (r->bases[b].stats_ok) {
            any = true;
            used += r->bases[b].stats.kv_blocks_used;
            fre += r->bases[b].stats.kv_blocks_free;
            leases += r->bases[b].stats.leases;
        }
    if (any) {
        const char *u[1] = {"used"}, *f[1] = {"free"};
        al_metric_set(am->kv_blocks, u, (double)used);
        al_metric_set(am->kv_blocks, f, (double)fre);
        al_metric_set(am->leases, NULL, (double)leases);
    }
    for (router_worker *w = r->workers; w; w = w->next) {
        if (w->removed)
            continue;
        alora_Health hl = w->health;
        bool current = false; /* attached to a base instance that still runs */
        for (int b = 0; b < r->n_bases; b++)
            current = current || !r->bases[b].id[0] || !strcmp(w->base_id, r->bases[b].id);
        if (!current)
            hl = alora_Health_HEALTH_DEGRADED;
        for (int i = 0; i < 5; i++)
            cnt[i] += hl == states[i];
    }
    for (int i = 0; i < 5; i++) {
        const char *lab[1] = {rh_health_name(states[i])};
        al_metric_set(am->workers, lab, cnt[i]);
    }
    for (int i = 0; i < r->cfg.n_intrinsics; i++) {
        const char *lab[1] = {r->cfg.intrinsics[i].name};
        al_metric_set(am->queue_depth, lab, r->intr[i].pending);
    }
    pthread_mutex_unlock(&r->mu);
    char *out = NULL;
    size_t len = 0;
    if (al_metrics_render(&out, &len) != AL_OK) {
        rh_error(c, AL_ENOMEM, "metrics: out of memory");
        return;
    }
    rh_reply(c, 200, "text/plain; version=0.0.4; charset=utf-8", out, len);
    free(out);
}

static void rh_models(rh_call *c)
{
    router *r = c->h->r;
    const char **ids = calloc((size_t)r->cfg.n_intrinsics + 1, sizeof *ids);
    if (!ids) {
        rh_error(c, AL_ENOMEM, "router: out of memory");
        return;
    }
    ids[0] = r->cfg.router.model_name;
    for (int i = 0; i < r->cfg.n_intrinsics; i++)
        ids[i + 1] = r->cfg.intrinsics[i].name;
    char *out = NULL;
    size_t len = 0;
    al_err e = al_oai_models_json(ids, r->cfg.n_intrinsics + 1, c->h->created, "alora", &out, &len);
    free(ids);
    if (e != AL_OK) {
        rh_error(c, e, al_errmsg());
        return;
    }
    /* vLLM-style: intrinsics are LoRA models whose parent is the base. */
    json_t *j = json_loadb(out, len, 0, NULL);
    free(out);
    json_t *data = json_object_get(j, "data");
    for (size_t i = 1; i < json_array_size(data); i++) {
        json_object_set_new(json_array_get(data, i), "parent", json_string(r->cfg.router.model_name));
        json_object_set_new(json_array_get(data, i), "root", json_string(r->cfg.router.model_name));
    }
    rh_reply_json(c, 200, j);
}

static void rh_intrinsics(rh_call *c)
{
    router_http *h = c->h;
    router *r = h->r;
    json_t *data = json_array();
    for (int i = 0; i < r->cfg.n_intrinsics; i++) {
        const al_intrinsic_cfg *ic = &r->cfg.intrinsics[i];
        const al_intrinsic *d = rh_def(h, ic->name);
        int n;
        uint32_t cap, act;
        char digest[80] = "";
        int n_inv = 0;
        pthread_mutex_lock(&r->mu);
        router_intr_workers(r, i, &n, &cap, &act);
        int pend = r->intr[i].pending;
        for (router_worker *w = r->workers; w; w = w->next)
            if (!w->removed && !strcmp(w->intrinsic, ic->name)) {
                ROUTER_STRCPY(digest, w->digest);
                n_inv = w->n_inv;
                break;
            }
        pthread_mutex_unlock(&r->mu);
        json_t *o = json_pack("{s:s,s:s,s:s,s:i,s:i,s:i,s:i,s:i,s:i,s:s,s:i}", "name", ic->name, "object", "intrinsic",
                              "parser", d ? al_intr_parser_name(d->parser) : (ic->parser ? ic->parser : "raw"),
                              "max_tokens", d ? d->max_tokens : ic->max_tokens, "replicas", ic->replicas, "workers", n,
                              "capacity", (int)cap, "active", (int)act, "queue_depth", pend, "adapter_digest", digest,
                              "invocation_tokens", n_inv);
        json_object_set_new(o, "documents", json_string(al_intr_docs_name(d ? d->documents : AL_DOCS_TEMPLATE)));
        const char *instr = d ? d->instruction : ic->instruction;
        json_object_set_new(o, "instruction", instr ? json_string(instr) : json_null());
        json_t *outs = json_array();
        for (int k = 0; d && k < d->outputs.n; k++)
            json_array_append_new(outs, json_string(d->outputs.v[k]));
        json_object_set_new(o, "outputs", outs);
        json_array_append_new(data, o);
    }
    rh_reply_json(c, 200, json_pack("{s:s,s:o}", "object", "list", "data", data));
}

/* ---- dispatch ----------------------------------------------------------------------------------- */

/* Requests in flight per client address (router.max_inflight_per_addr). */
typedef struct rh_addr {
    char addr[64];
    int n;
    struct rh_addr *next;
} rh_addr;

/* h->mu held. */
static rh_addr **rh_addr_find(router_http *h, const char *addr)
{
    rh_addr **pp = &h->addrs;
    while (*pp && strcmp((*pp)->addr, addr))
        pp = &(*pp)->next;
    return pp;
}

/* Releases the request's slots of the in-flight limits. */
static void rh_uncount(rh_call *c)
{
    router_http *h = c->h;
    if (!c->counted)
        return;
    c->counted = false;
    pthread_mutex_lock(&h->mu);
    h->pending--;
    if (c->key_index >= 0 && h->key_inflight)
        h->key_inflight[c->key_index]--;
    rh_addr **pp = rh_addr_find(h, c->addr);
    if (*pp && --(*pp)->n == 0) {
        rh_addr *a = *pp;
        *pp = a->next;
        free(a);
    }
    pthread_mutex_unlock(&h->mu);
}

static void rh_call_free(rh_call *c)
{
    rh_uncount(c);
    free(c->body);
    free(c);
}

static void rh_method_not_allowed(rh_call *c, const char *allowed)
{
    char msg[128];
    snprintf(msg, sizeof msg, "method: %s is not allowed here (use %s)", c->method, allowed);
    rh_error_status(c, 405, "method_not_allowed", "invalid_request_error", msg, false);
}

static void rh_task(router_task *t)
{
    rh_call *c = (rh_call *)t->req;
    const char *p = c->path;
    bool get = !strcmp(c->method, "GET") || !strcmp(c->method, "HEAD"), post = !strcmp(c->method, "POST");
    if (!strcmp(p, "/healthz")) {
        c->endpoint = "/healthz";
        get ? rh_healthz(c) : rh_method_not_allowed(c, "GET");
    } else if (!strcmp(p, "/metrics")) {
        c->endpoint = "/metrics";
        get ? rh_metrics(c) : rh_method_not_allowed(c, "GET");
    } else if (!strcmp(p, "/v1/models")) {
        c->endpoint = "/v1/models";
        get ? rh_models(c) : rh_method_not_allowed(c, "GET");
    } else if (!strcmp(p, "/v1/intrinsics")) {
        c->endpoint = "/v1/intrinsics";
        get ? rh_intrinsics(c) : rh_method_not_allowed(c, "GET");
    } else if (!strcmp(p, "/v1/chat/completions")) {
        c->endpoint = "/v1/chat/completions";
        post ? rh_openai(c, AL_OAI_CHAT) : rh_method_not_allowed(c, "POST");
    } else if (!strcmp(p, "/v1/completions")) {
        c->endpoint = "/v1/completions";
        post ? rh_openai(c, AL_OAI_COMPLETION) : rh_method_not_allowed(c, "POST");
    } else if (!strncmp(p, "/v1/sessions", 12) && (p[12] == 0 || p[12] == '/')) {
        rh_sessions(c);
    } else {
        c->endpoint = "other";
        char msg[1100];
        snprintf(msg, sizeof msg, "path: no endpoint %s", p);
        rh_error(c, AL_ENOTFOUND, msg);
    }
    if (!c->replied)
        rh_error(c, AL_EINTERNAL, "router: the handler did not reply");
    rh_sse_end(c);
    rh_uncount(c);
    if (c->len >= ((size_t)1 << 20)) {
        /* a large body's parse left free memory in this thread's arena: give it back to the system */
        free(c->body);
        c->body = NULL;
        malloc_trim(0);
    }
    hs_done(c->conn, c->close || c->broken);
    rh_call_free(c);
}

/* The index of the API key in "Bearer KEY" (-1: none matches); every key is compared in constant time. */
static int rh_key_index(const router *r, const char *auth)
{
    if (!auth || strncasecmp(auth, "Bearer ", 7) != 0)
        return -1;
    const char *k = auth + 7;
    while (*k == ' ')
        k++;
    size_t kl = strlen(k);
    int found = -1;
    for (int i = 0; i < r->cfg.router.api_keys.n; i++) {
        const char *want = r->cfg.router.api_keys.v[i];
        size_t wl = strlen(want);
        unsigned diff = (unsigned)(wl != kl);
        for (size_t j = 0; j < wl; j++) /* constant time in the key's length */
            diff |= (unsigned)(unsigned char)want[j] ^ (unsigned)(unsigned char)(j < kl ? k[j] : 0);
        if (diff == 0 && found < 0)
            found = i;
    }
    return found;
}

/* Reactor thread (must not block): a request head. Auth here, before the body is read. */
static void *rh_admit(void *ud, hs_conn *conn, const hs_head *hd)
{
    router_http *h = ud;
    router *r = h->r;
    rh_call *c = calloc(1, sizeof *c);
    if (!c) {
        static const char oom[] = "{\"error\":{\"code\":\"unavailable\",\"message\":\"router: out of memory\","
                                  "\"type\":\"service_unavailable_error\"}}";
        hs_respond(conn, 503, "Service Unavailable", "application/json", NULL, oom, sizeof oom - 1, true);
        return NULL;
    }
    c->h = h;
    c->conn = conn;
    c->t0 = al_now();
    c->endpoint = "other";
    c->key_index = -1;
    snprintf(c->method, sizeof c->method, "%s", hd->method);
    snprintf(c->path, sizeof c->path, "%s", hd->target);
    snprintf(c->addr, sizeof c->addr, "%s", hd->addr);
    char *q = strchr(c->path, '?');
    if (q)
        *q = 0;
    size_t pl = strlen(c->path);
    while (pl > 1 && c->path[pl - 1] == '/')
        c->path[--pl] = 0;
    c->len = hd->content_length;
    if (r->cfg.router.api_keys.n) {
        c->key_index = rh_key_index(r, hd->auth);
        if (c->key_index < 0 && !strncmp(c->path, "/v1/", 4)) {
            c->endpoint = "auth";
            rh_error_status(c, 401, "unauthorized", "authentication_error",
                            hd->auth ? "authorization: invalid API key"
                                     : "authorization: missing (send Authorization: Bearer <key>)",
                            hd->content_length > 0);
            rh_call_free(c);
            return NULL;
        }
    }
    return c;
}

/* Reactor thread: the body is complete; the in-flight limits, then a pool thread. */
static void rh_dispatch(void *ud, hs_conn *conn, void *req, char *body, size_t len)
{
    router_http *h = ud;
    router *r = h->r;
    rh_call *c = req;
    c->body = body;
    c->len = len;
    bool probe = !strcmp(c->path, "/healthz") || !strcmp(c->path, "/metrics");
    int per_key = r->cfg.router.max_inflight_per_key, per_addr = r->cfg.router.max_inflight_per_addr;
    const char *why = NULL;
    pthread_mutex_lock(&h->mu);
    rh_addr **pa = rh_addr_find(h, c->addr);
    if (h->pending >= h->max_pending)
        why = "router: too many HTTP requests in flight";
    else if (!probe && per_key > 0 && c->key_index >= 0 && h->key_inflight[c->key_index] >= per_key)
        why = "router: too many requests in flight for this API key (router.max_inflight_per_key)";
    else if (!probe && per_addr > 0 && *pa && (*pa)->n >= per_addr)
        why = "router: too many requests in flight from this address (router.max_inflight_per_addr)";
    if (!why && !*pa && (*pa = calloc(1, sizeof **pa)) != NULL)
        snprintf((*pa)->addr, sizeof (*pa)->addr, "%s", c->addr);
    if (!why && !*pa)
        why = "router: out of memory";
    if (!why) {
        h->pending++;
        if (c->key_index >= 0 && h->key_inflight)
            h->key_inflight[c->key_index]++;
        (*pa)->n++;
        c->counted = true;
    }
    pthread_mutex_unlock(&h->mu);
    if (why) {
        rh_error_x(c, AL_EOVERLOADED, why, 1, false, false);
        rh_call_free(c);
        return;
    }
    if (!router_pool_post(&h->pool, r, rh_task, c)) {
        rh_error_x(c, AL_EUNAVAILABLE, "router: shutting down", 0, true, false);
        rh_call_free(c);
    }
}

static void rh_drop(void *ud, void *req) { rh_call_free(req); }

/* Reactor thread: a malformed or timed-out request the server answers (400, 408, 413, 414, 431, 505). */
static void rh_proto_error(void *ud, hs_conn *conn, int status, const char *code, const char *msg)
{
    rh_call c = {.h = ud, .conn = conn, .endpoint = "protocol", .key_index = -1};
    rh_error_status(&c, status, code, status >= 500 && status != 505 ? "server_error" : "invalid_request_error", msg,
                    true);
}

/* ---- lifecycle ---------------------------------------------------------------------------------- */

/* router.http "http://HOST:PORT" -> host, port. */
static al_err rh_parse_url(const char *url, char *host, size_t cap, int *port)
{
    const char *p = !strncmp(url, "http://", 7) ? url + 7 : NULL;
    if (!p)
        return ali_errf(AL_EINVAL, "router.http: '%s' is not an http://HOST:PORT URL", url);
    const char *hs = p, *he;
    if (*p == '[') { /* [v6] */
        he = strchr(p, ']');
        if (!he)
            return ali_errf(AL_EINVAL, "router.http: '%s': unclosed '['", url);
        hs = p + 1;
        p = he + 1;
    } else {
        p += strcspn(p, ":/");
        he = p;
    }
    if ((size_t)(he - hs) >= cap)
        return ali_errf(AL_EINVAL, "router.http: '%s': host too long", url);
    memcpy(host, hs, (size_t)(he - hs));
    host[he - hs] = 0;
    if (*p != ':')
        return ali_errf(AL_EINVAL, "router.http: '%s' has no port (http://HOST:PORT)", url);
    char *end;
    long v = strtol(p + 1, &end, 10);
    if (end == p + 1 || (*end && strcmp(end, "/")) || v < 0 || v > 65535)
        return ali_errf(AL_EINVAL, "router.http: '%s': bad port", url);
    *port = (int)v;
    return AL_OK;
}

al_err router_http_start(router *r)
{
    const char *url = r->cfg.router.http;
    router_http *h = calloc(1, sizeof *h);
    if (!h)
        return ali_errf(AL_ENOMEM, "router: out of memory");
    r->http = h;
    h->r = r;
    pthread_mutex_init(&h->mu, NULL);
    h->created = (int64_t)time(NULL);
    char host[256];
    int port = 0;
    al_err ue = rh_parse_url(url, host, sizeof host, &port);
    if (ue != AL_OK) {
        r->config_error = true;
        return ue;
    }
    /* the API-key rule for non-loopback addresses is the config's (al_cluster_cfg_load) */
    /* Chat template: router.chat_template, else detected from the tokenizer's config. */
    if (r->cfg.router.chat_template && r->cfg.router.chat_template[0]) {
        if (al_chat_format_parse(r->cfg.router.chat_template, &h->fmt) != AL_OK) {
            r->config_error = true;
            return ali_errctx(AL_EFORMAT, "router.chat_template");
        }
    } else {
        h->fmt = r->tok ? al_chat_detect(al_tokenizer_chat_template(r->tok)) : AL_CHAT_RAW;
    }
    if (r->tok) {
        int32_t eos = al_tokenizer_eos(r->tok);
        if (eos >= 0)
            h->stop_ids[h->n_stop_ids++] = eos;
        const char *const *ss;
        int ns;
        al_chat_stop_strings(h->fmt, &ss, &ns);
        for (int i = 0; i < ns && h->n_stop_ids < 8; i++) {
            int32_t id = al_tokenizer_token_id(r->tok, ss[i]);
            bool dup = false;
            for (int k = 0; k < h->n_stop_ids; k++)
                dup |= h->stop_ids[k] == id;
            if (id >= 0 && !dup)
                h->stop_ids[h->n_stop_ids++] = id;
        }
    }
    if (al_intrinsics_load_cluster(r->cfg_path, &h->defs) == AL_OK)
        h->defs_ok = true;
    else
        AL_WARN("router: intrinsic definitions: %s (results are raw text)", al_errmsg());

    al_rpc_client_opts co;
    al_rpc_client_opts_default(&co);
    co.connect_wait_ms = 1000;
    AL_TRY(al_rpc_client_open(&h->self, r->bound, &co));

    int nth = r->cfg.router.http_threads > 0 ? r->cfg.router.http_threads : 16;
    h->max_pending = nth * 4 + (r->cfg.router.max_queue > 0 ? r->cfg.router.max_queue : 64);
    AL_TRY(router_pool_start(&h->pool, nth));
    h->pool_on = true;

    if (r->cfg.router.api_keys.n) {
        h->key_inflight = calloc((size_t)r->cfg.router.api_keys.n, sizeof *h->key_inflight);
        if (!h->key_inflight)
            return ali_errf(AL_ENOMEM, "router: out of memory");
    }
    /* Memory that returns: few malloc arenas (not one per thread of the pool), and large blocks
     * (bodies, their parse) from mmap with a fixed threshold, so that they go back on free. */
    mallopt(M_ARENA_MAX, 4);
    mallopt(M_MMAP_THRESHOLD, 256 << 10);
    const al_cluster_cfg *k = &r->cfg;
    hs_limits lim = {
        .max_connections = k->router.http_max_connections,
        .header_timeout_ms = k->router.http_header_timeout_ms,
        .body_timeout_ms = k->router.http_body_timeout_ms,
        .min_body_rate = k->router.http_min_body_rate,
        .idle_timeout_ms = k->router.http_idle_timeout_ms,
        .send_timeout_ms = k->router.http_send_timeout_ms,
        .max_header = k->router.http_max_header,
        .max_url = k->router.http_max_url,
        .max_body = k->router.max_body,
    };
    hs_cb cb = {.ud = h, .admit = rh_admit, .dispatch = rh_dispatch, .drop = rh_drop, .error = rh_proto_error};
    AL_TRY(hs_start(&h->srv, host, port, &lim, &cb));
    AL_INFO("router: HTTP API on %s (model '%s', chat template %s, %s, body cap %zu bytes, %d threads, at most %d "
            "connections)", url, r->cfg.router.model_name, al_chat_format_name(h->fmt),
            r->cfg.router.api_keys.n ? "API keys required" : "no authentication", r->cfg.router.max_body, nth,
            lim.max_connections);
    return AL_OK;
}

void router_http_stop(router *r)
{
    router_http *h = r->http;
    if (!h)
        return;
    if (h->pool_on)
        router_pool_stop(&h->pool); /* in-flight requests finish; new ones get 503 */
    h->pool_on = false;
    hs_stop(h->srv); /* after the pool: no worker holds a connection */
    h->srv = NULL;
    free(h->key_inflight);
    while (h->addrs) {
        rh_addr *a = h->addrs;
        h->addrs = a->next;
        free(a);
    }
    if (h->self)
        al_rpc_client_close(h->self);
    if (h->defs_ok)
        al_intrinsics_free(&h->defs);
    rh_sess_free_all(h);
    pthread_mutex_destroy(&h->mu);
    free(h);
    r->http = NULL;
}
