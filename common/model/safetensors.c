/* safetensors.c: strict mmap reader (single file or sharded index) and streaming writer. */
#include "common/model/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"

#define ALI_ST_MAX_HEADER ((uint64_t)100 << 20) /* same cap as the Python library */
#define ALI_ST_MAX_INDEX ((size_t)64 << 20)

typedef struct ali_st_file {
    char *path;
    void *map;
    size_t size;
    int n;
    al_st_tensor *ts; /* names owned */
    int *by_name;     /* indices of ts sorted by name */
} ali_st_file;

struct al_st {
    ali_st_file *files;
    int n_files;
    al_st_tensor *ts; /* the visible tensors; names point into files[] */
    int n;
    int *by_name;
};

static const char *const ali_dt_names[AL_DT_COUNT] = {"F32", "F16", "BF16"};
static const size_t ali_dt_sizes[AL_DT_COUNT] = {4, 2, 2};

const char *al_dtype_name(al_dtype dt)
{
    if ((int)dt < 0 || dt >= AL_DT_COUNT)
        return "?";
    return ali_dt_names[dt];
}

size_t al_dtype_size(al_dtype dt)
{
    if ((int)dt < 0 || dt >= AL_DT_COUNT)
        return 0;
    return ali_dt_sizes[dt];
}

static int ali_dt_parse(const char *s)
{
    for (int i = 0; i < AL_DT_COUNT; i++)
        if (!strcmp(s, ali_dt_names[i]))
            return i;
    return -1;
}

/* ---- name index (qsort_r-free: a file-local pointer is not thread safe, so sort pairs) ---- */

typedef struct ali_name_ix {
    const char *name;
    int i;
} ali_name_ix;

static int ali_name_cmp(const void *a, const void *b)
{
    return strcmp(((const ali_name_ix *)a)->name, ((const ali_name_ix *)b)->name);
}

static int *ali_build_index(const al_st_tensor *ts, int n)
{
    ali_name_ix *tmp = malloc(sizeof *tmp * (size_t)(n ? n : 1));
    int *ix = malloc(sizeof *ix * (size_t)(n ? n : 1));
    if (!tmp || !ix) {
        free(tmp);
        free(ix);
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        tmp[i].name = ts[i].name;
        tmp[i].i = i;
    }
    qsort(tmp, (size_t)n, sizeof *tmp, ali_name_cmp);
    for (int i = 0; i < n; i++)
        ix[i] = tmp[i].i;
    free(tmp);
    return ix;
}

static int ali_lookup(const al_st_tensor *ts, const int *ix, int n, const char *name)
{
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(name, ts[ix[mid]].name);
        if (c == 0)
            return ix[mid];
        if (c < 0)
            hi = mid - 1;
        else
            lo = mid + 1;
    }
    return -1;
}

/* ---- one file ---- */

static void ali_file_free(ali_st_file *f)
{
    if (!f)
        return;
    if (f->ts)
        for (int i = 0; i < f->n; i++)
            free((char *)f->ts[i].name);
    free(f->ts);
    free(f->by_name);
    if (f->map)
        munmap(f->map, f->size);
    free(f->path);
    memset(f, 0, sizeof *f);
}

typedef struct ali_span {
    uint64_t begin, end;
    int i;
} ali_span;

static int ali_span_cmp(const void *a, const void *b)
{
    const ali_span *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return 0;
}

