/* cluster_cfg_test.c: the shared cluster config: the documented example, defaults, derived URLs, errors. */
#include "al_test.h"

#include "services/common/cluster_cfg.h"

static const char *EXAMPLE =
    "run_dir = \"/tmp/alora-local\";\n"
    "base = { model = \"build/run/model\"; listen = \"ipc:///tmp/alora-local/base.ipc\";\n"
    "         kv_blocks = 2048; block_size = 16; max_batch_tokens = 512; threads = 1;\n"
    "         lease_ttl_ms = 30000; device = \"cpu\"; };\n"
    "router = { listen = \"ipc:///tmp/alora-local/router.ipc\"; max_queue = 64; };\n"
    "intrinsics = (\n"
    "  { name = \"certainty\"; adapter = \"build/run/certainty\"; replicas = 2; max_tokens = 4; },\n"
    "  { name = \"answerability\"; adapter = \"build/run/answerability\"; replicas = 2; max_tokens = 4; }\n"
    ");\n";

static void test_example(void **state)
{
    al_cluster_cfg c;
    assert_int_equal(al_cluster_cfg_load_string(EXAMPLE, &c), AL_OK);
    assert_string_equal(c.base.model, "build/run/model");
    assert_int_equal(c.base.kv_blocks, 2048);
    assert_int_equal(c.base.device, AL_DEVICE_CPU);
    assert_int_equal(c.n_intrinsics, 2);
    assert_string_equal(c.intrinsics[1].name, "answerability");
    assert_int_equal(c.intrinsics[0].replicas, 2);
    assert_int_equal(c.intrinsics[0].max_tokens, 4);
    assert_int_equal(c.intrinsics[0].capacity, 8); /* default */
    assert_string_equal(c.router.tokenizer, "build/run/model");
    assert_non_null(al_cluster_cfg_intrinsic(&c, "certainty"));
    assert_null(al_cluster_cfg_intrinsic(&c, "nope"));
    char url[256], id[64];
    assert_int_equal(al_cluster_worker_name(&c, "certainty", 0, 1, id, sizeof id, url, sizeof url), AL_OK);
    assert_string_equal(url, "ipc:///tmp/alora-local/worker-certainty-1.ipc");
    assert_string_equal(id, "certainty-1");
    assert_int_equal(c.base.instances, 1);
    assert_int_equal(al_cluster_base_url(&c, 0, url, sizeof url), AL_OK);
    assert_string_equal(url, c.base.listen);
    assert_int_equal(al_cluster_base_url(&c, 1, url, sizeof url), AL_ERANGE); /* one instance */
    al_cluster_cfg_free(&c);
}

/* base.instances: derived addresses per instance, worker names per base, bad combinations */
static void test_instances(void **state)
{
    al_cluster_cfg c;
    char url[256], id[64];
    assert_int_equal(al_cluster_cfg_load_string("run_dir = \"/r\"; base = { model = \"m\"; instances = 3; };", &c),
                     AL_OK);
    assert_int_equal(c.base.instances, 3);
    assert_int_equal(al_cluster_base_url(&c, 0, url, sizeof url), AL_OK);
    assert_string_equal(url, "ipc:///r/base.ipc");
    assert_int_equal(al_cluster_base_url(&c, 2, url, sizeof url), AL_OK);
    assert_string_equal(url, "ipc:///r/base-2.ipc");
    assert_int_equal(al_cluster_base_url(&c, 3, url, sizeof url), AL_ERANGE);
    assert_int_equal(al_cluster_worker_name(&c, "cert", 2, 0, id, sizeof id, url, sizeof url), AL_OK);
    assert_string_equal(id, "cert-b2-0");
    assert_string_equal(url, "ipc:///r/worker-cert-b2-0.ipc");
    al_cluster_cfg_free(&c);
    assert_int_equal(al_cluster_cfg_load_string(
                         "base = { model = \"m\"; listen = \"tcp://127.0.0.1:7000\"; instances = 2; };", &c), AL_OK);
    assert_int_equal(al_cluster_base_url(&c, 1, url, sizeof url), AL_OK);
    assert_string_equal(url, "tcp://127.0.0.1:7001");
    al_cluster_cfg_free(&c);
    /* no port to derive from, port overflow, out of range */
    assert_int_equal(al_cluster_cfg_load_string(
                         "base = { model = \"m\"; listen = \"tcp://127.0.0.1:65535\"; instances = 2; };", &c), AL_ERANGE);
    assert_non_null(strstr(al_errmsg(), "65535"));
    assert_int_equal(al_cluster_cfg_load_string(
                         "base = { model = \"m\"; listen = \"ws://h/x\"; instances = 2; };", &c), AL_EFORMAT);
    assert_non_null(strstr(al_errmsg(), "base.instances"));
    assert_int_equal(al_cluster_cfg_load_string("base = { model = \"m\"; instances = 65; };", &c), AL_ERANGE);
}

