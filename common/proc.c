/* proc.c: process helpers for the services: stop signals and binding a child to its supervisor. */
#include "common/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

static int ali_sig_pipe[2] = {-1, -1};
static volatile sig_atomic_t ali_sig_seen;

int al_proc_bind_supervisor(void)
{
    signal(SIGPIPE, SIG_IGN);
    const char *sup = getenv("ALORA_SUPERVISOR_PID");
    if (!sup)
        return 0;
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    return getppid() == (pid_t)atol(sup) ? 0 : -1;
}

static void ali_on_signal(int sig)
{
    int saved = errno;
    if (!ali_sig_seen) {
        ali_sig_seen = sig;
        unsigned char b = (unsigned char)sig;
        if (write(ali_sig_pipe[1], &b, 1) < 0) {
            /* nothing to do: the flag is set */
        }
    }
    errno = saved;
}

int al_proc_catch_signals(void)
{
    if (ali_sig_pipe[0] < 0 && pipe2(ali_sig_pipe, O_CLOEXEC) != 0)
        return -1;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = ali_on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    int sigs[] = {SIGINT, SIGTERM, SIGUSR1};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        if (sigaction(sigs[i], &sa, NULL) != 0)
            return -1;
    return 0;
}

int al_proc_wait_signal(void)
{
    unsigned char b = 0;
    while (!ali_sig_seen) {
        ssize_t n = read(ali_sig_pipe[0], &b, 1);
        if (n == 1 || (n < 0 && errno != EINTR))
            break;
    }
    /* a shutdown that hangs must not outlive its deadline: SIGALRM (default action) ends the
     * process, also when no supervisor is left to escalate (alora up killed with -9) */
    signal(SIGALRM, SIG_DFL);
    alarm(AL_PROC_SHUTDOWN_LIMIT_S);
    return ali_sig_seen ? (int)ali_sig_seen : (int)b;
}
