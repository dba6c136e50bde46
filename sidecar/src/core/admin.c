#include "core/admin.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "core/config.h"

/* Probes and scrapes are small: bound what a client may send and how long it may take. */
#define ADMIN_TIMEOUT_S 10
#define ADMIN_MAX_HEADERS 8192
#define ADMIN_MAX_BODY 4096

#define METRICS_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define OPENMETRICS_TYPE "application/openmetrics-text; version=1.0.0; charset=utf-8"
#define TEXT_TYPE "text/plain; charset=utf-8"

struct sk_admin {
    struct evhttp *http;
    struct evhttp_bound_socket *sock;
    sk_metrics *metrics;
    sk_admin_ready_cb ready;
    void *ud;
    sk_admin_details_cb details;
    void *details_ud;
    int port;
};

static void reply(struct evhttp_request *req, int code, const char *reason, const char *type,
                  const char *body, size_t len)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    struct evbuffer *out = evbuffer_new();
    evhttp_add_header(h, "Content-Type", type);
    evhttp_add_header(h, "Cache-Control", "no-store");
    /* A HEAD answer carries the length of the body it leaves out. */
    if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
        char n[24];
        snprintf(n, sizeof n, "%zu", len);
        evhttp_add_header(h, "Content-Length", n);
        len = 0;
    }
    if (out && evbuffer_add(out, body, len) == 0) {
        evhttp_send_reply(req, code, reason, out);
    } else {
        evhttp_send_reply(req, 500, "Internal Server Error", NULL);
    }
    if (out)
        evbuffer_free(out);
}

/* Quality (0..1000) of a media range's parameters "; q=0.5; version=1.0.0": -1 when it names
 * an OpenMetrics version other than the 1.0.0 (or its pre-release 0.0.1) served here. */
static int range_quality(const char *params, size_t n, int om)
{
    int q = 1000;
    const char *end = params + n;
    for (const char *p = params; p < end;) {
        while (p < end && (*p == ';' || *p == ' ' || *p == '\t'))
            p++;
        const char *stop = memchr(p, ';', (size_t)(end - p));
        size_t len = (size_t)((stop ? stop : end) - p), plen = len;
        while (plen && (p[plen - 1] == ' ' || p[plen - 1] == '\t'))
            plen--;
        if (plen > 2 && !strncasecmp(p, "q=", 2)) {
            char num[8] = "";
            memcpy(num, p + 2, plen - 2 < sizeof num - 1 ? plen - 2 : sizeof num - 1);
            double v = strtod(num, NULL);
            /* NaN, negative and garbage are 0; above 1 is 1 (and never cast out of range). */
            q = !(v > 0) ? 0 : v >= 1 ? 1000 : (int)(v * 1000 + 0.5);
        } else if (om && plen > 8 && !strncasecmp(p, "version=", 8) &&
                   !(plen == 13 && (!strncmp(p + 8, "1.0.0", 5) || !strncmp(p + 8, "0.0.1", 5)))) {
            return -1;
        }
        p += len;
    }
    return q;
}

int sk_admin_wants_openmetrics(const char *accept)
{
    int om = 0, text = 0;
    for (const char *p = accept; p && *p;) {
        while (*p == ',' || *p == ' ' || *p == '\t')
            p++;
        size_t len = strcspn(p, ",");
        size_t type_len = strcspn(p, ";,");
        while (type_len && (p[type_len - 1] == ' ' || p[type_len - 1] == '\t'))
            type_len--;
        int is_om = type_len == 28 && !strncasecmp(p, "application/openmetrics-text", 28);
        int q = range_quality(p + type_len, len - type_len, is_om);
        if (is_om && q > om)
            om = q;
        else if (!is_om && q > text &&
                 ((type_len == 10 && !strncasecmp(p, "text/plain", 10)) ||
                  (type_len == 6 && !strncasecmp(p, "text/*", 6)) ||
                  (type_len == 3 && !strncmp(p, "*/*", 3))))
            text = q;
        p += len;
    }
    return om > 0 && om >= text;
}

