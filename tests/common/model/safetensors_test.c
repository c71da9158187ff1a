/* safetensors_test.c: safetensors reader/writer round trips, sharding, and malformed files. */
#include "al_test.h"

#include <math.h>
#include <sys/stat.h>

#include "common/model/safetensors.h"
#include "common/util.h"

/* Written by Python's safetensors 0.8.0 (numpy): save_file({'b': arange(6, f16).reshape(2,3),
 * 'a': [1.5, -2] f32, 'z': zeros((0,4), f32)}, metadata={'x': 'y'}). */
static const unsigned char st_py_file[] = {
  0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x7b, 0x22, 0x5f, 0x5f,
  0x6d, 0x65, 0x74, 0x61, 0x64, 0x61, 0x74, 0x61, 0x5f, 0x5f, 0x22, 0x3a,
  0x7b, 0x22, 0x78, 0x22, 0x3a, 0x22, 0x79, 0x22, 0x7d, 0x2c, 0x22, 0x61,
  0x22, 0x3a, 0x7b, 0x22, 0x64, 0x74, 0x79, 0x70, 0x65, 0x22, 0x3a, 0x22,
  0x46, 0x33, 0x32, 0x22, 0x2c, 0x22, 0x73, 0x68, 0x61, 0x70, 0x65, 0x22,
  0x3a, 0x5b, 0x32, 0x5d, 0x2c, 0x22, 0x64, 0x61, 0x74, 0x61, 0x5f, 0x6f,
  0x66, 0x66, 0x73, 0x65, 0x74, 0x73, 0x22, 0x3a, 0x5b, 0x30, 0x2c, 0x38,
  0x5d, 0x7d, 0x2c, 0x22, 0x7a, 0x22, 0x3a, 0x7b, 0x22, 0x64, 0x74, 0x79,
  0x70, 0x65, 0x22, 0x3a, 0x22, 0x46, 0x33, 0x32, 0x22, 0x2c, 0x22, 0x73,
  0x68, 0x61, 0x70, 0x65, 0x22, 0x3a, 0x5b, 0x30, 0x2c, 0x34, 0x5d, 0x2c,
  0x22, 0x64, 0x61, 0x74, 0x61, 0x5f, 0x6f, 0x66, 0x66, 0x73, 0x65, 0x74,
  0x73, 0x22, 0x3a, 0x5b, 0x38, 0x2c, 0x38, 0x5d, 0x7d, 0x2c, 0x22, 0x62,
  0x22, 0x3a, 0x7b, 0x22, 0x64, 0x74, 0x79, 0x70, 0x65, 0x22, 0x3a, 0x22,
  0x46, 0x31, 0x36, 0x22, 0x2c, 0x22, 0x73, 0x68, 0x61, 0x70, 0x65, 0x22,
  0x3a, 0x5b, 0x32, 0x2c, 0x33, 0x5d, 0x2c, 0x22, 0x64, 0x61, 0x74, 0x61,
  0x5f, 0x6f, 0x66, 0x66, 0x73, 0x65, 0x74, 0x73, 0x22, 0x3a, 0x5b, 0x38,
  0x2c, 0x32, 0x30, 0x5d, 0x7d, 0x7d, 0x20, 0x20, 0x00, 0x00, 0xc0, 0x3f,
  0x00, 0x00, 0x00, 0xc0, 0x00, 0x00, 0x00, 0x3c, 0x00, 0x40, 0x00, 0x42,
  0x00, 0x44, 0x00, 0x45
};


static char *st_dir;

static int st_setup(void **state)
{
    st_dir = al_test_tmpdir();
    return st_dir ? 0 : -1;
}

static int st_teardown(void **state)
{
    al_test_rmrf(st_dir);
    free(st_dir);
    return 0;
}

static const char *st_path(const char *name)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", st_dir, name);
    return buf[k];
}

