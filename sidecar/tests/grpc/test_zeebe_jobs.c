/* A Zeebe job while a handler holds it, and the handler's calls, against the fake gateway of
 * zeebe_fixture.c: `extend` as UpdateJobTimeout (reply, retries, a job gone from the engine),
 * the job deadline watch (cancel with the handler's consent, else the late result still goes
 * out) and the `publish_message` call as PublishMessage. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/log.h"

#include "core/clock.h"
#include "trace/context.h"
#include "zeebe_fixture.h"

/* Starts the source, connects a handler (features: JSON array text or NULL) and hands it the
 * job. */
static void hold_job(zf_fixture *fx, const job_spec *job, int capacity, const char *features)
{
    char id[32];
    zf_then_jobs(fx, M_ACTIVATE, job, 1);
    zf_start(fx);
    zf_join_features(fx, capacity, features);
    snprintf(id, sizeof id, "z-%lld", (long long)job->key);
    zf_expect_task(fx, id);
}

static GatewayProtocol__UpdateJobTimeoutRequest *update_req(zf_fixture *fx, int i)
{
    return zf_request(fx, M_UPDATE, i, &gateway_protocol__update_job_timeout_request__descriptor);
}

static void check_update(zf_fixture *fx, int i, int64_t key, int64_t timeout)
{
    GatewayProtocol__UpdateJobTimeoutRequest *q = update_req(fx, i);
    assert_int_equal(q->jobkey, key);
    assert_int_equal(q->timeout, timeout);
    protobuf_c_message_free_unpacked(&q->base, NULL);
}

/* No frame at all reaches the handler within ms. */
static void expect_silence(zf_fixture *fx, int ms)
{
    json_t *f = zf_next_frame(fx, ms);
    if (f) {
        char *text = json_dumps(f, JSON_COMPACT);
        json_decref(f);
        fail_msg("unexpected frame %s", text);
    }
}

static void expect_cancel(zf_fixture *fx, const char *id, const char *reason)
{
    json_t *c = zf_expect_frame(fx, "cancel");
    assert_string_equal(json_string_value(json_object_get(c, "id")), id);
    assert_string_equal(json_string_value(json_object_get(c, "reason")), reason);
    json_decref(c);
}

/* ---- 1. extend ---- */

static void test_extend_updates_timeout(void **state)
{
    zf_fixture *fx = *state;
    static const job_spec job = {.key = 701, .retries = 3};
    hold_job(fx, &job, 1, NULL);
    int64_t before = sk_wall_ms();
    zf_send_json(fx, "{\"type\":\"extend\",\"id\":\"z-701\",\"timeout_ms\":5000,\"ref\":\"e1\"}");
    assert_true(zf_wait_reqs(fx, M_UPDATE, 1, 2000));
    check_update(fx, 0, 701, 5000);
    json_t *r = zf_expect_reply(fx, "e1", NULL);
    int64_t after = sk_wall_ms();
    json_int_t deadline = json_integer_value(json_object_get(r, "deadline"));
    json_decref(r);
    assert_true(deadline >= before + 5000 && deadline <= after + 5000);
    /* The job is still the handler's: its result goes out as usual. */
    zf_send_json(fx, "{\"type\":\"complete\",\"id\":\"z-701\"}");
    assert_true(zf_wait_reqs(fx, M_COMPLETE, 1, 2000));
    assert_true(zf_wait_idle(fx, 2000));
    assert_true(zf_jobs_total(fx, "completed") == 1);
    assert_int_equal(zf_count(fx, M_UPDATE), 1);
}

static void test_extend_moves_deadline(void **state)
{
    zf_fixture *fx = *state;
    static const job_spec job = {.key = 702, .retries = 3, .deadline_in_ms = 300};
    fx->job.job_timeout_ms = 300; /* skiff's watch runs on its own clock, from the timeout */
    hold_job(fx, &job, 1, "[\"cancel\"]");
    zf_send_json(fx, "{\"type\":\"extend\",\"id\":\"z-702\",\"timeout_ms\":3000,\"ref\":\"e1\"}");
    json_decref(zf_expect_reply(fx, "e1", NULL));
    /* Well past the job's first deadline: the watch follows the extended one. */
    expect_silence(fx, 600);
    assert_true(zf_sample(fx, "skiff_zeebe_jobs_overdue_total{job_type=\"work\"}") == 0);
    assert_int_equal(sk_dispatcher_open(fx->d), 1);
}

