#include "core/metrics.h"
#include "core/text.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef enum { M_COUNTER, M_GAUGE, M_HISTOGRAM } mtype;

/* The trace of one observation (lowercase hex ids), its value and wall-clock time. */
typedef struct sk_exemplar {
    char trace_id[33], span_id[17];
    double value, at;
} sk_exemplar;

struct sk_series {
    sk_series *next;
    sk_metric *family;
    char **values;          /* one per label name */
    double value;           /* counter/gauge value; histogram sum */
    uint64_t count;         /* histogram observations */
    uint64_t *counts;       /* histogram: per bucket (not cumulative), nbuckets + 1 for +Inf */
    sk_exemplar *exemplars; /* histogram: the latest per bucket, allocated on the first one */
};

struct sk_metric {
    sk_metric *next;
    mtype type;
    char *name;
    char *help;
    char **labels;
    size_t nlabels;
    double *buckets;
    size_t nbuckets;
    sk_series *first, *last;
};

struct sk_metrics {
    sk_metric *first, *last;
};

const double sk_metrics_latency_buckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                             0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                             1,      2.5,     5,      10,    30,     60};
const size_t sk_metrics_latency_nbuckets =
    sizeof sk_metrics_latency_buckets / sizeof sk_metrics_latency_buckets[0];

static const char *const type_names[] = {"counter", "gauge", "histogram"};

sk_metrics *sk_metrics_new(void)
{
    return calloc(1, sizeof(sk_metrics));
}

