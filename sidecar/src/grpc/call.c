/* A gRPC call: request headers and body, response headers, messages and trailers, deadline,
 * cancellation. Loop thread only; see internal.h for ownership and life cycle. */
#include "grpc/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#define USER_AGENT "skiff/0.1"
#define MAX_METADATA 64 /* entries per call */

/* Names a caller may not set: pseudo-headers are rejected by the charset check, these either
 * belong to the protocol or are connection-specific (forbidden in HTTP/2). */
static const char *const reserved_names[] = {
    "content-type",      "te",         "user-agent", "host",
    "connection",        "keep-alive", "upgrade",    "proxy-connection",
    "transfer-encoding",
};

/* ---- request ---- */

static int md_name_ok(const char *name)
{
    if (name == NULL || name[0] == '\0' || strncmp(name, "grpc-", 5) == 0)
        return 0;
    for (const char *p = name; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'))
            return 0;
    }
    for (size_t i = 0; i < sizeof reserved_names / sizeof reserved_names[0]; i++) {
        if (strcmp(name, reserved_names[i]) == 0)
            return 0;
    }
    return 1;
}

static int md_value_ok(const char *value)
{
    if (value == NULL)
        return 0;
    for (const char *p = value; *p; p++) {
        if (*p < 0x20 || *p > 0x7e)
            return 0;
    }
    return 1;
}

/* Checks what the caller passed; returns a reason or NULL. */
static const char *check_request(const char *method, const sk_grpc_metadata *md, size_t nmd)
{
    if (method == NULL || method[0] != '/' || !md_value_ok(method))
        return "invalid method name";
    if (nmd > MAX_METADATA)
        return "too many metadata entries";
    for (size_t i = 0; i < nmd; i++) {
        if (!md_name_ok(md[i].name))
            return "invalid or reserved metadata name";
        if (!md_value_ok(md[i].value))
            return "invalid metadata value (printable ASCII only)";
    }
    return NULL;
}

static int copy_request(sk_grpc_call *call, const char *method, const uint8_t *req, size_t req_len,
                        const sk_grpc_metadata *md, size_t nmd)
{
    call->path = strdup(method ? method : "");
    call->body_len = 5 + req_len;
    call->body = malloc(call->body_len);
    call->md = calloc(nmd ? nmd : 1, sizeof *call->md);
    if (call->path == NULL || call->body == NULL || call->md == NULL)
        return -1;
    sk_grpc_frame_header(call->body, req_len);
    if (req_len > 0)
        memcpy(call->body + 5, req, req_len);
    for (; call->nmd < nmd; call->nmd++) {
        sk_grpc_metadata *m = &call->md[call->nmd];
        m->name = strdup(md[call->nmd].name ? md[call->nmd].name : "");
        m->value = strdup(md[call->nmd].value ? md[call->nmd].value : "");
        if (m->name == NULL || m->value == NULL) {
            call->nmd++; /* so that sk_grpc_call_free releases the partial entry */
            return -1;
        }
    }
    return 0;
}

static nghttp2_nv nv(const char *name, const char *value)
{
    nghttp2_nv v = {(uint8_t *)name, (uint8_t *)value, strlen(name), strlen(value),
                    NGHTTP2_NV_FLAG_NONE};
    return v;
}

/* Builds the request headers into nva (room for 9 + nmd); returns the count. */
static size_t build_headers(const sk_grpc_call *call, nghttp2_nv *nva, char *timeout,
                            size_t timeout_len)
{
    const sk_grpc_channel *ch = call->ch;
    size_t n = 0;
    nva[n++] = nv(":method", "POST");
    nva[n++] = nv(":scheme", ch->tp->scheme);
    nva[n++] = nv(":path", call->path);
    nva[n++] = nv(":authority", ch->authority);
    nva[n++] = nv("content-type", "application/grpc");
    nva[n++] = nv("te", "trailers");
    nva[n++] = nv("user-agent", USER_AGENT);
    nva[n++] = nv("grpc-accept-encoding", "identity");
    if (call->deadline_ms > 0) {
        int64_t left = call->deadline_ms - sk_grpc_now_ms();
        sk_grpc_timeout_format(left > 0 ? left : 1, timeout, timeout_len);
        nva[n++] = nv("grpc-timeout", timeout);
    }
    if (call->auth_value != NULL)
        nva[n++] = nv("authorization", call->auth_value);
    for (size_t i = 0; i < call->nmd; i++)
        nva[n++] = nv(call->md[i].name, call->md[i].value);
    return n;
}

