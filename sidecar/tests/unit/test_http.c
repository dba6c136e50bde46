/* HTTP client on libevent: requests against an in-process evhttp server on 127.0.0.1 that runs on
 * the same loop. The server echoes what it received, answers a status, sends big bodies or holds
 * a request without answering. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <cmocka.h>
#include <event2/buffer.h>

#include "core/clock.h"
#include "core/metrics.h"
#include "net/http.h"
#include "net/http_obs.h"
#include "trace/trace.h"

#include "http_test_server.h"

#define BIG_BODY 5000

typedef struct {
    test_server server;
    int requests; /* seen by the server */
    char method[16], uri[256], xtest[64], ctype[64], auth[128], body[256], tp[64];
    sk_http *http;
} fixture;

/* What a callback saw, and what it does next (re-entrancy checks). */
typedef struct outcome {
    int calls;
    long status;
    char body[8192];
    size_t body_len;
    int failed;
    char error[512];
    double total_s;
    sk_http_req *cancel;   /* cancel this request from the callback */
    sk_http *start;        /* start GET start_url from the callback */
    const char *start_url; /* ... with then as its outcome */
    struct outcome *then;
    sk_http_req *started;
    sk_http **free_it; /* free *free_it from the callback */
} outcome;

static const char *method_name(enum evhttp_cmd_type c)
{
    switch (c) {
    case EVHTTP_REQ_GET:
        return "GET";
    case EVHTTP_REQ_POST:
        return "POST";
    case EVHTTP_REQ_PUT:
        return "PUT";
    case EVHTTP_REQ_DELETE:
        return "DELETE";
    default:
        return "OTHER";
    }
}

static void reply(struct evhttp_request *req, int code, const char *body, size_t len)
{
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, body, len);
    evhttp_send_reply(req, code, "Whatever", b);
    evbuffer_free(b);
}

static void on_server(struct evhttp_request *req, void *arg)
{
    fixture *f = arg;
    static char big[BIG_BODY];
    memset(big, 'x', sizeof big);
    f->requests++;
    const char *uri = evhttp_request_get_uri(req);
    snprintf(f->uri, sizeof f->uri, "%s", uri);
    snprintf(f->method, sizeof f->method, "%s", method_name(evhttp_request_get_command(req)));
    copy_header(req, "X-Test", f->xtest, sizeof f->xtest);
    copy_header(req, "Content-Type", f->ctype, sizeof f->ctype);
    copy_header(req, "Authorization", f->auth, sizeof f->auth);
    copy_header(req, "traceparent", f->tp, sizeof f->tp);
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    ev_ssize_t n = evbuffer_copyout(in, f->body, sizeof f->body - 1);
    f->body[n > 0 ? n : 0] = '\0';
    if (!strcmp(uri, "/slow"))
        return; /* never answered; evhttp_free drops it */
    if (!strncmp(uri, "/status/", 8)) {
        char b[64];
        int code = atoi(uri + 8);
        int len = snprintf(b, sizeof b, "status %d", code);
        reply(req, code, b, (size_t)len);
    } else if (!strcmp(uri, "/big")) {
        reply(req, 200, big, sizeof big);
    } else if (!strcmp(uri, "/bigchunked")) {
        struct evbuffer *b = evbuffer_new();
        evhttp_send_reply_start(req, 200, "OK");
        evbuffer_add(b, big, sizeof big);
        evhttp_send_reply_chunk(req, b);
        evhttp_send_reply_end(req);
        evbuffer_free(b);
    } else {
        char b[512];
        int len = snprintf(b, sizeof b, "%s %s %s", f->method, f->xtest, f->body);
        reply(req, 200, b, (size_t)len);
    }
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    test_server_start(&f->server, on_server, f);
    evhttp_set_allowed_methods(f->server.evhttp, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                                     EVHTTP_REQ_DELETE | EVHTTP_REQ_HEAD);
    char err[256] = "";
    f->http = sk_http_new(f->server.base, err, sizeof err);
    if (!f->http)
        fail_msg("sk_http_new: %s", err);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    sk_http_free(f->http);
    test_server_stop(&f->server);
    free(f);
    return 0;
}

