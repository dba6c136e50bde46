/* Building the tracer from the configuration. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "core/config.h"
#include "core/metrics.h"
#include "net/http.h"
#include "trace/internal.h"

/* The export URL: otlp.traces_endpoint as is, else otlp.endpoint + "/v1/traces"; NULL when
 * neither is set. */
static char *export_url(const sk_config *cfg)
{
    if (cfg->otlp_traces_endpoint && *cfg->otlp_traces_endpoint)
        return strdup(cfg->otlp_traces_endpoint);
    if (!cfg->otlp_endpoint || !*cfg->otlp_endpoint)
        return NULL;
    size_t n = strlen(cfg->otlp_endpoint);
    while (n && cfg->otlp_endpoint[n - 1] == '/')
        n--;
    char *url = malloc(n + sizeof("/v1/traces"));
    if (url)
        snprintf(url, n + sizeof("/v1/traces"), "%.*s/v1/traces", (int)n, cfg->otlp_endpoint);
    return url;
}

/* 1 when the "k=v,k=v" list attrs has the key. */
static int has_key(const char *attrs, const char *key)
{
    size_t n = strlen(key);
    for (const char *p = attrs; p && *p;) {
        while (*p == ' ')
            p++;
        if (strncmp(p, key, n) == 0) {
            const char *q = p + n;
            while (*q == ' ')
                q++;
            if (*q == '=')
                return 1;
        }
        p = strchr(p, ',');
        p = p ? p + 1 : NULL;
    }
    return 0;
}

/* Appends ",key=value" to the buffer at *out (len used), value percent-encoded. */
static void append_attr(char *out, size_t *len, const char *key, const char *value)
{
    *len += (size_t)sprintf(out + *len, "%s%s=", *len ? "," : "", key);
    for (const char *v = value; *v; v++)
        *len += (size_t)(strchr(",=%", *v) ? sprintf(out + *len, "%%%02X", (unsigned char)*v)
                                           : sprintf(out + *len, "%c", *v));
}

char *sk_trace_resource(const char *attrs, const char *pod, const char *ns)
{
    attrs = attrs ? attrs : "";
    pod = pod && *pod && !has_key(attrs, "k8s.pod.name") ? pod : NULL;
    ns = ns && *ns && !has_key(attrs, "k8s.namespace.name") ? ns : NULL;
    size_t cap = strlen(attrs) + 64 + 3 * ((pod ? strlen(pod) : 0) + (ns ? strlen(ns) : 0));
    char *out = malloc(cap);
    if (!out)
        return NULL;
    size_t len = (size_t)sprintf(out, "%s", attrs);
    if (pod)
        append_attr(out, &len, "k8s.pod.name", pod);
    if (ns)
        append_attr(out, &len, "k8s.namespace.name", ns);
    return out;
}

/* "name: value" lines from "name=value,name=value" plus the content type. */
static char **header_lines(const char *spec)
{
    size_t cap = 2;
    for (const char *p = spec; *p; p++)
        cap += *p == ',';
    char **h = calloc(cap + 1, sizeof(*h)), *copy = strdup(spec);
    size_t n = 0;
    if (!h || !copy || !(h[n++] = strdup("Content-Type: application/x-protobuf"))) {
        free(copy);
        free(h);
        return NULL;
    }
    for (char *save = NULL, *m = strtok_r(copy, ",", &save); m; m = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(m, '=');
        while (*m == ' ')
            m++;
        if (!eq || eq == m)
            continue;
        *eq = '\0';
        sk_trace_unescape(eq + 1);
        size_t len = strlen(m) + strlen(eq + 1) + 3;
        if ((h[n] = malloc(len)))
            snprintf(h[n++], len, "%s: %s", m, eq + 1);
    }
    free(copy);
    return h;
}

static int metrics_init(sk_tracer *t, sk_metrics *m)
{
    sk_metric *exp = sk_metrics_counter(m, "skiff_trace_spans_exported_total",
                                        "Spans the OTLP receiver accepted.", NULL);
    sk_metric *drop = sk_metrics_counter(
        m, "skiff_trace_spans_dropped_total",
        "Finished sampled spans not exported: queue_full (otlp.max_queue_size reached) or "
        "export_failed (the receiver refused or could not be reached).",
        (const char *const[]){"reason", NULL});
    sk_metric *q =
        sk_metrics_gauge(m, "skiff_trace_queue_spans", "Spans waiting for export.", NULL);
    if (!exp || !drop || !q)
        return -1;
    t->m_exported = sk_metric_series(exp, NULL);
    t->m_dropped_full = sk_metric_series(drop, (const char *const[]){"queue_full"});
    t->m_dropped_export = sk_metric_series(drop, (const char *const[]){"export_failed"});
    t->m_queue = sk_metric_series(q, NULL);
    return t->m_exported && t->m_dropped_full && t->m_dropped_export && t->m_queue ? 0 : -1;
}

static int exporter_init(sk_tracer *t, const sk_config *cfg, sk_metrics *m, char *err,
                         size_t errlen)
{
    t->timeout_ms = cfg->otlp_timeout_ms;
    t->delay_ms = cfg->bsp_schedule_delay_ms;
    t->export_timeout_ms = cfg->bsp_export_timeout_ms;
    t->cap = (size_t)cfg->bsp_max_queue;
    t->max_batch = (size_t)cfg->bsp_max_batch;
    if (!(t->ring = calloc(t->cap, sizeof(*t->ring))) ||
        !(t->headers = header_lines(cfg->otlp_headers ? cfg->otlp_headers : "")) ||
        !(t->timer = event_new(t->base, -1, 0, sk_tracer_timer_cb, t))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (!(t->http = sk_http_new(t->base, err, errlen)))
        return -1;
    sk_http_set_observe(t->http, m, "otlp", 0);
    sk_tracer_arm(t, t->delay_ms);
    return 0;
}

sk_tracer *sk_tracer_new(struct event_base *base, const sk_config *cfg, sk_metrics *metrics,
                         char *err, size_t errlen)
{
    sk_tracer *t = calloc(1, sizeof(*t));
    if (!t) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    t->base = base;
    if (sk_sampler_parse(&t->sampler, sk_trace_samplers[cfg->trace_sampler],
                         cfg->trace_sampler_arg)) {
        snprintf(err, errlen, "trace.sampler_arg: %s is not a ratio in 0..1",
                 cfg->trace_sampler_arg);
        free(t);
        return NULL;
    }
    t->url = export_url(cfg);
    t->service_name = strdup(cfg->service_name);
    t->resource = sk_trace_resource(cfg->trace_resource_attributes, getenv("POD_NAME"),
                                    getenv("POD_NAMESPACE"));
    if (!t->service_name || !t->resource || metrics_init(t, metrics)) {
        snprintf(err, errlen, "out of memory");
        sk_tracer_free(t);
        return NULL;
    }
    if (t->url && exporter_init(t, cfg, metrics, err, errlen)) {
        sk_tracer_free(t);
        return NULL;
    }
    return t;
}

void sk_tracer_free(sk_tracer *t)
{
    if (!t)
        return;
    if (sk_tracer_current() == t)
        sk_tracer_install(NULL);
    sk_http_free(t->http);
    if (t->timer)
        event_free(t->timer);
    for (size_t i = 0; i < t->count; i++)
        sk_span_free(t->ring[(t->head + i) % t->cap]);
    free(t->ring);
    for (char **h = t->headers; h && *h; h++)
        free(*h);
    free(t->headers);
    free(t->body);
    free(t->url);
    free(t->service_name);
    free(t->resource);
    free(t);
}
