/* Admin HTTP server on the loop: GET /metrics (Prometheus text 0.0.4; OpenMetrics 1.0 with
 * exemplars when the Accept header prefers application/openmetrics-text), /healthz (the loop
 * answers, so it is alive), /readyz (200 when the probe says ready, else 503 with the reason). */
#ifndef SK_ADMIN_H
#define SK_ADMIN_H

#include <stddef.h>
#include "core/metrics.h"

struct event_base;
typedef struct sk_admin sk_admin;

/* Returns 1 when ready; otherwise 0 and a short reason in why. */
typedef int (*sk_admin_ready_cb)(void *ud, char *why, size_t whylen);

/* address: "host:port" (port 0 picks a free port, see sk_admin_port). NULL + err on failure. */
sk_admin *sk_admin_new(struct event_base *base, const char *address, sk_metrics *metrics,
                       sk_admin_ready_cb ready, void *ud, char *err, size_t errlen);
int sk_admin_port(const sk_admin *a);

/* 1 when an Accept header value (NULL: none) prefers OpenMetrics to the text format: its best
 * application/openmetrics-text range (version absent, 1.0.0 or 0.0.1) has a quality above 0
 * and at least that of text/plain, text/ or the full wildcard. Anything else, malformed
 * included: 0, the text format. Any string is safe. */
int sk_admin_wants_openmetrics(const char *accept);

/* Details appended to /readyz's body (after "ready" or the reason, one line each), whatever
 * the readiness: writes at most n bytes, NUL-terminated, into out. */
typedef void (*sk_admin_details_cb)(void *ud, char *out, size_t n);
void sk_admin_set_details(sk_admin *a, sk_admin_details_cb cb, void *ud);
void sk_admin_free(sk_admin *a);

#endif
