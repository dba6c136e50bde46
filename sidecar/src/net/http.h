/* Non-blocking HTTP client: libcurl's multi-socket API driven by a libevent loop (one event per
 * socket curl watches, one timer). Used by the Schema Registry client, later by Vault, OAuth and
 * OTLP. Loop thread only: every function below and every callback runs on the thread that runs
 * the event_base.
 *
 * Requests follow no redirects, speak only http and https, never raise signals
 * (CURLOPT_NOSIGNAL) and honour the standard proxy environment variables (http_proxy,
 * https_proxy, no_proxy) as libcurl does. */
#ifndef SK_HTTP_H
#define SK_HTTP_H

#include <stddef.h>
#include <stdint.h>

struct event_base;

#define SK_HTTP_MAX_BODY ((size_t)8 << 20) /* default bound on a response body */

typedef struct sk_http sk_http;
typedef struct sk_http_req sk_http_req;

/* What a request ended with. error is NULL when a whole response arrived (any status); when it
 * is set the request failed (connect error, timeout, body over the limit...) and status is the
 * status of a response cut short, 0 when none arrived. body holds the bytes received, possibly
 * partial when error is set. Everything is valid during the callback only. */
typedef struct sk_http_result {
    long status;
    const char *body; /* NUL-terminated, body_len bytes */
    size_t body_len;
    const char *error; /* curl's message and its CURLOPT_ERRORBUFFER detail */
    double ttfb_s;     /* time to first byte */
    double total_s;
    int64_t retry_after_s; /* Retry-After of the response in seconds (date or delay), 0 if none */
} sk_http_result;

typedef void (*sk_http_cb)(void *ud, const sk_http_result *r);

/* Calls curl_global_init(CURL_GLOBAL_DEFAULT) once per process; later calls return its first
 * result. sk_http_new calls it; main may call it before starting threads, since
 * curl_global_init is not thread-safe on every platform. 0 or -1. */
int sk_http_global_init(void);

/* A client on base; NULL with err set on failure. */
sk_http *sk_http_new(struct event_base *base, char *err, size_t errlen);

/* Cancels every request in flight (their callbacks are not called) and frees the client.
 * Accepts NULL. May be called from inside a completion callback of this client: the requests
 * not yet delivered are dropped and the memory is released when that callback returns. */
void sk_http_free(sk_http *h);

/* TLS material (net/tls.h) for https requests started afterwards: CA bundle, client
 * certificate and TLS 1.2 minimum of the TLS layer, peer and host verification on. NULL: libcurl's
 * defaults (system store). t must outlive the client. */
struct sk_tls;
void sk_http_set_tls(sk_http *h, struct sk_tls *t);

/* Observability of requests started afterwards. m (may be NULL: no metrics) gets every
 * finished request's duration and time to first byte in skiff_http_client_request_duration_seconds
 * and skiff_http_client_ttfb_seconds with label peer ("registry", "vault", "oauth", "otlp";
 * static string). traced: each request carries a W3C `traceparent` and gets a CLIENT span,
 * child of the active span (trace/trace.h) or a new trace; the default. The OTLP exporter's
 * own client turns it off (exporting spans must not make spans). */
typedef struct sk_metrics sk_metrics;
void sk_http_set_observe(sk_http *h, sk_metrics *m, const char *peer, int traced);

/* Bound on a response body (default SK_HTTP_MAX_BODY) for requests started afterwards; a larger
 * body ends the request with an error. */
void sk_http_set_max_body(sk_http *h, size_t max);

/* Starts a request. method: "GET", "POST", "PUT", "DELETE", "HEAD"...; headers: NULL or a
 * NULL-terminated list of "Name: value"; body: body_len bytes (copied) or NULL; userpwd:
 * "user:password" for basic auth or NULL (copied by curl, never logged); timeout_ms: bound on the
 * whole request (<= 0: 30 s). Everything is copied: the caller's buffers may go right after.
 *
 * cb runs later from the loop, never from inside this call, exactly once unless the request is
 * cancelled or the client freed. Returns NULL when the request cannot start (out of memory, bad
 * arguments, client being freed); cb is then never called. The handle is valid until cb returns
 * or the request is cancelled.
 *
 * Inside cb it is allowed to start requests, to cancel other requests and to free the client;
 * cancelling the request being delivered does nothing. */
sk_http_req *sk_http_request(sk_http *h, const char *method, const char *url,
                             const char *const *headers, const char *body, size_t body_len,
                             const char *userpwd, int64_t timeout_ms, sk_http_cb cb, void *ud);

/* Stops a request; its callback is not called. Accepts NULL. */
void sk_http_cancel(sk_http_req *r);

/* ---- streaming ----
 *
 * A request whose response is handed over as it arrives rather than buffered whole (the
 * egress proxy). on_head and on_data run from inside libcurl (while the loop drives the
 * transfer): there they must not cancel this request or free the client (return -1 to stop
 * the transfer instead); anything else is allowed. on_end runs from the loop like sk_http_cb,
 * exactly once unless the request is cancelled, with body NULL; cancelling or freeing there is
 * allowed as for sk_http_cb. */
typedef struct sk_http_stream_cbs {
    /* The final response's status line and headers ("Name: value" each, n of them, no CR or
     * LF, valid during the call): 0 to go on, -1 to stop (on_end follows with an error). */
    int (*on_head)(void *ud, long status, const char *const *headers, size_t n);
    /* A piece of the body (decoded from chunked, not from content encodings): 0 taken, 1 not
     * taken: the transfer pauses and the same bytes come again after sk_http_resume; -1 stop. */
    int (*on_data)(void *ud, const char *data, size_t len);
    /* The end: r->error is NULL when the whole response arrived. */
    void (*on_end)(void *ud, const sk_http_result *r);
} sk_http_stream_cbs;

typedef struct sk_http_stream_opts {
    const char *method, *url;
    const char *const *headers; /* NULL or NULL-terminated "Name: value"; "Name:" removes one
                                   libcurl would add */
    const char *body;           /* body_len bytes (copied) or NULL */
    size_t body_len;
    int64_t connect_timeout_ms; /* <= 0: libcurl's default */
    int64_t timeout_ms;         /* whole request, <= 0: 30 s */
    struct sk_tls *tls;         /* NULL: the client's (sk_http_set_tls) */
} sk_http_stream_opts;

/* Starts a streaming request over HTTP/1.1; cbs must outlive it. NULL when it cannot start
 * (nothing is called then). */
sk_http_req *sk_http_stream(sk_http *h, const sk_http_stream_opts *o, const sk_http_stream_cbs *cbs,
                            void *ud);

/* Unpauses a request whose on_data returned 1: the bytes held come again through on_data,
 * possibly before this returns. Not from inside on_head or on_data. Accepts NULL. */
void sk_http_resume(sk_http_req *r);

#endif
