/* The gRPC channel against a scripted in-process HTTP/2 server (nghttp2 server session on the
 * same libevent loop): the protocol edge cases that real servers do not produce on demand —
 * non-200 statuses, foreign content types, compressed or oversized messages, RST_STREAM codes,
 * GOAWAY with a last-stream-id below a call, unanswered PINGs, silent or non-HTTP/2 peers —
 * plus the exact request headers and the re-entrancy rules of the API. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <nghttp2/nghttp2.h>

#include "fake_h2_server.h"
#include "grpc/grpc.h"

/* ---- the client side ---- */

typedef struct result {
    int closed;
    int code;
    char msg[512];
    int messages;
    size_t last_len;
    int started_returned; /* on_close must never run inside sk_grpc_call_start */
} result;

static void on_msg(void *ud, const uint8_t *m, size_t len)
{
    result *r = ud;
    (void)m;
    r->messages++;
    r->last_len = len;
}

static void on_close(void *ud, int code, const char *msg)
{
    result *r = ud;
    assert_true(r->started_returned);
    r->closed++;
    r->code = code;
    snprintf(r->msg, sizeof r->msg, "%s", msg);
}

typedef struct state_log {
    int changes[16];
    int n;
} state_log;

static void on_state(void *ud, int connected)
{
    state_log *s = ud;
    if (s != NULL && s->n < 16)
        s->changes[s->n++] = connected;
}

static sk_grpc_call *start(sk_grpc_channel *ch, result *r, int64_t timeout_ms)
{
    r->started_returned = 0;
    sk_grpc_call *c = sk_grpc_call_start(ch, "/t.S/M", (const uint8_t *)"req", 3, timeout_ms, NULL,
                                         0, on_msg, on_close, r);
    assert_non_null(c);
    r->started_returned = 1;
    return c;
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    *(int *)arg = 1;
}

/* Runs the loop until *flag becomes non-zero or ms pass; returns *flag. */
static int run_until(struct event_base *base, const int *flag, int ms)
{
    int expired = 0;
    struct event *t = evtimer_new(base, on_timeout, &expired);
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(t, &tv);
    while (!*flag && !expired)
        event_base_loop(base, EVLOOP_ONCE);
    event_free(t);
    return *flag;
}

static void run_for(struct event_base *base, int ms)
{
    int never = 0;
    run_until(base, &never, ms);
}

typedef struct fixture {
    struct event_base *base;
    fserver *srv;
    sk_grpc_channel *ch;
    state_log states;
} fixture;

static sk_grpc_channel *channel_to(fixture *f, int port, int64_t max_message)
{
    char target[32];
    snprintf(target, sizeof target, "127.0.0.1:%d", port);
    sk_grpc_channel_opts o = {.target = target,
                              .max_message_bytes = (size_t)max_message,
                              .connect_timeout_ms = 300,
                              .reconnect_initial_ms = 50,
                              .reconnect_max_ms = 200};
    return sk_grpc_channel_new(f->base, &o, on_state, &f->states);
}

static fixture *setup(fmode mode, fscript script)
{
    fixture *f = calloc(1, sizeof *f);
    f->base = event_base_new();
    f->srv = fserver_new(f->base, mode, script);
    f->ch = channel_to(f, f->srv->port, 0);
    assert_non_null(f->ch);
    return f;
}

static void teardown(fixture *f)
{
    sk_grpc_channel_free(f->ch);
    run_for(f->base, 20); /* let deferred frees run with the loop still alive */
    fserver_free(f->srv);
    event_base_free(f->base);
    free(f);
}

/* Runs the loop until connection `conn` has seen n requests (or ms pass). */
static int wait_streams(fixture *f, int conn, int n, int ms)
{
    for (int waited = 0; waited < ms; waited += 10) {
        if (f->srv->nconns > conn && f->srv->conns[conn]->nstreams >= n)
            return 1;
        run_for(f->base, 10);
    }
    return 0;
}

static fstream *stream_n(fserver *srv, int conn, int n)
{
    assert_true(conn < srv->nconns && n < srv->conns[conn]->nstreams);
    return &srv->conns[conn]->streams[n];
}

