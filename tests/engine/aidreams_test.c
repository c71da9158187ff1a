/* aidreams_test.c: the engine on the real trained aidreams260K model and its aLoRA against
 * ../shared/models/aidreams260K/fixtures/expected.json (base, plain LoRA and PEFT-aLoRA greedy
 * outputs, top-5 logits). Skipped when ../shared is absent. */
#include "al_test.h"

#include <jansson.h>
#include <math.h>

#include "common/model/adapter.h"
#include "common/model/model.h"
#include "engine/engine.h"

static const char *shared;
static char model_dir[1024], adapter_dir[1024], expected_path[1024];

typedef enum { MODE_BASE, MODE_PLAIN, MODE_ALORA } run_mode;

/* Greedy run stopping at EOS (max n_predict), returning tokens and the last prompt position's logits. */
static void run(al_model *m, al_adapter *a, run_mode mode, const int32_t *prompt, int32_t n, int32_t n_predict,
                int32_t *out, int32_t *n_out, float *last_logits, int32_t *act)
{
    al_engine *e = NULL;
    assert_int_equal(al_engine_create(m, &(al_engine_opts){.max_seqs = 1, .n_blocks = 32}, &e), AL_OK);
    int32_t slot = -1, id;
    if (mode != MODE_BASE)
        assert_int_equal(al_engine_add_adapter(e, a, &slot), AL_OK);
    float *pl = calloc((size_t)n * m->cfg.vocab_size, sizeof(float));
    al_request r = {.tokens = prompt, .n_tokens = n, .adapter = slot,
                    .act_start = mode == MODE_PLAIN ? 0 : AL_ACT_AUTO, .max_tokens = n_predict, .prompt_logits = pl};
    assert_int_equal(al_engine_submit(e, &r, &id), AL_OK);
    assert_int_equal(al_engine_run(e), AL_OK);
    al_result res;
    assert_int_equal(al_engine_result(e, id, &res), AL_OK);
    memcpy(out, res.tokens, sizeof(int32_t) * (size_t)res.n_tokens);
    *n_out = res.n_tokens;
    if (act)
        *act = res.activation_start;
    memcpy(last_logits, pl + (size_t)(n - 1) * m->cfg.vocab_size, sizeof(float) * (size_t)m->cfg.vocab_size);
    free(pl);
    al_engine_free(e);
}

static void check_tokens(const char *what, json_t *want, const int32_t *got, int32_t n)
{
    int ok = (int32_t)json_array_size(want) == n;
    for (int32_t i = 0; ok && i < n; i++)
        ok = json_integer_value(json_array_get(want, (size_t)i)) == got[i];
    if (!ok) {
        fprintf(stderr, "%s: got", what);
        for (int32_t i = 0; i < n; i++)
            fprintf(stderr, " %d", got[i]);
        fprintf(stderr, "\n");
    }
    assert_true(ok);
}

static void check_top5(const char *what, json_t *want, const float *logits)
{
    for (size_t k = 0; k < json_array_size(want); k++) {
        json_t *p = json_array_get(want, k);
        int32_t id = (int32_t)json_integer_value(json_array_get(p, 0));
        double v = json_real_value(json_array_get(p, 1));
        if (fabs(logits[id] - v) > 1e-4)
            fprintf(stderr, "%s: logit[%d] = %.6f, want %.5f\n", what, id, logits[id], v);
        assert_true(fabs(logits[id] - v) <= 1e-4);
    }
}

static void test_expected_cases(void **state)
{
    json_error_t je;
    json_t *root = json_load_file(expected_path, 0, &je);
    assert_non_null(root);
    al_model *m = NULL;
    al_adapter *a = NULL;
    assert_int_equal(al_model_load(model_dir, &m), AL_OK);
    assert_int_equal(al_adapter_load(adapter_dir, &m->cfg, &a), AL_OK);
    int32_t n_predict = (int32_t)json_integer_value(json_object_get(root, "n_predict"));
    size_t i;
    json_t *c;
    int checked = 0;
    json_array_foreach(json_object_get(root, "cases"), i, c)
    {
        const char *name = json_string_value(json_object_get(c, "name"));
        json_t *pt = json_object_get(c, "prompt_tokens");
        int32_t n = (int32_t)json_array_size(pt), prompt[256], out[256], n_out, act;
        for (int32_t k = 0; k < n; k++)
            prompt[k] = (int32_t)json_integer_value(json_array_get(pt, (size_t)k));
        float *last = malloc(sizeof(float) * (size_t)m->cfg.vocab_size);
        char what[128];
        snprintf(what, sizeof what, "%s/base", name);
        run(m, a, MODE_BASE, prompt, n, n_predict, out, &n_out, last, NULL);
        check_tokens(what, json_object_get(c, "base"), out, n_out);
        check_top5(what, json_object_get(c, "base_top5_last"), last);
        snprintf(what, sizeof what, "%s/plain_lora", name);
        run(m, a, MODE_PLAIN, prompt, n, n_predict, out, &n_out, last, NULL);
        check_tokens(what, json_object_get(c, "plain_lora"), out, n_out);
        snprintf(what, sizeof what, "%s/alora_peft", name);
        run(m, a, MODE_ALORA, prompt, n, n_predict, out, &n_out, last, &act);
        check_tokens(what, json_object_get(c, "alora_peft"), out, n_out);
        json_t *s = json_object_get(c, "invocation_start");
        assert_int_equal(act, json_is_integer(s) ? (int32_t)json_integer_value(s) : -1);
        if (json_object_get(c, "alora_peft_top5_last"))
            check_top5(what, json_object_get(c, "alora_peft_top5_last"), last);
        free(last);
        checked++;
    }
    assert_true(checked >= 3);
    al_adapter_free(a);
    al_model_free(m);
    json_decref(root);
}

int main(void)
{
    shared = al_test_shared();
    if (!shared) {
        fprintf(stderr, "../shared is absent: skipping the aidreams260K tests\n");
        return AL_TEST_SKIP_CODE;
    }
    snprintf(model_dir, sizeof model_dir, "%s/models/aidreams260K/hf", shared);
    snprintf(adapter_dir, sizeof adapter_dir, "%s/models/aidreams260K/alora-isense/peft", shared);
    snprintf(expected_path, sizeof expected_path, "%s/models/aidreams260K/fixtures/expected.json", shared);
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_expected_cases)};
    return cmocka_run_group_tests_name("engine_aidreams", tests, NULL, NULL);
}
