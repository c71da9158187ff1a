/* tokenizer_load.c: parses tokenizer.json (+ tokenizer_config.json) into an al_tokenizer. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/log.h"
#include "common/text/tokenizer_int.h"
#include "common/util.h"

#define ALI_TOK_MAX_FILE ((size_t)1 << 30)
#define ALI_TOK_MAX_ID (1 << 24)

static const char ali_gpt2_re[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

typedef struct ali_ld {
    al_tokenizer *t;
    const char *path;
    int byte_level_at; /* index in pre[] after which nothing may follow, -1 */
} ali_ld;

static al_err ali_bad(const ali_ld *ld, const char *field, const char *what)
{
    return ali_errf(AL_EFORMAT, "%s: %s: %s", ld->path, field, what);
}

static al_err ali_get_bool(const ali_ld *ld, json_t *o, const char *key, const char *field,
                           int def, int *out)
{
    *out = def;
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return AL_OK;
    }
    if (!json_is_boolean(v))
        return ali_errf(AL_EFORMAT, "%s: %s.%s: expected a boolean", ld->path, field, key);
    *out = json_is_true(v);
    return AL_OK;
}

/* Required string (or NULL-able when opt). */
static al_err ali_get_str(const ali_ld *ld, json_t *o, const char *key, const char *field, int opt,
                          const char **out, size_t *len)
{
    *out = NULL;
    if (len)
        *len = 0;
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        if (opt) {
            *out = NULL;
            if (len)
                *len = 0;
            return AL_OK;
        }
        return ali_errf(AL_EFORMAT, "%s: %s.%s: missing", ld->path, field, key);
    }
    if (!json_is_string(v))
        return ali_errf(AL_EFORMAT, "%s: %s.%s: expected a string", ld->path, field, key);
    *out = json_string_value(v);
    if (len)
        *len = json_string_length(v);
    return AL_OK;
}