static void on_done(void *ud, const sk_http_result *r)
{
    outcome *o = ud;
    o->calls++;
    o->status = r->status;
    o->body_len = r->body_len;
    snprintf(o->body, sizeof o->body, "%s", r->body);
    o->failed = r->error != NULL;
    snprintf(o->error, sizeof o->error, "%s", r->error ? r->error : "");
    o->total_s = r->total_s;
    if (o->cancel)
        sk_http_cancel(o->cancel);
    if (o->start)
        o->started = sk_http_request(o->start, "GET", o->start_url, NULL, NULL, 0, NULL, 5000,
                                     on_done, o->then);
    if (o->free_it) {
        sk_http_free(*o->free_it);
        *o->free_it = NULL;
    }
}

static sk_http_req *get(fixture *f, const char *path, int64_t timeout_ms, outcome *o)
{
    char u[128];
    test_server_url(&f->server, path, u, sizeof u);
    return sk_http_request(f->http, "GET", u, NULL, NULL, 0, NULL, timeout_ms, on_done, o);
}

static void test_get(void **state)
{
    fixture *f = *state;
    outcome o = {0};
    char u[128];
    test_server_url(&f->server, "/echo", u, sizeof u);
    const char *headers[] = {"X-Test: hello", NULL};
    assert_non_null(sk_http_request(f->http, "GET", u, headers, NULL, 0, NULL, 5000, on_done, &o));
    assert_int_equal(o.calls, 0); /* never from inside sk_http_request */
    run_until(&f->server, &o.calls, 1);
    assert_false(o.failed);
    assert_int_equal(o.status, 200);
    assert_string_equal(o.body, "GET hello ");
    assert_int_equal(o.body_len, strlen("GET hello "));
    assert_true(o.total_s > 0);
    assert_string_equal(f->auth, "");
    run_for(&f->server, 0.05);
    assert_int_equal(o.calls, 1);
}

static void test_post_and_put(void **state)
{
    fixture *f = *state;
    outcome o = {0}, p = {0};
    char u[128];
    test_server_url(&f->server, "/echo", u, sizeof u);
    const char *headers[] = {"Content-Type: application/json", "X-Test: abc", NULL};
    assert_non_null(
        sk_http_request(f->http, "POST", u, headers, "{\"a\":1}", 7, NULL, 5000, on_done, &o));
    run_until(&f->server, &o.calls, 1);
    assert_int_equal(o.status, 200);
    assert_string_equal(o.body, "POST abc {\"a\":1}");
    assert_string_equal(f->ctype, "application/json");

    assert_non_null(sk_http_request(f->http, "PUT", u, NULL, "xyz", 3, NULL, 5000, on_done, &p));
    run_until(&f->server, &p.calls, 1);
    assert_string_equal(p.body, "PUT  xyz");

    /* An empty POST sends an empty body (curl must not read stdin). */
    outcome q = {0};
    assert_non_null(sk_http_request(f->http, "POST", u, NULL, NULL, 0, NULL, 5000, on_done, &q));
    run_until(&f->server, &q.calls, 1);
    assert_string_equal(q.body, "POST  ");
}

static void test_status_and_auth(void **state)
{
    fixture *f = *state;
    outcome o = {0}, a = {0};
    assert_non_null(get(f, "/status/404", 5000, &o));
    run_until(&f->server, &o.calls, 1);
    assert_false(o.failed);
    assert_int_equal(o.status, 404);
    assert_string_equal(o.body, "status 404");

    char u[128];
    test_server_url(&f->server, "/echo", u, sizeof u);
    assert_non_null(
        sk_http_request(f->http, "GET", u, NULL, NULL, 0, "alice:s3cret", 5000, on_done, &a));
    run_until(&f->server, &a.calls, 1);
    assert_string_equal(f->auth, "Basic YWxpY2U6czNjcmV0");
}

static void test_bad_arguments(void **state)
{
    fixture *f = *state;
    outcome o = {0};
    const char *bad_header[] = {"X-Test: a\r\nX-Evil: b", NULL};
    char u[128];
    test_server_url(&f->server, "/echo", u, sizeof u);
    assert_null(sk_http_request(NULL, "GET", u, NULL, NULL, 0, NULL, 0, on_done, &o));
    assert_null(sk_http_request(f->http, "G T", u, NULL, NULL, 0, NULL, 0, on_done, &o));
    assert_null(sk_http_request(f->http, "GET", u, bad_header, NULL, 0, NULL, 0, on_done, &o));
    assert_null(sk_http_request(f->http, "GET", u, NULL, NULL, 3, NULL, 0, on_done, &o));
    assert_null(sk_http_request(f->http, "GET", NULL, NULL, NULL, 0, NULL, 0, on_done, &o));
    run_for(&f->server, 0.05);
    assert_int_equal(o.calls, 0);
    assert_int_equal(f->requests, 0);
}

