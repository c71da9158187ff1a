/* router_http_sess.c: /v1/sessions over HTTP, on top of the router's session API (ROUTER_SESSION_*,
 * called on this router's own RPC socket). Messages are rendered with the chat template; each append
 * sends only the text the template adds after what the session already holds. */
#include "services/router/router_http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/util.h"
#include "services/router/session_store.h"

static int rh_timeout(const router *r)
{
    return r->cfg.router.request_timeout_ms > 0 ? r->cfg.router.request_timeout_ms : 60000;
}

/* An RPC to this router's own API; errors keep Retry-After. */
static al_err rh_self(rh_call *c, uint16_t method, const void *req, void *rep, al_pbmem *m, int *retry_s)
{
    al_rpc_callopts o = {.timeout_ms = rh_timeout(c->h->r) + 5000};
    al_err e = al_rpc_callx(c->h->self, method, req, rep, m, &o);
    *retry_s = o.retry_after_ms ? (int)((o.retry_after_ms + 999) / 1000) : 0;
    return e;
}

/* ---- HTTP-side state ---------------------------------------------------------------------------- */

static void rh_sess_free(rh_sess *s)
{
    for (int i = 0; i < s->n; i++) {
        free((char *)s->msgs[i].role);
        free((char *)s->msgs[i].content);
    }
    for (int i = 0; i < s->n_docs; i++) {
        free((char *)s->docs[i].title);
        free((char *)s->docs[i].text);
        free((char *)s->docs[i].doc_id);
    }
    free(s->msgs);
    free(s->docs);
    free(s->committed);
    json_decref(s->results);
    free(s);
}

void rh_sess_free_all(router_http *h)
{
    while (h->sess) {
        rh_sess *s = h->sess;
        h->sess = s->next;
        rh_sess_free(s);
    }
}

void rh_sess_forget(router_http *h, const char *id)
{
    pthread_mutex_lock(&h->mu);
    for (rh_sess **pp = &h->sess; *pp; pp = &(*pp)->next)
        if (!strcmp((*pp)->id, id)) {
            rh_sess *s = *pp;
            *pp = s->next;
            if (s->busy)
                s->gone = true; /* its holder frees it (rh_sess_put) */
            else
                rh_sess_free(s);
            break;
        }
    pthread_mutex_unlock(&h->mu);
}

static char *rh_strdup0(const char *s) { return s ? strdup(s) : NULL; }

static al_err rh_sess_push(rh_sess *s, const char *role, const char *content)
{
    if (s->n == s->cap) {
        int cap = s->cap ? s->cap * 2 : 8;
        al_chat_msg *m = realloc(s->msgs, sizeof *m * (size_t)cap);
        if (!m)
            return ali_errf(AL_ENOMEM, "router: out of memory");
        s->msgs = m;
        s->cap = cap;
    }
    char *r = strdup(role), *c = strdup(content ? content : "");
    if (!r || !c) {
        free(r);
        free(c);
        return ali_errf(AL_ENOMEM, "router: out of memory");
    }
    s->msgs[s->n++] = (al_chat_msg){.role = r, .content = c};
    return AL_OK;
}

static al_err rh_sess_commit(rh_sess *s, const char *add)
{
    size_t a = s->committed ? strlen(s->committed) : 0, b = strlen(add);
    char *n = realloc(s->committed, a + b + 1);
    if (!n)
        return ali_errf(AL_ENOMEM, "router: out of memory");
    memcpy(n + a, add, b + 1);
    s->committed = n;
    return AL_OK;
}

static const char *const rh_roles[] = {"system", "user", "assistant", "tool"};

/* A string member of object o (NULL when absent); *e set when present but not a string. */
static const char *rh_jstr(json_t *o, const char *k, const char *where, al_err *e)
{
    json_t *v = json_object_get(o, k);
    if (!v || json_is_null(v))
        return NULL;
    if (!json_is_string(v)) {
        *e = ali_errf(AL_EINVAL, "%s.%s: expected a string", where, k);
        return NULL;
    }
    return json_string_value(v);
}

/* Only keys from `ok` (NULL-terminated) in object o. */
static al_err rh_keys_only(json_t *o, const char *const *ok, const char *where)
{
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v) {
        bool known = false;
        for (int i = 0; ok[i] && !known; i++)
            known = !strcmp(k, ok[i]);
        if (!known)
            return ali_errf(AL_EINVAL, "%s: unknown field '%.100s'", where, k);
    }
    return AL_OK;
}

/* Fills the empty s from a saved or exported state: "messages", "documents", "text", "results"
 * (strict: every error names the field). */
