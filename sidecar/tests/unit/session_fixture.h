/* The fixture of the handler tests that drive sessions and the dispatcher together over a
 * socketpair, as a handler would (test_handler.c, test_session_batch.c): a fake source that
 * records what comes back to it, a session on one end, framing helpers on the other. Include
 * after cmocka.h. */
#ifndef SK_SESSION_FIXTURE_H
#define SK_SESSION_FIXTURE_H

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "core/log.h"
#include "handler/dispatcher.h"
#include "handler/session.h"

typedef struct fake_source {
    int completed, failed, errors, abandoned, extended, rejected;
    char last_vars[256];
    char last_why[256];
    char last_reason[32];
    size_t last_message_len;
    int64_t last_timeout;
    int last_had_reply;
} fake_source;

static inline void f_complete(void *src, void *ctx, const sk_msg *m)
{
    (void)ctx;
    fake_source *f = src;
    f->completed++;
    char *s = m->variables ? json_dumps(m->variables, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    snprintf(f->last_vars, sizeof(f->last_vars), "%s", s ? s : "");
    free(s);
}

static inline void f_fail(void *src, void *ctx, const sk_msg *m)
{
    (void)ctx;
    fake_source *f = src;
    f->failed++;
    f->last_message_len = m->message_len;
}

static inline void f_error(void *src, void *ctx, const sk_msg *m)
{
    (void)ctx;
    (void)m;
    ((fake_source *)src)->errors++;
}

static inline void f_abandon(void *src, void *ctx, const char *why)
{
    (void)ctx;
    fake_source *f = src;
    f->abandoned++;
    snprintf(f->last_why, sizeof(f->last_why), "%s", why);
}

static inline void f_reject(void *src, void *ctx, const char *reason, const char *why)
{
    (void)ctx;
    fake_source *f = src;
    f->rejected++;
    snprintf(f->last_reason, sizeof(f->last_reason), "%s", reason);
    snprintf(f->last_why, sizeof(f->last_why), "%s", why);
}

#define ZEEBE_RESULTS                                                                              \
    (SK_RESULT(SK_MSG_COMPLETE) | SK_RESULT(SK_MSG_FAIL) | SK_RESULT(SK_MSG_BPMN_ERROR))
static const sk_source_ops fake_ops = {.name = "fake",
                                       .results = ZEEBE_RESULTS,
                                       .complete = f_complete,
                                       .fail = f_fail,
                                       .error = f_error,
                                       .abandon = f_abandon,
                                       .reject = f_reject};
typedef struct fixture {
    struct event_base *base;
    sk_metrics *metrics;
    sk_dispatcher *d;
    sk_session *s;
    int fd;       /* the handler's end */
    int skiff_fd; /* the session's end (owned by the session) */
    int closed;
    fake_source src;
    sk_reply *held; /* a call answered later */
    int credit_calls;
} fixture;

static inline void on_closed(void *ud, sk_session *s)
{
    (void)s;
    ((fixture *)ud)->closed = 1;
}

static inline int setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    int sv[2];
    sk_log_init("test", SK_LOG_ERROR, stderr);
    signal(SIGPIPE, SIG_IGN); /* a write to a closed peer fails the test, not the process */
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    fx->base = event_base_new();
    fx->metrics = sk_metrics_new();
    fx->d = sk_dispatcher_new(fx->metrics, 1024);
    sk_dispatcher_add_route(fx->d, "zeebe", "work");
    sk_dispatcher_add_route(fx->d, "zeebe", "nobody");
    evutil_make_socket_nonblocking(sv[0]);
    sk_session_opts o = {.max_frame = 1024, .hello_timeout_ms = 5000};
    fx->s = sk_session_new(fx->base, sv[0], fx->d, &o, fx->metrics, on_closed, fx);
    fx->fd = sv[1];
    fx->skiff_fd = sv[0];
    assert_non_null(fx->s);
    *state = fx;
    return 0;
}