static char *ali_memdup(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

/* pattern: {"String": s} or {"Regex": r}; sets *str or *re. */
static al_err ali_get_pattern(const ali_ld *ld, json_t *o, const char *field, char **str,
                              size_t *slen, pcre2_code **re)
{
    *str = NULL;
    *slen = 0;
    *re = NULL;
    json_t *p = json_object_get(o, "pattern");
    char f[160];
    snprintf(f, sizeof f, "%s.pattern", field);
    if (!json_is_object(p))
        return ali_bad(ld, f, "expected an object {\"String\": ...} or {\"Regex\": ...}");
    json_t *s = json_object_get(p, "String"), *r = json_object_get(p, "Regex");
    if (json_is_string(s)) {
        *str = ali_memdup(json_string_value(s), json_string_length(s));
        *slen = json_string_length(s);
        *re = NULL;
        return *str ? AL_OK : ali_errf(AL_ENOMEM, "tokenizer: out of memory");
    }
    if (json_is_string(r)) {
        *str = NULL;
        *slen = 0;
        return ali_regex_compile(ld->path, f, json_string_value(r), json_string_length(r), re);
    }
    return ali_bad(ld, f, "expected a String or Regex entry");
}

/* ---------------------------------------------------------------- normalizer */

static al_err ali_norm_add(ali_ld *ld, ali_norm n)
{
    al_tokenizer *t = ld->t;
    ali_norm *a = realloc(t->norms, (size_t)(t->n_norms + 1) * sizeof *a);
    if (!a)
        return ali_errf(AL_ENOMEM, "tokenizer: out of memory");
    t->norms = a;
    t->norms[t->n_norms++] = n;
    return AL_OK;
}

/* A "Sequence" component: each element of o[key] parsed by fn (nesting depth bounded by it). */
typedef al_err (*ali_part_fn)(ali_ld *ld, json_t *o, const char *field, int depth);
static al_err ali_parse_sequence(ali_ld *ld, json_t *o, const char *field, const char *key, int depth,
                                 ali_part_fn fn)
{
    json_t *arr = json_object_get(o, key);
    if (!json_is_array(arr)) {
        char what[96];
        snprintf(what, sizeof what, "Sequence.%s: expected an array", key);
        return ali_bad(ld, field, what);
    }
    for (size_t i = 0; i < json_array_size(arr); i++) {
        char f[160];
        snprintf(f, sizeof f, "%s.%s[%zu]", field, key, i);
        AL_TRY(fn(ld, json_array_get(arr, i), f, depth + 1));
    }
    return AL_OK;
}

static al_err ali_parse_norm(ali_ld *ld, json_t *o, const char *field, int depth)
{
    if (!o || json_is_null(o))
        return AL_OK;
    if (!json_is_object(o) || depth > 8)
        return ali_bad(ld, field, "expected an object");
    const char *type = NULL;
    AL_TRY(ali_get_str(ld, o, "type", field, 0, &type, NULL));
    if (!strcmp(type, "Sequence"))
        return ali_parse_sequence(ld, o, field, "normalizers", depth, ali_parse_norm);
    ali_norm n = {0};
    if (!strcmp(type, "Prepend")) {
        const char *s = NULL;
        size_t l = 0;
        AL_TRY(ali_get_str(ld, o, "prepend", field, 0, &s, &l));
        n.kind = ALI_N_PREPEND;
        n.a = ali_memdup(s, l);
        n.alen = l;
        if (!n.a)
            return ali_errf(AL_ENOMEM, "tokenizer: out of memory");
        return ali_norm_add(ld, n);
    }
    if (!strcmp(type, "Replace")) {
        const char *c = NULL;
        size_t cl = 0;
        AL_TRY(ali_get_str(ld, o, "content", field, 0, &c, &cl));
        AL_TRY(ali_get_pattern(ld, o, field, &n.a, &n.alen, &n.re));
        n.kind = n.re ? ALI_N_REPLACE_RE : ALI_N_REPLACE;
        n.b = ali_memdup(c, cl);
        n.blen = cl;
        al_err e = n.b ? ali_norm_add(ld, n) : ali_errf(AL_ENOMEM, "tokenizer: out of memory");
        if (e != AL_OK) {
            free(n.a);
            free(n.b);
            if (n.re)
                pcre2_code_free(n.re);
        }
        return e;
    }
    if (!strcmp(type, "NFC") || !strcmp(type, "NFKC") || !strcmp(type, "NFD") ||
        !strcmp(type, "NFKD")) {
        AL_WARN("%s: %s: %s normalization is not implemented; text is used as is", ld->path,
                field, type);
        return AL_OK;
    }
    return ali_errf(AL_EUNSUPPORTED, "%s: %s.type: normalizer '%s' is not supported", ld->path,
                    field, type);
}

/* ---------------------------------------------------------------- pre-tokenizer */

static al_err ali_pre_add(ali_ld *ld, ali_pretok p, const char *field)
{
    al_tokenizer *t = ld->t;
    if (ld->byte_level_at >= 0) {
        if (p.re)
            pcre2_code_free(p.re);
        free(p.str);
        return ali_errf(AL_EUNSUPPORTED, "%s: %s: a pre-tokenizer after ByteLevel is not supported",
                        ld->path, field);
    }
    ali_pretok *a = realloc(t->pre, (size_t)(t->n_pre + 1) * sizeof *a);
    if (!a) {
        if (p.re)
            pcre2_code_free(p.re);
        free(p.str);
        return ali_errf(AL_ENOMEM, "tokenizer: out of memory");
    }
    t->pre = a;
    t->pre[t->n_pre++] = p;
    return AL_OK;
}

static al_err ali_pre_regex(ali_ld *ld, const char *field, const char *re, int behavior,
                            int invert)
{
    ali_pretok p = {.kind = ALI_P_SPLIT, .behavior = behavior, .invert = invert};
    AL_TRY(ali_regex_compile(ld->path, field, re, strlen(re), &p.re));
    return ali_pre_add(ld, p, field);
}

static al_err ali_parse_pre(ali_ld *ld, json_t *o, const char *field, int depth)
{
    if (!o || json_is_null(o))
        return AL_OK;
    if (!json_is_object(o) || depth > 8)
        return ali_bad(ld, field, "expected an object");
    const char *type = NULL;
    AL_TRY(ali_get_str(ld, o, "type", field, 0, &type, NULL));
    if (!strcmp(type, "Sequence"))
        return ali_parse_sequence(ld, o, field, "pretokenizers", depth, ali_parse_pre);
    if (!strcmp(type, "Split")) {
        ali_pretok p = {.kind = ALI_P_SPLIT};
        const char *beh = NULL;
        AL_TRY(ali_get_str(ld, o, "behavior", field, 0, &beh, NULL));
        static const char *const names[] = {"Removed", "Isolated", "MergedWithPrevious",
                                            "MergedWithNext", "Contiguous"};
        p.behavior = -1;
        for (int i = 0; i < 5; i++)
            if (!strcmp(beh, names[i]))
                p.behavior = i;
        if (p.behavior < 0)
            return ali_errf(AL_EFORMAT, "%s: %s.behavior: unknown value '%s'", ld->path, field,
                            beh);
        AL_TRY(ali_get_bool(ld, o, "invert", field, 0, &p.invert));
        AL_TRY(ali_get_pattern(ld, o, field, &p.str, &p.slen, &p.re));
        return ali_pre_add(ld, p, field);
    }
    if (!strcmp(type, "ByteLevel")) {
        int aps, use_re;
        AL_TRY(ali_get_bool(ld, o, "add_prefix_space", field, 1, &aps));
        AL_TRY(ali_get_bool(ld, o, "use_regex", field, 1, &use_re));
        if (aps)
            AL_TRY(ali_pre_add(ld, (ali_pretok){.kind = ALI_P_PREFIX_SPACE}, field));
        if (use_re)
            AL_TRY(ali_pre_regex(ld, field, ali_gpt2_re, ALI_B_ISOLATED, 0));
        ld->t->byte_level = 1;
        ld->byte_level_at = ld->t->n_pre;
        return AL_OK;
    }
    if (!strcmp(type, "Digits")) {
        int ind;
        AL_TRY(ali_get_bool(ld, o, "individual_digits", field, 0, &ind));
        return ali_pre_regex(ld, field, ind ? "\\p{N}" : "\\p{N}+", ALI_B_ISOLATED, 0);
    }
    if (!strcmp(type, "Whitespace"))
        return ali_pre_regex(ld, field, "\\w+|[^\\w\\s]+", ALI_B_REMOVED, 1);
    if (!strcmp(type, "WhitespaceSplit"))
        return ali_pre_regex(ld, field, "\\s", ALI_B_REMOVED, 0);
    if (!strcmp(type, "Metaspace")) {
        ali_pretok p = {.kind = ALI_P_METASPACE};
        const char *r = NULL;
        size_t rl = 0;
        AL_TRY(ali_get_str(ld, o, "replacement", field, 0, &r, &rl));
        if (rl == 0 || rl > 4)
            return ali_bad(ld, field, "Metaspace.replacement: expected one character");
        memcpy(p.repl, r, rl);
        p.repl_len = (int)rl;
        const char *ps = NULL;
        AL_TRY(ali_get_str(ld, o, "prepend_scheme", field, 1, &ps, NULL));
        if (ps) {
            if (!strcmp(ps, "always"))
                p.prepend = 2;
            else if (!strcmp(ps, "first"))
                p.prepend = 1;
            else if (!strcmp(ps, "never"))
                p.prepend = 0;
            else
                return ali_errf(AL_EFORMAT, "%s: %s.prepend_scheme: unknown value '%s'",
                                ld->path, field, ps);
        } else {
            int aps;
            AL_TRY(ali_get_bool(ld, o, "add_prefix_space", field, 1, &aps));
            p.prepend = aps ? 2 : 0;
        }
        AL_TRY(ali_get_bool(ld, o, "split", field, 1, &p.split));
        return ali_pre_add(ld, p, field);
    }
    return ali_errf(AL_EUNSUPPORTED, "%s: %s.type: pre-tokenizer '%s' is not supported",
                    ld->path, field, type);
}

/* ---------------------------------------------------------------- decoder */

static al_err ali_dec_add(ali_ld *ld, ali_dec d)
{
    al_tokenizer *t = ld->t;
    ali_dec *a = realloc(t->decs, (size_t)(t->n_decs + 1) * sizeof *a);
    if (!a) {
        free(d.a);
        free(d.b);
        return ali_errf(AL_ENOMEM, "tokenizer: out of memory");
    }
    t->decs = a;
    t->decs[t->n_decs++] = d;
    return AL_OK;
}

static al_err ali_parse_dec(ali_ld *ld, json_t *o, const char *field, int depth)
{
    if (!o || json_is_null(o))
        return AL_OK;
    if (!json_is_object(o) || depth > 8)
        return ali_bad(ld, field, "expected an object");
    ld->t->has_decoder = 1;
    const char *type = NULL;
    AL_TRY(ali_get_str(ld, o, "type", field, 0, &type, NULL));
    ali_dec d = {0};
    if (!strcmp(type, "Sequence"))
        return ali_parse_sequence(ld, o, field, "decoders", depth, ali_parse_dec);
    if (!strcmp(type, "Replace")) {
        const char *c = NULL;
        size_t cl = 0;
        pcre2_code *re = NULL;
        AL_TRY(ali_get_str(ld, o, "content", field, 0, &c, &cl));
        AL_TRY(ali_get_pattern(ld, o, field, &d.a, &d.alen, &re));
        if (re) {
            pcre2_code_free(re);
            return ali_errf(AL_EUNSUPPORTED, "%s: %s.pattern: Regex in a Replace decoder is not "
                            "supported", ld->path, field);
        }
        d.kind = ALI_D_REPLACE;
        d.b = ali_memdup(c, cl);
        d.blen = cl;
        if (!d.b) {
            free(d.a);
            return ali_errf(AL_ENOMEM, "tokenizer: out of memory");
        }
        return ali_dec_add(ld, d);
    }
    if (!strcmp(type, "ByteFallback"))
        return ali_dec_add(ld, (ali_dec){.kind = ALI_D_BYTEFALLBACK});
    if (!strcmp(type, "Fuse"))
        return ali_dec_add(ld, (ali_dec){.kind = ALI_D_FUSE});
    if (!strcmp(type, "ByteLevel"))
        return ali_dec_add(ld, (ali_dec){.kind = ALI_D_BYTELEVEL});
    if (!strcmp(type, "Strip")) {
        const char *c = NULL;
        size_t cl = 0;
        AL_TRY(ali_get_str(ld, o, "content", field, 0, &c, &cl));
        json_t *s = json_object_get(o, "start"), *e = json_object_get(o, "stop");
        if (!json_is_integer(s) || !json_is_integer(e) || json_integer_value(s) < 0 ||
            json_integer_value(e) < 0 || json_integer_value(s) > 1000000 ||
            json_integer_value(e) > 1000000)
            return ali_bad(ld, field, "Strip.start/stop: expected non-negative integers");
        d.kind = ALI_D_STRIP;
        d.a = ali_memdup(c, cl);
        d.alen = cl;
        d.start = (int)json_integer_value(s);
        d.stop = (int)json_integer_value(e);
        if (!d.a)
            return ali_errf(AL_ENOMEM, "tokenizer: out of memory");
        return ali_dec_add(ld, d);
    }
    if (!strcmp(type, "Metaspace")) {
        const char *r, *ps = NULL;
        size_t rl = 0;
        AL_TRY(ali_get_str(ld, o, "replacement", field, 0, &r, &rl));
        AL_TRY(ali_get_str(ld, o, "prepend_scheme", field, 1, &ps, NULL));
        d.kind = ALI_D_METASPACE;
        if (ps) {
            d.prepend = strcmp(ps, "never") != 0;
        } else {
            int aps;
            AL_TRY(ali_get_bool(ld, o, "add_prefix_space", field, 1, &aps));
            d.prepend = aps;
        }
        d.a = ali_memdup(r, rl);
        d.alen = rl;
        if (!d.a)
            return ali_errf(AL_ENOMEM, "tokenizer: out of memory");
        return ali_dec_add(ld, d);
    }
    return ali_errf(AL_EUNSUPPORTED, "%s: %s.type: decoder '%s' is not supported", ld->path,
                    field, type);
}

/* ---------------------------------------------------------------- post-processor */

static al_err ali_ids_push(int32_t **a, int *n, int32_t id)
{
    int32_t *p = realloc(*a, (size_t)(*n + 1) * sizeof *p);
    if (!p)
        return ali_errf(AL_ENOMEM, "tokenizer: out of memory");
    p[(*n)++] = id;
    *a = p;
    return AL_OK;
}

static al_err ali_pp_tok(ali_ld *ld, json_t *o, const char *key, const char *field, int32_t *id)
{
    *id = -1;
    json_t *v = json_object_get(o, key);
    if (!json_is_array(v) || json_array_size(v) != 2 || !json_is_integer(json_array_get(v, 1)))
        return ali_errf(AL_EFORMAT, "%s: %s.%s: expected [token, id]", ld->path, field, key);
    json_int_t x = json_integer_value(json_array_get(v, 1));
    if (x < 0 || x >= ALI_TOK_MAX_ID)
        return ali_errf(AL_EFORMAT, "%s: %s.%s: id out of range", ld->path, field, key);
    *id = (int32_t)x;
    return AL_OK;
}

static al_err ali_parse_post(ali_ld *ld, json_t *o, const char *field, int depth)
{
    al_tokenizer *t = ld->t;
    if (!o || json_is_null(o))
        return AL_OK;
    if (!json_is_object(o) || depth > 8)
        return ali_bad(ld, field, "expected an object");
    const char *type = NULL;
    AL_TRY(ali_get_str(ld, o, "type", field, 0, &type, NULL));
    if (!strcmp(type, "Sequence")) {
        json_t *arr = json_object_get(o, "processors");
        if (!json_is_array(arr))
            return ali_bad(ld, field, "Sequence.processors: expected an array");
        for (size_t i = 0; i < json_array_size(arr); i++) {
            char f[160];
            snprintf(f, sizeof f, "%s.processors[%zu]", field, i);
            AL_TRY(ali_parse_post(ld, json_array_get(arr, i), f, depth + 1));
        }
        return AL_OK;
    }
    if (!strcmp(type, "ByteLevel"))
        return AL_OK; /* offsets only */
    int32_t *pre = NULL, *suf = NULL;
    int npre = 0, nsuf = 0;
    al_err e = AL_OK;
    if (!strcmp(type, "BertProcessing") || !strcmp(type, "RobertaProcessing")) {
        int32_t cls, sep;
        AL_TRY(ali_pp_tok(ld, o, "cls", field, &cls));
        AL_TRY(ali_pp_tok(ld, o, "sep", field, &sep));
        AL_TRY(ali_ids_push(&pre, &npre, cls));
        e = ali_ids_push(&suf, &nsuf, sep);
    } else if (!strcmp(type, "TemplateProcessing")) {
        json_t *single = json_object_get(o, "single"), *sp = json_object_get(o, "special_tokens");
        if (!json_is_array(single))
            return ali_bad(ld, field, "TemplateProcessing.single: expected an array");
        int seen_a = 0;
        for (size_t i = 0; i < json_array_size(single) && e == AL_OK; i++) {
            json_t *it = json_array_get(single, i);
            json_t *stok = json_object_get(it, "SpecialToken"), *seq = json_object_get(it, "Sequence");
            if (json_is_object(seq)) {
                seen_a = 1;
                continue;
            }
            if (!json_is_object(stok) || !json_is_string(json_object_get(stok, "id"))) {
                e = ali_errf(AL_EFORMAT, "%s: %s.single[%zu]: expected SpecialToken or Sequence",
                             ld->path, field, i);
                break;
            }
            const char *name = json_string_value(json_object_get(stok, "id"));
            json_t *ent = json_object_get(sp, name);
            json_t *ids = json_object_get(ent, "ids");
            if (!json_is_array(ids)) {
                e = ali_errf(AL_EFORMAT, "%s: %s.special_tokens: '%s' missing or has no ids",
                             ld->path, field, name);
                break;
            }
            for (size_t k = 0; k < json_array_size(ids) && e == AL_OK; k++) {
                json_t *x = json_array_get(ids, k);
                if (!json_is_integer(x) || json_integer_value(x) < 0 ||
                    json_integer_value(x) >= ALI_TOK_MAX_ID) {
                    e = ali_errf(AL_EFORMAT, "%s: %s.special_tokens['%s'].ids[%zu]: bad id",
                                 ld->path, field, name, k);
                    break;
                }
                int32_t id = (int32_t)json_integer_value(x);
                e = seen_a ? ali_ids_push(&suf, &nsuf, id) : ali_ids_push(&pre, &npre, id);
            }
        }
        if (e == AL_OK && !seen_a)
            e = ali_bad(ld, field, "TemplateProcessing.single: no $A sequence");
    } else {
        return ali_errf(AL_EUNSUPPORTED, "%s: %s.type: post-processor '%s' is not supported",
                        ld->path, field, type);
    }
    /* Compose: this processor wraps whatever the previous ones produced. */
    for (int i = 0; i < t->n_prefix && e == AL_OK; i++)
        e = ali_ids_push(&pre, &npre, t->prefix_ids[i]);
    if (e == AL_OK) {
        int32_t *s2 = NULL;
        int n2 = 0;
        for (int i = 0; i < t->n_suffix && e == AL_OK; i++)
            e = ali_ids_push(&s2, &n2, t->suffix_ids[i]);
        for (int i = 0; i < nsuf && e == AL_OK; i++)
            e = ali_ids_push(&s2, &n2, suf[i]);
        free(suf);
        suf = s2;
        nsuf = n2;
    }
    if (e != AL_OK) {
        free(pre);
        free(suf);
        return e;
    }
    free(t->prefix_ids);
    free(t->suffix_ids);
    t->prefix_ids = pre;
    t->n_prefix = npre;
    t->suffix_ids = suf;
    t->n_suffix = nsuf;
    return AL_OK;
}

/* ---------------------------------------------------------------- model */

static al_err ali_set_piece(al_tokenizer *t, int32_t id, const char *s, size_t n, int force)
{
    if (t->pieces[id] && (!force || (t->piece_len[id] == n && !memcmp(t->pieces[id], s, n))))
        return AL_OK;
    char *p = ali_memdup(s, n);
    if (!p)
        return ali_errf(AL_ENOMEM, "tokenizer: out of memory");
    if (t->pieces[id]) { /* the model string stays a key of t->vocab: keep it alive */
        char **x = realloc(t->extra, (size_t)(t->n_extra + 1) * sizeof *x);
        if (!x) {
            free(p);
            return ali_errf(AL_ENOMEM, "tokenizer: out of memory");
        }
        t->extra = x;
        t->extra[t->n_extra++] = t->pieces[id];
    }
    t->pieces[id] = p;
    t->piece_len[id] = (uint32_t)n;
    return AL_OK;
}

static al_err ali_parse_model(ali_ld *ld, json_t *root)
{
    al_tokenizer *t = ld->t;
    json_t *m = json_object_get(root, "model");
    if (!json_is_object(m))
        return ali_bad(ld, "model", "missing or not an object");
    const char *type = NULL;
    AL_TRY(ali_get_str(ld, m, "type", "model", 1, &type, NULL));
    if (type && strcmp(type, "BPE"))
        return ali_errf(AL_EUNSUPPORTED, "%s: model.type: '%s' is not supported (only BPE)",
                        ld->path, type);
    json_t *vocab = json_object_get(m, "vocab"), *merges = json_object_get(m, "merges");
    if (!json_is_object(vocab))
        return ali_bad(ld, "model.vocab", "missing or not an object");
    if (merges && !json_is_array(merges))
        return ali_bad(ld, "model.merges", "not an array");
    const char *s = NULL;
    AL_TRY(ali_get_str(ld, m, "continuing_subword_prefix", "model", 1, &s, NULL));
    if (s && *s)
        return ali_errf(AL_EUNSUPPORTED, "%s: model.continuing_subword_prefix is not supported",
                        ld->path);
    AL_TRY(ali_get_str(ld, m, "end_of_word_suffix", "model", 1, &s, NULL));
    if (s && *s)
        return ali_errf(AL_EUNSUPPORTED, "%s: model.end_of_word_suffix is not supported",
                        ld->path);
    AL_TRY(ali_get_bool(ld, m, "fuse_unk", "model", 0, &t->fuse_unk));
    AL_TRY(ali_get_bool(ld, m, "byte_fallback", "model", 0, &t->byte_fallback));
    AL_TRY(ali_get_bool(ld, m, "ignore_merges", "model", 0, &t->ignore_merges));
    json_t *dropout = json_object_get(m, "dropout");
    if (dropout && !json_is_null(dropout) && json_number_value(dropout) > 0)
        AL_WARN("%s: model.dropout is ignored (deterministic encoding)", ld->path);

    /* size the id table: model vocab and added tokens */
    int32_t max_id = -1;
    const char *key;
    json_t *val;
    json_object_foreach(vocab, key, val)
    {
        if (!json_is_integer(val) || json_integer_value(val) < 0 ||
            json_integer_value(val) >= ALI_TOK_MAX_ID)
            return ali_errf(AL_EFORMAT, "%s: model.vocab['%s']: expected an id in [0, %d)",
                            ld->path, key, ALI_TOK_MAX_ID);
        if (json_integer_value(val) > max_id)
            max_id = (int32_t)json_integer_value(val);
    }
    json_t *added = json_object_get(root, "added_tokens");
    if (added && !json_is_null(added) && !json_is_array(added))
        return ali_bad(ld, "added_tokens", "not an array");
    for (size_t i = 0; i < json_array_size(added); i++) {
        json_t *a = json_array_get(added, i), *id = json_object_get(a, "id");
        if (!json_is_object(a) || !json_is_integer(id) || json_integer_value(id) < 0 ||
            json_integer_value(id) >= ALI_TOK_MAX_ID)
            return ali_errf(AL_EFORMAT, "%s: added_tokens[%zu].id: expected an id in [0, %d)",
                            ld->path, i, ALI_TOK_MAX_ID);
        if (json_integer_value(id) > max_id)
            max_id = (int32_t)json_integer_value(id);
    }
    t->n_vocab = max_id + 1;
    if (t->n_vocab == 0)
        return ali_bad(ld, "model.vocab", "empty");
    t->pieces = calloc((size_t)t->n_vocab, sizeof *t->pieces);
    t->piece_len = calloc((size_t)t->n_vocab, sizeof *t->piece_len);
    t->flags = calloc((size_t)t->n_vocab, 1);
    if (!t->pieces || !t->piece_len || !t->flags)
        return ali_errf(AL_ENOMEM, "tokenizer: out of memory");
    json_object_foreach(vocab, key, val)
    {
        int32_t id = (int32_t)json_integer_value(val);
        AL_TRY(ali_set_piece(t, id, key, strlen(key), 0));
    }
    /* Map keys point at the owned pieces; a duplicate id keeps its first string. */
    json_object_foreach(vocab, key, val)
    {
        int32_t id = (int32_t)json_integer_value(val);
        const char *k = t->pieces[id];
        size_t kl = t->piece_len[id];
        if (kl != strlen(key) || memcmp(k, key, kl)) {
            AL_WARN("%s: model.vocab: id %d is used twice; '%s' is ignored", ld->path, id, key);
            continue;
        }
        AL_TRY(ali_strmap_put(&t->vocab, k, kl, id));
    }
    t->unk_id = -1;
    const char *unk = NULL;
    AL_TRY(ali_get_str(ld, m, "unk_token", "model", 1, &unk, NULL));
    if (unk) {
        t->unk_id = ali_strmap_get(&t->vocab, unk, strlen(unk));
        if (t->unk_id < 0)
            return ali_errf(AL_EFORMAT, "%s: model.unk_token: '%s' is not in model.vocab",
                            ld->path, unk);
    }
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        t->byte_tok[b] = ali_strmap_get(&t->vocab, name, 6);
    }
    /* merges: "a b" or ["a", "b"] */
    char *tmp = NULL;
    size_t tmpcap = 0;
    al_err e = AL_OK;
    for (size_t i = 0; i < json_array_size(merges) && e == AL_OK; i++) {
        json_t *mg = json_array_get(merges, i);
        const char *a, *b;
        size_t al, bl;
        if (json_is_string(mg)) {
            a = json_string_value(mg);
            const char *sp = strchr(a, ' ');
            if (!sp) {
                e = ali_errf(AL_EFORMAT, "%s: model.merges[%zu]: '%s' is not \"a b\"", ld->path,
                             i, a);
                break;
            }
            al = (size_t)(sp - a);
            b = sp + 1;
            bl = strlen(b);
        } else if (json_is_array(mg) && json_array_size(mg) == 2 &&
                   json_is_string(json_array_get(mg, 0)) && json_is_string(json_array_get(mg, 1))) {
            a = json_string_value(json_array_get(mg, 0));
            al = json_string_length(json_array_get(mg, 0));
            b = json_string_value(json_array_get(mg, 1));
            bl = json_string_length(json_array_get(mg, 1));
        } else {
            e = ali_errf(AL_EFORMAT, "%s: model.merges[%zu]: expected \"a b\" or [\"a\", \"b\"]",
                         ld->path, i);
            break;
        }
        int32_t ia = ali_strmap_get(&t->vocab, a, al), ib = ali_strmap_get(&t->vocab, b, bl);
        if (ia < 0 || ib < 0) {
            e = ali_errf(AL_EFORMAT, "%s: model.merges[%zu]: token '%.*s' is not in model.vocab",
                         ld->path, i, ia < 0 ? (int)al : (int)bl, ia < 0 ? a : b);
            break;
        }
        if (al + bl + 1 > tmpcap) {
            tmpcap = (al + bl + 1) * 2;
            char *nt = realloc(tmp, tmpcap);
            if (!nt) {
                e = ali_errf(AL_ENOMEM, "tokenizer: out of memory");
                break;
            }
            tmp = nt;
        }
        memcpy(tmp, a, al);
        memcpy(tmp + al, b, bl);
        int32_t in = ali_strmap_get(&t->vocab, tmp, al + bl);
        if (in < 0) {
            e = ali_errf(AL_EFORMAT, "%s: model.merges[%zu]: merged token '%.*s' is not in "
                         "model.vocab", ld->path, i, (int)(al + bl), tmp);
            break;
        }
        e = ali_mergemap_put(&t->merges, ia, ib, (int32_t)i, in);
    }
    free(tmp);
    return e;
}