int sk_grpc_call_submit(sk_grpc_call *call, sk_grpc_conn *conn, const char *auth_value)
{
    nghttp2_nv nva[10 + MAX_METADATA];
    char timeout[16];
    free(call->auth_value);
    call->auth_value = NULL;
    if (auth_value != NULL && (call->auth_value = strdup(auth_value)) == NULL) {
        sk_grpc_call_finish_async(call, SK_GRPC_INTERNAL, "out of memory");
        return 0;
    }
    size_t n = build_headers(call, nva, timeout, sizeof timeout);
    TAILQ_REMOVE(&call->ch->pending, call, link);
    int32_t id = sk_grpc_conn_submit(conn, call, nva, n);
    if (id >= 0) {
        call->state = SK_CALL_ACTIVE; /* now in conn->calls */
        return 0;
    }
    TAILQ_INSERT_HEAD(&call->ch->pending, call, link);
    if (id == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE) {
        sk_grpc_conn_drain(conn);
        return -1;
    }
    char why[SK_GRPC_ERRLEN];
    snprintf(why, sizeof why, "cannot start the stream: %s", nghttp2_strerror(id));
    sk_grpc_call_finish_async(call, SK_GRPC_INTERNAL, why);
    return 0;
}

size_t sk_grpc_call_read_body(sk_grpc_call *call, uint8_t *buf, size_t len, int *eof)
{
    size_t left = call->body_len - call->body_sent;
    size_t n = len < left ? len : left;
    if (n > 0)
        memcpy(buf, call->body + call->body_sent, n);
    call->body_sent += n;
    if (call->body_sent == call->body_len && call->auth_value != NULL && !call->auth_retried) {
        *eof = 1; /* kept: an UNAUTHENTICATED answer sends it once more */
    } else if (call->body_sent == call->body_len) {
        *eof = 1;
        free(call->body); /* not needed any more; may be large */
        call->body = NULL;
        call->body_len = call->body_sent = 0;
    }
    return n;
}

/* ---- closing ---- */

/* Takes the call out of wherever it is; RST_STREAM(CANCEL) when rst and it has a stream. */
static void detach(sk_grpc_call *call, int rst)
{
    sk_grpc_channel *ch = call->ch;
    if (call->deadline_ev != NULL)
        event_del(call->deadline_ev);
    switch (call->state) {
    case SK_CALL_PENDING:
        TAILQ_REMOVE(&ch->pending, call, link);
        break;
    case SK_CALL_CLOSING:
        TAILQ_REMOVE(&ch->closing, call, link);
        break;
    case SK_CALL_ACTIVE:
        sk_grpc_conn_release(call->conn, call, rst);
        break;
    case SK_CALL_DONE:
        break;
    }
}

static void bury(sk_grpc_call *call)
{
    call->state = SK_CALL_DONE;
    TAILQ_INSERT_TAIL(&call->ch->graveyard, call, link);
    sk_grpc_ch_tick(call->ch);
}

void sk_grpc_call_finish(sk_grpc_call *call, int code, const char *msg, int rst)
{
    if (call->state == SK_CALL_DONE)
        return;
    detach(call, rst);
    bury(call);
    if (call->on_close != NULL)
        call->on_close(call->ud, code, msg ? msg : "");
}

void sk_grpc_call_finish_async(sk_grpc_call *call, int code, const char *msg)
{
    if (call->state == SK_CALL_DONE || call->state == SK_CALL_CLOSING)
        return;
    detach(call, 1);
    call->state = SK_CALL_CLOSING;
    call->close_code = code;
    snprintf(call->close_msg, sizeof call->close_msg, "%s", msg);
    TAILQ_INSERT_TAIL(&call->ch->closing, call, link);
    sk_grpc_ch_tick(call->ch);
}

void sk_grpc_call_deliver_close(sk_grpc_call *call)
{
    sk_grpc_call_finish(call, call->close_code, call->close_msg, 0);
}

