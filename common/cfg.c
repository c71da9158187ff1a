/* cfg.c: table-driven libconfig 1.5 loading with strict keys, types, ranges and 64-bit safety. */
#include "common/cfg.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <libconfig.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

#define ALI_CFG_MAX_FILES 32
#define ALI_CFG_MAX_PATH 256
#define ALI_W (PATH_MAX + 16) /* "file:line" */

typedef struct {
    const char *main_name; /* what messages call the top-level source */
    const char *main_text; /* load_string: the text (settings report no source file) */
    const char *include_dir; /* libconfig reports included files relative to it */
    struct {
        char *name, *text;
    } files[ALI_CFG_MAX_FILES];
    int n_files;
} ali_cfg_ctx;

static const char *const ali_type_names[] = {
    [AL_CFG_INT] = "an integer",
    [AL_CFG_INT64] = "a 64-bit integer",
    [AL_CFG_SIZE] = "a size (integer or string like \"16GiB\")",
    [AL_CFG_FLOAT] = "a number",
    [AL_CFG_DOUBLE] = "a number",
    [AL_CFG_BOOL] = "a boolean (true/false)",
    [AL_CFG_STRING] = "a string",
    [AL_CFG_ENUM] = "a string",
    [AL_CFG_STRINGS] = "a list of strings",
    [AL_CFG_GROUPS] = "a list of groups ( {...}, ... )",
};

static const char *ali_setting_kind(const config_setting_t *s)
{
    switch (config_setting_type(s)) {
    case CONFIG_TYPE_GROUP: return "a group";
    case CONFIG_TYPE_INT: return "an integer";
    case CONFIG_TYPE_INT64: return "a 64-bit integer";
    case CONFIG_TYPE_FLOAT: return "a float";
    case CONFIG_TYPE_STRING: return "a string";
    case CONFIG_TYPE_BOOL: return "a boolean";
    case CONFIG_TYPE_ARRAY: return "an array";
    case CONFIG_TYPE_LIST: return "a list";
    default: return "an unknown type";
    }
}

/* The path of a source file as libconfig names it: the main file as given, included ones relative
 * to the include dir. */
static void ali_resolve(const ali_cfg_ctx *c, const char *f, char *buf, size_t cap)
{
    if (!f)
        snprintf(buf, cap, "%s", c->main_name);
    else if (c->include_dir && f[0] != '/' && strcmp(f, c->main_name) != 0)
        snprintf(buf, cap, "%s/%s", c->include_dir, f);
    else
        snprintf(buf, cap, "%s", f);
}

/* "file:line" of a setting. */
static const char *ali_where(const ali_cfg_ctx *c, const config_setting_t *s, char *buf, size_t cap)
{
    char f[PATH_MAX];
    ali_resolve(c, config_setting_source_file(s), f, sizeof f);
    snprintf(buf, cap, "%s:%u", f, (unsigned)config_setting_source_line(s));
    return buf;
}

/* Source text of the file a setting came from (cached), or NULL when unreadable. */
static const char *ali_src_text(ali_cfg_ctx *c, const config_setting_t *s)
{
    const char *f = config_setting_source_file(s);
    if (!f)
        return c->main_text;
    for (int i = 0; i < c->n_files; i++)
        if (!strcmp(c->files[i].name, f))
            return c->files[i].text;
    if (c->n_files == ALI_CFG_MAX_FILES)
        return NULL;
    char *text = NULL, path[PATH_MAX];
    size_t len = 0;
    ali_resolve(c, f, path, sizeof path);
    if (ali_read_file(path, (size_t)64 << 20, &text, &len) != AL_OK)
        return NULL;
    char *name = strdup(f);
    if (!name) {
        free(text);
        return NULL;
    }
    c->files[c->n_files].name = name;
    c->files[c->n_files].text = text;
    c->n_files++;
    return text;
}

