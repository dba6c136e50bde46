/* One HTTP/2 connection of a channel: connect (DNS, TCP, transport), the nghttp2 client session
 * on a bufferevent, keepalive PINGs, GOAWAY, and dispatch of stream events to calls.
 * Loop thread only; see internal.h for ownership. */
#include "grpc/internal.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

/* Stop handing bytes to the socket buffer above this; nghttp2 keeps the rest queued (bounded
 * by what calls submitted) and we resume when the buffer drains. */
#define OUT_HIGH_WATER (256 * 1024)
#define STREAM_WINDOW (64 * 1024) /* what a paused call can still receive */
#define CONN_WINDOW (1 << 20)
#define MAX_HEADER_LIST (64 * 1024)

static void timeval_ms(struct timeval *tv, int64_t ms)
{
    tv->tv_sec = (time_t)(ms / 1000);
    tv->tv_usec = (suseconds_t)(ms % 1000) * 1000;
}

/* ---- nghttp2 callbacks ---- */

static sk_grpc_stream *stream_of(nghttp2_session *h2, int32_t id)
{
    return nghttp2_session_get_stream_user_data(h2, id);
}

static ssize_t send_cb(nghttp2_session *h2, const uint8_t *data, size_t len, int flags, void *ud)
{
    sk_grpc_conn *conn = ud;
    (void)h2;
    (void)flags;
    struct evbuffer *out = bufferevent_get_output(conn->bev);
    if (evbuffer_get_length(out) >= OUT_HIGH_WATER)
        return NGHTTP2_ERR_WOULDBLOCK;
    if (evbuffer_add(out, data, len) != 0)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    return (ssize_t)len;
}