/* ---------------------------------------------------------------- added tokens */

static al_err ali_parse_added(ali_ld *ld, json_t *root)
{
    al_tokenizer *t = ld->t;
    json_t *added = json_object_get(root, "added_tokens");
    size_t n = json_array_size(added);
    t->added = calloc(n ? n : 1, sizeof *t->added);
    if (!t->added)
        return ali_errf(AL_ENOMEM, "tokenizer: out of memory");
    ali_sbuf nb = {0};
    al_err e = AL_OK;
    for (size_t i = 0; i < n && e == AL_OK; i++) {
        json_t *a = json_array_get(added, i);
        char f[64];
        snprintf(f, sizeof f, "added_tokens[%zu]", i);
        const char *c = NULL;
        size_t cl = 0;
        ali_added *ad = &t->added[t->n_added];
        int sw, ls, rs, nm, sp;
        if ((e = ali_get_str(ld, a, "content", f, 0, &c, &cl)) != AL_OK ||
            (e = ali_get_bool(ld, a, "single_word", f, 0, &sw)) != AL_OK ||
            (e = ali_get_bool(ld, a, "lstrip", f, 0, &ls)) != AL_OK ||
            (e = ali_get_bool(ld, a, "rstrip", f, 0, &rs)) != AL_OK ||
            (e = ali_get_bool(ld, a, "normalized", f, 1, &nm)) != AL_OK ||
            (e = ali_get_bool(ld, a, "special", f, 0, &sp)) != AL_OK)
            break;
        if (cl == 0) {
            e = ali_bad(ld, f, "empty content");
            break;
        }
        ad->id = (int32_t)json_integer_value(json_object_get(a, "id"));
        ad->content = ali_memdup(c, cl);
        ad->len = cl;
        ad->single_word = (uint8_t)sw;
        ad->lstrip = (uint8_t)ls;
        ad->rstrip = (uint8_t)rs;
        ad->normalized = (uint8_t)nm;
        ad->special = (uint8_t)sp;
        if (!ad->content) {
            e = ali_errf(AL_ENOMEM, "tokenizer: out of memory");
            break;
        }
        t->n_added++;
    }
    /* Pieces and flags, then the matchers (normalized patterns need the normalizer). */
    for (int i = 0; i < t->n_added && e == AL_OK; i++) {
        ali_added *ad = &t->added[i];
        if ((e = ali_set_piece(t, ad->id, ad->content, ad->len, 1)) != AL_OK)
            break;
        t->flags[ad->id] = (uint8_t)(ALI_TF_ADDED | (ad->special ? ALI_TF_SPECIAL : 0));
        if (ad->normalized && t->n_norms) {
            if ((e = ali_normalize(t, ad->content, ad->len, &nb)) != AL_OK)
                break;
            ad->pattern = ali_memdup(nb.s, nb.n);
            ad->plen = nb.n;
        } else {
            ad->pattern = ali_memdup(ad->content, ad->len);
            ad->plen = ad->len;
        }
        if (!ad->pattern) {
            e = ali_errf(AL_ENOMEM, "tokenizer: out of memory");
            break;
        }
        e = ali_trie_add(ad->normalized ? &t->trie_norm : &t->trie_raw, ad->pattern, ad->plen, i);
    }
    free(nb.s);
    return e;
}

