/* supervisor.c: `alora up`: spawns base, workers and router, relays their output with a role
 * prefix, restarts crashed children with exponential backoff, stops everything cleanly. */
#include "tools/supervisor.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/ipc/arena.h"
#include "common/ipc/rpc.h"
#include "common/proc.h"
#include "common/util.h"

extern char **environ;

#define SUP_MAX_ARGS 12

typedef struct sup_child {
    char name[200];
    char *argv[SUP_MAX_ARGS];
    int role;            /* 0 base, 1 worker, 2 router */
    int base;            /* base instance (bases, workers) */
    pid_t pid;           /* 0 = not running */
    int fd;              /* read end of its stdout+stderr, -1 = none */
    char buf[4096];
    size_t blen;
    double started;
    double restart_at;   /* > 0: respawn at this time */
    int backoff_ms;
    int restarts;
    bool spawned_once;
} sup_child;

typedef struct sup {
    const al_cluster_cfg *cfg;
    const sup_opts *o;
    sup_child *c;
    int n;
    int sigpipe[2];
    _Atomic bool ready, ready_failed, stop_ready;
    bool fatal; /* a child stopped on its configuration (AL_EXIT_CONFIG): stop, do not restart */
    char router_url[256];
    pid_t *all_pids; /* every pid ever spawned (stale shm reclaim) */
    int n_pids, cap_pids;
} sup;

static volatile sig_atomic_t sup_sig_stop, sup_sig_chld;
static int sup_sig_fd = -1;

static void sup_on_signal(int sig)
{
    int saved = errno;
    if (sig == SIGCHLD)
        sup_sig_chld = 1;
    else
        sup_sig_stop = sig;
    if (sup_sig_fd >= 0) {
        char b = 1;
        ssize_t w = write(sup_sig_fd, &b, 1);
        (void)w;
    }
    errno = saved;
}

static void sup_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sup_log(const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (n > (int)sizeof line - 2)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    ssize_t w = write(2, line, (size_t)n);
    (void)w;
}

/* ---- output relay ------------------------------------------------------------------------------ */

static void sup_emit(sup_child *c, const char *s, size_t n)
{
    char pre[128];
    int pn = snprintf(pre, sizeof pre, "[%s] ", c->name);
    /* one write per line keeps lines of different children apart */
    char *line = malloc((size_t)pn + n + 1);
    if (!line)
        return;
    memcpy(line, pre, (size_t)pn);
    memcpy(line + pn, s, n);
    line[pn + n] = '\n';
    ssize_t w = write(2, line, (size_t)pn + n + 1);
    (void)w;
    free(line);
}

/* Reads what is there; returns false at EOF (the fd is closed). */
static bool sup_drain(sup_child *c)
{
    for (;;) {
        ssize_t r = read(c->fd, c->buf + c->blen, sizeof c->buf - c->blen);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return true;
        if (r <= 0) {
            if (c->blen)
                sup_emit(c, c->buf, c->blen);
            c->blen = 0;
            close(c->fd);
            c->fd = -1;
            return false;
        }
        c->blen += (size_t)r;
        size_t start = 0;
        for (size_t i = 0; i < c->blen; i++)
            if (c->buf[i] == '\n') {
                sup_emit(c, c->buf + start, i - start);
                start = i + 1;
            }
        if (start == 0 && c->blen == sizeof c->buf) { /* a very long line: flush it as is */
            sup_emit(c, c->buf, c->blen);
            c->blen = 0;
        } else if (start) {
            memmove(c->buf, c->buf + start, c->blen - start);
            c->blen -= start;
        }
    }
}

/* ---- spawning ---------------------------------------------------------------------------------- */

