/* One record from the poll to its commit: Avro decoding (schema by id from the registry), the
 * task handed to the dispatcher, ack / nack / deadline / lost handler, retry backoff, and the
 * dead-letter write to <topic>.dlq that counts as processed once confirmed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/text.h"
#include "kafka/internal.h"
#include "schema/avro_text.h"
#include "trace/task.h"

static void op_ack(void *source, void *ctx, const sk_msg *m);
static void op_nack(void *source, void *ctx, const sk_msg *m);
static void op_abandon(void *source, void *ctx, const char *why);
static void op_reject(void *source, void *ctx, const char *reason, const char *why);
static void op_extend(void *source, void *ctx, int64_t timeout_ms, sk_reply *reply);

static const sk_source_ops kafka_ops = {
    .name = "kafka",
    .results = SK_RESULT(SK_MSG_ACK) | SK_RESULT(SK_MSG_NACK),
    .complete = op_ack,
    .fail = op_nack,
    .error = op_nack,
    .abandon = op_abandon,
    .reject = op_reject,
    .extend = op_extend,
};

static void count(sk_metric *m, const char *topic, const char *what)
{
    const char *const labels[] = {topic, what, NULL};
    sk_series_add(sk_metric_series(m, labels), 1);
}

/* Runs fn once after tv on the record's timer (embedded in the record: a record costs no
 * timer allocation). */
static void arm_tv(krec *r, const struct timeval *tv, event_callback_fn fn)
{
    if (r->armed)
        event_del(&r->timer);
    r->armed = event_assign(&r->timer, r->p->k->base, -1, 0, fn, r) == 0;
    if (!r->armed || event_add(&r->timer, tv) != 0)
        SK_ERROR("kafka", "cannot arm a timer for %s[%d]@%lld", r->p->topic, (int)r->p->partition,
                 (long long)r->offset);
}

/* Runs fn once after ms on the record's timer. */
static void arm(krec *r, int64_t ms, event_callback_fn fn)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    arm_tv(r, &tv, fn);
}

/* Runs fn at the record's deadline, kafka.task_timeout from now: every record's deadline is
 * as far, so they share libevent's common timeout queue (no heap operation per record). */
static void arm_deadline(krec *r, event_callback_fn fn)
{
    sk_kafka *k = r->p->k;
    int64_t ms = k->cfg->kafka_task_timeout_ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    if (!k->deadline_tv)
        k->deadline_tv = event_base_init_common_timeout(k->base, &tv);
    arm_tv(r, k->deadline_tv ? k->deadline_tv : &tv, fn);
}

static void disarm(krec *r)
{
    if (r->armed)
        event_del(&r->timer);
    r->armed = 0;
}

/* ---- the task frame, written as JSON text ---- */

/* Whether the header at index i is repeated later (of repeated names the last one wins). */
static int header_repeated(rd_kafka_headers_t *hdrs, size_t i, const char *name)
{
    const char *other;
    const void *val;
    size_t size;
    for (size_t j = i + 1; rd_kafka_header_get_all(hdrs, j, &other, &val, &size) == 0; j++)
        if (strcmp(name, other) == 0)
            return 1;
    return 0;
}

/* A header the task frame cannot carry: its name is not UTF-8 (a JSON member name must be). */
static void header_dropped(const krec *r, size_t i)
{
    sk_kafka *k = r->p->k;
    const char *const labels[] = {r->p->topic, NULL};
    sk_series_add(sk_metric_series(k->m_hdrdrop, labels), 1);
    SK_LOG(SK_LOG_WARN, "kafka", NULL, SK_KV("topic", r->p->topic),
           "record %d@%lld: header #%zu dropped from the task, its name is not valid UTF-8",
           (int)r->p->partition, (long long)r->offset, i);
}

/* One member `"name":value` of the headers object (utf8: the UTF-8 ones, else the others in
 * base64). Returns -1 (appending nothing) when the name is not UTF-8. */
static int header_member(sk_jtext *t, const char *name, const void *val, size_t size, int *first,
                         int utf8)
{
    size_t mark = t->len;
    sk_jtext_raw(t, ",", *first ? 0 : 1);
    if (sk_jtext_str(t, name, strlen(name)) != 0) {
        t->len = mark;
        return -1;
    }
    sk_jtext_raw(t, ":", 1);
    if (utf8 ? sk_jtext_str(t, val, size) != 0 : (sk_jtext_base64(t, val, size), 0)) {
        t->len = mark;
        return 0;
    }
    *first = 0;
    return 0;
}

