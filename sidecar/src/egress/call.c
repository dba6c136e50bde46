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
#include "egress/breaker.h"
#include "egress/bucket.h"
#include "egress/gate.h"
#include "egress/guard.h"
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
    sk_gate_waiter waiter;
    int slot, queued; /* holds a slot of the route's gate / waits for one */
    int blocked;      /* the output scan found a secret */
    int permit;       /* what the breaker allowed (SK_BREAKER_REFUSED: nothing) */
    int outcome;      /* for the breaker: -1 none yet, 0 failure, 1 success */
    double est_tokens;
    sk_scan *scan; /* output scan of the response body */
    char *held;    /* body bytes withheld while they may start a secret */
    size_t held_len;
    const char *breaker; /* the breaker's state when the call was let through */
    uint64_t bytes_in, bytes_out;
    const char *reason; /* refusal reason, NULL for a forwarded call */
    char retry_reason[16];
    int64_t retry_after_s; /* of the last upstream response */
    int64_t retry_in_ms;   /* >= 0: the attempt ended to be retried after this delay */
};

static const sk_http_stream_cbs stream_cbs;
static void start_attempt(call *c);
static void secret_found(call *c, const char *where);

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

/* Gives back what the call holds of its route's policies: the breaker gets the outcome, the
 * gate the slot (which may start a queued call: it runs after this one is done with). */