static void ali_ctx_free(ali_cfg_ctx *c)
{
    for (int i = 0; i < c->n_files; i++) {
        free(c->files[i].name);
        free(c->files[i].text);
    }
    c->n_files = 0;
}

static int ali_ident_char(char ch) { return isalnum((unsigned char)ch) || ch == '_' || ch == '-' || ch == '*'; }

/* libconfig 1.5 stores an integer literal without L as (int) of its value, so 3000000000 reads as
 * -1294967296 and 17179869184 as 0. Recover the literal from the source: find "name = <literal>"
 * at the setting's line whose low 32 bits equal the stored value. *found = 0 when it cannot tell. */
static int ali_rescan_int(ali_cfg_ctx *c, const config_setting_t *s, int32_t stored, int64_t *val, int *overflow)
{
    const char *name = config_setting_name(s);
    const char *text = ali_src_text(c, s);
    unsigned line = config_setting_source_line(s);
    if (!name || !text || line == 0)
        return 0;
    const char *p = text;
    for (unsigned l = 1; l < line && p; l++) {
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    if (!p)
        return 0;
    const char *eol = strchr(p, '\n');
    if (!eol)
        eol = p + strlen(p);
    size_t nl = strlen(name);
    for (const char *q = p; q < eol; q++) {
        if (strncmp(q, name, nl) != 0 || (q > text && ali_ident_char(q[-1])) || ali_ident_char(q[nl]))
            continue;
        const char *r = q + nl;
        while (*r == ' ' || *r == '\t' || *r == '\r' || *r == '\n')
            r++;
        if (*r != '=' && *r != ':')
            continue;
        r++;
        while (*r == ' ' || *r == '\t' || *r == '\r' || *r == '\n')
            r++;
        const char *num = r;
        int neg = 0;
        if (*r == '-' || *r == '+')
            neg = *r++ == '-';
        int64_t v;
        int ovf = 0;
        char *end;
        errno = 0;
        if (r[0] == '0' && (r[1] == 'x' || r[1] == 'X')) {
            if (!isxdigit((unsigned char)r[2]))
                continue;
            unsigned long long u = strtoull(r, &end, 16);
            ovf = errno == ERANGE;
            v = (int64_t)u;
            if (neg)
                v = -v;
        } else {
            if (!isdigit((unsigned char)*r))
                continue;
            long long ll = strtoll(num, &end, 10);
            ovf = errno == ERANGE;
            v = ll;
        }
        if ((int32_t)(uint32_t)(uint64_t)v != stored)
            continue;
        *val = v;
        *overflow = ovf;
        return 1;
    }
    return 0;
}

/* An integer setting's true value. */
static al_err ali_get_int(ali_cfg_ctx *c, const config_setting_t *s, const char *disp, const al_cfg_key *k,
                          int64_t *out)
{
    char w[ALI_W];
    if (config_setting_type(s) == CONFIG_TYPE_INT64) {
        *out = config_setting_get_int64(s);
        return AL_OK;
    }
    int32_t stored = (int32_t)config_setting_get_int(s);
    int overflow = 0;
    int64_t v;
    if (!ali_rescan_int(c, s, stored, &v, &overflow))
        v = stored;
    if (overflow)
        return ali_errf(AL_ERANGE, "%s: %s%s: integer literal does not fit in 64 bits", ali_where(c, s, w, sizeof w),
                        disp, k->path);
    *out = v;
    return AL_OK;
}

al_err al_cfg_parse_size(const char *s, uint64_t *out)
{
    const char *p = s;
    while (isspace((unsigned char)*p))
        p++;
    if (!isdigit((unsigned char)*p))
        return ali_errf(AL_EFORMAT, "size \"%s\": expected a number such as \"512MiB\" or \"16GiB\"", s);
    errno = 0;
    char *end;
    unsigned long long whole = strtoull(p, &end, 10);
    if (errno == ERANGE)
        return ali_errf(AL_ERANGE, "size \"%s\" does not fit in 64 bits", s);
    double frac = 0;
    if (*end == '.') {
        const char *f = end;
        end++;
        if (!isdigit((unsigned char)*end))
            return ali_errf(AL_EFORMAT, "size \"%s\": bad number", s);
        while (isdigit((unsigned char)*end))
            end++;
        frac = strtod(f, NULL);
    }
    while (*end == ' ')
        end++;
    static const struct {
        const char *sfx;
        int shift;
    } units[] = {{"", 0},    {"B", 0},    {"K", 10},   {"KiB", 10}, {"k", 10},   {"M", 20},
                 {"MiB", 20}, {"G", 30},   {"GiB", 30}, {"T", 40},   {"TiB", 40}};
    int shift = -1;
    for (size_t i = 0; i < AL_ARRAY_LEN(units); i++)
        if (!strcmp(end, units[i].sfx))
            shift = units[i].shift;
    if (shift < 0)
        return ali_errf(AL_EFORMAT, "size \"%s\": unknown unit \"%s\" (use B, KiB, MiB, GiB, TiB or K, M, G, T)",
                        s, end);
    uint64_t mult = (uint64_t)1 << shift, v;
    if (__builtin_mul_overflow((uint64_t)whole, mult, &v))
        return ali_errf(AL_ERANGE, "size \"%s\" does not fit in 64 bits", s);
    uint64_t extra = (uint64_t)(frac * (double)mult);
    if (frac > 0 && shift == 0)
        return ali_errf(AL_EFORMAT, "size \"%s\": fractional bytes", s);
    if (__builtin_add_overflow(v, extra, &v))
        return ali_errf(AL_ERANGE, "size \"%s\" does not fit in 64 bits", s);
    *out = v;
    return AL_OK;
}

/* Edit distance, for "did you mean". */
static int ali_lev(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63)
        return 99;
    int d[64][64];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            int x = d[i - 1][j] + 1, y = d[i][j - 1] + 1, z = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            d[i][j] = AL_MIN(x, AL_MIN(y, z));
        }
    return d[la][lb];
}

