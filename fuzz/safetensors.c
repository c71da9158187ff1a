/* safetensors.c: libFuzzer target: the safetensors reader (common/model/safetensors.c): a whole file, a
 * header with the length prefix made for it, or a sharded index (model.safetensors.index.json). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "common/model/safetensors.h"
#include "fuzz/fuzz_util.h"

/* A valid shard the index may name: {"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}} */
static const char fuzz_shard_hdr[] = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    FUZZ_QUIET_INIT();
    uint8_t f[8 + sizeof fuzz_shard_hdr - 1 + 8] = {0};
    uint64_t n = sizeof fuzz_shard_hdr - 1;
    memcpy(f, &n, 8);
    memcpy(f + 8, fuzz_shard_hdr, n);
    char buf[512];
    fuzz_write("shard-1.safetensors", f, sizeof f, buf, sizeof buf);
    return 0;
}

static void fuzz_use(al_st *st)
{
    int n = al_st_count(st);
    for (int i = 0; i < n; i++) {
        const al_st_tensor *t = al_st_get(st, i);
        if (al_st_find(st, t->name) == NULL)
            abort(); /* every listed tensor is found by its name */
        if (t->n_elems <= (1 << 16)) {
            float *dst = malloc(sizeof(float) * (size_t)(t->n_elems ? t->n_elems : 1));
            if (!dst)
                abort();
            (void)al_st_read_f32(t, dst, 0, NULL);
            free(dst);
        }
    }
    al_st_close(st);
}

/* Mode (first byte): 'I' = the rest is an index JSON; '{' = the input is a header JSON, then (after
 * a NUL, if any) the data bytes, and the 8-byte length prefix is made here; anything else = a
 * whole file as is. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[512];
    al_st *st = NULL;
    if (size >= 1 && data[0] == 'I') {
        fuzz_write("model.safetensors.index.json", data + 1, size - 1, path, sizeof path);
        if (al_st_open_dir(fuzz_dir(), "model", &st) == AL_OK)
            fuzz_use(st);
        unlink(path);
        return 0;
    }
    if (size >= 1 && data[0] == '{') {
        const uint8_t *nul = memchr(data, 0, size);
        size_t hl = nul ? (size_t)(nul - data) : size;
        size_t dl = nul ? size - hl - 1 : 0;
        uint8_t *f = malloc(8 + hl + dl);
        if (!f)
            abort();
        uint64_t n = hl;
        memcpy(f, &n, 8);
        memcpy(f + 8, data, hl);
        if (dl)
            memcpy(f + 8 + hl, nul + 1, dl);
        fuzz_write("h.safetensors", f, 8 + hl + dl, path, sizeof path);
        free(f);
    } else {
        fuzz_write("f.safetensors", data, size, path, sizeof path);
    }
    if (al_st_open(path, &st) == AL_OK)
        fuzz_use(st);
    return 0;
}
