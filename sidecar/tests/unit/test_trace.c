/* W3C Trace Context parsing, the sampler, task spans from Kafka and Zeebe payloads, and the
 * OTLP encoding (decoded again with the generated protobuf-c code). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "otlp_trace.pb-c.h"
#include "trace/internal.h"
#include "trace/task.h"

#define TP "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

static int parse(const char *s, sk_trace_ctx *c)
{
    return sk_traceparent_parse(s, strlen(s), c);
}

static void test_traceparent_valid(void **state)
{
    (void)state;
    sk_trace_ctx c;
    char out[SK_TRACEPARENT_LEN + 1];
    assert_int_equal(parse(TP, &c), 0);
    assert_int_equal(c.trace_id[0], 0x0a);
    assert_int_equal(c.span_id[7], 0x31);
    assert_int_equal(c.flags, 1);
    sk_traceparent_format(c.trace_id, c.span_id, c.flags, out);
    assert_string_equal(out, TP);
    /* a future version may carry more fields after a dash */
    assert_int_equal(parse("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00-x", &c), 0);
    assert_int_equal(c.flags, 0);
}

static void test_traceparent_invalid(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-",
        "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0g",
        "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01x",
        "not a traceparent at all, but long enough to be checked.....",
    };
    sk_trace_ctx c;
    memset(&c, 0x5a, sizeof c);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(parse(bad[i], &c), -1);
        assert_int_equal(c.flags, 0x5a); /* untouched */
    }
}

static int ts(const char *s)
{
    return sk_tracestate_valid(s, strlen(s));
}

static void test_tracestate(void **state)
{
    (void)state;
    assert_int_equal(ts(""), 0);
    assert_int_equal(ts("congo=t61rcWkgMzE"), 0);
    assert_int_equal(ts("rojo=00f067aa0ba902b7, congo=t61rcWkgMzE ,,"), 0);
    assert_int_equal(ts("tenant1@vendor=x"), 0);
    assert_int_equal(ts("1tenant@vendor=x"), 0);
    assert_int_equal(ts("Rojo=1"), -1);        /* upper case key */
    assert_int_equal(ts("rojo"), -1);          /* no value */
    assert_int_equal(ts("rojo=1,rojo=2"), -1); /* duplicate key */
    assert_int_equal(ts("rojo=a=b"), -1);
    assert_int_equal(ts("t@=x"), -1);
    char many[400] = "";
    for (int i = 0; i < 33; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many), "%sk%d=v", i ? "," : "", i);
    assert_int_equal(ts(many), -1); /* 33 members */
}

static void test_sampler(void **state)
{
    (void)state;
    sk_sampler s;
    uint8_t low[16] = {0}, high[16];
    memset(high, 0xff, sizeof high);
    sk_trace_ctx sampled = {.flags = 1}, unsampled = {.flags = 0};
    assert_int_equal(sk_sampler_parse(&s, "parentbased_traceidratio", "0.5"), 0);
    assert_int_equal(sk_sampler_decide(&s, low, NULL), 1);
    assert_int_equal(sk_sampler_decide(&s, high, NULL), 0);
    assert_int_equal(sk_sampler_decide(&s, high, &sampled), 1);
    assert_int_equal(sk_sampler_decide(&s, low, &unsampled), 0);
    assert_int_equal(sk_sampler_parse(&s, "traceidratio", "0.5"), 0);
    assert_int_equal(sk_sampler_decide(&s, high, &sampled), 0);
    assert_int_equal(sk_sampler_parse(&s, "always_off", NULL), 0);
    assert_int_equal(sk_sampler_decide(&s, low, NULL), 0);
    assert_int_equal(sk_sampler_parse(&s, "traceidratio", "2"), -1);
    assert_int_equal(sk_sampler_parse(&s, "traceidratio", "half"), -1);
    assert_int_equal(sk_sampler_parse(&s, "jaeger_remote", NULL), -1);
}

static const char *attr(const sk_span *s, const char *key)
{
    for (unsigned i = 0; i < s->nattrs; i++)
        if (strcmp(s->attrs[i].key, key) == 0)
            return s->attrs[i].str ? s->attrs[i].str : "(int)";
    return NULL;
}

