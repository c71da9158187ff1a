/* tokenizer_test.c: tokenizer.json loading, encode/decode against HF fixtures, streaming, errors. */
#include "al_test.h"

#include <jansson.h>
#include <pthread.h>

#include "common/text/tokenizer.h"

#define FIX "tests/fixtures/tokenizer/"

static int hexval(char c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; }

/* Runs one cases_<name>.json file; returns the number of cases checked. */
static int run_cases(const char *tok_path, const char *cases_path)
{
    al_tokenizer *t = NULL;
    al_err e = al_tokenizer_load(tok_path, &t);
    if (e != AL_OK)
        fail_msg("load %s: %s", tok_path, al_errmsg());
    json_error_t je;
    json_t *root = json_load_file(cases_path, 0, &je);
    assert_non_null(root);
    json_t *cases = json_object_get(root, "cases");
    assert_true(json_array_size(cases) >= 2000);
    size_t i;
    json_t *c;
    int bad = 0;
    json_array_foreach(cases, i, c)
    {
        const char *text = json_string_value(json_object_get(c, "text"));
        char *buf = NULL;
        size_t len;
        const char *hex = json_string_value(json_object_get(c, "hex"));
        if (hex) {
            len = strlen(hex) / 2;
            buf = malloc(len + 1);
            for (size_t k = 0; k < len; k++)
                buf[k] = (char)(hexval(hex[2 * k]) * 16 + hexval(hex[2 * k + 1]));
            buf[len] = 0;
        } else {
            len = json_string_length(json_object_get(c, "text"));
        }
        const char *in = hex ? buf : text;
        json_t *ids = json_object_get(c, "ids");
        int32_t *got;
        int32_t n;
        assert_int_equal(al_tokenizer_encode(t, in, len, 1, &got, &n), AL_OK);
        int ok = (size_t)n == json_array_size(ids);
        for (int32_t k = 0; ok && k < n; k++)
            ok = got[k] == json_integer_value(json_array_get(ids, k));
        if (!ok && bad++ < 5) {
            fprintf(stderr, "%s case %zu: ids differ for %s\n  got:", cases_path, i,
                    hex ? hex : text);
            for (int32_t k = 0; k < n; k++)
                fprintf(stderr, " %d", got[k]);
            fprintf(stderr, "\n  exp:");
            for (size_t k = 0; k < json_array_size(ids); k++)
                fprintf(stderr, " %lld", (long long)json_integer_value(json_array_get(ids, k)));
            fprintf(stderr, "\n");
        }
        /* decode with the expected ids, both modes */
        int32_t ne = (int32_t)json_array_size(ids);
        int32_t *exp = malloc(sizeof(int32_t) * (size_t)(ne + 1));
        for (int32_t k = 0; k < ne; k++)
            exp[k] = (int32_t)json_integer_value(json_array_get(ids, k));
        for (int skip = 0; skip < 2; skip++) {
            const char *want = json_string_value(json_object_get(c, skip ? "dec_skip" : "dec"));
            if (!want)
                want = text;
            char *dec;
            size_t dl;
            assert_int_equal(al_tokenizer_decode(t, exp, ne, skip, &dec, &dl), AL_OK);
            if (want && strcmp(dec, want) && bad++ < 5)
                fprintf(stderr, "%s case %zu: decode(skip=%d) = [%s], want [%s]\n", cases_path,
                        i, skip, dec, want);
            /* streaming equals the full decode */
            al_detok *d;
            assert_int_equal(al_detok_new(t, skip, &d), AL_OK);
            size_t cap = dl + 64, sl = 0;
            char *acc = malloc(cap);
            for (int32_t k = 0; k <= ne; k++) {
                char *piece;
                size_t pl;
                if (k < ne)
                    assert_int_equal(al_detok_push(d, exp[k], &piece, &pl), AL_OK);
                else
                    assert_int_equal(al_detok_flush(d, &piece, &pl), AL_OK);
                assert_int_equal(strlen(piece), pl);
                if (sl + pl + 1 > cap) {
                    cap = (sl + pl + 1) * 2;
                    acc = realloc(acc, cap);
                }
                memcpy(acc + sl, piece, pl);
                sl += pl;
                free(piece);
            }
            acc[sl] = 0;
            if (strcmp(acc, dec) && bad++ < 5)
                fprintf(stderr, "%s case %zu: stream(skip=%d) = [%s], decode = [%s]\n",
                        cases_path, i, skip, acc, dec);
            free(acc);
            al_detok_free(d);
            free(dec);
        }
        free(exp);
        free(got);
        free(buf);
    }
    int total = (int)json_array_size(cases);
    json_decref(root);
    al_tokenizer_free(t);
    if (bad)
        fail_msg("%s: %d mismatches", cases_path, bad);
    return total;
}