/* Runs one call against a server script and returns its result. */
static result one_call(fmode mode, fscript script, int64_t max_message)
{
    fixture *f = setup(mode, script);
    if (max_message) {
        sk_grpc_channel_free(f->ch);
        f->ch = channel_to(f, f->srv->port, max_message);
    }
    result r = {0};
    start(f->ch, &r, 3000);
    assert_true(run_until(f->base, &r.closed, 5000));
    run_for(f->base, 30);
    assert_int_equal(r.closed, 1);
    teardown(f);
    return r;
}

/* ---- scripts ---- */

static void s_ok(fserver *srv, fstream *st)
{
    (void)srv;
    respond_ok(st);
}

static void s_503(fserver *srv, fstream *st)
{
    (void)srv;
    respond_headers_only(st, "503", NULL, NULL);
}

static void s_429_with_grpc_status(fserver *srv, fstream *st)
{
    (void)srv;
    respond_headers_only(st, "429", "8", "slow%20down");
}

static void s_html(fserver *srv, fstream *st)
{
    (void)srv;
    respond(st, "200", "text/html", "<html>", 6, -1, NULL);
}

static void s_404_body(fserver *srv, fstream *st)
{
    (void)srv;
    respond(st, "404", "text/plain", "not found", 9, -1, NULL);
}

static void s_no_grpc_status(fserver *srv, fstream *st)
{
    (void)srv;
    respond(st, "200", "application/grpc", "\0\0\0\0\2ok", 7, -1, NULL);
}

static void s_compressed(fserver *srv, fstream *st)
{
    (void)srv;
    respond(st, "200", "application/grpc", "\1\0\0\0\2ok", 7, 0, NULL);
}

static void s_huge_prefix(fserver *srv, fstream *st)
{
    (void)srv;
    respond(st, "200", "application/grpc", "\0\x7f\xff\xff\xff", 5, 0, NULL);
}

static void s_truncated(fserver *srv, fstream *st)
{
    (void)srv;
    respond(st, "200", "application/grpc", "\0\0\0\0\x09partial", 12, 0, NULL);
}

static uint32_t rst_code;
static void s_rst(fserver *srv, fstream *st)
{
    (void)srv;
    nghttp2_submit_rst_stream(st->conn->h2, NGHTTP2_FLAG_NONE, st->id, rst_code);
}

static void s_silent(fserver *srv, fstream *st)
{
    (void)srv;
    (void)st;
}

/* ---- tests: statuses ---- */

static void test_http_status_without_grpc_status(void **state)
{
    (void)state;
    result r = one_call(MODE_H2, s_503, 0);
    assert_int_equal(r.code, SK_GRPC_UNAVAILABLE);
    assert_non_null(strstr(r.msg, "503"));
    r = one_call(MODE_H2, s_404_body, 0);
    assert_int_equal(r.code, SK_GRPC_UNIMPLEMENTED);
    assert_int_equal(r.messages, 0);
}

static void test_grpc_status_wins_over_http_status(void **state)
{
    (void)state;
    result r = one_call(MODE_H2, s_429_with_grpc_status, 0);
    assert_int_equal(r.code, SK_GRPC_RESOURCE_EXHAUSTED);
    assert_string_equal(r.msg, "slow down");
}

static void test_foreign_content_type(void **state)
{
    (void)state;
    result r = one_call(MODE_H2, s_html, 0);
    assert_int_equal(r.code, SK_GRPC_UNKNOWN);
    assert_non_null(strstr(r.msg, "content-type"));
    assert_int_equal(r.messages, 0);
}

static void test_missing_grpc_status(void **state)
{
    (void)state;
    result r = one_call(MODE_H2, s_no_grpc_status, 0);
    assert_int_equal(r.code, SK_GRPC_INTERNAL);
    assert_int_equal(r.messages, 1);
}

static void test_compressed_message(void **state)
{
    (void)state;
    result r = one_call(MODE_H2, s_compressed, 0);
    assert_int_equal(r.code, SK_GRPC_INTERNAL);
    assert_non_null(strstr(r.msg, "compress"));
    assert_int_equal(r.messages, 0);
}

