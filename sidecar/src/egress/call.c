/* One egress call: the handler's request taken from evhttp, refused or forwarded upstream by a
 * streaming libcurl transfer (retried while nothing was sent back), the response streamed to
 * the handler as it arrives, then one log line, the metrics and the CLIENT span.
 *
 * Ownership: a call lives from sk_egress_on_request to finish(). The evhttp request is ours
 * until the reply ends; when the handler's connection goes away first (on_close) evhttp has
 * detached the request and it is freed here. The curl transfer is freed by net/http.c after
 * on_end; anywhere else it is cancelled. */
#include "egress/internal.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/backoff.h"
#include "core/clock.h"
#include "core/log.h"
#include "egress/map.h"
#include "net/http.h"
#include "secrets/secret.h"
#include "trace/trace.h"

#define OUT_HIGH_WATER (256 * 1024) /* handler's unsent bytes above which upstream pauses */
#define MAX_URL 8192

struct call {
    sk_egress *eg;
    route *rt; /* NULL while the route is unknown */
    struct evhttp_request *req;
    struct evhttp_connection *conn;
    TAILQ_ENTRY(call) link;
    char method[16], route_name[72];
    char path[512]; /* without the query: what logs show */
    char *url;
    char **hdrs; /* forwarded headers, NULL-terminated; the credential line is wiped */
    size_t nhdrs;
    char *body;
    size_t body_len;
    sk_http_req *up;
    struct event *timer;  /* TTFB deadline, then retry delay */
    struct event *resume; /* unpauses upstream once the handler's output drained */
    sk_span *span;
    sk_backoff backoff;
    double start_s, ttfb_s;
    int64_t deadline_ms; /* the route's whole-call timeout */
    long status;         /* sent to the handler, 0 none */
    int head_sent, paused, attempts, retries, in_flight;
    uint64_t bytes_in, bytes_out;
    const char *reason; /* refusal reason, NULL for a forwarded call */
    char retry_reason[16];
    int64_t retry_after_s; /* of the last upstream response */
    int64_t retry_in_ms;   /* >= 0: the attempt ended to be retried after this delay */
};

static const sk_http_stream_cbs stream_cbs;
static void start_attempt(call *c);

/* ---- ending ---- */

static void log_call(call *c, double dur)
{
    char st[8], d[24], t[24], bi[24], bo[24], re[8], tid[33] = "", sid[17] = "";
    snprintf(st, sizeof st, "%03ld", c->status);
    snprintf(d, sizeof d, "%.3f", dur * 1000);
    snprintf(t, sizeof t, "%.3f", c->ttfb_s >= 0 ? c->ttfb_s * 1000 : 0);
    snprintf(bi, sizeof bi, "%llu", (unsigned long long)c->bytes_in);
    snprintf(bo, sizeof bo, "%llu", (unsigned long long)c->bytes_out);
    snprintf(re, sizeof re, "%d", c->retries);
    if (c->span) {
        snprintf(tid, sizeof tid, "%s", c->span->trace_hex);
        snprintf(sid, sizeof sid, "%s", c->span->span_hex);
    }
    sk_log_trace tr = {tid, sid};
    sk_log_level lvl = c->reason || c->status >= 500 || c->status == 0 ? SK_LOG_WARN : SK_LOG_INFO;
    SK_LOG(lvl, "egress", &tr,
           SK_KV("route", c->route_name, "method", c->method, "path", c->path, "status", st,
                 "duration_ms", d, "ttfb_ms", t, "bytes_in", bi, "bytes_out", bo, "tokens_in", "0",
                 "tokens_out", "0", "retries", re, "breaker", "closed", "reason",
                 c->reason ? c->reason : ""),
           "%s %s -> %03ld", c->method, c->route_name, c->status);
}

static void wipe_headers(call *c)
{
    for (size_t i = 0; c->hdrs && i < c->nhdrs; i++) {
        explicit_bzero(c->hdrs[i], strlen(c->hdrs[i]));
        free(c->hdrs[i]);
    }
    free(c->hdrs);
    c->hdrs = NULL;
}