static void free_strv(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

static void series_free(sk_series *s, size_t nlabels)
{
    if (!s)
        return;
    free_strv(s->values, nlabels);
    free(s->counts);
    free(s->exemplars);
    free(s);
}

static void metric_free(sk_metric *m)
{
    if (!m)
        return;
    for (sk_series *s = m->first, *next; s; s = next) {
        next = s->next;
        series_free(s, m->nlabels);
    }
    free(m->name);
    free(m->help);
    free_strv(m->labels, m->nlabels);
    free(m->buckets);
    free(m);
}

void sk_metrics_free(sk_metrics *r)
{
    if (!r)
        return;
    for (sk_metric *m = r->first, *next; m; m = next) {
        next = m->next;
        metric_free(m);
    }
    free(r);
}

static int is_alpha_(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Metric names: [a-zA-Z_:][a-zA-Z0-9_:]* */
static int valid_metric_name(const char *s)
{
    if (!s || !(is_alpha_(s[0]) || s[0] == ':'))
        return 0;
    for (const char *p = s + 1; *p; p++)
        if (!is_alpha_(*p) && !is_digit(*p) && *p != ':')
            return 0;
    return 1;
}

/* Label names: [a-zA-Z_][a-zA-Z0-9_]*, the prefix "__" being reserved. */
static int valid_label_name(const char *s)
{
    if (!s || !is_alpha_(s[0]) || strncmp(s, "__", 2) == 0)
        return 0;
    for (const char *p = s + 1; *p; p++)
        if (!is_alpha_(*p) && !is_digit(*p))
            return 0;
    return 1;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static int valid_labels(mtype type, const char *const *labels, size_t *n)
{
    *n = 0;
    for (size_t i = 0; labels && labels[i]; i++) {
        if (!valid_label_name(labels[i]) || (type == M_HISTOGRAM && !strcmp(labels[i], "le")))
            return 0;
        for (size_t j = 0; j < i; j++)
            if (strcmp(labels[i], labels[j]) == 0)
                return 0;
        (*n)++;
    }
    return 1;
}

static int valid_buckets(const double *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(b[i]) || (i > 0 && b[i] <= b[i - 1]))
            return 0;
    return 1;
}

static char **strv_dup(const char *const *v, size_t n)
{
    char **out = calloc(n + 1, sizeof(char *));
    for (size_t i = 0; out && i < n; i++) {
        if (!(out[i] = strdup(v[i] ? v[i] : ""))) {
            free_strv(out, i);
            return NULL;
        }
    }
    return out;
}

static sk_metric *find_family(const sk_metrics *r, const char *name)
{
    for (sk_metric *m = r->first; m; m = m->next)
        if (strcmp(m->name, name) == 0)
            return m;
    return NULL;
}

/* 1 when `name` is one of the sample names (name_bucket, name_sum, name_count) of histogram h. */
static int histogram_sample_name(const char *h, const char *name)
{
    static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
    size_t n = strlen(h);
    if (strncmp(h, name, n) != 0)
        return 0;
    for (size_t i = 0; i < 3; i++)
        if (strcmp(name + n, suffixes[i]) == 0)
            return 1;
    return 0;
}

/* A new family must not produce sample names that another family already produces. */
static int name_clashes(const sk_metrics *r, mtype type, const char *name)
{
    for (const sk_metric *m = r->first; m; m = m->next) {
        if (m->type == M_HISTOGRAM && histogram_sample_name(m->name, name))
            return 1;
        if (type == M_HISTOGRAM && histogram_sample_name(name, m->name))
            return 1;
    }
    return 0;
}

/* Registering a family again with the same type, labels and buckets returns the existing one,
 * so that modules may declare what they use independently. */
static int same_family(const sk_metric *m, mtype type, const char *const *labels, size_t nlabels,
                       const double *buckets, size_t nbuckets)
{
    if (m->type != type || m->nlabels != nlabels || m->nbuckets != nbuckets)
        return 0;
    for (size_t i = 0; i < nlabels; i++)
        if (strcmp(m->labels[i], labels[i]) != 0)
            return 0;
    for (size_t i = 0; i < nbuckets; i++)
        if (m->buckets[i] != buckets[i])
            return 0;
    return 1;
}

static sk_series *series_new(sk_metric *m, const char *const *values);

static sk_metric *family_new(sk_metrics *r, mtype type, const char *name, const char *help,
                             const char *const *labels, const double *buckets, size_t nbuckets)
{
    size_t nlabels;
    if (!r || !valid_metric_name(name) || !valid_labels(type, labels, &nlabels))
        return NULL;
    if (type == M_COUNTER && !ends_with(name, "_total"))
        return NULL;
    if (type == M_HISTOGRAM && !valid_buckets(buckets, nbuckets))
        return NULL;
    sk_metric *old = find_family(r, name);
    if (old)
        return same_family(old, type, labels, nlabels, buckets, nbuckets) ? old : NULL;
    if (name_clashes(r, type, name))
        return NULL;

    sk_metric *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->type = type;
    m->nlabels = nlabels;
    m->nbuckets = nbuckets;
    if (!(m->name = strdup(name)) || !(m->help = strdup(help ? help : "")) ||
        !(m->labels = strv_dup(labels, nlabels)))
        goto fail;
    if (nbuckets) {
        if (!(m->buckets = malloc(nbuckets * sizeof(double))))
            goto fail;
        memcpy(m->buckets, buckets, nbuckets * sizeof(double));
    }
    /* A family without labels has exactly one series, shown from the start. */
    if (nlabels == 0 && !series_new(m, NULL))
        goto fail;
    if (r->last)
        r->last->next = m;
    else
        r->first = m;
    r->last = m;
    return m;
fail:
    metric_free(m);
    return NULL;
}

sk_metric *sk_metrics_counter(sk_metrics *r, const char *name, const char *help,
                              const char *const *labels)
{
    return family_new(r, M_COUNTER, name, help, labels, NULL, 0);
}

sk_metric *sk_metrics_gauge(sk_metrics *r, const char *name, const char *help,
                            const char *const *labels)
{
    return family_new(r, M_GAUGE, name, help, labels, NULL, 0);
}

sk_metric *sk_metrics_histogram(sk_metrics *r, const char *name, const char *help,
                                const char *const *labels, const double *buckets, size_t nbuckets)
{
    return family_new(r, M_HISTOGRAM, name, help, labels, buckets, nbuckets);
}

static sk_series *series_new(sk_metric *m, const char *const *values)
{
    sk_series *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->family = m;
    if (!(s->values = strv_dup(values, m->nlabels)))
        goto fail;
    if (m->type == M_HISTOGRAM && !(s->counts = calloc(m->nbuckets + 1, sizeof(uint64_t))))
        goto fail;
    if (m->last)
        m->last->next = s;
    else
        m->first = s;
    m->last = s;
    return s;
fail:
    series_free(s, m->nlabels);
    return NULL;
}

sk_series *sk_metric_series(sk_metric *m, const char *const *values)
{
    if (!m)
        return NULL;
    if (m->nlabels == 0)
        return m->first;
    if (!values)
        return NULL;
    for (size_t i = 0; i < m->nlabels; i++)
        if (!values[i])
            return NULL;
    for (sk_series *s = m->first; s; s = s->next) {
        size_t i = 0;
        while (i < m->nlabels && strcmp(s->values[i], values[i]) == 0)
            i++;
        if (i == m->nlabels)
            return s;
    }
    return series_new(m, values);
}

void sk_series_add(sk_series *s, double v)
{
    if (!s || s->family->type == M_HISTOGRAM)
        return;
    /* Counters only go up. */
    if (s->family->type == M_COUNTER && !(v >= 0))
        return;
    s->value += v;
}

void sk_series_set(sk_series *s, double v)
{
    if (s && s->family->type == M_GAUGE)
        s->value = v;
}

/* Counts v in its bucket; returns the bucket's index, or -1 for a series that is not a
 * histogram. */
static long observe(sk_series *s, double v)
{
    if (!s || s->family->type != M_HISTOGRAM)
        return -1;
    size_t i = 0;
    const sk_metric *m = s->family;
    while (i < m->nbuckets && !(v <= m->buckets[i]))
        i++;
    s->counts[i]++;
    s->count++;
    s->value += v;
    return (long)i;
}

void sk_series_observe(sk_series *s, double v)
{
    observe(s, v);
}

/* Whether id is exactly len lowercase hex digits. It runs for every task on random digits:
 * the digit test has no branch (a mispredicted one every other digit cost more than the rest);
 * the only branch, at the terminating NUL, keeps the reads inside the string. */
static int hex_id(const char *id, size_t len)
{
    if (!id)
        return 0;
    unsigned ok = 1;
    for (size_t i = 0; i < len; i++) {
        unsigned c = (unsigned char)id[i];
        if (c == 0)
            return 0;
        ok &= ((c - '0') < 10u) | ((c - 'a') < 6u);
    }
    return ok && id[len] == '\0';
}

void sk_series_observe_exemplar(sk_series *s, double v, const char *trace_id, const char *span_id)
{
    long i = observe(s, v);
    if (i < 0 || !hex_id(trace_id, 32) || (span_id && !hex_id(span_id, 16)))
        return;
    /* Without memory the observation still counts; only its exemplar is lost. */
    if (!s->exemplars && !(s->exemplars = calloc(s->family->nbuckets + 1, sizeof(sk_exemplar))))
        return;
    /* The coarse clock (the kernel's tick, read without a system call): an exemplar's time
     * needs no more than its millisecond rendering shows, and it is read for every task. */
    struct timespec now;
    clock_gettime(CLOCK_REALTIME_COARSE, &now);
    sk_exemplar *e = &s->exemplars[i];
    memcpy(e->trace_id, trace_id, 33);
    if (span_id)
        memcpy(e->span_id, span_id, 17);
    else
        e->span_id[0] = '\0';
    e->value = v;
    e->at = (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

double sk_series_value(const sk_series *s)
{
    if (!s)
        return 0;
    return s->family->type == M_HISTOGRAM ? (double)s->count : s->value;
}

/* ---- rendering ---- */

typedef struct {
    char *p;
    size_t len, cap;
    int failed;
} buf;

static void put(buf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->failed = 1;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void puts_(buf *b, const char *s)
{
    put(b, s, strlen(s));
}

/* Formats v so that Prometheus parses it back exactly: integers without exponent, otherwise
 * the shortest %g form that round-trips, and +Inf / -Inf / NaN. */
static void fmt_number(char *out, size_t n, double v)
{
    if (isnan(v)) {
        snprintf(out, n, "NaN");
    } else if (isinf(v)) {
        snprintf(out, n, v > 0 ? "+Inf" : "-Inf");
    } else if (v == floor(v) && fabs(v) < 1e15) {
        snprintf(out, n, "%.0f", v == 0 ? 0.0 : v);
    } else {
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(out, n, "%.*g", prec, v);
            if (strtod(out, NULL) == v)
                break;
        }
    }
}

static void put_number(buf *b, double v)
{
    char num[40];
    fmt_number(num, sizeof num, v);
    puts_(b, num);
}

static void put_u64(buf *b, uint64_t v)
{
    char num[24];
    snprintf(num, sizeof num, "%llu", (unsigned long long)v);
    puts_(b, num);
}

/* HELP text escapes \ and newline; label values also escape ". Ill-formed UTF-8, which
 * Prometheus rejects, becomes U+FFFD. */
static void put_escaped(buf *b, const char *s, int quote)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        if (u[i] == '\\') {
            put(b, "\\\\", 2);
        } else if (u[i] == '\n') {
            put(b, "\\n", 2);
        } else if (u[i] == '"' && quote) {
            put(b, "\\\"", 2);
        } else {
            size_t len = sk_utf8_len(u + i, n - i);
            if (len == 0) {
                put(b, "\xef\xbf\xbd", 3);
                len = 1;
            } else {
                put(b, s + i, len);
            }
            i += len;
            continue;
        }
        i++;
    }
}

/* `{a="x",b="y"}`, with an extra le="..." pair for histogram buckets (le may be NULL). */
static void put_labels(buf *b, const sk_metric *m, const sk_series *s, const char *le)
{
    if (m->nlabels == 0 && !le)
        return;
    put(b, "{", 1);
    for (size_t i = 0; i < m->nlabels; i++) {
        if (i)
            put(b, ",", 1);
        puts_(b, m->labels[i]);
        put(b, "=\"", 2);
        put_escaped(b, s->values[i], 1);
        put(b, "\"", 1);
    }
    if (le) {
        if (m->nlabels)
            put(b, ",", 1);
        puts_(b, "le=\"");
        puts_(b, le);
        put(b, "\"", 1);
    }
    put(b, "}", 1);
}

static void put_sample_start(buf *b, const sk_metric *m, const char *suffix)
{
    puts_(b, m->name);
    puts_(b, suffix);
}

/* OpenMetrics: ` # {trace_id="...",span_id="..."} <value> <timestamp>` after a bucket. */
static void put_exemplar(buf *b, const sk_exemplar *e)
{
    char at[32];
    puts_(b, " # {trace_id=\"");
    puts_(b, e->trace_id);
    if (e->span_id[0]) {
        puts_(b, "\",span_id=\"");
        puts_(b, e->span_id);
    }
    puts_(b, "\"} ");
    put_number(b, e->value);
    snprintf(at, sizeof at, " %.3f", e->at);
    puts_(b, at);
}

static void render_histogram_series(buf *b, const sk_metric *m, const sk_series *s, int om)
{
    uint64_t cum = 0;
    char le[40];
    for (size_t i = 0; i <= m->nbuckets; i++) {
        cum += s->counts[i];
        if (i < m->nbuckets)
            fmt_number(le, sizeof le, m->buckets[i]);
        else
            snprintf(le, sizeof le, "+Inf");
        put_sample_start(b, m, "_bucket");
        put_labels(b, m, s, le);
        put(b, " ", 1);
        put_u64(b, cum);
        if (om && s->exemplars && s->exemplars[i].trace_id[0])
            put_exemplar(b, &s->exemplars[i]);
        put(b, "\n", 1);
    }
    put_sample_start(b, m, "_sum");
    put_labels(b, m, s, NULL);
    put(b, " ", 1);
    put_number(b, s->value);
    put(b, "\n", 1);
    put_sample_start(b, m, "_count");
    put_labels(b, m, s, NULL);
    put(b, " ", 1);
    put_u64(b, s->count);
    put(b, "\n", 1);
}

/* The family's name in HELP and TYPE: OpenMetrics names a counter family without the
 * "_total" of its sample. */
static void put_family_name(buf *b, const sk_metric *m, int om)
{
    size_t n = strlen(m->name);
    if (om && m->type == M_COUNTER)
        n -= strlen("_total");
    put(b, m->name, n);
}

static void render_family(buf *b, const sk_metric *m, int om)
{
    puts_(b, "# HELP ");
    put_family_name(b, m, om);
    put(b, " ", 1);
    /* OpenMetrics escapes " in HELP too; the text format 0.0.4 does not. */
    put_escaped(b, m->help, om);
    puts_(b, "\n# TYPE ");
    put_family_name(b, m, om);
    put(b, " ", 1);
    puts_(b, type_names[m->type]);
    put(b, "\n", 1);
    for (const sk_series *s = m->first; s; s = s->next) {
        if (m->type == M_HISTOGRAM) {
            render_histogram_series(b, m, s, om);
            continue;
        }
        puts_(b, m->name);
        put_labels(b, m, s, NULL);
        put(b, " ", 1);
        put_number(b, s->value);
        put(b, "\n", 1);
    }
}

static char *render(const sk_metrics *r, int om, size_t *len)
{
    buf b = {0};
    put(&b, "", 0);
    for (const sk_metric *m = r ? r->first : NULL; m; m = m->next)
        render_family(&b, m, om);
    if (om)
        puts_(&b, "# EOF\n");
    if (b.failed) {
        free(b.p);
        return NULL;
    }
    if (len)
        *len = b.len;
    return b.p;
}

char *sk_metrics_render(const sk_metrics *r, size_t *len)
{
    return render(r, 0, len);
}

char *sk_metrics_render_openmetrics(const sk_metrics *r, size_t *len)
{
    return render(r, 1, len);
}
