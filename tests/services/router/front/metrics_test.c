/* metrics_test.c: Prometheus registry: exact text format, escaping, misuse, concurrency, promtool check. */
#include "al_test.h"

#include <math.h>
#include <pthread.h>

#include "services/router/front/metrics.h"

static char *render(al_metrics *r)
{
    char *s;
    size_t n;
    assert_int_equal(al_metrics_render_registry(r, &s, &n), AL_OK);
    assert_int_equal(n, strlen(s));
    return s;
}

static void test_format(void **state)
{
    (void)state;
    al_metrics *r;
    assert_int_equal(al_metrics_new(&r), AL_OK);
    al_metric *c, *g, *h, *hl;
    static const char *const ec[] = {"endpoint", "code"};
    assert_int_equal(al_metrics_counter(r, "t_requests_total", "Requests.\nSecond \\ line.", 2, ec, &c),
                     AL_OK);
    assert_int_equal(al_metrics_gauge(r, "t_leases", "Leases.", 0, NULL, &g), AL_OK);
    static const double b[] = {0.1, 0.5, 1};
    assert_int_equal(al_metrics_histogram(r, "t_latency_seconds", "Latency.", 0, NULL, b, 3, &h), AL_OK);
    static const char *const in[] = {"intrinsic"};
    assert_int_equal(al_metrics_histogram(r, "t_intr_seconds", "Per intrinsic.", 1, in, b, 3, &hl), AL_OK);

    al_metric_inc(c, (const char *[]){"/v1/chat/completions", "200"});
    al_metric_add(c, (const char *[]){"/v1/chat/completions", "200"}, 2);
    al_metric_inc(c, (const char *[]){"a\"b\\c\nd", "400"});
    al_metric_add(c, (const char *[]){"/x", "200"}, -1); /* ignored: counters only go up */
    al_metric_set(g, NULL, 3.5);
    al_metric_add(g, NULL, -1);
    al_metric_observe(h, NULL, 0.05);
    al_metric_observe(h, NULL, 0.5); /* le is inclusive */
    al_metric_observe(h, NULL, 7);
    al_metric_observe(h, NULL, NAN); /* ignored */
    al_metric_observe(hl, (const char *[]){"certainty"}, 0.2);
    al_metric_set(c, NULL, 5);     /* wrong type: ignored */
    al_metric_observe(g, NULL, 1); /* wrong type: ignored */

    char *s = render(r);
    const char *want = "# HELP t_requests_total Requests.\\nSecond \\\\ line.\n"
                       "# TYPE t_requests_total counter\n"
                       "t_requests_total{endpoint=\"/v1/chat/completions\",code=\"200\"} 3\n"
                       "t_requests_total{endpoint=\"a\\\"b\\\\c\\nd\",code=\"400\"} 1\n"
                       "# HELP t_leases Leases.\n"
                       "# TYPE t_leases gauge\n"
                       "t_leases 2.5\n"
                       "# HELP t_latency_seconds Latency.\n"
                       "# TYPE t_latency_seconds histogram\n"
                       "t_latency_seconds_bucket{le=\"0.1\"} 1\n"
                       "t_latency_seconds_bucket{le=\"0.5\"} 2\n"
                       "t_latency_seconds_bucket{le=\"1\"} 2\n"
                       "t_latency_seconds_bucket{le=\"+Inf\"} 3\n"
                       "t_latency_seconds_sum 7.55\n"
                       "t_latency_seconds_count 3\n"
                       "# HELP t_intr_seconds Per intrinsic.\n"
                       "# TYPE t_intr_seconds histogram\n"
                       "t_intr_seconds_bucket{intrinsic=\"certainty\",le=\"0.1\"} 0\n"
                       "t_intr_seconds_bucket{intrinsic=\"certainty\",le=\"0.5\"} 1\n"
                       "t_intr_seconds_bucket{intrinsic=\"certainty\",le=\"1\"} 1\n"
                       "t_intr_seconds_bucket{intrinsic=\"certainty\",le=\"+Inf\"} 1\n"
                       "t_intr_seconds_sum{intrinsic=\"certainty\"} 0.2\n"
                       "t_intr_seconds_count{intrinsic=\"certainty\"} 1\n";
    if (strcmp(s, want))
        fail_msg("got:\n%s\nwant:\n%s", s, want);
    free(s);
    assert_true(al_metric_value(c, (const char *[]){"/v1/chat/completions", "200"}) == 3);
    assert_true(al_metric_value(c, (const char *[]){"/nope", "200"}) == 0);
    assert_true(al_metric_value(h, NULL) == 3);

    /* bad definitions */
    al_metric *x;
    assert_int_equal(al_metrics_gauge(r, "t_leases", "dup", 0, NULL, &x), AL_EINVAL);
    assert_int_equal(al_metrics_gauge(r, "9bad", "", 0, NULL, &x), AL_EINVAL);
    assert_int_equal(al_metrics_gauge(r, "bad-name", "", 0, NULL, &x), AL_EINVAL);
    assert_int_equal(al_metrics_gauge(r, "ok", "", 1, (const char *[]){"__x"}, &x), AL_EINVAL);
    assert_int_equal(al_metrics_gauge(r, "ok", "", 2, (const char *[]){"a", "a"}, &x), AL_EINVAL);
    assert_int_equal(al_metrics_histogram(r, "ok", "", 1, (const char *[]){"le"}, b, 3, &x), AL_EINVAL);
    static const double unsorted[] = {1, 0.5};
    assert_int_equal(al_metrics_histogram(r, "ok", "", 0, NULL, unsorted, 2, &x), AL_EINVAL);
    static const double inf[] = {1, INFINITY};
    assert_int_equal(al_metrics_histogram(r, "ok", "", 0, NULL, inf, 2, &x), AL_EINVAL);
    assert_int_equal(al_metrics_histogram(r, "ok", "", 0, NULL, b, 0, &x), AL_EINVAL);
    al_metrics_free(r);
}

