/* metrics.h: a small thread-safe Prometheus registry (counters, gauges, histograms with labels) and text
 * rendering. */
#ifndef AL_METRICS_H
#define AL_METRICS_H

#include <stddef.h>

#include "common/err.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct al_metrics al_metrics; /* a registry */
typedef struct al_metric al_metric;   /* one family: name, help, type, label names, series */

typedef enum al_metric_type { AL_METRIC_COUNTER, AL_METRIC_GAUGE, AL_METRIC_HISTOGRAM } al_metric_type;

al_err al_metrics_new(al_metrics **out);
void al_metrics_free(al_metrics *r);

/* Registers a family. name: [a-zA-Z_:][a-zA-Z0-9_:]*, unique in the registry; label names
 * [a-zA-Z_][a-zA-Z0-9_]* (not "__*", not "le" for histograms), at most 8. Histogram buckets are
 * finite, strictly increasing upper bounds (+Inf is implied), at most 64. A family without labels
 * always renders one series (0 until changed); a labelled one renders the label sets seen so far.
 * The family lives as long as the registry. AL_EINVAL on a bad or duplicate definition. */
al_err al_metrics_counter(al_metrics *r, const char *name, const char *help, int n_labels,
                          const char *const *label_names, al_metric **out);
al_err al_metrics_gauge(al_metrics *r, const char *name, const char *help, int n_labels,
                        const char *const *label_names, al_metric **out);
al_err al_metrics_histogram(al_metrics *r, const char *name, const char *help, int n_labels,
                            const char *const *label_names, const double *buckets, int n_buckets,
                            al_metric **out);

/* Updates. labels: the family's n_labels values in order (NULL when it has none; a NULL value
 * is ""). Thread-safe. Misuse (wrong type, negative counter increment, NaN) is ignored; so is a new
 * label set beyond 10000 per family (cardinality guard) or when memory runs out. */
void al_metric_add(al_metric *m, const char *const *labels, double v);     /* counter (v >= 0) or gauge */
void al_metric_inc(al_metric *m, const char *const *labels);               /* add 1 */
void al_metric_set(al_metric *m, const char *const *labels, double v);     /* gauge */
void al_metric_observe(al_metric *m, const char *const *labels, double v); /* histogram */
/* Creates the series (at 0) so that it renders before its first update. */
void al_metric_touch(al_metric *m, const char *const *labels);
/* Current value (counter / gauge) or observation count (histogram); 0 for an unknown series. */
double al_metric_value(al_metric *m, const char *const *labels);

/* Text exposition format 0.0.4 (Content-Type: text/plain; version=0.0.4): # HELP / # TYPE lines,
 * label values escaped (\\, \", \n), histograms as cumulative _bucket{le=".."} incl. "+Inf", _sum,
 * _count. *out is malloc'd and NUL-terminated. */
al_err al_metrics_render_registry(al_metrics *r, char **out, size_t *len);

/* ---- the process-wide registry with alora's families ---- */
typedef struct al_alora_metrics {
    al_metric *requests;          /* alora_requests_total{endpoint,code}             counter */
    al_metric *errors;            /* alora_errors_total{code}                        counter */
    al_metric *ttft;              /* alora_ttft_seconds                              histogram */
    al_metric *inter_token;       /* alora_inter_token_seconds                       histogram */
    al_metric *intrinsic_latency; /* alora_intrinsic_latency_seconds{intrinsic}      histogram */
    al_metric *prefix_hit_tokens; /* alora_prefix_cache_hit_tokens_total             counter */
    al_metric *kv_blocks;         /* alora_kv_blocks{state="used"|"free"}            gauge */
    al_metric *leases;            /* alora_leases                                    gauge */
    al_metric *workers;           /* alora_workers{state}                            gauge */
    al_metric *queue_depth;       /* alora_queue_depth{intrinsic}                    gauge */
} al_alora_metrics;

/* Registers alora's families in r (tests use a fresh registry). */
al_err al_metrics_alora_register(al_metrics *r, al_alora_metrics *out);
/* The process-wide registry (created with alora's families on first use; NULL if out of memory). */
al_metrics *al_metrics_default(void);
const al_alora_metrics *al_metrics_alora(void);
/* Renders the process-wide registry. */
al_err al_metrics_render(char **out, size_t *len);

#ifdef __cplusplus
}
#endif
#endif
