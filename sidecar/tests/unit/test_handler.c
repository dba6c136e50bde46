/* Sessions and dispatcher together, driven over a socketpair as a handler would: handshake,
 * credits, results, protocol faults, drain, call methods and their replies, extend, cancel and
 * skiff's own per-task overhead. A fake source records what comes back to it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "session_fixture.h"

/* Extends at once: answers {"timeout_ms": timeout_ms} when the handler asked for a reply. */
static void f_extend(void *src, void *ctx, int64_t timeout_ms, sk_reply *reply)
{
    (void)ctx;
    fake_source *f = src;
    f->extended++;
    f->last_timeout = timeout_ms;
    f->last_had_reply = reply != NULL;
    sk_reply_ok(reply, json_pack("{s:I}", "timeout_ms", (json_int_t)timeout_ms));
}

static const sk_source_ops extending_ops = {.name = "fake",
                                            .results = ZEEBE_RESULTS,
                                            .complete = f_complete,
                                            .fail = f_fail,
                                            .error = f_error,
                                            .abandon = f_abandon,
                                            .reject = f_reject,
                                            .extend = f_extend};

static void hello(fixture *fx, int capacity)
{
    json_decref(hello_features(fx, capacity, NULL));
}

static void submit(fixture *fx, const char *id)
{
    sk_dispatcher_submit(fx->d, &fake_ops, &fx->src, NULL, "work", id, 123,
                         json_pack("{s:{s:i}}", "variables", "x", 1), 0);
    spin(fx);
}

static void test_task_round_trip(void **state)
{
    fixture *fx = *state;
    hello(fx, 2);
    assert_int_equal(sk_dispatcher_sessions(fx->d), 1);
    assert_int_equal(sk_dispatcher_credits(fx->d, "work"), 2);
    assert_int_equal(sk_dispatcher_credits(fx->d, "other"), 0);
    submit(fx, "t-1");
    json_t *t;
    expect_type(fx, "task", &t);
    assert_string_equal(json_string_value(json_object_get(t, "id")), "t-1");
    assert_string_equal(json_string_value(json_object_get(t, "source")), "fake");
    assert_int_equal(json_integer_value(json_object_get(t, "deadline")), 123);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(t, "variables"), "x")), 1);
    json_decref(t);
    assert_int_equal(sk_dispatcher_credits(fx->d, "work"), 1);
    send_json(fx, "{\"type\":\"complete\",\"id\":\"t-1\",\"variables\":{\"ok\":true}}");
    assert_int_equal(fx->src.completed, 1);
    assert_string_equal(fx->src.last_vars, "{\"ok\":true}");
    assert_int_equal(sk_dispatcher_credits(fx->d, "work"), 2);
    assert_int_equal(sk_dispatcher_open(fx->d), 0);
}

static void test_credits_bound_tasks(void **state)
{
    fixture *fx = *state;
    hello(fx, 1);
    submit(fx, "a");
    submit(fx, "b");
    expect_type(fx, "task", NULL);
    assert_int_equal(sk_dispatcher_open(fx->d), 2);
    assert_int_equal(sk_dispatcher_credits(fx->d, "work"), 0);
    send_json(fx, "{\"type\":\"fail\",\"id\":\"a\",\"message\":\"no\"}");
    assert_int_equal(fx->src.failed, 1);
    json_t *t;
    expect_type(fx, "task", &t);
    assert_string_equal(json_string_value(json_object_get(t, "id")), "b");
    json_decref(t);
    send_json(fx, "{\"type\":\"bpmn_error\",\"id\":\"b\",\"code\":\"X\"}");
    assert_int_equal(fx->src.errors, 1);
}

static void expect_error_and_close(fixture *fx, const char *code)
{
    json_t *e;
    expect_type(fx, "error", &e);
    assert_string_equal(json_string_value(json_object_get(e, "code")), code);
    assert_non_null(json_string_value(json_object_get(e, "message")));
    json_decref(e);
    expect_eof(fx);
}

