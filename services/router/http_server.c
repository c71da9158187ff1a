/* http_server.c: the router's HTTP/1.1 server: an epoll reactor thread accepts, reads heads and bodies under deadlines, hands complete requests to workers, sheds idle connections. */
#include "services/router/http_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "services/router/http_parse.h"

typedef enum { HS_HEAD, HS_BODY, HS_WORKER, HS_WRITE, HS_LINGER, HS_DEAD } hs_state;

struct hs_conn {
    hs_server *s;
    int fd;
    hs_state st;
    uint32_t ev;          /* events registered with epoll (0 = not registered) */
    char addr[64];
    char *in;             /* [in_cap]: the head being read, then pipelined bytes */
    size_t in_n, in_cap;
    void *req;            /* admitted request (until dispatch) */
    char *body;           /* [body_cap + 1] */
    size_t body_len, body_have, body_cap;
    double t_start, t_body, t_last, t_write;
    bool any;             /* bytes of the current request arrived */
    bool served;          /* a request was answered (idle timeout instead of header timeout) */
    bool keep, is_head, close_after, broken;
    char *out;            /* reactor-queued reply [out_n] */
    size_t out_n, out_off;
    hs_conn *prev, *next; /* reactor-owned connections, least recently active first */
    hs_conn *rnext;       /* return queue / dead list */
};

struct hs_server {
    hs_limits lim;
    hs_cb cb;
    int lfd, efd, ep, spare, port;
    pthread_t th;
    bool th_on;
    atomic_bool stop;
    hs_conn *head, *tail;
    int n_conns;
    atomic_int open;
    bool lpaused;
    double lresume;
    double last_scan;
    pthread_mutex_t mu;
    hs_conn *ret;  /* back from workers */
    hs_conn *dead; /* closed during this batch, freed after it */
};

#define HS_BUSY_BODY                                                                                             \
    "{\"error\":{\"code\":\"unavailable\",\"message\":\"router: too many open connections "                         \
    "(router.http_max_connections)\",\"type\":\"service_unavailable_error\"}}"
/* The 503 for a connection that cannot be taken (best effort, then closed). */
static void hs_busy_reply(int fd)
{
    static const char body[] = HS_BUSY_BODY;
    char msg[512];
    int n = snprintf(msg, sizeof msg,
                     "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
                     "Retry-After: 1\r\nContent-Length: %zu\r\n\r\n%s",
                     sizeof body - 1, body);
    if (send(fd, msg, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
        /* best effort: the client may be gone */
    }
}

/* ---- bookkeeping ------------------------------------------------------------------------------- */

static void hs_lru_remove(hs_server *s, hs_conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else if (s->head == c)
        s->head = c->next;
    else
        return; /* not listed */
    if (c->next)
        c->next->prev = c->prev;
    else
        s->tail = c->prev;
    c->prev = c->next = NULL;
}

static void hs_lru_add(hs_server *s, hs_conn *c)
{
    c->prev = s->tail;
    c->next = NULL;
    if (s->tail)
        s->tail->next = c;
    else
        s->head = c;
    s->tail = c;
}

static void hs_ep_set(hs_conn *c, uint32_t ev)
{
    if (c->ev == ev)
        return;
    struct epoll_event e = {.events = ev, .data.ptr = c};
    int op = !ev ? EPOLL_CTL_DEL : c->ev ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(c->s->ep, op, c->fd, &e) != 0 && op != EPOLL_CTL_DEL)
        AL_WARN("http: epoll_ctl: %s", strerror(errno));
    c->ev = ev;
}

static void hs_free_req(hs_conn *c)
{
    if (c->req && c->s->cb.drop)
        c->s->cb.drop(c->s->cb.ud, c->req);
    c->req = NULL;
    free(c->body);
    c->body = NULL;
    c->body_len = c->body_have = c->body_cap = 0;
}

/* Closes now (the fd is free at once); the struct is freed after the current batch of events. */
static void hs_close(hs_conn *c)
{
    hs_server *s = c->s;
    if (c->st == HS_DEAD)
        return;
    hs_ep_set(c, 0);
    hs_lru_remove(s, c);
    close(c->fd);
    c->fd = -1;
    hs_free_req(c);
    c->st = HS_DEAD;
    c->rnext = s->dead;
    s->dead = c;
    s->n_conns--;
    atomic_fetch_sub(&s->open, 1);
}

