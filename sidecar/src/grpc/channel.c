/* The channel: target, connection attempts with jittered backoff, calls waiting for a
 * connection, deferred closes and frees. Loop thread only; see internal.h for ownership. */
#include "grpc/internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/dns.h>
#include <event2/event.h>

#define DEFAULT_MAX_MESSAGE (4u << 20)
#define DEFAULT_CONNECT_TIMEOUT_MS 20000
#define DEFAULT_RECONNECT_INITIAL_MS 1000
#define DEFAULT_RECONNECT_MAX_MS 120000
#define DEFAULT_KEEPALIVE_TIMEOUT_MS 20000
/* A connection that stayed up this long was healthy: when it ends, reconnect at once and start
 * the backoff afresh. Shorter-lived ones count as failed attempts (no tight reconnect loop
 * against a server that accepts and drops). */
#define STABLE_MS 1000

int64_t sk_grpc_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sk_grpc_ch_set_error(sk_grpc_channel *ch, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ch->last_error, sizeof ch->last_error, fmt, ap);
    va_end(ap);
}

const char *sk_grpc_channel_last_error(const sk_grpc_channel *ch)
{
    return ch->last_error;
}

int sk_grpc_channel_connected(const sk_grpc_channel *ch)
{
    return ch->current != NULL && ch->current->state == SK_CONN_READY;
}

void sk_grpc_ch_tick(sk_grpc_channel *ch)
{
    event_active(ch->tick_ev, 0, 0);
}

static void report(sk_grpc_channel *ch, int connected)
{
    if (ch->freeing || ch->reported == connected)
        return;
    ch->reported = connected;
    if (ch->on_state != NULL)
        ch->on_state(ch->ud, connected);
}

static void schedule_connect(sk_grpc_channel *ch, int64_t delay_ms)
{
    if (ch->freeing || ch->current != NULL || evtimer_pending(ch->retry_ev, NULL))
        return;
    struct timeval tv = {.tv_sec = (time_t)(delay_ms / 1000),
                         .tv_usec = (suseconds_t)(delay_ms % 1000) * 1000};
    evtimer_add(ch->retry_ev, &tv);
}

static int64_t reconnect_delay(sk_grpc_channel *ch, const sk_grpc_conn *conn)
{
    if (conn->ready_ms != 0 && sk_grpc_now_ms() - conn->ready_ms >= STABLE_MS) {
        sk_backoff_reset(&ch->backoff);
        return 0;
    }
    return sk_backoff_next(&ch->backoff);
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    sk_grpc_channel *ch = arg;
    (void)fd;
    (void)what;
    sk_grpc_ch_enter(ch);
    if (!ch->freeing && ch->current == NULL && sk_grpc_conn_start(ch) != 0)
        schedule_connect(ch, sk_backoff_next(&ch->backoff));
    sk_grpc_ch_leave(ch);
}

/* Opens streams for the waiting calls on the ready connection, oldest first. */
static void dispatch_pending(sk_grpc_channel *ch)
{
    sk_grpc_conn *conn = ch->current;
    sk_grpc_call *call;
    if (conn == NULL || TAILQ_EMPTY(&ch->pending))
        return;
    while (conn->state == SK_CONN_READY && (call = TAILQ_FIRST(&ch->pending)) != NULL) {
        const char *auth = ch->auth ? ch->auth->value(ch->auth->ud) : NULL;
        if (ch->auth && auth == NULL)
            break; /* no token yet: sk_grpc_channel_auth_changed resumes */
        if (sk_grpc_call_submit(call, conn, auth) != 0)
            break;
    }
    sk_grpc_conn_flush(conn);
}

void sk_grpc_channel_auth_changed(sk_grpc_channel *ch)
{
    if (ch != NULL && !ch->freeing && !TAILQ_EMPTY(&ch->pending))
        sk_grpc_ch_tick(ch);
}

void sk_grpc_ch_conn_ready(sk_grpc_channel *ch, sk_grpc_conn *conn)
{
    (void)conn;
    report(ch, 1);
    if (!ch->freeing)
        dispatch_pending(ch);
}

/* Connections that asked for a flush; a flush may close any of them, so restart each time. */
static void flush_requested(sk_grpc_channel *ch)
{
    sk_grpc_conn *conn;
again:
    TAILQ_FOREACH(conn, &ch->draining, link)
    {
        if (conn->want_flush) {
            sk_grpc_conn_flush(conn);
            goto again;
        }
    }
    if ((conn = ch->current) != NULL && conn->want_flush)
        sk_grpc_conn_flush(conn);
}

void sk_grpc_ch_conn_draining(sk_grpc_channel *ch, sk_grpc_conn *conn)
{
    if (ch->current != conn)
        return;
    ch->current = NULL;
    TAILQ_INSERT_TAIL(&ch->draining, conn, link);
    report(ch, 0);
    schedule_connect(ch, reconnect_delay(ch, conn));
}

