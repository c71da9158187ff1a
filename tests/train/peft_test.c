/* peft_test.c: the trainer against PEFT (tests/fixtures/train, tests/oracle/gen_train_fixtures.py):
 * one batch's loss and the gradients of every lora_A / lora_B within 1e-4, and the weights after N
 * steps of plain SGD within 1e-4, for aLoRA and plain LoRA on the tiny Llama and Granite models. */
#include "al_test.h"

#include <jansson.h>
#include <math.h>

#include "common/model/safetensors.h"
#include "train/train.h"

#define FIX "tests/fixtures/train"

typedef struct ex {
    int32_t ids[64];
    int32_t n, n_prompt;
} ex;

/* loss (the mean over every target token of the batch, as HF) and gradients into t->g */
static double batch_grad(al_trainer *tr, al_tlora *t, const ex *e, int n_ex, const json_t *starts)
{
    int total = 0;
    for (int i = 0; i < n_ex; i++)
        total += e[i].n - e[i].n_prompt;
    double nll = 0;
    al_tlora_zero_grad(t);
    for (int i = 0; i < n_ex; i++) {
        al_train_result r;
        assert_int_equal(al_trainer_example(tr, t, e[i].ids, e[i].n, e[i].n_prompt, 1.0f / total, 1, &r), AL_OK);
        if (starts)
            assert_int_equal(r.act_start, json_integer_value(json_array_get(starts, (size_t)i)));
        nll += r.nll;
    }
    return nll / total;
}

/* max |got - want| over a tensor, relative to the tensor's largest |want| */
static double rel_err(const float *got, const float *want, size_t n)
{
    double m = 0, d = 0;
    for (size_t i = 0; i < n; i++) {
        m = fmax(m, fabs(want[i]));
        d = fmax(d, fabs((double)got[i] - want[i]));
    }
    return d / fmax(m, 1e-12);
}

static void compare(const al_tlora *t, const al_model_config *c, const al_st *st, int grads, const char *cas)
{
    double worst = 0;
    int n = 0;
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < AL_T_COUNT; k++) {
            const al_tmod *md = &t->mods[l * AL_T_COUNT + k];
            if (md->r <= 0)
                continue;
            for (int ab = 0; ab < 2; ab++) {
                char nm[200];
                snprintf(nm, sizeof nm, "base_model.model.model.layers.%d.%s.%s.lora_%c.weight.%s", l,
                         k <= AL_T_O ? "self_attn" : "mlp", al_target_module((al_target)k), ab ? 'B' : 'A',
                         grads ? "grad" : "sgd");
                const al_st_tensor *ts = al_st_find(st, nm);
                assert_non_null(ts);
                size_t cnt = (size_t)md->r * (ab ? md->out : md->in);
                assert_int_equal(ts->n_elems, (int64_t)cnt);
                float *want = malloc(cnt * sizeof(float));
                assert_int_equal(al_st_read_f32(ts, want, 0, NULL), AL_OK);
                const float *got = grads ? (ab ? md->gB : md->gA) : (ab ? md->B : md->A);
                double e = rel_err(got, want, cnt);
                if (e > 1e-4)
                    fprintf(stderr, "%s %s: relative error %.3g\n", cas, nm, e);
                worst = fmax(worst, e);
                n++;
                free(want);
            }
        }
    fprintf(stderr, "%s: %d %s tensors, worst relative error %.3g\n", cas, n, grads ? "gradient" : "SGD weight",
            worst);
    assert_true(worst <= 1e-4);
}

static void run_case(const char *cas)
{
    json_error_t je;
    json_t *root = json_load_file(FIX "/train.json", 0, &je);
    assert_non_null(root);
    json_t *c = json_object_get(json_object_get(root, "cases"), cas);
    assert_non_null(c);
    char dir[256];
    al_model *m;
    al_adapter *a;
    snprintf(dir, sizeof dir, "tests/fixtures/oracle/%s", json_string_value(json_object_get(c, "model")));
    assert_int_equal(al_model_load(dir, &m), AL_OK);
    snprintf(dir, sizeof dir, FIX "/%s", json_string_value(json_object_get(c, "adapter")));
    assert_int_equal(al_adapter_load(dir, &m->cfg, &a), AL_OK);
    al_tlora *t;
    assert_int_equal(al_tlora_from_adapter(&m->cfg, a, &t), AL_OK);
    ex e[4];
    json_t *exs = json_object_get(c, "examples"), *v;
    size_t i;
    int n_ex = 0;
    json_array_foreach(exs, i, v)
    {
        json_t *ids = json_object_get(v, "ids");
        e[n_ex].n = (int32_t)json_array_size(ids);
        for (int j = 0; j < e[n_ex].n; j++)
            e[n_ex].ids[j] = (int32_t)json_integer_value(json_array_get(ids, (size_t)j));
        e[n_ex].n_prompt = (int32_t)json_integer_value(json_object_get(v, "n_prompt"));
        n_ex++;
    }
    al_st *st;
    snprintf(dir, sizeof dir, FIX "/%s.safetensors", cas);
    assert_int_equal(al_st_open(dir, &st), AL_OK);
    al_trainer *tr;
    assert_int_equal(al_trainer_create(m, al_ops_cpu(), &tr), AL_OK);

    double loss = batch_grad(tr, t, e, n_ex, json_object_get(c, "act_starts"));
    double want = json_real_value(json_object_get(c, "loss"));
    fprintf(stderr, "%s: loss %.7f, PEFT %.7f\n", cas, loss, want);
    assert_true(fabs(loss - want) <= 1e-4 * fabs(want));
    compare(t, &m->cfg, st, 1, cas);

    /* N steps of SGD from the same start */
    float lr = (float)json_real_value(json_object_get(root, "lr"));
    int steps = (int)json_integer_value(json_object_get(root, "n_sgd"));
    json_t *losses = json_object_get(c, "sgd_losses");
    for (int s = 0; s < steps; s++) {
        double l = batch_grad(tr, t, e, n_ex, NULL);
        double w = json_real_value(json_array_get(losses, (size_t)s));
        assert_true(fabs(l - w) <= 1e-4 * fabs(w));
        al_tlora_sgd(t, lr);
    }
    compare(t, &m->cfg, st, 0, cas);

    al_trainer_free(tr);
    al_st_close(st);
    al_tlora_free(t);
    al_adapter_free(a);
    al_model_free(m);
    json_decref(root);
}

static void test_llama_alora(void **state) { run_case("llama_alora"); }
static void test_llama_lora(void **state) { run_case("llama_lora"); }
static void test_granite_alora(void **state) { run_case("granite_alora"); }
static void test_granite_lora(void **state) { run_case("granite_lora"); }

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama_alora),
        cmocka_unit_test(test_llama_lora),
        cmocka_unit_test(test_granite_alora),
        cmocka_unit_test(test_granite_lora),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