static ssize_t read_body_cb(nghttp2_session *h2, int32_t id, uint8_t *buf, size_t len,
                            uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    sk_grpc_stream *st = src->ptr;
    (void)h2;
    (void)id;
    (void)ud;
    if (st->call == NULL)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* call gone: reset the stream */
    int eof = 0;
    size_t n = sk_grpc_call_read_body(st->call, buf, len, &eof);
    if (eof)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static int on_header_cb(nghttp2_session *h2, const nghttp2_frame *frame, const uint8_t *name,
                        size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                        void *ud)
{
    sk_grpc_conn *conn = ud;
    (void)flags;
    if (conn->state == SK_CONN_DEAD)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    sk_grpc_stream *st = stream_of(h2, frame->hd.stream_id);
    if (frame->hd.type == NGHTTP2_HEADERS && st != NULL && st->call != NULL)
        sk_grpc_call_on_header(st->call, name, namelen, value, valuelen);
    return 0;
}

static int on_data_cb(nghttp2_session *h2, uint8_t flags, int32_t id, const uint8_t *data,
                      size_t len, void *ud)
{
    sk_grpc_conn *conn = ud;
    (void)flags;
    if (conn->state == SK_CONN_DEAD)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    sk_grpc_stream *st = stream_of(h2, id);
    if (st != NULL && st->call != NULL)
        sk_grpc_call_on_data(st->call, data, len);
    if (st != NULL && st->call != NULL && st->call->paused)
        st->held += len;
    else if (nghttp2_session_consume(h2, id, len + (st ? st->held : 0)) == 0 && st)
        st->held = 0;
    return 0;
}

void sk_grpc_conn_consume(sk_grpc_conn *conn, sk_grpc_stream *st, size_t len)
{
    if (len > 0 && nghttp2_session_consume(conn->h2, st->id, len) == 0)
        sk_grpc_conn_schedule_flush(conn);
}

static void became_ready(sk_grpc_conn *conn)
{
    sk_grpc_channel *ch = conn->ch;
    conn->state = SK_CONN_READY;
    conn->ready_ms = sk_grpc_now_ms();
    event_del(conn->connect_ev);
    if (ch->keepalive_ms > 0) {
        struct timeval tv;
        timeval_ms(&tv, ch->keepalive_ms);
        event_add(conn->ping_ev, &tv);
    }
    sk_grpc_ch_conn_ready(ch, conn);
}

/* GOAWAY: streams above last_stream_id were not processed; nghttp2 closes them with
 * REFUSED_STREAM right after this callback (-> UNAVAILABLE). The others may still finish. */
static void on_goaway(sk_grpc_conn *conn, const nghttp2_goaway *ga)
{
    sk_grpc_channel *ch = conn->ch;
    if (ga->error_code == NGHTTP2_ENHANCE_YOUR_CALM && ga->opaque_data_len == 14 &&
        memcmp(ga->opaque_data, "too_many_pings", 14) == 0 && ch->keepalive_ms > 0) {
        /* The server's ping policy is stricter than our interval: back off like grpc-core. */
        ch->keepalive_ms = ch->keepalive_ms > INT64_MAX / 2 ? INT64_MAX : ch->keepalive_ms * 2;
    }
    sk_grpc_ch_set_error(ch, "server %s sent GOAWAY (%s, last stream %d)", ch->authority,
                         nghttp2_http2_strerror(ga->error_code), ga->last_stream_id);
    sk_grpc_conn_drain(conn);
}

static int on_frame_recv_cb(nghttp2_session *h2, const nghttp2_frame *frame, void *ud)
{
    sk_grpc_conn *conn = ud;
    if (conn->state == SK_CONN_DEAD)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    sk_grpc_stream *st = frame->hd.stream_id ? stream_of(h2, frame->hd.stream_id) : NULL;
    int end_stream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    switch (frame->hd.type) {
    case NGHTTP2_SETTINGS:
        if (!(frame->hd.flags & NGHTTP2_FLAG_ACK) && conn->state == SK_CONN_HANDSHAKE)
            became_ready(conn);
        break;
    case NGHTTP2_PING:
        if (frame->hd.flags & NGHTTP2_FLAG_ACK) {
            conn->ping_outstanding = 0;
            event_del(conn->ping_wait_ev);
        }
        break;
    case NGHTTP2_GOAWAY:
        on_goaway(conn, &frame->goaway);
        break;
    case NGHTTP2_HEADERS:
        if (st != NULL && st->call != NULL)
            sk_grpc_call_on_headers_end(st->call, end_stream);
        break;
    case NGHTTP2_DATA:
        if (end_stream && st != NULL && st->call != NULL)
            sk_grpc_call_on_end_stream(st->call);
        break;
    default:
        break;
    }
    return 0;
}

static void free_stream(sk_grpc_conn *conn, sk_grpc_stream *st)
{
    TAILQ_REMOVE(&conn->streams, st, link);
    free(st);
}

static int on_stream_close_cb(nghttp2_session *h2, int32_t id, uint32_t error_code, void *ud)
{
    sk_grpc_conn *conn = ud;
    sk_grpc_stream *st = stream_of(h2, id);
    if (st == NULL)
        return 0;
    if (st->call != NULL)
        sk_grpc_call_on_stream_close(st->call, error_code);
    if (st->held > 0) /* the connection's share of a paused stream's window */
        nghttp2_session_consume(h2, id, st->held);
    free_stream(conn, st);
    return conn->state == SK_CONN_DEAD ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
}

/* A request HEADERS that never left (GOAWAY arrived first, session closing): the server never
 * saw the call. The stream may or may not be closed afterwards, so the handle stays. */
static int on_frame_not_send_cb(nghttp2_session *h2, const nghttp2_frame *frame, int lib_error,
                                void *ud)
{
    sk_grpc_conn *conn = ud;
    sk_grpc_stream *st;
    (void)h2;
    if (frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    TAILQ_FOREACH(st, &conn->streams, link)
    {
        if (st->id == frame->hd.stream_id && st->call != NULL) {
            sk_grpc_call_on_not_sent(st->call, lib_error);
            break;
        }
    }
    return 0;
}

/* The client session. Every received byte is handed to the call (or to its deframer, bounded
 * by max_message_bytes) inside the callback, so nothing piles up in skiff; window updates are
 * manual so that a paused call (sk_grpc_call_pause) stops giving its stream window back: the
 * server can then send at most STREAM_WINDOW more bytes on it. */
static int new_session(sk_grpc_conn *conn)
{
    nghttp2_session_callbacks *cbs = NULL;
    nghttp2_option *opt = NULL;
    if (nghttp2_option_new(&opt) != 0)
        return -1;
    nghttp2_option_set_no_auto_window_update(opt, 1);
    if (nghttp2_session_callbacks_new(&cbs) != 0) {
        nghttp2_option_del(opt);
        return -1;
    }
    nghttp2_session_callbacks_set_send_callback(cbs, send_cb);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header_cb);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_cb);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv_cb);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close_cb);
    nghttp2_session_callbacks_set_on_frame_not_send_callback(cbs, on_frame_not_send_cb);
    int rv = nghttp2_session_client_new2(&conn->h2, cbs, conn, opt);
    nghttp2_session_callbacks_del(cbs);
    nghttp2_option_del(opt);
    if (rv != 0)
        return -1;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, MAX_HEADER_LIST},
    };
    if (nghttp2_submit_settings(conn->h2, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]) != 0)
        return -1;
    return nghttp2_session_set_local_window_size(conn->h2, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW);
}

