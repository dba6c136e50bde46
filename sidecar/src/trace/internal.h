/* Private to sidecar/src/trace/. */
#ifndef SK_TRACE_INTERNAL_H
#define SK_TRACE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "core/metrics.h"
#include "grpc/grpc.h"
#include "grpc/transport.h"
#include "net/http.h"
#include "net/tls.h"
#include "trace/trace.h"

typedef enum {
    SK_SAMPLE_ALWAYS_ON,
    SK_SAMPLE_ALWAYS_OFF,
    SK_SAMPLE_RATIO,
} sk_sample_root;

typedef struct sk_sampler {
    sk_sample_root root; /* decision for a span without a parent */
    int parent_based;    /* a child follows its parent's sampled flag */
    double ratio;
} sk_sampler;

/* Parses an OTEL_TRACES_SAMPLER name and its argument; 0 or -1. */
int sk_sampler_parse(sk_sampler *s, const char *name, const char *arg);
/* 1 when a span with this trace id (and parent, NULL for a root) is sampled. */
int sk_sampler_decide(const sk_sampler *s, const uint8_t trace_id[16], const sk_trace_ctx *parent);

/* The encoder thread (encoder.c): a batch's OTLP encoding, and gzip, off the loop thread.
 * Called on the loop with the encoded body (malloc'ed, the callee owns it; NULL when out of
 * memory) of the n spans submitted. */
typedef struct sk_otlp_encoder sk_otlp_encoder;
typedef void (*sk_otlp_encoded_cb)(void *ud, uint8_t *body, size_t len, size_t n);
/* service_name and resource must outlive the encoder. NULL when the thread cannot start. */
sk_otlp_encoder *sk_otlp_encoder_new(struct event_base *base, const char *service_name,
                                     const char *resource, int gzip, sk_otlp_encoded_cb cb,
                                     void *ud);
/* Hands n spans (the malloc'ed array and the spans) to the thread: 0, or -1 while a batch is
 * still being encoded (nothing taken). Never waits for the thread. */
int sk_otlp_encoder_submit(sk_otlp_encoder *e, sk_span **spans, size_t n);
/* Stops the thread (waits for a batch being encoded) and frees what it held. NULL accepted. */
void sk_otlp_encoder_free(sk_otlp_encoder *e);

/* tracer.c builds it, export.c runs the batch processor. */
struct sk_tracer {
    struct event_base *base;
    sk_http *http;
    sk_sampler sampler;
    char *url, *service_name, *resource;
    char **headers; /* "Name: value", NULL-terminated */
    int64_t timeout_ms, delay_ms, export_timeout_ms;
    sk_span **ring;
    size_t cap, head, count, max_batch;
    sk_otlp_encoder *enc; /* the encoder thread */
    size_t encoding;      /* spans the encoder holds (0: none) */
    uint8_t *body;        /* the batch in flight or waiting for a retry */
    size_t body_len, body_spans;
    int64_t batch_started_ms, backoff_ms;
    sk_http_req *req;
    int gzip;             /* otlp.compression=gzip (OTLP/HTTP) */
    sk_grpc_channel *ch;  /* OTLP/gRPC: the receiver's channel, else NULL */
    sk_grpc_call *call;   /* OTLP/gRPC: the Export in flight */
    sk_grpc_metadata *md; /* OTLP/gRPC: otlp.headers as metadata */
    size_t nmd;
    sk_tls *tls;           /* the receiver's TLS material (https://, TLS OTLP/gRPC), else NULL */
    sk_grpc_transport *tp; /* OTLP/gRPC over TLS: the channel's transport */
    uint8_t *resp;         /* OTLP/gRPC: the ExportTraceServiceResponse received */
    size_t resp_len;
    struct event *timer;
    int flushing, failing, closing;
    int exporting; /* an endpoint is configured */
    sk_series *m_exported, *m_dropped_full, *m_dropped_export, *m_queue;
};

void sk_tracer_arm(sk_tracer *t, int64_t ms);
/* The encoder's result: posts the batch (an sk_otlp_encoded_cb). */
void sk_tracer_encoded(void *ud, uint8_t *body, size_t len, size_t n);
void sk_tracer_timer_cb(evutil_socket_t fd, short what, void *arg);

/* The installed tracer's sampler (NULL: parent-based always-on) and its queue. */
const sk_sampler *sk_tracer_sampler(const sk_tracer *t);
void sk_tracer_enqueue(sk_tracer *t, sk_span *s);

/* OTLP ExportTraceServiceRequest for n spans with the resource's attributes ("k=v,k=v" as in
 * OTEL_RESOURCE_ATTRIBUTES plus service.name). Returns a malloc'ed buffer, length in *len. */
uint8_t *sk_otlp_encode(sk_span *const *spans, size_t n, const char *service_name,
                        const char *resource_attributes, size_t *len);

uint64_t sk_trace_now_ns(void);

/* gzip (RFC 1952) of len bytes; malloc'ed, length in *out_len; NULL when out of memory. */
uint8_t *sk_trace_gzip(const uint8_t *in, size_t len, size_t *out_len);

/* The gRPC method skiff's OTLP/gRPC exporter calls. */
#define SK_OTLP_GRPC_METHOD "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
/* 1 when an OTLP/gRPC Export that ended with code may be retried (the OTLP specification:
 * CANCELLED, DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE, UNAVAILABLE, DATA_LOSS; not
 * RESOURCE_EXHAUSTED, which is retryable only with a RetryInfo skiff does not read). */
int sk_otlp_grpc_retryable(int code);

/* The resource attributes "k=v,k=v" of attrs (OTEL_RESOURCE_ATTRIBUTES) plus k8s.pod.name = pod
 * and k8s.namespace.name = ns (the downward API's POD_NAME and POD_NAMESPACE; NULL or "":
 * none) unless attrs sets them already; values percent-encoded where they hold ',', '=' or
 * '%'. malloc'ed, NULL when out of memory. */
char *sk_trace_resource(const char *attrs, const char *pod, const char *ns);

/* Percent-decodes s in place (the values of OTEL_RESOURCE_ATTRIBUTES and
 * OTEL_EXPORTER_OTLP_HEADERS are W3C Baggage encoded). */
void sk_trace_unescape(char *s);

#endif