static void hs_reap(hs_server *s)
{
    while (s->dead) {
        hs_conn *c = s->dead;
        s->dead = c->rnext;
        free(c->in);
        free(c->out);
        free(c);
    }
}

static void hs_touch(hs_server *s, hs_conn *c, double now)
{
    c->t_last = now;
    hs_lru_remove(s, c);
    hs_lru_add(s, c);
}

/* Closes the least recently active connection that is waiting for a request head. */
static bool hs_evict(hs_server *s)
{
    for (hs_conn *c = s->head; c; c = c->next)
        if (c->st == HS_HEAD) {
            hs_close(c);
            return true;
        }
    return false;
}

static _Thread_local const hs_server *hs_reactor_of; /* set on the reactor thread */
static bool hs_on_reactor(const hs_server *s) { return hs_reactor_of == s; }

/* ---- writing ----------------------------------------------------------------------------------- */

static void hs_process(hs_conn *c, double now);

/* Reactor: after a reply went out, the next request (keep-alive) or a lingering close. */
static void hs_after_reply(hs_conn *c, double now)
{
    free(c->out);
    c->out = NULL;
    c->out_n = c->out_off = 0;
    if (c->close_after || !c->keep || atomic_load(&c->s->stop)) {
        /* lingering close: stop sending, read what the client still sends (so that the kernel does
         * not answer it with a reset that destroys the reply), close on EOF or after 2 s */
        shutdown(c->fd, SHUT_WR);
        hs_free_req(c);
        c->st = HS_LINGER;
        c->t_write = now;
        hs_ep_set(c, EPOLLIN);
        return;
    }
    c->st = HS_HEAD;
    c->any = false;
    c->served = true;
    c->close_after = false;
    hs_touch(c->s, c, now);
    hs_ep_set(c, EPOLLIN);
    hs_process(c, now);
}

static void hs_flush(hs_conn *c, double now)
{
    while (c->out_off < c->out_n) {
        ssize_t w = send(c->fd, c->out + c->out_off, c->out_n - c->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            c->out_off += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            hs_ep_set(c, EPOLLOUT);
            return;
        }
        hs_close(c);
        return;
    }
    hs_after_reply(c, now);
}

al_err hs_write(hs_conn *c, const void *p, size_t n)
{
    if (c->broken)
        return ali_errf(AL_ECLOSED, "client went away");
    double deadline = al_now() + c->s->lim.send_timeout_ms / 1000.0;
    const char *b = p;
    while (n) {
        ssize_t w = send(c->fd, b, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            b += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            double left = deadline - al_now();
            struct pollfd pf = {.fd = c->fd, .events = POLLOUT};
            if (left > 0 && poll(&pf, 1, (int)(left * 1000) + 1) >= 0)
                continue;
        }
        c->broken = true;
        return ali_errf(AL_ECLOSED, "client went away");
    }
    return AL_OK;
}

bool hs_keepalive(const hs_conn *c) { return c->keep && !atomic_load(&c->s->stop); }

al_err hs_respond(hs_conn *c, int status, const char *reason, const char *ctype, const char *extra, const void *body,
                  size_t len, bool close)
{
    close = close || !hs_keepalive(c);
    c->close_after |= close;
    char hdr[512];
    int hn = snprintf(hdr, sizeof hdr,
                      "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: %s\r\n%s\r\n", status,
                      reason, ctype, len, close ? "close" : "keep-alive", extra ? extra : "");
    if (hn < 0 || (size_t)hn >= sizeof hdr)
        return ali_errf(AL_EINTERNAL, "http: reply headers too long");
    if (c->is_head)
        len = 0;
    if (!hs_on_reactor(c->s)) {
        AL_TRY(hs_write(c, hdr, (size_t)hn));
        return len ? hs_write(c, body, len) : AL_OK;
    }
    /* reactor: queue and write without blocking */
    free(c->out);
    c->out = malloc((size_t)hn + len);
    if (!c->out) {
        hs_close(c);
        return ali_errf(AL_ENOMEM, "http: out of memory");
    }
    memcpy(c->out, hdr, (size_t)hn);
    if (len)
        memcpy(c->out + hn, body, len);
    c->out_n = (size_t)hn + len;
    c->out_off = 0;
    if (c->st == HS_WORKER) /* answered at dispatch: the reactor owns it again */
        hs_lru_add(c->s, c);
    c->st = HS_WRITE;
    c->t_write = al_now();
    hs_ep_set(c, EPOLLOUT); /* written on the next turn of the loop (never re-entering hs_process) */
    return AL_OK;
}

