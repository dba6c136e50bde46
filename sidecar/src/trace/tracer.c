/* Building the tracer from the configuration. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "core/config.h"
#include "core/log.h"
#include "core/metrics.h"
#include "net/http.h"
#include "net/peer_tls.h"
#include "trace/internal.h"

static int is_grpc(const sk_config *cfg)
{
    return strcmp(sk_otlp_protocols[cfg->otlp_protocol], "grpc") == 0;
}

/* The export URL: otlp.traces_endpoint as is, else otlp.endpoint + "/v1/traces" (OTLP/gRPC:
 * as is); NULL when neither is set. */
static char *export_url(const sk_config *cfg)
{
    if (cfg->otlp_traces_endpoint && *cfg->otlp_traces_endpoint)
        return strdup(cfg->otlp_traces_endpoint);
    if (!cfg->otlp_endpoint || !*cfg->otlp_endpoint)
        return NULL;
    if (is_grpc(cfg))
        return strdup(cfg->otlp_endpoint);
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

/* Appends ",key=value" to out (cap bytes, len used), value percent-encoded; the caller sized
 * out for the worst case (every byte encoded). */
static void append_attr(char *out, size_t cap, size_t *len, const char *key, const char *value)
{
    static const char hex[] = "0123456789ABCDEF";
    int n = snprintf(out + *len, cap - *len, "%s%s=", *len ? "," : "", key);
    *len += n > 0 ? (size_t)n : 0;
    for (const unsigned char *v = (const unsigned char *)value; *v && *len + 4 <= cap; v++) {
        if (strchr(",=%", *v)) {
            out[(*len)++] = '%';
            out[(*len)++] = hex[*v >> 4];
            out[(*len)++] = hex[*v & 15];
        } else {
            out[(*len)++] = (char)*v;
        }
    }
    out[*len] = '\0';
}

char *sk_trace_resource(const char *attrs, const char *pod, const char *ns)
{
    attrs = attrs ? attrs : "";
    pod = pod && *pod && !has_key(attrs, "k8s.pod.name") ? pod : NULL;
    ns = ns && *ns && !has_key(attrs, "k8s.namespace.name") ? ns : NULL;
    size_t len = strlen(attrs);
    size_t cap = len + 64 + 3 * ((pod ? strlen(pod) : 0) + (ns ? strlen(ns) : 0));
    char *out = malloc(cap);
    if (!out)
        return NULL;
    memcpy(out, attrs, len + 1);
    if (pod)
        append_attr(out, cap, &len, "k8s.pod.name", pod);
    if (ns)
        append_attr(out, cap, &len, "k8s.namespace.name", ns);
    return out;
}

/* lines with line appended (a copy); NULL when out of memory (lines freed). */
static char **add_line(char **lines, const char *line)
{
    size_t n = 0;
    while (lines[n])
        n++;
    char **grown = realloc(lines, (n + 2) * sizeof(*grown));
    char *copy = strdup(line);
    if (!grown || !copy) {
        free(copy);
        for (char **h = grown ? grown : lines; *h; h++)
            free(*h);
        free(grown ? grown : lines);
        return NULL;
    }
    grown[n] = copy;
    grown[n + 1] = NULL;
    return grown;
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

/* The gRPC target "host:port" of an OTLP/gRPC endpoint ("http://host:port/...",
 * "https://host:port/...", "host:port"; port 4317 when none); -1 for an empty host. */
static int grpc_target(const char *url, char *out, size_t outlen)
{
    if (strncmp(url, "http://", 7) == 0)
        url += 7;
    else if (strncmp(url, "https://", 8) == 0)
        url += 8;
    size_t n = strcspn(url, "/");
    if (n == 0)
        return -1;
    const char *bracket = memchr(url, ']', n), *colon = memchr(url, ':', n);
    int has_port = bracket ? bracket + 1 < url + n && bracket[1] == ':' : colon != NULL;
    snprintf(out, outlen, "%.*s%s", (int)n, url, has_port ? "" : ":4317");
    return 0;
}

/* otlp.headers as gRPC metadata: the "Name: value" lines (after the content type) split in
 * place, names lowercased. */
static int grpc_metadata(sk_tracer *t)
{
    size_t n = 0;
    while (t->headers[n])
        n++;
    if (!(t->md = calloc(n ? n : 1, sizeof(*t->md))))
        return -1;
    for (size_t i = 1; i < n; i++) {
        char *line = t->headers[i], *colon = strchr(line, ':');
        *colon = '\0';
        for (char *c = line; *c; c++)
            *c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
        t->md[t->nmd++] = (sk_grpc_metadata){line, colon + 2};
    }
    return 0;
}

static int grpc_init(sk_tracer *t, char *err, size_t errlen)
{
    char target[512];
    if (grpc_target(t->url, target, sizeof target)) {
        snprintf(err, errlen,
                 "otlp.endpoint: %s is not an OTLP/gRPC address skiff can reach (http://host:port, "
                 "https://host:port or host:port)",
                 t->url);
        return -1;
    }
    sk_grpc_channel_opts o = {
        .target = target, .lazy = 1, .reconnect_max_ms = 30000, .transport = t->tp};
    if (grpc_metadata(t) || !(t->ch = sk_grpc_channel_new(t->base, &o, NULL, NULL))) {
        snprintf(err, errlen, "otlp.endpoint: cannot create the gRPC channel to %s", target);
        return -1;
    }
    return 0;
}

/* A new client certificate in force: the OTLP/gRPC connection is replaced (libcurl's
 * connections take the new material when they reconnect). */
static void on_tls_change(void *ud, int changed_cert)
{
    sk_tracer *t = ud;
    if (changed_cert && t->ch) {
        SK_INFO("trace", "new client certificate: replacing the OTLP/gRPC connection");
        sk_grpc_channel_reconnect(t->ch);
    }
}

/* The receiver's TLS material when its endpoint is TLS (files watched every
 * tls.reload_interval), and the gRPC transport over it. */
static int tls_init(sk_tracer *t, const sk_config *cfg, sk_metrics *m, char *err, size_t errlen)
{
    sk_tls_opts o;
    if (!sk_peer_tls_opts(cfg, "otlp", &o))
        return 0;
    if (!(t->tls = sk_tls_new(&o, t->base, cfg->tls_reload_ms > 0 ? cfg->tls_reload_ms : 10000, m,
                              err, errlen)))
        return -1;
    sk_tls_on_change(t->tls, on_tls_change, t);
    if (is_grpc(cfg) && !(t->tp = sk_grpc_transport_tls(t->tls))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

static int exporter_init(sk_tracer *t, const sk_config *cfg, sk_metrics *m, char *err,
                         size_t errlen)
{
    t->exporting = 1;
    t->gzip = strcmp(sk_otlp_compressions[cfg->otlp_compression], "gzip") == 0;
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
    if (t->gzip && !is_grpc(cfg) &&
        !(t->headers = add_line(t->headers, "Content-Encoding: gzip"))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (tls_init(t, cfg, m, err, errlen))
        return -1;
    if (is_grpc(cfg)) {
        if (grpc_init(t, err, errlen))
            return -1;
        if (t->gzip)
            SK_WARN("trace", "otlp.compression=gzip applies to OTLP/HTTP only: OTLP/gRPC "
                             "requests go uncompressed");
    } else {
        if (!(t->http = sk_http_new(t->base, err, errlen)))
            return -1;
        sk_http_set_observe(t->http, m, "otlp", 0);
        sk_http_set_tls(t->http, t->tls);
    }
    if (!(t->enc = sk_otlp_encoder_new(t->base, t->service_name, t->resource, t->gzip && !t->ch,
                                       sk_tracer_encoded, t))) {
        snprintf(err, errlen, "cannot start the OTLP encoder thread");
        return -1;
    }
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
    t->closing = 1; /* a call cancelled by the channel's free must not start another */
    sk_otlp_encoder_free(t->enc);
    sk_http_free(t->http);
    sk_grpc_channel_free(t->ch);
    sk_grpc_transport_free(t->tp);
    sk_tls_free(t->tls);
    free(t->md);
    free(t->resp);
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