static void test_alora_families(void **state)
{
    (void)state;
    const al_alora_metrics *m = al_metrics_alora();
    assert_non_null(m->requests);
    al_metric_inc(m->requests, (const char *[]){"/v1/completions", "429"});
    al_metric_inc(m->errors, (const char *[]){"overloaded"});
    al_metric_observe(m->ttft, NULL, 0.03);
    al_metric_observe(m->inter_token, NULL, 0.004);
    al_metric_observe(m->intrinsic_latency, (const char *[]){"certainty"}, 0.2);
    al_metric_add(m->prefix_hit_tokens, NULL, 128);
    al_metric_set(m->kv_blocks, (const char *[]){"used"}, 10);
    al_metric_set(m->kv_blocks, (const char *[]){"free"}, 2038);
    al_metric_set(m->leases, NULL, 1);
    al_metric_set(m->workers, (const char *[]){"ready"}, 2);
    al_metric_set(m->queue_depth, (const char *[]){"certainty"}, 0);
    char *s;
    size_t n;
    assert_int_equal(al_metrics_render(&s, &n), AL_OK);
    static const char *const must[] = {
        "# TYPE alora_requests_total counter\n",
        "alora_requests_total{endpoint=\"/v1/completions\",code=\"429\"} 1\n",
        "alora_errors_total{code=\"overloaded\"} 1\n",
        "# TYPE alora_ttft_seconds histogram\n",
        "alora_ttft_seconds_bucket{le=\"0.05\"} 1\n",
        "alora_inter_token_seconds_count 1\n",
        "alora_intrinsic_latency_seconds_bucket{intrinsic=\"certainty\",le=\"+Inf\"} 1\n",
        "alora_prefix_cache_hit_tokens_total 128\n",
        "alora_kv_blocks{state=\"used\"} 10\n",
        "alora_kv_blocks{state=\"free\"} 2038\n",
        "alora_leases 1\n",
        "alora_workers{state=\"ready\"} 2\n",
        "alora_queue_depth{intrinsic=\"certainty\"} 0\n",
    };
    for (size_t i = 0; i < sizeof must / sizeof *must; i++)
        if (!strstr(s, must[i]))
            fail_msg("missing '%s' in:\n%s", must[i], s);
    free(s);
    assert_ptr_equal(al_metrics_alora(), m);
}

typedef struct {
    al_metric *c, *h;
    int id;
} worker_arg;

static void *worker(void *p)
{
    worker_arg *a = p;
    char lab[16];
    snprintf(lab, sizeof lab, "w%d", a->id % 2);
    for (int i = 0; i < 20000; i++) {
        al_metric_inc(a->c, (const char *[]){lab});
        al_metric_observe(a->h, NULL, (i % 10) * 0.1);
    }
    return NULL;
}

static void *renderer(void *p)
{
    for (int i = 0; i < 50; i++) {
        char *s;
        if (al_metrics_render_registry(p, &s, NULL) == AL_OK)
            free(s);
    }
    return NULL;
}