/* ---- reading ----------------------------------------------------------------------------------- */

static void hs_error(hs_conn *c, int status, const char *code, const char *msg)
{
    hs_free_req(c);
    c->s->cb.error(c->s->cb.ud, c, status, code, msg);
    if (c->st == HS_HEAD || c->st == HS_BODY) /* the callback did not answer */
        hs_close(c);
}

static void hs_dispatch(hs_conn *c)
{
    hs_server *s = c->s;
    c->body[c->body_len] = 0;
    char *body = c->body;
    size_t len = c->body_len;
    void *req = c->req;
    c->body = NULL;
    c->req = NULL;
    c->body_len = c->body_have = c->body_cap = 0;
    hs_ep_set(c, 0);
    hs_lru_remove(s, c);
    c->st = HS_WORKER;
    s->cb.dispatch(s->cb.ud, c, req, body, len); /* from here a worker may own c */
}

static bool hs_body_room(hs_conn *c)
{
    if (c->body_have < c->body_cap)
        return true;
    size_t cap = c->body_cap * 2;
    if (cap > c->body_len)
        cap = c->body_len;
    char *b = realloc(c->body, cap + 1);
    if (!b)
        return false;
    c->body = b;
    c->body_cap = cap;
    return true;
}

/* Parses what is buffered: a head (then admit, body), or waits for more. */
static void hs_process(hs_conn *c, double now)
{
    hs_server *s = c->s;
    if (c->st != HS_HEAD)
        return;
    if (!c->any) { /* blank lines before a request are allowed */
        size_t k = 0;
        while (k < c->in_n && (c->in[k] == '\r' || c->in[k] == '\n'))
            k++;
        memmove(c->in, c->in + k, c->in_n - k);
        c->in_n -= k;
        if (!c->in_n)
            return;
        c->any = true;
        c->t_start = now;
    }
    hs_parsed p;
    hs_perr pe;
    int rv = hs_parse_head(c->in, c->in_n, s->lim.max_url, s->lim.max_header, s->lim.max_body, &p, &pe);
    if (rv == 0)
        return;
    if (rv < 0) {
        hs_error(c, pe.status, pe.code, pe.msg);
        return;
    }
    c->keep = p.minor >= 1 ? !(p.conn_hdr && strcasestr(p.conn_hdr, "close"))
                           : (p.conn_hdr && strcasestr(p.conn_hdr, "keep-alive"));
    c->is_head = !strcmp(p.method, "HEAD");
    hs_head hd = {.method = p.method, .target = p.target, .auth = p.auth, .addr = c->addr,
                  .content_length = p.content_length, .has_length = p.has_length};
    bool cont = p.expect && !strcasecmp(p.expect, "100-continue");
    c->req = s->cb.admit(s->cb.ud, c, &hd);
    if (c->st == HS_DEAD)
        return;
    /* the head is consumed (admit's reply, if any, is already queued: it owns no buffer bytes) */
    memmove(c->in, c->in + p.head_len, c->in_n - p.head_len);
    c->in_n -= p.head_len;
    if (!c->req) {
        if (p.content_length)
            c->close_after = true; /* the body is not read: the connection cannot be reused */
        return;
    }
    c->body_len = p.content_length;
    c->body_cap = c->body_len < 65536 ? c->body_len : 65536;
    c->body = malloc(c->body_cap + 1);
    if (!c->body) {
        hs_error(c, 503, "unavailable", "router: out of memory");
        return;
    }
    size_t take = c->in_n < c->body_len ? c->in_n : c->body_len;
    if (take > c->body_cap) {
        char *b = realloc(c->body, take + 1);
        if (!b) {
            hs_error(c, 503, "unavailable", "router: out of memory");
            return;
        }
        c->body = b;
        c->body_cap = take;
    }
    memcpy(c->body, c->in, take);
    memmove(c->in, c->in + take, c->in_n - take);
    c->in_n -= take;
    c->body_have = take;
    if (c->body_have < c->body_len) {
        if (cont && !c->body_have) {
            static const char k100[] = "HTTP/1.1 100 Continue\r\n\r\n";
            if (send(c->fd, k100, sizeof k100 - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
                /* the client sends the body anyway after a while */
            }
        }
        c->st = HS_BODY;
        c->t_body = now;
        return;
    }
    hs_dispatch(c);
}

static void hs_readable(hs_conn *c, double now)
{
    hs_server *s = c->s;
    char *dst;
    size_t room;
    if (c->st == HS_LINGER) {
        char junk[4096];
        ssize_t r = recv(c->fd, junk, sizeof junk, MSG_DONTWAIT);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
            hs_close(c);
        return;
    }
    if (c->st == HS_BODY) {
        if (!hs_body_room(c)) {
            hs_error(c, 503, "unavailable", "router: out of memory");
            return;
        }
        dst = c->body + c->body_have;
        room = c->body_cap - c->body_have;
    } else {
        size_t want = s->lim.max_header + 1;
        if (c->in_n + 1 >= c->in_cap && c->in_cap < want) {
            size_t cap = c->in_cap ? c->in_cap * 4 : 2048;
            if (cap > want)
                cap = want;
            char *b = realloc(c->in, cap);
            if (!b) {
                hs_close(c);
                return;
            }
            c->in = b;
            c->in_cap = cap;
        }
        dst = c->in + c->in_n;
        room = c->in_cap - c->in_n - 1;
        if (!room) { /* a full buffer that did not parse: hs_process has answered already */
            hs_close(c);
            return;
        }
    }
    ssize_t r = recv(c->fd, dst, room, MSG_DONTWAIT);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (r <= 0) {
        hs_close(c);
        return;
    }
    hs_touch(s, c, now);
    if (c->st == HS_BODY) {
        c->body_have += (size_t)r;
        if (c->body_have == c->body_len)
            hs_dispatch(c);
        return;
    }
    c->in_n += (size_t)r;
    hs_process(c, now);
}

/* ---- accepting ---------------------------------------------------------------------------------- */

static void hs_new_conn(hs_server *s, int fd, const struct sockaddr_storage *sa, double now)
{
    hs_conn *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return;
    }
    c->s = s;
    c->fd = fd;
    c->st = HS_HEAD;
    c->t_last = c->t_start = now;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (sa->ss_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, c->addr, sizeof c->addr);
    else if (sa->ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, c->addr, sizeof c->addr);
    s->n_conns++;
    atomic_fetch_add(&s->open, 1);
    hs_lru_add(s, c);
    hs_ep_set(c, EPOLLIN);
}