static void ali_hint(const al_cfg_key *keys, int n, const char *rel, char *buf, size_t cap)
{
    int best = 99;
    const char *bk = NULL;
    for (int i = 0; i < n; i++) {
        int d = ali_lev(rel, keys[i].path);
        if (d < best) {
            best = d;
            bk = keys[i].path;
        }
    }
    buf[0] = 0;
    if (bk && best <= 2 && best * 3 <= (int)strlen(rel) + 1)
        snprintf(buf, cap, " (did you mean '%s'?)", bk);
}

/* Unknown-key walk: every setting under group g (at relative path rel) must be a key of the table or
 * a group on the way to one. disp is the display prefix of the scope ("" or "intrinsics[2]."). */
static al_err ali_check_unknown(ali_cfg_ctx *c, const config_setting_t *g, const char *rel, const char *disp,
                                const al_cfg_key *keys, int n)
{
    char w[ALI_W], path[ALI_CFG_MAX_PATH], hint[ALI_CFG_MAX_PATH + 32];
    int len = config_setting_length(g);
    for (int i = 0; i < len; i++) {
        const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
        const char *name = config_setting_name(s);
        if (!name)
            continue;
        if ((size_t)snprintf(path, sizeof path, "%s%s", rel, name) >= sizeof path)
            return ali_errf(AL_EFORMAT, "%s: key path too long", ali_where(c, s, w, sizeof w));
        size_t pl = strlen(path);
        int exact = 0, prefix = 0;
        for (int k = 0; k < n; k++) {
            if (!strcmp(keys[k].path, path))
                exact = 1;
            else if (!strncmp(keys[k].path, path, pl) && keys[k].path[pl] == '.')
                prefix = 1;
        }
        if (exact)
            continue;
        if (!prefix) {
            ali_hint(keys, n, path, hint, sizeof hint);
            return ali_errf(AL_EFORMAT, "%s: unknown key '%s%s'%s", ali_where(c, s, w, sizeof w), disp, path, hint);
        }
        if (config_setting_type(s) != CONFIG_TYPE_GROUP)
            return ali_errf(AL_EFORMAT, "%s: '%s%s' must be a group { ... }, not %s", ali_where(c, s, w, sizeof w),
                            disp, path, ali_setting_kind(s));
        char sub[ALI_CFG_MAX_PATH + 1];
        snprintf(sub, sizeof sub, "%s.", path);
        AL_TRY(ali_check_unknown(c, s, sub, disp, keys, n));
    }
    return AL_OK;
}