static void test_llama3_style(void **state)
{
    (void)state;
    run_cases(FIX "bl_llama3.tokenizer.json", FIX "cases_bl_llama3.json");
}

static void test_gpt2_style(void **state)
{
    (void)state;
    run_cases(FIX "bl_gpt2.tokenizer.json", FIX "cases_bl_gpt2.json");
}

static void test_sp_metaspace(void **state)
{
    (void)state;
    run_cases(FIX "sp_meta.tokenizer.json", FIX "cases_sp_meta.json");
}

static void test_aidreams_corpus(void **state)
{
    (void)state;
    const char *sh = al_test_shared();
    if (!sh)
        skip();
    char p[4096];
    snprintf(p, sizeof p, "%s/models/aidreams260K/hf/tokenizer.json", sh);
    run_cases(p, FIX "cases_aidreams260K.json");
}

/* The 301 reference cases shipped with the test model (ids with the leading BOS 1). */
static void test_aidreams_reference(void **state)
{
    (void)state;
    const char *sh = al_test_shared();
    if (!sh)
        skip();
    char p[4096];
    snprintf(p, sizeof p, "%s/models/aidreams260K/hf", sh);
    al_tokenizer *t;
    assert_int_equal(al_tokenizer_load(p, &t), AL_OK);
    assert_int_equal(al_tokenizer_bos(t), 1);
    assert_int_equal(al_tokenizer_eos(t), 2);
    assert_int_equal(al_tokenizer_vocab_size(t), 512);
    assert_true(al_tokenizer_is_special(t, 1));
    assert_false(al_tokenizer_is_special(t, 100));
    assert_int_equal(al_tokenizer_token_id(t, "<s>"), 1);
    assert_string_equal(al_tokenizer_piece(t, 2), "</s>");
    assert_null(al_tokenizer_chat_template(t));
    assert_true(al_tokenizer_adds_prefix(t));
    snprintf(p, sizeof p, "%s/models/aidreams260K/fixtures/tokenizer_cases.json", sh);
    json_error_t je;
    json_t *cases = json_load_file(p, 0, &je);
    assert_non_null(cases);
    assert_int_equal(json_array_size(cases), 301);
    size_t i;
    json_t *c;
    json_array_foreach(cases, i, c)
    {
        const char *text = json_string_value(json_object_get(c, "text"));
        json_t *ids = json_object_get(c, "ids");
        int32_t *got, n;
        assert_int_equal(al_tokenizer_encode(t, text, strlen(text), 1, &got, &n), AL_OK);
        assert_int_equal(n, json_array_size(ids));
        for (int32_t k = 0; k < n; k++)
            assert_int_equal(got[k], json_integer_value(json_array_get(ids, k)));
        free(got);
    }
    json_decref(cases);
    al_tokenizer_free(t);
}