static void hs_pause_listen(hs_server *s, double now)
{
    struct epoll_event e = {.events = 0, .data.ptr = &s->lfd};
    epoll_ctl(s->ep, EPOLL_CTL_MOD, s->lfd, &e);
    s->lpaused = true;
    s->lresume = now + 0.1;
}

static void hs_accept(hs_server *s, double now)
{
    for (int i = 0; i < 256; i++) {
        struct sockaddr_storage sa;
        socklen_t sl = sizeof sa;
        int fd = accept4(s->lfd, (struct sockaddr *)&sa, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* out of descriptors: make room by closing an idle connection; with none, answer 503
                 * through the spare descriptor; else stop listening for a moment (no spinning) */
                if (hs_evict(s))
                    continue;
                if (s->spare >= 0) {
                    close(s->spare);
                    s->spare = -1;
                    fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (fd >= 0) {
                        hs_busy_reply(fd);
                        close(fd);
                    }
                    s->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
                    if (fd >= 0 && s->spare >= 0)
                        continue;
                }
                hs_pause_listen(s, now);
            }
            return;
        }
        if (s->n_conns >= s->lim.max_connections && !hs_evict(s)) {
            hs_busy_reply(fd);
            close(fd);
            continue;
        }
        hs_new_conn(s, fd, &sa, now);
    }
}

/* ---- deadlines ---------------------------------------------------------------------------------- */

