/* Spans and the tracer: sampling, resource, and the hand-off to the OTLP exporter (export.c).
 * Loop thread only. One tracer per process (sk_tracer_install); without one, spans still get
 * ids (so handlers can nest their spans under skiff's) but nothing is exported. */
#ifndef SK_TRACE_H
#define SK_TRACE_H

#include <stdint.h>

#include "core/log.h"
#include "trace/context.h"

struct event_base;
struct sk_config;
typedef struct sk_metrics sk_metrics;

/* OTLP SpanKind values. */
typedef enum {
    SK_SPAN_INTERNAL = 1,
    SK_SPAN_SERVER = 2,
    SK_SPAN_CLIENT = 3,
    SK_SPAN_PRODUCER = 4,
    SK_SPAN_CONSUMER = 5
} sk_span_kind;

#define SK_SPAN_MAX_ATTRS 16

typedef struct sk_span_attr {
    const char *key; /* static string */
    char *str;       /* string value (owned) or NULL for an integer */
    int64_t num;
} sk_span_attr;

/* Members by alignment, without padding: 1,032 bytes, the largest request glibc's per-thread
 * cache serves (a span a record, allocated and freed at a high rate). */
typedef struct sk_span {
    char *name;
    char *message;             /* status message, NULL when none */
    uint64_t start_ns, end_ns; /* Unix epoch */
    sk_span_attr attrs[SK_SPAN_MAX_ATTRS];
    int has_parent;
    sk_span_kind kind;
    unsigned nattrs, dropped_attrs;
    int error;        /* status ERROR */
    sk_trace_ctx ctx; /* this span's ids, flags and tracestate */
    uint8_t parent_span_id[8];
    char trace_hex[33], span_hex[17];
} sk_span;

typedef struct sk_tracer sk_tracer;

/* A tracer from the configuration (sampler, resource, exporter); NULL with err set when a
 * setting cannot be used. Exporting starts only when an OTLP endpoint is configured. */
sk_tracer *sk_tracer_new(struct event_base *base, const struct sk_config *cfg, sk_metrics *metrics,
                         char *err, size_t errlen);
void sk_tracer_free(sk_tracer *t);
/* The process tracer used by sk_span_start (NULL: none). */
void sk_tracer_install(sk_tracer *t);
sk_tracer *sk_tracer_current(void);
/* Shutdown: exports what is queued now; pending is the number of spans not yet delivered or
 * given up (0 when idle). */
void sk_tracer_flush(sk_tracer *t);
size_t sk_tracer_pending(const sk_tracer *t);

/* Starts a span, child of parent (NULL or an invalid context: a new trace; the sampler decides
 * the sampled flag). NULL only when out of memory. name NULL: unnamed until sk_span_name, for
 * a span named only when it will be exported (an exported span must have a name). */
sk_span *sk_span_start(const sk_trace_ctx *parent, const char *name, sk_span_kind kind);
/* Names s prefix followed by rest (one allocation, no printf); 0, or -1 when out of memory (s
 * unchanged). */
int sk_span_name(sk_span *s, const char *prefix, const char *rest);
void sk_span_set_str(sk_span *s, const char *key, const char *value);
void sk_span_set_int(sk_span *s, const char *key, int64_t value);
/* Status ERROR with error.type = type and the status message (may be NULL). */
void sk_span_set_error(sk_span *s, const char *type, const char *message);
/* 1 when s's name, times and attributes have a reader: s is sampled, and the installed tracer
 * exports (an OTLP endpoint) or none is installed (library use: the span is kept whole).
 * Otherwise only its ids matter (the handler's traceparent, log lines, exemplars), and its
 * start and end times are not taken. */
int sk_span_read(const sk_span *s);
/* "00-<trace>-<span>-<flags>" of the span. */
void sk_span_traceparent(const sk_span *s, char out[SK_TRACEPARENT_LEN + 1]);
/* Ends the span: a sampled one goes to the exporter (which owns it then), any other is freed. */
void sk_span_end(sk_span *s);
/* Frees a span without exporting it. Accepts NULL. */
void sk_span_free(sk_span *s);

/* The span whose work runs now: the parent of the CLIENT spans of the gateway commands and
 * HTTP requests started meanwhile, its ids on the log lines written meanwhile. Set around a
 * task's callbacks (the dispatcher) and restored afterwards. The active context is a copy of
 * the span's ids, so a span that ends while active leaves nothing dangling. */
typedef struct sk_span_scope {
    int set;
    sk_trace_ctx ctx;
    char trace_hex[33], span_hex[17];
} sk_span_scope;
/* Makes s active (NULL: none) and saves the one active before into *prev; sk_span_leave(prev)
 * makes that one active again. Enter and leave pair up like a stack. */
void sk_span_enter(const sk_span *s, sk_span_scope *prev);
void sk_span_leave(const sk_span_scope *prev);
/* The context a CLIENT span takes as its parent: ctx when it is valid (not NULL), else the
 * active span's, else NULL (a new trace). */
const sk_trace_ctx *sk_span_parent_or_active(const sk_trace_ctx *ctx);

#endif