static int sup_spawn(sup *s, sup_child *c)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) {
        sup_log("alora up: pipe: %s", strerror(errno));
        return -1;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    posix_spawn_file_actions_adddup2(&fa, p[1], 2);
    posix_spawnattr_t at;
    posix_spawnattr_init(&at);
    sigset_t none, dfl;
    sigemptyset(&none);
    sigemptyset(&dfl);
    sigaddset(&dfl, SIGINT);
    sigaddset(&dfl, SIGTERM);
    sigaddset(&dfl, SIGCHLD);
    sigaddset(&dfl, SIGPIPE);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &dfl);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    pid_t pid;
    int rc = posix_spawn(&pid, c->argv[0], &fa, &at, c->argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    close(p[1]);
    if (rc != 0) {
        close(p[0]);
        sup_log("alora up: cannot start %s (%s): %s", c->name, c->argv[0], strerror(rc));
        return -1;
    }
    fcntl(p[0], F_SETFL, fcntl(p[0], F_GETFL) | O_NONBLOCK);
    if (c->fd >= 0) { /* output of the previous instance not fully read: drop it */
        sup_drain(c);
        if (c->fd >= 0)
            close(c->fd);
    }
    c->fd = p[0];
    c->blen = 0;
    c->pid = pid;
    c->started = al_now();
    c->restart_at = 0;
    if (c->spawned_once)
        c->restarts++;
    c->spawned_once = true;
    if (s->n_pids == s->cap_pids) {
        int cap = s->cap_pids ? s->cap_pids * 2 : 64;
        pid_t *np = realloc(s->all_pids, sizeof(pid_t) * (size_t)cap);
        if (np) {
            s->all_pids = np;
            s->cap_pids = cap;
        }
    }
    if (s->n_pids < s->cap_pids)
        s->all_pids[s->n_pids++] = pid;
    sup_log("alora up: started %s (pid %d)%s", c->name, (int)pid, c->restarts ? " [restart]" : "");
    return 0;
}

/* ---- waiting for the base (no connect: a raw connection that never speaks SP stalls NNG's ipc
 * listener for seconds; no NNG before every child is spawned) ------------------------------------ */

static ino_t sup_sock_inode(const char *url)
{
    struct stat st;
    if (strncmp(url, "ipc://", 6) || stat(url + 6, &st) != 0 || !S_ISSOCK(st.st_mode))
        return 0;
    return st.st_ino;
}

/* The base's ipc socket exists and is not the file that was there before we started it. */
static bool sup_base_listening(const char *url, ino_t before)
{
    if (strncmp(url, "ipc://", 6))
        return true; /* tcp: the workers wait for the base themselves */
    ino_t now = sup_sock_inode(url);
    return now && now != before;
}

/* ---- readiness (NNG; only after every child is spawned) ---------------------------------------- */

static void *sup_ready_main(void *arg)
{
    sup *s = arg;
    al_rpc_client_opts co;
    al_rpc_client_opts_default(&co);
    co.connect_wait_ms = 200;
    al_rpc_client *cli = NULL;
    /* tls+tcp://: alora up dials the router with tls.cert (else the router's own certificate); NNG
     * starts here, after every child is spawned */
    al_cluster_role role = s->cfg->tls.cert ? AL_ROLE_CLI : AL_ROLE_ROUTER;
    if (al_cluster_tls_apply(s->cfg, role) != AL_OK || al_rpc_client_open(&cli, s->router_url, &co) != AL_OK) {
        sup_log("alora up: cannot dial the router %s: %s", s->router_url, al_errmsg());
        atomic_store(&s->ready_failed, true);
        return NULL;
    }
    double t0 = al_now(), last_note = t0;
    char last_detail[128] = "";
    while (!atomic_load(&s->stop_ready)) {
        alora_Empty q = alora_Empty_init_zero;
        alora_HealthReply h;
        al_pbmem m = AL_PBMEM_INIT;
        al_err e = al_rpc_call(cli, alora_Method_ROUTER_HEALTH, &q, &h, &m, 1000);
        al_pbmem_free(&m);
        if (e == AL_OK && h.health == alora_Health_HEALTH_OK) {
            atomic_store(&s->ready, true);
            break;
        }
        if (e == AL_OK)
            snprintf(last_detail, sizeof last_detail, "%s", h.detail);
        if (al_now() - last_note > 10) {
            sup_log("alora up: waiting for the cluster (%s)", e == AL_OK ? last_detail : al_errmsg());
            last_note = al_now();
        }
        if (s->o->ready_timeout_ms > 0 && (al_now() - t0) * 1e3 > s->o->ready_timeout_ms) {
            sup_log("alora up: not ready after %d ms (%s)", s->o->ready_timeout_ms, last_detail);
            atomic_store(&s->ready_failed, true);
            break;
        }
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
    }
    al_rpc_client_close(cli);
    if (atomic_load(&s->ready) && s->sigpipe[1] >= 0) {
        char b = 2;
        ssize_t w = write(s->sigpipe[1], &b, 1);
        (void)w;
    }
    return NULL;
}

/* ---- cleanup ----------------------------------------------------------------------------------- */

static void sup_unlink_ipc(const char *url)
{
    if (url && !strncmp(url, "ipc://", 6))
        unlink(url + 6);
}

