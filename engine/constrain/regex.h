/* regex.h: regular expressions (Python / ECMAScript-style syntax) to the constraint syntax tree. */
#ifndef ALI_REGEX_H
#define ALI_REGEX_H

#include <stddef.h>

#include "common/err.h"
#include "engine/constrain/ast.h"

/* Largest {n,m} count accepted. */
#define ALI_REGEX_MAX_COUNT 100000
/* Deepest group nesting accepted. */
#define ALI_REGEX_MAX_DEPTH 200

/* Parses UTF-8 pattern text into a tree that matches whole strings (^ at the start and $ at the
 * end are accepted and ignored). \d \w \s are ASCII; `.` is any character except \n. Errors:
 * AL_EINVAL "regex: <problem> at offset k" for malformed patterns, AL_EUNSUPPORTED naming the
 * construct (backreference, lookaround, inline flags, ...) and its offset. */
al_err ali_regex_parse(ali_arena *a, const char *re, size_t len, const ali_ast **out);

#endif
