/* cmd_tokenize.c: `alora tokenize`: prints the token ids and pieces of a text. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/text/tokenizer.h"
#include "tools/cmds.h"

static void tok_usage(FILE *f)
{
    fprintf(f, "usage: alora tokenize --model DIR|tokenizer.json [--json] [--no-special] "
               "(--stdin | TEXT)\n"
               "  prints the ids (with the special tokens the post-processor adds, unless\n"
               "  --no-special) and their pieces; --json prints {\"ids\":[...],\"pieces\":[...]}\n");
}

static char *tok_read_stdin(size_t *len)
{
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    while (b) {
        if (n + 4096 > cap) {
            char *nb = realloc(b, cap * 2);
            if (!nb) {
                free(b);
                return NULL;
            }
            b = nb;
            cap *= 2;
        }
        size_t r = fread(b + n, 1, cap - n - 1, stdin);
        n += r;
        if (r == 0)
            break;
    }
    if (b)
        b[n] = 0;
    *len = n;
    return b;
}

int cmd_tokenize(int argc, char **argv)
{
    const char *model = NULL, *text = NULL;
    int json = 0, use_stdin = 0, special = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            tok_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--model") && i + 1 < argc) {
            model = argv[++i];
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--stdin")) {
            use_stdin = 1;
        } else if (!strcmp(a, "--no-special")) {
            special = 0;
        } else if (!strcmp(a, "--")) {
            if (i + 2 != argc || text) {
                tok_usage(stderr);
                return 2;
            }
            text = argv[++i];
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "alora tokenize: unknown or incomplete option '%s'\n", a);
            tok_usage(stderr);
            return 2;
        } else if (!text) {
            text = a;
        } else {
            fprintf(stderr, "alora tokenize: one TEXT argument expected (quote it)\n");
            tok_usage(stderr);
            return 2;
        }
    }
    if (!model || (use_stdin == (text != NULL))) {
        fprintf(stderr, "alora tokenize: %s\n",
                !model ? "--model is required" : "give either --stdin or TEXT");
        tok_usage(stderr);
        return 2;
    }
    al_tokenizer *t;
    if (al_tokenizer_load(model, &t) != AL_OK) {
        fprintf(stderr, "alora tokenize: %s\n", al_errmsg());
        return 1;
    }
    char *buf = NULL;
    size_t len;
    if (use_stdin) {
        if (!(buf = tok_read_stdin(&len))) {
            fprintf(stderr, "alora tokenize: cannot read stdin\n");
            al_tokenizer_free(t);
            return 1;
        }
        text = buf;
    } else {
        len = strlen(text);
    }
    int32_t *ids, n;
    if (al_tokenizer_encode(t, text, len, special, &ids, &n) != AL_OK) {
        fprintf(stderr, "alora tokenize: %s\n", al_errmsg());
        free(buf);
        al_tokenizer_free(t);
        return 1;
    }
    int rc = 0;
    json_t *jids = json_array(), *jp = json_array();
    for (int32_t i = 0; i < n; i++) {
        const char *p = al_tokenizer_piece(t, ids[i]);
        json_array_append_new(jids, json_integer(ids[i]));
        json_array_append_new(jp, json_string(p ? p : ""));
    }
    if (json) {
        json_t *o = json_pack("{soso}", "ids", jids, "pieces", jp);
        char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
        if (s) {
            printf("%s\n", s);
            free(s);
        } else {
            rc = 1;
        }
        json_decref(o);
    } else {
        printf("ids:");
        for (int32_t i = 0; i < n; i++)
            printf(" %d", ids[i]);
        printf("\npieces:");
        for (int32_t i = 0; i < n; i++) {
            char *s = json_dumps(json_array_get(jp, (size_t)i), JSON_ENCODE_ANY);
            printf(" %s", s ? s : "\"\"");
            free(s);
        }
        printf("\n");
        json_decref(jids);
        json_decref(jp);
    }
    if (fflush(stdout) != 0)
        rc = 1;
    free(ids);
    free(buf);
    al_tokenizer_free(t);
    return rc;
}
