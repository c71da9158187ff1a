/* http_parse.h: parses an HTTP/1.x request head in place (request line, the headers the router uses, limits). */
#ifndef ROUTER_HTTP_PARSE_H
#define ROUTER_HTTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>

typedef struct hs_parsed {
    char *method, *target, *auth, *conn_hdr, *expect; /* NUL-terminated, in the buffer */
    int minor;              /* HTTP/1.<minor> */
    size_t content_length;
    bool has_length;
    size_t head_len;        /* bytes of the head, blank line included */
} hs_parsed;

/* A parse failure: the status to answer with, an error code and a message naming the problem. */
typedef struct hs_perr {
    int status;
    const char *code;
    char msg[160];
} hs_perr;

/* buf[0..n) holds what arrived of a request (buf must have room for one more byte). Returns 1 with
 * *p filled (the head is NUL-split in place), 0 when more bytes are needed, -1 with *e set. max_url:
 * request-target cap (414); max_header: head cap (431); max_body: Content-Length cap (413). */
int hs_parse_head(char *buf, size_t n, size_t max_url, size_t max_header, size_t max_body, hs_parsed *p,
                  hs_perr *e);

#endif