static void sup_cleanup(sup *s)
{
    const al_cluster_cfg *cfg = s->cfg;
    sup_unlink_ipc(cfg->router.listen);
    for (int b = 0; b < cfg->base.instances; b++) {
        char url[512];
        if (al_cluster_base_url(cfg, b, url, sizeof url) == AL_OK)
            sup_unlink_ipc(url);
        for (int i = 0; i < cfg->n_intrinsics; i++)
            for (int k = 0; k < cfg->intrinsics[i].replicas; k++)
                if (al_cluster_worker_name(cfg, cfg->intrinsics[i].name, b, k, NULL, 0, url, sizeof url) == AL_OK)
                    sup_unlink_ipc(url);
    }
    /* any other socket left in run_dir */
    DIR *d = cfg->run_dir ? opendir(cfg->run_dir) : NULL;
    if (d) {
        struct dirent *de;
        while ((de = readdir(d))) {
            char p[1024];
            struct stat st;
            snprintf(p, sizeof p, "%s/%s", cfg->run_dir, de->d_name);
            if (lstat(p, &st) == 0 && S_ISSOCK(st.st_mode))
                unlink(p);
        }
        closedir(d);
        rmdir(cfg->run_dir); /* only when empty */
    }
    /* shm segments of our children (their creators are dead now) */
    al_arena_reclaim_stale(NULL);
    int left = 0;
    for (int i = 0; i < s->n_pids; i++) {
        int n = 0;
        if (al_arena_list_ours(NULL, s->all_pids[i], NULL, 0, &n) == AL_OK)
            left += n;
    }
    if (left)
        sup_log("alora up: warning: %d shm segments of our children remain", left);
    if (s->o->ready_file)
        unlink(s->o->ready_file);
}

/* ---- the loop ---------------------------------------------------------------------------------- */

static void sup_reap(sup *s, bool stopping)
{
    int st;
    pid_t pid;
    while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
        for (int i = 0; i < s->n; i++) {
            sup_child *c = &s->c[i];
            if (c->pid != pid)
                continue;
            c->pid = 0;
            char why[64];
            if (WIFEXITED(st))
                snprintf(why, sizeof why, "exited with status %d", WEXITSTATUS(st));
            else
                snprintf(why, sizeof why, "killed by signal %d", WTERMSIG(st));
            if (stopping) {
                sup_log("alora up: %s (pid %d) %s", c->name, (int)pid, why);
                break;
            }
            if (WIFEXITED(st) && WEXITSTATUS(st) == AL_EXIT_CONFIG) {
                sup_log("alora up: %s (pid %d) stopped on a configuration error (its message is above); not "
                        "restarting it: stopping the cluster", c->name, (int)pid);
                s->fatal = true;
                break;
            }
            /* a crashed base leaves its arenas in /dev/shm: unlink them now (mappings that workers
             * still hold stay valid), or its restart would need the memory twice */
            int left = 0;
            if (al_arena_list_ours(NULL, pid, NULL, 0, &left) == AL_OK && left > 0)
                al_arena_reclaim_stale(NULL);
            int mn = s->cfg->up.backoff_min_ms > 0 ? s->cfg->up.backoff_min_ms : 100;
            int mx = s->cfg->up.backoff_max_ms > 0 ? s->cfg->up.backoff_max_ms : 5000;
            if (al_now() - c->started > 30.0) /* it ran fine for a while: start over */
                c->backoff_ms = 0;
            c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : mn;
            if (c->backoff_ms > mx)
                c->backoff_ms = mx;
            c->restart_at = al_now() + c->backoff_ms / 1e3;
            sup_log("alora up: %s (pid %d) %s; restarting in %d ms", c->name, (int)pid, why, c->backoff_ms);
            break;
        }
    }
}

static int sup_running(const sup *s)
{
    int n = 0;
    for (int i = 0; i < s->n; i++)
        n += s->c[i].pid > 0;
    return n;
}