/* Logs, counts, ends the span and frees the call. The evhttp request must be done with. */
static void finish(call *c)
{
    sk_egress *e = c->eg;
    double dur = sk_mono_s() - c->start_s;
    char code[8];
    snprintf(code, sizeof code, "%03ld", c->status);
    sk_egress_count(e, c->rt, code);
    if (c->rt) {
        sk_series_observe(c->rt->duration, dur);
        if (c->ttfb_s >= 0)
            sk_series_observe(c->rt->ttfb, c->ttfb_s);
        if (c->in_flight)
            sk_series_add(c->rt->in_flight, -1);
    }
    if (c->span) {
        sk_span_set_int(c->span, "http.response.status_code", c->status);
        sk_span_set_int(c->span, "skiff.egress.retries", c->retries);
        if (c->reason || c->status >= 500 || c->status == 0)
            sk_span_set_error(c->span, c->reason ? c->reason : "http_error", NULL);
    }
    log_call(c, dur);
    if (c->span)
        sk_span_end(c->span);
    if (c->conn)
        evhttp_connection_set_closecb(c->conn, NULL, NULL);
    if (c->up)
        sk_http_cancel(c->up);
    if (c->timer)
        event_free(c->timer);
    if (c->resume)
        event_free(c->resume);
    TAILQ_REMOVE(&e->calls, c, link);
    e->ncalls--;
    wipe_headers(c);
    free(c->url);
    free(c->body);
    free(c);
}