static void test_malformed_frame_abandons_tasks(void **state)
{
    fixture *fx = *state;
    hello(fx, 4);
    submit(fx, "t-1");
    expect_type(fx, "task", NULL);
    send_json(fx, "{\"type\":\"complete\",\"id\":");
    expect_error_and_close(fx, "malformed_frame");
    assert_int_equal(fx->src.abandoned, 1);
    assert_int_equal(fx->src.completed, 0);
    assert_int_equal(sk_dispatcher_sessions(fx->d), 0);
    assert_int_equal(sk_dispatcher_open(fx->d), 0);
}

static void test_oversized_frame(void **state)
{
    fixture *fx = *state;
    hello(fx, 4);
    submit(fx, "t-1");
    expect_type(fx, "task", NULL);
    const uint8_t hdr[4] = {0, 0, 0x04, 0x01}; /* 1025 > max_frame 1024 */
    send_raw(fx, hdr, 4);
    expect_error_and_close(fx, "frame_too_large");
    assert_int_equal(fx->src.abandoned, 1);
}

static void test_unknown_task(void **state)
{
    fixture *fx = *state;
    hello(fx, 4);
    submit(fx, "t-1");
    expect_type(fx, "task", NULL);
    send_json(fx, "{\"type\":\"complete\",\"id\":\"t-999\"}");
    expect_error_and_close(fx, "unknown_task");
    assert_int_equal(fx->src.abandoned, 1);
    assert_int_equal(fx->src.completed, 0);
}

static void test_frame_before_hello(void **state)
{
    fixture *fx = *state;
    send_json(fx, "{\"type\":\"ping\"}");
    expect_error_and_close(fx, "protocol");
}

static void test_bad_version(void **state)
{
    fixture *fx = *state;
    send_json(
        fx,
        "{\"type\":\"hello\",\"version\":2,\"name\":\"t\",\"capacity\":1,\"job_types\":[\"w\"]}");
    expect_error_and_close(fx, "unsupported_version");
}

static void test_ping_call_reserved(void **state)
{
    fixture *fx = *state;
    hello(fx, 1);
    send_json(fx, "{\"type\":\"ping\",\"ref\":\"p1\"}");
    json_t *f;
    expect_type(fx, "pong", &f);
    assert_string_equal(json_string_value(json_object_get(f, "ref")), "p1");
    json_decref(f);
    send_json(fx, "{\"type\":\"call\",\"ref\":\"c1\",\"method\":\"produce\",\"params\":{}}");
    expect_type(fx, "reply", &f);
    assert_false(json_is_true(json_object_get(f, "ok")));
    assert_string_equal(json_string_value(json_object_get(json_object_get(f, "error"), "code")),
                        "unknown_method");
    json_decref(f);
    assert_false(fx->closed);
    assert_int_equal(sk_dispatcher_sessions(fx->d), 1);
}

/* ack/nack apply to Kafka tasks only, complete/fail/bpmn_error to Zeebe ones: a mismatch is
 * answered `unsupported` and leaves the task open. */
static void test_result_type_per_source(void **state)
{
    fixture *fx = *state;
    hello(fx, 1);
    submit(fx, "t-1");
    json_t *f;
    expect_type(fx, "task", &f);
    json_decref(f);
    send_json(fx, "{\"type\":\"ack\",\"id\":\"t-1\"}");
    expect_type(fx, "error", &f);
    assert_string_equal(json_string_value(json_object_get(f, "code")), "unsupported");
    assert_string_equal(json_string_value(json_object_get(f, "id")), "t-1");
    json_decref(f);
    assert_false(fx->closed);
    assert_true(sk_dispatcher_is_open(fx->d, "t-1"));
    send_json(fx, "{\"type\":\"complete\",\"id\":\"t-1\"}");
    spin(fx);
    assert_int_equal(fx->src.completed, 1);
}

