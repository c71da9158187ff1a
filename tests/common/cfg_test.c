/* cfg_test.c: table-driven config loading: types, ranges, defaults, 64-bit values, includes, errors. */
#include "al_test.h"

#include <sys/stat.h>

#include "common/cfg.h"
#include "common/util.h"

typedef struct {
    char *name, *adapter;
    int replicas;
    float alpha;
} intr;

typedef struct {
    int kv_blocks;
    size_t kv_bytes;
    int64_t tokens;
    char *model;
    int backend;
    bool use_cuda;
    float temperature;
    double theta;
    al_cfg_strs listen;
    int port;
    int even;
    al_cfg_list intrinsics;
    char *version;
} conf;

static const al_cfg_key intr_keys[] = {
    {.path = "name", .type = AL_CFG_STRING, .offset = offsetof(intr, name), .required = true},
    {.path = "adapter", .type = AL_CFG_STRING, .offset = offsetof(intr, adapter), .required = true},
    {.path = "replicas", .type = AL_CFG_INT, .offset = offsetof(intr, replicas), .min = 1, .max = 64, .def_i = 1},
    {.path = "alpha", .type = AL_CFG_FLOAT, .offset = offsetof(intr, alpha), .def_f = 16.0},
};

static const char *const backends[] = {"cpu", "cuda", NULL};

static al_err set_even(void *dst, const al_cfg_key *k, const al_cfg_value *v)
{
    if (v->i % 2)
        return ali_errf(AL_ERANGE, "%lld is odd", (long long)v->i);
    ((conf *)dst)->even = (int)v->i;
    return AL_OK;
}

static const al_cfg_key keys[] = {
    {.path = "version", .type = AL_CFG_STRING, .offset = offsetof(conf, version), .def_s = "1"},
    {.path = "base.kv_blocks", .type = AL_CFG_INT, .offset = offsetof(conf, kv_blocks), .required = true, .min = 1,
     .max = 1000000},
    {.path = "base.kv_bytes", .type = AL_CFG_SIZE, .offset = offsetof(conf, kv_bytes), .def_i = 1 << 30},
    {.path = "base.tokens", .type = AL_CFG_INT64, .offset = offsetof(conf, tokens), .def_i = -7},
    {.path = "base.model", .type = AL_CFG_STRING, .offset = offsetof(conf, model), .required = true},
    {.path = "base.backend", .type = AL_CFG_ENUM, .offset = offsetof(conf, backend), .choices = backends},
    {.path = "base.use_cuda", .type = AL_CFG_BOOL, .offset = offsetof(conf, use_cuda)},
    {.path = "router.temperature", .type = AL_CFG_FLOAT, .offset = offsetof(conf, temperature), .fmin = 0,
     .fmax = 2, .def_f = 0.7},
    {.path = "router.rope_theta", .type = AL_CFG_DOUBLE, .offset = offsetof(conf, theta), .def_f = 10000},
    {.path = "router.listen", .type = AL_CFG_STRINGS, .offset = offsetof(conf, listen), .min = 1, .max = 4},
    {.path = "router.port", .type = AL_CFG_INT, .offset = offsetof(conf, port), .min = 1, .max = 65535,
     .def_i = 8080},
    {.path = "router.even", .type = AL_CFG_INT, .set = set_even, .def_i = 2},
    {.path = "intrinsics", .type = AL_CFG_GROUPS, .offset = offsetof(conf, intrinsics), .sub = intr_keys,
     .n_sub = (int)AL_ARRAY_LEN(intr_keys), .elem_size = sizeof(intr), .max = 16},
};
#define NK ((int)AL_ARRAY_LEN(keys))

#define BASE "base = { kv_blocks = 4; model = \"m\"; };\n"

static al_err load(const char *text, conf *c)
{
    memset(c, 0xAB, sizeof *c); /* loads must not depend on dst being clean */
    return al_cfg_load_string(text, NULL, keys, NK, c);
}

/* Loads text, expects error e and every given substring in the message; checks dst was freed. */
static void expect_err(const char *text, al_err e, const char *sub1, const char *sub2)
{
    conf c;
    al_err got = load(text, &c);
    if (got != e || (sub1 && !strstr(al_errmsg(), sub1)) || (sub2 && !strstr(al_errmsg(), sub2)))
        fail_msg("text:\n%s\nwant %s with '%s' '%s', got %s: %s", text, al_strerror(e), sub1 ? sub1 : "",
                 sub2 ? sub2 : "", al_strerror(got), al_errmsg());
    assert_null(c.model);
    assert_null(c.version);
    assert_null(c.listen.v);
    assert_null(c.intrinsics.v);
}