static void test_defaults(void **state)
{
    al_cluster_cfg c;
    assert_int_equal(al_cluster_cfg_load_string("run_dir = \"/r\"; base = { model = \"m\"; };", &c), AL_OK);
    assert_string_equal(c.base.listen, "ipc:///r/base.ipc");
    assert_string_equal(c.router.listen, "ipc:///r/router.ipc");
    assert_int_equal(c.base.block_size, 16);
    assert_int_equal(c.base.lease_ttl_ms, 30000);
    assert_int_equal(c.base.seq_grace_ms, 30000);
    assert_null(c.router.id);
    assert_false(al_cluster_uses_tls(&c));
    assert_int_equal(al_cluster_tls_apply(&c, AL_ROLE_BASE), AL_OK); /* no tls+tcp://: nothing to load */
    assert_int_equal(c.base.device, AL_DEVICE_AUTO);
    assert_int_equal(c.n_intrinsics, 0);
    assert_string_equal(c.router.session_db, "/r/sessions.db");
    assert_int_equal(c.router.session_ttl_s, 3600);
    assert_int_equal(c.router.session_max_per_key, 256);
    assert_int_equal(c.router.session_max_tokens_per_key, 0);
    assert_int_equal(c.router.session_kv_percent, 50);
    al_cluster_cfg_free(&c);
    assert_int_equal(al_cluster_cfg_load_string("base = { model = \"m\"; };\nrouter = { session_db = \"/x/s.db\"; "
                                                "session_ttl_s = 0; session_max_tokens_per_key = 5000000000; };",
                                                &c),
                     AL_OK);
    assert_string_equal(c.router.session_db, "/x/s.db");
    assert_int_equal(c.router.session_ttl_s, 0);
    assert_true(c.router.session_max_tokens_per_key == 5000000000LL);
    al_cluster_cfg_free(&c);
    assert_int_not_equal(al_cluster_cfg_load_string("base = { model = \"m\"; };\nrouter = { session_kv_percent = 0; };", &c),
                         AL_OK);
    assert_non_null(strstr(al_errmsg(), "session_kv_percent"));
    assert_int_not_equal(al_cluster_cfg_load_string("base = { model = \"m\"; };\nrouter = { session_db = \"\"; };", &c),
                         AL_OK);
    assert_non_null(strstr(al_errmsg(), "session_db"));
}

/* base.weights: every name al_ops_for_model takes, int8 included; anything else named in the error. */
static void test_weights(void **state)
{
    al_cluster_cfg c;
    static const char *const names[] = {"auto", "f32", "bf16", "int8"};
    for (int i = 0; i < 4; i++) {
        char text[128];
        snprintf(text, sizeof text, "base = { model = \"m\"; weights = \"%s\"; };", names[i]);
        assert_int_equal(al_cluster_cfg_load_string(text, &c), AL_OK);
        assert_string_equal(al_cluster_weights_names[c.base.weights], names[i]);
        al_cluster_cfg_free(&c);
    }
    assert_int_equal(al_cluster_cfg_load_string("base = { model = \"m\"; weights = \"int4\"; };", &c), AL_EFORMAT);
    assert_non_null(strstr(al_errmsg(), "base.weights"));
}

static void test_errors(void **state)
{
    al_cluster_cfg c;
    assert_int_equal(al_cluster_cfg_load_string("base = { };", &c), AL_ENOTFOUND);
    assert_non_null(strstr(al_errmsg(), "base.model"));
    assert_int_equal(al_cluster_cfg_load_string("base = { model = \"m\"; kv_blockz = 3; };", &c), AL_EFORMAT);
    assert_int_equal(al_cluster_cfg_load_string("base = { model = \"m\"; device = \"tpu\"; };", &c), AL_EFORMAT);
    assert_int_equal(al_cluster_cfg_load_string("base = { model = \"m\"; };\n"
                                                "intrinsics = ( { name = \"a\"; adapter = \"x\"; },\n"
                                                "               { name = \"a\"; adapter = \"y\"; } );",
                                                &c),
                     AL_EFORMAT);
    assert_non_null(strstr(al_errmsg(), "intrinsics[1].name"));
    assert_int_equal(al_cluster_cfg_load_string("base = { model = \"m\"; };\n"
                                                "intrinsics = ( { name = \"a/b\"; adapter = \"x\"; } );",
                                                &c),
                     AL_EFORMAT);
    assert_int_equal(al_cluster_cfg_load_string("base = { model = \"m\"; };\n"
                                                "intrinsics = ( { name = \"a\"; adapter = \"x\"; replicas = 0; } );",
                                                &c),
                     AL_ERANGE);
}