static al_err ali_load_scope(ali_cfg_ctx *c, const config_setting_t *root, const char *disp,
                             const al_cfg_key *keys, int n, void *dst);

static void *ali_field(void *dst, const al_cfg_key *k) { return (char *)dst + k->offset; }

/* Stores (or passes to the setter) a scalar value. */
static al_err ali_store(ali_cfg_ctx *c, const config_setting_t *s, const char *disp, const al_cfg_key *k,
                        void *dst, const al_cfg_value *v)
{
    if (k->set) {
        al_err e = k->set(dst, k, v);
        if (e != AL_OK) {
            char w[ALI_W];
            if (s)
                return ali_errctx(e, "%s: %s%s", ali_where(c, s, w, sizeof w), disp, k->path);
            return ali_errctx(e, "%s: %s%s (default)", c->main_name, disp, k->path);
        }
        return AL_OK;
    }
    void *f = ali_field(dst, k);
    switch (k->type) {
    case AL_CFG_INT:
    case AL_CFG_ENUM: *(int *)f = (int)v->i; break;
    case AL_CFG_INT64: *(int64_t *)f = v->i; break;
    case AL_CFG_SIZE: *(size_t *)f = (size_t)v->i; break;
    case AL_CFG_FLOAT: *(float *)f = (float)v->f; break;
    case AL_CFG_DOUBLE: *(double *)f = v->f; break;
    case AL_CFG_BOOL: *(bool *)f = v->i != 0; break;
    case AL_CFG_STRING: {
        char **sp = f;
        free(*sp);
        *sp = NULL;
        if (v->s && !(*sp = strdup(v->s)))
            return ali_errf(AL_ENOMEM, "config: out of memory");
        break;
    }
    default: assert(!"not a scalar type");
    }
    return AL_OK;
}

static al_err ali_default(ali_cfg_ctx *c, const char *disp, const al_cfg_key *k, void *dst)
{
    al_cfg_value v = {.i = k->def_i, .f = k->def_f, .s = k->def_s};
    switch (k->type) {
    case AL_CFG_STRINGS:
    case AL_CFG_GROUPS: return AL_OK; /* zeroed already: empty */
    case AL_CFG_ENUM:
        assert(k->choices && k->def_i >= 0);
        v.s = k->choices[k->def_i];
        break;
    default: break;
    }
    return ali_store(c, NULL, disp, k, dst, &v);
}

static al_err ali_type_err(ali_cfg_ctx *c, const config_setting_t *s, const char *disp, const al_cfg_key *k)
{
    char w[ALI_W];
    return ali_errf(AL_EFORMAT, "%s: %s%s: expected %s, got %s", ali_where(c, s, w, sizeof w), disp, k->path,
                    ali_type_names[k->type], ali_setting_kind(s));
}

static al_err ali_range_i(ali_cfg_ctx *c, const config_setting_t *s, const char *disp, const al_cfg_key *k,
                          int64_t v, int64_t lo, int64_t hi, const char *what)
{
    char w[ALI_W];
    if (v < lo || v > hi)
        return ali_errf(AL_ERANGE, "%s: %s%s: %s %lld out of range [%lld, %lld]", ali_where(c, s, w, sizeof w), disp,
                        k->path, what, (long long)v, (long long)lo, (long long)hi);
    return AL_OK;
}