/* Parses one header entry into t (name is set by the caller). */
static al_err ali_parse_entry(const char *path, const char *name, json_t *v, uint64_t data_size,
                              al_st_tensor *t, uint64_t *begin, uint64_t *end)
{
    if (!json_is_object(v))
        return ali_errf(AL_EFORMAT, "%s: tensor '%s': header entry is not an object", path, name);
    json_t *jd = json_object_get(v, "dtype");
    if (!json_is_string(jd))
        return ali_errf(AL_EFORMAT, "%s: tensor '%s': 'dtype' missing or not a string", path, name);
    int dt = ali_dt_parse(json_string_value(jd));
    if (dt < 0)
        return ali_errf(AL_EUNSUPPORTED, "%s: tensor '%s': dtype '%s' is not supported (F32, F16, BF16)",
                        path, name, json_string_value(jd));
    t->dtype = (al_dtype)dt;

    json_t *js = json_object_get(v, "shape");
    if (!json_is_array(js))
        return ali_errf(AL_EFORMAT, "%s: tensor '%s': 'shape' missing or not a list", path, name);
    size_t nd = json_array_size(js);
    if (nd > AL_ST_MAX_DIMS)
        return ali_errf(AL_EFORMAT, "%s: tensor '%s': shape has %zu dims, at most %d supported", path,
                        name, nd, AL_ST_MAX_DIMS);
    t->n_dims = (int)nd;
    int64_t ne = 1;
    for (size_t d = 0; d < nd; d++) {
        json_t *x = json_array_get(js, d);
        if (!json_is_integer(x))
            return ali_errf(AL_EFORMAT, "%s: tensor '%s': shape[%zu] is not an integer", path, name, d);
        json_int_t s = json_integer_value(x);
        if (s < 0)
            return ali_errf(AL_EFORMAT, "%s: tensor '%s': shape[%zu] = %lld is negative", path, name, d,
                            (long long)s);
        if (s > 0 && ne > (INT64_MAX / 8) / s)
            return ali_errf(AL_EFORMAT, "%s: tensor '%s': shape element count overflows", path, name);
        ne *= s;
        t->shape[d] = s;
    }
    t->n_elems = ne;

    json_t *jo = json_object_get(v, "data_offsets");
    if (!json_is_array(jo) || json_array_size(jo) != 2 || !json_is_integer(json_array_get(jo, 0)) ||
        !json_is_integer(json_array_get(jo, 1)))
        return ali_errf(AL_EFORMAT, "%s: tensor '%s': 'data_offsets' must be a list of two integers", path,
                        name);
    json_int_t b = json_integer_value(json_array_get(jo, 0));
    json_int_t e = json_integer_value(json_array_get(jo, 1));
    if (b < 0 || e < 0)
        return ali_errf(AL_EFORMAT, "%s: tensor '%s': negative data_offsets [%lld, %lld]", path, name,
                        (long long)b, (long long)e);
    if (b > e)
        return ali_errf(AL_EFORMAT, "%s: tensor '%s': data_offsets begin %lld > end %lld", path, name,
                        (long long)b, (long long)e);
    if ((uint64_t)e > data_size)
        return ali_errf(AL_EFORMAT,
                        "%s: tensor '%s': data_offsets end %lld is beyond the data section (%llu bytes)",
                        path, name, (long long)e, (unsigned long long)data_size);
    uint64_t want = (uint64_t)ne * ali_dt_sizes[dt];
    if ((uint64_t)(e - b) != want)
        return ali_errf(AL_EFORMAT, "%s: tensor '%s': %lld data bytes, but shape x %s needs %llu", path,
                        name, (long long)(e - b), ali_dt_names[dt], (unsigned long long)want);
    t->nbytes = (size_t)want;
    *begin = (uint64_t)b;
    *end = (uint64_t)e;
    return AL_OK;
}