static void test_truncated_message(void **state)
{
    (void)state;
    result r = one_call(MODE_H2, s_truncated, 0);
    assert_int_equal(r.code, SK_GRPC_INTERNAL);
    assert_int_equal(r.messages, 0);
}

static void test_oversized_prefix_resets_stream(void **state)
{
    (void)state;
    fixture *f = setup(MODE_H2, s_huge_prefix);
    result r = {0};
    start(f->ch, &r, 3000);
    assert_true(run_until(f->base, &r.closed, 3000));
    assert_int_equal(r.code, SK_GRPC_RESOURCE_EXHAUSTED);
    assert_non_null(strstr(r.msg, "2147483647 vs. 4194304"));
    run_for(f->base, 50);
    assert_int_equal(f->srv->rst_received[NGHTTP2_CANCEL], 1);
    teardown(f);
}

static void test_rst_stream_codes(void **state)
{
    (void)state;
    const struct {
        uint32_t h2;
        int grpc;
    } map[] = {
        {NGHTTP2_REFUSED_STREAM, SK_GRPC_UNAVAILABLE},
        {NGHTTP2_CANCEL, SK_GRPC_CANCELLED},
        {NGHTTP2_ENHANCE_YOUR_CALM, SK_GRPC_RESOURCE_EXHAUSTED},
        {NGHTTP2_INTERNAL_ERROR, SK_GRPC_INTERNAL},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        rst_code = map[i].h2;
        result r = one_call(MODE_H2, s_rst, 0);
        assert_int_equal(r.code, map[i].grpc);
    }
}

/* ---- tests: the request on the wire ---- */

/* A lazy channel opens no connection until its first call, then serves it. */
static void test_lazy_connects_at_first_call(void **state)
{
    (void)state;
    fixture *f = setup(MODE_H2, s_ok);
    sk_grpc_channel_free(f->ch);
    char target[32];
    snprintf(target, sizeof target, "127.0.0.1:%d", f->srv->port);
    sk_grpc_channel_opts o = {.target = target, .connect_timeout_ms = 300, .lazy = 1};
    f->ch = sk_grpc_channel_new(f->base, &o, on_state, &f->states);
    run_for(f->base, 200);
    assert_int_equal(f->srv->nconns, 0);
    result r = {0};
    start(f->ch, &r, 1500);
    assert_true(run_until(f->base, &r.closed, 3000));
    assert_int_equal(r.code, SK_GRPC_OK);
    assert_int_equal(f->srv->nconns, 1);
    teardown(f);
}

static void test_request_headers_and_body(void **state)
{
    (void)state;
    fixture *f = setup(MODE_H2, s_ok);
    const sk_grpc_metadata md[] = {{"authorization", "Bearer abc"}, {"x-b", "2"}};
    static uint8_t big[300000];
    memset(big, 'z', sizeof big);
    result r = {0};
    sk_grpc_call_start(f->ch, "/pkg.Svc/Do", big, sizeof big, 1500, md, 2, on_msg, on_close, &r);
    r.started_returned = 1;
    assert_true(run_until(f->base, &r.closed, 3000));
    assert_int_equal(r.code, SK_GRPC_OK);
    assert_int_equal(r.messages, 1);
    assert_int_equal(r.last_len, 2);
    fstream *st = stream_n(f->srv, 0, 0);
    /* The body crossed the 64 KiB initial window: flow control works both ways. */
    assert_int_equal(st->body_len, 5 + sizeof big);
    char authority[64];
    snprintf(authority, sizeof authority, ":authority: 127.0.0.1:%d\n", f->srv->port);
    const char *want[] = {":method: POST\n",
                          ":scheme: http\n",
                          ":path: /pkg.Svc/Do\n",
                          authority,
                          "content-type: application/grpc\n",
                          "te: trailers\n",
                          "user-agent: skiff/0.1\n",
                          "authorization: Bearer abc\n",
                          "x-b: 2\n"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        if (strstr(st->headers, want[i]) == NULL)
            fail_msg("missing %s in\n%s", want[i], st->headers);
    }
    const char *t = strstr(st->headers, "grpc-timeout: ");
    assert_non_null(t);
    long ms = strtol(t + 14, NULL, 10);
    assert_true(ms > 1000 && ms <= 1500);
    assert_true(t[14 + strspn(t + 14, "0123456789")] == 'm');
    teardown(f);
}

