/* cmd_status.c: `alora status`: every process of the cluster as the router sees it. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/ipc/rpc.h"
#include "tools/cli_util.h"
#include "tools/cmds.h"

/* the options that take a value */
#define STATUS_VALUE_OPTS "--router --base --timeout"

static const char *st_role(alora_Role r)
{
    switch (r) {
    case alora_Role_ROLE_ROUTER: return "router";
    case alora_Role_ROLE_BASE: return "base";
    case alora_Role_ROLE_WORKER: return "worker";
    case alora_Role_ROLE_CLIENT: return "client";
    case alora_Role_ROLE_CLI: return "cli";
    default: return "unknown";
    }
}

static const char *st_health(alora_Health h)
{
    switch (h) {
    case alora_Health_HEALTH_OK: return "ok";
    case alora_Health_HEALTH_STARTING: return "starting";
    case alora_Health_HEALTH_DEGRADED: return "degraded";
    case alora_Health_HEALTH_DRAINING: return "draining";
    case alora_Health_HEALTH_DOWN: return "down";
    default: return "unknown";
    }
}

static void st_usage(FILE *f)
{
    fprintf(f, "usage: alora status --router URL [--json] [--timeout MS]\n"
               "       alora status --base URL [--json] [--timeout MS]\n"
               "Lists every process of the cluster: role, pid, id, base instance, intrinsic, health,\n"
               "leases held, KV blocks used/free (base), active calls, last seen.\n"
               "--base: one base's own counters (BaseStats): KV blocks, leases, sequences and their\n"
               "owners (orphaned, reclaimed, freed), prefix cache, requests.\n"
               "tls+tcp:// URLs take the client certificate from ALORA_TLS_CA / _CERT / _KEY.\n");
}

/* --base: the base's BaseStats as JSON (the reply's field names) or one line per field. */
static int st_base(const char *url, int json, long timeout)
{
    al_rpc_client *c = NULL;
    al_rpc_client_opts co;
    al_rpc_client_opts_default(&co);
    co.connect_wait_ms = 2000;
    al_err e = cli_tls_env(url);
    if (e == AL_OK)
        e = al_rpc_client_open(&c, url, &co);
    alora_BaseStatsReply r;
    al_pbmem m = AL_PBMEM_INIT;
    if (e == AL_OK)
        e = al_rpc_call(c, alora_Method_BASE_STATS, &(alora_Empty){0}, &r, &m, (int)timeout);
    al_pbmem_free(&m);
    al_rpc_client_close(c);
    if (e != AL_OK) {
        fprintf(stderr, "alora status: %s: %s\n", al_strerror(e), al_errmsg());
        return 1;
    }
    const struct {
        const char *k;
        uint64_t v;
    } f[] = {{"kv_blocks_total", r.kv_blocks_total}, {"kv_blocks_used", r.kv_blocks_used},
             {"kv_blocks_free", r.kv_blocks_free}, {"kv_blocks_cached", r.kv_blocks_cached},
             {"leases", r.leases}, {"sequences", r.sequences}, {"seqs_orphaned", r.seqs_orphaned},
             {"seqs_reclaimed", r.seqs_reclaimed}, {"seqs_freed", r.seqs_freed}, {"clients", r.clients},
             {"peers", r.peers}, {"prefix_cache_hits", r.prefix_cache_hits},
             {"prefix_cache_misses", r.prefix_cache_misses}, {"prefix_cache_hit_tokens", r.prefix_cache_hit_tokens},
             {"running", r.running}, {"queued", r.queued}, {"prefill_tokens", r.prefill_tokens},
             {"decode_tokens", r.decode_tokens}, {"requests", r.requests}, {"leases_expired", r.leases_expired},
             {"leases_dropped", r.leases_dropped}, {"steps", r.steps}, {"shared_steps", r.shared_steps},
             {"step_seqs", r.step_seqs}, {"step_rows", r.step_rows}};
    size_t n = sizeof f / sizeof f[0];
    if (json) {
        json_t *o = json_object();
        json_object_set_new(o, "base_instance_id", json_string(r.base_instance_id));
        for (size_t i = 0; i < n; i++)
            json_object_set_new(o, f[i].k, json_integer((json_int_t)f[i].v));
        char *s = json_dumps(o, JSON_COMPACT);
        printf("%s\n", s ? s : "{}");
        free(s);
        json_decref(o);
    } else {
        printf("base_instance_id %s\n", r.base_instance_id);
        for (size_t i = 0; i < n; i++)
            printf("%s %llu\n", f[i].k, (unsigned long long)f[i].v);
    }
    return 0;
}

