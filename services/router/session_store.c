/* session_store.c: sessions in SQLite (WAL): one row per session with its token history and state. */
#include "services/router/session_store.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <nettle/sha2.h>
#include <sqlite3.h>

#define ROUTER_STORE_VERSION 1

struct router_store {
    sqlite3 *db;
    pthread_mutex_t mu; /* one statement at a time */
    char path[512];
};

static al_err router_store_err(router_store *st, const char *what)
{
    return ali_errf(AL_EIO, "session_db: %s: %s: %s", st->path, what, sqlite3_errmsg(st->db));
}

static al_err router_store_exec(router_store *st, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(st->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        al_err e = ali_errf(AL_EIO, "session_db: %s: %s", st->path, msg ? msg : sqlite3_errmsg(st->db));
        sqlite3_free(msg);
        return e;
    }
    return AL_OK;
}

al_err router_store_open(const char *path, router_store **out)
{
    *out = NULL;
    if (!path || !path[0])
        return ali_errf(AL_EINVAL, "session_db: empty path");
    router_store *st = calloc(1, sizeof *st);
    if (!st)
        return ali_errf(AL_ENOMEM, "session_db: out of memory");
    snprintf(st->path, sizeof st->path, "%s", path);
    pthread_mutex_init(&st->mu, NULL);
    al_err e = AL_OK;
    if (sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL) !=
        SQLITE_OK) {
        e = ali_errf(AL_EIO, "session_db: %s: cannot open: %s", path, st->db ? sqlite3_errmsg(st->db) : "no memory");
        goto fail;
    }
    sqlite3_busy_timeout(st->db, 5000);
    /* journal_mode answers the mode it set: "wal", or what the file is stuck in */
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(st->db, "PRAGMA journal_mode=WAL", -1, &q, NULL) != SQLITE_OK ||
        sqlite3_step(q) != SQLITE_ROW) {
        e = router_store_err(st, "journal_mode");
        sqlite3_finalize(q);
        goto fail;
    }
    const char *mode = (const char *)sqlite3_column_text(q, 0);
    bool wal = mode && !strcmp(mode, "wal");
    sqlite3_finalize(q);
    if (!wal) {
        e = ali_errf(AL_EIO, "session_db: %s: cannot switch to WAL mode (not a database, or on a file system "
                             "without shared memory?)",
                     path);
        goto fail;
    }
    if ((e = router_store_exec(st, "PRAGMA synchronous=NORMAL;"
                                   "CREATE TABLE IF NOT EXISTS sessions ("
                                   " id TEXT PRIMARY KEY, owner TEXT NOT NULL, created REAL NOT NULL,"
                                   " last_used REAL NOT NULL, base_index INTEGER NOT NULL,"
                                   " base_inst TEXT NOT NULL, seq_id INTEGER NOT NULL, tokens BLOB,"
                                   " state TEXT);")) != AL_OK)
        goto fail;
    if (sqlite3_prepare_v2(st->db, "PRAGMA user_version", -1, &q, NULL) != SQLITE_OK ||
        sqlite3_step(q) != SQLITE_ROW) {
        e = router_store_err(st, "user_version");
        sqlite3_finalize(q);
        goto fail;
    }
    int ver = sqlite3_column_int(q, 0);
    sqlite3_finalize(q);
    if (ver == 0) {
        char sql[64];
        snprintf(sql, sizeof sql, "PRAGMA user_version=%d", ROUTER_STORE_VERSION);
        if ((e = router_store_exec(st, sql)) != AL_OK)
            goto fail;
    } else if (ver != ROUTER_STORE_VERSION) {
        e = ali_errf(AL_EFORMAT, "session_db: %s: schema version %d, this router reads %d", path, ver,
                     ROUTER_STORE_VERSION);
        goto fail;
    }
    *out = st;
    return AL_OK;
fail:
    router_store_close(st);
    return e;
}

void router_store_close(router_store *st)
{
    if (!st)
        return;
    if (st->db)
        sqlite3_close(st->db);
    pthread_mutex_destroy(&st->mu);
    free(st);
}

al_err router_store_put(router_store *st, const router_store_row *row)
{
    static const char sql[] =
        "INSERT INTO sessions (id, owner, created, last_used, base_index, base_inst, seq_id, tokens)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT(id) DO UPDATE SET owner = ?2, created = ?3,"
        " last_used = ?4, base_index = ?5, base_inst = ?6, seq_id = ?7, tokens = ?8";
    pthread_mutex_lock(&st->mu);
    sqlite3_stmt *q = NULL;
    al_err e = AL_OK;
    if (sqlite3_prepare_v2(st->db, sql, -1, &q, NULL) != SQLITE_OK) {
        e = router_store_err(st, "put");
        goto out;
    }
    sqlite3_bind_text(q, 1, row->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, row->owner, -1, SQLITE_STATIC);
    sqlite3_bind_double(q, 3, row->created);
    sqlite3_bind_double(q, 4, row->last_used);
    sqlite3_bind_int(q, 5, row->base_index);
    sqlite3_bind_text(q, 6, row->base_inst, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 7, (sqlite3_int64)row->seq_id);
    sqlite3_bind_blob(q, 8, row->n ? (const void *)row->toks : "", (int)(sizeof(int32_t) * (size_t)row->n),
                      SQLITE_STATIC);
    if (sqlite3_step(q) != SQLITE_DONE)
        e = router_store_err(st, "put");
out:
    sqlite3_finalize(q);
    pthread_mutex_unlock(&st->mu);
    return e;
}