/* ---- bufferevent callbacks ---- */

static void protocol_error(sk_grpc_conn *conn, int rv)
{
    char why[SK_GRPC_ERRLEN];
    snprintf(why, sizeof why, "HTTP/2 error on the connection to %s: %s", conn->ch->authority,
             nghttp2_strerror(rv));
    sk_grpc_conn_close(conn, why);
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    sk_grpc_conn *conn = arg;
    sk_grpc_channel *ch = conn->ch;
    struct evbuffer *in = bufferevent_get_input(bev);
    sk_grpc_ch_enter(ch);
    conn->last_read_ms = sk_grpc_now_ms();
    size_t n;
    while (conn->state != SK_CONN_DEAD && (n = evbuffer_get_contiguous_space(in)) > 0) {
        const uint8_t *p = evbuffer_pullup(in, (ssize_t)n);
        conn->in_h2 = 1;
        ssize_t rv = nghttp2_session_mem_recv(conn->h2, p, n);
        conn->in_h2 = 0;
        if (rv < 0) {
            if (conn->state != SK_CONN_DEAD)
                protocol_error(conn, (int)rv);
            break;
        }
        evbuffer_drain(in, (size_t)rv);
    }
    sk_grpc_conn_flush(conn);
    sk_grpc_ch_leave(ch);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    sk_grpc_conn *conn = arg;
    (void)bev;
    sk_grpc_ch_enter(conn->ch);
    sk_grpc_conn_flush(conn);
    sk_grpc_ch_leave(conn->ch);
}

static void on_connected(sk_grpc_conn *conn)
{
    sk_grpc_channel *ch = conn->ch;
    char err[SK_GRPC_ERRLEN] = "";
    if (ch->tp->verify != NULL && ch->tp->verify(ch->tp->ctx, conn->bev, err, sizeof err) != 0) {
        char why[SK_GRPC_ERRLEN + 64];
        snprintf(why, sizeof why, "%s handshake with %s failed: %s", ch->tp->name, ch->authority,
                 err);
        sk_grpc_conn_close(conn, why);
        return;
    }
    int one = 1;
    evutil_socket_t fd = bufferevent_getfd(conn->bev);
    /* Small frames must not wait for Nagle. Failure (a transport that is not TCP) only costs
     * latency, so it is not an error. */
    if (fd >= 0)
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (new_session(conn) != 0) {
        sk_grpc_conn_close(conn, "cannot start the HTTP/2 session (out of memory)");
        return;
    }
    conn->state = SK_CONN_HANDSHAKE;
    conn->last_read_ms = sk_grpc_now_ms();
    if (bufferevent_enable(conn->bev, EV_READ | EV_WRITE) != 0) {
        sk_grpc_conn_close(conn, "cannot watch the socket");
        return;
    }
    sk_grpc_conn_flush(conn);
}

