/* rpc_tls_test.c: mutual TLS in common/ipc/rpc over tls+tcp://: a client with a certificate of the
 * server's CA is served; one with another CA's certificate, or trusting another CA, is not; setup
 * errors name the key and the file. Certificates from `alora certs`, made before any NNG call. */
#include "al_test.h"

#include <time.h>

#include "common/ipc/rpc.h"

static char *tmp;
static char a_dir[600], b_dir[600];

static al_err h_health(al_rpc_job *job, const void *req, void *rep, void *user)
{
    alora_HealthReply *rp = rep;
    rp->role = alora_Role_ROLE_BASE;
    rp->health = alora_Health_HEALTH_OK;
    snprintf(rp->instance_id, sizeof rp->instance_id, "tls-ok");
    return AL_OK;
}

static void setup_tls(const char *ca_dir, const char *dir, const char *role)
{
    char ca[700], crt[700], key[700];
    snprintf(ca, sizeof ca, "%s/ca.pem", ca_dir);
    snprintf(crt, sizeof crt, "%s/%s.pem", dir, role);
    snprintf(key, sizeof key, "%s/%s.key", dir, role);
    assert_int_equal(al_rpc_tls_setup(ca, crt, key), AL_OK);
}

/* One health call through a fresh client; AL_OK or why not. */
static al_err call(const char *url)
{
    al_rpc_client *c = NULL;
    al_rpc_client_opts o;
    al_rpc_client_opts_default(&o);
    o.connect_wait_ms = 1500;
    al_err e = al_rpc_client_open(&c, url, &o);
    if (e != AL_OK)
        return e;
    alora_HealthReply hr;
    al_pbmem m = AL_PBMEM_INIT;
    e = al_rpc_call(c, alora_Method_BASE_HEALTH, &(alora_Empty){0}, &hr, &m, 3000);
    al_pbmem_free(&m);
    if (e == AL_OK)
        assert_string_equal(hr.instance_id, "tls-ok");
    al_rpc_client_close(c);
    return e;
}

static void test_mutual(void **state)
{
    setup_tls(a_dir, a_dir, "base"); /* the server: CA a, the base's certificate */
    al_rpc_server *s = NULL;
    char bound[256];
    assert_int_equal(al_rpc_server_new(&s, NULL), AL_OK);
    assert_int_equal(al_rpc_server_handle(s, alora_Method_BASE_HEALTH, h_health, NULL), AL_OK);
    assert_int_equal(al_rpc_server_listen(s, "tls+tcp://127.0.0.1:0", bound, sizeof bound), AL_OK);
    assert_true(strncmp(bound, "tls+tcp://127.0.0.1:", 20) == 0 && strcmp(bound, "tls+tcp://127.0.0.1:0") != 0);

    setup_tls(a_dir, a_dir, "client"); /* same CA: served, by IP and by name */
    assert_int_equal(call(bound), AL_OK);
    char byname[300];
    snprintf(byname, sizeof byname, "tls+tcp://localhost:%s", strrchr(bound, ':') + 1);
    assert_int_equal(call(byname), AL_OK);
    setup_tls(a_dir, b_dir, "client"); /* trusts CA a, presents CA b's certificate: the server refuses */
    assert_int_equal(call(bound), AL_EUNAVAILABLE);
    setup_tls(b_dir, b_dir, "client"); /* trusts only CA b: refuses the server's certificate */
    assert_int_equal(call(bound), AL_EUNAVAILABLE);
    char plain[300];
    snprintf(plain, sizeof plain, "tcp://127.0.0.1:%s", strrchr(bound, ':') + 1);
    assert_int_equal(call(plain), AL_EUNAVAILABLE); /* plain tcp gets no answer */
    setup_tls(a_dir, a_dir, "client");
    assert_int_equal(call(bound), AL_OK); /* still serving */
    al_rpc_server_close(s);
}

static void test_setup_errors(void **state)
{
    char ca[700], crt[700], key[700], junk[700];
    snprintf(ca, sizeof ca, "%s/ca.pem", a_dir);
    snprintf(crt, sizeof crt, "%s/client.pem", a_dir);
    snprintf(key, sizeof key, "%s/client.key", a_dir);
    snprintf(junk, sizeof junk, "%s/junk.pem", tmp);
    FILE *f = fopen(junk, "w");
    assert_non_null(f);
    fputs("hello\n", f);
    fclose(f);
    assert_int_equal(al_rpc_tls_setup(ca, "/nonexistent/c.pem", key), AL_ENOTFOUND);
    assert_non_null(strstr(al_errmsg(), "tls.cert: /nonexistent/c.pem"));
    assert_int_equal(al_rpc_tls_setup(junk, crt, key), AL_EFORMAT);
    assert_non_null(strstr(al_errmsg(), "tls.ca"));
    assert_int_equal(al_rpc_tls_setup(ca, key, crt), AL_EFORMAT); /* swapped: mbedTLS refuses */
    al_rpc_tls_clear();
    al_rpc_client *c = NULL;
    assert_int_equal(al_rpc_client_open(&c, "tls+tcp://127.0.0.1:9", NULL), AL_EINVAL);
    assert_non_null(strstr(al_errmsg(), "tls.ca"));
    al_rpc_server *s = NULL;
    assert_int_equal(al_rpc_server_new(&s, NULL), AL_OK);
    assert_int_equal(al_rpc_server_listen(s, "tls+tcp://127.0.0.1:0", NULL, 0), AL_EINVAL);
    al_rpc_server_close(s);
}

int main(void)
{
    if (access(al_test_bin(), X_OK) != 0 || system("command -v openssl >/dev/null") != 0) {
        fprintf(stderr, "no %s or no openssl: skipped\n", al_test_bin());
        return AL_TEST_SKIP_CODE;
    }
    tmp = al_test_tmpdir();
    if (!tmp)
        return 1;
    snprintf(a_dir, sizeof a_dir, "%s/a", tmp);
    snprintf(b_dir, sizeof b_dir, "%s/b", tmp);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' certs --out '%s' >/dev/null && '%s' certs --out '%s' >/dev/null", al_test_bin(),
             a_dir, al_test_bin(), b_dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "alora certs failed\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mutual),
        cmocka_unit_test(test_setup_errors),
    };
    int rc = cmocka_run_group_tests_name("common_ipc_rpc_tls", tests, NULL, NULL);
    al_rpc_tls_clear();
    al_test_rmrf(tmp);
    free(tmp);
    return rc;
}