static const sk_source_ops kafka_ops = {.name = "kafka",
                                        .results = SK_RESULT(SK_MSG_ACK) | SK_RESULT(SK_MSG_NACK),
                                        .complete = f_complete,
                                        .fail = f_fail,
                                        .error = f_error,
                                        .abandon = f_abandon,
                                        .reject = f_reject};

/* A handler may serve topics only; a topic must be a route of the Kafka source, and a job
 * type of the same name would not do. ack and nack (with its members) reach the source. */
static void test_topics_hello_and_kafka_results(void **state)
{
    fixture *fx = *state;
    sk_dispatcher_add_route(fx->d, "kafka", "orders");
    send_json(fx, "{\"type\":\"hello\",\"version\":1,\"name\":\"k\",\"capacity\":2,"
                  "\"topics\":[\"orders\"]}");
    json_t *f;
    expect_type(fx, "welcome", &f);
    json_decref(f);
    sk_dispatcher_submit(fx->d, &kafka_ops, &fx->src, NULL, "orders", "k-1", 123,
                         json_pack("{s:{s:i}}", "value", "x", 1), 0);
    sk_dispatcher_submit(fx->d, &kafka_ops, &fx->src, NULL, "orders", "k-2", 123,
                         json_pack("{s:{s:i}}", "value", "x", 2), 0);
    spin(fx);
    expect_type(fx, "task", &f);
    json_decref(f);
    expect_type(fx, "task", &f);
    json_decref(f);
    send_json(fx, "{\"type\":\"complete\",\"id\":\"k-1\"}");
    expect_type(fx, "error", &f);
    assert_string_equal(json_string_value(json_object_get(f, "code")), "unsupported");
    json_decref(f);
    send_json(fx, "{\"type\":\"ack\",\"id\":\"k-1\"}");
    send_json(fx, "{\"type\":\"nack\",\"id\":\"k-2\",\"message\":\"boom\"}");
    spin(fx);
    assert_int_equal(fx->src.completed, 1);
    assert_int_equal(fx->src.failed, 1);
}

static void test_hello_routes_checked_per_source(void **state)
{
    fixture *fx = *state;
    send_json(fx, "{\"type\":\"hello\",\"version\":1,\"name\":\"k\",\"capacity\":2,"
                  "\"topics\":[\"work\"]}");
    expect_error_and_close(fx, "protocol");
}

static void submit_on_credit(void *ud)
{
    fixture *fx = ud;
    if (fx->credit_calls++ == 0 && sk_dispatcher_credits(fx->d, "work") > 0)
        sk_dispatcher_submit(fx->d, &fake_ops, &fx->src, NULL, "work", "t-eager", 123,
                             json_object(), 0);
}

/* A source that submits as soon as credits appear (inside the attach) still lets the welcome
 * go first. */
static void test_welcome_before_first_task(void **state)
{
    fixture *fx = *state;
    sk_dispatcher_watch(fx->d, submit_on_credit, fx);
    json_t *f;
    send_json(fx, "{\"type\":\"hello\",\"version\":1,\"name\":\"k\",\"capacity\":1,"
                  "\"job_types\":[\"work\"]}");
    expect_type(fx, "welcome", &f);
    json_decref(f);
    expect_type(fx, "task", &f);
    assert_string_equal(json_string_value(json_object_get(f, "id")), "t-eager");
    json_decref(f);
}

static void test_hello_without_routes(void **state)
{
    fixture *fx = *state;
    send_json(fx, "{\"type\":\"hello\",\"version\":1,\"name\":\"k\",\"capacity\":2,"
                  "\"job_types\":[],\"topics\":[]}");
    expect_error_and_close(fx, "protocol");
}

