/* cmd_generate.c: `alora generate`: the single-process engine on one prompt. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/model/adapter.h"
#include "common/model/model.h"
#include "common/text/adapter_text.h"
#include "common/text/chat.h"
#include "common/text/tokenizer.h"
#include "common/util.h"
#include "engine/engine.h"
#include "tools/cli_util.h"
#include "tools/cmds.h"

/* the options that take a value */
#define GENERATE_VALUE_OPTS "--model --adapter --tokens --prompt --chat --chat-format --max-tokens --temperature --top-k --top-p --seed --top-logprobs --threads --block-size --chunk --device --weights"

static void gen_usage(FILE *f)
{
    fprintf(f,
            "usage: alora generate --model DIR [--adapter DIR] (--tokens 1,2,3 | --prompt TEXT | --chat FILE.json)\n"
            "                      [--max-tokens N] [--temperature T --top-k K --top-p P --seed S]\n"
            "                      [--top-logprobs K] [--ignore-eos] [--threads N] [--block-size N]\n"
            "                      [--chunk N] [--chat-format auto|granite|llama3|chatml|raw] [--json]\n"
            "                      [--device auto|cpu|cuda] [--weights auto|f32|bf16|int8]\n"
            "Runs the engine in this process. Greedy unless --temperature > 0 is given.\n"
            "--prompt and --chat need DIR/tokenizer.json; --chat takes OpenAI-style messages\n"
            "([{\"role\":..,\"content\":..}] or {\"messages\":[..],\"documents\":[..]}).\n"
            "--device picks the backend (default cpu; auto = CUDA when a GPU is usable). --weights: matrix\n"
            "weights in memory on the CPU (default auto: bf16 for a bf16 checkpoint, half the memory,\n"
            "same results; f32 otherwise; int8: quantized at load with per-row scales, a quarter of the f32\n"
            "memory, CPU only); CUDA always keeps them in bf16.\n");
}

typedef struct gen_args {
    const char *model, *adapter, *tokens, *prompt, *chat, *chat_format, *device, *weights;
    long max_tokens, top_k, top_logprobs, threads, block_size, chunk;
    bool max_tokens_set; /* --max-tokens given: past the context is an error, not a clamp */
    double temperature, top_p;
    unsigned long long seed;
    int json, ignore_eos;
} gen_args;

static int gen_parse(int argc, char **argv, gen_args *a)
{
    *a = (gen_args){.max_tokens = 32, .top_p = 1.0, .block_size = 16, .chunk = 512, .device = "cpu",
                     .weights = "auto"};
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = NULL;
        al_err err = AL_OK;
        long lv;
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
            gen_usage(stdout);
            exit(0);
        } else if (!strcmp(o, "--json")) {
            a->json = 1;
            continue;
        } else if (!strcmp(o, "--ignore-eos")) {
            a->ignore_eos = 1;
            continue;
        }
        if (strncmp(o, "--", 2) != 0) {
            fprintf(stderr, "alora generate: unexpected argument '%s'\n", o);
            return 2;
        }
        if (!(v = cli_value("generate", GENERATE_VALUE_OPTS, argc, argv, &i)))
            return 2;
        if (!strcmp(o, "--model"))
            a->model = v;
        else if (!strcmp(o, "--adapter"))
            a->adapter = v;
        else if (!strcmp(o, "--tokens"))
            a->tokens = v;
        else if (!strcmp(o, "--prompt"))
            a->prompt = v;
        else if (!strcmp(o, "--chat"))
            a->chat = v;
        else if (!strcmp(o, "--chat-format"))
            a->chat_format = v;
        else if (!strcmp(o, "--max-tokens")) {
            err = cli_parse_long(o, v, 0, 1 << 20, &a->max_tokens);
            a->max_tokens_set = true;
        } else if (!strcmp(o, "--temperature"))
            err = cli_parse_float(o, v, 0.0, 100.0, &a->temperature);
        else if (!strcmp(o, "--top-k"))
            err = cli_parse_long(o, v, 0, 1 << 24, &a->top_k);
        else if (!strcmp(o, "--top-p"))
            err = cli_parse_float(o, v, 1e-6, 1.0, &a->top_p);
        else if (!strcmp(o, "--seed")) {
            err = cli_parse_long(o, v, 0, 0x7fffffffffffffffL, &lv);
            a->seed = (unsigned long long)lv;
        } else if (!strcmp(o, "--top-logprobs"))
            err = cli_parse_long(o, v, 0, AL_MAX_TOP_LOGPROBS, &a->top_logprobs);
        else if (!strcmp(o, "--threads"))
            err = cli_parse_long(o, v, 0, 256, &a->threads);
        else if (!strcmp(o, "--block-size"))
            err = cli_parse_long(o, v, 1, 1024, &a->block_size);
        else if (!strcmp(o, "--chunk"))
            err = cli_parse_long(o, v, 1, 65536, &a->chunk);
        else if (!strcmp(o, "--device"))
            a->device = v;
        else if (!strcmp(o, "--weights"))
            a->weights = v;
        else {
            fprintf(stderr, "alora generate: unknown option '%s'\n", o);
            gen_usage(stderr);
            return 2;
        }
        if (err != AL_OK) {
            fprintf(stderr, "alora generate: %s\n", al_errmsg());
            return 2;
        }
    }
    if (!a->model) {
        fprintf(stderr, "alora generate: --model DIR is required\n");
        gen_usage(stderr);
        return 2;
    }
    if (!!a->tokens + !!a->prompt + !!a->chat != 1) {
        fprintf(stderr, "alora generate: give exactly one of --tokens, --prompt or --chat\n");
        return 2;
    }
    return 0;
}

