/* stage.c: CLOCK_MONOTONIC stamps of named stages for profiling a call's path across processes. */
#include "common/stage.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

enum { ALI_STAGE_MAX = 1 << 20 }; /* stamps kept per process (the rest are dropped) */

typedef struct ali_stamp {
    const char *name;
    uint64_t ns;
    int tid;
    double val;
} ali_stamp;

static pthread_once_t ali_stage_once = PTHREAD_ONCE_INIT;
static atomic_int ali_stage_on; /* 0 until the environment was read (and then 0 = off) */
static ali_stamp *ali_stamps;
static atomic_uint ali_n_stamps;
static char ali_stage_path[512];

static void ali_stage_dump(void)
{
    FILE *f = fopen(ali_stage_path, "w");
    if (!f)
        return;
    unsigned n = atomic_load(&ali_n_stamps);
    for (unsigned i = 0; i < n && i < ALI_STAGE_MAX; i++)
        fprintf(f, "%s %llu %d %g\n", ali_stamps[i].name, (unsigned long long)ali_stamps[i].ns, ali_stamps[i].tid,
                ali_stamps[i].val);
    fclose(f);
}

static void ali_stage_init(void)
{
    const char *p = getenv("ALORA_STAGES");
    if (!p || !p[0] || !(ali_stamps = calloc(ALI_STAGE_MAX, sizeof *ali_stamps)))
        return;
    snprintf(ali_stage_path, sizeof ali_stage_path, "%s.%d", p, (int)getpid());
    atexit(ali_stage_dump);
    atomic_store(&ali_stage_on, 1);
}

void al_stage(const char *name) { al_stage_val(name, 0); }

void al_stage_val(const char *name, double val)
{
    static _Thread_local bool looked;
    if (!looked) { /* one pthread_once per thread, then a relaxed load per stamp */
        pthread_once(&ali_stage_once, ali_stage_init);
        looked = true;
    }
    if (!atomic_load_explicit(&ali_stage_on, memory_order_relaxed))
        return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    unsigned i = atomic_fetch_add(&ali_n_stamps, 1);
    if (i < ALI_STAGE_MAX)
        ali_stamps[i] = (ali_stamp){name, (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec,
                                    (int)syscall(SYS_gettid), val};
}
