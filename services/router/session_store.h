/* session_store.h: the router's durable session store (SQLite, WAL) and session identities. */
#ifndef ROUTER_SESSION_STORE_H
#define ROUTER_SESSION_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef struct router_store router_store;

/* One session as stored. Token history and HTTP-side state (JSON text) travel with it. */
typedef struct router_store_row {
    char id[64];
    char owner[65];        /* hex SHA-256 of the API key, or "local" */
    double created;        /* unix seconds */
    double last_used;      /* unix seconds */
    int base_index;        /* base instance it lives on */
    char base_inst[64];    /* that base's instance id when seq_id was created ("" = none) */
    uint64_t seq_id;       /* base sequence (0 = not resident: rebuild from toks) */
    const int32_t *toks;   /* [n] the tokens the base sequence holds */
    int32_t n;
    const char *state;     /* HTTP-side state (messages, documents, ...) as JSON; NULL = none */
} router_store_row;

/* Opens (creating it and its schema when absent) the store at path, in WAL mode. */
al_err router_store_open(const char *path, router_store **out);
void router_store_close(router_store *st);
/* Inserts or replaces the session's core fields (everything but state, which is kept). */
al_err router_store_put(router_store *st, const router_store_row *row);
/* Sets the HTTP-side state of an existing session. */
al_err router_store_set_state(router_store *st, const char *id, const char *state);
/* The state of session id (malloc'd; *state = NULL when the session has none). AL_ENOTFOUND: no row. */
al_err router_store_get_state(router_store *st, const char *id, char **state);
al_err router_store_delete(router_store *st, const char *id);
/* Calls fn for every stored session (oldest first); an error from fn stops the walk and is returned.
 * The row's pointers are valid during the call only. */
typedef al_err (*router_store_fn)(const router_store_row *row, void *user);
al_err router_store_each(router_store *st, router_store_fn fn, void *user);

/* A new session id: 128 random bits (getrandom) as 32 lowercase hex characters. */
al_err router_session_new_id(char out[33]);
/* The owner of sessions made with API key `key`: hex SHA-256 of it (64 characters + NUL). */
void router_session_owner_of_key(const char *key, char out[65]);

#endif