static al_err rh_sess_from_state(rh_sess *s, json_t *j, const char *where)
{
    char f[128];
    json_t *msgs = json_object_get(j, "messages"), *docs = json_object_get(j, "documents");
    json_t *text = json_object_get(j, "text"), *res = json_object_get(j, "results");
    if (msgs && !json_is_array(msgs))
        return ali_errf(AL_EINVAL, "%s.messages: expected an array", where);
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        snprintf(f, sizeof f, "%s.messages[%zu]", where, i);
        if (!json_is_object(m))
            return ali_errf(AL_EINVAL, "%s: expected an object", f);
        static const char *const mk[] = {"role", "content", NULL};
        AL_TRY(rh_keys_only(m, mk, f));
        al_err e = AL_OK;
        const char *role = rh_jstr(m, "role", f, &e), *content = rh_jstr(m, "content", f, &e);
        if (e != AL_OK)
            return e;
        if (!role || !content)
            return ali_errf(AL_EINVAL, "%s: needs \"role\" and \"content\" strings", f);
        bool known = false;
        for (size_t r = 0; r < AL_ARRAY_LEN(rh_roles); r++)
            known |= !strcmp(role, rh_roles[r]);
        if (!known)
            return ali_errf(AL_EINVAL, "%s.role: '%.40s' is not system, user, assistant or tool", f, role);
        AL_TRY(rh_sess_push(s, role, content));
    }
    if (docs && !json_is_array(docs))
        return ali_errf(AL_EINVAL, "%s.documents: expected an array", where);
    if (json_array_size(docs)) {
        if (!(s->docs = calloc(json_array_size(docs), sizeof *s->docs)))
            return ali_errf(AL_ENOMEM, "router: out of memory");
        json_array_foreach(docs, i, m) {
            snprintf(f, sizeof f, "%s.documents[%zu]", where, i);
            if (!json_is_object(m))
                return ali_errf(AL_EINVAL, "%s: expected an object", f);
            static const char *const dk[] = {"text", "title", "doc_id", NULL};
            AL_TRY(rh_keys_only(m, dk, f));
            al_err e = AL_OK;
            const char *t = rh_jstr(m, "text", f, &e), *ti = rh_jstr(m, "title", f, &e),
                       *di = rh_jstr(m, "doc_id", f, &e);
            if (e != AL_OK)
                return e;
            if (!t)
                return ali_errf(AL_EINVAL, "%s.text: missing", f);
            s->docs[i] = (al_chat_doc){.text = strdup(t), .title = rh_strdup0(ti), .doc_id = rh_strdup0(di)};
            s->n_docs = (int)i + 1;
            if (!s->docs[i].text || (ti && !s->docs[i].title) || (di && !s->docs[i].doc_id))
                return ali_errf(AL_ENOMEM, "router: out of memory");
        }
    }
    if (text && !json_is_string(text))
        return ali_errf(AL_EINVAL, "%s.text: expected a string", where);
    free(s->committed);
    if (!(s->committed = strdup(text ? json_string_value(text) : "")))
        return ali_errf(AL_ENOMEM, "router: out of memory");
    if (res && (!json_is_array(res) || json_array_size(res) > RH_SESS_RESULTS))
        return ali_errf(AL_EINVAL, "%s.results: expected an array of at most %d results", where, RH_SESS_RESULTS);
    json_array_foreach(res, i, m) {
        if (!json_is_object(m))
            return ali_errf(AL_EINVAL, "%s.results[%zu]: expected an object", where, i);
    }
    json_decref(s->results);
    s->results = res ? json_deep_copy(res) : json_array();
    return s->results ? AL_OK : ali_errf(AL_ENOMEM, "router: out of memory");
}

/* The HTTP-side state of s as JSON (what the store keeps and export shows). */
static json_t *rh_sess_state(const rh_sess *s)
{
    json_t *m = json_array(), *d = json_array();
    for (int i = 0; i < s->n; i++)
        json_array_append_new(m, json_pack("{s:s,s:s}", "role", s->msgs[i].role, "content", s->msgs[i].content));
    for (int i = 0; i < s->n_docs; i++) {
        json_t *o = json_pack("{s:s}", "text", s->docs[i].text ? s->docs[i].text : "");
        if (s->docs[i].title)
            json_object_set_new(o, "title", json_string(s->docs[i].title));
        if (s->docs[i].doc_id)
            json_object_set_new(o, "doc_id", json_string(s->docs[i].doc_id));
        json_array_append_new(d, o);
    }
    return json_pack("{s:o,s:o,s:s,s:o}", "messages", m, "documents", d, "text", s->committed ? s->committed : "",
                     "results", s->results ? json_deep_copy(s->results) : json_array());
}

/* Writes s's HTTP-side state to the store. */
static void rh_sess_save(router_http *h, const rh_sess *s)
{
    if (!h->r->store)
        return;
    json_t *j = rh_sess_state(s);
    char *t = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    al_err e = t ? router_store_set_state(h->r->store, s->id, t) : ali_errf(AL_ENOMEM, "router: out of memory");
    if (e != AL_OK && e != AL_ENOTFOUND) /* not found: deleted meanwhile */
        AL_WARN("router: http: session %s: state not saved: %s", s->id, al_errmsg());
    free(t);
}

/* A new session's HTTP state under id sid: stored, then listed. */
static void rh_sess_add(router_http *h, rh_sess *s, const char *sid)
{
    ROUTER_STRCPY(s->id, sid);
    rh_sess_save(h, s);
    pthread_mutex_lock(&h->mu);
    s->next = h->sess;
    h->sess = s;
    pthread_mutex_unlock(&h->mu);
}

/* The session's HTTP state: the one in memory, else the stored one (a router restart), else empty (a
 * session made over NNG). NULL: out of memory. */
static rh_sess *rh_sess_load(router_http *h, const char *id)
{
    pthread_mutex_lock(&h->mu);
    rh_sess *s = h->sess;
    while (s && strcmp(s->id, id))
        s = s->next;
    pthread_mutex_unlock(&h->mu);
    if (s)
        return s;
    rh_sess *n = calloc(1, sizeof *n);
    if (!n)
        return NULL;
    ROUTER_STRCPY(n->id, id);
    n->committed = strdup("");
    n->results = json_array();
    char *st = NULL;
    if (h->r->store && router_store_get_state(h->r->store, id, &st) == AL_OK && st) {
        json_error_t je;
        json_t *j = json_loads(st, 0, &je);
        if (!j || rh_sess_from_state(n, j, "session_db") != AL_OK)
            AL_WARN("router: http: session %s: stored state unreadable (%s)", id, j ? al_errmsg() : je.text);
        json_decref(j);
        free(st);
    }
    if (!n->committed || !n->results) {
        rh_sess_free(n);
        return NULL;
    }
    pthread_mutex_lock(&h->mu);
    s = h->sess;
    while (s && strcmp(s->id, id))
        s = s->next;
    if (!s) {
        n->next = h->sess;
        h->sess = s = n;
        n = NULL;
    }
    pthread_mutex_unlock(&h->mu);
    if (n)
        rh_sess_free(n);
    return s;
}

/* The session's HTTP state (rh_sess_load), marked busy. */
static rh_sess *rh_sess_get(router_http *h, const char *id, bool *busy)
{
    rh_sess *s = rh_sess_load(h, id);
    pthread_mutex_lock(&h->mu);
    *busy = s && (s->busy || s->gone);
    if (s && !*busy)
        s->busy = true;
    pthread_mutex_unlock(&h->mu);
    return s;
}

static void rh_sess_put(router_http *h, rh_sess *s)
{
    pthread_mutex_lock(&h->mu);
    s->busy = false;
    bool gone = s->gone;
    pthread_mutex_unlock(&h->mu);
    if (gone)
        rh_sess_free(s);
}