void sk_grpc_call_pause(sk_grpc_call *call, int paused)
{
    call->paused = paused;
    if (!paused && call->stream != NULL && call->stream->held > 0) {
        size_t held = call->stream->held;
        call->stream->held = 0;
        sk_grpc_conn_consume(call->conn, call->stream, held);
    }
}

void sk_grpc_call_cancel(sk_grpc_call *call)
{
    if (call == NULL || call->state == SK_CALL_DONE)
        return;
    detach(call, 1);
    bury(call);
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    sk_grpc_call *call = arg;
    sk_grpc_channel *ch = call->ch;
    char why[SK_GRPC_ERRLEN + 64];
    (void)fd;
    (void)what;
    sk_grpc_ch_enter(ch);
    if (call->state == SK_CALL_PENDING && sk_grpc_channel_connected(ch) && ch->auth != NULL)
        snprintf(why, sizeof why, "deadline exceeded while waiting for an access token");
    else if (call->state == SK_CALL_PENDING && ch->last_error[0] != '\0')
        snprintf(why, sizeof why, "deadline exceeded while waiting for a connection: %s",
                 ch->last_error);
    else if (call->state == SK_CALL_PENDING)
        snprintf(why, sizeof why, "deadline exceeded while waiting for a connection");
    else
        snprintf(why, sizeof why, "deadline exceeded");
    sk_grpc_call_finish(call, SK_GRPC_DEADLINE_EXCEEDED, why, 1);
    sk_grpc_ch_leave(ch);
}

/* ---- start / free ---- */

sk_grpc_call *sk_grpc_call_start(sk_grpc_channel *ch, const char *method, const uint8_t *req,
                                 size_t req_len, int64_t timeout_ms, const sk_grpc_metadata *md,
                                 size_t nmd, sk_grpc_message_cb on_message,
                                 sk_grpc_close_cb on_close, void *ud)
{
    if (ch == NULL || ch->freeing)
        return NULL;
    const char *bad = check_request(method, md, nmd);
    sk_grpc_call *call = calloc(1, sizeof *call);
    if (call == NULL)
        return NULL;
    call->ch = ch;
    call->grpc_status = -1;
    call->on_message = on_message;
    call->on_close = on_close;
    call->ud = ud;
    if (copy_request(call, method, req, req_len, md, bad ? 0 : nmd) != 0 ||
        (call->df = sk_grpc_deframer_new(ch->max_message_bytes)) == NULL)
        goto fail;
    if (timeout_ms > 0) {
        struct timeval tv = {.tv_sec = (time_t)(timeout_ms / 1000),
                             .tv_usec = (suseconds_t)(timeout_ms % 1000) * 1000};
        call->deadline_ms = sk_grpc_now_ms() + timeout_ms;
        if ((call->deadline_ev = evtimer_new(ch->base, deadline_cb, call)) == NULL)
            goto fail;
        evtimer_add(call->deadline_ev, &tv);
    }
    /* Sent by the channel's tick, later in this loop turn: no protocol work (and so no
     * callback) inside an API call. */
    call->state = SK_CALL_PENDING;
    TAILQ_INSERT_TAIL(&ch->pending, call, link);
    sk_grpc_ch_tick(ch);
    if (bad == NULL && req_len > UINT32_MAX)
        bad = "request message too large";
    if (bad != NULL)
        sk_grpc_call_finish_async(call, SK_GRPC_INTERNAL, bad);
    return call;
fail:
    sk_grpc_call_free(call);
    return NULL;
}

void sk_grpc_call_free(sk_grpc_call *call)
{
    if (call == NULL)
        return;
    if (call->deadline_ev != NULL)
        event_free(call->deadline_ev);
    for (size_t i = 0; i < call->nmd; i++) {
        free((char *)call->md[i].name);
        free((char *)call->md[i].value);
    }
    free(call->md);
    if (call->auth_value != NULL)
        explicit_bzero(call->auth_value, strlen(call->auth_value));
    free(call->auth_value);
    free(call->path);
    free(call->body);
    sk_grpc_deframer_free(call->df);
    free(call);
}

/* ---- response ---- */

static int header_is(const uint8_t *name, size_t len, const char *want)
{
    return len == strlen(want) && memcmp(name, want, len) == 0;
}

