/* http_server.h: the router's event-driven HTTP/1.1 server: one epoll reactor reads requests with deadlines and limits, complete ones go to worker threads. */
#ifndef ROUTER_HTTP_SERVER_H
#define ROUTER_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"

typedef struct hs_server hs_server;
typedef struct hs_conn hs_conn;

/* Limits (router.http_* keys; docs/http.md). */
typedef struct hs_limits {
    int max_connections;   /* open connections; beyond: the longest-idle one is closed, else 503 */
    int header_timeout_ms; /* request line + headers must arrive within this */
    int body_timeout_ms;   /* the whole body must arrive within this */
    int min_body_rate;     /* bytes/s averaged over the body (after its first 2 s); 0 = off */
    int idle_timeout_ms;   /* keep-alive: close a connection idle this long between requests */
    int send_timeout_ms;   /* one write of a reply (or SSE chunk) */
    size_t max_header;     /* request line + headers, bytes (431) */
    size_t max_url;        /* request target, bytes (414) */
    size_t max_body;       /* Content-Length cap (413) */
} hs_limits;

/* A parsed request head (valid during hs_cb.admit: strings point into the connection's buffer). */
typedef struct hs_head {
    const char *method;   /* NUL-terminated */
    const char *target;   /* NUL-terminated, as sent (path + query) */
    const char *auth;     /* Authorization value or NULL */
    const char *addr;     /* the client's address, e.g. "127.0.0.1" */
    size_t content_length;
    bool has_length;      /* a Content-Length header was sent */
} hs_head;

typedef struct hs_cb {
    void *ud;
    /* Reactor thread, must not block: a complete head. Return a request object (kept for dispatch)
     * or NULL after answering it with hs_respond (e.g. 401). */
    void *(*admit)(void *ud, hs_conn *conn, const hs_head *hd);
    /* Reactor thread: the body is complete (malloc'd [len] + NUL, now the request's). Hand the
     * request to a worker (which ends with hs_done) or answer it here with hs_respond. */
    void (*dispatch)(void *ud, hs_conn *conn, void *req, char *body, size_t len);
    /* Reactor thread: the connection died before dispatch; free req. */
    void (*drop)(void *ud, void *req);
    /* Reactor thread: a protocol error the server answers itself (status, code, message): build the
     * JSON body, count it, and call hs_respond(..., close = true). */
    void (*error)(void *ud, hs_conn *conn, int status, const char *code, const char *msg);
} hs_cb;

/* Listens on host:port (numeric or a name; port 0 = any: read it with hs_port). */
al_err hs_start(hs_server **out, const char *host, int port, const hs_limits *lim, const hs_cb *cb);
int hs_port(const hs_server *s);
/* Stops the reactor and closes every connection; call after the workers are done (no hs_done
 * may follow). */
void hs_stop(hs_server *s);

/* A complete reply: status line, Content-Type, Content-Length, Connection, extra_headers (each
 * "Name: value\r\n", may be NULL), body (left out for HEAD). close: close after it. On the reactor
 * thread it is queued (non-blocking); on a worker it is written with the send timeout. */
al_err hs_respond(hs_conn *conn, int status, const char *reason, const char *ctype, const char *extra_headers,
                  const void *body, size_t len, bool close);
/* Raw bytes on a worker (SSE), with the send timeout; AL_ECLOSED when the client went away. */
al_err hs_write(hs_conn *conn, const void *p, size_t n);
/* The request asked for keep-alive (and the server is not stopping). */
bool hs_keepalive(const hs_conn *conn);
/* Worker: the request is finished; the connection goes back to the reactor (keep-alive) or is closed
 * (close: force it, e.g. after a streamed reply). */
void hs_done(hs_conn *conn, bool close);
/* Open connections now (for metrics / tests). */
int hs_open_connections(hs_server *s);

#endif