static void test_refused(void **state)
{
    fixture *f = *state;
    /* A bound socket that does not listen refuses connections, and keeps its port. */
    int port;
    int fd = refusing_socket(&port);
    char u[128];
    snprintf(u, sizeof u, "http://127.0.0.1:%d/x", port);
    outcome o = {0};
    assert_non_null(sk_http_request(f->http, "GET", u, NULL, NULL, 0, NULL, 5000, on_done, &o));
    run_until(&f->server, &o.calls, 1);
    close(fd);
    assert_true(o.failed);
    assert_int_equal(o.status, 0);
    if (!strstr(o.error, "onnect"))
        fail_msg("error: %s", o.error);
}

static void test_timeout(void **state)
{
    fixture *f = *state;
    outcome o = {0};
    double t0 = sk_mono_s();
    assert_non_null(get(f, "/slow", 200, &o));
    run_until(&f->server, &o.calls, 1);
    double took = sk_mono_s() - t0;
    assert_true(o.failed);
    assert_int_equal(o.status, 0);
    if (!strstr(o.error, "Timeout") || took < 0.15 || took > 3)
        fail_msg("after %.3f s: %s", took, o.error);
}

static void test_body_limit(void **state)
{
    fixture *f = *state;
    outcome a = {0}, b = {0}, c = {0};
    sk_http_set_max_body(f->http, 1000);
    assert_non_null(get(f, "/big", 5000, &a));        /* Content-Length over the limit */
    assert_non_null(get(f, "/bigchunked", 5000, &b)); /* found out while reading */
    assert_non_null(get(f, "/status/200", 5000, &c));
    run_until(&f->server, &a.calls, 1);
    run_until(&f->server, &b.calls, 1);
    run_until(&f->server, &c.calls, 1);
    assert_true(a.failed);
    assert_true(b.failed);
    if (!strstr(a.error, "over the limit of 1000 bytes") || !strstr(b.error, "over the limit"))
        fail_msg("errors: %s / %s", a.error, b.error);
    assert_true(b.body_len <= 1000);
    assert_false(c.failed);
    assert_string_equal(c.body, "status 200");

    outcome d = {0};
    sk_http_set_max_body(f->http, BIG_BODY);
    assert_non_null(get(f, "/bigchunked", 5000, &d));
    run_until(&f->server, &d.calls, 1);
    assert_false(d.failed);
    assert_int_equal(d.body_len, BIG_BODY);
}

static void test_cancel(void **state)
{
    fixture *f = *state;
    outcome a = {0}, b = {0}, c = {0};
    sk_http_cancel(get(f, "/echo", 5000, &a)); /* before it started */
    sk_http_req *held = get(f, "/slow", 5000, &b);
    assert_non_null(held);
    run_until(&f->server, &f->requests, 1);
    sk_http_cancel(held); /* while the server holds it */
    sk_http_cancel(NULL);
    assert_non_null(get(f, "/status/204", 5000, &c));
    run_until(&f->server, &c.calls, 1);
    run_for(&f->server, 0.1);
    assert_int_equal(a.calls, 0);
    assert_int_equal(b.calls, 0);
    assert_int_equal(c.status, 204);
}

static void test_free_in_flight(void **state)
{
    fixture *f = *state;
    outcome a = {0}, b = {0}, c = {0};
    assert_non_null(get(f, "/slow", 5000, &a));
    assert_non_null(get(f, "/slow", 5000, &b));
    run_until(&f->server, &f->requests, 2);
    assert_non_null(get(f, "/echo", 5000, &c)); /* not started yet */
    sk_http_free(f->http);
    f->http = NULL;
    run_for(&f->server, 0.1);
    assert_int_equal(a.calls + b.calls + c.calls, 0);
    sk_http_free(NULL);
}