/* Polls the signal pipe and every child's output for up to timeout_ms. */
static void sup_poll(sup *s, int timeout_ms, bool *ready_evt)
{
    struct pollfd pf[1 + 256];
    int idx[1 + 256];
    int np = 0;
    pf[np].fd = s->sigpipe[0];
    pf[np].events = POLLIN;
    idx[np++] = -1;
    for (int i = 0; i < s->n && np < 257; i++)
        if (s->c[i].fd >= 0) {
            pf[np].fd = s->c[i].fd;
            pf[np].events = POLLIN;
            idx[np++] = i;
        }
    int r = poll(pf, (nfds_t)np, timeout_ms);
    if (r <= 0)
        return;
    for (int k = 0; k < np; k++) {
        if (!pf[k].revents)
            continue;
        if (idx[k] < 0) {
            char b[64];
            ssize_t n;
            while ((n = read(s->sigpipe[0], b, sizeof b)) > 0)
                for (ssize_t j = 0; j < n; j++)
                    if (b[j] == 2)
                        *ready_evt = true;
        } else {
            sup_drain(&s->c[idx[k]]);
        }
    }
}

static bool sup_add(sup *s, const char *name, int role, int base, char *const *args)
{
    sup_child *c = &s->c[s->n++];
    memset(c, 0, sizeof *c);
    c->fd = -1;
    c->role = role;
    c->base = base;
    snprintf(c->name, sizeof c->name, "%s", name);
    for (int i = 0; args[i] && i < SUP_MAX_ARGS - 1; i++)
        if (!(c->argv[i] = strdup(args[i])))
            return false;
    return true;
}