static void test_full_and_defaults(void **st)
{
    conf c;
    assert_int_equal(load(BASE, &c), AL_OK);
    assert_int_equal(c.kv_blocks, 4);
    assert_string_equal(c.model, "m");
    assert_int_equal(c.kv_bytes, 1 << 30);
    assert_int_equal(c.tokens, -7);
    assert_int_equal(c.backend, 0);
    assert_false(c.use_cuda);
    assert_float_equal(c.temperature, 0.7f, 1e-6);
    assert_float_equal(c.theta, 10000, 0);
    assert_int_equal(c.listen.n, 0);
    assert_null(c.listen.v);
    assert_int_equal(c.port, 8080);
    assert_int_equal(c.even, 2);
    assert_int_equal(c.intrinsics.n, 0);
    assert_string_equal(c.version, "1");
    al_cfg_free(keys, NK, &c);
    assert_null(c.model);

    const char *full = "version = \"2\";\n"
                       "base: { kv_blocks = 1000; model = \"granite\"; backend = \"cuda\"; use_cuda = true;\n"
                       "        tokens = 5L; kv_bytes = 4096; };\n"
                       "router = { temperature = 1; rope_theta = 500000; listen = [\"ipc:///a\", \"tcp://b:1\"];\n"
                       "           port = 9000; even = 10; };\n"
                       "intrinsics = (\n"
                       "  { name = \"uq\"; adapter = \"a/uq\"; replicas = 2; },\n"
                       "  { name = \"hall\"; adapter = \"a/h\"; alpha = 32; }\n"
                       ");\n";
    assert_int_equal(load(full, &c), AL_OK);
    assert_string_equal(c.version, "2");
    assert_int_equal(c.kv_blocks, 1000);
    assert_int_equal(c.backend, 1);
    assert_true(c.use_cuda);
    assert_int_equal(c.tokens, 5);
    assert_int_equal(c.kv_bytes, 4096);
    assert_float_equal(c.temperature, 1.0f, 0); /* integer literal into a float */
    assert_float_equal(c.theta, 500000.0, 0);
    assert_int_equal(c.listen.n, 2);
    assert_string_equal(c.listen.v[1], "tcp://b:1");
    assert_null(c.listen.v[2]);
    assert_int_equal(c.port, 9000);
    assert_int_equal(c.even, 10);
    assert_int_equal(c.intrinsics.n, 2);
    intr *in = c.intrinsics.v;
    assert_string_equal(in[0].name, "uq");
    assert_int_equal(in[0].replicas, 2);
    assert_float_equal(in[0].alpha, 16.0f, 0);
    assert_string_equal(in[1].adapter, "a/h");
    assert_int_equal(in[1].replicas, 1);
    assert_float_equal(in[1].alpha, 32.0f, 0);
    al_cfg_free(keys, NK, &c);
    assert_null(c.intrinsics.v);
    assert_int_equal(c.intrinsics.n, 0);
    assert_null(c.listen.v);
    /* Empty list forms. */
    assert_int_equal(load(BASE "intrinsics = ();\n", &c), AL_OK);
    assert_int_equal(c.intrinsics.n, 0);
    al_cfg_free(keys, NK, &c);
    assert_int_equal(load(BASE "intrinsics = [];\n", &c), AL_OK);
    al_cfg_free(keys, NK, &c);
}

static void test_unknown_keys(void **st)
{
    expect_err(BASE "kv_blocks = 3;\n", AL_EFORMAT, "<string>:2: unknown key 'kv_blocks'", NULL);
    expect_err("base = { kv_blocks = 4;\n model = \"m\";\n kv_blokcs = 5; };\n", AL_EFORMAT,
               "<string>:3: unknown key 'base.kv_blokcs'", "did you mean 'base.kv_blocks'");
    expect_err(BASE "foo = { a = 1; };\n", AL_EFORMAT, "<string>:2: unknown key 'foo'", NULL);
    expect_err(BASE "router = { deep = { x = 1; }; };\n", AL_EFORMAT, "unknown key 'router.deep'", NULL);
    expect_err(BASE "intrinsics = ( { name = \"a\"; adapter = \"b\"; },\n"
                    "  { name = \"c\"; adapter = \"d\";\n    replica = 3; } );\n",
               AL_EFORMAT, "<string>:4: unknown key 'intrinsics[1].replica'", "did you mean 'replicas'");
    expect_err("base = 5;\n", AL_EFORMAT, "<string>:1: 'base' must be a group", "not an integer");
}