static void serve_metrics(sk_admin *a, struct evhttp_request *req)
{
    size_t len = 0;
    const char *accept = evhttp_find_header(evhttp_request_get_input_headers(req), "Accept");
    int om = sk_admin_wants_openmetrics(accept);
    char *text =
        om ? sk_metrics_render_openmetrics(a->metrics, &len) : sk_metrics_render(a->metrics, &len);
    if (!text) {
        reply(req, 500, "Internal Server Error", TEXT_TYPE, "out of memory", 13);
        return;
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Vary", "Accept");
    reply(req, 200, "OK", om ? OPENMETRICS_TYPE : METRICS_TYPE, text, len);
    free(text);
}

void sk_admin_set_details(sk_admin *a, sk_admin_details_cb cb, void *ud)
{
    a->details = cb;
    a->details_ud = ud;
}

static void serve_ready(sk_admin *a, struct evhttp_request *req)
{
    char why[256] = "", body[4096], details[3800] = "";
    int ok = !a->ready || a->ready(a->ud, why, sizeof why);
    why[sizeof why - 1] = '\0';
    if (!why[0])
        snprintf(why, sizeof why, "not ready");
    if (a->details)
        a->details(a->details_ud, details, sizeof details);
    snprintf(body, sizeof body, "%s%s%s", ok ? "ready" : why, details[0] ? "\n" : "", details);
    if (ok)
        reply(req, 200, "OK", TEXT_TYPE, body, strlen(body));
    else
        reply(req, 503, "Service Unavailable", TEXT_TYPE, body, strlen(body));
}

/* Routes every request; the path is compared without its query string. */
static void on_request(struct evhttp_request *req, void *arg)
{
    sk_admin *a = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    int known = path && (!strcmp(path, "/metrics") || !strcmp(path, "/healthz") ||
                         !strcmp(path, "/readyz"));
    if (!known) {
        reply(req, 404, "Not Found", TEXT_TYPE, "not found", 9);
    } else if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
        reply(req, 405, "Method Not Allowed", TEXT_TYPE, "method not allowed", 18);
    } else if (!strcmp(path, "/metrics")) {
        serve_metrics(a, req);
    } else if (!strcmp(path, "/healthz")) {
        reply(req, 200, "OK", TEXT_TYPE, "ok", 2);
    } else {
        serve_ready(a, req);
    }
}

static int bound_port(struct evhttp_bound_socket *sock)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(evhttp_bound_socket_get_fd(sock), (struct sockaddr *)&ss, &len) < 0)
        return -1;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -1;
}

sk_admin *sk_admin_new(struct event_base *base, const char *address, sk_metrics *metrics,
                       sk_admin_ready_cb ready, void *ud, char *err, size_t errlen)
{
    char host[256];
    int port;
    sk_admin *a = calloc(1, sizeof *a);
    if (!a) {
        snprintf(err, errlen, "admin: out of memory");
        return NULL;
    }
    *a = (sk_admin){.metrics = metrics, .ready = ready, .ud = ud};
    if (sk_config_parse_address(address, host, sizeof host, &port) < 0) {
        snprintf(err, errlen, "admin: bad address \"%s\": expected host:port",
                 address ? address : "");
        goto fail;
    }
    if (!(a->http = evhttp_new(base))) {
        snprintf(err, errlen, "admin: cannot create the HTTP server");
        goto fail;
    }
    evhttp_set_timeout(a->http, ADMIN_TIMEOUT_S);
    evhttp_set_max_headers_size(a->http, ADMIN_MAX_HEADERS);
    evhttp_set_max_body_size(a->http, ADMIN_MAX_BODY);
    /* Every method reaches on_request, which answers 405 itself. */
    evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                            EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
                                            EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
    evhttp_set_gencb(a->http, on_request, a);
    if (!(a->sock = evhttp_bind_socket_with_handle(a->http, host, (ev_uint16_t)port))) {
        snprintf(err, errlen, "admin: cannot listen on %s: %s", address,
                 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        goto fail;
    }
    a->port = bound_port(a->sock);
    return a;
fail:
    sk_admin_free(a);
    return NULL;
}

int sk_admin_port(const sk_admin *a)
{
    return a ? a->port : -1;
}

void sk_admin_free(sk_admin *a)
{
    if (!a)
        return;
    if (a->http)
        evhttp_free(a->http);
    free(a);
}