static void test_extend_not_found_cancels(void **state)
{
    zf_fixture *fx = *state;
    static const job_spec job = {.key = 703, .retries = 3};
    zf_then(fx, M_UPDATE, SK_GRPC_NOT_FOUND);
    hold_job(fx, &job, 1, "[\"cancel\"]");
    zf_send_json(fx, "{\"type\":\"extend\",\"id\":\"z-703\",\"timeout_ms\":5000,\"ref\":\"e1\"}");
    json_decref(zf_expect_reply(fx, "e1", "not_found"));
    expect_cancel(fx, "z-703", "job_gone");
    assert_int_equal(zf_count(fx, M_UPDATE), 1); /* NOT_FOUND is final */
    assert_true(zf_jobs_total(fx, "not_found") == 1);
    assert_true(
        zf_sample(fx, "skiff_tasks_cancelled_total{source=\"zeebe\",reason=\"job_gone\"}") == 1);
    /* The handler had already finished: its result is dropped quietly, the connection stays. */
    zf_send_json(fx, "{\"type\":\"complete\",\"id\":\"z-703\"}");
    expect_silence(fx, 200);
    assert_false(fx->closed);
    assert_int_equal(zf_count(fx, M_COMPLETE), 0);
    assert_int_equal(zf_count(fx, M_FAIL), 0);
    /* Its credit is free again. */
    assert_true(zf_sample(fx, "skiff_zeebe_jobs_in_flight{job_type=\"work\"}") == 0);
    assert_true(zf_wait_reqs(fx, M_ACTIVATE, 2, 2000));
}

static void test_extend_retried_when_unavailable(void **state)
{
    zf_fixture *fx = *state;
    static const job_spec job = {.key = 704, .retries = 3};
    zf_then(fx, M_UPDATE, SK_GRPC_UNAVAILABLE);
    zf_then(fx, M_UPDATE, SK_GRPC_OK);
    hold_job(fx, &job, 1, "[\"cancel\"]");
    zf_send_json(fx, "{\"type\":\"extend\",\"id\":\"z-704\",\"timeout_ms\":4000,\"ref\":\"e1\"}");
    json_decref(zf_expect_reply(fx, "e1", NULL));
    assert_int_equal(zf_count(fx, M_UPDATE), 2);
    check_update(fx, 1, 704, 4000);
    expect_silence(fx, 100); /* one reply only */
}

static void test_extend_rejected_keeps_task(void **state)
{
    zf_fixture *fx = *state;
    static const job_spec job = {.key = 705, .retries = 3};
    zf_then(fx, M_UPDATE, SK_GRPC_INVALID_ARGUMENT);
    hold_job(fx, &job, 1, "[\"cancel\"]");
    zf_send_json(fx, "{\"type\":\"extend\",\"id\":\"z-705\",\"timeout_ms\":4000,\"ref\":\"e1\"}");
    json_decref(zf_expect_reply(fx, "e1", "rejected"));
    expect_silence(fx, 100); /* no cancel: the job is still the handler's */
    assert_int_equal(zf_count(fx, M_UPDATE), 1);
    zf_send_json(fx, "{\"type\":\"complete\",\"id\":\"z-705\"}");
    assert_true(zf_wait_reqs(fx, M_COMPLETE, 1, 2000));
}

static void test_extend_without_ref_has_no_reply(void **state)
{
    zf_fixture *fx = *state;
    static const job_spec job = {.key = 706, .retries = 3};
    hold_job(fx, &job, 1, NULL);
    zf_send_json(fx, "{\"type\":\"extend\",\"id\":\"z-706\",\"timeout_ms\":2000}");
    assert_true(zf_wait_reqs(fx, M_UPDATE, 1, 2000));
    check_update(fx, 0, 706, 2000);
    assert_true(zf_wait_idle(fx, 2000));
    expect_silence(fx, 200);
    assert_false(fx->closed);
}

