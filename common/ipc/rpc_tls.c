/* rpc_tls.c: mutual TLS for tls+tcp:// RPC: the process's CA / certificate / key, NNG TLS configs for listeners and dialers. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/supplemental/tls/tls.h>

#include "common/ipc/rpc_int.h"
#include "common/util.h"

/* The PEM texts (read once by al_rpc_tls_setup), under ali_tls_mu. */
static pthread_mutex_t ali_tls_mu = PTHREAD_MUTEX_INITIALIZER;
static char *ali_tls_ca, *ali_tls_cert, *ali_tls_key;

static al_err ali_read_pem(const char *what, const char *path, char **out)
{
    *out = NULL;
    if (!path || !*path)
        return ali_errf(AL_EINVAL, "%s: no file given", what);
    FILE *f = fopen(path, "rb");
    if (!f)
        return ali_errf(AL_ENOTFOUND, "%s: %s: cannot open (%s)", what, path, strerror(errno));
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? 2 * cap : 8192;
            char *nb = cap > (1u << 20) ? NULL : realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return ali_errf(AL_EFORMAT, "%s: %s: larger than 1 MiB, not a PEM file", what, path);
            }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, 4096, f);
        n += r;
        if (r < 4096)
            break;
    }
    fclose(f);
    buf[n] = 0;
    if (!strstr(buf, "-----BEGIN ")) {
        free(buf);
        return ali_errf(AL_EFORMAT, "%s: %s: not a PEM file (no -----BEGIN line)", what, path);
    }
    *out = buf;
    return AL_OK;
}

/* A config for one listener (server) or dialer (client, checking the server's name when given). */
static al_err ali_tls_config(bool server, const char *server_name, const char *ca, const char *cert,
                             const char *key, nng_tls_config **out)
{
    nng_tls_config *c;
    int rv = nng_tls_config_alloc(&c, server ? NNG_TLS_MODE_SERVER : NNG_TLS_MODE_CLIENT);
    if (rv != 0)
        return ali_errf(AL_EIO, "tls: %s", nng_strerror(rv));
    const char *what = "ca";
    rv = nng_tls_config_ca_chain(c, ca, NULL);
    if (rv == 0)
        what = "cert/key", rv = nng_tls_config_own_cert(c, cert, key, NULL);
    if (rv == 0)
        what = "auth mode", rv = nng_tls_config_auth_mode(c, NNG_TLS_AUTH_MODE_REQUIRED); /* both sides verify */
    if (rv == 0 && server_name && *server_name)
        what = "server name", rv = nng_tls_config_server_name(c, server_name);
    if (rv != 0) {
        nng_tls_config_free(c);
        return ali_errf(AL_EFORMAT, "tls: %s: %s", what, nng_strerror(rv));
    }
    *out = c;
    return AL_OK;
}

al_err al_rpc_tls_setup(const char *ca_file, const char *cert_file, const char *key_file)
{
    char *ca = NULL, *cert = NULL, *key = NULL;
    al_err e = ali_read_pem("tls.ca", ca_file, &ca);
    if (e == AL_OK)
        e = ali_read_pem("tls.cert", cert_file, &cert);
    if (e == AL_OK)
        e = ali_read_pem("tls.key", key_file, &key);
    nng_tls_config *probe = NULL;
    if (e == AL_OK && (e = ali_tls_config(true, NULL, ca, cert, key, &probe)) != AL_OK)
        e = ali_errf(e, "%s (tls.ca %s, tls.cert %s, tls.key %s)", al_errmsg(), ca_file, cert_file, key_file);
    if (probe)
        nng_tls_config_free(probe);
    if (e != AL_OK) {
        free(ca);
        free(cert);
        free(key);
        return e;
    }
    pthread_mutex_lock(&ali_tls_mu);
    free(ali_tls_ca);
    free(ali_tls_cert);
    free(ali_tls_key);
    ali_tls_ca = ca, ali_tls_cert = cert, ali_tls_key = key;
    pthread_mutex_unlock(&ali_tls_mu);
    return AL_OK;
}

void al_rpc_tls_clear(void)
{
    pthread_mutex_lock(&ali_tls_mu);
    free(ali_tls_ca);
    free(ali_tls_cert);
    if (ali_tls_key)
        memset(ali_tls_key, 0, strlen(ali_tls_key));
    free(ali_tls_key);
    ali_tls_ca = ali_tls_cert = ali_tls_key = NULL;
    pthread_mutex_unlock(&ali_tls_mu);
}

bool al_rpc_url_tls(const char *url) { return url && strncmp(url, "tls+tcp", 7) == 0; }

al_err ali_tls_for(const char *url, bool server, nng_tls_config **out)
{
    *out = NULL;
    char host[256] = "";
    const char *p = strstr(url, "://");
    if (p && !server) { /* the host the server's certificate must name */
        p += 3;
        size_t k = p[0] == '[' ? strcspn(p + 1, "]") : strcspn(p, ":/");
        const char *h = p[0] == '[' ? p + 1 : p;
        if (k >= sizeof host)
            k = sizeof host - 1;
        memcpy(host, h, k);
        host[k] = 0;
        /* a wildcard listen address dialed as is (a worker dialing base.listen = tls+tcp://0.0.0.0:P)
         * reaches this host: its certificate must name localhost */
        if (!host[0] || !strcmp(host, "0.0.0.0") || !strcmp(host, "::") || !strcmp(host, "*"))
            snprintf(host, sizeof host, "localhost");
    }
    pthread_mutex_lock(&ali_tls_mu);
    al_err e;
    if (!ali_tls_ca)
        e = ali_errf(AL_EINVAL,
                     "rpc: %s: tls+tcp:// needs a CA, a certificate and its key (tls.ca, tls.cert, tls.key in the "
                     "config; ALORA_TLS_CA, ALORA_TLS_CERT, ALORA_TLS_KEY for the CLI)",
                     url);
    else
        e = ali_tls_config(server, host, ali_tls_ca, ali_tls_cert, ali_tls_key, out);
    pthread_mutex_unlock(&ali_tls_mu);
    return e;
}