static void test_wrong_types(void **st)
{
    expect_err("base = { kv_blocks = \"4\"; model = \"m\"; };\n", AL_EFORMAT,
               "<string>:1: base.kv_blocks: expected an integer, got a string", NULL);
    expect_err("base = { kv_blocks = 4.0; model = \"m\"; };\n", AL_EFORMAT, "base.kv_blocks: expected an integer",
               "got a float");
    expect_err(BASE "\nbase2 = 1;\n", AL_EFORMAT, "<string>:3: unknown key 'base2'", NULL);
    expect_err("base = { kv_blocks = 4; model = 5; };\n", AL_EFORMAT, "base.model: expected a string", NULL);
    expect_err("base = { kv_blocks = 4; model = \"m\"; use_cuda = 1; };\n", AL_EFORMAT,
               "base.use_cuda: expected a boolean", NULL);
    expect_err(BASE "router = { temperature = \"hot\"; };\n", AL_EFORMAT,
               "<string>:2: router.temperature: expected a number, got a string", NULL);
    expect_err(BASE "router = { listen = \"tcp://x\"; };\n", AL_EFORMAT, "router.listen: expected a list of strings",
               NULL);
    expect_err(BASE "router = { listen = (\"a\",\n 1); };\n", AL_EFORMAT, "router.listen[1]: expected a string",
               "got an integer");
    expect_err(BASE "intrinsics = { name = \"a\"; };\n", AL_EFORMAT, "intrinsics: expected a list of groups",
               "got a group");
    expect_err(BASE "intrinsics = ( 5 );\n", AL_EFORMAT, "intrinsics[0]: expected a group", NULL);
    expect_err(BASE "intrinsics = ( { name = 1; adapter = \"b\"; } );\n", AL_EFORMAT,
               "intrinsics[0].name: expected a string", NULL);
    expect_err("base = { kv_blocks = 4; model = \"m\"; backend = \"tpu\"; };\n", AL_EFORMAT,
               "base.backend: \"tpu\" is not one of \"cpu\", \"cuda\"", NULL);
    expect_err("base = { kv_blocks = 4; model = \"m\"; kv_bytes = true; };\n", AL_EFORMAT,
               "base.kv_bytes: expected a size", NULL);
}

static void test_ranges(void **st)
{
    expect_err("base = { kv_blocks = 0; model = \"m\"; };\n", AL_ERANGE, "base.kv_blocks: value 0 out of range [1, 1000000]",
               NULL);
    /* libconfig 1.5 reads 3000000000 as -1294967296; an int key must reject it, not wrap. */
    expect_err("base = { kv_blocks = 3000000000; model = \"m\"; };\n", AL_ERANGE, "3000000000", "an int");
    expect_err("base = { kv_blocks = 4294967297; model = \"m\"; };\n", AL_ERANGE, "4294967297", NULL);
    expect_err(BASE "router = { port = 70000; };\n", AL_ERANGE, "<string>:2: router.port", NULL);
    expect_err(BASE "router = { temperature = 2.5; };\n", AL_ERANGE, "router.temperature: value 2.5 out of range",
               NULL);
    expect_err(BASE "router = { temperature = -1; };\n", AL_ERANGE, "router.temperature", NULL);
    expect_err(BASE "router = { listen = [\"a\",\"b\",\"c\",\"d\",\"e\"]; };\n", AL_ERANGE,
               "router.listen: element count 5", NULL);
    expect_err(BASE "router = { listen = []; };\n", AL_ERANGE, "router.listen: element count 0", NULL);
    expect_err(BASE "intrinsics = ( { name = \"a\"; adapter = \"b\";\n replicas = 100; } );\n", AL_ERANGE,
               "<string>:3: intrinsics[0].replicas: value 100 out of range [1, 64]", NULL);
    expect_err(BASE "router = { even = 3; };\n", AL_ERANGE, "<string>:2: router.even: 3 is odd", NULL);
    expect_err("base = { kv_blocks = 4; model = \"m\"; kv_bytes = -1; };\n", AL_ERANGE, "base.kv_bytes: size -1",
               NULL);
    expect_err("base = { kv_blocks = 4; model = \"m\"; tokens = 99999999999999999999; };\n", AL_ERANGE,
               "base.tokens: integer literal does not fit in 64 bits", NULL);
}

