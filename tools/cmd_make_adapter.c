/* cmd_make_adapter.c: `alora make-adapter`: writes a random PEFT (a)LoRA adapter for a model. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/model/adapter.h"
#include "common/model/model.h"
#include "common/model/safetensors.h"
#include "common/util.h"
#include "tools/cli_util.h"
#include "tools/cmds.h"

static void cli_ma_usage(FILE *f)
{
    fprintf(f, "usage: alora make-adapter --model DIR --targets q,k,v,... --rank R --alpha A\n"
               "                          [--invocation 5,6,7] [--rslora] [--seed S] OUT_DIR\n"
               "Writes OUT_DIR/adapter_config.json and OUT_DIR/adapter_model.safetensors (PEFT layout,\n"
               "f32) with random A and non-zero random B for every layer and target.\n"
               "Targets: q, k, v, o, gate, up, down (or q_proj, ...). --invocation makes it an aLoRA.\n");
}

static int cli_ma_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int cli_ma_fail(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "alora make-adapter: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    if (code == 2)
        cli_ma_usage(stderr);
    return code;
}

static int cli_parse_int(const char *s, long long lo, long long hi, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || !*s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

typedef struct cli_ma_opts {
    const char *model, *out;
    int targets[AL_T_COUNT], n_targets;
    int rank;
    double alpha;
    int rslora;
    uint64_t seed;
    int32_t *inv;
    int n_inv;
} cli_ma_opts;

static al_err cli_ma_write_config(const char *path, const cli_ma_opts *o, const al_model_config *mc)
{
    return al_adapter_write_config(path, mc->name, o->rank, o->alpha, o->targets, o->rslora, o->inv, o->n_inv);
}

static al_err cli_ma_write_tensors(const char *path, const cli_ma_opts *o, const al_model_config *mc)
{
    int n = mc->n_layers * o->n_targets * 2, k = 0;
    al_st_wtensor *ts = calloc((size_t)n, sizeof *ts);
    float *buf = NULL;
    al_st_writer *w = NULL;
    al_err e = AL_OK;
    if (!ts)
        return ali_errf(AL_ENOMEM, "out of memory");
    int64_t maxe = 0;
    for (int l = 0; l < mc->n_layers; l++)
        for (int t = 0; t < AL_T_COUNT; t++) {
            if (!o->targets[t])
                continue;
            int64_t in, out;
            int32_t in32, out32;
            al_target_dims(mc, (al_target)t, &in32, &out32);
            in = in32;
            out = out32;
            for (int ab = 0; ab < 2; ab++) {
                char nm[200];
                snprintf(nm, sizeof nm, "base_model.model.model.layers.%d.%s.%s.lora_%c.weight", l,
                         t <= AL_T_O ? "self_attn" : "mlp", al_target_module((al_target)t), ab ? 'B' : 'A');
                al_st_wtensor *x = &ts[k++];
                x->name = strdup(nm);
                x->dtype = AL_DT_F32;
                x->n_dims = 2;
                x->shape[0] = ab ? out : o->rank;
                x->shape[1] = ab ? o->rank : in;
                maxe = AL_MAX(maxe, x->shape[0] * x->shape[1]);
                if (!x->name) {
                    e = ali_errf(AL_ENOMEM, "out of memory");
                    goto out;
                }
            }
        }
    buf = malloc(sizeof(float) * (size_t)maxe);
    if (!buf) {
        e = ali_errf(AL_ENOMEM, "out of memory");
        goto out;
    }
    e = al_st_writer_open(path, ts, n, &w);
    if (e != AL_OK)
        goto out;
    double scale = o->rslora ? o->alpha / sqrt((double)o->rank) : o->alpha / o->rank;
    al_rng rng;
    al_rng_seed(&rng, o->seed);
    for (int i = 0; i < n && e == AL_OK; i++) {
        int is_b = i % 2;
        int64_t ne = ts[i].shape[0] * ts[i].shape[1];
        int64_t in = is_b ? ts[i - 1].shape[1] : ts[i].shape[1];
        /* A: std 1/sqrt(in), so A x ~ N(0, |x|^2/in). B: chosen so that scale*B*A*x has about the
         * std of the base projection (0.02 * |x|): a clearly visible change of the outputs. */
        double std = is_b ? 0.02 * sqrt((double)in) / (sqrt((double)o->rank) * fabs(scale))
                          : 1.0 / sqrt((double)in);
        for (int64_t j = 0; j < ne; j++)
            buf[j] = (float)(std * al_rng_normal(&rng));
        e = al_st_writer_put(w, buf, ne);
    }
    if (e == AL_OK) {
        e = al_st_writer_close(w);
        w = NULL;
    }
out:
    al_st_writer_abort(w);
    for (int i = 0; i < n; i++)
        free((char *)ts[i].name);
    free(ts);
    free(buf);
    return e;
}

