/* cmd_train.c: `alora train`: fine-tunes an aLoRA (or a plain LoRA) on jsonl data and writes a PEFT
 * adapter directory (AdamW, clipping, warmup + cosine / linear schedule, checkpoints, resume). */
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "common/model/adapter.h"
#include "common/model/model.h"
#include "common/text/chat.h"
#include "common/text/tokenizer.h"
#include "common/util.h"
#include "kernels/kernels.h"
#include "tools/cli_util.h"
#include "tools/cmds.h"
#include "train/train.h"

#define TRAIN_VALUE_OPTS                                                                                      \
    "--model --data --out --invocation --invocation-string --targets --rank --alpha --epochs --lr --batch " \
    "--grad-accum --warmup --weight-decay --seed --eval --schedule --max-grad-norm --save-every --resume "    \
    "--threads --chat-format --prefix-store-mb"

static void cmd_train_usage(FILE *f)
{
    fprintf(f,
            "usage: alora train --model DIR --data FILE.jsonl --out DIR\n"
            "                   [--invocation 5,6,7 | --invocation-string S | --plain-lora]\n"
            "                   [--targets q,k,v,o,gate,up,down] [--rank 8] [--alpha 16] [--rslora]\n"
            "                   [--epochs 1] [--lr 1e-4] [--batch 1] [--grad-accum 1] [--warmup 0]\n"
            "                   [--weight-decay 0] [--max-grad-norm 1] [--schedule cosine|linear] [--seed 0]\n"
            "                   [--eval FILE.jsonl] [--save-every N] [--resume CHECKPOINT_DIR] [--threads N]\n"
            "                   [--chat-format auto|granite|llama3|chatml|raw] [--prefix-store-mb N] [--json]\n"
            "Data lines: {\"tokens\": [...], \"target\": [...]} (the loss is over target, appended after\n"
            "tokens, which hold the invocation) or {\"messages\": [...], \"completion\": \"...\"} (needs\n"
            "DIR/tokenizer.json; the conversation is rendered with the chat template and tokenized, then\n"
            "the invocation is appended (as the router builds an intrinsic's prompt) or, without one,\n"
            "the generation prompt; the completion is followed by EOS; \"target\": [ids] instead of\n"
            "\"completion\" gives the answer as token ids). --plain-lora with --invocation(-string)\n"
            "trains a plain LoRA on the same prompts (the invocation is then ordinary text).\n"
            "Writes OUT/adapter_config.json + adapter_model.safetensors (PEFT), checkpoints in\n"
            "OUT/checkpoint-STEP/, one progress line per step on stderr and a JSON summary on stdout.\n"
            "--epochs 0 only evaluates the initial adapter (B = 0: the base model) on --eval.\n"
            "--prefix-store-mb N: keep the prefix K/V (base weights: constants) of up to N MiB of\n"
            "examples from the first epoch, so later epochs skip their prefix forward (default: a\n"
            "quarter of the memory (physical, or the container's cgroup limit) when --epochs > 1\n"
            "for an aLoRA, else 0 = off).\n");
}

typedef struct tr_ex {
    int32_t *ids;
    int32_t n, n_prompt;
} tr_ex;

typedef struct tr_set {
    tr_ex *ex;
    int n, cap;
    int64_t tokens;
} tr_set;

typedef struct tr_args {
    const char *model, *data, *out, *inv_csv, *inv_str, *eval, *resume, *chat_format;
    int plain, rslora, json;
    int targets[AL_T_COUNT];
    long rank, epochs, batch, accum, warmup, seed, save_every, threads;
    long store_mb; /* --prefix-store-mb; -1: the default */
    double alpha, lr, wd, max_norm;
    int cosine;
} tr_args;

static void tr_set_free(tr_set *s)
{
    for (int i = 0; i < s->n; i++)
        free(s->ex[i].ids);
    free(s->ex);
    memset(s, 0, sizeof *s);
}

static al_err tr_push(tr_set *s, int32_t *ids, int32_t n, int32_t n_prompt)
{
    if (s->n == s->cap) {
        int cap = s->cap ? s->cap * 2 : 64;
        tr_ex *nx = realloc(s->ex, sizeof *nx * (size_t)cap);
        if (!nx)
            return ali_errf(AL_ENOMEM, "out of memory");
        s->ex = nx;
        s->cap = cap;
    }
    s->ex[s->n++] = (tr_ex){.ids = ids, .n = n, .n_prompt = n_prompt};
    s->tokens += n;
    return AL_OK;
}