static void hs_scan(hs_server *s, double now)
{
    const hs_limits *l = &s->lim;
    char msg[200];
    for (hs_conn *c = s->head, *nx; c; c = nx) {
        nx = c->next;
        switch (c->st) {
        case HS_HEAD:
            if (!c->any) {
                int ms = c->served ? l->idle_timeout_ms : l->header_timeout_ms;
                if (now - c->t_last > ms / 1000.0)
                    hs_close(c); /* idle: a silent close, as every server does */
            } else if (now - c->t_start > l->header_timeout_ms / 1000.0) {
                snprintf(msg, sizeof msg, "headers: not complete within %d ms (router.http_header_timeout_ms)",
                         l->header_timeout_ms);
                hs_error(c, 408, "request_timeout", msg);
            }
            break;
        case HS_BODY: {
            double el = now - c->t_body;
            if (el > l->body_timeout_ms / 1000.0) {
                snprintf(msg, sizeof msg, "body: %zu of %zu bytes within %d ms (router.http_body_timeout_ms)",
                         c->body_have, c->body_len, l->body_timeout_ms);
                hs_error(c, 408, "request_timeout", msg);
            } else if (l->min_body_rate > 0 && el > 2 && (double)c->body_have < l->min_body_rate * (el - 2)) {
                snprintf(msg, sizeof msg,
                         "body: %zu of %zu bytes in %.1f s, slower than %d bytes/s (router.http_min_body_rate)",
                         c->body_have, c->body_len, el, l->min_body_rate);
                hs_error(c, 408, "request_timeout", msg);
            }
            break;
        }
        case HS_WRITE:
            if (now - c->t_write > l->send_timeout_ms / 1000.0)
                hs_close(c);
            break;
        case HS_LINGER:
            if (now - c->t_write > 2.0)
                hs_close(c);
            break;
        default:
            break;
        }
    }
}

/* ---- the reactor -------------------------------------------------------------------------------- */

static void hs_returns(hs_server *s, double now)
{
    uint64_t v;
    if (read(s->efd, &v, sizeof v) < 0) {
    }
    pthread_mutex_lock(&s->mu);
    hs_conn *list = s->ret;
    s->ret = NULL;
    pthread_mutex_unlock(&s->mu);
    while (list) {
        hs_conn *c = list;
        list = c->rnext;
        c->rnext = NULL;
        if (c->broken || c->close_after || !c->keep || atomic_load(&s->stop)) {
            hs_close(c);
            continue;
        }
        c->st = HS_HEAD;
        c->any = false;
        c->served = true;
        c->is_head = false;
        hs_lru_add(s, c);
        c->t_last = now;
        hs_ep_set(c, EPOLLIN);
        hs_process(c, now); /* pipelined bytes */
    }
}

static void *hs_main(void *arg)
{
    hs_server *s = arg;
    hs_reactor_of = s;
    struct epoll_event evs[256];
    while (!atomic_load(&s->stop)) {
        int n = epoll_wait(s->ep, evs, 256, 250);
        double now = al_now();
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == &s->lfd) {
                hs_accept(s, now);
            } else if (p == &s->efd) {
                hs_returns(s, now);
            } else {
                hs_conn *c = p;
                if (c->st == HS_DEAD || c->st == HS_WORKER)
                    continue;
                if (c->st == HS_WRITE) {
                    if (evs[i].events & (EPOLLERR | EPOLLHUP))
                        hs_close(c);
                    else
                        hs_flush(c, now);
                } else {
                    hs_readable(c, now);
                }
            }
        }
        hs_reap(s);
        if (s->lpaused && now >= s->lresume) {
            struct epoll_event e = {.events = EPOLLIN, .data.ptr = &s->lfd};
            epoll_ctl(s->ep, EPOLL_CTL_MOD, s->lfd, &e);
            s->lpaused = false;
        }
        if (now - s->last_scan >= 0.25) {
            s->last_scan = now;
            hs_scan(s, now);
            hs_reap(s);
        }
    }
    return NULL;
}

/* ---- lifecycle ---------------------------------------------------------------------------------- */