/* Notes the value of a `traceparent` or `tracestate` header (UTF-8) for the record's span. */
static void trace_header(sk_trace_kafka_rec *rec, const char *name, const void *val, size_t size)
{
    if (strcmp(name, "traceparent") == 0) {
        rec->tp = val;
        rec->tp_len = size;
    } else if (strcmp(name, "tracestate") == 0) {
        rec->ts = val;
        rec->ts_len = size;
    }
}

/* `"headers":{...}` and, when some value is not UTF-8, `,"headers_base64":{...}`; the
 * traceparent and tracestate header values are noted in rec. */
static void headers_text(sk_jtext *t, const krec *r, sk_trace_kafka_rec *rec)
{
    rd_kafka_headers_t *hdrs;
    const char *name;
    const void *val;
    size_t size, binary = 0;
    if (rd_kafka_message_headers(r->msg, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR)
        hdrs = NULL;
    for (int utf8 = 1; utf8 >= 0; utf8--) {
        if (!utf8 && !binary)
            break;
        int first = 1;
        sk_jtext_lit(t, utf8 ? "\"headers\":{" : ",\"headers_base64\":{");
        for (size_t i = 0; hdrs && rd_kafka_header_get_all(hdrs, i, &name, &val, &size) == 0; i++) {
            int valid = sk_utf8_valid(val, size);
            if (header_repeated(hdrs, i, name) || valid != utf8) {
                binary += !valid;
                continue;
            }
            if (header_member(t, name, val, size, &first, utf8) != 0)
                header_dropped(r, i);
            else if (utf8)
                trace_header(rec, name, val, size);
        }
        sk_jtext_raw(t, "}", 1);
    }
}

/* `"kafka":{...}`: the record's metadata (noted in rec for its span too). */
static void kafka_text(sk_jtext *t, const krec *r, sk_trace_kafka_rec *rec)
{
    const rd_kafka_message_t *m = r->msg;
    sk_jtext_lit(t, "\"kafka\":{\"topic\":");
    sk_jtext_str(t, r->p->topic, strlen(r->p->topic));
    sk_jtext_lit(t, ",\"partition\":");
    sk_jtext_int(t, r->p->partition);
    sk_jtext_lit(t, ",\"offset\":");
    sk_jtext_int(t, r->offset);
    sk_jtext_lit(t, ",\"key\":");
    if (!m->key) {
        sk_jtext_lit(t, "null");
    } else if (sk_jtext_str(t, m->key, m->key_len) != 0) {
        sk_jtext_lit(t, "null,\"key_base64\":");
        sk_jtext_base64(t, m->key, m->key_len);
    } else {
        rec->key = m->key;
        rec->key_len = m->key_len;
    }
    sk_jtext_raw(t, ",", 1);
    headers_text(t, r, rec);
    rd_kafka_timestamp_type_t tstype;
    int64_t ts = rd_kafka_message_timestamp(m, &tstype);
    if (ts >= 0) {
        sk_jtext_lit(t, ",\"timestamp\":");
        sk_jtext_int(t, ts);
    }
    if (r->schema_id >= 0) {
        sk_jtext_lit(t, ",\"schema_id\":");
        sk_jtext_int(t, r->schema_id);
    }
    sk_jtext_raw(t, "}", 1);
}

/* Begins the record's span (its parent the traceparent header) and puts the span's
 * traceparent and tracestate into the frame; without a span (out of memory) the header's
 * traceparent goes on as it came. */
static sk_span *trace_text(sk_jtext *t, const sk_trace_kafka_rec *rec)
{
    char tp[SK_TRACEPARENT_LEN + 1];
    sk_span *span = sk_trace_kafka_begin(rec);
    if (span) {
        sk_span_traceparent(span, tp);
        sk_jtext_lit(t, ",\"traceparent\":\"");
        sk_jtext_lit(t, tp);
        sk_jtext_raw(t, "\"", 1);
        if (span->ctx.tracestate[0]) {
            sk_jtext_lit(t, ",\"tracestate\":");
            sk_jtext_str(t, span->ctx.tracestate, strlen(span->ctx.tracestate));
        }
    } else if (rec->tp) {
        sk_jtext_lit(t, ",\"traceparent\":");
        sk_jtext_str(t, rec->tp, rec->tp_len);
    }
    return span;
}

/* The whole task frame (length header included) of the record's current delivery into
 * k->frame, value the decoded record value (JSON text); returns the record's span. */
static sk_span *task_text(krec *r, const sk_jtext *value, int64_t deadline_ms)
{
    sk_jtext *t = &r->p->k->frame;
    sk_trace_kafka_rec rec = {.route = r->p->topic,
                              .topic = r->p->topic,
                              .partition = r->p->partition,
                              .offset = r->offset};
    sk_jtext_reset(t);
    sk_jtext_raw(t, "\0\0\0\0", SK_FRAME_HEADER); /* the length, set below */
    sk_jtext_lit(t, "{\"type\":\"task\",\"id\":");
    sk_jtext_str(t, r->id, strlen(r->id));
    sk_jtext_lit(t, ",\"source\":\"kafka\",\"deadline\":");
    sk_jtext_int(t, deadline_ms);
    sk_jtext_lit(t, ",\"topic\":");
    sk_jtext_str(t, r->p->topic, strlen(r->p->topic));
    sk_jtext_lit(t, ",\"attempt\":");
    sk_jtext_int(t, r->attempt);
    sk_jtext_lit(t, ",\"value\":");
    sk_jtext_raw(t, value->buf, value->len);
    t->failed |= value->failed;
    sk_jtext_raw(t, ",", 1);
    kafka_text(t, r, &rec);
    sk_span *span = trace_text(t, &rec);
    sk_jtext_raw(t, "}", 1);
    size_t n = t->len - SK_FRAME_HEADER;
    if (!t->failed && t->len >= SK_FRAME_HEADER) {
        t->buf[0] = (char)(n >> 24);
        t->buf[1] = (char)(n >> 16);
        t->buf[2] = (char)(n >> 8);
        t->buf[3] = (char)n;
    }
    return span;
}

/* ---- decoding ---- */

static void dead_letter(krec *r, const char *reason, const char *why);
static void lookup_schema(krec *r, int32_t id);

/* A record whose value skiff cannot decode: counted, then dead-lettered (which logs it). */
static void undecodable(krec *r, const char *why)
{
    sk_dispatcher_undeliverable(r->p->k->d, "kafka", r->p->topic, "undecodable");
    dead_letter(r, "undecodable", why);
}

/* The record's schema is known (NULL: a tombstone): it may start. Its value is decoded only
 * when it does (krec_dispatch), so that records waiting for capacity stay small. */
static void schema_known(krec *r, const sk_avro_schema *schema, int32_t id)
{
    r->schema = schema;
    r->schema_id = id;
    sk_partq_ready(r->p->q, r->offset);
}

/* The id in the record's Confluent header (checked at arrival). */
static int32_t wire_id(const krec *r)
{
    uint32_t id = 0;
    const uint8_t *body;
    size_t len;
    char err[64];
    sk_avro_wire_split(r->msg->payload, r->msg->len, &id, &body, &len, err, sizeof err);
    return (int32_t)id;
}

static void retry_lookup(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    krec *r = arg;
    lookup_schema(r, wire_id(r));
}

static void schema_cb(void *ud, sk_reg_status st, int32_t id, const sk_avro_schema *schema,
                      const char *err)
{
    krec *r = ud;
    r->lookup = NULL;
    if (st == SK_REG_OK) {
        schema_known(r, schema, id);
        kconsumer_pump_soon(r->p->k);
    } else if (st == SK_REG_UNAVAILABLE) {
        int64_t ms = sk_backoff_next(&r->bo);
        SK_LOG(SK_LOG_WARN, "kafka", NULL, SK_KV("topic", r->p->topic),
               "schema %d unavailable, record %d@%lld waits %lld ms: %s", (int)id,
               (int)r->p->partition, (long long)r->offset, (long long)ms, err);
        arm(r, ms, retry_lookup);
    } else {
        undecodable(r, err);
    }
}

static void lookup_schema(krec *r, int32_t id)
{
    if (!(r->lookup = sk_registry_by_id(r->p->k->registry, id, schema_cb, r)))
        arm(r, sk_backoff_next(&r->bo), retry_lookup);
}

/* Finds the record's schema: at once when cached, else after a lookup. Records that cannot be
 * decoded go to the dead-letter topic without reaching a handler. */
static void find_schema(krec *r)
{
    const rd_kafka_message_t *m = r->msg;
    if (!m->payload) { /* a tombstone: no value, no schema */
        schema_known(r, NULL, -1);
        return;
    }
    uint32_t id;
    const uint8_t *body;
    size_t len;
    char err[256], why[300];
    if (sk_avro_wire_split(m->payload, m->len, &id, &body, &len, err, sizeof err) != 0) {
        snprintf(why, sizeof why, "not in the Confluent Avro wire format: %s", err);
        undecodable(r, why);
        return;
    }
    sk_reg_status st;
    const char *cached_err;
    const sk_avro_schema *s = sk_registry_cached(r->p->k->registry, (int32_t)id, &st, &cached_err);
    if (s)
        schema_known(r, s, (int32_t)id);
    else if (st == SK_REG_NOT_FOUND || st == SK_REG_INVALID)
        undecodable(r, cached_err ? cached_err : "unknown schema");
    else
        lookup_schema(r, (int32_t)id);
}

/* A record whose writer's schema or value the topic's reader schema cannot take (resolution,
 * kafka.reader_schemas): counted and dead-lettered like an undecodable one. */
static void incompatible(krec *r, const char *why)
{
    sk_dispatcher_undeliverable(r->p->k->d, "kafka", r->p->topic, "schema_incompatible");
    dead_letter(r, "schema_incompatible", why);
}

/* The value resolved to the topic's reader schema, as JSON text into v: 0, or -1 with err set
 * and *incompat telling a value the reader cannot take from one that does not decode. The
 * resolving decoder builds a tree (not yet written straight to text). */
static int decode_resolved(krec *r, kreader *kr, const uint8_t *body, size_t len, sk_jtext *v,
                           int *incompat, char *err, size_t errlen)
{
    json_t *j = kreader_decode(kr, r->schema_id, r->schema, body, len, incompat, err, errlen);
    if (!j)
        return -1;
    sk_jtext_json(v, j);
    json_decref(j);
    return 0;
}

/* The value as JSON text into k->value (reused, written without a JSON tree unless the topic
 * has a reader schema), or NULL when it does not decode or its reader schema cannot take it
 * (dead-lettered). */
static const sk_jtext *decode(krec *r)
{
    sk_jtext *v = &r->p->k->value;
    char err[512], why[600];
    int rc = 0;
    sk_jtext_reset(v);
    if (r->schema) {
        uint32_t id;
        const uint8_t *body;
        size_t len;
        sk_avro_wire_split(r->msg->payload, r->msg->len, &id, &body, &len, err, sizeof err);
        kreader *kr = kreader_find(r->p->k, r->p->topic);
        int incompat = 0;
        rc = kr ? decode_resolved(r, kr, body, len, v, &incompat, err, sizeof err)
                : sk_avro_to_jtext(r->schema, body, len, v, err, sizeof err);
        if (rc != 0 && incompat) {
            snprintf(why, sizeof why, "schema %d does not resolve to the topic's reader schema: %s",
                     (int)r->schema_id, err);
            incompatible(r, why);
            return NULL;
        }
    } else {
        sk_jtext_lit(v, "null");
    }
    if (rc != 0) {
        snprintf(why, sizeof why, "value does not decode with schema %d: %s", (int)r->schema_id,
                 err);
        undecodable(r, why);
    }
    return rc == 0 ? v : NULL;
}

void krec_arrive(kpart *p, rd_kafka_message_t *msg)
{
    sk_kafka *k = p->k;
    krec *r = malloc(sizeof *r); /* set whole below, once taken */
    if (!r || sk_partq_push(p->q, msg->offset, msg->key, msg->key ? msg->key_len : 0, r) != 0) {
        /* A record read again after a rewind, or no memory: it is not ours to track. */
        SK_LOG(SK_LOG_DEBUG, "kafka", NULL, SK_KV("topic", p->topic), "skipping %d@%lld",
               (int)p->partition, (long long)msg->offset);
        free(r);
        rd_kafka_message_destroy(msg);
        return;
    }
    *r = (krec){.p = p, .msg = msg, .offset = msg->offset};
    uint64_t seed = (uint64_t)msg->offset ^ (uint64_t)(uintptr_t)r;
    sk_backoff_init(&r->bo, k->cfg->kafka_backoff_initial_ms, k->cfg->kafka_backoff_max_ms, seed);
    sk_backoff_init(&r->retry_bo, k->cfg->kafka_backoff_initial_ms, k->cfg->kafka_backoff_max_ms,
                    seed + 1);
    p->nrecs++;
    sk_series_add(p->m_held, 1);
    sk_series_add(p->m_received, 1);
    find_schema(r);
}

/* ---- delivery to handlers ---- */

/* u in decimal at p; returns the end. */
static char *put_udec(char *p, unsigned long long u)
{
    char d[24];
    size_t n = 0;
    do
        d[n++] = (char)('0' + u % 10);
    while ((u /= 10) > 0);
    while (n > 0)
        *p++ = d[--n];
    return p;
}

static char *put_dec(char *p, long long v)
{
    if (v < 0)
        *p++ = '-';
    return put_udec(p, v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v);
}

/* The task id of the record's delivery, "k-<topic (200 bytes at most)>-<partition>-<offset>-
 * <serial>", into r->id (without printf: it is built for every record). */
static void task_id(krec *r, uint64_t serial)
{
    char *p = r->id;
    size_t tl = strnlen(r->p->topic, 200);
    *p++ = 'k';
    *p++ = '-';
    memcpy(p, r->p->topic, tl);
    p += tl;
    *p++ = '-';
    p = put_dec(p, r->p->partition);
    *p++ = '-';
    p = put_dec(p, r->offset);
    *p++ = '-';
    p = put_udec(p, serial);
    *p = '\0';
}

static void deadline_passed(evutil_socket_t fd, short what, void *arg);

void krec_dispatch(krec *r)
{
    sk_kafka *k = r->p->k;
    double started = sk_mono_s(); /* skiff's own time: decoding, building, writing the frame */
    const sk_jtext *value = decode(r);
    if (!value)
        return;
    r->attempt++;
    task_id(r, ++k->serial);
    int64_t deadline = sk_wall_ms() + k->cfg->kafka_task_timeout_ms;
    sk_span *span = task_text(r, value, deadline);
    r->in_dispatcher = 1;
    k->running++;
    arm_deadline(r, deadline_passed);
    /* a frame that could not be built (out of memory, a value jansson cannot encode) is
     * refused by the dispatcher as unencodable: counted, logged, dead-lettered */
    sk_dispatcher_submit_frame(k->d, &kafka_ops, k, r, r->p->topic, r->id,
                               k->frame.failed ? NULL : (const uint8_t *)k->frame.buf, k->frame.len,
                               started, span);
}

/* The handler is done with the record (a result, a cancel, a lost connection). Returns 1 when
 * the record's partition is gone (the record was released). */
static int back_from_handler(krec *r)
{
    r->in_dispatcher = 0;
    r->p->k->running--;
    disarm(r);
    if (!r->p->revoked)
        return 0;
    kconsumer_release(r);
    return 1;
}

static void processed(krec *r, const char *outcome)
{
    sk_kafka *k = r->p->k;
    if (strcmp(outcome, "acked") == 0)
        sk_series_add(r->p->m_acked, 1);
    else
        count(k->m_processed, r->p->topic, outcome);
    sk_partq_done(r->p->q, r->offset);
    kconsumer_release(r);
    kconsumer_pump_soon(k);
}

static void op_ack(void *source, void *ctx, const sk_msg *m)
{
    (void)source;
    (void)m;
    krec *r = ctx;
    if (!back_from_handler(r))
        processed(r, "acked");
}

static void redeliver(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    krec *r = arg;
    disarm(r);
    sk_partq_ready(r->p->q, r->offset);
    kconsumer_pump_soon(r->p->k);
}

/* A failed attempt: retried after a backoff while attempts remain, else dead-lettered. */
static void attempt_failed(krec *r, const char *why, const char *reason, int has_backoff,
                           int64_t backoff_ms)
{
    sk_kafka *k = r->p->k;
    free(r->error);
    r->error = strdup(why);
    if (r->attempt >= k->cfg->kafka_max_attempts) {
        char msg[600];
        snprintf(msg, sizeof msg, "%d attempts failed, the last: %s", r->attempt, why);
        dead_letter(r, "attempts", msg);
        return;
    }
    sk_partq_hold(r->p->q, r->offset);
    count(k->m_redeliver, r->p->topic, reason);
    if (!has_backoff)
        backoff_ms = sk_backoff_next(&r->retry_bo);
    arm(r, backoff_ms, redeliver);
}

static void op_nack(void *source, void *ctx, const sk_msg *m)
{
    (void)source;
    krec *r = ctx;
    if (back_from_handler(r))
        return;
    /* The message goes on as a C string (logs, the skiff.dlq.error header): a NUL inside it
     * becomes U+FFFD instead of cutting it short. */
    char *copy = m->message ? sk_text_replace_nul(m->message, m->message_len) : NULL;
    const char *why = copy ? copy : "failed";
    if (m->dead_letter)
        dead_letter(r, "handler", why);
    else
        attempt_failed(r, why, "nack", m->has_retry_backoff, m->retry_backoff_ms);
    free(copy);
}

/* The dispatcher could not send the record (its task frame is too large, or cannot be built):
 * it goes to the dead-letter topic, never retried. */
static void op_reject(void *source, void *ctx, const char *reason, const char *why)
{
    (void)source;
    krec *r = ctx;
    if (!back_from_handler(r))
        dead_letter(r, reason, why);
}

static void op_abandon(void *source, void *ctx, const char *why)
{
    (void)source;
    krec *r = ctx;
    if (back_from_handler(r))
        return;
    sk_kafka *k = r->p->k;
    SK_LOG(SK_LOG_INFO, "kafka", NULL, SK_KV("task_id", r->id),
           "record given back (%s): delivered again", why);
    r->attempt--; /* not the record's fault: the same attempt again */
    sk_partq_hold(r->p->q, r->offset);
    if (k->stopping)
        return; /* left uncommitted: the next owner of the partition gets it */
    count(k->m_redeliver, r->p->topic, "handler_lost");
    sk_partq_ready(r->p->q, r->offset);
    kconsumer_pump_soon(k);
}

static void deadline_passed(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    krec *r = arg;
    disarm(r);
    if (!sk_dispatcher_cancel(r->p->k->d, r->id, "deadline")) {
        SK_LOG(SK_LOG_WARN, "kafka", NULL, SK_KV("task_id", r->id),
               "deadline passed; the handler does not take cancel, its result is awaited");
        return;
    }
    if (!back_from_handler(r))
        attempt_failed(r, "deadline passed (kafka.task_timeout)", "deadline", 0, 0);
}

/* The handler needs more time for the record (`extend`): its deadline becomes now +
 * timeout_ms, for this attempt, without a retry. The group membership is not at stake: skiff
 * keeps polling on the loop whatever the handlers do (docs/adr/0006). A record of a partition
 * revoked meanwhile (its handler did not take the cancel) is no longer ours: `not_found`. */
static void op_extend(void *source, void *ctx, int64_t timeout_ms, sk_reply *reply)
{
    sk_kafka *k = source;
    krec *r = ctx;
    if (r->p->revoked) {
        count(k->m_extends, r->p->topic, "not_found");
        if (reply)
            sk_reply_error(reply, "not_found",
                           "partition %s[%d] was revoked: another consumer "
                           "of the group delivers the record again",
                           r->p->topic, (int)r->p->partition);
        return;
    }
    if (timeout_ms > KREC_MAX_EXTEND_MS) {
        count(k->m_extends, r->p->topic, "rejected");
        SK_LOG(SK_LOG_WARN, "kafka", NULL, SK_KV("task_id", r->id),
               "extend refused: timeout_ms %lld is above 24 h", (long long)timeout_ms);
        if (reply)
            sk_reply_error(reply, "rejected", "timeout_ms %lld is above the limit of %lld (24 h)",
                           (long long)timeout_ms, (long long)KREC_MAX_EXTEND_MS);
        return;
    }
    int64_t deadline = sk_wall_ms() + timeout_ms;
    arm(r, timeout_ms, deadline_passed);
    SK_LOG(SK_LOG_DEBUG, "kafka", NULL, SK_KV("task_id", r->id), "deadline extended by %lld ms",
           (long long)timeout_ms);
    count(k->m_extends, r->p->topic, "ok");
    if (reply)
        sk_reply_ok(reply, json_pack("{s:I}", "deadline", (json_int_t)deadline));
}

/* ---- dead letters ---- */

static void add_header(rd_kafka_headers_t *h, const char *name, const char *fmt, long long v)
{
    char buf[32];
    snprintf(buf, sizeof buf, fmt, v);
    rd_kafka_header_add(h, name, -1, buf, -1);
}

/* The original headers plus where the record came from and why it is here. */
static rd_kafka_headers_t *dlq_headers(const krec *r)
{
    rd_kafka_headers_t *orig, *h;
    h = rd_kafka_message_headers(r->msg, &orig) == RD_KAFKA_RESP_ERR_NO_ERROR
            ? rd_kafka_headers_copy(orig)
            : rd_kafka_headers_new(8);
    rd_kafka_timestamp_type_t tstype;
    rd_kafka_header_add(h, "skiff.dlq.reason", -1, r->dlq_reason, -1);
    rd_kafka_header_add(h, "skiff.dlq.error", -1, r->error ? r->error : "", -1);
    add_header(h, "skiff.dlq.attempts", "%lld", r->attempt);
    rd_kafka_header_add(h, "skiff.original.topic", -1, r->p->topic, -1);
    add_header(h, "skiff.original.partition", "%lld", r->p->partition);
    add_header(h, "skiff.original.offset", "%lld", (long long)r->offset);
    add_header(h, "skiff.original.timestamp", "%lld",
               (long long)rd_kafka_message_timestamp(r->msg, &tstype));
    return h;
}

static void write_dead_letter(krec *r);

static void rewrite_dead_letter(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    disarm(arg);
    write_dead_letter(arg);
}

static void dlq_delivered(void *ud, rd_kafka_resp_err_t err, int32_t partition, int64_t offset)
{
    (void)partition;
    (void)offset;
    krec *r = ud;
    sk_kafka *k = r->p->k;
    r->dlq_writing = 0;
    k->running--;
    if (r->p->revoked) {
        kconsumer_release(r);
        return;
    }
    if (!err) {
        count(k->m_dead, r->p->topic, r->dlq_reason);
        processed(r, "dead_lettered");
        return;
    }
    if (k->stopping)
        return; /* left uncommitted */
    int64_t ms = sk_backoff_next(&r->bo);
    SK_LOG(SK_LOG_ERROR, "kafka", NULL, SK_KV("topic", r->p->topic),
           "dead-letter write of %d@%lld failed, again in %lld ms: %s", (int)r->p->partition,
           (long long)r->offset, (long long)ms, rd_kafka_err2str(err));
    arm(r, ms, rewrite_dead_letter);
}

static void write_dead_letter(krec *r)
{
    sk_kafka *k = r->p->k;
    char topic[300], err[256];
    snprintf(topic, sizeof topic, "%s.dlq", r->p->topic);
    r->dlq_writing = 1;
    k->running++;
    if (kproducer_send(k->producer, topic, r->msg->key, r->msg->key ? r->msg->key_len : 0,
                       r->msg->payload, r->msg->len, dlq_headers(r), dlq_delivered, r, err,
                       sizeof err) != 0)
        dlq_delivered(r, RD_KAFKA_RESP_ERR__FAIL, -1, -1);
}

static void dead_letter(krec *r, const char *reason, const char *why)
{
    SK_LOG(SK_LOG_WARN, "kafka", NULL, SK_KV("topic", r->p->topic, "reason", reason),
           "record %d@%lld goes to %s.dlq: %s", (int)r->p->partition, (long long)r->offset,
           r->p->topic, why);
    if (why != r->error) {
        free(r->error);
        r->error = strdup(why);
    }
    r->dlq_reason = reason;
    write_dead_letter(r);
}

/* ---- ownership ---- */

void krec_revoke(krec *r)
{
    sk_kafka *k = r->p->k;
    if (r->in_dispatcher) {
        if (sk_dispatcher_cancel(k->d, r->id, "revoked") && !back_from_handler(r))
            kconsumer_release(r);
        return;
    }
    if (!r->dlq_writing)
        kconsumer_release(r);
}

void krec_free(krec *r)
{
    if (!r)
        return;
    disarm(r);
    sk_registry_cancel(r->lookup);
    free(r->error);
    rd_kafka_message_destroy(r->msg);
    free(r);
}