/* A callback starts a request and cancels another one still in flight. */
static void test_reentry(void **state)
{
    fixture *f = *state;
    outcome held = {0}, next = {0};
    sk_http_req *h = get(f, "/slow", 5000, &held);
    char u[128];
    test_server_url(&f->server, "/status/201", u, sizeof u);
    outcome first = {.cancel = h, .start = f->http, .start_url = u, .then = &next};
    assert_non_null(get(f, "/echo", 5000, &first));
    run_until(&f->server, &next.calls, 1);
    assert_non_null(first.started);
    assert_int_equal(next.status, 201);
    run_for(&f->server, 0.05);
    assert_int_equal(held.calls, 0);
    assert_int_equal(first.calls, 1);
}

/* A callback frees the client: the other requests are dropped without their callbacks. */
static void test_free_in_callback(void **state)
{
    fixture *f = *state;
    outcome a = {.free_it = &f->http}, b = {0}, c = {0};
    assert_non_null(get(f, "/echo", 5000, &a));
    assert_non_null(get(f, "/slow", 5000, &b));
    assert_non_null(get(f, "/slow", 5000, &c));
    run_until(&f->server, &a.calls, 1);
    assert_null(f->http);
    run_for(&f->server, 0.1);
    assert_int_equal(a.calls, 1);
    assert_int_equal(b.calls + c.calls, 0);
}

/* ---- streaming ---- */

typedef struct stream_seen {
    long status;
    int heads, chunks, ends, pause_first, stop_head, content_length_seen;
    size_t bytes;
    char first[64];
    int failed;
    char error[256];
} stream_seen;

static int s_head(void *ud, long status, const char *const *headers, size_t n)
{
    stream_seen *s = ud;
    s->status = status;
    s->heads++;
    for (size_t i = 0; i < n; i++) {
        assert_null(strpbrk(headers[i], "\r\n"));
        if (!strncasecmp(headers[i], "Content-Length:", 15))
            s->content_length_seen = 1;
    }
    return s->stop_head ? -1 : 0;
}

static int s_data(void *ud, const char *data, size_t len)
{
    stream_seen *s = ud;
    if (s->pause_first && s->chunks == 0 && s->bytes == 0) {
        s->pause_first = 0;
        s->chunks = -1; /* paused once: the same bytes must come again */
        return 1;
    }
    if (s->chunks < 0)
        s->chunks = 0;
    if (s->bytes == 0)
        snprintf(s->first, sizeof s->first, "%.*s", (int)(len < 63 ? len : 63), data);
    s->chunks++;
    s->bytes += len;
    return 0;
}

static void s_end(void *ud, const sk_http_result *r)
{
    stream_seen *s = ud;
    s->ends++;
    assert_null(r->body);
    if (r->error) {
        s->failed = 1;
        snprintf(s->error, sizeof s->error, "%s", r->error);
    }
}

static const sk_http_stream_cbs s_cbs = {.on_head = s_head, .on_data = s_data, .on_end = s_end};

/* Status, headers and body arrive through the callbacks; a POST body and headers go out. */
static void test_stream_post(void **state)
{
    fixture *f = *state;
    char url[128];
    stream_seen s = {0};
    test_server_url(&f->server, "/echo", url, sizeof url);
    const char *headers[] = {"X-Test: streamed", "Content-Type: text/plain", NULL};
    sk_http_stream_opts o = {.method = "POST",
                             .url = url,
                             .headers = headers,
                             .body = "hello",
                             .body_len = 5,
                             .connect_timeout_ms = 1000,
                             .timeout_ms = 5000};
    assert_non_null(sk_http_stream(f->http, &o, &s_cbs, &s));
    run_until(&f->server, &s.ends, 1);
    assert_false(s.failed);
    assert_int_equal(s.status, 200);
    assert_int_equal(s.heads, 1);
    assert_true(s.content_length_seen);
    assert_string_equal(s.first, "POST streamed hello");
    assert_string_equal(f->ctype, "text/plain");
}

/* on_data returning 1 pauses the transfer: nothing more arrives until sk_http_resume, then the
 * same bytes come again and the rest follows. */