/* The caller's identity: the owner of the sessions it may see. */
static const char *rh_owner(const rh_call *c) { return router_owner(c->h->r, c->key_index); }

/* Tokens the router re-prefilled to rebuild the session's KV during this call, into timings t. */
static void rh_rebuilt(router_http *h, const char *id, json_t *t)
{
    if (json_is_object(t))
        json_object_set_new(t, "rebuilt_tokens", json_integer(router_session_take_rebuilt(h->r, id)));
}

/* Messages of a JSON body: {"messages":[...]} or one {"role","content"} (plus "documents"). */
static al_err rh_parse_msgs(json_t *body, bool single_ok, al_chat **out)
{
    *out = NULL;
    json_t *w = json_object();
    json_t *msgs = json_object_get(body, "messages");
    if (msgs)
        json_object_set(w, "messages", msgs);
    else if (single_ok && json_object_get(body, "role"))
        json_object_set_new(w, "messages", json_pack("[O]", body));
    else
        json_object_set_new(w, "messages", json_array());
    json_t *docs = json_object_get(body, "documents");
    if (docs)
        json_object_set(w, "documents", docs);
    json_t *sys = json_object_get(body, "system");
    if (sys && !json_is_string(sys)) {
        json_decref(w);
        return ali_errf(AL_EINVAL, "system: expected a string");
    }
    if (sys)
        json_array_insert_new(json_object_get(w, "messages"), 0, json_pack("{s:s,s:O}", "role", "system", "content", sys));
    bool empty = json_array_size(json_object_get(w, "messages")) == 0;
    if (empty) /* the parser wants one message: parse a placeholder, then drop it */
        json_array_append_new(json_object_get(w, "messages"), json_pack("{s:s,s:s}", "role", "user", "content", ""));
    char *s = json_dumps(w, JSON_COMPACT);
    json_decref(w);
    if (!s)
        return ali_errf(AL_ENOMEM, "router: out of memory");
    al_err e = al_chat_parse_json(s, strlen(s), out);
    free(s);
    if (e == AL_OK && empty && (*out)->n_msgs == 1) {
        free((char *)(*out)->msgs[0].role);
        free((char *)(*out)->msgs[0].content);
        (*out)->n_msgs = 0;
    }
    return e;
}

/* The text a turn adds: render(all) after what the session holds (or after render(before)). */
static al_err rh_diff(router_http *h, rh_sess *s, int n_before, int add_gen, char **out)
{
    char *all = NULL, *before = NULL;
    *out = NULL;
    AL_TRY(rh_render(h, s->msgs, s->n, s->docs, s->n_docs, add_gen, &all));
    size_t cl = s->committed ? strlen(s->committed) : 0;
    if (cl && !strncmp(all, s->committed, cl)) {
        *out = strdup(all + cl);
    } else if (!cl) {
        *out = strdup(all);
    } else {
        al_err e = rh_render(h, s->msgs, n_before, s->docs, s->n_docs, 0, &before);
        if (e != AL_OK) {
            free(all);
            return e;
        }
        size_t bl = strlen(before);
        *out = strdup(!strncmp(all, before, bl) ? all + bl : all);
    }
    free(all);
    free(before);
    return *out ? AL_OK : ali_errf(AL_ENOMEM, "router: out of memory");
}

/* Appends text to the router's session (role for its bookkeeping). */
static al_err rh_append(rh_call *c, const char *id, const char *role, const char *text,
                        alora_SessionAppendReply *ar, int *ra)
{
    alora_SessionAppendRequest aq = alora_SessionAppendRequest_init_zero;
    al_pbmem m = AL_PBMEM_INIT;
    ROUTER_STRCPY(aq.session_id, id);
    ROUTER_STRCPY(aq.role, role);
    al_err e = al_pb_ref_bytes(&aq.text, &m, text, strlen(text));
    if (e == AL_OK)
        e = rh_self(c, alora_Method_ROUTER_SESSION_APPEND, &aq, ar, &m, ra);
    al_pbmem_free(&m);
    return e;
}

/* ---- endpoints ---------------------------------------------------------------------------------- */

static void rh_s_create(rh_call *c)
{
    router_http *h = c->h;
    al_err e;
    json_t *body = rh_body_json(c, &e);
    al_chat *chat = NULL;
    if (!body) {
        rh_error(c, e, al_errmsg());
        return;
    }
    if (json_object_get(body, "session_id")) {
        json_decref(body);
        rh_error(c, AL_EINVAL, "session_id: session ids are assigned by the router (128-bit random); do not send one");
        return;
    }
    if ((e = rh_parse_msgs(body, false, &chat)) != AL_OK) {
        json_decref(body);
        rh_error(c, e, al_errmsg());
        return;
    }
    rh_sess *s = calloc(1, sizeof *s);
    char *text = NULL;
    if (!s) {
        e = ali_errf(AL_ENOMEM, "router: out of memory");
        goto out;
    }
    for (int i = 0; i < chat->n_msgs && e == AL_OK; i++)
        e = rh_sess_push(s, chat->msgs[i].role, chat->msgs[i].content);
    if (chat->n_docs) {
        s->docs = calloc((size_t)chat->n_docs, sizeof *s->docs);
        for (int i = 0; s->docs && i < chat->n_docs; i++)
            s->docs[i] = (al_chat_doc){.title = rh_strdup0(chat->docs[i].title), .text = rh_strdup0(chat->docs[i].text),
                                       .doc_id = rh_strdup0(chat->docs[i].doc_id)};
        s->n_docs = s->docs ? chat->n_docs : 0;
    }
    if (e == AL_OK && s->n)
        e = rh_render(h, s->msgs, s->n, s->docs, s->n_docs, 0, &text);
    if (e != AL_OK)
        goto out;
    if (s->n && !h->r->tok) {
        e = ali_errf(AL_EUNSUPPORTED, "messages: the router has no tokenizer (set router.tokenizer)");
        goto out;
    }
    s->committed = strdup(text ? text : "");
    s->results = json_array();
    if (!s->committed || !s->results) {
        e = ali_errf(AL_ENOMEM, "router: out of memory");
        goto out;
    }
    int32_t *ids = NULL, nids = 0;
    char sid[64], base_id[64];
    if (text && text[0])
        e = rh_encode(h, text, 0, &ids, &nids);
    if (e == AL_OK)
        e = router_session_new(h->r, rh_owner(c), ids, (size_t)nids, NULL, sid, base_id);
    free(ids);
    if (e != AL_OK) {
        rh_error_ra(c, e, al_errmsg(), e == AL_EOVERLOADED ? 1 : 0);
        goto out;
    }
    rh_sess_add(h, s, sid);
    rh_reply_json(c, 200, json_pack("{s:s,s:s,s:s,s:i,s:i,s:s}", "id", sid, "object", "session", "model",
                                    h->r->cfg.router.model_name, "n_tokens", (json_int_t)nids, "messages",
                                    chat->n_msgs, "base_instance", base_id));
    s = NULL;
out:
    if (e != AL_OK && !c->replied)
        rh_error(c, e, rh_errmsg());
    if (s)
        rh_sess_free(s);
    free(text);
    al_chat_free(chat);
    json_decref(body);
}