static json_t *kafka_payload(const char *traceparent)
{
    json_t *h = json_object();
    if (traceparent)
        json_object_set_new(h, "traceparent", json_string(traceparent));
    json_object_set_new(h, "tracestate", json_string("rojo=00f067aa0ba902b7"));
    return json_pack("{s:s, s:{s:s, s:i, s:i, s:s, s:o}}", "topic", "orders", "kafka", "topic",
                     "orders", "partition", 3, "offset", 42, "key", "k1", "headers", h);
}

static void test_kafka_span(void **state)
{
    (void)state;
    sk_trace_task_settings(NULL, "group-a");
    json_t *p = kafka_payload(TP);
    sk_span *s = sk_trace_task_begin("kafka", "orders", p);
    assert_non_null(s);
    assert_string_equal(s->name, "process orders");
    assert_int_equal(s->kind, SK_SPAN_CONSUMER);
    assert_true(s->has_parent);
    assert_string_equal(s->trace_hex, "0af7651916cd43dd8448eb211c80319c");
    assert_memory_equal(s->parent_span_id, "\xb7\xad\x6b\x71\x69\x20\x33\x31", 8);
    assert_string_equal(attr(s, "messaging.system"), "kafka");
    assert_string_equal(attr(s, "messaging.destination.name"), "orders");
    assert_string_equal(attr(s, "messaging.destination.partition.id"), "3");
    assert_string_equal(attr(s, "messaging.consumer.group.name"), "group-a");
    assert_string_equal(attr(s, "messaging.kafka.message.key"), "k1");
    char tp[SK_TRACEPARENT_LEN + 1];
    sk_span_traceparent(s, tp);
    assert_string_equal(json_string_value(json_object_get(p, "traceparent")), tp);
    assert_string_not_equal(tp, TP); /* the task's own span, child of the record's */
    assert_string_equal(json_string_value(json_object_get(p, "tracestate")),
                        "rojo=00f067aa0ba902b7");
    sk_span_free(s);
    json_decref(p);
    sk_trace_task_settings(NULL, NULL);
}

/* A record's span keeps its ids (the handler's traceparent) but skips its name, times and
 * attributes when nobody reads them: the installed tracer exports nothing, or the span is not
 * sampled. */
static void test_kafka_span_unread(void **state)
{
    (void)state;
    sk_trace_kafka_rec rec = {.route = "orders", .topic = "orders", .key = "k1", .key_len = 2};
    sk_tracer t;
    memset(&t, 0, sizeof t); /* always_on sampler, no endpoint */
    sk_tracer_install(&t);
    sk_span *s = sk_trace_kafka_begin(&rec);
    assert_non_null(s);
    assert_int_equal(s->nattrs, 0);
    assert_null(s->name);
    assert_true(s->start_ns == 0);
    assert_false(sk_span_read(s));
    assert_true(s->ctx.flags & SK_TRACE_SAMPLED);
    assert_int_equal(strlen(s->trace_hex), 32);
    sk_span_free(s);
    t.exporting = 1; /* an endpoint: the same record's span is complete */
    s = sk_trace_kafka_begin(&rec);
    assert_true(sk_span_read(s));
    assert_string_equal(s->name, "process orders");
    assert_true(s->start_ns > 0);
    assert_string_equal(attr(s, "messaging.destination.name"), "orders");
    assert_string_equal(attr(s, "messaging.kafka.message.key"), "k1");
    sk_span_free(s);
    t.sampler.root = SK_SAMPLE_ALWAYS_OFF; /* exported, but this span is not sampled */
    s = sk_trace_kafka_begin(&rec);
    assert_false(s->ctx.flags & SK_TRACE_SAMPLED);
    assert_int_equal(s->nattrs, 0);
    assert_null(s->name);
    sk_span_free(s);
    sk_tracer_install(NULL);
    t.sampler.root = SK_SAMPLE_ALWAYS_ON; /* no tracer installed (library use): kept whole */
    s = sk_trace_kafka_begin(&rec);
    assert_true(sk_span_read(s));
    assert_string_equal(s->name, "process orders");
    assert_string_equal(attr(s, "messaging.kafka.message.key"), "k1");
    sk_span_free(s);
}