static void test_extend_unknown_task(void **state)
{
    zf_fixture *fx = *state;
    static const job_spec job = {.key = 707, .retries = 3};
    hold_job(fx, &job, 1, NULL);
    zf_send_json(fx, "{\"type\":\"extend\",\"id\":\"z-999\",\"timeout_ms\":2000,\"ref\":\"e1\"}");
    json_t *e = zf_expect_frame(fx, "error");
    assert_string_equal(json_string_value(json_object_get(e, "code")), "unknown_task");
    assert_string_equal(json_string_value(json_object_get(e, "id")), "z-999");
    json_decref(e);
    assert_int_equal(zf_count(fx, M_UPDATE), 0);
}

/* ---- 2. the job deadline passes while the handler holds the job ---- */

static void test_deadline_cancels_with_feature(void **state)
{
    zf_fixture *fx = *state;
    static const job_spec first = {.key = 801, .retries = 3, .deadline_in_ms = 300};
    static const job_spec next = {.key = 802, .retries = 3};
    zf_then_jobs(fx, M_ACTIVATE, &first, 1);
    zf_then_jobs(fx, M_ACTIVATE, &next, 1);
    fx->job.max_jobs_active = 1; /* the next activation needs the job's life to have ended */
    fx->job.job_timeout_ms = 300;
    zf_start(fx);
    zf_join_features(fx, 1, "[\"cancel\"]");
    zf_expect_task(fx, "z-801");
    fx->job.job_timeout_ms = 60000; /* for the next job */
    int64_t deadline = fx->last_deadline;
    assert_int_equal(zf_count(fx, M_ACTIVATE), 1); /* capacity 1, in use */
    expect_cancel(fx, "z-801", "deadline");
    assert_true(sk_wall_ms() >= deadline - SLACK);
    /* The credit is free: the next job is activated and dispatched. */
    assert_true(zf_wait_reqs(fx, M_ACTIVATE, 2, 2000));
    assert_int_equal(zf_max_jobs(fx, 1), 1);
    zf_expect_task(fx, "z-802");
    assert_true(zf_sample(fx, "skiff_zeebe_jobs_in_flight{job_type=\"work\"}") == 1);
    assert_true(zf_sample(fx, "skiff_zeebe_jobs_overdue_total{job_type=\"work\"}") == 1);
    assert_true(zf_jobs_total(fx, "timed_out") == 1);
    assert_true(
        zf_sample(fx, "skiff_tasks_cancelled_total{source=\"zeebe\",reason=\"deadline\"}") == 1);
    /* Nothing is sent for it: Zeebe times it out on its own. Its late result is dropped. */
    zf_send_json(fx, "{\"type\":\"complete\",\"id\":\"z-801\"}");
    expect_silence(fx, 200);
    assert_false(fx->closed);
    assert_int_equal(zf_count(fx, M_COMPLETE), 0);
    assert_int_equal(zf_count(fx, M_FAIL), 0);
}

static void test_deadline_without_cancel_feature(void **state)
{
    zf_fixture *fx = *state;
    static const job_spec job = {.key = 811, .retries = 3, .deadline_in_ms = 300};
    fx->job.job_timeout_ms = 300;
    hold_job(fx, &job, 1, NULL);
    expect_silence(fx, 600);
    assert_true(zf_sample(fx, "skiff_zeebe_jobs_overdue_total{job_type=\"work\"}") == 1);
    assert_true(zf_jobs_total(fx, "timed_out") == 0);
    assert_int_equal(sk_dispatcher_open(fx->d), 1);
    assert_int_equal(zf_count(fx, M_ACTIVATE), 1); /* its credit is still taken */
    /* The late result still goes out: the engine decides whether it counts. */
    zf_send_json(fx, "{\"type\":\"complete\",\"id\":\"z-811\"}");
    assert_true(zf_wait_reqs(fx, M_COMPLETE, 1, 2000));
    GatewayProtocol__CompleteJobRequest *c = zf_complete_req(fx, 0);
    assert_int_equal(c->jobkey, 811);
    protobuf_c_message_free_unpacked(&c->base, NULL);
    assert_true(zf_wait_idle(fx, 2000));
    assert_true(zf_jobs_total(fx, "completed") == 1);
}

