/* Private to sidecar/src/egress/: the proxy (egress.c) and its calls (call.c). */
#ifndef SK_EGRESS_INTERNAL_H
#define SK_EGRESS_INTERNAL_H

#include <event2/util.h>
#include <stdint.h>
#include <sys/queue.h>

#include "core/backoff.h"
#include "egress/gate.h"

#include "core/config.h"
#include "core/metrics.h"
#include "egress/egress.h"

struct evhttp;
struct evhttp_request;
struct event_base;
typedef struct sk_http sk_http;
typedef struct sk_secret sk_secret;
typedef struct sk_tls sk_tls;
typedef struct sk_guard sk_guard;
typedef struct sk_bucket sk_bucket;
typedef struct sk_gate sk_gate;
typedef struct sk_breaker sk_breaker;
typedef struct call call;
typedef struct egress_conn egress_conn;
struct bufferevent;
typedef struct sk_http_req sk_http_req;
typedef struct sk_span sk_span;
typedef struct sk_scan sk_scan;
typedef struct sk_usage sk_usage;
struct evhttp_connection;

/* A route at run time. */
typedef struct route {
    sk_egress *eg;
    const sk_egress_route_config *cfg;
    sk_secret *cred; /* NULL without a credential */
    sk_tls *tls;     /* https upstream: its TLS material */
    sk_http *http;   /* its own connection pool: no connection is shared across TLS settings */
    struct sk_oauth_client *oauth; /* oauth_audience: its token client, else NULL */
    sk_series *duration, *ttfb, *in_flight, *queued, *breaker_state;
    sk_series *tokens_in, *tokens_out;
    sk_guard *guard;
    sk_bucket *rpm, *tpm; /* requests and tokens per minute */
    sk_gate *gate;        /* max_concurrent / max_queued */
    sk_breaker *breaker;
} route;

/* The metric families. */
typedef struct egress_metrics {
    sk_metric *requests, *duration, *ttfb, *tokens, *rejections, *guard_blocks, *retries;
    sk_metric *breaker_state, *breaker_transitions, *in_flight, *queued;
} egress_metrics;

TAILQ_HEAD(call_list, call);

struct sk_egress {
    struct event_base *base;
    const sk_config *cfg;
    sk_metrics *m;
    egress_metrics fam;
    struct evhttp *server;
    struct evhttp_bound_socket *bound; /* NULL once stopped */
    int port;
    route *routes;
    size_t nroutes;
    struct call_list calls;
    size_t ncalls;
    LIST_HEAD(, egress_conn) conns; /* conn.c's guard of each connection */
};

/* ---- egress.c ---- */

/* Monotonic milliseconds, the clock of the policy modules. */
int64_t sk_egress_now_ms(void);
/* The secret values the output scan looks for: every route's credential, every value skiff
 * read from Vault, every route's OAuth token (n of them, pointers valid until the next change
 * of a value: copy before returning to the loop). */
size_t sk_egress_needles(const sk_egress *e, const char **vals, size_t *lens, size_t max);
/* Replaces every secret value the output scan knows in text (NUL-terminated, in place). */
void sk_egress_scrub(const sk_egress *e, char *text);
/* The route named name, NULL when there is none. */
route *sk_egress_route(sk_egress *e, const char *name);
/* Counts one refusal, rejection or call in the metrics (route may be NULL: route=""). */
void sk_egress_count(sk_egress *e, const route *rt, const char *code);
void sk_egress_count_rejection(sk_egress *e, const route *rt, const char *reason);
void sk_egress_count_retry(sk_egress *e, const route *rt, const char *reason);

/* One call from a handler, from its request to the end of its response (call.c). */
struct call {
    sk_egress *eg;
    route *rt; /* NULL while the route is unknown */
    struct evhttp_request *req;
    struct evhttp_connection *conn;
    egress_conn *guard; /* conn.c's state of the connection, NULL when unguarded */
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
    sk_usage *usage; /* token usage read from the response */
    char *resp_log;  /* log_bodies: the first bytes of the response sent, NUL-terminated */
    size_t resp_log_len;
    int64_t tokens_in, tokens_out;
    sk_scan *scan;           /* output scan of the response body */
    struct sk_sse_scan *sse; /* text/event-stream: the scan of the decoded text, else NULL */
    char *held;              /* body bytes withheld while they may start a secret */
    size_t held_len;
    const char *breaker; /* the breaker's state when the call was let through */
    uint64_t bytes_in, bytes_out;
    const char *reason; /* refusal reason, NULL for a forwarded call */
    char retry_reason[16];
    int64_t retry_after_s; /* of the last upstream response */
    int64_t retry_in_ms;   /* >= 0: the attempt ended to be retried after this delay */
};

/* ---- call.c ---- */

/* Logs, counts, ends the span, gives back the policies and frees the call; the evhttp
 * request must be done with (replied, or gone with its connection). */
void sk_egress_finish(call *c);
/* Replies with skiff's JSON error body (Retry-After when c->retry_after_s > 0); no finish. */
void sk_egress_refuse(call *c, int status, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* A refusal counted in skiff_egress_rejections_total, then finish. */
void sk_egress_reject(call *c, int status, const char *reason, const char *msg);
/* Closes the handler's connection: a response already started is cut short. */
void sk_egress_cut(call *c);

#define SK_EGRESS_MAX_HEAD (32 * 1024)  /* request line and headers: over it, 431 */
#define SK_EGRESS_HEAD_TIMEOUT_MS 10000 /* from a head's first byte to its end: then 408 */
#define SK_EGRESS_LOG_BODY_MAX 4096
#define SK_EGRESS_MAX_NEEDLES                                                                      \
    256 /* secret values the output scan looks for */ /* bytes of each body in a log_bodies line   \
                                                       */

/* ---- conn.c ---- */

/* evhttp's bufferevent callback: a socket bufferevent for a new connection, guarded. */
struct bufferevent *sk_egress_conn_bev(struct event_base *base, void *arg);
/* The guard of the connection using bev, NULL when it has none. */
egress_conn *sk_egress_conn_of(sk_egress *e, struct bufferevent *bev);
/* 1 when the connection was refused by the guard (408, 431) and is closing. */
int sk_egress_conn_closing(const egress_conn *c);
/* The call on the connection ended: the next byte starts a new head. NULL ok. */
void sk_egress_conn_idle(egress_conn *c);
/* Drops every guard, once evhttp is freed. */
void sk_egress_conns_free(sk_egress *e);

/* ---- upstream.c ---- */

/* Starts an attempt (the first, or a retry once its delay is over). */
void sk_egress_upstream_start(call *c);
/* c->timer fired while not queued: the TTFB deadline (an attempt in flight) or a retry's
 * delay. */
void sk_egress_upstream_timer(call *c);
/* c->resume's callback: the handler's connection drained, upstream goes on. */
void sk_egress_upstream_resume(evutil_socket_t fd, short what, void *arg);
/* The headers for upstream into c->hdrs. 0 or -1 (out of memory). */
int sk_egress_build_headers(call *c, const char *traceparent);

/* evhttp's callback for every request. */
void sk_egress_on_request(struct evhttp_request *req, void *arg);
/* Ends a call in flight at shutdown: upstream cancelled, 503 when no status was sent. */
void sk_egress_call_abort(call *c);

#endif