static void test_handler_eof_abandons(void **state)
{
    fixture *fx = *state;
    hello(fx, 2);
    submit(fx, "t-1");
    expect_type(fx, "task", NULL);
    shutdown(fx->fd, SHUT_WR);
    spin(fx);
    assert_true(fx->closed);
    assert_int_equal(fx->src.abandoned, 1);
}

/* A source told of an abandoned task looks at the credits to give it back at once (as the
 * Kafka source does): the session being closed must no longer count. */
static sk_dispatcher *abandon_d;
static int64_t credits_at_abandon = -1;

static void f_abandon_credits(void *src, void *ctx, const char *why)
{
    f_abandon(src, ctx, why);
    credits_at_abandon = sk_dispatcher_credits(abandon_d, "work");
}

static const sk_source_ops credits_ops = {.name = "fake",
                                          .results = ZEEBE_RESULTS,
                                          .complete = f_complete,
                                          .fail = f_fail,
                                          .error = f_error,
                                          .abandon = f_abandon_credits,
                                          .reject = f_reject};

static void test_abandon_sees_no_closing_credit(void **state)
{
    fixture *fx = *state;
    abandon_d = fx->d;
    hello(fx, 2);
    sk_dispatcher_submit(fx->d, &credits_ops, &fx->src, NULL, "work", "t-1", 123, json_object(), 0);
    spin(fx);
    shutdown(fx->fd, SHUT_WR);
    spin(fx);
    assert_true(fx->closed);
    assert_int_equal(fx->src.abandoned, 1);
    assert_int_equal(credits_at_abandon, 0);
}

static void test_drain(void **state)
{
    fixture *fx = *state;
    hello(fx, 2);
    sk_dispatcher_drain(fx->d, 999);
    json_t *f;
    expect_type(fx, "drain", &f);
    assert_int_equal(json_integer_value(json_object_get(f, "deadline")), 999);
    json_decref(f);
    assert_int_equal(sk_dispatcher_credits(fx->d, "work"), 0);
    submit(fx, "late");
    assert_int_equal(fx->src.abandoned, 1);
}

static void test_unserved_job_type_refused(void **state)
{
    fixture *fx = *state;
    send_json(fx, "{\"type\":\"hello\",\"version\":1,\"name\":\"t\",\"capacity\":1,\"job_types\":["
                  "\"elsewhere\"]}");
    expect_error_and_close(fx, "protocol");
}

#define UNDELIVERABLE(reason)                                                                      \
    "skiff_tasks_undeliverable_total{source=\"fake\",route=\"work\",reason=\"" reason "\"}"

/* Never sent, ended in the source as undeliverable (the source logs it) and counted. */
static void test_oversized_task_fails_in_source(void **state)
{
    fixture *fx = *state;
    hello(fx, 2);
    char big[2048];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    sk_dispatcher_submit(fx->d, &fake_ops, &fx->src, NULL, "work", "big", 0,
                         json_pack("{s:s}", "blob", big), 0);
    assert_int_equal(fx->src.rejected, 1);
    assert_string_equal(fx->src.last_reason, "too_large");
    assert_non_null(strstr(fx->src.last_why, "exceeds handler.max_frame (1024 bytes)"));
    assert_int_equal(fx->src.failed + fx->src.abandoned, 0);
    assert_int_equal(sk_dispatcher_open(fx->d), 0);
    assert_true(sample(fx, UNDELIVERABLE("too_large")) == 1);
    expect_nothing(fx);
}

/* A payload the source could not build (NULL), or one with a member that is not UTF-8: never
 * sent, rejected as unencodable, counted; the task after it goes out as usual. */