static void test_concurrency(void **state)
{
    (void)state;
    al_metrics *r;
    assert_int_equal(al_metrics_new(&r), AL_OK);
    al_metric *c, *h;
    assert_int_equal(al_metrics_counter(r, "c_total", "c", 1, (const char *[]){"w"}, &c), AL_OK);
    static const double b[] = {0.25, 0.5};
    assert_int_equal(al_metrics_histogram(r, "h_seconds", "h", 0, NULL, b, 2, &h), AL_OK);
    pthread_t th[5];
    worker_arg a[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (worker_arg){c, h, i};
        pthread_create(&th[i], NULL, worker, &a[i]);
    }
    pthread_create(&th[4], NULL, renderer, r);
    for (int i = 0; i < 5; i++)
        pthread_join(th[i], NULL);
    assert_true(al_metric_value(c, (const char *[]){"w0"}) == 40000);
    assert_true(al_metric_value(c, (const char *[]){"w1"}) == 40000);
    assert_true(al_metric_value(h, NULL) == 80000);
    char *s = render(r);
    assert_non_null(strstr(s, "h_seconds_bucket{le=\"0.25\"} 24000\n"));
    assert_non_null(strstr(s, "h_seconds_bucket{le=\"+Inf\"} 80000\n"));
    free(s);
    al_metrics_free(r);
}

/* promtool check metrics (Debian package prometheus) on the alora families, when installed. */
static void test_promtool(void **state)
{
    (void)state;
    if (access("/usr/bin/promtool", X_OK) != 0) {
        fprintf(stderr, "metrics_test: /usr/bin/promtool not installed (apt-get install prometheus): "
                        "promtool check skipped\n");
        skip();
    }
    al_metrics *r;
    al_alora_metrics m;
    assert_int_equal(al_metrics_new(&r), AL_OK);
    assert_int_equal(al_metrics_alora_register(r, &m), AL_OK);
    al_metric_inc(m.requests, (const char *[]){"/v1/chat/completions", "200"});
    al_metric_inc(m.requests, (const char *[]){"weird \"endpoint\"\n\\", "400"});
    al_metric_inc(m.errors, (const char *[]){"invalid_argument"});
    al_metric_inc(m.errors, (const char *[]){"bad \xff utf8"});
    al_metric_inc(m.errors, (const char *[]){"bad \xef\xbf\xbd utf8"}); /* the same series */
    assert_true(al_metric_value(m.errors, (const char *[]){"bad \xff utf8"}) == 2);
    al_metric_observe(m.ttft, NULL, 0.2);
    al_metric_observe(m.inter_token, NULL, 0.01);
    al_metric_observe(m.intrinsic_latency, (const char *[]){"certainty"}, 0.3);
    al_metric_observe(m.intrinsic_latency, (const char *[]){"answerability"}, 100);
    al_metric_add(m.prefix_hit_tokens, NULL, 1e12);
    al_metric_set(m.kv_blocks, (const char *[]){"used"}, 1);
    al_metric_set(m.leases, NULL, 0.1);
    al_metric_set(m.workers, (const char *[]){"ready"}, 2);
    al_metric_set(m.workers, (const char *[]){"down"}, 0);
    al_metric_set(m.queue_depth, (const char *[]){"certainty"}, 3);
    char *s = render(r);
    char *dir = al_test_tmpdir();
    char path[512], cmd[1200];
    snprintf(path, sizeof path, "%s/metrics.txt", dir);
    FILE *f = fopen(path, "w");
    fputs(s, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "/usr/bin/promtool check metrics < '%s' > '%s.out' 2>&1", path, path);
    int rc = system(cmd);
    if (rc != 0) {
        snprintf(cmd, sizeof cmd, "cat '%s.out'", path);
        if (system(cmd) != 0)
            fprintf(stderr, "(no promtool output)\n");
        fail_msg("promtool check metrics failed (rc %d) on:\n%s", rc, s);
    }
    /* an empty registry and a fresh alora registry (labelled families without series) too */
    al_metrics *r2;
    al_alora_metrics m2;
    assert_int_equal(al_metrics_new(&r2), AL_OK);
    assert_int_equal(al_metrics_alora_register(r2, &m2), AL_OK);
    free(s);
    s = render(r2);
    f = fopen(path, "w");
    fputs(s, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "/usr/bin/promtool check metrics < '%s' > '%s.out' 2>&1", path, path);
    rc = system(cmd);
    if (rc != 0) {
        snprintf(cmd, sizeof cmd, "cat '%s.out'", path);
        if (system(cmd) != 0)
            fprintf(stderr, "(no promtool output)\n");
        fail_msg("promtool check metrics failed (rc %d) on a fresh registry:\n%s", rc, s);
    }
    free(s);
    al_metrics_free(r2);
    al_test_rmrf(dir);
    free(dir);
    al_metrics_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_alora_families),
        cmocka_unit_test(test_concurrency),
        cmocka_unit_test(test_promtool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