/* "application/grpc", optionally followed by "+proto", ";charset=..." and the like. */
static int grpc_content_type(const uint8_t *v, size_t len)
{
    static const char base[] = "application/grpc";
    size_t n = sizeof base - 1;
    if (len < n || memcmp(v, base, n) != 0)
        return 0;
    return len == n || v[n] == '+' || v[n] == ';';
}

/* Non-negative decimal of at most 3 digits, else -1. */
static int parse_small(const uint8_t *v, size_t len)
{
    if (len == 0 || len > 3)
        return -1;
    int n = 0;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        n = n * 10 + (v[i] - '0');
    }
    return n;
}

void sk_grpc_call_on_header(sk_grpc_call *call, const uint8_t *name, size_t namelen,
                            const uint8_t *value, size_t valuelen)
{
    if (call->state != SK_CALL_ACTIVE)
        return;
    if (header_is(name, namelen, ":status")) {
        call->http_status = parse_small(value, valuelen);
    } else if (header_is(name, namelen, "content-type")) {
        call->content_type_ok = grpc_content_type(value, valuelen);
    } else if (header_is(name, namelen, "grpc-status")) {
        int code = parse_small(value, valuelen);
        call->grpc_status = code < 0 || code > SK_GRPC_UNAUTHENTICATED ? SK_GRPC_UNKNOWN : code;
    } else if (header_is(name, namelen, "grpc-message")) {
        size_t n = valuelen < sizeof call->grpc_message ? valuelen : sizeof call->grpc_message;
        memcpy(call->grpc_message, value, n);
        call->grpc_message_len = n;
    }
}

/* UNAUTHENTICATED to a call sent with the channel's credentials: the source is told, and the
 * call goes back to the pending list to be sent once more with the next value when it has
 * delivered no message yet. 1 when it goes again. */
static int retry_unauthenticated(sk_grpc_call *call, int code)
{
    sk_grpc_channel *ch = call->ch;
    if (code != SK_GRPC_UNAUTHENTICATED || ch->auth == NULL || call->auth_value == NULL)
        return 0;
    ch->auth->rejected(ch->auth->ud, call->auth_value);
    if (call->auth_retried || call->delivered > 0 || ch->freeing || call->body == NULL ||
        call->state != SK_CALL_ACTIVE)
        return 0;
    sk_grpc_deframer *df = sk_grpc_deframer_new(ch->max_message_bytes);
    if (df == NULL)
        return 0;
    sk_grpc_conn_release(call->conn, call, !sk_grpc_conn_local_closed(call->conn, call));
    sk_grpc_deframer_free(call->df);
    call->df = df;
    call->headers_seen = call->http_status = call->content_type_ok = 0;
    call->grpc_status = -1;
    call->grpc_message_len = 0;
    call->body_sent = 0;
    call->auth_retried = 1;
    call->state = SK_CALL_PENDING;
    TAILQ_INSERT_HEAD(&ch->pending, call, link);
    sk_grpc_ch_tick(ch);
    return 1;
}

/* Response HEADERS without END_STREAM must say 200 and application/grpc; otherwise there is no
 * gRPC body to read and the call fails at once (grpc-status would win, but it comes only with
 * END_STREAM). */
void sk_grpc_call_on_headers_end(sk_grpc_call *call, int end_stream)
{
    if (call->state != SK_CALL_ACTIVE)
        return;
    if (!call->headers_seen) {
        if (call->http_status >= 100 && call->http_status < 200 && !end_stream) {
            call->http_status = 0; /* informational; the real response follows */
            return;
        }
        call->headers_seen = 1;
        if (!end_stream && call->http_status != 200) {
            char why[64];
            snprintf(why, sizeof why, "unexpected HTTP status %d", call->http_status);
            if (retry_unauthenticated(call, sk_grpc_status_from_http(call->http_status)))
                return;
            sk_grpc_call_finish(call, sk_grpc_status_from_http(call->http_status), why, 1);
            return;
        }
        if (!end_stream && !call->content_type_ok) {
            sk_grpc_call_finish(call, SK_GRPC_UNKNOWN, "response content-type is not gRPC", 1);
            return;
        }
    }
    if (end_stream)
        sk_grpc_call_on_end_stream(call);
}