static al_err ali_convert(ali_cfg_ctx *c, const config_setting_t *s, const char *disp, const al_cfg_key *k,
                          void *dst)
{
    char w[ALI_W];
    int t = config_setting_type(s);
    int is_int = t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64;
    int ranged = k->min < k->max;
    al_cfg_value v = {0};
    switch (k->type) {
    case AL_CFG_INT:
    case AL_CFG_INT64:
    case AL_CFG_SIZE:
        if (k->type == AL_CFG_SIZE && t == CONFIG_TYPE_STRING) {
            uint64_t u;
            if (al_cfg_parse_size(config_setting_get_string(s), &u) != AL_OK)
                return ali_errctx(AL_EFORMAT, "%s: %s%s", ali_where(c, s, w, sizeof w), disp, k->path);
            if (u > INT64_MAX)
                return ali_errf(AL_ERANGE, "%s: %s%s: size too large", ali_where(c, s, w, sizeof w), disp, k->path);
            v.i = (int64_t)u;
        } else if (is_int) {
            AL_TRY(ali_get_int(c, s, disp, k, &v.i));
        } else {
            return ali_type_err(c, s, disp, k);
        }
        if (k->type == AL_CFG_INT)
            AL_TRY(ali_range_i(c, s, disp, k, v.i, INT_MIN, INT_MAX, "value (an int)"));
        if (k->type == AL_CFG_SIZE)
            AL_TRY(ali_range_i(c, s, disp, k, v.i, 0, INT64_MAX, "size"));
        if (ranged)
            AL_TRY(ali_range_i(c, s, disp, k, v.i, k->min, k->max, "value"));
        return ali_store(c, s, disp, k, dst, &v);
    case AL_CFG_FLOAT:
    case AL_CFG_DOUBLE:
        if (t == CONFIG_TYPE_FLOAT) {
            v.f = config_setting_get_float(s);
        } else if (is_int) {
            AL_TRY(ali_get_int(c, s, disp, k, &v.i));
            v.f = (double)v.i;
            v.i = 0;
        } else {
            return ali_type_err(c, s, disp, k);
        }
        if (!isfinite(v.f) || (k->type == AL_CFG_FLOAT && fabs(v.f) > FLT_MAX))
            return ali_errf(AL_ERANGE, "%s: %s%s: %g is not a finite float", ali_where(c, s, w, sizeof w), disp,
                            k->path, v.f);
        if (k->fmin < k->fmax && (v.f < k->fmin || v.f > k->fmax))
            return ali_errf(AL_ERANGE, "%s: %s%s: value %g out of range [%g, %g]", ali_where(c, s, w, sizeof w),
                            disp, k->path, v.f, k->fmin, k->fmax);
        return ali_store(c, s, disp, k, dst, &v);
    case AL_CFG_BOOL:
        if (t != CONFIG_TYPE_BOOL)
            return ali_type_err(c, s, disp, k);
        v.i = config_setting_get_bool(s) != 0;
        return ali_store(c, s, disp, k, dst, &v);
    case AL_CFG_STRING:
    case AL_CFG_ENUM:
        if (t != CONFIG_TYPE_STRING)
            return ali_type_err(c, s, disp, k);
        v.s = config_setting_get_string(s);
        if (k->type == AL_CFG_ENUM) {
            assert(k->choices);
            int idx = -1;
            char opts[256] = "";
            for (int i = 0; k->choices[i]; i++) {
                if (!strcmp(k->choices[i], v.s))
                    idx = i;
                size_t ol = strlen(opts);
                snprintf(opts + ol, sizeof opts - ol, "%s\"%s\"", i ? ", " : "", k->choices[i]);
            }
            if (idx < 0)
                return ali_errf(AL_EFORMAT, "%s: %s%s: \"%s\" is not one of %s", ali_where(c, s, w, sizeof w), disp,
                                k->path, v.s, opts);
            v.i = idx;
        }
        return ali_store(c, s, disp, k, dst, &v);
    case AL_CFG_STRINGS: {
        assert(!k->set);
        if (t != CONFIG_TYPE_ARRAY && t != CONFIG_TYPE_LIST)
            return ali_type_err(c, s, disp, k);
        int n = config_setting_length(s);
        if (ranged)
            AL_TRY(ali_range_i(c, s, disp, k, n, k->min, k->max, "element count"));
        al_cfg_strs *out = ali_field(dst, k);
        out->v = calloc((size_t)n + 1, sizeof *out->v);
        if (!out->v)
            return ali_errf(AL_ENOMEM, "config: out of memory");
        for (int i = 0; i < n; i++) {
            const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
            if (config_setting_type(e) != CONFIG_TYPE_STRING)
                return ali_errf(AL_EFORMAT, "%s: %s%s[%d]: expected a string, got %s", ali_where(c, e, w, sizeof w),
                                disp, k->path, i, ali_setting_kind(e));
            if (!(out->v[i] = strdup(config_setting_get_string(e))))
                return ali_errf(AL_ENOMEM, "config: out of memory");
            out->n = i + 1;
        }
        return AL_OK;
    }
    case AL_CFG_GROUPS: {
        assert(!k->set && k->sub && k->elem_size > 0);
        int n = config_setting_length(s);
        if (t != CONFIG_TYPE_LIST && !(t == CONFIG_TYPE_ARRAY && n == 0))
            return ali_type_err(c, s, disp, k);
        if (ranged)
            AL_TRY(ali_range_i(c, s, disp, k, n, k->min, k->max, "element count"));
        al_cfg_list *out = ali_field(dst, k);
        if (n == 0)
            return AL_OK;
        out->v = calloc((size_t)n, k->elem_size);
        if (!out->v)
            return ali_errf(AL_ENOMEM, "config: out of memory");
        out->n = n; /* elements are zeroed, so al_cfg_free is safe on a partial parse */
        for (int i = 0; i < n; i++) {
            const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
            if (config_setting_type(e) != CONFIG_TYPE_GROUP)
                return ali_errf(AL_EFORMAT, "%s: %s%s[%d]: expected a group { ... }, got %s",
                                ali_where(c, e, w, sizeof w), disp, k->path, i, ali_setting_kind(e));
            char sub[ALI_CFG_MAX_PATH];
            snprintf(sub, sizeof sub, "%s%s[%d].", disp, k->path, i);
            AL_TRY(ali_load_scope(c, e, sub, k->sub, k->n_sub, (char *)out->v + (size_t)i * k->elem_size));
        }
        return AL_OK;
    }
    }
    return ali_errf(AL_EINTERNAL, "config: key '%s' has unknown type %d", k->path, (int)k->type);
}