/* ---------------------------------------------------------------- tokenizer_config.json */

static const char *ali_cfg_token(json_t *v)
{
    if (json_is_string(v))
        return json_string_value(v);
    if (json_is_object(v) && json_is_string(json_object_get(v, "content")))
        return json_string_value(json_object_get(v, "content"));
    return NULL;
}

static al_err ali_parse_config(ali_ld *ld, const char *cfg_path)
{
    al_tokenizer *t = ld->t;
    char *buf;
    size_t len;
    al_err e = ali_read_file(cfg_path, ALI_TOK_MAX_FILE, &buf, &len);
    if (e == AL_ENOTFOUND) {
        ali_errclear();
        return AL_OK;
    }
    if (e != AL_OK)
        return e;
    json_error_t je;
    json_t *root = json_loadb(buf, len, 0, &je);
    free(buf);
    if (!root)
        return ali_errf(AL_EFORMAT, "%s: invalid JSON at line %d: %s", cfg_path, je.line, je.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return ali_errf(AL_EFORMAT, "%s: expected a JSON object", cfg_path);
    }
    json_t *ct = json_object_get(root, "chat_template");
    const char *tmpl = NULL;
    if (json_is_string(ct)) {
        tmpl = json_string_value(ct);
    } else if (json_is_array(ct)) {
        for (size_t i = 0; i < json_array_size(ct); i++) {
            json_t *it = json_array_get(ct, i);
            const char *nm = json_string_value(json_object_get(it, "name"));
            const char *tp = json_string_value(json_object_get(it, "template"));
            if (tp && (!tmpl || (nm && !strcmp(nm, "default"))))
                tmpl = tp;
        }
    } else if (ct && !json_is_null(ct)) {
        json_decref(root);
        return ali_errf(AL_EFORMAT, "%s: chat_template: expected a string or a list", cfg_path);
    }
    if (tmpl && !(t->chat_template = strdup(tmpl))) {
        json_decref(root);
        return ali_errf(AL_ENOMEM, "tokenizer: out of memory");
    }
    const char *bos = ali_cfg_token(json_object_get(root, "bos_token"));
    const char *eos = ali_cfg_token(json_object_get(root, "eos_token"));
    if (bos)
        t->bos = ali_strmap_get(&t->all, bos, strlen(bos));
    if (eos)
        t->eos = ali_strmap_get(&t->all, eos, strlen(eos));
    /* transformers' Llama/Gemma fast tokenizers rebuild the post-processor from
     * add_bos_token (default true) / add_eos_token (default false). */
    const char *cls = json_string_value(json_object_get(root, "tokenizer_class"));
    if (cls && (!strncmp(cls, "LlamaTokenizer", 14) || !strncmp(cls, "CodeLlamaTokenizer", 18) ||
                !strncmp(cls, "GemmaTokenizer", 14))) {
        json_t *ab = json_object_get(root, "add_bos_token"), *ae = json_object_get(root, "add_eos_token");
        int add_bos = ab ? json_is_true(ab) : 1, add_eos = ae ? json_is_true(ae) : 0;
        if ((add_bos && t->bos < 0) || (add_eos && t->eos < 0)) {
            json_decref(root);
            return ali_errf(AL_EFORMAT, "%s: add_%s_token is set but %s_token is missing",
                            cfg_path, add_bos && t->bos < 0 ? "bos" : "eos",
                            add_bos && t->bos < 0 ? "bos" : "eos");
        }
        free(t->prefix_ids);
        free(t->suffix_ids);
        t->prefix_ids = t->suffix_ids = NULL;
        t->n_prefix = t->n_suffix = 0;
        if (add_bos)
            e = ali_ids_push(&t->prefix_ids, &t->n_prefix, t->bos);
        if (add_eos && e == AL_OK)
            e = ali_ids_push(&t->suffix_ids, &t->n_suffix, t->eos);
    }
    json_decref(root);
    return e;
}

