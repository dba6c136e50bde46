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
#include "egress/sse_scan.h"
#include "egress/map.h"
#include "egress/usage.h"
#include "net/http.h"
#include "secrets/oauth.h"
#include "secrets/secret.h"
#include "trace/trace.h"

#define MAX_URL 8192

/* ---- ending ---- */

/* log_bodies: the request body and the start of the response, every secret value skiff
 * knows replaced by '*'. */
static void log_bodies(call *c, char *req, char *resp)
{
    size_t n = c->body_len < SK_EGRESS_LOG_BODY_MAX ? c->body_len : SK_EGRESS_LOG_BODY_MAX;
    char *whole = c->body_len ? malloc(c->body_len + 1) : NULL;
    req[0] = resp[0] = '\0';
    if (!c->rt || !c->rt->cfg->log_bodies) {
        free(whole);
        return;
    }
    /* Scrubbed whole before it is cut, so that no cut leaves the start of a secret. */
    if (whole) {
        memcpy(whole, c->body, c->body_len);
        whole[c->body_len] = '\0';
        sk_egress_scrub(c->eg, whole);
        memcpy(req, whole, n);
        req[n] = '\0';
        explicit_bzero(whole, c->body_len);
    }
    free(whole);
    if (c->resp_log)
        memcpy(resp, c->resp_log, c->resp_log_len + 1);
    sk_egress_scrub(c->eg, resp);
}

static void log_call(call *c, double dur)
{
    static char req[SK_EGRESS_LOG_BODY_MAX + 1], resp[SK_EGRESS_LOG_BODY_MAX + 1];
    int with = c->rt && c->rt->cfg->log_bodies;
    log_bodies(c, req, resp);
    char st[8], d[24], t[24], bi[24], bo[24], re[8], ti[24], to[24], tid[33] = "", sid[17] = "";
    snprintf(ti, sizeof ti, "%lld", (long long)c->tokens_in);
    snprintf(to, sizeof to, "%lld", (long long)c->tokens_out);
    snprintf(st, sizeof st, "%ld", c->status);
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
           SK_KV("route", c->route_name, "method", c->method, "path", c->path, "#status", st,
                 "#duration_ms", d, "#ttfb_ms", t, "#bytes_in", bi, "#bytes_out", bo, "#tokens_in",
                 ti, "#tokens_out", to, "#retries", re, "breaker", c->breaker ? c->breaker : "",
                 "reason", c->reason ? c->reason : "", with ? "request_body" : NULL, req,
                 "response_body", resp),
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

/* The tokens the response reported: counted, and the tokens-per-minute bucket corrected by
 * the difference with the estimate taken up front. */
static void account_tokens(call *c)
{
    if (!c->rt || !c->usage || !sk_usage_result(c->usage, &c->tokens_in, &c->tokens_out))
        return;
    sk_series_add(c->rt->tokens_in, (double)c->tokens_in);
    sk_series_add(c->rt->tokens_out, (double)c->tokens_out);
    sk_bucket_adjust(c->rt->tpm, (double)(c->tokens_in + c->tokens_out) - c->est_tokens,
                     sk_egress_now_ms());
    if (c->span) {
        sk_span_set_int(c->span, "gen_ai.usage.input_tokens", c->tokens_in);
        sk_span_set_int(c->span, "gen_ai.usage.output_tokens", c->tokens_out);
    }
}

/* Logs, counts, ends the span and frees the call. The evhttp request must be done with. */
void sk_egress_finish(call *c)
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
    account_tokens(c);
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
    sk_egress_conn_idle(c->guard);
    TAILQ_REMOVE(&e->calls, c, link);
    e->ncalls--;
    wipe_headers(c);
    sk_scan_free(c->scan);
    sk_sse_scan_free(c->sse);
    sk_usage_free(c->usage);
    free(c->resp_log);
    free(c->held);
    free(c->url);
    free(c->body);
    free(c);
}