/* ---- 3. publish_message ---- */

static GatewayProtocol__PublishMessageRequest *publish_req(zf_fixture *fx, int i)
{
    return zf_request(fx, M_PUBLISH, i, &gateway_protocol__publish_message_request__descriptor);
}

static void call(zf_fixture *fx, const char *ref, const char *params)
{
    char buf[512];
    snprintf(buf, sizeof buf,
             "{\"type\":\"call\",\"ref\":\"%s\",\"method\":\"publish_message\",\"params\":%s}", ref,
             params);
    zf_send_json(fx, buf);
}

/* The message's variables without the traceparent skiff adds, which must be a valid W3C
 * value of the trace trace_hex (NULL: any trace, a new one). */
static void assert_vars_traced(const char *text, const char *expected, const char *trace_hex)
{
    json_t *v = json_loads(text, 0, NULL);
    assert_non_null(v);
    const char *tp = json_string_value(json_object_get(v, "traceparent"));
    sk_trace_ctx ctx;
    assert_non_null(tp);
    assert_int_equal(sk_traceparent_parse(tp, strlen(tp), &ctx), 0);
    if (trace_hex)
        assert_memory_equal(tp + 3, trace_hex, 32);
    json_object_del(v, "traceparent");
    char *rest = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
    zf_assert_json(rest, expected);
    free(rest);
    json_decref(v);
}