/* ---------------------------------------------------------------- entry point */

static al_err ali_load_json(al_tokenizer *t, const char *path)
{
    ali_ld ld = {.t = t, .path = path, .byte_level_at = -1};
    char *buf;
    size_t len;
    AL_TRY(ali_read_file(path, ALI_TOK_MAX_FILE, &buf, &len));
    json_error_t je;
    json_t *root = json_loadb(buf, len, 0, &je);
    free(buf);
    if (!root)
        return ali_errf(AL_EFORMAT, "%s: invalid JSON at line %d: %s", path, je.line, je.text);
    al_err e = AL_OK;
    if (!json_is_object(root))
        e = ali_errf(AL_EFORMAT, "%s: expected a JSON object", path);
    if (e == AL_OK)
        e = ali_parse_model(&ld, root);
    if (e == AL_OK)
        e = ali_parse_norm(&ld, json_object_get(root, "normalizer"), "normalizer", 0);
    if (e == AL_OK)
        e = ali_parse_pre(&ld, json_object_get(root, "pre_tokenizer"), "pre_tokenizer", 0);
    if (e == AL_OK)
        e = ali_parse_post(&ld, json_object_get(root, "post_processor"), "post_processor", 0);
    if (e == AL_OK)
        e = ali_parse_dec(&ld, json_object_get(root, "decoder"), "decoder", 0);
    if (e == AL_OK)
        e = ali_parse_added(&ld, root);
    json_decref(root);
    if (e != AL_OK)
        return e;
    for (int i = 0; i < t->n_prefix; i++)
        if (t->prefix_ids[i] >= t->n_vocab || !t->pieces[t->prefix_ids[i]])
            return ali_errf(AL_EFORMAT, "%s: post_processor: id %d is not a token", path,
                            t->prefix_ids[i]);
    for (int i = 0; i < t->n_suffix; i++)
        if (t->suffix_ids[i] >= t->n_vocab || !t->pieces[t->suffix_ids[i]])
            return ali_errf(AL_EFORMAT, "%s: post_processor: id %d is not a token", path,
                            t->suffix_ids[i]);
    for (int32_t id = 0; id < t->n_vocab; id++)
        if (t->pieces[id] && ali_strmap_get(&t->all, t->pieces[id], t->piece_len[id]) < 0)
            AL_TRY(ali_strmap_put(&t->all, t->pieces[id], t->piece_len[id], id));
    /* added tokens take precedence for token_id() */
    for (int i = 0; i < t->n_added; i++)
        AL_TRY(ali_strmap_put(&t->all, t->pieces[t->added[i].id], t->piece_len[t->added[i].id],
                              t->added[i].id));
    t->bos = t->n_prefix ? t->prefix_ids[0] : -1;
    t->eos = -1;
    ali_bpe_prepare(t);
    return AL_OK;
}

