/* cmd_invoke.c: `alora invoke`: one intrinsic call through the cluster's router. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/ipc/rpc.h"
#include "tools/cli_util.h"
#include "tools/cmds.h"

/* the options that take a value */
#define INVOKE_VALUE_OPTS "--router --intrinsic --tokens --text --mode --max-tokens --top-logprobs --top-k --seed --timeout --temperature --top-p"

static void inv_usage(FILE *f)
{
    fprintf(f, "usage: alora invoke --router URL --intrinsic NAME (--tokens 1,2,3 | --text TEXT)\n"
               "                    [--max-tokens N] [--mode alora|lora] [--top-logprobs K]\n"
               "                    [--temperature T --top-k K --top-p P --seed S] [--ignore-eos]\n"
               "                    [--timeout MS] [--json]\n"
               "Stateless intrinsic call: the whole conversation goes in; the base's prefix cache finds\n"
               "its KV (mode alora) or the adapter re-prefills everything (mode lora, the baseline).\n");
}

static void inv_print_json(const alora_InvokeReply *r)
{
    const int32_t *toks, *ids;
    const float *tl;
    size_t n = al_pb_i32(&r->tokens, &toks);
    size_t nid = al_pb_i32(&r->logprobs.top_ids, &ids);
    size_t ntl = al_pb_f32(&r->logprobs.top_logprobs, &tl);
    uint32_t k = r->logprobs.top_n;
    json_t *o = json_object(), *ja = json_array(), *tops = json_array();
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(ja, json_integer(toks[i]));
        json_t *lst = json_array();
        for (uint32_t j = 0; j < k; j++) {
            size_t x = i * k + j;
            if (x >= nid || x >= ntl || ids[x] < 0)
                continue;
            json_t *e = json_object();
            json_object_set_new(e, "id", json_integer(ids[x]));
            json_object_set_new(e, "logprob", json_real(tl[x]));
            json_array_append_new(lst, e);
        }
        json_array_append_new(tops, lst);
    }
    json_object_set_new(o, "tokens", ja);
    json_object_set_new(o, "activation_start", r->has_activation_start ? json_integer(r->activation_start) : json_null());
    json_object_set_new(o, "top_logprobs", tops);
    json_t *tm = json_object();
    json_object_set_new(tm, "ttft_ms", json_real(r->timings.ttft_ms));
    json_object_set_new(tm, "total_ms", json_real(r->timings.total_ms));
    json_object_set_new(tm, "batch_size", json_integer(r->timings.batch_size)); /* mean calls per worker step */
    json_object_set_new(o, "timings", tm);
    json_object_set_new(o, "prefix_cached_tokens", json_integer(r->prefix_cached_tokens));
    json_object_set_new(o, "computed_tokens", json_integer(r->computed_tokens));
    json_object_set_new(o, "worker", json_string(r->worker_id));
    char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(9));
    printf("%s\n", s);
    free(s);
    json_decref(o);
}

static void inv_print_text(const alora_InvokeReply *r)
{
    const int32_t *toks;
    const uint8_t *txt;
    size_t n = al_pb_i32(&r->tokens, &toks), tl = al_pb_bytes(&r->text, &txt);
    printf("tokens:");
    for (size_t i = 0; i < n; i++)
        printf(" %d", toks[i]);
    printf("\n");
    if (tl)
        printf("text: %.*s\n", (int)tl, (const char *)txt);
    if (r->has_activation_start)
        printf("activation_start: %d\n", r->activation_start);
    else
        printf("activation_start: none\n");
    printf("worker: %s\nprefix_cached_tokens: %u, computed_tokens: %u\n", r->worker_id, r->prefix_cached_tokens,
           r->computed_tokens);
    printf("ttft: %.2f ms, total: %.2f ms (queue %.2f, prefill %.2f, decode %.2f)\n", r->timings.ttft_ms,
           r->timings.total_ms, r->timings.queue_ms, r->timings.prefill_ms, r->timings.decode_ms);
}