static void test_api(void **state)
{
    (void)state;
    al_tokenizer *t;
    assert_int_equal(al_tokenizer_load(FIX "bl_llama3.tokenizer.json", &t), AL_OK);
    int32_t bot = al_tokenizer_token_id(t, "<|begin_of_text|>");
    assert_true(bot >= 0);
    assert_int_equal(al_tokenizer_bos(t), bot);
    assert_int_equal(al_tokenizer_eos(t), -1);
    assert_true(al_tokenizer_is_special(t, bot));
    assert_int_equal(al_tokenizer_token_id(t, "no such piece"), -1);
    assert_null(al_tokenizer_piece(t, -1));
    assert_null(al_tokenizer_piece(t, al_tokenizer_vocab_size(t)));
    /* add_special = 0: no BOS; empty text gives zero ids */
    int32_t *ids, n;
    assert_int_equal(al_tokenizer_encode(t, "", 0, 0, &ids, &n), AL_OK);
    assert_int_equal(n, 0);
    assert_non_null(ids);
    free(ids);
    assert_int_equal(al_tokenizer_encode(t, "", 0, 1, &ids, &n), AL_OK);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], bot);
    free(ids);
    /* unknown ids are skipped by decode */
    int32_t junk[] = {-5, 999999, al_tokenizer_token_id(t, "a")};
    char *s;
    size_t sl;
    assert_int_equal(al_tokenizer_decode(t, junk, 3, 0, &s, &sl), AL_OK);
    assert_string_equal(s, "a");
    free(s);
    /* random ids: decode and the stream agree, output is valid text */
    srand(3);
    for (int round = 0; round < 200; round++) {
        int32_t r[24];
        int nr = 1 + rand() % 24;
        for (int k = 0; k < nr; k++)
            r[k] = rand() % al_tokenizer_vocab_size(t);
        assert_int_equal(al_tokenizer_decode(t, r, nr, 0, &s, &sl), AL_OK);
        al_detok *d;
        assert_int_equal(al_detok_new(t, 0, &d), AL_OK);
        char acc[4096];
        size_t al = 0;
        for (int k = 0; k <= nr; k++) {
            char *p;
            size_t pl;
            if (k < nr)
                assert_int_equal(al_detok_push(d, r[k], &p, &pl), AL_OK);
            else
                assert_int_equal(al_detok_flush(d, &p, &pl), AL_OK);
            memcpy(acc + al, p, pl);
            al += pl;
            free(p);
        }
        acc[al] = 0;
        assert_string_equal(acc, s);
        al_detok_free(d);
        free(s);
    }
    al_tokenizer_free(t);
}

static void test_stream_partial_utf8(void **state)
{
    (void)state;
    /* "é😀" in a byte-level tokenizer: bytes arrive one token at a time, nothing is emitted
     * until a character is complete. */
    al_tokenizer *t;
    assert_int_equal(al_tokenizer_load(FIX "bl_gpt2.tokenizer.json", &t), AL_OK);
    static const char *const bl[] = {"Ã", "©", "ð", "Ł", "ĺ", "Ģ"}; /* C3 A9 F0 9F 98 80 */
    al_detok *d;
    assert_int_equal(al_detok_new(t, 1, &d), AL_OK);
    const char *want[] = {"", "\xC3\xA9", "", "", "", "\xF0\x9F\x98\x80"};
    for (int k = 0; k < 6; k++) {
        int32_t id = al_tokenizer_token_id(t, bl[k]);
        assert_true(id >= 0);
        char *p;
        size_t pl;
        assert_int_equal(al_detok_push(d, id, &p, &pl), AL_OK);
        assert_string_equal(p, want[k]);
        free(p);
    }
    al_detok_free(d);
    al_tokenizer_free(t);
}

static void expect_load_error(const char *json, const char *needle)
{
    char *dir = al_test_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    FILE *f = fopen(path, "w");
    fputs(json, f);
    fclose(f);
    al_tokenizer *t = (al_tokenizer *)1;
    al_err e = al_tokenizer_load(dir, &t);
    if (e == AL_OK)
        fail_msg("expected an error for %s", json);
    assert_null(t);
    const char *msg = al_errmsg();
    if (!strstr(msg, path) || !strstr(msg, needle))
        fail_msg("message '%s' lacks '%s' or the path", msg, needle);
    al_test_rmrf(dir);
    free(dir);
}

#define MODEL_OK "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"merges\":[\"a b\"]}"