al_err al_tokenizer_load(const char *path, al_tokenizer **out)
{
    *out = NULL;
    if (!path)
        return ali_errf(AL_EINVAL, "tokenizer: no path");
    ali_bytelevel_init();
    struct stat st;
    if (stat(path, &st) != 0)
        return ali_errf(AL_ENOTFOUND, "%s: no such file or directory", path);
    char json_path[4096], cfg_path[4096];
    int is_dir = S_ISDIR(st.st_mode);
    if (is_dir) {
        AL_TRY(ali_path_join(json_path, sizeof json_path, path, "tokenizer.json"));
        AL_TRY(ali_path_join(cfg_path, sizeof cfg_path, path, "tokenizer_config.json"));
    } else {
        if (strlen(path) >= sizeof json_path)
            return ali_errf(AL_ERANGE, "tokenizer: path too long");
        strcpy(json_path, path);
    }
    al_tokenizer *t = calloc(1, sizeof *t);
    if (!t)
        return ali_errf(AL_ENOMEM, "tokenizer: out of memory");
    t->bos = t->eos = t->unk_id = -1;
    ali_trie_init(&t->trie_raw);
    ali_trie_init(&t->trie_norm);
    al_err e = AL_OK;
    if (!(t->path = strdup(json_path)))
        e = ali_errf(AL_ENOMEM, "tokenizer: out of memory");
    if (e == AL_OK)
        e = ali_cache_new(&t->cache);
    if (e == AL_OK)
        e = ali_load_json(t, json_path);
    if (e == AL_OK && is_dir)
        e = ali_parse_config(&(ali_ld){.t = t, .path = cfg_path, .byte_level_at = -1}, cfg_path);
    if (e != AL_OK) {
        al_tokenizer_free(t);
        return e;
    }
    *out = t;
    return AL_OK;
}

