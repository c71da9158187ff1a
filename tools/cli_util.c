/* cli_util.c: small helpers shared by the CLI subcommands. */
#include "tools/cli_util.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/ipc/rpc.h"

al_err cli_parse_int_list(const char *s, int32_t **out, int32_t *n)
{
    int32_t cap = 16, cnt = 0;
    int32_t *v = malloc(sizeof(int32_t) * (size_t)cap);
    if (!v)
        return ali_errf(AL_ENOMEM, "out of memory");
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (end == p || errno || x < INT32_MIN || x > INT32_MAX) {
            free(v);
            return ali_errf(AL_EINVAL, "bad integer list '%s' near '%s'", s, p);
        }
        if (cnt == cap) {
            cap *= 2;
            int32_t *nv = realloc(v, sizeof(int32_t) * (size_t)cap);
            if (!nv) {
                free(v);
                return ali_errf(AL_ENOMEM, "out of memory");
            }
            v = nv;
        }
        v[cnt++] = (int32_t)x;
        p = end;
        while (*p == ' ')
            p++;
        if (*p == ',')
            p++;
        else if (*p) {
            free(v);
            return ali_errf(AL_EINVAL, "bad integer list '%s' near '%s'", s, p);
        }
    }
    *out = v;
    *n = cnt;
    return AL_OK;
}

al_err cli_parse_long(const char *opt, const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long x = strtol(s, &end, 10);
    if (end == s || *end || errno)
        return ali_errf(AL_EINVAL, "%s: '%s' is not an integer", opt, s);
    if (x < lo || x > hi)
        return ali_errf(AL_ERANGE, "%s: %ld is out of range [%ld, %ld]", opt, x, lo, hi);
    *out = x;
    return AL_OK;
}

al_err cli_parse_float(const char *opt, const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double x = strtod(s, &end);
    if (end == s || *end || errno || !isfinite(x))
        return ali_errf(AL_EINVAL, "%s: '%s' is not a number", opt, s);
    if (x < lo || x > hi)
        return ali_errf(AL_ERANGE, "%s: %g is out of range [%g, %g]", opt, x, lo, hi);
    *out = x;
    return AL_OK;
}

const char *cli_value(const char *cmd, const char *known, int argc, char **argv, int *i)
{
    const char *o = argv[*i];
    size_t n = strlen(o);
    bool ok = false;
    for (const char *k = known; *k && !ok;) {
        size_t w = strcspn(k, " ");
        ok = w == n && !strncmp(k, o, n);
        k += w + (k[w] == ' ');
    }
    if (!ok) {
        fprintf(stderr, "alora %s: unknown option '%s' (alora %s --help lists them)\n", cmd, o, cmd);
        return NULL;
    }
    if (*i + 1 >= argc) {
        fprintf(stderr, "alora %s: option %s needs a value\n", cmd, argv[*i]);
        return NULL;
    }
    (*i)++;
    return argv[*i];
}

int cli_mkdirs(const char *dir)
{
    char buf[4096];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof buf)
        return -1;
    memcpy(buf, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == 0) {
            char c = buf[i];
            buf[i] = 0;
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                return -1;
            buf[i] = c;
        }
    }
    struct stat st;
    return stat(dir, &st) == 0 && S_ISDIR(st.st_mode) ? 0 : -1;
}

al_err cli_tls_env(const char *url)
{
    if (!al_rpc_url_tls(url))
        return AL_OK;
    const char *ca = getenv("ALORA_TLS_CA"), *cert = getenv("ALORA_TLS_CERT"), *key = getenv("ALORA_TLS_KEY");
    if (!ca || !cert || !key)
        return ali_errf(AL_EINVAL, "%s is tls+tcp://: set ALORA_TLS_CA, ALORA_TLS_CERT and ALORA_TLS_KEY (PEM files: "
                        "the cluster's CA, a certificate it signed and its key; `alora certs` makes them)%s%s%s",
                        url, ca ? "" : "; ALORA_TLS_CA is unset", cert ? "" : "; ALORA_TLS_CERT is unset",
                        key ? "" : "; ALORA_TLS_KEY is unset");
    return al_rpc_tls_setup(ca, cert, key);
}