static al_err ali_file_parse(ali_st_file *f, json_t *root, uint64_t hdr_len)
{
    const char *path = f->path;
    if (!json_is_object(root))
        return ali_errf(AL_EFORMAT, "%s: header is not a JSON object", path);
    uint64_t data_size = f->size - 8 - hdr_len;
    const unsigned char *data = (const unsigned char *)f->map + 8 + hdr_len;
    size_t cap = json_object_size(root);
    al_st_tensor *tmp = calloc(cap ? cap : 1, sizeof *tmp);
    ali_span *spans = calloc(cap ? cap : 1, sizeof *spans);
    f->ts = calloc(cap ? cap : 1, sizeof *f->ts);
    if (!tmp || !spans || !f->ts) {
        free(tmp);
        free(spans);
        return ali_errf(AL_ENOMEM, "%s: out of memory", path);
    }
    al_err e = AL_OK;
    int n = 0;
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v)
    {
        if (!strcmp(key, "__metadata__")) {
            if (!json_is_object(v)) {
                e = ali_errf(AL_EFORMAT, "%s: __metadata__ is not an object", path);
                goto out;
            }
            const char *mk;
            json_t *mv;
            json_object_foreach(v, mk, mv)
            {
                if (!json_is_string(mv)) {
                    e = ali_errf(AL_EFORMAT, "%s: __metadata__ value '%s' is not a string", path, mk);
                    goto out;
                }
            }
            continue;
        }
        if (!key[0]) {
            e = ali_errf(AL_EFORMAT, "%s: tensor with an empty name", path);
            goto out;
        }
        al_st_tensor *t = &tmp[n];
        e = ali_parse_entry(path, key, v, data_size, t, &spans[n].begin, &spans[n].end);
        if (e != AL_OK)
            goto out;
        t->name = key; /* borrowed until copied below */
        spans[n].i = n;
        n++;
    }
    qsort(spans, (size_t)n, sizeof *spans, ali_span_cmp);
    /* Sorted by begin: a non-empty span starting below the furthest end seen so far overlaps. */
    {
        uint64_t maxend = 0;
        int who = -1;
        for (int k = 0; k < n; k++) {
            if (who >= 0 && spans[k].begin < maxend && spans[k].end > spans[k].begin) {
                e = ali_errf(AL_EFORMAT, "%s: tensor '%s' overlaps tensor '%s' in the data section", path,
                             tmp[spans[k].i].name, tmp[spans[who].i].name);
                goto out;
            }
            if (spans[k].end >= maxend) {
                maxend = spans[k].end;
                who = k;
            }
        }
    }
    /* Store in data order, with owned names. */
    for (int k = 0; k < n; k++) {
        al_st_tensor t = tmp[spans[k].i];
        t.name = strdup(t.name);
        if (!t.name) {
            e = ali_errf(AL_ENOMEM, "%s: out of memory", path);
            goto out;
        }
        t.data = data + spans[k].begin;
        t.file = f->path;
        f->ts[f->n++] = t;
    }
    f->by_name = ali_build_index(f->ts, f->n);
    if (!f->by_name)
        e = ali_errf(AL_ENOMEM, "%s: out of memory", path);
out:
    free(tmp);
    free(spans);
    return e;
}