/* A refusal by skiff: the JSON error body, Retry-After when retry_after_s > 0. */
static void refuse(call *c, int status, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void refuse(call *c, int status, const char *reason, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *j = json_pack("{s:{s:s,s:s,s:s}}", "error", "type", reason, "message", msg, "route",
                          c->route_name);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    struct evbuffer *b = evbuffer_new();
    struct evkeyvalq *h = evhttp_request_get_output_headers(c->req);
    evhttp_add_header(h, "Content-Type", "application/json");
    if (c->retry_after_s > 0) {
        char ra[24];
        snprintf(ra, sizeof ra, "%lld", (long long)c->retry_after_s);
        evhttp_add_header(h, "Retry-After", ra);
    }
    if (b && text)
        evbuffer_add(b, text, strlen(text));
    c->reason = reason;
    c->status = status;
    if (c->conn)
        evhttp_connection_set_closecb(c->conn, NULL, NULL);
    evhttp_send_reply(c->req, status, NULL, b);
    c->req = NULL;
    if (b)
        evbuffer_free(b);
    free(text);
    SK_LOG(SK_LOG_DEBUG, "egress", NULL, NULL, "refused %s %s: %s", c->method, c->path, msg);
}

/* A refusal counted as a rejection of the route (reason without "guard:" for guard rules). */
static void reject(call *c, int status, const char *reason, const char *msg)
{
    const char *colon = strchr(reason, ':');
    sk_egress_count_rejection(c->eg, c->rt, colon ? "guard" : reason);
    refuse(c, status, reason, "%s", msg);
    finish(c);
}

/* ---- the handler's connection ---- */

/* evhttp lost the handler's connection (reset, write error, timeout): the request was
 * detached from it and is ours to free. */
static void on_close(struct evhttp_connection *conn, void *arg)
{
    (void)conn;
    call *c = arg;
    if (c->req)
        evhttp_request_free(c->req);
    c->req = NULL;
    c->conn = NULL;
    if (!c->head_sent)
        c->status = 0;
    SK_WARN("egress", "route %s: the handler closed its connection before the response ended",
            c->route_name);
    finish(c);
}

/* Cuts the response short: the connection is closed, so the handler sees it did not end. */
static void cut(call *c)
{
    struct evhttp_connection *conn = c->conn;
    c->conn = NULL;
    c->req = NULL; /* freed with the connection */
    if (conn) {
        evhttp_connection_set_closecb(conn, NULL, NULL);
        evhttp_connection_free(conn);
    }
}

static void on_drained(struct evhttp_connection *conn, void *arg)
{
    (void)conn;
    call *c = arg;
    if (c->paused)
        event_active(c->resume, EV_TIMEOUT, 1);
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    call *c = arg;
    if (!c->paused || !c->up)
        return;
    c->paused = 0;
    sk_http_resume(c->up);
}

static size_t out_pending(const call *c)
{
    struct bufferevent *bev = c->conn ? evhttp_connection_get_bufferevent(c->conn) : NULL;
    return bev ? evbuffer_get_length(bufferevent_get_output(bev)) : 0;
}

/* ---- upstream ---- */

static int retryable_status(long s)
{
    return s == 429 || s == 502 || s == 503 || s == 504;
}

/* Whether the call may be sent again: GET/HEAD/PUT/DELETE/OPTIONS, a POST with an
 * Idempotency-Key or on a route with retry_post, never a PATCH. */
static int retryable_call(const call *c)
{
    const char *m = c->method;
    if (!strcmp(m, "GET") || !strcmp(m, "HEAD") || !strcmp(m, "PUT") || !strcmp(m, "DELETE") ||
        !strcmp(m, "OPTIONS"))
        return 1;
    if (strcmp(m, "POST") != 0)
        return 0;
    return c->rt->cfg->retry_post ||
           (c->req && evhttp_find_header(evhttp_request_get_input_headers(c->req),
                                         "Idempotency-Key") != NULL);
}

/* The delay before the next attempt, or -1 when no attempt is left or it would end past the
 * call's deadline. */
static int64_t retry_delay(call *c)
{
    if (c->retries >= c->rt->cfg->retries || !retryable_call(c))
        return -1;
    int64_t d = sk_backoff_next(&c->backoff);
    if (c->retry_after_s > 0 && c->retry_after_s * 1000 > d)
        d = c->retry_after_s * 1000;
    return sk_wall_ms() + d < c->deadline_ms ? d : -1;
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    call *c = arg;
    if (c->up) { /* no status line in ttfb_timeout */
        sk_http_cancel(c->up);
        c->up = NULL;
        c->retry_after_s = 0;
        reject(c, 504, "upstream_timeout",
               "the upstream sent no status line within the route's "
               "ttfb_timeout");
        return;
    }
    start_attempt(c); /* the retry delay is over */
}

/* Copies the upstream's response headers to the handler's response. */
static void copy_head(call *c, const char *const *headers, size_t n)
{
    struct evkeyvalq *out = evhttp_request_get_output_headers(c->req);
    for (size_t i = 0; i < n; i++) {
        const char *colon = strchr(headers[i], ':');
        if (!colon || colon == headers[i])
            continue;
        char name[128];
        size_t len = (size_t)(colon - headers[i]);
        if (len >= sizeof name)
            continue;
        memcpy(name, headers[i], len);
        name[len] = '\0';
        const char *v = colon + 1;
        v += strspn(v, " \t");
        if (sk_egress_forward_response_header(name))
            evhttp_add_header(out, name, v);
    }
}

/* Retry-After in seconds from a response's headers (a delay; a date counts as 1 s), 0 none. */
static int64_t retry_after(const char *const *headers, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (strncasecmp(headers[i], "retry-after:", 12) != 0)
            continue;
        char *end;
        long long v = strtoll(headers[i] + 12, &end, 10);
        return v > 0 && v < 86400 ? v : 1;
    }
    return 0;
}

static int on_head(void *ud, long status, const char *const *headers, size_t n)
{
    call *c = ud;
    if (c->ttfb_s < 0)
        c->ttfb_s = sk_mono_s() - c->start_s;
    evtimer_del(c->timer);
    if (retryable_status(status)) {
        c->retry_after_s = retry_after(headers, n);
        int64_t d = retry_delay(c);
        if (d >= 0) { /* on_end sees retry_in_ms and tries again */
            c->retry_in_ms = d;
            snprintf(c->retry_reason, sizeof c->retry_reason, "%ld", status);
            return -1;
        }
    }
    copy_head(c, headers, n);
    c->status = status;
    c->head_sent = 1;
    evhttp_send_reply_start(c->req, (int)status, NULL);
    return 0;
}

