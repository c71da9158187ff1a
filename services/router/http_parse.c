/* http_parse.c: parses an HTTP/1.x request head in place: request line, version, limits (414/431/413), the headers the router uses. */
#include "services/router/http_parse.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static int hs_fail(hs_perr *e, int status, const char *code, const char *fmt, ...)
{
    e->status = status;
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return -1;
}

static bool hs_tchar(int c) /* RFC 9110 token character */
{
    return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* "HTTP/x.y" -> 1 (major 1), 2 (another major: 505), 0 (not a version). */
static int hs_version(const char *v, int *minor)
{
    if (strncmp(v, "HTTP/", 5) != 0 || !isdigit((unsigned char)v[5]))
        return 0;
    if (v[6] == 0) /* "HTTP/2" */
        return v[5] == '1' ? 0 : 2;
    if (v[6] != '.' || !isdigit((unsigned char)v[7]) || v[8] != 0)
        return 0;
    *minor = v[7] - '0';
    return v[5] == '1' ? 1 : 2;
}

/* The request line [s, s+len) (no line end): method SP target SP version. */
static int hs_request_line(char *s, size_t len, size_t max_url, hs_parsed *p, hs_perr *e)
{
    s[len] = 0;
    char *sp1 = strchr(s, ' ');
    char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (!sp1)
        return hs_fail(e, 400, "invalid_argument", "request line: expected 'METHOD /path HTTP/1.1'");
    size_t tl = (size_t)((sp2 ? sp2 : s + len) - (sp1 + 1));
    if (tl > max_url)
        return hs_fail(e, 414, "uri_too_long", "request line: the URL is %zu bytes, over the limit of %zu bytes "
                       "(router.http_max_url)", tl, max_url);
    if (!sp2)
        return hs_fail(e, 400, "invalid_argument",
                       "request line: no HTTP version (HTTP/0.9 requests are not supported; send HTTP/1.1)");
    *sp1 = *sp2 = 0;
    char *ver = sp2 + 1;
    if (strchr(ver, ' '))
        return hs_fail(e, 400, "invalid_argument", "request line: expected 'METHOD /path HTTP/1.1'");
    int minor = 0, v = hs_version(ver, &minor);
    if (v == 2)
        return hs_fail(e, 505, "http_version_not_supported", "request line: %.16s is not supported (use HTTP/1.1)",
                       ver);
    if (v == 0)
        return hs_fail(e, 400, "invalid_argument", "request line: bad HTTP version '%.16s'", ver);
    size_t ml = (size_t)(sp1 - s);
    bool mok = ml > 0 && ml < 16;
    for (size_t i = 0; mok && i < ml; i++)
        mok = hs_tchar((unsigned char)s[i]);
    if (!mok)
        return hs_fail(e, 400, "invalid_argument", "request line: bad method");
    char *t = sp1 + 1;
    if (t[0] != '/')
        return hs_fail(e, 400, "invalid_argument", "request line: the target must be a path starting with '/'");
    for (char *q = t; *q; q++)
        if ((unsigned char)*q <= 0x20 || *q == 0x7f)
            return hs_fail(e, 400, "invalid_argument", "request line: control character in the URL");
    p->method = s;
    p->target = t;
    p->minor = minor;
    return 0;
}

static char *hs_trim(char *v, char *end)
{
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
        end--;
    *end = 0;
    return v;
}

static int hs_header(char *line, char *end, size_t max_body, hs_parsed *p, hs_perr *e)
{
    if (line[0] == ' ' || line[0] == '\t')
        return hs_fail(e, 400, "invalid_argument", "header: obsolete line folding is not allowed");
    char *colon = memchr(line, ':', (size_t)(end - line));
    if (!colon || colon == line)
        return hs_fail(e, 400, "invalid_argument", "header: malformed line (expected 'Name: value')");
    for (char *q = line; q < colon; q++)
        if (!hs_tchar((unsigned char)*q))
            return hs_fail(e, 400, "invalid_argument", "header: bad character in a header name");
    *colon = 0;
    char *v = hs_trim(colon + 1, end);
    for (char *q = v; *q; q++)
        if ((unsigned char)*q < 0x20 && *q != '\t')
            return hs_fail(e, 400, "invalid_argument", "header %.40s: control character in the value", line);
    if (!strcasecmp(line, "Content-Length")) {
        size_t n = 0;
        bool big = false;
        if (!*v)
            return hs_fail(e, 400, "invalid_argument", "header: empty Content-Length");
        for (char *q = v; *q; q++) {
            if (!isdigit((unsigned char)*q))
                return hs_fail(e, 400, "invalid_argument",
                               "header: Content-Length '%.24s' is not a non-negative integer", v);
            if (n > ((size_t)1 << 50))
                big = true;
            else
                n = n * 10 + (size_t)(*q - '0');
        }
        if (p->has_length && (big || n != p->content_length))
            return hs_fail(e, 400, "invalid_argument", "header: conflicting Content-Length headers");
        if (big || n > max_body)
            return hs_fail(e, 413, "request_too_large",
                           "body: %.24s bytes exceeds the limit of %zu bytes (router.max_body)", v, max_body);
        p->content_length = n;
        p->has_length = true;
    } else if (!strcasecmp(line, "Transfer-Encoding")) {
        if (strcasecmp(v, "identity"))
            return hs_fail(e, 400, "invalid_argument",
                           "body: chunked request bodies are not supported; send Content-Length");
    } else if (!strcasecmp(line, "Authorization")) {
        p->auth = v;
    } else if (!strcasecmp(line, "Connection")) {
        p->conn_hdr = v;
    } else if (!strcasecmp(line, "Expect")) {
        p->expect = v;
    }
    return 0;
}

int hs_parse_head(char *buf, size_t n, size_t max_url, size_t max_header, size_t max_body, hs_parsed *p,
                  hs_perr *e)
{
    memset(p, 0, sizeof *p);
    if (!n)
        return 0;
    char *nl = memchr(buf, '\n', n);
    size_t scan = nl ? (size_t)(nl - buf) : n;
    if (memchr(buf, 0, scan))
        return hs_fail(e, 400, "invalid_argument", "request line: NUL byte");
    if (!nl) {
        if (n > max_url + 32 || n >= max_header)
            return hs_fail(e, n > max_url ? 414 : 431, n > max_url ? "uri_too_long" : "headers_too_large",
                           n > max_url ? "request line: the URL is over the limit of %zu bytes (router.http_max_url)"
                                       : "headers: over the limit of %zu bytes (router.http_max_header)",
                           n > max_url ? max_url : max_header);
        return 0;
    }
    /* the request line is complete: answer a bad version or URL before waiting for the headers */
    char *rl_end = nl > buf && nl[-1] == '\r' ? nl - 1 : nl;
    char save = *rl_end;
    hs_parsed tmp;
    memset(&tmp, 0, sizeof tmp);
    if (hs_request_line(buf, (size_t)(rl_end - buf), max_url, &tmp, e) < 0)
        return -1;
    /* undo the NUL-splitting until the head is complete */
    buf[strlen(buf)] = ' ';
    buf[strlen(buf)] = ' ';
    *rl_end = save;
    /* the head's end: an empty line */
    char *end = NULL;
    for (char *q = nl; q;) {
        char *r = q + 1;
        if (r < buf + n && *r == '\n') {
            end = r + 1;
            break;
        }
        if (r + 1 < buf + n && r[0] == '\r' && r[1] == '\n') {
            end = r + 2;
            break;
        }
        if (r >= buf + n)
            break;
        q = memchr(r, '\n', (size_t)(buf + n - r));
    }
    size_t have = end ? (size_t)(end - buf) : n;
    if (memchr(buf, 0, have))
        return hs_fail(e, 400, "invalid_argument", "header: NUL byte in the request head");
    if (have > max_header || (!end && n >= max_header))
        return hs_fail(e, 431, "headers_too_large", "headers: over the limit of %zu bytes (router.http_max_header)",
                       max_header);
    if (!end)
        return 0;
    if (hs_request_line(buf, (size_t)(rl_end - buf), max_url, p, e) < 0)
        return -1;
    char *line = nl + 1;
    while (line < end) {
        char *le = memchr(line, '\n', (size_t)(end - line));
        char *ve = le > line && le[-1] == '\r' ? le - 1 : le;
        if (ve == line) /* the blank line */
            break;
        *le = 0;
        if (hs_header(line, ve, max_body, p, e) < 0)
            return -1;
        line = le + 1;
    }
    p->head_len = (size_t)(end - buf);
    return 1;
}