static void test_publish_message_maps_fields(void **state)
{
    zf_fixture *fx = *state;
    zf_start(fx);
    zf_join(fx, 1);
    call(fx, "p1",
         "{\"name\":\"order-paid\",\"correlation_key\":\"o-17\",\"time_to_live_ms\":60000,"
         "\"message_id\":\"m-1\",\"variables\":{\"paid\":true,\"amount\":12},"
         "\"tenant_id\":\"tenant-a\","
         "\"traceparent\":\"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\"}");
    json_t *r = zf_expect_reply(fx, "p1", NULL);
    assert_string_equal(json_string_value(json_object_get(r, "key")), "9007199254740995");
    assert_string_equal(json_string_value(json_object_get(r, "tenant_id")), "tenant-a");
    json_decref(r);
    assert_int_equal(zf_count(fx, M_PUBLISH), 1);
    GatewayProtocol__PublishMessageRequest *q = publish_req(fx, 0);
    assert_string_equal(q->name, "order-paid");
    assert_string_equal(q->correlationkey, "o-17");
    assert_int_equal(q->timetolive, 60000);
    assert_string_equal(q->messageid, "m-1");
    /* the handler's variables plus the PublishMessage span, in the call's trace */
    assert_vars_traced(q->variables, "{\"paid\":true,\"amount\":12}",
                       "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_null(strstr(q->variables, "00f067aa0ba902b7")); /* a span of its own */
    assert_string_equal(q->tenantid, "tenant-a");
    protobuf_c_message_free_unpacked(&q->base, NULL);

    /* Only a name: every other field empty, the gateway's default tenant in the reply. */
    call(fx, "p2", "{\"name\":\"ping\"}");
    r = zf_expect_reply(fx, "p2", NULL);
    assert_string_equal(json_string_value(json_object_get(r, "tenant_id")), "<default>");
    json_decref(r);
    q = publish_req(fx, 1);
    assert_string_equal(q->name, "ping");
    assert_string_equal(q->correlationkey, "");
    assert_int_equal(q->timetolive, 0);
    assert_vars_traced(q->variables, "{}", NULL); /* only the span: a new trace */
    assert_string_equal(q->tenantid, "");
    protobuf_c_message_free_unpacked(&q->base, NULL);

    /* A traceparent variable the handler sets itself is left alone. */
    call(fx, "p3", "{\"name\":\"ping\",\"variables\":{\"traceparent\":\"mine\"}}");
    json_decref(zf_expect_reply(fx, "p3", NULL));
    q = publish_req(fx, 2);
    zf_assert_json(q->variables, "{\"traceparent\":\"mine\"}");
    protobuf_c_message_free_unpacked(&q->base, NULL);
}

static void test_publish_errors(void **state)
{
    zf_fixture *fx = *state;
    zf_then(fx, M_PUBLISH, SK_GRPC_ALREADY_EXISTS);
    zf_then(fx, M_PUBLISH, SK_GRPC_INVALID_ARGUMENT);
    zf_start(fx);
    zf_join(fx, 1);
    call(fx, "p1", "{\"name\":\"paid\",\"message_id\":\"m-1\"}");
    json_decref(zf_expect_reply(fx, "p1", "already_exists"));
    assert_int_equal(zf_count(fx, M_PUBLISH), 1); /* final, not retried */
    call(fx, "p2", "{\"name\":\"paid\"}");
    json_decref(zf_expect_reply(fx, "p2", "rejected"));
    assert_int_equal(zf_count(fx, M_PUBLISH), 2);
    expect_silence(fx, 100);
}

static void test_publish_retried_when_exhausted(void **state)
{
    zf_fixture *fx = *state;
    zf_then(fx, M_PUBLISH, SK_GRPC_RESOURCE_EXHAUSTED);
    zf_then(fx, M_PUBLISH, SK_GRPC_OK);
    zf_start(fx);
    zf_join(fx, 1);
    call(fx, "p1", "{\"name\":\"paid\",\"correlation_key\":\"o-1\"}");
    json_t *r = zf_expect_reply(fx, "p1", NULL);
    assert_string_equal(json_string_value(json_object_get(r, "key")), "9007199254740995");
    json_decref(r);
    assert_int_equal(zf_count(fx, M_PUBLISH), 2);
    GatewayProtocol__PublishMessageRequest *q = publish_req(fx, 1);
    assert_string_equal(q->correlationkey, "o-1");
    protobuf_c_message_free_unpacked(&q->base, NULL);
    expect_silence(fx, 100);
}

static void test_publish_invalid_params(void **state)
{
    zf_fixture *fx = *state;
    static const char *const bad[] = {
        "{\"correlation_key\":\"o-1\"}",
        "{\"name\":\"\"}",
        "{\"name\":7}",
        "{\"name\":\"paid\",\"variables\":[1,2]}",
        "{\"name\":\"paid\",\"variables\":\"{}\"}",
        "{\"name\":\"paid\",\"time_to_live_ms\":-1}",
        "{\"name\":\"paid\",\"time_to_live_ms\":\"10s\"}",
        "{\"name\":\"paid\",\"correlation_key\":17}",
        "{\"name\":\"paid\",\"message_id\":true}",
        "{\"name\":\"paid\",\"tenant_id\":null}",
        /* U+0000 would cut the C string short: another correlation key, another message */
        "{\"name\":\"paid\",\"correlation_key\":\"o-1\\u0000x\"}",
        "{\"name\":\"pa\\u0000id\"}",
        "{\"name\":\"paid\",\"message_id\":\"\\u0000\"}",
        "{\"name\":\"paid\",\"traceparent\":7}",
        "{\"name\":\"paid\",\"tracestate\":[]}",
    };
    zf_start(fx);
    zf_join(fx, 1);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char ref[16];
        snprintf(ref, sizeof ref, "bad-%zu", i);
        call(fx, ref, bad[i]);
        json_decref(zf_expect_reply(fx, ref, "invalid_params"));
    }
    zf_send_json(fx, "{\"type\":\"call\",\"ref\":\"none\",\"method\":\"publish_message\"}");
    json_decref(zf_expect_reply(fx, "none", "invalid_params"));
    zf_run_for(fx->base, 50);
    assert_int_equal(zf_count(fx, M_PUBLISH), 0);
    assert_false(fx->closed);
}

