/* The C SDK's conformance handler (handler-protocol/conformance/CONTRACT.md, level 2).
 * Environment: SKIFF_SOCKET, CONF_NAME, CONF_CAPACITY, CONF_MODE (all, zeebe, kafka). */
#define _GNU_SOURCE
#include "skiff_handler.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static pthread_mutex_t count_mu = PTHREAD_MUTEX_INITIALIZER;
static int active, max_active;
static skh_handler *handler;

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static const char *or_empty(const char *s)
{
    return s ? s : "";
}

static json_t *var(skh_task *t, const char *name)
{
    return json_object_get(skh_task_variables(t), name);
}

static const char *str(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static json_t *error_object(const skh_error *e)
{
    return json_pack("{s:{s:s,s:s}}", "error", "code", e->code, "message", e->message);
}

static int conf_complete(skh_task *t, void *arg)
{
    (void)arg;
    json_t *tp = skh_task_traceparent(t) ? json_string(skh_task_traceparent(t)) : json_null();
    json_t *zeebe = skh_task_zeebe(t);
    json_t *headers = skh_task_headers(t) ? skh_task_headers(t) : json_object();
    json_t *v =
        json_pack("{s:I,s:{s:s,s:s,s:O,s:O,s:O,s:o,s:I,s:I}}", "doubled",
                  json_integer_value(var(t, "n")) * 2, "seen", "id", skh_task_id(t), "job_type",
                  skh_task_job_type(t), "headers", headers, "key", json_object_get(zeebe, "key"),
                  "retries", json_object_get(zeebe, "retries"), "traceparent", tp, "deadline",
                  (json_int_t)skh_task_deadline(t), "attempt", (json_int_t)skh_task_attempt(t));
    if (skh_task_headers(t) == NULL)
        json_decref(headers);
    int rc = skh_task_complete(t, v);
    json_decref(v);
    return rc;
}

static int conf_none(skh_task *t, void *arg)
{
    (void)t;
    (void)arg;
    return 0;
}

static int conf_raise(skh_task *t, void *arg)
{
    (void)arg;
    char msg[256];
    snprintf(msg, sizeof msg, "boom %s", or_empty(json_string_value(var(t, "msg"))));
    return SKH_FAIL(t, msg);
}

static int conf_bpmn(skh_task *t, void *arg)
{
    (void)arg;
    json_t *v = json_pack("{s:s}", "reason", "amount");
    int rc = skh_task_bpmn_error(t, "RISK_TOO_HIGH", "too risky", v);
    json_decref(v);
    return rc;
}

static int conf_jobfailed(skh_task *t, void *arg)
{
    (void)arg;
    json_t *v = json_pack("{s:b}", "attempted", 1);
    skh_failure f = {
        .message = "try later", .retries = 2, .retry_backoff_ms = 5000, .variables = v};
    int rc = skh_task_fail(t, &f);
    json_decref(v);
    return rc;
}

static int complete_with(skh_task *t, json_t *v)
{
    int rc = skh_task_complete(t, v);
    json_decref(v);
    return rc;
}

static int conf_async(skh_task *t, void *arg)
{
    (void)arg;
    sleep_ms(10);
    if (skh_task_source(t) == SKH_SOURCE_KAFKA)
        return skh_task_ack(t);
    return complete_with(t, json_pack("{s:b}", "async", 1));
}

static int conf_sleep(skh_task *t, void *arg)
{
    (void)arg;
    json_t *ms = var(t, "ms");
    pthread_mutex_lock(&count_mu);
    int seen = ++active;
    max_active = active > max_active ? active : max_active;
    pthread_mutex_unlock(&count_mu);
    sleep_ms(ms ? json_integer_value(ms) : 100);
    pthread_mutex_lock(&count_mu);
    active--;
    int most = max_active;
    pthread_mutex_unlock(&count_mu);
    return complete_with(t, json_pack("{s:i,s:i}", "active_at_start", seen, "max_active", most));
}

static int conf_big(skh_task *t, void *arg)
{
    (void)arg;
    size_t n = (size_t)json_integer_value(var(t, "size"));
    char *blob = malloc(n + 1);
    if (blob == NULL)
        return -1;
    memset(blob, 'x', n);
    blob[n] = '\0';
    json_t *v = json_pack("{s:s}", "blob", blob);
    free(blob);
    return complete_with(t, v);
}

static int conf_extend(skh_task *t, void *arg)
{
    (void)arg;
    int64_t deadline;
    skh_error e;
    if (skh_task_extend(t, json_integer_value(var(t, "ms")), &deadline, &e) < 0) {
        if (strcmp(e.code, SKH_E_INVALID_ARGUMENT) == 0)
            return SKH_FAIL(t, e.message);
        return complete_with(t, error_object(&e));
    }
    return complete_with(t, json_pack("{s:I,s:I}", "deadline", (json_int_t)deadline,
                                      "task_deadline", (json_int_t)skh_task_deadline(t)));
}

static int conf_wait_cancel(skh_task *t, void *arg)
{
    (void)arg;
    json_t *ms = var(t, "ms");
    int cancelled = skh_task_wait_cancelled(t, ms ? json_integer_value(ms) : 5000);
    int64_t deadline;
    skh_error e;
    json_t *code = skh_task_extend(t, 1000, &deadline, &e) < 0 ? json_string(e.code) : json_null();
    const char *reason = skh_task_cancel_reason(t);
    json_t *vars = json_pack("{s:b,s:o,s:o}", "cancelled", cancelled, "reason",
                             reason ? json_string(reason) : json_null(), "extend_error", code);
    json_t *result = NULL;
    skh_task_publish_message(t, "cancelled", skh_task_id(t), vars, 0, NULL, NULL, &result, &e);
    json_decref(vars);
    json_decref(result);
    return complete_with(t, json_pack("{s:b}", "late", 1));
}

static int call_result(skh_task *t, int rc, json_t *result, const skh_error *e)
{
    if (rc < 0)
        return complete_with(t, error_object(e));
    return complete_with(t, json_pack("{s:o}", "result", result));
}

static int conf_publish(skh_task *t, void *arg)
{
    (void)arg;
    json_t *p = var(t, "params"), *result = NULL;
    const char *via = str(skh_task_variables(t), "via");
    skh_error e;
    json_t *ttl = json_object_get(p, "time_to_live_ms");
    const char *ck = str(p, "correlation_key") ? str(p, "correlation_key") : "";
    int64_t ttl_ms = ttl ? json_integer_value(ttl) : 0;
    skh_trace trace = {str(p, "traceparent"), str(p, "tracestate")};
    int rc;
    if (via != NULL && strcmp(via, "handler") == 0)
        rc = skh_handler_publish_message_traced(
            handler, str(p, "name"), ck, json_object_get(p, "variables"), ttl_ms,
            str(p, "message_id"), str(p, "tenant_id"), &trace, &result, &e);
    else
        rc = skh_task_publish_message_traced(t, str(p, "name"), ck, json_object_get(p, "variables"),
                                             ttl_ms, str(p, "message_id"), str(p, "tenant_id"),
                                             &trace, &result, &e);
    return call_result(t, rc, result, &e);
}

static int conf_produce(skh_task *t, void *arg)
{
    (void)arg;
    json_t *p = var(t, "params"), *result = NULL;
    const char *via = str(skh_task_variables(t), "via");
    json_t *value = json_object_get(p, "value"), *headers = json_object_get(p, "headers");
    skh_error e;
    int rc;
    if (via != NULL && strcmp(via, "handler") == 0)
        rc = skh_handler_produce(handler, str(p, "topic"), value, str(p, "key"), headers, &result,
                                 &e);
    else
        rc = skh_task_produce(t, str(p, "topic"), value, str(p, "key"), headers, &result, &e);
    return call_result(t, rc, result, &e);
}

static char secret_call[] = "secret", token_call[] = "token";

/* conf-secret / conf-token (CONTRACT.md §4a): arg names the call; the value or the call error. */
static int conf_string_call(skh_task *t, void *arg)
{
    int secret = arg == secret_call;
    const char *via = str(skh_task_variables(t), "via");
    const char *param = str(skh_task_variables(t), secret ? "reference" : "audience");
    int on_handler = via != NULL && strcmp(via, "handler") == 0;
    char *value = NULL;
    size_t len = 0;
    skh_error e;
    int rc;
    if (secret)
        rc = on_handler ? skh_handler_secret(handler, param, &value, &len, &e)
                        : skh_task_secret(t, param, &value, &len, &e);
    else
        rc = on_handler ? skh_handler_token(handler, param, &value, &len, &e)
                        : skh_task_token(t, param, &value, &len, &e);
    if (rc < 0)
        return complete_with(t, error_object(&e));
    json_t *vars = json_pack("{s:s%}", "result", value, len);
    free(value);
    return complete_with(t, vars);
}

static int conf_echo(skh_task *t, void *arg)
{
    (void)arg;
    json_t *z = skh_task_zeebe(t);
    json_t *vars = skh_task_variables(t) ? skh_task_variables(t) : json_object();
    json_t *v = json_pack("{s:O,s:O,s:O}", "echo", vars, "key", json_object_get(z, "key"),
                          "process_instance_key", json_object_get(z, "process_instance_key"));
    if (skh_task_variables(t) == NULL)
        json_decref(vars);
    return complete_with(t, v);
}

static json_t *member_or(json_t *o, const char *k, json_t *dflt)
{
    json_t *v = json_object_get(o, k);
    if (v == NULL)
        return dflt;
    json_decref(dflt);
    return json_incref(v);
}

static int topic_seen(skh_task *t, void *arg)
{
    (void)arg;
    json_t *k = skh_task_kafka(t), *result = NULL;
    const char *tp = skh_task_traceparent(t);
    json_t *record = json_pack(
        "{s:O,s:O,s:O,s:o,s:o,s:O,s:o,s:o,s:O}", "topic", json_object_get(k, "topic"), "partition",
        json_object_get(k, "partition"), "offset", json_object_get(k, "offset"), "key",
        member_or(k, "key", json_null()), "key_base64", member_or(k, "key_base64", json_null()),
        "headers", json_object_get(k, "headers"), "headers_base64",
        member_or(k, "headers_base64", json_object()), "timestamp",
        member_or(k, "timestamp", json_null()), "schema_id", json_object_get(k, "schema_id"));
    json_t *v = json_pack(
        "{s:s,s:s,s:s,s:O,s:I,s:I,s:o,s:o}", "id", skh_task_id(t), "source", "kafka", "topic",
        skh_task_topic(t), "value", skh_task_value(t) ? skh_task_value(t) : json_null(), "attempt",
        (json_int_t)skh_task_attempt(t), "deadline", (json_int_t)skh_task_deadline(t),
        "traceparent", tp ? json_string(tp) : json_null(), "record", record);
    json_t *headers = json_pack("{s:s}", "seen-by", "conformance");
    skh_error e;
    int rc = skh_task_produce(t, "conf.seen.out", v, str(k, "key"), headers, &result, &e);
    json_decref(v);
    json_decref(headers);
    json_decref(result);
    if (rc < 0)
        return skh_task_nack(t, e.message, -1, 0);
    return 0;
}

static int topic_raise(skh_task *t, void *arg)
{
    (void)arg;
    char msg[256];
    snprintf(msg, sizeof msg, "bad record %s", or_empty(str(skh_task_value(t), "msg")));
    return skh_task_nack(t, msg, -1, 0);
}

static int topic_retry(skh_task *t, void *arg)
{
    json_t *ms = json_object_get(skh_task_value(t), "ms");
    return skh_task_nack(t, "try later", arg ? json_integer_value(ms) : -1, 0);
}

static int topic_dlq(skh_task *t, void *arg)
{
    (void)arg;
    return skh_task_nack(t, "poison record", -1, 1);
}

static int topic_extend(skh_task *t, void *arg)
{
    (void)arg;
    int64_t deadline;
    skh_error e;
    if (skh_task_extend(t, 1000, &deadline, &e) < 0)
        return skh_task_nack(t, e.message, -1, 0);
    return 0;
}

static int topic_wait_cancel(skh_task *t, void *arg)
{
    (void)arg;
    json_t *ms = json_object_get(skh_task_value(t), "ms"), *result = NULL;
    int cancelled = skh_task_wait_cancelled(t, ms ? json_integer_value(ms) : 5000);
    const char *reason = skh_task_cancel_reason(t);
    json_t *v = json_pack("{s:b,s:o}", "cancelled", cancelled, "reason",
                          reason ? json_string(reason) : json_null());
    skh_error e;
    skh_task_produce(t, "conf.cancelled", v, NULL, NULL, &result, &e);
    json_decref(v);
    json_decref(result);
    return 0;
}

static void register_all(skh_handler *h, const char *mode)
{
    static int with_backoff = 1;
    if (strcmp(mode, "kafka") != 0) {
        skh_handler_job(h, "conf-complete", conf_complete, NULL);
        skh_handler_job(h, "conf-none", conf_none, NULL);
        skh_handler_job(h, "conf-raise", conf_raise, NULL);
        skh_handler_job(h, "conf-bpmn", conf_bpmn, NULL);
        skh_handler_job(h, "conf-jobfailed", conf_jobfailed, NULL);
        skh_handler_job(h, "conf-async", conf_async, NULL);
        skh_handler_job(h, "conf-sleep", conf_sleep, NULL);
        skh_handler_job(h, "conf-big", conf_big, NULL);
        skh_handler_job(h, "conf-extend", conf_extend, NULL);
        skh_handler_job(h, "conf-wait-cancel", conf_wait_cancel, NULL);
        skh_handler_job(h, "conf-publish", conf_publish, NULL);
        skh_handler_job(h, "conf-produce", conf_produce, NULL);
        skh_handler_job(h, "conf-echo", conf_echo, NULL);
        skh_handler_job(h, "conf-secret", conf_string_call, secret_call);
        skh_handler_job(h, "conf-token", conf_string_call, token_call);
    }
    if (strcmp(mode, "zeebe") != 0) {
        skh_handler_topic(h, "conf.seen", topic_seen, NULL);
        skh_handler_topic(h, "conf.ok", conf_none, NULL);
        skh_handler_topic(h, "conf.raise", topic_raise, NULL);
        skh_handler_topic(h, "conf.retry", topic_retry, &with_backoff);
        skh_handler_topic(h, "conf.retry-default", topic_retry, NULL);
        skh_handler_topic(h, "conf.dlq", topic_dlq, NULL);
        skh_handler_topic(h, "conf.async", conf_async, NULL);
        skh_handler_topic(h, "conf.extend", topic_extend, NULL);
        skh_handler_topic(h, "conf.wait-cancel", topic_wait_cancel, NULL);
    }
}

int main(void)
{
    const char *name = getenv("CONF_NAME"), *cap = getenv("CONF_CAPACITY");
    const char *mode = getenv("CONF_MODE");
    skh_options o = {.name = name ? name : "conformance-c",
                     .capacity = cap ? atoi(cap) : 2,
                     .backoff_initial_ms = 50,
                     .backoff_max_ms = 200};
    skh_error e;
    handler = skh_handler_new(&o, &e);
    if (handler == NULL) {
        fprintf(stderr, "%s: %s\n", e.code, e.message);
        return 2;
    }
    register_all(handler, mode ? mode : "all");
    int rc = skh_handler_run(handler, &e);
    if (rc < 0)
        fprintf(stderr, "%s: %s\n", e.code, e.message);
    skh_handler_free(handler);
    return rc < 0 ? 1 : 0;
}
