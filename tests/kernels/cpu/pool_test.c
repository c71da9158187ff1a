/* pool_test.c: the CPU ops' thread pool: every task of a job runs exactly once, and resizing the
 * pool right after it started helpers (thread count changed between back-to-back jobs) neither
 * hangs nor loses a job (a helper that first ran after a stop used to miss it: pthread_join hung). */
#include "al_test.h"

#include <signal.h>
#include <stdatomic.h>
#include <unistd.h>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/kernels.h"

enum { N_TASKS = 97 };

static _Atomic int ran[N_TASKS];

static void count_task(void *ctx, int task)
{
    (void)ctx;
    atomic_fetch_add(&ran[task], 1);
}

static void run_job(int threads)
{
    al_cpu_set_threads(threads);
    for (int t = 0; t < N_TASKS; t++)
        atomic_store(&ran[t], 0);
    ali_par_run(N_TASKS, count_task, NULL);
    for (int t = 0; t < N_TASKS; t++)
        if (atomic_load(&ran[t]) != 1)
            fail_msg("threads %d: task %d ran %d times", threads, t, atomic_load(&ran[t]));
}

static void test_every_task_once(void **state)
{
    (void)state;
    for (int i = 0; i < 50; i++)
        run_job(4);
}

static void test_resize_back_to_back(void **state)
{
    (void)state;
    alarm(120); /* a missed stop hangs in pthread_join: fail instead of hanging ctest */
    static const int seq[] = {3, 2, 5, 1, 4, 2, 6, 3};
    for (int i = 0; i < 400; i++)
        run_job(seq[i % 8]);
    alarm(0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_task_once),
        cmocka_unit_test(test_resize_back_to_back),
    };
    return cmocka_run_group_tests_name("kernels_cpu_pool", tests, NULL, NULL);
}