/* ---- per-call credentials ---- */

typedef struct auth_src {
    const char *value; /* handed out; NULL: none yet */
    const char *next;  /* replaces value on a rejection */
    int rejected;
    char last_rejected[64];
} auth_src;

static const char *auth_value(void *ud)
{
    return ((auth_src *)ud)->value;
}

static void auth_rejected(void *ud, const char *value)
{
    auth_src *a = ud;
    a->rejected++;
    snprintf(a->last_rejected, sizeof a->last_rejected, "%s", value);
    a->value = a->next;
}

/* UNAUTHENTICATED (trailers-only, as grpc-js sends it) unless the token is "good". */
static void s_auth(fserver *srv, fstream *st)
{
    (void)srv;
    if (strstr(st->headers, "authorization: Bearer good\n"))
        respond_ok(st);
    else
        respond_headers_only(st, "200", "16", "bad%20token");
}

static fixture *auth_setup(const sk_grpc_auth *auth)
{
    fixture *f = setup(MODE_H2, s_auth);
    sk_grpc_channel_free(f->ch);
    char target[32];
    snprintf(target, sizeof target, "127.0.0.1:%d", f->srv->port);
    sk_grpc_channel_opts o = {.target = target, .auth = auth};
    f->ch = sk_grpc_channel_new(f->base, &o, on_state, &f->states);
    assert_non_null(f->ch);
    return f;
}

static void test_auth_retry_once_after_unauthenticated(void **state)
{
    (void)state;
    auth_src a = {.value = "Bearer stale", .next = "Bearer good"};
    const sk_grpc_auth auth = {auth_value, auth_rejected, &a};
    fixture *f = auth_setup(&auth);
    result r = {0};
    start(f->ch, &r, 3000);
    assert_true(run_until(f->base, &r.closed, 5000));
    assert_int_equal(r.code, SK_GRPC_OK);
    assert_int_equal(r.messages, 1);
    assert_int_equal(a.rejected, 1);
    assert_string_equal(a.last_rejected, "Bearer stale");
    assert_int_equal(f->srv->conns[0]->nstreams, 2); /* the same request, sent twice */
    assert_int_equal(stream_n(f->srv, 0, 0)->body_len, 8);
    assert_int_equal(stream_n(f->srv, 0, 1)->body_len, 8);
    teardown(f);

    /* Refused again: the second UNAUTHENTICATED closes the call. */
    a = (auth_src){.value = "Bearer stale", .next = "Bearer also-bad"};
    f = auth_setup(&auth);
    r = (result){0};
    start(f->ch, &r, 3000);
    assert_true(run_until(f->base, &r.closed, 5000));
    assert_int_equal(r.code, SK_GRPC_UNAUTHENTICATED);
    assert_string_equal(r.msg, "bad token");
    assert_int_equal(a.rejected, 2);
    assert_int_equal(f->srv->conns[0]->nstreams, 2);
    teardown(f);
}

/* No token yet: the call waits (connected), then goes when the source says it has one. */
static void test_auth_waits_for_a_token(void **state)
{
    (void)state;
    auth_src a = {0};
    const sk_grpc_auth auth = {auth_value, auth_rejected, &a};
    fixture *f = auth_setup(&auth);
    result r = {0}, late = {0};
    start(f->ch, &r, 0);
    start(f->ch, &late, 300);
    assert_true(run_until(f->base, &late.closed, 3000));
    assert_int_equal(late.code, SK_GRPC_DEADLINE_EXCEEDED);
    assert_non_null(strstr(late.msg, "waiting for an access token"));
    assert_int_equal(r.closed, 0);
    assert_int_equal(f->srv->nconns, 1);
    assert_int_equal(f->srv->conns[0]->nstreams, 0);
    a.value = "Bearer good";
    sk_grpc_channel_auth_changed(f->ch);
    assert_true(run_until(f->base, &r.closed, 3000));
    assert_int_equal(r.code, SK_GRPC_OK);
    assert_int_equal(a.rejected, 0);
    teardown(f);
}