static al_err tr_ints(json_t *a, const char *what, const char *file, int line, int32_t **out, int32_t *n)
{
    if (!json_is_array(a) || json_array_size(a) == 0)
        return ali_errf(AL_EFORMAT, "%s:%d: \"%s\" must be a non-empty array of token ids", file, line, what);
    *n = (int32_t)json_array_size(a);
    *out = malloc(sizeof(int32_t) * (size_t)*n);
    if (!*out)
        return ali_errf(AL_ENOMEM, "out of memory");
    for (int32_t i = 0; i < *n; i++) {
        json_t *v = json_array_get(a, (size_t)i);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX) {
            free(*out);
            return ali_errf(AL_EFORMAT, "%s:%d: \"%s\"[%d] is not a token id", file, line, what, i);
        }
        (*out)[i] = (int32_t)json_integer_value(v);
    }
    return AL_OK;
}

typedef struct tr_text {
    const al_tokenizer *tok;
    al_chat_format fmt;
    const int32_t *inv; /* appended after the rendered conversation (aLoRA) */
    int32_t n_inv;
    int32_t eos; /* -1: none */
} tr_text;

/* {"messages", "completion"} -> prompt ids (+ invocation) and completion ids (+ EOS) */
static al_err tr_messages(const tr_text *tx, json_t *j, const char *file, int line, int32_t **ids, int32_t *n,
                          int32_t *n_prompt)
{
    if (!tx->tok)
        return ali_errf(AL_EINVAL, "%s:%d: \"messages\" data needs the model's tokenizer.json", file, line);
    json_t *msgs = json_object_get(j, "messages"), *comp = json_object_get(j, "completion");
    json_t *tgt = json_object_get(j, "target");
    if (!json_is_string(comp) && !tgt)
        return ali_errf(AL_EFORMAT, "%s:%d: \"completion\" must be a string (or give \"target\" ids)", file, line);
    char *mj = json_dumps(msgs, JSON_COMPACT);
    al_chat *chat = NULL;
    char *text = NULL;
    int32_t *p = NULL, *c = NULL, np = 0, nc = 0;
    al_err e = mj ? al_chat_parse_json(mj, strlen(mj), &chat) : ali_errf(AL_ENOMEM, "out of memory");
    if (e == AL_OK)
        e = al_chat_render(tx->fmt, chat->msgs, chat->n_msgs, chat->docs, chat->n_docs, tx->inv ? 0 : 1, &text);
    if (e == AL_OK)
        e = al_tokenizer_encode(tx->tok, text, strlen(text), 0, &p, &np);
    int eos = 0;
    if (e == AL_OK && tgt) {
        e = tr_ints(tgt, "target", file, line, &c, &nc); /* the answer as token ids, as given */
        if (e != AL_OK) { /* already names the line */
            free(mj);
            free(text);
            free(p);
            al_chat_free(chat);
            return e;
        }
    } else if (e == AL_OK) {
        e = al_tokenizer_encode(tx->tok, json_string_value(comp), json_string_length(comp), 0, &c, &nc);
        eos = tx->eos >= 0;
    }
    if (e == AL_OK) {
        int32_t total = np + tx->n_inv + nc + eos;
        *ids = malloc(sizeof(int32_t) * (size_t)total);
        if (!*ids)
            e = ali_errf(AL_ENOMEM, "out of memory");
        else {
            memcpy(*ids, p, sizeof(int32_t) * (size_t)np);
            if (tx->n_inv)
                memcpy(*ids + np, tx->inv, sizeof(int32_t) * (size_t)tx->n_inv);
            memcpy(*ids + np + tx->n_inv, c, sizeof(int32_t) * (size_t)nc);
            if (eos)
                (*ids)[total - 1] = tx->eos;
            *n = total;
            *n_prompt = np + tx->n_inv;
        }
    } else {
        e = ali_errf(e, "%s:%d: %s", file, line, al_errmsg());
    }
    free(mj);
    free(text);
    free(p);
    free(c);
    al_chat_free(chat);
    return e;
}

