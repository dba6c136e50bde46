/* Admin HTTP server on the loop: GET /metrics (Prometheus text 0.0.4), /healthz (the loop
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

/* Details appended to /readyz's body (after "ready" or the reason, one line each), whatever
 * the readiness: writes at most n bytes, NUL-terminated, into out. */
typedef void (*sk_admin_details_cb)(void *ud, char *out, size_t n);
void sk_admin_set_details(sk_admin *a, sk_admin_details_cb cb, void *ud);
void sk_admin_free(sk_admin *a);

#endif