static void describe_error(sk_grpc_conn *conn, short what, char *out, size_t outlen)
{
    sk_grpc_channel *ch = conn->ch;
    int dns = bufferevent_socket_get_dns_error(conn->bev);
    const char *reason;
    char tls[SK_GRPC_ERRLEN - 64];
    if (dns != 0)
        reason = evutil_gai_strerror(dns);
    else if (ch->tp->describe &&
             ch->tp->describe(ch->tp->ctx, conn->bev, conn->state <= SK_CONN_HANDSHAKE, tls,
                              sizeof tls))
        reason = tls;
    else if (what & BEV_EVENT_EOF)
        reason = "connection closed by the server";
    else
        reason = evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR());
    if (conn->state == SK_CONN_CONNECTING)
        snprintf(out, outlen, "cannot connect to %s: %s", ch->authority, reason);
    else
        snprintf(out, outlen, "connection to %s lost: %s", ch->authority, reason);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    sk_grpc_conn *conn = arg;
    sk_grpc_channel *ch = conn->ch;
    (void)bev;
    sk_grpc_ch_enter(ch);
    if (what & BEV_EVENT_CONNECTED) {
        on_connected(conn);
    } else if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
        char why[SK_GRPC_ERRLEN];
        describe_error(conn, what, why, sizeof why);
        sk_grpc_conn_close(conn, why);
    }
    sk_grpc_ch_leave(ch);
}

/* ---- timers ---- */

static void connect_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    sk_grpc_conn *conn = arg;
    sk_grpc_channel *ch = conn->ch;
    char why[SK_GRPC_ERRLEN];
    (void)fd;
    (void)what;
    sk_grpc_ch_enter(ch);
    snprintf(why, sizeof why, "cannot connect to %s: %s timed out after %lld ms", ch->authority,
             conn->state == SK_CONN_CONNECTING ? "connect" : "HTTP/2 handshake",
             (long long)ch->connect_timeout_ms);
    sk_grpc_conn_close(conn, why);
    sk_grpc_ch_leave(ch);
}

/* Keepalive tick: PING only while calls are active and nothing was read for a whole interval
 * (any frame proves the peer alive), so idle connections never trip a server's ping policy. */
static void ping_cb(evutil_socket_t fd, short what, void *arg)
{
    sk_grpc_conn *conn = arg;
    sk_grpc_channel *ch = conn->ch;
    (void)fd;
    (void)what;
    if (conn->ncalls == 0 || conn->ping_outstanding ||
        sk_grpc_now_ms() - conn->last_read_ms < ch->keepalive_ms)
        return;
    sk_grpc_ch_enter(ch);
    if (nghttp2_submit_ping(conn->h2, NGHTTP2_FLAG_NONE, NULL) == 0) {
        struct timeval tv;
        timeval_ms(&tv, ch->keepalive_timeout_ms);
        conn->ping_outstanding = 1;
        event_add(conn->ping_wait_ev, &tv);
        sk_grpc_conn_flush(conn);
    }
    sk_grpc_ch_leave(ch);
}

static void ping_wait_cb(evutil_socket_t fd, short what, void *arg)
{
    sk_grpc_conn *conn = arg;
    sk_grpc_channel *ch = conn->ch;
    char why[SK_GRPC_ERRLEN];
    (void)fd;
    (void)what;
    sk_grpc_ch_enter(ch);
    snprintf(why, sizeof why, "connection to %s lost: keepalive PING not acknowledged in %lld ms",
             ch->authority, (long long)ch->keepalive_timeout_ms);
    sk_grpc_conn_close(conn, why);
    sk_grpc_ch_leave(ch);
}

