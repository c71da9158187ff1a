/* cli_util.h: small helpers shared by the CLI subcommands (argument parsing, int lists). */
#ifndef AL_CLI_UTIL_H
#define AL_CLI_UTIL_H

#include <stdint.h>

#include "common/err.h"

/* Parses "1,2,3" into a malloc'd array. */
al_err cli_parse_int_list(const char *s, int32_t **out, int32_t *n);
/* Strict number parsing: the whole string must be a number within [lo, hi]. */
al_err cli_parse_long(const char *opt, const char *s, long lo, long hi, long *out);
al_err cli_parse_float(const char *opt, const char *s, double lo, double hi, double *out);
/* The value of option argv[*i]: argv[*i + 1], advancing *i; NULL (with a message) when argv[*i] is not
 * one of `known` (space-separated option names that take a value) or has no value after it. */
const char *cli_value(const char *cmd, const char *known, int argc, char **argv, int *i);

/* For a tls+tcp:// url: loads the client certificate from $ALORA_TLS_CA, $ALORA_TLS_CERT and
 * $ALORA_TLS_KEY (al_rpc_tls_setup). AL_OK for other schemes; an error naming what is missing. */
al_err cli_tls_env(const char *url);

/* mkdir -p; 0 on success. */
int cli_mkdirs(const char *dir);

#endif