/* A piece of the body: to the handler, unless its connection holds too much already (then
 * upstream pauses until it drained). */
static int on_data(void *ud, const char *data, size_t len)
{
    call *c = ud;
    if (!c->req)
        return -1;
    if (out_pending(c) > OUT_HIGH_WATER) {
        c->paused = 1;
        return 1;
    }
    struct evbuffer *b = evbuffer_new();
    if (!b || evbuffer_add(b, data, len) < 0) {
        if (b)
            evbuffer_free(b);
        return -1;
    }
    evhttp_send_reply_chunk_with_cb(c->req, b, on_drained, c);
    evbuffer_free(b);
    c->bytes_out += len;
    return 0;
}

static int timed_out(const char *error)
{
    return strstr(error, "Timeout") || strstr(error, "timed out");
}

/* The attempt failed before any status line went to the handler: retry or refuse. */
static void attempt_failed(call *c, const char *error)
{
    int timeout = timed_out(error);
    const char *reason = timeout ? "upstream_timeout" : "upstream_unreachable";
    if (!c->retry_reason[0]) {
        snprintf(c->retry_reason, sizeof c->retry_reason, "%s", timeout ? "timeout" : "connect");
        c->retry_after_s = 0;
        c->retry_in_ms = timeout ? -1 : retry_delay(c);
    }
    if (c->retry_in_ms >= 0) {
        struct timeval tv = {c->retry_in_ms / 1000, (c->retry_in_ms % 1000) * 1000};
        sk_egress_count_retry(c->eg, c->rt, c->retry_reason);
        c->retries++;
        evtimer_add(c->timer, &tv);
        return;
    }
    c->retry_after_s = 0;
    reject(c, timeout ? 504 : 502, reason, error);
}

static void on_end(void *ud, const sk_http_result *r)
{
    call *c = ud;
    c->up = NULL; /* freed by net/http.c when this returns */
    evtimer_del(c->timer);
    if (!c->head_sent) {
        attempt_failed(c, r->error ? r->error : "the upstream closed without a response");
        return;
    }
    if (r->error) {
        SK_LOG(SK_LOG_WARN, "egress", NULL, NULL, "route %s: upstream response cut short: %s",
               c->route_name, r->error);
        cut(c);
    } else if (c->req) {
        if (c->conn)
            evhttp_connection_set_closecb(c->conn, NULL, NULL);
        evhttp_send_reply_end(c->req);
        c->req = NULL;
    }
    finish(c);
}

static const sk_http_stream_cbs stream_cbs = {
    .on_head = on_head, .on_data = on_data, .on_end = on_end};

static void start_attempt(call *c)
{
    c->retry_reason[0] = '\0';
    c->retry_in_ms = -1;
    c->attempts++;
    int64_t left = c->deadline_ms - sk_wall_ms();
    sk_http_stream_opts o = {.method = c->method,
                             .url = c->url,
                             .headers = (const char *const *)c->hdrs,
                             .body = c->body,
                             .body_len = c->body_len,
                             .connect_timeout_ms = c->rt->cfg->connect_timeout_ms,
                             .timeout_ms = left > 0 ? left : 1,
                             .tls = c->rt->tls};
    if (!(c->up = sk_http_stream(c->eg->http, &o, &stream_cbs, c))) {
        reject(c, 502, "upstream_unreachable", "the upstream request could not be started");
        return;
    }
    int64_t t = c->rt->cfg->ttfb_timeout_ms < left ? c->rt->cfg->ttfb_timeout_ms : left;
    struct timeval tv = {t / 1000, (t % 1000) * 1000};
    evtimer_add(c->timer, &tv);
}