static void test_malformed(void **state)
{
    (void)state;
    expect_load_error("{", "invalid JSON");
    expect_load_error("[]", "expected a JSON object");
    expect_load_error("{}", "model");
    expect_load_error("{\"model\":{\"type\":\"WordPiece\",\"vocab\":{}}}", "model.type");
    expect_load_error("{\"model\":{\"type\":\"BPE\",\"vocab\":[]}}", "model.vocab");
    expect_load_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-1}}}", "model.vocab['a']");
    expect_load_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":\"x\"}}}", "model.vocab['a']");
    expect_load_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a c\"]}}",
                      "model.merges[0]");
    expect_load_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"ab\"]}}",
                      "model.merges[0]");
    expect_load_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[[1,2]]}}",
                      "model.merges[0]");
    expect_load_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"unk_token\":\"<unk>\"}}",
                      "model.unk_token");
    expect_load_error("{" MODEL_OK ",\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":"
                      "\"(\"},\"behavior\":\"Isolated\"}}", "pre_tokenizer.pattern");
    expect_load_error("{" MODEL_OK ",\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":"
                      "\"x\"},\"behavior\":\"Sideways\"}}", "pre_tokenizer.behavior");
    expect_load_error("{" MODEL_OK ",\"pre_tokenizer\":{\"type\":\"BertPreTokenizer\"}}",
                      "pre_tokenizer.type");
    expect_load_error("{" MODEL_OK ",\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":["
                      "{\"type\":\"ByteLevel\"},{\"type\":\"Digits\"}]}}",
                      "pre_tokenizer.pretokenizers[1]");
    expect_load_error("{" MODEL_OK ",\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":["
                      "{\"type\":\"Lowercase\"}]}}", "normalizer.normalizers[0].type");
    expect_load_error("{" MODEL_OK ",\"normalizer\":{\"type\":\"Replace\",\"content\":\"x\"}}",
                      "normalizer.pattern");
    expect_load_error("{" MODEL_OK ",\"decoder\":{\"type\":\"WordPiece\"}}", "decoder.type");
    expect_load_error("{" MODEL_OK ",\"decoder\":{\"type\":\"Strip\",\"content\":\" \"}}",
                      "decoder");
    expect_load_error("{" MODEL_OK ",\"added_tokens\":[{\"id\":\"x\",\"content\":\"<s>\"}]}",
                      "added_tokens[0].id");
    expect_load_error("{" MODEL_OK ",\"added_tokens\":[{\"id\":5}]}", "added_tokens[0].content");
    expect_load_error("{" MODEL_OK ",\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":"
                      "[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\","
                      "\"type_id\":0}}],\"special_tokens\":{}}}", "post_processor.special_tokens");
    expect_load_error("{" MODEL_OK ",\"post_processor\":{\"type\":\"BertProcessing\",\"sep\":1}}",
                      "post_processor.cls");
    /* missing file */
    al_tokenizer *t;
    assert_int_not_equal(al_tokenizer_load("/nonexistent/tokenizer.json", &t), AL_OK);
}

static void test_config_dir(void **state)
{
    (void)state;
    char *dir = al_test_tmpdir();
    char cmd[1024], path[512];
    snprintf(cmd, sizeof cmd, "cp " FIX "bl_llama3.tokenizer.json %s/tokenizer.json", dir);
    assert_int_equal(system(cmd), 0);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    FILE *f = fopen(path, "w");
    fputs("{\"bos_token\":\"<|begin_of_text|>\",\"eos_token\":{\"content\":\"<|eot_id|>\"},"
          "\"chat_template\":\"{{ '<|start_header_id|>' }}\"}", f);
    fclose(f);
    al_tokenizer *t;
    assert_int_equal(al_tokenizer_load(dir, &t), AL_OK);
    assert_int_equal(al_tokenizer_eos(t), al_tokenizer_token_id(t, "<|eot_id|>"));
    assert_string_equal(al_tokenizer_chat_template(t), "{{ '<|start_header_id|>' }}");
    al_tokenizer_free(t);
    f = fopen(path, "w");
    fputs("{\"chat_template\": 5}", f);
    fclose(f);
    assert_int_not_equal(al_tokenizer_load(dir, &t), AL_OK);
    assert_non_null(strstr(al_errmsg(), "chat_template"));
    al_test_rmrf(dir);
    free(dir);
}

/* transformers' Llama fast tokenizer rebuilds the template from add_bos_token/add_eos_token. */
static void test_config_llama_class(void **state)
{
    (void)state;
    const char *sh = al_test_shared();
    if (!sh)
        skip();
    char *dir = al_test_tmpdir();
    char cmd[1024], path[512];
    snprintf(cmd, sizeof cmd, "cp %s/models/aidreams260K/hf/tokenizer.json %s/", sh, dir);
    assert_int_equal(system(cmd), 0);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    FILE *f = fopen(path, "w");
    fputs("{\"tokenizer_class\":\"LlamaTokenizer\",\"add_bos_token\":false,\"add_eos_token\":true,"
          "\"bos_token\":\"<s>\",\"eos_token\":\"</s>\"}", f);
    fclose(f);
    al_tokenizer *t;
    assert_int_equal(al_tokenizer_load(dir, &t), AL_OK);
    int32_t *ids, n;
    assert_int_equal(al_tokenizer_encode(t, "", 0, 1, &ids, &n), AL_OK);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], 2);
    assert_false(al_tokenizer_adds_prefix(t));
    free(ids);
    al_tokenizer_free(t);
    al_test_rmrf(dir);
    free(dir);
}