static void test_unknown_method(void **state)
{
    zf_fixture *fx = *state;
    zf_start(fx);
    zf_join(fx, 1);
    zf_send_json(fx, "{\"type\":\"call\",\"ref\":\"u1\",\"method\":\"publish_messages\","
                     "\"params\":{\"name\":\"paid\"}}");
    json_decref(zf_expect_reply(fx, "u1", "unknown_method"));
    assert_int_equal(zf_count(fx, M_PUBLISH), 0);
    assert_false(fx->closed);
}

/* ---- 4. jobs that cannot be delivered fail at once, logged and counted ---- */

/* Log lines at WARN and above go to a memory stream until log_text() reads them. */
static char *log_buf;
static size_t log_len;
static FILE *log_out;

static void capture_log(void)
{
    log_out = open_memstream(&log_buf, &log_len);
    sk_log_init("test", SK_LOG_WARN, log_out);
}

/* The captured log (to free); logging goes back to stderr. */
static char *log_text(void)
{
    sk_log_init("test", SK_LOG_ERROR, stderr);
    fclose(log_out);
    return log_buf;
}

static void expect_failed(zf_fixture *fx, int64_t key, int32_t retries, const char *what)
{
    GatewayProtocol__FailJobRequest *q = zf_fail_req(fx, key);
    assert_int_equal(q->retries, retries);
    if (!strstr(q->errormessage, what))
        fail_msg("FailJob of %lld says \"%s\", want \"%s\"", (long long)key, q->errormessage, what);
    gateway_protocol__fail_job_request__free_unpacked(q, NULL);
}

/* Some WARN or ERROR line of the log names the job's key and says what. */
static void expect_logged(const char *log, int64_t key, const char *what)
{
    char want[64];
    snprintf(want, sizeof want, "\"job_key\":\"%lld\"", (long long)key);
    for (const char *line = log; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line) : strlen(line);
        char *l = strndup(line, n);
        int ok = strstr(l, want) && strstr(l, what) &&
                 (strstr(l, "\"level\":\"warn\"") || strstr(l, "\"level\":\"error\""));
        free(l);
        if (ok)
            return;
        line = end ? end + 1 : NULL;
    }
    fail_msg("no WARN/ERROR line with %s saying \"%s\" in:\n%s", want, what, log);
}

static void test_bad_job_fails(void **state)
{
    zf_fixture *fx = *state;
    static const job_spec jobs[] = {
        {.key = 901, .retries = 3, .variables = "[1,2]"},
        {.key = 902, .retries = 5, .headers = "not json"},
        {.key = 904, .retries = 1, .variables = "{\"a\":1,"},
        {.key = 905, .retries = 2, .variables = "{\"k\\u0000\":1}"},
        {.key = 903, .retries = 3, .variables = "{\"ok\":true}"},
    };
    capture_log();
    zf_then_jobs(fx, M_ACTIVATE, jobs, 5);
    zf_start(fx);
    zf_join(fx, 5);
    zf_expect_task(fx, "z-903"); /* the first frame: the bad jobs never reach the handler */
    json_t *more = zf_next_frame(fx, 200);
    assert_null(more);
    assert_true(zf_wait_reqs(fx, M_FAIL, 4, 2000));
    assert_true(zf_wait_idle(fx, 2000));
    char *log = log_text();
    expect_failed(fx, 901, 2, "the job's variables: an array, not a JSON object");
    expect_failed(fx, 902, 4, "the job's custom headers: invalid JSON at line 1, column 3");
    expect_failed(fx, 904, 0, "the job's variables: invalid JSON at line 1, column 7");
    expect_failed(fx, 905, 1, "NUL byte in object key");
    expect_logged(log, 901, "not a JSON object");
    expect_logged(log, 902, "custom headers");
    expect_logged(log, 904, "invalid JSON");
    expect_logged(log, 905, "NUL byte in object key");
    free(log);
    assert_true(zf_jobs_total(fx, "undeliverable") == 4);
    assert_true(zf_sample(fx, "skiff_tasks_undeliverable_total{source=\"zeebe\",route=\"work\","
                              "reason=\"undecodable\"}") == 4);
}