static void test_bad_metadata_closes_async(void **state)
{
    (void)state;
    fixture *f = setup(MODE_H2, s_ok);
    const sk_grpc_metadata bad[][1] = {{{"Upper", "x"}},  {{"grpc-status", "0"}},
                                       {{"te", "x"}},     {{"x", "line\nbreak"}},
                                       {{":path", "/x"}}, {{"", "x"}}};
    result r[6] = {{0}};
    for (int i = 0; i < 6; i++) {
        sk_grpc_call *c =
            sk_grpc_call_start(f->ch, "/a/b", NULL, 0, 0, bad[i], 1, on_msg, on_close, &r[i]);
        assert_non_null(c);
        assert_int_equal(r[i].closed, 0);
        r[i].started_returned = 1;
    }
    result nomethod = {0};
    sk_grpc_call_start(f->ch, "no-slash", NULL, 0, 0, NULL, 0, on_msg, on_close, &nomethod);
    nomethod.started_returned = 1;
    run_for(f->base, 100);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(r[i].closed, 1);
        assert_int_equal(r[i].code, SK_GRPC_INTERNAL);
    }
    assert_int_equal(nomethod.code, SK_GRPC_INTERNAL);
    /* Nothing reached the server. */
    assert_true(f->srv->nconns == 0 || f->srv->conns[0]->nstreams == 0);
    teardown(f);
}

/* ---- tests: connection life ---- */

/* A loopback port nothing listens on (bound, then released). */
static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
    socklen_t len = sizeof sin;
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    close(fd);
    return ntohs(sin.sin_port);
}

static void test_unreachable_then_deadline(void **state)
{
    (void)state;
    fixture *f = setup(MODE_H2, s_ok);
    sk_grpc_channel_free(f->ch);
    f->ch = channel_to(f, closed_port(), 0);
    result r = {0};
    start(f->ch, &r, 400);
    assert_true(run_until(f->base, &r.closed, 3000));
    assert_int_equal(r.code, SK_GRPC_DEADLINE_EXCEEDED);
    assert_non_null(strstr(r.msg, "waiting for a connection"));
    assert_non_null(strstr(r.msg, "refused"));
    assert_false(sk_grpc_channel_connected(f->ch));
    teardown(f);
}

static void test_handshake_timeout(void **state)
{
    (void)state;
    fixture *f = setup(MODE_SILENT, NULL);
    result r = {0};
    start(f->ch, &r, 1000);
    assert_true(run_until(f->base, &r.closed, 3000));
    assert_int_equal(r.code, SK_GRPC_DEADLINE_EXCEEDED);
    assert_non_null(strstr(r.msg, "handshake timed out"));
    /* connect timeout 300 ms, then backoff 25..200 ms: a few attempts, not a storm. */
    assert_true(f->srv->nconns >= 2 && f->srv->nconns <= 5);
    assert_int_equal(f->states.n, 0);
    teardown(f);
}

static void test_not_http2_backs_off(void **state)
{
    (void)state;
    fixture *f = setup(MODE_GARBAGE, NULL);
    result r = {0};
    start(f->ch, &r, 1000);
    assert_true(run_until(f->base, &r.closed, 3000));
    assert_int_equal(r.code, SK_GRPC_DEADLINE_EXCEEDED);
    /* Backoff 50 ms doubling to 200 ms (jittered to half): bounded attempts in 1 s. */
    assert_true(f->srv->nconns >= 3 && f->srv->nconns <= 16);
    teardown(f);
}

/* Once both calls are in: GOAWAY naming the first stream as the last one processed, then the
 * first call's response. */
static void s_goaway_after_two(fserver *srv, fstream *st)
{
    (void)srv;
    fconn *c = st->conn;
    if (c->nstreams < 2 || st != &c->streams[1])
        return;
    nghttp2_submit_goaway(c->h2, NGHTTP2_FLAG_NONE, c->streams[0].id, NGHTTP2_NO_ERROR, NULL, 0);
    respond_ok(&c->streams[0]);
}

static void s_ok_on_second_conn(fserver *srv, fstream *st)
{
    if (st->conn == srv->conns[0])
        s_goaway_after_two(srv, st);
    else
        respond_ok(st);
}

