/* A small gRPC client (unary and server-streaming calls) on nghttp2 over libevent.
 * Loop thread only. One channel = one HTTP/2 connection to one target, reconnected on demand
 * with jittered backoff; calls are HTTP/2 streams. The transport is pluggable so TLS can be
 * added without touching call handling (h2c or TLS, grpc/transport.h). */
#ifndef SK_GRPC_H
#define SK_GRPC_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct evdns_base;
struct sk_grpc_transport; /* grpc/transport.h; NULL selects plaintext h2c */

/* gRPC status codes (https://grpc.github.io/grpc/core/md_doc_statuscodes.html). */
enum {
    SK_GRPC_OK = 0,
    SK_GRPC_CANCELLED = 1,
    SK_GRPC_UNKNOWN = 2,
    SK_GRPC_INVALID_ARGUMENT = 3,
    SK_GRPC_DEADLINE_EXCEEDED = 4,
    SK_GRPC_NOT_FOUND = 5,
    SK_GRPC_ALREADY_EXISTS = 6,
    SK_GRPC_PERMISSION_DENIED = 7,
    SK_GRPC_RESOURCE_EXHAUSTED = 8,
    SK_GRPC_FAILED_PRECONDITION = 9,
    SK_GRPC_ABORTED = 10,
    SK_GRPC_OUT_OF_RANGE = 11,
    SK_GRPC_UNIMPLEMENTED = 12,
    SK_GRPC_INTERNAL = 13,
    SK_GRPC_UNAVAILABLE = 14,
    SK_GRPC_DATA_LOSS = 15,
    SK_GRPC_UNAUTHENTICATED = 16,
};

const char *sk_grpc_code_name(int code); /* "UNAVAILABLE", ... */

typedef struct sk_grpc_channel sk_grpc_channel;
typedef struct sk_grpc_call sk_grpc_call;

/* A connection attempt failed or the connection ended: why (names the target and the cause,
 * e.g. "cannot connect to gw:26500: server certificate expired") and the delay before the next
 * attempt. For logs; runs with on_state's ud. */
typedef void (*sk_grpc_error_cb)(void *ud, const char *why, int64_t retry_ms);

/* Per-call credentials: a bearer token source for every call of a channel. */
typedef struct sk_grpc_auth {
    /* The `authorization` value for a call about to be sent ("Bearer <token>"), or NULL while
     * there is none: calls then wait (within their deadlines) until
     * sk_grpc_channel_auth_changed. The string is copied. */
    const char *(*value)(void *ud);
    /* The server answered UNAUTHENTICATED to a call sent with `value`: the call is sent once
     * more with the next value (when it has delivered no message yet), the second
     * UNAUTHENTICATED closes it. */
    void (*rejected)(void *ud, const char *value);
    void *ud;
} sk_grpc_auth;

/* Zero fields take the defaults noted on the right. */
typedef struct sk_grpc_channel_opts {
    const char *target;           /* "host:port", "[v6addr]:port" or "dns:///host:port" */
    size_t max_message_bytes;     /* receive limit; larger message -> RESOURCE_EXHAUSTED; 4 MiB */
    int64_t keepalive_ms;         /* HTTP/2 PING interval while calls are active, 0 = off */
    int64_t connect_timeout_ms;   /* TCP + HTTP/2 preface; 20 s */
    int64_t reconnect_initial_ms; /* jittered exponential backoff between attempts; 1 s */
    int64_t reconnect_max_ms;     /* 120 s */
    /* Additions (zero = default): */
    int64_t keepalive_timeout_ms; /* wait for the PING ACK before the connection is dead; 20 s */
    const struct sk_grpc_transport *transport; /* NULL = plaintext h2c */
    struct evdns_base *dns;    /* shared resolver; NULL = the channel makes its own */
    int lazy;                  /* connect at the first call instead of at once */
    sk_grpc_error_cb on_error; /* NULL: not told */
    const sk_grpc_auth *auth;  /* NULL = no credentials; borrowed, outlives the channel */
} sk_grpc_channel_opts;

/* Connection state changes (connected = 1 after the HTTP/2 preface is acknowledged). */
typedef void (*sk_grpc_state_cb)(void *ud, int connected);

/* Creates the channel and starts connecting on the next loop turn (on_state never runs inside
 * this function). Returns NULL on allocation failure or an unparsable target. */
