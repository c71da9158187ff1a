/* metrics.c: Prometheus registry: families of labelled series under per-family locks, text format 0.0.4. */
#include "services/router/front/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/utf8.h"

#define ALI_MAX_LABELS 8
#define ALI_MAX_BUCKETS 64
#define ALI_MAX_SERIES 10000

typedef struct ali_series {
    char **labels;     /* [n_labels] */
    double value;      /* counter / gauge */
    double sum;        /* histogram */
    uint64_t count;    /* histogram */
    uint64_t *buckets; /* [n_buckets + 1] non-cumulative, last = +Inf */
} ali_series;

struct al_metric {
    char *name, *help;
    al_metric_type type;
    int n_labels;
    char *label_names[ALI_MAX_LABELS];
    double *bounds; /* [n_buckets] */
    int n_buckets;
    pthread_mutex_t mu;
    ali_series *series;
    int n_series, cap_series;
    struct al_metric *next;
};

struct al_metrics {
    pthread_mutex_t mu;
    al_metric *head, *tail;
};

al_err al_metrics_new(al_metrics **out)
{
    al_metrics *r = calloc(1, sizeof *r);
    if (!r)
        return ali_errf(AL_ENOMEM, "metrics: out of memory");
    pthread_mutex_init(&r->mu, NULL);
    *out = r;
    return AL_OK;
}

static void ali_series_free(const al_metric *m, ali_series *s)
{
    for (int i = 0; s->labels && i < m->n_labels; i++)
        free(s->labels[i]);
    free(s->labels);
    free(s->buckets);
}

static void ali_family_free(al_metric *m)
{
    for (int i = 0; i < m->n_series; i++)
        ali_series_free(m, &m->series[i]);
    free(m->series);
    for (int i = 0; i < m->n_labels; i++)
        free(m->label_names[i]);
    free(m->bounds);
    free(m->name);
    free(m->help);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

void al_metrics_free(al_metrics *r)
{
    if (!r)
        return;
    for (al_metric *m = r->head, *n; m; m = n) {
        n = m->next;
        ali_family_free(m);
    }
    pthread_mutex_destroy(&r->mu);
    free(r);
}

static int ali_name_ok(const char *s, int colon)
{
    if (!s || !*s || (*s >= '0' && *s <= '9'))
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_' ||
              (colon && *s == ':')))
            return 0;
    return 1;
}

static ali_series *ali_find(al_metric *m, const char *const *lv, int create);

static al_err ali_register(al_metrics *r, al_metric_type type, const char *name, const char *help,
                           int n_labels, const char *const *label_names, const double *buckets, int n_buckets,
                           al_metric **out)
{
    *out = NULL;
    if (!ali_name_ok(name, 1))
        return ali_errf(AL_EINVAL, "metrics: invalid metric name '%s'", name ? name : "(null)");
    if (n_labels < 0 || n_labels > ALI_MAX_LABELS || (n_labels && !label_names))
        return ali_errf(AL_EINVAL, "metrics: %s: 0..%d labels", name, ALI_MAX_LABELS);
    for (int i = 0; i < n_labels; i++) {
        const char *l = label_names[i];
        if (!ali_name_ok(l, 0) || !strncmp(l, "__", 2) || (type == AL_METRIC_HISTOGRAM && !strcmp(l, "le")))
            return ali_errf(AL_EINVAL, "metrics: %s: invalid label name '%s'", name, l ? l : "(null)");
        for (int j = 0; j < i; j++)
            if (!strcmp(label_names[j], l))
                return ali_errf(AL_EINVAL, "metrics: %s: label '%s' repeats", name, l);
    }
    if (type == AL_METRIC_HISTOGRAM) {
        if (n_buckets < 1 || n_buckets > ALI_MAX_BUCKETS || !buckets)
            return ali_errf(AL_EINVAL, "metrics: %s: 1..%d buckets", name, ALI_MAX_BUCKETS);
        for (int i = 0; i < n_buckets; i++)
            if (!isfinite(buckets[i]) || (i && buckets[i] <= buckets[i - 1]))
                return ali_errf(AL_EINVAL, "metrics: %s: buckets must be finite and strictly increasing",
                                name);
    }
    al_metric *m = calloc(1, sizeof *m);
    if (!m)
        return ali_errf(AL_ENOMEM, "metrics: out of memory");
    pthread_mutex_init(&m->mu, NULL);
    m->type = type;
    m->name = strdup(name);
    m->help = strdup(help ? help : "");
    int oom = !m->name || !m->help;
    for (int i = 0; i < n_labels && !oom; i++) {
        oom = !(m->label_names[i] = strdup(label_names[i]));
        m->n_labels = i + 1;
    }
    if (type == AL_METRIC_HISTOGRAM && !oom) {
        oom = !(m->bounds = malloc((size_t)n_buckets * sizeof *m->bounds));
        if (!oom) {
            memcpy(m->bounds, buckets, (size_t)n_buckets * sizeof *m->bounds);
            m->n_buckets = n_buckets;
        }
    }
    m->n_labels = n_labels;
    if (!oom && n_labels == 0)
        oom = !ali_find(m, NULL, 1);
    if (oom) {
        ali_family_free(m);
        return ali_errf(AL_ENOMEM, "metrics: out of memory");
    }
    pthread_mutex_lock(&r->mu);
    for (al_metric *o = r->head; o; o = o->next)
        if (!strcmp(o->name, name)) {
            pthread_mutex_unlock(&r->mu);
            ali_family_free(m);
            return ali_errf(AL_EINVAL, "metrics: '%s' is already registered", name);
        }
    if (r->tail)
        r->tail->next = m;
    else
        r->head = m;
    r->tail = m;
    pthread_mutex_unlock(&r->mu);
    *out = m;
    return AL_OK;
}