/* Writes an 8-byte length (hdr_len_override if nonzero) + header + data. */
static void st_write_raw(const char *path, const char *hdr, uint64_t len_override, const void *data,
                         size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    uint64_t len = len_override ? len_override : strlen(hdr);
    unsigned char b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(len >> (8 * i));
    assert_int_equal(fwrite(b, 1, 8, f), 8);
    assert_int_equal(fwrite(hdr, 1, strlen(hdr), f), strlen(hdr));
    if (n)
        assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

static void st_expect_bad(const char *file, const char *hdr, size_t data_bytes, al_err want,
                          const char *must1, const char *must2)
{
    static unsigned char zeros[256];
    assert_true(data_bytes <= sizeof zeros);
    const char *path = st_path(file);
    st_write_raw(path, hdr, 0, zeros, data_bytes);
    al_st *st = NULL;
    al_err e = al_st_open(path, &st);
    if (e != want)
        fail_msg("%s: got %s (%s), want %s", file, al_strerror(e), al_errmsg(), al_strerror(want));
    assert_null(st);
    if (!strstr(al_errmsg(), path))
        fail_msg("message '%s' does not name the file %s", al_errmsg(), path);
    if (must1 && !strstr(al_errmsg(), must1))
        fail_msg("message '%s' does not contain '%s'", al_errmsg(), must1);
    if (must2 && !strstr(al_errmsg(), must2))
        fail_msg("message '%s' does not contain '%s'", al_errmsg(), must2);
}

static void test_roundtrip(void **state)
{
    float a[6] = {1.5f, -2.25f, 3.0f, 0.1f, 1.00390625f, -0.0f};
    float b[2] = {0.5f, 65504.0f};
    al_st_wtensor ts[3] = {
        {.name = "w.f32", .dtype = AL_DT_F32, .n_dims = 2, .shape = {2, 3}, .data = a},
        {.name = "w.bf16", .dtype = AL_DT_BF16, .n_dims = 2, .shape = {3, 2}, .data = a},
        {.name = "w.f16", .dtype = AL_DT_F16, .n_dims = 1, .shape = {6}, .data = a},
    };
    const char *path = st_path("rt.safetensors");
    assert_int_equal(al_st_write(path, ts, 3), AL_OK);

    /* Header: length is a multiple of 8, the JSON starts with '{' and is space-padded. */
    char *raw;
    size_t len;
    assert_int_equal(ali_read_file(path, 1 << 20, &raw, &len), AL_OK);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = (n << 8) | (unsigned char)raw[i];
    assert_int_equal(n % 8, 0);
    assert_int_equal(raw[8], '{');
    assert_int_equal(len, 8 + n + 6 * 4 + 6 * 2 + 6 * 2);
    free(raw);

    al_st *st;
    assert_int_equal(al_st_open(path, &st), AL_OK);
    assert_int_equal(al_st_count(st), 3);
    /* Tensors come in data order. */
    assert_string_equal(al_st_get(st, 0)->name, "w.f32");
    assert_string_equal(al_st_get(st, 2)->name, "w.f16");
    assert_null(al_st_get(st, 3));
    assert_null(al_st_find(st, "nope"));
    const al_st_tensor *t = al_st_find(st, "w.bf16");
    assert_non_null(t);
    assert_int_equal(t->dtype, AL_DT_BF16);
    assert_int_equal(t->n_dims, 2);
    assert_int_equal(t->shape[0], 3);
    assert_int_equal(t->shape[1], 2);
    assert_int_equal(t->n_elems, 6);
    assert_int_equal(t->nbytes, 12);
    assert_string_equal(t->file, path);

    float out[6];
    int64_t want[2] = {2, 3};
    assert_int_equal(al_st_read_f32(al_st_find(st, "w.f32"), out, 2, want), AL_OK);
    assert_memory_equal(out, a, sizeof a);
    assert_int_equal(al_st_read_f32(t, out, 0, NULL), AL_OK);
    assert_true(out[0] == 1.5f && out[1] == -2.25f && out[2] == 3.0f);
    assert_true(out[3] == 0.10009765625f); /* bf16 0x3dcd */
    assert_true(out[4] == 1.0f);           /* 1 + 2^-8 rounds to even */
    assert_true(out[5] == 0.0f && signbit(out[5]));
    assert_int_equal(al_st_read_f32(al_st_find(st, "w.f16"), out, 1, (int64_t[]){6}), AL_OK);
    assert_true(out[0] == 1.5f && out[1] == -2.25f && out[2] == 3.0f);
    assert_true(out[3] == 0.0999755859375f); /* f16 0x2e66 */
    assert_true(out[4] == 1.00390625f);       /* 1 + 2^-8 is exact in f16 (10 mantissa bits) */

    /* Shape check. */
    assert_int_equal(al_st_read_f32(al_st_find(st, "w.f32"), out, 2, (int64_t[]){3, 2}), AL_EFORMAT);
    assert_non_null(strstr(al_errmsg(), "w.f32"));
    assert_non_null(strstr(al_errmsg(), "[2, 3]"));
    assert_non_null(strstr(al_errmsg(), path));
    assert_int_equal(al_st_read_f32(al_st_find(st, "w.f32"), out, 1, (int64_t[]){6}), AL_EFORMAT);
    al_st_close(st);

    (void)b;
    assert_string_equal(al_dtype_name(AL_DT_BF16), "BF16");
    assert_int_equal(al_dtype_size(AL_DT_F16), 2);
    assert_int_equal(al_dtype_size(AL_DT_F32), 4);
}

static void test_streaming_writer(void **state)
{
    al_st_wtensor ts[3] = {
        {.name = "a", .dtype = AL_DT_F32, .n_dims = 1, .shape = {5}},
        {.name = "empty", .dtype = AL_DT_F32, .n_dims = 2, .shape = {0, 7}},
        {.name = "b", .dtype = AL_DT_BF16, .n_dims = 2, .shape = {2, 2}},
    };
    float v[9] = {0, 1, 2, 3, 4, 5, 6, 7, 8};
    const char *path = st_path("stream.safetensors");
    al_st_writer *w;
    assert_int_equal(al_st_writer_open(path, ts, 3, &w), AL_OK);
    /* Chunks that straddle tensor boundaries. */
    assert_int_equal(al_st_writer_put(w, v, 3), AL_OK);
    assert_int_equal(al_st_writer_put(w, v + 3, 4), AL_OK);
    assert_int_equal(al_st_writer_put(w, v + 7, 2), AL_OK);
    assert_int_equal(al_st_writer_close(w), AL_OK);
    al_st *st;
    assert_int_equal(al_st_open(path, &st), AL_OK);
    assert_int_equal(al_st_count(st), 3);
    float out[5];
    assert_int_equal(al_st_read_f32(al_st_find(st, "a"), out, 1, (int64_t[]){5}), AL_OK);
    assert_true(out[0] == 0 && out[4] == 4);
    assert_int_equal(al_st_find(st, "empty")->n_elems, 0);
    assert_int_equal(al_st_read_f32(al_st_find(st, "b"), out, 2, (int64_t[]){2, 2}), AL_OK);
    assert_true(out[0] == 5 && out[1] == 6 && out[2] == 7 && out[3] == 8);
    al_st_close(st);

    /* Incomplete: close fails and removes the file. */
    const char *p2 = st_path("partial.safetensors");
    assert_int_equal(al_st_writer_open(p2, ts, 3, &w), AL_OK);
    assert_int_equal(al_st_writer_put(w, v, 6), AL_OK);
    assert_int_equal(al_st_writer_close(w), AL_EINVAL);
    assert_int_not_equal(access(p2, F_OK), 0);
    /* Too much data. */
    assert_int_equal(al_st_writer_open(p2, ts, 3, &w), AL_OK);
    assert_int_equal(al_st_writer_put(w, v, 9), AL_OK);
    assert_int_equal(al_st_writer_put(w, v, 1), AL_EINVAL);
    assert_int_not_equal(al_st_writer_close(w), AL_OK);
    assert_int_not_equal(access(p2, F_OK), 0);
    /* Abort removes the file. */
    assert_int_equal(al_st_writer_open(p2, ts, 3, &w), AL_OK);
    al_st_writer_abort(w);
    assert_int_not_equal(access(p2, F_OK), 0);
    /* Bad declarations. */
    al_st_wtensor dup[2] = {{.name = "x", .n_dims = 1, .shape = {1}}, {.name = "x", .n_dims = 1, .shape = {1}}};
    assert_int_equal(al_st_writer_open(p2, dup, 2, &w), AL_EINVAL);
    assert_non_null(strstr(al_errmsg(), "duplicate"));
    al_st_wtensor neg = {.name = "x", .n_dims = 1, .shape = {-1}};
    assert_int_equal(al_st_writer_open(p2, &neg, 1, &w), AL_EINVAL);
    al_st_wtensor meta = {.name = "__metadata__", .n_dims = 1, .shape = {1}};
    assert_int_equal(al_st_writer_open(p2, &meta, 1, &w), AL_EINVAL);
    assert_int_not_equal(access(p2, F_OK), 0);
    /* al_st_write needs data. */
    al_st_wtensor nodata = {.name = "x", .n_dims = 1, .shape = {2}};
    assert_int_equal(al_st_write(p2, &nodata, 1), AL_EINVAL);
    assert_int_not_equal(access(p2, F_OK), 0);
}

static void test_python_written(void **state)
{
    const char *path = st_path("py.safetensors");
    assert_int_equal(ali_write_file(path, st_py_file, sizeof st_py_file), AL_OK);
    al_st *st;
    assert_int_equal(al_st_open(path, &st), AL_OK);
    assert_int_equal(al_st_count(st), 3);
    float out[6];
    assert_int_equal(al_st_read_f32(al_st_find(st, "a"), out, 1, (int64_t[]){2}), AL_OK);
    assert_true(out[0] == 1.5f && out[1] == -2.0f);
    assert_int_equal(al_st_read_f32(al_st_find(st, "b"), out, 2, (int64_t[]){2, 3}), AL_OK);
    for (int i = 0; i < 6; i++)
        assert_true(out[i] == (float)i);
    const al_st_tensor *z = al_st_find(st, "z");
    assert_int_equal(z->n_dims, 2);
    assert_int_equal(z->shape[0], 0);
    assert_int_equal(z->shape[1], 4);
    assert_int_equal(z->n_elems, 0);
    al_st_close(st);
}

static void test_malformed(void **state)
{
    /* Header length beyond the file. */
    const char *p = st_path("biglen.safetensors");
    st_write_raw(p, "{}", 1000, NULL, 0);
    al_st *st = NULL;
    assert_int_equal(al_st_open(p, &st), AL_EFORMAT);
    assert_null(st);
    assert_non_null(strstr(al_errmsg(), p));
    assert_non_null(strstr(al_errmsg(), "header length 1000"));
    /* Shorter than 8 bytes. */
    p = st_path("tiny.safetensors");
    assert_int_equal(ali_write_file(p, "abc", 3), AL_OK);
    assert_int_equal(al_st_open(p, &st), AL_EFORMAT);
    assert_non_null(strstr(al_errmsg(), p));
    /* Missing file. */
    assert_int_equal(al_st_open(st_path("absent.safetensors"), &st), AL_ENOTFOUND);

    st_expect_bad("json.st", "{\"t\": {\"dtype\": ", 0, AL_EFORMAT, "JSON", NULL);
    st_expect_bad("root.st", "[1, 2]", 0, AL_EFORMAT, "not a JSON object", NULL);
    st_expect_bad("dup.st",
                  "{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                  "\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                  4, AL_EFORMAT, "JSON", NULL);
    st_expect_bad("entry.st", "{\"tensor.x\": 5}", 0, AL_EFORMAT, "tensor.x", "not an object");
    st_expect_bad("dtype.st", "{\"tensor.i64\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8,
                  AL_EUNSUPPORTED, "tensor.i64", "I64");
    st_expect_bad("dtype2.st", "{\"tensor.q\":{\"dtype\":\"Q4\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8,
                  AL_EUNSUPPORTED, "tensor.q", "Q4");
    st_expect_bad("dtype3.st", "{\"tensor.n\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                  AL_EFORMAT, "tensor.n", "dtype");
    st_expect_bad("neg.st", "{\"tensor.neg\":{\"dtype\":\"F32\",\"shape\":[2,-1],\"data_offsets\":[0,0]}}", 0,
                  AL_EFORMAT, "tensor.neg", "negative");
    st_expect_bad("ndim.st",
                  "{\"tensor.nd\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}",
                  4, AL_EFORMAT, "tensor.nd", "dims");
    st_expect_bad("ovf.st",
                  "{\"tensor.ovf\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],"
                  "\"data_offsets\":[0,4]}}",
                  4, AL_EFORMAT, "tensor.ovf", "overflow");
    st_expect_bad("shapetype.st", "{\"tensor.s\":{\"dtype\":\"F32\",\"shape\":\"1\",\"data_offsets\":[0,4]}}", 4,
                  AL_EFORMAT, "tensor.s", "shape");
    st_expect_bad("offs1.st", "{\"tensor.o1\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4,
                  AL_EFORMAT, "tensor.o1", "data_offsets");
    st_expect_bad("offs2.st", "{\"tensor.o2\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4.0]}}", 4,
                  AL_EFORMAT, "tensor.o2", "data_offsets");
    st_expect_bad("offs3.st", "{\"tensor.o3\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, AL_EFORMAT, "tensor.o3",
                  "data_offsets");
    st_expect_bad("order.st", "{\"tensor.be\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8,
                  AL_EFORMAT, "tensor.be", "begin");
    st_expect_bad("beyond.st", "{\"tensor.end\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4,
                  AL_EFORMAT, "tensor.end", "beyond");
    st_expect_bad("size.st", "{\"tensor.sz\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 16,
                  AL_EFORMAT, "tensor.sz", "needs 12");
    st_expect_bad("overlap.st",
                  "{\"tensor.one\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                  "\"tensor.two\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[4,12]}}",
                  12, AL_EFORMAT, "tensor.two", "overlaps tensor 'tensor.one'");
    st_expect_bad("overlap2.st",
                  "{\"tensor.big\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                  "\"tensor.mid\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
                  "\"tensor.in\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
                  16, AL_EFORMAT, "overlaps", "tensor.big");
    st_expect_bad("meta.st", "{\"__metadata__\":{\"format\":5}}", 0, AL_EFORMAT, "__metadata__", "format");
    st_expect_bad("meta2.st", "{\"__metadata__\":[1]}", 0, AL_EFORMAT, "__metadata__", NULL);

    /* Valid corner cases: metadata, empty tensors sharing an offset, a scalar, trailing spaces. */
    static const float vals[3] = {1, 2, 3};
    p = st_path("ok.st");
    st_write_raw(p,
                 "{\"__metadata__\":{\"format\":\"pt\"},\"s\":{\"dtype\":\"F32\",\"shape\":[],"
                 "\"data_offsets\":[8,12]},\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]},"
                 "\"v\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}    ",
                 0, vals, sizeof vals);
    assert_int_equal(al_st_open(p, &st), AL_OK);
    assert_int_equal(al_st_count(st), 3);
    const al_st_tensor *s = al_st_find(st, "s");
    assert_int_equal(s->n_dims, 0);
    assert_int_equal(s->n_elems, 1);
    float out[2];
    assert_int_equal(al_st_read_f32(s, out, 0, NULL), AL_OK);
    assert_true(out[0] == 3.0f);
    assert_int_equal(al_st_read_f32(al_st_find(st, "v"), out, 1, (int64_t[]){2}), AL_OK);
    assert_true(out[0] == 1.0f && out[1] == 2.0f);
    al_st_close(st);
}

static void st_write_index(const char *dir, const char *json)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    assert_int_equal(ali_write_file(p, json, strlen(json)), AL_OK);
}

static void test_sharded(void **state)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/sharded", st_dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    float x[4] = {1, 2, 3, 4}, y[2] = {5, 6}, z[1] = {7};
    al_st_wtensor s1[2] = {{.name = "x", .n_dims = 2, .shape = {2, 2}, .data = x},
                           {.name = "y", .dtype = AL_DT_BF16, .n_dims = 1, .shape = {2}, .data = y}};
    al_st_wtensor s2[2] = {{.name = "z", .n_dims = 1, .shape = {1}, .data = z},
                           {.name = "unmapped", .n_dims = 1, .shape = {1}, .data = z}};
    char p[600];
    snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", dir);
    assert_int_equal(al_st_write(p, s1, 2), AL_OK);
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", dir);
    assert_int_equal(al_st_write(p, s2, 2), AL_OK);

    al_st *st = NULL;
    assert_int_equal(al_st_open_dir(dir, "model", &st), AL_ENOTFOUND);
    assert_non_null(strstr(al_errmsg(), dir));

    st_write_index(dir, "{\"metadata\":{\"total_size\":28},\"weight_map\":{"
                        "\"x\":\"model-00001-of-00002.safetensors\",\"z\":\"model-00002-of-00002.safetensors\","
                        "\"y\":\"model-00001-of-00002.safetensors\"}}");
    assert_int_equal(al_st_open_dir(dir, "model", &st), AL_OK);
    assert_int_equal(al_st_count(st), 3); /* only mapped tensors */
    assert_null(al_st_find(st, "unmapped"));
    float out[4];
    assert_int_equal(al_st_read_f32(al_st_find(st, "y"), out, 1, (int64_t[]){2}), AL_OK);
    assert_true(out[0] == 5 && out[1] == 6);
    const al_st_tensor *tz = al_st_find(st, "z");
    assert_int_equal(al_st_read_f32(tz, out, 1, (int64_t[]){1}), AL_OK);
    assert_true(out[0] == 7);
    assert_non_null(strstr(tz->file, "model-00002-of-00002.safetensors"));
    assert_int_equal(al_st_read_f32(al_st_find(st, "x"), out, 2, (int64_t[]){2, 2}), AL_OK);
    assert_true(out[3] == 4);
    al_st_close(st);

    /* A mapped tensor the shard does not hold. */
    st_write_index(dir, "{\"weight_map\":{\"x\":\"model-00001-of-00002.safetensors\","
                        "\"ghost.weight\":\"model-00002-of-00002.safetensors\"}}");
    assert_int_equal(al_st_open_dir(dir, "model", &st), AL_ENOTFOUND);
    assert_non_null(strstr(al_errmsg(), "ghost.weight"));
    assert_non_null(strstr(al_errmsg(), "model-00002-of-00002.safetensors"));
    /* Shard names that escape the directory. */
    st_write_index(dir, "{\"weight_map\":{\"x\":\"../model-00001-of-00002.safetensors\"}}");
    assert_int_equal(al_st_open_dir(dir, "model", &st), AL_EFORMAT);
    assert_non_null(strstr(al_errmsg(), "'x'"));
    st_write_index(dir, "{\"weight_map\":{\"x\":\"sub/model.safetensors\"}}");
    assert_int_equal(al_st_open_dir(dir, "model", &st), AL_EFORMAT);
    st_write_index(dir, "{\"weight_map\":{\"x\":\"a..b\"}}");
    assert_int_equal(al_st_open_dir(dir, "model", &st), AL_EFORMAT);
    /* Missing shard file, bad index content. */
    st_write_index(dir, "{\"weight_map\":{\"x\":\"model-00009-of-00009.safetensors\"}}");
    assert_int_equal(al_st_open_dir(dir, "model", &st), AL_ENOTFOUND);
    assert_non_null(strstr(al_errmsg(), "model-00009-of-00009.safetensors"));
    assert_non_null(strstr(al_errmsg(), "'x'"));
    st_write_index(dir, "{\"weight_map\":{\"x\":1}}");
    assert_int_equal(al_st_open_dir(dir, "model", &st), AL_EFORMAT);
    st_write_index(dir, "{\"weights\":{}}");
    assert_int_equal(al_st_open_dir(dir, "model", &st), AL_EFORMAT);
    assert_non_null(strstr(al_errmsg(), "weight_map"));
    st_write_index(dir, "{\"weight_map\":");
    assert_int_equal(al_st_open_dir(dir, "model", &st), AL_EFORMAT);

    /* A single model.safetensors wins over the index. */
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    assert_int_equal(al_st_write(p, s2, 1), AL_OK);
    assert_int_equal(al_st_open_dir(dir, "model", &st), AL_OK);
    assert_int_equal(al_st_count(st), 1);
    assert_non_null(al_st_find(st, "z"));
    al_st_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_streaming_writer),
        cmocka_unit_test(test_python_written),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_sharded),
    };
    return cmocka_run_group_tests(tests, st_setup, st_teardown);
}
