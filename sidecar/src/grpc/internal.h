/* Private to sidecar/src/grpc: the channel, its HTTP/2 connections and its calls.
 *
 * Ownership: the channel owns every connection and every call. A connection is in exactly one
 * place: ch->current (connecting or ready), ch->draining (got GOAWAY, finishing its streams) or
 * ch->dead (closed, freed on the next tick). A call is in exactly one list: ch->pending (waiting
 * for a ready connection), conn->calls (has a stream), ch->closing (its on_close is due on the
 * next tick) or ch->graveyard (finished, freed on the next tick). Nothing is freed inside a
 * callback: objects go to ch->dead / ch->graveyard and the tick event frees them, and
 * sk_grpc_channel_free inside a callback only marks the channel; ch_leave frees it once the
 * outermost entry point returns. Loop thread only. */
#ifndef SK_GRPC_INTERNAL_H
#define SK_GRPC_INTERNAL_H

#include <stdint.h>
#include <sys/queue.h>

#include <nghttp2/nghttp2.h>

#include "core/backoff.h"
#include "grpc/deframer.h"
#include "grpc/grpc.h"
#include "grpc/transport.h"

struct event;
struct bufferevent;

typedef struct sk_grpc_conn sk_grpc_conn;
typedef struct sk_grpc_stream sk_grpc_stream;
TAILQ_HEAD(sk_grpc_call_list, sk_grpc_call);
TAILQ_HEAD(sk_grpc_conn_list, sk_grpc_conn);
TAILQ_HEAD(sk_grpc_stream_list, sk_grpc_stream);

/* What nghttp2 holds as stream user data and data source: owned by the connection and freed
 * when nghttp2 closes the stream (or with the session), so nghttp2 never sees a freed call. */
struct sk_grpc_stream {
    TAILQ_ENTRY(sk_grpc_stream) link;
    sk_grpc_call *call; /* NULL once the call has finished or was cancelled */
    int32_t id;
    size_t held; /* DATA bytes received while the call was paused, not yet given back */
};

enum sk_grpc_call_state {
    SK_CALL_PENDING, /* ch->pending */
    SK_CALL_ACTIVE,  /* conn->calls, stream_id > 0 */
    SK_CALL_CLOSING, /* ch->closing: on_close(close_code) runs on the next tick */
    SK_CALL_DONE,    /* ch->graveyard */
};

enum sk_grpc_conn_state {
    SK_CONN_CONNECTING, /* TCP (and TLS) in progress */
    SK_CONN_HANDSHAKE,  /* preface sent, waiting for the server's SETTINGS */
    SK_CONN_READY,
    SK_CONN_DRAINING, /* GOAWAY received (or stream ids exhausted): no new streams */
    SK_CONN_DEAD,
};

#define SK_GRPC_ERRLEN 256
#define SK_GRPC_MAX_MESSAGE_TEXT 1024 /* grpc-message bytes kept (raw, before decoding) */

struct sk_grpc_call {
    TAILQ_ENTRY(sk_grpc_call) link;
    sk_grpc_channel *ch;
    sk_grpc_conn *conn;     /* set while ACTIVE */
    sk_grpc_stream *stream; /* set while ACTIVE */
    enum sk_grpc_call_state state;
    char *path;
    uint8_t *body; /* 5-byte prefix + request message */
    size_t body_len;
    size_t body_sent;
    sk_grpc_metadata *md; /* copies */
    size_t nmd;
    int64_t deadline_ms; /* monotonic; 0 = none */
    struct event *deadline_ev;
    sk_grpc_message_cb on_message;
    sk_grpc_close_cb on_close;
    void *ud;
    int paused;       /* sk_grpc_call_pause: the flow-control window is not given back */
    char *auth_value; /* authorization sent with the call (channel auth), or NULL */
    int auth_retried; /* sent again once after UNAUTHENTICATED */
    int delivered;    /* messages delivered to on_message */
    /* Response. */
    int headers_seen; /* the response HEADERS have ended */
    int http_status;  /* 0 until :status */
    int content_type_ok;
    int grpc_status; /* -1 until grpc-status */
    char grpc_message[SK_GRPC_MAX_MESSAGE_TEXT];
    size_t grpc_message_len;
    sk_grpc_deframer *df;
    /* SK_CALL_CLOSING. */
    int close_code;
    char close_msg[SK_GRPC_ERRLEN];
};

/* Gives DATA bytes of stream st back to the flow-control windows (WINDOW_UPDATE on the next
 * flush). */
void sk_grpc_conn_consume(sk_grpc_conn *conn, sk_grpc_stream *st, size_t len);

struct sk_grpc_conn {
    TAILQ_ENTRY(sk_grpc_conn) link;
    sk_grpc_channel *ch;
    enum sk_grpc_conn_state state;
    struct bufferevent *bev;
    nghttp2_session *h2;
    struct sk_grpc_call_list calls;
    size_t ncalls;
    struct sk_grpc_stream_list streams;
    struct event *connect_ev;   /* connect + preface timeout */
    struct event *ping_ev;      /* keepalive interval (persistent) */
    struct event *ping_wait_ev; /* PING ACK timeout */
    int ping_outstanding;
    int64_t last_read_ms;
    int64_t ready_ms; /* when it became READY, 0 = never */
    int in_h2;        /* inside nghttp2_session_{mem_recv,send}: no re-entry */
    int want_flush;
};