al_err al_metrics_counter(al_metrics *r, const char *name, const char *help, int n_labels,
                          const char *const *label_names, al_metric **out)
{
    return ali_register(r, AL_METRIC_COUNTER, name, help, n_labels, label_names, NULL, 0, out);
}

al_err al_metrics_gauge(al_metrics *r, const char *name, const char *help, int n_labels,
                        const char *const *label_names, al_metric **out)
{
    return ali_register(r, AL_METRIC_GAUGE, name, help, n_labels, label_names, NULL, 0, out);
}

al_err al_metrics_histogram(al_metrics *r, const char *name, const char *help, int n_labels,
                            const char *const *label_names, const double *buckets, int n_buckets,
                            al_metric **out)
{
    return ali_register(r, AL_METRIC_HISTOGRAM, name, help, n_labels, label_names, buckets, n_buckets, out);
}

/* The series for label values lv (created when asked); called with m->mu held. Ill-formed UTF-8
 * in a value is replaced by U+FFFD (Prometheus label values are UTF-8). */
static ali_series *ali_find(al_metric *m, const char *const *lv, int create)
{
    for (int j = 0; lv && j < m->n_labels; j++) {
        size_t n = lv[j] ? strlen(lv[j]) : 0;
        if (al_utf8_check(lv[j] ? lv[j] : "", n) == n)
            continue;
        const char *fixed[ALI_MAX_LABELS] = {0};
        char *own[ALI_MAX_LABELS] = {0};
        int oom = 0;
        for (int k = 0; k < m->n_labels && !oom; k++) {
            size_t rl;
            fixed[k] = lv[k];
            if (lv[k] && al_utf8_check(lv[k], strlen(lv[k])) != strlen(lv[k])) {
                oom = al_utf8_repair(lv[k], strlen(lv[k]), &own[k], &rl) != AL_OK;
                fixed[k] = own[k];
            }
        }
        ali_series *s = oom ? NULL : ali_find(m, fixed, create);
        for (int k = 0; k < m->n_labels; k++)
            free(own[k]);
        return s;
    }
    for (int i = 0; i < m->n_series; i++) {
        ali_series *s = &m->series[i];
        int eq = 1;
        for (int j = 0; j < m->n_labels && eq; j++)
            eq = !strcmp(s->labels[j], lv && lv[j] ? lv[j] : "");
        if (eq)
            return s;
    }
    if (!create || m->n_series >= ALI_MAX_SERIES)
        return NULL;
    if (m->n_series == m->cap_series) {
        int nc = m->cap_series ? m->cap_series * 2 : 4;
        ali_series *ns = realloc(m->series, (size_t)nc * sizeof *ns);
        if (!ns)
            return NULL;
        m->series = ns;
        m->cap_series = nc;
    }
    ali_series s = {0};
    s.labels = calloc((size_t)m->n_labels + 1, sizeof *s.labels);
    int oom = !s.labels;
    for (int j = 0; j < m->n_labels && !oom; j++)
        oom = !(s.labels[j] = strdup(lv && lv[j] ? lv[j] : ""));
    if (!oom && m->type == AL_METRIC_HISTOGRAM)
        oom = !(s.buckets = calloc((size_t)m->n_buckets + 1, sizeof *s.buckets));
    if (oom) {
        ali_series_free(m, &s);
        return NULL;
    }
    m->series[m->n_series] = s;
    return &m->series[m->n_series++];
}