static int cli_parse_list(char *s, cli_ma_opts *o)
{
    char *save = NULL;
    for (char *tok = strtok_r(s, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int t = al_target_parse(tok);
        if (t < 0)
            return cli_ma_fail(2, "unknown target '%s' (q, k, v, o, gate, up, down)", tok);
        if (!o->targets[t])
            o->n_targets++;
        o->targets[t] = 1;
    }
    return 0;
}

int cmd_make_adapter(int argc, char **argv)
{
    cli_ma_opts o;
    memset(&o, 0, sizeof o);
    o.rank = 8;
    o.alpha = 16;
    o.seed = 1234;
    const char *targets = NULL, *inv = NULL;
    int rc = 0;
    char *tcopy = NULL, *icopy = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            cli_ma_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--rslora")) {
            o.rslora = 1;
        } else if (!strcmp(a, "--model") || !strcmp(a, "--targets") || !strcmp(a, "--rank") ||
                   !strcmp(a, "--alpha") || !strcmp(a, "--invocation") || !strcmp(a, "--seed")) {
            if (i + 1 >= argc)
                return cli_ma_fail(2, "%s needs a value", a);
            const char *v = argv[++i];
            long long x;
            if (!strcmp(a, "--model"))
                o.model = v;
            else if (!strcmp(a, "--targets"))
                targets = v;
            else if (!strcmp(a, "--invocation"))
                inv = v;
            else if (!strcmp(a, "--rank")) {
                if (cli_parse_int(v, 1, 4096, &x))
                    return cli_ma_fail(2, "--rank must be an integer in 1..4096, got '%s'", v);
                o.rank = (int)x;
            } else if (!strcmp(a, "--seed")) {
                if (cli_parse_int(v, 0, INT64_MAX, &x))
                    return cli_ma_fail(2, "--seed must be a non-negative integer, got '%s'", v);
                o.seed = (uint64_t)x;
            } else {
                char *end;
                o.alpha = strtod(v, &end);
                if (!*v || *end || !isfinite(o.alpha) || o.alpha == 0)
                    return cli_ma_fail(2, "--alpha must be a non-zero number, got '%s'", v);
            }
        } else if (a[0] == '-' && a[1]) {
            return cli_ma_fail(2, "unknown option '%s'", a);
        } else if (!o.out) {
            o.out = a;
        } else {
            return cli_ma_fail(2, "more than one OUT_DIR given ('%s')", a);
        }
    }
    if (!o.model)
        return cli_ma_fail(2, "--model DIR is required");
    if (!targets)
        return cli_ma_fail(2, "--targets is required (e.g. q,k,v)");
    if (!o.out)
        return cli_ma_fail(2, "OUT_DIR is required");
    al_model_config mc;
    if (al_config_load(o.model, &mc) != AL_OK)
        return cli_ma_fail(1, "%s", al_errmsg());
    tcopy = strdup(targets);
    if (!tcopy || (rc = cli_parse_list(tcopy, &o)) != 0)
        goto done;
    if (o.n_targets == 0) {
        rc = cli_ma_fail(2, "--targets is empty");
        goto done;
    }
    if (inv) {
        icopy = strdup(inv);
        o.inv = calloc(strlen(inv) + 1, sizeof *o.inv);
        if (!icopy || !o.inv) {
            rc = cli_ma_fail(1, "out of memory");
            goto done;
        }
        char *save = NULL;
        for (char *tok = strtok_r(icopy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            long long x;
            if (cli_parse_int(tok, 0, (long long)mc.vocab_size - 1, &x)) {
                rc = cli_ma_fail(2, "invalid --invocation token '%s' (vocabulary has %d tokens)", tok,
                                 mc.vocab_size);
                goto done;
            }
            o.inv[o.n_inv++] = (int32_t)x;
        }
        if (o.n_inv == 0) {
            rc = cli_ma_fail(2, "--invocation is empty");
            goto done;
        }
    }
    if (cli_mkdirs(o.out) != 0) {
        rc = cli_ma_fail(1, "cannot create %s", o.out);
        goto done;
    }
    char path[4096];
    al_err e = ali_path_join(path, sizeof path, o.out, "adapter_config.json");
    if (e == AL_OK)
        e = cli_ma_write_config(path, &o, &mc);
    if (e == AL_OK)
        e = ali_path_join(path, sizeof path, o.out, "adapter_model.safetensors");
    if (e == AL_OK)
        e = cli_ma_write_tensors(path, &o, &mc);
    if (e != AL_OK) {
        rc = cli_ma_fail(1, "%s", al_errmsg());
    } else {
        printf("alora make-adapter: wrote %s (%s, rank %d, alpha %g, %d target modules, random weights", o.out,
               o.n_inv ? "aLoRA" : "plain LoRA", o.rank, o.alpha, o.n_targets);
        for (int i = 0; i < o.n_inv; i++)
            printf("%s%d", i ? "," : "; invocation tokens ", o.inv[i]);
        printf(")\n");
    }
done:
    free(tcopy);
    free(icopy);
    free(o.inv);
    return rc;
}
