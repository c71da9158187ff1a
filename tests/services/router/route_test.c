/* route_test.c: the router's choice of base for a conversation (router_bases.c with
 * router_affinity.c) on a router with fake bases: new conversations spread, a conversation keeps
 * its base as it grows, the base holding a shared system prompt gets the conversations that start
 * with it until it is loaded ROUTER_AFFINITY_SLACK above the other (then the other caches it too and
 * both share), dead and excluded bases are skipped, a restarted base is forgotten, and the table
 * forgets the least recently used prefixes when full. */
#include "al_test.h"

#include "services/router/router.h"

static router R;

static void setup_router(int n_bases, int kv_blocks)
{
    memset(&R, 0, sizeof R);
    pthread_mutex_init(&R.mu, NULL);
    R.cfg.base.block_size = 16;
    R.cfg.base.kv_blocks = kv_blocks;
    R.n_bases = n_bases;
    R.bases = calloc((size_t)n_bases, sizeof *R.bases);
    assert_non_null(R.bases);
    for (int i = 0; i < n_bases; i++) {
        router_base *b = &R.bases[i];
        b->index = i;
        snprintf(b->id, sizeof b->id, "base%d", i);
        b->seen = 1;
        b->health = alora_Health_HEALTH_OK;
    }
    assert_int_equal(router_affinity_init(&R.aff, (size_t)2 * n_bases * kv_blocks, 16), AL_OK);
}

static void teardown_router(void)
{
    router_affinity_free(&R.aff);
    free(R.bases);
    pthread_mutex_destroy(&R.mu);
}

/* conversation c: 'len' tokens starting with a conversation-specific token run */
static void convo(int32_t *t, int len, int c)
{
    for (int i = 0; i < len; i++)
        t[i] = 1000 + c * 7919 + i * 13;
}

static int route(const int32_t *t, int n, const router_base *excl, bool hold)
{
    router_base *b = router_base_route(&R, t, n, excl);
    if (!b)
        return -1;
    if (!hold)
        router_base_done(&R, b);
    return b->index;
}

static void test_spread_and_stick(void **st)
{
    setup_router(2, 1024);
    int32_t t[600];
    int home[100], count[2] = {0, 0};
    for (int c = 0; c < 100; c++) {
        convo(t, 200, c);
        home[c] = route(t, 200, NULL, false);
        count[home[c]]++;
    }
    /* no conversation shares a prefix with another: ties everywhere, split by rendezvous hash */
    assert_true(count[0] >= 30 && count[1] >= 30);
    /* each conversation, grown well past its first call, goes back to its base */
    for (int c = 0; c < 100; c++) {
        convo(t, 600, c);
        assert_int_equal(route(t, 600, NULL, false), home[c]);
    }
    teardown_router();
}

static void test_shared_system_prompt(void **st)
{
    setup_router(2, 1024);
    int32_t t[1000];
    /* a 640-token system prompt shared by every conversation, then its own 200 tokens */
    for (int i = 0; i < 640; i++)
        t[i] = 7 + i;
    int first = -1;
    for (int c = 0; c < 20; c++) { /* one at a time: the base that holds the prompt takes them all */
        for (int i = 0; i < 200; i++)
            t[640 + i] = 50000 + c * 1000 + i;
        int b = route(t, 840, NULL, false);
        if (first < 0)
            first = b;
        assert_int_equal(b, first);
    }
    /* concurrent: the holder takes ROUTER_AFFINITY_SLACK requests more, then the other base */
    int held[64], nh = 0, other = -1;
    for (int c = 0; c < 40; c++) {
        for (int i = 0; i < 200; i++)
            t[640 + i] = 90000 + c * 1000 + i;
        int b = route(t, 840, NULL, true);
        held[nh++] = b;
        if (b != first) {
            other = c;
            break;
        }
    }
    assert_int_equal(other, ROUTER_AFFINITY_SLACK);
    /* now both hold the prompt: a new conversation goes to the less loaded base */
    for (int i = 0; i < 200; i++)
        t[640 + i] = 123456 + i;
    int b = route(t, 840, NULL, true);
    held[nh++] = b;
    assert_int_equal(b, 1 - first);
    for (int i = 0; i < nh; i++)
        router_base_done(&R, &R.bases[held[i]]);
    assert_int_equal(R.bases[0].inflight, 0);
    assert_int_equal(R.bases[1].inflight, 0);
    teardown_router();
}

static void test_dead_excluded_restarted(void **st)
{
    setup_router(3, 256);
    int32_t t[300];
    convo(t, 300, 5);
    int home = route(t, 300, NULL, false);
    /* excluded (its lease failed): the next base; the conversation then lives there too */
    int alt = route(t, 300, &R.bases[home], false);
    assert_true(alt >= 0 && alt != home);
    /* the home base goes down: the conversation goes where it is also cached */
    R.bases[home].health = alora_Health_HEALTH_DOWN;
    assert_int_equal(route(t, 300, NULL, false), alt);
    /* every base down: NULL with AL_EUNAVAILABLE */
    for (int i = 0; i < 3; i++)
        R.bases[i].health = alora_Health_HEALTH_DOWN;
    assert_null(router_base_route(&R, t, 300, NULL));
    assert_int_equal(al_errmsg()[0] != 0, 1);
    assert_non_null(strstr(al_errmsg(), "no base available"));
    for (int i = 0; i < 3; i++)
        R.bases[i].health = alora_Health_HEALTH_OK;
    /* alt restarts (forgotten): the depth there is 0 */
    router_affinity_forget(&R.aff, alt);
    uint64_t h[32];
    int depth[3];
    int m = router_affinity_hash(&R.aff, t, 300, h, 32);
    assert_int_equal(m, 300 / 16);
    router_affinity_match(&R.aff, h, m, 3, depth);
    assert_int_equal(depth[alt], 0);
    assert_int_equal(depth[home], m);
    /* a prefix of the conversation matches to its own length */
    router_affinity_match(&R.aff, h, 5, 3, depth);
    assert_int_equal(depth[home], 5);
    /* shorter than a block: no hashes, still routed */
    assert_true(route(t, 7, NULL, false) >= 0);
    teardown_router();
}

static void test_table_forgets_lru(void **st)
{
    setup_router(2, 1); /* the smallest table: 4096 slots */
    int32_t t[16 * 64];
    uint64_t h[64];
    int depth[2];
    /* fill it far past its size; the latest conversation is still fully known */
    for (int c = 0; c < 400; c++) {
        convo(t, 16 * 64, c);
        int m = router_affinity_hash(&R.aff, t, 16 * 64, h, 64);
        router_affinity_record(&R.aff, h, m, c % 2);
    }
    convo(t, 16 * 64, 399);
    int m = router_affinity_hash(&R.aff, t, 16 * 64, h, 64);
    router_affinity_match(&R.aff, h, m, 2, depth);
    assert_int_equal(depth[1], 64);
    /* the first one is (mostly) gone */
    convo(t, 16 * 64, 0);
    m = router_affinity_hash(&R.aff, t, 16 * 64, h, 64);
    router_affinity_match(&R.aff, h, m, 2, depth);
    assert_true(depth[0] < 64);
    teardown_router();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spread_and_stick),
        cmocka_unit_test(test_shared_system_prompt),
        cmocka_unit_test(test_dead_excluded_restarted),
        cmocka_unit_test(test_table_forgets_lru),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
