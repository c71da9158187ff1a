/* fuzz_util.h: helpers shared by the libFuzzer targets: a NUL-terminated copy of the input, a private
 * scratch directory for parsers that read files, the source tree's fixtures. */
#ifndef ALI_FUZZ_UTIL_H
#define ALI_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"

#ifndef ALORA_SOURCE_DIR
#define ALORA_SOURCE_DIR "."
#endif

/* malloc'd copy of data[0..size) plus a NUL (abort on OOM: the fuzzer's own limit). */
static inline char *fuzz_cstr(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        abort();
    if (size)
        memcpy(s, data, size);
    s[size] = 0;
    return s;
}

static char fuzz_dir_path[64];

static void fuzz_dir_cleanup(void)
{
    if (!fuzz_dir_path[0])
        return;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fuzz_dir_path);
    if (system(cmd) != 0)
        fprintf(stderr, "fuzz: could not remove %s\n", fuzz_dir_path);
}

/* A private directory (created once per process, removed at exit) for parsers that take paths. */
static inline const char *fuzz_dir(void)
{
    if (!fuzz_dir_path[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(fuzz_dir_path, sizeof fuzz_dir_path, "%s/alora-fuzz-XXXXXX", t && strlen(t) < 40 ? t : "/tmp");
        if (!mkdtemp(fuzz_dir_path)) {
            perror("fuzz: mkdtemp");
            abort();
        }
        atexit(fuzz_dir_cleanup);
    }
    return fuzz_dir_path;
}

/* Writes data to fuzz_dir()/name (replacing it); returns the path in buf. */
static inline const char *fuzz_write(const char *name, const void *data, size_t size, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/%s", fuzz_dir(), name);
    FILE *f = fopen(buf, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        perror(buf);
        abort();
    }
    return buf;
}

/* Silence the library's log output unless FUZZ_VERBOSE is set: error details are expected. */
#define FUZZ_QUIET_INIT()                                                                                    \
    do {                                                                                                     \
        if (!getenv("FUZZ_VERBOSE"))                                                                         \
            setenv("ALORA_LOG", "error", 0);                                                           \
    } while (0)

#endif
