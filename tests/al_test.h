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

/* Bitwise equality of float arrays viewed as rows x cols (row-major). On failure prints the first
 * differing element with its row, column and both values (and their bits), then fails the test. */
#define al_assert_floats_identical(got, want, rows, cols)                                                   \
    ali_test_floats_identical((const float *)(got), (const float *)(want), (size_t)(rows), (size_t)(cols), \
                              #got, #want, __FILE__, __LINE__)
static inline void ali_test_floats_identical(const float *a, const float *b, size_t rows, size_t cols,
                                             const char *na, const char *nb, const char *file, int line)
{
    for (size_t i = 0; i < rows * cols; i++) {
        uint32_t x, y;
        memcpy(&x, a + i, 4);
        memcpy(&y, b + i, 4);
        if (x != y) {
            print_error("%s:%d: %s and %s (%zu x %zu) differ first at [%zu][%zu]: %.9g (0x%08x) vs %.9g (0x%08x)\n",
                        file, line, na, nb, rows, cols, i / cols, i % cols, (double)a[i], x, (double)b[i], y);
            fail();
        }
    }
}

/* Equality of int32 arrays (token ids): on failure prints the first differing index and values. */
#define al_assert_ints_equal(got, want, n) \
    ali_test_ints_equal((const int32_t *)(got), (const int32_t *)(want), (size_t)(n), #got, #want, __FILE__, __LINE__)
static inline void ali_test_ints_equal(const int32_t *a, const int32_t *b, size_t n, const char *na, const char *nb,
                                       const char *file, int line)
{
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i]) {
            print_error("%s:%d: %s and %s (%zu ints) differ first at [%zu]: %d vs %d\n", file, line, na, nb, n, i,
                        (int)a[i], (int)b[i]);
            fail();
        }
}

#endif