static void test_unencodable_task_rejected(void **state)
{
    fixture *fx = *state;
    hello(fx, 2);
    sk_dispatcher_submit(fx->d, &fake_ops, &fx->src, NULL, "work", "u-1", 0, NULL, 0);
    json_t *bad = json_object();
    json_object_set_new(bad, "blob", json_stringn_nocheck("\xff\xfe", 2));
    sk_dispatcher_submit(fx->d, &fake_ops, &fx->src, NULL, "work", "u-2", 0, bad, 0);
    assert_int_equal(fx->src.rejected, 2);
    assert_string_equal(fx->src.last_reason, "unencodable");
    assert_true(sample(fx, UNDELIVERABLE("unencodable")) == 2);
    assert_int_equal(sk_dispatcher_open(fx->d), 0);
    submit(fx, "ok-1");
    expect_type(fx, "task", NULL);
}

/* A result's message may hold U+0000: it is valid JSON, the source gets it whole. */
static void test_result_message_with_nul(void **state)
{
    fixture *fx = *state;
    hello(fx, 1);
    submit(fx, "t-1");
    expect_type(fx, "task", NULL);
    send_json(fx, "{\"type\":\"fail\",\"id\":\"t-1\",\"message\":\"a\\u0000b\"}");
    assert_int_equal(fx->src.failed, 1);
    assert_int_equal(fx->src.last_message_len, 3);
    assert_false(fx->closed);
}

static void test_no_handler_for_route(void **state)
{
    fixture *fx = *state;
    hello(fx, 2);
    sk_dispatcher_submit(fx->d, &fake_ops, &fx->src, NULL, "nobody", "n-1", 0, json_object(), 0);
    assert_int_equal(fx->src.abandoned, 1);
    assert_int_equal(sk_dispatcher_open(fx->d), 0);
}

/* ---- calls, extend, cancel ---- */

/* "echo": answers {"params": params} (or {"none": true}) and {"ud": ud}. */
static void m_echo(void *ud, const json_t *params, sk_reply *reply)
{
    json_t *r = params ? json_pack("{s:O}", "params", params) : json_pack("{s:b}", "none", 1);
    json_object_set_new(r, "ud", json_string(ud));
    sk_reply_ok(reply, r);
}

static void m_refuse(void *ud, const json_t *params, sk_reply *reply)
{
    (void)ud;
    (void)params;
    sk_reply_error(reply, "nope", "refused %d", 42);
}

/* "later": keeps the reply for the test to answer. */
static void m_later(void *ud, const json_t *params, sk_reply *reply)
{
    (void)params;
    ((fixture *)ud)->held = reply;
}

static void add_methods(fixture *fx)
{
    assert_int_equal(sk_dispatcher_add_method(fx->d, "echo", m_echo, "echo-ud"), 0);
    assert_int_equal(sk_dispatcher_add_method(fx->d, "refuse", m_refuse, NULL), 0);
    assert_int_equal(sk_dispatcher_add_method(fx->d, "later", m_later, fx), 0);
}

static int has_string(const json_t *array, const char *s)
{
    size_t i;
    json_t *v;
    json_array_foreach(array, i, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), s) == 0)
            return 1;
    }
    return 0;
}

static void test_welcome_lists_features_and_methods(void **state)
{
    fixture *fx = *state;
    add_methods(fx);
    json_t *w = hello_features(fx, 1, NULL);
    json_t *features = json_object_get(w, "features"), *methods = json_object_get(w, "methods");
    assert_int_equal(json_array_size(features), 4);
    assert_true(has_string(features, "cancel") && has_string(features, "extend") &&
                has_string(features, "kafka_extend") && has_string(features, "batch"));
    assert_int_equal(json_array_size(methods), 3);
    assert_true(has_string(methods, "echo") && has_string(methods, "refuse") &&
                has_string(methods, "later"));
    json_decref(w);
}

static json_t *expect_reply(fixture *fx, const char *ref, int ok)
{
    json_t *r;
    expect_type(fx, "reply", &r);
    assert_string_equal(json_string_value(json_object_get(r, "ref")), ref);
    assert_int_equal(json_is_true(json_object_get(r, "ok")), ok);
    return r;
}