static void test_http_keys(void **state)
{
    al_cluster_cfg c;
    assert_int_equal(al_cluster_cfg_load_string("base = { model = \"build/run/model/\"; };", &c), AL_OK);
    assert_string_equal(c.router.model_name, "model"); /* basename, trailing slash ignored */
    assert_int_equal(c.router.api_keys.n, 0);
    assert_false(c.router.allow_insecure);
    assert_int_equal(c.router.max_body, 4u << 20);
    assert_int_equal(c.router.http_threads, 16);
    al_cluster_cfg_free(&c);
    assert_int_equal(al_cluster_cfg_load_string(
                         "base = { model = \"m\"; };\n"
                         "router = { http = \"http://0.0.0.0:8080\"; api_keys = [\"sk-test-123\", \"sk-other-456\"];\n"
                         "  allow_insecure = true; max_body = \"64KiB\"; model_name = \"granite\"; };\n"
                         "intrinsics = ( { name = \"certainty\"; adapter = \"a\"; parser = \"certainty\";\n"
                         "  invocation_string = \"<|start_of_role|>certainty<|end_of_role|>\";\n"
                         "  invocation_tokens = \"1, 2\"; documents = \"none\"; outputs = [\"0\", \"1\"]; } );",
                         &c),
                     AL_OK);
    assert_string_equal(c.router.http, "http://0.0.0.0:8080");
    assert_int_equal(c.router.api_keys.n, 2);
    assert_string_equal(c.router.api_keys.v[1], "sk-other-456");
    assert_true(c.router.allow_insecure);
    assert_int_equal(c.router.max_body, 64u << 10);
    assert_string_equal(c.router.model_name, "granite");
    assert_string_equal(c.intrinsics[0].invocation_tokens, "1, 2");
    assert_int_equal(c.intrinsics[0].documents, 2);
    assert_int_equal(c.intrinsics[0].outputs.n, 2);
    al_cluster_cfg_free(&c);
    /* errors */
    assert_int_equal(al_cluster_cfg_load_string("base = { model = \"m\"; }; router = { api_keys = [\"short\"]; };", &c),
                     AL_EFORMAT);
    assert_non_null(strstr(al_errmsg(), "router.api_keys[0]"));
    assert_int_equal(al_cluster_cfg_load_string("base = { model = \"m\"; }; router = { max_body = 10; };", &c),
                     AL_ERANGE);
    assert_int_equal(al_cluster_cfg_load_string("base = { model = \"m\"; }; router = { allow_insecure = 1; };", &c),
                     AL_EFORMAT);
    assert_int_equal(al_cluster_cfg_load_string("base = { model = \"m\"; };\n"
                                                "intrinsics = ( { name = \"a\"; adapter = \"x\"; documents = \"all\"; } );",
                                                &c),
                     AL_EFORMAT);
}

/* tls+tcp:// needs tls.ca and every role's certificate and key, as readable files; plain tcp off
 * loopback is refused unless allow_insecure_rpc; per-role files override tls.cert / tls.key. */