static void gen_print_json(const al_result *r, const char *text)
{
    json_t *o = json_object();
    if (text)
        json_object_set_new(o, "text", json_string(text));
    json_t *toks = json_array(), *tops = json_array();
    for (int32_t i = 0; i < r->n_tokens; i++) {
        json_array_append_new(toks, json_integer(r->tokens[i]));
        json_t *lst = json_array();
        for (int32_t k = 0; k < r->top_logprobs; k++) {
            const al_topk_entry *t = &r->top[(size_t)i * r->top_logprobs + k];
            if (t->id < 0)
                continue;
            json_t *e = json_object();
            json_object_set_new(e, "id", json_integer(t->id));
            json_object_set_new(e, "logprob", json_real(t->logprob));
            json_array_append_new(lst, e);
        }
        json_array_append_new(tops, lst);
    }
    json_object_set_new(o, "tokens", toks);
    json_object_set_new(o, "activation_start",
                        r->activation_start >= 0 ? json_integer(r->activation_start) : json_null());
    json_object_set_new(o, "top_logprobs", tops);
    json_object_set_new(o, "finish_reason",
                        json_string(r->finish == AL_FINISH_STOP ? "stop" : r->finish == AL_FINISH_LENGTH ? "length"
                                                                                                         : "error"));
    json_t *tm = json_object();
    json_object_set_new(tm, "prefill_ms", json_real(r->prefill_ms));
    json_object_set_new(tm, "decode_ms", json_real(r->decode_ms));
    json_object_set_new(o, "timings", tm);
    char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(9));
    printf("%s\n", s);
    free(s);
    json_decref(o);
}

/* Tokenizes --prompt (with the post-processor's special tokens) or renders and tokenizes --chat. */
static int gen_encode(const gen_args *a, const al_tokenizer *tok, int32_t **toks, int32_t *n)
{
    if (a->prompt) {
        if (al_tokenizer_encode(tok, a->prompt, strlen(a->prompt), 1, toks, n) != AL_OK) {
            fprintf(stderr, "alora generate: --prompt: %s\n", al_errmsg());
            return 1;
        }
        return 0;
    }
    char *json = NULL, *rendered = NULL;
    size_t len;
    al_chat *chat = NULL;
    int rc = 1;
    al_chat_format f = al_chat_detect(al_tokenizer_chat_template(tok));
    if (a->chat_format && strcmp(a->chat_format, "auto") && al_chat_format_parse(a->chat_format, &f) != AL_OK)
        fprintf(stderr, "alora generate: --chat-format: %s\n", al_errmsg());
    else if (ali_read_file(a->chat, 16u << 20, &json, &len) != AL_OK)
        fprintf(stderr, "alora generate: --chat: %s\n", al_errmsg());
    else if (al_chat_parse_json(json, len, &chat) != AL_OK)
        fprintf(stderr, "alora generate: %s: %s\n", a->chat, al_errmsg());
    else if (al_chat_render(f, chat->msgs, chat->n_msgs, chat->docs, chat->n_docs, 1, &rendered) != AL_OK)
        fprintf(stderr, "alora generate: %s: %s\n", a->chat, al_errmsg());
    else if (al_tokenizer_encode(tok, rendered, strlen(rendered), 0, toks, n) != AL_OK)
        fprintf(stderr, "alora generate: %s: %s\n", a->chat, al_errmsg());
    else
        rc = 0;
    free(json);
    free(rendered);
    al_chat_free(chat);
    return rc;
}

