/* cpset.h: sets of Unicode scalar values as sorted, merged ranges (regex and JSON classes). */
#ifndef ALI_CPSET_H
#define ALI_CPSET_H

#include <stdint.h>

#define ALI_CP_MAX 0x10FFFFu

typedef struct ali_cprange {
    uint32_t lo, hi; /* inclusive */
} ali_cprange;

/* A growable set; `failed` is sticky after an allocation failure (the set is then empty). */
typedef struct ali_cpset {
    ali_cprange *r;
    int32_t n, cap;
    int failed;
} ali_cpset;

void ali_cpset_free(ali_cpset *s);
void ali_cpset_clear(ali_cpset *s);
/* Adds [lo, hi] (any order of calls; ali_cpset_norm sorts and merges). */
void ali_cpset_add(ali_cpset *s, uint32_t lo, uint32_t hi);
void ali_cpset_add_set(ali_cpset *s, const ali_cpset *o);
/* Sorts, merges and removes the surrogates D800-DFFF (never valid in UTF-8). */
void ali_cpset_norm(ali_cpset *s);
/* Complement within the scalar values (normalises first). */
void ali_cpset_negate(ali_cpset *s);
/* Removes [lo, hi] (normalises first). */
void ali_cpset_remove(ali_cpset *s, uint32_t lo, uint32_t hi);
int ali_cpset_has(const ali_cpset *s, uint32_t c); /* on a normalised set */

/* Adds the classes \d \w \s (ASCII meaning) or their complements (upper-case letter). */
void ali_cpset_add_perl(ali_cpset *s, char cls);

#endif