/* Runs a one-row statement binding id (?1) and text (?2, may be NULL); *changed: rows changed. */
static al_err router_store_run(router_store *st, const char *sql, const char *id, const char *text, int *changed)
{
    pthread_mutex_lock(&st->mu);
    sqlite3_stmt *q = NULL;
    al_err e = AL_OK;
    if (sqlite3_prepare_v2(st->db, sql, -1, &q, NULL) != SQLITE_OK) {
        e = router_store_err(st, "prepare");
        goto out;
    }
    sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
    if (text)
        sqlite3_bind_text(q, 2, text, -1, SQLITE_STATIC);
    if (sqlite3_step(q) != SQLITE_DONE)
        e = router_store_err(st, "write");
    *changed = sqlite3_changes(st->db);
out:
    sqlite3_finalize(q);
    pthread_mutex_unlock(&st->mu);
    return e;
}

al_err router_store_set_state(router_store *st, const char *id, const char *state)
{
    int n = 0;
    AL_TRY(router_store_run(st, "UPDATE sessions SET state = ?2 WHERE id = ?1", id, state ? state : "", &n));
    return n ? AL_OK : ali_errf(AL_ENOTFOUND, "session_db: no session '%s'", id);
}

al_err router_store_delete(router_store *st, const char *id)
{
    int n = 0;
    return router_store_run(st, "DELETE FROM sessions WHERE id = ?1", id, NULL, &n);
}

al_err router_store_get_state(router_store *st, const char *id, char **state)
{
    *state = NULL;
    pthread_mutex_lock(&st->mu);
    sqlite3_stmt *q = NULL;
    al_err e = AL_OK;
    if (sqlite3_prepare_v2(st->db, "SELECT state FROM sessions WHERE id = ?1", -1, &q, NULL) != SQLITE_OK) {
        e = router_store_err(st, "get");
        goto out;
    }
    sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_DONE) {
        e = ali_errf(AL_ENOTFOUND, "session_db: no session '%s'", id);
    } else if (rc != SQLITE_ROW) {
        e = router_store_err(st, "get");
    } else if (sqlite3_column_type(q, 0) != SQLITE_NULL) {
        const char *s = (const char *)sqlite3_column_text(q, 0);
        if (s && s[0] && !(*state = strdup(s)))
            e = ali_errf(AL_ENOMEM, "session_db: out of memory");
    }
out:
    sqlite3_finalize(q);
    pthread_mutex_unlock(&st->mu);
    return e;
}

static void router_store_text(sqlite3_stmt *q, int col, char *dst, size_t cap)
{
    const char *s = (const char *)sqlite3_column_text(q, col);
    snprintf(dst, cap, "%s", s ? s : "");
}

al_err router_store_each(router_store *st, router_store_fn fn, void *user)
{
    pthread_mutex_lock(&st->mu);
    sqlite3_stmt *q = NULL;
    al_err e = AL_OK;
    if (sqlite3_prepare_v2(st->db,
                           "SELECT id, owner, created, last_used, base_index, base_inst, seq_id, tokens, state"
                           " FROM sessions ORDER BY created, id",
                           -1, &q, NULL) != SQLITE_OK) {
        e = router_store_err(st, "load");
        goto out;
    }
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        router_store_row row = {0};
        router_store_text(q, 0, row.id, sizeof row.id);
        router_store_text(q, 1, row.owner, sizeof row.owner);
        row.created = sqlite3_column_double(q, 2);
        row.last_used = sqlite3_column_double(q, 3);
        row.base_index = sqlite3_column_int(q, 4);
        router_store_text(q, 5, row.base_inst, sizeof row.base_inst);
        row.seq_id = (uint64_t)sqlite3_column_int64(q, 6);
        const void *b = sqlite3_column_blob(q, 7);
        int nb = sqlite3_column_bytes(q, 7);
        if (nb % (int)sizeof(int32_t) || nb < 0) {
            e = ali_errf(AL_EFORMAT, "session_db: %s: session '%s': token history of %d bytes", st->path, row.id, nb);
            break;
        }
        int32_t *toks = NULL;
        if (nb > 0) {
            if (!(toks = malloc((size_t)nb))) {
                e = ali_errf(AL_ENOMEM, "session_db: out of memory");
                break;
            }
            memcpy(toks, b, (size_t)nb);
        }
        row.toks = toks;
        row.n = nb / (int)sizeof(int32_t);
        row.state = sqlite3_column_type(q, 8) == SQLITE_NULL ? NULL : (const char *)sqlite3_column_text(q, 8);
        e = fn(&row, user);
        free(toks);
        if (e != AL_OK)
            break;
    }
    if (e == AL_OK && rc != SQLITE_DONE)
        e = router_store_err(st, "load");
out:
    sqlite3_finalize(q);
    pthread_mutex_unlock(&st->mu);
    return e;
}

al_err router_session_new_id(char out[33])
{
    uint8_t raw[16];
    if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw)
        return ali_errf(AL_EIO, "session id: getrandom: %s", strerror(errno));
    for (int i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", raw[i]);
    return AL_OK;
}

void router_session_owner_of_key(const char *key, char out[65])
{
    struct sha256_ctx c;
    uint8_t d[SHA256_DIGEST_SIZE];
    sha256_init(&c);
    sha256_update(&c, strlen(key), (const uint8_t *)key);
    sha256_digest(&c, sizeof d, d);
    for (int i = 0; i < SHA256_DIGEST_SIZE; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}
