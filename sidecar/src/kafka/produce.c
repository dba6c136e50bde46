/* The handlers' `produce` call: the value (JSON) is validated against the latest schema of the
 * subject `<topic>-value` (TopicNameStrategy), encoded to Avro in the Confluent wire format and
 * produced; the reply waits for the delivery report. Nothing is written when validation fails. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "kafka/internal.h"
#include "trace/task.h"

typedef struct pcall {
    sk_kafka *k;
    sk_reply *reply;
    char *topic;
    char *key; /* may hold NUL bytes: keylen is its length */
    size_t keylen;
    json_t *value;
    rd_kafka_headers_t *headers;
    sk_registry_lookup *lookup;
    int32_t schema_id;
    sk_span *span;             /* PRODUCER span, ended with the call */
    struct pcall *prev, *next; /* in k->calls while the lookup runs */
} pcall;

static void unlink_call(pcall *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        c->k->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

static void pcall_free(pcall *c)
{
    if (c->span) /* not delivered */
        sk_trace_produce_end(c->span, 0, 0, 0);
    free(c->topic);
    free(c->key);
    json_decref(c->value);
    if (c->headers)
        rd_kafka_headers_destroy(c->headers);
    free(c);
}

static void delivered(void *ud, rd_kafka_resp_err_t err, int32_t partition, int64_t offset)
{
    pcall *c = ud;
    if (!err) {
        sk_trace_produce_end(c->span, 1, partition, offset);
        c->span = NULL;
    }
    if (err)
        sk_reply_error(c->reply, "produce_failed", "%s: %s", c->topic, rd_kafka_err2str(err));
    else
        sk_reply_ok(c->reply, json_pack("{s:s, s:i, s:I, s:i}", "topic", c->topic, "partition",
                                        (int)partition, "offset", (json_int_t)offset, "schema_id",
                                        (int)c->schema_id));
    pcall_free(c);
}

/* Encodes with schema and sends; answers the call on any failure. */
static void encode_and_send(pcall *c, const sk_avro_schema *schema, int32_t id)
{
    char err[512];
    size_t len = 0;
    uint8_t *body = sk_avro_from_json(schema, c->value, &len, err, sizeof err);
    uint8_t *buf = body ? malloc(len + SK_AVRO_WIRE_HEADER) : NULL;
    if (!buf) {
        if (body) {
            sk_reply_error(c->reply, "produce_failed", "out of memory");
        } else {
            /* Refused for its content: the handler hears why, and so does the operator. */
            kproducer_count(c->k->producer, c->topic, "invalid_value");
            SK_LOG(SK_LOG_WARN, "kafka", NULL, SK_KV("topic", c->topic, "reason", "invalid_value"),
                   "produce refused, nothing written: the value does not match schema %d of "
                   "subject %s-value: %s",
                   (int)id, c->topic, err);
            sk_reply_error(c->reply, "invalid_value", "%s (subject %s-value, schema id %d)", err,
                           c->topic, (int)id);
        }
        free(body);
        pcall_free(c);
        return;
    }
    sk_avro_wire_header((uint32_t)id, buf);
    memcpy(buf + SK_AVRO_WIRE_HEADER, body, len);
    free(body);
    c->schema_id = id;
    rd_kafka_headers_t *h = c->headers;
    c->headers = NULL;
    int rc = kproducer_send(c->k->producer, c->topic, c->key, c->keylen, buf,
                            len + SK_AVRO_WIRE_HEADER, h, delivered, c, err, sizeof err);
    free(buf);
    if (rc != 0) {
        /* A full queue wrote nothing and clears with time: the caller may retry. */
        sk_reply_error(c->reply, rc == KPRODUCER_FULL ? "unavailable" : "produce_failed", "%s: %s",
                       c->topic, err);
        pcall_free(c);
    }
}

static void schema_found(void *ud, sk_reg_status st, int32_t id, const sk_avro_schema *schema,
                         const char *err)
{
    pcall *c = ud;
    c->lookup = NULL;
    unlink_call(c);
    if (st == SK_REG_OK)
        encode_and_send(c, schema, id);
    else {
        sk_reply_error(c->reply, st == SK_REG_UNAVAILABLE ? "unavailable" : "schema_not_found",
                       "%s", err ? err : "no schema");
        pcall_free(c);
    }
}

/* Reads the call's params into c; answers invalid_params and returns -1 when they are wrong. */
static int read_params(pcall *c, const json_t *params)
{
    json_t *topic = json_object_get(params, "topic"), *key = json_object_get(params, "key");
    json_t *headers = json_object_get(params, "headers");
    const char *bad = !json_is_string(topic) || json_string_length(topic) == 0 ||
                              strlen(json_string_value(topic)) != json_string_length(topic)
                          ? "\"topic\" must be a non-empty string without U+0000"
                      : !json_object_get(params, "value") ? "\"value\" is required"
                      : key && !json_is_string(key)       ? "\"key\" must be a string"
                      : headers && !json_is_object(headers)
                          ? "\"headers\" must be an object of strings"
                          : NULL;
    const char *name;
    json_t *v;
    json_object_foreach(headers, name, v) if (!bad && !json_is_string(v)) bad =
        "\"headers\" must be an object of strings";
    if (bad) {
        sk_reply_error(c->reply, "invalid_params", "%s", bad);
        return -1;
    }
    c->topic = strdup(json_string_value(topic));
    /* Key and header values are bytes: a U+0000 in them is kept (they are not C strings). */
    c->keylen = key ? json_string_length(key) : 0;
    c->key = key ? malloc(c->keylen + 1) : NULL;
    if (c->key)
        memcpy(c->key, json_string_value(key), c->keylen + 1);
    c->value = json_incref(json_object_get(params, "value"));
    if (!c->topic || (key && !c->key)) {
        sk_reply_error(c->reply, "produce_failed", "out of memory");
        return -1;
    }
    char tp[SK_TRACEPARENT_LEN + 1];
    c->span = sk_trace_produce_begin(c->topic, c->key, headers, tp);
    c->headers = rd_kafka_headers_new(json_object_size(headers) + 1);
    json_object_foreach(headers, name, v) if (strcmp(name, "traceparent") != 0) rd_kafka_header_add(
        c->headers, name, -1, json_string_value(v), (ssize_t)json_string_length(v));
    if (c->span) /* the record's context is the PRODUCER span */
        rd_kafka_header_add(c->headers, "traceparent", -1, tp, -1);
    return 0;
}

static void method_produce(void *ud, const json_t *params, sk_reply *reply)
{
    sk_kafka *k = ud;
    pcall *c = calloc(1, sizeof *c);
    if (!c) {
        sk_reply_error(reply, "produce_failed", "out of memory");
        return;
    }
    *c = (pcall){.k = k, .reply = reply};
    if (read_params(c, params) != 0) {
        pcall_free(c);
        return;
    }
    char subject[512];
    int32_t id;
    snprintf(subject, sizeof subject, "%s-value", c->topic);
    const sk_avro_schema *schema = sk_registry_cached_latest(k->registry, subject, &id);
    if (schema) {
        encode_and_send(c, schema, id);
        return;
    }
    if (!(c->lookup = sk_registry_latest(k->registry, subject, schema_found, c))) {
        sk_reply_error(reply, "unavailable", "cannot look up subject %s", subject);
        pcall_free(c);
        return;
    }
    if ((c->next = k->calls))
        k->calls->prev = c;
    k->calls = c;
}

void kproduce_cancel_all(sk_kafka *k)
{
    while (k->calls) {
        pcall *c = k->calls;
        unlink_call(c);
        sk_registry_cancel(c->lookup);
        sk_reply_error(c->reply, "unavailable", "skiff is shutting down");
        pcall_free(c);
    }
}

int kproduce_register(sk_kafka *k)
{
    return sk_dispatcher_add_method(k->d, "produce", method_produce, k);
}