int sup_run(const al_cluster_cfg *cfg, const sup_opts *o)
{
    sup S = {.cfg = cfg, .o = o, .sigpipe = {-1, -1}};
    sup *s = &S;
    int rc = 0;
    char bin[3][1100];
    const char *roles[3] = {"base", "worker", "router"};
    for (int i = 0; i < 3; i++) {
        snprintf(bin[i], sizeof bin[i], "%s/alora-%s", o->bin_dir, roles[i]);
        if (access(bin[i], X_OK) != 0) {
            fprintf(stderr, "alora up: %s: %s (use --bin-dir DIR)\n", bin[i], strerror(errno));
            return 1;
        }
    }
    if (cfg->run_dir && mkdir(cfg->run_dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "alora up: run_dir %s: %s\n", cfg->run_dir, strerror(errno));
        return 1;
    }
    snprintf(s->router_url, sizeof s->router_url, "%s", cfg->router.listen);

    /* children: bases [0, nb), the router, then the workers of every base */
    int nb = cfg->base.instances > 0 ? cfg->base.instances : 1;
    int total = nb + 1;
    for (int i = 0; i < cfg->n_intrinsics; i++)
        total += nb * cfg->intrinsics[i].replicas;
    s->c = calloc((size_t)total, sizeof *s->c);
    if (!s->c)
        return 1;
    char *cpath = (char *)o->cfg_path;
    for (int b = 0; b < nb; b++) {
        char name[32], inst[16];
        if (b)
            snprintf(name, sizeof name, "base-%d", b);
        else
            snprintf(name, sizeof name, "base");
        snprintf(inst, sizeof inst, "%d", b);
        char *a1[] = {bin[0], "-c", cpath, NULL}, *a2[] = {bin[0], "-c", cpath, "--instance", inst, NULL};
        sup_add(s, name, 0, b, b ? a2 : a1);
    }
    {
        char *a[] = {bin[2], "-c", cpath, NULL};
        sup_add(s, "router", 2, -1, a);
    }
    for (int b = 0; b < nb; b++)
        for (int i = 0; i < cfg->n_intrinsics; i++)
            for (int k = 0; k < cfg->intrinsics[i].replicas; k++) {
                char id[160], name[192], rep[16], bs[16];
                if (al_cluster_worker_name(cfg, cfg->intrinsics[i].name, b, k, id, sizeof id, NULL, 0) != AL_OK) {
                    fprintf(stderr, "alora up: %s\n", al_errmsg());
                    return 1;
                }
                snprintf(name, sizeof name, "worker %s", id);
                snprintf(rep, sizeof rep, "%d", k);
                snprintf(bs, sizeof bs, "%d", b);
                char *a1[] = {bin[1], "-c", cpath, "--intrinsic", cfg->intrinsics[i].name, "--replica", rep, NULL};
                char *a2[] = {bin[1], "-c",   cpath, "--intrinsic", cfg->intrinsics[i].name,
                              "--replica", rep, "--base", bs, NULL};
                sup_add(s, name, 1, b, b ? a2 : a1);
            }

    if (pipe2(s->sigpipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        perror("alora up: pipe");
        return 1;
    }
    sup_sig_fd = s->sigpipe[1];
    struct sigaction sa = {.sa_handler = sup_on_signal, .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGCHLD, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    char envpid[32];
    snprintf(envpid, sizeof envpid, "%d", (int)getpid());
    setenv("ALORA_SUPERVISOR_PID", envpid, 1);

    /* Phase 1: bases and router; phase 2 (every base answers): workers. Nothing here uses NNG. */
    char burl[64][320];
    ino_t base_ino[64];
    for (int b = 0; b < nb && b < 64; b++) {
        if (al_cluster_base_url(cfg, b, burl[b], sizeof burl[b]) != AL_OK)
            snprintf(burl[b], sizeof burl[b], "%s", cfg->base.listen);
        base_ino[b] = sup_sock_inode(burl[b]);
    }
    for (int i = 0; i <= nb; i++)
        sup_spawn(s, &s->c[i]);
    double t_base = al_now();
    bool workers_started = false, ready_thread = false, ready_evt = false, printed = false;
    pthread_t rt;
    while (!sup_sig_stop) {
        sup_poll(s, 50, &ready_evt);
        if (sup_sig_chld) {
            sup_sig_chld = 0;
            sup_reap(s, false);
        }
        if (sup_sig_stop)
            break;
        if (s->fatal) {
            rc = AL_EXIT_CONFIG;
            break;
        }
        double now = al_now();
        bool bases_up = true;
        for (int b = 0; b < nb && b < 64; b++)
            bases_up = bases_up && sup_base_listening(burl[b], base_ino[b]);
        if (!workers_started && (bases_up || now - t_base > 120.0)) {
            for (int i = nb + 1; i < s->n; i++)
                sup_spawn(s, &s->c[i]);
            workers_started = true;
            /* every child has been spawned once: the ready poller may use NNG now */
            if (pthread_create(&rt, NULL, sup_ready_main, s) == 0)
                ready_thread = true;
        }
        for (int i = 0; i < s->n; i++) {
            sup_child *c = &s->c[i];
            if (!c->pid && c->restart_at > 0 && now >= c->restart_at && (c->role != 1 || workers_started))
                sup_spawn(s, c);
        }
        if (ready_evt && !printed) {
            printed = true;
            printf("alora up: ready (router %s)\n", s->router_url);
            fflush(stdout);
            if (o->ready_file) {
                char tmp[1100];
                snprintf(tmp, sizeof tmp, "%s.tmp", o->ready_file);
                FILE *f = fopen(tmp, "w");
                if (f) {
                    fprintf(f, "%s\n", s->router_url);
                    fclose(f);
                    rename(tmp, o->ready_file);
                }
            }
        }
        if (atomic_load(&s->ready_failed) && !printed) {
            rc = 1;
            break;
        }
    }
    if (sup_sig_stop)
        sup_log("alora up: signal %d: stopping %d processes", (int)sup_sig_stop, sup_running(s));
    /* Stop: SIGTERM, grace period, SIGKILL. */
    for (int i = 0; i < s->n; i++)
        if (s->c[i].pid > 0)
            kill(s->c[i].pid, SIGTERM);
    int grace = cfg->up.grace_ms > 0 ? cfg->up.grace_ms : 5000;
    double t_stop = al_now();
    while (sup_running(s) && (al_now() - t_stop) * 1e3 < grace) {
        sup_poll(s, 50, &ready_evt);
        sup_reap(s, true);
    }
    for (int i = 0; i < s->n; i++)
        if (s->c[i].pid > 0) {
            sup_log("alora up: %s (pid %d) did not stop in %d ms: SIGKILL", s->c[i].name, (int)s->c[i].pid, grace);
            kill(s->c[i].pid, SIGKILL);
        }
    while (sup_running(s)) {
        int st;
        pid_t pid = waitpid(-1, &st, 0);
        if (pid < 0)
            break;
        for (int i = 0; i < s->n; i++)
            if (s->c[i].pid == pid)
                s->c[i].pid = 0;
    }
    atomic_store(&s->stop_ready, true);
    if (ready_thread)
        pthread_join(rt, NULL);
    for (int i = 0; i < s->n; i++) {
        if (s->c[i].fd >= 0) {
            sup_drain(&s->c[i]);
            if (s->c[i].fd >= 0)
                close(s->c[i].fd);
        }
        for (int k = 0; s->c[i].argv[k]; k++)
            free(s->c[i].argv[k]);
    }
    sup_cleanup(s);
    sup_sig_fd = -1;
    close(s->sigpipe[0]);
    close(s->sigpipe[1]);
    free(s->c);
    free(s->all_pids);
    sup_log("alora up: stopped");
    return rc;
}
