/* The span of one task, named and attributed from the task's payload: Kafka records by the
 * OpenTelemetry messaging conventions (`process <topic>`, CONSUMER, messaging.*), Zeebe jobs
 * with the equivalent (`process <job type>`, CONSUMER, zeebe.* attributes; see
 * docs/operations.md "Tracing"). The dispatcher calls these; sources know nothing of tracing. */
#ifndef SK_TRACE_TASK_H
#define SK_TRACE_TASK_H

#include <jansson.h>

#include "handler/frame.h"
#include "trace/trace.h"

/* Settings the task spans read: the Zeebe variable carrying `traceparent` (NULL: the default
 * "traceparent") and the Kafka consumer group. Strings are copied. */
void sk_trace_task_settings(const char *zeebe_variable, const char *kafka_group);

/* Starts the span of a task of source ("kafka", "zeebe") on route. The parent is the task's
 * incoming context (Kafka headers `traceparent`/`tracestate`, the Zeebe variable), a new trace
 * when there is none or it is invalid. Sets payload's "traceparent" (and "tracestate") to the
 * span, so the handler's spans nest under it. NULL when out of memory. */
sk_span *sk_trace_task_begin(const char *source, const char *route, json_t *payload);

/* The same for a Kafka record whose task frame its source writes as text: the record's
 * metadata (key NULL when it has none or it is not UTF-8) and its `traceparent`/`tracestate`
 * header values (NULL when absent). The caller puts the span's traceparent (and tracestate)
 * into the frame. NULL when out of memory. */
typedef struct {
    const char *route, *topic;
    const char *key, *tp, *ts;
    size_t key_len, tp_len, ts_len;
    int32_t partition;
    int64_t offset;
} sk_trace_kafka_rec;
sk_span *sk_trace_kafka_begin(const sk_trace_kafka_rec *rec);

/* Status and error.type from a handler's result frame (complete/ack leave the status unset;
 * fail, nack, dead letter and bpmn_error set ERROR with that error.type). */
void sk_trace_task_result(sk_span *s, const sk_msg *m);

/* The PRODUCER span `send <topic>` of a handler's `produce` call (messaging conventions), child
 * of the `traceparent` the handler put in the record's headers (headers: the call's object,
 * NULL when none), else of a new trace. out receives the span's traceparent, which the
 * produced record carries instead. NULL when out of memory. */
sk_span *sk_trace_produce_begin(const char *topic, const char *key, const json_t *headers,
                                char out[SK_TRACEPARENT_LEN + 1]);
/* Ends it: delivered (partition and offset set), or with error.type `produce_failed`. */
void sk_trace_produce_end(sk_span *s, int delivered, int32_t partition, int64_t offset);

#endif