static al_err ali_load_scope(ali_cfg_ctx *c, const config_setting_t *root, const char *disp,
                             const al_cfg_key *keys, int n, void *dst)
{
    char w[ALI_W];
    AL_TRY(ali_check_unknown(c, root, "", disp, keys, n));
    for (int i = 0; i < n; i++) {
        const al_cfg_key *k = &keys[i];
        config_setting_t *s = config_setting_lookup((config_setting_t *)root, k->path);
        if (!s) {
            if (k->required) {
                if (*disp)
                    return ali_errf(AL_ENOTFOUND, "%s: %.*s: missing required key '%s'", ali_where(c, root, w, sizeof w),
                                    (int)strlen(disp) - 1, disp, k->path);
                return ali_errf(AL_ENOTFOUND, "%s: missing required key '%s'", c->main_name, k->path);
            }
            AL_TRY(ali_default(c, disp, k, dst));
            continue;
        }
        AL_TRY(ali_convert(c, s, disp, k, dst));
    }
    return AL_OK;
}

void al_cfg_free(const al_cfg_key *keys, int n_keys, void *dst)
{
    for (int i = 0; i < n_keys; i++) {
        const al_cfg_key *k = &keys[i];
        if (k->set)
            continue;
        void *f = ali_field(dst, k);
        if (k->type == AL_CFG_STRING) {
            free(*(char **)f);
            *(char **)f = NULL;
        } else if (k->type == AL_CFG_STRINGS) {
            al_cfg_strs *s = f;
            for (int j = 0; j < s->n; j++)
                free(s->v[j]);
            free(s->v);
            s->v = NULL;
            s->n = 0;
        } else if (k->type == AL_CFG_GROUPS) {
            al_cfg_list *l = f;
            for (int j = 0; j < l->n; j++)
                al_cfg_free(k->sub, k->n_sub, (char *)l->v + (size_t)j * k->elem_size);
            free(l->v);
            l->v = NULL;
            l->n = 0;
        }
    }
}