/* ---- life cycle ---- */

static sk_grpc_conn *conn_alloc(sk_grpc_channel *ch)
{
    sk_grpc_conn *conn = calloc(1, sizeof *conn);
    if (conn == NULL)
        return NULL;
    conn->ch = ch;
    conn->state = SK_CONN_CONNECTING;
    TAILQ_INIT(&conn->calls);
    TAILQ_INIT(&conn->streams);
    conn->connect_ev = evtimer_new(ch->base, connect_timeout_cb, conn);
    conn->ping_ev = event_new(ch->base, -1, EV_PERSIST, ping_cb, conn);
    conn->ping_wait_ev = evtimer_new(ch->base, ping_wait_cb, conn);
    conn->bev = ch->tp->new_bev(ch->tp->ctx, ch->base, ch->host);
    if (conn->connect_ev == NULL || conn->ping_ev == NULL || conn->ping_wait_ev == NULL ||
        conn->bev == NULL) {
        sk_grpc_ch_set_error(ch, "cannot create a %s connection (out of memory)", ch->tp->name);
        sk_grpc_conn_free(conn);
        return NULL;
    }
    return conn;
}

int sk_grpc_conn_start(sk_grpc_channel *ch)
{
    sk_grpc_conn *conn = conn_alloc(ch);
    if (conn == NULL)
        return -1;
    struct timeval tv;
    timeval_ms(&tv, ch->connect_timeout_ms);
    event_add(conn->connect_ev, &tv);
    bufferevent_setcb(conn->bev, read_cb, write_cb, event_cb, conn);
    /* Registered before connecting: the resolver may report a failure synchronously. */
    ch->current = conn;
    if (bufferevent_socket_connect_hostname(conn->bev, ch->dns, AF_UNSPEC, ch->host, ch->port) !=
            0 &&
        conn->state != SK_CONN_DEAD) {
        char why[SK_GRPC_ERRLEN];
        describe_error(conn, BEV_EVENT_ERROR, why, sizeof why);
        sk_grpc_conn_close(conn, why);
    }
    return 0;
}

void sk_grpc_conn_close(sk_grpc_conn *conn, const char *why)
{
    if (conn->state == SK_CONN_DEAD)
        return;
    sk_grpc_channel *ch = conn->ch;
    conn->state = SK_CONN_DEAD;
    if (why != NULL)
        sk_grpc_ch_set_error(ch, "%s", why);
    bufferevent_disable(conn->bev, EV_READ | EV_WRITE);
    bufferevent_setcb(conn->bev, NULL, NULL, NULL, NULL);
    event_del(conn->connect_ev);
    event_del(conn->ping_ev);
    event_del(conn->ping_wait_ev);
    sk_grpc_ch_conn_dead(ch, conn, ch->current == conn);
    sk_grpc_call *call;
    while ((call = TAILQ_FIRST(&conn->calls)) != NULL)
        sk_grpc_call_finish(call, SK_GRPC_UNAVAILABLE, why ? why : "connection closed", 0);
}

void sk_grpc_conn_drain(sk_grpc_conn *conn)
{
    if (conn->state == SK_CONN_DEAD || conn->state == SK_CONN_DRAINING)
        return;
    conn->state = SK_CONN_DRAINING;
    sk_grpc_ch_conn_draining(conn->ch, conn);
    if (conn->ncalls == 0)
        sk_grpc_conn_close(conn, NULL);
}

/* nghttp2 is done with the connection: a drained one closes quietly, otherwise it is a
 * protocol failure (typically a peer that does not speak HTTP/2). */