void sk_grpc_ch_conn_dead(sk_grpc_channel *ch, sk_grpc_conn *conn, int was_current)
{
    if (was_current)
        ch->current = NULL;
    else
        TAILQ_REMOVE(&ch->draining, conn, link);
    TAILQ_INSERT_TAIL(&ch->dead, conn, link);
    sk_grpc_ch_tick(ch);
    if (was_current) {
        int64_t delay = reconnect_delay(ch, conn);
        report(ch, 0);
        if (ch->on_error && !ch->freeing && ch->last_error[0])
            ch->on_error(ch->ud, ch->last_error, delay);
        schedule_connect(ch, delay);
    }
}

/* Deferred work, later in the loop turn that asked for it: on_close of calls that failed
 * inside an API call, streams for new calls, flushes asked for by API calls, then the memory of
 * finished calls and closed connections. */
static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    sk_grpc_channel *ch = arg;
    (void)fd;
    (void)what;
    sk_grpc_ch_enter(ch);
    sk_grpc_call *call;
    while (!ch->freeing && (call = TAILQ_FIRST(&ch->closing)) != NULL)
        sk_grpc_call_deliver_close(call);
    if (!ch->freeing && sk_grpc_channel_connected(ch))
        dispatch_pending(ch);
    else if (!ch->freeing && !TAILQ_EMPTY(&ch->pending))
        schedule_connect(ch, 0); /* a lazy channel's first call (a no-op while connecting) */
    if (!ch->freeing)
        flush_requested(ch);
    /* Only at depth 1: an object's callback may still be on the stack otherwise. */
    if (ch->depth == 1) {
        while ((call = TAILQ_FIRST(&ch->graveyard)) != NULL) {
            TAILQ_REMOVE(&ch->graveyard, call, link);
            sk_grpc_call_free(call);
        }
        sk_grpc_conn *conn;
        while ((conn = TAILQ_FIRST(&ch->dead)) != NULL) {
            TAILQ_REMOVE(&ch->dead, conn, link);
            sk_grpc_conn_free(conn);
        }
    }
    sk_grpc_ch_leave(ch);
}

/* "host:port", "[v6]:port", optionally prefixed by "dns:///"; port required. */
static int parse_target(sk_grpc_channel *ch, const char *target)
{
    if (strncmp(target, "dns:///", 7) == 0)
        target += 7;
    const char *host = target, *host_end, *colon;
    if (target[0] == '[') {
        host = target + 1;
        host_end = strchr(host, ']');
        if (host_end == NULL || host_end[1] != ':')
            return -1;
        colon = host_end + 1;
    } else {
        colon = strrchr(target, ':');
        if (colon == NULL || memchr(target, ':', (size_t)(colon - target)) != NULL)
            return -1;
        host_end = colon;
    }
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (host_end == host || colon[1] == '\0' || *end != '\0' || port < 1 || port > 65535)
        return -1;
    ch->host = strndup(host, (size_t)(host_end - host));
    ch->authority = strdup(target);
    ch->port = (int)port;
    return ch->host != NULL && ch->authority != NULL ? 0 : -1;
}

static void set_options(sk_grpc_channel *ch, const sk_grpc_channel_opts *o)
{
    ch->tp = o->transport ? o->transport : sk_grpc_transport_h2c();
    ch->on_error = o->on_error;
    ch->max_message_bytes = o->max_message_bytes ? o->max_message_bytes : DEFAULT_MAX_MESSAGE;
    ch->keepalive_ms = o->keepalive_ms > 0 ? o->keepalive_ms : 0;
    ch->keepalive_timeout_ms =
        o->keepalive_timeout_ms > 0 ? o->keepalive_timeout_ms : DEFAULT_KEEPALIVE_TIMEOUT_MS;
    ch->connect_timeout_ms =
        o->connect_timeout_ms > 0 ? o->connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS;
    int64_t initial =
        o->reconnect_initial_ms > 0 ? o->reconnect_initial_ms : DEFAULT_RECONNECT_INITIAL_MS;
    int64_t max = o->reconnect_max_ms > 0 ? o->reconnect_max_ms : DEFAULT_RECONNECT_MAX_MS;
    uint64_t seed = (uint64_t)(uintptr_t)ch ^ (uint64_t)sk_grpc_now_ms() * 0x9e3779b97f4a7c15ull;
    sk_backoff_init(&ch->backoff, initial, max, seed);
}

