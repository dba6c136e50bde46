/* The tracer: sampler, resource and the batch span processor with its OTLP/HTTP exporter.
 *
 * Finished sampled spans wait in a bounded ring (full: the new span is dropped and counted).
 * A batch goes out when max_batch spans wait or batch_delay has passed; one request at a
 * time, so exporting costs the task path nothing but the enqueue. A batch is retried on 429,
 * 502, 503 and 504 only, with exponential backoff (Retry-After when given) until
 * export_timeout; any other outcome ends it (exported, or dropped and counted). */
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/metrics.h"
#include "net/http.h"
#include "trace/internal.h"

static int64_t now_ms(void)
{
    return (int64_t)(sk_trace_now_ns() / 1000000u);
}

const sk_sampler *sk_tracer_sampler(const sk_tracer *t)
{
    return &t->sampler;
}

size_t sk_tracer_pending(const sk_tracer *t)
{
    return t ? t->count + t->body_spans : 0;
}

static void export_next(sk_tracer *t);

void sk_tracer_arm(sk_tracer *t, int64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    event_add(t->timer, &tv);
}

static void batch_done(sk_tracer *t, int exported, const char *why)
{
    if (exported) {
        sk_series_add(t->m_exported, (double)t->body_spans);
        if (t->failing)
            SK_INFO("trace", "exporting spans to %s again", t->url);
        t->failing = 0;
    } else {
        sk_series_add(t->m_dropped_export, (double)t->body_spans);
        if (!t->failing)
            SK_LOG(SK_LOG_WARN, "trace", NULL, SK_KV("spans", "dropped"),
                   "cannot export %zu spans to %s: %s", t->body_spans, t->url, why);
        t->failing = 1;
    }
    free(t->body);
    t->body = NULL;
    t->body_len = t->body_spans = 0;
    export_next(t);
}

static int retryable(long status)
{
    return status == 429 || status == 502 || status == 503 || status == 504;
}

static void post(sk_tracer *t);

static void response_cb(void *ud, const sk_http_result *r)
{
    sk_tracer *t = ud;
    char why[160];
    t->req = NULL;
    if (!r->error && r->status >= 200 && r->status < 300) {
        batch_done(t, 1, NULL);
        return;
    }
    if (r->error)
        snprintf(why, sizeof why, "%s", r->error);
    else
        snprintf(why, sizeof why, "HTTP status %ld", r->status);
    int64_t wait = r->retry_after_s > 0 ? r->retry_after_s * 1000 : t->backoff_ms;
    if (!r->error && retryable(r->status) && !t->flushing &&
        now_ms() + wait < t->batch_started_ms + t->export_timeout_ms) {
        t->backoff_ms = t->backoff_ms * 2 > 30000 ? 30000 : t->backoff_ms * 2;
        sk_tracer_arm(t, wait);
        return;
    }
    batch_done(t, 0, why);
}

static void post(sk_tracer *t)
{
    const char *const *h = (const char *const *)t->headers;
    t->req = sk_http_request(t->http, "POST", t->url, h, (const char *)t->body, t->body_len, NULL,
                             t->timeout_ms, response_cb, t);
    if (!t->req)
        batch_done(t, 0, "the request could not start");
}

/* Takes up to max_batch spans off the ring into an encoded request and posts it. */
static void export_next(sk_tracer *t)
{
    if (t->body || t->count == 0)
        return;
    size_t n = t->count < t->max_batch ? t->count : t->max_batch;
    sk_span **batch = malloc(n * sizeof(*batch));
    if (!batch)
        return;
    for (size_t i = 0; i < n; i++)
        batch[i] = t->ring[(t->head + i) % t->cap];
    t->head = (t->head + n) % t->cap;
    t->count -= n;
    sk_series_set(t->m_queue, (double)t->count);
    t->body = sk_otlp_encode(batch, n, t->service_name, t->resource, &t->body_len);
    for (size_t i = 0; i < n; i++)
        sk_span_free(batch[i]);
    free(batch);
    t->body_spans = n;
    t->batch_started_ms = now_ms();
    t->backoff_ms = 1000;
    if (!t->body)
        batch_done(t, 0, "out of memory");
    else
        post(t);
}

void sk_tracer_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sk_tracer *t = arg;
    if (t->body && !t->req)
        post(t); /* a retry */
    else
        export_next(t);
    if (!t->flushing)
        sk_tracer_arm(t, t->delay_ms);
}

void sk_tracer_enqueue(sk_tracer *t, sk_span *s)
{
    if (!t->http || t->count == t->cap) {
        if (t->http)
            sk_series_add(t->m_dropped_full, 1);
        sk_span_free(s);
        return;
    }
    t->ring[(t->head + t->count++) % t->cap] = s;
    sk_series_set(t->m_queue, (double)t->count);
    if (t->count >= t->max_batch || t->flushing)
        export_next(t);
}

void sk_tracer_flush(sk_tracer *t)
{
    if (!t)
        return;
    t->flushing = 1;
    if (t->body && !t->req)
        post(t);
    export_next(t);
}
