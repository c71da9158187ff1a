/* stage.h: CLOCK_MONOTONIC stamps of named stages, kept in memory and written at exit (ALORA_STAGES=PREFIX). */
#ifndef AL_STAGE_H
#define AL_STAGE_H

/* Records (name, now) when the environment variable ALORA_STAGES names a file prefix: the stamps go
 * to PREFIX.<pid> at exit, one "name ns tid value" line each (CLOCK_MONOTONIC, comparable across
 * processes of one host). Off (the default): a thread-local flag and a relaxed load per call. name
 * must be a string literal (kept by pointer). bench/cluster_stages.sh reads them. */
void al_stage(const char *name);
/* The same with a value recorded beside the stamp. */
void al_stage_val(const char *name, double val);

#endif
