/* Admin HTTP server: the three endpoints, 404/405, bind errors. The server runs on a libevent
 * loop in the test's main thread; a client thread speaks plain HTTP/1.1 over a socket. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <cmocka.h>
#include <event2/event.h>
#include <event2/thread.h>

#include "core/admin.h"

typedef struct {
    int status;
    char headers[2048];
    char body[4096];
} response;

/* One request on a new connection, with an Accept header unless accept is NULL; the whole
 * answer is read until the server closes. */
static int http_accept(int port, const char *method, const char *path, const char *accept,
                       response *r)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        close(fd);
        return -1;
    }
    char req[1024], raw[8192], hdr[600] = "";
    if (accept)
        snprintf(hdr, sizeof hdr, "Accept: %.500s\r\n", accept);
    int n = snprintf(req, sizeof req,
                     "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n%s"
                     "Content-Length: 0\r\n\r\n",
                     method, path, hdr);
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    size_t len = 0;
    ssize_t k;
    while (len < sizeof raw - 1 && (k = read(fd, raw + len, sizeof raw - 1 - len)) > 0)
        len += (size_t)k;
    raw[len] = '\0';
    close(fd);
    char *end = strstr(raw, "\r\n\r\n");
    if (!end || sscanf(raw, "HTTP/1.%*d %d", &r->status) != 1)
        return -1;
    *end = '\0';
    snprintf(r->headers, sizeof r->headers, "%.2000s", raw);
    snprintf(r->body, sizeof r->body, "%.4000s", end + 4);
    return 0;
}

static int http(int port, const char *method, const char *path, response *r)
{
    return http_accept(port, method, path, NULL, r);
}

typedef struct {
    struct event_base *base;
    int port;
    atomic_int ready;
    int failures;
    char log[16384];
} fixture;

static void check(fixture *f, int ok, const char *what)
{
    if (!ok) {
        f->failures++;
        snprintf(f->log + strlen(f->log), sizeof f->log - strlen(f->log), "%.3500s\n", what);
    }
}

static void expect(fixture *f, const char *method, const char *path, int status, const char *body,
                   const char *header)
{
    response r = {0};
    char what[4096];
    int rc = http(f->port, method, path, &r);
    snprintf(what, sizeof what, "%s %s: rc %d status %d body \"%.1000s\" headers:\n%.2000s", method,
             path, rc, r.status, r.body, r.headers);
    check(f, rc == 0 && r.status == status, what);
    if (body)
        check(f, strcmp(r.body, body) == 0, what);
    if (header)
        check(f, strstr(r.headers, header) != NULL, what);
}

#define OM_TYPE "Content-Type: application/openmetrics-text; version=1.0.0; charset=utf-8"
#define TEXT_TYPE "Content-Type: text/plain; version=0.0.4; charset=utf-8"

/* GET /metrics with this Accept header answers in OpenMetrics (om) or the text format. */
static void expect_format(fixture *f, const char *accept, int om)
{
    response r = {0};
    char what[4096];
    int rc = http_accept(f->port, "GET", "/metrics", accept, &r);
    snprintf(what, sizeof what, "Accept %s: rc %d status %d body \"%.1000s\" headers:\n%.2000s",
             accept ? accept : "(none)", rc, r.status, r.body, r.headers);
    check(f, rc == 0 && r.status == 200 && strstr(r.headers, "Vary: Accept"), what);
    check(f, strstr(r.headers, om ? OM_TYPE : TEXT_TYPE) != NULL, what);
    if (om)
        check(f,
              strcmp(r.body, "# HELP skiff_up Test counter.\n# TYPE skiff_up counter\n"
                             "skiff_up_total 7\n# EOF\n") == 0,
              what);
    else
        check(f,
              strcmp(r.body, "# HELP skiff_up_total Test counter.\n# TYPE skiff_up_total "
                             "counter\nskiff_up_total 7\n") == 0,
              what);
}