void al_tokenizer_free(al_tokenizer *t)
{
    if (!t)
        return;
    for (int32_t i = 0; t->pieces && i < t->n_vocab; i++)
        free(t->pieces[i]);
    free(t->pieces);
    for (int i = 0; i < t->n_extra; i++)
        free(t->extra[i]);
    free(t->extra);
    free(t->piece_len);
    free(t->flags);
    ali_strmap_free(&t->vocab);
    ali_strmap_free(&t->all);
    ali_mergemap_free(&t->merges);
    for (int i = 0; i < t->n_added; i++) {
        free(t->added[i].content);
        free(t->added[i].pattern);
    }
    free(t->added);
    ali_trie_free(&t->trie_raw);
    ali_trie_free(&t->trie_norm);
    for (int i = 0; i < t->n_norms; i++) {
        free(t->norms[i].a);
        free(t->norms[i].b);
        if (t->norms[i].re)
            pcre2_code_free(t->norms[i].re);
    }
    free(t->norms);
    for (int i = 0; i < t->n_pre; i++) {
        free(t->pre[i].str);
        if (t->pre[i].re)
            pcre2_code_free(t->pre[i].re);
    }
    free(t->pre);
    for (int i = 0; i < t->n_decs; i++) {
        free(t->decs[i].a);
        free(t->decs[i].b);
    }
    free(t->decs);
    free(t->prefix_ids);
    free(t->suffix_ids);
    free(t->chat_template);
    ali_cache_free(t->cache);
    free(t->path);
    free(t);
}