static al_err tr_load(const char *file, const tr_text *tx, tr_set *s)
{
    FILE *f = fopen(file, "r");
    if (!f)
        return ali_errf(AL_ENOTFOUND, "%s: cannot open", file);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int ln = 0;
    al_err e = AL_OK;
    while (e == AL_OK && (len = getline(&line, &cap, f)) >= 0) {
        ln++;
        size_t k = 0;
        while (k < (size_t)len && (line[k] == ' ' || line[k] == '\t' || line[k] == '\n' || line[k] == '\r'))
            k++;
        if (k == (size_t)len)
            continue;
        json_error_t je;
        json_t *j = json_loads(line, 0, &je);
        if (!j || !json_is_object(j)) {
            e = ali_errf(AL_EFORMAT, "%s:%d: not a JSON object%s%s", file, ln, j ? "" : ": ", j ? "" : je.text);
            json_decref(j);
            break;
        }
        int32_t *ids = NULL, n = 0, np = 0;
        if (json_object_get(j, "tokens")) {
            int32_t *tg = NULL, nt = 0;
            e = tr_ints(json_object_get(j, "tokens"), "tokens", file, ln, &ids, &np);
            if (e == AL_OK)
                e = tr_ints(json_object_get(j, "target"), "target", file, ln, &tg, &nt);
            if (e == AL_OK) {
                int32_t *all = realloc(ids, sizeof(int32_t) * (size_t)(np + nt));
                if (!all)
                    e = ali_errf(AL_ENOMEM, "out of memory");
                else {
                    ids = all;
                    memcpy(ids + np, tg, sizeof(int32_t) * (size_t)nt);
                    n = np + nt;
                }
            }
            free(tg);
        } else if (json_object_get(j, "messages")) {
            e = tr_messages(tx, j, file, ln, &ids, &n, &np);
        } else {
            e = ali_errf(AL_EFORMAT, "%s:%d: expected \"tokens\" + \"target\" or \"messages\" + \"completion\"", file,
                         ln);
        }
        json_decref(j);
        if (e == AL_OK)
            e = tr_push(s, ids, n, np);
        if (e != AL_OK)
            free(ids);
    }
    free(line);
    fclose(f);
    if (e == AL_OK && s->n == 0)
        e = ali_errf(AL_EFORMAT, "%s: no examples", file);
    return e;
}

static int tr_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int tr_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "alora train: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    return 1;
}