/* ---- the request ---- */

static int add_header(call *c, const char *fmt, const char *a, const char *b)
{
    size_t len = strlen(fmt) + strlen(a) + strlen(b) + 1;
    char *line = malloc(len), **grown = realloc(c->hdrs, (c->nhdrs + 2) * sizeof *grown);
    if (grown)
        c->hdrs = grown;
    if (!line || !grown) {
        free(line);
        return -1;
    }
    snprintf(line, len, fmt, a, b);
    c->hdrs[c->nhdrs++] = line;
    c->hdrs[c->nhdrs] = NULL;
    return 0;
}

/* The headers sent upstream: the handler's minus those map.c drops, the span's traceparent,
 * the credential; "Name:" lines keep libcurl from adding a Content-Type or Accept of its own. */
static int build_headers(call *c, const char *traceparent)
{
    const struct evkeyvalq *in = evhttp_request_get_input_headers(c->req);
    const char *conn = evhttp_find_header(in, "Connection");
    const char *cred_header = c->rt->cfg->credential_header;
    int has_ct = 0, has_accept = 0;
    for (const struct evkeyval *h = TAILQ_FIRST(in); h; h = TAILQ_NEXT(h, next)) {
        if (!sk_egress_forward_request_header(h->key, conn, cred_header))
            continue;
        has_ct |= !strcasecmp(h->key, "content-type");
        has_accept |= !strcasecmp(h->key, "accept");
        if (add_header(c, "%s: %s", h->key, h->value) < 0)
            return -1;
    }
    if ((!has_ct && add_header(c, "Content-Type:%s%s", "", "") < 0) ||
        (!has_accept && add_header(c, "Accept:%s%s", "", "") < 0) ||
        add_header(c, "traceparent: %s%s", traceparent, "") < 0)
        return -1;
    if (!c->rt->cred)
        return 0;
    const char *v = sk_secret_value(c->rt->cred, NULL);
    if (!strcmp(cred_header, "authorization"))
        return add_header(c, "Authorization: Bearer %s%s", v, "");
    return add_header(c, "%s: %s", cred_header, v);
}

static const char *method_name(enum evhttp_cmd_type t)
{
    switch (t) {
    case EVHTTP_REQ_GET:
        return "GET";
    case EVHTTP_REQ_POST:
        return "POST";
    case EVHTTP_REQ_HEAD:
        return "HEAD";
    case EVHTTP_REQ_PUT:
        return "PUT";
    case EVHTTP_REQ_DELETE:
        return "DELETE";
    case EVHTTP_REQ_OPTIONS:
        return "OPTIONS";
    case EVHTTP_REQ_PATCH:
        return "PATCH";
    default:
        return "OTHER";
    }
}

static call *call_new(sk_egress *e, struct evhttp_request *req)
{
    call *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    *c = (call){.eg = e,
                .req = req,
                .conn = evhttp_request_get_connection(req),
                .start_s = sk_mono_s(),
                .ttfb_s = -1,
                .retry_in_ms = -1};
    snprintf(c->method, sizeof c->method, "%s", method_name(evhttp_request_get_command(req)));
    const char *uri = evhttp_request_get_uri(req);
    snprintf(c->path, sizeof c->path, "%.*s", (int)strcspn(uri, "?"), uri);
    TAILQ_INSERT_TAIL(&e->calls, c, link);
    e->ncalls++;
    if (!(c->timer = evtimer_new(e->base, on_timer, c)) ||
        !(c->resume = event_new(e->base, -1, 0, on_resume, c))) {
        finish(c);
        return NULL;
    }
    return c;
}

