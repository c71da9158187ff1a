/* utf8.c: UTF-8 validation, decoding and U+FFFD repair (maximal-subpart rule). */
#include "common/utf8.h"

#include <stdlib.h>
#include <string.h>

/* Expected length and the allowed range of the second byte for lead byte b (0 = invalid lead). */
static int ali_utf8_lead(unsigned b, unsigned *lo, unsigned *hi)
{
    *lo = 0x80;
    *hi = 0xBF;
    if (b < 0x80)
        return 1;
    if (b < 0xC2)
        return 0;
    if (b < 0xE0)
        return 2;
    if (b < 0xF0) {
        if (b == 0xE0)
            *lo = 0xA0;
        else if (b == 0xED)
            *hi = 0x9F;
        return 3;
    }
    if (b < 0xF5) {
        if (b == 0xF0)
            *lo = 0x90;
        else if (b == 0xF4)
            *hi = 0x8F;
        return 4;
    }
    return 0;
}

int al_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp, int *bad)
{
    unsigned lo, hi;
    int len = ali_utf8_lead(s[0], &lo, &hi);
    if (len == 1) {
        *cp = s[0];
        return 1;
    }
    if (len == 0) {
        if (bad)
            *bad = 1;
        return 0;
    }
    uint32_t c = s[0] & (0x7F >> len);
    for (int i = 1; i < len; i++) {
        if ((size_t)i >= n || s[i] < lo || s[i] > hi) {
            if (bad)
                *bad = i;
            return 0;
        }
        c = (c << 6) | (s[i] & 0x3F);
        lo = 0x80;
        hi = 0xBF;
    }
    *cp = c;
    return len;
}

int al_utf8_encode(uint32_t cp, char *out)
{
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

size_t al_utf8_check(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        int l = al_utf8_decode(u + i, n - i, &cp, NULL);
        if (!l)
            return i;
        i += (size_t)l;
    }
    return n;
}

al_err al_utf8_repair(const char *s, size_t n, char **out, size_t *out_len)
{
    const unsigned char *u = (const unsigned char *)s;
    /* Worst case: every byte becomes 3 bytes. */
    if (n > (SIZE_MAX - 1) / 3)
        return ali_errf(AL_ERANGE, "utf8: input too large");
    char *o = malloc(n * 3 + 1);
    if (!o)
        return ali_errf(AL_ENOMEM, "utf8: cannot allocate %zu bytes", n * 3 + 1);
    size_t i = 0, k = 0;
    while (i < n) {
        if (u[i] < 0x80) {
            o[k++] = (char)u[i++];
            continue;
        }
        uint32_t cp;
        int bad = 1;
        int l = al_utf8_decode(u + i, n - i, &cp, &bad);
        if (l) {
            memcpy(o + k, s + i, (size_t)l);
            k += (size_t)l;
            i += (size_t)l;
        } else {
            memcpy(o + k, "\xEF\xBF\xBD", 3);
            k += 3;
            i += (size_t)bad;
        }
    }
    o[k] = 0;
    *out = o;
    if (out_len)
        *out_len = k;
    return AL_OK;
}

size_t al_utf8_complete_len(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    /* An incomplete character is at most 3 bytes long: look at the last few lead bytes. */
    size_t start = n > 3 ? n - 3 : 0;
    for (size_t i = n; i > start; i--) {
        unsigned b = u[i - 1];
        if (b < 0x80)
            return n;
        if (b >= 0xC0) {
            uint32_t cp;
            int bad = 0;
            int l = al_utf8_decode(u + i - 1, n - (i - 1), &cp, &bad);
            if (l)
                return n; /* complete */
            /* Incomplete when every byte to the end fits and we ran out of input. */
            if ((size_t)bad == n - (i - 1)) {
                unsigned lo, hi;
                if (ali_utf8_lead(b, &lo, &hi) > (int)(n - (i - 1)))
                    return i - 1;
            }
            return n;
        }
    }
    return n;
}