static void test_call_routed_to_method(void **state)
{
    fixture *fx = *state;
    add_methods(fx);
    hello(fx, 1);
    send_json(fx, "{\"type\":\"call\",\"ref\":\"c1\",\"method\":\"echo\",\"params\":{\"a\":[1]}}");
    json_t *r = expect_reply(fx, "c1", 1), *res = json_object_get(r, "result");
    char *text = json_dumps(res, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(text, "{\"params\":{\"a\":[1]},\"ud\":\"echo-ud\"}");
    free(text);
    json_decref(r);
    send_json(fx, "{\"type\":\"call\",\"ref\":\"c2\",\"method\":\"echo\"}");
    r = expect_reply(fx, "c2", 1);
    assert_true(json_is_true(json_object_get(json_object_get(r, "result"), "none")));
    json_decref(r);
    send_json(fx, "{\"type\":\"call\",\"ref\":\"c3\",\"method\":\"refuse\",\"params\":{}}");
    r = expect_reply(fx, "c3", 0);
    json_t *e = json_object_get(r, "error");
    assert_string_equal(json_string_value(json_object_get(e, "code")), "nope");
    assert_string_equal(json_string_value(json_object_get(e, "message")), "refused 42");
    json_decref(r);
    send_json(fx, "{\"type\":\"call\",\"ref\":\"c4\",\"method\":\"ech\",\"params\":{}}");
    r = expect_reply(fx, "c4", 0);
    e = json_object_get(r, "error");
    assert_string_equal(json_string_value(json_object_get(e, "code")), "unknown_method");
    json_decref(r);
    assert_false(fx->closed);
}

static void test_reply_after_close_dropped(void **state)
{
    fixture *fx = *state;
    add_methods(fx);
    hello(fx, 1);
    send_json(fx, "{\"type\":\"call\",\"ref\":\"c1\",\"method\":\"later\"}");
    assert_non_null(fx->held);
    expect_nothing(fx);
    shutdown(fx->fd, SHUT_WR);
    spin(fx);
    assert_true(fx->closed);
    sk_reply *r = fx->held;
    fx->held = NULL;
    sk_reply_ok(r, json_pack("{s:s}", "late", "yes")); /* no session: dropped, freed */
}

static void test_reply_later_delivered(void **state)
{
    fixture *fx = *state;
    add_methods(fx);
    hello(fx, 1);
    send_json(fx, "{\"type\":\"call\",\"ref\":\"c1\",\"method\":\"later\"}");
    expect_nothing(fx);
    sk_reply *r = fx->held;
    fx->held = NULL;
    sk_reply_error(r, "too_late", "answered after %s", "a while");
    spin(fx);
    json_decref(expect_reply(fx, "c1", 0));
}

static void test_extend_unsupported_without_op(void **state)
{
    fixture *fx = *state;
    hello(fx, 1);
    submit(fx, "t-1");
    expect_type(fx, "task", NULL);
    send_json(fx, "{\"type\":\"extend\",\"id\":\"t-1\",\"timeout_ms\":1000,\"ref\":\"e1\"}");
    json_t *e;
    expect_type(fx, "error", &e);
    assert_string_equal(json_string_value(json_object_get(e, "code")), "unsupported");
    assert_string_equal(json_string_value(json_object_get(e, "id")), "t-1");
    json_decref(e);
    assert_false(fx->closed);
    send_json(fx, "{\"type\":\"complete\",\"id\":\"t-1\"}");
    assert_int_equal(fx->src.completed, 1);
}

static void test_extend_handed_to_source(void **state)
{
    fixture *fx = *state;
    hello(fx, 1);
    sk_dispatcher_submit(fx->d, &extending_ops, &fx->src, NULL, "work", "t-1", 0, json_object(), 0);
    expect_type(fx, "task", NULL);
    send_json(fx, "{\"type\":\"extend\",\"id\":\"t-1\",\"timeout_ms\":1500,\"ref\":\"e1\"}");
    assert_int_equal(fx->src.extended, 1);
    assert_int_equal(fx->src.last_timeout, 1500);
    json_t *r = expect_reply(fx, "e1", 1);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(r, "result"), "timeout_ms")), 1500);
    json_decref(r);
    send_json(fx, "{\"type\":\"extend\",\"id\":\"t-1\",\"timeout_ms\":700}");
    assert_int_equal(fx->src.extended, 2);
    assert_false(fx->src.last_had_reply);
    expect_nothing(fx);
    assert_int_equal(sk_dispatcher_open(fx->d), 1); /* extend leaves the task open */
    send_json(fx, "{\"type\":\"complete\",\"id\":\"t-1\"}");
    assert_int_equal(fx->src.completed, 1);
}