void al_metric_add(al_metric *m, const char *const *labels, double v)
{
    if (!m || isnan(v) || m->type == AL_METRIC_HISTOGRAM || (m->type == AL_METRIC_COUNTER && v < 0))
        return;
    pthread_mutex_lock(&m->mu);
    ali_series *s = ali_find(m, labels, 1);
    if (s)
        s->value += v;
    pthread_mutex_unlock(&m->mu);
}

void al_metric_inc(al_metric *m, const char *const *labels)
{
    al_metric_add(m, labels, 1);
}

void al_metric_set(al_metric *m, const char *const *labels, double v)
{
    if (!m || isnan(v) || m->type != AL_METRIC_GAUGE)
        return;
    pthread_mutex_lock(&m->mu);
    ali_series *s = ali_find(m, labels, 1);
    if (s)
        s->value = v;
    pthread_mutex_unlock(&m->mu);
}

void al_metric_observe(al_metric *m, const char *const *labels, double v)
{
    if (!m || isnan(v) || m->type != AL_METRIC_HISTOGRAM)
        return;
    int b = 0;
    while (b < m->n_buckets && v > m->bounds[b])
        b++;
    pthread_mutex_lock(&m->mu);
    ali_series *s = ali_find(m, labels, 1);
    if (s) {
        s->buckets[b]++;
        s->count++;
        s->sum += v;
    }
    pthread_mutex_unlock(&m->mu);
}

void al_metric_touch(al_metric *m, const char *const *labels)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->mu);
    ali_find(m, labels, 1);
    pthread_mutex_unlock(&m->mu);
}

double al_metric_value(al_metric *m, const char *const *labels)
{
    if (!m)
        return 0;
    pthread_mutex_lock(&m->mu);
    ali_series *s = ali_find(m, labels, 0);
    double v = !s ? 0 : m->type == AL_METRIC_HISTOGRAM ? (double)s->count : s->value;
    pthread_mutex_unlock(&m->mu);
    return v;
}

/* ---------------------------------------------------------------- rendering */

/* Shortest text that reads back as v (Go's ParseFloat accepts it); +Inf, -Inf, NaN. */
static void ali_num(FILE *f, double v)
{
    if (isnan(v)) {
        fputs("NaN", f);
        return;
    }
    if (isinf(v)) {
        fputs(v > 0 ? "+Inf" : "-Inf", f);
        return;
    }
    char b[40];
    if (v == floor(v) && fabs(v) < 1e15) {
        fprintf(f, "%.0f", v == 0 ? 0.0 : v); /* no "-0" */
        return;
    }
    for (int p = 1; p <= 17; p++) {
        snprintf(b, sizeof b, "%.*g", p, v);
        if (strtod(b, NULL) == v)
            break;
    }
    fputs(b, f);
}

static void ali_escape(FILE *f, const char *s, int quote)
{
    for (; *s; s++) {
        if (*s == '\\')
            fputs("\\\\", f);
        else if (*s == '\n')
            fputs("\\n", f);
        else if (quote && *s == '"')
            fputs("\\\"", f);
        else
            fputc(*s, f);
    }
}

/* {a="x",b="y"[,le="..."]} or nothing. */
static void ali_labels(FILE *f, const al_metric *m, const ali_series *s, const double *le)
{
    if (!m->n_labels && !le)
        return;
    fputc('{', f);
    for (int j = 0; j < m->n_labels; j++) {
        fprintf(f, "%s%s=\"", j ? "," : "", m->label_names[j]);
        ali_escape(f, s->labels[j], 1);
        fputc('"', f);
    }
    if (le) {
        fputs(m->n_labels ? ",le=\"" : "le=\"", f);
        ali_num(f, *le);
        fputc('"', f);
    }
    fputc('}', f);
}

static void ali_render_family(FILE *f, al_metric *m)
{
    static const char *const tn[] = {"counter", "gauge", "histogram"};
    fprintf(f, "# HELP %s ", m->name);
    ali_escape(f, m->help, 0);
    fprintf(f, "\n# TYPE %s %s\n", m->name, tn[m->type]);
    pthread_mutex_lock(&m->mu);
    for (int i = 0; i < m->n_series; i++) {
        const ali_series *s = &m->series[i];
        if (m->type != AL_METRIC_HISTOGRAM) {
            fputs(m->name, f);
            ali_labels(f, m, s, NULL);
            fputc(' ', f);
            ali_num(f, s->value);
            fputc('\n', f);
            continue;
        }
        uint64_t cum = 0;
        for (int b = 0; b <= m->n_buckets; b++) {
            double le = b < m->n_buckets ? m->bounds[b] : INFINITY;
            cum += s->buckets[b];
            fprintf(f, "%s_bucket", m->name);
            ali_labels(f, m, s, &le);
            fprintf(f, " %llu\n", (unsigned long long)cum);
        }
        fprintf(f, "%s_sum", m->name);
        ali_labels(f, m, s, NULL);
        fputc(' ', f);
        ali_num(f, s->sum);
        fprintf(f, "\n%s_count", m->name);
        ali_labels(f, m, s, NULL);
        fprintf(f, " %llu\n", (unsigned long long)s->count);
    }
    pthread_mutex_unlock(&m->mu);
}