static void test_stream_pause_resume(void **state)
{
    fixture *f = *state;
    char url[128];
    stream_seen s = {.pause_first = 1};
    test_server_url(&f->server, "/bigchunked", url, sizeof url);
    sk_http_stream_opts o = {.method = "GET", .url = url, .timeout_ms = 5000};
    sk_http_req *r = sk_http_stream(f->http, &o, &s_cbs, &s);
    assert_non_null(r);
    while (s.chunks != -1 && s.ends == 0)
        event_base_loop(f->server.base, EVLOOP_ONCE);
    run_for(&f->server, 0.3);
    assert_int_equal(s.chunks, -1); /* still paused: no byte taken */
    assert_int_equal(s.ends, 0);
    sk_http_resume(r);
    run_until(&f->server, &s.ends, 1);
    assert_false(s.failed);
    assert_int_equal(s.bytes, BIG_BODY);
    assert_int_equal(s.first[0], 'x');
}

/* on_head returning -1 stops the transfer; on_end says so. */
static void test_stream_stop(void **state)
{
    fixture *f = *state;
    char url[128];
    stream_seen s = {.stop_head = 1};
    test_server_url(&f->server, "/status/503", url, sizeof url);
    sk_http_stream_opts o = {.method = "GET", .url = url, .timeout_ms = 5000};
    assert_non_null(sk_http_stream(f->http, &o, &s_cbs, &s));
    run_until(&f->server, &s.ends, 1);
    assert_int_equal(s.status, 503);
    assert_true(s.failed);
    assert_non_null(strstr(s.error, "stopped by the receiver"));
    assert_int_equal(s.bytes, 0);
    sk_http_stream_opts bad = {.method = "get", .url = url};
    assert_null(sk_http_stream(f->http, &bad, &s_cbs, &s));
    assert_null(sk_http_stream(f->http, &o, NULL, &s));
    sk_http_resume(NULL);
}

/* A request carries the traceparent of its own CLIENT span, child of the active span; the
 * OTLP exporter's client (untraced) sends none; both feed the peer's metrics. */
static void test_traceparent_and_metrics(void **state)
{
    fixture *f = *state;
    sk_metrics *m = sk_metrics_new();
    sk_span *task = sk_span_start(NULL, "process t", SK_SPAN_CONSUMER);
    sk_span_scope prev;
    sk_span_enter(task, &prev);
    outcome o = {0};
    sk_http_set_observe(f->http, m, "registry", 1);
    assert_non_null(get(f, "/echo", 5000, &o));
    sk_span_leave(&prev);
    run_until(&f->server, &o.calls, 1);
    char want[40];
    snprintf(want, sizeof want, "00-%s-", task->trace_hex);
    assert_int_equal(strlen(f->tp), SK_TRACEPARENT_LEN);
    assert_memory_equal(f->tp, want, strlen(want));          /* the task's trace */
    assert_memory_not_equal(f->tp + 36, task->span_hex, 16); /* its own span id */
    sk_http_set_observe(f->http, m, "otlp", 0);
    outcome p = {0};
    assert_non_null(get(f, "/echo", 5000, &p));
    run_until(&f->server, &p.calls, 1);
    assert_string_equal(f->tp, "");
    char *text = sk_metrics_render(m, NULL);
    assert_non_null(
        strstr(text, "skiff_http_client_request_duration_seconds_count{peer=\"registry\"} 1"));
    assert_non_null(strstr(text, "skiff_http_client_ttfb_seconds_count{peer=\"otlp\"} 1"));
    free(text);
    sk_span_free(task);
    sk_metrics_free(m);
}

/* url.full never shows credentials or query values. */
static void test_url_redacted(void **state)
{
    (void)state;
    char out[256];
    sk_http_url_redacted("https://user:canary@vault.example:8200/v1/x?token=canary&a&b=2#frag", out,
                         sizeof out);
    assert_string_equal(out, "https://vault.example:8200/v1/x?token=REDACTED&a&b=REDACTED");
    sk_http_url_redacted("http://127.0.0.1:28081/schemas/ids/1", out, sizeof out);
    assert_string_equal(out, "http://127.0.0.1:28081/schemas/ids/1");
    sk_http_url_redacted("not a url", out, sizeof out);
    assert_string_equal(out, "");
}

int main(void)
{
    setenv("no_proxy", "*", 1); /* the tests talk to 127.0.0.1 directly */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_post_and_put, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status_and_auth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reentry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_in_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_post, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_pause_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_traceparent_and_metrics, setup, teardown),
        cmocka_unit_test(test_url_redacted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