static void test_tls(void **state)
{
    char *d = al_test_tmpdir();
    char ca[600], crt[600], key[600], text[4096];
    snprintf(ca, sizeof ca, "%s/ca.pem", d);
    snprintf(crt, sizeof crt, "%s/c.pem", d);
    snprintf(key, sizeof key, "%s/c.key", d);
    const char *files[] = {ca, crt, key};
    for (int i = 0; i < 3; i++) {
        FILE *f = fopen(files[i], "w");
        assert_non_null(f);
        fputs("not a certificate\n", f);
        fclose(f);
    }
    al_cluster_cfg c;
    /* plain tcp off loopback: refused, names the listener and the way out */
    assert_int_equal(al_cluster_cfg_load_string("base = { model = \"m\"; listen = \"tcp://0.0.0.0:7000\"; };", &c),
                     AL_EFORMAT);
    assert_non_null(strstr(al_errmsg(), "base.listen: tcp://0.0.0.0:7000 is plain tcp off loopback"));
    assert_non_null(strstr(al_errmsg(), "tls+tcp://"));
    assert_int_equal(al_cluster_cfg_load_string("allow_insecure_rpc = true; base = { model = \"m\"; listen = "
                                                "\"tcp://0.0.0.0:7000\"; };", &c),
                     AL_OK);
    al_cluster_cfg_free(&c);
    /* tls+tcp://: the CA and every role's files */
    assert_int_equal(al_cluster_cfg_load_string("base = { model = \"m\"; listen = \"tls+tcp://0.0.0.0:7000\"; };", &c),
                     AL_EFORMAT);
    assert_non_null(strstr(al_errmsg(), "tls.ca is not set"));
    snprintf(text, sizeof text,
             "tls = { ca = \"%s\"; cert = \"%s\"; };\n"
             "base = { model = \"m\"; listen = \"tls+tcp://0.0.0.0:7000\"; instances = 2; };",
             ca, crt);
    assert_int_equal(al_cluster_cfg_load_string(text, &c), AL_EFORMAT);
    assert_non_null(strstr(al_errmsg(), "needs tls.key"));
    snprintf(text, sizeof text,
             "tls = { ca = \"%s\"; cert = \"%s\"; key = \"%s\"; worker_cert = \"%s/none.pem\"; worker_key = \"%s\"; };\n"
             "base = { model = \"m\"; listen = \"tls+tcp://0.0.0.0:7000\"; };",
             ca, crt, key, d, key);
    assert_int_equal(al_cluster_cfg_load_string(text, &c), AL_EFORMAT);
    assert_non_null(strstr(al_errmsg(), "tls.worker_cert"));
    assert_non_null(strstr(al_errmsg(), "none.pem"));
    snprintf(text, sizeof text,
             "tls = { ca = \"%s\"; cert = \"%s\"; key = \"%s\"; router_cert = \"%s\"; router_key = \"%s\"; };\n"
             "base = { model = \"m\"; listen = \"tls+tcp://0.0.0.0:7000\"; instances = 2; };\n"
             "router = { listen = \"tls+tcp://10.0.0.1:7100\"; id = \"router-a\"; };",
             ca, crt, key, crt, key);
    assert_int_equal(al_cluster_cfg_load_string(text, &c), AL_OK);
    assert_true(al_cluster_uses_tls(&c));
    assert_string_equal(c.router.id, "router-a");
    char u[320];
    assert_int_equal(al_cluster_base_url(&c, 1, u, sizeof u), AL_OK);
    assert_string_equal(u, "tls+tcp://0.0.0.0:7001");
    const char *cert, *k, *ck, *kk;
    al_cluster_tls_files(&c, AL_ROLE_ROUTER, &cert, &k, &ck, &kk);
    assert_string_equal(ck, "tls.router_cert");
    al_cluster_tls_files(&c, AL_ROLE_BASE, &cert, &k, &ck, &kk);
    assert_string_equal(ck, "tls.cert");
    assert_string_equal(cert, crt);
    /* the files exist but are not PEM: loading them names the key */
    assert_int_equal(al_cluster_tls_apply(&c, AL_ROLE_BASE), AL_EFORMAT);
    assert_non_null(strstr(al_errmsg(), "tls.ca"));
    assert_non_null(strstr(al_errmsg(), "not a PEM file"));
    al_cluster_cfg_free(&c);
    assert_int_equal(al_cluster_cfg_load_string("base = { model = \"m\"; listen = \"tcp+tls://0.0.0.0:7000\"; };", &c),
                     AL_EFORMAT);
    assert_non_null(strstr(al_errmsg(), "the scheme is tls+tcp://"));
    assert_int_equal(al_cluster_cfg_load_string("base = { model = \"m\"; seq_grace_ms = -1; };", &c), AL_ERANGE);
    al_test_rmrf(d);
    free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_example),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_instances),
        cmocka_unit_test(test_weights), cmocka_unit_test(test_errors),
        cmocka_unit_test(test_http_keys),
        cmocka_unit_test(test_tls),
    };
    return cmocka_run_group_tests_name("cluster_cfg", tests, NULL, NULL);
}