static void test_goaway_refuses_newer_streams_and_reconnects(void **state)
{
    (void)state;
    fixture *f = setup(MODE_H2, s_ok_on_second_conn);
    result a = {0}, b = {0}, c = {0};
    start(f->ch, &a, 3000);
    start(f->ch, &b, 3000);
    assert_true(run_until(f->base, &b.closed, 3000));
    assert_true(run_until(f->base, &a.closed, 3000));
    assert_int_equal(a.code, SK_GRPC_OK);          /* at or below last-stream-id: finished */
    assert_int_equal(b.code, SK_GRPC_UNAVAILABLE); /* above: refused, safe to retry */
    start(f->ch, &c, 3000);
    assert_true(run_until(f->base, &c.closed, 3000));
    assert_int_equal(c.code, SK_GRPC_OK);
    assert_int_equal(f->srv->nconns, 2);
    assert_int_equal(stream_n(f->srv, 1, 0)->id, 1); /* c went over the new connection */
    assert_true(f->states.n >= 3);
    assert_int_equal(f->states.changes[0], 1);
    assert_int_equal(f->states.changes[1], 0);
    assert_int_equal(f->states.changes[f->states.n - 1], 1);
    teardown(f);
}

static void test_connection_drop_fails_calls_and_reconnects(void **state)
{
    (void)state;
    fixture *f = setup(MODE_H2, s_silent);
    result a = {0}, b = {0};
    start(f->ch, &a, 0);
    start(f->ch, &b, 0);
    assert_true(wait_streams(f, 0, 2, 2000));
    f->srv->script = s_ok;
    fserver_drop_all(f->srv);
    assert_true(run_until(f->base, &b.closed, 2000));
    assert_int_equal(a.code, SK_GRPC_UNAVAILABLE);
    assert_int_equal(b.code, SK_GRPC_UNAVAILABLE);
    assert_non_null(strstr(a.msg, "lost"));
    result c = {0};
    start(f->ch, &c, 3000);
    assert_true(run_until(f->base, &c.closed, 3000));
    assert_int_equal(c.code, SK_GRPC_OK);
    assert_int_equal(f->srv->nconns, 2);
    teardown(f);
}

static void test_keepalive_ping_timeout(void **state)
{
    (void)state;
    fixture *f = setup(MODE_H2, s_silent);
    f->srv->no_ping_ack = 1;
    sk_grpc_channel_free(f->ch);
    char target[32];
    snprintf(target, sizeof target, "127.0.0.1:%d", f->srv->port);
    sk_grpc_channel_opts o = {.target = target,
                              .keepalive_ms = 100,
                              .keepalive_timeout_ms = 200,
                              .reconnect_initial_ms = 50,
                              .reconnect_max_ms = 100};
    f->ch = sk_grpc_channel_new(f->base, &o, on_state, &f->states);
    /* No call, no PING: idle connections stay quiet. */
    run_for(f->base, 400);
    assert_int_equal(f->srv->pings_received, 0);
    result r = {0};
    start(f->ch, &r, 0);
    assert_true(run_until(f->base, &r.closed, 2000));
    assert_int_equal(r.code, SK_GRPC_UNAVAILABLE);
    assert_non_null(strstr(r.msg, "keepalive"));
    assert_int_equal(f->srv->pings_received, 1);
    teardown(f);
}

/* ---- tests: re-entrancy ---- */

typedef struct chain {
    sk_grpc_channel *ch;
    result first, second;
    sk_grpc_call *victim;
    result victim_r;
} chain;

/* Answers everything except the victim call, which stays open until cancelled. */
static void s_ok_but_victim(fserver *srv, fstream *st)
{
    (void)srv;
    if (strstr(st->headers, ":path: /t.S/Victim\n") == NULL)
        respond_ok(st);
}

static void close_starts_another(void *ud, int code, const char *msg)
{
    chain *c = ud;
    (void)msg;
    c->first.closed = 1;
    c->first.code = code;
    sk_grpc_call_cancel(c->victim); /* another call, from inside a callback */
    start(c->ch, &c->second, 2000); /* and a new one */
}