static void test_invalid_context_new_trace(void **state)
{
    (void)state;
    json_t *p = kafka_payload("00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01");
    sk_span *s = sk_trace_task_begin("kafka", "orders", p);
    assert_false(s->has_parent);
    assert_string_not_equal(s->trace_hex, "0af7651916cd43dd8448eb211c80319c");
    assert_int_equal(s->ctx.flags, SK_TRACE_SAMPLED); /* default: parent-based always on */
    assert_null(json_object_get(p, "tracestate"));    /* no context, no state */
    sk_span_free(s);
    json_decref(p);
}

static json_t *zeebe_payload(const char *var, const char *traceparent)
{
    return json_pack("{s:s, s:{s:s}, s:{}, s:{s:s, s:s, s:s, s:s, s:i}}", "job_type", "charge",
                     "variables", var, traceparent, "headers", "zeebe", "key", "2251799813685255",
                     "process_instance_key", "2251799813685249", "bpmn_process_id", "order",
                     "element_id", "charge-card", "retries", 3);
}

static void test_zeebe_span(void **state)
{
    (void)state;
    sk_trace_task_settings("otelContext", NULL);
    json_t *p = zeebe_payload("otelContext", TP);
    sk_span *s = sk_trace_task_begin("zeebe", "charge", p);
    assert_string_equal(s->name, "process charge");
    assert_true(s->has_parent);
    assert_string_equal(s->trace_hex, "0af7651916cd43dd8448eb211c80319c");
    assert_string_equal(attr(s, "zeebe.job.type"), "charge");
    assert_string_equal(attr(s, "zeebe.job.key"), "2251799813685255");
    assert_string_equal(attr(s, "zeebe.process_instance.key"), "2251799813685249");
    assert_string_equal(attr(s, "zeebe.bpmn_process_id"), "order");
    assert_string_equal(attr(s, "zeebe.element_id"), "charge-card");
    assert_string_equal(attr(s, "zeebe.job.retries"), "(int)");
    sk_msg m = {.type = SK_MSG_BPMN_ERROR, .message = "declined", .code = "CARD_DECLINED"};
    sk_trace_task_result(s, &m);
    assert_true(s->error);
    assert_string_equal(attr(s, "error.type"), "bpmn_error");
    assert_string_equal(s->message, "declined");
    sk_span_free(s);
    json_decref(p);
    /* the default variable name no longer applies */
    p = zeebe_payload("traceparent", TP);
    s = sk_trace_task_begin("zeebe", "charge", p);
    assert_false(s->has_parent);
    sk_span_free(s);
    json_decref(p);
    sk_trace_task_settings(NULL, NULL);
}

static void test_otlp_encoding(void **state)
{
    (void)state;
    json_t *p = kafka_payload(TP);
    sk_span *s = sk_trace_task_begin("kafka", "orders", p);
    sk_msg m = {.type = SK_MSG_NACK, .message = "no", .dead_letter = 1};
    sk_trace_task_result(s, &m);
    s->end_ns = s->start_ns + 1000;
    size_t len;
    uint8_t *buf =
        sk_otlp_encode(&s, 1, "svc", "deployment.environment=test%2Cx, k8s.pod.name=p", &len);
    assert_non_null(buf);
    SkiffOtlp__ExportTraceServiceRequest *req =
        skiff_otlp__export_trace_service_request__unpack(NULL, len, buf);
    assert_non_null(req);
    assert_int_equal(req->n_resource_spans, 1);
    SkiffOtlp__Resource *r = req->resource_spans[0]->resource;
    assert_string_equal(r->attributes[0]->key, "service.name");
    assert_string_equal(r->attributes[0]->value->string_value, "svc");
    assert_int_equal(r->n_attributes, 5);
    assert_string_equal(r->attributes[3]->value->string_value, "test,x");
    assert_string_equal(r->attributes[4]->key, "k8s.pod.name");
    SkiffOtlp__Span *o = req->resource_spans[0]->scope_spans[0]->spans[0];
    assert_string_equal(o->name, "process orders");
    assert_int_equal(o->kind, SKIFF_OTLP__SPAN__SPAN_KIND__SPAN_KIND_CONSUMER);
    assert_memory_equal(o->trace_id.data, s->ctx.trace_id, 16);
    assert_memory_equal(o->parent_span_id.data, s->parent_span_id, 8);
    assert_int_equal(o->end_time_unix_nano - o->start_time_unix_nano, 1000);
    assert_int_equal(o->status->code, SKIFF_OTLP__STATUS__STATUS_CODE__STATUS_CODE_ERROR);
    assert_string_equal(o->trace_state, "rojo=00f067aa0ba902b7");
    int found = 0;
    for (size_t i = 0; i < o->n_attributes; i++)
        if (strcmp(o->attributes[i]->key, "error.type") == 0)
            found = strcmp(o->attributes[i]->value->string_value, "dead_letter") == 0;
        else if (strcmp(o->attributes[i]->key, "messaging.kafka.offset") == 0)
            assert_int_equal(o->attributes[i]->value->int_value, 42);
    assert_true(found);
    skiff_otlp__export_trace_service_request__free_unpacked(req, NULL);
    free(buf);
    sk_span_free(s);
    json_decref(p);
}

