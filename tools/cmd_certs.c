/* cmd_certs.c: `alora certs`: a private CA and one certificate per role (base, router, worker, client) for tls+tcp:// RPC, made with the openssl CLI. */
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tools/cli_util.h"
#include "tools/cmds.h"

extern char **environ;

#define CERTS_VALUE_OPTS "--out --hosts --days --openssl"

static void certs_usage(FILE *f)
{
    fprintf(f,
            "usage: alora certs --out DIR [--hosts a,b,...] [--days N] [--force] [--openssl PATH]\n"
            "Makes DIR/ca.pem + ca.key (a private CA) and, signed by it, <role>.pem + <role>.key for\n"
            "base, router, worker and client (EC P-256, serverAuth + clientAuth). Each certificate names\n"
            "localhost, 127.0.0.1 and every --hosts entry (the hosts the bases and the router are dialed\n"
            "at). Keys are 0600, DIR 0700. Prints the config lines for the cluster file:\n"
            "tls = { ca = \"DIR/ca.pem\"; base_cert = ...; base_key = ...; ... }; and the ALORA_TLS_*\n"
            "variables for `alora invoke` / `alora status`. Needs the openssl CLI (Debian: openssl).\n"
            "--force overwrites existing files.\n");
}

/* Runs argv (no shell); its output goes to log. 0 on success. */
static int certs_run(char *const argv[], const char *log)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0600);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        fprintf(stderr, "alora certs: cannot run %s: %s (Debian: apt-get install openssl)\n", argv[0], strerror(rc));
        return -1;
    }
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "alora certs: %s %s failed; its output (%s):\n", argv[0], argv[1], log);
        char cmd[1200];
        snprintf(cmd, sizeof cmd, "tail -n 20 '%s' >&2", log);
        if (system(cmd) != 0)
            fprintf(stderr, "(unreadable)\n");
        return -1;
    }
    return 0;
}

static bool certs_is_ip(const char *h)
{
    if (strchr(h, ':'))
        return true; /* IPv6 */
    for (const char *p = h; *p; p++)
        if (!((*p >= '0' && *p <= '9') || *p == '.'))
            return false;
    return *h != 0;
}

/* The subjectAltName list: localhost, 127.0.0.1, ::1 and the hosts (IPs both as IP and as DNS names:
 * mbedTLS 2.28, NNG's TLS, matches the dialed host only against DNS names). */
static int certs_san(const char *hosts, char *out, size_t cap)
{
    int k = snprintf(out, cap, "DNS:localhost,IP:127.0.0.1,DNS:127.0.0.1,IP:::1");
    if (!hosts || !*hosts)
        return 0;
    char *dup = strdup(hosts), *save = NULL;
    if (!dup)
        return -1;
    for (char *h = strtok_r(dup, ",", &save); h; h = strtok_r(NULL, ",", &save)) {
        while (*h == ' ')
            h++;
        if (!*h)
            continue;
        for (const char *p = h; *p; p++)
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '.' ||
                  *p == '-' || *p == ':' || *p == '*')) {
                fprintf(stderr, "alora certs: --hosts: '%s' is not a host name or address\n", h);
                free(dup);
                return -1;
            }
        if (certs_is_ip(h))
            k += snprintf(out + k, cap - (size_t)k, ",IP:%s,DNS:%s", h, h);
        else
            k += snprintf(out + k, cap - (size_t)k, ",DNS:%s", h);
        if ((size_t)k >= cap) {
            fprintf(stderr, "alora certs: --hosts: too many hosts\n");
            free(dup);
            return -1;
        }
    }
    free(dup);
    return 0;
}