static void rh_s_messages(rh_call *c, const char *id)
{
    router_http *h = c->h;
    al_err e;
    int32_t n_now = 0;
    if ((e = router_session_get(h->r, id, rh_owner(c), &n_now, NULL)) != AL_OK) {
        rh_error(c, e, al_errmsg());
        return;
    }
    json_t *body = rh_body_json(c, &e);
    al_chat *chat = NULL;
    if (!body || (e = rh_parse_msgs(body, true, &chat)) != AL_OK) {
        json_decref(body);
        rh_error(c, e, al_errmsg());
        return;
    }
    if (!chat->n_msgs) {
        rh_error(c, AL_EINVAL, "messages: empty (send {\"role\":..,\"content\":..} or {\"messages\":[...]})");
        goto out2;
    }
    bool busy;
    rh_sess *s = rh_sess_get(h, id, &busy);
    if (!s || busy) {
        rh_error_ra(c, s ? AL_EOVERLOADED : AL_ENOMEM, "session_id: busy with another request", 1);
        goto out2;
    }
    int n_before = s->n;
    char *diff = NULL;
    for (int i = 0; i < chat->n_msgs && e == AL_OK; i++)
        e = rh_sess_push(s, chat->msgs[i].role, chat->msgs[i].content);
    if (e == AL_OK)
        e = rh_diff(h, s, n_before, 0, &diff);
    int ra = 0;
    alora_SessionAppendReply ar = alora_SessionAppendReply_init_zero;
    if (e == AL_OK && diff[0])
        e = rh_append(c, id, chat->msgs[chat->n_msgs - 1].role, diff, &ar, &ra);
    if (e == AL_OK)
        e = rh_sess_commit(s, diff);
    if (e != AL_OK) { /* undo the messages */
        while (s->n > n_before) {
            s->n--;
            free((char *)s->msgs[s->n].role);
            free((char *)s->msgs[s->n].content);
        }
        rh_error_ra(c, e, rh_errmsg(), ra);
    } else {
        rh_sess_save(h, s);
        json_t *tj = rh_timings_json(&ar.timings);
        rh_rebuilt(h, id, tj);
        rh_reply_json(c, 200,
                      json_pack("{s:s,s:s,s:i,s:i,s:i,s:i,s:o}", "id", id, "object", "session.messages", "n_tokens",
                                (json_int_t)ar.n_tokens, "appended_tokens",
                                (json_int_t)(ar.n_tokens > (uint32_t)n_now ? ar.n_tokens - (uint32_t)n_now : 0),
                                "prefix_cached_tokens", (json_int_t)ar.prefix_cached_tokens, "computed_tokens",
                                (json_int_t)ar.computed_tokens, "timings", tj));
    }
    free(diff);
    rh_sess_put(h, s);
out2:
    al_chat_free(chat);
    json_decref(body);
}