/* A refusal by skiff: the JSON error body, Retry-After when retry_after_s > 0. */
void sk_egress_refuse(call *c, int status, const char *reason, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    /* The reason leads the message: SDKs print the message only. */
    int n = snprintf(msg, sizeof msg, "%s: ", reason);
    va_start(ap, fmt);
    vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
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
void sk_egress_reject(call *c, int status, const char *reason, const char *msg)
{
    const char *colon = strchr(reason, ':');
    sk_egress_count_rejection(c->eg, c->rt, colon ? "guard" : reason);
    sk_egress_refuse(c, status, reason, "%s", msg);
    sk_egress_finish(c);
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
    sk_egress_finish(c);
}

/* Cuts the response short: the connection is closed, so the handler sees it did not end. */
void sk_egress_cut(call *c)
{
    struct evhttp_connection *conn = c->conn;
    c->conn = NULL;
    c->req = NULL; /* freed with the connection */
    if (conn) {
        evhttp_connection_set_closecb(conn, NULL, NULL);
        evhttp_connection_free(conn);
    }
}

/* ---- the request ---- */

/* c->timer: the queue wait is over (no slot came), else the upstream side's deadline. */
static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    call *c = arg;
    if (!c->queued) {
        sk_egress_upstream_timer(c);
        return;
    }
    sk_gate_cancel(c->rt->gate, &c->waiter);
    c->queued = 0;
    sk_egress_reject(c, 429, "concurrency_limited",
                     "no concurrency slot of the route became free within its queue_timeout");
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
    c->guard = c->conn ? sk_egress_conn_of(e, evhttp_connection_get_bufferevent(c->conn)) : NULL;
    snprintf(c->method, sizeof c->method, "%s", method_name(evhttp_request_get_command(req)));
    const char *uri = evhttp_request_get_uri(req);
    snprintf(c->path, sizeof c->path, "%.*s", (int)strcspn(uri, "?"), uri);
    TAILQ_INSERT_TAIL(&e->calls, c, link);
    e->ncalls++;
    if (!(c->timer = evtimer_new(e->base, on_timer, c)) ||
        !(c->resume = event_new(e->base, -1, 0, sk_egress_upstream_resume, c))) {
        sk_egress_finish(c);
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
    sk_egress_reject(c, status, reason, msg);
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
    sk_egress_reject(c, status, reason, msg);
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
    c->est_tokens = (double)sk_usage_estimate(c->body, c->body_len);
    if (rt->cfg->tokens_per_minute > 0 && c->est_tokens > (double)rt->cfg->tokens_per_minute) {
        char msg[200];
        snprintf(msg, sizeof msg,
                 "the request's token estimate (%.0f, its max_tokens included) is over the "
                 "route's tokens_per_minute of %lld: it can never be sent",
                 c->est_tokens, (long long)rt->cfg->tokens_per_minute);
        reject_later(c, 429, "tokens_limited", 60000, msg);
        return -1;
    }
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
    sk_egress_upstream_start(c);
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
        sk_egress_reject(
            c, 429, "concurrency_limited",
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
    const char *vals[SK_EGRESS_MAX_NEEDLES];
    size_t lens[SK_EGRESS_MAX_NEEDLES];
    size_t n = sk_egress_needles(c->eg, vals, lens, SK_EGRESS_MAX_NEEDLES);
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
    if ((c->rt->cred && sk_secret_pending(c->rt->cred)) ||
        (c->rt->oauth && !sk_oauth_token_get(c->rt->oauth))) {
        sk_egress_reject(c, 503, "credential_unavailable",
                         c->rt->oauth ? "the route's OAuth token has not been obtained yet"
                                      : "the route's credential has not been read from Vault yet");
        return;
    }
    if (!(c->url = malloc(MAX_URL)) ||
        sk_egress_upstream_url(rc->upstream, rest, c->url, MAX_URL) < 0) {
        sk_egress_reject(c, 414, "invalid_request", "the request target is too long");
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
    if (sk_egress_build_headers(c, traceparent) < 0 || new_scan(c) < 0) {
        sk_egress_reject(c, 500, "internal", "out of memory");
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
    if (sk_egress_conn_closing(c->guard)) { /* already answered 408 or 431 */
        c->status = 0;
        evhttp_connection_set_closecb(c->conn, NULL, NULL);
        evhttp_send_error(req, 400, NULL);
        c->req = NULL;
        c->reason = "closing";
        sk_egress_finish(c);
        return;
    }
    if (sk_egress_split(evhttp_request_get_uri(req), c->route_name, sizeof c->route_name, &rest) <
        0) {
        sk_egress_reject(c, 404, "unknown_route",
                         "expected /<route>/<path> with a configured route");
        return;
    }
    if (!(c->rt = sk_egress_route(e, c->route_name))) {
        char msg[200];
        snprintf(msg, sizeof msg, "no egress route is named \"%s\"", c->route_name);
        sk_egress_reject(c, 404, "unknown_route", msg);
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
        sk_egress_refuse(c, 503, "shutting_down", "skiff is stopping");
    } else if (c->req) {
        sk_egress_cut(c);
    }
    sk_egress_finish(c);
}
