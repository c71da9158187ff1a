/* http_parse_test.c: the request-head parser (http_parse.c): fields, incremental arrival, every edge's status (400/413/414/431/505). */
#include "al_test.h"

#include "services/router/http_parse.h"

#define MAX_URL 256
#define MAX_HDR 1024
#define MAX_BODY 4096

/* Parses s (a copy); returns the result, *p and *e filled. */
static int parse(const char *s, size_t n, hs_parsed *p, hs_perr *e, char **keep)
{
    char *b = malloc(n + 1);
    memcpy(b, s, n);
    b[n] = 0;
    int rv = hs_parse_head(b, n, MAX_URL, MAX_HDR, MAX_BODY, p, e);
    *keep = b;
    return rv;
}

static void test_fields(void **state)
{
    const char *req = "POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n"
                      "authorization:  Bearer k-123  \r\nConnection: close\r\nExpect: 100-continue\r\n\r\n{\"a\":1}";
    hs_parsed p;
    hs_perr e;
    char *b;
    assert_int_equal(parse(req, strlen(req), &p, &e, &b), 1);
    assert_string_equal(p.method, "POST");
    assert_string_equal(p.target, "/v1/chat/completions?x=1");
    assert_string_equal(p.auth, "Bearer k-123");
    assert_string_equal(p.conn_hdr, "close");
    assert_string_equal(p.expect, "100-continue");
    assert_int_equal(p.minor, 1);
    assert_true(p.has_length);
    assert_int_equal(p.content_length, 12);
    assert_int_equal(p.head_len, strlen(req) - strlen("{\"a\":1}"));
    free(b);
    /* bare LF line ends, HTTP/1.0, no body */
    const char *r10 = "GET /healthz HTTP/1.0\nHost: a\n\n";
    assert_int_equal(parse(r10, strlen(r10), &p, &e, &b), 1);
    assert_int_equal(p.minor, 0);
    assert_false(p.has_length);
    assert_int_equal(p.head_len, strlen(r10));
    free(b);
}

/* Arriving one byte at a time: 0 (more) until the last byte of the head, then 1. */
static void test_incremental(void **state)
{
    const char *req = "GET /healthz HTTP/1.1\r\nHost: a\r\nX-Long: abcdefghijklmnop\r\n\r\n";
    size_t n = strlen(req);
    char buf[256];
    for (size_t k = 1; k <= n; k++) {
        memcpy(buf, req, k);
        hs_parsed p;
        hs_perr e;
        int rv = hs_parse_head(buf, k, MAX_URL, MAX_HDR, MAX_BODY, &p, &e);
        assert_int_equal(rv, k == n ? 1 : 0);
    }
}

static void expect(const char *req, size_t n, int status, const char *code, const char *needle)
{
    hs_parsed p;
    hs_perr e;
    char *b;
    int rv = parse(req, n, &p, &e, &b);
    free(b);
    if (rv != -1 || e.status != status || strcmp(e.code, code) || !strstr(e.msg, needle))
        fail_msg("%.40s...: rv %d status %d code %s msg '%s' (want %d %s '%s')", req, rv, rv < 0 ? e.status : 0,
                 rv < 0 ? e.code : "-", rv < 0 ? e.msg : "", status, code, needle);
}
#define EXPECT(s, st, code, needle) expect(s, sizeof(s) - 1, st, code, needle)

static void test_errors(void **state)
{
    EXPECT("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400, "invalid_argument", "Content-Length '-1'");
    EXPECT("POST / HTTP/1.1\r\nContent-Length: \r\n\r\n", 400, "invalid_argument", "empty Content-Length");
    EXPECT("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400, "invalid_argument",
           "conflicting");
    EXPECT("POST / HTTP/1.1\r\nContent-Length: 4097\r\n\r\n", 413, "request_too_large", "4097 bytes");
    EXPECT("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", 413, "request_too_large",
           "router.max_body");
    EXPECT("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "invalid_argument", "chunked");
    EXPECT("GET /healthz\r\n", 400, "invalid_argument", "HTTP/0.9");
    EXPECT("GET /a HTTP/1.1\r\nX: a\0b\r\n\r\n", 400, "invalid_argument", "NUL");
    EXPECT("GET /a\0 HTTP/1.1\r\n\r\n", 400, "invalid_argument", "NUL");
    EXPECT("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, "http_version_not_supported", "HTTP/2.0");
    EXPECT("GET / HTTP/3\r\n\r\n", 505, "http_version_not_supported", "HTTP/3");
    EXPECT("GET / HTTP/1.x\r\n\r\n", 400, "invalid_argument", "bad HTTP version");
    EXPECT("GET / FTP/1.1\r\n\r\n", 400, "invalid_argument", "bad HTTP version");
    EXPECT("G(T / HTTP/1.1\r\n\r\n", 400, "invalid_argument", "bad method");
    EXPECT("GET a HTTP/1.1\r\n\r\n", 400, "invalid_argument", "starting with '/'");
    EXPECT("GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", 400, "invalid_argument", "folding");
    EXPECT("GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400, "invalid_argument", "malformed");
    EXPECT("GET / HTTP/1.1\r\nBad Name: v\r\n\r\n", 400, "invalid_argument", "header name");
    EXPECT("GET / HTTP/1.1\r\nX: a\x01\r\n\r\n", 400, "invalid_argument", "control character");
}

static void test_limits(void **state)
{
    /* URL over MAX_URL: 414 as soon as the request line is complete, or once MAX_URL + 32 bytes
     * arrived without a line end */
    char req[2048];
    int n = snprintf(req, sizeof req, "GET /%0*d HTTP/1.1\r\n", MAX_URL, 0);
    expect(req, (size_t)n, 414, "uri_too_long", "router.http_max_url");
    n = snprintf(req, sizeof req, "GET /%0*d", MAX_URL + 40, 0);
    expect(req, (size_t)n, 414, "uri_too_long", "router.http_max_url");
    /* a URL of exactly MAX_URL is fine */
    n = snprintf(req, sizeof req, "GET /%0*d HTTP/1.1\r\n\r\n", MAX_URL - 1, 0);
    hs_parsed p;
    hs_perr e;
    char *b;
    assert_int_equal(parse(req, (size_t)n, &p, &e, &b), 1);
    free(b);
    /* headers over MAX_HDR: 431, complete or not */
    n = snprintf(req, sizeof req, "GET / HTTP/1.1\r\nX: %0*d\r\n\r\n", MAX_HDR, 0);
    expect(req, (size_t)n, 431, "headers_too_large", "router.http_max_header");
    n = snprintf(req, sizeof req, "GET / HTTP/1.1\r\nX: %0*d", MAX_HDR, 0);
    expect(req, (size_t)n, 431, "headers_too_large", "router.http_max_header");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_incremental),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