static void rh_s_generate(rh_call *c, const char *id)
{
    router_http *h = c->h;
    router *r = h->r;
    al_err e;
    int32_t n_now = 0;
    if ((e = router_session_get(r, id, rh_owner(c), &n_now, NULL)) != AL_OK) {
        rh_error(c, e, al_errmsg());
        return;
    }
    json_t *body = rh_body_json(c, &e);
    if (!body) {
        rh_error(c, e, al_errmsg());
        return;
    }
    /* The sampling fields are validated as a chat completion's. */
    json_object_set_new(body, "model", json_string(r->cfg.router.model_name));
    json_object_set_new(body, "messages", json_pack("[{s:s,s:s}]", "role", "user", "content", ""));
    json_object_del(body, "stream");
    char *bs = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    al_oai_request q;
    al_oai_limits lim = {.max_body = r->cfg.router.max_body, .max_tokens = ROUTER_MAX_GEN_TOKENS};
    e = bs ? al_oai_parse_chat(bs, strlen(bs), &lim, &q) : ali_errf(AL_ENOMEM, "router: out of memory");
    free(bs);
    if (e != AL_OK) {
        rh_error(c, e, al_errmsg());
        return;
    }
    bool busy;
    rh_sess *s = rh_sess_get(h, id, &busy);
    if (!s || busy) {
        rh_error_ra(c, s ? AL_EOVERLOADED : AL_ENOMEM, "session_id: busy with another request", 1);
        al_oai_request_free(&q);
        return;
    }
    char *gen = NULL, *full = NULL, *text = NULL;
    int ra = 0;
    al_pbmem m = AL_PBMEM_INIT;
    rh_lp lp = {0};
    e = rh_diff(h, s, s->n, 1, &gen);
    alora_SessionAppendReply ar = alora_SessionAppendReply_init_zero;
    if (e == AL_OK && gen[0])
        e = rh_append(c, id, "assistant", gen, &ar, &ra);
    if (e == AL_OK)
        e = rh_sess_commit(s, gen);
    if (e != AL_OK)
        goto out;
    alora_SessionGenerateRequest gq = alora_SessionGenerateRequest_init_zero;
    ROUTER_STRCPY(gq.session_id, id);
    gq.sampling.temperature = (float)q.temperature;
    gq.sampling.top_p = q.top_p >= 1 ? 0 : (float)q.top_p;
    gq.sampling.max_tokens = q.max_tokens > 0 ? (uint32_t)q.max_tokens : (uint32_t)r->cfg.base.default_max_tokens;
    gq.sampling.seed = q.has_seed ? (q.seed ? (uint64_t)q.seed : 0x9E3779B97F4A7C15ull) : 0;
    gq.sampling.top_logprobs = q.logprobs ? (uint32_t)(q.top_logprobs > 0 ? q.top_logprobs : 1) : 0;
    for (int i = 0; i < h->n_stop_ids; i++)
        gq.sampling.stop_token_ids[gq.sampling.stop_token_ids_count++] = h->stop_ids[i];
    bool stateful; /* one generate call either way */
    if ((e = rh_gen_fill(r, &q, &gq.sampling, &m, &stateful)) != AL_OK) /* penalties, stop, structured output */
        goto out;
    alora_SessionGenerateReply gr;
    if ((e = rh_self(c, alora_Method_ROUTER_SESSION_GENERATE, &gq, &gr, &m, &ra)) != AL_OK)
        goto out;
    const int32_t *ot, *ti;
    const float *olp, *tl;
    size_t nt = al_pb_i32(&gr.tokens, &ot), nlp = al_pb_f32(&gr.logprobs.logprob, &olp);
    size_t nti = al_pb_i32(&gr.logprobs.top_ids, &ti);
    al_pb_f32(&gr.logprobs.top_logprobs, &tl);
    size_t fl = 0;
    text = NULL;
    size_t tlen = 0;
    if (r->tok) {
        al_tokenizer_decode(r->tok, ot, (int32_t)nt, 0, &full, &fl);
        al_tokenizer_decode(r->tok, ot, (int32_t)nt, 1, &text, &tlen);
    }
    if (!full)
        full = strdup("");
    if (!text)
        text = strdup("");
    const char *finish = gr.finish_reason == alora_FinishReason_FINISH_LENGTH ? "length" : "stop";
    for (int i = 0; i < q.n_stop && text; i++) { /* stop strings cut the reply (the session keeps the tokens) */
        char *p = q.stop[i][0] ? strstr(text, q.stop[i]) : NULL;
        if (p) {
            *p = 0;
            finish = "stop";
        }
    }
    if (!full || !text || rh_sess_push(s, "assistant", text) != AL_OK || rh_sess_commit(s, full) != AL_OK) {
        e = ali_errf(AL_ENOMEM, "router: out of memory");
        goto out;
    }
    if (q.logprobs && nlp == nt)
        rh_lp_build(h, ot, olp, ti, tl, 0, (int)nt, nti == nt * gr.logprobs.top_n ? (int)gr.logprobs.top_n : 0,
                    q.top_logprobs, &lp);
    uint32_t prompt = gr.n_tokens > nt ? gr.n_tokens - (uint32_t)nt : 0;
    uint32_t computed_prompt = gr.timings.prefill_tokens;
    char cid[64];
    al_oai_make_id("chatcmpl", cid, sizeof cid);
    json_t *gtj = rh_timings_json(&gr.timings);
    rh_rebuilt(h, id, gtj);
    json_t *extra = json_pack("{s:{s:s,s:i,s:i,s:o}}", "session", "id", id, "n_tokens", (json_int_t)gr.n_tokens,
                              "computed_tokens", (json_int_t)gr.computed_tokens, "timings", gtj);
    al_oai_response rs = {.kind = AL_OAI_CHAT, .id = cid, .model = r->cfg.router.model_name,
                          .created = (int64_t)time(NULL), .text = text, .finish_reason = finish,
                          .has_logprobs = q.logprobs, .logprobs = lp.v, .n_logprobs = lp.n,
                          .usage = {.prompt_tokens = (int)prompt, .completion_tokens = (int)nt,
                                    .cached_tokens = (int)(prompt > computed_prompt ? prompt - computed_prompt : 0)},
                          .extra = extra};
    char *out = NULL;
    size_t ol = 0;
    e = al_oai_response_json(&rs, &out, &ol);
    json_decref(extra);
    if (e == AL_OK)
        rh_reply(c, 200, "application/json", out, ol);
    free(out);
out:
    if (e != AL_OK)
        rh_error_ra(c, e, rh_errmsg(), ra);
    rh_sess_save(h, s); /* what it holds now (the generation prompt stays even when generate failed) */
    rh_lp_free(&lp);
    al_pbmem_free(&m);
    rh_sess_put(h, s);
    free(gen);
    free(full);
    free(text);
    al_oai_request_free(&q);
}

