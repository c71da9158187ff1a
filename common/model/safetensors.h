/* safetensors.h: strict reader (single file or sharded with an index) and writer. */
#ifndef AL_SAFETENSORS_H
#define AL_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef enum al_dtype { AL_DT_F32 = 0, AL_DT_F16, AL_DT_BF16, AL_DT_COUNT } al_dtype;

const char *al_dtype_name(al_dtype dt); /* "F32", "F16", "BF16" */
size_t al_dtype_size(al_dtype dt);

#define AL_ST_MAX_DIMS 8

typedef struct al_st_tensor {
    const char *name;
    al_dtype dtype;
    int n_dims;
    int64_t shape[AL_ST_MAX_DIMS];
    int64_t n_elems;
    const void *data; /* points into the mapped file; nbytes long */
    size_t nbytes;
    const char *file; /* path of the file that holds it */
} al_st_tensor;

typedef struct al_st al_st; /* a set of one or more mapped safetensors files */

/* Opens one .safetensors file (mmap, read-only). Every header entry is checked: dtype known,
 * shape non-negative, offsets in order, inside the file, consistent with shape*dtype size. */
al_err al_st_open(const char *path, al_st **out);
/* Opens DIR/<stem>.safetensors, or DIR/<stem>.safetensors.index.json and all its shards. */
al_err al_st_open_dir(const char *dir, const char *stem, al_st **out);
void al_st_close(al_st *st);

int al_st_count(const al_st *st);
const al_st_tensor *al_st_get(const al_st *st, int i);
const al_st_tensor *al_st_find(const al_st *st, const char *name);

/* Converts tensor to f32 into dst (n_elems floats). If want_dims > 0 the shape must equal want. */
al_err al_st_read_f32(const al_st_tensor *t, float *dst, int want_dims, const int64_t *want);

/* Writer: tensors given as f32 data, stored as dtype. */
typedef struct al_st_wtensor {
    const char *name;
    al_dtype dtype;
    int n_dims;
    int64_t shape[AL_ST_MAX_DIMS];
    const float *data;
} al_st_wtensor;
al_err al_st_write(const char *path, const al_st_wtensor *ts, int n);

/* Streaming writer: the header (names, dtypes, shapes of every tensor, in file order) is written
 * at open; then the data of each tensor in that order, in as many al_st_writer_put calls as
 * wanted (each appends n_elems f32 values converted to the tensor's dtype and may span tensor
 * boundaries). The .data fields of ts are ignored here. Close checks that every tensor was
 * completed (else the file is removed and an error returned); abort removes the file. Output is
 * readable by Python's safetensors (header padded with spaces to a multiple of 8 bytes). */
typedef struct al_st_writer al_st_writer;
al_err al_st_writer_open(const char *path, const al_st_wtensor *ts, int n, al_st_writer **out);
al_err al_st_writer_put(al_st_writer *w, const float *data, int64_t n_elems);
al_err al_st_writer_close(al_st_writer *w);
void al_st_writer_abort(al_st_writer *w);

#endif
