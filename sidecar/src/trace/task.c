#include "trace/task.h"

#include <stdlib.h>
#include <string.h>

#include "trace/internal.h"

static char *zeebe_var, *kafka_group;

void sk_trace_task_settings(const char *zeebe_variable, const char *group)
{
    free(zeebe_var);
    free(kafka_group);
    zeebe_var = zeebe_variable ? strdup(zeebe_variable) : NULL;
    kafka_group = group && *group ? strdup(group) : NULL;
}

/* The incoming context in obj's members tp_name / "tracestate"; 0 or -1 (none or invalid). */
static int context_from(const json_t *obj, const char *tp_name, sk_trace_ctx *ctx)
{
    const json_t *tp = json_object_get(obj, tp_name), *ts = json_object_get(obj, "tracestate");
    if (!json_is_string(tp) ||
        sk_traceparent_parse(json_string_value(tp), json_string_length(tp), ctx))
        return -1;
    ctx->tracestate[0] = '\0';
    if (json_is_string(ts) &&
        sk_tracestate_valid(json_string_value(ts), json_string_length(ts)) == 0)
        memcpy(ctx->tracestate, json_string_value(ts), json_string_length(ts) + 1);
    return 0;
}

static void zeebe_attrs(sk_span *s, const json_t *payload, const json_t *z)
{
    static const char *const strs[][2] = {
        {"key", "zeebe.job.key"},
        {"process_instance_key", "zeebe.process_instance.key"},
        {"bpmn_process_id", "zeebe.bpmn_process_id"},
        {"element_id", "zeebe.element_id"},
        {"element_instance_key", "zeebe.element_instance.key"},
        {"tenant_id", "zeebe.tenant_id"},
    };
    sk_span_set_str(s, "messaging.system", "zeebe");
    sk_span_set_str(s, "messaging.operation.type", "process");
    sk_span_set_str(s, "zeebe.job.type", json_string_value(json_object_get(payload, "job_type")));
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        sk_span_set_str(s, strs[i][1], json_string_value(json_object_get(z, strs[i][0])));
    sk_span_set_int(s, "zeebe.job.retries", json_integer_value(json_object_get(z, "retries")));
}

/* The incoming context of a Kafka record: its traceparent / tracestate header values. */
static int context_from_text(const sk_trace_kafka_rec *rec, sk_trace_ctx *ctx)
{
    if (!rec->tp || sk_traceparent_parse(rec->tp, rec->tp_len, ctx))
        return -1;
    ctx->tracestate[0] = '\0';
    if (rec->ts && rec->ts_len < sizeof ctx->tracestate &&
        sk_tracestate_valid(rec->ts, rec->ts_len) == 0) {
        memcpy(ctx->tracestate, rec->ts, rec->ts_len);
        ctx->tracestate[rec->ts_len] = '\0';
    }
    return 0;
}

sk_span *sk_trace_kafka_begin(const sk_trace_kafka_rec *rec)
{
    sk_trace_ctx parent;
    char part[24];
    int found = context_from_text(rec, &parent);
    sk_span *s = sk_span_start(found == 0 ? &parent : NULL, NULL, SK_SPAN_CONSUMER);
    if (!s || !sk_span_read(s)) /* every record has a span: its name and attributes when exported */
        return s;
    if (sk_span_name(s, "process ", rec->route) < 0) {
        sk_span_free(s);
        return NULL;
    }
    sk_span_set_str(s, "messaging.system", "kafka");
    sk_span_set_str(s, "messaging.operation.name", "process");
    sk_span_set_str(s, "messaging.operation.type", "process");
    sk_span_set_str(s, "messaging.destination.name", rec->topic);
    sk_span_set_str(s, "messaging.consumer.group.name", kafka_group);
    snprintf(part, sizeof part, "%d", (int)rec->partition);
    sk_span_set_str(s, "messaging.destination.partition.id", part);
    sk_span_set_int(s, "messaging.kafka.offset", rec->offset);
    char *key = rec->key ? strndup(rec->key, rec->key_len) : NULL;
    sk_span_set_str(s, "messaging.kafka.message.key", key);
    free(key);
    return s;
}