static al_err hs_listen(hs_server *s, const char *host, int port)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    int rv = getaddrinfo(host && *host ? host : NULL, ps, &hints, &ai);
    if (rv != 0)
        return ali_errf(AL_EINVAL, "router.http: host '%s': %s", host, gai_strerror(rv));
    int err = 0;
    for (int pass = 0; pass < 2 && s->lfd < 0; pass++) /* IPv4 first (as NNG did), then the others */
        for (struct addrinfo *a = ai; a && s->lfd < 0; a = a->ai_next) {
            if ((a->ai_family == AF_INET) != (pass == 0))
                continue;
            int fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            if (fd < 0) {
                err = errno;
                continue;
            }
            int one = 1;
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
            if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || listen(fd, 4096) != 0) {
                err = errno;
                close(fd);
                continue;
            }
            s->lfd = fd;
        }
    freeaddrinfo(ai);
    if (s->lfd < 0)
        return ali_errf(AL_EIO, "router.http: cannot listen on %s:%d: %s", host, port, strerror(err));
    struct sockaddr_storage sa;
    socklen_t sl = sizeof sa;
    if (getsockname(s->lfd, (struct sockaddr *)&sa, &sl) == 0)
        s->port = ntohs(sa.ss_family == AF_INET ? ((struct sockaddr_in *)&sa)->sin_port
                                                : ((struct sockaddr_in6 *)&sa)->sin6_port);
    return AL_OK;
}

al_err hs_start(hs_server **out, const char *host, int port, const hs_limits *lim, const hs_cb *cb)
{
    *out = NULL;
    hs_server *s = calloc(1, sizeof *s);
    if (!s)
        return ali_errf(AL_ENOMEM, "http: out of memory");
    s->lim = *lim;
    s->cb = *cb;
    s->lfd = s->efd = s->ep = s->spare = -1;
    pthread_mutex_init(&s->mu, NULL);
    al_err e = hs_listen(s, host, port);
    if (e == AL_OK) {
        s->ep = epoll_create1(EPOLL_CLOEXEC);
        s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        s->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (s->ep < 0 || s->efd < 0)
            e = ali_errf(AL_EIO, "http: epoll: %s", strerror(errno));
    }
    if (e == AL_OK) {
        struct epoll_event le = {.events = EPOLLIN, .data.ptr = &s->lfd}, ee = {.events = EPOLLIN, .data.ptr = &s->efd};
        if (epoll_ctl(s->ep, EPOLL_CTL_ADD, s->lfd, &le) != 0 || epoll_ctl(s->ep, EPOLL_CTL_ADD, s->efd, &ee) != 0)
            e = ali_errf(AL_EIO, "http: epoll: %s", strerror(errno));
    }
    if (e == AL_OK) {
        if (pthread_create(&s->th, NULL, hs_main, s) != 0)
            e = ali_errf(AL_EINTERNAL, "http: cannot start the reactor thread");
        else
            s->th_on = true;
    }
    if (e != AL_OK) {
        hs_stop(s);
        return e;
    }
    *out = s;
    return AL_OK;
}

int hs_port(const hs_server *s) { return s->port; }
int hs_open_connections(hs_server *s) { return atomic_load(&s->open); }

void hs_done(hs_conn *c, bool close)
{
    hs_server *s = c->s;
    if (close)
        c->close_after = true;
    pthread_mutex_lock(&s->mu);
    c->rnext = s->ret;
    s->ret = c;
    pthread_mutex_unlock(&s->mu);
    uint64_t one = 1;
    if (write(s->efd, &one, sizeof one) < 0) {
    }
}

void hs_stop(hs_server *s)
{
    if (!s)
        return;
    if (s->th_on) {
        atomic_store(&s->stop, true);
        uint64_t one = 1;
        if (write(s->efd, &one, sizeof one) < 0) {
        }
        pthread_join(s->th, NULL);
        s->th_on = false;
    }
    /* connections back from workers, then every open one */
    pthread_mutex_lock(&s->mu);
    hs_conn *list = s->ret;
    s->ret = NULL;
    pthread_mutex_unlock(&s->mu);
    while (list) {
        hs_conn *c = list;
        list = c->rnext;
        hs_close(c);
    }
    while (s->head)
        hs_close(s->head);
    hs_reap(s);
    if (s->n_conns)
        AL_WARN("http: %d connections still held by workers at shutdown", s->n_conns);
    if (s->lfd >= 0)
        close(s->lfd);
    if (s->efd >= 0)
        close(s->efd);
    if (s->ep >= 0)
        close(s->ep);
    if (s->spare >= 0)
        close(s->spare);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