static void test_callbacks_reenter(void **state)
{
    (void)state;
    fixture *f = setup(MODE_H2, s_ok_but_victim);
    chain c = {.ch = f->ch};
    sk_grpc_call_start(f->ch, "/t.S/First", NULL, 0, 2000, NULL, 0, NULL, close_starts_another, &c);
    c.victim_r.started_returned = 1;
    c.victim = sk_grpc_call_start(f->ch, "/t.S/Victim", NULL, 0, 0, NULL, 0, on_msg, on_close,
                                  &c.victim_r);
    assert_true(run_until(f->base, &c.second.closed, 3000));
    assert_int_equal(c.first.code, SK_GRPC_OK);
    assert_int_equal(c.second.code, SK_GRPC_OK);
    run_for(f->base, 50);
    assert_int_equal(c.victim_r.closed, 0); /* cancelled: no on_close */
    assert_int_equal(f->srv->rst_received[NGHTTP2_CANCEL], 1);
    teardown(f);
}

typedef struct freer {
    sk_grpc_channel **ch;
    result r;
} freer;

static void close_frees_channel(void *ud, int code, const char *msg)
{
    freer *fr = ud;
    (void)msg;
    fr->r.closed++;
    fr->r.code = code;
    sk_grpc_channel_free(*fr->ch); /* inside the channel's own callback */
    *fr->ch = NULL;
}

static void test_free_channel_inside_callback(void **state)
{
    (void)state;
    fixture *f = setup(MODE_H2, s_503);
    freer fr = {.ch = &f->ch};
    result other = {0};
    sk_grpc_call_start(f->ch, "/a/b", NULL, 0, 2000, NULL, 0, NULL, close_frees_channel, &fr);
    f->srv->script = s_503;
    start(f->ch, &other, 0);
    assert_true(run_until(f->base, &fr.r.closed, 3000));
    assert_int_equal(fr.r.closed, 1);
    assert_null(f->ch);
    assert_int_equal(other.closed, 1); /* CANCELLED by the free, or its own 503 */
    teardown(f);
}

static void test_free_channel_with_everything_in_flight(void **state)
{
    (void)state;
    fixture *f = setup(MODE_H2, s_silent);
    result active = {0}, pending = {0};
    start(f->ch, &active, 0);
    assert_true(wait_streams(f, 0, 1, 2000));
    fserver_drop_all(f->srv);
    f->srv->mode = MODE_SILENT;
    run_for(f->base, 20);
    start(f->ch, &pending, 0); /* waits: the server now never finishes a handshake */
    sk_grpc_channel_free(f->ch);
    f->ch = NULL;
    assert_int_equal(pending.closed, 1);
    assert_int_equal(pending.code, SK_GRPC_CANCELLED);
    assert_int_equal(active.closed, 1);
    teardown(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_status_without_grpc_status),
        cmocka_unit_test(test_grpc_status_wins_over_http_status),
        cmocka_unit_test(test_foreign_content_type),
        cmocka_unit_test(test_missing_grpc_status),
        cmocka_unit_test(test_compressed_message),
        cmocka_unit_test(test_truncated_message),
        cmocka_unit_test(test_oversized_prefix_resets_stream),
        cmocka_unit_test(test_rst_stream_codes),
        cmocka_unit_test(test_lazy_connects_at_first_call),
        cmocka_unit_test(test_request_headers_and_body),
        cmocka_unit_test(test_auth_retry_once_after_unauthenticated),
        cmocka_unit_test(test_auth_waits_for_a_token),
        cmocka_unit_test(test_bad_metadata_closes_async),
        cmocka_unit_test(test_unreachable_then_deadline),
        cmocka_unit_test(test_handshake_timeout),
        cmocka_unit_test(test_not_http2_backs_off),
        cmocka_unit_test(test_goaway_refuses_newer_streams_and_reconnects),
        cmocka_unit_test(test_connection_drop_fails_calls_and_reconnects),
        cmocka_unit_test(test_keepalive_ping_timeout),
        cmocka_unit_test(test_callbacks_reenter),
        cmocka_unit_test(test_free_channel_inside_callback),
        cmocka_unit_test(test_free_channel_with_everything_in_flight),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