/* The span of a Kafka task whose payload is a JSON tree (the members of its task frame). */
static sk_span *kafka_begin_json(const char *route, const json_t *k)
{
    const json_t *h = json_object_get(k, "headers"), *key = json_object_get(k, "key");
    const json_t *tp = json_object_get(h, "traceparent"), *ts = json_object_get(h, "tracestate");
    sk_trace_kafka_rec rec = {.route = route,
                              .topic = json_string_value(json_object_get(k, "topic")),
                              .key = json_string_value(key),
                              .key_len = json_string_length(key),
                              .tp = json_string_value(tp),
                              .tp_len = json_string_length(tp),
                              .ts = json_string_value(ts),
                              .ts_len = json_string_length(ts),
                              .partition =
                                  (int32_t)json_integer_value(json_object_get(k, "partition")),
                              .offset = json_integer_value(json_object_get(k, "offset"))};
    return sk_trace_kafka_begin(&rec);
}

sk_span *sk_trace_task_begin(const char *source, const char *route, json_t *payload)
{
    sk_span *s;
    if (strcmp(source, "kafka") == 0) {
        s = kafka_begin_json(route, json_object_get(payload, "kafka"));
    } else {
        sk_trace_ctx parent;
        char name[300];
        int found = context_from(json_object_get(payload, "variables"),
                                 zeebe_var ? zeebe_var : "traceparent", &parent);
        snprintf(name, sizeof name, "process %s", route);
        s = sk_span_start(found == 0 ? &parent : NULL, name, SK_SPAN_CONSUMER);
        if (s && strcmp(source, "zeebe") == 0)
            zeebe_attrs(s, payload, json_object_get(payload, "zeebe"));
    }
    if (!s)
        return NULL;
    char tp[SK_TRACEPARENT_LEN + 1];
    sk_span_traceparent(s, tp);
    json_object_set_new(payload, "traceparent", json_string(tp));
    if (s->ctx.tracestate[0])
        json_object_set_new(payload, "tracestate", json_string(s->ctx.tracestate));
    else
        json_object_del(payload, "tracestate");
    return s;
}

void sk_trace_task_result(sk_span *s, const sk_msg *m)
{
    if (!s)
        return;
    switch (m->type) {
    case SK_MSG_FAIL:
        sk_span_set_error(s, "fail", m->message);
        break;
    case SK_MSG_NACK:
        sk_span_set_error(s, m->dead_letter ? "dead_letter" : "nack", m->message);
        break;
    case SK_MSG_BPMN_ERROR:
        sk_span_set_error(s, "bpmn_error", m->message);
        sk_span_set_str(s, "zeebe.bpmn_error.code", m->code);
        break;
    default:
        break;
    }
}

sk_span *sk_trace_produce_begin(const char *topic, const char *key, const json_t *headers,
                                char out[SK_TRACEPARENT_LEN + 1])
{
    sk_trace_ctx parent;
    char name[300];
    snprintf(name, sizeof name, "send %s", topic);
    int found = context_from(headers, "traceparent", &parent);
    sk_span *s = sk_span_start(found == 0 ? &parent : NULL, name, SK_SPAN_PRODUCER);
    if (!s)
        return NULL;
    sk_span_set_str(s, "messaging.system", "kafka");
    sk_span_set_str(s, "messaging.operation.name", "send");
    sk_span_set_str(s, "messaging.operation.type", "send");
    sk_span_set_str(s, "messaging.destination.name", topic);
    sk_span_set_str(s, "messaging.kafka.message.key", key);
    sk_span_traceparent(s, out);
    return s;
}

void sk_trace_produce_end(sk_span *s, int delivered, int32_t partition, int64_t offset)
{
    if (!s)
        return;
    if (delivered) {
        char part[16];
        snprintf(part, sizeof part, "%d", (int)partition);
        sk_span_set_str(s, "messaging.destination.partition.id", part);
        sk_span_set_int(s, "messaging.kafka.offset", offset);
    } else {
        sk_span_set_error(s, "produce_failed", NULL);
    }
    sk_span_end(s);
}
