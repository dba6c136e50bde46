/* The upstream side of an egress call: the headers sent, the streaming libcurl attempt, its
 * retries, the response passed back as it arrives through the output secret scan (bytes that
 * may start a secret are held back until the next chunk shows they do not), token usage. */
#include "egress/internal.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/backoff.h"
#include "core/clock.h"
#include "core/log.h"
#include "egress/guard.h"
#include "egress/map.h"
#include "egress/sse_scan.h"
#include "egress/usage.h"
#include "net/http.h"
#include "secrets/oauth.h"
#include "secrets/secret.h"

#define OUT_HIGH_WATER (256 * 1024) /* handler's unsent bytes above which upstream pauses */

static const sk_http_stream_cbs stream_cbs;
static void secret_found(call *c, const char *where);

static void on_drained(struct evhttp_connection *conn, void *arg)
{
    (void)conn;
    call *c = arg;
    if (c->paused)
        event_active(c->resume, EV_TIMEOUT, 1);
}

void sk_egress_upstream_resume(evutil_socket_t fd, short what, void *arg)
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

void sk_egress_upstream_timer(call *c)
{
    if (c->up) { /* no status line in ttfb_timeout */
        sk_http_cancel(c->up);
        c->up = NULL;
        c->outcome = 0;
        c->retry_after_s = 0;
        sk_egress_reject(c, 504, "upstream_timeout",
                         "the upstream sent no status line within the route's ttfb_timeout");
        return;
    }
    sk_egress_upstream_start(c); /* the retry delay is over */
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
    const char *vals[SK_EGRESS_MAX_NEEDLES];
    size_t lens[SK_EGRESS_MAX_NEEDLES];
    sk_scan *s =
        sk_scan_new(vals, lens, sk_egress_needles(c->eg, vals, lens, SK_EGRESS_MAX_NEEDLES));
    int found = !s;
    for (size_t i = 0; s && i < n && !found; i++)
        found = sk_scan_feed(s, headers[i], strlen(headers[i])) || sk_scan_feed(s, "\n", 1);
    sk_scan_free(s);
    return found;
}

/* The value of header name (lower case) among "Name: value" lines, NULL when absent. */
static const char *header_value(const char *const *headers, size_t n, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; i < n; i++)
        if (strncasecmp(headers[i], name, len) == 0 && headers[i][len] == ':')
            return headers[i] + len + 1 + strspn(headers[i] + len + 1, " \t");
    return NULL;
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

/* An event stream's scan of the decoded text, with every route's credential. */
static int new_sse_scan(call *c)
{
    const char *vals[SK_EGRESS_MAX_NEEDLES];
    size_t lens[SK_EGRESS_MAX_NEEDLES];
    size_t n = sk_egress_needles(c->eg, vals, lens, SK_EGRESS_MAX_NEEDLES);
    return (c->sse = sk_sse_scan_new(vals, lens, n)) ? 0 : -1;
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
    const char *ct = header_value(headers, n, "content-type");
    if (ct && strncasecmp(ct, "text/event-stream", 17) == 0 && new_sse_scan(c) < 0)
        return -1; /* out of memory: this attempt fails */
    copy_head(c, headers, n);
    c->usage = sk_usage_new(ct, SK_USAGE_DEFAULT_MAX);
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

/* log_bodies: the first SK_EGRESS_LOG_BODY_MAX bytes the handler gets, for the log line. */
static void keep_for_log(call *c, struct evbuffer *b)
{
    if (!c->resp_log && !(c->resp_log = calloc(1, SK_EGRESS_LOG_BODY_MAX + 1)))
        return;
    size_t room = SK_EGRESS_LOG_BODY_MAX - c->resp_log_len;
    ev_ssize_t n = evbuffer_copyout(b, c->resp_log + c->resp_log_len, room);
    if (n > 0)
        c->resp_log_len += (size_t)n;
    c->resp_log[c->resp_log_len] = '\0';
}

/* Sends the bytes of held ++ data that cannot start a secret, keeps the rest held. */
static int send_scanned(call *c, const char *data, size_t len)
{
    size_t hold = sk_scan_hold(c->scan), total = c->held_len + len;
    size_t sse_hold = c->sse ? sk_sse_scan_hold(c->sse) : 0;
    if (sse_hold > hold) /* both are within what is not sent yet: the larger one is too */
        hold = sse_hold;
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
    if (c->rt->cfg->log_bodies)
        keep_for_log(c, b);
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
        sk_egress_cut(c);
        return -1;
    }
    if (c->sse && sk_sse_scan_feed(c->sse, data, len)) {
        secret_found(c, "event stream's text");
        sk_egress_cut(c);
        return -1;
    }
    if (c->sse && sk_sse_scan_gave_up(c->sse)) {
        SK_LOG(SK_LOG_WARN, "egress", NULL, SK_KV("route", c->route_name),
               "route %s: an event-stream event longer than %d bytes: the scan of the decoded "
               "text is off for this response (the byte scan goes on)",
               c->route_name, SK_SSE_MAX_EVENT);
        sk_sse_scan_free(c->sse);
        c->sse = NULL;
    }
    sk_usage_feed(c->usage, data, len);
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
    sk_egress_reject(c, timeout ? 504 : 502, reason, error);
}

static void on_end(void *ud, const sk_http_result *r)
{
    call *c = ud;
    c->up = NULL; /* freed by net/http.c when this returns */
    evtimer_del(c->timer);
    if (!c->head_sent && c->blocked) {
        sk_egress_refuse(c, 502, "guard:secret_in_response",
                         "the upstream's response carried a secret value: not passed on");
        sk_egress_finish(c);
        return;
    }
    if (!c->head_sent) {
        attempt_failed(c, r->error ? r->error : "the upstream closed without a response");
        return;
    }
    if (r->error) {
        SK_LOG(SK_LOG_WARN, "egress", NULL, NULL, "route %s: upstream response cut short: %s",
               c->route_name, r->error);
        sk_egress_cut(c);
    } else if (c->req && c->sse && sk_sse_scan_finish(c->sse)) {
        secret_found(c, "event stream's last event");
        sk_egress_cut(c);
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
    sk_egress_finish(c);
}

static const sk_http_stream_cbs stream_cbs = {
    .on_head = on_head, .on_data = on_data, .on_end = on_end};

void sk_egress_upstream_start(call *c)
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
    if (!(c->up = sk_http_stream(c->rt->http, &o, &stream_cbs, c))) {
        sk_egress_reject(c, 502, "upstream_unreachable",
                         "the upstream request could not be started");
        return;
    }
    int64_t t = c->rt->cfg->ttfb_timeout_ms < left ? c->rt->cfg->ttfb_timeout_ms : left;
    struct timeval tv = {t / 1000, (t % 1000) * 1000};
    evtimer_add(c->timer, &tv);
}

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
int sk_egress_build_headers(call *c, const char *traceparent)
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
    const char *v = c->rt->cred    ? sk_secret_value(c->rt->cred, NULL)
                    : c->rt->oauth ? sk_oauth_token_get(c->rt->oauth)
                                   : NULL;
    if (!v)
        return 0;
    if (!strcmp(cred_header, "authorization"))
        return add_header(c, "Authorization: Bearer %s%s", v, "");
    return add_header(c, "%s: %s", cred_header, v);
}
