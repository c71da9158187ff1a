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
    assert_int_equal(c.base.device, AL_DEVICE_AUTO);
    assert_int_equal(c.n_intrinsics, 0);
    al_cluster_cfg_free(&c);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_example),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_instances),
        cmocka_unit_test(test_weights), cmocka_unit_test(test_errors),
        cmocka_unit_test(test_http_keys),
    };
    return cmocka_run_group_tests_name("cluster_cfg", tests, NULL, NULL);
}