/* Zeroes the owned (pointer) fields so al_cfg_free is safe at any point of a load. */
static void ali_zero_owned(const al_cfg_key *keys, int n, void *dst)
{
    for (int i = 0; i < n; i++) {
        const al_cfg_key *k = &keys[i];
        if (k->set)
            continue;
        void *f = ali_field(dst, k);
        if (k->type == AL_CFG_STRING)
            *(char **)f = NULL;
        else if (k->type == AL_CFG_STRINGS)
            memset(f, 0, sizeof(al_cfg_strs));
        else if (k->type == AL_CFG_GROUPS)
            memset(f, 0, sizeof(al_cfg_list));
    }
}

static al_err ali_load(ali_cfg_ctx *c, config_t *cfg, const al_cfg_key *keys, int n, void *dst)
{
    al_err e = ali_load_scope(c, config_root_setting(cfg), "", keys, n, dst);
    if (e != AL_OK)
        al_cfg_free(keys, n, dst);
    return e;
}

static al_err ali_parse_err(const ali_cfg_ctx *c, config_t *cfg)
{
    char f[PATH_MAX];
    ali_resolve(c, config_error_file(cfg), f, sizeof f); /* NULL (e.g. unreadable file) = the main one */
    return ali_errf(AL_EFORMAT, "%s:%d: %s", f, config_error_line(cfg), config_error_text(cfg));
}

al_err al_cfg_load(const char *path, const al_cfg_key *keys, int n_keys, void *dst)
{
    if (!path || !dst || (n_keys && !keys))
        return ali_errf(AL_EINVAL, "config: NULL argument");
    ali_zero_owned(keys, n_keys, dst);
    FILE *fp = fopen(path, "r");
    if (!fp) {
        int en = errno;
        return ali_errf(en == ENOENT ? AL_ENOTFOUND : AL_EIO, "%s: cannot open config file: %s", path, strerror(en));
    }
    fclose(fp);
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == dir)
        dir[1] = 0;
    else
        *slash = 0;
    config_t cfg;
    config_init(&cfg);
    config_set_include_dir(&cfg, dir);
    al_err e;
    ali_cfg_ctx c = {.main_name = path, .include_dir = dir};
    if (!config_read_file(&cfg, path))
        e = ali_parse_err(&c, &cfg);
    else
        e = ali_load(&c, &cfg, keys, n_keys, dst);
    ali_ctx_free(&c);
    config_destroy(&cfg);
    return e;
}

al_err al_cfg_load_string(const char *text, const char *include_dir, const al_cfg_key *keys, int n_keys,
                          void *dst)
{
    if (!text || !dst || (n_keys && !keys))
        return ali_errf(AL_EINVAL, "config: NULL argument");
    ali_zero_owned(keys, n_keys, dst);
    config_t cfg;
    config_init(&cfg);
    if (include_dir)
        config_set_include_dir(&cfg, include_dir);
    al_err e;
    ali_cfg_ctx c = {.main_name = "<string>", .main_text = text, .include_dir = include_dir};
    if (!config_read_string(&cfg, text))
        e = ali_parse_err(&c, &cfg);
    else
        e = ali_load(&c, &cfg, keys, n_keys, dst);
    ali_ctx_free(&c);
    config_destroy(&cfg);
    return e;
}