static void release_policies(call *c)
{
    route *rt = c->rt;
    if (!rt)
        return;
    int64_t now = sk_egress_now_ms();
    if (c->permit != SK_BREAKER_REFUSED && c->outcome >= 0)
        sk_breaker_record(rt->breaker, c->permit, c->outcome, now);
    else if (c->permit != SK_BREAKER_REFUSED)
        sk_breaker_release(rt->breaker, c->permit);
    c->permit = SK_BREAKER_REFUSED;
    if (c->queued)
        sk_gate_cancel(rt->gate, &c->waiter);
    c->queued = 0;
    sk_series_set(rt->queued, sk_gate_queued(rt->gate));
    if (c->slot) {
        c->slot = 0;
        sk_gate_leave(rt->gate);
    }
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
    release_policies(c);
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
    sk_scan_free(c->scan);
    free(c->held);
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
    if (c->queued) { /* no slot within queue_timeout */
        sk_gate_cancel(c->rt->gate, &c->waiter);
        c->queued = 0;
        reject(c, 429, "concurrency_limited",
               "no concurrency slot of the route became free within its queue_timeout");
        return;
    }
    if (c->up) { /* no status line in ttfb_timeout */
        sk_http_cancel(c->up);
        c->up = NULL;
        c->outcome = 0;
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

/* Whether a secret value is in the response's headers (a scan of its own over them). */
static int head_has_secret(call *c, const char *const *headers, size_t n)
{
    const char *vals[64];
    size_t lens[64];
    sk_scan *s = sk_scan_new(vals, lens, sk_egress_needles(c->eg, vals, lens, 64));
    int found = !s;
    for (size_t i = 0; s && i < n && !found; i++)
        found = sk_scan_feed(s, headers[i], strlen(headers[i])) || sk_scan_feed(s, "\n", 1);
    sk_scan_free(s);
    return found;
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
    c->outcome = status < 500;
    if (retryable_status(status)) {
        c->retry_after_s = retry_after(headers, n);
        int64_t d = retry_delay(c);
        if (d >= 0) { /* on_end sees retry_in_ms and tries again */
            c->retry_in_ms = d;
            snprintf(c->retry_reason, sizeof c->retry_reason, "%ld", status);
            return -1;
        }
    }
    if (head_has_secret(c, headers, n)) {
        secret_found(c, "headers");
        return -1;
    }
    copy_head(c, headers, n);
    c->status = status;
    c->head_sent = 1;
    evhttp_send_reply_start(c->req, (int)status, NULL);
    return 0;
}

/* A secret value showed up in the response: nothing more of it goes out. */
static void secret_found(call *c, const char *where)
{
    const char *rule = "secret_in_response";
    c->reason = "guard:secret_in_response";
    c->blocked = 1;
    sk_series_add(sk_metric_series(c->eg->fam.guard_blocks,
                                   (const char *const[]){c->rt->cfg->name, rule, NULL}),
                  1);
    sk_egress_count_rejection(c->eg, c->rt, "guard");
    SK_LOG(SK_LOG_WARN, "egress", NULL, SK_KV("route", c->route_name, "rule", rule),
           "route %s: a secret value appeared in the upstream's response %s: response cut",
           c->route_name, where);
}

/* Sends the bytes of held ++ data that cannot start a secret, keeps the rest held. */
static int send_scanned(call *c, const char *data, size_t len)
{
    size_t hold = sk_scan_hold(c->scan), total = c->held_len + len;
    size_t send = hold < total ? total - hold : 0, keep = total - send;
    char *kept = keep ? malloc(keep) : NULL;
    struct evbuffer *b = evbuffer_new();
    if ((keep && !kept) || !b) {
        free(kept);
        if (b)
            evbuffer_free(b);
        return -1;
    }
    size_t from_held = send < c->held_len ? send : c->held_len;
    evbuffer_add(b, c->held, from_held);
    if (send > c->held_len)
        evbuffer_add(b, data, send - c->held_len);
    if (keep && send < c->held_len) {
        memcpy(kept, c->held + send, c->held_len - send);
        memcpy(kept + (c->held_len - send), data, len);
    } else if (keep) {
        memcpy(kept, data + (send - c->held_len), keep);
    }
    free(c->held);
    c->held = kept;
    c->held_len = keep;
    if (send)
        evhttp_send_reply_chunk_with_cb(c->req, b, on_drained, c);
    evbuffer_free(b);
    c->bytes_out += send;
    return 0;
}

/* A piece of the body: scanned, then to the handler, unless its connection holds too much
 * already (then upstream pauses until it drained). */
static int on_data(void *ud, const char *data, size_t len)
{
    call *c = ud;
    if (!c->req)
        return -1;
    if (out_pending(c) > OUT_HIGH_WATER) {
        c->paused = 1;
        return 1;
    }
    if (sk_scan_feed(c->scan, data, len)) {
        secret_found(c, "body");
        cut(c);
        return -1;
    }
    return send_scanned(c, data, len);
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
    if (!c->retry_reason[0])
        c->outcome = 0;
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
    if (!c->head_sent && c->blocked) {
        refuse(c, 502, "guard:secret_in_response",
               "the upstream's response carried a secret value: not passed on");
        finish(c);
        return;
    }
    if (!c->head_sent) {
        attempt_failed(c, r->error ? r->error : "the upstream closed without a response");
        return;
    }
    if (r->error) {
        SK_LOG(SK_LOG_WARN, "egress", NULL, NULL, "route %s: upstream response cut short: %s",
               c->route_name, r->error);
        cut(c);
    } else if (c->req) {
        if (c->held_len) {
            struct evbuffer *b = evbuffer_new();
            if (b && evbuffer_add(b, c->held, c->held_len) == 0)
                evhttp_send_reply_chunk(c->req, b);
            c->bytes_out += c->held_len;
            if (b)
                evbuffer_free(b);
        }
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

/* A refusal with Retry-After (ms rounded up to seconds). */
static void reject_later(call *c, int status, const char *reason, int64_t wait_ms, const char *msg)
{
    c->retry_after_s = wait_ms > 0 ? (wait_ms + 999) / 1000 : 1;
    reject(c, status, reason, msg);
}

static void guard_block(call *c, const char *rule, const char *msg)
{
    char reason[64]; /* lives until reject() has finished the call */
    int status = !strcmp(rule, "max_request_bytes") ? 413
                 : !strcmp(rule, "invalid_json")    ? 400
                 : !strcmp(rule, "out_of_memory")   ? 500
                                                    : 422;
    snprintf(reason, sizeof reason, "guard:%s", rule);
    sk_series_add(sk_metric_series(c->eg->fam.guard_blocks,
                                   (const char *const[]){c->rt->cfg->name, rule, NULL}),
                  1);
    reject(c, status, reason, msg);
}

/* The body copied out of evhttp and checked by the route's guard; 0 or -1 (refused). */
static int take_body(call *c)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(c->req);
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(c->req), "Content-Type");
    const char *rule = NULL;
    char msg[256];
    c->bytes_in = evbuffer_get_length(in);
    c->body_len = (size_t)c->bytes_in;
    if (c->body_len && !(c->body = malloc(c->body_len))) {
        guard_block(c, "out_of_memory", "out of memory");
        return -1;
    }
    if (c->body_len)
        evbuffer_copyout(in, c->body, c->body_len);
    if (sk_guard_request(c->rt->guard, ct, c->body, &c->body_len, &rule, msg, sizeof msg) < 0) {
        guard_block(c, rule, msg);
        return -1;
    }
    return 0;
}

/* Rate limits: both buckets must have room before either is taken. 0 or -1 (refused). */
static int take_rates(call *c)
{
    route *rt = c->rt;
    int64_t now = sk_egress_now_ms();
    c->est_tokens = (double)c->body_len / 4 + (double)rt->cfg->max_tokens;
    int64_t wr = sk_bucket_wait(rt->rpm, 1, now), wt = sk_bucket_wait(rt->tpm, c->est_tokens, now);
    if (wr > 0) {
        reject_later(c, 429, "rate_limited", wr,
                     "the route's requests_per_minute is used up: retry after Retry-After");
        return -1;
    }
    if (wt > 0) {
        reject_later(c, 429, "tokens_limited", wt,
                     "the route's tokens_per_minute is used up: retry after Retry-After");
        return -1;
    }
    sk_bucket_take(rt->rpm, 1, now);
    sk_bucket_take(rt->tpm, c->est_tokens, now);
    return 0;
}

/* Everything is in place: the upstream attempt starts. */
static void go(call *c)
{
    const sk_egress_route_config *rc = c->rt->cfg;
    c->deadline_ms = sk_wall_ms() + rc->timeout_ms;
    sk_backoff_init(&c->backoff, rc->retry_backoff_ms, rc->timeout_ms,
                    (uint64_t)(uintptr_t)c ^ (uint64_t)sk_wall_ms());
    sk_series_add(c->rt->in_flight, 1);
    c->in_flight = 1;
    start_attempt(c);
}

static void on_slot(sk_gate_waiter *w)
{
    call *c = w->ud;
    c->queued = 0;
    c->slot = 1;
    evtimer_del(c->timer);
    sk_series_set(c->rt->queued, sk_gate_queued(c->rt->gate));
    go(c);
}

/* The concurrency gate: a slot now, a place in the queue (until queue_timeout), or 429. */
static void enter_gate(call *c)
{
    route *rt = c->rt;
    c->waiter.ud = c;
    int rc = sk_gate_enter(rt->gate, &c->waiter, on_slot);
    if (rc < 0) {
        reject(c, 429, "concurrency_limited",
               "the route's max_concurrent calls are in flight and its wait queue is full");
        return;
    }
    if (rc == 1) {
        c->slot = 1;
        go(c);
        return;
    }
    c->queued = 1;
    sk_series_set(rt->queued, sk_gate_queued(rt->gate));
    struct timeval tv = {rt->cfg->queue_timeout_ms / 1000,
                         (rt->cfg->queue_timeout_ms % 1000) * 1000};
    evtimer_add(c->timer, &tv);
}

/* The output scan of this call: every route's credential. */
static int new_scan(call *c)
{
    const char *vals[64];
    size_t lens[64];
    size_t n = sk_egress_needles(c->eg, vals, lens, 64);
    return (c->scan = sk_scan_new(vals, lens, n)) ? 0 : -1;
}

/* Checks a request that names a known route and forwards it: guard, breaker, rate limits,
 * concurrency gate, then upstream. */
static void forward(call *c, const char *rest)
{
    const sk_egress_route_config *rc = c->rt->cfg;
    char traceparent[SK_TRACEPARENT_LEN + 1];
    int64_t wait = 0;
    if (take_body(c) < 0)
        return;
    if (c->rt->cred && sk_secret_pending(c->rt->cred)) {
        reject(c, 503, "credential_unavailable",
               "the route's credential has not been read from Vault yet");
        return;
    }
    if (!(c->url = malloc(MAX_URL)) ||
        sk_egress_upstream_url(rc->upstream, rest, c->url, MAX_URL) < 0) {
        reject(c, 414, "invalid_request", "the request target is too long");
        return;
    }
    int64_t now = sk_egress_now_ms();
    if ((c->permit = sk_breaker_allow(c->rt->breaker, now, &wait)) == SK_BREAKER_REFUSED) {
        reject_later(c, 503, "circuit_open", wait,
                     "the route's circuit breaker is open after upstream failures");
        return;
    }
    c->breaker = sk_breaker_state_name(sk_breaker_state_at(c->rt->breaker, now));
    if (take_rates(c) < 0)
        return;
    start_span(c, traceparent);
    if (build_headers(c, traceparent) < 0 || new_scan(c) < 0) {
        reject(c, 500, "internal", "out of memory");
        return;
    }
    if (c->conn)
        evhttp_connection_set_closecb(c->conn, on_close, c);
    enter_gate(c);
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