static void rh_s_intrinsic(rh_call *c, const char *id, const char *name)
{
    router_http *h = c->h;
    router *r = h->r;
    al_err e;
    int idx = router_intr_index(r, name);
    if (idx < 0) {
        char msg[200];
        snprintf(msg, sizeof msg, "intrinsic: unknown '%.100s' (GET /v1/intrinsics lists them)", name);
        rh_error(c, AL_ENOTFOUND, msg);
        return;
    }
    int32_t n_now = 0;
    if ((e = router_session_get(r, id, rh_owner(c), &n_now, NULL)) != AL_OK) {
        rh_error(c, e, al_errmsg());
        return;
    }
    json_t *body = rh_body_json(c, &e);
    if (!body) {
        rh_error(c, e, al_errmsg());
        return;
    }
    json_t *mt = json_object_get(body, "max_tokens"), *tl = json_object_get(body, "top_logprobs");
    int max_tokens = 0, top = 0;
    if (mt && !json_is_null(mt)) {
        if (!json_is_integer(mt) || json_integer_value(mt) < 1 || json_integer_value(mt) > ROUTER_MAX_GEN_TOKENS) {
            json_decref(body);
            rh_error(c, AL_EINVAL, "max_tokens: expected an integer in [1, 4096]");
            return;
        }
        max_tokens = (int)json_integer_value(mt);
    }
    if (tl && !json_is_null(tl)) {
        if (!json_is_integer(tl) || json_integer_value(tl) < 0 || json_integer_value(tl) > 20) {
            json_decref(body);
            rh_error(c, AL_EINVAL, "top_logprobs: expected an integer in [0, 20]");
            return;
        }
        top = (int)json_integer_value(tl);
    }
    /* the generation controls (structured output, stop, penalties) are validated as a chat
     * completion's; a client's structured output replaces the intrinsic's default contract */
    json_object_set_new(body, "model", json_string(r->cfg.router.model_name));
    json_object_set_new(body, "messages", json_pack("[{s:s,s:s}]", "role", "user", "content", ""));
    json_object_del(body, "stream");
    char *bstr = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    al_oai_request q;
    al_oai_limits lim = {.max_body = r->cfg.router.max_body, .max_tokens = ROUTER_MAX_GEN_TOKENS};
    e = bstr ? al_oai_parse_chat(bstr, strlen(bstr), &lim, &q) : ali_errf(AL_ENOMEM, "router: out of memory");
    free(bstr);
    if (e != AL_OK) {
        rh_error(c, e, al_errmsg());
        return;
    }
    const al_intrinsic *d = rh_def(h, name);
    const al_intrinsic_cfg *ic = r->intr[idx].cfg;
    const char *instr = d ? d->instruction : ic->instruction;
    bool bs;
    rh_sess *s = rh_sess_get(h, id, &bs);
    if (!s || bs) {
        rh_error_ra(c, s ? AL_EOVERLOADED : AL_ENOMEM, "session_id: busy with another request", 1);
        al_oai_request_free(&q);
        return;
    }
    rh_iout o = {0};
    int ra = 0;
    int32_t *toks = NULL, n = 0;
    char *turn = NULL;
    if ((instr && instr[0]) || (d && d->documents == AL_DOCS_INSTRUCTION && s->n_docs)) {
        /* The instruction turn is not part of the conversation: a fork of the session's base sequence
         * (sharing its KV blocks) gets the turn, the intrinsic runs on the fork, the fork is released. */
        int32_t *ext = NULL, ne = 0;
        uint64_t seq = 0, fork = 0;
        router_base *rb = NULL;
        e = router_session_get(r, id, rh_owner(c), &n, &toks);
        if (e == AL_OK)
            e = router_session_seq(r, id, 0, &seq, &rb); /* resident (rebuilt if its KV is gone) */
        if (e == AL_OK && (e = rh_sess_push(s, "user", instr ? instr : "")) == AL_OK) {
            e = rh_diff(h, s, s->n - 1, 0, &turn);
            s->n--;
            free((char *)s->msgs[s->n].role);
            free((char *)s->msgs[s->n].content);
        }
        if (e == AL_OK)
            e = rh_encode(h, turn, 0, &ext, &ne);
        int32_t *all = e == AL_OK ? realloc(toks, sizeof(int32_t) * (size_t)(n + ne + 1)) : NULL;
        if (e == AL_OK && !all)
            e = ali_errf(AL_ENOMEM, "router: out of memory");
        al_pbmem m = AL_PBMEM_INIT;
        if (all) {
            toks = all;
            memcpy(toks + n, ext, sizeof(int32_t) * (size_t)ne);
            alora_SeqForkRequest fq = {.seq_id = seq, .n_tokens = (uint32_t)n};
            alora_SeqForkReply fr;
            e = al_rpc_call(rb->cli, alora_Method_BASE_SEQ_FORK, &fq, &fr, &m, rh_timeout(r));
            if (e == AL_ENOTFOUND && strstr(al_errmsg(), "does not exist")) { /* freed by the base: rebuild */
                al_pbmem_free(&m);
                if ((e = router_session_seq(r, id, seq, &seq, &rb)) == AL_OK) {
                    fq.seq_id = seq;
                    e = al_rpc_call(rb->cli, alora_Method_BASE_SEQ_FORK, &fq, &fr, &m, rh_timeout(r));
                }
            }
            fork = e == AL_OK ? fr.seq_id : 0;
            al_pbmem_free(&m);
            alora_SeqAppendRequest aq = {.seq_id = fork};
            alora_SeqAppendReply apr;
            if (e == AL_OK && ne > 0 && (e = al_pb_ref_i32(&aq.tokens, &m, ext, (size_t)ne)) == AL_OK)
                e = al_rpc_call(rb->cli, alora_Method_BASE_SEQ_APPEND, &aq, &apr, &m, rh_timeout(r));
            al_pbmem_free(&m);
            if (e != AL_OK)
                e = ali_errctx(e, "base");
            n += ne;
        }
        free(ext);
        if (e == AL_OK)
            e = rh_run_intrinsic(h, name, toks, n, fork, rb, max_tokens, top, &q, c->t0, &o);
        if (fork) {
            char msg[600];
            snprintf(msg, sizeof msg, "%s", al_errmsg());
            alora_SeqReleaseRequest rq = {.seq_id = fork};
            alora_Empty er;
            if (al_rpc_call(rb->cli, alora_Method_BASE_SEQ_RELEASE, &rq, &er, &m, 5000) != AL_OK)
                AL_WARN("router: http: releasing fork %llu: %s", (unsigned long long)fork, al_errmsg());
            al_pbmem_free(&m);
            if (e != AL_OK)
                ali_errf(e, "%s", msg);
        }
    } else {
        alora_SessionInvokeRequest iq = alora_SessionInvokeRequest_init_zero;
        ROUTER_STRCPY(iq.session_id, id);
        ROUTER_STRCPY(iq.intrinsic, name);
        iq.sampling.max_tokens = (uint32_t)max_tokens;
        iq.sampling.top_logprobs = (uint32_t)(top > 5 ? top : 5);
        alora_InvokeReply rep;
        al_pbmem m = AL_PBMEM_INIT;
        e = rh_intr_controls(h, name, &q, &iq.sampling, &m);
        if (e == AL_OK)
            e = rh_self(c, alora_Method_ROUTER_SESSION_INVOKE, &iq, &rep, &m, &ra);
        if (e == AL_OK)
            e = rh_iout_from_reply(h, name, n_now, &rep, &o);
        al_pbmem_free(&m);
    }
    if (e == AL_OK) { /* the session keeps its intrinsic results */
        json_t *res = json_object_get(o.info, "result");
        json_array_append_new(s->results, json_pack("{s:s,s:O,s:I}", "name", name, "result", res ? res : json_null(),
                                                    "created", (json_int_t)time(NULL)));
        while (json_array_size(s->results) > RH_SESS_RESULTS)
            json_array_remove(s->results, 0);
        rh_sess_save(h, s);
        rh_rebuilt(h, id, json_object_get(o.info, "timings"));
    }
    rh_sess_put(h, s);
    if (e != AL_OK) {
        rh_error_ra(c, e, rh_errmsg(), ra);
    } else {
        json_object_set_new(o.info, "session_id", json_string(id));
        json_object_set_new(o.info, "object", json_string("session.intrinsic"));
        json_t *j = o.info;
        o.info = NULL;
        rh_reply_json(c, 200, j);
    }
    rh_iout_free(&o);
    free(toks);
    free(turn);
    al_oai_request_free(&q);
}

