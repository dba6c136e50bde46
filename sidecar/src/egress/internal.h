/* Private to sidecar/src/egress/: the proxy (egress.c) and its calls (call.c). */
#ifndef SK_EGRESS_INTERNAL_H
#define SK_EGRESS_INTERNAL_H

#include <stdint.h>
#include <sys/queue.h>

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

/* A route at run time. */
typedef struct route {
    sk_egress *eg;
    const sk_egress_route_config *cfg;
    sk_secret *cred; /* NULL without a credential */
    sk_tls *tls;     /* https upstream: its TLS material */
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
    sk_http *http;
    struct evhttp *server;
    struct evhttp_bound_socket *bound; /* NULL once stopped */
    int port;
    route *routes;
    size_t nroutes;
    struct call_list calls;
    size_t ncalls;
};

/* ---- egress.c ---- */

/* Monotonic milliseconds, the clock of the policy modules. */
int64_t sk_egress_now_ms(void);
/* The secret values the output scan looks for: every route's credential value (n of them,
 * pointers valid until the next change of a credential: copy before returning to the loop). */
size_t sk_egress_needles(const sk_egress *e, const char **vals, size_t *lens, size_t max);
/* The route named name, NULL when there is none. */
route *sk_egress_route(sk_egress *e, const char *name);
/* Counts one refusal, rejection or call in the metrics (route may be NULL: route=""). */
void sk_egress_count(sk_egress *e, const route *rt, const char *code);
void sk_egress_count_rejection(sk_egress *e, const route *rt, const char *reason);
void sk_egress_count_retry(sk_egress *e, const route *rt, const char *reason);

/* ---- call.c ---- */

/* evhttp's callback for every request. */
void sk_egress_on_request(struct evhttp_request *req, void *arg);
/* Ends a call in flight at shutdown: upstream cancelled, 503 when no status was sent. */
void sk_egress_call_abort(call *c);

#endif