/* U+0000 in a variable or a custom header is valid JSON: the job is delivered, the handler
 * decodes the very same string, and its echo reaches the engine as sent. */
static void test_nul_in_variables_delivered(void **state)
{
    zf_fixture *fx = *state;
    static const job_spec job = {.key = 921,
                                 .retries = 3,
                                 .variables = "{\"s\":\"a\\u0000b\",\"n\":{\"t\":\"\\u0000\"}}",
                                 .headers = "{\"h\":\"x\\u0000y\"}"};
    zf_then_jobs(fx, M_ACTIVATE, &job, 1);
    zf_start(fx);
    zf_join(fx, 1);
    json_t *t = zf_expect_frame(fx, "task");
    json_t *s = json_object_get(json_object_get(t, "variables"), "s");
    json_t *h = json_object_get(json_object_get(t, "headers"), "h");
    assert_int_equal(json_string_length(s), 3);
    assert_memory_equal(json_string_value(s), "a\0b", 3);
    assert_int_equal(json_string_length(h), 3);
    assert_memory_equal(json_string_value(h), "x\0y", 3);
    json_decref(t);
    zf_send_json(fx, "{\"type\":\"complete\",\"id\":\"z-921\",\"variables\":{\"s\":\"a\\u0000b\","
                     "\"n\":{\"t\":\"\\u0000\"}}}");
    assert_true(zf_wait_reqs(fx, M_COMPLETE, 1, 2000));
    GatewayProtocol__CompleteJobRequest *c = zf_complete_req(fx, 0);
    assert_string_equal(c->variables, "{\"s\":\"a\\u0000b\",\"n\":{\"t\":\"\\u0000\"}}");
    gateway_protocol__complete_job_request__free_unpacked(c, NULL);
    assert_true(zf_wait_idle(fx, 2000));
    assert_true(zf_jobs_total(fx, "completed") == 1);
}

/* A job whose task frame would exceed handler.max_frame: failed with the sizes, logged with
 * its key, counted; the next job goes out. */
static void test_oversized_job_fails(void **state)
{
    zf_fixture *fx = *state;
    static char big[70016];
    memset(big, 'x', sizeof big - 1);
    memcpy(big, "{\"pad\":\"", 8);
    memcpy(big + sizeof big - 3, "\"}", 2);
    job_spec jobs[] = {{.key = 931, .retries = 3, .variables = big}, {.key = 932, .retries = 3}};
    capture_log();
    zf_then_jobs(fx, M_ACTIVATE, jobs, 2);
    zf_start(fx);
    zf_join(fx, 2);
    zf_expect_task(fx, "z-932");
    assert_true(zf_wait_reqs(fx, M_FAIL, 1, 2000));
    assert_true(zf_wait_idle(fx, 2000));
    char *log = log_text();
    expect_failed(fx, 931, 2, "exceeds handler.max_frame (65536 bytes)");
    expect_logged(log, 931, "too_large");
    free(log);
    assert_true(zf_jobs_total(fx, "undeliverable") == 1);
    assert_true(zf_sample(fx, "skiff_tasks_undeliverable_total{source=\"zeebe\",route=\"work\","
                              "reason=\"too_large\"}") == 1);
}

/* A fail result's message with U+0000 reaches the engine whole, the NUL as U+FFFD (a C
 * string would end there). */
static void test_fail_message_with_nul(void **state)
{
    zf_fixture *fx = *state;
    static const job_spec job = {.key = 941, .retries = 3};
    zf_then_jobs(fx, M_ACTIVATE, &job, 1);
    zf_start(fx);
    zf_join(fx, 1);
    zf_expect_task(fx, "z-941");
    zf_send_json(fx, "{\"type\":\"fail\",\"id\":\"z-941\",\"message\":\"bad\\u0000input\"}");
    assert_true(zf_wait_reqs(fx, M_FAIL, 1, 2000));
    expect_failed(fx, 941, 2, "bad\xef\xbf\xbdinput");
}