static void rh_s_get(rh_call *c, const char *id)
{
    router_http *h = c->h;
    int32_t n = 0;
    al_err e = router_session_get(h->r, id, rh_owner(c), &n, NULL);
    if (e != AL_OK) {
        rh_error(c, e, al_errmsg());
        return;
    }
    rh_sess *s = rh_sess_load(h, id);
    json_t *msgs = json_array();
    pthread_mutex_lock(&h->mu);
    for (int i = 0; s && !s->gone && i < s->n; i++)
        json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", s->msgs[i].role, "content", s->msgs[i].content));
    pthread_mutex_unlock(&h->mu);
    rh_reply_json(c, 200, json_pack("{s:s,s:s,s:s,s:i,s:o}", "id", id, "object", "session", "model",
                                    h->r->cfg.router.model_name, "n_tokens", (json_int_t)n, "messages", msgs));
}

static void rh_s_delete(rh_call *c, const char *id)
{
    alora_SessionDeleteRequest dq = alora_SessionDeleteRequest_init_zero;
    alora_Empty er;
    al_pbmem m = AL_PBMEM_INIT;
    int ra = 0;
    int32_t n = 0;
    al_err e = router_session_get(c->h->r, id, rh_owner(c), &n, NULL); /* someone else's: 404 */
    if (e != AL_OK) {
        rh_error(c, e, al_errmsg());
        return;
    }
    ROUTER_STRCPY(dq.session_id, id);
    e = rh_self(c, alora_Method_ROUTER_SESSION_DELETE, &dq, &er, &m, &ra);
    al_pbmem_free(&m);
    if (e != AL_OK) {
        rh_error_ra(c, e, rh_errmsg(), ra);
        return;
    }
    rh_sess_forget(c->h, id);
    rh_reply_json(c, 200, json_pack("{s:s,s:s,s:b}", "id", id, "object", "session", "deleted", 1));
}

/* GET /v1/sessions: the caller's sessions only. */
static void rh_s_list(rh_call *c)
{
    router_session_info *v = NULL;
    int n = 0;
    al_err e = router_session_list(c->h->r, rh_owner(c), &v, &n);
    if (e != AL_OK) {
        rh_error(c, e, al_errmsg());
        return;
    }
    json_t *data = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(data, json_pack("{s:s,s:s,s:i,s:I,s:I,s:b}", "id", v[i].id, "object", "session",
                                              "n_tokens", (json_int_t)v[i].n, "created", (json_int_t)v[i].created,
                                              "last_used", (json_int_t)v[i].last_used, "resident", v[i].resident));
    free(v);
    rh_reply_json(c, 200, json_pack("{s:s,s:o}", "object", "list", "data", data));
}

/* GET /v1/sessions/{id}/export: everything needed to recreate the session (POST /v1/sessions/import). */
static void rh_s_export(rh_call *c, const char *id)
{
    router_http *h = c->h;
    int32_t n = 0, *toks = NULL;
    al_err e = router_session_get(h->r, id, rh_owner(c), &n, &toks);
    if (e != AL_OK) {
        rh_error_ra(c, e, al_errmsg(), e == AL_EOVERLOADED ? 1 : 0);
        return;
    }
    bool busy;
    rh_sess *s = rh_sess_get(h, id, &busy);
    if (!s || busy) {
        free(toks);
        rh_error_ra(c, s ? AL_EOVERLOADED : AL_ENOMEM, "session_id: busy with another request", 1);
        return;
    }
    json_t *j = rh_sess_state(s);
    rh_sess_put(h, s);
    json_t *t = json_array();
    for (int32_t i = 0; i < n; i++)
        json_array_append_new(t, json_integer(toks[i]));
    free(toks);
    json_object_set_new(j, "object", json_string("session.export"));
    json_object_set_new(j, "version", json_integer(1));
    json_object_set_new(j, "id", json_string(id));
    json_object_set_new(j, "model", json_string(h->r->cfg.router.model_name));
    json_object_set_new(j, "n_tokens", json_integer(n));
    json_object_set_new(j, "tokens", t);
    rh_reply_json(c, 200, j);
}

/* POST /v1/sessions/import: a session from an export, validated strictly; it gets a new id and
 * belongs to the caller. */