static void test_64bit(void **st)
{
    static const struct {
        const char *val;
        uint64_t want;
    } sizes[] = {
        {"17179869184", 17179869184ull},   /* no L: libconfig alone would give 0 */
        {"17179869184L", 17179869184ull},
        {"3000000000", 3000000000ull},     /* no L: libconfig alone would give -1294967296 */
        {"0x400000000", 17179869184ull},   /* hex, no L */
        {"\"16GiB\"", 17179869184ull},
        {"\"512MiB\"", 536870912ull},
        {"\"512 MiB\"", 536870912ull},
        {"\"1.5GiB\"", 1610612736ull},
        {"\"64K\"", 65536ull},
        {"\"2T\"", 2199023255552ull},
        {"\"4096\"", 4096ull},
        {"\"100B\"", 100ull},
        {"2147483647", 2147483647ull},
        {"2147483648", 2147483648ull},
        {"0", 0},
    };
    for (size_t i = 0; i < AL_ARRAY_LEN(sizes); i++) {
        char text[256];
        snprintf(text, sizeof text, "base = { kv_blocks = 4; model = \"m\";\n  kv_bytes = %s; };\n", sizes[i].val);
        conf c;
        al_err e = load(text, &c);
        if (e != AL_OK)
            fail_msg("%s: %s", sizes[i].val, al_errmsg());
        if (c.kv_bytes != sizes[i].want)
            fail_msg("%s: got %zu want %llu", sizes[i].val, c.kv_bytes, (unsigned long long)sizes[i].want);
        al_cfg_free(keys, NK, &c);
    }
    static const struct {
        const char *val;
        int64_t want;
    } ints[] = {
        {"3000000000", 3000000000ll}, {"-3000000000", -3000000000ll}, {"-3000000000L", -3000000000ll},
        {"9223372036854775807", INT64_MAX}, {"-5", -5}, {"0x10", 16},
    };
    for (size_t i = 0; i < AL_ARRAY_LEN(ints); i++) {
        char text[256];
        /* Also: the value on the line after the name, and a same-named key earlier on the line. */
        snprintf(text, sizeof text, "base = { kv_blocks = 4; model = \"m\"; tokens =\n   %s; };\n", ints[i].val);
        conf c;
        if (load(text, &c) != AL_OK)
            fail_msg("%s: %s", ints[i].val, al_errmsg());
        if (c.tokens != ints[i].want)
            fail_msg("%s: got %lld", ints[i].val, (long long)c.tokens);
        al_cfg_free(keys, NK, &c);
    }
    expect_err("base = { kv_blocks = 4; model = \"m\"; kv_bytes = \"16GB\"; };\n", AL_EFORMAT,
               "<string>:1: base.kv_bytes: size \"16GB\": unknown unit", NULL);
    expect_err("base = { kv_blocks = 4; model = \"m\"; kv_bytes = \"lots\"; };\n", AL_EFORMAT, "base.kv_bytes", NULL);
    expect_err("base = { kv_blocks = 4; model = \"m\"; kv_bytes = \"99999999999TiB\"; };\n", AL_EFORMAT,
               "does not fit", NULL);
    uint64_t v;
    assert_int_equal(al_cfg_parse_size("1.5", &v), AL_EFORMAT);
    assert_int_equal(al_cfg_parse_size("1.", &v), AL_EFORMAT);
    assert_int_equal(al_cfg_parse_size("-1", &v), AL_EFORMAT);
    assert_int_equal(al_cfg_parse_size("16EiB", &v), AL_EFORMAT);
    assert_int_equal(al_cfg_parse_size("0.5KiB", &v), AL_OK);
    assert_int_equal(v, 512);
}