typedef struct thr_arg {
    const al_tokenizer *t;
    json_t *cases;
    int bad;
} thr_arg;

static void *thr_main(void *p)
{
    thr_arg *a = p;
    for (int round = 0; round < 3; round++) {
        size_t i;
        json_t *c;
        json_array_foreach(a->cases, i, c)
        {
            json_t *jt = json_object_get(c, "text");
            if (!jt)
                continue;
            int32_t *ids, n;
            if (al_tokenizer_encode(a->t, json_string_value(jt), json_string_length(jt), 1, &ids,
                                    &n) != AL_OK) {
                a->bad++;
                continue;
            }
            json_t *want = json_object_get(c, "ids");
            int ok = (size_t)n == json_array_size(want);
            for (int32_t k = 0; ok && k < n; k++)
                ok = ids[k] == json_integer_value(json_array_get(want, k));
            a->bad += !ok;
            free(ids);
        }
    }
    return NULL;
}

/* One tokenizer shared by several threads (the word cache is locked). */
static void test_threads(void **state)
{
    (void)state;
    al_tokenizer *t;
    assert_int_equal(al_tokenizer_load(FIX "bl_llama3.tokenizer.json", &t), AL_OK);
    json_error_t je;
    json_t *root = json_load_file(FIX "cases_bl_llama3.json", 0, &je);
    assert_non_null(root);
    pthread_t th[4];
    thr_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (thr_arg){t, json_object_get(root, "cases"), 0};
        assert_int_equal(pthread_create(&th[i], NULL, thr_main, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].bad, 0);
    }
    json_decref(root);
    al_tokenizer_free(t);
}

/* al_tokenizer_token_bytes: every non-special id's bytes are what it adds to a text after "a"
 * (decode([a, id]) minus decode([a]), the HF-tested decoder), where that text is valid UTF-8;
 * byte-fallback pieces are their byte; and hand-checked pieces. */