static int deliver_message(void *ud, const uint8_t *msg, size_t len)
{
    sk_grpc_call *call = ud;
    call->delivered++;
    if (call->on_message != NULL)
        call->on_message(call->ud, msg, len);
    return call->state != SK_CALL_ACTIVE; /* cancelled or channel freed inside */
}

void sk_grpc_call_on_data(sk_grpc_call *call, const uint8_t *data, size_t len)
{
    if (call->state != SK_CALL_ACTIVE)
        return;
    int rc = sk_grpc_deframer_feed(call->df, data, len, deliver_message, call);
    if (rc == SK_GRPC_DEFRAMER_OK || rc == SK_GRPC_DEFRAMER_STOPPED)
        return;
    char why[SK_GRPC_ERRLEN];
    if (rc == SK_GRPC_DEFRAMER_TOO_BIG) {
        snprintf(why, sizeof why, "received message larger than max (%u vs. %zu)",
                 sk_grpc_deframer_rejected_len(call->df), call->ch->max_message_bytes);
        sk_grpc_call_finish(call, SK_GRPC_RESOURCE_EXHAUSTED, why, 1);
        return;
    }
    snprintf(why, sizeof why, "bad response message: %s", sk_grpc_deframer_strerror(rc));
    sk_grpc_call_finish(call, SK_GRPC_INTERNAL, why, 1);
}

/* The server ended the stream: grpc-status wins (trailers, or the headers of a trailers-only
 * response), else the HTTP status says what went wrong. */
void sk_grpc_call_on_end_stream(sk_grpc_call *call)
{
    if (call->state != SK_CALL_ACTIVE)
        return;
    char why[SK_GRPC_MAX_MESSAGE_TEXT + 1];
    int code;
    if (call->grpc_status >= 0) {
        code = call->grpc_status;
        sk_grpc_message_decode(call->grpc_message, call->grpc_message_len, why, sizeof why);
    } else if (call->http_status != 200) {
        code = sk_grpc_status_from_http(call->http_status);
        snprintf(why, sizeof why, "HTTP status %d without grpc-status", call->http_status);
    } else {
        code = SK_GRPC_INTERNAL;
        snprintf(why, sizeof why, "server closed the stream without grpc-status");
    }
    if (code == SK_GRPC_OK && sk_grpc_deframer_partial(call->df)) {
        code = SK_GRPC_INTERNAL;
        snprintf(why, sizeof why, "stream ended inside a message");
    }
    if (retry_unauthenticated(call, code))
        return;
    /* Our request may still be going out (server answered early): stop it. */
    int rst = !sk_grpc_conn_local_closed(call->conn, call);
    sk_grpc_call_finish(call, code, why, rst);
}

void sk_grpc_call_on_stream_close(sk_grpc_call *call, uint32_t h2_error)
{
    if (call->state != SK_CALL_ACTIVE)
        return;
    char why[SK_GRPC_ERRLEN];
    int code = sk_grpc_status_from_h2_error(h2_error);
    if (h2_error == NGHTTP2_REFUSED_STREAM) {
        snprintf(why, sizeof why, "stream refused by the server (not processed)");
    } else if (h2_error == NGHTTP2_CANCEL && call->deadline_ms > 0 &&
               sk_grpc_now_ms() >= call->deadline_ms) {
        /* The server's own deadline (our grpc-timeout) passed and it reset the stream, which
         * grpc-java (the Zeebe gateway) does instead of sending DEADLINE_EXCEEDED; its timer
         * and ours expire within a millisecond of each other, so this often beats deadline_cb.
         * grpc-core maps a CANCEL after the deadline the same way. */
        code = SK_GRPC_DEADLINE_EXCEEDED;
        snprintf(why, sizeof why, "deadline exceeded (stream reset by the server)");
    } else {
        snprintf(why, sizeof why, "stream reset (RST_STREAM %s)", nghttp2_http2_strerror(h2_error));
    }
    sk_grpc_call_finish(call, code, why, 0);
}

void sk_grpc_call_on_not_sent(sk_grpc_call *call, int lib_error)
{
    if (call->state != SK_CALL_ACTIVE)
        return;
    char why[SK_GRPC_ERRLEN];
    snprintf(why, sizeof why, "request not sent: %s", nghttp2_strerror(lib_error));
    sk_grpc_call_finish(call, SK_GRPC_UNAVAILABLE, why, 0);
}