al_err al_metrics_render_registry(al_metrics *r, char **out, size_t *len)
{
    *out = NULL;
    if (len)
        *len = 0;
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    if (!f)
        return ali_errf(AL_ENOMEM, "metrics: out of memory");
    pthread_mutex_lock(&r->mu);
    for (al_metric *m = r->head; m; m = m->next)
        ali_render_family(f, m);
    pthread_mutex_unlock(&r->mu);
    int bad = ferror(f);
    if (fclose(f) != 0 || bad || !buf) {
        free(buf);
        return ali_errf(AL_ENOMEM, "metrics: out of memory");
    }
    *out = buf;
    if (len)
        *len = n;
    return AL_OK;
}

/* ---------------------------------------------------------------- alora's families */

static const double ali_ttft_b[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
static const double ali_itl_b[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1};
static const double ali_intr_b[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};

al_err al_metrics_alora_register(al_metrics *r, al_alora_metrics *o)
{
    static const char *const endpoint_code[] = {"endpoint", "code"}, *const code[] = {"code"},
                             *const intrinsic[] = {"intrinsic"}, *const state[] = {"state"};
    memset(o, 0, sizeof *o);
    AL_TRY(al_metrics_counter(r, "alora_requests_total", "HTTP requests served, by endpoint and status code.",
                              2, endpoint_code, &o->requests));
    AL_TRY(al_metrics_counter(r, "alora_errors_total", "Requests that failed, by error code.", 1, code,
                              &o->errors));
    AL_TRY(al_metrics_histogram(r, "alora_ttft_seconds", "Time to first token.", 0, NULL, ali_ttft_b,
                                (int)(sizeof ali_ttft_b / sizeof *ali_ttft_b), &o->ttft));
    AL_TRY(al_metrics_histogram(r, "alora_inter_token_seconds", "Time between consecutive streamed tokens.",
                                0, NULL, ali_itl_b, (int)(sizeof ali_itl_b / sizeof *ali_itl_b),
                                &o->inter_token));
    AL_TRY(al_metrics_histogram(r, "alora_intrinsic_latency_seconds",
                                "End-to-end intrinsic invocation latency.", 1, intrinsic, ali_intr_b,
                                (int)(sizeof ali_intr_b / sizeof *ali_intr_b), &o->intrinsic_latency));
    AL_TRY(al_metrics_counter(r, "alora_prefix_cache_hit_tokens_total",
                              "Prompt tokens whose KV came from the base prefix cache.", 0, NULL,
                              &o->prefix_hit_tokens));
    AL_TRY(al_metrics_gauge(r, "alora_kv_blocks", "Base KV pool blocks, by state.", 1, state, &o->kv_blocks));
    AL_TRY(al_metrics_gauge(r, "alora_leases", "Base KV leases currently held.", 0, NULL, &o->leases));
    AL_TRY(al_metrics_gauge(r, "alora_workers", "Registered intrinsic workers, by state.", 1, state,
                            &o->workers));
    AL_TRY(al_metrics_gauge(r, "alora_queue_depth", "Requests waiting in the router queue, by intrinsic.", 1,
                            intrinsic, &o->queue_depth));
    al_metric_touch(o->kv_blocks, (const char *[]){"used"});
    al_metric_touch(o->kv_blocks, (const char *[]){"free"});
    return AL_OK;
}

static al_metrics *ali_default;
static al_alora_metrics ali_alora;
static pthread_once_t ali_once = PTHREAD_ONCE_INIT;

static void ali_default_init(void)
{
    al_metrics *r = NULL;
    if (al_metrics_new(&r) != AL_OK)
        return;
    if (al_metrics_alora_register(r, &ali_alora) != AL_OK) {
        al_metrics_free(r);
        memset(&ali_alora, 0, sizeof ali_alora);
        return;
    }
    ali_default = r;
}

al_metrics *al_metrics_default(void)
{
    pthread_once(&ali_once, ali_default_init);
    return ali_default;
}

const al_alora_metrics *al_metrics_alora(void)
{
    pthread_once(&ali_once, ali_default_init);
    return &ali_alora;
}

al_err al_metrics_render(char **out, size_t *len)
{
    al_metrics *r = al_metrics_default();
    if (!r)
        return ali_errf(AL_ENOMEM, "metrics: out of memory");
    return al_metrics_render_registry(r, out, len);
}