static void content_negotiation(fixture *f)
{
    /* What Prometheus 2.x sends, with and without exemplar storage. */
    expect_format(f,
                  "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
                  "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
                  1);
    expect_format(f, "text/plain;version=0.0.4;q=1,*/*;q=0.1", 0);
    expect_format(f, "application/openmetrics-text", 1);
    expect_format(f, "Application/OpenMetrics-Text ; version=0.0.1", 1);
    expect_format(f, NULL, 0);
    expect_format(f, "*/*", 0);
    expect_format(f, "text/plain", 0);
    expect_format(f, "application/json", 0);
    expect_format(f, "application/openmetrics-text;q=0", 0);
    expect_format(f, "application/openmetrics-text;version=2.0.0", 0);
    expect_format(f, "text/plain;q=0.9, application/openmetrics-text;q=0.5", 0);
    expect_format(f, "text/plain;q=0.5, application/openmetrics-text;q=0.9", 1);
    expect_format(f, "application/openmetrics-text;q=garbage;;;,,", 0);
    expect_format(f, "application/openmetrics-text;q=nan", 0);
    expect_format(f, "application/openmetrics-text;q=-1", 0);
    expect_format(f, "application/openmetrics-text;q=inf, text/plain;q=0.9", 1);
    expect_format(f, "application/openmetrics-text;q=1e300, text/plain", 1);
    expect_format(f, "application/openmetrics-text ; version=1.0.0 ; q=0.8 , text/plain;q=0.7", 1);
    expect_format(f, "text/*;q=0.9, application/openmetrics-text;q=0.8", 0);
}

static void *client(void *arg)
{
    fixture *f = arg;
    expect(f, "GET", "/healthz", 200, "ok", "Content-Type: text/plain; charset=utf-8");
    expect(f, "GET", "/readyz", 503, "no handler connected", NULL);
    atomic_store(&f->ready, 1);
    expect(f, "GET", "/readyz", 200, "ready", NULL);
    expect(f, "GET", "/metrics", 200,
           "# HELP skiff_up_total Test counter.\n# TYPE skiff_up_total counter\n"
           "skiff_up_total 7\n",
           "Content-Type: text/plain; version=0.0.4; charset=utf-8");
    expect(f, "GET", "/metrics?name=x", 200, NULL, NULL);
    content_negotiation(f);
    expect(f, "HEAD", "/healthz", 200, "", "Content-Length: 2");
    expect(f, "GET", "/", 404, NULL, NULL);
    expect(f, "GET", "/metrics/", 404, NULL, NULL);
    expect(f, "POST", "/metrics", 405, NULL, "Allow: GET, HEAD");
    expect(f, "DELETE", "/healthz", 405, NULL, NULL);
    event_base_loopbreak(f->base);
    return NULL;
}

static int ready_cb(void *ud, char *why, size_t whylen)
{
    fixture *f = ud;
    if (atomic_load(&f->ready))
        return 1;
    snprintf(why, whylen, "no handler connected");
    return 0;
}

static void test_endpoints(void **state)
{
    (void)state;
    assert_int_equal(evthread_use_pthreads(), 0);
    fixture f = {.base = event_base_new()};
    sk_metrics *m = sk_metrics_new();
    sk_series_add(
        sk_metric_series(sk_metrics_counter(m, "skiff_up_total", "Test counter.", NULL), NULL), 7);
    char err[256] = "";
    sk_admin *a = sk_admin_new(f.base, "127.0.0.1:0", m, ready_cb, &f, err, sizeof err);
    if (!a)
        fail_msg("sk_admin_new: %s", err);
    f.port = sk_admin_port(a);
    assert_true(f.port > 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, client, &f), 0);
    event_base_dispatch(f.base);
    pthread_join(t, NULL);
    if (f.failures)
        fail_msg("%d failed checks:\n%s", f.failures, f.log);
    sk_admin_free(a);
    sk_metrics_free(m);
    event_base_free(f.base);
}

static void test_bind_errors(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    char err[256] = "";
    assert_null(sk_admin_new(base, "nonsense", NULL, NULL, NULL, err, sizeof err));
    assert_non_null(strstr(err, "bad address"));

    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(fd, 1), 0);
    socklen_t len = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &len);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", ntohs(sa.sin_port));
    err[0] = '\0';
    assert_null(sk_admin_new(base, addr, NULL, NULL, NULL, err, sizeof err));
    if (!strstr(err, "cannot listen on") || !strstr(err, addr))
        fail_msg("err: %s", err);
    close(fd);

    /* No metrics registry and no probe: empty metrics, always ready. */
    sk_admin *a = sk_admin_new(base, "[::1]:0", NULL, NULL, NULL, err, sizeof err);
    if (a)
        assert_true(sk_admin_port(a) > 0);
    sk_admin_free(a);
    sk_admin_free(NULL);
    assert_int_equal(sk_admin_port(NULL), -1);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_endpoints),
        cmocka_unit_test(test_bind_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
