/* The tracer: sampler, resource and the batch span processor with its OTLP exporter (OTLP/HTTP
 * protobuf, optionally gzip, or OTLP/gRPC on skiff's gRPC client).
 *
 * Finished sampled spans wait in a bounded ring (full: the new span is dropped and counted).
 * A batch goes out when max_batch spans wait or batch_delay has passed; one batch at a time.
 * The encoder thread encodes (and gzips) it, so the loop's part is the enqueue, the hand-over
 * and the (non-blocking) request. A batch is retried on 429,
 * 502, 503 and 504 (gRPC: sk_otlp_grpc_retryable) only, with exponential backoff
 * (Retry-After when given) until export_timeout; any other outcome ends it (exported, or
 * dropped and counted). A gRPC partial success is not retried: its rejected spans are counted
 * as dropped. */
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/metrics.h"
#include "net/http.h"
#include "otlp_trace.pb-c.h"
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
    return t && !t->closing ? t->count + t->encoding + t->body_spans : 0;
}

static void export_next(sk_tracer *t);

void sk_tracer_arm(sk_tracer *t, int64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    event_add(t->timer, &tv);
}

/* exported: the receiver took the batch, less rejected spans (a partial success). */
static void batch_done(sk_tracer *t, int exported, size_t rejected, const char *why)
{
    if (rejected > t->body_spans)
        rejected = t->body_spans;
    if (exported) {
        sk_series_add(t->m_exported, (double)(t->body_spans - rejected));
        sk_series_add(t->m_dropped_export, (double)rejected);
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

/* One attempt ended: exported, retried later (retry: the failure may be retried; wait_ms: the
 * receiver's Retry-After, 0 when none) or given up. */
static void attempt_done(sk_tracer *t, int ok, size_t rejected, int retry, int64_t wait_ms,
                         const char *why)
{
    if (ok) {
        batch_done(t, 1, rejected, NULL);
        return;
    }
    int64_t wait = wait_ms > 0 ? wait_ms : t->backoff_ms;
    if (retry && !t->flushing && now_ms() + wait < t->batch_started_ms + t->export_timeout_ms) {
        t->backoff_ms = t->backoff_ms * 2 > 30000 ? 30000 : t->backoff_ms * 2;
        sk_tracer_arm(t, wait);
        return;
    }
    batch_done(t, 0, 0, why);
}

static void response_cb(void *ud, const sk_http_result *r)
{
    sk_tracer *t = ud;
    char why[160];
    t->req = NULL;
    int ok = !r->error && r->status >= 200 && r->status < 300;
    if (r->error)
        snprintf(why, sizeof why, "%s", r->error);
    else
        snprintf(why, sizeof why, "HTTP status %ld", r->status);
    attempt_done(t, ok, 0, !r->error && retryable(r->status), r->retry_after_s * 1000, why);
}

static void grpc_message_cb(void *ud, const uint8_t *msg, size_t len)
{
    sk_tracer *t = ud;
    free(t->resp);
    t->resp_len = 0;
    if ((t->resp = malloc(len ? len : 1))) {
        memcpy(t->resp, msg, len);
        t->resp_len = len;
    }
}

/* Spans a gRPC response says it rejected (partial_success.rejected_spans), 0 when none. */
static size_t grpc_rejected(sk_tracer *t)
{
    SkiffOtlp__ExportTraceServiceResponse *r =
        t->resp ? skiff_otlp__export_trace_service_response__unpack(NULL, t->resp_len, t->resp)
                : NULL;
    size_t n = r && r->partial_success && r->partial_success->rejected_spans > 0
                   ? (size_t)r->partial_success->rejected_spans
                   : 0;
    if (n)
        SK_LOG(SK_LOG_WARN, "trace", NULL, SK_KV("spans", "rejected"),
               "the OTLP receiver rejected %zu spans: %s", n, r->partial_success->error_message);
    skiff_otlp__export_trace_service_response__free_unpacked(r, NULL);
    free(t->resp);
    t->resp = NULL;
    t->resp_len = 0;
    return n;
}

static void grpc_close_cb(void *ud, int code, const char *message)
{
    sk_tracer *t = ud;
    char why[200];
    t->call = NULL;
    if (t->closing)
        return; /* the channel is being freed */
    snprintf(why, sizeof why, "gRPC %s %s", sk_grpc_code_name(code), message);
    size_t rejected = code == SK_GRPC_OK ? grpc_rejected(t) : 0;
    attempt_done(t, code == SK_GRPC_OK, rejected, sk_otlp_grpc_retryable(code), 0, why);
}

static void post(sk_tracer *t)
{
    if (t->ch) {
        t->call =
            sk_grpc_call_start(t->ch, SK_OTLP_GRPC_METHOD, t->body, t->body_len, t->timeout_ms,
                               t->md, t->nmd, grpc_message_cb, grpc_close_cb, t);
        if (!t->call)
            batch_done(t, 0, 0, "the call could not start");
        return;
    }
    const char *const *h = (const char *const *)t->headers;
    t->req = sk_http_request(t->http, "POST", t->url, h, (const char *)t->body, t->body_len, NULL,
                             t->timeout_ms, response_cb, t);
    if (!t->req)
        batch_done(t, 0, 0, "the request could not start");
}

/* Takes up to max_batch spans off the ring to the encoder thread (which is idle whenever no
 * batch is encoded, in flight or waiting for a retry). */
static void export_next(sk_tracer *t)
{
    if (t->body || t->encoding || t->count == 0)
        return;
    size_t n = t->count < t->max_batch ? t->count : t->max_batch;
    sk_span **batch = malloc(n * sizeof(*batch));
    if (!batch)
        return;
    for (size_t i = 0; i < n; i++)
        batch[i] = t->ring[(t->head + i) % t->cap];
    if (sk_otlp_encoder_submit(t->enc, batch, n)) {
        free(batch);
        return;
    }
    t->head = (t->head + n) % t->cap;
    t->count -= n;
    t->encoding = n;
    sk_series_set(t->m_queue, (double)t->count);
}

void sk_tracer_encoded(void *ud, uint8_t *body, size_t len, size_t n)
{
    sk_tracer *t = ud;
    t->encoding = 0;
    t->body = body;
    t->body_len = len;
    t->body_spans = n;
    t->batch_started_ms = now_ms();
    t->backoff_ms = 1000;
    if (!t->body)
        batch_done(t, 0, 0, "out of memory");
    else
        post(t);
}

void sk_tracer_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sk_tracer *t = arg;
    if (t->body && !t->req && !t->call)
        post(t); /* a retry */
    else
        export_next(t);
    if (!t->flushing)
        sk_tracer_arm(t, t->delay_ms);
}

void sk_tracer_enqueue(sk_tracer *t, sk_span *s)
{
    if (!t->exporting || t->count == t->cap) {
        if (t->exporting)
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
    if (t->body && !t->req && !t->call)
        post(t);
    export_next(t);
}