static double cancelled_total(fixture *fx, const char *reason)
{
    sk_metric *m = sk_metrics_counter(fx->metrics, "skiff_tasks_cancelled_total", NULL,
                                      SK_KV("source", "reason"));
    assert_non_null(m);
    const char *const labels[] = {"fake", reason, NULL};
    return sk_series_value(sk_metric_series(m, labels));
}

static void on_credit(void *ud)
{
    ((fixture *)ud)->credit_calls++;
}

static void test_cancel_with_feature(void **state)
{
    fixture *fx = *state;
    json_decref(hello_features(fx, 1, "[\"cancel\"]"));
    assert_int_equal(sk_dispatcher_watch(fx->d, on_credit, fx), 0);
    submit(fx, "t-1");
    submit(fx, "t-2"); /* waits for the only credit */
    expect_type(fx, "task", NULL);
    assert_int_equal(sk_dispatcher_cancel(fx->d, "t-1", "deadline"), 1);
    json_t *c;
    expect_type(fx, "cancel", &c);
    assert_string_equal(json_string_value(json_object_get(c, "id")), "t-1");
    assert_string_equal(json_string_value(json_object_get(c, "reason")), "deadline");
    json_decref(c);
    expect_type(fx, "task", &c); /* the freed credit goes to the waiting task */
    assert_string_equal(json_string_value(json_object_get(c, "id")), "t-2");
    json_decref(c);
    assert_int_equal(sk_dispatcher_open(fx->d), 1);
    assert_true(fx->credit_calls >= 1);
    assert_true(cancelled_total(fx, "deadline") == 1);
    /* The source owns the task again: no op runs for it, ever. */
    send_json(fx, "{\"type\":\"complete\",\"id\":\"t-1\"}");
    send_json(fx, "{\"type\":\"extend\",\"id\":\"t-1\",\"timeout_ms\":100,\"ref\":\"e\"}");
    expect_nothing(fx);
    assert_false(fx->closed);
    assert_int_equal(fx->src.completed + fx->src.failed + fx->src.abandoned, 0);
    assert_int_equal(sk_dispatcher_cancel(fx->d, "t-1", "deadline"), 0); /* not open any more */
    send_json(fx, "{\"type\":\"complete\",\"id\":\"t-2\"}");
    assert_int_equal(fx->src.completed, 1);
    /* Only the cancelled id is forgiven. */
    send_json(fx, "{\"type\":\"complete\",\"id\":\"t-3\"}");
    expect_error_and_close(fx, "unknown_task");
}

static void test_cancel_without_feature(void **state)
{
    fixture *fx = *state;
    json_decref(hello_features(fx, 2, "[\"extend\", \"batch\"]"));
    submit(fx, "t-1");
    expect_type(fx, "task", NULL);
    assert_int_equal(sk_dispatcher_cancel(fx->d, "t-1", "deadline"), 0);
    expect_nothing(fx);
    assert_int_equal(sk_dispatcher_open(fx->d), 1);
    assert_true(cancelled_total(fx, "deadline") == 0);
    send_json(fx, "{\"type\":\"complete\",\"id\":\"t-1\"}");
    assert_int_equal(fx->src.completed, 1);
    assert_false(fx->closed);
}