int cmd_certs(int argc, char **argv)
{
    const char *out = NULL, *hosts = NULL, *openssl = "openssl";
    long days = 825;
    bool force = false;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v;
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
            certs_usage(stdout);
            return 0;
        }
        if (!strcmp(o, "--force")) {
            force = true;
            continue;
        }
        if (!(v = cli_value("certs", CERTS_VALUE_OPTS, argc, argv, &i)))
            return 2;
        if (!strcmp(o, "--out"))
            out = v;
        else if (!strcmp(o, "--hosts"))
            hosts = v;
        else if (!strcmp(o, "--openssl"))
            openssl = v;
        else if (!strcmp(o, "--days")) {
            if (cli_parse_long(o, v, 1, 36500, &days) != AL_OK) {
                fprintf(stderr, "alora certs: %s\n", al_errmsg());
                return 2;
            }
        }
    }
    if (!out) {
        fprintf(stderr, "alora certs: --out DIR is required\n");
        certs_usage(stderr);
        return 2;
    }
    char san[4096];
    if (certs_san(hosts, san, sizeof san) != 0)
        return 2;
    if (cli_mkdirs(out) != 0 || chmod(out, 0700) != 0) {
        fprintf(stderr, "alora certs: --out %s: %s\n", out, strerror(errno));
        return 1;
    }
    static const char *const roles[] = {"base", "router", "worker", "client"};
    char p[1024];
    if (!force) {
        const char *names[] = {"ca.pem", "base.pem", "router.pem", "worker.pem", "client.pem"};
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            snprintf(p, sizeof p, "%s/%s", out, names[i]);
            if (access(p, F_OK) == 0) {
                fprintf(stderr, "alora certs: %s exists (--force to replace every file)\n", p);
                return 1;
            }
        }
    }
    char log[1024], ca[1024], cakey[1024], ext[1024], ds[32];
    snprintf(log, sizeof log, "%s/openssl.log", out);
    snprintf(ca, sizeof ca, "%s/ca.pem", out);
    snprintf(cakey, sizeof cakey, "%s/ca.key", out);
    snprintf(ext, sizeof ext, "%s/ext.cnf", out);
    snprintf(ds, sizeof ds, "%ld", days);
    unlink(log);
    mode_t old = umask(077); /* keys are 0600 */
    int rc = 1;
    {
        char *const a[] = {(char *)openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                           "-nodes", "-keyout", cakey, "-out", ca, "-days", ds, "-subj", "/CN=alora cluster CA",
                           "-addext", "basicConstraints=critical,CA:TRUE", "-addext",
                           "keyUsage=critical,keyCertSign,cRLSign", NULL};
        if (certs_run(a, log) != 0)
            goto done;
    }
    FILE *f = fopen(ext, "w");
    if (!f || fprintf(f,
                      "basicConstraints = critical,CA:FALSE\n"
                      "keyUsage = critical,digitalSignature,keyAgreement\n"
                      "extendedKeyUsage = serverAuth,clientAuth\n"
                      "subjectAltName = %s\n",
                      san) < 0 || fclose(f) != 0) {
        fprintf(stderr, "alora certs: %s: %s\n", ext, strerror(errno));
        goto done;
    }
    for (size_t r = 0; r < sizeof roles / sizeof roles[0]; r++) {
        char key[1024], csr[1024], crt[1024], subj[64], serial[40];
        snprintf(key, sizeof key, "%s/%s.key", out, roles[r]);
        snprintf(csr, sizeof csr, "%s/%s.csr", out, roles[r]);
        snprintf(crt, sizeof crt, "%s/%s.pem", out, roles[r]);
        snprintf(subj, sizeof subj, "/CN=alora-%s", roles[r]);
        uint8_t raw[15];
        if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw)
            goto done;
        int k = snprintf(serial, sizeof serial, "0x");
        raw[0] &= 0x7f; /* positive */
        for (size_t i = 0; i < sizeof raw; i++)
            k += snprintf(serial + k, sizeof serial - (size_t)k, "%02x", raw[i]);
        char *const a[] = {(char *)openssl, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                           "-nodes", "-keyout", key, "-out", csr, "-subj", subj, NULL};
        char *const b[] = {(char *)openssl, "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", cakey, "-set_serial",
                           serial, "-out", crt, "-days", ds, "-extfile", ext, NULL};
        if (certs_run(a, log) != 0 || certs_run(b, log) != 0)
            goto done;
        unlink(csr);
    }
    unlink(ext);
    unlink(log);
    rc = 0;
    printf("# alora certs: %s (CA + base, router, worker, client; valid %ld days)\n", out, days);
    printf("# names: %s\n", san);
    printf("tls = {\n  ca = \"%s/ca.pem\";\n", out);
    for (size_t r = 0; r < 3; r++)
        printf("  %s_cert = \"%s/%s.pem\";  %s_key = \"%s/%s.key\";\n", roles[r], out, roles[r], roles[r], out,
               roles[r]);
    printf("  cert = \"%s/client.pem\";  key = \"%s/client.key\";   # alora up itself\n};\n", out, out);
    printf("# the CLI (alora invoke / status on a tls+tcp:// URL):\n");
    printf("export ALORA_TLS_CA=%s/ca.pem ALORA_TLS_CERT=%s/client.pem ALORA_TLS_KEY=%s/client.key\n", out, out, out);
done:
    umask(old);
    return rc;
}