static void token_bytes_vs_decode(const char *path, int *checked)
{
    al_tokenizer *t = NULL;
    assert_int_equal(al_tokenizer_load(path, &t), AL_OK);
    int32_t a_ids[1] = {-1};
    for (const char *const *p = (const char *const[]){"a", "e", "t", "x", NULL}; *p && a_ids[0] < 0; p++)
        a_ids[0] = al_tokenizer_token_id(t, *p);
    assert_true(a_ids[0] >= 0);
    char *base;
    size_t bl;
    assert_int_equal(al_tokenizer_decode(t, a_ids, 1, 0, &base, &bl), AL_OK);
    for (int32_t id = 0; id < al_tokenizer_vocab_size(t); id++) {
        char *b = NULL, *txt = NULL;
        size_t n, tl;
        al_err e = al_tokenizer_token_bytes(t, id, &b, &n);
        if (al_tokenizer_is_special(t, id) || !al_tokenizer_piece(t, id)) {
            assert_int_equal(e, AL_ENOTFOUND);
            continue;
        }
        assert_int_equal(e, AL_OK);
        const char *pc = al_tokenizer_piece(t, id);
        if (strlen(pc) == 6 && !strncmp(pc, "<0x", 3)) { /* byte fallback */
            assert_int_equal(n, 1);
            assert_int_equal((unsigned char)b[0], (unsigned)strtol(pc + 3, NULL, 16));
        }
        int32_t two[2] = {a_ids[0], id};
        assert_int_equal(al_tokenizer_decode(t, two, 2, 0, &txt, &tl), AL_OK);
        if (!strstr(txt, "\xEF\xBF\xBD") || memmem(b, n, "\xEF\xBF\xBD", 3)) {
            if (tl != bl + n || memcmp(txt + bl, b, n) != 0)
                fail_msg("%s: token %d (%s): bytes '%.*s', decode adds '%s'", path, id, pc, (int)n, b, txt + bl);
            (*checked)++;
        }
        free(b);
        free(txt);
    }
    free(base);
    al_tokenizer_free(t);
}

static void test_token_bytes(void **state)
{
    (void)state;
    int checked = 0;
    token_bytes_vs_decode(FIX "bl_gpt2.tokenizer.json", &checked);
    token_bytes_vs_decode(FIX "bl_llama3.tokenizer.json", &checked);
    token_bytes_vs_decode(FIX "sp_meta.tokenizer.json", &checked);
    assert_true(checked > 1000);
    /* hand-checked: byte-level "Ġ" is a space, SentencePiece "▁" too, with no start-of-text strip */
    al_tokenizer *t = NULL;
    assert_int_equal(al_tokenizer_load(FIX "bl_gpt2.tokenizer.json", &t), AL_OK);
    int32_t id = al_tokenizer_token_id(t, "\xC4\xA0the");
    if (id >= 0) {
        char *b;
        size_t n;
        assert_int_equal(al_tokenizer_token_bytes(t, id, &b, &n), AL_OK);
        assert_int_equal(n, 4);
        assert_memory_equal(b, " the", 4);
        free(b);
    }
    al_tokenizer_free(t);
    assert_int_equal(al_tokenizer_load(FIX "sp_meta.tokenizer.json", &t), AL_OK);
    for (int32_t i = 0; i < al_tokenizer_vocab_size(t); i++) {
        const char *pc = al_tokenizer_piece(t, i);
        if (pc && !strncmp(pc, "\xE2\x96\x81", 3) && pc[3] && !al_tokenizer_is_special(t, i)) {
            char *b;
            size_t n;
            assert_int_equal(al_tokenizer_token_bytes(t, i, &b, &n), AL_OK);
            assert_int_equal(b[0], ' ');
            size_t k = 0;
            for (const char *q = pc; (q = strstr(q, "\xE2\x96\x81")); q += 3)
                k++;
            assert_int_equal(n, strlen(pc) - 2 * k); /* each 3-byte U+2581 became one space */
            free(b);
            break;
        }
    }
    al_tokenizer_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token_bytes),
        cmocka_unit_test(test_llama3_style),      cmocka_unit_test(test_gpt2_style),
        cmocka_unit_test(test_sp_metaspace),      cmocka_unit_test(test_aidreams_corpus),
        cmocka_unit_test(test_aidreams_reference), cmocka_unit_test(test_api),
        cmocka_unit_test(test_stream_partial_utf8), cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_config_dir),        cmocka_unit_test(test_config_llama_class),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