int cmd_status(int argc, char **argv)
{
    const char *url = NULL, *base = NULL;
    int json = 0;
    long timeout = 10000;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v;
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
            st_usage(stdout);
            return 0;
        } else if (!strcmp(o, "--json")) {
            json = 1;
            continue;
        }
        if (!(v = cli_value("status", STATUS_VALUE_OPTS, argc, argv, &i)))
            return 2;
        if (!strcmp(o, "--router"))
            url = v;
        else if (!strcmp(o, "--base"))
            base = v;
        else if (!strcmp(o, "--timeout")) {
            if (cli_parse_long(o, v, 1, 86400000L, &timeout) != AL_OK) {
                fprintf(stderr, "alora status: %s\n", al_errmsg());
                return 2;
            }
        } else {
            fprintf(stderr, "alora status: unknown option '%s'\n", o);
            st_usage(stderr);
            return 2;
        }
    }
    if (base && !url)
        return st_base(base, json, timeout);
    if (!url) {
        fprintf(stderr, "alora status: --router URL (or --base URL) is required\n");
        return 2;
    }
    al_rpc_client *c = NULL;
    al_rpc_client_opts co;
    al_rpc_client_opts_default(&co);
    co.connect_wait_ms = 2000;
    al_err e = cli_tls_env(url);
    if (e == AL_OK)
        e = al_rpc_client_open(&c, url, &co);
    if (e != AL_OK) {
        fprintf(stderr, "alora status: %s: %s\n", al_strerror(e), al_errmsg());
        return 1;
    }
    alora_Empty q = alora_Empty_init_zero;
    alora_StatusReply *r = calloc(1, sizeof *r);
    al_pbmem m = AL_PBMEM_INIT;
    int rc = 1;
    if (!r)
        goto out;
    if ((e = al_rpc_call(c, alora_Method_ROUTER_STATUS, &q, r, &m, (int)timeout)) != AL_OK) {
        fprintf(stderr, "alora status: %s: %s\n", al_strerror(e), al_errmsg());
        goto out;
    }
    if (json) {
        json_t *o = json_object(), *ps = json_array();
        for (pb_size_t i = 0; i < r->processes_count; i++) {
            const alora_ProcessStatus *p = &r->processes[i];
            json_t *j = json_object();
            json_object_set_new(j, "role", json_string(st_role(p->role)));
            json_object_set_new(j, "pid", json_integer(p->pid));
            json_object_set_new(j, "id", json_string(p->id));
            json_object_set_new(j, "base_instance", json_string(p->base_instance_id));
            json_object_set_new(j, "intrinsic", p->intrinsic[0] ? json_string(p->intrinsic) : json_null());
            json_object_set_new(j, "url", json_string(p->url));
            json_object_set_new(j, "health", json_string(st_health(p->health)));
            json_object_set_new(j, "backend", json_string(p->backend));
            json_object_set_new(j, "leases_held", json_integer(p->leases_held));
            json_object_set_new(j, "kv_blocks_used", json_integer(p->kv_blocks_used));
            json_object_set_new(j, "kv_blocks_free", json_integer(p->kv_blocks_free));
            json_object_set_new(j, "active", json_integer(p->active));
            json_object_set_new(j, "capacity", json_integer(p->capacity));
            json_object_set_new(j, "requests", json_integer((json_int_t)p->requests));
            json_object_set_new(j, "last_seen_ms", json_integer((json_int_t)p->last_seen_ms));
            if (p->role == alora_Role_ROLE_WORKER) { /* batching: steps shared by concurrent invocations */
                json_object_set_new(j, "steps", json_integer((json_int_t)p->steps));
                json_object_set_new(j, "shared_steps", json_integer((json_int_t)p->shared_steps));
                json_object_set_new(j, "step_calls", json_integer((json_int_t)p->step_calls));
                json_object_set_new(j, "step_rows", json_integer((json_int_t)p->step_rows));
            }
            json_array_append_new(ps, j);
        }
        json_object_set_new(o, "processes", ps);
        json_object_set_new(o, "sessions", json_integer(r->sessions));
        json_object_set_new(o, "uptime_ms", json_integer((json_int_t)r->uptime_ms));
        json_object_set_new(o, "kept_leases", json_integer(r->kept_leases));
        json_object_set_new(o, "kept_lease_hits", json_integer((json_int_t)r->kept_lease_hits));
        json_object_set_new(o, "kept_lease_misses", json_integer((json_int_t)r->kept_lease_misses));
        json_object_set_new(o, "fast_calls", json_integer((json_int_t)r->fast_calls));
        char *s = json_dumps(o, JSON_COMPACT);
        printf("%s\n", s);
        free(s);
        json_decref(o);
    } else {
        printf("%-7s %8s  %-24s %-22s %-14s %-9s %-14s %6s %8s %8s %6s %8s\n", "ROLE", "PID", "ID", "BASE",
               "INTRINSIC", "HEALTH", "BACKEND", "LEASES", "KV_USED", "KV_FREE", "ACTIVE", "SEEN_MS");
        for (pb_size_t i = 0; i < r->processes_count; i++) {
            const alora_ProcessStatus *p = &r->processes[i];
            bool base = p->role == alora_Role_ROLE_BASE;
            char used[16] = "-", fr[16] = "-";
            if (base) {
                snprintf(used, sizeof used, "%u", p->kv_blocks_used);
                snprintf(fr, sizeof fr, "%u", p->kv_blocks_free);
            }
            printf("%-7s %8u  %-24.24s %-22.22s %-14.14s %-9s %-14.14s %6u %8s %8s %6u %8llu\n", st_role(p->role),
                   p->pid, p->id, p->base_instance_id[0] ? p->base_instance_id : "-",
                   p->intrinsic[0] ? p->intrinsic : "-", st_health(p->health), p->backend[0] ? p->backend : "-",
                   p->leases_held, used, fr, p->active, (unsigned long long)p->last_seen_ms);
        }
        printf("sessions: %u, router uptime: %.1f s\n", r->sessions, r->uptime_ms / 1e3);
        printf("kept leases: %u (hits %llu, misses %llu), fast-path calls: %llu\n", r->kept_leases,
               (unsigned long long)r->kept_lease_hits, (unsigned long long)r->kept_lease_misses,
               (unsigned long long)r->fast_calls);
    }
    rc = 0;
out:
    al_rpc_client_close(c);
    al_pbmem_free(&m);
    free(r);
    return rc;
}