int cmd_invoke(int argc, char **argv)
{
    const char *url = NULL, *intr = NULL, *tokens = NULL, *text = NULL, *mode = "alora";
    long max_tokens = 0, top_lp = 0, top_k = 0, timeout = 120000, seed = 0;
    double temperature = 0, top_p = 0;
    int json = 0, ignore_eos = 0;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v;
        al_err err = AL_OK;
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
            inv_usage(stdout);
            return 0;
        } else if (!strcmp(o, "--json")) {
            json = 1;
            continue;
        } else if (!strcmp(o, "--ignore-eos")) {
            ignore_eos = 1;
            continue;
        }
        if (!(v = cli_value("invoke", INVOKE_VALUE_OPTS, argc, argv, &i)))
            return 2;
        if (!strcmp(o, "--router"))
            url = v;
        else if (!strcmp(o, "--intrinsic"))
            intr = v;
        else if (!strcmp(o, "--tokens"))
            tokens = v;
        else if (!strcmp(o, "--text"))
            text = v;
        else if (!strcmp(o, "--mode"))
            mode = v;
        else if (!strcmp(o, "--max-tokens"))
            err = cli_parse_long(o, v, 0, 4096, &max_tokens);
        else if (!strcmp(o, "--top-logprobs"))
            err = cli_parse_long(o, v, 0, 20, &top_lp);
        else if (!strcmp(o, "--top-k"))
            err = cli_parse_long(o, v, 0, 1 << 24, &top_k);
        else if (!strcmp(o, "--seed"))
            err = cli_parse_long(o, v, 0, 0x7fffffffffffffffL, &seed);
        else if (!strcmp(o, "--timeout"))
            err = cli_parse_long(o, v, 1, 86400000L, &timeout);
        else if (!strcmp(o, "--temperature"))
            err = cli_parse_float(o, v, 0, 100, &temperature);
        else if (!strcmp(o, "--top-p"))
            err = cli_parse_float(o, v, 0, 1, &top_p);
        else {
            fprintf(stderr, "alora invoke: unknown option '%s'\n", o);
            inv_usage(stderr);
            return 2;
        }
        if (err != AL_OK) {
            fprintf(stderr, "alora invoke: %s\n", al_errmsg());
            return 2;
        }
    }
    if (!url || !intr) {
        fprintf(stderr, "alora invoke: --router URL and --intrinsic NAME are required\n");
        inv_usage(stderr);
        return 2;
    }
    if (!!tokens == !!text) {
        fprintf(stderr, "alora invoke: give exactly one of --tokens or --text\n");
        return 2;
    }
    if (strcmp(mode, "alora") && strcmp(mode, "lora")) {
        fprintf(stderr, "alora invoke: --mode: '%s' is not alora or lora\n", mode);
        return 2;
    }
    if (strlen(intr) >= sizeof(((alora_InvokeRequest *)0)->intrinsic)) {
        fprintf(stderr, "alora invoke: --intrinsic: name too long\n");
        return 2;
    }
    int32_t *toks = NULL, n = 0;
    if (tokens && cli_parse_int_list(tokens, &toks, &n) != AL_OK) {
        fprintf(stderr, "alora invoke: --tokens: %s\n", al_errmsg());
        return 2;
    }
    int rc = 1;
    al_rpc_client *c = NULL;
    al_pbmem m = AL_PBMEM_INIT;
    alora_InvokeRequest q = alora_InvokeRequest_init_zero;
    alora_InvokeReply r;
    snprintf(q.intrinsic, sizeof q.intrinsic, "%s", intr);
    q.mode = strcmp(mode, "lora") ? alora_InvokeMode_MODE_ALORA : alora_InvokeMode_MODE_LORA;
    q.max_tokens = (uint32_t)max_tokens;
    q.top_logprobs = (uint32_t)top_lp;
    q.sampling.temperature = (float)temperature;
    q.sampling.top_k = (uint32_t)top_k;
    q.sampling.top_p = (float)top_p;
    q.sampling.seed = (uint64_t)seed;
    q.sampling.ignore_eos = ignore_eos;
    al_err e;
    if ((toks && (e = al_pb_ref_i32(&q.tokens, &m, toks, (size_t)n)) != AL_OK) ||
        (text && (e = al_pb_set_str(&q.text, &m, text)) != AL_OK)) {
        fprintf(stderr, "alora invoke: %s\n", al_errmsg());
        goto out;
    }
    al_rpc_client_opts co;
    al_rpc_client_opts_default(&co);
    co.connect_wait_ms = 2000;
    if ((e = cli_tls_env(url)) != AL_OK || (e = al_rpc_client_open(&c, url, &co)) != AL_OK) {
        fprintf(stderr, "alora invoke: %s: %s\n", al_strerror(e), al_errmsg());
        goto out;
    }
    al_rpc_callopts cop = {.timeout_ms = (int)timeout};
    e = al_rpc_callx(c, alora_Method_ROUTER_INVOKE, &q, &r, &m, &cop);
    if (e != AL_OK) {
        if (cop.retry_after_ms)
            fprintf(stderr, "alora invoke: %s: %s (retry after %u ms)\n", al_strerror(e), al_errmsg(),
                    cop.retry_after_ms);
        else
            fprintf(stderr, "alora invoke: %s: %s\n", al_strerror(e), al_errmsg());
        goto out;
    }
    if (json)
        inv_print_json(&r);
    else
        inv_print_text(&r);
    rc = 0;
out:
    if (c)
        al_rpc_client_close(c);
    al_pbmem_free(&m);
    free(toks);
    return rc;
}
