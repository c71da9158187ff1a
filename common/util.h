/* util.h: small helpers shared by every part: time, checked allocation, rng, file reading. */
#ifndef AL_UTIL_H
#define AL_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define AL_MIN(a, b) ((a) < (b) ? (a) : (b))
#define AL_MAX(a, b) ((a) > (b) ? (a) : (b))
#define AL_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Monotonic time in seconds. */
double al_now(void);

/* 64-byte aligned allocation, zero-filled; NULL on failure or bytes == 0 overflow. */
void *ali_aligned_alloc(size_t bytes);
void ali_aligned_free(void *p);

/* Reads a whole file (NUL-terminated); caps it at max_bytes. */
al_err ali_read_file(const char *path, size_t max_bytes, char **out, size_t *len);
al_err ali_write_file(const char *path, const void *data, size_t len);

/* splitmix64 / xoshiro-style deterministic rng. */
typedef struct al_rng {
    uint64_t s;
} al_rng;
void al_rng_seed(al_rng *r, uint64_t seed);
uint64_t al_rng_next(al_rng *r);
/* Uniform in [0, 1). */
double al_rng_uniform(al_rng *r);
/* Standard normal (Box-Muller). */
double al_rng_normal(al_rng *r);

/* bf16 / f16 conversion. */
float al_bf16_to_f32(uint16_t h);
uint16_t al_f32_to_bf16(float f);
float al_f16_to_f32(uint16_t h);
uint16_t al_f32_to_f16(float f);

/* Last path component of dir (trailing slashes ignored), truncated to cap - 1 bytes. */
void ali_basename(const char *dir, char *out, size_t cap);

/* Joins dir and name into buf; error if it does not fit. */
al_err ali_path_join(char *buf, size_t cap, const char *dir, const char *name);

#endif
