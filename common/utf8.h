/* utf8.h: UTF-8 validation, decoding and U+FFFD repair (maximal-subpart rule, as Python/Rust). */
#ifndef AL_UTF8_H
#define AL_UTF8_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* Decodes one well-formed character at s[0..n). Returns its length (1..4) and sets *cp, or
 * returns 0 when s does not start with a well-formed character; then *bad (if not NULL) is the
 * length of the maximal ill-formed subpart (>= 1) that one U+FFFD replaces. n must be > 0. */
int al_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp, int *bad);

/* Encodes cp into out (4 bytes room); returns the length. */
int al_utf8_encode(uint32_t cp, char *out);

/* Offset of the first ill-formed byte, or n when s is valid UTF-8. */
size_t al_utf8_check(const char *s, size_t n);

/* Copies s with every maximal ill-formed subpart replaced by U+FFFD (what Python's
 * bytes.decode('utf-8', 'replace') and Rust's String::from_utf8_lossy do). NUL-terminated. */
al_err al_utf8_repair(const char *s, size_t n, char **out, size_t *out_len);

/* Length of the longest prefix of s that does not end inside an incomplete (but so far
 * well-formed) character: the bytes after it may still become a character. */
size_t al_utf8_complete_len(const char *s, size_t n);

#endif