static al_err ali_file_open(const char *path, ali_st_file *f)
{
    memset(f, 0, sizeof *f);
    f->path = strdup(path);
    if (!f->path)
        return ali_errf(AL_ENOMEM, "%s: out of memory", path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ali_errf(errno == ENOENT ? AL_ENOTFOUND : AL_EIO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int er = errno;
        close(fd);
        return ali_errf(AL_EIO, "%s: %s", path, strerror(er));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return ali_errf(AL_EIO, "%s: not a regular file", path);
    }
    if (st.st_size < 8) {
        close(fd);
        return ali_errf(AL_EFORMAT, "%s: file is %lld bytes, too small for a safetensors header", path,
                        (long long)st.st_size);
    }
    f->size = (size_t)st.st_size;
    void *m = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    int er = errno;
    close(fd);
    if (m == MAP_FAILED)
        return ali_errf(AL_EIO, "%s: mmap failed: %s", path, strerror(er));
    f->map = m;
    const unsigned char *p = m;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = (n << 8) | p[i];
    if (n > f->size - 8)
        return ali_errf(AL_EFORMAT, "%s: header length %llu is larger than the file (%zu bytes)", path,
                        (unsigned long long)n, f->size);
    if (n > ALI_ST_MAX_HEADER)
        return ali_errf(AL_ERANGE, "%s: header length %llu exceeds the %llu byte limit", path,
                        (unsigned long long)n, (unsigned long long)ALI_ST_MAX_HEADER);
    json_error_t jerr;
    json_t *root = json_loadb((const char *)p + 8, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return ali_errf(AL_EFORMAT, "%s: header is not valid JSON: %s (at byte %d)", path, jerr.text,
                        jerr.position);
    al_err e = ali_file_parse(f, root, n);
    json_decref(root);
    return e;
}

/* ---- the public set ---- */

void al_st_close(al_st *st)
{
    if (!st)
        return;
    for (int i = 0; i < st->n_files; i++)
        ali_file_free(&st->files[i]);
    free(st->files);
    free(st->ts);
    free(st->by_name);
    free(st);
}

al_err al_st_open(const char *path, al_st **out)
{
    *out = NULL;
    al_st *st = calloc(1, sizeof *st);
    if (st)
        st->files = calloc(1, sizeof *st->files);
    if (!st || !st->files) {
        al_st_close(st);
        return ali_errf(AL_ENOMEM, "%s: out of memory", path);
    }
    st->n_files = 1;
    al_err e = ali_file_open(path, &st->files[0]);
    if (e != AL_OK) {
        al_st_close(st);
        return e;
    }
    ali_st_file *f = &st->files[0];
    st->n = f->n;
    st->ts = malloc(sizeof *st->ts * (size_t)(f->n ? f->n : 1));
    st->by_name = malloc(sizeof *st->by_name * (size_t)(f->n ? f->n : 1));
    if (!st->ts || !st->by_name) {
        al_st_close(st);
        return ali_errf(AL_ENOMEM, "%s: out of memory", path);
    }
    memcpy(st->ts, f->ts, sizeof *st->ts * (size_t)f->n);
    memcpy(st->by_name, f->by_name, sizeof *st->by_name * (size_t)f->n);
    *out = st;
    return AL_OK;
}

static int ali_is_file(const char *path)
{
    struct stat s;
    return stat(path, &s) == 0 && S_ISREG(s.st_mode);
}

static al_err ali_open_index(const char *dir, const char *ipath, al_st **out)
{
    char *text = NULL;
    AL_TRY(ali_read_file(ipath, ALI_ST_MAX_INDEX, &text, NULL));
    json_error_t jerr;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    free(text);
    if (!root)
        return ali_errf(AL_EFORMAT, "%s: invalid JSON: %s (line %d)", ipath, jerr.text, jerr.line);
    al_err e = AL_OK;
    al_st *st = NULL;
    const char **shards = NULL;
    json_t *wm = json_object_get(root, "weight_map");
    if (!json_is_object(root) || !json_is_object(wm)) {
        e = ali_errf(AL_EFORMAT, "%s: 'weight_map' missing or not an object", ipath);
        goto out;
    }
    size_t nw = json_object_size(wm);
    if (nw == 0) {
        e = ali_errf(AL_EFORMAT, "%s: 'weight_map' is empty", ipath);
        goto out;
    }
    shards = calloc(nw, sizeof *shards);
    st = calloc(1, sizeof *st);
    if (st) {
        st->files = calloc(nw, sizeof *st->files);
        st->ts = calloc(nw, sizeof *st->ts);
    }
    if (!shards || !st || !st->files || !st->ts) {
        e = ali_errf(AL_ENOMEM, "%s: out of memory", ipath);
        goto out;
    }
    const char *key;
    json_t *v;
    json_object_foreach(wm, key, v)
    {
        if (!json_is_string(v)) {
            e = ali_errf(AL_EFORMAT, "%s: weight_map entry for tensor '%s' is not a string", ipath, key);
            goto out;
        }
        const char *sh = json_string_value(v);
        if (!sh[0] || strchr(sh, '/') || strstr(sh, "..")) {
            e = ali_errf(AL_EFORMAT, "%s: tensor '%s': shard file name '%s' is not allowed", ipath, key,
                         sh);
            goto out;
        }
        int k;
        for (k = 0; k < st->n_files; k++)
            if (!strcmp(shards[k], sh))
                break;
        if (k == st->n_files) {
            char path[4096];
            e = ali_path_join(path, sizeof path, dir, sh);
            if (e != AL_OK)
                goto out;
            shards[k] = sh;
            st->n_files++;
            e = ali_file_open(path, &st->files[k]);
            if (e != AL_OK) {
                ali_errctx(e, "%s: shard of tensor '%s'", ipath, key);
                goto out;
            }
        }
        ali_st_file *f = &st->files[k];
        int ti = ali_lookup(f->ts, f->by_name, f->n, key);
        if (ti < 0) {
            e = ali_errf(AL_ENOTFOUND, "%s: tensor '%s' is mapped to shard '%s' but %s does not hold it",
                         ipath, key, sh, f->path);
            goto out;
        }
        st->ts[st->n++] = f->ts[ti];
    }
    st->by_name = ali_build_index(st->ts, st->n);
    if (!st->by_name)
        e = ali_errf(AL_ENOMEM, "%s: out of memory", ipath);
out:
    free(shards);
    json_decref(root);
    if (e != AL_OK) {
        al_st_close(st);
        return e;
    }
    *out = st;
    return AL_OK;
}

al_err al_st_open_dir(const char *dir, const char *stem, al_st **out)
{
    *out = NULL;
    char path[4096], name[512];
    snprintf(name, sizeof name, "%s.safetensors", stem);
    AL_TRY(ali_path_join(path, sizeof path, dir, name));
    if (ali_is_file(path))
        return al_st_open(path, out);
    snprintf(name, sizeof name, "%s.safetensors.index.json", stem);
    AL_TRY(ali_path_join(path, sizeof path, dir, name));
    if (ali_is_file(path))
        return ali_open_index(dir, path, out);
    return ali_errf(AL_ENOTFOUND, "%s: neither %s.safetensors nor %s.safetensors.index.json found", dir,
                    stem, stem);
}

int al_st_count(const al_st *st) { return st->n; }

const al_st_tensor *al_st_get(const al_st *st, int i)
{
    if (i < 0 || i >= st->n)
        return NULL;
    return &st->ts[i];
}

const al_st_tensor *al_st_find(const al_st *st, const char *name)
{
    int i = ali_lookup(st->ts, st->by_name, st->n, name);
    return i < 0 ? NULL : &st->ts[i];
}

static void ali_fmt_shape(char *buf, size_t cap, int nd, const int64_t *s)
{
    size_t o = 0;
    o += (size_t)snprintf(buf + o, cap - o, "[");
    for (int i = 0; i < nd && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%lld", i ? ", " : "", (long long)s[i]);
    if (o < cap)
        snprintf(buf + o, cap - o, "]");
}

al_err al_st_read_f32(const al_st_tensor *t, float *dst, int want_dims, const int64_t *want)
{
    if (want_dims > 0) {
        int ok = t->n_dims == want_dims;
        for (int i = 0; ok && i < want_dims; i++)
            ok = t->shape[i] == want[i];
        if (!ok) {
            char a[160], b[160];
            ali_fmt_shape(a, sizeof a, t->n_dims, t->shape);
            ali_fmt_shape(b, sizeof b, want_dims, want);
            return ali_errf(AL_EFORMAT, "%s: tensor '%s': shape %s, expected %s", t->file, t->name, a, b);
        }
    }
    size_t n = (size_t)t->n_elems;
    const unsigned char *p = t->data;
    switch (t->dtype) {
    case AL_DT_F32:
        memcpy(dst, p, n * 4);
        break;
    case AL_DT_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = al_f16_to_f32(h);
        }
        break;
    case AL_DT_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = al_bf16_to_f32(h);
        }
        break;
    default:
        return ali_errf(AL_EINTERNAL, "%s: tensor '%s': bad dtype", t->file, t->name);
    }
    return AL_OK;
}

/* ---- writer ---- */

struct al_st_writer {
    FILE *f;
    char *path;
    int n;
    al_dtype *dt;
    int64_t *ne;
    int cur;
    int64_t done; /* elements written of tensor cur */
    int failed;
};

static void ali_writer_free(al_st_writer *w)
{
    if (!w)
        return;
    if (w->f)
        fclose(w->f);
    free(w->path);
    free(w->dt);
    free(w->ne);
    free(w);
}

void al_st_writer_abort(al_st_writer *w)
{
    if (!w)
        return;
    if (w->f) {
        fclose(w->f);
        w->f = NULL;
        unlink(w->path);
    }
    ali_writer_free(w);
}

static void ali_writer_skip_empty(al_st_writer *w)
{
    while (w->cur < w->n && w->ne[w->cur] == 0)
        w->cur++;
}

al_err al_st_writer_open(const char *path, const al_st_wtensor *ts, int n, al_st_writer **out)
{
    *out = NULL;
    if (n < 0)
        return ali_errf(AL_EINVAL, "%s: negative tensor count", path);
    al_err e = AL_OK;
    json_t *root = json_object();
    json_t *meta = json_object();
    char *hdr = NULL;
    al_st_writer *w = calloc(1, sizeof *w);
    if (w) {
        w->path = strdup(path);
        w->dt = calloc((size_t)(n ? n : 1), sizeof *w->dt);
        w->ne = calloc((size_t)(n ? n : 1), sizeof *w->ne);
    }
    if (!root || !meta || !w || !w->path || !w->dt || !w->ne) {
        json_decref(meta);
        e = ali_errf(AL_ENOMEM, "%s: out of memory", path);
        goto fail;
    }
    json_object_set_new(meta, "format", json_string("pt"));
    json_object_set_new(root, "__metadata__", meta);
    w->n = n;
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        const al_st_wtensor *t = &ts[i];
        if (!t->name || !t->name[0] || !strcmp(t->name, "__metadata__")) {
            e = ali_errf(AL_EINVAL, "%s: tensor %d: bad name", path, i);
            goto fail;
        }
        if (json_object_get(root, t->name)) {
            e = ali_errf(AL_EINVAL, "%s: tensor '%s': duplicate name", path, t->name);
            goto fail;
        }
        if ((int)t->dtype < 0 || t->dtype >= AL_DT_COUNT) {
            e = ali_errf(AL_EINVAL, "%s: tensor '%s': bad dtype", path, t->name);
            goto fail;
        }
        if (t->n_dims < 0 || t->n_dims > AL_ST_MAX_DIMS) {
            e = ali_errf(AL_EINVAL, "%s: tensor '%s': %d dims", path, t->name, t->n_dims);
            goto fail;
        }
        json_t *shape = json_array();
        int64_t ne = 1;
        for (int d = 0; d < t->n_dims; d++) {
            int64_t s = t->shape[d];
            if (s < 0 || (s > 0 && ne > (INT64_MAX / 8) / s)) {
                json_decref(shape);
                e = ali_errf(AL_EINVAL, "%s: tensor '%s': bad shape", path, t->name);
                goto fail;
            }
            ne *= s;
            json_array_append_new(shape, json_integer(s));
        }
        uint64_t nb = (uint64_t)ne * ali_dt_sizes[t->dtype];
        json_t *ent = json_object();
        json_object_set_new(ent, "dtype", json_string(ali_dt_names[t->dtype]));
        json_object_set_new(ent, "shape", shape);
        json_t *offs = json_array();
        json_array_append_new(offs, json_integer((json_int_t)off));
        json_array_append_new(offs, json_integer((json_int_t)(off + nb)));
        json_object_set_new(ent, "data_offsets", offs);
        if (json_object_set_new(root, t->name, ent) != 0) {
            e = ali_errf(AL_EINVAL, "%s: tensor '%s': bad name", path, t->name);
            goto fail;
        }
        off += nb;
        w->dt[i] = t->dtype;
        w->ne[i] = ne;
    }
    hdr = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!hdr) {
        e = ali_errf(AL_ENOMEM, "%s: cannot serialise header", path);
        goto fail;
    }
    size_t hl = strlen(hdr), padded = (hl + 7) & ~(size_t)7;
    w->f = fopen(path, "wb");
    if (!w->f) {
        e = ali_errf(AL_EIO, "%s: %s", path, strerror(errno));
        goto fail;
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    int ok = fwrite(len8, 1, 8, w->f) == 8 && fwrite(hdr, 1, hl, w->f) == hl;
    for (size_t i = hl; ok && i < padded; i++)
        ok = fputc(' ', w->f) != EOF;
    if (!ok) {
        e = ali_errf(AL_EIO, "%s: write failed: %s", path, strerror(errno));
        goto fail;
    }
    free(hdr);
    json_decref(root);
    ali_writer_skip_empty(w);
    *out = w;
    return AL_OK;
fail:
    free(hdr);
    json_decref(root);
    al_st_writer_abort(w);
    return e;
}

