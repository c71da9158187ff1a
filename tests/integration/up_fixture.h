/* up_fixture.h: cmocka group setup / teardown shared by the C integration tests that need a real
 * cluster: `alora up` on a tiny model with one intrinsic (tdir, up_pid, router_url). Every child is
 * spawned before the first NNG call. Include once, from a test file. */
#ifndef AL_TEST_UP_FIXTURE_H
#define AL_TEST_UP_FIXTURE_H

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <time.h>

#include "al_test.h"

extern char **environ;

static char *tdir;
static pid_t up_pid;
static char router_url[512];

static int run_wait(char *const argv[])
{
    pid_t pid;
    int st;
    if (posix_spawn(&pid, argv[0], NULL, NULL, argv, environ) != 0 || waitpid(pid, &st, 0) != pid)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int setup(void **state)
{
    const char *bin = al_test_bin();
    char bindir[1024], model[1100], ad[1100], cfg[1100], ready[1100];
    if (access(bin, X_OK) != 0)
        return -1;
    snprintf(bindir, sizeof bindir, "%s", bin);
    char *sl = strrchr(bindir, '/');
    *sl = 0;
    snprintf(ad, sizeof ad, "%s/alora-router", bindir);
    if (access(ad, X_OK) != 0)
        return -1;
    tdir = al_test_tmpdir();
    snprintf(model, sizeof model, "%s/model", tdir);
    snprintf(ad, sizeof ad, "%s/cert", tdir);
    char *mm[] = {(char *)bin, "make-model", "--arch", "llama", "--preset", "tiny", "--seed", "5", model, NULL};
    char *ma[] = {(char *)bin, "make-adapter", "--model", model, "--targets", "q,v", "--rank", "4", "--alpha", "8",
                  "--invocation", "50,51", "--seed", "2", ad, NULL};
    if (run_wait(mm) != 0 || run_wait(ma) != 0)
        return -1;
    snprintf(cfg, sizeof cfg, "%s/c.cfg", tdir);
    snprintf(ready, sizeof ready, "%s/ready", tdir);
    snprintf(router_url, sizeof router_url, "ipc://%s/run/router.ipc", tdir);
    FILE *f = fopen(cfg, "w");
    fprintf(f,
            "run_dir = \"%s/run\";\nbase = { model = \"%s\"; kv_blocks = 128; };\n"
            "worker = { kv_blocks = 32; };\n"
            "intrinsics = ( { name = \"certainty\"; adapter = \"%s\"; replicas = 1; max_tokens = 3; } );\n",
            tdir, model, ad);
    fclose(f);
    char *up[] = {(char *)bin, "up", "-c", cfg, "--ready-file", ready, NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", 1 /* O_WRONLY */, 0);
    int rc = posix_spawn(&up_pid, bin, &fa, NULL, up, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        return -1;
    for (int i = 0; i < 300 && access(ready, R_OK) != 0; i++) {
        struct timespec ts = {0, 100000000L};
        nanosleep(&ts, NULL);
    }
    return access(ready, R_OK) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    if (up_pid > 0) {
        int st;
        kill(up_pid, SIGTERM);
        waitpid(up_pid, &st, 0);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    al_test_rmrf(tdir);
    free(tdir);
    return 0;
}

#endif
