/* Prometheus metrics registry: counters, gauges and histograms with labels, rendered in the
 * text exposition format 0.0.4 or in OpenMetrics 1.0 (which alone shows exemplars: the trace
 * of an observation in a histogram bucket). Loop thread only. Label values are given in the order
 * of the label names declared with the family; a series is created on first use and kept. */
#ifndef SK_METRICS_H
#define SK_METRICS_H

#include <stddef.h>

typedef struct sk_metrics sk_metrics; /* registry */
typedef struct sk_metric sk_metric;   /* one family: name, help, type, label names */
typedef struct sk_series sk_series;   /* one labelled series of a family */

sk_metrics *sk_metrics_new(void);
void sk_metrics_free(sk_metrics *r);

/* labels: NULL or a NULL-terminated array of label names. Returns NULL on a bad name (a
 * counter's must end in "_total"; "le" is reserved in histograms). Registering a name again
 * with the same type, labels (and buckets) returns the existing family, otherwise NULL. */
sk_metric *sk_metrics_counter(sk_metrics *r, const char *name, const char *help,
                              const char *const *labels);
sk_metric *sk_metrics_gauge(sk_metrics *r, const char *name, const char *help,
                            const char *const *labels);
/* buckets: ascending upper bounds, +Inf implied. */
sk_metric *sk_metrics_histogram(sk_metrics *r, const char *name, const char *help,
                                const char *const *labels, const double *buckets, size_t nbuckets);

/* values: label values, as many as the family has label names (NULL when it has none).
 * Hot paths look the series up once and keep it. */
sk_series *sk_metric_series(sk_metric *m, const char *const *values);
void sk_series_add(sk_series *s, double v);     /* counters and gauges */
void sk_series_set(sk_series *s, double v);     /* gauges */
void sk_series_observe(sk_series *s, double v); /* histograms */
double sk_series_value(const sk_series *s);     /* counter/gauge value, histogram count */
/* Observes v and keeps, for the bucket it falls in, an exemplar: trace_id (32 lowercase hex
 * digits) and span_id (16, or NULL), replacing the bucket's previous one, so memory stays
 * bounded by one exemplar per bucket. Ids that are not of that form leave the observation
 * without an exemplar. Callers pass the ids of a sampled trace only: an exemplar should lead
 * to a trace the backend has. */
void sk_series_observe_exemplar(sk_series *s, double v, const char *trace_id, const char *span_id);

/* Renders the whole registry in the text format 0.0.4 (no exemplars); returns a malloc'ed
 * NUL-terminated string (NULL on OOM). */
char *sk_metrics_render(const sk_metrics *r, size_t *len);
/* The same in OpenMetrics 1.0 (application/openmetrics-text; version=1.0.0): counter families
 * named without "_total", histogram buckets with their exemplars, "# EOF" at the end. */
char *sk_metrics_render_openmetrics(const sk_metrics *r, size_t *len);

/* Latency buckets in seconds suited to task and call latencies (100 us .. 60 s). */
extern const double sk_metrics_latency_buckets[];
extern const size_t sk_metrics_latency_nbuckets;

#endif