static void rh_s_import(rh_call *c)
{
    router_http *h = c->h;
    router *r = h->r;
    al_err e;
    json_t *body = rh_body_json(c, &e);
    if (!body) {
        rh_error(c, e, al_errmsg());
        return;
    }
    static const char *const keys[] = {"object", "version", "id", "model", "n_tokens", "tokens", "messages",
                                       "documents", "text", "results", NULL};
    int32_t *toks = NULL;
    rh_sess *s = NULL;
    size_t nt = 0;
    json_t *obj = json_object_get(body, "object"), *ver = json_object_get(body, "version");
    json_t *model = json_object_get(body, "model"), *tk = json_object_get(body, "tokens");
    json_t *ntj = json_object_get(body, "n_tokens");
    if ((e = rh_keys_only(body, keys, "import")) != AL_OK)
        goto out;
    if (obj && !(json_is_string(obj) && !strcmp(json_string_value(obj), "session.export"))) {
        e = ali_errf(AL_EINVAL, "import.object: expected \"session.export\"");
        goto out;
    }
    if (!json_is_integer(ver) || json_integer_value(ver) != 1) {
        e = ali_errf(AL_EINVAL, "import.version: expected 1 (the export format this router writes)");
        goto out;
    }
    if (json_object_get(body, "id") && !json_is_string(json_object_get(body, "id"))) {
        e = ali_errf(AL_EINVAL, "import.id: expected a string");
        goto out;
    }
    if (!json_is_string(model) || strcmp(json_string_value(model), r->cfg.router.model_name)) {
        e = ali_errf(AL_EINVAL, "import.model: expected \"%s\" (token ids belong to one model)",
                     r->cfg.router.model_name);
        goto out;
    }
    if (!json_is_array(tk)) {
        e = ali_errf(AL_EINVAL, "import.tokens: expected an array of token ids");
        goto out;
    }
    nt = json_array_size(tk);
    if (nt > ROUTER_MAX_REQ_TOKENS) {
        e = ali_errf(AL_EINVAL, "import.tokens: %zu tokens > max %d", nt, ROUTER_MAX_REQ_TOKENS);
        goto out;
    }
    if (ntj && (!json_is_integer(ntj) || json_integer_value(ntj) != (json_int_t)nt)) {
        e = ali_errf(AL_EINVAL, "import.n_tokens: expected %zu (the length of tokens)", nt);
        goto out;
    }
    if (!(toks = malloc(sizeof(int32_t) * (nt + 1)))) {
        e = ali_errf(AL_ENOMEM, "router: out of memory");
        goto out;
    }
    for (size_t i = 0; i < nt; i++) {
        json_t *v = json_array_get(tk, i);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX) {
            e = ali_errf(AL_EINVAL, "import.tokens[%zu]: expected a token id (integer >= 0)", i);
            goto out;
        }
        toks[i] = (int32_t)json_integer_value(v);
    }
    if ((e = router_check_tokens(r, "import.tokens", toks, nt)) != AL_OK) {
        if (e == AL_ERANGE) { /* a bad id, not a large body: 400 */
            char msg[300];
            snprintf(msg, sizeof msg, "%s", al_errmsg());
            e = ali_errf(AL_EINVAL, "%s", msg);
        }
        goto out;
    }
    if (!(s = calloc(1, sizeof *s))) {
        e = ali_errf(AL_ENOMEM, "router: out of memory");
        goto out;
    }
    if ((e = rh_sess_from_state(s, body, "import")) != AL_OK)
        goto out;
    char sid[64], base_id[64];
    if ((e = router_session_new(r, rh_owner(c), toks, nt, NULL, sid, base_id)) != AL_OK)
        goto out;
    rh_sess_add(h, s, sid);
    rh_reply_json(c, 200, json_pack("{s:s,s:s,s:s,s:i,s:i,s:s,s:b}", "id", sid, "object", "session", "model",
                                    r->cfg.router.model_name, "n_tokens", (json_int_t)nt, "messages", s->n,
                                    "base_instance", base_id, "imported", 1));
    s = NULL;
out:
    if (e != AL_OK)
        rh_error(c, e, al_errmsg());
    if (s)
        rh_sess_free(s);
    free(toks);
    json_decref(body);
}

/* /v1/sessions[/import | /{id}[/messages|/generate|/export|/intrinsics/{name}]] */
void rh_sessions(rh_call *c)
{
    char id[128] = "", sub[64] = "", name[128] = "";
    const char *p = c->path + 12;
    bool post = !strcmp(c->method, "POST"), get = !strcmp(c->method, "GET"), del = !strcmp(c->method, "DELETE");
    int parts = 0;
    if (*p == '/') {
        p++;
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        snprintf(id, sizeof id, "%.*s", (int)(n < sizeof id ? n : sizeof id - 1), p);
        parts = 1;
        if (e) {
            p = e + 1;
            e = strchr(p, '/');
            n = e ? (size_t)(e - p) : strlen(p);
            snprintf(sub, sizeof sub, "%.*s", (int)(n < sizeof sub ? n : sizeof sub - 1), p);
            parts = 2;
            if (e) {
                snprintf(name, sizeof name, "%s", e + 1);
                parts = 3;
            }
        }
    }
    if (parts == 0) {
        c->endpoint = "/v1/sessions";
        if (post)
            rh_s_create(c);
        else if (get)
            rh_s_list(c);
        else
            rh_error(c, AL_EINVAL, "method: use POST (create) or GET (list) /v1/sessions");
        return;
    }
    if (parts == 1 && !strcmp(id, "import")) {
        c->endpoint = "/v1/sessions/import";
        post ? rh_s_import(c) : rh_error(c, AL_EINVAL, "method: use POST /v1/sessions/import");
        return;
    }
    if (strlen(id) >= 64) {
        c->endpoint = "/v1/sessions/{id}";
        rh_error(c, AL_ENOTFOUND, "session_id: no such session (ids are at most 63 characters)");
        return;
    }
    if (parts == 1) {
        c->endpoint = "/v1/sessions/{id}";
        if (get)
            rh_s_get(c, id);
        else if (del)
            rh_s_delete(c, id);
        else
            rh_error(c, AL_EINVAL, "method: use GET or DELETE /v1/sessions/{id}");
    } else if (parts == 2 && !strcmp(sub, "messages")) {
        c->endpoint = "/v1/sessions/{id}/messages";
        post ? rh_s_messages(c, id) : rh_error(c, AL_EINVAL, "method: use POST");
    } else if (parts == 2 && !strcmp(sub, "export")) {
        c->endpoint = "/v1/sessions/{id}/export";
        get ? rh_s_export(c, id) : rh_error(c, AL_EINVAL, "method: use GET");
    } else if (parts == 2 && !strcmp(sub, "generate")) {
        c->endpoint = "/v1/sessions/{id}/generate";
        post ? rh_s_generate(c, id) : rh_error(c, AL_EINVAL, "method: use POST");
    } else if (parts == 3 && !strcmp(sub, "intrinsics") && name[0] && !strchr(name, '/')) {
        c->endpoint = "/v1/sessions/{id}/intrinsics/{name}";
        post ? rh_s_intrinsic(c, id, name) : rh_error(c, AL_EINVAL, "method: use POST");
    } else {
        c->endpoint = "other";
        rh_error(c, AL_ENOTFOUND, "path: no such session endpoint");
    }
}