static int tr_parse(int argc, char **argv, tr_args *a)
{
    *a = (tr_args){.rank = 8, .alpha = 16, .epochs = 1, .lr = 1e-4, .batch = 1, .accum = 1, .max_norm = 1.0,
                   .cosine = 1, .seed = 0, .threads = 0, .store_mb = -1};
    int any_target = 0;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
            cmd_train_usage(stdout);
            return 0;
        }
        if (!strcmp(o, "--plain-lora")) {
            a->plain = 1;
            continue;
        }
        if (!strcmp(o, "--rslora")) {
            a->rslora = 1;
            continue;
        }
        if (!strcmp(o, "--json")) {
            a->json = 1;
            continue;
        }
        const char *v = cli_value("train", TRAIN_VALUE_OPTS, argc, argv, &i);
        if (!v)
            return 2;
        al_err e = AL_OK;
        if (!strcmp(o, "--model"))
            a->model = v;
        else if (!strcmp(o, "--data"))
            a->data = v;
        else if (!strcmp(o, "--out"))
            a->out = v;
        else if (!strcmp(o, "--invocation"))
            a->inv_csv = v;
        else if (!strcmp(o, "--invocation-string"))
            a->inv_str = v;
        else if (!strcmp(o, "--eval"))
            a->eval = v;
        else if (!strcmp(o, "--resume"))
            a->resume = v;
        else if (!strcmp(o, "--chat-format"))
            a->chat_format = v;
        else if (!strcmp(o, "--targets")) {
            char *dup = strdup(v), *save = NULL;
            memset(a->targets, 0, sizeof a->targets);
            for (char *t = strtok_r(dup, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                int k = al_target_parse(t);
                if (k < 0) {
                    fprintf(stderr, "alora train: --targets: unknown module '%s' (q,k,v,o,gate,up,down)\n", t);
                    free(dup);
                    return 2;
                }
                a->targets[k] = 1;
            }
            free(dup);
            any_target = 1;
        } else if (!strcmp(o, "--rank"))
            e = cli_parse_long(o, v, 1, 4096, &a->rank);
        else if (!strcmp(o, "--alpha"))
            e = cli_parse_float(o, v, 1e-6, 1e6, &a->alpha);
        else if (!strcmp(o, "--epochs"))
            e = cli_parse_long(o, v, 0, 1000000, &a->epochs);
        else if (!strcmp(o, "--lr"))
            e = cli_parse_float(o, v, 0, 10, &a->lr);
        else if (!strcmp(o, "--batch"))
            e = cli_parse_long(o, v, 1, 1 << 20, &a->batch);
        else if (!strcmp(o, "--grad-accum"))
            e = cli_parse_long(o, v, 1, 1 << 20, &a->accum);
        else if (!strcmp(o, "--warmup"))
            e = cli_parse_long(o, v, 0, 1 << 30, &a->warmup);
        else if (!strcmp(o, "--weight-decay"))
            e = cli_parse_float(o, v, 0, 10, &a->wd);
        else if (!strcmp(o, "--max-grad-norm"))
            e = cli_parse_float(o, v, 0, 1e9, &a->max_norm);
        else if (!strcmp(o, "--seed"))
            e = cli_parse_long(o, v, 0, INT64_MAX >> 1, &a->seed);
        else if (!strcmp(o, "--save-every"))
            e = cli_parse_long(o, v, 0, 1 << 30, &a->save_every);
        else if (!strcmp(o, "--threads"))
            e = cli_parse_long(o, v, 0, 1024, &a->threads);
        else if (!strcmp(o, "--prefix-store-mb"))
            e = cli_parse_long(o, v, 0, 1L << 40, &a->store_mb);
        else if (!strcmp(o, "--schedule")) {
            if (!strcmp(v, "cosine"))
                a->cosine = 1;
            else if (!strcmp(v, "linear"))
                a->cosine = 0;
            else
                e = ali_errf(AL_EINVAL, "--schedule: '%s' is not cosine or linear", v);
        }
        if (e != AL_OK) {
            fprintf(stderr, "alora train: %s\n", al_errmsg());
            return 2;
        }
    }
    if (!any_target)
        for (int k = 0; k < AL_T_COUNT; k++)
            a->targets[k] = k <= AL_T_O; /* q, k, v, o */
    if (!a->model || !a->out || (!a->data && a->epochs > 0)) {
        fprintf(stderr, "alora train: --model, --data and --out are required\n");
        cmd_train_usage(stderr);
        return 2;
    }
    if (!!a->inv_csv + !!a->inv_str > 1 || (!a->plain && !a->inv_csv && !a->inv_str)) {
        fprintf(stderr, "alora train: give exactly one of --invocation, --invocation-string or --plain-lora\n");
        return 2;
    }
    return -1;
}

/* Checkpoint: the adapter, the optimizer state and the step, in OUT/checkpoint-STEP/. */
static al_err tr_checkpoint(const al_tlora *t, const al_model_config *c, const char *out, int64_t step, long epoch,
                            char *dir, size_t cap)
{
    char name[64], path[4200];
    snprintf(name, sizeof name, "checkpoint-%lld", (long long)step);
    AL_TRY(ali_path_join(dir, cap, out, name));
    AL_TRY(al_tlora_save(t, c, dir));
    AL_TRY(ali_path_join(path, sizeof path, dir, "optimizer.safetensors"));
    AL_TRY(al_tlora_save_state(t, path));
    AL_TRY(ali_path_join(path, sizeof path, dir, "trainer_state.json"));
    char js[128];
    int n = snprintf(js, sizeof js, "{\"step\": %lld, \"epoch\": %ld}\n", (long long)step, epoch);
    return ali_write_file(path, js, (size_t)n);
}