static void destroy(sk_grpc_channel *ch)
{
    struct sk_grpc_call_list *lists[] = {&ch->pending, &ch->closing, &ch->graveyard};
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
        sk_grpc_call *call;
        while ((call = TAILQ_FIRST(lists[i])) != NULL) {
            TAILQ_REMOVE(lists[i], call, link);
            sk_grpc_call_free(call);
        }
    }
    sk_grpc_conn_free(ch->current);
    struct sk_grpc_conn_list *conns[] = {&ch->draining, &ch->dead};
    for (size_t i = 0; i < sizeof conns / sizeof conns[0]; i++) {
        sk_grpc_conn *conn;
        while ((conn = TAILQ_FIRST(conns[i])) != NULL) {
            TAILQ_REMOVE(conns[i], conn, link);
            sk_grpc_conn_free(conn);
        }
    }
    if (ch->retry_ev != NULL)
        event_free(ch->retry_ev);
    if (ch->tick_ev != NULL)
        event_free(ch->tick_ev);
    if (ch->own_dns && ch->dns != NULL)
        evdns_base_free(ch->dns, 0);
    free(ch->host);
    free(ch->authority);
    free(ch);
}

static struct evdns_base *new_resolver(struct event_base *base)
{
    int flags = EVDNS_BASE_INITIALIZE_NAMESERVERS | EVDNS_BASE_DISABLE_WHEN_INACTIVE;
    struct evdns_base *dns = evdns_base_new(base, flags);
    /* No usable resolv.conf: numeric addresses and /etc/hosts still work. */
    return dns != NULL ? dns : evdns_base_new(base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
}

sk_grpc_channel *sk_grpc_channel_new(struct event_base *base, const sk_grpc_channel_opts *opts,
                                     sk_grpc_state_cb on_state, void *ud)
{
    sk_grpc_channel *ch = calloc(1, sizeof *ch);
    if (ch == NULL)
        return NULL;
    ch->base = base;
    ch->on_state = on_state;
    ch->ud = ud;
    TAILQ_INIT(&ch->draining);
    TAILQ_INIT(&ch->dead);
    TAILQ_INIT(&ch->pending);
    TAILQ_INIT(&ch->closing);
    TAILQ_INIT(&ch->graveyard);
    set_options(ch, opts);
    ch->auth = opts->auth;
    if (opts->target == NULL || parse_target(ch, opts->target) != 0)
        goto fail;
    ch->dns = opts->dns;
    if (ch->dns == NULL) {
        ch->own_dns = 1;
        if ((ch->dns = new_resolver(base)) == NULL)
            goto fail;
    }
    ch->retry_ev = evtimer_new(base, retry_cb, ch);
    ch->tick_ev = event_new(base, -1, 0, tick_cb, ch);
    if (ch->retry_ev == NULL || ch->tick_ev == NULL)
        goto fail;
    if (!opts->lazy)
        schedule_connect(ch, 0);
    return ch;
fail:
    destroy(ch);
    return NULL;
}

void sk_grpc_ch_enter(sk_grpc_channel *ch)
{
    ch->depth++;
}

void sk_grpc_ch_leave(sk_grpc_channel *ch)
{
    if (--ch->depth == 0 && ch->freeing)
        destroy(ch);
}

static void cancel_conn_calls(sk_grpc_conn *conn)
{
    sk_grpc_call *call;
    while ((call = TAILQ_FIRST(&conn->calls)) != NULL)
        sk_grpc_call_finish(call, SK_GRPC_CANCELLED, "channel closed", 1);
}

/* Every call gets on_close(CANCELLED); callbacks cannot start new calls (freeing is set) and
 * may cancel others, so lists are drained from the head until empty. A draining connection
 * closes by itself when its last call goes. */
static void cancel_everything(sk_grpc_channel *ch)
{
    sk_grpc_call *call;
    struct sk_grpc_call_list *lists[] = {&ch->pending, &ch->closing};
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
        while ((call = TAILQ_FIRST(lists[i])) != NULL)
            sk_grpc_call_finish(call, SK_GRPC_CANCELLED, "channel closed", 0);
    }
    sk_grpc_conn *conn;
    while ((conn = TAILQ_FIRST(&ch->draining)) != NULL) {
        cancel_conn_calls(conn);
        sk_grpc_conn_close(conn, NULL);
    }
    if ((conn = ch->current) != NULL) {
        cancel_conn_calls(conn);
        sk_grpc_conn_close(conn, NULL);
    }
    event_del(ch->retry_ev);
}

void sk_grpc_channel_free(sk_grpc_channel *ch)
{
    if (ch == NULL || ch->freeing)
        return;
    sk_grpc_ch_enter(ch);
    ch->freeing = 1;
    cancel_everything(ch);
    sk_grpc_ch_leave(ch);
}

void sk_grpc_channel_reconnect(sk_grpc_channel *ch)
{
    if (ch->current == NULL || ch->current->state != SK_CONN_READY)
        return;
    sk_grpc_ch_enter(ch);
    sk_grpc_conn_drain(ch->current);
    sk_grpc_ch_leave(ch);
}
