/* session_store_test.c: the SQLite session store: round trip, reopen, WAL, state, delete, ids, owners. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "services/router/session_store.h"

typedef struct seen {
    int n;
    char ids[8][64];
    int32_t ntok[8];
    int32_t tok0[8];
    char state[8][128];
    uint64_t seq[8];
    char inst[8][64];
    char owner[8][65];
} seen;

static al_err collect(const router_store_row *row, void *user)
{
    seen *s = user;
    int i = s->n++;
    snprintf(s->ids[i], sizeof s->ids[i], "%s", row->id);
    snprintf(s->owner[i], sizeof s->owner[i], "%s", row->owner);
    s->ntok[i] = row->n;
    s->tok0[i] = row->n ? row->toks[row->n - 1] : -1;
    snprintf(s->state[i], sizeof s->state[i], "%s", row->state ? row->state : "(null)");
    s->seq[i] = row->seq_id;
    snprintf(s->inst[i], sizeof s->inst[i], "%s", row->base_inst);
    return AL_OK;
}

static void tmp_path(char *buf, size_t cap)
{
    snprintf(buf, cap, "/tmp/alora-store-test-%d.db", (int)getpid());
    char side[600];
    unlink(buf);
    snprintf(side, sizeof side, "%s-wal", buf);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", buf);
    unlink(side);
}

static void test_roundtrip(void **state)
{
    (void)state;
    char path[256];
    tmp_path(path, sizeof path);
    router_store *st;
    assert_int_equal(router_store_open(path, &st), AL_OK);
    int32_t big[3000];
    for (int i = 0; i < 3000; i++)
        big[i] = i * 7;
    router_store_row a = {.id = "aaaa", .owner = "local", .created = 100.5, .last_used = 200.25, .base_index = 1,
                          .base_inst = "inst-1", .seq_id = 1ull << 40, .toks = big, .n = 3000};
    router_store_row b = {.id = "bbbb", .owner = "ff", .created = 150, .last_used = 150, .toks = NULL, .n = 0};
    assert_int_equal(router_store_put(st, &a), AL_OK);
    assert_int_equal(router_store_put(st, &b), AL_OK);
    assert_int_equal(router_store_set_state(st, "aaaa", "{\"messages\":[]}"), AL_OK);
    assert_int_equal(router_store_set_state(st, "nope", "{}"), AL_ENOTFOUND);
    /* an update of the core keeps the state */
    a.n = 2999;
    a.seq_id = 0;
    assert_int_equal(router_store_put(st, &a), AL_OK);
    router_store_close(st);

    /* the file is in WAL mode, as another reader sees it */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(q, 0), "wal");
    sqlite3_finalize(q);
    sqlite3_close(db);

    assert_int_equal(router_store_open(path, &st), AL_OK);
    seen s = {0};
    assert_int_equal(router_store_each(st, collect, &s), AL_OK);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.ids[0], "aaaa"); /* oldest first */
    assert_int_equal(s.ntok[0], 2999);
    assert_int_equal(s.tok0[0], 2998 * 7);
    assert_int_equal(s.seq[0], 0);
    assert_string_equal(s.inst[0], "inst-1");
    assert_string_equal(s.state[0], "{\"messages\":[]}");
    assert_string_equal(s.ids[1], "bbbb");
    assert_string_equal(s.owner[1], "ff");
    assert_int_equal(s.ntok[1], 0);
    assert_string_equal(s.state[1], "(null)");
    char *js = NULL;
    assert_int_equal(router_store_get_state(st, "aaaa", &js), AL_OK);
    assert_string_equal(js, "{\"messages\":[]}");
    free(js);
    assert_int_equal(router_store_get_state(st, "bbbb", &js), AL_OK);
    assert_null(js);
    assert_int_equal(router_store_get_state(st, "zzzz", &js), AL_ENOTFOUND);
    assert_int_equal(router_store_delete(st, "aaaa"), AL_OK);
    memset(&s, 0, sizeof s);
    assert_int_equal(router_store_each(st, collect, &s), AL_OK);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.ids[0], "bbbb");
    router_store_close(st);
    tmp_path(path, sizeof path);
}

static void test_bad_files(void **state)
{
    (void)state;
    router_store *st = NULL;
    assert_int_equal(router_store_open("/nonexistent-dir/x/sessions.db", &st), AL_EIO);
    assert_null(st);
    assert_non_null(strstr(al_errmsg(), "/nonexistent-dir/x/sessions.db"));
    char path[256];
    tmp_path(path, sizeof path);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("this is not a database, just some text that is long enough to be a header......\n", f);
    fclose(f);
    assert_int_not_equal(router_store_open(path, &st), AL_OK);
    assert_null(st);
    assert_non_null(strstr(al_errmsg(), "session_db"));
    tmp_path(path, sizeof path);
}

static void test_ids_and_owners(void **state)
{
    (void)state;
    char a[33], b[33];
    assert_int_equal(router_session_new_id(a), AL_OK);
    assert_int_equal(router_session_new_id(b), AL_OK);
    assert_int_equal(strlen(a), 32);
    assert_int_equal(strspn(a, "0123456789abcdef"), 32);
    assert_string_not_equal(a, b);
    /* FIPS 180-2 test vectors */
    char o[65];
    router_session_owner_of_key("abc", o);
    assert_string_equal(o, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    router_session_owner_of_key("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", o);
    assert_string_equal(o, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_ids_and_owners),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