static inline int teardown(void **state)
{
    fixture *fx = *state;
    if (!fx->closed)
        sk_session_free(fx->s);
    event_base_loop(fx->base, EVLOOP_NONBLOCK);
    sk_reply_drop(fx->held);
    sk_dispatcher_free(fx->d);
    sk_metrics_free(fx->metrics);
    event_base_free(fx->base);
    close(fx->fd);
    free(fx);
    return 0;
}

static inline void spin(fixture *fx)
{
    for (int i = 0; i < 5; i++)
        event_base_loop(fx->base, EVLOOP_NONBLOCK);
}

static inline void send_raw(fixture *fx, const void *buf, size_t len)
{
    assert_int_equal(write(fx->fd, buf, len), (ssize_t)len);
    spin(fx);
}

static inline void send_json(fixture *fx, const char *json)
{
    size_t n = strlen(json);
    uint8_t hdr[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
    assert_int_equal(write(fx->fd, hdr, 4), 4);
    send_raw(fx, json, n);
}

static inline int read_full(fixture *fx, uint8_t *buf, size_t len)
{
    size_t got = 0;
    for (int tries = 0; got < len && tries < 200; tries++) {
        spin(fx);
        struct pollfd p = {.fd = fx->fd, .events = POLLIN};
        if (poll(&p, 1, 10) <= 0)
            continue;
        ssize_t r = read(fx->fd, buf + got, len - got);
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return got == len ? 0 : -1;
}

/* Next frame from skiff as JSON, or NULL at EOF/timeout. */
static json_t *recv_frame(fixture *fx)
{
    uint8_t hdr[4];
    if (read_full(fx, hdr, 4) != 0)
        return NULL;
    size_t n = (size_t)hdr[0] << 24 | (size_t)hdr[1] << 16 | (size_t)hdr[2] << 8 | hdr[3];
    char *buf = malloc(n);
    json_t *j = read_full(fx, (uint8_t *)buf, n) == 0 ? json_loadb(buf, n, 0, NULL) : NULL;
    free(buf);
    return j;
}

static inline void expect_type(fixture *fx, const char *type, json_t **out)
{
    json_t *f = recv_frame(fx);
    assert_non_null(f);
    assert_string_equal(json_string_value(json_object_get(f, "type")), type);
    if (out)
        *out = f;
    else
        json_decref(f);
}

static inline void expect_eof(fixture *fx)
{
    uint8_t b;
    assert_int_equal(read_full(fx, &b, 1), -1);
    spin(fx);
    assert_true(fx->closed);
}

/* Handshake; features: a JSON array text or NULL. Returns the welcome frame. */
static json_t *hello_features(fixture *fx, int capacity, const char *features)
{
    char buf[200];
    snprintf(buf, sizeof(buf),
             "{\"type\":\"hello\",\"version\":1,\"name\":\"t\",\"capacity\":%d,\"job_types\":["
             "\"work\"]%s%s}",
             capacity, features ? ",\"features\":" : "", features ? features : "");
    send_json(fx, buf);
    json_t *w;
    expect_type(fx, "welcome", &w);
    assert_int_equal(json_integer_value(json_object_get(w, "max_frame")), 1024);
    return w;
}

/* No frame from skiff within about 50 ms. */
static inline void expect_nothing(fixture *fx)
{
    for (int i = 0; i < 5; i++) {
        spin(fx);
        struct pollfd p = {.fd = fx->fd, .events = POLLIN};
        assert_int_equal(poll(&p, 1, 10), 0);
    }
}

/* The value of one rendered sample (`name{labels}`), 0 when the series does not exist. */
static inline double sample(fixture *fx, const char *series)
{
    char want[256], *text = sk_metrics_render(fx->metrics, NULL);
    assert_non_null(text);
    snprintf(want, sizeof want, "\n%s ", series);
    const char *p = strstr(text, want);
    double v = p ? strtod(p + strlen(want), NULL) : 0;
    free(text);
    return v;
}

#endif