/* jansson's allocations above this size fail while limited_malloc is its allocator. */
static size_t fail_above;

static void *limited_malloc(size_t n)
{
    return n > fail_above ? NULL : malloc(n);
}

/* A result whose variables cannot be encoded (jansson's output buffer cannot grow): the job
 * is failed, logged with its key and counted, never completed without its variables. The
 * 2,500 numbers decode in small pieces and encode to 60 KB. */
static void test_unencodable_result_fails_job(void **state)
{
    zf_fixture *fx = *state;
    static const job_spec job = {.key = 951, .retries = 3};
    static char frame[20000];
    size_t n = (size_t)snprintf(frame, sizeof frame,
                                "{\"type\":\"complete\",\"id\":\"z-951\",\"variables\":{\"r\":[");
    for (int i = 0; i < 2500; i++)
        n += (size_t)snprintf(frame + n, sizeof frame - n, "%s1e300", i ? "," : "");
    snprintf(frame + n, sizeof frame - n, "]}}");
    zf_then_jobs(fx, M_ACTIVATE, &job, 1);
    zf_start(fx);
    zf_join(fx, 1);
    zf_expect_task(fx, "z-951");
    capture_log();
    fail_above = 40000;
    json_set_alloc_funcs(limited_malloc, free);
    zf_send_json(fx, frame);
    assert_true(zf_wait_reqs(fx, M_FAIL, 1, 2000));
    json_set_alloc_funcs(malloc, free);
    char *log = log_text();
    expect_failed(fx, 951, 2, "could not encode the handler's result variables");
    expect_logged(log, 951, "cannot be encoded");
    free(log);
    assert_int_equal(zf_count(fx, M_COMPLETE), 0);
    assert_true(zf_sample(fx, "skiff_zeebe_results_unencodable_total{job_type=\"work\"}") == 1);
}

/* A gateway answer that is not protobuf: nothing reaches the handler (the jobs come back
 * after their timeout), but it is logged with the job type and counted. */
static void test_undecodable_response_counted(void **state)
{
    zf_fixture *fx = *state;
    static const job_spec job = {.key = 961, .retries = 3};
    fx->garble = 1;
    capture_log();
    zf_then_jobs(fx, M_ACTIVATE, &job, 1);
    zf_start(fx);
    zf_join(fx, 1);
    assert_true(zf_wait_reqs(fx, M_ACTIVATE, 1, 2000));
    assert_null(zf_next_frame(fx, 200));
    char *log = log_text();
    if (!strstr(log, "undecodable ActivateJobsResponse") || !strstr(log, "\"level\":\"error\"") ||
        !strstr(log, "\"job_type\":\"work\""))
        fail_msg("no ERROR line about the undecodable response in:\n%s", log);
    free(log);
    assert_true(zf_sample(fx, "skiff_tasks_undeliverable_total{source=\"zeebe\",route=\"work\","
                              "reason=\"undecodable_response\"}") == 1);
}

#define T(f) cmocka_unit_test_setup_teardown(f, zf_setup, zf_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_extend_updates_timeout),
        T(test_extend_moves_deadline),
        T(test_extend_not_found_cancels),
        T(test_extend_retried_when_unavailable),
        T(test_extend_rejected_keeps_task),
        T(test_extend_without_ref_has_no_reply),
        T(test_extend_unknown_task),
        T(test_deadline_cancels_with_feature),
        T(test_deadline_without_cancel_feature),
        T(test_publish_message_maps_fields),
        T(test_publish_errors),
        T(test_publish_retried_when_exhausted),
        T(test_publish_invalid_params),
        T(test_unknown_method),
        T(test_bad_job_fails),
        T(test_nul_in_variables_delivered),
        T(test_oversized_job_fails),
        T(test_fail_message_with_nul),
        T(test_unencodable_result_fails_job),
        T(test_undecodable_response_counted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
