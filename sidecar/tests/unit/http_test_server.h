/* An in-process evhttp server on 127.0.0.1 that runs on the test's own event loop, and the loops
 * that drive it, shared by the HTTP client tests (test_http.c, test_registry.c). Include after
 * cmocka.h. */
#ifndef SK_HTTP_TEST_SERVER_H
#define SK_HTTP_TEST_SERVER_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "core/clock.h"

typedef struct {
    struct event_base *base;
    struct evhttp *evhttp;
    struct event *tick; /* keeps EVLOOP_ONCE from blocking for ever */
    int port;           /* where the server listens */
} test_server;

static inline void test_server_on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

/* Creates a loop and a server on it bound to a free port of 127.0.0.1; every request goes to
 * on_request(req, arg). */
static inline void test_server_start(test_server *t,
                                     void (*on_request)(struct evhttp_request *, void *), void *arg)
{
    t->base = event_base_new();
    t->evhttp = evhttp_new(t->base);
    evhttp_set_gencb(t->evhttp, on_request, arg);
    struct evhttp_bound_socket *s = evhttp_bind_socket_with_handle(t->evhttp, "127.0.0.1", 0);
    assert_non_null(s);
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    assert_int_equal(getsockname(evhttp_bound_socket_get_fd(s), (struct sockaddr *)&sa, &len), 0);
    t->port = ntohs(sa.sin_port);
    t->tick = event_new(t->base, -1, EV_PERSIST, test_server_on_tick, NULL);
    struct timeval tv = {.tv_usec = 20000};
    event_add(t->tick, &tv);
}

/* Frees the server (requests it holds are dropped) and the loop; free the clients first. */
static inline void test_server_stop(test_server *t)
{
    evhttp_free(t->evhttp);
    event_free(t->tick);
    event_base_free(t->base);
}

/* Writes http://127.0.0.1:<port><path> to out. */
static inline void test_server_url(const test_server *t, const char *path, char *out, size_t len)
{
    snprintf(out, len, "http://127.0.0.1:%d%s", t->port, path);
}

/* Copies the request header name to out ("" when absent). */
static inline void copy_header(struct evhttp_request *req, const char *name, char *out, size_t len)
{
    const char *v = evhttp_find_header(evhttp_request_get_input_headers(req), name);
    snprintf(out, len, "%s", v ? v : "");
}

/* Runs the loop until *counter reaches target, for 10 s at most. */
static inline void run_until(test_server *t, const int *counter, int target)
{
    double deadline = sk_mono_s() + 10;
    while (*counter < target && sk_mono_s() < deadline)
        event_base_loop(t->base, EVLOOP_ONCE);
    assert_true(*counter >= target);
}

static inline void run_for(test_server *t, double seconds)
{
    double deadline = sk_mono_s() + seconds;
    while (sk_mono_s() < deadline)
        event_base_loop(t->base, EVLOOP_ONCE);
}

/* Binds a socket on 127.0.0.1 without listening: connections to *port are refused while it stays
 * open, and nothing else takes the port. Returns the socket; close it at the end of the test. */
static inline int refusing_socket(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t len = sizeof sa;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

#endif