al_err al_st_writer_put(al_st_writer *w, const float *data, int64_t n_elems)
{
    if (w->failed)
        return ali_errf(AL_EIO, "%s: writer already failed", w->path);
    uint16_t buf[8192];
    while (n_elems > 0) {
        if (w->cur >= w->n) {
            w->failed = 1;
            return ali_errf(AL_EINVAL, "%s: more data than the declared tensors hold", w->path);
        }
        int64_t take = AL_MIN(n_elems, w->ne[w->cur] - w->done);
        al_dtype dt = w->dt[w->cur];
        int64_t left = take;
        const float *p = data;
        while (left > 0) {
            int ok;
            if (dt == AL_DT_F32) {
                ok = fwrite(p, 4, (size_t)left, w->f) == (size_t)left;
                p += left;
                left = 0;
            } else {
                int64_t c = AL_MIN(left, (int64_t)AL_ARRAY_LEN(buf));
                for (int64_t i = 0; i < c; i++)
                    buf[i] = dt == AL_DT_BF16 ? al_f32_to_bf16(p[i]) : al_f32_to_f16(p[i]);
                ok = fwrite(buf, 2, (size_t)c, w->f) == (size_t)c;
                p += c;
                left -= c;
            }
            if (!ok) {
                w->failed = 1;
                return ali_errf(AL_EIO, "%s: write failed: %s", w->path, strerror(errno));
            }
        }
        data += take;
        n_elems -= take;
        w->done += take;
        if (w->done == w->ne[w->cur]) {
            w->cur++;
            w->done = 0;
            ali_writer_skip_empty(w);
        }
    }
    return AL_OK;
}

