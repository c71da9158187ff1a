/* proc.h: process helpers for the services: stop signals and binding a child to its supervisor. */
#ifndef AL_PROC_H
#define AL_PROC_H

/* Exit status of a service that stopped on its configuration (a bad or missing setting, or a file
 * the config names): restarting it cannot help, so `alora up` stops the cluster and exits non-zero
 * instead of restarting it (sysexits.h's EX_CONFIG). Every other failure exits 1. */
#define AL_EXIT_CONFIG 78

/* Ignores SIGPIPE (logs may go to a supervisor's pipe). Under `alora up` (ALORA_SUPERVISOR_PID
 * set) the process gets SIGTERM when the supervisor dies, even by SIGKILL. Returns -1 when the
 * supervisor is already gone (the caller should exit). */
int al_proc_bind_supervisor(void);

/* Catches SIGINT, SIGTERM and SIGUSR1 with a handler (so a signal delivered to any thread,
 * including threads libraries started before main, never kills the process mid-cleanup), and
 * al_proc_wait_signal blocks until the first one arrives and returns its number. Later signals
 * are ignored: shutdown runs to the end (a supervisor escalates with SIGKILL if it must). */
int al_proc_catch_signals(void);
/* Returns with the first signal and arms a deadline: a shutdown still running after
 * AL_PROC_SHUTDOWN_LIMIT_S seconds is ended by SIGALRM. */
#define AL_PROC_SHUTDOWN_LIMIT_S 30
int al_proc_wait_signal(void);

#endif
