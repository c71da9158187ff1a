/* al_test.h: shared helpers for the cmocka tests (paths, skips, temp dirs). */
#ifndef AL_TEST_H
#define AL_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define AL_TEST_SKIP_CODE 77

/* ../shared, or NULL when absent (tests that need it then exit 77 = skipped). */
static inline const char *al_test_shared(void)
{
    const char *s = getenv("ALORA_SHARED");
    if (!s)
        s = "../shared";
    if (access(s, R_OK) != 0)
        return NULL;
    return s;
}

/* The alora CLI binary built next to the tests. */
static inline const char *al_test_bin(void)
{
    const char *s = getenv("ALORA_BIN");
    return s ? s : "build/alora";
}

/* Makes a fresh temporary directory; caller frees the string. */
static inline char *al_test_tmpdir(void)
{
    char *t = strdup("/tmp/alora-test-XXXXXX");
    if (!t || !mkdtemp(t)) {
        free(t);
        return NULL;
    }
    return t;
}

static inline void al_test_rmrf(const char *dir)
{
    char cmd[4096];
    if (dir && strncmp(dir, "/tmp/alora-test-", 16) == 0) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "warning: could not remove %s\n", dir);
    }
}

#endif