int cmd_generate(int argc, char **argv)
{
    gen_args a;
    int rc = gen_parse(argc, argv, &a);
    if (rc)
        return rc;
    int32_t *toks = NULL, n_toks = 0;
    al_tokenizer *tok = NULL;
    char *text = NULL;
    {
        struct stat st;
        if (stat(a.model, &st) != 0 || !S_ISDIR(st.st_mode)) {
            fprintf(stderr, "alora generate: --model %s: %s\n", a.model,
                    stat(a.model, &st) != 0 ? strerror(errno) : "not a directory (a model directory holds config.json)");
            return 1;
        }
        char path[4096];
        if (ali_path_join(path, sizeof path, a.model, "tokenizer.json") == AL_OK && access(path, R_OK) == 0 &&
            al_tokenizer_load(a.model, &tok) != AL_OK) {
            fprintf(stderr, "alora generate: %s\n", al_errmsg());
            return 1;
        }
    }
    if ((a.prompt || a.chat) && !tok) {
        fprintf(stderr, "alora generate: --%s needs a tokenizer, and %s has no tokenizer.json; use --tokens\n",
                a.prompt ? "prompt" : "chat", a.model);
        return 2;
    }
    if (a.tokens) {
        if (cli_parse_int_list(a.tokens, &toks, &n_toks) != AL_OK) {
            fprintf(stderr, "alora generate: --tokens: %s\n", al_errmsg());
            al_tokenizer_free(tok);
            return 2;
        }
    } else if (gen_encode(&a, tok, &toks, &n_toks) != 0) {
        al_tokenizer_free(tok);
        return 1;
    }
    if (n_toks == 0) {
        fprintf(stderr, "alora generate: the prompt has no tokens\n");
        free(toks);
        al_tokenizer_free(tok);
        return 2;
    }
    al_model *m = NULL;
    al_adapter *ad = NULL;
    al_engine *e = NULL;
    const al_ops *ops = NULL;
    void *wbuf = NULL; /* the weights in the backend's own layout (not the canonical f32 one) */
    al_weights wv = {0};
    rc = 1;
    if (al_ops_for_model(a.device, a.weights, a.model, &ops) != AL_OK) {
        fprintf(stderr, "alora generate: --device %s --weights %s: %s\n", a.device, a.weights, al_errmsg());
        goto out;
    }
    /* canonical f32 layout: load as is; another layout: tensor by tensor into it (no f32 copy) */
    if (al_ops_canonical_weights(ops) ? al_model_load(a.model, &m) != AL_OK
                                      : (al_weights_backend_load(a.model, ops, NULL, NULL, &m, &wbuf) != AL_OK ||
                                         al_weights_backend_bind(&m->cfg, ops, wbuf, &wv) != AL_OK)) {
        fprintf(stderr, "alora generate: %s\n", al_errmsg());
        goto out;
    }
    if (a.adapter && al_adapter_load(a.adapter, &m->cfg, &ad) != AL_OK) {
        fprintf(stderr, "alora generate: %s\n", al_errmsg());
        goto out;
    }
    if (ad && !ad->invocation && ad->invocation_string) {
        if (!tok) {
            fprintf(stderr, "alora generate: adapter %s has a legacy invocation_string, which needs the model's "
                            "tokenizer.json\n", a.adapter);
            goto out;
        }
        if (al_adapter_resolve_invocation(ad, tok) != AL_OK) {
            fprintf(stderr, "alora generate: %s\n", al_errmsg());
            goto out;
        }
    }
    if (ad && ad->invocation && tok) {
        /* the invocation as text, re-tokenized alone and after other text as it appears in prompts */
        char *inv_text = NULL, *ctx = NULL;
        size_t il;
        if (al_tokenizer_decode(tok, ad->invocation, ad->n_invocation, 0, &inv_text, &il) == AL_OK &&
            (ctx = malloc(il + 8))) {
            static const char *const pre[] = {"", "x ", "x\n", "x"};
            int reach = 0;
            for (size_t i = 0; i < AL_ARRAY_LEN(pre) && !reach; i++) {
                snprintf(ctx, il + 8, "%s%s", pre[i], inv_text);
                reach = al_invocation_reachable(tok, ad->invocation, ad->n_invocation, ctx);
            }
            if (!reach)
                fprintf(stderr,
                        "alora generate: WARNING: adapter %s: its invocation tokens never appear when their own "
                        "text \"%s\" is tokenized in a prompt; the aLoRA will not activate on text prompts\n",
                        a.adapter, inv_text);
        }
        free(inv_text);
        free(ctx);
    }
    /* the context: as the HTTP API, an explicit --max-tokens past it is an error, the default is
     * clamped with a warning */
    int32_t ctx_len = m->cfg.max_position_embeddings;
    if (ctx_len > 0 && n_toks >= ctx_len) {
        fprintf(stderr, "alora generate: the prompt has %d tokens; the model's context is %d (max_position_embeddings)\n",
                n_toks, ctx_len);
        goto out;
    }
    if (ctx_len > 0 && n_toks + a.max_tokens > ctx_len) {
        if (a.max_tokens_set) {
            fprintf(stderr,
                    "alora generate: --max-tokens %ld: the prompt's %d tokens + %ld exceed the model's context of %d "
                    "tokens (max_position_embeddings); use --max-tokens %d or less\n",
                    a.max_tokens, n_toks, a.max_tokens, ctx_len, ctx_len - n_toks);
            goto out;
        }
        fprintf(stderr, "alora generate: warning: generating at most %d tokens (the model's context is %d)\n",
                ctx_len - n_toks, ctx_len);
        a.max_tokens = ctx_len - n_toks;
    }
    int64_t need = (int64_t)n_toks + a.max_tokens;
    al_engine_opts eo = {.block_size = (int32_t)a.block_size, .max_batch_tokens = (int32_t)a.chunk,
                         .max_seqs = 1, .n_blocks = (int32_t)((need + a.block_size - 1) / a.block_size + 1),
                         .ops = ops, .weights = wbuf ? &wv : NULL, .threads = a.threads > 0 ? (int32_t)a.threads : -1};
    if (al_engine_create(m, &eo, &e) != AL_OK) {
        fprintf(stderr, "alora generate: %s\n", al_errmsg());
        goto out;
    }
    int32_t slot = -1, id;
    if (ad && al_engine_add_adapter(e, ad, &slot) != AL_OK) {
        fprintf(stderr, "alora generate: %s\n", al_errmsg());
        goto out;
    }
    al_request req = {.tokens = toks, .n_tokens = n_toks, .adapter = slot, .act_start = AL_ACT_AUTO,
                      .max_tokens = (int32_t)a.max_tokens, .top_logprobs = (int32_t)a.top_logprobs,
                      .ignore_eos = a.ignore_eos,
                      .sampling = {.temperature = (float)a.temperature, .top_k = (int32_t)a.top_k,
                                   .top_p = (float)a.top_p, .seed = a.seed}};
    if (al_engine_submit(e, &req, &id) != AL_OK || al_engine_run(e) != AL_OK) {
        fprintf(stderr, "alora generate: %s\n", al_errmsg());
        goto out;
    }
    al_result r;
    al_engine_result(e, id, &r);
    if (r.finish == AL_FINISH_ERROR) {
        fprintf(stderr, "alora generate: %s: %s\n", al_strerror(r.error), al_errmsg());
        goto out;
    }
    if (tok) {
        size_t tl;
        if (al_tokenizer_decode(tok, r.tokens, r.n_tokens, 1, &text, &tl) != AL_OK) {
            fprintf(stderr, "alora generate: decode: %s\n", al_errmsg());
            goto out;
        }
    }
    if (a.json) {
        gen_print_json(&r, text);
    } else {
        if (text)
            printf("text: %s\n", text);
        printf("tokens:");
        for (int32_t i = 0; i < r.n_tokens; i++)
            printf(" %d", r.tokens[i]);
        printf("\nactivation_start: ");
        if (r.activation_start >= 0)
            printf("%d\n", r.activation_start);
        else
            printf("none\n");
        printf("prefill: %.2f ms (%d tokens), decode: %.2f ms (%d tokens)\n", r.prefill_ms, n_toks, r.decode_ms,
               r.n_tokens > 0 ? r.n_tokens - 1 : 0);
    }
    rc = 0;
out:
    al_engine_free(e);
    al_weights_unbind(&wv);
    if (wbuf)
        ops->free(wbuf);
    al_adapter_free(ad);
    al_model_free(m);
    al_tokenizer_free(tok);
    free(text);
    free(toks);
    return rc;
}