static void test_cancel_queued_task(void **state)
{
    fixture *fx = *state;
    hello(fx, 1);
    submit(fx, "a");
    submit(fx, "b"); /* waits for a credit */
    expect_type(fx, "task", NULL);
    assert_int_equal(sk_dispatcher_cancel(fx->d, "b", "deadline"), 1);
    expect_nothing(fx); /* the handler never heard of it */
    assert_int_equal(sk_dispatcher_open(fx->d), 1);
    assert_true(cancelled_total(fx, "deadline") == 0);
    send_json(fx, "{\"type\":\"complete\",\"id\":\"a\"}");
    expect_nothing(fx); /* b is not sent once a credit frees */
    assert_int_equal(sk_dispatcher_open(fx->d), 0);
    assert_int_equal(fx->src.completed + fx->src.abandoned + fx->src.failed, 1);
}

/* skiff_task_overhead_seconds_count for the fake source and a phase. */
static double overhead_count(fixture *fx, const char *phase)
{
    char series[128];
    snprintf(series, sizeof series,
             "skiff_task_overhead_seconds_count{source=\"fake\",phase=\"%s\"}", phase);
    return sample(fx, series);
}

static void test_overhead_observed(void **state)
{
    fixture *fx = *state;
    char blob[800];
    memset(blob, 'x', sizeof blob - 1);
    blob[sizeof blob - 1] = 0;
    int tiny = 1; /* the kernel's minimum: a few KiB */
    assert_int_equal(setsockopt(fx->skiff_fd, SOL_SOCKET, SO_SNDBUF, &tiny, sizeof tiny), 0);
    hello(fx, 32);
    for (int i = 0; i < 32; i++) {
        char id[16];
        snprintf(id, sizeof id, "t-%d", i);
        sk_dispatcher_submit(fx->d, &fake_ops, &fx->src, NULL, "work", id, 0,
                             json_pack("{s:s}", "blob", blob), 0);
    }
    spin(fx);
    /* 30 KiB of task frames, the handler reads none: the first ones are written at once, the
     * rest cannot have left yet. */
    assert_true(overhead_count(fx, "dispatch") < 32);
    for (int i = 0; i < 32; i++)
        expect_type(fx, "task", NULL);
    spin(fx);
    assert_true(overhead_count(fx, "dispatch") == 32);
    assert_true(overhead_count(fx, "result") == 0);
    send_json(fx, "{\"type\":\"complete\",\"id\":\"t-0\"}");
    assert_int_equal(fx->src.completed, 1);
    assert_true(overhead_count(fx, "result") == 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_task_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_credits_bound_tasks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_frame_abandons_tasks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversized_frame, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_task, setup, teardown),
        cmocka_unit_test_setup_teardown(test_frame_before_hello, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ping_call_reserved, setup, teardown),
        cmocka_unit_test_setup_teardown(test_result_type_per_source, setup, teardown),
        cmocka_unit_test_setup_teardown(test_topics_hello_and_kafka_results, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hello_routes_checked_per_source, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hello_without_routes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_welcome_before_first_task, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abandon_sees_no_closing_credit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handler_eof_abandons, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_handler_for_route, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unserved_job_type_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversized_task_fails_in_source, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unencodable_task_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_result_message_with_nul, setup, teardown),
        cmocka_unit_test_setup_teardown(test_welcome_lists_features_and_methods, setup, teardown),
        cmocka_unit_test_setup_teardown(test_call_routed_to_method, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reply_after_close_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reply_later_delivered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_extend_unsupported_without_op, setup, teardown),
        cmocka_unit_test_setup_teardown(test_extend_handed_to_source, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_with_feature, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_without_feature, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_queued_task, setup, teardown),
        cmocka_unit_test_setup_teardown(test_overhead_observed, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