static void tr_shuffle(int *order, int n, uint64_t seed, long epoch)
{
    al_rng r;
    al_rng_seed(&r, seed * 1000003u + (uint64_t)epoch + 1);
    for (int i = 0; i < n; i++)
        order[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(al_rng_next(&r) % (uint64_t)(i + 1)), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}

typedef struct tr_eval {
    double loss;    /* mean over target tokens */
    double tok_acc; /* target tokens that are the argmax */
    double ex_acc;  /* examples whose every target token is the argmax */
    double choice_acc; /* first target token = the argmax among the set's first target tokens (< 0: none) */
    int n_choices;
    int n;
} tr_eval;

static al_err tr_evaluate(al_trainer *tr, al_tlora *t, const tr_set *s, tr_eval *ev)
{
    double nll = 0;
    int64_t toks = 0, correct = 0, exact = 0, chosen = 0;
    /* a closed set of answers when the examples' first target tokens take at most 16 values */
    int32_t ch[16];
    int nch = 0;
    for (int i = 0; i < s->n && nch <= 16; i++) {
        int32_t f = s->ex[i].ids[s->ex[i].n_prompt], k = 0;
        while (k < nch && ch[k] != f)
            k++;
        if (k == nch && nch < 16)
            ch[nch] = f;
        nch += k == nch;
    }
    if (nch < 2 || nch > 16)
        nch = 0;
    AL_TRY(al_trainer_set_choices(tr, ch, nch));
    for (int i = 0; i < s->n; i++) {
        al_train_result r;
        AL_TRY(al_trainer_example(tr, t, s->ex[i].ids, s->ex[i].n, s->ex[i].n_prompt, 1.0f, 0, &r));
        nll += r.nll;
        toks += r.n_targets;
        correct += r.n_correct;
        exact += r.n_correct == r.n_targets;
        chosen += r.choice == s->ex[i].ids[s->ex[i].n_prompt];
    }
    *ev = (tr_eval){.loss = nll / (double)toks, .tok_acc = (double)correct / (double)toks,
                    .ex_acc = (double)exact / s->n, .choice_acc = nch ? (double)chosen / s->n : -1,
                    .n_choices = nch, .n = s->n};
    return al_trainer_set_choices(tr, NULL, 0);
}

/* The memory this process may use: physical memory, or less under a cgroup limit (a container's:
 * cgroup v2 memory.max, v1 memory.limit_in_bytes). 0 when unknown. */
static double tr_memory_bytes(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    double mem = pages > 0 && psz > 0 ? (double)pages * (double)psz : 0;
    static const char *const lim[] = {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"};
    for (size_t i = 0; i < sizeof lim / sizeof lim[0]; i++) {
        FILE *f = fopen(lim[i], "r");
        double v;
        if (!f)
            continue;
        if (fscanf(f, "%lf", &v) == 1 && v > 0 && (mem <= 0 || v < mem)) /* "max" does not parse */
            mem = v;
        fclose(f);
    }
    return mem;
}

static long tr_peak_rss_bytes(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss * 1024L;
}

int cmd_train(int argc, char **argv)
{
    tr_args a;
    int rc = tr_parse(argc, argv, &a);
    if (rc >= 0)
        return rc;
    if (a.threads > 0)
        al_cpu_set_threads((int)a.threads);
    al_model *m = NULL;
    al_tokenizer *tok = NULL;
    al_tlora *t = NULL;
    al_trainer *tr = NULL;
    int32_t *inv = NULL, n_inv = 0;
    tr_set data = {0}, eval = {0};
    int *order = NULL;
    al_train_ex *bx = NULL;        /* [batch] one micro-batch */
    al_train_result *bres = NULL; /* [batch] */
    rc = 1;
    if (al_model_load(a.model, &m) != AL_OK) {
        tr_fail("%s", al_errmsg());
        goto out;
    }
    char path[4096];
    if (ali_path_join(path, sizeof path, a.model, "tokenizer.json") == AL_OK && access(path, R_OK) == 0 &&
        al_tokenizer_load(a.model, &tok) != AL_OK) {
        tr_fail("%s: %s", path, al_errmsg());
        goto out;
    }
    if (a.inv_csv && cli_parse_int_list(a.inv_csv, &inv, &n_inv) != AL_OK) {
        tr_fail("--invocation: %s", al_errmsg());
        goto out;
    }
    if (a.inv_str) {
        if (!tok) {
            tr_fail("--invocation-string needs %s/tokenizer.json; use --invocation", a.model);
            goto out;
        }
        if (al_tokenizer_encode(tok, a.inv_str, strlen(a.inv_str), 0, &inv, &n_inv) != AL_OK || n_inv == 0) {
            tr_fail("--invocation-string: cannot tokenize '%s'", a.inv_str);
            goto out;
        }
    }
    tr_text tx = {.tok = tok, .inv = inv, .n_inv = n_inv,
                  .eos = m->cfg.n_eos > 0 ? m->cfg.eos_token_ids[0] : -1};
    if (tok) {
        tx.fmt = al_chat_detect(al_tokenizer_chat_template(tok));
        if (a.chat_format && strcmp(a.chat_format, "auto") && al_chat_format_parse(a.chat_format, &tx.fmt) != AL_OK) {
            tr_fail("--chat-format: %s", al_errmsg());
            goto out;
        }
    }
    if (a.data && tr_load(a.data, &tx, &data) != AL_OK) {
        tr_fail("%s", al_errmsg());
        goto out;
    }
    if (a.eval && tr_load(a.eval, &tx, &eval) != AL_OK) {
        tr_fail("%s", al_errmsg());
        goto out;
    }
    if (al_trainer_create(m, al_ops_cpu(), &tr) != AL_OK) {
        tr_fail("%s", al_errmsg());
        goto out;
    }
    if (a.resume) {
        al_adapter *ad;
        if (al_adapter_load(a.resume, &m->cfg, &ad) != AL_OK) {
            tr_fail("--resume: %s", al_errmsg());
            goto out;
        }
        al_err e = al_tlora_from_adapter(&m->cfg, ad, &t);
        al_adapter_free(ad);
        if (e == AL_OK && ali_path_join(path, sizeof path, a.resume, "optimizer.safetensors") == AL_OK)
            e = al_tlora_load_state(t, path);
        if (e != AL_OK) {
            tr_fail("--resume %s: %s", a.resume, al_errmsg());
            goto out;
        }
        if ((t->inv == NULL) != (a.plain || !inv) ||
            (t->inv && (t->n_inv != n_inv || memcmp(t->inv, inv, sizeof(int32_t) * (size_t)n_inv)))) {
            tr_fail("--resume %s: the checkpoint's invocation differs from this run's", a.resume);
            goto out;
        }
        t->rslora = a.rslora;
        t->alpha = (float)a.alpha; /* as given; the scale itself comes from the checkpoint */
    } else {
        al_tlora_opts o = {.rank = (int32_t)a.rank, .alpha = (float)a.alpha, .rslora = a.rslora,
                           .inv = a.plain ? NULL : inv, .n_inv = a.plain ? 0 : n_inv};
        memcpy(o.targets, a.targets, sizeof o.targets);
        if (al_tlora_init(&m->cfg, &o, (uint64_t)a.seed, &t) != AL_OK) {
            tr_fail("%s", al_errmsg());
            goto out;
        }
    }
    /* every example must be trainable before the first step */
    for (int i = 0; i < data.n; i++) {
        al_train_result r;
        int32_t s = t->inv ? al_alora_find_start(data.ex[i].ids, data.ex[i].n, t->inv, t->n_inv) : 0;
        int badtok = data.ex[i].n > m->cfg.max_position_embeddings;
        for (int32_t k = 0; k < data.ex[i].n; k++)
            badtok |= data.ex[i].ids[k] >= m->cfg.vocab_size;
        if (badtok || s < 0 || s > data.ex[i].n_prompt - 1 || data.ex[i].n_prompt >= data.ex[i].n) {
            if (al_trainer_example(tr, t, data.ex[i].ids, data.ex[i].n, data.ex[i].n_prompt, 0, 0, &r) != AL_OK) {
                tr_fail("%s: example %d: %s", a.data, i + 1, al_errmsg());
                goto out;
            }
        }
    }
    /* the prefix store: later epochs take the first epoch's prefix K/V */
    if (t->inv) {
        long mb = a.store_mb;
        if (mb < 0) {
            double mem = tr_memory_bytes();
            mb = a.epochs > 1 && mem > 0 ? (long)(mem / 4 / 1048576) : 0;
        }
        al_trainer_set_prefix_store(tr, (size_t)mb << 20);
        if (mb > 0 && data.n > 0) {
            double need = 0;
            for (int i = 0; i < data.n; i++) {
                int32_t s = al_alora_find_start(data.ex[i].ids, data.ex[i].n, t->inv, t->n_inv);
                need += (double)al_trainer_prefix_bytes(tr, s);
            }
            fprintf(stderr, "prefix store: up to %ld MiB; the %d examples' prefixes need %.0f MiB at most%s\n", mb,
                    data.n, need / 1048576, need > (double)mb * 1048576 ? " (the first ones that fit are kept)" : "");
        }
    }
    int64_t per_step = a.batch * a.accum;
    int64_t steps_per_epoch = data.n ? (data.n + per_step - 1) / per_step : 0;
    int64_t total = steps_per_epoch * a.epochs;
    order = malloc(sizeof(int) * (size_t)(data.n ? data.n : 1));
    size_t nbx = (size_t)AL_MIN(a.batch, (long)(data.n ? data.n : 1));
    bx = malloc(sizeof(al_train_ex) * nbx);
    bres = malloc(sizeof(al_train_result) * nbx);
    if (!order || !bx || !bres) {
        tr_fail("out of memory");
        goto out;
    }
    double t0 = al_now(), last_loss = NAN, epoch_loss = NAN;
    int64_t done_tokens = 0, done_ex = 0, step = t->step, start_step = t->step;
    char ckdir[4096] = "";
    if (cli_mkdirs(a.out) != 0) {
        tr_fail("%s: cannot create directory", a.out);
        goto out;
    }
    for (long ep = step / (steps_per_epoch ? steps_per_epoch : 1); step < total; ep++) {
        tr_shuffle(order, data.n, (uint64_t)a.seed, ep);
        double ep_nll = 0;
        int64_t ep_tok = 0;
        for (int64_t k = step - ep * steps_per_epoch; k < steps_per_epoch && step < total; k++) {
            int i0 = (int)(k * per_step), i1 = (int)AL_MIN((int64_t)data.n, (k + 1) * per_step);
            int n_tgt = 0;
            for (int i = i0; i < i1; i++)
                n_tgt += data.ex[order[i]].n - data.ex[order[i]].n_prompt;
            al_tlora_zero_grad(t);
            double nll = 0;
            /* micro-batches of --batch examples: the trainer runs those sharing a conversation
             * together (the frozen weights read once for all of them) */
            for (int b0 = i0; b0 < i1; b0 += (int)a.batch) {
                int nb = (int)AL_MIN((int64_t)(i1 - b0), a.batch);
                for (int i = 0; i < nb; i++) {
                    const tr_ex *e = &data.ex[order[b0 + i]];
                    bx[i] = (al_train_ex){.ids = e->ids, .n = e->n, .n_prompt = e->n_prompt};
                }
                if (al_trainer_batch(tr, t, bx, nb, 1.0f / (float)n_tgt, 1, bres) != AL_OK) {
                    tr_fail("%s: %s", a.data, al_errmsg());
                    goto out;
                }
                for (int i = 0; i < nb; i++) {
                    nll += bres[i].nll;
                    done_tokens += bx[i].n;
                    done_ex++;
                }
            }
            double gn = al_tlora_grad_norm(t);
            if (a.max_norm > 0 && gn > a.max_norm)
                al_tlora_scale_grad(t, (float)(a.max_norm / (gn + 1e-6)));
            double lr = a.lr * al_train_lr_factor(step, a.warmup, total, a.cosine);
            al_tlora_adamw(t, (float)lr, 0.9f, 0.999f, 1e-8f, (float)a.wd);
            step = t->step;
            last_loss = nll / n_tgt;
            ep_nll += nll;
            ep_tok += n_tgt;
            double el = al_now() - t0;
            double eta = (step - start_step) > 0 ? el / (double)(step - start_step) * (double)(total - step) : 0;
            fprintf(stderr, "step %lld/%lld epoch %ld loss %.4f lr %.3g grad-norm %.3g tok/s %.0f ex/s %.2f ETA %.0fs\n",
                    (long long)step, (long long)total, ep + 1, last_loss, lr, gn, done_tokens / el, done_ex / el, eta);
            if (a.save_every > 0 && step % a.save_every == 0 && step < total) {
                if (tr_checkpoint(t, &m->cfg, a.out, step, ep, ckdir, sizeof ckdir) != AL_OK) {
                    tr_fail("checkpoint: %s", al_errmsg());
                    goto out;
                }
                fprintf(stderr, "checkpoint %s\n", ckdir);
            }
        }
        if (ep_tok > 0)
            epoch_loss = ep_nll / ep_tok;
    }
    double secs = al_now() - t0;
    if (al_tlora_save(t, &m->cfg, a.out) != AL_OK) {
        tr_fail("%s: %s", a.out, al_errmsg());
        goto out;
    }
    tr_eval ev = {0};
    if (eval.n > 0 && tr_evaluate(tr, t, &eval, &ev) != AL_OK) {
        tr_fail("%s: %s", a.eval, al_errmsg());
        goto out;
    }
    json_t *j = json_object();
    json_object_set_new(j, "out", json_string(a.out));
    json_object_set_new(j, "mode", json_string(t->inv ? "alora" : "lora"));
    json_object_set_new(j, "examples", json_integer(data.n));
    json_object_set_new(j, "steps", json_integer(step));
    json_object_set_new(j, "epochs", json_integer(a.epochs));
    json_object_set_new(j, "parameters", json_integer((json_int_t)t->n));
    json_object_set_new(j, "final_loss", isnan(last_loss) ? json_null() : json_real(last_loss));
    json_object_set_new(j, "last_epoch_loss", isnan(epoch_loss) ? json_null() : json_real(epoch_loss));
    json_object_set_new(j, "seconds", json_real(secs));
    json_object_set_new(j, "tokens_per_s", json_real(secs > 0 ? done_tokens / secs : 0));
    json_object_set_new(j, "examples_per_s", json_real(secs > 0 ? done_ex / secs : 0));
    json_object_set_new(j, "prefix_cached_positions", json_integer((json_int_t)al_trainer_cached_positions(tr)));
    al_train_store_stats ps;
    al_trainer_prefix_store_stats(tr, &ps);
    if (ps.limit > 0) {
        json_t *o = json_object();
        json_object_set_new(o, "limit_bytes", json_integer((json_int_t)ps.limit));
        json_object_set_new(o, "bytes", json_integer((json_int_t)ps.bytes));
        json_object_set_new(o, "entries", json_integer(ps.entries));
        json_object_set_new(o, "hit_positions", json_integer((json_int_t)ps.hit_positions));
        json_object_set_new(o, "refused", json_integer((json_int_t)ps.refused));
        json_object_set_new(j, "prefix_store", o);
    }
    json_object_set_new(j, "peak_activation_bytes", json_integer((json_int_t)al_trainer_peak_bytes(tr)));
    json_object_set_new(j, "peak_rss_bytes", json_integer(tr_peak_rss_bytes()));
    json_object_set_new(j, "model_bytes", json_integer((json_int_t)m->bytes));
    if (eval.n > 0) {
        json_t *e = json_object();
        json_object_set_new(e, "examples", json_integer(ev.n));
        json_object_set_new(e, "loss", json_real(ev.loss));
        json_object_set_new(e, "token_accuracy", json_real(ev.tok_acc));
        json_object_set_new(e, "accuracy", json_real(ev.ex_acc));
        if (ev.n_choices) { /* the closed-set answer, as the cluster's constrained decoding picks it */
            json_object_set_new(e, "choices", json_integer(ev.n_choices));
            json_object_set_new(e, "choice_accuracy", json_real(ev.choice_acc));
        }
        json_object_set_new(j, "eval", e);
    }
    char *s = json_dumps(j, a.json ? JSON_COMPACT : JSON_INDENT(2));
    printf("%s\n", s);
    free(s);
    json_decref(j);
    rc = 0;
out:
    free(order);
    free(bx);
    free(bres);
    tr_set_free(&data);
    tr_set_free(&eval);
    free(inv);
    al_trainer_free(tr);
    al_tlora_free(t);
    al_tokenizer_free(tok);
    al_model_free(m);
    return rc;
}