/* The span of the call, child of the handler's traceparent when it sent one. */
static void start_span(call *c, char traceparent[SK_TRACEPARENT_LEN + 1])
{
    const char *tp = evhttp_find_header(evhttp_request_get_input_headers(c->req), "traceparent");
    sk_trace_ctx parent;
    int has = tp && sk_traceparent_parse(tp, strlen(tp), &parent) == 0;
    char name[96];
    snprintf(name, sizeof name, "%s %s", c->method, c->route_name);
    if ((c->span = sk_span_start(has ? &parent : NULL, name, SK_SPAN_CLIENT)) != NULL) {
        sk_span_set_str(c->span, "http.request.method", c->method);
        sk_span_set_str(c->span, "skiff.egress.route", c->route_name);
        sk_span_set_str(c->span, "url.path", c->path);
        sk_span_traceparent(c->span, traceparent);
    } else {
        traceparent[0] = '\0';
    }
}

/* Checks a request that names a known route and forwards it. */
static void forward(call *c, const char *rest)
{
    const sk_egress_route_config *rc = c->rt->cfg;
    struct evbuffer *in = evhttp_request_get_input_buffer(c->req);
    char traceparent[SK_TRACEPARENT_LEN + 1];
    c->bytes_in = evbuffer_get_length(in);
    if (c->bytes_in > (uint64_t)rc->max_request_bytes) {
        char msg[160];
        snprintf(msg, sizeof msg,
                 "the request body has %llu bytes, over the route's "
                 "max_request_bytes of %lld",
                 (unsigned long long)c->bytes_in, (long long)rc->max_request_bytes);
        sk_series_add(sk_metric_series(c->eg->fam.guard_blocks,
                                       (const char *const[]){rc->name, "max_request_bytes", NULL}),
                      1);
        reject(c, 413, "guard:max_request_bytes", msg);
        return;
    }
    if (c->rt->cred && sk_secret_pending(c->rt->cred)) {
        reject(c, 503, "credential_unavailable",
               "the route's credential has not been read from "
               "Vault yet");
        return;
    }
    if (!(c->url = malloc(MAX_URL)) ||
        sk_egress_upstream_url(rc->upstream, rest, c->url, MAX_URL) < 0 ||
        (c->bytes_in && !(c->body = malloc(c->bytes_in)))) {
        reject(c, 414, "invalid_request", "the request target is too long");
        return;
    }
    c->body_len = c->bytes_in;
    if (c->body_len)
        evbuffer_copyout(in, c->body, c->body_len);
    start_span(c, traceparent);
    if (build_headers(c, traceparent) < 0) {
        reject(c, 500, "internal", "out of memory");
        return;
    }
    c->deadline_ms = sk_wall_ms() + rc->timeout_ms;
    sk_backoff_init(&c->backoff, rc->retry_backoff_ms, rc->timeout_ms,
                    (uint64_t)(uintptr_t)c ^ (uint64_t)sk_wall_ms());
    sk_series_add(c->rt->in_flight, 1);
    c->in_flight = 1;
    if (c->conn)
        evhttp_connection_set_closecb(c->conn, on_close, c);
    start_attempt(c);
}

void sk_egress_on_request(struct evhttp_request *req, void *arg)
{
    sk_egress *e = arg;
    call *c = call_new(e, req);
    const char *rest;
    if (!c) {
        evhttp_send_error(req, 503, "out of memory");
        return;
    }
    if (sk_egress_split(evhttp_request_get_uri(req), c->route_name, sizeof c->route_name, &rest) <
        0) {
        reject(c, 404, "unknown_route", "expected /<route>/<path> with a configured route");
        return;
    }
    if (!(c->rt = sk_egress_route(e, c->route_name))) {
        char msg[200];
        snprintf(msg, sizeof msg, "no egress route is named \"%s\"", c->route_name);
        reject(c, 404, "unknown_route", msg);
        return;
    }
    forward(c, rest);
}

void sk_egress_call_abort(call *c)
{
    if (c->up)
        sk_http_cancel(c->up);
    c->up = NULL;
    if (c->req && !c->head_sent) {
        c->retry_after_s = 0;
        refuse(c, 503, "shutting_down", "skiff is stopping");
    } else if (c->req) {
        cut(c);
    }
    finish(c);
}