struct sk_grpc_channel {
    struct event_base *base;
    struct evdns_base *dns;
    int own_dns;
    const sk_grpc_transport *tp;
    const sk_grpc_auth *auth;
    char *target;
    char *host;
    int port;
    char *authority;
    size_t max_message_bytes;
    int64_t keepalive_ms;
    int64_t keepalive_timeout_ms;
    int64_t connect_timeout_ms;
    sk_grpc_state_cb on_state;
    sk_grpc_error_cb on_error;
    void *ud;
    sk_grpc_conn *current;
    struct sk_grpc_conn_list draining;
    struct sk_grpc_conn_list dead;
    struct sk_grpc_call_list pending;
    struct sk_grpc_call_list closing;
    struct sk_grpc_call_list graveyard;
    struct event *retry_ev; /* next connection attempt */
    struct event *tick_ev;  /* deferred work: closes, frees */
    sk_backoff backoff;
    int depth;    /* nesting of entry points (ch_enter/ch_leave) */
    int freeing;  /* sk_grpc_channel_free was called */
    int reported; /* last connected value given to on_state */
    char last_error[SK_GRPC_ERRLEN];
};

/* channel.c */
int64_t sk_grpc_now_ms(void);
void sk_grpc_ch_enter(sk_grpc_channel *ch);
/* Leaves an entry point; frees the channel if it was freed inside and this was the outermost. */
void sk_grpc_ch_leave(sk_grpc_channel *ch);
/* Schedules the deferred work (closes, sends, flushes, frees) for later in this loop turn. */
void sk_grpc_ch_tick(sk_grpc_channel *ch);
void sk_grpc_ch_set_error(sk_grpc_channel *ch, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void sk_grpc_ch_conn_ready(sk_grpc_channel *ch, sk_grpc_conn *conn);
void sk_grpc_ch_conn_draining(sk_grpc_channel *ch, sk_grpc_conn *conn);
void sk_grpc_ch_conn_dead(sk_grpc_channel *ch, sk_grpc_conn *conn, int was_current);

/* conn.c */
/* Makes a new connection ch->current and starts connecting. Returns -1 (nothing registered,
 * reason in ch->last_error) when it could not even start. The attempt may already have failed
 * when this returns; the connection is then in ch->dead. */
int sk_grpc_conn_start(sk_grpc_channel *ch);
/* Closes the connection (idempotent): its calls close with UNAVAILABLE and `why` (NULL: a
 * drained connection closing normally), it moves to ch->dead. Never frees. */
void sk_grpc_conn_close(sk_grpc_conn *conn, const char *why);
/* Stops opening streams on the connection (GOAWAY, stream ids exhausted); the channel gets a
 * new connection and this one closes when its last call is gone. */
void sk_grpc_conn_drain(sk_grpc_conn *conn);
/* Writes what nghttp2 has queued (may run callbacks: entry points only); inside nghttp2 it
 * only marks the connection, and read_cb flushes when nghttp2 returns. */
void sk_grpc_conn_flush(sk_grpc_conn *conn);
/* Asks for a flush from the channel's tick: safe anywhere, including inside API calls. */
void sk_grpc_conn_schedule_flush(sk_grpc_conn *conn);
/* Submits the request HEADERS and body of an ACTIVE-to-be call; links call and stream.
 * Returns the stream id or a negative nghttp2 error. */
int32_t sk_grpc_conn_submit(sk_grpc_conn *conn, sk_grpc_call *call, const nghttp2_nv *nva,
                            size_t nvlen);
/* Unlinks a call from its stream (RST_STREAM CANCEL first when rst is set and the stream is
 * still open) and from the connection. */
void sk_grpc_conn_release(sk_grpc_conn *conn, sk_grpc_call *call, int rst);
/* 1 when we have sent END_STREAM on the call's stream. */
int sk_grpc_conn_local_closed(sk_grpc_conn *conn, const sk_grpc_call *call);
void sk_grpc_conn_free(sk_grpc_conn *conn);

/* call.c */
/* Opens the call's stream on a ready connection. Returns 0, or -1 when this connection cannot
 * take new streams (the call stays PENDING). A failure of the call itself closes it async. */
int sk_grpc_call_submit(sk_grpc_call *call, sk_grpc_conn *conn, const char *auth_value);
/* Closes the call now: on_close(code, msg) unless cancelled; RST_STREAM(CANCEL) when the
 * stream is still open on our side and rst is set. */
void sk_grpc_call_finish(sk_grpc_call *call, int code, const char *msg, int rst);
/* Closes the call with on_close delivered on the next tick (never inside an API call). */
void sk_grpc_call_finish_async(sk_grpc_call *call, int code, const char *msg);
void sk_grpc_call_deliver_close(sk_grpc_call *call);
void sk_grpc_call_free(sk_grpc_call *call);
/* nghttp2 events for the call's stream (conn.c dispatches them). */
void sk_grpc_call_on_header(sk_grpc_call *call, const uint8_t *name, size_t namelen,
                            const uint8_t *value, size_t valuelen);
void sk_grpc_call_on_headers_end(sk_grpc_call *call, int end_stream);
void sk_grpc_call_on_data(sk_grpc_call *call, const uint8_t *data, size_t len);
void sk_grpc_call_on_end_stream(sk_grpc_call *call);
void sk_grpc_call_on_stream_close(sk_grpc_call *call, uint32_t h2_error);
void sk_grpc_call_on_not_sent(sk_grpc_call *call, int lib_error);
/* Copies up to len request bytes into buf; sets *eof after the last one. */
size_t sk_grpc_call_read_body(sk_grpc_call *call, uint8_t *buf, size_t len, int *eof);

#endif
