/* stage_test.c: ALORA_STAGES stamps: off without the variable (no file); on, every stamp of every
 * thread reaches PREFIX.<pid> at exit, in CLOCK_MONOTONIC order per thread, with its value. */
#include "al_test.h"

#include <pthread.h>
#include <sys/wait.h>
#include <time.h>

#include "common/stage.h"

static void *stamper(void *arg)
{
    for (int i = 0; i < 100; i++)
        al_stage_val("T thread", i);
    return NULL;
}

/* A child process (the stamps are written at its exit) with ALORA_STAGES = prefix (NULL: unset). */
static void run_child(const char *prefix, pid_t *pid_out)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (prefix)
            setenv("ALORA_STAGES", prefix, 1);
        else
            unsetenv("ALORA_STAGES");
        al_stage("A first");
        pthread_t th[3];
        for (int i = 0; i < 3; i++)
            pthread_create(&th[i], NULL, stamper, NULL);
        for (int i = 0; i < 3; i++)
            pthread_join(th[i], NULL);
        al_stage_val("B last", 2.5);
        exit(0);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    *pid_out = pid;
}

static void test_stages(void **state)
{
    char *dir = al_test_tmpdir(), prefix[600], path[700];
    snprintf(prefix, sizeof prefix, "%s/st", dir);
    pid_t pid;
    run_child(NULL, &pid); /* off: no file */
    snprintf(path, sizeof path, "%s.%d", prefix, (int)pid);
    assert_int_not_equal(access(path, F_OK), 0);

    run_child(prefix, &pid);
    snprintf(path, sizeof path, "%s.%d", prefix, (int)pid);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[256];
    int n = 0, n_thread = 0, tids[3] = {0}, next[3] = {0};
    unsigned long long last_ns[3] = {0}, first_ns = 0, b_ns = 0;
    while (fgets(line, sizeof line, f)) {
        char a[32], b[32];
        unsigned long long ns;
        int tid;
        double val;
        assert_int_equal(sscanf(line, "%31s %31s %llu %d %lf", a, b, &ns, &tid, &val), 5);
        n++;
        if (!strcmp(a, "A")) {
            first_ns = ns;
        } else if (!strcmp(a, "B")) {
            b_ns = ns;
            assert_true(val == 2.5);
        } else {
            assert_string_equal(a, "T");
            int k = 0;
            while (k < 3 && tids[k] && tids[k] != tid)
                k++;
            assert_true(k < 3);
            tids[k] = tid;
            assert_true(val == next[k]); /* a thread's stamps in order, with their values */
            next[k]++;
            assert_true(ns >= last_ns[k] && ns >= first_ns);
            last_ns[k] = ns;
            n_thread++;
        }
    }
    fclose(f);
    assert_int_equal(n, 302);
    assert_int_equal(n_thread, 300);
    for (int k = 0; k < 3; k++)
        assert_true(b_ns >= last_ns[k]); /* B after every thread was joined */
    al_test_rmrf(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_stages)};
    return cmocka_run_group_tests_name("common_stage", tests, NULL, NULL);
}