static void test_produce_span(void **state)
{
    (void)state;
    char tp[SK_TRACEPARENT_LEN + 1];
    json_t *h = json_pack("{s:s}", "traceparent", TP);
    sk_span *s = sk_trace_produce_begin("out", "k", h, tp);
    assert_string_equal(s->name, "send out");
    assert_int_equal(s->kind, SK_SPAN_PRODUCER);
    assert_true(s->has_parent);
    assert_string_equal(s->trace_hex, "0af7651916cd43dd8448eb211c80319c");
    assert_memory_equal(tp, TP, 36); /* same version and trace */
    assert_memory_equal(tp + 36, s->span_hex, 16);
    assert_string_equal(attr(s, "messaging.operation.name"), "send");
    sk_span_free(s);
    s = sk_trace_produce_begin("out", NULL, NULL, tp); /* no headers: a new trace */
    assert_false(s->has_parent);
    assert_null(attr(s, "messaging.kafka.message.key"));
    sk_span_free(s);
    json_decref(h);
}

/* Ids drawn through the pool: never zero, never repeated (across several pool refills). */
static int cmp_ids(const void *a, const void *b)
{
    return memcmp(a, b, 16);
}

static void test_fresh_ids(void **state)
{
    (void)state;
    enum { N = 2000 }; /* 2000 x 24 bytes: about 12 refills of the 4 KiB pool */
    static uint8_t ids[N][16];
    for (int i = 0; i < N; i++) {
        uint8_t span[8];
        sk_trace_new_trace_id(ids[i]);
        sk_trace_new_span_id(span);
        assert_false(sk_trace_id_zero(ids[i], 16));
        assert_false(sk_trace_id_zero(span, 8));
    }
    qsort(ids, N, 16, cmp_ids);
    for (int i = 1; i < N; i++)
        assert_memory_not_equal(ids[i - 1], ids[i], 16);
}

/* The downward API's pod name and namespace join the resource unless OTEL_RESOURCE_ATTRIBUTES
 * names them; odd characters are encoded so the list still parses. */
static void test_k8s_resource(void **state)
{
    (void)state;
    char *r = sk_trace_resource("deployment.environment=test", "pod-7", "ns1");
    assert_string_equal(r, "deployment.environment=test,k8s.pod.name=pod-7,k8s.namespace.name=ns1");
    free(r);
    r = sk_trace_resource(" k8s.pod.name =mine", "pod-7", NULL);
    assert_string_equal(r, " k8s.pod.name =mine");
    free(r);
    r = sk_trace_resource("", "a,b=c%", "");
    assert_string_equal(r, "k8s.pod.name=a%2Cb%3Dc%25");
    free(r);
    r = sk_trace_resource(NULL, NULL, NULL);
    assert_string_equal(r, "");
    free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_traceparent_valid), cmocka_unit_test(test_traceparent_invalid),
        cmocka_unit_test(test_tracestate),        cmocka_unit_test(test_sampler),
        cmocka_unit_test(test_kafka_span),        cmocka_unit_test(test_invalid_context_new_trace),
        cmocka_unit_test(test_zeebe_span),        cmocka_unit_test(test_otlp_encoding),
        cmocka_unit_test(test_produce_span),      cmocka_unit_test(test_k8s_resource),
        cmocka_unit_test(test_fresh_ids),         cmocka_unit_test(test_kafka_span_unread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
