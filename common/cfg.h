/* cfg.h: libconfig 1.5 files loaded through one table of keys (type, range, default, offset). */
#ifndef AL_CFG_H
#define AL_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum al_cfg_type {
    AL_CFG_INT,     /* int. Values outside int32 are errors (libconfig 1.5 would wrap them silently). */
    AL_CFG_INT64,   /* int64_t. Integer literal with or without L. */
    AL_CFG_SIZE,    /* size_t, >= 0. Integer literal (with or without L) or a string "512MiB", "16GiB",
                       "1.5GiB", "64K" (K/M/G/T and KiB/MiB/GiB/TiB are binary; B or nothing = bytes). */
    AL_CFG_FLOAT,   /* float. Integer literals accepted (alpha = 16;). */
    AL_CFG_DOUBLE,  /* double. Integer literals accepted. */
    AL_CFG_BOOL,    /* bool. true/false only. */
    AL_CFG_STRING,  /* char *, malloc'ed copy (NULL when absent without default). */
    AL_CFG_ENUM,    /* int: index of the string value in .choices. */
    AL_CFG_STRINGS, /* al_cfg_strs: array ["a", "b"] or list ("a", "b") of strings. */
    AL_CFG_GROUPS,  /* al_cfg_list: list of groups ( {..}, {..} ), each element an .elem_size struct
                       parsed with the .sub table (its paths are relative to the element). */
} al_cfg_type;

typedef struct al_cfg_strs {
    char **v; /* [n] malloc'ed strings */
    int n;
} al_cfg_strs;

typedef struct al_cfg_list {
    void *v; /* [n] elements of the key's elem_size, calloc'ed */
    int n;
} al_cfg_list;

/* A converted scalar, as handed to a setter. s lives only during the call. */
typedef struct al_cfg_value {
    int64_t i; /* INT, INT64, SIZE, BOOL (0/1), ENUM (index) */
    double f;  /* FLOAT, DOUBLE */
    const char *s; /* STRING, ENUM (the name) */
} al_cfg_value;

typedef struct al_cfg_key {
    const char *path;  /* "base.kv_blocks"; groups along the path are implied */
    al_cfg_type type;
    size_t offset;     /* offsetof(caller's struct, field); unused with .set */
    bool required;     /* absent = error; else the default is used */
    int64_t min, max;  /* INT/INT64/SIZE range, STRINGS/GROUPS element count; applies when min < max */
    double fmin, fmax; /* FLOAT/DOUBLE range; applies when fmin < fmax */
    int64_t def_i;     /* default of INT/INT64/SIZE/BOOL/ENUM (index) */
    double def_f;      /* default of FLOAT/DOUBLE */
    const char *def_s; /* default of STRING (copied; NULL = none) */
    const char *const *choices; /* ENUM: NULL-terminated names */
    const struct al_cfg_key *sub; /* GROUPS: the element's keys */
    int n_sub;
    size_t elem_size;
    /* Optional, scalar types only: called with the converted, range-checked value (or the default)
     * instead of storing at offset. An error it returns is prefixed with file:line and the key. */
    al_err (*set)(void *dst, const struct al_cfg_key *key, const al_cfg_value *v);
    const char *help;  /* one line, for documentation / `alora config --help` */
} al_cfg_key;

/* Loads path into dst: every key of the table is set (value or default). Errors (AL_EFORMAT unless
 * noted), each naming file:line: syntax errors (libconfig's text), unknown keys anywhere (with a
 * "did you mean" hint), wrong types (naming the key and the expected type), out-of-range values
 * (AL_ERANGE), missing required keys (AL_ENOTFOUND), a missing file (AL_ENOTFOUND, names the path).
 * @include is resolved against the file's directory. On error dst's table fields are freed/zeroed. */
al_err al_cfg_load(const char *path, const al_cfg_key *keys, int n_keys, void *dst);
/* Same from a string ("<string>" in messages); include_dir NULL = the current directory. */
al_err al_cfg_load_string(const char *text, const char *include_dir, const al_cfg_key *keys, int n_keys,
                          void *dst);
/* Frees what a load allocated in dst (strings, string lists, group lists, recursively) and zeroes it. */
void al_cfg_free(const al_cfg_key *keys, int n_keys, void *dst);

/* Parses a size string ("16GiB", "512 MiB", "1.5G", "4096"). AL_EFORMAT / AL_ERANGE. */
al_err al_cfg_parse_size(const char *s, uint64_t *out);

#ifdef __cplusplus
}
#endif
#endif
