/* supervisor.h: `alora up`'s process supervisor: spawn, log relay, restart with backoff, stop. */
#ifndef AL_SUPERVISOR_H
#define AL_SUPERVISOR_H

#include "services/common/cluster_cfg.h"

typedef struct sup_opts {
    const char *cfg_path;   /* passed to every child as -c */
    const char *bin_dir;    /* where alora-base/-worker/-router live */
    const char *ready_file; /* optional: written (router URL) once the router reports ready */
    int ready_timeout_ms;   /* give up waiting for ready (0 = wait forever) */
} sup_opts;

/* Runs the cluster until SIGINT/SIGTERM; returns the exit code. Spawns every child before its
 * first NNG call; later restarts use posix_spawn (no code runs between fork and exec). */
int sup_run(const al_cluster_cfg *cfg, const sup_opts *o);

#endif