al_err al_st_writer_close(al_st_writer *w)
{
    if (!w)
        return AL_OK;
    al_err e = AL_OK;
    if (w->failed)
        e = ali_errf(AL_EIO, "%s: incomplete after a failed write", w->path);
    else if (w->cur < w->n)
        e = ali_errf(AL_EINVAL, "%s: closed before all tensors were written (%d of %d)", w->path, w->cur,
                     w->n);
    if (e != AL_OK) {
        al_st_writer_abort(w);
        return e;
    }
    int rc = fclose(w->f);
    w->f = NULL;
    if (rc != 0) {
        e = ali_errf(AL_EIO, "%s: close failed: %s", w->path, strerror(errno));
        unlink(w->path);
    }
    ali_writer_free(w);
    return e;
}

al_err al_st_write(const char *path, const al_st_wtensor *ts, int n)
{
    al_st_writer *w;
    AL_TRY(al_st_writer_open(path, ts, n, &w));
    for (int i = 0; i < n; i++) {
        int64_t ne = 1;
        for (int d = 0; d < ts[i].n_dims; d++)
            ne *= ts[i].shape[d];
        if (ne > 0 && !ts[i].data) {
            al_st_writer_abort(w);
            return ali_errf(AL_EINVAL, "%s: tensor '%s': no data", path, ts[i].name);
        }
        al_err e = al_st_writer_put(w, ts[i].data, ne);
        if (e != AL_OK) {
            al_st_writer_abort(w);
            return e;
        }
    }
    return al_st_writer_close(w);
}