static void test_required(void **st)
{
    expect_err("base = { kv_blocks = 4; };\n", AL_ENOTFOUND, "<string>: missing required key 'base.model'", NULL);
    expect_err("", AL_ENOTFOUND, "missing required key 'base.kv_blocks'", NULL);
    expect_err(BASE "intrinsics = ( { name = \"a\"; adapter = \"b\"; },\n  { name = \"c\"; } );\n", AL_ENOTFOUND,
               "<string>:3: intrinsics[1]: missing required key 'adapter'", NULL);
    /* A late error after strings were allocated frees them (checked under ASan). */
    expect_err("version = \"x\"; base = { kv_blocks = 4; model = \"m\"; }; router = { listen = [\"a\"]; };\n"
               "intrinsics = ( { name = \"a\"; adapter = \"b\"; }, { name = \"c\"; adapter = 1; } );\n",
               AL_EFORMAT, "<string>:2: intrinsics[1].adapter", NULL);
    expect_err("base = { kv_blocks = 4 model = \"m\" };\nfoo bar;\n", AL_EFORMAT, "<string>:2: syntax error", NULL);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_files_and_includes(void **st)
{
    char *dir = al_test_tmpdir();
    assert_non_null(dir);
    char sub[200], inc[300], main_cfg[400], bad[400], path[400];
    snprintf(sub, sizeof sub, "%s/etc", dir);
    snprintf(inc, sizeof inc, "%s/etc/conf.d", dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    assert_int_equal(mkdir(inc, 0700), 0);
    snprintf(path, sizeof path, "%s/model.cfg", inc);
    write_text(path, "# the base model\nbase = { model = \"granite\"; kv_blocks = 8;\n  kv_bytes = 34359738368; };\n");
    snprintf(main_cfg, sizeof main_cfg, "%s/main.cfg", sub);
    write_text(main_cfg, "version = \"3\";\n@include \"conf.d/model.cfg\"\nrouter = { port = 1234; };\n");
    /* The CWD is the source root, not etc/: includes resolve against the file's directory. */
    conf c;
    memset(&c, 0, sizeof c);
    al_err e = al_cfg_load(main_cfg, keys, NK, &c);
    if (e != AL_OK)
        fail_msg("%s", al_errmsg());
    assert_string_equal(c.model, "granite");
    assert_int_equal(c.kv_bytes, 34359738368ull); /* no L, from the included file */
    assert_int_equal(c.port, 1234);
    al_cfg_free(keys, NK, &c);

    /* Errors name the included file and its line. */
    write_text(path, "base = { model = \"granite\"; kv_blocks = 8;\n  kv_blocs = 1; };\n");
    assert_int_equal(al_cfg_load(main_cfg, keys, NK, &c), AL_EFORMAT);
    assert_non_null(strstr(al_errmsg(), "conf.d/model.cfg:2: unknown key 'base.kv_blocs'"));
    write_text(path, "base = { model = \"granite\";\n kv_blocks = 8 8; };\n");
    assert_int_equal(al_cfg_load(main_cfg, keys, NK, &c), AL_EFORMAT);
    assert_non_null(strstr(al_errmsg(), "conf.d/model.cfg:2: syntax error"));
    /* Errors in the main file name it. */
    snprintf(bad, sizeof bad, "%s/bad.cfg", sub);
    write_text(bad, "base = { model = \"m\";\n\n  kv_blocks = \"many\"; };\n");
    assert_int_equal(al_cfg_load(bad, keys, NK, &c), AL_EFORMAT);
    char want[600];
    snprintf(want, sizeof want, "%s:3: base.kv_blocks: expected an integer", bad);
    assert_non_null(strstr(al_errmsg(), want));
    write_text(bad, "@include \"nope.cfg\"\n");
    assert_int_equal(al_cfg_load(bad, keys, NK, &c), AL_EFORMAT);
    assert_non_null(strstr(al_errmsg(), "cannot open include file"));
    /* Missing file: the message names the path. */
    snprintf(path, sizeof path, "%s/absent.cfg", sub);
    assert_int_equal(al_cfg_load(path, keys, NK, &c), AL_ENOTFOUND);
    assert_non_null(strstr(al_errmsg(), path));
    /* load_string with an explicit include dir. */
    assert_int_equal(al_cfg_load_string("@include \"nope2.cfg\"\n", sub, keys, NK, &c), AL_EFORMAT);
    write_text(path, BASE);
    assert_int_equal(al_cfg_load_string("@include \"absent.cfg\"\n", sub, keys, NK, &c), AL_OK);
    assert_int_equal(c.kv_blocks, 4);
    al_cfg_free(keys, NK, &c);
    al_test_rmrf(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_and_defaults), cmocka_unit_test(test_unknown_keys),
        cmocka_unit_test(test_wrong_types),       cmocka_unit_test(test_ranges),
        cmocka_unit_test(test_64bit),             cmocka_unit_test(test_required),
        cmocka_unit_test(test_files_and_includes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