sk_grpc_channel *sk_grpc_channel_new(struct event_base *base, const sk_grpc_channel_opts *opts,
                                     sk_grpc_state_cb on_state, void *ud);
/* Cancels every call (their on_close runs with CANCELLED) and frees the channel. May be called
 * from any of the channel's callbacks; the memory is then released when that callback returns. */
void sk_grpc_channel_free(sk_grpc_channel *ch);
int sk_grpc_channel_connected(const sk_grpc_channel *ch);
/* Replaces a ready connection (new TLS material): it takes no new calls and closes once its
 * calls are done, while a new connection opens. Does nothing when not connected. */
void sk_grpc_channel_reconnect(sk_grpc_channel *ch);
/* The auth source has a new value: waiting calls are sent (from the channel's tick). */
void sk_grpc_channel_auth_changed(sk_grpc_channel *ch);
/* Why the last connection attempt failed or the last connection ended ("" if none yet);
 * valid until the next loop turn. For logs. */
const char *sk_grpc_channel_last_error(const sk_grpc_channel *ch);

/* One decoded response message (the 5-byte gRPC prefix removed). Valid during the callback. */
typedef void (*sk_grpc_message_cb)(void *ud, const uint8_t *msg, size_t len);
/* Final status of the call, exactly once; `message` is percent-decoded ("" when absent).
 * The call object is freed by the channel after this returns. */
typedef void (*sk_grpc_close_cb)(void *ud, int code, const char *message);

typedef struct sk_grpc_metadata {
    const char *name; /* lowercase */
    const char *value;
} sk_grpc_metadata;

/* Starts a call: method is "/package.Service/Method", req the serialized request message
 * (copied). timeout_ms > 0 sets grpc-timeout and a local deadline (DEADLINE_EXCEEDED when it
 * passes). When the channel is not connected the call waits for the connection (within its
 * deadline; without a deadline it waits until the channel is freed). md and nmd are copied;
 * a reserved or malformed name closes the call with INTERNAL.
 * Returns NULL only on allocation failure or while sk_grpc_channel_free runs; every other
 * failure arrives through on_close, which never runs before sk_grpc_call_start has returned.
 * The call pointer is invalid once on_close has returned or sk_grpc_call_cancel was called. */
sk_grpc_call *sk_grpc_call_start(sk_grpc_channel *ch, const char *method, const uint8_t *req,
                                 size_t req_len, int64_t timeout_ms, const sk_grpc_metadata *md,
                                 size_t nmd, sk_grpc_message_cb on_message,
                                 sk_grpc_close_cb on_close, void *ud);
/* Flow control of a (server-streaming) call: while paused, received messages are still
 * delivered but the stream's HTTP/2 window is not given back, so the server can send at most
 * one window (64 KiB) more and then waits; resuming gives the window back. */
void sk_grpc_call_pause(sk_grpc_call *call, int paused);
/* Cancels (RST_STREAM CANCEL); on_close is NOT called afterwards. Safe from inside the call's
 * own callbacks (on_message) and from other calls' callbacks. */
void sk_grpc_call_cancel(sk_grpc_call *call);

/* Framing helpers, exposed for unit tests and fuzzing. */
/* Writes the 5-byte length prefix for an uncompressed message of len bytes. */
void sk_grpc_frame_header(uint8_t out[5], size_t len);
/* Parses "1S", "100m", ... -> milliseconds; -1 if invalid. Encodes ms into out (>= 12 bytes). */
int64_t sk_grpc_timeout_parse(const char *s);
void sk_grpc_timeout_format(int64_t ms, char *out, size_t outlen);
/* Percent-decodes a grpc-message value into out (NUL-terminated, truncated to outlen-1).
 * Malformed escapes (and %00) are copied as they are, never rejected. */
void sk_grpc_message_decode(const char *in, size_t inlen, char *out, size_t outlen);
/* gRPC status for an HTTP response without grpc-status (doc/http-grpc-status-mapping.md). */
int sk_grpc_status_from_http(int http_status);
/* gRPC status for an HTTP/2 RST_STREAM / GOAWAY error code (PROTOCOL-HTTP2.md, "Errors"). */
int sk_grpc_status_from_h2_error(uint32_t h2_error);

#endif