static void session_ended(sk_grpc_conn *conn)
{
    char why[SK_GRPC_ERRLEN];
    if (conn->state == SK_CONN_DRAINING && conn->ncalls == 0) {
        sk_grpc_conn_close(conn, NULL);
        return;
    }
    snprintf(why, sizeof why, "%s %s: HTTP/2 session ended (protocol error?)",
             conn->state == SK_CONN_HANDSHAKE ? "cannot connect to" : "connection lost to",
             conn->ch->authority);
    sk_grpc_conn_close(conn, why);
}

void sk_grpc_conn_schedule_flush(sk_grpc_conn *conn)
{
    conn->want_flush = 1;
    if (!conn->in_h2)
        sk_grpc_ch_tick(conn->ch); /* inside nghttp2, read_cb flushes when it returns */
}

void sk_grpc_conn_flush(sk_grpc_conn *conn)
{
    if (conn->in_h2) {
        conn->want_flush = 1;
        return;
    }
    conn->want_flush = 0;
    if (conn->state == SK_CONN_DEAD || conn->h2 == NULL)
        return;
    do {
        conn->want_flush = 0;
        conn->in_h2 = 1;
        int rv = nghttp2_session_send(conn->h2);
        conn->in_h2 = 0;
        if (rv != 0 && conn->state != SK_CONN_DEAD)
            protocol_error(conn, rv);
    } while (conn->want_flush && conn->state != SK_CONN_DEAD);
    if (conn->state != SK_CONN_DEAD && !nghttp2_session_want_read(conn->h2) &&
        !nghttp2_session_want_write(conn->h2))
        session_ended(conn);
}

int32_t sk_grpc_conn_submit(sk_grpc_conn *conn, sk_grpc_call *call, const nghttp2_nv *nva,
                            size_t nvlen)
{
    sk_grpc_stream *st = calloc(1, sizeof *st);
    if (st == NULL)
        return NGHTTP2_ERR_NOMEM;
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = read_body_cb};
    int32_t id = nghttp2_submit_request(conn->h2, NULL, nva, nvlen, &prd, st);
    if (id < 0) {
        free(st);
        return id;
    }
    st->id = id;
    st->call = call;
    TAILQ_INSERT_TAIL(&conn->streams, st, link);
    TAILQ_INSERT_TAIL(&conn->calls, call, link);
    conn->ncalls++;
    call->conn = conn;
    call->stream = st;
    return id;
}

void sk_grpc_conn_release(sk_grpc_conn *conn, sk_grpc_call *call, int rst)
{
    sk_grpc_stream *st = call->stream;
    st->call = NULL;
    /* Also cancels a request whose HEADERS are still queued; failure (out of memory) only
     * leaves the stream to the server's own deadline. Sent by the next flush. */
    if (rst && conn->state != SK_CONN_DEAD &&
        nghttp2_submit_rst_stream(conn->h2, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL) == 0)
        sk_grpc_conn_schedule_flush(conn);
    TAILQ_REMOVE(&conn->calls, call, link);
    conn->ncalls--;
    call->conn = NULL;
    call->stream = NULL;
    if (conn->state == SK_CONN_DRAINING && conn->ncalls == 0)
        sk_grpc_conn_close(conn, NULL);
}

int sk_grpc_conn_local_closed(sk_grpc_conn *conn, const sk_grpc_call *call)
{
    return nghttp2_session_get_stream_local_close(conn->h2, call->stream->id) == 1;
}

void sk_grpc_conn_free(sk_grpc_conn *conn)
{
    if (conn == NULL)
        return;
    sk_grpc_stream *st;
    while ((st = TAILQ_FIRST(&conn->streams)) != NULL)
        free_stream(conn, st);
    if (conn->h2 != NULL)
        nghttp2_session_del(conn->h2);
    if (conn->bev != NULL)
        bufferevent_free(conn->bev);
    if (conn->connect_ev != NULL)
        event_free(conn->connect_ev);
    if (conn->ping_ev != NULL)
        event_free(conn->ping_ev);
    if (conn->ping_wait_ev != NULL)
        event_free(conn->ping_wait_ev);
    free(conn);
}
